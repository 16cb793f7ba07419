"""Timing every embedder variant of an artifacts directory on the device (``edgeface bench``).

Unlike the rest of this package it needs no ``tools`` extra, only the runtimes that the
device has: it runs where the models will run, and picks the fastest variant whose accuracy
the report (made offline) proved.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgeface.backends import backend_for_format, open_session
from edgeface.embedder import Embedder
from edgeface.errors import ConfigError, EdgefaceError
from edgeface.modelstore import resolve_model
from edgeface.modelstore.manifest import get_entry


def bench_embedders(
    art_dir: Path, *, runs: int, threads: int, budget: dict[str, bool] | None = None
) -> dict[str, object]:
    """ms per face at batch 1 of every MobileFaceNet artifact that this device can run.

    Content does not change the time of a CNN, so a fixed pseudo-random crop is used: the
    device needs no face photos. ``budget`` (file -> meets the accuracy goals, from the
    report) restricts the pick to variants whose accuracy was proven on LFW.
    """
    try:
        manifest = json.loads((art_dir / "artifacts.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{art_dir}: no readable artifacts.json ({exc})") from exc
    prep = get_entry("mobilefacenet-dyn").preprocessing
    variants = [("float onnx", resolve_model("mobilefacenet-dyn"), "onnxruntime", "fp32")]
    for a in manifest.get("artifacts", []):
        if a.get("model") == "mobilefacenet":
            backend = backend_for_format(a["format"])
            variants.append((a["file"], art_dir / a["file"], backend, a["precision"]))
    crop = np.random.default_rng(0).integers(0, 255, (1, 112, 112, 3), dtype=np.uint8)
    rows: list[dict[str, object]] = []
    for name, path, backend, precision in variants:
        try:
            session = open_session(path, backend, threads=threads)
        except EdgefaceError as exc:  # e.g. no LiteRT on this device
            rows.append({"variant": name, "backend": backend, "error": str(exc)})
            continue
        emb = Embedder(
            session, preprocessing=prep, model_id="mobilefacenet", model_sha256="", flip=False
        )  # one forward pass per face: the time of one crop
        for _ in range(5):
            emb.embed(crop)
        t0 = time.perf_counter()
        for _ in range(runs):
            emb.embed(crop)
        ms = (time.perf_counter() - t0) * 1000 / runs
        ok = True if precision == "fp32" or budget is None else budget.get(path.name, False)
        rows.append(
            {
                "variant": name,
                "path": str(path),
                "backend": backend,
                "precision": precision,
                "ms_per_face_b1": round(ms, 3),
                "within_budget": ok,
            }
        )
    timed = [r for r in rows if "ms_per_face_b1" in r]
    eligible = [r for r in timed if r["within_budget"]]
    pick = min(eligible, key=lambda r: r["ms_per_face_b1"]) if eligible else None  # type: ignore[arg-type,return-value]
    return {"threads": threads, "runs": runs, "variants": rows, "fastest_within_budget": pick}
