"""Replay and checkout: `arledger replay N` re-runs trial N from the ledger alone and compares its
score with the recorded one; `arledger checkout N DIR` writes trial N's code to DIR.

The work is ``tasks.replay``'s; this module reads the arguments, shows progress (rich) and prints
the comparison. ``replay`` exits 0 when the scores agree, 1 when they do not, 2 when the trial
cannot be replayed at all (the message says why and what to do).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from arledger import layout
from arledger.options import CAMPAIGN, JSON, LEDGER, open_ledger


class CannotReplay(click.ClickException):
    exit_code = 2


def _recorded(led: Any, trial: str, campaign: str | None) -> Any:
    from arledger.cli_read import _projector, _trial
    from tasks.replay import ReplayError, recorded

    proj = _projector(led)
    row = _trial(proj, trial, campaign)
    info = proj.trials.campaigns[row.campaign_id]
    try:
        return recorded(led, row.campaign_id, row.number, noise_sd=info.noise_sd)
    except ReplayError as e:
        raise CannotReplay(str(e)) from None


def _gpus(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of GPU indices (e.g. 0 or 0,1)", param_hint="--gpus") from None


@click.command("replay")
@click.argument("trial")
@LEDGER
@CAMPAIGN
@click.option("--task", "task_path", default=None, metavar="PATH",
              help="The task directory the campaign ran with (default: the one its `run` recorded, or the built-in "
                   "task of that name).")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The prepared-data cache (default: the runner's, $ARLEDGER_CACHE/data).")
@click.option("--gpus", default=None, metavar="0,1", help="GPUs to replay a GPU trial on.")
@click.option("--tolerance", type=float, default=None,
              help="The largest difference that still agrees (default: 0 for a CPU trial, the campaign's noise "
                   "sd for a GPU trial).")
@JSON
def replay_cmd(trial: str, ledger_url: str | None, campaign: str | None, task_path: str | None,
               data_root: Path | None, gpus: str | None, tolerance: float | None, as_json: bool) -> None:
    """Re-run trial TRIAL from the ledger alone (baseline snapshot + diffs, tree hash checked, the
    recorded seeds and threads, the same sandboxes and evaluator) and compare its score with the
    recorded one. Exit 0: they agree; 1: they do not; 2: it cannot be replayed. Records nothing."""
    from tasks.bwrap import SandboxUnavailable
    from tasks.data import cache_dir
    from tasks.replay import ReplayError, replay, task_for

    err = Console(stderr=True)
    with open_ledger(ledger_url) as led:
        rec = _recorded(led, trial, campaign)
        try:
            spec = task_for(rec, task_path)
            with err.status(f"replaying {rec.campaign}/{rec.number}…") as st:
                rep = replay(led, rec, spec, data_root=data_root or cache_dir() / "data", gpus=_gpus(gpus),
                             tolerance=tolerance, progress=lambda m: st.update(f"{rec.campaign}/{rec.number}: {m}…"))
        except (ReplayError, SandboxUnavailable) as e:
            raise CannotReplay(str(e)) from None
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2, default=str))
        sys.exit(0 if rep.agree else 1)
    avail = layout.width()

    def out(text: str, label: str) -> None:
        click.echo("\n".join(layout.wrap(text, avail, label=label, indent=2)))

    out(f"{rep.campaign} #{rep.number:03d} · seeds {', '.join(map(str, rep.seeds))} · {rep.threads} thread(s) · "
        f"{rep.accelerator}", "Replay: ")
    out(f"{rep.tree_sha[:16]} rebuilt from the ledger; preflight recorded {str(rep.recorded_tree_sha)[:16]} — "
        + ("same" if rep.tree_ok else "DIFFERENT"), "Code: ")
    out(f"{_score(rep.recorded_score)} ({rep.recorded_status or 'not labelled'})", "Recorded: ")
    walls = ", ".join(f"{w:.1f}s" for w in rep.wall_s)
    out(f"{_score(rep.score)} ({rep.status or 'not run'}" + (f"; trained in {walls}" if walls else "") + ")"
        + (f" — {rep.reason}" if rep.reason and rep.status != "scored" else ""), "Replayed: ")
    if rep.artifact_identical is not None:
        out("byte for byte the same as the recorded run's" if rep.artifact_identical else
            "differs from the recorded run's", "Artifact: ")
    diff = rep.difference
    verdict = "AGREE" if rep.agree else "DISAGREE"
    how = f"difference {diff:+.3g}" if diff is not None else "no score to compare"
    out(f"{verdict} — {how}; tolerance {rep.tolerance:g}: {rep.basis}", "Result: ")
    sys.exit(0 if rep.agree else 1)


def _score(v: float | None) -> str:
    return "no score" if v is None else repr(v)


@click.command("checkout")
@click.argument("trial")
@click.argument("directory", type=click.Path(path_type=Path))
@LEDGER
@CAMPAIGN
@click.option("--force", is_flag=True, help="Write into a non-empty DIRECTORY (files the trial has are overwritten).")
def checkout_cmd(trial: str, directory: Path, ledger_url: str | None, campaign: str | None, force: bool) -> None:
    """Write trial TRIAL's recipe files (rebuilt from the ledger) into DIRECTORY."""
    from tasks.replay import ReplayError, checkout

    with open_ledger(ledger_url) as led:
        rec = _recorded(led, trial, campaign)
        try:
            files, same = checkout(led, rec, directory, force=force)
        except ReplayError as e:
            raise click.ClickException(str(e)) from None
    tree = "the tree its preflight checked" if same else "NOT the tree its preflight recorded (run `arledger audit verify`)"
    click.echo(f"wrote {len(files)} file(s) of {rec.campaign}/{rec.number} to {directory}: {', '.join(sorted(files))}"
               f" — {tree}")
    if not same:
        sys.exit(1)


def register(cli: click.Group) -> None:
    cli.add_command(replay_cmd)
    cli.add_command(checkout_cmd)
