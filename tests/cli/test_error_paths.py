"""Each mistake issue 12 lists ends in one line naming the cause and the fix, the right exit code, and
nothing written that was not asked for: the ledger's modes, `trial submit`'s defaults, an unknown
task.toml key, `tasks new` and `tasks check --dry-run` refusals."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

from tests.cli.conftest import World, invoke
from tests.fixtures.nanogpt.edits import FIXTURE
from tests.tasks.runner_helpers import open_dir


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_init_and_run_make_a_private_ledger_folder(world: World, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("init").exit_code == 0
    home = tmp_path / ".arledger"
    assert _mode(home) == 0o700 and _mode(home / "ledger.db") == 0o600
    assert _mode(home / "signing.key") == 0o600
    url = f"sqlite:{tmp_path}/r/ledger.db"
    res = invoke("run", "--ledger", url, "--task", str(world.task), "--max-trials", "1", "--quiet",
                 env={"ARLEDGER_CACHE": str(world.root / "cache")})
    assert res.exit_code == 0, res.output
    r = tmp_path / "r"
    assert _mode(r) == 0o700 and _mode(r / "ledger.db") == 0o600 and _mode(r / "signing.key") == 0o600
    arts = r / "artifacts"
    assert _mode(arts) == 0o700 and all(_mode(d) == 0o700 for d in arts.iterdir())
    assert all(_mode(f) == 0o600 for d in arts.iterdir() for f in d.iterdir())


def test_trial_submit_without_parent_builds_on_the_campaigns_baseline(fresh: World) -> None:
    # (its own campaign name: trial code is cached per ledger id and trial id, and every `fresh` copy
    # of the world's ledger has the world's id)
    empty = fresh.root / "empty.diff"
    empty.write_text("")
    base = fresh.run("trial", "submit", "--task", str(fresh.task), "--diff", str(empty), "--hypothesis",
                     "the baseline", "--campaign", "by-hand")
    assert base.exit_code == 0 and "trial 0 queued" in base.output and "the baseline snapshot" in base.output
    shown = fresh.run("show", "by-hand/0").output
    assert "Parent: none ·" in shown
    d = fresh.root / "v.diff"
    src = (fresh.task / "recipe" / "train.py").read_text()
    from ledger import diffs

    d.write_text(diffs.make_diff({"train.py": src}, {"train.py": src.replace("VALUE = 1.0", "VALUE = 0.9")}))
    res = fresh.run("trial", "submit", "--task", str(fresh.task), "--diff", str(d), "--hypothesis",
                    "VALUE 0.9")
    # the latest campaign of the task is "by-hand" (c1 is older), and its baseline trial is the parent
    assert res.exit_code == 0 and "trial 1 queued (campaign by-hand, parent #0)" in res.output
    assert json.loads(fresh.run("show", "by-hand/1", "--json").output)["parent"] == 0


def test_an_unknown_task_key_is_named_before_anything_missing(world: World, tmp_path: Path) -> None:
    task = tmp_path / "t"
    shutil.copytree(world.task, task)
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace("train_s = 20", "train_sec = 20"))
    res = invoke("tasks", "check", str(task))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "budgets.train_sec: is not a known key (did you mean train_s?)" in res.output
    assert "the keys of [budgets] are: preflight_s, train_s, eval_s" in res.output
    assert "is missing" not in res.output
    toml.write_text(toml.read_text().replace("train_sec = 20", "train_s = 20")
                    .replace("[resources]", "[resource]"))
    top = invoke("tasks", "check", str(task))
    assert top.exit_code == 1 and "resource: is not a known key (did you mean resources?)" in top.output


def test_tasks_new_refusals_write_nothing(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("mine")
    res = invoke("tasks", "new", str(busy), "--from", str(FIXTURE))
    assert res.exit_code == 1 and "exists and is not an empty directory" in res.output
    assert sorted(p.name for p in busy.iterdir()) == ["x"]
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    res = invoke("tasks", "new", str(tmp_path / "a"), "--from", str(broken))
    assert res.exit_code == 1 and "line 1" in res.output and "fix the script" in res.output
    assert not (tmp_path / "a").exists()
    missing = invoke("tasks", "new", str(tmp_path / "b"), "--from", str(tmp_path / "nope.py"))
    assert missing.exit_code == 1 and "cannot be read" in missing.output and not (tmp_path / "b").exists()
    bad = invoke("tasks", "new", str(tmp_path / "c"), "--from", str(FIXTURE), "--name", "Bad Name")
    assert bad.exit_code == 1 and "not a valid task name" in bad.output and not (tmp_path / "c").exists()
    nodata = invoke("tasks", "new", str(tmp_path / "d"), "--from", str(FIXTURE), "--data",
                    str(tmp_path / "no.txt"))
    assert nodata.exit_code == 1 and "is not a file" in nodata.output and not (tmp_path / "d").exists()


def test_a_dry_run_of_a_gpu_task_needs_gpus(world: World, tmp_path: Path) -> None:
    task = open_dir(tmp_path / "g")
    shutil.copytree(world.task, task, dirs_exist_ok=True)
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace("gpus_per_trial = 0", "gpus_per_trial = 1"))
    res = invoke("tasks", "check", str(task), "--dry-run")
    assert res.exit_code == 1 and "trains on 1 GPU(s) per trial; give --gpus" in res.output
    assert "Traceback" not in res.output


def test_a_dry_run_reports_a_broken_evaluator(world: World, tmp_path: Path) -> None:
    task = open_dir(tmp_path / "e")
    shutil.copytree(world.task, task, dirs_exist_ok=True)
    ev = task / "evaluator" / "evaluate.py"
    ev.write_text("raise SystemExit('the evaluator is broken: ' + 'no score today')\n")
    res = invoke("tasks", "check", str(task), "--dry-run", env={"ARLEDGER_CACHE": str(world.root / "cache")})
    assert res.exit_code == 1 and "ok   train" in res.output and "FAIL evaluate" in res.output
    assert "dry run failed at evaluate: crash: evaluator failed" in res.output
    assert "no score today" in res.output
