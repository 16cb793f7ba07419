"""Enrollment: photos, a folder per person, or camera frames -> gated, ranked templates.

The pipeline is injected (a :class:`~edgeface.recognition.FacePipeline`, or anything with
``analyze(rgb) -> [FaceResult]`` and an ``embedder`` with ``model_id``/``model_sha256``), so
this module has no model loading of its own and the store/matching tests need no models. The
face is chosen by the recognition layer's one :func:`select_face` (size first, then the
largest), like everywhere else.

Rules, in order, for each image or frame:

1. no face found -> rejected ("no face");
2. faces at least ``min_face_size`` big are the *candidates*; tiny background faces are
   ignored so a crowd behind the person does not block enrollment, but if there is no
   candidate the image is rejected as "face too small";
3. more than one candidate -> rejected ("several faces") unless ``take_largest``;
4. the chosen face must pass the quality gates (sharpness, pose, detection score);
5. of the accepted images the ``max_templates`` best by quality score are kept.

Before a new person is added, :func:`screen_new_person` compares their templates with everyone
enrolled. A match at the verification threshold (FAR 1e-3) is a *duplicate*: the same person
enrolled twice, or someone the door cannot tell apart from an enrolled person; it is refused
unless the operator says otherwise (``--allow-duplicate``). A match at the looser look-alike
threshold (FAR 1e-2) is a *look-alike*: a warning with the score, refused with ``--strict``.
Either makes later identifications ambiguous: the door may open for one as the other.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgeface.errors import ImageError, NoFaceError
from edgeface.gallery.errors import DuplicateIdentityError, LookalikeError
from edgeface.gallery.matching import Match
from edgeface.gallery.quality import FaceQuality, QualityGates, assess
from edgeface.gallery.store import Gallery, ModelRef, Template
from edgeface.imaging import load_image
from edgeface.recognition.pipeline import FaceEmbedder, FaceResult, select_face

if TYPE_CHECKING:
    from edgeface.liveness import LivenessChecker, LivenessResult

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}


class PipelineLike(Protocol):
    """What enrollment needs from :class:`~edgeface.recognition.FacePipeline`."""

    embedder: FaceEmbedder

    def analyze(self, image: np.ndarray) -> list[FaceResult]: ...


@dataclass
class Candidate:
    """The outcome for one image or frame."""

    source: str
    template: Template | None = None
    quality: FaceQuality | None = None
    reason: str | None = None  # why it was rejected
    #: the liveness verdict when a check ran (a kiosk tells "a photo?" from "hold still")
    liveness: LivenessResult | None = None

    @property
    def accepted(self) -> bool:
        return self.template is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "accepted": self.accepted,
            "reason": self.reason,
            "quality": None if self.template is None else round(self.template.quality, 4),
            "measures": None if self.quality is None else self.quality.to_dict(),
        }


@dataclass
class EnrollmentPlan:
    """Templates chosen for one person, with every image's verdict."""

    name: str
    candidates: list[Candidate] = field(default_factory=list)
    templates: list[Template] = field(default_factory=list)

    @property
    def rejected(self) -> list[Candidate]:
        return [c for c in self.candidates if not c.accepted]


class Enroller:
    """Turns images into quality-gated templates with an injected face pipeline."""

    def __init__(
        self,
        pipeline: PipelineLike,
        *,
        gates: QualityGates | None = None,
        max_templates: int = 5,
        take_largest: bool = False,
        liveness: LivenessChecker | None = None,
    ) -> None:
        self.pipeline = pipeline
        #: a :class:`~edgeface.liveness.LivenessChecker`: photos of photos are refused
        self.liveness = liveness
        self.gates = gates or QualityGates()
        self.max_templates = max_templates
        self.take_largest = take_largest
        self.model = ModelRef.of(pipeline.embedder)

    def assess_image(
        self, image: np.ndarray, source: str, faces: Sequence[FaceResult] | None = None
    ) -> Candidate:
        """Apply the rules to one RGB image; ``faces`` passes the pipeline's ``analyze(image)``
        when the caller already has it (the kiosk analyzes each frame once for guidance too)."""
        faces = self.pipeline.analyze(image) if faces is None else faces
        if not faces:
            return Candidate(source, reason="no face found")
        min_size = self.gates.min_face_size
        face = select_face([r.face for r in faces], image.shape, "largest", min_size=min_size)
        if face is None:
            largest = max(faces, key=lambda r: r.face.area)
            return Candidate(
                source,
                reason=f"face too small ({largest.face.size:.0f} px < "
                f"{self.gates.min_face_size:.0f} px)",
            )
        big = sum(r.face.size >= min_size for r in faces)
        if big > 1 and not self.take_largest:
            return Candidate(
                source, reason=f"several faces ({big}); use --take-largest to pick one"
            )
        chosen = next(r for r in faces if r.face is face)
        quality = assess(chosen.face, chosen.crop)
        failures = quality.failures(self.gates)
        if failures:
            return Candidate(source, quality=quality, reason="; ".join(failures))
        live = None
        if self.liveness is not None:
            live = self.liveness.check(image, chosen.face)
            if not live.live:
                why = f"not a live face (liveness {live.score:.3f} < {live.threshold:.3f})"
                return Candidate(
                    source, quality=quality, reason=f"{why}: a photo or a screen?", liveness=live
                )
        template = Template(
            embedding=np.asarray(chosen.embedding, np.float32),
            quality=quality.score(self.gates),
            model=self.model,
            created=time.time(),
            crop=chosen.crop,  # kept only by a gallery with keep_crops
        )
        return Candidate(source, template=template, quality=quality, liveness=live)

    def assess_file(self, path: str | os.PathLike[str]) -> Candidate:
        try:
            image = load_image(path)
        except ImageError as exc:
            return Candidate(str(path), reason=str(exc))
        return self.assess_image(image, str(path))

    def plan(self, name: str, candidates: Iterable[Candidate]) -> EnrollmentPlan:
        cands = list(candidates)
        ok = sorted(
            (c for c in cands if c.template is not None),
            key=lambda c: -c.template.quality,  # type: ignore[union-attr]
        )
        templates = [c.template for c in ok[: self.max_templates] if c.template is not None]
        return EnrollmentPlan(name, cands, templates)

    def from_files(self, name: str, paths: Sequence[str | os.PathLike[str]]) -> EnrollmentPlan:
        return self.plan(name, (self.assess_file(p) for p in paths))

    def from_frames(
        self,
        name: str,
        frames: Iterable[tuple[str, np.ndarray]],
        *,
        max_frames: int = 100,
        enough: int | None = None,
    ) -> EnrollmentPlan:
        """Look at up to ``max_frames`` (label, RGB) frames; stop early after ``enough``
        accepted ones (default: twice ``max_templates``, so the best can still be chosen)."""
        enough = enough or 2 * self.max_templates
        cands: list[Candidate] = []
        accepted = 0
        for i, (label, frame) in enumerate(frames):
            if i >= max_frames:
                break
            c = self.assess_image(frame, label)
            cands.append(c)
            accepted += c.accepted
            if accepted >= enough:
                break
        return self.plan(name, cands)


def image_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``directory`` (sorted; hidden files skipped)."""
    d = Path(directory)
    return sorted(
        p
        for p in d.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def person_dirs(root: str | os.PathLike[str]) -> list[tuple[str, list[Path]]]:
    """``root/<Display Name>/*.jpg`` -> [(name, files)]; underscores become spaces."""
    r = Path(root)
    if not r.is_dir():
        raise ImageError(f"{r}: not a directory")
    out = []
    for d in sorted(p for p in r.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = image_files(d)
        if files:
            out.append((d.name.replace("_", " "), files))
    if not out:
        raise ImageError(f"{r}: no sub-directories with images (expected ROOT/<name>/*.jpg)")
    return out


def camera_config(source: str) -> dict[str, Any]:
    """``--camera`` value -> an :func:`edgeface.camera.open_source` table: a device number or
    ``/dev/videoN`` (OpenCV), ``picamera2``, a video file, or a directory of images."""
    if source == "picamera2":
        return {"kind": "picamera2"}
    if source.isdigit():
        return {"kind": "opencv", "device": int(source)}
    p = Path(source)
    if source.startswith("/dev/") or "://" in source:
        return {"kind": "opencv", "device": source}
    if p.is_dir():
        return {"kind": "images", "path": source}
    if p.is_file():
        return {"kind": "video", "path": source}
    raise ImageError(f"{source}: no such camera, video file or image directory")


def camera_frames(
    source: str, *, every: int = 3, max_frames: int | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """Every ``every``-th RGB frame of a camera source (so consecutive templates are not
    near-duplicates), labelled ``source#frameN``, among its first ``max_frames`` frames;
    ends with the stream."""
    from edgeface.camera import open_source

    with open_source(camera_config(source)) as cam:
        for frame in cam:
            if max_frames is not None and frame.index >= max_frames:
                return
            if frame.index % every == 0:
                yield f"{source}#frame{frame.index}", frame.image


def find_duplicates(
    gallery: Gallery,
    templates: Sequence[Template],
    threshold: float,
    *,
    exclude_id: str | None = None,
) -> list[Match]:
    """Enrolled people whom any of ``templates`` matches at or above ``threshold``."""
    if not templates or len(gallery) == 0:
        return []
    m = gallery.matcher()
    scores = m.scores(np.stack([t.embedding for t in templates])).max(axis=0)
    ids = m.ids
    hits = []
    for j in np.argsort(-scores):
        if scores[j] < threshold:
            break
        if ids[j] == exclude_id:
            continue
        info = gallery.info(ids[j])
        hits.append(Match(info.id, info.name, float(scores[j])))
    return hits


#: a new person scoring at this FAR's threshold against someone enrolled is a duplicate
DUPLICATE_FAR = 1e-3
#: ... and at this FAR's threshold a look-alike
LOOKALIKE_FAR = 1e-2


@dataclass(frozen=True)
class Screening:
    """Who a new person resembles among the enrolled, and how closely."""

    name: str
    duplicates: list[Match]
    lookalikes: list[Match]  # above the look-alike threshold, below the duplicate one
    duplicate_threshold: float
    lookalike_threshold: float

    def messages(self) -> list[str]:
        out = [
            f"{self.name} matches the enrolled {m.name!r} (id {m.identity_id}) with score "
            f"{m.score:.3f} >= duplicate threshold {self.duplicate_threshold:.3f}: the same "
            "person enrolled twice, or someone the door cannot tell apart"
            for m in self.duplicates
        ]
        out += [
            f"{self.name} looks like the enrolled {m.name!r} (id {m.identity_id}): score "
            f"{m.score:.3f} >= look-alike threshold {self.lookalike_threshold:.3f}"
            for m in self.lookalikes
        ]
        return out

    def enforce(self, *, strict: bool = False, allow_duplicate: bool = False) -> list[str]:
        """Raise for what the operator did not allow; return the warnings for the rest."""
        msgs = self.messages()
        if self.duplicates and not allow_duplicate:
            raise DuplicateIdentityError(msgs[0] + "; refused (--allow-duplicate to enroll anyway)")
        if self.lookalikes and strict:
            raise LookalikeError(msgs[len(self.duplicates)] + "; refused (--strict)")
        return msgs

    def to_dict(self) -> dict[str, Any]:
        return {
            "duplicates": [m.to_dict() for m in self.duplicates],
            "lookalikes": [m.to_dict() for m in self.lookalikes],
            "duplicate_threshold": round(self.duplicate_threshold, 4),
            "lookalike_threshold": round(self.lookalike_threshold, 4),
        }


def screen_new_person(
    gallery: Gallery,
    name: str,
    templates: Sequence[Template],
    *,
    duplicate_threshold: float,
    lookalike_threshold: float,
    exclude_id: str | None = None,
) -> Screening:
    """Compare a new person's templates with everyone enrolled (``exclude_id``: the person
    the templates are added to)."""
    close = find_duplicates(
        gallery, templates, min(duplicate_threshold, lookalike_threshold), exclude_id=exclude_id
    )
    return Screening(
        name,
        [m for m in close if m.score >= duplicate_threshold],
        [m for m in close if m.score < duplicate_threshold],
        duplicate_threshold,
        lookalike_threshold,
    )


def require_templates(plan: EnrollmentPlan) -> None:
    """Raise a one-line error listing why every image was rejected."""
    if plan.templates:
        return
    if not plan.candidates:
        raise ImageError(f"{plan.name}: no images given")
    reasons = "; ".join(f"{Path(c.source).name}: {c.reason}" for c in plan.candidates[:5])
    more = "" if len(plan.candidates) <= 5 else f" (and {len(plan.candidates) - 5} more)"
    raise NoFaceError(f"{plan.name}: no usable face in any image ({reasons}{more})")


__all__ = [
    "Candidate",
    "Enroller",
    "EnrollmentPlan",
    "Screening",
    "camera_frames",
    "find_duplicates",
    "image_files",
    "person_dirs",
    "require_templates",
    "screen_new_person",
]
