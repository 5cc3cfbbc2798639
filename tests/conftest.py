"""Shared fixtures: a real Redis server, real git repositories served locally, a real worker process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Playwright, sync_playwright
from redis import Redis

from domain.config import Settings, load_settings
from domain.startup import settle_plugin_sdk
from sidecar import create_app
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM, write_opencode_config
from tests.support.githttp import GitHttpServer

ROOT = Path(__file__).resolve().parent.parent
SECRET_TOKEN = "ghp_TESTSENTINELtoken0123456789abcdef"
GITHUB_USER = "tester"  # the user name given with the token
TERMINAL = {"finished", "failed", "canceled", "stopped"}
collect_ignore = ["image"]  # the container image's checks: scripts/test-image builds the image, then runs them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A real redis-server on 127.0.0.1:`port`, without persistence (as in production)."""
    args = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            return bool(Redis.from_url(f"redis://127.0.0.1:{port}/0").ping())
        except Exception:
            return False

    wait_until(answers, 10, "redis-server")
    return proc


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


class Origin:
    """Source repositories, laid out as `<root>/<owner>/<name>.git`, like a git host."""

    def __init__(self, root: Path):
        self.root = root
        self.base_url = f"file://{root}/"

    def create(
        self, repo: str, files: int = 3, branches: tuple[str, ...] = (), default: str = "main", big_bytes: int = 0
    ) -> Path:
        bare = self.root / f"{repo}.git"
        work = self.root / "_work" / repo
        work.mkdir(parents=True)
        git("init", "-q", "-b", default, str(work))
        for i in range(files):
            (work / f"file{i}.txt").write_text(f"content {i}\n")
        if big_bytes:
            (work / "big.bin").write_bytes(os.urandom(big_bytes))  # incompressible: the transfer takes time
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "initial", cwd=work)
        for branch in branches:
            git("branch", branch, cwd=work)
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "-q", "--bare", str(work), str(bare))
        shutil.rmtree(work)
        return bare

    def push_commit(self, repo: str, message: str = "more") -> str:
        work = self.root / "_work" / f"{repo}-{uuid.uuid4().hex[:6]}"
        git("clone", "-q", str(self.root / f"{repo}.git"), str(work))
        (work / f"{message}.txt").write_text(message)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", message, cwd=work)
        git("push", "-q", "origin", "HEAD", cwd=work)
        head = git("rev-parse", "HEAD", cwd=work).strip()
        shutil.rmtree(work)
        return head


@pytest.fixture(scope="session")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Origin:
    return Origin(tmp_path_factory.mktemp("origin"))


@pytest.fixture
def git_server(origin: Origin) -> Iterator[GitHttpServer]:
    """The origin's repos over HTTP behind the token, as GitHub serves private ones: git gets in only through
    the credential helper."""
    with GitHttpServer(origin.root, auth=(GITHUB_USER, SECRET_TOKEN)) as served:
        yield served


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory, redis_url: str, origin: Origin) -> Iterator[dict[str, str]]:
    """Environment shared by the in-process API and the worker process, also set in os.environ."""
    env = {
        "MECODES_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "REDIS_URL": redis_url,
        "MECODES_GIT_BASE_URL": origin.base_url,
        "MECODES_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
        "GITHUB_TOKEN": SECRET_TOKEN,
        "GITHUB_USER": GITHUB_USER,
        "MECODES_FETCH_MAX_AGE": "0",
        "MECODES_LOCK_TTL": "6",
        "MECODES_GC_INTERVAL": "0",
        "MECODES_WORK_STATE_MAX_AGE": "0",
        "OPENCODE_URL": "",  # the sidecar-only suite runs without opencode (tests/test_stack.py runs it)
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the worker and everything it started, as an OOM kill or a machine restart would."""
        os.killpg(self.proc.pid, 9)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(env: dict[str, str], log: Path) -> WorkerProcess:
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=out,
        stderr=out,
        start_new_session=True,
    )
    worker = WorkerProcess(proc, log)
    settings = replace(load_settings(), queue_name=env["MECODES_QUEUE"], redis_url=env["REDIS_URL"])
    from rq import Queue, Worker

    queue = Queue(settings.queue_name, connection=Redis.from_url(settings.redis_url))
    # This process, not any worker already serving the queue: recovery runs before registration.
    wait_until(lambda: proc.pid in [w.pid for w in Worker.all(queue=queue)], 20, "the worker to register")
    return worker


@pytest.fixture(scope="session")
def worker(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    w = start_worker(stack_env, tmp_path_factory.mktemp("logs") / "worker.log")
    yield w
    w.stop()


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def client(settings: Settings, worker: WorkerProcess) -> FlaskClient:
    return create_app(settings).test_client()


class Api:
    """Small helpers over the test client for the job-polling flow."""

    def __init__(self, client: FlaskClient):
        self.client = client

    def wait(self, job: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            body = self.client.get(job["url"]).get_json()
            return body if body["status"] in TERMINAL else None

        return wait_until(done, timeout, f"job {job['id']} ({job.get('kind')})")

    def clone(self, repo: str) -> dict[str, Any]:
        response = self.client.post("/admin/repos/clone", json={"repo": repo})
        assert response.status_code == 202, response.get_json()
        return self.wait(response.get_json())

    def worktree(self, repo: str, session_id: str, **extra: str) -> dict[str, Any]:
        response = self.client.post("/admin/worktrees", json={"repo": repo, "session_id": session_id, **extra})
        assert response.status_code == 202, response.get_json()
        return self.wait(response.get_json())


@pytest.fixture(scope="session")
def api(client: FlaskClient) -> Api:
    return Api(client)


@pytest.fixture
def repo_name(origin: Origin) -> str:
    """A fresh repo on the origin, unique to the test."""
    name = f"own{uuid.uuid4().hex[:6]}/proj-{uuid.uuid4().hex[:4]}"
    origin.create(name, branches=("feature",))
    return name


@dataclass
class Stack:
    """A worker and an API of their own: own queue, own data root, own git base URL."""

    env: dict[str, str]
    settings: Settings
    client: FlaskClient
    api: Api
    worker: WorkerProcess
    log: Path

    def restart_worker(self) -> None:
        self.worker = start_worker(self.env, self.log)

    def status(self, job: dict[str, Any]) -> dict[str, Any]:
        return self.client.get(job["url"]).get_json()


StackFactory = Callable[..., Stack]


@pytest.fixture
def stack_factory(stack_env: dict[str, str], tmp_path: Path) -> Iterator[StackFactory]:
    """`make(base_url, **env)` starts a stack; extra keyword arguments are environment variables."""
    stacks: list[Stack] = []

    def make(base_url: str, **extra: str) -> Stack:
        n = len(stacks)
        env = {
            **stack_env,
            "MECODES_QUEUE": f"own-{uuid.uuid4().hex[:8]}",
            "MECODES_GIT_BASE_URL": base_url,
            "MECODES_DATA_DIR": str(tmp_path / f"data-{n}"),
            **extra,
        }
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            own = load_settings()
        client = create_app(own).test_client()
        log = tmp_path / f"worker-{n}.log"
        stacks.append(Stack(env, own, client, Api(client), start_worker(env, log), log))
        return stacks[-1]

    yield make
    for s in stacks:
        s.worker.stop()


@dataclass
class OpencodeServer:
    proc: subprocess.Popen[bytes]
    url: str
    home: Path

    def instances_created(self, directory: str) -> int:
        """How often opencode built an instance for `directory` (from its log): a released one must stay gone."""
        logs = (self.home / "data" / "opencode" / "log").glob("*.log")
        return sum(f.read_text().count(f'message="creating instance" directory={directory}\n') for f in logs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_opencode(home: Path, llm_url: str | None = None) -> OpencodeServer:
    """The real `opencode serve` (npm opencode-ai) on a free loopback port, its state under `home`; with
    `llm_url`, a FakeLLM there is its model, so prompts get answered."""
    port = free_port()
    env = {**os.environ, "HOME": str(home)}
    env |= {f"XDG_{kind}_HOME": str(home / kind.lower()) for kind in ("DATA", "STATE", "CONFIG", "CACHE")}
    home.mkdir(parents=True, exist_ok=True)
    settle_plugin_sdk(home / "config" / "opencode")  # as bin/start does for the stack's opencode
    if llm_url:
        write_opencode_config(home / "config", llm_url)
    log = (home / "opencode.log").open("wb")
    proc = subprocess.Popen(
        [ROOT / "node_modules/.bin/opencode", "serve", "--hostname", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        cwd=home,
    )
    server = OpencodeServer(proc, f"http://127.0.0.1:{port}", home)

    def healthy() -> bool:
        assert proc.poll() is None, "opencode exited"
        try:
            with urllib.request.urlopen(f"{server.url}/global/health", timeout=2) as response:
                return json.load(response).get("healthy") is True
        except OSError:
            return False

    wait_until(healthy, 60, "opencode serve")
    return server


@pytest.fixture(scope="session")
def opencode_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_opencode(tmp_path_factory.mktemp("opencode"))
    yield server.url
    server.stop()


def start_sidecar(log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """The sidecar under real gunicorn, as the Procfile runs it, on a free loopback port; returns (process, URL)."""
    port = free_port()
    args = ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4", "--worker-class", "gthread"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [Path(sys.executable).parent / "gunicorn", *args, "--no-control-socket", "sidecar:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/admin/openapi.json", timeout=2):
                return True
        except OSError:
            return False

    wait_until(up, 20, "gunicorn")
    return proc, url


# ---- the browser tests' stack and browser: one of each for the whole session, shared by tests/test_web*.py

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WEB_OWNER = f"web{uuid.uuid4().hex[:6]}"
WEB_REPOS = [f"{WEB_OWNER}/app", f"{WEB_OWNER}/other", f"{WEB_OWNER}/keep"]  # what the GitHub stand-in lists


@pytest.fixture(scope="session")
def web_github() -> Iterator[FakeGitHub]:
    repos = [
        {"full_name": name, "private": i == 1, "default_branch": "main", "pushed_at": f"2026-0{i + 1}-01T00:00:00Z"}
        for i, name in enumerate(WEB_REPOS)
    ]
    with FakeGitHub(SECRET_TOKEN, repos) as fake:
        yield fake


@pytest.fixture(scope="session")
def web_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture(scope="session")
def web_git_server(origin: Origin) -> Iterator[GitHttpServer]:
    """Repos over HTTP behind the token, as GitHub serves private ones: every clone, fetch and push the stack
    makes (the agent's own included) goes through the credential helper."""
    with GitHttpServer(origin.root, auth=(GITHUB_USER, SECRET_TOKEN)) as served:
        yield served


@pytest.fixture(scope="session")
def web_stack(
    tmp_path_factory: pytest.TempPathFactory,
    origin: Origin,
    web_github: FakeGitHub,
    web_llm: FakeLLM,
    web_git_server: GitHttpServer,
) -> Iterator[Any]:
    """bin/start (Caddy, the sidecar, the worker, Redis, opencode answered by `web_llm`), started once for every
    browser test module that has no stack of its own to need."""
    from tests.test_stack import start_stack, stop  # which imports this module

    for name in WEB_REPOS:
        origin.create(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GITHUB_API_URL", web_github.url)  # the sidecar lists the local stand-in's repos
        # Fly-Client-IP believed from 127.0.0.1: a test's guessers get banned under addresses of their own.
        tmp = tmp_path_factory.mktemp("webstack")
        running = start_stack(tmp, origin, web_llm.url, web_git_server.base_url, MECODES_TRUSTED_PROXY="127.0.0.1/32")
    yield running
    stop(running)


ASK_BASH = json.dumps({"permission": {"bash": "ask"}})  # the person's opencode settings in `asking_stack`


@pytest.fixture(scope="session")
def asking_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture(scope="session")
def asking_stack(tmp_path_factory: pytest.TempPathFactory, origin: Origin, asking_llm: FakeLLM) -> Iterator[Any]:
    """bin/start whose opencode, answered by `asking_llm`, asks the person before any bash command: one for the
    modules about questions and permissions (the API's and the phone's)."""
    from tests.test_stack import start_stack, stop  # which imports this module

    running = start_stack(tmp_path_factory.mktemp("asking"), origin, asking_llm.url, MECODES_OPENCODE_CONFIG=ASK_BASH)
    yield running
    stop(running)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
