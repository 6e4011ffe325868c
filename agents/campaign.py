"""The campaign loop: specialists turn measured lineage into better recipes, with no person in it.

The loop is a *reconciliation* over the ledger, so that it can be killed at any point and resumed.
Each tick it catches its projections up with the ledger, collects the proposals its specialists
finished writing (each in a worker thread, so slow LLM calls overlap), asks the policy
(:func:`agents.policy.decide`, a pure function of the projections) what to do, and does it:
launch the baseline, its reruns or a confirmation run, record the noise its runs show
(``NoiseMeasured``), record a verdict (``TrialJudged``, with
``IncumbentPromoted`` for a keep), retire a specialist, ask a specialist for a proposal, or close.

Trial numbers are allocated by compare-and-set on the campaign aggregate, so a resumed loop can
neither duplicate nor lose a trial. Execution is left to runners: an in-process one by default
(:mod:`agents.local_runner`), or ``arledger runner`` daemons elsewhere (``runners="external"``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents import policy as pol
from agents.base import Backend, Proposal, ProposalFailed
from agents.context import Context
from agents.local_runner import LocalRunner, requeue_dead
from agents.team import make_backend, specialists_for, team_task
from ledger import events as ev
from ledger import noise
from ledger.aggregates import Campaign, CommandRefused, Trial
from ledger.app import ConflictError, Ledger
from ledger.app import __version__ as HARNESS_VERSION
from ledger.identity import signer_for
from ledger.objective import Objective
from ledger.store import LedgerError
from projections.lineage_view import render_lineage_view
from projections.projector import Projector
from projections.records import CampaignInfo, TrialRow
from tasks import bundle as task_bundle
from tasks import workspace as wsp
from tasks.spec import Specialist, TaskSpec
from tasks.submit import Submitted, noise_policy, open_campaign, submit_trial

ACTOR = "agent:campaign"


@dataclass
class CampaignConfig:
    task: str = "golf-mini"
    name: str | None = None
    backend: str = "heuristic"
    arm: str = "lineage"  # lineage | no-lineage | generic:N | single
    specialists: list[str] | None = None  # override the task's set (names of its specialists)
    max_trials: int = 10  # proposals (baseline and confirmation runs are not counted)
    deadline_s: float | None = None
    grace: int | None = None  # stop after this many scored proposals without a keep
    max_usd: float | None = None
    max_compute_h: float | None = None
    in_flight: int = 1  # per specialist
    max_queued: int | None = None  # trials in flight at once (default: runner slots)
    stagger_s: float = 0.0
    seed: int = 0
    runners: str = "local"  # local | external
    slots: int = 1
    lease_s: float = 30.0
    k: float | None = None
    min_delta: float | None = None
    confirmations: int | None = None
    baseline_reruns: int | None = None  # extra baseline seeds measuring the noise (None: the task's)
    token_budget: int = 6000
    model: str | None = None
    thinking_budget: int = 0
    base_url: str | None = None  # the API server of an LLM backend (openai: any Chat Completions server)
    price_in: float | None = None  # USD per million input tokens, for whatever model the backend calls
    price_out: float | None = None
    agent_time_s: float = 900.0  # agent:CMD — its time and turn budget per proposal, the variables it gets
    agent_turns: int = 40  # (by name), more read-only paths it needs, and whether it has the network
    agent_env: list[str] = field(default_factory=list)
    agent_bind: list[str] = field(default_factory=list)
    agent_network: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def budgets(self) -> pol.Budgets:
        return pol.Budgets(max_trials=self.max_trials, deadline_s=self.deadline_s, grace=self.grace,
                           max_usd=self.max_usd, max_compute_h=self.max_compute_h,
                           in_flight_per_specialist=self.in_flight,
                           slots=self.max_queued if self.max_queued is not None else max(1, self.slots))


@dataclass
class Outcome:
    campaign: str
    closed: bool
    reason: str
    baseline: float | None
    best: float | None
    best_number: int | None
    promotions: list[tuple[int, float]] = field(default_factory=list)
    trials: int = 0

    @property
    def improved(self) -> bool:
        return bool(self.promotions)


def backend_for(cfg: CampaignConfig, *, forbidden: Sequence[Path] = ()) -> Backend:
    """The backend the configuration names, with every setting it carries; ``forbidden``: paths an
    agent:CMD backend must never be given (the campaign passes the ledger's and the task's)."""
    return make_backend(cfg.backend, seed=cfg.seed, model=cfg.model, base_url=cfg.base_url, price_in=cfg.price_in,
                        price_out=cfg.price_out, thinking_budget=cfg.thinking_budget, agent_time_s=cfg.agent_time_s,
                        agent_turns=cfg.agent_turns, agent_env=cfg.agent_env, agent_bind=cfg.agent_bind,
                        agent_network=cfg.agent_network, forbidden=forbidden)


class CampaignError(LedgerError):
    """A campaign cannot start or go on; the message says why and what to do."""


class CampaignLoop:
    def __init__(self, ledger: Ledger, spec: TaskSpec, cfg: CampaignConfig, *, backend: Backend | None = None,
                 resume: bool = False, on_event: Callable[[str], None] | None = None):
        self.led = ledger.with_signer(signer_for(ledger, ACTOR))  # every event it writes is signed as the driver
        self.cfg = cfg
        self.specialists: list[Specialist] = specialists_for(spec, cfg.arm, cfg.specialists)
        self.spec = team_task(spec, self.specialists)
        self.backend = backend or backend_for(cfg, forbidden=[ledger.home, self.spec.root])
        self.on_event = on_event or (lambda msg: None)
        # PostgreSQL: an outage is waited out (ledger.reconnect); the live display says so
        self.led.on_outage(lambda msg: self.on_event(msg))
        self.name = cfg.name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.resume = resume
        self.proj = Projector()
        self.campaign_id = ev.campaign_id_for(self.name)
        self.stop = threading.Event()
        self.started = time.time()
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(self.specialists)), thread_name_prefix="specialist")
        self.writing: dict[str, Future[tuple[Context, Proposal | ProposalFailed]]] = {}
        self.last_launch = 0.0
        self.closed_reason: str | None = None
        self.runner: LocalRunner | None = None
        self._files: dict[int, dict[str, str]] = {}
        self._files_lock = threading.Lock()
        self._announced: dict[int, str] = {}

    # ------------------------------------------------------------------ what the projections hold
    @property
    def info(self) -> CampaignInfo:
        info = self.proj.trials.campaign(self.campaign_id)
        if info is None:
            raise CampaignError(f"campaign {self.name} is not in the ledger yet")
        return info

    @property
    def objective(self) -> Objective:
        """The campaign's objective and keep rule, with the noise it measured (before the campaign
        is opened: the task's, with this run's overrides)."""
        info = self.proj.trials.campaign(self.campaign_id)
        if info is not None:
            return info.objective
        p = noise_policy(self.spec, k=self.cfg.k, min_delta=self.cfg.min_delta)
        return Objective(self.spec.direction, p.min_delta, p.k, p.sd, len(self.spec.noise.reruns), "task")

    @property
    def threshold(self) -> float:
        return self.objective.threshold

    @property
    def confirmations(self) -> int:
        info = self.proj.trials.campaign(self.campaign_id)
        if info is not None and info.policy is not None:
            return info.policy.confirmation_runs
        return self.spec.noise.confirmation_runs if self.cfg.confirmations is None else self.cfg.confirmations

    @property
    def baseline_reruns(self) -> int:
        info = self.proj.trials.campaign(self.campaign_id)
        if info is not None and info.policy is not None:
            return info.policy.baseline_reruns
        return self.spec.noise.baseline_reruns if self.cfg.baseline_reruns is None else self.cfg.baseline_reruns

    def rows(self) -> list[TrialRow]:
        return self.proj.trials.rows(self.campaign_id)

    def files_of(self, number: int) -> dict[str, str]:
        with self._files_lock:
            got = self._files.get(number)
        if got is None:
            if self.proj.trials.row(self.campaign_id, number) is None:
                raise KeyError(f"no trial {number} in this campaign")
            got = wsp.trial_files(self.led, ev.trial_id_for(self.campaign_id, number))
            with self._files_lock:
                self._files[number] = got
        return dict(got)

    def state(self) -> pol.CampaignState:
        info = self.info
        active = [s.name for s in self.specialists if s.name not in info.retired]
        return pol.CampaignState(info=info, rows=self.rows(), objective=info.objective,
                                 confirmations=self.confirmations, budgets=self.cfg.budgets(), specialists=active,
                                 writing=frozenset(self.writing), elapsed_s=time.time() - self.started,
                                 baseline_reruns=self.baseline_reruns, measure_noise=True,
                                 declared_sd=self.spec.noise.sd, declared_reruns=self.spec.noise.reruns)

    # ------------------------------------------------------------------ opening
    def open(self) -> None:
        camp = self.led.load(Campaign, self.campaign_id)
        if camp.opened is not None and not self.resume:
            raise CampaignError(f"campaign {self.name} already exists; resume it with `arledger run --resume "
                                f"--name {self.name}` or choose another --name")
        if camp.opened is None:
            if self.resume:
                raise CampaignError(f"there is no campaign {self.name} to resume")
            config = {"run": self.cfg.to_dict(),
                      "surfaces": {n: {"files": list(s.files), "regions": list(s.regions),
                                       "knobs": [k.name for k in s.knobs]} for n, s in self.spec.surfaces.items()},
                      "evaluator_files": list(self.spec.evaluator_files)}
            policy = noise_policy(self.spec, k=self.cfg.k, min_delta=self.cfg.min_delta,
                                  confirmations=self.cfg.confirmations, baseline_reruns=self.cfg.baseline_reruns)
            open_campaign(self.led, self.spec, self.name, actor=ACTOR, arm=self.cfg.arm, config=config,
                          seed=self.cfg.seed, policy=policy)
            camp = self.led.load(Campaign, self.campaign_id)
            camp.measure_noise(ACTOR, metric=self.spec.metric, values=list(self.spec.noise.reruns),
                               sd=self.spec.noise.sd, source=noise.DECLARED)
            self._save(camp)
        else:
            assert camp.opened is not None
            if camp.opened.task != self.spec.name:
                raise CampaignError(f"campaign {self.name} runs task {camp.opened.task}, not {self.spec.name}")
            if camp.opened.task_sha != self.spec.content_sha():
                self.on_event(f"note: task {self.spec.name} changed since the campaign opened; recorded in "
                              "CampaignResumed and visible in the audit report")
            camp.resume(ACTOR, harness_version=HARNESS_VERSION, config={"run": self.cfg.to_dict(),
                        "task_sha": self.spec.content_sha()}, reason="resumed", task_sha=self.spec.content_sha(),
                        task_bundle_sha=task_bundle.record(self.led, self.spec))
            self._save(camp)
        self.proj.catch_up(self.led)

    def _save(self, *aggs: Campaign | Trial) -> bool:
        try:
            self.led.save(*aggs)
        except ConflictError:
            return False  # a concurrent writer changed it first: the next reconciliation looks again
        return True

    # ------------------------------------------------------------------ the loop
    def run(self, tick: Callable[[CampaignLoop], None] | None = None, poll_s: float = 0.3) -> Outcome:
        self.open()
        requeue_dead(self.led, self.rows(), ACTOR, self.on_event)
        if self.cfg.runners == "local":
            self.runner = LocalRunner(self.led, self.spec, slots=self.cfg.slots, lease_s=self.cfg.lease_s)
            self.runner.start()
        try:
            while not self.stop.is_set():
                done = self.reconcile()
                if tick is not None:
                    tick(self)
                if done:
                    break
                self.stop.wait(poll_s)
        finally:
            for f in self.writing.values():
                f.cancel()
            self.pool.shutdown(wait=not self.stop.is_set(), cancel_futures=True)
            if self.runner is not None:
                self.runner.stop(kill=self.stop.is_set())
        self.proj.catch_up(self.led)
        return self.outcome()

    def interrupt(self) -> None:
        self.stop.set()

    def reconcile(self) -> bool:
        """One tick: catch up, collect proposals, announce, decide, act. True once closed."""
        self.proj.catch_up(self.led)
        if self._collect_proposals():
            self.proj.catch_up(self.led)
        self._announce()
        info = self.info
        if info.closed_at is not None:
            self.closed_reason = info.closed_reason
            return True
        for action in pol.decide(self.state()):
            if not self.execute(action):
                break
        self.proj.catch_up(self.led)
        self._announce()
        return self.info.closed_at is not None

    # ------------------------------------------------------------------ acting
    def execute(self, a: pol.Action) -> bool:
        """Carry out one action; False when the rest of this decision must wait for the next tick
        (a concurrent writer got there first, or a proposal was started)."""
        if isinstance(a, pol.LaunchBaseline):
            self.submit(diff="", hypothesis="baseline: the task's recipe as shipped", specialist="baseline",
                        parent=None, kind="baseline", seed=self.cfg.seed)
            return False
        if isinstance(a, pol.PromoteBaseline):
            c = self.led.load(Campaign, self.campaign_id)
            obj = self.objective
            why = "baseline" if len(a.runs) == 1 else \
                f"baseline: the mean of its {len(a.runs)} runs (#{', #'.join(str(r.number) for r in a.runs)})"
            c.promote(ACTOR, trial_id=a.baseline.trial_id, number=0, score=a.score, threshold=obj.threshold,
                      noise_sd=obj.sd, evidence=[r.trial_id for r in a.runs], reason=why)
            return self._save(c)
        if isinstance(a, pol.LaunchRerun):
            r = a.of
            self.submit(diff="", hypothesis=f"rerun {a.index + 1} of #{r.number} (seed {a.seed}): the noise of the "
                        "metric, measured in this campaign", specialist=r.specialist, surface=r.surface,
                        parent=r.number, kind="rerun", seed=a.seed)
            return True
        if isinstance(a, pol.MeasureNoise):
            c = self.led.load(Campaign, self.campaign_id)
            est = a.estimate
            c.measure_noise(ACTOR, metric=self.spec.metric, values=list(a.values), sd=est.sd,
                            trials=[r.trial_id for r in a.trials], source=est.source)
            if self._save(c):
                self.on_event(f"noise: {est.describe()}; keep threshold now "
                              f"{self.objective.with_noise(est.sd, est.runs, est.source).threshold:.4g}")
            return False
        if isinstance(a, pol.Judge):
            return self._judge(a)
        if isinstance(a, pol.LaunchConfirmation):
            r = a.of
            self.submit(diff="", hypothesis=f"confirmation run {a.index + 1} of #{r.number} (seed {a.seed}): does "
                        f"its gain of {a.improvement:.4g} hold on another seed?", specialist=r.specialist,
                        surface=r.surface, parent=r.number, kind="confirmation", confirms=r.number, seed=a.seed)
            return True
        if isinstance(a, pol.Retire):
            c = self.led.load(Campaign, self.campaign_id)
            try:
                c.retire(ACTOR, specialist=a.specialist, reason=a.reason)
            except CommandRefused:
                return True
            if self._save(c):
                self.on_event(f"{a.specialist}: retired — {a.reason}")
            return True
        if isinstance(a, pol.Propose):
            if time.time() - self.last_launch < self.cfg.stagger_s:
                return False
            self._start_proposal(a.specialist)
            return False
        if isinstance(a, pol.Close):
            self.close(a.reason)
            return False
        raise TypeError(f"unknown action {a!r}")

    def _judge(self, a: pol.Judge) -> bool:
        obj = self.objective
        inc = a.incumbent
        inc_score = a.incumbent_score if a.incumbent_score is not None else self.info.incumbent_score
        t = self.led.load(Trial, a.trial.trial_id)
        try:
            t.judge(ACTOR, verdict=a.verdict, runs=[ev.RunScore(number=r.number, trial_id=r.trial_id,
                                                                score=r.score or 0.0) for r in a.runs],
                    mean=a.mean, threshold=ev.Threshold(value=obj.threshold, min_delta=obj.min_delta, k=obj.k,
                                                        sd=obj.sd, sd_runs=obj.sd_runs, sd_source=obj.sd_source,
                                                        rule=obj.rule()),
                    incumbent_id=inc.trial_id, incumbent_number=inc.number, incumbent_score=inc_score,
                    improvement=a.improvement, confirmations_wanted=self.confirmations, policy=pol.POLICY,
                    reason=a.reason)
        except CommandRefused:
            return True  # judged already (a concurrent loop): nothing to do
        aggs: list[Campaign | Trial] = [t]
        if a.verdict == "keep":
            c = self.led.load(Campaign, self.campaign_id)
            c.promote(ACTOR, trial_id=a.trial.trial_id, number=a.trial.number, score=a.mean,
                      previous_trial_id=inc.trial_id, previous_score=inc_score,
                      delta=a.mean - inc_score if inc_score is not None else None, threshold=obj.threshold,
                      noise_sd=obj.sd, evidence=[r.trial_id for r in a.runs], reason=a.reason)
            aggs.insert(0, c)
        return self._save(*aggs)

    def close(self, reason: str) -> None:
        out = self.outcome()
        camp = self.led.load(Campaign, self.campaign_id)
        if camp.closed is not None:
            return
        best_id = ev.trial_id_for(self.campaign_id, out.best_number) if out.best_number is not None else None
        camp.close(ACTOR, reason=reason, trials=out.trials, best_trial_id=best_id, best_score=out.best)
        if self._save(camp):
            self.closed_reason = reason
            self.on_event(f"campaign closed: {reason}")

    def submit(self, *, diff: str, hypothesis: str, specialist: str, parent: int | None, kind: str,
               surface: str = "", seed: int = 0, confirms: int | None = None, expected_delta: float | None = None,
               prompt_sha: str | None = None, transcript_sha: str | None = None, notes: str = "",
               backend: str = "", model: str = "", usage: ev.Usage | None = None,
               cost_usd: float = 0.0) -> Submitted | None:
        seen = self.proj.trials.duplicate_keys(self.campaign_id) if kind == "proposal" else frozenset()
        actor = f"agent:{specialist}" if kind == "proposal" else ACTOR
        try:
            return submit_trial(self.led, self.spec, campaign=self.name, diff=diff, hypothesis=hypothesis,
                                actor=actor, parent=parent, specialist=specialist,
                                surface=surface if surface and surface != "*" else None, kind=kind, seen=seen,
                                seed=seed, confirms=confirms, expected_delta=expected_delta, prompt_sha=prompt_sha,
                                transcript_sha=transcript_sha, notes=notes, backend=backend, model=model,
                                usage=usage, cost_usd=cost_usd)
        except LedgerError as e:
            self.on_event(f"could not submit ({kind}): {e}")
            return None

    # ------------------------------------------------------------------ proposals
    def _start_proposal(self, name: str) -> None:
        sp = next(s for s in self.specialists if s.name == name)
        ctx = self.context_for(sp)
        self.writing[name] = self.pool.submit(self._write, ctx)
        self.last_launch = time.time()

    def context_for(self, sp: Specialist) -> Context:
        info = self.info
        inc_no = info.incumbent_number or 0
        rows = self.rows()
        view_arm = "no-lineage" if self.cfg.arm == "no-lineage" else "lineage"
        text = render_lineage_view(self.proj, self.name, sp.name, arm=view_arm, token_budget=self.cfg.token_budget)
        if self.cfg.arm == "no-lineage":
            rows = [r for r in rows if r.number in (0, inc_no)]
        return Context(specialist=sp.name, surface=sp.surface, preamble=sp.preamble, task=self.spec,
                       arm=self.cfg.arm, objective=info.objective, seed=self.cfg.seed, rows=rows, lineage=text,
                       incumbent=inc_no, files_of=self.files_of)

    def _write(self, ctx: Context) -> tuple[Context, Proposal | ProposalFailed]:
        try:
            return ctx, self.backend.propose(ctx)
        except ProposalFailed as e:
            return ctx, e
        except Exception as e:  # noqa: BLE001 — a backend bug must not kill the campaign
            return ctx, ProposalFailed("api_error", f"backend raised {type(e).__name__}: {e}",
                                       backend=self.backend.name)

    def _collect_proposals(self) -> int:
        """Record the proposals the specialists finished writing; returns how many."""
        n = 0
        for name, fut in list(self.writing.items()):
            if not fut.done():
                continue
            del self.writing[name]
            n += 1
            if fut.cancelled():
                continue
            ctx, res = fut.result()
            prompt_sha = self.led.artifacts.put(ctx.lineage_text())
            transcript_sha = self.led.artifacts.put(res.transcript) if res.transcript else None
            if isinstance(res, ProposalFailed):
                self._failed(ctx, res, prompt_sha, transcript_sha)
                continue
            parent = res.parent if res.parent is not None else ctx.incumbent()
            sub = self.submit(diff=res.diff, hypothesis=res.hypothesis, specialist=name, surface=ctx.surface,
                              parent=parent, kind="proposal", seed=self.cfg.seed, expected_delta=res.expected_delta,
                              prompt_sha=prompt_sha, transcript_sha=transcript_sha, notes=res.notes,
                              backend=res.backend or self.backend.name, model=res.model, usage=res.usage,
                              cost_usd=res.cost_usd)
            if sub is not None:
                what = "queued" if sub.passed else f"{sub.label} at preflight ({sub.reason})"
                self.on_event(f"#{sub.number} {name}: {res.hypothesis} — {what}")
        return n

    def _failed(self, ctx: Context, e: ProposalFailed, prompt_sha: str, transcript_sha: str | None) -> None:
        """Every failed proposal is evidence: a diff it made goes through preflight (which labels it),
        anything else is a trial labelled ``cancelled`` with its transcript, usage and cost."""
        if e.kind == "no_api_key":
            self.stop.set()
            raise CampaignError(e.message)
        backend, model = e.backend or self.backend.name, e.model
        parent = e.parent if e.parent is not None else ctx.incumbent()
        if e.diff.strip():
            self.submit(diff=e.diff, hypothesis=e.hypothesis or f"({e.kind})", specialist=ctx.specialist,
                        surface=ctx.surface, parent=parent, kind="proposal", seed=self.cfg.seed,
                        expected_delta=e.expected_delta, prompt_sha=prompt_sha, transcript_sha=transcript_sha,
                        notes=f"backend: {e.kind}: {e.message}", backend=backend, model=model, usage=e.usage,
                        cost_usd=e.cost_usd)
            return
        for _ in range(50):
            camp = self.led.load(Campaign, self.campaign_id)
            n = camp.next_number
            t = Trial.propose(self.campaign_id, n, actor=f"agent:{ctx.specialist}", specialist=ctx.specialist,
                              surface=ctx.surface if ctx.surface != "*" else "",
                              hypothesis=e.hypothesis or f"(no proposal: {e.kind})",
                              parent_id=ev.trial_id_for(self.campaign_id, parent), prompt_sha=prompt_sha,
                              transcript_sha=transcript_sha, expected_delta=e.expected_delta, notes=e.message,
                              backend=backend, model=model, usage=e.usage, cost_usd=e.cost_usd, kind="proposal")
            camp.register(t.id, n, ctx.specialist, "proposal", ACTOR)
            t.label_outcome("cancelled", ACTOR, reason=f"the {backend} backend gave no usable proposal: "
                            f"{e.kind}: {e.message}"[:500])
            if self._save(camp, t):
                self.on_event(f"#{n} {ctx.specialist}: no proposal ({e.kind}: {e.message[:80]})")
                return

    # ------------------------------------------------------------------ telling
    def _announce(self) -> None:
        """One line each time a trial reaches a state a user reads (its label, its verdict)."""
        metric = self.spec.metric
        for r in self.rows():
            if r.status is None or self._announced.get(r.number) == r.state:
                continue
            if r.kind == "proposal" and r.status == "scored":
                continue  # judged in this same tick: its verdict is what is told
            self._announced[r.number] = r.state
            score = f" {metric} {r.score:.6g}" if r.score is not None else ""
            delta = f" (Δ {r.delta:+.4g})" if r.delta is not None and r.kind != "baseline" else ""
            wall = f" [{r.wall_s:.0f}s]" if r.wall_s else ""
            if r.verdict is not None and r.status in ev.VERDICTS and r.kind == "proposal":
                why = f" — {r.verdict.reason}"
                if r.status == "keep":
                    score = f" {metric} {r.verdict.mean:.6g} (mean of {len(r.verdict.runs)} run(s))"
            elif r.status in ("scored", "baseline") or r.label in ev.VALID_SCORED:
                why = ""
            else:
                why = f" — {r.excerpt or r.reason}"[:160]
            self.on_event(f"#{r.number} {r.specialist}: {r.state}{score}{delta}{wall}{why}")

    # ------------------------------------------------------------------ results
    def outcome(self) -> Outcome:
        rows = self.rows()
        base = next((r for r in rows if r.number == 0), None)
        info = self.proj.trials.campaign(self.campaign_id)
        proms = [p for p in info.promotions if p.number != 0] if info else []
        best = proms[-1] if proms else None
        return Outcome(
            campaign=self.name, closed=bool(info and info.closed_at is not None),
            reason=self.closed_reason or (info.closed_reason if info else ""),
            baseline=base.score if base else None,
            best=best.score if best else (base.score if base else None),
            best_number=best.number if best else (0 if base else None),
            promotions=[(p.number, p.score) for p in proms],
            trials=len([r for r in rows if r.kind == "proposal"]),
        )


def latest_open_campaign(led: Ledger) -> str | None:
    names: dict[uuid.UUID, str] = {}
    closed: set[uuid.UUID] = set()
    for r in led.events(types=(ev.CampaignOpened, ev.CampaignClosed, ev.CampaignResumed)):
        e = r.event
        if isinstance(e, ev.CampaignOpened):
            names[e.originator_id] = e.name
        elif isinstance(e, ev.CampaignClosed):
            closed.add(e.originator_id)
        elif isinstance(e, ev.CampaignResumed):
            closed.discard(e.originator_id)
    open_ = [n for cid, n in names.items() if cid not in closed]
    return open_[-1] if open_ else None


def config_of(led: Ledger, name: str) -> CampaignConfig | None:
    camp = led.load(Campaign, ev.campaign_id_for(name))
    if camp.opened is None:
        return None
    raw = dict(camp.opened.config.get("run") or {})
    fields = CampaignConfig.__dataclass_fields__
    return CampaignConfig(**{k: v for k, v in raw.items() if k in fields})

