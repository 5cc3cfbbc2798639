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
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from sidecar.gitcmd import Git
from sidecar.layout import Layout
from sidecar.locks import LOCK_PREFIX, release_locks_of
from sidecar.workers import worker_alive
from worker.repo_ops import staged_repo_slug

log = logging.getLogger(__name__)
ABANDONED = "the worker running this job died (killed or restarted) before it finished; send the request again"


def fail_abandoned_jobs(queue: Queue) -> set[str]:
    redis = queue.connection
    registry = StartedJobRegistry(queue=queue)
    abandoned: set[str] = set()
    for entry, _score in redis.zrange(registry.key, 0, -1, withscores=True):
        job_id = registry.parse_job_id(entry.decode())
        job = Job.fetch_many([job_id], connection=redis)[0]
        if job is None or job.get_status() != JobStatus.STARTED:
            continue
        if job.worker_name and worker_alive(redis, job.worker_name):
            continue
        job.meta["error"] = ABANDONED
        job.save_meta()
        redis.zadd(registry.key, {entry: 0})  # expire it now, so RQ's own cleanup fails it
        abandoned.add(job_id)
    if abandoned:
        registry.cleanup(timestamp=1)
        log.warning("marked %d abandoned job(s) failed: %s", len(abandoned), ", ".join(sorted(abandoned)))
    return abandoned


def remove_stale_staging(layout: Layout, redis: Redis) -> set[str]:
    """Remove leftovers in tmp/; returns the slugs of repos that had a half-made clone or worktree there."""
    touched: set[str] = set()
    for entry in sorted(layout.tmp_dir.iterdir()) if layout.tmp_dir.exists() else []:
        slug = staged_repo_slug(entry.name)
        if slug is not None:
            if redis.exists(f"{LOCK_PREFIX}{slug}"):
                continue  # a live job on this repo is using it
            touched.add(slug)
        shutil.rmtree(entry, ignore_errors=True)
        log.warning("removed stale staging folder %s", entry)
    return touched


def recover(queue: Queue, layout: Layout, git: Git) -> None:
    abandoned = fail_abandoned_jobs(queue)
    if abandoned:
        release_locks_of(queue.connection, abandoned)
    for slug in remove_stale_staging(layout, queue.connection):
        repo_path = layout.repos_dir / slug
        if (repo_path / "HEAD").is_file():  # forget worktrees whose half-made folder was just removed
            git.run(["worktree", "prune"], cwd=repo_path)
