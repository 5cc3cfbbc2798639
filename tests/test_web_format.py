"""The agent's replies read as formatted text, a stop reads as a stop, the composer gives its room back, and what a
chat cost is shown. Chromium at a phone's size through Caddy, the real opencode with the stand-in model (its `SAY`
answers a given markdown text; every answer reports usage, priced by the test's opencode config: see
tests/support/fake_llm.py and tests/test_web.py)."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from tests.conftest import Origin, wait_until
from tests.support.fake_llm import PRICES, FakeLLM
from tests.test_stack import RunningStack, new_chat
from tests.test_web import PHONE, Phone, llm, phone, stack  # noqa: F401 - fixtures, by name

LONG_LINE = "x = " + " + ".join(f"value_{i}" for i in range(60))
REPLY = f"""Here is the **plan**, with a [link](https://example.com/docs) and `inline code`.

```python
{LONG_LINE}
print("done")
```

| step | what | status |
|---|---|---|
| 1 | read the code | done |
| 2 | write the tests | doing |

<script>window.__pwned = 'script'</script>
<img src="/nothing.png" onerror="window.__pwned = 'img'">

[a trap](javascript:window.__pwned='link') and ![a picture](https://example.com/a.png)"""


@pytest.fixture
def repo(origin: Origin) -> str:
    name = f"format{uuid.uuid4().hex[:6]}/app"
    origin.create(name)
    return name


def vendored_loaded(phone: Phone) -> list[str]:  # noqa: F811
    return phone.page.evaluate(
        "() => performance.getEntriesByType('resource').map((r) => r.name).filter((n) => n.includes('/vendor/'))"
    )


def test_a_reply_renders_formatted_and_nothing_in_it_runs(phone: Phone, stack: RunningStack, repo: str) -> None:  # noqa: F811
    phone.go("#/chats")
    expect(phone.page.get_by_role("heading", name="Chats")).to_be_visible()
    assert vendored_loaded(phone) == []  # the list does not pay for the markdown libraries

    chat = new_chat(stack, repo, prompt=f"SAY {REPLY}")
    page = phone.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    phone.go(f"#/chat/{chat['session_id']}")
    reply = page.locator(".msg-assistant .markdown")
    expect(reply.locator("strong")).to_have_text("plan", timeout=60_000)
    assert len(vendored_loaded(phone)) == 2
    expect(reply.locator("code", has_text="inline code")).to_be_visible()
    expect(reply.locator(".code-lang")).to_have_text("python")
    expect(reply.locator("table th")).to_have_text(["step", "what", "status"])
    expect(reply.locator("table tbody tr")).to_have_count(2)
    link = reply.get_by_role("link", name="link", exact=True)
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    # The model's HTML is shown as the text it is; nothing of it runs, loads or links anywhere.
    expect(reply).to_contain_text("<script>window.__pwned = 'script'</script>")
    expect(reply).to_contain_text('<img src="/nothing.png"')
    assert reply.locator("script, img, iframe, [onerror]").count() == 0
    expect(reply.locator("a", has_text="a trap")).not_to_have_attribute("href", "javascript:window.__pwned='link'")
    assert reply.locator("a", has_text="a trap").get_attribute("href") is None
    expect(reply.get_by_role("link", name="a picture")).to_have_attribute("href", "https://example.com/a.png")
    reply.locator("a", has_text="a trap").click()
    assert page.evaluate("() => window.__pwned") is None

    # The code block scrolls sideways inside itself; the page does not. Measured in one go once the turn is over: a
    # reply drawn again meanwhile would leave a handle on the old block, detached and 0 px wide.
    expect(page.locator(".chat-head .badge")).to_have_text("idle", timeout=30_000)
    widths = page.evaluate(
        """() => {
            const pre = document.querySelector('.msg-assistant .markdown .code-block pre');
            return [pre.scrollWidth, pre.clientWidth, document.documentElement.scrollWidth];
        }"""
    )
    assert widths[0] > widths[1] and widths[2] <= PHONE["width"], widths
    phone.shot("chat-reply-formatted")
    # Copy puts the code itself on the clipboard.
    reply.get_by_role("button", name="Copy").click()
    expect(reply.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == f'{LONG_LINE}\nprint("done")\n'
    phone.fits_narrow_screen("chat-reply-formatted")


def test_a_stop_the_person_asked_for_reads_stopped(phone: Phone, stack: RunningStack, repo: str) -> None:  # noqa: F811
    chat = new_chat(stack, repo, prompt="WAIT until I am stopped")
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    expect(page.locator(".chat-head .badge")).to_have_text("working", timeout=30_000)
    page.get_by_role("button", name="Abort").click()
    reply = page.locator(".msg-assistant").last
    expect(reply.locator(".stopped-note")).to_have_text("Stopped.", timeout=30_000)
    expect(page.locator(".chat-head .badge")).to_have_text("idle")
    expect(page.locator("main .error")).to_have_count(0)  # no red error anywhere
    phone.shot("chat-stopped")

    page.get_by_role("link", name="Chats", exact=True).click()
    item = page.locator(f'a[data-session="{chat["session_id"]}"]')
    expect(item.locator(".badge").first).to_have_text("stopped", timeout=30_000)
    expect(item.locator(".error-text")).to_have_count(0)
    phone.shot("chats-stopped")


def test_the_composer_grows_to_a_limit_and_shrinks_back_once_sent(phone: Phone, stack: RunningStack, repo: str) -> None:  # noqa: F811
    chat = new_chat(stack, repo, prompt="Hello")
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    composer = page.locator("#prompt")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    height = lambda: composer.evaluate("(el) => el.getBoundingClientRect().height")  # noqa: E731
    empty = height()
    composer.fill("\n".join(f"line {i} of a long message" for i in range(40)))
    composer.dispatch_event("input")
    grown = height()
    phone.shot("chat-composer-grown")
    page.get_by_role("button", name="Send").click()
    expect(composer).to_have_value("")
    shrunk = height()
    print(f"composer: {empty:.0f} px empty, {grown:.0f} px with 40 lines, {shrunk:.0f} px once sent")
    assert empty < grown <= PHONE["height"] * 0.25 + 1 and shrunk == empty


def money(dollars: float) -> str:
    """As the phone writes it (web/cost.js)."""
    return f"${dollars:.4f}" if 0 < dollars < 1 else f"${dollars:.2f}"


def usage_text(usages: list[dict[str, int]]) -> str:
    prompt, completion = sum(u["prompt_tokens"] for u in usages), sum(u["completion_tokens"] for u in usages)
    total = prompt + completion
    count = f"{total / 1e6:.1f}M" if total >= 1e6 else f"{total / 1e3:.1f}k" if total >= 1e3 else str(total)
    return f"{count} tokens · {money((prompt * PRICES['input'] + completion * PRICES['output']) / 1_000_000)}"


def test_the_cost_shown_is_the_models_usage_at_the_configured_prices(
    phone: Phone,  # noqa: F811
    stack: RunningStack,  # noqa: F811
    repo: str,
    llm: FakeLLM,  # noqa: F811
) -> None:
    marker = f"priced-{uuid.uuid4().hex[:8]}"
    chat = new_chat(stack, repo, prompt=f"RUN echo {marker}")
    wait_until(lambda: len(llm.usage_of(marker)) == 2, 60, "the tool call and the answer after it")
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    expect(page.locator(".chat-head .chat-usage")).to_have_text(usage_text(llm.usage_of(marker)), timeout=30_000)

    # The next reply's cost is added live, from the message events.
    page.fill("#prompt", f"SAY One more *reply* about {marker}")
    page.get_by_role("button", name="Send").click()
    wait_until(lambda: len(llm.usage_of(marker)) == 3, 60, "the next answer")
    expect(page.locator(".chat-head .chat-usage")).to_have_text(usage_text(llm.usage_of(marker)), timeout=30_000)
    phone.shot("chat-cost")

    page.get_by_role("link", name="Chats", exact=True).click()
    item = page.locator(f'a[data-session="{chat["session_id"]}"]')
    expect(item.locator(".chat-usage")).to_have_text(usage_text(llm.usage_of(marker)), timeout=30_000)
    phone.shot("chats-cost")

    # Resources: the last 30 days, as the sidecar adds them up (tests/test_costs.py checks that sum).
    status, costs = stack.request("GET", "/admin/costs")
    assert status == 200 and costs["cost"] >= sum(
        (u["prompt_tokens"] * PRICES["input"] + u["completion_tokens"] * PRICES["output"]) / 1e6
        for u in llm.usage_of(marker)
    ) * (1 - 1e-9), costs
    page.get_by_role("link", name="Resources").click()
    total = page.locator("#costs .cost-total")
    expect(total).to_contain_text(money(costs["cost"]))
    phone.shot("resources-cost")
