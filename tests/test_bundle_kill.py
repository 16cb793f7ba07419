"""SIGKILL of ``edgeface bundle install`` at random moments never leaves a mixed device.

The install runs as a real process; it is killed anywhere from interpreter start-up to after
the switch. Afterwards ``current`` must resolve to the old or the new release, complete and
signed (every file's sha256 as in its manifest), with its gallery readable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bundle_support import device, float_bundle, make_keys

from edgeface.bundle.device import verify_release
from edgeface.bundle.keys import trusted_keys
from edgeface.gallery import GalleryFile, ModelRef, create_key_file, load_key_file
from edgeface.gallery.store import Template
from edgeface.modelstore import resolve_model, sha256_file

pytestmark = pytest.mark.slow
KILLS = 32


def test_sigkill_never_leaves_a_mix(tmp_path: Path, models_ready: None) -> None:
    private, trusted = make_keys(tmp_path)
    bundles = {v: float_bundle(tmp_path / f"v{v}.efb", private, v) for v in (1, 2)}
    key = create_key_file(tmp_path / "gallery.key")
    gallery = tmp_path / "legacy.efg"
    ref = ModelRef("mobilefacenet-foamliu-ms1m", sha256_file(resolve_model("mobilefacenet-dyn")))
    gf = GalleryFile(gallery, key)
    gf.create(model=ref)
    with gf.edit() as g:
        g.add_identity("Ada", [Template(np.ones(128, np.float32), 1.0, ref)])
    root = tmp_path / "dev"
    device(root, trusted).install(bundles[1], import_gallery=gallery)
    keys_ = trusted_keys(trusted)
    cmd = [sys.executable, "-m", "edgeface.cli.main", "bundle", "install", "--root", str(root),
           "--trusted-keys", str(trusted), "--restart-command", "", "--health-command", "",
           "--allow-downgrade", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def other() -> Path:
        return bundles[2 if device(root, trusted).current_version() == 1 else 1]

    t0 = time.perf_counter()
    subprocess.run([*cmd, str(other())], check=True, capture_output=True, env=env, timeout=120)
    full = time.perf_counter() - t0
    rng = np.random.default_rng(17)
    outcomes = {"switched": 0, "not switched": 0}
    for _ in range(KILLS):
        before = device(root, trusted).current_version()
        target = other()
        proc = subprocess.Popen(
            [*cmd, str(target)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        time.sleep(rng.uniform(0.0, full))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        dev = device(root, trusted)
        now = dev.current_version()
        assert now in (1, 2)
        outcomes["not switched" if now == before else "switched"] += 1
        m = verify_release(root / "current", keys_)  # complete, every file as signed
        assert m.version == now
        g = GalleryFile(root / "current" / "gallery.efg", load_key_file(tmp_path / "gallery.key"))
        assert [i.name for i in g.load().identities()] == ["Ada"]
    assert outcomes["switched"] and outcomes["not switched"], outcomes
    # the device still installs, and what the killed runs left behind is cleaned up
    r = subprocess.run([*cmd, str(other())], capture_output=True, env=env, timeout=120, text=True)
    assert r.returncode == 0, r.stderr
    leftovers = [p.name for p in (root / "releases").iterdir() if not p.name.isdigit()]
    assert leftovers == []
