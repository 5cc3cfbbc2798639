"""Failed logins per client, bans, and what happened in the last 24 hours, kept in Redis.

A client may fail `login_failures` times within `login_window` seconds; its last allowed failure bans it for
`login_ban` seconds, and each further ban within 24 hours doubles, up to `login_ban_max`. A try is counted before
its password is hashed, by the gate's one try at a time. Bans are also kept in the gate's memory
(domain/login_gate.py), which refuses banned clients without asking Redis; what it refused is added here in batches,
not request by request: a banned client may send thousands.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from domain.config import Settings

PREFIX = "mecodes:login:"
DAY = 86400
EVENTS_KEPT = 2000  # the newest events of the last day; older ones, or more, are dropped

# KEYS: failures. The client's tries in this window, this one included.
_TRY = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
# KEYS: ban, strikes, failures. ARGV: first ban, longest ban, day, the limit. Returns {seconds, strike}. The count
# stays at the limit while the ban lasts, so a try that slipped past the gate's memory meanwhile is still refused.
_BAN = """
local strike = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local seconds = math.floor(math.min(tonumber(ARGV[1]) * 2 ^ (strike - 1), tonumber(ARGV[2])))
redis.call('SET', KEYS[1], seconds, 'EX', seconds)
redis.call('SET', KEYS[3], ARGV[4], 'EX', seconds)
return {seconds, strike}
"""


@dataclass(frozen=True)
class Ban:
    seconds: int
    strike: int  # bans of this client within 24 hours, this one included


class LoginLimits:
    def __init__(self, redis: Redis, settings: Settings):
        self.redis = redis
        self.failures = settings.login_failures
        self.window = settings.login_window
        self.first_ban = settings.login_ban
        self.longest_ban = settings.login_ban_max
        self._try = redis.register_script(_TRY)
        self._ban = redis.register_script(_BAN)

    @staticmethod
    def _key(kind: str, client: str) -> str:
        return f"{PREFIX}{kind}:{client}"

    def active_bans(self) -> dict[str, float]:
        """Every ban still running: client -> seconds left (for a gate that starts while some are)."""
        clients = [key.decode().removeprefix(f"{PREFIX}ban:") for key in self.redis.scan_iter(f"{PREFIX}ban:*")]
        with self.redis.pipeline(transaction=False) as pipe:
            for client in clients:
                pipe.pttl(self._key("ban", client))
            left = pipe.execute()
        return {client: ttl / 1000 for client, ttl in zip(clients, left, strict=True) if ttl > 0}

    def add_refused(self, counts: dict[str, int]) -> None:
        """Requests refused while banned, by client (kept for a day after the last one)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for client, count in counts.items():
                pipe.incrby(self._key("refused", client), count)
                pipe.expire(self._key("refused", client), DAY)
            pipe.execute()

    def count_try(self, client: str) -> int:
        """Count a try before its password is hashed: its number in the window (over the limit: banned)."""
        return int(self._try(keys=[self._key("failures", client)], args=[self.window]))

    def succeeded(self, client: str) -> None:
        """The right password: the client's failures in this window are forgiven."""
        self.redis.delete(self._key("failures", client))

    def failed(self, client: str, number: int) -> Ban | None:
        """Record a wrong password (try `number` in the window); the last one allowed bans the client."""
        self._record({"event": "failed", "address": client, "failures": number})
        if number < self.failures:
            return None
        keys = [self._key(kind, client) for kind in ("ban", "strikes", "failures")]
        seconds, strike = self._ban(keys=keys, args=[self.first_ban, self.longest_ban, DAY, self.failures])
        ban = Ban(int(seconds), int(strike))
        self._record({"event": "banned", "address": client, "failures": number, "ban_seconds": ban.seconds})
        return ban

    def _record(self, event: dict[str, Any]) -> None:
        now = time.time()
        with self.redis.pipeline() as pipe:
            pipe.zadd(f"{PREFIX}events", {json.dumps({"at": now, **event}): now})
            pipe.zremrangebyscore(f"{PREFIX}events", "-inf", now - DAY)
            pipe.zremrangebyrank(f"{PREFIX}events", 0, -EVENTS_KEPT - 1)
            pipe.execute()

    def report(self) -> dict[str, Any]:
        """The last 24 hours by client, most recent first: failed logins, bans, requests refused while banned, and
        the end of a ban still running."""
        now = time.time()
        events = [json.loads(raw) for raw in self.redis.zrangebyscore(f"{PREFIX}events", now - DAY, "+inf")]
        clients: dict[str, dict[str, Any]] = {}
        for event in events:
            entry = clients.setdefault(event["address"], {"address": event["address"], "failures": 0, "bans": 0})
            entry["failures"] += event["event"] == "failed"
            entry["bans"] += event["event"] == "banned"
            entry["last_at"] = _when(event["at"])
        with self.redis.pipeline(transaction=False) as pipe:
            for address in clients:
                pipe.get(self._key("refused", address))
                pipe.pttl(self._key("ban", address))
            answers = pipe.execute()
        for i, entry in enumerate(clients.values()):
            refused, ttl = answers[2 * i], answers[2 * i + 1]
            entry["refused"] = int(refused or 0)
            entry["banned_until"] = _when(now + ttl / 1000) if ttl > 0 else None
        listed = sorted(clients.values(), key=lambda entry: entry["last_at"], reverse=True)
        return {
            "since": _when(now - DAY),
            "failures": sum(entry["failures"] for entry in listed),
            "bans": sum(entry["bans"] for entry in listed),
            "refused": sum(entry["refused"] for entry in listed),
            "clients": listed,
            "limits": {
                "failures": self.failures,
                "window_seconds": self.window,
                "ban_seconds": self.first_ban,
                "ban_max_seconds": self.longest_ban,
            },
        }


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
