"""What every job runs with: settings, paths, git, Redis and its own RQ job (for progress and errors); the domain's
`Work`, made of an RQ job."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import Redis
from rq import Queue, get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from domain.cancel import Canceled, Cancellation
from domain.config import Settings, load_settings
from domain.gitcmd import Git, ProgressThrottle
from domain.layout import Layout
from domain.locks import LockTimeout, repo_lock
from domain.names import RepoName
from domain.redaction import redact
from domain.work import StepAside

F = TypeVar("F", bound=Callable[..., Any])
LOCK_POLL_SECONDS = 1.0  # while another job holds the repo's lock, a cancel is seen within this


@dataclass
class JobContext:
    settings: Settings
    layout: Layout
    git: Git
    redis: Redis
    job: Job
    cancellation: Cancellation

    @property
    def job_id(self) -> str:
        return self.job.id

    def progress(self, step: str, phase: str | None = None, percent: int | None = None) -> None:
        self.cancel_point()
        self.job.meta["progress"] = {"step": step, "phase": phase, "percent": percent}
        self.job.save_meta()

    def cancel_point(self) -> None:
        self.cancellation.check()

    def git_progress(self, step: str) -> ProgressThrottle:
        return ProgressThrottle(lambda phase, percent: self.progress(step, phase, percent))

    def others_waiting(self) -> bool:
        """Whether other jobs are queued behind this one."""
        return Queue(self.job.origin, connection=self.redis).count > 0

    @contextmanager
    def lock(self, repo: RepoName) -> Iterator[None]:
        """Waited for a second at a time, so that a cancel is seen while another job holds it."""
        self.progress("waiting for the repo lock")
        with self._acquire(repo):
            yield

    def _acquire(self, repo: RepoName) -> ExitStack:
        wait = self.settings.clone_timeout
        deadline = time.monotonic() + wait
        while True:
            self.cancel_point()
            with ExitStack() as held:
                try:
                    attempt = min(LOCK_POLL_SECONDS, max(0.0, deadline - time.monotonic()))
                    held.enter_context(repo_lock(self.redis, repo, self.job.id, self.settings.lock_ttl, attempt))
                except LockTimeout:
                    if time.monotonic() < deadline:
                        continue
                    raise LockTimeout(f"{repo} is busy with another operation; gave up after {wait:g}s") from None
                return held.pop_all()

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
    cancellation = Cancellation(job.connection, job.id)
    cancellation.check()  # cancelled in the instant the worker took it from the queue
    layout = Layout(settings.data_dir)
    layout.ensure()
    return JobContext(settings, layout, Git(settings, cancellation.requested), job.connection, job, cancellation)


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
    if isinstance(exc, RuntimeError | ValueError | Canceled):  # our own errors carry readable messages
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
