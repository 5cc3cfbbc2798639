"""The decision Caddy asks for before every request but the health check: let it through, or why not.

Most requests are decided in memory, at once (`quick`): a banned client is refused (429), no credentials ask for them
(401), the right credentials already verified pass, and while the one bcrypt slot is taken any other guess is told
to come back (503). Only what is left, a guess from a client within its limit while the slot is free, goes to
`check`, which blocks: holding the slot, it counts the try in Redis, hashes it, and records a failure (the limit's
last one bans the client, in Redis and in memory) before it lets the slot go. So no refusal costs a hash or a Redis
call, a flood of them costs the gate little, and tries are counted one at a time, exactly.

Without Redis nothing can be counted, so no guess is hashed: only credentials already verified pass, and the owner
keeps working while Redis restarts.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass

from redis.exceptions import RedisError

from domain.login_limits import LoginLimits
from domain.password import Credentials, PasswordCheck

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    status: int  # 200: let the request through; 401, 429 or 503: answer that
    message: str
    retry_after: int | None = None


PASS = Verdict(200, "ok")
ASK = Verdict(401, "credentials required")
WRONG = Verdict(401, "wrong user or password")
BUSY = Verdict(503, "another login is being checked; retry in a second", retry_after=1)
NO_REDIS = Verdict(503, "redis is unavailable, so logins cannot be counted; retry shortly", retry_after=2)


def parse_basic(header: str | None) -> Credentials | None:
    """The user and password of an `Authorization: Basic ...` header; None when absent or unreadable."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(token.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return None
    return Credentials(user, password) if colon else None


def _refused(client: str, seconds: float) -> Verdict:
    wait = max(1, math.ceil(seconds))
    return Verdict(429, f"too many failed logins from {client}; retry in {wait} s", retry_after=wait)


class LoginGate:
    def __init__(self, password: PasswordCheck, limits: LoginLimits):
        self.password = password
        self.limits = limits
        self._bans: dict[str, float] = {}  # client -> time.monotonic() when its ban ends
        self._refused: Counter[str] = Counter()  # refused while banned, since the last take_refused()
        self._slot = threading.Lock()  # held by the one try being counted and hashed

    def load_bans(self) -> None:
        """Take over the bans still running in Redis (the gate restarted)."""
        now = time.monotonic()
        self._bans.update({client: now + left for client, left in self.limits.active_bans().items()})

    def _ban_left(self, client: str) -> float:
        end = self._bans.get(client)
        if end is None:
            return 0
        left = end - time.monotonic()
        if left <= 0:
            self._bans.pop(client, None)
        return max(left, 0)

    def quick(self, credentials: Credentials | None, client: str) -> Verdict | None:
        """The answer when it takes neither Redis nor bcrypt; None: ask `check`."""
        if banned := self._ban_left(client):
            self._refused[client] += 1
            return _refused(client, banned)
        if credentials is None:
            return ASK
        if self.password.remembered(credentials):
            return PASS
        return BUSY if self._slot.locked() else None

    def check(self, credentials: Credentials | None, client: str) -> Verdict:
        """The full decision; blocks for Redis and, within the client's limit, for bcrypt (about a second)."""
        verdict = self.quick(credentials, client)
        if verdict is not None or credentials is None:
            return verdict or ASK
        try:
            return self._try(credentials, client)
        except RedisError:
            return NO_REDIS

    def _try(self, credentials: Credentials, client: str) -> Verdict:
        if not self._slot.acquire(blocking=False):
            return BUSY
        try:
            number = self.limits.count_try(client)
            if number > self.limits.failures:  # banned meanwhile
                return _refused(client, self._ban_left(client) or self.limits.first_ban)
            if self.password.verify(credentials):
                self.limits.succeeded(client)
                return PASS
            limit = f"{number} of {self.limits.failures} in {self.limits.window} s"
            log.warning("login failed from %s (%s)", client, limit)
            if ban := self.limits.failed(client, number):
                self._bans[client] = time.monotonic() + ban.seconds
                log.warning("login: %s banned for %d s (ban %d in 24 h)", client, ban.seconds, ban.strike)
            return WRONG
        finally:
            self._slot.release()

    def take_refused(self) -> dict[str, int]:
        """The refusals counted since the last call, by client (to be added to Redis in one go)."""
        taken, self._refused = self._refused, Counter()
        return dict(taken)
