"""``edgeface detect IMAGE... [--json] [--draw OUT.png] [--min-face N]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from edgeface.cli.liveness_opts import add_liveness_option, liveness_checker
from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.errors import ConfigError, EdgefaceError, StorageError
from edgeface.imaging import load_image
from edgeface.types import Face


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="find faces and their 5 landmarks in images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--draw", metavar="OUT.png", help="write the image with boxes and landmarks")
    p.add_argument("--min-face", type=float, default=20.0, metavar="N", help="smallest face, px")
    add_liveness_option(p)
    p.set_defaults(func=run)


def draw_faces(image_rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A BGR copy of the image with boxes, scores and landmarks drawn on it."""
    canvas = np.ascontiguousarray(image_rgb[:, :, ::-1])
    thick = max(1, round(max(canvas.shape[:2]) / 400))
    for f in faces:
        x1, y1, x2, y2 = (round(v) for v in f.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thick)
        cv2.putText(canvas, f"{f.score:.2f}", (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, (0, 255, 0), thick)  # fmt: skip
        for x, y in f.landmarks:
            cv2.circle(canvas, (round(float(x)), round(float(y))), thick + 1, (0, 0, 255), -1)
    return canvas


def run(args: argparse.Namespace) -> int:
    if args.draw and len(args.images) > 1:
        raise ConfigError("--draw takes a single IMAGE")
    if args.draw and not cv2.haveImageWriter(str(args.draw)):
        raise ConfigError(f"--draw {args.draw}: not an image file name (use .png or .jpg)")
    detector = MTCNNDetector(DetectorConfig(min_face_size=args.min_face))
    checker = liveness_checker(args)
    results = []
    failures = 0
    for path in args.images:
        try:
            image = load_image(path)
        except EdgefaceError as exc:
            if len(args.images) == 1:
                raise
            failures += 1
            results.append({"image": path, "error": str(exc)})
            continue
        faces = detector.detect(image)
        docs = [f.to_dict() for f in faces]
        if checker is not None:
            for doc, face in zip(docs, faces, strict=True):
                doc["liveness"] = checker.check(image, face).to_dict()
        results.append({"image": path, "width": image.shape[1], "height": image.shape[0],
                        "faces": docs})  # fmt: skip
        if args.draw:
            out = Path(args.draw)
            if not cv2.imwrite(str(out), draw_faces(image, faces)):
                raise StorageError(
                    f"{out}: cannot write the drawing (folder missing or read-only?)"
                )
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['image']}: error: {r['error']}")
                continue
            print(f"{r['image']}: {len(r['faces'])} face(s)")
            for f in r["faces"]:
                box = ", ".join(f"{v:.1f}" for v in f["box"])
                live = f.get("liveness")
                extra = (
                    f"  {'LIVE' if live['live'] else 'SPOOF'} {live['score']:.3f}" if live else ""
                )
                print(f"  box [{box}] score {f['score']:.3f}{extra}")
    return 1 if failures else 0
