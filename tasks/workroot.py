"""A runner's work root: the directory its trials' workspaces, outputs and logs live in.

The root is not listable (0711), each trial directory has an unguessable name, so one trial cannot
find another's files. Each trial directory names its runner process in ``owner``; a directory whose
runner is gone (SIGKILL, power loss) is swept at start-up: whatever still works in it is killed and
it is removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tasks import sandbox
from tasks import workspace as wsp


def default_work_root() -> Path:
    return Path(tempfile.gettempdir()) / f"arledger-work-{os.geteuid()}"


class WorkRoot:
    def __init__(self, path: Path, log: Callable[[str], None]):
        self.path = path
        self._log = log
        path.mkdir(parents=True, exist_ok=True)
        if os.path.islink(path):
            raise ValueError(f"work root {path} is a symlink; refusing")
        if os.geteuid() == 0:
            os.chown(path, 0, 0)
        os.chmod(path, 0o711)
        self.sweep()

    def sweep(self) -> None:
        """Remove the trial directories of runners that died, killing what still runs in them."""
        for d in self.path.glob("t-*"):
            try:
                pid, start = (d / "owner").read_text().split()
                if process_start(int(pid)) == start:
                    continue  # its runner is alive
            except (OSError, ValueError):
                try:
                    if time.time() - d.stat().st_mtime < 60:
                        continue  # being created right now
                except FileNotFoundError:
                    continue  # its runner removed it a moment ago
            killed = sandbox.kill_leftovers(None, None, roots=[str(d)])
            if killed:
                self._log(f"killed {len(killed)} process(es) left by a dead runner in {d}")
            with contextlib.suppress(Exception):
                wsp.remove_tree(d)

    def trial_dir(self, trial_id: uuid.UUID, epoch: int) -> Path:
        d = self.path / f"t-{trial_id.hex[:12]}-e{epoch}-{sandbox.new_token()[:16]}"
        d.mkdir(mode=0o711)
        os.chmod(d, 0o711)
        (d / "logs").mkdir(mode=0o700)
        (d / "owner").write_text(f"{os.getpid()} {process_start(os.getpid())}\n")
        return d


def process_start(pid: int) -> str:
    """The start time of a process (clock ticks since boot): with the pid, names it uniquely."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""
