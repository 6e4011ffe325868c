"""The in-process runner of ``arledger run`` (``--runners local``): its thread, and its dead.

:class:`LocalRunner` starts a :class:`tasks.runner.Runner` in a thread beside the campaign loop and
stops it (draining, or killing the running trials on an interrupt). A local runner is named
``local:HOST:PID``; on resume, :func:`requeue_dead` requeues at once the leases held by such a
runner of this host whose process is gone, instead of waiting for them to expire.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Callable

from ledger.aggregates import CommandRefused, Trial
from ledger.app import ConflictError, Ledger
from ledger.lifecycle import LEASED
from projections.records import TrialRow
from tasks.runner import Runner
from tasks.spec import TaskSpec


class LocalRunner:
    def __init__(self, ledger: Ledger, spec: TaskSpec, *, slots: int, lease_s: float):
        self.runner_id = f"local:{socket.gethostname()}:{os.getpid()}"
        self.runner = Runner(ledger=ledger, runner_id=self.runner_id, slots=slots, lease_s=lease_s, tasks=[spec])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.runner.run_forever, args=(self._stop,), name="runner",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            self.runner.kill()
        self._stop.set()
        self._thread.join(timeout=60)
        self.runner.close()


def requeue_dead(ledger: Ledger, rows: list[TrialRow], actor: str, say: Callable[[str], None]) -> None:
    """Requeue the trials whose lease a dead local runner of this host holds."""
    host = socket.gethostname()
    for r in rows:
        if r.phase not in LEASED or not r.runner.startswith("local:"):
            continue
        parts = r.runner.split(":")
        if len(parts) != 3 or parts[1] != host or not parts[2].isdigit():
            continue
        pid = int(parts[2])
        if pid == os.getpid() or _alive(pid):
            continue
        t = ledger.load(Trial, r.trial_id)
        try:
            t.requeue(actor, now=math.inf, reason=f"runner process {pid} on {host} is gone")
            ledger.save(t)
            say(f"#{r.number}: requeued (its runner process {pid} is gone)")
        except (CommandRefused, ConflictError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
