"""The fleet's events: each runner's own aggregate (id :func:`runner_id_for`), written by the runner.

``RunnerStarted`` when an ``arledger runner`` process starts (its host, slots, GPUs, sandbox,
version and the lease and heartbeat it runs with), a ``RunnerHeartbeat`` every heartbeat interval
naming the trials it holds, ``RunnerStopped`` when it exits (drained, killed, or the reason it could
not go on). A runner restarted under the same ``--runner-id`` continues its aggregate. A runner that
stops beating for 3 heartbeat intervals reads as *lost* (``projections.fleet``); nothing is written
for that: absence is the fact.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import msgspec

from ledger.event_base import NAMESPACE, Event

LOST_AFTER_BEATS = 3
"""A runner whose last heartbeat is older than this many of its heartbeat intervals is lost."""


def runner_id_for(runner: str) -> uuid.UUID:
    """The aggregate id of the runner named ``runner`` (its ``--runner-id``)."""
    return uuid.uuid5(NAMESPACE, f"runner:{runner}")


class HeldTrial(msgspec.Struct, frozen=True, kw_only=True):
    """A trial a runner holds the lease of, at one heartbeat."""

    trial_id: uuid.UUID
    number: int
    epoch: int
    task: str = ""


class RunnerStarted(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "runner"
    runner: str  # the runner id (the name its leases carry)
    host: str
    pid: int = 0
    slots: int = 1
    gpus: list[int] = []
    gpus_per_trial: int = 0
    sandbox: str = ""  # e.g. "bubblewrap 0.8.0 (rlimit)", or "none" under --unsafe-no-sandbox
    version: str = ""  # arledger's version
    lease_s: float = 30.0
    heartbeat_s: float = 15.0
    tasks: list[str] = []  # the --task filter (empty: every task it can load or fetch from the ledger)


class RunnerHeartbeat(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "runner"
    running: list[HeldTrial] = []
    labelled: int = 0  # trials this process labelled so far


class RunnerStopped(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "runner"
    reason: str
    labelled: int = 0


FLEET_EVENTS: tuple[type[Event], ...] = (RunnerStarted, RunnerHeartbeat, RunnerStopped)
