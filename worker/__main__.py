"""`python -m worker`: recover from a previous crash, then serve the queue with one forking RQ worker."""

from __future__ import annotations

import logging

from rq import Queue, Worker
from rq.job import JobStatus

from sidecar.config import load_settings
from sidecar.gitcmd import Git
from sidecar.jobqueue import connect
from sidecar.layout import Layout
from sidecar.lifetime import die_with_parent
from worker.cron import periodic_jobs, spawn_scheduler
from worker.recovery import recover

STOPPED = "the stack shut down while this job ran, so it was stopped; send the request again"


class MecodesWorker(Worker):
    """A forking worker whose work horse dies with it, so a killed worker leaves no job running unseen, and
    whose cold shutdown (a second SIGTERM) ends the job in progress `failed` at once."""

    def main_work_horse(self, job, queue):
        die_with_parent()
        return super().main_work_horse(job, queue)

    def heartbeat(self, timeout=None, pipeline=None):
        """Register again when Redis has lost our key (a restarted Redis keeps nothing), so health sees us."""
        if pipeline is None and not self.connection.hexists(self.key, "birth"):
            self.log.warning("worker %s: Redis lost this worker's registration; registering again", self.name)
            self.connection.delete(self.key)  # fields written since the restart, without pid or birth
            self.register_birth()
        super().heartbeat(timeout, pipeline)

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
            raise


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    settings = load_settings()
    redis = connect(settings, socket_timeout=None)  # the worker blocks on BLPOP
    layout = Layout(settings.data_dir)
    layout.ensure()
    queue = Queue(settings.queue_name, connection=redis)
    recover(queue, layout, Git(settings))
    if periodic_jobs(settings):
        spawn_scheduler(settings)
    MecodesWorker([queue], connection=redis).work(logging_level="INFO")


if __name__ == "__main__":
    main()
