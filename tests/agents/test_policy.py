"""The campaign's policy as a pure function: rows and a campaign record in, actions out. No threads, no
processes, no ledger: each case states a campaign's situation and the decision it must lead to."""

from __future__ import annotations

import uuid

import pytest

from agents import policy as pol
from ledger.objective import Objective
from projections.records import CampaignInfo, Promotion, TrialRow, Verdict

CID = uuid.uuid4()
OBJ = Objective("min", min_delta=0.01, k=2.0, sd=0.001)  # threshold 0.01


def row(number: int, *, kind: str = "proposal", label: str | None = "scored", status: str | None = None,
        score: float | None = None, parent: int | None = 0, specialist: str = "opt", confirms: int | None = None,
        phase: str = "labelled", seed: int = 0, cost: float = 0.0, reason: str = "") -> TrialRow:
    return TrialRow(campaign_id=CID, campaign="c", trial_id=uuid.uuid5(CID, str(number)), number=number,
                    specialist=specialist, surface=specialist, kind=kind, hypothesis=f"trial {number}",
                    parent=parent if number else None, confirms=confirms, phase=phase, label=label,
                    status=status or label, score=score, seed=seed, cost_usd=cost, reason=reason)


def info(incumbent: tuple[int, float] | None = (0, 1.0), *, closed: bool = False) -> CampaignInfo:
    c = CampaignInfo(campaign_id=CID, name="c", direction="min")
    if incumbent is not None:
        c.incumbent_number, c.incumbent_score = incumbent
        c.promotions.append(Promotion(0, uuid.uuid5(CID, "0"), 1.0, None, None, None, 0.01, 0.001, 1, 0.0, "a", "baseline"))
    if closed:
        c.closed_at = 1.0
    return c


def state(rows: list[TrialRow], *, inc: tuple[int, float] | None = (0, 1.0), confirmations: int = 1,
          specialists: tuple[str, ...] = ("opt", "arch"), writing: frozenset[str] = frozenset(), slots: int = 1,
          max_trials: int = 10, max_usd: float | None = None, grace: int | None = None) -> pol.CampaignState:
    return pol.CampaignState(info=info(inc), rows=rows, objective=OBJ, confirmations=confirmations,
                             budgets=pol.Budgets(max_trials=max_trials, slots=slots, max_usd=max_usd, grace=grace),
                             specialists=list(specialists), writing=writing)


BASE = row(0, kind="baseline", score=1.0, specialist="baseline", parent=None)


def kinds(actions: list[pol.Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_a_new_campaign_launches_its_baseline_then_promotes_it() -> None:
    assert kinds(pol.decide(state([], inc=None))) == ["LaunchBaseline"]
    waiting = row(0, kind="baseline", label=None, score=None, phase="running", parent=None)
    assert pol.decide(state([waiting], inc=None)) == []
    [promote] = pol.decide(state([BASE], inc=None))
    assert isinstance(promote, pol.PromoteBaseline) and promote.baseline.number == 0


def test_a_failed_baseline_closes_the_campaign_with_its_reason() -> None:
    failed = row(0, kind="baseline", label="crash", score=None, parent=None, reason="exited with status 1")
    [close] = pol.decide(state([failed], inc=None))
    assert isinstance(close, pol.Close) and "baseline failed (crash)" in close.reason and "status 1" in close.reason


def test_a_proposal_inside_the_noise_is_discarded_with_its_evidence() -> None:
    acts = pol.decide(state([BASE, row(1, score=0.995)]))
    judge = acts[0]
    assert isinstance(judge, pol.Judge) and judge.verdict == "discard"
    assert judge.improvement == pytest.approx(0.005) and "not more than the threshold 0.01" in judge.reason
    assert [r.number for r in judge.runs] == [1] and judge.incumbent.number == 0
    worse = pol.decide(state([BASE, row(1, score=1.2)]))[0]
    assert isinstance(worse, pol.Judge) and worse.verdict == "discard" and "no better than #0" in worse.reason


def test_a_proposal_beyond_the_noise_becomes_a_candidate_and_gets_its_confirmation_runs() -> None:
    acts = pol.decide(state([BASE, row(1, score=0.9, seed=7)], confirmations=2))
    assert kinds(acts) == ["Judge", "LaunchConfirmation", "LaunchConfirmation"]
    assert acts[0].verdict == "candidate"  # type: ignore[attr-defined]
    assert [(a.of.number, a.index, a.seed) for a in acts[1:]] == [(1, 0, 1007), (1, 1, 1008)]  # type: ignore[attr-defined]
    # no confirmation asked for: a keep at once, resting on one run
    [keep, *_] = pol.decide(state([BASE, row(1, score=0.9)], confirmations=0))
    assert isinstance(keep, pol.Judge) and keep.verdict == "keep" and "single run" in keep.reason


def test_a_candidate_waits_for_its_confirmations_then_is_kept_on_the_mean() -> None:
    cand = row(1, status="candidate", score=0.9)
    running = row(2, kind="confirmation", confirms=1, parent=1, label=None, score=None, phase="running")
    assert [a for a in pol.decide(state([BASE, cand, running])) if isinstance(a, pol.Judge)] == []
    done = row(2, kind="confirmation", confirms=1, parent=1, score=0.92)
    [keep] = pol.decide(state([BASE, cand, done]))
    assert isinstance(keep, pol.Judge) and keep.verdict == "keep"
    assert keep.mean == pytest.approx(0.91) and [r.number for r in keep.runs] == [1, 2]
    assert keep.improvement == pytest.approx(0.09)


def test_a_candidate_whose_confirmation_fails_or_regresses_is_discarded() -> None:
    cand = row(1, status="candidate", score=0.9)
    crashed = row(2, kind="confirmation", confirms=1, parent=1, label="crash", score=None)
    d, propose = pol.decide(state([BASE, cand, crashed]))
    assert propose == pol.Propose("arch")  # the slot is free again: the least-served specialist
    assert isinstance(d, pol.Judge) and d.verdict == "discard" and "#2 (crash) failed" in d.reason
    regressed = row(2, kind="confirmation", confirms=1, parent=1, score=1.099)  # mean 0.9995: inside the noise
    d, _ = pol.decide(state([BASE, cand, regressed]))
    assert isinstance(d, pol.Judge) and d.verdict == "discard" and "mean of 2 runs" in d.reason


def test_a_candidate_resumed_without_its_confirmations_gets_them_launched() -> None:
    cand = row(1, status="candidate", score=0.9)
    cand.verdict = Verdict("candidate", [(1, 0.9)], 0.9, 0, 1.0, 0.1, 0.01, "", 1, "p", "", "a", 0.0)
    [launch] = pol.decide(state([BASE, cand]))  # the launch takes the one slot: no proposal beside it
    assert isinstance(launch, pol.LaunchConfirmation) and launch.of.number == 1 and launch.improvement == 0.1
    launch, propose = pol.decide(state([BASE, cand], slots=2))
    assert propose == pol.Propose("arch")


def test_one_promotion_per_decision_the_next_candidate_waits_for_the_new_incumbent() -> None:
    a, b = row(1, status="candidate", score=0.9), row(2, status="candidate", score=0.8, specialist="arch")
    ca = row(3, kind="confirmation", confirms=1, parent=1, score=0.9)
    cb = row(4, kind="confirmation", confirms=2, parent=2, score=0.8, specialist="arch")
    acts = pol.decide(state([BASE, a, b, ca, cb]))
    assert [(type(x).__name__, getattr(x, "verdict", None)) for x in acts] == [("Judge", "keep")]


def test_proposals_are_made_just_in_time_by_the_least_served_specialist() -> None:
    assert pol.decide(state([BASE])) == [pol.Propose("opt")]
    one = [BASE, row(1, score=1.2, status="discard", specialist="opt")]
    assert pol.decide(state(one)) == [pol.Propose("arch")]  # fewest proposals so far, then declaration order
    busy = [BASE, row(1, label=None, score=None, phase="running")]
    assert pol.decide(state(busy)) == []  # one slot, one trial in flight
    assert pol.decide(state(busy, slots=2)) == [pol.Propose("arch")]  # opt has one in flight already
    assert pol.decide(state([BASE], writing=frozenset({"opt"}), slots=2)) == [pol.Propose("arch")]


def test_budgets_stop_proposals_and_close_once_nothing_is_in_flight() -> None:
    done = [BASE, row(1, score=1.2, status="discard"), row(2, score=1.3, status="discard", specialist="arch")]
    [close] = pol.decide(state(done, max_trials=2))
    assert isinstance(close, pol.Close) and close.reason == "trial budget reached (2 proposals)"
    flying = [*done[:2], row(2, label=None, score=None, phase="running", specialist="arch")]
    assert pol.decide(state(flying, max_trials=2)) == []  # wait for it
    assert pol.decide(state(done, max_trials=2, writing=frozenset({"opt"}))) == []  # a proposal is being written
    costly = [BASE, row(1, score=1.2, status="discard", cost=0.7), row(2, score=1.3, status="discard", cost=0.4)]
    [close] = pol.decide(state(costly, max_usd=1.0))
    assert isinstance(close, pol.Close) and "LLM budget" in close.reason
    late = pol.CampaignState(info=info(), rows=done, objective=OBJ, confirmations=1,
                             budgets=pol.Budgets(deadline_s=60.0), specialists=["opt"], elapsed_s=61.0)
    assert pol.decide(late) == [pol.Close("deadline reached (60 s)")]
    graceless = [BASE] + [row(n, score=1.2, status="discard") for n in range(1, 4)]
    [close] = pol.decide(state(graceless, grace=3))
    assert isinstance(close, pol.Close) and "no improvement in the last 3" in close.reason


def test_a_specialist_that_keeps_coming_back_empty_is_retired() -> None:
    empty = [BASE] + [row(n, label="cancelled", score=None, reason="nothing left") for n in range(1, 5)]
    acts = pol.decide(state(empty))
    assert acts == [pol.Retire("opt", acts[0].reason)]  # type: ignore[attr-defined]
    assert "last 4 proposals" in acts[0].reason and "nothing left" in acts[0].reason  # type: ignore[attr-defined]
    # once retired (not among the active specialists) the others go on
    assert pol.decide(state(empty, specialists=("arch",))) == [pol.Propose("arch")]


def test_a_closed_campaign_decides_nothing() -> None:
    s = state([BASE])
    closed = pol.CampaignState(info=info(closed=True), rows=s.rows, objective=OBJ, confirmations=1,
                               budgets=s.budgets, specialists=s.specialists)
    assert pol.decide(closed) == []


def test_max_direction_uses_the_same_rule() -> None:
    up_info = info()
    up_info.direction = "max"
    up = pol.CampaignState(info=up_info,
                           rows=[BASE, row(1, score=1.2)], objective=Objective("max", min_delta=0.01), confirmations=0,
                           budgets=pol.Budgets(), specialists=["opt"])
    keep = pol.decide(up)[0]
    assert isinstance(keep, pol.Judge) and keep.verdict == "keep" and keep.improvement == pytest.approx(0.2)


# noise measured in the campaign --------------------------------------------------------------------


def noisy(rows: list[TrialRow], *, inc: tuple[int, float] | None, reruns: int = 2, obj: Objective = OBJ,
          declared: tuple[float, ...] = (1.0, 1.002, 0.998), confirmations: int = 1) -> pol.CampaignState:
    """A campaign that measures its noise: declared sd 0.002 over 3 reruns, ``reruns`` baseline reruns."""
    return pol.CampaignState(info=info(inc), rows=rows, objective=obj, confirmations=confirmations,
                             budgets=pol.Budgets(max_trials=10), specialists=["opt", "arch"], baseline_reruns=reruns,
                             measure_noise=True, declared_sd=0.002, declared_reruns=declared)


DECLARED = Objective("min", min_delta=0.001, k=2.0, sd=0.002, sd_runs=3, sd_source="declared")


def test_the_baseline_is_rerun_on_other_seeds_and_promoted_with_the_mean_of_its_runs() -> None:
    acts = pol.decide(noisy([BASE], inc=None, obj=DECLARED))
    assert kinds(acts) == ["LaunchRerun", "LaunchRerun"]
    assert [(a.of.number, a.index, a.seed) for a in acts] == [(0, 0, 1000), (0, 1, 1001)]  # type: ignore[attr-defined]
    r1 = row(1, kind="rerun", score=1.01, specialist="baseline", seed=1000)
    running = row(2, kind="rerun", label=None, score=None, phase="running", specialist="baseline", seed=1001)
    assert pol.decide(noisy([BASE, r1, running], inc=None, obj=DECLARED)) == []  # no proposal before they are in
    r2 = row(2, kind="rerun", score=0.99, specialist="baseline", seed=1001)
    [measure] = pol.decide(noisy([BASE, r1, r2], inc=None, obj=DECLARED))
    assert isinstance(measure, pol.MeasureNoise)
    est = measure.estimate
    # pooled: the declared sd (3 reruns, 2 degrees of freedom) with the baseline's 3 runs (sd 0.01, 2 df)
    assert est.source == "pooled" and est.runs == 6 and est.measured_runs == 3
    assert est.measured_sd == pytest.approx(0.01)
    assert est.sd == pytest.approx(((2 * 0.002 ** 2 + 2 * 0.01 ** 2) / 4) ** 0.5)
    assert measure.values == [1.0, 1.002, 0.998, 1.0, 1.01, 0.99] and [r.number for r in measure.trials] == [0, 1, 2]
    # recorded: the baseline is promoted with the mean of its three runs
    recorded = DECLARED.with_noise(est.sd, est.runs, est.source)
    [promote] = pol.decide(noisy([BASE, r1, r2], inc=None, obj=recorded))
    assert isinstance(promote, pol.PromoteBaseline)
    assert promote.score == pytest.approx(1.0) and [r.number for r in promote.runs] == [0, 1, 2]


def test_a_failed_rerun_is_left_out_of_the_noise_and_the_mean() -> None:
    r1 = row(1, kind="rerun", score=1.03, specialist="baseline", seed=1000)
    r2 = row(2, kind="rerun", label="crash", score=None, specialist="baseline", seed=1001)
    [measure] = pol.decide(noisy([BASE, r1, r2], inc=None, obj=DECLARED))
    assert isinstance(measure, pol.MeasureNoise) and measure.estimate.measured_runs == 2
    est = measure.estimate
    [promote] = pol.decide(noisy([BASE, r1, r2], inc=None, obj=DECLARED.with_noise(est.sd, est.runs, est.source)))
    assert isinstance(promote, pol.PromoteBaseline) and promote.score == pytest.approx(1.015)


def test_confirmation_runs_are_measured_before_the_candidate_is_judged() -> None:
    cand = row(3, status="candidate", score=0.95)
    conf = row(4, kind="confirmation", confirms=3, score=0.97, seed=1000)
    # the baseline's noise is recorded; the candidate's pair of runs is new evidence
    base_noise = DECLARED  # (no reruns in this campaign: the declared figure)
    acts = pol.decide(noisy([BASE, cand, conf], inc=(0, 1.0), reruns=0, obj=base_noise))
    assert kinds(acts) == ["MeasureNoise"]  # alone: the verdict after it uses the new threshold
    est = acts[0].estimate  # type: ignore[attr-defined]
    assert est.source == "pooled" and est.runs == 5 and est.measured_sd == pytest.approx(0.02 / 2 ** 0.5)
    recorded = DECLARED.with_noise(est.sd, est.runs, est.source)
    # k x sd is now ~0.017: the mean (0.96) still beats 1.0 by 0.04 -> keep
    [judge] = pol.decide(noisy([BASE, cand, conf], inc=(0, 1.0), reruns=0, obj=recorded))
    assert isinstance(judge, pol.Judge) and judge.verdict == "keep"
    # nothing new: no second measurement
    assert not any(isinstance(a, pol.MeasureNoise) for a in pol.decide(noisy([BASE, cand, conf], inc=(0, 1.0),
                                                                             reruns=0, obj=recorded)))


def test_with_nothing_declared_the_noise_is_the_measured_one() -> None:
    r1 = row(1, kind="rerun", score=1.02, specialist="baseline", seed=1000)
    state_ = noisy([BASE, r1], inc=None, reruns=1, declared=(), obj=Objective("min", min_delta=0.001))
    state_ = pol.CampaignState(**{**state_.__dict__, "declared_sd": 0.0})
    [measure] = pol.decide(state_)
    assert isinstance(measure, pol.MeasureNoise)
    assert (measure.estimate.source, measure.estimate.runs) == ("measured", 2)
    assert measure.estimate.sd == pytest.approx(0.02 / 2 ** 0.5) and measure.values == [1.0, 1.02]


def test_a_proposal_is_compared_with_the_incumbent_on_the_same_seeds() -> None:
    # the baseline ran on seeds 0, 1000 and 1001 (mean 0.99); seed 0 was its unlucky one (1.0)
    base = row(0, kind="baseline", score=1.0, specialist="baseline", parent=None, seed=0)
    reruns = [row(1, kind="rerun", score=0.98, specialist="baseline", seed=1000),
              row(2, kind="rerun", score=0.99, specialist="baseline", seed=1001)]
    s = noisy([base, *reruns, row(3, score=0.985, seed=0)], inc=(0, 0.99), obj=OBJ)
    s = pol.CampaignState(**{**s.__dict__, "measure_noise": False})
    [judge, *confs] = pol.decide(s)
    # against the mean (0.99) it would gain 0.005 < 0.01; against seed 0's own 1.0 it gains 0.015
    assert isinstance(judge, pol.Judge) and judge.verdict == "candidate" and judge.incumbent_score == 1.0
    assert judge.improvement == pytest.approx(0.015) and "(on the same seed: 0)" in judge.reason
    assert [c.seed for c in confs] == [1000]  # type: ignore[attr-defined]
    # its confirmation on seed 1000 is compared with the baseline's seed-1000 run: mean(0.985, 0.965) vs 0.99
    cand = row(3, status="candidate", score=0.985, seed=0)
    conf = row(4, kind="confirmation", confirms=3, score=0.965, seed=1000)
    s = pol.CampaignState(**{**s.__dict__, "rows": [base, *reruns, cand, conf]})
    [keep] = pol.decide(s)
    assert isinstance(keep, pol.Judge) and keep.verdict == "keep" and keep.incumbent_score == pytest.approx(0.99)
    assert keep.mean == pytest.approx(0.975) and keep.improvement == pytest.approx(0.015)
    assert "(on the same seeds: 0, 1000)" in keep.reason
    # an incumbent with no run on a proposal's seed: its promoted mean (0.99 here)
    lone = pol.CampaignState(**{**s.__dict__, "rows": [base, *reruns, row(3, score=0.95, seed=7)]})
    [j, *_] = pol.decide(lone)
    assert isinstance(j, pol.Judge) and j.incumbent_score == 0.99 and "same seed" not in j.reason
