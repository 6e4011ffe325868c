"""Surviving a database restart: retry with capped exponential backoff, on connection errors only.

A PostgreSQL ledger's server may restart under a running campaign (an upgrade, a failover, an
administrator's ``pg_ctl restart``). Every operation of :class:`ledger.app.Ledger` on such a store
goes through one :class:`Reconnect`: on a *connection-level* error (the server closed the
connection, refuses new ones while starting or stopping, the pool cannot hand one out) it waits
0.5 s, 1 s, 2 s, … capped at 10 s, and tries again, until the store answers or the deadline
(``ARLEDGER_RECONNECT_S``, default 300 s) has passed since the outage began; then it raises a
:class:`~ledger.store.LedgerError` that says so. Every other error (a conflict, a constraint, a bad
statement, a lock timeout) is raised at once: retrying it would hide a bug or a lost race.

Reads are simply repeated. An append is not: the connection may have dropped after the server
committed it and before the answer came back. ``Ledger.save`` therefore asks the store, once it
answers again, whether the append landed (the event at the first aggregate version, byte for
byte) before appending again, so an event is never written twice nor lost; see ``Ledger.save``.

While the store is down a caller blocks in the retry: a runner stops claiming and reaping, its
running trials go on and their metrics and labels are appended once the store is back; a campaign
driver waits. Each outage is reported once when it begins and once when it ends (``notify``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ledger.store import LedgerError

T = TypeVar("T")

DEFAULT_DEADLINE_S = 300.0
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0
ENV = "ARLEDGER_RECONNECT_S"

# SQLSTATEs of a connection lost or refused: class 08 (connection exception), the server shutting
# down (57P01 admin, 57P02 crash), starting up (57P03), out of connection slots (53300)
_CONNECTION_STATES = ("57P01", "57P02", "57P03", "53300")


def deadline_s() -> float:
    """How long an outage is waited out: ``$ARLEDGER_RECONNECT_S`` seconds, default 300."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_DEADLINE_S
    try:
        value = float(raw)
    except ValueError:
        raise LedgerError(f"{ENV}={raw!r} is not a number of seconds; set it to e.g. 300 (0: never wait)") from None
    if value < 0:
        raise LedgerError(f"{ENV}={raw!r} is negative; set it to a number of seconds, e.g. 300")
    return value


def _chain(e: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def is_connection_error(e: BaseException) -> bool:
    """True for an error that says the database connection was lost or cannot be had now, and for
    nothing else (eventsourcing wraps psycopg's errors: the cause chain is searched)."""
    try:
        import psycopg
    except ImportError:  # no PostgreSQL support installed: no PostgreSQL connection to lose
        return False
    for x in _chain(e):
        if isinstance(x, psycopg.InterfaceError):
            return True  # "the connection is closed"
        if isinstance(x, psycopg.OperationalError):
            state = getattr(x, "sqlstate", None)
            # no SQLSTATE: raised by the client (connection refused, server closed the connection
            # unexpectedly, consuming input failed, the pool timed out handing out a connection)
            return state is None or state.startswith("08") or state in _CONNECTION_STATES
        if isinstance(x, psycopg.Error):
            return False
    return False


class StoreUnreachable(LedgerError):
    """The store stayed unreachable past the reconnect deadline."""


class Reconnect:
    """One ledger's retry policy and outage state, shared by its threads."""

    def __init__(self, describe: str, *, deadline: float | None = None,
                 notify: Callable[[str], None] | None = None, on_error: Callable[[], None] | None = None):
        self.describe = describe
        self.on_error = on_error  # after each connection error: drop the pool's dead connections
        self.deadline_s = deadline_s() if deadline is None else float(deadline)
        self.notify: Callable[[str], None] = notify or _stderr
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self.outages = 0  # outages survived (a test's and a benchmark's witness)
        self.reconnected_at = 0.0  # wall time the last outage ended (0: none yet)

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def settling(self, window_s: float) -> bool:
        """True within ``window_s`` of the end of an outage (or during one): a runner's reaper
        leaves the leases that expired while nobody could renew them to their holders for that
        long, so a restart of the server does not requeue every running trial."""
        return self.down or (self.reconnected_at > 0 and time.time() < self.reconnected_at + window_s)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, repeated with backoff while it fails on a connection error, up to the deadline."""
        started: float | None = None
        delay = FIRST_DELAY_S
        while True:
            try:
                out = fn()
            except Exception as e:
                if not is_connection_error(e):
                    raise
                now = time.monotonic()
                if started is None:
                    started = now
                    self._went_down(e)
                self._purge()
                if now - started >= self.deadline_s:
                    raise StoreUnreachable(
                        f"{self.describe} has been unreachable for {now - started:.0f} s ({_first_line(e)}); "
                        f"start the server or fix the network, and raise {ENV} (now {self.deadline_s:g} s) to wait "
                        "longer") from None
                time.sleep(min(delay, max(0.05, self.deadline_s - (now - started))))
                delay = min(delay * 2, MAX_DELAY_S)
                continue
            if started is not None:
                self.recovered()
            return out

    def wait(self, e: BaseException, started: float, delay: float) -> float:
        """For callers that loop themselves (``Ledger.save``): note the outage, sleep, and return the
        next delay; raise LedgerError past the deadline."""
        now = time.monotonic()
        self._went_down(e)
        self._purge()
        if now - started >= self.deadline_s:
            raise StoreUnreachable(
                f"{self.describe} has been unreachable for {now - started:.0f} s ({_first_line(e)}); start the "
                f"server or fix the network, and raise {ENV} (now {self.deadline_s:g} s) to wait longer") from None
        time.sleep(min(delay, max(0.05, self.deadline_s - (now - started))))
        return min(delay * 2, MAX_DELAY_S)

    def _purge(self) -> None:
        if self.on_error is not None:
            try:
                self.on_error()
            except Exception:  # noqa: BLE001 — the server is still away: the next try says so
                pass

    def _went_down(self, e: BaseException) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        self._say(f"{self.describe}: connection lost ({_first_line(e)}); reconnecting with backoff for up to "
                  f"{self.deadline_s:g} s")

    def recovered(self) -> None:
        """The store answered again: end the outage (a no-op when there was none)."""
        with self._lock:
            since, self._down_since = self._down_since, None
            if since is None:
                return
            self.outages += 1
            self.reconnected_at = time.time()
        self._say(f"{self.describe}: reconnected after {time.monotonic() - since:.1f} s")

    def _say(self, msg: str) -> None:
        try:
            self.notify(msg)
        except Exception:  # noqa: BLE001 — telling must never break the retry
            pass


class Retrying:
    """A view of ``target`` whose named methods go through ``rc.call`` (the rest pass through)."""

    def __init__(self, target: Any, rc: Reconnect, methods: Iterable[str]):
        self._target = target
        self._rc = rc
        self._methods = frozenset(methods)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name not in self._methods or not callable(attr):
            return attr
        rc = self._rc

        def call(*args: Any, **kwargs: Any) -> Any:
            return rc.call(lambda: attr(*args, **kwargs))

        return call

    @property
    def target(self) -> Any:
        return self._target


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _stderr(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)
