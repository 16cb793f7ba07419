"""The gallery as the running door sees it: reloaded within one frame of every change.

The gallery writer replaces the file atomically (new inode, then rename), so a ``stat`` per
frame (a few microseconds) tells whether a new generation is there: the stamp is the file's
device, inode, size, mtime and ctime, plus those of the key file when there is one (a rekey
replaces both). On a change the file is opened and decrypted again and handed to
``on_load``; when the file is gone, cannot be decrypted or belongs to another model, the door
has *no* gallery (it refuses everyone and keeps the relay locked) until a good one appears.
The daemon never keeps running on a stale copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeface.errors import EdgefaceError

if TYPE_CHECKING:
    from edgeface.gallery.store import Gallery

Stamp = tuple[Any, ...] | None


def file_stamp(path: Path) -> Stamp:
    """What changes whenever the file is replaced or rewritten; None when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ("error", exc.errno)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class GalleryEvent:
    """A reload: ``ok`` with what ``on_load`` reported (for the audit), or the reason it failed."""

    ok: bool
    fields: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


class LiveGallery:
    """Polls the gallery file; ``available`` is False while there is no usable gallery."""

    def __init__(
        self,
        path: Path,
        open_gallery: Callable[[], Gallery],
        on_load: Callable[[Gallery], dict[str, Any]],
        *,
        also_watch: Sequence[Path] = (),
    ) -> None:
        self.path = Path(path)
        self.open_gallery = open_gallery
        self.on_load = on_load
        self.watched = (self.path, *(Path(p) for p in also_watch))
        self._stamp: tuple[Stamp, ...] | None = None
        self.available = False
        self.generation: int | None = None
        self.reloads = 0
        #: the outcome of the latest reload (the daemon audits the one made before it started)
        self.last: GalleryEvent | None = None

    def poll(self, *, raise_errors: bool = False) -> GalleryEvent | None:
        """Reload when the files changed since the last look; None when nothing changed.

        ``raise_errors``: re-raise a failed load (the first load at start-up, whose typed error
        becomes the exit code) after recording it.
        """
        stamp = tuple(file_stamp(p) for p in self.watched)
        if stamp == self._stamp:
            return None
        # Taken before opening: a write racing with the open is seen again at the next poll.
        self._stamp = stamp
        self.reloads += 1
        try:
            gallery = self.open_gallery()
            fields = dict(self.on_load(gallery))
        except (EdgefaceError, OSError, ValueError) as exc:
            self.available = False
            self.generation = None
            self.last = GalleryEvent(False, reason=f"{type(exc).__name__}: {exc}"[:300])
            if raise_errors:
                raise
            return self.last
        self.available = True
        self.generation = int(gallery.generation)
        fields.setdefault("generation", self.generation)
        fields.setdefault("identities", len(gallery))
        self.last = GalleryEvent(True, fields)
        return self.last
