"""Offline quantization of the float models (``edgeface quantize``; needs the ``tools`` extra).

Nothing here runs on the device: the operator builds INT8 / FP16 artifacts once, with a
manifest that records how each was made, and copies the output directory to the device.
"""
