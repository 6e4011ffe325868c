"""What a sandboxed process may see and use: the plan, the plans of the runner's four roles, and the
coding agent's.

A :class:`SandboxPlan` is a frozen value: the directories bound read-write and read-only (each at
its own host path, so commands and placeholders keep their paths), the files inside a read-write
directory that are bound read-only over themselves (staged evaluator files), the interpreter, the
GPU device nodes, whether the network is shared, the memory and process limits, and ``HOME``.
:mod:`tasks.bwrap` turns it into a bubblewrap command line; :meth:`SandboxPlan.record` is the
plain description the trial's start event carries.

The roles (one builder each):

* **train** (:func:`recipe_plan`) — the recipe's train command: its workspace, output dir and home
  read-write, the train split read-only, the staged evaluator files read-only, no network;
* **estimate** (:func:`estimate_plan`) — preflight's model-size estimate: the same without data;
* **evaluate** (:func:`evaluator_plan`) — the evaluator: the staged evaluator copy, every run's
  output, the task's data (train and held-out) and, where the task scores with the recipe's own
  code, the workspace, all read-only; it writes only its result file;
* **prepare** (:func:`prepare_plan`) — the task's data preparation (harness code, once per task
  version): the host read-only (it links a full-scale task's data from wherever the user keeps it),
  minus the ledger, its artifacts and keys, the work root and every other task's data, with a
  private ``/tmp``; it writes only its data dir and the download cache, and has the network (data
  comes from package registries);
* **agent** (:func:`agent_plan`) — a coding agent writing a proposal (``--backend agent:CMD``): its
  scratch copy of the parent's recipe files, its own home and its outbox read-write; its prompt, the
  interpreter and the files its command names read-only; never the task directory (so no evaluator
  file), the data (so no held-out split), the ledger, its artifacts or keys. Its network is the
  host's when it needs one for its API (``network=True``: bubblewrap shares the host's network
  namespace, and the resolver and TLS files of ``/etc`` are bound read-only), else none; either way
  the plan's record says so and the proposal's transcript carries it.

Every plan also gets the system directories (``/usr`` and the top-level links into it), a few files
of ``/etc`` (the loader cache, alternatives, time zone), a synthetic ``/etc/passwd``, a private
``/tmp`` and ``/dev/shm`` (tmpfs, capped at the memory limit), a minimal ``/dev``, its own ``/proc``,
and ``/sys/devices/system/cpu`` (``/sys`` whole when it has GPUs: NVML and NCCL read it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ledger import events as ev

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime")
CPU_SYS = "/sys/devices/system/cpu"
DEFAULT_MAX_PROCS = 1024
MIN_MEMORY_MB = 256


@dataclass(frozen=True)
class Limits:
    """Per sandbox: ``memory_bytes`` caps each process's data segment (RLIMIT_DATA: heap and private
    writable mappings) and the size of its ``/tmp`` and ``/dev/shm``; ``max_procs`` caps the
    processes and threads it may have at once (RLIMIT_NPROC in its own user namespace; for a root
    runner, also a pids cgroup: the kernel does not apply RLIMIT_NPROC to uid 0)."""

    memory_bytes: int
    max_procs: int

    def __post_init__(self) -> None:
        if self.memory_bytes < MIN_MEMORY_MB << 20:
            raise ValueError(f"memory limit {self.memory_bytes} bytes is below {MIN_MEMORY_MB} MiB")
        if self.max_procs < 8:
            raise ValueError(f"process limit {self.max_procs} is below 8")


@dataclass(frozen=True)
class Gpu:
    """One GPU as the sandbox sees it: its index on the host, its UUID and its device node."""

    index: int
    uuid: str
    node: str  # /dev/nvidiaN (N is the driver's minor number, not always the index)


@dataclass(frozen=True)
class SandboxPlan:
    role: str  # train | estimate | evaluate | prepare | agent
    cwd: Path
    read_write: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    protected: tuple[Path, ...] = ()  # files inside a read_write dir, bound read-only over themselves
    hidden: tuple[Path, ...] = ()  # empty tmpfs over these (only under a read-only "/")
    interpreter: tuple[Path, ...] = ()
    gpus: tuple[Gpu, ...] = ()
    network: bool = False
    limits: Limits = field(default_factory=lambda: Limits(default_memory_bytes(1), DEFAULT_MAX_PROCS))
    home: str = "/tmp"
    whole_host: bool = False  # "/" read-only (prepare only); else only the system directories

    def binds(self) -> list[tuple[str, Path]]:
        """Every bind as ("ro" | "rw", path), parents before children (bubblewrap mounts in order)."""
        out: dict[Path, str] = {}
        if self.whole_host:
            out[Path("/")] = "ro"
        else:
            for d in SYSTEM_DIRS + SYSTEM_ETC:
                if os.path.lexists(d):
                    out[Path(d)] = "ro"
            if os.path.isdir(CPU_SYS):
                out[Path(CPU_SYS)] = "ro"
            if self.gpus and os.path.isdir("/sys"):
                out[Path("/sys")] = "ro"
        for p in self.interpreter + self.read_only:
            out.setdefault(p, "ro")
        for p in self.read_write:
            out[p] = "rw"
        return sorted(((m, p) for p, m in out.items()), key=lambda mp: (len(mp[1].parts), str(mp[1])))

    def record(self, kind: str, version: str, process_limit: str) -> ev.SandboxUsed:
        """What the trial's start event says about this sandbox."""
        return ev.SandboxUsed(
            kind=kind, version=version, role=self.role, network=self.network,
            read_write=sorted(str(p) for p in self.read_write),
            read_only=sorted(str(p) for m, p in self.binds() if m == "ro") + sorted(f"{p} (file)" for p in self.protected),
            hidden=sorted(str(p) for p in self.hidden), devices=sorted(g.node for g in self.gpus),
            memory_mb=self.limits.memory_bytes >> 20, max_procs=self.limits.max_procs, process_limit=process_limit)


def unsandboxed_record(why: str) -> ev.SandboxUsed:
    """The start event's record of a trial run without a sandbox (``--unsafe-no-sandbox``)."""
    return ev.SandboxUsed(kind="none", note=why)


# -------------------------------------------------------------------------------------------------
# inputs every plan needs


def interpreter_paths(python: str = sys.executable) -> tuple[Path, ...]:
    """The directories the running interpreter needs, read-only: its installation prefix and, for a
    virtual environment, the environment (``sys.prefix``). Those under ``/usr`` are bound anyway.
    Only the interpreter running the runner is known this way; ``python`` must be it."""
    if os.path.realpath(python) != os.path.realpath(sys.executable):
        raise ValueError(f"{python} is not the interpreter running arledger ({sys.executable}); "
                         "the sandbox binds the prefix of that one only")
    roots = []
    for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix):
        real = Path(os.path.realpath(p))
        for q in (Path(p), real):
            if q.parts[:2] != ("/", "usr") and q != Path("/") and q not in roots:
                roots.append(q)
    exe = Path(os.path.realpath(sys.executable)).parent.parent
    if exe.parts[:2] != ("/", "usr") and not any(exe == r or r in exe.parents for r in roots):
        roots.append(exe)
    return tuple(_outermost(roots))


def _outermost(paths: Iterable[Path]) -> list[Path]:
    ps = sorted(set(paths), key=lambda p: len(p.parts))
    out: list[Path] = []
    for p in ps:
        if not any(q == p or q in p.parents for q in out):
            out.append(p)
    return out


def link_targets(dirs: Sequence[Path]) -> tuple[Path, ...]:
    """What a data directory's top-level symlinks point to (a full-scale task's prepared data is a
    folder of links into the user's data): bound too, read-only, or the links would dangle."""
    out: list[Path] = []
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.is_symlink():
                target = Path(os.path.realpath(e.path))
                if target.exists() and not any(target == x or x in target.parents for x in dirs):
                    out.append(target)
    return tuple(_outermost(out))


def default_memory_bytes(slots: int) -> int:
    """The default memory limit: this machine's physical memory divided among the runner's slots."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return max(MIN_MEMORY_MB << 20, total // max(1, slots))


def limits_for(memory_mb: int, max_procs: int, slots: int) -> Limits:
    """A task's ``[resources]`` limits (``memory_mb = 0``: the default share of this machine)."""
    mem = (memory_mb << 20) if memory_mb > 0 else default_memory_bytes(slots)
    return Limits(memory_bytes=mem, max_procs=max_procs)


# -------------------------------------------------------------------------------------------------
# the roles


def recipe_plan(*, ws: Path, out: Path, home: Path, train: Path | None, staged: Sequence[str],
                limits: Limits, gpus: Sequence[Gpu] = (), network: bool = False) -> SandboxPlan:
    """The train command's sandbox (see the module docstring)."""
    ro: list[Path] = []
    if train is not None:
        ro.append(Path(train))
        ro += link_targets([Path(train)])
    return SandboxPlan(role="train", cwd=Path(ws), read_write=(Path(ws), Path(out), Path(home)),
                       read_only=tuple(ro), protected=tuple(Path(ws) / s for s in staged),
                       interpreter=interpreter_paths(), gpus=tuple(gpus), network=network, limits=limits,
                       home=str(home))


def estimate_plan(*, ws: Path, out: Path, staged: Sequence[str], limits: Limits) -> SandboxPlan:
    """Preflight's estimate command: recipe code, so the train sandbox without data or GPUs."""
    return replace(recipe_plan(ws=ws, out=out, home=out, train=None, staged=staged, limits=limits),
                   role="estimate", read_write=(Path(ws), Path(out)))


def evaluator_plan(*, eval_dir: Path, runs: Sequence[Path], data: Path, result: Path, limits: Limits,
                   gpus: Sequence[Gpu] = (), workspace: Path | None = None) -> SandboxPlan:
    """The evaluator's sandbox. Creates ``result`` (empty) so that it can be bound as the one
    writable file; ``workspace`` (the recipe's code, read-only) only for tasks that score with it."""
    result = Path(result)
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_bytes(b"")
    ro = [Path(eval_dir), *map(Path, runs), Path(data)]
    ro += link_targets([Path(data) / "train", Path(data) / "heldout", Path(data)])
    if workspace is not None:
        ro.append(Path(workspace))
    return SandboxPlan(role="evaluate", cwd=Path(eval_dir), read_write=(result,), read_only=tuple(ro),
                       interpreter=interpreter_paths(), gpus=tuple(gpus), limits=limits, home="/tmp")


def prepare_plan(*, data: Path, downloads: Path, hidden: Sequence[Path | str], cwd: Path, task: Path,
                 limits: Limits) -> SandboxPlan:
    """The prepare command's sandbox: the host read-only with ``hidden`` covered (directories by an
    empty tmpfs, files by ``/dev/null``: the ledger's home, file and key, the work root, the data
    root), ``data`` and ``downloads`` writable, the network shared. A directory that holds ``cwd``
    (the command's own code) is not covered; the files named besides it still are. ``/tmp`` is
    private, so ``cwd``, the task directory and the interpreter are bound again on top of it."""
    Path(downloads).mkdir(parents=True, exist_ok=True)
    here = Path(os.path.abspath(cwd))
    keep: list[Path] = []
    for h in hidden:
        q = Path(os.path.abspath(h))
        if q.is_dir() and not (q == here or q in here.parents) and q != Path("/"):
            keep.append(q)
        elif q.is_file():
            keep.append(q)
    dirs = _outermost(k for k in keep if k.is_dir())
    files = [k for k in keep if k.is_file() and not any(d in k.parents for d in dirs)]
    return SandboxPlan(role="prepare", cwd=here, read_write=(Path(data), Path(downloads)),
                       read_only=(here, Path(os.path.abspath(task))), interpreter=interpreter_paths(),
                       hidden=tuple(dirs + files), network=True, limits=limits, home="/tmp", whole_host=True)


NETWORK_ETC = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
               "/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/services", "/etc/protocols")
"""What a process needs of ``/etc`` to resolve names and check TLS certificates."""


def agent_plan(*, copy: Path, home: Path, outbox: Path, inputs: Sequence[Path], tools: Sequence[Path],
               forbidden: Sequence[Path], limits: Limits, network: bool) -> SandboxPlan:
    """A coding agent's sandbox (see the module docstring): ``copy``, ``home`` and ``outbox``
    read-write, ``inputs`` (its prompt) and ``tools`` (its program and what else it needs)
    read-only. A read-only path that is, holds or lies inside one of ``forbidden`` (the task
    directory, the data, the ledger) is refused with a ValueError naming it."""
    for p in tools:
        q = Path(os.path.abspath(p))
        for f in forbidden:
            g = Path(os.path.abspath(f))
            if q == g or g in q.parents or q in g.parents:
                raise ValueError(f"{q} cannot be given to the agent: it {'is' if q == g else 'overlaps'} {g}, which "
                                 "the agent must never see (the task directory, the data or the ledger)")
    interp = interpreter_paths()
    given = [Path(os.path.abspath(p)) for p in (*inputs, *tools)]
    if network:
        given += [Path(p) for p in NETWORK_ETC if os.path.lexists(p)]
    # a path inside one bound anyway (the interpreter, /usr, ...) is visible already: binding it again
    # would make bubblewrap create a mount point in a read-only tree
    covered = [*interp, *(Path(d) for d in SYSTEM_DIRS)]
    ro = [p for p in _outermost(given) if not any(c == p or c in p.parents for c in covered)]
    return SandboxPlan(role="agent", cwd=Path(copy), read_write=(Path(copy), Path(home), Path(outbox)),
                       read_only=tuple(ro), interpreter=interp, network=network, limits=limits, home=str(home))
