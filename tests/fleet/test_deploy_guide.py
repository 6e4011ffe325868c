"""Acceptance: docs/deploy.md, followed literally on this machine. Its ```sh deploy-step ROLE blocks
run in order — ``db`` and ``driver`` in the driver's directory (which alone holds the task),
``runner`` once in each of two empty directories standing in for two runner hosts (each its own
ARLEDGER_HOME, cache and work root), ``runner-service`` started in the background in each, as
systemd would — with the guide's ``deploy-env`` block replaced by this test's values (a fresh
PostgreSQL schema, a fast task, two trials). The one step a person does by hand, copying the
runners' ``.id`` files to the driver host, the test does. Then: the campaign completed, both
runners served it from the ledger's copy of the task, `audit verify` passed, a checkpoint was
published, and the runners drain on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from ledger import events as ev
from ledger.app import Ledger
from tests.agents.test_campaign import toy_task
from tests.fleet.helpers import REPO, wait_for
from tests.tasks.runner_helpers import kill_under, open_dir, pg_available

GUIDE = REPO / "docs" / "deploy.md"
BLOCK = re.compile(r"^```sh (deploy-env|deploy-step (\S+))\n(.*?)^```$", re.M | re.S)


def guide_blocks() -> tuple[str, list[tuple[str, str]]]:
    """The guide's deploy-env block and its (role, script) deploy-step blocks, in order."""
    env, steps = None, []
    for m in BLOCK.finditer(GUIDE.read_text()):
        if m.group(1) == "deploy-env":
            env = m.group(3)
        else:
            steps.append((m.group(2), m.group(3)))
    assert env is not None, "docs/deploy.md has no ```sh deploy-env block"
    return env, steps


def test_the_guide_marks_its_steps() -> None:
    env, steps = guide_blocks()
    roles = [r for r, _ in steps]
    assert set(roles) == {"db", "driver", "runner", "runner-service"}
    assert roles.index("db") < roles.index("driver") < roles.index("runner") < roles.index("runner-service")
    for var in ("ARLEDGER_DB", "ARLEDGER_SCHEMA", "ARLEDGER_LEDGER", "ARLEDGER_TASK", "ARLEDGER_CAMPAIGN"):
        assert f"export {var}=" in env
    assert "(docs/deploy.md)" in (REPO / "README.md").read_text()


@pytest.mark.skipif(not pg_available(), reason="needs PostgreSQL at 127.0.0.1:5432 (user postgres, db test)")
def test_the_deploy_guide_runs_a_campaign_on_two_runner_hosts() -> None:
    import psycopg

    guide_env, steps = guide_blocks()
    root = Path(tempfile.mkdtemp(prefix="arl-deploy-", dir="/tmp"))
    os.chmod(root, 0o755)
    schema = "fleetops_deploy_" + uuid.uuid4().hex[:10]
    db = "postgresql://postgres@127.0.0.1:5432/test"
    driver = open_dir(root / "driver")
    task = toy_task(open_dir(driver / "toy"), confirmations=0)
    hosts = {name: open_dir(root / name) for name in ("host-1", "host-2")}
    bindir = open_dir(root / "bin")  # `arledger` as installed: this checkout's
    (bindir / "arledger").write_text(f'#!/bin/sh\nexec {sys.executable} -m arledger.cli "$@"\n')
    os.chmod(bindir / "arledger", 0o755)
    my_env = "\n".join([
        f'export ARLEDGER_DB="{db}"', f"export ARLEDGER_SCHEMA={schema}",
        'export ARLEDGER_LEDGER="$ARLEDGER_DB?schema=$ARLEDGER_SCHEMA"', f"export ARLEDGER_TASK={task}",
        "export ARLEDGER_CAMPAIGN=fleet-test", "export ARLEDGER_MAX_TRIALS=2",
        f"export ARLEDGER_PUBLISH={driver / 'published'}"])
    # the guide's env block names the same variables this test sets
    assert set(re.findall(r"export (\w+)=", guide_env)) == set(re.findall(r"export (\w+)=", my_env))

    def host_env(d: Path, runner_id: str | None = None) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith("ARLEDGER_")}
        e.update(PATH=f"{bindir}:{REPO / 'deploy' / 'bin'}:{e.get('PATH', '/usr/bin:/bin')}", PYTHONPATH=str(REPO),
                 ARLEDGER_HOME=str(d / "home"), ARLEDGER_CACHE=str(d / "cache"), COLUMNS="100")
        if runner_id:
            e.update(ARLEDGER_RUNNER_ID=runner_id, ARLEDGER_WORK_ROOT=str(d / "work"), ARLEDGER_LEASE_S="6",
                     ARLEDGER_HEARTBEAT_S="2")
        return e

    def sh(script: str, d: Path, env: dict[str, str], timeout: float = 600) -> str:
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", my_env + "\n" + script], cwd=d, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        assert p.returncode == 0, f"step failed in {d.name}:\n{script}\n--- output:\n{p.stdout}"
        return p.stdout

    url = f"{db}?schema={schema}"
    procs: dict[str, subprocess.Popen] = {}
    outputs: list[str] = []
    try:
        for role, script in steps:
            if role in ("db", "driver"):
                outputs.append(sh(script, driver, host_env(driver)))
            elif role == "runner":
                for name, d in hosts.items():
                    outputs.append(sh(script, d, host_env(d, name)))
                    for f in d.glob("*.id"):  # the person's `scp host:runner-*.id .`
                        shutil.copy(f, driver / f.name)
            elif role == "runner-service":
                for name, d in hosts.items():
                    log = open(d / "runner.log", "w")  # noqa: SIM115 — the process owns it
                    procs[name] = subprocess.Popen(["bash", "-euo", "pipefail", "-c", my_env + "\n" + script],
                                                   cwd=d, env=host_env(d, name), stdout=log,
                                                   stderr=subprocess.STDOUT, text=True)
                wait_for(lambda: _alive(url) == set(hosts), timeout=120, what="both runners' first heartbeat")
            else:
                raise AssertionError(f"unknown role {role}")
        assert all(p.poll() is None for p in procs.values())
        for p in procs.values():  # drain, as `systemctl stop` does
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=120) for p in procs.values()]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        kill_under(root)
    logs = {name: (d / "runner.log").read_text() for name, d in hosts.items()}
    try:
        assert codes == [0, 0], logs
        text = "\n".join(outputs)  # every step exited 0 (bash -e): `audit verify` among them
        with Ledger.open(url) as led:
            events = [r.event for r in led.events()]
        closed = [e for e in events if isinstance(e, ev.CampaignClosed)]
        assert closed and closed[-1].trials >= 2, text
        labels = [e for e in events if isinstance(e, ev.OutcomeLabelled)]
        trials = {e.originator_id for e in events if isinstance(e, ev.LaunchRequested)}
        assert trials and {e.originator_id for e in labels} >= trials  # every launched trial has its label
        claimers = {e.runner for e in events if isinstance(e, ev.LaunchClaimed)}
        assert claimers <= set(hosts) and claimers, claimers
        for name, log in logs.items():
            if name in claimers:
                assert "serving task toy from the ledger" in log, log
            assert not (hosts[name] / "toy").exists()
        stopped = [e for e in events if isinstance(e, ev.RunnerStopped)]
        assert sorted(e.actor for e in stopped) == ["runner:host-1", "runner:host-2"]
        assert all(e.reason.startswith("drained") for e in stopped)
        assert list((driver / "published").glob("checkpoint-*.txt"))
        verify = subprocess.run([sys.executable, "-m", "arledger.cli", "audit", "verify", "--json"],
                                env={**host_env(driver), "ARLEDGER_LEDGER": url}, cwd=driver, text=True,
                                capture_output=True, timeout=300)
        assert verify.returncode == 0 and json.loads(verify.stdout)["ok"], verify.stdout + verify.stderr
    finally:
        with psycopg.connect(db, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(root, ignore_errors=True)


def _alive(url: str) -> set[str]:
    import time

    from projections.fleet import fleet

    try:
        with Ledger.open(url) as led:
            return {r.runner for r in fleet(led) if r.state(time.time()) == "alive" and r.beats > 0}
    except Exception:  # noqa: BLE001 — not created yet
        return set()
