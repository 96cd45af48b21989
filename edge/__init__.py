"""The edge worker: camera -> detector -> zones -> events -> MQTT."""
