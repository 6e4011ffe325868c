"""What ``audit verify`` found: problems named by position and kind, and the report.

Kinds, in the order the first divergence at one position is named: ``missing_table`` (a table or
column missing or of the wrong type), ``malformed`` (a row whose columns do not have the types they
should), ``modified`` / ``missing`` / ``unsealed`` (the Merkle log against the stored rows),
``truncated``, ``root_mismatch``, ``decode``, ``bad_signature`` / ``untrusted`` / ``unsigned`` (the
events' signatures), ``refs`` (--deep: a signed artifact list that differs from the event),
``signature`` (a checkpoint's), ``artifact_store`` / ``artifact`` / ``orphan`` (the artifact store),
``foreign`` (a checkpoint of another ledger).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KIND_ORDER = {"missing_table": 0, "malformed": 1, "modified": 1, "missing": 1, "unsealed": 1, "truncated": 2,
              "root_mismatch": 3, "decode": 4, "bad_signature": 5, "untrusted": 5, "unsigned": 5, "refs": 6,
              "signature": 6, "artifact_store": 7, "artifact": 7, "orphan": 8, "foreign": 9}


@dataclass
class Problem:
    position: int | None
    kind: str  # see KIND_ORDER
    message: str

    def sort_key(self) -> tuple[int, int, str]:
        return (self.position if self.position is not None else 1 << 62, KIND_ORDER.get(self.kind, 9), self.kind)


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
    appended_during: int = 0  # events appended while verify read the log (checked by the next verify)

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
                "problems": [p.__dict__ for p in sorted(self.problems, key=Problem.sort_key)],
                "appended_during": self.appended_during}
