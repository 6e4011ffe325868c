"""Scoring one trial: the task's evaluator, in a separate process, from a fresh read-only copy.

:func:`evaluate` stages the evaluator-owned files afresh (never from the workspace), runs the
``evaluate`` command with the run output dirs, the wall seconds the *runner* measured and the
recipe's code bytes, under ``eval_s``, and reads ``result.json``. :func:`outcome_of` turns what it
found into the trial's label — a pure function of the evaluator's facts:

* the evaluator ran past its budget → ``eval_budget_overrun``;
* no readable result (or it exited non-zero without one) → ``crash``, with the evaluator's excerpt;
* its own label (``size_blocked``, ``disqualified``, ...) → that label, with the failed gates;
* a non-finite score → ``diverged``; no score → ``crash`` with its reason;
* otherwise → ``scored``: the evaluator's score stands. Whether it is a keep is the campaign's
  verdict, never the runner's.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import events as ev
from tasks import bwrap, classify, sandbox
from tasks import sandbox_plan as splan
from tasks import workspace as wsp
from tasks.spec import TaskSpec
from tasks.training import Slot, Training

RUNNER_LABELS = ("keep", "baseline", "runner_lost", "scored", "discard")
"""Labels an evaluator may not give: verdicts are the campaign's, ``runner_lost`` the reaper's."""


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str = ""
    excerpt: str = ""
    score: float | None = None


@dataclass
class Evaluation:
    evaluator: str  # name@evaluator sha (12 hex)
    evaluator_sha: str
    wall_s: float
    log_path: Path
    outcome: Outcome
    result: dict[str, Any] | None = None  # result.json, when one was written and readable
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    gates: list[ev.GateResult] = field(default_factory=list)

    @property
    def recorded(self) -> bool:
        """Whether the evaluator produced a result to record as TrialEvaluated."""
        return self.result is not None


def evaluate(spec: TaskSpec, *, tdir: Path, data_dir: Path, training: Training, code_bytes: int, slot: Slot,
             grace_s: float, stop: threading.Event, box: bwrap.Bubblewrap | None, limits: splan.Limits,
             gpus: tuple[splan.Gpu, ...]) -> Evaluation:
    """Run the evaluator (see the module doc) in its sandbox (``box`` None: ``--unsafe-no-sandbox``):
    it reads its staged copy, the runs and the task's data — and the workspace, read-only, only where
    the task's evaluate command names ``{ws}`` — and writes its result file alone."""
    edir = tdir / "eval"
    edir.mkdir(mode=0o700)
    eval_dir = wsp.stage_evaluator(spec, edir / "stage")
    result_path = edir / "result.json"
    template = spec.commands.evaluate
    walls = ",".join(f"{w:.4f}" for w in training.walls)
    values = {"python": sys.executable, "eval_dir": str(eval_dir), "runs": ",".join(str(r) for r in training.runs),
              "result": str(result_path), "data": str(data_dir), "task": str(spec.root),
              "train_wall_s": walls, "code_bytes": str(code_bytes), "heldout": str(data_dir / "heldout"),
              "ws": str(tdir / "ws")}
    argv = sandbox.Placeholders(values).argv(template)
    if "{train_wall_s}" not in template and "--train-wall-s" not in template:
        argv += ["--train-wall-s", walls]
    if "{code_bytes}" not in template and "--code-bytes" not in template:
        argv += ["--code-bytes", str(code_bytes)]
    threads = str(slot.threads)
    env = sandbox.harness_env({"CUDA_VISIBLE_DEVICES": slot.cuda_visible_devices, "ARLEDGER_DEVICE": slot.device,
                               "ARLEDGER_THREADS": threads, **{k: threads for k in sandbox.THREAD_VARS}})
    log_path = edir / "evaluate.log"
    plan = None if box is None else splan.evaluator_plan(
        eval_dir=eval_dir, runs=training.runs, data=data_dir, result=result_path, gpus=gpus, limits=limits,
        workspace=tdir / "ws" if "{ws}" in template else None)
    res = sandbox.run(argv, cwd=eval_dir, env=env, log_path=log_path, timeout_s=spec.budgets.eval_s,
                      grace_s=grace_s, stop=stop, gpu_devices=slot.cuda_visible_devices or None, plan=plan)
    sha = spec.evaluator_sha()
    result, problem = _read_result(result_path, res)
    r = result or {}
    score = _num(r.get("score"))
    raw_metrics = r.get("metrics") if isinstance(r.get("metrics"), dict) else {}
    metrics = {str(k): f for k, v in raw_metrics.items() if (f := _num(v)) is not None}
    raw_gates = r.get("gates") if isinstance(r.get("gates"), list) else []
    gates = [_gate(g) for g in raw_gates if isinstance(g, dict) and "name" in g]
    log_text = classify.log_tail(log_path)
    outcome = outcome_of(spec, res, result, problem, score, gates, log_text)
    return Evaluation(evaluator=f"{spec.name}@{sha[:12]}", evaluator_sha=sha, wall_s=res.wall_s, log_path=log_path,
                      outcome=outcome, result=result if not res.timed_out else None, score=score, metrics=metrics,
                      gates=gates)


def _read_result(path: Path, res: sandbox.RunResult) -> tuple[dict[str, Any] | None, str]:
    problem = ""
    if res.exit_status != 0:
        problem = f"the evaluator exited with status {res.exit_status if res.signal is None else -res.signal}"
    try:
        result = json.loads(path.read_text())
        if not isinstance(result, dict):
            raise ValueError("result.json is not an object")
    except (OSError, ValueError) as e:
        return None, problem or f"the evaluator wrote no readable result ({e})"
    return result, problem


def outcome_of(spec: TaskSpec, res: sandbox.RunResult, result: dict[str, Any] | None, problem: str,
               score: float | None, gates: list[ev.GateResult], log_text: str) -> Outcome:
    """The trial's label from what the evaluator did (see the module doc)."""
    if res.timed_out:
        return Outcome("eval_budget_overrun", f"the evaluator ran past eval_s={spec.budgets.eval_s:g}s",
                       classify.crash_excerpt(log_text, []))
    if result is None:
        return Outcome("crash", f"evaluator failed: {problem}",
                       classify.crash_excerpt(log_text, list(spec.evaluator_files)))
    label = result.get("label")
    reason = str(result.get("reason") or "")
    if label:
        if label not in ev.STATUSES or label in RUNNER_LABELS:
            return Outcome("crash", f"the evaluator returned a label it may not give ({label!r}): {reason}")
        failed = ", ".join(f"{g.name} {g.value:g} > {g.limit:g}" if g.value is not None and g.limit is not None
                           else g.name for g in gates if not g.passed)
        return Outcome(str(label), reason or failed or f"evaluator: {label}", score=score)
    if score is None:
        raw = result.get("score")
        if isinstance(raw, int | float) and not isinstance(raw, bool) and not math.isfinite(float(raw)):
            return Outcome("diverged", f"the evaluator's score is {raw}")
        return Outcome("crash", f"the evaluator gave no score: {reason or problem or 'no reason'}",
                       classify.crash_excerpt(log_text, list(spec.evaluator_files)) if problem else "")
    return Outcome("scored", reason, score=score)


def _gate(g: dict[str, Any]) -> ev.GateResult:
    return ev.GateResult(name=str(g["name"]), passed=bool(g.get("passed")), value=_num(g.get("value")),
                         limit=_num(g.get("limit")), detail=str(g.get("detail", ""))[:500])


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None
