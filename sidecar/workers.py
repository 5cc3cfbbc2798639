"""Is a worker alive? RQ keeps a dead worker's key until its TTL runs out (minutes), so on this host we
also check that its process still exists."""

from __future__ import annotations

import socket

import psutil
from redis import Redis
from rq import Queue, Worker

_WORKER_KEY_PREFIX = Worker.redis_worker_namespace_prefix


def worker_alive(redis: Redis, worker_name: str) -> bool:
    pid, hostname = redis.hmget(f"{_WORKER_KEY_PREFIX}{worker_name}", "pid", "hostname")
    if pid is None:
        return False
    if (hostname or b"").decode() != socket.gethostname():
        return True  # another host: trust RQ's TTL
    try:
        process = psutil.Process(int(pid))
    except (psutil.NoSuchProcess, ValueError):
        return False
    return process.status() != psutil.STATUS_ZOMBIE


def live_workers(queue: Queue) -> list[str]:
    return [w.name for w in Worker.all(queue=queue) if worker_alive(queue.connection, w.name)]
