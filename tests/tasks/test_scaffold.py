"""`arledger tasks new` on a plain nanoGPT-style train.py, the documented edits, `tasks check --dry-run`
in the real sandbox, and a short campaign on the result; the dry run's failures as a trial would
record them."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tasks.scaffold import find_knobs, model_classes
from tasks.spec import load_task
from tasks.spec_check import check_task
from tests.cli.conftest import invoke
from tests.fixtures.nanogpt.edits import FIXTURE, apply_documented_edits, corpus
from tests.tasks.runner_helpers import open_dir


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    """The fixture scaffolded with its corpus (nothing edited yet)."""
    root = open_dir(tmp_path / "w")
    data = corpus(root / "corpus.txt")
    res = invoke("tasks", "new", str(root / "gpt"), "--from", str(FIXTURE), "--data", str(data))
    assert res.exit_code == 0, res.output
    return root / "gpt"


def test_knobs_and_model_classes_are_found_in_a_plain_script() -> None:
    text = FIXTURE.read_text()
    knobs = {k.name: k for k in find_knobs(text)}
    assert {"batch_size", "learning_rate", "n_layer", "dropout", "bias"} <= set(knobs)
    assert "device" not in knobs and "text" not in knobs  # not literals
    lr = knobs["learning_rate"]
    assert lr.type == "float" and lr.scale == "log" and lr.range[0] < 3e-3 < lr.range[1]
    assert knobs["n_layer"].type == "int" and knobs["bias"].type == "bool"
    m = model_classes(text)
    assert m.classes == ["GPTConfig", "CausalSelfAttention", "MLP", "Block", "GPT"]
    assert m.builder.strip() == "return GPT(GPTConfig(**config))" and m.globals_read == []


def test_the_scaffold_is_a_valid_task_with_what_to_fill_in(task_dir: Path) -> None:
    for rel in ("task.toml", "recipe/train.py", "evaluator/evaluate.py", "evaluator/model.py",
                "evaluator/prepare.py", "README.md", "data/corpus.txt"):
        assert (task_dir / rel).is_file(), rel
    assert (task_dir / "recipe" / "train.py").read_text() == FIXTURE.read_text()  # copied unchanged
    assert all(r.ok for r in check_task(task_dir))
    toml = (task_dir / "task.toml").read_text()
    assert '# name = "learning_rate"  # train.py line' in toml and load_task(task_dir).knobs() == []
    model = (task_dir / "evaluator" / "model.py").read_text()
    ast.parse(model)
    assert "class GPT(nn.Module)" in model and "return GPT(GPTConfig(**config))" in model
    evaluate = (task_dir / "evaluator" / "evaluate.py").read_text()
    assert "weights_only=True" in evaluate and "pickle" not in evaluate.replace("pickled", "")
    readme = (task_dir / "README.md").read_text()
    for words in ("$ARLEDGER_DATA", "evaluator/model.py", "weights_only=True", "$ARLEDGER_SEED",
                  "metric loss=", "--dry-run", "confirmation run", "reruns"):
        assert words in readme, words


def test_before_the_edits_the_dry_run_fails_at_training_and_says_why(task_dir: Path) -> None:
    res = invoke("tasks", "check", str(task_dir), "--dry-run")
    assert res.exit_code == 1 and "Traceback (most recent" not in res.output.splitlines()[-1]
    assert "ok   prepare" in res.output and "FAIL train" in res.output
    assert "dry run failed at train: crash" in res.output and "input.txt" in res.output


def test_scaffold_plus_documented_edits_passes_the_dry_run_and_runs_a_campaign(task_dir: Path, tmp_path: Path,
                                                                                monkeypatch) -> None:
    apply_documented_edits(task_dir)
    res = invoke("tasks", "check", str(task_dir), "--dry-run", "--seed", "1")
    assert res.exit_code == 0, res.output
    out = res.output
    for step in ("prepare", "workspace", "train", "evaluate"):
        assert f"ok   {step}" in out, step
    assert "of 120s" in out and "of 60s" in out and "val_loss = " in out
    assert "reported loss=" in out and "at step 59" in out
    assert "dry run passed: the baseline scores val_loss" in out
    assert "sandbox: bubblewrap" in out
    monkeypatch.setenv("ARLEDGER_CACHE", str(open_dir(tmp_path / "cache")))
    url = f"sqlite:{tmp_path}/l/ledger.db"
    run = invoke("run", "--ledger", url, "--task", str(task_dir), "--name", "gpt1", "--max-trials", "1",
                 "--quiet")
    assert run.exit_code == 0, run.output
    assert "#0 baseline: baseline val_loss" in run.output
    assert "campaign closed: trial budget reached" in run.output
    st = json.loads(invoke("status", "--json", "--ledger", url).output)["campaigns"][0]
    assert st["task"] == "gpt" and st["trials"] >= 1 and st["start"] is not None
    shown = json.loads(invoke("show", "gpt1/0", "--json", "--ledger", url).output)
    assert shown["label"] == "scored" and shown["last_step"] == 59 and "loss" in shown["last_metrics"]


def test_the_evaluator_refuses_a_pickled_model(task_dir: Path) -> None:
    apply_documented_edits(task_dir)
    train = task_dir / "recipe" / "train.py"
    text = train.read_text()
    start = text.index('torch.save({"config"')
    pickled = 'torch.save(model, os.path.join(os.environ["ARLEDGER_OUT"], "model.pt"))\n'
    train.write_text(text[:start] + pickled)
    res = invoke("tasks", "check", str(task_dir), "--dry-run")
    assert res.exit_code == 1 and "ok   train" in res.output and "FAIL evaluate" in res.output
    assert "not a weights-only checkpoint" in res.output


def test_a_corpus_that_changed_fails_prepare(task_dir: Path) -> None:
    (task_dir / "data" / "corpus.txt").write_text("something else\n")
    res = invoke("tasks", "check", str(task_dir), "--dry-run")
    assert res.exit_code == 1 and "FAIL prepare" in res.output and "dry run failed at prepare" in res.output
    assert "not the pinned" in res.output
