"""Hostile recipes, run by a real runner as root and as an ordinary user, are contained.

Every attack of ``tests/tasks/hostile_driver.py`` is a real recipe diff, submitted and run by a
real ``Runner`` (in its own process, as the user under test): read held-out data by path and by
searching the filesystem; read the task directory; read the ledger, the artifact store and the
signing key; reach PostgreSQL and a port this test listens on; write outside the workspace; import
the project and append to the ledger; tamper with the staged evaluator files; leave processes
behind; exhaust memory; fork-bomb. Each must fail, the trial must be labelled (the memory hog
``oom``, the rest scored by the evaluator at the honest 1.0), the ledger must verify with every
event of every trial in it, and from outside nothing may have been reached, written or left running.

As root the test also makes an ordinary user (``useradd``), gives it the test's directories and
runs the runner as that user (``setpriv``); when the interpreter lives under a directory that user
may not enter (``/root/.pyenv``), that run happens in a private mount namespace in which only the
interpreter, the repository and the test's directory are reachable there (the host is untouched).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ledger import diffs
from ledger import events as ev
from ledger.aggregates import Trial
from ledger.app import Ledger
from ledger.audit import init_ledger, verify
from tasks import workspace as wsp
from tasks.runner import Runner
from tasks.sandbox_plan import interpreter_paths
from tasks.spec import load_task
from tasks.submit import submit_trial
from tests.tasks.hostile_driver import CASES, EXPECTED
from tests.tasks.runner_helpers import COMMON_PY, live_under, make_task, world_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def listener():
    """A port on the host's loopback that no recipe may reach; counts who connected."""
    srv = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, addr = srv.accept()
            except OSError:
                return
            seen.append(str(addr))
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], seen
    srv.close()


@pytest.fixture
def world():
    yield from world_dir("arl-hostile-")


def _procs_with(needle: str) -> list[int]:
    out = []
    for n in os.listdir("/proc"):
        if not n.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{n}/cmdline").read_bytes()
            state = Path(f"/proc/{n}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle.encode() in cmd and state not in (b"Z", b"X"):
            out.append(int(n))
    return out


def _driver_env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONPATH": str(REPO),
            "PYTHONDONTWRITEBYTECODE": "1"}


def _run_driver(argv_prefix: list[str], world: Path, port: int, env: dict[str, str]) -> dict:
    cmd = [*argv_prefix, sys.executable, "-m", "tests.tasks.hostile_driver", str(world), str(port)]
    p = subprocess.run(cmd, cwd="/", env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    return json.loads((world / "results.json").read_text())


def _check(world: Path, res: dict, seen: list[str], home: Path) -> None:
    assert res["labelled"] == len(CASES)
    for case in CASES:
        r = res["cases"][case]
        want = EXPECTED.get(case, "scored")
        assert r["status"] == want, (case, r["status"], r["reason"], r["log"][-2000:])
        if want == "scored":
            assert r["score"] == pytest.approx(1.0), case  # the evaluator's, never the recipe's -1000
        attacks = [ln for ln in r["log"].splitlines() if ln.startswith("ATTACK ")]
        assert attacks, (case, r["log"][-2000:])
        assert not [a for a in attacks if "SUCCEEDED" in a], (case, attacks)
    assert "HELDOUT-SECRET" not in "".join(r["log"] for r in res["cases"].values())
    # the ledger: verifies, every trial's whole story is in it, each ran in a recorded sandbox
    led = Ledger.open(f"sqlite:{world}/ledger/ledger.db")
    try:
        assert verify(led).ok
        for case in CASES:
            events = led.stream(__import__("uuid").UUID(res["cases"][case]["trial_id"]))
            kinds = [type(e).__name__ for e in events]
            for k in ("TrialProposed", "LaunchRequested", "LaunchClaimed", "TrialStarted", "TrialFinished",
                      "OutcomeLabelled"):
                assert kinds.count(k) == 1, (case, kinds)
            started = next(e for e in events if isinstance(e, ev.TrialStarted))
            assert started.sandbox is not None and started.sandbox.kind == "bubblewrap", case
            assert not started.sandbox.network and started.sandbox.max_procs == res["targets"]["max_procs"]
            assert str(world / "data" / "standin-v1" / "train") in started.sandbox.read_only
            assert not any(p.startswith(str(world / "ledger")) for p in started.sandbox.read_only)
    finally:
        led.close()
    key = Path(res["targets"]["key"])
    assert hashlib.sha256(key.read_bytes()).hexdigest() == res["key_sha256"]
    # from outside: nothing written, reached or left running
    marker = res["targets"]["marker"]
    for d in (home, world / "task", world / "data" / "standin-v1" / "train", world / "work", Path("/tmp")):
        assert not (d / marker).exists(), d
    assert (world / "task" / "evaluator" / "common.py").read_text() == COMMON_PY
    assert seen == []
    deadline = time.time() + 5
    while (_procs_with(res["targets"]["marker_s"]) or live_under(world / "work")) and time.time() < deadline:
        time.sleep(0.1)
    assert _procs_with(res["targets"]["marker_s"]) == []
    assert live_under(world / "work") == []


def test_hostile_recipes_are_contained_with_the_runner_as_root(world: Path, listener) -> None:
    if os.geteuid() != 0:
        pytest.skip("the run with the runner as root needs root (CI runs as root; the ordinary-user run below "
                    "runs here)")
    port, seen = listener
    res = _run_driver([], world, port, _driver_env(str(world / "home")))
    assert res["uid"] == 0
    _check(world, res, seen, Path(res["targets"]["home"]))


# -------------------------------------------------------------------------------------------------
# as an ordinary user


def _blocked_ancestors(paths: list[Path]) -> dict[Path, list[Path]]:
    """{directory others may not enter: the needed paths under it} (the first such ancestor)."""
    out: dict[Path, list[Path]] = {}
    for p in paths:
        for a in [*reversed(p.parents), p]:
            if a != Path("/") and not os.stat(a).st_mode & 0o001:
                out.setdefault(a, []).append(p)
                break
    return out


def _reachable_prefix(paths: list[Path], stage: str) -> list[str]:
    """argv prefix: a private mount namespace where each needed path is reachable by everyone, by
    covering the directory that blocks it with a tmpfs and binding the path back onto it (``stage``:
    an empty directory to hold the paths meanwhile)."""
    blocked = _blocked_ancestors(paths)
    if not blocked:
        return []
    lines = ["set -e"]
    i = 0
    for a, ps in blocked.items():
        for p in ps:
            lines += [f"mkdir -p '{stage}/{i}'", f"mount --bind '{p}' '{stage}/{i}'"]
            i += 1
        lines.append(f"mount -t tmpfs -o mode=0755 tmpfs '{a}'")
        i -= len(ps)
        for p in ps:
            lines += [f"mkdir -p '{p}'", f"mount --bind '{stage}/{i}' '{p}'"]
            i += 1
    lines.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "\n".join(lines), "sh"]


@contextlib.contextmanager
def _ordinary_user(home: Path):
    name = f"arlh{os.getpid() % 100000}"
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        subprocess.run(["userdel", name], capture_output=True)
    assert shutil.which("useradd"), "useradd is needed to make the ordinary user"
    p = subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin",
                        "--user-group", name], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


def test_hostile_recipes_are_contained_with_the_runner_as_an_ordinary_user(world: Path, listener) -> None:
    port, seen = listener
    home = world / "home"
    home.mkdir()
    if os.geteuid() != 0:
        res = _run_driver([], world, port, _driver_env(str(home)))
        assert res["uid"] == os.geteuid()
        _check(world, res, seen, home)
        return
    with _ordinary_user(home) as user:
        for d, dirs, files in os.walk(world):
            for n in [d, *(os.path.join(d, x) for x in dirs + files)]:
                os.chown(n, user.pw_uid, user.pw_gid, follow_symlinks=False)
        stage = tempfile.mkdtemp(prefix="arl-hostile-stage-")
        prefix = _reachable_prefix([*interpreter_paths(), REPO, world], stage)
        setpriv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
        try:
            res = _run_driver(prefix + setpriv, world, port, _driver_env(str(home)))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        assert res["uid"] == user.pw_uid
        assert os.stat(world / "ledger" / "ledger.db").st_uid == user.pw_uid  # the user's own ledger
        _check(world, res, seen, home)


# -------------------------------------------------------------------------------------------------
# without the sandbox, and the workspace itself


def test_changed_evaluator_file_is_illegal_edit(world: Path) -> None:
    """Without the sandbox (``--unsafe-no-sandbox``: isolate=False) the recipe *can* rewrite a
    staged evaluator file; the runner notices and labels it illegal_edit, and the trial's start
    event records that it ran without a sandbox."""
    task = make_task(world / "task")
    spec = load_task(task)
    led, _, _ = init_ledger(f"sqlite:{world}/ledger/ledger.db")
    base = wsp.baseline_files(spec)
    text = base["train.py"].replace("def main():\n", "def main():\n    import os\n    os.chmod('evaluator/common.py', 0o644)\n"
                                    "    open('evaluator/common.py', 'a').write('# mine\\n')\n")
    sub = submit_trial(led, spec, campaign="c", diff=diffs.make_diff(base, {"train.py": text}),
                       hypothesis="rewrite the evaluator", actor="human:t")
    assert sub.passed, sub.reason
    runner = Runner(ledger=led, runner_id="r-open", tasks=[task], data_root=world / "data",
                    work_root=world / "work", isolate=False)
    runner.run_until_idle(timeout_s=60)
    trial = led.load(Trial, sub.trial_id)
    assert trial.status == "illegal_edit", trial.label
    assert "evaluator/common.py" in trial.label.reason
    assert trial.evaluated is None  # never scored
    started = next(e for e in led.stream(sub.trial_id) if isinstance(e, ev.TrialStarted))
    assert started.sandbox is not None and started.sandbox.kind == "none"
    assert verify(led).ok


def test_workspace_refuses_escapes_and_stages_evaluator_read_only(world: Path) -> None:
    task = make_task(world / "task")
    spec = load_task(task)
    base = wsp.baseline_files(spec)
    # paths that leave the workspace, or land on evaluator-owned files, never get written
    for bad in ({"../x": "x"}, {"/etc/passwd": "x"}, {"evaluator/common.py": "FORMAT = 'mine'"},
                {"evaluator": "a file where the evaluator dir goes"}, {"a/../../x": "x"}):
        with pytest.raises(wsp.WorkspaceError) as e:
            wsp.build_workspace(spec, {**base, **bad}, world / f"ws-{len(os.listdir(world))}")
        assert e.value.label == "illegal_edit"
    assert not (world / "x").exists()
    # a workspace under a symlink is refused
    (world / "real").mkdir()
    os.symlink(world / "real", world / "link")
    with pytest.raises(wsp.WorkspaceError):
        wsp.build_workspace(spec, base, world / "link" / "ws")
    # a good one: the tree hash checks out, staged evaluator files are root's and read-only
    ws = world / "ws"
    tree = wsp.build_workspace(spec, base, ws)
    assert tree == wsp.tree_sha(base) == wsp.after_tree_sha(ws, exclude=set(wsp.staged_paths(spec)))
    st = os.stat(ws / "evaluator" / "common.py")
    assert st.st_mode & 0o777 == 0o444 and st.st_uid == 0
    assert wsp.evaluator_changes(spec, ws) == []
    os.chmod(ws / "evaluator" / "common.py", 0o644)
    (ws / "evaluator" / "common.py").write_text("FORMAT = '{value}'\n")
    assert wsp.evaluator_changes(spec, ws) == ["evaluator/common.py (<writable>)"]
    os.unlink(ws / "evaluator" / "common.py")
    os.symlink("/etc/hostname", ws / "evaluator" / "common.py")
    assert wsp.evaluator_changes(spec, ws) == ["evaluator/common.py (<symlink>)"]
