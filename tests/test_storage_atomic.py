"""edgeface.storage.atomic_write: the one atomic-write helper (issue 14)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from edgeface.errors import StorageError
from edgeface.recognition.calibration import Calibration, load_calibration
from edgeface.storage import atomic_write, backup_path


def test_atomic_write_modes_and_backup(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    atomic_write(p, b"one")
    assert p.read_bytes() == b"one" and (p.stat().st_mode & 0o777) == 0o600
    atomic_write(p, b"two", backup=True)
    assert p.read_bytes() == b"two" and backup_path(p).read_bytes() == b"one"
    q = tmp_path / "public.json"
    old = os.umask(0o022)
    try:
        atomic_write(q, b"{}", mode=0o644)
    finally:
        os.umask(old)
    assert (q.stat().st_mode & 0o777) == 0o644
    assert sorted(x.name for x in tmp_path.iterdir()) == [
        "public.json",
        "state.json",
        "state.json.bak",
    ]


def test_calibration_save_is_all_or_nothing(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "cal.json"
    Calibration("m", "0" * 64, {"1e-03": 0.3}, flip=True).save(path)
    before = path.read_bytes()

    def replace_erofs(a: object, b: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", replace_erofs)
    with pytest.raises(StorageError, match="cannot save calibration"):
        Calibration("m", "0" * 64, {"1e-03": 0.9}, flip=True).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old calibration, whole
    assert [x.name for x in tmp_path.iterdir()] == ["cal.json"]  # no temporary left
    assert load_calibration(path).thresholds == {"1e-03": 0.3}
