"""Push a bundle to many devices in parallel with the OpenSSH ``scp``/``ssh`` clients.

Every Pi and Jetson already runs sshd and every operator already has keys and a
``known_hosts`` file, so edgeface adds no agent or daemon of its own: per host it copies the
bundle with ``scp`` into a temporary name, runs ``edgeface bundle install --json`` there over
``ssh`` and removes the copy. Host keys are always checked strictly
(``StrictHostKeyChecking=yes``, ``BatchMode=yes``): an unknown or changed host key fails that
host instead of prompting or trusting it. The device decides for itself whether the bundle is
acceptable (its own trusted keys, anti-rollback counter, self-test).
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    user: str | None
    host: str
    port: int | None

    @classmethod
    def parse(cls, spec: str) -> Target:
        """``[user@]host[:port]``."""
        user, _, rest = spec.rpartition("@")
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit():
            host, port = rest, ""
        return cls(user or None, host, int(port) if port else None)

    @property
    def login(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return self.login + (f":{self.port}" if self.port else "")


@dataclass
class PushOptions:
    identity: Path | None = None
    known_hosts: Path | None = None
    #: the command that runs edgeface on the device
    remote_edgeface: str = "edgeface"
    #: extra arguments for ``bundle install`` on the device (e.g. ``--key-file ...``)
    remote_args: list[str] = field(default_factory=list)
    remote_dir: str = "/tmp"
    parallel: int = 8
    timeout_s: float = 600.0
    connect_timeout_s: int = 10
    ssh_options: list[str] = field(default_factory=list)


@dataclass
class HostResult:
    host: str
    ok: bool
    step: str
    detail: str
    version: int | None = None
    seconds: float = 0.0
    install: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _common(opts: PushOptions) -> list[str]:
    args = [
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={opts.connect_timeout_s}",
    ]  # fmt: skip
    if opts.known_hosts is not None:
        args += ["-o", f"UserKnownHostsFile={opts.known_hosts}", "-o", "GlobalKnownHostsFile=none"]
    if opts.identity is not None:
        args += ["-i", str(opts.identity), "-o", "IdentitiesOnly=yes"]
    for o in opts.ssh_options:
        args += ["-o", o]
    return args


#: what ssh says about the cause, ahead of its generic last line ("Connection closed")
_CAUSES = ("host key", "identification has changed", "permission denied", "connection refused",
           "could not resolve", "timed out", "no route")  # fmt: skip


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    cause = [ln for ln in lines if any(c in ln.lower() for c in _CAUSES)]
    return (cause or lines or [""])[-1]


def push_one(bundle: Path, target: Target, opts: PushOptions) -> HostResult:
    t0 = time.perf_counter()
    name = str(target)
    remote = f"{opts.remote_dir.rstrip('/')}/.edgeface-{secrets.token_hex(6)}-{bundle.name}"

    def done(ok: bool, step: str, detail: str, **kw: Any) -> HostResult:
        return HostResult(name, ok, step, detail, seconds=round(time.perf_counter() - t0, 2), **kw)

    scp = ["scp", *_common(opts)]  # not -q: it would silence ssh's reason for a failure
    if target.port:
        scp += ["-P", str(target.port)]
    try:
        r = subprocess.run(
            [*scp, str(bundle), f"{target.login}:{remote}"],
            capture_output=True, text=True, timeout=opts.timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return done(False, "copy", f"scp timed out after {opts.timeout_s:g} s")
    except OSError as exc:
        return done(False, "copy", f"cannot run scp: {exc}")
    if r.returncode != 0:
        return done(False, "copy", _last_line(r.stderr) or f"scp exited {r.returncode}")
    install = [*shlex.split(opts.remote_edgeface), "bundle", "install", "--json", remote]
    line = shlex.join([*install, *opts.remote_args])
    remote_cmd = f"{line}; rc=$?; rm -f {shlex.quote(remote)}; exit $rc"
    ssh = ["ssh", *_common(opts)]
    if target.port:
        ssh += ["-p", str(target.port)]
    try:
        r = subprocess.run(
            [*ssh, target.login, remote_cmd],
            capture_output=True, text=True, timeout=opts.timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return done(False, "install", f"ssh timed out after {opts.timeout_s:g} s")
    if r.returncode != 0:
        why = _last_line(r.stderr) or _last_line(r.stdout) or f"exit {r.returncode}"
        return done(False, "install", f"exit {r.returncode}: {why}")
    try:
        report = json.loads(r.stdout)
    except ValueError:
        return done(False, "install", f"unreadable answer: {_last_line(r.stdout)[:200]}")
    total = sum(report.get("seconds", {}).values())
    return done(
        True,
        "installed",
        f"{report.get('name')} {report.get('version')} (was {report.get('previous')}), "
        f"install {total:.2f} s; gallery: {report.get('gallery')}",
        version=report.get("version"),
        install=report,
    )


def push(bundle: Path, targets: list[Target], opts: PushOptions) -> list[HostResult]:
    """Install ``bundle`` on every target, ``opts.parallel`` at a time; results in order."""
    with ThreadPoolExecutor(max_workers=max(1, min(opts.parallel, len(targets)))) as pool:
        return list(pool.map(lambda t: push_one(bundle, t, opts), targets))


def table(results: list[HostResult]) -> str:
    rows = [("host", "result", "version", "seconds", "detail")]
    for r in results:
        rows.append(
            (
                r.host,
                "ok" if r.ok else f"FAILED ({r.step})",
                "" if r.version is None else str(r.version),
                f"{r.seconds:.1f}",
                r.detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )
