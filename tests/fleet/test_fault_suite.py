"""The fault suite: a campaign of 200 short trials on PostgreSQL with runners and the campaign
driver as separate `arledger` processes, while the suite

(a) SIGKILLs runners (one holding a trial) and starts new ones,
(b) SIGSTOPs a runner holding a trial past its lease, then resumes it,
(c) restarts the PostgreSQL server mid-campaign (stopped for a few seconds, then started),
(d) SIGKILLs the campaign driver and resumes it (`arledger run --resume`).

At the end: the campaign closed on its trial budget, every trial has exactly one accepted outcome,
every lost attempt is recorded as such (``runner_lost`` at its epoch, then the next epoch), the
stale epoch of the resumed runner was refused (nothing of it after the requeue, its log says the
lease was lost), `arledger audit verify` passes, and the projections this test kept up to date all
along (through the restart) equal a rebuild from scratch. Run it alone with ``pytest tests/fleet``.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ledger import events as ev
from ledger.app import Ledger
from ledger.audit import init_ledger
from ledger.identity import signer_for
from projections.projector import Projector
from tasks.queue import LaunchQueue
from tests.fleet.fleet import ROOT, Fleet
from tests.pgtools import can_restart_postgres, pg_available, pg_schema, restart_postgres, wait_for_postgres
from tests.tasks.runner_helpers import live_under

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.fleet,
    pytest.mark.skipif(not pg_available(), reason="PostgreSQL is not running at 127.0.0.1:5432 (the fault suite "
                       "runs against the local server; CI starts it)"),
    pytest.mark.skipif(can_restart_postgres() is not None, reason=f"the fault suite restarts PostgreSQL: "
                       f"{can_restart_postgres()}"),
    pytest.mark.timeout(900),
]

TRIALS = 200
LEASE = 3.0
RUNNER_EVENTS = (ev.LeaseRenewed, ev.TrialStarted, ev.MetricsLogged, ev.TrialFinished, ev.TrialEvaluated,
                 ev.OutcomeLabelled, ev.RunStoppedEarly)


class Watch:
    """This test's own view of the ledger: an incrementally kept Projector and the launch queue."""

    def __init__(self, url: str, campaign: str):
        self.led = Ledger.open(url)
        self.led.on_outage(lambda m: None)
        self.cid = ev.campaign_id_for(campaign)
        self.proj = Projector()
        self.queue = LaunchQueue(self.led)
        self.catch_ups = 0

    def poll(self) -> None:
        self.proj.catch_up(self.led)
        self.queue.poll()
        self.catch_ups += 1

    def labelled(self) -> int:
        info = self.proj.trials.campaign(self.cid)
        return 0 if info is None else sum(1 for r in self.proj.trials.rows(self.cid) if r.status is not None)

    def holding(self, runners: list[str]) -> list[tuple[str, uuid.UUID, int]]:
        """(runner, trial, epoch) of the live leases held by these runners on started trials."""
        out = []
        for t in self.queue.leased():
            if t.runner in runners and t.phase == "running":
                out.append((t.runner, t.trial_id, t.epoch))
        return out

    def label_at(self, trial_id: uuid.UUID, epoch: int) -> ev.OutcomeLabelled | None:
        return next((e for e in self.led.stream(trial_id) if isinstance(e, ev.OutcomeLabelled) and e.epoch == epoch),
                    None)


def _until(pred, timeout: float, what: str, fleet: Fleet, watch: Watch | None = None) -> None:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if watch is not None:
            watch.poll()
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{fleet.logs()}")


@pytest.fixture
def world(monkeypatch):
    root = Path(tempfile_dir())
    monkeypatch.setenv("ARLEDGER_HOME", str(root / "home"))  # this run's keys only, for every process
    try:
        with pg_schema("fleet_") as url, Fleet(root, url, lease_s=LEASE) as fleet:
            try:
                yield fleet
            finally:
                fleet.close()
                wait_for_postgres()  # a failed restart step must not leave the server down
    finally:
        shutil.rmtree(root, ignore_errors=True)


def tempfile_dir() -> str:
    import tempfile

    d = tempfile.mkdtemp(prefix="arl-fleet-", dir="/tmp")
    os.chmod(d, 0o755)
    return d


def _kill_holding_runner(fleet: Fleet, watch: Watch, rng: random.Random, timings: dict, tag: str,
                         lost: list[tuple[str, uuid.UUID, int]], spare: frozenset[str] = frozenset()) -> None:
    """SIGKILL a runner that holds a started trial (not one of ``spare``), start a new one. Tries a
    few times until a kill lands mid-trial (a trial may finish between reading the ledger and the
    signal)."""

    def candidates() -> list[str]:
        return [n for n in fleet.runners() if n not in fleet.stopped and n not in spare]

    for _ in range(8):
        _until(lambda: bool(watch.holding(candidates())), 60, "a runner holding a trial", fleet, watch)
        victim, trial, epoch = rng.choice(watch.holding(candidates()))
        fleet.kill(victim)
        new = f"r{len([n for n in fleet.procs if n.startswith('r')]) + 1}"
        fleet.runner(new)
        timings[f"{tag}: SIGKILL {victim}, started {new}"] = round(time.time() - timings["t0"], 1)
        got = watch.label_at(trial, epoch)
        if got is None or got.status == "runner_lost":
            lost.append((victim, trial, epoch))
            return
    raise AssertionError("no SIGKILL landed while its runner held a trial")


def test_a_campaign_survives_killed_runners_a_stopped_runner_a_server_restart_and_a_killed_driver(world):
    fleet = world
    rng = random.Random(11)
    led, _, _ = init_ledger(fleet.url)
    signer_for(led, f"runner:{socket.gethostname()}")  # the runners' identity, enrolled once before they race
    led.close()
    timings: dict = {"t0": time.time()}
    for i in range(1, 5):
        fleet.runner(f"r{i}")
    fleet.driver("d1", "--runners", "external", "--task", "tick", "--max-trials", str(TRIALS), "--slots", "6",
                 "--in-flight", "3", "--seed", "7")
    watch = Watch(fleet.url, fleet.campaign)
    killed: list[tuple[str, uuid.UUID, int]] = []

    # (a) a runner SIGKILLed mid-trial, a new one started
    _until(lambda: watch.labelled() >= 20, 240, "20 labelled trials", fleet, watch)
    _kill_holding_runner(fleet, watch, rng, timings, "(a)", killed)

    # (b) a runner SIGSTOPped past its lease while holding a trial, then resumed
    _until(lambda: watch.labelled() >= 50, 240, "50 labelled trials", fleet, watch)
    stopped = None
    for _ in range(10):
        _until(lambda: bool(watch.holding([n for n in fleet.runners()])), 60, "a runner holding a trial", fleet,
               watch)
        name, trial, epoch = rng.choice(watch.holding(fleet.runners()))
        fleet.stop(name)
        if watch.label_at(trial, epoch) is None:
            stopped = (name, trial, epoch)
            break
        fleet.cont(name)  # it finished just before the signal: try another
        time.sleep(0.2)
    assert stopped is not None, "could not stop a runner while it held a trial"
    timings[f"(b): SIGSTOP {stopped[0]}"] = round(time.time() - timings["t0"], 1)
    _until(lambda: watch.label_at(stopped[1], stopped[2]) is not None, 60,
           "the stopped runner's lease to be reaped", fleet, watch)
    assert watch.label_at(stopped[1], stopped[2]).status == "runner_lost"
    time.sleep(1.0)
    fleet.cont(stopped[0])
    timings[f"(b): SIGCONT {stopped[0]} (reaped meanwhile)"] = round(time.time() - timings["t0"], 1)
    _until(lambda: "lease lost" in fleet.log(stopped[0]), 60, "the resumed runner to find its epoch stale", fleet)

    # (c) the PostgreSQL server restarted under everyone (down a few seconds)
    _until(lambda: watch.labelled() >= 80, 240, "80 labelled trials", fleet, watch)
    timings["(c): PostgreSQL stopped"] = round(time.time() - timings["t0"], 1)
    restart_postgres(down_s=4.0)
    timings["(c): PostgreSQL started"] = round(time.time() - timings["t0"], 1)
    at_restart = watch.labelled()

    # (d) the campaign driver SIGKILLed, then resumed
    _until(lambda: watch.labelled() >= at_restart + 25, 240, "trials labelled after the restart", fleet, watch)
    fleet.kill("d1")
    timings["(d): SIGKILL the driver"] = round(time.time() - timings["t0"], 1)
    time.sleep(2.0)
    fleet.driver("d2", "--resume")
    timings["(d): driver resumed"] = round(time.time() - timings["t0"], 1)

    # (a) again, later: another runner killed mid-trial
    _until(lambda: watch.labelled() >= 150, 240, "150 labelled trials", fleet, watch)
    _kill_holding_runner(fleet, watch, rng, timings, "(a')", killed, spare=frozenset({stopped[0]}))

    _until(lambda: fleet.procs["d2"].poll() is not None, 420, "the resumed driver to close the campaign", fleet,
           watch)
    timings["campaign closed"] = round(time.time() - timings["t0"], 1)
    assert fleet.procs["d2"].returncode == 0, fleet.logs()
    assert fleet.procs["d1"].returncode == -9
    survivors = fleet.runners()
    assert stopped[0] in survivors, f"the resumed runner died\n{fleet.log(stopped[0])}"
    fleet.drain()
    for n in survivors:
        assert fleet.procs[n].returncode == 0, f"runner {n} did not drain cleanly\n{fleet.log(n)}"
    assert all(p.poll() is not None for p in fleet.procs.values())
    _until(lambda: not live_under(fleet.root), 30, "no process left in the fleet's directories", fleet)
    # everyone who was up when the server went away waited it out and came back
    assert "reconnected" in fleet.log("d1"), fleet.log("d1")
    assert any("reconnected" in fleet.log(n) for n in survivors), fleet.logs()

    watch.poll()
    led = watch.led
    cid = watch.cid
    info = watch.proj.trials.campaign(cid)
    assert info is not None and info.closed_at is not None and "trial budget" in (info.closed_reason or "")
    rows = watch.proj.trials.rows(cid)
    assert len([r for r in rows if r.kind == "proposal"]) == TRIALS

    # every trial: exactly one accepted outcome; every lost attempt recorded, then a new epoch
    lost_attempts = 0
    for r in rows:
        evs = led.stream(r.trial_id)
        labels = [e for e in evs if isinstance(e, ev.OutcomeLabelled)]
        claims = [e for e in evs if isinstance(e, ev.LaunchClaimed)]
        requeues = [e for e in evs if isinstance(e, ev.LaunchRequeued)]
        accepted = [e for e in labels if e.status != "runner_lost"]
        assert len(accepted) == 1, (r.number, [(e.status, e.epoch) for e in labels])
        assert len(labels) == len(requeues) + 1, (r.number, [(e.status, e.epoch) for e in labels])
        assert sorted(e.epoch for e in labels) == sorted({e.epoch for e in labels}), r.number  # one per epoch
        for c in claims:  # every attempt ends in exactly one label at its epoch: its own, or runner_lost
            at = [e for e in labels if e.epoch == c.epoch]
            assert len(at) == 1, (r.number, c.epoch, [(e.status, e.epoch) for e in labels])
        if claims:
            assert accepted[0].epoch == claims[-1].epoch, r.number
        for q in requeues:
            lost_attempts += 1
            i = evs.index(q)
            assert isinstance(evs[i - 1], ev.OutcomeLabelled) and evs[i - 1].status == "runner_lost"
            assert evs[i - 1].epoch == q.previous_epoch
            # and the next attempt runs at the next epoch
            assert any(isinstance(e, ev.LaunchClaimed) and e.epoch == q.previous_epoch + 1 for e in evs[i + 1:])
            # the stale epoch is refused: nothing of that attempt after its requeue
            stale = [e for e in evs[i + 1:] if isinstance(e, RUNNER_EVENTS) and getattr(e, "epoch", None) ==
                     q.previous_epoch]
            assert not stale, (r.number, [type(e).__name__ for e in stale])
    assert lost_attempts >= 1 + len(killed), lost_attempts
    for _name, trial, epoch in [*killed, stopped]:
        assert watch.label_at(trial, epoch).status == "runner_lost"
    # the stopped runner's own view: it found its lease lost and recorded nothing more
    assert "stale" in fleet.log(stopped[0]) or "lease lost" in fleet.log(stopped[0])

    # the audit verifies; the projections kept all along equal a rebuild from scratch
    v = subprocess.run([sys.executable, "-m", "arledger.cli", "audit", "verify", "--ledger", fleet.url],
                       capture_output=True, text=True, env={**fleet.env}, cwd=ROOT, timeout=300)
    assert v.returncode == 0, v.stdout + v.stderr
    fresh = Projector.from_ledger(led)
    assert watch.catch_ups > 50
    assert watch.proj.cursor == fresh.cursor
    assert watch.proj.state == fresh.state
    led.close()
    timings.pop("t0")
    print("\nfault suite timeline (s):", timings, f"lost attempts {lost_attempts}")
