"""The runner: claims queued launches from the ledger and runs each in a slot — scheduling only.

Two ways to use it. The daemon (``arledger runner``) calls :meth:`Runner.run_forever`; the campaign
loop uses the same class in-process::

    runner = Runner(ledger=led, runner_id="local", slots=1)     # or Runner(url, ...)
    runner.run_until_idle()            # returns once nothing it can run is queued or running

**Claiming** is a compare-and-set on the trial's version (``load`` -> ``Trial.claim`` -> ``save``;
a ``ConflictError`` means another runner won: move on). What is claimable comes from a
:class:`~tasks.queue.LaunchQueue` that follows the ledger incrementally. Every runner also
**reaps**: a trial whose lease expired is requeued with ``Trial.requeue`` (which labels the dead
attempt ``runner_lost`` and opens the next epoch). A claimed trial runs in its slot's thread as an
:class:`~tasks.attempt.Attempt` (lease, heartbeat, fenced appends) through
:func:`tasks.pipeline.run_attempt` (code, workspace, training, evaluation, label).

**Claiming ahead**: once a slot's trial begins its last step (its evaluation, or its label), the
runner claims that slot's next trial (leased and heartbeated from the claim on) and starts it the
moment the slot is free, so the label's append, the queue read and the claim do not leave the slot
idle between two trials. Its price: a trial waits, leased, for as long as the evaluation before it
takes (another runner that was idle could have run it meanwhile).

**PostgreSQL outages** (``ledger.reconnect``): while the store is away the loop blocks in the
ledger's retry (no claims, no reaping), running trials go on and their appends wait; for one lease
after the store is back, the reaper leaves expired leases to their holders to renew.

**Signals** (daemon): the first SIGTERM/SIGINT drains — stop claiming, finish the running trials
(and a trial already claimed ahead for a slot: it holds a lease), exit 0; a second one kills the running trials and exits, leaving their leases to expire (another
runner's reaper requeues them).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal as _signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import events as ev
from ledger.aggregates import Campaign, CommandRefused, Trial
from ledger.app import ConflictError, Ledger
from ledger.identity import signer_for
from ledger.lifecycle import LEASED, QUEUED
from ledger.store import LedgerError
from tasks import bundle, bwrap, classify, sandbox
from tasks import workspace as wsp
from tasks.attempt import Attempt, LeaseLost
from tasks.data import cache_dir
from tasks.pipeline import Host, run_attempt
from tasks.prepare import DataCache
from tasks.queue import Launch, LaunchQueue
from tasks.spec import TaskSpec, builtin_tasks, load_task
from tasks.training import Slot
from tasks.workroot import WorkRoot, default_work_root

CLAIM_SPREAD = 8
"""How many trials at the head of the queue (of the same priority) a runner picks among at random."""


@dataclass
class _SlotState:
    index: int
    gpus: tuple[int, ...]
    attempt: Attempt | None = None
    thread: threading.Thread | None = None
    free_since: float = 0.0  # wall time the slot last became free
    claim_op_s: float = 0.0  # how long its latest won claim took (load, claim, compare-and-set save)
    # the trial claimed for this slot while its current one was being labelled (its lease renewed from
    # the claim on): it starts the moment the slot is free, so a slot does not sit idle for the
    # label's append, a queue read and a claim between two trials
    next: Attempt | None = None
    next_hb: threading.Thread | None = None

    def wants_work(self) -> bool:
        if self.thread is None:
            return True
        return self.next is None and self.attempt is not None and self.attempt.finishing.is_set()

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(str(g) for g in self.gpus)


def plan_slots(slots: int, gpus: list[int], gpus_per_trial: int) -> list[_SlotState]:
    """The runner's slots: GPU sets of ``gpus_per_trial`` when given, else ``slots`` sharing the
    GPUs (or CPU-only slots)."""
    if gpus_per_trial > 0:
        if len(gpus) < gpus_per_trial:
            raise ValueError(f"--gpus-per-trial {gpus_per_trial} needs at least that many --gpus (got {gpus})")
        n = min(slots, len(gpus) // gpus_per_trial) if slots else len(gpus) // gpus_per_trial
        return [_SlotState(i, tuple(gpus[i * gpus_per_trial:(i + 1) * gpus_per_trial])) for i in range(n)]
    if gpus:
        n = max(1, slots)
        per = max(1, len(gpus) // n)
        return [_SlotState(i, tuple(gpus[i * per:(i + 1) * per] or [gpus[i % len(gpus)]])) for i in range(n)]
    return [_SlotState(i, ()) for i in range(max(1, slots))]


class Runner:
    def __init__(self, ledger_url: str | None = None, runner_id: str | None = None, *, slots: int = 1,
                 gpus: Iterable[int] = (), gpus_per_trial: int = 0, lease_s: float = 30.0,
                 heartbeat_s: float | None = None, poll_s: float = 0.2, data_root: Path | str | None = None,
                 work_root: Path | str | None = None, tasks: Iterable[TaskSpec | str | Path] | None = None,
                 ledger: Ledger | None = None, log: Callable[[str], None] | None = None, grace_s: float = 3.0,
                 keep_workdirs: bool = False, reap_margin_s: float = 0.5, metrics_every_s: float = 2.0,
                 isolate: bool = True, noop_s: float | None = None):
        base = ledger if ledger is not None else _open_ledger(ledger_url)
        # every event it writes is signed as this host's runner (one identity per host: a restarted
        # runner needs no new enrolment)
        self.ledger = base.with_signer(signer_for(base, f"runner:{socket.gethostname()}"))
        self._own_ledger = ledger is None
        self.ledger.on_outage(lambda msg: self._log(f"runner: {msg}"))  # PostgreSQL: say when it is away
        self.runner_id = runner_id or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_s = float(lease_s)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else self.lease_s / 3
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.keep_workdirs = keep_workdirs
        self.reap_margin_s = reap_margin_s
        self.metrics_every_s = metrics_every_s
        # noop_s (tools/bench_fleet.py): a claimed trial is not run; it holds its lease (heartbeats on)
        # for noop_s seconds and is labelled — the ledger traffic of a trial without its work
        self.noop_s = noop_s
        self._log_fn = log
        self.slots = plan_slots(slots, [int(g) for g in gpus], int(gpus_per_trial))
        for s in self.slots:
            s.free_since = time.time()
        self.queue = LaunchQueue(self.ledger)
        self._variants: dict[str, list[TaskSpec]] = {}  # name -> every --task copy served under that name
        self._builtins: dict[str, TaskSpec | None] = {}
        self._campaign_specs: dict[uuid.UUID, TaskSpec | None] = {}  # campaign -> the copy it runs (None: refused)
        self._refused_trials: set[uuid.UUID] = set()
        self._tasks_filter: set[str] | None = None
        if tasks is not None:
            self._tasks_filter = set()
            for t in tasks:
                spec = t if isinstance(t, TaskSpec) else load_task(t)
                self._variants.setdefault(spec.name, []).append(spec)
                self._tasks_filter.add(spec.name)
        self._wake = threading.Event()
        self._drain = threading.Event()
        self._hard = threading.Event()
        self._slock = threading.Lock()
        self._accel: dict[int, str] = {}
        self.labelled = 0
        self.claimed = 0
        self.races_lost = 0  # claims another runner won first (compare-and-set conflicts)
        self._rng = random.Random(f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}")
        self.history: list[dict[str, Any]] = []  # per attempt: claim/label times (benchmarks, tests)
        self.workroot = WorkRoot(Path(work_root) if work_root else default_work_root(), self._log)
        # the sandbox every command of a trial runs in; bwrap.SandboxUnavailable: refuse to start
        self.sandbox = bwrap.probe() if isolate else None
        self.sandbox_note = (f"recipes run in {self.sandbox.kind} {self.sandbox.version} sandboxes "
                             f"(limits: {self.sandbox.process_limit})" if self.sandbox else
                             "UNSAFE: no sandbox (--unsafe-no-sandbox); recipes run with the runner's rights")
        hidden = [p for p in (self.ledger.home, self.ledger.cfg.path, self.workroot.path,
                              os.environ.get("ARLEDGER_KEY")) if p]
        self.data = DataCache(Path(data_root) if data_root else cache_dir() / "data", self._log, box=self.sandbox,
                              hidden=[Path(p) for p in hidden])

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
            self._log(f"runner {self.runner_id}: {len(self.slots)} slot(s); {self.sandbox_note}")
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
            for a in (s.attempt, s.next):
                if a is not None:
                    a.lost.set()
                    a.stop.set()
        self._wake.set()

    def held(self) -> list[ev.HeldTrial]:
        """The trials this runner holds the lease of right now (its heartbeat names them)."""
        out = []
        for s in self.slots:
            a = s.attempt
            if a is not None and not a.done.is_set():
                task = a.trial.launch.task if a.trial.launch is not None else ""
                out.append(ev.HeldTrial(trial_id=a.trial_id, number=a.number, epoch=a.epoch, task=task))
        return out

    @property
    def hard_stopped(self) -> bool:
        """A second signal (or ``kill``) ended it: its running trials were killed, their leases left."""
        return self._hard.is_set()

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
        return any(s.thread is not None or s.next is not None for s in self.slots)

    def _join_all(self) -> None:
        while True:
            for s in self.slots:
                t = s.thread
                if t is not None:
                    t.join()
            self._collect()
            if not self._busy():
                return

    def _collect(self) -> None:
        with self._slock:
            for s in self.slots:
                if s.thread is not None and not s.thread.is_alive():
                    s.thread.join()
                    s.thread, s.attempt = None, None
                    s.free_since = time.time()
                    if s.next is not None:  # claimed while the last one was labelling: start it now
                        att, hb, s.next, s.next_hb = s.next, s.next_hb, None, None
                        if self._hard.is_set() or att.lost.is_set():
                            att.done.set()  # killed: its lease expires, another runner requeues it
                        else:
                            self._launch(s, att, hb)

    def _tick(self) -> None:
        self._collect()
        try:
            self.queue.poll()
        except Exception as e:  # noqa: BLE001 — the store is down: say so, try again next tick
            self._log(f"runner {self.runner_id}: cannot read the ledger: {e}")
            return
        self._reap()
        if not self._drain.is_set():
            self._claim()

    def _claimable(self) -> bool:
        return any(self._can_serve(t) for t in self.queue.queued())

    def _others_active(self) -> bool:
        ours = {a.trial_id for s in self.slots for a in (s.attempt, s.next) if a is not None}
        return any(t.trial_id not in ours and self._can_serve(t, quiet=True) for t in self.queue.leased())

    # reaping -------------------------------------------------------------------------------
    def _reap(self) -> None:
        now = time.time()
        rc = self.ledger.reconnect
        if rc is not None and rc.settling(self.lease_s + self.reap_margin_s):
            return  # the store was away: the holders renew first (fencing settles any race)
        for t in self.queue.leased():
            if t.lease_expires + self.reap_margin_s >= now:
                continue
            try:
                agg = self.ledger.load(Trial, t.trial_id)
                if agg.phase not in LEASED or agg.lease_expires + self.reap_margin_s >= now:
                    t.lease_expires = max(t.lease_expires, agg.lease_expires)
                    continue
                agg.requeue(f"runner:{self.runner_id}", now)
                self.ledger.save(agg)
                self._log(f"reaped trial {agg.number}: runner {t.runner} lost its lease (epoch {t.epoch}); requeued")
            except (ConflictError, CommandRefused):
                continue
            except Exception as e:  # noqa: BLE001
                self._log(f"reaper: {e}")

    # claiming ------------------------------------------------------------------------------
    def _can_serve(self, t: Launch, quiet: bool = False) -> bool:
        """Whether this runner may take ``t`` at all: its task is one it serves (every task, with no
        --task filter: from a local copy or the ledger's) and a slot has the GPUs it needs."""
        if t.trial_id in self._refused_trials:
            return False
        if self._tasks_filter is not None and t.task not in self._tasks_filter:
            return False
        return not t.gpus or any(len(s.gpus) >= t.gpus for s in self.slots)

    def _builtin(self, name: str) -> TaskSpec | None:
        if name not in self._builtins:
            spec = None
            if name in builtin_tasks():
                try:
                    spec = load_task(name)
                except Exception as e:  # noqa: BLE001 — e.g. a checkout task with no checkout here
                    self._log(f"runner {self.runner_id}: built-in task {name!r} cannot be loaded here ({e})")
            self._builtins[name] = spec
        return self._builtins[name]

    def _spec_of_campaign(self, trial: Trial) -> TaskSpec | None:
        """The copy of the trial's task to run it with (``tasks.bundle.resolve``, once per campaign):
        a --task copy or the built-in one whose content is the campaign's, else the campaign's own
        copy from the ledger. None when refused (said once in the log)."""
        assert trial.launch is not None and trial.proposed is not None
        cid = trial.proposed.campaign_id
        if cid in self._campaign_specs:
            return self._campaign_specs[cid]
        spec: TaskSpec | None = None
        try:
            camp = self.ledger.load(Campaign, cid)
            if camp.opened is None:
                raise bundle.TaskRefused(f"trial {trial.number}'s campaign was never opened")
            spec = bundle.resolve(self.ledger, camp, local=self._variants.get(trial.launch.task, []),
                                  builtin=None if self._tasks_filter is not None else
                                  self._builtin(trial.launch.task),
                                  root=bundle.cache_root(self.workroot.path), log=self._log)
        except bundle.TaskRefused as e:
            self._log(f"runner {self.runner_id}: refusing campaign trials: {e}")
        except Exception as e:  # noqa: BLE001 — the store hiccuped: try again at the next claim
            self._log(f"runner {self.runner_id}: cannot resolve the task of trial {trial.number}: {e}")
            return None
        self._campaign_specs[cid] = spec
        return spec

    def _threads(self, spec: TaskSpec) -> int:
        want = spec.resources.cpu_threads
        fair = max(1, (os.cpu_count() or 1) // max(1, len(self.slots)))
        return max(1, min(want, fair) if want else fair)

    def _claim(self) -> None:
        with self._slock:
            free = [s for s in self.slots if s.wants_work()]
        if not free:
            return
        for t in self._candidates():
            if not free:
                return
            if not self._can_serve(t):
                continue
            slot = next((s for s in free if len(s.gpus) >= t.gpus), None)
            if slot is None:
                continue
            try:
                t0 = time.perf_counter()
                agg = self.ledger.load(Trial, t.trial_id)
                if agg.phase != QUEUED or agg.quarantined:
                    continue
                if self._spec_of_campaign(agg) is None:  # not a copy of the task this runner will run
                    self._refused_trials.add(t.trial_id)
                    continue
                agg.claim(self.runner_id, self.lease_s, time.time())
                self.ledger.save(agg)
                slot.claim_op_s = time.perf_counter() - t0
            except (ConflictError, CommandRefused):
                self.races_lost += 1
                continue  # another runner won
            except Exception as e:  # noqa: BLE001
                self._log(f"runner {self.runner_id}: claim failed: {e}")
                continue
            self.claimed += 1
            att = Attempt(self.ledger, self.runner_id, agg, lease_s=self.lease_s, log=self._log)
            att.on_finishing = self._wake.set  # labelling: time to claim this slot's next trial
            free.remove(slot)
            self._log(f"claimed trial {agg.number} ({t.task}) epoch {agg.epoch} on slot {slot.index}"
                      + (f" gpus {slot.cuda_visible_devices}" if slot.gpus else ""))
            with self._slock:
                current = slot.attempt
                wanted = slot.free_since if slot.thread is None or current is None else current.finishing_at
                att.claim_wait_s = max(0.0, att.claimed_at - wanted)
                att.claim_op_s = slot.claim_op_s
                if slot.thread is None:
                    self._launch(slot, att, None)
                else:  # its trial is labelling: this one holds its lease until the slot is free
                    slot.next = att
                    slot.next_hb = att.start_heartbeat(self.heartbeat_s, self.metrics_every_s, self._hard)
            self._wake.set()

    def _candidates(self) -> list[Launch]:
        """The queue in claim order, its head shuffled among trials of the same priority: runners
        freed at once then try different trials instead of all racing for the first (the loser of a
        race pays a load and an append); the order moves by at most CLAIM_SPREAD places."""
        queued = self.queue.queued()
        head = [t for t in queued[:CLAIM_SPREAD] if queued and t.priority == queued[0].priority]
        self._rng.shuffle(head)
        return head + queued[len(head):]

    def _launch(self, slot: _SlotState, att: Attempt, hb: threading.Thread | None) -> None:
        slot.attempt = att
        slot.thread = threading.Thread(target=self._worker, args=(att, slot, hb), daemon=True,
                                       name=f"trial-{att.number}")
        slot.thread.start()

    # one trial -----------------------------------------------------------------------------
    def _worker(self, att: Attempt, state: _SlotState, hb: threading.Thread | None = None) -> None:
        hb = hb or att.start_heartbeat(self.heartbeat_s, self.metrics_every_s, self._hard)
        att.started_at = time.time()
        tdir: Path | None = None
        try:
            if self.noop_s is not None:
                self._noop(att)
                return
            spec = self._spec_of_campaign(att.trial)
            if spec is None:
                att.label("crash", reason=f"runner error: task {att.trial.launch.task!r} cannot be loaded here")
                return
            slot = Slot(state.index, state.gpus, self._threads(spec))
            tdir = self.workroot.trial_dir(att.trial_id, att.epoch)
            host = Host(self.sandbox, len(self.slots), self.data, self.grace_s,
                        lambda: att.lost.is_set() or self._hard.is_set())
            self._log(f"trial {att.number}: started ({slot.threads} threads"
                      + (f", CUDA_VISIBLE_DEVICES={slot.cuda_visible_devices}" if slot.gpus else "") + ")")
            run_attempt(att, spec, slot, tdir, host, self._accelerator(state))
        except LeaseLost:
            pass
        except Exception as e:  # a runner bug or a broken store: say so in the ledger if we still can
            tb = traceback.format_exc()
            self._log(f"trial {att.number}: runner error: {e}\n{tb}")
            if not att.lost.is_set() and not self._hard.is_set():
                with contextlib.suppress(Exception):
                    att.label("crash", reason=f"runner error (not the recipe's): {type(e).__name__}: {e}",
                              excerpt=classify.crash_excerpt(tb, []))
        finally:
            att.done.set()
            hb.join(timeout=5)
            self._record(att, state)
            if tdir is not None and not self.keep_workdirs:
                with contextlib.suppress(Exception):
                    wsp.remove_tree(tdir)
            self._wake.set()

    def _noop(self, att: Attempt) -> None:
        """A claimed trial that is not run: started, its lease held (renewed by the heartbeat) for
        ``noop_s``, finished, labelled ``cancelled`` with the reason — every step of the ledger's part."""
        rid, ep = self.runner_id, att.epoch
        hold = self.noop_s or 0.0
        att.append(lambda t: t.start(rid, ep, host=socket.gethostname(), accelerator="none", slot=0))
        # "training" for 90% of the hold, "evaluation" for the rest, as a trial's steps go
        if att.stop.wait(0.9 * hold) or att.lost.is_set():
            raise LeaseLost("stopped while holding")
        att.append(lambda t: t.finish(rid, ep, exit_status=0, wall_s=0.9 * hold))
        att.begin_finishing()
        if att.stop.wait(0.1 * hold) or att.lost.is_set():
            raise LeaseLost("stopped while holding")
        att.label("cancelled", reason="no-op launch (runner noop mode: a benchmark of the ledger's part)")

    def _record(self, att: Attempt, state: _SlotState) -> None:
        label = att.trial.label
        if label is None or att.lost.is_set() or label.epoch != att.epoch:
            return
        self.labelled += 1
        self.history.append({"trial_id": str(att.trial_id), "number": att.number, "status": label.status,
                             "score": label.score, "claimed_at": att.claimed_at, "labelled_at": label.at,
                             "started_at": att.started_at, "slot": state.index, "claim_op_s": att.claim_op_s,
                             "claim_wait_s": att.claim_wait_s, "renewals": att.renewals})
        self._log(f"trial {att.number}: {label.status}" + (f" score {label.score:.6g}" if label.score is not None
                                                           else "")
                  + (f" — {label.reason}" if label.reason and label.status != "scored" else ""))

    def _accelerator(self, state: _SlotState) -> str:
        if not state.gpus:
            return "cpu"
        if state.index not in self._accel:
            self._accel[state.index] = describe_gpus(list(state.gpus))
        return self._accel[state.index]


def _open_ledger(url: str | None, attempts: int = 8) -> Ledger:
    """Ledger.open, retried: several runners starting at once on PostgreSQL race on creating the
    tables ("tuple concurrently updated"); a moment later the tables exist."""
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


def describe_gpus(gpus: list[int]) -> str:
    """``cuda:<name> xN`` for a slot's GPUs, from nvidia-smi or, failing that, torch.cuda in a
    child process (so the runner itself never holds a CUDA context)."""
    import json

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
