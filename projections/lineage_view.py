"""The lineage view: the text a specialist reads before it proposes.

Sections, in the order they are printed:

1. header and the **current best** (always kept);
2. the **steering notes** still open that address the reader (a person's guidance for the running
   campaign: ``arledger note``), oldest first, each with its number and author;
3. a **saturation warning** when a specialist's last scored trials all moved the score by less
   than the noise;
4. the **leaderboard** of keeps;
5. the **chain** from the baseline to the best;
6. the **most recent trials of every specialist** (label, delta, the failure's reason or crash
   excerpt), the reader first;
7. the **best's children**;
8. the **dead ends** already tried (hypotheses that ended in a failure label or a discard,
   deduplicated, newest first).

The text is bounded by a token budget (about 4 characters a token): when it is too long the
lowest-priority sections lose whole items from their end (an omission line says how many), and
are dropped entirely if nothing fits; a line is never cut. The priority, highest first, is:
header and best, notes, saturation, leaderboard, chain, recent trials, children, dead ends.

``arm="no-lineage"`` (the control arm) shows the header, the current best and the open notes only
(a note is a person's instruction, not lineage).

Everything the view needs is kept up to date by the :class:`LineageIndex` projection (recent trials
per specialist, deduplicated dead ends), the :class:`~projections.stats.Leaderboard` and the
:class:`~projections.stats.LineageTree`; rendering looks up, it never scans the log.
"""

from __future__ import annotations

import bisect
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ledger import events as ev
from ledger.app import Recorded
from ledger.store import LedgerError
from projections.base import Projection
from projections.records import CampaignInfo, TrialRow
from projections.stats import Leaderboard, LineageTree
from projections.trials import PerTrialAggregate, TrialTable

CHARS_PER_TOKEN = 4
DEAD_STATUSES = frozenset(s for s in ev.STATUSES
                          if s not in ("scored", "keep", "baseline", "runner_lost", "cancelled", "harness_abort",
                                       "duplicate"))
"""A proposal that ended here is a dead idea (a candidate awaiting confirmation is not)."""
SATURATION_WINDOW = 5
RECENT_OWN = 6
RECENT_OTHER = 4
LEADERBOARD_TOP = 20
MAX_CHILDREN = 80
MAX_DEAD = 400
HYP_CHARS = 100
EXCERPT_CHARS = 160

_WS = re.compile(r"\s+")
_NONWORD = re.compile(r"[^\w.+\-→]+")


def dedup_key(hypothesis: str) -> str:
    """Hypotheses that differ only in case, spacing or punctuation are the same idea."""
    return _WS.sub(" ", _NONWORD.sub(" ", hypothesis.lower())).strip()[:160]


class LineageIndex(PerTrialAggregate):
    """Per campaign: trials per specialist in proposal order; dead-end hypotheses, deduplicated."""

    name = "lineage_index"
    requires = (TrialTable, Leaderboard, LineageTree)

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.by_specialist: dict[uuid.UUID, dict[str, list[int]]] = defaultdict(dict)
        self.dead: dict[uuid.UUID, dict[str, list[int]]] = defaultdict(dict)  # key -> numbers (sorted)
        self._dead_order: dict[uuid.UUID, list[str]] = {}
        self.short: dict[uuid.UUID, str] = {}  # trial -> hypothesis clipped for display

    def on_TrialProposed(self, rec: Recorded, e: ev.TrialProposed) -> None:
        self.short[e.originator_id] = clip(e.hypothesis, HYP_CHARS)
        if e.kind == "baseline":
            return
        bisect.insort(self.by_specialist[e.campaign_id].setdefault(e.specialist, []), e.number)

    def contribution(self, row: TrialRow) -> Any:
        if row.kind != "proposal" or row.status not in DEAD_STATUSES or not row.hypothesis.strip():
            return None
        return (dedup_key(row.hypothesis), row.number)

    def add(self, campaign_id: uuid.UUID, c: Any, sign: int) -> None:
        key, number = c
        d = self.dead[campaign_id]
        if sign > 0:
            bisect.insort(d.setdefault(key, []), number)
        else:
            nums = d.get(key, [])
            if number in nums:
                nums.remove(number)
            if not nums:
                d.pop(key, None)
        self._dead_order.pop(campaign_id, None)

    def dead_ends(self, campaign_id: uuid.UUID, limit: int | None = None) -> list[tuple[str, list[int]]]:
        """(key, numbers) newest first (by the latest trial that tried the idea)."""
        d = self.dead.get(campaign_id, {})
        order = self._dead_order.get(campaign_id)
        if order is None:
            order = sorted(d, key=lambda k: -d[k][-1])
            self._dead_order[campaign_id] = order
        return [(k, d[k]) for k in (order if limit is None else order[:limit])]

    def dead_count(self, campaign_id: uuid.UUID) -> int:
        return len(self.dead.get(campaign_id, {}))

    @property
    def state(self) -> dict[str, Any]:
        names = {cid: c.name for cid, c in self.table.campaigns.items()}
        return {
            "by_specialist": {names.get(c, str(c)): {s: list(v) for s, v in sorted(m.items())}
                              for c, m in self.by_specialist.items()},
            "dead": {names.get(c, str(c)): [[k, list(v)] for k, v in self.dead_ends(c)] for c in self.dead},
        }


# ---------------------------------------------------------------------------------------------
# formatting


def fmt_score(v: float | None) -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1000:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.4f}"
    return f"{v:.6f}"


def fmt_delta(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:+.4f}" if abs(v) >= 10 else f"{v:+.6f}"


def clip(text: str, n: int) -> str:
    text = _WS.sub(" ", text[: n * 2 + 16]).strip() if len(text) > n * 2 + 16 else _WS.sub(" ", text).strip()
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def trial_tag(row: TrialRow, metric: str, *, specialist: bool = True) -> str:
    parts = []
    if specialist:
        parts.append(row.specialist)
    parts.append(row.state)
    if row.score is not None:
        parts.append(f"{metric}={fmt_score(row.score)}")
    if row.delta is not None and row.kind != "baseline":
        parts.append(f"Δ={fmt_delta(row.delta)}")
    return f"#{row.number:03d} [{', '.join(parts)}]"


@dataclass
class Section:
    priority: int  # 0 = always kept; larger = dropped first
    title: list[str]
    items: list[list[str]] = field(default_factory=list)
    total_items: int | None = None  # items that exist (>= len(items) when capped before budgeting)
    omission: str = "… ({n} more not shown)"

    def _hidden(self, k: int) -> int:
        return (self.total_items if self.total_items is not None else len(self.items)) - k

    def size(self, k: int | None = None, prefix: list[int] | None = None) -> int:
        """Characters of the section with its first ``k`` items (all by default), newlines included."""
        k = len(self.items) if k is None else k
        if prefix is None:
            body = sum(len(x) + 1 for it in self.items[:k] for x in it)
        else:
            body = prefix[k]
        n = sum(len(x) + 1 for x in self.title) + body
        hidden = self._hidden(k)
        if hidden > 0:
            n += len(self.omission.format(n=hidden)) + 1
        return n

    def prefix_sizes(self) -> list[int]:
        out = [0]
        for it in self.items:
            out.append(out[-1] + sum(len(x) + 1 for x in it))
        return out

    def lines(self) -> list[str]:
        out = list(self.title)
        for it in self.items:
            out.extend(it)
        hidden = self._hidden(len(self.items))
        if hidden > 0:
            out.append(self.omission.format(n=hidden))
        return out


def fit(sections: list[Section], max_chars: int) -> list[Section]:
    """Drop items (whole lines) from the lowest-priority sections until the text fits."""
    keep = list(sections)
    total = sum(s.size() for s in keep) + len(keep)  # + the blank line between sections
    for sec in sorted(keep, key=lambda s: -s.priority):
        if total <= max_chars:
            break
        if sec.priority == 0:
            continue
        before = sec.size() + 1
        room = before - (total - max_chars)
        prefix = sec.prefix_sizes()
        k = len(sec.items)
        while k > 0 and sec.size(k, prefix) + 1 > room:
            k -= 1
        if k == 0:
            keep.remove(sec)
            total -= before
            continue
        sec.total_items = sec.total_items if sec.total_items is not None else len(sec.items)
        sec.items = sec.items[:k]
        total -= before - (sec.size() + 1)
    if total > max_chars:  # only the always-kept header is over budget: keep the whole lines that fit
        head = [s for s in keep if s.priority == 0]
        for s in head:
            lines, used = [], 0
            for line in s.lines():
                if used + len(line) + 1 > max_chars and lines:
                    break
                lines.append(line)
                used += len(line) + 1
            s.title, s.items, s.total_items = lines, [], None
        keep = head
    return keep


# ---------------------------------------------------------------------------------------------
# rendering


def _resolve(state: Any) -> tuple[TrialTable, Leaderboard, LineageTree, LineageIndex]:
    get = state.__getitem__ if hasattr(state, "projections") else None
    if get is None:
        raise TypeError("render_lineage_view needs a Projector (projections.Projector) as its state")
    return get(TrialTable), get(Leaderboard), get(LineageTree), get(LineageIndex)


def _campaign(table: TrialTable, campaign: str | uuid.UUID) -> CampaignInfo:
    info = table.campaign(campaign)
    if info is None:
        raise LedgerError(f"no campaign {campaign!r} in this ledger")
    return info


def saturated(table: TrialTable, index: LineageIndex, info: CampaignInfo, specialist: str,
              window: int = SATURATION_WINDOW) -> tuple[bool, list[TrialRow]]:
    """Whether the specialist's last ``window`` scored trials all moved the score by less than the
    noise (the campaign's noise sd; without a measured noise nothing is called saturated)."""
    sd = info.noise_sd
    nums = index.by_specialist.get(info.campaign_id, {}).get(specialist, [])
    recent: list[TrialRow] = []
    for n in reversed(nums[-max(window * 10, 50):]):
        r = table.row(info.campaign_id, n)
        if r is not None and r.scored and r.delta is not None:
            recent.append(r)
            if len(recent) == window:
                break
    if sd <= 0 or len(recent) < window:
        return False, recent
    return all(abs(r.delta or 0.0) < sd for r in recent), recent


def render_lineage_view(state: Any, campaign: str | uuid.UUID, specialist: str, *, arm: str = "lineage",
                        token_budget: int = 6000) -> str:
    """The lineage view ``specialist`` reads in ``campaign``, within ``token_budget`` tokens.

    ``state`` is a :class:`~projections.projector.Projector` that has caught up with the ledger."""
    table, board, tree, index = _resolve(state)
    info = _campaign(table, campaign)
    short = index.short

    def hyp(r: TrialRow) -> str:
        h = short.get(r.trial_id)
        return h if h is not None else clip(r.hypothesis, HYP_CHARS)

    max_chars = token_budget * CHARS_PER_TOKEN
    cap = max(8, max_chars // 60)  # more items than this cannot fit: do not build them
    cid, metric = info.campaign_id, info.metric
    surface = dict(info.specialists).get(specialist, "")
    best = board.best(cid)
    base = table.baseline(cid)

    head = [f"# Lineage view — campaign {info.name}"]
    if best is None:
        head.append("Current best: none yet (no baseline has been scored).")
    else:
        gain = ""
        if base is not None and best is not base and base.score is not None and best.score is not None:
            gain = f", Δ vs baseline={fmt_delta(best.score - base.score)}"
        who = "baseline" if best.kind == "baseline" else best.specialist
        head.append(f"Current best: **#{best.number:03d}** ({metric}={fmt_score(best.score)}{gain}) by {who} — "
                    f"{clip(best.hypothesis, 200)}")
    head.append(f"You are specialist **{specialist}**" + (f" (surface: {surface})." if surface else "."))
    head.append(f"Task {info.task} · metric {metric} ({info.objective.word} is better)"
                + (f" · noise sd {fmt_score(info.noise_sd)}" if info.noise_sd and arm != "no-lineage" else ""))
    sections = [Section(0, head)]
    notes = notes_section(info, specialist)
    if arm == "no-lineage":
        return "\n\n".join("\n".join(s.lines()) for s in fit(sections + notes, max_chars)) + "\n"
    sections += notes

    ranked = board.ranked(cid)
    n_trials = len(table.numbers.get(cid, ())) - (1 if base is not None else 0)
    head.append(f"{n_trials} trials so far, {len(ranked)} keeps.")

    # saturation ---------------------------------------------------------------------------
    sat_items: list[list[str]] = []
    mine, mine_recent = saturated(table, index, info, specialist)
    others = [s for s in sorted(index.by_specialist.get(cid, {})) if s != specialist
              and saturated(table, index, info, s)[0]]
    if mine:
        moves = ", ".join(f"#{r.number:03d} {fmt_delta(r.delta)}" for r in mine_recent)
        sat_items.append([f"⚠ Your last {len(mine_recent)} scored trials all moved {metric} by less than the noise "
                          f"(sd {fmt_score(info.noise_sd)}): {moves}. Small tweaks on this surface are saturated; "
                          "try a structurally different idea."])
    if others:
        sat_items.append([f"Also saturated (last {SATURATION_WINDOW} scored trials inside the noise): "
                          + ", ".join(others) + "."])
    if sat_items:
        sections.append(Section(2, ["## Saturation warning"], sat_items))

    # leaderboard ---------------------------------------------------------------------------
    if ranked:
        top = ranked[:LEADERBOARD_TOP]
        lb = Section(3, [f"## Leaderboard (top {len(top)} of {len(ranked)} keeps)",
                         f"| # | {metric} | Δ | specialist | hypothesis |", "|---|---|---|---|---|"])
        lb.items = [[f"| {r.number:03d} | {fmt_score(r.score)} | {fmt_delta(r.delta)} | {r.specialist} | "
                     f"{hyp(r).replace('|', '/')} |"] for r in top]
        lb.total_items = len(ranked)
        lb.omission = "… ({n} more keeps)"
        sections.append(lb)

    # chain ----------------------------------------------------------------------------------
    if best is not None:
        chain = tree.chain(cid, best.number)
        ch = Section(4, [f"## Lineage of the current best (baseline → #{best.number:03d}, {len(chain)} trials)"])
        for i, r in enumerate(chain):
            prefix = "" if i == 0 else " └─ "
            mark = " ← BEST" if r is best else ""
            ch.items.append([f"{prefix}{trial_tag(r, metric)} {hyp(r)}{mark}"])
        sections.append(ch)

    # recent trials per specialist -----------------------------------------------------------
    rec = Section(5, ["## Recent trials by specialist (newest first)"])
    rec.omission = "… ({n} more specialists not shown)"
    specs = sorted(index.by_specialist.get(cid, {}))
    if specialist in specs:
        specs.remove(specialist)
        specs.insert(0, specialist)
    for s in specs:
        nums = index.by_specialist[cid][s]
        k = RECENT_OWN if s == specialist else RECENT_OTHER
        block = [f"### {s}" + (" (you)" if s == specialist else "") + f" — {len(nums)} trials"]
        for n in reversed(nums[-k:]):
            r = table.row(cid, n)
            if r is None:
                continue
            block.append(f"- {trial_tag(r, metric, specialist=False)} {hyp(r)}")
            if r.status in ev.VERDICTS or r.status in ("scored", "baseline") or r.status is None:
                continue
            detail = r.excerpt or r.reason
            if r.gates_failed and not detail:
                detail = f"failed gates {', '.join(r.gates_failed)}"
            if detail:
                block.append(f"  └─ {r.status}: {clip(detail, EXCERPT_CHARS)}")
        rec.items.append(block)
    if rec.items:
        sections.append(rec)

    # children of the best -------------------------------------------------------------------
    if best is not None:
        kids = tree.child_numbers(cid, best.number)
        if kids:
            chs = Section(6, [f"## Children of the best #{best.number:03d} ({len(kids)})"])
            chs.omission = "… ({n} more children)"
            for n in kids[:min(MAX_CHILDREN, cap)]:
                r = table.row(cid, n)
                if r is not None:
                    chs.items.append([f" • {trial_tag(r, metric)} {hyp(r)}"])
            chs.total_items = len(kids)
            sections.append(chs)

    # dead ends -------------------------------------------------------------------------------
    n_dead = index.dead_count(cid)
    if n_dead:
        de = Section(7, [f"## Dead ends already tried ({n_dead} distinct ideas, newest first)"])
        de.omission = "… ({n} more dead ends)"
        for _key, nums in index.dead_ends(cid, min(MAX_DEAD, cap)):
            r = table.row(cid, nums[-1])
            if r is None:
                continue
            again = f" (tried {len(nums)}×)" if len(nums) > 1 else ""
            de.items.append([f"- {trial_tag(r, metric)}{again} {hyp(r)}"])
        de.total_items = n_dead
        sections.append(de)

    kept = fit(sections, max_chars)
    return "\n\n".join("\n".join(s.lines()) for s in kept) + "\n"


def notes_section(info: CampaignInfo, specialist: str) -> list[Section]:
    """The open steering notes addressed to ``specialist`` (or to everyone), as a section."""
    mine = info.open_notes(specialist)
    if not mine:
        return []
    sec = Section(1, [f"## Notes from the people running this campaign ({len(mine)} open; follow them)"])
    sec.omission = "… ({n} more notes)"
    for n in mine:
        to = "you" if n.specialist else "every specialist"
        sec.items.append([f"- note {n.number} (from {n.actor.removeprefix('human:')}, to {to}): {clip(n.text, 400)}"])
    return [sec]


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
