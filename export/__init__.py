"""berth export: torch -> ONNX, fusion, int8/fp16, parity gates, model bundles."""
