"""`--backend agent:CMD`: a coding agent as the proposer, run as a real subprocess in a real sandbox,
against a scripted stand-in agent (tests/agents/standin_agent.py) that edits files as an agent would
and, in turn, misbehaves: it edits evaluator files, writes outside its copy, runs too long, takes
too many turns. Each ends as a labelled trial; the campaign goes on; the agent never sees the
evaluator, the held-out data or the ledger; its transcript, usage and sandbox are in the ledger."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.agent_backend import AgentBackend, AgentSetupError
from agents.base import ProposalFailed
from arledger.cli import cli
from ledger import diffs
from ledger import events as ev
from ledger.app import Ledger
from ledger.audit import verify
from tests.agents.toy_context import ToyContext
from tests.tasks.runner_helpers import make_task, open_dir

STANDIN = Path(__file__).resolve().parent / "standin_agent.py"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _agent_processes(marker: str) -> list[int]:
    """The stand-in agents still alive that this test started: their environment carries its probe
    (other tests, here or in another checkout, run stand-ins of their own)."""
    out = []
    for pid in (int(n) for n in os.listdir("/proc") if n.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"standin_agent.py" in cmd and marker.encode() in environ:
            out.append(pid)
    return out


def _leftover_scratch() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("arledger-agent-*")}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.chdir(tmp_path)
    cache = open_dir(tmp_path / "cache")
    monkeypatch.setenv("ARLEDGER_CACHE", str(cache))
    task = make_task(open_dir(tmp_path / "standin"))
    victim = open_dir(tmp_path / "elsewhere") / "victim.txt"
    victim.write_text("untouched\n")
    return {"task": task, "cache": cache, "victim": victim, "store": tmp_path / "store"}


def test_a_campaign_of_a_coding_agent_that_behaves_then_misbehaves(world: dict[str, Path]) -> None:
    task, victim = world["task"], world["victim"]
    evaluator = task / "evaluator" / "evaluate.py"
    before = {p: _sha(p) for p in (evaluator, victim)}
    url = f"sqlite:{world['store']}/ledger.db"
    heldout = world["cache"] / "data" / "standin-v1" / "heldout"
    probe = ":".join(map(str, [evaluator, heldout, world["store"] / "ledger.db", world["store"] / "signing.key",
                               victim]))
    scratch_before = _leftover_scratch()
    res = CliRunner().invoke(cli, [
        "run", "--ledger", url, "--task", str(task), "--name", "agents", "--backend",
        f"agent:{sys.executable} {STANDIN}", "--max-trials", "6", "--confirmations", "0", "--agent-time", "6",
        "--agent-turns", "5", "--agent-env", "STANDIN_PROBE", "--no-agent-network", "--quiet"],
        env={"STANDIN_PROBE": probe}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert heldout.is_dir()  # the probes were real paths on the host

    led = Ledger.open(url)
    try:
        props = sorted((r.event for r in led.events(types=(ev.TrialProposed,)) if r.event.kind == "proposal"),
                       key=lambda e: e.number)
        labels = {r.event.originator_id: r.event for r in led.events(types=(ev.OutcomeLabelled,))}
        scores = {r.event.originator_id: r.event.score for r in led.events(types=(ev.TrialEvaluated,))}
        got = [(p.number, labels[p.originator_id].status) for p in props]
        assert got == [(1, "scored"), (2, "illegal_edit"), (3, "cancelled"), (4, "cancelled"), (5, "cancelled"),
                       (6, "scored")], got
        good, evil, escape, slow, chatty, again = props
        # the good agent's edit is what was trained; the last one builds on it
        assert scores[good.originator_id] == pytest.approx(0.5) and scores[again.originator_id] == pytest.approx(0.25)
        assert good.hypothesis == "Halve it to 0.5: lower is better" and good.expected_delta == -0.5
        assert good.notes == "stand-in" and good.backend == "agent" and good.model == "stand-in-1"
        u = good.usage
        assert (u.turns, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == \
            (2, 2000, 100, 300, 200)
        assert good.cost_usd == pytest.approx(0.0125)  # as the agent's stream reported it
        diff = led.artifacts.get_text(good.diff_sha)
        assert diffs.touched(diff) == ["train.py"] and "+VALUE = 0.5" in diff
        t = led.artifacts.get_text(good.transcript_sha)
        # what it saw: its copy, never the evaluator, the held-out data, the ledger or its key
        for p in probe.split(":"):
            assert f"probe {p}: absent" in t, t
        assert "prompt names lineage: True" in t and "Specialist brief:\ntune VALUE" in t
        assert "You may edit: train.py — and in them only the lines inside the `# region: NAME`" in t
        assert "=== sandbox (network: none) ===" in t
        box = json.loads(t.split("=== sandbox (network: none) ===\n", 1)[1].split("\n", 1)[0])
        assert box["kind"] == "bubblewrap" and box["role"] == "agent" and box["network"] is False
        assert not any(str(task) in p or str(world["store"]) in p for p in box["read_only"] + box["read_write"])
        assert "ARLEDGER_AGENT_* STANDIN_PROBE" in t and "=== diff against trial 0 ===" in t

        # it wrote an evaluator into its copy: preflight labels the diff illegal_edit, the host's is untouched
        assert "evaluator/evaluate.py" in labels[evil.originator_id].reason
        assert "evaluator/evaluate.py" in diffs.touched(led.artifacts.get_text(evil.diff_sha))
        et = led.artifacts.get_text(evil.transcript_sha)
        assert f"attempt overwrite {evaluator}: refused" in et
        # it wrote outside its copy (refused or private to its sandbox) and left a link: outside_copy
        assert "outside_copy" in labels[escape.originator_id].reason and "symlink" in labels[escape.originator_id].reason
        assert f"attempt write {victim}: refused" in led.artifacts.get_text(escape.transcript_sha)
        # it ran too long: stopped and labelled; it took too many turns: stopped and labelled
        assert "timeout" in labels[slow.originator_id].reason and "6-second budget" in labels[slow.originator_id].reason
        assert "turn_limit" in labels[chatty.originator_id].reason
        u = chatty.usage  # what it printed before the stop took effect is counted
        assert 5 < u.turns < 999 and u.input_tokens == 1000 * u.turns
        for p in (evil, escape, slow, chatty):
            assert p.transcript_sha and led.artifacts.get_text(p.transcript_sha).startswith("=== agent backend")
        assert verify(led).ok
    finally:
        led.close()
    assert {p: _sha(p) for p in before} == before
    assert not (world["victim"].parent / "outside.txt").exists()
    assert _agent_processes(f"STANDIN_PROBE={probe}") == []  # the slow and the chatty one are gone
    assert _leftover_scratch() <= scratch_before  # scratch copies removed

    shown = CliRunner().invoke(cli, ["show", "5", "--ledger", url], catch_exceptions=False).output
    assert "turn_limit" in shown


def test_agent_setup_mistakes_are_one_line(world: dict[str, Path]) -> None:
    url = f"sqlite:{world['store']}/ledger.db"
    base = ["run", "--ledger", url, "--task", str(world["task"]), "--quiet", "--max-trials", "1"]
    cases = [
        (["--backend", "agent:no-such-agent-program -p"], "the agent program 'no-such-agent-program' is not on PATH"),
        (["--backend", "agent:"], "agent:CMD needs a command"),
        (["--backend", f"agent:{sys.executable} {STANDIN} {{nope}}"], "unknown placeholder {nope}"),
        (["--backend", f"agent:{sys.executable} {STANDIN}", "--agent-bind", str(world["task"])],
         "which the agent must never see"),
        (["--backend", f"agent:{sys.executable} {STANDIN}", "--agent-bind", str(world["cache"] / "data")],
         "which the agent must never see"),
    ]
    for args, message in cases:
        res = CliRunner().invoke(cli, base + args)
        assert res.exit_code == 1, (args, res.output)
        assert message in res.output and "Traceback" not in res.output, (args, res.output)


def test_the_agent_with_the_network_and_a_prompt_file(tmp_path: Path) -> None:
    scratch = open_dir(tmp_path / "scratch")
    backend = AgentBackend(f"{sys.executable} {STANDIN} good {{prompt_file}}", time_s=30, network=True,
                           scratch_root=scratch)
    p = backend.propose(ToyContext())
    assert p.parent == 0 and "+LR = 0.005" in p.diff and diffs.touched(p.diff) == ["train.py"]
    t = p.transcript
    assert "<the prompt>" not in t.split("=== budget ===", 1)[0] and "/in/prompt.md" in t  # passed as a file
    assert "=== sandbox (network: shared with the host (for the agent's API)) ===" in t
    box = json.loads(t.split("for the agent's API)) ===\n", 1)[1].split("\n", 1)[0])
    assert box["network"] is True and box["role"] == "agent"
    if os.path.lexists("/etc/resolv.conf"):
        assert "/etc/resolv.conf" in box["read_only"]
    assert "LINEAGE: #0 baseline" in t  # the lineage view is in its prompt
    assert list(scratch.iterdir()) == []  # its scratch copy is gone


def test_an_edit_of_a_line_the_surface_does_not_own_is_outside_surface(tmp_path: Path) -> None:
    ctx = ToyContext(trials={0: {"train.py": "SEED = 0  # owned by the harness\nLR = 0.01\n",
                                 "evaluate.py": "x = 1\n"}})
    script = tmp_path / "seed_agent.py"
    script.write_text("import json, os, pathlib\n"
                      "pathlib.Path('train.py').write_text('SEED = 1  # owned by the harness\\nLR = 0.01\\n')\n"
                      "pathlib.Path(os.environ['ARLEDGER_AGENT_OUT'], 'proposal.json').write_text("
                      "json.dumps({'hypothesis': 'another seed'}))\n")
    backend = AgentBackend(f"{sys.executable} {script}", time_s=30)
    with pytest.raises(ProposalFailed) as info:
        backend.propose(ctx)
    e = info.value
    assert e.kind == "outside_surface" and "belongs to the harness" in e.message
    assert e.hypothesis == "another seed" and "+SEED = 1" in e.diff  # the campaign sends it to preflight


def test_a_forbidden_path_named_in_the_command_is_refused_at_setup(tmp_path: Path) -> None:
    secret = open_dir(tmp_path / "ledger") / "ledger.db"
    secret.write_text("x")
    with pytest.raises(AgentSetupError, match="must never see"):
        AgentBackend(f"{sys.executable} {STANDIN} {secret}", forbidden=(secret.parent,))
