"""Initialise, checkpoint, verify and prove: the ledger's tamper evidence.

``verify`` recomputes every leaf from the stored rows (no decoder needed for that), compares it
with the sealed leaf at the same position, recomputes the root at every signed checkpoint and
checks each signature against the keys the ledger trusts, decodes every event, and checks that
every artifact an event refers to exists and matches its hash. It names the first divergence by
position. ``prove``/``check_proof`` give and check an RFC 6962 inclusion proof of one event
against a signed checkpoint, checkable by anyone with the checkpoint's public key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import events as ev
from ledger import merkle
from ledger.aggregates import LedgerRoot
from ledger.app import ConflictError, Ledger, __version__
from ledger.codec import DecodeError, decode, decode_raw, decompress_many, leaf_data
from ledger.events import ARTIFACT_FIELDS
from ledger.keys import Checkpoint, generate_key, key_id, load_key, public_hex, sign_checkpoint
from ledger.store import LedgerError


@dataclass
class Problem:
    position: int | None
    kind: str  # modified | missing | unsealed | truncated | root_mismatch | signature | decode | artifact | foreign
    message: str

    def sort_key(self) -> tuple[int, str]:
        return (self.position if self.position is not None else 1 << 62, self.kind)


@dataclass
class VerifyReport:
    size: int = 0
    root: str = ""
    events: int = 0
    checkpoints: int = 0
    artifacts: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def first(self) -> Problem | None:
        return min(self.problems, key=Problem.sort_key) if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "size": self.size, "root": self.root, "events": self.events,
                "checkpoints": self.checkpoints, "artifacts": self.artifacts,
                "problems": [p.__dict__ for p in sorted(self.problems, key=Problem.sort_key)]}


def default_key_path(led: Ledger) -> Path:
    env = os.environ.get("ARLEDGER_KEY")
    return Path(env) if env else led.home / "signing.key"


def init_ledger(url: str | None, key_path: Path | None = None, actor: str = "human:init") -> tuple[Ledger, Path, bool]:
    """Create the store (if needed), a signing key (if needed) and the LedgerInitialized event.
    Returns (ledger, key path, created). Idempotent: an initialised ledger is left as it is."""
    led = Ledger.open(url, create=True)
    kp = key_path or default_key_path(led)
    if led.is_initialised():
        return led, kp, False
    key = load_key(kp) if kp.exists() else generate_key(kp)
    pub = public_hex(key)
    root = LedgerRoot()
    root._trigger(ev.LedgerInitialized, public_key=pub, key_id=key_id(pub), arledger_version=__version__, actor=actor)
    try:
        led.save(root)
    except ConflictError:
        return led, kp, False
    return led, kp, True


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
    for _ in range(20):
        size, root = led.root()
        cp = sign_checkpoint(key, lid, size, root.hex())
        agg = led.ledger_root()
        agg._trigger(ev.CheckpointSigned, size=cp.size, root=cp.root, key_id=cp.key_id, signature=cp.signature,
                     ledger_name=led.cfg.url, actor=actor)
        try:
            led.save(agg)
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


def verify(led: Ledger, checkpoint: Checkpoint | None = None, *, decode_events: bool = True,
           check_artifacts: bool = True, progress: Callable[[int], None] | None = None,
           checkpoint_source: str = "checkpoint file") -> VerifyReport:
    rep = VerifyReport()
    rec = led.recorder
    leaves_it = rec.iter_leaves()
    recomputed: list[bytes] = []
    trusted: dict[str, str] = {}
    cps: list[tuple[int, ev.CheckpointSigned]] = []
    shas: dict[str, int] = {}
    pos = 0
    sealed_done = False
    missing_reported = False
    batch: list[Any] = []

    def flush() -> None:
        nonlocal pos, sealed_done, missing_reported
        base = pos
        leaves = [_leaf(base + i, r) for i, r in enumerate(batch)]
        recomputed.extend(leaves)
        stored = [] if sealed_done else list(itertools.islice(leaves_it, len(batch)))
        if len(stored) < len(batch):
            sealed_done = True
        if [bytes(s[2]) for s in stored] != leaves[: len(stored)]:
            for i, (_spos, snid, sleaf) in enumerate(stored):
                nid, topic = batch[i][0], batch[i][3]
                if bytes(sleaf) == leaves[i]:
                    continue
                p = base + i
                if snid != nid and not missing_reported:
                    missing_reported = True
                    rep.problems.append(Problem(p, "missing", f"position {p}: the sealed event (notification "
                                                f"{snid}) is missing; found notification {nid} there — events were "
                                                "deleted or inserted"))
                elif snid == nid:
                    rep.problems.append(Problem(p, "modified", f"position {p} (notification {nid}, "
                                                f"{_short(topic)}): stored bytes differ from the sealed leaf — the "
                                                "event was modified, swapped or replaced"))
        if len(stored) < len(batch):
            p = base + len(stored)
            nid, topic = batch[len(stored)][0], batch[len(stored)][3]
            rep.problems.append(Problem(p, "unsealed", f"position {p} (notification {nid}, {_short(topic)}): "
                                        "event is not sealed in the Merkle log — written outside arledger "
                                        "(forged) or an unsealed tail"))
        pos += len(batch)
        batch.clear()
        if progress is not None:
            progress(pos)

    worker = None
    if decode_events and _can_fork(rec):
        # decoding runs in a second process over its own read connection, beside the Merkle pass
        import multiprocessing

        global _FORK_RECORDER
        _FORK_RECORDER = rec
        worker = multiprocessing.get_context("fork").Pool(1)
        pending = worker.apply_async(_decode_pass_forked, (check_artifacts,))
    for row in rec.iter_rows():
        batch.append(row)
        if len(batch) >= 4096:
            flush()
    if batch:
        flush()
    if decode_events:
        if worker is not None:
            dprobs, trusted, cps, shas = pending.get()
            worker.close()
            worker.join()
        else:
            dprobs, trusted, cps, shas = _decode_pass(rec, check_artifacts)
        rep.problems.extend(dprobs)
    for spos, snid, _ in leaves_it:
        rep.problems.append(Problem(spos, "missing", f"positions {spos}..: sealed events (from notification {snid}) "
                                    "are missing — the log was truncated or rows deleted"))
        break
    rep.events = pos
    rep.size = pos
    size_state, frontier_bytes = rec.tree_state()
    # roots at every size a checkpoint speaks of, in one pass
    wanted = {c.size for _, c in cps if c.size <= pos}
    if checkpoint is not None and checkpoint.size <= pos:
        wanted.add(checkpoint.size)
    roots = _roots_at(recomputed, wanted)
    full_root = merkle.root(recomputed)
    rep.root = full_root.hex()
    if size_state != pos or merkle.Frontier.from_bytes(frontier_bytes).root() != full_root:
        if not any(p.kind in ("unsealed", "missing") for p in rep.problems):
            rep.problems.append(Problem(None, "root_mismatch", f"the stored tree head (size {size_state}) disagrees "
                                        f"with the {pos} stored events"))
    lid = recomputed[0].hex()[:32] if recomputed else ""
    for cpos, c in cps:
        rep.checkpoints += 1
        from ledger.keys import checkpoint_message, verify_signature

        pub = trusted.get(c.key_id)
        if pub is None:
            rep.problems.append(Problem(cpos, "signature", f"checkpoint recorded at position {cpos} is signed by key "
                                        f"{c.key_id}, which this ledger does not trust"))
        elif not verify_signature(pub, checkpoint_message(lid, c.size, c.root), c.signature):
            rep.problems.append(Problem(cpos, "signature", f"checkpoint recorded at position {cpos} (size {c.size}): "
                                        "signature does not verify — the checkpoint or the log before it was altered"))
        if c.size > pos:
            rep.problems.append(Problem(pos, "truncated", f"checkpoint at position {cpos} covers {c.size} events but "
                                        f"only {pos} exist"))
        elif roots[c.size].hex() != c.root:
            first_bad = _first_bad(rep, c.size)
            rep.problems.append(Problem(first_bad, "root_mismatch", f"checkpoint recorded at position {cpos} (size "
                                        f"{c.size}) does not match the log: root {c.root[:16]}… signed, "
                                        f"{roots[c.size].hex()[:16]}… recomputed"))
    if checkpoint is not None:
        rep.checkpoints += 1
        _check_external(rep, checkpoint, lid, trusted, roots, pos, checkpoint_source)
    if check_artifacts:
        for s, first_pos in shas.items():
            why = led.artifacts.check(s)
            rep.artifacts += 1
            if why is not None:
                rep.problems.append(Problem(first_pos, "artifact", f"position {first_pos}: {why}"))
    return rep


_FORK_RECORDER: Any = None


def _decode_pass_forked(check_artifacts: bool) -> Any:
    return _decode_pass(_FORK_RECORDER, check_artifacts)


def _can_fork(rec: Any) -> bool:
    from ledger.recorders import SealedSQLiteRecorder

    return isinstance(rec, SealedSQLiteRecorder) and (os.cpu_count() or 1) >= 2 and hasattr(os, "fork")


def _decode_pass(rec: Any, check_artifacts: bool) -> tuple[list[Problem], dict[str, str],
                                                            list[tuple[int, ev.CheckpointSigned]], dict[str, int]]:
    """Decode every stored event; collect trusted keys, recorded checkpoints and artifact references."""
    problems: list[Problem] = []
    trusted: dict[str, str] = {}
    cps: list[tuple[int, ev.CheckpointSigned]] = []
    shas: dict[str, int] = {}
    base = 0
    batch: list[Any] = []

    def run() -> None:
        raws = decompress_many([r[4] for r in batch])
        for i, r in enumerate(batch):
            p = base + i
            try:
                e = decode_raw(r[3], raws[i])
                oid = r[1]
                if e.originator_version != r[2] or (
                    e.originator_id.hex != oid if isinstance(oid, str) else e.originator_id != oid
                ):
                    raise DecodeError(f"event says {e.originator_id} v{e.originator_version}, "
                                      f"row says {oid} v{r[2]}")
            except DecodeError as err:
                problems.append(Problem(p, "decode", f"position {p}: event does not decode: {err}"))
                continue
            t = type(e)
            if t is ev.LedgerInitialized or t is ev.KeyAdded:
                trusted[e.key_id] = e.public_key
            elif t is ev.CheckpointSigned:
                cps.append((p, e))
            if check_artifacts:
                for name in ARTIFACT_FIELDS[t]:
                    v = getattr(e, name)
                    if v and v not in shas:
                        shas[v] = p

    for row in rec.iter_rows():
        batch.append(row)
        if len(batch) >= 4096:
            run()
            base += len(batch)
            batch.clear()
    if batch:
        run()
    return problems, trusted, cps, shas


def _check_external(rep: VerifyReport, cp: Checkpoint, lid: str, trusted: dict[str, str],
                    roots: dict[int, bytes], size: int, source: str) -> None:
    if cp.ledger_id != lid:
        rep.problems.append(Problem(None, "foreign", f"{source} is from another ledger (ledger {cp.ledger_id}, "
                                    f"this ledger is {lid or 'empty'})"))
        return
    if not cp.signature_ok():
        rep.problems.append(Problem(cp.size - 1 if cp.size else None, "signature", f"{source} (covering positions "
                                    f"0..{cp.size - 1}): signature does not verify — the checkpoint file was altered"))
    elif cp.key_id not in trusted:
        rep.problems.append(Problem(None, "signature", f"{source} is signed by key {cp.key_id}, which this ledger "
                                    "does not trust"))
    if cp.size > size:
        rep.problems.append(Problem(size, "truncated", f"the ledger has {size} events but {source} covers {cp.size}: "
                                    f"positions {size}..{cp.size - 1} are missing — the log was truncated"))
    elif roots[cp.size].hex() != cp.root:
        rep.problems.append(Problem(_first_bad(rep, cp.size), "root_mismatch", f"{source} (size {cp.size}) does "
                                    "not match the log: the first {cp.size} events are not the ones it signed"))


def _first_bad(rep: VerifyReport, size: int) -> int | None:
    cands = [p.position for p in rep.problems if p.position is not None and p.position < size]
    return min(cands) if cands else None


_HEAD = struct.Struct(">QQ")
_topic_bytes: dict[str, bytes] = {}


def _leaf(position: int, row: Any) -> bytes:
    """The leaf hash of a stored row (same bytes as codec.leaf_data, inlined for speed)."""
    _nid, oid, ver, topic, state = row
    tb = _topic_bytes.get(topic)
    if tb is None:
        t = topic.encode()
        tb = _topic_bytes[topic] = len(t).to_bytes(2, "big") + t
    ob = bytes.fromhex(oid) if isinstance(oid, str) and len(oid) == 32 else _uuid(oid).bytes
    return hashlib.sha256(b"\x00" + _HEAD.pack(position, ver) + ob + tb + state).digest()


def _roots_at(leaves: list[bytes], sizes: set[int]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    if not sizes:
        return out
    if len(sizes) <= 2:
        return {s: merkle.root(leaves[:s]) for s in sizes}
    fr = merkle.Frontier()
    todo = sorted(sizes)
    i = 0
    if todo[0] == 0:
        out[0] = fr.root()
        i = 1
    for n, leaf in enumerate(leaves, start=1):
        fr.append(leaf)
        while i < len(todo) and todo[i] == n:
            out[n] = fr.root()
            i += 1
        if i >= len(todo):
            break
    return out


def _short(topic: str) -> str:
    return topic.split(".")[1] if topic.count(".") >= 2 else topic


def _uuid(v: Any) -> uuid.UUID:
    return v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))


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
