"""Submitting a trial: open its campaign, number it, preflight it once, and queue it or say why not.

    camp = open_campaign(led, spec, "c1", actor="agent:campaign")
    sub = submit_trial(led, spec, campaign="c1", diff=text, hypothesis="...", actor="agent:opt",
                       parent=3, specialist="opt", surface="opt", seen=keys)

:func:`open_campaign` records ``CampaignOpened`` from the spec: its content hash, the keep rule
(``NoisePolicyDecl``), and the baseline snapshot as an artifact, so that every trial's code can be
rebuilt from the ledger alone. :func:`submit_trial` registers the next trial number atomically with
the proposal (compare-and-set on the campaign), runs :mod:`tasks.preflight` — the only time a
trial is preflighted — and saves ``PreflightChecked`` (with the tree hash the runner will check
and the change's duplicate key) followed by either the preflight's outcome label or
``LaunchRequested``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Any

from ledger import events as ev
from ledger.aggregates import Campaign, Trial
from ledger.app import ConflictError, Ledger
from ledger.app import __version__ as ARLEDGER_VERSION
from ledger.store import LedgerError
from tasks import bundle, preflight
from tasks import workspace as wsp
from tasks.spec import TaskSpec


@dataclass(frozen=True)
class Submitted:
    trial_id: uuid.UUID
    number: int
    campaign_id: uuid.UUID
    passed: bool
    label: str | None  # the preflight outcome, or None when launched
    checks: list[ev.Check]
    reason: str = ""
    tree_sha: str | None = None
    keys: frozenset[str] = field(default_factory=frozenset)  # the duplicate keys it adds


def noise_policy(spec: TaskSpec, *, k: float | None = None, min_delta: float | None = None,
                 confirmations: int | None = None, baseline_reruns: int | None = None) -> ev.NoisePolicyDecl:
    """The keep rule a campaign opens with: the task's, with the campaign's overrides."""
    n = spec.noise
    return ev.NoisePolicyDecl(min_delta=n.min_delta if min_delta is None else float(min_delta),
                              k=n.k if k is None else float(k), sd=n.sd,
                              confirmation_runs=n.confirmation_runs if confirmations is None else int(confirmations),
                              seeds_per_trial=n.seeds_per_trial,
                              baseline_reruns=n.baseline_reruns if baseline_reruns is None else int(baseline_reruns))


def open_campaign(ledger: Ledger, spec: TaskSpec, campaign: str, *, actor: str, arm: str = "lineage",
                  config: dict[str, Any] | None = None, seed: int = 0,
                  policy: ev.NoisePolicyDecl | None = None) -> Campaign:
    """The campaign named ``campaign``, opened from the spec if it does not exist yet."""
    cid = ev.campaign_id_for(campaign)
    camp = ledger.load(Campaign, cid)
    if camp.opened is not None:
        return camp
    base = wsp.baseline_files(spec)
    base_sha = ledger.artifacts.put(json.dumps(base, sort_keys=True))
    cfg = {"task_path": str(spec.root), "evaluator_files": list(spec.evaluator_files),
           "stage_into_workspace": list(spec.stage_into_workspace), **(config or {})}
    b = spec.budgets
    camp = Campaign.open(
        name=campaign, actor=actor, task=spec.name, task_version=spec.version, task_sha=spec.content_sha(),
        metric=spec.metric, direction=spec.direction, noise_policy=policy or noise_policy(spec), arm=arm,
        specialists=[ev.SpecialistDecl(name=s.name, surface=s.surface, preamble=s.preamble) for s in spec.specialists],
        budgets={"preflight_s": b.preflight_s, "train_s": b.train_s, "eval_s": b.eval_s}, config=cfg | {
            "bound": b.bound, "work_unit": b.work_unit},
        harness_version=ARLEDGER_VERSION, seed=seed, baseline_sha=base_sha, baseline_tree=wsp.tree_sha(base),
        task_bundle_sha=bundle.record(ledger, spec))
    try:
        ledger.save(camp)
    except ConflictError:
        pass  # someone opened it first
    return ledger.load(Campaign, cid)


def submit_trial(ledger: Ledger, spec: TaskSpec, *, campaign: str, diff: str, hypothesis: str, actor: str,
                 parent: int | None = None, specialist: str = "human", surface: str | None = None,
                 kind: str | None = None, seen: Set[str] = frozenset(), seeds: list[int] | None = None,
                 seed: int = 0, priority: int = 0, gpus: int | None = None, confirms: int | None = None,
                 expected_delta: float | None = None, prompt_sha: str | None = None, notes: str = "",
                 backend: str = "", model: str = "", usage: ev.Usage | None = None,
                 cost_usd: float = 0.0, transcript_sha: str | None = None) -> Submitted:
    """Propose a trial, preflight it, and either label its preflight failure or request its launch.

    ``parent`` is a trial number of this campaign (None: the baseline snapshot); ``confirms`` the
    number of the trial a confirmation run re-measures. ``seen`` holds the campaign's duplicate
    keys (``TrialTable.duplicate_keys``); with none given, duplicates are not looked for. ``kind``
    defaults to ``baseline`` (no parent, empty diff), ``rerun`` (a parent, empty diff) or
    ``proposal``. The seeds are ``seed, seed+1, ...`` up to the task's ``seeds_per_trial``."""
    camp = open_campaign(ledger, spec, campaign, actor=actor)
    if camp.closed is not None:
        raise LedgerError(f"campaign {campaign} is closed ({camp.closed.reason}); resume it with "
                          f"`arledger run --resume --name {campaign}`, or submit to another --campaign")
    parent_id = _trial_id(camp, parent, "parent")
    confirms_id = _trial_id(camp, confirms, "confirmed trial")
    empty = not diff.strip()
    if kind is None:
        kind = ("baseline" if parent_id is None else "rerun") if empty else "proposal"
    parent_files = wsp.trial_files(ledger, parent_id) if parent_id else wsp.baseline_for_campaign(ledger, camp.id)
    pf = preflight.check(spec, parent_files, diff, surface=surface, seen=seen, allow_empty=kind != "proposal")
    diff_sha = ledger.artifacts.put(diff) if not empty else None
    seeds = list(seeds) if seeds else [seed + i for i in range(spec.noise.seeds_per_trial)]
    need_gpus = spec.resources.gpus_per_trial if gpus is None else int(gpus)
    for attempt in range(50):
        camp = ledger.load(Campaign, camp.id)
        number = camp.next_number
        trial = Trial.propose(camp.id, number, actor=actor, specialist=specialist, surface=surface or "",
                              hypothesis=hypothesis, parent_id=parent_id, diff_sha=diff_sha,
                              diff_bytes=len(diff.encode()), kind=kind, confirms=confirms_id, seed=seed,
                              expected_delta=expected_delta, prompt_sha=prompt_sha, notes=notes, backend=backend,
                              model=model, usage=usage or ev.Usage(), cost_usd=cost_usd,
                              transcript_sha=transcript_sha)
        camp.register(trial.id, number, specialist, kind, actor)
        trial.preflight(pf.passed, pf.checks, actor=actor, tree_sha=pf.tree_sha, diff_key=pf.diff_key)
        if pf.passed:
            trial.request_launch(actor, task=spec.name, seeds=seeds, gpus=need_gpus, priority=priority)
        else:
            assert pf.label is not None
            trial.label_outcome(pf.label, actor, reason=pf.reason)
        try:
            ledger.save(camp, trial)
        except ConflictError:
            time.sleep(0.01 * (attempt + 1))
            continue
        return Submitted(trial.id, number, camp.id, pf.passed, pf.label, pf.checks, pf.reason, pf.tree_sha,
                         frozenset(pf.keys))
    raise ConflictError(f"could not register a trial number in campaign {campaign}: too many concurrent submitters")


def _trial_id(camp: Campaign, number: int | None, what: str) -> uuid.UUID | None:
    if number is None:
        return None
    if number not in camp.trial_numbers:
        have = f"trials 0-{camp.next_number - 1}" if camp.trial_numbers else "no trials yet"
        raise LedgerError(f"campaign {camp.name} has no trial {number} to use as the {what} (it has {have})")
    return camp.trial_numbers[number]
