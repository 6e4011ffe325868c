"""The exact paired tests bench_search reports, against hand-counted null distributions."""

from __future__ import annotations

import pytest

from projections.paired import sign_test, wilcoxon


def test_five_wins_out_of_five_is_the_smallest_p_five_seeds_allow() -> None:
    r = wilcoxon([0.5, 0.4, 0.3, 0.2, 0.1], [0.0] * 5)
    assert (r.n, r.zeros, r.statistic) == (5, 0, 15.0)
    assert r.p_greater == pytest.approx(1 / 32) and r.p_two_sided == pytest.approx(2 / 32)
    s = sign_test([0.5, 0.4, 0.3, 0.2, 0.1], [0.0] * 5)
    assert s.statistic == 5 and s.p_greater == pytest.approx(1 / 32)


def test_one_loss_on_the_smallest_difference() -> None:
    # d = +5, +4, +3, +2, -1 (ranks 5,4,3,2,1): W+ = 14; patterns with W+ >= 14: {15, 14} -> 2/32
    r = wilcoxon([5, 4, 3, 2, 0], [0, 0, 0, 0, 1])
    assert r.statistic == 14.0 and r.p_greater == pytest.approx(2 / 32)
    assert r.p_two_sided == pytest.approx(4 / 32)


def test_zero_differences_are_dropped_and_ties_share_their_rank() -> None:
    r = wilcoxon([1.0, 2.0, 3.0, 1.0], [1.0, 1.0, 2.0, 0.0])  # d = 0, 1, 1, 1 -> n 3, all ranks 2
    assert (r.n, r.zeros, r.statistic) == (3, 1, 6.0) and r.p_greater == pytest.approx(1 / 8)
    assert wilcoxon([1.0], [1.0]).p_two_sided == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        wilcoxon([1.0], [1.0, 2.0])


def test_the_tails_are_counted_exactly_and_mirror_each_other() -> None:
    # |d| ranks: 0.05 -> 1, 0.1 -> 2, 0.2 -> 3, 0.25 -> 4, 0.3 -> 5, 0.4 -> 6; W+ = 5 + 3 + 6 + 4 = 18.
    # subsets of {1..6} summing to >= 18: 21, 20, 19 (one each), 18 (two) -> 5 of 64
    a, b = [0.3, -0.1, 0.2, 0.4, -0.05, 0.25], [0.0] * 6
    up, down = wilcoxon(a, b), wilcoxon(b, a)
    assert up.statistic == 18.0 and up.p_greater == pytest.approx(5 / 64)
    assert down.statistic == 3.0 and down.p_greater == pytest.approx(61 / 64)  # 1 - P(W+ <= 2) = 1 - 3/64
    assert up.p_two_sided == down.p_two_sided == pytest.approx(10 / 64)
