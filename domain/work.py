"""What slow work runs with, as the domain's rules see it. The worker gives each RQ job one (worker.context);
the rules here never see RQ."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from redis import Redis

from domain.config import Settings
from domain.gitcmd import Git, ProgressThrottle
from domain.layout import Layout
from domain.names import RepoName


class StepAside(Exception):
    """Raised by work that waits (for memory, say) while other work is queued: the worker puts it back at the end
    of the queue, so the single worker serves the others meanwhile."""


class Work(Protocol):
    """Its cancel points (`progress`, `cancel_point`, the lock's wait, network git) raise domain.cancel.Canceled once
    the work is asked to stop; the work then rolls back what it made, as after a failure, and lets it propagate."""

    settings: Settings
    layout: Layout
    git: Git
    redis: Redis

    @property
    def job_id(self) -> str:
        """The id the API knows this work by."""

    def progress(self, step: str, phase: str | None = None, percent: int | None = None) -> None:
        """Say what the work is doing now (the phone shows it). A cancel point."""

    def cancel_point(self) -> None:
        """Raise domain.cancel.Canceled if the work was asked to stop."""

    def git_progress(self, step: str) -> ProgressThrottle:
        """A progress callback for git's own progress lines during `step`."""

    def others_waiting(self) -> bool:
        """Whether other work is queued behind this one."""

    def lock(self, repo: RepoName) -> AbstractContextManager[None]:
        """The repo's lock, held by this work (waiting for it is a cancel point)."""

    def first_time(self, event: str) -> float:
        """When this work first reached `event` (epoch seconds), kept across its retries."""
