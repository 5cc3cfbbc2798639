"""RQ job entry points. Each takes plain strings, holds the repo's lock for its writes, reports progress in
`job.meta["progress"]` and leaves a short, redacted reason in `job.meta["error"]` when it fails."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import Redis
from rq import get_current_job
from rq.job import Job, JobStatus
from rq.timeouts import JobTimeoutException

from sidecar import gc_status
from sidecar.config import Settings, load_settings
from sidecar.gitcmd import Git, ProgressThrottle
from sidecar.inventory import default_branch, repo_worktrees
from sidecar.layout import Layout
from sidecar.locks import repo_lock
from sidecar.names import RepoName, parse_repo
from sidecar.redaction import redact
from worker import repo_ops
from worker.gc import Collector, Policy
from worker.repo_ops import Refused

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class JobContext:
    settings: Settings
    layout: Layout
    git: Git
    redis: Redis
    job: Job

    def progress(self, step: str, phase: str | None = None, percent: int | None = None) -> None:
        self.job.meta["progress"] = {"step": step, "phase": phase, "percent": percent}
        self.job.save_meta()

    def git_progress(self, step: str) -> ProgressThrottle:
        return ProgressThrottle(lambda phase, percent: self.progress(step, phase, percent))

    def lock(self, repo: RepoName):
        self.progress("waiting for the repo lock")
        return repo_lock(self.redis, repo, self.job.id, self.settings.lock_ttl, self.settings.clone_timeout)


def _context() -> JobContext:
    settings = load_settings()
    job = get_current_job()
    assert job is not None, "only callable inside an RQ job"
    layout = Layout(settings.data_dir)
    layout.ensure()
    return JobContext(settings, layout, Git(settings), job.connection, job)


def reports_errors(func: F) -> F:
    """Record a readable, redacted reason on the job before RQ marks it failed."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            job = get_current_job()
            if job is not None:
                job.meta["error"] = redact(_reason(exc), load_settings().secrets)
                job.save_meta()
            raise

    return wrapper  # type: ignore[return-value]


def _reason(exc: Exception) -> str:
    if isinstance(exc, JobTimeoutException):
        return "the job ran out of time (MECODES_CLONE_TIMEOUT) and was stopped"
    if isinstance(exc, RuntimeError | ValueError):  # our own errors carry readable messages
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _ensure_cached(ctx: JobContext, repo: RepoName, max_age: float) -> str:
    """Clone when missing, fetch when older than `max_age` seconds. Returns what was done."""
    if not ctx.layout.is_cached(repo):
        ctx.progress("cloning")
        repo_ops.clone(ctx.layout, ctx.git, repo, ctx.git_progress("cloning"))
        return "cloned"
    if repo_ops.fetch_age(ctx.layout, repo) < max_age:
        return "up to date"
    ctx.progress("fetching")
    repo_ops.fetch(ctx.layout, ctx.git, repo, ctx.git_progress("fetching"))
    return "fetched"


def _repo_summary(ctx: JobContext, repo: RepoName) -> dict[str, Any]:
    path = ctx.layout.repo_path(repo)
    return {"repo": str(repo), "path": str(path), "default_branch": default_branch(path)}


@reports_errors
def clone_repo(repo: str) -> dict[str, Any]:
    """Clone `owner/name` into the cache, or refresh it with a fetch when already cached."""
    ctx, name = _context(), parse_repo(repo)
    with ctx.lock(name):
        action = _ensure_cached(ctx, name, max_age=0)
    return {**_repo_summary(ctx, name), "action": action}


@reports_errors
def create_worktree(repo: str, session_id: str, branch: str | None, clone_job_id: str | None = None) -> dict[str, Any]:
    ctx, name = _context(), parse_repo(repo)
    just_cloned = clone_job_id is not None and _clone_succeeded(ctx, clone_job_id)
    with ctx.lock(name):
        fetched = _ensure_cached(ctx, name, max_age=float("inf") if just_cloned else ctx.settings.fetch_max_age)
        ctx.progress("creating worktree")
        worktree = repo_ops.add_worktree(ctx.layout, ctx.git, name, session_id, branch)
    return {
        "repo": str(name),
        "session_id": session_id,
        "path": str(worktree.path),
        "branch": worktree.branch,
        "head": worktree.head,
        "created": worktree.created,
        "repo_action": fetched,
    }


def _clone_succeeded(ctx: JobContext, clone_job_id: str) -> bool:
    """True when the clone job this one waited for finished; raises with its reason when it did not."""
    clone_job = Job.fetch_many([clone_job_id], connection=ctx.redis)[0]
    if clone_job is None:
        return False  # expired: the cache check decides
    if clone_job.get_status() != JobStatus.FINISHED:
        reason = clone_job.get_meta().get("error") or f"it ended {clone_job.get_status()}"
        raise Refused(f"the clone this worktree needs failed (job {clone_job_id}): {reason}")
    return True


@reports_errors
def collect_garbage(dry_run: bool, max_idle_days: float | None = None) -> dict[str, Any]:
    """See worker.gc. Records its summary for `GET /admin/gc`."""
    ctx = _context()
    policy = Policy(
        dry_run=dry_run,
        max_idle_days=ctx.settings.gc_max_idle_days if max_idle_days is None else max_idle_days,
        repo_idle_days=ctx.settings.gc_repo_idle_days,
    )

    def lock(repo: RepoName) -> AbstractContextManager[None]:
        ctx.progress(f"collecting garbage: {repo}")
        return repo_lock(ctx.redis, repo, ctx.job.id, ctx.settings.lock_ttl, ctx.settings.clone_timeout)

    started = time.time()
    report = Collector(ctx.layout, ctx.git, ctx.redis, lock, policy).run()
    summary = {"job_id": ctx.job.id, "started_at": started, "duration_ms": round((time.time() - started) * 1000)}
    gc_status.record_last_run(ctx.redis, ctx.settings, {**summary, **report.summary()})
    return {**summary, **report.as_dict()}


@reports_errors
def delete_worktree(repo: str, session_id: str, force: bool) -> dict[str, Any]:
    ctx, name = _context(), parse_repo(repo)
    with ctx.lock(name):
        ctx.progress("removing worktree")
        outcome = repo_ops.remove_worktree(ctx.layout, ctx.git, name, session_id, force)
    return {"repo": str(name), "session_id": session_id, **outcome}


@reports_errors
def delete_repo(repo: str, force: bool) -> dict[str, Any]:
    ctx, name = _context(), parse_repo(repo)
    with ctx.lock(name):
        if not ctx.layout.is_cached(name):
            raise Refused(f"{name} is not cached")
        worktrees = repo_worktrees(ctx.layout, ctx.git, name, with_state=False)
        if worktrees and not force:
            sessions = ", ".join(w.session_id for w in worktrees)
            raise Refused(f"{name} still has worktrees (sessions: {sessions}); use force=true to remove them too")
        ctx.progress("removing repo")
        repo_ops.remove_repo(ctx.layout, name, [w.path for w in worktrees])
    return {"repo": str(name), "removed_worktrees": [w.session_id for w in worktrees]}
