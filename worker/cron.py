"""Periodic jobs (GC, releasing idle agents' memory): RQ's CronScheduler in a child of the worker process, one
per queue (a Redis lease)."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from redis import Redis
from redis.exceptions import RedisError
from rq.cron import CronScheduler

from domain.config import Settings
from domain.lifetime import die_with_parent
from domain.periodic import cron_name, leader_key
from domain.redis_client import connect
from worker.jobs import collect_garbage, refresh_work_states, release_idle_agents

LEASE_SECONDS = 180  # the scheduler heartbeats at least every 60 s
log = logging.getLogger(__name__)


class LeasedCronScheduler(CronScheduler):
    """Renews its lease on every heartbeat, so a second scheduler for the queue waits instead of running."""

    def __init__(self, connection: Redis, lease_key: str):
        super().__init__(connection)
        self.lease_key = lease_key
        self.stop_requested = False

    def _request_stop(self, signum: int, frame: object) -> None:
        """Remember the request: with Redis gone, RQ's clean-up on the way out raises a RedisError that hides
        the StopRequested, and the retry loop must not take it for an outage to ride out."""
        self.stop_requested = True
        super()._request_stop(signum, frame)

    def heartbeat(self) -> None:
        super().heartbeat()
        self.connection.set(self.lease_key, self.name, ex=LEASE_SECONDS)

    def acquire_lease(self) -> None:
        while not self.connection.set(self.lease_key, self.name, nx=True, ex=LEASE_SECONDS):
            time.sleep(LEASE_SECONDS / 6)  # another scheduler is alive: check again later

    def release_lease(self) -> None:
        """Hand the lease back on the way out: Redis keeps it across a restart of the stack, and the next
        scheduler would otherwise wait for it to expire before running GC."""
        if self.connection.get(self.lease_key) == self.name.encode():
            self.connection.delete(self.lease_key)


class PeriodicJob(NamedTuple):
    name: str
    kind: str  # as the jobs list shows it
    func: Callable[..., Any]
    interval: int
    kwargs: dict[str, Any]
    result_ttl: int  # how long a finished run stays in the jobs list


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    """The periodic jobs that are switched on (an interval of 0 turns one off)."""
    jobs = []
    if settings.gc_interval > 0:
        gc, kwargs = cron_name(settings), {"dry_run": False}
        jobs.append(PeriodicJob(gc, "gc", collect_garbage, settings.gc_interval, kwargs, settings.job_result_ttl))
    if settings.agent_release_interval > 0 and settings.opencode_url:
        # Every few minutes: only the last runs stay listed (failed ones stay as long as any), not hundreds a day.
        interval = settings.agent_release_interval
        name = f"mecodes-release:{settings.queue_name}"
        jobs.append(PeriodicJob(name, "release", release_idle_agents, interval, {}, 2 * interval))
    if settings.work_state_max_age > 0:
        interval = settings.work_state_max_age
        name = f"mecodes-work-states:{settings.queue_name}"
        jobs.append(PeriodicJob(name, "work_states", refresh_work_states, interval, {}, 2 * interval))
    return jobs


def run_scheduler(settings: Settings) -> None:
    scheduler = LeasedCronScheduler(connect(settings, socket_timeout=None), leader_key(settings))
    for job in periodic_jobs(settings):
        scheduler.register(
            job.func,
            queue_name=settings.queue_name,
            kwargs=job.kwargs,
            interval=job.interval,
            job_timeout=settings.clone_timeout + 60,
            result_ttl=job.result_ttl,
            failure_ttl=settings.job_failure_ttl,
            meta={"kind": job.kind},
            name=job.name,
        )
        log.info("%s every %d s on queue %s", job.name, job.interval, settings.queue_name)
    while True:
        try:
            scheduler.acquire_lease()
            scheduler.start()  # returns when asked to stop
            scheduler.release_lease()
            return
        except RedisError as exc:  # Redis went away (e.g. restarted): keep the schedule, try again
            if scheduler.stop_requested:
                return
            log.warning("periodic-job scheduler lost Redis (%s); retrying", exc)
            time.sleep(LEASE_SECONDS / 36)


def spawn_scheduler(settings: Settings) -> int:
    """Fork the scheduler; it gets SIGTERM when the worker process dies, and exits cleanly then."""
    pid = os.fork()
    if pid == 0:
        die_with_parent(signal.SIGTERM)
        try:
            run_scheduler(settings)
        finally:
            os._exit(0)
    return pid
