"""Initialise, upgrade, checkpoint, verify and prove: the ledger's tamper evidence.

``init_ledger`` makes the ledger key and writes the first events (LedgerInitialized and
SigningStarted), signed by that key, then enrols this machine's default writer. ``upgrade_ledger``
moves a ledger written before signing existed forward: from its SigningStarted on, every event is
signed. ``verify`` (``ledger.verify``) recomputes everything and names the first divergence.
``prove``/``check_proof`` give and check an RFC 6962 inclusion proof of one event against a signed
checkpoint, checkable by anyone with the checkpoint's public key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger import events as ev
from ledger import merkle
from ledger.aggregates import LedgerRoot
from ledger.app import ConflictError, Ledger, __version__
from ledger.codec import decode, leaf_data
from ledger.identity import default_actor, default_ledger_key_path, ledger_signer, signer_for
from ledger.keys import Checkpoint, generate_key, key_id, load_key, public_hex, sign_checkpoint
from ledger.store import LedgerError
from ledger.verify import Problem, SignerTally, VerifyReport, verify

__all__ = ["Problem", "SignerTally", "VerifyReport", "check_proof", "default_key_path", "dump_proof", "init_ledger",
           "make_checkpoint", "prove", "upgrade_ledger", "verify"]


def default_key_path(led: Ledger) -> Path:
    return default_ledger_key_path(led)


def init_ledger(url: str | None, key_path: Path | None = None, actor: str | None = None) -> tuple[Ledger, Path, bool]:
    """Create the store (if needed), the ledger key (if needed, mode 0600) and the first events:
    LedgerInitialized and SigningStarted, signed by that key; then enrol this machine's default
    writer (``identity.default_actor``). Returns (ledger, key path, created). Idempotent: an
    initialised ledger is left as it is (the returned ledger remembers the key path)."""
    led = Ledger.open(url, create=True)
    kp = key_path or default_key_path(led)
    actor = actor or default_actor()
    if kp.exists():
        led.remember_ledger_key(kp)
    if led.is_initialised():
        return led, kp, False
    key = load_key(kp) if kp.exists() else generate_key(kp)
    led.remember_ledger_key(kp)
    pub = public_hex(key)
    root = LedgerRoot()
    root._trigger(ev.LedgerInitialized, public_key=pub, key_id=key_id(pub), arledger_version=__version__, actor=actor)
    root._trigger(ev.SigningStarted, actor=actor, reason="a new ledger: every event is signed")
    try:
        led.with_signer(ledger_signer(key)).save(root)
    except ConflictError:
        return led, kp, False
    signer_for(led, default_actor())
    return led, kp, True


def upgrade_ledger(led: Ledger, key_path: Path | None = None, actor: str | None = None) -> tuple[int | None, bool]:
    """Move a ledger written before signing existed forward: append SigningStarted (signed by the
    ledger key), after which every event must be signed, and enrol this machine's default writer.
    Returns (position of the SigningStarted, whether this call wrote it)."""
    kp = key_path or led.ledger_key_path or default_key_path(led)
    key = load_key(kp)
    root = led.ledger_root()
    if key_id(public_hex(key)) not in root.public_keys:
        raise LedgerError(f"the key {kp} is not a key this ledger trusts (trusted key ids: "
                          f"{', '.join(root.public_keys) or 'none'}); pass the key `arledger init` made with --key")
    led.remember_ledger_key(kp)
    actor = actor or default_actor()
    writer = led.with_signer(ledger_signer(key))
    for _ in range(20):
        root = led.ledger_root()
        if root.signing_started is not None:
            return _position_of(led, root.signing_started), False
        e = root._trigger(ev.SigningStarted, actor=actor, reason="upgrade: from here on every event is signed")
        try:
            writer.save(root)
        except ConflictError:
            continue
        signer_for(led, default_actor())
        return _position_of(led, e), True
    raise LedgerError("could not upgrade: the ledger is too busy; try again")


def _position_of(led: Ledger, e: ev.Event) -> int | None:
    for r in led.events(types=(type(e),)):
        if r.event.originator_id == e.originator_id and r.event.originator_version == e.originator_version:
            return r.position
    return None


def make_checkpoint(led: Ledger, key_path: Path | None = None, write_to: Path | None = None,
                    actor: str = "human:checkpoint") -> tuple[Checkpoint, Path | None]:
    """Sign the current (size, root), record it in the ledger, write it to a file."""
    key = load_key(key_path or default_key_path(led))
    root_agg = led.ledger_root()
    pub = public_hex(key)
    if key_id(pub) not in root_agg.public_keys:
        raise LedgerError(
            f"the signing key {key_path or default_key_path(led)} is not one this ledger trusts "
            f"(trusted key ids: {', '.join(root_agg.public_keys) or 'none'}); use the key `arledger init` made"
        )
    lid = led.ledger_id()
    writer = led.with_signer(ledger_signer(key))
    for _ in range(20):
        size, root = led.root()
        cp = sign_checkpoint(key, lid, size, root.hex())
        agg = led.ledger_root()
        agg._trigger(ev.CheckpointSigned, size=cp.size, root=cp.root, key_id=cp.key_id, signature=cp.signature,
                     ledger_name=led.cfg.url, actor=actor)
        try:
            writer.save(agg)
            break
        except ConflictError:
            continue
    else:
        raise LedgerError("could not record the checkpoint: the ledger is too busy; try again")
    path = None
    if write_to is not None:
        path = write_to / f"checkpoint-{cp.size:08d}.txt" if write_to.is_dir() else write_to
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cp.to_text())
    return cp, path


# proofs ----------------------------------------------------------------------------------------

def prove(led: Ledger, position: int, cp: Checkpoint) -> dict[str, Any]:
    """An inclusion proof of the event at ``position`` in the tree a checkpoint signed."""
    leaves = [bytes(leaf) for _, _, leaf in led.recorder.iter_leaves()]
    if cp.ledger_id != (leaves[0].hex()[:32] if leaves else ""):
        raise LedgerError("the checkpoint is from another ledger")
    if not 0 <= position < cp.size:
        raise LedgerError(f"position {position} is outside the checkpoint (size {cp.size}); "
                          "make a newer checkpoint with `arledger audit checkpoint`")
    if merkle.root(leaves[: cp.size]).hex() != cp.root:
        raise LedgerError("this ledger no longer matches the checkpoint; run `arledger audit verify`")
    row = None
    for i, r in enumerate(led.recorder.iter_rows()):
        if i == position:
            row = r
            break
    assert row is not None
    nid, oid, ver, topic, state = row
    data = leaf_data(position, oid, ver, topic, state)
    proof = merkle.inclusion_proof(leaves[: cp.size], position)
    return {
        "format": "arledger-inclusion-proof/v1",
        "position": position,
        "leaf_data": data.hex(),
        "event": decode(topic, state).to_builtins(),
        "proof": [h.hex() for h in proof],
        "checkpoint": cp.to_text(),
    }


def check_proof(doc: dict[str, Any], trusted_public_key: str | None = None) -> tuple[bool, str]:
    """Check a proof document alone: leaf → root via the path, root signed by the checkpoint key."""
    try:
        cp = Checkpoint.from_text(doc["checkpoint"], source="proof checkpoint")
        data = bytes.fromhex(doc["leaf_data"])
        proof = [bytes.fromhex(h) for h in doc["proof"]]
        position = int(doc["position"])
    except (KeyError, ValueError, TypeError) as e:
        return False, f"not an arledger inclusion proof ({e})"
    if trusted_public_key and trusted_public_key != cp.public_key:
        return False, "the checkpoint is signed by a different key than the one you trust"
    if not cp.signature_ok():
        return False, "the checkpoint's signature does not verify"
    if int.from_bytes(data[:8], "big") != position:
        return False, "the leaf data is for a different position"
    if not merkle.verify_inclusion(merkle.leaf_hash(data), position, cp.size, proof, bytes.fromhex(cp.root)):
        return False, f"the event is NOT included at position {position} in the signed tree of size {cp.size}"
    return True, f"event at position {position} is included in the tree of size {cp.size} signed by key {cp.key_id}"


def dump_proof(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, default=str)
