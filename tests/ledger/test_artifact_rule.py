"""The artifact rule: artifacts are named only in fields typed Artifact, found there by type (nested
structs, lists, dicts, optional fields), and a writer that hides one elsewhere is refused."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from ledger import events as ev
from ledger import refs
from ledger.app import Ledger
from ledger.audit import init_ledger
from ledger.codec import EncodeError


def test_every_event_type_declares_its_hashes():
    """Fails when an event type gets a plain-str field named like a hash (``*_sha``, ``*_hash``,
    ``*digest``…), at any depth: type it ledger.events.Artifact (in the store) or Digest."""
    bad = {c.__name__: refs.undeclared_hash_fields(c) for c in ev.EVENT_TYPES}
    assert {k: v for k, v in bad.items() if v} == {}


class Inner(msgspec.Struct, frozen=True):
    weights_sha: str


class Hiding(ev.Event, frozen=True, kw_only=True):
    items: list[Inner] = []
    maybe: dict[str, Inner] | None = None
    plain_hash: str = ""
    ok_sha: ev.Digest = ""


def test_the_catalogue_check_sees_nested_fields():
    assert refs.undeclared_hash_fields(Hiding) == ["Hiding.items[].weights_sha", "Hiding.maybe[].weights_sha",
                                                   "Hiding.plain_hash"]


class Part(msgspec.Struct, frozen=True):
    log: ev.Artifact | None = None
    note: str = ""


class Nested(ev.Event, frozen=True, kw_only=True):
    parts: list[Part] = []
    by_name: dict[str, ev.Artifact] = {}
    best: Part | None = None
    pair: tuple[ev.Artifact, str] | None = None
    config: dict[str, Any] = {}
    tree: ev.Digest = ""


def test_scan_finds_artifacts_by_type_at_any_depth():
    a, b, c, d, e, f = (f"{i:x}" * 64 for i in range(10, 16))
    n = Nested(originator_id=uuid.uuid4(), originator_version=1, actor="t", parts=[Part(log=a), Part(note="x")],
               by_name={"k": b}, best=Part(log=c), pair=(d, "free"), config={"deep": [{"x": e}]}, tree=f)
    found = refs.scan(n)
    assert found.refs == [a, b, c, d]
    assert found.hidden == [e]  # in the free-form config; the Digest is declared, not hidden
    assert refs.where(n, e) == "Nested.config['deep'][0]['x']"


def test_the_catalogue_artifact_fields():
    found = {c.__name__: [n for n in c.__struct_fields__ if "Artifact" in str(c.__annotations__.get(n, ""))]
             for c in ev.EVENT_TYPES}
    assert {k: v for k, v in found.items() if v} == {
        "CampaignOpened": ["baseline_sha", "task_bundle_sha"], "CampaignResumed": ["task_bundle_sha"],
        "TrialProposed": ["diff_sha", "prompt_sha", "transcript_sha"],
        "TrialFinished": ["artifact_sha", "log_sha"], "TrialEvaluated": ["log_sha"]}


def test_save_refuses_an_artifact_hidden_in_config(tmp_path):
    led, _, _ = init_ledger(f"sqlite:{tmp_path}/ledger.db", tmp_path / "k.key")
    sha = led.artifacts.put(b"the baseline snapshot")
    hidden = ev.CampaignOpened(originator_id=ev.campaign_id_for("c"), originator_version=1, actor="agent:campaign",
                               name="c", task="t", task_version="1", task_sha="ab" * 32, metric="m",
                               direction="min", config={"snapshot": {"baseline_tree_sha": sha}})
    size = led.size()
    with pytest.raises(EncodeError, match=r"CampaignOpened\.config\['snapshot'\]\['baseline_tree_sha'\] names "
                                          "artifact"):
        led.save(hidden)
    assert led.size() == size
    # a hash of something the store does not hold (a task folder's digest) is not an artifact
    led.save(ev.CampaignOpened(originator_id=ev.campaign_id_for("c"), originator_version=1, actor="agent:campaign",
                               name="c", task="t", task_version="1", task_sha="ab" * 32, metric="m",
                               direction="min", config={"task_sha": "cd" * 32}, baseline_sha=sha))
    led.close()


def test_legacy_baseline_in_config_is_a_reference():
    old = ev.CampaignOpened(originator_id=uuid.uuid4(), originator_version=1, actor="a", name="n", task="t",
                            task_version="1", task_sha="", metric="m", direction="min",
                            config={"baseline_tree_sha": "AB" * 32, "baseline_tree": "cd" * 32})
    assert refs.artifact_shas(old) == ["ab" * 32]


def test_memory_ledger_rule_applies(monkeypatch, tmp_path):
    led = Ledger.open(f"memory://rule-{uuid.uuid4()}")
    sha = led.artifacts.put("x")
    with pytest.raises(EncodeError):
        led.save(ev.TrialQuarantined(originator_id=uuid.uuid4(), originator_version=1, actor="a", reason=sha))
