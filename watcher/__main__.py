"""`python -m watcher`: follow opencode's `GET /global/event` and tell what happens to chats (domain/chat_watch.py),
each event as one `worker.jobs.notify` job. On every (re)connect it first reads again what may have changed
meanwhile. A lost stream, opencode or Redis down: it connects again after a back-off (FIRST_DELAY, doubling up to
MAX_DELAY; back to FIRST_DELAY once connected).

A process of its own, with no web framework, rather than a thread of the worker (whose jobs it would wait behind) or
of the sidecar (one per gunicorn worker): about 25 MB PSS (the README's "Notifications").
"""

from __future__ import annotations

import http.client
import logging
import queue
import time
import uuid
from collections.abc import Callable

from redis.exceptions import RedisError
from rq import Queue

from domain.chat_watch import MARK_EVERY, ChatWatch
from domain.config import Settings, load_settings
from domain.notifications import ChatEvent
from domain.opencode import Opencode, OpencodeError, OpencodeUnavailable
from domain.redis_client import connect
from watcher.stream import ENDED, EventStream, StreamError

FIRST_DELAY, MAX_DELAY = 0.25, 5.0
NOTIFY_JOB = "worker.jobs.notify"
log = logging.getLogger("watcher")


def enqueuer(jobs: Queue, settings: Settings) -> Callable[[ChatEvent], None]:
    """Send an event: one notify job, listed with the others (kind `notify`)."""

    def send(event: ChatEvent) -> None:
        jobs.enqueue(
            NOTIFY_JOB,
            event.as_dict(),
            job_id=uuid.uuid4().hex,
            meta={"kind": "notify"},
            description=f"notify {event.kind} {event.session_id}",
            result_ttl=settings.job_result_ttl,
            failure_ttl=settings.job_failure_ttl,
        )

    return send


def serve(stream: EventStream, watch: ChatWatch) -> None:
    """Act on the stream's events, and on the turns due to be read, until the stream ends."""
    while True:
        due = watch.next_due()
        wait = MARK_EVERY if due is None else min(max(due - time.time(), 0), MARK_EVERY)
        try:
            event = stream.events.get(timeout=wait)
            if event is ENDED:
                return
            watch.handle(event)
        except queue.Empty:
            pass
        watch.run_due()
        if stream.events.empty():
            watch.keep_mark()


def follow(url: str, watch: ChatWatch) -> None:
    delay = FIRST_DELAY
    while True:
        stream = EventStream(url)
        try:
            stream.open()
            watch.reconcile()
            log.info("following %s", url)
            delay = FIRST_DELAY
            serve(stream, watch)
            log.warning("the event stream ended; connecting again")
        except (OSError, StreamError, http.client.HTTPException, OpencodeUnavailable, OpencodeError, RedisError) as exc:
            log.warning("%s; trying again in %.2g s", exc, delay)
        finally:
            stream.close()
        time.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watcher %(levelname)s %(message)s")
    settings = load_settings()
    redis = connect(settings)
    watch = ChatWatch(
        Opencode(settings.opencode_url),
        redis,
        settings,
        enqueuer(Queue(settings.queue_name, connection=redis), settings),
    )
    follow(f"{settings.opencode_url}/global/event", watch)


if __name__ == "__main__":
    main()
