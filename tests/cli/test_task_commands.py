"""`arledger tasks list | show | check`, `arledger trial submit` and `arledger runner --once`: a task
checked, a trial submitted by hand and trained by a runner process, and each mistake as one line."""

from __future__ import annotations

import json
from pathlib import Path

from ledger import diffs
from tasks import workspace as wsp
from tasks.spec import load_task
from tests.cli.conftest import World, invoke


def test_tasks_list_show_check(world: World, tmp_path: Path) -> None:
    res = invoke("tasks", "list")
    assert res.exit_code == 0 and "golf-mini" in res.output and "airbench-mini" in res.output
    show = invoke("tasks", "show", "golf-mini")
    assert show.exit_code == 0 and "val_bpb" in show.output
    ok = invoke("tasks", "check", str(world.task))
    assert ok.exit_code == 0 and "checks passed" in ok.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "task.toml").write_text("[task]\nname = 'Bad Name'\n")
    bad = invoke("tasks", "check", str(broken))
    assert bad.exit_code == 1 and "task.name" in bad.output and "Traceback" not in bad.output
    nowhere = invoke("tasks", "show", str(tmp_path / "nowhere"))
    assert nowhere.exit_code == 1 and "built-in tasks" in nowhere.output


def _diff(task: Path, value: str) -> str:
    spec = load_task(task)
    base = wsp.baseline_files(spec)
    return diffs.make_diff(base, {**base, "train.py": base["train.py"].replace("VALUE = 1.0", f"VALUE = {value}")})


def test_trial_submit_then_a_runner_trains_it(fresh: World) -> None:
    d = fresh.root / "my.diff"
    d.write_text(_diff(fresh.task, "0.7"))
    res = fresh.run("trial", "submit", "--task", str(fresh.task), "--diff", str(d), "--hypothesis", "VALUE 0.7",
                    "--campaign", "hand")
    assert res.exit_code == 0 and "queued (campaign hand" in res.output and "baseline snapshot" in res.output
    again = fresh.run("trial", "submit", "--task", str(fresh.task), "--diff", str(d), "--hypothesis", "again",
                      "--campaign", "hand")
    assert again.exit_code == 1 and "duplicate" in again.output  # the same change on the same parent
    run = fresh.run("runner", "--once", "--task", str(fresh.task), "--work-root", str(fresh.root / "work"),
                    "--data-root", str(fresh.root / "data"))
    assert run.exit_code == 0 and "trial(s) labelled" in run.output
    st = json.loads(fresh.run("show", "hand/0", "--json").output)
    # scored by the evaluator; no campaign loop drives "hand", so no verdict: the state says so
    assert st["kind"] == "proposal" and st["label"] == "scored" and st["state"] == "scored"
    assert abs(st["score"] - 0.7) < 1e-9 and st["verdict"] is None


def test_trial_submit_defaults_to_the_latest_campaign_and_its_baseline(fresh: World) -> None:
    d = fresh.root / "my.diff"
    d.write_text(_diff(fresh.task, "0.61"))
    res = fresh.run("trial", "submit", "--task", str(fresh.task), "--diff", str(d), "--hypothesis", "VALUE 0.61")
    # c1 is closed: a trial is not slipped into a finished campaign
    assert res.exit_code == 1 and "campaign c1 is closed" in res.output and "--resume" in res.output


def test_trial_submit_mistakes_are_one_line(fresh: World) -> None:
    args = ["trial", "submit", "--task", str(fresh.task), "--campaign", "hand"]
    missing = fresh.run(*args, "--diff", str(fresh.root / "nope.diff"), "--hypothesis", "x")
    assert missing.exit_code == 1 and "cannot read the diff" in missing.output
    d = fresh.root / "ok.diff"
    d.write_text(_diff(fresh.task, "0.8"))
    empty = fresh.run(*args, "--diff", str(d), "--hypothesis", "  ")
    assert empty.exit_code == 1 and "--hypothesis is empty" in empty.output
    escape = fresh.root / "escape.diff"
    escape.write_text("--- a/../evil.py\n+++ b/../evil.py\n@@ -0,0 +1 @@\n+x\n")
    res = fresh.run(*args, "--diff", str(escape), "--hypothesis", "escape")
    assert res.exit_code == 1 and "illegal_edit" in res.output and "paths_inside" in res.output
    garbage = fresh.root / "garbage.diff"
    garbage.write_text("this is not a diff\n")
    res = fresh.run(*args, "--diff", str(garbage), "--hypothesis", "garbage")
    assert res.exit_code == 1 and "preflight_crash" in res.output
    noparent = fresh.run(*args, "--diff", str(d), "--hypothesis", "x", "--parent", "42")
    assert noparent.exit_code == 1 and "has no trial 42" in noparent.output


def test_runner_flag_errors(world: World) -> None:
    res = world.run("runner", "--gpus", "a,b", "--once")
    assert res.exit_code == 2 and "GPU indices" in res.output
    res = world.run("runner", "--gpus-per-trial", "2", "--gpus", "0", "--once")
    assert res.exit_code == 2 and "needs at least that many --gpus" in res.output
