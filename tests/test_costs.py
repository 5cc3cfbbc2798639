"""What the agents cost (domain.costs, GET /admin/costs, the chat list's `cost` and `tokens`): the real opencode with
the stand-in model, which reports usage figures for every answer, at the prices the test's opencode config gives it
(tests/support/fake_llm.py). The cost must be exactly the stand-in's usage times those prices."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from redis import Redis

from domain.costs import DAY_KEY, SEEN_KEY, Ledger
from tests.conftest import Stack, wait_until
from tests.support.fake_llm import PRICES, FakeLLM
from tests.test_agent import answering_opencode, answering_server, github, listed, llm, repo, stack  # noqa: F401
from tests.test_chats import new_chat


def expected(llm: FakeLLM, marker: str) -> dict[str, Any]:  # noqa: F811
    """What opencode must have recorded for the requests that mention `marker`: tokens as reported, cost at PRICES."""
    usages = llm.usage_of(marker)
    prompt, completion = sum(u["prompt_tokens"] for u in usages), sum(u["completion_tokens"] for u in usages)
    tokens = {"input": prompt, "output": completion, "reasoning": 0, "cache_read": 0, "cache_write": 0}
    return {"cost": (prompt * PRICES["input"] + completion * PRICES["output"]) / 1_000_000, "tokens": tokens}


def recorded(stack: Stack, session_id: str, llm: FakeLLM, marker: str, answers: int) -> tuple[dict, dict]:  # noqa: F811
    """The chat's entry and the expected figures, once the stand-in gave its `answers` and they agree."""
    wait_until(lambda: len(llm.usage_of(marker)) == answers, 60, f"{answers} answers about {marker}")

    def matches() -> tuple[dict[str, Any], dict[str, Any]] | None:
        entry, want = listed(stack, session_id), expected(llm, marker)
        if not want["cost"] or entry["tokens"] != want["tokens"]:
            return None
        return (entry, want) if entry["cost"] == pytest.approx(want["cost"], rel=1e-9) else None

    return wait_until(matches, 60, f"the chat's cost to be the stand-in's usage for {marker}")


def total(stack: Stack) -> dict[str, Any]:  # noqa: F811
    response = stack.client.get("/admin/costs")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_chats_cost_is_the_models_usage_at_the_configured_prices(
    stack: Stack,  # noqa: F811
    repo: str,  # noqa: F811
    llm: FakeLLM,  # noqa: F811
) -> None:
    marker = f"cost-{uuid.uuid4().hex[:8]}"
    chat = new_chat(stack, repo=repo, prompt=f"RUN echo {marker}")["result"]  # a tool call, then its answer
    entry, _ = recorded(stack, chat["session_id"], llm, marker, answers=2)
    assert entry["cost"] > 0.001  # the stand-in's figures are not trivial
    unasked = listed(stack, new_chat(stack, repo=repo, title="nothing asked yet")["result"]["session_id"])
    assert (unasked["cost"], unasked["tokens"]["input"]) == (0, 0)


def test_the_30_day_total_keeps_what_a_deleted_chat_spent(
    stack: Stack,  # noqa: F811
    repo: str,  # noqa: F811
    llm: FakeLLM,  # noqa: F811
) -> None:
    before = total(stack)
    assert before["days"] == 30
    marker = f"gone-{uuid.uuid4().hex[:8]}"
    chat = new_chat(stack, repo=repo, prompt=f"Spend something {marker}")["result"]
    _, want = recorded(stack, chat["session_id"], llm, marker, answers=1)
    done = stack.api.wait(stack.client.delete(f"/admin/chats/{chat['session_id']}?force=true").get_json())
    assert done["status"] == "finished", done

    after = total(stack)
    assert after["cost"] - before["cost"] == pytest.approx(want["cost"], rel=1e-9)
    assert {k: after["tokens"][k] - before["tokens"][k] for k in want["tokens"]} == want["tokens"]
    assert after["since"] == time.strftime("%Y-%m-%d", time.gmtime(time.time() - 29 * 86400))


def session(sid: str, cost: float, tokens: int, updated_days_ago: float) -> dict[str, Any]:
    updated = int((time.time() - updated_days_ago * 86400) * 1000)
    figures = {"input": tokens, "output": 1, "reasoning": 0, "cache": {"read": 0, "write": 0}}
    return {"id": sid, "cost": cost, "tokens": figures, "time": {"updated": updated}}


def test_the_ledger_counts_each_growth_once_on_the_day_it_happened(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    ledger = Ledger(redis)
    a, b, old = (f"ses_{name}{uuid.uuid4().hex[:6]}" for name in ("a", "b", "old"))
    start, today = ledger.total(), ledger.total(days=1)
    ledger.observe([session(a, 0.5, 100, 0), session(old, 9.0, 900, 40)])  # 40 days ago: not counted
    with ThreadPoolExecutor(8) as pool:  # eight lists at once see the same growth: it counts once
        list(pool.map(lambda _: ledger.observe([session(a, 0.75, 150, 0), session(b, 0.25, 10, 0)]), range(8)))
    grown = ledger.total()
    assert grown["cost"] - start["cost"] == pytest.approx(1.0)
    assert grown["tokens"]["input"] - start["tokens"]["input"] == 160
    assert ledger.total(days=1)["cost"] - today["cost"] == pytest.approx(1.0)
    assert 0 < redis.ttl(f"{DAY_KEY}{time.strftime('%Y-%m-%d', time.gmtime())}") <= 31 * 86400  # days expire
    ledger.forget(a)  # deleted: what it spent stays counted
    assert redis.hget(SEEN_KEY, a) is None and ledger.total()["cost"] == pytest.approx(grown["cost"])
