"""What every job runs with: settings, paths, git, Redis and its own RQ job (for progress and errors); the domain's
`Work`, made of an RQ job."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import Redis
from rq import Queue, get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from domain.config import Settings, load_settings
from domain.gitcmd import Git, ProgressThrottle
from domain.layout import Layout
from domain.locks import repo_lock
from domain.names import RepoName
from domain.redaction import redact
from domain.work import StepAside

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

    def first_time(self, event: str) -> float:
        """Kept in the job's meta, which survives the job being put back in the queue."""
        key = f"first:{event}"
        if key not in self.job.meta:
            self.job.meta[key] = time.time()
            self.job.save_meta()
        return float(self.job.meta[key])


def job_context() -> JobContext:
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
