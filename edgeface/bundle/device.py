"""Releases on a device: install, switch, health check, roll back.

Layout under the device root (``/var/lib/edgeface`` by default)::

    releases/<version>/          one unpacked bundle: models/, selftest/, report/,
                                 manifest.json + manifest.sig, and gallery.efg (the gallery
                                 generation that belongs to this release's embedder)
    releases/.staging-<v>-<rnd>  an install in progress (removed by the next install)
    current  -> releases/<v>     what the door daemon and the kiosk read (models and gallery)
    previous -> releases/<u>     what ``bundle rollback`` goes back to
    state.json                   anti-rollback counter and the last install's outcome
    .install.lock                one install / rollback at a time

Crash safety: a release directory gets its final name only after every file is written and
fsynced, and ``current`` is only ever replaced by ``rename`` of a new symlink, so a SIGKILL or
power cut at any moment leaves ``current`` on the old or the new release, both complete.
The gallery moves with the release: the door reads ``current/gallery.efg``, so models and
templates switch in the same rename and a new embedder never meets old templates.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeface.bundle import envelope, selftest
from edgeface.bundle.errors import BundleError, SelfTestError
from edgeface.bundle.keys import DEFAULT_TRUSTED_KEYS, trusted_keys
from edgeface.bundle.manifest import Manifest, check_policy, parse
from edgeface.bundle.unpack import extract
from edgeface.errors import EdgefaceError, StorageError
from edgeface.gallery.durable import fsync_dir
from edgeface.storage import staged_path

DEFAULT_ROOT = Path("/var/lib/edgeface")
DEFAULT_RESTART = ["systemctl", "try-restart", "edgeface-door.service"]
#: the same interpreter as the installer; no camera probe: the restarted daemon owns the camera
DEFAULT_HEALTH = [
    sys.executable, "-m", "edgeface.cli.main",
    "door", "--check", "--no-camera", "--config", "/etc/edgeface/door.toml",
]  # fmt: skip
RELEASE_MANIFEST = "manifest.json"
RELEASE_SIGNATURE = "manifest.sig"
GALLERY = "gallery.efg"
Log = Callable[[str], None]


def _fsync_tree(d: Path) -> None:
    for dirpath, _dirs, files in os.walk(d):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def _same_owner(dest: Path, src: Path) -> None:
    """Give the release's gallery the owner and mode of the one it came from: the installer
    runs as root, the door daemon as its own (systemd DynamicUser) user."""
    st = src.stat()
    with contextlib.suppress(OSError):
        if os.geteuid() == 0:
            os.chown(dest, st.st_uid, st.st_gid)
        os.chmod(dest, st.st_mode & 0o777)


class _Laps:
    """Seconds spent in each step of an install, for its report: ``lap(name)`` ends a step."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(now - self._t, 3)
        self._t = now


@dataclass
class DeviceConfig:
    root: Path = DEFAULT_ROOT
    trusted_keys: Path = DEFAULT_TRUSTED_KEYS
    #: run after every switch (empty: none); ``systemctl try-restart`` leaves stopped units alone
    restart_command: list[str] = field(default_factory=lambda: list(DEFAULT_RESTART))
    #: must exit 0 after the switch, else the device rolls back (empty: none)
    health_command: list[str] = field(default_factory=lambda: list(DEFAULT_HEALTH))
    #: backend the self-test loads the embedder with (default: the bundle's target backend)
    backend: str | None = None
    #: releases kept besides current and previous
    keep_releases: int = 2
    command_timeout_s: float = 300.0
    lock_timeout_s: float = 60.0


def verify_release(directory: Path, trusted: dict[str, Any]) -> Manifest:
    """Raise BundleError unless ``directory`` holds a complete, signed, unmodified release."""
    where = str(directory)
    try:
        mb = (directory / RELEASE_MANIFEST).read_bytes()
        sig = (directory / RELEASE_SIGNATURE).read_bytes()
    except OSError as exc:
        raise BundleError(f"{where}: not a complete release ({exc.strerror or exc})") from exc
    raw = json.loads(mb)
    key = trusted.get(str(raw.get("key_id")))
    if key is None:
        raise BundleError(f"{where}: signed by a key that is no longer trusted")
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(sig, envelope.signed_bytes(mb))
    except InvalidSignature:
        raise BundleError(f"{where}: release manifest signature is bad") from None
    m = parse(raw, where)
    from edgeface.modelstore import sha256_file

    for entry in m.files.values():
        p = directory / entry.path
        if not p.is_file() or p.stat().st_size != entry.size or sha256_file(p) != entry.sha256:
            raise BundleError(f"{where}: {entry.path} is missing or modified")
    return m


class Device:
    """One device root; every mutating method takes the install lock."""

    def __init__(self, config: DeviceConfig | None = None, *, log: Log | None = None) -> None:
        self.config = config or DeviceConfig()
        self.root = Path(self.config.root)
        self.log: Log = log or (lambda _m: None)

    # ------------------------------------------------------------------ layout
    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def previous(self) -> Path:
        return self.root / "previous"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def _version_of(self, link: Path) -> int | None:
        try:
            return int(Path(os.readlink(link)).name)
        except (OSError, ValueError):
            return None

    def current_version(self) -> int | None:
        return self._version_of(self.current)

    def previous_version(self) -> int | None:
        return self._version_of(self.previous)

    def release_dir(self, version: int) -> Path:
        return self.releases / str(version)

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StorageError(f"{self.state_path}: unreadable device state ({exc})") from exc

    def highest_version(self) -> int:
        """The anti-rollback counter: never below the active release's version."""
        return max(int(self.state().get("highest_version", 0)), self.current_version() or 0)

    def _save_state(self, **changes: Any) -> None:
        st = {**self.state(), **changes}
        with staged_path(self.state_path) as tmp:
            tmp.write_text(json.dumps(st, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        fsync_dir(self.root)

    # ------------------------------------------------------------------ locking, links
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.releases.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".install.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageError(f"{self.root}: cannot prepare the device root ({exc})") from exc
        deadline = time.monotonic() + self.config.lock_timeout_s
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise BundleError(
                            f"{self.root}: another bundle install or rollback is running"
                        ) from None
                    time.sleep(0.05)
            self._clean_leftovers()
            yield
        finally:
            os.close(fd)

    def _clean_leftovers(self) -> None:
        """Remove what killed installs left behind (never a release with its final name)."""
        for p in self.releases.iterdir():
            if p.name.startswith((".staging-", ".old-")):
                shutil.rmtree(p, ignore_errors=True)
        for p in self.root.iterdir():
            if p.name.startswith((".current.tmp-", ".previous.tmp-")):
                with contextlib.suppress(OSError):
                    p.unlink()

    def _point(self, link: Path, version: int | None) -> None:
        """Replace the symlink ``link`` atomically (``None`` removes it)."""
        if version is None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
        else:
            tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
            os.symlink(f"releases/{version}", tmp)
            os.replace(tmp, link)
        fsync_dir(self.root)

    def _switch(self, new: int | None, prev: int | None) -> None:
        # previous first: a kill between the two renames leaves current untouched
        self._point(self.previous, prev)
        self._point(self.current, new)

    def _run(self, what: str, command: list[str]) -> tuple[bool, str]:
        if not command:
            return True, "skipped"
        try:
            r = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=self.config.command_timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{what} command {command[0]!r} failed: {exc}"
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0:
            fail = [ln for ln in out.splitlines() if "FAIL" in ln or "error" in ln.lower()]
            line = (fail or out.splitlines() or [""])[-1]
            return False, f"{what} exited {r.returncode}: {line}".rstrip(": ")
        return True, out.splitlines()[-1] if out else "ok"

    # ------------------------------------------------------------------ install
    def install(
        self,
        bundle: Path,
        *,
        allow_downgrade: bool = False,
        gallery_key: Callable[[], Any] | None = None,
        import_gallery: Path | None = None,
    ) -> dict[str, Any]:
        """Verify, unpack, self-test, carry the gallery over, switch, restart, health-check;
        roll back when the service restart or the health check fails."""
        lap = _Laps()
        if gallery_key is not None:
            gallery_key = functools.cache(gallery_key)  # ask for a passphrase once
        trusted = trusted_keys(self.config.trusted_keys)
        with self._locked():
            env = envelope.verify(bundle, trusted)
            m = parse(env.manifest, str(bundle))
            check_policy(
                m, str(bundle), highest=self.highest_version(), allow_downgrade=allow_downgrade
            )
            old = self.current_version()
            if m.version == old:
                raise BundleError(f"{bundle}: version {m.version} is already the active release")
            self._gallery_precheck(m, gallery_key, import_gallery)
            lap("verify_s")
            stage, report = self._unpack_and_test(bundle, env, m, lap)
            with contextlib.ExitStack() as hold:
                migrated = self._carry_gallery(stage, m, hold, gallery_key, import_gallery)
                lap("gallery_s")
                self._place_release(stage, m.version)
                prev_before = self.previous_version()
                self._switch(m.version, old)
            lap("switch_s")
            self._restart_or_roll_back(bundle, m.version, old, prev_before, lap)
            self._prune()
        return {
            "name": m.name,
            "version": m.version,
            "previous": old,
            "selftest": report.checks,
            "gallery": migrated,
            "seconds": lap.times,
        }

    def _unpack_and_test(self, bundle: Path, env: Any, m: Manifest, lap: _Laps) -> tuple[Path, Any]:
        """Unpack into a staging folder and self-test it there; a failure removes it and
        raises before anything is switched."""
        stage = self.releases / f".staging-{m.version}-{secrets.token_hex(4)}"
        stage.mkdir()
        extract(env, m, stage)
        (stage / RELEASE_MANIFEST).write_bytes(env.manifest_bytes)
        (stage / RELEASE_SIGNATURE).write_bytes(env.signature)
        lap("unpack_s")
        self.log(f"unpacked {m.name} version {m.version}; self-test")
        report = selftest.run(stage, m.raw, self.config.backend)
        lap("selftest_s")
        if not report.ok:
            shutil.rmtree(stage, ignore_errors=True)
            raise SelfTestError(
                f"{bundle}: self-test failed, nothing was switched: {report.first_failure()}"
            )
        return stage, report

    def _place_release(self, stage: Path, version: int) -> None:
        """Make the tested staging folder ``releases/VERSION``, durably."""
        _fsync_tree(stage)
        final = self.release_dir(version)
        if final.exists():  # an older copy of this version (allowed downgrade)
            aside = self.releases / f".old-{version}-{secrets.token_hex(4)}"
            os.rename(final, aside)
            os.rename(stage, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(stage, final)
        fsync_dir(self.releases)

    def _restart_or_roll_back(
        self, bundle: Path, version: int, old: int | None, prev_before: int | None, lap: _Laps
    ) -> None:
        """Restart the services on the new release; if the restart or the health check
        fails, switch back to ``old``, restart again and raise."""
        self.log(f"switched current -> releases/{version}; restarting services")
        ok, detail = self._run("restart", self.config.restart_command)
        if ok:
            ok, detail = self._run("health check", self.config.health_command)
        lap("restart_and_health_s")
        if not ok:
            self._switch(old, prev_before)
            self._run("restart", self.config.restart_command)
            self._save_state(last={"version": version, "result": "rolled back", "why": detail})
            back = f"rolled back to {old}" if old is not None else "no release is active"
            raise SelfTestError(f"{bundle}: {detail}; {back}")
        self._save_state(
            highest_version=max(self.highest_version(), version),
            last={"version": version, "result": "installed", "at": time.time()},
        )

    def _gallery_source(self, import_gallery: Path | None) -> Path | None:
        cur = self.current / GALLERY
        if self.current_version() is not None and cur.is_file():
            return cur
        return import_gallery if import_gallery is not None and import_gallery.is_file() else None

    def _gallery_precheck(
        self, m: Manifest, gallery_key: Callable[[], Any] | None, import_gallery: Path | None
    ) -> None:
        """Refuse before unpacking anything when the gallery could not follow the new
        embedder (no key given, or templates without kept crops)."""
        from edgeface.gallery import GalleryFile
        from edgeface.gallery.durable import read_file
        from edgeface.gallery.format import read_header
        from edgeface.gallery.migrate import MigrationRefusedError, check_migratable

        src = self._gallery_source(import_gallery)
        if src is None:
            return
        hm = read_header(read_file(src), str(src)).get("model")
        new_sha = m.files[m.embedder["file"]].sha256
        if not isinstance(hm, dict) or (
            hm.get("sha256") == new_sha and hm.get("id") == m.embedder["embedding_space"]
        ):
            return
        if gallery_key is None:
            raise BundleError(
                f"{src}: the gallery was enrolled with embedder sha256 {str(hm['sha256'])[:12]} "
                f"and this bundle brings {new_sha[:12]}; give the gallery key (--key-file or "
                "--credential) so it can be re-embedded"
            )
        try:
            check_migratable(GalleryFile(src, gallery_key()).load(), str(src))
        except MigrationRefusedError as exc:
            raise BundleError(str(exc)) from None

    def _carry_gallery(
        self,
        stage: Path,
        m: Manifest,
        hold: contextlib.ExitStack,
        gallery_key: Callable[[], Any] | None,
        import_gallery: Path | None,
    ) -> str:
        """Put the gallery generation for the new embedder into the staged release.

        Same embedder: the current gallery's bytes are copied. Another embedder: the gallery
        is re-embedded from its kept crops (``gallery migrate``) or the install is refused.
        The gallery's writer lock is held until the switch, so no enrollment is lost between
        the copy and the rename.
        """
        from edgeface.gallery import GalleryFile
        from edgeface.gallery.durable import WriterLock, read_file
        from edgeface.gallery.format import read_header
        from edgeface.gallery.migrate import MigrationRefusedError, check_migratable, reembed
        from edgeface.gallery.store import ModelRef
        from edgeface.modelstore import sha256_file

        src = self._gallery_source(import_gallery)
        if src is None:
            return "no gallery"
        hold.enter_context(WriterLock(src))
        data = read_file(src)
        header = read_header(data, str(src))
        emb = m.embedder
        new_ref = ModelRef(str(emb["embedding_space"]), sha256_file(stage / emb["file"]))
        hm = header.get("model")
        old_ref = ModelRef(str(hm["id"]), str(hm["sha256"])) if isinstance(hm, dict) else None
        dest = stage / GALLERY
        if old_ref is None or old_ref == new_ref:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            _same_owner(dest, src)
            return f"copied ({src.name}, same embedder)"
        if gallery_key is None:
            raise BundleError(
                f"{src}: the gallery was enrolled with {old_ref.describe()} and this bundle "
                f"brings {new_ref.describe()}; give the gallery key (--key-file or "
                "--credential) so it can be re-embedded"
            )
        gf = GalleryFile(src, gallery_key())
        g = gf.load()
        try:
            check_migratable(g, str(src))
        except MigrationRefusedError as exc:
            raise BundleError(str(exc)) from None
        embedder = selftest.open_embedder(
            stage, emb, self.config.backend or m.backend, flip=bool(emb["flip"])
        )
        new = reembed(g, embedder)
        out = GalleryFile(dest, gf.key)
        out._kdf = header["kdf"]  # same key derivation: no second passphrase stretch
        out.save(new)
        _same_owner(dest, src)
        return f"re-embedded {new.n_templates} templates of {len(new)} people"

    # ------------------------------------------------------------------ rollback & co
    def rollback(self) -> dict[str, Any]:
        """Switch ``current`` to ``previous`` (and ``previous`` to the old current)."""
        trusted = trusted_keys(self.config.trusted_keys)
        with self._locked():
            cur, prev = self.current_version(), self.previous_version()
            if prev is None or not self.release_dir(prev).is_dir():
                raise BundleError(f"{self.root}: no previous release to roll back to")
            verify_release(self.release_dir(prev), trusted)
            self._carry_same_embedder_gallery(cur, prev)
            self._switch(prev, cur)
            ok, detail = self._run("restart", self.config.restart_command)
            if ok:
                ok, detail = self._run("health check", self.config.health_command)
            self._save_state(last={"version": prev, "result": "rollback", "health": detail})
        if not ok:
            raise SelfTestError(f"rolled back to {prev}, but {detail}")
        return {"current": prev, "previous": cur, "health": detail}

    def _carry_same_embedder_gallery(self, cur: int | None, prev: int) -> None:
        """Rolling back between releases with the same embedder keeps enrollments made since;
        across an embedder change the previous release's own (older) generation is used."""
        from edgeface.gallery.durable import WriterLock, atomic_write, read_file

        if cur is None:
            return
        src, dst = self.release_dir(cur) / GALLERY, self.release_dir(prev) / GALLERY
        if not src.is_file():
            return
        a = json.loads((self.release_dir(cur) / RELEASE_MANIFEST).read_bytes())
        b = json.loads((self.release_dir(prev) / RELEASE_MANIFEST).read_bytes())
        sha = lambda raw: raw["files"][raw["embedder"]["file"]]["sha256"]  # noqa: E731
        if sha(a) == sha(b):
            with WriterLock(src):
                atomic_write(dst, read_file(src))

    def _prune(self) -> None:
        keep = {self.current_version(), self.previous_version()}
        versions = sorted(int(p.name) for p in self.releases.iterdir() if p.name.isdigit())
        extra = [v for v in versions if v not in keep]
        for v in extra[: max(0, len(extra) - self.config.keep_releases)]:
            shutil.rmtree(self.release_dir(v), ignore_errors=True)

    def list(self) -> list[dict[str, Any]]:
        try:
            trusted = trusted_keys(self.config.trusted_keys)
        except EdgefaceError:
            trusted = {}
        out = []
        cur, prev = self.current_version(), self.previous_version()
        if not self.releases.is_dir():
            return out
        for p in sorted(self.releases.iterdir(), key=lambda p: (not p.name.isdigit(), p.name)):
            if not p.name.isdigit():
                continue
            v = int(p.name)
            row: dict[str, Any] = {
                "version": v,
                "role": "current" if v == cur else "previous" if v == prev else "",
            }
            try:
                m = verify_release(p, trusted)
                row.update(name=m.name, created=m.summary()["created"], state="complete")
                row["embedder_sha256"] = m.files[m.embedder["file"]].sha256
            except (BundleError, OSError, ValueError) as exc:
                row.update(state=f"damaged: {exc}")
            row["gallery"] = (p / GALLERY).is_file()
            out.append(row)
        return sorted(out, key=lambda r: r["version"])

    def status(self) -> dict[str, Any]:
        st = self.state()
        return {
            "root": str(self.root),
            "current": self.current_version(),
            "previous": self.previous_version(),
            "highest_version": self.highest_version(),
            "last": st.get("last"),
        }
