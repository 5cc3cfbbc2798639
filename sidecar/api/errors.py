"""Turning refused input into 4xx JSON errors that name the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from flask_smorest import abort

from domain.gitcmd import Git
from domain.inventory import work_state
from domain.names import InvalidName

T = TypeVar("T")


def invalid(location: str, field: str, message: str) -> NoReturn:
    abort(422, message=f"invalid {field}: {message}", errors={location: {field: [message]}})


def parse_path(field: str, parser: Callable[[str], T], value: str) -> T:
    try:
        return parser(value)
    except InvalidName as exc:
        invalid("path", field, str(exc))


def refuse_if_holding_work(git: Git, worktree: Path, what: str) -> None:
    """409, naming the work, when the worktree holds uncommitted changes or commits on no remote branch."""
    state = work_state(git, worktree)
    if state.holds_work:
        abort(
            409,
            message=f"{what} holds {state.describe()}; push it or use force=true",
            errors={"dirty": state.dirty, "unpushed_commits": state.unpushed_commits},
        )
