"""The base of every event and the small value types events share.

:class:`Event` (originator, version, actor, time, schema), the hex roles of hashes and keys
(:data:`Artifact`, :data:`Digest`, :data:`PublicKey`: the artifact rule, see :mod:`ledger.events`),
the outcome labels and verdicts, the ids derived from names, and the structs several events carry.
:mod:`ledger.events` re-exports all of it; import from there.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, ClassVar

import msgspec

SCHEMA = 1

LEDGER_ID = uuid.UUID("6a1f0c3e-8d2b-5b7e-9c11-0a7ed6e70001")
"""The id of the single ledger aggregate (initialisation, checkpoints, imports)."""

NAMESPACE = uuid.UUID("0b6a9c5e-3f1d-5a2e-8e77-a1ed9e700000")

# Every outcome label a trial's run can end with (OutcomeLabelled). A runner's part ends at
# ``scored`` (the evaluator's score stands) or a failure label; whether a scored trial is kept is the
# campaign's verdict (TrialJudged), never a label. ``keep``/``discard`` labels come from imported
# records and from ledgers written before verdicts were events (the runner labelled every scored
# trial ``discard`` and the campaign relabelled keeps); ``baseline`` and ``harness_abort`` exist for
# imported records (the CMU harness used both).
STATUSES: tuple[str, ...] = (
    "scored",
    "keep",
    "discard",
    "crash",
    "preflight_crash",
    "size_blocked",
    "train_budget_overrun",
    "eval_budget_overrun",
    "disqualified",
    "oom",
    "diverged",
    "truncated",
    "stopped_early",
    "illegal_edit",
    "duplicate",
    "runner_lost",
    "cancelled",
    "baseline",
    "harness_abort",
)
VALID_SCORED = ("scored", "keep", "discard", "baseline")
"""Labels of trials whose score is a valid evaluator score."""

VERDICTS: tuple[str, ...] = ("candidate", "keep", "discard")
"""The campaign's verdicts on a scored proposal (TrialJudged): ``candidate`` — it beat the incumbent
once and awaits its confirmation runs; ``keep`` — promoted; ``discard`` — not good enough."""


class HexRole:
    """What a hex string in an event names; the metadata of :data:`Artifact`, :data:`Digest` and
    :data:`PublicKey`."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"HexRole({self.name})"


ARTIFACT = HexRole("artifact")
DIGEST = HexRole("digest")
PUBLIC_KEY = HexRole("public key")

Artifact = Annotated[str, ARTIFACT]
"""The sha256 (hex) of an object in the artifact store: verify checks it exists and hashes to it."""
Digest = Annotated[str, DIGEST]
"""A sha256 (hex) of content the artifact store does not hold (a task folder, a code tree, a root)."""
PublicKey = Annotated[str, PUBLIC_KEY]
"""An Ed25519 raw public key, hex."""


def now() -> float:
    return time.time()


def campaign_id_for(name: str) -> uuid.UUID:
    """Campaign ids are derived from the campaign name: one name, one campaign per ledger."""
    return uuid.uuid5(NAMESPACE, f"campaign:{name}")


def trial_id_for(campaign_id: uuid.UUID, number: int) -> uuid.UUID:
    """Trial ids are derived from (campaign, trial number), so a retried proposal cannot fork."""
    return uuid.uuid5(campaign_id, f"trial:{number}")


class Event(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every event. ``originator_id``/``originator_version`` place it in its aggregate."""

    originator_id: uuid.UUID
    originator_version: int
    actor: str
    at: float = msgspec.field(default_factory=now)
    schema: int = SCHEMA

    # the aggregate kind that owns this event type
    aggregate: ClassVar[str] = ""

    @property
    def timestamp(self) -> float:  # eventsourcing's DomainEventProtocol asks for nothing more
        return self.at

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_builtins(self) -> dict[str, Any]:
        d = msgspec.to_builtins(self)
        d["type"] = type(self).__name__
        return d


# ---------------------------------------------------------------------------------------------
# small value types


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """LLM token usage of one proposal (all zero for offline backends)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    turns: int = 0
    requests: int = 0
    retries: int = 0


class SpecialistDecl(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    surface: str
    preamble: str = ""


class Check(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    ok: bool
    detail: str = ""


class GateResult(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    passed: bool
    value: float | None = None
    limit: float | None = None
    detail: str = ""


class MetricPoint(msgspec.Struct, frozen=True, array_like=True):
    step: int
    name: str
    value: float
