"""Scrubbing secrets out of text before it reaches a log line, a job result, an error or a response."""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
MASK = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
