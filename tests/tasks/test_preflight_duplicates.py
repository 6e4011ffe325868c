"""Duplicates are caught before compute — without blocking the same change on a different parent
(that is how keeps of different specialists are combined)."""

from __future__ import annotations

from ledger import diffs
from tasks import preflight as pf
from tasks import workspace as wsp
from tasks.knobs import set_knob
from tasks.spec import load_task


def test_same_change_same_parent_is_duplicate_other_parent_is_not():
    spec = load_task("golf-mini")
    base = wsp.baseline_files(spec)
    lr = next(k for k in spec.knobs() if k.name == "LR")
    steps = next(k for k in spec.knobs() if k.name == "WARMUP_STEPS")
    raise_steps = {**base, "train.py": set_knob(base["train.py"], steps, 200)}
    d1 = diffs.make_diff(base, raise_steps)
    first = pf.check(spec, base, d1, surface="sched", seen=set())
    assert first.passed
    seen = first.keys
    assert seen == {first.diff_key, diffs.tree_key(first.tree_sha)}
    # the same edit, reformatted, on the same parent: a duplicate, no compute spent
    again = pf.check(spec, base, d1.replace("WARMUP_STEPS = 200", "WARMUP_STEPS =  200"), surface="sched", seen=seen)
    assert not again.passed and again.label == "duplicate"
    # the same edit on another parent (an incumbent with a better LR): a new trial
    other_parent = {**base, "train.py": set_knob(base["train.py"], lr, 2e-3)}
    combined = diffs.make_diff(other_parent, {**other_parent, "train.py": set_knob(other_parent["train.py"], steps, 200)})
    assert diffs.normalise(combined) == diffs.normalise(d1)
    res = pf.check(spec, other_parent, combined, surface="sched", seen=seen)
    assert res.passed, res.reason
    # reaching code that was already tried, by another route, is a duplicate too
    back = diffs.make_diff(other_parent, raise_steps)
    dup = pf.check(spec, other_parent, back, surface=None, seen=seen)
    assert not dup.passed and dup.label == "duplicate" and "exact code" in dup.reason
