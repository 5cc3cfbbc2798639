"""The production stack, started from the Procfile by bin/start, used only through Caddy."""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import GITHUB_USER, ROOT, SECRET_TOKEN, TERMINAL, Origin, free_port, wait_until
from tests.support.cgroup import MemoryCgroup, command_in
from tests.support.fake_llm import FakeLLM, write_opencode_config
from tests.test_processes import spawn_orphan

USER, PASSWORD = "phone", "correct horse battery staple"


@dataclass
class RunningStack:
    proc: subprocess.Popen[bytes]
    base: str
    env: dict[str, str]
    log: Path

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        auth: tuple[str, str] | None = (USER, PASSWORD),
        headers: dict[str, str] | None = None,
    ):
        """(status, parsed JSON or text) through Caddy; `headers` adds to the request's."""
        headers = {**({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def wait_job(self, job: dict[str, Any]) -> dict[str, Any]:
        return wait_until(
            lambda: (b := self.request("GET", job["url"])[1])["status"] in TERMINAL and b, 60, f"job {job['id']}"
        )

    def services(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()


def new_chat(stack: RunningStack, repo: str, prompt: str | None = None) -> dict[str, Any]:
    """A chat made through the API (as another device would), finished."""
    body = {"repo": repo, **({"prompt": prompt} if prompt else {"title": "made by the API"})}
    status, job = stack.request("POST", "/admin/chats", body)
    assert status == 202, job
    done = stack.wait_job(job)
    assert done["status"] == "finished", done
    return done["result"]


def prompt_via_api(stack: RunningStack, chat: dict[str, Any], text: str) -> None:
    query = urllib.parse.urlencode({"directory": chat["path"]})
    body = {"parts": [{"type": "text", "text": text}]}
    status, answer = stack.request("POST", f"/session/{chat['session_id']}/prompt_async?{query}", body)
    assert status == 204, answer


def stack_env(tmp: Path, origin: Origin, git_base_url: str | None = None, **extra: str) -> dict[str, str]:
    """bin/start's environment for a stack in `tmp` on free loopback ports; `extra` adds or overrides variables."""
    ports = {name: str(free_port()) for name in ("HTTP", "REDIS", "OPENCODE", "SIDECAR", "GATE")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MECODES_", "REDIS_URL", "OPENCODE_URL"))},
        "CADDY_AUTH_USER": USER,
        "CADDY_AUTH_PASSWORD": PASSWORD,
        "MECODES_HTTP_BIND": "127.0.0.1",
        **{f"MECODES_{name}_PORT": port for name, port in ports.items()},
        "MECODES_DATA_DIR": str(tmp / "projects"),
        "MECODES_OPENCODE_HOME": str(tmp / "opencode"),
        "MECODES_RUN_DIR": str(tmp / "run"),
        "MECODES_GIT_BASE_URL": git_base_url or origin.base_url,
        "MECODES_STOP_GRACE": "5",
        "MECODES_AGENT_RESTART_MB": "0",  # no opencode restart in the middle of a test, but where one is tested
        "GITHUB_TOKEN": SECRET_TOKEN,
        "GITHUB_USER": GITHUB_USER,
        "HOME": str(tmp / "home"),
        **extra,
    }
    return env


def start_stack(
    tmp: Path,
    origin: Origin,
    llm_url: str | None = None,
    git_base_url: str | None = None,
    cgroup: MemoryCgroup | None = None,
    **extra: str,
) -> RunningStack:
    """bin/start as the container runs it; with `llm_url`, opencode's model is a FakeLLM there; repos come from
    `git_base_url` (a GitHttpServer, say) or else straight from the origin's folder; inside `cgroup` when given
    (the VM's memory limit); `extra` environment variables."""
    env = stack_env(tmp, origin, git_base_url, **extra)
    if llm_url:
        write_opencode_config(tmp / "opencode" / "config", llm_url)  # the Procfile's XDG_CONFIG_HOME for opencode
    log = tmp / "stack.log"
    command = [str(ROOT / "bin/start")]
    with log.open("wb") as out:
        argv = command_in(cgroup, command) if cgroup else command
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out)
    stack = RunningStack(proc, f"http://127.0.0.1:{env['MECODES_HTTP_PORT']}", env, log)

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return stack.request("GET", "/admin/health", auth=None)[0] == 200
        except OSError:
            return False

    wait_until(healthy, 120, "the stack's /admin/health through Caddy")
    return stack


def stop(stack: RunningStack) -> None:
    if stack.proc.poll() is None:
        stack.proc.terminate()
        stack.proc.wait(60)


@contextlib.contextmanager
def running_stack(tmp: Path, origin: Origin, llm_url: str | None = None, **options: Any) -> Iterator[RunningStack]:
    """start_stack, stopped at the end whatever happens in between (no stack outlives a failed test)."""
    stack = start_stack(tmp, origin, llm_url, **options)
    try:
        yield stack
    finally:
        stop(stack)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("stack"), origin)
    yield running
    if running.proc.poll() is None:
        running.proc.send_signal(signal.SIGTERM)
        running.proc.wait(60)


def assert_all_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_without_credentials_only_health_answers(stack: RunningStack) -> None:
    status, body = stack.request("GET", "/admin/health", auth=None)
    assert status == 200 and body["status"] == "ok" and body["problems"] == []
    for path in ("/admin/repos", "/admin/jobs", "/admin/docs", "/admin", "/", "/global/health", "/session", "/event"):
        assert stack.request("GET", path, auth=None)[0] == 401, path
    assert stack.request("GET", "/admin/repos", auth=(USER, "wrong"))[0] == 401
    assert stack.request("POST", "/admin/repos/clone", {"repo": "a/b"}, auth=None)[0] == 401


def test_clone_worktree_and_an_opencode_session_through_caddy(stack: RunningStack, origin: Origin) -> None:
    origin.create("e2e/app")
    status, job = stack.request("POST", "/admin/repos/clone", {"repo": "e2e/app"})
    assert status == 202
    assert stack.wait_job(job)["status"] == "finished"
    status, job = stack.request("POST", "/admin/worktrees", {"repo": "e2e/app", "session_id": "phone1"})
    worktree = stack.wait_job(job)
    assert worktree["status"] == "finished", worktree
    path = worktree["result"]["path"]

    status, health = stack.request("GET", "/global/health")
    assert status == 200 and health["healthy"] is True
    status, session = stack.request("POST", f"/session?directory={path}", {"title": "from the phone"})
    assert status == 200 and session["directory"] == path
    status, sessions = stack.request("GET", f"/session?directory={path}")
    assert session["id"] in [s["id"] for s in sessions]

    status, page = stack.request("GET", "/")
    assert status == 200 and "<title>mecodes</title>" in page


def test_the_app_and_the_api_go_compressed_and_the_event_stream_not(stack: RunningStack) -> None:
    """A phone asks for gzip: the web app's files and the API's answers come gzipped (the vendored libraries are
    134 KB as files); opencode's event stream is passed on as it comes, never buffered for a compressor."""
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    host, port = stack.base.removeprefix("http://").split(":")

    def head(path: str) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", path, headers={"Authorization": auth, "Accept-Encoding": "gzip"})
        return connection.getresponse(), connection

    for path in ("/vendor/purify.es.mjs", "/views/chat.js", "/admin/openapi.json"):
        response, connection = head(path)
        body = response.read()
        connection.close()
        assert response.status == 200 and response.getheader("Content-Encoding") == "gzip", path
        assert len(gzip.decompress(body)) > 3 * len(body), path
    response, connection = head("/event")
    try:
        assert response.status == 200 and response.getheader("Content-Encoding") is None
        assert response.readline().startswith(b"data:")  # the first event, at once
    finally:
        connection.close()


def each_process(stack: RunningStack, read: Callable[[psutil.Process], Any]) -> list[Any]:
    """`read` of every process of the stack that is still there (short-lived children come and go)."""
    results = []
    for proc in [psutil.Process(stack.proc.pid), *psutil.Process(stack.proc.pid).children(recursive=True)]:
        try:
            results.append(read(proc))
        except psutil.Error:
            continue
    return results


def test_stack_listens_on_loopback_only(stack: RunningStack) -> None:
    connections = each_process(stack, lambda p: p.net_connections(kind="inet"))
    listening = {c.laddr.port: c.laddr.ip for cs in connections for c in cs if c.status == psutil.CONN_LISTEN}
    ports = {int(stack.env[f"MECODES_{n}_PORT"]) for n in ("HTTP", "REDIS", "OPENCODE", "SIDECAR", "GATE")}
    assert ports <= set(listening)
    assert set(listening.values()) == {"127.0.0.1"}


def test_secrets_stay_out_of_files_and_processes(stack: RunningStack) -> None:
    tmp = Path(stack.env["MECODES_DATA_DIR"]).parent
    for file in tmp.rglob("*"):
        if file.is_file() and not file.is_symlink() and file.stat().st_size < 50_000_000:
            content = file.read_bytes()
            assert PASSWORD.encode() not in content, file
            assert SECRET_TOKEN.encode() not in content, file
    for environ, cmdline in each_process(stack, lambda p: (p.environ(), p.cmdline())):
        assert "CADDY_AUTH_PASSWORD" not in environ, cmdline
        assert PASSWORD not in " ".join(cmdline)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_every_route_needs_credentials(stack: RunningStack) -> None:
    """Every operation of the sidecar's spec and of opencode's, called without credentials: 401, but health."""
    status, sidecar_spec = stack.request("GET", "/admin/openapi.json")
    status_oc, opencode_spec = stack.request("GET", "/doc")
    assert status == 200 and status_oc == 200
    checked = 0
    for spec in (sidecar_spec, opencode_spec):
        for path, operations in spec["paths"].items():
            for method in operations:
                if method.upper() not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                    continue
                expected = 200 if path == "/admin/health" else 401
                answer, _ = stack.request(method.upper(), _concrete(path), {} if method != "get" else None, auth=None)
                assert answer == expected, (method, path, answer)
                checked += 1
    assert checked > 150


def test_a_spoofed_fly_client_ip_is_ignored_without_a_trusted_proxy(stack: RunningStack) -> None:
    """Failed logins count against the address Caddy saw unless MECODES_TRUSTED_PROXY names it (tests/test_logins.py
    has the stack that trusts one)."""
    spoofed = {"Fly-Client-IP": "203.0.113.7"}
    assert stack.request("GET", "/admin/repos", auth=(USER, "spoofed"), headers=spoofed)[0] == 401
    status, report = stack.request("GET", "/admin/logins")
    assert status == 200 and "127.0.0.1" in [c["address"] for c in report["clients"]]
    assert "203.0.113.7" not in json.dumps(report)


def service_pid(stack: RunningStack, name: str) -> int:
    """The pid of the process procman runs for the Procfile's `name`, from its services.json."""
    return json.loads((Path(stack.env["MECODES_RUN_DIR"]) / "services.json").read_text())["services"][name]["pid"]


def service(stack: RunningStack, name: str) -> psutil.Process:
    return psutil.Process(service_pid(stack, name))


@pytest.mark.parametrize("name", ["redis", "worker", "opencode", "sidecar", "gate", "watcher"])
def test_a_killed_service_is_restarted_alone(stack: RunningStack, name: str) -> None:
    services = ("redis", "worker", "opencode", "sidecar", "gate", "watcher", "caddy")
    others = {n: service_pid(stack, n) for n in services if n != name}
    victim = service(stack, name)
    victim.kill()
    victim.wait(10)

    def restarted() -> dict[str, Any] | None:
        status, health = stack.request("GET", "/admin/health", auth=None)
        if status != 200:
            return None  # Caddy's 502 while no sidecar listens (procman ends the old one's worker with it)
        entry = health["services"][name]
        return health if entry["pid"] != victim.pid and entry["state"] == "running" else None

    health = wait_until(restarted, 90, f"{name} restarted and health 200 again")
    assert health["services"][name]["last_exit"] == "killed by signal 9 (SIGKILL)"
    assert health["services"][name]["restarts"] >= 1
    assert {n: service_pid(stack, n) for n in others} == others  # the rest kept serving
    assert stack.proc.poll() is None
    assert f"{name} killed by signal 9 (SIGKILL); restarting it" in stack.log.read_text()


def test_health_says_what_is_restarting(tmp_path: Path, origin: Origin) -> None:
    """While a service waits out its back-off, health is 503 and names it; repeated failures in the window stop
    the whole stack, so the machine restarts."""
    with running_stack(tmp_path, origin, MECODES_RESTART_LIMIT="2", MECODES_RESTART_WINDOW="120") as running:
        everything = psutil.Process(running.proc.pid).children(recursive=True)
        for attempt in (1, 2):
            worker = service(running, "worker")
            worker.kill()
            worker.wait(10)

            def says_restarting() -> bool:
                status, health = running.request("GET", "/admin/health", auth=None)
                restarting = [p for p in health["problems"] if p.startswith("worker: restarting after it killed")]
                return status == 503 and bool(restarting)

            wait_until(says_restarting, 10, "health 503 naming the worker's restart")
            healthy = lambda: running.request("GET", "/admin/health", auth=None)[0] == 200  # noqa: E731
            wait_until(healthy, 60, f"health after restart {attempt}")
        service(running, "worker").kill()  # the third failure in the window: more than the limit
        assert running.proc.wait(60) != 0
        assert "failure 3 in 120 s, more than MECODES_RESTART_LIMIT=2; stopping the stack" in running.log.read_text()
        assert_all_gone(everything)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MECODES_RESTART_LIMIT", "-1"),
        ("MECODES_RESTART_WINDOW", "0"),
        ("MECODES_MEMORY_LIMIT_MB", "lots"),
        ("MECODES_CHAT_MEMORY_MB", "-200"),
        ("MECODES_CHAT_MEMORY_WAIT", "1.5"),
        ("MECODES_AGENT_RESTART_MB", "big"),
        ("MECODES_AGENT_RESTART_QUIET", "-1"),
        ("MECODES_WORK_STATE_MAX_AGE", "-5"),
        ("MECODES_AUTO_CONTINUE", "sometimes"),
        ("MECODES_LOGIN_FAILURES", "0"),
        ("MECODES_LOGIN_WINDOW", "a minute"),
        ("MECODES_LOGIN_BAN", "-60"),
        ("MECODES_LOGIN_BAN_MAX", "0"),
        ("MECODES_TRUSTED_PROXY", "fly"),
        ("MECODES_TRUSTED_PROXY", "10.0.0.1/8"),
        ("MECODES_ATTACHMENTS_MAX_MB", "0"),
        ("MECODES_ATTACHMENTS_MAX_MB", "15"),
        ("MECODES_OPENCODE_CONFIG", "{not json"),
        ("MECODES_OPENCODE_CONFIG", "[1, 2]"),
        ("MECODES_REDIS_DIR", "/proc/no-such-folder/redis"),
        ("MECODES_NOTIFY_DIR", "/proc/no-such-folder/notifications"),
        ("MECODES_NOTIFY_URLS", "json://127.0.0.1:9/hook nosuchservice://token"),
        ("MECODES_NOTIFY_URLS", "not a url"),
        ("MECODES_PUBLIC_URL", "ftp://mecodes.example"),
        ("MECODES_PUSH_CONTACT", "me"),
        ("MECODES_PUSH_LOOPBACK", "sometimes"),
    ],
)
def test_bad_settings_are_refused_at_start(tmp_path: Path, origin: Origin, variable: str, value: str) -> None:
    env = stack_env(tmp_path, origin, **{variable: value})
    done = subprocess.run([ROOT / "bin/start"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert variable in done.stderr, done.stderr
    assert "procman: started" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_opencode_config_on_the_volume_is_refused_at_start(tmp_path: Path, origin: Origin) -> None:
    config = tmp_path / "opencode" / "config" / "opencode" / "opencode.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"model": "a/b",}')
    done = subprocess.run(
        [ROOT / "bin/start"], cwd=ROOT, env=stack_env(tmp_path, origin), capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert f"{config} (opencode's config on the volume) is not valid JSON" in done.stderr, done.stderr


def test_sigterm_stops_everything_cleanly(tmp_path: Path, origin: Origin) -> None:
    with running_stack(tmp_path, origin) as running:
        everything = psutil.Process(running.proc.pid).children(recursive=True)
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(60) == 0
        assert_all_gone(everything)


def running_in(worktree: str) -> list[psutil.Process]:
    """The `sleep` commands whose cwd is `worktree`."""
    found = []
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] == "sleep" and proc.cwd() == worktree and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def test_the_agents_commands_end_with_the_stack(tmp_path: Path, origin: Origin) -> None:
    """The agent runs a command, and another detached into a session of its own (re-parented to PID 1 at once): both
    are listed as running in the chat's worktree, and bin/procman ends both when the stack stops."""
    repo = f"end{uuid.uuid4().hex[:6]}/app"
    origin.create(repo)
    commands: list[psutil.Process] = []
    with FakeLLM() as llm:
        try:
            with running_stack(tmp_path, origin, llm.url) as running:
                chat = new_chat(running, repo, "RUN (setsid sleep 601 >/dev/null 2>&1 &); sleep 600")
                commands = wait_until(lambda: len(f := running_in(chat["path"])) == 2 and f, 60, "the commands")
                body = running.request("GET", "/admin/processes")[1]
                listed = {p["cmdline"]: (p["reason"], p["worktree"]) for p in body["processes"]}
                assert listed["sleep 600"] == ("in-worktree", Path(chat["path"]).name), body
                assert listed["sleep 601"] == ("orphan", Path(chat["path"]).name), body

                running.proc.send_signal(signal.SIGTERM)
                assert running.proc.wait(60) == 0
            assert_all_gone(commands)
            assert "procman: ending what opencode left running" in running.log.read_text()
        finally:
            for command in commands:
                with contextlib.suppress(psutil.Error):
                    command.kill()


def test_what_a_killed_stack_left_in_its_worktrees_is_ended_at_the_next_start(tmp_path: Path, origin: Origin) -> None:
    """The stack dies at once (SIGKILL to procman and every service), leaving the agent's command running in its
    worktree: the next start ends it and says so. A process someone started there by hand before the stack (not one
    of the stack's: no MECODES_DATA_DIR in its environment) is left to them: listed, and killed when asked."""
    repo = f"dead{uuid.uuid4().hex[:6]}/app"
    origin.create(repo)
    first_stack: list[psutil.Process] = []
    worktree = ""
    with FakeLLM() as llm:
        first = start_stack(tmp_path, origin, llm.url)
        try:
            chat = new_chat(first, repo, "RUN sleep 602")
            worktree = chat["path"]
            command = wait_until(lambda: running_in(worktree), 60, "the agent's command")[0]
            first_stack = psutil.Process(first.proc.pid).children(recursive=True)
            services = first.services()
            first.proc.kill()
            first.proc.wait(10)
            for service in services:
                service.kill()
            psutil.wait_procs(services, 10)
            assert command.is_running() and command.ppid() != first.proc.pid

            by_hand = {k: v for k, v in os.environ.items() if not k.startswith("MECODES_")}
            theirs = spawn_orphan("exec sleep 603", cwd=Path(worktree), env=by_hand)
            with running_stack(tmp_path, origin, llm.url) as second:
                assert_all_gone([command])
                log = second.log.read_text()
                assert "start: ending processes an earlier stack left running in its worktrees" in log, log
                assert f"{command.pid} (sleep 602, in {worktree})" in log, log

                listed = {p["pid"]: p for p in second.request("GET", "/admin/processes")[1]["processes"]}
                assert theirs.pid in listed and listed[theirs.pid]["worktree"] == Path(worktree).name, listed
                status, killed = second.request("POST", f"/admin/processes/{theirs.pid}/kill", {})
                assert status == 200 and killed["terminated"] == [theirs.pid], killed
        finally:
            stop(first)
            for proc in first_stack + (running_in(worktree) if worktree else []):
                with contextlib.suppress(psutil.Error):
                    proc.kill()


def open_event_stream(stack: RunningStack, path: str) -> http.client.HTTPConnection:
    """A phone's server-sent event stream through Caddy, open and flowing (its first event read)."""
    host, port = stack.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    connection.request("GET", path, headers={"Authorization": f"Basic {token}", "Accept": "text/event-stream"})
    response = connection.getresponse()
    assert response.status == 200 and response.readline().startswith(b"data:")
    return connection


def test_the_stack_stops_fast_with_open_event_streams(tmp_path: Path, origin: Origin) -> None:
    """Phones holding opencode's event streams open through Caddy do not hold up a stop (Caddy's grace_period closes
    them): with fly.toml's stop grace, SIGTERM stops everything well within its kill_timeout of 60 s."""
    with running_stack(tmp_path, origin, MECODES_STOP_GRACE="40") as running:
        streams = [open_event_stream(running, path) for path in ["/event", "/global/event"] * 2 + ["/event"]]
        everything = psutil.Process(running.proc.pid).children(recursive=True)
        started = time.monotonic()
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(60) == 0
        took = time.monotonic() - started
        assert took < 20, f"the stack took {took:.1f} s to stop with {len(streams)} open event streams"
        assert_all_gone(everything)
        for stream in streams:
            stream.close()
    # The streams made opencode load its config, which installs its plugin SDK unless told not to (domain.startup):
    # a SIGTERM in the middle of that install left opencode hanging until the stop grace ran out.
    assert list((tmp_path / "opencode" / "config" / "opencode" / "node_modules").iterdir()) == []
