"""`arledger run`'s live display, rendered from a real campaign while its baseline trains: the trial
in flight against its budget with the step and loss its metric lines reported, the campaign's ETA,
and hypotheses wrapped whole at 80 columns."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from agents.campaign import CampaignConfig, CampaignLoop
from arledger.cli_run import render
from ledger.audit import init_ledger
from tasks.spec import load_task
from tests.agents.test_campaign import toy_task
from tests.tasks.runner_helpers import open_dir


def _text(loop: CampaignLoop, events: list[str], width: int = 80) -> str:
    con = Console(width=width, record=True, color_system=None)
    con.print(render(loop, events))
    return con.export_text()


def test_the_live_display_shows_the_running_trial_and_the_eta(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ARLEDGER_CACHE", str(open_dir(tmp_path / "cache")))
    task = toy_task(open_dir(tmp_path / "toy"), sleep=4.0)
    train = task / "recipe" / "train.py"  # report progress before the long part, as a real recipe does
    train.write_text(train.read_text().replace("    t0 = time.time()\n",
                                               '    print("metric loss=3.25 step=7", flush=True)\n'
                                               "    t0 = time.time()\n"))
    led, _, _ = init_ledger(f"sqlite:{tmp_path}/l/ledger.db")
    frames: list[str] = []
    long = ("a hypothesis long enough that an eighty-column table must wrap it over several lines rather "
            "than cut it off in the middle of a word, which is what the display used to do")

    def tick(lp: CampaignLoop) -> None:
        if any(r.last_step is not None and r.status is None for r in lp.rows()):
            frames.append(_text(lp, [f"12:00:00 #1 opt: {long} — queued"]))
            lp.interrupt()

    try:
        cfg = CampaignConfig(task=str(task), name="live", max_trials=2, seed=1)
        loop = CampaignLoop(led, load_task(task), cfg)
        loop.run(tick=tick, poll_s=0.1)
    finally:
        led.close()
    assert frames, "the baseline's metric points reached the projection while it ran"
    frame = frames[0]
    assert "in flight" in frame and "running" in frame and "loss=3.25" in frame
    assert " / 40s" in frame  # elapsed / budget: train_s 20 + eval_s 20
    assert "ETA ≈" in frame and "at most, by the budgets (3 trials to go)" in frame
    assert "proposals 0/2" in frame
    assert "…" not in frame and all(len(line) <= 80 for line in frame.splitlines())
    flat = " ".join(frame.split())
    assert "than cut it off in the middle of a word, which is what the display used to do" in flat
