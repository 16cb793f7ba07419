"""Install time of a signed bundle on this machine: verify + unpack + self-test + switch.

    python bench/bench_bundle_install.py --embedder out/quant/mobilefacenet-int8.onnx
    python bench/bench_bundle_install.py --embedder ... --gallery-people 50   # + migration

The embedder needs its own calibration beside it (``FILE.calibration.json``, from
``edgeface eval lfw --model FILE --write-calibration FILE.calibration.json``). A throwaway
signing key and device root are made in a temporary directory; each run installs the bundle
into a fresh root (``Device.install``, the code ``edgeface bundle install`` runs, without the
interpreter start-up) with no service restart and no health command, and reports the median
of each step. Goal (issue 17): <= 5 s with the INT8 embedder. ``--gallery-people N`` adds a
crop-keeping gallery of N people (2 templates each, synthetic crops) enrolled with the float
embedder, so each install also re-embeds it. Prints a table; JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embedder", required=True, type=Path)
    ap.add_argument("--embedder-model", default="edgeface-xs", help="its manifest entry")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--gallery-people", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import numpy as np

    from edgeface.bundle.build import BuildSpec, build
    from edgeface.bundle.device import Device, DeviceConfig
    from edgeface.bundle.keys import generate
    from edgeface.gallery import GalleryFile, ModelRef, create_key_file
    from edgeface.gallery.store import Template
    from edgeface.modelstore import resolve_model, sha256_file
    from edgeface.recognition.calibration import calibration_beside

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        generate(d / "op.key", d / "trusted" / "op.pub")
        bundle = d / "b.efb"
        t0 = time.perf_counter()
        build(
            BuildSpec(
                name="bench", version=2, embedder=args.embedder,
                calibration=calibration_beside(args.embedder), embedder_model=args.embedder_model,
            ),
            d / "op.key", bundle,
        )  # fmt: skip
        build_s = time.perf_counter() - t0
        gallery, key = None, None
        if args.gallery_people:
            key = create_key_file(d / "g.key")
            ref = ModelRef(
                "mobilefacenet-foamliu-ms1m", sha256_file(resolve_model("mobilefacenet-dyn"))
            )
            gf = GalleryFile(d / "g.efg", key)
            gf.create(model=ref, keep_crops=True)
            rng = np.random.default_rng(0)
            with gf.edit() as g:
                for i in range(args.gallery_people):
                    ts = [Template(rng.normal(size=128).astype(np.float32), 1.0, ref,
                                   crop=rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
                          for _ in range(2)]  # fmt: skip
                    g.add_identity(f"person {i}", ts)
            gallery = d / "g.efg"
        for i in range(args.runs):
            dev = Device(
                DeviceConfig(root=d / f"root{i}", trusted_keys=d / "trusted",
                             restart_command=[], health_command=[])
            )  # fmt: skip
            r = dev.install(bundle, import_gallery=gallery, gallery_key=(lambda: key))
            rows.append(r["seconds"])
    steps = list(rows[0])
    med = {s: statistics.median(r[s] for r in rows) for s in steps}
    total = [sum(r.values()) for r in rows]
    print(f"bundle {bundle.name}: {os.path.getsize(args.embedder) / 1e3:.0f} KB embedder, "
          f"built in {build_s:.2f} s; {args.runs} installs, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("| step | median s |\n|---|---:|")
    for s in steps:
        print(f"| {s[:-2]} | {med[s]:.3f} |")
    print(f"| **total** | **{statistics.median(total):.3f}** (min {min(total):.3f}, "
          f"max {max(total):.3f}) |")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "embedder": str(args.embedder), "runs": rows, "median": med,
            "total_median_s": statistics.median(total), "gallery_people": args.gallery_people,
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
