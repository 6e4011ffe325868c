"""A runner's presence in the ledger: ``RunnerStarted``, a ``RunnerHeartbeat`` every ``every_s``
naming the trials it holds, and ``RunnerStopped`` (``ledger.events_fleet``), on the runner's own
aggregate (``RunnerRecord``; it has one writer, so its appends do not contend with the trials').

``arledger runner`` composes it around ``Runner.run_forever``; ``arledger runners`` reads it back
(``projections.fleet``). A heartbeat the store refuses (PostgreSQL restarting) is logged and tried
again at the next interval: heartbeats say "alive", they fence nothing (the trials' leases do).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable

from ledger import events as ev
from ledger.aggregates import CommandRefused, RunnerRecord
from ledger.app import ConflictError, Ledger
from ledger.app import __version__ as ARLEDGER_VERSION

DEFAULT_HEARTBEAT_S = 15.0


class Presence:
    def __init__(self, ledger: Ledger, runner_id: str, *, every_s: float, slots: int, gpus: list[int],
                 gpus_per_trial: int, sandbox: str, lease_s: float, tasks: list[str],
                 held: Callable[[], list[ev.HeldTrial]], labelled: Callable[[], int],
                 log: Callable[[str], None] = lambda _m: None):
        self.ledger, self.runner_id, self.every_s = ledger, runner_id, float(every_s)
        self.actor = f"runner:{runner_id}"
        self._info = dict(slots=slots, gpus=list(gpus), gpus_per_trial=gpus_per_trial, sandbox=sandbox,
                          lease_s=float(lease_s), tasks=list(tasks))
        self._held, self._labelled, self._log = held, labelled, log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._rec: RunnerRecord | None = None
        self._started = False

    def _append(self, command: Callable[[RunnerRecord], object], attempts: int = 5) -> None:
        with self._lock:
            for i in range(attempts):
                rec = self._rec or self.ledger.load(RunnerRecord, ev.runner_id_for(self.runner_id))
                try:
                    command(rec)
                    self.ledger.save(rec)
                    self._rec = rec
                    return
                except ConflictError:  # a namesake wrote first (a second process with this --runner-id)
                    self._rec = None
                    if i == attempts - 1:
                        raise

    def start(self) -> None:
        """Record RunnerStarted (now, or at the next interval if the store is down) and beat."""
        try:
            self._start()
        except Exception as e:  # noqa: BLE001 — the store is down: the heartbeat thread tries again
            self._log(f"runner {self.runner_id}: its start is not recorded yet ({e}); retrying in {self.every_s:g} s")
        self._thread = threading.Thread(target=self._loop, daemon=True, name="runner-heartbeat")
        self._thread.start()

    def _start(self) -> None:
        info = self._info

        def started(rec: RunnerRecord) -> None:
            if rec.started is not None and rec.stopped is None:  # its last run died without a stop
                rec.stop(self.actor, reason="restarted: the previous run ended without a stop (killed)",
                         labelled=rec.last_beat.labelled if rec.last_beat else 0)
            rec.start(self.actor, runner=self.runner_id, host=socket.gethostname(), pid=os.getpid(),
                      slots=info["slots"], gpus=info["gpus"], gpus_per_trial=info["gpus_per_trial"],
                      sandbox=info["sandbox"], version=ARLEDGER_VERSION, lease_s=info["lease_s"],
                      heartbeat_s=self.every_s, tasks=info["tasks"])

        self._append(started)
        self._started = True

    def beat(self) -> None:
        running, labelled = self._held(), self._labelled()
        self._append(lambda rec: rec.beat(self.actor, running=running, labelled=labelled))

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat() if self._started else self._start()
            except Exception as e:  # noqa: BLE001 — the store is down: say so, beat again next time
                self._rec = None
                self._log(f"runner {self.runner_id}: heartbeat not recorded ({e}); retrying in {self.every_s:g} s")

    def stop(self, reason: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not self._started:
            return
        labelled = self._labelled()
        try:
            self._append(lambda rec: rec.stop(self.actor, reason=reason, labelled=labelled))
        except CommandRefused:
            pass
        except Exception as e:  # noqa: BLE001
            with contextlib.suppress(Exception):
                self._log(f"runner {self.runner_id}: its stop could not be recorded ({e}); it will read as lost")
