"""The door loop: frame -> (drop when busy, max rate) -> identify -> policy -> actuator + audit.

Fail-secure rules the loop enforces (the hardware contract in :mod:`edgeface.door.actuators`
covers what software cannot, such as SIGKILL):

* the relay is locked before the first frame, after every relock deadline, on camera loss or
  stall, on every exception, on SIGTERM/SIGINT, and in ``finally`` before the process exits;
* an unlock is bounded by a timer thread independent of this loop;
* the systemd watchdog is fed from this loop only, so a hung loop is killed and restarted;
* the gallery is looked at before every frame (:mod:`edgeface.door.live_gallery`): a new
  generation is used from that frame on, and while there is no usable gallery the relay stays
  locked and no face is identified.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import math
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from edgeface.camera.base import CameraError, CameraEvent, EndOfStream, FrameSource
from edgeface.door.actuators import FailSecureActuator
from edgeface.door.audit import AuditLog
from edgeface.door.config import DoorConfig
from edgeface.door.feed import FrameFeed
from edgeface.door.identify import Identifier, Observation, observation_fields
from edgeface.door.inbox import DoorInbox
from edgeface.door.live_gallery import GalleryEvent, LiveGallery
from edgeface.door.lockout import Lockout
from edgeface.door.notify import Notifier
from edgeface.door.policy import Decision, DecisionPolicy, Verdict
from edgeface.door.port import DoorCommand
from edgeface.errors import EdgefaceError, ModelError

log = logging.getLogger("edgeface.door")


@dataclass
class Stats:
    frames: int = 0  # frames taken from the feed
    processed: int = 0  # frames identified
    skipped_rate: int = 0  # skipped to honour max_fps
    skipped_lockout: int = 0
    skipped_no_gallery: int = 0  # frames not identified because no usable gallery was loaded
    gallery_reloads: int = 0
    unlocks: int = 0
    rejections: int = 0
    spoofs: int = 0  # frames judged not live
    lockouts: int = 0
    errors: int = 0
    camera_losses: int = 0
    stage_s: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "identify": 0.0, "decide": 0.0}
    )


def rejection_reason(obs: Observation | None, k: int, n: int) -> str:
    """Why an attempt failed, in words for the audit log (never a name: nobody matched)."""
    if obs is None:
        return f"attempt ended without {k} matching frames of {n}"
    if obs.identity_id is None and not math.isnan(obs.score):
        return (
            f"no enrolled match in {k} of {n} frames "
            f"(last best score {obs.score:.3f} < threshold {obs.threshold:.3f})"
        )
    return f"no enrolled match in {k} of {n} frames"


def _describe(fields: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in fields.items())


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
        gallery: LiveGallery | None = None,
        inbox: DoorInbox | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.source_name = source.name
        self.identifier = identifier
        self.actuator = actuator
        self.audit = audit
        self.notifier = notifier or Notifier(address="")
        #: polled before every frame; None for identifiers without a gallery file (tests)
        self.gallery = gallery
        self.clock = clock
        self.sleep = sleep
        self.policy = DecisionPolicy(cfg.policy, clock, require_liveness=cfg.liveness.required)
        self.lockout = Lockout(cfg.lockout, clock)
        if drop_frames is None:
            drop_frames = (
                cfg.daemon.drop_frames if cfg.daemon.drop_frames is not None else source.live
            )
        #: camera events and the stop flag, shared with the camera source (see door.inbox)
        self.inbox = inbox or DoorInbox()
        if self.inbox.on_camera_lost is None:
            self.inbox.on_camera_lost = actuator.lock
        self.stop_requested = self.inbox.stop
        self.feed = FrameFeed(source, drop_frames=drop_frames, stop=self.inbox.stop)
        self.stats = Stats()
        self._min_interval = 1.0 / cfg.recognition.max_fps
        self._last_processed = float("-inf")
        self._consecutive_errors = 0
        self._stalled = False
        self._last_frame_t: float | None = None
        self._last_status = float("-inf")
        #: commands from outside (edgeface.door.port), applied and audited on this loop
        self.commands: queue.SimpleQueue[DoorCommand] = queue.SimpleQueue()
        #: lockdown: no unlocking at all until lifted (a fleet command)
        self.lockdown = False
        self.started_wall = time.time()

    # --- events from other threads ------------------------------------------------------

    def on_camera_event(self, event: CameraEvent, detail: str) -> None:
        """Called by the camera wrapper (possibly from the reader thread); a lost camera
        locks the relay at once, not when the main loop gets to the event."""
        self.inbox.camera_event(event, detail)

    def submit(self, cmd: DoorCommand) -> None:
        """Hand the loop a verified command (any thread; never blocks). Relock and lockdown
        act on the relay at once, like a lost camera; the loop audits them."""
        if cmd.kind in ("relock", "lockdown_on"):
            if cmd.kind == "lockdown_on":
                self.lockdown = True
            self.actuator.lock()
        self.commands.put(cmd)

    def status(self) -> dict[str, Any]:
        """What an outside observer may know (read from another thread; plain values)."""
        audit_seq, audit_head = self.audit.position()
        return {
            "relay": "unlocked" if self.actuator.unlocked else "locked",
            "lockout": self.lockout.until(self.source_name) is not None,
            "lockdown": self.lockdown,
            "camera": "stalled" if self._stalled else "ok",
            "camera_losses": self.stats.camera_losses,
            "uptime_s": round(time.time() - self.started_wall, 1),
            "audit_seq": audit_seq,
            "audit_head": audit_head,
            **self._counters(),
        }

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        self.actuator.lock()
        self.inbox.stop.set()
        if signum is not None:
            self.inbox.signal(signal.Signals(signum).name)

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
            if self.gallery is not None and self.gallery.last is not None:
                self.on_gallery_event(self.gallery.last)  # the load made before the start
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
            code = self._shutdown(code)
        return code

    def _shutdown(self, code: int) -> int:
        """Lock and close the relay, then record the stop; returns the exit code.

        Every step is guarded on its own and the relay comes first, so nothing later (a full
        audit disk, an audit log that raises, a stuck camera, a broken notifier) keeps the
        relay open or skips closing it: fail-secure does not depend on the audit log.
        """
        with contextlib.suppress(Exception):
            self.actuator.lock()
        self.inbox.stop.set()  # the camera wrapper stops reconnecting, the reader thread ends
        with contextlib.suppress(Exception):
            self.feed.close()
        locked = False
        with contextlib.suppress(Exception):
            locked = self.actuator.lock()
        with contextlib.suppress(Exception):
            self.actuator.close()
        if not locked:
            code = code or 13
        with contextlib.suppress(Exception):
            self.notifier.stopping()
        try:
            self._drain_events()
        except Exception as exc:
            log.error("audit: could not record the last camera events (%s)", exc)
        try:
            self.audit.append("stop", code=code, **self._counters())
            log.info("audit head seq=%d hash=%s", self.audit.seq, self.audit.head)
        except Exception as exc:
            log.error("audit: could not record the stop (%s)", exc)
            code = code or getattr(exc, "exit_code", 70)
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
            self.audit.append(
                "fault", kind=kind, error=type(exc).__name__, reason=msg[:300], detail=msg[:300]
            )

    def _drain_events(self) -> None:
        while (pending := self.inbox.next()) is not None:
            event, detail = pending
            if event is CameraEvent.LOST:
                self.stats.camera_losses += 1
                self.policy.force_lock()
            kind = event.value if isinstance(event, CameraEvent) else event
            self.audit.append(kind, detail=detail[:300])

    def _drain_commands(self) -> None:
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return
            if cmd.kind == "relock":
                self.policy.force_lock()
                self.audit.append("command_relock", origin=cmd.origin, ok=self.actuator.lock())
            elif cmd.kind == "lockdown_on":
                self.lockdown = True
                self.policy.force_lock()
                self.audit.append("lockdown_on", origin=cmd.origin, ok=self.actuator.lock())
            elif cmd.kind == "lockdown_off":
                self.lockdown = False
                self.audit.append("lockdown_off", origin=cmd.origin)
            elif self.lockdown:  # remote unlock during a lockdown
                self.audit.append("unlock_refused", origin=cmd.origin, reason="lockdown")
            else:
                duration = min(max(cmd.duration_s, 0.0), self.cfg.policy.unlock_s)
                self.stats.unlocks += 1
                self.audit.append("remote_unlock", origin=cmd.origin, duration_s=duration)
                self.actuator.unlock(duration)

    def step(self) -> bool:
        """One loop iteration; False when the source has ended."""
        now = self.clock()
        self.notifier.watchdog()
        self._drain_events()
        self._drain_commands()
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
        if self.gallery is not None and not self._gallery_ready():
            self.stats.skipped_no_gallery += 1  # refuse everyone: no stale copy is used
            return True
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

    def _gallery_ready(self) -> bool:
        """Pick up a new gallery generation (or its loss) before this frame is identified."""
        assert self.gallery is not None
        event = self.gallery.poll()
        if event is not None:
            self.on_gallery_event(event)
        return self.gallery.available

    def on_gallery_event(self, event: GalleryEvent) -> None:
        """Audit and log a reload; a gallery that could not be loaded locks the door."""
        self.stats.gallery_reloads += 1
        if event.ok:
            self.policy.reset()  # votes for a removed identity must not carry over
            log.info("gallery loaded: %s", _describe(event.fields))
            self.audit.append("gallery_loaded", **event.fields)
            return
        self.actuator.lock()
        self.policy.force_lock()
        log.error("gallery unavailable, door locked until it is back: %s", event.reason)
        self.audit.append("gallery_unavailable", reason=event.reason)

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
        if self.lockout.ended(self.source_name, now):
            self.audit.append("lockout_end")
        if now - self._last_status >= self.cfg.daemon.status_interval_s:
            self._last_status = now
            s = self.stats
            state = "UNLOCKED" if self.actuator.unlocked else "locked"
            self.notifier.status(
                f"door {state}; frames {s.frames}, processed {s.processed}, "
                f"dropped {self.feed.dropped}, unlocks {s.unlocks}, lockouts {s.lockouts}"
            )

    def _who(self, obs: Observation | None) -> str:
        if obs is None or obs.identity_id is None:
            return "unknown face"
        if self.cfg.daemon.log_names and obs.name:
            return obs.name
        return f"id {obs.identity_id}"

    def _handle(self, d: Decision) -> None:
        obs = d.observation
        if d.verdict is Verdict.UNLOCK and self.lockdown:
            self.audit.append("unlock_refused", reason="lockdown", **observation_fields(obs))
            log.info("unlock refused (lockdown): %s", self._who(obs))
        elif d.verdict is Verdict.UNLOCK:
            self.stats.unlocks += 1
            self.lockout.record_success(self.source_name)
            # Audit first: a door that opened without a record is worse than one that did not.
            self.audit.append("unlock", votes=d.votes, **observation_fields(obs))
            log.info(
                "unlock: %s (%d votes, score %.3f >= %.3f)",
                self._who(obs),
                d.votes,
                obs.score if obs else float("nan"),
                obs.threshold if obs else float("nan"),
            )
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
            if d.reason == "spoof":
                reason = "spoof"  # a frame of the attempt was judged not live (see "spoof" records)
            else:
                reason = rejection_reason(obs, self.cfg.policy.k, self.cfg.policy.n)
            self.audit.append("rejected", reason=reason, **observation_fields(obs))
            log.info("rejected: %s", reason)
            for ev in self.lockout.record_failure(self.source_name, d.time):
                self.stats.lockouts += 1
                self.policy.reset()
                why = f"{ev.scope}: too many failed attempts, paused {ev.pause_s:.0f} s"
                self.audit.append(
                    "lockout",
                    scope=ev.scope,
                    pause_s=round(ev.pause_s, 3),
                    level=ev.level,
                    reason=why,
                )
                log.info("lockout: %s", why)
