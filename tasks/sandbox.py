"""Running one command for one trial: sandboxed, budgeted, measured, and cleaned up after.

:func:`run` is the single way the runner starts a recipe's train command, a task's prepare command
and an evaluator. What it guarantees:

* **A sandbox** (``plan=``, a :class:`tasks.sandbox_plan.SandboxPlan`): the process runs under
  bubblewrap (:mod:`tasks.bwrap`) and sees only what the plan binds — for a recipe its workspace,
  output dir and home (read-write), the train split, the interpreter and the staged evaluator files
  (read-only), a private ``/tmp``, a minimal ``/dev`` with its GPUs' nodes, its own ``/proc`` and no
  network — with the plan's memory and process limits. The same for a root runner and an ordinary
  user. ``plan=None`` runs the command directly: only for a runner started with
  ``--unsafe-no-sandbox``, and the trial's start event says so.
* **Its own process group** (``start_new_session=True``); at the budget the sandboxed processes get
  SIGTERM (the bubblewrap launcher is spared, so they have ``grace_s`` to finish), then the whole
  group SIGKILL. A ``stop`` event (lost lease, hard shutdown) does the same. When the recipe's main
  process ends, the sandbox's pid namespace ends with it: nothing it started survives.
* **A scrubbed environment**: only ``PATH``, ``HOME``, ``LANG``, the trial's ``ARLEDGER_*``
  variables of the runtime contract (tasks/SPEC.md), ``CUDA_VISIBLE_DEVICES`` and the thread
  variables (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``). Never the ledger
  URL, the signing key, API keys, ``PG*`` or anything else of the runner's (:func:`trial_env`).
* **No process outlives the trial**: every run is tagged with a unique ``ARLEDGER_TRIAL_TOKEN``;
  after the main process exits the whole process group is killed, then ``/proc`` is swept for any
  process still in the group or session or carrying the token in its environment, repeatedly,
  until none is left (and, for a root runner, every process left in the sandbox's pids cgroup).
* **Evidence**: stdout and stderr, merged, go to a log file (capped); every complete line is handed
  to ``on_line`` as it arrives (the runner parses ``metric`` lines from it). Wall seconds, CPU
  seconds (the child's rusage from ``wait4`` plus what polling ``/proc`` saw of processes that were
  never waited for), peak RSS (``ru_maxrss`` or the polled sum over the group, whichever is larger)
  and, when ``nvidia-smi`` exists, peak GPU memory (polled) are recorded in :class:`RunResult`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal as _signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tasks import bwrap
from tasks.sandbox_plan import SandboxPlan

TOKEN_VAR = "ARLEDGER_TRIAL_TOKEN"
ALLOWED_TRIAL_VARS = (
    "ARLEDGER_DATA", "ARLEDGER_OUT", "ARLEDGER_SEED", "ARLEDGER_THREADS", "ARLEDGER_TIME_BUDGET_S",
    "ARLEDGER_DEVICE", TOKEN_VAR,
)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PASSED_THROUGH = ("PATH", "LANG")
MAX_LOG_BYTES = 32 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class RunResult:
    exit_status: int | None  # the exit code when the process exited; None when a signal ended it
    signal: int | None
    timed_out: bool
    stopped: bool  # ended by the caller's stop event (lost lease, hard shutdown)
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    peak_gpu_bytes: int
    log_path: Path
    log_bytes: int
    log_truncated: bool = False
    leftovers_killed: int = 0  # processes found alive after the main process exited
    started_at: float = 0.0
    ended_at: float = 0.0
    error: str = ""  # the command could not be started at all (missing interpreter, ...)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out and not self.stopped and not self.error


# -------------------------------------------------------------------------------------------------
# environment


def new_token() -> str:
    return secrets.token_hex(16)


def trial_env(*, home: Path | str, data: Path | str | None = None, out: Path | str | None = None,
              seed: int | None = None, threads: int | None = None, time_budget_s: float | None = None,
              device: str | None = None, cuda_visible_devices: str | None = None, token: str | None = None,
              extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The scrubbed environment of a trial process, built from nothing: PATH and LANG from the
    runner, HOME as given, the contract's ARLEDGER_* variables, thread and GPU variables.
    ``extra`` may only name variables of that same allow-list (anything else is an error)."""
    src = os.environ if base is None else base
    env = {k: src[k] for k in PASSED_THROUGH if k in src}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env["HOME"] = str(home)
    vals = {"ARLEDGER_DATA": data, "ARLEDGER_OUT": out, "ARLEDGER_SEED": seed, "ARLEDGER_THREADS": threads,
            "ARLEDGER_TIME_BUDGET_S": time_budget_s, "ARLEDGER_DEVICE": device, TOKEN_VAR: token}
    for k, v in vals.items():
        if v is not None:
            env[k] = f"{v:g}" if isinstance(v, float) else str(v)
    if threads is not None:
        for k in THREAD_VARS:
            env[k] = str(threads)
    env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices if cuda_visible_devices is not None else ""
    for k, v in (extra or {}).items():
        if k not in ALLOWED_TRIAL_VARS and k not in THREAD_VARS and k not in ("CUDA_VISIBLE_DEVICES",
                                                                                "PYTHONUNBUFFERED"):
            raise ValueError(f"{k} may not be passed to a trial process")
        env[k] = v
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


_HARNESS_SECRETS = ("ARLEDGER_LEDGER", "ARLEDGER_KEY", "ARLEDGER_TRIAL_TOKEN")


def harness_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of harness-side commands (prepare, evaluator): the runner's own, minus the
    ledger URL, the signing key, API keys and database credentials. They are task code, trusted
    like the runner, but have no business with the ledger either."""
    env = {k: v for k, v in os.environ.items()
           if k not in _HARNESS_SECRETS and not k.endswith("_API_KEY") and not k.startswith("PG")}
    env.update(extra or {})
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# -------------------------------------------------------------------------------------------------
# /proc


def _stat(pid: int) -> tuple[str, int, int, int, int, int] | None:
    """(state, ppid, pgrp, session, cpu ticks, rss pages) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    try:
        rest = raw[raw.rindex(b")") + 2:].split()
        return (rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[3]),
                int(rest[11]) + int(rest[12]), int(rest[21]))
    except (ValueError, IndexError):
        return None


def _pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def _has_token(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return needle in data.split(b"\0")


def _cwd_under(pid: int, roots: Sequence[str]) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return any(cwd == r or cwd.startswith(r.rstrip("/") + "/") for r in roots)


def trial_processes(pgid: int | None, token: str | None, roots: Sequence[str] = ()) -> list[int]:
    """Live (non-zombie) processes that belong to a trial: in its process group or session,
    carrying its token in their environment, or working inside one of its directories."""
    me = os.getpid()
    needle = f"{TOKEN_VAR}={token}".encode() if token else None
    out = []
    for pid in _pids():
        if pid == me:
            continue
        st = _stat(pid)
        if st is None or st[0] in ("Z", "X"):
            continue
        if pgid is not None and (st[2] == pgid or st[3] == pgid):
            out.append(pid)
        elif needle is not None and _has_token(pid, needle):
            out.append(pid)
        elif roots and _cwd_under(pid, roots):
            out.append(pid)
    return out


def kill_leftovers(pgid: int | None, token: str | None, *, roots: Sequence[str] = (),
                   rounds: int = 50) -> dict[int, int]:
    """Kill every process of the trial until a sweep finds none. Each is stopped first (SIGSTOP) so
    a forking process cannot outrun the sweep, then killed. Returns {pid: cpu ticks} of the killed."""
    killed: dict[int, int] = {}
    for i in range(rounds):
        found = trial_processes(pgid, token, roots)
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, _signal.SIGSTOP)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in found:
            st = _stat(pid)
            try:
                os.kill(pid, _signal.SIGKILL)
                killed[pid] = st[4] if st else 0
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005 * min(i + 1, 10))
    for pid in killed:  # reap any that happen to be our own children
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass
    return killed


# -------------------------------------------------------------------------------------------------
# GPU memory


def _nvidia_smi() -> str | None:
    return shutil.which("nvidia-smi")


class _GpuPoller:
    """Peak GPU memory of the trial's processes (or, when the driver hides their pids, of the
    trial's GPUs above what they held at the start)."""

    def __init__(self, exe: str, devices: str, pids: Callable[[], set[int]], every_s: float = 1.0):
        self.exe, self.devices, self.pids, self.every_s = exe, devices, pids, every_s
        self.peak = 0
        self._stop = threading.Event()
        self._base = self._per_gpu()
        self._t = threading.Thread(target=self._loop, daemon=True, name="gpu-poll")
        self._t.start()

    def _q(self, args: list[str]) -> list[list[str]]:
        try:
            p = subprocess.run([self.exe, *args, "--format=csv,noheader,nounits"], capture_output=True,
                               text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return []
        return [[c.strip() for c in line.split(",")] for line in p.stdout.splitlines() if line.strip()]

    def _per_gpu(self) -> dict[str, int]:
        rows = self._q(["--query-gpu=index,memory.used"])
        out = {}
        for r in rows:
            if len(r) >= 2 and r[1].isdigit():
                out[r[0]] = int(r[1]) << 20
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            ours = self.pids()
            used = 0
            for r in self._q(["--query-compute-apps=pid,used_memory"]):
                if len(r) >= 2 and r[0].isdigit() and r[1].isdigit() and int(r[0]) in ours:
                    used += int(r[1]) << 20
            if not used and self.devices:
                now = self._per_gpu()
                used = sum(max(0, now.get(d, 0) - self._base.get(d, 0)) for d in self.devices.split(","))
            self.peak = max(self.peak, used)

    def close(self) -> int:
        self._stop.set()
        self._t.join(timeout=2)
        return self.peak


# -------------------------------------------------------------------------------------------------
# running


class _Reader(threading.Thread):
    def __init__(self, fd: int, log: Path, on_line: Callable[[str], None] | None, max_bytes: int):
        super().__init__(daemon=True, name="trial-log")
        self.fd, self.on_line, self.max_bytes = fd, on_line, max_bytes
        self.log = open(log, "wb")  # noqa: SIM115 (closed in run)
        self.bytes = 0
        self.truncated = False

    def run(self) -> None:
        buf = b""
        try:
            while True:
                try:
                    chunk = os.read(self.fd, 1 << 16)
                except OSError:
                    break
                if not chunk:
                    break
                if self.bytes < self.max_bytes:
                    part = chunk[: self.max_bytes - self.bytes]
                    self.log.write(part)
                    self.bytes += len(part)
                    if len(part) < len(chunk):
                        self.truncated = True
                        self.log.write(b"\n[arledger: log truncated]\n")
                else:
                    self.truncated = True
                if self.on_line is not None:
                    buf += chunk
                    if len(buf) > 1 << 20:  # a line that never ends: drop it
                        buf = buf[-4096:]
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        self._emit(line)
            if buf and self.on_line is not None:
                self._emit(buf)
        finally:
            self.log.flush()
            try:
                os.close(self.fd)
            except OSError:
                pass

    def _emit(self, line: bytes) -> None:
        try:
            assert self.on_line is not None
            self.on_line(line.decode("utf-8", errors="replace").rstrip("\r"))
        except Exception as e:  # a callback bug must not stop the log
            self.log.write(f"\n[arledger: metric callback failed: {e}]\n".encode())


def run(argv: Sequence[str], *, cwd: Path | str, env: Mapping[str, str], log_path: Path | str,
        plan: SandboxPlan | None, timeout_s: float | None = None, grace_s: float = 3.0,
        on_line: Callable[[str], None] | None = None, stop: threading.Event | None = None,
        token: str | None = None, gpu_devices: str | None = None, max_log_bytes: int = MAX_LOG_BYTES,
        poll_s: float = 0.5, sweep_roots: Sequence[Path | str] = ()) -> RunResult:
    """Run ``argv`` to completion under the guarantees in the module docstring.

    ``plan`` is the sandbox (None: none at all, see above); inside it ``cwd`` is the plan's. ``env``
    is used as is, plus ``ARLEDGER_TRIAL_TOKEN`` (``token``, or a fresh one), and inside a sandbox
    the plan's ``HOME`` and GPUs (:func:`tasks.bwrap.sandbox_env`). The log file is created (or
    truncated) by the runner; the process only gets the pipe. After the main process exits,
    processes whose working directory lies under ``sweep_roots`` are killed too. A sandbox that
    cannot be built (:class:`tasks.bwrap.SandboxUnavailable`) is raised, never run without."""
    log_path = Path(log_path)
    token = token or env.get(TOKEN_VAR) or new_token()
    env = dict(env)
    env[TOKEN_VAR] = token
    launcher: list[str] = list(argv)
    fds: list[int] = []
    cgroup: Path | None = None
    box = bwrap.probe() if plan is not None else None
    if box is not None and plan is not None:
        launcher, fds = bwrap.launch(box, plan, list(argv))
        env = bwrap.sandbox_env(plan, env)
        cwd = "/"
        if box.pids is not None:
            cgroup = box.pids.create(token[:24], plan.limits.max_procs)
            launcher = ["/bin/sh", "-c", 'echo $$ > "$0" || exit 125; exec "$@"', str(cgroup / "cgroup.procs"),
                        *launcher]
    rfd, wfd = os.pipe()
    reader = _Reader(rfd, log_path, on_line, max_log_bytes)
    t0 = time.time()
    m0 = time.monotonic()
    try:
        proc = subprocess.Popen(launcher, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=wfd,
                                stderr=wfd, start_new_session=True, close_fds=True, pass_fds=fds)
    except (OSError, subprocess.SubprocessError) as e:
        os.close(wfd)
        for fd in fds:
            os.close(fd)
        if cgroup is not None and box is not None and box.pids is not None:
            box.pids.remove(cgroup)
        reader.start()
        reader.join()
        msg = f"could not start {' '.join(argv)[:200]}: {e}"
        reader.log.write(f"[arledger: {msg}]\n".encode())
        reader.log.close()
        return RunResult(exit_status=127, signal=None, timed_out=False, stopped=False, wall_s=0.0, cpu_s=0.0,
                         peak_rss_bytes=0, peak_gpu_bytes=0, log_path=log_path, log_bytes=log_path.stat().st_size,
                         started_at=t0, ended_at=time.time(), error=msg)
    for fd in fds:
        os.close(fd)
    os.close(wfd)
    reader.start()
    pid = pgid = proc.pid
    status: list = []
    done = threading.Event()

    def _wait() -> None:
        try:
            status.append(os.wait4(pid, 0))
        except ChildProcessError:
            status.append(None)
        done.set()

    waiter = threading.Thread(target=_wait, daemon=True, name="trial-wait")
    waiter.start()
    seen: dict[int, int] = {}  # pid -> last cpu ticks seen by polling
    peak_rss = 0
    gpu = None
    exe = _nvidia_smi() if gpu_devices is not None else None
    if exe:
        gpu = _GpuPoller(exe, gpu_devices or "", lambda: set(seen) | {pid})
    deadline = m0 + timeout_s if timeout_s is not None else None
    timed_out = stopped = False
    term_at: float | None = None
    killed = False

    def _poll() -> None:
        """The run's processes: its process group and session, and every descendant of the process
        started (inside a sandbox they live in their own session, out of wait4's reach)."""
        nonlocal peak_rss
        rss = 0
        stats = {p: st for p in _pids() if (st := _stat(p)) is not None and st[0] not in ("Z", "X")}
        ours = {p for p, st in stats.items() if st[2] == pgid or st[3] == pgid}
        frontier = list(ours | {pid})
        children: dict[int, list[int]] = {}
        for p, st in stats.items():
            children.setdefault(st[1], []).append(p)
        while frontier:
            for c in children.get(frontier.pop(), ()):
                if c not in ours:
                    ours.add(c)
                    frontier.append(c)
        for p in ours:
            st = stats.get(p)
            if st is not None:
                seen[p] = st[4]
                rss += st[5] * _PAGE
        peak_rss = max(peak_rss, rss)

    next_poll = time.monotonic() + min(0.05, poll_s)
    while not done.is_set():
        now = time.monotonic()
        if now >= next_poll:
            _poll()
            next_poll = now + poll_s
        if term_at is None:
            why_timeout = deadline is not None and now >= deadline
            why_stop = stop is not None and stop.is_set()
            if why_timeout or why_stop:
                timed_out, stopped = why_timeout, (why_stop and not why_timeout)
                _signal_group(pgid, _signal.SIGTERM, spare=pid if box is not None else None)
                term_at = now
        elif not killed and now >= term_at + grace_s:
            _signal_group(pgid, _signal.SIGKILL)
            killed = True
        waits = [next_poll - now, 0.5]
        if deadline is not None and term_at is None:
            waits.append(deadline - now)
        if term_at is not None and not killed:
            waits.append(term_at + grace_s - now)
        done.wait(max(0.001, min(waits)))
    m1 = time.monotonic()
    t1 = time.time()
    leftovers = kill_leftovers(pgid, token, roots=[os.path.abspath(r) for r in sweep_roots])
    if cgroup is not None and box is not None and box.pids is not None:
        box.pids.remove(cgroup)  # kills whatever is still counted in it first
    reader.join(timeout=5)
    if reader.is_alive():  # someone still holds the pipe open; the sweep should have ended it
        try:
            os.close(rfd)
        except OSError:
            pass
        reader.join(timeout=1)
    try:
        reader.log.close()
    except (OSError, ValueError):
        pass
    peak_gpu = gpu.close() if gpu is not None else 0
    res = status[0] if status else None
    exit_status: int | None = None
    sig: int | None = None
    cpu = 0.0
    maxrss = 0
    if res is not None:
        _, st, ru = res
        if os.WIFEXITED(st):
            exit_status = os.WEXITSTATUS(st)
            if box is not None and 128 < exit_status <= 128 + 64:
                exit_status, sig = None, exit_status - 128  # bubblewrap reports a signal death as 128+N
        elif os.WIFSIGNALED(st):
            sig = os.WTERMSIG(st)
        cpu = ru.ru_utime + ru.ru_stime
        maxrss = ru.ru_maxrss * 1024
        proc.returncode = exit_status if exit_status is not None else -(sig or 0)
    else:
        proc.returncode = -1
    # processes nobody waited for (escaped or left behind, killed above) are not in wait4's rusage;
    # inside a sandbox, nothing below bubblewrap's own is: there the polled ticks are the measure
    # (each process as last seen, up to one poll interval short)
    cpu += sum(leftovers.values()) / _TICK
    if box is not None:
        cpu = max(cpu, sum(t for p, t in seen.items() if p != pid) / _TICK)
    return RunResult(exit_status=exit_status, signal=sig, timed_out=timed_out, stopped=stopped,
                     wall_s=m1 - m0, cpu_s=cpu, peak_rss_bytes=max(maxrss, peak_rss), peak_gpu_bytes=peak_gpu,
                     log_path=log_path, log_bytes=reader.bytes, log_truncated=reader.truncated,
                     leftovers_killed=len(leftovers), started_at=t0, ended_at=t1)


def _signal_group(pgid: int, sig: int, spare: int | None = None) -> None:
    """``sig`` to the process group; with ``spare``, to every member but that one (the bubblewrap
    launcher: killing it would SIGKILL the sandbox at once, without the grace period)."""
    if spare is None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        return
    for p in _pids():
        st = _stat(p)
        if p != spare and st is not None and st[2] == pgid and st[0] not in ("Z", "X"):
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass


@dataclass
class Placeholders:
    """Values for ``{name}`` in a task's command templates."""

    values: dict[str, str] = field(default_factory=dict)

    def argv(self, template: str) -> list[str]:
        """Split the template like a shell would, then fill each word: a path with spaces stays one
        argument. An unknown placeholder is an error naming it."""
        import shlex

        out = []
        for word in shlex.split(template):
            try:
                out.append(word.format(**self.values))
            except KeyError as e:
                raise ValueError(f"command {template!r} uses unknown placeholder {{{e.args[0]}}}; "
                                 f"known: {', '.join('{' + k + '}' for k in sorted(self.values))}") from None
        return out
