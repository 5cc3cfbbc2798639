"""Sending to several targets at once, each retried on its own after a transient failure (a 5xx, a 429, a lost
connection), with back-off: one slow or failing device never holds up the others' first try."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.notifications import Outcome

BACKOFF = (1.0, 4.0, 16.0)  # seconds before the 2nd, 3rd and 4th (last) try
RETRY_AFTER_MAX = 60.0  # a push service's Retry-After is honoured up to this


@dataclass(frozen=True)
class Attempt:
    outcome: str  # sent | gone | failed (for good) | retry (transient)
    status: int | None = None
    reason: str | None = None
    retry_after: float | None = None  # seconds, when the target said


class Target(Protocol):
    target: str
    id: str | None
    name: str

    def send(self) -> Attempt: ...


def send_all(
    targets: Sequence[Target], sleep: Callable[[float], None] = time.sleep, scrub: Callable[[str], str] = str
) -> list[Outcome]:
    """Each target's outcome, in order. An unexpected error in one target fails that target alone (its reason
    passed through `scrub`)."""
    tries = [0] * len(targets)
    due = [0.0] * len(targets)
    done: dict[int, Outcome] = {}
    while len(done) < len(targets):
        for i, target in enumerate(targets):
            if i in done or due[i] > time.monotonic():
                continue
            tries[i] += 1
            try:
                attempt = target.send()
            except Exception as exc:  # one target's surprise must not cost the others their message
                attempt = Attempt("failed", reason=scrub(f"{type(exc).__name__}: {exc}"))
            if attempt.outcome == "retry" and tries[i] <= len(BACKOFF):
                wait = BACKOFF[tries[i] - 1] if attempt.retry_after is None else attempt.retry_after
                due[i] = time.monotonic() + min(max(wait, 0.0), RETRY_AFTER_MAX)
                continue
            outcome = "failed" if attempt.outcome == "retry" else attempt.outcome
            done[i] = Outcome(target.target, target.id, target.name, outcome, attempt.status, attempt.reason, tries[i])
        waiting = [due[i] for i in range(len(targets)) if i not in done]
        if waiting:
            sleep(max(0.0, min(waiting) - time.monotonic()))
    return [done[i] for i in range(len(targets))]
