"""A PostgreSQL ledger survives its server's restart and a connection lost mid-append.

Real server restarts (``pg_ctlcluster 15 main restart``), and a real TCP proxy between the ledger
and the server that drops the connection right after the server answered an append (so the append
committed and its writer never heard): the writer must find it landed and not write it again.
"""

from __future__ import annotations

import socket
import threading
import time

import psycopg
import pytest

from ledger import events as ev
from ledger.aggregates import Campaign
from ledger.app import Ledger
from ledger.audit import init_ledger, verify
from ledger.reconnect import Reconnect, is_connection_error
from ledger.store import LedgerError
from tests.pgtools import can_restart_postgres, pg_available, pg_schema, restart_postgres

pytestmark = pytest.mark.postgres
needs_pg = pytest.mark.skipif(not pg_available(), reason="PostgreSQL is not running at 127.0.0.1:5432")
needs_restart = pytest.mark.skipif(can_restart_postgres() is not None, reason=str(can_restart_postgres()))


def test_only_connection_errors_are_retried():
    assert is_connection_error(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert is_connection_error(psycopg.errors.AdminShutdown("terminating connection due to administrator command"))
    assert is_connection_error(psycopg.InterfaceError("the connection is closed"))
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = psycopg.errors.CannotConnectNow("the database system is starting up")
    assert is_connection_error(wrapped)
    assert not is_connection_error(psycopg.errors.LockNotAvailable("lock timeout"))
    assert not is_connection_error(psycopg.errors.UniqueViolation("duplicate key"))
    assert not is_connection_error(psycopg.errors.QueryCanceled("statement timeout"))
    assert not is_connection_error(ValueError("not a database error"))


def test_the_deadline_ends_the_wait_with_a_message():
    rc = Reconnect("PostgreSQL ledger x", deadline=1.0, notify=lambda m: None)
    calls = []

    def down():
        calls.append(time.monotonic())
        raise psycopg.OperationalError("connection refused")

    with pytest.raises(LedgerError, match="unreachable for .* ARLEDGER_RECONNECT_S"):
        rc.call(down)
    assert 2 <= len(calls) <= 4  # 0.5 s, then the rest of the second


def _open_campaign(led: Ledger, name: str) -> Campaign:
    c = Campaign.open(name=name, actor="human:test", task="t", task_version="1", task_sha="x", metric="loss",
                      direction="min", arm="lineage", harness_version="h", config={}, specialists=[])
    led.save(c)
    return c


@needs_pg
@needs_restart
def test_appends_and_reads_go_on_across_a_server_restart():
    with pg_schema() as url:
        led, _, _ = init_ledger(url)
        said: list[str] = []
        led.on_outage(said.append)
        c = _open_campaign(led, "restart")
        errors: list[BaseException] = []
        done = threading.Event()
        written = []

        def writer():
            try:
                while not done.is_set():
                    size = led.size()  # the readers a projection and a runner's queue use
                    assert len(list(led.events(max(0, size - 3), until=size))) == min(3, size)
                    camp = led.load(Campaign, c.id)
                    camp.retire("human:test", specialist=f"s{len(written)}", reason="tick")
                    led.save(camp)
                    written.append(camp.version)
                    time.sleep(0.02)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.5)
        before = len(written)
        restart_postgres(down_s=7.0)  # longer than the pool waits for a connection (5 s)
        after = len(written)
        t_end = time.time() + 60
        while len(written) < after + 5 and time.time() < t_end and not errors:
            time.sleep(0.1)
        done.set()
        t.join(60)
        assert not errors, errors
        assert len(written) > before + 3, "appends did not resume after the restart"
        assert led.reconnect is not None and led.reconnect.outages >= 1
        assert any("connection lost" in m for m in said) and any("reconnected" in m for m in said)
        versions = [e.originator_version for e in led.stream(c.id)]
        assert versions == list(range(1, len(versions) + 1)) and len(versions) == len(written) + 1
        assert verify(led).ok
        led.close()


class _DropAfterAnswer:
    """A TCP proxy to the server; when armed, it forwards the next server answer that follows a
    client message, then closes both ends: the server did the work, the client never heard."""

    def __init__(self, port: int = 5432):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.upstream = port
        self.armed = threading.Event()
        self.dropped = 0
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            self._conns += [c, u]
            pending = threading.Event()  # a client message went up since the last answer
            threading.Thread(target=self._pipe, args=(c, u, pending, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, pending, False), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, pending: threading.Event, up: bool) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if up:
                    if self.armed.is_set():
                        pending.set()
                    b.sendall(data)
                    continue
                # ReadyForQuery ends the answer: the statement ran and (autocommit) committed
                if pending.is_set() and data[-6:-1] == b"Z\x00\x00\x00\x05":
                    pending.clear()
                    self.armed.clear()
                    self.dropped += 1
                    for s in (a, b):
                        s.shutdown(socket.SHUT_RDWR)  # a FIN now, even while the other pipe reads
                    return
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.srv.close()
        for s in self._conns:
            try:
                s.close()
            except OSError:
                pass


@needs_pg
def test_an_append_whose_answer_was_lost_is_found_landed_not_written_twice():
    with pg_schema() as url:
        led0, _, _ = init_ledger(url)
        led0.close()
        proxy = _DropAfterAnswer()
        try:
            purl = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
            led = Ledger.open(purl)
            led.on_outage(lambda m: None)
            c = _open_campaign(led, "lost-ack")
            size = led.size()
            camp = led.load(Campaign, c.id)
            camp.retire("human:test", specialist="opt", reason="the one append")
            proxy.armed.set()
            led.save(camp)  # the answer is dropped; the save must find it landed
            assert proxy.dropped == 1, "the proxy did not drop the append's answer"
            evs = led.stream(c.id)
            retired = [e for e in evs if isinstance(e, ev.SpecialistRetired)]
            assert len(retired) == 1
            assert led.size() == size + 1
            # the next append goes on at the next version
            camp = led.load(Campaign, c.id)
            camp.retire("human:test", specialist="arch", reason="after")
            led.save(camp)
            assert [e.originator_version for e in led.stream(c.id)] == list(range(1, len(evs) + 2))
            assert verify(led).ok
            led.close()
        finally:
            proxy.close()


@needs_pg
@needs_restart
def test_a_lost_append_that_did_not_land_is_written_once():
    """The connection drops before the server ran the append (the server restarts first)."""
    with pg_schema() as url:
        led, _, _ = init_ledger(url)
        led.on_outage(lambda m: None)
        c = _open_campaign(led, "not-landed")
        camp = led.load(Campaign, c.id)
        camp.retire("human:test", specialist="opt", reason="across the restart")
        restart_postgres(down_s=1.0)  # every pooled connection is now dead
        led.save(camp)
        assert [type(e).__name__ for e in led.stream(c.id)].count("SpecialistRetired") == 1
        assert verify(led).ok
        led.close()
