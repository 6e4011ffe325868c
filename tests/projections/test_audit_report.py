"""The audit report: what diffs touched, surfaces, drift, corrections, noise."""

from __future__ import annotations

import difflib
import json

import pytest

from ledger.artifacts import MemoryArtifactStore
from projections import Projector
from projections.audit import build_report, render_markdown
from projections.diffscan import analyse
from tests.projections.helpers import Builder

TRAIN = """\
LR = 0.01
BETA2 = 0.95
WIDTH = 128


# region: opt
def make_optimizer(params):
    return Adam(params, lr=LR, betas=(0.9, BETA2))
# endregion


# region: arch
class Model:
    def __init__(self):
        self.width = WIDTH

    def forward(self, x):
        return x * self.width
# endregion


def train():
    m = Model()
    for step in range(10):
        m.forward(step)
"""


def udiff(old: dict[str, str], new: dict[str, str]) -> str:
    out = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        out += difflib.unified_diff((a or "").splitlines(keepends=True), (b or "").splitlines(keepends=True),
                                    f"a/{path}" if a is not None else "/dev/null",
                                    f"b/{path}" if b is not None else "/dev/null")
    return "".join(out)


def audited() -> tuple[dict, str]:
    store = MemoryArtifactStore()
    c0 = {"train.py": TRAIN}
    c1 = {"train.py": TRAIN.replace("LR = 0.01", "LR = 0.02")}
    surfaces = {"opt": {"files": ["train.py"], "regions": ["opt"], "knobs": ["LR", "BETA2"]},
                "arch": {"files": ["train.py"], "regions": ["arch"], "knobs": [{"name": "WIDTH", "file": "train.py"}]},
                "data": {"files": ["train.py"]}}
    b = Builder(config={"baseline_tree_sha": store.put(json.dumps(c0)), "surfaces": surfaces,
                        "evaluator_files": ["evaluate.py"], "noise_sd": 0.01})
    b.baseline(2.0)

    def edit(spec: str, hyp: str, new: dict[str, str], score: float, status: str, base: dict[str, str] = c1,
             **kw: object) -> int:
        return b.trial(spec, hyp, score, status, diff_sha=store.put(udiff(base, new)), **kw)

    edit("opt", "double the learning rate", c1, 1.995, "keep", base=c0)  # 1: knob only, inside the noise
    edit("opt", "beta1 0.9 -> 0.8", {"train.py": c1["train.py"].replace("(0.9, BETA2)", "(0.8, BETA2)")},
         1.999, "discard")  # 2: program edit inside the opt region
    edit("opt", "scale the forward pass", {"train.py": c1["train.py"].replace("x * self.width", "x * self.width * 2")},
         1.98, "discard", evaluator_sha="ev2")  # 3: outside the opt region; another evaluator
    edit("arch", "wider model", {"train.py": c1["train.py"].replace("WIDTH = 128", "WIDTH = 256")},
         1.97, "discard")  # 4: knob of the arch surface
    edit("opt", "peek at the evaluator", {**c1, "evaluate.py": "def score(x):\n    return 0\n"},
         1.0, "discard")  # 5: evaluator-owned file
    stale = ("--- a/train.py\n+++ b/train.py\n@@ -24,3 +24,3 @@ def train():\n     m = Model()\n"
             "-    for step in range(10):\n+    for step in range(20):\n         m.forward(step)\n")
    b.trial("data", "train twice as long", 1.99, "discard", diff_sha=store.put(stale))  # 6: does not apply
    b.relabel(3, "illegal_edit", "edits the arch region from the opt surface")
    b.quarantine(5, "touched evaluator-owned code")
    proj = Projector.rebuild(b.recorded())
    rep = build_report(proj, artifacts=store)
    return rep["campaigns"][0], render_markdown(rep)


def test_submissions_files_functions_knobs_and_edit_kind() -> None:
    c, _md = audited()
    subs = {s["number"]: s for s in c["submissions"]}
    assert subs[1]["edit_kind"] == "hyperparameter" and subs[1]["knobs"] == {"LR": ["0.01", "0.02"]}
    assert subs[1]["functions"] == [] and subs[1]["basis"] == "parent code"
    assert subs[2]["edit_kind"] == "program" and subs[2]["functions"] == ["make_optimizer"] and not subs[2]["knobs"]
    assert subs[3]["functions"] == ["Model.forward"]
    assert subs[4]["edit_kind"] == "hyperparameter" and subs[4]["knobs"] == {"WIDTH": ["128", "256"]}
    assert subs[5]["files"] == ["evaluate.py"]
    assert subs[6]["basis"] == "hunk headers" and subs[6]["functions"] == ["train"]
    assert c["submissions_summary"]["with_diff"] == 6


def test_surface_verdicts() -> None:
    c, _md = audited()
    subs = {s["number"]: s for s in c["submissions"]}
    assert subs[1]["inside_surface"] is True  # a declared knob of opt
    assert subs[2]["inside_surface"] is True  # inside `# region: opt`
    assert subs[3]["inside_surface"] is False and "outside regions opt" in " ".join(subs[3]["surface_notes"])
    assert subs[4]["inside_surface"] is True  # WIDTH belongs to arch
    assert subs[5]["inside_surface"] is False and "evaluator-owned" in " ".join(subs[5]["surface_notes"])
    assert subs[6]["inside_surface"] is True  # data declares files only


def test_drift_corrections_and_noise() -> None:
    c, md = audited()
    drift = c["evaluation_drift"]["evaluator"]
    assert drift["majority"].startswith("toy@1@ev1") and [t["number"] for t in drift["trials"]] == [3]
    kinds = [(x["kind"], x["number"], x["actor"]) for x in c["corrections"]]
    assert kinds == [("relabel", 3, "human:alice"), ("quarantine", 5, "human:alice")]
    assert c["corrections"][0]["reason"] == "edits the arch region from the opt surface"
    within = c["noise"]["within_noise"]
    assert [k["number"] for k in within] == [1] and within[0]["single_run"]
    # and the Markdown says all of it
    assert "| 001 | opt | keep | hyperparameter | yes | train.py |  | LR 0.01→0.02 |" in md
    assert "**NO**" in md and "Model.forward" in md
    assert "1 trial(s) scored under a different evaluator" in md
    assert "| 003 | relabel | discard → illegal_edit | human:alice |" in md
    assert "**1 of 1 keeps** improved by less than the noise; 1 of them rest on a single run." in md


def test_hunk_header_fallback_without_code() -> None:
    diff = ("--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n-LR = 0.01\n+LR = 3e-4\n BETA2 = 0.95\n"
            "@@ -40,2 +40,2 @@ class Model:\n     def forward(self, x):\n-        return x\n+        return 2 * x\n")
    a = analyse(diff)
    assert a.basis == "hunk headers"
    assert a.knobs == {"LR": ["0.01", "0.0003"]}
    assert a.functions == ["forward"] and a.edit_kind == "program"
    only_knob = analyse("--- a/t.py\n+++ b/t.py\n@@ -1 +1 @@\n-LR = 0.01  # lr\n+LR = 0.02  # lr\n")
    assert only_knob.edit_kind == "hyperparameter"


def test_campaign_without_surfaces_or_diffs_says_so() -> None:
    b = Builder()
    b.baseline(1.0)
    b.trial("opt", "no diff here", 0.9, "keep")
    rep = build_report(Projector.rebuild(b.recorded()))
    c = rep["campaigns"][0]
    assert c["submissions_summary"]["without_diff"] == 1
    assert any("No trial in this campaign carries a diff" in n for n in c["notes"])
    assert any("No noise measurement" in n for n in c["notes"])
    assert "No noise level is known" in render_markdown(rep)


def test_old_ledgers_promotion_relabels_are_keeps_not_corrections() -> None:
    """Before verdicts were events, the runner labelled every scored trial discard and the campaign
    loop relabelled a promoted one keep: read back, that is the keep verdict, not a correction, while
    a relabel to keep that no promotion backs is listed as one."""
    b = Builder()
    b.baseline(2.0)
    n1 = b.propose("opt", "raise the learning rate")
    n2 = b.propose("opt", "lower beta2")
    for n, score in ((n1, 1.90), (n2, 1.95)):
        b.execute(n, score)
        b.trials[n].label_outcome("discard", "runner:host-1", score=score, at=b.tick(1))  # an old runner
        b.take(b.trials[n])
    t = b.trials[n1]
    b.campaign.promote("agent:campaign", trial_id=t.id, number=n1, score=1.90, previous_trial_id=b.trials[0].id,
                       previous_score=2.0, delta=-0.1, evidence=[t.id], at=b.clock)
    b.take(b.campaign)
    b.relabel(n1, "keep", "promoted: mean of 2 runs beats #0", actor="agent:campaign")
    b.relabel(n2, "keep", "I like it", actor="human:bob")
    proj = Projector.rebuild(b.recorded())
    rep = build_report(proj)
    c = rep["campaigns"][0]
    assert [(x["number"], x["actor"]) for x in c["corrections"]] == [(n2, "human:bob")]
    md = render_markdown(rep)
    assert "| 002 | relabel | discard → keep | human:bob |" in md and "| 001 | relabel" not in md
    rows = {r.number: r for r in proj.trials.rows(b.campaign.id)}
    assert rows[n1].state == "keep" and rows[n1].relabels == 0 and rows[n1].verdict.mean == pytest.approx(1.90)
    assert rows[n2].state == "keep" and rows[n2].relabels == 1  # bob's correction
