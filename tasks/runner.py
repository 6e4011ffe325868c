"""The runner: claims queued launches from the ledger, trains them under budgets, has them scored.

Two ways to use it. The daemon (``arledger runner``) calls :meth:`Runner.run_forever`; the campaign
loop uses the same class in-process::

    runner = Runner(ledger=led, runner_id="local", slots=1)     # or Runner(url, ...)
    result = submit_trial(led, spec, campaign="c1", diff=text, hypothesis="...", actor="agent:opt",
                          parent=parent_id, specialist="opt", surface="opt")
    runner.run_until_idle()            # returns once nothing it can run is queued or running

**Claiming** is a compare-and-set on the trial's version (``load`` → ``Trial.claim`` → ``save``;
a ``ConflictError`` means another runner won: move on). Each runner keeps an incremental cursor
over the ledger's notifications (only launch/lease/outcome topics) instead of replaying the log.
Leases are renewed by a heartbeat thread every ``heartbeat_s`` (default ``lease_s / 3``); a
refused renewal (``StaleEpoch``: the trial was requeued or taken over) means the lease is lost —
the trial's processes are killed and nothing more is recorded for that attempt. Every runner also
**reaps**: a trial whose lease expired is requeued with ``Trial.requeue`` (which labels the dead
attempt ``runner_lost`` and opens the next epoch). All appends for one trial go through one lock
and are fenced by (runner, epoch) by the aggregate, so a stale runner's events are refused.

**Signals** (daemon): the first SIGTERM/SIGINT drains — stop claiming, finish the running trials,
exit 0; a second one kills the running trials and exits, leaving their leases to expire (another
runner's reaper requeues them).

**The pipeline of one claim**: ``TrialStarted`` (host, accelerator ``cpu`` or ``cuda:<name> xN``,
versions, tree hash, slot, threads, ``CUDA_VISIBLE_DEVICES``) → prepare the task's data (once per
task version, under a file lock) → build the workspace (``tasks.workspace``) → train once per seed
(``LaunchRequested.seeds`` topped up to ``noise.seeds_per_trial``) in the sandbox
(``tasks.sandbox``), with ``metric`` lines batched into ``MetricsLogged`` → ``TrialFinished`` →
the evaluator in a separate process from a fresh read-only copy, given the runner's wall times →
``TrialEvaluated`` → ``OutcomeLabelled``.

**The labelling contract** (what the campaign loop relies on):

* a failed run gets ``classify_run``'s label: ``crash`` (with the excerpt: deepest exception line
  and recipe frame), ``oom``, ``diverged``, ``train_budget_overrun``, ``eval_budget_overrun``;
* a changed or replaced evaluator-owned file in the workspace, or a symlink in the run's output,
  is ``illegal_edit``; a workspace that cannot be built is ``illegal_edit`` (escaping paths) or
  ``crash``;
* the evaluator's own label (``size_blocked``, ``disqualified``) is used as is;
* otherwise the trial is **scored**: it is labelled ``discard`` with the evaluator's ``score``
  (and ``delta`` against the campaign's incumbent, if any). The runner never decides a keep: the
  campaign loop applies its noise policy (confirmation runs, ``k * sd``, ``min_delta``) and records
  the keep with ``Trial.relabel("keep", ...)`` plus ``Campaign.promote``.

:func:`submit_trial` opens the campaign if needed (``CampaignOpened`` from the spec, with the
baseline snapshot stored as an artifact), registers the next trial number atomically with the
proposal, runs :mod:`tasks.preflight` and records ``PreflightChecked`` followed by either the
preflight's outcome label or ``LaunchRequested``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal as _signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import events as ev
from ledger.aggregates import (
    CLAIMED,
    EVALUATED,
    FINISHED,
    LABELLED,
    QUEUED,
    RUNNING,
    Campaign,
    CommandRefused,
    Trial,
)
from ledger.app import ConflictError, Ledger
from ledger.app import __version__ as ARLEDGER_VERSION
from ledger.codec import decode
from tasks import classify, preflight, sandbox
from tasks import workspace as wsp
from tasks.data import cache_dir

_WATCHED = (ev.LaunchRequested, ev.LaunchClaimed, ev.LeaseRenewed, ev.LaunchRequeued, ev.TrialStarted,
            ev.TrialFinished, ev.TrialEvaluated, ev.OutcomeLabelled, ev.TrialQuarantined)
_TOPICS = tuple(ev.TOPIC_OF[c] for c in _WATCHED)
MAX_METRIC_POINTS = 20_000
"""Metric points recorded per trial at most (the rest are dropped, the log keeps them)."""
MAX_STORED_ARTIFACT = 512 << 20
CLASSIFY_TAIL = 4 << 20


class LeaseLost(RuntimeError):
    """This runner no longer holds the trial's lease; record nothing more for it."""


# -------------------------------------------------------------------------------------------------
# the ledger scan


@dataclass
class TrialState:
    trial_id: uuid.UUID
    phase: str = QUEUED
    task: str = ""
    seeds: list[int] = field(default_factory=list)
    gpus: int = 0
    priority: int = 0
    queued_at: int = 0  # notification id of the latest LaunchRequested / LaunchRequeued
    runner: str = ""
    epoch: int = 0
    lease_expires: float = 0.0
    quarantined: bool = False


class LedgerScan:
    """An incremental view of launches: reads only notifications after its cursor, only of the
    launch, lease and outcome topics."""

    def __init__(self, ledger: Ledger, batch: int = 1000):
        self.ledger = ledger
        self.batch = batch
        self.next_id = 1
        self.trials: dict[uuid.UUID, TrialState] = {}

    def poll(self) -> int:
        rec = self.ledger.app.recorder
        n = 0
        while True:
            top = rec.max_notification_id() or 0
            if top < self.next_id:
                return n
            notes = rec.select_notifications(self.next_id, self.batch, stop=top, topics=_TOPICS)
            for note in notes:
                self._apply(note.id, decode(note.topic, note.state))
                n += 1
            if len(notes) < self.batch:
                self.next_id = top + 1
                return n
            self.next_id = notes[-1].id + 1

    def _apply(self, nid: int, e: ev.Event) -> None:
        t = self.trials.get(e.originator_id)
        if t is None:
            if not isinstance(e, ev.LaunchRequested):
                return  # a trial that never launched (preflight outcome): not ours to track
            t = self.trials[e.originator_id] = TrialState(e.originator_id)
        if isinstance(e, ev.LaunchRequested):
            t.phase, t.task, t.seeds, t.gpus, t.priority, t.queued_at = QUEUED, e.task, list(e.seeds), e.gpus, \
                e.priority, nid
        elif isinstance(e, ev.LaunchClaimed):
            t.phase, t.runner, t.epoch, t.lease_expires = CLAIMED, e.runner, e.epoch, e.lease_expires
        elif isinstance(e, ev.LeaseRenewed):
            t.lease_expires = max(t.lease_expires, e.lease_expires)
        elif isinstance(e, ev.LaunchRequeued):
            t.phase, t.runner, t.epoch, t.lease_expires, t.queued_at = QUEUED, "", e.epoch, 0.0, nid
        elif isinstance(e, ev.TrialStarted):
            t.phase = RUNNING
        elif isinstance(e, ev.TrialFinished):
            t.phase = FINISHED
        elif isinstance(e, ev.TrialEvaluated):
            t.phase = EVALUATED
        elif isinstance(e, ev.OutcomeLabelled):
            if e.status != "runner_lost":
                t.phase = LABELLED
        elif isinstance(e, ev.TrialQuarantined):
            t.quarantined = True

    def queued(self) -> list[TrialState]:
        q = [t for t in self.trials.values() if t.phase == QUEUED and not t.quarantined]
        return sorted(q, key=lambda t: (-t.priority, t.queued_at))

    def leased(self) -> list[TrialState]:
        return [t for t in self.trials.values() if t.phase in (CLAIMED, RUNNING, FINISHED, EVALUATED)]


# -------------------------------------------------------------------------------------------------
# per-trial state inside a runner


class _Ctx:
    def __init__(self, runner: Runner, agg: Trial, slot: _Slot):
        self.runner = runner
        self.agg = agg
        self.trial_id = agg.id
        self.epoch = agg.epoch
        self.slot = slot
        self.lock = threading.Lock()
        self.lost = threading.Event()  # lease lost: kill, record nothing
        self.stop = threading.Event()  # kill the running process (lost or hard shutdown)
        self.done = threading.Event()
        self.lease_expires = agg.lease_expires
        self.metrics: list[ev.MetricPoint] = []
        self.metric_count = 0
        self.mlock = threading.Lock()
        self.seed_prefix = ""
        self.claimed_at = time.time()

    def append(self, command: Callable[[Trial], Any], *, attempts: int = 8, final: bool = False) -> None:
        """Apply a fenced command to the trial and save it; reload and retry on conflicts and
        transient store errors; a refusal means the lease is lost. ``final``: the trial's last event
        (its label): the heartbeat stops renewing from here on."""
        led = self.runner.ledger
        with self.lock:
            if self.lost.is_set():
                raise LeaseLost("lease already lost")
            delay = 0.05
            for i in range(attempts):
                try:
                    command(self.agg)
                except CommandRefused as e:
                    self._lose(str(e))
                    raise LeaseLost(str(e)) from None
                try:
                    led.save(self.agg)
                    if final:
                        self.done.set()
                    return
                except ConflictError:
                    pass
                except Exception as e:  # the store hiccuped (locked, connection): retry from a reload
                    if i == attempts - 1:
                        raise
                    self.runner._log(f"trial {self.agg.number}: store error, retrying: {e}")
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                self.agg = self._reload()
            raise LeaseLost("could not append after repeated conflicts")

    def _reload(self) -> Trial:
        delay = 0.05
        for _ in range(20):
            try:
                return self.runner.ledger.load(Trial, self.trial_id)
            except Exception:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        return self.runner.ledger.load(Trial, self.trial_id)

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            self.runner._log(f"trial {self.agg.number}: lease lost ({why}); stopping it, recording nothing more")
        self.lost.set()
        self.stop.set()

    def add_points(self, points: list[tuple[int, str, float]]) -> None:
        with self.mlock:
            for step, name, value in points:
                if self.metric_count >= MAX_METRIC_POINTS:
                    return
                self.metrics.append(ev.MetricPoint(step, self.seed_prefix + name, float(value)))
                self.metric_count += 1

    def flush_metrics(self) -> None:
        with self.mlock:
            pts, self.metrics = self.metrics, []
        if pts:
            rid, ep = self.runner.runner_id, self.epoch
            try:
                self.append(lambda a: a.log_metrics(rid, ep, pts))
            except LeaseLost:
                raise
            except Exception:
                with self.mlock:  # try again with the next batch
                    self.metrics[:0] = pts
                raise


@dataclass
class _Slot:
    index: int
    gpus: list[int]
    ctx: _Ctx | None = None
    thread: threading.Thread | None = None

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(str(g) for g in self.gpus)


# -------------------------------------------------------------------------------------------------
# the runner


class Runner:
    def __init__(self, ledger_url: str | None = None, runner_id: str | None = None, *, slots: int = 1,
                 gpus: Iterable[int] = (), gpus_per_trial: int = 0, lease_s: float = 30.0,
                 heartbeat_s: float | None = None, poll_s: float = 0.2, data_root: Path | str | None = None,
                 work_root: Path | str | None = None, tasks: Iterable[Any] | None = None,
                 ledger: Ledger | None = None, log: Callable[[str], None] | None = None, grace_s: float = 3.0,
                 keep_workdirs: bool = False, reap_margin_s: float = 0.5, metrics_every_s: float = 2.0,
                 isolate: bool = True):
        self.ledger = ledger if ledger is not None else _open_ledger(ledger_url)
        self._own_ledger = ledger is None
        self.runner_id = runner_id or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_s = float(lease_s)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else self.lease_s / 3
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.keep_workdirs = keep_workdirs
        self.reap_margin_s = reap_margin_s
        self.metrics_every_s = metrics_every_s
        self.data_root = Path(data_root) if data_root else cache_dir() / "data"
        self.work_root = Path(work_root) if work_root else Path(tempfile.gettempdir()) / f"arledger-work-{os.geteuid()}"
        self._log_fn = log
        gpus = [int(g) for g in gpus]
        self.gpus_per_trial = int(gpus_per_trial)
        if self.gpus_per_trial > 0:
            if len(gpus) < self.gpus_per_trial:
                raise ValueError(f"--gpus-per-trial {gpus_per_trial} needs at least that many --gpus (got {gpus})")
            n = min(slots, len(gpus) // self.gpus_per_trial) if slots else len(gpus) // self.gpus_per_trial
            self.slots = [_Slot(i, gpus[i * self.gpus_per_trial:(i + 1) * self.gpus_per_trial]) for i in range(n)]
        elif gpus:
            n = max(1, slots)
            per = max(1, len(gpus) // n)
            self.slots = [_Slot(i, gpus[i * per:(i + 1) * per] or [gpus[i % len(gpus)]]) for i in range(n)]
        else:
            self.slots = [_Slot(i, []) for i in range(max(1, slots))]
        self.scan = LedgerScan(self.ledger)
        self._specs: dict[str, Any] = {}
        self._variants: dict[str, list[Any]] = {}  # name -> every spec served under that name
        self._unservable: dict[str, str] = {}
        self._tasks_filter: set[str] | None = None
        if tasks is not None:
            self._tasks_filter = set()
            for t in tasks:
                spec = _load_spec(t)
                self._specs.setdefault(spec.name, spec)
                self._variants.setdefault(spec.name, []).append(spec)
                self._tasks_filter.add(spec.name)
        self._wake = threading.Event()
        self._drain = threading.Event()
        self._hard = threading.Event()
        self._slock = threading.Lock()
        self._accel: dict[int, str] = {}
        self._prepared: set[str] = set()
        self.labelled = 0
        self.claimed = 0
        self.history: list[dict[str, Any]] = []  # per trial: claim/label times (benchmarks, tests)
        self.isolation = self._setup_root(isolate)

    # set up -------------------------------------------------------------------------------
    def _setup_root(self, isolate: bool) -> sandbox.Isolation:
        self.work_root.mkdir(parents=True, exist_ok=True)
        if os.path.islink(self.work_root):
            raise ValueError(f"work root {self.work_root} is a symlink; refusing")
        if os.geteuid() == 0:
            os.chown(self.work_root, 0, 0)
        os.chmod(self.work_root, 0o711)
        self._clean_stale()
        if not isolate:
            return sandbox.Isolation(None, sys.executable, "isolation disabled: recipes run as the runner's user")
        iso = sandbox.recipe_isolation(self.work_root)
        if iso.identity is not None and self.ledger.cfg.kind == "sqlite" and self.ledger.cfg.path is not None:
            _protect_sqlite(self.ledger.cfg.path)
        return iso

    def _clean_stale(self) -> None:
        """Trial directories left by a runner that died (SIGKILL, power loss): kill whatever still
        works in them and remove them. Each trial dir names its runner process in ``owner``."""
        for d in self.work_root.glob("t-*"):
            try:
                pid, start = (d / "owner").read_text().split()
                if _process_start(int(pid)) == start:
                    continue  # its runner is alive
            except (OSError, ValueError):
                if time.time() - d.stat().st_mtime < 60:
                    continue  # being created right now
            killed = sandbox.kill_leftovers(None, None, roots=[str(d)])
            if killed:
                self._log(f"killed {len(killed)} process(es) left by a dead runner in {d}")
            with contextlib.suppress(Exception):
                wsp.remove_tree(d)

    def _log(self, msg: str) -> None:
        if self._log_fn is not None:
            with contextlib.suppress(Exception):
                self._log_fn(msg)

    def close(self) -> None:
        if self._own_ledger:
            self.ledger.close()

    # the loop ------------------------------------------------------------------------------
    def run_forever(self, stop_event: threading.Event | None = None, *, install_signals: bool = False) -> int:
        """Claim and run trials until ``stop_event`` is set (or a signal, with install_signals):
        then drain. Returns 0."""
        stop_event = stop_event or threading.Event()
        self._drain.clear()
        self._hard.clear()
        restore = self._install_signals(stop_event) if install_signals else None
        try:
            self._log(f"runner {self.runner_id}: {len(self.slots)} slot(s); {self.isolation.note}")
            while True:
                if stop_event.is_set():
                    self._drain.set()
                self._wake.clear()
                self._tick()
                if self._drain.is_set() and not self._busy():
                    break
                if self._hard.is_set():
                    break
                self._wake.wait(self.poll_s)
            self._join_all()
        finally:
            if restore:
                restore()
        return 0

    def run_until_idle(self, *, wait_for_others: bool = False, timeout_s: float | None = None) -> int:
        """Run until nothing this runner could run is queued and none of its trials is running
        (``wait_for_others``: also until no other runner holds a lease — then an expired lease is
        reaped and its trial run here). Returns the number of trials it labelled."""
        start = self.labelled
        self._drain.clear()
        self._hard.clear()
        t_end = time.monotonic() + timeout_s if timeout_s else None
        while True:
            self._wake.clear()
            self._tick()
            if not self._busy() and not self._claimable() and not (wait_for_others and self._others_active()):
                break
            if t_end is not None and time.monotonic() > t_end:
                self._log("run_until_idle: timeout; draining")
                self._drain.set()
                self._join_all()
                break
            self._wake.wait(self.poll_s)
        self._join_all()
        return self.labelled - start

    def drain(self) -> None:
        self._drain.set()
        self._wake.set()

    def kill(self) -> None:
        """Hard stop: kill the running trials, record nothing more, leave their leases to expire."""
        self._hard.set()
        self._drain.set()
        for s in self.slots:
            if s.ctx is not None:
                s.ctx.lost.set()
                s.ctx.stop.set()
        self._wake.set()

    def _install_signals(self, stop_event: threading.Event) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        count = [0]

        def handler(signum: int, frame: Any) -> None:
            count[0] += 1
            if count[0] == 1:
                self._log(f"runner {self.runner_id}: {_signal.Signals(signum).name}: draining (finishing running "
                          "trials, claiming no more); send it again to kill them")
                stop_event.set()
                self.drain()
            else:
                self._log(f"runner {self.runner_id}: killing running trials; their leases will expire")
                self.kill()

        old = {s: _signal.signal(s, handler) for s in (_signal.SIGTERM, _signal.SIGINT)}

        def restore() -> None:
            for s, h in old.items():
                _signal.signal(s, h)

        return restore

    def _busy(self) -> bool:
        return any(s.thread is not None for s in self.slots)

    def _join_all(self) -> None:
        for s in self.slots:
            t = s.thread
            if t is not None:
                t.join()
        self._collect()

    def _collect(self) -> None:
        with self._slock:
            for s in self.slots:
                if s.thread is not None and not s.thread.is_alive():
                    s.thread.join()
                    s.thread, s.ctx = None, None

    def _tick(self) -> None:
        self._collect()
        try:
            self.scan.poll()
        except Exception as e:
            self._log(f"runner {self.runner_id}: cannot read the ledger: {e}")
            return
        self._reap()
        if not self._drain.is_set():
            self._claim()

    def _claimable(self) -> bool:
        return any(self._can_serve(t) for t in self.scan.queued())

    def _others_active(self) -> bool:
        ours = {s.ctx.trial_id for s in self.slots if s.ctx is not None}
        return any(t.trial_id not in ours and self._can_serve(t, quiet=True) for t in self.scan.leased())

    # reaping -------------------------------------------------------------------------------
    def _reap(self) -> None:
        now = time.time()
        for t in self.scan.leased():
            if t.lease_expires + self.reap_margin_s >= now:
                continue
            try:
                agg = self.ledger.load(Trial, t.trial_id)
                if agg.phase not in (CLAIMED, RUNNING, FINISHED, EVALUATED) or agg.lease_expires + \
                        self.reap_margin_s >= now:
                    t.lease_expires = max(t.lease_expires, agg.lease_expires)
                    continue
                agg.requeue(f"runner:{self.runner_id}", now)
                self.ledger.save(agg)
                self._log(f"reaped trial {agg.number}: runner {t.runner} lost its lease (epoch {t.epoch}); requeued")
            except (ConflictError, CommandRefused):
                continue
            except Exception as e:
                self._log(f"reaper: {e}")

    # claiming ------------------------------------------------------------------------------
    def _can_serve(self, t: TrialState, quiet: bool = False) -> bool:
        if self._spec_for(t.task, quiet=quiet) is None:
            return False
        need = t.gpus
        if need and not any(len(s.gpus) >= need for s in self.slots):
            return False
        return True

    def _spec_for(self, name: str, quiet: bool = False) -> Any | None:
        if name in self._specs:
            return self._specs[name]
        if self._tasks_filter is not None or name in self._unservable:
            return None
        try:
            spec = _load_spec(name)
        except Exception as e:
            self._unservable[name] = str(e)
            if not quiet:
                self._log(f"runner {self.runner_id}: cannot serve task {name!r} ({e}); a task that is not "
                          "built in needs `--task PATH` (Runner(tasks=[path]))")
            return None
        self._specs[name] = spec
        return spec

    def _claim(self) -> None:
        free = [s for s in self.slots if s.thread is None]
        if not free:
            return
        for t in self.scan.queued():
            if not free:
                return
            if not self._can_serve(t):
                continue
            slot = next((s for s in free if len(s.gpus) >= t.gpus), None)
            if slot is None:
                continue
            try:
                agg = self.ledger.load(Trial, t.trial_id)
                if agg.phase != QUEUED or agg.quarantined:
                    continue
                agg.claim(self.runner_id, self.lease_s, time.time())
                self.ledger.save(agg)
            except (ConflictError, CommandRefused):
                continue  # another runner won
            except Exception as e:
                self._log(f"runner {self.runner_id}: claim failed: {e}")
                continue
            t.phase, t.runner, t.epoch, t.lease_expires = CLAIMED, self.runner_id, agg.epoch, agg.lease_expires
            self.claimed += 1
            ctx = _Ctx(self, agg, slot)
            slot.ctx = ctx
            slot.thread = threading.Thread(target=self._worker, args=(ctx,), daemon=True,
                                           name=f"trial-{agg.number}")
            free.remove(slot)
            self._log(f"claimed trial {agg.number} ({t.task}) epoch {agg.epoch} on slot {slot.index}"
                      + (f" gpus {slot.cuda_visible_devices}" if slot.gpus else ""))
            slot.thread.start()

    # one trial -----------------------------------------------------------------------------
    def _worker(self, ctx: _Ctx) -> None:
        hb = threading.Thread(target=self._heartbeat, args=(ctx,), daemon=True, name=f"lease-{ctx.agg.number}")
        hb.start()
        tdir: Path | None = None
        try:
            tdir = self._trial_dir(ctx)
            self._pipeline(ctx, tdir)
        except LeaseLost:
            pass
        except Exception as e:  # a runner bug or a broken store: say so in the ledger if we still can
            tb = traceback.format_exc()
            self._log(f"trial {ctx.agg.number}: runner error: {e}\n{tb}")
            if not ctx.lost.is_set() and not self._hard.is_set():
                with contextlib.suppress(Exception):
                    self._label(ctx, "crash", reason=f"runner error (not the recipe's): {type(e).__name__}: {e}",
                                excerpt=classify.crash_excerpt(tb, []))
        finally:
            ctx.done.set()
            hb.join(timeout=5)
            if tdir is not None and not self.keep_workdirs:
                with contextlib.suppress(Exception):
                    wsp.remove_tree(tdir)
            self._wake.set()

    def _heartbeat(self, ctx: _Ctx) -> None:
        rid, ep = self.runner_id, ctx.epoch
        next_renew = time.monotonic() + self.heartbeat_s
        next_flush = time.monotonic() + self.metrics_every_s
        while not ctx.done.wait(max(0.05, min(next_renew, next_flush) - time.monotonic())):
            if ctx.lost.is_set() or self._hard.is_set():
                return
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + self.metrics_every_s
                try:
                    ctx.flush_metrics()
                except LeaseLost:
                    return
                except Exception as e:
                    self._log(f"trial {ctx.agg.number}: metrics not recorded yet: {e}")
            if now >= next_renew:
                t = time.time()
                try:
                    ctx.append(lambda a, t=t: None if ctx.done.is_set() else a.renew(rid, ep, self.lease_s, t))
                    ctx.lease_expires = t + self.lease_s
                    next_renew = time.monotonic() + self.heartbeat_s
                except LeaseLost:
                    return
                except Exception as e:
                    if time.time() > ctx.lease_expires:
                        ctx._lose(f"could not renew before the lease expired: {e}")
                        return
                    self._log(f"trial {ctx.agg.number}: lease renewal failed, retrying: {e}")
                    next_renew = time.monotonic() + min(1.0, self.heartbeat_s)

    def _trial_dir(self, ctx: _Ctx) -> Path:
        # unguessable: the work root is not listable, so one trial cannot find another's files
        d = self.work_root / f"t-{ctx.trial_id.hex[:12]}-e{ctx.epoch}-{sandbox.new_token()[:16]}"
        if d.exists():
            wsp.remove_tree(d)
        d.mkdir(mode=0o711)
        os.chmod(d, 0o711)
        (d / "logs").mkdir(mode=0o700)
        (d / "owner").write_text(f"{os.getpid()} {_process_start(os.getpid())}\n")
        return d

    def _label(self, ctx: _Ctx, status: str, *, reason: str = "", excerpt: str = "",
               score: float | None = None) -> None:
        rid, ep = self.runner_id, ctx.epoch
        delta = None
        if score is not None and ctx.agg.proposed is not None:
            with contextlib.suppress(Exception):
                camp = self.ledger.load(Campaign, ctx.agg.proposed.campaign_id)
                if camp.incumbent is not None:
                    delta = score - camp.incumbent.score
        ctx.flush_metrics()
        ctx.append(lambda a: a.label_outcome(status, f"runner:{rid}", runner=rid, epoch=ep, reason=reason[:2000],
                                             excerpt=excerpt[:2000], score=score, delta=delta), final=True)
        self.labelled += 1
        self.history.append({"trial_id": str(ctx.trial_id), "number": ctx.agg.number, "status": status,
                             "score": score, "claimed_at": ctx.claimed_at, "labelled_at": time.time(),
                             "slot": ctx.slot.index})
        self._log(f"trial {ctx.agg.number}: {status}" + (f" score {score:.6g}" if score is not None else "")
                  + (f" — {reason}" if reason and status != "discard" else ""))

    def _pipeline(self, ctx: _Ctx, tdir: Path) -> None:
        rid, ep = self.runner_id, ctx.epoch
        agg = ctx.agg
        launch = agg.launch
        assert launch is not None and agg.proposed is not None
        spec = self._spec_for(launch.task)
        variants = self._variants.get(launch.task, [])
        if len(variants) > 1:  # several versions of a task under one name: the campaign's own
            with contextlib.suppress(Exception):
                want = self.ledger.load(Campaign, agg.proposed.campaign_id).opened.task_sha
                spec = next((v for v in variants if _call(v, "content_sha") == want), spec)
        if spec is None:
            self._label(ctx, "crash", reason=f"runner error: task {launch.task!r} cannot be loaded here")
            return
        iso = self.isolation
        ident = iso.identity
        # the code, before anything runs
        try:
            files = wsp.trial_files(self.ledger, ctx.trial_id, spec)
            wsp.check_tree(spec, files)
        except wsp.WorkspaceError as e:
            self._label(ctx, e.label, reason=str(e))
            return
        tree = wsp.tree_sha(files)
        threads = self._threads(spec)
        cvd = ctx.slot.cuda_visible_devices
        versions = {"python": platform.python_version(), "torch": _dist_version("torch"),
                    "arledger": ARLEDGER_VERSION, "task": f"{spec.name}@{_spec_version(spec)}",
                    "task_sha": _call(spec, "content_sha"), "evaluator_sha": _call(spec, "evaluator_sha"),
                    "recipe_user": ident.name if ident else f"uid {os.geteuid()}"}
        accel = self._accelerator(ctx.slot)
        ctx.append(lambda a: a.start(rid, ep, host=socket.gethostname(), accelerator=accel,
                                     versions=versions, tree_sha=tree, slot=ctx.slot.index, cpu_threads=threads,
                                     cuda_visible_devices=cvd))
        self._log(f"trial {agg.number}: started (tree {tree[:12]}, {threads} threads"
                  + (f", CUDA_VISIBLE_DEVICES={cvd}" if cvd else "") + ")")
        # data
        try:
            data_dir = self._prepare(spec)
            train_view = self._train_view(spec, data_dir, ident)
        except Exception as e:
            self._label(ctx, "crash", reason=f"harness error (not the recipe's): data preparation failed: {e}")
            return
        # workspace
        ws = tdir / "ws"
        try:
            wsp.build_workspace(spec, files, ws, ident)
        except wsp.WorkspaceError as e:
            self._label(ctx, e.label, reason=str(e))
            return
        staged = wsp.staged_paths(spec)
        expected = wsp.expected_evaluator_hashes(spec, staged)
        home = tdir / "home"
        home.mkdir(mode=0o700)
        sandbox.chown_tree(home, ident)
        seeds = _seeds(launch.seeds, int(wsp.sget(spec, "noise", "seeds_per_trial", 1) or 1))
        train_s = float(wsp.sget(spec, "budgets", "train_s", 600))
        device = "cuda" if ctx.slot.gpus else "cpu"
        recipe_files = list(spec.recipe_files)
        runs: list[Path] = []
        walls: list[float] = []
        cpu = 0.0
        rss = gpu_peak = 0
        last: sandbox.RunResult | None = None
        logs: list[tuple[int, Path]] = []
        failure: tuple[str, str, str] | None = None
        artifact_name = spec.artifact
        for i, seed in enumerate(seeds):
            out = tdir / f"out-{i}"
            out.mkdir(mode=0o700)
            sandbox.chown_tree(out, ident)
            ctx.seed_prefix = f"seed{seed}/" if len(seeds) > 1 else ""
            env = sandbox.trial_env(home=home, data=train_view, out=out, seed=seed, threads=threads,
                                    time_budget_s=train_s, device=device, cuda_visible_devices=cvd)
            argv = sandbox.Placeholders({"python": iso.python, "ws": str(ws), "out": str(out), "seed": str(seed),
                                         "threads": str(threads), "data": str(train_view)}).argv(
                _command(spec, "train"))
            log_path = tdir / "logs" / f"train-{i}.log"

            def on_line(line: str, ctx: _Ctx = ctx) -> None:
                if line.startswith("metric"):
                    pts = classify.parse_metric_lines(line)
                    if pts:
                        ctx.add_points(pts)

            self._log(f"trial {agg.number}: training seed {seed} ({i + 1}/{len(seeds)}), budget {train_s:g}s")
            res = sandbox.run(argv, cwd=ws, env=env, log_path=log_path, timeout_s=train_s, grace_s=self.grace_s,
                              identity=ident, on_line=on_line, stop=ctx.stop, gpu_devices=cvd if cvd else None,
                              sweep_roots=[ws, out, home])
            if ctx.lost.is_set() or self._hard.is_set():
                raise LeaseLost("stopped while training")
            last = res
            logs.append((seed, log_path))
            runs.append(out)
            walls.append(res.wall_s)
            cpu += res.cpu_s
            rss = max(rss, res.peak_rss_bytes)
            gpu_peak = max(gpu_peak, res.peak_gpu_bytes)
            changed = wsp.evaluator_changes(spec, ws, expected)
            if changed:
                failure = ("illegal_edit", f"the run changed evaluator-owned file(s): {', '.join(changed)}", "")
                break
            art = out / artifact_name
            present = os.path.isfile(art) and not os.path.islink(art)
            log_text = _tail(log_path, CLASSIFY_TAIL)
            label, reason, excerpt = classify.classify_run(res.exit_status, res.signal, res.timed_out, log_text,
                                                           recipe_files, "train", artifact_present=present)
            if res.error:
                label, reason = "crash", res.error
            if label is not None:
                failure = (label, f"seed {seed}: {reason}" if len(seeds) > 1 else reason, excerpt)
                break
            bad = _links_in(out)
            if bad:
                failure = ("illegal_edit", f"the run's output contains links or special files: {', '.join(bad)}", "")
                break
        assert last is not None
        # finish
        art_sha, art_bytes = self._store_artifacts(runs, artifact_name)
        log_sha, log_bytes = self._store_logs(logs)
        after = wsp.after_tree_sha(ws, exclude=set(staged))
        cb = wsp.code_bytes(spec, files)
        ctx.flush_metrics()
        ctx.append(lambda a: a.finish(rid, ep, exit_status=last.exit_status, signal=last.signal,
                                      timed_out=last.timed_out, wall_s=sum(walls), cpu_s=cpu, peak_rss_bytes=rss,
                                      peak_gpu_bytes=gpu_peak, artifact_sha=art_sha, artifact_bytes=art_bytes,
                                      code_bytes=cb, log_sha=log_sha, log_bytes=log_bytes, tree_sha_after=after))
        if failure is not None:
            self._label(ctx, failure[0], reason=failure[1], excerpt=failure[2])
            return
        # evaluate
        self._evaluate(ctx, spec, tdir, data_dir, runs, walls, cb, cvd, device, threads)

    def _evaluate(self, ctx: _Ctx, spec: Any, tdir: Path, data_dir: Path, runs: list[Path], walls: list[float],
                  code_bytes: int, cvd: str, device: str, threads: int) -> None:
        rid, ep = self.runner_id, ctx.epoch
        edir = tdir / "eval"
        edir.mkdir(mode=0o700)
        eval_dir = wsp.stage_evaluator(spec, edir / "stage")
        result_path = edir / "result.json"
        template = _command(spec, "evaluate")
        values = {"python": sys.executable, "eval_dir": str(eval_dir), "runs": ",".join(str(r) for r in runs),
                  "result": str(result_path), "data": str(data_dir), "task": str(wsp.task_dir(spec)),
                  "train_wall_s": ",".join(f"{w:.4f}" for w in walls), "code_bytes": str(code_bytes),
                  "heldout": str(data_dir / "heldout")}
        argv = sandbox.Placeholders(values).argv(template)
        if "{train_wall_s}" not in template and "--train-wall-s" not in template:
            argv += ["--train-wall-s", values["train_wall_s"]]
        if "{code_bytes}" not in template and "--code-bytes" not in template:
            argv += ["--code-bytes", values["code_bytes"]]
        eval_s = float(wsp.sget(spec, "budgets", "eval_s", 300))
        env = sandbox.harness_env({"CUDA_VISIBLE_DEVICES": cvd, "ARLEDGER_DEVICE": device,
                                   "ARLEDGER_THREADS": str(threads), **{k: str(threads) for k in sandbox.THREAD_VARS}})
        log_path = edir / "evaluate.log"
        res = sandbox.run(argv, cwd=eval_dir, env=env, log_path=log_path, timeout_s=eval_s, grace_s=self.grace_s,
                          stop=ctx.stop, gpu_devices=None)
        if ctx.lost.is_set() or self._hard.is_set():
            raise LeaseLost("stopped while evaluating")
        log_text = _tail(log_path, CLASSIFY_TAIL)
        log_sha = self.ledger.artifacts.put(log_path.read_bytes()) if log_path.exists() else None
        evaluator_sha = str(_call(spec, "evaluator_sha"))
        evaluator = f"{spec.name}@{evaluator_sha[:12]}"
        if res.timed_out:
            self._label(ctx, "eval_budget_overrun", reason=f"the evaluator ran past eval_s={eval_s:g}s",
                        excerpt=classify.crash_excerpt(log_text, []))
            return
        result: dict[str, Any] | None = None
        problem = ""
        if res.exit_status != 0:
            problem = f"the evaluator exited with status {res.exit_status if res.signal is None else -res.signal}"
        try:
            result = json.loads(result_path.read_text())
            if not isinstance(result, dict):
                raise ValueError("result.json is not an object")
        except (OSError, ValueError) as e:
            result = None
            problem = problem or f"the evaluator wrote no readable result ({e})"
        if result is None:
            self._label(ctx, "crash", reason=f"evaluator failed: {problem}",
                        excerpt=classify.crash_excerpt(log_text, list(spec.evaluator_files)))
            return
        score = _num(result.get("score"))
        metrics = {str(k): float(v) for k, v in (result.get("metrics") or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
        gates = []
        for g in result.get("gates") or []:
            if isinstance(g, dict) and "name" in g:
                gates.append(ev.GateResult(name=str(g["name"]), passed=bool(g.get("passed")), value=_num(g.get("value")),
                                           limit=_num(g.get("limit")), detail=str(g.get("detail", ""))[:500]))
        ctx.append(lambda a: a.record_evaluation(rid, ep, f"evaluator:{evaluator}", score=score, metrics=metrics,
                                                 gates=gates, evaluator=evaluator, evaluator_sha=evaluator_sha,
                                                 eval_wall_s=res.wall_s, log_sha=log_sha))
        label = result.get("label")
        reason = str(result.get("reason") or "")
        if label:
            if label not in ev.STATUSES or label in ("keep", "baseline", "runner_lost"):
                self._label(ctx, "crash", reason=f"the evaluator returned an unknown label {label!r}: {reason}")
            else:
                failed = ", ".join(f"{g.name} {g.value:g} > {g.limit:g}" if g.value is not None and g.limit is not None
                                   else g.name for g in gates if not g.passed)
                self._label(ctx, label, reason=reason or failed or f"evaluator: {label}", score=score)
            return
        if score is None:
            raw = result.get("score")
            if isinstance(raw, (int, float)) and not math.isfinite(float(raw)):
                self._label(ctx, "diverged", reason=f"the evaluator's score is {raw}")
            else:
                self._label(ctx, "crash", reason=f"the evaluator gave no score: {reason or problem or 'no reason'}",
                            excerpt=classify.crash_excerpt(log_text, list(spec.evaluator_files)) if problem else "")
            return
        self._label(ctx, "discard", reason=reason or "scored; the campaign loop decides keep or discard",
                    score=score)

    # helpers -----------------------------------------------------------------------------
    def _threads(self, spec: Any) -> int:
        want = int(wsp.sget(spec, "resources", "cpu_threads", 0) or 0)
        fair = max(1, (os.cpu_count() or 1) // max(1, len(self.slots)))
        return max(1, min(want, fair) if want else fair)

    def _accelerator(self, slot: _Slot) -> str:
        if not slot.gpus:
            return "cpu"
        if slot.index not in self._accel:
            self._accel[slot.index] = _describe_gpus(slot.gpus)
        return self._accel[slot.index]

    def _prepare(self, spec: Any) -> Path:
        key = f"{spec.name}-v{_spec_version(spec)}"
        data = self.data_root / key
        if key in self._prepared:
            return data
        self.data_root.mkdir(parents=True, exist_ok=True)
        marker = data / ".arledger-prepared"
        with open(self.data_root / f".{key}.lock", "a+") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            try:
                if not marker.exists():
                    data.mkdir(parents=True, exist_ok=True)
                    cmd = _command(spec, "prepare")
                    if cmd:
                        self._log(f"preparing data for {key} in {data}")
                        argv = sandbox.Placeholders({"python": sys.executable, "data": str(data),
                                                     "task": str(wsp.task_dir(spec))}).argv(cmd)
                        log = self.data_root / f".{key}.prepare.log"
                        res = sandbox.run(argv, cwd=_repo_root(), env=sandbox.harness_env(), log_path=log,
                                          timeout_s=float(os.environ.get("ARLEDGER_PREPARE_TIMEOUT_S", 3600)))
                        if not res.ok:
                            tail = _tail(log, 4000).strip().splitlines()[-3:]
                            raise RuntimeError(f"`{cmd}` failed ({'timed out' if res.timed_out else res.exit_status}):"
                                               f" {' | '.join(tail)}")
                    (data / "train").mkdir(exist_ok=True)
                    (data / "heldout").mkdir(exist_ok=True)
                    if os.geteuid() == 0:
                        _secure_data(data)
                    marker.write_text(f"{spec.name} {_spec_version(spec)}\n")
                elif os.geteuid() == 0:
                    _secure_data(data)
            finally:
                fcntl.flock(lockf, fcntl.LOCK_UN)
        self._prepared.add(key)
        return data

    def _train_view(self, spec: Any, data: Path, ident: sandbox.Identity | None) -> Path:
        """The train split as the recipe may see it: the prepared dir itself when the recipe's
        user can reach it, else a hard-linked (or copied) read-only view under the work root."""
        train = data / "train"
        if ident is None or sandbox.reachable_by(train, ident):
            return train
        key = f"{spec.name}-v{_spec_version(spec)}-{hashlib.sha256(str(data).encode()).hexdigest()[:10]}"
        view_root = self.work_root / "data"
        view_root.mkdir(exist_ok=True)
        os.chmod(view_root, 0o711)
        view = view_root / key / "train"
        marker = view_root / key / ".complete"
        if marker.exists():
            return view
        with open(self.work_root / f".{key}.view.lock", "a+") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            try:
                if not marker.exists():
                    if view.parent.exists():
                        shutil.rmtree(view.parent)
                    view.parent.mkdir(mode=0o755)

                    def _link(src: str, dst: str) -> None:
                        try:
                            os.link(src, dst)
                        except OSError:
                            shutil.copy2(src, dst)

                    shutil.copytree(train, view, copy_function=_link, symlinks=False)
                    for d, _, fs in os.walk(view):
                        os.chmod(d, 0o755)
                        for f in fs:
                            os.chmod(os.path.join(d, f), 0o444)
                    marker.write_text("ok\n")
            finally:
                fcntl.flock(lockf, fcntl.LOCK_UN)
        return view

    def _store_artifacts(self, runs: list[Path], name: str) -> tuple[str | None, int]:
        shas: list[dict[str, Any]] = []
        for out in runs:
            p = out / name
            if not os.path.isfile(p) or os.path.islink(p):
                shas.append({"run": out.name, "sha": None, "bytes": 0})
                continue
            size = p.stat().st_size
            sha = self.ledger.artifacts.put(p.read_bytes()) if size <= MAX_STORED_ARTIFACT else None
            shas.append({"run": out.name, "sha": sha, "bytes": size})
        if not shas:
            return None, 0
        if len(shas) == 1:
            return shas[0]["sha"], shas[0]["bytes"]
        manifest = json.dumps({"artifact": name, "runs": shas}, sort_keys=True)
        return self.ledger.artifacts.put(manifest), max(s["bytes"] for s in shas)

    def _store_logs(self, logs: list[tuple[int, Path]]) -> tuple[str | None, int]:
        if not logs:
            return None, 0
        if len(logs) == 1:
            data = logs[0][1].read_bytes() if logs[0][1].exists() else b""
        else:
            parts = []
            for seed, p in logs:
                parts.append(f"===== seed {seed} =====\n".encode())
                parts.append(p.read_bytes() if p.exists() else b"")
            data = b"".join(parts)
        return self.ledger.artifacts.put(data), len(data)


def _protect_sqlite(db: Path) -> None:
    """Recipes run as another user: keep a SQLite ledger (file 0600), and the directory holding
    its artifacts and signing key (0700), to the runner's user. A directory that is the current
    directory or a system one is left as it is (only the file is tightened)."""
    home = db.parent
    me = os.geteuid()
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        with contextlib.suppress(OSError):
            if p.stat().st_uid == me:
                os.chmod(p, 0o600)
    shared = {Path.cwd().resolve(), Path("/"), Path(tempfile.gettempdir()).resolve(), Path.home().resolve()}
    with contextlib.suppress(OSError):
        if home.stat().st_uid == me and home.resolve() not in shared:
            os.chmod(home, home.stat().st_mode & 0o700)


# -------------------------------------------------------------------------------------------------
# submitting


@dataclass
class Submitted:
    trial_id: uuid.UUID
    number: int
    campaign_id: uuid.UUID
    passed: bool
    label: str | None  # the preflight outcome, or None when launched
    checks: list[ev.Check]
    reason: str = ""
    tree_sha: str | None = None


def open_campaign(ledger: Ledger, spec: Any, campaign: str, *, actor: str, arm: str = "lineage",
                  config: dict[str, Any] | None = None, seed: int = 0) -> Campaign:
    """The campaign named ``campaign``, opened from the spec if it does not exist yet (with the
    baseline snapshot stored as an artifact, so every trial's code can be rebuilt later)."""
    cid = ev.campaign_id_for(campaign)
    camp = ledger.load(Campaign, cid)
    if camp.opened is not None:
        return camp
    base = wsp.baseline_files(spec)
    base_sha = ledger.artifacts.put(json.dumps(base, sort_keys=True))
    cfg = {"task_path": str(wsp.task_dir(spec)), **(config or {})}
    budgets = {k: float(wsp.sget(spec, "budgets", k, 0) or 0) for k in ("preflight_s", "train_s", "eval_s")}
    specialists = []
    for s in getattr(spec, "specialists", None) or []:
        name = s.get("name") if isinstance(s, dict) else getattr(s, "name", "")
        surface = s.get("surface") if isinstance(s, dict) else getattr(s, "surface", "")
        pre = s.get("preamble", "") if isinstance(s, dict) else getattr(s, "preamble", "")
        specialists.append(ev.SpecialistDecl(name=name, surface=surface, preamble=pre or ""))
    camp = Campaign.open(name=campaign, actor=actor, task=spec.name, task_version=str(_spec_version(spec)),
                         task_sha=str(_call(spec, "content_sha")), metric=spec.metric, direction=spec.direction,
                         arm=arm, specialists=specialists, budgets=budgets, config=cfg,
                         harness_version=ARLEDGER_VERSION, seed=seed, baseline_sha=base_sha,
                         baseline_tree=wsp.tree_sha(base))
    try:
        ledger.save(camp)
    except ConflictError:
        pass  # someone opened it first
    return ledger.load(Campaign, cid)


def campaign_diff_shas(ledger: Ledger, campaign_id: uuid.UUID) -> set[str]:
    """The duplicate keys of a campaign's trials (``preflight.duplicate_key`` of each proposal on its
    parent's code, and ``preflight.tree_key`` of each trial's code). Reads the log."""
    trees: dict[uuid.UUID, str] = {}
    props: list[ev.TrialProposed] = []
    baseline_tree = ""
    for rec in ledger.events(topics=(ev.TOPIC_OF[ev.TrialProposed], ev.TOPIC_OF[ev.PreflightChecked],
                                     ev.TOPIC_OF[ev.CampaignOpened])):
        e = rec.event
        if isinstance(e, ev.CampaignOpened) and e.originator_id == campaign_id:
            baseline_tree = e.baseline_tree or str(e.config.get("baseline_tree", ""))  # config: older ledgers
        elif isinstance(e, ev.TrialProposed) and e.campaign_id == campaign_id:
            props.append(e)
        elif isinstance(e, ev.PreflightChecked) and e.tree_sha:
            trees[e.originator_id] = e.tree_sha
    out: set[str] = set()
    for e in props:
        tree = trees.get(e.originator_id)
        if tree:
            out.add(preflight.tree_key(tree))
        parent_tree = trees.get(e.parent_id) if e.parent_id else baseline_tree
        if e.diff_sha and parent_tree:
            with contextlib.suppress(Exception):
                text = ledger.artifacts.get_text(e.diff_sha)
                if text.strip():
                    out.add(preflight.duplicate_key(parent_tree, text))
    return out


def submit_trial(ledger: Ledger, spec: Any, *, campaign: str, diff: str | None, hypothesis: str, actor: str,
                 parent: uuid.UUID | int | None = None, specialist: str = "human", surface: str | None = None,
                 seen: set[str] | None = None, seeds: list[int] | None = None, priority: int = 0,
                 kind: str | None = None, gpus: int | None = None, **fields: Any) -> Submitted:
    """Propose a trial (numbered atomically), preflight it, and either label its preflight failure
    or request its launch. ``parent`` is a trial id or a trial number in this campaign (None: the
    baseline). ``seen``: the campaign's duplicate keys (``campaign_diff_shas``; computed from the log if
    None).
    ``fields`` go to TrialProposed (expected_delta, prompt_sha, notes, confirms, backend, model,
    usage, cost_usd, seed)."""
    camp = open_campaign(ledger, spec, campaign, actor=actor)
    parent_id: uuid.UUID | None
    if isinstance(parent, int) and not isinstance(parent, bool):
        if parent not in camp.trial_numbers:
            raise ValueError(f"campaign {campaign} has no trial {parent}")
        parent_id = camp.trial_numbers[parent]
    else:
        parent_id = parent
    diff = diff or ""
    empty = not diff.strip()
    if kind is None:
        kind = ("baseline" if parent_id is None else "rerun") if empty else "proposal"
    parent_files = wsp.trial_files(ledger, parent_id, spec) if parent_id else \
        wsp.baseline_for_campaign(ledger, camp.id, spec)
    if seen is None:
        seen = campaign_diff_shas(ledger, camp.id) if not empty else set()
    surf = surface if surface else None
    pf = preflight.check(spec, parent_files, diff, surface=surf, seen=seen, allow_empty=kind != "proposal")
    diff_sha = ledger.artifacts.put(diff) if not empty else None
    n_seeds = int(wsp.sget(spec, "noise", "seeds_per_trial", 1) or 1)
    base_seed = int(fields.get("seed", 0) or 0)
    seeds = list(seeds) if seeds else [base_seed + i for i in range(n_seeds)]
    need_gpus = int(gpus if gpus is not None else wsp.sget(spec, "resources", "gpus_per_trial", 0) or 0)
    for _attempt in range(50):
        camp = ledger.load(Campaign, camp.id)
        number = camp.next_number
        trial = Trial.propose(camp.id, number, actor=actor, specialist=specialist, surface=surface or "",
                              hypothesis=hypothesis, parent_id=parent_id, diff_sha=diff_sha,
                              diff_bytes=len(diff.encode()), kind=kind, **fields)
        camp.register(trial.id, number, specialist, kind, actor)
        trial.preflight(pf.passed, pf.checks, actor=actor, tree_sha=pf.tree_sha)
        if pf.passed:
            trial.request_launch(actor, task=spec.name, seeds=seeds, gpus=need_gpus, priority=priority)
        else:
            assert pf.label is not None
            trial.label_outcome(pf.label, actor, reason=pf.reason)
        try:
            ledger.save(camp, trial)
        except ConflictError:
            time.sleep(0.01 * (_attempt + 1))
            continue
        return Submitted(trial.id, number, camp.id, pf.passed, pf.label, pf.checks, pf.reason, pf.tree_sha)
    raise ConflictError(f"could not register a trial number in campaign {campaign}: too many concurrent submitters")


# -------------------------------------------------------------------------------------------------
# small things


def _open_ledger(url: str | None, attempts: int = 8) -> Ledger:
    """Ledger.open, retried: several runners starting at once on PostgreSQL race on creating the
    tables ("tuple concurrently updated"); a moment later the tables exist."""
    from ledger.store import LedgerError

    delay = 0.1
    for i in range(attempts):
        try:
            return Ledger.open(url)
        except LedgerError as e:
            if i == attempts - 1 or "cannot be opened" not in str(e):
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _process_start(pid: int) -> str:
    """The start time of a process (clock ticks since boot): with the pid, names it uniquely."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _load_spec(t: Any) -> Any:
    if not isinstance(t, (str, Path)):
        return t
    from tasks.spec import load_task

    return load_task(str(t))


def _spec_version(spec: Any) -> str:
    return str(getattr(spec, "version", "") or "")


def _call(spec: Any, name: str) -> str:
    f = getattr(spec, name, None)
    if f is None:
        return ""
    return str(f() if callable(f) else f)


def _command(spec: Any, name: str) -> str:
    v = wsp.sget(spec, "commands", name, "")
    return str(v or "")


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _seeds(given: list[int], n: int) -> list[int]:
    seeds = list(dict.fromkeys(int(s) for s in given)) or [0]
    nxt = max(seeds) + 1
    while len(seeds) < n:
        seeds.append(nxt)
        nxt += 1
    return seeds


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _tail(path: Path, limit: int) -> str:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size > limit:
                head = f.read(limit // 8)
                f.seek(size - (limit - len(head)))
                data = head + b"\n[...]\n" + f.read()
            else:
                data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


def _links_in(root: Path) -> list[str]:
    bad = []
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if not (os.path.isdir(p) and not os.path.islink(p)) and not (
                    os.path.isfile(p) and not os.path.islink(p)):
                bad.append(os.path.relpath(p, root))
            elif os.path.isfile(p) and st.st_nlink > 1:
                bad.append(os.path.relpath(p, root) + " (hard link)")
    return bad[:10]


def _secure_data(data: Path) -> None:
    """Held-out data root-only; the train split readable by everyone (the recipe's user)."""
    os.chmod(data, 0o755)
    held = data / "heldout"
    if held.exists():
        os.chown(held, 0, 0)
        os.chmod(held, 0o700)
    train = data / "train"
    if train.exists():
        for d, _, fs in os.walk(train):
            os.chmod(d, 0o755)
            for f in fs:
                with contextlib.suppress(OSError):
                    p = os.path.join(d, f)
                    os.chmod(p, os.stat(p).st_mode | 0o444)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _describe_gpus(gpus: list[int]) -> str:
    """``cuda:<name> xN`` for the slot's GPUs, from nvidia-smi or, failing that, torch.cuda in a
    child process (so the runner itself never holds a CUDA context)."""
    names: list[str] = []
    exe = shutil.which("nvidia-smi")
    if exe:
        with contextlib.suppress(Exception):
            p = subprocess.run([exe, "--query-gpu=index,name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=20)
            by_index = {}
            for line in p.stdout.splitlines():
                idx, _, name = line.partition(",")
                if idx.strip().isdigit():
                    by_index[int(idx.strip())] = name.strip()
            names = [by_index[g] for g in gpus if g in by_index]
    if len(names) != len(gpus):
        code = ("import torch,json;print(json.dumps([torch.cuda.get_device_name(i) "
                "for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []))")
        with contextlib.suppress(Exception):
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               env={**sandbox.harness_env(), "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))})
            names = json.loads(p.stdout.strip().splitlines()[-1])
    if not names:
        return f"cuda:unknown x{len(gpus)}"
    uniq = list(dict.fromkeys(names))
    return f"cuda:{'+'.join(uniq)} x{len(names)}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
