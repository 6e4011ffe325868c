"""A local HTTP server that speaks enough of the OpenAI Chat Completions API for the real SDK.

It plays a *script* (see :mod:`tests.agents.scripted_server`): one step per
``POST /v1/chat/completions``, a canned completion (built with :func:`completion`), an
:class:`Error` (status, error type and code, optional ``retry-after``), or a function of the
request body that returns either. Every request is recorded so tests can assert what the backend
sent: the system message, the function tools, the ``tool`` messages that came back.

    with FakeOpenAI([completion(call("view_lineage")), completion(content="done")]) as api:
        backend = OpenAIBackend(base_url=api.base_url + "/v1", model="local-model")
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.agents.scripted_server import Error, Recorded, ScriptedServer, Step

__all__ = ["Error", "FakeOpenAI", "Recorded", "Step", "call", "completion", "raw_call", "result_text",
           "tool_messages"]


def call(name: str, id: str | None = None, **arguments: Any) -> dict[str, Any]:
    """A function tool call; its arguments are JSON text, as the API sends them. The id is
    assigned when it is served if not given (``id=""`` serves it without one)."""
    return raw_call(name, json.dumps(arguments), id=id)


def raw_call(name: str, arguments: str, id: str | None = None) -> dict[str, Any]:
    """A tool call whose arguments text is exactly ``arguments`` (malformed JSON, a list, ...)."""
    tc: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if id is not None:
        tc["id"] = id
    return tc


def completion(*calls: dict[str, Any], content: str | None = None, refusal: str | None = None,
               finish_reason: str | None = None, prompt_tokens: int = 100, completion_tokens: int = 20,
               cached_tokens: int = 0, usage: bool = True) -> dict[str, Any]:
    """A chat completion. ``finish_reason`` defaults to ``tool_calls`` when there are calls, else
    ``stop``. ``prompt_tokens`` includes ``cached_tokens``, as the API counts them."""
    if finish_reason is None:
        finish_reason = "tool_calls" if calls else "stop"
    step: dict[str, Any] = {"calls": list(calls), "content": content, "refusal": refusal,
                            "finish_reason": finish_reason}
    if usage:
        step["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        }
    return step


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``tool`` messages that end a request body (the answers to the last turn's calls),
    ignoring a trailing user message."""
    msgs = list(body.get("messages") or [])
    if msgs and msgs[-1].get("role") == "user":
        msgs.pop()
    out: list[dict[str, Any]] = []
    while msgs and msgs[-1].get("role") == "tool":
        out.insert(0, msgs.pop())
    return out


def result_text(body: dict[str, Any], index: int = -1) -> str:
    results = tool_messages(body)
    return results[index].get("content") or "" if results else ""


class FakeOpenAI(ScriptedServer):
    """The Chat Completions server. ``base_url`` is ``http://127.0.0.1:PORT``; the SDK's base URL
    is that plus ``/v1``."""

    route = "/v1/chat/completions"

    def __enter__(self) -> FakeOpenAI:
        super().__enter__()
        return self

    def keys(self) -> list[str]:
        return [self.key_of(r) for r in self.requests]

    def error_body(self, error: Error) -> dict[str, Any]:
        return {"error": {"message": error.message, "type": error.type, "param": None, "code": error.code}}

    def answer_body(self, step: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        calls = []
        for tc in step.get("calls", []):
            tc = dict(tc)
            if "id" not in tc:
                tc["id"] = f"call_fake_{self.next_id()}"
            calls.append(tc)
        message: dict[str, Any] = {"role": "assistant", "content": step.get("content"),
                                   "refusal": step.get("refusal")}
        if calls:
            message["tool_calls"] = calls
        out: dict[str, Any] = {
            "id": f"chatcmpl-fake-{self.next_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake-model"),
            "choices": [{"index": 0, "message": message, "finish_reason": step.get("finish_reason", "stop"),
                         "logprobs": None}],
        }
        if "usage" in step:
            out["usage"] = step["usage"]
        return out

