"""The offline specialists over golf-mini's real spec: the lineage-aware heuristic and the random control.

No training: trials are synthetic rows whose code is the parent's code with knobs set or patches applied,
and whose scores come from the test (or a toy objective)."""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents.base import Proposal, ProposalFailed
from agents.heuristic_backend import HeuristicBackend
from agents.heuristic_moves import patch_in
from agents.random_backend import RandomKnobBackend
from ledger import diffs
from ledger.objective import Objective
from projections.records import TrialRow
from tasks import preflight
from tasks.knobs import format_value, read_knob, set_knob
from tasks.spec import Knob, Surface, TaskSpec, load_task

SPEC = load_task("golf-mini")
CID = uuid.uuid4()


def knob(name: str) -> Knob:
    return next(k for k in SPEC.knobs() if k.name == name)


@dataclass
class Ctx:
    """A StructuredContext over synthetic trials: number -> (row, files)."""

    specialist: str
    task: TaskSpec = SPEC
    arm: str = "lineage"
    direction: str = "min"
    seed: int = 0
    best: int | None = None  # the incumbent; None: the best-scoring keep/baseline
    refuse: str | None = None  # a knob name whose line check_surface refuses
    rows: list[TrialRow] = field(default_factory=list)
    code: dict[int, dict[str, str]] = field(default_factory=dict)
    preamble: str = ""
    task_name: str = "golf-mini"
    metric: str = "val_bpb"

    def __post_init__(self) -> None:
        if not self.rows:
            self.code[0] = SPEC.recipe_texts()
            self.rows.append(row(0, None, "baseline", kind="baseline", status="baseline", score=1.50))

    @property
    def objective(self) -> Objective:
        return Objective(self.direction, min_delta=0.01)

    @property
    def surface(self) -> str:
        return self.task.specialist(self.specialist).surface if self.specialist in {
            s.name for s in self.task.specialists} else self.specialist

    def trials(self) -> list[TrialRow]:
        return list(self.rows)

    def incumbent(self) -> int:
        if self.best is not None:
            return self.best
        scored = [r for r in self.rows if r.status in ("keep", "baseline") and r.score is not None]
        pick = min if self.direction == "min" else max
        return pick(scored, key=lambda r: (r.score, -r.number)).number

    def trial_files(self, number: int) -> dict[str, str]:
        return dict(self.code[number])

    def editable_files(self) -> list[str]:
        return ["train.py"]

    def check_surface(self, parent: int, diff: str) -> str | None:
        if self.refuse:
            text = self.code[parent]["train.py"]
            line = text.splitlines().index(next(ln for ln in text.splitlines() if ln.startswith(self.refuse + " =")))
            if line + 1 in diffs.changed_lines(self.code[parent], diff).get("train.py", set()):
                return f"{self.refuse} is off limits"
        result = preflight.check(self.task, self.code[parent], diff, surface=self.surface)
        return result.reason if not result.passed and result.label == "illegal_edit" else None

    # test helpers ---------------------------------------------------------------------------------

    def add(self, parent: int, specialist: str, *, status: str | None, score: float | None = None,
            knobs: dict[str, Any] | None = None, patches: tuple[str, ...] = (), files: dict[str, str] | None = None,
            surface: str | None = None) -> int:
        number = max(self.code) + 1
        if files is None:
            text = self.code[parent]["train.py"]
            for name in patches:
                text = next(p for p in SPEC.patches if p.name == name).apply(text)
            for name, value in (knobs or {}).items():
                text = set_knob(text, knob(name), value)
            files = {"train.py": text}
        inc = next(r for r in self.rows if r.number == self.incumbent())
        delta = score - inc.score if score is not None and inc.score is not None else None
        self.code[number] = files
        self.rows.append(row(number, parent, specialist, status=status, score=score, delta=delta,
                             surface=surface or SPEC.specialist(specialist).surface))
        return number

    def record(self, p: Proposal, *, status: str | None, score: float | None = None) -> int:
        files = diffs.apply(self.code[p.parent], p.diff)
        return self.add(p.parent, self.specialist, status=status, score=score, files=files, surface=self.surface)

    def value(self, number: int, name: str) -> Any:
        return read_knob(self.code[number]["train.py"], knob(name))


def row(number: int, parent: int | None, specialist: str, *, kind: str = "proposal", status: str | None,
        score: float | None = None, delta: float | None = None, surface: str = "") -> TrialRow:
    return TrialRow(campaign_id=CID, campaign="t", trial_id=uuid.uuid4(), number=number, specialist=specialist,
                    surface=surface or specialist, kind=kind, hypothesis=f"trial {number}", parent=parent,
                    label=status, status=status, score=score, delta=delta)


def knob_values(files: dict[str, str]) -> dict[str, Any]:
    return {k.name: read_knob(files["train.py"], k) for k in SPEC.knobs()}


def changed_knobs(ctx: Ctx, p: Proposal) -> dict[str, tuple[Any, Any]]:
    before = knob_values(ctx.code[p.parent])
    after = knob_values(diffs.apply(ctx.code[p.parent], p.diff))
    return {n: (before[n], after[n]) for n in before if before[n] != after[n]}


def config(files: dict[str, str]) -> tuple:
    text = files["train.py"]
    return tuple(sorted(knob_values(files).items())), frozenset(p.name for p in SPEC.patches if patch_in(text, p))


def fmt(name: str, value: Any) -> str:
    return format_value(value, knob(name).type)


# --------------------------------------------------------------------------------------- heuristic


@pytest.mark.parametrize("specialist", [s.name for s in SPEC.specialists])
def test_diff_applies_to_the_parent_and_stays_on_the_surface(specialist: str):
    ctx = Ctx(specialist)
    p = HeuristicBackend(seed=3).propose(ctx)
    assert p.parent == 0 and p.backend == "heuristic" and p.model == "heuristic-v1"
    assert p.usage.requests == 0 and p.usage.input_tokens == 0 and p.cost_usd == 0.0
    new = diffs.apply(ctx.code[0], p.diff)
    assert new != ctx.code[0]
    assert ctx.check_surface(0, p.diff) is None
    surface_knobs = {k.name for k in SPEC.surfaces[ctx.surface].knobs}
    assert set(changed_knobs(ctx, p)) <= surface_knobs
    assert p.expected_delta is not None and p.expected_delta < 0  # val_bpb: lower is better
    assert p.hypothesis.endswith(".") and len(p.hypothesis) > 30
    assert p.transcript and "move=" in p.notes


def test_same_seed_same_proposal_and_seeds_vary():
    def propose(seed: int) -> Proposal:
        ctx = Ctx("opt")
        ctx.add(0, "arch", status="discard", score=1.52, knobs={"N_LAYER": 3})
        return HeuristicBackend(seed=seed).propose(ctx)

    a, b = propose(7), propose(7)
    assert (a.diff, a.hypothesis, a.parent, a.expected_delta) == (b.diff, b.hypothesis, b.parent, b.expected_delta)
    assert len({propose(s).diff for s in range(12)}) > 1


def test_momentum_repeats_a_raise_that_improved():
    ctx = Ctx("opt")
    ctx.add(0, "opt", status="keep", score=1.45, knobs={"LR": 0.002})
    p = HeuristicBackend().propose(ctx)
    assert p.parent == 1
    assert changed_knobs(ctx, p) == {"LR": (0.002, 0.004)}
    assert "LR 0.002 → 0.004" in p.hypothesis and "#1" in p.hypothesis and "0.05" in p.hypothesis
    assert p.expected_delta is not None and p.expected_delta < 0


def test_momentum_repeats_a_cut_that_improved_and_follows_a_max_direction():
    ctx = Ctx("opt", direction="max")  # pretend higher is better: 1.55 beats 1.50
    ctx.add(0, "opt", status="keep", score=1.55, knobs={"LR": 0.0005})
    p = HeuristicBackend().propose(ctx)
    assert changed_knobs(ctx, p) == {"LR": (0.0005, 0.00025)}
    assert "Lower LR 0.0005 → 0.00025" in p.hypothesis
    assert p.expected_delta is not None and p.expected_delta > 0


def test_after_a_divergence_it_never_goes_that_high_again():
    ctx = Ctx("opt")
    ctx.add(0, "opt", status="diverged", knobs={"LR": 0.004})
    backend = HeuristicBackend()
    lr_moves = []
    for i in range(25):
        p = backend.propose(ctx)
        moved = changed_knobs(ctx, p)
        if "LR" in moved:
            assert moved["LR"][1] < 0.004, p.hypothesis
            lr_moves.append((moved["LR"], p.hypothesis))
        ctx.record(p, status="discard", score=1.51 + 0.001 * i)
    assert lr_moves, "it never moved LR again"
    first = lr_moves[0]
    # the reverse first, probed as boldly as any untried direction (x0.25)
    assert first[0] == (0.001, 0.00025) and "#1" in first[1] and "diverged" in first[1]
    assert any(0.001 < after < 0.004 for (_, after), _ in lr_moves)  # then a smaller step up


def test_after_an_overshoot_the_raise_continues_with_a_smaller_step():
    ctx = Ctx("opt")
    ctx.add(0, "opt", status="keep", score=1.45, knobs={"LR": 0.002})
    ctx.add(1, "opt", status="diverged", knobs={"LR": 0.004})
    backend = HeuristicBackend()
    seen = []
    for _ in range(12):
        p = backend.propose(ctx)
        moved = changed_knobs(ctx, p)
        seen.append(moved.get("LR"))
        if "LR" in moved:
            assert moved["LR"][1] < 0.004
        ctx.record(p, status="discard", score=1.47)
    assert (0.002, 0.002828) in seen  # x√2 instead of x2


def test_no_configuration_is_ever_proposed_twice():
    """30 proposals scored by a toy objective and appended to the table: all configurations new."""
    def score(files: dict[str, str]) -> tuple[str, float | None]:
        v = knob_values(files)
        if v["LR"] > 0.01:
            return "diverged", None
        s = 1.5 + 0.02 * math.log2(v["LR"] / 0.004) ** 2 + 0.5 * (v["BETA2"] - 0.99) ** 2
        s += 0.01 * abs(math.log2(v["BATCH_SIZE"] / 64))
        if "grad-clip" in config(files)[1]:
            s -= 0.015
        return ("keep" if s < inc_score[0] - 0.01 else "discard"), s

    inc_score = [math.inf]
    ctx = Ctx("opt")
    ctx.rows[0].score = inc_score[0] = score(ctx.code[0])[1]
    backend = HeuristicBackend(seed=1)
    configs = [config(ctx.code[0])]
    for _ in range(30):
        p = backend.propose(ctx)
        assert set(changed_knobs(ctx, p)) <= {"LR", "BETA1", "BETA2", "EPS", "BATCH_SIZE"}
        new = diffs.apply(ctx.code[p.parent], p.diff)
        assert config(new) not in configs, p.hypothesis
        configs.append(config(new))
        status, s = score(new)
        ctx.record(p, status=status, score=s)
        if status == "keep":
            inc_score[0] = s
    assert inc_score[0] < ctx.rows[0].score - 0.03  # and the search made progress on the toy


def test_combines_a_raced_sibling_keep_onto_the_incumbent():
    ctx = Ctx("sched")
    ctx.add(0, "sched", status="keep", score=1.45, knobs={"WARMUP_STEPS": 40})  # 1
    ctx.add(0, "opt", status="keep", score=1.40, knobs={"LR": 0.002})  # 2: raced, now the incumbent
    assert ctx.incumbent() == 2
    p = HeuristicBackend().propose(ctx)
    assert p.parent == 2
    assert changed_knobs(ctx, p) == {"WARMUP_STEPS": (10, 40)}
    assert "#1" in p.hypothesis and "WARMUP_STEPS 10 → 40" in p.hypothesis and "Combine" in p.hypothesis
    assert p.expected_delta == pytest.approx(-0.05)

    # the opt specialist does not borrow a sched knob: its diff stays on the opt surface
    q = HeuristicBackend().propose(dataclasses.replace(ctx, specialist="opt"))
    assert set(changed_knobs(ctx, q)) <= {"LR", "BETA1", "BETA2", "EPS", "BATCH_SIZE"}


def test_combines_a_discarded_sibling_that_beat_its_parent():
    ctx = Ctx("opt")
    ctx.add(0, "opt", status="keep", score=1.40, knobs={"LR": 0.002})  # 1: the incumbent
    ctx.add(0, "opt", status="discard", score=1.43, knobs={"BETA2": 0.99})  # 2: beat #0 by 0.07, raced
    p = HeuristicBackend().propose(ctx)
    assert p.parent == 1 and changed_knobs(ctx, p) == {"BETA2": (0.95, 0.99)}
    assert "#2" in p.hypothesis


def test_declared_patches_get_tried_and_failed_ones_are_not_retried():
    ctx = Ctx("sched")
    ctx.add(0, "sched", status="crash", score=None, patches=("cosine-decay",))
    backend = HeuristicBackend(seed=2)
    applied = []
    for _ in range(10):
        p = backend.propose(ctx)
        new = diffs.apply(ctx.code[p.parent], p.diff)["train.py"]
        patches = {pt.name for pt in SPEC.patches if patch_in(new, pt)}
        assert "cosine-decay" not in patches
        if "linear-warmdown" in patches:
            applied.append(p.hypothesis)
        ctx.record(p, status="discard", score=1.52)
    assert applied and "linear-warmdown" in applied[0]


def test_surface_refusals_fall_back_to_another_move():
    ctx = Ctx("opt", refuse="LR")
    ctx.add(0, "opt", status="keep", score=1.45, knobs={"LR": 0.002})
    p = HeuristicBackend().propose(ctx)
    assert "LR" not in changed_knobs(ctx, p) and ctx.check_surface(p.parent, p.diff) is None


def test_no_lineage_view_degrades_to_moves_from_the_incumbent():
    full = Ctx("opt")
    full.add(0, "opt", status="keep", score=1.45, knobs={"LR": 0.002})
    full.add(1, "reg", status="keep", score=1.40, knobs={"WEIGHT_DECAY": 0.1})
    ctx = Ctx("opt", arm="no-lineage", rows=[r for r in full.rows if r.number in (0, 2)], code=full.code)
    backend = HeuristicBackend()
    diffs_seen = set()
    for _ in range(3):  # the view does not change while its proposals run: still no repeats
        p = backend.propose(ctx)
        assert p.parent == 2 and diffs.apply(ctx.code[2], p.diff)
        assert p.diff not in diffs_seen
        diffs_seen.add(p.diff)


def one_knob_spec(name: str) -> TaskSpec:
    """golf-mini with a surface ``solo`` that owns only the knob ``name``."""
    k = knob(name)
    home = SPEC.surfaces[k.surface]
    solo = Surface("solo", f"only {name}", ("train.py",), home.regions, (dataclasses.replace(k, surface="solo"),))
    rest = dataclasses.replace(home, knobs=tuple(x for x in home.knobs if x.name != name))
    return dataclasses.replace(SPEC, surfaces={**SPEC.surfaces, k.surface: rest, "solo": solo})


def test_untried_directions_are_probed_boldly_then_refined():
    """Coarse to fine: LR is first probed x4 / x0.25 (a default step, x2, rarely moves the score past
    the noise); when both bold probes lose, the next moves are the smaller steps in between."""
    ctx = Ctx("solo", task=one_knob_spec("LR"))
    backend = HeuristicBackend(seed=4)
    firsts, texts = [], []
    for _ in range(2):
        p = backend.propose(ctx)
        firsts.append(changed_knobs(ctx, p)["LR"])
        texts.append(p.hypothesis)
        ctx.record(p, status="discard", score=1.56)  # worse than the baseline's 1.50
    assert "bold step" in texts[0] and "the other direction" in texts[1]
    assert sorted(firsts) == [(0.001, 0.00025), (0.001, 0.004)]
    p = backend.propose(ctx)
    after = changed_knobs(ctx, p)["LR"][1]
    assert 0.00025 < after < 0.004 and after in (0.0005, 0.0007071, 0.001414, 0.002)  # x2 or x√2 either way
    assert "smaller step" in p.hypothesis


def test_a_bold_probe_that_pays_is_followed_with_the_same_stride():
    ctx = Ctx("solo", task=one_knob_spec("TOK_MERGES"))
    p = HeuristicBackend().propose(ctx)
    assert changed_knobs(ctx, p) == {"TOK_MERGES": (0, 128)}  # 0 → two steps of 1024/16
    ctx.record(p, status="keep", score=1.30)
    q = HeuristicBackend().propose(ctx)
    assert q.parent == 1 and changed_knobs(ctx, q) == {"TOK_MERGES": (128, 512)}  # log stride from there
    assert "momentum" in q.notes


def test_a_costly_move_marks_a_sensitive_knob_whose_other_direction_goes_first():
    ctx = Ctx("sched")  # threshold 0.01
    ctx.add(0, "sched", status="discard", score=1.80, knobs={"WARMUP_STEPS": 2})  # cost 0.30: 30x the threshold
    for seed in range(5):
        p = HeuristicBackend(seed=seed).propose(ctx)
        assert changed_knobs(ctx, p) == {"WARMUP_STEPS": (10, 40)}, p.hypothesis  # x4 the other way
        assert "#1" in p.hypothesis and "WARMUP_STEPS matters here" in p.hypothesis and "reverse-sensitive" in p.notes
    # a loss inside the noise says nothing about the knob: untouched knobs and patches come first
    quiet = Ctx("sched")
    quiet.add(0, "sched", status="discard", score=1.505, knobs={"WARMUP_STEPS": 2})
    for seed in range(5):
        p = HeuristicBackend(seed=seed).propose(quiet)
        assert "WARMUP_STEPS" not in changed_knobs(quiet, p), p.hypothesis


def test_an_exhausted_surface_fails_empty():
    flags = Surface("flags", "one flag", ("train.py",), ("arch",), (dataclasses.replace(knob("QK_NORM"),
                                                                                        surface="flags"),))
    arch = dataclasses.replace(SPEC.surfaces["arch"], knobs=tuple(k for k in SPEC.surfaces["arch"].knobs
                                                                  if k.name != "QK_NORM"))
    spec = dataclasses.replace(SPEC, surfaces={**SPEC.surfaces, "arch": arch, "flags": flags})
    ctx = Ctx("flags", task=spec)
    backend = HeuristicBackend()
    p = backend.propose(ctx)
    assert "QK_NORM False → True" in p.hypothesis
    ctx.record(p, status="discard", score=1.55)
    with pytest.raises(ProposalFailed) as info:
        backend.propose(ctx)
    assert info.value.kind == "empty" and "nothing new to try" in info.value.message


# ------------------------------------------------------------------------------------------ random


def test_random_backend_samples_every_knob_within_range_from_the_baseline():
    for surface in SPEC.surfaces:
        ctx = Ctx(next(s.name for s in SPEC.specialists if s.surface == surface))
        backend = RandomKnobBackend(seed=5)
        configs = {config(ctx.code[0])}
        for _ in range(8):
            p = backend.propose(ctx)
            assert p.parent == 0 and p.backend == "random"
            new = diffs.apply(ctx.code[0], p.diff)
            assert ctx.check_surface(0, p.diff) is None
            values = knob_values(new)
            for k in SPEC.surfaces[surface].knobs:
                assert k.check_value(values[k.name]) is None
                assert f"{k.name}={fmt(k.name, values[k.name])}" in p.hypothesis
            assert p.hypothesis.startswith("Random search: set ")
            assert set(changed_knobs(ctx, p)) <= {k.name for k in SPEC.surfaces[surface].knobs}
            assert config(new) not in configs
            configs.add(config(new))
            ctx.record(p, status="discard", score=1.6)


def test_random_backend_ignores_the_incumbent_and_is_deterministic_per_seed():
    def first(seed: int) -> Proposal:
        ctx = Ctx("opt")
        ctx.add(0, "opt", status="keep", score=1.40, knobs={"LR": 0.002})
        return RandomKnobBackend(seed=seed).propose(ctx)

    a, b = first(11), first(11)
    assert a.parent == 0 and a.diff == b.diff and a.hypothesis == b.hypothesis
    assert len({first(s).diff for s in range(6)}) == 6
    lrs = []
    ctx = Ctx("opt")
    backend = RandomKnobBackend(seed=3)
    for _ in range(40):
        p = backend.propose(ctx)
        lrs.append(knob_values(diffs.apply(ctx.code[0], p.diff))["LR"])
        ctx.record(p, status="discard", score=1.6)
    assert all(1e-4 <= v <= 3e-2 for v in lrs)
    assert sum(v < 1e-3 for v in lrs) >= 8  # log-uniform: about half below the geometric middle (1.7e-3)


def test_a_move_stopped_early_counts_against_its_direction():
    ctx = Ctx("opt")
    ctx.add(0, "opt", status="stopped_early", knobs={"LR": 0.004})
    backend = HeuristicBackend()
    for i in range(25):
        p = backend.propose(ctx)
        moved = changed_knobs(ctx, p)
        if "LR" in moved:
            # the raise was losing to the incumbent when it was stopped: the other direction goes first
            assert moved["LR"][1] < 0.001 and "#1" in p.hypothesis, p.hypothesis
            return
        ctx.record(p, status="discard", score=1.51 + 0.001 * i)
    raise AssertionError("it never moved LR again")
