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

Four kinds of aggregate own the events:

* the **ledger** itself (one per store; id ``LEDGER_ID``): initialisation, signed checkpoints,
  imports;
* a **campaign**: opened, trials registered, noise measured, incumbents promoted, specialists
  retired, steering notes added and closed, closed;
* a **runner** (``ledger.events_fleet``, re-exported here): started, heartbeats, stopped;
* a **trial**: proposed, preflight, launch, claim, lease, start, metrics, stopped early, finish, evaluation,
  outcome (the runner's part ends here), verdict (the campaign's), relabel (a correction).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import msgspec

from ledger.event_base import (  # noqa: F401 — re-exported: `from ledger.events import X` stays valid
    ARTIFACT,
    DIGEST,
    LEDGER_ID,
    NAMESPACE,
    PUBLIC_KEY,
    SCHEMA,
    STATUSES,
    VALID_SCORED,
    VERDICTS,
    Artifact,
    Check,
    Digest,
    Event,
    GateResult,
    HexRole,
    MetricPoint,
    PublicKey,
    SpecialistDecl,
    Usage,
    campaign_id_for,
    now,
    trial_id_for,
)
from ledger.events_fleet import (  # noqa: F401 — re-exported
    FLEET_EVENTS,
    LOST_AFTER_BEATS,
    HeldTrial,
    RunnerHeartbeat,
    RunnerStarted,
    RunnerStopped,
    runner_id_for,
)

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
    # the task's whole content (spec, recipe dir, evaluator files, prepare module), one artifact
    # (tasks.bundle): a runner with no copy of the task serves it from here (None: ledgers before it)
    task_bundle_sha: Artifact | None = None


class CampaignResumed(Event, frozen=True, kw_only=True):
    """A campaign picked up again; records the harness and config in force from here on."""

    aggregate: ClassVar[str] = "campaign"
    harness_version: str
    config: dict[str, Any] = {}
    reason: str = ""
    # the task as it is from here on (it may have changed since the campaign opened)
    task_sha: Digest = ""
    task_bundle_sha: Artifact | None = None


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
    *FLEET_EVENTS,
)

BY_TOPIC: dict[str, type[Event]] = {f"arledger.{c.__name__}.v{SCHEMA}": c for c in EVENT_TYPES}
TOPIC_OF: dict[type[Event], str] = {c: t for t, c in BY_TOPIC.items()}


