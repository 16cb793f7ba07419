"""edgeface offline tools (installed as ``edgeface_tools``; needs the ``tools`` extra).

Converters that build derived model files, quantization to INT8 ONNX / TFLite, fixture
generators and evaluation helpers that never run on the device.
"""
