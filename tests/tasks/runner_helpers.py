"""Shared fixtures for the runner tests: a tiny stand-in task, ledgers, diffs, /proc checks.

The stand-in task ("standin") trains nothing: its recipe reads the train split, optionally sleeps,
prints a metric line and writes ``model.txt`` holding ``VALUE``; with ``report_port`` it also sends
``VALUE SEED PID`` to that port on the host's loopback (the task then declares ``network = true``:
the only way out of its sandbox, an independent witness that it ran); its evaluator reads every run's
``model.txt`` and the held-out file and scores the mean value. Everything else about it is real:
task.toml through ``tasks.spec``, prepare command, staged read-only evaluator file, budgets.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
from pathlib import Path

from ledger import diffs

TRAIN_PY = '''\
"""stand-in recipe: writes VALUE as its model."""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "evaluator"))
from common import FORMAT  # noqa: E402  (evaluator-owned, staged read-only)

# region: opt
VALUE = 1.0
SLEEP = 0.0
# endregion

REPORT_PORT = {report_port!r}


def main():
    data = Path(os.environ["ARLEDGER_DATA"])
    out = Path(os.environ["ARLEDGER_OUT"])
    words = len((data / "train.txt").read_text().split())
    if REPORT_PORT:
        import socket
        with socket.create_connection(("127.0.0.1", REPORT_PORT), timeout=30) as c:
            c.sendall(f"{{VALUE!r}} {{os.environ['ARLEDGER_SEED']}} {{os.getpid()}}\\n".encode())
    print("token", os.environ.get("ARLEDGER_TRIAL_TOKEN"), flush=True)
    t0 = time.time()
    while time.time() - t0 < SLEEP:
        time.sleep(min(0.05, max(0.0, SLEEP - (time.time() - t0))))
    print(f"metric loss={{VALUE}} step=1", flush=True)
    print(f"metric words={{words}} step=1", flush=True)
    (out / "model.txt").write_text(FORMAT.format(value=VALUE))


if __name__ == "__main__":
    main()
'''

COMMON_PY = 'FORMAT = "{value!r}\\n"\n'

EVALUATE_PY = '''\
"""stand-in evaluator: the mean VALUE over the runs; size gate on code + model bytes."""
import argparse
import json
import math
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--runs", required=True)
ap.add_argument("--heldout", required=True)
ap.add_argument("--result", required=True)
ap.add_argument("--train-wall-s", default="")
ap.add_argument("--code-bytes", type=int, default=0)
ap.add_argument("--max-bytes", type=int, default={max_bytes})
a = ap.parse_args()
secret = (Path(a.heldout) / "secret.txt").read_text()
values, sizes = [], []
for run in a.runs.split(","):
    p = Path(run) / "model.txt"
    if not p.is_file():
        Path(a.result).write_text(json.dumps({{"score": None, "metrics": {{}}, "gates": [], "label": None,
                                               "reason": f"{{run}}: no model.txt"}}))
        raise SystemExit(0)
    sizes.append(p.stat().st_size)
    values.append(float(p.read_text(errors="replace").split()[0]) if p.stat().st_size < 10000 else 0.0)
total = a.code_bytes + max(sizes)
gate = {{"name": "artifact_bytes", "passed": total <= a.max_bytes, "value": total, "limit": a.max_bytes}}
if not gate["passed"]:
    res = {{"score": None, "metrics": {{"artifact_bytes": total}}, "gates": [gate], "label": "size_blocked",
           "reason": f"code + model = {{total}} bytes > {{a.max_bytes}}"}}
else:
    score = sum(values) / len(values)
    res = {{"score": score if math.isfinite(score) else None, "metrics": {{"value": score, "secret_len": len(secret),
           "train_wall_s": sum(float(x) for x in a.train_wall_s.split(",") if x)}}, "gates": [gate],
           "label": None, "reason": ""}}
Path(a.result).write_text(json.dumps(res))
'''

PREPARE_PY = '''\
import argparse
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
a = ap.parse_args()
d = Path(a.data)
(d / "train").mkdir(parents=True, exist_ok=True)
(d / "heldout").mkdir(parents=True, exist_ok=True)
(d / "train" / "train.txt").write_text("to be or not to be\\n")
(d / "heldout" / "secret.txt").write_text("HELDOUT-SECRET-42\\n")
'''

TASK_TOML = '''\
[task]
name = "{name}"
version = "1"
description = "a stand-in task for runner tests"
metric = "value"
direction = "min"
recipe_dir = "recipe"
recipe_files = ["train.py"]
evaluator_files = ["evaluator/evaluate.py", "evaluator/common.py"]
stage_into_workspace = ["evaluator/common.py"]
artifact = "model.txt"

[commands]
prepare = "{{python}} {{task}}/prepare.py --data {{data}}"
train = "{{python}} train.py"
evaluate = "{{python}} {{eval_dir}}/evaluate.py --runs {{runs}} --heldout {{data}}/heldout --result {{result}}"

[budgets]
preflight_s = 10
train_s = {train_s}
eval_s = {eval_s}

[gates]
artifact_max_bytes = {max_bytes}

[noise]
seeds_per_trial = {seeds}
min_delta = 0.01

[resources]
gpus_per_trial = 0
cpu_threads = 1
memory_mb = {memory_mb}
max_procs = {max_procs}
network = {network}

[surfaces.opt]
description = "the value and the sleep"
files = ["train.py"]
regions = ["opt"]

[surfaces.all]
description = "anything in train.py"
files = ["train.py"]

[[specialists]]
name = "opt"
surface = "opt"
preamble = "tune VALUE"
'''


def make_task(root: Path, *, name: str = "standin", report_port: int = 0, train_s: float = 20, eval_s: float = 20,
              seeds: int = 1, max_bytes: int = 20000, train_py: str | None = None, memory_mb: int = 0,
              max_procs: int = 1024) -> Path:
    """Write the stand-in task into ``root`` (world-readable, as a task directory must be)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "recipe").mkdir(exist_ok=True)
    (root / "evaluator").mkdir(exist_ok=True)
    (root / "task.toml").write_text(TASK_TOML.format(name=name, train_s=train_s, eval_s=eval_s, seeds=seeds,
                                                     max_bytes=max_bytes, memory_mb=memory_mb, max_procs=max_procs,
                                                     network="true" if report_port else "false"))
    (root / "recipe" / "train.py").write_text(train_py or TRAIN_PY.format(report_port=report_port))
    (root / "evaluator" / "common.py").write_text(COMMON_PY)
    (root / "evaluator" / "evaluate.py").write_text(EVALUATE_PY.format(max_bytes=max_bytes))
    (root / "prepare.py").write_text(PREPARE_PY)
    for d, _, fs in os.walk(root):
        os.chmod(d, 0o755)
        for f in fs:
            os.chmod(os.path.join(d, f), 0o644)
    return root


def open_dir(path: Path) -> Path:
    """A directory every user can enter (pytest's tmp dirs are root-only 0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def edit(files: dict[str, str], path: str, old: str, new: str) -> str:
    """A unified diff that replaces the single occurrence of ``old`` in ``path``."""
    text = files[path]
    assert text.count(old) == 1, (old, text.count(old))
    return diffs.make_diff(files, {**files, path: text.replace(old, new)})


def set_value(files: dict[str, str], value: str) -> str:
    return edit(files, "train.py", "VALUE = 1.0\n", f"VALUE = {value}\n")


def insert_after(files: dict[str, str], path: str, anchor: str, code: str) -> str:
    return edit(files, path, anchor, anchor + code)


from tests.pgtools import pg_available, pg_schema  # noqa: E402,F401  (the runner tests' PostgreSQL helpers)


def live_with_token(token_prefix: str) -> list[int]:
    """Live processes carrying the ARLEDGER_TRIAL_TOKEN that starts with ``token_prefix``."""
    assert token_prefix, "name the token: other runners on this machine have tokens too"
    out = []
    needle = ("ARLEDGER_TRIAL_TOKEN=" + token_prefix).encode()
    for n in os.listdir("/proc"):
        if not n.isdigit() or int(n) == os.getpid():
            continue
        try:
            with open(f"/proc/{n}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state in (b"Z", b"X"):
                continue
            with open(f"/proc/{n}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if any(e.startswith(needle) for e in env):
            out.append(int(n))
    return out


def live_under(root: Path | str) -> list[int]:
    """Live processes whose working directory lies under ``root`` (this test's own directories)."""
    root = os.path.realpath(root)
    out = []
    for n in os.listdir("/proc"):
        if not n.isdigit() or int(n) == os.getpid():
            continue
        try:
            with open(f"/proc/{n}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            cwd = os.readlink(f"/proc/{n}/cwd")
        except OSError:
            continue
        if state not in (b"Z", b"X") and (cwd == root or cwd.startswith(root + "/")):
            out.append(int(n))
    return out


def kill_under(root: Path | str) -> None:
    import signal

    for pid in live_under(root):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def dedent(s: str) -> str:
    return textwrap.dedent(s)


def world_dir(prefix: str):
    """A fixture body: a fresh directory under /tmp that the sandbox's unprivileged user can read
    (mode 0755), whose leftover processes are killed and which is removed after the test."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    kill_under(d)
    shutil.rmtree(d, ignore_errors=True)
