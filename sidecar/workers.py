"""Which RQ workers of the queue are alive (for the health check)."""

from __future__ import annotations

from rq import Queue, Worker

from domain.processes import alive_here


def live_workers(queue: Queue) -> list[str]:
    return [w.name for w in Worker.all(queue=queue) if alive_here(w.hostname, w.pid)]
