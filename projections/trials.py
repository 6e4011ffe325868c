"""The trial table: one row per trial, one record per campaign — the core projection.

Every other projection reads it. A row holds what a reader asks of a trial: campaign, number,
specialist, surface, parent, kind, hypothesis, expected delta, its label, the campaign's verdict and
its evidence, score, delta against the incumbent, metrics, wall/cpu seconds, artifact bytes,
evaluator / task / harness identity, LLM cost and tokens, crash excerpt, proposed/started/finished
times, runner, accelerator and attempts.

Three words describe where a trial ended, each computed here once:

* ``label`` — the outcome of its run, as the runner (or an importer) labelled it, after any
  correction: ``scored`` or a failure label (``keep``/``discard`` in imported records and old ledgers);
* ``status`` — the label, with the campaign's verdict in place of ``scored``: ``candidate``,
  ``keep``, ``discard``, a failure label, or ``scored`` while nobody has judged it; what statistics
  count;
* ``state`` — what a user reads: the status, or ``baseline``, ``confirmation of #N``, ``rerun of #N``
  for runs that re-measure another trial, or the phase (``queued``, ``running`` …) while unlabelled.

Ledgers written before verdicts were events (the runner labelled every scored trial ``discard``; the
campaign relabelled a promoted one ``keep``) read the same way: such a relabel, backed by the
campaign's ``IncumbentPromoted``, is the keep verdict, not a correction; ``corrections`` list only
the others.

A requeued trial (its runner lost its lease) goes back to unlabelled: the ``runner_lost`` label of
the lost attempt stays in the log and in ``attempts``; the row shows the attempt in force.

After each event, ``touched`` names the trial whose row changed (or None) and ``touched_campaign``
the campaign the event concerned, so projections that aggregate per trial can re-count only it
(:class:`PerTrialAggregate`).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from ledger import diffs
from ledger import events as ev
from ledger.app import Recorded
from ledger.lifecycle import phase_after
from projections.base import Projection
from projections.records import (
    CampaignInfo,
    Note,
    Promotion,
    TrialRow,
    Verdict,
)

# the events that can change a row's status, score, delta, cost, compute time, kind or parent: the
# only ones after which per-trial aggregates re-count the row
MATERIAL = frozenset({ev.TrialProposed, ev.TrialFinished, ev.TrialEvaluated, ev.OutcomeLabelled,
                      ev.TrialRelabelled, ev.LaunchRequeued, ev.IncumbentPromoted, ev.TrialJudged})


def _legacy_decision(row: TrialRow, e: ev.TrialRelabelled) -> bool:
    """A relabel an old campaign loop wrote as bookkeeping: its promotion of a scored trial to keep
    (saved right after the campaign's IncumbentPromoted) or its relabel of the baseline."""
    if not e.actor.startswith("agent:campaign"):
        return False
    if e.status == "keep":
        return row.promoted and e.previous_status in ("discard", "scored")
    return e.status == "baseline" and row.kind == "baseline"


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


class TrialTable(Projection):
    name = "trials"

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.campaigns: dict[uuid.UUID, CampaignInfo] = {}
        self.by_name: dict[str, uuid.UUID] = {}
        self.trials: dict[uuid.UUID, TrialRow] = {}
        self.numbers: dict[uuid.UUID, dict[int, uuid.UUID]] = {}  # campaign -> number -> trial id
        self.corrections: list[dict[str, Any]] = []  # relabels and quarantines, in log order
        self.imports: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.keys: dict[str, str] = {}
        self.touched: uuid.UUID | None = None
        self.touched_campaign: uuid.UUID | None = None
        self.touched_row: TrialRow | None = None  # set only by events that can change an aggregate
        self._aggregates = 0

    # lookups --------------------------------------------------------------------------------
    def campaign(self, name_or_id: str | uuid.UUID) -> CampaignInfo | None:
        if isinstance(name_or_id, uuid.UUID):
            return self.campaigns.get(name_or_id)
        cid = self.by_name.get(name_or_id)
        return self.campaigns.get(cid) if cid else None

    def row(self, campaign_id: uuid.UUID, number: int) -> TrialRow | None:
        tid = self.numbers.get(campaign_id, {}).get(number)
        return self.trials.get(tid) if tid else None

    def rows(self, campaign_id: uuid.UUID) -> list[TrialRow]:
        nums = self.numbers.get(campaign_id, {})
        return [r for n in sorted(nums) if (r := self.trials.get(nums[n])) is not None]

    def latest_campaign(self) -> CampaignInfo | None:
        return max(self.campaigns.values(), key=lambda c: c.position, default=None)

    def baseline(self, campaign_id: uuid.UUID) -> TrialRow | None:
        c = self.campaigns.get(campaign_id)
        if c and c.baseline_id:
            return self.trials.get(c.baseline_id)
        return self.row(campaign_id, 0)

    def duplicate_keys(self, campaign_id: uuid.UUID) -> frozenset[str]:
        """The duplicate keys of a campaign's trials, as their preflights recorded them: each code
        tree, and each change on its parent's code (``ledger.diffs.tree_key`` / ``duplicate_key``)."""
        out: set[str] = set()
        for r in self.rows(campaign_id):
            if r.tree_sha:
                out.add(diffs.tree_key(r.tree_sha))
            if r.diff_key:
                out.add(r.diff_key)
        return frozenset(out)

    def register_aggregate(self) -> int:
        """A slot in every row's ``contrib`` for one :class:`PerTrialAggregate`."""
        self._aggregates += 1
        return self._aggregates

    # folding --------------------------------------------------------------------------------
    def apply(self, rec: Recorded) -> None:
        self.touched = None
        self.touched_campaign = None
        self.touched_row = None
        t = type(rec.event)
        h = self._handlers.get(t)
        if h is not None:
            h(self, rec, rec.event)
            if self.touched is not None:
                row = self.trials[self.touched]
                if row.trial_id == rec.event.originator_id:
                    row.phase = phase_after(row.phase, rec.event)
                if t in MATERIAL:
                    self.touched_row = row

    def _camp(self, cid: uuid.UUID) -> CampaignInfo:
        c = self.campaigns.get(cid)
        if c is None:  # an event of a campaign whose opening we never saw: keep it, named by id
            c = self.campaigns[cid] = CampaignInfo(campaign_id=cid, name=str(cid)[:8])
            self.by_name.setdefault(c.name, cid)
            self.numbers.setdefault(cid, {})
        return c

    def _row(self, e: ev.Event) -> TrialRow | None:
        r = self.trials.get(e.originator_id)
        if r is not None:
            self.touched = r.trial_id
            self.touched_campaign = r.campaign_id
            r.last_at = e.at
            c = self.campaigns.get(r.campaign_id)
            if c is not None and e.at > c.last_at:
                c.last_at = e.at
        return r

    def on_LedgerInitialized(self, rec: Recorded, e: ev.LedgerInitialized) -> None:
        self.keys[e.key_id] = e.public_key

    def on_KeyAdded(self, rec: Recorded, e: ev.KeyAdded) -> None:
        self.keys[e.key_id] = e.public_key

    def on_CheckpointSigned(self, rec: Recorded, e: ev.CheckpointSigned) -> None:
        self.checkpoints.append({"position": rec.position, "size": e.size, "root": e.root, "key_id": e.key_id,
                                 "signature": e.signature, "at": e.at})

    def on_RecordImported(self, rec: Recorded, e: ev.RecordImported) -> None:
        self.imports.append({"format": e.format, "source": e.source, "files": dict(e.files),
                             "campaign": e.campaign, "campaign_id": str(e.campaign_id), "trials": e.trials,
                             "actor": e.actor, "at": e.at})

    def on_CampaignOpened(self, rec: Recorded, e: ev.CampaignOpened) -> None:
        c = self._camp(e.originator_id)
        if c.name != e.name:
            self.by_name.pop(c.name, None)
        c.name, c.task, c.task_version, c.task_sha = e.name, e.task, e.task_version, e.task_sha
        c.metric, c.direction, c.arm = e.metric, e.direction, e.arm
        c.specialists = [(s.name, s.surface) for s in e.specialists]
        c.budgets, c.config, c.harness_version, c.seed = dict(e.budgets), dict(e.config), e.harness_version, e.seed
        c.policy = e.noise_policy
        c.baseline_sha = e.baseline_sha
        c.harness_history.append((e.at, e.harness_version, "opened"))
        c.opened_at, c.position, c.actor, c.last_at = e.at, rec.position, e.actor, e.at
        self.by_name[e.name] = c.campaign_id
        self.touched_campaign = c.campaign_id

    def on_CampaignResumed(self, rec: Recorded, e: ev.CampaignResumed) -> None:
        c = self._camp(e.originator_id)
        c.harness_version = e.harness_version
        c.config = {**c.config, **e.config}
        c.harness_history.append((e.at, e.harness_version, e.reason or "resumed"))
        c.closed_at, c.closed_reason = None, ""
        self.touched_campaign = c.campaign_id

    def on_SpecialistRetired(self, rec: Recorded, e: ev.SpecialistRetired) -> None:
        c = self._camp(e.originator_id)
        c.retired[e.specialist] = e.reason
        self.touched_campaign = c.campaign_id

    def on_NoteAdded(self, rec: Recorded, e: ev.NoteAdded) -> None:
        c = self._camp(e.originator_id)
        c.notes.append(Note(number=e.number, text=e.text, specialist=e.specialist, actor=e.actor, at=e.at))
        self.touched_campaign = c.campaign_id

    def on_NoteClosed(self, rec: Recorded, e: ev.NoteClosed) -> None:
        c = self._camp(e.originator_id)
        for n in c.notes:
            if n.number == e.number:
                n.closed_at, n.closed_by, n.close_reason = e.at, e.actor, e.reason
        self.touched_campaign = c.campaign_id

    def on_CampaignClosed(self, rec: Recorded, e: ev.CampaignClosed) -> None:
        c = self._camp(e.originator_id)
        c.closed_at, c.closed_reason = e.at, e.reason
        self.touched_campaign = c.campaign_id

    def on_TrialRegistered(self, rec: Recorded, e: ev.TrialRegistered) -> None:
        # the number is taken; the row appears with the TrialProposed saved in the same append
        self._camp(e.originator_id)
        self.touched_campaign = e.originator_id

    def on_NoiseMeasured(self, rec: Recorded, e: ev.NoiseMeasured) -> None:
        c = self._camp(e.originator_id)
        c.noise.append({"metric": e.metric, "sd": e.sd, "n": len(e.values), "source": e.source,
                        "trials": len(e.trials), "actor": e.actor, "at": e.at})
        self.touched_campaign = c.campaign_id

    def on_IncumbentPromoted(self, rec: Recorded, e: ev.IncumbentPromoted) -> None:
        c = self._camp(e.originator_id)
        prev = self.trials.get(e.previous_trial_id) if e.previous_trial_id else None
        c.promotions.append(Promotion(
            number=e.number, trial_id=e.trial_id, score=e.score, delta=e.delta,
            previous_number=prev.number if prev else None, previous_score=e.previous_score,
            threshold=e.threshold, noise_sd=e.noise_sd, evidence=len(e.evidence), at=e.at, actor=e.actor,
            reason=e.reason))
        c.incumbent_number, c.incumbent_score = e.number, e.score
        self.touched_campaign = c.campaign_id
        r = self.trials.get(e.trial_id)
        if r is not None:
            r.promoted = True
            self.touched = r.trial_id

    def on_TrialProposed(self, rec: Recorded, e: ev.TrialProposed) -> None:
        c = self._camp(e.campaign_id)
        parent = self.trials.get(e.parent_id) if e.parent_id else None
        confirms = self.trials.get(e.confirms) if e.confirms else None
        u = e.usage
        r = TrialRow(
            campaign_id=c.campaign_id, campaign=c.name, trial_id=e.originator_id, number=e.number,
            specialist=e.specialist, surface=e.surface, kind=e.kind, hypothesis=e.hypothesis,
            parent_id=e.parent_id, parent=parent.number if parent else None,
            expected_delta=_finite(e.expected_delta), confirms=confirms.number if confirms else None, notes=e.notes,
            diff_sha=e.diff_sha, diff_bytes=e.diff_bytes, prompt_sha=e.prompt_sha, transcript_sha=e.transcript_sha,
            seed=e.seed, backend=e.backend,
            model=e.model, proposer=e.actor, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens, turns=u.turns,
            requests=u.requests, retries=u.retries, cost_usd=e.cost_usd,
            proposed_at=e.at, task_sha=c.task_sha, harness_version=c.harness_version, last_at=e.at,
        )
        self.trials[r.trial_id] = r
        self.numbers.setdefault(c.campaign_id, {})[e.number] = r.trial_id
        if e.kind == "baseline" and c.baseline_id is None:
            c.baseline_id = r.trial_id
        if e.at > c.last_at:
            c.last_at = e.at
        self.touched, self.touched_campaign = r.trial_id, c.campaign_id

    def on_PreflightChecked(self, rec: Recorded, e: ev.PreflightChecked) -> None:
        r = self._row(e)
        if r is not None:
            r.preflight_passed = e.passed
            r.preflight_failed = [ch.name for ch in e.checks if not ch.ok]
            r.tree_sha = e.tree_sha
            r.diff_key = e.diff_key

    def on_LaunchRequested(self, rec: Recorded, e: ev.LaunchRequested) -> None:
        self._row(e)

    def on_LaunchClaimed(self, rec: Recorded, e: ev.LaunchClaimed) -> None:
        r = self._row(e)
        if r is not None:
            r.runner, r.epoch = e.runner, e.epoch
            r.attempts += 1

    def on_LaunchRequeued(self, rec: Recorded, e: ev.LaunchRequeued) -> None:
        r = self._row(e)
        if r is None:
            return
        r.runner, r.epoch = "", e.epoch
        r.status = r.label = r.first_label = None
        r.verdict = None
        r.reason = r.excerpt = r.label_actor = ""
        r.labelled_at = None
        r.score = r.delta = None
        r.metrics, r.gates_failed = {}, []
        r.last_step, r.last_metrics, r.metric_points = None, {}, 0
        r.evaluator = r.evaluator_sha = ""
        r.eval_wall_s, r.evaluated_at = 0.0, None
        r.wall_s = r.cpu_s = 0.0
        r.artifact_bytes = r.code_bytes = r.peak_rss_bytes = r.peak_gpu_bytes = 0
        r.artifact_sha = r.log_sha = None
        r.exit_status, r.timed_out, r.finished_at = None, False, None
        r.stopped_step, r.reference_compute_s = None, 0.0

    def on_TrialStarted(self, rec: Recorded, e: ev.TrialStarted) -> None:
        r = self._row(e)
        if r is None:
            return
        c = self.campaigns[r.campaign_id]
        r.started_at, r.runner, r.host = e.at, e.runner, e.host
        r.accelerator, r.slot = e.accelerator, e.slot
        r.sandbox = e.sandbox.kind if e.sandbox is not None else "unrecorded"
        r.harness_version = e.versions.get("harness") or e.versions.get("arledger") or c.harness_version
        r.task_sha = c.task_sha

    def on_RunStoppedEarly(self, rec: Recorded, e: ev.RunStoppedEarly) -> None:
        r = self._row(e)
        if r is not None:
            r.stopped_step, r.reference_compute_s = e.step, e.reference_compute_s

    def on_MetricsLogged(self, rec: Recorded, e: ev.MetricsLogged) -> None:
        r = self._row(e)
        if r is None or e.epoch != r.epoch:
            return  # a stale attempt's points
        for p in e.points:  # in the order the run printed them: the last value of a name is its latest
            if r.last_step is None or p.step >= r.last_step:
                r.last_step = p.step
            if math.isfinite(p.value):
                r.last_metrics[p.name] = p.value
        r.metric_points += len(e.points)

    def on_TrialFinished(self, rec: Recorded, e: ev.TrialFinished) -> None:
        r = self._row(e)
        if r is None:
            return
        r.finished_at = e.at
        r.wall_s, r.cpu_s, r.exit_status, r.timed_out = e.wall_s, e.cpu_s, e.exit_status, e.timed_out
        r.peak_rss_bytes, r.peak_gpu_bytes = e.peak_rss_bytes, e.peak_gpu_bytes
        r.artifact_sha, r.artifact_bytes, r.code_bytes, r.log_sha = e.artifact_sha, e.artifact_bytes, e.code_bytes, e.log_sha
        r.work_planned, r.work_done, r.work_unit = e.work_planned, e.work_done, e.work_unit

    def on_TrialEvaluated(self, rec: Recorded, e: ev.TrialEvaluated) -> None:
        r = self._row(e)
        if r is None:
            return
        r.evaluated_at = e.at
        r.score = _finite(e.score)
        r.metrics = dict(e.metrics)
        r.gates_failed = [g.name for g in e.gates if not g.passed]
        r.evaluator, r.evaluator_sha, r.eval_wall_s = e.evaluator, e.evaluator_sha, e.eval_wall_s
        if e.log_sha and not r.log_sha:
            r.log_sha = e.log_sha
        if r.started_at is None:  # no TrialStarted (e.g. imported): stamp what was in force now
            c = self.campaigns[r.campaign_id]
            r.harness_version, r.task_sha = c.harness_version, c.task_sha

    def on_OutcomeLabelled(self, rec: Recorded, e: ev.OutcomeLabelled) -> None:
        r = self._row(e)
        if r is None:
            return
        c = self.campaigns[r.campaign_id]
        r.label = r.first_label = e.status
        r.reason, r.excerpt, r.label_actor, r.labelled_at = e.reason, e.excerpt, e.actor, e.at
        if r.score is None and e.score is not None:
            r.score = _finite(e.score)
        if e.status in ("keep", "discard") and r.verdict is None:  # imported, or an old runner's discard
            r.verdict = Verdict(e.status, [(r.number, r.score)] if r.score is not None else [], r.score or 0.0,
                                c.incumbent_number, c.incumbent_score, None, 0.0, "", 0, "as labelled",
                                e.reason, e.actor, e.at)
        r.restate()
        if e.delta is not None:
            r.delta = _finite(e.delta)
        elif r.score is not None and c.incumbent_score is not None and r.trial_id != c.baseline_id:
            r.delta = r.score - c.incumbent_score
        if r.trial_id == c.baseline_id and r.score is not None and c.incumbent_score is None:
            c.incumbent_number, c.incumbent_score = r.number, r.score

    def on_TrialJudged(self, rec: Recorded, e: ev.TrialJudged) -> None:
        r = self._row(e)
        if r is None:
            return
        r.verdict = Verdict(e.verdict, [(x.number, x.score) for x in e.runs], e.mean, e.incumbent_number,
                            e.incumbent_score, e.improvement, e.threshold.value, e.threshold.rule,
                            e.confirmations_wanted, e.policy, e.reason, e.actor, e.at, sd=e.threshold.sd,
                            sd_runs=e.threshold.sd_runs, sd_source=e.threshold.sd_source)
        if r.score is not None and e.incumbent_score is not None:
            r.delta = r.score - e.incumbent_score
        r.restate()

    def on_TrialRelabelled(self, rec: Recorded, e: ev.TrialRelabelled) -> None:
        r = self._row(e)
        if r is None:
            return
        if _legacy_decision(r, e):
            # an old ledger: the campaign relabelled its own keep (or the baseline); a verdict, not a correction
            if e.status == "keep":
                c = self.campaigns[r.campaign_id]
                p = next((p for p in reversed(c.promotions) if p.trial_id == r.trial_id), None)
                r.verdict = Verdict("keep", [(r.number, r.score)] if r.score is not None else [],
                                    p.score if p else (r.score or 0.0), p.previous_number if p else None,
                                    p.previous_score if p else None, None, p.threshold if p else 0.0, "",
                                    0, "promotion (recorded as a relabel)", e.reason, e.actor, e.at,
                                    sd=p.noise_sd if p else 0.0)
            r.restate()
            return
        r.label = e.status
        if e.status in ("keep", "discard"):
            r.verdict = Verdict(e.status, [(r.number, r.score)] if r.score is not None else [], r.score or 0.0,
                                None, None, None, 0.0, "", 0, "correction", e.reason, e.actor, e.at)
        r.restate()
        r.relabels += 1
        self.corrections.append({"kind": "relabel", "campaign": r.campaign, "number": r.number,
                                 "from": e.previous_status, "to": e.status, "reason": e.reason,
                                 "actor": e.actor, "at": e.at, "position": rec.position})

    def on_TrialQuarantined(self, rec: Recorded, e: ev.TrialQuarantined) -> None:
        r = self._row(e)
        if r is None:
            return
        r.quarantined = True
        self.corrections.append({"kind": "quarantine", "campaign": r.campaign, "number": r.number,
                                 "from": r.status, "to": r.status, "reason": e.reason, "actor": e.actor,
                                 "at": e.at, "position": rec.position})

    # state ----------------------------------------------------------------------------------
    @property
    def state(self) -> dict[str, Any]:
        camps = sorted(self.campaigns.values(), key=lambda c: (c.position, c.name))
        return {
            "campaigns": [c.to_dict() for c in camps],
            "trials": [r.to_dict() for c in camps for r in self.rows(c.campaign_id)],
            "corrections": list(self.corrections),
            "imports": list(self.imports),
            "checkpoints": list(self.checkpoints),
        }


class PerTrialAggregate(Projection):
    """An aggregate over trials kept exact under change: when a trial's row changes, its old
    contribution is taken out and its new one put in. Subclasses define ``contribution(row)``
    (hashable, or None for "counts for nothing") and ``add(campaign_id, contribution, sign)``.
    A row's current contribution is kept on the row (``row.contrib[slot]``)."""

    requires = (TrialTable,)

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.table: TrialTable = self.deps[TrialTable]  # type: ignore[assignment]
        self._slot = self.table.register_aggregate()

    def apply(self, rec: Recorded) -> None:
        row = self.table.touched_row
        if row is not None:
            new = self.contribution(row)
            old = row.contrib.get(self._slot)
            if new != old:
                if old is not None:
                    self.add(row.campaign_id, old, -1)
                if new is not None:
                    self.add(row.campaign_id, new, +1)
                row.contrib[self._slot] = new
        h = self._handlers.get(type(rec.event))
        if h is not None:
            h(self, rec, rec.event)

    def contribution(self, row: TrialRow) -> Any:
        raise NotImplementedError

    def add(self, campaign_id: uuid.UUID, contribution: Any, sign: int) -> None:
        raise NotImplementedError
