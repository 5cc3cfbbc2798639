"""Models, agents and images for a chat: what opencode offers (GET /admin/agent-options), choices it does not offer
refused naming the field, images checked (type 415, size 413, base64 422), and the chosen model, agent and image
reaching the real `opencode serve` and its stand-in model."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from redis import Redis

from domain.attachments import STASH_KEY, body_limit
from domain.config import ATTACHMENTS_MAX_MB, load_settings
from domain.startup import opencode_config
from tests.conftest import ROOT, OpencodeServer, Origin, Stack, StackFactory, start_opencode, wait_until
from tests.support.fake_llm import MODEL, PROVIDER, SECOND_MODEL, FakeLLM, images_sent
from tests.test_chats import new_chat, oc

# A 4x1 PNG opencode can decode (it reads every image it is given, and drops a message whose image it cannot).
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAQAAAABCAYAAAD5PA/NAAAAD0lEQVR4nGP4z8DwHxkDAEPNB/lfEPxcAAAAAElFTkSuQmCC"
IMAGE = {"filename": "dot.png", "mime": "image/png", "data_base64": PNG}
FIRST, SECOND = f"{PROVIDER}/{MODEL}", f"{PROVIDER}/{SECOND_MODEL}"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture(scope="module")
def answering(tmp_path_factory: pytest.TempPathFactory, llm: FakeLLM) -> Iterator[OpencodeServer]:
    server = start_opencode(tmp_path_factory.mktemp("opencode-options"), llm.url)
    yield server
    server.stop()


@pytest.fixture
def stack(origin: Origin, stack_factory: StackFactory, answering: OpencodeServer) -> Stack:
    return stack_factory(origin.base_url, OPENCODE_URL=answering.url, MECODES_ATTACHMENTS_MAX_MB="1")


@pytest.fixture
def repo(origin: Origin) -> str:
    name = f"opts{uuid.uuid4().hex[:6]}/app"
    origin.create(name)
    return name


def user_messages(url: str, chat: dict[str, Any]) -> list[dict[str, Any]]:
    messages = oc(url, "GET", f"/session/{chat['session_id']}/message", chat["path"])
    return [m for m in messages if m["info"]["role"] == "user"]


def test_the_options_are_what_opencode_offers(stack: Stack) -> None:
    started = time.monotonic()
    first = stack.client.get("/admin/agent-options")
    asked = time.monotonic() - started
    assert first.status_code == 200, first.get_json()
    options = first.get_json()
    models = {m["id"]: m for m in options["models"]}
    assert models[FIRST] == {"id": FIRST, "name": "Echo", "provider": "Stand-in LLM", "images": True}
    assert models[SECOND]["name"] == "Echo two"
    assert options["default_model"] == FIRST and options["providers_configured"] is True
    agents = [a["name"] for a in options["agents"]]
    assert {"build", "plan"} <= set(agents) and options["default_agent"] == "build"
    assert not {"explore", "general", "title", "summary", "compaction"} & set(agents)  # sub-agents, hidden ones
    assert next(a for a in options["agents"] if a["name"] == "plan")["description"]
    assert options["attachments_max_bytes"] == 1_000_000

    started = time.monotonic()
    assert stack.client.get("/admin/agent-options").get_json() == options
    kept = time.monotonic() - started
    print(f"agent options: asked of opencode in {asked * 1000:.0f} ms, then from Redis in {kept * 1000:.1f} ms")
    assert kept < 0.5


def test_without_a_provider_of_ones_own_it_says_so(
    origin: Origin, stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """opencode as bin/start configures it, and no provider of the person's: GITHUB_TOKEN in its environment is not
    taken for a Copilot key, and what is left is opencode's own free models (if any)."""
    home = tmp_path_factory.mktemp("opencode-bare")
    (home / "config" / "opencode").mkdir(parents=True)
    (home / "config" / "opencode" / "opencode.json").write_text(json.dumps(opencode_config({})))
    server = start_opencode(home)
    try:
        stack = stack_factory(origin.base_url, OPENCODE_URL=server.url)
        options = stack.client.get("/admin/agent-options").get_json()
    finally:
        server.stop()
    assert options["providers_configured"] is False
    assert {m["id"].split("/")[0] for m in options["models"]} <= {"opencode"}, options["models"]


def errors_of(response: Any, field: str) -> str:
    body = response.get_json()
    return " ".join(body["errors"]["json"][field]) if isinstance(body["errors"]["json"][field], list) else str(body)


def test_a_model_or_agent_not_offered_is_refused_naming_the_field(stack: Stack, repo: str) -> None:
    chat = {"repo": repo, "prompt": "Hello"}
    refused = stack.client.post("/admin/chats", json={**chat, "agent": "explore"})  # a sub-agent
    assert refused.status_code == 422 and "choose one of" in errors_of(refused, "agent")
    assert "build" in errors_of(refused, "agent") and "plan" in errors_of(refused, "agent")
    refused = stack.client.post("/admin/chats", json={**chat, "model": f"{PROVIDER}/no-such-model"})
    assert refused.status_code == 422 and FIRST in errors_of(refused, "model") and SECOND in errors_of(refused, "model")

    made = new_chat(stack, repo=repo, title="no prompt yet")["result"]
    turn = f"/admin/chats/{made['session_id']}/prompt"
    refused = stack.client.post(turn, json={"text": "Hi", "agent": "title"})  # hidden
    assert refused.status_code == 422 and "is not a primary agent" in errors_of(refused, "agent")
    refused = stack.client.post(turn, json={"text": "Hi", "model": "nobody/nothing"})
    assert refused.status_code == 422 and "is not offered" in errors_of(refused, "model")


def test_images_are_checked(stack: Stack, repo: str) -> None:
    def attach(*images: dict[str, str], prompt: str | None = "Look") -> Any:
        return stack.client.post("/admin/chats", json={"repo": repo, "prompt": prompt, "attachments": list(images)})

    refused = attach({**IMAGE, "mime": "application/pdf"})
    assert refused.status_code == 415, refused.get_json()
    assert "image/png" in refused.get_json()["errors"]["json"]["attachments"]["0"]["mime"][0]
    pdf = base64.b64encode(b"%PDF-1.4 not an image").decode()
    refused = attach(IMAGE, {**IMAGE, "data_base64": pdf})
    assert refused.status_code == 415 and "is not a image/png image" in refused.get_json()["message"]
    assert "data_base64" in refused.get_json()["errors"]["json"]["attachments"]["1"]

    refused = attach({**IMAGE, "data_base64": "not base64!"})
    assert refused.status_code == 422 and refused.get_json()["errors"]["json"]["attachments"]["0"]["data_base64"]
    refused = attach(IMAGE, prompt=None)
    assert refused.status_code == 422 and "give the prompt too" in errors_of(refused, "attachments")

    big = base64.b64encode(base64.b64decode(PNG) + bytes(1_000_000)).decode()  # over MECODES_ATTACHMENTS_MAX_MB=1
    refused = attach({**IMAGE, "data_base64": big})
    assert refused.status_code == 413, refused.get_json()
    assert "more than 1 MB (MECODES_ATTACHMENTS_MAX_MB)" in refused.get_json()["message"]
    refused = attach(*[{**IMAGE, "data_base64": big}] * 2)  # over what a body may hold at all
    assert refused.status_code == 413

    other = stack.client.post("/admin/repos/clone", json={"repo": repo, "padding": "x" * 100_000})
    assert other.status_code == 413  # endpoints without images keep the 64 KiB limit


def test_the_chosen_model_agent_and_image_reach_the_model(
    stack: Stack, repo: str, llm: FakeLLM, answering: OpencodeServer
) -> None:
    body = {"repo": repo, "prompt": "Describe this", "model": SECOND, "agent": "plan", "attachments": [IMAGE]}
    done = new_chat(stack, **body)
    assert done["status"] == "finished", done
    chat = done["result"]
    first = wait_until(lambda: user_messages(answering.url, chat), 30, "the first message recorded")[0]
    assert first["info"]["agent"] == "plan"
    assert first["info"]["model"] == {"providerID": PROVIDER, "modelID": SECOND_MODEL}

    def files() -> list[tuple[str, str]]:  # opencode records a message's parts one after the other
        parts = user_messages(answering.url, chat)[0]["parts"]
        return [(p["mime"], p["filename"]) for p in parts if p["type"] == "file"]

    assert wait_until(files, 30, "the image recorded") == [("image/png", "dot.png")]

    def sent(text: str) -> dict[str, Any] | None:
        return next((r for r in llm.requests if text in str(r["messages"][-1])), None)

    request = wait_until(lambda: sent("Describe this"), 30, "the model to be asked")
    assert request["model"] == SECOND_MODEL and images_sent(request) == [f"data:image/png;base64,{PNG}"]
    assert not Redis.from_url(stack.settings.redis_url).keys(f"{STASH_KEY}*")  # kept only until the prompt went

    turn = {"text": "And this one", "model": FIRST, "agent": "build", "attachments": [{**IMAGE, "filename": "b.png"}]}
    answered = stack.client.post(f"/admin/chats/{chat['session_id']}/prompt", json=turn)
    assert answered.status_code == 200, answered.get_json()
    request = wait_until(lambda: sent("And this one"), 30, "the model to be asked again")
    assert request["model"] == MODEL and images_sent(request)[-1] == f"data:image/png;base64,{PNG}"
    second = wait_until(lambda: user_messages(answering.url, chat)[1:], 30, "the second message")[0]
    assert second["info"]["agent"] == "build"


def test_the_image_limit_fits_what_caddy_lets_through(monkeypatch: pytest.MonkeyPatch) -> None:
    caddy = re.search(r"max_size (\d+)MB", (ROOT / "Caddyfile").read_text())
    assert caddy is not None
    largest = replace(load_settings(), attachments_max_mb=ATTACHMENTS_MAX_MB)
    assert body_limit(largest) < int(caddy.group(1)) * 1_000_000
    monkeypatch.setenv("MECODES_ATTACHMENTS_MAX_MB", str(ATTACHMENTS_MAX_MB + 1))
    with pytest.raises(SystemExit, match="MECODES_ATTACHMENTS_MAX_MB must be at most 14"):
        load_settings()
