"""The names GC's schedule is kept under, and its last run, as the worker records them and the API reports them
(all in Redis)."""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from domain.config import Settings


def cron_name(settings: Settings) -> str:
    return f"mecodes-gc:{settings.queue_name}"


def leader_key(settings: Settings) -> str:
    return f"mecodes:gc:scheduler:{settings.queue_name}"


def _last_run_key(settings: Settings) -> str:
    return f"mecodes:gc:last:{settings.queue_name}"


def record_last_run(redis: Redis, settings: Settings, run: dict[str, Any]) -> None:
    redis.set(_last_run_key(settings), json.dumps(run, default=str))


def last_run(redis: Redis, settings: Settings) -> dict[str, Any] | None:
    raw = redis.get(_last_run_key(settings))
    return json.loads(raw) if raw else None
