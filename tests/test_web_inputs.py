"""Questions and permission requests on the phone: the agent's question (opencode's question tool, which the stand-in
model calls on `ASK <json>`) and its request to run a command (`"permission": {"bash": "ask"}`) show in the chat,
are answered there and the agent goes on; they survive a reload, and answered on one device they go from the other;
a chat waiting on the person is first in the list with a badge saying so. Chromium at a phone's size, through Caddy,
the real opencode (see tests/test_web.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Origin
from tests.support.fake_llm import FakeLLM
from tests.test_needs_input import COLOUR, ask, listed, pending, reply, tool_results
from tests.test_stack import RunningStack, new_chat, prompt_via_api
from tests.test_web import Phone, close, new_phone

EXTRAS = {
    "question": "Which extras do you want?",
    "header": "Extras",
    "options": [{"label": "Border", "description": "a thin line"}, {"label": "Shadow", "description": "depth"}],
    "multiple": True,
}
DENIED = "The user rejected permission to use this specific tool call."


@pytest.fixture
def llm(asking_llm: FakeLLM) -> FakeLLM:
    return asking_llm


@pytest.fixture
def stack(asking_stack: RunningStack) -> RunningStack:
    return asking_stack


@pytest.fixture
def phone(browser: Browser, stack: RunningStack, request: pytest.FixtureRequest) -> Iterator[Phone]:
    p = new_phone(browser, stack)
    yield p
    close(p, request.node.name)


@pytest.fixture
def repo(origin: Origin) -> str:
    name = f"inputs{uuid.uuid4().hex[:6]}/app"
    origin.create(name)
    return name


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.get_by_role("button", name="Send").click()


def finished(page: Page) -> None:
    """The agent's turn is over: its last words are the stand-in's `Done.`, and the chat reads idle."""
    expect(page.locator(".msg-assistant").last).to_contain_text("Done.", timeout=30_000)
    expect(page.locator(".chat-head .badge")).to_have_text("idle", timeout=30_000)


def test_a_question_is_answered_on_the_phone_and_the_agent_completes(
    phone: Phone, stack: RunningStack, repo: str, llm: FakeLLM
) -> None:
    chat = new_chat(stack, repo)
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    send(page, ask(COLOUR, EXTRAS))
    card = page.locator("form.ask-question")
    expect(card).to_be_visible(timeout=30_000)
    expect(card).to_contain_text("The agent asks you, and waits for your answer")
    colour, extras = card.locator("fieldset.ask-q").nth(0), card.locator("fieldset.ask-q").nth(1)
    expect(colour.locator("legend")).to_have_text("Colour")
    expect(colour).to_contain_text(COLOUR["question"])
    expect(colour.locator("input[type=radio]")).to_have_count(2)
    expect(extras.locator("input[type=checkbox]")).to_have_count(2)
    expect(colour.get_by_label(re.compile("Your own answer"))).to_be_visible()  # opencode allows one by default
    phone.shot("chat-question")
    phone.fits_narrow_screen("chat-question")

    card.get_by_role("button", name="Answer").click()
    expect(card.get_by_role("alert")).to_contain_text("Choose or write an answer to “Colour”.")
    colour.locator("label", has_text="Blue").click()
    extras.locator("label", has_text="Shadow").click()
    extras.get_by_label(re.compile("Your own answer")).fill("Rounded corners")
    phone.shot("chat-question-chosen")
    card.get_by_role("button", name="Answer").click()
    expect(card).to_have_count(0)
    finished(page)
    expected = f'"{COLOUR["question"]}"="Blue", "{EXTRAS["question"]}"="Shadow, Rounded corners"'
    assert any(expected in result for result in tool_results(llm)), tool_results(llm)
    phone.shot("chat-question-answered")


def test_a_permission_allowed_once_runs_and_one_denied_says_so(phone: Phone, stack: RunningStack, repo: str) -> None:
    chat = new_chat(stack, repo)
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    send(page, "RUN echo allowed > allowed.txt")
    card = page.locator("form.ask-permission")
    expect(card).to_contain_text("The agent asks to run a command", timeout=30_000)
    expect(card.locator("pre")).to_have_text("$ echo allowed > allowed.txt")
    expect(card).to_contain_text("“Always” allows echo * from now on without asking.")
    expect(page.locator(".chat-head .badge")).to_have_text("needs your input")
    phone.shot("chat-permission")
    phone.fits_narrow_screen("chat-permission")
    card.get_by_role("button", name="Allow once").click()
    expect(card).to_have_count(0)
    finished(page)
    assert (Path(chat["path"]) / "allowed.txt").read_text() == "allowed\n"

    send(page, "RUN touch denied.txt")
    expect(card).to_contain_text("$ touch denied.txt", timeout=30_000)
    card.get_by_role("button", name="Deny").click()
    expect(card).to_have_count(0)
    step = page.locator(".msg-assistant details.tool", has_text="Run what was asked").last
    expect(step.locator("summary .badge")).to_have_text("failed", timeout=30_000)
    expect(page.locator(".chat-head .badge")).to_have_text("idle", timeout=30_000)
    step.locator("summary").click()
    expect(step).to_contain_text(DENIED)
    assert not (Path(chat["path"]) / "denied.txt").exists()
    phone.shot("chat-permission-denied")


def test_requests_survive_a_reload_and_answered_on_one_device_go_from_the_other(
    browser: Browser,
    stack: RunningStack,
    repo: str,
) -> None:
    chat = new_chat(stack, repo, prompt=ask(COLOUR))
    listed(stack, chat, "needs-input")
    a, b = new_phone(browser, stack), new_phone(browser, stack)
    try:
        for p in (a, b):
            p.go(f"#/chat/{chat['session_id']}")
            expect(p.page.locator("form.ask-question")).to_contain_text(COLOUR["question"], timeout=30_000)
        a.page.reload()
        expect(a.page.locator("form.ask-question")).to_contain_text(COLOUR["question"], timeout=30_000)
        a.shot("chat-question-after-reload")
        b.page.locator("form.ask-question label", has_text="Red").click()
        b.page.get_by_role("button", name="Answer").click()
        expect(a.page.locator("form.ask-question")).to_have_count(0)  # live, over a's event stream
        finished(a.page)

        prompt_via_api(stack, chat, "RUN touch both.txt")
        for p in (a, b):
            expect(p.page.locator("form.ask-permission")).to_contain_text("$ touch both.txt", timeout=30_000)
        b.page.reload()
        expect(b.page.locator("form.ask-permission")).to_contain_text("$ touch both.txt", timeout=30_000)
        b.shot("chat-permission-after-reload")
        a.page.get_by_role("button", name="Allow once").click()
        expect(b.page.locator("form.ask-permission")).to_have_count(0)
        finished(b.page)
        assert (Path(chat["path"]) / "both.txt").exists()
    finally:
        close(a, "inputs-device-a")
        close(b, "inputs-device-b")


def test_a_chat_waiting_on_the_person_is_first_in_the_list(
    phone: Phone, stack: RunningStack, repo: str, origin: Origin
) -> None:
    waiting = new_chat(stack, repo, prompt="RUN touch listed.txt")
    other = f"inputs{uuid.uuid4().hex[:6]}/other"
    origin.create(other)
    newer = new_chat(stack, other, prompt="Say hello")
    listed(stack, waiting, "needs-input")
    listed(stack, newer, "idle")
    page = phone.page
    phone.go("#/chats")
    first = page.locator(".list li").first
    expect(first.locator("a")).to_have_attribute("data-session", waiting["session_id"])
    expect(first.locator(".badge").first).to_have_text("needs your input")
    expect(first).to_contain_text("Asks permission: bash: touch listed.txt")
    phone.shot("chats-needs-input")
    phone.fits_narrow_screen("chats-needs-input")

    reply(stack, "permission", waiting, "reply", {"reply": "once"})  # from another device: the list follows live
    expect(page.locator(f'[data-session="{waiting["session_id"]}"] .badge').first).to_have_text("idle", timeout=30_000)


def test_a_question_goes_when_its_turn_is_aborted_and_stays_gone_after_a_reload(
    phone: Phone, stack: RunningStack, repo: str
) -> None:
    chat = new_chat(stack, repo, prompt=ask(COLOUR))
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    card = page.locator("form.ask-question")
    expect(card).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Abort").click()
    expect(card).to_have_count(0)
    with page.expect_response(lambda r: f"/message/{pending(stack, 'question', chat)['tool']['messageID']}" in r.url):
        page.reload()  # opencode still lists the question: the page looks at its step, which ended with the abort
    expect(page.locator(".msg-assistant details.tool", has_text="question").locator(".badge")).to_have_text("failed")
    expect(card).to_have_count(0)
    phone.shot("chat-question-aborted")
