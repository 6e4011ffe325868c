"""Steering notes: a person's guidance for a running campaign, without restarting it.

    arledger note "stop trying larger batches" [--specialist opt] [--campaign NAME] [--by NAME]
    arledger note --close 2 [--reason "done"] [--campaign NAME]
    arledger notes [--campaign NAME] [--all] [--json]

A note is a ``NoteAdded`` event on the campaign (actor ``human:NAME``, its text, the specialist it
addresses or every specialist); the next lineage views of those specialists show it until a
``NoteClosed`` retires it. Both are in the log for good: ``arledger audit report`` lists them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import click

from arledger.options import CAMPAIGN, JSON, LEDGER, actor_name, campaign_name, open_ledger, write_command
from ledger import events as ev
from ledger.aggregates import Campaign
from ledger.app import Ledger


def register(cli: click.Group) -> None:
    cli.add_command(note_cmd)
    cli.add_command(notes_cmd)


def _write(led: Ledger, name: str, act: Callable[[Campaign], ev.Event]) -> ev.Event:
    """Apply ``act(campaign)`` to the campaign and save it, retrying while a running loop writes."""
    cid = ev.campaign_id_for(name)
    return write_command(led, lambda: led.load(Campaign, cid), act, f"campaign {name}")[1]


@click.command("note")
@click.argument("text", required=False)
@LEDGER
@CAMPAIGN
@click.option("--specialist", default=None, metavar="NAME", help="Only this specialist reads it (default: all).")
@click.option("--close", "close_number", type=int, default=None, metavar="N", help="Retire note N instead.")
@click.option("--reason", default="", help="Why note N is closed (with --close).")
@click.option("--by", default=None, metavar="NAME", help="Who leaves it (default: your user name).")
def note_cmd(text: str | None, ledger_url: str | None, campaign: str | None, specialist: str | None,
             close_number: int | None, reason: str, by: str | None) -> None:
    """Leave a steering note for a running campaign (the next lineage views show it), or --close N."""
    if (text is None) == (close_number is None):
        raise click.ClickException('give a note\'s text (arledger note "focus on the tokenizer") or '
                                   "--close N, not both and not neither")
    if close_number is not None and specialist:
        raise click.ClickException("--specialist is for a new note; --close N closes note N whoever it addresses")
    actor = actor_name(by)
    with open_ledger(ledger_url) as led:
        name = campaign_name(led, campaign)
        if close_number is not None:
            _write(led, name, lambda c: c.close_note(actor, number=close_number, reason=reason.strip()))
            click.echo(f"closed note {close_number} of campaign {name}")
            return
        assert text is not None
        e = _write(led, name, lambda c: c.add_note(actor, text=text, specialist=specialist or ""))
        assert isinstance(e, ev.NoteAdded)
        to = f"specialist {e.specialist}" if e.specialist else "every specialist"
        click.echo(f"note {e.number} for {to} of campaign {name}: the next lineage views show it "
                   f"(close it with `arledger note --close {e.number}`)")


@click.command("notes")
@LEDGER
@CAMPAIGN
@click.option("--all", "show_all", is_flag=True, help="Closed notes too.")
@JSON
def notes_cmd(ledger_url: str | None, campaign: str | None, show_all: bool, as_json: bool) -> None:
    """The steering notes of a campaign (open ones; --all for every one)."""
    from projections import Projector

    with open_ledger(ledger_url) as led:
        name = campaign_name(led, campaign)
        info = Projector.from_ledger(led).trials.campaign(name)
    assert info is not None
    shown = info.notes if show_all else info.open_notes()
    if as_json:
        click.echo(json.dumps({"campaign": name, "notes": [n.to_dict() for n in shown]}, indent=2))
        return
    closed = len(info.notes) - len(info.open_notes())
    if not shown:
        click.echo(f"campaign {name}: no {'' if show_all else 'open '}notes"
                   + (f" ({closed} closed; --all lists them)" if closed and not show_all else ""))
        return
    click.echo(f"campaign {name}: {len(info.open_notes())} open note(s)" + (f", {closed} closed" if closed else ""))
    for n in shown:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(n.at))
        state = "open" if n.open else f"closed by {n.closed_by}" + (f": {n.close_reason}" if n.close_reason else "")
        click.echo(f"{n.number:>3}  to {n.specialist or 'all'} · by {n.actor} · {when} · {state}")
        click.echo(f"     {n.text}")
