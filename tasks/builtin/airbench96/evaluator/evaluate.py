"""airbench96 evaluator: wall seconds per run, gated on mean accuracy >= 0.96 over the seeds.

    evaluate.py --runs a,b,... --train-wall-s x,y,... --result result.json [--accuracy-min 0.96]

The metric is time, measured *outside* the recipe: the mean of the runner's wall seconds for the
train runs (``--train-wall-s``, one per run), lower is better. Nothing the recipe prints can move
it. The gate is accuracy, which KellerJordan/cifar10-airbench's ``airbench96_faster.py`` computes
and prints itself (test-time-augmented accuracy on the CIFAR-10 test set), so this evaluator is a
*log classifier* for it. Formats accepted (confirmed against the repository's
``airbench96_faster.py`` / ``legacy/airbench96.py`` and the CMU fork):

accuracy — every final table row of a run, the one whose ``epoch`` column reads ``eval``:
    ``|  0     |   eval  |      0.0021  |     0.9990  |   0.9588  |     0.9603  |            26.3409  |``
    (columns located by the header row ``|  run  |  epoch  | ... |  tta_val_acc  | ...``; one row per
    training run, so a process that trains several runs contributes several accuracies).
    Fallbacks when a log has no such row: ``RUNS=k mean_acc=x`` (the CMU fork, weighted by k), then
    ``Mean: x    Std: y`` (counted once). Values above 1 are read as percentages.
gate — mean accuracy over every run of every seed >= ``--accuracy-min``, else ``disqualified``.
also recorded — ``accuracy_sd``, ``n_runs``, and ``recipe_time_s`` (the mean of the recipe's own
    GPU-timed ``total_time_seconds`` column; informational only).

Missing timings or accuracy lines give ``score: null``, label ``crash`` and a reason. The process
exits 0 whenever it wrote the result file.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

ACCURACY_MIN = 0.96  # task.toml's [gates] accuracy_min mirrors it
LOG_NAMES = ("train.log", "stdout.log", "output.log", "log.txt")

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_RUNS_MEAN = re.compile(r"\bRUNS=(\d+)\s+mean_acc=(" + _NUM + r")")
_MEAN = re.compile(r"^Mean:\s*(" + _NUM + r")\s+Std:")

FORMATS = ("airbench's final table rows ('|  <run>  |  eval  | ... |  <tta_val_acc>  | ... |'), "
           "'RUNS=k mean_acc=x', or 'Mean: x    Std: y'")


class RunFailed(Exception):
    def __init__(self, label: str, reason: str):
        super().__init__(reason)
        self.label = label


def find_log(run: Path) -> Path:
    for name in LOG_NAMES:
        if (run / name).is_file():
            return run / name
    logs = sorted(run.glob("*.log"))
    if logs:
        return logs[0]
    raise RunFailed("crash", f"no log in {run} (expected {LOG_NAMES[0]}, written by launch.py run)")


def _cells(line: str) -> list[str] | None:
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|")):
        return None
    return [c.strip() for c in line[1:-1].split("|")]


def _fraction(value: float) -> float:
    return value / 100.0 if value > 1.0 else value


def parse_accuracies(lines: list[str]) -> tuple[list[float], list[float]]:
    """(accuracies, recipe times) of the runs in one log, one entry per training run."""
    epoch_col, acc_col, time_col = 1, 5, 6
    accs: list[float] = []
    times: list[float] = []
    for line in lines:
        cells = _cells(line)
        if cells is None:
            continue
        if "tta_val_acc" in cells and "epoch" in cells:
            epoch_col, acc_col = cells.index("epoch"), cells.index("tta_val_acc")
            time_col = cells.index("total_time_seconds") if "total_time_seconds" in cells else -1
            continue
        if len(cells) <= max(epoch_col, acc_col) or cells[epoch_col] != "eval":
            continue
        try:
            accs.append(_fraction(float(cells[acc_col])))
        except ValueError:
            continue
        if 0 <= time_col < len(cells):
            try:
                times.append(float(cells[time_col]))
            except ValueError:
                pass
    if accs:
        return accs, times
    for line in reversed(lines):
        m = _RUNS_MEAN.search(line)
        if m:
            return [_fraction(float(m.group(2)))] * max(int(m.group(1)), 1), []
    for line in reversed(lines):
        m = _MEAN.match(line.strip())
        if m:
            return [_fraction(float(m.group(1)))], []
    return [], []


def evaluate(runs: list[Path], wall: list[float], accuracy_min: float) -> dict:
    metrics: dict[str, float] = {}
    gates: list[dict] = []
    result = {"score": None, "metrics": metrics, "gates": gates, "label": None, "reason": ""}
    accs: list[float] = []
    times: list[float] = []
    for i, run in enumerate(runs):
        where = f"run {i + 1} of {len(runs)}: " if len(runs) > 1 else ""
        try:
            log = find_log(run)
        except RunFailed as e:
            result["label"], result["reason"] = e.label, where + str(e)
            return result
        text = log.read_text(encoding="utf-8", errors="replace")
        run_accs, run_times = parse_accuracies(text.replace("\r", "\n").split("\n"))
        if not run_accs:
            result["label"] = "crash"
            result["reason"] = f"{where}{log}: no accuracy; accepted: {FORMATS}"
            return result
        accs += run_accs
        times += run_times
    if not wall:
        result["label"] = "crash"
        result["reason"] = "no runner timings: the metric is the runner's wall seconds (--train-wall-s x,y,...)"
        return result
    if len(wall) != len(runs):
        result["label"] = "crash"
        result["reason"] = f"{len(wall)} wall times for {len(runs)} runs (--train-wall-s needs one per run)"
        return result
    if any(not math.isfinite(a) for a in accs):
        result["label"] = "diverged"
        result["reason"] = "an accuracy is not finite"
        return result
    mean_acc = sum(accs) / len(accs)
    metrics["accuracy"] = mean_acc
    metrics["n_runs"] = float(len(accs))
    if len(accs) > 1:
        metrics["accuracy_sd"] = math.sqrt(sum((a - mean_acc) ** 2 for a in accs) / (len(accs) - 1))
    if times:
        metrics["recipe_time_s"] = sum(times) / len(times)
    metrics["train_s"] = sum(wall) / len(wall)
    result["score"] = metrics["train_s"]
    passed = mean_acc >= accuracy_min
    gates.append({"name": "accuracy", "passed": passed, "value": mean_acc, "limit": accuracy_min})
    if not passed:
        result["label"] = "disqualified"
        result["reason"] = (f"mean accuracy {mean_acc:.4f} over {len(accs)} runs is below the "
                            f"{accuracy_min:g} gate")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="comma-separated run output dirs")
    ap.add_argument("--result", required=True, type=Path)
    ap.add_argument("--train-wall-s", default="")
    ap.add_argument("--code-bytes", type=int, default=None, help="accepted and ignored: no size gate")
    ap.add_argument("--heldout", default="", help="accepted and ignored: accuracy comes from the log")
    ap.add_argument("--accuracy-min", type=float, default=ACCURACY_MIN)
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        print(f"evaluate.py: ignoring unknown arguments {unknown}", file=sys.stderr)
    runs = [Path(r) for r in args.runs.split(",") if r]
    if not runs:
        ap.error("--runs names no run directory")
    wall = [float(w) for w in args.train_wall_s.split(",") if w]
    result = evaluate(runs, wall, args.accuracy_min)
    # in place: the sandbox lets the evaluator write this one file and nothing beside it
    args.result.write_text(json.dumps(result, indent=1))
    print(f"score={result['score']} label={result['label']} {result['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
