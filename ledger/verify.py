"""``audit verify``: recompute everything from the stored rows, trust nothing stored, name the first
divergence by position.

What is checked, and where the time goes:

* **The Merkle log.** Every stored row's leaf is recomputed (position, version, originator id,
  topic, stored bytes; no decoder) and compared with the sealed leaf at its position; the root is
  recomputed and compared with the stored tree head and with every signed checkpoint (recorded in
  the ledger, or a file held elsewhere). Deleted, inserted, swapped, modified, truncated and
  malformed rows (wrong column types, ids that are not UUIDs) are named by position.
* **Signatures.** Every signature row (one per append) is checked against the digests of the events
  it covers (``codec.event_digest``: the row without its position) and the artifact references it
  lists; its key must be a ledger key (LedgerInitialized, KeyAdded) or an actor key a ledger key
  endorsed (SignerEnrolled) before it. From ``signing_from`` (the first SigningStarted, or the first
  signed append if earlier) every event must be covered by a valid, trusted signature: a missing,
  wrong or untrusted signature is a named problem even when the leaf is right. Earlier events are
  legacy unsigned: counted, not a problem. Signed events are reported per actor.
* **Artifacts.** Every reference — the signed lists (built by the artifact rule, ``ledger.refs``,
  when the event was written), the decoded fields of unsigned events and the legacy places
  (``CampaignOpened.config["baseline_tree_sha"]``) — must exist in the store; every object in the
  store is re-hashed against its own address, and objects nothing refers to are reported (an orphan
  that does not match its address is a problem). A missing store is one problem, named as such.
* **Decoding.** Key, checkpoint and legacy-reference events, and every unsigned event, are decoded;
  a signed event's bytes are exactly what its trusted writer encoded (the encoder validated them),
  so by default they are not decoded again. ``deep=True`` (``--deep``) decodes every event as well
  and checks that each signed reference list matches the decoded fields.

The row scan runs in forked worker processes over position ranges (each reads its own connection),
which hash, seal-compare, check signatures and decode their part; the parent combines block roots.
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import multiprocessing
import os
import struct
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ledger import events as ev
from ledger import merkle
from ledger.artifacts import ArtifactStore, check_object
from ledger.codec import DecodeError, decode_raw, decompress_many
from ledger.keys import (
    GENESIS_LEDGER_ID,
    REF_ROW,
    Checkpoint,
    append_message,
    checkpoint_message,
    endorsement_message,
    key_id,
    verify_raw,
    verify_signature,
)
from ledger.rawscan import EVENTS, LEAVES, SIGNATURES, TREE, MemorySource, Source, SourceError, source_for
from ledger.refs import LEGACY_TOPICS, artifact_shas, legacy_refs

BLOCK_H = 12
BLOCK = 1 << BLOCK_H
PARALLEL_MIN = 2 * BLOCK  # rows from which the scan is split across processes
PARALLEL_SIGNATURES = 256  # or signature rows (~80 us each to check)

_KIND_ORDER = {"missing_table": 0, "malformed": 1, "modified": 1, "missing": 1, "unsealed": 1, "truncated": 2,
               "root_mismatch": 3, "decode": 4, "bad_signature": 5, "untrusted": 5, "unsigned": 5, "refs": 6,
               "signature": 6, "artifact_store": 7, "artifact": 7, "orphan": 8, "foreign": 9}
KEY_TOPICS = frozenset(ev.TOPIC_OF[t] for t in (ev.LedgerInitialized, ev.KeyAdded, ev.SignerEnrolled,
                                                ev.SigningStarted, ev.CheckpointSigned))


@dataclass
class Problem:
    position: int | None
    kind: str  # see _KIND_ORDER
    message: str

    def sort_key(self) -> tuple[int, int, str]:
        return (self.position if self.position is not None else 1 << 62, _KIND_ORDER.get(self.kind, 9), self.kind)


@dataclass
class SignerTally:
    actor: str
    key_ids: list[str] = field(default_factory=list)
    events: int = 0


@dataclass
class VerifyReport:
    size: int = 0
    root: str = ""
    events: int = 0
    checkpoints: int = 0
    artifacts_checked: int = 0
    objects: int = 0
    orphan_artifacts: int = 0
    orphans: list[str] = field(default_factory=list)  # the first few, by sha
    signed_events: int = 0
    unsigned_events: int = 0
    legacy_unsigned_events: int = 0
    signing_from: int | None = None
    signers: dict[str, SignerTally] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def first(self) -> Problem | None:
        return min(self.problems, key=Problem.sort_key) if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "size": self.size, "root": self.root, "events": self.events,
                "checkpoints": self.checkpoints, "artifacts_checked": self.artifacts_checked,
                "objects": self.objects, "orphan_artifacts": self.orphan_artifacts, "orphans": self.orphans,
                "signed_events": self.signed_events, "unsigned_events": self.unsigned_events,
                "legacy_unsigned_events": self.legacy_unsigned_events, "signing_from": self.signing_from,
                "signers": {a: {"events": t.events, "key_ids": t.key_ids} for a, t in sorted(self.signers.items())},
                "problems": [p.__dict__ for p in sorted(self.problems, key=Problem.sort_key)]}


# one range of rows, scanned by one worker ----------------------------------------------------------

@dataclass
class _Scanned:
    start: int
    count: int = 0
    leaves: bytes = b""
    digests: bytes = b""
    blocks: dict[int, bytes] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    decoded: list[tuple[int, ev.Event]] = field(default_factory=list)  # key and checkpoint events
    refs: list[tuple[int, str]] = field(default_factory=list)  # found by decoding
    sigs: list[tuple[int, int, bytes, bool | None, bytes]] = field(default_factory=list)  # pos, n, key, ok, refs
    deferred: list[tuple[Any, ...]] = field(default_factory=list)  # signature rows reaching past the range
    first_leaf: bytes = b""


_VER = struct.Struct(">Q")
_POS = struct.Struct(">Q")
_unhex = binascii.unhexlify


def _short(topic: str) -> str:
    return topic.split(".")[1] if topic.count(".") >= 2 else topic


def _scan(src: Source, start: int, lo: int | None, hi: int | None, count: int, lid: bytes, deep: bool,
          last: bool) -> _Scanned:
    """Rows [lo, hi) by notification id, which are positions start.. : leaves, digests, sealed-leaf
    comparison, signature checks, and the decoding this range needs."""
    out = _Scanned(start)
    sha = hashlib.sha256
    pack_v, pack_p, unhex = _VER.pack, _POS.pack, _unhex
    topics: dict[bytes, tuple[bytes, str, bool]] = {}
    leaves = bytearray()
    digests = bytearray()
    nids: list[int] = []
    undecoded: list[tuple[int, str, bytes, Any, int]] = []  # (pos, topic, state, oid, version) to decode
    prior = src.signature_before(start)
    sig_rows = src.signatures(start, None if last else start + count)
    covered = _Cover(prior, sig_rows)
    gaps = covered.gaps(start, start + count if not last else 1 << 62)  # positions no signature row claims
    gi, (ga, gb) = 0, (gaps[0] if gaps else (1 << 62, 1 << 62))
    pos = start
    bad_rows: set[int] = set()
    for nid, oid, ver, topic, state, types_ok in src.rows(lo, hi):
        try:
            tt = topics.get(topic)
            if tt is None:
                name = topic.decode("utf-8", "replace")
                tt = topics[topic] = (len(topic).to_bytes(2, "big") + topic, name,
                                      deep or name in KEY_TOPICS or name in LEGACY_TOPICS)
            ident = pack_v(ver) + (unhex(oid) if len(oid) == 32 else oid if len(oid) == 16 else _oid16(oid)) + \
                tt[0] + state
            leaves += sha(b"\x00" + pack_p(pos) + ident).digest()
            digests += sha(ident).digest()
        except (TypeError, ValueError, struct.error, binascii.Error, OverflowError) as e:
            _malformed(out, bad_rows, leaves, digests, pos, nid, f"{type(e).__name__}: {e}")
        else:
            if not types_ok:
                _malformed(out, bad_rows, None, None, pos, nid, "a column holds a value of the wrong type")
            elif tt[2]:
                undecoded.append((pos, tt[1], state, oid, ver))
            elif pos >= ga:
                while pos >= gb:
                    gi += 1
                    ga, gb = gaps[gi] if gi < len(gaps) else (1 << 62, 1 << 62)
                if ga <= pos:
                    undecoded.append((pos, tt[1], state, oid, ver))
        nids.append(nid)
        pos += 1
    out.count = pos - start
    out.leaves, out.digests = bytes(leaves), bytes(digests)
    if out.count:
        out.first_leaf = out.leaves[:32]
    _compare_sealed(src, out, nids, bad_rows, last)
    _blocks(out)
    _decode(out, undecoded, covered, deep, sig_rows, prior)
    _check_sigs(out, sig_rows, lid)
    return out


def _malformed(out: _Scanned, bad_rows: set[int], leaves: bytearray | None, digests: bytearray | None, pos: int,
               nid: Any, why: str) -> None:
    bad_rows.add(pos)
    if leaves is not None and digests is not None and len(leaves) < (pos - out.start + 1) * 32:
        leaves += bytes(32)
        digests += bytes(32)
    out.problems.append(Problem(pos, "malformed", f"position {pos} (notification {nid}): the stored row is "
                                f"malformed ({why}) — it was modified in the database"))


def _oid16(oid: Any) -> bytes:
    if isinstance(oid, bytes | bytearray | memoryview) and len(oid) == 16:
        return bytes(oid)
    import uuid

    return uuid.UUID(bytes(oid).decode("ascii")).bytes


class _Cover:
    """Which positions some signature row claims (valid or not)."""

    def __init__(self, prior: Any, rows: list[Any]):
        spans = []
        for r in ([prior] if prior else []) + list(rows):
            try:
                spans.append((int(r[0]), int(r[0]) + int(r[1])))
            except (TypeError, ValueError):
                continue
        spans.sort()
        self.starts = [a for a, _ in spans]
        self.ends = [b for _, b in spans]

    def has(self, p: int) -> bool:
        i = bisect.bisect_right(self.starts, p) - 1
        return i >= 0 and p < self.ends[i]

    def gaps(self, a: int, b: int) -> list[tuple[int, int]]:
        """The unclaimed stretches of [a, b)."""
        out = []
        p = a
        for s, e in zip(self.starts, self.ends, strict=True):
            if e <= p:
                continue
            if s >= b:
                break
            if s > p:
                out.append((p, s))
            p = max(p, e)
        if p < b:
            out.append((p, b))
        return out


def _compare_sealed(src: Source, out: _Scanned, nids: list[int], bad_rows: set[int], last: bool) -> None:
    start, n = out.start, out.count
    hi = None if last else start + n
    leaves = out.leaves
    stored = list(src.leaves(start, start + n if last else hi))
    if len(stored) == n and not bad_rows and [r[0] for r in stored] == list(range(start, start + n)) and \
            [r[1] for r in stored] == nids and all(r[3] for r in stored) and \
            b"".join(bytes(r[2]) for r in stored) == leaves:
        return  # every row sealed as it is (the common case, checked in bulk)
    expect = start
    missing_reported = False
    for spos, snid, sleaf, ok in stored:
        if spos != expect or not ok or spos >= start + n:
            break
        i = spos - start
        if snid != nids[i] or bytes(sleaf) != leaves[i * 32:(i + 1) * 32]:
            p = spos
            if p in bad_rows:
                pass
            elif snid != nids[i]:
                if not missing_reported:
                    missing_reported = True
                    out.problems.append(Problem(p, "missing", f"position {p}: the sealed event (notification {snid}) "
                                                f"is missing; found notification {nids[i]} there — events were "
                                                "deleted or inserted"))
            else:
                out.problems.append(Problem(p, "modified", f"position {p} (notification {snid}): stored bytes differ "
                                            "from the sealed leaf — the event was modified, swapped or replaced"))
        expect += 1
    else:
        spos = None
    if expect < start + n:
        p = expect
        if spos is not None and spos == expect and not ok:
            out.problems.append(Problem(p, "malformed", f"position {p}: the sealed leaf is malformed (not a 32-byte "
                                        "hash, or wrong column types) — the Merkle log was modified"))
        else:
            out.problems.append(Problem(p, "unsealed", f"position {p} (notification {nids[p - start]}): event is not "
                                        "sealed in the Merkle log — written outside arledger (forged) or an unsealed "
                                        "tail"))


def _blocks(out: _Scanned) -> None:
    """Roots of the aligned BLOCK-leaf subtrees that lie wholly in the range."""
    start, n, leaves = out.start, out.count, out.leaves
    b = -(-start // BLOCK) * BLOCK
    while b + BLOCK <= start + n:
        off = (b - start) * 32
        out.blocks[b // BLOCK] = merkle.root_of_concat(leaves[off:off + 32 * BLOCK])
        b += BLOCK


def _signed_refs(rows: Iterable[Any]) -> dict[int, list[str]]:
    refs: dict[int, list[str]] = {}
    for r in rows:
        blob = r[4]
        if not isinstance(blob, bytes | bytearray | memoryview) or len(blob) % REF_ROW.size:
            continue
        for i, sha in REF_ROW.iter_unpack(bytes(blob)):
            refs.setdefault(int(r[0]) + i, []).append(sha.hex())
    return refs


def _decode(out: _Scanned, todo: list[tuple[int, str, bytes, Any, int]], covered: _Cover, deep: bool,
            sig_rows: list[Any], prior: Any) -> None:
    if not todo:
        return
    signed = _signed_refs(([prior] if prior else []) + sig_rows) if deep else {}
    raws = decompress_many([bytes(t[2]) for t in todo])
    for (p, topic, _state, oid, ver), raw in zip(todo, raws, strict=True):
        try:
            e = decode_raw(topic, raw)
            row_oid = oid.hex() if len(oid) == 16 else bytes(oid).decode("ascii", "replace").replace("-", "")
            if e.originator_version != ver or e.originator_id.hex != row_oid:
                raise DecodeError(f"event says {e.originator_id} v{e.originator_version}, row says {row_oid} v{ver}")
        except DecodeError as err:
            out.problems.append(Problem(p, "decode", f"position {p}: event does not decode: {err}"))
            continue
        if topic in KEY_TOPICS:
            out.decoded.append((p, e))
        shas = artifact_shas(e)
        if deep and covered.has(p):
            want = sorted(set(shas) - set(legacy_refs(e)))
            got = sorted(set(signed.get(p, [])))
            if want != got:
                out.problems.append(Problem(p, "refs", f"position {p} ({_short(topic)}): the signed artifact list "
                                            f"({len(got)}) differs from the event's artifact fields ({len(want)})"))
        out.refs.extend((p, s) for s in shas)


def _check_sigs(out: _Scanned, rows: list[Any], lid: bytes) -> None:
    start, end = out.start, out.start + out.count
    for r in rows:
        try:
            pos, n, pub, sig, refs = int(r[0]), int(r[1]), bytes(r[2]), bytes(r[3]), bytes(r[4])
        except (TypeError, ValueError):
            out.problems.append(Problem(r[0] if isinstance(r[0], int) else start, "bad_signature",
                                        "a signature row is malformed (wrong column types)"))
            continue
        if n <= 0 or len(pub) != 32 or len(sig) != 64 or len(refs) % REF_ROW.size:
            out.problems.append(Problem(pos, "bad_signature", f"position {pos}: the signature row is malformed"))
            continue
        if pos + n > end:
            out.deferred.append((pos, n, pub, sig, refs))
            continue
        off = (pos - start) * 32
        msg = append_message(GENESIS_LEDGER_ID if pos == 0 else lid, out.digests[off:off + 32 * n], refs)
        out.sigs.append((pos, n, pub, verify_raw(pub, msg, sig), refs))


_FORK_SOURCE: Source | None = None


def _scan_range(args: tuple[int, int | None, int | None, int, bytes, bool, bool]) -> _Scanned:
    """One range, in a forked worker (which opens its own connection) or in this process."""
    start, lo, hi, count, lid, deep, last = args
    src = _FORK_SOURCE
    assert src is not None
    try:
        src.open()
        return _scan(src, start, lo, hi, count, lid, deep, last)
    except SourceError as e:
        s = _Scanned(start)
        s.problems.append(Problem(start, "missing_table", f"positions {start}..: the ledger's tables cannot be "
                                  f"read ({e}) — restore the database from a backup"))
        s.count = -1
        return s


# the whole ----------------------------------------------------------------------------------------

def verify(led: Any, checkpoint: Checkpoint | None = None, *, deep: bool = False, check_artifacts: bool = True,
           progress: Callable[[int], None] | None = None, checkpoint_source: str = "checkpoint file",
           workers: int | None = None, artifacts: ArtifactStore | None = None) -> VerifyReport:
    rep = VerifyReport()
    src = source_for(led)
    src.open()
    try:
        _verify(led, src, rep, checkpoint, deep, check_artifacts, checkpoint_source, workers,
                artifacts or led.artifacts)
    except SourceError as e:
        rep.problems.append(Problem(0, "missing_table", f"positions 0..: the ledger cannot be read ({e}) — restore "
                                    "the database from a backup"))
    finally:
        src.close()
    if progress is not None:
        progress(rep.events)
    return rep


def _verify(led: Any, src: Source, rep: VerifyReport, checkpoint: Checkpoint | None, deep: bool,
            check_artifacts: bool, checkpoint_source: str, workers: int | None, store: ArtifactStore) -> None:
    schema = src.schema_problems()
    for key in (EVENTS, LEAVES, TREE):
        if key in schema:
            rep.problems.append(Problem(0, "missing_table", f"positions 0..: {schema[key]} — the ledger's "
                                        "database was altered; restore it from a backup"))
    if any(k in schema for k in (EVENTS, LEAVES, TREE)):
        return
    sigs_missing = schema.get(SIGNATURES)
    n = src.count()
    lid = _first_leaf(src, n)[:16]
    sigs = src.signature_count() if sigs_missing is None else 0
    parts = _split(src, n, workers, heavy=sigs >= PARALLEL_SIGNATURES)
    scanned = _run(src, parts, lid, deep, sigs_missing is None)
    scanned.sort(key=lambda s: s.start)
    for s in scanned:
        rep.problems.extend(s.problems)
    if any(s.count < 0 for s in scanned):
        return
    total = sum(s.count for s in scanned)
    rep.events = rep.size = total
    leaves = b"".join(s.leaves for s in scanned)
    digests = b"".join(s.digests for s in scanned)
    blocks: dict[int, bytes] = {}
    for s in scanned:
        blocks.update(s.blocks)
    _tail_checks(src, rep, total, sigs_missing is None)
    roots = _Roots(leaves, blocks)
    full = roots.at(total)
    rep.root = full.hex()
    tree = src.tree()
    _check_tree_head(rep, tree, total, full)
    decoded = sorted((p, e) for s in scanned for p, e in s.decoded)
    lid_hex = leaves[:16].hex() if total else ""
    cps = [(p, e) for p, e in decoded if isinstance(e, ev.CheckpointSigned)]
    trust = _signatures(rep, scanned, digests, lid, decoded, total, sigs_missing, leaves)
    _checkpoints(rep, cps, trust.ledger_keys, roots, total, lid_hex)
    if checkpoint is not None:
        rep.checkpoints += 1
        _check_external(rep, checkpoint, lid_hex, trust.ledger_keys, roots, total, checkpoint_source)
    if check_artifacts:
        refs: dict[str, int] = {}
        for s in scanned:
            for p, sha in s.refs:
                if sha not in refs or p < refs[sha]:
                    refs[sha] = p
        for p, sha in trust.signed_refs:
            if sha not in refs or p < refs[sha]:
                refs[sha] = p
        _check_artifacts(rep, store, refs)


def _first_leaf(src: Source, n: int) -> bytes:
    """The recomputed leaf of position 0 (the ledger id is its first 16 bytes)."""
    if not n:
        return b""
    rows = src.rows(None, src.nid_at_offset(1))
    try:
        _nid, oid, ver, topic, state, _ok = next(iter(rows))
        ident = _VER.pack(ver) + (_unhex(oid) if len(oid) == 32 else _oid16(oid)) + \
            len(topic).to_bytes(2, "big") + topic + state
        return hashlib.sha256(b"\x00" + _POS.pack(0) + ident).digest()
    except (StopIteration, TypeError, ValueError, struct.error, binascii.Error, OverflowError):
        return bytes(32)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


def _split(src: Source, n: int, workers: int | None, heavy: bool = False
           ) -> list[tuple[int, int | None, int | None, int, bool]]:
    """Position ranges (aligned to BLOCK unless ``workers`` is given or the ledger is small but has
    many signatures to check) with their notification-id bounds."""
    if workers is None:
        w = min(os.cpu_count() or 1, 4) if n >= PARALLEL_MIN or heavy else 1
        align = BLOCK if n >= PARALLEL_MIN else 1
    else:
        w, align = workers, 1
    w = max(1, min(w, n))
    if w == 1:
        return [(0, None, None, n, True)]
    per = -(-n // w)
    step = -(-per // align) * align
    starts = list(range(0, n, step))
    bounds = [src.nid_at_offset(s) for s in starts]
    parts = []
    for i, s in enumerate(starts):
        last = i == len(starts) - 1
        parts.append((s, bounds[i] if i else None, None if last else bounds[i + 1],
                      (n - s) if last else starts[i + 1] - s, last))
    return parts


def _run(src: Source, parts: list[tuple[int, int | None, int | None, int, bool]], lid: bytes, deep: bool,
         have_sigs: bool) -> list[_Scanned]:
    global _FORK_SOURCE
    if not have_sigs:
        src = _NoSignatures(src)  # type: ignore[assignment]
    _FORK_SOURCE = src
    args = [(s, lo, hi, cnt, lid, deep, last) for s, lo, hi, cnt, last in parts]
    can_fork = len(parts) > 1 and hasattr(os, "fork") and _only_daemon_threads() and \
        not isinstance(getattr(src, "inner", src), MemorySource)
    try:
        if not can_fork:
            return [_scan_range(a) for a in args]
        src.close()  # each worker opens its own connection; the parent reopens after
        with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
            res = pool.map(_scan_range, args)
        src.open()
        return res
    finally:
        _FORK_SOURCE = None


def _only_daemon_threads() -> bool:
    """Whether forking is safe enough: no thread but daemons (a connection pool's idle workers) that
    the workers never use; a program with threads of its own is scanned in this process."""
    main = threading.main_thread()
    return all(t is main or t.daemon for t in threading.enumerate())


class _NoSignatures:
    """A source whose signature table is missing: no rows (the problem is reported once)."""

    def __init__(self, inner: Source):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def signatures(self, lo: int, hi: int | None) -> list[Any]:
        return []

    def signature_before(self, pos: int) -> Any:
        return None


def _tail_checks(src: Source, rep: VerifyReport, total: int, have_sigs: bool) -> None:
    for spos, snid, _leaf, _ok in src.leaves(total, None):
        rep.problems.append(Problem(spos, "missing", f"positions {spos}..: sealed events (from notification {snid}) "
                                    "are missing — the log was truncated or rows deleted"))
        break
    if have_sigs:
        straddle = src.signature_before(total)
        if straddle is not None and isinstance(straddle[0], int) and isinstance(straddle[1], int) and \
                straddle[0] + straddle[1] > total:
            rep.problems.append(Problem(total, "truncated", f"positions {total}..: a signed append covers positions "
                                        f"{straddle[0]}..{straddle[0] + straddle[1] - 1}, but the log ends at "
                                        f"{total} — events were removed"))
        for r in src.signatures(total, None)[:1]:
            rep.problems.append(Problem(total, "truncated", f"positions {total}..: signatures exist for positions "
                                        f"{r[0]}.. but the log ends at {total} — events were removed"))


class _Roots:
    """Merkle roots at any size from block roots and the leaves of partial blocks."""

    def __init__(self, leaves: bytes, blocks: dict[int, bytes]):
        self.leaves, self.blocks = leaves, blocks

    def at(self, size: int) -> bytes:
        fr = merkle.Frontier()
        full = size // BLOCK
        for b in range(full):
            root = self.blocks.get(b)
            if root is None:
                root = merkle.root_of_concat(self.leaves[b * BLOCK * 32:(b + 1) * BLOCK * 32])
            fr.append_subtree(root, BLOCK_H)
        for p in range(full * BLOCK, size):
            fr.append(self.leaves[p * 32:(p + 1) * 32])
        return fr.root()


def _check_tree_head(rep: VerifyReport, tree: Any, total: int, full: bytes) -> None:
    try:
        size_state, frontier = (0, merkle.Frontier().to_bytes()) if tree is None else (int(tree[0]), bytes(tree[1]))
        head_root = merkle.Frontier.from_bytes(frontier).root()
    except (TypeError, ValueError):
        rep.problems.append(Problem(total, "malformed", f"position {total}: the stored tree head is malformed (wrong "
                                    "types, or a frontier that does not fit its size) — the Merkle log was modified"))
        return
    if size_state != total or head_root != full:
        if not any(p.kind in ("unsealed", "missing", "malformed") for p in rep.problems):
            rep.problems.append(Problem(total, "root_mismatch", f"position {total}: the stored tree head (size "
                                        f"{size_state}) disagrees with the {total} stored events"))
    else:  # the events and the tree head agree: a differing sealed leaf is the leaf table's alteration
        for p in rep.problems:
            if p.kind == "modified" and p.position is not None:
                p.message = (f"position {p.position}: the sealed leaf differs from the stored event, while the events "
                             "agree with the tree head — the Merkle log's leaf table was altered")


# signatures and trust -------------------------------------------------------------------------------

@dataclass
class _Trust:
    ledger_keys: dict[str, str] = field(default_factory=dict)  # key id -> public hex (for checkpoints)
    signed_refs: list[tuple[int, str]] = field(default_factory=list)


def _signatures(rep: VerifyReport, scanned: list[_Scanned], digests: bytes, lid: bytes,
                decoded: list[tuple[int, ev.Event]], total: int, sigs_missing: str | None,
                leaves: bytes) -> _Trust:
    trust = _Trust()
    rows: list[tuple[int, int, bytes, bool, bytes]] = []
    cut: list[tuple[int, int]] = []  # signed appends cut short by the end of the log
    for s in scanned:
        rows.extend(s.sigs)
        for pos, n, pub, sig, refs in s.deferred:
            if pos + n > total:
                cut.append((pos, pos + n))  # reported by the tail check
                continue
            msg = append_message(GENESIS_LEDGER_ID if pos == 0 else lid, digests[pos * 32:(pos + n) * 32], refs)
            rows.append((pos, n, pub, verify_raw(pub, msg, sig), refs))
    rows.sort(key=lambda r: r[0])
    modified = sorted(p.position for p in rep.problems if p.kind in ("modified", "missing", "malformed")
                      and p.position is not None)
    starts = [e for e in decoded if isinstance(e[1], ev.SigningStarted)]
    signing_from = starts[0][0] if starts else None
    inits = [p for p, e in decoded if isinstance(e, ev.LedgerInitialized)]
    if starts and starts[0][1].originator_version == 2 and inits:  # a ledger signed from its first event
        signing_from = min(signing_from or inits[0], inits[0])
    if rows and (signing_from is None or rows[0][0] < signing_from):
        signing_from = rows[0][0]
    rep.signing_from = signing_from
    if sigs_missing and signing_from is not None:
        rep.problems.append(Problem(signing_from, "missing_table", f"positions {signing_from}..: {sigs_missing} — "
                                    "the events' signatures were removed"))
    ledger_keys: dict[str, tuple[str, int]] = {}  # key id -> (public hex, trusted from batches starting at)
    actor_keys: dict[str, tuple[str, str, int]] = {}  # key id -> (actor, public hex, from)
    ki = 0
    keyevents = [(p, e) for p, e in decoded if not isinstance(e, ev.CheckpointSigned)]
    covered_until = 0

    def admit(p: int, e: ev.Event, batch_ok: bool | None, batch_key: str | None) -> None:
        # batch_ok: None = unsigned (legacy when before signing_from)
        legacy = batch_ok is None and (signing_from is None or p < signing_from)
        if isinstance(e, ev.LedgerInitialized):
            if batch_ok or legacy or (batch_key == e.key_id):
                ledger_keys.setdefault(e.key_id, (e.public_key, p))
        elif isinstance(e, ev.KeyAdded):
            if legacy or (batch_ok and batch_key in ledger_keys):
                ledger_keys.setdefault(e.key_id, (e.public_key, p + 1))
        elif isinstance(e, ev.SignerEnrolled):
            lk = ledger_keys.get(e.endorsed_by)
            if lk is None or not (legacy or batch_ok):
                return
            if key_id(e.public_key) != e.key_id or not verify_signature(
                    lk[0], endorsement_message(lid.hex(), e.signer, e.public_key), e.endorsement):
                rep.problems.append(Problem(p, "untrusted", f"position {p}: the enrolment of {e.signer}'s key "
                                            f"{e.key_id} is not endorsed by ledger key {e.endorsed_by}"))
                return
            actor_keys.setdefault(e.key_id, (e.signer, e.public_key, p + 1))

    for pos, n, pub, ok, refs in rows:
        if pos < covered_until:
            rep.problems.append(Problem(pos, "bad_signature", f"position {pos}: two signature rows claim it"))
            continue
        covered_until = pos + n
        while ki < len(keyevents) and keyevents[ki][0] < pos:  # key events no signature row covers
            admit(*keyevents[ki], None, None)
            ki += 1
        kid = key_id(pub.hex())
        inside = []
        while ki < len(keyevents) and keyevents[ki][0] < pos + n:
            inside.append(keyevents[ki])
            ki += 1
        for _p, e in inside:  # the genesis batch is signed by the key it introduces
            if isinstance(e, ev.LedgerInitialized) and e.key_id == kid and ok:
                ledger_keys.setdefault(e.key_id, (e.public_key, pos))
        if not ok:
            bad = next((m for m in modified if pos <= m < pos + n), pos)
            rep.problems.append(Problem(bad, "bad_signature", f"positions {pos}..{pos + n - 1}: the signature (key "
                                        f"{kid}) does not verify — the events were altered after they were signed, "
                                        "or signed by someone else"))
            for p, e in inside:
                admit(p, e, False, kid)
            continue
        if kid in ledger_keys and ledger_keys[kid][1] <= pos:
            actor = "ledger"
        elif kid in actor_keys and actor_keys[kid][2] <= pos:
            actor = actor_keys[kid][0]
        else:
            rep.problems.append(Problem(pos, "untrusted", f"positions {pos}..{pos + n - 1}: signed by key {kid}, "
                                        "which this ledger does not trust (no LedgerInitialized, KeyAdded or endorsed "
                                        "SignerEnrolled for it before)"))
            for p, e in inside:
                admit(p, e, False, kid)
            continue
        for p, e in inside:
            admit(p, e, True, kid)
        t = rep.signers.setdefault(actor, SignerTally(actor))
        if kid not in t.key_ids:
            t.key_ids.append(kid)
        t.events += n
        rep.signed_events += n
        trust.signed_refs.extend((pos + i, sha.hex()) for i, sha in REF_ROW.iter_unpack(refs))
    for p, e in keyevents[ki:]:
        admit(p, e, None, None)
    trust.ledger_keys = {k: v[0] for k, v in ledger_keys.items()}
    # coverage: every position from signing_from on must be in a valid, trusted batch
    claimed = sorted([(pos, pos + n) for pos, n, *_ in rows] + cut)
    _unsigned(rep, claimed, total, signing_from)
    return trust


def _unsigned(rep: VerifyReport, claimed: list[tuple[int, int]], total: int, signing_from: int | None) -> None:
    gaps: list[tuple[int, int]] = []
    p = 0
    for a, b in claimed:
        if a > p:
            gaps.append((p, min(a, total)))
        p = max(p, b)
    if p < total:
        gaps.append((p, total))
    for a, b in gaps:
        if a >= b:
            continue
        rep.unsigned_events += b - a
        legacy_end = b if signing_from is None else min(b, signing_from)
        if legacy_end > a:
            rep.legacy_unsigned_events += legacy_end - a
        s = a if signing_from is None else max(a, signing_from)
        if signing_from is not None and s < b:
            where = f"position {s}" if b - s == 1 else f"positions {s}..{b - 1}"
            rep.problems.append(Problem(s, "unsigned", f"{where}: not signed, although every event from position "
                                        f"{signing_from} on must be — appended by a writer without a trusted key, "
                                        "or outside arledger"))


# checkpoints ------------------------------------------------------------------------------------------

def _checkpoints(rep: VerifyReport, cps: list[tuple[int, ev.CheckpointSigned]], trusted: dict[str, str],
                 roots: _Roots, total: int, lid: str) -> None:
    for cpos, c in cps:
        rep.checkpoints += 1
        pub = trusted.get(c.key_id)
        if pub is None:
            rep.problems.append(Problem(cpos, "signature", f"checkpoint recorded at position {cpos} is signed by key "
                                        f"{c.key_id}, which this ledger does not trust"))
        elif not verify_signature(pub, checkpoint_message(lid, c.size, c.root), c.signature):
            rep.problems.append(Problem(cpos, "signature", f"checkpoint recorded at position {cpos} (size {c.size}): "
                                        "signature does not verify — the checkpoint or the log before it was altered"))
        if c.size > total:
            rep.problems.append(Problem(total, "truncated", f"checkpoint at position {cpos} covers {c.size} events but "
                                        f"only {total} exist"))
        elif roots.at(c.size).hex() != c.root:
            rep.problems.append(Problem(_first_bad(rep, c.size), "root_mismatch", f"checkpoint recorded at position "
                                        f"{cpos} (size {c.size}) does not match the log: root {c.root[:16]}… signed, "
                                        f"{roots.at(c.size).hex()[:16]}… recomputed"))


def _check_external(rep: VerifyReport, cp: Checkpoint, lid: str, trusted: dict[str, str], roots: _Roots,
                    size: int, source: str) -> None:
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
    elif roots.at(cp.size).hex() != cp.root:
        rep.problems.append(Problem(_first_bad(rep, cp.size), "root_mismatch", f"{source} (size {cp.size}) does "
                                    f"not match the log: the first {cp.size} events are not the ones it signed"))


def _first_bad(rep: VerifyReport, size: int) -> int | None:
    cands = [p.position for p in rep.problems if p.position is not None and p.position < size]
    return min(cands) if cands else None


# artifacts ----------------------------------------------------------------------------------------------

def _check_artifacts(rep: VerifyReport, store: ArtifactStore, refs: dict[str, int]) -> None:
    if not store.present():
        if refs:
            first = min(refs.values())
            rep.problems.append(Problem(first, "artifact_store", f"position {first}: no artifact store at "
                                        f"{store.where()}: copy .arledger/ whole, or pass --artifacts PATH "
                                        f"({len(refs)} artifact(s) referenced)"))
        return
    seen: dict[str, str | None] = {}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        batch: list[tuple[str, bytes]] = []

        def flush() -> None:
            for (sha, _raw), why in zip(batch, pool.map(lambda o: check_object(*o), batch), strict=True):
                seen[sha] = why
            batch.clear()

        for obj in store.objects():
            batch.append(obj)
            if len(batch) >= 64:
                flush()
        flush()
    rep.objects = len(seen)
    for sha, p in sorted(refs.items(), key=lambda kv: kv[1]):
        rep.artifacts_checked += 1
        if sha not in seen:
            rep.problems.append(Problem(p, "artifact", f"position {p}: artifact {sha[:16]}… is missing from the "
                                        f"store ({store.where()})"))
        elif seen[sha] is not None:
            rep.problems.append(Problem(p, "artifact", f"position {p}: {seen[sha]}"))
    orphans = sorted(s for s in seen if s not in refs)
    rep.orphan_artifacts = len(orphans)
    rep.orphans = orphans[:20]
    for sha in orphans:
        if seen[sha] is not None:
            rep.problems.append(Problem(None, "orphan", f"object {sha[:16]}… in {store.where()}, which no event "
                                        f"refers to, does not match its address: {seen[sha]}"))
