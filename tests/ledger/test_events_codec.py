"""Events round-trip through the stored bytes exactly, and bad bytes are refused with a clear reason."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from click.testing import CliRunner

from arledger.cli import cli
from ledger import codec
from ledger import events as ev
from ledger.app import Ledger
from ledger.store import LedgerError, parse_url


def sample_events() -> list[ev.Event]:
    cid, tid = uuid.uuid4(), uuid.uuid4()
    return [
        ev.CampaignOpened(originator_id=cid, originator_version=1, actor="human:a", name="c", task="golf-mini",
                          task_version="1", task_sha="a" * 64, metric="val_bpb", direction="min",
                          specialists=[ev.SpecialistDecl(name="opt", surface="opt")], budgets={"max_trials": 10}),
        ev.TrialProposed(originator_id=tid, originator_version=1, actor="agent:opt", campaign_id=cid, number=1,
                         specialist="opt", surface="opt", hypothesis="lower LR", expected_delta=-0.01,
                         usage=ev.Usage(input_tokens=10, output_tokens=5), cost_usd=0.001),
        ev.MetricsLogged(originator_id=tid, originator_version=2, actor="runner:r", epoch=1,
                         points=[ev.MetricPoint(1, "loss", 2.5), ev.MetricPoint(2, "loss", 2.1)]),
        ev.TrialEvaluated(originator_id=tid, originator_version=3, actor="evaluator:x", epoch=1, score=1.23,
                          gates=[ev.GateResult(name="artifact_bytes", passed=True, value=10.0, limit=20.0)]),
        ev.OutcomeLabelled(originator_id=tid, originator_version=4, actor="runner:r", status="crash",
                           excerpt="RuntimeError: x (train.py:3 in f)"),
    ]


@pytest.mark.parametrize("e", sample_events(), ids=lambda e: e.type)
def test_round_trip(e):
    topic, data = codec.encode(e)
    assert topic == f"arledger.{e.type}.v1"
    assert codec.decode(topic, data) == e


def test_every_event_type_has_a_topic_and_schema():
    assert len(ev.BY_TOPIC) == len(ev.EVENT_TYPES)
    for cls in ev.EVENT_TYPES:
        assert cls.__struct_config__.frozen
        assert "actor" in cls.__struct_fields__ and "schema" in cls.__struct_fields__ and "at" in cls.__struct_fields__


def test_decoding_validates_types_and_statuses():
    tid = uuid.uuid4()
    bad = ev.TrialFinished(originator_id=tid, originator_version=1, actor="r", epoch=1, exit_status=0)
    raw = msgspec.msgpack.encode({**msgspec.to_builtins(bad), "wall_s": "fast"})
    topic = ev.TOPIC_OF[ev.TrialFinished]
    with pytest.raises(codec.DecodeError, match="wall_s"):
        codec.decode(topic, codec._zstd()[0].compress(raw))
    with pytest.raises(msgspec.ValidationError, match="unknown status"):
        ev.OutcomeLabelled(originator_id=tid, originator_version=1, actor="r", status="great")
    with pytest.raises(codec.DecodeError, match="not valid zstd"):
        codec.decode(topic, b"garbage")
    with pytest.raises(codec.DecodeError, match="unknown event topic"):
        codec.decode("arledger.Nope.v1", b"")


def test_stored_bytes_are_zstd_msgpack():
    e = sample_events()[1]
    _, data = codec.encode(e)
    assert data[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    assert msgspec.msgpack.decode(codec._zstd()[1].decompress(data))["hypothesis"] == "lower LR"


@pytest.mark.parametrize("url,msg", [
    ("foo://x", "unknown scheme"),
    ("postgresql://host-only", "lacks a host or database"),
    ("postgresql://u@h:notaport/db", "invalid port"),
    ("sqlite://host/x.db", "sqlite:///ABSOLUTE"),
    ("nonsense", "not understood"),
])
def test_bad_urls_name_the_problem(url, msg):
    with pytest.raises(LedgerError, match=msg):
        parse_url(url)


def test_bad_ledgers_give_one_clear_message_and_change_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner()
    res = r.invoke(cli, ["log", "--ledger", f"sqlite:{tmp_path}/missing.db"])
    assert res.exit_code == 1 and "run `arledger init`" in res.output
    assert not (tmp_path / "missing.db").exists()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 100)
    before = corrupt.read_bytes()
    res = r.invoke(cli, ["audit", "verify", "--ledger", f"sqlite:{corrupt}"])
    assert res.exit_code == 1 and "not a readable SQLite ledger" in res.output and "Traceback" not in res.output
    assert corrupt.read_bytes() == before
    res = r.invoke(cli, ["log", "--ledger", "postgresql://nobody@127.0.0.1:1/none"])
    assert res.exit_code == 1 and "cannot reach" in res.output
    res = r.invoke(cli, ["init", "--ledger", f"sqlite:{tmp_path}/l.db"])
    assert res.exit_code == 0, res.output
    key = tmp_path / "signing.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    key.write_text("not a key")
    res = r.invoke(cli, ["audit", "checkpoint", "--ledger", f"sqlite:{tmp_path}/l.db"])
    assert res.exit_code == 1 and "not an unencrypted Ed25519 PEM key" in res.output
    res = r.invoke(cli, ["audit", "checkpoint", "--ledger", f"sqlite:{tmp_path}/l.db", "--key", str(tmp_path / "nokey")])
    assert res.exit_code == 1 and "not found" in res.output


def test_memory_store_and_prove_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:{tmp_path}/p.db"
    r = CliRunner()
    assert r.invoke(cli, ["init", "--ledger", url]).exit_code == 0
    res = r.invoke(cli, ["audit", "checkpoint", "--ledger", url, "--out", str(tmp_path / "cp.txt")])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["audit", "prove", "0", "--ledger", url, "--checkpoint", str(tmp_path / "cp.txt"),
                         "--out", str(tmp_path / "proof.json")])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["audit", "check-proof", str(tmp_path / "proof.json")])
    assert res.exit_code == 0 and res.output.startswith("VALID")
    doc = (tmp_path / "proof.json").read_text().replace('"position": 0', '"position": 1')
    (tmp_path / "bad.json").write_text(doc)
    res = r.invoke(cli, ["audit", "check-proof", str(tmp_path / "bad.json")])
    assert res.exit_code == 1 and "INVALID" in res.output
    led = Ledger.open("memory://")
    assert led.size() == 0
