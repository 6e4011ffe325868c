"""`arledger runner --unsafe-no-sandbox` runs recipes unconfined, records that with each trial, and
`arledger audit report` lists every such trial, and every diff that reached for held-out data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ledger import events as ev
from ledger.aggregates import Trial
from ledger.audit import init_ledger
from tasks import workspace as wsp
from tasks.spec import load_task
from tasks.submit import submit_trial
from tests.tasks.runner_helpers import insert_after, make_task, set_value

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def world():
    d = Path(tempfile.mkdtemp(prefix="arl-unsafe-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "arledger.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_unsafe_runs_are_recorded_and_flagged_by_the_audit(world: Path) -> None:
    task = make_task(world / "task")
    spec = load_task(task)
    url = f"sqlite:{world}/ledger/ledger.db"
    led, _, _ = init_ledger(url)
    base = wsp.baseline_files(spec)
    plain = submit_trial(led, spec, campaign="c", diff=set_value(base, "0.5"), hypothesis="plain", actor="human:t")
    peek = submit_trial(led, spec, campaign="c", hypothesis="peek at the held-out file", actor="human:t",
                        diff=insert_after(base, "train.py", "def main():\n",
                                          '    print(open(os.environ["ARLEDGER_DATA"] + "/../heldout/secret.txt").read())\n'))
    assert plain.passed and peek.passed
    led.close()
    common = ["--ledger", url, "--task", str(task), "--data-root", str(world / "data"),
              "--work-root", str(world / "work")]
    p = _cli("runner", "--once", "--unsafe-no-sandbox", *common)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "UNSAFE: no sandbox" in p.stdout
    led = init_ledger(url)[0]
    for sub in (plain, peek):
        t = led.load(Trial, sub.trial_id)
        assert t.status == "scored", t.label
        started = next(e for e in led.stream(sub.trial_id) if isinstance(e, ev.TrialStarted))
        assert started.sandbox is not None and started.sandbox.kind == "none"
        assert "--unsafe-no-sandbox" in started.sandbox.note
    led.close()
    rep = _cli("audit", "report", "--ledger", url)
    assert rep.returncode == 0, rep.stderr
    text = rep.stdout
    section = text.split("### Trials run without a sandbox (2)")[1].split("###")[0]
    assert f"| {plain.number:03d} | scored | none (--unsafe-no-sandbox) |" in section
    assert f"| {peek.number:03d} | scored | none (--unsafe-no-sandbox) |" in section
    contam = text.split("### Contamination (1 diffs)")[1].split("###")[0]
    assert f"| {peek.number:03d} |" in contam and "held-out data" in contam
