"""Which signatures the ledger trusts, and which events they cover.

Signature rows are judged in position order against the keys trusted before them: the ledger keys
(LedgerInitialized — trusted by the batch that introduces it —, KeyAdded in a batch a ledger key
signed, or before signing began) and actor keys a ledger key endorsed (SignerEnrolled, checked
against its endorsement). From ``signing_from`` (the first SigningStarted; for a ledger signed from
its start, its first event; or the first signed batch if earlier) every position must be covered by
a valid, trusted signature; earlier uncovered events are legacy unsigned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger import events as ev
from ledger.keys import (
    GENESIS_LEDGER_ID,
    REF_ROW,
    append_message,
    endorsement_message,
    key_id,
    verify_raw,
    verify_signature,
)
from ledger.problems import Problem, SignerTally, VerifyReport
from ledger.rowscan import Scanned


@dataclass
class Trust:
    ledger_keys: dict[str, str] = field(default_factory=dict)  # key id -> public hex (for checkpoints)
    signed_refs: list[tuple[int, str]] = field(default_factory=list)


def check_signatures(rep: VerifyReport, scanned: list[Scanned], digests: bytes, lid: bytes,
                decoded: list[tuple[int, ev.Event]], total: int, sigs_missing: str | None,
                leaves: bytes) -> Trust:
    trust = Trust()
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
