"""The lineage view a specialist reads: sections, budget, the no-lineage arm, saturation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ledger.audit import init_ledger
from ledger.importers import import_cmu
from ledger.store import LedgerError
from projections import Projector, render_lineage_view
from projections.lineage_view import estimate_tokens
from tests.projections.helpers import Builder
from tests.projections.records import CMU


def campaign(noise: float | None = 0.01) -> Projector:
    b = Builder(config={"noise_sd": noise} if noise is not None else {})
    b.baseline(2.0)
    b.trial("opt", "raise the learning rate to 3e-3", 1.9, "keep")
    b.trial("arch", "add a second attention head", None, "crash", excerpt="RuntimeError: shape mismatch in attn")
    b.trial("data", "shuffle shards every epoch", 1.95, "discard")
    b.trial("arch", "widen the MLP to 4x", 1.8, "keep")
    b.trial("data", "shuffle shards every epoch!", 1.96, "discard")  # same idea again: deduplicated
    for i in range(6):  # opt keeps nudging the score by less than the noise
        b.trial("opt", f"lower beta2 to 0.9{i}", 1.8 + 0.001 * (i + 1), "discard")
    b.trial("arch", "swap GELU for SiLU", 1.5, "discard")  # a big move: arch is not saturated
    b.trial("data", "drop the last batch", 1.79, "size_blocked")
    return Projector.rebuild(b.recorded())


def test_sections_present_and_in_order() -> None:
    text = render_lineage_view(campaign(), "toy", "opt")
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert [h.split(" (")[0] for h in heads] == [
        "## Saturation warning", "## Leaderboard", "## Lineage of the current best",
        "## Recent trials by specialist", "## Children of the best #004", "## Dead ends already tried"]
    assert "Current best: **#004** (loss=1.800000" in text
    assert "You are specialist **opt** (surface: opt)." in text
    # the chain runs from the baseline to the best
    chain = text.split("## Lineage of the current best")[1].split("##")[0]
    assert re.findall(r"#(\d{3}) \[", chain) == ["000", "001", "004"]
    assert "← BEST" in chain
    # the crash excerpt is shown under the recent trials
    assert "└─ crash: RuntimeError: shape mismatch in attn" in text
    # duplicate dead ends are listed once, with a count
    dead = text.split("## Dead ends already tried")[1]
    assert dead.count("shuffle shards every epoch") == 1 and "(tried 2×)" in dead


def test_token_budget_is_honoured_without_cutting_lines() -> None:
    proj = campaign()
    full = render_lineage_view(proj, "toy", "opt", token_budget=100_000)
    full_lines = set(full.splitlines())
    for budget in (60, 120, 250, 400, 800):
        text = render_lineage_view(proj, "toy", "opt", token_budget=budget)
        assert estimate_tokens(text) <= budget, budget
        for line in text.splitlines():  # every line is whole: from the full view, or an omission note
            assert line in full_lines or line.startswith("… ("), line
        assert "Current best: **#004**" in text
    # the lowest-priority section goes first
    small = render_lineage_view(proj, "toy", "opt", token_budget=400)
    assert "## Leaderboard" in small and "## Dead ends already tried" not in small


def test_no_lineage_arm_blanks_all_but_the_best() -> None:
    text = render_lineage_view(campaign(), "toy", "opt", arm="no-lineage")
    assert "Current best: **#004**" in text
    assert "##" not in text
    assert set(re.findall(r"#(\d{3})", text)) == {"004"}
    for word in ("crash", "shuffle", "Saturation", "Leaderboard", "trials so far"):
        assert word not in text


def test_saturation_warning_when_recent_moves_are_inside_the_noise() -> None:
    proj = campaign(noise=0.01)
    opt = render_lineage_view(proj, "toy", "opt")
    assert "⚠ Your last 5 scored trials all moved loss by less than the noise" in opt
    arch = render_lineage_view(proj, "toy", "arch")
    assert "⚠ Your last" not in arch
    assert "Also saturated (last 5 scored trials inside the noise): opt." in arch
    # no measured noise: nothing can be called saturated
    assert "Saturation" not in render_lineage_view(campaign(noise=None), "toy", "opt")


def test_unknown_campaign_is_a_clear_error() -> None:
    with pytest.raises(LedgerError, match="no campaign .nope."):
        render_lineage_view(campaign(), "nope", "opt")


def test_pg_main_view_matches_the_recorded_lineage(tmp_path: Path) -> None:
    led, _kp, _ = init_ledger(f"sqlite://{tmp_path}/ledger.db")
    with led:
        import_cmu(led, CMU / "pg_main")
        proj = Projector.from_ledger(led)
    text = render_lineage_view(proj, "pg_main", "quant")
    assert estimate_tokens(text) <= 6000
    assert "Current best: **#750** (val_bpb=1.072210" in text
    # the chain the CMU specialist saw (example_lineage_pg_main_quant.txt), baseline to best
    example = (CMU / "example_lineage_pg_main_quant.txt").read_text()
    block = example.split("**Current-best lineage** (root → best):")[1].split("```")[1]
    want = re.findall(r"(?m)^(?:\s*└─ )?exp_(\d{3}) \[", block)
    assert want[0] == "000" and want[-1] == "750" and len(want) == 23
    chain = text.split("## Lineage of the current best")[1].split("\n## ")[0]
    assert re.findall(r"#(\d{3}) \[", chain) == want
    assert "## Children of the best #750" in text
