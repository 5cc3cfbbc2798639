"""What bin/procman says about the stack's services, and asking it to restart one.

procman writes `services.json` to MECODES_RUN_DIR whenever a service starts or exits: each service's pid, its
state (running, or restarting after it exited), how often it was restarted and how it last ended. It restarts
the services named in `procman.restart` there when it gets SIGUSR1.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

STATUS_FILE = "services.json"
RESTART_FILE = "procman.restart"
RUNNING, RESTARTING = "running", "restarting"
AGENT = "opencode"  # the Procfile's name for opencode


def services(run_dir: Path | None) -> dict[str, dict[str, Any]]:
    """Service name → {pid, state, restarts, last_exit, due_in}; empty when no procman runs the stack."""
    if run_dir is None:
        return {}
    try:
        status = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    found = status.get("services") if isinstance(status, dict) else None
    return found if isinstance(found, dict) else {}


def running_pid(service: dict[str, Any]) -> int | None:
    """The pid of a service procman reports running; None while it is down or restarting."""
    return service.get("pid") if service.get("state") == RUNNING else None


def problems(found: dict[str, dict[str, Any]]) -> list[str]:
    """A sentence for each service procman is restarting."""
    return [
        f"{name}: restarting after it {service.get('last_exit') or 'exited'}"
        f" (restart {service.get('restarts')}, next try in {service.get('due_in')} s)"
        for name, service in found.items()
        if service.get("state") == RESTARTING
    ]


def request_restart(run_dir: Path | None, stack_pid: int | None, name: str) -> bool:
    """Ask procman to restart `name` now (not counted as a failure). False when no procman runs the stack."""
    if run_dir is None or stack_pid is None or name not in services(run_dir):
        return False
    with (run_dir / RESTART_FILE).open("a") as request:
        request.write(f"{name}\n")
    try:
        os.kill(stack_pid, signal.SIGUSR1)
    except OSError:
        return False
    return True
