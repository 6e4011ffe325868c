"""Eight runner processes race over fifty launches: every trial runs exactly once, no claim is
lost, the ledger verifies. On SQLite and on PostgreSQL."""

from __future__ import annotations

import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from ledger import events as ev
from ledger.audit import init_ledger, verify
from tasks import workspace as wsp
from tasks.spec import load_task
from tasks.submit import submit_trial
from tests.tasks.runner_helpers import make_task, pg_available, pg_schema, set_value

RUNNERS = 8
LAUNCHES = 50

SCRIPT = """
import sys
from tasks.runner import Runner
url, rid, task, data, work = sys.argv[1:6]
r = Runner(url, runner_id=rid, tasks=[task], data_root=data, work_root=work, lease_s=30, poll_s=0.05)
r.run_until_idle(timeout_s=300)
print("LABELLED", r.labelled, flush=True)
r.close()
"""


@pytest.fixture
def world():
    d = Path(tempfile.mkdtemp(prefix="arl-race-", dir="/tmp"))
    os.chmod(d, 0o755)
    for sub in ("ledger", "data", "work"):
        (d / sub).mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _witness() -> tuple[socket.socket, list[str], threading.Thread]:
    """A loopback server the recipes report to (their task declares network = true)."""
    srv = socket.create_server(("127.0.0.1", 0))
    lines: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                lines.append(conn.makefile().read().strip())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, lines, t


def _race(world: Path, url: str) -> None:
    srv, lines, serving = _witness()
    task = make_task(world / "task", report_port=srv.getsockname()[1])
    spec = load_task(task)
    led, _, _ = init_ledger(url)
    base = wsp.baseline_files(spec)
    ids = []
    for i in range(LAUNCHES):
        s = submit_trial(led, spec, campaign="race", diff=set_value(base, f"{i + 2}.5"), hypothesis=f"value {i}",
                         actor="human:t", seen=set())
        assert s.passed, s.reason
        ids.append(s.trial_id)
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, url, f"r{k}", str(task), str(world / "data"),
                               str(world / "work")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for k in range(RUNNERS)]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        outs.append(out)
        assert p.returncode == 0, out
    labelled = [int(line.split()[1]) for out in outs for line in out.splitlines() if line.startswith("LABELLED")]
    assert len(labelled) == RUNNERS and sum(labelled) == LAUNCHES, outs

    per: dict = collections.defaultdict(collections.Counter)
    runners_used = set()
    for rec in led.events():
        e = rec.event
        if e.originator_id in ids:
            per[e.originator_id][type(e).__name__] += 1
            if isinstance(e, ev.LaunchClaimed):
                runners_used.add(e.runner)
            if isinstance(e, ev.OutcomeLabelled):
                assert e.status == "scored", (e.status, e.reason)
    for tid in ids:
        c = per[tid]
        assert c["LaunchClaimed"] == 1 and c["TrialStarted"] == 1 and c["TrialFinished"] == 1, c
        assert c["TrialEvaluated"] == 1 and c["OutcomeLabelled"] == 1 and c["LaunchRequeued"] == 0, c
    srv.close()
    serving.join(timeout=5)
    values = collections.Counter(line.split()[0] for line in lines)
    assert len(lines) == LAUNCHES and len(values) == LAUNCHES, values.most_common(3)  # each recipe ran once
    assert len(runners_used) >= 2  # it was a race
    assert verify(led).ok
    led.close()


def test_race_sqlite(world: Path) -> None:
    _race(world, f"sqlite:{world}/ledger/ledger.db")


@pytest.mark.postgres
@pytest.mark.skipif(not pg_available(), reason="PostgreSQL at 127.0.0.1:5432 (user postgres, db test) is unreachable")
def test_race_postgres(world: Path) -> None:
    with pg_schema() as url:
        _race(world, url)
