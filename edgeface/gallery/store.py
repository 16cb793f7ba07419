"""The gallery: enrolled identities and their templates, and the encrypted file they live in.

:class:`Gallery` is the in-memory model (no I/O); :class:`GalleryFile` reads and writes it
through :mod:`~edgeface.gallery.format` (encryption) and :mod:`~edgeface.gallery.durable`
(atomic replace, backup, writer lock).

Templates are kept *columnar*: one ``(T, D)`` float32 matrix plus per-template quality,
model index and creation time, with rows grouped by identity. Opening a 10k-person gallery
therefore creates no per-template Python objects, and the matcher is built with one gather.
Each identity keeps at most ``max_templates`` templates, the ones with the best quality.
"""

from __future__ import annotations

import hashlib
import os
import time
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeface.errors import StorageError
from edgeface.gallery import format as fmt
from edgeface.gallery import payload
from edgeface.gallery.durable import (
    WriterLock,
    atomic_write,
    backup_path,
    read_file,
    remove_stale_temps,
)
from edgeface.gallery.errors import (
    GalleryError,
    GalleryExistsError,
    IdentityNotFoundError,
    ModelMismatchError,
    TamperedError,
)
from edgeface.gallery.keys import KeySource
from edgeface.gallery.matching import Decision, Match, Matcher
from edgeface.gallery.payload import IdentityRow, TemplateColumns

DEFAULT_DIM = 128
DEFAULT_MAX_TEMPLATES = 5
MAX_NAME_CHARS = 200
#: the aligned face a template was made from, kept only by galleries with ``keep_crops``
CROP_SHAPE = (112, 112, 3)
CROP_BYTES = int(np.prod(CROP_SHAPE))


class ModelBound(Protocol):
    """Anything bound to one embedding model (an Embedder): what :meth:`ModelRef.of` reads."""

    @property
    def model_id(self) -> str: ...

    @property
    def model_sha256(self) -> str: ...


@dataclass(frozen=True)
class ModelRef:
    """Which embedding model made a template: its manifest id and the sha256 of its weights."""

    id: str
    sha256: str

    def describe(self) -> str:
        return f"{self.id} (sha256 {self.sha256[:12]})"

    @classmethod
    def of(cls, embedder: ModelBound) -> ModelRef:
        """From anything with ``model_id`` and ``model_sha256`` (an Embedder)."""
        return cls(str(embedder.model_id), str(embedder.model_sha256))


def _configure_hint(embedding_space: str) -> str:
    """`` (embedder model = "NAME")`` for the manifest models of that space, if any."""
    try:
        from edgeface.modelstore.manifest import load_manifest

        names = [e.name for e in load_manifest().values() if e.embedding_space == embedding_space]
    except Exception:  # a hint must never hide the real error
        return ""
    preferred = [n for n in names if n.endswith("-dyn")] or names
    return f' (embedder model = "{preferred[0]}")' if preferred else ""


@dataclass
class Template:
    """One enrolled embedding with its quality score and the model that produced it."""

    embedding: np.ndarray
    quality: float
    model: ModelRef
    created: float = field(default_factory=time.time)
    #: aligned 112x112 RGB uint8 crop; stored only by a gallery with ``keep_crops`` so that a
    #: new embedder can re-embed it (``edgeface gallery migrate``)
    crop: np.ndarray | None = None


@dataclass(frozen=True)
class IdentityInfo:
    """What ``list`` shows: never the embeddings."""

    id: str
    name: str
    created: float
    updated: float
    n_templates: int
    best_quality: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "updated": self.updated,
            "templates": self.n_templates,
            "best_quality": round(self.best_quality, 4),
        }


def _clean_name(name: str) -> str:
    name = unicodedata.normalize("NFC", str(name)).strip()
    if not name:
        raise GalleryError("a display name must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise GalleryError(f"display name too long ({len(name)} > {MAX_NAME_CHARS} characters)")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise GalleryError("a display name must not contain control characters")
    return name


class Gallery:
    """Enrolled identities, in memory. Mutations mark it dirty; :class:`GalleryFile` saves it."""

    def __init__(
        self,
        *,
        dim: int = DEFAULT_DIM,
        max_templates: int = DEFAULT_MAX_TEMPLATES,
        model: ModelRef | None = None,
        created: float | None = None,
        generation: int = 0,
        source: str = "<gallery>",
        keep_crops: bool = False,
    ) -> None:
        if max_templates < 1:
            raise GalleryError("max_templates must be at least 1")
        self.dim = int(dim)
        self.max_templates = int(max_templates)
        self.model = model
        self.created = time.time() if created is None else float(created)
        self.generation = int(generation)
        self.source = source
        #: opt-in: keep each template's aligned crop (encrypted like the rest) for migrations
        self.keep_crops = bool(keep_crops)
        self.dirty = False
        # one row per identity, in template order
        self._rows: list[IdentityRow] = []
        self._index: dict[str, int] = {}
        self._models: list[ModelRef] = [] if model is None else [model]
        # template columns, appended per enrollment and merged on use; crops is
        # (n, CROP_BYTES) uint8 with keep_crops, else (n, 0); an all-zero row is a template
        # enrolled without a crop
        self._chunks: list[TemplateColumns] = []
        self._matcher: Matcher | None = None

    # ----------------------------------------------------------------- columns
    @property
    def _crop_width(self) -> int:
        return CROP_BYTES if self.keep_crops else 0

    def _all_columns(self) -> TemplateColumns:
        """All template columns, merging pending additions once."""
        if not self._chunks:
            return TemplateColumns(
                np.zeros(0, np.float64),
                np.zeros((0, self.dim), np.float32),
                np.zeros(0, np.float32),
                np.zeros(0, np.uint16),
                np.zeros((0, self._crop_width), np.uint8),
            )
        if len(self._chunks) > 1:
            merged = (np.concatenate(parts) for parts in zip(*self._chunks, strict=True))
            self._chunks = [TemplateColumns(*merged)]
        return self._chunks[0]

    def _columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(created, emb, quality, model_idx)."""
        created, emb, quality, model, _ = self._all_columns()
        return created, emb, quality, model

    def _offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self._counts())])

    def _counts(self) -> np.ndarray:
        """Templates per identity, in row order."""
        rows = self._rows
        return np.fromiter((r.n_templates for r in rows), dtype=np.int64, count=len(rows))

    def _reindex(self) -> None:
        self._index = {r.id: i for i, r in enumerate(self._rows)}

    def _touch(self) -> None:
        self.dirty = True
        self._matcher = None

    # ----------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._rows)

    @property
    def n_templates(self) -> int:
        return int(sum(r.n_templates for r in self._rows))

    def _info(self, i: int, quality: np.ndarray, offsets: np.ndarray) -> IdentityInfo:
        r = self._rows[i]
        q = quality[offsets[i] : offsets[i + 1]]
        best = float(q.max()) if q.size else 0.0
        return IdentityInfo(r.id, r.name, r.created, r.updated, r.n_templates, best)

    def identities(self) -> list[IdentityInfo]:
        """All identities, sorted by display name (then id)."""
        _, _, quality, _ = self._columns()
        offsets = self._offsets()
        infos = [self._info(i, quality, offsets) for i in range(len(self._rows))]
        return sorted(infos, key=lambda x: (x.name.casefold(), x.id))

    def info(self, identity_id: str) -> IdentityInfo:
        if identity_id not in self._index:
            raise IdentityNotFoundError(f"{self.source}: no identity with id {identity_id}")
        _, _, quality, _ = self._columns()
        return self._info(self._index[identity_id], quality, self._offsets())

    def templates(self, identity_id: str) -> list[Template]:
        """The templates of one identity (copies), best quality first."""
        i = self._index.get(identity_id)
        if i is None:
            raise IdentityNotFoundError(f"{self.source}: no identity with id {identity_id}")
        created, emb, quality, model, crops = self._all_columns()
        a, b = self._offsets()[i : i + 2]
        return [
            Template(
                emb[j].copy(),
                float(quality[j]),
                self._models[int(model[j])],
                float(created[j]),
                crops[j].reshape(CROP_SHAPE).copy() if crops.shape[1] and crops[j].any() else None,
            )
            for j in range(a, b)
        ]

    def missing_crops(self) -> int:
        """Templates that have no stored crop (all of them unless ``keep_crops``)."""
        crops = self._all_columns().crops
        if not crops.shape[1]:
            return len(crops)
        return int(np.count_nonzero(~crops.any(axis=1)))

    def set_keep_crops(self, keep: bool) -> None:
        """Turn crop storage on (templates enrolled before keep no crop) or off (crops are
        dropped from the next save)."""
        if bool(keep) == self.keep_crops:
            return
        cols = self._all_columns()
        self.keep_crops = bool(keep)
        n = len(cols.created)
        crops = np.zeros((n, self._crop_width), np.uint8)
        self._chunks = [cols._replace(crops=crops)] if n else []
        self._touch()

    def find(self, name_or_id: str) -> IdentityInfo:
        """Look up by exact id, else by display name (case-insensitive); refuse ambiguity."""
        if name_or_id in self._index:
            return self.info(name_or_id)
        key = unicodedata.normalize("NFC", name_or_id).strip().casefold()
        hits = [r.id for r in self._rows if r.name.casefold() == key]
        if not hits:
            raise IdentityNotFoundError(f"{self.source}: nobody named {name_or_id!r} is enrolled")
        if len(hits) > 1:
            raise IdentityNotFoundError(
                f"{self.source}: {len(hits)} identities are named {name_or_id!r}; "
                f"use an id instead ({', '.join(hits)})"
            )
        return self.info(hits[0])

    def by_name(self, name: str) -> list[IdentityInfo]:
        key = unicodedata.normalize("NFC", name).strip().casefold()
        return [self.info(r.id) for r in self._rows if r.name.casefold() == key]

    # ----------------------------------------------------------------- model binding
    def check_model(self, model: ModelRef) -> None:
        """Refuse to use templates made by another model (different weights = different space)."""
        if self.model is not None and self.model != model:
            raise ModelMismatchError(
                f"{self.source}: gallery was enrolled with model {self.model.describe()}, "
                f"but the current embedder is {model.describe()}; embeddings of different "
                "models cannot be compared. Migrate the gallery to the current model "
                "(edgeface gallery migrate --model NAME --embedder FILE; it needs the face "
                "crops kept at enrolment, see docs/deploy.md) or re-enroll everyone with the "
                f"current model, or keep using the old model{_configure_hint(self.model.id)}"
            )

    def _model_index(self, model: ModelRef) -> int:
        self.check_model(model)
        if self.model is None:
            self.model = model
        if model not in self._models:
            self._models.append(model)
        return self._models.index(model)

    # ----------------------------------------------------------------- mutations
    def _prepare(self, templates: Sequence[Template]) -> TemplateColumns:
        if not templates:
            raise GalleryError("an identity needs at least one template")
        emb = np.stack([np.asarray(t.embedding, dtype=np.float32).reshape(-1) for t in templates])
        # an empty gallery (``gallery init``) takes the size of the first model that enrolls
        # into it: 512 for EdgeFace, 128 for MobileFaceNet; which model may enroll is
        # checked below (the model binding)
        if emb.shape[1] != self.dim and self._rows:
            raise GalleryError(
                f"{self.source}: embedding has {emb.shape[1]} values, gallery expects {self.dim}"
            )
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if not np.all(np.isfinite(emb)) or np.any(norms < 1e-6):
            raise GalleryError("embedding is not finite or has zero length")
        self.dim = int(emb.shape[1])
        model_idx = np.array([self._model_index(t.model) for t in templates], np.uint16)
        quality = np.array([t.quality for t in templates], np.float32)
        created = np.array([t.created for t in templates], np.float64)
        crops = np.zeros((len(templates), self._crop_width), np.uint8)
        if self.keep_crops:
            for row, t in zip(crops, templates, strict=True):
                if t.crop is not None:
                    crop = np.asarray(t.crop)
                    if crop.shape != CROP_SHAPE or crop.dtype != np.uint8:
                        raise GalleryError(f"a template crop must be uint8 {CROP_SHAPE}")
                    row[:] = crop.reshape(-1)
        keep = np.argsort(-quality, kind="stable")[: self.max_templates]
        return TemplateColumns(
            created[keep], (emb / norms)[keep], quality[keep], model_idx[keep], crops[keep]
        )

    def add_identity(
        self,
        name: str,
        templates: Sequence[Template],
        *,
        identity_id: str | None = None,
        created: float | None = None,
        updated: float | None = None,
    ) -> IdentityInfo:
        """Enroll a new person (a fresh uuid4 unless ``identity_id`` is given, as on import)."""
        name = _clean_name(name)
        iid = identity_id or str(uuid.uuid4())
        if iid in self._index:
            raise GalleryError(f"{self.source}: identity id {iid} already exists")
        cols = self._prepare(templates)
        now = time.time()
        created = now if created is None else created
        row = IdentityRow(
            iid, name, created, now if updated is None else updated, len(cols.created)
        )
        self._rows.append(row)
        self._index[iid] = len(self._rows) - 1
        self._chunks.append(cols)
        self._touch()
        # built from the new chunk alone: merging all columns here would make bulk
        # enrollment quadratic
        best = float(cols.quality.max())
        return IdentityInfo(row.id, row.name, row.created, row.updated, row.n_templates, best)

    def _pop(self, identity_id: str) -> tuple[IdentityRow, list[Template]]:
        templates = self.templates(identity_id)
        i = self._index[identity_id]
        cols = self._all_columns()
        a, b = self._offsets()[i : i + 2]
        keep = np.ones(len(cols.created), bool)
        keep[a:b] = False
        self._chunks = [TemplateColumns(*(c[keep] for c in cols))]
        row = self._rows.pop(i)
        self._reindex()
        self._touch()
        return row, templates

    def add_templates(self, identity_id: str, templates: Sequence[Template]) -> IdentityInfo:
        """Add templates to an enrolled person, keeping the best ``max_templates``."""
        if identity_id not in self._index:
            raise IdentityNotFoundError(f"{self.source}: no identity with id {identity_id}")
        for t in templates:
            self.check_model(t.model)
        row, old = self._pop(identity_id)
        return self.add_identity(
            row.name, [*old, *templates], identity_id=row.id, created=row.created
        )

    def rename(self, identity_id: str, name: str) -> IdentityInfo:
        i = self._index.get(identity_id)
        if i is None:
            raise IdentityNotFoundError(f"{self.source}: no identity with id {identity_id}")
        self._rows[i] = self._rows[i]._replace(name=_clean_name(name), updated=time.time())
        self._touch()
        return self.info(identity_id)

    def remove(self, identity_id: str) -> IdentityInfo:
        """Forget a person and all their templates (the file is rewritten on save)."""
        info = self.info(identity_id)
        self._pop(identity_id)
        return info

    def merge(self, other: Gallery, *, replace: bool = False) -> dict[str, int]:
        """Import ``other``'s identities. Same id: keep the newer one (or ``other``'s if
        ``replace``). Counts of added / updated / skipped identities are returned."""
        if other.model is not None:
            self.check_model(other.model)
        stats = {"added": 0, "updated": 0, "skipped": 0}
        for r in list(other._rows):
            iid, name, created, updated = r.id, r.name, r.created, r.updated
            templates = other.templates(iid)
            if iid in self._index:
                mine = self._rows[self._index[iid]]
                if not replace and mine.updated >= updated:
                    stats["skipped"] += 1
                    continue
                self._pop(iid)
                stats["updated"] += 1
            else:
                stats["added"] += 1
            self.add_identity(name, templates, identity_id=iid, created=created, updated=updated)
        return stats

    # ----------------------------------------------------------------- matching
    def matcher(self) -> Matcher:
        """Search structure over all templates, rebuilt only after a change."""
        if self._matcher is None:
            _, emb, _, _ = self._columns()
            rows = self._rows
            self._matcher = Matcher(
                emb, self._counts(), [r.id for r in rows], [r.name for r in rows]
            )
        return self._matcher

    def search(self, probe: np.ndarray, k: int = 5) -> list[Match]:
        return self.matcher().search(probe, k)

    def identify(
        self, probe: np.ndarray, threshold: float, k: int = 5, model: ModelRef | None = None
    ) -> Decision:
        """Open-set decision for one probe embedding; pass ``model`` to enforce the binding."""
        if model is not None:
            self.check_model(model)
        return self.matcher().decide(probe, threshold, k)

    @classmethod
    def from_arrays(
        cls,
        names: Sequence[str],
        embeddings: np.ndarray,
        counts: Sequence[int],
        model: ModelRef,
        *,
        quality: np.ndarray | None = None,
        max_templates: int = DEFAULT_MAX_TEMPLATES,
    ) -> Gallery:
        """Bulk-build a gallery (benchmarks, migrations): ``embeddings`` (T, D) rows grouped
        by identity, ``counts[i]`` rows for ``names[i]``. Ids are fresh uuid4s."""
        emb = np.asarray(embeddings, np.float32)
        counts_a = np.asarray(counts, np.int64)
        if len(names) != len(counts_a) or int(counts_a.sum()) != len(emb) or emb.ndim != 2:
            raise GalleryError("names, counts and embedding rows do not match")
        if counts_a.size and (counts_a.min() < 1 or counts_a.max() > max_templates):
            raise GalleryError(f"each identity needs 1..{max_templates} templates")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if not np.all(np.isfinite(emb)) or np.any(norms < 1e-6):
            raise GalleryError("embedding is not finite or has zero length")
        g = cls(dim=emb.shape[1], max_templates=max_templates, model=model)
        now = time.time()
        g._rows = [
            IdentityRow(str(uuid.uuid4()), _clean_name(n), now, now, int(c))
            for n, c in zip(names, counts_a, strict=True)
        ]
        g._reindex()
        t = len(emb)
        q = np.ones(t, np.float32) if quality is None else np.asarray(quality, np.float32)
        g._chunks = [
            TemplateColumns(
                np.full(t, now), emb / norms, q, np.zeros(t, np.uint16), np.zeros((t, 0), np.uint8)
            )
        ]
        g.dirty = True
        return g

    # ----------------------------------------------------------------- (de)serialization
    def fingerprint(self) -> str:
        """Digest of the content (ids, names, times, templates), ignoring the generation."""
        created, emb, quality, model = self._columns()
        # rows as the lists they always were, so a fingerprint does not change with the code
        rows = [r.to_list() for r in self._rows]
        h = hashlib.sha256(repr([rows, [m.__dict__ for m in self._models]]).encode())
        for a in (created, emb, quality, model):
            h.update(np.ascontiguousarray(a).tobytes())
        if self.keep_crops:  # galleries without crops keep the fingerprint they always had
            h.update(np.ascontiguousarray(self._all_columns().crops).tobytes())
        return h.hexdigest()

    def to_payload(self) -> bytes:
        created, emb, quality, model, crops = self._all_columns()
        meta: dict[str, Any] = {
            "dim": self.dim,
            "max_templates": self.max_templates,
            "generation": self.generation,
            "created": self.created,
            "models": [[m.id, m.sha256] for m in self._models],
        }
        if self.keep_crops:
            meta["crop_shape"] = list(CROP_SHAPE)
        cols = payload.Columns(
            meta, self._rows, created, emb, quality, model, crops if self.keep_crops else None
        )
        return payload.encode(meta, cols)

    @classmethod
    def from_payload(cls, data: bytes, header: dict[str, Any], source: str) -> Gallery:
        cols = payload.decode(data, source)
        hm = header.get("model")
        model = ModelRef(str(hm["id"]), str(hm["sha256"])) if isinstance(hm, dict) else None
        try:
            g = cls(
                dim=int(cols.meta["dim"]),
                max_templates=int(cols.meta.get("max_templates", DEFAULT_MAX_TEMPLATES)),
                model=model,
                created=float(cols.meta.get("created", 0.0)),
                generation=int(cols.meta.get("generation", 0)),
                source=source,
                keep_crops=cols.crops is not None,
            )
            g._models = [ModelRef(str(m[0]), str(m[1])) for m in cols.meta["models"]]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise TamperedError(f"{source}: corrupt gallery metadata ({exc})") from exc
        g._rows = cols.identities
        g._reindex()
        if cols.quality.size:
            crops = cols.crops
            if crops is None:
                crops = np.zeros((len(cols.quality), 0), np.uint8)
            g._chunks = [TemplateColumns(cols.created, cols.emb, cols.quality, cols.model, crops)]
        return g


class GalleryFile:
    """A gallery on disk, opened with one key source.

    ``load()`` takes no lock (readers see complete files thanks to atomic rename).
    ``edit()`` is the writers' transaction: lock, re-read, modify, save, unlock; use it for
    every change so that concurrent enrollments never overwrite each other.
    """

    def __init__(self, path: str | os.PathLike[str], key: KeySource, *, lock_timeout: float = 30.0):
        self.path = Path(path)
        self.key = key
        self.lock_timeout = lock_timeout
        self._kdf: dict[str, Any] | None = None

    @property
    def backup_path(self) -> Path:
        return backup_path(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def _seal(self, g: Gallery, key: KeySource, kdf: dict[str, Any]) -> bytes:
        header = {
            "app": "edgeface-gallery",
            "kdf": kdf,
            "dim": g.dim,
            "model": None if g.model is None else {"id": g.model.id, "sha256": g.model.sha256},
        }
        return fmt.seal(header, g.to_payload(), key, str(self.path))

    def load(self, path: Path | None = None) -> Gallery:
        """Open and decrypt (``path`` defaults to the gallery; pass the backup to read it)."""
        p = path or self.path
        data = read_file(p)
        header, plain = fmt.open_sealed(data, self.key, str(p))
        if p == self.path:
            self._kdf = header["kdf"]
        return Gallery.from_payload(plain, header, str(p))

    def load_backup(self) -> Gallery:
        return self.load(self.backup_path)

    def header(self) -> dict[str, Any]:
        """The authenticated-on-open but readable-without-key header (model, KDF)."""
        return fmt.read_header(read_file(self.path), str(self.path))

    def save(self, g: Gallery, *, purge_backup: bool = False) -> None:
        """Seal and atomically replace the file. Call inside :meth:`edit` (holds the lock).

        ``purge_backup`` also overwrites the ``.bak`` generation with the new content, so that
        a removed person is gone from both files (used by ``remove`` and ``rekey``).
        """
        kdf = self._kdf or self.key.new_kdf()
        g.generation += 1
        try:
            data = self._seal(g, self.key, kdf)
            atomic_write(self.path, data)
        except BaseException:
            g.generation -= 1
            raise
        self._kdf = kdf
        g.dirty = False
        if purge_backup:
            try:
                atomic_write(self.backup_path, data, backup=False)
            except StorageError as exc:
                raise StorageError(
                    f"{self.path}: saved, but the old generation in {self.backup_path} could "
                    f"not be overwritten ({exc}); delete that file by hand"
                ) from exc

    def create(
        self,
        *,
        model: ModelRef | None = None,
        max_templates: int = DEFAULT_MAX_TEMPLATES,
        dim: int = DEFAULT_DIM,
        keep_crops: bool = False,
    ) -> Gallery:
        """Write a new, empty gallery; refuses to overwrite an existing one."""
        with WriterLock(self.path, self.lock_timeout):
            if self.path.exists():
                raise GalleryExistsError(f"{self.path}: a gallery already exists here")
            g = Gallery(
                dim=dim,
                max_templates=max_templates,
                model=model,
                source=str(self.path),
                keep_crops=keep_crops,
            )
            self._kdf = self.key.new_kdf()
            self.save(g)
            return g

    @contextmanager
    def edit(self, *, purge_backup: bool = False) -> Iterator[Gallery]:
        """Writers' transaction: the yielded gallery is saved on exit if it changed.

        If the block raises, nothing is written.
        """
        with WriterLock(self.path, self.lock_timeout):
            remove_stale_temps(self.path)
            g = self.load()
            yield g
            if g.dirty:
                self.save(g, purge_backup=purge_backup)

    def rekey(self, new_key: KeySource) -> Gallery:
        """Re-encrypt under ``new_key``; the backup is rewritten too, so no generation under
        the old key is left behind (flash wear levelling may still hold old blocks)."""
        with WriterLock(self.path, self.lock_timeout):
            remove_stale_temps(self.path)
            g = self.load()
            old_key, old_kdf = self.key, self._kdf
            self.key, self._kdf = new_key, new_key.new_kdf()
            try:
                self.save(g, purge_backup=True)
            except BaseException:
                if g.dirty:  # the main file was not replaced: still under the old key
                    self.key, self._kdf = old_key, old_kdf
                raise
            return g

    def export_to(self, dest: str | os.PathLike[str], dest_key: KeySource | None = None) -> Gallery:
        """Write a verified, re-encrypted copy to ``dest`` (never plaintext)."""
        d = Path(dest)
        if d.resolve() == self.path.resolve():
            raise GalleryError(f"{d}: export destination is the gallery itself")
        g = self.load()
        key = dest_key or self.key
        data = GalleryFile(d, key)._seal(g, key, key.new_kdf())
        atomic_write(d, data, backup=False)
        return g
