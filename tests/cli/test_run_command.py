"""`arledger run`: a short campaign on the stand-in task printed in the words of its states, and the
mistakes a user makes starting one, each one line with nothing created."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.conftest import World, invoke


def test_run_prints_each_trial_in_the_words_of_its_state(world: World, tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path}/l/ledger.db"
    res = invoke("run", "--ledger", url, "--task", str(world.task), "--name", "r1", "--max-trials", "3",
                 "--quiet", "--seed", "1", env={"ARLEDGER_CACHE": str(world.root / "cache")})
    assert res.exit_code == 0, res.output
    out = res.output
    assert "#0 baseline: baseline value 1" in out
    assert re.search(r"#\d+ opt: candidate value [\d.]+ .*awaiting 1 confirmation", out)
    assert re.search(r"#\d+ opt: confirmation of #\d+ value", out)
    assert re.search(r"#\d+ opt: keep value [\d.]+ \(mean of 2 run\(s\)\)", out)
    assert re.search(r"#\d+ opt: discard value", out)
    assert " PROMOTED" not in out and "relabel" not in out
    assert "campaign closed: trial budget reached (3 proposals)" in out
    assert "next:  arledger status" in out and "arledger export r1 --out paper/" in out
    resumed = invoke("run", "--ledger", url, "--resume", "--name", "r1", "--quiet")
    assert resumed.exit_code == 0  # closed campaigns resume into an immediate close: nothing more to do


def test_run_measures_the_noise_on_baseline_reruns_and_says_so(world: World, tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path}/l/ledger.db"
    res = invoke("run", "--ledger", url, "--task", str(world.task), "--name", "n1", "--max-trials", "1",
                 "--baseline-reruns", "2", "--quiet", "--seed", "1", env={"ARLEDGER_CACHE": str(world.root / "cache")})
    assert res.exit_code == 0, res.output
    out = res.output
    assert "#1 baseline: rerun of #0 value 1" in out and "#2 baseline: rerun of #0 value 1" in out
    # the stand-in's score does not move with the seed: measured sd 0, pooled with the declared 0.001
    assert re.search(r"noise: sd [\d.e-]+ \(measured 0 over 3 runs in 1 group\(s\), pooled with the declared "
                     r"figure\); keep threshold now 0\.01", out), out
    assert out.index("rerun of #0") < out.index("#3 opt:")  # the reruns come before the first proposal
    bad = invoke("run", "--ledger", url, "--task", str(world.task), "--baseline-reruns", "-1", "--quiet")
    assert bad.exit_code == 2 and "--baseline-reruns" in bad.output


def test_run_mistakes_are_one_line_and_create_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = invoke("run", "--resume")
    assert res.exit_code == 1 and "run `arledger init` first" in res.output
    assert not (tmp_path / ".arledger").exists()
    url = f"sqlite:{tmp_path}/l/ledger.db"
    bad_task = invoke("run", "--ledger", url, "--task", "no-such-task", "--quiet")
    assert bad_task.exit_code == 1 and "built-in tasks" in bad_task.output and "Traceback" not in bad_task.output
    bad_backend = invoke("run", "--ledger", url, "--backend", "gpt", "--quiet")
    assert bad_backend.exit_code == 1 and "unknown backend 'gpt'" in bad_backend.output
    bad_arm = invoke("run", "--ledger", url, "--arm", "generic:x", "--quiet")
    assert bad_arm.exit_code == 1 and "generic:N" in bad_arm.output
    no_key = invoke("run", "--ledger", url, "--backend", "anthropic", "--quiet", env={"ANTHROPIC_API_KEY": ""})
    assert no_key.exit_code == 1 and "ANTHROPIC_API_KEY" in no_key.output and "Traceback" not in no_key.output
    assert len(no_key.output.strip().splitlines()) == 1
    bad_team = invoke("run", "--ledger", url, "--specialists", "opt,nobody", "--quiet")
    assert bad_team.exit_code == 1 and "has no specialist nobody" in bad_team.output
    # a campaign that cannot start writes nothing: no ledger was asked for but the campaign's
    assert not (tmp_path / "l").exists()
    assert invoke("init", "--ledger", url).exit_code == 0
    nothing = invoke("run", "--ledger", url, "--resume", "--name", "ghost", "--quiet")
    assert nothing.exit_code == 1 and "no campaign ghost" in nothing.output
