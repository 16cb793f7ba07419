"""Re-embed a gallery with another embedder, from the aligned crops it kept.

Embeddings of two models live in different spaces, so a new embedder (an INT8 build, a
retrained model) cannot use the old templates. A gallery created with ``keep_crops`` stores
each template's aligned 112x112 crop, encrypted with the rest; :func:`reembed` runs the new
embedder on those crops and returns a gallery with the same identities (ids, names, times,
template qualities and crops) bound to the new model. Nothing is ever dropped: a gallery with
any template lacking its crop is refused as a whole.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edgeface.gallery.durable import WriterLock
from edgeface.gallery.errors import GalleryError
from edgeface.gallery.store import CROP_SHAPE, Gallery, GalleryFile, ModelBound, ModelRef, Template


class CropEmbedder(ModelBound, Protocol):
    """What re-embedding needs from an embedder: its model binding, size and ``embed``."""

    @property
    def dim(self) -> int: ...

    def embed(self, crops: np.ndarray) -> np.ndarray: ...


class MigrationRefusedError(GalleryError):
    """The gallery cannot be re-embedded (it stores no crops for some templates)."""


def needs_migration(gallery_model: ModelRef | None, embedder_model: ModelRef) -> bool:
    return gallery_model is not None and gallery_model != embedder_model


def check_migratable(g: Gallery, where: str) -> None:
    """Raise the one-line refusal an operator sees when ``g`` cannot be re-embedded."""
    missing = g.missing_crops()
    if len(g) and missing:
        raise MigrationRefusedError(
            f"{where}: {len(g)} people are enrolled with another embedder"
            f" and {missing} of {g.n_templates} templates have no stored face crop, so they cannot "
            "be re-embedded for the new embedder; re-enroll everyone with a gallery that keeps "
            "crops (edgeface gallery settings --keep-crops on), or keep the old embedder"
        )


def reembed(g: Gallery, embedder: CropEmbedder, *, batch: int = 64) -> Gallery:
    """A new generation of ``g`` whose every template is ``embedder``'s embedding of its crop."""
    check_migratable(g, g.source)
    model = ModelRef.of(embedder)
    out = Gallery(
        dim=int(embedder.dim),
        max_templates=g.max_templates,
        model=model if len(g) or g.model is not None else None,
        created=g.created,
        generation=g.generation,
        source=g.source,
        keep_crops=g.keep_crops,
    )
    rows = list(g._rows)  # identity order is kept, so the new file lists people as before
    for iid, name, created, updated, _n in rows:
        old = g.templates(iid)
        crops = np.stack([t.crop for t in old if t.crop is not None]).reshape(-1, *CROP_SHAPE)
        emb = np.concatenate(
            [embedder.embed(crops[i : i + batch]) for i in range(0, len(crops), batch)]
        )
        new = [
            Template(e, t.quality, model, t.created, t.crop) for e, t in zip(emb, old, strict=True)
        ]
        out.add_identity(name, new, identity_id=iid, created=created, updated=updated)
    out.dirty = True
    return out


def migrate_file(gf: GalleryFile, embedder: CropEmbedder) -> Gallery | None:
    """Re-embed ``gf`` with ``embedder`` under its writer lock and save it (the previous
    generation stays in the ``.bak`` file); None when it already uses that model."""
    with WriterLock(gf.path, gf.lock_timeout):
        g = gf.load()
        if not needs_migration(g.model, ModelRef.of(embedder)):
            return None
        migrated = reembed(g, embedder)
        gf.save(migrated)
    return migrated
