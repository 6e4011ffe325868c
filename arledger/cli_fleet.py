"""The fleet: the runners the ledger knows, and operating on one trial by hand.

    arledger runners [--json] [--all]                      each runner's host, slots, GPUs, sandbox, trials, state
    arledger trial cancel N --reason TEXT [--campaign C]    stop a trial: its label becomes `cancelled`
    arledger trial requeue N --reason TEXT [--campaign C]   run a failed (or a live) trial again, next epoch

Both trial commands are events with their actor (``human:NAME``, ``--by``) and reason. A runner
running a cancelled or requeued trial learns it at its next lease renewal (its fenced append is
refused) and kills the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import click

from arledger import layout
from arledger.options import CAMPAIGN, JSON, LEDGER, actor_name, campaign_name, open_ledger, write_command
from ledger import events as ev
from ledger.aggregates import Trial
from ledger.app import Ledger

RUNNER_COLUMNS = (layout.Column("RUNNER", 0), layout.Column("STATE", 0), layout.Column("TRIALS", 0),
                  layout.Column("LAST SEEN", 1, right=True), layout.Column("HOST", 2), layout.Column("SLOTS", 3, True),
                  layout.Column("GPUS", 3), layout.Column("SANDBOX", 4), layout.Column("VERSION", 5))


def register(cli: click.Group) -> None:
    cli.add_command(runners_cmd)
    trial = cli.commands.get("trial")
    if isinstance(trial, click.Group):
        trial.add_command(cancel_cmd)
        trial.add_command(requeue_cmd)


def _ago(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s ago"
    if s < 5400:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


@click.command("runners")
@LEDGER
@JSON
@click.option("--all", "show_all", is_flag=True, help="Stopped runners too (default: alive and lost ones).")
@click.option("--wide", is_flag=True, help="Every column, whatever the width.")
def runners_cmd(ledger_url: str | None, as_json: bool, show_all: bool, wide: bool) -> None:
    """The runners the ledger knows: host, slots, GPUs, sandbox, the trials each holds, its last
    heartbeat and its state.

    A runner records RunnerStarted, a RunnerHeartbeat every --heartbeat seconds (15 by default) and
    RunnerStopped when it exits. It is *alive* while its last heartbeat is younger than 3 heartbeat
    intervals, *lost* once older (killed, its host down or cut off from the ledger: its trials'
    leases expire and another runner requeues them), *stopped* after a clean exit (--all shows those)."""
    from projections.fleet import fleet

    now = time.time()
    with open_ledger(ledger_url) as led:
        rows = fleet(led)
    shown = [r for r in rows if show_all or r.state(now) != "stopped"]
    if as_json:
        click.echo(json.dumps({"at": now, "runners": [r.to_dict(now) for r in shown]}, indent=2))
        return
    if not shown:
        stopped = len(rows) - len(shown)
        click.echo("no runner is alive or lost" + (f" ({layout.plural(stopped, 'stopped runner')}: --all lists "
                                                   "them)" if stopped else "; start one with `arledger runner`"))
        return
    cells = []
    for r in shown:
        st = r.state(now)
        trials = ",".join(f"#{t.number}" for t in r.running) if st != "stopped" else ""
        cells.append([r.runner, st, trials or "—", _ago(now - (r.stopped_at or r.last_seen)), r.host, str(r.slots),
                      ",".join(map(str, r.gpus)) or "cpu", r.sandbox or "—", r.version or "—"])
    lines, hidden = layout.table(RUNNER_COLUMNS, cells, layout.width(), wide=wide)
    for line in lines:
        click.echo(line)
    alive = sum(1 for r in shown if r.state(now) == "alive")
    lost = sum(1 for r in shown if r.state(now) == "lost")
    tail = f"{alive} alive, {lost} lost" + (f"; not shown: {', '.join(hidden)} (--wide)" if hidden else "")
    for line in layout.wrap(tail, layout.width()):
        click.echo(line)


def _trial_write(led: Ledger, campaign: str | None, number: int,
                 act: Callable[[Trial], ev.Event | list[ev.Event]]) -> tuple[str, Trial, list[ev.Event]]:
    name = campaign_name(led, campaign)
    tid = ev.trial_id_for(ev.campaign_id_for(name), number)

    def load() -> Trial:
        t = led.load(Trial, tid)
        if t.proposed is None:
            raise click.ClickException(f"campaign {name} has no trial {number} (`arledger status` lists them)")
        return t

    t, out = write_command(led, load, act, f"trial {number}")  # its runner may renew the lease meanwhile
    return name, t, out if isinstance(out, list) else [out]


REASON = click.option("--reason", required=True, help="Why (recorded with the event).")
BY = click.option("--by", default=None, metavar="NAME", help="Who (default: your user name; human:NAME).")


@click.command("cancel")
@click.argument("number", type=int)
@REASON
@LEDGER
@CAMPAIGN
@BY
def cancel_cmd(number: int, reason: str, ledger_url: str | None, campaign: str | None, by: str | None) -> None:
    """Cancel trial NUMBER (queued or running): its label becomes `cancelled`, with your name and
    the reason. A runner running it notices at its next lease renewal and kills the run. A labelled
    trial is not cancelled (a kept one never is)."""
    actor = actor_name(by)
    with open_ledger(ledger_url) as led:
        was = {}

        def act(t: Trial) -> object:
            was["phase"], was["runner"] = t.phase, t.runner
            return t.cancel(actor, reason=reason)

        name, t, _ = _trial_write(led, campaign, number, act)
    held = (f"; runner {was['runner']} stops it at its next lease renewal" if was.get("runner")
            and was.get("phase") not in ("queued", "proposed") else "")
    click.echo(f"trial {number} of campaign {name} cancelled by {actor} (it was {was.get('phase')}){held}")


@click.command("requeue")
@click.argument("number", type=int)
@REASON
@LEDGER
@CAMPAIGN
@BY
def requeue_cmd(number: int, reason: str, ledger_url: str | None, campaign: str | None, by: str | None) -> None:
    """Put trial NUMBER back in the queue: a failed trial (crash, oom, runner_lost, cancelled, ...),
    a queued one (to the back) or a running one (its attempt is labelled cancelled and its runner
    stops it at its next lease renewal). The next claim opens a new epoch; the old attempt stays in
    the log. A scored trial is not requeued (its score stands: submit a rerun), nor one never launched."""
    actor = actor_name(by)
    with open_ledger(ledger_url) as led:
        name, t, events = _trial_write(led, campaign, number, lambda t: t.requeue_by_hand(actor, reason=reason))
    req = next(e for e in events if isinstance(e, ev.LaunchRequeued))
    ended = (f"; attempt epoch {req.previous_epoch} of runner {req.previous_runner} ended"
             if req.previous_runner else "")
    click.echo(f"trial {number} of campaign {name} requeued by {actor}{ended}; its next claim is epoch "
               f"{req.epoch + 1}")
