"""The container image, built from the real Dockerfile by scripts/test-image and run as Fly runs it
(tests/support/container.py): a volume at /vol, fly.toml's [env], the secrets, 1 GB of memory. Repos come from a
local git origin over HTTP behind the token, the model is the tests' stand-in (tests/support/fake_llm.py), named in
MECODES_OPENCODE_CONFIG as a person would name theirs. Not part of the suite (tests/conftest.py leaves this folder
out); scripts/test-image runs it, MECODES_IMAGE naming the image."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SECRET_TOKEN, Origin, wait_until
from tests.support.container import FLY, Container, docker, run_container
from tests.support.fake_llm import FakeLLM, opencode_config
from tests.support.githttp import GitHttpServer
from tests.test_memory import replies
from tests.test_stack import new_chat

IMAGE = os.environ.get("MECODES_IMAGE", "mecodes:test")
UID = 1000  # the Dockerfile's mecodes user
REPO = "phone/app"
PROMPT = "Hello from the image"


@pytest.fixture(scope="module")
def secrets(origin: Origin) -> Iterator[dict[str, str]]:
    """What `fly secrets set` would hold, pointing at a local origin and the stand-in model."""
    origin.create(REPO)
    with GitHttpServer(origin.root, auth=(FLY["env"]["GITHUB_USER"], SECRET_TOKEN)) as git, FakeLLM() as llm:
        yield {
            "GITHUB_TOKEN": SECRET_TOKEN,
            "MECODES_GIT_BASE_URL": git.base_url,
            "MECODES_OPENCODE_CONFIG": json.dumps(opencode_config(llm.url)),
        }


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fly") / "vol"


@pytest.fixture(scope="module")
def first(volume: Path, secrets: dict[str, str]) -> Iterator[Container]:
    container = run_container(IMAGE, volume, volume.parent / "first.log", secrets)
    print(
        f"\nimage: /admin/health 200 through Caddy {container.ready_after:.1f} s after docker run (empty volume), "
        f"{container.ready_cpu:.1f} CPU seconds"
    )
    yield container
    container.remove()


@pytest.fixture(scope="module")
def chat(first: Container) -> dict[str, Any]:
    """A chat made through the API, as the phone makes it, answered by the stand-in model."""
    made = new_chat(first, REPO, PROMPT)
    wait_until(lambda: f"Echo: {PROMPT}" in replies(first, made), 60, "the stand-in model's reply")
    return made


def test_the_start_fits_the_grace_fly_gives_it(first: Container) -> None:
    """Judged by the CPU time it takes, not the time it took on this shared machine: were the whole start to run on
    one core, /admin/health would still answer before Fly counts a failing check."""
    grace = FLY["http_service"]["checks"][0]["grace_period"]
    assert first.ready_cpu < int(grace.removesuffix("s")), f"{first.ready_cpu:.1f} CPU seconds, grace {grace}"


def test_health_answers_without_credentials_and_nothing_else_does(first: Container) -> None:
    status, body = first.request("GET", "/admin/health", auth=None)
    assert status == 200 and body["status"] == "ok", body
    for path in ("/admin/repos", "/", "/session"):
        assert first.request("GET", path, auth=None)[0] == 401, path


def test_the_image_is_at_most_500_mb() -> None:
    """On the local base as on python:3.11-slim-bookworm, about as large (README: "The container image")."""
    assert int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE)) <= 500e6


def test_the_image_holds_only_what_runs(first: Container) -> None:
    """One opencode binary behind npm's launcher path, and no node, npm, compiler, pip in the venv, apt lists or
    caches (the base's own pip is the base's)."""
    script = (
        "for tool in node npm gcc cc; do command -v $tool; done; ls /opt/mecodes/.venv/bin/pip*; "
        "ls /var/lib/apt/lists /var/cache/apt/archives | grep -v -x -e partial -e lock -e '' -e '.*:'; "
        "find / -xdev -name 'opencode*' -type f -size +1M; readlink -f /opt/mecodes/node_modules/.bin/opencode"
    )
    found = docker("exec", first.name, "bash", "-c", f"{script}; true").split()
    binary = "/opt/mecodes/node_modules/opencode-ai/bin/opencode.exe"
    assert found == [binary, binary], found
    # The one npm's launcher picks on this CPU, as it did for scripts/setup here (opencode-linux-x64 with AVX2).
    here = hashlib.sha256((ROOT / "node_modules/opencode-ai/bin/opencode.exe").read_bytes()).hexdigest()
    assert docker("exec", first.name, "sha256sum", binary).split()[0] == here


def test_the_stack_runs_as_mecodes_and_owns_the_volume(first: Container, volume: Path) -> None:
    assert docker("exec", first.name, "id", "-nu", str(UID)).strip() == "mecodes"
    assert first.init.uids().real == 0  # docker's init, as Fly's; bin/start dropped to mecodes below it
    processes = first.processes()
    assert {"redis-server", "opencode", "caddy", "gunicorn"} <= {p.name() for p in processes}
    assert sum("watcher" in p.cmdline() for p in processes) == 1  # python -m watcher
    assert all(p.uids()[:2] == (UID, UID) for p in processes), [(p.name(), p.uids()) for p in processes]
    for key in ("MECODES_DATA_DIR", "MECODES_OPENCODE_HOME", "MECODES_REDIS_DIR", "MECODES_NOTIFY_DIR"):
        assert (volume / FLY["env"][key].removeprefix("/vol/")).stat().st_uid == UID, key


def test_a_chat_through_the_api_clones_and_is_answered(first: Container, chat: dict[str, Any], volume: Path) -> None:
    worktree = volume / Path(chat["path"]).relative_to("/vol")
    assert chat["path"].startswith(FLY["env"]["MECODES_DATA_DIR"] + "/worktrees/") and worktree.is_dir()
    assert worktree.stat().st_uid == UID and (worktree / "file0.txt").read_text() == "content 0\n"
    status, listed = first.request("GET", f"/admin/chats/{chat['session_id']}")
    assert status == 200 and listed["repo"] == REPO and listed["branch"] == chat["branch"], listed


def test_it_stops_in_time_and_a_restart_keeps_repos_worktrees_and_sessions(
    first: Container, chat: dict[str, Any], volume: Path, secrets: dict[str, str]
) -> None:
    seconds, code = first.stop()
    print(f"image: docker stop took {seconds:.1f} s, exit code {code}")
    assert code == 0 and seconds < FLY["kill_timeout"], first.log.read_text()[-3000:]

    second = run_container(IMAGE, volume, volume.parent / "second.log", secrets)
    try:
        print(f"image: restarted on the same volume, /admin/health 200 after {second.ready_after:.1f} s")
        assert [r["repo"] for r in second.request("GET", "/admin/repos")[1]["repos"]] == [REPO]
        worktrees = second.request("GET", "/admin/worktrees")[1]["worktrees"]
        assert [(w["opencode_session_id"], w["path"]) for w in worktrees] == [(chat["session_id"], chat["path"])]
        status, listed = second.request("GET", f"/admin/chats/{chat['session_id']}")
        assert status == 200 and listed["status"] == "idle", listed
        assert f"Echo: {PROMPT}" in replies(second, chat)
        seconds, code = second.stop()
        assert code == 0 and seconds < FLY["kill_timeout"]
    finally:
        second.remove()
