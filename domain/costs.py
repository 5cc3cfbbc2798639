"""What the agents cost: tokens and dollars, as opencode records them (each reply's cost comes from the prices in
its model config: `cost: {input, output, cache_read, cache_write}` in $ per million tokens).

opencode sums a session's replies into the session itself (`cost`, `tokens`) and lists them with its sessions, so a
chat's figures cost the chat list no call of its own. A total over days needs more, since a deleted chat's session
takes its cost with it: each look at the sessions (the chat list, GET /admin/costs, a chat's deletion) adds what each
session spent since the previous look to the day of the session's last update (UTC), in Redis: a hash per day, kept
KEPT_DAYS days. The total of the last days is the sum of those hashes. What a session spent between the last look and
its deletion by other means (opencode's own UI) is not counted; neither is anything spent before Redis last lost
its data by a session deleted since.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

SEEN_KEY = "mecodes:costs:seen"  # session id -> its figures (FIELDS, space-separated) as last seen
DAY_KEY = "mecodes:costs:day:"  # + YYYY-MM-DD (UTC) -> hash: FIELDS spent that day
KEPT_DAYS = 31
TOTAL_DAYS = 30
FIELDS = ("cost", "input", "output", "reasoning", "cache_read", "cache_write")

# Adds each session's growth since it was last seen to its day, atomically (two lists at once count it once).
# KEYS: the seen hash, then the day hashes; ARGV: seconds a day is kept, then per session: its id, the index of its
# day's key in KEYS (0: too old to count), its figures in FIELDS order.
ADD_SCRIPT = """
local fields = {'cost', 'input', 'output', 'reasoning', 'cache_read', 'cache_write'}
for i = 2, #ARGV, 8 do
  local id, day = ARGV[i], tonumber(ARGV[i + 1])
  local before = {}
  for x in string.gmatch(redis.call('HGET', KEYS[1], id) or '', '%S+') do before[#before + 1] = tonumber(x) end
  local now = {}
  for f = 1, 6 do
    now[f] = ARGV[i + 1 + f]
    local grown = tonumber(now[f]) - (before[f] or 0)
    if day > 0 and grown > 0 then redis.call('HINCRBYFLOAT', KEYS[day], fields[f], grown) end
  end
  if day > 0 then redis.call('EXPIRE', KEYS[day], tonumber(ARGV[1])) end
  redis.call('HSET', KEYS[1], id, table.concat(now, ' '))
end
return 0
"""


@dataclass(frozen=True)
class Tokens:
    input: int = 0
    output: int = 0
    reasoning: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True)
class Usage:
    cost: float = 0.0  # dollars
    tokens: Tokens = field(default_factory=Tokens)

    def figures(self) -> tuple[float, ...]:
        """In FIELDS' order."""
        t = self.tokens
        return (self.cost, t.input, t.output, t.reasoning, t.cache_read, t.cache_write)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def usage_of(session: dict[str, Any]) -> Usage:
    """A session's (or an assistant message's) tokens and cost, as opencode records them."""
    tokens = session.get("tokens") or {}
    cache = tokens.get("cache") or {}
    counts = (tokens.get("input"), tokens.get("output"), tokens.get("reasoning"), cache.get("read"), cache.get("write"))
    return Usage(float(_number(session.get("cost"))), Tokens(*(int(_number(n)) for n in counts)))


def _number(value: Any) -> int | float:
    return value if isinstance(value, int | float) else 0


def _day(ms: Any) -> date | None:
    return datetime.fromtimestamp(ms / 1000, UTC).date() if isinstance(ms, int | float) else None


class Ledger:
    """What the sessions spent, day by day (see the module's docstring)."""

    def __init__(self, redis: Redis):
        self.redis = redis

    def observe(self, sessions: Iterable[dict[str, Any]]) -> None:
        """Add what each session spent since it was last seen. Best effort: without Redis, the next look adds it."""
        try:
            seen = {k.decode(): v.decode() for k, v in self.redis.hgetall(SEEN_KEY).items()}
            oldest = datetime.now(UTC).date() - timedelta(days=KEPT_DAYS - 1)
            keys: list[str] = [SEEN_KEY]
            args: list[str | int | float] = [KEPT_DAYS * 86400]
            for session in sessions:
                figures = usage_of(session).figures()
                line = " ".join(repr(f) for f in figures)
                if not session.get("id") or seen.get(session["id"]) == line:
                    continue
                day = _day((session.get("time") or {}).get("updated"))
                index = 0
                if day and day >= oldest:
                    if (key := f"{DAY_KEY}{day.isoformat()}") not in keys:
                        keys.append(key)
                    index = keys.index(key) + 1  # Lua counts from 1
                args += [session["id"], index, *(repr(f) for f in figures)]
            if len(args) > 1:
                self.redis.eval(ADD_SCRIPT, len(keys), *keys, *args)
        except RedisError:
            pass

    def forget(self, session_id: str) -> None:
        """A deleted session (after a last `observe`): what it spent stays counted in its days."""
        self.redis.hdel(SEEN_KEY, session_id)

    def total(self, days: int = TOTAL_DAYS) -> dict[str, Any]:
        """Tokens and cost over the last `days` days (UTC), today included."""
        today = datetime.now(UTC).date()
        since = today - timedelta(days=days - 1)
        with self.redis.pipeline() as pipe:
            for n in range(days):
                pipe.hgetall(f"{DAY_KEY}{(since + timedelta(days=n)).isoformat()}")
            spent = pipe.execute()
        sums = dict.fromkeys(FIELDS, 0.0)
        for day in spent:
            for name, value in day.items():
                if name.decode() in sums:
                    sums[name.decode()] += float(value)
        tokens = Tokens(*(round(sums[name]) for name in FIELDS[1:]))
        return {"days": days, "since": since, **Usage(sums["cost"], tokens).as_dict()}
