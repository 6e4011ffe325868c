"""Ledgers written before signing existed still read and verify (their events legacy unsigned, their
baseline snapshot in config checked as an artifact), and `arledger audit upgrade` moves them forward.

The fixture ``fixtures/legacy-0.1.0`` was written by arledger 0.1.0 as it was before this change
(``fixtures/legacy-0.1.0.gen.py`` run against commit c024fb8): a campaign whose baseline snapshot is
``config["baseline_tree_sha"]``, three trials, a checkpoint. On PostgreSQL the same stored rows,
leaves and tree head are copied into a fresh schema (the leaf does not depend on the store).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from arledger.cli import cli
from ledger import events as ev
from ledger.app import Ledger
from tests.ledger.ledgerkit import RawDB, delete_artifact, replace_artifact

FIXTURE = Path(__file__).parent / "fixtures" / "legacy-0.1.0"
EVENTS = 21


def cli_run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, res.output


def _copy_to_postgres(url: str, home: Path) -> None:
    src = sqlite3.connect(str(home / "ledger.db"))
    led = Ledger.open(url, create=True)
    raw = RawDB(led)
    nids = {}
    for rowid, oid, ver, topic, state in src.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"):
        nids[rowid] = raw.conn.execute(
            f"INSERT INTO {raw.events} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s) "
            "RETURNING notification_id", (oid, ver, topic, state)).fetchone()[0]
    for pos, nid, leaf in src.execute("SELECT position, notification_id, leaf FROM arledger_leaves"):
        raw.q(f"INSERT INTO {raw.leaves} VALUES (?, ?, ?)", (pos, nids[nid], leaf))
    size, frontier = src.execute("SELECT size, frontier FROM arledger_tree").fetchone()
    raw.q(f"UPDATE {raw.tree} SET size = ?, frontier = ? WHERE id = 1", (size, frontier))
    for f in (home / "artifacts").glob("*/*.zst"):
        sha = f.parent.name + f.name[:-4]
        raw.q(f'INSERT INTO "{led.cfg.schema}".arledger_artifacts (sha, size, data) VALUES (?, 0, ?)',
              (sha, f.read_bytes()))
    raw.close()
    led.close()
    src.close()


@pytest.fixture
def legacy(any_url, tmp_path, monkeypatch):
    home = tmp_path / ".arledger"
    shutil.copytree(FIXTURE, home)
    monkeypatch.chdir(tmp_path)
    if any_url.startswith("postgresql"):
        _copy_to_postgres(any_url, home)
        url = any_url
    else:
        url = f"sqlite:{home}/ledger.db"
    cp = next((home / "checkpoints").glob("checkpoint-*.txt"))
    return url, home, cp


def test_old_ledger_verifies_as_legacy_unsigned(legacy):
    url, home, cp = legacy
    code, out = cli_run("audit", "verify", "--ledger", url, "--checkpoint", str(cp), "--json")
    rep = json.loads(out)
    assert code == 0, out
    assert rep["events"] == EVENTS and rep["legacy_unsigned_events"] == EVENTS and rep["signed_events"] == 0
    assert rep["signing_from"] is None and rep["problems"] == []
    assert rep["artifacts_checked"] == 7  # the baseline in config, three diffs, three logs


def test_old_ledger_reads(legacy):
    url, home, cp = legacy
    from tasks.workspace import baseline_for_campaign

    led = Ledger.open(url)
    opened = next(r.event for r in led.events() if isinstance(r.event, ev.CampaignOpened))
    assert opened.baseline_sha is None and "baseline_tree_sha" in opened.config
    assert baseline_for_campaign(led, opened.originator_id) == {"train.py": "LR = 0.001\nprint('hi')\n"}
    led.close()


@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_old_baseline_in_config_is_checked(legacy, how):
    url, home, cp = legacy
    led = Ledger.open(url)
    opened = next(r for r in led.events() if isinstance(r.event, ev.CampaignOpened))
    sha = opened.event.config["baseline_tree_sha"]
    if how == "replaced":
        replace_artifact(led, sha, b'{"train.py": "import os; os.system(\'evil\')"}')
    else:
        delete_artifact(led, sha)
    led.close()
    code, out = cli_run("audit", "verify", "--ledger", url)
    assert code == 1
    first = out.split("first divergence:", 1)[1].splitlines()[0]
    assert first.startswith(" [artifact]") and f"position {opened.position}:" in first, out


def test_upgrade_then_every_new_event_is_signed(legacy):
    url, home, cp = legacy
    code, out = cli_run("audit", "upgrade", "--ledger", url, "--key", str(home / "signing.key"))
    assert code == 0 and f"every event from position {EVENTS} on is signed" in out, out
    code, out = cli_run("audit", "upgrade", "--ledger", url, "--key", str(home / "signing.key"))
    assert code == 0 and "already signed" in out
    led = Ledger.open(url)
    from tests.ledger.test_signing import _trial

    _trial(led, 0, "human:x")  # the default writer, enrolled by the upgrade
    code, out = cli_run("audit", "verify", "--ledger", url, "--checkpoint", str(cp), "--json")
    rep = json.loads(out)
    assert code == 0, out
    assert rep["legacy_unsigned_events"] == EVENTS and rep["signing_from"] == EVENTS
    assert rep["signed_events"] == rep["events"] - EVENTS
    # after the upgrade an unsigned append is a problem, even sealed correctly
    raw = RawDB(led)
    e = ev.TrialQuarantined(originator_id=ev.trial_id_for(ev.campaign_id_for("legacy"), 0), originator_version=99,
                            actor="human:mallory", reason="forged")
    from ledger import codec

    topic, state = codec.encode(e)
    p = raw.append_sealed(e.originator_id, 99, topic, state)
    raw.close()
    led.close()
    code, out = cli_run("audit", "verify", "--ledger", url)
    assert code == 1
    assert out.split("first divergence:", 1)[1].splitlines()[0].startswith(f" [unsigned] position {p}:"), out


def test_upgrade_needs_the_ledger_key(legacy, tmp_path):
    url, home, cp = legacy
    from ledger.keys import generate_key

    generate_key(tmp_path / "other.key")
    code, out = cli_run("audit", "upgrade", "--ledger", url, "--key", str(tmp_path / "other.key"))
    assert code == 1 and "is not a key this ledger trusts" in out
