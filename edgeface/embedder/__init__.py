"""Face embeddings: MobileFaceNet behind any inference backend."""

from edgeface.embedder.mobilefacenet import Embedder, EmbedderConfig

__all__ = ["Embedder", "EmbedderConfig"]
