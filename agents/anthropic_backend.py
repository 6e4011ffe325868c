"""A proposal backend over the Anthropic Messages API: a tool-use loop on a private working copy.

The model reads the lineage view, inspects any trial's code, edits a working copy that starts as
the parent's files (exact, unique string replacement, editable files only), checks syntax and size,
and ends with ``submit_trial``. The proposal's diff is ``ledger.diffs.make_diff(parent, working)``,
re-checked with ``parse``/``apply`` and against the specialist's surface before it is returned.

Everything a run of the loop spends is counted (tokens of every kind, turns, HTTP requests,
retries) and priced from a :class:`PriceTable`. Every way the loop can end without a usable
proposal is a :class:`~agents.base.ProposalFailed` with a label-worthy kind and the usage so far.
The whole conversation is rendered as a readable transcript for the artifact store.

The SDK client is built with ``max_retries=0``: this module does the retrying (429, 408, 5xx,
529 overloaded, connection errors), honours ``retry-after``, and counts each retry.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic

from agents.base import Proposal, ProposalContext, ProposalFailed
from ledger import diffs
from ledger.events import Usage

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-4-5"
MAX_DIFF_BYTES = 64 * 1024
NUDGE = "Please use the tools and finish with submit_trial: a text answer alone is not a proposal."
_MAX_RETRY_SLEEP_S = 300.0


class MissingAPIKey(ProposalFailed):
    """No Anthropic API key: raised when the backend is constructed, before any campaign work."""

    def __init__(self, message: str | None = None):
        super().__init__(
            "no_api_key",
            message
            or "no Anthropic API key: set ANTHROPIC_API_KEY (or pass api_key=), "
            "or run with `--backend heuristic` (the offline default)",
        )


# ---------------------------------------------------------------------------------------------
# prices


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
        ) / 1_000_000


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
_SNAPSHOT = re.compile(r"(?:[-@]\d{8}|-latest)$")


class PriceTable:
    """Per-model prices. A model matches its own name, or its name without a snapshot suffix
    (``claude-sonnet-4-5-20250929`` is priced as ``claude-sonnet-4-5``). ``prices`` extend or
    override the defaults; ``defaults=False`` starts from an empty table."""

    def __init__(self, prices: Mapping[str, Price] | None = None, *, defaults: bool = True):
        self.prices: dict[str, Price] = dict(DEFAULT_PRICES) if defaults else {}
        self.prices.update(prices or {})

    def lookup(self, model: str) -> Price | None:
        for name in (model, _SNAPSHOT.sub("", model)):
            name = _ALIASES.get(name, name) if name not in self.prices else name
            if name in self.prices:
                return self.prices[name]
        return None

    def cost(self, model: str, usage: Usage) -> tuple[float, str]:
        """(USD, note). An unknown model costs 0 and the note says so."""
        price = self.lookup(model)
        if price is None:
            return 0.0, f"no price known for model {model!r}: cost recorded as 0 (pass prices= to set one)"
        return price.cost(usage), ""


# ---------------------------------------------------------------------------------------------
# tools

_EPHEMERAL = {"type": "ephemeral"}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "view_lineage",
        "description": "The current lineage view: leaderboard, the chain from the baseline to the best trial, "
        "its children, recent trials of every specialist with their outcome labels and crash excerpts, "
        "and ideas already tried. It may have changed since the start of your turn.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "query_trials",
        "description": "Query the trial tree. Examples: 'children 12', 'chain 40', 'status crash', "
        "'specialist opt', 'trial 7'.",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "the query"}},
            "required": ["query"],
        },
    },
    {
        "name": "read_file",
        "description": "Read a recipe file. Without `trial`: your working copy (the parent's code plus your "
        "edits so far). With `trial`: that trial's code.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "file path relative to the recipe root"},
                "trial": {"type": "integer", "description": "a trial number (optional)"},
            },
            "required": ["path"],
        },
    },
    {
        "name": "trial_diff",
        "description": "The unified diff from trial a's code to trial b's code.",
        "input_schema": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
    {
        "name": "edit_file",
        "description": "Edit your working copy: replace the exact text `old_string` with `new_string` in "
        "`path`. `old_string` must occur exactly once (include surrounding lines to make it unique; "
        "whitespace and indentation must match). Only files your surface may edit.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_string": {"type": "string", "description": "exact text to replace, unique in the file"},
                "new_string": {"type": "string", "description": "replacement text"},
            },
            "required": ["path", "old_string", "new_string"],
        },
    },
    {
        "name": "set_parent",
        "description": "Restart the working copy from another trial's code (discarding your edits). "
        "Use it before editing if you want to build on a trial other than the current best.",
        "input_schema": {
            "type": "object",
            "properties": {"trial": {"type": "integer"}},
            "required": ["trial"],
        },
    },
    {
        "name": "syntax_check",
        "description": "Compile every Python file you edited; reports syntax errors with line numbers.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "size_check",
        "description": "Projected artifact-size check of the working copy against the task's size cap.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "submit_trial",
        "description": "Submit your working copy as a trial and end your turn. The diff is computed from "
        "the parent's code to your working copy.",
        "input_schema": {
            "type": "object",
            "properties": {
                "hypothesis": {"type": "string", "description": "one sentence: what you changed and why it helps"},
                "expected_delta": {
                    "type": "number",
                    "description": "expected change of the metric relative to the parent (signed)",
                },
                "parent": {
                    "type": "integer",
                    "description": "parent trial (optional; default: the trial your working copy started from)",
                },
                "notes": {"type": "string", "description": "anything a later reader should know"},
            },
            "required": ["hypothesis", "expected_delta"],
        },
    },
]
TOOL_NAMES = [t["name"] for t in TOOLS]


def _tools_param() -> list[dict[str, Any]]:
    tools = [dict(t) for t in TOOLS]
    tools[-1]["cache_control"] = _EPHEMERAL  # caches tools + the static system block before it
    return tools


def system_prompt(ctx: ProposalContext) -> str:
    """The static part of the prompt: the same for every turn of every proposal of one specialist."""
    better = "lower" if ctx.direction == "min" else "higher"
    sign = "negative" if ctx.direction == "min" else "positive"
    preamble = (ctx.preamble or "").strip()
    return f"""You are the {ctx.specialist} specialist in an automated research loop that improves a \
machine-learning training recipe.

Task: {ctx.task_name}. Metric: {ctx.metric} ({better} is better; an improvement is a {sign} delta).
Your surface: {ctx.surface}.

How a trial works: you propose ONE focused change to the recipe: a one-sentence hypothesis, the \
expected change of {ctx.metric}, and a code edit against a parent trial's code (by default the \
current best). A runner trains and evaluates it under a fixed budget; the outcome label (keep, \
discard, crash, preflight_crash, size_blocked, illegal_edit, duplicate, ...) joins the lineage view \
that you and the other specialists read next time. "keep" means better than the incumbent by more \
than the measured noise.

Rules:
- Edit only the files your surface may edit; anything else is rejected as illegal_edit, unrun.
- Never touch the evaluator, the data pipeline's held-out split or the metric: the evaluator owns \
the score.
- One idea per trial, small enough that its effect can be attributed.
- Do not resubmit an idea the lineage shows as tried and dead unless you say in the notes why it \
will work now; exact duplicates are rejected.
- Run syntax_check (and size_check where size matters) before you submit.

Tools: view_lineage and query_trials to study what was tried; read_file and trial_diff to read \
code; edit_file to change your working copy (exact, unique string replacement); set_parent to \
restart the working copy from another trial; syntax_check and size_check to validate; \
submit_trial to finish. Your turn ends only with submit_trial: always finish with exactly one \
submit_trial call, never with a text answer.

Specialist brief:
{preamble or "(none)"}
"""


def first_message(ctx: ProposalContext, parent: int, files: Mapping[str, str]) -> str:
    editable = ", ".join(ctx.editable_files()) or "(none)"
    listing = ", ".join(sorted(files)) or "(none)"
    return f"""The current lineage view:

<lineage>
{ctx.lineage_text().rstrip()}
</lineage>

Your working copy starts as trial {parent}'s code (the current best). Files: {listing}.
You may edit: {editable}.
Propose one trial and finish with submit_trial."""


# ---------------------------------------------------------------------------------------------
# the backend


@dataclass
class AnthropicBackend:
    """The Messages API as a proposal backend. Raises :class:`MissingAPIKey` when no key is given
    and ``ANTHROPIC_API_KEY`` is unset. ``base_url`` defaults to ``ANTHROPIC_BASE_URL``.

    ``max_tokens`` bounds each answer; with ``thinking_budget`` > 0 (at least 1024) extended thinking
    is on and each request asks ``max_tokens + thinking_budget``. ``adaptive_thinking`` sends
    ``{"type": "adaptive"}`` instead (newer models prefer it). ``max_retries``/``backoff_s``: retries
    of 429/408/5xx/529 and connection errors, exponential from ``backoff_s`` unless the server sends
    ``retry-after``. ``max_diff_bytes``: larger diffs fail as ``too_large``. ``sleep`` is how the
    retry loop waits (tests pass a recorder)."""

    model: str = DEFAULT_MODEL
    max_turns: int = 24
    max_tokens: int = 8192
    thinking_budget: int = 0
    adaptive_thinking: bool = False
    prices: PriceTable = field(default_factory=PriceTable)
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
            raise MissingAPIKey()
        if self.thinking_budget and self.thinking_budget < 1024:
            raise ValueError(f"thinking_budget must be 0 (off) or at least 1024 tokens, not {self.thinking_budget}")
        if self.max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.api_key = key
        self.base_url = self.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        self._client = anthropic.Anthropic(
            api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s
        )

    def close(self) -> None:
        self._client.close()

    def propose(self, ctx: ProposalContext) -> Proposal:
        return _Session(self, ctx).run()

    # one request, with retries; used by _Session
    def _create(self, session: _Session, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            session.requests += 1
            try:
                return self._client.messages.create(**kwargs)
            except anthropic.APIConnectionError as e:  # includes timeouts
                what, retry_after = f"connection error: {e}", None
            except anthropic.APIStatusError as e:
                what = _describe_status_error(e)
                if not _retryable_status(e.status_code):
                    hint = " (check ANTHROPIC_API_KEY)" if e.status_code in (401, 403) else ""
                    raise session.fail("api_error", f"the Anthropic API refused the request: {what}{hint}") from e
                retry_after = _retry_after(e.response.headers)
            except anthropic.APIError as e:
                raise session.fail("api_error", f"the Anthropic API call failed: {e}") from e
            if attempt >= self.max_retries:
                raise session.fail(
                    "api_error", f"the Anthropic API failed after {self.max_retries} retries: {what}"
                )
            delay = retry_after if retry_after is not None else self.backoff_s * (2**attempt)
            delay = min(max(delay, 0.0), _MAX_RETRY_SLEEP_S)
            attempt += 1
            session.retries += 1
            session.note(f"[retry {attempt}/{self.max_retries} after {what}; waiting {delay:.2f}s]")
            log.warning("anthropic: %s; retry %d/%d in %.2fs", what, attempt, self.max_retries, delay)
            self.sleep(delay)


def _retryable_status(code: int) -> bool:
    return code in (408, 429) or code >= 500


def _describe_status_error(e: anthropic.APIStatusError) -> str:
    kind = getattr(e, "type", None) or ""
    msg = getattr(e, "api_message", None) or e.message
    return f"{e.status_code} {kind}: {msg}".replace(" : ", ": ").strip()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(float(email.utils.mktime_tz(parsed) - time.time()), 0.0)


_DECLINE = re.compile(
    r"\b(I\s+(?:can(?:no|')t|cannot|won'?t|will\s+not|am\s+(?:not\s+able|unable)|'m\s+(?:not\s+able|unable))"
    r"\s+(?:to\s+)?(?:help|assist|comply|do\s+(?:that|this)|provide|continue|participate|complete)"
    r"|I\s+(?:must|have\s+to)\s+decline|I\s+refuse)",
    re.IGNORECASE,
)


def looks_like_refusal(text: str) -> bool:
    return bool(_DECLINE.search(text[:600]))


class _Submitted(Exception):
    def __init__(self, proposal: Proposal):
        self.proposal = proposal


class _ToolError(Exception):
    pass


class _Session:
    """The state of one ``propose`` call: conversation, working copy, counters, transcript."""

    def __init__(self, backend: AnthropicBackend, ctx: ProposalContext):
        self.b = backend
        self.ctx = ctx
        self.input_tokens = self.output_tokens = self.cache_read = self.cache_write = 0
        self.turns = self.requests = self.retries = 0
        self.log: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.text_only = 0
        self.hypothesis = ""
        self.parent = ctx.incumbent()
        self.base = dict(ctx.trial_files(self.parent))
        self.work = dict(self.base)

    # ---- accounting -------------------------------------------------------------------------

    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
            turns=self.turns,
            requests=self.requests,
            retries=self.retries,
        )

    def cost(self) -> tuple[float, str]:
        return self.b.prices.cost(self.b.model, self.usage())

    def transcript(self) -> str:
        usage = self.usage()
        cost, note = self.cost()
        tail = [
            "=== usage ===",
            f"turns={usage.turns} requests={usage.requests} retries={usage.retries} "
            f"input={usage.input_tokens} output={usage.output_tokens} "
            f"cache_read={usage.cache_read_tokens} cache_write={usage.cache_write_tokens} cost_usd={cost:.6f}",
        ]
        if note:
            tail.append(f"note: {note}")
        return "\n".join(self.log + tail) + "\n"

    def note(self, line: str) -> None:
        self.log.append(line)

    def fail(self, kind: str, message: str, diff: str = "") -> ProposalFailed:
        self.note(f"=== failed: {kind} ===\n{message}")
        cost, _ = self.cost()
        return ProposalFailed(
            kind, message, usage=self.usage(), cost_usd=cost, diff=diff, hypothesis=self.hypothesis,
            transcript=self.transcript(),
        )

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> Proposal:
        ctx, b = self.ctx, self.b
        system = system_prompt(ctx)
        self.note(f"=== {b.name} backend: model {b.model}, specialist {ctx.specialist}, parent {self.parent} ===")
        self.note("=== system ===\n" + system.rstrip())
        self.note("=== tools ===\n" + ", ".join(TOOL_NAMES))
        self.add_user([{"type": "text", "text": first_message(ctx, self.parent, self.work)}])
        kwargs: dict[str, Any] = {
            "model": b.model,
            "max_tokens": b.max_tokens + (0 if b.adaptive_thinking else b.thinking_budget),
            "system": [{"type": "text", "text": system, "cache_control": _EPHEMERAL}],
            "tools": _tools_param(),
        }
        if b.adaptive_thinking:
            kwargs["thinking"] = {"type": "adaptive"}
        elif b.thinking_budget > 0:
            kwargs["thinking"] = {"type": "enabled", "budget_tokens": b.thinking_budget}
        try:
            while self.turns < b.max_turns:
                resp = b._create(self, messages=_with_cache_breakpoint(self.messages), **kwargs)
                self.turns += 1
                self.count(resp)
                self.handle(resp)
        except _Submitted as done:
            return done.proposal
        raise self.fail("turn_limit", f"no submit_trial within {b.max_turns} turns")

    def count(self, resp: Any) -> None:
        u = resp.usage
        self.input_tokens += u.input_tokens or 0
        self.output_tokens += u.output_tokens or 0
        self.cache_read += u.cache_read_input_tokens or 0
        self.cache_write += u.cache_creation_input_tokens or 0

    def add_user(self, content: list[dict[str, Any]]) -> None:
        self.messages.append({"role": "user", "content": content})
        self.note("=== user ===\n" + "\n".join(_render_block(c) for c in content))

    def handle(self, resp: Any) -> None:
        blocks = [_block_param(c) for c in resp.content or []]
        self.note(
            f"=== assistant (turn {self.turns}, stop_reason={resp.stop_reason}, "
            f"in={resp.usage.input_tokens} out={resp.usage.output_tokens}) ===\n"
            + ("\n".join(_render_block(c) for c in blocks) or "(no content)")
        )
        if resp.stop_reason == "refusal":
            raise self.fail("refused", "the model refused (stop_reason 'refusal')")
        uses = [c for c in blocks if c.get("type") == "tool_use"]
        text = "\n".join(c.get("text", "") for c in blocks if c.get("type") == "text").strip()
        if not uses:
            if not text:
                if resp.stop_reason == "max_tokens":
                    raise self.fail("empty", "the answer was cut off at max_tokens before any content")
                raise self.fail("empty", f"the model returned an empty answer (stop_reason {resp.stop_reason!r})")
            if looks_like_refusal(text):
                raise self.fail("refused", f"the model declined: {text[:300]}")
            self.text_only += 1
            if self.text_only >= 2:
                raise self.fail("no_tool_call", "the model answered in text twice instead of calling submit_trial")
            self.messages.append({"role": "assistant", "content": blocks})
            self.add_user([{"type": "text", "text": NUDGE}])
            return
        self.messages.append({"role": "assistant", "content": blocks})
        results = [self.run_tool(use) for use in uses]
        left = self.b.max_turns - self.turns
        if 0 < left <= 2:
            results.append({"type": "text", "text": f"{left} turn(s) left: finish now with submit_trial."})
        self.add_user(results)

    def run_tool(self, use: dict[str, Any]) -> dict[str, Any]:
        name, args = use.get("name", ""), use.get("input") or {}
        is_error = False
        try:
            if not isinstance(args, dict):
                raise _ToolError("tool input must be a JSON object")
            handler = getattr(self, f"tool_{name}", None) if name in TOOL_NAMES else None
            if handler is None:
                raise _ToolError(f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}")
            out = handler(args)
        except _Submitted:
            raise
        except ProposalFailed:
            raise
        except _ToolError as e:
            out, is_error = f"error: {e}", True
        except Exception as e:  # a failing context query is the model's information, not a crash
            out, is_error = f"error: {type(e).__name__}: {e}", True
        return {"type": "tool_result", "tool_use_id": use.get("id", ""), "content": out or "(empty)",
                "is_error": is_error}

    # ---- tools ------------------------------------------------------------------------------

    def tool_view_lineage(self, args: dict[str, Any]) -> str:
        return self.ctx.lineage_text()

    def tool_query_trials(self, args: dict[str, Any]) -> str:
        return self.ctx.query_trials(_str_arg(args, "query"))

    def tool_read_file(self, args: dict[str, Any]) -> str:
        path = _str_arg(args, "path")
        trial = _opt_int_arg(args, "trial")
        if trial is None:
            files, where = self.work, f"working copy (trial {self.parent} + your edits)"
        else:
            files, where = self.trial_files(trial), f"trial {trial}"
        if path not in files:
            raise _ToolError(f"no file {path!r} in the {where}; files: {', '.join(sorted(files))}")
        text = files[path]
        return f"=== {path}, {where}, {len(text.splitlines())} lines ===\n{text}"

    def tool_trial_diff(self, args: dict[str, Any]) -> str:
        a, b = _int_arg(args, "a"), _int_arg(args, "b")
        return self.ctx.trial_diff(a, b) or f"(trials {a} and {b} have identical code)"

    def tool_edit_file(self, args: dict[str, Any]) -> str:
        path = _str_arg(args, "path")
        old, new = _str_arg(args, "old_string", empty=True), _str_arg(args, "new_string", empty=True)
        editable = self.ctx.editable_files()
        if path not in editable:
            raise _ToolError(
                f"{path!r} is not editable by the {self.ctx.specialist} specialist; "
                f"editable files: {', '.join(editable) or '(none)'}"
            )
        if path not in self.work:
            if old:
                raise _ToolError(f"no file {path!r} in the working copy (to create it, pass an empty old_string)")
            self.work[path] = new
            return f"created {path} ({len(new.splitlines())} lines)"
        if not old:
            raise _ToolError("old_string is empty: give the exact text to replace")
        if old == new:
            raise _ToolError("old_string and new_string are identical: nothing would change")
        text = self.work[path]
        count = text.count(old)
        if count == 0:
            hint = ""
            if old.strip() and old.strip() in text:
                hint = " (it occurs with different leading/trailing whitespace: copy it exactly)"
            raise _ToolError(f"old_string not found in {path}{hint}; read_file shows the current text")
        if count > 1:
            lines = _match_lines(text, old)
            raise _ToolError(
                f"old_string is not unique in {path}: {count} matches (lines {', '.join(map(str, lines))}); "
                "include more surrounding lines"
            )
        start = text[: text.index(old)].count("\n") + 1
        self.work[path] = text.replace(old, new, 1)
        return (
            f"edited {path}: replaced lines {start}-{start + old.count(chr(10))} with "
            f"{len(new.splitlines()) or 0} line(s)"
        )

    def tool_set_parent(self, args: dict[str, Any]) -> str:
        trial = _int_arg(args, "trial")
        files = self.trial_files(trial)
        dropped = self.edited()
        self.parent, self.base, self.work = trial, dict(files), dict(files)
        msg = f"working copy restarted from trial {trial} ({len(files)} files)"
        if dropped:
            msg += f"; discarded your edits to {', '.join(dropped)}"
        return msg

    def tool_syntax_check(self, args: dict[str, Any]) -> str:
        paths = [p for p in self.edited() if p.endswith(".py") and p in self.work]
        if not paths:
            return "no Python files edited yet"
        errors = []
        for p in paths:
            try:
                compile(self.work[p], p, "exec", dont_inherit=True)
            except SyntaxError as e:
                line = (e.text or "").rstrip("\n")
                errors.append(f"{p}:{e.lineno}:{e.offset}: {e.msg}" + (f"\n    {line}" if line.strip() else ""))
            except ValueError as e:  # e.g. NUL bytes
                errors.append(f"{p}: {e}")
        if errors:
            return "syntax errors:\n" + "\n".join(errors)
        return f"ok: {', '.join(paths)} compile"

    def tool_size_check(self, args: dict[str, Any]) -> str:
        return self.ctx.check_size(dict(self.work))

    def tool_submit_trial(self, args: dict[str, Any]) -> str:
        hypothesis = _str_arg(args, "hypothesis").strip()
        expected = args.get("expected_delta")
        if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int | float)):
            try:
                expected = float(expected)
            except (TypeError, ValueError):
                raise _ToolError(f"expected_delta must be a number, not {expected!r}") from None
        notes = args.get("notes") or ""
        if not isinstance(notes, str):
            notes = json.dumps(notes)
        parent = _opt_int_arg(args, "parent")
        self.hypothesis = hypothesis
        b = self.b
        if parent is None or parent == self.parent:
            parent, parent_files, new = self.parent, self.base, self.work
        else:
            parent_files = self.trial_files(parent)
            edits = diffs.make_diff(self.base, self.work)
            if not edits:
                raise self.fail("empty", "submit_trial with no edits: the working copy equals its parent")
            try:
                new = diffs.apply(parent_files, edits)
            except diffs.DiffError as e:
                raise self.fail(
                    "invalid_diff",
                    f"submit_trial named parent {parent}, but the edits were made on trial {self.parent}'s "
                    f"code and do not apply to trial {parent}'s: {e}",
                    diff=edits,
                ) from e
        diff = diffs.make_diff(parent_files, new)
        if not diff:
            raise self.fail("empty", "submit_trial with no edits: the working copy equals its parent")
        size = len(diff.encode())
        if size > b.max_diff_bytes:
            raise self.fail("too_large", f"the diff is {size} bytes, over the {b.max_diff_bytes}-byte limit", diff=diff)
        try:
            applied = diffs.apply(parent_files, diff)
            touched = diffs.touched(diff)
        except diffs.PathEscape as e:
            raise self.fail("outside_surface", str(e), diff=diff) from e
        except diffs.DiffError as e:
            raise self.fail("invalid_diff", f"the diff does not apply to trial {parent}: {e}", diff=diff) from e
        if applied != new:
            raise self.fail("invalid_diff", "the diff does not reproduce the working copy", diff=diff)
        editable = set(self.ctx.editable_files())
        outside = [p for p in touched if p not in editable]
        if outside:
            raise self.fail(
                "outside_surface", f"the diff touches files outside the surface: {', '.join(outside)}", diff=diff
            )
        reason = self.ctx.check_surface(parent, diff)
        if reason:
            raise self.fail("outside_surface", f"the diff leaves the {self.ctx.surface} surface: {reason}", diff=diff)
        cost, note = self.cost()
        self.note(f"=== submitted: parent {parent}, {size} bytes of diff ===\n{diff}")
        if note:
            log.info("anthropic: %s", note)
        raise _Submitted(
            Proposal(
                hypothesis=hypothesis,
                diff=diff,
                parent=parent,
                expected_delta=float(expected) if expected is not None else None,
                notes=notes,
                usage=self.usage(),
                cost_usd=cost,
                backend=b.name,
                model=b.model,
                transcript=self.transcript(),
            )
        )

    # ---- helpers ----------------------------------------------------------------------------

    def trial_files(self, trial: int) -> dict[str, str]:
        try:
            return dict(self.ctx.trial_files(trial))
        except Exception as e:
            raise _ToolError(f"no code for trial {trial}: {e}") from e

    def edited(self) -> list[str]:
        return sorted(p for p in set(self.work) | set(self.base) if self.work.get(p) != self.base.get(p))


def _str_arg(args: dict[str, Any], name: str, *, empty: bool = False) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise _ToolError(f"argument {name!r} (a string) is required")
    if not empty and not value.strip():
        raise _ToolError(f"argument {name!r} must not be empty")
    return value


def _int_arg(args: dict[str, Any], name: str) -> int:
    value = _opt_int_arg(args, name)
    if value is None:
        raise _ToolError(f"argument {name!r} (an integer) is required")
    return value


def _opt_int_arg(args: dict[str, Any], name: str) -> int | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _ToolError(f"argument {name!r} must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if not isinstance(value, int):
        raise _ToolError(f"argument {name!r} must be an integer, not {value!r}")
    return value


def _match_lines(text: str, needle: str) -> list[int]:
    out: list[int] = []
    start = 0
    while (i := text.find(needle, start)) >= 0:
        line = text[:i].count("\n") + 1
        if line not in out:
            out.append(line)
        start = i + 1
    return out


def _block_param(block: Any) -> dict[str, Any]:
    """A response content block as a request content block (only the fields the API accepts back)."""
    d = block.model_dump(mode="json", exclude_none=True) if hasattr(block, "model_dump") else dict(block)
    kind = d.get("type")
    keep = {
        "text": ("type", "text"),
        "tool_use": ("type", "id", "name", "input"),
        "thinking": ("type", "thinking", "signature"),
        "redacted_thinking": ("type", "data"),
    }.get(kind)
    return {k: d[k] for k in keep if k in d} if keep else d


def _with_cache_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages to send, with a cache breakpoint on the last user block, so each turn reads the
    conversation so far from the cache (tools and system carry their own breakpoints)."""
    out = [dict(m) for m in messages]
    if out and out[-1]["role"] == "user":
        content = [dict(c) for c in out[-1]["content"]]
        content[-1]["cache_control"] = _EPHEMERAL
        out[-1]["content"] = content
    return out


def _render_block(c: dict[str, Any]) -> str:
    kind = c.get("type")
    if kind == "text":
        return c.get("text", "")
    if kind == "tool_use":
        return f"[tool_use {c.get('name')} {c.get('id')}] {json.dumps(c.get('input'), ensure_ascii=False)}"
    if kind == "tool_result":
        flag = " ERROR" if c.get("is_error") else ""
        return f"[tool_result {c.get('tool_use_id')}{flag}]\n{c.get('content')}"
    if kind == "thinking":
        return f"[thinking]\n{c.get('thinking', '')}"
    if kind == "redacted_thinking":
        return "[redacted thinking]"
    return f"[{kind}] {json.dumps(c, ensure_ascii=False)[:2000]}"
