"""The campaign loop end to end, on a fast stand-in task, through the real runner and a real ledger:
noise-aware promotion with a confirmation run, the anthropic backend against a local Messages API
server (usage and cost land in the ledger; malformed answers become labelled outcomes), and a
SIGKILL of `arledger run` followed by `--resume`."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.anthropic_backend import AnthropicBackend
from agents.campaign import CampaignConfig, CampaignLoop
from arledger.cli import cli
from ledger import events as ev
from ledger.app import Ledger
from ledger.audit import init_ledger, verify
from tasks.spec import load_task
from tests.agents.fake_anthropic import Error, FakeAnthropic, reply, text, tool
from tests.tasks.runner_helpers import make_task, open_dir

ROOT = Path(__file__).resolve().parents[2]

KNOBS = '''
[[surfaces.opt.knobs]]
name = "VALUE"
file = "train.py"
type = "float"
range = [0.01, 10.0]
scale = "log"

[[surfaces.opt.knobs]]
name = "SLEEP"
file = "train.py"
type = "float"
range = [0.0, 5.0]
'''


def toy_task(root: Path, *, sleep: float = 0.0, confirmations: int = 1) -> Path:
    """The stand-in task (score = VALUE, lower is better) with declared knobs and a noise policy."""
    make_task(root, name="toy")
    toml = root / "task.toml"
    text_ = toml.read_text().replace("min_delta = 0.01", f"min_delta = 0.01\nconfirmation_runs = {confirmations}\n"
                                     "sd = 0.001\nk = 2.0")
    toml.write_text(text_ + KNOBS)
    if sleep:
        train = root / "recipe" / "train.py"
        train.write_text(train.read_text().replace("SLEEP = 0.0", f"SLEEP = {sleep}"))
    return root


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARLEDGER_CACHE", str(open_dir(tmp_path / "cache")))
    task = toy_task(open_dir(tmp_path / "toy"))
    led, _, _ = init_ledger(f"sqlite:{tmp_path}/ledger.db", tmp_path / "signing.key")
    yield led, load_task(task), tmp_path
    led.close()


def events_of(led: Ledger, cls: type) -> list:
    return [r.event for r in led.events() if isinstance(r.event, cls)]


def test_heuristic_campaign_confirms_an_improvement(env):
    led, spec, _ = env
    loop = CampaignLoop(led, spec, CampaignConfig(task=str(spec.root), name="c1", max_trials=3, seed=1))
    out = loop.run(poll_s=0.05)
    assert out.closed and "trial budget" in out.reason
    assert out.improved, out
    assert out.best < out.baseline
    promos = [e for e in events_of(led, ev.IncumbentPromoted) if e.number != 0]
    first = promos[0]
    # the promotion rests on the candidate and its confirmation run, and says so
    assert len(first.evidence) == 2 and "confirming" in first.reason
    confirmations = [e for e in events_of(led, ev.TrialProposed) if e.kind == "confirmation"]
    assert any(c.confirms == first.trial_id for c in confirmations)
    # the keep is the campaign's verdict, with its evidence — not a correction of a runner's label
    assert events_of(led, ev.TrialRelabelled) == []
    verdicts = [e for e in events_of(led, ev.TrialJudged) if e.originator_id == first.trial_id]
    assert [v.verdict for v in verdicts] == ["candidate", "keep"]
    keep = verdicts[-1]
    assert keep.actor == "agent:campaign" and [r.trial_id for r in keep.runs] == first.evidence
    assert keep.mean == pytest.approx(first.score) and keep.improvement > keep.threshold.value
    assert keep.incumbent_number == 0 and "k 2 x sd" in keep.threshold.rule and keep.policy
    labels = [e for e in events_of(led, ev.OutcomeLabelled) if e.originator_id == first.trial_id]
    assert [e.status for e in labels] == ["scored"]  # the runner's part ends at scored
    proposals = [e for e in events_of(led, ev.TrialProposed) if e.kind == "proposal"]
    assert len(proposals) == 3
    assert all(p.prompt_sha and led.artifacts.get_text(p.prompt_sha) for p in proposals)  # the exact view shown
    assert verify(led).ok
    # `arledger status` reports the promoted mean, with its trial and runs, beside the best single run
    url = f"sqlite:{env[2]}/ledger.db"
    res = CliRunner().invoke(cli, ["status", "--json", "--ledger", url], catch_exceptions=False)
    camp = json.loads(res.output)["campaigns"][0]
    last = promos[-1]
    assert camp["best"] == pytest.approx(last.score) and camp["best_trial"] == last.number and camp["confirmed"]
    assert camp["best_runs"] == len(last.evidence) == 2 and out.best == pytest.approx(last.score)
    res = CliRunner().invoke(cli, ["status", "--ledger", url], catch_exceptions=False)
    assert f"(#{last.number}, n=2)" in res.output


def test_a_campaign_measures_its_noise_and_uses_it_in_the_threshold(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARLEDGER_CACHE", str(open_dir(tmp_path / "cache")))
    task = toy_task(open_dir(tmp_path / "toy"))
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace("sd = 0.001", "sd = 0.001\nbaseline_reruns = 2\nreruns = [1.0, 1.001]"))
    train = task / "recipe" / "train.py"  # the score moves with the seed: VALUE + 0.004 x (7 seed mod 5 - 2)
    train.write_text(train.read_text().replace(
        "FORMAT.format(value=VALUE)", "FORMAT.format(value=VALUE + 0.004 * ((7 * int(os.environ['ARLEDGER_SEED'])) % 5 - 2))"))
    spec = load_task(task)
    led, _, _ = init_ledger(f"sqlite:{tmp_path}/ledger.db", tmp_path / "signing.key")
    try:
        out = CampaignLoop(led, spec, CampaignConfig(task=str(task), name="noisy", max_trials=3, seed=1)).run(poll_s=0.05)
        assert out.closed and out.improved, out
        proposed = {e.originator_id: e for e in events_of(led, ev.TrialProposed)}
        reruns = [e for e in proposed.values() if e.kind == "rerun"]
        assert [(e.seed, e.parent_id == ev.trial_id_for(ev.campaign_id_for("noisy"), 0)) for e in reruns] == \
            [(1001, True), (1002, True)]  # the baseline on 2 more seeds, before any proposal
        first_proposal = min(e.originator_version for e in proposed.values() if e.kind == "proposal")
        assert first_proposal >= 0
        scores = {e.originator_id: e.score for e in events_of(led, ev.TrialEvaluated)}
        base_runs = [scores[ev.trial_id_for(ev.campaign_id_for("noisy"), n)] for n in (0, 1, 2)]
        assert base_runs == pytest.approx([1.0, 1.0, 1.008])
        noise = events_of(led, ev.NoiseMeasured)
        assert noise[0].source == "declared" and noise[0].values == [1.0, 1.001] and noise[0].sd == 0.001
        pooled = noise[1]
        assert pooled.source == "pooled" and pooled.values[:2] == [1.0, 1.001] and len(pooled.trials) == 3
        assert pooled.values[2:] == pytest.approx(base_runs)
        assert pooled.sd == pytest.approx(((0.001 ** 2 + 2 * statistics.variance(base_runs)) / 3) ** 0.5)
        # the baseline is promoted with the mean of its three runs
        base_promo = next(e for e in events_of(led, ev.IncumbentPromoted) if e.number == 0)
        assert base_promo.score == pytest.approx(statistics.fmean(base_runs)) and len(base_promo.evidence) == 3
        # every verdict states the sd it used, how many runs it rests on, and where it came from
        verdicts = events_of(led, ev.TrialJudged)
        assert verdicts and all(v.threshold.sd_source == "pooled" for v in verdicts)
        first = verdicts[0].threshold
        assert (first.sd, first.sd_runs) == (pytest.approx(pooled.sd), 5) and "over 5 runs [pooled]" in first.rule
        assert first.value == pytest.approx(max(0.01, 2 * pooled.sd))
        # the confirmation run of a candidate is measured too, before its verdict
        if any(v.verdict == "keep" and len(v.runs) > 1 for v in verdicts):
            assert len(noise) >= 3 and noise[-1].source == "pooled" and len(noise[-1].trials) >= 5
        assert verify(led).ok
    finally:
        led.close()


def test_anthropic_backend_in_a_campaign(env):
    led, spec, _ = env

    def good(req):
        return reply(tool("edit_file", path="train.py", old_string="VALUE = 1.0", new_string="VALUE = 0.5"),
                     input_tokens=1200, output_tokens=80, cache_read=900)

    script = [
        Error(529, "overloaded_error", "Overloaded"),  # retried, counted
        reply(tool("view_lineage"), input_tokens=1000, output_tokens=20, cache_write=800),
        good,
        reply(tool("submit_trial", hypothesis="Halve VALUE: lower is better", expected_delta=-0.5),
              input_tokens=1300, output_tokens=40, cache_read=900),
        # second proposal: two text-only answers (no tool call, after one nudge) -> labelled, loop goes on
        reply(text("I think we should lower VALUE."), input_tokens=500, output_tokens=10),
        reply(text("Yes, lower VALUE."), input_tokens=520, output_tokens=10),
        reply(text("Still thinking."), input_tokens=500, output_tokens=10),
        reply(text("Lower it."), input_tokens=520, output_tokens=10),
        reply(text("Hmm."), input_tokens=500, output_tokens=10),
        reply(text("Done."), input_tokens=520, output_tokens=10),
    ]
    with FakeAnthropic(script) as server:
        backend = AnthropicBackend(api_key="test-key", base_url=server.base_url, backoff_s=0.01, model="claude-sonnet-4-6")
        cfg = CampaignConfig(task=str(spec.root), name="llm", backend="anthropic", max_trials=2, confirmations=0)
        loop = CampaignLoop(led, spec, cfg, backend=backend)
        out = loop.run(poll_s=0.05)
    assert out.closed
    props = [e for e in events_of(led, ev.TrialProposed) if e.kind == "proposal"]
    assert len(props) == 2
    good_p = next(p for p in props if "Halve VALUE" in p.hypothesis)
    assert good_p.usage.input_tokens == 3500 and good_p.usage.output_tokens == 140
    assert good_p.usage.cache_read_tokens == 1800 and good_p.usage.retries == 1
    assert good_p.cost_usd > 0 and good_p.backend == "anthropic" and good_p.model == "claude-sonnet-4-6"
    labels = {e.originator_id: e for e in events_of(led, ev.OutcomeLabelled)}
    bad_p = next(p for p in props if p is not good_p)
    assert labels[bad_p.originator_id].status == "cancelled"
    assert "no_tool_call" in labels[bad_p.originator_id].reason
    assert bad_p.usage.input_tokens > 0  # the failed attempt's usage is recorded too
    assert out.improved  # VALUE 0.5 beats 1.0 by far more than the threshold
    assert verify(led).ok


def _run_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "arledger.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_mid_campaign_then_resume(tmp_path):
    open_dir(tmp_path)
    task = toy_task(open_dir(tmp_path / "toy"), sleep=0.6)
    url = f"sqlite:{tmp_path}/ledger.db"
    args = ["run", "--ledger", url, "--task", str(task), "--name", "killed", "--max-trials", "6", "--quiet"]
    p = _run_cli(args, tmp_path)
    # wait until a few trials have been proposed, then kill it hard in the middle of things
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        if not (tmp_path / "ledger.db").exists():
            continue
        led = Ledger.open(url)
        n = len([r for r in led.events() if isinstance(r.event, ev.TrialProposed) and r.event.kind == "proposal"])
        led.close()
        if n >= 3:
            break
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    q = _run_cli(["run", "--ledger", url, "--resume", "--quiet"], tmp_path)
    out, _ = q.communicate(timeout=300)
    assert q.returncode == 0, out
    led = Ledger.open(url)
    proposed = [e for e in events_of(led, ev.TrialProposed)]
    props = [e for e in proposed if e.kind == "proposal"]
    assert len(props) == 6, [(e.number, e.kind) for e in proposed]  # exactly the budget
    numbers = [e.number for e in proposed]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(numbers)))
    evaluated = Counter(e.originator_id for e in events_of(led, ev.TrialEvaluated))
    assert all(c == 1 for c in evaluated.values()), evaluated  # no trial ran to completion twice
    assert any(isinstance(e, ev.CampaignResumed) for e in events_of(led, ev.CampaignResumed))
    assert [e for e in events_of(led, ev.CampaignClosed)]
    assert verify(led).ok
    led.close()
