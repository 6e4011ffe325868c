"""Aggregates: the consistency boundaries, with command methods that emit events.

Each aggregate folds its own events into a small state and offers command methods that check the
state, then emit the next event at the next version. Saving appends at exactly that version, so two
writers acting on the same state cannot both succeed (compare-and-set). Runner commands are fenced:
they name the runner and epoch that hold the lease, and are refused once another epoch began.
"""

from __future__ import annotations

import uuid
from typing import Any

from ledger import events as ev


class CommandRefused(RuntimeError):
    """A command that the aggregate's current state does not allow."""


class StaleEpoch(CommandRefused):
    """A runner acting on a lease that has been superseded (fencing)."""


class Aggregate:
    def __init__(self, id: uuid.UUID):
        self.id = id
        self.version = 0
        self.pending: list[ev.Event] = []
        self.history: list[ev.Event] = []

    @classmethod
    def replay(cls, id: uuid.UUID, events: list[ev.Event]) -> Any:
        agg = cls(id)
        for e in events:
            agg._apply(e)
        return agg

    def _apply(self, e: ev.Event) -> None:
        if e.originator_version != self.version + 1:
            raise CommandRefused(f"event {e.type} v{e.originator_version} does not follow v{self.version}")
        handler = getattr(self, f"on_{type(e).__name__}", None)
        if handler is not None:
            handler(e)
        self.version = e.originator_version
        self.history.append(e)

    def _trigger(self, cls: type[ev.Event], **fields: Any) -> ev.Event:
        e = cls(originator_id=self.id, originator_version=self.version + 1, **fields)
        self._apply(e)
        self.pending.append(e)
        return e

    def collect_events(self) -> list[ev.Event]:
        out, self.pending = self.pending, []
        return out


class LedgerRoot(Aggregate):
    def __init__(self, id: uuid.UUID = ev.LEDGER_ID):
        super().__init__(id)
        self.public_keys: dict[str, str] = {}  # the ledger keys: key id -> public key
        self.signers: dict[str, dict[str, str]] = {}  # actor -> {key id: public key}, endorsed by a ledger key
        self.enrolments: list[ev.SignerEnrolled] = []
        self.signing_started: ev.SigningStarted | None = None
        self.checkpoints: list[ev.CheckpointSigned] = []

    def on_LedgerInitialized(self, e: ev.LedgerInitialized) -> None:
        self.public_keys[e.key_id] = e.public_key

    def on_KeyAdded(self, e: ev.KeyAdded) -> None:
        self.public_keys[e.key_id] = e.public_key

    def on_SignerEnrolled(self, e: ev.SignerEnrolled) -> None:
        self.signers.setdefault(e.signer, {})[e.key_id] = e.public_key
        self.enrolments.append(e)

    def on_SigningStarted(self, e: ev.SigningStarted) -> None:
        self.signing_started = self.signing_started or e

    def on_CheckpointSigned(self, e: ev.CheckpointSigned) -> None:
        self.checkpoints.append(e)


class Campaign(Aggregate):
    def __init__(self, id: uuid.UUID):
        super().__init__(id)
        self.opened: ev.CampaignOpened | None = None
        self.trial_numbers: dict[int, uuid.UUID] = {}
        self.incumbent: ev.IncumbentPromoted | None = None
        self.noise: ev.NoiseMeasured | None = None
        self.closed: ev.CampaignClosed | None = None

    @property
    def name(self) -> str:
        return self.opened.name if self.opened else ""

    @property
    def next_number(self) -> int:
        return max(self.trial_numbers, default=-1) + 1

    def on_CampaignOpened(self, e: ev.CampaignOpened) -> None:
        self.opened = e

    def on_TrialRegistered(self, e: ev.TrialRegistered) -> None:
        self.trial_numbers[e.number] = e.trial_id

    def on_IncumbentPromoted(self, e: ev.IncumbentPromoted) -> None:
        self.incumbent = e

    def on_NoiseMeasured(self, e: ev.NoiseMeasured) -> None:
        self.noise = e

    def on_CampaignClosed(self, e: ev.CampaignClosed) -> None:
        self.closed = e

    def on_CampaignResumed(self, e: ev.CampaignResumed) -> None:
        self.closed = None

    @classmethod
    def open(cls, *, name: str, actor: str, **fields: Any) -> Campaign:
        c = cls(ev.campaign_id_for(name))
        c._trigger(ev.CampaignOpened, name=name, actor=actor, **fields)
        return c

    def register(self, trial_id: uuid.UUID, number: int, specialist: str, kind: str, actor: str) -> ev.Event:
        if number in self.trial_numbers:
            raise CommandRefused(f"trial number {number} is already taken in campaign {self.name}")
        return self._trigger(ev.TrialRegistered, trial_id=trial_id, number=number, specialist=specialist,
                             kind=kind, actor=actor)

    def promote(self, actor: str, **fields: Any) -> ev.Event:
        return self._trigger(ev.IncumbentPromoted, actor=actor, **fields)

    def measure_noise(self, actor: str, **fields: Any) -> ev.Event:
        return self._trigger(ev.NoiseMeasured, actor=actor, **fields)

    def close(self, actor: str, **fields: Any) -> ev.Event:
        if self.closed is not None:
            raise CommandRefused(f"campaign {self.name} is already closed")
        return self._trigger(ev.CampaignClosed, actor=actor, **fields)

    def resume(self, actor: str, **fields: Any) -> ev.Event:
        return self._trigger(ev.CampaignResumed, actor=actor, **fields)


# trial phases
PROPOSED, QUEUED, CLAIMED, RUNNING, FINISHED, EVALUATED, LABELLED = (
    "proposed", "queued", "claimed", "running", "finished", "evaluated", "labelled")


class Trial(Aggregate):
    def __init__(self, id: uuid.UUID):
        super().__init__(id)
        self.proposed: ev.TrialProposed | None = None
        self.phase = PROPOSED
        self.epoch = 0
        self.runner = ""
        self.lease_expires = 0.0
        self.status: str | None = None  # the current label (after relabels)
        self.label: ev.OutcomeLabelled | None = None
        self.launch: ev.LaunchRequested | None = None
        self.finished: ev.TrialFinished | None = None
        self.evaluated: ev.TrialEvaluated | None = None
        self.attempts = 0
        self.quarantined = False

    @property
    def number(self) -> int:
        return self.proposed.number if self.proposed else -1

    # folding -----------------------------------------------------------------------------
    def on_TrialProposed(self, e: ev.TrialProposed) -> None:
        self.proposed = e

    def on_LaunchRequested(self, e: ev.LaunchRequested) -> None:
        self.launch = e
        self.phase = QUEUED

    def on_LaunchClaimed(self, e: ev.LaunchClaimed) -> None:
        self.phase, self.runner, self.epoch, self.lease_expires = CLAIMED, e.runner, e.epoch, e.lease_expires
        self.attempts += 1

    def on_LeaseRenewed(self, e: ev.LeaseRenewed) -> None:
        self.lease_expires = e.lease_expires

    def on_LaunchRequeued(self, e: ev.LaunchRequeued) -> None:
        self.phase, self.runner, self.epoch, self.lease_expires = QUEUED, "", e.epoch, 0.0
        self.finished = self.evaluated = None

    def on_TrialStarted(self, e: ev.TrialStarted) -> None:
        self.phase = RUNNING

    def on_TrialFinished(self, e: ev.TrialFinished) -> None:
        self.phase, self.finished = FINISHED, e

    def on_TrialEvaluated(self, e: ev.TrialEvaluated) -> None:
        self.phase, self.evaluated = EVALUATED, e

    def on_OutcomeLabelled(self, e: ev.OutcomeLabelled) -> None:
        self.label, self.status = e, e.status
        if e.status != "runner_lost" or self.phase != QUEUED:
            self.phase = LABELLED

    def on_TrialRelabelled(self, e: ev.TrialRelabelled) -> None:
        self.status = e.status

    def on_TrialQuarantined(self, e: ev.TrialQuarantined) -> None:
        self.quarantined = True

    # commands ----------------------------------------------------------------------------
    @classmethod
    def propose(cls, campaign_id: uuid.UUID, number: int, *, actor: str, **fields: Any) -> Trial:
        t = cls(ev.trial_id_for(campaign_id, number))
        t._trigger(ev.TrialProposed, campaign_id=campaign_id, number=number, actor=actor, **fields)
        return t

    def preflight(self, passed: bool, checks: list[ev.Check], actor: str, tree_sha: str | None = None) -> ev.Event:
        self._require(PROPOSED, "record a preflight")
        return self._trigger(ev.PreflightChecked, passed=passed, checks=checks, tree_sha=tree_sha, actor=actor)

    def request_launch(self, actor: str, **fields: Any) -> ev.Event:
        self._require(PROPOSED, "request a launch")
        return self._trigger(ev.LaunchRequested, actor=actor, **fields)

    def claim(self, runner: str, lease_s: float, now: float) -> ev.Event:
        self._require(QUEUED, "be claimed")
        return self._trigger(ev.LaunchClaimed, runner=runner, epoch=self.epoch + 1, lease_s=lease_s,
                             lease_expires=now + lease_s, actor=f"runner:{runner}")

    def _fence(self, runner: str, epoch: int) -> None:
        if self.phase in (QUEUED, LABELLED, PROPOSED) or runner != self.runner or epoch != self.epoch:
            raise StaleEpoch(
                f"trial {self.number}: runner {runner} epoch {epoch} is stale "
                f"(trial is {self.phase}, epoch {self.epoch}{' held by ' + self.runner if self.runner else ''})"
            )

    def renew(self, runner: str, epoch: int, lease_s: float, now: float) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.LeaseRenewed, runner=runner, epoch=epoch, lease_expires=now + lease_s,
                             actor=f"runner:{runner}")

    def requeue(self, actor: str, now: float, reason: str = "lease expired") -> list[ev.Event]:
        if self.phase not in (CLAIMED, RUNNING, FINISHED, EVALUATED) or self.lease_expires > now:
            raise CommandRefused(f"trial {self.number} holds a live lease; nothing to requeue")
        old_runner, old_epoch = self.runner, self.epoch
        lost = self._trigger(ev.OutcomeLabelled, status="runner_lost", epoch=old_epoch, actor=actor,
                             reason=f"{reason}: runner {old_runner} stopped renewing its lease (epoch {old_epoch})")
        self.phase = QUEUED  # the label above records the lost attempt; the trial itself goes on
        req = self._trigger(ev.LaunchRequeued, previous_runner=old_runner, previous_epoch=old_epoch,
                            epoch=old_epoch, reason=reason, actor=actor)
        return [lost, req]

    def start(self, runner: str, epoch: int, **fields: Any) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.TrialStarted, runner=runner, epoch=epoch, actor=f"runner:{runner}", **fields)

    def log_metrics(self, runner: str, epoch: int, points: list[ev.MetricPoint]) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.MetricsLogged, epoch=epoch, points=points, actor=f"runner:{runner}")

    def finish(self, runner: str, epoch: int, **fields: Any) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.TrialFinished, epoch=epoch, actor=f"runner:{runner}", **fields)

    def record_evaluation(self, runner: str, epoch: int, actor: str, **fields: Any) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.TrialEvaluated, epoch=epoch, actor=actor, **fields)

    def label_outcome(self, status: str, actor: str, *, runner: str | None = None, epoch: int | None = None,
                      **fields: Any) -> ev.Event:
        if runner is not None:
            self._fence(runner, epoch or 0)
        elif self.phase == LABELLED:
            raise CommandRefused(f"trial {self.number} is already labelled {self.status}; relabel instead")
        return self._trigger(ev.OutcomeLabelled, status=status, actor=actor, epoch=self.epoch, **fields)

    def relabel(self, status: str, reason: str, actor: str) -> ev.Event:
        if self.status is None:
            raise CommandRefused(f"trial {self.number} has no label yet to correct")
        if not reason.strip():
            raise CommandRefused("a relabel needs a reason")
        return self._trigger(ev.TrialRelabelled, status=status, previous_status=self.status, reason=reason, actor=actor)

    def quarantine(self, reason: str, actor: str) -> ev.Event:
        return self._trigger(ev.TrialQuarantined, reason=reason, actor=actor)

    def _require(self, phase: str, what: str) -> None:
        if self.phase != phase:
            raise CommandRefused(f"trial {self.number} is {self.phase}; it cannot {what}")
