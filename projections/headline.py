"""A campaign's result, computed once: :func:`headline` → :class:`Headline`.

Every output that states what a campaign achieved — ``arledger run``'s last line, ``status``,
``show`` of the incumbent, the export's ``summary.json``, its CSV tables and LaTeX files, the
figures and ``index.html`` — prints the number this module computes, and nothing else computes one.

* **the result** is the *confirmed incumbent*: the trial the campaign last promoted
  (``IncumbentPromoted``; the baseline while nothing beat it), measured as the **mean of its runs**
  — its own run, its scored confirmation runs and any later scored rerun of it — with their count
  and standard deviation (:func:`runs_of`);
* **the start** is the baseline measured the same way: the baseline's run and its scored reruns;
* **the change** is incumbent mean − baseline mean, and relative to the baseline's mean in percent;
* **the threshold it beat** comes from its keep verdict (``TrialJudged``): the value, the noise sd,
  how many runs that sd rests on and where it came from;
* **the single best run** (any scored run, whatever its kind) is reported apart, labelled as such:
  it is not the result;
* **counts** say what they count: proposals (imported records' trials included), confirmation runs,
  reruns (of the baseline or another trial: noise measurements), keeps, ``trials`` (every run but the
  baseline: what the status counts add up to) and ``trials_total`` (the baseline included).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from ledger import events as ev
from projections.records import CampaignInfo, TrialRow
from projections.trials import TrialTable

REMEASURE_KINDS = ("confirmation", "rerun")


def fmt_metric(v: float | None) -> str:
    """A metric value as every output prints it: four decimals when the value is exact at four
    (1.0810, 26.3560), else six (1.072210)."""
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.4f}" if abs(v - round(v, 4)) < 1e-9 else f"{v:.6f}"


def fmt_pct(pct: float | None) -> str:
    return "—" if pct is None else f"{pct:+.2f}%"


@dataclass(frozen=True)
class RunSet:
    """The scored runs of one trial's code: the trial's own run, then its re-measures."""

    number: int  # the trial whose code was run
    trials: tuple[int, ...]  # the trial number of each run
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float | None:
        """The sample standard deviation of the runs; None with fewer than two."""
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    def words(self) -> str:
        """``mean of 3 runs, sd 0.0012`` / ``1 run``."""
        if self.n == 1:
            return "1 run"
        sd = self.sd
        return f"mean of {self.n} runs" + (f", sd {sd:.2g}" if sd is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.number, "runs": self.n, "mean": self.mean, "sd": self.sd,
                "run_trials": list(self.trials), "values": list(self.values)}


@dataclass(frozen=True)
class Beaten:
    """The threshold the incumbent's keep verdict found it beat."""

    value: float
    sd: float
    sd_runs: int  # the runs the sd was measured on (0: the task's declared figure)
    sd_source: str
    improvement: float | None
    rule: str

    def words(self) -> str:
        runs = f" over {self.sd_runs} runs" if self.sd_runs else ""
        src = f" [{self.sd_source}]" if self.sd_source else ""
        return f"threshold {self.value:.4g} (noise sd {self.sd:.4g}{runs}{src})"


@dataclass(frozen=True)
class BestRun:
    """The single best scored run of the campaign — not the result; reported as such."""

    number: int
    score: float
    state: str  # baseline, keep, discard, confirmation of #N, ...


@dataclass(frozen=True)
class Counts:
    proposals: int  # proposals (and imported records' trials)
    confirmation_runs: int
    reruns: int  # reruns of the baseline or of another trial (noise measurements)
    keeps: int
    trials: int  # every run but the baseline: what the status counts add up to
    trials_total: int  # every run, the baseline included

    def words(self) -> str:
        parts = [f"{self.proposals} proposal{'s' if self.proposals != 1 else ''}"]
        if self.confirmation_runs:
            parts.append(f"{self.confirmation_runs} confirmation run{'s' if self.confirmation_runs != 1 else ''}")
        if self.reruns:
            parts.append(f"{self.reruns} rerun{'s' if self.reruns != 1 else ''}")
        base = self.trials_total - self.trials
        return ", ".join(parts) + (" and the baseline" if base else "") + f": {self.trials_total} trials"


@dataclass(frozen=True)
class Step:
    """One promotion, as the progress figure's incumbent line steps: from trial ``at`` on (the last
    run its verdict rested on), the incumbent is ``number`` at ``value`` (the mean of its runs)."""

    at: int
    number: int
    value: float
    runs: int


@dataclass(frozen=True)
class Headline:
    campaign: str
    metric: str
    direction: str
    baseline: RunSet | None
    incumbent: RunSet | None  # the baseline's runs while nothing was promoted past it
    confirmed: bool  # the incumbent is a promoted trial other than the baseline
    change: float | None  # incumbent mean - baseline mean
    rel_change_pct: float | None  # 100 x change / |baseline mean|
    threshold: Beaten | None
    best_run: BestRun | None
    counts: Counts
    steps: tuple[Step, ...]
    specialist: str = ""
    hypothesis: str = ""

    @property
    def best(self) -> float | None:
        return self.incumbent.mean if self.incumbent is not None else None

    @property
    def start(self) -> float | None:
        return self.baseline.mean if self.baseline is not None else None

    @property
    def pct(self) -> float | None:
        """The relative change as printed (two decimals)."""
        return round(self.rel_change_pct, 2) if self.rel_change_pct is not None else None

    def result_words(self) -> str:
        """``val_bpb 3.0869 → 3.056077 (-1.00%): #9, mean of 3 runs, sd 0.0012, beat threshold …``."""
        if self.incumbent is None or self.baseline is None:
            return f"{self.metric}: no baseline score"
        head = f"{self.metric} {fmt_metric(self.start)} → {fmt_metric(self.best)} ({fmt_pct(self.pct)})"
        if not self.confirmed:
            return (f"no confirmed improvement: {self.metric} {fmt_metric(self.start)} (the baseline, "
                    f"{self.baseline.words()})")
        inc = f"#{self.incumbent.number}, {self.incumbent.words()}"
        beat = f", beat {self.threshold.words()}" if self.threshold is not None else ""
        return f"{head}: {inc}{beat}; baseline {self.baseline.words()}"

    def best_run_words(self) -> str:
        b = self.best_run
        if b is None:
            return "best single run: none scored"
        return f"best single run: #{b.number} {fmt_metric(b.score)} ({b.state}; one run, not the result)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start, "start_runs": self.baseline.n if self.baseline else None,
            "start_sd": self.baseline.sd if self.baseline else None,
            "best": self.best, "best_trial": self.incumbent.number if self.incumbent else None,
            "best_runs": self.incumbent.n if self.incumbent else None,
            "best_sd": self.incumbent.sd if self.incumbent else None,
            "confirmed": self.confirmed, "change": self.change, "rel_change_pct": self.pct,
            "threshold": asdict(self.threshold) if self.threshold else None,
            "baseline_runs": self.baseline.to_dict() if self.baseline else None,
            "incumbent_runs": self.incumbent.to_dict() if self.incumbent else None,
            "best_single_run": asdict(self.best_run) if self.best_run else None,
            "counts": asdict(self.counts),
            "promotions": [asdict(s) for s in self.steps],
        }


def remeasures(row: TrialRow, number: int) -> bool:
    """Whether ``row`` is a re-measure (confirmation run or rerun) of trial ``number``'s code."""
    if row.kind not in REMEASURE_KINDS:
        return False
    return row.confirms == number if row.confirms is not None else row.parent == number


def runs_of(table: TrialTable, info: CampaignInfo, number: int) -> RunSet | None:
    """The scored runs of trial ``number``'s code: its own run, then each scored confirmation run
    and rerun of it, in trial order. None when its own run has no valid score."""
    row = table.row(info.campaign_id, number)
    if row is None or not row.scored or row.score is None:
        return None
    trials, values = [row.number], [row.score]
    for r in table.rows(info.campaign_id):
        if r.number != number and remeasures(r, number) and r.scored and r.score is not None:
            trials.append(r.number)
            values.append(r.score)
    return RunSet(number, tuple(trials), tuple(values))


def counts(rows: list[TrialRow]) -> Counts:
    kinds = [r.kind for r in rows]
    return Counts(proposals=sum(k in ("proposal", "imported") for k in kinds),
                  confirmation_runs=kinds.count("confirmation"), reruns=kinds.count("rerun"),
                  keeps=sum(r.kept for r in rows), trials=sum(k != "baseline" for k in kinds),
                  trials_total=len(rows))


JUDGED_ELSEWHERE = ("as labelled", "correction", "promotion (recorded as a relabel)")
"""Verdict policies of keeps not judged by a ``TrialJudged`` (imports, corrections, old ledgers)."""


def _beaten(info: CampaignInfo, row: TrialRow) -> Beaten | None:
    """The threshold the incumbent beat: its keep verdict's; for a keep no verdict judged (an
    import, an old ledger), what its promotion recorded."""
    v = row.verdict
    if v is not None and v.verdict == "keep" and v.policy not in JUDGED_ELSEWHERE:
        return Beaten(value=v.threshold, sd=v.sd, sd_runs=v.sd_runs, sd_source=v.sd_source,
                      improvement=v.improvement, rule=v.rule)
    p = next((p for p in reversed(info.promotions) if p.trial_id == row.trial_id), None)
    if p is None:
        return None
    imp = info.objective.improvement(p.score, p.previous_score) if p.previous_score is not None else None
    return Beaten(value=p.threshold, sd=p.noise_sd, sd_runs=0, sd_source="as promoted", improvement=imp,
                  rule=f"recorded with the promotion: threshold {p.threshold:.4g}, sd {p.noise_sd:.4g}")


def headline(table: TrialTable, info: CampaignInfo) -> Headline:
    """The campaign's result (see the module doc)."""
    rows = table.rows(info.campaign_id)
    obj = info.objective
    base_row = table.baseline(info.campaign_id)
    baseline = runs_of(table, info, base_row.number) if base_row is not None else None
    steps: list[Step] = []
    if baseline is not None and all(p.number != baseline.number for p in info.promotions):
        steps.append(Step(at=baseline.number, number=baseline.number, value=baseline.mean, runs=baseline.n))
    for p in info.promotions:
        rs = runs_of(table, info, p.number)
        if rs is None:
            continue
        row = table.row(info.campaign_id, p.number)
        v = row.verdict if row is not None else None
        at = max([p.number, *(n for n, _ in v.runs)]) if v is not None and v.verdict == "keep" else p.number
        steps.append(Step(at=at, number=p.number, value=rs.mean, runs=rs.n))
    inc_number = info.incumbent_number
    incumbent = runs_of(table, info, inc_number) if inc_number is not None else None
    if incumbent is None:
        incumbent = baseline
    confirmed = incumbent is not None and base_row is not None and incumbent.number != base_row.number
    inc_row = table.row(info.campaign_id, incumbent.number) if incumbent is not None else None
    change = pct = None
    if incumbent is not None and baseline is not None:
        change = incumbent.mean - baseline.mean
        pct = obj.relative_change_pct(incumbent.mean, baseline.mean)
    beaten = _beaten(info, inc_row) if confirmed and inc_row is not None else None
    scored = [r for r in rows if r.scored and r.score is not None and r.label in ev.VALID_SCORED]
    top = obj.best(scored, lambda r: r.score)
    best_run = BestRun(top.number, float(top.score or 0.0), top.state) if top is not None else None
    return Headline(
        campaign=info.name, metric=info.metric, direction=info.direction, baseline=baseline,
        incumbent=incumbent, confirmed=confirmed, change=change, rel_change_pct=pct, threshold=beaten,
        best_run=best_run, counts=counts(rows), steps=tuple(steps),
        specialist=inc_row.specialist if inc_row is not None else "",
        hypothesis=inc_row.hypothesis if inc_row is not None else "")
