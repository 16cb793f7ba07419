"""Test vectors: fixed synthetic inputs and the outputs the models gave when the bundle was built.

The inputs are generated from a fixed seed (smooth random colour fields for the embedder,
uniform noise for the detector nets), so no personal image is ever shipped. On the device,
:func:`run` loads every model with the configured backend, feeds it the same inputs and
compares: embeddings by cosine similarity, detector outputs by the largest absolute
difference. A broken runtime, a wrong backend, a corrupt-but-hash-valid conversion or an ARM
numeric problem shows up here, before the device switches to the release.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.bundle.errors import SelfTestError
from edgeface.errors import EdgefaceError

SEED = 20261201
EMBEDDER_INPUTS = 8
#: detector net -> NHWC input shape (P-Net is fully convolutional: any size >= 12)
DETECTOR_SHAPES = {"pnet": (1, 36, 48, 3), "rnet": (4, 24, 24, 3), "onet": (4, 48, 48, 3)}
DEFAULT_TOLERANCE = {"embedding_cosine_min": 0.995, "detector_max_abs": 2e-3}


def embedder_inputs(n: int = EMBEDDER_INPUTS) -> np.ndarray:
    """``(n, 112, 112, 3)`` uint8: bicubic-upsampled 7x7 random colour fields plus noise."""
    import cv2

    rng = np.random.default_rng(SEED)
    out = np.empty((n, 112, 112, 3), np.uint8)
    for i in range(n):
        coarse = rng.uniform(0, 255, (7, 7, 3)).astype(np.float32)
        smooth = cv2.resize(coarse, (112, 112), interpolation=cv2.INTER_CUBIC)
        out[i] = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
    return out


def detector_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED + 1)
    return {
        net: rng.uniform(-1, 1, shape).astype(np.float32) for net, shape in DETECTOR_SHAPES.items()
    }


def open_embedder(root: Path, spec: dict[str, Any], backend: str, *, flip: bool = False) -> Any:
    from edgeface.backends import open_session
    from edgeface.embedder import Embedder
    from edgeface.modelstore import sha256_file
    from edgeface.modelstore.manifest import get_entry

    path = root / spec["file"]
    entry = get_entry(spec["model"])
    return Embedder(
        open_session(path, backend),
        preprocessing=entry.preprocessing,
        model_id=entry.embedding_space or entry.name,
        model_sha256=sha256_file(path),
        flip=flip,
    )


def open_detector_nets(root: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """One session per MTCNN net with the detector backend the bundle names."""
    from edgeface.backends import get_backend, open_session

    backend = get_backend(spec["backend"])
    files = spec["files"]
    if backend.whole_cascade:  # one weight file, the net chosen by name
        return {
            net: open_session(root / files["mtcnn"], backend.name, net=net)
            for net in DETECTOR_SHAPES
        }
    return {net: open_session(root / files[net], backend.name) for net in DETECTOR_SHAPES}


def _run_net(session: Any, x_nhwc: np.ndarray) -> list[np.ndarray]:
    x = x_nhwc.transpose(0, 3, 1, 2) if session.info.input_layout == "NCHW" else x_nhwc
    return [np.asarray(o, np.float32) for o in session.run(np.ascontiguousarray(x))]


def record(root: Path, manifest: dict[str, Any], backend: str) -> bytes:
    """Run every model of the tree at ``root`` on the fixed inputs; an ``.npz`` as bytes."""
    arrays: dict[str, np.ndarray] = {}
    emb = open_embedder(root, manifest["embedder"], backend)
    arrays["embedder.input"] = embedder_inputs()
    arrays["embedder.output"] = emb.embed(arrays["embedder.input"])
    nets = open_detector_nets(root, manifest["detector"])
    for net, x in detector_inputs().items():
        arrays[f"{net}.input"] = x
        for i, out in enumerate(_run_net(nets[net], x)):
            arrays[f"{net}.output{i}"] = out
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@dataclass
class SelfTestReport:
    ok: bool
    seconds: float
    checks: list[dict[str, Any]] = field(default_factory=list)

    def first_failure(self) -> str:
        return next((c["detail"] for c in self.checks if not c["ok"]), "")


def run(root: Path, manifest: dict[str, Any], backend: str | None = None) -> SelfTestReport:
    """Load every model of the release at ``root`` and compare with the recorded vectors."""
    from edgeface.recognition.calibration import load_calibration

    t0 = time.perf_counter()
    tol = {**DEFAULT_TOLERANCE, **manifest["selftest"].get("tolerance", {})}
    backend = backend or manifest["target"]["backend"]
    checks: list[dict[str, Any]] = []

    def check(name: str, fn: Any) -> None:
        try:
            detail = fn()
            checks.append({"name": name, "ok": True, "detail": detail})
        except EdgefaceError as exc:
            checks.append({"name": name, "ok": False, "detail": f"{name}: {exc}"})
        except Exception as exc:  # a runtime that crashes is what the self-test is for
            detail = f"{name}: {type(exc).__name__}: {exc}"
            checks.append({"name": name, "ok": False, "detail": detail})

    with np.load(root / manifest["selftest"]["vectors"], allow_pickle=False) as data:
        vec = {k: data[k] for k in data.files}

    def embedder() -> str:
        emb = open_embedder(root, manifest["embedder"], backend)
        got = emb.embed(vec["embedder.input"])
        cos = np.sum(got * vec["embedder.output"], axis=1)
        worst = float(cos.min())
        if not worst >= tol["embedding_cosine_min"]:
            raise SelfTestError(
                f"embeddings differ from the build machine's (cosine {worst:.4f} < "
                f"{tol['embedding_cosine_min']}) with backend {backend}"
            )
        cal = load_calibration(root / manifest["embedder"]["calibration"])
        if cal.model_sha256 != emb.model_sha256:
            raise SelfTestError("the calibration is not for this embedder file")
        if cal.flip != bool(manifest["embedder"]["flip"]):
            raise SelfTestError("the calibration's flip setting differs from the manifest's")
        return f"{len(cos)} vectors, min cosine {worst:.5f} ({backend})"

    def detector() -> str:
        nets = open_detector_nets(root, manifest["detector"])
        worst = 0.0
        for net in DETECTOR_SHAPES:
            outs = _run_net(nets[net], vec[f"{net}.input"])
            for i, out in enumerate(outs):
                ref = vec[f"{net}.output{i}"]
                if out.shape != ref.shape:
                    raise SelfTestError(f"{net} output {i} has shape {out.shape}, not {ref.shape}")
                diff = float(np.max(np.abs(out - ref))) if out.size else 0.0
                if not diff <= tol["detector_max_abs"]:
                    raise SelfTestError(
                        f"{net} output {i} differs by {diff:.2e} (> {tol['detector_max_abs']})"
                    )
                worst = max(worst, diff)
        return f"P/R/O-Net within {worst:.1e} ({manifest['detector']['backend']})"

    check("embedder", embedder)
    check("detector", detector)
    return SelfTestReport(all(c["ok"] for c in checks), round(time.perf_counter() - t0, 3), checks)
