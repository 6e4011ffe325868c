"""The event catalogue: every fact the ledger records, as a small frozen msgspec Struct.

Events are named in the past tense, carry a schema version, an actor (``agent:opt``,
``runner:host-3``, ``evaluator:golf-mini@1a2b``, ``importer:cmu``, ``human:alice``) and a time.
Large payloads (diffs, logs, prompts, code trees, model files) live in the artifact store; an
event carries their sha256 in a field typed :data:`Artifact` — the artifact rule: ``ledger.refs``
finds every artifact of an event by that type (nested structs, lists, dicts and optional fields
included), and ``Ledger.save`` refuses an event that names an artifact anywhere else (a config
dict, a plain ``str``). Hashes of content kept elsewhere (a task folder, an evaluator, a code
tree, a Merkle root) are typed :data:`Digest`, keys :data:`PublicKey`. Decoding validates every
field's type.

Three kinds of aggregate own the events:

* the **ledger** itself (one per store; id ``LEDGER_ID``): initialisation, signed checkpoints,
  imports;
* a **campaign**: opened, trials registered, noise measured, incumbents promoted, specialists
  retired, steering notes added and closed, closed;
* a **trial**: proposed, preflight, launch, claim, lease, start, metrics, stopped early, finish, evaluation,
  outcome (the runner's part ends here), verdict (the campaign's), relabel (a correction).
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


# ---------------------------------------------------------------------------------------------
# the ledger aggregate


class LedgerInitialized(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "ledger"
    public_key: PublicKey  # Ed25519 raw public key, hex
    key_id: str  # first 16 hex of sha256(public key)
    arledger_version: str


class KeyAdded(Event, frozen=True, kw_only=True):
    """A further signing key trusted by this ledger (e.g. a second host's)."""

    aggregate: ClassVar[str] = "ledger"
    public_key: PublicKey
    key_id: str
    reason: str = ""


class SignerEnrolled(Event, frozen=True, kw_only=True):
    """An actor's Ed25519 key, trusted to sign the events that actor writes, endorsed by a ledger key
    (``endorsement``: that key's signature over ``keys.endorsement_message``)."""

    aggregate: ClassVar[str] = "ledger"
    signer: str  # the actor the key belongs to, e.g. runner:host-3, importer:cmu, human:alice
    public_key: PublicKey
    key_id: str
    endorsed_by: str  # key id of the ledger key that endorsed it
    endorsement: str  # Ed25519 signature (hex)
    reason: str = ""


class SigningStarted(Event, frozen=True, kw_only=True):
    """From this event on every event of the ledger is signed by a key the ledger trusts. Written by
    ``arledger init`` with the first event, and by ``arledger audit upgrade`` on an older ledger."""

    aggregate: ClassVar[str] = "ledger"
    reason: str = ""


class CheckpointSigned(Event, frozen=True, kw_only=True):
    """A signed statement: the Merkle log had ``size`` leaves with root ``root`` (hex)."""

    aggregate: ClassVar[str] = "ledger"
    size: int
    root: Digest
    key_id: str
    signature: str  # Ed25519 signature (hex) over checkpoint_message(ledger, size, root)
    ledger_name: str


class RecordImported(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "ledger"
    format: str  # cmu | autoresearch
    source: str  # the folder or file as given
    files: dict[str, Digest]  # file name -> sha256 of its bytes
    campaign_id: uuid.UUID
    campaign: str
    trials: int


# ---------------------------------------------------------------------------------------------
# the campaign aggregate


class NoisePolicyDecl(msgspec.Struct, frozen=True, kw_only=True):
    """The keep rule a campaign opened with: a keep needs an improvement > max(min_delta, k x sd),
    confirmed by ``confirmation_runs`` more runs on other seeds."""

    min_delta: float
    k: float
    sd: float
    confirmation_runs: int = 0
    seeds_per_trial: int = 1
    baseline_reruns: int = 0  # extra baseline runs (other seeds) the campaign measures its noise on


class CampaignOpened(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "campaign"
    name: str
    task: str
    task_version: str
    task_sha: Digest  # content hash of the task directory (spec, recipe, evaluator)
    metric: str
    direction: str  # "min" | "max"
    noise_policy: NoisePolicyDecl | None = None  # None in ledgers written before it was recorded
    arm: str = "lineage"
    specialists: list[SpecialistDecl] = []
    budgets: dict[str, float] = {}
    config: dict[str, Any] = {}
    harness_version: str = ""
    seed: int = 0
    # the baseline snapshot every trial's code is rebuilt from: a JSON {path: text} in the artifact
    # store, and its tree hash (ledgers before these fields kept both in ``config``)
    baseline_sha: Artifact | None = None
    baseline_tree: Digest = ""


class CampaignResumed(Event, frozen=True, kw_only=True):
    """A campaign picked up again; records the harness and config in force from here on."""

    aggregate: ClassVar[str] = "campaign"
    harness_version: str
    config: dict[str, Any] = {}
    reason: str = ""


class TrialRegistered(Event, frozen=True, kw_only=True):
    """Dense numbering of a campaign's trials (saved atomically with TrialProposed)."""

    aggregate: ClassVar[str] = "campaign"
    trial_id: uuid.UUID
    number: int
    specialist: str
    kind: str = "proposal"


class NoiseMeasured(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "campaign"
    metric: str
    values: list[float]
    sd: float
    trials: list[uuid.UUID] = []
    source: str = "reruns"  # reruns | task | imported


class IncumbentPromoted(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "campaign"
    trial_id: uuid.UUID
    number: int
    score: float
    previous_trial_id: uuid.UUID | None = None
    previous_score: float | None = None
    delta: float | None = None
    threshold: float = 0.0
    noise_sd: float = 0.0
    evidence: list[uuid.UUID] = []  # the trials (runs, confirmations) the promotion rests on
    reason: str = ""


class RunScore(msgspec.Struct, frozen=True, kw_only=True):
    """One run a verdict rests on: the trial that ran it and the evaluator's score."""

    number: int
    trial_id: uuid.UUID
    score: float


class Threshold(msgspec.Struct, frozen=True, kw_only=True):
    """The improvement a keep had to exceed, and how it was computed: max(min_delta, k x sd)."""

    value: float
    min_delta: float
    k: float
    sd: float
    sd_runs: int = 0  # the runs the sd was measured on (0: the task's declared figure)
    sd_source: str = "task"
    rule: str = ""  # the same, in words


class SpecialistRetired(Event, frozen=True, kw_only=True):
    """A specialist asked for no more proposals in this campaign, and why (e.g. nothing left to try)."""

    aggregate: ClassVar[str] = "campaign"
    specialist: str
    reason: str


class NoteAdded(Event, frozen=True, kw_only=True):
    """A steering note a person left for a running campaign ("stop trying X", "focus on the
    tokenizer"): shown in the lineage view of the specialist it addresses (``specialist`` empty:
    every specialist) until it is closed. ``number`` counts the campaign's notes from 1."""

    aggregate: ClassVar[str] = "campaign"
    number: int
    text: str
    specialist: str = ""


class NoteClosed(Event, frozen=True, kw_only=True):
    """A steering note retired: no lineage view shows it from here on (the log keeps it)."""

    aggregate: ClassVar[str] = "campaign"
    number: int
    reason: str = ""


class CampaignClosed(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "campaign"
    reason: str
    trials: int = 0
    best_trial_id: uuid.UUID | None = None
    best_score: float | None = None


# ---------------------------------------------------------------------------------------------
# the trial aggregate


class TrialProposed(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    campaign_id: uuid.UUID
    number: int
    specialist: str
    surface: str
    hypothesis: str
    parent_id: uuid.UUID | None = None
    expected_delta: float | None = None
    diff_sha: Artifact | None = None  # unified diff against the parent's code, in the artifact store
    diff_bytes: int = 0
    prompt_sha: Artifact | None = None  # the exact rendered lineage view / prompt the proposer saw
    transcript_sha: Artifact | None = None  # the proposer's whole conversation (an LLM's, a coding agent's)
    notes: str = ""
    kind: str = "proposal"  # proposal | baseline | rerun | confirmation | imported
    confirms: uuid.UUID | None = None  # for reruns/confirmations: the trial they re-measure
    seed: int = 0
    backend: str = ""
    model: str = ""
    usage: Usage = Usage()
    cost_usd: float = 0.0


class PreflightChecked(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    passed: bool
    checks: list[Check] = []
    tree_sha: Digest | None = None  # the workspace tree hash the preflight built
    diff_key: Digest | None = None  # the duplicate key of the change (its normalised diff on its parent's code)


class LaunchRequested(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    task: str
    seeds: list[int] = msgspec.field(default_factory=lambda: [0])
    gpus: int = 0
    priority: int = 0


class LaunchClaimed(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    runner: str
    epoch: int
    lease_s: float
    lease_expires: float


class LeaseRenewed(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    runner: str
    epoch: int
    lease_expires: float


class LaunchRequeued(Event, frozen=True, kw_only=True):
    """The reaper found an expired lease: the attempt is lost, a new epoch may be claimed."""

    aggregate: ClassVar[str] = "trial"
    previous_runner: str
    previous_epoch: int
    epoch: int
    reason: str


class SandboxUsed(msgspec.Struct, frozen=True, kw_only=True):
    """The sandbox a trial's recipe ran in: ``kind`` "bubblewrap" (with its version) or "none"
    (a runner started with ``--unsafe-no-sandbox``; ``note`` says so), and what it was given."""

    kind: str
    version: str = ""
    role: str = "train"
    network: bool = False
    read_write: list[str] = []
    read_only: list[str] = []
    hidden: list[str] = []
    devices: list[str] = []
    memory_mb: int = 0
    max_procs: int = 0
    process_limit: str = ""  # "rlimit", or "rlimit + cgroup1 pids cgroup" for a root runner
    note: str = ""


class TrialStarted(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    runner: str
    epoch: int
    host: str
    accelerator: str  # "cpu" or e.g. "cuda:NVIDIA H100 80GB HBM3 x1"
    versions: dict[str, str] = {}
    tree_sha: Digest = ""
    slot: int = 0
    cpu_threads: int = 0
    cuda_visible_devices: str = ""
    sandbox: SandboxUsed | None = None  # None: recorded before sandboxes were recorded


class MetricsLogged(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    epoch: int
    points: list[MetricPoint]


class RunStoppedEarly(Event, frozen=True, kw_only=True):
    """The runner stopped the run by the task's ``[early_stop]`` rule: at ``step`` the logged
    ``metric`` was ``value``, worse than the reference run's ``reference_value`` (its point at
    ``reference_step``) by more than ``margin``. ``reference_compute_s`` is the reference run's
    training + evaluation seconds: what a full run would have cost, against which the saving is
    estimated. Saved before the trial's TrialFinished; its label is ``stopped_early``."""

    aggregate: ClassVar[str] = "trial"
    epoch: int
    metric: str
    step: int
    value: float
    reference_id: uuid.UUID
    reference_number: int
    reference_step: int
    reference_value: float
    margin: float
    after_step: int = 0
    compare: str = "incumbent"  # incumbent | baseline
    direction: str = "min"
    reference_compute_s: float = 0.0
    rule: str = ""


class TrialFinished(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    epoch: int
    exit_status: int | None
    signal: int | None = None
    timed_out: bool = False
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    peak_gpu_bytes: int = 0
    artifact_sha: Artifact | None = None
    artifact_bytes: int = 0
    code_bytes: int = 0
    log_sha: Artifact | None = None
    log_bytes: int = 0
    tree_sha_after: Digest = ""
    work_planned: float | None = None  # a work-bounded task's runs (summed over seeds): the work the recipe
    work_done: float | None = None  # planned and did, in work_unit (None: not reported, or time-bounded)
    work_unit: str = ""


class TrialEvaluated(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    epoch: int
    score: float | None
    metrics: dict[str, float] = {}
    gates: list[GateResult] = []
    evaluator: str = ""  # evaluator name@version
    evaluator_sha: Digest = ""  # content hash of the evaluator-owned files that scored it
    eval_wall_s: float = 0.0
    log_sha: Artifact | None = None


class OutcomeLabelled(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    status: str
    reason: str = ""
    excerpt: str = ""
    epoch: int = 0
    score: float | None = None
    delta: float | None = None  # legacy (written by runners before verdicts were events); unused now

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise msgspec.ValidationError(f"unknown status {self.status!r}")


class TrialRelabelled(Event, frozen=True, kw_only=True):
    """A correction: the original label stays in the log; this one supersedes it, with a reason."""

    aggregate: ClassVar[str] = "trial"
    status: str
    previous_status: str
    reason: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise msgspec.ValidationError(f"unknown status {self.status!r}")


class TrialJudged(Event, frozen=True, kw_only=True):
    """The campaign's verdict on a scored proposal, with its evidence (see ``VERDICTS``).

    ``runs`` are the scores it rests on (the proposal's own run, then its confirmation runs);
    ``mean`` their mean; ``improvement`` how much the mean beats the incumbent (positive = better);
    ``delta`` the raw difference mean - incumbent score. A ``keep`` is saved together with the
    campaign's ``IncumbentPromoted``."""

    aggregate: ClassVar[str] = "trial"
    verdict: str
    runs: list[RunScore]
    mean: float
    incumbent_id: uuid.UUID | None = None
    incumbent_number: int | None = None
    incumbent_score: float | None = None
    improvement: float | None = None
    delta: float | None = None
    threshold: Threshold
    confirmations_wanted: int = 0
    policy: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise msgspec.ValidationError(f"unknown verdict {self.verdict!r}")


class TrialQuarantined(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "trial"
    reason: str


EVENT_TYPES: tuple[type[Event], ...] = (
    LedgerInitialized,
    KeyAdded,
    SignerEnrolled,
    SigningStarted,
    CheckpointSigned,
    RecordImported,
    CampaignOpened,
    CampaignResumed,
    TrialRegistered,
    NoiseMeasured,
    IncumbentPromoted,
    SpecialistRetired,
    CampaignClosed,
    NoteAdded,
    NoteClosed,
    TrialProposed,
    PreflightChecked,
    LaunchRequested,
    LaunchClaimed,
    LeaseRenewed,
    LaunchRequeued,
    TrialStarted,
    MetricsLogged,
    RunStoppedEarly,
    TrialFinished,
    TrialEvaluated,
    OutcomeLabelled,
    TrialRelabelled,
    TrialQuarantined,
    TrialJudged,
)

BY_TOPIC: dict[str, type[Event]] = {f"arledger.{c.__name__}.v{SCHEMA}": c for c in EVENT_TYPES}
TOPIC_OF: dict[type[Event], str] = {c: t for t, c in BY_TOPIC.items()}


