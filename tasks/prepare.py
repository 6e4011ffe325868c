"""Data preparation on a runner's host: a task's ``prepare`` command, once per task version.

:class:`DataCache` runs ``[commands] prepare`` (harness side, never inside a trial) into
``<data_root>/<task>-v<version>/`` under a file lock, so concurrent runners on one host prepare a
task once, and marks it done. When the runner is root the held-out split is made root-only (0700)
and the train split world-readable. :meth:`DataCache.train_view` gives the train split as the
recipe's user may see it: the prepared directory itself when that user can reach it, else a
hard-linked (or copied) read-only view under the runner's work root.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from tasks import sandbox
from tasks.classify import log_tail
from tasks.spec import TaskSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
"""Where ``prepare`` runs (its ``python -m tasks.builtin...`` modules resolve from here)."""


class DataCache:
    def __init__(self, data_root: Path, work_root: Path, log: Callable[[str], None]):
        self.data_root = data_root
        self.work_root = work_root
        self._log = log
        self._prepared: set[str] = set()

    def prepare(self, spec: TaskSpec) -> Path:
        """The prepared data directory of ``spec`` (``train/`` and ``heldout/``); runs prepare once.
        RuntimeError naming the command and the last lines of its log when it fails."""
        key = f"{spec.name}-v{spec.version}"
        data = self.data_root / key
        if key in self._prepared:
            return data
        self.data_root.mkdir(parents=True, exist_ok=True)
        marker = data / ".arledger-prepared"
        with open(self.data_root / f".{key}.lock", "a+") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            try:
                if not marker.exists():
                    data.mkdir(parents=True, exist_ok=True)
                    if spec.commands.prepare:
                        self._run_prepare(spec, key, data)
                    (data / "train").mkdir(exist_ok=True)
                    (data / "heldout").mkdir(exist_ok=True)
                    if os.geteuid() == 0:
                        secure_data(data)
                    marker.write_text(f"{spec.name} {spec.version}\n")
                elif os.geteuid() == 0:
                    secure_data(data)
            finally:
                fcntl.flock(lockf, fcntl.LOCK_UN)
        self._prepared.add(key)
        return data

    def _run_prepare(self, spec: TaskSpec, key: str, data: Path) -> None:
        cmd = spec.commands.prepare
        self._log(f"preparing data for {key} in {data}")
        argv = sandbox.Placeholders({"python": sys.executable, "data": str(data), "task": str(spec.root)}).argv(cmd)
        log = self.data_root / f".{key}.prepare.log"
        res = sandbox.run(argv, cwd=REPO_ROOT, env=sandbox.harness_env(), log_path=log,
                          timeout_s=float(os.environ.get("ARLEDGER_PREPARE_TIMEOUT_S", 3600)))
        if not res.ok:
            tail = log_tail(log, 4000).strip().splitlines()[-3:]
            raise RuntimeError(f"`{cmd}` failed ({'timed out' if res.timed_out else res.exit_status}): "
                               f"{' | '.join(tail)}")

    def train_view(self, spec: TaskSpec, data: Path, ident: sandbox.Identity | None) -> Path:
        """The train split as the recipe's user may see it (see the module doc)."""
        train = data / "train"
        if ident is None or sandbox.reachable_by(train, ident):
            return train
        key = f"{spec.name}-v{spec.version}-{hashlib.sha256(str(data).encode()).hexdigest()[:10]}"
        view_root = self.work_root / "data"
        view_root.mkdir(exist_ok=True)
        os.chmod(view_root, 0o711)
        view = view_root / key / "train"
        marker = view_root / key / ".complete"
        if marker.exists():
            return view
        with open(self.work_root / f".{key}.view.lock", "a+") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            try:
                if not marker.exists():
                    if view.parent.exists():
                        shutil.rmtree(view.parent)
                    view.parent.mkdir(mode=0o755)
                    shutil.copytree(train, view, copy_function=_link_or_copy, symlinks=False)
                    for d, _, fs in os.walk(view):
                        os.chmod(d, 0o755)
                        for f in fs:
                            os.chmod(os.path.join(d, f), 0o444)
                    marker.write_text("ok\n")
            finally:
                fcntl.flock(lockf, fcntl.LOCK_UN)
        return view


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def secure_data(data: Path) -> None:
    """Held-out data root-only; the train split readable by everyone (the recipe's user)."""
    os.chmod(data, 0o755)
    held = data / "heldout"
    if held.exists():
        os.chown(held, 0, 0)
        os.chmod(held, 0o700)
    train = data / "train"
    if train.exists():
        for d, _, fs in os.walk(train):
            os.chmod(d, 0o755)
            for f in fs:
                with contextlib.suppress(OSError):
                    p = os.path.join(d, f)
                    os.chmod(p, os.stat(p).st_mode | 0o444)
