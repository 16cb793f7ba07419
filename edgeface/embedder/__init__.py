"""Face embeddings: one wrapper for every embedding model (EdgeFace-XS by default,
EdgeFace-XXS, MobileFaceNet) behind any inference backend."""

from edgeface.embedder.model import DEFAULT_EMBEDDER, DEFAULT_FLIP, Embedder, EmbedderConfig

__all__ = ["DEFAULT_EMBEDDER", "DEFAULT_FLIP", "Embedder", "EmbedderConfig"]
