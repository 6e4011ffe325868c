"""A coding agent as the proposer (``--backend agent:CMD``): ``claude -p``, ``codex exec``, any CLI.

For each proposal the agent gets a scratch copy of the parent's recipe files (the incumbent's) and
runs as a subprocess *inside the sandbox* (:func:`tasks.sandbox_plan.agent_plan`, run by
:func:`tasks.sandbox.run`): it sees its copy, its own home, its outbox, its prompt, the interpreter
and the files its command names — never the task directory (no evaluator file), the data (no
held-out split), the ledger or its keys — and the host's network only when it needs one for its
API (``network``; recorded). Its environment is built from nothing: ``PATH``, ``LANG``, ``HOME``,
the ``ARLEDGER_AGENT_*`` variables below and the variables named in ``env`` (its API key), by name.

The prompt holds the specialist's preamble, its surface (the files and regions it may edit), the
task, the rules, the lineage view it reads, and the budget. It is passed as the command's last
argument, or where the command says: ``{prompt}`` (the text), ``{prompt_file}`` (a read-only file);
``{turns}``, ``{time_s}`` and ``{workdir}`` fill in the budget and the copy. Inside, the agent finds
``ARLEDGER_AGENT_PROMPT`` (the prompt file), ``ARLEDGER_AGENT_OUT`` (its outbox),
``ARLEDGER_AGENT_MAX_TURNS`` and ``ARLEDGER_AGENT_TIME_S``. It reports its proposal by writing
``$ARLEDGER_AGENT_OUT/proposal.json`` (``{"hypothesis": ..., "expected_delta": ..., "notes": ...}``)
or, failing that, a line ``HYPOTHESIS: ...`` (and ``EXPECTED_DELTA: ...``) in its output.

Its edits are the trial's diff: ``ledger.diffs.make_diff`` of the parent's files against the copy
as the agent left it, checked like any specialist's (parses, applies, stays inside the surface).
Its whole output (stdout and stderr, and any JSON stream it prints) is the transcript, with the
prompt, the sandbox it ran in and the diff. Usage comes from the stream where the agent prints one:
Claude Code's ``--output-format stream-json``/``json`` (``assistant`` messages, the ``result`` with
``usage``, ``num_turns``, ``total_cost_usd``) and Codex's ``exec --json`` (``turn.completed`` with
``usage``, priced from the list prices of its ``--model``).

What can go wrong ends as a :class:`~agents.base.ProposalFailed` (so a labelled trial, never a
crash of the campaign): ``timeout`` (it ran past ``time_s``: SIGTERM, then SIGKILL), ``turn_limit``
(more turns than ``max_turns`` in its stream: stopped), ``agent_error`` (it could not start, or
exited non-zero), ``outside_copy`` (it left a symlink or a special file in its copy: a way out of
it; everything else outside its copy is read-only or absent in the sandbox), ``empty`` (no edit),
``no_hypothesis``, ``too_large``, ``invalid_diff``, ``outside_surface`` (an edit of a file or lines
its surface does not own — an evaluator file created in its copy is one — whose diff the campaign
sends through preflight, which labels it ``illegal_edit``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from agents.base import Proposal, ProposalContext, ProposalFailed
from agents.prices import PriceTable
from agents.tools import MAX_DIFF_BYTES
from ledger import diffs
from ledger.events import SandboxUsed, Usage
from ledger.objective import Objective
from tasks import bwrap, sandbox
from tasks import sandbox_plan as splan
from tasks import workspace as wsp
from tasks.spec import TaskSpec

AGENT_KEYS: dict[str, tuple[str, ...]] = {
    "claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL"),
    "codex": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME"),
}
"""The variables a known agent needs for its API, passed through (by name) when set."""
PROPOSAL_FILE = "proposal.json"
PLACEHOLDERS = ("prompt", "prompt_file", "turns", "time_s", "workdir")
MAX_TRANSCRIPT_LOG = 4 << 20
_HYP = re.compile(r"^\s*HYPOTHESIS:\s*(.+?)\s*$", re.M)
_EXP = re.compile(r"^\s*EXPECTED_DELTA:\s*([-+0-9.eE]+)\s*$", re.M)


class AgentSetupError(ValueError):
    """The agent backend cannot be set up as asked; the message names the fix."""


@dataclass
class _Stream:
    """What the agent's JSON stream says, as it is printed (fed line by line, from the log reader)."""

    max_turns: int
    stop: threading.Event
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost_usd: float | None = None
    model: str = ""
    result: str = ""
    result_error: str = ""
    over_turns: bool = False
    json_lines: int = 0
    _final_usage: bool = False

    def line(self, text: str) -> None:
        text = text.strip()
        if not text.startswith("{"):
            return
        try:
            obj = json.loads(text)
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        self.json_lines += 1
        kind = obj.get("type")
        msg = obj.get("message")
        if kind == "system" and isinstance(obj.get("model"), str):
            self.model = obj["model"]
        elif kind == "assistant":
            self.turns += 1
            if isinstance(msg, dict):
                self.model = str(msg.get("model") or self.model)
                if not self._final_usage:
                    self._add(msg.get("usage"))
        elif kind == "turn.completed":  # Codex
            self.turns += 1
            self._add(obj.get("usage"))
        elif kind == "result":  # Claude Code's last line: the totals
            if isinstance(obj.get("usage"), dict):
                self.input_tokens = self.output_tokens = self.cache_read = self.cache_write = 0
                self._add(obj["usage"])
                self._final_usage = True
            if isinstance(obj.get("num_turns"), int):
                self.turns = max(self.turns, obj["num_turns"])
            cost = obj.get("total_cost_usd")
            if isinstance(cost, int | float) and math.isfinite(cost):
                self.cost_usd = float(cost)
            if isinstance(obj.get("result"), str):
                self.result = obj["result"]
            if obj.get("is_error") or str(obj.get("subtype", "success")) != "success":
                self.result_error = str(obj.get("subtype") or "error")
        if self.turns > self.max_turns and not self.over_turns:
            self.over_turns = True
            self.stop.set()

    def _add(self, u: Any) -> None:
        if not isinstance(u, dict):
            return

        def n(*keys: str) -> int:
            for k in keys:
                v = u.get(k)
                if isinstance(v, int) and not isinstance(v, bool):
                    return v
            return 0

        cached = n("cached_input_tokens")  # Codex counts cached input inside input_tokens
        self.input_tokens += n("input_tokens") - cached
        self.cache_read += n("cache_read_input_tokens") + cached
        self.cache_write += n("cache_creation_input_tokens")
        self.output_tokens += n("output_tokens")

    def usage(self) -> Usage:
        return Usage(input_tokens=max(0, self.input_tokens), output_tokens=self.output_tokens,
                     cache_read_tokens=self.cache_read, cache_write_tokens=self.cache_write, turns=self.turns)


@dataclass
class AgentBackend:
    """Runs ``command`` (a command line; see the module doc) once per proposal. Raises
    :class:`AgentSetupError` when its program cannot be found or a bind is refused, and
    :class:`tasks.bwrap.SandboxUnavailable` when no sandbox can be built here."""

    command: str
    time_s: float = 900.0
    max_turns: int = 40
    network: bool = True
    env: tuple[str, ...] = ()  # more variables to pass through, by name (its API key, ...)
    binds: tuple[Path, ...] = ()  # more read-only paths it needs (its installation, its config)
    forbidden: tuple[Path, ...] = ()  # never given to it (the ledger's directory, the data cache)
    model: str = ""  # for pricing a stream that reports tokens but no cost (Codex)
    prices: PriceTable = field(default_factory=PriceTable)
    memory_mb: int = 0
    max_procs: int = 1024
    grace_s: float = 5.0
    max_diff_bytes: int = MAX_DIFF_BYTES
    scratch_root: Path | None = None
    name: str = "agent"

    def __post_init__(self) -> None:
        try:
            self.argv = shlex.split(self.command)
        except ValueError as e:
            raise AgentSetupError(f"agent command {self.command!r} cannot be split like a shell line: {e}") from None
        if not self.argv:
            raise AgentSetupError("agent:CMD needs a command, e.g. agent:'claude -p' or agent:'codex exec'")
        if self.time_s <= 0 or self.max_turns < 1:
            raise AgentSetupError("the agent needs a positive time budget and at least one turn")
        exe = shutil.which(self.argv[0])
        if exe is None:
            raise AgentSetupError(f"the agent program {self.argv[0]!r} is not on PATH; install it, or give its full "
                                  "path in agent:CMD")
        self.program = os.path.basename(self.argv[0])
        self.exe = Path(exe)
        self.box = bwrap.probe()  # SandboxUnavailable: no agent runs unsandboxed
        own = [self.exe, Path(os.path.realpath(exe))]
        named = [Path(w) for w in self.argv[1:] if w.startswith("/") and os.path.exists(w)]
        self.tools = tuple(dict.fromkeys([*own, *named, *(Path(os.path.abspath(b)) for b in self.binds)]))
        self.pass_env = tuple(dict.fromkeys([*AGENT_KEYS.get(self.program, ()), *self.env]))
        try:
            sandbox.Placeholders({k: "x" for k in PLACEHOLDERS}).argv(self.command)
        except ValueError as e:
            raise AgentSetupError(f"agent:CMD: {e}") from None
        self._check(self.tools, self.forbidden)

    @staticmethod
    def _check(tools: tuple[Path, ...], forbidden: tuple[Path, ...]) -> None:
        try:
            splan.agent_plan(copy=Path("/nonexistent/c"), home=Path("/nonexistent/h"), outbox=Path("/nonexistent/o"),
                             inputs=(), tools=tools, forbidden=forbidden, limits=splan.limits_for(0, 1024, 1),
                             network=False)
        except ValueError as e:
            raise AgentSetupError(str(e)) from None

    # ------------------------------------------------------------------------------------------
    def propose(self, ctx: ProposalContext) -> Proposal:
        task = getattr(ctx, "task", None)
        spec = task if isinstance(task, TaskSpec) else None
        parent = ctx.incumbent()
        files = dict(ctx.trial_files(parent))
        scratch = Path(tempfile.mkdtemp(prefix="arledger-agent-", dir=self.scratch_root))
        try:
            return self._run(ctx, spec, parent, files, scratch)
        finally:
            wsp.remove_tree(scratch)

    def _run(self, ctx: ProposalContext, spec: TaskSpec | None, parent: int, files: dict[str, str],
             scratch: Path) -> Proposal:
        os.chmod(scratch, 0o700)
        copy, home, outbox, inbox = (scratch / d for d in ("copy", "home", "out", "in"))
        for d in (home, outbox, inbox):
            d.mkdir(mode=0o700)
        write_copy(files, copy)
        prompt = agent_prompt(ctx, spec, parent, files, time_s=self.time_s, turns=self.max_turns)
        prompt_file = inbox / "prompt.md"
        prompt_file.write_text(prompt)
        forbidden = (*self.forbidden, *((spec.root,) if spec is not None else ()))
        limits = splan.limits_for(self.memory_mb, self.max_procs, 1)
        try:
            plan = splan.agent_plan(copy=copy, home=home, outbox=outbox, inputs=(inbox,), tools=self.tools,
                                    forbidden=forbidden, limits=limits, network=self.network)
        except ValueError as e:
            raise ProposalFailed("agent_error", f"the agent was not started: {e}", backend=self.name,
                                 parent=parent) from None
        values = {"prompt": prompt, "prompt_file": str(prompt_file), "turns": str(self.max_turns),
                  "time_s": f"{self.time_s:g}", "workdir": str(copy)}
        words = [self.command]
        if not any(k in self.command for k in ("{prompt}", "{prompt_file}")):
            words.append("{prompt}")
        argv = [str(self.exe), *sandbox.Placeholders(values).argv(" ".join(words))[1:]]
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(home),
               "TERM": "dumb", "ARLEDGER_AGENT_PROMPT": str(prompt_file), "ARLEDGER_AGENT_OUT": str(outbox),
               "ARLEDGER_AGENT_MAX_TURNS": str(self.max_turns), "ARLEDGER_AGENT_TIME_S": f"{self.time_s:g}"}
        passed = [k for k in self.pass_env if k in os.environ]
        env.update({k: os.environ[k] for k in passed})
        record = self.box.record(plan)
        stream = _Stream(max_turns=self.max_turns, stop=threading.Event())
        log = scratch / "agent.log"
        res = sandbox.run(argv, cwd=copy, env=env, log_path=log, plan=plan, timeout_s=self.time_s,
                          grace_s=self.grace_s, on_line=stream.line, stop=stream.stop, sweep_roots=[scratch])
        shown = [w if w != prompt else "<the prompt>" for w in argv]
        t = _Transcript(self, ctx, parent, shown, passed, record, prompt)
        output = _tail(log)
        t.add("agent output (stdout and stderr)", output)
        return self._collect(ctx, parent, files, copy, outbox, res, stream, t, output)

    def _collect(self, ctx: ProposalContext, parent: int, files: dict[str, str], copy: Path, outbox: Path,
                 res: sandbox.RunResult, stream: _Stream, t: _Transcript, output: str) -> Proposal:
        usage = stream.usage()
        cost, note = self._cost(stream, usage)
        t.usage(usage, cost, note, res)

        def fail(kind: str, message: str, diff: str = "", hypothesis: str = "",
                 expected: float | None = None) -> ProposalFailed:
            t.add(f"failed: {kind}", message)
            return ProposalFailed(kind, message, usage=usage, cost_usd=cost, diff=diff, hypothesis=hypothesis,
                                  transcript=t.text(), backend=self.name, model=stream.model, parent=parent,
                                  expected_delta=expected)

        try:
            new = wsp.read_tree(copy)
        except wsp.WorkspaceError as e:
            raise fail("outside_copy", f"the agent left something in its copy that points outside it: {e}") from None
        diff = diffs.make_diff(files, new)
        if diff:
            t.add(f"diff against trial {parent}", diff)
        if res.error:
            raise fail("agent_error", f"the agent could not be started: {res.error}")
        if stream.over_turns:
            raise fail("turn_limit", f"the agent took more than its {self.max_turns} turns; stopped")
        if res.timed_out:
            raise fail("timeout", f"the agent ran past its {self.time_s:g}-second budget; stopped (SIGTERM, then "
                       f"SIGKILL after {self.grace_s:g} s)")
        if res.exit_status != 0:
            how = f"status {res.exit_status}" if res.exit_status is not None else f"signal {res.signal}"
            why = f" ({stream.result_error})" if stream.result_error else ""
            raise fail("agent_error", f"the agent exited with {how}{why}")
        if stream.result_error == "error_max_turns":
            raise fail("turn_limit", f"the agent stopped at its turn limit ({self.max_turns})")
        hypothesis, expected, notes = _reported(outbox, stream.result, output)
        t.add("proposal", json.dumps({"hypothesis": hypothesis, "expected_delta": expected, "notes": notes}))
        if not diff:
            raise fail("empty", "the agent changed nothing in its copy", hypothesis=hypothesis, expected=expected)
        if not hypothesis:
            raise fail("no_hypothesis", f"the agent edited its copy but wrote no {PROPOSAL_FILE} and no "
                       "HYPOTHESIS: line", expected=expected)
        size = len(diff.encode())
        if size > self.max_diff_bytes:
            raise fail("too_large", f"the diff is {size} bytes, over the {self.max_diff_bytes}-byte limit", diff,
                       hypothesis, expected)
        try:
            if diffs.apply(files, diff) != new:
                raise fail("invalid_diff", "the diff does not reproduce the agent's copy", diff, hypothesis, expected)
            touched = diffs.touched(diff)
        except diffs.DiffError as e:
            raise fail("invalid_diff", f"the agent's edits do not make a diff that applies: {e}", diff, hypothesis,
                       expected) from None
        editable = set(ctx.editable_files())
        outside = [p for p in touched if p not in editable]
        reason = (f"the edits touch files outside the {ctx.surface} surface: {', '.join(outside)}" if outside
                  else ctx.check_surface(parent, diff))
        if reason:
            raise fail("outside_surface", reason, diff, hypothesis, expected)
        t.add("submitted", f"parent {parent}, {size} bytes of diff")
        return Proposal(hypothesis=hypothesis, diff=diff, parent=parent, expected_delta=expected, notes=notes,
                        usage=usage, cost_usd=cost, backend=self.name, model=stream.model, transcript=t.text())

    def _cost(self, stream: _Stream, usage: Usage) -> tuple[float, str]:
        if stream.cost_usd is not None:
            return stream.cost_usd, ""
        if not (usage.input_tokens or usage.output_tokens or usage.cache_read_tokens):
            return 0.0, "" if stream.json_lines else "the agent printed no usage (no JSON stream): cost recorded as 0"
        return self.prices.cost(stream.model or self.model, usage)


class _Transcript:
    """The transcript of one agent run: what it was given, where it ran, what it printed and did."""

    def __init__(self, b: AgentBackend, ctx: ProposalContext, parent: int, argv: list[str], passed: list[str],
                 record: SandboxUsed, prompt: str):
        net = "shared with the host (for the agent's API)" if b.network else "none"
        self.parts = [
            f"=== agent backend: {b.program}, specialist {ctx.specialist}, parent {parent} ===",
            "=== command ===\n" + shlex.join(argv),
            f"=== budget ===\n{b.time_s:g} s, {b.max_turns} turns",
            "=== environment (names only) ===\nPATH LANG HOME TERM ARLEDGER_AGENT_* " + " ".join(passed),
            f"=== sandbox (network: {net}) ===\n" + msgspec.json.encode(record).decode(),
            "=== prompt ===\n" + prompt.rstrip(),
        ]

    def add(self, title: str, body: str) -> None:
        self.parts.append(f"=== {title} ===\n{body.rstrip()}")

    def usage(self, u: Usage, cost: float, note: str, res: sandbox.RunResult) -> None:
        how = (f"exit {res.exit_status}" if res.exit_status is not None else f"signal {res.signal}") + \
            (" (timed out)" if res.timed_out else "") + (" (stopped)" if res.stopped else "")
        self.add("usage", f"turns={u.turns} input={u.input_tokens} output={u.output_tokens} "
                 f"cache_read={u.cache_read_tokens} cache_write={u.cache_write_tokens} cost_usd={cost:.6f} "
                 f"wall_s={res.wall_s:.1f} cpu_s={res.cpu_s:.1f} {how}" + (f"\nnote: {note}" if note else ""))

    def text(self) -> str:
        return "\n".join(self.parts) + "\n"


def write_copy(files: dict[str, str], dest: Path) -> None:
    """The scratch copy: the parent's recipe files, nothing else (no staged evaluator file)."""
    dest.mkdir(mode=0o700)
    for rel, text in sorted(files.items()):
        path = dest / diffs.check_path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))


def _tail(path: Path, limit: int = MAX_TRANSCRIPT_LOG) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    if len(data) > limit:
        data = b"[... %d earlier bytes not kept ...]\n" % (len(data) - limit) + data[-limit:]
    return data.decode("utf-8", errors="replace")


def _reported(outbox: Path, result: str, log: str) -> tuple[str, float | None, str]:
    """(hypothesis, expected delta, notes) the agent reported: its proposal.json, else HYPOTHESIS: lines."""
    f = outbox / PROPOSAL_FILE
    if f.is_file() and not f.is_symlink():
        try:
            obj = json.loads(f.read_text(errors="replace")[:100_000])
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            hyp = obj.get("hypothesis")
            exp = obj.get("expected_delta")
            notes = obj.get("notes")
            return (str(hyp).strip()[:2000] if isinstance(hyp, str) else "",
                    float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) and math.isfinite(exp)
                    else None, str(notes)[:4000] if isinstance(notes, str) else "")
    for text in (result, log):
        hyps = _HYP.findall(text)
        if hyps:
            exps = _EXP.findall(text)
            try:
                exp_v = float(exps[-1]) if exps else None
            except ValueError:
                exp_v = None
            return hyps[-1][:2000], exp_v, ""
    return "", None, ""


def agent_prompt(ctx: ProposalContext, spec: TaskSpec | None, parent: int, files: dict[str, str], *,
                 time_s: float, turns: int) -> str:
    """What the coding agent is told: its role, surface, rules, the lineage view and its budget."""
    better = Objective(ctx.direction).word
    sign = "negative" if ctx.direction == "min" else "positive"
    editable = ", ".join(ctx.editable_files()) or "(none)"
    regions: tuple[str, ...] = ()
    if spec is not None and ctx.surface in spec.surfaces:
        regions = spec.surfaces[ctx.surface].regions
    where = (f" — and in them only the lines inside the `# region: NAME` ... `# endregion` blocks named "
             f"{', '.join(regions)} (the marker lines stay where they are)") if regions else ""
    return f"""You are the {ctx.specialist} specialist in an automated research loop that improves a \
machine-learning training recipe. You work as a coding agent in a scratch copy of the recipe: the \
current directory.

Task: {ctx.task_name}. Metric: {ctx.metric} ({better} is better; an improvement is a {sign} delta).
Your surface: {ctx.surface}. The copy holds trial {parent}'s code (the current best): {", ".join(sorted(files))}.
You may edit: {editable}{where}.

Specialist brief:
{(ctx.preamble or "").strip() or "(none)"}

How a trial works: you make ONE focused change to the recipe in this directory. A runner then \
trains and evaluates it under a fixed budget, elsewhere; you cannot run the training or the \
evaluator here (neither the data nor the evaluator is in your sandbox), so reason from the code and \
the lineage below. "keep" means better than the incumbent by more than the measured noise.

Rules:
- Edit only the files (and regions) your surface owns; any other change makes the trial illegal.
- Never touch the evaluator, the data or the metric; do not create files other than the recipe's.
- One idea per trial, small enough that its effect can be attributed.
- Do not resubmit an idea the lineage shows as tried and dead unless you say in the notes why it \
will work now.
- Budget: {time_s:g} seconds and {turns} turns; past either you are stopped and nothing is submitted.

When your edit is done, write your proposal as JSON to the file $ARLEDGER_AGENT_OUT/{PROPOSAL_FILE}:
{{"hypothesis": "one sentence: what you changed and why it helps", "expected_delta": <the signed \
change of {ctx.metric} you expect>, "notes": "anything a later reader should know"}}
(if you cannot write that file, end your answer with the lines `HYPOTHESIS: ...` and \
`EXPECTED_DELTA: ...`).

The current lineage view:

<lineage>
{ctx.lineage_text().rstrip()}
</lineage>
"""
