"""`arledger replay N` and `arledger checkout N DIR` on real campaigns: a replay rebuilds the trial
from the ledger, re-runs it through the runner's sandboxes and evaluator and agrees exactly with the
recorded score (exit 0), also while the machine is busy; a recipe that reads something
nondeterministic disagrees (exit 1); a replay records nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import diffs
from ledger.app import Ledger
from tasks import workspace as wsp
from tasks.knobs import set_knob
from tasks.runner import Runner
from tasks.spec import TaskSpecError, load_task
from tasks.submit import submit_trial
from tests.cli.conftest import World, invoke
from tests.tasks.runner_helpers import open_dir


def _keep(world: World) -> int:
    rows = json.loads(world.run("export", "--out", str(world.root / "x"), "--no-figures", "--no-verify").output
                      and (world.root / "x" / "summary.json").read_text())["campaigns"][0]
    return int(rows["best_trial"])


def _events(world: World) -> int:
    return int(json.loads(world.run("status", "--json").output)["events"])


def test_replay_of_the_incumbent_agrees_exactly_and_records_nothing(fresh: World) -> None:
    n = _keep(fresh)
    before = _events(fresh)
    res = fresh.run("replay", str(n), "--task", str(fresh.task))
    assert res.exit_code == 0, res.output
    assert "AGREE — difference +0; tolerance 0: exact" in res.output
    assert re.search(r"Code: (\w{16}) rebuilt from the ledger; preflight recorded \1 — same", res.output)
    assert "Artifact: byte for byte the same" in res.output
    d = json.loads(fresh.run("replay", str(n), "--json").output)  # the task the campaign's run recorded
    assert d["agree"] and d["score"] == d["recorded_score"] and d["seeds"] == [1]  # the campaign's seed
    assert _events(fresh) == before  # a check, not a trial: nothing appended


def test_replay_of_a_nondeterministic_recipe_disagrees(fresh: World) -> None:
    led = Ledger.open(fresh.url)
    try:
        spec = load_task(fresh.task)
        files = wsp.baseline_files(spec)
        noisy = files["train.py"].replace("VALUE = 1.0\n", "VALUE = 0.5 + int.from_bytes(os.urandom(4), 'big') / 2 ** 40\n")
        sub = submit_trial(led, spec, campaign="noisy", diff=diffs.make_diff(files, {**files, "train.py": noisy}),
                           hypothesis="read the entropy pool", actor="human:test", specialist="opt", surface="opt",
                           seed=7)
        assert sub.passed, sub.reason
        assert Runner(ledger=led, runner_id="t", tasks=[spec], grace_s=1.0).run_until_idle(timeout_s=120) == 1
        number = sub.number
    finally:
        led.close()
    res = fresh.run("replay", f"noisy/{number}", "--task", str(fresh.task))
    assert res.exit_code == 1, res.output
    assert "DISAGREE" in res.output and "differs from the recorded run's" in res.output
    loose = fresh.run("replay", f"noisy/{number}", "--task", str(fresh.task), "--tolerance", "1")
    assert loose.exit_code == 0 and "given (--tolerance)" in loose.output


def test_replay_refuses_what_it_cannot_replay(fresh: World, tmp_path: Path) -> None:
    other = shutil.copytree(fresh.task, tmp_path / "changed")
    (other / "evaluator" / "common.py").write_text('FORMAT = "{value!r}\\n"  # changed\n')
    res = fresh.run("replay", "0", "--task", str(other))
    assert res.exit_code == 2 and "is not the one campaign c1 ran" in res.output and "Traceback" not in res.output
    assert fresh.run("replay", "99").exit_code == 1  # no such trial: the reading commands' message


def test_checkout_writes_the_trials_code_and_refuses_a_full_directory(fresh: World, tmp_path: Path) -> None:
    n = _keep(fresh)
    out = tmp_path / "co"
    res = fresh.run("checkout", str(n), str(out))
    assert res.exit_code == 0 and "the tree its preflight checked" in res.output
    shown = json.loads(fresh.run("show", str(n), "--json").output)
    value = re.search(r"^\+VALUE = (.+)$", shown["diff"], flags=re.M)
    assert value and f"VALUE = {value.group(1)}\n" in (out / "train.py").read_text()
    again = fresh.run("checkout", str(n), str(out))
    assert again.exit_code == 1 and "is not empty" in again.output and "--force" in again.output
    assert fresh.run("checkout", str(n), str(out), "--force").exit_code == 0


# ------------------------------------------------------------------------------------------------
# acceptance: a golf-mini trial replays to the recorded score exactly while the machine is busy


def _short_golf(dest: Path) -> Path:
    """golf-mini with a fixed, small number of steps and a time budget far from binding, so the run
    is bounded by its work whatever the machine's load."""
    try:
        spec = load_task("golf-mini")
    except TaskSpecError as e:
        pytest.skip(f"golf-mini is not available: {e}")
    shutil.copytree(spec.root, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    toml = dest / "task.toml"
    text, n = re.subn(r"^train_s\s*=.*$", "train_s = 600", toml.read_text(), flags=re.M)
    assert n == 1
    toml.write_text(re.sub(r"^eval_s\s*=.*$", "eval_s = 300", text, flags=re.M))
    train = dest / "recipe" / "train.py"
    train.write_text(set_knob(train.read_text(), "MAX_STEPS", 40))
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def test_golf_mini_replays_to_the_recorded_score_exactly_under_cpu_load(tmp_path: Path) -> None:
    task = _short_golf(open_dir(tmp_path) / "golf")
    spec = load_task(task)
    url = f"sqlite:{tmp_path}/l/ledger.db"
    assert invoke("init", "--ledger", url).exit_code == 0
    led = Ledger.open(url)
    try:
        runner = Runner(ledger=led, runner_id="t", tasks=[spec], grace_s=1.0)
        try:
            runner.data.prepare(spec)
        except Exception as e:  # noqa: BLE001
            pytest.skip(f"golf-mini's data cannot be prepared here: {e}")
        sub = submit_trial(led, spec, campaign="g", diff="", hypothesis="baseline", actor="human:test", seeds=[3])
        assert sub.passed, sub.reason
        assert runner.run_until_idle(timeout_s=900) == 1
    finally:
        led.close()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        res = invoke("replay", "0", "--ledger", url, "--task", str(task), "--json")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    d = json.loads(res.output)
    assert res.exit_code == 0, d
    assert d["status"] == "scored" and d["recorded_status"] == "scored" and d["tree_ok"]
    assert d["score"] == d["recorded_score"] and d["difference"] == 0.0 and d["threads"] == 1
    assert d["artifact_identical"] is True
