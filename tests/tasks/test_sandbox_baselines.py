"""The built-in mini tasks score the same inside the sandbox as without it.

Each task's baseline, shortened by the same knob settings as tests/tasks/test_runner_builtin.py
(same code paths, a fraction of the steps), is run by a real runner twice on one seed: once
sandboxed and once with ``isolate=False`` (``--unsafe-no-sandbox``). On CPU with fixed seeds and
threads the training is deterministic, so what the evaluator measures must be identical: golf-mini's
and nanochat-mini's score, airbench-mini's held-out accuracy (its score is the runner's wall time,
which no two runs share; one epoch misses its gate, so both runs are disqualified alike).
"""

from __future__ import annotations

import pytest

from ledger import diffs
from ledger import events as ev
from ledger.aggregates import Trial
from ledger.audit import init_ledger
from tasks import workspace as wsp
from tasks.runner import Runner
from tasks.submit import submit_trial
from tests.tasks.test_runner_builtin import BUILTIN, _fast_files, _need_data, _spec

COMPARED = {"golf-mini": "score", "nanochat-mini": "score", "airbench-mini": "accuracy"}


@pytest.mark.parametrize("name", BUILTIN)
def test_the_reduced_baseline_scores_the_same_inside_the_sandbox(name: str, tmp_path) -> None:
    spec = _spec(name)
    led, _, _ = init_ledger(f"sqlite:{tmp_path}/ledger/ledger.db")
    try:
        files = _fast_files(spec)
        diff = diffs.make_diff(wsp.baseline_files(spec), files)
        got = {}
        for isolate in (True, False):
            runner = Runner(ledger=led, runner_id=f"r-{isolate}", tasks=[spec], grace_s=1.0, isolate=isolate,
                            work_root=tmp_path / f"work-{isolate}")
            _need_data(spec, runner)
            sub = submit_trial(led, spec, campaign=f"c-{isolate}", diff=diff, hypothesis="reduced baseline",
                               actor="human:t", seeds=[0])
            assert sub.passed, sub.reason
            assert runner.run_until_idle(timeout_s=900) == 1
            t = led.load(Trial, sub.trial_id)
            # one epoch of airbench-mini misses its accuracy gate: disqualified, but measured all the same
            assert t.status in ("scored", "disqualified"), (isolate, t.label)
            assert t.evaluated is not None
            started = next(e for e in led.stream(sub.trial_id) if isinstance(e, ev.TrialStarted))
            assert started.sandbox is not None and started.sandbox.kind == ("bubblewrap" if isolate else "none")
            got[isolate] = t.evaluated.score if COMPARED[name] == "score" else t.evaluated.metrics[COMPARED[name]]
        assert got[True] == got[False], got
    finally:
        led.close()
