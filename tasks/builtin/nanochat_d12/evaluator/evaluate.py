"""nanochat-d12 evaluator: the CORE metric, computed here by nanochat's base_eval, within 90 minutes.

    evaluate.py --runs a,b,... --result result.json [--train-wall-s x,y,...] [--budget-s 5400]
                [--workspace WS --data DATA --core-command 'CMD ...']

With ``--workspace`` (the task's evaluate command) this evaluator runs the CORE evaluation itself,
in the evaluate phase and its own sandbox: ``CMD`` (nanochat's ``scripts.base_eval``) runs with the
trial's workspace (the recipe's code and its checkpoint in ``.nanochat/base_checkpoints``) read-only
as its working directory, and ``NANOCHAT_BASE_DIR`` a fresh folder in this process's private
``/tmp`` holding links to the tokenizer (``DATA/train``), the eval bundle (``DATA/heldout``, which
training never sees) and the checkpoint. Only that command's output and its CSV give the score;
whatever the training process printed is not read for it. What the recipe can still influence:
its model code (``nanochat/gpt.py`` and the other recipe files base_eval imports) runs inside the
evaluation process, so it defines the forward pass being scored and could, in principle, alter
the evaluation from there; it can no longer print or write the score, nor read the eval bundle.

Without ``--workspace`` it classifies recorded logs (each run's ``train.log`` from ``launch.py
run``, as older runs of this task wrote them). Formats accepted (confirmed against nanochat's
``scripts/base_train.py`` and ``scripts/base_eval.py``):

score — the last ``CORE metric: 0.xxxx`` line: ``scripts.base_eval`` prints ``CORE metric: 0.2219``,
    ``scripts.base_train`` prints ``Step 04536 | CORE metric: 0.2187`` when its CORE evaluation
    is on. Fallbacks: a wandb summary line ``core_metric 0.2219``, or the ``CORE`` row of the
    ``base_eval`` CSV collected into the run folder (``*.csv``: ``CORE , , 0.221900``).
also recorded — ``Minimum validation bpb: x`` (else the last ``Validation bpb: x``) as
    ``val_bpb``; ``Total training time: X.XXm`` as ``train_time_s``.
budget — the runner's wall seconds (``--train-wall-s``) over ``--budget-s`` (90 minutes) →
    ``train_budget_overrun``. (The runner normally stops such a run itself.)

The score is the mean CORE over the runs. A run without a CORE line gives ``score: null``, label
``crash`` and a reason naming the formats above. The process exits 0 whenever it wrote the result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

BUDGET_S = 90 * 60.0
LOG_NAMES = ("train.log", "stdout.log", "output.log", "log.txt")

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_RANK = re.compile(r"^(?:\[(?:rank|default)?\d+\]:\s?)+")
_CORE = re.compile(r"(?:^|\|\s*)CORE metric\s*:\s*(" + _NUM + r")\s*$", re.I)
_WANDB_CORE = re.compile(r"^(?:wandb:)?\s*core_metric\s+(" + _NUM + r")\s*$")
_CSV_CORE = re.compile(r"^\s*CORE\s*,[^,]*,\s*(" + _NUM + r")\s*$")
_MIN_BPB = re.compile(r"Minimum validation bpb\s*:\s*(" + _NUM + r")")
_BPB = re.compile(r"Validation bpb\s*:\s*(" + _NUM + r")")
_TRAIN_TIME = re.compile(r"Total training time\s*:\s*(\d+(?:\.\d+)?)m\b")

FORMATS = ("'CORE metric: <x>' (scripts.base_eval) or 'Step N | CORE metric: <x>' (scripts.base_train "
           "with its CORE evaluation on), a wandb 'core_metric <x>' summary line, or a base_eval CSV "
           "with a 'CORE' row in the run folder")


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


def read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [_RANK.sub("", ln).strip() for ln in text.replace("\r", "\n").split("\n")]


def _last(pattern: re.Pattern[str], lines: list[str]) -> float | None:
    found = None
    for line in lines:
        m = pattern.search(line)
        if m:
            found = float(m.group(1))
    return found


def run_core_eval(workspace: Path, data: Path, command: str) -> Path:
    """Run the CORE evaluation on the workspace's checkpoint; returns the folder holding its log
    (``core_eval.log``) and CSVs (``base_eval/*.csv``)."""
    ckpt = workspace / ".nanochat" / "base_checkpoints"
    if not ckpt.is_dir():
        raise RunFailed("crash", f"no checkpoint in {ckpt}: base_train saved none")
    base = Path(tempfile.mkdtemp(prefix="nanochat-base-"))
    for split in ("train", "heldout"):
        d = data / split
        for entry in sorted(d.iterdir()) if d.is_dir() else []:
            if entry.name not in ("base_checkpoints", "base_eval") and not (base / entry.name).exists():
                (base / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    (base / "base_checkpoints").symlink_to(ckpt.resolve(), target_is_directory=True)
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    with open(base / "core_eval.log", "wb") as log:
        try:
            proc = subprocess.Popen(shlex.split(command), cwd=workspace, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
        except OSError as e:
            raise RunFailed("crash", f"cannot start the CORE evaluation {command!r}: {e}") from None
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            log.write(chunk)
        status = proc.wait()
    if status != 0:
        tail = read_lines(base / "core_eval.log")[-3:]
        raise RunFailed("crash", f"the CORE evaluation exited with status {status}: {' | '.join(tail)}")
    return base


def _core_from(lines: list[str], csvs: list[Path]) -> tuple[float | None, str]:
    core = _last(_CORE, lines)
    if core is not None:
        return core, "log"
    core = _last(_WANDB_CORE, lines)
    if core is not None:
        return core, "wandb summary"
    for csv in csvs:
        core = _last(_CSV_CORE, read_lines(csv))
        if core is not None:
            return core, csv.name
    return None, ""


def evaluate_run(run: Path, core_dir: Path | None = None) -> dict:
    """One run's metrics. With ``core_dir`` (the evaluate phase's CORE output) the score comes from
    there only; the run's own log gives the recorded extras."""
    log = find_log(run)
    lines = read_lines(log)
    info: dict = {}
    if core_dir is not None:
        where = core_dir / "core_eval.log"
        core, source = _core_from(read_lines(where), sorted((core_dir / "base_eval").glob("*.csv")))
        source = f"evaluate phase ({source})" if source else ""
    else:
        where = log
        core, source = _core_from(lines, sorted(run.glob("*.csv")))
    if core is None:
        raise RunFailed("crash", f"{where}: no CORE metric; accepted: {FORMATS}")
    if not math.isfinite(core):
        raise RunFailed("diverged", f"{log}: CORE metric is {core}")
    info["core_metric"] = core
    info["source"] = source
    bpb = _last(_MIN_BPB, lines)
    if bpb is None:
        bpb = _last(_BPB, lines)
    if bpb is not None:
        info["val_bpb"] = bpb
    minutes = _last(_TRAIN_TIME, lines)
    if minutes is not None:
        info["train_time_s"] = minutes * 60.0
    return info


def evaluate(runs: list[Path], wall: list[float], budget_s: float, core_dir: Path | None = None) -> dict:
    metrics: dict[str, float] = {}
    gates: list[dict] = []
    result = {"score": None, "metrics": metrics, "gates": gates, "label": None, "reason": ""}
    infos = []
    for i, run in enumerate(runs):
        try:
            infos.append(evaluate_run(run, core_dir))
        except RunFailed as e:
            where = f"run {i + 1} of {len(runs)}: " if len(runs) > 1 else ""
            result["label"], result["reason"] = e.label, where + str(e)
            return result
    cores = [inf["core_metric"] for inf in infos]
    metrics["core_metric"] = sum(cores) / len(cores)
    if len(cores) > 1:
        mean = metrics["core_metric"]
        metrics["core_metric_sd"] = math.sqrt(sum((c - mean) ** 2 for c in cores) / (len(cores) - 1))
    for key in ("val_bpb", "train_time_s"):
        vals = [inf[key] for inf in infos if key in inf]
        if vals:
            metrics[key] = sum(vals) / len(vals)
    result["score"] = metrics["core_metric"]
    if wall:
        worst = max(wall)
        metrics["train_wall_s"] = sum(wall) / len(wall)
        gates.append({"name": "train_wall_s", "passed": worst <= budget_s, "value": worst, "limit": budget_s})
        if worst > budget_s:
            result["label"] = "train_budget_overrun"
            result["reason"] = (f"the run took {worst / 60:.1f} min of wall time, over the "
                                f"{budget_s / 60:g}-minute budget")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="comma-separated run output dirs")
    ap.add_argument("--result", required=True, type=Path)
    ap.add_argument("--train-wall-s", default="")
    ap.add_argument("--code-bytes", type=int, default=None, help="accepted and ignored: no size gate")
    ap.add_argument("--heldout", default="", help="accepted and ignored: the score comes from the log")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S)
    ap.add_argument("--workspace", type=Path, default=None, help="the trial's workspace: run the CORE evaluation")
    ap.add_argument("--data", type=Path, default=None, help="the prepared data (train/ and heldout/)")
    ap.add_argument("--core-command", default="", help="the CORE evaluation command (cwd: the workspace)")
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        print(f"evaluate.py: ignoring unknown arguments {unknown}", file=sys.stderr)
    runs = [Path(r) for r in args.runs.split(",") if r]
    if not runs:
        ap.error("--runs names no run directory")
    wall = [float(w) for w in args.train_wall_s.split(",") if w]
    core_dir = None
    if args.workspace is not None:
        if args.data is None or not args.core_command:
            ap.error("--workspace needs --data and --core-command")
        try:
            core_dir = run_core_eval(args.workspace, args.data, args.core_command)
        except RunFailed as e:
            result = {"score": None, "metrics": {}, "gates": [], "label": e.label, "reason": str(e)}
            args.result.write_text(json.dumps(result, indent=1))
            print(f"score=None label={e.label} {e}")
            return 0
    result = evaluate(runs, wall, args.budget_s, core_dir)
    # in place: the sandbox lets the evaluator write this one file and nothing beside it
    args.result.write_text(json.dumps(result, indent=1))
    print(f"score={result['score']} label={result['label']} {result['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
