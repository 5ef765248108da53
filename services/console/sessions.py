"""Signed-in sessions, kept in memory, and the CSRF tokens of forms.

A browser holds only a random session id in a cookie; the environment token
it signed in with stays here. A browser that has not signed in holds a random
visitor id instead, so the sign-in form has a CSRF token too. A form's CSRF
token is an HMAC of the cookie's value under a key that lives as long as the
process: another site can neither read the cookie nor compute the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_ID_BYTES = 32


@dataclass
class Session:
    """One signed-in browser."""

    id: str
    token: str
    created_at: float
    last_seen_at: float


class SessionStore:
    """Sessions by id; each ends after `idle_s` without use or `max_s` after
    it began, whichever comes first."""

    def __init__(
        self,
        idle_s: float,
        max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_s = idle_s
        self._max_s = max_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._csrf_key = secrets.token_bytes(_ID_BYTES)

    def create(self, token: str) -> Session:
        """A new session for `token`, under a new id, so an id a browser held
        before signing in never becomes a signed-in one."""
        now = self._clock()
        session = Session(new_cookie_value(), token, now, now)
        with self._lock:
            self._drop_expired(now)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session of that id, renewed; None when unknown or ended."""
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.last_seen_at = now
            return session

    def end(self, session_id: str) -> None:
        """Forgets the session; ending an unknown one is not an error."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def csrf_token(self, cookie_value: str) -> str:
        """The CSRF token that forms must send along with this cookie value."""
        digest = hmac.new(self._csrf_key, cookie_value.encode(), hashlib.sha256)
        return digest.hexdigest()

    def csrf_matches(self, cookie_value: str | None, sent: str | None) -> bool:
        """Whether `sent` is the CSRF token of `cookie_value`."""
        if not cookie_value or not sent:
            return False
        return hmac.compare_digest(self.csrf_token(cookie_value), sent)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return (
            now - session.last_seen_at > self._idle_s
            or now - session.created_at > self._max_s
        )

    def _drop_expired(self, now: float) -> None:
        for session_id in [
            key
            for key, session in self._sessions.items()
            if self._expired(session, now)
        ]:
            del self._sessions[session_id]


def new_cookie_value() -> str:
    """A random value for the session cookie, unguessable and URL-safe."""
    return secrets.token_urlsafe(_ID_BYTES)
