"""The RQ queue as the API sees it: enqueue (with de-duplication), look jobs up, list recent ones.

Jobs are enqueued by their dotted name (`worker.jobs.clone_repo`), so the API never imports the worker.

Job metadata kept in `job.meta`:
    kind      clone | worktree | delete_worktree | delete_repo
    progress  {"phase", "percent", "message"} while running
    error     a short, redacted, human-readable reason when the job failed
"""

from __future__ import annotations

import uuid
from typing import Any

from redis import Redis
from redis.lock import Lock
from rq import Queue
from rq.job import Dependency, Job, JobStatus
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from domain.config import Settings

ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
_ACTIVE_PREFIX = "mecodes:active:"


class JobQueue:
    def __init__(self, redis: Redis, settings: Settings):
        self.redis = redis
        self.settings = settings
        self.queue = Queue(settings.queue_name, connection=redis)

    def enqueue(
        self,
        kind: str,
        job_name: str,
        *args: Any,
        depends_on: Job | None = None,
        job_id: str | None = None,
        waits: int = 0,
    ) -> Job:
        """Queue `job_name` (a dotted name in worker.jobs). `waits`: seconds the job may spend waiting (for memory,
        say) on top of its git work's time limit."""
        return self.queue.enqueue(
            job_name,
            *args,
            job_id=job_id or new_job_id(),
            job_timeout=self.settings.clone_timeout + 60 + waits,
            result_ttl=self.settings.job_result_ttl,
            failure_ttl=self.settings.job_failure_ttl,
            meta={"kind": kind},
            description=f"{kind} {' '.join(str(a) for a in args if a is not None)}",
            depends_on=Dependency(jobs=[depends_on], allow_failure=True) if depends_on else None,
        )

    def active_or_enqueue(
        self, dedup_key: str, kind: str, job_name: str, *args: Any, depends_on: Job | None = None
    ) -> tuple[Job, bool]:
        """The job already queued or running under `dedup_key`, else a new one. Returns (job, created)."""
        pointer = f"{_ACTIVE_PREFIX}{dedup_key}"
        with Lock(self.redis, f"{pointer}:enqueue", timeout=10, blocking_timeout=10):
            existing_id = self.redis.get(pointer)
            if existing_id:
                job = self.fetch(existing_id.decode())
                if job is not None and job.get_status(refresh=False) in ACTIVE:
                    return job, False
            job = self.enqueue(kind, job_name, *args, depends_on=depends_on)
            self.redis.set(pointer, job.id, ex=self.settings.job_result_ttl)
            return job, True

    def fetch(self, job_id: str) -> Job | None:
        jobs = Job.fetch_many([job_id], connection=self.redis)
        return jobs[0] if jobs else None

    def recent(self, limit: int) -> list[Job]:
        q = self.queue
        ids: set[str] = set(q.get_job_ids())
        for registry_class in (
            StartedJobRegistry,
            DeferredJobRegistry,
            FinishedJobRegistry,
            FailedJobRegistry,
            ScheduledJobRegistry,
            CanceledJobRegistry,
        ):
            ids.update(registry_class(queue=q).get_job_ids())
        jobs = [j for j in Job.fetch_many(sorted(ids), connection=self.redis) if j is not None]
        jobs.sort(key=lambda j: j.created_at.timestamp() if j.created_at else 0, reverse=True)
        return jobs[:limit]


def new_job_id() -> str:
    return uuid.uuid4().hex
