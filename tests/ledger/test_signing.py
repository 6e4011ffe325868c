"""Every writer signs as itself: keys made and enrolled on first use, a second host enrolled with
`arledger keys trust`, and verify counting each actor's events."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from arledger.cli import cli
from ledger import events as ev
from ledger.aggregates import Campaign, Trial
from ledger.app import Ledger
from ledger.audit import init_ledger, verify
from ledger.identity import default_actor, key_path_for, signer_for
from ledger.store import LedgerError

ROOT = Path(__file__).resolve().parents[2]


def _trial(led: Ledger, n: int, actor: str) -> None:
    cid = ev.campaign_id_for("signed")
    c = led.load(Campaign, cid)
    if c.opened is None:
        c = Campaign.open(name="signed", actor=actor, task="t", task_version="1", task_sha="0" * 64, metric="m",
                          direction="min")
    t = Trial.propose(cid, n, actor=actor, specialist="s", surface="s", hypothesis=f"h{n}")
    c.register(t.id, n, "s", "proposal", actor)
    led.save(c, t)


def test_signer_for_makes_enrols_and_signs(any_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    led, kp, _ = init_ledger(any_url, tmp_path / "ledger.key")
    runner = signer_for(led, "runner:host-3")
    path = key_path_for(led, "runner:host-3")
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signer_for(led, "runner:host-3").key_id == runner.key_id  # the same key next time
    w = led.with_signer(runner)
    for n in range(3):
        _trial(w, n, "runner:host-3")
    _trial(led, 3, "human:x")  # the default writer of this machine
    rep = verify(led)
    assert rep.ok, [p.message for p in rep.problems]
    assert rep.signers["runner:host-3"].events == 7 and rep.signers["runner:host-3"].key_ids == [runner.key_id]
    assert rep.signers[default_actor()].events == 2
    assert rep.signed_events == rep.events and rep.unsigned_events == 0
    root = led.ledger_root()
    assert runner.key_id in root.signers["runner:host-3"]
    led.close()


def test_actor_from_environment(sqlite_url, tmp_path, monkeypatch):
    led, kp, _ = init_ledger(sqlite_url, tmp_path / "ledger.key")
    led.close()
    monkeypatch.setenv("ARLEDGER_ACTOR", "agent:campaign")
    monkeypatch.setenv("ARLEDGER_KEY", str(kp))
    led = Ledger.open(sqlite_url)
    _trial(led, 0, "agent:campaign")
    assert verify(led).signers["agent:campaign"].events == 3
    led.close()


def _second_host(url: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    """A runner on another machine: its own ARLEDGER_HOME, no ledger key."""
    env = dict(os.environ, ARLEDGER_HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("ARLEDGER_KEY", None)
    code = ("import sys; from ledger.app import Ledger; from ledger.identity import signer_for\n"
            "from tests.ledger.test_signing import _trial\n"
            "led = Ledger.open(sys.argv[1])\n"
            "try:\n"
            "    s = signer_for(led, 'runner:host-9')\n"
            "except Exception as e:\n"
            "    print('REFUSED', type(e).__name__, e); sys.exit(3)\n"
            "_trial(led.with_signer(s), 7, 'runner:host-9'); print('WROTE', s.key_id)\n")
    return subprocess.run([sys.executable, "-c", code, url], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_second_host_is_enrolled_with_keys_trust(any_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    led, kp, _ = init_ledger(any_url, tmp_path / "ledger.key")
    url = any_url
    if led.cfg.kind == "sqlite":  # the other host reaches the same file, but not the key
        url = f"sqlite:{led.cfg.path}"
    first = _second_host(url, tmp_path / "host9-home", tmp_path / "elsewhere")
    assert first.returncode == 3, first.stdout + first.stderr
    msg = first.stdout
    assert "REFUSED LedgerError runner:host-9 (key " in msg and "is not trusted by" in msg
    pub = msg.split("arledger keys trust runner:host-9 ")[1].split()[0]
    assert len(pub) == 64
    assert "Traceback" not in first.stderr
    before = led.size()
    assert led.size() == before  # nothing was written by the refused writer
    res = CliRunner().invoke(cli, ["keys", "trust", "runner:host-9", pub, "--ledger", url, "--key", str(kp)])
    assert res.exit_code == 0, res.output
    assert "trusted runner:host-9's key" in res.output
    again = _second_host(url, tmp_path / "host9-home", tmp_path / "elsewhere")
    assert again.returncode == 0 and again.stdout.startswith("WROTE"), again.stdout + again.stderr
    rep = verify(led)
    assert rep.ok and rep.signers["runner:host-9"].events == 3
    out = CliRunner().invoke(cli, ["keys", "list", "--ledger", url]).output
    assert "runner:host-9" in out
    led.close()


def test_explicit_signer_without_trust_is_refused(sqlite_url, tmp_path):
    """Through the library, a writer whose key the ledger does not trust cannot append (here the
    ledger key is not where a new process looks for it)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.keys import Signer

    led, _, _ = init_ledger(sqlite_url, tmp_path / "ledger.key")
    led.close()
    other = Ledger.open(sqlite_url, signer=Signer("runner:mallory", Ed25519PrivateKey.generate()))
    size = other.size()
    with pytest.raises(LedgerError, match=r"runner:mallory \(key [0-9a-f]{16}\) is not trusted .*`arledger keys trust runner:mallory [0-9a-f]{64}"):
        _trial(other, 0, "runner:mallory")
    assert other.size() == size
    other.close()


def test_ledger_key_not_usable_as_an_actor(sqlite_url, tmp_path):
    led, _, _ = init_ledger(sqlite_url, tmp_path / "ledger.key")
    with pytest.raises(LedgerError, match="not a usable actor name"):
        signer_for(led, "ledger")
    led.close()


def test_concurrent_first_use_by_two_processes(any_url, tmp_path, monkeypatch):
    """Two processes of the same new actor start together: one key, enrolled once, both write."""
    monkeypatch.chdir(tmp_path)
    led, kp, _ = init_ledger(any_url, tmp_path / "ledger.key")
    env = dict(os.environ, PYTHONPATH=str(ROOT), ARLEDGER_KEY=str(kp))
    code = ("import sys; from ledger.app import Ledger; from ledger.identity import signer_for\n"
            "from tests.ledger.test_signing import _trial\n"
            "from ledger.app import ConflictError\n"
            "led = Ledger.open(sys.argv[1]); s = signer_for(led, 'runner:pair')\n"
            "n = int(sys.argv[2])\n"
            "for i in range(20):\n"
            "    try:\n"
            "        _trial(led.with_signer(s), n, 'runner:pair'); break\n"
            "    except ConflictError:\n"
            "        pass\n"
            "print(s.key_id)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, any_url, str(i)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert outs[0][0] == outs[1][0]
    rep = verify(led)
    assert rep.ok, [p.message for p in rep.problems]
    assert rep.signers["runner:pair"].events == 5
    assert len(led.ledger_root().signers["runner:pair"]) == 1
    led.close()


def test_keys_trust_refuses_a_bad_key(sqlite_url, tmp_path):
    led, kp, _ = init_ledger(sqlite_url, tmp_path / "ledger.key")
    led.close()
    res = CliRunner().invoke(cli, ["keys", "trust", "runner:x", "nothex", "--ledger", sqlite_url, "--key", str(kp)])
    assert res.exit_code == 1 and "is not an Ed25519 public key" in res.output
    res = CliRunner().invoke(cli, ["keys", "trust", "runner:x", "ab" * 32, "--ledger", sqlite_url,
                                   "--key", str(tmp_path / "nope.key")])
    assert res.exit_code == 1 and "not found" in res.output


def test_verify_json_counts_per_signer(sqlite_url, tmp_path):
    led, _, _ = init_ledger(sqlite_url, tmp_path / "ledger.key")
    _trial(led.with_signer(signer_for(led, "agent:campaign")), 0, "agent:campaign")
    led.close()
    res = CliRunner().invoke(cli, ["audit", "verify", "--ledger", sqlite_url, "--json"])
    rep = json.loads(res.output)
    assert rep["signers"]["agent:campaign"]["events"] == 3
    assert rep["signed_events"] == rep["events"]
