"""Run a built-in mini task's prepare, workspace staging and training as the runner would, without
a runner: the drivers the airbench-mini and nanochat-mini tests share."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from tasks.knobs import set_knob

REPO = Path(__file__).resolve().parents[2]


def run_prepare(SPEC: Any, data: Path, cache: Path, offline: bool = False,
                timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARLEDGER_CACHE": str(cache)}
    env.pop("ARLEDGER_OFFLINE", None)
    if offline:
        env["ARLEDGER_OFFLINE"] = "1"
    cmd = SPEC.commands.prepare.format(python=sys.executable, data=data).split()
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def stage_workspace(SPEC: Any, ws: Path, knobs: dict) -> None:
    shutil.copytree(SPEC.recipe_path, ws, ignore=shutil.ignore_patterns("__pycache__"))
    text = (ws / "train.py").read_text()
    for name, value in knobs.items():
        text = set_knob(text, name, value)
    (ws / "train.py").write_text(text)
    for rel in SPEC.stage_into_workspace:
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SPEC.root / rel, ws / rel)
        (ws / rel).chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def train(ws: Path, data: Path, out: Path, seed: int) -> subprocess.CompletedProcess:
    out.mkdir(parents=True)
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(ARLEDGER_DATA=str(data / "train"), ARLEDGER_OUT=str(out), ARLEDGER_SEED=str(seed),
               ARLEDGER_THREADS="2", ARLEDGER_TIME_BUDGET_S="0", ARLEDGER_DEVICE="cpu", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "train.py"], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=300)
