"""What every job runs with: settings, paths, git, Redis, its own RQ job (for progress and errors), and the
step that clones or refreshes a repo."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import Redis
from rq import Queue, get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from sidecar.config import Settings, load_settings
from sidecar.gitcmd import Git, ProgressThrottle
from sidecar.layout import Layout
from sidecar.locks import repo_lock
from sidecar.names import RepoName
from sidecar.redaction import redact
from worker import repo_ops

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

    def others_waiting(self) -> bool:
        """Whether other jobs are queued behind this one."""
        return Queue(self.job.origin, connection=self.redis).count > 0

    def lock(self, repo: RepoName) -> AbstractContextManager[None]:
        self.progress("waiting for the repo lock")
        return repo_lock(self.redis, repo, self.job.id, self.settings.lock_ttl, self.settings.clone_timeout)


def job_context() -> JobContext:
    settings = load_settings()
    job = get_current_job()
    assert job is not None, "only callable inside an RQ job"
    layout = Layout(settings.data_dir)
    layout.ensure()
    return JobContext(settings, layout, Git(settings), job.connection, job)


class StepAside(Exception):
    """Raised by a job that waits (for memory, say) while other jobs are queued: the worker puts it back at the
    end of the queue (worker.__main__), so the single worker serves the others meanwhile."""


def reports_errors(func: F) -> F:
    """Record a readable, redacted reason on the job before RQ marks it failed."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StepAside:
            raise
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


def ensure_cached(ctx: JobContext, repo: RepoName, max_age: float) -> str:
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
