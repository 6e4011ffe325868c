"""Data preparation on a runner's host: a task's ``prepare`` command, once per task version.

:class:`DataCache` runs ``[commands] prepare`` (harness side, never inside a trial) into
``<data_root>/<task>-v<version>/`` under a file lock, so concurrent runners on one host prepare a
task once, and marks it done. It runs in the prepare sandbox (:func:`tasks.sandbox_plan.prepare_plan`):
the host read-only with the ledger, its artifacts and keys, the work root and the data root covered,
writable only its data dir and the download cache, with the network (data comes from package
registries). When the runner is root the held-out split is also made root-only (0700).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Callable
from pathlib import Path

from tasks import bwrap, sandbox
from tasks import sandbox_plan as splan
from tasks.classify import log_tail
from tasks.data import cache_dir
from tasks.spec import TaskSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
"""Where ``prepare`` runs (its ``python -m tasks.builtin...`` modules resolve from here)."""


class DataCache:
    def __init__(self, data_root: Path, log: Callable[[str], None], *, box: bwrap.Bubblewrap | None,
                 hidden: list[Path]):
        """``box``: the sandbox prepare runs in (None: ``--unsafe-no-sandbox``); ``hidden``: what it must
        not see besides the data root (the ledger's home, file and key, the work root)."""
        self.data_root = data_root
        self._log = log
        self._box = box
        self._hidden = [*hidden, data_root]
        self._prepared: set[str] = set()

    def path(self, spec: TaskSpec) -> Path:
        """Where ``spec``'s data is (or will be) prepared."""
        return self.data_root / f"{spec.name}-v{spec.version}"

    def prepare(self, spec: TaskSpec) -> Path:
        """The prepared data directory of ``spec`` (``train/`` and ``heldout/``); runs prepare once.
        RuntimeError naming the command and the last lines of its log when it fails."""
        data = self.path(spec)
        key = data.name
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
        plan = None if self._box is None else splan.prepare_plan(
            data=data, downloads=cache_dir() / "downloads", cwd=REPO_ROOT, task=spec.root, hidden=self._hidden,
            limits=splan.limits_for(0, 4096, 1))
        res = sandbox.run(argv, cwd=REPO_ROOT, env=sandbox.harness_env(), log_path=log, plan=plan,
                          timeout_s=float(os.environ.get("ARLEDGER_PREPARE_TIMEOUT_S", 3600)))
        if not res.ok:
            tail = log_tail(log, 4000).strip().splitlines()[-3:]
            raise RuntimeError(f"`{cmd}` failed ({'timed out' if res.timed_out else res.exit_status}): "
                               f"{' | '.join(tail)}")


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
