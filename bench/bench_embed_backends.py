"""Embedder speed per backend x precision: ms per face at batch 1 (and batch 8).

Runs every embedder artifact (MobileFaceNet, EdgeFace-XS / XXS) in an ``edgeface quantize
build`` output directory, plus each model's float ONNX, on this machine. Prints a table and
writes JSON. Speed is a property of the device (a Pi 4 has no int8 dot-product
instructions, a Pi 5 and a Jetson Orin do), so run it there; ``edgeface bench`` is the same
measurement with the accuracy-budget pick.

    python bench/bench_embed_backends.py --artifacts out/quant
    python bench/bench_embed_backends.py --artifacts out/quant --threads 4 --json /tmp/b.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from edgeface.backends import backend_for_format, open_session
from edgeface.embedder import Embedder
from edgeface.errors import EdgefaceError
from edgeface.modelstore import resolve_model
from edgeface.modelstore.manifest import get_entry

REPO = Path(__file__).resolve().parents[1]


#: embedder group (artifact ``model``) -> float manifest entry; as in edgeface quantize build
EMBEDDERS = {
    "mobilefacenet": "mobilefacenet-dyn",
    "edgeface-xs": "edgeface-xs",
    "edgeface-xxs": "edgeface-xxs",
}


def variants(art_dir: Path) -> list[tuple[str, str, Path, str]]:
    """(group, label, file, backend): each group's float ONNX, then its artifacts."""
    manifest = json.loads((art_dir / "artifacts.json").read_text(encoding="utf-8"))
    present = {a["model"] for a in manifest["artifacts"]}
    out = []
    for group, entry in EMBEDDERS.items():
        if group != "mobilefacenet" and group not in present:
            continue
        out.append((group, f"{group} float onnx", resolve_model(entry), "onnxruntime"))
        for a in manifest["artifacts"]:
            if a["model"] == group:
                backend = backend_for_format(a["format"])
                out.append((group, a["file"], art_dir / a["file"], backend))
    return out


def time_rounds(
    embedders: list[Embedder], crops: np.ndarray, repeats: int, rounds: int = 10
) -> list[float]:
    """Median ms per face of each embedder, timed in interleaved rounds.

    Interleaving (a few calls of every variant per round, ``rounds`` times) exposes all
    variants to the same background load, so their ratios stay meaningful on a shared CPU
    where back-to-back blocks would each see a different load.
    """
    for emb in embedders:
        for _ in range(3):
            emb.embed(crops)
    per_round = max(1, repeats // rounds)
    times: list[list[float]] = [[] for _ in embedders]
    for _ in range(rounds):
        for i, emb in enumerate(embedders):
            for _ in range(per_round):
                t0 = time.perf_counter()
                emb.embed(crops)
                times[i].append((time.perf_counter() - t0) * 1000 / len(crops))
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "embed_backends.json")
    args = ap.parse_args()
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (8, 112, 112, 3), dtype=np.uint8)
    rows: list[dict] = []
    runnable: list[tuple[dict, Embedder]] = []
    for group, name, path, backend in variants(args.artifacts):
        prep = get_entry(EMBEDDERS[group]).preprocessing
        try:
            session = open_session(path, backend, threads=args.threads)
        except EdgefaceError as exc:
            rows.append({"variant": name, "backend": backend, "error": str(exc)})
            continue
        row = {"model": group, "variant": name, "backend": backend}
        row["size_bytes"] = path.stat().st_size
        rows.append(row)
        runnable.append(
            (
                row,
                Embedder(session, preprocessing=prep, model_id=group, model_sha256="", flip=False),
            )
        )
    embedders = [e for _, e in runnable]
    b1 = time_rounds(embedders, crops[:1], args.repeats)
    b8 = time_rounds(embedders, crops, max(args.repeats // 8, 10))
    for (row, _), t1, t8 in zip(runnable, b1, b8, strict=True):
        row["ms_per_face_b1"], row["ms_per_face_b8"] = round(t1, 3), round(t8, 3)
    print(f"{'variant':<36} {'backend':<12} {'KB':>6} {'ms b1':>7} {'ms b8':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<36} {r['backend']:<12} {r['error']}")
            continue
        print(
            f"{r['variant']:<36} {r['backend']:<12} {r['size_bytes'] / 1000:>6.0f} "
            f"{r['ms_per_face_b1']:>7.2f} {r['ms_per_face_b8']:>7.2f}"
        )
    result = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "repeats": args.repeats,
        "load_avg_at_end": os.getloadavg(),
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
