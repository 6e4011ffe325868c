"""nanochat-mini: data preparation, the split by work, the mini-CORE generator and its scoring,
recipe -> weights -> evaluator.

A tiny driver follows the runtime contract of tasks/SPEC.md: prepare runs harness-side; the recipe
trains in a workspace (the recipe plus the staged, read-only model file) with only the *train*
split in $ARLEDGER_DATA; the evaluator runs from its own copy. The recipe is shrunk (a one-layer
model, a few steps) by rewriting its knobs in the workspace copy.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tasks.data import cache_dir, sha256_file
from tasks.spec import load_task
from tasks.spec_check import check_task
from tests.tasks import evalmods, minidriver

REPO = Path(__file__).resolve().parents[2]
SPEC = load_task("nanochat-mini")
SRC = SPEC.data[0]
TINY = {"N_LAYER": 1, "N_EMBD": 48, "N_HEAD": 2, "MAX_STEPS": 3, "WARMUP_STEPS": 1, "BATCH_SIZE": 4,
        "SEQ_LEN": 64, "LOG_EVERY": 1}


def _evaluator_module(name: str):
    return evalmods.load(SPEC.root / "evaluator", name)


CT = _evaluator_module("core_tasks")
EV = _evaluator_module("evaluate")

def run_prepare(data: Path, cache: Path, offline: bool = False) -> subprocess.CompletedProcess:
    return minidriver.run_prepare(SPEC, data, cache, offline)


def stage_workspace(ws: Path, knobs: dict) -> None:
    minidriver.stage_workspace(SPEC, ws, knobs)


train = minidriver.train


# ---------------------------------------------------------------------------------------- driver




@pytest.fixture(scope="module")
def seeded_cache(tmp_path_factory) -> Path:
    """A private cache holding the sdist, copied from the user's cache when it has it."""
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
def tasks(data):
    return CT.build_tasks(CT.load_heldout(data / "heldout"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, data) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    stage_workspace(tmp / "ws", TINY)
    proc = train(tmp / "ws", data, tmp / "out", 1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "metric train_loss=" in proc.stdout
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["model.json", "model.npz"]
    return tmp / "out"


# ----------------------------------------------------------------------------------------- tests


def test_spec_checks_pass():
    results = check_task(SPEC)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert SPEC.direction == "max" and SPEC.metric == "core"
    assert len(SPEC.noise.reruns) >= 5 and SPEC.noise.sd > 0
    assert {s.name for s in SPEC.specialists} == {"arch", "opt", "data", "sched", "sys"}


def test_prepare_is_idempotent_and_splits_by_work(data, seeded_cache):
    files = sorted(p for p in data.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, sha256_file(p)) for p in files}
    proc = run_prepare(data, seeded_cache, offline=True)
    assert proc.returncode == 0, proc.stderr
    assert {p: (p.stat().st_mtime_ns, sha256_file(p)) for p in files} == before
    held = {p.stem for p in (data / "heldout").glob("*.txt")}
    modern = {p.stem for p in (data / "train" / "modern").glob("*.txt")}
    folio = {p.stem for p in (data / "train" / "folio").glob("*.txt")}
    assert len(held) >= 3 and len(modern) >= 30 and folio
    assert not held & (modern | folio)  # no work, in either spelling, on both sides
    assert folio <= modern
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == SRC.sha256
    assert all(sha256_file(data / rel) == h for rel, h in manifest["files"].items())


def test_prepare_refuses_a_corrupt_download(tmp_path):
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / SRC.filename).write_bytes(b"not the sdist")
    proc = run_prepare(tmp_path / "data", cache, offline=True)
    assert proc.returncode != 0
    assert SRC.sha256 in proc.stderr or "not cached" in proc.stderr
    assert not (tmp_path / "data" / "train").exists()


def test_core_tasks_cover_three_kinds_with_enough_items(tasks, data):
    assert len(tasks) >= 6
    assert {t.kind for t in tasks} == {"mc", "schema", "lm"}
    for t in tasks:
        assert len(t.items) >= 500, t.name
        assert len(t.demos) == CT.N_DEMO_SETS and all(d.count(CT.SEP) == t.k for d in t.demos), t.name
        assert {it.demo for it in t.items} == set(range(CT.N_DEMO_SETS))
        for it in t.items:
            assert len(t.demos[it.demo]) + len(it.head) + max(map(len, it.branches)) <= CT.MAX_TOKENS
            assert it.solved() not in t.demos[it.demo]  # an item is never its own example
        if t.kind != "lm":
            n = len(t.items[0].branches)
            assert all(len(it.branches) == n and len(set(it.branches)) == n for it in t.items), t.name
    # deterministic: the same held-out text gives the same items
    again = CT.build_tasks(CT.load_heldout(data / "heldout"))
    assert [(t.name, t.items, t.demos) for t in again] == [(t.name, t.items, t.demos) for t in tasks]


def test_gold_positions_are_spread_over_every_slot(tasks):
    for t in tasks:
        if t.kind == "lm":
            continue
        n = len(t.items[0].branches)
        counts = Counter(it.gold for it in t.items)
        assert set(counts) == set(range(n)), t.name
        assert min(counts.values()) >= 0.6 * len(t.items) / n, (t.name, counts)


def test_ties_are_broken_at_random_but_reproducibly(tasks):
    picks = [CT.pick([0.0, 0.0, 0.0, 0.0], random.Random(i)) for i in range(200)]
    assert set(picks) == {0, 1, 2, 3}
    assert picks == [CT.pick([0.0, 0.0, 0.0, 0.0], random.Random(i)) for i in range(200)]
    assert {CT.pick([0.0, -1.0, 0.5, 0.5 - 1e-9], random.Random(i)) for i in range(50)} == {2, 3}
    assert CT.pick([0.0, -1.0, 0.5, 0.1], random.Random(0)) == 2

    def constant(requests):  # every option scores the same: only tie-breaking decides
        return [[(0.0, 1, False) for _ in r[2]] for r in requests]

    mc = next(t for t in tasks if t.kind == "mc")
    first = CT.task_accuracy(mc, constant(CT.requests_of(mc)))
    assert first == CT.task_accuracy(mc, constant(CT.requests_of(mc)))  # seeded
    assert abs(first - 0.25) < 0.06


def test_a_uniform_random_scorer_has_centered_accuracy_near_zero(tasks):
    rng = random.Random(123)

    def uniform(requests):
        return [[(rng.random(), 1, rng.random() < 0.0) for _ in r[2]] for r in requests]

    result = CT.evaluate_core(tasks, uniform)
    assert abs(result["core"]) < 0.03
    for name, t in result["tasks"].items():
        assert abs(t["centered"]) < 0.15, name


def test_train_then_evaluate_gives_a_valid_result(tmp_path, run, data):
    stage = tmp_path / "stage"
    for rel in SPEC.evaluator_files:
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SPEC.root / rel, stage / rel)
    result = tmp_path / "result.json"
    cmd = SPEC.commands.evaluate.format(python=sys.executable, eval_dir=stage / "evaluator", runs=run, data=data,
                                        result=result).split()
    proc = subprocess.run([*cmd, "--train-wall-s", "12.5", "--code-bytes", "999"], cwd=stage / "evaluator",
                          capture_output=True, text=True, timeout=300, env={**os.environ, "ARLEDGER_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(result.read_text())
    assert set(res) == {"score", "metrics", "gates", "label", "reason"}
    assert res["label"] is None and res["score"] == res["metrics"]["core"]
    assert math.isfinite(res["metrics"]["val_bpb"]) and 0 < res["metrics"]["val_bpb"] < 9
    assert res["metrics"]["train_s"] == 12.5 and res["metrics"]["code_bytes"] == 999
    per_task = [k for k in res["metrics"] if k.startswith("core_")]
    assert len(per_task) >= 6
    assert -1.0 <= res["score"] <= 1.0


def test_an_untrained_model_scores_about_zero(tmp_path, run, data):
    """Zero-initialised head: uniform predictions, every option ties, the seeded tie-break decides."""
    untrained = tmp_path / "untrained"
    shutil.copytree(run, untrained)
    mod = _evaluator_module("model")
    cfg = mod.check_config(json.loads((untrained / "model.json").read_text()))
    mod.save_weights(mod.GPT(cfg).state_dict(), untrained / "model.npz")
    res = EV.evaluate([untrained], data / "heldout", None, [])
    assert abs(res["score"]) < 0.03
    assert res["metrics"]["val_bpb"] == pytest.approx(8.0, abs=1e-3)  # uniform over 256 bytes


def test_evaluator_refuses_a_bad_config(tmp_path, run, data):
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    cfg = json.loads((bad / "model.json").read_text())
    (bad / "model.json").write_text(json.dumps({**cfg, "n_layer": 1000}))
    with pytest.raises(EV.ConfigError, match="n_layer"):
        EV.evaluate([bad], data / "heldout", None, [])


def test_a_nan_loss_exits_with_diverged(tmp_path, data):
    stage_workspace(tmp_path / "ws", TINY)
    recipe = tmp_path / "ws" / "train.py"
    recipe.write_text(recipe.read_text().replace("\nLR = 1e-3\n", '\nLR = float("inf")\n'))  # poisons step 1
    proc = train(tmp_path / "ws", data, tmp_path / "out", 1)
    assert proc.returncode != 0, proc.stdout[-500:]
    assert "diverged" in proc.stderr + proc.stdout
