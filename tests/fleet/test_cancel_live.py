"""Cancel and requeue a trial while a real `arledger runner` process trains it: the runner learns it
at its next lease renewal (its fenced append is refused), kills the run and records nothing more;
a requeued trial is claimed again with a new epoch; the runner's heartbeats name what it holds."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from arledger.cli import cli
from ledger import events as ev
from ledger.app import Ledger
from ledger.audit import init_ledger, verify
from tasks import workspace as wsp
from tasks.spec import load_task
from tasks.submit import submit_trial
from tests.fleet.helpers import runner_proc, stream, wait_for
from tests.tasks.runner_helpers import edit, live_under, make_task, world_dir


@pytest.fixture
def world():
    yield from world_dir("arl-cancel-")


def _cli(url: str, *args: str) -> str:
    res = CliRunner().invoke(cli, [*args, "--ledger", url], catch_exceptions=False, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res.output


def _started(url: str, tid, epoch: int) -> bool:
    return any(isinstance(e, ev.TrialStarted) and e.epoch == epoch for e in stream(url, tid))


def test_cancel_and_requeue_reach_the_runner_that_trains_the_trial(world: Path) -> None:
    task = make_task(world / "task", train_s=300)
    spec = load_task(task)
    url = f"sqlite:{world}/ledger/ledger.db"
    led, _, _ = init_ledger(url)
    try:
        diff = edit(wsp.baseline_files(spec), "train.py", "SLEEP = 0.0", "SLEEP = 240.0")
        sub = submit_trial(led, spec, campaign="c", diff=diff, hypothesis="slow", actor="human:t")
    finally:
        led.close()
    tid, n = sub.trial_id, str(sub.number)
    work = world / "host" / "work"
    log = world / "runner.log"
    p = runner_proc(world / "host", url, "--runner-id", "A", "--lease", "3", "--heartbeat", "1", log=log)
    try:
        wait_for(lambda: _started(url, tid, 1), what="the runner to start the trial")
        wait_for(lambda: live_under(work), what="the recipe to run")
        wait_for(lambda: any(r["running"] for r in json.loads(_cli(url, "runners", "--json"))["runners"]),
                 what="a heartbeat naming the trial")
        runners = json.loads(_cli(url, "runners", "--json"))["runners"]
        assert [(r["runner"], r["state"], [t["number"] for t in r["running"]]) for r in runners] == \
            [("A", "alive", [sub.number])]

        out = _cli(url, "trial", "cancel", n, "--reason", "wrong data", "--by", "ops")
        assert "runner A stops it at its next lease renewal" in out
        wait_for(lambda: not live_under(work), timeout=30, what="the runner to kill the cancelled run")

        _cli(url, "trial", "requeue", n, "--reason", "data fixed", "--by", "ops")  # a cancelled trial: again
        wait_for(lambda: _started(url, tid, 2), what="the runner to claim it again, epoch 2")
        wait_for(lambda: live_under(work), what="the second run")
        out = _cli(url, "trial", "requeue", n, "--reason", "move it", "--by", "ops")  # a live attempt
        assert "attempt epoch 2 of runner A ended" in out
        wait_for(lambda: _started(url, tid, 3), what="epoch 3")
        wait_for(lambda: live_under(work), what="the third run")
        _cli(url, "trial", "cancel", n, "--reason", "enough", "--by", "ops")
        wait_for(lambda: not live_under(work), timeout=30, what="the third run to be killed")
        assert p.poll() is None  # the runner lives on
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
    text = log.read_text()
    assert text.count("lease lost") >= 3, text
    events = stream(url, tid)
    assert [(e.status, e.epoch, e.actor) for e in events if isinstance(e, ev.OutcomeLabelled)] == [
        ("cancelled", 1, "human:ops"), ("cancelled", 2, "human:ops"), ("cancelled", 3, "human:ops")]
    assert [e.epoch for e in events if isinstance(e, ev.LaunchClaimed)] == [1, 2, 3]
    assert not [e for e in events if isinstance(e, ev.TrialFinished | ev.TrialEvaluated)]  # nothing more recorded
    with Ledger.open(url) as led:
        assert verify(led).ok
    runners = json.loads(_cli(url, "runners", "--json", "--all"))["runners"]
    assert runners[0]["state"] == "stopped" and runners[0]["stop_reason"].startswith("drained")


def test_a_crashed_trial_requeued_runs_again_at_the_next_epoch(world: Path) -> None:
    from projections import Projector
    from tasks.runner import Runner

    task = make_task(world / "task")
    spec = load_task(task)
    url = f"sqlite:{world}/ledger/ledger.db"
    led, _, _ = init_ledger(url)
    try:
        diff = edit(wsp.baseline_files(spec), "train.py", "    t0 = time.time()\n",
                    "    t0 = time.time()\n    raise SystemExit(3)\n")
        sub = submit_trial(led, spec, campaign="c", diff=diff, hypothesis="crashes", actor="human:t")
        runner = Runner(ledger=led, runner_id="R", tasks=[task], lease_s=5, work_root=world / "work",
                        data_root=world / "data", grace_s=1)
        assert runner.run_until_idle(timeout_s=120) == 1
        _cli(url, "trial", "requeue", str(sub.number), "--reason", "flaky host", "--by", "ops")
        assert runner.run_until_idle(timeout_s=120) == 1
        events = led.stream(sub.trial_id)
        row = next(r for r in Projector.from_ledger(led).trials.trials.values() if r.trial_id == sub.trial_id)
    finally:
        led.close()
    assert [(e.status, e.epoch) for e in events if isinstance(e, ev.OutcomeLabelled)] == [("crash", 1), ("crash", 2)]
    req = [e for e in events if isinstance(e, ev.LaunchRequeued)]
    assert len(req) == 1 and req[0].previous_runner == "R" and req[0].previous_epoch == 1 and req[0].actor == "human:ops"
    assert row.attempts == 2 and row.epoch == 2 and row.label == "crash"
