"""Layer 3, measurement: interleaved latency with CIs, the ONNX export check, unit health, INT8 quantization."""
