"""The life of one claimed attempt, from the code to the label — the runner's whole part of a trial.

:func:`run_attempt` does, recording each step through the :class:`~tasks.attempt.Attempt`:

1. rebuild the trial's code from the ledger (the campaign's baseline snapshot plus the diff chain)
   and check it against the tree hash its preflight recorded — the code that runs is the code that
   was checked, or the trial is not run;
2. ``TrialStarted`` (host, accelerator, versions, tree hash, slot, threads, GPUs, and the sandbox
   every command of the trial runs in: kind, version, mounts, limits, network);
3. prepare the task's data (once per host and task version);
4. build the workspace (``tasks.workspace``), train once per seed (``tasks.training``), a proposal
   watched by the task's early-stopping rule against the campaign's incumbent (``tasks.early_stop``);
5. store the artifacts and logs; ``RunStoppedEarly`` when the rule stopped it; ``TrialFinished`` (with
   the work planned and done); a failed run gets its label (``stopped_early``, ``crash``, ``truncated``
   ...) and ends here;
6. the evaluator (``tasks.evaluation``); ``TrialEvaluated``; the label: ``scored`` or the failure.

The runner's part ends at *scored*: what the score means for the campaign is the campaign's verdict.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledger import events as ev
from ledger.app import Ledger
from ledger.app import __version__ as ARLEDGER_VERSION
from tasks import bwrap
from tasks import sandbox_plan as splan
from tasks import workspace as wsp
from tasks.attempt import Attempt, LeaseLost
from tasks.early_stop import watch_for
from tasks.evaluation import evaluate
from tasks.prepare import DataCache
from tasks.spec import TaskSpec
from tasks.training import Slot, seeds_for, train

MAX_STORED_ARTIFACT = 512 << 20
"""The largest run output stored in the artifact store (larger ones are recorded by size only)."""


@dataclass(frozen=True)
class Host:
    """What an attempt needs from the runner that runs it."""

    box: bwrap.Bubblewrap | None  # the sandbox every command of the trial runs in (None: --unsafe-no-sandbox)
    slots: int  # the runner's slots: a trial's default memory share is the machine's / slots
    data: DataCache
    grace_s: float
    abandoned: Callable[[], bool]  # True once the attempt must stop recording (lease lost, hard stop)


def recorded_tree(attempt: Attempt) -> str | None:
    """The tree hash the trial's preflight recorded."""
    return next((e.tree_sha for e in attempt.trial.history if isinstance(e, ev.PreflightChecked)), None)


def run_attempt(att: Attempt, spec: TaskSpec, slot: Slot, tdir: Path, host: Host, accelerator: str) -> None:
    rid, ep = att.runner_id, att.epoch
    led = att.ledger
    launch = att.trial.launch
    assert launch is not None
    try:
        files = wsp.trial_files(led, att.trial_id)
    except wsp.WorkspaceError as e:
        att.label(e.label, reason=str(e))
        return
    tree = wsp.tree_sha(files)
    want = recorded_tree(att)
    if tree != want:
        att.label("crash", reason=f"harness error (not the recipe's): the code rebuilt from the ledger (tree "
                  f"{tree[:12]}) is not the code its preflight checked (tree {str(want)[:12]}); the baseline "
                  "snapshot or a diff in the artifact store changed — run `arledger audit verify`")
        return
    versions = {"python": platform.python_version(), "torch": _dist_version("torch"), "arledger": ARLEDGER_VERSION,
                "task": f"{spec.name}@{spec.version}", "task_sha": spec.content_sha(),
                "evaluator_sha": spec.evaluator_sha()}
    ws, home = tdir / "ws", tdir / "home"
    data_dir = host.data.path(spec)
    limits = splan.limits_for(spec.resources.memory_mb, spec.resources.max_procs, host.slots)
    gpus = bwrap.gpus(list(slot.gpus)) if host.box is not None and slot.gpus else ()

    plan_for = recipe_plans(spec, host.box, ws=ws, home=home, data_dir=data_dir, limits=limits, gpus=gpus)
    plan0 = plan_for(tdir / "out-0")
    used = host.box.record(plan0) if host.box is not None and plan0 is not None else \
        splan.unsandboxed_record("--unsafe-no-sandbox")
    att.append(lambda t: t.start(rid, ep, host=socket.gethostname(), accelerator=accelerator, versions=versions,
                                 tree_sha=tree, slot=slot.index, cpu_threads=slot.threads,
                                 cuda_visible_devices=slot.cuda_visible_devices, sandbox=used))
    try:
        host.data.prepare(spec)
    except Exception as e:  # noqa: BLE001 — a broken prepare is the harness's failure, labelled as such
        att.label("crash", reason=f"harness error (not the recipe's): data preparation failed: {e}")
        return
    try:
        wsp.build_workspace(spec, files, ws)
    except wsp.WorkspaceError as e:
        att.label(e.label, reason=str(e))
        return
    seeds = seeds_for(launch.seeds, spec.noise.seeds_per_trial)

    def on_points(seed: int, points: list[tuple[int, str, float]]) -> None:
        att.metric_prefix = f"seed{seed}/" if len(seeds) > 1 else ""
        att.add_points(points)

    abandoned = host.abandoned
    watch = watch_for(led, spec, att.trial)  # the incumbent's curve, as it stands now
    tr = train(spec, seeds=seeds, ws=ws, tdir=tdir, train_view=data_dir / "train", slot=slot, plan_for=plan_for,
               grace_s=host.grace_s, stop=att.stop, on_points=on_points, abandoned=abandoned, watch=watch)
    if abandoned() or tr.last is None:
        raise LeaseLost("stopped while training")
    last = tr.last
    stop = tr.stopped
    if stop is not None:
        r, ref = stop.rule, stop.reference
        att.flush_metrics()
        att.append(lambda t: t.stop_early(rid, ep, metric=r.metric, step=stop.step, value=stop.value,
                                          reference_id=ref.trial_id, reference_number=ref.number,
                                          reference_step=stop.reference_step, reference_value=stop.reference_value,
                                          margin=r.margin, after_step=r.after_step, compare=r.compare,
                                          direction=r.direction, reference_compute_s=ref.compute_s, rule=r.rule()))
    art_sha, art_bytes = _store_outputs(led, tr.runs, spec.artifact)
    log_sha, log_bytes = _store_logs(led, tr.logs)
    after = wsp.after_tree_sha(ws, exclude=set(wsp.staged_paths(spec)))
    cb = wsp.code_bytes(spec, files)
    att.flush_metrics()
    att.append(lambda t: t.finish(rid, ep, exit_status=last.exit_status, signal=last.signal,
                                  timed_out=last.timed_out, wall_s=sum(tr.walls), cpu_s=tr.cpu_s,
                                  peak_rss_bytes=tr.peak_rss_bytes, peak_gpu_bytes=tr.peak_gpu_bytes,
                                  artifact_sha=art_sha, artifact_bytes=art_bytes, code_bytes=cb, log_sha=log_sha,
                                  log_bytes=log_bytes, tree_sha_after=after, work_planned=tr.work_planned,
                                  work_done=tr.work_done, work_unit=spec.budgets.work_unit))
    att.begin_finishing()  # only the evaluation is left: the runner may claim this slot's next trial
    if tr.failure is not None:
        att.label(tr.failure.label, reason=tr.failure.reason, excerpt=tr.failure.excerpt)
        return
    res = evaluate(spec, tdir=tdir, data_dir=data_dir, training=tr, code_bytes=cb, slot=slot,
                   grace_s=host.grace_s, stop=att.stop, box=host.box, limits=limits, gpus=gpus)
    if abandoned():
        raise LeaseLost("stopped while evaluating")
    if res.recorded:
        elog = led.artifacts.put(res.log_path.read_bytes()) if res.log_path.exists() else None
        att.append(lambda t: t.record_evaluation(rid, ep, f"evaluator:{res.evaluator}", score=res.score,
                                                 metrics=res.metrics, gates=res.gates, evaluator=res.evaluator,
                                                 evaluator_sha=res.evaluator_sha, eval_wall_s=res.wall_s,
                                                 log_sha=elog))
    o = res.outcome
    att.label(o.status, reason=o.reason, excerpt=o.excerpt, score=o.score)


def recipe_plans(spec: TaskSpec, box: bwrap.Bubblewrap | None, *, ws: Path, home: Path, data_dir: Path,
                 limits: splan.Limits,
                 gpus: tuple[splan.Gpu, ...]) -> Callable[[Path], splan.SandboxPlan | None]:
    """The sandbox of each train run of a trial, by its output dir (None: ``--unsafe-no-sandbox``)."""

    def plan_for(out: Path) -> splan.SandboxPlan | None:
        if box is None:
            return None
        return splan.recipe_plan(ws=ws, out=out, home=home, train=data_dir / "train", staged=wsp.staged_paths(spec),
                                 limits=limits, gpus=gpus, network=spec.resources.network)

    return plan_for


def _store_outputs(led: Ledger, runs: list[Path], name: str) -> tuple[str | None, int]:
    """Each run's artifact into the store: (sha, bytes) of the one run's artifact, or with several
    runs of a manifest listing each run's (sha, bytes), and the largest size."""
    stored: list[tuple[str, str | None, int]] = []  # (run dir name, sha, bytes)
    for out in runs:
        p = out / name
        if not os.path.isfile(p) or os.path.islink(p):
            stored.append((out.name, None, 0))
            continue
        size = p.stat().st_size
        stored.append((out.name, led.artifacts.put(p.read_bytes()) if size <= MAX_STORED_ARTIFACT else None, size))
    if not stored:
        return None, 0
    if len(stored) == 1:
        return stored[0][1], stored[0][2]
    manifest = json.dumps({"artifact": name, "runs": [{"run": r, "sha": s, "bytes": b} for r, s, b in stored]},
                          sort_keys=True)
    return led.artifacts.put(manifest), max(b for _, _, b in stored)


def _store_logs(led: Ledger, logs: list[tuple[int, Path]]) -> tuple[str | None, int]:
    if not logs:
        return None, 0
    if len(logs) == 1:
        data = logs[0][1].read_bytes() if logs[0][1].exists() else b""
    else:
        parts = []
        for seed, p in logs:
            parts.append(f"===== seed {seed} =====\n".encode())
            parts.append(p.read_bytes() if p.exists() else b"")
        data = b"".join(parts)
    return led.artifacts.put(data), len(data)


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"
