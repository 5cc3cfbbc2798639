"""The RQ queue as the API sees it: enqueue (with de-duplication), look jobs up, list recent ones.

Jobs are enqueued by their dotted name (`worker.jobs.clone_repo`), so the API never imports the worker.

Job metadata kept in `job.meta`:
    kind      clone | worktree | delete_worktree | delete_repo
    progress  {"phase", "percent", "message"} while running
    error     a short, redacted, human-readable reason when the job failed
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from redis import Redis
from redis.lock import Lock
from rq import Queue
from rq.exceptions import InvalidJobOperation
from rq.job import Dependency, Job, JobStatus
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from domain.cancel import CANCELED_TEXT, creating_job, request_cancel
from domain.config import Settings

ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
WAITING = ACTIVE - {JobStatus.STARTED}
_ACTIVE_PREFIX = "mecodes:active:"


class JobInFlight(RuntimeError):
    """A job in flight under the same de-duplication key asks something else than this request."""

    def __init__(self, job: Job):
        status = job.get_status(refresh=False)
        super().__init__(
            f"another request for this, asking something else, is in flight: job {job.id} ({job.description}),"
            f" {getattr(status, 'value', status)}; ask again once it has ended"
        )
        self.job = job


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
        self,
        dedup_key: str,
        kind: str,
        job_name: str,
        *args: Any,
        depends_on: Job | None = None,
        asks: Any = None,
    ) -> tuple[Job, bool]:
        """The job already queued or running under `dedup_key` when it asks the same thing, else a new one.
        Returns (job, created). `asks` (JSON-able) is what the request asks, by default the job's arguments. A job
        in flight under the key that asks something else raises JobInFlight: joining it would answer this request
        with another one's result."""
        pointer = f"{_ACTIVE_PREFIX}{dedup_key}"
        request = json.dumps(list(args) if asks is None else asks, sort_keys=True, default=str)
        with Lock(self.redis, f"{pointer}:enqueue", timeout=10, blocking_timeout=10):
            existing_id, asked = self.redis.mget(pointer, f"{pointer}:asks")
            if existing_id:
                job = self.fetch(existing_id.decode())
                if job is not None and job.get_status(refresh=False) in ACTIVE:
                    if asked is not None and asked.decode() != request:  # None: enqueued before `asks` was kept
                        raise JobInFlight(job)
                    return job, False
            job = self.enqueue(kind, job_name, *args, depends_on=depends_on)
            ttl = self.settings.job_result_ttl
            with self.redis.pipeline() as pipe:
                pipe.set(pointer, job.id, ex=ttl).set(f"{pointer}:asks", request, ex=ttl).execute()
            return job, True

    def fetch(self, job_id: str) -> Job | None:
        jobs = Job.fetch_many([job_id], connection=self.redis)
        return jobs[0] if jobs else None

    def cancel(self, job: Job) -> bool:
        """Cancel an active job. One still waiting (queued, deferred, scheduled) is cancelled at once: True. One
        running is asked to stop at its next cancel point (domain.cancel), and the worker ends it `canceled` once
        it has rolled back what it made: False. The jobs waiting on it then run, and fail saying why."""
        request_cancel(self.redis, job.id, self.settings.job_failure_ttl)  # also seen if a worker takes it meanwhile
        if job.get_status() not in WAITING:
            return False
        job.meta["error"] = f"{CANCELED_TEXT} before it started"
        job.save_meta()
        with contextlib.suppress(InvalidJobOperation):  # cancelled by another request in between
            job.cancel(enqueue_dependents=True)
        self.redis.expire(job.key, self.settings.job_failure_ttl)
        return True

    def creating_chat(self, session_id: str) -> Job | None:
        """The job still creating the chat of `session_id`, if there is one."""
        job_id = creating_job(self.redis, session_id)
        job = self.fetch(job_id) if job_id else None
        return job if job is not None and job.get_status() in ACTIVE else None

    def recent(self, limit: int) -> list[Job]:
        """The `limit` jobs created last. The registries may hold thousands (Redis keeps them across restarts), so
        only their creation times are read for all of them (ISO strings: they sort as text), whole jobs for these."""
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
        order = list(ids)
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in order:
                pipe.hget(Job.key_for(job_id), "created_at")
            created = dict(zip(order, pipe.execute(), strict=True))
        newest = sorted((job_id for job_id, at in created.items() if at), key=created.__getitem__, reverse=True)
        return [j for j in Job.fetch_many(newest[:limit], connection=self.redis) if j is not None]


def new_job_id() -> str:
    return uuid.uuid4().hex
