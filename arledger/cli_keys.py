"""`arledger keys`: who may write the ledger — the ledger keys and the actor keys they endorsed.

    arledger keys list                         ledger keys, enrolled actors, and this machine's key files
    arledger keys self [--actor ACTOR]         this machine's ACTOR PUBLIC_KEY (default: its runner), to trust
    arledger keys trust ACTOR PUBLIC_KEY       enrol another host's writer (run where the ledger key is)
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from arledger.options import KEY, LEDGER, open_ledger
from ledger.store import LedgerError


@click.group("keys")
def keys_group() -> None:
    """Signing identities: every event is signed by the actor that wrote it."""


@keys_group.command("list")
@LEDGER
def keys_list(ledger_url: str | None) -> None:
    """The ledger keys, every enrolled actor key (who endorsed it, when), and the key files here."""
    import datetime as dt

    from ledger.identity import keys_dir

    with open_ledger(ledger_url) as led:
        root = led.ledger_root()
        # ids and times never cut; the reason wraps
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("actor", no_wrap=True)
        table.add_column("key id", no_wrap=True)
        table.add_column("endorsed by", no_wrap=True)
        table.add_column("enrolled (UTC)", no_wrap=True)
        table.add_column("reason", overflow="fold", ratio=1)
        for kid in root.public_keys:
            table.add_row("ledger", kid, "-", "-", "the ledger key (arledger init / KeyAdded)")
        for e in root.enrolments:
            when = dt.datetime.fromtimestamp(e.at, dt.UTC).strftime("%m-%d %H:%M")
            table.add_row(e.signer, e.key_id, e.endorsed_by, when, e.reason)
        Console(soft_wrap=True, highlight=False, markup=False).print(table)
        kd = keys_dir(led)
        files = sorted(kd.glob("*.key")) if kd.is_dir() else []
        click.echo(f"key files on this machine ({kd}): {', '.join(p.stem for p in files) or 'none'}")
        sig = root.signing_started
        click.echo("events are signed" + (f" since {dt.datetime.fromtimestamp(sig.at, dt.UTC):%Y-%m-%d}" if sig else
                                          ": no (a ledger from before signing; `arledger audit upgrade`)"))


@keys_group.command("self")
@click.option("--actor", default=None, metavar="ACTOR",
              help="The writer (default: this host's runner, runner:HOSTNAME).")
@LEDGER
def keys_self(actor: str | None, ledger_url: str | None) -> None:
    """Print `ACTOR PUBLIC_KEY` of this machine's key for ACTOR (made now, mode 0600, if there is
    none): the two arguments of `arledger keys trust`, to run where the ledger key is."""
    import socket

    from ledger.identity import key_path_for
    from ledger.keys import generate_key, load_key, public_hex

    actor = actor or f"runner:{socket.gethostname()}"
    with open_ledger(ledger_url) as led:
        path = key_path_for(led, actor)
    if path.exists():
        key = load_key(path)
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = generate_key(path)
    click.echo(f"{actor} {public_hex(key)}")


@keys_group.command("trust")
@click.argument("actor")
@click.argument("public_key")
@LEDGER
@KEY
def keys_trust(actor: str, public_key: str, ledger_url: str | None, key_path: Path | None) -> None:
    """Trust ACTOR's PUBLIC_KEY (hex) for signing events: records it, endorsed by the ledger key.
    Run it where the ledger key is; a writer on another host prints this command for itself."""
    from ledger.identity import default_actor, default_ledger_key_path, enroll
    from ledger.keys import key_id, load_key, public_hex

    with open_ledger(ledger_url) as led:
        kp = key_path or default_ledger_key_path(led)
        key = load_key(kp)
        root = led.ledger_root()
        if key_id(public_hex(key)) not in root.public_keys:
            raise LedgerError(f"{kp} is not a key this ledger trusts (ledger keys: {', '.join(root.public_keys)}); "
                              "pass the key `arledger init` made with --key")
        e = enroll(led, actor, public_key.strip().lower(), key, actor=default_actor(),
                   reason=f"arledger keys trust, by {default_actor()}")
    if e is None:
        click.echo(f"{actor}'s key {key_id(public_key.strip().lower())} was already trusted")
    else:
        click.echo(f"trusted {actor}'s key {e.key_id} (endorsed by ledger key {e.endorsed_by})")


def register(cli: click.Group) -> None:
    cli.add_command(keys_group)
