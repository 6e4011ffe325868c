"""Fault tests with real processes: SIGKILL during appends, and two writers racing on one trial."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import events as ev
from ledger.aggregates import Campaign, Trial
from ledger.audit import init_ledger, verify

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_sigkill_during_appends_20_times(store, tmp_path, request, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:{tmp_path}/ledger.db" if store == "sqlite" else request.getfixturevalue("pg_url")
    led, _, _ = init_ledger(url, tmp_path / "k.key")
    rng = random.Random(1234)
    returned: set[int] = set()
    for _round in range(20):
        p = subprocess.Popen([sys.executable, "-m", "tests.ledger.writer_proc", url, "killme"],
                             stdout=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
        # wait for the writer to get going, then kill it at a random point
        first = p.stdout.readline()
        assert first.startswith("APPENDED"), first
        returned.add(int(first.split()[1]))
        time.sleep(rng.uniform(0.0, 0.4))
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate()
        returned.update(int(line.split()[1]) for line in out.splitlines() if line.startswith("APPENDED"))
        assert p.returncode == -signal.SIGKILL
    rep = verify(led)
    assert rep.ok, [p.message for p in rep.problems[:3]]
    camp = led.load(Campaign, ev.campaign_id_for("killme"))
    present = set(camp.trial_numbers)
    assert returned <= present, f"appends that returned but are gone: {sorted(returned - present)[:10]}"
    # nothing half-written: every registered trial has its proposal and launch request, and vice versa
    for n, tid in camp.trial_numbers.items():
        t = led.load(Trial, tid)
        assert t.proposed is not None and t.launch is not None, n
    proposed = sum(1 for r in led.events() if isinstance(r.event, ev.TrialProposed))
    assert proposed == len(present)
    assert len(returned) >= 20
    led.close()


CLAIMER = r"""
import os, sys, time
from ledger.aggregates import Trial
from ledger.app import Ledger, ConflictError
import uuid
url, tid, go = sys.argv[1], uuid.UUID(sys.argv[2]), sys.argv[3]
led = Ledger.open(url)
t = led.load(Trial, tid)            # both processes read the same version...
t.claim(sys.argv[4], 30, time.time())
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
try:
    led.save(t)                      # ...and append at the same version
    print("WON")
except ConflictError as e:
    print("CONFLICT", e)
"""


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_two_processes_same_trial_same_version(store, tmp_path, request, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:{tmp_path}/ledger.db" if store == "sqlite" else request.getfixturevalue("pg_url")
    led, _, _ = init_ledger(url, tmp_path / "k.key")
    c = Campaign.open(name="race", actor="human:t", task="t", task_version="1", task_sha="0" * 64, metric="m",
                      direction="min")
    t = Trial.propose(c.id, 0, actor="human:t", specialist="s", surface="s", hypothesis="h")
    c.register(t.id, 0, "s", "proposal", "human:t")
    t.request_launch("human:t", task="t")
    led.save(c, t)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, url, str(t.id), str(go), f"r{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
             for i in range(2)]
    try:
        for p in procs:  # both have read the trial at the same version before either appends
            line = p.stdout.readline().strip()
            assert line == "READY", (line, p.communicate(timeout=30))
        go.touch()
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = sorted(o[0].strip() for o in outs)
    assert all(r for r in results), outs
    assert [r.split()[0] for r in results] == ["CONFLICT", "WON"], outs
    assert "already written by another writer" in results[0]
    claims = [e for e in led.stream(t.id) if isinstance(e, ev.LaunchClaimed)]
    assert len(claims) == 1
    assert verify(led).ok
    led.close()
