"""The other channels: Apprise URLs (`MECODES_NOTIFY_URLS`: ntfy, Telegram, Pushover, email, ...) get the same
events as the phones. Their URLs hold secrets (tokens, passwords): they are shown only as Apprise masks them."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import apprise

from domain.notifications import TEST, ChatEvent, scheme_only
from domain.redaction import redact
from domain.retries import Attempt

VARIABLE = "MECODES_NOTIFY_URLS"
HOW_TO = "https://github.com/caronc/apprise/wiki"
SAYS = {
    "finished": "finished",
    "failed": "failed",
    "interrupted": "interrupted",
    "needs-input": "needs you",
    TEST: "test",
}
NOTIFY_TYPE = {
    "finished": apprise.NotifyType.SUCCESS,
    "failed": apprise.NotifyType.FAILURE,
    "needs-input": apprise.NotifyType.WARNING,
}


def check(urls: Iterable[str]) -> None:
    """At start: every URL must be one Apprise can send to. The message names the variable and the URL's place and
    scheme, never the URL (it may hold a token)."""
    urls = list(urls)
    for number, url in enumerate(urls, 1):
        if apprise.Apprise.instantiate(url) is None:
            raise SystemExit(
                f"{VARIABLE}: URL {number} of {len(urls)} ({scheme_only(url)}) is not one Apprise can send to;"
                f" see {HOW_TO}"
            )


def label(url: str) -> str:
    """The URL with its secrets masked, as Apprise prints it, without its options."""
    plugin = apprise.Apprise.instantiate(url)
    return plugin.url(privacy=True).split("?", 1)[0] if plugin is not None else scheme_only(url)


class ChannelTarget:
    target = "channel"
    id = None

    def __init__(self, url: str, event: ChatEvent, public_url: str, secrets: tuple[str, ...]):
        self.url = url
        self.name = label(url)
        self.event = event
        self.link = f"{public_url}{event.url}" if public_url else ""
        self.secrets = secrets

    def send(self) -> Attempt:
        plugin = apprise.Apprise.instantiate(self.url)
        if plugin is None:
            return Attempt("failed", reason=f"not a URL Apprise can send to (see {HOW_TO})")
        body = "\n".join(part for part in (self.event.body, self.link) if part)
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as log:
            sent = plugin.notify(
                body=body,
                title=f"{self.event.title} ({SAYS[self.event.kind]})",
                notify_type=NOTIFY_TYPE.get(self.event.kind, apprise.NotifyType.INFO),
            )
        if sent:
            return Attempt("sent")
        said = "; ".join(line for line in log.getvalue().splitlines() if line.strip())
        return Attempt("retry", reason=redact(said or "Apprise could not send it", self.secrets))
