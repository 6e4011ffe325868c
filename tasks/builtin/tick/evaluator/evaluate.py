"""tick's evaluator: the loss is a fixed function of the knobs the run wrote (no noise; best 1.0)."""
import argparse
import json
import math
from pathlib import Path

CURVES = {"flat": 0.2, "ramp": 0.1, "peak": 0.0}

ap = argparse.ArgumentParser()
ap.add_argument("--runs", required=True)
ap.add_argument("--result", required=True)
ap.add_argument("--train-wall-s", default="")
ap.add_argument("--code-bytes", type=int, default=0)
a = ap.parse_args()


def fail(reason):
    Path(a.result).write_text(json.dumps({"score": None, "metrics": {}, "gates": [], "label": None,
                                          "reason": reason}))
    raise SystemExit(0)


losses = []
for run in a.runs.split(","):
    p = Path(run) / "model.json"
    if not p.is_file() or p.stat().st_size > 10_000:
        fail(f"{run}: no model.json (or one over 10 kB)")
    try:
        m = json.loads(p.read_text())
        width, rate, curve, damping = int(m["WIDTH"]), float(m["RATE"]), str(m["CURVE"]), float(m["DAMPING"])
    except (ValueError, KeyError, TypeError) as e:
        fail(f"{run}: unreadable model.json: {e}")
    loss = (1.0 + (width - 12) ** 2 / 100 + 10 * (rate - 0.3) ** 2 + CURVES.get(curve, 1.0)
            + 0.5 * (damping - 0.5) ** 2)
    losses.append(loss)
score = sum(losses) / len(losses)
Path(a.result).write_text(json.dumps({
    "score": score if math.isfinite(score) else None, "metrics": {"loss": score}, "gates": [], "label": None,
    "reason": ""}))
