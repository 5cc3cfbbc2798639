"""What notifies, and what was sent: a chat's event, the push payload it becomes, and the record of the last
notifications sent (Redis), for the Resources screen.

The watcher enqueues `worker.jobs.notify` once per event; domain.delivery sends it to every device and channel.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from redis import Redis

KINDS = ("finished", "failed", "interrupted", "needs-input")  # what a device may choose to be told about
TEST = "test"  # "send me a test notification": to the device(s) asked, whatever they chose
TITLE_MAX, BODY_MAX = 100, 240  # a push message holds about 4 KB once encrypted: keep well inside it
LOG_KEY = "mecodes:notifications:sent"  # list of JSON entries, newest first
LOG_SIZE = 100
CLAIM_KEY = "mecodes:notifications:claimed:"  # + event key: set once the event is being sent
CLAIM_TTL = 7 * 86400
# Urgency (RFC 8030): how hard the push service tries to wake a sleeping phone. A question waits on the person.
URGENCY = {"needs-input": "high", TEST: "high"}
TTL_SECONDS = {TEST: 600}  # how long the push service keeps a message for an unreachable phone
DEFAULT_TTL = 12 * 3600


class InvalidEvent(ValueError):
    pass


@dataclass(frozen=True)
class ChatEvent:
    kind: str  # one of KINDS, or TEST
    session_id: str | None
    title: str
    body: str  # one line
    url: str  # "/#/chat/<session_id>"
    key: str  # unique per event, for exactly-once

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChatEvent:
        names = [f.name for f in fields(cls)]
        event = cls(**{name: data.get(name) for name in names})
        if event.kind not in (*KINDS, TEST):
            raise InvalidEvent(f"unknown event kind {event.kind!r}; one of {', '.join((*KINDS, TEST))}")
        if not all(isinstance(getattr(event, name), str) for name in names if name != "session_id"):
            raise InvalidEvent("an event needs kind, title, body, url and key as text")
        return event

    @property
    def tag(self) -> str:
        """A newer notification of the same chat replaces the older one on the phone."""
        return "mecodes-test" if self.kind == TEST else f"mecodes-{self.session_id}"

    @property
    def urgency(self) -> str:
        return URGENCY.get(self.kind, "normal")

    @property
    def ttl(self) -> int:
        return TTL_SECONDS.get(self.kind, DEFAULT_TTL)

    def payload(self) -> dict[str, Any]:
        """What the service worker receives and shows."""
        return {
            "kind": self.kind,
            "title": _clip(self.title, TITLE_MAX),
            "body": _clip(self.body, BODY_MAX),
            "url": self.url,
            "session_id": self.session_id,
            "tag": self.tag,
        }


def _clip(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def new_test_event() -> ChatEvent:
    return ChatEvent(
        kind=TEST,
        session_id=None,
        title="mecodes",
        body="Test notification: this device will be told when a chat finishes, fails or needs you.",
        url="/#/chats",
        key=f"test-{uuid.uuid4().hex}",
    )


@dataclass(frozen=True)
class Outcome:
    """How sending to one target went. `outcome`: sent, gone (the push service forgot the device, which was then
    removed) or failed (with the reason, after `attempts` tries)."""

    target: str  # device | channel
    id: str | None  # the device's id; None for a channel
    name: str  # the device's name, or the channel's URL with its secrets masked
    outcome: str
    status: int | None = None  # the push service's HTTP status, when it answered
    reason: str | None = None
    attempts: int = 1


def scheme_only(url: str) -> str:
    """A channel's URL shown without anything that may be a secret (Telegram's token is its host, say)."""
    return f"{url.split('://', 1)[0]}://…" if "://" in url else "no scheme://"


def claim(redis: Redis, event: ChatEvent) -> bool:
    """True the first time `event` is sent: an event enqueued twice still reaches a phone once."""
    return bool(redis.set(f"{CLAIM_KEY}{event.key}", time.time(), nx=True, ex=CLAIM_TTL))


def record(redis: Redis, event: ChatEvent, outcomes: list[Outcome], job_id: str | None) -> dict[str, Any]:
    entry = {
        "at": time.time(),
        "key": event.key,
        "kind": event.kind,
        "session_id": event.session_id,
        "title": event.title,
        "body": event.body,
        "job_id": job_id,
        "targets": [asdict(outcome) for outcome in outcomes],
    }
    with redis.pipeline() as pipe:
        pipe.lpush(LOG_KEY, json.dumps(entry)).ltrim(LOG_KEY, 0, LOG_SIZE - 1).execute()
    return entry


def recent(redis: Redis, limit: int = LOG_SIZE) -> list[dict[str, Any]]:
    """The last notifications sent, newest first."""
    return [json.loads(raw) for raw in redis.lrange(LOG_KEY, 0, limit - 1)]
