"""The fleet: each runner's last known state, folded from its ``Runner*`` events (``ledger.events_fleet``).

    rows = fleet(led)                # one row per runner id, most recently seen first
    rows[0].state(time.time())       # "alive" | "lost" | "stopped"

A runner is **alive** while its last sign of life (its start or its latest heartbeat) is younger
than ``LOST_AFTER_BEATS`` (3) of its heartbeat intervals, **lost** once it is older (killed, its host
down or cut off from the store: nothing is written for that; its trials' leases expire and another
runner's reaper requeues them), **stopped** after its ``RunnerStopped``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger import events as ev
from ledger.app import Ledger, Recorded


@dataclass
class RunnerRow:
    runner: str
    host: str = ""
    pid: int = 0
    slots: int = 0
    gpus: list[int] = field(default_factory=list)
    gpus_per_trial: int = 0
    sandbox: str = ""
    version: str = ""
    lease_s: float = 0.0
    heartbeat_s: float = 0.0
    tasks: list[str] = field(default_factory=list)
    started_at: float = 0.0
    last_seen: float = 0.0  # its start or its latest heartbeat
    beats: int = 0
    running: list[ev.HeldTrial] = field(default_factory=list)
    labelled: int = 0
    stopped_at: float | None = None
    stop_reason: str = ""
    starts: int = 0

    def state(self, now: float) -> str:
        if self.stopped_at is not None:
            return "stopped"
        if now - self.last_seen > ev.LOST_AFTER_BEATS * max(self.heartbeat_s, 0.001):
            return "lost"
        return "alive"

    def to_dict(self, now: float) -> dict[str, Any]:
        return {"runner": self.runner, "host": self.host, "pid": self.pid, "slots": self.slots, "gpus": self.gpus,
                "gpus_per_trial": self.gpus_per_trial, "sandbox": self.sandbox, "version": self.version,
                "lease_s": self.lease_s, "heartbeat_s": self.heartbeat_s, "tasks": self.tasks,
                "started_at": self.started_at, "last_heartbeat": self.last_seen,
                "seconds_since_heartbeat": round(max(0.0, now - self.last_seen), 3),
                "running": [{"trial_id": str(t.trial_id), "number": t.number, "epoch": t.epoch, "task": t.task}
                            for t in self.running] if self.stopped_at is None else [],
                "labelled": self.labelled, "state": self.state(now), "stopped_at": self.stopped_at,
                "stop_reason": self.stop_reason, "starts": self.starts}


def fold(records: Iterable[Recorded]) -> list[RunnerRow]:
    rows: dict[str, RunnerRow] = {}
    by_id: dict[Any, str] = {}
    for rec in records:
        e = rec.event
        if isinstance(e, ev.RunnerStarted):
            r = rows[e.runner] = RunnerRow(e.runner, starts=(rows[e.runner].starts if e.runner in rows else 0) + 1)
            by_id[e.originator_id] = e.runner
            r.host, r.pid, r.slots, r.gpus, r.gpus_per_trial = e.host, e.pid, e.slots, list(e.gpus), e.gpus_per_trial
            r.sandbox, r.version, r.lease_s, r.heartbeat_s, r.tasks = (e.sandbox, e.version, e.lease_s, e.heartbeat_s,
                                                                       list(e.tasks))
            r.started_at = r.last_seen = e.at
            continue
        name = by_id.get(e.originator_id)
        if name is None:
            continue
        r = rows[name]
        if isinstance(e, ev.RunnerHeartbeat):
            r.last_seen, r.running, r.labelled = e.at, list(e.running), e.labelled
            r.beats += 1
        elif isinstance(e, ev.RunnerStopped):
            r.stopped_at, r.stop_reason, r.labelled, r.running = e.at, e.reason, e.labelled, []
    return sorted(rows.values(), key=lambda r: -r.last_seen)


def fleet(ledger: Ledger) -> list[RunnerRow]:
    return fold(ledger.events(0, ev.FLEET_EVENTS))
