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

The row scan runs in forked worker processes over position ranges (each reads its own connection;
``ledger.rowscan``), which hash, seal-compare, check signatures and decode their part; the parent
combines block roots, judges trust over the whole log (``ledger.trust``) and checks the tree head,
the checkpoints and the artifact store. Findings are ``ledger.problems``.
"""

from __future__ import annotations

import binascii
import hashlib
import multiprocessing
import os
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ledger import events as ev
from ledger import merkle, rowscan
from ledger.artifacts import ArtifactStore, check_object
from ledger.keys import Checkpoint, checkpoint_message, verify_signature
from ledger.problems import Problem, SignerTally, VerifyReport
from ledger.rawscan import EVENTS, LEAVES, SIGNATURES, TREE, MemorySource, Source, SourceError, source_for
from ledger.rowscan import BLOCK, BLOCK_H, POS, VER, Scanned, oid16, scan_range, unhexlify
from ledger.trust import check_signatures

__all__ = ["Problem", "SignerTally", "VerifyReport", "verify"]

PARALLEL_MIN = 2 * BLOCK  # rows from which the scan is split across processes
PARALLEL_SIGNATURES = 256  # or signature rows (~80 us each to check)


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
    src = _snapshot(src, rep)
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
    trust = check_signatures(rep, scanned, digests, lid, decoded, total, sigs_missing, leaves)
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
        ident = VER.pack(ver) + (unhexlify(oid) if len(oid) == 32 else oid16(oid)) + \
            len(topic).to_bytes(2, "big") + topic + state
        return hashlib.sha256(b"\x00" + POS.pack(0) + ident).digest()
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
         have_sigs: bool) -> list[Scanned]:
    if not have_sigs:
        src = _NoSignatures(src)  # type: ignore[assignment]
    rowscan.FORK_SOURCE = src
    args = [(s, lo, hi, cnt, lid, deep, last) for s, lo, hi, cnt, last in parts]
    base: Any = src
    while hasattr(base, "inner"):
        base = base.inner
    can_fork = len(parts) > 1 and hasattr(os, "fork") and _only_daemon_threads() and \
        not isinstance(base, MemorySource)
    try:
        if not can_fork:
            return [scan_range(a) for a in args]
        src.close()  # each worker opens its own connection; the parent reopens after
        with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
            res = pool.map(scan_range, args)
        src.open()
        return res
    finally:
        rowscan.FORK_SOURCE = None


def _only_daemon_threads() -> bool:
    """Whether forking is safe enough: no thread but daemons (a connection pool's idle workers) that
    the workers never use; a program with threads of its own is scanned in this process."""
    main = threading.main_thread()
    return all(t is main or t.daemon for t in threading.enumerate())


def _head_size(tree: Any) -> int | None:
    try:
        return None if tree is None else int(tree[0])
    except (TypeError, ValueError):
        return None


def _snapshot(src: Source, rep: VerifyReport) -> Source:
    """The log as of its tree head when verify began, on a ledger that writers append to meanwhile
    (runners' heartbeats and leases, a running campaign): every append commits its events, leaves,
    signature and the tree head in one transaction, so the first ``size`` rows of the head read
    first are a consistent prefix, and rows past it are later appends (``rep.appended_during``,
    checked by the next verify). A ledger at rest is read whole, as before: rows, leaves or
    signatures past a head that does not move are divergences."""
    tree = src.tree()
    head = _head_size(tree)
    if head is None:
        return src
    n = src.count()
    if n < head:
        return src  # fewer events than the head says: truncated, reported by the whole read
    if n > head and (_head_size(src.tree()) or 0) <= head:
        return src  # rows past a head that does not move: reported by the whole read
    return _Bounded(src, head, tree, rep)


class _Bounded:
    """A source cut at the first ``size`` positions (see ``_snapshot``). What lies past them is
    read as it is only while the head has not moved (a ledger at rest: the tail checks apply)."""

    def __init__(self, inner: Source, size: int, tree: Any, rep: VerifyReport):
        self.inner, self.size, self._tree, self._rep = inner, size, tree, rep
        last = inner.nid_at_offset(size - 1) if size else None
        self._nid_end = (int(last) + 1) if isinstance(last, int) else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _grew(self) -> bool:
        grew = (_head_size(self.inner.tree()) or 0) > self.size
        if grew:
            self._rep.appended_during = max(self._rep.appended_during, self.inner.count() - self.size)
        return grew

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def count(self) -> int:
        return self.size

    def nid_at_offset(self, k: int) -> int | None:
        return self.inner.nid_at_offset(k) if k < self.size else None

    def row_batches(self, lo: int | None, hi: int | None) -> Any:
        if self.size == 0:
            return iter(())
        end = self._nid_end if hi is None else (hi if self._nid_end is None else min(hi, self._nid_end))
        return self.inner.row_batches(lo, end)

    def rows(self, lo: int | None, hi: int | None) -> Any:
        for batch in self.row_batches(lo, hi):
            yield from batch

    def leaves(self, lo: int, hi: int | None) -> Any:
        if hi is None and lo >= self.size:
            return iter(()) if self._grew() else self.inner.leaves(lo, None)
        return self.inner.leaves(lo, self.size if hi is None else min(hi, self.size))

    def signatures(self, lo: int, hi: int | None) -> list[Any]:
        if hi is None and lo >= self.size:
            return [] if self._grew() else self.inner.signatures(lo, None)
        return self.inner.signatures(lo, self.size if hi is None else min(hi, self.size))

    def tree(self) -> Any:
        return self._tree


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
