"""The Projector: every projection, one position cursor, catch-up from the ledger.

    proj = Projector()
    proj.catch_up(ledger)              # folds ledger.events(start=proj.cursor)
    proj.trials.rows(campaign_id)      # the trial table
    render_lineage_view(proj, "pg_main", "quant")

A projection's dependencies are applied before it for every event. ``cursor`` is the position of
the next event to fold; events below it are skipped, so feeding the same event twice is harmless.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from ledger.app import Ledger, Recorded
from projections.base import Projection
from projections.diversity import Diversity
from projections.lineage_view import LineageIndex
from projections.stats import (
    Cost,
    CrossRole,
    Leaderboard,
    LineageTree,
    NoiseReport,
    SpecialistProfile,
    StatusDistribution,
    Throughput,
)
from projections.trials import TrialTable

P = TypeVar("P", bound=Projection)

ALL: tuple[type[Projection], ...] = (
    TrialTable, LineageTree, Leaderboard, StatusDistribution, SpecialistProfile, Cost, CrossRole, Throughput,
    NoiseReport, Diversity, LineageIndex,
)


class Projector:
    def __init__(self, kinds: Sequence[type[Projection]] | None = None):
        self.projections: dict[type[Projection], Projection] = {}
        for k in kinds or ALL:
            self._add(k, ())
        self._order = list(self.projections.values())
        self.cursor = 0

    def _add(self, kind: type[Projection], path: tuple[type[Projection], ...]) -> None:
        if kind in self.projections:
            return
        if kind in path:
            raise ValueError(f"projection dependency cycle through {kind.__name__}")
        for dep in kind.requires:
            self._add(dep, (*path, kind))
        self.projections[kind] = kind({d: self.projections[d] for d in kind.requires})

    # folding --------------------------------------------------------------------------------
    def apply(self, rec: Recorded) -> None:
        if rec.position < self.cursor:
            return
        for p in self._order:
            p.apply(rec)
        self.cursor = rec.position + 1

    def apply_all(self, events: Iterable[Recorded]) -> int:
        n = 0
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for rec in events:
                self.apply(rec)
                n += 1
        finally:
            if gc_was:
                gc.enable()
        return n

    def catch_up(self, ledger: Ledger, until: int | None = None) -> int:
        """Fold the ledger's events from ``cursor`` (up to position ``until``, exclusive). Returns
        how many events were folded. The cyclic garbage collector is paused during the fold
        (projections hold no reference cycles)."""
        n = 0
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for rec in ledger.events(start=self.cursor):
                if until is not None and rec.position >= until:
                    break
                self.apply(rec)
                n += 1
            return n
        finally:
            if gc_was:
                gc.enable()

    @classmethod
    def rebuild(cls, events: Iterable[Recorded], kinds: Sequence[type[Projection]] | None = None) -> Projector:
        p = cls(kinds)
        p.apply_all(events)
        return p

    @classmethod
    def from_ledger(cls, ledger: Ledger, until: int | None = None) -> Projector:
        p = cls()
        p.catch_up(ledger, until=until)
        return p

    # access ----------------------------------------------------------------------------------
    def __getitem__(self, kind: type[P]) -> P:
        return self.projections[kind]  # type: ignore[return-value]

    def __contains__(self, kind: type[Projection]) -> bool:
        return kind in self.projections

    @property
    def state(self) -> dict[str, Any]:
        return {p.name or type(p).__name__: p.state for p in self._order}

    trials = property(lambda self: self[TrialTable])
    lineage = property(lambda self: self[LineageTree])
    leaderboard = property(lambda self: self[Leaderboard])
    statuses = property(lambda self: self[StatusDistribution])
    specialists = property(lambda self: self[SpecialistProfile])
    cost = property(lambda self: self[Cost])
    cross_role = property(lambda self: self[CrossRole])
    throughput = property(lambda self: self[Throughput])
    noise = property(lambda self: self[NoiseReport])
    diversity = property(lambda self: self[Diversity])
    lineage_index = property(lambda self: self[LineageIndex])
