"""`arledger run --backend openai --base-url http://127.0.0.1:PORT/v1 --model M` end to end: a campaign
on the stand-in task whose specialist is a scripted conversation served by a local Chat Completions
server, through the real ``openai`` SDK, the real runner and a real ledger. The proposals' usage
and cost land in the ledger; an edit outside the specialist's region (or moving its markers) is refused at
edit time with the task's own reason, and the model's correction is what gets trained."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from arledger.cli import cli
from ledger import events as ev
from ledger.app import Ledger
from ledger.audit import verify
from tests.agents.fake_openai import Error, FakeOpenAI, call, completion, result_text, tool_messages
from tests.tasks.runner_helpers import make_task, open_dir

MODEL = "local-coder-7b"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARLEDGER_CACHE", str(open_dir(tmp_path / "cache")))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return tmp_path


def script() -> list[Any]:
    def refused(body: dict[str, Any]) -> dict[str, Any]:
        outside, markers = (m["content"] for m in tool_messages(body))
        # the task's own region rules, at edit time, with the reason: lines outside the region, and
        # an edit inside it that would move the region's markers
        assert outside.startswith("error: edit refused") and "outside region(s) opt" in outside, outside
        assert markers.startswith("error: edit refused") and "markers" in markers, markers
        return completion(call("edit_file", path="train.py", old_string="VALUE = 1.0", new_string="VALUE = 0.5"),
                          prompt_tokens=1500, completion_tokens=30, cached_tokens=1000)

    def halve(body: dict[str, Any]) -> dict[str, Any]:
        current = re.search(r"^VALUE = ([0-9.]+)$", result_text(body), re.M)
        assert current, result_text(body)
        value = float(current.group(1))
        return completion(call("edit_file", path="train.py", old_string=f"VALUE = {current.group(1)}",
                               new_string=f"VALUE = {value / 2}"), prompt_tokens=1100, completion_tokens=30)

    return [
        # proposal 1: a look at the lineage, an edit outside the region (refused), the correction, submit
        completion(call("view_lineage"), prompt_tokens=1000, completion_tokens=20),
        completion(call("edit_file", path="train.py", old_string='REPORT_PORT = ', new_string='REPORT_PORT = 0 or '),
                   call("edit_file", path="train.py", old_string="SLEEP = 0.0\n",
                        new_string="SLEEP = 0.0\n# endregion\n# region: opt\n"),
                   prompt_tokens=1200, completion_tokens=25, cached_tokens=900),
        refused,
        completion(call("submit_trial", hypothesis="Halve VALUE: lower is better", expected_delta=-0.5),
                   prompt_tokens=1600, completion_tokens=40, cached_tokens=1400),
        # proposal 2: rate limited once, then it reads its working copy and halves VALUE again
        Error(429, "requests", "Rate limit reached", retry_after="0", code="rate_limit_exceeded"),
        completion(call("read_file", path="train.py"), prompt_tokens=1000, completion_tokens=15),
        halve,
        completion(call("submit_trial", hypothesis="Halve VALUE again", expected_delta=-0.25),
                   prompt_tokens=1200, completion_tokens=40),
    ]


def test_arledger_run_backend_openai_against_a_local_server(workdir: Path):
    task = make_task(open_dir(workdir / "standin"))
    url = f"sqlite:{workdir}/ledger.db"
    with FakeOpenAI(script(), require_key=False) as api:
        res = CliRunner().invoke(cli, [
            "run", "--ledger", url, "--task", str(task), "--name", "oai", "--backend", "openai",
            "--base-url", f"{api.base_url}/v1", "--model", MODEL, "--max-trials", "2", "--confirmations", "0",
            "--price-in", "0.5", "--price-out", "2", "--quiet"], catch_exceptions=False)
        api.raise_errors()
    assert res.exit_code == 0, res.output
    assert api.remaining == 0 and len(api.requests) == 8
    assert {b["model"] for b in api.bodies} == {MODEL}

    led = Ledger.open(url)
    try:
        props = sorted((r.event for r in led.events() if isinstance(r.event, ev.TrialProposed)
                        and r.event.kind == "proposal"), key=lambda e: e.number)
        assert [p.hypothesis for p in props] == ["Halve VALUE: lower is better", "Halve VALUE again"]
        first, second = props
        assert first.backend == "openai" and first.model == MODEL and first.expected_delta == -0.5
        u = first.usage
        assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (5300 - 3300, 3300, 115)
        assert (u.turns, u.requests, u.retries) == (4, 4, 0)
        # --price-in/--price-out price every token of this model (cached input at the input price)
        assert first.cost_usd == pytest.approx((5300 * 0.5 + 115 * 2.0) / 1e6)
        assert (second.usage.turns, second.usage.requests, second.usage.retries) == (3, 4, 1)
        assert second.cost_usd == pytest.approx((3300 * 0.5 + 85 * 2.0) / 1e6)
        # what was trained is the correction, never the refused edit
        assert "+VALUE = 0.5" in led.artifacts.get_text(first.diff_sha) and "REPORT_PORT" not in \
            led.artifacts.get_text(first.diff_sha)
        scores = {r.event.originator_id: r.event.score for r in led.events() if isinstance(r.event, ev.TrialEvaluated)}
        assert scores[first.originator_id] == pytest.approx(0.5)
        # the second halves whichever code it was given: the incumbent at the time it was asked
        assert scores[second.originator_id] == pytest.approx(scores[second.parent_id] / 2)
        # the transcript is stored, and it shows the refusal
        transcript = led.artifacts.get_text(first.transcript_sha)
        assert "edit refused" in transcript and "outside region(s) opt" in transcript
        assert verify(led).ok
    finally:
        led.close()


def test_arledger_run_backend_openai_without_a_key_for_a_remote_server(workdir: Path):
    task = make_task(open_dir(workdir / "standin"))
    res = CliRunner().invoke(cli, ["run", "--ledger", f"sqlite:{workdir}/ledger.db", "--task", str(task),
                                   "--backend", "openai", "--base-url", "https://openrouter.ai/api/v1",
                                   "--model", "qwen/qwen3-coder", "--quiet"])
    assert res.exit_code == 1
    assert "OPENAI_API_KEY" in res.output and "Traceback" not in res.output
    assert res.output.count("Error:") == 1
