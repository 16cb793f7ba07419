"""The door loop: frame -> (drop when busy, max rate) -> identify -> policy -> actuator + audit.

Fail-secure rules the loop enforces (the hardware contract in :mod:`edgeface.door.actuators`
covers what software cannot, such as SIGKILL):

* the relay is locked before the first frame, after every relock deadline, on camera loss or
  stall, on every exception, on SIGTERM/SIGINT, and in ``finally`` before the process exits;
* an unlock is bounded by a timer thread independent of this loop;
* the systemd watchdog is fed from this loop only, so a hung loop is killed and restarted.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeface.camera.base import CameraError, EndOfStream, FrameSource
from edgeface.door.actuators import FailSecureActuator
from edgeface.door.audit import AuditLog
from edgeface.door.config import DoorConfig
from edgeface.door.feed import FrameFeed
from edgeface.door.identify import Identifier, Observation
from edgeface.door.lockout import Lockout
from edgeface.door.notify import Notifier
from edgeface.door.policy import Decision, DecisionPolicy, Verdict
from edgeface.errors import EdgefaceError, ModelError

log = logging.getLogger("edgeface.door")


@dataclass
class Stats:
    frames: int = 0  # frames taken from the feed
    processed: int = 0  # frames identified
    skipped_rate: int = 0  # skipped to honour max_fps
    skipped_lockout: int = 0
    unlocks: int = 0
    rejections: int = 0
    spoofs: int = 0  # frames judged not live
    lockouts: int = 0
    errors: int = 0
    camera_losses: int = 0
    stage_s: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "identify": 0.0, "decide": 0.0}
    )


def observation_fields(obs: Observation | None) -> dict[str, Any]:
    if obs is None:
        return {}
    fields: dict[str, Any] = {
        "identity_id": obs.identity_id,
        "score": obs.score,
        "threshold": obs.threshold,
        "quality": obs.quality,
        "face_size": obs.face_size,
    }
    if obs.liveness is not None:
        fields["liveness"] = round(obs.liveness, 5)
        fields["liveness_threshold"] = obs.liveness_threshold
    return fields


class DoorDaemon:
    def __init__(
        self,
        cfg: DoorConfig,
        *,
        source: FrameSource,
        identifier: Identifier,
        actuator: FailSecureActuator,
        audit: AuditLog,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        drop_frames: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.source_name = source.name
        self.identifier = identifier
        self.actuator = actuator
        self.audit = audit
        self.notifier = notifier or Notifier(address="")
        self.clock = clock
        self.sleep = sleep
        self.policy = DecisionPolicy(cfg.policy, clock, require_liveness=cfg.liveness.required)
        self.lockout = Lockout(cfg.lockout, clock)
        if drop_frames is None:
            drop_frames = (
                cfg.daemon.drop_frames if cfg.daemon.drop_frames is not None else source.live
            )
        self.feed = FrameFeed(source, drop_frames=drop_frames)
        self.stats = Stats()
        self.events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.stop_requested = threading.Event()
        self._min_interval = 1.0 / cfg.recognition.max_fps
        self._last_processed = float("-inf")
        self._consecutive_errors = 0
        self._lockout_until: float | None = None
        self._stalled = False
        self._last_frame_t: float | None = None
        self._last_status = float("-inf")

    # --- events from other threads ------------------------------------------------------

    def on_camera_event(self, event: str, detail: str) -> None:
        """Called by the camera wrapper (possibly from the reader thread)."""
        if event == "camera_lost":
            self.actuator.lock()  # immediately, not when the main loop gets to it
        self.events.put((event, detail))

    def request_stop(self, signum: int | None = None, _frame: Any = None) -> None:
        self.actuator.lock()
        self.stop_requested.set()
        if signum is not None:
            self.events.put(("signal", signal.Signals(signum).name))

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.request_stop)
        # On a watchdog timeout systemd sends SIGABRT: dump where the loop hung to the journal.
        with contextlib.suppress(RuntimeError, ValueError):
            faulthandler.enable()

    # --- main loop ----------------------------------------------------------------------

    def run(self, max_frames: int | None = None) -> int:
        """Run until stopped, the replay ends, or a fatal error; return the exit code."""
        code = 0
        try:
            self.actuator.open()
            if not self.cfg.liveness.required:
                log.warning(
                    "liveness.required = false: a printed photo or a phone screen showing an "
                    "enrolled face can open this door"
                )
            self.audit.append(
                "start",
                source=self.source.describe(),
                actuator=self.actuator.describe(),
                policy=f"{self.cfg.policy.k}-of-{self.cfg.policy.n}",
                liveness="required" if self.cfg.liveness.required else "off",
            )
            log.info("audit head seq=%d hash=%s", self.audit.seq, self.audit.head)
            self._last_frame_t = self.clock()
            self.feed.start()
            self.notifier.ready(f"watching {self.source.describe()}")
            while not self.stop_requested.is_set():
                if max_frames is not None and self.stats.frames >= max_frames:
                    break
                if not self.step():
                    break
        except EdgefaceError as exc:
            code = exc.exit_code
            self._fault("fatal", exc)
        except Exception as exc:  # anything unexpected: lock, log, exit non-zero -> restart
            code = 70
            self._fault("fatal", exc)
        finally:
            self.actuator.lock()
            self.notifier.stopping()
            self._drain_events()
            with contextlib.suppress(Exception):
                self.feed.close()
            locked = self.actuator.lock()
            self.actuator.close()
            if not locked:
                code = code or 13
            with contextlib.suppress(Exception):
                self.audit.append("stop", code=code, **self._counters())
                log.info("audit head seq=%d hash=%s", self.audit.seq, self.audit.head)
        return code

    def _counters(self) -> dict[str, int]:
        s = self.stats
        return {
            "frames": s.frames,
            "processed": s.processed,
            "dropped": self.feed.dropped,
            "unlocks": s.unlocks,
            "rejections": s.rejections,
            "lockouts": s.lockouts,
            "errors": s.errors,
        }

    def _fault(self, kind: str, exc: BaseException) -> None:
        self.actuator.lock()
        self.policy.force_lock()
        msg = str(exc) or type(exc).__name__
        log.error("%s: %s", kind, msg)
        with contextlib.suppress(Exception):
            self.audit.append("fault", kind=kind, error=type(exc).__name__, detail=msg[:300])

    def _drain_events(self) -> None:
        while True:
            try:
                event, detail = self.events.get_nowait()
            except queue.Empty:
                return
            if event == "camera_lost":
                self.stats.camera_losses += 1
                self.policy.force_lock()
            self.audit.append(event, detail=detail[:300])

    def step(self) -> bool:
        """One loop iteration; False when the source has ended."""
        now = self.clock()
        self.notifier.watchdog()
        self._drain_events()
        self._housekeeping(now)
        t0 = time.perf_counter()
        try:
            frame = self.feed.next(timeout=min(self.cfg.daemon.stall_s, 1.0))
        except EndOfStream:
            return False
        except CameraError as exc:  # only when reconnecting is disabled or gave up
            raise CameraError(f"camera lost: {exc}") from exc
        self.stats.stage_s["read"] += time.perf_counter() - t0
        if frame is None:
            self._check_stall()
            return True
        self._stalled = False
        self._last_frame_t = self.clock()
        self.stats.frames += 1
        now = self.clock()
        wait = self._last_processed + self._min_interval - now
        if wait > 0:
            if self.feed.drop_frames:
                self.stats.skipped_rate += 1
                self.sleep(min(wait, 0.05))
                return True
            self.sleep(wait)
            now = self.clock()
        self._last_processed = now
        if self.lockout.active(self.source_name, now) is not None:
            self.stats.skipped_lockout += 1  # no embedding at all while locked out
            return True
        t1 = time.perf_counter()
        try:
            obs = self.identifier.identify(frame.image)
        except ModelError:
            raise
        except EdgefaceError as exc:
            self._frame_error(exc)
            return True
        except Exception as exc:
            self._frame_error(exc)
            return True
        t2 = time.perf_counter()
        self._consecutive_errors = 0
        self.stats.processed += 1
        self.stats.stage_s["identify"] += t2 - t1
        self._handle(self.policy.observe(obs, now))
        self.stats.stage_s["decide"] += time.perf_counter() - t2
        return True

    def _check_stall(self) -> None:
        now = self.clock()
        since = now - (self._last_frame_t if self._last_frame_t is not None else now)
        if since >= self.cfg.daemon.stall_s and not self._stalled:
            self._stalled = True
            self.actuator.lock()
            self.policy.force_lock()
            self.audit.append("camera_stalled", detail=f"no frame for {since:.1f} s")

    def _frame_error(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self._consecutive_errors += 1
        self._fault("frame_error", exc)
        if self._consecutive_errors >= self.cfg.daemon.max_consecutive_errors:
            raise EdgefaceError(
                f"{self._consecutive_errors} consecutive frame errors; last: {exc}"
            ) from exc

    def _housekeeping(self, now: float) -> None:
        decision = self.policy.tick(now)
        if decision is not None:
            self._handle(decision)
        if self._lockout_until is not None and self.lockout.active(self.source_name, now) is None:
            self._lockout_until = None
            self.audit.append("lockout_end")
        if now - self._last_status >= self.cfg.daemon.status_interval_s:
            self._last_status = now
            s = self.stats
            state = "UNLOCKED" if self.actuator.unlocked else "locked"
            self.notifier.status(
                f"door {state}; frames {s.frames}, processed {s.processed}, "
                f"dropped {self.feed.dropped}, unlocks {s.unlocks}, lockouts {s.lockouts}"
            )

    def _handle(self, d: Decision) -> None:
        if d.verdict is Verdict.UNLOCK:
            self.stats.unlocks += 1
            self.lockout.record_success(self.source_name)
            # Audit first: a door that opened without a record is worse than one that did not.
            self.audit.append("unlock", votes=d.votes, **observation_fields(d.observation))
            self.actuator.unlock(self.cfg.policy.unlock_s)
        elif d.verdict is Verdict.RELOCK:
            ok = self.actuator.lock()
            self.audit.append("relock", ok=ok)
            if not ok:
                raise EdgefaceError(f"{self.actuator.describe()}: could not re-lock")
        elif d.verdict is Verdict.SPOOF:
            self.stats.spoofs += 1
            self.audit.append("spoof", reason="spoof", **observation_fields(d.observation))
        elif d.verdict is Verdict.REJECTED:
            self.stats.rejections += 1
            self.audit.append("rejected", reason=d.reason, **observation_fields(d.observation))
            for ev in self.lockout.record_failure(self.source_name, d.time):
                self.stats.lockouts += 1
                self._lockout_until = max(self._lockout_until or ev.until, ev.until)
                self.policy.reset()
                self.audit.append(
                    "lockout", scope=ev.scope, pause_s=round(ev.pause_s, 3), level=ev.level
                )
