"""One attempt at a trial: the lease a runner holds on it, and every event it appends, fenced.

An :class:`Attempt` begins with a won claim (``LaunchClaimed`` at epoch N) and ends with the
attempt's label, or with the lease lost. While it lives:

* every append goes through :meth:`Attempt.append`: one lock, the aggregate's fenced command
  (runner and epoch must still hold the lease), compare-and-set on save, reload and retry on a
  conflict or a store hiccup. A refused command (``StaleEpoch``: the trial was requeued or taken
  over) means the lease is lost: the attempt's processes are stopped and nothing more is recorded;
* a heartbeat thread renews the lease every ``heartbeat_s`` and flushes the metric points the run
  reported (``MetricsLogged``, batched every ``metrics_every_s``). A renewal that keeps failing
  until the lease expires loses it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ledger import events as ev
from ledger.aggregates import CommandRefused, Trial
from ledger.app import ConflictError, Ledger
from ledger.reconnect import StoreUnreachable

MAX_METRIC_POINTS = 20_000
"""Metric points recorded per trial at most (the rest are dropped; the log keeps them)."""


class LeaseLost(RuntimeError):
    """This runner no longer holds the trial's lease; record nothing more for it."""


class Attempt:
    def __init__(self, ledger: Ledger, runner_id: str, trial: Trial, *, lease_s: float,
                 log: Callable[[str], None]):
        self.ledger = ledger
        self.runner_id = runner_id
        self.trial = trial
        self.trial_id = trial.id
        self.number = trial.number
        self.epoch = trial.epoch
        self.lease_s = lease_s
        self.lease_expires = trial.lease_expires
        self.claimed_at = time.time()
        self._log = log
        self._lock = threading.Lock()
        self.lost = threading.Event()  # lease lost: kill, record nothing
        self.stop = threading.Event()  # kill the running process (lost or hard shutdown)
        self.done = threading.Event()  # the attempt's label is recorded (or it ended otherwise)
        self._metrics: list[ev.MetricPoint] = []
        self._metric_count = 0
        self._mlock = threading.Lock()
        self.metric_prefix = ""  # "seed3/" while one of several seeds runs
        self.renewals = 0  # leases renewed (benchmarks: heartbeats were on)
        self.started_at = 0.0  # when its slot began running it
        self.claim_op_s = 0.0  # its claim's load-claim-save, and the wait from its slot wanting work to
        self.claim_wait_s = 0.0  # that claim won (benchmarks)
        self.finishing = threading.Event()  # its label is being appended: the runner may claim the next
        self.finishing_at = 0.0
        self.on_finishing: Callable[[], None] | None = None

    # appending ------------------------------------------------------------------------------
    def append(self, command: Callable[[Trial], Any], *, attempts: int = 8, final: bool = False) -> None:
        """Apply a fenced command to the trial and save it; reload and retry on conflicts and
        transient store errors; a refusal means the lease is lost. ``final``: the attempt's last
        event (its label): the heartbeat stops renewing from here on."""
        with self._lock:
            if self.lost.is_set():
                raise LeaseLost("lease already lost")
            delay = 0.05
            for i in range(attempts):
                try:
                    command(self.trial)
                except CommandRefused as e:
                    self.lose(str(e))
                    raise LeaseLost(str(e)) from None
                try:
                    self.ledger.save(self.trial)
                    if final:
                        self.done.set()
                    return
                except ConflictError:
                    pass
                except StoreUnreachable:
                    raise  # waited out the reconnect deadline already
                except Exception as e:  # the store hiccuped (locked, connection): retry from a reload
                    if i == attempts - 1:
                        raise
                    self._log(f"trial {self.number}: store error, retrying: {e}")
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                self.trial = self._reload()
            raise LeaseLost("could not append after repeated conflicts")

    def _reload(self) -> Trial:
        delay = 0.05
        for _ in range(20):
            try:
                return self.ledger.load(Trial, self.trial_id)
            except Exception:  # noqa: BLE001 — the store is briefly unavailable: wait and retry
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        return self.ledger.load(Trial, self.trial_id)

    def lose(self, why: str) -> None:
        if not self.lost.is_set():
            self._log(f"trial {self.number}: lease lost ({why}); stopping it, recording nothing more")
        self.lost.set()
        self.stop.set()

    def begin_finishing(self) -> None:
        """Its last step has begun (evaluation, or the label): its runner may claim the slot's next
        trial now, so that one starts the moment this one is labelled."""
        if not self.finishing.is_set():
            self.finishing_at = time.time()
            self.finishing.set()
            if self.on_finishing is not None:
                self.on_finishing()

    def label(self, status: str, *, reason: str = "", excerpt: str = "", score: float | None = None) -> None:
        """The attempt's last event: its outcome label (``scored`` or a failure)."""
        rid, ep = self.runner_id, self.epoch
        self.begin_finishing()
        self.flush_metrics()
        self.append(lambda t: t.label_outcome(status, f"runner:{rid}", runner=rid, epoch=ep, reason=reason[:2000],
                                              excerpt=excerpt[:2000], score=score), final=True)

    # metrics --------------------------------------------------------------------------------
    def add_points(self, points: list[tuple[int, str, float]]) -> None:
        with self._mlock:
            for step, name, value in points:
                if self._metric_count >= MAX_METRIC_POINTS:
                    return
                self._metrics.append(ev.MetricPoint(step, self.metric_prefix + name, float(value)))
                self._metric_count += 1

    def flush_metrics(self) -> None:
        with self._mlock:
            pts, self._metrics = self._metrics, []
        if not pts:
            return
        rid, ep = self.runner_id, self.epoch
        try:
            self.append(lambda t: t.log_metrics(rid, ep, pts))
        except LeaseLost:
            raise
        except Exception:
            with self._mlock:  # try again with the next batch
                self._metrics[:0] = pts
            raise

    # the heartbeat --------------------------------------------------------------------------
    def start_heartbeat(self, heartbeat_s: float, metrics_every_s: float,
                        hard_stop: threading.Event) -> threading.Thread:
        t = threading.Thread(target=self._heartbeat, args=(heartbeat_s, metrics_every_s, hard_stop), daemon=True,
                             name=f"lease-{self.number}")
        t.start()
        return t

    def _heartbeat(self, heartbeat_s: float, metrics_every_s: float, hard_stop: threading.Event) -> None:
        rid, ep = self.runner_id, self.epoch
        next_renew = time.monotonic() + heartbeat_s
        next_flush = time.monotonic() + metrics_every_s
        while not self.done.wait(max(0.05, min(next_renew, next_flush) - time.monotonic())):
            if self.lost.is_set() or hard_stop.is_set():
                return
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + metrics_every_s
                try:
                    self.flush_metrics()
                except LeaseLost:
                    return
                except Exception as e:  # noqa: BLE001
                    self._log(f"trial {self.number}: metrics not recorded yet: {e}")
            if now >= next_renew:
                t = time.time()
                try:
                    self.append(lambda a, t=t: None if self.done.is_set() else a.renew(rid, ep, self.lease_s, t))
                    self.lease_expires = t + self.lease_s
                    self.renewals += 1
                    next_renew = time.monotonic() + heartbeat_s
                except LeaseLost:
                    return
                except Exception as e:  # noqa: BLE001
                    if time.time() > self.lease_expires:
                        self.lose(f"could not renew before the lease expired: {e}")
                        return
                    self._log(f"trial {self.number}: lease renewal failed, retrying: {e}")
                    next_renew = time.monotonic() + min(1.0, heartbeat_s)
