"""Early stopping: the ``[early_stop]`` table (read and checked), the rule against a reference curve,
and golf-mini with a declared rule through the real campaign loop, runner and sandbox: a bad-LR
proposal is stopped live and labelled ``stopped_early`` with the step and the two values, a good
one is not, the lineage view tells the specialists, ``status`` and the export show the compute
saved, and the same replayed proposals cost more compute without the rule."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.campaign import CampaignConfig, CampaignLoop
from agents.replay_backend import ReplayBackend
from arledger.cli import cli
from ledger import diffs
from ledger import events as ev
from ledger.app import Ledger
from ledger.audit import init_ledger, verify
from projections import Projector
from projections.lineage_view import render_lineage_view
from tasks import workspace as wsp
from tasks.early_stop import Curve, Watch
from tasks.knobs import set_knob
from tasks.spec import EarlyStop, TaskSpecError, load_task
from tests.tasks.runner_helpers import open_dir
from tests.tasks.test_spec import TOML, make_task

GOLF = Path(__file__).resolve().parents[2] / "tasks" / "builtin" / "golf_mini"
RULE = '[early_stop]\nmetric = "train_loss"\nafter_step = 50\nmargin = 0.1\ncompare = "incumbent"\n'


# ------------------------------------------------------------------------------------------ the spec


def test_the_early_stop_table_is_read_with_its_defaults(tmp_path: Path) -> None:
    spec = load_task(make_task(tmp_path / "a", TOML + "\n" + RULE))
    assert spec.early_stop == EarlyStop(metric="train_loss", after_step=50, margin=0.1, compare="incumbent")
    assert "higher than the incumbent's at that step by more than 0.1" in spec.early_stop.rule()
    bare = load_task(make_task(tmp_path / "b", TOML + '\n[early_stop]\nmetric = "acc"\ndirection = "max"\n'))
    assert bare.early_stop == EarlyStop(metric="acc", after_step=0, margin=0.0, compare="incumbent", direction="max")
    assert load_task(make_task(tmp_path / "c")).early_stop is None


@pytest.mark.parametrize(("table", "message"), [
    ("after_step = 5\n", "early_stop.metric: is missing; fix: add `metric = \"train_loss\"`"),
    ('metric = "loss"\nmargin = -0.1\n', "early_stop.margin: must be zero or positive, got -0.1"),
    ('metric = "loss"\nafter_step = 1.5\n', "early_stop.after_step: must be an int"),
    ('metric = "loss"\ncompare = "best"\n', "early_stop.compare: unknown reference 'best'; fix: use one of: "
     "incumbent, baseline"),
    ('metric = "loss"\ndirection = "down"\n', 'early_stop.direction: must be "min" or "max"'),
    ('metric = "train loss"\n', "early_stop.metric: 'train loss' is not a metric name"),
    ('metric = "loss"\npatience = 3\n', "early_stop.patience: is not a known key"),
])
def test_a_bad_early_stop_table_is_one_message_naming_the_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(TaskSpecError) as info:
        load_task(make_task(tmp_path / "t", TOML + "\n[early_stop]\n" + table))
    assert message in str(info.value) and "task.toml" in str(info.value)


# ------------------------------------------------------------------------------------------ the rule


def _curve(points: dict[int, float], role: str = "incumbent") -> Curve:
    steps = tuple(sorted(points))
    return Curve(trial_id=uuid.uuid4(), number=3, role=role, steps=steps, values=tuple(points[s] for s in steps),
                 compute_s=40.0)


def test_the_rule_fires_once_past_its_step_when_worse_by_more_than_the_margin() -> None:
    rule = EarlyStop(metric="train_loss", after_step=50, margin=0.1)
    w = Watch(rule, _curve({0: 5.5, 25: 3.9, 50: 3.3, 75: 3.0}))
    assert w.see([(25, "train_loss", 9.0)]) is None  # before after_step: never
    assert w.see([(50, "train_loss", 3.39), (50, "other", 99.0)]) is None  # within the margin
    assert w.see([(60, "train_loss", float("nan"))]) is None  # not finite: the classifier's to label
    stop = w.see([(60, "train_loss", 3.45)])  # the reference's last point before 60 is step 50
    assert stop is not None and (stop.step, stop.value, stop.reference_step, stop.reference_value) == (60, 3.45, 50, 3.3)
    assert stop.worse_by == pytest.approx(0.15)
    assert stop.reason.startswith("stopped early at step 60: train_loss 3.45 is worse than the incumbent #3's 3.3 "
                                  "at step 50 (its last point before 60) by 0.15, more than the margin 0.1")
    assert w.see([(75, "train_loss", 9.0)]) is None and w.fired is stop  # fires once


def test_a_maximised_metric_is_worse_when_lower() -> None:
    w = Watch(EarlyStop(metric="acc", margin=0.05, direction="max"), _curve({10: 0.8}, role="baseline"))
    assert w.see([(10, "acc", 0.9)]) is None and w.see([(10, "acc", 0.76)]) is None
    stop = w.see([(12, "acc", 0.7)])
    assert stop is not None and "worse than the baseline #3's 0.8" in stop.reason


# ------------------------------------------------------------------------------------------ golf-mini


def _golf(root: Path, *, rule: bool, steps: int = 100) -> Path:
    """golf-mini, its baseline shortened to ``steps`` steps, with or without the rule."""
    shutil.copytree(GOLF, root, ignore=shutil.ignore_patterns("__pycache__"))
    train = root / "recipe" / "train.py"
    train.write_text(set_knob(train.read_text(), "MAX_STEPS", steps))
    if rule:
        (root / "task.toml").write_text((root / "task.toml").read_text() + "\n" + RULE)
    for d, _, fs in os.walk(root):  # world-readable, as a task directory must be
        os.chmod(d, 0o755)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    return root


def _lr(spec, value: float) -> str:
    files = wsp.baseline_files(spec)
    return diffs.make_diff(files, {**files, "train.py": set_knob(files["train.py"], "LR", value)})


def _campaign(tmp_path: Path, name: str, *, rule: bool) -> tuple[str, Path]:
    task = _golf(open_dir(tmp_path) / f"golf-{name}", rule=rule)
    spec = load_task(task)
    replay = tmp_path / f"{name}.jsonl"
    lines = [{"specialist": "opt", "hypothesis": "A learning rate of 1e-4 is too timid to learn in 100 steps",
              "parent": 0, "diff": _lr(spec, 1e-4)},
             {"specialist": "opt", "hypothesis": "A learning rate of 1.5e-3 learns faster in 100 steps",
              "parent": 0, "diff": _lr(spec, 1.5e-3)}]
    replay.write_text("".join(json.dumps(x) + "\n" for x in lines))
    url = f"sqlite:{tmp_path}/{name}/ledger.db"
    led, _, _ = init_ledger(url)
    try:
        cfg = CampaignConfig(task=str(task), name=name, backend=f"replay:{replay}", specialists=["opt"],
                             max_trials=2, confirmations=0, baseline_reruns=0, seed=1)
        CampaignLoop(led, spec, cfg, backend=ReplayBackend(replay)).run(poll_s=0.05)
    finally:
        led.close()
    return url, task


def test_golf_mini_stops_a_bad_learning_rate_live_and_saves_compute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ARLEDGER_CACHE", str(Path.home() / ".cache" / "arledger"))  # the prepared data, cached
    url, _ = _campaign(tmp_path, "rule", rule=True)
    led = Ledger.open(url)
    try:
        proj = Projector.from_ledger(led)
        rows = {r.number: r for r in proj.trials.rows(ev.campaign_id_for("rule"))}
        base, bad, good = rows[0], rows[1], rows[2]
        assert base.label == "scored" and good.label == "scored", (base.reason, good.reason)
        assert bad.label == "stopped_early", (bad.label, bad.reason)
        stops = [r.event for r in led.events(types=(ev.RunStoppedEarly,))]
        assert len(stops) == 1 and stops[0].originator_id == bad.trial_id
        s = stops[0]
        assert (s.metric, s.reference_number, s.compare, s.margin) == ("train_loss", 0, "incumbent", 0.1)
        assert s.step == 50 and s.value > s.reference_value + 0.1  # the first step the rule looks at
        # the reason gives the step and the two values
        assert bad.reason.startswith(f"stopped early at step 50: train_loss {s.value:.6g} is worse than the "
                                     f"incumbent #0's {s.reference_value:.6g} at step 50")
        # it was stopped, not run out: fewer steps trained, no evaluation, no score
        assert bad.score is None and bad.evaluated_at is None
        work = _work(led)
        assert work[bad.number] < work[base.number] == work[good.number] == 100
        # the saving estimated: what its reference (the baseline here) took, less what it took
        assert s.reference_compute_s == pytest.approx(base.compute_s)
        assert bad.compute_saved_s == pytest.approx(max(0.0, base.compute_s - bad.compute_s))
        assert good.verdict is not None and good.verdict.verdict == "keep"  # the good one ran to its end
        # the next lineage view shows it as feedback
        view = render_lineage_view(proj, "rule", "opt")
        assert "stopped_early: stopped early at step 50: train_loss" in view
        assert verify(led).ok
    finally:
        led.close()
    status = CliRunner().invoke(cli, ["status", "--ledger", url], catch_exceptions=False)
    saved = f"early stopping saved {bad.compute_saved_s:.0f} s of compute"
    assert (saved in status.output) == (bad.compute_saved_s > 0), status.output
    out = tmp_path / "paper"
    assert CliRunner().invoke(cli, ["export", "--ledger", url, "--out", str(out), "--no-figures"]).exit_code == 0
    summary = json.loads((out / "summary.json").read_text())["campaigns"][0]
    assert summary["compute_saved_s"] == pytest.approx(bad.compute_saved_s)

    # the same replayed proposals without the rule: the bad one trains to its end and is evaluated
    plain_url, _ = _campaign(tmp_path, "plain", rule=False)
    led = Ledger.open(plain_url)
    try:
        plain = {r.number: r for r in Projector.from_ledger(led).trials.rows(ev.campaign_id_for("plain"))}
        plain_work = _work(led)
    finally:
        led.close()
    assert plain[1].label == "scored" and plain[1].verdict is not None and plain[1].verdict.verdict == "discard"
    assert plain[2].verdict is not None and plain[2].verdict.verdict == "keep"  # the same keep either way
    # the campaign's compute, counted in work (steps trained, evaluations run), not in seconds (those are
    # tools/bench_early_stop.py's): less with the rule
    assert plain_work[1] == 100 and sum(work.values()) < sum(plain_work.values())
    assert sum(r.evaluated_at is not None for r in rows.values()) == 2
    assert sum(r.evaluated_at is not None for r in plain.values()) == 3


def _work(led: Ledger) -> dict[int, int]:
    """Trial number -> training steps it ran (its last logged train_loss step + 1)."""
    numbers = {r.event.originator_id: r.event.number for r in led.events(types=(ev.TrialProposed,))}
    out: dict[int, int] = {}
    for r in led.events(types=(ev.MetricsLogged,)):
        for p in r.event.points:
            if p.name == "train_loss":
                n = numbers[r.event.originator_id]
                out[n] = max(out.get(n, 0), p.step + 1)
    return out
