"""The live display's numbers: a running trial against its budget, and the campaign's ETA."""

from __future__ import annotations

import uuid

import pytest

from ledger import events as ev
from projections.live import eta, fmt_duration, in_flight, reported_metric, trial_budget_s
from projections.records import CampaignInfo, TrialRow

NOW = 1000.0


def _info(seeds: int = 1) -> CampaignInfo:
    return CampaignInfo(campaign_id=uuid.uuid4(), name="c", metric="val_loss",
                        budgets={"preflight_s": 5, "train_s": 20, "eval_s": 10},
                        policy=ev.NoisePolicyDecl(min_delta=0.01, k=2, sd=0, confirmation_runs=1,
                                                  seeds_per_trial=seeds))


def _row(info: CampaignInfo, n: int, **kw) -> TrialRow:
    return TrialRow(campaign_id=info.campaign_id, campaign="c", trial_id=uuid.uuid4(), number=n,
                    specialist="opt", surface="opt", kind="proposal", hypothesis="h", **kw)


def test_budget_counts_every_seed_and_the_evaluation() -> None:
    assert trial_budget_s(_info()) == 30 and trial_budget_s(_info(seeds=3)) == 70


def test_a_running_trial_shows_elapsed_budget_and_what_it_reported() -> None:
    info = _info()
    running = _row(info, 2, phase="running", started_at=NOW - 12, last_step=40,
                   last_metrics={"loss": 2.5, "val_loss": 2.7})
    done = _row(info, 1, phase="labelled", status="discard", label="scored", wall_s=8, eval_wall_s=2)
    [f] = in_flight([done, running], info, NOW)
    assert (f.number, f.elapsed_s, f.budget_s, f.last_step) == (2, 12, 30, 40)
    assert f.metric == ("val_loss", 2.7) and f.fraction == pytest.approx(0.4)
    seeded = _row(info, 3, last_metrics={"seed1/loss": 1.0, "acc": 0.5})
    assert reported_metric(seeded, "val_loss") == ("seed1/loss", 1.0)


def test_eta_at_the_measured_pace_and_at_full_budgets() -> None:
    info = _info()
    rows = [_row(info, 1, phase="labelled", status="discard", label="scored", wall_s=8, eval_wall_s=2),
            _row(info, 2, phase="running", started_at=NOW - 4),
            _row(info, 3, phase="queued"), _row(info, 4, phase="queued")]
    e = eta(rows, info, proposals_left=3, slots=2, now=NOW)
    assert e.measured and e.per_trial_s == 10 and e.trials_left == 6
    assert e.seconds == pytest.approx((6 + 5 * 10) / 2) and e.bound_s == pytest.approx((26 + 5 * 30) / 2)
    capped = eta(rows, info, proposals_left=3, slots=2, now=NOW, deadline_left_s=20)
    assert capped.capped_by_deadline and capped.seconds == 20 and capped.bound_s == 20
    fresh = eta([], info, proposals_left=2, slots=1, now=NOW)
    assert not fresh.measured and fresh.seconds == fresh.bound_s == 60
    assert [fmt_duration(s) for s in (45, 185, 3720)] == ["45s", "3m05s", "1h02m"]
