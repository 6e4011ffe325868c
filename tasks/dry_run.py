"""A task's dry run: prepare, the baseline's training for one seed and the evaluator, for real.

``arledger tasks check PATH --dry-run`` calls :func:`dry_run`, which runs what a campaign's
baseline trial would run, through the same code the runner uses and in the same sandboxes — data
preparation (:class:`tasks.prepare.DataCache`), the workspace (:func:`tasks.workspace.build_workspace`
from the baseline snapshot), training (:func:`tasks.training.train`, sandboxed as
:func:`tasks.pipeline.recipe_plans` says) and scoring (:func:`tasks.evaluation.evaluate`) — but
writes no ledger: it reports each step's time against its budget, what the run reported (its
``metric`` lines), the label the trial would get and the evaluator's score. The first failing step
ends it, with the reason and the log excerpt a trial would record.

By default prepare runs into a fresh data directory (so a broken prepare shows now, not mid
campaign); ``data_root`` reuses a cache (a runner's ``--data-root``).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tasks import bwrap
from tasks import sandbox_plan as splan
from tasks import workspace as wsp
from tasks.evaluation import evaluate
from tasks.pipeline import recipe_plans
from tasks.prepare import DataCache
from tasks.spec import TaskSpec
from tasks.training import Slot, train
from tasks.workroot import WorkRoot, default_work_root

GRACE_S = 3.0
"""Seconds between SIGTERM and SIGKILL at a budget's end (the runner's default)."""


@dataclass(frozen=True)
class Step:
    name: str  # prepare | workspace | train | evaluate
    seconds: float
    ok: bool
    detail: str = ""
    budget_s: float | None = None


@dataclass
class DryRun:
    task: str
    seed: int
    sandbox: str  # "bubblewrap 0.8.0 (rlimit + v2 pids cgroup)" or "none"
    steps: list[Step] = field(default_factory=list)
    label: str | None = None  # the label the baseline trial would get: scored, or a failure label
    score: float | None = None
    reason: str = ""
    excerpt: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # the evaluator's
    last_step: int | None = None  # what the run reported on its metric lines
    reported: dict[str, float] = field(default_factory=dict)
    artifact_bytes: int = 0
    code_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.label == "scored" and self.score is not None

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.steps)


def dry_run(spec: TaskSpec, *, seed: int = 0, data_root: Path | None = None, gpus: tuple[int, ...] = (),
            keep: bool = False, log: Callable[[str], None] = lambda _m: None,
            box: bwrap.Bubblewrap | None = None) -> DryRun:
    """Run the baseline of ``spec`` once (see the module doc). ``box``: the sandbox (default: the
    one this host offers, :func:`tasks.bwrap.probe` — its SandboxUnavailable names what to fix);
    ``gpus``: the GPU indices to train on (the task's gpus_per_trial of them); ``keep``: leave the
    trial directory (its path is logged)."""
    box = box or bwrap.probe()
    res = DryRun(task=spec.name, seed=seed, sandbox=f"{box.kind} {box.version} ({box.process_limit})")
    work = WorkRoot(default_work_root(), log)
    tdir = work.trial_dir(uuid.uuid4(), 0)
    tmp_data = None
    try:
        if data_root is None:
            tmp_data = Path(tempfile.mkdtemp(prefix="arledger-dry-data-"))
            os.chmod(tmp_data, 0o755)
        hidden = [work.path, *(Path(p) for p in (os.environ.get("ARLEDGER_KEY"),) if p)]
        if Path(".arledger").is_dir():
            hidden.append(Path(".arledger").resolve())  # the default ledger of this folder
        cache = DataCache(data_root or tmp_data or Path(), log, box=box, hidden=hidden)
        _run(spec, res, cache, tdir, seed, gpus, box, fresh=tmp_data is not None)
    finally:
        if keep:
            log(f"kept the trial directory {tdir}")
        else:
            wsp.remove_tree(tdir)
        if tmp_data is not None:
            wsp.remove_tree(tmp_data)
    return res


def _run(spec: TaskSpec, res: DryRun, cache: DataCache, tdir: Path, seed: int, gpus: tuple[int, ...],
         box: bwrap.Bubblewrap, *, fresh: bool) -> None:
    t0 = time.monotonic()
    try:
        data_dir = cache.prepare(spec)
    except Exception as e:  # noqa: BLE001 — a broken prepare is reported, as a trial would record it
        res.steps.append(Step("prepare", time.monotonic() - t0, False, str(e)))
        res.label, res.reason = "crash", f"harness error (not the recipe's): data preparation failed: {e}"
        return
    where = "a fresh data folder (removed afterwards)" if fresh else str(data_dir)
    res.steps.append(Step("prepare", time.monotonic() - t0, True, where if spec.commands.prepare else
                          f"no prepare command: empty train/ and heldout/ in {where}"))

    t0 = time.monotonic()
    ws, home = tdir / "ws", tdir / "home"
    files = wsp.baseline_files(spec)
    try:
        wsp.build_workspace(spec, files, ws)
    except wsp.WorkspaceError as e:
        res.steps.append(Step("workspace", time.monotonic() - t0, False, str(e)))
        res.label, res.reason = e.label, str(e)
        return
    res.code_bytes = wsp.code_bytes(spec, files)
    res.steps.append(Step("workspace", time.monotonic() - t0, True,
                          f"{len(files)} file(s), recipe code {res.code_bytes:,} bytes"))

    slot = Slot(0, tuple(gpus), max(1, spec.resources.cpu_threads))
    limits = splan.limits_for(spec.resources.memory_mb, spec.resources.max_procs, 1)
    boxed_gpus = bwrap.gpus(list(gpus)) if gpus else ()
    plan_for = recipe_plans(spec, box, ws=ws, home=home, data_dir=data_dir, limits=limits, gpus=boxed_gpus)
    stop = threading.Event()

    def on_points(_seed: int, points: list[tuple[int, str, float]]) -> None:
        for step, name, value in points:
            res.last_step = step if res.last_step is None else max(res.last_step, step)
            res.reported[name] = value

    t0 = time.monotonic()
    tr = train(spec, seeds=[seed], ws=ws, tdir=tdir, train_view=data_dir / "train", slot=slot,
               plan_for=plan_for, grace_s=GRACE_S, stop=stop, on_points=on_points, abandoned=lambda: False)
    wall = tr.walls[0] if tr.walls else time.monotonic() - t0
    art = tr.runs[0] / spec.artifact if tr.runs else None
    present = art is not None and art.is_file() and not art.is_symlink()
    res.artifact_bytes = art.stat().st_size if art is not None and present else 0
    if tr.failure is not None:
        res.steps.append(Step("train", wall, False, tr.failure.reason, spec.budgets.train_s))
        res.label, res.reason, res.excerpt = tr.failure.label, tr.failure.reason, tr.failure.excerpt
        return
    wrote = f"seed {seed}; wrote {spec.artifact} ({res.artifact_bytes:,} bytes)"
    res.steps.append(Step("train", wall, True, wrote, spec.budgets.train_s))

    ev = evaluate(spec, tdir=tdir, data_dir=data_dir, training=tr, code_bytes=res.code_bytes, slot=slot,
                  grace_s=GRACE_S, stop=stop, box=box, limits=limits, gpus=boxed_gpus)
    o = ev.outcome
    res.label, res.score, res.reason, res.excerpt = o.status, o.score, o.reason, o.excerpt
    res.metrics = ev.metrics
    ok = o.status == "scored" and o.score is not None
    detail = (f"{spec.metric} = {o.score:.6g} by {ev.evaluator}" if ok
              else f"{o.status}: {o.reason}" + (f" [{o.excerpt}]" if o.excerpt else ""))
    res.steps.append(Step("evaluate", ev.wall_s, ok, detail, spec.budgets.eval_s))
