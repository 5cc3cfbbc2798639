"""Cancelling work: the request (a flag in Redis, set by the API), what running work raises when it sees it, and
which job is creating which chat (so deleting a chat still being made cancels its job).

Work looks at the flag at its cancel points (each progress report, git's progress, the waits for memory and for the
repo lock, a network git command every fraction of a second) and raises `Canceled`, which takes the same road back
as a failure: whatever it made is rolled back. The flag is seen once: the roll-back that follows runs to its end.
"""

from __future__ import annotations

import threading

from redis import Redis

CANCEL_PREFIX = "mecodes:cancel:"
CREATING_PREFIX = "mecodes:creating:"
CANCELED_TEXT = "cancelled on request"


class Canceled(Exception):
    """The work was asked to stop (DELETE /admin/jobs/{id}); its message says what became of what it made."""

    def __init__(self, message: str = CANCELED_TEXT):
        super().__init__(message)


def request_cancel(redis: Redis, job_id: str, ttl: int) -> None:
    redis.set(f"{CANCEL_PREFIX}{job_id}", 1, ex=ttl)


class Cancellation:
    """One job's view of its cancel request. Thread-safe: a git watchdog asks from its own thread."""

    def __init__(self, redis: Redis, job_id: str):
        self.redis = redis
        self.key = f"{CANCEL_PREFIX}{job_id}"
        self._seen = False
        self._lock = threading.Lock()

    def requested(self) -> bool:
        """True once, the first time the flag is found set; never again after that."""
        with self._lock:
            if self._seen or not self.redis.exists(self.key):
                return False
            self._seen = True
            return True

    def check(self) -> None:
        """A cancel point: raise Canceled when a cancel was asked for and not yet acted on."""
        if self.requested():
            raise Canceled()


def record_creation(redis: Redis, session_id: str, job_id: str, ttl: int) -> None:
    """Note that job `job_id` is creating the chat of `session_id`."""
    redis.set(f"{CREATING_PREFIX}{session_id}", job_id, ex=ttl)


def creating_job(redis: Redis, session_id: str) -> str | None:
    """The id of the job that created (or is creating) the chat of `session_id`, if known."""
    value = redis.get(f"{CREATING_PREFIX}{session_id}")
    return value.decode() if value else None
