"""Runner faults: a runner killed mid-trial, a stale epoch, SIGTERM draining. Real processes, a real
SQLite ledger, the `arledger runner` command itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ledger import events as ev
from ledger.aggregates import StaleEpoch, Trial
from ledger.app import Ledger
from ledger.audit import init_ledger, verify
from ledger.lifecycle import LABELLED, QUEUED, RUNNING
from tasks import workspace as wsp
from tasks.runner import Runner
from tasks.spec import load_task
from tasks.submit import submit_trial
from tests.tasks.runner_helpers import edit, kill_under, live_under, make_task


@pytest.fixture
def world():
    d = Path(tempfile.mkdtemp(prefix="arl-faults-", dir="/tmp"))
    os.chmod(d, 0o755)
    for sub in ("ledger", "data", "work"):
        (d / sub).mkdir()
    yield d
    kill_under(d)  # orphans of a runner a test killed on purpose
    shutil.rmtree(d, ignore_errors=True)


def _setup(world: Path):
    task = make_task(world / "task")
    spec = load_task(task)
    url = f"sqlite:{world}/ledger/ledger.db"
    led, _, _ = init_ledger(url)
    return task, spec, url, led


def _sleepy(spec, value: str, sleep: float) -> str:
    base = wsp.baseline_files(spec)
    return edit(base, "train.py", "VALUE = 1.0\nSLEEP = 0.0\n", f"VALUE = {value}\nSLEEP = {sleep}\n")


def _cli_runner(world: Path, url: str, task: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "arledger.cli", "runner", "--ledger", url, "--task", str(task),
           "--data-root", str(world / "data"), "--work-root", str(world / "work"), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def _wait_for(pred, timeout: float = 60.0, what: str = "condition") -> None:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _started(url: str, trial_id) -> bool:
    led = Ledger.open(url)
    try:
        return any(isinstance(e, ev.TrialStarted) for e in led.stream(trial_id))
    finally:
        led.close()


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def test_killed_runner_is_reaped_and_trial_completes_once(world: Path) -> None:
    task, spec, url, led = _setup(world)
    sub = submit_trial(led, spec, campaign="c", diff=_sleepy(spec, "0.7", 3.0), hypothesis="slow", actor="human:t")
    assert sub.passed
    a = _cli_runner(world, url, task, "--lease", "2", "--runner-id", "A")
    try:
        _wait_for(lambda: _started(url, sub.trial_id), what="runner A to start the trial")
        _wait_for(lambda: live_under(world / "work"), what="the recipe to run")
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == -signal.SIGKILL
    # A's sandbox dies with A (bubblewrap's --die-with-parent, then its pid namespace) ...
    _wait_for(lambda: live_under(world / "work") == [], timeout=10, what="A's recipe to die with A")
    assert list((world / "work").glob("t-*"))  # ... its trial dir stays
    b = Runner(ledger=led, runner_id="B", tasks=[task], lease_s=2, data_root=world / "data",
               work_root=world / "work", grace_s=1)
    assert not list((world / "work").glob("t-*"))  # ... until the next runner on the host cleaned up after A
    assert b.run_until_idle(wait_for_others=True, timeout_s=90) == 1
    events = led.stream(sub.trial_id)
    claims = _of(events, ev.LaunchClaimed)
    assert [(c.runner, c.epoch) for c in claims] == [("A", 1), ("B", 2)]
    labels = _of(events, ev.OutcomeLabelled)
    assert [(x.status, x.epoch) for x in labels] == [("runner_lost", 1), ("scored", 2)]
    assert labels[0].actor == "runner:B" and "A" in labels[0].reason
    requeues = _of(events, ev.LaunchRequeued)
    assert len(requeues) == 1 and requeues[0].previous_runner == "A" and requeues[0].previous_epoch == 1
    assert len(_of(events, ev.TrialStarted)) == 2  # one per attempt
    finished = _of(events, ev.TrialFinished)
    assert len(finished) == 1 and finished[0].epoch == 2  # completed exactly once
    assert len(_of(events, ev.TrialEvaluated)) == 1
    trial = led.load(Trial, sub.trial_id)
    assert trial.phase == LABELLED and trial.status == "scored" and trial.label.score == pytest.approx(0.7)
    assert verify(led).ok


def test_stale_epoch_events_are_refused(world: Path) -> None:
    task, spec, url, led = _setup(world)
    sub = submit_trial(led, spec, campaign="c", diff=_sleepy(spec, "0.6", 2.5), hypothesis="slow", actor="human:t")
    # runner A never renews its 1 s lease and never reaps; B takes the trial over
    a = Runner(ledger=led, runner_id="A", tasks=[task], lease_s=1.0, heartbeat_s=1000, reap_margin_s=1e9,
               data_root=world / "data", work_root=world / "work", grace_s=1)
    ta = threading.Thread(target=a.run_until_idle, kwargs={"timeout_s": 60})
    ta.start()
    try:
        _wait_for(lambda: _started(url, sub.trial_id), what="runner A to start the trial")
        b = Runner(ledger=Ledger.open(url), runner_id="B", tasks=[task], lease_s=5, data_root=world / "data",
                   work_root=world / "work", grace_s=1)
        assert b.run_until_idle(wait_for_others=True, timeout_s=60) == 1
    finally:
        ta.join(timeout=60)
    assert not ta.is_alive()
    assert a.labelled == 0  # A's finish was refused: it recorded nothing after losing the lease
    events = led.stream(sub.trial_id)
    requeue_at = next(i for i, e in enumerate(events) if isinstance(e, ev.LaunchRequeued))
    assert all(not e.actor.endswith(":A") for e in events[requeue_at:]), [(e.type, e.actor) for e in events]
    finished = _of(events, ev.TrialFinished)
    assert [f.epoch for f in finished] == [2]
    # the aggregate fences a stale runner directly, too
    t = led.load(Trial, sub.trial_id)
    for attempt in (lambda: t.renew("A", 1, 30, time.time()), lambda: t.finish("A", 1, exit_status=0),
                    lambda: t.log_metrics("A", 1, [ev.MetricPoint(1, "loss", 1.0)]),
                    lambda: t.label_outcome("scored", "runner:A", runner="A", epoch=1)):
        with pytest.raises(StaleEpoch):
            attempt()
    assert verify(led).ok


def test_sigterm_drains_then_exits_zero(world: Path) -> None:
    task, spec, url, led = _setup(world)
    # both train long enough that the signal lands before the running one's evaluation, when the runner
    # would claim the slot's next trial ahead (a trial claimed ahead before the signal is run, not dropped);
    # runners spread their claims over the head of the queue, so either may be the one that starts
    subs = [submit_trial(led, spec, campaign="c", diff=_sleepy(spec, v, 8.0), hypothesis=h, actor="human:t")
            for v, h in (("0.5", "one"), ("0.4", "two"))]
    p = _cli_runner(world, url, task, "--lease", "10", "--runner-id", "D")
    try:
        _wait_for(lambda: any(_started(url, s.trial_id) for s in subs), what="a trial to start")
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out
    assert "draining" in out
    ran, waiting = sorted((led.load(Trial, s.trial_id) for s in subs), key=lambda t: t.phase == QUEUED)
    assert ran.status == "scored" and ran.label.score in (pytest.approx(0.5), pytest.approx(0.4))  # it finished
    assert waiting.phase == QUEUED and waiting.attempts == 0  # nothing new was claimed
    assert verify(led).ok


def test_second_sigterm_kills_trials_and_leaves_the_lease(world: Path) -> None:
    task, spec, url, led = _setup(world)
    sub = submit_trial(led, spec, campaign="c", diff=_sleepy(spec, "0.3", 60.0), hypothesis="long", actor="human:t")
    p = _cli_runner(world, url, task, "--lease", "3", "--runner-id", "E")
    try:
        _wait_for(lambda: _started(url, sub.trial_id), what="the trial to start")
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        t0 = time.time()
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert time.time() - t0 < 15
    assert p.returncode == 0, out
    t = led.load(Trial, sub.trial_id)
    assert t.phase == RUNNING and t.status is None  # nothing recorded after the kill; the lease will expire
    assert live_under(world / "work") == []
    # another runner's reaper (one that serves no task, so it only reaps) requeues it on expiry
    c = Runner(ledger=led, runner_id="C", tasks=[], data_root=world / "data", work_root=world / "work")
    _wait_for(lambda: (c._tick() or led.load(Trial, sub.trial_id).phase == QUEUED), timeout=20, what="the reaper")
    events = led.stream(sub.trial_id)
    assert any(isinstance(e, ev.OutcomeLabelled) and e.status == "runner_lost" and e.epoch == 1 for e in events)
    assert verify(led).ok
