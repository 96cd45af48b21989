"""Frame sources: video files, image folders and network streams (RTSP/HTTP) decoded with PyAV."""
