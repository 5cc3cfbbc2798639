"""Memory on a small machine, with the whole stack (bin/start), the real opencode and a stand-in model: the agent's
commands are the OOM killer's first victims, opencode is restarted to give memory back only between turns, and a
chat that does not fit waits for memory instead of pushing the box over. The cgroup tests run the stack inside a
memory cgroup of the VM's size (root and a writable memory controller; skipped, saying why, without)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Origin, wait_until
from tests.support import cgroup
from tests.support.fake_llm import FakeLLM
from tests.test_stack import RunningStack, new_chat, prompt_via_api, service_pid, start_stack, stop

GIB = 1 << 30
MB = 1 << 20


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


def needs_cgroup() -> None:
    if why := cgroup.available():
        pytest.skip(why)


def chat_on_a_new_repo(stack: RunningStack, origin: Origin, prompt: str) -> dict[str, Any]:
    """A chat through Caddy on a fresh repo, ready (the job finished)."""
    repo = f"mem{uuid.uuid4().hex[:6]}/app"
    origin.create(repo)
    return new_chat(stack, repo, prompt)


def messages(stack: RunningStack, chat: dict[str, Any]) -> list[dict[str, Any]]:
    status, found = stack.request("GET", f"/session/{chat['session_id']}/message?directory={chat['path']}")
    assert status == 200, found
    return found


def tool_states(stack: RunningStack, chat: dict[str, Any]) -> list[dict[str, Any]]:
    return [p["state"] for m in messages(stack, chat) for p in m["parts"] if p["type"] == "tool"]


def replies(stack: RunningStack, chat: dict[str, Any]) -> list[str]:
    found = messages(stack, chat)
    return [p["text"] for m in found if m["info"]["role"] == "assistant" for p in m["parts"] if p["type"] == "text"]


def chat_status(stack: RunningStack, session_id: str) -> str | None:
    status, body = stack.request("GET", "/admin/chats")
    return next((c["status"] for c in body["chats"] if c["session_id"] == session_id), None) if status == 200 else None


def stack_pids(stack: RunningStack) -> dict[str, int]:
    names = ("redis", "opencode", "sidecar", "worker", "watcher", "gate", "caddy")
    return {name: service_pid(stack, name) for name in names}


def test_the_agents_command_is_the_oom_victim_never_the_stack(tmp_path: Path, origin: Origin, llm: FakeLLM) -> None:
    """In a 1 GiB group, the agent runs a command that wants 1.5 GB: the kernel kills that command, the stack lives
    on, and the chat shows the step failed and why."""
    needs_cgroup()
    with cgroup.memory_cgroup(GIB) as group:
        stack = start_stack(tmp_path, origin, llm.url, cgroup=group)
        try:
            before = stack_pids(stack)
            status, view = stack.request("GET", "/admin/memory")
            assert status == 200 and view["source"].startswith("cgroup") and view["limit_bytes"] == GIB, view
            scores = {s["name"]: s["oom_score_adj"] for s in view["services"]}
            assert len(set(scores.values())) == 1 and scores["opencode"] <= 0, scores  # the stack's, all alike

            chat = chat_on_a_new_repo(stack, origin, "RUN python3 -c \"a = b'x' * (1500 << 20); print(len(a))\"")

            def command_ended() -> dict[str, Any] | None:
                return next((s for s in tool_states(stack, chat) if s["status"] in ("completed", "error")), None)

            state = wait_until(command_ended, 120, "the memory-hungry command to end")
            assert state["metadata"]["exit"] == 137, state
            assert "killed by the kernel's out-of-memory killer" in state["output"], state["output"]
            assert group.oom_kills() >= 1
            wait_until(lambda: "Done." in replies(stack, chat), 60, "the turn to complete after the killed command")
            assert stack_pids(stack) == before  # nothing of the stack was killed or restarted
            assert stack.request("GET", "/admin/health", auth=None)[0] == 200
        finally:
            stop(stack)


def release_runs(stack: RunningStack) -> list[dict[str, Any]]:
    jobs = stack.request("GET", "/admin/jobs?limit=200")[1]["jobs"]
    return [j for j in jobs if j["kind"] == "release" and j["status"] == "finished" and j["result"].get("restart")]


def test_opencode_is_restarted_to_give_memory_back_only_while_no_chat_is_busy(
    tmp_path: Path, origin: Origin, llm: FakeLLM
) -> None:
    stack = start_stack(
        tmp_path,
        origin,
        llm.url,
        MECODES_AGENT_RESTART_MB="1",  # always above: only "is any chat busy" decides
        MECODES_AGENT_RESTART_QUIET="0",
        MECODES_AGENT_RELEASE_INTERVAL="1",
        MECODES_AGENT_IDLE_MINUTES="60",
    )
    try:
        first_pid = service_pid(stack, "opencode")
        chat = chat_on_a_new_repo(stack, origin, "WAIT for a long task")
        wait_until(lambda: chat_status(stack, chat["session_id"]) == "busy", 60, "the chat to be busy")
        refusals: dict[str, str] = {}  # finished runs stay listed for two intervals only: collect them as they pass

        def refused_while_busy() -> bool:
            for run in release_runs(stack):
                if "chats are working" in run["result"]["restart"]["why"]:
                    refusals[run["id"]] = run["result"]["restart"]["why"]
            return len(refusals) >= 2

        wait_until(refused_while_busy, 60, "two periodic checks that find the chat working")
        assert service_pid(stack, "opencode") == first_pid
        assert chat_status(stack, chat["session_id"]) == "busy"

        stack.request("POST", f"/session/{chat['session_id']}/abort?directory={chat['path']}", {})
        wait_until(lambda: service_pid(stack, "opencode") != first_pid, 60, "opencode restarted once idle")
        wait_until(lambda: stack.request("GET", "/admin/health", auth=None)[0] == 200, 60, "health after the restart")
        health = stack.request("GET", "/admin/health", auth=None)[1]
        assert health["services"]["opencode"]["last_exit"] == "restarted on request"

        # The session survived (SQLite) and answers again; opencode is not restarted again with nothing new.
        assert chat_status(stack, chat["session_id"]) == "stopped"  # by the abort above: no error
        prompts = [p.get("text") for m in messages(stack, chat) if m["info"]["role"] == "user" for p in m["parts"]]
        assert "WAIT for a long task" in prompts
        prompt_via_api(stack, chat, "And now?")
        wait_until(lambda: "Echo: And now?" in replies(stack, chat), 60, "a reply after the restart")
    finally:
        stop(stack)


def hog(group: cgroup.MemoryCgroup, size: int) -> subprocess.Popen[bytes]:
    """A process in the group that holds `size` bytes of memory until killed."""
    code = f"import sys, time; a = b'x' * {size}; print('held', flush=True); time.sleep(600)"
    proc = subprocess.Popen(cgroup.command_in(group, [sys.executable, "-c", code]), stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
    return proc


def test_a_chat_waits_for_memory_then_starts(tmp_path: Path, origin: Origin, llm: FakeLLM) -> None:
    """Less headroom than a chat needs: the chat waits as a queued job saying so, lets other jobs run meanwhile,
    and starts once memory is free again."""
    needs_cgroup()
    reserve = 400 * MB
    with cgroup.memory_cgroup(2 * GIB) as group:
        stack = start_stack(tmp_path, origin, llm.url, cgroup=group, MECODES_CHAT_MEMORY_MB="400")
        holder = None
        try:
            headroom = stack.request("GET", "/admin/memory")[1]["headroom_bytes"]
            holder = hog(group, headroom - reserve // 2)
            assert stack.request("GET", "/admin/memory")[1]["headroom_bytes"] < reserve

            repo = f"mem{uuid.uuid4().hex[:6]}/app"
            origin.create(repo)
            status, job = stack.request("POST", "/admin/chats", {"repo": repo, "prompt": "Hello after the wait"})
            assert status == 202

            def waiting() -> dict[str, Any] | None:
                body = stack.request("GET", job["url"])[1]
                return body if (body["progress"] or {}).get("step", "").startswith("waiting for memory") else None

            shown = wait_until(waiting, 60, "the chat to wait for memory")
            assert shown["status"] in ("queued", "started") and "a chat needs 400 MB" in shown["progress"]["step"]

            other = f"mem{uuid.uuid4().hex[:6]}/other"
            origin.create(other)
            clone = stack.wait_job(stack.request("POST", "/admin/repos/clone", {"repo": other})[1])
            assert clone["status"] == "finished"  # the waiting chat let it run
            assert stack.request("GET", job["url"])[1]["status"] in ("queued", "started")

            holder.kill()
            holder.wait(10)
            done = stack.wait_job(job)
            assert done["status"] == "finished", done
            chat = done["result"]
            wait_until(lambda: "Echo: Hello after the wait" in replies(stack, chat), 60, "the chat's reply")
        finally:
            if holder is not None and holder.poll() is None:
                holder.kill()
            stop(stack)


def test_memory_view_lists_the_agents_commands(tmp_path: Path, origin: Origin, llm: FakeLLM) -> None:
    """GET /admin/memory shows each service's PSS and the agent's running commands, marked first OOM victims."""
    stack = start_stack(tmp_path, origin, llm.url)
    try:
        chat = chat_on_a_new_repo(stack, origin, "RUN sleep 120")

        def command_listed() -> dict[str, Any] | None:
            view = stack.request("GET", "/admin/memory")[1]
            return next((c for c in view["agent_commands"] if c["command"].startswith("sleep 120")), None)

        command = wait_until(command_listed, 60, "the agent's command in the memory view")
        assert command["oom_score_adj"] == 1000 and command["pss_bytes"] > 0
        assert psutil.Process(command["pid"]).cwd() == chat["path"]
        view = stack.request("GET", "/admin/memory")[1]
        services = {s["name"]: s for s in view["services"]}
        assert set(services) == {"redis", "opencode", "sidecar", "worker", "watcher", "gate", "caddy"}
        assert all(s["pss_bytes"] > 0 and s["state"] == "running" for s in services.values()), services
        assert view["used_bytes"] + view["headroom_bytes"] == view["limit_bytes"]
        assert json.dumps(view).count(str(command["pid"])) == 1
    finally:
        stop(stack)
