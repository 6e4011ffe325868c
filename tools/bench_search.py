"""Search quality, side by side on golf-mini with the same trial budget: does the lineage help?

    python tools/bench_search.py [--seeds 0,1,2,3,4] [--trials 8] [--steps 150] [--slots 2]
                                 [--specialists opt,sched,arch]

Runs three arms for every seed, each a real campaign through the real runner, sandbox and keep rule
on one ledger: ``lineage`` (heuristic specialists reading the lineage), ``no-lineage`` (the same
specialists, the view blanked but for the current best) and ``random`` (a random knob search from the
baseline). A seed is the campaign's seed: its training seeds and its proposers' random choices. The
three arms of one seed train the same baseline on the same seeds, and golf-mini is bounded by work
(every run trains all its steps; ``ARLEDGER_THREADS=1``), so a score depends on the code and the
seed only, not on the machine's load: the arms are paired by seed.

An arm's result on a seed is its *confirmed* improvement: the last promoted incumbent's score (the
mean of its runs: the proposal and its confirmation runs) against the baseline's promoted score (the
mean of the baseline and its reruns), in metric units, positive = better, 0 when nothing was kept.

Prints one JSON line: each arm's per-seed improvements and median; for lineage against each other
arm, the per-seed differences, the exact Wilcoxon signed-rank test (W+, one-sided p for "lineage is
better", two-sided p) and the exact sign test (``projections.paired``). With 5 seeds the smallest
one-sided p is 1/32 = 0.031 (lineage better on every seed).

``--steps`` shortens golf-mini's training (a copy of the task with MAX_STEPS changed; its train_s
stays a safety limit; the task's declared noise, measured at 1,500 steps, is left out of the copy, so
each campaign's keep threshold rests on the noise it measures itself), so that the whole comparison
fits in about 40 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
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
from projections.paired import sign_test, wilcoxon  # noqa: E402
from tasks.knobs import set_knob  # noqa: E402
from tasks.spec import load_task  # noqa: E402

ARMS = {"lineage": ("heuristic", "lineage"), "no-lineage": ("heuristic", "no-lineage"), "random": ("random", "lineage")}


def bench_task(tmp: Path, steps: int | None) -> Path:
    src = load_task("golf-mini").root
    dst = tmp / "golf_mini_bench"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    if steps:
        train = dst / "recipe" / "train.py"
        spec = load_task(dst)
        knob = next((k for k in spec.knobs() if k.name == "MAX_STEPS"), "MAX_STEPS")
        train.write_text(set_knob(train.read_text(), knob, steps))
        # the declared noise was measured at the task's own MAX_STEPS: the copy declares none and each
        # campaign measures its own (baseline reruns, confirmation runs), as a new task would
        toml = dst / "task.toml"
        text, n_sd = re.subn(r"(?m)^sd = .*$", "sd = 0.0", toml.read_text())
        text, n_re = re.subn(r"(?m)^reruns = \[.*\]$", "reruns = []", text)
        if n_sd != 1 or n_re != 1:
            sys.exit("bench_search: golf-mini's task.toml has no single 'sd = ...' and 'reruns = [...]' line")
        toml.write_text(text)
    for d, _, fs in os.walk(dst):  # world-readable, as a task directory must be
        os.chmod(d, 0o755)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    return dst


def confirmed_gain(loop: CampaignLoop) -> tuple[float, float | None, float | None, int | None]:
    """(improvement, baseline mean, confirmed best, its trial) of a finished campaign."""
    info = loop.info
    base = next((p for p in info.promotions if p.number == 0), None)
    keeps = [p for p in info.promotions if p.number != 0]
    if base is None:
        return 0.0, None, None, None
    if not keeps:
        return 0.0, base.score, base.score, 0
    return loop.objective.improvement(keeps[-1].score, base.score), base.score, keeps[-1].score, keeps[-1].number


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8, help="proposals per campaign")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--steps", type=int, default=150, help="golf-mini's MAX_STEPS in the copy")
    ap.add_argument("--slots", type=int, default=2, help="trials trained at once in each campaign")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--specialists", default="opt,sched,arch",
                    help="the team of every arm (comma-separated; 'all': the task's six): fewer specialists get "
                         "more turns each within --trials, which is where a lineage can matter")
    ap.add_argument("--keep", default=None, help="Keep the ledger in this directory.")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    team = None if args.specialists == "all" else [s.strip() for s in args.specialists.split(",")]
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        sys.exit(f"bench_search: unknown arm(s) {', '.join(unknown)}; the arms are {', '.join(ARMS)}")
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="bench-search-"))
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o755)
    task_dir = bench_task(tmp, args.steps)
    spec = load_task(task_dir)
    led, _, _ = init_ledger(f"sqlite:{tmp}/ledger.db", tmp / "signing.key")
    results: dict[str, list[float]] = {a: [] for a in arms}
    detail: dict[str, list[dict[str, object]]] = {a: [] for a in arms}
    runs = 0
    t0 = time.time()
    load0 = os.getloadavg()
    for seed in seeds:
        for arm in arms:
            backend, arm_kind = ARMS[arm]
            cfg = CampaignConfig(task=str(task_dir), name=f"bench-{arm}-s{seed}", backend=backend, arm=arm_kind,
                                 max_trials=args.trials, seed=seed, slots=args.slots, specialists=team)
            loop = CampaignLoop(led, spec, cfg, on_event=lambda m, a=arm, s=seed: print(f"  [{a} s{s}] {m}",
                                                                                      file=sys.stderr))
            t1 = time.time()
            loop.run()
            gain, base, best, number = confirmed_gain(loop)
            rows = loop.rows()
            runs += len(rows)
            truncated = sum(1 for r in rows if r.label == "truncated")
            results[arm].append(round(gain, 6))
            detail[arm].append({"seed": seed, "baseline": base, "best": best, "best_trial": number,
                                "trials": len(rows), "truncated": truncated, "wall_s": round(time.time() - t1, 1)})
            print(f"{arm} seed {seed}: baseline {base} confirmed best {best} (#{number}) gain {gain:.4g} "
                  f"({time.time() - t0:.0f} s so far)", file=sys.stderr)
        print("partial: " + json.dumps({a: results[a] for a in arms}), file=sys.stderr, flush=True)
    line: dict[str, object] = {
        "task": f"{spec.name}@{spec.version}", "metric": spec.metric, "direction": spec.direction,
        "bound": spec.budgets.bound, "steps": args.steps, "trials_per_campaign": args.trials, "slots": args.slots,
        "specialists": team or [s.name for s in spec.specialists],
        "seeds": seeds, "runs": runs, "wall_s": round(time.time() - t0, 1),
        "load": {"before": [round(x, 2) for x in load0], "after": [round(x, 2) for x in os.getloadavg()]},
    }
    for arm in arms:
        line[arm] = {"median_improvement": round(statistics.median(results[arm]), 6), "per_seed": results[arm],
                     "campaigns": detail[arm]}
    if "lineage" in arms:
        tests = {}
        for other in (a for a in arms if a != "lineage"):
            a, b = results["lineage"], results[other]
            tests[f"lineage_vs_{other}"] = {
                "differences": [round(x - y, 6) for x, y in zip(a, b, strict=True)],
                "wilcoxon": wilcoxon(a, b).to_dict(), "sign": sign_test(a, b).to_dict()}
        line["paired"] = tests
    best_arm = max(arms, key=lambda a: statistics.median(results[a]))
    line["best_arm"] = best_arm
    line["lineage_is_best"] = "lineage" in arms and statistics.median(results["lineage"]) >= max(
        statistics.median(results[a]) for a in arms)
    led.close()
    print(json.dumps(line))


if __name__ == "__main__":
    main()
