"""Measure a task's run-to-run noise: its baseline trained on seeds 1..N through the real runner.

    python tools/measure_noise.py TASK --seeds N [--first 1] [--slots 1] [--hog-check]

Opens a campaign on a fresh ledger in a temporary directory, submits the task's baseline once per
seed (trial 0 on seed ``--first``, then reruns of it; a task with ``seeds_per_trial`` > 1 gets that
many consecutive seeds per trial), and lets an in-process runner train and score them in the same
sandboxes and with the same threads as a campaign's. Prints ONE JSON line: each trial's seeds,
label, score and training wall seconds, the scores' mean and sample standard deviation (``sd``,
what ``[noise] sd`` holds; ``values`` is what ``[noise] reruns`` holds) and the machine's load.

``--hog-check`` then trains the first seed again while a CPU hog (``python -c "while 1: pass"``)
runs beside it and reports whether the score came out the same (``deterministic``): for a task
bounded by work with ``ARLEDGER_THREADS=1`` it must, whatever the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.local_runner import LocalRunner  # noqa: E402
from ledger import events as ev  # noqa: E402
from ledger.audit import init_ledger  # noqa: E402
from ledger.lifecycle import LABELLED  # noqa: E402
from projections import Projector  # noqa: E402
from tasks.spec import load_task  # noqa: E402
from tasks.submit import submit_trial  # noqa: E402

CAMPAIGN = "noise"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", help="a built-in task name or a task directory")
    ap.add_argument("--seeds", type=int, default=5, help="baseline trials, each on its own seed(s)")
    ap.add_argument("--first", type=int, default=1, help="the first seed")
    ap.add_argument("--slots", type=int, default=1, help="trials trained at once (1: each alone)")
    ap.add_argument("--hog-check", action="store_true",
                    help="train the first seed again beside a CPU hog and compare the scores")
    ap.add_argument("--keep", default=None, help="keep the ledger in this directory")
    args = ap.parse_args()
    spec = load_task(args.task)
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="measure-noise-"))
    tmp.mkdir(parents=True, exist_ok=True)
    led, _, _ = init_ledger(f"sqlite:{tmp}/ledger.db", tmp / "signing.key")
    spt = spec.noise.seeds_per_trial
    seed_sets = [[args.first + i * spt + j for j in range(spt)] for i in range(args.seeds)]
    load0 = os.getloadavg()
    t0 = time.time()
    rows = run_trials(led, spec, seed_sets, args.slots)
    scored = [r for r in rows if r.scored and r.score is not None]
    values = [round(r.score, 6) for r in scored]  # type: ignore[arg-type]
    out: dict[str, object] = {
        "task": f"{spec.name}@{spec.version}", "metric": spec.metric, "bound": spec.budgets.bound,
        "work_unit": spec.budgets.work_unit, "threads": spec.resources.cpu_threads, "slots": args.slots,
        "trials": [{"seeds": s, "label": r.label, "score": r.score, "train_wall_s": round(r.wall_s, 1),
                    "work": [r.work_done, r.work_planned]} for s, r in zip(seed_sets, rows, strict=True)],
        "values": values, "n": len(values),
        "mean": round(statistics.fmean(values), 6) if values else None,
        "sd": round(statistics.stdev(values), 6) if len(values) > 1 else None,
        "wall_s": round(time.time() - t0, 1), "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    if args.hog_check and rows and rows[0].score is not None:
        hog = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
        try:
            time.sleep(1.0)
            again = run_trials(led, spec, [seed_sets[0]], 1, first=False)[0]
        finally:
            hog.kill()
            hog.wait()
        out["hog_check"] = {"seeds": seed_sets[0], "first": rows[0].score, "beside_hog": again.score,
                            "first_train_wall_s": round(rows[0].wall_s, 1),
                            "hog_train_wall_s": round(again.wall_s, 1),
                            "deterministic": again.score == rows[0].score}
    led.close()
    print(json.dumps(out))


def run_trials(led, spec, seed_sets: list[list[int]], slots: int, *, first: bool = True) -> list:
    """Submit one baseline trial per seed set (the first the campaign's baseline unless ``first`` is
    False: then reruns of it), run them, and return their rows in order."""
    numbers = []
    for i, seeds in enumerate(seed_sets):
        base = first and i == 0
        sub = submit_trial(led, spec, campaign=CAMPAIGN, diff="", hypothesis=f"baseline on seeds {seeds}",
                           actor="human:measure-noise", parent=None if base else 0, specialist="baseline",
                           kind="baseline" if base else "rerun", seeds=seeds, seed=seeds[0])
        numbers.append(sub.number)
    runner = LocalRunner(led, spec, slots=slots, lease_s=60.0)
    runner.start()
    proj = Projector()
    cid = ev.campaign_id_for(CAMPAIGN)
    try:
        while True:
            proj.catch_up(led)
            rows = {r.number: r for r in proj.trials.rows(cid)}
            if all(rows[n].phase == LABELLED for n in numbers):
                break
            done = sum(rows[n].phase == LABELLED for n in numbers)
            print(f"  {done}/{len(numbers)} labelled", file=sys.stderr, end="\r")
            time.sleep(1.0)
    finally:
        runner.stop()
    for n in numbers:
        r = rows[n]
        print(f"  #{n} seeds {r.seed}..: {r.label} {r.score} ({r.wall_s:.1f} s)", file=sys.stderr)
    return [rows[n] for n in numbers]


if __name__ == "__main__":
    main()
