"""airbench-mini evaluator: score = the runner's mean training wall time, gated on accuracy.

    evaluate.py --runs a,b,c --train-wall-s x,y,z --heldout DATA/heldout --result result.json
                [--code-bytes N] [--accuracy-min 0.97]

For every run directory it rebuilds the evaluator-owned network (``model.py`` beside this file)
from the run's ``model.json`` and reads ``model.npz`` (plain arrays, ``allow_pickle=False``: no
pickle, no recipe code runs here), then measures held-out accuracy with the test-time augmentation level the
config names. The score is the mean of the wall seconds the *runner* measured; nothing the recipe
printed is read. If the mean accuracy misses the gate the result is labelled ``disqualified``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import ConfigError, Net, check_config, load_weights, normalize, predict_tta  # noqa: E402

ACCURACY_MIN = 0.960  # the gate; task.toml [gates] accuracy_min mirrors it (a test checks)
ARTIFACT = "model.npz"
CONFIG = "model.json"


def run_accuracy(run_dir: Path, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict]:
    cfg = check_config(json.loads((run_dir / CONFIG).read_text()))
    model = Net(cfg)
    state = load_weights(run_dir / ARTIFACT)
    model.load_state_dict(state, strict=True)
    logits = predict_tta(model, images, cfg["tta_level"], cfg["tta_flip"])
    if not torch.isfinite(logits).all():
        return 0.0, cfg
    return (logits.argmax(1) == labels).float().mean().item(), cfg


def evaluate(runs: list[Path], wall_s: list[float], heldout: Path, code_bytes: int | None,
             accuracy_min: float) -> dict:
    if len(runs) != len(wall_s):
        raise ValueError(f"{len(runs)} runs but {len(wall_s)} --train-wall-s values")
    if not runs:
        raise ValueError("no runs to evaluate")
    if not all(math.isfinite(w) and w > 0 for w in wall_s):
        raise ValueError(f"train wall times must be positive seconds, got {wall_s}")
    with np.load(heldout / "mnist_test.npz") as npz:
        images = normalize(torch.from_numpy(npz["images"]))
        labels = torch.from_numpy(npz["labels"]).long()
    accs, artifact_bytes = [], 0
    for run in runs:
        acc, _cfg = run_accuracy(run, images, labels)
        accs.append(acc)
        artifact_bytes = max(artifact_bytes, (run / ARTIFACT).stat().st_size + (run / CONFIG).stat().st_size)
    mean_acc = float(np.mean(accs))
    score = float(np.mean(wall_s))
    gates = [{"name": "accuracy", "passed": mean_acc >= accuracy_min, "value": round(mean_acc, 6),
              "limit": accuracy_min}]
    metrics = {"train_s": round(score, 4), "accuracy": round(mean_acc, 6),
               "accuracy_std": round(float(np.std(accs)), 6), "accuracy_worst_run": round(min(accs), 6),
               "accuracy_runs": [round(a, 6) for a in accs], "train_s_runs": [round(w, 4) for w in wall_s],
               "artifact_bytes": artifact_bytes}
    if code_bytes is not None:
        metrics["code_bytes"] = code_bytes
    label, reason = None, ""
    if mean_acc < accuracy_min:
        label = "disqualified"
        reason = (f"mean held-out accuracy {mean_acc:.4f} over {len(accs)} runs "
                  f"({', '.join(f'{a:.4f}' for a in accs)}) is below the gate {accuracy_min:.4f}; "
                  f"train_s would have been {score:.3f}")
    return {"score": round(score, 4), "metrics": metrics, "gates": gates, "label": label, "reason": reason}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="airbench-mini evaluator")
    ap.add_argument("--runs", required=True, help="comma-separated run output directories")
    ap.add_argument("--train-wall-s", required=True, help="comma-separated runner-measured wall seconds")
    ap.add_argument("--heldout", required=True, type=Path)
    ap.add_argument("--result", required=True, type=Path)
    ap.add_argument("--code-bytes", type=int, default=None)
    ap.add_argument("--accuracy-min", type=float, default=ACCURACY_MIN)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("ARLEDGER_THREADS", "2")))
    torch.manual_seed(0)
    runs = [Path(r) for r in args.runs.split(",") if r]
    try:
        wall_s = [float(w) for w in args.train_wall_s.split(",") if w]
        result = evaluate(runs, wall_s, args.heldout, args.code_bytes, args.accuracy_min)
    except (OSError, ValueError, KeyError, RuntimeError, ConfigError) as e:
        print(f"airbench-mini evaluation failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    args.result.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
