"""GET /admin/jobs and /admin/jobs/{id}: what the phone polls; DELETE /admin/jobs/{id} cancels one."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from flask_smorest.error_handler import ErrorSchema
from rq.job import Job, JobStatus

from domain.names import parse_job_id
from sidecar.api.errors import parse_path
from sidecar.jobqueue import ACTIVE
from sidecar.schemas import JobListQuery, JobListSchema, JobSchema
from sidecar.services import services

blp = Blueprint("jobs", __name__, url_prefix="/admin/jobs", description="Background jobs: poll them here")


def job_view(job: Job) -> dict[str, Any]:
    meta = job.get_meta(refresh=False)
    status = job.get_status(refresh=False)
    result = job.return_value() if status == "finished" else None
    error = meta.get("error")
    if status == "failed" and not error:
        error = _last_line(job.exc_info) or "the job failed"
    return {
        "id": job.id,
        "kind": meta.get("kind"),
        "status": str(status.value if hasattr(status, "value") else status),
        "url": url_for("jobs.Job", job_id=job.id),
        "description": job.description,
        "progress": meta.get("progress"),
        "result": result if isinstance(result, dict) else None,
        "error": error,
        "depends_on": list(job._dependency_ids),
        "created_at": job.created_at,
        "enqueued_at": job.enqueued_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
    }


def _last_line(text: str | None) -> str | None:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(JobListQuery, location="query")
    @blp.response(200, JobListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Recent jobs, newest first."""
        return {"jobs": [job_view(j) for j in services().jobs.recent(query["limit"])]}


@blp.route("/<job_id>", endpoint="Job")
class JobResource(MethodView):
    @blp.response(200, JobSchema)
    @blp.alt_response(404, description="unknown or expired job")
    def get(self, job_id: str) -> dict[str, Any]:
        """One job: status, progress while running, result or error."""
        return job_view(_job(job_id))

    @blp.response(200, JobSchema)
    @blp.alt_response(202, schema=JobSchema, description="running: asked to stop; poll `url` until `canceled`")
    @blp.alt_response(404, schema=ErrorSchema, description="unknown or expired job")
    @blp.alt_response(409, schema=ErrorSchema, description="the job already ended (finished, failed or stopped)")
    def delete(self, job_id: str) -> tuple[dict[str, Any], int]:
        """Cancel a job. One still waiting (queued, deferred, scheduled) is cancelled at once: `200`, status
        `canceled`. A running one answers `202`: it stops at its next cancel point (a network git command is killed
        within a second; a wait for memory or for the repo lock ends; a chat between two phases stops), rolls back
        what it made as a failure does (a chat: its opencode session, worktree and new branch; a clone: its staging
        folder), then reads `canceled` with an `error` saying so. A job that ends before it reaches a cancel point
        ends as it would have. Jobs that waited on a cancelled one run and fail, naming it. Cancelling a cancelled
        job again answers `200`; one that already ended otherwise, `409`."""
        job = _job(job_id)
        status = job.get_status()
        if status == JobStatus.CANCELED:
            return job_view(job), 200
        if status not in ACTIVE:
            abort(409, message=f"job {job.id} already ended ({JobStatus(status).value}); there is nothing to cancel")
        at_once = services().jobs.cancel(job)
        return job_view(_job(job.id)), 200 if at_once else 202


def _job(raw_id: str) -> Job:
    job_id = parse_path("job_id", parse_job_id, raw_id)
    job = services().jobs.fetch(job_id)
    if job is None:
        abort(404, message=f"no job {job_id} (unknown, or expired)")
    return job
