"""Early stopping: a task's ``[early_stop]`` rule applied live to a run's ``metric`` lines.

When an attempt of a *proposal* starts, :func:`watch_for` reads the reference run's curve from the
ledger — the ``MetricsLogged`` points of the campaign's incumbent (or baseline), the rule's metric,
the mean over its seeds at each step, of its last attempt — and returns a :class:`Watch`. The
training loop hands the watch every point as the recipe prints it; the first point at a step >=
``after_step`` whose value is worse than the reference's at that step by more than ``margin``
returns a :class:`Stop`, and the runner stops the run (SIGTERM, then SIGKILL after the grace) and
labels the trial ``stopped_early`` with the step and the two values.

The reference's value "at that step" is its point at the same step, or else its latest point before
it (a run that logs more often is compared with the reference's previous point: for a falling loss
that is the lenient side). No reference curve (no incumbent yet, or it logged nothing of the
metric), or a non-finite value, stops nothing: a diverged run is the training classifier's to label.
Baselines, confirmation runs and reruns are never stopped: they measure, they do not propose.
"""

from __future__ import annotations

import bisect
import math
import threading
import uuid
from dataclasses import dataclass

from ledger import events as ev
from ledger.aggregates import Campaign, Trial
from ledger.app import Ledger
from tasks.spec import EarlyStop, TaskSpec


@dataclass(frozen=True)
class Curve:
    """The reference run's values of the rule's metric, by step; ``compute_s`` is what its training
    and evaluation took (the saving a stop is measured against)."""

    trial_id: uuid.UUID
    number: int
    role: str  # "incumbent" | "baseline"
    steps: tuple[int, ...]
    values: tuple[float, ...]
    compute_s: float

    def at(self, step: int) -> tuple[int, float] | None:
        """(the reference's step, its value) at ``step``, or at its latest step before it."""
        i = bisect.bisect_right(self.steps, step) - 1
        return (self.steps[i], self.values[i]) if i >= 0 else None


@dataclass(frozen=True)
class Stop:
    """Why a run was stopped: the rule, the step, the run's value and the reference's."""

    rule: EarlyStop
    step: int
    value: float
    reference_step: int
    reference_value: float
    reference: Curve

    @property
    def worse_by(self) -> float:
        d = self.value - self.reference_value
        return d if self.rule.direction == "min" else -d

    @property
    def reason(self) -> str:
        r, ref = self.rule, self.reference
        at = f"step {self.reference_step}" if self.reference_step == self.step else \
            f"step {self.reference_step} (its last point before {self.step})"
        return (f"stopped early at step {self.step}: {r.metric} {self.value:.6g} is worse than the {ref.role} "
                f"#{ref.number}'s {self.reference_value:.6g} at {at} by {self.worse_by:.4g}, more than the margin "
                f"{r.margin:g} (rule: {r.rule()})")


class Watch:
    """Checks a run's metric points against a reference curve; thread-safe, fires once."""

    def __init__(self, rule: EarlyStop, curve: Curve):
        self.rule = rule
        self.curve = curve
        self.fired: Stop | None = None
        self._lock = threading.Lock()

    def see(self, points: list[tuple[int, str, float]]) -> Stop | None:
        """The stop these points call for (the first time only), else None."""
        r = self.rule
        with self._lock:
            if self.fired is not None:
                return None
            for step, name, value in points:
                if name != r.metric or step < r.after_step or not math.isfinite(value):
                    continue
                ref = self.curve.at(step)
                if ref is None:
                    continue
                worse = value - ref[1] if r.direction == "min" else ref[1] - value
                if worse > r.margin:
                    self.fired = Stop(r, step, value, ref[0], ref[1], self.curve)
                    return self.fired
        return None


def watch_for(ledger: Ledger, spec: TaskSpec, trial: Trial) -> Watch | None:
    """The watch for this attempt of ``trial``, or None (no rule, not a proposal, no reference)."""
    rule = spec.early_stop
    p = trial.proposed
    if rule is None or p is None or p.kind != "proposal":
        return None
    curve = reference_curve(ledger, p.campaign_id, rule, exclude=trial.id)
    return Watch(rule, curve) if curve is not None else None


def reference_curve(ledger: Ledger, campaign_id: uuid.UUID, rule: EarlyStop, *,
                    exclude: uuid.UUID | None = None) -> Curve | None:
    """The rule's reference run (see the module doc) and its curve of ``rule.metric``."""
    camp = ledger.load(Campaign, campaign_id)
    # the incumbent is the baseline until a promotion says otherwise
    ref_id = camp.incumbent.trial_id if camp.incumbent is not None and rule.compare == "incumbent" else None
    if ref_id is None:
        ref_id = camp.trial_numbers.get(0)
    if ref_id is None or ref_id == exclude:
        return None
    ref = ledger.load(Trial, ref_id)
    if ref.status not in ev.VALID_SCORED:
        return None
    by_step: dict[int, list[float]] = {}
    for e in ref.history:
        if not isinstance(e, ev.MetricsLogged) or e.epoch != ref.epoch:
            continue
        for pt in e.points:
            # a run of several seeds logs seedN/NAME: the curve is their mean at each step
            if (pt.name == rule.metric or pt.name.endswith("/" + rule.metric)) and math.isfinite(pt.value):
                by_step.setdefault(pt.step, []).append(pt.value)
    if not by_step:
        return None
    steps = tuple(sorted(by_step))
    compute = (ref.finished.wall_s if ref.finished else 0.0) + (ref.evaluated.eval_wall_s if ref.evaluated else 0.0)
    return Curve(trial_id=ref_id, number=ref.number, role=rule.compare, steps=steps,
                 values=tuple(sum(by_step[s]) / len(by_step[s]) for s in steps), compute_s=compute)
