"""Training one trial: the task's train command once per seed, in its workspace, under its budget.

`train` runs the seeds one after another, each in its sandbox (:func:`tasks.sandbox.run`), hands
every ``metric`` line to ``on_points`` and, when the task declares an early-stopping rule, to the
attempt's :class:`~tasks.early_stop.Watch` (a stop it calls for ends the run at once: the failure
``stopped_early``, the :class:`~tasks.early_stop.Stop` in ``Training.stopped``), and after each seed
checks what the run may not do: change a
staged evaluator file (``illegal_edit``), fail (``classify_run``'s label: crash, oom, diverged,
train_budget_overrun), leave links or special files in its output (``illegal_edit``), or, in a
work-bounded task, do less work than it planned (``truncated``: ``classify.work_shortfall``). The first
failure ends the trial's training. It returns a :class:`Training` value; recording it is the
caller's.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tasks import classify, sandbox
from tasks import workspace as wsp
from tasks.early_stop import Stop, Watch
from tasks.sandbox_plan import SandboxPlan
from tasks.spec import TaskSpec


@dataclass(frozen=True)
class Failure:
    label: str
    reason: str
    excerpt: str = ""


@dataclass(frozen=True)
class Slot:
    """Where a trial runs on its runner: the slot's index, GPUs and CPU threads."""

    index: int
    gpus: tuple[int, ...]
    threads: int

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(str(g) for g in self.gpus)

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"


@dataclass
class Training:
    seeds: list[int]
    runs: list[Path] = field(default_factory=list)  # each seed's output dir, in order
    walls: list[float] = field(default_factory=list)  # the runner's wall seconds per run
    logs: list[tuple[int, Path]] = field(default_factory=list)  # (seed, log file)
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    peak_gpu_bytes: int = 0
    last: sandbox.RunResult | None = None
    failure: Failure | None = None
    stopped: Stop | None = None  # the early-stopping rule ended the run
    work_planned: float | None = None  # summed over the runs that reported it (work-bounded tasks)
    work_done: float | None = None

    def add_work(self, planned: float | None, done: float | None) -> None:
        if planned is not None:
            self.work_planned = (self.work_planned or 0.0) + planned
        if done is not None:
            self.work_done = (self.work_done or 0.0) + done


def seeds_for(given: list[int], n: int) -> list[int]:
    """The launch's seeds, distinct, topped up to ``n`` with the next integers."""
    seeds = list(dict.fromkeys(int(s) for s in given)) or [0]
    nxt = max(seeds) + 1
    while len(seeds) < n:
        seeds.append(nxt)
        nxt += 1
    return seeds


def train(spec: TaskSpec, *, seeds: list[int], ws: Path, tdir: Path, train_view: Path, slot: Slot,
          plan_for: Callable[[Path], SandboxPlan | None], grace_s: float, stop: threading.Event,
          on_points: Callable[[int, list[tuple[int, str, float]]], None],
          abandoned: Callable[[], bool], watch: Watch | None = None) -> Training:
    """Run every seed (see the module doc), each in the sandbox ``plan_for(output dir)`` gives (None:
    ``--unsafe-no-sandbox``). ``on_points(seed, points)`` gets each run's metric points as they are
    printed; ``abandoned()`` says the attempt is over (lease lost, hard stop): training stops at once
    and the caller records nothing."""
    home = tdir / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    staged = wsp.staged_paths(spec)
    expected = wsp.expected_evaluator_hashes(spec, staged)
    out = Training(seeds=seeds)
    cvd = slot.cuda_visible_devices
    for i, seed in enumerate(seeds):
        run_dir = tdir / f"out-{i}"
        run_dir.mkdir(mode=0o700)
        env = sandbox.trial_env(home=home, data=train_view, out=run_dir, seed=seed, threads=slot.threads,
                                time_budget_s=spec.budgets.train_s, device=slot.device, cuda_visible_devices=cvd)
        argv = sandbox.Placeholders({"python": sys.executable, "ws": str(ws), "out": str(run_dir),
                                     "seed": str(seed), "threads": str(slot.threads),
                                     "data": str(train_view)}).argv(spec.commands.train)
        log_path = tdir / "logs" / f"train-{i}.log"
        run_stop = _Either(stop)
        work: dict[str, float] = {}  # this run's latest work_planned / work_done

        def on_line(line: str, seed: int = seed, run_stop: _Either = run_stop, work: dict[str, float] = work) -> None:
            if line.startswith("metric"):
                pts = classify.parse_metric_lines(line)
                for _, name, value in pts:
                    if name in (classify.WORK_PLANNED, classify.WORK_DONE):
                        work[name] = value
                if pts:
                    on_points(seed, pts)
                    if watch is not None and watch.see(pts) is not None:
                        run_stop.set()

        res = sandbox.run(argv, cwd=ws, env=env, log_path=log_path, timeout_s=spec.budgets.train_s,
                          grace_s=grace_s, plan=plan_for(run_dir), on_line=on_line, stop=run_stop,
                          gpu_devices=cvd if cvd else None, sweep_roots=[ws, run_dir, home])
        if abandoned():
            return out
        out.last = res
        out.logs.append((seed, log_path))
        out.runs.append(run_dir)
        out.walls.append(res.wall_s)
        out.cpu_s += res.cpu_s
        out.peak_rss_bytes = max(out.peak_rss_bytes, res.peak_rss_bytes)
        out.peak_gpu_bytes = max(out.peak_gpu_bytes, res.peak_gpu_bytes)
        out.add_work(work.get(classify.WORK_PLANNED), work.get(classify.WORK_DONE))
        if res.stopped and not stop.is_set() and watch is not None and watch.fired is not None:
            out.stopped = watch.fired
            changed = wsp.evaluator_changes(spec, ws, expected)
            out.failure = Failure("illegal_edit", f"the run changed evaluator-owned file(s): {', '.join(changed)}") \
                if changed else Failure("stopped_early", watch.fired.reason)
            return out
        out.failure = _check_run(spec, res, ws, run_dir, log_path, expected, seed if len(seeds) > 1 else None)
        if out.failure is None and spec.budgets.work_bounded:
            short = classify.work_shortfall(work.get(classify.WORK_PLANNED), work.get(classify.WORK_DONE),
                                            spec.budgets.work_unit)
            if short is not None:
                out.failure = Failure("truncated", f"seed {seed}: {short}" if len(seeds) > 1 else short,
                                      classify.log_tail(log_path)[-classify.EXCERPT_MAX:].strip())
        if out.failure is not None:
            return out
    return out


class _Either(threading.Event):
    """Set when it is set itself (the early-stopping rule fired) or when ``other`` (the attempt's
    stop) is: what :func:`tasks.sandbox.run` watches to end a run."""

    def __init__(self, other: threading.Event):
        super().__init__()
        self.other = other

    def is_set(self) -> bool:
        return super().is_set() or self.other.is_set()


def _check_run(spec: TaskSpec, res: sandbox.RunResult, ws: Path, run_dir: Path, log_path: Path,
               expected: dict[str, str], seed: int | None) -> Failure | None:
    changed = wsp.evaluator_changes(spec, ws, expected)
    if changed:
        return Failure("illegal_edit", f"the run changed evaluator-owned file(s): {', '.join(changed)}")
    art = run_dir / spec.artifact
    present = os.path.isfile(art) and not os.path.islink(art)
    label, reason, excerpt = classify.classify_run(res.exit_status, res.signal, res.timed_out,
                                                   classify.log_tail(log_path), list(spec.recipe_files), "train",
                                                   artifact_present=present)
    if res.error:
        label, reason = "crash", res.error
    if label is not None:
        return Failure(label, f"seed {seed}: {reason}" if seed is not None else reason, excerpt)
    bad = links_in(run_dir)
    if bad:
        return Failure("illegal_edit", f"the run's output contains links or special files: {', '.join(bad)}")
    return None


def links_in(root: Path) -> list[str]:
    """Symlinks, hard links and special files under ``root`` (at most 10), relative to it."""
    bad = []
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if not (os.path.isdir(p) and not os.path.islink(p)) and not (
                    os.path.isfile(p) and not os.path.islink(p)):
                bad.append(os.path.relpath(p, root))
            elif os.path.isfile(p) and st.st_nlink > 1:
                bad.append(os.path.relpath(p, root) + " (hard link)")
    return bad[:10]
