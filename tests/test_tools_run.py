"""The benchmarks under tools/ still run against the current code: a short run of each cheap one
prints its one JSON line with the fields the README quotes (their figures are not asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _json_line(args: list[str], timeout: float) -> dict:
    res = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install bubblewrap)")
def test_bench_runner_runs_and_reports_its_ratio() -> None:
    out = _json_line(["tools/bench_runner.py", "--seconds", "0.5", "--trials", "2", "--sandbox-runs", "2"], 300)
    assert out["bench"] == "runner" and out["trials"] == 2
    assert out["overhead_ratio"] > 0 and "cost_ms" in out["sandbox_ms"]


def test_bench_projections_runs_quick() -> None:
    out = _json_line(["tools/bench_projections.py", "--quick"], 600)
    assert out["view_trials"] == 1000 and "view_p95_ms" in out and "rebuild_s" in out
