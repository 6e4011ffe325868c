"""Build valid campaigns event by event (through the real aggregates) for projection tests."""

from __future__ import annotations

from typing import Any

from ledger import events as ev
from ledger.aggregates import Campaign, Trial
from ledger.app import Recorded


class Builder:
    """A campaign written through the aggregates' commands, its events kept in commit order."""

    def __init__(self, name: str = "toy", *, metric: str = "loss", direction: str = "min",
                 specialists: tuple[str, ...] = ("opt", "arch", "data"), config: dict[str, Any] | None = None,
                 arm: str = "lineage", t0: float = 1_700_000_000.0, harness: str = "h1",
                 events: list[ev.Event] | None = None):
        self.events: list[ev.Event] = events if events is not None else []
        self.clock = t0
        self.campaign = Campaign.open(
            name=name, actor="human:test", at=self.tick(), task="toy-task", task_version="1", task_sha="ts1",
            metric=metric, direction=direction, arm=arm, harness_version=harness, config=config or {},
            specialists=[ev.SpecialistDecl(name=s, surface=s) for s in specialists])
        self.take(self.campaign)
        self.trials: dict[int, Trial] = {}
        self.scores: dict[int, float] = {}
        self.incumbent: tuple[int, float] | None = None

    def tick(self, dt: float = 60.0) -> float:
        self.clock += dt
        return self.clock

    def take(self, *aggs: Any) -> None:
        for a in aggs:
            self.events.extend(a.collect_events())

    # lifecycle pieces ----------------------------------------------------------------------
    def propose(self, specialist: str, hypothesis: str, *, parent: int | None = None, kind: str = "proposal",
                diff_sha: str | None = None, cost_usd: float = 0.0, tokens: int = 0, **extra: Any) -> int:
        n = self.campaign.next_number
        if parent is None and n > 0 and kind != "baseline":
            parent = self.incumbent[0] if self.incumbent else 0
        parent_id = self.trials[parent].id if parent is not None else None
        t = Trial.propose(self.campaign.id, n, actor=f"agent:{specialist}", at=self.tick(), specialist=specialist,
                          surface=specialist, hypothesis=hypothesis, parent_id=parent_id, kind=kind,
                          diff_sha=diff_sha, cost_usd=cost_usd,
                          usage=ev.Usage(input_tokens=tokens, output_tokens=tokens // 4), **extra)
        self.campaign.register(t.id, n, specialist, kind, "agent:" + specialist)
        self.take(self.campaign, t)
        self.trials[n] = t
        return n

    def execute(self, n: int, score: float | None, *, runner: str = "host-1", slot: int = 0,
                evaluator_sha: str = "ev1", wall_s: float = 100.0) -> None:
        t = self.trials[n]
        t.request_launch("human:test", task="toy-task", at=self.tick(1))
        t.claim(runner, lease_s=60, now=self.clock)
        t.start(runner, t.epoch, host=runner, accelerator="cpu", slot=slot, at=self.tick(1))
        t.log_metrics(runner, t.epoch, [ev.MetricPoint(1, "loss", 3.0)])
        t.finish(runner, t.epoch, exit_status=0, wall_s=wall_s, cpu_s=wall_s * 2, artifact_bytes=1000,
                 at=self.tick(wall_s))
        t.record_evaluation(runner, t.epoch, "evaluator:toy", score=score, evaluator="toy@1",
                            evaluator_sha=evaluator_sha, eval_wall_s=5.0, at=self.tick(5))
        self.take(t)

    def label(self, n: int, status: str, *, excerpt: str = "", score: float | None = None) -> None:
        """The runner's label; ``keep``/``discard`` are written as today's runner and campaign do:
        ``scored``, then the campaign's verdict (a keep with its promotion)."""
        t = self.trials[n]
        s = score if score is not None else (t.evaluated.score if t.evaluated else None)
        verdict = status if status in ("keep", "discard") and s is not None else None
        t.label_outcome("scored" if verdict or status == "baseline" else status, "harness:test", excerpt=excerpt,
                        score=s, at=self.tick(1))
        if verdict is not None:
            assert s is not None
            prev = self.incumbent
            t.judge("agent:campaign", verdict=verdict, runs=[ev.RunScore(number=n, trial_id=t.id, score=s)], mean=s,
                    threshold=ev.Threshold(value=0.0, min_delta=0.0, k=2.0, sd=0.0),
                    incumbent_id=self.trials[prev[0]].id if prev else None, incumbent_number=prev[0] if prev else None,
                    incumbent_score=prev[1] if prev else None,
                    improvement=(prev[1] - s) if prev else None, confirmations_wanted=0, policy="test",
                    reason=f"test: {verdict}", at=self.clock)
        self.take(t)
        if s is not None:
            self.scores[n] = s
        if status == "baseline" and s is not None:
            self.incumbent = (n, s)
        if status == "keep" and s is not None:
            prev = self.incumbent
            self.campaign.promote("harness:test", trial_id=t.id, number=n, score=s,
                                  previous_trial_id=self.trials[prev[0]].id if prev else None,
                                  previous_score=prev[1] if prev else None,
                                  delta=(s - prev[1]) if prev else None, evidence=[t.id], at=self.clock)
            self.take(self.campaign)
            self.incumbent = (n, s)

    def trial(self, specialist: str, hypothesis: str, score: float | None, status: str, **kw: Any) -> int:
        """Propose, run and label one trial."""
        excerpt = kw.pop("excerpt", "")
        evaluator_sha = kw.pop("evaluator_sha", "ev1")
        n = self.propose(specialist, hypothesis, **kw)
        self.execute(n, score, evaluator_sha=evaluator_sha)
        self.label(n, status, excerpt=excerpt)
        return n

    def baseline(self, score: float, hypothesis: str = "baseline recipe", **kw: Any) -> int:
        n = self.propose("baseline", hypothesis, kind="baseline", **kw)
        self.execute(n, score)
        self.label(n, "baseline")
        return n

    def relabel(self, n: int, status: str, reason: str, actor: str = "human:alice") -> None:
        t = self.trials[n]
        t.relabel(status, reason, actor)
        self.take(t)

    def quarantine(self, n: int, reason: str, actor: str = "human:alice") -> None:
        t = self.trials[n]
        t.quarantine(reason, actor)
        self.take(t)

    def noise(self, sd: float) -> None:
        self.campaign.measure_noise("harness:test", metric="loss", values=[1.0, 1.0 + sd], sd=sd, source="reruns")
        self.take(self.campaign)

    def recorded(self) -> list[Recorded]:
        return [Recorded(i, i + 1, e) for i, e in enumerate(self.events)]


def recorded(events: list[ev.Event]) -> list[Recorded]:
    return [Recorded(i, i + 1, e) for i, e in enumerate(events)]
