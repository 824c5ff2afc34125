"""berth service: FastAPI + ONNX Runtime inference server (torch-free)."""
