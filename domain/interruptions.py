"""Turns that ended without finishing, and why, as far as can be known.

A turn is interrupted when its session is idle while no reply finished it: the stack stopped (a deploy), opencode
died (the OOM killer) or was restarted while the agent answered. opencode leaves such a turn as it was, an
unfinished reply (perhaps with a tool step `running` forever), and never says so itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from domain import procman
from domain.config import Settings
from domain.opencode import LastReply


def _started(pid: int | None) -> float | None:
    try:
        return psutil.Process(pid).create_time() if pid else None
    except psutil.Error:
        return None


@dataclass(frozen=True)
class Restarts:
    """When the stack and opencode last started, and how opencode last ended (as procman says)."""

    stack_started: float | None = None
    agent_started: float | None = None
    agent_last_exit: str | None = None

    @classmethod
    def read(cls, settings: Settings) -> Restarts:
        agent = procman.services(settings.run_dir).get(procman.AGENT) or {}
        return cls(_started(settings.stack_pid), _started(procman.running_pid(agent)), agent.get("last_exit"))

    def cut_short(self, reply: LastReply) -> bool:
        """Whether opencode started after the unfinished turn was last active: then it can never finish."""
        return bool(
            reply.pending and reply.last_active and self.agent_started and self.agent_started > reply.last_active
        )

    def why(self, reply: LastReply) -> str:
        """A sentence on why the turn stopped, as far as is known."""
        active = reply.last_active or time.time()
        if self.stack_started and self.stack_started > active:
            cause = "the stack was restarted while the agent was answering (a deploy, a crash or a machine restart)"
        elif self.agent_started and self.agent_started > active:
            how = f" ({self.agent_last_exit})" if self.agent_last_exit else ""
            cause = f"opencode stopped while the agent was answering{how} and was started again"
        else:
            cause = "the agent stopped before finishing its reply"
        if reply.running_steps:
            cause += f"; the step “{reply.running_steps[0].title}” was left running"
        return cause
