"""One range of a ledger's stored rows, scanned by one verify worker (a forked process, or this one).

For its positions a worker recomputes every leaf and every event digest from the raw rows, compares
the leaves with the sealed ones, computes the roots of the aligned blocks of BLOCK leaves inside the
range, checks the signature rows that start in it (their crypto; which keys are trusted is decided
over the whole log, in ``ledger.trust``), and decodes the events the rest of the check needs: key,
checkpoint and legacy-reference events, events no signature row claims, and with ``deep`` all.
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger import events as ev
from ledger import merkle
from ledger.codec import DecodeError, decode_raw, decompress_many
from ledger.keys import GENESIS_LEDGER_ID, REF_ROW, append_message, verify_raw
from ledger.problems import Problem
from ledger.rawscan import Source, SourceError
from ledger.refs import LEGACY_TOPICS, artifact_shas, legacy_refs

BLOCK_H = 12
BLOCK = 1 << BLOCK_H
KEY_TOPICS = frozenset(ev.TOPIC_OF[t] for t in (ev.LedgerInitialized, ev.KeyAdded, ev.SignerEnrolled,
                                                ev.SigningStarted, ev.CheckpointSigned))


@dataclass
class Scanned:
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


VER = struct.Struct(">Q")
POS = struct.Struct(">Q")
unhexlify = binascii.unhexlify


def short(topic: str) -> str:
    return topic.split(".")[1] if topic.count(".") >= 2 else topic


def _scan(src: Source, start: int, lo: int | None, hi: int | None, count: int, lid: bytes, deep: bool,
          last: bool) -> Scanned:
    """Rows [lo, hi) by notification id, which are positions start.. : leaves, digests, sealed-leaf
    comparison, signature checks, and the decoding this range needs."""
    out = Scanned(start)
    sha = hashlib.sha256
    pack_v, pack_p, unhex = VER.pack, POS.pack, unhexlify
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
    for batch in src.row_batches(lo, hi):
        nids.extend([r[0] for r in batch])
        for nid, oid, ver, topic, state, types_ok in batch:
            try:
                tt = topics.get(topic)
                if tt is None:
                    name = topic.decode("utf-8", "replace")
                    tt = topics[topic] = (len(topic).to_bytes(2, "big") + topic, name,
                                          deep or name in KEY_TOPICS or name in LEGACY_TOPICS)
                ident = pack_v(ver) + (unhex(oid) if len(oid) == 32 else oid if len(oid) == 16 else oid16(oid)) + \
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
            pos += 1
    out.count = pos - start
    out.leaves, out.digests = bytes(leaves), bytes(digests)
    _compare_sealed(src, out, nids, bad_rows, last)
    _blocks(out)
    _decode(out, undecoded, covered, deep, sig_rows, prior)
    _check_sigs(out, sig_rows, lid)
    return out


def _malformed(out: Scanned, bad_rows: set[int], leaves: bytearray | None, digests: bytearray | None, pos: int,
               nid: Any, why: str) -> None:
    bad_rows.add(pos)
    if leaves is not None and digests is not None and len(leaves) < (pos - out.start + 1) * 32:
        leaves += bytes(32)
        digests += bytes(32)
    out.problems.append(Problem(pos, "malformed", f"position {pos} (notification {nid}): the stored row is "
                                f"malformed ({why}) — it was modified in the database"))


def oid16(oid: Any) -> bytes:
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


def _compare_sealed(src: Source, out: Scanned, nids: list[int], bad_rows: set[int], last: bool) -> None:
    start, n = out.start, out.count
    hi = None if last else start + n
    leaves = out.leaves
    if not bad_rows and src.sealed_as(start, start + n, nids, leaves):
        return  # every row sealed as it is (the common case, checked in bulk)
    stored = list(src.leaves(start, start + n if last else hi))
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


def _blocks(out: Scanned) -> None:
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


def _decode(out: Scanned, todo: list[tuple[int, str, bytes, Any, int]], covered: _Cover, deep: bool,
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
                out.problems.append(Problem(p, "refs", f"position {p} ({short(topic)}): the signed artifact list "
                                            f"({len(got)}) differs from the event's artifact fields ({len(want)})"))
        out.refs.extend((p, s) for s in shas)


def _check_sigs(out: Scanned, rows: list[Any], lid: bytes) -> None:
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


FORK_SOURCE: Source | None = None  # set by the parent before it forks the workers


def scan_range(args: tuple[int, int | None, int | None, int, bytes, bool, bool]) -> Scanned:
    """One range, in a forked worker (which opens its own connection) or in this process."""
    start, lo, hi, count, lid, deep, last = args
    src = FORK_SOURCE
    assert src is not None
    try:
        src.open()
        return _scan(src, start, lo, hi, count, lid, deep, last)
    except SourceError as e:
        s = Scanned(start)
        s.problems.append(Problem(start, "missing_table", f"positions {start}..: the ledger's tables cannot be "
                                  f"read ({e}) — restore the database from a backup"))
        s.count = -1
        return s
