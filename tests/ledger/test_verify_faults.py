"""Every corruption of a real ledger's tables, artifacts and signatures ends in one line naming the
first position and the kind, exit 1, no traceback — through the `arledger audit verify` command,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from arledger.cli import cli
from ledger import codec
from ledger import events as ev
from ledger.app import Ledger
from tests.ledger.ledgerkit import RawDB, delete_artifact, populate, replace_artifact

# populate(): 0 LedgerInitialized, 1 SigningStarted (one signed append), 2 SignerEnrolled (human:…),
# 3 CampaignOpened, then per trial TrialRegistered + TrialProposed (4,5 / 6,7 / …), last CheckpointSigned


def verify_cli(url: str, *extra: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["audit", "verify", "--ledger", url, *extra])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


def assert_first(url: str, kind: str, position: int | None, *extra: str, also: str = "") -> str:
    code, out = verify_cli(url, *extra)
    assert code == 1, out
    assert out.startswith("FAILED:"), out
    first = out.split("first divergence:", 1)[1].splitlines()[0]
    assert first.startswith(f" [{kind}]"), first
    if position is not None:
        assert re.search(rf"\bpositions? {position}\b", first), first
    assert also in out, out
    return out


@pytest.fixture
def world(any_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    led, _cp = populate(any_url, tmp_path)
    code, out = verify_cli(any_url)
    assert code == 0 and out.startswith("OK:"), out
    raw = RawDB(led)
    yield any_url, led, raw
    raw.close()
    led.close()


def _pos_of(led: Ledger, cls: type) -> int:
    return next(r.position for r in led.events() if isinstance(r.event, cls))


# bytes and values in every column --------------------------------------------------------------------------

def test_event_originator_id_altered(world):
    url, led, raw = world
    raw.alter_event_column(6, "originator_id")
    assert_first(url, "modified", 6)


def test_event_version_altered(world):
    url, led, raw = world
    raw.set_event_value(6, "originator_version", 77)
    assert_first(url, "modified", 6)


def test_event_topic_byte_flipped(world):
    url, led, raw = world
    raw.alter_event_column(8, "topic")  # SQLite: no longer valid UTF-8 (the traceback of issue 10)
    assert_first(url, "modified", 8)


def test_event_state_byte_flipped(world):
    url, led, raw = world
    raw.flip_byte(9)
    assert_first(url, "modified", 9, also="[bad_signature]")


def test_leaf_byte_flipped(world):
    url, led, raw = world
    raw.flip_leaf(5)
    out = assert_first(url, "modified", 5)
    assert "leaf table was altered" in out


def test_leaf_position_moved(world):
    url, led, raw = world
    raw.q(f"UPDATE {raw.leaves} SET position = 9000 WHERE position = 11")
    assert_first(url, "unsealed", 11)


def test_leaf_notification_id_changed(world):
    url, led, raw = world
    raw.q(f"UPDATE {raw.leaves} SET notification_id = notification_id + 5000 WHERE position = 12")
    assert_first(url, "missing", 12)


def test_tree_head_size_changed(world):
    url, led, raw = world
    n = len(raw.rows())
    raw.q(f"UPDATE {raw.tree} SET size = size + 1")
    assert_first(url, "root_mismatch", n)


def test_tree_head_frontier_flipped(world):
    url, led, raw = world
    n = len(raw.rows())
    (fr,) = raw.q(f"SELECT frontier FROM {raw.tree}")[0]
    b = bytearray(bytes(fr))
    b[-1] ^= 1
    raw.q(f"UPDATE {raw.tree} SET frontier = ?", (bytes(b),))
    assert_first(url, "root_mismatch", n)


@pytest.mark.parametrize("column", ["public_key", "signature", "refs"])
def test_signature_row_bytes_flipped(world, column):
    url, led, raw = world
    p = _pos_of(led, ev.TrialProposed) - 1  # the trial's append: TrialRegistered + TrialProposed
    raw.flip_signature(p, column)
    assert_first(url, "bad_signature", p)


def test_signature_row_count_changed(world):
    url, led, raw = world
    raw.q(f"UPDATE {raw.sigs} SET count = 1 WHERE position = 6")
    assert_first(url, "bad_signature", 6, also="[unsigned] position 7")


def test_signature_row_moved(world):
    url, led, raw = world
    raw.q(f"UPDATE {raw.sigs} SET position = 9001 WHERE position = 8")
    out = assert_first(url, "unsigned", 8)
    assert "[truncated]" in out  # a signature for positions that do not exist


def test_signature_row_deleted(world):
    url, led, raw = world
    raw.q(f"DELETE FROM {raw.sigs} WHERE position = 10")
    assert_first(url, "unsigned", 10)


# wrong types and missing tables ----------------------------------------------------------------------------

def test_wrong_types(world):
    url, led, raw = world
    if raw.kind == "sqlite":
        raw.q("UPDATE stored_events SET originator_version = 'seven' WHERE rowid = (SELECT rowid FROM stored_events "
              "ORDER BY rowid LIMIT 1 OFFSET 13)")
        assert_first(url, "malformed", 13)
        raw.q("UPDATE stored_events SET originator_version = 1 WHERE rowid = (SELECT rowid FROM stored_events "
              "ORDER BY rowid LIMIT 1 OFFSET 13)")
        raw.q("UPDATE stored_events SET state = CAST(state AS TEXT) WHERE rowid = (SELECT rowid FROM stored_events "
              "ORDER BY rowid LIMIT 1 OFFSET 14)")
        assert_first(url, "malformed", 14)
    else:
        raw.q(f"ALTER TABLE {raw.events} ALTER COLUMN originator_version TYPE text")
        assert_first(url, "missing_table", 0, also="originator_version is text, not bigint")


def test_wrong_type_of_leaf(world):
    url, led, raw = world
    if raw.kind == "sqlite":
        raw.q("UPDATE arledger_leaves SET leaf = CAST(leaf AS TEXT) WHERE position = 3")
        assert_first(url, "malformed", 3)
    else:
        raw.q(f"ALTER TABLE {raw.leaves} ALTER COLUMN leaf TYPE text USING encode(leaf, 'hex')")
        assert_first(url, "missing_table", 0, also="leaf is text, not bytea")


@pytest.mark.parametrize("table", ["events", "leaves", "tree"])
def test_table_dropped(world, table):
    url, led, raw = world
    name = {"events": raw.events, "leaves": raw.leaves, "tree": raw.tree}[table]
    raw.q(f"DROP TABLE {name}")
    out = assert_first(url, "missing_table", 0)
    assert "is missing" in out


def test_signatures_table_dropped(world):
    url, led, raw = world
    raw.q(f"DROP TABLE {raw.sigs}")
    out = assert_first(url, "missing_table", 0)
    assert "[unsigned] positions 0.." in out


# artifacts ---------------------------------------------------------------------------------------------------

def test_campaign_baseline_replaced(world):
    url, led, raw = world
    opened = next(r for r in led.events() if isinstance(r.event, ev.CampaignOpened))
    replace_artifact(led, opened.event.baseline_sha, b'{"train.py": "LR = 9\\n"}')
    assert_first(url, "artifact", opened.position, also="does not match its hash")


def test_campaign_baseline_deleted(world):
    url, led, raw = world
    opened = next(r for r in led.events() if isinstance(r.event, ev.CampaignOpened))
    delete_artifact(led, opened.event.baseline_sha)
    assert_first(url, "artifact", opened.position, also="missing from the store")


def test_orphan_object_altered(world):
    url, led, raw = world
    sha = led.artifacts.put(b"put, but the append that would name it never happened")
    code, out = verify_cli(url, "--json")
    rep = json.loads(out)
    assert code == 0 and rep["orphan_artifacts"] == 1 and rep["orphans"] == [sha]
    replace_artifact(led, sha, b"something else")
    assert_first(url, "orphan", None, also=sha[:16])


def test_artifact_store_missing(world, tmp_path):
    url, led, raw = world
    if raw.kind == "sqlite":
        store = led.cfg.path.parent / "artifacts"
        kept = tmp_path / "kept-artifacts"
        shutil.move(store, kept)
        out = assert_first(url, "artifact_store", 3)
        assert f"no artifact store at {store}: copy .arledger/ whole, or pass --artifacts PATH" in out
        assert out.count("\n") == 1  # one problem, not one per artifact
        code, out = verify_cli(url, "--artifacts", str(kept))
        assert code == 0, out
    else:
        raw.q(f'DROP TABLE "{led.cfg.schema}".arledger_artifacts')
        out = assert_first(url, "artifact_store", 3)
        assert "no artifact store at table" in out


# signatures: appends by a participant without a trusted key ------------------------------------------------

def _forge(led: Ledger, raw: RawDB, *, signer: object = None) -> int:
    """A TrialEvaluated with a fine score, appended through the recorder by someone who can reach the
    store: sealed in the Merkle log like any other event."""
    from eventsourcing.persistence import StoredEvent

    from ledger.aggregates import Trial

    tid = next(r.event.originator_id for r in led.events() if isinstance(r.event, ev.TrialProposed))
    t = led.load(Trial, tid)
    e = ev.TrialEvaluated(originator_id=tid, originator_version=t.version + 1, actor="runner:host-3", epoch=1,
                          score=0.001)
    topic, state = codec.encode(e)
    stored = [StoredEvent(originator_id=tid, originator_version=e.originator_version, topic=topic, state=state)]
    n = len(raw.rows())
    if signer is None:
        # a recorder refuses an unsigned append once the ledger is signed: go round it as a database user can
        raw.append_sealed(tid, e.originator_version, topic, state)
    else:
        from ledger.keys import GENESIS_LEDGER_ID, SignedBatch, append_message

        lid = bytes.fromhex(led.ledger_id())
        digest = codec.event_digest(tid, e.originator_version, topic, state)
        assert lid != GENESIS_LEDGER_ID
        sig = signer.sign(append_message(lid, digest, b""))
        led.recorder.insert_events(stored, signed=SignedBatch(signer.public_key, sig, b"", genesis=False))
    return n


def test_unsigned_event_sealed_correctly(world):
    url, led, raw = world
    p = _forge(led, raw)
    out = assert_first(url, "unsigned", p)
    assert "[modified]" not in out and "[unsealed]" not in out  # its Merkle leaf is right


def test_event_signed_by_an_untrusted_key(world):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.keys import Signer

    url, led, raw = world
    p = _forge(led, raw, signer=Signer("runner:host-3", Ed25519PrivateKey.generate()))
    assert_first(url, "untrusted", p)


def test_recorder_refuses_an_unsigned_append(world):
    from eventsourcing.persistence import StoredEvent

    from ledger.recorders import SignatureRequired

    url, led, raw = world
    e = ev.TrialQuarantined(originator_id=ev.trial_id_for(ev.campaign_id_for("demo"), 0), originator_version=3,
                            actor="human:mallory", reason="x")
    topic, state = codec.encode(e)
    with pytest.raises(SignatureRequired):
        led.recorder.insert_events([StoredEvent(originator_id=e.originator_id, originator_version=3, topic=topic,
                                                state=state)])
    assert verify_cli(url)[0] == 0


def test_self_enrolled_key_is_not_trusted(world):
    """A participant records its own key as an enrolment, signed by itself: not endorsed by a ledger key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.aggregates import LedgerRoot
    from ledger.keys import Signer, key_id

    url, led, raw = world
    k = Ed25519PrivateKey.generate()
    mallory = Signer("runner:mallory", k)
    root = led.load(LedgerRoot, ev.LEDGER_ID)
    root._trigger(ev.SignerEnrolled, actor="runner:mallory", signer="runner:mallory", public_key=mallory.public_hex,
                  key_id=key_id(mallory.public_hex), endorsed_by=mallory.key_id, endorsement=k.sign(b"x").hex())
    from eventsourcing.persistence import StoredEvent

    from ledger.keys import SignedBatch, append_message

    (e,) = root.collect_events()
    topic, state = codec.encode(e)
    lid = bytes.fromhex(led.ledger_id())
    sig = mallory.sign(append_message(lid, codec.event_digest(e.originator_id, e.originator_version, topic, state),
                                      b""))
    p = len(raw.rows())
    led.recorder.insert_events([StoredEvent(originator_id=e.originator_id, originator_version=e.originator_version,
                                            topic=topic, state=state)],
                               signed=SignedBatch(mallory.public_key, sig, b"", genesis=False))
    assert_first(url, "untrusted", p)


def test_json_report(world):
    url, led, raw = world
    code, out = verify_cli(url, "--json")
    rep = json.loads(out)
    assert code == 0 and rep["ok"] is True
    assert rep["events"] == len(raw.rows()) == rep["signed_events"]
    assert rep["unsigned_events"] == 0 and rep["signing_from"] == 0
    assert rep["artifacts_checked"] == 13  # the baseline and twelve diffs
    assert set(rep["signers"]) == {"ledger", led._writer([]).actor}
    raw.flip_byte(9)
    code, out = verify_cli(url, "--json")
    rep = json.loads(out)
    assert code == 1 and rep["ok"] is False
    assert {(p["position"], p["kind"]) for p in rep["problems"]} >= {(9, "modified"), (9, "bad_signature")}


# the parallel scan and --deep ---------------------------------------------------------------------------------

def _kinds(rep) -> set[tuple[int | None, str]]:
    return {(p.position, p.kind) for p in rep.problems}


def test_parallel_scan_finds_the_same(world):
    """The scan split over forked workers (ranges not aligned to anything) names what one process does."""
    from ledger.verify import verify

    url, led, raw = world
    for w in (2, 3, 5):
        assert verify(led, workers=w).ok
    raw.flip_byte(5)
    raw.q(f"DELETE FROM {raw.sigs} WHERE position = 12")
    raw.flip_leaf(20)
    one = verify(led, workers=1)
    assert {(5, "modified"), (5, "bad_signature"), (12, "unsigned"), (20, "modified")} <= _kinds(one)
    for w in (2, 3, 7):
        rep = verify(led, workers=w)
        assert _kinds(rep) == _kinds(one), w
        assert rep.root == one.root and rep.signed_events == one.signed_events


def test_deep_checks_the_signed_artifact_lists(world):
    """A writer that signed a wrong artifact list (a bug, not a forgery: its key is trusted) is caught by
    --deep, which decodes every event; the default check already verified what was signed."""
    from eventsourcing.persistence import StoredEvent

    from ledger.aggregates import Trial
    from ledger.keys import SignedBatch, append_message

    url, led, raw = world
    assert verify_cli(url, "--deep")[0] == 0
    writer = led._writer([])
    tid = ev.trial_id_for(ev.campaign_id_for("demo"), 0)
    t = led.load(Trial, tid)
    diff = led.artifacts.put("--- a/x\n+++ b/x\n")
    e = ev.TrialFinished(originator_id=tid, originator_version=t.version + 1, actor="runner:x", epoch=1,
                         exit_status=0, log_sha=diff)
    topic, state = codec.encode(e)
    lid = bytes.fromhex(led.ledger_id())
    sig = writer.sign(append_message(lid, codec.event_digest(tid, e.originator_version, topic, state), b""))
    p = len(raw.rows())
    led.recorder.insert_events([StoredEvent(originator_id=tid, originator_version=e.originator_version, topic=topic,
                                            state=state)], signed=SignedBatch(writer.public_key, sig, b"", False))
    code, out = verify_cli(url)
    assert code == 0, out  # the artifact is an orphan by the signed lists, and intact
    assert_first(url, "refs", p, "--deep")


# bytes flipped in the SQLite file itself ---------------------------------------------------------------------

def _flip_in_file(path, needle: bytes) -> None:
    """Flip one byte of ``needle`` wherever it lies in the file (a free page may hold an old copy)."""
    data = bytearray(path.read_bytes())
    i = data.find(needle)
    assert i >= 0
    while i >= 0:
        data[i + len(needle) // 2] ^= 0x04
        i = data.find(needle, i + 1)
    path.write_bytes(bytes(data))


@pytest.fixture
def closed_sqlite(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    led, _cp = populate(sqlite_url, tmp_path)
    raw = RawDB(led)
    rows = raw.rows()
    leaves = [bytes(r[0]) for r in raw.q("SELECT leaf FROM arledger_leaves ORDER BY position")]
    raw.close()
    led.close()  # the last connection checkpoints the WAL into the file
    path = led.cfg.path
    assert not (path.parent / "ledger.db-wal").exists() or (path.parent / "ledger.db-wal").stat().st_size == 0
    return sqlite_url, path, rows, leaves


def test_byte_flipped_in_an_event_in_the_file(closed_sqlite):
    url, path, rows, _leaves = closed_sqlite
    _flip_in_file(path, rows[11][4])  # the stored bytes of position 11, as they lie in the file
    assert_first(url, "modified", 11)


def test_byte_flipped_in_a_leaf_in_the_file(closed_sqlite):
    url, path, _rows, leaves = closed_sqlite
    _flip_in_file(path, leaves[17])
    assert_first(url, "modified", 17, also="leaf table was altered")


def test_byte_flipped_in_a_page_header(closed_sqlite):
    url, path, _rows, _leaves = closed_sqlite
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    for p in range(1, len(data) // page):  # the first b-tree page after the schema page: its cell count
        if data[p * page] in (0x0D, 0x05):
            data[p * page + 3] ^= 0x7F
            break
    path.write_bytes(bytes(data))
    code, out = verify_cli(url)
    assert code == 1 and out.count("\n") == 1, out  # one line: no position to name, the file itself is broken
    assert re.search(r"is not a readable SQLite ledger \(.*\).*restore it from a backup|fails SQLite's integrity check",
                     out), out
