"""Replaying a trial from the ledger alone, and checking out its code.

:func:`replay` rebuilds trial N's code from the ledger (the campaign's baseline snapshot plus the
diff chain, :func:`tasks.workspace.trial_files`), checks its tree hash against the one its
preflight recorded (``PreflightChecked.tree_sha``), then runs it again through the runner's own
pieces and sandboxes — data preparation (:class:`tasks.prepare.DataCache`), the workspace
(:func:`tasks.workspace.build_workspace`), training with the trial's recorded seeds (every seed of
its launch, :func:`tasks.training.seeds_for`) and threads (``TrialStarted.cpu_threads``),
sandboxed as :func:`tasks.pipeline.recipe_plans` says, and the task's evaluator
(:func:`tasks.evaluation.evaluate`) — and compares the new score with the recorded one.

**Agreement.** A trial trained on the CPU is replayed on the CPU and must give the recorded score
*exactly*: golf-mini with one thread is deterministic given its seed and a fixed number of steps, so
any difference is a finding (the recipe read something nondeterministic, or the clock cut the run
short). A trial trained on a GPU agrees when the two scores differ by no more than the campaign's
noise sd (kernels are not bitwise reproducible). ``tolerance`` overrides both.

**Nothing is recorded.** A replay is a check, not a trial: it appends no event to the campaign (its
trial table, verdicts and headline stay as they were) and no other event either; the report is
what it returns (``arledger replay --json`` prints it). A replay event would be a new type in
``ledger/events.py`` for a fact that is reproducible by running the command again.

:func:`checkout` writes a trial's code (its recipe files, as rebuilt) into a directory.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ledger import events as ev
from ledger.aggregates import Campaign
from ledger.app import Ledger
from tasks import bwrap
from tasks import sandbox_plan as splan
from tasks import workspace as wsp
from tasks.evaluation import evaluate
from tasks.pipeline import MAX_STORED_ARTIFACT, recipe_plans
from tasks.prepare import DataCache
from tasks.spec import TaskSpec, TaskSpecError, load_task
from tasks.training import Slot, seeds_for, train
from tasks.workroot import WorkRoot, default_work_root

GRACE_S = 3.0


class ReplayError(RuntimeError):
    """The trial cannot be replayed (or checked out); the message names the cause and the fix."""


@dataclass(frozen=True)
class Recorded:
    """What the ledger says about one trial, read from its own events."""

    campaign_id: uuid.UUID
    campaign: str
    number: int
    trial_id: uuid.UUID
    task: str  # the launch's task name
    task_ref: str  # the task the campaign was run with (a path or a built-in name)
    task_sha: str
    tree_sha: str | None  # its preflight's
    launched: bool  # a LaunchRequested: its preflight passed and a run was asked for
    seeds: list[int]
    threads: int
    accelerator: str
    score: float | None
    status: str | None
    artifact_sha: str | None
    noise_sd: float


@dataclass
class Replay:
    campaign: str
    number: int
    tree_sha: str
    recorded_tree_sha: str | None
    seeds: list[int]
    threads: int
    accelerator: str
    recorded_score: float | None
    recorded_status: str | None
    score: float | None = None
    status: str | None = None  # the replayed run's label (scored, or a failure)
    reason: str = ""
    tolerance: float = 0.0
    basis: str = ""  # how the tolerance was chosen
    artifact_identical: bool | None = None  # None: not comparable (several runs, or none stored)
    wall_s: list[float] = field(default_factory=list)

    @property
    def tree_ok(self) -> bool:
        return self.tree_sha == self.recorded_tree_sha

    @property
    def difference(self) -> float | None:
        if self.score is None or self.recorded_score is None:
            return None
        return self.score - self.recorded_score

    @property
    def agree(self) -> bool:
        d = self.difference
        return self.tree_ok and self.status == "scored" and d is not None and abs(d) <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update({"tree_ok": self.tree_ok, "difference": self.difference, "agree": self.agree})
        return d


def recorded(ledger: Ledger, campaign_id: uuid.UUID, number: int, noise_sd: float = 0.0) -> Recorded:
    """Trial ``number`` of the campaign, as its events recorded it."""
    camp = ledger.load(Campaign, campaign_id)
    if camp.opened is None:
        raise ReplayError(f"campaign {campaign_id} was never opened")
    tid = camp.trial_numbers.get(number)
    if tid is None:
        raise ReplayError(f"campaign {camp.opened.name} has no trial {number}")
    stream = list(ledger.stream(tid))
    prop = next((e for e in stream if isinstance(e, ev.TrialProposed)), None)
    if prop is None:
        raise ReplayError(f"trial {number} has no proposal in the ledger")
    if prop.kind == "imported":
        raise ReplayError(f"trial {camp.opened.name}/{number} is an imported record: it carries no code to "
                          "replay")
    launch = next((e for e in stream if isinstance(e, ev.LaunchRequested)), None)
    pre = next((e for e in reversed(stream) if isinstance(e, ev.PreflightChecked)), None)
    started = next((e for e in reversed(stream) if isinstance(e, ev.TrialStarted)), None)
    evaluated = next((e for e in reversed(stream) if isinstance(e, ev.TrialEvaluated)), None)
    finished = next((e for e in reversed(stream) if isinstance(e, ev.TrialFinished)), None)
    label = next((e for e in reversed(stream) if isinstance(e, ev.OutcomeLabelled)), None)
    score = evaluated.score if evaluated is not None else (label.score if label is not None else None)
    run = camp.opened.config.get("run") if isinstance(camp.opened.config.get("run"), dict) else {}
    return Recorded(
        campaign_id=campaign_id, campaign=camp.opened.name, number=number, trial_id=tid,
        task=launch.task if launch is not None else camp.opened.task,
        task_ref=str(run.get("task") or (launch.task if launch is not None else camp.opened.task)),
        task_sha=camp.opened.task_sha, tree_sha=pre.tree_sha if pre is not None else None,
        launched=launch is not None, seeds=list(launch.seeds) if launch is not None else [],
        threads=started.cpu_threads if started is not None and started.cpu_threads else 0,
        accelerator=started.accelerator if started is not None else "", score=score,
        status=label.status if label is not None else None,
        artifact_sha=finished.artifact_sha if finished is not None else None, noise_sd=noise_sd)


def task_for(rec: Recorded, given: str | Path | None = None) -> TaskSpec:
    """The task to replay with: ``given``, else the one the campaign was run with; it must be the
    task whose content the campaign recorded."""
    ref = str(given) if given is not None else rec.task_ref
    try:
        spec = load_task(ref)
    except TaskSpecError as e:
        raise ReplayError(f"the task {ref!r} of campaign {rec.campaign} cannot be loaded here ({e}); pass "
                          "--task PATH (the task directory it ran with)") from None
    if rec.task_sha and spec.content_sha() != rec.task_sha:
        raise ReplayError(f"the task at {spec.root} is not the one campaign {rec.campaign} ran (content "
                          f"{spec.content_sha()[:12]}, recorded {rec.task_sha[:12]}): a changed evaluator, recipe "
                          "or spec would not replay the trial; pass --task PATH of the task it ran with")
    return spec


def trial_code(ledger: Ledger, rec: Recorded) -> dict[str, str]:
    try:
        return wsp.trial_files(ledger, rec.trial_id)
    except wsp.WorkspaceError as e:
        raise ReplayError(f"trial {rec.campaign}/{rec.number}'s code cannot be rebuilt from the ledger: {e}") from None


def replay(ledger: Ledger, rec: Recorded, spec: TaskSpec, *, data_root: Path, gpus: tuple[int, ...] = (),
           tolerance: float | None = None, box: bwrap.Bubblewrap | None = None,
           progress: Callable[[str], None] = lambda _m: None) -> Replay:
    """Replay trial ``rec`` (see the module doc); nothing is written to the ledger."""
    if not rec.launched:
        raise ReplayError(f"trial {rec.campaign}/{rec.number} was never launched (its preflight failed, or it is "
                          "still being proposed): there is no run to replay; `arledger checkout` writes its code")
    on_gpu = bool(rec.accelerator) and rec.accelerator != "cpu"
    if on_gpu and not gpus:
        raise ReplayError(f"trial {rec.number} trained on {rec.accelerator}; replay it on a GPU host with "
                          "--gpus 0,...")
    progress("rebuilding the code from the ledger")
    files = trial_code(ledger, rec)
    threads = rec.threads or max(1, spec.resources.cpu_threads)
    out = Replay(campaign=rec.campaign, number=rec.number, tree_sha=wsp.tree_sha(files),
                 recorded_tree_sha=rec.tree_sha, seeds=seeds_for(rec.seeds, spec.noise.seeds_per_trial),
                 threads=threads, accelerator="cuda" if gpus else "cpu", recorded_score=rec.score,
                 recorded_status=rec.status)
    if tolerance is not None:
        out.tolerance, out.basis = float(tolerance), "given (--tolerance)"
    elif on_gpu:
        out.tolerance, out.basis = rec.noise_sd, "the campaign's noise sd (a GPU run is not bitwise reproducible)"
    else:
        out.tolerance, out.basis = 0.0, "exact (a CPU run with its seeds and threads is deterministic)"
    if not out.tree_ok:
        out.status, out.reason = "crash", (f"the code rebuilt from the ledger (tree {out.tree_sha[:12]}) is not the "
                                           f"code its preflight checked (tree {str(rec.tree_sha)[:12]}): run "
                                           "`arledger audit verify`")
        return out
    box = box or bwrap.probe()
    log: list[str] = []
    work = WorkRoot(default_work_root(), log.append)
    tdir = work.trial_dir(rec.trial_id, 0)
    try:
        hidden = [work.path, *(Path(p) for p in (ledger.home, ledger.cfg.path, os.environ.get("ARLEDGER_KEY")) if p)]
        cache = DataCache(data_root, log.append, box=box, hidden=hidden)
        progress("preparing the task's data")
        data_dir = cache.prepare(spec)
        ws, home = tdir / "ws", tdir / "home"
        wsp.build_workspace(spec, files, ws)
        slot = Slot(0, tuple(gpus), threads)
        limits = splan.limits_for(spec.resources.memory_mb, spec.resources.max_procs, 1)
        boxed = bwrap.gpus(list(gpus)) if gpus else ()
        plan_for = recipe_plans(spec, box, ws=ws, home=home, data_dir=data_dir, limits=limits, gpus=boxed)
        stop = threading.Event()
        progress(f"training with seed(s) {', '.join(map(str, out.seeds))} on {threads} thread(s)")
        tr = train(spec, seeds=out.seeds, ws=ws, tdir=tdir, train_view=data_dir / "train", slot=slot,
                   plan_for=plan_for, grace_s=GRACE_S, stop=stop, on_points=lambda _s, _p: None,
                   abandoned=lambda: False)
        out.wall_s = list(tr.walls)
        if tr.failure is not None:
            out.status, out.reason = tr.failure.label, tr.failure.reason
            return out
        out.artifact_identical = _same_artifact(tr.runs, spec.artifact, rec.artifact_sha)
        progress("evaluating")
        res = evaluate(spec, tdir=tdir, data_dir=data_dir, training=tr, code_bytes=wsp.code_bytes(spec, files),
                       slot=slot, grace_s=GRACE_S, stop=stop, box=box, limits=limits, gpus=boxed)
        out.status, out.reason, out.score = res.outcome.status, res.outcome.reason, res.outcome.score
        return out
    except wsp.WorkspaceError as e:
        out.status, out.reason = e.label, str(e)
        return out
    finally:
        wsp.remove_tree(tdir)


def _same_artifact(runs: list[Path], name: str, sha: str | None) -> bool | None:
    if len(runs) != 1 or not sha:
        return None
    p = runs[0] / name
    if not p.is_file() or p.is_symlink() or p.stat().st_size > MAX_STORED_ARTIFACT:
        return None
    return hashlib.sha256(p.read_bytes()).hexdigest() == sha


def checkout(ledger: Ledger, rec: Recorded, dest: Path, *, force: bool = False) -> tuple[dict[str, str], bool]:
    """Write trial ``rec``'s code into ``dest``; returns the files and whether their tree hash is
    the one its preflight recorded. A non-empty ``dest`` is refused unless ``force``."""
    files = trial_code(ledger, rec)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or dest.is_symlink()):
        raise ReplayError(f"{dest} exists and is not a directory; give a new or empty directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise ReplayError(f"{dest} is not empty; give a new or empty directory, or --force to write over "
                          "the files it has in common with the trial")
    root = dest.resolve()
    for path, text in sorted(files.items()):
        target = (root / path).resolve()
        if root not in target.parents:
            raise ReplayError(f"trial {rec.number}'s file {path!r} would land outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return files, wsp.tree_sha(files) == rec.tree_sha
