"""Garbage collection: run it (or a dry run) as a job, and see the schedule and the last run."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from sidecar import gc_status
from sidecar.api.jobs import job_view
from sidecar.schemas import GcRequest, GcStatusSchema, JobSchema
from sidecar.services import services
from worker import jobs as worker_jobs

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
            f"gc:{dry_run}:{idle}", "gc", worker_jobs.collect_garbage, dry_run, idle
        )
        return job_view(job)

    @blp.response(200, GcStatusSchema)
    def get(self) -> dict[str, Any]:
        """The periodic schedule (next run) and the last run's summary."""
        svc = services()
        redis = svc.jobs.redis
        return {
            "schedule": gc_status.schedule(redis, svc.settings),
            "last_run": gc_status.last_run(redis, svc.settings),
        }
