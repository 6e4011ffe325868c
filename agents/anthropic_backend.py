"""A proposal backend over the Anthropic Messages API.

The conversation (tools, working copy, checks, turn limit, retries, accounting, transcript) is
:mod:`agents.tool_loop` over :mod:`agents.tools`; this module is the Messages API's half of it: the
tools as ``input_schema`` tools, the system prompt as a cached system block, prompt-cache
breakpoints (tools + system, then the last user block of each turn), extended thinking, the
response's content blocks translated into a :class:`~agents.tool_loop.Reply`, the SDK's errors
classified for the retry loop, and Anthropic's list prices.

The SDK client is built with ``max_retries=0``: the loop does the retrying (429, 408, 409, 5xx,
529 overloaded, connection errors), honours ``retry-after`` and counts each retry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
from anthropic.types import RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolUseBlock

from agents.base import MissingAPIKey, Proposal, ProposalContext
from agents.prices import Price, PriceTable
from agents.tool_loop import (
    NUDGE,
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

__all__ = ["DEFAULT_MODEL", "DEFAULT_PRICES", "NUDGE", "AnthropicBackend", "MissingAPIKey", "default_prices"]

DEFAULT_MODEL = "claude-sonnet-4-5"
_EPHEMERAL = {"type": "ephemeral"}

# Anthropic's published list prices (platform.claude.com/docs/en/about-claude/pricing);
# cache_write is the 5-minute TTL rate, which is what ``{"type": "ephemeral"}`` buys.
DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-5": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-8": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-7": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-6": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-5": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-1": Price(15.0, 75.0, 1.50, 18.75),
    "claude-opus-4-0": Price(15.0, 75.0, 1.50, 18.75),
    "claude-sonnet-4-6": Price(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4-0": Price(3.0, 15.0, 0.30, 3.75),
    "claude-3-7-sonnet": Price(3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.10, 1.25),
    "claude-3-5-haiku": Price(0.80, 4.0, 0.08, 1.0),
    "claude-3-haiku": Price(0.25, 1.25, 0.03, 0.30),
}
_ALIASES = {"claude-opus-4": "claude-opus-4-0", "claude-sonnet-4": "claude-sonnet-4-0"}


def default_prices() -> PriceTable:
    return PriceTable(DEFAULT_PRICES, aliases=_ALIASES)


def tools_param() -> list[dict[str, Any]]:
    """The tools in the Messages API's shape; the breakpoint on the last caches tools + system."""
    tools: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in TOOLS
    ]
    tools[-1]["cache_control"] = _EPHEMERAL
    return tools


@dataclass
class AnthropicBackend:
    """The Messages API as a proposal backend. Raises :class:`MissingAPIKey` when no key is given
    and ``ANTHROPIC_API_KEY`` is unset. ``base_url`` defaults to ``ANTHROPIC_BASE_URL``.

    ``max_tokens`` bounds each answer; with ``thinking_budget`` > 0 (at least 1024) extended thinking
    is on and each request asks ``max_tokens + thinking_budget``. ``adaptive_thinking`` sends
    ``{"type": "adaptive"}`` instead (newer models prefer it). ``max_retries``/``backoff_s``: retries
    of 429/408/409/5xx/529 and connection errors, exponential from ``backoff_s`` unless the server
    sends ``retry-after``. ``max_diff_bytes``: larger diffs fail as ``too_large``. ``sleep`` is how
    the retry loop waits (tests pass a recorder)."""

    model: str = DEFAULT_MODEL
    max_turns: int = 24
    max_tokens: int = 8192
    thinking_budget: int = 0
    adaptive_thinking: bool = False
    prices: PriceTable = field(default_factory=default_prices)
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    max_retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 120.0
    max_diff_bytes: int = MAX_DIFF_BYTES
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    name: str = "anthropic"

    def __post_init__(self) -> None:
        key = self.api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise MissingAPIKey("no Anthropic API key: set ANTHROPIC_API_KEY, "
                                "or run with `--backend heuristic` (the offline default)")
        if self.thinking_budget and self.thinking_budget < 1024:
            raise ValueError(f"thinking_budget must be 0 (off) or at least 1024 tokens, not {self.thinking_budget}")
        if self.max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.api_key = key
        self.base_url = self.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        self._client = anthropic.Anthropic(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s)

    def close(self) -> None:
        self._client.close()

    def settings(self) -> Settings:
        return Settings(backend=self.name, model=self.model, prices=self.prices, max_turns=self.max_turns,
                        max_retries=self.max_retries, backoff_s=self.backoff_s, max_diff_bytes=self.max_diff_bytes,
                        sleep=self.sleep)

    def propose(self, ctx: ProposalContext) -> Proposal:
        return converse(_Messages(self), ctx, self.settings())


class _Messages:
    """One conversation's requests and answers in the Messages API's shape."""

    api = "the Anthropic API"

    def __init__(self, backend: AnthropicBackend):
        self.b = backend
        self.params: dict[str, Any] = {}

    def opening(self, system: str, first: str) -> list[Message]:
        b = self.b
        self.params = {
            "model": b.model,
            "max_tokens": b.max_tokens + (0 if b.adaptive_thinking else b.thinking_budget),
            "system": [{"type": "text", "text": system, "cache_control": _EPHEMERAL}],
            "tools": tools_param(),
        }
        if b.adaptive_thinking:
            self.params["thinking"] = {"type": "adaptive"}
        elif b.thinking_budget > 0:
            self.params["thinking"] = {"type": "enabled", "budget_tokens": b.thinking_budget}
        return self.user_turn(first)

    def send(self, messages: list[Message]) -> Reply:
        resp = self.b._client.messages.create(messages=_with_cache_breakpoint(messages), **self.params)
        echo: list[dict[str, Any]] = []
        texts: list[str] = []
        calls: list[ToolCall] = []
        thinking: list[str] = []
        for block in resp.content or []:
            if isinstance(block, TextBlock):
                echo.append({"type": "text", "text": block.text})
                texts.append(block.text)
            elif isinstance(block, ToolUseBlock):
                raw = block.input  # the SDK does not validate: a model may send a non-object
                # the API takes back only an object; the tool layer reports the bad input to the model
                echo.append({"type": "tool_use", "id": block.id, "name": block.name,
                             "input": raw if isinstance(raw, dict) else {}})
                calls.append(ToolCall(block.id, block.name, raw))
            elif isinstance(block, ThinkingBlock):
                echo.append({"type": "thinking", "thinking": block.thinking, "signature": block.signature})
                thinking.append(block.thinking)
            elif isinstance(block, RedactedThinkingBlock):
                echo.append({"type": "redacted_thinking", "data": block.data})
                thinking.append("(redacted)")
            else:  # a block type this backend does not use: sent back as received
                echo.append(block.model_dump(mode="json", exclude_none=True, warnings=False))
        u = resp.usage
        tokens = Tokens(input=u.input_tokens or 0, output=u.output_tokens or 0,
                        cache_read=u.cache_read_input_tokens or 0, cache_write=u.cache_creation_input_tokens or 0)
        stop = resp.stop_reason or ""
        return Reply(message={"role": "assistant", "content": echo}, text="\n".join(texts), calls=tuple(calls),
                     stop=stop, tokens=tokens, refusal="" if stop == "refusal" else None,
                     truncated=stop == "max_tokens", thinking=tuple(thinking))

    def failure(self, error: Exception) -> APIFailure | None:
        if isinstance(error, anthropic.APIConnectionError):  # includes timeouts
            return APIFailure(f"connection error: {error}", retryable=True)
        if isinstance(error, anthropic.APIStatusError):
            kind = getattr(error, "type", None) or ""
            msg = getattr(error, "api_message", None) or error.message
            what = f"{error.status_code} {kind}: {msg}".replace(" : ", ": ").strip()
            hint = " (check ANTHROPIC_API_KEY)" if error.status_code in (401, 403) else ""
            return APIFailure(what, retryable=retryable_status(error.status_code),
                              retry_after=retry_after(error.response.headers), hint=hint)
        if isinstance(error, anthropic.APIError):
            return APIFailure(f"unexpected API error: {error}", retryable=False)
        return None

    def tool_turn(self, results: Sequence[tuple[ToolCall, ToolResult]], text: str | None) -> list[Message]:
        content: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": call.id, "content": r.text, "is_error": r.is_error}
            for call, r in results
        ]
        if text:
            content.append({"type": "text", "text": text})
        return [{"role": "user", "content": content}]

    def user_turn(self, text: str) -> list[Message]:
        return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def _with_cache_breakpoint(messages: list[Message]) -> list[Message]:
    """The messages to send, with a cache breakpoint on the last user block, so each turn reads the
    conversation so far from the cache (tools and system carry their own breakpoints)."""
    out = [dict(m) for m in messages]
    if out and out[-1]["role"] == "user":
        content = [dict(c) for c in out[-1]["content"]]
        content[-1]["cache_control"] = _EPHEMERAL
        out[-1]["content"] = content
    return out
