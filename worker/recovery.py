"""Start-up recovery: what a killed worker left behind is cleaned before new work starts.

- Jobs still marked `started` by a worker that no longer exists end `failed` at once, with a clear reason
  (RQ alone would leave them `started` until their heartbeat expires), and their dependants run.
- Their repo locks are freed.
- Leftover staging folders in tmp/ (half-made clones and worktrees, half-deleted folders) are removed,
  unless a live job holds that repo's lock, and git forgets the half-made worktrees.
"""

from __future__ import annotations

import logging
import shutil

from redis import Redis
from rq import Queue, Worker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import parse_composite_key

from domain.gitcmd import Git
from domain.layout import Layout
from domain.locks import release_locks_of
from domain.processes import alive_here
from domain.repo_ops import WORKTREE_PREFIX, staged_repo_slug, stale_staging

log = logging.getLogger(__name__)
ABANDONED = (
    "interrupted by shutdown: the worker running this job stopped (the stack restarted, or the worker was killed)"
    " before it finished; send the request again"
)


def _worker_of(redis: Redis, job: Job, execution_id: str) -> str:
    """The worker that owns this run. The execution record is written with the registry entry in one
    transaction, so it names the worker even before the work horse has marked the job `started`."""
    try:
        return Execution.fetch(execution_id, job.id, connection=redis).worker_name or job.worker_name or ""
    except ValueError:  # the execution record expired
        return job.worker_name or ""


def _worker_alive(redis: Redis, name: str) -> bool:
    worker = Worker.find_by_key(f"{Worker.redis_worker_namespace_prefix}{name}", connection=redis)
    return worker is not None and alive_here(worker.hostname, worker.pid)


def fail_abandoned_jobs(queue: Queue) -> set[str]:
    redis = queue.connection
    registry = StartedJobRegistry(queue=queue)
    abandoned: set[str] = set()
    for raw in redis.zrange(registry.key, 0, -1):
        entry = raw.decode()
        job_id, execution_id = parse_composite_key(entry)
        job = Job.fetch_many([job_id], connection=redis)[0]
        if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
            continue
        worker_name = _worker_of(redis, job, execution_id)
        if worker_name and _worker_alive(redis, worker_name):
            continue
        job.meta["error"] = ABANDONED
        job.save_meta()
        redis.zadd(registry.key, {entry: 0})  # expire it now, so RQ's own cleanup fails it
        abandoned.add(job.id)
    if abandoned:
        registry.cleanup(timestamp=1)
        log.warning("marked %d abandoned job(s) failed: %s", len(abandoned), ", ".join(sorted(abandoned)))
    return abandoned


def recover(queue: Queue, layout: Layout, git: Git) -> None:
    abandoned = fail_abandoned_jobs(queue)
    if abandoned:
        release_locks_of(queue.connection, abandoned)
    for entry in stale_staging(layout, queue.connection):
        shutil.rmtree(entry, ignore_errors=True)
        log.warning("removed stale staging folder %s", entry)
        repo_path = layout.repos_dir / (staged_repo_slug(entry.name) or "")
        if entry.name.startswith(WORKTREE_PREFIX) and (repo_path / "HEAD").is_file():
            git.run(["worktree", "prune"], cwd=repo_path)  # forget the half-made worktree
