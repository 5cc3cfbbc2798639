"""One Web Push to one device, with pywebpush: the payload encrypted for the device (RFC 8291, aes128gcm) and signed
with the stack's VAPID key (RFC 8292: `sub` is MECODES_PUSH_CONTACT, `aud` the endpoint's origin, which pywebpush
derives, `exp` 12 hours on), and the push service's answer read as sent, gone, transient or failed."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import time
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush

from domain.notifications import ChatEvent
from domain.push_devices import Device
from domain.redaction import redact
from domain.retries import Attempt

TIMEOUT_SECONDS = 10
GONE = {404, 410}  # the subscription expired or the person unsubscribed: the device is removed
REASON_MAX = 200


def signer(private_pem: bytes) -> Vapid02:
    return Vapid02(private_key=load_pem_private_key(private_pem, password=None))


def topic(event: ChatEvent) -> str:
    """RFC 8030's Topic (at most 32 base64url characters): a push service still holding an undelivered message of
    the same chat replaces it with this one."""
    return base64.urlsafe_b64encode(hashlib.sha256(event.tag.encode()).digest()).decode()[:32]


class PushTarget:
    target = "device"

    def __init__(self, device: Device, event: ChatEvent, vapid: Vapid02, contact: str, session: requests.Session):
        self.device = device
        self.id = device.id
        self.name = device.name
        self.event = event
        self.vapid = vapid
        self.contact = contact
        self.session = session
        self.data = json.dumps(event.payload())

    def send(self) -> Attempt:
        try:
            response = webpush(
                self.device.subscription(),
                data=self.data,
                vapid_private_key=self.vapid,
                vapid_claims={"sub": self.contact},  # a new dict each time: pywebpush adds `aud` and `exp` to it
                ttl=self.event.ttl,
                headers={"Urgency": self.event.urgency, "Topic": topic(self.event)},
                timeout=TIMEOUT_SECONDS,
                requests_session=self.session,
            )
        except WebPushException as exc:
            return self._refused(exc)
        except requests.RequestException as exc:
            return Attempt("retry", reason=self.scrub(f"could not reach the push service: {exc}"))
        return Attempt("sent", status=response.status_code)

    def _refused(self, exc: WebPushException) -> Attempt:
        status = exc.status_code
        if status is None:
            return Attempt("failed", reason=self.scrub(exc.message))
        said = " ".join((getattr(exc.response, "text", "") or "").split())[:REASON_MAX]
        reason = self.scrub(f"the push service answered {status}" + (f": {said}" if said else ""))
        if status in GONE:
            return Attempt("gone", status=status, reason=reason)
        if status == 429 or status >= 500:
            return Attempt("retry", status=status, reason=reason, retry_after=retry_after(exc.retry_after))
        return Attempt("failed", status=status, reason=reason)

    def scrub(self, text: str) -> str:
        """The endpoint is a capability (whoever has it can push to the phone): never in a reason."""
        endpoint = self.device.endpoint
        path = urlsplit(endpoint).path
        return redact(text, (endpoint, path if len(path) > 1 else ""))


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
