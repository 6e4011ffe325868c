"""Runs bounded by work: a work-bounded task's run that does less than it planned is ``truncated``,
never evaluated or judged, with the work planned and done on its TrialFinished; a recipe that does not
say what it did is truncated too (its baseline closes the campaign); the same short run in a task
written before ``bound`` existed is time-bounded, as before, and scored. Real campaign loop, runner
and sandbox, on the stand-in task."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from agents.campaign import CampaignConfig, CampaignLoop
from agents.replay_backend import ReplayBackend
from arledger.cli import cli
from ledger import events as ev
from ledger.app import Ledger
from ledger.audit import init_ledger
from projections import Projector
from tasks import workspace as wsp
from tasks.spec import load_task
from tests.tasks.runner_helpers import edit, make_task, open_dir

WORK_TRAIN_PY = '''\
"""stand-in recipe bounded by work: PLANNED steps, of which it does DONE."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "evaluator"))
from common import FORMAT  # noqa: E402

# region: opt
VALUE = 1.0
DONE = 10
# endregion
PLANNED = 10
REPORT = True

out = Path(os.environ["ARLEDGER_OUT"])
if REPORT:
    print(f"metric work_planned={PLANNED} step=0", flush=True)
steps = 0
for step in range(PLANNED):
    if step >= DONE:
        break  # stops short, as a recipe that watches the clock would
    steps += 1
if REPORT:
    print(f"metric work_done={steps} step={steps}", flush=True)
(out / "model.txt").write_text(FORMAT.format(value=VALUE))
'''


def _task(root: Path, *, bound: bool, report: bool = True) -> Path:
    task = make_task(root, train_py=WORK_TRAIN_PY if report else WORK_TRAIN_PY.replace("REPORT = True",
                                                                                       "REPORT = False"))
    if bound:
        toml = task / "task.toml"
        toml.write_text(toml.read_text().replace("[budgets]\n", '[budgets]\nbound = "work"\nwork_unit = "steps"\n'))
    return task


def _campaign(tmp_path: Path, name: str, task: Path, moves: list[tuple[str, str]]) -> str:
    spec = load_task(task)
    files = wsp.baseline_files(spec)
    replay = tmp_path / f"{name}.jsonl"
    lines = [{"specialist": "opt", "hypothesis": hyp, "parent": 0,
              "diff": edit(files, "train.py", "VALUE = 1.0\nDONE = 10\n", new)} for hyp, new in moves]
    replay.write_text("".join(json.dumps(x) + "\n" for x in lines))
    url = f"sqlite:{tmp_path}/{name}/ledger.db"
    led, _, _ = init_ledger(url)
    try:
        cfg = CampaignConfig(task=str(task), name=name, backend=f"replay:{replay}", specialists=["opt"],
                             max_trials=len(moves), confirmations=0, seed=1)
        CampaignLoop(led, spec, cfg, backend=ReplayBackend(replay)).run(poll_s=0.05)
    finally:
        led.close()
    return url


MOVES = [("A value of 0.5 in four steps", "VALUE = 0.5\nDONE = 4\n"),
         ("A value of 0.8, all ten steps", "VALUE = 0.8\nDONE = 10\n")]


def _rows(url: str, name: str) -> tuple[dict, dict]:
    led = Ledger.open(url)
    try:
        rows = {r.number: r for r in Projector.from_ledger(led).trials.rows(ev.campaign_id_for(name))}
        finished = _finished(led)
    finally:
        led.close()
    return rows, finished


def _finished(led: Ledger) -> dict[int, ev.TrialFinished]:
    numbers = {r.event.originator_id: r.event.number for r in led.events(types=(ev.TrialProposed,))}
    return {numbers[r.event.originator_id]: r.event for r in led.events(types=(ev.TrialFinished,))}


def test_a_short_run_of_a_work_bounded_task_is_truncated_and_never_judged(tmp_path: Path) -> None:
    task = _task(open_dir(tmp_path / "w") / "task", bound=True)
    url = _campaign(tmp_path, "work", task, MOVES)
    rows, fin = _rows(url, "work")
    base, short, full = rows[0], rows[1], rows[2]
    assert base.label == "scored" and full.label == "scored", (base.reason, full.reason)
    # the short run would have scored best (0.5): it is truncated instead, with no score and no verdict
    assert short.label == "truncated" and short.status == "truncated", (short.label, short.reason)
    assert short.reason == "the run did 4 of the 10 steps it planned (40%): a work-bounded run is scored only when complete"
    assert short.score is None and short.evaluated_at is None and short.verdict is None and not short.kept
    assert full.verdict is not None and full.verdict.verdict == "keep"
    # the work planned and done, on the trial's TrialFinished and its row
    assert (fin[0].work_planned, fin[0].work_done, fin[0].work_unit) == (10, 10, "steps")
    assert (fin[1].work_planned, fin[1].work_done) == (10, 4)
    assert (short.work_planned, short.work_done, short.work_unit) == (10, 4, "steps")
    # show and status name the label like any failure
    shown = CliRunner().invoke(cli, ["show", "work/1", "--ledger", url], catch_exceptions=False)
    assert shown.exit_code == 0 and "truncated" in shown.output and "4 of the 10 steps" in shown.output, shown.output
    status = CliRunner().invoke(cli, ["status", "--ledger", url], catch_exceptions=False)
    assert "1 truncated" in status.output, status.output


def test_a_work_bounded_recipe_that_does_not_report_its_work_is_truncated(tmp_path: Path) -> None:
    task = _task(open_dir(tmp_path / "w") / "task", bound=True, report=False)
    url = _campaign(tmp_path, "silent", task, MOVES[:1])
    rows, _ = _rows(url, "silent")
    assert rows[0].label == "truncated" and "reported no work_planned and work_done" in rows[0].reason
    led = Ledger.open(url)
    try:
        info = Projector.from_ledger(led).trials.campaign(ev.campaign_id_for("silent"))
    finally:
        led.close()
    assert info is not None and info.closed_reason.startswith("the baseline failed (truncated)")


def test_a_spec_without_bound_is_time_bounded_as_before(tmp_path: Path) -> None:
    task = _task(open_dir(tmp_path / "t") / "task", bound=False)
    spec = load_task(task)
    assert (spec.budgets.bound, spec.budgets.bound_declared, spec.budgets.work_bounded) == ("time", False, False)
    url = _campaign(tmp_path, "time", task, MOVES[:1])
    rows, fin = _rows(url, "time")
    assert rows[1].label == "scored" and rows[1].score == 0.5  # four steps of ten: the clock's rule, not work's
    assert fin[1].work_unit == "" and (fin[1].work_planned, fin[1].work_done) == (10, 4)
