"""``edgeface door --check``: is this unit ready to run? One line per check, non-zero on failure.

Run by an installer, by ``ExecStartPre=`` if wanted, and by an operator after changing the
config. Checks never touch the relay (the daemon may be running and own the GPIO line); they
check that the actuator's library and device exist instead.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeface.door.actuator_config import DEFAULT_GPIO_CHIP
from edgeface.door.config import DoorConfig, LivenessCheckConfig
from edgeface.errors import EdgefaceError


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.message}"


def report(results: list[CheckResult]) -> int:
    """Print one line per check and a summary (``door --check``, ``kiosk --check``); the
    command's exit code: 0 when every check passed, 1 otherwise."""
    for r in results:
        print(r.line())
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} ok, {len(failed)} failed")
    return 1 if failed else 0


def _check(name: str, fn: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, fn())
    except EdgefaceError as exc:
        return CheckResult(name, False, str(exc))
    except Exception as exc:  # a check must report, never crash the report
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")


def check_models(cfg: DoorConfig) -> list[CheckResult]:
    from edgeface.modelstore import ModelResolver

    resolver = ModelResolver.default()
    return [
        _check(f"model {name}", lambda name=name: f"{resolver.resolve(name)} (sha256 ok)")
        for name in cfg.recognition.models
    ]


def check_liveness(cfg: DoorConfig) -> CheckResult:
    """Load the liveness models and their threshold, as the daemon will (or say it is off)."""
    return check_liveness_table(cfg.liveness, "photos and screens can open the door")


def check_liveness_table(lc: LivenessCheckConfig, when_off: str) -> CheckResult:
    """``--check``'s liveness line for a ``[liveness]`` table (door and kiosk alike);
    ``when_off`` says what a photo can do when the check is turned off."""

    def probe() -> str:
        from edgeface.door.service import build_liveness

        checker = build_liveness(lc)
        if checker is None:
            return f"OFF (liveness.required = false): {when_off}"
        nets = ", ".join(
            f"{n.name} {n.model_sha256[:12]} ({n.session.info.backend})" for n in checker.nets
        )
        cal = checker.calibration
        source = f"calibration {cal.variant}" if cal is not None else "pinned"
        return f"{nets}; threshold {checker.threshold:.4f} ({source}; sha256 ok)"

    return _check("liveness", probe)


def check_gallery(cfg: DoorConfig) -> list[CheckResult]:
    from edgeface.door.service import gallery_key, load_gallery

    key = _check("gallery key", lambda: gallery_key(cfg).description)
    if not key.ok:
        return [key]

    def gallery() -> str:
        g = load_gallery(cfg)
        if len(g) == 0:
            raise EdgefaceError(f"{cfg.gallery.path}: gallery is empty (nobody can unlock)")
        return f"{cfg.gallery.path}: {len(g)} identities, decrypted and authenticated"

    return [key, _check("gallery", gallery)]


def check_camera(cfg: DoorConfig, timeout_s: float = 10.0) -> CheckResult:
    """Open the camera and read one frame, bounded by ``timeout_s`` (a hung driver)."""
    from edgeface.camera import open_source

    result: list[CheckResult] = []

    def probe() -> str:
        src = open_source(cfg.camera)
        try:
            frame = src.read()
        finally:
            src.close()
        h, w = frame.image.shape[:2]
        return f"{src.describe()}: got a {w}x{h} frame"

    t = threading.Thread(target=lambda: result.append(_check("camera", probe)), daemon=True)
    t.start()
    t.join(timeout_s)
    if not result:
        return CheckResult("camera", False, f"no frame within {timeout_s:.0f} s (driver hung?)")
    return result[0]


def check_actuator(cfg: DoorConfig) -> CheckResult:
    a = cfg.actuator
    kind = a.kind

    def probe() -> str:
        if kind in ("gpiozero", "gpiod"):
            mod = "gpiozero" if kind == "gpiozero" else "gpiod"
            if importlib.util.find_spec(mod) is None:
                extra = "pi" if kind == "gpiozero" else "gpio"
                raise EdgefaceError(f"{mod} is not installed (pip install 'edgeface[{extra}]')")
        if kind == "gpiod":
            chip = Path(a.chip or DEFAULT_GPIO_CHIP)
            if not chip.exists():
                raise EdgefaceError(f"{chip}: no such GPIO chip")
            if not os.access(chip, os.R_OK | os.W_OK):
                raise EdgefaceError(f"{chip}: no read/write permission")
        if kind == "command":
            import shutil

            for key, argv in (
                ("unlock_command", a.unlock_command),
                ("lock_command", a.lock_command),
            ):
                exe = (argv or ("",))[0]
                if shutil.which(exe) is None:
                    raise EdgefaceError(f"actuator.{key}: {exe} not found or not executable")
        if kind == "file":
            parent = Path(a.path or "").parent
            if not os.access(parent, os.W_OK):
                raise EdgefaceError(f"{parent}: not writable")
        return f"{kind} configured" + (
            " (dry run: the door is never switched)" if kind == "dryrun" else ""
        )

    return _check("actuator", probe)


def check_audit(cfg: DoorConfig) -> CheckResult:
    def probe() -> str:
        from edgeface.door.audit import chain_files, load_audit_key, verify_log

        a = cfg.audit
        d = a.path.parent
        if not d.exists():
            if not d.parent.is_dir():
                raise EdgefaceError(f"{d}: audit directory does not exist (nor {d.parent})")
            if not os.access(d.parent, os.W_OK):
                raise EdgefaceError(
                    f"{d}: audit directory does not exist and {d.parent} is not writable"
                )
            return f"{d}: audit directory does not exist yet; the daemon will create it"
        if not os.access(d, os.W_OK):
            raise EdgefaceError(f"{d}: audit directory not writable")
        key = load_audit_key(key_file=a.key_file, credential=a.key_credential)
        auth = "HMAC key loaded" if key is not None else "no audit key (records not MAC'd)"
        if not chain_files(a.path):
            return f"{a.path}: new log; {auth}"
        rep = verify_log(a.path, key=key, head_path=a.head_path)
        if not rep.ok:
            raise EdgefaceError(rep.errors[0])
        return f"{a.path}: chain ok, {rep.records} records, head {rep.head[:16]}; {auth}"

    return _check("audit log", probe)


def run_checks(cfg: DoorConfig, *, camera: bool = True) -> list[CheckResult]:
    results = [CheckResult("config", True, f"{cfg.source} is valid")]
    results += check_models(cfg)
    results.append(check_liveness(cfg))
    results += check_gallery(cfg)
    results.append(check_actuator(cfg))
    results.append(check_audit(cfg))
    if camera:
        results.append(check_camera(cfg))
    if cfg.mqtt is not None:
        from edgeface.fleet.health import check_mqtt

        results += check_mqtt(cfg.mqtt, _check)
    return results
