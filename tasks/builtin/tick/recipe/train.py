"""tick: a few milliseconds of work; the model is the knobs, written as JSON.

The fault suite and the fleet benchmark run hundreds of these: each goes through everything a real
trial does (the sandbox, the budgets, the metric lines, the artifact, the evaluator) in a blink.
"""
import json
import os
import time
from pathlib import Path

# region: shape
WIDTH = 8
RATE = 0.1
# endregion

# region: style
CURVE = "flat"
DAMPING = 1.0
# endregion

WORK_MS = 5


def main():
    out = Path(os.environ["ARLEDGER_OUT"])
    seed = int(os.environ.get("ARLEDGER_SEED", "0"))
    t_end = time.perf_counter() + WORK_MS / 1000
    acc, step = 0.0, 0
    while time.perf_counter() < t_end:
        step += 1
        acc += (step * RATE) % (WIDTH + 1)
    print(f"metric train_loss={1.0 + 1.0 / (1 + WIDTH * RATE):.6f} step=1", flush=True)
    model = {"WIDTH": WIDTH, "RATE": RATE, "CURVE": CURVE, "DAMPING": DAMPING, "seed": seed, "steps": step}
    (out / "model.json").write_text(json.dumps(model, sort_keys=True))


if __name__ == "__main__":
    main()
