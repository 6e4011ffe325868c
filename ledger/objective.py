"""The objective of a campaign: which way is better, and by how much a change must win to count.

One small value type that every layer uses to compare scores; nothing else compares them::

    obj = Objective("min", min_delta=0.002, k=2.0, sd=0.0011)
    obj.improvement(3.05, 3.09)      # 0.04: how much better 3.05 is than 3.09, in metric units
    obj.is_better(3.05, 3.09)        # True
    obj.beats(3.05, 3.09)            # True: the improvement exceeds obj.threshold
    obj.threshold                    # max(min_delta, k * sd) = 0.0022
    obj.rule()                       # 'max(min_delta 0.002, k 2 x sd 0.0011) = 0.0022'

``improvement`` is positive when ``score`` is better than ``than`` in the task's direction (lower for
``min``, higher for ``max``). A keep needs an improvement strictly greater than the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

DIRECTIONS = ("min", "max")

T = TypeVar("T")


@dataclass(frozen=True)
class Objective:
    direction: str  # "min" | "max"
    min_delta: float = 0.0
    k: float = 2.0
    sd: float = 0.0
    sd_runs: int = 0  # how many runs the sd rests on (0: declared, not measured here)
    sd_source: str = "task"  # task | campaign | combined | imported | config

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction {self.direction!r} is not 'min' or 'max'")
        for name in ("min_delta", "k", "sd"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {v!r}")

    # comparing ----------------------------------------------------------------------------
    def improvement(self, score: float, than: float) -> float:
        """How much better ``score`` is than ``than`` (positive = better), in metric units."""
        return than - score if self.direction == "min" else score - than

    def delta_for(self, improvement: float) -> float:
        """The raw change of the metric (new - old) that is an improvement of ``improvement``."""
        return -improvement if self.direction == "min" else improvement

    def is_better(self, score: float, than: float) -> bool:
        return self.improvement(score, than) > 0

    def beats(self, score: float, incumbent: float) -> bool:
        """True when ``score`` improves on ``incumbent`` by more than the threshold."""
        return self.improvement(score, incumbent) > self.threshold

    def sort_key(self, score: float) -> float:
        """Ascending order of this key is best first."""
        return score if self.direction == "min" else -score

    def best(self, items: Iterable[T], score: Callable[[T], float | None]) -> T | None:
        """The item with the best score (``score(item)``; None scores are skipped); ties: the first."""
        top: T | None = None
        top_key = math.inf
        for it in items:
            s = score(it)
            if s is None:
                continue
            key = self.sort_key(s)
            if key < top_key:
                top, top_key = it, key
        return top

    def relative_change_pct(self, score: float, baseline: float) -> float | None:
        """(score - baseline) / |baseline| in percent (signed as the metric moves); None at 0."""
        if baseline == 0:
            return None
        return 100.0 * (score - baseline) / abs(baseline)

    # the threshold ------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """The improvement a keep must exceed: max(min_delta, k * sd)."""
        return max(self.min_delta, self.k * self.sd)

    def rule(self) -> str:
        """How the threshold was computed, in words a reviewer can check."""
        runs = f" over {self.sd_runs} runs" if self.sd_runs else ""
        return (f"max(min_delta {self.min_delta:.4g}, k {self.k:g} x sd {self.sd:.4g}{runs} "
                f"[{self.sd_source}]) = {self.threshold:.4g}")

    def with_noise(self, sd: float, runs: int, source: str) -> Objective:
        return replace(self, sd=float(sd), sd_runs=int(runs), sd_source=source)

    @property
    def word(self) -> str:
        return "lower" if self.direction == "min" else "higher"

    @property
    def arrow(self) -> str:
        return "↓" if self.direction == "min" else "↑"
