"""The kiosk's camera and recognition loops, and the one screen's state machine.

Two threads, one camera: the *camera* thread keeps the newest frame (and, while someone
watches the preview, its JPEG with the face boxes drawn), the *recognition* thread takes the
newest frame whenever it is free and runs it through the shared pipeline
(:class:`edgeface.recognition.FacePipeline`, or anything with the same ``analyze``,
``choose`` and ``embedder``: a liveness check or a face tracker wraps the pipeline and plugs
in here without the kiosk changing). So the preview runs at camera speed however slow
recognition is, and recognition always sees where the person is *now*.

Modes (one at a time, the kiosk has one camera and one screen):

* ``verify`` (idle): hands-free, the door's k-of-n :class:`DecisionPolicy` with the
  door's threshold rule (``target_fpir``: it rises with the gallery) -> "Welcome, <name>" or
  "Not recognized" for ``result_s``; repeated
  rejections pause recognition (the door's :class:`Lockout`). With ``[verify] challenge =
  "head_turn"`` the match first asks for a head turn to a random side
  (:mod:`edgeface.kiosk.challenge`); a failed challenge is a failed attempt.
* ``enroll``: owned by one browser session (operator or invitee); frames go through the
  enrollment quality gates (:class:`Enroller`) until ``templates`` are accepted, then the
  duplicate check and the save into the encrypted gallery under the writer lock.
* ``forget``: verify as above, then wait for the person to confirm; the identity is removed
  and the gallery (and its backup generation) rewritten.

Liveness (``[liveness]``, required by default): the chosen face of every frame is scored by
the door's :class:`~edgeface.liveness.LivenessChecker`; the door's policy never counts a
frame judged not live (so a photo is neither welcomed nor lets anyone "forget" someone), and
the :class:`Enroller` refuses it as a template. Such frames are audited as ``spoof`` and the
screen asks for a real face.

Every decision goes to the hash-chained audit log; no image ever leaves memory except the
live preview JPEG.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from edgeface.camera.backoff import Backoff
from edgeface.camera.base import CameraError, CameraEvent, EndOfStream, FrameSource
from edgeface.camera.resilient import ResilientSource
from edgeface.door.audit import AuditLog
from edgeface.door.identify import Observation, observation_fields
from edgeface.door.lockout import Lockout
from edgeface.door.policy import DecisionPolicy, Verdict
from edgeface.errors import ConfigError, EdgefaceError
from edgeface.gallery.enroll import Enroller, find_duplicates
from edgeface.gallery.errors import GalleryError, LockTimeoutError
from edgeface.gallery.store import Gallery, GalleryFile, ModelRef, Template
from edgeface.kiosk.challenge import HeadTurn, Status, random_side
from edgeface.kiosk.config import KioskConfig
from edgeface.kiosk.guidance import Guidance, guide
from edgeface.recognition.pipeline import FaceEmbedder, FaceResult
from edgeface.types import Face

if TYPE_CHECKING:
    from edgeface.liveness import LivenessChecker

log = logging.getLogger("edgeface.kiosk")

VERIFY, ENROLL, FORGET = "verify", "enroll", "forget"
CAMERA_SCOPE = "camera"
#: how long a forget-me match waits for the person to confirm
FORGET_CONFIRM_S = 30.0
#: the preview is encoded only while someone fetched it within this many seconds
PREVIEW_IDLE_S = 2.0


class Analyzer(Protocol):
    """What the kiosk needs from recognition (:class:`~edgeface.recognition.FacePipeline`):
    ``analyze`` (every face, largest first, aligned and embedded), ``choose`` (the face a
    decision is about, by the pipeline's one selection rule) and the ``embedder`` (model
    binding)."""

    embedder: FaceEmbedder

    def analyze(self, image: np.ndarray) -> list[FaceResult]: ...

    def choose(
        self, results: Sequence[FaceResult], image_shape: tuple[int, ...]
    ) -> FaceResult | None: ...


@dataclass(frozen=True)
class PendingWelcome:
    """A k-of-n match waiting for its head-turn challenge: welcomed (with the match's audit
    fields and votes) once the challenge passes."""

    challenge: HeadTurn
    match: Observation
    votes: int


@dataclass
class Result:
    """What the screen shows after a decision; expires at ``until`` (monotonic seconds)."""

    kind: str
    until: float
    name: str | None = None
    detail: str | None = None


class ModeBusy(EdgefaceError):
    """Another session is enrolling or forgetting right now."""

    exit_code = 1


class Rate:
    """Events per second over the last ``window`` events."""

    def __init__(self, window: int = 30) -> None:
        self.times: deque[float] = deque(maxlen=window)

    def tick(self, now: float) -> None:
        self.times.append(now)

    def per_s(self) -> float:
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


class KioskEngine:
    def __init__(
        self,
        cfg: KioskConfig,
        *,
        source: FrameSource,
        pipeline: Analyzer,
        gallery_file: GalleryFile,
        audit: AuditLog,
        threshold: float,
        threshold_for: Callable[[int], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        watchdog: Callable[[], object] = lambda: None,
        reconnect: Backoff | None = None,
        liveness: LivenessChecker | None = None,
        challenge_side: Callable[[], str] = random_side,
    ) -> None:
        if cfg.liveness.required and liveness is None:  # fail closed, never silently off
            raise ConfigError(
                "liveness.required = true but no liveness checker was given "
                "(build one with edgeface.door.service.build_liveness)"
            )
        self.cfg = cfg
        #: scores the chosen face of every frame; None only when ``[liveness]`` is off
        self.liveness = liveness
        #: fed from the recognition loop (systemd's WatchdogSec=): a hung loop gets restarted
        self.watchdog = watchdog
        self._stop = threading.Event()
        self.source = source
        if reconnect is not None and source.live:  # a live camera retries with backoff
            self.source = ResilientSource(
                source,
                backoff=reconnect,
                on_event=self.on_camera_event,
                should_stop=self._stop.is_set,
            )
        self.pipeline = pipeline
        self.gallery_file = gallery_file
        self.audit = audit
        #: the verification threshold of ``[recognition]`` (per comparison): screens a new
        #: enrollment for duplicates, and decides when no ``threshold_for`` is given
        self.duplicate_threshold = float(threshold)
        #: gallery size -> threshold, as at the door (``target_fpir``: a stranger is compared
        #: with everyone enrolled, so the threshold rises with the gallery)
        self.threshold_for = threshold_for or (lambda _n: self.duplicate_threshold)
        self.threshold = self.duplicate_threshold
        self.clock = clock
        self.model = ModelRef.of(pipeline.embedder)
        self.enroller = Enroller(
            pipeline, gates=cfg.enroll.gates, max_templates=cfg.enroll.templates, liveness=liveness
        )
        self.policy = self._new_policy()
        self.lockout = Lockout(cfg.lockout, clock)
        self._min_interval = 1.0 / cfg.recognition.max_fps
        self._state = threading.Lock()
        self._frames = threading.Condition()
        self._threads: list[threading.Thread] = []
        # camera side
        self._frame: np.ndarray | None = None
        self._frame_seq = 0
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._preview_wanted = float("-inf")
        self.camera_state = "starting"
        self.camera_rate = Rate()
        self.recognition_rate = Rate()
        # screen state (under _state)
        self.mode = VERIFY
        self.owner: str | None = None
        self.result: Result | None = None
        self.guidance = Guidance("none")
        self.locked_until: float | None = None
        self._capture: list[Template] = []
        self._capture_deadline = 0.0
        self._capture_last_seq = -(10**9)
        self._enroll_name: str | None = None
        self._enroll_by = ""
        self._reenroll_id: str | None = None
        self._forget_policy: DecisionPolicy | None = None
        self._forget_match: tuple[str, str, float] | None = None
        #: a match waiting for its head-turn challenge (``[verify] challenge``)
        self._pending: PendingWelcome | None = None
        self._challenge_side = challenge_side
        self.errors = 0
        # gallery copy for matching, reloaded when the file changes (door, CLI, ourselves)
        self._gallery_stat: tuple[int, int, int] | None = None
        self._gallery_checked = float("-inf")
        self.gallery: Gallery = self._load_gallery()
        self.threshold = float(self.threshold_for(len(self.gallery)))

    def _new_policy(self) -> DecisionPolicy:
        """The door's k-of-n policy; with liveness on, a frame judged not live never votes."""
        return DecisionPolicy(
            self.cfg.verify.policy, self.clock, require_liveness=self.cfg.liveness.required
        )

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if not self.cfg.liveness.required:
            log.warning(
                "liveness.required = false: a printed photo or a phone screen showing an "
                "enrolled face is welcomed, can enroll and can forget that person"
            )
        self.audit.append(
            "start",
            source=self.source.describe(),
            policy=f"{self.cfg.verify.policy.k}-of-{self.cfg.verify.policy.n}",
            threshold=self.threshold,
            far=self.cfg.recognition.far,
            identities=len(self.gallery),
            liveness="required" if self.cfg.liveness.required else "off",
        )
        for target, name in ((self._camera_loop, "camera"), (self._recognition_loop, "recognize")):
            t = threading.Thread(target=target, name=f"edgeface-kiosk-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        with self._frames:
            self._frames.notify_all()
        for t in self._threads:
            t.join(timeout=5.0)
        self.source.close()
        self.audit.append("stop", seq_head=self.audit.seq)

    # --- gallery --------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.gallery_file.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load_gallery(self) -> Gallery:
        stat = self._stat()
        g = self.gallery_file.load()
        g.check_model(self.model)
        self._gallery_stat = stat
        return g

    def _maybe_reload(self, now: float) -> None:
        if now - self._gallery_checked < 1.0:
            return
        self._gallery_checked = now
        if self._stat() == self._gallery_stat:
            return
        try:
            g = self._load_gallery()
        except GalleryError as exc:  # keep matching against the last good copy
            log.error("gallery reload failed, keeping the previous copy: %s", exc)
            self._gallery_stat = self._stat()
            self.audit.append("gallery_error", detail=str(exc)[:300])
            return
        with self._state:
            self._use(g)
        log.info("gallery reloaded: %d identities, threshold %.4f", len(g), self.threshold)

    def _edit(self, fn: Callable[[Gallery], Any], *, purge_backup: bool = False) -> Any:
        """Run ``fn`` inside the gallery's writer transaction, then use the new file."""
        with self.gallery_file.edit(purge_backup=purge_backup) as g:
            g.check_model(self.model)
            out = fn(g)
        g2 = self._load_gallery()
        with self._state:
            self._use(g2)
        return out

    def _use(self, g: Gallery) -> None:
        """Match against ``g`` from now on, at the threshold for its size (caller holds
        ``_state``)."""
        self.gallery = g
        self.threshold = float(self.threshold_for(len(g)))

    # --- camera thread --------------------------------------------------------------------

    def on_camera_event(self, event: CameraEvent, detail: str = "") -> None:
        """From :class:`ResilientSource` (live cameras reconnect by themselves with backoff):
        the screen says the camera is gone while it is, and the audit log says when."""
        self.camera_state = "lost" if event is CameraEvent.LOST else "ok"
        self.audit.append(event.value, detail=detail[:300])

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def want_preview(self) -> None:
        self._preview_wanted = self.clock()

    def preview(self) -> tuple[int, bytes]:
        """(frame number, JPEG) of the newest encoded preview frame."""
        return self._jpeg

    def _encode(self, rgb: np.ndarray, seq: int) -> None:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        g = self.guidance
        color = (80, 200, 60) if g.ok else (0, 170, 255)
        thick = max(2, rgb.shape[1] // 200)
        for x1, y1, x2, y2 in g.boxes:
            cv2.rectangle(bgr, (int(x1), int(y1)), (int(x2), int(y2)), color, thick)
        ok, buf = cv2.imencode(
            ".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.server.jpeg_quality]
        )
        if ok:
            self._jpeg = (seq, buf.tobytes())

    def _camera_loop(self) -> None:
        # a replay without its own pacing would spin: cap the camera at 30 frames/s
        min_dt = 1.0 / 30.0
        failures = 0
        while not self._stop.is_set():
            t0 = self.clock()
            try:
                frame = self.source.read()
            except EndOfStream:
                self.camera_state = "ended"
                return
            except CameraError as exc:
                failures += 1
                if self.camera_state != "lost":
                    self.audit.append("camera_lost", detail=str(exc)[:300])
                self.camera_state = "lost"
                self._stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if self.camera_state == "lost":
                self.audit.append("camera_restored")
            failures = 0
            self.camera_state = "ok"
            with self._frames:
                self._frame = frame.image
                self._frame_seq += 1
                seq = self._frame_seq
                self._frames.notify_all()
            now = self.clock()
            self.camera_rate.tick(now)
            if now - self._preview_wanted < PREVIEW_IDLE_S:
                self._encode(frame.image, seq)
            left = min_dt - (self.clock() - t0)
            if left > 0:
                self._stop.wait(left)

    # --- recognition thread ---------------------------------------------------------------

    def _recognition_loop(self) -> None:
        seen = 0
        last = float("-inf")
        while not self._stop.is_set():
            self.watchdog()
            with self._frames:
                if self._frame_seq == seen:
                    self._frames.wait(0.25)
                rgb, seq = self._frame, self._frame_seq
            now = self.clock()
            try:
                self._expire(now)
                if rgb is None or seq == seen:
                    continue
                wait = last + self._min_interval - now
                if wait > 0:
                    self._stop.wait(wait)
                    continue
                seen, last = seq, self.clock()
                self._maybe_reload(last)
                self.process(rgb, seq, last)
                self.recognition_rate.tick(self.clock())
            except EdgefaceError as exc:
                self.errors += 1
                log.error("frame failed: %s", exc)
            except Exception:  # one bad frame must not stop the kiosk
                self.errors += 1
                log.exception("frame failed")

    def _expire(self, now: float) -> None:
        with self._state:
            if self.result is not None and now >= self.result.until:
                self.result = None
            if self.locked_until is not None and now >= self.locked_until:
                self.locked_until = None
                self.audit.append("lockout_end", scope=CAMERA_SCOPE)
            if self.mode == ENROLL and now >= self._capture_deadline:
                self.audit.append("enroll_timeout", by=self._enroll_by, captured=len(self._capture))
                self._to_verify(Result("capture_timeout", now + self.cfg.verify.result_s))
            if (
                self.mode == FORGET
                and self._forget_match
                and now - self._forget_match[2] > FORGET_CONFIRM_S
            ):
                self._to_verify(None)
            pending = self._pending
        if pending is not None and now >= pending.challenge.deadline:  # no frame came to end it
            self._challenge_failed(pending, "timeout", now)

    def process(self, rgb: np.ndarray, seq: int, now: float) -> None:
        """One frame through whatever the current mode does with it."""
        with self._state:
            mode = self.mode
            showing = self.result is not None and now < self.result.until
            waiting = mode == FORGET and self._forget_match is not None
        if (mode == VERIFY and showing) or waiting:
            return
        active = self.lockout.active(CAMERA_SCOPE, now)
        if active is not None and mode != ENROLL:
            with self._state:
                self.locked_until = active.until
                self.guidance = Guidance("none")
            self.policy.reset()
            return
        faces = self.pipeline.analyze(rgb)
        gates = self.cfg.enroll.gates
        min_face = gates.min_face_size if mode == ENROLL else self.cfg.verify.policy.min_face_size
        g = guide(rgb, faces, gates, min_face)
        with self._state:
            self.guidance = g
        if mode == VERIFY and self._pending is not None:
            self._challenge_step(rgb, faces, now)
        elif mode == VERIFY:
            self._verify(rgb, faces, now)
        elif mode == ENROLL:
            self._enroll(rgb, faces, seq, now)
        else:
            self._forget(rgb, faces, now)

    def observe(self, rgb: np.ndarray, faces: list[FaceResult]) -> Observation:
        return self._observe_chosen(rgb, self.pipeline.choose(faces, rgb.shape))

    def _observe_chosen(self, rgb: np.ndarray, r: FaceResult | None) -> Observation:
        """The chosen face as the policy sees it: who (at the threshold for the gallery's
        size), how well seen, how live."""
        if r is None:
            return Observation.no_face(self.threshold)
        decision = self.gallery.identify(r.embedding, self.threshold, k=1)
        best = decision.best
        known = bool(decision.known and best is not None)
        live_score = live_thr = None
        if self.liveness is not None:
            live_score = self.liveness.score(rgb, r.face)
            live_thr = self.liveness.threshold
        return Observation(
            identity_id=best.identity_id if known and best else None,
            name=best.name if known and best else None,
            score=float(best.score) if best is not None else float("nan"),
            threshold=self.threshold,
            quality=float(r.face.score),
            face_size=float(r.face.size),
            liveness=live_score,
            liveness_threshold=live_thr,
        )

    @staticmethod
    def _fields(obs: Observation | None) -> dict[str, Any]:
        return observation_fields(obs)

    def _spoof(self, mode: str, **fields: Any) -> None:
        """A frame judged not live: audited as the door does, and the screen says why."""
        self.audit.append("spoof", reason="spoof", mode=mode, **fields)
        with self._state:
            self.guidance = Guidance("not_live", self.guidance.boxes)

    def _rejected(
        self, now: float, obs: Observation | None, event: str, reason: str, **extra: Any
    ) -> None:
        self.audit.append(event, reason=reason, **self._fields(obs), **extra)
        for ev in self.lockout.record_failure(CAMERA_SCOPE, now):
            self.audit.append("lockout", scope=ev.scope, pause_s=ev.pause_s, level=ev.level)
            with self._state:
                self.locked_until = ev.until

    def _verify(self, rgb: np.ndarray, faces: list[FaceResult], now: float) -> None:
        chosen = self.pipeline.choose(faces, rgb.shape)
        obs = self._observe_chosen(rgb, chosen)
        d = self.policy.observe(obs, now)
        show = self.cfg.verify.result_s
        if d.verdict is Verdict.UNLOCK and self.cfg.verify.challenge.enabled:
            assert chosen is not None  # the policy matched this frame's face
            self._start_challenge(chosen.face, obs, d.votes, now)
        elif d.verdict is Verdict.UNLOCK:
            self._welcome(obs, d.votes, now)
        elif d.verdict is Verdict.SPOOF:
            self._spoof(VERIFY, **self._fields(d.observation))
        elif d.verdict is Verdict.REJECTED:
            with self._state:
                self.result = Result(rejected_result(d.reason), now + show)
            self._rejected(now, d.observation, "verify_reject", d.reason or "unknown")

    def _welcome(self, obs: Observation, votes: int, now: float, **extra: Any) -> None:
        self.audit.append("verify_accept", votes=votes, **self._fields(obs), **extra)
        self.lockout.record_success(CAMERA_SCOPE)
        with self._state:
            self.result = Result("welcome", now + self.cfg.verify.result_s, name=obs.name)

    # --- head-turn challenge (optional) ---------------------------------------------------

    def _start_challenge(self, face: Face, obs: Observation, votes: int, now: float) -> None:
        assert obs.identity_id is not None  # the policy matched it
        ch = HeadTurn(
            self.cfg.verify.challenge,
            identity_id=obs.identity_id,
            face=face,
            now=now,
            side=self._challenge_side(),
        )
        with self._state:
            self._pending = PendingWelcome(ch, obs, votes)
        # the policy's unlock becomes the challenge: voting starts afresh (after the usual
        # cooldown) once the challenge and its result are over
        self.policy.force_lock(now)
        self.audit.append("challenge_start", side=ch.side, identity_id=ch.identity_id)

    def _challenge_step(self, rgb: np.ndarray, faces: list[FaceResult], now: float) -> None:
        pending = self._pending
        if pending is None:
            return
        ch = pending.challenge
        chosen = self.pipeline.choose(faces, rgb.shape)
        obs = self._observe_chosen(rgb, chosen)
        live = obs.live if self.liveness is not None else None
        same = obs.identity_id == ch.identity_id
        step = ch.step(chosen.face if chosen is not None else None, live, now, same=same)
        if step.status is Status.PASSED:
            with self._state:
                self._pending = None
            turned = round(float(ch.turned_yaw or 0.0), 3)
            self._welcome(pending.match, pending.votes, now, challenge=ch.side, turned_yaw=turned)
        elif step.status is Status.FAILED:
            fields = {k: v for k, v in self._fields(obs).items() if k.startswith("liveness")}
            if step.yaw is not None:
                fields["yaw"] = round(step.yaw, 3)
            self._challenge_failed(pending, step.reason, now, **fields)

    def _challenge_failed(
        self, pending: PendingWelcome, why: str, now: float, **fields: Any
    ) -> None:
        """A failed challenge is a failed attempt: audited, shown, counted for the lockout."""
        with self._state:
            if self._pending is not pending:  # already ended
                return
            self._pending = None
            kind = "not_live" if why == "spoof" else "challenge_failed"
            self.result = Result(kind, now + self.cfg.verify.result_s, detail=why)
        ch = pending.challenge
        reason = "spoof" if why == "spoof" else f"challenge_{why}"
        self._rejected(
            now, None, "verify_reject", reason, identity_id=ch.identity_id, side=ch.side, **fields
        )

    # --- enroll ---------------------------------------------------------------------------

    def _take(self, token: str, mode: str) -> None:
        if self.mode != VERIFY and self.owner != token:
            raise ModeBusy("the kiosk is busy with another person; try again in a minute")
        self.mode, self.owner, self.result = mode, token, None
        self._pending = None
        self.policy.reset()

    def _to_verify(self, result: Result | None) -> None:
        """Back to idle (caller holds ``_state``)."""
        self.mode, self.owner, self.result = VERIFY, None, result
        self._capture = []
        self._forget_match = None
        self._forget_policy = None
        self._pending = None
        self.policy.reset()

    def start_enroll(
        self, token: str, *, name: str, by: str, reenroll_id: str | None = None
    ) -> None:
        with self._state:
            self._take(token, ENROLL)
            self._capture = []
            self._capture_deadline = self.clock() + self.cfg.enroll.capture_timeout_s
            self._capture_last_seq = -(10**9)
            self._enroll_name, self._enroll_by, self._reenroll_id = name, by, reenroll_id
        self.audit.append("enroll_start", by=by, reenroll_id=reenroll_id)

    def cancel(self, token: str) -> bool:
        with self._state:
            if self.mode == VERIFY or self.owner != token:
                return False
            was = self.mode
            self._to_verify(None)
        self.audit.append(f"{was}_cancel")
        return True

    def _enroll(self, rgb: np.ndarray, faces: list[FaceResult], seq: int, now: float) -> None:
        cand = self.enroller.assess_image(rgb, f"frame{seq}", faces)
        if cand.liveness is not None and not cand.liveness.live:  # never a template
            live = cand.liveness
            self._spoof(
                ENROLL,
                by=self._enroll_by,
                liveness=round(live.score, 5),
                liveness_threshold=live.threshold,
            )
            return
        if not cand.accepted or seq - self._capture_last_seq < self.cfg.enroll.every:
            return
        assert cand.template is not None
        with self._state:
            if self.mode != ENROLL:
                return
            self._capture.append(cand.template)
            self._capture_last_seq = seq
            done = len(self._capture) >= self.cfg.enroll.templates
            templates = list(self._capture)
        if done:
            self._finish_enroll(templates, now)

    def _finish_enroll(self, templates: list[Template], now: float) -> None:
        name, by, rid = self._enroll_name or "", self._enroll_by, self._reenroll_id
        show = self.cfg.verify.result_s
        dups: list[Any] = []

        def save(g: Gallery) -> Any:
            dups.extend(find_duplicates(g, templates, self.duplicate_threshold, exclude_id=rid))
            if dups:
                return None
            if rid is not None:
                old = g.info(rid)
                g.remove(rid)
                return g.add_identity(old.name, templates, identity_id=rid, created=old.created)
            return g.add_identity(name, templates)

        try:
            info = self._edit(save)
        except LockTimeoutError as exc:
            self.audit.append("enroll_failed", by=by, reason="gallery busy")
            with self._state:
                self._to_verify(Result("enroll_failed", now + show, detail=str(exc)))
            return
        except GalleryError as exc:
            self.audit.append("enroll_failed", by=by, reason=str(exc)[:200])
            with self._state:
                self._to_verify(Result("enroll_failed", now + show, detail=str(exc)))
            return
        if info is None:
            self.audit.append(
                "enroll_duplicate", by=by, identity_id=dups[0].identity_id, score=dups[0].score
            )
            # an invitee is not told who they resemble; the operator is
            detail = dups[0].name if by == "operator" else None
            with self._state:
                self._to_verify(Result("duplicate", now + 2 * show, detail=detail))
            return
        self.audit.append(
            "reenroll" if rid else "enroll", by=by, identity_id=info.id, templates=len(templates)
        )
        with self._state:
            self._to_verify(Result("enrolled", now + show, name=info.name))

    # --- forget me ------------------------------------------------------------------------

    def start_forget(self, token: str) -> None:
        with self._state:
            self._take(token, FORGET)
            self._forget_policy = self._new_policy()
            self._forget_match = None
            self._capture_deadline = self.clock() + self.cfg.enroll.capture_timeout_s
        self.audit.append("forget_start")

    def _forget(self, rgb: np.ndarray, faces: list[FaceResult], now: float) -> None:
        if now >= self._capture_deadline:
            with self._state:
                self._to_verify(Result("not_recognized", now + self.cfg.verify.result_s))
            return
        obs = self.observe(rgb, faces)
        policy = self._forget_policy
        if policy is None:
            return
        d = policy.observe(obs, now)
        if d.verdict is Verdict.UNLOCK and obs.identity_id and obs.name:
            with self._state:
                self._forget_match = (obs.identity_id, obs.name, now)
                self.result = Result("forget_match", now + FORGET_CONFIRM_S, name=obs.name)
            self.audit.append("forget_verified", votes=d.votes, **self._fields(obs))
        elif d.verdict is Verdict.SPOOF:
            self._spoof(FORGET, **self._fields(d.observation))
        elif d.verdict is Verdict.REJECTED:
            result = Result(rejected_result(d.reason), now + self.cfg.verify.result_s)
            with self._state:
                self._to_verify(result)
            self._rejected(now, d.observation, "forget_reject", d.reason or "unknown")

    def confirm_forget(self, token: str) -> str:
        """Remove the identity the owner's forget-me verification matched; returns the name."""
        now = self.clock()
        with self._state:
            match = self._forget_match
            if self.mode != FORGET or self.owner != token or match is None:
                raise ModeBusy("nothing to confirm: verify your face first")
            if now - match[2] > FORGET_CONFIRM_S:
                self._to_verify(None)
                raise ModeBusy("too late: verify your face again")
        iid, name, _ = match
        self._edit(lambda g: g.remove(iid), purge_backup=True)
        self.audit.append("forget", identity_id=iid)
        with self._state:
            self._to_verify(Result("forgotten", now + self.cfg.verify.result_s, name=name))
        return name

    # --- operator -------------------------------------------------------------------------

    def people(self) -> list[dict[str, Any]]:
        with self._state:
            g = self.gallery
        return [i.to_dict() for i in g.identities()]

    def rename(self, identity_id: str, name: str) -> dict[str, Any]:
        info = self._edit(lambda g: g.rename(identity_id, name))
        self.audit.append("rename", by="operator", identity_id=identity_id)
        return info.to_dict()

    def remove(self, identity_id: str) -> None:
        self._edit(lambda g: g.remove(identity_id), purge_backup=True)
        self.audit.append("remove", by="operator", identity_id=identity_id)

    def has_identity(self, identity_id: str) -> bool:
        with self._state:
            return identity_id in {i.id for i in self.gallery.identities()}

    def recent_events(self, n: int = 30) -> list[dict[str, Any]]:
        """The last ``n`` audit records (names looked up from the gallery; ids stay ids)."""
        with self._state:
            names = {i.id: i.name for i in self.gallery.identities()}
        out = []
        for rec in tail_records(self.audit.path, n):
            iid = rec.get("identity_id")
            out.append(
                {
                    "seq": rec.get("seq"),
                    "iso": rec.get("iso"),
                    "event": rec.get("event"),
                    "name": names.get(iid) if isinstance(iid, str) else None,
                    "score": rec.get("score"),
                }
            )
        return out

    # --- what the page shows --------------------------------------------------------------

    def snapshot(self, token: str | None) -> dict[str, Any]:
        now = self.clock()
        with self._state:
            r = self.result if self.result is not None and now < self.result.until else None
            pending = self._pending
            return {
                "mode": self.mode,
                "mine": self.owner is not None and self.owner == token,
                "guidance": self.guidance.code,
                "guidance_text": self.guidance.text,
                "faces": len(self.guidance.boxes),
                "result": None
                if r is None
                else {"kind": r.kind, "name": r.name, "detail": r.detail},
                "progress": [len(self._capture), self.cfg.enroll.templates],
                "locked_s": None
                if self.locked_until is None
                else round(max(0.0, self.locked_until - now), 1),
                "camera": self.camera_state,
                "camera_fps": round(self.camera_rate.per_s(), 1),
                "recognition_fps": round(self.recognition_rate.per_s(), 1),
                "identities": len(self.gallery),
                "challenge": None if pending is None else challenge_state(pending.challenge, now),
            }


def challenge_state(ch: HeadTurn, now: float) -> dict[str, Any]:
    """What the page needs to prompt the head turn: the side, turn or look back, time left."""
    return {"side": ch.side, "turned": ch.turned, "left_s": round(ch.remaining(now), 1)}


def rejected_result(reason: str | None) -> str:
    """What the screen shows for a failed attempt: a photo is told so, a stranger is not."""
    return "not_live" if reason == "spoof" else "not_recognized"


def tail_records(path: Path, n: int, max_bytes: int = 256 * 1024) -> list[dict[str, Any]]:
    """The last ``n`` JSON records of a JSON-lines file, reading at most ``max_bytes``."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    out = []
    for line in data.splitlines()[-n:]:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
