"""GC's schedule and last run, as the worker records them and the API reports them (all in Redis)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from redis import Redis
from rq.cron import CronScheduler

from sidecar.config import Settings


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


def schedule(redis: Redis, settings: Settings) -> dict[str, Any]:
    """The periodic GC as the live scheduler saved it: interval, scheduler name, next run."""
    status: dict[str, Any] = {"interval_seconds": settings.gc_interval, "scheduler": None, "next_run": None}
    if settings.gc_interval <= 0:
        return status
    name = cron_name(settings)
    for scheduler in CronScheduler.all(redis):
        for job in scheduler.get_jobs():
            if job.name == name:
                status["scheduler"] = scheduler.name
                status["next_run"] = job.next_enqueue_time if job.next_enqueue_time != datetime.max else None
    return status
