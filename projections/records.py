"""The records the trial table keeps: a trial's row, a campaign's record, a verdict, a promotion.

Plain, slotted dataclasses with the few derived words every reader uses (``TrialRow.state``,
``TrialRow.kept``, ``CampaignInfo.objective``); the folding of events into them is
:class:`projections.trials.TrialTable`.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from ledger import events as ev
from ledger.lifecycle import PROPOSED
from ledger.objective import Objective

FAILURE_STATUSES = frozenset(s for s in ev.STATUSES if s not in ev.VALID_SCORED)
HARNESS_STATUSES = frozenset({"harness_abort", "runner_lost", "cancelled"})
REMEASURES = ("baseline", "confirmation", "rerun")
"""Kinds of trial that measure code already proposed rather than propose a change."""


@dataclass(slots=True)
class Verdict:
    """The campaign's latest verdict on a trial, with the evidence it rests on."""

    verdict: str
    runs: list[tuple[int, float]]  # (trial number, score)
    mean: float
    incumbent_number: int | None
    incumbent_score: float | None
    improvement: float | None
    threshold: float
    rule: str
    confirmations_wanted: int
    policy: str
    reason: str
    actor: str
    at: float
    sd: float = 0.0  # the noise sd the threshold was computed from
    sd_runs: int = 0  # the runs that sd rests on (0: the task's declared figure)
    sd_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["runs"] = [list(r) for r in self.runs]
        return d


@dataclass(slots=True)
class Promotion:
    number: int
    trial_id: uuid.UUID
    score: float
    delta: float | None
    previous_number: int | None
    previous_score: float | None
    threshold: float
    noise_sd: float
    evidence: int
    at: float
    actor: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["trial_id"] = str(self.trial_id)
        return d


@dataclass(slots=True)
class Note:
    """A steering note left for a campaign: who left it, for whom ("" = every specialist), and
    whether (and by whom, why) it was closed."""

    number: int
    text: str
    specialist: str
    actor: str
    at: float
    closed_at: float | None = None
    closed_by: str = ""
    close_reason: str = ""

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def addresses(self, specialist: str) -> bool:
        return not self.specialist or self.specialist == specialist

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["open"] = self.open
        return d


@dataclass(slots=True)
class CampaignInfo:
    campaign_id: uuid.UUID
    name: str
    task: str = ""
    task_version: str = ""
    task_sha: str = ""
    metric: str = ""
    direction: str = "min"
    arm: str = "lineage"
    specialists: list[tuple[str, str]] = field(default_factory=list)  # (name, surface)
    budgets: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    baseline_sha: str | None = None  # the baseline snapshot artifact (older ledgers: config["baseline_tree_sha"])
    harness_version: str = ""
    harness_history: list[tuple[float, str, str]] = field(default_factory=list)  # (at, version, reason)
    seed: int = 0
    opened_at: float = 0.0
    position: int = -1  # where it was opened in the log
    actor: str = ""
    noise: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[Promotion] = field(default_factory=list)
    closed_at: float | None = None
    closed_reason: str = ""
    baseline_id: uuid.UUID | None = None
    incumbent_number: int | None = None
    incumbent_score: float | None = None
    last_at: float = 0.0

    policy: ev.NoisePolicyDecl | None = None
    retired: dict[str, str] = field(default_factory=dict)  # specialist -> why it proposes no more
    notes: list[Note] = field(default_factory=list)  # steering notes, by number

    def open_notes(self, specialist: str | None = None) -> list[Note]:
        """The notes still open, those addressing ``specialist`` only when one is named."""
        return [n for n in self.notes if n.open and (specialist is None or n.addresses(specialist))]

    @property
    def noise_sd(self) -> float:
        """The campaign's noise: the latest NoiseMeasured sd, else the config's; 0 when unknown."""
        if self.noise:
            return float(self.noise[-1]["sd"])
        return config_noise_sd(self.config)

    @property
    def noise_source(self) -> str:
        if self.noise:
            return str(self.noise[-1]["source"])
        return "config" if config_noise_sd(self.config) else ""

    @property
    def objective(self) -> Objective:
        """The campaign's objective and keep rule, with the latest measured noise."""
        runs = int(self.noise[-1]["n"]) if self.noise else 0
        if self.policy is not None:
            return Objective(self.direction, self.policy.min_delta, self.policy.k, self.noise_sd, runs,
                             self.noise_source or "task")
        return legacy_objective(self.direction, self.config, self.noise_sd, runs, self.noise_source or "config")

    @property
    def state(self) -> str:
        return "closed" if self.closed_at is not None else "open"

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": str(self.campaign_id), "name": self.name, "task": self.task,
            "task_version": self.task_version, "task_sha": self.task_sha, "metric": self.metric,
            "direction": self.direction, "arm": self.arm, "specialists": [list(s) for s in self.specialists],
            "budgets": dict(self.budgets), "config": self.config, "harness_version": self.harness_version,
            "harness_history": [list(h) for h in self.harness_history], "seed": self.seed,
            "opened_at": self.opened_at, "actor": self.actor, "noise": list(self.noise),
            "noise_sd": self.noise_sd, "promotions": [p.to_dict() for p in self.promotions],
            "retired": dict(self.retired), "notes": [n.to_dict() for n in self.notes],
            "closed_at": self.closed_at, "closed_reason": self.closed_reason, "state": self.state,
            "baseline_id": str(self.baseline_id) if self.baseline_id else None,
            "incumbent_number": self.incumbent_number, "incumbent_score": self.incumbent_score,
        }


def legacy_objective(direction: str, config: dict[str, Any], sd: float, runs: int, source: str) -> Objective:
    """The keep rule of a campaign opened before it was recorded as such: from its config (the run
    settings' ``k`` and ``min_delta``, else the recorded ``threshold`` as min_delta)."""
    run = config.get("run") if isinstance(config.get("run"), dict) else {}
    k = _number(run.get("k"), 2.0)
    threshold = _number(config.get("threshold"), 0.0)
    min_delta = _number(run.get("min_delta"), threshold if threshold > k * sd else 0.0)
    return Objective(direction if direction in ("min", "max") else "min", min_delta, k, sd, runs, source)


def _number(v: Any, default: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) and f >= 0 else default


def config_noise_sd(config: dict[str, Any]) -> float:
    v = config.get("noise_sd")
    if v is None and isinstance(config.get("noise"), dict):
        v = config["noise"].get("sd")
    try:
        return float(v) if v is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


@dataclass(slots=True)
class TrialRow:
    campaign_id: uuid.UUID
    campaign: str
    trial_id: uuid.UUID
    number: int
    specialist: str
    surface: str
    kind: str
    hypothesis: str
    parent_id: uuid.UUID | None = None
    parent: int | None = None
    expected_delta: float | None = None
    confirms: int | None = None
    notes: str = ""
    diff_sha: str | None = None
    diff_bytes: int = 0
    prompt_sha: str | None = None
    transcript_sha: str | None = None
    seed: int = 0
    backend: str = ""
    model: str = ""
    proposer: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    turns: int = 0  # the proposer's conversation: turns, HTTP requests (retries included), retries
    requests: int = 0
    retries: int = 0
    cost_usd: float = 0.0
    proposed_at: float = 0.0
    preflight_passed: bool | None = None
    tree_sha: str | None = None  # the trial's code tree (from its preflight)
    diff_key: str | None = None  # the duplicate key of its change (from its preflight)
    preflight_failed: list[str] = field(default_factory=list)
    phase: str = PROPOSED
    label: str | None = None  # the run's outcome label, after corrections
    verdict: Verdict | None = None  # the campaign's latest verdict
    status: str | None = None  # the label with the verdict in place of "scored" (see the module doc)
    first_label: str | None = None
    reason: str = ""
    excerpt: str = ""
    label_actor: str = ""
    labelled_at: float | None = None
    relabels: int = 0
    quarantined: bool = False
    score: float | None = None
    delta: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    # what the run reported so far (its `metric name=value step=N` lines, MetricsLogged): the
    # highest step, the latest value of each metric, how many points (informational, never a score)
    last_step: int | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    metric_points: int = 0
    gates_failed: list[str] = field(default_factory=list)
    evaluator: str = ""
    evaluator_sha: str = ""
    eval_wall_s: float = 0.0
    evaluated_at: float | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    peak_gpu_bytes: int = 0
    artifact_bytes: int = 0
    code_bytes: int = 0
    artifact_sha: str | None = None
    log_sha: str | None = None
    exit_status: int | None = None
    timed_out: bool = False
    stopped_step: int | None = None  # the step the early-stopping rule stopped the run at
    work_planned: float | None = None  # a work-bounded run's planned and done work (TrialFinished)
    work_done: float | None = None
    work_unit: str = ""
    reference_compute_s: float = 0.0  # the compute of the run it was compared with (a full run's cost)
    finished_at: float | None = None
    started_at: float | None = None
    runner: str = ""
    host: str = ""
    sandbox: str = ""  # the sandbox of its last start: bubblewrap, none (--unsafe-no-sandbox), unrecorded
    accelerator: str = ""
    slot: int | None = None
    attempts: int = 0
    epoch: int = 0
    task_sha: str = ""
    harness_version: str = ""
    promoted: bool = False
    last_at: float = 0.0
    contrib: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)  # see PerTrialAggregate

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def compute_s(self) -> float:
        """Trial compute time: training wall seconds plus evaluation wall seconds."""
        return self.wall_s + self.eval_wall_s

    @property
    def compute_saved_s(self) -> float:
        """The compute the early-stopping rule saved on this trial: what the reference run it was
        compared with took (training + evaluation), less what this run took; 0 if not stopped."""
        if self.label != "stopped_early" or self.stopped_step is None:
            return 0.0
        return max(0.0, self.reference_compute_s - self.compute_s)

    @property
    def scored(self) -> bool:
        """A valid evaluator score under a label that admits it (scored, keep, discard, baseline)."""
        return self.score is not None and self.label in ev.VALID_SCORED

    @property
    def kept(self) -> bool:
        return self.status == "keep" and self.kind not in REMEASURES

    @property
    def state(self) -> str:
        """What a user reads (see the module doc)."""
        if self.status is None:
            return self.phase
        if self.label in ev.VALID_SCORED:
            if self.kind == "baseline":
                return "baseline"
            if self.kind == "confirmation":
                return f"confirmation of #{self.confirms}" if self.confirms is not None else "confirmation"
            if self.kind == "rerun":
                return f"rerun of #{self.parent}" if self.parent is not None else "rerun"
        return self.status

    def restate(self) -> None:
        """Recompute ``status`` from the label and the verdict."""
        if self.label == "scored" and self.verdict is not None:
            self.status = self.verdict.verdict
        elif self.label in ("keep", "discard") and self.verdict is not None:
            self.status = self.verdict.verdict  # an old ledger or an import: the verdict stands
        else:
            self.status = self.label

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "contrib"}
        for k in ("campaign_id", "trial_id", "parent_id"):
            if d[k] is not None:
                d[k] = str(d[k])
        d["verdict"] = self.verdict.to_dict() if self.verdict else None
        d["state"] = self.state
        d["metrics"] = dict(self.metrics)
        d["last_metrics"] = dict(self.last_metrics)
        d["preflight_failed"] = list(self.preflight_failed)
        d["gates_failed"] = list(self.gates_failed)
        d["tokens"] = self.tokens
        d["compute_s"] = self.compute_s
        d["compute_saved_s"] = self.compute_saved_s
        return d


