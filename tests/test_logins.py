"""Failed logins through the real stack (bin/start: Caddy's forward_auth to the gate, Redis, the sidecar): limited per
client before any password is hashed, one bcrypt at a time for everyone, and visible in GET /admin/logins.

The stack trusts `Fly-Client-IP` from 127.0.0.1, as Fly's proxy is trusted in production, so each test plays its own
clients by naming their addresses and no test's bans touch another's.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import statistics
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Origin, wait_until
from tests.test_stack import PASSWORD, USER, RunningStack, running_stack, service, service_pid

BCRYPT_SECONDS = 0.3  # far below cost 14's second or so: anything slower ran bcrypt, anything much faster did not


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[RunningStack]:
    tmp = tmp_path_factory.mktemp("logins")
    with running_stack(tmp, origin, MECODES_TRUSTED_PROXY="127.0.0.1/32", MECODES_LOGIN_BAN="6") as running:
        yield running


def attempt(
    stack: RunningStack, client: str, password: str | None = PASSWORD, user: str = USER, path: str = "/admin/repos"
) -> tuple[int, float, dict[str, str]]:
    """(status, seconds, response headers) of one request from `client` through Caddy; no credentials when
    `password` is None."""
    headers = {"Fly-Client-IP": client}
    if password is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(stack.base).netloc, timeout=60)
    try:
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - start, dict(response.headers)
    finally:
        conn.close()


def logins_of(stack: RunningStack, address: str) -> dict[str, Any] | None:
    status, report = stack.request("GET", "/admin/logins")
    assert status == 200, report
    return next((c for c in report["clients"] if c["address"] == address), None)


def test_the_sixth_failure_is_refused_at_once_until_the_ban_ends(stack: RunningStack) -> None:
    guesser = "198.51.100.1"
    for i in range(5):
        status, seconds, _ = attempt(stack, guesser, f"wrong{i}")
        assert status == 401 and seconds > BCRYPT_SECONDS, (i, status, seconds)

    status, seconds, headers = attempt(stack, guesser, "wrong5")
    assert status == 429 and seconds < 0.05, (status, seconds)
    assert 1 <= int(headers["Retry-After"]) <= 6
    assert attempt(stack, guesser, PASSWORD)[0] == 429  # banned means banned: no guess is judged meanwhile
    assert attempt(stack, "198.51.100.2", PASSWORD)[0] == 200  # another client is not
    entry = wait_until(lambda: (c := logins_of(stack, guesser)) and c["refused"] >= 2 and c, 10, "refusals counted")
    assert entry["failures"] == 5 and entry["bans"] == 1 and entry["banned_until"], entry  # the 6th was never hashed

    wait_until(lambda: attempt(stack, guesser, PASSWORD)[0] == 200, 15, "the right password once the ban ended")

    for i in range(5):  # a second burst within the day: a ban twice as long
        assert attempt(stack, guesser, f"again{i}")[0] == 401
    status, _, headers = attempt(stack, guesser, "again5")
    assert status == 429 and 10 <= int(headers["Retry-After"]) <= 12, headers
    assert "login failed from 198.51.100.1 (5 of 5 in 60 s)" in stack.log.read_text()
    assert "login: 198.51.100.1 banned for 12 s (ban 2 in 24 h)" in stack.log.read_text()
    assert "wrong0" not in stack.log.read_text()


def test_guesses_racing_from_one_address_reach_the_hash_five_times(stack: RunningStack) -> None:
    guesser, stop = "198.51.100.61", threading.Event()
    statuses: list[int] = []

    def guess(n: int) -> None:
        i = 0
        while not stop.is_set():
            statuses.append(attempt(stack, guesser, f"race{n}-{i}")[0])
            i += 1

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: statuses.count(429) > 200, 60, "a ban, then many refusals")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert statuses.count(401) == 5 and set(statuses) == {401, 429, 503}, statuses.count(401)
    assert logins_of(stack, guesser)["failures"] == 5


def test_one_bcrypt_at_a_time_for_every_client_together(stack: RunningStack) -> None:
    clients = [f"198.51.100.{n}" for n in (11, 12, 13)]
    answers: dict[str, tuple[int, float, dict[str, str]]] = {}
    start = threading.Barrier(len(clients))

    def guess(client: str) -> None:
        start.wait()
        answers[client] = attempt(stack, client, "not-it")

    threads = [threading.Thread(target=guess, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _, _ in answers.values())
    assert statuses == [401, 503, 503], answers
    for status, seconds, headers in answers.values():
        if status == 503:
            assert seconds < BCRYPT_SECONDS and headers["Retry-After"] == "1", (seconds, headers)
    hashed = [c for c in clients if (entry := logins_of(stack, c)) and entry["failures"]]
    assert len(hashed) == 1  # the others' guesses were not counted against them either


def test_wrong_users_cost_as_much_as_wrong_passwords(stack: RunningStack) -> None:
    """Every fresh guess costs a bcrypt comparison, for a known user or not, so timing tells a guesser nothing."""
    wrong_password = [attempt(stack, "198.51.100.21", f"nope{i}")[1] for i in range(3)]
    wrong_user = [attempt(stack, "198.51.100.22", f"guess{i}", user=f"nobody{i}")[1] for i in range(3)]
    assert min(wrong_password + wrong_user) > BCRYPT_SECONDS, "bcrypt was not run"
    ratio = statistics.mean(wrong_password) / statistics.mean(wrong_user)
    assert 0.5 < ratio < 2, (wrong_password, wrong_user)


def test_the_client_is_named_by_a_trusted_proxy_and_never_by_the_client(stack: RunningStack) -> None:
    credentials = "Basic " + base64.b64encode(f"{USER}:spoof".encode()).decode()
    forged = {"Authorization": credentials, "Fly-Client-IP": "192.0.2.77", "X-Mecodes-Peer": "10.1.2.3"}
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(stack.base).netloc, timeout=60)
    conn.request("GET", "/admin/repos", headers=forged)
    assert conn.getresponse().status == 401
    conn.close()
    assert logins_of(stack, "192.0.2.77")  # Caddy's peer (127.0.0.1) is trusted: its Fly-Client-IP counts
    assert logins_of(stack, "10.1.2.3") is None  # Caddy set X-Mecodes-Peer itself

    assert attempt(stack, "2001:db8:1:2::5", "v6")[0] == 401
    assert logins_of(stack, "2001:db8:1:2::/64")  # an IPv6 client counts by its /64
    assert attempt(stack, "203.0.113.200, 192.0.2.78", "kept")[0] == 401
    assert logins_of(stack, "192.0.2.78")  # the proxy's own, last


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /auth/basic HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET /auth/basic HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET /auth/basic\r\n\r\n", 400),
        (b"GET /auth/basic HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"POST /auth/basic HTTP/1.1\r\nConnection: close\r\n\r\n", 404),
        (b"GET /admin/repos HTTP/1.1\r\nConnection: close\r\n\r\n", 404),
    ],
)
def test_the_gate_refuses_what_caddy_never_sends(stack: RunningStack, head: bytes, status: int) -> None:
    """Only Caddy talks to the gate, on loopback; anything else gets a 4xx JSON answer (a malformed request, with the
    connection closed)."""
    with socket.create_connection(("127.0.0.1", int(stack.env["MECODES_GATE_PORT"])), timeout=10) as conn:
        conn.sendall(head)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert json.loads(body)["code"] == status


def test_a_ban_outlives_a_restart_of_the_gate(stack: RunningStack) -> None:
    guesser = "198.51.100.41"
    for i in range(5):
        attempt(stack, guesser, f"w{i}")
    assert attempt(stack, guesser, PASSWORD)[0] == 429
    gate = service(stack, "gate")
    gate.kill()
    gate.wait(10)
    restarted = lambda: service_pid(stack, "gate") != gate.pid and attempt(stack, "192.0.2.90", None)[0] == 401  # noqa: E731
    wait_until(restarted, 30, "the gate restarted")
    status, seconds, _ = attempt(stack, guesser, PASSWORD)
    assert status == 429 and seconds < BCRYPT_SECONDS  # taken over from Redis, still without a hash


def test_health_and_event_streams_are_unaffected(stack: RunningStack, tmp_path: Any) -> None:
    banned = "198.51.100.31"
    for i in range(5):
        attempt(stack, banned, f"x{i}")
    assert attempt(stack, banned, PASSWORD)[0] == 429
    status, _, _ = attempt(stack, banned, None, path="/admin/health")
    assert status == 200  # Fly's health check needs no credentials, and no ban touches it

    flooding = threading.Event()

    def flood() -> None:  # a banned client keeps guessing meanwhile
        while not flooding.is_set():
            attempt(stack, banned, "more")

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        with event_stream(stack) as events:
            assert next(events)["payload"]["type"] == "server.connected"
            status, session = stack.request("POST", f"/session?directory={tmp_path}", {"title": "streamed"})
            assert status == 200, session
            started = time.monotonic()
            for event in events:
                payload = event["payload"]
                if payload["type"] == "session.created" and payload["properties"]["info"]["id"] == session["id"]:
                    break
            assert time.monotonic() - started < 5
    finally:
        flooding.set()
        flooder.join()


@contextlib.contextmanager
def event_stream(stack: RunningStack) -> Iterator[Iterator[dict[str, Any]]]:
    """opencode's /global/event through Caddy, as the phone reads it: each event as it is flushed."""
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(stack.base).netloc, timeout=10)
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    conn.request("GET", "/global/event", headers={"Authorization": auth, "Fly-Client-IP": "192.0.2.80"})
    response = conn.getresponse()
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")

    def events() -> Iterator[dict[str, Any]]:
        for line in response:
            if line.startswith(b"data:"):
                yield json.loads(line[5:])

    try:
        yield events()
    finally:
        conn.close()
