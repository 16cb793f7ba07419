"""Landmark error of a detector against dlib's 68-point annotations.

Why: what a user sees of the detector is the aligned crop, and alignment uses the five
landmarks. So quantized cascades are judged by how far their five points are from annotated
ones, not only by their boxes. dlib's example faces come with 68 points
(``*_with_face_landmarks.xml``, iBUG numbering, 0-based); the five points the detector gives
are derived from them: the centres of the eyes (points 36-41 and 42-47), the nose tip (30)
and the mouth corners (48, 54). iBUG numbers the subject's right eye first, which is the eye
on the image's left, matching :class:`edgeface.types.Face`'s order (as seen in the image).

The error of one face is the mean distance of the five points divided by the distance
between the annotated eye centres (inter-ocular normalization).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeface.errors import ConfigError

#: 68-point indices (0-based) of the five detector landmarks: eye regions, nose tip, mouth
EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT = range(36, 42), range(42, 48)
NOSE_TIP, MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = 30, 48, 54


@dataclass(frozen=True)
class AnnotatedFace:
    box: np.ndarray  # (4,) x1 y1 x2 y2
    points: np.ndarray  # (5, 2) derived five points

    @property
    def inter_ocular(self) -> float:
        return float(np.linalg.norm(self.points[1] - self.points[0]))


def five_from_68(parts: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG points -> (5, 2): eye centres, nose tip, mouth corners (image order)."""
    parts = np.asarray(parts, np.float64)
    if parts.shape != (68, 2):
        raise ValueError(f"expected 68 points, got {parts.shape}")
    return np.stack(
        [
            parts[list(EYE_IMAGE_LEFT)].mean(axis=0),
            parts[list(EYE_IMAGE_RIGHT)].mean(axis=0),
            parts[NOSE_TIP],
            parts[MOUTH_IMAGE_LEFT],
            parts[MOUTH_IMAGE_RIGHT],
        ]
    )


def parse_dlib_landmarks(path: str | Path) -> dict[Path, list[AnnotatedFace]]:
    """Image path -> its faces with all 68 points, from a dlib imglab file with parts."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ConfigError(f"{path}: cannot read dlib landmarks ({exc})") from exc
    out: dict[Path, list[AnnotatedFace]] = {}
    for img in root.iter("image"):
        faces = []
        for bx in img.iter("box"):
            parts = {p.get("name"): p for p in bx.iter("part")}
            if len(parts) != 68:
                continue  # a box without the full 68 points has no landmark truth
            try:
                pts = np.array(
                    [
                        [float(parts[f"{i:02d}"].get("x")), float(parts[f"{i:02d}"].get("y"))]
                        for i in range(68)
                    ]
                )  # type: ignore[arg-type]
                left, top = float(bx.get("left")), float(bx.get("top"))  # type: ignore[arg-type]
                w, h = float(bx.get("width")), float(bx.get("height"))  # type: ignore[arg-type]
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{path}: bad box or part in {img.get('file')} ({exc})") from exc
            faces.append(AnnotatedFace(np.array([left, top, left + w, top + h]), five_from_68(pts)))
        if faces:
            out[path.parent / str(img.get("file"))] = faces
    if not out:
        raise ConfigError(f"{path}: no face with 68 landmarks")
    return out


def load_dlib_landmark_sets(dlib_dir: Path) -> dict[Path, list[AnnotatedFace]]:
    """Both of dlib's example files with landmarks (training and testing)."""
    out: dict[Path, list[AnnotatedFace]] = {}
    for name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        out.update(parse_dlib_landmarks(Path(dlib_dir) / name))
    return out


@dataclass(frozen=True)
class LandmarkReport:
    errors: np.ndarray  # per matched annotated face, inter-ocular normalized
    annotated: int
    missed: int

    def summary(self) -> dict[str, object]:
        e = self.errors
        return {
            "annotated_faces": self.annotated,
            "matched": len(e),
            "missed": self.missed,
            "nme_mean": round(float(e.mean()), 4) if len(e) else None,
            "nme_median": round(float(np.median(e)), 4) if len(e) else None,
            "nme_max": round(float(e.max()), 4) if len(e) else None,
        }


def landmark_errors(
    truth: Mapping[Path, Sequence[AnnotatedFace]],
    found: Mapping[Path, Sequence[object]],
    iou_threshold: float = 0.4,
) -> LandmarkReport:
    """Each annotated face against the detected face (``.box``, ``.landmarks``) that overlaps
    it most (IoU >= ``iou_threshold``, one detection per annotation); unmatched = missed."""
    from edgeface.detector.boxes import iou_matrix

    errors: list[float] = []
    annotated = missed = 0
    for image, faces in truth.items():
        dets = list(found.get(image, []))
        annotated += len(faces)
        if not dets:
            missed += len(faces)
            continue
        gt = np.array([f.box for f in faces])
        boxes = np.array([d.box for d in dets])  # type: ignore[attr-defined]
        iou = iou_matrix(gt, boxes)
        used: set[int] = set()
        for i in np.argsort(-iou.max(axis=1)):
            order = [j for j in np.argsort(-iou[i]) if j not in used]
            if not order or iou[i, order[0]] < iou_threshold:
                missed += 1
                continue
            used.add(order[0])
            pts = np.asarray(dets[order[0]].landmarks, np.float64)  # type: ignore[attr-defined]
            dist = np.linalg.norm(pts - faces[i].points, axis=1).mean()
            errors.append(float(dist / max(faces[i].inter_ocular, 1e-9)))
    return LandmarkReport(np.asarray(errors), annotated, missed)
