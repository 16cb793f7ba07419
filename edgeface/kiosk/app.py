"""The kiosk's web application (Starlette): one static page, a JSON API, the live preview.

Request rules, checked before any handler runs:

* ``Host`` must be the address the server is bound to (``127.0.0.1``/``localhost``/``[::1]``
  with the port): a page on another site that re-points a name at 127.0.0.1 (DNS rebinding)
  gets 400;
* every state-changing request (POST) needs the session cookie, an ``X-CSRF-Token`` header
  equal to that session's token, an ``Origin`` equal to this server, ``Content-Type:
  application/json`` and a body of at most ``server.max_body_bytes``: otherwise 403 / 415 /
  413, before the body is parsed;
* responses carry a strict Content-Security-Policy (``default-src 'none'``; scripts, styles,
  images and fetches from this origin only; no inline script), ``nosniff``, no referrer, no
  framing, and ``no-store`` for everything but the static files.

Wrong PINs and invitation codes share one lockout (the door's :class:`Lockout`, scope
``pinpad``): ``operator.pin_failures`` wrong entries pause the pad, doubling each time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from edgeface.door.lockout import Lockout
from edgeface.errors import EdgefaceError
from edgeface.gallery.errors import GalleryError, IdentityNotFoundError
from edgeface.kiosk.engine import KioskEngine, ModeBusy
from edgeface.kiosk.secrets_store import InviteStore, PinStore, digits_only
from edgeface.kiosk.sessions import INVITEE, OPERATOR, Session, Sessions, csrf_ok

log = logging.getLogger("edgeface.kiosk")

COOKIE = "kiosk_session"
PAD_SCOPE = "pinpad"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NAME_MAX = 80


def static_dir() -> Path:
    return Path(str(resources.files("edgeface.kiosk") / "static"))


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class SecurityHeaders:
    """Adds the CSP and friends to every response (also to 404s and static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                ]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Kiosk:
    """Handlers; state lives in the engine (camera, gallery) and in ``sessions``."""

    def __init__(
        self,
        engine: KioskEngine,
        *,
        pins: PinStore,
        invites: InviteStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg = engine.cfg
        self.engine = engine
        self.cfg = cfg
        self.pins = pins
        self.invites = invites
        self.clock = clock
        self.sessions = Sessions(
            max_s=cfg.server.session_s,
            idle_s=cfg.operator.idle_timeout_s,
            max_sessions=cfg.server.max_sessions,
            clock=clock,
        )
        self.pad_lockout = Lockout(cfg.operator.lockout, clock)
        self.audit = engine.audit
        #: set when the server shuts down, so open preview streams end at once
        self.closing = threading.Event()

    # --- request plumbing -------------------------------------------------------------------

    def session(self, request: Request, *, touch: bool = True) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE), touch=touch)

    def allowed_origins(self, request: Request) -> set[str]:
        host = request.headers.get("host", "")
        return {f"http://{host}"} if host else set()

    async def guarded(self, request: Request) -> tuple[Session, dict[str, Any]]:
        """Session + CSRF + same origin + JSON body within the size limit, or ApiError."""
        s = self.session(request)
        origin = request.headers.get("origin")
        if origin is None or origin not in self.allowed_origins(request):
            raise ApiError(403, "cross-origin request refused")
        if s is None:
            raise ApiError(403, "no session: reload the page")
        if not csrf_ok(s, request.headers.get("x-csrf-token")):
            raise ApiError(403, "missing or wrong CSRF token")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "expected Content-Type: application/json")
        limit = self.cfg.server.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise ApiError(413, f"body larger than {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"body larger than {limit} bytes")
        try:
            data = json.loads(bytes(body) or b"{}")
        except ValueError:
            raise ApiError(400, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        return s, data

    def require(self, s: Session, role: str) -> None:
        if s.role != role:
            raise ApiError(403, f"{role} only (session expired?)")

    @staticmethod
    def text(data: dict[str, Any], key: str, *, max_len: int = NAME_MAX) -> str:
        v = data.get(key)
        if not isinstance(v, str) or not v.strip() or len(v) > max_len:
            raise ApiError(400, f"{key}: expected a non-empty string of at most {max_len} chars")
        if any(unicodedata.category(c).startswith("C") for c in v):
            raise ApiError(400, f"{key}: control or invisible format characters are not allowed")
        return v.strip()

    @staticmethod
    def identity(data: dict[str, Any]) -> str:
        v = data.get("id")
        if not isinstance(v, str) or not UUID_RE.match(v):
            raise ApiError(400, "id: expected an identity id")
        return v

    def pad_locked(self) -> float | None:
        ev = self.pad_lockout.active(PAD_SCOPE)
        return None if ev is None else max(0.0, ev.until - self.clock())

    def pad_failure(self, what: str) -> ApiError:
        self.audit.append(f"{what}_fail")
        started = self.pad_lockout.record_failure(PAD_SCOPE)
        if started:  # the pad is the only scope: its tracker and the global one start together
            ev = max(started, key=lambda e: e.until)
            self.audit.append("pin_lockout", scope=PAD_SCOPE, pause_s=ev.pause_s, level=ev.level)
        left = self.pad_locked()
        if left is not None:
            return ApiError(429, "too many wrong entries", locked_s=round(left, 1))
        return ApiError(403, f"wrong {'PIN' if what == 'pin' else 'code'}")

    # --- pages ------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return FileResponse(static_dir() / "index.html", media_type="text/html")

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "camera": self.engine.camera_state})

    async def new_session(self, request: Request) -> Response:
        s = self.session(request) or self.sessions.new()
        resp = JSONResponse(self.describe(s))
        resp.set_cookie(
            COOKIE,
            s.token,
            httponly=True,
            samesite="strict",
            path="/",
            max_age=int(self.cfg.server.session_s),
        )
        return resp

    def describe(self, s: Session) -> dict[str, Any]:
        return {
            "csrf": s.csrf,
            "role": s.role,
            "invite_name": s.invite_name,
            "pin_set": self.pins.is_set,
            "pin_digits": [self.cfg.operator.pin_min_digits, 12],
            "idle_timeout_s": self.cfg.operator.idle_timeout_s,
            "templates": self.cfg.enroll.templates,
        }

    async def state(self, request: Request) -> Response:
        s = self.session(request, touch=False)  # polled: not a sign of anyone at the screen
        snap = self.engine.snapshot(s.token if s else None)
        snap.pop("identities", None)  # how many are enrolled is the operator's business
        snap["role"] = s.role if s else None
        snap["pad_locked_s"] = self.pad_locked()
        return JSONResponse(snap)

    async def preview_jpg(self, request: Request) -> Response:
        self.engine.want_preview()
        _, jpeg = self.engine.preview()
        if not jpeg:
            return Response(status_code=503, content=b"no frame yet")
        return Response(jpeg, media_type="image/jpeg")

    async def preview_mjpeg(self, request: Request) -> Response:
        period = 1.0 / self.cfg.server.preview_fps
        stop_at = time.monotonic() + self.cfg.server.preview_max_s

        async def frames() -> Any:
            last = -1
            # bounded: the page reopens the stream
            while time.monotonic() < stop_at and not self.closing.is_set():
                self.engine.want_preview()
                seq, jpeg = self.engine.preview()
                if jpeg and seq != last:
                    last = seq
                    yield (
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpeg)).encode()
                        + b"\r\n\r\n"
                        + jpeg
                        + b"\r\n"
                    )
                await asyncio.sleep(period)

        return StreamingResponse(frames(), media_type="multipart/x-mixed-replace; boundary=frame")

    # --- PIN pad: operator and invitations --------------------------------------------------

    async def pin(self, request: Request) -> Response:
        s, data = await self.guarded(request)
        left = self.pad_locked()
        if left is not None:
            raise ApiError(429, "too many wrong entries", locked_s=round(left, 1))
        if not self.pins.is_set:
            raise ApiError(409, "no operator PIN set: run `edgeface kiosk pin` on the device")
        pin = data.get("pin")
        ok = isinstance(pin, str) and await run_in_threadpool(self.pins.check, pin)
        if not ok:
            raise self.pad_failure("pin")
        self.pad_lockout.record_success(PAD_SCOPE)
        self.sessions.raise_role(s, OPERATOR)
        self.audit.append("operator_login")
        return JSONResponse(self.describe(s))

    async def invite(self, request: Request) -> Response:
        s, data = await self.guarded(request)
        left = self.pad_locked()
        if left is not None:
            raise ApiError(429, "too many wrong entries", locked_s=round(left, 1))
        code = data.get("code")
        inv = await run_in_threadpool(self.invites.redeem, code) if isinstance(code, str) else None
        if inv is None:
            raise self.pad_failure("invite")
        self.pad_lockout.record_success(PAD_SCOPE)
        self.sessions.raise_role(s, INVITEE, invite_name=inv.name)
        self.audit.append("invite_redeemed")
        return JSONResponse(self.describe(s))

    async def logout(self, request: Request) -> Response:
        s, _ = await self.guarded(request)
        self.engine.cancel(s.token)
        s.drop_role()
        return JSONResponse(self.describe(s))

    async def change_pin(self, request: Request) -> Response:
        s, data = await self.guarded(request)
        self.require(s, OPERATOR)
        current, new = data.get("current"), data.get("new")
        if not isinstance(current, str) or not await run_in_threadpool(self.pins.check, current):
            raise self.pad_failure("pin")
        try:
            digits_only(new, self.cfg.operator.pin_min_digits, 12, "new PIN")  # type: ignore[arg-type]
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        await run_in_threadpool(self.pins.set, new)
        self.audit.append("pin_changed")
        return JSONResponse({"ok": True})

    # --- flows ------------------------------------------------------------------------------

    async def enroll_start(self, request: Request) -> Response:
        s, data = await self.guarded(request)
        if data.get("consent") is not True:
            raise ApiError(400, "consent: the person must agree first")
        reenroll = None
        if s.role == OPERATOR:
            if "id" in data:
                reenroll = self.identity(data)
                if not self.engine.has_identity(reenroll):
                    raise ApiError(404, "no such person")
                name = ""
            else:
                name = self.text(data, "name")
            by = "operator"
        elif s.role == INVITEE and s.invite_name:
            name, by = s.invite_name, "invitation"
        else:
            raise ApiError(403, "enrollment needs the operator PIN or an invitation code")
        try:
            self.engine.start_enroll(s.token, name=name, by=by, reenroll_id=reenroll)
        except ModeBusy as exc:
            raise ApiError(409, str(exc)) from None
        if s.role == INVITEE:
            s.drop_role()  # one enrollment per invitation
        return JSONResponse({"ok": True})

    async def cancel(self, request: Request) -> Response:
        s, _ = await self.guarded(request)
        return JSONResponse({"ok": self.engine.cancel(s.token)})

    async def forget_start(self, request: Request) -> Response:
        s, _ = await self.guarded(request)
        try:
            self.engine.start_forget(s.token)
        except ModeBusy as exc:
            raise ApiError(409, str(exc)) from None
        return JSONResponse({"ok": True})

    async def forget_confirm(self, request: Request) -> Response:
        s, data = await self.guarded(request)
        if data.get("confirm") is not True:
            raise ApiError(400, "confirm: must be true")
        try:
            name = await run_in_threadpool(self.engine.confirm_forget, s.token)
        except ModeBusy as exc:
            raise ApiError(409, str(exc)) from None
        return JSONResponse({"ok": True, "name": name})

    # --- operator ---------------------------------------------------------------------------

    async def people(self, request: Request) -> Response:
        s = self.session(request)
        if s is None or s.role != OPERATOR:
            raise ApiError(403, "operator only (session expired?)")
        return JSONResponse({"people": self.engine.people()})

    async def events(self, request: Request) -> Response:
        s = self.session(request)
        if s is None or s.role != OPERATOR:
            raise ApiError(403, "operator only (session expired?)")
        return JSONResponse({"events": await run_in_threadpool(self.engine.recent_events, 30)})

    async def rename(self, request: Request) -> Response:
        s, data = await self.guarded(request)
        self.require(s, OPERATOR)
        iid, name = self.identity(data), self.text(data, "name")
        info = await run_in_threadpool(self.engine.rename, iid, name)
        return JSONResponse({"ok": True, "person": info})

    async def remove(self, request: Request) -> Response:
        s, data = await self.guarded(request)
        self.require(s, OPERATOR)
        iid = self.identity(data)
        await run_in_threadpool(self.engine.remove, iid)
        return JSONResponse({"ok": True})


async def _errors(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)
    if isinstance(exc, IdentityNotFoundError):
        return JSONResponse({"error": "no such person"}, status_code=404)
    if isinstance(exc, GalleryError):
        return JSONResponse({"error": str(exc)}, status_code=409)
    if isinstance(exc, EdgefaceError):
        return JSONResponse({"error": str(exc)}, status_code=400)
    raise exc


def build_app(kiosk: Kiosk, *, allowed_hosts: list[str] | None = None) -> Starlette:
    k = kiosk
    routes: list[Any] = [
        Route("/", k.index),
        Route("/healthz", k.healthz),
        Route("/preview.mjpg", k.preview_mjpeg),
        Route("/preview.jpg", k.preview_jpg),
        Route("/api/session", k.new_session),
        Route("/api/state", k.state),
        Route("/api/pin", k.pin, methods=["POST"]),
        Route("/api/pin/change", k.change_pin, methods=["POST"]),
        Route("/api/invite", k.invite, methods=["POST"]),
        Route("/api/logout", k.logout, methods=["POST"]),
        Route("/api/enroll/start", k.enroll_start, methods=["POST"]),
        Route("/api/cancel", k.cancel, methods=["POST"]),
        Route("/api/forget/start", k.forget_start, methods=["POST"]),
        Route("/api/forget/confirm", k.forget_confirm, methods=["POST"]),
        Route("/api/people", k.people),
        Route("/api/people/rename", k.rename, methods=["POST"]),
        Route("/api/people/remove", k.remove, methods=["POST"]),
        Route("/api/events", k.events),
        Mount("/static", StaticFiles(directory=static_dir()), name="static"),
    ]
    hosts = allowed_hosts or ["127.0.0.1", "localhost", "[::1]", "::1"]
    if allowed_hosts is None and kiosk.cfg.server.allow_remote:
        hosts = ["*"]  # served beyond loopback on purpose (server.allow_remote); see docs
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: _errors,
        EdgefaceError: _errors,
    }
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)


def create_app(engine: KioskEngine, *, allowed_hosts: list[str] | None = None) -> Starlette:
    cfg = engine.cfg
    kiosk = Kiosk(
        engine,
        pins=PinStore(cfg.state_dir, min_digits=cfg.operator.pin_min_digits),
        invites=InviteStore(cfg.state_dir),
    )
    app = build_app(kiosk, allowed_hosts=allowed_hosts)
    app.state.kiosk = kiosk
    return app
