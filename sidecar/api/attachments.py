"""Images in a request body: a larger body allowed where they are taken, and refused ones answered 413/415/422."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_smorest import abort

from domain.attachments import AttachmentRefused, body_limit, file_parts, max_bytes
from sidecar.api.errors import json_body_schema
from sidecar.services import services

FIELD = "attachments"


def allow_image_bodies() -> None:
    """Before each request: an endpoint that takes images takes a body to fit them (the others stay at 64 KiB)."""
    schema = json_body_schema()
    if schema is not None and FIELD in schema.fields:
        request.max_content_length = body_limit(services().settings)


def checked_parts(attachments: list[dict[str, str]]) -> list[dict[str, Any]]:
    """opencode's file parts for the request's images; else 413, 415 or 422 naming the attachment's field."""
    try:
        return file_parts(attachments, max_bytes(services().settings))
    except AttachmentRefused as refused:
        where: Any = [str(refused)]
        if refused.field is not None:
            where = {str(refused.index): {refused.field: where}}
        abort(refused.status, message=f"{FIELD}: {refused}", errors={"json": {FIELD: where}})
