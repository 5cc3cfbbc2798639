"""Request and response schemas of the notifications API (sidecar/api/notifications.py)."""

from __future__ import annotations

from marshmallow import fields, validate

from domain.notifications import KINDS
from domain.push_devices import ID_PATTERN, InvalidSubscription, parse_name
from sidecar.schemas import StrictSchema, checked_by

EVENTS_DESCRIPTION = f"the events this device is told about, among {', '.join(KINDS)} (default: all)"


def name_field() -> fields.String:
    return fields.String(
        load_default=None,
        validate=checked_by(parse_name, InvalidSubscription),
        metadata={"description": "the device's label"},
    )


def events_field() -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf(KINDS)),
        load_default=None,
        metadata={"description": EVENTS_DESCRIPTION, "example": list(KINDS)},
    )


class SubscribeRequest(StrictSchema):
    subscription = fields.Dict(
        required=True,
        metadata={
            "description": "the browser's PushSubscription.toJSON(): an https `endpoint` (at most 2,048 characters),"
            " `expirationTime`, and `keys`: `p256dh` (base64url, a 65-byte uncompressed P-256 key) and `auth`"
            " (base64url, 16 bytes). 422 names the field refused (`subscription.keys.p256dh`, ...)",
            "example": {
                "endpoint": "https://fcm.googleapis.com/fcm/send/abc123",
                "expirationTime": None,
                "keys": {"p256dh": "BN...", "auth": "tBHI..."},
            },
        },
    )
    name = name_field()
    events = events_field()


class DeviceUpdate(StrictSchema):
    name = name_field()
    events = events_field()


class SendTestRequest(StrictSchema):
    subscription_id = fields.String(
        load_default=None,
        validate=validate.Regexp(ID_PATTERN, error="must be a device's id"),
        metadata={"description": "the device to send it to (default: every device, and the Apprise channels)"},
    )


class PublicKeySchema(StrictSchema):
    public_key = fields.String(
        metadata={"description": "base64url of the uncompressed P-256 point: subscribe()'s applicationServerKey"}
    )


class DeviceSchema(StrictSchema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    events = fields.List(fields.String(), metadata={"description": EVENTS_DESCRIPTION})
    endpoint_host = fields.String(metadata={"description": "the push service (the endpoint itself is never shown)"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class DeviceListSchema(StrictSchema):
    subscriptions = fields.List(fields.Nested(DeviceSchema))
    max_devices = fields.Integer()


class OutcomeSchema(StrictSchema):
    target = fields.String(metadata={"description": "device or channel"})
    id = fields.String(allow_none=True, metadata={"description": "the device's id"})
    name = fields.String(metadata={"description": "the device's name, or the channel's URL with its secrets masked"})
    outcome = fields.String(metadata={"description": "sent, gone (the push service forgot it: removed) or failed"})
    status = fields.Integer(allow_none=True, metadata={"description": "the push service's last HTTP status"})
    reason = fields.String(allow_none=True)
    attempts = fields.Integer()


class NotificationSchema(StrictSchema):
    at = fields.DateTime()
    key = fields.String()
    kind = fields.String()
    session_id = fields.String(allow_none=True)
    title = fields.String()
    body = fields.String()
    job_id = fields.String(allow_none=True)
    targets = fields.List(fields.Nested(OutcomeSchema))


class NotificationListSchema(StrictSchema):
    notifications = fields.List(fields.Nested(NotificationSchema), metadata={"description": "newest first"})
    channels = fields.List(fields.String(), metadata={"description": "MECODES_NOTIFY_URLS, by scheme only"})
