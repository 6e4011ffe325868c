"""arledger against MLflow: the same trials recorded in both, in one run. Prints one JSON line.

    pip install -e '.[bench]'          # MLflow (skinny) and its SQLite tracking store
    python tools/bench_vs_mlflow.py [--trials 200]

Each trial has 8 params, 15 metrics, a diff and a training log (both kept as artifacts).

* MLflow: the local SQLite tracking store (``sqlite:///…/mlflow.db``, artifacts in a local folder)
  through the fluent API as a user writes it: ``start_run``, ``log_params``, ``log_metrics``,
  ``log_text`` for the diff and the log, ``end_run``.
* arledger: a SQLite ledger with sealing (Merkle log) and signing (Ed25519, a runner's key) on, the
  trial written as the runner and campaign write it — submit (TrialRegistered, TrialProposed with the
  diff artifact and the params, PreflightChecked, LaunchRequested), claim, start, metrics, finish
  (the log artifact), evaluation, label: seven durable appends, each its own transaction.

``mlflow_s`` and ``arledger_s`` time the recording only; creating each store (MLflow's schema
migrations, arledger's init) is timed apart (``*_setup_s``). ``ratio`` = mlflow_s / arledger_s
(target >= 2). The trials are generated once and replayed into both, interleaved per trial so
machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import events as ev  # noqa: E402
from ledger.aggregates import Campaign, Trial  # noqa: E402
from ledger.app import Ledger  # noqa: E402
from ledger.audit import init_ledger, verify  # noqa: E402
from ledger.identity import signer_for  # noqa: E402

METRICS = ["val_bpb", "val_loss", "train_loss", "lr", "tokens_per_s", "step_ms", "grad_norm", "params_m",
           "mfu", "peak_mem_gb", "wall_s", "eval_s", "accuracy", "artifact_mb", "code_bytes"]


def make_trials(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lr = round(10 ** rng.uniform(-4, -2), 6)
        params = {"lr": lr, "batch": rng.choice([32, 64, 128]), "layers": rng.randint(4, 12),
                  "width": rng.choice([256, 384, 512]), "warmup": rng.randint(0, 500), "wd": round(rng.random(), 3),
                  "seed": i, "optimizer": rng.choice(["adamw", "muon", "lion"])}
        diff = (f"--- a/train.py\n+++ b/train.py\n@@ -10,3 +10,3 @@\n-LR = 0.001\n+LR = {lr}\n"
                f"-LAYERS = 8\n+LAYERS = {params['layers']}\n" + "".join(f" # context {k}\n" for k in range(20)))
        log = "".join(f"step {s} loss {3.0 - s * 0.01 + rng.random() * 0.01:.4f} lr {lr}\n" for s in range(200))
        metrics = {m: round(rng.uniform(0.1, 10.0), 6) for m in METRICS}
        out.append({"number": i, "params": params, "diff": diff, "log": log, "metrics": metrics,
                    "hypothesis": f"lr {lr} with {params['layers']} layers"})
    return out


class MLflowRecorder:
    def __init__(self, root: Path):
        import mlflow

        self.mlflow = mlflow
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        t0 = time.perf_counter()
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        mlflow.set_experiment("bench")
        self.setup_s = time.perf_counter() - t0

    def record(self, t: dict) -> None:
        m = self.mlflow
        with m.start_run(run_name=f"trial-{t['number']}"):
            m.log_params(t["params"])
            m.log_metrics(t["metrics"], step=200)
            m.log_text(t["diff"], "diff.patch")
            m.log_text(t["log"], "train.log")


class ArledgerRecorder:
    def __init__(self, root: Path):
        t0 = time.perf_counter()
        led, _, _ = init_ledger(f"sqlite:{root}/.arledger/ledger.db", root / ".arledger" / "signing.key")
        self.led = led.with_signer(signer_for(led, "runner:bench"))
        self.camp = Campaign.open(name="bench", actor="agent:campaign", task="bench", task_version="1",
                                  task_sha="ab" * 32, metric="val_bpb", direction="min")
        self.led.save(self.camp)
        self.setup_s = time.perf_counter() - t0

    def record(self, t: dict) -> None:
        led, actor, rid = self.led, "runner:bench", "bench"
        n = t["number"]
        diff_sha = led.artifacts.put(t["diff"])
        trial = Trial.propose(self.camp.id, n, actor="agent:opt", specialist="opt", surface="opt",
                              hypothesis=t["hypothesis"], diff_sha=diff_sha, diff_bytes=len(t["diff"]),
                              notes=json.dumps(t["params"], sort_keys=True))
        self.camp.register(trial.id, n, "opt", "proposal", "agent:opt")
        trial.preflight(True, [ev.Check(name="applies", ok=True)], actor="agent:campaign", tree_sha="cd" * 32)
        trial.request_launch("agent:campaign", task="bench")
        led.save(self.camp, trial)
        now = time.time()
        trial.claim(rid, lease_s=60, now=now)
        led.save(trial)
        trial.start(rid, 1, host="bench-host", accelerator="cpu", versions={"python": sys.version.split()[0]})
        led.save(trial)
        trial.log_metrics(rid, 1, [ev.MetricPoint(200, k, v) for k, v in t["metrics"].items()])
        led.save(trial)
        log_sha = led.artifacts.put(t["log"])
        trial.finish(rid, 1, exit_status=0, wall_s=t["metrics"]["wall_s"], log_sha=log_sha,
                     log_bytes=len(t["log"]))
        led.save(trial)
        trial.record_evaluation(rid, 1, actor="evaluator:bench@1", score=t["metrics"]["val_bpb"],
                                metrics=t["metrics"], evaluator="bench@1")
        led.save(trial)
        trial.label_outcome("discard", actor, runner=rid, epoch=1, score=t["metrics"]["val_bpb"])
        led.save(trial)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    args = ap.parse_args()
    try:
        import mlflow  # noqa: F401
    except ImportError:
        sys.exit("MLflow is not installed: pip install -e '.[bench]' (mlflow-skinny, sqlalchemy, alembic)")
    trials = make_trials(args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "mlflow").mkdir()
        (root / "arledger").mkdir()
        os.environ["ARLEDGER_HOME"] = str(root / "home")
        cwd = os.getcwd()
        os.chdir(root / "mlflow")  # MLflow puts its artifact folder (mlruns/) in the working directory
        try:
            mlf = MLflowRecorder(root / "mlflow")
            arl = ArledgerRecorder(root / "arledger")
            t_mlf = t_arl = 0.0
            for t in trials:
                t0 = time.perf_counter()
                mlf.record(t)
                t1 = time.perf_counter()
                arl.record(t)
                t2 = time.perf_counter()
                t_mlf += t1 - t0
                t_arl += t2 - t1
        finally:
            os.chdir(cwd)
        t0 = time.perf_counter()
        rep = verify(arl.led)
        verify_s = time.perf_counter() - t0
        assert rep.ok, rep.problems[:3]
        arl.led.close()
        led = Ledger.open(f"sqlite:{root}/arledger/.arledger/ledger.db")
        events = led.size()
        led.close()
    print(json.dumps({
        "trials": args.trials, "mlflow_s": round(t_mlf, 3), "arledger_s": round(t_arl, 3),
        "ratio": round(t_mlf / t_arl, 2), "mlflow_ms_per_trial": round(t_mlf / args.trials * 1e3, 2),
        "arledger_ms_per_trial": round(t_arl / args.trials * 1e3, 2), "arledger_events": events,
        "arledger_signed_events": rep.signed_events, "arledger_verify_s": round(verify_s, 3),
        "mlflow_setup_s": round(mlf.setup_s, 3), "arledger_setup_s": round(arl.setup_s, 3),
        "mlflow_version": __import__("mlflow").__version__, "arledger_durability": "WAL, synchronous=FULL",
        "load": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()


