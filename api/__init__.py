"""The central API: ingest events from MQTT, store state and history, answer drivers and operators."""
