"""The launch queue: what runners may claim, as an incremental projection of the ledger.

:class:`LaunchQueue` reads only the launch, lease and outcome events, through the ledger's one
reading path (``Ledger.events`` with a type filter), from a cursor it keeps, and folds each
trial's phase with the same rule as the Trial aggregate (``ledger.lifecycle.phase_after``)::

    q = LaunchQueue(led)
    q.poll()                 # catch up
    q.queued()               # claimable, highest priority first, then oldest first
    q.leased()               # held by some runner (to reap when the lease expired)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from ledger import events as ev
from ledger.app import Ledger
from ledger.lifecycle import LEASED, QUEUED, phase_after

WATCHED: tuple[type[ev.Event], ...] = (
    ev.LaunchRequested, ev.LaunchClaimed, ev.LeaseRenewed, ev.LaunchRequeued, ev.TrialStarted,
    ev.TrialFinished, ev.TrialEvaluated, ev.OutcomeLabelled, ev.TrialQuarantined)


@dataclass
class Launch:
    trial_id: uuid.UUID
    phase: str = QUEUED
    task: str = ""
    seeds: list[int] = field(default_factory=list)
    gpus: int = 0
    priority: int = 0
    queued_at: int = 0  # leaf position of the latest LaunchRequested / LaunchRequeued
    runner: str = ""
    epoch: int = 0
    lease_expires: float = 0.0
    quarantined: bool = False


class LaunchQueue:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.cursor = 0
        self.launches: dict[uuid.UUID, Launch] = {}

    def poll(self) -> int:
        """Fold the new events; returns how many."""
        size = self.ledger.size()
        n = 0
        for rec in self.ledger.events(self.cursor, WATCHED, until=size):
            self._apply(rec.position, rec.event)
            n += 1
        self.cursor = max(self.cursor, size)
        return n

    def _apply(self, position: int, e: ev.Event) -> None:
        t = self.launches.get(e.originator_id)
        if t is None:
            if not isinstance(e, ev.LaunchRequested):
                return  # a trial that never launched (a preflight outcome): nothing to run
            t = self.launches[e.originator_id] = Launch(e.originator_id)
        t.phase = phase_after(t.phase, e)
        if isinstance(e, ev.LaunchRequested):
            t.task, t.seeds, t.gpus, t.priority, t.queued_at = e.task, list(e.seeds), e.gpus, e.priority, position
        elif isinstance(e, ev.LaunchClaimed):
            t.runner, t.epoch, t.lease_expires = e.runner, e.epoch, e.lease_expires
        elif isinstance(e, ev.LeaseRenewed):
            t.lease_expires = max(t.lease_expires, e.lease_expires)
        elif isinstance(e, ev.LaunchRequeued):
            t.runner, t.epoch, t.lease_expires, t.queued_at = "", e.epoch, 0.0, position
        elif isinstance(e, ev.TrialQuarantined):
            t.quarantined = True

    def queued(self) -> list[Launch]:
        q = [t for t in self.launches.values() if t.phase == QUEUED and not t.quarantined]
        return sorted(q, key=lambda t: (-t.priority, t.queued_at))

    def leased(self) -> list[Launch]:
        return [t for t in self.launches.values() if t.phase in LEASED]
