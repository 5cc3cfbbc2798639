"""`python -m worker`: recover from a previous crash, then serve the queue with one forking RQ worker."""

from __future__ import annotations

import logging
import time

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, Worker
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.job import JobStatus
from rq.utils import now, utcformat

from domain.cancel import Canceled
from domain.config import load_settings
from domain.gitcmd import Git
from domain.layout import Layout
from domain.lifetime import die_with_parent
from domain.locks import release_locks_of
from domain.memory import set_own_oom_score_adj
from domain.redis_client import connect
from domain.work import StepAside
from worker.cron import periodic_jobs, spawn_scheduler
from worker.recovery import recover

JOB_OOM_SCORE_ADJ = 800  # with the stack at 0 (no CAP_SYS_RESOURCE to lower it), still before an 800 MB opencode
STOPPED = "interrupted by shutdown: the stack stopped while this job ran, so it was stopped; send the request again"
REDIS_START_WAIT = 300  # seconds: Redis answers only once it has read its append-only file (10,000 jobs: about 3 s)


class MecodesWorker(Worker):
    """A forking worker whose work horse dies with it, so a killed worker leaves no job running unseen, and
    whose cold shutdown (a second SIGTERM) ends the job in progress `failed` at once, and whose cancelled jobs end
    `canceled`."""

    _canceled_job_id: str | None = None  # set in the work horse by handle_exception, read by handle_job_failure

    def main_work_horse(self, job, queue):
        die_with_parent()
        # Out of memory, a job (and its git) goes before the stack's services and opencode: it fails with a
        # reason and can be sent again. The agent's own commands (1000) still go first.
        set_own_oom_score_adj(JOB_OOM_SCORE_ADJ)
        return super().main_work_horse(job, queue)

    def heartbeat(self, timeout=None, pipeline=None):
        """Register again when Redis has lost our key (a restarted Redis keeps nothing), so health sees us."""
        if pipeline is None and not self.connection.hexists(self.key, "birth"):
            self.log.warning("worker %s: Redis lost this worker's registration; registering again", self.name)
            self.connection.delete(self.key)  # fields written since the restart, without pid or birth
            self.register_birth()
        super().heartbeat(timeout, pipeline)

    def handle_exception(self, job, *exc_info):
        """A job that steps aside (domain.work.StepAside) is no failure: give it one retry, which RQ's failure
        handling then spends putting it back at the end of the queue."""
        if isinstance(exc_info[1], StepAside):
            job.retries_left, job.retry_intervals = 1, None
            self.log.info("job %s steps aside for the jobs queued behind it: %s", job.id, exc_info[1])
            return
        if isinstance(exc_info[1], Canceled):
            self._canceled_job_id = job.id
            self.log.info("job %s was cancelled: %s", job.id, exc_info[1])
            return
        super().handle_exception(job, *exc_info)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        """A job that stopped because it was cancelled (and rolled back what it made) ends `canceled`, as a queued
        one the API cancels does; the jobs waiting on it then run, and see why it did not finish."""
        if job.id != self._canceled_job_id:
            return super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        self._canceled_job_id = None
        with self.connection.pipeline() as pipeline:
            self.cleanup_execution(job, pipeline=pipeline, execution=execution)
            pipeline.hset(job.key, "ended_at", utcformat(job.ended_at or now()))
            pipeline.execute()
        if job.get_status() != JobStatus.CANCELED:  # the API cancels a job it still saw queued
            job.cancel(enqueue_dependents=True)
        self.connection.expire(job.key, job.failure_ttl or DEFAULT_FAILURE_TTL)

    def request_force_stop(self, signum, frame):
        job = self.get_current_job()
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            if job is not None and job.get_status() == JobStatus.STARTED:
                job.meta["error"] = STOPPED
                job.save_meta()
                queue = Queue(job.origin, connection=self.connection)
                self.handle_job_failure(job, queue, exc_string=STOPPED, execution=self.execution)
                release_locks_of(self.connection, {job.id})  # its repo is free at the next start, not a TTL later
            raise


def wait_for_redis(redis: Redis) -> None:
    """Return once Redis answers. Started beside it, the worker would otherwise die on "Redis is loading the
    dataset in memory" (or a refused connection), and every such death counts towards MECODES_RESTART_LIMIT."""
    started = time.monotonic()
    while True:
        try:
            redis.ping()
            return
        except RedisConnectionError as exc:  # BusyLoadingError is one
            if time.monotonic() - started > REDIS_START_WAIT:
                raise
            if time.monotonic() - started < 0.5:
                logging.info("waiting for Redis: %s", exc)
            time.sleep(0.5)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    settings = load_settings()
    redis = connect(settings, socket_timeout=None)  # the worker blocks on BLPOP
    wait_for_redis(redis)
    layout = Layout(settings.data_dir)
    layout.ensure()
    queue = Queue(settings.queue_name, connection=redis)
    recover(queue, layout, Git(settings))
    if settings.auto_continue:  # the chats a restart cut short carry on (domain.continuing)
        queue.enqueue("worker.jobs.continue_interrupted_chats", meta={"kind": "continue"}, description="continue")
    if periodic_jobs(settings):
        spawn_scheduler(settings)
    MecodesWorker([queue], connection=redis).work(logging_level="INFO")


if __name__ == "__main__":
    main()
