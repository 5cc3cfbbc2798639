"""Sending one event: to every registered device whose settings want its kind (a test: to the device asked, or all)
and to every Apprise channel, each retried on its own; devices the push service says are gone are removed; what
happened is recorded for the Resources screen.

The worker imports this module at start, so pywebpush (about 19 MB PSS, 0.4-1 s to import) is loaded once and a
push goes out within milliseconds of its job starting. Apprise (about 12 MB with its plugins, 0.4-0.6 s) is loaded
only in the job's own process and only when MECODES_NOTIFY_URLS is set, on a thread of its own: the pushes never
wait for it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from redis import Redis

from domain import notifications, vapid
from domain.config import Settings
from domain.notifications import TEST, ChatEvent, Outcome
from domain.push_devices import Device, Devices
from domain.redaction import redact
from domain.retries import send_all
from domain.web_push import PushTarget, signer


def deliver(
    settings: Settings, redis: Redis, event: ChatEvent, device_id: str | None, job_id: str | None
) -> dict[str, Any]:
    """The record of what was sent; `skipped` when this event was sent before (enqueued twice)."""
    if not notifications.claim(redis, event):
        return {"key": event.key, "skipped": "this event was sent already"}
    devices = Devices(settings.notify_dir)
    chosen = [d for d in devices.all() if _wants(d, event, device_id)]
    with ThreadPoolExecutor(2) as pool:
        channels = pool.submit(_to_channels, settings, event) if device_id is None and settings.notify_urls else None
        outcomes = _to_devices(settings, event, chosen) + (channels.result() if channels else [])
    for outcome in outcomes:
        if outcome.outcome == "gone" and outcome.id:
            devices.remove(outcome.id)
    return notifications.record(redis, event, outcomes, job_id)


def _wants(device: Device, event: ChatEvent, device_id: str | None) -> bool:
    if device_id is not None:
        return device.id == device_id
    return event.kind == TEST or event.kind in device.events


def _to_devices(settings: Settings, event: ChatEvent, devices: list[Device]) -> list[Outcome]:
    if not devices:
        return []
    key = signer(vapid.private_pem(settings.notify_dir))
    with requests.Session() as session:
        targets = [PushTarget(device, event, key, settings.push_contact, session) for device in devices]
        return send_all(targets, scrub=lambda text: redact(text, settings.secrets))


def _to_channels(settings: Settings, event: ChatEvent) -> list[Outcome]:
    from domain.channels import ChannelTarget  # Apprise: see the module's docstring

    targets = [ChannelTarget(url, event, settings.public_url, settings.secrets) for url in settings.notify_urls]
    return send_all(targets, scrub=lambda text: redact(text, settings.secrets))
