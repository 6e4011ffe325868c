"""The one interface every proposal backend implements.

A backend is given a :class:`ProposalContext` — the specialist it plays, the rendered lineage view,
and read access to the code of any trial — and returns a :class:`Proposal`: a hypothesis, an
expected delta, a parent, a unified diff against the parent's code, notes and usage. A backend that
cannot produce a usable proposal raises :class:`ProposalFailed` with a label-worthy ``kind``; the
campaign loop records that as a labelled outcome, never a crash of the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ledger.events import Usage
from ledger.objective import Objective
from projections.records import TrialRow
from tasks.spec import TaskSpec


@dataclass
class Proposal:
    hypothesis: str
    diff: str  # unified diff against the parent's code (ledger.diffs format)
    parent: int | None = None  # parent trial number; None = the current incumbent
    expected_delta: float | None = None
    notes: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    backend: str = ""
    model: str = ""
    transcript: str = ""  # the full conversation / reasoning trace, stored as an artifact


class ProposalFailed(Exception):
    """No usable proposal. ``kind``: empty | refused | no_tool_call | invalid_diff | outside_surface |
    too_large | turn_limit | api_error | no_api_key. Whatever the attempt produced and spent is kept:
    ``usage``/``cost_usd`` (every request, retries included), the ``transcript``, the ``backend`` and
    ``model`` that were asked, and — when the model got as far as submit_trial — its ``hypothesis``,
    ``expected_delta``, ``parent`` and ``diff``."""

    def __init__(self, kind: str, message: str, *, usage: Usage | None = None, cost_usd: float = 0.0,
                 diff: str = "", hypothesis: str = "", transcript: str = "", backend: str = "", model: str = "",
                 expected_delta: float | None = None, parent: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.usage = usage or Usage()
        self.cost_usd = cost_usd
        self.diff = diff
        self.hypothesis = hypothesis
        self.transcript = transcript
        self.backend = backend
        self.model = model
        self.expected_delta = expected_delta
        self.parent = parent


class MissingAPIKey(ProposalFailed):
    """An API backend has no key to send: raised when it is constructed, before any campaign work.
    The message names the environment variable to set."""

    def __init__(self, message: str):
        super().__init__("no_api_key", message)


class ProposalContext(Protocol):
    """What a backend may see and do. Implemented by the campaign loop over the ledger."""

    specialist: str  # e.g. "opt"
    surface: str  # the surface this specialist owns
    preamble: str  # scope and edit radius of the specialist
    task_name: str
    metric: str
    direction: str  # "min" | "max"
    seed: int

    def lineage_text(self) -> str:
        """The rendered lineage view (bounded by a token budget); exactly what the agent reads."""

    def query_trials(self, query: str) -> str:
        """Answer a trial-tree query (e.g. 'children 12', 'status crash', 'specialist opt', 'chain 40')."""

    def incumbent(self) -> int:
        """The trial number of the current best (the baseline before any keep)."""

    def trial_files(self, number: int) -> dict[str, str]:
        """The full recipe code of trial ``number`` (baseline plus its diff chain)."""

    def trial_diff(self, a: int, b: int) -> str:
        """A unified diff from trial a's code to trial b's code."""

    def editable_files(self) -> list[str]:
        """Recipe files this specialist's surface may edit."""

    def check_size(self, files: dict[str, str]) -> str:
        """Projected artifact-size check for candidate code: a one-line verdict."""

    def check_surface(self, parent: int, diff: str) -> str | None:
        """None when the diff stays inside the surface; otherwise the reason it does not."""


class Backend(Protocol):
    name: str

    def propose(self, ctx: ProposalContext) -> Proposal: ...


class StructuredContext(ProposalContext, Protocol):
    """What offline backends read instead of the rendered text: the task and the trial table.

    ``trials()`` returns the campaign's rows of ``projections.trials.TrialRow`` (number, parent,
    specialist, surface, kind, hypothesis, status, score, delta, excerpt, ...), *already filtered by
    the arm*: under ``no-lineage`` it holds only the baseline and the current best."""

    task: TaskSpec
    arm: str
    objective: Objective  # direction and the keep rule: a keep improves by more than objective.threshold

    def trials(self) -> list[TrialRow]: ...
