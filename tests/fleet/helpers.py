"""Shared by the fleet tests: real `arledger runner` processes in their own (empty) directories."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ledger.app import Ledger

REPO = Path(__file__).resolve().parents[2]


def runner_proc(cwd: Path, url: str, *args: str, log: Path | None = None) -> subprocess.Popen:
    """`arledger runner --ledger URL ARGS` started in ``cwd`` (nothing of the task there), with the
    repository importable (as an installed arledger would be) and its own cache under ``cwd``."""
    cwd.mkdir(parents=True, exist_ok=True)
    os.chmod(cwd, 0o755)
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO), "ARLEDGER_CACHE": str(cwd / "cache")}
    out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 — the process owns it
    return subprocess.Popen([sys.executable, "-m", "arledger.cli", "runner", "--ledger", url,
                             "--work-root", str(cwd / "work"), *args], cwd=cwd, stdout=out,
                            stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(pred, timeout: float = 120.0, what: str = "condition", every: float = 0.2) -> None:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if pred():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def stream(url: str, originator_id) -> list:
    led = Ledger.open(url)
    try:
        return led.stream(originator_id)
    finally:
        led.close()
