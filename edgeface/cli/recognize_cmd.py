"""``edgeface embed IMAGE`` and ``edgeface verify A B``."""

from __future__ import annotations

import argparse
import json

from edgeface.cli.liveness_opts import add_liveness_option, liveness_checker, refuse_spoof
from edgeface.embedder import EmbedderConfig
from edgeface.errors import NoFaceError
from edgeface.imaging import load_image
from edgeface.recognition import FacePipeline, PipelineConfig


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("embed", help="print the embedding of the main face in an image")
    e.add_argument("image", metavar="IMAGE")
    _pipeline_options(e)
    e.set_defaults(func=run_embed)
    v = sub.add_parser("verify", help="are two photos the same person?")
    v.add_argument("image_a", metavar="A")
    v.add_argument("image_b", metavar="B")
    v.add_argument("--far", type=float, default=1e-3, help="target false accept rate (1e-2..1e-4)")
    v.add_argument("--threshold", type=float, help="cosine threshold (overrides --far)")
    _pipeline_options(v)
    add_liveness_option(v)
    v.set_defaults(func=run_verify)


def _pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument("--select", choices=["largest", "central"], default="largest",
                   help="which face when there are several (default: largest)")  # fmt: skip
    p.add_argument("--model", metavar="FILE", help="embedding model file (e.g. an INT8 artifact)")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime or litert")


def _pipeline(args: argparse.Namespace) -> FacePipeline:
    cfg = PipelineConfig(
        embedder=EmbedderConfig(path=args.model, backend=args.backend), select=args.select
    )
    return FacePipeline.from_config(cfg)


def run_embed(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    result = pipeline.best_face(load_image(args.image))
    if result is None:
        raise NoFaceError(f"{args.image}: no face found")
    doc = {"image": args.image, "face": result.face.to_dict(), "model": pipeline.embedder.model_id,
           "embedding": [round(float(v), 6) for v in result.embedding]}  # fmt: skip
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"{args.image}: face {doc['face']['box']} -> {len(doc['embedding'])}-d embedding")
        print(" ".join(f"{v:+.4f}" for v in result.embedding))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    checker = liveness_checker(args)
    image_a, image_b = load_image(args.image_a), load_image(args.image_b)
    if checker is not None:
        for name, image in ((args.image_a, image_a), (args.image_b, image_b)):
            face = pipeline.best_face(image)
            if face is not None:
                refuse_spoof(checker, image, face.face, name)
    res = pipeline.verify(image_a, image_b, far=args.far, threshold=args.threshold)
    missing = [p for p, none in zip((args.image_a, args.image_b), res.no_face, strict=True) if none]
    if args.json:
        print(json.dumps({"a": args.image_a, "b": args.image_b, **res.to_dict()}))
    if missing:
        raise NoFaceError(f"no face found in {', '.join(missing)}")
    if not args.json:
        verdict = "SAME person" if res.same else "DIFFERENT people"
        basis = f"FAR {args.far:g}" if args.threshold is None else "given"
        print(f"{verdict}: cosine {res.score:.4f}, threshold {res.threshold:.4f} ({basis})")
    return 0 if res.same else 1
