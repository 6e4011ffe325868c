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
from ledger.lifecycle import LABELLED, LEASED, PROPOSED, QUEUED, phase_after


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
        self.fold(e)
        handler = getattr(self, f"on_{type(e).__name__}", None)
        if handler is not None:
            handler(e)
        self.version = e.originator_version
        self.history.append(e)

    def fold(self, e: ev.Event) -> None:
        """State every aggregate of this kind derives from an event before its handler runs."""

    def _trigger(self, cls: type[ev.Event], **fields: Any) -> ev.Event:
        if fields.get("at") is None:
            fields.pop("at", None)  # now
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
        self.retired: dict[str, str] = {}
        self.notes: dict[int, ev.NoteAdded] = {}
        self.closed_notes: dict[int, ev.NoteClosed] = {}
        # the task in force: its content hash and bundle, as opened or as last resumed with
        self.task_sha = ""
        self.task_bundle_sha: str | None = None

    @property
    def name(self) -> str:
        return self.opened.name if self.opened else ""

    @property
    def next_number(self) -> int:
        return max(self.trial_numbers, default=-1) + 1

    def on_CampaignOpened(self, e: ev.CampaignOpened) -> None:
        self.opened = e
        self.task_sha, self.task_bundle_sha = e.task_sha, e.task_bundle_sha

    def on_TrialRegistered(self, e: ev.TrialRegistered) -> None:
        self.trial_numbers[e.number] = e.trial_id

    def on_IncumbentPromoted(self, e: ev.IncumbentPromoted) -> None:
        self.incumbent = e

    def on_NoiseMeasured(self, e: ev.NoiseMeasured) -> None:
        self.noise = e

    def on_CampaignClosed(self, e: ev.CampaignClosed) -> None:
        self.closed = e

    def on_SpecialistRetired(self, e: ev.SpecialistRetired) -> None:
        self.retired[e.specialist] = e.reason

    def on_CampaignResumed(self, e: ev.CampaignResumed) -> None:
        self.closed = None
        if e.task_sha:
            self.task_sha, self.task_bundle_sha = e.task_sha, e.task_bundle_sha

    def on_NoteAdded(self, e: ev.NoteAdded) -> None:
        self.notes[e.number] = e

    def on_NoteClosed(self, e: ev.NoteClosed) -> None:
        self.closed_notes[e.number] = e

    @classmethod
    def open(cls, *, name: str, actor: str, task: str, task_version: str, task_sha: str, metric: str,
             direction: str, noise_policy: ev.NoisePolicyDecl | None = None, arm: str = "lineage",
             specialists: list[ev.SpecialistDecl] | None = None, budgets: dict[str, float] | None = None,
             config: dict[str, Any] | None = None, harness_version: str = "", seed: int = 0,
             baseline_sha: str | None = None, baseline_tree: str = "", task_bundle_sha: str | None = None,
             at: float | None = None) -> Campaign:
        c = cls(ev.campaign_id_for(name))
        c._trigger(ev.CampaignOpened, at=at, name=name, actor=actor, task=task, task_version=task_version,
                   task_sha=task_sha, metric=metric, direction=direction, noise_policy=noise_policy, arm=arm,
                   specialists=list(specialists or []), budgets=dict(budgets or {}), config=dict(config or {}),
                   harness_version=harness_version, seed=seed, baseline_sha=baseline_sha, baseline_tree=baseline_tree,
                   task_bundle_sha=task_bundle_sha)
        return c

    def register(self, trial_id: uuid.UUID, number: int, specialist: str, kind: str, actor: str, *, at: float | None = None) -> ev.Event:
        if number in self.trial_numbers:
            raise CommandRefused(f"trial number {number} is already taken in campaign {self.name}")
        return self._trigger(ev.TrialRegistered, at=at, trial_id=trial_id, number=number, specialist=specialist,
                             kind=kind, actor=actor)

    def promote(self, actor: str, *, trial_id: uuid.UUID, number: int, score: float,
                previous_trial_id: uuid.UUID | None = None, previous_score: float | None = None,
                delta: float | None = None, threshold: float = 0.0, noise_sd: float = 0.0,
                evidence: list[uuid.UUID] | None = None, reason: str = "", at: float | None = None) -> ev.Event:
        return self._trigger(ev.IncumbentPromoted, at=at, actor=actor, trial_id=trial_id, number=number, score=score,
                             previous_trial_id=previous_trial_id, previous_score=previous_score, delta=delta,
                             threshold=threshold, noise_sd=noise_sd, evidence=list(evidence or []), reason=reason)

    def measure_noise(self, actor: str, *, metric: str, values: list[float], sd: float,
                      trials: list[uuid.UUID] | None = None, source: str = "reruns", at: float | None = None) -> ev.Event:
        return self._trigger(ev.NoiseMeasured, at=at, actor=actor, metric=metric, values=list(values), sd=sd,
                             trials=list(trials or []), source=source)

    def retire(self, actor: str, *, specialist: str, reason: str, at: float | None = None) -> ev.Event:
        if specialist in self.retired:
            raise CommandRefused(f"specialist {specialist} is already retired in campaign {self.name}")
        return self._trigger(ev.SpecialistRetired, at=at, actor=actor, specialist=specialist, reason=reason)

    def add_note(self, actor: str, *, text: str, specialist: str = "", at: float | None = None) -> ev.Event:
        """A steering note for ``specialist`` (empty: every specialist); numbered from 1."""
        if self.opened is None:
            raise CommandRefused("there is no such campaign to leave a note for")
        text = text.strip()
        if not text:
            raise CommandRefused("a note needs some text")
        known = [s.name for s in self.opened.specialists]
        if specialist and known and specialist not in known:
            raise CommandRefused(f"campaign {self.name} has no specialist {specialist!r}; it has {', '.join(known)}")
        number = max(self.notes, default=0) + 1
        return self._trigger(ev.NoteAdded, at=at, actor=actor, number=number, text=text, specialist=specialist)

    def close_note(self, actor: str, *, number: int, reason: str = "", at: float | None = None) -> ev.Event:
        if number not in self.notes:
            have = ", ".join(str(n) for n in sorted(self.notes)) or "none"
            raise CommandRefused(f"campaign {self.name} has no note {number} (its notes: {have})")
        if number in self.closed_notes:
            raise CommandRefused(f"note {number} of campaign {self.name} is already closed")
        return self._trigger(ev.NoteClosed, at=at, actor=actor, number=number, reason=reason)

    def close(self, actor: str, *, reason: str, trials: int = 0, best_trial_id: uuid.UUID | None = None,
              best_score: float | None = None, at: float | None = None) -> ev.Event:
        if self.closed is not None:
            raise CommandRefused(f"campaign {self.name} is already closed")
        return self._trigger(ev.CampaignClosed, at=at, actor=actor, reason=reason, trials=trials,
                             best_trial_id=best_trial_id, best_score=best_score)

    def resume(self, actor: str, *, harness_version: str, config: dict[str, Any] | None = None,
               reason: str = "", task_sha: str = "", task_bundle_sha: str | None = None,
               at: float | None = None) -> ev.Event:
        return self._trigger(ev.CampaignResumed, at=at, actor=actor, harness_version=harness_version,
                             config=dict(config or {}), reason=reason, task_sha=task_sha,
                             task_bundle_sha=task_bundle_sha)


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
        self.verdict: ev.TrialJudged | None = None

    @property
    def number(self) -> int:
        return self.proposed.number if self.proposed else -1

    # folding -----------------------------------------------------------------------------
    def fold(self, e: ev.Event) -> None:
        self.phase = phase_after(self.phase, e)

    def on_TrialProposed(self, e: ev.TrialProposed) -> None:
        self.proposed = e

    def on_LaunchRequested(self, e: ev.LaunchRequested) -> None:
        self.launch = e

    def on_LaunchClaimed(self, e: ev.LaunchClaimed) -> None:
        self.runner, self.epoch, self.lease_expires = e.runner, e.epoch, e.lease_expires
        self.attempts += 1

    def on_LeaseRenewed(self, e: ev.LeaseRenewed) -> None:
        self.lease_expires = e.lease_expires

    def on_LaunchRequeued(self, e: ev.LaunchRequeued) -> None:
        self.runner, self.epoch, self.lease_expires = "", e.epoch, 0.0
        self.finished = self.evaluated = None
        self.label = self.status = None

    def on_TrialFinished(self, e: ev.TrialFinished) -> None:
        self.finished = e

    def on_TrialEvaluated(self, e: ev.TrialEvaluated) -> None:
        self.evaluated = e

    def on_OutcomeLabelled(self, e: ev.OutcomeLabelled) -> None:
        self.label, self.status = e, e.status

    def on_TrialRelabelled(self, e: ev.TrialRelabelled) -> None:
        self.status = e.status

    def on_TrialJudged(self, e: ev.TrialJudged) -> None:
        self.verdict = e

    def on_TrialQuarantined(self, e: ev.TrialQuarantined) -> None:
        self.quarantined = True

    # commands ----------------------------------------------------------------------------
    @classmethod
    def propose(cls, campaign_id: uuid.UUID, number: int, *, actor: str, specialist: str, surface: str,
                hypothesis: str, kind: str = "proposal", parent_id: uuid.UUID | None = None,
                diff_sha: str | None = None, diff_bytes: int = 0, confirms: uuid.UUID | None = None,
                seed: int = 0, expected_delta: float | None = None, prompt_sha: str | None = None,
                notes: str = "", backend: str = "", model: str = "", usage: ev.Usage | None = None,
                cost_usd: float = 0.0, transcript_sha: str | None = None, at: float | None = None) -> Trial:
        t = cls(ev.trial_id_for(campaign_id, number))
        t._trigger(ev.TrialProposed, at=at, campaign_id=campaign_id, number=number, actor=actor, specialist=specialist,
                   surface=surface, hypothesis=hypothesis, kind=kind, parent_id=parent_id, diff_sha=diff_sha,
                   diff_bytes=diff_bytes, confirms=confirms, seed=seed, expected_delta=expected_delta,
                   prompt_sha=prompt_sha, notes=notes, backend=backend, model=model, usage=usage or ev.Usage(),
                   cost_usd=cost_usd, transcript_sha=transcript_sha)
        return t

    def preflight(self, passed: bool, checks: list[ev.Check], actor: str, tree_sha: str | None = None,
                  diff_key: str | None = None, *, at: float | None = None) -> ev.Event:
        self._require(PROPOSED, "record a preflight")
        return self._trigger(ev.PreflightChecked, at=at, passed=passed, checks=checks, tree_sha=tree_sha,
                             diff_key=diff_key, actor=actor)

    def request_launch(self, actor: str, *, task: str, seeds: list[int] | None = None, gpus: int = 0,
                       priority: int = 0, at: float | None = None) -> ev.Event:
        self._require(PROPOSED, "request a launch")
        return self._trigger(ev.LaunchRequested, at=at, actor=actor, task=task, seeds=list(seeds or [0]), gpus=gpus,
                             priority=priority)

    def claim(self, runner: str, lease_s: float, now: float) -> ev.Event:
        self._require(QUEUED, "be claimed")
        return self._trigger(ev.LaunchClaimed, runner=runner, epoch=self.epoch + 1, lease_s=lease_s,
                             lease_expires=now + lease_s, actor=f"runner:{runner}")

    def _fence(self, runner: str, epoch: int) -> None:
        if self.phase not in LEASED or runner != self.runner or epoch != self.epoch:
            raise StaleEpoch(
                f"trial {self.number}: runner {runner} epoch {epoch} is stale "
                f"(trial is {self.phase}, epoch {self.epoch}{' held by ' + self.runner if self.runner else ''})"
            )

    def renew(self, runner: str, epoch: int, lease_s: float, now: float, *, at: float | None = None) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.LeaseRenewed, at=at, runner=runner, epoch=epoch, lease_expires=now + lease_s,
                             actor=f"runner:{runner}")

    def requeue(self, actor: str, now: float, reason: str = "lease expired") -> list[ev.Event]:
        if self.phase not in LEASED or self.lease_expires > now:
            raise CommandRefused(f"trial {self.number} holds a live lease; nothing to requeue")
        old_runner, old_epoch = self.runner, self.epoch
        lost = self._trigger(ev.OutcomeLabelled, status="runner_lost", epoch=old_epoch, actor=actor,
                             reason=f"{reason}: runner {old_runner} stopped renewing its lease (epoch {old_epoch})")
        req = self._trigger(ev.LaunchRequeued, previous_runner=old_runner, previous_epoch=old_epoch,
                            epoch=old_epoch, reason=reason, actor=actor)
        return [lost, req]

    def start(self, runner: str, epoch: int, *, host: str, accelerator: str, versions: dict[str, str] | None = None,
              tree_sha: str = "", slot: int = 0, cpu_threads: int = 0, cuda_visible_devices: str = "",
              sandbox: ev.SandboxUsed | None = None, at: float | None = None) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.TrialStarted, at=at, runner=runner, epoch=epoch, actor=f"runner:{runner}", host=host,
                             accelerator=accelerator, versions=dict(versions or {}), tree_sha=tree_sha, slot=slot,
                             cpu_threads=cpu_threads, cuda_visible_devices=cuda_visible_devices, sandbox=sandbox)

    def log_metrics(self, runner: str, epoch: int, points: list[ev.MetricPoint], *, at: float | None = None) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.MetricsLogged, at=at, epoch=epoch, points=points, actor=f"runner:{runner}")

    def stop_early(self, runner: str, epoch: int, *, metric: str, step: int, value: float,
                   reference_id: uuid.UUID, reference_number: int, reference_step: int, reference_value: float,
                   margin: float, after_step: int = 0, compare: str = "incumbent", direction: str = "min",
                   reference_compute_s: float = 0.0, rule: str = "", at: float | None = None) -> ev.Event:
        """The runner stopped this attempt's run by the task's early-stopping rule."""
        self._fence(runner, epoch)
        return self._trigger(ev.RunStoppedEarly, at=at, epoch=epoch, actor=f"runner:{runner}", metric=metric,
                             step=step, value=value, reference_id=reference_id, reference_number=reference_number,
                             reference_step=reference_step, reference_value=reference_value, margin=margin,
                             after_step=after_step, compare=compare, direction=direction,
                             reference_compute_s=reference_compute_s, rule=rule)

    def finish(self, runner: str, epoch: int, *, exit_status: int | None, signal: int | None = None,
               timed_out: bool = False, wall_s: float = 0.0, cpu_s: float = 0.0, peak_rss_bytes: int = 0,
               peak_gpu_bytes: int = 0, artifact_sha: str | None = None, artifact_bytes: int = 0,
               code_bytes: int = 0, log_sha: str | None = None, log_bytes: int = 0,
               tree_sha_after: str = "", work_planned: float | None = None, work_done: float | None = None,
               work_unit: str = "", at: float | None = None) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.TrialFinished, at=at, epoch=epoch, actor=f"runner:{runner}", exit_status=exit_status,
                             signal=signal, timed_out=timed_out, wall_s=wall_s, cpu_s=cpu_s,
                             peak_rss_bytes=peak_rss_bytes, peak_gpu_bytes=peak_gpu_bytes, artifact_sha=artifact_sha,
                             artifact_bytes=artifact_bytes, code_bytes=code_bytes, log_sha=log_sha,
                             log_bytes=log_bytes, tree_sha_after=tree_sha_after, work_planned=work_planned,
                             work_done=work_done, work_unit=work_unit)

    def record_evaluation(self, runner: str, epoch: int, actor: str, *, score: float | None,
                          evaluator: str, evaluator_sha: str, metrics: dict[str, float] | None = None,
                          gates: list[ev.GateResult] | None = None, eval_wall_s: float = 0.0,
                          log_sha: str | None = None, at: float | None = None) -> ev.Event:
        self._fence(runner, epoch)
        return self._trigger(ev.TrialEvaluated, at=at, epoch=epoch, actor=actor, score=score, metrics=dict(metrics or {}),
                             gates=list(gates or []), evaluator=evaluator, evaluator_sha=evaluator_sha,
                             eval_wall_s=eval_wall_s, log_sha=log_sha)

    def label_outcome(self, status: str, actor: str, *, runner: str | None = None, epoch: int | None = None,
                      reason: str = "", excerpt: str = "", score: float | None = None, at: float | None = None) -> ev.Event:
        """The run's outcome: ``scored`` (the evaluator's score stands) or a failure label. Fenced
        when a runner labels its own attempt; otherwise only an unlabelled trial may be labelled."""
        if runner is not None:
            self._fence(runner, epoch or 0)
        elif self.phase == LABELLED:
            raise CommandRefused(f"trial {self.number} is already labelled {self.status}; relabel instead")
        return self._trigger(ev.OutcomeLabelled, at=at, status=status, actor=actor, epoch=self.epoch, reason=reason,
                             excerpt=excerpt, score=score)

    def judge(self, actor: str, *, verdict: str, runs: list[ev.RunScore], mean: float, threshold: ev.Threshold,
              incumbent_id: uuid.UUID | None, incumbent_number: int | None, incumbent_score: float | None,
              improvement: float | None, confirmations_wanted: int, policy: str, reason: str, at: float | None = None) -> ev.Event:
        """The campaign's verdict on this scored proposal (see ``ev.VERDICTS``)."""
        if self.status not in ("scored",):
            raise CommandRefused(f"trial {self.number} is {self.status or self.phase}; only a scored trial is judged")
        delta = mean - incumbent_score if incumbent_score is not None else None
        return self._trigger(ev.TrialJudged, at=at, actor=actor, verdict=verdict, runs=list(runs), mean=mean,
                             threshold=threshold, incumbent_id=incumbent_id, incumbent_number=incumbent_number,
                             incumbent_score=incumbent_score, improvement=improvement, delta=delta,
                             confirmations_wanted=confirmations_wanted, policy=policy, reason=reason)

    def relabel(self, status: str, reason: str, actor: str, *, at: float | None = None) -> ev.Event:
        """A correction by a named actor: the trial's outcome becomes ``status``. The previous one is
        what a reader saw: the campaign's verdict on a scored trial, else its label."""
        if self.status is None:
            raise CommandRefused(f"trial {self.number} has no label yet to correct")
        if not reason.strip():
            raise CommandRefused("a relabel needs a reason")
        previous = self.verdict.verdict if self.status == "scored" and self.verdict is not None else self.status
        return self._trigger(ev.TrialRelabelled, at=at, status=status, previous_status=previous, reason=reason,
                             actor=actor)

    def cancel(self, actor: str, *, reason: str, at: float | None = None) -> ev.Event:
        """An operator stops the trial: its label becomes ``cancelled`` (actor and reason in it). A
        runner holding its lease finds its next fenced append refused and kills the run."""
        if not reason.strip():
            raise CommandRefused("a cancel needs a reason (--reason TEXT)")
        if self.phase == LABELLED:
            if self.status == "keep" or (self.verdict is not None and self.verdict.verdict == "keep"):
                raise CommandRefused(f"trial {self.number} is kept (the campaign's verdict): a keep is never "
                                     "cancelled; a mistaken one is corrected by a relabel with a reason")
            raise CommandRefused(f"trial {self.number} is already labelled {self.status}: nothing to cancel "
                                 f"(`arledger trial requeue {self.number}` runs a failed trial again)")
        return self._trigger(ev.OutcomeLabelled, at=at, status="cancelled", actor=actor, epoch=self.epoch,
                             reason=reason.strip())

    def requeue_by_hand(self, actor: str, *, reason: str, at: float | None = None) -> list[ev.Event]:
        """An operator sends the trial back to the queue; its next claim opens a new epoch. A live
        attempt is ended first (labelled ``cancelled``, the reaper's pattern: its runner's next
        fenced append is refused); a failed attempt keeps its label in the log. Refused for a trial
        never launched, a scored one (its score stands: re-measure it with a rerun) and a quarantined one."""
        reason = reason.strip()
        if not reason:
            raise CommandRefused("a requeue needs a reason (--reason TEXT)")
        n = self.number
        if self.quarantined:
            raise CommandRefused(f"trial {n} is quarantined: it is never run again")
        if self.launch is None:
            what = f"labelled {self.status} at preflight" if self.status else "not past its preflight"
            raise CommandRefused(f"trial {n} was never launched ({what}): its code has to change — submit a "
                                 "new trial")
        if self.phase == LABELLED and self.status in ev.VALID_SCORED:
            raise CommandRefused(f"trial {n} is {self.status}: its score stands; to measure it again submit a "
                                 f"rerun (`arledger trial submit --parent {n} --diff /dev/null ...`)")
        out: list[ev.Event] = []
        previous_runner, previous_epoch = self.runner, self.epoch
        if self.phase in LEASED:
            out.append(self._trigger(ev.OutcomeLabelled, at=at, status="cancelled", epoch=previous_epoch, actor=actor,
                                     reason=f"requeued by {actor} while runner {previous_runner} ran it "
                                            f"(epoch {previous_epoch}): {reason}"))
        out.append(self._trigger(ev.LaunchRequeued, at=at, previous_runner=previous_runner,
                                 previous_epoch=previous_epoch, epoch=previous_epoch,
                                 reason=f"requeued by {actor}: {reason}", actor=actor))
        return out

    def quarantine(self, reason: str, actor: str, *, at: float | None = None) -> ev.Event:
        return self._trigger(ev.TrialQuarantined, at=at, reason=reason, actor=actor)

    def _require(self, phase: str, what: str) -> None:
        if self.phase != phase:
            raise CommandRefused(f"trial {self.number} is {self.phase}; it cannot {what}")


class RunnerRecord(Aggregate):
    """One runner (by its runner id) as the ledger knows it: its starts, heartbeats and stops."""

    def __init__(self, id: uuid.UUID):
        super().__init__(id)
        self.started: ev.RunnerStarted | None = None
        self.last_beat: ev.RunnerHeartbeat | None = None
        self.stopped: ev.RunnerStopped | None = None

    def on_RunnerStarted(self, e: ev.RunnerStarted) -> None:
        self.started, self.last_beat, self.stopped = e, None, None

    def on_RunnerHeartbeat(self, e: ev.RunnerHeartbeat) -> None:
        self.last_beat = e

    def on_RunnerStopped(self, e: ev.RunnerStopped) -> None:
        self.stopped = e

    def start(self, actor: str, *, runner: str, host: str, pid: int, slots: int, gpus: list[int],
              gpus_per_trial: int, sandbox: str, version: str, lease_s: float, heartbeat_s: float,
              tasks: list[str], at: float | None = None) -> ev.Event:
        return self._trigger(ev.RunnerStarted, at=at, actor=actor, runner=runner, host=host, pid=pid, slots=slots,
                             gpus=list(gpus), gpus_per_trial=gpus_per_trial, sandbox=sandbox, version=version,
                             lease_s=lease_s, heartbeat_s=heartbeat_s, tasks=list(tasks))

    def beat(self, actor: str, *, running: list[ev.HeldTrial], labelled: int, at: float | None = None) -> ev.Event:
        if self.started is None or self.stopped is not None:
            raise CommandRefused("a runner beats only between its start and its stop")
        return self._trigger(ev.RunnerHeartbeat, at=at, actor=actor, running=list(running), labelled=labelled)

    def stop(self, actor: str, *, reason: str, labelled: int, at: float | None = None) -> ev.Event:
        if self.started is None or self.stopped is not None:
            raise CommandRefused("this runner is not running")
        return self._trigger(ev.RunnerStopped, at=at, actor=actor, reason=reason, labelled=labelled)
