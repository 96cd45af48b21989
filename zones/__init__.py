"""Parking and counting zones: GeoJSON, calibration, importers and occupancy rules."""
