"""Putting a good backup back in place of a damaged gallery, keeping the damaged file."""

from __future__ import annotations

from pathlib import Path

from edgeface.gallery.durable import WriterLock, atomic_write, set_aside_damaged
from edgeface.gallery.store import Gallery, GalleryFile


def restore_from_backup(gf: GalleryFile) -> tuple[Gallery, Path]:
    """Replace ``gf``'s file with its backup; return the backup and where the damaged file
    went. Raises (and changes nothing) if the backup does not decrypt either. Every damaged
    copy is kept under a name of its own (:func:`set_aside_damaged`)."""
    with WriterLock(gf.path):
        backup = gf.load_backup()
        damaged = set_aside_damaged(gf.path)
        atomic_write(gf.path, gf.backup_path.read_bytes(), backup=False)
    return backup, damaged
