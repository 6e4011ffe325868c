"""A ledger written before verdicts were events (tests/fixtures/legacy-campaign, made by the code at
c024fb8) still verifies and reads: its promotion relabels are the keep verdict, not corrections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import invoke

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy-campaign"


@pytest.fixture
def url(tmp_path: Path) -> str:
    shutil.copytree(FIXTURE, tmp_path / "store")
    return f"sqlite:{tmp_path}/store/ledger.db"


def test_an_old_ledger_verifies_with_its_events_legacy_unsigned(url: str) -> None:
    rep = json.loads(invoke("audit", "verify", "--json", "--ledger", url).output)
    assert rep["ok"] is True and rep["unsigned_events"] == rep["events"] and rep["signed_events"] == 0
    relabels = invoke("log", "--type", "TrialRelabelled", "--json", "--ledger", url).output.splitlines()
    assert [json.loads(x)["status"] for x in relabels] == ["baseline", "keep"]  # nothing rewritten


def test_its_promotion_relabel_reads_as_the_keep_verdict(url: str) -> None:
    show = invoke("show", "2", "--ledger", url)
    assert show.exit_code == 0 and "old #002 — opt (surface opt) · proposal · keep" in show.output
    assert "Verdict: keep by agent:campaign" in show.output and "corrected" not in show.output
    d = json.loads(invoke("show", "2", "--json", "--ledger", url).output)
    assert d["label"] == "discard" and d["state"] == "keep" and d["relabels"] == 0
    assert d["verdict"]["policy"] == "promotion (recorded as a relabel)"
    conf = json.loads(invoke("show", "3", "--json", "--ledger", url).output)
    assert conf["state"] == "confirmation of #2"
    base = json.loads(invoke("show", "0", "--json", "--ledger", url).output)
    assert base["state"] == "baseline" and base["relabels"] == 0


def test_status_lineage_and_audit_show_the_same_keep(url: str) -> None:
    [c] = json.loads(invoke("status", "--json", "--ledger", url).output)["campaigns"]
    assert c["keeps"] == 1 and c["best_trial"] == 2 and c["best_runs"] == 2
    lin = invoke("lineage", "--ledger", url).output
    assert "#002 [opt, keep, value=0.25" in lin and "#003 [opt, confirmation of #2" in lin
    rep = json.loads(invoke("audit", "report", "--json", "--ledger", url).output)
    assert rep["campaigns"][0]["corrections"] == []
