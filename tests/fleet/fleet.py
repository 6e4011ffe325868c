"""The processes of one fault-suite run: runners and campaign drivers, each a real `arledger`
command in its own session, all of them killed when the test ends (passed or not).

    with Fleet(root, url) as f:
        f.runner("r1"); f.driver("--max-trials", "200")
        f.kill("r1"); f.stop("r2"); f.cont("r2")

Every process's output goes to ``root/NAME.log`` (shown when a test fails).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.tasks.runner_helpers import kill_under, live_under

ROOT = Path(__file__).resolve().parents[2]


class Fleet:
    def __init__(self, root: Path, url: str, *, lease_s: float = 3.0, campaign: str = "fleet"):
        self.root = root
        self.url = url
        self.lease_s = lease_s
        self.campaign = campaign
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopped: set[str] = set()
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "ARLEDGER_RECONNECT_S": "180",
                    "PYTHONUNBUFFERED": "1"}
        for sub in ("data", "work"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 — the child holds it
        p = subprocess.Popen([sys.executable, "-m", "arledger.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=self.env, cwd=self.root, start_new_session=True)
        log.close()
        self.procs[name] = p
        return p

    def runner(self, name: str) -> subprocess.Popen:
        return self._start(name, ["runner", "--ledger", self.url, "--lease", str(self.lease_s), "--runner-id", name,
                                  "--task", "tick", "--data-root", str(self.root / "data"),
                                  "--work-root", str(self.root / "work")])

    def driver(self, name: str, *extra: str) -> subprocess.Popen:
        return self._start(name, ["run", "--ledger", self.url, "--name", self.campaign, "--quiet", *extra])

    def runners(self) -> list[str]:
        return [n for n, p in self.procs.items() if n.startswith("r") and p.poll() is None]

    def kill(self, name: str) -> None:
        p = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)

    def stop(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGSTOP)
        self.stopped.add(name)

    def cont(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGCONT)
        self.stopped.discard(name)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"===== {n} (rc {p.poll()})\n{self.log(n)[-6000:]}" for n, p in self.procs.items())

    def drain(self, timeout: float = 60.0) -> None:
        """SIGTERM every live runner (they finish what they run and exit 0), then wait."""
        for n in self.runners():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.procs[n].pid, signal.SIGCONT)
                os.killpg(self.procs[n].pid, signal.SIGTERM)
        t_end = time.time() + timeout
        for p in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, t_end - time.time()))

    def close(self) -> None:
        """Kill everything this fleet started, and whatever still runs in its directories."""
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGCONT)
                    os.killpg(p.pid, signal.SIGKILL)
        for p in self.procs.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=30)
        for _ in range(20):
            if not live_under(self.root):
                break
            kill_under(self.root)
            time.sleep(0.2)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
