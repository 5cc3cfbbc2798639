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
    settings: Settings
    layout: Layout
    git: Git
    redis: Redis

    def progress(self, step: str, phase: str | None = None, percent: int | None = None) -> None:
        """Say what the work is doing now (the phone shows it)."""

    def git_progress(self, step: str) -> ProgressThrottle:
        """A progress callback for git's own progress lines during `step`."""

    def others_waiting(self) -> bool:
        """Whether other work is queued behind this one."""

    def lock(self, repo: RepoName) -> AbstractContextManager[None]:
        """The repo's lock, held by this work."""

    def first_time(self, event: str) -> float:
        """When this work first reached `event` (epoch seconds), kept across its retries."""
