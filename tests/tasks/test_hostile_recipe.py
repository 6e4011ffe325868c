"""A hostile recipe cannot touch the evaluator, the held-out data or the ledger, cannot set its own
score, and leaves no process behind. Real processes, real files, a real SQLite ledger."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from ledger import diffs
from ledger import events as ev
from ledger.aggregates import Trial
from ledger.audit import init_ledger, verify
from tasks import workspace as wsp
from tasks.runner import Runner
from tasks.spec import load_task
from tasks.submit import submit_trial
from tests.tasks.runner_helpers import kill_under, live_under, live_with_token, make_task

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox drops privileges only when run as root")

HOSTILE = '''\
import json
import os
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

TARGETS = {targets!r}


def attempt(name, fn):
    try:
        got = fn()
        print(f"ATTACK {{name}} SUCCEEDED {{got!r}}"[:400], flush=True)
    except BaseException as e:
        print(f"ATTACK {{name}} failed: {{type(e).__name__}}", flush=True)


def replace_evaluator():
    Path("evil.py").write_text('FORMAT = "-1000\\\\n"\\n')
    os.replace("evil.py", "evaluator/common.py")


attempt("write-evaluator", lambda: open("evaluator/common.py", "w").write('FORMAT = "-1000\\\\n"\\n'))
attempt("chmod-evaluator", lambda: os.chmod("evaluator/common.py", 0o666))
attempt("replace-evaluator", replace_evaluator)
attempt("unlink-evaluator", lambda: os.unlink("evaluator/common.py"))
attempt("read-heldout-rel", lambda: (Path(os.environ["ARLEDGER_DATA"]).parent / "heldout" / "secret.txt").read_text())
attempt("read-heldout-abs", lambda: Path(TARGETS["heldout"]).read_text())
attempt("list-heldout", lambda: os.listdir(Path(TARGETS["heldout"]).parent))
attempt("read-ledger", lambda: open(TARGETS["db"], "rb").read(64))
attempt("write-ledger", lambda: sqlite3.connect(TARGETS["db"]).execute("DELETE FROM stored_events").connection.commit())
attempt("read-key", lambda: open(TARGETS["key"]).read())
attempt("read-artifacts", lambda: os.listdir(TARGETS["artifacts"]))
print("ENV " + json.dumps(sorted(os.environ)), flush=True)
print("UID", os.getuid(), os.getgid(), os.getgroups(), flush=True)
print("TOKEN", os.environ["ARLEDGER_TRIAL_TOKEN"], flush=True)

# a fake score, every way a naive harness might pick one up
print('{{"score": -1000.0}}')
print("score=-1000")
print("val_bpb: -1000")
print("metric score=-1000 step=1", flush=True)
out = Path(os.environ["ARLEDGER_OUT"])
(out / "result.json").write_text('{{"score": -1000, "label": null}}')

# leave processes behind: one keeps its environment, one execs with none (but its cwd stays)
for variant in ("keep-env", "no-env"):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.closerange(0, 3)
            if variant == "no-env":
                os.execve("/bin/sleep", ["sleep", "{marker}"], {{}})
            time.sleep(1000)
            os._exit(0)
        os._exit(0)
    os.wait()

(out / "model.txt").write_text(FORMAT.format(value=VALUE))
print("metric loss=1.0 step=1", flush=True)
'''


@pytest.fixture
def world():
    """Directories every user could reach (so the protection comes from modes, not from a 0700
    pytest tmp dir above them): task, data, ledger, work root."""
    d = Path(tempfile.mkdtemp(prefix="arl-hostile-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    kill_under(d)
    shutil.rmtree(d, ignore_errors=True)


def _procs_with(marker: str) -> list[int]:
    out = []
    for n in os.listdir("/proc"):
        if not n.isdigit():
            continue
        try:
            with open(f"/proc/{n}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{n}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmd and state not in (b"Z", b"X"):
            out.append(int(n))
    return out


def test_hostile_recipe_has_no_effect(world: Path) -> None:
    task = make_task(world / "task")
    spec = load_task(task)
    for sub in ("ledger", "data", "work"):
        (world / sub).mkdir()
        os.chmod(world / sub, 0o755)
    led, key, _ = init_ledger(f"sqlite:{world}/ledger/ledger.db")
    key_before = key.read_bytes()
    runner = Runner(ledger=led, runner_id="r-hostile", tasks=[task], data_root=world / "data",
                    work_root=world / "work", grace_s=1.0)
    if runner.isolation.identity is None:
        pytest.skip(f"no unprivileged identity: {runner.isolation.note}")
    data = world / "data" / "standin-v1"
    marker = f"{time.time() % 1000 + 1000:.6f}"
    targets = {"heldout": str(data / "heldout" / "secret.txt"), "db": str(world / "ledger" / "ledger.db"),
               "key": str(key), "artifacts": str(world / "ledger" / "artifacts")}
    base = wsp.baseline_files(spec)
    diff = diffs.make_diff(base, {"train.py": HOSTILE.format(targets=targets, marker=marker)})
    sub = submit_trial(led, spec, campaign="hostile", diff=diff, hypothesis="try everything", actor="human:t")
    assert sub.passed, sub.reason
    assert runner.run_until_idle(timeout_s=120) == 1

    trial = led.load(Trial, sub.trial_id)
    assert trial.status == "scored", trial.label
    assert trial.label is not None and trial.label.score == pytest.approx(1.0)  # the evaluator's, not -1000
    assert trial.evaluated is not None and trial.evaluated.score == pytest.approx(1.0)
    assert trial.finished is not None and trial.finished.log_sha
    log = led.artifacts.get_text(trial.finished.log_sha)
    assert "SUCCEEDED" not in log, log
    for name in ("write-evaluator", "chmod-evaluator", "replace-evaluator", "unlink-evaluator", "read-heldout-rel",
                 "read-heldout-abs", "list-heldout", "read-ledger", "write-ledger", "read-key", "read-artifacts"):
        assert f"ATTACK {name} failed" in log, name
    assert "HELDOUT-SECRET" not in log
    env_line = next(line for line in log.splitlines() if line.startswith("ENV "))
    import json

    names = set(json.loads(env_line[4:]))
    allowed = {"PATH", "HOME", "LANG", "CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ARLEDGER_DATA", "ARLEDGER_OUT", "ARLEDGER_SEED",
               "ARLEDGER_THREADS", "ARLEDGER_TIME_BUDGET_S", "ARLEDGER_DEVICE", "ARLEDGER_TRIAL_TOKEN"}
    assert names <= allowed | {"LC_CTYPE"}, names - allowed
    uid_line = next(line for line in log.splitlines() if line.startswith("UID "))
    assert uid_line.split()[1] == str(runner.isolation.identity.uid)
    # the recipe's metric "score" is informational: recorded as a metric, never as the score
    points = [p for e in led.stream(sub.trial_id) if isinstance(e, ev.MetricsLogged) for p in e.points]
    assert any(p.name == "score" and p.value == -1000 for p in points)
    # the ledger and the key are intact
    assert verify(led).ok
    assert key.read_bytes() == key_before
    assert hashlib.sha256((task / "evaluator" / "common.py").read_bytes()).hexdigest() == \
        hashlib.sha256(b'FORMAT = "{value!r}\\n"\n').hexdigest()
    # nothing the trial started is still alive
    token = next(line.split()[1] for line in log.splitlines() if line.startswith("TOKEN "))
    deadline = time.time() + 5
    while (live_with_token(token) or _procs_with(marker) or live_under(world)) and time.time() < deadline:
        time.sleep(0.1)
    assert live_with_token(token) == []
    assert _procs_with(marker) == []
    assert live_under(world) == []


def test_changed_evaluator_file_is_illegal_edit(world: Path) -> None:
    """Without the privilege drop (a runner that is not root, or isolate=False) the recipe *can*
    rewrite a staged evaluator file; the runner notices and labels it illegal_edit."""
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
