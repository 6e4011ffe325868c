"""Bubblewrap: finding out whether it works here, and the command line for one sandboxed process.

:func:`probe` runs a real sandbox once (cached) and returns :class:`Bubblewrap` (path, version, the
process-limit mechanism) or raises :class:`SandboxUnavailable` whose message names the cause and
the fix: the package to install, the sysctl to set. :func:`launch` turns a
:class:`tasks.sandbox_plan.SandboxPlan` and a command into the argv to start, plus the file
descriptors to hand over (the synthetic ``/etc/passwd`` and ``/etc/group``).

One code path for every user. bubblewrap runs unprivileged (it is not setuid on Debian): it makes
a user namespace (the process is uid 1000 inside, mapped to the runner's own uid outside), a mount
namespace built from nothing but the plan's binds, its own pid, IPC, UTS and cgroup namespaces and,
unless the plan shares the network, an empty network namespace (only its own loopback). All
capabilities are dropped, no further user namespaces can be made inside (``--disable-userns``),
the new root and ``/dev`` are read-only, and the sandbox dies with the runner
(``--die-with-parent``). Inside, ``prlimit`` sets RLIMIT_DATA, RLIMIT_NPROC and RLIMIT_CORE=0 before
it execs the command, so the process limit counts the sandbox's own user namespace, not the
runner's other processes. A root runner's sandboxes are uid 0 outside, which RLIMIT_NPROC does not
bind: :mod:`tasks.pids_cgroup` adds a pids cgroup for them, and without one :func:`probe` refuses.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ledger import events as ev
from tasks import pids_cgroup
from tasks.sandbox_plan import Gpu, Limits, SandboxPlan

MIN_VERSION = (0, 8, 0)  # --disable-userns, --size and --perms for tmpfs
INNER_UID = 1000
INNER_GID = 1000
NVIDIA_SHARED = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")


class SandboxUnavailable(RuntimeError):
    """No sandbox can be built here; the message names the cause and the fix."""


@dataclass(frozen=True)
class Bubblewrap:
    path: str
    version: str
    prlimit: str
    pids: pids_cgroup.PidsHierarchy | None  # root runners only

    kind = "bubblewrap"

    @property
    def process_limit(self) -> str:
        return "rlimit" + (f" + {self.pids.label} cgroup" if self.pids else "")

    def record(self, plan: SandboxPlan) -> ev.SandboxUsed:
        return plan.record(self.kind, self.version, self.process_limit)


# -------------------------------------------------------------------------------------------------
# probing


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def diagnose(stderr: str, sysctls: dict[str, str | None]) -> str:
    """Why bubblewrap could not make its namespaces, and what to do, from its error and the
    user-namespace sysctls (``{name: value or None when absent}``)."""
    if sysctls.get("kernel.unprivileged_userns_clone") == "0":
        return ("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); enable them: "
                "sudo sysctl -w kernel.unprivileged_userns_clone=1 (and put it in /etc/sysctl.d/ to keep it)")
    if sysctls.get("user.max_user_namespaces") == "0":
        return ("user namespaces are disabled (user.max_user_namespaces = 0); enable them: "
                "sudo sysctl -w user.max_user_namespaces=15000 (and put it in /etc/sysctl.d/ to keep it)")
    if sysctls.get("kernel.apparmor_restrict_unprivileged_userns") == "1":
        return ("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1); "
                "allow them for bwrap with an AppArmor profile (the bubblewrap package's, or "
                "/etc/apparmor.d/bwrap with 'userns,'), or sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error message"
    return (f"bubblewrap cannot create its namespaces here ({detail}); user namespaces must be allowed "
            "(sysctl user.max_user_namespaces > 0, and kernel.unprivileged_userns_clone = 1 where that exists); "
            "inside a container, run it with user namespaces permitted (e.g. Docker's --security-opt "
            "seccomp=unconfined) or run the runner on the host")


def _version(text: str) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(x or 0) for x in m.groups()) if m else (0,)


@functools.lru_cache(maxsize=1)
def probe() -> Bubblewrap:
    """Whether recipes can be sandboxed here: a real ``bwrap`` run, once per process."""
    exe = shutil.which("bwrap")
    if exe is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed; install it: sudo apt-get install bubblewrap "
                                 "(Debian/Ubuntu), sudo dnf install bubblewrap (Fedora)")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise SandboxUnavailable(f"{exe} does not run ({e}); reinstall it: sudo apt-get install --reinstall bubblewrap") \
            from None
    version = (out.stdout.strip().split() or ["?"])[-1]
    if _version(version) < MIN_VERSION:
        raise SandboxUnavailable(f"bubblewrap {version} at {exe} is older than "
                                 f"{'.'.join(map(str, MIN_VERSION))} (needed for --disable-userns and sized tmpfs); "
                                 "install a newer bubblewrap (Debian 12 and Ubuntu 24.04 ship 0.8)")
    prl = shutil.which("prlimit") or ("/usr/bin/prlimit" if os.path.exists("/usr/bin/prlimit") else None)
    if prl is None or not prl.startswith("/usr/"):
        raise SandboxUnavailable("prlimit (util-linux) is not in /usr/bin; install it: sudo apt-get install util-linux")
    pids = None
    if os.geteuid() == 0:
        pids = pids_cgroup.find()
        if pids is None:
            raise SandboxUnavailable(
                "the runner runs as root, where the kernel does not apply RLIMIT_NPROC, and it found no writable "
                "pids cgroup (cgroup v2 with the pids controller, or the v1 pids hierarchy) to limit each sandbox's "
                "processes with; run the runner as an ordinary user (recommended), or give it a pids cgroup")
        pids.sweep_stale()
    b = Bubblewrap(path=exe, version=version, prlimit=prl, pids=pids)
    plan = SandboxPlan(role="probe", cwd=Path("/"), limits=Limits(256 << 20, 64))
    argv, fds = launch(b, plan, ["/bin/sh", "-c", "exit 0"])
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, pass_fds=fds, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.SubprocessError) as e:
        raise SandboxUnavailable(diagnose(str(e), {})) from None
    finally:
        for fd in fds:
            os.close(fd)
    if p.returncode != 0:
        names = ("kernel.unprivileged_userns_clone", "user.max_user_namespaces",
                 "kernel.apparmor_restrict_unprivileged_userns")
        raise SandboxUnavailable(diagnose(p.stderr, {n: _sysctl(n) for n in names}))
    return b


# -------------------------------------------------------------------------------------------------
# GPUs


def gpus(indices: list[int]) -> tuple[Gpu, ...]:
    """The host's GPUs ``indices`` (nvidia-smi's numbering) with their UUIDs and device nodes. The
    node's number is the driver's minor number, read from ``/proc/driver/nvidia/gpus``."""
    if not indices:
        return ()
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise SandboxUnavailable(f"GPUs {indices} are assigned but nvidia-smi is not installed, so their device "
                                 "nodes cannot be found; install the NVIDIA driver's utilities")
    p = subprocess.run([exe, "--query-gpu=index,uuid,pci.bus_id", "--format=csv,noheader"], capture_output=True,
                       text=True, timeout=30)
    rows = {}
    for line in p.stdout.splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) == 3 and cols[0].isdigit():
            rows[int(cols[0])] = (cols[1], cols[2])
    out = []
    for i in indices:
        if i not in rows:
            raise SandboxUnavailable(f"GPU {i} is assigned but nvidia-smi does not list it ({p.stderr.strip()[:200]})")
        uuid, bus = rows[i]
        minor = _minor(bus)
        out.append(Gpu(index=i, uuid=uuid, node=f"/dev/nvidia{minor if minor is not None else i}"))
    return tuple(out)


def _minor(bus_id: str) -> int | None:
    # nvidia-smi prints 00000000:3B:00.0; /proc/driver/nvidia/gpus uses 0000:3b:00.0
    dom, _, rest = bus_id.lower().partition(":")
    for name in (f"{dom[-4:]}:{rest}", bus_id.lower()):
        try:
            text = Path("/proc/driver/nvidia/gpus", name, "information").read_text()
        except OSError:
            continue
        m = re.search(r"Device Minor:\s*(\d+)", text)
        if m:
            return int(m.group(1))
    return None


# -------------------------------------------------------------------------------------------------
# the command line


def _passwd(home: str) -> bytes:
    return (f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
            f"arledger:x:{INNER_UID}:{INNER_GID}:arledger sandbox:{home}:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n").encode()


def _group() -> bytes:
    return f"root:x:0:\narledger:x:{INNER_GID}:\nnogroup:x:65534:\n".encode()


def _data_fd(data: bytes) -> int:
    r, w = os.pipe()
    try:
        os.write(w, data)  # a few hundred bytes: the pipe holds them
    finally:
        os.close(w)
    return r


def launch(b: Bubblewrap, plan: SandboxPlan, argv: list[str]) -> tuple[list[str], list[int]]:
    """(argv to start, fds to pass and close after starting) for ``argv`` inside ``plan``."""
    lim = plan.limits
    cmd = [b.path, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
           "--cap-drop", "ALL", "--uid", str(INNER_UID), "--gid", str(INNER_GID), "--hostname", "arledger-sandbox"]
    if plan.network:
        cmd.append("--share-net")
    ops: list[tuple[int, int, list[str]]] = []  # (depth, order, args)

    def add(path: str | Path, args: list[str], order: int = 1) -> None:
        ops.append((len(Path(path).parts), order, args))

    for mode, p in plan.binds():
        add(p, ["--ro-bind" if mode == "ro" else "--bind", str(p), str(p)], order=2)
    size = str(lim.memory_bytes)
    add("/tmp", ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"], order=0)
    add("/dev", ["--dev", "/dev"], order=0)
    add("/dev/shm", ["--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"], order=0)
    add("/proc", ["--proc", "/proc"], order=0)
    for h in plan.hidden:
        if h.is_dir():
            add(h, ["--perms", "0755", "--size", "65536", "--tmpfs", str(h)], order=1)
        else:
            add(h, ["--ro-bind", "/dev/null", str(h)], order=1)
    if plan.gpus:
        for node in [*(g.node for g in plan.gpus), *(n for n in NVIDIA_SHARED if os.path.exists(n))]:
            add(node, ["--dev-bind", node, node], order=3)
        if os.path.isdir("/dev/nvidia-caps"):
            add("/dev/nvidia-caps", ["--dev-bind", "/dev/nvidia-caps", "/dev/nvidia-caps"], order=3)
    for f in plan.protected:
        add(f, ["--ro-bind", str(f), str(f)], order=4)
    ops.sort(key=lambda o: (o[0], o[1]))
    fds: list[int] = []
    for _, _, args in ops:
        cmd += args
    if not plan.whole_host:
        for name, data in (("/etc/passwd", _passwd(plan.home)), ("/etc/group", _group())):
            fd = _data_fd(data)
            fds.append(fd)
            cmd += ["--ro-bind-data", str(fd), name]
    for h in plan.hidden:
        if h.is_dir():
            cmd += ["--remount-ro", str(h)]
    cmd += ["--remount-ro", "/dev"]
    if not plan.whole_host:
        cmd += ["--remount-ro", "/"]
    cmd += ["--chdir", str(plan.cwd), "--", b.prlimit, f"--nproc={lim.max_procs}", f"--data={lim.memory_bytes}",
            "--core=0", "--", *argv]
    return cmd, fds


def sandbox_env(plan: SandboxPlan, env: dict[str, str]) -> dict[str, str]:
    """The environment inside: ``HOME`` as the plan says; a GPU slot's ``CUDA_VISIBLE_DEVICES`` by
    UUID (only its device nodes exist inside, and the CUDA runtime numbers what it can open)."""
    out = dict(env)
    out["HOME"] = plan.home
    if plan.gpus:
        out["CUDA_VISIBLE_DEVICES"] = ",".join(g.uuid for g in plan.gpus)
    return out
