"""Search quality, side by side on golf-mini with the same trial budget: does the lineage help?

    python tools/bench_search.py [--trials 18] [--seeds 0,1,2] [--steps 200] [--train-s 30] [--slots 1]

Runs three arms for every seed, each a real campaign through the real runner on the same ledger:
``lineage`` (heuristic specialists reading the lineage), ``no-lineage`` (the same specialists, the
view blanked but for the current best) and ``random`` (a random knob search from the baseline).
Prints one JSON line: each arm's per-seed best improvement over its own baseline (metric units,
positive = better) and the median. ``--steps`` and ``--train-s`` shorten golf-mini's training (a
copy of the task with MAX_STEPS and the train budget changed; the recipe stops itself at 85% of the
budget, so more steps than fit are moot) so that the whole comparison fits in about an hour on
2 cores; the search landscape is the task's, at that budget. With 6 specialists, 18 trials give
each about three turns: enough for the lineage to matter (momentum, combining other specialists'
keeps, not repeating dead ends).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.campaign import CampaignConfig, CampaignLoop  # noqa: E402
from ledger.audit import init_ledger  # noqa: E402
from tasks.knobs import set_knob  # noqa: E402
from tasks.spec import load_task  # noqa: E402

ARMS = {"lineage": ("heuristic", "lineage"), "no-lineage": ("heuristic", "no-lineage"), "random": ("random", "lineage")}


def bench_task(tmp: Path, steps: int | None, train_s: float | None) -> Path:
    src = load_task("golf-mini").root
    dst = tmp / "golf_mini_bench"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    if train_s:
        toml = dst / "task.toml"
        text, n = re.subn(r"(?m)^train_s = .*$", f"train_s = {train_s:g}", toml.read_text())
        if n != 1:
            sys.exit("bench_search: golf-mini's task.toml has no single 'train_s = ...' line to shorten")
        toml.write_text(text)
    if steps:
        train = dst / "recipe" / "train.py"
        spec = load_task(dst)
        knob = next((k for k in spec.knobs() if k.name == "MAX_STEPS"), "MAX_STEPS")
        train.write_text(set_knob(train.read_text(), knob, steps))
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=18)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--train-s", type=float, default=30.0,
                    help="the copy's train budget in seconds (golf-mini's recipe stops itself at 85%% of it)")
    ap.add_argument("--slots", type=int, default=1)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--keep", default=None, help="Keep the ledger in this directory.")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",")
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="bench-search-"))
    tmp.mkdir(parents=True, exist_ok=True)
    task_dir = bench_task(tmp, args.steps, args.train_s)
    spec = load_task(task_dir)
    led, _, _ = init_ledger(f"sqlite:{tmp}/ledger.db", tmp / "signing.key")
    results: dict[str, list[float]] = {a: [] for a in arms}
    t0 = time.time()
    for seed in seeds:
        for arm in arms:
            backend, arm_kind = ARMS[arm]
            cfg = CampaignConfig(task=str(task_dir), name=f"bench-{arm}-s{seed}", backend=backend, arm=arm_kind,
                                 max_trials=args.trials, seed=seed, slots=args.slots)
            loop = CampaignLoop(led, spec, cfg, on_event=lambda m, a=arm, s=seed: print(f"  [{a} s{s}] {m}", file=sys.stderr))
            out = loop.run()
            gain = 0.0
            if out.baseline is not None and out.best is not None:
                gain = spec.objective.improvement(out.best, out.baseline)
            results[arm].append(round(gain, 6))
            print(f"{arm} seed {seed}: baseline {out.baseline} best {out.best} gain {gain:.4g} "
                  f"({time.time() - t0:.0f} s so far)", file=sys.stderr)
    line = {"task": spec.name, "metric": spec.metric, "direction": spec.direction, "trials_per_campaign": args.trials,
            "steps": args.steps, "train_s": args.train_s, "slots": args.slots, "seeds": seeds, "wall_s": round(time.time() - t0, 1)}
    for arm in arms:
        line[arm] = {"median_improvement": statistics.median(results[arm]), "per_seed": results[arm]}
    best_arm = max(arms, key=lambda a: statistics.median(results[a]))
    line["best_arm"] = best_arm
    line["lineage_is_best"] = best_arm == "lineage" or (
        "lineage" in arms and statistics.median(results["lineage"]) >= max(statistics.median(results[a]) for a in arms))
    led.close()
    print(json.dumps(line))


if __name__ == "__main__":
    main()
