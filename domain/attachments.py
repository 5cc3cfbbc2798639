"""Images sent with a message: checked (an image of a kind models take, well-formed base64, within the size limit),
then made into opencode's file parts (`{type: file, mime, filename, url: data:...}`).

A new chat's images wait in Redis (not in its job, whose data stays for a day) until its job sends the first prompt.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from redis import Redis

from domain.config import Settings

# The image types taken, and how their files begin: (offset, bytes). opencode decodes each image itself, and a
# message whose image it cannot read is dropped without a word, so what is not what it says is refused here.
SIGNATURES = {
    "image/png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "image/jpeg": ((0, b"\xff\xd8\xff"),),
    "image/webp": ((0, b"RIFF"), (8, b"WEBP")),
}
MAX_IMAGES = 10
STASH_KEY = "mecodes:chat-images:"  # + the chat's label


def max_bytes(settings: Settings) -> int:
    """What the images of one message may come to, decoded."""
    return settings.attachments_max_mb * 1_000_000


def body_limit(settings: Settings) -> int:
    """The largest request body that can carry them: base64 takes a third more, plus room for the rest."""
    return max_bytes(settings) * 4 // 3 + 256 * 1024


class AttachmentRefused(ValueError):
    """An attachment that cannot go: `status` 413, 415 or 422; `index` and `field` name it in the request."""

    def __init__(self, status: int, index: int | None, field: str | None, message: str):
        super().__init__(message)
        self.status, self.index, self.field = status, index, field


def file_parts(attachments: Sequence[dict[str, str]], max_bytes: int) -> list[dict[str, str]]:
    """opencode's file parts for `[{filename, mime, data_base64}]`, or AttachmentRefused saying what is wrong."""
    if len(attachments) > MAX_IMAGES:
        raise AttachmentRefused(422, None, None, f"at most {MAX_IMAGES} images go with one message")
    parts, total = [], 0
    for index, attachment in enumerate(attachments):
        mime = attachment["mime"].strip().lower()
        if mime not in SIGNATURES:
            kinds = ", ".join(SIGNATURES)
            raise AttachmentRefused(415, index, "mime", f"{mime} is not an image type taken here ({kinds})")
        try:
            data = base64.b64decode(attachment["data_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise AttachmentRefused(422, index, "data_base64", "is not valid base64") from None
        if not all(data[at : at + len(magic)] == magic for at, magic in SIGNATURES[mime]):
            raise AttachmentRefused(415, index, "data_base64", f"is not a {mime} image (its first bytes say otherwise)")
        total += len(data)
        if total > max_bytes:
            message = f"the images come to more than {max_bytes // 1_000_000} MB (MECODES_ATTACHMENTS_MAX_MB)"
            raise AttachmentRefused(413, index, "data_base64", message)
        url = f"data:{mime};base64,{base64.b64encode(data).decode()}"  # canonical: no line breaks or padding quirks
        parts.append({"type": "file", "mime": mime, "filename": attachment["filename"], "url": url})
    return parts


def stash(redis: Redis, label: str, parts: list[dict[str, str]], ttl: int) -> None:
    if parts:
        redis.set(STASH_KEY + label, json.dumps(parts), ex=ttl)


def stashed(redis: Redis, label: str) -> list[dict[str, Any]] | None:
    """The parts stashed for the chat `label`, or None when they are gone (expired)."""
    raw = redis.get(STASH_KEY + label)
    return json.loads(raw) if raw is not None else None


def drop(redis: Redis, label: str) -> None:
    redis.delete(STASH_KEY + label)
