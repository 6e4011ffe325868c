"""The sandbox itself: what each role's plan lets a real process see, reach and write, its limits,
and the refusals when no sandbox can be built (one message naming the cause and the fix)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tasks import bwrap, sandbox
from tasks import sandbox_plan as splan

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def box():
    d = Path(tempfile.mkdtemp(prefix="arl-sbx-", dir="/tmp"))
    os.chmod(d, 0o755)
    for n in ("ws", "out", "home", "train", "secret", "evaldir", "run"):
        (d / n).mkdir()
    (d / "train" / "train.txt").write_text("train words\n")
    (d / "secret" / "key.txt").write_text("SECRET\n")
    (d / "ws" / "staged.py").write_text("X = 1\n")
    os.chmod(d / "ws" / "staged.py", 0o444)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _run(d: Path, code: str, plan: splan.SandboxPlan | None, cwd: Path | None = None,
         where: str = "ws") -> tuple[int | None, str]:
    (d / where / "prog.py").write_text(code)
    env = sandbox.trial_env(home=d / "home", data=d / "train", out=d / "out", threads=1)
    r = sandbox.run([sys.executable, str(d / where / "prog.py")], cwd=cwd or d / "ws", env=env, log_path=d / "log",
                    plan=plan, timeout_s=60)
    return r.exit_status, (d / "log").read_text()


def _recipe(d: Path, **kw) -> splan.SandboxPlan:
    return splan.recipe_plan(ws=d / "ws", out=d / "out", home=d / "home", train=d / "train", staged=["staged.py"],
                             limits=kw.pop("limits", splan.limits_for(1024, 64, 1)), **kw)


def test_a_recipe_sees_its_own_dirs_and_nothing_else(box: Path) -> None:
    code = f'''
import os
print("TRAIN", open({str(box / "train" / "train.txt")!r}).read().strip())
print("SECRET", os.path.exists({str(box / "secret")!r}), os.path.exists({str(REPO / "ledger" / "app.py")!r}))
print("ROOT", sorted(os.listdir("/")))
open({str(box / "out" / "m.txt")!r}, "w").write("model")
for path in ("staged.py", {str(box / "train" / "x")!r}, "/usr/x", "/x"):
    try:
        open(path, "a").write("x")
        print("WROTE", path)
    except OSError as e:
        print("REFUSED", path, e.errno)
print("UID", os.getuid(), os.environ["HOME"])
'''
    status, log = _run(box, code, _recipe(box))
    assert status == 0, log
    assert "TRAIN train words" in log
    # neither other host dirs nor the project's code (its directory may appear as the empty parent of
    # a virtual environment kept inside it, as CI's .venv is)
    assert "SECRET False False" in log
    assert "WROTE" not in log and log.count("REFUSED") == 4
    assert (box / "out" / "m.txt").read_text() == "model"
    assert (box / "ws" / "staged.py").read_text() == "X = 1\n"
    assert f"UID {bwrap.INNER_UID} {box / 'home'}" in log
    root = next(line for line in log.splitlines() if line.startswith("ROOT"))
    assert "'home'" not in root and "'etc'" in root  # no host home; a few files of /etc only


def test_the_network_is_its_own_unless_the_plan_shares_it(box: Path) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    try:
        code = f'''
import socket
try:
    socket.create_connection(("127.0.0.1", {srv.getsockname()[1]}), timeout=3).close()
    print("REACHED")
except OSError as e:
    print("UNREACHABLE", type(e).__name__)
'''
        status, log = _run(box, code, _recipe(box))
        assert status == 0 and "UNREACHABLE" in log, log
        status, log = _run(box, code, _recipe(box, network=True))
        assert status == 0 and "REACHED" in log, log
    finally:
        srv.close()


def test_memory_and_process_limits_hold(box: Path) -> None:
    code = '''
import os, time
hog = []
try:
    while True:
        hog.append(bytearray(32 << 20))
except MemoryError:
    print("MEMORY at most", len(hog) * 32, "MiB")
del hog
kids, refused = [], 0
for _ in range(100):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    kids.append(pid)
print("PROCS", len(kids), "refused", refused)
'''
    status, log = _run(box, code, _recipe(box, limits=splan.limits_for(512, 16, 1)))
    assert status == 0, log
    mem = int(log.split("MEMORY at most ")[1].split()[0])
    assert 64 <= mem <= 512, log
    procs = int(log.split("PROCS ")[1].split()[0])
    assert procs < 16 and "refused" in log, log


def test_a_timeout_gives_the_recipe_its_grace_then_ends_the_sandbox(box: Path) -> None:
    code = '''
import signal, sys, time
def term(*_):
    print("GOT SIGTERM", flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, term)
print("READY", flush=True)
time.sleep(60)
'''
    (box / "ws" / "prog.py").write_text(code)
    env = sandbox.trial_env(home=box / "home", data=box / "train", out=box / "out", threads=1)
    r = sandbox.run([sys.executable, "prog.py"], cwd=box / "ws", env=env, log_path=box / "log", plan=_recipe(box),
                    timeout_s=2, grace_s=5)
    log = (box / "log").read_text()
    assert r.timed_out and r.exit_status == 3 and "GOT SIGTERM" in log, (r, log)


def test_the_evaluator_writes_only_its_result_file(box: Path) -> None:
    (box / "run" / "model.txt").write_text("1.0\n")
    (box / "evaldir" / "evaluate.py").write_text("print('evaluator')\n")
    data = box / "data"
    (data / "heldout").mkdir(parents=True)
    (data / "heldout" / "secret.txt").write_text("HELD\n")
    result = box / "eval" / "result.json"
    plan = splan.evaluator_plan(eval_dir=box / "evaldir", runs=[box / "run"], data=data, result=result,
                                limits=splan.limits_for(1024, 64, 1), workspace=box / "ws")
    code = f'''
print("HELDOUT", open({str(data / "heldout" / "secret.txt")!r}).read().strip())
print("MODEL", open({str(box / "run" / "model.txt")!r}).read().strip())
for what, path in (("run", {str(box / "run" / "model.txt")!r}), ("workspace", {str(box / "ws" / "staged.py")!r})):
    print("READ", what, len(open(path).read()))
    try:
        open(path, "a").write("x")
        print("WROTE the", what)
    except OSError:
        print("REFUSED the", what)
# beside the result file: the directory above it is only a mount point (here on the sandbox's own
# /tmp, elsewhere on its read-only root), so this never reaches the host
open({str(box / "eval" / "other.json")!r}, "w").write("x")
open({str(result)!r}, "w").write('{{"score": 1}}')
'''
    (box / "evaldir" / "prog.py").write_text(code)
    env = sandbox.trial_env(home="/tmp", threads=1)
    r = sandbox.run([sys.executable, str(box / "evaldir" / "prog.py")], cwd=box / "evaldir", env=env,
                    log_path=box / "log", plan=plan, timeout_s=60)
    log = (box / "log").read_text()
    assert r.exit_status == 0, log
    assert "HELDOUT HELD" in log and "MODEL 1.0" in log
    assert "REFUSED the run" in log and "REFUSED the workspace" in log and "READ workspace 6" in log
    assert result.read_text() == '{"score": 1}'
    assert not (box / "eval" / "other.json").exists()
    assert (box / "run" / "model.txt").read_text() == "1.0\n"


def test_prepare_sees_the_host_but_not_the_ledger_or_other_data(box: Path) -> None:
    ledger_home = box / "ledger"
    ledger_home.mkdir()
    (ledger_home / "signing.key").write_text("KEY\n")
    data_root = box / "dataroot"
    (data_root / "other-v1" / "heldout").mkdir(parents=True)
    (data_root / "other-v1" / "heldout" / "x.txt").write_text("OTHER\n")
    mine = data_root / "mine-v1"
    mine.mkdir()
    plan = splan.prepare_plan(data=mine, downloads=box / "downloads", cwd=REPO, task=box / "train",
                              hidden=[ledger_home, data_root], limits=splan.limits_for(1024, 256, 1))
    code = f'''
import os
print("LEDGER", os.listdir({str(ledger_home)!r}))
print("OTHER", os.path.exists({str(data_root / "other-v1")!r}))
print("REPO", os.path.exists({str(REPO / "tasks" / "runner.py")!r}))
open({str(mine / "prepared.txt")!r}, "w").write("ok")
'''
    status, log = _run(box, code, plan, cwd=REPO, where="train")  # the task dir: bound again over /tmp
    assert status == 0, log
    assert "LEDGER []" in log and "OTHER False" in log and "REPO True" in log
    assert (mine / "prepared.txt").read_text() == "ok"


def test_the_plan_record_says_what_was_mounted(box: Path) -> None:
    b = bwrap.probe()
    rec = b.record(_recipe(box))
    assert rec.kind == "bubblewrap" and rec.version == b.version and rec.role == "train"
    assert sorted(rec.read_write) == sorted(str(box / n) for n in ("home", "out", "ws"))
    assert str(box / "train") in rec.read_only and f"{box / 'ws' / 'staged.py'} (file)" in rec.read_only
    assert rec.memory_mb == 1024 and rec.max_procs == 64 and not rec.network
    assert rec.process_limit == ("rlimit + " + b.pids.label + " cgroup" if os.geteuid() == 0 else "rlimit")


# -------------------------------------------------------------------------------------------------
# refusing


def test_diagnose_names_the_sysctl_to_set() -> None:
    msg = bwrap.diagnose("bwrap: No permissions to creating new namespace", {"kernel.unprivileged_userns_clone": "0"})
    assert "kernel.unprivileged_userns_clone=1" in msg
    assert "user.max_user_namespaces=15000" in bwrap.diagnose("", {"user.max_user_namespaces": "0"})
    assert "apparmor" in bwrap.diagnose("", {"kernel.apparmor_restrict_unprivileged_userns": "1"}).lower()
    other = bwrap.diagnose("bwrap: setting up uid map: Permission denied", {"user.max_user_namespaces": "100"})
    assert "setting up uid map" in other and "user.max_user_namespaces" in other


def test_a_runner_without_bubblewrap_refuses_to_start_with_one_message(tmp_path: Path) -> None:
    from ledger.audit import init_ledger

    led, _, _ = init_ledger(f"sqlite:{tmp_path}/ledger.db")
    led.close()
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty), "PYTHONPATH": str(REPO), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    p = subprocess.run([sys.executable, "-m", "arledger.cli", "runner", "--ledger", f"sqlite:{tmp_path}/ledger.db",
                        "--once", "--work-root", str(tmp_path / "work")], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1, (p.stdout, p.stderr)
    out = p.stdout + p.stderr
    assert "bubblewrap (bwrap) is not installed" in out and "apt-get install bubblewrap" in out
    assert "--unsafe-no-sandbox" in out
    assert "Traceback" not in out
    assert len([ln for ln in out.splitlines() if ln.strip()]) == 1, out
