"""Running one command for one trial: isolated, budgeted, measured, and cleaned up after.

:func:`run` is the single way the runner starts a recipe's train command, a task's prepare command
and an evaluator. What it guarantees:

* **Its own process group** (``start_new_session=True``); at the budget the group gets SIGTERM,
  then SIGKILL after ``grace_s``. A ``stop`` event (lost lease, hard shutdown) does the same.
* **A scrubbed environment**: only ``PATH``, ``HOME``, ``LANG``, the trial's ``ARLEDGER_*``
  variables of the runtime contract (tasks/SPEC.md), ``CUDA_VISIBLE_DEVICES`` and the thread
  variables (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``). Never the ledger
  URL, the signing key, API keys, ``PG*`` or anything else of the runner's (:func:`trial_env`).
* **An unprivileged identity**: when the runner runs as root, the recipe runs as ``nobody:nogroup``
  (or ``$ARLEDGER_RECIPE_USER``), with no supplementary groups. Its workspace and output dir are
  chowned to it; held-out data (0700), the ledger's files and key (0600/0700) and the read-only
  evaluator files stay root's, so the recipe can neither read nor rewrite them. Full isolation
  therefore needs the runner to run as root (or as a dedicated user that owns the ledger and data,
  while recipes run as another one); a runner started as an ordinary user runs recipes as itself
  and relies on the post-run checks (evaluator hashes, tree hash) alone. :func:`recipe_identity`
  probes that the identity can run the interpreter at all and falls back, with a warning, when it
  cannot.
* **No process outlives the trial**: every run is tagged with a unique ``ARLEDGER_TRIAL_TOKEN``;
  after the main process exits the whole process group is killed, then ``/proc`` is swept for any
  process still in the group or session or carrying the token in its environment (descendants that
  escaped with ``setsid`` and a double fork), repeatedly, until none is left.
* **Evidence**: stdout and stderr, merged, go to a log file (capped); every complete line is handed
  to ``on_line`` as it arrives (the runner parses ``metric`` lines from it). Wall seconds, CPU
  seconds (the child's rusage from ``wait4`` plus what polling ``/proc`` saw of processes that were
  never waited for), peak RSS (``ru_maxrss`` or the polled sum over the group, whichever is larger)
  and, when ``nvidia-smi`` exists, peak GPU memory (polled) are recorded in :class:`RunResult`.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal as _signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass(frozen=True)
class Identity:
    """The uid/gid a recipe runs as (``None`` everywhere means: as the runner itself)."""

    uid: int
    gid: int
    name: str


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
# identity


_PROBED: dict[tuple[int, int, str], bool] = {}
_PROBE_LOCK = threading.Lock()


def lookup_identity(name: str | None = None) -> Identity | None:
    """The unprivileged identity to drop to: ``name`` or ``$ARLEDGER_RECIPE_USER`` or ``nobody``;
    ``None`` when this process is not root (it cannot switch users) or the user does not exist."""
    if os.geteuid() != 0:
        return None
    name = name or os.environ.get("ARLEDGER_RECIPE_USER") or "nobody"
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    gid = pw.pw_gid
    if name == "nobody":
        for g in ("nogroup", "nobody"):
            try:
                gid = grp.getgrnam(g).gr_gid
                break
            except KeyError:
                continue
    if pw.pw_uid == 0:
        return None
    return Identity(pw.pw_uid, gid, name)


def can_run_as(identity: Identity, python: str = sys.executable) -> bool:
    """Whether ``identity`` can start ``python`` at all (the interpreter may live under a directory
    only root may enter, e.g. ``/root/.pyenv``). Probed once per identity and interpreter."""
    key = (identity.uid, identity.gid, python)
    with _PROBE_LOCK:
        if key not in _PROBED:
            try:
                p = subprocess.run([python, "-c", "import sys"], cwd="/", user=identity.uid, group=identity.gid,
                                   extra_groups=[], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                   stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
                _PROBED[key] = p.returncode == 0
            except (OSError, subprocess.SubprocessError):
                _PROBED[key] = False
        return _PROBED[key]


@dataclass(frozen=True)
class Isolation:
    """How recipes run on this runner: as whom, with which interpreter, and a note saying so."""

    identity: Identity | None
    python: str  # the interpreter that fills ``{python}`` in the train command
    note: str


def recipe_isolation(work_root: Path, python: str = sys.executable, name: str | None = None) -> Isolation:
    """Decide how recipes run. As root: drop to the unprivileged user, with an interpreter it can
    run — ``python`` itself, ``$ARLEDGER_RECIPE_PYTHON``, or a *shim environment* under
    ``work_root`` (a same-version system interpreter with this environment's site-packages linked
    in) when ``python`` lives under a directory only root may enter (``/root/.pyenv``). When none
    works the recipe runs as root and the note says so."""
    if os.geteuid() != 0:
        return Isolation(None, python, f"runner runs as uid {os.geteuid()} (not root): recipes run as the same "
                         "user; held-out data and the ledger are protected only by their file modes")
    ident = lookup_identity(name)
    if ident is None:
        return Isolation(None, python, "no unprivileged user to run recipes as (set ARLEDGER_RECIPE_USER): "
                         "recipes run as root")
    good = f"recipes run as {ident.name} (uid {ident.uid}); held-out data and the ledger stay root-only"
    if can_run_as(ident, python):
        return Isolation(ident, python, good)
    forced = os.environ.get("ARLEDGER_RECIPE_PYTHON")
    if forced:
        if can_run_as(ident, forced):
            return Isolation(ident, forced, good)
        return Isolation(None, python, f"user {ident.name} cannot run $ARLEDGER_RECIPE_PYTHON={forced}: "
                         "recipes run as root")
    shim = _shim_env(work_root, python, ident)
    if shim is not None:
        return Isolation(ident, shim, good + f" (interpreter: shim {shim})")
    return Isolation(None, python, f"user {ident.name} cannot run {python} (it lives under a root-only directory) "
                     "and no same-version interpreter it can run was found: recipes run as root — install "
                     "Python where other users can run it, or set ARLEDGER_RECIPE_PYTHON")


def _shim_env(work_root: Path, python: str, ident: Identity) -> str | None:
    import hashlib
    import sysconfig

    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    site = sysconfig.get_paths()["purelib"]
    if not reachable_by(Path(site), ident):
        return None
    cands = [c for c in (f"/usr/local/bin/python{ver}", f"/usr/bin/python{ver}", shutil.which(f"python{ver}"))
             if c and os.path.exists(c)]
    for cand in dict.fromkeys(cands):
        real = os.path.realpath(cand)
        if not can_run_as(ident, real):
            continue
        tag = hashlib.sha256(f"{real}\0{site}".encode()).hexdigest()[:12]
        root = Path(work_root) / f"python-shim-{tag}"
        exe = root / "bin" / "python"
        try:
            if not exe.exists():
                tmp = Path(work_root) / f".python-shim-{tag}.{os.getpid()}.{threading.get_ident()}"
                shutil.rmtree(tmp, ignore_errors=True)
                (tmp / "bin").mkdir(parents=True)
                (tmp / "lib" / f"python{ver}").mkdir(parents=True)
                (tmp / "pyvenv.cfg").write_text(f"home = {os.path.dirname(real)}\n"
                                                "include-system-site-packages = false\n"
                                                f"version = {ver}\n")
                os.symlink(real, tmp / "bin" / "python")
                os.symlink(site, tmp / "lib" / f"python{ver}" / "site-packages")
                for d, _, fs in os.walk(tmp):
                    os.chmod(d, 0o755)
                    for f in fs:
                        if not os.path.islink(os.path.join(d, f)):
                            os.chmod(os.path.join(d, f), 0o644)
                try:
                    os.rename(tmp, root)
                except OSError:  # another runner made it first
                    shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue
        if not reachable_by(root, ident):
            continue
        probe = f"import sys; sys.exit(0 if sys.prefix == {str(root)!r} else 3)"
        try:
            p = subprocess.run([str(exe), "-c", probe], cwd="/", user=ident.uid, group=ident.gid, extra_groups=[],
                               env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            continue
        if p.returncode == 0:
            return str(exe)
    return None


def recipe_identity(python: str = sys.executable, name: str | None = None) -> tuple[Identity | None, str]:
    """(identity, note) for a recipe command that needs no interpreter shim (see recipe_isolation)."""
    if os.geteuid() != 0:
        return None, f"runner runs as uid {os.geteuid()} (not root): recipes run as the same user"
    ident = lookup_identity(name)
    if ident is None or not can_run_as(ident, python):
        return None, "recipes run as root"
    return ident, f"recipes run as {ident.name}"


def chown_tree(path: Path, identity: Identity | None) -> None:
    """Give ``path`` (and everything under it) to ``identity``; no-op without one."""
    if identity is None:
        return
    os.chown(path, identity.uid, identity.gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.chown(os.path.join(root, n), identity.uid, identity.gid, follow_symlinks=False)


def reachable_by(path: Path, identity: Identity | None, *, write: bool = False) -> bool:
    """Whether ``identity`` can reach (and read, or write) ``path`` by the mode bits of it and its
    ancestors. Conservative: ignores ACLs and capabilities."""
    if identity is None:
        return True
    p = Path(os.path.abspath(path))
    chain = [p, *p.parents]
    for i, q in enumerate(chain):
        try:
            st = os.stat(q)
        except OSError:
            return False
        need = 0o1 if i > 0 else (0o3 if write else 0o5) if q.is_dir() else (0o2 if write else 0o4)
        if st.st_uid == identity.uid:
            bits = (st.st_mode >> 6) & 7
        elif st.st_gid == identity.gid:
            bits = (st.st_mode >> 3) & 7
        else:
            bits = st.st_mode & 7
        if bits & need != need:
            return False
    return True


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
        timeout_s: float | None = None, grace_s: float = 3.0, identity: Identity | None = None,
        on_line: Callable[[str], None] | None = None, stop: threading.Event | None = None,
        token: str | None = None, gpu_devices: str | None = None, max_log_bytes: int = MAX_LOG_BYTES,
        poll_s: float = 0.5, sweep_roots: Sequence[Path | str] = ()) -> RunResult:
    """Run ``argv`` to completion under the guarantees in the module docstring.

    ``env`` is used as is, plus ``ARLEDGER_TRIAL_TOKEN`` (``token``, or a fresh one). The log file
    is created (or truncated) by the caller's identity; the process only gets the pipe. After the
    main process exits, processes whose working directory lies under ``sweep_roots`` are killed
    too (the trial's own directories)."""
    log_path = Path(log_path)
    token = token or env.get(TOKEN_VAR) or new_token()
    env = dict(env)
    env[TOKEN_VAR] = token
    rfd, wfd = os.pipe()
    reader = _Reader(rfd, log_path, on_line, max_log_bytes)
    kw: dict = {}
    if identity is not None:
        kw = {"user": identity.uid, "group": identity.gid, "extra_groups": []}
    t0 = time.time()
    m0 = time.monotonic()
    try:
        proc = subprocess.Popen(list(argv), cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=wfd,
                                stderr=wfd, start_new_session=True, close_fds=True, **kw)
    except (OSError, subprocess.SubprocessError) as e:
        os.close(wfd)
        reader.start()
        reader.join()
        msg = f"could not start {' '.join(argv)[:200]}: {e}"
        reader.log.write(f"[arledger: {msg}]\n".encode())
        reader.log.close()
        return RunResult(exit_status=127, signal=None, timed_out=False, stopped=False, wall_s=0.0, cpu_s=0.0,
                         peak_rss_bytes=0, peak_gpu_bytes=0, log_path=log_path, log_bytes=log_path.stat().st_size,
                         started_at=t0, ended_at=time.time(), error=msg)
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
        nonlocal peak_rss
        rss = 0
        for p in _pids():
            st = _stat(p)
            if st is None or st[0] in ("Z", "X"):
                continue
            if st[2] == pgid or st[3] == pgid:
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
                _signal_group(pgid, _signal.SIGTERM)
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
        elif os.WIFSIGNALED(st):
            sig = os.WTERMSIG(st)
        cpu = ru.ru_utime + ru.ru_stime
        maxrss = ru.ru_maxrss * 1024
        proc.returncode = exit_status if exit_status is not None else -(sig or 0)
    else:
        proc.returncode = -1
    # processes nobody waited for (escaped or left behind, killed above) are not in wait4's rusage
    cpu += sum(leftovers.values()) / _TICK
    return RunResult(exit_status=exit_status, signal=sig, timed_out=timed_out, stopped=stopped,
                     wall_s=m1 - m0, cpu_s=cpu, peak_rss_bytes=max(maxrss, peak_rss), peak_gpu_bytes=peak_gpu,
                     log_path=log_path, log_bytes=reader.bytes, log_truncated=reader.truncated,
                     leftovers_killed=len(leftovers), started_at=t0, ended_at=t1)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
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
