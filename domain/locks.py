"""Per-repo locks in Redis that serialise every write (clone, fetch, worktree add/remove, delete, GC).

A lock lives for a short TTL and is renewed by a background thread while held, so a holder that dies
(killed worker) frees it within one TTL. The lock's value is the holder's job id, so start-up recovery can
free the locks of jobs it knows are dead at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from domain.names import RepoName

LOCK_PREFIX = "mecodes:lock:repo:"


class LockTimeout(RuntimeError):
    pass


def lock_key(repo: RepoName) -> str:
    return slug_lock_key(repo.slug)


def slug_lock_key(slug: str) -> str:
    """The lock of the repo whose folder name is `slug`, whatever its case: `T/Trunk` and `t/trunk` share it."""
    return f"{LOCK_PREFIX}{slug.lower()}"


@contextmanager
def repo_lock(redis: Redis, repo: RepoName, holder: str, ttl: int, wait: float) -> Iterator[None]:
    lock = Lock(redis, lock_key(repo), timeout=ttl, blocking_timeout=wait, thread_local=False)
    if not lock.acquire(token=holder):
        raise LockTimeout(f"{repo} is busy with another operation; gave up after {wait:g}s")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                lock.reacquire()
            except (LockError, RedisError):  # best effort: the holder still finishes its work
                return

    renewer = threading.Thread(target=renew, name=f"lock-{repo.slug}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(LockError, RedisError):  # expired or taken over: nothing of ours to free
            lock.release()


def release_locks_of(redis: Redis, holders: set[str]) -> int:
    """Free locks whose holder is one of `holders` (jobs known to be dead). Returns how many."""
    released = 0
    for key in redis.scan_iter(match=f"{LOCK_PREFIX}*"):
        value = redis.get(key)
        if value is not None and value.decode() in holders:
            released += redis.delete(key)
    return released
