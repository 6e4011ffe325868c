"""`arledger run`: the product's main job, a campaign of specialist agents with a live display."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from arledger.options import LEDGER, open_ledger

STATUS_STYLE = {"keep": "bold green", "candidate": "green", "scored": "cyan", "baseline": "cyan",
                "discard": "white", "crash": "red", "oom": "red", "diverged": "red", "size_blocked": "yellow",
                "train_budget_overrun": "yellow", "eval_budget_overrun": "yellow", "disqualified": "yellow",
                "truncated": "yellow", "stopped_early": "yellow", "illegal_edit": "magenta",
                "preflight_crash": "magenta", "duplicate": "dim", "cancelled": "dim", "runner_lost": "red"}


def register(cli: click.Group) -> None:
    cli.add_command(run)


@click.command()
@LEDGER
@click.option("--task", default="golf-mini", show_default=True, help="A built-in task name or a task directory.")
@click.option("--name", default=None, help="Campaign name (default: TASK-DATE-TIME).")
@click.option("--backend", default="heuristic", show_default=True,
              help="heuristic (offline), anthropic (needs ANTHROPIC_API_KEY), openai (OPENAI_API_KEY; any Chat "
              "Completions server with --base-url), random, replay:FILE, or agent:CMD (a coding agent run in a "
              "sandboxed scratch copy, e.g. agent:'claude -p --output-format stream-json --verbose').")
@click.option("--arm", default="lineage", show_default=True,
              help="lineage | no-lineage (view blanked but for the best) | generic:N | single.")
@click.option("--specialists", default=None, help="Comma-separated subset of the task's specialists.")
@click.option("--max-trials", type=int, default=10, show_default=True, help="Proposals to run (baseline and "
              "confirmation runs come on top).")
@click.option("--deadline", "deadline_min", type=float, default=None, help="Stop proposing after this many minutes.")
@click.option("--grace", type=int, default=None, help="Stop after this many scored proposals without a keep.")
@click.option("--max-usd", type=float, default=None, help="LLM spending cap in dollars.")
@click.option("--max-compute-h", type=float, default=None, help="Compute cap in trial-hours.")
@click.option("--in-flight", type=int, default=1, show_default=True, help="Trials in flight per specialist.")
@click.option("--stagger", type=float, default=0.0, show_default=True, help="Seconds between proposal launches.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--runners", type=click.Choice(["local", "external"]), default="local", show_default=True,
              help="local: an in-process runner; external: `arledger runner` daemons do the training.")
@click.option("--slots", type=int, default=None,
              help="Parallel trials of the local runner (default: CPU cores / the task's cpu_threads).")
@click.option("--k", "k", type=float, default=None, help="Noise multiplier: a keep must beat k x sd.")
@click.option("--confirmations", type=int, default=None, help="Confirmation runs per candidate keep.")
@click.option("--baseline-reruns", type=click.IntRange(min=0), default=None,
              help="Extra seeds of the baseline measuring the noise (default: the task's).")
@click.option("--model", default=None, help="Model for the anthropic or openai backend.")
@click.option("--base-url", default=None, metavar="URL",
              help="API server of the LLM backend, e.g. http://127.0.0.1:8000/v1 for a local vLLM, llama.cpp or "
              "Ollama server (openai: no key needed on this machine or a private network).")
@click.option("--price-in", type=float, default=None, metavar="USD",
              help="Price per million input tokens of the backend's model (0 for a local model).")
@click.option("--price-out", type=float, default=None, metavar="USD",
              help="Price per million output tokens of the backend's model (0 for a local model).")
@click.option("--thinking-budget", type=int, default=0, help="Extended-thinking tokens (anthropic).")
@click.option("--agent-time", "agent_time_s", type=float, default=900.0, show_default=True, metavar="S",
              help="agent:CMD: seconds per proposal before the agent is stopped.")
@click.option("--agent-turns", type=int, default=40, show_default=True, help="agent:CMD: turns per proposal.")
@click.option("--agent-env", multiple=True, metavar="NAME",
              help="agent:CMD: an environment variable to pass to the agent (its API key; claude and codex get "
              "theirs without asking). Repeatable.")
@click.option("--agent-bind", multiple=True, metavar="PATH",
              help="agent:CMD: a path the agent may read (its installation or config). Repeatable.")
@click.option("--agent-network/--no-agent-network", default=True, show_default=True,
              help="agent:CMD: share the host's network with the agent's sandbox (for its API; recorded).")
@click.option("--resume", is_flag=True, help="Continue the most recent (or --name) interrupted campaign.")
@click.option("--quiet", is_flag=True, help="No live display; one line per event.")
def run(ledger_url: str | None, task: str, name: str | None, backend: str, arm: str, specialists: str | None,
        max_trials: int, deadline_min: float | None, grace: int | None, max_usd: float | None,
        max_compute_h: float | None, in_flight: int, stagger: float, seed: int, runners: str, slots: int | None,
        k: float | None, confirmations: int | None, baseline_reruns: int | None, model: str | None, base_url: str | None,
        price_in: float | None, price_out: float | None, thinking_budget: int, agent_time_s: float,
        agent_turns: int, agent_env: tuple[str, ...], agent_bind: tuple[str, ...], agent_network: bool, resume: bool,
        quiet: bool) -> None:
    """Run a campaign: specialists propose, runners train, evaluators score, the ledger keeps it all.

    With no options: the SQLite ledger under .arledger/ (made if missing), task golf-mini, offline
    heuristic specialists and an in-process runner. Ctrl-C stops cleanly; `arledger run --resume`
    continues without duplicating or losing a trial.
    """
    from agents.campaign import CampaignConfig, CampaignLoop, backend_for, config_of, latest_open_campaign
    from agents.team import specialists_for
    from ledger.audit import init_ledger
    from tasks.spec import load_task

    console = Console() if sys.stdout.isatty() else Console(soft_wrap=True, width=200)
    cfg: CampaignConfig | None = None
    if not resume:  # the task, the team and the backend are checked before anything is written
        cfg = CampaignConfig(
            task=task, name=name, backend=backend, arm=arm,
            specialists=[s.strip() for s in specialists.split(",")] if specialists else None,
            max_trials=max_trials, deadline_s=deadline_min * 60 if deadline_min else None, grace=grace,
            max_usd=max_usd, max_compute_h=max_compute_h, in_flight=in_flight, stagger_s=stagger, seed=seed,
            runners=runners, slots=slots or 1, k=k, confirmations=confirmations,
            baseline_reruns=baseline_reruns, model=model,
            base_url=base_url, price_in=price_in, price_out=price_out, thinking_budget=thinking_budget,
            agent_time_s=agent_time_s, agent_turns=agent_turns, agent_env=list(agent_env),
            agent_bind=list(agent_bind), agent_network=agent_network)
        specialists_for(load_task(task), arm, cfg.specialists)
        backend_for(cfg)
    if resume:  # resuming needs a campaign: never make a ledger for it
        led = open_ledger(ledger_url)
    else:
        led, _kp, created = init_ledger(ledger_url)
        if created:
            console.print(f"initialised {led.describe()} (signing key beside it)")
    try:
        if cfg is None:
            name = name or latest_open_campaign(led)
            if name is None:
                raise click.ClickException("no open campaign to resume; start one with `arledger run`")
            cfg = config_of(led, name)
            if cfg is None:
                raise click.ClickException(f"there is no campaign {name}")
            cfg.name = name
            task = cfg.task
        spec = load_task(task)
        if not resume and slots is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            per = max(1, spec.resources.cpu_threads)
            cfg.slots = max(1, cores // per) if spec.resources.gpus_per_trial == 0 else 1
        events: list[str] = []

        def on_event(msg: str) -> None:
            stamp = time.strftime("%H:%M:%S")
            events.append(f"{stamp} {msg}")
            if quiet or not sys.stdout.isatty():
                click.echo(f"{stamp} {msg}")

        loop = CampaignLoop(led, spec, cfg, resume=resume, on_event=on_event)
        console.print(f"[bold]campaign {loop.name}[/]: task {spec.name} ({spec.metric}, {spec.direction}), "
                      f"{len(loop.specialists)} specialist(s) ({', '.join(s.name for s in loop.specialists)}), "
                      f"backend {cfg.backend}, arm {cfg.arm}, keep threshold {loop.threshold:.4g}")
        prev = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            loop.interrupt()

        signal.signal(signal.SIGINT, on_sigint)
        try:
            if quiet or not sys.stdout.isatty():
                outcome = loop.run()
            else:
                with Live(render(loop, events), console=console, refresh_per_second=2) as live:
                    outcome = loop.run(tick=lambda lp: live.update(render(lp, events)))
        finally:
            signal.signal(signal.SIGINT, prev)
    finally:
        led.close()
    if loop.stop.is_set() and not outcome.closed:
        console.print(f"[yellow]interrupted[/]: campaign {outcome.campaign} is open; continue it with "
                      f"`arledger run --resume --name {outcome.campaign}`")
        sys.exit(130)
    headline(console, loop, outcome)


def headline(console: Console, loop: Any, out: Any) -> None:
    """The campaign's last line: its result as ``projections.headline`` computes it, the number
    ``status``, ``show`` and the export print too."""
    from rich.markup import escape

    from projections.headline import headline as result_of

    if out.baseline is None:
        console.print(f"[red]campaign {out.campaign} ended without a baseline score[/]: {out.reason}")
        console.print("see `arledger show 0` and `arledger log --trial 0`")
        sys.exit(1)
    info = loop.proj.trials.campaign(loop.campaign_id)
    h = result_of(loop.proj.trials, info)
    style = "bold green" if h.confirmed else "yellow"
    console.print(f"[{style}]{escape(h.result_words())}[/]", highlight=False)
    console.print(escape(f"{h.counts.words()}; {h.best_run_words()}; closed: {out.reason}"), highlight=False)
    console.print(f"next:  arledger status      arledger lineage      arledger export {out.campaign} --out paper/"
                  "      arledger audit verify")


def render(loop: Any, events: list[str]) -> Group:
    """The live display: the campaign's standing and ETA, each trial in flight against its budget
    with the last step and metric it reported, the recent trials (hypotheses wrapped, never cut),
    the outcomes per specialist and the latest events."""
    from projections.headline import fmt_metric, fmt_pct
    from projections.headline import headline as result_of
    from projections.live import eta, fmt_duration, in_flight

    rows = loop.rows()
    spec = loop.spec
    now = time.time()
    info = loop.proj.trials.campaign(loop.campaign_id)
    head = Text()
    h = result_of(loop.proj.trials, info) if info is not None else None
    if h is not None and h.incumbent is not None:
        runs = f", n={h.incumbent.n}" if h.incumbent.n > 1 else ""
        head.append(f"baseline {spec.metric} {fmt_metric(h.start)}   incumbent {fmt_metric(h.best)} "
                    f"(#{h.incumbent.number}{runs}, {fmt_pct(h.pct)})   ", style="bold")
    props = [r for r in rows if r.kind == "proposal"]
    left = max(loop.cfg.max_trials - len(props), 0)
    head.append(f"proposals {len(props)}/{loop.cfg.max_trials} ({left} left)   threshold {loop.threshold:.4g}")
    deadline_left = max(0.0, loop.cfg.deadline_s - (now - loop.started)) if loop.cfg.deadline_s else None
    if deadline_left is not None:
        head.append(f"   time left {deadline_left / 60:.1f} min")
    running = in_flight(rows, info, now) if info is not None else []
    if info is not None:
        e = eta(rows, info, proposals_left=left, slots=loop.cfg.budgets().slots, now=now,
                deadline_left_s=deadline_left)
        togo = f"{e.trials_left} trial{'s' if e.trials_left != 1 else ''} to go"
        if e.measured:
            head.append(f"\nETA ≈ {fmt_duration(e.seconds)} ({togo} at {fmt_duration(e.per_trial_s)} each, "
                        f"as measured; at most {fmt_duration(e.bound_s)} by the budgets)")
        else:
            head.append(f"\nETA ≈ {fmt_duration(e.seconds)} at most, by the budgets ({togo})")
        if e.capped_by_deadline:
            head.append(" — the deadline comes first")
    parts: list[Any] = [Panel(head, title=f"arledger · {loop.name}")]
    if running:
        live = Table(show_edge=False, pad_edge=False, box=None, title="in flight", title_justify="left")
        for c, kw in (("#", {"justify": "right"}), ("specialist", {}), ("phase", {}),
                      ("elapsed / budget", {"justify": "right"}), ("", {}), ("step", {"justify": "right"}),
                      ("reported", {"overflow": "fold"})):
            live.add_column(c, **kw)
        for f in running:
            bar = _bar(f.fraction)
            metric = f"{f.metric[0]}={f.metric[1]:.5g}" if f.metric else ""
            live.add_row(str(f.number), f.specialist, f.phase,
                         f"{fmt_duration(f.elapsed_s)} / {fmt_duration(f.budget_s)}", bar,
                         str(f.last_step) if f.last_step is not None else "", metric)
        parts.append(live)
    t = Table(expand=True, show_edge=False, pad_edge=False)
    right = {"justify": "right", "no_wrap": True}
    for c, kw in (("#", right), ("specialist", {"no_wrap": True}), ("kind", {"no_wrap": True}),
                  ("status", {"no_wrap": True}), (spec.metric, right), ("Δ", right), ("wall", right),
                  ("hypothesis", {"ratio": 1, "overflow": "fold"})):
        t.add_column(c, **kw)
    for r in rows[-14:]:
        t.add_row(str(r.number), r.specialist, r.kind, Text(r.state, style=STATUS_STYLE.get(r.status or "", "blue")),
                  f"{r.score:.5g}" if r.score is not None else "",
                  f"{r.delta:+.4g}" if r.delta is not None else "", f"{r.wall_s:.0f}s" if r.wall_s else "",
                  Text(r.hypothesis))
    parts.append(t)
    counts = Table.grid(padding=(0, 2))
    per: dict[str, dict[str, int]] = {}
    for r in props:
        d = per.setdefault(r.specialist, {})
        d[r.status or "in flight"] = d.get(r.status or "in flight", 0) + 1  # proposals: no re-measures here
    for sp, d in sorted(per.items()):
        counts.add_row(sp, ", ".join(f"{k} {v}" for k, v in sorted(d.items())))
    parts += [counts, Text("\n".join(events[-6:]), style="dim", overflow="fold")]
    return Group(*parts)


def _bar(fraction: float, width: int = 12) -> Text:
    """A budget bar: filled to the fraction used, red past the budget."""
    n = max(0, min(width, round(fraction * width)))
    style = "red" if fraction > 1 else "green" if fraction < 0.8 else "yellow"
    return Text("█" * n + "░" * (width - n), style=style)
