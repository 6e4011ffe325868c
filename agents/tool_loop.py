"""The tool-use conversation every LLM backend runs, written once.

A backend supplies a :class:`Provider`: how to open a conversation, send one request and translate
the answer into a :class:`Reply`, classify the SDK's exceptions (:class:`APIFailure`), and shape
tool results and user text as its API's messages. Everything else is here: the prompts, the turn
limit (the model is told when turns run out), one nudge after a text-only answer, refusals, the
retries of transient API errors (``retry-after`` honoured, exponential backoff otherwise), the
count of every token, turn, request and retry, the price, and the readable transcript.

Every way the conversation ends without a usable proposal is an
:class:`~agents.base.ProposalFailed` carrying the usage and cost so far, the transcript, the
backend and model, and what submit_trial said (hypothesis, expected delta, parent, diff).
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.base import Proposal, ProposalContext, ProposalFailed
from agents.prices import PriceTable
from agents.tools import MAX_DIFF_BYTES, TOOL_NAMES, Draft, Rejected, Submitted, ToolResult, Workbench
from ledger.events import Usage
from ledger.objective import Objective

log = logging.getLogger(__name__)

NUDGE = "Please use the tools and finish with submit_trial: a text answer alone is not a proposal."
MAX_RETRY_SLEEP_S = 300.0

Message = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# what a provider translates to and from


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: object  # a JSON object as the API gave it, or the raw text of one


@dataclass(frozen=True)
class Tokens:
    input: int = 0  # fresh (uncached) input
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True)
class Reply:
    """One assistant answer, translated from the provider's shape."""

    message: Message  # the answer as the API takes it back in the next request
    text: str
    calls: tuple[ToolCall, ...]
    stop: str  # the provider's stop / finish reason, verbatim
    tokens: Tokens
    refusal: str | None = None  # set when the API itself flags a refusal (its explanation, maybe "")
    truncated: bool = False  # cut off by the output-token limit
    thinking: tuple[str, ...] = ()  # reasoning the API returned, for the transcript only
    note: str = ""  # something the transcript should say about this answer


@dataclass(frozen=True)
class APIFailure:
    """A failed request: ``what`` happened, whether a retry may help, and how long the server asks
    to wait; ``hint`` is appended when the request is not retried (e.g. which key to check)."""

    what: str
    retryable: bool
    retry_after: float | None = None
    hint: str = ""


class Provider(Protocol):
    """The provider-specific half of a conversation: request/response translation only."""

    api: str  # "the Anthropic API", for messages

    def opening(self, system: str, first: str) -> list[Message]:
        """The conversation's first messages (the system prompt may travel outside them)."""

    def send(self, messages: list[Message]) -> Reply:
        """One HTTP request; raises the SDK's exceptions."""

    def failure(self, error: Exception) -> APIFailure | None:
        """What an exception from :meth:`send` means; None: not an API failure (re-raised)."""

    def tool_turn(self, results: Sequence[tuple[ToolCall, ToolResult]], text: str | None) -> list[Message]:
        """The messages that answer the calls, in order, followed by ``text`` if given."""

    def user_turn(self, text: str) -> list[Message]: ...


@dataclass(frozen=True)
class Settings:
    backend: str
    model: str
    prices: PriceTable
    max_turns: int = 24
    max_retries: int = 4
    backoff_s: float = 1.0
    max_diff_bytes: int = MAX_DIFF_BYTES
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)


# ---------------------------------------------------------------------------------------------
# prompts


def system_prompt(ctx: ProposalContext) -> str:
    """The static part of the prompt: the same for every turn of every proposal of one specialist."""
    better = Objective(ctx.direction).word
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
- Edit only the files and regions your surface owns; edit_file refuses anything else and says why.
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


_DECLINE = re.compile(
    r"\b(I\s+(?:can(?:no|')t|cannot|won'?t|will\s+not|am\s+(?:not\s+able|unable)|'m\s+(?:not\s+able|unable))"
    r"\s+(?:to\s+)?(?:help|assist|comply|do\s+(?:that|this)|provide|continue|participate|complete)"
    r"|I\s+(?:must|have\s+to)\s+decline|I\s+refuse)",
    re.IGNORECASE,
)


def looks_like_refusal(text: str) -> bool:
    return bool(_DECLINE.search(text[:600]))


def retry_after(headers: Mapping[str, str]) -> float | None:
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


def retryable_status(code: int) -> bool:
    return code in (408, 409, 429) or code >= 500


# ---------------------------------------------------------------------------------------------
# the loop


def converse(provider: Provider, ctx: ProposalContext, settings: Settings) -> Proposal:
    """Run one proposal's conversation to a :class:`Proposal`, or raise :class:`ProposalFailed`."""
    return _Conversation(provider, ctx, settings).run()


class _Conversation:
    def __init__(self, provider: Provider, ctx: ProposalContext, settings: Settings):
        self.p = provider
        self.ctx = ctx
        self.s = settings
        self.bench = Workbench(ctx, max_diff_bytes=settings.max_diff_bytes)
        self.input_tokens = self.output_tokens = self.cache_read = self.cache_write = 0
        self.turns = self.requests = self.retries = 0
        self.text_only = 0
        self.log: list[str] = []
        self.messages: list[Message] = []

    # ---- accounting -------------------------------------------------------------------------

    def usage(self) -> Usage:
        return Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                     cache_read_tokens=self.cache_read, cache_write_tokens=self.cache_write,
                     turns=self.turns, requests=self.requests, retries=self.retries)

    def cost(self) -> tuple[float, str]:
        return self.s.prices.cost(self.s.model, self.usage())

    def note(self, text: str) -> None:
        self.log.append(text)

    def transcript(self) -> str:
        u = self.usage()
        cost, note = self.cost()
        tail = ["=== usage ===",
                f"turns={u.turns} requests={u.requests} retries={u.retries} input={u.input_tokens} "
                f"output={u.output_tokens} cache_read={u.cache_read_tokens} cache_write={u.cache_write_tokens} "
                f"cost_usd={cost:.6f}"]
        if note:
            tail.append(f"note: {note}")
        return "\n".join(self.log + tail) + "\n"

    def fail(self, kind: str, message: str, diff: str = "", parent: int | None = None) -> ProposalFailed:
        self.note(f"=== failed: {kind} ===\n{message}")
        b = self.bench
        if parent is None:
            parent = b.submitted_parent if b.submitted_parent is not None else b.parent
        return ProposalFailed(
            kind, message, usage=self.usage(), cost_usd=self.cost()[0], diff=diff, hypothesis=b.hypothesis,
            transcript=self.transcript(), backend=self.s.backend, model=self.s.model,
            expected_delta=b.expected_delta, parent=parent,
        )

    def proposal(self, d: Draft) -> Proposal:
        cost, note = self.cost()
        self.note(f"=== submitted: parent {d.parent}, {len(d.diff.encode())} bytes of diff ===\n{d.diff}")
        if note:
            log.info("%s: %s", self.s.backend, note)
        return Proposal(hypothesis=d.hypothesis, diff=d.diff, parent=d.parent, expected_delta=d.expected_delta,
                        notes=d.notes, usage=self.usage(), cost_usd=cost, backend=self.s.backend,
                        model=self.s.model, transcript=self.transcript())

    # ---- the conversation -------------------------------------------------------------------

    def run(self) -> Proposal:
        ctx, s = self.ctx, self.s
        system = system_prompt(ctx)
        self.note(f"=== {s.backend} backend: model {s.model}, specialist {ctx.specialist}, "
                  f"parent {self.bench.parent} ===")
        self.note("=== system ===\n" + system.rstrip())
        self.note("=== tools ===\n" + ", ".join(TOOL_NAMES))
        first = first_message(ctx, self.bench.parent, self.bench.work)
        self.messages = self.p.opening(system, first)
        self.note("=== user ===\n" + first)
        try:
            while self.turns < s.max_turns:
                reply = self.request()
                self.turns += 1
                self.count(reply.tokens)
                self.note(self.render(reply))
                self.answer(reply)
        except Submitted as done:
            return self.proposal(done.draft)
        except Rejected as r:
            raise self.fail(r.kind, r.message, r.diff, r.parent) from None
        raise self.fail("turn_limit", f"no submit_trial within {s.max_turns} turns")

    def request(self) -> Reply:
        """One answer, retrying transient failures; every attempt counts as a request."""
        s, attempt = self.s, 0
        while True:
            self.requests += 1
            try:
                return self.p.send(self.messages)
            except Exception as e:
                failure = self.p.failure(e)
                if failure is None:
                    raise
            if not failure.retryable:
                raise self.fail("api_error", f"{self.p.api} refused the request: {failure.what}{failure.hint}")
            if attempt >= s.max_retries:
                raise self.fail("api_error", f"{self.p.api} failed after {s.max_retries} retries: {failure.what}")
            delay = failure.retry_after if failure.retry_after is not None else s.backoff_s * (2**attempt)
            delay = min(max(delay, 0.0), MAX_RETRY_SLEEP_S)
            attempt += 1
            self.retries += 1
            self.note(f"[retry {attempt}/{s.max_retries} after {failure.what}; waiting {delay:.2f}s]")
            log.warning("%s: %s; retry %d/%d in %.2fs", s.backend, failure.what, attempt, s.max_retries, delay)
            s.sleep(delay)

    def count(self, t: Tokens) -> None:
        self.input_tokens += t.input
        self.output_tokens += t.output
        self.cache_read += t.cache_read
        self.cache_write += t.cache_write

    def answer(self, reply: Reply) -> None:
        if reply.refusal is not None:
            why = f": {reply.refusal[:300]}" if reply.refusal.strip() else ""
            raise self.fail("refused", f"the model refused (stop reason {reply.stop!r}){why}")
        if not reply.calls:
            text = reply.text.strip()
            if not text:
                if reply.truncated:
                    raise self.fail("empty", "the answer was cut off at the output-token limit before any content")
                raise self.fail("empty", f"the model returned an empty answer (stop reason {reply.stop!r})")
            if looks_like_refusal(text):
                raise self.fail("refused", f"the model declined: {text[:300]}")
            self.text_only += 1
            if self.text_only >= 2:
                raise self.fail("no_tool_call", "the model answered in text twice instead of calling submit_trial")
            self.messages.append(reply.message)
            self.add(self.p.user_turn(NUDGE), NUDGE)
            return
        self.messages.append(reply.message)
        results: list[tuple[ToolCall, ToolResult]] = []
        try:
            for call in reply.calls:
                results.append((call, self.bench.call(call.name, call.arguments)))
        finally:
            if results:
                self.note("=== tool results ===\n" + "\n".join(_render_result(c, r) for c, r in results))
        left = self.s.max_turns - self.turns
        extra = f"{left} turn(s) left: finish now with submit_trial." if 0 < left <= 2 else None
        self.add(self.p.tool_turn(results, extra), extra)

    def add(self, messages: list[Message], text: str | None) -> None:
        self.messages.extend(messages)
        if text:
            self.note("=== user ===\n" + text)

    def render(self, r: Reply) -> str:
        head = (f"=== assistant (turn {self.turns}, stop={r.stop}, in={r.tokens.input} out={r.tokens.output} "
                f"cache_read={r.tokens.cache_read} cache_write={r.tokens.cache_write}) ===")
        body = [f"[thinking]\n{t}" for t in r.thinking]
        if r.text.strip():
            body.append(r.text)
        if r.refusal:
            body.append(f"[refusal] {r.refusal}")
        body += [_render_call(c) for c in r.calls]
        if r.note:
            body.append(f"note: {r.note}")
        return head + "\n" + ("\n".join(body) or "(no content)")


def _render_call(c: ToolCall) -> str:
    args = c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments, ensure_ascii=False)
    return f"[tool_use {c.name} {c.id}] {args}"


def _render_result(c: ToolCall, r: ToolResult) -> str:
    return f"[tool_result {c.id}{' ERROR' if r.is_error else ''}]\n{r.text}"
