"""Vehicle detection with ONNX models: letterbox, run, decode, NMS."""
