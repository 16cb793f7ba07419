"""Face embeddings: MobileFaceNet behind any inference backend."""

from edgeface.embedder.mobilefacenet import DEFAULT_FLIP, Embedder, EmbedderConfig

__all__ = ["DEFAULT_FLIP", "Embedder", "EmbedderConfig"]
