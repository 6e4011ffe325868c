"""Every request is evidence: `arledger run --backend anthropic --max-usd X` against a scripted
Messages API server whose model keeps answering in text (no tool call, even after the nudge), with
an overloaded answer retried on the way. Every request the server served is in the ledger (the
failed conversations as `cancelled` trials with their transcripts, model, usage and cost), the
ledger's cost is the cost of every answer served, the budget counts the failed conversations and
stops the campaign, and `show` prints each trial's turns, requests and retries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.anthropic_backend import DEFAULT_PRICES
from arledger.cli import cli
from ledger import events as ev
from ledger.app import Ledger
from ledger.audit import verify
from ledger.events import Usage
from tests.agents.fake_anthropic import Error, FakeAnthropic, reply, text
from tests.tasks.runner_helpers import make_task, open_dir

MODEL = "claude-sonnet-4-6"
IN, OUT = 100_000, 1_000  # tokens per answer: $0.315 an answer at the list price


def test_max_usd_counts_every_request_of_failed_conversations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARLEDGER_CACHE", str(open_dir(tmp_path / "cache")))
    task = make_task(open_dir(tmp_path / "standin"))
    chat = reply(text("I would lower VALUE a little."), input_tokens=IN, output_tokens=OUT)
    # three conversations of two text answers each (the nudge between them) = 6 answers, $1.89 > $1.50;
    # the first answer of the second conversation is overloaded once and retried
    script = [chat, chat, Error(529, "overloaded_error", "Overloaded", retry_after="0"), chat, chat, chat, chat]
    url = f"sqlite:{tmp_path}/store/ledger.db"
    with FakeAnthropic(script) as api:
        res = CliRunner().invoke(cli, [
            "run", "--ledger", url, "--task", str(task), "--name", "spend", "--backend", "anthropic",
            "--model", MODEL, "--base-url", api.base_url, "--max-trials", "10", "--max-usd", "1.5", "--quiet"],
            env={"ANTHROPIC_API_KEY": "sk-test"}, catch_exceptions=False)
        api.raise_errors()
    assert res.exit_code == 0, res.output
    assert api.remaining == 0 and len(api.requests) == 7

    led = Ledger.open(url)
    try:
        props = sorted((r.event for r in led.events(types=(ev.TrialProposed,)) if r.event.kind == "proposal"),
                       key=lambda e: e.number)
        labels = {r.event.originator_id: r.event for r in led.events(types=(ev.OutcomeLabelled,))}
        assert len(props) == 3 and all(labels[p.originator_id].status == "cancelled" for p in props)
        assert all("no_tool_call" in labels[p.originator_id].reason for p in props)
        # every request the server served is recorded, retries included
        assert sum(p.usage.requests for p in props) == len(api.requests)
        assert [(p.usage.turns, p.usage.requests, p.usage.retries) for p in props] == [(2, 2, 0), (2, 3, 1), (2, 2, 0)]
        # and every answer's tokens and cost: the ledger's total is what the six answers cost
        price = DEFAULT_PRICES[MODEL]
        one = price.cost(Usage(input_tokens=IN, output_tokens=OUT))
        assert sum(p.cost_usd for p in props) == pytest.approx(6 * one)
        assert all(p.model == MODEL and p.backend == "anthropic" for p in props)
        for p in props:
            t = led.artifacts.get_text(p.transcript_sha)
            assert "=== failed: no_tool_call ===" in t and "I would lower VALUE" in t
        closed = [r.event for r in led.events(types=(ev.CampaignClosed,))]
        assert len(closed) == 1 and closed[0].reason == "LLM budget reached ($1.50)"
        assert verify(led).ok
    finally:
        led.close()
    shown = CliRunner().invoke(cli, ["show", "2", "--ledger", url], catch_exceptions=False).output
    assert f"2 turns, 3 requests (1 retried) · anthropic {MODEL}" in shown and f"${2 * one:.4f}" in shown
    status = json.loads(CliRunner().invoke(cli, ["status", "--json", "--ledger", url], catch_exceptions=False).output)
    assert status["campaigns"][0]["cost_usd"] == pytest.approx(6 * one)
