"""edgeface: offline face recognition for small edge devices.

The runtime lives in sub-packages named after their job: ``detector`` (NumPy MTCNN),
``aligner`` (5-point similarity warp), ``embedder`` (MobileFaceNet), ``recognition``
(verify / identify), ``gallery`` (encrypted local store), ``door`` (the access daemon).
"""

from edgeface.errors import EdgefaceError

__version__ = "0.1.0"
__all__ = ["EdgefaceError", "__version__"]
