"""The MTCNN face detector: image pyramid -> P-Net -> R-Net -> O-Net.

Settings mirror the original cascade (Zhang et al. 2016): pyramid factor 0.709, per-scale
NMS 0.5 and cross-scale NMS 0.7 after P-Net, NMS 0.7 after R-Net, IoU-over-min NMS 0.7 after
O-Net. Thresholds default to (0.6, 0.7, 0.7).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edgeface.backends.base import InferenceSession, open_session
from edgeface.backends.registry import get_backend
from edgeface.detector import boxes as B
from edgeface.detector.helper import InProcess, WorkShare
from edgeface.detector.normalize import normalize
from edgeface.detector.stages import (
    Candidates,
    CropStage,
    cascade_stages,
)
from edgeface.errors import ConfigError
from edgeface.face_sizes import DETECTOR_MIN_FACE
from edgeface.imaging import ensure_rgb_uint8
from edgeface.modelstore import resolve_model
from edgeface.types import Face

NETS = ("pnet", "rnet", "onet")


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that changes what the cascade finds, with the published defaults."""

    #: smallest face the pyramid searches for (see :mod:`edgeface.face_sizes`)
    min_face_size: float = DETECTOR_MIN_FACE
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    nms_pnet_scale: float = 0.5
    nms_pnet_all: float = 0.7
    nms_rnet: float = 0.7
    nms_onet: float = 0.7
    #: inference backend for the three networks (:mod:`edgeface.backends.registry`):
    #: "numpy", "onnxruntime" or "litert"
    backend: str = "numpy"
    #: model files by role: {"mtcnn": path} for a whole-cascade backend (NumPy), else
    #: {"pnet": path, ...}; a missing role falls back to the backend's manifest default
    #: (``Backend.mtcnn_entry``: the float ONNX exports for onnxruntime, none for litert)
    models: dict[str, str] = field(default_factory=dict)
    #: options passed to each session of a per-net backend (e.g. {"threads": 2})
    session_options: dict[str, object] = field(default_factory=dict)
    #: processes that share one frame's work (pyramid levels, crop batches) with the NumPy
    #: backend: ``workers - 1`` helper processes (see :mod:`edgeface.detector.helper`);
    #: 1 = this process only
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    #: with helpers, give the calling thread (during ``detect``) and each helper a CPU of
    #: their own (Linux); turn off where several busy processes share the device's CPUs
    pin_cpus: bool = True
    #: largest frame the cascade works on, in pixels: a bigger image is area-downscaled to
    #: this size first (boxes are mapped back), which bounds memory (P-Net needs ~0.2 KB per
    #: pixel of its largest level: a 4000x3000 photo took 1.1 GB RSS at full size, 7000x7000
    #: 5.1 GB). 1920x1080 is below it. Faces smaller than 12 px after the downscale are not
    #: found (29 px in a 4000x3000 photo). 0 = never downscale.
    max_frame_pixels: int = 2_500_000

    def __post_init__(self) -> None:
        if not self.min_face_size >= 12:
            raise ConfigError(f"min_face_size must be >= 12 pixels, got {self.min_face_size}")
        if not 0.1 <= self.scale_factor < 1.0:
            raise ConfigError(f"scale_factor must be in [0.1, 1), got {self.scale_factor}")
        if len(self.thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise ConfigError(f"thresholds must be three numbers in [0, 1], got {self.thresholds}")
        if self.max_frame_pixels and self.max_frame_pixels < 12 * 12:
            raise ConfigError(f"max_frame_pixels must be 0 or >= 144, got {self.max_frame_pixels}")
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"workers must be between 1 and 64, got {self.workers}")


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which a ``min_face_size`` face becomes P-Net's 12 px window, down to 12 px."""
    m = 12.0 / min_face_size
    side = min(height, width) * m
    scales: list[float] = []
    k = 0
    while side >= 12.0:
        scales.append(m * factor**k)
        side *= factor
        k += 1
    return scales


class MTCNNDetector:
    """Finds faces and their five landmarks in RGB images."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        backend = get_backend(self.config.backend)
        self.pnet, self.rnet, self.onet = cascade_stages(self._open)
        self._in_process = InProcess()
        self._share: WorkShare | None = None
        if backend.whole_cascade and self.config.workers > 1:  # helpers open the one file
            self._share = WorkShare(
                self._model_file("mtcnn"),
                self.config.workers - 1,
                pin_cpus=self.config.pin_cpus,
                backend=backend.name,
            )
            weakref.finalize(self, self._share.close)
        self._lock = threading.Lock()  # one frame at a time through the shared helpers
        self._recording = False

    @contextlib.contextmanager
    def recording(self, sink: Callable[[str, np.ndarray], None]) -> Iterator[None]:
        """Hand every network input of the frames detected in this block to ``sink``.

        ``sink(net, batch)`` gets ``"pnet"`` with each whole pyramid level and ``"rnet"`` /
        ``"onet"`` with each batch of crops, as NHWC float32 arrays (normalized), in the
        order the cascade runs them. Why: INT8 calibration must see exactly what the nets
        see. While recording, the helper processes are not used: the work they would take
        (levels, crop batches) runs here, so nothing escapes the record; the faces found
        are the same (to float32 rounding, as with any split).
        """
        stages = {"pnet": self.pnet, "rnet": self.rnet, "onet": self.onet}
        with self._lock:
            if any(stage.observer is not None for stage in stages.values()):
                raise RuntimeError("this detector is already recording")
            for net, stage in stages.items():
                stage.observer = functools.partial(sink, net)
            self._recording = True
        try:
            yield
        finally:
            with self._lock:
                for stage in stages.values():
                    stage.observer = None
                self._recording = False

    def close(self) -> None:
        """Stop the helper processes (also done when the detector is garbage-collected)."""
        if self._share is not None:
            self._share.close()

    def __enter__(self) -> MTCNNDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _model_file(self, role: str) -> Path:
        """The file of ``role`` ("mtcnn" or a net): configured, else the backend's default."""
        if role in self.config.models:
            return Path(self.config.models[role])
        backend = get_backend(self.config.backend)
        entries = backend.mtcnn_entries()
        if entries is None:
            raise ConfigError(f"detector backend '{backend.name}' needs a model file for '{role}'")
        return resolve_model(entries[role])

    def _open(self, net: str) -> InferenceSession:
        backend = get_backend(self.config.backend)
        if backend.whole_cascade:  # one weight file, the net chosen by name
            return open_session(self._model_file("mtcnn"), backend.name, net=net)
        return open_session(self._model_file(net), backend.name, **self.config.session_options)

    def detect(self, image: np.ndarray, *, color: Literal["rgb", "bgr"] = "rgb") -> list[Face]:
        """Faces in ``image`` (uint8 HxWx3 in ``color`` order), highest score first."""
        rgb = ensure_rgb_uint8(image, assume_bgr=(color == "bgr"))
        cfg = self.config
        h, w = rgb.shape[:2]
        shrink = 1.0
        if cfg.max_frame_pixels and h * w > cfg.max_frame_pixels:
            shrink = (cfg.max_frame_pixels / (h * w)) ** 0.5
            size = (max(1, int(w * shrink)), max(1, int(h * shrink)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            shrink = size[0] / w  # the factor actually applied (x and y agree to 1 px)
            h, w = rgb.shape[:2]
        min_face = max(12.0, cfg.min_face_size * shrink)
        scales = pyramid_scales(h, w, min_face, cfg.scale_factor)
        if not scales:
            return []
        with self._lock:
            cand = self._cascade(rgb, scales)
        return self._faces(cand, back=1.0 / shrink)

    def detect_near(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        *,
        color: Literal["rgb", "bgr"] = "rgb",
        refine: bool = True,
        top_k: int | None = None,
    ) -> list[Face]:
        """Faces that the later cascade stages find among candidate ``boxes`` (N, 4).

        Why: a face seen in the last frame is near where it was, so the pyramid and P-Net
        (most of a frame's cost) can be skipped and the later stages asked directly about a
        few boxes around the old one (see :mod:`edgeface.detector.tracking`). ``refine``:
        R-Net first (it is ~3x cheaper per crop than O-Net), then O-Net on its survivors,
        of which only the ``top_k`` best-scored when given; otherwise O-Net alone. The
        thresholds and NMS are those of :meth:`detect`; the work runs in this process (a few
        crops are not worth a helper's round trip).
        """
        rgb = ensure_rgb_uint8(image, assume_bgr=(color == "bgr"))
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if not len(boxes):
            return []
        cfg = self.config
        _, t2, t3 = cfg.thresholds
        with self._lock:
            cand = Candidates(B.square(boxes), np.ones(len(boxes), np.float32))
            if refine:
                cand = self.rnet.finish(
                    cand, _on_window(self.rnet, rgb, cand.boxes), t2, cfg.nms_rnet
                )
                if top_k is not None:
                    cand = cand.take(np.argsort(-cand.scores, kind="stable")[:top_k])
                if not len(cand):
                    return []
            cand = self.onet.finish(cand, _on_window(self.onet, rgb, cand.boxes), t3, cfg.nms_onet)
        return self._faces(cand)

    def _faces(self, cand: Candidates, back: float = 1.0) -> list[Face]:
        """Faces of ``cand``, best first, in original-frame pixels (``back`` undoes a shrink)."""
        order = np.argsort(-cand.scores, kind="stable")
        assert cand.landmarks is not None or not len(order)
        return [
            Face(
                box=tuple(float(v) * back for v in cand.boxes[i]),  # type: ignore[arg-type]
                score=float(cand.scores[i]),
                landmarks=(cand.landmarks[i] * back).astype(np.float32),  # type: ignore[index]
            )
            for i in order
        ]

    def _cascade(self, rgb: np.ndarray, scales: list[float]) -> Candidates:
        """P-Net -> R-Net -> O-Net; with helpers, each stage's work is shared with them."""
        cfg = self.config
        t1, t2, t3 = cfg.thresholds
        work: WorkShare | InProcess = self._in_process
        if self._share is not None and self._share.active and not self._recording:
            work = self._share
        with work.pinned():
            rgb, x = work.send_frame(rgb)
            levels = work.levels(self.pnet, rgb, x, scales, t1, cfg.nms_pnet_scale)
            cand = self.pnet.merge(levels, cfg.nms_pnet_all)
            for stage, net, threshold, nms in (
                (self.rnet, "rnet", t2, cfg.nms_rnet),
                (self.onet, "onet", t3, cfg.nms_onet),
            ):
                if not len(cand):
                    return cand
                cand = stage.finish(cand, work.crops(stage, net, x, cand.boxes), threshold, nms)
        return cand


def _on_window(stage: CropStage, rgb: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """``stage`` on the crops of ``boxes``, normalizing only the part of the frame they read
    (a whole 640x480 frame took longer to normalize than O-Net on one crop)."""
    x0, y0, x1, y1 = B.window_around(boxes, rgb.shape)
    window = normalize(rgb[y0:y1, x0:x1])
    return stage.run_on_crops(window, boxes, origin=(x0, y0), frame_shape=rgb.shape[:2])
