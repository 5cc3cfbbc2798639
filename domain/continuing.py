"""Carrying on interrupted turns: when the person taps Continue, and, with MECODES_AUTO_CONTINUE, by themselves
after a restart.

A chat carries on only while it reads `interrupted` (domain.agent_instances), so a second tap, on this device or
another, finds the agent already on it and is refused. By themselves, chats carry on at most once a day each, so
a turn that brings opencode down each time (out of memory, say) is not sent again and again; after that the person
decides.
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis

from domain.agent_instances import Instances
from domain.chats import wait_for_agent
from domain.interruptions import Restarts
from domain.inventory import all_worktrees
from domain.opencode import INTERRUPTED, Opencode
from domain.work import Work

CONTINUE_PROMPT = "Your last reply was interrupted before it finished ({why}). Keep going from where you stopped."
CONTINUING_KEY = "mecodes:continuing:"  # + session id: a Continue under way
TAKE_UP_SECONDS = 5.0  # at most, for opencode to record the Continue's message or turn the session busy
AUTO_CONTINUED_KEY = "mecodes:auto-continued:"  # + session id, for a day
ONCE_PER_SECONDS = 24 * 3600


class NotInterrupted(Exception):
    """The chat has nothing to continue: the agent is working, or its last turn is not interrupted."""


def continue_turn(opencode: Opencode, redis: Redis, restarts: Restarts, session: dict[str, Any]) -> dict[str, Any]:
    """Close the steps the interrupted turn left running as failed, then ask the agent to keep going, in the same
    session and with the same model."""
    session_id, directory = session["id"], session["directory"]
    if not redis.set(f"{CONTINUING_KEY}{session_id}", 1, nx=True, ex=30):
        raise NotInterrupted("this chat is being continued right now")
    try:
        agents = Instances(opencode, redis, restarts).look([session], outcomes_for={session_id})
        if session_id in agents.status:
            raise NotInterrupted("the agent is working on this chat; there is nothing to continue")
        outcome = agents.outcomes.get(session_id)
        if outcome is None or outcome.status != INTERRUPTED:
            raise NotInterrupted("the chat's last turn was not interrupted; send a message instead")
        reply = opencode.last_reply(session_id, directory)
        for step in reply.running_steps:
            opencode.fail_step(session_id, directory, step, f"interrupted: {outcome.message}")
        before = (opencode.last_message(session_id, directory).get("info") or {}).get("id")
        opencode.prompt(session_id, directory, CONTINUE_PROMPT.format(why=outcome.message), reply.model)
        _taken_up(opencode, session_id, directory, before)
        return {
            "session_id": session_id,
            "why": outcome.message,
            "closed_steps": [s.title for s in reply.running_steps],
        }
    finally:
        redis.delete(f"{CONTINUING_KEY}{session_id}")


def continue_interrupted(work: Work) -> dict[str, Any]:
    """The worker's job after a restart (MECODES_AUTO_CONTINUE): every interrupted chat carries on."""
    opencode = Opencode(work.settings.opencode_url)
    wait_for_agent(work, opencode)
    work.progress("looking for interrupted chats")
    worktrees = all_worktrees(work.layout, work.git, with_state=False)
    chats = {w.opencode_session for w in worktrees if w.exists and w.opencode_session}
    sessions = [s for s in opencode.sessions() if s["id"] in chats]
    restarts = Restarts.read(work.settings)
    agents = Instances(opencode, work.redis, restarts).look(sessions, outcomes_for=chats)
    continued, skipped = [], []
    for session in sessions:
        outcome = agents.outcomes.get(session["id"])
        if outcome is None or outcome.status != INTERRUPTED:
            continue
        if not work.redis.set(f"{AUTO_CONTINUED_KEY}{session['id']}", 1, nx=True, ex=ONCE_PER_SECONDS):
            skipped.append({"session_id": session["id"], "why": "already continued by itself today"})
            continue
        try:
            continue_turn(opencode, work.redis, restarts, session)
            continued.append(session["id"])
        except NotInterrupted as refused:
            skipped.append({"session_id": session["id"], "why": str(refused)})
    return {"continued": continued, "skipped": skipped}


def _taken_up(opencode: Opencode, session_id: str, directory: str, before: str | None) -> None:
    """Wait (TAKE_UP_SECONDS at most) until opencode has taken the Continue up: its message recorded or the session
    busy. opencode answers the prompt before it does either, and a second tap meanwhile would still read the turn
    interrupted and send it twice; the guard held until then refuses it."""
    deadline = time.monotonic() + TAKE_UP_SECONDS
    while time.monotonic() < deadline:
        if session_id in opencode.statuses(directory):
            return
        if (opencode.last_message(session_id, directory).get("info") or {}).get("id") != before:
            return
        time.sleep(0.05)
