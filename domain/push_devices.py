"""The devices that receive Web Push: one JSON file per device in `MECODES_NOTIFY_DIR/devices/` (the filesystem is
the source of truth), written atomically, readable only by the stack's user (an endpoint is a capability: whoever
holds it with the keys can push to the phone).

A device is the browser's PushSubscription (checked strictly here), a name, and the kinds of events it wants. Its id
is derived from its endpoint, so a browser that subscribes again updates its device instead of adding one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from domain import private_files
from domain.notifications import KINDS

MAX_DEVICES = 20
ENDPOINT_MAX = 2048
NAME_MAX = 60
DEFAULT_NAME = "unnamed device"
ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
# P-256 (FIPS 186-4): y² = x³ - 3x + b over p. A point checked by hand keeps cryptography out of the sidecar.
_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


class InvalidSubscription(ValueError):
    """Refused input; `field` names it as the API does (`subscription.keys.p256dh`, `events`, ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class TooManyDevices(RuntimeError):
    pass


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    events: tuple[str, ...]
    endpoint: str
    p256dh: str
    auth: str
    created_at: float
    updated_at: float

    @property
    def endpoint_host(self) -> str:
        return urlsplit(self.endpoint).hostname or ""

    def subscription(self) -> dict[str, Any]:
        """As pywebpush takes it."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def view(self) -> dict[str, Any]:
        """What the API shows: never the endpoint (a capability) nor the keys."""
        return {
            "id": self.id,
            "name": self.name,
            "events": list(self.events),
            "endpoint_host": self.endpoint_host,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str


def parse_subscription(raw: Any, allow_loopback: bool) -> Subscription:
    """A PushSubscription's JSON (`toJSON()`: endpoint, expirationTime, keys.p256dh, keys.auth), checked."""
    if not isinstance(raw, Mapping):
        raise InvalidSubscription("subscription", "must be the browser's PushSubscription as JSON (an object)")
    endpoint = _endpoint(raw.get("endpoint"), allow_loopback)
    keys = raw.get("keys")
    if not isinstance(keys, Mapping):
        raise InvalidSubscription("subscription.keys", "missing: the subscription's p256dh and auth keys")
    p256dh = _base64url(keys.get("p256dh"), "subscription.keys.p256dh")
    if len(p256dh) != 65 or p256dh[0] != 4 or not _on_p256(p256dh):
        raise InvalidSubscription("subscription.keys.p256dh", "must be an uncompressed P-256 public key (65 bytes)")
    if len(_base64url(keys.get("auth"), "subscription.keys.auth")) != 16:
        raise InvalidSubscription("subscription.keys.auth", "must be the 16-byte authentication secret")
    return Subscription(endpoint, keys["p256dh"].rstrip("="), keys["auth"].rstrip("="))


def _endpoint(value: Any, allow_loopback: bool) -> str:
    field = "subscription.endpoint"
    if not isinstance(value, str) or not value:
        raise InvalidSubscription(field, "missing: the push service's URL")
    if len(value) > ENDPOINT_MAX:
        raise InvalidSubscription(field, f"too long ({len(value)} characters, at most {ENDPOINT_MAX})")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise InvalidSubscription(field, "is not a URL") from None
    if not parts.hostname or parts.username is not None or parts.fragment or not value.isprintable() or " " in value:
        raise InvalidSubscription(field, "must be an absolute URL with a host, without user, password or fragment")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and _loopback(parts.hostname):
        if allow_loopback:
            return value
        raise InvalidSubscription(field, "must be https (http to this machine only with MECODES_PUSH_LOOPBACK=on)")
    raise InvalidSubscription(field, "must be an https URL")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def _base64url(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise InvalidSubscription(field, "missing")
    if len(value) > 256 or not _BASE64URL.match(value):
        raise InvalidSubscription(field, "must be base64url (A-Z a-z 0-9 - _)")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise InvalidSubscription(field, "must be base64url (A-Z a-z 0-9 - _)") from None


def _on_p256(point: bytes) -> bool:
    x, y = int.from_bytes(point[1:33]), int.from_bytes(point[33:])
    return x < _P and y < _P and (y * y - (x * x * x - 3 * x + _B)) % _P == 0


def parse_events(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(kind, str) for kind in raw):
        raise InvalidSubscription("events", f"must be a list of: {', '.join(KINDS)}")
    unknown = [kind for kind in raw if kind not in KINDS]
    if unknown:
        raise InvalidSubscription("events", f"unknown {', '.join(unknown)}; choose among {', '.join(KINDS)}")
    return tuple(kind for kind in KINDS if kind in raw)


def parse_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > NAME_MAX or not raw.isprintable():
        raise InvalidSubscription("name", f"must be 1 to {NAME_MAX} printable characters")
    return raw.strip()


def device_id(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()[:24]


class Devices:
    """The registered devices. Writes hold a lock on the folder, so the limit holds with requests and jobs at once."""

    def __init__(self, notify_dir: Path):
        self.folder = notify_dir / "devices"

    def all(self) -> list[Device]:
        found = (self._read(path) for path in sorted(self.folder.glob("*.json")))
        return sorted((d for d in found if d is not None), key=lambda d: d.created_at)

    def get(self, device_id: str) -> Device | None:
        return self._read(self._path(device_id)) if ID_PATTERN.match(device_id) else None

    def register(
        self, subscription: Subscription, name: str | None, events: tuple[str, ...] | None
    ) -> tuple[Device, bool]:
        """The device of this endpoint, made or updated (its keys too: a browser may renew them). Returns (device,
        created)."""
        ident = device_id(subscription.endpoint)
        with self._locked():
            known = self.get(ident)
            if known is None and len(self.all()) >= MAX_DEVICES:
                raise TooManyDevices(f"{MAX_DEVICES} devices are registered already, the most; remove one first")
            now = time.time()
            device = Device(
                id=ident,
                name=name or (known.name if known else DEFAULT_NAME),
                events=events if events is not None else (known.events if known else KINDS),
                endpoint=subscription.endpoint,
                p256dh=subscription.p256dh,
                auth=subscription.auth,
                created_at=known.created_at if known else now,
                updated_at=now,
            )
            self._write(device)
        return device, known is None

    def update(self, device_id: str, name: str | None, events: tuple[str, ...] | None) -> Device | None:
        with self._locked():
            known = self.get(device_id)
            if known is None:
                return None
            device = replace(
                known,
                name=name if name is not None else known.name,
                events=events if events is not None else known.events,
                updated_at=time.time(),
            )
            self._write(device)
        return device

    def remove(self, device_id: str) -> bool:
        if not ID_PATTERN.match(device_id):
            return False
        with self._locked():
            try:
                self._path(device_id).unlink()
            except FileNotFoundError:
                return False
        return True

    def _path(self, device_id: str) -> Path:
        return self.folder / f"{device_id}.json"

    def _read(self, path: Path) -> Device | None:
        """None for a file gone meanwhile or not a device (a hand edit): it is skipped, never fatal."""
        try:
            data = json.loads(path.read_text())
            return Device(**{**data, "events": tuple(data["events"])})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _write(self, device: Device) -> None:
        private_files.write(self._path(device.id), json.dumps(asdict(device)) + "\n")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        private_files.ensure_folder(self.folder)
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
