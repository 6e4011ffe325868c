"""`audit verify` on a ledger that is being written: a writer process appends all the time (as
runners' heartbeats and a running campaign do); verify checks the log as of the tree head it read
first, passes, and counts what was appended meanwhile; at rest it reads everything again, so a
row past the head is still a divergence."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

import pytest

from ledger.audit import init_ledger, verify
from tests.ledger.test_faults import ROOT, _env


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_verify_while_a_writer_appends(store, tmp_path, request, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:{tmp_path}/ledger.db" if store == "sqlite" else request.getfixturevalue("pg_url")
    led, _, _ = init_ledger(url, tmp_path / "k.key")
    p = subprocess.Popen([sys.executable, "-m", "tests.ledger.writer_proc", url, "live"], stdout=subprocess.PIPE,
                         text=True, env=_env(), cwd=ROOT)
    try:
        for _ in range(30):  # let it get going
            assert p.stdout.readline().startswith("APPENDED")
        sizes, appended = [], 0
        for _ in range(4):
            rep = verify(led)
            assert rep.ok, [x.message for x in rep.problems[:3]]
            sizes.append(rep.events)
            appended += rep.appended_during
        assert sizes == sorted(sizes) and sizes[-1] > sizes[0]  # it kept growing while verified
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    rep = verify(led)
    assert rep.ok and rep.appended_during == 0 and rep.events >= sizes[-1]
    led.close()
    if store == "sqlite":  # at rest, a row the log never sealed is found as before
        with sqlite3.connect(tmp_path / "ledger.db") as c:
            row = c.execute("SELECT originator_id, originator_version, topic, state FROM stored_events "
                            "ORDER BY rowid DESC LIMIT 1").fetchone()
            c.execute("INSERT INTO stored_events (originator_id, originator_version, topic, state) "
                      "VALUES (?, ?, ?, ?)", (row[0], row[1] + 1000, row[2], row[3]))
        from ledger.app import Ledger

        with Ledger.open(url) as led2:
            bad = verify(led2)
        assert not bad.ok
