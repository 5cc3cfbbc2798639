"""The git runner: progress parsing, timeouts, no prompts, refused transports."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from domain.config import Settings
from domain.gitcmd import Git, GitError, ProgressThrottle, _progress_lines


def test_progress_lines_split_on_carriage_returns() -> None:
    stream = io.BufferedReader(io.BytesIO(b"Receiving objects:  10% (1/10)\rReceiving objects: 100% (10/10), done.\n"))
    assert list(_progress_lines(stream)) == ["Receiving objects:  10% (1/10)", "Receiving objects: 100% (10/10), done."]


def test_throttle_keeps_phase_changes_and_completion() -> None:
    seen: list[tuple[str, int]] = []
    throttle = ProgressThrottle(lambda phase, pct: seen.append((phase, pct)), interval=3600)
    for pct in range(0, 101):
        throttle("Receiving objects", pct)
    throttle("Resolving deltas", 5)
    assert seen == [("Receiving objects", 0), ("Receiving objects", 100), ("Resolving deltas", 5)]


def test_clone_reports_progress(settings: Settings, origin, tmp_path: Path) -> None:
    origin.create("progress/repo", files=200)
    seen: list[tuple[str, int]] = []
    Git(settings).run_with_progress(
        ["clone", "--bare", "--progress", "--", f"{origin.base_url}progress/repo.git", str(tmp_path / "r")],
        lambda phase, pct: seen.append((phase, pct)),
    )
    assert ("Receiving objects", 100) in seen


def test_timeout_kills_git(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(GitError, match=r"timed out after 0\.5s"):
        Git(replace(settings, clone_timeout=1)).run_with_progress(
            ["-c", "alias.wait=!sleep 30", "wait"], lambda *_: None, cwd=tmp_path, timeout=0.5
        )


def test_ext_transport_is_refused(settings: Settings, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(GitError):
        Git(settings).run(["clone", f"ext::sh -c touch% {marker}", str(tmp_path / "x")])
    assert not marker.exists()
