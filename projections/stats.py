"""Statistics over the trial table, each kept incrementally.

* :class:`LineageTree` — parent → children per campaign; chains from the baseline.
* :class:`Leaderboard` — keeps by score; the current best (the baseline until a keep).
* :class:`StatusDistribution` — outcome labels per campaign (after relabels); the baseline's apart.
* :class:`SpecialistProfile` — per specialist: trials, labels, keeps, cost, compute.
* :class:`Cost` — LLM tokens and dollars, compute seconds; per trial and per keep.
* :class:`CrossRole` — keeps whose parent was proposed by another specialist.
* :class:`Throughput` — trials per hour and parallel efficiency.
* :class:`NoiseReport` — every keep's delta against the campaign's measured noise.

Definitions (used by the export and the audit report):

* **trials** exclude the baseline (kind ``baseline``); so do the **status counts**, which add up to
  the trials; the baseline's label is counted apart (``baseline_labels``).
* **cross-role keeps** (as arXiv 2605.05724 counts them): ``[n, of]`` where ``of`` = the keeps (of
  proposals) whose parent is a trial other than the baseline and ``n`` = those of them whose parent
  was proposed by a different specialist (pg_main: 32 of 33; its 36 keeps include 3 children of the
  baseline).
* **wall span**: from the earliest start (TrialStarted, else proposal time) to the latest end
  (label, evaluation, finish or proposal time) over the campaign's non-baseline trials.
* **trials per hour** = trials / wall span in hours.
* **parallel efficiency** = Σ trial compute time / (wall span × parallel slots), where a trial's
  compute time is its training wall seconds plus its evaluation wall seconds, and the slots are
  ``config["parallel_slots"]`` if set, else the number of distinct runner slots seen
  (TrialStarted.slot), else of distinct runners, else of declared specialists (the CMU harness ran
  one specialist per slot), else 1. 1.0 means every slot was busy for the whole span.
* **noise**: the latest NoiseMeasured sd, else ``config["noise_sd"]`` / ``config["noise"]["sd"]``.
  A keep's **score** is the mean of its runs and its **delta** the change from the mean of the runs of
  the incumbent it replaced (both ``projections.headline.runs_of``). It is **inside the noise** when
  |delta| < sd; it rests on a **single run** when it has one scored run.
"""

from __future__ import annotations

import bisect
import uuid
from collections import Counter, defaultdict
from typing import Any

from ledger import events as ev
from ledger.app import Recorded
from projections.base import Projection
from projections.headline import runs_of
from projections.records import CampaignInfo, TrialRow
from projections.trials import PerTrialAggregate, TrialTable

# ---------------------------------------------------------------------------------------------


class LineageTree(Projection):
    name = "lineage"
    requires = (TrialTable,)

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.table: TrialTable = self.deps[TrialTable]  # type: ignore[assignment]
        self.children_of: dict[uuid.UUID, dict[int | None, list[int]]] = {}

    def on_TrialProposed(self, rec: Recorded, e: ev.TrialProposed) -> None:
        row = self.table.trials.get(e.originator_id)
        if row is None:
            return
        kids = self.children_of.setdefault(row.campaign_id, {}).setdefault(row.parent, [])
        bisect.insort(kids, row.number)

    def children(self, campaign_id: uuid.UUID, number: int | None) -> list[TrialRow]:
        nums = self.children_of.get(campaign_id, {}).get(number, [])
        return [r for n in nums if (r := self.table.row(campaign_id, n)) is not None]

    def child_numbers(self, campaign_id: uuid.UUID, number: int | None) -> list[int]:
        return self.children_of.get(campaign_id, {}).get(number, [])

    def chain(self, campaign_id: uuid.UUID, number: int) -> list[TrialRow]:
        """The trials from the root (the baseline) down to ``number``."""
        out: list[TrialRow] = []
        seen: set[int] = set()
        row = self.table.row(campaign_id, number)
        while row is not None and row.number not in seen:
            out.append(row)
            seen.add(row.number)
            row = self.table.row(campaign_id, row.parent) if row.parent is not None else None
        out.reverse()
        return out

    def depth(self, campaign_id: uuid.UUID, number: int) -> int:
        return len(self.chain(campaign_id, number)) - 1

    @property
    def state(self) -> dict[str, Any]:
        out = {}
        for cid, m in self.children_of.items():
            name = self.table.campaigns[cid].name
            out[name] = {str(k): list(v) for k, v in sorted(m.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0))}
        return out


class Leaderboard(PerTrialAggregate):
    """Keeps (current label ``keep`` with a score) ordered best first; the best trial so far."""

    name = "leaderboard"

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.keeps: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        self._sorted: dict[uuid.UUID, list[TrialRow]] = {}

    def contribution(self, row: TrialRow) -> Any:
        return (row.trial_id, row.score) if row.kept and row.score is not None else None

    def add(self, campaign_id: uuid.UUID, c: Any, sign: int) -> None:
        if sign > 0:
            self.keeps[campaign_id].add(c[0])
        else:
            self.keeps[campaign_id].discard(c[0])
        self._sorted.pop(campaign_id, None)

    def ranked(self, campaign_id: uuid.UUID) -> list[TrialRow]:
        out = self._sorted.get(campaign_id)
        if out is None:
            obj = self.table.campaigns[campaign_id].objective
            rows = [self.table.trials[t] for t in self.keeps.get(campaign_id, ())]
            out = sorted(rows, key=lambda r: (obj.sort_key(r.score or 0.0), r.number))
            self._sorted[campaign_id] = out
        return out

    def best(self, campaign_id: uuid.UUID) -> TrialRow | None:
        """The current best: the campaign's confirmed incumbent (its last promotion), or the baseline
        while nothing was promoted past it — never a single unconfirmed run. Its score as a result
        (the mean of its runs) is :func:`projections.headline.headline`'s."""
        info = self.table.campaigns[campaign_id]
        if info.incumbent_number is not None:
            row = self.table.row(campaign_id, info.incumbent_number)
            if row is not None and row.score is not None:
                return row
        return self.table.baseline(campaign_id)

    @property
    def state(self) -> dict[str, Any]:
        out = {}
        for cid, info in self.table.campaigns.items():
            best = self.best(cid)
            out[info.name] = {"keeps": [[r.number, r.score] for r in self.ranked(cid)],
                              "best": best.number if best else None}
        return out


class StatusDistribution(PerTrialAggregate):
    """Outcome labels per campaign (after relabels): the trials' labels, which add up to the trial
    count, and apart from them the baseline's (kind ``baseline``: not a trial)."""

    name = "statuses"

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.counts: dict[uuid.UUID, Counter[str]] = defaultdict(Counter)
        self.baseline_counts: dict[uuid.UUID, Counter[str]] = defaultdict(Counter)

    def contribution(self, row: TrialRow) -> Any:
        return (row.kind == "baseline", row.status or "(pending)")

    def add(self, campaign_id: uuid.UUID, c: Any, sign: int) -> None:
        is_baseline, status = c
        cnt = (self.baseline_counts if is_baseline else self.counts)[campaign_id]
        cnt[status] += sign
        if cnt[status] == 0:
            del cnt[status]

    @staticmethod
    def _labelled(cnt: Counter[str]) -> dict[str, int]:
        return {k: v for k, v in sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0])) if k != "(pending)"}

    def labels(self, campaign_id: uuid.UUID) -> dict[str, int]:
        """The trials' outcome labels (the baseline and pending trials left out), most frequent first."""
        return self._labelled(self.counts.get(campaign_id, Counter()))

    def baseline_labels(self, campaign_id: uuid.UUID) -> dict[str, int]:
        """The baseline's label(s), counted apart from the trials."""
        return self._labelled(self.baseline_counts.get(campaign_id, Counter()))

    def pending(self, campaign_id: uuid.UUID) -> int:
        """Runs not labelled yet, the baseline's included."""
        return (self.counts.get(campaign_id, Counter()).get("(pending)", 0)
                + self.baseline_counts.get(campaign_id, Counter()).get("(pending)", 0))

    @property
    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cid in set(self.counts) | set(self.baseline_counts):
            trials, base = self.counts.get(cid, Counter()), self.baseline_counts.get(cid, Counter())
            if trials or base:
                out[self.table.campaigns[cid].name] = {"trials": dict(sorted(trials.items())),
                                                       "baseline": dict(sorted(base.items()))}
        return out


class SpecialistProfile(PerTrialAggregate):
    """Per campaign and specialist: trials, labels, keeps, sum of keep deltas, cost, tokens, compute."""

    name = "specialists"

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.profiles: dict[uuid.UUID, dict[str, dict[str, Any]]] = defaultdict(dict)

    def contribution(self, row: TrialRow) -> Any:
        if row.kind == "baseline":
            return None
        keep_delta = row.delta if (row.status == "keep" and row.delta is not None) else 0.0
        return (row.specialist, row.status or "(pending)", row.cost_usd, row.tokens, row.compute_s, keep_delta,
                row.score is not None)

    def add(self, campaign_id: uuid.UUID, c: Any, sign: int) -> None:
        spec, status, cost, tokens, compute, keep_delta, scored = c
        p = self.profiles[campaign_id].get(spec)
        if p is None:
            p = self.profiles[campaign_id][spec] = {"trials": 0, "statuses": Counter(), "cost_usd": 0.0, "tokens": 0,
                                                    "compute_s": 0.0, "keep_delta_sum": 0.0, "scored": 0}
        p["trials"] += sign
        p["statuses"][status] += sign
        if p["statuses"][status] == 0:
            del p["statuses"][status]
        p["cost_usd"] += sign * cost
        p["tokens"] += sign * tokens
        p["compute_s"] += sign * compute
        p["keep_delta_sum"] += sign * keep_delta
        p["scored"] += sign * int(scored)
        if p["trials"] == 0:
            del self.profiles[campaign_id][spec]

    def table_for(self, campaign_id: uuid.UUID) -> list[dict[str, Any]]:
        out = []
        for spec, p in sorted(self.profiles.get(campaign_id, {}).items()):
            keeps = p["statuses"].get("keep", 0)
            out.append({
                "specialist": spec, "trials": p["trials"], "keeps": keeps,
                "keep_rate": keeps / p["trials"] if p["trials"] else 0.0,
                "scored": p["scored"],
                "statuses": dict(sorted(p["statuses"].items())),
                "mean_keep_delta": p["keep_delta_sum"] / keeps if keeps else None,
                "cost_usd": p["cost_usd"], "tokens": p["tokens"], "compute_s": p["compute_s"],
            })
        return out

    @property
    def state(self) -> dict[str, Any]:
        return {self.table.campaigns[cid].name: self.table_for(cid) for cid in self.profiles if self.profiles[cid]}


class Cost(PerTrialAggregate):
    name = "cost"
    FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "compute_s")

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.sums: dict[uuid.UUID, list[float]] = {}

    def contribution(self, row: TrialRow) -> Any:
        if row.kind == "baseline":
            return None
        return (row.input_tokens, row.output_tokens, row.cache_read_tokens, row.cache_write_tokens, row.cost_usd,
                row.compute_s, 1, int(row.status == "keep"))

    def add(self, campaign_id: uuid.UUID, c: Any, sign: int) -> None:
        s = self.sums.setdefault(campaign_id, [0.0] * 8)
        for i, v in enumerate(c):
            s[i] += sign * v

    def summary(self, campaign_id: uuid.UUID) -> dict[str, Any]:
        s = self.sums.get(campaign_id, [0.0] * 8)
        trials, keeps = int(s[6]), int(s[7])
        tot = {f: s[i] for i, f in enumerate(self.FIELDS)}
        for f in self.FIELDS[:4]:
            tot[f] = int(tot[f])
        tot["tokens"] = sum(int(s[i]) for i in range(4))
        per = lambda n: {k: (v / n if n else None) for k, v in tot.items()}  # noqa: E731
        return {"trials": trials, "keeps": keeps, "total": tot, "per_trial": per(trials), "per_keep": per(keeps)}

    @property
    def state(self) -> dict[str, Any]:
        return {self.table.campaigns[cid].name: self.summary(cid) for cid in self.sums}


class CrossRole(PerTrialAggregate):
    """Cross-role keeps as the paper counts them: among the keeps whose parent is a trial other than
    the baseline, those whose parent was proposed by a different specialist."""

    name = "cross_role"
    KINDS = ("proposal", "imported")  # a keep is a proposal; reruns and confirmations are runs of one

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.counts: dict[uuid.UUID, list[int]] = {}

    def contribution(self, row: TrialRow) -> Any:
        if row.status != "keep" or row.kind not in self.KINDS:
            return None
        parent = self.table.trials.get(row.parent_id) if row.parent_id else None
        if parent is None or parent.kind == "baseline":
            return None
        return (1, int(parent.specialist != row.specialist))

    def add(self, campaign_id: uuid.UUID, c: Any, sign: int) -> None:
        s = self.counts.setdefault(campaign_id, [0, 0])
        s[0] += sign * c[1]
        s[1] += sign * c[0]

    def keeps(self, campaign_id: uuid.UUID) -> list[int]:
        """[cross-role keeps, keeps whose parent is not the baseline]."""
        return list(self.counts.get(campaign_id, [0, 0]))

    @property
    def state(self) -> dict[str, Any]:
        return {self.table.campaigns[cid].name: list(v) for cid, v in self.counts.items()}


class _Lazy(Projection):
    """A per-campaign summary recomputed from the trial table when the campaign changed."""

    requires = (TrialTable,)

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.table: TrialTable = self.deps[TrialTable]  # type: ignore[assignment]
        self._cache: dict[uuid.UUID, Any] = {}

    def apply(self, rec: Recorded) -> None:
        cid = self.table.touched_campaign
        if cid is not None:
            self._cache.pop(cid, None)

    def get(self, campaign_id: uuid.UUID) -> Any:
        v = self._cache.get(campaign_id)
        if v is None and campaign_id in self.table.campaigns:
            v = self._cache[campaign_id] = self.compute(self.table.campaigns[campaign_id])
        return v

    def compute(self, info: CampaignInfo) -> Any:
        raise NotImplementedError

    @property
    def state(self) -> dict[str, Any]:
        return {info.name: self.get(cid) for cid, info in self.table.campaigns.items()}


class Throughput(_Lazy):
    name = "throughput"

    def compute(self, info: CampaignInfo) -> dict[str, Any]:
        rows = [r for r in self.table.rows(info.campaign_id) if r.kind != "baseline"]
        starts = [r.started_at if r.started_at is not None else r.proposed_at for r in rows]
        ends = [max(x for x in (r.labelled_at, r.evaluated_at, r.finished_at, r.proposed_at) if x is not None)
                for r in rows]
        span = (max(ends) - min(starts)) if rows else 0.0
        compute = sum(r.compute_s for r in rows)
        slots_cfg = info.config.get("parallel_slots")
        slot_ids = {r.slot for r in rows if r.slot is not None and r.started_at is not None}
        runners = {r.runner for r in rows if r.runner}
        if isinstance(slots_cfg, int | float) and slots_cfg > 0:
            slots, basis = int(slots_cfg), "config"
        elif slot_ids:
            slots, basis = len(slot_ids), "runner slots"
        elif runners:
            slots, basis = len(runners), "runners"
        elif info.specialists:
            slots, basis = len(info.specialists), "specialists"
        else:
            slots, basis = 1, "default"
        hours = span / 3600.0
        return {
            "trials": len(rows),
            "wall_span_s": span,
            "trials_per_hour": (len(rows) / hours) if hours > 0 else None,
            "compute_s": compute,
            "parallel_slots": slots,
            "slots_basis": basis,
            "parallel_efficiency": (compute / (span * slots)) if span > 0 and slots > 0 else None,
            "first_at": min(starts) if rows else None,
            "last_at": max(ends) if rows else None,
        }


class NoiseReport(_Lazy):
    name = "noise"
    requires = (TrialTable, Leaderboard)

    def compute(self, info: CampaignInfo) -> dict[str, Any]:
        lb: Leaderboard = self.deps[Leaderboard]  # type: ignore[assignment]
        sd = info.noise_sd
        promos = {p.trial_id: p for p in info.promotions}
        keeps = []
        for row in sorted((self.table.trials[t] for t in lb.keeps.get(info.campaign_id, ())), key=lambda r: r.number):
            # the keep's score and its delta from the same numbers: the mean of its runs, against the
            # mean of the runs of the incumbent it replaced (projections.headline.runs_of)
            p = promos.get(row.trial_id)
            own = runs_of(self.table, info, row.number)
            score = own.mean if own is not None else row.score
            prev_n = p.previous_number if p is not None else (row.verdict.incumbent_number if row.verdict else None)
            prev = runs_of(self.table, info, prev_n) if prev_n is not None else None
            prev_score = prev.mean if prev is not None else (p.previous_score if p is not None else None)
            delta = score - prev_score if score is not None and prev_score is not None else row.delta
            runs = own.n if own is not None else 1
            within = bool(sd > 0 and delta is not None and abs(delta) < sd)
            keeps.append({
                "number": row.number, "specialist": row.specialist, "score": score, "delta": delta,
                "previous": prev_n, "previous_score": prev_score,
                "noise_sd": sd, "ratio": (abs(delta) / sd) if (sd > 0 and delta is not None) else None,
                "runs": runs, "within_noise": within, "single_run": runs <= 1,
                "threshold": p.threshold if p is not None else None, "hypothesis": row.hypothesis,
            })
        return {
            "metric": info.metric, "noise_sd": sd, "source": info.noise_source, "keeps": keeps,
            "within_noise": sum(k["within_noise"] for k in keeps),
            "single_run_within_noise": sum(k["within_noise"] and k["single_run"] for k in keeps),
        }
