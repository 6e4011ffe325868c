"""The Anthropic backend against a local server that speaks the Messages API, through the real SDK."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from agents.anthropic_backend import DEFAULT_PRICES, AnthropicBackend, default_prices
from agents.base import MissingAPIKey, Proposal, ProposalFailed
from agents.prices import Price
from agents.tool_loop import NUDGE
from ledger import diffs
from tests.agents.fake_anthropic import (
    Error,
    FakeAnthropic,
    api_key,
    reply,
    result_text,
    text,
    tool,
    tool_results,
)
from tests.agents.toy_context import BASE, EVALUATE, TRAIN, ToyContext

# the SDK warns that the default model is deprecated; that is the SDK's news, not this test's
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


FAST = {"backoff_s": 0.001, "timeout_s": 10}


@contextmanager
def served(steps: list[Any], **kwargs: Any) -> Iterator[tuple[FakeAnthropic, AnthropicBackend]]:
    with FakeAnthropic(steps) as api:
        backend = AnthropicBackend(api_key="sk-test", base_url=api.base_url, **{**FAST, **kwargs})
        try:
            yield api, backend
        finally:
            backend.close()
        api.raise_errors()


def edit_lr(new: str = "LR = 0.02") -> dict[str, Any]:
    return reply(tool("edit_file", path="train.py", old_string="LR = 0.01", new_string=new))


def submit(**kw: Any) -> dict[str, Any]:
    args = {"hypothesis": "A larger learning rate converges further in 100 steps.", "expected_delta": -0.02}
    return reply(tool("submit_trial", **{**args, **kw}))


def expect_failure(steps: list[Any], kind: str, ctx: ToyContext | None = None, **kwargs: Any
                   ) -> tuple[ProposalFailed, FakeAnthropic]:
    with served(steps, **kwargs) as (api, backend):
        with pytest.raises(ProposalFailed) as info:
            backend.propose(ctx or ToyContext())
    assert info.value.kind == kind, info.value.message
    assert info.value.transcript
    return info.value, api


# ---------------------------------------------------------------------------------------------
# a good trial


def test_good_trial_returns_a_diff_that_applies_and_sums_usage_and_caches_the_static_prefix():
    def after_read(body: dict[str, Any]) -> dict[str, Any]:
        # the script looks at what read_file returned before it edits
        assert "LR = 0.01" in result_text(body)
        return reply(tool("edit_file", path="train.py", old_string="LR = 0.01", new_string="LR = 0.02"),
                     input_tokens=10, output_tokens=30, cache_read=900, cache_write=0)

    def after_check(body: dict[str, Any]) -> dict[str, Any]:
        assert result_text(body).startswith("ok: train.py compile")
        return reply(tool("submit_trial", hypothesis="A larger learning rate converges further.",
                          expected_delta=-0.02, notes="first try"),
                     input_tokens=10, output_tokens=40, cache_read=1000, cache_write=50)

    steps = [
        reply(text("Let me look at the lineage."), tool("view_lineage"),
              input_tokens=50, output_tokens=10, cache_write=1500),
        reply(tool("read_file", path="train.py"), input_tokens=20, output_tokens=15, cache_read=1500),
        after_read,
        reply(tool("syntax_check"), input_tokens=10, output_tokens=5, cache_read=950, cache_write=30),
        after_check,
    ]
    ctx = ToyContext()
    with served(steps) as (api, backend):
        proposal = backend.propose(ctx)

    assert isinstance(proposal, Proposal)
    assert proposal.parent == 0
    assert proposal.hypothesis == "A larger learning rate converges further."
    assert proposal.expected_delta == -0.02
    assert proposal.notes == "first try"
    assert proposal.backend == "anthropic" and proposal.model == "claude-sonnet-4-5"
    assert "-LR = 0.01\n+LR = 0.02\n" in proposal.diff
    applied = diffs.apply(ctx.trial_files(0), proposal.diff)
    assert applied["train.py"] == TRAIN.replace("LR = 0.01", "LR = 0.02")
    assert applied["evaluate.py"] == EVALUATE

    u = proposal.usage
    assert (u.input_tokens, u.output_tokens) == (100, 100)
    assert (u.cache_read_tokens, u.cache_write_tokens) == (4350, 1580)
    assert (u.turns, u.requests, u.retries) == (5, 5, 0)
    price = DEFAULT_PRICES["claude-sonnet-4-5"]
    expected = (100 * price.input + 100 * price.output + 4350 * price.cache_read + 1580 * price.cache_write) / 1e6
    assert proposal.cost_usd == pytest.approx(expected)

    # what went over the wire
    assert len(api.requests) == 5
    assert all(api_key(r) == "sk-test" for r in api.requests)
    first = api.bodies[0]
    assert first["model"] == "claude-sonnet-4-5"
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "opt specialist" in first["system"][0]["text"] and "val_loss" in first["system"][0]["text"]
    assert "You own the optimizer" in first["system"][0]["text"]
    assert "LINEAGE" not in first["system"][0]["text"]  # the dynamic part is not in the cached prefix
    names = [t["name"] for t in first["tools"]]
    assert names[:5] == ["view_lineage", "query_trials", "read_file", "trial_diff", "edit_file"]
    assert {"syntax_check", "size_check", "submit_trial"} <= set(names)
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in t for t in first["tools"][:-1])
    assert "LINEAGE" in first["messages"][0]["content"][0]["text"]
    assert "thinking" not in first
    # tool results came back, in order, and the whole conversation is resent each turn
    assert "LINEAGE" in result_text(api.bodies[1])
    assert tool_results(api.bodies[1])[0]["is_error"] is False
    assert result_text(api.bodies[3]).startswith("edited train.py")
    assert len(api.bodies[4]["messages"]) == 9
    # the system prompt is byte-identical on every turn (so the cache hits)
    assert len({b["system"][0]["text"] for b in api.bodies}) == 1
    # one moving cache breakpoint on the last user block
    last = api.bodies[4]["messages"]
    assert last[-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert not any("cache_control" in c for m in last[:-1] for c in m["content"] if isinstance(c, dict))

    t = proposal.transcript
    for piece in ("=== system ===", "[tool_use view_lineage", "[tool_use edit_file", "LINEAGE",
                  "=== submitted", "cost_usd="):
        assert piece in t


def test_unknown_model_costs_zero_with_a_note_and_custom_prices_apply():
    steps = [edit_lr(), submit()]
    with served(steps, model="claude-unknown-9") as (api, backend):
        proposal = backend.propose(ToyContext())
    assert proposal.cost_usd == 0.0
    assert "no price known for model 'claude-unknown-9'" in proposal.transcript
    assert api.bodies[0]["model"] == "claude-unknown-9"

    table = default_prices().with_prices({"claude-unknown-9": Price(1.0, 2.0, 0.0, 0.0)})
    assert table.lookup("claude-unknown-9") == Price(1.0, 2.0, 0.0, 0.0)
    assert table.lookup("claude-sonnet-4-5-20250929") == DEFAULT_PRICES["claude-sonnet-4-5"]
    assert table.lookup("claude-opus-4") == DEFAULT_PRICES["claude-opus-4-0"]
    assert table.lookup("claude-opus-4-9") is None  # never priced as a cousin
    with served([edit_lr(), submit()], model="claude-unknown-9", prices=table) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert proposal.cost_usd == pytest.approx((200 * 1.0 + 40 * 2.0) / 1e6)


def test_other_tools_and_their_errors_reach_the_model():
    def check(body: dict[str, Any]) -> dict[str, Any]:
        results = tool_results(body)
        assert [r["is_error"] for r in results] == [False, False, False, True, True, True, True, False]
        texts = [r["content"] for r in results]
        assert texts[0] == "result of 'status crash'"
        assert "STEPS = 200" in texts[1]  # trial 1's code
        assert "+STEPS = 200" in texts[2]
        assert "not editable" in texts[3] and "train.py" in texts[3]
        assert "not found" in texts[4]
        assert "not unique" in texts[5] and "2 matches" in texts[5]
        assert "unknown tool" in texts[6]
        assert texts[7].startswith("ok:")
        return submit()

    steps = [
        reply(
            tool("query_trials", query="status crash"),
            tool("read_file", path="train.py", trial=1),
            tool("trial_diff", a=0, b=1),
            tool("edit_file", path="evaluate.py", old_string="return x", new_string="return 0"),
            tool("edit_file", path="train.py", old_string="LR = 0.99", new_string="LR = 0.5"),
            tool("edit_file", path="train.py", old_string="STEPS", new_string="N_STEPS"),
            tool("rm_rf"),
            tool("size_check"),
        ),
        check,
    ]
    ctx = ToyContext()
    # nothing was edited successfully, and the one edit outside the surface is named
    failure, api = expect_failure(steps, "outside_surface", ctx)
    assert "no accepted edits" in failure.message and "evaluate.py" in failure.message
    assert ctx.queries == ["status crash"]
    assert failure.usage.turns == 2


def test_syntax_check_reports_line_numbers():
    def check(body: dict[str, Any]) -> dict[str, Any]:
        out = result_text(body)
        assert out.startswith("syntax errors:") and "train.py:3:" in out
        return submit()

    steps = [edit_lr("LR = = 0.02"), reply(tool("syntax_check")), check]
    with served(steps) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert "+LR = = 0.02" in proposal.diff  # the loop's preflight labels it; the backend reports it


def test_set_parent_restarts_the_working_copy_and_the_diff_is_against_that_parent():
    def after_set(body: dict[str, Any]) -> dict[str, Any]:
        assert "restarted from trial 2" in result_text(body) and "discarded" in result_text(body)
        return reply(tool("edit_file", path="train.py", old_string="LR = 0.05", new_string="LR = 0.03"))

    steps = [edit_lr(), reply(tool("set_parent", trial=2)), after_set, submit()]
    ctx = ToyContext()
    with served(steps) as (api, backend):
        proposal = backend.propose(ctx)
    assert proposal.parent == 2
    assert diffs.apply(ctx.trial_files(2), proposal.diff)["train.py"] == TRAIN.replace("LR = 0.01", "LR = 0.03")


def test_submit_naming_another_parent_rebases_the_edits_when_they_apply():
    ctx = ToyContext()
    ctx.trials[3] = {**BASE, "evaluate.py": EVALUATE.replace("return x", "return float(x)")}
    with served([edit_lr(), submit(parent=3)]) as (api, backend):
        proposal = backend.propose(ctx)
    assert proposal.parent == 3
    assert diffs.touched(proposal.diff) == ["train.py"]
    new = diffs.apply(ctx.trial_files(3), proposal.diff)
    assert "LR = 0.02" in new["train.py"] and "float(x)" in new["evaluate.py"]


def test_thinking_budget_is_passed():
    with served([edit_lr(), submit()], thinking_budget=2048, max_tokens=4096) as (api, backend):
        backend.propose(ToyContext())
    assert api.bodies[0]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert api.bodies[0]["max_tokens"] == 4096 + 2048
    with pytest.raises(ValueError, match="1024"):
        AnthropicBackend(api_key="sk-test", thinking_budget=100)
    with served([edit_lr(), submit()], adaptive_thinking=True) as (api, backend):
        backend.propose(ToyContext())
    assert api.bodies[0]["thinking"] == {"type": "adaptive"}
    assert api.bodies[0]["max_tokens"] == 8192


# ---------------------------------------------------------------------------------------------
# malformed outcomes


def test_submit_on_a_parent_the_edits_do_not_apply_to_is_invalid_diff():
    failure, _ = expect_failure([edit_lr(), submit(parent=2)], "invalid_diff")
    assert "parent 2" in failure.message and "do not apply" in failure.message
    assert failure.usage.turns == 2 and failure.usage.output_tokens == 40
    assert failure.hypothesis.startswith("A larger learning rate")


def test_an_edit_outside_the_surface_is_refused_at_edit_time_and_the_model_can_correct_it():
    def refused(body: dict[str, Any]) -> dict[str, Any]:
        r = tool_results(body)[0]
        assert r["is_error"] is True
        assert "edit refused" in r["content"] and "SEED" in r["content"] and "harness" in r["content"]
        assert "unchanged" in r["content"]
        return reply(tool("read_file", path="train.py"))

    def unchanged(body: dict[str, Any]) -> dict[str, Any]:
        assert "SEED = 0  # owned" in result_text(body)  # the working copy kept the harness line
        return edit_lr()

    steps = [
        reply(tool("edit_file", path="train.py", old_string="SEED = 0", new_string="SEED = 1")),
        refused, unchanged, submit(),
    ]
    with served(steps) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert "+LR = 0.02" in proposal.diff and "SEED = 1" not in proposal.diff


def test_a_submission_whose_every_edit_was_refused_is_outside_surface_with_the_refused_diff():
    steps = [
        reply(tool("edit_file", path="train.py", old_string="SEED = 0", new_string="SEED = 1")),
        submit(),
    ]
    failure, _ = expect_failure(steps, "outside_surface")
    assert "SEED" in failure.message and "harness" in failure.message and "no accepted edits" in failure.message
    assert "+SEED = 1" in failure.diff and failure.parent == 0  # what was attempted, for preflight to label
    assert failure.usage.turns == 2
    # the failure keeps what the model said it would do, and who said it
    assert failure.hypothesis.startswith("A larger learning rate") and failure.expected_delta == -0.02
    assert failure.model == "claude-sonnet-4-5" and failure.backend == "anthropic"
    assert "[tool_use edit_file" in failure.transcript and "edit refused" in failure.transcript


def test_tool_input_that_is_not_an_object_is_a_tool_error_with_no_warnings(capfd: pytest.CaptureFixture[str]):
    def check(body: dict[str, Any]) -> dict[str, Any]:
        results = tool_results(body)
        assert [r["is_error"] for r in results] == [True, True]
        assert all("must be a JSON object" in r["content"] for r in results)
        # the API takes back only objects: the bad input was replaced in the echoed turn
        echoed = body["messages"][-2]["content"]
        assert [c["input"] for c in echoed] == [{}, {}]
        return edit_lr()

    bad = [{"type": "tool_use", "name": "edit_file", "input": "LR = 0.02"},
           {"type": "tool_use", "name": "read_file", "input": ["train.py"]}]
    with served([reply(*bad), check, submit()]) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert "+LR = 0.02" in proposal.diff
    assert "] LR = 0.02\n" in proposal.transcript  # the transcript keeps what the model really sent
    err = capfd.readouterr().err
    assert "Pydantic" not in err and "Warning" not in err, err


def test_an_empty_answer():
    failure, _ = expect_failure([reply(output_tokens=0)], "empty")
    assert "empty answer" in failure.message
    assert failure.usage.turns == 1 and failure.usage.input_tokens == 100


def test_a_refusal_by_stop_reason_and_by_text():
    failure, _ = expect_failure([reply(text("..."), stop_reason="refusal")], "refused")
    assert failure.usage.requests == 1
    failure, api = expect_failure(
        [reply(tool("view_lineage")), reply(text("I'm sorry, but I can't help with modifying this code."))],
        "refused")
    assert "declined" in failure.message and failure.usage.turns == 2
    assert len(api.requests) == 2  # no nudge after a refusal


def test_a_huge_diff_is_too_large():
    big = "LR = 0.02\n" + "".join(f"# padding line {i} " + "x" * 60 + "\n" for i in range(1200))
    failure, _ = expect_failure([edit_lr(big), submit()], "too_large")
    assert "65536-byte limit" in failure.message
    assert len(failure.diff) > 65536


def test_no_tool_call_after_one_nudge():
    steps = [reply(text("I would raise the learning rate.")), reply(text("Raising LR to 0.02 is my proposal."))]
    failure, api = expect_failure(steps, "no_tool_call")
    assert len(api.requests) == 2
    nudge = api.bodies[1]["messages"][-1]
    assert nudge["role"] == "user" and nudge["content"][0]["text"] == NUDGE
    assert "use the tools and finish with submit_trial" in NUDGE
    assert failure.usage.turns == 2 and failure.usage.output_tokens == 40


def test_a_nudged_model_can_still_submit():
    steps = [reply(text("I would raise the learning rate.")), edit_lr(), submit()]
    with served(steps) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert proposal.usage.turns == 3


def test_turn_limit():
    steps = [reply(tool("view_lineage")) for _ in range(3)]
    failure, api = expect_failure(steps, "turn_limit", max_turns=3)
    assert failure.usage.turns == 3 and len(api.requests) == 3
    assert "3 turns" in failure.message
    # the model is told when turns run out
    assert "1 turn(s) left" in api.bodies[2]["messages"][-1]["content"][-1]["text"]


# ---------------------------------------------------------------------------------------------
# retries and API errors


def test_overloaded_then_success_counts_one_retry():
    steps = [Error(529, "overloaded_error", "Overloaded"), edit_lr(), submit()]
    with served(steps) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert proposal.usage.retries == 1
    assert proposal.usage.requests == 3 and proposal.usage.turns == 2
    assert api.bodies[0] == api.bodies[1]  # the same request was resent
    assert "retry 1/4 after 529 overloaded_error" in proposal.transcript


def test_rate_limit_honours_retry_after():
    slept: list[float] = []
    steps = [Error(429, "rate_limit_error", "slow down", retry_after="0.25"),
             Error(500, "api_error", "boom"), edit_lr(), submit()]
    with served(steps, backoff_s=0.002, sleep=slept.append) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert slept == [0.25, 0.004]  # retry-after honoured, then exponential backoff
    assert proposal.usage.retries == 2 and proposal.usage.requests == 4


def test_retries_exhausted_is_api_error_with_usage():
    steps = [edit_lr()] + [Error(529) for _ in range(3)]
    failure, api = expect_failure(steps, "api_error", max_retries=2)
    assert "after 2 retries" in failure.message and "529" in failure.message
    assert (failure.usage.turns, failure.usage.requests, failure.usage.retries) == (1, 4, 2)
    assert failure.usage.input_tokens == 100


def test_non_retryable_error_is_api_error_at_once():
    failure, api = expect_failure([Error(400, "invalid_request_error", "bad tools")], "api_error")
    assert "400" in failure.message and "bad tools" in failure.message
    assert failure.usage.retries == 0 and len(api.requests) == 1


def test_no_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey) as info:
        AnthropicBackend()
    assert isinstance(info.value, ProposalFailed) and info.value.kind == "no_api_key"
    assert "ANTHROPIC_API_KEY" in str(info.value) and "--backend heuristic" in str(info.value)


def test_key_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    with FakeAnthropic([edit_lr(), submit()]) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-env")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        backend = AnthropicBackend(**FAST)
        assert "sk-env" not in repr(backend)
        backend.propose(ToyContext())
        backend.close()
    assert api_key(api.requests[0]) == "sk-env"


def test_connection_errors_are_retried_then_api_error():
    backend = AnthropicBackend(api_key="sk-test", base_url="http://127.0.0.1:1", max_retries=1, **FAST)
    try:
        with pytest.raises(ProposalFailed) as info:
            backend.propose(ToyContext())
    finally:
        backend.close()
    assert info.value.kind == "api_error" and "connection error" in info.value.message
    assert (info.value.usage.requests, info.value.usage.retries, info.value.usage.turns) == (2, 1, 0)
