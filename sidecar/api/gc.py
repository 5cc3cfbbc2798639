"""Garbage collection: run it (or a dry run) as a job, and see the schedule and the last run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from redis import Redis
from rq.cron import CronScheduler

from domain import periodic
from domain.config import Settings
from sidecar.api.jobs import job_view
from sidecar.schemas import GcRequest, GcStatusSchema, JobSchema
from sidecar.services import services

blp = Blueprint("gc", __name__, url_prefix="/admin/gc", description="Garbage collection that never loses work")


@blp.route("")
class Gc(MethodView):
    @blp.arguments(GcRequest)
    @blp.response(202, JobSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Collect garbage. The job's result lists every worktree, folder and repo looked at, with the decision,
        the reason and the bytes freed."""
        dry_run, idle = body["dry_run"], body["max_idle_days"]
        job, _ = services().jobs.active_or_enqueue(
            f"gc:{dry_run}:{idle}", "gc", "worker.jobs.collect_garbage", dry_run, idle
        )
        return job_view(job)

    @blp.response(200, GcStatusSchema)
    def get(self) -> dict[str, Any]:
        """The periodic schedule (next run) and the last run's summary."""
        svc = services()
        redis = svc.jobs.redis
        return {
            "schedule": schedule(redis, svc.settings),
            "last_run": periodic.last_run(redis, svc.settings),
        }


def schedule(redis: Redis, settings: Settings) -> dict[str, Any]:
    """The periodic GC as the live scheduler saved it: interval, scheduler name, next run."""
    status: dict[str, Any] = {"interval_seconds": settings.gc_interval, "scheduler": None, "next_run": None}
    if settings.gc_interval <= 0:
        return status
    name = periodic.cron_name(settings)
    for scheduler in CronScheduler.all(redis):
        for job in scheduler.get_jobs():
            if job.name == name:
                status["scheduler"] = scheduler.name
                status["next_run"] = job.next_enqueue_time if job.next_enqueue_time != datetime.max else None
    return status
