"""The OpenAI backend against a local server that speaks the Chat Completions API, through the real
``openai`` SDK: the same tools, checks, retries and accounting as the Anthropic backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from agents.base import MissingAPIKey, Proposal, ProposalFailed
from agents.openai_backend import DEFAULT_PRICES, NO_KEY, OpenAIBackend, default_prices, is_local
from agents.prices import ANY_MODEL, Price
from agents.tool_loop import NUDGE
from ledger import diffs
from tests.agents.fake_openai import (
    Error,
    FakeOpenAI,
    call,
    completion,
    raw_call,
    result_text,
    tool_messages,
)
from tests.agents.toy_context import EVALUATE, TRAIN, ToyContext

FAST = {"backoff_s": 0.001, "timeout_s": 10}


@pytest.fixture(autouse=True)
def no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key or base URL in the environment must not reach these servers (tests set their own)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
MODEL = "qwen3-coder-30b"  # what a local server might serve: no list price


@contextmanager
def served(steps: list[Any], *, require_key: bool = False, **kwargs: Any
           ) -> Iterator[tuple[FakeOpenAI, OpenAIBackend]]:
    with FakeOpenAI(steps, require_key=require_key) as api:
        backend = OpenAIBackend(base_url=api.base_url + "/v1", **{"model": MODEL, **FAST, **kwargs})
        try:
            yield api, backend
        finally:
            backend.close()
        api.raise_errors()


def edit_lr(new: str = "LR = 0.02", **usage: Any) -> dict[str, Any]:
    return completion(call("edit_file", path="train.py", old_string="LR = 0.01", new_string=new), **usage)


def submit(**kw: Any) -> dict[str, Any]:
    args = {"hypothesis": "A larger learning rate converges further in 100 steps.", "expected_delta": -0.02}
    return completion(call("submit_trial", **{**args, **kw}))


def expect_failure(steps: list[Any], kind: str, ctx: ToyContext | None = None, **kwargs: Any
                   ) -> tuple[ProposalFailed, FakeOpenAI]:
    with served(steps, **kwargs) as (api, backend):
        with pytest.raises(ProposalFailed) as info:
            backend.propose(ctx or ToyContext())
    failure = info.value
    assert failure.kind == kind, failure.message
    assert failure.transcript and failure.model == kwargs.get("model", MODEL) and failure.backend == "openai"
    return failure, api


# ---------------------------------------------------------------------------------------------
# a good trial


def test_good_trial_returns_a_diff_that_applies_and_sums_usage_with_cached_input_split_out():
    def after_read(body: dict[str, Any]) -> dict[str, Any]:
        assert "LR = 0.01" in result_text(body)
        return edit_lr(prompt_tokens=900, completion_tokens=30, cached_tokens=800)

    def after_check(body: dict[str, Any]) -> dict[str, Any]:
        assert result_text(body).startswith("ok: train.py compile")
        return completion(call("submit_trial", hypothesis="A larger learning rate converges further.",
                               expected_delta=-0.02, notes="first try"),
                          prompt_tokens=1000, completion_tokens=40, cached_tokens=900)

    steps = [
        completion(call("view_lineage"), content="Let me look at the lineage.", prompt_tokens=700,
                   completion_tokens=10),
        completion(call("read_file", path="train.py"), prompt_tokens=800, completion_tokens=15, cached_tokens=600),
        after_read,
        completion(call("syntax_check"), prompt_tokens=950, completion_tokens=5, cached_tokens=850),
        after_check,
    ]
    ctx = ToyContext()
    with served(steps, model="gpt-4.1-mini") as (api, backend):
        proposal = backend.propose(ctx)

    assert isinstance(proposal, Proposal)
    assert proposal.parent == 0 and proposal.expected_delta == -0.02 and proposal.notes == "first try"
    assert proposal.hypothesis == "A larger learning rate converges further."
    assert proposal.backend == "openai" and proposal.model == "gpt-4.1-mini"
    assert "-LR = 0.01\n+LR = 0.02\n" in proposal.diff
    applied = diffs.apply(ctx.trial_files(0), proposal.diff)
    assert applied["train.py"] == TRAIN.replace("LR = 0.01", "LR = 0.02") and applied["evaluate.py"] == EVALUATE

    u = proposal.usage
    # prompt_tokens include the cached ones: 4350 prompt tokens, 3150 of them read from the cache
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (1200, 3150, 0, 100)
    assert (u.turns, u.requests, u.retries) == (5, 5, 0)
    price = DEFAULT_PRICES["gpt-4.1-mini"]
    assert proposal.cost_usd == pytest.approx((1200 * price.input + 3150 * price.cache_read + 100 * price.output) / 1e6)

    # what went over the wire
    first = api.bodies[0]
    assert first["model"] == "gpt-4.1-mini"
    assert first["max_tokens"] == 8192 and "max_completion_tokens" not in first  # a non-OpenAI server
    assert first["messages"][0]["role"] == "system" and "opt specialist" in first["messages"][0]["content"]
    assert "LINEAGE" not in first["messages"][0]["content"]  # the static prefix stays cacheable
    assert first["messages"][1]["role"] == "user" and "LINEAGE" in first["messages"][1]["content"]
    assert [t["type"] for t in first["tools"]] == ["function"] * 9
    names = [t["function"]["name"] for t in first["tools"]]
    assert names[:5] == ["view_lineage", "query_trials", "read_file", "trial_diff", "edit_file"]
    assert names[-1] == "submit_trial"
    assert first["tools"][4]["function"]["parameters"]["required"] == ["path", "old_string", "new_string"]
    # each call is answered by a tool message with its id; the assistant turn is sent back as given
    second = api.bodies[1]
    assistant, answer = second["messages"][-2], second["messages"][-1]
    assert assistant["role"] == "assistant" and assistant["content"] == "Let me look at the lineage."
    assert assistant["tool_calls"][0]["function"] == {"name": "view_lineage", "arguments": "{}"}
    assert answer == {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"],
                      "content": "LINEAGE: #0 baseline val_loss=0.37 | #1 opt STEPS=200 discard | #2 opt LR=0.05 crash"}
    assert result_text(api.bodies[3]).startswith("edited train.py")
    assert len(api.bodies[4]["messages"]) == 10  # system, user, then 4 x (assistant, tool)
    assert len({b["messages"][0]["content"] for b in api.bodies}) == 1  # the system prompt never changes
    for piece in ("=== system ===", "[tool_use view_lineage", "[tool_use edit_file", "LINEAGE", "=== submitted",
                  "cost_usd=", "cache_read=800"):
        assert piece in proposal.transcript


def test_prices_unknown_model_costs_zero_with_a_note_and_a_flat_price_for_any_model():
    with served([edit_lr(), submit()]) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert proposal.cost_usd == 0.0 and proposal.usage.input_tokens == 200
    assert f"no price known for model {MODEL!r}" in proposal.transcript and "--price-in" in proposal.transcript

    flat = default_prices().with_prices({ANY_MODEL: Price.flat(1.0, 2.0)})
    with served([edit_lr(cached_tokens=50), submit()], prices=flat) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert (proposal.usage.input_tokens, proposal.usage.cache_read_tokens) == (150, 50)
    assert proposal.cost_usd == pytest.approx((200 * 1.0 + 40 * 2.0) / 1e6)  # cached input at the input price

    table = default_prices()
    assert table.lookup("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert table.lookup("gpt-4") is None and table.lookup("gpt-4o-mini") == DEFAULT_PRICES["gpt-4o-mini"]
    assert table.lookup(MODEL) is None


def test_the_server_may_report_no_usage_and_omit_call_ids():
    steps = [completion(call("edit_file", id="", path="train.py", old_string="LR = 0.01", new_string="LR = 0.02"),
                        usage=False),
             completion(call("submit_trial", id="", hypothesis="Raise LR.", expected_delta=-0.01), usage=False)]
    with served(steps) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert proposal.usage.input_tokens == 0 and proposal.usage.turns == 2 and proposal.usage.requests == 2
    assert "the server reported no token usage" in proposal.transcript
    assistant, answer = api.bodies[1]["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] and answer["tool_call_id"] == assistant["tool_calls"][0]["id"]


def test_malformed_arguments_are_a_tool_error_the_model_can_correct(capfd: pytest.CaptureFixture[str]):
    def check(body: dict[str, Any]) -> dict[str, Any]:
        results = tool_messages(body)
        assert len(results) == 3
        assert "not JSON" in results[0]["content"] and results[0]["content"].startswith("error:")
        assert "must be a JSON object, not list" in results[1]["content"]
        assert "unknown tool 'rm_rf'" in results[2]["content"]
        # the malformed arguments went back to the API exactly as the model wrote them
        assert body["messages"][-4]["tool_calls"][0]["function"]["arguments"] == '{"path": "train.py", old'
        return edit_lr()

    steps = [completion(raw_call("edit_file", '{"path": "train.py", old'), raw_call("read_file", '["train.py"]'),
                        call("rm_rf")), check, submit()]
    with served(steps) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert "+LR = 0.02" in proposal.diff
    err = capfd.readouterr().err
    assert "Pydantic" not in err and "Warning" not in err, err


def test_the_official_api_gets_max_completion_tokens_and_the_key(monkeypatch: pytest.MonkeyPatch):
    with FakeOpenAI([edit_lr(), submit()], require_key=True) as api:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
        monkeypatch.setenv("OPENAI_BASE_URL", api.base_url + "/v1")
        backend = OpenAIBackend(model="gpt-5.4", max_tokens_param="max_completion_tokens", **FAST)
        assert "sk-env" not in repr(backend)
        backend.propose(ToyContext())
        backend.close()
    assert api.keys() == ["sk-env", "sk-env"]
    assert api.bodies[0]["max_completion_tokens"] == 8192 and "max_tokens" not in api.bodies[0]


# ---------------------------------------------------------------------------------------------
# malformed outcomes


def test_no_tool_call_after_one_nudge():
    steps = [completion(content="I would raise the learning rate."),
             completion(content="Raising LR to 0.02 is my proposal.")]
    failure, api = expect_failure(steps, "no_tool_call")
    assert len(api.requests) == 2
    assert api.bodies[1]["messages"][-1] == {"role": "user", "content": NUDGE}
    assert api.bodies[1]["messages"][-2] == {"role": "assistant", "content": "I would raise the learning rate."}
    assert failure.usage.turns == 2 and failure.usage.output_tokens == 40 and failure.usage.input_tokens == 200


def test_a_nudged_model_can_still_submit():
    with served([completion(content="I would raise the learning rate."), edit_lr(), submit()]) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert proposal.usage.turns == 3


def test_an_invalid_diff_edits_that_do_not_apply_to_the_named_parent():
    failure, _ = expect_failure([edit_lr(), submit(parent=2)], "invalid_diff")
    assert "parent 2" in failure.message and "do not apply" in failure.message
    assert "+LR = 0.02" in failure.diff and failure.parent == 2
    assert failure.hypothesis.startswith("A larger learning rate") and failure.expected_delta == -0.02
    assert failure.usage.turns == 2


def test_a_diff_outside_the_surface_is_refused_at_edit_time_then_fails_at_submit():
    def refused(body: dict[str, Any]) -> dict[str, Any]:
        out = tool_messages(body)
        assert "edit refused" in out[0]["content"] and "SEED" in out[0]["content"]
        assert "'evaluate.py' is not editable" in out[1]["content"]
        return submit()

    steps = [completion(call("edit_file", path="train.py", old_string="SEED = 0", new_string="SEED = 1"),
                        call("edit_file", path="evaluate.py", old_string="return x", new_string="return 0")),
             refused]
    failure, _ = expect_failure(steps, "outside_surface")
    assert "2 edit(s) were refused" in failure.message and "evaluate.py" in failure.message
    assert "+    return 0" in failure.diff  # the last refused edit, for preflight to label illegal_edit
    assert failure.expected_delta == -0.02


def test_a_refusal_by_the_api_by_content_filter_and_by_text():
    failure, _ = expect_failure([completion(refusal="I can't help with that.")], "refused")
    assert "can't help" in failure.message and failure.usage.requests == 1
    failure, _ = expect_failure([completion(content="", finish_reason="content_filter")], "refused")
    assert "content_filter" in failure.message
    failure, api = expect_failure(
        [completion(call("view_lineage")), completion(content="I'm sorry, but I can't help with modifying this.")],
        "refused")
    assert "declined" in failure.message and failure.usage.turns == 2 and len(api.requests) == 2


def test_a_huge_diff_is_too_large():
    big = "LR = 0.02\n" + "".join(f"# padding line {i} " + "x" * 60 + "\n" for i in range(1200))
    failure, _ = expect_failure([edit_lr(big), submit()], "too_large")
    assert "65536-byte limit" in failure.message and len(failure.diff) > 65536


def test_empty_and_truncated_answers():
    failure, _ = expect_failure([completion(content=None)], "empty")
    assert "empty answer" in failure.message
    failure, _ = expect_failure([completion(content="", finish_reason="length")], "empty")
    assert "cut off" in failure.message


def test_turn_limit_and_the_model_is_told():
    failure, api = expect_failure([completion(call("view_lineage")) for _ in range(3)], "turn_limit", max_turns=3)
    assert failure.usage.turns == 3 and len(api.requests) == 3 and "3 turns" in failure.message
    assert api.bodies[2]["messages"][-1] == {"role": "user", "content": "1 turn(s) left: finish now with submit_trial."}


# ---------------------------------------------------------------------------------------------
# retries and API errors


def test_rate_limit_then_success_honours_retry_after_and_counts_the_retries():
    slept: list[float] = []
    steps = [Error(429, "requests", "Rate limit reached", retry_after="0.25", code="rate_limit_exceeded"),
             Error(503, "server_error", "overloaded"), edit_lr(), submit()]
    with served(steps, backoff_s=0.002, sleep=slept.append) as (api, backend):
        proposal = backend.propose(ToyContext())
    assert slept == [0.25, 0.004]  # retry-after honoured, then exponential backoff
    assert (proposal.usage.retries, proposal.usage.requests, proposal.usage.turns) == (2, 4, 2)
    assert api.bodies[0] == api.bodies[1] == api.bodies[2]  # the same request was resent
    assert "retry 1/4 after 429 rate_limit_exceeded: Rate limit reached" in proposal.transcript


def test_insufficient_quota_is_not_retried():
    failure, api = expect_failure([Error(429, "insufficient_quota", "You exceeded your current quota",
                                         code="insufficient_quota")], "api_error")
    assert len(api.requests) == 1 and failure.usage.retries == 0
    assert "quota" in failure.message and "billing" in failure.message


def test_retries_exhausted_is_api_error_with_usage():
    failure, _ = expect_failure([edit_lr()] + [Error(500, "server_error", "boom") for _ in range(3)], "api_error",
                                max_retries=2)
    assert "after 2 retries" in failure.message and "500" in failure.message
    assert (failure.usage.turns, failure.usage.requests, failure.usage.retries) == (1, 4, 2)
    assert failure.usage.input_tokens == 100


def test_a_bad_key_is_api_error_at_once_with_a_hint():
    with FakeOpenAI([], key="sk-the-servers-key") as api:  # a local server set up with a key
        backend = OpenAIBackend(base_url=api.base_url + "/v1", model=MODEL, **FAST)
        with pytest.raises(ProposalFailed) as info:
            backend.propose(ToyContext())
        backend.close()
    assert api.keys() == [NO_KEY]  # no OPENAI_API_KEY: a local server gets a placeholder
    assert info.value.kind == "api_error" and "401" in info.value.message
    assert "OPENAI_API_KEY" in info.value.message and info.value.usage.retries == 0


def test_connection_errors_are_retried_then_api_error():
    backend = OpenAIBackend(base_url="http://127.0.0.1:1/v1", model=MODEL, max_retries=1, **FAST)
    try:
        with pytest.raises(ProposalFailed) as info:
            backend.propose(ToyContext())
    finally:
        backend.close()
    assert info.value.kind == "api_error" and "connection error" in info.value.message
    assert (info.value.usage.requests, info.value.usage.retries, info.value.usage.turns) == (2, 1, 0)


def test_no_key_for_a_remote_server_is_one_clear_error():
    for url in ("https://openrouter.ai/api/v1", None):
        with pytest.raises(MissingAPIKey) as info:
            OpenAIBackend(base_url=url, model="m")
        assert info.value.kind == "no_api_key" and "OPENAI_API_KEY" in str(info.value)
    with pytest.raises(ValueError, match="--model"):
        OpenAIBackend(base_url="http://127.0.0.1:8000/v1")  # a local server's model must be named
    assert OpenAIBackend(api_key="sk-x").model == "gpt-5.4"
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "http://[::1]:8080/v1",
                "http://192.168.1.20:8000/v1", "http://vllm:8000/v1"):
        assert is_local(url), url
    assert not is_local("https://api.openai.com/v1") and not is_local("http://8.8.8.8/v1")


def test_the_transcript_is_readable_and_complete():
    with served([completion(call("view_lineage"), content="Looking."), edit_lr(), submit()]) as (api, backend):
        proposal = backend.propose(ToyContext())
    t = proposal.transcript
    lines = t.splitlines()
    assert lines[0] == f"=== openai backend: model {MODEL}, specialist opt, parent 0 ==="
    assert "[tool_result " in t and "LINEAGE" in t and "Looking." in t
    assert json.loads(t.split("[tool_use edit_file ", 1)[1].split("] ", 1)[1].splitlines()[0])["new_string"] == \
        "LR = 0.02"
    assert lines[-2].startswith("turns=3 requests=3 retries=0 input=300 output=60")
