"""What every `arledger` command shares: its options, how it opens the ledger, how errors read.

* :data:`LEDGER`, :data:`CAMPAIGN`, :data:`JSON`, :data:`KEY` — the shared options, defined once;
* :func:`open_ledger` — the one way a command opens an initialised ledger;
* :func:`campaign_name`, :func:`actor_name` — the campaign a command acts on, and who acts;
* :class:`Group` — the root group: every error a user can cause (a bad ledger URL, an unreachable
  or corrupt store, a missing artifact or key, a malformed task spec, a failed data fetch, a trial
  whose code cannot be built) ends in one line naming the cause and the fix, exit code 1, no
  traceback. Subcommands of subgroups run inside the root's ``invoke``, so this is the only place.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from ledger import events as ev
from ledger.aggregates import Aggregate, CommandRefused
from ledger.app import ConflictError, Ledger
from ledger.artifacts import ArtifactError
from ledger.store import LedgerError

LEDGER = click.option(
    "--ledger", "ledger_url", envvar="ARLEDGER_LEDGER", default=None, metavar="URL",
    help="Ledger URL: sqlite:PATH (default sqlite:.arledger/ledger.db), postgresql://USER@HOST/DB?schema=S, "
         "memory://. Env: ARLEDGER_LEDGER.",
)
CAMPAIGN = click.option("--campaign", default=None, metavar="NAME",
                        help="The campaign (default: the most recently opened one).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
KEY = click.option("--key", "key_path", type=click.Path(path_type=Path), envvar="ARLEDGER_KEY", default=None,
                   help="The ledger's Ed25519 signing key (default: signing.key beside the SQLite ledger). "
                        "Env: ARLEDGER_KEY.")


def open_ledger(url: str | None) -> Ledger:
    """The initialised ledger at ``url``; a LedgerError naming the fix otherwise (nothing created)."""
    led = Ledger.open(url)
    if not led.is_initialised():
        desc = led.describe()
        led.close()
        raise LedgerError(f"{desc} is not initialised; run `arledger init` (or `arledger run`, which does it)")
    return led


def user_errors() -> tuple[type[Exception], ...]:
    from tasks.data import DataError
    from tasks.spec import TaskSpecError
    from tasks.workspace import WorkspaceError

    return LedgerError, ArtifactError, TaskSpecError, DataError, WorkspaceError


def store_errors() -> tuple[type[Exception], ...]:
    """A store that cannot be read or written at all (a damaged file, a table gone)."""
    import sqlite3

    from eventsourcing.persistence import PersistenceError

    from ledger.codec import DecodeError, EncodeError

    return sqlite3.DatabaseError, PersistenceError, DecodeError, EncodeError


class Group(click.Group):
    """The root group: turns the errors a user can cause into one clear line and exit 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except user_errors() as e:
            raise click.ClickException(str(e)) from None
        except store_errors() as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise click.ClickException(f"the ledger cannot be read or written ({first}); run `arledger audit verify` "
                                       "to locate the damage") from None
        except BrokenPipeError:  # the reader went away (`arledger log | head`): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except OSError as e:  # a file the user named cannot be read or written
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or e}") from None


def campaign_name(led: Ledger, name: str | None) -> str:
    """The campaign a command acts on: ``name``, checked, or the most recently opened one."""
    opened = [r.event for r in led.events(types=(ev.CampaignOpened,))]
    names = [e.name for e in opened if isinstance(e, ev.CampaignOpened)]
    if not names:
        raise LedgerError("the ledger has no campaign yet; start one with `arledger run`")
    if name is None:
        return names[-1]
    if name not in names:
        raise LedgerError(f"no campaign {name!r} in this ledger (campaigns: {', '.join(names)})")
    return name


def actor_name(by: str | None) -> str:
    """``human:NAME`` of ``--by NAME`` (an ``actor:name`` as given), default the user's login."""
    who = (by or "").strip() or getpass.getuser()
    return who if ":" in who else f"human:{who}"


A = TypeVar("A", bound=Aggregate)
R = TypeVar("R")
WRITE_ATTEMPTS = 20  # a running campaign or runner writes to the same aggregate: reload and retry


def write_command(led: Ledger, load: Callable[[], A], act: Callable[[A], R], what: str) -> tuple[A, R]:
    """A command by hand on a live aggregate: ``act(load())`` then save, reloading and retrying while
    the campaign or a runner writes to it meanwhile; a refusal is the user's message."""
    for _ in range(WRITE_ATTEMPTS):
        agg = load()
        try:
            out = act(agg)
        except CommandRefused as e:
            raise click.ClickException(str(e)) from None
        try:
            led.save(agg)
            return agg, out
        except ConflictError:
            time.sleep(0.05)
    raise click.ClickException(f"{what} kept changing under this command ({WRITE_ATTEMPTS} attempts); try again")
