"""`arledger tasks | runner | trial submit`: tasks, the runner daemon, and submitting a trial by hand.

    arledger tasks list                         the built-in tasks
    arledger tasks show NAME                    one task's spec: surfaces, knobs, budgets, gates, hashes
    arledger tasks new DIR --from train.py      scaffold a task from a training script
    arledger tasks check PATH [--dry-run]       validate a task directory; --dry-run runs its baseline once
    arledger runner [--slots N] [--gpus 0,1] [--gpus-per-trial K] [--lease S] [--heartbeat S] [--once]
    arledger trial submit --task T --diff FILE --hypothesis TEXT [--campaign NAME] [--parent N]
"""

from __future__ import annotations

import getpass
import os
import sys
import threading
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from arledger.options import LEDGER, open_ledger


def _console() -> Console:
    return Console(soft_wrap=True, highlight=False)


def register(cli: click.Group) -> None:
    cli.add_command(tasks_group)
    cli.add_command(runner_cmd)
    cli.add_command(trial_group)


# -------------------------------------------------------------------------------------------------
# tasks


@click.group("tasks")
def tasks_group() -> None:
    """Task specs: the built-in tasks, one task's details, validating a task directory."""


@tasks_group.command("list")
def tasks_list() -> None:
    """The built-in tasks."""
    from tasks.spec import TaskSpecError, builtin_tasks, load_task

    t = Table("task", "version", "metric", "budget (train/eval s)", "description", box=None)
    for name in builtin_tasks():
        try:
            s = load_task(name)
        except TaskSpecError as e:
            t.add_row(name, "?", "?", "?", f"[red]broken: {e}[/red]")
            continue
        t.add_row(s.name, s.version, f"{s.metric} ({s.direction})", f"{s.budgets.train_s:g}/{s.budgets.eval_s:g}",
                  s.description)
    _console().print(t)


@tasks_group.command("new")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--from", "recipe", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The training script to build the task around (copied unchanged into recipe/).")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A text corpus to keep with the task (copied into data/, pinned by sha256 in prepare.py).")
@click.option("--name", default=None, help="The task's name (default: the directory's name).")
@click.option("--metric", default="val_loss", show_default=True, help="The score the evaluator returns.")
@click.option("--direction", type=click.Choice(["min", "max"]), default="min", show_default=True)
def tasks_new(directory: Path, recipe: Path, data: Path | None, name: str | None, metric: str,
              direction: str) -> None:
    """Scaffold a task from a training script: the recipe, task.toml with its literals proposed as
    knobs, an evaluator that loads a state dict, a prepare step, and a README of what to fill in."""
    from tasks.scaffold import scaffold

    s = scaffold(directory, recipe, name=name, metric=metric, direction=direction, data=data)
    c = _console()
    c.print(f"task [bold]{s.name}[/bold] scaffolded in {s.root}:")
    for f in s.files:
        c.print(f"  {f.relative_to(s.root)}")
    c.print(f"{len(s.knobs)} knob(s) proposed (commented) in task.toml"
            + (f"; model classes copied to evaluator/model.py: {', '.join(s.model.classes)}"
               if s.model.classes else "; no model class found: write evaluator/model.py"))
    c.print(f"next: fill in what {s.root / 'README.md'} lists, then "
            f"`arledger tasks check {s.root} --dry-run`")


@tasks_group.command("show")
@click.argument("name")
def tasks_show(name: str) -> None:
    """One task: where it lives, commands, budgets, gates, noise, surfaces and knobs, hashes."""
    from tasks.spec import load_task

    s = load_task(name)
    c = _console()
    c.print(f"[bold]{s.name}[/bold] v{s.version} — {s.description}")
    c.print(f"dir          {s.root}")
    c.print(f"metric       {s.metric} ({s.direction})")
    c.print(f"recipe       {s.recipe_dir}/: {', '.join(s.recipe_files)}   artifact {s.artifact}")
    c.print(f"evaluator    {', '.join(s.evaluator_files)}"
            + (f"   staged: {', '.join(s.stage_into_workspace)}" if s.stage_into_workspace else ""))
    c.print(f"commands     train: {s.commands.train}")
    c.print(f"             evaluate: {s.commands.evaluate}")
    if s.commands.prepare:
        c.print(f"             prepare: {s.commands.prepare}")
    c.print(f"budgets      preflight {s.budgets.preflight_s:g}s, train {s.budgets.train_s:g}s, "
            f"eval {s.budgets.eval_s:g}s")
    g = s.gates
    gates = []
    if g.artifact_max_bytes:
        gates.append(f"artifact <= {g.artifact_max_bytes:,} B")
    if g.accuracy_metric:
        gates.append(f"{g.accuracy_metric} >= {g.accuracy_min}")
    c.print(f"gates        {', '.join(gates) or 'none'}")
    n = s.noise
    c.print(f"noise        {n.seeds_per_trial} seed(s)/trial, {n.confirmation_runs} confirmation run(s), "
            f"min_delta {n.min_delta:g}, k {n.k:g}, sd {n.sd:g}")
    c.print(f"resources    {s.resources.gpus_per_trial} GPU(s), {s.resources.cpu_threads} CPU thread(s)")
    c.print(f"content sha  {s.content_sha()}")
    c.print(f"evaluator    {s.evaluator_sha()}")
    t = Table("surface", "files", "regions", "knobs", box=None)
    for sf in s.surfaces.values():
        t.add_row(sf.name, ", ".join(sf.files), ", ".join(sf.regions) or "(whole files)",
                  ", ".join(f"{k.name} {k.type}" for k in sf.knobs))
    c.print(t)
    if s.specialists:
        c.print("specialists  " + ", ".join(f"{sp.name} ({sp.surface})" for sp in s.specialists))


@tasks_group.command("check")
@click.argument("path")
@click.option("--dry-run", is_flag=True,
              help="Also run prepare, the baseline's training for one seed and the evaluator, in the real "
                   "sandbox, and report each step's time and the score (nothing is written to a ledger).")
@click.option("--seed", type=int, default=0, show_default=True, help="The seed of the dry run's training.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Prepare into (or reuse) this data cache, as a runner's --data-root (default: a fresh "
                   "folder, removed afterwards).")
@click.option("--gpus", default=None, metavar="0,1,...", help="GPU indices for a task that trains on GPUs.")
@click.option("--keep", is_flag=True,
              help="Keep the dry run's workspace, outputs and logs (the path is printed).")
def tasks_check(path: str, dry_run: bool, seed: int, data_root: Path | None, gpus: str | None,
                keep: bool) -> None:
    """Validate a task directory (or task.toml): every key, files, knobs, patches, data hashes;
    with --dry-run, run its baseline once, for real."""
    from rich.markup import escape

    from tasks.spec_check import check_task

    results = check_task(path)
    c = _console()
    for r in results:
        mark = "[yellow]hint[/yellow]" if r.hint else "[green]ok  [/green]" if r.ok else "[red]FAIL[/red]"
        c.print(f"{mark} {escape(r.name)}: {escape(r.detail)}")
    bad = [r for r in results if not r.ok]
    if bad:
        raise click.ClickException(f"{len(bad)} of {len(results)} checks failed (first: {bad[0].name}: "
                                   f"{bad[0].detail})")
    c.print(f"{len(results)} checks passed")
    if dry_run:
        _dry_run(path, seed, data_root, _parse_gpus(gpus), keep)


def _dry_run(path: str, seed: int, data_root: Path | None, gpus: list[int], keep: bool) -> None:
    from rich.markup import escape

    from tasks.bwrap import SandboxUnavailable
    from tasks.dry_run import dry_run
    from tasks.spec import load_task

    spec = load_task(path)
    need = spec.resources.gpus_per_trial
    if need and len(gpus) < need:
        example = ",".join(map(str, range(need)))
        raise click.ClickException(f"task {spec.name} trains on {need} GPU(s) per trial; give --gpus with at "
                                   f"least {need} GPU indices (e.g. --gpus {example})")
    c = _console()
    c.print(f"dry run of {spec.name}: prepare, the baseline's training (seed {seed}) and the evaluator")
    try:
        with Console(stderr=True).status("running the baseline…"):
            res = dry_run(spec, seed=seed, data_root=data_root, gpus=tuple(gpus[:need]) if need else (),
                          keep=keep, log=lambda m: c.print(f"[dim]{escape(m)}[/dim]"))
    except SandboxUnavailable as e:
        raise click.ClickException(f"cannot sandbox the dry run: {e}") from None
    c.print(f"sandbox: {escape(res.sandbox)}")
    for st in res.steps:
        mark = "[green]ok  [/green]" if st.ok else "[red]FAIL[/red]"
        took = f"{st.seconds:.1f}s" + (f" of {st.budget_s:g}s" if st.budget_s else "")
        c.print(f"{mark} {st.name:<9} {took:>14}  {escape(st.detail)}")
    if res.reported:
        c.print("reported " + escape(", ".join(f"{k}={v:.5g}" for k, v in sorted(res.reported.items())))
                + (f" at step {res.last_step}" if res.last_step is not None else "")
                + " (its metric lines; informational)")
    elif res.ok:
        c.print("reported nothing: print `metric loss=... step=N` lines to see training progress in "
                "`arledger run`")
    if not res.ok:
        failed = next((s for s in res.steps if not s.ok), None)
        if res.excerpt:
            c.print("excerpt: " + escape(res.excerpt))
        where = failed.name if failed is not None else "the end"
        raise click.ClickException(f"dry run failed at {where}: {res.label}: {res.reason}")
    train = next(s for s in res.steps if s.name == "train")
    c.print(f"[green]dry run passed[/green]: the baseline scores {spec.metric} {res.score:.6g} "
            f"in {res.total_s:.1f}s (training {train.seconds:.1f}s of its {spec.budgets.train_s:g}s budget)")
    if train.seconds > 0.8 * spec.budgets.train_s:
        used = 100 * train.seconds / spec.budgets.train_s
        c.print(f"[yellow]note[/yellow]: the baseline used {used:.0f}% of train_s; a proposal that trains a "
                "little longer is stopped (train_budget_overrun): raise train_s")


# -------------------------------------------------------------------------------------------------
# runner


def _parse_gpus(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give GPU indices like 0,1,2") from None


@click.command("runner")
@LEDGER
@click.option("--slots", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Trials run at once on this host.")
@click.option("--gpus", default=None, metavar="0,1,...", help="GPU indices this runner may use.")
@click.option("--gpus-per-trial", type=click.IntRange(0, 64), default=0, show_default=True,
              help="GPUs per trial (slots become GPU sets).")
@click.option("--lease", "lease_s", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="Lease length in seconds, renewed every lease/3 while a trial runs. Shorter: a dead "
                   "runner's trials are reaped sooner, but more renewal appends and a paused runner (GC, "
                   "SIGSTOP, a VM migration, the store restarting) loses its trial sooner. Longer: fewer "
                   "appends, slower recovery.")
@click.option("--heartbeat", "heartbeat_s", type=click.FloatRange(0.5, 3600), default=15.0, show_default=True,
              help="Seconds between this runner's RunnerHeartbeat events (`arledger runners`); it reads as "
                   "lost after 3 intervals without one. Presence only: the leases fence the trials.")
@click.option("--once", is_flag=True, help="Run until nothing is queued, then exit.")
@click.option("--task", "task_names", multiple=True, metavar="NAME|PATH",
              help="Only serve these tasks (default: every task this host can load).")
@click.option("--runner-id", default=None, help="Name in the ledger (default HOST-PID).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Where prepared data is cached (default $ARLEDGER_CACHE/data).")
@click.option("--work-root", type=click.Path(path_type=Path), default=None,
              help="Where trial workspaces are built (default a directory under /tmp).")
@click.option("--keep-workdirs", is_flag=True, help="Keep each trial's workspace, outputs and logs.")
@click.option("--unsafe-no-sandbox", is_flag=True,
              help="Run recipes without the bubblewrap sandbox (they get the runner's rights); every such "
                   "trial is recorded so and listed by `audit report`.")
def runner_cmd(ledger_url: str | None, slots: int, gpus: str | None, gpus_per_trial: int, lease_s: float,
               heartbeat_s: float, once: bool, task_names: tuple[str, ...], runner_id: str | None, data_root: Path | None,
               work_root: Path | None, keep_workdirs: bool, unsafe_no_sandbox: bool) -> None:
    """Claim queued trials, train them under their budgets, have them scored, label them.

    Tasks: a trial's task is its campaign's, as recorded in the ledger (content hash and bundle). A
    --task PATH copy or the built-in one serves it when its content is the campaign's (a --task
    copy that differs is refused, naming both hashes); else the runner fetches the campaign's copy
    from the ledger into its work root. Data is prepared on this host.

    Leases: a claimed trial's lease (--lease, 30 s) is renewed every lease/3; a runner that stops
    renewing loses it: another runner's reaper labels the attempt runner_lost and requeues the
    trial with a new epoch, and the old epoch's appends are refused. A cancelled or requeued trial's
    runner learns it the same way at its next renewal and kills the run.

    Presence: RunnerStarted, a RunnerHeartbeat every --heartbeat seconds (15) naming its trials,
    RunnerStopped on exit; `arledger runners` shows it alive, or lost after 3 missed heartbeats.

    SIGTERM (or Ctrl-C) drains: no new claims, running trials finish, exit 0. A second one kills
    the running trials; their leases expire and another runner requeues them."""
    from tasks.bwrap import SandboxUnavailable
    from tasks.runner import Runner

    gpu_list = _parse_gpus(gpus)
    if gpus_per_trial and len(gpu_list) < gpus_per_trial:
        raise click.BadParameter(f"--gpus-per-trial {gpus_per_trial} needs at least that many --gpus",
                                 param_hint="--gpus")
    c = _console()

    def log(msg: str) -> None:
        c.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {_style(msg)}")

    led = open_ledger(ledger_url)
    try:
        r = Runner(ledger=led, runner_id=runner_id, slots=slots, gpus=gpu_list, gpus_per_trial=gpus_per_trial,
                   lease_s=lease_s, data_root=data_root, work_root=work_root,
                   tasks=list(task_names) or None, log=log, keep_workdirs=keep_workdirs,
                   isolate=not unsafe_no_sandbox)
    except SandboxUnavailable as e:
        led.close()
        raise click.ClickException(f"cannot sandbox recipes: {e}. (`--unsafe-no-sandbox` runs them unconfined; "
                                   "every such trial is flagged by `audit report`)") from None
    from tasks.presence import Presence

    box = r.sandbox
    presence = Presence(r.ledger, r.runner_id, every_s=heartbeat_s, slots=len(r.slots), gpus=gpu_list,
                        gpus_per_trial=gpus_per_trial, lease_s=lease_s, tasks=list(task_names),
                        sandbox=f"{box.kind} {box.version}" if box else "none",
                        held=r.held, labelled=lambda: r.labelled, log=log)
    reason = "error"
    try:
        presence.start()
        if once:
            log(f"runner {r.runner_id}: {len(r.slots)} slot(s); {r.sandbox_note}")
            n = r.run_until_idle(wait_for_others=False)
            log(f"idle: {n} trial(s) labelled")
            reason = "--once: nothing left to run"
        else:
            r.run_forever(threading.Event(), install_signals=True)
            reason = ("killed by a second signal: running trials killed, their leases left to expire"
                      if r.hard_stopped else "drained: no trial left running")
            log(f"runner {r.runner_id} stopped: {r.labelled} trial(s) labelled")
    finally:
        presence.stop(reason)
        r.close()


def _style(msg: str) -> str:
    from rich.markup import escape

    m = escape(msg)
    for word, colour in (("discard", "yellow"), ("crash", "red"), ("illegal_edit", "red"), ("oom", "red"),
                         ("diverged", "red"), ("budget_overrun", "red"), ("lease lost", "red"),
                         ("claimed", "cyan"), ("reaped", "magenta")):
        if word in m:
            m = m.replace(word, f"[{colour}]{word}[/{colour}]", 1)
    return m


# -------------------------------------------------------------------------------------------------
# trial submit


@click.group("trial")
def trial_group() -> None:
    """Trials by hand."""


@trial_group.command("submit")
@LEDGER
@click.option("--task", "task_name", required=True, metavar="NAME|PATH", help="The task (built-in name or dir).")
@click.option("--diff", "diff_file", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Unified diff against the parent's code ('-' reads stdin; an empty file re-runs the parent).")
@click.option("--hypothesis", required=True, help="One sentence: what the change should do and why.")
@click.option("--campaign", default=None, metavar="NAME",
              help="Campaign name (default: the latest campaign of this task, else one named after the task).")
@click.option("--parent", type=int, default=None,
              help="Parent trial number (default: the campaign's baseline trial, or the baseline snapshot when the "
                   "campaign has none).")
@click.option("--surface", default=None, help="Restrict the edit to this surface of the task.")
@click.option("--specialist", default="human", show_default=True)
@click.option("--priority", type=int, default=0, show_default=True)
def trial_submit(ledger_url: str | None, task_name: str, diff_file: str, hypothesis: str, campaign: str | None,
                 parent: int | None, surface: str | None, specialist: str, priority: int) -> None:
    """Propose a trial: preflight it and queue it for a runner (or record why it cannot run).

    Exit 0 when it is queued; 1 when preflight labelled it (illegal_edit, duplicate, preflight_crash,
    size_blocked), with the failed check named."""
    from projections.projector import Projector
    from tasks.spec import load_task
    from tasks.submit import submit_trial

    spec = load_task(task_name)
    if diff_file == "-":
        diff = sys.stdin.read()
    else:
        try:
            diff = Path(diff_file).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise click.ClickException(f"cannot read the diff {diff_file}: {e}") from None
    if not hypothesis.strip():
        raise click.ClickException("--hypothesis is empty; say in one sentence what the change should do")
    user = os.environ.get("USER") or _user()
    with open_ledger(ledger_url) as led:
        table = Projector.from_ledger(led).trials
        info = table.campaign(campaign) if campaign else max(
            (c for c in table.campaigns.values() if c.task == spec.name), key=lambda c: c.position, default=None)
        name = campaign or (info.name if info else spec.name)
        if parent is None and info is not None and info.baseline_id is not None:
            parent = table.trials[info.baseline_id].number  # the campaign's baseline trial
        seen = table.duplicate_keys(info.campaign_id) if info is not None else frozenset()
        res = submit_trial(led, spec, campaign=name, diff=diff, hypothesis=hypothesis, actor=f"human:{user}",
                           parent=parent, specialist=specialist, surface=surface, priority=priority, seen=seen)
    c = _console()
    for ch in res.checks:
        mark = "[green]ok  [/green]" if ch.ok else "[red]FAIL[/red]"
        c.print(f"{mark} {ch.name}" + (f": {ch.detail}" if ch.detail else ""))
    if res.passed:
        c.print(f"trial {res.number} queued (campaign {name}, parent "
                f"{'#' + str(parent) if parent is not None else 'the baseline snapshot'}); run `arledger runner` "
                "to train it")
    else:
        c.print(f"trial {res.number} recorded as [red]{res.label}[/red]: {res.reason}")
        sys.exit(1)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
