"""A proposal backend over the OpenAI Chat Completions API — OpenAI itself, or any server that
speaks it: vLLM, llama.cpp's server, Ollama, OpenRouter, LM Studio, ...

The conversation (tools, working copy, checks, turn limit, retries, accounting, transcript) is
:mod:`agents.tool_loop` over :mod:`agents.tools`; this module is the Chat Completions half of it:
the tools as function tools, the system prompt as the first message, each tool result as a
``tool`` message, the answer's ``tool_calls`` (whose arguments arrive as JSON text), ``refusal``,
``finish_reason`` and ``usage`` translated into a :class:`~agents.tool_loop.Reply`, the SDK's errors
classified for the retry loop, and OpenAI's list prices.

The key is ``api_key=``, else ``OPENAI_API_KEY``. A server on this machine or a private network
needs none (a placeholder is sent); any other base URL without a key raises
:class:`~agents.base.MissingAPIKey` naming ``OPENAI_API_KEY``. ``prompt_tokens`` counts cached
input too: the fresh input recorded is ``prompt_tokens - cached_tokens - cache_write_tokens``.
The SDK client is built with ``max_retries=0``: the loop retries (429, 408, 409, 5xx, connection
errors; not ``insufficient_quota``), honours ``retry-after`` and counts each retry.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from agents.base import MissingAPIKey, Proposal, ProposalContext
from agents.prices import Price, PriceTable
from agents.tool_loop import (
    APIFailure,
    Message,
    Reply,
    Settings,
    Tokens,
    ToolCall,
    converse,
    retry_after,
    retryable_status,
)
from agents.tools import MAX_DIFF_BYTES, TOOLS, ToolResult

DEFAULT_MODEL = "gpt-5.4"
OPENAI_HOST = "api.openai.com"
NO_KEY = "no-key"  # sent to local servers, which take any key (or none)

# OpenAI's published list prices, standard tier (developers.openai.com/api/docs/pricing).
# OpenAI does not charge for writing its prompt cache: cache_write is the input price.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5.5": Price(5.0, 30.0, 0.50, 5.0),
    "gpt-5.4": Price(2.50, 15.0, 0.25, 2.50),
    "gpt-5.4-mini": Price(0.75, 4.50, 0.075, 0.75),
    "gpt-5.4-nano": Price(0.20, 1.25, 0.02, 0.20),
    "gpt-5": Price(1.25, 10.0, 0.125, 1.25),
    "gpt-5-mini": Price(0.25, 2.0, 0.025, 0.25),
    "gpt-5-nano": Price(0.05, 0.40, 0.005, 0.05),
    "gpt-4.1": Price(2.0, 8.0, 0.50, 2.0),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10, 0.40),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025, 0.10),
    "gpt-4o": Price(2.50, 10.0, 1.25, 2.50),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075, 0.15),
    "o3": Price(2.0, 8.0, 0.50, 2.0),
    "o4-mini": Price(1.10, 4.40, 0.275, 1.10),
}


def default_prices() -> PriceTable:
    return PriceTable(DEFAULT_PRICES)


def is_local(base_url: str | None) -> bool:
    """A server on this machine or a private network (loopback, RFC 1918, link-local, a single-label
    or ``.local``/``.internal`` host name): one that needs no API key unless it was set up with one."""
    if not base_url:
        return False
    host = (urllib.parse.urlsplit(base_url if "//" in base_url else f"//{base_url}").hostname or "").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host  # a single-label name: a container or a machine on the LAN
    return ip.is_loopback or ip.is_private or ip.is_link_local


def function_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in TOOLS]


@dataclass
class OpenAIBackend:
    """The Chat Completions API as a proposal backend.

    ``base_url``: the server's API root (``http://127.0.0.1:8000/v1``); default ``OPENAI_BASE_URL``,
    else OpenAI. ``model``: required with another server's ``base_url``; default ``gpt-5.4`` for
    OpenAI. ``max_tokens`` bounds each answer, sent as ``max_completion_tokens`` to OpenAI and as
    ``max_tokens`` elsewhere (what local servers understand) unless ``max_tokens_param`` says.
    ``prices``: the table costs are read from; ``--price-in/--price-out`` add a ``*`` entry.
    ``max_retries``/``backoff_s``/``sleep``/``max_diff_bytes`` as for the Anthropic backend."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    max_turns: int = 24
    max_tokens: int = 8192
    max_tokens_param: str | None = None
    prices: PriceTable = field(default_factory=default_prices)
    max_retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 120.0
    max_diff_bytes: int = MAX_DIFF_BYTES
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    name: str = "openai"

    def __post_init__(self) -> None:
        self.base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None
        official = self.base_url is None or urllib.parse.urlsplit(self.base_url).hostname == OPENAI_HOST
        key = self.api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not is_local(self.base_url):
                where = f"the server at {self.base_url}" if self.base_url else "OpenAI"
                raise MissingAPIKey(
                    f"no API key for {where}: set OPENAI_API_KEY, or point --base-url at a local server "
                    "(vLLM, llama.cpp, Ollama), or run with `--backend heuristic` (the offline default)")
            key = NO_KEY
        if self.model is None:
            if not official:
                raise ValueError(f"name the model the server at {self.base_url} serves: --model NAME")
            self.model = DEFAULT_MODEL
        if self.max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        if self.max_tokens_param is None:
            self.max_tokens_param = "max_completion_tokens" if official else "max_tokens"
        if self.max_tokens_param not in ("max_completion_tokens", "max_tokens"):
            raise ValueError(f"max_tokens_param must be max_completion_tokens or max_tokens, "
                             f"not {self.max_tokens_param!r}")
        self.api_key = key
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s)

    def close(self) -> None:
        self._client.close()

    def settings(self) -> Settings:
        return Settings(backend=self.name, model=self.model or DEFAULT_MODEL, prices=self.prices,
                        max_turns=self.max_turns, max_retries=self.max_retries, backoff_s=self.backoff_s,
                        max_diff_bytes=self.max_diff_bytes, sleep=self.sleep)

    def propose(self, ctx: ProposalContext) -> Proposal:
        return converse(_ChatCompletions(self), ctx, self.settings())


class _ChatCompletions:
    """One conversation's requests and answers in the Chat Completions shape."""

    def __init__(self, backend: OpenAIBackend):
        self.b = backend
        self.api = "the API at " + backend.base_url if backend.base_url else "the OpenAI API"
        self.params: dict[str, Any] = {}
        self._ids = 0

    def opening(self, system: str, first: str) -> list[Message]:
        b = self.b
        self.params = {"model": b.model, "tools": function_tools(), str(b.max_tokens_param): b.max_tokens}
        return [{"role": "system", "content": system}, *self.user_turn(first)]

    def send(self, messages: list[Message]) -> Reply:
        resp: ChatCompletion = self.b._client.chat.completions.create(messages=messages, **self.params)
        tokens, note = _tokens(resp)
        if not resp.choices:
            return Reply(message={}, text="", calls=(), stop="(no choices)", tokens=tokens, note=note)
        choice = resp.choices[0]
        msg = choice.message
        calls: list[ToolCall] = []
        echo: list[dict[str, Any]] = []
        for tc in msg.tool_calls or []:
            if tc.type != "function":
                note = (note + "; " if note else "") + f"ignored a {tc.type!r} tool call"
                continue
            raw: object = tc.function.arguments  # JSON text, by the API's contract
            self._ids += 1
            call_id = tc.id or f"call_arledger_{self._ids}"  # some local servers send none
            calls.append(ToolCall(call_id, tc.function.name, raw))
            echo.append({"type": "function", "id": call_id, "function": {
                "name": tc.function.name, "arguments": raw if isinstance(raw, str) else _json(raw)}})
        message: Message = {"role": "assistant", "content": msg.content or ""}
        if echo:
            message["tool_calls"] = echo
        finish = choice.finish_reason or ""
        refusal = msg.refusal if msg.refusal else ("" if finish == "content_filter" else None)
        return Reply(message=message, text=msg.content or "", calls=tuple(calls), stop=finish, tokens=tokens,
                     refusal=refusal, truncated=finish == "length", thinking=_reasoning(msg.model_extra), note=note)

    def failure(self, error: Exception) -> APIFailure | None:
        if isinstance(error, openai.APIConnectionError):  # includes timeouts
            return APIFailure(f"connection error: {error}", retryable=True)
        if isinstance(error, openai.APIStatusError):
            body = error.body if isinstance(error.body, dict) else {}
            msg = body.get("message") if isinstance(body.get("message"), str) else error.message
            code = error.code or error.type or ""
            what = f"{error.status_code} {code}: {msg}".replace(" : ", ": ").strip()
            retryable = retryable_status(error.status_code) and error.code != "insufficient_quota"
            hint = ""
            if error.status_code in (401, 403):
                hint = " (check OPENAI_API_KEY)"
            elif error.code == "insufficient_quota":
                hint = " (the account is out of credit: check its billing)"
            return APIFailure(what, retryable=retryable, retry_after=retry_after(error.response.headers), hint=hint)
        if isinstance(error, openai.APIError):
            return APIFailure(f"unexpected API error: {error}", retryable=False)
        return None

    def tool_turn(self, results: Sequence[tuple[ToolCall, ToolResult]], text: str | None) -> list[Message]:
        out: list[Message] = [{"role": "tool", "tool_call_id": call.id, "content": r.text} for call, r in results]
        if text:
            out += self.user_turn(text)
        return out

    def user_turn(self, text: str) -> list[Message]:
        return [{"role": "user", "content": text}]


def _tokens(resp: ChatCompletion) -> tuple[Tokens, str]:
    u = resp.usage
    if u is None:
        return Tokens(), "the server reported no token usage"
    details = u.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    written = (getattr(details, "cache_write_tokens", None) or 0) if details else 0
    prompt = u.prompt_tokens or 0
    return Tokens(input=max(prompt - cached - written, 0), output=u.completion_tokens or 0, cache_read=cached,
                  cache_write=written), ""


def _reasoning(extra: dict[str, Any] | None) -> tuple[str, ...]:
    """Reasoning text some servers add to the message (vLLM, DeepSeek, OpenRouter): transcript only."""
    out = []
    for key in ("reasoning_content", "reasoning"):
        value = (extra or {}).get(key)
        if isinstance(value, str) and value.strip():
            out.append(value)
    return tuple(out)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
