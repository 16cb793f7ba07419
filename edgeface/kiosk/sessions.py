"""Browser sessions: a random cookie, a CSRF token per session, a role, and an expiry.

A kiosk has one screen, but the page can be reached by anything on loopback, so every
state-changing request must prove it comes from a page this server rendered: the session
cookie (HttpOnly, SameSite=Strict) *and* an ``X-CSRF-Token`` header equal to the session's
token, *and* an ``Origin`` naming this server. Sessions live in memory only (a restart logs
everyone out), are bounded in number, and expire: ``idle_s`` without a request drops a raised
role (operator, invitee) back to anonymous, ``max_s`` ends the session.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

ANONYMOUS, OPERATOR, INVITEE = "anonymous", "operator", "invitee"


@dataclass
class Session:
    token: str
    csrf: str
    created: float
    last_seen: float
    role: str = ANONYMOUS
    role_since: float = 0.0
    #: invitee: the display name the invitation was made for
    invite_name: str | None = None
    #: forget-me: the identity the face in front of the camera was verified as
    verified_id: str | None = None
    verified_at: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    def drop_role(self) -> None:
        self.role = ANONYMOUS
        self.invite_name = None


class Sessions:
    def __init__(
        self,
        *,
        max_s: float,
        idle_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_s = max_s
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def new(self) -> Session:
        now = self.clock()
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._items[s.token] = s
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)  # the oldest session goes first
        return s

    def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session for a cookie value. ``touch`` (a person did something) extends
        its idle time; the page's background polling passes ``touch=False``, or an open page
        would keep an operator logged in forever."""
        if not token or len(token) > 100:
            return None
        now = self.clock()
        with self._lock:
            s = self._items.get(token)
            if s is None:
                return None
            if now - s.created > self.max_s:
                del self._items[token]
                return None
            if s.role != ANONYMOUS and now - s.last_seen > self.idle_s:
                s.drop_role()
            if touch:
                s.last_seen = now
                self._items.move_to_end(token)
            return s

    def end(self, token: str) -> None:
        with self._lock:
            self._items.pop(token, None)

    def raise_role(self, s: Session, role: str, *, invite_name: str | None = None) -> None:
        """Give ``s`` a role with a fresh CSRF token (a token seen before login is not reused)."""
        s.role = role
        s.role_since = self.clock()
        s.invite_name = invite_name
        s.csrf = secrets.token_urlsafe(32)


def csrf_ok(session: Session | None, header: str | None) -> bool:
    if session is None or not header:
        return False
    return hmac.compare_digest(session.csrf.encode(), header.encode())
