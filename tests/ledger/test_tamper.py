"""Every kind of tampering with a real ledger is caught by `arledger audit verify`, by position."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from arledger.cli import cli
from ledger import codec
from ledger import events as ev
from ledger.app import Ledger
from tests.ledger.ledgerkit import RawDB, delete_artifact, populate, replace_artifact


def run_verify(url: str, checkpoint=None) -> tuple[int, str]:
    args = ["audit", "verify", "--ledger", url]
    if checkpoint is not None:
        args += ["--checkpoint", str(checkpoint)]
    res = CliRunner().invoke(cli, args)
    return res.exit_code, res.output


@pytest.fixture
def setup(any_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    led, cp_path = populate(any_url, tmp_path)
    code, out = run_verify(any_url, cp_path)
    assert code == 0, out
    assert out.startswith("OK:")
    raw = RawDB(led)
    yield any_url, led, raw, cp_path
    raw.close()
    led.close()


def _assert_detected(url, cp, position, word) -> str:
    code, out = run_verify(url, cp)
    assert code == 1, out
    assert "FAILED" in out
    first = out.split("first divergence:")[1].splitlines()[0]
    assert re.search(rf"\bpositions? {position}\b", first), first
    assert word in out, out
    return out


def test_flipped_byte(setup):
    url, led, raw, cp = setup
    raw.flip_byte(7)
    _assert_detected(url, cp, 7, "modified")


def test_middle_event_deleted(setup):
    url, led, raw, cp = setup
    raw.delete(10)
    _assert_detected(url, cp, 10, "missing")


def test_two_events_swapped(setup):
    url, led, raw, cp = setup
    raw.swap(4, 9)
    _assert_detected(url, cp, 4, "swapped")


def test_forged_event_inserted(setup):
    url, led, raw, cp = setup
    n = len(raw.rows())
    forged = ev.TrialQuarantined(originator_id=ev.LEDGER_ID, originator_version=99, actor="human:mallory",
                                 reason="forged")
    topic, state = codec.encode(forged)
    raw.insert(ev.LEDGER_ID, 99, topic, state)
    _assert_detected(url, cp, n, "forged")


def test_tail_truncated_against_outside_checkpoint(setup):
    url, led, raw, cp = setup
    keep = raw.truncate(4)
    # internally consistent after a careful truncation: only the outside checkpoint can tell
    out = _assert_detected(url, cp, keep, "truncated")
    assert "missing" in out


def test_checkpoint_signature_altered(setup, tmp_path):
    url, led, raw, cp = setup
    text = cp.read_text()
    sig = re.search(r"signature: ([0-9a-f]+)", text).group(1)
    bad = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
    altered = tmp_path / "altered.txt"
    altered.write_text(text.replace(sig, bad))
    size = int(re.search(r"size: (\d+)", text).group(1))
    code, out = run_verify(url, altered)
    assert code == 1 and "signature does not verify" in out
    assert f"positions 0..{size - 1}" in out


def test_artifact_content_replaced(setup):
    url, led, raw, cp = setup
    e = next(r for r in Ledger.events(led) if isinstance(r.event, ev.TrialProposed))
    replace_artifact(led, e.event.diff_sha, b"--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-x\n+evil\n")
    _assert_detected(url, cp, e.position, "does not match its hash")


def test_artifact_deleted(setup):
    url, led, raw, cp = setup
    e = [r for r in Ledger.events(led) if isinstance(r.event, ev.TrialProposed)][3]
    delete_artifact(led, e.event.diff_sha)
    _assert_detected(url, cp, e.position, "missing from the store")


def test_checkpoint_from_another_ledger(setup, tmp_path):
    url, led, raw, cp = setup
    other_led, other_cp = populate(f"sqlite:{tmp_path}/other/ledger.db", tmp_path / "o", trials=2)
    other_led.close()
    code, out = run_verify(url, other_cp)
    assert code == 1 and "from another ledger" in out
