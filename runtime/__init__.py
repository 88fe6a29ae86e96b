"""The thin runtime: what a device installs (numpy, Pillow, LiteRT or ONNX Runtime; no TensorFlow)."""
