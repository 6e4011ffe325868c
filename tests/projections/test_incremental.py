"""Projections rebuilt from scratch equal the incrementally maintained ones.

Random but valid campaigns are written through the real aggregates (proposals, preflights,
launches, claims, starts, metrics, finishes, evaluations, labels, relabels, quarantines,
promotions, requeues, noise, resumes, closes, several campaigns), then folded in random chunkings
with every projection's state and every lineage view read between chunks (to fill the caches).
"""

from __future__ import annotations

import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import events as ev
from ledger.aggregates import Campaign, CommandRefused, Trial
from ledger.app import Ledger, Recorded
from ledger.lifecycle import LABELLED, PROPOSED
from projections import Projector, render_lineage_view
from projections.stats import Leaderboard, NoiseReport, StatusDistribution
from tests.projections.helpers import recorded

SPECIALISTS = ("opt", "arch", "data")
WORDS = ("raise", "lower", "the", "learning", "rate", "warmup", "width", "depth", "dropout", "0.1", "0.2",
         "cosine", "schedule", "batch", "size", "muon", "momentum", "ema", "decay", "rope", "heads")
OPS = ("propose",) * 3 + ("advance",) * 8 + ("run",) * 4 + ("label", "label", "relabel", "quarantine", "promote", "requeue",
                                             "noise", "resume", "close", "open", "preflight_fail", "import", "judge", "judge")


class World:
    """Interprets (op, k) pairs as valid commands on campaigns and trials."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.campaigns: list[Campaign] = []
        self.trials: list[tuple[Campaign, Trial]] = []
        self.clock = 1_700_000_000.0
        self.open_campaign(0)

    def tick(self, k: int) -> float:
        self.clock += 1 + k % 97
        return self.clock

    def take(self, *aggs: object) -> None:
        for a in aggs:
            self.events.extend(a.collect_events())  # type: ignore[attr-defined]

    def open_campaign(self, k: int) -> None:
        if len(self.campaigns) >= 3:
            return
        name = f"c{len(self.campaigns)}"
        c = Campaign.open(name=name, actor="human:test", at=self.tick(k), task="toy", task_version="1",
                          task_sha=f"t{k % 2}", metric="loss", direction=("min", "max")[k % 2],
                          arm=("lineage", "no-lineage")[k % 3 == 0], harness_version="h1",
                          config={"noise_sd": 0.05} if k % 2 else {},
                          specialists=[ev.SpecialistDecl(name=s, surface=s) for s in SPECIALISTS])
        self.campaigns.append(c)
        self.take(c)

    def pick(self, k: int, want: set[str] | None = None) -> tuple[Campaign, Trial] | None:
        cands = [p for p in self.trials if want is None or p[1].phase in want]
        return cands[k % len(cands)] if cands else None

    def step(self, op: str, k: int) -> None:
        try:
            getattr(self, f"op_{op}")(k)
        except CommandRefused:
            for c in self.campaigns:  # a refused command leaves nothing pending
                c.collect_events()
            for _c, t in self.trials:
                t.collect_events()

    def op_open(self, k: int) -> None:
        self.open_campaign(k)

    def op_propose(self, k: int) -> None:
        c = self.campaigns[k % len(self.campaigns)]
        n = c.next_number
        mine = [t for cc, t in self.trials if cc is c]
        parent = mine[(k // 7) % len(mine)].id if mine and k % 5 else (mine[0].id if mine else None)
        kind = "baseline" if n == 0 else ("rerun" if k % 11 == 0 else "proposal")
        spec = SPECIALISTS[k % 3] if n else "baseline"
        rng = random.Random(k)
        hyp = " ".join(rng.choice(WORDS) for _ in range(3 + k % 5))
        t = Trial.propose(c.id, n, actor=f"agent:{spec}", at=self.tick(k), specialist=spec, surface=spec,
                          hypothesis=hyp, parent_id=parent, kind=kind, cost_usd=0.01 * (k % 7),
                          usage=ev.Usage(input_tokens=k, output_tokens=k // 3),
                          confirms=parent if kind == "rerun" else None, expected_delta=-0.01 if k % 2 else None)
        c.register(t.id, n, spec, kind, f"agent:{spec}")
        self.take(c, t)
        self.trials.append((c, t))

    def op_advance(self, k: int) -> None:
        p = self.pick(k, {"proposed", "queued", "claimed", "running", "finished", "evaluated"})
        if p is None:
            return self.op_propose(k)
        c, t = p
        at = self.tick(k)
        if t.phase == "proposed":
            if k % 4 == 0:
                t.preflight(True, [ev.Check(name="applies", ok=True)], "harness:test")
            else:
                t.request_launch("harness:test", task="toy", at=at)
        elif t.phase == "queued":
            t.claim(f"host-{k % 3}", lease_s=30, now=at)
        elif t.phase == "claimed":
            t.start(t.runner, t.epoch, host=t.runner, accelerator="cpu", slot=k % 2, at=at,
                    versions={"harness": "h2"} if k % 13 == 0 else {})
        elif t.phase == "running":
            if k % 3 == 0:
                t.log_metrics(t.runner, t.epoch, [ev.MetricPoint(k % 10, "loss", 1.0 / (1 + k % 10))])
            else:
                t.finish(t.runner, t.epoch, exit_status=0 if k % 5 else 1, wall_s=float(k % 300), cpu_s=1.0,
                         artifact_bytes=k * 10, at=at)
        elif t.phase == "finished":
            score = None if k % 9 == 0 else 1.0 + (k % 50) / 100
            t.record_evaluation(t.runner, t.epoch, "evaluator:toy", score=score, metrics={"acc": 0.5},
                                evaluator="toy@1", evaluator_sha=f"e{k % 2}", eval_wall_s=2.0, at=at,
                                gates=[ev.GateResult(name="size", passed=k % 4 != 0)])
        elif t.phase == "evaluated":
            self.label(c, t, k)
        self.take(t)

    def op_run(self, k: int) -> None:
        """A whole trial at once: proposed, launched, claimed, started, finished, evaluated, labelled."""
        self.op_propose(k)
        c, t = self.trials[-1]
        at = self.tick(k)
        runner = f"host-{k % 3}"
        t.request_launch("harness:test", task="toy", at=at)
        t.claim(runner, lease_s=30, now=at)
        t.start(runner, t.epoch, host=runner, accelerator="cpu", slot=k % 2, at=at)
        t.finish(runner, t.epoch, exit_status=0, wall_s=float(k % 300), cpu_s=1.0, at=self.tick(k))
        t.record_evaluation(runner, t.epoch, "evaluator:toy", score=1.0 + (k % 50) / 100, evaluator="toy@1",
                            evaluator_sha=f"e{k % 2}", at=self.tick(k))
        self.label(c, t, k)
        self.take(t)

    def label(self, c: Campaign, t: Trial, k: int) -> None:
        score = t.evaluated.score if t.evaluated else None
        status = "baseline" if t.proposed and t.proposed.kind == "baseline" else ev.STATUSES[k % len(ev.STATUSES)]
        if score is not None and k % 3 == 0 and status != "baseline":
            status = "keep"
        t.label_outcome(status, "harness:test", excerpt="Traceback: boom" if k % 3 == 0 else "", score=score,
                        at=self.tick(k))

    def op_judge(self, k: int) -> None:
        scored = [(c, t) for c, t in self.trials if t.status == "scored" and t.label and t.label.score is not None]
        if scored:
            c, t = scored[k % len(scored)]
            s = t.label.score if t.label and t.label.score is not None else 1.0
            t.judge("agent:campaign", verdict=ev.VERDICTS[k % 3], runs=[ev.RunScore(number=t.number, trial_id=t.id,
                    score=s)], mean=s, threshold=ev.Threshold(value=0.01, min_delta=0.01, k=2.0, sd=0.001),
                    incumbent_id=None, incumbent_number=0, incumbent_score=1.2, improvement=1.2 - s,
                    confirmations_wanted=k % 2, policy="test", reason=f"verdict {k}", at=self.tick(k))
            self.take(t)

    def op_label(self, k: int) -> None:
        p = self.pick(k, {"proposed", "evaluated", "finished"})
        if p:
            self.label(p[0], p[1], k)
            self.take(p[1])

    def op_preflight_fail(self, k: int) -> None:
        p = self.pick(k, {PROPOSED})
        if p:
            p[1].preflight(False, [ev.Check(name="compiles", ok=False, detail="SyntaxError")], "harness:test")
            p[1].label_outcome("preflight_crash", "harness:test", excerpt="SyntaxError: bad", at=self.tick(k))
            self.take(p[1])

    def op_relabel(self, k: int) -> None:
        p = self.pick(k, {LABELLED, "queued"})
        if p and p[1].status is not None:
            p[1].relabel(ev.STATUSES[(k // 3) % len(ev.STATUSES)], f"correction {k}", "human:alice")
            self.take(p[1])

    def op_quarantine(self, k: int) -> None:
        p = self.pick(k)
        if p:
            p[1].quarantine(f"suspicious {k}", "human:bob")
            self.take(p[1])

    def op_promote(self, k: int) -> None:
        keeps = [(c, t) for c, t in self.trials if t.status == "keep"]
        if keeps:
            c, t = keeps[k % len(keeps)]
            score = t.evaluated.score if t.evaluated and t.evaluated.score is not None else 1.0
            c.promote("harness:test", trial_id=t.id, number=t.number, score=score, delta=-0.001 * (k % 40),
                      evidence=[t.id] * (1 + k % 2), noise_sd=0.05, at=self.tick(k))
            self.take(c)

    def op_requeue(self, k: int) -> None:
        p = self.pick(k, {"claimed", "running", "finished", "evaluated"})
        if p:
            p[1].requeue("reaper:test", now=self.clock + 10_000)
            self.take(p[1])

    def op_noise(self, k: int) -> None:
        c = self.campaigns[k % len(self.campaigns)]
        c.measure_noise("harness:test", metric="loss", values=[1.0, 1.01], sd=0.001 * (1 + k % 30), source="reruns")
        self.take(c)

    def op_resume(self, k: int) -> None:
        c = self.campaigns[k % len(self.campaigns)]
        c.resume("human:test", harness_version=f"h{2 + k % 3}", config={"parallel_slots": 1 + k % 4},
                 reason="upgrade")
        self.take(c)

    def op_close(self, k: int) -> None:
        c = self.campaigns[k % len(self.campaigns)]
        c.close("human:test", reason="done", trials=c.next_number)
        self.take(c)

    def op_import(self, k: int) -> None:
        c = self.campaigns[k % len(self.campaigns)]
        self.events.append(ev.RecordImported(originator_id=ev.LEDGER_ID, originator_version=1 + k, actor="importer:x",
                                             format="cmu", source="/x", files={"a": "0" * 64}, campaign_id=c.id,
                                             campaign=c.name, trials=0))


def touch_caches(proj: Projector) -> None:
    _ = proj.state
    for c in proj.trials.campaigns.values():
        for s in SPECIALISTS:
            render_lineage_view(proj, c.name, s, token_budget=300 + len(c.name) * 50)


def views(proj: Projector) -> list[str]:
    return [render_lineage_view(proj, c.name, s, arm=arm, token_budget=b)
            for c in proj.trials.campaigns.values() for s in SPECIALISTS
            for arm in ("lineage", "no-lineage") for b in (200, 6000)]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10_000)), min_size=1, max_size=90),
       chunks=st.lists(st.integers(1, 30), min_size=1, max_size=12))
def test_rebuild_equals_incremental(ops: list[tuple[str, int]], chunks: list[int]) -> None:
    w = World()
    for op, k in ops:
        w.step(op, k)
    recs = recorded(w.events)
    rebuilt = Projector.rebuild(recs)
    inc = Projector()
    i = 0
    for size in chunks:
        inc.apply_all(recs[i:i + size])
        i += size
        touch_caches(inc)
    inc.apply_all(recs[i:])
    assert inc.cursor == rebuilt.cursor == len(recs)
    assert inc.state == rebuilt.state
    assert views(inc) == views(rebuilt)
    # a single projection rebuilt on its own equals the one inside the projector
    for kind in (Leaderboard, StatusDistribution, NoiseReport):
        assert Projector.rebuild(recs, [kind])[kind] == inc[kind]
    # feeding events already seen changes nothing
    inc.apply_all(recs[: len(recs) // 2])
    assert inc.state == rebuilt.state


def test_catch_up_from_a_real_ledger_in_batches() -> None:
    w = World()
    rng = random.Random(7)
    for _ in range(400):
        w.step(rng.choice(OPS[:-1]), rng.randrange(10_000))  # no stray ledger-aggregate events
    led = Ledger.open(f"memory://incremental-{uuid.uuid4()}")
    proj = Projector()
    i = 0
    while i < len(w.events):
        n = rng.randint(1, 60)
        led.save(*w.events[i:i + n])
        i += n
        proj.catch_up(led)
        touch_caches(proj)
    fresh = Projector.from_ledger(led)
    assert proj.cursor == fresh.cursor == len(w.events) == led.size()
    assert proj.state == fresh.state
    assert views(proj) == views(fresh)
    # the projection folded from the ledger equals the one folded from the events as written
    assert fresh.state == Projector.rebuild([Recorded(i, i + 1, e) for i, e in enumerate(w.events)]).state
