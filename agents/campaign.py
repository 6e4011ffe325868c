"""The campaign loop: specialists turn measured lineage into better recipes, with no person in it.

The loop is a *reconciliation* over the ledger, so that it can be killed at any point and resumed:
each tick it catches its projections up with the ledger and, from that state alone, does what is
missing —

1. no baseline yet → launch the baseline (trial 0);
2. a scored proposal that beats the incumbent by more than ``max(min_delta, k × sd)`` and has fewer
   confirmation runs than the task asks for → launch them (linked trials, ``kind=confirmation``);
3. a candidate whose confirmations are all in → promote it if the mean of its runs still beats the
   incumbent by more than the threshold (``IncumbentPromoted`` names the evidence; the trial is
   relabelled ``keep``), otherwise it stays ``discard``;
4. budget left and a free proposal slot → ask the next specialist for a proposal (in a worker
   thread, so slow LLM calls overlap), preflight it, queue it;
5. budgets spent and nothing in flight → close the campaign.

Trial numbers are allocated by compare-and-set on the campaign aggregate, so a resumed loop can
neither duplicate nor lose a trial. Execution is left to runners: an in-process one by default, or
``arledger runner`` daemons elsewhere (``runners="external"``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from agents.base import Backend, Proposal, ProposalFailed
from ledger import diffs
from ledger import events as ev
from ledger.aggregates import Campaign, CommandRefused, Trial
from ledger.app import ConflictError, Ledger
from ledger.store import LedgerError
from projections.lineage_view import render_lineage_view
from projections.projector import Projector
from projections.trials import TrialRow
from tasks import preflight as pf
from tasks import workspace as wsp
from tasks.runner import open_campaign, submit_trial
from tasks.spec import Surface, TaskSpec

TERMINAL = set(ev.STATUSES) - {"runner_lost"}
FAILED_RUN = {"crash", "oom", "diverged", "train_budget_overrun", "eval_budget_overrun", "disqualified",
              "size_blocked", "illegal_edit", "preflight_crash", "duplicate", "cancelled", "runner_lost"}
TRANSIENT = {"api_error", "no_tool_call", "turn_limit"}
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
    token_budget: int = 6000
    model: str | None = None
    thinking_budget: int = 0
    base_url: str | None = None  # the API server of an LLM backend (openai: any Chat Completions server)
    price_in: float | None = None  # USD per million input tokens, for whatever model the backend calls
    price_out: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Specialist:
    name: str
    surface: str  # a surface of the task, or "*" for a generalist
    preamble: str


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


class CampaignError(LedgerError):
    """A campaign cannot start or go on; the message says why and what to do."""


def specialists_for(spec: TaskSpec, arm: str, override: list[str] | None) -> list[Specialist]:
    if arm.startswith("generic:"):
        try:
            n = int(arm.split(":", 1)[1])
        except ValueError:
            raise CampaignError(f"arm {arm!r}: write generic:N with N a whole number, e.g. generic:4") from None
        if n < 1:
            raise CampaignError("arm generic:N needs N >= 1")
        pre = "You are a generalist: any part of the recipe is yours. One idea per trial, measurable."
        return [Specialist(f"gen{i + 1}", "*", pre) for i in range(n)]
    if arm == "single":
        return [Specialist("solo", "*", "You are the only researcher: any part of the recipe is yours.")]
    if arm not in ("lineage", "no-lineage"):
        raise CampaignError(f"unknown arm {arm!r}; use lineage, no-lineage, generic:N or single")
    decl = [Specialist(s.name, s.surface, s.preamble) for s in spec.specialists]
    if not decl:
        decl = [Specialist(name, name, s.description) for name, s in spec.surfaces.items()]
    if override:
        known = {s.name: s for s in decl}
        bad = [n for n in override if n not in known]
        if bad:
            raise CampaignError(f"task {spec.name} has no specialist {', '.join(bad)}; it has {', '.join(known)}")
        decl = [known[n] for n in override]
    return decl


def generalist_task(spec: TaskSpec) -> TaskSpec:
    """The task with one more surface, ``*``, owning every recipe file and every knob."""
    import dataclasses

    files = tuple(spec.recipe_files)
    knobs = tuple(spec.knobs())
    allsurf = Surface(name="*", description="the whole recipe", files=files, regions=(), knobs=knobs)
    return dataclasses.replace(spec, surfaces={**spec.surfaces, "*": allsurf},
                               patches=tuple(dataclasses.replace(p, surface="*") for p in spec.patches))


def make_backend(name: str, cfg: CampaignConfig) -> Backend:
    if name == "heuristic":
        from agents.heuristic_backend import HeuristicBackend

        return HeuristicBackend(seed=cfg.seed)
    if name == "random":
        from agents.random_backend import RandomKnobBackend

        return RandomKnobBackend(seed=cfg.seed)
    if name in ("anthropic", "openai"):
        from agents import anthropic_backend, openai_backend
        from agents.base import MissingAPIKey
        from agents.prices import ANY_MODEL, Price

        module = anthropic_backend if name == "anthropic" else openai_backend
        kw: dict[str, Any] = {"base_url": cfg.base_url}
        if cfg.model:
            kw["model"] = cfg.model
        if cfg.price_in is not None or cfg.price_out is not None:
            kw["prices"] = module.default_prices().with_prices(
                {ANY_MODEL: Price.flat(cfg.price_in or 0.0, cfg.price_out or 0.0)})
        try:
            if name == "anthropic":
                return anthropic_backend.AnthropicBackend(thinking_budget=cfg.thinking_budget, **kw)
            return openai_backend.OpenAIBackend(**kw)
        except (MissingAPIKey, ValueError) as e:
            raise CampaignError(str(e)) from None
    if name.startswith("replay:"):
        from agents.replay_backend import ReplayBackend

        return ReplayBackend(name.split(":", 1)[1])
    raise CampaignError(f"unknown backend {name!r}; use heuristic (offline, default), anthropic, openai, random "
                        "or replay:FILE")


class Context:
    """What one specialist sees for one proposal (a snapshot, safe to use from a worker thread)."""

    def __init__(self, loop: CampaignLoop, sp: Specialist, rows: list[TrialRow], lineage: str, incumbent: int):
        self._loop = loop
        self.specialist = sp.name
        self.surface = sp.surface
        self.preamble = sp.preamble
        self.task = loop.spec
        self.task_name = loop.spec.name
        self.metric = loop.spec.metric
        self.direction = loop.spec.direction
        self.arm = loop.cfg.arm
        self.threshold = loop.threshold
        self.seed = loop.cfg.seed
        self._rows = rows
        self._lineage = lineage
        self._incumbent = incumbent

    def lineage_text(self) -> str:
        return self._lineage

    def trials(self) -> list[TrialRow]:
        return list(self._rows)

    def incumbent(self) -> int:
        return self._incumbent

    def trial_files(self, number: int) -> dict[str, str]:
        tid = self._loop.camp_trial_id(number)
        if tid is None:
            raise KeyError(f"no trial {number} in this campaign")
        return self._loop.files_of(tid)

    def trial_diff(self, a: int, b: int) -> str:
        return diffs.make_diff(self.trial_files(a), self.trial_files(b))

    def editable_files(self) -> list[str]:
        s = self.task.surfaces.get(self.surface)
        return list(s.files) if s else list(self.task.recipe_files)

    def check_size(self, files: dict[str, str]) -> str:
        cap = self.task.gates.artifact_max_bytes
        code = sum(len(files[f].encode()) for f in self.task.recipe_files if f in files)
        if cap is None:
            return f"code is {code} bytes; this task has no artifact cap"
        verdict = "fits" if code < cap else "DOES NOT FIT"
        return (f"code is {code} bytes of the {cap}-byte cap ({verdict}); the compressed model must fit in the "
                f"remaining {max(cap - code, 0)} bytes")

    def check_surface(self, parent: int, diff: str) -> str | None:
        files = self.trial_files(parent)
        res = pf.check(self.task, files, diff, surface=None if self.surface == "*" else self.surface,
                       seen=set(), allow_empty=False)
        for c in res.checks:
            if not c.ok and c.name in ("parses", "paths_inside", "evaluator", "surface", "regions", "size_limit",
                                       "applies"):
                return f"{c.name}: {c.detail}"
        return None

    def query_trials(self, query: str) -> str:
        return query_rows(self._rows, query)


def query_rows(rows: list[TrialRow], query: str) -> str:
    """A small query language over the trial table: 'children N', 'chain N', 'status S',
    'specialist S', 'best K', or free text searched in hypotheses."""
    words = query.strip().split()
    by_num = {r.number: r for r in rows}
    sel: list[TrialRow]
    if len(words) == 2 and words[0] == "children" and words[1].isdigit():
        sel = [r for r in rows if r.parent == int(words[1])]
    elif len(words) == 2 and words[0] == "chain" and words[1].isdigit():
        sel, n = [], int(words[1])
        while n in by_num:
            sel.append(by_num[n])
            n = by_num[n].parent if by_num[n].parent is not None else -1
        sel.reverse()
    elif len(words) == 2 and words[0] == "status":
        sel = [r for r in rows if r.status == words[1]]
    elif len(words) == 2 and words[0] == "specialist":
        sel = [r for r in rows if r.specialist == words[1]]
    elif len(words) == 2 and words[0] == "best" and words[1].isdigit():
        sel = sorted([r for r in rows if r.score is not None and r.status in ("keep", "discard", "baseline")],
                     key=lambda r: r.score)[: int(words[1])]  # type: ignore[arg-type,return-value]
    else:
        q = query.lower()
        sel = [r for r in rows if q in r.hypothesis.lower()]
    if not sel:
        return "no trials match"
    out = []
    for r in sel[:60]:
        score = f"{r.score:.6g}" if r.score is not None else "-"
        out.append(f"#{r.number} parent={r.parent} {r.specialist} {r.status or r.phase} score={score} "
                   f"{r.hypothesis[:120]}" + (f" [{r.excerpt[:100]}]" if r.excerpt else ""))
    return "\n".join(out)


def improvement(direction: str, score: float, than: float) -> float:
    """How much better ``score`` is than ``than`` (positive = better), in metric units."""
    return than - score if direction == "min" else score - than


class CampaignLoop:
    def __init__(self, ledger: Ledger, spec: TaskSpec, cfg: CampaignConfig, *, backend: Backend | None = None,
                 resume: bool = False, on_event: Callable[[str], None] | None = None):
        self.led = ledger
        self.cfg = cfg
        import dataclasses

        from tasks.spec import Specialist as SpecSpecialist

        self.specialists = specialists_for(spec, cfg.arm, cfg.specialists)
        base = generalist_task(spec) if (cfg.arm.startswith("generic:") or cfg.arm == "single") else spec
        # the campaign records the specialists it actually runs (arm, overrides)
        self.spec = dataclasses.replace(base, specialists=tuple(
            SpecSpecialist(s.name, s.surface, s.preamble) for s in self.specialists))
        self.backend = backend or make_backend(cfg.backend, cfg)
        self.on_event = on_event or (lambda msg: None)
        noise = spec.noise
        self.k = cfg.k if cfg.k is not None else noise.k
        self.min_delta = cfg.min_delta if cfg.min_delta is not None else noise.min_delta
        self.confirmations = cfg.confirmations if cfg.confirmations is not None else noise.confirmation_runs
        self.noise_sd = noise.sd
        self.name = cfg.name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.resume = resume
        self.proj = Projector()
        self.campaign_id = ev.campaign_id_for(self.name)
        self.stop = threading.Event()
        self.started = time.time()
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(self.specialists)), thread_name_prefix="specialist")
        self.pending: dict[str, Future[Any]] = {}
        self.last_launch = 0.0
        self.rr = 0  # round robin over specialists
        self.fail_streak: dict[str, int] = {}
        self.seen_norm: set[str] = set()
        self.norm_done: set[int] = set()
        self.files_cache: dict[uuid.UUID, dict[str, str]] = {}
        self.closed_reason: str | None = None
        self.runner: Any = None
        self.runner_thread: threading.Thread | None = None
        self.runner_stop = threading.Event()
        self.lock = threading.Lock()
        self._rejections: list[TrialRow] = []
        self._announced: set[int] = set()

    # ------------------------------------------------------------------ derived numbers
    @property
    def threshold(self) -> float:
        return max(self.min_delta, self.k * self.noise_sd)

    def camp_trial_id(self, number: int) -> uuid.UUID | None:
        return ev.trial_id_for(self.campaign_id, number) if number in self._numbers else None

    def files_of(self, trial_id: uuid.UUID) -> dict[str, str]:
        with self.lock:
            got = self.files_cache.get(trial_id)
        if got is None:
            got = wsp.trial_files(self.led, trial_id, self.spec)
            with self.lock:
                self.files_cache[trial_id] = got
        return dict(got)

    def rows(self) -> list[TrialRow]:
        return sorted(self.proj.trials.rows(self.campaign_id), key=lambda r: r.number)

    # ------------------------------------------------------------------ opening
    def open(self) -> None:
        camp = self.led.load(Campaign, self.campaign_id)
        if camp.opened is not None and not self.resume:
            raise CampaignError(f"campaign {self.name} already exists; resume it with `arledger run --resume "
                                f"--campaign {self.name}` or choose another --name")
        if camp.opened is None:
            if self.resume:
                raise CampaignError(f"there is no campaign {self.name} to resume")
            config = {"run": self.cfg.to_dict(), "threshold": self.threshold, "noise_sd": self.noise_sd,
                      "surfaces": {n: {"files": list(s.files), "regions": list(s.regions),
                                       "knobs": [k.name for k in s.knobs]} for n, s in self.spec.surfaces.items()}}
            open_campaign(self.led, self.spec, self.name, actor=ACTOR, arm=self.cfg.arm, config=config,
                          seed=self.cfg.seed)
            camp = self.led.load(Campaign, self.campaign_id)
            camp.measure_noise(ACTOR, metric=self.spec.metric, values=list(self.spec.noise.reruns),
                               sd=self.noise_sd, source="task")
            self._save(camp)
        else:
            if camp.opened.task != self.spec.name:
                raise CampaignError(f"campaign {self.name} runs task {camp.opened.task}, not {self.spec.name}")
            if camp.opened.task_sha != self.spec.content_sha():
                self.on_event(f"note: task {self.spec.name} changed since the campaign opened; recorded in "
                              "CampaignResumed and visible in the audit report")
            camp.resume(ACTOR, harness_version=_harness_version(), config={"run": self.cfg.to_dict(),
                        "task_sha": self.spec.content_sha()}, reason="resumed")
            self._save(camp)
            if camp.noise is not None and camp.noise.sd > 0:
                self.noise_sd = camp.noise.sd
        self.proj.catch_up(self.led)

    def _save(self, *aggs: Any) -> None:
        try:
            self.led.save(*aggs)
        except ConflictError:
            pass  # a concurrent writer changed it first: the next reconciliation looks again

    @property
    def _numbers(self) -> set[int]:
        return {r.number for r in self.proj.trials.rows(self.campaign_id)}

    # ------------------------------------------------------------------ runners
    def start_runner(self) -> None:
        if self.cfg.runners != "local":
            return
        from tasks.runner import Runner

        rid = f"local:{socket.gethostname()}:{os.getpid()}"
        self.runner = Runner(ledger=self.led, runner_id=rid, slots=self.cfg.slots, lease_s=self.cfg.lease_s,
                             tasks=[self.spec], log=lambda m: None)
        self.runner_thread = threading.Thread(target=self.runner.run_forever, args=(self.runner_stop,),
                                              name="runner", daemon=True)
        self.runner_thread.start()

    def reap_dead_local_runners(self) -> None:
        """On resume: leases held by a runner of this host whose process is gone are requeued now,
        instead of after they expire."""
        host = socket.gethostname()
        for r in self.rows():
            if r.phase not in ("claimed", "running", "finished", "evaluated") or not r.runner.startswith("local:"):
                continue
            parts = r.runner.split(":")
            if len(parts) != 3 or parts[1] != host or not parts[2].isdigit():
                continue
            pid = int(parts[2])
            if pid == os.getpid() or _alive(pid):
                continue
            t = self.led.load(Trial, r.trial_id)
            try:
                t.requeue(ACTOR, now=math.inf, reason=f"runner process {pid} on {host} is gone")
                self.led.save(t)
                self.on_event(f"#{r.number}: requeued (its runner process {pid} is gone)")
            except (CommandRefused, ConflictError):
                pass

    def stop_runner(self, kill: bool = False) -> None:
        if self.runner is None:
            return
        if kill:
            self.runner.kill()
        self.runner_stop.set()
        if self.runner_thread is not None:
            self.runner_thread.join(timeout=60)
        self.runner.close()

    # ------------------------------------------------------------------ the loop
    def run(self, tick: Callable[[CampaignLoop], None] | None = None, poll_s: float = 0.3) -> Outcome:
        self.open()
        self.reap_dead_local_runners()
        self.start_runner()
        try:
            while not self.stop.is_set():
                self.proj.catch_up(self.led)
                done = self.reconcile()
                if tick is not None:
                    tick(self)
                if done:
                    break
                self.stop.wait(poll_s)
        finally:
            for f in self.pending.values():
                f.cancel()
            self.pool.shutdown(wait=not self.stop.is_set(), cancel_futures=True)
            self.stop_runner(kill=self.stop.is_set())
        self.proj.catch_up(self.led)
        return self.outcome()

    def interrupt(self) -> None:
        self.stop.set()

    def reconcile(self) -> bool:
        if self._collect_proposals():
            self.proj.catch_up(self.led)
        rows = self.rows()
        self._announce(rows)
        by_num = {r.number: r for r in rows}
        camp = self.led.load(Campaign, self.campaign_id)
        if camp.closed is not None:
            self.closed_reason = camp.closed.reason
            return True
        # 1. baseline
        if 0 not in by_num:
            self.submit(diff="", hypothesis="baseline: the task's recipe as shipped", specialist="baseline",
                        surface="", parent=None, kind="baseline", seed=self.cfg.seed)
            return False
        base = by_num[0]
        if base.status in FAILED_RUN:
            self.close(camp, f"the baseline failed ({base.status}): {base.reason or base.excerpt}")
            return True
        if base.score is None:
            return False
        inc = camp.incumbent
        if inc is None:
            c = self.led.load(Campaign, self.campaign_id)
            c.promote(ACTOR, trial_id=base.trial_id, number=0, score=base.score, threshold=self.threshold,
                      noise_sd=self.noise_sd, evidence=[base.trial_id], reason="baseline")
            self._relabel(base, "baseline", f"the baseline scored {base.score:.6g}")
            self._save(c)
            return False
        # 2-3. candidates and confirmations
        inc_score = inc.score
        promoted = {e.number for e in self._promotions()}
        for r in rows:
            if r.kind != "proposal" or r.number in promoted or r.status != "discard" or r.score is None:
                continue
            imp = improvement(self.spec.direction, r.score, inc_score)
            if imp <= self.threshold:
                continue
            confs = [c for c in rows if c.kind == "confirmation" and c.confirms == r.number]
            if len(confs) < self.confirmations:
                for i in range(len(confs), self.confirmations):
                    self.submit(diff="", hypothesis=f"confirmation run {i + 1} of #{r.number} (seed "
                                f"{r.seed + 1000 + i}): does its gain of {imp:.4g} hold on another seed?",
                                specialist=r.specialist, surface=r.surface, parent=r.number, kind="confirmation",
                                confirms=r.trial_id, seed=r.seed + 1000 + i)
                    self.on_event(f"#{r.number} beat the incumbent by {imp:.4g} (> {self.threshold:.4g}): "
                                  "confirming on another seed")
                continue
            if any(c.status is None or c.phase != "labelled" for c in confs):
                continue
            bad = [c for c in confs if c.status not in ("discard", "keep") or c.score is None]
            scores = [r.score] + [c.score for c in confs if c.score is not None]
            mean = statistics.fmean(scores)
            mean_imp = improvement(self.spec.direction, mean, inc_score)
            if bad or mean_imp <= self.threshold:
                if not any(x.number == r.number for x in self._rejections):
                    self._rejections.append(r)
                    self.on_event(f"#{r.number} not promoted: mean of {len(scores)} runs improves by "
                                  f"{mean_imp:.4g} (threshold {self.threshold:.4g})" + (" — a confirmation failed" if bad else ""))
                continue
            self.promote(r, confs, mean, mean_imp, inc)
            return False
        # 4-5. budgets, proposals, closing
        stop_reason = self.budget_exhausted(rows)
        in_flight = [r for r in rows if r.status is None or r.phase not in ("labelled",)]
        awaiting = self._awaiting_confirmation(rows, inc_score, promoted)
        if stop_reason:
            if not in_flight and not self.pending and not awaiting:
                self.close(camp, stop_reason)
                return True
            return False
        self.maybe_propose(rows)
        return False

    def _announce(self, rows: list[TrialRow]) -> None:
        """One line per trial as it lands (its label), for the display and the quiet log."""
        for r in rows:
            if r.phase != "labelled" or r.number in self._announced or r.status is None:
                continue
            self._announced.add(r.number)
            if r.kind == "baseline" and r.status == "discard":
                r = dataclasses.replace(r, status="baseline")
            score = f" {self.spec.metric} {r.score:.6g}" if r.score is not None else ""
            delta = f" (Δ {r.delta:+.4g})" if r.delta is not None and r.number != 0 else ""
            why = f" — {r.excerpt or r.reason}"[:140] if r.status not in ("discard", "keep", "baseline") else ""
            wall = f" [{r.wall_s:.0f}s]" if r.wall_s else ""
            self.on_event(f"#{r.number} {r.specialist} {r.kind}: {r.status}{score}{delta}{wall}{why}")

    def _awaiting_confirmation(self, rows: list[TrialRow], inc_score: float, promoted: set[int]) -> bool:
        for r in rows:
            if r.kind == "proposal" and r.number not in promoted and r.status == "discard" and r.score is not None:
                if improvement(self.spec.direction, r.score, inc_score) > self.threshold:
                    confs = [c for c in rows if c.kind == "confirmation" and c.confirms == r.number]
                    if len(confs) < self.confirmations or any(c.phase != "labelled" for c in confs):
                        return True
        return False

    def _promotions(self) -> list[ev.IncumbentPromoted]:
        camp = self.led.load(Campaign, self.campaign_id)
        return [e for e in camp.history if isinstance(e, ev.IncumbentPromoted)]

    def promote(self, r: TrialRow, confs: list[TrialRow], mean: float, mean_imp: float,
                inc: ev.IncumbentPromoted) -> None:
        c = self.led.load(Campaign, self.campaign_id)
        runs = len(confs) + 1
        evidence = [r.trial_id] + [x.trial_id for x in confs]
        why = (f"mean of {runs} run(s) {mean:.6g} beats #{inc.number} ({inc.score:.6g}) by {mean_imp:.4g} > "
               f"threshold {self.threshold:.4g} = max(min_delta {self.min_delta:.4g}, k {self.k:g} x sd "
               f"{self.noise_sd:.4g})" + (f"; confirmations #{', #'.join(str(x.number) for x in confs)}" if confs
                                          else "; single run (the task asks for no confirmation)"))
        c.promote(ACTOR, trial_id=r.trial_id, number=r.number, score=mean, previous_trial_id=inc.trial_id,
                  previous_score=inc.score, delta=mean - inc.score, threshold=self.threshold,
                  noise_sd=self.noise_sd, evidence=evidence, reason=why)
        t = self.led.load(Trial, r.trial_id)
        t.relabel("keep", f"promoted: {why}", ACTOR)
        try:
            self.led.save(c, t)
        except ConflictError:
            return  # someone else changed the campaign meanwhile: the next tick decides again
        self.on_event(f"#{r.number} PROMOTED ({r.specialist}): {self.spec.metric} {mean:.6g} ({why})")

    def _relabel(self, r: TrialRow, status: str, reason: str) -> None:
        if r.status == status:
            return
        t = self.led.load(Trial, r.trial_id)
        try:
            t.relabel(status, reason, ACTOR)
            self.led.save(t)
        except (CommandRefused, ConflictError):
            pass

    def close(self, camp: Campaign, reason: str) -> None:
        out = self.outcome()
        camp = self.led.load(Campaign, self.campaign_id)
        if camp.closed is not None:
            return
        best_id = ev.trial_id_for(self.campaign_id, out.best_number) if out.best_number is not None else None
        camp.close(ACTOR, reason=reason, trials=out.trials, best_trial_id=best_id, best_score=out.best)
        try:
            self.led.save(camp)
        except ConflictError:
            return
        self.closed_reason = reason
        self.on_event(f"campaign closed: {reason}")

    def budget_exhausted(self, rows: list[TrialRow]) -> str | None:
        props = [r for r in rows if r.kind == "proposal"]
        if len(props) + len(self.pending) >= self.cfg.max_trials:
            return f"trial budget reached ({self.cfg.max_trials} proposals)"
        if self.cfg.deadline_s is not None and time.time() - self.started >= self.cfg.deadline_s:
            return f"deadline reached ({self.cfg.deadline_s:.0f} s)"
        if self.cfg.max_usd is not None and sum(r.cost_usd for r in rows) >= self.cfg.max_usd:
            return f"LLM budget reached (${self.cfg.max_usd:.2f})"
        if self.cfg.max_compute_h is not None and sum(r.wall_s for r in rows) / 3600 >= self.cfg.max_compute_h:
            return f"compute budget reached ({self.cfg.max_compute_h:g} h)"
        if self.cfg.grace is not None:
            last_keep = max((e.number for e in self._promotions()), default=0)
            since = [r for r in props if r.number > last_keep and r.status is not None]
            if len(since) >= self.cfg.grace:
                return f"no improvement in the last {self.cfg.grace} scored proposals"
        return None

    # ------------------------------------------------------------------ proposing
    def maybe_propose(self, rows: list[TrialRow]) -> None:
        if self.stop.is_set():
            return
        # just in time: no more proposals in flight than runner slots, so each new proposal is made
        # with the latest results in its lineage
        in_flight = [r for r in rows if r.phase != "labelled"]
        limit = self.cfg.max_queued if self.cfg.max_queued is not None else max(1, self.cfg.slots)
        if len(in_flight) + len(self.pending) >= limit:
            return
        if time.time() - self.last_launch < self.cfg.stagger_s:
            return
        n = len(self.specialists)
        for i in range(n):
            sp = self.specialists[(self.rr + i) % n]
            if sp.name in self.pending:
                continue
            mine = [r for r in rows if r.specialist == sp.name and r.kind == "proposal" and r.phase != "labelled"]
            if len(mine) >= self.cfg.in_flight:
                continue
            self.rr = (self.rr + i + 1) % n
            ctx = self.context_for(sp, rows)
            self.pending[sp.name] = self.pool.submit(self._propose, sp, ctx)
            self.last_launch = time.time()
            return

    def context_for(self, sp: Specialist, rows: list[TrialRow]) -> Context:
        inc = self.led.load(Campaign, self.campaign_id).incumbent
        inc_no = inc.number if inc else 0
        view_arm = "no-lineage" if self.cfg.arm == "no-lineage" else "lineage"
        text = render_lineage_view(self.proj, self.name, sp.name, arm=view_arm, token_budget=self.cfg.token_budget)
        if self.cfg.arm == "no-lineage":
            rows = [r for r in rows if r.number in (0, inc_no)]
        return Context(self, sp, rows, text, inc_no)

    def _propose(self, sp: Specialist, ctx: Context) -> tuple[Specialist, Context, Proposal | ProposalFailed]:
        try:
            return sp, ctx, self.backend.propose(ctx)
        except ProposalFailed as e:
            return sp, ctx, e
        except Exception as e:  # noqa: BLE001 — a backend bug must not kill the campaign
            return sp, ctx, ProposalFailed("api_error", f"backend raised {type(e).__name__}: {e}")

    def _collect_proposals(self) -> int:
        """Record the proposals that workers have finished; returns how many."""
        n = 0
        for name, fut in list(self.pending.items()):
            if not fut.done():
                continue
            del self.pending[name]
            n += 1
            if fut.cancelled():
                continue
            sp, ctx, res = fut.result()
            prompt_sha = self.led.artifacts.put(ctx.lineage_text())
            if isinstance(res, ProposalFailed):
                self._failed(sp, ctx, res, prompt_sha)
                continue
            self.fail_streak[sp.name] = 0
            notes = res.notes
            if res.transcript:
                notes = (notes + "\n" if notes else "") + f"transcript: {self.led.artifacts.put(res.transcript)}"
            parent = res.parent if res.parent is not None else ctx.incumbent()
            sub = self.submit(diff=res.diff, hypothesis=res.hypothesis, specialist=sp.name,
                              surface=sp.surface if sp.surface != "*" else "", parent=parent, kind="proposal",
                              expected_delta=res.expected_delta, prompt_sha=prompt_sha, notes=notes,
                              backend=res.backend or self.backend.name, model=res.model, usage=res.usage,
                              cost_usd=res.cost_usd, seed=self.cfg.seed)
            if sub is not None:
                what = "queued" if sub.passed else f"{sub.label} at preflight ({sub.reason})"
                self.on_event(f"#{sub.number} {sp.name}: {res.hypothesis[:90]} — {what}")
        return n

    def _failed(self, sp: Specialist, ctx: Context, e: ProposalFailed, prompt_sha: str) -> None:
        if e.kind == "no_api_key":
            self.stop.set()
            raise CampaignError(e.message)
        streak = self.fail_streak.get(sp.name, 0) + 1
        self.fail_streak[sp.name] = streak
        if e.kind in TRANSIENT and streak <= 2:
            self.on_event(f"{sp.name}: {e.kind} ({e.message[:80]}); retrying")
            return
        if e.diff.strip():
            # a diff that is not valid / outside the surface / too large: preflight labels it
            self.submit(diff=e.diff, hypothesis=e.hypothesis or f"({e.kind})", specialist=sp.name,
                        surface=sp.surface if sp.surface != "*" else "", parent=ctx.incumbent(), kind="proposal",
                        prompt_sha=prompt_sha, notes=f"backend: {e.kind}: {e.message}", backend=self.backend.name,
                        usage=e.usage, cost_usd=e.cost_usd, seed=self.cfg.seed)
            return
        if e.kind == "empty" and streak > 3:
            # this specialist has nothing left to try: retire it for this campaign
            self.specialists = [s for s in self.specialists if s.name != sp.name] or self.specialists
        self.record_cancelled(sp, ctx, e, prompt_sha)

    def record_cancelled(self, sp: Specialist, ctx: Context, e: ProposalFailed, prompt_sha: str) -> None:
        for _ in range(50):
            camp = self.led.load(Campaign, self.campaign_id)
            n = camp.next_number
            t = Trial.propose(self.campaign_id, n, actor=f"agent:{sp.name}", specialist=sp.name,
                              surface=sp.surface if sp.surface != "*" else "",
                              hypothesis=e.hypothesis or f"(no proposal: {e.kind})",
                              parent_id=ev.trial_id_for(self.campaign_id, ctx.incumbent()), prompt_sha=prompt_sha,
                              notes=e.message, backend=self.backend.name, usage=e.usage, cost_usd=e.cost_usd,
                              kind="proposal")
            camp.register(t.id, n, sp.name, "proposal", ACTOR)
            t.label_outcome("cancelled", ACTOR, reason=f"the {self.backend.name} backend gave no usable proposal: "
                            f"{e.kind}: {e.message}"[:500])
            try:
                self.led.save(camp, t)
            except ConflictError:
                continue
            self.on_event(f"#{n} {sp.name}: no proposal ({e.kind}: {e.message[:80]})")
            return

    def submit(self, *, diff: str, hypothesis: str, specialist: str, surface: str, parent: int | None,
               kind: str, **fields: Any) -> Any:
        if kind == "proposal":
            self._refresh_seen()
        try:
            return submit_trial(self.led, self.spec, campaign=self.name, diff=diff, hypothesis=hypothesis,
                                actor=f"agent:{specialist}" if kind == "proposal" else ACTOR,
                                parent=parent, specialist=specialist, surface=surface or None,
                                seen=set(self.seen_norm) if kind == "proposal" else set(), kind=kind, **fields)
        except ValueError as e:
            self.on_event(f"could not submit ({kind}): {e}")
            return None

    def _refresh_seen(self) -> None:
        """Duplicate keys of every trial so far: its code tree, and its diff on its parent's code."""
        rows = {r.number: r for r in self.proj.trials.rows(self.campaign_id)}
        for r in rows.values():
            if r.number in self.norm_done or r.tree_sha is None:
                continue
            self.norm_done.add(r.number)
            self.seen_norm.add(pf.tree_key(r.tree_sha))
            parent = rows.get(r.parent) if r.parent is not None else None
            if r.diff_sha and parent is not None and parent.tree_sha:
                try:
                    text = self.led.artifacts.get_text(r.diff_sha)
                except Exception:  # noqa: BLE001
                    continue
                if text.strip():
                    self.seen_norm.add(pf.duplicate_key(parent.tree_sha, text))

    # ------------------------------------------------------------------ results
    def outcome(self) -> Outcome:
        rows = self.rows()
        base = next((r for r in rows if r.number == 0), None)
        proms = [e for e in self._promotions() if e.number != 0]
        best = proms[-1] if proms else None
        camp = self.led.load(Campaign, self.campaign_id)
        return Outcome(
            campaign=self.name, closed=camp.closed is not None, reason=self.closed_reason or "",
            baseline=base.score if base else None,
            best=best.score if best else (base.score if base else None),
            best_number=best.number if best else (0 if base else None),
            promotions=[(e.number, e.score) for e in proms],
            trials=len([r for r in rows if r.kind == "proposal"]),
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _harness_version() -> str:
    from ledger.app import __version__

    return __version__


def latest_open_campaign(led: Ledger) -> str | None:
    names: dict[uuid.UUID, str] = {}
    closed: set[uuid.UUID] = set()
    for r in led.events(topics=(ev.TOPIC_OF[ev.CampaignOpened], ev.TOPIC_OF[ev.CampaignClosed],
                                ev.TOPIC_OF[ev.CampaignResumed])):
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
