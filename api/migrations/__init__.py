"""Alembic migrations of the API database; run with ``cityeye db upgrade`` or at API start."""
