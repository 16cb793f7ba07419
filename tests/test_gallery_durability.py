"""Durability: SIGKILL at random moments, concurrent writers, full disk, locks, backups.

Writers are forked processes (the parent already imported numpy and cryptography, so each
child starts in milliseconds and 50+ kills fit in a few seconds).
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing as mp
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from edgeface.errors import StorageError
from edgeface.gallery import (
    GalleryFile,
    GalleryNotFoundError,
    LockTimeoutError,
    ModelRef,
    Template,
    create_key_file,
    load_key_file,
)
from edgeface.gallery.durable import WriterLock, atomic_write

MODEL = ModelRef("mobilefacenet", "d" * 64)
CTX = mp.get_context("fork")
SEED_PEOPLE = 300  # ~170 kB file: each write takes a few ms, a wide window to be killed in


def _template(seed: int) -> Template:
    e = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return Template(e, 0.5, MODEL, created=float(seed))


def _setup(tmp_path) -> GalleryFile:
    create_key_file(tmp_path / "g.key")
    gf = GalleryFile(tmp_path / "g.efg", load_key_file(tmp_path / "g.key"))
    gf.create()
    with gf.edit() as g:
        for i in range(SEED_PEOPLE):
            g.add_identity(f"seed{i}", [_template(10_000 + i)])
    return gf


def _expected_names(generation: int) -> set[str]:
    """State after ``generation`` writes: the seeds (generation 2) plus one person per write."""
    return {f"seed{i}" for i in range(SEED_PEOPLE)} | {f"gen{j}" for j in range(2, generation)}


def _writer_forever(path: str, key: str, committed, ready) -> None:  # child process
    gf = GalleryFile(path, load_key_file(key))
    ready.set()
    while True:
        with gf.edit() as g:
            gen = g.generation
            g.add_identity(f"gen{gen}", [_template(gen)])
        committed.value = gen + 1


def test_sigkill_at_random_moments_never_corrupts(tmp_path):
    gf = _setup(tmp_path)
    rng = np.random.default_rng(1234)
    first = last = gf.load().generation
    left_temps = 0
    kills = 60
    for k in range(kills):
        committed = CTX.Value("q", last, lock=False)  # a lock could die with the child
        ready = CTX.Event()
        p = CTX.Process(
            target=_writer_forever, args=(str(gf.path), str(tmp_path / "g.key"), committed, ready)
        )
        p.start()
        assert ready.wait(10)
        # mostly within the first write; every 4th child lives long enough for a few writes
        time.sleep(float(rng.uniform(0, 0.04) if k % 4 else rng.uniform(0.04, 0.15)))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        assert p.exitcode == -signal.SIGKILL
        left_temps += any(".tmp-" in f.name for f in tmp_path.iterdir())
        g = gf.load()  # must open: never corrupt, never empty
        # either the last committed state or the one being written when killed
        assert g.generation in (committed.value, committed.value + 1)
        assert {i.name for i in g.identities()} == _expected_names(g.generation)
        bak = gf.load_backup()
        assert bak.generation in (g.generation - 1, g.generation)
        last = g.generation
    # the kills really happened during writes (temp files left) and across many writes
    assert left_temps >= 5, left_temps
    assert last - first >= 15, last - first
    with gf.edit():  # the next writer cleans up temporaries of killed writers
        pass
    assert not any(".tmp-" in f.name for f in tmp_path.iterdir())


def _enroll_many(path: str, key: str, tag: str, n: int, start) -> None:  # child process
    # a generous lock wait: in a fresh CI VM the fsyncs may stall behind gigabytes of just-
    # installed packages being written back; this test is about losing nothing, not speed
    gf = GalleryFile(path, load_key_file(key), lock_timeout=150.0)
    start.wait()
    for i in range(n):
        with gf.edit() as g:
            g.add_identity(f"{tag}{i}", [_template(hash((tag, i)) % 2**31)])


def test_two_processes_enrolling_at_once_lose_nothing(tmp_path):
    gf = _setup(tmp_path)
    start = CTX.Event()
    procs = [
        CTX.Process(
            target=_enroll_many, args=(str(gf.path), str(tmp_path / "g.key"), tag, 25, start)
        )
        for tag in ("a", "b")
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    names = {i.name for i in gf.load().identities()}
    assert {f"a{i}" for i in range(25)} <= names and {f"b{i}" for i in range(25)} <= names
    assert len(names) == SEED_PEOPLE + 50


def _hold_lock(path: str, held, release) -> None:  # child process
    with WriterLock(path):
        held.set()
        release.wait(30)


def test_writer_lock_excludes_and_times_out(tmp_path):
    gf = _setup(tmp_path)
    held, release = CTX.Event(), CTX.Event()
    p = CTX.Process(target=_hold_lock, args=(str(gf.path), held, release))
    p.start()
    try:
        assert held.wait(10)
        slow = GalleryFile(gf.path, gf.key, lock_timeout=0.3)
        with pytest.raises(LockTimeoutError, match="another process"), slow.edit():
            pass
        assert len(gf.load()) == SEED_PEOPLE  # readers need no lock
    finally:
        release.set()
        p.join()
    with slow.edit() as g:  # lock released by the holder
        g.add_identity("after", [_template(1)])


def test_lock_released_when_holder_is_killed(tmp_path):
    gf = _setup(tmp_path)
    held, release = CTX.Event(), CTX.Event()
    p = CTX.Process(target=_hold_lock, args=(str(gf.path), held, release))
    p.start()
    assert held.wait(10)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    with GalleryFile(gf.path, gf.key, lock_timeout=2).edit() as g:
        g.add_identity("after-kill", [_template(2)])


def _snapshot(tmp_path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in tmp_path.iterdir() if f.is_file()}


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_full_disk_leaves_old_gallery_intact(tmp_path, monkeypatch, failing):
    gf = _setup(tmp_path)
    with gf.edit() as g:  # make sure a .bak exists, so we check it is untouched too
        g.add_identity("existing", [_template(3)])
    before = _snapshot(tmp_path)
    fingerprint = gf.load().fingerprint()

    real = {"write": os.write, "fsync": os.fsync, "replace": os.replace}

    def write_half_then_enospc(fd, data):
        if len(data) > 1000:
            real["write"](fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real["write"](fd, data)

    def fsync_eio(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    def replace_erofs(a, b):
        raise OSError(errno.EROFS, "Read-only file system")

    fake = {"write": write_half_then_enospc, "fsync": fsync_eio, "replace": replace_erofs}
    monkeypatch.setattr(os, failing, fake[failing])
    with pytest.raises(StorageError, match="previous version is unchanged") as ei, gf.edit() as g:
        g.add_identity("new person", [_template(4)])
    monkeypatch.undo()
    assert str(gf.path) in str(ei.value)
    if failing != "replace":
        assert "no space left" in str(ei.value)
    after = _snapshot(tmp_path)
    assert after == before  # same files (no temp left), same bytes
    assert gf.load().fingerprint() == fingerprint


def _mount_tmpfs(path, size: str) -> bool:
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
    )
    return r.returncode == 0


def test_full_disk_on_a_real_tiny_filesystem(tmp_path):
    """The same on a real 512 kB tmpfs, where the kernel itself says ENOSPC. Needs the right
    to mount (root in a container or CI); the monkeypatched test above covers the rest."""
    mnt = tmp_path / "mnt"
    if os.geteuid() != 0 or not _mount_tmpfs(mnt, "512k"):
        pytest.skip("cannot mount a tmpfs here (needs root); covered by the test above")
    try:
        create_key_file(mnt / "g.key")
        gf = GalleryFile(mnt / "g.efg", load_key_file(mnt / "g.key"))
        gf.create()
        with gf.edit() as g:  # ~200 kB gallery; its .bak is a hard link (no extra space)
            for i in range(350):
                g.add_identity(f"p{i}", [_template(i)])
        before = _snapshot(mnt)
        fingerprint = gf.load().fingerprint()
        with pytest.raises(StorageError, match="no space left"), gf.edit() as g:
            for i in range(400):  # would need another ~230 kB beside the old 200 kB + .bak
                g.add_identity(f"q{i}", [_template(1000 + i)])
        assert _snapshot(mnt) == before
        assert gf.load().fingerprint() == fingerprint
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_missing_gallery_is_an_error_not_empty(tmp_path):
    create_key_file(tmp_path / "g.key")
    gf = GalleryFile(tmp_path / "g.efg", load_key_file(tmp_path / "g.key"))
    with pytest.raises(GalleryNotFoundError, match="gallery init"):
        gf.load()
    with pytest.raises(GalleryNotFoundError), gf.edit():
        pass
    assert not gf.path.exists()


def test_backup_is_previous_generation_and_files_are_private(tmp_path):
    gf = _setup(tmp_path)
    prev = gf.load()
    with gf.edit() as g:
        g.add_identity("newest", [_template(5)])
    assert gf.load_backup().fingerprint() == prev.fingerprint()
    assert gf.load_backup().generation == gf.load().generation - 1
    for name in ("g.efg", "g.efg.bak", "g.efg.lock"):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0, name


def test_atomic_write_without_backup_and_errors_in_unwritable_dir(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two", backup=False)
    assert target.read_bytes() == b"two" and not (tmp_path / "x.bin.bak").exists()
    with pytest.raises(StorageError, match="no-such-dir"):
        atomic_write(tmp_path / "no-such-dir" / "x.bin", b"data")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp_path / "x.bin.bak")
