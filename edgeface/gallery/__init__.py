"""Encrypted local gallery of enrolled people, enrollment with quality gates, 1:N matching.

Typical use::

    from edgeface.gallery import GalleryFile, load_key_file
    gf = GalleryFile("/var/lib/edgeface/gallery.efg", load_key_file("/etc/edgeface/gallery.key"))
    gallery = gf.load()
    decision = gallery.identify(embedding, threshold, model=ModelRef.of(pipeline.embedder))
    print(decision.label)         # a display name, or "unknown"

See docs/gallery.md for the file format, key handling and durability guarantees.
"""

from edgeface.gallery.errors import (
    GalleryError,
    GalleryExistsError,
    GalleryNotFoundError,
    IdentityNotFoundError,
    KeySourceError,
    LockTimeoutError,
    ModelMismatchError,
    TamperedError,
    WrongKeyError,
)
from edgeface.gallery.keys import (
    KeySource,
    Passphrase,
    RawKey,
    create_key_file,
    load_key_file,
    load_systemd_credential,
)
from edgeface.gallery.matching import Decision, Match, Matcher
from edgeface.gallery.store import Gallery, GalleryFile, IdentityInfo, ModelRef, Template

__all__ = [
    "Decision",
    "Gallery",
    "GalleryError",
    "GalleryExistsError",
    "GalleryFile",
    "GalleryNotFoundError",
    "IdentityInfo",
    "IdentityNotFoundError",
    "KeySource",
    "KeySourceError",
    "LockTimeoutError",
    "Match",
    "Matcher",
    "ModelMismatchError",
    "ModelRef",
    "Passphrase",
    "RawKey",
    "TamperedError",
    "Template",
    "WrongKeyError",
    "create_key_file",
    "load_key_file",
    "load_systemd_credential",
]
