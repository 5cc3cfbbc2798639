"""Notifications: the VAPID public key, the devices registered for Web Push, a test notification, and the last
notifications sent. Sending runs in the worker (worker.jobs.notify), never in a request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from flask_smorest.error_handler import ErrorSchema

from domain import notifications, vapid
from domain.push_devices import (
    MAX_DEVICES,
    Device,
    Devices,
    InvalidSubscription,
    TooManyDevices,
    parse_events,
    parse_subscription,
)
from sidecar.api.errors import invalid
from sidecar.api.jobs import job_view
from sidecar.notification_schemas import (
    DeviceListSchema,
    DeviceSchema,
    DeviceUpdate,
    NotificationListSchema,
    PublicKeySchema,
    SendTestRequest,
    SubscribeRequest,
)
from sidecar.schemas import JobSchema
from sidecar.services import Services, services

blp = Blueprint(
    "notifications", __name__, url_prefix="/admin/notifications", description="Push notifications and other channels"
)


def _devices(svc: Services) -> Devices:
    return Devices(svc.settings.notify_dir)


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _view(device: Device) -> dict[str, Any]:
    view = device.view()
    return {**view, "created_at": _time(view["created_at"]), "updated_at": _time(view["updated_at"])}


def _events(raw: list[str] | None) -> tuple[str, ...] | None:
    return None if raw is None else parse_events(raw)


@blp.route("/key")
class PublicKey(MethodView):
    @blp.response(200, PublicKeySchema)
    @blp.alt_response(503, schema=ErrorSchema, description="the key file cannot be read")
    def get(self) -> dict[str, str]:
        """The stack's VAPID public key, for `PushManager.subscribe({applicationServerKey})`. Made once and kept on
        the volume (MECODES_NOTIFY_DIR); the private key never leaves it."""
        try:
            return {"public_key": vapid.public_key(services().settings.notify_dir)}
        except vapid.VapidKeyError as exc:
            abort(503, message=str(exc))


@blp.route("/subscriptions")
class Subscriptions(MethodView):
    @blp.response(200, DeviceListSchema)
    def get(self) -> dict[str, Any]:
        """The devices registered for Web Push, oldest first."""
        return {"subscriptions": [_view(d) for d in _devices(services()).all()], "max_devices": MAX_DEVICES}

    @blp.arguments(SubscribeRequest)
    @blp.response(201, DeviceSchema)
    @blp.alt_response(200, schema=DeviceSchema, description="this endpoint was registered already: updated")
    @blp.alt_response(409, schema=ErrorSchema, description=f"{MAX_DEVICES} devices are registered already")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Register this browser's PushSubscription (or update it: the same endpoint is the same device)."""
        svc = services()
        try:
            subscription = parse_subscription(body["subscription"], svc.settings.push_loopback)
        except InvalidSubscription as exc:
            invalid("json", exc.field, str(exc))
        try:
            device, created = _devices(svc).register(subscription, body["name"], _events(body["events"]))
        except TooManyDevices as exc:
            abort(409, message=str(exc))
        return _view(device), 201 if created else 200


@blp.route("/subscriptions/<device_id>")
class Subscription(MethodView):
    @blp.arguments(DeviceUpdate)
    @blp.response(200, DeviceSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such device")
    def patch(self, body: dict[str, Any], device_id: str) -> dict[str, Any]:
        """Rename a device, or choose which events it is told about."""
        device = _devices(services()).update(device_id, body["name"], _events(body["events"]))
        if device is None:
            abort(404, message=f"no device {device_id}")
        return _view(device)

    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="no such device")
    def delete(self, device_id: str) -> None:
        """Forget a device: it is told nothing more."""
        if not _devices(services()).remove(device_id):
            abort(404, message=f"no device {device_id}")


@blp.route("/test")
class SendTest(MethodView):
    @blp.arguments(SendTestRequest)
    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such device")
    @blp.alt_response(409, schema=ErrorSchema, description="no device registered and no Apprise URL configured")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send a test notification, to one device or to every device and Apprise channel; the job's result says
        how each went."""
        svc = services()
        device_id = body["subscription_id"]
        if device_id is not None and _devices(svc).get(device_id) is None:
            abort(404, message=f"no device {device_id}")
        if device_id is None and not _devices(svc).all() and not svc.settings.notify_urls:
            abort(409, message="nothing to send to: no device is registered and MECODES_NOTIFY_URLS is empty")
        event = notifications.new_test_event()
        return job_view(svc.jobs.enqueue("notify", "worker.jobs.notify", event.as_dict(), device_id))


@blp.route("")
class Sent(MethodView):
    @blp.response(200, NotificationListSchema)
    def get(self) -> dict[str, Any]:
        """The last notifications sent (at most 100), newest first, each with how every device and channel fared."""
        svc = services()
        sent = [{**entry, "at": _time(entry["at"])} for entry in notifications.recent(svc.jobs.redis)]
        return {"notifications": sent, "channels": [notifications.scheme_only(u) for u in svc.settings.notify_urls]}
