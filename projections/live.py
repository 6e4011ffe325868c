"""What a running campaign shows: each trial in flight against its budget, and the campaign's ETA.

Pure functions of the trial table's rows and the campaign's record (its budgets and seeds per
trial, as opened), and the time now:

* :func:`trial_budget_s` — the most one trial may take: ``train_s`` per seed plus ``eval_s``;
* :func:`in_flight` — each trial a runner holds: how long it has run, its budget, the last step
  and metric value it reported (``metric name=value step=N`` lines, informational only);
* :func:`eta` — how long the campaign still needs: the trials in flight, the queued ones and the
  proposals still to be made, each at the median compute time of the trials finished so far (or
  at its budget before any has finished), spread over the runner slots, and never past the
  deadline. The bound at full budgets comes with it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.lifecycle import LEASED, PROPOSED, QUEUED
from projections.records import CampaignInfo, TrialRow


def trial_budget_s(info: CampaignInfo) -> float:
    """The longest one trial may run: train_s for each of its seeds, plus eval_s."""
    b = info.budgets
    seeds = info.policy.seeds_per_trial if info.policy is not None else 1
    return float(b.get("train_s", 0.0)) * max(1, seeds) + float(b.get("eval_s", 0.0))


@dataclass(frozen=True)
class InFlight:
    number: int
    specialist: str
    phase: str  # claimed, running, finished (training over, evaluating), evaluated
    elapsed_s: float  # since it started (0 while only claimed)
    budget_s: float
    last_step: int | None
    metric: tuple[str, float] | None  # the metric it reported last: the campaign's, else the first by name

    @property
    def fraction(self) -> float:
        return self.elapsed_s / self.budget_s if self.budget_s > 0 else 0.0


def reported_metric(row: TrialRow, prefer: str) -> tuple[str, float] | None:
    """The metric a row shows: ``prefer`` (the campaign's metric) or ``loss`` if reported, else the
    first name in order (a multi-seed run's names carry a ``seedN/`` prefix)."""
    if not row.last_metrics:
        return None
    for want in (prefer, "loss", "train_loss"):
        for name, v in row.last_metrics.items():
            if name == want or name.endswith("/" + want):
                return name, v
    name = sorted(row.last_metrics)[0]
    return name, row.last_metrics[name]


def in_flight(rows: Sequence[TrialRow], info: CampaignInfo, now: float) -> list[InFlight]:
    budget = trial_budget_s(info)
    out = []
    for r in rows:
        if r.status is not None or r.phase not in LEASED:
            continue
        elapsed = max(0.0, now - r.started_at) if r.started_at is not None else 0.0
        out.append(InFlight(r.number, r.specialist, r.phase, elapsed, budget, r.last_step,
                            reported_metric(r, info.metric)))
    return out


@dataclass(frozen=True)
class Eta:
    seconds: float  # at the measured pace
    bound_s: float  # at full budgets
    per_trial_s: float  # the pace used: the median compute time so far, or the budget
    measured: bool  # whether per_trial_s was measured (else it is the budget)
    trials_left: int  # in flight + queued + still to propose
    capped_by_deadline: bool


def eta(rows: Sequence[TrialRow], info: CampaignInfo, *, proposals_left: int, slots: int, now: float,
        deadline_left_s: float | None = None) -> Eta:
    budget = trial_budget_s(info)
    done = [r.compute_s for r in rows if r.status is not None and r.compute_s > 0]
    per = statistics.median(done) if done else budget
    running = [r for r in rows if r.status is None and r.phase in LEASED]
    waiting = [r for r in rows if r.status is None and r.phase in (PROPOSED, QUEUED)]
    elapsed = [max(0.0, now - r.started_at) if r.started_at is not None else 0.0 for r in running]

    def total(pace: float) -> float:
        left = sum(max(pace - e, 0.0) for e in elapsed) + (len(waiting) + max(0, proposals_left)) * pace
        return left / max(1, slots)

    secs, bound = total(per), total(budget)
    capped = deadline_left_s is not None and deadline_left_s < secs
    if deadline_left_s is not None:
        secs, bound = min(secs, max(0.0, deadline_left_s)), min(bound, max(0.0, deadline_left_s))
    return Eta(secs, bound, per, bool(done), len(running) + len(waiting) + max(0, proposals_left), capped)


def fmt_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``1h02m``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
