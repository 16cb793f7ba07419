"""Options and steps shared by ``edgeface eval lfw``, ``eval cfp`` and ``eval identify``:
which embedder and detector to use, and the expensive detect + align of every image (cached
with ``--crops``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeface.cli.eval_options import progress
from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.embedder import Embedder, EmbedderConfig
from edgeface.errors import ConfigError
from edgeface.evaluation import lfw
from edgeface.evaluation.datasets import find_data_root as data_root


def add_model_options(
    p: argparse.ArgumentParser, images_help: str = "LFW images/ folder (default: DATA/lfw/images)"
) -> None:
    p.add_argument("--images", metavar="DIR", help=images_help)
    p.add_argument(
        "--crops", metavar="NPZ", help="cache of aligned crops: read if present, else write"
    )
    p.add_argument(
        "--backend", default="onnxruntime", help="embedder backend (default onnxruntime)"
    )
    p.add_argument(
        "--embedder",
        metavar="NAME",
        default=EmbedderConfig.model,
        help=f"manifest model whose preprocessing and embedding space apply "
        f"(default {EmbedderConfig.model})",
    )
    p.add_argument(
        "--model", metavar="FILE", help="embedding model file, a variant of --embedder "
        "(default: the manifest file)"
    )  # fmt: skip
    p.add_argument(
        "--detector-backend",
        default="numpy",
        help="MTCNN backend for detect + align (default numpy; onnxruntime, litert)",
    )
    p.add_argument(
        "--detector-models",
        metavar="DIR",
        help="folder with mtcnn-{pnet,rnet,onet}-PRECISION.{onnx,tflite} (edgeface quantize "
        "build), with --detector-precision; use a --crops file per detector",
    )
    p.add_argument("--detector-precision", default="int8", choices=["fp32", "int8"])
    p.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the mirrored crop's embedding (default: on, as the runtime does)",
    )


def images_dir(args: argparse.Namespace) -> Path:
    """``--images``, else the data folder's LFW images (which must exist)."""
    images = Path(args.images) if args.images else data_root(args.data) / "lfw" / "images"
    if not images.is_dir():
        raise ConfigError(f"{images}: no such LFW images folder")
    return images


def aligned_crops(args: argparse.Namespace, keys: list[tuple[str, int]]) -> lfw.AlignedSet:
    """The aligned LFW crops of ``keys``: from the ``--crops`` cache when it has them all."""
    cache = Path(args.crops) if args.crops else None
    if cache is not None and cache.is_file():
        cached = lfw.AlignedSet.load(cache)
        if set(keys) <= set(cached.keys):
            return cached
    detector = MTCNNDetector(detector_config(args))
    aligned = lfw.align_images(
        images_dir(args), keys, detector, lambda it, desc, n: progress(it, args, desc, n)
    )
    if cache is not None:
        aligned.save(cache)
    return aligned


def detector_config(args: argparse.Namespace) -> DetectorConfig:
    """The default cascade, or the one built by ``quantize build`` (e.g. INT8 ONNX)."""
    backend = getattr(args, "detector_backend", "numpy")
    if backend == "numpy":
        return DetectorConfig()
    folder = getattr(args, "detector_models", None)
    if not folder:
        raise ConfigError(f"--detector-backend {backend} needs --detector-models DIR")
    from edgeface.backends import BACKENDS

    ext = BACKENDS[backend].file_format if backend in BACKENDS else None
    if ext is None:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"--detector-backend: one of {known}, got {backend!r}")
    models = {
        net: str(Path(folder) / f"mtcnn-{net}-{args.detector_precision}.{ext}")
        for net in ("pnet", "rnet", "onet")
    }
    return DetectorConfig(backend=backend, models=models)


def make_embedder(args: argparse.Namespace) -> Embedder:
    """The embedder of ``--embedder`` / ``--backend`` / ``--model`` / ``--flip``."""
    return Embedder.from_config(
        EmbedderConfig(model=args.embedder, backend=args.backend, path=args.model, flip=args.flip)
    )


def errata_of(args: argparse.Namespace) -> lfw.Errata | None:
    """LFW label errors of ``--errata`` (the packaged list by default; ``none``: none)."""
    if getattr(args, "errata", None) == "none":
        return None
    return lfw.read_errata(Path(args.errata) if getattr(args, "errata", None) else None)
