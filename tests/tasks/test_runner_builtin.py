"""Every built-in task runs through a real runner: its baseline (with fewer steps, by a submitted
diff; the full baseline is marked slow) gets a valid evaluator score, and a known-bad edit of each
kind gets the right label: crash (with the exception and the recipe frame in the excerpt),
diverged, train_budget_overrun, illegal_edit, size_blocked, preflight_crash, duplicate."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest

from ledger import diffs
from ledger.aggregates import Trial
from ledger.audit import init_ledger, verify
from tasks import workspace as wsp
from tasks.knobs import set_knob
from tasks.runner import Runner
from tasks.spec import TaskSpecError, load_task
from tasks.submit import submit_trial

BUILTIN = ["golf-mini", "airbench-mini", "nanochat-mini"]
# knob settings that make the baseline a smoke run: same code paths, a fraction of the steps
FAST = {
    "golf-mini": {"MAX_STEPS": 10},
    "airbench-mini": {"EPOCHS": 1},
    "nanochat-mini": {"MAX_STEPS": 10},
}
CRASH = '''

def _arledger_test_boom():
    raise RuntimeError("deliberate failure for the test")


_arledger_test_boom()
'''
NAN = '''
print("metric train_loss=nan step=0", flush=True)
raise SystemExit(1)
'''
SLEEP = '''
import time as _arledger_time
_arledger_time.sleep(10_000)
'''


def _spec(name: str):
    try:
        return load_task(name)
    except TaskSpecError as e:
        pytest.skip(f"built-in task {name} is not available: {e}")


_PREPARED: dict[str, str | None] = {}


def _need_data(spec, runner: Runner) -> None:
    """Prepare the task's data once (cached across runs); skip when it cannot be fetched here."""
    if spec.name not in _PREPARED:
        try:
            runner.data.prepare(spec)
            _PREPARED[spec.name] = None
        except Exception as e:
            _PREPARED[spec.name] = str(e)
    if _PREPARED[spec.name]:
        pytest.skip(f"data for {spec.name} cannot be prepared here: {_PREPARED[spec.name]}")


def _fast_files(spec) -> dict[str, str]:
    files = wsp.baseline_files(spec)
    main = spec.recipe_files[0]
    text = files[main]
    for knob, value in FAST.get(spec.name, {}).items():
        try:
            text = set_knob(text, knob, value)
        except (KeyError, ValueError):
            pytest.skip(f"{spec.name} has no knob {knob} to shorten its baseline with")
    return {**files, main: text}


def _insert_after_imports(text: str, code: str) -> str:
    """Put ``code`` right after the line that imports torch (module level, before any work)."""
    m = re.search(r"^import torch\n", text, flags=re.M)
    assert m, "the recipe does not import torch at module level"
    return text[: m.end()] + code + text[m.end():]


def _copy_task(spec, dest: Path, **budgets: float) -> Path:
    shutil.copytree(spec.root, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    toml = dest / "task.toml"
    text = toml.read_text()
    for k, v in budgets.items():
        text, n = re.subn(rf"^{k}\s*=.*$", f"{k} = {v}", text, flags=re.M)
        assert n == 1, k
    toml.write_text(text)
    return dest


@pytest.fixture
def ledger(tmp_path: Path):
    led, _, _ = init_ledger(f"sqlite:{tmp_path}/ledger/ledger.db")
    yield led
    led.close()


def _run(led, tasks, **kw) -> Runner:
    r = Runner(ledger=led, runner_id="builtin", tasks=tasks, grace_s=1.0, **kw)
    return r


def _assert_scored(led, trial_id, spec) -> Trial:
    t = led.load(Trial, trial_id)
    assert t.status == "scored", (t.status, t.label and t.label.reason, t.label and t.label.excerpt)
    assert t.evaluated is not None and t.evaluated.score is not None and math.isfinite(t.evaluated.score)
    assert t.label.score == t.evaluated.score
    assert t.evaluated.evaluator == f"{spec.name}@{spec.evaluator_sha()[:12]}"
    assert t.evaluated.evaluator_sha == spec.evaluator_sha()
    assert t.finished is not None and t.finished.exit_status == 0 and t.finished.artifact_sha
    assert led.artifacts.exists(t.finished.artifact_sha)
    return t


@pytest.mark.parametrize("name", BUILTIN)
def test_reduced_baseline_gets_a_valid_score(name: str, ledger, tmp_path: Path) -> None:
    # the evaluator's budget is the task's choice for a dedicated machine; on a shared CI box it can
    # be too tight, and this test is about the runner, so give it room (the slow test keeps it)
    spec = _spec(name)
    copy = _copy_task(spec, tmp_path / "task", eval_s=max(spec.budgets.eval_s, 300))
    if spec.gates.accuracy_min is not None:
        # a shortened run cannot clear an accuracy gate; the gate has its own tests (test_*_mini.py)
        toml = copy / "task.toml"
        toml.write_text(re.sub(r'^(evaluate = ".*)"$', r'\1 --accuracy-min 0"', toml.read_text(), count=1, flags=re.M))
    spec = load_task(copy)
    runner = _run(ledger, [spec])
    _need_data(spec, runner)
    fast = _fast_files(spec)
    diff = diffs.make_diff(wsp.baseline_files(spec), fast)
    sub = submit_trial(ledger, spec, campaign=f"{name}-smoke", diff=diff, hypothesis="smoke run", actor="human:t")
    assert sub.passed, sub.reason
    assert runner.run_until_idle(timeout_s=600) == 1
    _assert_scored(ledger, sub.trial_id, spec)
    assert verify(ledger).ok


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTIN)
def test_full_baseline_gets_a_valid_score(name: str, ledger) -> None:
    spec = _spec(name)
    runner = _run(ledger, [spec])
    _need_data(spec, runner)
    sub = submit_trial(ledger, spec, campaign=f"{name}-baseline", diff="", hypothesis="baseline", actor="human:t")
    assert sub.passed, sub.reason
    assert runner.run_until_idle(timeout_s=1200) == 1
    _assert_scored(ledger, sub.trial_id, spec)


@pytest.mark.parametrize("name", BUILTIN)
def test_bad_edits_get_the_right_labels(name: str, ledger, tmp_path: Path) -> None:
    spec = _spec(name)
    tight = load_task(_copy_task(spec, tmp_path / "tight", train_s=3))
    runner = _run(ledger, [spec])
    _need_data(spec, runner)
    base = wsp.baseline_files(spec)
    main = spec.recipe_files[0]
    text = base[main]
    camp = f"{name}-bad"

    def submit(new_text: str | None = None, *, diff: str | None = None, s=spec, campaign: str = camp,
               seen: frozenset[str] = frozenset()):
        d = diff if diff is not None else diffs.make_diff(base, {**base, main: new_text})
        return submit_trial(ledger, s, campaign=campaign, diff=d, hypothesis="bad on purpose", actor="human:t",
                            seen=seen)

    # preflight: nothing runs
    evaluator_file = spec.evaluator_files[0]
    outcomes = {
        "evaluator file": (submit(diff=diffs.make_diff({}, {evaluator_file: "print('mine')\n"})), "illegal_edit"),
        "escape": (submit(diff="--- a/../x\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n"), "illegal_edit"),
        "syntax": (submit(_insert_after_imports(text, "def broken(:\n    pass\n")), "preflight_crash"),
    }
    cap = spec.gates.artifact_max_bytes
    if cap:
        outcomes["size"] = (submit(text + "#" * (cap + 1) + "\n"), "size_blocked")
    first = submit(_insert_after_imports(text, "\nARLEDGER_TEST_CONSTANT = 1\n"))
    outcomes["duplicate"] = (submit(_insert_after_imports(text, "\nARLEDGER_TEST_CONSTANT  =  1\n"), seen=first.keys),
                             "duplicate")
    for what, (sub, label) in outcomes.items():
        assert not sub.passed and sub.label == label, (what, sub.label, sub.reason)
        t = ledger.load(Trial, sub.trial_id)
        assert t.status == label and t.launch is None, what
    assert first.passed
    # cancel the harmless one so that the runner does not spend time on it
    t = ledger.load(Trial, first.trial_id)
    t.quarantine("not needed by the test", "human:t")
    ledger.save(t)

    # runs that fail
    crash = submit(_insert_after_imports(text, CRASH))
    nan = submit(_insert_after_imports(text, NAN))
    over = submit(_insert_after_imports(text, SLEEP), s=tight, campaign=f"{name}-tight")
    for s in (crash, nan, over):
        assert s.passed, s.reason
    runner = _run(ledger, [spec, tight])
    assert runner.run_until_idle(timeout_s=300) == 3

    t = ledger.load(Trial, crash.trial_id)
    assert t.status == "crash", t.label
    assert "RuntimeError: deliberate failure for the test" in t.label.excerpt
    assert re.search(r"train\.py:\d+", t.label.excerpt), t.label.excerpt
    t = ledger.load(Trial, nan.trial_id)
    assert t.status == "diverged", t.label
    t = ledger.load(Trial, over.trial_id)
    assert t.status == "train_budget_overrun", t.label
    assert t.finished is not None and t.finished.timed_out and t.finished.wall_s < 3 + 1 + 5
    for s in (crash, nan, over):
        assert ledger.load(Trial, s.trial_id).evaluated is None  # failed runs are never scored
    assert verify(ledger).ok


def test_preflight_keeps_a_specialist_inside_its_surface_regions() -> None:
    from tasks import preflight

    spec = _spec("golf-mini")
    base = wsp.baseline_files(spec)
    text = base["train.py"]
    lr_line = next(line for line in text.splitlines(keepends=True) if line.startswith("LR = "))
    inside = diffs.make_diff(base, {**base, "train.py": text.replace(lr_line, "LR = 0.00123\n", 1)})
    ok = preflight.check(spec, base, inside, surface="opt")
    assert ok.passed, ok.reason
    assert ok.tree_sha == wsp.tree_sha(ok.files) and ok.code_bytes == wsp.code_bytes(spec, ok.files)
    # the same edit from the architecture specialist: outside its regions
    wrong = preflight.check(spec, base, inside, surface="arch")
    assert not wrong.passed and wrong.label == "illegal_edit" and "outside region" in wrong.reason
    # an edit outside every region (the data loading code) is refused for a region-bound surface
    seed_line = next(line for line in text.splitlines(keepends=True) if line.startswith("SEED = "))
    outside = diffs.make_diff(base, {**base, "train.py": text.replace(seed_line, "SEED = 7\n", 1)})
    res = preflight.check(spec, base, outside, surface="opt")
    assert res.label == "illegal_edit" and "surface" in res.reason
    # moving a region marker is refused too
    marker = diffs.make_diff(base, {**base, "train.py": text.replace("# endregion\n", "", 1)})
    assert preflight.check(spec, base, marker, surface="arch").label == "illegal_edit"
    # without a surface (a human), anywhere in the recipe files is fine
    assert preflight.check(spec, base, outside).passed
    again = preflight.check(spec, base, inside, surface="opt")
    assert again.passed and again.label is None
    assert [c.name for c in again.checks][:3] == ["parses", "paths_inside", "evaluator"]
