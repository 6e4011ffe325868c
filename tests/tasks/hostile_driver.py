"""The hostile recipe suite's driver: one real runner, one real recipe diff per attack.

    python -m tests.tasks.hostile_driver WORLD LOOPBACK_PORT

Run by tests/tasks/test_hostile_recipe.py as root and as an ordinary user (then everything under
WORLD belongs to that user). It writes the stand-in task, a SQLite ledger with its signing key, the
data and work roots under WORLD, submits one trial per entry of ``CASES`` (each a diff that
replaces the recipe with ``HOSTILE`` set to that attack), runs ``Runner.run_until_idle`` and writes
``WORLD/results.json``: per case the trial's label and its stored log. The test then checks, from
outside, that nothing was reached, written, left running or lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from ledger import diffs
from ledger.aggregates import Trial
from ledger.audit import init_ledger
from tasks import workspace as wsp
from tasks.runner import Runner
from tasks.spec import load_task
from tasks.submit import submit_trial
from tests.tasks.runner_helpers import make_task

MEMORY_MB = 512
MAX_PROCS = 48
CASES = ("read-heldout", "read-task", "read-ledger", "network", "write-outside", "import-project",
         "tamper-evaluator", "leave-processes", "exhaust-memory", "fork-bomb")
EXPECTED = {"exhaust-memory": "oom"}  # every other case still writes its model: scored

HOSTILE = '''\
import json
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "evaluator"))
from common import FORMAT  # noqa: E402

# region: opt
VALUE = 1.0
SLEEP = 0.0
# endregion

CASE = {case!r}
T = {targets!r}
OUT = Path(os.environ["ARLEDGER_OUT"])


def attempt(name, fn):
    try:
        got = fn()
        print(f"ATTACK {{name}} SUCCEEDED {{got!r}}"[:300], flush=True)
    except BaseException as e:
        print(f"ATTACK {{name}} failed: {{type(e).__name__}}: {{e}}"[:300], flush=True)


SKIP = {{"/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", sys.prefix, sys.base_prefix, os.getcwd(), str(OUT)}}


def search(root, needles):
    """Every file under root whose name or first KiB holds a needle, skipping the system dirs, the
    interpreter and the recipe's own workspace and output (which hold these very needles)."""
    hits = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if os.path.join(d, x) not in SKIP]
        for f in files:
            p = os.path.join(d, f)
            try:
                head = open(p, "rb").read(1024)
            except OSError:
                continue
            if any(n.encode() in head or n in f for n in needles):
                hits.append(p)
    if not hits:
        raise FileNotFoundError("nothing found")
    return hits


def write(path):
    Path(path).write_text("written by a hostile recipe\\n")
    return path


if CASE == "read-heldout":
    attempt("heldout-by-path", lambda: Path(T["heldout"]).read_text())
    attempt("heldout-relative", lambda: (Path(os.environ["ARLEDGER_DATA"]).parent / "heldout" / "secret.txt").read_text())
    attempt("heldout-listing", lambda: os.listdir(Path(T["heldout"]).parent))
    attempt("heldout-search", lambda: search("/", ["HELDOUT-SECRET", "secret.txt"]))
elif CASE == "read-task":
    attempt("task-evaluator", lambda: Path(T["task"], "evaluator", "evaluate.py").read_text())
    attempt("task-prepare", lambda: Path(T["task"], "prepare.py").read_text())
    attempt("task-toml", lambda: Path(T["task"], "task.toml").read_text())
    attempt("task-search", lambda: search("/", ["stand-in evaluator", "HELDOUT-SECRET-42\\\\n"]))
elif CASE == "read-ledger":
    attempt("ledger-file", lambda: open(T["db"], "rb").read(64))
    attempt("ledger-sqlite", lambda: sqlite3.connect(f"file:{{T['db']}}?mode=ro", uri=True).execute(
        "SELECT count(*) FROM stored_events").fetchall())
    attempt("artifact-store", lambda: os.listdir(T["artifacts"]))
    attempt("signing-key", lambda: open(T["key"]).read())
    attempt("ledger-search", lambda: search("/", ["SQLite format 3", "PRIVATE KEY"]))
elif CASE == "network":
    attempt("postgres", lambda: socket.create_connection(("127.0.0.1", 5432), timeout=3).close())
    attempt("loopback-port", lambda: socket.create_connection(("127.0.0.1", T["port"]), timeout=3).close())
    attempt("loopback-v6", lambda: socket.create_connection(("::1", T["port"]), timeout=3).close())
    attempt("dns", lambda: socket.getaddrinfo("pypi.org", 443))
elif CASE == "write-outside":
    attempt("write-home", lambda: write(Path(T["home"]) / T["marker"]))
    attempt("write-task", lambda: write(Path(T["task"]) / T["marker"]))
    attempt("write-train-split", lambda: write(Path(os.environ["ARLEDGER_DATA"]) / T["marker"]))
    # the recipe's /tmp is its own (the work root above its workspace is there too): these writes
    # land in it, and the test checks the host's /tmp and work root
    write(Path("/tmp") / T["marker"])
    write(Path(T["work"]) / T["marker"])
elif CASE == "import-project":
    def append():
        sys.path.insert(0, T["repo"])
        from ledger.app import Ledger  # noqa: F401  (the project's own library)
        led = Ledger.open("sqlite:" + T["db"])
        return led.describe()
    attempt("import-and-append", append)
    attempt("append-postgres", lambda: socket.create_connection(("127.0.0.1", 5432), timeout=3).close())
elif CASE == "tamper-evaluator":
    def replace_evaluator():
        Path("evil.py").write_text('FORMAT = "-1000\\\\n"\\n')
        os.replace("evil.py", "evaluator/common.py")
    attempt("write-staged", lambda: open("evaluator/common.py", "w").write('FORMAT = "-1000\\\\n"\\n'))
    attempt("chmod-staged", lambda: os.chmod("evaluator/common.py", 0o666))
    attempt("replace-staged", replace_evaluator)
    attempt("unlink-staged", lambda: os.unlink("evaluator/common.py"))
    print('{{"score": -1000.0}}')
    print("metric score=-1000 step=1", flush=True)
    (OUT / "result.json").write_text('{{"score": -1000, "label": null}}')
elif CASE == "leave-processes":
    for variant in ("keep-env", "no-env"):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.closerange(0, 3)
                if variant == "no-env":
                    os.execve("/bin/sleep", ["sleep", T["marker_s"]], {{}})
                time.sleep(1000)
                os._exit(0)
            os._exit(0)
        os.wait()
    print("ATTACK leave-processes failed: (checked from outside)", flush=True)
elif CASE == "exhaust-memory":
    try:
        blob = b"x" * (16 << 20)
        with open("/dev/shm/fill", "wb") as f:
            for _ in range(64):  # 1 GiB into a tmpfs capped at the memory limit
                f.write(blob)
        print("ATTACK fill-shm SUCCEEDED", flush=True)
    except OSError as e:
        print(f"ATTACK fill-shm failed: {{type(e).__name__}}", flush=True)
    hog = []
    while True:
        hog.append(bytearray(64 << 20))  # MemoryError at the limit: the trial is labelled oom
elif CASE == "fork-bomb":
    main, t_end, refused, peak = os.getpid(), time.time() + 4, 0, 0
    while time.time() < t_end:
        try:
            os.fork()  # parent and child both go on forking
        except OSError:
            refused += 1
            time.sleep(0.05)
        if os.getpid() == main:
            peak = max(peak, sum(1 for p in os.listdir("/proc") if p.isdigit()))
    if os.getpid() != main:
        os._exit(0)
    print(f"ATTACK fork-bomb {{'SUCCEEDED' if peak > T['max_procs'] else 'failed'}}: at most {{peak}} processes, "
          f"{{refused}} forks refused", flush=True)

(OUT / "model.txt").write_text(FORMAT.format(value=VALUE))
print("metric loss=1.0 step=1", flush=True)
'''


def hostile_diff(base: dict[str, str], case: str, targets: dict) -> str:
    return diffs.make_diff(base, {"train.py": HOSTILE.format(case=case, targets=targets)})


def main(world: Path, port: int) -> dict:
    task = make_task(world / "task", train_s=25, memory_mb=MEMORY_MB, max_procs=MAX_PROCS)
    spec = load_task(task)
    for sub in ("ledger", "data", "work", "home"):
        (world / sub).mkdir(exist_ok=True)
    led, key, _ = init_ledger(f"sqlite:{world}/ledger/ledger.db")
    key_sha = hashlib.sha256(key.read_bytes()).hexdigest()
    data = world / "data" / "standin-v1"
    targets = {"heldout": str(data / "heldout" / "secret.txt"), "db": str(world / "ledger" / "ledger.db"),
               "key": str(key), "artifacts": str(world / "ledger" / "artifacts"), "task": str(task),
               "home": os.path.expanduser("~"), "work": str(world / "work"), "port": port,
               "marker": f"hostile-{os.getpid()}.txt", "marker_s": f"{os.getpid() % 1000 + 1000}.5",
               "repo": str(Path(__file__).resolve().parents[2]), "max_procs": MAX_PROCS}
    base = wsp.baseline_files(spec)
    subs = {}
    for case in CASES:
        s = submit_trial(led, spec, campaign="hostile", diff=hostile_diff(base, case, targets),
                         hypothesis=f"attack: {case}", actor="human:test", seen=set())
        assert s.passed, (case, s.reason)
        subs[case] = s.trial_id
    runner = Runner(ledger=led, runner_id="r-hostile", tasks=[task], data_root=world / "data",
                    work_root=world / "work", grace_s=1.0)
    labelled = runner.run_until_idle(timeout_s=600)
    out = {"uid": os.geteuid(), "labelled": labelled, "targets": targets, "key_sha256": key_sha, "cases": {}}
    for case, tid in subs.items():
        t = led.load(Trial, tid)
        log = led.artifacts.get_text(t.finished.log_sha) if t.finished and t.finished.log_sha else ""
        out["cases"][case] = {"trial_id": str(tid), "status": t.status, "reason": t.label.reason if t.label else "",
                              "score": t.label.score if t.label else None, "log": log}
    led.close()
    (world / "results.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
