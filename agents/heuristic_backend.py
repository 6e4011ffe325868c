"""The default offline specialist: a lineage-aware search over the task's declared knobs and patches.

:class:`HeuristicBackend` reads the trial table (``ctx.trials()``) and every listed trial's code
(``ctx.trial_files``), works out which knob moves and patches each trial made relative to its parent
and what came of them, and proposes one edit onto the incumbent. Candidate moves are ranked; the
first one that survives the filters becomes the proposal.

Ranking (higher first; ties broken by a seeded random draw):

========================  ========  ===============================================================
move                      priority  when
========================  ========  ===============================================================
combine                   9         a keep (or a trial that beat its parent by more than the
                                    threshold) outside the incumbent's ancestry changed knobs /
                                    patches of this surface that the incumbent lacks: borrow them
momentum                  8         an earlier move of this knob in this direction improved and the
                                    incumbent sits at or beyond its start: repeat it (same step)
explore / patch           7         a declared patch of this surface not yet tried (first: expected
                                    1.5x the threshold); a knob nobody has moved yet (a bold step
                                    either way)
reverse, sensitive knob   7         a move of this knob from about here worsened the score by more
                                    than 3x the threshold: the knob matters, so go the other way
                                    (ranked by half that loss, ahead of untouched knobs)
momentum, other step      6         the improving direction with a half or double step
reverse                   5         a move of this knob from about here worsened or failed: go the
                                    other way
smaller step              4         the direction that worsened, stopping short of the bad value
neutral                   3         a knob with history that says nothing about this direction
retry / odd step          2         a patch that was discarded elsewhere; half/double exploration
against                   1         back toward a value an improving move left, or a full step onto
                                    a value already seen to be worse
random                    0         1-2 knobs set at random within range: only when all else is
                                    exhausted
========================  ========  ===============================================================

Filters, in order: the full configuration (every knob's value + the set of patches present) must be
new (no listed trial, nor a proposal this instance already made for the campaign, had it); no
single knob move may repeat an exact ``(knob, from, to)`` of a single-knob trial that was discarded
or failed (unless it beat its parent by more than the threshold and only lost a race); no move may land at or beyond a value where an earlier move in the same direction hit
``size_blocked``, ``train_budget_overrun``, ``eval_budget_overrun``, ``oom``, ``diverged``,
``disqualified`` or ``truncated`` (the back-off ceiling); and ``ctx.check_surface`` must accept the diff.

Steps: a default step is x2 / x0.5 for log-scale knobs (x√2 for a half step), ±10% of the range for
linear floats, ±1 for ints (x2 / x0.5 when the range spans 16 or more, or the knob is log-scale), the
neighbouring value for choices, a flip for bools; everything clamped to range and written with
``tasks.knobs.set_knob``. Coarse to fine: a direction nobody has tried is first probed two default
steps out for continuous knobs and wide int ranges (a probe that cannot move the score past the noise
threshold wastes a trial); momentum then repeats the step that paid and an overshoot is retried
with a smaller one.

Evidence: a trial's *gain* is its improvement over its parent's score in the task's direction
(else its ``delta`` against the incumbent); keep / discard with gain > 0 count as "improved", other
keeps, discards and runs stopped early (by the task's early-stopping rule) as "worsened", the
back-off labels as "failed", crash / preflight_crash /
illegal_edit as "crashed". Each trial's knob moves and added patches are read from its code against
its listed parent's code, so under the ``no-lineage`` arm (baseline + best only) there is almost no
evidence and the same rules reduce to exploration from the incumbent.

Deterministic: all randomness comes from ``random.Random`` seeded with the backend seed, the
specialist, the number of listed trials, the incumbent and how many proposals this instance already
made on that same view; same lineage + same seed gives the same proposal.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.base import Proposal, ProposalFailed, StructuredContext
from agents.heuristic_moves import (
    BACKOFF_STATUSES,
    CRASH_STATUSES,
    DEAD_STATUSES,
    SCORED_STATUSES,
    Config,
    Move,
    TrialChange,
    TrialCode,
    campaign_key,
    move_verb,
    outcome_text,
    patch_applicable,
    position,
    probe_mag,
    same,
    step_size,
    stepped,
    tidy,
    value_text,
)
from ledger import diffs
from projections.records import TrialRow
from tasks.knobs import set_knob
from tasks.spec import Knob, KnobValue

COMBINE, MOMENTUM, EXPLORE, MOMENTUM_ALT, REVERSE, SMALLER, NEUTRAL, RETRY, AGAINST, RANDOM = (
    9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
PATCH_NEW = EXPLORE
PATCH_PRIOR = 1.5
"""An untried declared patch is expected to gain this x the threshold, a blind probe of an untouched knob
1x: the task's author declared the patch with a hypothesis, so among the exploring moves it goes first."""
RANDOM_TRIES = 300
SENSITIVE = 3.0  # a move that worsened the score by more than this x the threshold marks a sensitive knob

# -------------------------------------------------------------------------------------------------
# candidates


@dataclass
class Candidate:
    priority: int
    kind: str
    changes: dict[str, KnobValue]  # knob name -> new value
    patches: tuple[str, ...]  # patch names to apply
    hypothesis: str
    expected: float  # expected improvement magnitude (metric units, >= 0)
    evidence: tuple[int, ...] = ()
    tie: float = 0.0


@dataclass
class _Skips:
    duplicate: int = 0
    dead: int = 0
    blocked: int = 0
    surface: int = 0
    invalid: int = 0
    reasons: list[str] = field(default_factory=list)


class HeuristicBackend:
    """The offline, lineage-aware specialist. Thread-safe; deterministic for a seed."""

    name = "heuristic"
    model = "heuristic-v1"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._cache: dict[Any, Any] = {}
        self._issued: dict[tuple[Any, str], set[Config]] = {}
        self._lock = threading.Lock()

    def propose(self, ctx: StructuredContext) -> Proposal:
        with self._lock:
            return _Search(self, ctx).run()


class _Search:
    """One proposal: read the lineage, rank the candidates, return the first that passes."""

    def __init__(self, backend: HeuristicBackend, ctx: StructuredContext):
        self.b = backend
        self.ctx = ctx
        self.spec = ctx.task
        self.rows: list[TrialRow] = list(ctx.trials())
        self.by_number = {r.number: r for r in self.rows}
        self.campaign = campaign_key(self.rows)
        self.code = TrialCode(ctx, backend._cache, self.campaign)
        self.metric = ctx.metric or self.spec.metric
        self.objective = ctx.objective
        self.threshold = ctx.objective.threshold
        self.inc = ctx.incumbent()
        self.issued = backend._issued.setdefault((self.campaign, ctx.specialist), set())
        self.rng = random.Random(f"{backend.seed}:{ctx.specialist}:{len(self.rows)}:{self.inc}:{len(self.issued)}")
        editable = set(ctx.editable_files() or ())
        surface = self.spec.surfaces.get(ctx.surface)
        self.knobs = [k for k in (surface.knobs if surface else ())
                      if not editable or k.file in editable]
        self.my_knobs = {k.name for k in self.knobs}
        self.patches = [p for p in self.spec.patches
                        if p.surface == ctx.surface and (not editable or p.file in editable)]

    # ---- evidence

    def gain(self, row: TrialRow) -> float | None:
        """The trial's improvement over its parent (positive = better), else over the incumbent it
        was compared with; None when neither is known."""
        parent = self.by_number.get(row.parent) if row.parent is not None else None
        if row.score is not None and parent is not None and parent.score is not None and parent.scored:
            return self.objective.improvement(row.score, parent.score)
        if row.delta is not None and math.isfinite(row.delta):
            return self.objective.improvement(row.delta, 0.0)
        return None

    def outcome(self, row: TrialRow, gain: float | None) -> str | None:
        status = row.status
        if status in BACKOFF_STATUSES:
            return "failed"
        if status in CRASH_STATUSES:
            return "crashed"
        if status in ("keep", "candidate"):
            return "improved" if gain is None or gain > 0 else "worsened"
        if status in ("discard", "scored", "stopped_early"):  # stopped early: losing to the incumbent
            return "improved" if gain is not None and gain > 0 else "worsened"
        return None

    def analyse(self) -> None:
        self.configs: dict[int, Config] = {}
        for r in self.rows:
            cfg = self.code.config(r.number)
            if cfg is not None:
                self.configs[r.number] = cfg
        self.seen: set[Config] = set(self.configs.values()) | self.issued
        self.changes: list[TrialChange] = []
        self.moves: list[Move] = []
        for r in sorted(self.rows, key=lambda r: r.number):
            parent = r.parent
            if parent is None or parent not in self.configs or r.number not in self.configs:
                continue
            before, after = self.configs[parent], self.configs[r.number]
            knobs = {k.name: (self.code.value(before, k), self.code.value(after, k)) for k in self.code.knobs
                     if not same(self.code.value(before, k), self.code.value(after, k))}
            added, removed = after[1] - before[1], before[1] - after[1]
            if not knobs and not added and not removed:
                continue
            g = self.gain(r)
            ch = TrialChange(r.number, r, knobs, frozenset(added), frozenset(removed), self.outcome(r, g), g)
            self.changes.append(ch)
            if ch.outcome is None:
                continue
            single = len(knobs) == 1 and not added and not removed
            for name, (a, b) in knobs.items():
                k = self.code.knobs[self.code.index[name]]
                pa, pb = position(k, a), position(k, b)
                if pa is None or pb is None:
                    continue
                self.moves.append(Move(r.number, r.specialist, k, a, b, 1 if pb > pa else -1,
                                       ch.outcome, r.status or "", g, single))
        # a discard that beat its parent by more than the threshold only lost a race: not dead
        self.dead_moves = {(m.knob.name, m.before, m.after) for m in self.moves
                           if m.single and m.status in DEAD_STATUSES
                           and not (m.outcome == "improved" and (m.gain or 0.0) > self.threshold)}
        self.ancestors: set[int] = set()
        n: int | None = self.inc
        while n is not None and n not in self.ancestors:
            self.ancestors.add(n)
            row = self.by_number.get(n)
            n = row.parent if row is not None else None

    def knob_moves(self, knob: Knob) -> list[Move]:
        return [m for m in self.moves if m.knob.name == knob.name]

    def ceiling(self, knob: Knob, v: Any, w: Any) -> Move | None:
        """The failed move that forbids ``v -> w`` (a move in the same direction that hit a back-off
        label at a value ``w`` reaches or passes), or None."""
        pv, pw = position(knob, v), position(knob, w)
        if pv is None or pw is None or pv == pw:
            return None
        d = 1 if pw > pv else -1
        for m in self.knob_moves(knob):
            if m.outcome == "failed" and m.d == d:
                pt = position(knob, m.after)
                if pt is not None and d * (pw - pt) >= -1e-12 * max(1.0, abs(pt)):
                    return m
        return None

    # ---- candidates

    def improvement(self, magnitude: float | None) -> float:
        return abs(magnitude) if magnitude else self.threshold

    def knob_candidates(self, inc_cfg: Config) -> list[Candidate]:
        out: list[Candidate] = []
        for k in self.knobs:
            v = self.code.value(inc_cfg, k)
            pv = position(k, v)
            if pv is None:
                continue
            history = self.knob_moves(k)
            for d in ((1 if not v else -1),) if k.type == "bool" else (1, -1):
                x_v = d * pv
                momentum = [m for m in history if m.d == d and m.outcome == "improved"
                            and x_v >= d * position(k, m.before) - 1e-12]
                bad_ahead = [m for m in history if m.d == d and m.outcome in ("worsened", "failed", "crashed")
                             and x_v >= d * position(k, m.before) - 1e-12 * max(1.0, abs(pv))]
                reversal = [m for m in history if m.d == -d and m.outcome == "improved"
                            and x_v <= d * position(k, m.before) + 1e-12 * max(1.0, abs(pv))]
                reverse = [m for m in history if m.d == -d and m.outcome in ("worsened", "failed", "crashed")
                           and x_v >= d * position(k, m.after) - 1e-12 * max(1.0, abs(pv))]
                probe = probe_mag(k, v)
                mags = {probe: "a bold step (two default steps)" if probe > 1.0 else "a default step"}
                for step, text in ((1.0, "a default step"), (0.5, "a half step"), (2.0, "a double step")):
                    mags.setdefault(step, text)
                best_momentum = max(momentum, key=lambda m: (m.gain or 0.0, m.trial)) if momentum else None
                mom_mag = None
                if best_momentum is not None:
                    mom_mag = step_size(k, best_momentum.before, best_momentum.after)
                    if mom_mag is not None:
                        mom_mag = min(max(mom_mag, 0.25), 4.0)
                        mags.setdefault(mom_mag, "the same step")
                tried: set[Any] = set()
                for mag, step_desc in mags.items():
                    w = stepped(k, v, d, mag)
                    if w is None or any(same(w, t) for t in tried):
                        continue
                    tried.add(w)
                    if self.ceiling(k, v, w) is not None:
                        continue
                    out.append(self.knob_candidate(k, v, w, d, mag, probe, mom_mag, step_desc, history, momentum,
                                                   best_momentum, bad_ahead, reversal, reverse))
        return out

    def knob_candidate(self, k: Knob, v: Any, w: Any, d: int, mag: float, probe: float, mom_mag: float | None,
                       step_desc: str,
                       history: list[Move], momentum: list[Move], best_momentum: Move | None,
                       bad_ahead: list[Move], reversal: list[Move], reverse: list[Move]) -> Candidate:
        x_w = d * (position(k, w) or 0.0)
        head = f"{move_verb(k, v, w)} {k.name} {value_text(k, v)} → {value_text(k, w)}"
        overshot = [m for m in bad_ahead if x_w >= d * position(k, m.after) - 1e-12 * max(1.0, abs(x_w))]
        short_of = [m for m in bad_ahead if m not in overshot]

        def cite(m: Move) -> str:
            return (f"#{m.trial} ({m.specialist}) {move_verb(k, m.before, m.after, past=True)} it "
                    f"{value_text(k, m.before)} → {value_text(k, m.after)} and {outcome_text(m, self.metric)}")

        if overshot:
            m = overshot[-1]
            return Candidate(AGAINST, "against", {k.name: w}, (), f"{head}, a long shot: {cite(m)}, but the "
                             "nearby moves are exhausted", self.threshold, (m.trial,))
        if reversal:
            m = reversal[-1]
            return Candidate(AGAINST, "against", {k.name: w}, (), f"{head}, a long shot back toward where "
                             f"{cite(m)}", self.threshold, (m.trial,))
        if best_momentum is not None:
            m = best_momentum
            failures = [f for f in history if f.d == d and f.outcome == "failed"]
            if failures:
                f = failures[-1]
                tail = (f", staying below {value_text(k, f.after)} where #{f.trial} ended {f.status}"
                        if d > 0 else f", staying above {value_text(k, f.after)} where #{f.trial} ended {f.status}")
            else:
                tail = ", no failure seen in that direction yet"
            if short_of:
                s = short_of[-1]
                tail = f", short of {value_text(k, s.after)} where #{s.trial} {outcome_text(s, self.metric)}"
            same_step = mom_mag is not None and math.isclose(mag, mom_mag)
            prio = MOMENTUM if same_step and not short_of else MOMENTUM_ALT
            return Candidate(prio, "momentum", {k.name: w}, (), f"{head}: {cite(m)}{tail}",
                             self.improvement((m.gain or 0.0) * 0.5) if m.gain else self.threshold, (m.trial,))
        if short_of:
            m = short_of[-1]
            return Candidate(SMALLER, "smaller-step", {k.name: w}, (), f"{head}, a smaller step: {cite(m)}, so "
                             "the full step overshoots", self.threshold, (m.trial,))
        if reverse:
            m = max(reverse, key=lambda r: (-(r.gain or 0.0) if r.outcome == "worsened" else 0.0, r.trial))
            loss = -(m.gain or 0.0) if m.outcome == "worsened" else 0.0
            if loss > SENSITIVE * self.threshold and mag == probe:
                # the knob matters here: a move one way cost far more than the noise, so the other
                # way is the likeliest gain on this surface, ahead of knobs nobody has touched
                return Candidate(EXPLORE, "reverse-sensitive", {k.name: w}, (),
                                 f"{head}: {cite(m)}, {loss / self.threshold:.0f}x the keep threshold, so "
                                 f"{k.name} matters here and the other direction is the most promising move",
                                 max(self.threshold, 0.5 * loss), (m.trial,))
            return Candidate(REVERSE if mag == probe else NEUTRAL, "reverse", {k.name: w}, (),
                             f"{head}: {cite(m)}, so the other direction is the one left to test",
                             self.threshold, (m.trial,))
        if not history:
            return Candidate(EXPLORE if mag == probe else RETRY, "explore", {k.name: w}, (),
                             f"{head}: no trial in this lineage has moved {k.name} yet, so {step_desc} probes "
                             "whether the current setting is off", self.threshold)
        cited = ", ".join(f"#{m.trial}" for m in history[-3:])
        return Candidate(NEUTRAL if mag == probe else RETRY, "neutral", {k.name: w}, (),
                         f"{head}: earlier moves of {k.name} ({cited}) say nothing about this direction from "
                         f"{value_text(k, v)}, so {step_desc} probes it", self.threshold,
                         tuple(m.trial for m in history[-3:]))

    def patch_candidates(self, inc_files: dict[str, str]) -> list[Candidate]:
        out = []
        for p in self.patches:
            text = inc_files.get(p.file)
            if text is None or not patch_applicable(text, p):
                continue
            attempts = [c for c in self.changes if p.name in c.added and c.outcome is not None]
            if any(c.outcome in ("failed", "crashed") for c in attempts):
                continue
            why = p.hypothesis.rstrip(". ") or f"the declared patch {p.name}"
            good = [c for c in attempts if c.outcome == "improved"]
            bad = [c for c in attempts if c.outcome == "worsened"]
            if good:
                c = good[-1]
                out.append(Candidate(PATCH_NEW, "patch", {}, (p.name,), f"Apply patch {p.name} onto #{self.inc}: "
                                     f"#{c.number} ({c.row.specialist}) applied it and "
                                     f"{outcome_text(c, self.metric)}; {why[:1].lower() + why[1:]}",
                                     self.improvement(c.gain), (c.number,)))
            elif bad:
                c = bad[-1]
                out.append(Candidate(RETRY, "patch-retry", {}, (p.name,), f"Apply patch {p.name} onto "
                                     f"#{self.inc} again: #{c.number} applied it on another parent and "
                                     f"{outcome_text(c, self.metric)}, but {why[:1].lower() + why[1:]}",
                                     self.threshold, (c.number,)))
            else:
                out.append(Candidate(PATCH_NEW, "patch", {}, (p.name,), f"Apply patch {p.name}: {why} "
                                     "(not yet tried in this lineage)", PATCH_PRIOR * self.threshold))
        return out

    def combine_candidates(self, inc_cfg: Config, inc_files: dict[str, str]) -> list[Candidate]:
        out = []
        mine = {k.name for k in self.knobs}
        my_patches = {p.name: p for p in self.patches}
        for c in self.changes:
            if c.number in self.ancestors or c.number == self.inc:
                continue
            status = c.row.status
            if not (status == "keep" or (status in SCORED_STATUSES and c.gain is not None
                                         and c.gain > self.threshold)):
                continue
            borrow: dict[str, KnobValue] = {}
            texts = []
            for name, (a, b) in c.knobs.items():
                if name not in mine:
                    continue
                k = self.code.knobs[self.code.index[name]]
                cur = self.code.value(inc_cfg, k)
                if same(cur, a):  # untouched in the incumbent's line: borrow the change
                    borrow[name] = b
                    texts.append(f"{name} {value_text(k, a)} → {value_text(k, b)}")
            patches = tuple(n for n in sorted(c.added) if n in my_patches
                            and inc_files.get(my_patches[n].file) is not None
                            and patch_applicable(inc_files[my_patches[n].file], my_patches[n]))
            texts += [f"patch {n}" for n in patches]
            if not borrow and not patches:
                continue
            beat = (f"beat its parent by {c.gain:.3g} {self.metric}" if c.gain is not None and c.gain > 0
                    else "was kept")
            out.append(Candidate(COMBINE, "combine", borrow, patches,
                                 f"Combine #{c.number} ({c.row.specialist})'s "
                                 f"{', '.join(texts)} with incumbent #{self.inc}: #{c.number} {beat} but is not "
                                 "in the incumbent's lineage, so the two gains may add up",
                                 self.improvement(c.gain), (c.number,)))
        return out

    def random_candidates(self, inc_cfg: Config) -> Iterable[Candidate]:
        numeric = [k for k in self.knobs if position(k, self.code.value(inc_cfg, k)) is not None]
        if not numeric:
            return
        for _ in range(RANDOM_TRIES):
            picked = self.rng.sample(numeric, min(len(numeric), self.rng.choice((1, 2))))
            changes = {k.name: sample_value(k, self.rng) for k in picked}
            changes = {n: w for n, w in changes.items()
                       if not same(w, self.code.value(inc_cfg, self.code.knobs[self.code.index[n]]))}
            if not changes:
                continue
            texts = []
            for n, w in changes.items():
                k = self.code.knobs[self.code.index[n]]
                texts.append(f"{n} {value_text(k, self.code.value(inc_cfg, k))} → {value_text(k, w)}")
            yield Candidate(RANDOM, "random", changes, (), f"Perturb {' and '.join(texts)} from incumbent "
                            f"#{self.inc}: the single-step moves of surface {self.ctx.surface} are exhausted, so "
                            "sample further settings at random", self.threshold)

    # ---- build and filter

    def build(self, cand: Candidate, inc_files: dict[str, str]) -> dict[str, str] | None:
        files = dict(inc_files)
        try:
            for name in cand.patches:
                p = next(p for p in self.spec.patches if p.name == name)
                files[p.file] = p.apply(files[p.file])
            for name, value in cand.changes.items():
                k = self.code.knobs[self.code.index[name]]
                files[k.file] = set_knob(files[k.file], k, value)
        except (KeyError, ValueError, StopIteration):
            return None
        return files

    def accept(self, cand: Candidate, inc_cfg: Config, inc_files: dict[str, str],
               skips: _Skips) -> tuple[dict[str, str], str, Config] | None:
        files = self.build(cand, inc_files)
        if files is None:
            skips.invalid += 1
            return None
        cfg = self.code.config_of(files) if cand.patches else self.code.config_with(inc_cfg, files, cand.changes)
        if cfg in self.seen:
            skips.duplicate += 1
            return None
        changed = [(k, self.code.value(inc_cfg, k), self.code.value(cfg, k)) for k in self.code.knobs
                   if not same(self.code.value(inc_cfg, k), self.code.value(cfg, k))]
        if any(k.name not in self.my_knobs for k, _, _ in changed):
            skips.surface += 1
            return None
        if len(changed) == 1 and (changed[0][0].name, changed[0][1], changed[0][2]) in self.dead_moves:
            skips.dead += 1
            return None
        if any(self.ceiling(k, a, b) is not None for k, a, b in changed):
            skips.blocked += 1
            return None
        diff = diffs.make_diff(inc_files, files)
        if not diff:
            skips.invalid += 1
            return None
        try:
            reason = self.ctx.check_surface(self.inc, diff)
        except Exception as e:  # noqa: BLE001 - a checker that breaks counts as a refusal of this move
            reason = f"check_surface failed: {e}"
        if reason:
            skips.surface += 1
            skips.reasons.append(f"{cand.hypothesis[:60]}: {reason}")
            return None
        return files, diff, cfg

    def run(self) -> Proposal:
        ctx = self.ctx
        inc_files = self.code.files(self.inc)
        if inc_files is None:
            raise ProposalFailed("empty", f"heuristic: the code of incumbent #{self.inc} cannot be read")
        self.analyse()
        inc_cfg = self.code.config(self.inc) or self.code.config_of(inc_files)
        if not self.knobs and not self.patches:
            raise ProposalFailed("empty", f"heuristic: surface {ctx.surface!r} of task {self.spec.name} declares "
                                 "no knobs and no patches, so the heuristic specialist has nothing to move")
        cands = (self.combine_candidates(inc_cfg, inc_files) + self.knob_candidates(inc_cfg)
                 + self.patch_candidates(inc_files))
        for c in cands:
            c.tie = self.rng.random()
        cands.sort(key=lambda c: (-c.priority, -c.expected, c.tie))
        skips = _Skips()
        considered = 0
        for cand in self._chain(cands, inc_cfg):
            considered += 1
            got = self.accept(cand, inc_cfg, inc_files, skips)
            if got is None:
                continue
            files, diff, cfg = got
            self.b._issued[(self.campaign, ctx.specialist)].add(cfg)
            expected = self.objective.delta_for(cand.expected)
            notes = (f"move={cand.kind}; priority={cand.priority}; parent=#{self.inc}; evidence="
                     f"{','.join(f'#{n}' for n in cand.evidence) or 'none'}; considered {considered} of "
                     f"{len(cands)} ranked candidates (skipped {skips.duplicate} duplicate configs, {skips.dead} dead "
                     f"moves, {skips.blocked} past a failure limit, {skips.surface} outside the surface)")
            transcript = "\n".join([f"heuristic-v1 seed={self.b.seed} specialist={ctx.specialist} "
                                    f"surface={ctx.surface} incumbent=#{self.inc} rows={len(self.rows)}",
                                    *(f"  [{c.priority}] {c.kind}: {c.hypothesis}" for c in cands[:12]),
                                    f"chosen: {cand.hypothesis}"]) + "\n"
            return Proposal(hypothesis=cand.hypothesis.rstrip(".") + ".", diff=diff, parent=self.inc,
                            expected_delta=expected, notes=notes, backend=self.b.name, model=self.b.model,
                            transcript=transcript)
        detail = "; ".join(skips.reasons[:2])
        raise ProposalFailed(
            "empty",
            f"heuristic: specialist {ctx.specialist!r} found nothing new to try on surface {ctx.surface!r} from "
            f"incumbent #{self.inc}: {considered} candidate moves were all duplicates of earlier trials "
            f"({skips.duplicate}), repeats of discarded or failed moves ({skips.dead}), past a value that failed "
            f"before ({skips.blocked}), outside the surface ({skips.surface}) or invalid ({skips.invalid})"
            + (f" — {detail}" if detail else ""),
        )

    def _chain(self, cands: list[Candidate], inc_cfg: Config) -> Iterable[Candidate]:
        yield from cands
        yield from self.random_candidates(inc_cfg)


def sample_value(knob: Knob, rng: random.Random) -> KnobValue:
    """A value drawn uniformly within the knob's range (log-uniform for log scale)."""
    if knob.type == "bool":
        return rng.random() < 0.5
    if knob.type == "choice":
        return rng.choice(list(knob.values or ()))
    lo, hi = knob.range or (0.0, 1.0)
    if knob.scale == "log" and lo > 0:
        x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        x = rng.uniform(lo, hi)
    if knob.type == "int":
        return int(min(max(round(x), math.ceil(lo)), math.floor(hi)))
    return tidy(knob, x)
