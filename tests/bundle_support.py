"""Helpers shared by the bundle, migration and deploy tests: keys, bundles, device roots."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from edgeface.bundle import envelope, keys
from edgeface.bundle.build import BuildSpec, build, sign_payload
from edgeface.bundle.device import Device, DeviceConfig
from edgeface.modelstore import resolve_model
from edgeface.recognition.calibration import default_calibration_path


def make_keys(d: Path, name: str = "op") -> tuple[Path, Path]:
    """(private key, trusted-keys directory holding its public key)."""
    trusted = d / f"trusted-{name}"
    private = d / f"{name}.key"
    keys.generate(private, trusted / f"{name}.pub")
    return private, trusted


def float_bundle(out: Path, private: Path, version: int, **kw: Any) -> Path:
    """A bundle with the float dynamic-batch MobileFaceNet and its packaged calibration."""
    spec = BuildSpec(
        name=kw.pop("name", "door-float"),
        version=version,
        embedder=resolve_model("mobilefacenet-dyn"),
        calibration=default_calibration_path("mobilefacenet-foamliu-ms1m", True),
        embedder_model=kw.pop("embedder_model", "mobilefacenet-dyn"),
        **kw,
    )
    build(spec, private, out)
    return out


def device(root: Path, trusted: Path, **kw: Any) -> Device:
    cfg = DeviceConfig(
        root=root,
        trusted_keys=trusted,
        restart_command=kw.pop("restart_command", []),
        health_command=kw.pop("health_command", []),
        **kw,
    )
    return Device(cfg)


def members(bundle: Path) -> dict[str, bytes]:
    """The payload files of a (valid) bundle, by name."""
    env = envelope.read(bundle)
    data = bundle.read_bytes()[env.payload_offset :]
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
    return out


def resign(
    src: Path,
    out: Path,
    private: Path,
    tar_bytes: bytes,
    *,
    manifest_changes: dict[str, Any] | None = None,
) -> Path:
    """Sign an arbitrary payload with ``src``'s manifest (plus changes) and a trusted key:
    what a compromised build machine could produce."""
    manifest = dict(envelope.read(src).manifest)
    manifest.update(manifest_changes or {})
    sign_payload(out, manifest, tar_bytes, keys.load_private(private))
    return out


def tar_of(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return buf.getvalue()


def file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def manifest_of(release: Path) -> dict[str, Any]:
    return json.loads((release / "manifest.json").read_bytes())


def int8_embedder(cache: Path, lfw_dir: Path) -> Path:
    """The INT8 MobileFaceNet ONNX, built once by the quantize tools (as
    tests/test_quantize_mobilefacenet.py does) from 64 LFW faces of people in no dev pair,
    and kept in ``cache`` (``$EDGEFACE_TEST_CACHE/17`` when set)."""
    from edgeface_tools.quantize.artifacts import ArtifactDir
    from edgeface_tools.quantize.build import BuildOptions, build_embedder
    from edgeface_tools.quantize.calibration import build_calibration_set
    from edgeface_tools.quantize.onnx_int8 import OnnxInt8Options

    from edgeface.evaluation.lfw import read_pairs

    out = cache / "artifacts"
    model = out / "mobilefacenet-int8.onnx"
    if model.is_file():
        return model
    pairs = read_pairs(lfw_dir / "pairs_dev.txt")
    excluded = {k[0] for k in pairs.left + pairs.right}
    calib_dir = cache / "calib"
    calib_dir.mkdir(parents=True, exist_ok=True)
    people = [p for p in sorted((lfw_dir / "images").iterdir()) if p.name not in excluded]
    for person in people[:128]:
        first = sorted(person.glob("*.jpg"))[0]
        if not (calib_dir / first.name).exists():
            (calib_dir / first.name).symlink_to(first)
    calib = build_calibration_set(
        calib_dir, count=64, min_faces=32, cache_dir=cache / "calib-cache", progress=False
    )
    opts = BuildOptions(onnx=OnnxInt8Options(method="minmax"), tflite=False)
    build_embedder(
        ArtifactDir(out), calib, opts, model="mobilefacenet", log=lambda _m: None, progress=False
    )
    return model
