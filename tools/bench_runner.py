"""Runner overhead: one fixed 10-second recipe run directly versus through the runner.

    python tools/bench_runner.py [--seconds 10] [--trials 3]

Builds a tiny stand-in task in a temporary directory (its recipe sleeps ``--seconds`` and writes its
artifact; its evaluator reads it back), runs the recipe once directly (a subprocess, same
environment contract) and then ``--trials`` launches through ``submit_trial`` + an in-process
``Runner`` (one slot) on a temporary SQLite ledger, all in the same process. Prints ONE JSON line:

* ``overhead_ratio`` — the runner's wall time for a trial, from its claim to its label (claim,
  TrialStarted, workspace, train, TrialFinished, evaluator, TrialEvaluated, OutcomeLabelled),
  averaged over the trials, divided by the direct wall time. Target <= 1.05.
* ``idle_gap_s`` — on the one slot, the longest time from one trial's label to the next trial's
  claim (2+ trials queued). Target <= 0.5. Negative when the
  runner claimed the next trial before labelling the last (it claims ahead once a trial reaches its
  evaluation).
* ``sandbox_ms`` — what the bubblewrap sandbox costs per run: ``sandbox.run`` of ``python -c pass``
  with the train plan versus without a sandbox, ``--sandbox-runs`` times each, interleaved; the
  median of each and their difference in milliseconds (and the spread of the unsandboxed runs, the
  machine's noise). The trials above run sandboxed, so ``overhead_ratio`` includes it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import diffs  # noqa: E402
from ledger import events as ev  # noqa: E402
from ledger.audit import init_ledger  # noqa: E402
from tasks import sandbox  # noqa: E402
from tasks import sandbox_plan as splan  # noqa: E402
from tasks import workspace as wsp  # noqa: E402
from tasks.runner import Runner  # noqa: E402
from tasks.spec import load_task  # noqa: E402
from tasks.submit import submit_trial  # noqa: E402

TRAIN = '''\
import os
import time
from pathlib import Path

T0 = time.time()
# region: opt
TAG = 0
SECONDS = {seconds}
# endregion
while time.time() - T0 < SECONDS:
    time.sleep(min(0.05, max(0.0, SECONDS - (time.time() - T0))))
print(f"metric loss={{1.0 / (TAG + 1)}} step=1", flush=True)
(Path(os.environ["ARLEDGER_OUT"]) / "artifact.txt").write_text(f"{{TAG}}\\n")
'''

EVALUATE = '''\
import argparse, json
from pathlib import Path
ap = argparse.ArgumentParser()
ap.add_argument("--runs"); ap.add_argument("--result"); ap.add_argument("--train-wall-s"); ap.add_argument("--code-bytes")
a = ap.parse_args()
v = [float((Path(r) / "artifact.txt").read_text()) for r in a.runs.split(",")]
Path(a.result).write_text(json.dumps({"score": sum(v) / len(v), "metrics": {}, "gates": [], "label": None}))
'''

TOML = '''\
[task]
name = "bench"
version = "1"
metric = "tag"
direction = "min"
recipe_dir = "recipe"
recipe_files = ["train.py"]
evaluator_files = ["evaluator/evaluate.py"]
artifact = "artifact.txt"

[commands]
train = "{python} train.py"
evaluate = "{python} {eval_dir}/evaluate.py --runs {runs} --result {result}"

[budgets]
preflight_s = 10
train_s = 120
eval_s = 60

[noise]
min_delta = 0.0

[surfaces.opt]
files = ["train.py"]
regions = ["opt"]
'''


def make_task(root: Path, seconds: float) -> Path:
    (root / "recipe").mkdir(parents=True)
    (root / "evaluator").mkdir()
    (root / "task.toml").write_text(TOML)
    (root / "recipe" / "train.py").write_text(TRAIN.format(seconds=seconds))
    (root / "evaluator" / "evaluate.py").write_text(EVALUATE)
    for d, _, fs in os.walk(root):
        os.chmod(d, 0o755)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    return root


def direct(spec, tmp: Path, python: str) -> float:
    ws = tmp / "direct-ws"
    out = tmp / "direct-out"
    shutil.copytree(spec.recipe_path, ws)
    out.mkdir()
    env = sandbox.trial_env(home=tmp, data=tmp, out=out, seed=0, threads=1, time_budget_s=120, device="cpu")
    t0 = time.monotonic()
    subprocess.run([python, "train.py"], cwd=ws, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def sandbox_cost(tmp: Path, runs: int) -> dict:
    """Median wall ms of ``python -c pass`` through sandbox.run, with and without the train plan."""
    ws, out, home, train = (tmp / "sbx" / n for n in ("ws", "out", "home", "train"))
    for d in (ws, out, home, train):
        d.mkdir(parents=True)
    plan = splan.recipe_plan(ws=ws, out=out, home=home, train=train, staged=[], limits=splan.limits_for(0, 1024, 1))
    env = sandbox.trial_env(home=home, data=train, out=out, threads=1)
    times: dict[str, list[float]] = {"sandboxed": [], "direct": []}
    for i in range(2 * runs):
        which = "sandboxed" if i % 2 == 0 else "direct"
        r = sandbox.run([sys.executable, "-c", "pass"], cwd=ws, env=env, log_path=tmp / "sbx" / "log",
                        plan=plan if which == "sandboxed" else None)
        assert r.ok, (tmp / "sbx" / "log").read_text()
        times[which].append(r.wall_s * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"runs": runs, "sandboxed_median_ms": round(med["sandboxed"], 2), "direct_median_ms": round(med["direct"], 2),
            "cost_ms": round(med["sandboxed"] - med["direct"], 2),
            "direct_sd_ms": round(statistics.stdev(times["direct"]), 2) if runs > 1 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--sandbox-runs", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="arl-bench-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    try:
        spec = load_task(make_task(tmp / "task", args.seconds))
        led, _, _ = init_ledger(f"sqlite:{tmp}/ledger/ledger.db")
        runner = Runner(ledger=led, runner_id="bench", tasks=[spec], data_root=tmp / "data",
                        work_root=tmp / "work", poll_s=0.2)
        direct_s = direct(spec, tmp, sys.executable)
        cost = sandbox_cost(tmp, args.sandbox_runs)
        base = wsp.baseline_files(spec)
        for i in range(args.trials):
            d = diffs.make_diff(base, {"train.py": base["train.py"].replace("TAG = 0", f"TAG = {i + 1}")})
            s = submit_trial(led, spec, campaign="bench", diff=d, hypothesis=f"tag {i}", actor="human:bench",
                             seen=set())
            assert s.passed, s.reason
        t0 = time.monotonic()
        runner.run_until_idle()
        total = time.monotonic() - t0
        hist = sorted(runner.history, key=lambda h: h["claimed_at"])
        walls = [h["labelled_at"] - h["claimed_at"] for h in hist]
        gaps = [b["claimed_at"] - a["labelled_at"] for a, b in zip(hist, hist[1:], strict=False)]
        train = []
        for h in hist:
            import uuid

            for e in led.stream(uuid.UUID(h["trial_id"])):
                if isinstance(e, ev.TrialFinished):
                    train.append(e.wall_s)
        print(json.dumps({
            "bench": "runner",
            "recipe_s": args.seconds,
            "trials": len(hist),
            "direct_wall_s": round(direct_s, 3),
            "runner_trial_wall_s": [round(w, 3) for w in walls],
            "runner_train_wall_s": [round(w, 3) for w in train],
            "overhead_ratio": round(statistics.mean(walls) / direct_s, 4),
            "overhead_s": round(statistics.mean(walls) - direct_s, 3),
            "idle_gap_s": round(max(gaps), 3) if gaps else None,
            "total_s": round(total, 3),
            "sandbox": runner.sandbox_note,
            "sandbox_ms": cost,
            "targets": {"overhead_ratio": 1.05, "idle_gap_s": 0.5},
        }))
        led.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
