"""A pids cgroup per sandbox, for runners that run as root.

The kernel does not apply RLIMIT_NPROC to processes of uid 0 (``kernel/fork.c`` exempts the root
user), and a root runner's sandboxes run as uid 0 without capabilities, so for them the process
limit is a pids cgroup: cgroup v2 when the runner's own cgroup offers the ``pids`` controller to its
children and can be written, else the v1 ``pids`` hierarchy. Each sandbox gets
``<runner's cgroup>/arledger-<token>`` with ``pids.max``; its launcher joins it before bubblewrap
starts (``sh -c 'echo $$ > cgroup.procs; exec bwrap ...'``), so everything in the sandbox is
counted. Runners that are not root need none of this (RLIMIT_NPROC counts per user namespace).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "arledger-"


@dataclass(frozen=True)
class PidsHierarchy:
    kind: str  # "cgroup2" | "cgroup1"
    base: Path  # the runner's own cgroup directory in that hierarchy

    @property
    def label(self) -> str:
        return f"{self.kind} pids"

    def create(self, name: str, max_procs: int) -> Path:
        d = self.base / f"{PREFIX}{name}"
        d.mkdir(mode=0o755)
        try:
            (d / "pids.max").write_text(f"{int(max_procs)}\n")
        except OSError:
            self.remove(d)
            raise
        return d

    def kill_members(self, d: Path) -> int:
        """SIGKILL every process still in the cgroup; returns how many there were."""
        n = 0
        for _ in range(50):
            try:
                pids = [int(x) for x in (d / "cgroup.procs").read_text().split()]
            except OSError:
                return n
            if not pids:
                return n
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            n += len(pids)
            time.sleep(0.01)
        return n

    def remove(self, d: Path) -> None:
        for i in range(100):
            try:
                os.rmdir(d)
                return
            except FileNotFoundError:
                return
            except OSError:
                self.kill_members(d)
                time.sleep(0.01 * min(i + 1, 10))

    def sweep_stale(self, min_age_s: float = 300.0) -> int:
        """Remove the empty ``arledger-*`` cgroups that runners which died left behind (only old
        ones: another runner's cgroup is empty for a moment before its sandbox joins it)."""
        n = 0
        now = time.time()
        with contextlib.suppress(OSError):
            for d in self.base.glob(f"{PREFIX}*"):
                with contextlib.suppress(OSError):
                    if d.name.startswith(f"{PREFIX}probe-") or now - d.stat().st_mtime < min_age_s:
                        continue
                    if not (d / "cgroup.procs").read_text().split():
                        os.rmdir(d)
                        n += 1
        return n


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(fstype, mount point, super options) of every cgroup mount."""
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) < 5 or len(rparts) < 3 or rparts[0] not in ("cgroup", "cgroup2"):
            continue
        out.append((rparts[0], parts[4].replace("\\040", " "), set(rparts[2].split(","))))
    return out


def _own_paths() -> dict[str, str]:
    """{"": v2 path, controller: v1 path} of this process."""
    out = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            for c in (ctrls.split(",") if ctrls else [""]):
                out[c] = path
    except (OSError, ValueError):
        pass
    return out


def _usable(h: PidsHierarchy) -> bool:
    probe = h.base / f"{PREFIX}probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        return (probe / "pids.max").exists() and os.access(probe / "cgroup.procs", os.W_OK)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(probe)


def find() -> PidsHierarchy | None:
    """The pids hierarchy this (root) process can create cgroups in, or None."""
    own = _own_paths()
    mounts = _mounts()
    for fstype, point, _ in mounts:
        if fstype != "cgroup2" or "" not in own:
            continue
        base = Path(point) / own[""].lstrip("/")
        try:
            offered = (base / "cgroup.subtree_control").read_text().split()
            if "pids" not in offered and "pids" in (base / "cgroup.controllers").read_text().split():
                with contextlib.suppress(OSError):
                    (base / "cgroup.subtree_control").write_text("+pids\n")
                offered = (base / "cgroup.subtree_control").read_text().split()
        except OSError:
            continue
        if "pids" in offered and _usable(h := PidsHierarchy("cgroup2", base)):
            return h
    for fstype, point, opts in mounts:
        if fstype == "cgroup" and "pids" in opts and "pids" in own:
            h = PidsHierarchy("cgroup1", Path(point) / own["pids"].lstrip("/"))
            if _usable(h):
                return h
    return None
