"""`arledger init | log | audit checkpoint | audit verify | audit prove | audit check-proof`, through
click's CliRunner on real SQLite ledgers: what a user sees, and every error as one line."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

from tests.cli.conftest import World, invoke


def test_init_makes_a_ledger_and_a_private_key_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path}/l/ledger.db"
    first = invoke("init", "--ledger", url)
    assert first.exit_code == 0 and first.output.startswith("created SQLite ledger")
    key = tmp_path / "l" / "signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = invoke("init", "--ledger", url)
    assert again.exit_code == 0 and "already initialised" in again.output
    ids = [ln for ln in (first.output + again.output).splitlines() if ln.startswith("ledger id")]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_commands_on_a_missing_or_bad_ledger_say_how_to_fix_it(tmp_path: Path) -> None:
    missing = invoke("status", "--ledger", f"sqlite:{tmp_path}/nope.db")
    assert missing.exit_code == 1 and "run `arledger init` first" in missing.output
    assert "Traceback" not in missing.output and not (tmp_path / "nope.db").exists()
    bad = invoke("log", "--ledger", "ftp://x/y")
    assert bad.exit_code == 1 and "unknown scheme 'ftp'" in bad.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    res = invoke("audit", "verify", "--ledger", f"sqlite:{junk}")
    assert res.exit_code == 1 and "not a readable SQLite ledger" in res.output and "Traceback" not in res.output
    unreachable = invoke("status", "--ledger", "postgresql://nobody@127.0.0.1:1/none")
    assert unreachable.exit_code == 1 and "cannot reach" in unreachable.output


def test_log_lists_events_filters_and_prints_json(world: World) -> None:
    res = world.run("log", "--trial", "0")
    assert res.exit_code == 0 and "TrialProposed" in res.output and "OutcomeLabelled" in res.output
    lines = world.run("log", "--type", "TrialJudged", "--json").output.splitlines()
    judged = [json.loads(x) for x in lines]
    assert judged and all(d["type"] == "TrialJudged" for d in judged)
    assert {d["verdict"] for d in judged} <= {"candidate", "keep", "discard"}
    assert all(isinstance(d["position"], int) for d in judged)
    last = world.run("log", "--limit", "2", "--json").output.splitlines()
    assert len(last) == 2
    bad = world.run("log", "--type", "TrialKept")
    assert bad.exit_code == 1 and "unknown event type(s) TrialKept" in bad.output


def test_checkpoint_verify_prove_and_check_proof(fresh: World) -> None:
    out = fresh.root / "held-elsewhere"
    out.mkdir()
    cp = fresh.run("audit", "checkpoint", "--out", str(out))
    assert cp.exit_code == 0 and "signed checkpoint: size" in cp.output
    [cp_file] = out.glob("checkpoint-*.txt")
    ok = fresh.run("audit", "verify", "--checkpoint", str(cp_file))
    assert ok.exit_code == 0 and ok.output.startswith("OK: ")
    rep = json.loads(fresh.run("audit", "verify", "--json").output)
    assert rep["ok"] is True and rep["events"] > 20
    proof = fresh.root / "proof.json"
    pr = fresh.run("audit", "prove", "3", "--checkpoint", str(cp_file), "--out", str(proof))
    assert pr.exit_code == 0 and proof.exists()
    good = invoke("audit", "check-proof", str(proof))  # no ledger needed
    assert good.exit_code == 0 and good.output.startswith("VALID")
    doc = json.loads(proof.read_text())
    doc["position"] = 4
    proof.write_text(json.dumps(doc))
    bad = invoke("audit", "check-proof", str(proof))
    assert bad.exit_code == 1 and bad.output.startswith("INVALID")
    beyond = fresh.run("audit", "prove", "100000", "--checkpoint", str(cp_file))
    assert beyond.exit_code == 1 and "outside the checkpoint" in beyond.output
    notjson = fresh.root / "x.json"
    notjson.write_text("{")
    assert "is not JSON" in invoke("audit", "check-proof", str(notjson)).output
    missing = fresh.run("audit", "verify", "--checkpoint", str(fresh.root / "nope.txt"))
    assert missing.exit_code == 1 and "cannot be read" in missing.output


def test_verify_names_a_tampered_event_and_exits_1(fresh: World) -> None:
    db = fresh.root / "store" / "ledger.db"
    conn = sqlite3.connect(db)
    rowid, state = conn.execute("SELECT rowid, state FROM stored_events ORDER BY rowid LIMIT 1 OFFSET 7").fetchone()
    conn.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(state)[:-1] + b"\x00", rowid))
    conn.commit()
    conn.close()
    res = fresh.run("audit", "verify")
    assert res.exit_code == 1 and "FAILED" in res.output and "position 7" in res.output
    assert "Traceback" not in res.output
    assert os.path.exists(db)


def test_keys_list_and_upgrade_on_a_signed_ledger(fresh: World) -> None:
    res = fresh.run("keys", "list")
    assert res.exit_code == 0 and "agent:campaign" in res.output and "runner:" in res.output
    up = fresh.run("audit", "upgrade", "--key", str(fresh.root / "store" / "signing.key"))
    assert up.exit_code == 0 and "already signed" in up.output and "nothing to do" in up.output
    bad = fresh.run("keys", "trust", "runner:elsewhere", "not-hex", "--key", str(fresh.root / "store" / "signing.key"))
    assert bad.exit_code == 1 and "Traceback" not in bad.output
