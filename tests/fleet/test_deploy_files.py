"""deploy/: the runner start script turns an allocation's GPUs into --gpus (UUIDs or indices from
CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists; none: a CPU runner), and the systemd unit,
the Slurm batch script and the Kubernetes Job all run it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.fleet.helpers import REPO

SCRIPT = REPO / "deploy" / "bin" / "arledger-runner"
SMI = """#!/bin/sh
echo "0, GPU-aaaa"
echo "1, GPU-bbbb"
echo "2, GPU-cccc"
echo "3, GPU-dddd"
"""


def _args(tmp_path: Path, *, smi: bool, **env: str) -> list[str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "nvidia-smi").unlink(missing_ok=True)
    if smi:
        (bindir / "nvidia-smi").write_text(SMI)
        os.chmod(bindir / "nvidia-smi", 0o755)
    (bindir / "fake-arledger").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\necho "CVD=${CUDA_VISIBLE_DEVICES-unset}"\n')
    os.chmod(bindir / "fake-arledger", 0o755)
    base = {"PATH": f"{bindir}:/usr/bin:/bin", "ARLEDGER_LEDGER": "sqlite:x.db",
            "ARLEDGER_BIN": str(bindir / "fake-arledger"), "ARLEDGER_RUNNER_ID": "n1", **env}
    p = subprocess.run(["bash", str(SCRIPT)], env=base, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.split("\n")


def _flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_gpus_from_the_allocation(tmp_path: Path) -> None:
    a = _args(tmp_path, smi=True, CUDA_VISIBLE_DEVICES="GPU-bbbb,GPU-dddd")  # Slurm/containers: UUIDs
    assert _flag(a, "--gpus") == "1,3" and _flag(a, "--gpus-per-trial") == "1" and _flag(a, "--slots") == "2"
    assert "CVD=unset" in a  # the runner gives each trial its own
    a = _args(tmp_path, smi=True, CUDA_VISIBLE_DEVICES="2,3", ARLEDGER_GPUS_PER_TRIAL="2")
    assert _flag(a, "--gpus") == "2,3" and _flag(a, "--slots") == "1"
    a = _args(tmp_path, smi=True)  # a whole host (systemd) or a pod's GPUs (Kubernetes)
    assert _flag(a, "--gpus") == "0,1,2,3" and _flag(a, "--slots") == "4"
    a = _args(tmp_path, smi=True, ARLEDGER_GPUS="0,1")
    assert _flag(a, "--gpus") == "0,1"
    a = _args(tmp_path, smi=False, ARLEDGER_SLOTS="3", ARLEDGER_WORK_ROOT="/w", ARLEDGER_RUNNER_ARGS="--task /t")
    assert "--gpus" not in a and _flag(a, "--slots") == "3" and _flag(a, "--work-root") == "/w"
    assert _flag(a, "--runner-id") == "n1" and _flag(a, "--task") == "/t" and _flag(a, "--lease") == "30"


def test_the_script_needs_the_ledger_url(tmp_path: Path) -> None:
    p = subprocess.run(["bash", str(SCRIPT)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert p.returncode != 0 and "set ARLEDGER_LEDGER" in p.stderr


def test_unit_batch_script_and_job_run_the_script() -> None:
    unit = (REPO / "deploy" / "systemd" / "arledger-runner@.service").read_text()
    assert "ExecStart=/opt/arledger/arledger-runner" in unit and "EnvironmentFile=/etc/arledger/runner.env" in unit
    assert "KillSignal=SIGTERM" in unit
    sbatch = (REPO / "deploy" / "slurm" / "arledger-runner.sbatch").read_text()
    assert "--ntasks-per-node=1" in sbatch and "deploy/bin/arledger-runner" in sbatch and "TERM@" in sbatch
    subprocess.run(["bash", "-n", str(REPO / "deploy" / "slurm" / "arledger-runner.sbatch")], check=True)
    job = (REPO / "deploy" / "k8s" / "runner-job.yaml").read_text()  # (no YAML parser in the test extra)
    assert "\nkind: Job\n" in job and 'command: ["/bin/bash", "/opt/arledger/arledger-runner"]' in job
    assert "\n      hostname: arledger-runners\n" in job  # one enrolled actor for every pod
    for var in ("ARLEDGER_LEDGER", "ARLEDGER_RUNNER_ID", "ARLEDGER_HOME"):
        assert f"- name: {var}\n" in job
    assert "\t" not in job
