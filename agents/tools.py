"""The tools a proposing model works with, the same for every LLM backend.

Here, once: the tool definitions (names, descriptions, JSON-schema parameters), the validation of
their arguments, the private working copy they act on, and the assembly of the final proposal with
its checks. A backend only translates :data:`TOOLS` into its API's tool format and each tool call
back into :meth:`Workbench.call`.

The working copy starts as the parent's files. ``edit_file`` is an exact, unique string
replacement, and it is refused at edit time — the copy unchanged, the reason returned to the model
so it can correct course — when the file or the edited lines lie outside the specialist's surface
(``ProposalContext.editable_files`` and ``check_surface``). ``submit_trial`` computes the diff
``ledger.diffs.make_diff(parent, working)``, re-checks it with ``parse``/``apply``, against the size
limit and against the surface, and ends the conversation with :class:`Submitted` (a checked
:class:`Draft`) or :class:`Rejected` (a failure kind of :class:`agents.base.ProposalFailed`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.base import ProposalContext
from ledger import diffs

MAX_DIFF_BYTES = 64 * 1024

Schema = dict[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: Schema  # a JSON schema of type "object"


def _params(properties: dict[str, Schema] | None = None, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties or {}}
    if required:
        schema["required"] = list(required)
    return schema


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "view_lineage",
        "The current lineage view: leaderboard, the chain from the baseline to the best trial, its children, "
        "recent trials of every specialist with their outcome labels and crash excerpts, and ideas already "
        "tried. It may have changed since the start of your turn.",
        _params(),
    ),
    ToolSpec(
        "query_trials",
        "Query the trial tree. Examples: 'trial 7', 'children 12', 'chain 40', 'status crash', 'specialist opt', "
        "'best 5', or words to find in hypotheses.",
        _params({"query": {"type": "string", "description": "the query"}}, ("query",)),
    ),
    ToolSpec(
        "read_file",
        "Read a recipe file. Without `trial`: your working copy (the parent's code plus your edits so far). "
        "With `trial`: that trial's code.",
        _params({
            "path": {"type": "string", "description": "file path relative to the recipe root"},
            "trial": {"type": "integer", "description": "a trial number (optional)"},
        }, ("path",)),
    ),
    ToolSpec(
        "trial_diff",
        "The unified diff from trial a's code to trial b's code.",
        _params({"a": {"type": "integer"}, "b": {"type": "integer"}}, ("a", "b")),
    ),
    ToolSpec(
        "edit_file",
        "Edit your working copy: replace the exact text `old_string` with `new_string` in `path`. "
        "`old_string` must occur exactly once (include surrounding lines to make it unique; whitespace and "
        "indentation must match). Only files and regions your surface owns: an edit outside them is refused, "
        "with the reason, and your working copy stays as it was.",
        _params({
            "path": {"type": "string"},
            "old_string": {"type": "string", "description": "exact text to replace, unique in the file"},
            "new_string": {"type": "string", "description": "replacement text"},
        }, ("path", "old_string", "new_string")),
    ),
    ToolSpec(
        "set_parent",
        "Restart the working copy from another trial's code (discarding your edits). Use it before editing "
        "if you want to build on a trial other than the current best.",
        _params({"trial": {"type": "integer"}}, ("trial",)),
    ),
    ToolSpec(
        "syntax_check",
        "Compile every Python file you edited; reports syntax errors with line numbers.",
        _params(),
    ),
    ToolSpec(
        "size_check",
        "Projected artifact-size check of the working copy against the task's size cap.",
        _params(),
    ),
    ToolSpec(
        "submit_trial",
        "Submit your working copy as a trial and end your turn. The diff is computed from the parent's code "
        "to your working copy.",
        _params({
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
        }, ("hypothesis", "expected_delta")),
    ),
)
TOOL_NAMES: tuple[str, ...] = tuple(t.name for t in TOOLS)


# ---------------------------------------------------------------------------------------------
# outcomes of a tool call


@dataclass(frozen=True)
class ToolResult:
    """What the model reads back: the tool's output, or an error it can act on."""

    text: str
    is_error: bool = False


class ToolError(Exception):
    """The model's mistake (a bad argument, a refused edit): returned to it as an error result."""


@dataclass(frozen=True)
class Draft:
    """A submission that passed every check; the loop adds usage, cost and transcript."""

    hypothesis: str
    diff: str
    parent: int
    expected_delta: float | None
    notes: str


@dataclass(frozen=True)
class Refusal:
    """An edit refused as outside the surface: why, and the diff it would have made."""

    reason: str
    diff: str
    parent: int


class Submitted(Exception):
    def __init__(self, draft: Draft):
        super().__init__("submitted")
        self.draft = draft


class Rejected(Exception):
    """submit_trial was called but its working copy cannot be a proposal: ``kind`` is a
    :class:`~agents.base.ProposalFailed` kind; ``diff`` is the offending diff, if there is one (for
    a submission whose every edit was refused: the last refused edit, against ``parent``)."""

    def __init__(self, kind: str, message: str, diff: str = "", parent: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.diff = diff
        self.parent = parent  # the trial ``diff`` is against, when not the submitted parent


# ---------------------------------------------------------------------------------------------
# arguments


def as_object(arguments: object) -> dict[str, Any]:
    """A tool call's arguments as a JSON object: a mapping as is, a string decoded as JSON (APIs
    that send arguments as text). Anything else is a :class:`ToolError` the model reads."""
    value = arguments
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            value = json.loads(arguments)
        except ValueError as e:
            raise ToolError(f"tool input must be a JSON object; this is not JSON ({e}): {arguments[:200]!r}") from None
    if not isinstance(value, dict):
        raise ToolError(f"tool input must be a JSON object, not {type(value).__name__}: {str(value)[:200]!r}")
    return value


def str_arg(args: dict[str, Any], name: str, *, empty: bool = False) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise ToolError(f"argument {name!r} (a string) is required")
    if not empty and not value.strip():
        raise ToolError(f"argument {name!r} must not be empty")
    return value


def int_arg(args: dict[str, Any], name: str) -> int:
    value = opt_int_arg(args, name)
    if value is None:
        raise ToolError(f"argument {name!r} (an integer) is required")
    return value


def opt_int_arg(args: dict[str, Any], name: str) -> int | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ToolError(f"argument {name!r} must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if not isinstance(value, int):
        raise ToolError(f"argument {name!r} must be an integer, not {value!r}")
    return value


def opt_number_arg(args: dict[str, Any], name: str) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ToolError(f"argument {name!r} must be a number, not {value!r}")
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ToolError(f"argument {name!r} must be a number, not {value!r}") from None


# ---------------------------------------------------------------------------------------------
# the working copy and the tools


class Workbench:
    """One proposal's tools over a private working copy of a parent trial's code.

    ``hypothesis``/``expected_delta``/``submitted_parent`` keep what the last submit_trial said, so
    that a failure can still record them; ``refusals`` lists the edits refused as outside the surface."""

    def __init__(self, ctx: ProposalContext, *, max_diff_bytes: int = MAX_DIFF_BYTES):
        self.ctx = ctx
        self.max_diff_bytes = max_diff_bytes
        self.parent = ctx.incumbent()
        self.base = dict(ctx.trial_files(self.parent))
        self.work = dict(self.base)
        self.hypothesis = ""
        self.expected_delta: float | None = None
        self.submitted_parent: int | None = None
        self.refusals: list[Refusal] = []
        self._tools: dict[str, Callable[[dict[str, Any]], str]] = {
            "view_lineage": self.view_lineage,
            "query_trials": self.query_trials,
            "read_file": self.read_file,
            "trial_diff": self.trial_diff,
            "edit_file": self.edit_file,
            "set_parent": self.set_parent,
            "syntax_check": self.syntax_check,
            "size_check": self.size_check,
            "submit_trial": self.submit_trial,
        }

    def call(self, name: str, arguments: object) -> ToolResult:
        """Run one tool call. Raises :class:`Submitted` or :class:`Rejected` on submit_trial."""
        try:
            tool = self._tools.get(name)
            if tool is None:
                raise ToolError(f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}")
            return ToolResult(tool(as_object(arguments)) or "(empty)")
        except (Submitted, Rejected):
            raise
        except ToolError as e:
            return ToolResult(f"error: {e}", is_error=True)
        except Exception as e:  # a failing context query is the model's information, not a crash
            return ToolResult(f"error: {type(e).__name__}: {e}", is_error=True)

    def edited(self) -> list[str]:
        return sorted(p for p in set(self.work) | set(self.base) if self.work.get(p) != self.base.get(p))

    def files_of(self, trial: int) -> dict[str, str]:
        try:
            return dict(self.ctx.trial_files(trial))
        except Exception as e:
            raise ToolError(f"no code for trial {trial}: {e}") from e

    # ---- reading ----------------------------------------------------------------------------

    def view_lineage(self, args: dict[str, Any]) -> str:
        return self.ctx.lineage_text()

    def query_trials(self, args: dict[str, Any]) -> str:
        return self.ctx.query_trials(str_arg(args, "query"))

    def read_file(self, args: dict[str, Any]) -> str:
        path = str_arg(args, "path")
        trial = opt_int_arg(args, "trial")
        if trial is None:
            files, where = self.work, f"working copy (trial {self.parent} + your edits)"
        else:
            files, where = self.files_of(trial), f"trial {trial}"
        if path not in files:
            raise ToolError(f"no file {path!r} in the {where}; files: {', '.join(sorted(files))}")
        text = files[path]
        return f"=== {path}, {where}, {len(text.splitlines())} lines ===\n{text}"

    def trial_diff(self, args: dict[str, Any]) -> str:
        a, b = int_arg(args, "a"), int_arg(args, "b")
        return self.ctx.trial_diff(a, b) or f"(trials {a} and {b} have identical code)"

    # ---- editing ----------------------------------------------------------------------------

    def edit_file(self, args: dict[str, Any]) -> str:
        path = str_arg(args, "path")
        old, new = str_arg(args, "old_string", empty=True), str_arg(args, "new_string", empty=True)
        if path not in self.work:
            if old:
                raise ToolError(f"no file {path!r} in the working copy (to create it, pass an empty old_string)")
            self._admit(path, new)
            self.work[path] = new
            return f"created {path} ({len(new.splitlines())} lines)"
        if not old:
            raise ToolError("old_string is empty: give the exact text to replace")
        if old == new:
            raise ToolError("old_string and new_string are identical: nothing would change")
        text = self.work[path]
        count = text.count(old)
        if count == 0:
            hint = ""
            if old.strip() and old.strip() in text:
                hint = " (it occurs with different leading/trailing whitespace: copy it exactly)"
            raise ToolError(f"old_string not found in {path}{hint}; read_file shows the current text")
        if count > 1:
            lines = _match_lines(text, old)
            raise ToolError(
                f"old_string is not unique in {path}: {count} matches (lines {', '.join(map(str, lines))}); "
                "include more surrounding lines"
            )
        start = text[: text.index(old)].count("\n") + 1
        edited = text.replace(old, new, 1)
        self._admit(path, edited)
        self.work[path] = edited
        return (
            f"edited {path}: replaced lines {start}-{start + old.count(chr(10))} with "
            f"{len(new.splitlines()) or 0} line(s)"
        )

    def _admit(self, path: str, text: str) -> None:
        """Refuse (ToolError, working copy unchanged) an edit that leaves the surface: a file the
        specialist may not edit, or lines outside its regions, as the context's check says."""
        editable = self.ctx.editable_files()
        candidate = {**self.work, path: text}
        diff = diffs.make_diff(self.base, candidate)
        try:
            reason = self.ctx.check_surface(self.parent, diff) if diff else None
        except Exception as e:  # noqa: BLE001 — the file check below still applies
            reason = None if path in editable else f"{type(e).__name__}: {e}"
        if path not in editable and not reason:
            reason = (f"{path!r} is not editable by the {self.ctx.specialist} specialist; "
                      f"editable files: {', '.join(editable) or '(none)'}")
        if reason:
            self.refusals.append(Refusal(reason, diff, self.parent))
            raise ToolError(f"edit refused, outside the {self.ctx.surface} surface: {reason}. "
                            "Your working copy is unchanged.")

    def set_parent(self, args: dict[str, Any]) -> str:
        trial = int_arg(args, "trial")
        files = self.files_of(trial)
        dropped = self.edited()
        self.parent, self.base, self.work = trial, dict(files), dict(files)
        msg = f"working copy restarted from trial {trial} ({len(files)} files)"
        if dropped:
            msg += f"; discarded your edits to {', '.join(dropped)}"
        return msg

    # ---- checking ---------------------------------------------------------------------------

    def syntax_check(self, args: dict[str, Any]) -> str:
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

    def size_check(self, args: dict[str, Any]) -> str:
        return self.ctx.check_size(dict(self.work))

    # ---- submitting -------------------------------------------------------------------------

    def submit_trial(self, args: dict[str, Any]) -> str:
        hypothesis = str_arg(args, "hypothesis").strip()
        expected = opt_number_arg(args, "expected_delta")
        notes = args.get("notes") or ""
        if not isinstance(notes, str):
            notes = json.dumps(notes)
        parent = opt_int_arg(args, "parent")
        self.hypothesis, self.expected_delta = hypothesis, expected
        self.submitted_parent = parent if parent is not None else self.parent
        diff, parent = self._assemble(parent)
        raise Submitted(Draft(hypothesis=hypothesis, diff=diff, parent=parent, expected_delta=expected,
                              notes=notes))

    def _assemble(self, parent: int | None) -> tuple[str, int]:
        """The checked diff of the working copy against ``parent`` (default: the copy's own)."""
        if parent is None or parent == self.parent:
            parent, parent_files, new = self.parent, self.base, self.work
        else:
            parent_files = self.files_of(parent)
            edits = diffs.make_diff(self.base, self.work)
            if not edits:
                raise self._nothing_to_submit()
            try:
                new = diffs.apply(parent_files, edits)
            except diffs.DiffError as e:
                raise Rejected(
                    "invalid_diff",
                    f"submit_trial named parent {parent}, but the edits were made on trial {self.parent}'s "
                    f"code and do not apply to trial {parent}'s: {e}",
                    edits,
                ) from e
        diff = diffs.make_diff(parent_files, new)
        if not diff:
            raise self._nothing_to_submit()
        size = len(diff.encode())
        if size > self.max_diff_bytes:
            raise Rejected("too_large", f"the diff is {size} bytes, over the {self.max_diff_bytes}-byte limit", diff)
        try:
            applied = diffs.apply(parent_files, diff)
            touched = diffs.touched(diff)
        except diffs.PathEscape as e:
            raise Rejected("outside_surface", str(e), diff) from e
        except diffs.DiffError as e:
            raise Rejected("invalid_diff", f"the diff does not apply to trial {parent}: {e}", diff) from e
        if applied != new:
            raise Rejected("invalid_diff", "the diff does not reproduce the working copy", diff)
        editable = set(self.ctx.editable_files())
        outside = [p for p in touched if p not in editable]
        if outside:
            raise Rejected("outside_surface", f"the diff touches files outside the surface: {', '.join(outside)}",
                           diff)
        reason = self.ctx.check_surface(parent, diff)
        if reason:
            raise Rejected("outside_surface", f"the diff leaves the {self.ctx.surface} surface: {reason}", diff)
        return diff, parent

    def _nothing_to_submit(self) -> Rejected:
        if self.refusals:
            last = self.refusals[-1]
            return Rejected(
                "outside_surface",
                f"submit_trial with no accepted edits: {len(self.refusals)} edit(s) were refused as outside the "
                f"{self.ctx.surface} surface; the last: {last.reason}",
                last.diff, last.parent,
            )
        return Rejected("empty", "submit_trial with no edits: the working copy equals its parent")


def _match_lines(text: str, needle: str) -> list[int]:
    out: list[int] = []
    start = 0
    while (i := text.find(needle, start)) >= 0:
        line = text[:i].count("\n") + 1
        if line not in out:
            out.append(line)
        start = i + 1
    return out
