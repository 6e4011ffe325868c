"""Early stopping's compute saving: the same replayed proposals, with and without the rule.

    python tools/bench_early_stop.py [--steps 300] [--after-step 50] [--margin 0.1]

Copies golf-mini (its baseline shortened to ``--steps`` steps) twice into a temporary directory,
one copy declaring ``[early_stop] metric = "train_loss"`` against the incumbent, and runs the same
campaign on each: the baseline, then the same replayed proposals (learning-rate and batch-size
moves, every one against the baseline's code, so both arms train the same code) through the real
campaign loop, runner and sandbox, one slot, no confirmation runs. Prints ONE JSON line:

* ``steps_total``, ``evaluated_total``, ``compute_s_total`` — the campaign's work in each arm and
  their ratio, with the rule / without it (below 1: compute saved): training steps run and
  evaluations (deterministic), and trial compute in wall seconds (training + evaluation, what
  ``status`` and the budgets count); ``saved_s`` the difference of the last;
* ``stopped`` — the proposals the rule stopped, each with its step and the compute its full run took
  without the rule; ``false_stops`` — stopped proposals that the arm without the rule kept;
* ``noise_ratio`` — the trials neither arm stopped: their wall compute with the rule / without it
  (the machine's own drift between the arms, against which the wall-second ratio is read: on a
  shared machine it can swamp the saving, which the step figures do not suffer from);
* ``verdicts`` — each proposal's state in both arms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.campaign import CampaignConfig, CampaignLoop  # noqa: E402
from agents.replay_backend import ReplayBackend  # noqa: E402
from ledger import diffs  # noqa: E402
from ledger import events as ev  # noqa: E402
from ledger.audit import init_ledger  # noqa: E402
from projections import Projector  # noqa: E402
from tasks import workspace as wsp  # noqa: E402
from tasks.knobs import set_knob  # noqa: E402
from tasks.spec import load_task  # noqa: E402

GOLF = Path(__file__).resolve().parents[1] / "tasks" / "builtin" / "golf_mini"
MOVES: list[tuple[str, dict[str, object]]] = [
    ("A learning rate of 1e-4 is too timid", {"LR": 1e-4}),
    ("A learning rate of 1.5e-3 learns faster", {"LR": 1.5e-3}),
    ("A learning rate of 3e-2 trains faster still", {"LR": 3e-2}),
    ("A learning rate of 3e-4 is safer", {"LR": 3e-4}),
    ("A learning rate of 2e-3 learns faster", {"LR": 2e-3}),
    ("Batches of 8 give more steps per second", {"BATCH_SIZE": 8}),
    ("A learning rate of 1e-2 is worth a try", {"LR": 1e-2}),
    ("Batches of 64 give cleaner gradients", {"BATCH_SIZE": 64}),
]


@dataclass(frozen=True)
class Row:
    state: str
    compute_s: float  # training + evaluation wall seconds
    steps: int  # training steps run (the last logged train_loss step + 1)
    evaluated: bool
    stopped_step: int | None
    saved_s: float


def task_copy(root: Path, steps: int, rule: str | None) -> Path:
    shutil.copytree(GOLF, root, ignore=shutil.ignore_patterns("__pycache__"))
    train = root / "recipe" / "train.py"
    train.write_text(set_knob(train.read_text(), "MAX_STEPS", steps))
    if rule:
        (root / "task.toml").write_text((root / "task.toml").read_text() + "\n" + rule)
    for d, _, fs in os.walk(root):
        os.chmod(d, 0o755)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    return root


def campaign(work: Path, name: str, steps: int, rule: str | None) -> dict[int, Row]:
    task = task_copy(work / f"task-{name}", steps, rule)
    spec = load_task(task)
    base = wsp.baseline_files(spec)
    replay = work / f"{name}.jsonl"
    with replay.open("w") as f:
        for hyp, knobs in MOVES:
            text = base["train.py"]
            for k, v in knobs.items():
                text = set_knob(text, k, v)
            f.write(json.dumps({"specialist": "opt", "hypothesis": hyp, "parent": 0,
                                "diff": diffs.make_diff(base, {**base, "train.py": text})}) + "\n")
    led, _, _ = init_ledger(f"sqlite:{work}/{name}/ledger.db")
    try:
        cfg = CampaignConfig(task=str(task), name=name, backend=f"replay:{replay}", specialists=["opt"],
                             max_trials=len(MOVES), confirmations=0, baseline_reruns=0, seed=1, slots=1)
        CampaignLoop(led, spec, cfg, backend=ReplayBackend(replay)).run(poll_s=0.1)
        rows = Projector.from_ledger(led).trials.rows(ev.campaign_id_for(name))
        steps: dict[object, int] = {}
        for rec in led.events(types=(ev.MetricsLogged,)):
            assert isinstance(rec.event, ev.MetricsLogged)
            for p in rec.event.points:
                if p.name == "train_loss":
                    steps[rec.event.originator_id] = max(steps.get(rec.event.originator_id, 0), p.step + 1)
    finally:
        led.close()
    return {r.number: Row(r.state, r.compute_s, steps.get(r.trial_id, 0), r.evaluated_at is not None,
                          r.stopped_step, r.compute_saved_s) for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300, help="the baseline's MAX_STEPS (golf-mini ships 1000)")
    ap.add_argument("--after-step", type=int, default=50)
    ap.add_argument("--margin", type=float, default=0.1)
    args = ap.parse_args()
    rule = (f'[early_stop]\nmetric = "train_loss"\nafter_step = {args.after_step}\nmargin = {args.margin}\n'
            'compare = "incumbent"\n')
    with tempfile.TemporaryDirectory(prefix="bench-early-stop-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        on = campaign(work, "rule", args.steps, rule)
        off = campaign(work, "plain", args.steps, None)
    def total(rows: dict[int, Row], what: str) -> float:
        return float(sum(getattr(r, what) for r in rows.values()))

    stopped = [n for n, r in on.items() if r.stopped_step is not None]
    both = [n for n in on if n not in stopped and n in off]
    noise = sum(on[n].compute_s for n in both) / max(1e-9, sum(off[n].compute_s for n in both))
    figures = {}
    for what in ("steps", "evaluated", "compute_s"):
        a, b = total(on, what), total(off, what)
        figures[what] = {"with_rule": round(a, 1), "without": round(b, 1), "ratio": round(a / b, 3) if b else None}
    print(json.dumps({
        "steps": args.steps, "rule": {"after_step": args.after_step, "margin": args.margin},
        "proposals": len(MOVES), **{f"{k}_total": v for k, v in figures.items()},
        "saved_s": round(total(off, "compute_s") - total(on, "compute_s"), 1),
        "estimated_saved_s": round(sum(on[n].saved_s for n in stopped), 1),
        "stopped": [{"trial": n, "step": on[n].stopped_step, "steps_run": on[n].steps,
                     "compute_s": round(on[n].compute_s, 1), "full_run_s": round(off[n].compute_s, 1),
                     "without_rule": off[n].state} for n in stopped],
        "false_stops": [n for n in stopped if off[n].state == "keep"],
        "noise_ratio": round(noise, 3),
        "verdicts": {n: [on[n].state, off[n].state] for n in sorted(on)},
    }))


if __name__ == "__main__":
    main()
