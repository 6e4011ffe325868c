"""`arledger runners`, `arledger trial cancel N`, `arledger trial requeue N` through click's
CliRunner: the fleet as the ledger records it (alive, lost, stopped; fits 80 columns), and the two
operator commands with their actor, reason and refusals."""

from __future__ import annotations

import json
import time

from ledger import events as ev
from ledger.aggregates import RunnerRecord, Trial
from ledger.app import Ledger
from projections import Projector
from tasks.presence import Presence
from tests.cli.conftest import World


def _record(led: Ledger, name: str, *, at: float, beats: int, stop: str = "", running=()) -> None:
    rec = led.load(RunnerRecord, ev.runner_id_for(name))
    rec.start(f"runner:{name}", runner=name, host=f"{name}.example", pid=4242, slots=2, gpus=[0, 1], gpus_per_trial=1,
              sandbox="bubblewrap 0.8.0", version="0.test", lease_s=30.0, heartbeat_s=15.0, tasks=[], at=at)
    for i in range(beats):
        rec.beat(f"runner:{name}", running=list(running), labelled=i, at=at + 15 * (i + 1))
    if stop:
        rec.stop(f"runner:{name}", reason=stop, labelled=beats, at=at + 15 * beats + 1)
    led.save(rec)


def test_runners_lists_alive_lost_and_stopped_runners(fresh: World) -> None:
    now = time.time()
    held = ev.HeldTrial(trial_id=ev.trial_id_for(ev.campaign_id_for("c1"), 1), number=1, epoch=1, task="toy")
    with Ledger.open(fresh.url) as led:
        _record(led, "gpu-host-1", at=now - 20, beats=1, running=[held])  # beat 5 s ago: alive
        _record(led, "gpu-host-2", at=now - 200, beats=2)  # last beat 170 s ago > 3 x 15 s: lost
        _record(led, "gpu-host-3", at=now - 100, beats=1, stop="drained: no trial left running")
    res = fresh.run("runners", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["runner"]: r for r in json.loads(res.output)["runners"]}
    assert set(rows) == {"gpu-host-1", "gpu-host-2"}  # stopped ones need --all
    assert rows["gpu-host-1"]["state"] == "alive" and rows["gpu-host-1"]["running"][0]["number"] == 1
    assert rows["gpu-host-2"]["state"] == "lost" and rows["gpu-host-2"]["seconds_since_heartbeat"] > 45
    assert rows["gpu-host-1"]["gpus"] == [0, 1] and rows["gpu-host-1"]["sandbox"] == "bubblewrap 0.8.0"
    every = json.loads(fresh.run("runners", "--json", "--all").output)["runners"]
    stopped = next(r for r in every if r["runner"] == "gpu-host-3")
    assert stopped["state"] == "stopped" and stopped["stop_reason"].startswith("drained")
    text = fresh.run("runners", env={"COLUMNS": "80"}).output
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert "gpu-host-1" in text and "alive" in text and "#1" in text and "lost" in text
    assert "1 alive, 1 lost" in text
    log = fresh.run("log", "--type", "RunnerStarted", "--type", "RunnerStopped", env={"COLUMNS": "250"}).output
    assert "gpu-host-1 on gpu-host-1.example: 2 slot(s), gpus 0,1" in log and "drained: no trial left" in log


def test_runners_help_says_when_a_runner_is_lost(fresh: World) -> None:
    out = fresh.run("runners", "--help").output
    assert "3 heartbeat" in out and "lost" in out
    help_ = fresh.run("runner", "--help").output
    assert "--heartbeat" in help_ and "--lease" in help_ and "reaped sooner" in help_


def test_presence_records_a_live_runner_then_its_stop(fresh: World) -> None:
    with Ledger.open(fresh.url) as led:
        p = Presence(led, "host-x", every_s=0.2, slots=1, gpus=[], gpus_per_trial=0, sandbox="none", lease_s=3,
                     tasks=[], held=list, labelled=lambda: 0)
        p.start()
        time.sleep(0.7)
        mid = {r["runner"]: r for r in json.loads(fresh.run("runners", "--json").output)["runners"]}
        p.stop("drained: no trial left running")
        rec = led.load(RunnerRecord, ev.runner_id_for("host-x"))
    assert mid["host-x"]["state"] == "alive"
    assert sum(isinstance(e, ev.RunnerHeartbeat) for e in rec.history) >= 2
    assert rec.stopped is not None and "drained" in rec.stopped.reason
    assert "host-x" not in fresh.run("runners").output  # stopped: --all shows it


def _submit(w: World, hyp: str) -> int:
    res = w.run("trial", "submit", "--task", str(w.task), "--campaign", "ops", "--diff", "/dev/null",
                "--hypothesis", hyp)
    assert res.exit_code == 0, res.output
    return int(res.output.split("trial ")[-1].split()[0])


def test_cancel_and_requeue_a_queued_trial(fresh: World) -> None:
    n = _submit(fresh, "re-measure the baseline")
    res = fresh.run("trial", "cancel", str(n), "--reason", "wrong seed", "--by", "alice")  # the latest campaign
    assert res.exit_code == 0, res.output
    assert f"trial {n} of campaign ops cancelled by human:alice (it was queued)" in res.output
    with Ledger.open(fresh.url) as led:
        t = led.load(Trial, ev.trial_id_for(ev.campaign_id_for("ops"), n))
        assert t.status == "cancelled" and t.label.actor == "human:alice" and t.label.reason == "wrong seed"
    again = fresh.run("trial", "cancel", str(n), "--reason", "twice", "--campaign", "ops")
    assert again.exit_code == 1 and "already labelled cancelled: nothing to cancel" in again.output
    assert "Traceback" not in again.output
    res = fresh.run("trial", "requeue", str(n), "--reason", "seed fixed", "--by", "alice", "--campaign", "ops")
    assert res.exit_code == 0, res.output
    assert "requeued by human:alice" in res.output and "next claim is epoch 1" in res.output
    with Ledger.open(fresh.url) as led:
        t = led.load(Trial, ev.trial_id_for(ev.campaign_id_for("ops"), n))
        req = [e for e in t.history if isinstance(e, ev.LaunchRequeued)]
        table = Projector.from_ledger(led).trials
    assert t.phase == "queued" and t.status is None
    assert req[-1].actor == "human:alice" and "seed fixed" in req[-1].reason
    row = next(r for r in table.trials.values() if r.number == n and r.campaign == "ops")
    assert row.state == "queued"
    # the old label stays in the log
    assert [e.status for e in t.history if isinstance(e, ev.OutcomeLabelled)] == ["cancelled"]


def test_refusals_name_the_cause(fresh: World) -> None:
    with Ledger.open(fresh.url) as led:
        rows = [r for r in Projector.from_ledger(led).trials.trials.values() if r.campaign == "c1"]
    kept = next(r for r in rows if r.status == "keep")
    res = fresh.run("trial", "cancel", str(kept.number), "--reason", "oops", "--campaign", "c1")
    assert res.exit_code == 1 and "is kept" in res.output and "never cancelled" in res.output
    res = fresh.run("trial", "requeue", str(kept.number), "--reason", "again", "--campaign", "c1")
    assert res.exit_code == 1 and "its score stands" in res.output and "rerun" in res.output
    res = fresh.run("trial", "requeue", "999", "--reason", "x")
    assert res.exit_code == 1 and "has no trial 999" in res.output
    res = fresh.run("trial", "cancel", "1")
    assert res.exit_code == 2 and "--reason" in res.output
    res = fresh.run("trial", "cancel", "1", "--reason", "   ")
    assert res.exit_code == 1 and "needs a reason" in res.output
