"""Build tests/fixtures/mtcnn_reference.json from the independent MTCNN implementation.

Why: our NumPy cascade (edgeface.detector) must be shown to compute the same thing as an
implementation we did not write. The PyPI package ``mtcnn`` 1.0.0 (TensorFlow, same original
Zhang et al. weights) is that reference. This script runs it once on a fixed, deterministic
selection of real photos from ``../shared/data`` and stores only numbers (boxes, scores,
landmarks) and relative paths, so the test needs neither TensorFlow nor the package.

Conventions recorded in the JSON (and checked by tests/test_mtcnn_reference.py):

* input: RGB uint8 from :func:`edgeface.imaging.load_image` (the package expects RGB);
* ``box``: ``[x1, y1, x2, y2]`` floats in image pixels, asked for with ``box_format="xyxy"``
  and ``output_type="numpy"`` (the package's default JSON output is ``[x, y, w, h]`` rounded
  to integers) and ``fit_to_image=False`` (not clipped to the image: the raw cascade output;
  the test clips both sides before comparing);
* ``landmarks``: ``[[x, y], ...]`` in *image* order ``[left eye, right eye, nose, mouth left,
  mouth right]`` where "left" means the image's left (smaller x on a frontal face). The
  package's keypoint names ``left_eye`` / ``mouth_left`` are already image-left (verified on
  frontal LFW faces: ``left_eye.x < right_eye.x``), so the mapping is one-to-one:
  left_eye -> 0, right_eye -> 1, nose -> 2, mouth_left -> 3, mouth_right -> 4. The script
  asserts the eye order on every LFW face it stores.

Run (needs the ``mtcnn`` package and TensorFlow; about a minute on two cores)::

    python tools/make_mtcnn_fixture.py            # writes tests/fixtures/mtcnn_reference.json
    python tools/make_mtcnn_fixture.py --data ../shared/data --out /tmp/ref.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "tests" / "fixtures" / "mtcnn_reference.json"

#: the package's defaults (mtcnn 1.0.0, StagePNet/StageRNet/StageONet), written out so the
#: fixture documents exactly what produced it; min_face_size is the project default, 20 px.
REFERENCE_PARAMS: dict[str, float | int] = {
    "min_face_size": 20,
    "min_size": 12,
    "scale_factor": 0.709,
    "threshold_pnet": 0.6,
    "threshold_rnet": 0.7,
    "threshold_onet": 0.8,
    "nms_pnet1": 0.5,
    "nms_pnet2": 0.7,
    "nms_rnet": 0.7,
    "nms_onet": 0.7,
}

N_LFW = 50
N_MASKS = 50


def _spread(items: list[Path], n: int) -> list[Path]:
    """``n`` items evenly spread over a sorted list: deterministic and not all one person."""
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _mask_index(p: Path) -> int:
    m = re.search(r"(\d+)$", p.stem)
    return int(m.group(1)) if m else -1


def select_images(data: Path) -> list[Path]:
    """The fixed image list: ~50 LFW, all dlib photos, ~50 masks photos (paths under data)."""
    lfw = sorted((data / "lfw" / "images").glob("*/*.jpg"))
    dlib = sorted((data / "detection" / "dlib_faces").glob("*.jpg"))
    masks = sorted((data / "detection" / "masks" / "images").glob("*.jpg"), key=_mask_index)
    if not lfw or not dlib or not masks:
        raise SystemExit(f"make_mtcnn_fixture: expected LFW, dlib and masks images under {data}")
    return _spread(lfw, N_LFW) + dlib + _spread(masks, N_MASKS)


def run_reference(paths: list[Path], data: Path) -> list[dict[str, object]]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mtcnn import MTCNN  # imported late: heavy, and only this tool needs it

    from edgeface.imaging import load_image

    detector = MTCNN(device="CPU:0")
    records: list[dict[str, object]] = []
    for i, path in enumerate(paths, 1):
        rgb = load_image(path)
        rows = detector.detect_faces(
            rgb,
            fit_to_image=False,
            box_format="xyxy",
            output_type="numpy",
            **REFERENCE_PARAMS,
        )
        faces = []
        # rows: [image_id, x1, y1, x2, y2, score, lx0..lx4, ly0..ly4]; sorted by score desc
        for row in sorted(rows.tolist(), key=lambda r: -r[5]):
            xs, ys = row[6:11], row[11:16]
            landmarks = [[round(x, 2), round(y, 2)] for x, y in zip(xs, ys, strict=True)]
            faces.append(
                {
                    "box": [round(v, 2) for v in row[1:5]],
                    "score": round(row[5], 5),
                    "landmarks": landmarks,
                }
            )
        rel = path.relative_to(data).as_posix()
        if rel.startswith("lfw/"):
            for f in faces:
                lm = f["landmarks"]
                assert lm[0][0] < lm[1][0], f"{rel}: reference left_eye is not image-left"
        h, w = rgb.shape[:2]
        records.append({"path": rel, "width": w, "height": h, "faces": faces})
        print(f"[{i:3d}/{len(paths)}] {rel}: {len(faces)} face(s)", file=sys.stderr)
    return records


def write_fixture(records: list[dict[str, object]], out: Path) -> None:
    import mtcnn
    import tensorflow as tf

    try:
        from importlib.metadata import version

        mtcnn_version = version("mtcnn")
    except Exception:
        mtcnn_version = getattr(mtcnn, "__version__", "unknown")
    header = {
        "generator": "tools/make_mtcnn_fixture.py",
        "reference": {"package": "mtcnn", "version": mtcnn_version, "tensorflow": tf.__version__},
        "params": REFERENCE_PARAMS,
        "data_root": "../shared/data (relative to the repository root)",
        "input": "RGB uint8 from edgeface.imaging.load_image",
        "box": "[x1, y1, x2, y2] float pixels, not clipped to the image (fit_to_image=False)",
        "landmarks": "[[x, y] x5] image order: left eye, right eye, nose, mouth left, mouth right"
        " (left = image left; package keys left_eye, right_eye, nose, mouth_left, mouth_right)",
        "score": "O-Net face probability",
        "n_images": len(records),
        "n_faces": sum(len(r["faces"]) for r in records),
    }
    # one image per line keeps the file small and its diffs readable
    lines = ["{"]
    for key, value in header.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    lines.append('  "images": [')
    body = [f"    {json.dumps(r, separators=(',', ':'))}" for r in records]
    lines.append(",\n".join(body))
    lines.append("  ]")
    lines.append("}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture JSON to write")
    args = ap.parse_args(argv)
    data = args.data.resolve()
    paths = select_images(data)
    records = run_reference(paths, data)
    write_fixture(records, args.out)
    n_faces = sum(len(r["faces"]) for r in records)
    print(f"wrote {args.out}: {len(records)} images, {n_faces} faces", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
