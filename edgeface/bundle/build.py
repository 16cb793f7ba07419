"""``edgeface bundle build``: collect, test-vector, tar, sign.

The bundle holds exactly what a device needs to run: the embedder file chosen by the operator
(e.g. the INT8 MobileFaceNet from ``edgeface quantize build``) with its own FAR calibration,
the detector files for the chosen detector backend, the accuracy report, and the self-test
vectors recorded here. Files are stored under ``models/`` by their manifest paths (the
detector) or by role (``models/embedder.onnx``), so a release directory is also a model
search directory for :mod:`edgeface.modelstore`.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface import __version__
from edgeface.backends.registry import get_backend
from edgeface.bundle import envelope, keys, selftest
from edgeface.bundle.errors import BundleError
from edgeface.bundle.manifest import MANIFEST_FORMAT, parse
from edgeface.embedder.model import DEFAULT_EMBEDDER
from edgeface.modelstore import resolve_model, sha256_file
from edgeface.modelstore.manifest import get_entry

EMBEDDER_ROLE = "models/embedder"
VECTORS = "selftest/vectors.npz"


@dataclass(frozen=True)
class BuildSpec:
    """What the operator chose; everything else is measured from the files."""

    name: str
    version: int
    embedder: Path
    calibration: Path
    embedder_model: str = DEFAULT_EMBEDDER
    backend: str = "onnxruntime"
    detector_backend: str = "numpy"
    report: Path | None = None
    expires: float | None = None
    arch: str = platform.machine()
    min_edgeface: str = __version__
    float_source_sha256: str | None = None


def _float_source(spec: BuildSpec, embedder_sha: str) -> str:
    """The float model the embedder was quantized from: ``artifacts.json`` of a quantize run
    beside the file names it; a file not made by quantize is its own float source."""
    if spec.float_source_sha256:
        return spec.float_source_sha256
    art = spec.embedder.parent / "artifacts.json"
    if art.is_file():
        try:
            records = json.loads(art.read_text(encoding="utf-8")).get("artifacts", {})
            items = records.values() if isinstance(records, dict) else records
            for r in items:
                if r.get("sha256") == embedder_sha and r.get("source_sha256"):
                    return str(r["source_sha256"])
        except (OSError, ValueError, AttributeError):
            pass
    return embedder_sha


def _detector_files(backend: str) -> dict[str, tuple[str, Path]]:
    """role -> (path in the bundle, source file); manifest-pinned, sha256-checked files."""
    names = get_backend(backend).mtcnn_entries()
    if names is None:
        raise BundleError(f"detector backend '{backend}' has no packaged MTCNN files")
    return {role: (f"models/{get_entry(n).file}", resolve_model(n)) for role, n in names.items()}


def _check_calibration(spec: BuildSpec, embedder_sha: str) -> bool:
    from edgeface.recognition.calibration import load_calibration

    cal = load_calibration(spec.calibration)
    if cal.model_sha256 != embedder_sha:
        raise BundleError(
            f"{spec.calibration}: calibration is for model sha256 {cal.model_sha256[:12]}, not "
            f"for {spec.embedder} ({embedder_sha[:12]}); make one for this file: edgeface eval "
            f"lfw --model {spec.embedder} --write-calibration {spec.embedder}.calibration.json"
        )
    return cal.flip


def _tar(tree: Path, names: list[str], mtime: int) -> bytes:
    """A deterministic uncompressed tar of ``names`` (regular files only, root-owned)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(names):
            data = (tree / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sign_payload(
    out: Path, manifest: dict[str, Any], payload: bytes, private_key: Any
) -> dict[str, Any]:
    """Fill in the payload fields and key id, sign, write ``out`` (also used by tests to
    sign deliberately malformed payloads with a trusted key)."""
    manifest = {
        **manifest,
        "key_id": keys.key_id(private_key.public_key()),
        "payload": {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)},
    }
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".tar") as t:
        t.write(payload)
        t.flush()
        envelope.write(out, manifest, Path(t.name), private_key)
    return manifest


def build(spec: BuildSpec, private_key_path: Path, out: Path) -> dict[str, Any]:
    """Write the signed bundle ``out``; return its manifest."""
    private_key = keys.load_private(private_key_path)
    if spec.version < 1:
        raise BundleError(f"--version must be >= 1, got {spec.version}")
    if not spec.embedder.is_file():
        raise BundleError(f"{spec.embedder}: embedder file not found")
    embedder_sha = sha256_file(spec.embedder)
    flip = _check_calibration(spec, embedder_sha)
    emb_name = EMBEDDER_ROLE + spec.embedder.suffix
    cal_name = emb_name + (".calibration.json" if flip else ".calibration.noflip.json")
    sources: dict[str, Path] = {emb_name: spec.embedder, cal_name: spec.calibration}
    det = _detector_files(spec.detector_backend)
    sources.update({path: src for path, src in det.values()})
    if spec.report is not None:
        if not spec.report.is_file():
            raise BundleError(f"{spec.report}: report not found")
        sources[f"report/{spec.report.name}"] = spec.report
    created = time.time()
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "name": spec.name,
        "version": spec.version,
        "created": round(created, 3),
        "expires": spec.expires,
        "min_edgeface": spec.min_edgeface,
        "target": {"arch": spec.arch, "backend": spec.backend},
        "float_source_sha256": _float_source(spec, embedder_sha),
        "embedder": {
            "file": emb_name,
            "model": spec.embedder_model,
            "embedding_space": get_entry(spec.embedder_model).embedding_space,
            "flip": flip,
            "calibration": cal_name,
        },
        "detector": {
            "backend": spec.detector_backend,
            "files": {role: path for role, (path, _src) in det.items()},
        },
        "report": f"report/{spec.report.name}" if spec.report is not None else None,
        "selftest": {"vectors": VECTORS, "tolerance": dict(selftest.DEFAULT_TOLERANCE)},
    }
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=out.parent) as tmp:
        tree = Path(tmp)
        for name, src in sources.items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tree / name)
        (tree / VECTORS).parent.mkdir(parents=True, exist_ok=True)
        (tree / VECTORS).write_bytes(selftest.record(tree, manifest, spec.backend))
        names = [*sources, VECTORS]
        manifest["files"] = {
            n: {"sha256": sha256_file(tree / n), "size": (tree / n).stat().st_size}
            for n in sorted(names)
        }
        payload = _tar(tree, names, int(created))
    # a manifest this builder cannot parse would be refused by every device: fail here
    parse({**manifest, "key_id": "", "payload": {"sha256": "", "size": 0}}, str(out))
    return sign_payload(out, manifest, payload, private_key)
