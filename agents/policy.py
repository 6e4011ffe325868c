"""The campaign's policy: a pure function from what the ledger says to what should happen next.

:func:`decide` reads a :class:`CampaignState` — the campaign's trial rows and record from the
projections, its objective (direction and keep rule), its budgets, the proposals being written —
and returns the :class:`Action` list the campaign loop executes, in order. No threads, no
processes, no clock (the time is in the state): the same state always gives the same actions, and
a campaign killed anywhere and resumed decides from the ledger alone.

The rules, in order:

1. no baseline yet -> launch it (trial 0); the baseline failed -> close; it is scored -> its reruns
   (``[noise] baseline_reruns`` more seeds), and once they are labelled, with no incumbent yet ->
   promote the baseline with the mean of its runs;
   then, whenever the campaign's runs say more about the noise than its last ``NoiseMeasured`` ->
   measure it (``MeasureNoise``: :func:`ledger.noise.estimate` over the task's declared figure and
   the groups of runs of one code on several seeds: the baseline and its reruns, each candidate and
   its confirmation runs), alone in its decision, so that every verdict after it uses the new
   threshold;
2. a scored proposal nobody judged: it beats the incumbent (on the same seeds where the incumbent ran
   on them: :func:`incumbent_on`) by more than the threshold (``Objective.beats``) -> ``keep`` at once when the task asks for no confirmation runs, else
   ``candidate`` plus its confirmation runs (other seeds); otherwise -> ``discard``;
3. a candidate whose confirmation runs are all labelled: a run failed, or the mean of its runs no
   longer beats the (current) incumbent -> ``discard``; else -> ``keep`` (and its promotion). One
   promotion per decision: the next candidate is judged against the new incumbent;
4. a budget is spent -> no new proposals; once nothing is in flight -> close with the reason;
5. a specialist whose last proposals all came to nothing is retired (``SpecialistRetired``);
6. otherwise, just in time, while fewer trials are in flight than there are runner slots: the next
   specialist (fewest proposals so far, then declaration order) writes a proposal.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from ledger.lifecycle import LABELLED
from ledger.noise import POOLED, NoiseEstimate, estimate
from ledger.objective import Objective
from projections.records import CampaignInfo, TrialRow

POLICY = "noise-aware promotion v3"
"""The name recorded in every verdict: a keep beats the incumbent (the mean of its runs) by more than
max(min_delta, k x sd), with the mean of the proposal's run and its confirmation runs; sd is the
task's declared noise pooled with the noise measured in the campaign (``ledger.noise``)."""

FAILED_BASELINE = frozenset({"crash", "oom", "diverged", "train_budget_overrun", "eval_budget_overrun",
                             "disqualified", "size_blocked", "illegal_edit", "preflight_crash", "duplicate",
                             "cancelled", "truncated", "stopped_early"})


@dataclass(frozen=True)
class Budgets:
    max_trials: int = 10  # proposals (the baseline and confirmation runs are not counted)
    deadline_s: float | None = None
    grace: int | None = None  # stop after this many scored proposals without a keep
    max_usd: float | None = None
    max_compute_h: float | None = None
    in_flight_per_specialist: int = 1
    slots: int = 1  # trials in flight at once (proposals are made just in time)


@dataclass(frozen=True)
class CampaignState:
    info: CampaignInfo
    rows: list[TrialRow]
    objective: Objective
    confirmations: int
    budgets: Budgets
    specialists: list[str]  # active (declared, not retired), in declaration order
    writing: frozenset[str] = frozenset()  # specialists whose proposal is being written
    elapsed_s: float = 0.0  # since this run of the loop started (the deadline counts from here)
    baseline_reruns: int = 0  # extra seeds of the baseline, run before the first proposal
    measure_noise: bool = False  # pool the campaign's own runs into the noise (a campaign does)
    declared_sd: float = 0.0  # the task's declared noise and the reruns it was measured on
    declared_reruns: tuple[float, ...] = ()


# actions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    pass


@dataclass(frozen=True)
class LaunchBaseline(Action):
    pass


@dataclass(frozen=True)
class PromoteBaseline(Action):
    baseline: TrialRow
    score: float  # the mean of its runs (the baseline and its scored reruns)
    runs: list[TrialRow]


@dataclass(frozen=True)
class LaunchRerun(Action):
    """Another run of ``of``'s code on another seed, to measure the noise."""

    of: TrialRow
    index: int  # 0-based
    seed: int


@dataclass(frozen=True)
class MeasureNoise(Action):
    """Record the noise the campaign's runs now show (``NoiseMeasured``)."""

    estimate: NoiseEstimate
    values: list[float]  # the scores it rests on (estimate.runs of them): declared reruns, then measured runs
    trials: list[TrialRow]  # the measured runs


@dataclass(frozen=True)
class Judge(Action):
    """A verdict with its evidence; ``keep`` is saved with the campaign's promotion."""

    trial: TrialRow
    verdict: str  # candidate | keep | discard
    runs: list[TrialRow]  # the proposal's run, then its confirmation runs
    mean: float
    improvement: float
    incumbent: TrialRow
    reason: str
    incumbent_score: float | None = None  # what the runs were compared with (see incumbent_on)


@dataclass(frozen=True)
class LaunchConfirmation(Action):
    of: TrialRow
    index: int  # 0-based: the index-th confirmation run of ``of``
    seed: int
    improvement: float


@dataclass(frozen=True)
class Propose(Action):
    specialist: str


@dataclass(frozen=True)
class Retire(Action):
    specialist: str
    reason: str


@dataclass(frozen=True)
class Close(Action):
    reason: str


RETIRE_AFTER = 4
"""A specialist whose last this-many proposals all came to nothing (``cancelled``) is retired."""


def confirmation_seed(row: TrialRow, index: int) -> int:
    """The seed of a candidate's index-th confirmation run (and of the baseline's index-th rerun): far
    from any proposal's seed, and the same for every code, so runs of two codes pair by seed."""
    return row.seed + 1000 + index


def noise_groups(rows: list[TrialRow]) -> list[list[TrialRow]]:
    """The scored runs of one code on several seeds, by the trial they re-measure: a trial with its
    reruns (``kind`` rerun, by parent) and its confirmation runs (by ``confirms``); groups of 2+."""
    groups: dict[int, list[TrialRow]] = {}
    for r in rows:
        if not r.scored or r.score is None:
            continue
        key = r.confirms if r.kind == "confirmation" else r.parent if r.kind == "rerun" else r.number
        if key is not None:
            groups.setdefault(key, []).append(r)
    return [g for _, g in sorted(groups.items()) if len(g) >= 2]


def noise_now(s: CampaignState) -> tuple[NoiseEstimate, list[TrialRow]]:
    """The noise the campaign's runs show now, and the runs it rests on."""
    groups = noise_groups(s.rows)
    est = estimate(s.declared_sd, len(s.declared_reruns), [[r.score or 0.0 for r in g] for g in groups])
    return est, [r for g in groups for r in g]


def _noise_due(s: CampaignState) -> Action | None:
    if not s.measure_noise:
        return None
    est, runs = noise_now(s)
    obj = s.objective
    if est.runs == obj.sd_runs and math.isclose(est.sd, obj.sd, rel_tol=1e-9, abs_tol=1e-12):
        return None
    declared = list(s.declared_reruns) if est.source == POOLED else []
    return MeasureNoise(est, declared + [r.score or 0.0 for r in runs], runs)


# the decision --------------------------------------------------------------------------------------


def decide(s: CampaignState) -> list[Action]:
    if s.info.closed_at is not None:
        return []
    by_num = {r.number: r for r in s.rows}
    base = by_num.get(0)
    if base is None:
        return [LaunchBaseline()]
    if base.status in FAILED_BASELINE:
        return [Close(f"the baseline failed ({base.status}): {base.reason or base.excerpt}")]
    if base.score is None:
        return []
    if not s.info.promotions:  # the baseline is not promoted yet (the table's incumbent until then is its run)
        reruns = [r for r in s.rows if r.kind == "rerun" and r.parent == 0]
        if len(reruns) < s.baseline_reruns:
            return [LaunchRerun(base, i, confirmation_seed(base, i)) for i in range(len(reruns), s.baseline_reruns)]
        if any(r.phase != LABELLED for r in reruns):
            return []
        due = _noise_due(s)
        if due is not None:
            return [due]
        runs = [base] + [r for r in reruns if r.scored and r.score is not None]
        return [PromoteBaseline(base, statistics.fmean(r.score or 0.0 for r in runs), runs)]
    due = _noise_due(s)
    if due is not None:
        return [due]
    incumbent = by_num.get(s.info.incumbent_number, base)
    actions: list[Action] = []
    for r in s.rows:
        if r.kind == "proposal" and r.status == "scored" and r.score is not None:
            actions.extend(_judge_new(s, r, incumbent))
    for r in s.rows:
        if r.kind == "proposal" and r.status == "candidate":
            act = _judge_candidate(s, r, incumbent, by_num)
            actions.extend(act)
            if any(isinstance(a, Judge) and a.verdict == "keep" for a in act):
                return actions  # one promotion per decision: the rest is judged against the new incumbent
    if any(isinstance(a, Judge) and a.verdict == "keep" for a in actions):
        return actions
    stop = budget_exhausted(s)
    if stop is not None:
        if not actions and not _in_flight(s) and not s.writing:
            actions.append(Close(stop))
        return actions
    retire = _retirements(s)
    if retire:
        return actions + retire
    launching = sum(1 for a in actions if isinstance(a, LaunchConfirmation))
    sp = next_specialist(s, launching)
    if sp is not None:
        actions.append(Propose(sp))
    return actions


def _retirements(s: CampaignState) -> list[Action]:
    out: list[Action] = []
    for name in s.specialists:
        mine = [r for r in s.rows if r.kind == "proposal" and r.specialist == name]
        last = mine[-RETIRE_AFTER:]
        if len(last) == RETIRE_AFTER and all(r.status == "cancelled" for r in last):
            out.append(Retire(name, f"its last {RETIRE_AFTER} proposals (#{', #'.join(str(r.number) for r in last)}) "
                                    f"gave nothing usable; the last: {last[-1].reason}"))
    return out


def _judge_new(s: CampaignState, r: TrialRow, incumbent: TrialRow) -> list[Action]:
    inc_score, on = incumbent_on(s, incumbent, [r.seed])
    assert r.score is not None
    obj = s.objective
    imp = obj.improvement(r.score, inc_score)
    if not obj.beats(r.score, inc_score):
        return [Judge(r, "discard", [r], r.score, imp, incumbent, _short_of(imp, incumbent, obj) + on, inc_score)]
    if s.confirmations <= 0:
        return [Judge(r, "keep", [r], r.score, imp, incumbent,
                      f"beats #{incumbent.number} by {imp:.4g} > threshold {obj.threshold:.4g}{on}; "
                      "single run (the task asks for no confirmation)", inc_score)]
    out: list[Action] = [Judge(r, "candidate", [r], r.score, imp, incumbent,
                               f"beats #{incumbent.number} by {imp:.4g} > threshold {obj.threshold:.4g} once{on}; "
                               f"awaiting {s.confirmations} confirmation run(s) on other seeds", inc_score)]
    out.extend(LaunchConfirmation(r, i, confirmation_seed(r, i), imp) for i in range(s.confirmations))
    return out


def _judge_candidate(s: CampaignState, r: TrialRow, incumbent: TrialRow,
                     by_num: dict[int, TrialRow]) -> list[Action]:
    assert r.score is not None
    confs = [c for c in s.rows if c.kind == "confirmation" and c.confirms == r.number]
    if len(confs) < s.confirmations:  # resumed between the verdict and the launches
        imp = r.verdict.improvement if r.verdict and r.verdict.improvement is not None else 0.0
        return [LaunchConfirmation(r, i, confirmation_seed(r, i), imp) for i in range(len(confs), s.confirmations)]
    if any(c.phase != LABELLED for c in confs):
        return []
    failed = [c for c in confs if not c.scored]
    runs = [r] + [c for c in confs if c.scored and c.score is not None]
    scores = [x.score or 0.0 for x in runs]
    mean = statistics.fmean(scores)
    inc_score, on = incumbent_on(s, incumbent, [x.seed for x in runs])
    imp = s.objective.improvement(mean, inc_score)
    names = ", ".join(f"#{c.number}" for c in confs)
    if failed:
        return [Judge(r, "discard", runs, mean, imp, incumbent,
                      f"confirmation run(s) {', '.join(f'#{c.number} ({c.status})' for c in failed)} failed",
                      inc_score)]
    if not s.objective.beats(mean, inc_score):
        return [Judge(r, "discard", runs, mean, imp, incumbent,
                      f"the mean of {len(scores)} runs ({names} confirming) "
                      f"{_short_of(imp, incumbent, s.objective)}{on}", inc_score)]
    return [Judge(r, "keep", runs, mean, imp, incumbent,
                  f"the mean of {len(scores)} runs ({names} confirming) beats #{incumbent.number} by {imp:.4g} > "
                  f"threshold {s.objective.threshold:.4g}{on}", inc_score)]


def _short_of(imp: float, incumbent: TrialRow, obj: Objective) -> str:
    if imp <= 0:
        return f"is no better than #{incumbent.number} ({'worse by ' + format(-imp, '.4g') if imp < 0 else 'equal'})"
    return f"improves on #{incumbent.number} by {imp:.4g}, not more than the threshold {obj.threshold:.4g}"


def _incumbent_score(s: CampaignState, incumbent: TrialRow) -> float:
    """The incumbent's promoted score (the mean of its runs), else its own run's."""
    score = s.info.incumbent_score if s.info.incumbent_score is not None else incumbent.score
    assert score is not None
    return score


def incumbent_on(s: CampaignState, incumbent: TrialRow, seeds: list[int]) -> tuple[float, str]:
    """What a proposal's runs on ``seeds`` are compared with, and the words saying so: the mean of the
    incumbent's own runs on exactly those seeds when it ran on each of them (its run, its reruns and
    its confirmation runs: a comparison paired by seed, in which a seed's luck is the same on both
    sides), else its promoted score (the mean of all its runs)."""
    mine: dict[int, float] = {}
    for x in s.rows:
        if x.scored and x.score is not None and (
                x.number == incumbent.number or (x.kind == "confirmation" and x.confirms == incumbent.number)
                or (x.kind == "rerun" and x.parent == incumbent.number)):
            mine.setdefault(x.seed, x.score)
    if seeds and all(seed in mine for seed in seeds):
        paired = statistics.fmean(mine[seed] for seed in seeds)
        return paired, f" (on the same seed{'s' if len(seeds) > 1 else ''}: {', '.join(map(str, seeds))})"
    return _incumbent_score(s, incumbent), ""


def _in_flight(s: CampaignState) -> bool:
    """Anything still to come in: an unlabelled trial, or a candidate awaiting its verdict."""
    return any(r.phase != LABELLED or (r.kind == "proposal" and r.status in ("scored", "candidate")) for r in s.rows)


def budget_exhausted(s: CampaignState) -> str | None:
    """The budget that stops new proposals, in words; None while there is budget left."""
    b = s.budgets
    props = [r for r in s.rows if r.kind == "proposal"]
    if len(props) + len(s.writing) >= b.max_trials:
        return f"trial budget reached ({b.max_trials} proposals)"
    if b.deadline_s is not None and s.elapsed_s >= b.deadline_s:
        return f"deadline reached ({b.deadline_s:.0f} s)"
    if b.max_usd is not None and sum(r.cost_usd for r in s.rows) >= b.max_usd:
        return f"LLM budget reached (${b.max_usd:.2f})"
    if b.max_compute_h is not None and sum(r.compute_s for r in s.rows) / 3600 >= b.max_compute_h:
        return f"compute budget reached ({b.max_compute_h:g} h)"
    if b.grace is not None:
        last_keep = max((p.number for p in s.info.promotions), default=0)
        since = [r for r in props if r.number > last_keep and r.status is not None]
        if len(since) >= b.grace:
            return f"no improvement in the last {b.grace} scored proposals"
    return None


def next_specialist(s: CampaignState, launching: int = 0) -> str | None:
    """Who writes the next proposal, if anyone should now (just in time: no more trials in flight
    than runner slots, so each proposal is made with the latest results in its lineage).
    ``launching``: trials this decision launches besides (confirmation runs)."""
    in_flight = [r for r in s.rows if r.phase != LABELLED]
    if len(in_flight) + len(s.writing) + launching >= max(1, s.budgets.slots):
        return None
    counts = {name: 0 for name in s.specialists}
    busy = {name: 0 for name in s.specialists}
    for r in s.rows:
        if r.kind == "proposal" and r.specialist in counts:
            counts[r.specialist] += 1
            if r.phase != LABELLED:
                busy[r.specialist] += 1
    free = [n for n in s.specialists if n not in s.writing and busy[n] < s.budgets.in_flight_per_specialist]
    if not free:
        return None
    order = {n: i for i, n in enumerate(s.specialists)}
    return min(free, key=lambda n: (counts[n], order[n]))

