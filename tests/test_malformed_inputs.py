"""Malformed images through the API, the CLI and a door replay: every one is either a usable
image or one :class:`ImageError` line; never an internal error (exit 70), a traceback, a hang
or more than 1 GB of memory. A sample runs in the fast suite, the full set (> 1,000) is slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from malformed_images import generate, special_files, write_cases

from edgeface.errors import ImageError
from edgeface.imaging import load_image

PHOTOS = (
    "Tony_Blair/Tony_Blair_0001.jpg",
    "Colin_Powell/Colin_Powell_0001.jpg",
    "Laura_Bush/Laura_Bush_0030.jpg",
    "Jeb_Bush/Jeb_Bush_0001.jpg",
)
RSS_LIMIT_KB = 1024 * 1024  # 1 GB
EDGEFACE = [sys.executable, "-m", "edgeface.cli.main"]


def _photos(lfw_dir: Path) -> list[Path]:
    return [lfw_dir / "images" / p for p in PHOTOS]


class _Timeout(Exception):
    pass


def _with_alarm(seconds: int):
    def on_alarm(*_: object) -> None:
        raise _Timeout

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    return old


def _check_one(path: Path, detector) -> str:
    """'ok' or 'refused'; anything else fails the test."""
    old = _with_alarm(30)
    try:
        try:
            img = load_image(path)
        except ImageError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), exc
            return "refused"
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        detector.detect(img)
        return "ok"
    except _Timeout:
        pytest.fail(f"{path}: hung for 30 s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_sample_of_malformed_images_through_the_api(lfw_dir, detector, tmp_path) -> None:
    paths = write_cases(generate(_photos(lfw_dir), n_damaged=90), tmp_path / "cases")
    paths += list(special_files(tmp_path / "special"))
    assert len(paths) >= 100
    outcome = {p.name: _check_one(p, detector) for p in paths}
    for name in (
        "fifo.jpg",
        "zero",
        "sparse.png",
        "dangling.jpg",
        "dir.jpg",
        "empty.jpg",
        "huge_png_header.png",
        "huge_gif_header.gif",
        "huge_bmp_header.bmp",
        "huge_pgm_header.pgm",
        "huge_jpeg_sof.jpg",
        "side_35000x250.png",
        "text.jpg",
    ):
        assert outcome[name] == "refused", name
    for name in (
        "shape_1x1.png",
        "shape_5000x1.png",
        "shape_4000x2.png",
        "big_7000x7000.png",
        "valid.png",
        "deep16.png",
        "alpha.png",
    ):
        assert outcome[name] == "ok", name


# On Linux a forked child's ru_maxrss starts from its parent's high-water mark (kept across
# exec), so a CLI forked straight from a large pytest process would report pytest's memory.
# A small launcher forks the CLI instead and reports the CLI's own peak (with its helpers).
_LAUNCHER = textwrap.dedent("""
    import os, sys
    pid = os.fork()
    if pid == 0:
        os.execv(sys.argv[2], sys.argv[2:])
    _, status, usage = os.wait4(pid, 0)
    with open(sys.argv[1], "w") as f:
        f.write(str(usage.ru_maxrss))
    sys.exit(os.waitstatus_to_exitcode(status))
""")


def _run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI; ``.maxrss_kb`` is the peak RSS of it and the helpers it waited for."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "maxrss"
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(rss_file), *EDGEFACE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher, the CLI and its helpers
            proc.communicate()
            pytest.fail(f"edgeface {' '.join(args[:3])}...: hung for {timeout} s")
        result = subprocess.CompletedProcess(args, proc.returncode, out, err)
        result.maxrss_kb = int(rss_file.read_text())  # type: ignore[attr-defined]
    return result


def test_special_files_through_the_cli_are_one_line_errors(tmp_path) -> None:
    special = list(special_files(tmp_path))
    for path in special:
        r = _run_cli(["detect", str(path)], timeout=60)
        assert r.returncode == 3, (path, r.returncode, r.stderr)
        assert r.maxrss_kb < RSS_LIMIT_KB, (path, r.maxrss_kb)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    draw = _run_cli(["detect", str(special[-1]), "--draw", str(tmp_path / "out.txt")])
    assert draw.returncode == 2 and "--draw" in draw.stderr


def test_a_door_replay_of_malformed_images_runs_to_its_end(lfw_dir, tmp_path) -> None:
    """The 1x1 PNG that made `edgeface door` exit 70 (and systemd restart it into the same
    crash), huge headers, a FIFO and damaged photos: each frame is skipped, the replay ends."""
    cases = [c for c in generate(_photos(lfw_dir), n_damaged=12) if not c[0].startswith("big_")]
    folder = tmp_path / "replay"
    paths = write_cases(cases, folder)
    os.mkfifo(folder / "fifo.jpg")
    door = _door_replay(tmp_path, folder, frames=len(paths) + 1)
    assert door.returncode == 0, door.stderr[-3000:]
    assert "Traceback" not in door.stderr and "internal error" not in door.stderr


def _cli_batches(paths: list[Path], size: int) -> tuple[int, int, int]:
    """Run ``edgeface detect --json`` on batches; return (images ok, refused, peak RSS KB)."""
    ok = refused = peak = 0
    for i in range(0, len(paths), size):
        batch = paths[i : i + size]
        r = _run_cli(["detect", "--json", *map(str, batch)], timeout=600)
        peak = max(peak, r.maxrss_kb)
        assert r.returncode in (0, 1, 3), (r.returncode, r.stderr[-2000:])
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
        doc = json.loads(r.stdout) if r.stdout.strip() else []
        docs = doc if isinstance(doc, list) else [doc]
        refused += sum("error" in d for d in docs) + (r.returncode == 3)
        ok += sum("faces" in d for d in docs)
    return ok, refused, peak


@pytest.mark.slow
def test_over_a_thousand_malformed_images_through_api_cli_and_door(lfw_dir, tmp_path) -> None:
    cases = generate(_photos(lfw_dir), n_damaged=1000)
    paths = write_cases(cases, tmp_path / "cases")
    assert len(paths) >= 1000
    special = list(special_files(tmp_path / "special"))
    # 1. the API, in a process of its own so that its peak memory is its own
    worker = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from edgeface.detector import MTCNNDetector
        from edgeface.errors import ImageError
        from edgeface.imaging import load_image
        det = MTCNNDetector()
        ok = refused = 0
        for line in sys.stdin:
            try:
                img = load_image(line.strip())
            except ImageError:
                refused += 1
                continue
            det.detect(img)
            ok += 1
        # this process's own peak (VmHWM resets at exec; ru_maxrss would include pytest's)
        status = Path("/proc/self/status").read_text()
        rss = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
        print(json.dumps({{"ok": ok, "refused": refused, "rss_kb": rss}}))
    """)
    listing = "\n".join(map(str, [*paths, *special])) + "\n"
    r = subprocess.run(
        [sys.executable, "-c", worker], input=listing, capture_output=True, text=True, timeout=1800
    )
    assert r.returncode == 0, r.stderr[-3000:]
    api = json.loads(r.stdout.strip().splitlines()[-1])
    assert api["ok"] + api["refused"] == len(paths) + len(special)
    assert api["rss_kb"] < RSS_LIMIT_KB, api
    # 2. the CLI: batches, and each special file alone
    ok, refused, cli_rss = _cli_batches([*paths, *special], size=150)
    assert ok + refused == len(paths) + len(special)
    assert cli_rss < RSS_LIMIT_KB
    # 3. a door replay of the whole folder exits normally
    door = _door_replay(tmp_path, tmp_path / "cases", frames=len(paths))
    assert door.returncode == 0, door.stderr[-3000:]
    assert "Traceback" not in door.stderr and "internal error" not in door.stderr
    assert door.maxrss_kb < RSS_LIMIT_KB
    print(
        f"\nmalformed: {len(paths) + len(special)} inputs; API ok {api['ok']} refused "
        f"{api['refused']} peak RSS {api['rss_kb'] / 1024:.0f} MB; CLI ok {ok} refused "
        f"{refused} peak RSS {cli_rss / 1024:.0f} MB; door replay of {len(paths)} frames "
        f"exit {door.returncode} peak RSS {door.maxrss_kb / 1024:.0f} MB"
    )


def _door_replay(tmp_path: Path, folder: Path, frames: int) -> subprocess.CompletedProcess:
    key = tmp_path / "gallery.key"
    gallery = tmp_path / "gallery.efg"
    init = _run_cli(
        ["gallery", "init", "--gallery", str(gallery), "--key-file", str(key), "--create-key"]
    )
    assert init.returncode == 0, init.stderr
    cfg = tmp_path / "door.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [camera]
        kind = "images"
        path = "{folder}"
        [gallery]
        path = "{gallery}"
        key_file = "{key}"
        [actuator]
        kind = "file"
        path = "{tmp_path / "relay"}"
        [audit]
        path = "{tmp_path / "audit" / "door.jsonl"}"
        [daemon]
        watchdog = false
    """)
    )
    return _run_cli(["door", "--config", str(cfg), "--max-frames", str(frames)], timeout=1800)
