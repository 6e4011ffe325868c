"""What each export figure plots, as data: the figures draw it (``projections.figures``) and the
export's ``summary.json`` carries it as the figures' caption data (``figures`` of each campaign).

No matplotlib here: ``status`` and ``summary.json`` need the numbers, not the drawing.

* :func:`progress` — every scored run by its series (baseline, keep, candidate awaiting
  confirmation, candidate not confirmed, discard, confirmation run, rerun, scored but not judged,
  failure with a score), the failures without a score, and the incumbent line: the confirmed
  incumbent over trial numbers, stepping only at promotions, each step at the mean of the promoted
  trial's runs (``projections.headline``: the same values every output prints).
* :func:`lineage` — the tree of keeps: each keep (and the baseline) with the keep it descends from
  (its nearest kept ancestor; ``via`` names the trials in between when its parent was not a keep),
  its value (the mean of its runs) and the lane the figure draws it in (the chain from the baseline
  to the incumbent is lane 0; every other branch gets a lane of its own).
* :func:`specialists` — outcome counts per specialist.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ledger import events as ev
from projections.headline import headline, runs_of
from projections.records import FAILURE_STATUSES, CampaignInfo, TrialRow

SERIES = ("baseline", "keep", "candidate", "not confirmed", "discard", "confirmation", "rerun", "scored",
          "failed (scored)")
"""The progress figure's series of scored runs, in legend order."""


def series_of(row: TrialRow) -> str | None:
    """Which series a scored run is drawn in (None: it has no score to draw)."""
    if row.score is None:
        return None
    if row.label not in ev.VALID_SCORED:
        return "failed (scored)"
    if row.kind in ("baseline", "confirmation", "rerun"):
        return row.kind
    st = row.status
    if st == "keep":
        return "keep"
    if st == "candidate":
        return "candidate"
    if st == "discard":
        return "not confirmed" if row.verdict is not None and len(row.verdict.runs) > 1 else "discard"
    return "scored"


@dataclass
class Progress:
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # series -> (trial, score)
    failures: list[tuple[int, str]] = field(default_factory=list)  # (trial, label) of runs without a score
    pending: list[int] = field(default_factory=list)
    incumbent: list[tuple[int, float]] = field(default_factory=list)  # the step line's corners (x, value)
    promotions: list[dict[str, Any]] = field(default_factory=list)  # each step: at, number, value, runs
    trials: int = 0  # every row, the baseline included
    first: int = 0
    last: int = 0

    @property
    def points(self) -> int:
        return sum(len(v) for v in self.series.values())

    def caption(self) -> dict[str, Any]:
        return {"trials": self.trials, "points": self.points,
                "points_by_series": {k: len(v) for k, v in self.series.items()},
                "failures_without_score": len(self.failures), "pending": len(self.pending),
                "incumbent": [{"from_trial": x, "value": v} for x, v in self.incumbent],
                "promotions": list(self.promotions)}


def progress(table: Any, info: CampaignInfo) -> Progress:
    rows = table.rows(info.campaign_id)
    h = headline(table, info)
    out = Progress(trials=len(rows), first=rows[0].number if rows else 0, last=rows[-1].number if rows else 0)
    for r in rows:
        s = series_of(r)
        if s is not None:
            out.series.setdefault(s, []).append((r.number, float(r.score)))  # type: ignore[arg-type]
        elif r.status is None:
            out.pending.append(r.number)
        elif r.status in FAILURE_STATUSES:
            out.failures.append((r.number, r.status))
    out.series = {k: out.series[k] for k in SERIES if k in out.series}
    for st in h.steps:
        out.incumbent.append((st.at, st.value))
        out.promotions.append(asdict(st))
    return out


@dataclass(frozen=True)
class Node:
    number: int
    specialist: str
    value: float  # the mean of its runs
    runs: int
    parent: int | None  # the keep (or baseline) it descends from
    via: tuple[int, ...]  # trials between it and that keep (its parent was not a keep)
    lane: int
    incumbent: bool
    on_chain: bool  # on the chain from the baseline to the incumbent


@dataclass
class Lineage:
    nodes: list[Node] = field(default_factory=list)
    incumbent: int | None = None

    def caption(self) -> dict[str, Any]:
        return {"keeps": sum(1 for n in self.nodes if n.parent is not None), "incumbent": self.incumbent,
                "lanes": 1 + max((n.lane for n in self.nodes), default=0),
                "nodes": [asdict(n) for n in self.nodes],
                "edges": [[n.parent, n.number] for n in self.nodes if n.parent is not None]}


def lineage(table: Any, info: CampaignInfo) -> Lineage:
    cid = info.campaign_id
    base = table.baseline(cid)
    keeps = [r for r in table.rows(cid) if r.kept and r.score is not None]
    members: list[TrialRow] = ([base] if base is not None and base.score is not None else []) + keeps
    ids = {r.trial_id for r in members}
    parent: dict[int, tuple[int | None, tuple[int, ...]]] = {}
    for r in members:
        via: list[int] = []
        p = table.trials.get(r.parent_id) if r.parent_id else None
        while p is not None and p.trial_id not in ids:
            via.append(p.number)
            p = table.trials.get(p.parent_id) if p.parent_id else None
        parent[r.number] = (p.number if p is not None else None, tuple(reversed(via)))
    h = headline(table, info)
    inc = h.incumbent.number if h.incumbent is not None else None
    chain: set[int] = set()
    n = inc
    while n is not None and n in parent and n not in chain:
        chain.add(n)
        n = parent[n][0]
    kids: dict[int | None, list[int]] = {}
    for r in members:
        kids.setdefault(parent[r.number][0], []).append(r.number)
    # lanes: depth first from each root; the child on the chain to the incumbent (else the first)
    # continues its parent's lane, every other child opens a new one
    lane: dict[int, int] = {}
    nxt = 0
    stack: list[tuple[int, int]] = []
    for root in reversed(sorted(kids.get(None, []), key=lambda x: (x not in chain, x))):
        stack.append((root, -1))
    while stack:
        num, inherited = stack.pop()
        if inherited < 0:
            inherited, nxt = nxt, nxt + 1
        lane[num] = inherited
        cs = sorted(kids.get(num, []), key=lambda x: (x not in chain, x))
        for i, c in reversed(list(enumerate(cs))):
            stack.append((c, inherited if i == 0 else -1))
    by_num = {r.number: r for r in members}
    out = Lineage(incumbent=inc)
    for num in sorted(lane):
        r = by_num[num]
        rs = runs_of(table, info, num)
        out.nodes.append(Node(number=num, specialist="baseline" if r.kind == "baseline" else r.specialist,
                              value=rs.mean if rs is not None else float(r.score),
                              runs=rs.n if rs is not None else 1, parent=parent[num][0], via=parent[num][1],
                              lane=lane[num], incumbent=num == inc, on_chain=num in chain))
    return out


def specialists(proj: Any, info: CampaignInfo) -> dict[str, Any]:
    prof = proj.specialists.table_for(info.campaign_id)
    return {"specialists": [{"specialist": p["specialist"], "trials": p["trials"], "keeps": p["keeps"],
                             "statuses": dict(p["statuses"])} for p in prof]}


def captions(proj: Any, info: CampaignInfo) -> dict[str, Any]:
    """Each figure's caption data, for ``summary.json``."""
    return {"progress": progress(proj.trials, info).caption(), "lineage": lineage(proj.trials, info).caption(),
            "specialists": specialists(proj, info)}
