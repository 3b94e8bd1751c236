"""Sessions of the office's pages and the login rate limit, both in memory
(docs/office.md "Sessions" and "Logins").

- A session is a random token (``secrets.token_urlsafe(32)``) in an HttpOnly, SameSite=Strict
  cookie; the server keeps only its SHA-256, with the user, a CSRF token of its own and the
  times. It ends when unused for ``[office] session_idle_min``, ``session_max_hours`` after the
  login, at logout, and when the account is disabled or its password changed (the server
  checks the account on every request). A collector restart ends every session.
- Logins are limited per client address and per user name: ``login_attempts`` failures within
  ``login_window_min`` minutes refuse further logins of that address or name until the oldest
  of those failures is older than the window.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# At most this many addresses and names are counted; beyond, the oldest are forgotten (a
# flood of made-up names must not fill the collector's memory).
MAX_TRACKED = 10_000
MAX_SESSIONS = 1_000


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a token from a form or cookie with the expected one."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass
class Session:
    user: str
    role: str
    csrf: str
    # The account's hash at login: a changed password (another hash) ends the session.
    password_hash: str
    created: datetime
    seen: datetime


class Sessions:
    def __init__(self, idle: timedelta, lifetime: timedelta):
        self.idle = idle
        self.lifetime = lifetime
        self._by_key: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str, role: str, password_hash: str, now: datetime) -> str:
        """A new session; returns its token (for the cookie)."""
        token = secrets.token_urlsafe(32)
        session = Session(user, role, secrets.token_urlsafe(32), password_hash, now, now)
        with self._lock:
            self._prune(now)
            if len(self._by_key) >= MAX_SESSIONS:
                oldest = min(self._by_key, key=lambda k: self._by_key[k].seen)
                del self._by_key[oldest]
            self._by_key[_key(token)] = session
        return token

    def get(self, token: str | None, now: datetime) -> Session | None:
        """The live session of a cookie's token (its idle time restarts), or None."""
        if not token:
            return None
        key = _key(token)
        with self._lock:
            session = self._by_key.get(key)
            if session is None:
                return None
            if self._expired(session, now):
                del self._by_key[key]
                return None
            session.seen = now
            return session

    def peek(self, token: str | None, now: datetime) -> Session | None:
        """The live session of a token without restarting its idle time: an open live page
        (``/today/events``) is not a use of the session."""
        if not token:
            return None
        key = _key(token)
        with self._lock:
            session = self._by_key.get(key)
            if session is None:
                return None
            if self._expired(session, now):
                del self._by_key[key]
                return None
            return session

    def end(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            return self._by_key.pop(_key(token), None)

    def end_user(self, user: str) -> int:
        """End every session of ``user``; returns how many."""
        with self._lock:
            keys = [k for k, s in self._by_key.items() if s.user == user]
            for k in keys:
                del self._by_key[k]
        return len(keys)

    def count(self) -> int:
        with self._lock:
            return len(self._by_key)

    def _expired(self, session: Session, now: datetime) -> bool:
        return now - session.seen >= self.idle or now - session.created >= self.lifetime

    def _prune(self, now: datetime) -> None:
        for k in [k for k, s in self._by_key.items() if self._expired(s, now)]:
            del self._by_key[k]


@dataclass
class _Failures:
    times: deque[datetime] = field(default_factory=deque)
    # The block of this run of failures was audited already (once per block, not per try).
    reported: bool = False


class LoginLimiter:
    """Failed logins per key (``addr:…`` and ``user:…``) in a sliding window."""

    def __init__(self, attempts: int, window: timedelta):
        self.attempts = attempts
        self.window = window
        self._keys: dict[str, _Failures] = {}
        self._pending: dict[str, int] = {}  # checks in flight per key
        self._lock = threading.Lock()

    def _current(self, key: str, now: datetime) -> _Failures | None:
        found = self._keys.get(key)
        if found is None:
            return None
        while found.times and now - found.times[0] >= self.window:
            found.times.popleft()
        if not found.times:
            del self._keys[key]
            return None
        return found

    def blocked(self, keys: list[str], now: datetime) -> datetime | None:
        """When logins for ``keys`` are allowed again, if any of them is blocked now."""
        until = None
        with self._lock:
            for key in keys:
                found = self._current(key, now)
                if found is not None and len(found.times) >= self.attempts:
                    ends = found.times[len(found.times) - self.attempts] + self.window
                    until = ends if until is None else max(until, ends)
        return until

    def begin(self, keys: list[str], now: datetime) -> bool:
        """Reserve one password check for ``keys``; False (nothing reserved) when their
        failures plus the checks still in flight have reached the limit. Pair with
        :meth:`finish`."""
        with self._lock:
            for key in keys:
                found = self._current(key, now)
                failures = len(found.times) if found is not None else 0
                if failures + self._pending.get(key, 0) >= self.attempts:
                    return False
            for key in keys:
                self._pending[key] = self._pending.get(key, 0) + 1
            return True

    def finish(self, keys: list[str]) -> None:
        """The reserved check is done (its failure, if any, counted by :meth:`fail`)."""
        with self._lock:
            for key in keys:
                left = self._pending.get(key, 0) - 1
                if left > 0:
                    self._pending[key] = left
                else:
                    self._pending.pop(key, None)

    def first_report(self, keys: list[str], now: datetime) -> bool:
        """True once per block: whether a refused login should be audited."""
        with self._lock:
            fresh = False
            for key in keys:
                found = self._current(key, now)
                if found is not None and len(found.times) >= self.attempts and not found.reported:
                    found.reported = True
                    fresh = True
            return fresh

    def fail(self, keys: list[str], now: datetime) -> bool:
        """Count a failure for each key; True when this failure reached the limit."""
        reached = False
        with self._lock:
            for key in keys:
                found = self._current(key, now) or _Failures()
                found.times.append(now)
                if len(found.times) > self.attempts:
                    found.times.popleft()
                self._keys[key] = found
                if len(found.times) >= self.attempts:
                    reached = True
            if len(self._keys) > MAX_TRACKED:
                for key in list(self._keys):
                    self._current(key, now)
                while len(self._keys) > MAX_TRACKED:
                    # Blocked keys go last: a flood of addresses must not free a blocked name.
                    oldest = min(
                        self._keys,
                        key=lambda k: (
                            len(self._keys[k].times) >= self.attempts,
                            self._keys[k].times[-1],
                        ),
                    )
                    del self._keys[oldest]
        return reached

    def succeed(self, keys: list[str]) -> None:
        """A login that passed clears its name's failures (not its address's)."""
        with self._lock:
            for key in keys:
                self._keys.pop(key, None)
