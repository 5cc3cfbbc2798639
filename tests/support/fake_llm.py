"""A stand-in LLM provider: an OpenAI-compatible, streamed `/v1/chat/completions` on 127.0.0.1, so the real
`opencode serve` runs real turns here, where no model is reachable.

What it answers depends on the last user message of the conversation:
- `FAIL <reason>`: HTTP 401 with `<reason>`, as a provider refusing an API key does (opencode does not retry it);
- `RUN <shell command>`: a `bash` tool call running that command; once the tool's result comes back, `Done.`;
- `ASK <json>`: a `question` tool call with that JSON as its arguments (`{"questions": [...]}`), which opencode
  holds until the person answers; then `Done.` as for `RUN`;
- `WAIT <text>`: `Working on it` and then nothing, the stream held open (a slow model) until opencode hangs up,
  as it does when the session is aborted;
- `SLOW <seconds> <text>`: `<text>` streamed a word at a time over `<seconds>` (a reply streaming in);
- `SAY <text>`: exactly `<text>` (markdown, say), streamed in two chunks;
- anything else: `Echo: <text>`, streamed in two chunks.
opencode's side requests (a title for the session) are answered `Stub title`.
Every streamed answer reports usage (about 4 characters a token, so each request's figures differ) and the config
gives the models prices (PRICES), so opencode records a cost per reply; `llm.usage_of(marker)` tells what was reported.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.loopback import LoopbackServer, reply_json

PROVIDER = "stub"
MODEL = "echo"
SECOND_MODEL = "echo-two"  # a second model to choose (it answers as the first; the request names it)
WORKING = "Working on it"
PRICES = {"input": 3.0, "output": 15.0}  # $ per million tokens, as opencode's model config takes them


def opencode_config(base_url: str) -> dict[str, Any]:
    """opencode.json that makes this stand-in the only provider and its model the default; both its models take
    images (opencode sends an image part only to a model that does)."""
    modalities = {"input": ["text", "image"], "output": ["text"]}
    takes_images = {"tool_call": True, "attachment": True, "modalities": modalities}
    provider = {
        "npm": "@ai-sdk/openai-compatible",
        "name": "Stand-in LLM",
        "options": {"baseURL": f"{base_url}/v1", "apiKey": "not-a-real-key"},
        "models": {MODEL: {"name": "Echo", **takes_images}, SECOND_MODEL: {"name": "Echo two", **takes_images}},
    }
    for model in provider["models"].values():
        model["cost"] = PRICES  # opencode records each reply's cost from them
    only = {"enabled_providers": [PROVIDER]}  # not opencode's free models, nor Copilot's for GITHUB_TOKEN
    return {"provider": {PROVIDER: provider}, "model": f"{PROVIDER}/{MODEL}", "share": "disabled", **only}


def write_opencode_config(config_home: Path, base_url: str) -> None:
    """Into an XDG_CONFIG_HOME, before opencode starts."""
    (config_home / "opencode").mkdir(parents=True, exist_ok=True)
    (config_home / "opencode" / "opencode.json").write_text(json.dumps(opencode_config(base_url)))


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def images_sent(request: dict[str, Any]) -> list[str]:
    """The image parts' URLs (`data:<mime>;base64,...`) in the user messages of one request it was sent, as
    opencode sends an attachment to a model that takes images."""
    contents = [m.get("content") for m in request.get("messages") or [] if m.get("role") == "user"]
    parts = [part for content in contents if isinstance(content, list) for part in content if isinstance(part, dict)]
    return [part["image_url"]["url"] for part in parts if part.get("type") == "image_url"]


HOLD_SECONDS = 300


def _answer(messages: list[dict[str, Any]]) -> tuple[int, str | None, dict[str, Any] | None]:
    """(HTTP status, text to stream or error message, tool call) for this conversation."""
    system = " ".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    if "title generator" in system:
        return 200, "Stub title", None
    if messages and messages[-1].get("role") == "tool":
        return 200, "Done.", None
    last = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "").strip()
    if last.startswith("FAIL"):
        return 401, last.removeprefix("FAIL").strip() or "refused", None
    if last.startswith("WAIT"):
        return 200, WORKING, None
    if last.startswith("SLOW "):
        return 200, last, None
    if last.startswith("SAY "):
        return 200, last.removeprefix("SAY "), None
    if last.startswith("RUN "):
        command = last.removeprefix("RUN ").strip()
        return 200, None, {"name": "bash", "arguments": {"command": command, "description": "Run what was asked"}}
    if last.startswith("ASK "):
        return 200, None, {"name": "question", "arguments": json.loads(last.removeprefix("ASK "))}
    return 200, f"Echo: {last}", None


class FakeLLM(LoopbackServer):
    """`with FakeLLM() as llm:`; `llm.url` is its base URL, `llm.requests` the bodies it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.usages: list[tuple[dict[str, Any], dict[str, int]]] = []  # (request, usage) of each answer sent whole

    def usage_of(self, marker: str) -> list[dict[str, int]]:
        """The usage reported for the chat's own requests (not a title's) whose conversation mentions `marker`."""
        return [
            usage
            for request, usage in self.usages
            if marker in json.dumps(request["messages"]) and _answer(request["messages"])[1] != "Stub title"
        ]

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.command != "POST" or not handler.path.endswith("/chat/completions"):
            reply_json(handler, 404, {"error": {"message": "not here"}})
            return
        body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length") or 0)) or b"{}")
        self.requests.append(body)
        status, text, tool = _answer(body.get("messages") or [])
        if status != 200:
            reply_json(handler, status, {"error": {"message": text, "type": "invalid_request_error"}})
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        chunk = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
        pause = 0.0  # between chunks
        if tool:
            call = {"index": 0, "id": f"call_{len(self.requests)}", "type": "function"}
            call["function"] = {"name": tool["name"], "arguments": json.dumps(tool["arguments"])}
            deltas, finish = [{"role": "assistant", "tool_calls": [call]}], "tool_calls"
        elif text and text.startswith("SLOW "):
            _, seconds, words = [*text.split(maxsplit=2), ""][:3]
            deltas, finish = [{"role": "assistant", "content": f"{word} "} for word in words.split()], "stop"
            pause = float(seconds) / max(len(deltas), 1)
        else:
            text = text or ""
            deltas = [{"role": "assistant", "content": text[: len(text) // 2]}, {"content": text[len(text) // 2 :]}]
            finish = "stop"
        usage = _usage(body.get("messages") or [], deltas)
        choices = [[{"index": 0, "delta": d, "finish_reason": None}] for d in deltas]
        choices.append([{"index": 0, "delta": {}, "finish_reason": finish}])
        try:
            for i, choice in enumerate(choices):
                if i == len(choices) - 1 and text == WORKING:
                    _hold(handler)
                event = {**chunk, "choices": choice, **({"usage": usage} if i == len(choices) - 1 else {})}
                handler.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                handler.wfile.flush()
                time.sleep(pause)
            handler.wfile.write(b"data: [DONE]\n\n")
            self.usages.append((body, usage))
        except OSError:
            pass  # opencode hung up (an abort)


def _usage(messages: list[dict[str, Any]], deltas: list[dict[str, Any]]) -> dict[str, int]:
    """Made-up, plausible figures: about 4 characters a token of what was sent and what is answered."""
    prompt, completion = len(json.dumps(messages)) // 4, max(1, len(json.dumps(deltas)) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _hold(handler: BaseHTTPRequestHandler) -> None:
    """Keep the stream open with SSE comments until the client goes (a write fails) or HOLD_SECONDS pass."""
    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        handler.wfile.write(b": still thinking\n\n")
        handler.wfile.flush()
        time.sleep(0.2)
