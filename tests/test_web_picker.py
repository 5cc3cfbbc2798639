"""The phone's model and agent picker and its images, in Chromium against the production stack (see tests/test_web.py):
a model and agent chosen in New chat reach opencode and are remembered on the device, an image attached on the phone
is resized there and reaches the model as an image part, and a stack without a provider of one's own says so."""

from __future__ import annotations

import base64
import struct
import urllib.parse
import zlib
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Origin, wait_until
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import MODEL, PROVIDER, SECOND_MODEL, FakeLLM, images_sent
from tests.test_stack import RunningStack, running_stack
from tests.test_web import (  # noqa: F401 - fixtures, by name
    REPOS,
    Phone,
    close,
    git_server,
    github,
    llm,
    new_phone,
    phone,
    stack,
)

WIDE = (3000, 1200)  # a photo's size: the phone draws it at most 1568 px on its longest side


def png(width: int, height: int) -> bytes:
    """A plain PNG of that size (one colour: small however large)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + b"\x30\x80\xc0" * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_size(data_url: str) -> tuple[int, int]:
    data = base64.b64decode(data_url.split(",", 1)[1])
    assert data.startswith(b"\x89PNG"), data_url[:40]
    return struct.unpack(">II", data[16:24])


def asked_with(model: FakeLLM, text: str) -> dict[str, Any] | None:
    return next((r for r in reversed(model.requests) if text in str(r["messages"][-1])), None)


def user_infos(running: RunningStack, session_id: str) -> list[dict[str, Any]]:
    status, chat = running.request("GET", f"/admin/chats/{session_id}")
    assert status == 200, chat
    query = urllib.parse.urlencode({"directory": chat["path"]})
    status, messages = running.request("GET", f"/session/{session_id}/message?{query}")
    assert status == 200, messages
    return [m["info"] for m in messages if m["info"]["role"] == "user"]


def test_model_agent_and_image_chosen_in_new_chat_reach_the_model(
    phone: Phone,  # noqa: F811
    stack: RunningStack,  # noqa: F811
    llm: FakeLLM,  # noqa: F811
) -> None:
    page = phone.page
    phone.go("#/new")
    expect(page.locator("#new-model")).to_be_visible(timeout=60_000)  # opencode's first listing loads its providers
    expect(page.locator("#new-model")).to_have_value(f"{PROVIDER}/{MODEL}")  # opencode's default
    expect(page.locator("#new-agent")).to_have_value("build")
    expect(page.locator("#new-agent option")).to_have_text(["build", "plan"])  # primary agents only
    phone.shot("picker-new-chat")

    page.fill("#repo", REPOS[0])
    page.fill("#prompt", "Plan the picture")
    page.select_option("#new-model", f"{PROVIDER}/{SECOND_MODEL}")
    page.select_option("#new-agent", "plan")
    page.set_input_files("#new-images", {"name": "wide.png", "mimeType": "image/png", "buffer": png(*WIDE)})
    expect(page.locator(".thumbs img")).to_have_count(1)
    phone.shot("picker-new-chat-image")
    phone.fits_narrow_screen("picker-new-chat-image")
    page.get_by_role("button", name="Start chat").click()
    page.wait_for_url("**/#/chat/ses*", timeout=60_000)
    session_id = page.url.rsplit("/", 1)[1]

    request = wait_until(lambda: asked_with(llm, "Plan the picture"), 30, "the model to be asked")
    assert request["model"] == SECOND_MODEL
    [image] = images_sent(request)
    assert png_size(image) == (1568, round(1568 * WIDE[1] / WIDE[0]))  # resized on the phone, kept PNG
    assert [i["agent"] for i in user_infos(stack, session_id)] == ["plan"]  # the session's agent is the chosen one
    expect(page.locator(".msg-user img.thumb")).to_be_visible()
    expect(page.locator("#composer-model")).to_have_value(f"{PROVIDER}/{SECOND_MODEL}")  # the chat's own
    expect(page.locator("#composer-agent")).to_have_value("plan")

    phone.go("#/new")  # the choice is remembered on this device
    expect(page.locator("#new-model")).to_have_value(f"{PROVIDER}/{SECOND_MODEL}")
    expect(page.locator("#new-agent")).to_have_value("plan")


def test_an_image_attached_in_the_composer_reaches_the_model(
    phone: Phone,  # noqa: F811
    llm: FakeLLM,  # noqa: F811
) -> None:
    page = phone.page
    phone.go("#/new")
    page.fill("#repo", REPOS[1])
    page.fill("#prompt", "Hello there")
    page.get_by_role("button", name="Start chat").click()
    page.wait_for_url("**/#/chat/ses*", timeout=60_000)
    expect(page.locator("#composer-model")).to_be_visible()

    page.select_option("#composer-agent", "build")
    page.fill("#prompt", "What is in this one")
    page.set_input_files("#composer-images", {"name": "small.png", "mimeType": "image/png", "buffer": png(40, 20)})
    expect(page.locator(".prompt .thumbs img")).to_have_count(1)
    phone.shot("picker-composer-image")
    page.get_by_role("button", name="Send").click()
    request = wait_until(lambda: asked_with(llm, "What is in this one"), 30, "the model to be asked")
    assert [png_size(url) for url in images_sent(request)] == [(40, 20)]
    expect(page.locator(".msg-user img.thumb")).to_be_visible()
    expect(page.locator(".prompt .thumbs img")).to_have_count(0)
    phone.shot("picker-composer-image-sent")


def test_without_a_provider_the_phone_says_what_to_do(
    browser: Browser,
    github: FakeGitHub,  # noqa: F811
    tmp_path: Path,
    origin: Origin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", github.url)  # the repo list answers
    with running_stack(tmp_path, origin) as bare:  # no stand-in model: opencode as bin/start configures it
        phone = new_phone(browser, bare)
        phone.go("#/new")
        note = phone.page.get_by_role("status").filter(has_text="No model provider")
        expect(note).to_be_visible(timeout=60_000)  # opencode, offline here, takes a while to list its providers
        expect(note).to_contain_text("OPENROUTER_API_KEY")
        phone.shot("picker-no-provider")
        phone.fits_narrow_screen("picker-no-provider")
        close(phone, "picker-no-provider")
