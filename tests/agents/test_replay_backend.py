"""Replaying recorded proposals: round trip, per-specialist and global order, exhaustion."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.base import Proposal, ProposalFailed
from agents.replay_backend import ReplayBackend, ReplayFileError
from ledger import diffs

BASE = {"train.py": "LR = 0.01\nSTEPS = 100\n"}


@dataclass
class Ctx:
    specialist: str
    surface: str = "optimizer"
    preamble: str = ""
    task_name: str = "toy"
    metric: str = "val_loss"
    direction: str = "min"
    seed: int = 0


def proposal(lr: str, parent: int | None = None, **kw: object) -> Proposal:
    diff = diffs.make_diff(BASE, {"train.py": BASE["train.py"].replace("0.01", lr)})
    return Proposal(hypothesis=f"LR {lr} converges faster.", diff=diff, parent=parent, expected_delta=-0.01,
                    notes=f"lr={lr}", backend="anthropic", model="claude-sonnet-4-5", **kw)  # type: ignore[arg-type]


def test_round_trip_record_then_replay(tmp_path: Path):
    path = tmp_path / "proposals.jsonl"
    recorded = [("opt", proposal("0.02")), ("arch", proposal("0.03", parent=4)),
                ("opt", ProposalFailed("refused", "the model declined", hypothesis="h"))]
    assert ReplayBackend.record(recorded, path) == 3
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["specialist"] for e in lines] == ["opt", "arch", "opt"]
    assert lines[0]["parent"] is None and lines[1]["parent"] == 4

    backend = ReplayBackend(path)
    assert backend.name == "replay" and backend.remaining == 3
    got = backend.propose(Ctx("opt"))
    want = recorded[0][1]
    assert isinstance(want, Proposal)
    assert (got.hypothesis, got.diff, got.parent, got.expected_delta, got.notes, got.model) == (
        want.hypothesis, want.diff, None, -0.01, "lr=0.02", "claude-sonnet-4-5")
    assert got.backend == "replay" and got.usage.requests == 0 and got.cost_usd == 0.0
    assert f"{path} line 1" in got.transcript
    assert diffs.apply(BASE, got.diff)["train.py"] == "LR = 0.02\nSTEPS = 100\n"
    assert backend.propose(Ctx("arch")).parent == 4
    with pytest.raises(ProposalFailed) as info:
        backend.propose(Ctx("opt"))
    assert (info.value.kind, info.value.message, info.value.hypothesis) == ("refused", "the model declined", "h")
    assert backend.remaining == 0


def test_per_specialist_order_and_exhaustion(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    ReplayBackend.record([("opt", proposal("0.02")), ("arch", proposal("0.05")), ("opt", proposal("0.03"))], path)
    backend = ReplayBackend(path)
    # arch asks first and still gets its own line; opt gets its lines in file order
    assert "0.05" in backend.propose(Ctx("arch")).hypothesis
    assert "0.02" in backend.propose(Ctx("opt")).hypothesis
    assert "0.03" in backend.propose(Ctx("opt")).hypothesis
    with pytest.raises(ProposalFailed) as info:
        backend.propose(Ctx("opt"))
    assert info.value.kind == "empty"
    assert "no more proposals for specialist 'opt'" in info.value.message and str(path) in info.value.message
    assert "2 replayed" in info.value.message
    with pytest.raises(ProposalFailed, match="'quant'"):
        backend.propose(Ctx("quant"))


def test_star_lines_are_served_in_global_order_to_whoever_asks(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    ReplayBackend.record([proposal("0.02"), proposal("0.03"), proposal("0.04")], path)  # specialist "*"
    backend = ReplayBackend(path)
    got = [backend.propose(Ctx(s)).hypothesis for s in ("arch", "opt", "arch")]
    assert got == ["LR 0.02 converges faster.", "LR 0.03 converges faster.", "LR 0.04 converges faster."]


def test_replay_is_deterministic(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    ReplayBackend.record([("opt", proposal("0.02")), ("arch", proposal("0.05")), proposal("0.07")], path)
    order = [Ctx("opt"), Ctx("arch"), Ctx("arch"), Ctx("opt")]

    def run() -> list[str]:
        backend, out = ReplayBackend(path), []
        for ctx in order:
            try:
                out.append(backend.propose(ctx).diff)
            except ProposalFailed as e:
                out.append(e.kind)
        return out

    first = run()
    assert first == run()
    assert first[-1] == "empty"


def test_hand_written_file_and_clear_errors(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    diff = diffs.make_diff(BASE, {"train.py": "LR = 0.02\nSTEPS = 100\n"})
    path.write_text(json.dumps({"specialist": "opt", "hypothesis": "h", "expected_delta": -1, "parent": None,
                                "diff": diff}) + "\n\n")
    p = ReplayBackend(path).propose(Ctx("opt"))
    assert p.expected_delta == -1.0 and p.notes == "" and p.parent is None

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"specialist": "opt", "hypothesis": "h", "diff": "x"}\n{"specialist": "opt", "hypothesis": 3}\n')
    with pytest.raises(ReplayFileError, match=r"bad.jsonl:2: field 'diff'"):
        ReplayBackend(bad)
    bad.write_text("not json\n")
    with pytest.raises(ReplayFileError, match=r"bad.jsonl:1: not a JSON object"):
        ReplayBackend(bad)
    bad.write_text('{"specialist": "opt", "hypothesis": "h", "diff": "x", "parnet": 2}\n')
    with pytest.raises(ReplayFileError, match="unknown field.*parnet"):
        ReplayBackend(bad)
    with pytest.raises(ReplayFileError, match="cannot read"):
        ReplayBackend(tmp_path / "missing.jsonl")


def test_a_replayed_failure_keeps_its_model_expected_delta_and_parent(tmp_path: Path):
    path = tmp_path / "failures.jsonl"
    failed = ProposalFailed("outside_surface", "the diff touches evaluate.py", hypothesis="score it myself",
                            diff=proposal("0.5").diff, model="gpt-5.4", expected_delta=-0.3, parent=2)
    ReplayBackend.record([("opt", failed)], path)
    with pytest.raises(ProposalFailed) as info:
        ReplayBackend(path).propose(Ctx("opt"))
    e = info.value
    assert (e.kind, e.model, e.expected_delta, e.parent, e.backend) == ("outside_surface", "gpt-5.4", -0.3, 2, "replay")
    assert e.diff == failed.diff and e.hypothesis == "score it myself"
    path.write_text(json.dumps({"specialist": "opt", "failure": {"kind": "refused"}, "parent": "two"}) + "\n")
    with pytest.raises(ReplayFileError, match="field 'parent' must be a trial number or null"):
        ReplayBackend(path)
