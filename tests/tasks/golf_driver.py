"""A runner-free driver for golf-mini (tests and hand measurements): stage -> train -> evaluate.

Follows the runtime contract in tasks/SPEC.md: the workspace is a copy of the recipe plus the
``stage_into_workspace`` files (read-only, at their task-relative paths); train runs there with a
scrubbed environment that names only the *train* split; the evaluator runs from its own staged copy.

    python -m tests.tasks.golf_driver --data /tmp/gdata --seeds 1,2,3 [--set LR=3e-3 ...]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from tasks.knobs import set_knob

TASK = Path(__file__).resolve().parents[2] / "tasks" / "builtin" / "golf_mini"


def _spec(task: Path) -> dict:
    return tomllib.loads((task / "task.toml").read_text())


def stage_workspace(ws: Path, task: Path = TASK, edits: dict[str, str] | None = None) -> int:
    """Build a workspace in ``ws``; ``edits`` replaces recipe files' text. Returns the code bytes."""
    spec = _spec(task)["task"]
    shutil.copytree(task / spec["recipe_dir"], ws, ignore=shutil.ignore_patterns("__pycache__"))
    for rel, text in (edits or {}).items():
        (ws / rel).write_text(text)
    for rel in spec.get("stage_into_workspace", []):
        dest = ws / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(task / rel, dest)
        dest.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return sum((ws / f).stat().st_size for f in spec["recipe_files"])


def train_env(data_train: Path, out: Path, seed: int, threads: int = 2, budget_s: float = 0) -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(ARLEDGER_DATA=str(data_train), ARLEDGER_OUT=str(out), ARLEDGER_SEED=str(seed),
               ARLEDGER_THREADS=str(threads), ARLEDGER_TIME_BUDGET_S=str(budget_s),
               ARLEDGER_DEVICE="cpu", CUDA_VISIBLE_DEVICES="")
    return env


def train(ws: Path, data: Path, out: Path, seed: int, timeout: float = 600, budget_s: float = 0,
          threads: int = 2):
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "train.py"], cwd=ws, env=train_env(data / "train", out, seed,
                          threads=threads, budget_s=budget_s), capture_output=True, text=True, timeout=timeout)
    return proc, time.time() - t0


def child_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def evaluate(runs: list[Path], data: Path, result: Path, code_bytes: int, wall_s: list[float],
             task: Path = TASK, stage: Path | None = None, timeout: float = 600, threads: int = 2):
    """Stage the evaluator files into ``stage`` (default: beside ``result``) and run evaluate.py."""
    spec = _spec(task)["task"]
    stage = stage or result.parent / "eval_stage"
    for rel in spec["evaluator_files"]:
        dest = stage / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(task / rel, dest)
    eval_dir = stage / "evaluator"
    t0 = time.time()
    cmd = [sys.executable, str(eval_dir / "evaluate.py"), "--runs", ",".join(map(str, runs)),
           "--heldout", str(data / "heldout"), "--result", str(result),
           "--train-wall-s", ",".join(f"{w:.3f}" for w in wall_s), "--code-bytes", str(code_bytes)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=train_env(data, result.parent, 0, threads=threads))
    res = json.loads(result.read_text()) if result.exists() else None
    return proc, res, time.time() - t0


def set_knobs(text: str, knobs: dict[str, object]) -> str:
    """``knobs`` values are Python values, or strings holding Python literals."""
    for name, value in knobs.items():
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass  # a bare string such as rope
        text = set_knob(text, name, value)
    return text


def trial(root: Path, data: Path, seed: int, knobs: dict[str, object] | None = None,
          patches: list[tuple[str, str]] | None = None, threads: int = 2) -> dict:
    ws = root / "ws"
    text = (TASK / "recipe" / "train.py").read_text()
    for find, replace in patches or []:
        assert text.count(find) == 1, find
        text = text.replace(find, replace)
    code_bytes = stage_workspace(ws, edits={"train.py": set_knobs(text, knobs or {})})
    out = root / "out"
    c0 = child_cpu_s()
    proc, wall = train(ws, data, out, seed, threads=threads, timeout=3600)
    train_cpu = child_cpu_s() - c0
    (root / "train.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return {"seed": seed, "train_s": wall, "error": proc.stderr[-2000:]}
    c0 = child_cpu_s()
    eproc, res, eval_s = evaluate([out], data, root / "result.json", code_bytes, [wall], threads=threads)
    eval_cpu = child_cpu_s() - c0
    return {"seed": seed, "train_s": round(wall, 2), "eval_s": round(eval_s, 2),
            "train_cpu_s": round(train_cpu, 1), "eval_cpu_s": round(eval_cpu, 1),
            "score": res and res["score"], "result": res, "eval_stderr": eproc.stderr[-2000:],
            "train_tail": proc.stdout[-400:]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--set", action="append", default=[], help="KNOB=VALUE (python literal)")
    ap.add_argument("--patch", action="append", default=[], help="name of a [[patches]] entry")
    ap.add_argument("--work", type=Path, default=Path("/tmp/golf_driver"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    knobs = dict(s.split("=", 1) for s in args.set)
    by_name = {p["name"]: p for p in _spec(TASK).get("patches", [])}
    patches = [(by_name[n]["find"], by_name[n]["replace"]) for n in args.patch]
    scores = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        root = args.work / f"seed{seed}"
        shutil.rmtree(root, ignore_errors=True)
        r = trial(root, args.data, seed, knobs, patches, threads=args.threads)
        if "error" in r or r["score"] is None:
            print(json.dumps({k: v for k, v in r.items() if k != "result"}, indent=1))
            continue
        scores.append(r["score"])
        m = r["result"]["metrics"]
        print(f"seed={seed} val_bpb={r['score']:.4f} train_s={r['train_s']} eval_s={r['eval_s']} "
              f"cpu_s={r['train_cpu_s']}/{r['eval_cpu_s']} bytes={m['artifact_bytes']} params={m['params']} "
              f"load={os.getloadavg()[0]:.1f}", flush=True)
    if len(scores) > 1:
        import statistics
        print(f"mean={statistics.mean(scores):.4f} sd={statistics.stdev(scores):.4f} n={len(scores)} "
              f"values={[round(s, 4) for s in scores]}")


if __name__ == "__main__":
    main()
