"""The heuristic specialist's reading of the lineage: what each trial's code set its knobs and
patches to, which moves those were, how big a step is on each knob, and how to say it in words.

Pure functions and small value types over the task's knobs and the trial rows; the ranking of
candidate moves is :mod:`agents.heuristic_backend`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agents.base import StructuredContext
from ledger import events as ev
from projections.records import TrialRow
from tasks.knobs import format_value, read_knob
from tasks.spec import Knob, KnobValue, Patch

BACKOFF_STATUSES = frozenset({"size_blocked", "train_budget_overrun", "eval_budget_overrun", "oom", "diverged",
                              "disqualified", "truncated"})
CRASH_STATUSES = frozenset({"crash", "preflight_crash", "illegal_edit"})
DEAD_STATUSES = BACKOFF_STATUSES | CRASH_STATUSES | {"discard", "stopped_early"}
SCORED_STATUSES = frozenset(ev.VALID_SCORED) | frozenset(ev.VERDICTS)

LINEAR_STEP = 0.1  # a linear float's default step, as a fraction of its range
WIDE_INT = 16  # an int knob whose range spans at least this many values moves by x2 / x0.5
PROBE_STEPS = 2.0  # a first probe's size in default steps (see probe_mag)

Config = tuple[tuple[Any, ...], frozenset[str]]


# -------------------------------------------------------------------------------------------------
# reading trials' code


def patch_in(text: str, patch: Patch) -> bool:
    """True if ``patch`` is applied in ``text``: its replace text is present and its find text is
    not (apart from inside the replace text)."""
    return bool(patch.replace) and patch.replace in text and patch.find not in text.replace(patch.replace, "")


def patch_applicable(text: str, patch: Patch) -> bool:
    return not patch_in(text, patch) and text.count(patch.find) == 1


def tidy(knob: Knob, value: float) -> KnobValue:
    """A knob value rounded for writing: ints rounded, floats to 4 significant digits, clamped."""
    lo, hi = knob.range or (-math.inf, math.inf)
    if knob.type == "int":
        return int(min(max(round(value), math.ceil(lo)), math.floor(hi)))
    v = float(f"{value:.4g}")
    return min(max(v, float(lo)), float(hi))


def value_text(knob: Knob, value: Any) -> str:
    if value is None:
        return "<unset>"
    try:
        return format_value(value, knob.type)
    except (TypeError, ValueError):
        return repr(value)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b and type(a) is type(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return a == b


class TrialCode:
    """Knob values and applied patches of trials, read from their code. The per-campaign cache
    (``cache``, keyed by campaign and trial number) lives in the backend; files live for one call."""

    def __init__(self, ctx: StructuredContext, cache: dict[Any, Any], campaign: Any):
        self.ctx = ctx
        self.spec = ctx.task
        self.knobs: list[Knob] = list(self.spec.knobs())
        self.index = {k.name: i for i, k in enumerate(self.knobs)}
        self.cache = cache
        self.campaign = campaign
        self._files: dict[int, dict[str, str] | None] = {}

    def files(self, number: int) -> dict[str, str] | None:
        if number not in self._files:
            try:
                self._files[number] = dict(self.ctx.trial_files(number))
            except Exception:  # noqa: BLE001 - a trial whose code cannot be built gives no evidence
                self._files[number] = None
        return self._files[number]

    def config(self, number: int) -> Config | None:
        key = (self.campaign, number) if self.campaign is not None else None
        if key is not None and key in self.cache:
            return self.cache[key]
        files = self.files(number)
        if files is None:
            return None
        cfg = self.config_of(files)
        if key is not None:
            self.cache[key] = cfg
        return cfg

    def config_of(self, files: dict[str, str]) -> Config:
        values = []
        for k in self.knobs:
            text = files.get(k.file)
            try:
                values.append(read_knob(text, k) if text is not None else None)
            except (KeyError, ValueError):
                values.append(None)
        patches = frozenset(p.name for p in self.spec.patches if p.file in files and patch_in(files[p.file], p))
        return tuple(values), patches

    def config_with(self, base: Config, files: dict[str, str], changed: Iterable[str]) -> Config:
        """``config_of(files)`` where ``files`` differ from ``base``'s code only in the knobs ``changed``."""
        values = list(base[0])
        for name in changed:
            k = self.knobs[self.index[name]]
            try:
                values[self.index[name]] = read_knob(files[k.file], k)
            except (KeyError, ValueError):
                values[self.index[name]] = None
        patches = frozenset(p.name for p in self.spec.patches if p.file in files and patch_in(files[p.file], p))
        return tuple(values), patches

    def value(self, cfg: Config, knob: Knob) -> Any:
        return cfg[0][self.index[knob.name]]


def campaign_key(rows: list[TrialRow]) -> str | None:
    for r in rows:
        return str(r.campaign_id)
    return None


# -------------------------------------------------------------------------------------------------
# the lineage as evidence


@dataclass
class Move:
    trial: int
    specialist: str
    knob: Knob
    before: Any
    after: Any
    d: int  # +1: up (larger value / later choice / to True), -1: down
    outcome: str  # improved | worsened | failed | crashed
    status: str
    gain: float | None  # improvement over the parent in the improving direction (metric units)
    single: bool  # the trial changed only this knob (and no patch)


@dataclass
class TrialChange:
    number: int
    row: TrialRow
    knobs: dict[str, tuple[Any, Any]]  # name -> (before, after)
    added: frozenset[str]
    removed: frozenset[str]
    outcome: str | None
    gain: float | None


def position(knob: Knob, value: Any) -> float | None:
    """Where a value lies on the knob's axis: the number, a choice's index, a bool as 0/1."""
    if value is None:
        return None
    if knob.type == "bool":
        return float(bool(value))
    if knob.type == "choice":
        vals = list(knob.values or ())
        for i, v in enumerate(vals):
            if same(v, value):
                return float(i)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def step_mode(knob: Knob, value: Any) -> str:
    """mul (x factor), add (+ step), index (choice neighbour) or flip (bool)."""
    if knob.type == "bool":
        return "flip"
    if knob.type == "choice":
        return "index"
    lo, hi = knob.range or (0.0, 0.0)
    if knob.scale == "log" and value > 0:
        return "mul"
    if knob.type == "int" and hi - lo >= WIDE_INT and value > 0:
        return "mul"
    return "add"


def base_step(knob: Knob) -> float:
    lo, hi = knob.range or (0.0, 1.0)
    if knob.type == "int":
        return 1.0 if hi - lo < WIDE_INT else max(1.0, round((hi - lo) / WIDE_INT))
    return LINEAR_STEP * (hi - lo)


def step_size(knob: Knob, before: Any, after: Any) -> float | None:
    """The size of a move in units of the knob's default step (1 = one default step)."""
    a, b = position(knob, before), position(knob, after)
    if a is None or b is None or a == b:
        return None
    mode = step_mode(knob, before)
    if mode == "mul" and b > 0:
        return abs(math.log2(b / a))
    if mode in ("index", "flip"):
        return abs(b - a)
    return abs(b - a) / base_step(knob)


def probe_mag(knob: Knob, value: Any) -> float:
    """How far an untried direction is first probed, in default steps: coarse to fine. A first probe
    has to move the score by more than the noise threshold to be measurable at all, so continuous
    knobs and wide int ranges are probed two default steps out (log scale x4 / x0.25, linear ±20% of
    the range); choices, bools and narrow ints by one (the neighbouring value). Refinement follows
    from the evidence: momentum repeats the step that paid, an overshoot retries with a smaller one."""
    if step_mode(knob, value) in ("flip", "index"):
        return 1.0
    lo, hi = knob.range or (0.0, 0.0)
    if knob.type == "int" and hi - lo < WIDE_INT:
        return 1.0
    return PROBE_STEPS


def stepped(knob: Knob, value: Any, d: int, mag: float) -> KnobValue | None:
    """The value ``mag`` default steps from ``value`` in direction ``d``, clamped; None if it does
    not move."""
    mode = step_mode(knob, value)
    if mode == "flip":
        new: KnobValue = d > 0
        return None if same(new, bool(value)) else new
    if mode == "index":
        vals = list(knob.values or ())
        i = position(knob, value)
        if i is None or mag < 1:
            return None
        j = min(max(int(i) + d * max(1, round(mag)), 0), len(vals) - 1)
        return None if j == int(i) else vals[j]
    if mode == "mul":
        w = tidy(knob, value * 2.0 ** (d * mag))
    else:
        w = tidy(knob, value + d * mag * base_step(knob))
    if knob.type == "int" and w == value:
        w = tidy(knob, value + d)
    return None if same(w, value) else w


def outcome_text(m: Move | TrialChange, metric: str) -> str:
    if m.outcome in ("improved", "worsened") and m.gain is not None:
        if abs(m.gain) < 1e-12:
            return f"left {metric} unchanged"
        return f"{m.outcome} {metric} by {abs(m.gain):.3g}"
    if m.outcome == "improved":
        return "was kept"
    if m.outcome == "worsened":
        return "was discarded"
    status = m.status if isinstance(m, Move) else (m.row.status or "")
    return f"ended {status}"


def move_verb(knob: Knob, before: Any, after: Any, *, past: bool = False) -> str:
    if knob.type == "bool" or (knob.type == "choice" and any(isinstance(v, str) for v in knob.values or ())):
        return "switched" if past else "Switch"
    up = (position(knob, after) or 0) > (position(knob, before) or 0)
    if past:
        return "raised" if up else "lowered"
    return "Raise" if up else "Lower"


