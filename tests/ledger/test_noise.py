"""The noise a keep rule uses: the declared figure pooled with the campaign's measured groups."""

from __future__ import annotations

import math
import statistics

import pytest

from ledger.noise import estimate


def test_declared_only_stands_as_declared() -> None:
    est = estimate(0.0096, 5, [])
    assert (est.sd, est.runs, est.source, est.measured_sd) == (0.0096, 5, "declared", None)
    assert estimate(0.0096, 5, [[3.0]]).source == "declared"  # one run of a code says nothing about noise


def test_groups_pool_with_the_declared_figure_by_their_degrees_of_freedom() -> None:
    groups = [[3.08, 3.07, 3.09], [3.01, 3.04]]
    est = estimate(0.0096, 5, groups)
    ss = 2 * statistics.variance(groups[0]) + 1 * statistics.variance(groups[1])
    assert est.source == "pooled" and est.runs == 10 and est.measured_runs == 5 and est.groups == 2
    assert est.measured_sd == pytest.approx(math.sqrt(ss / 3))
    assert est.sd == pytest.approx(math.sqrt((4 * 0.0096 ** 2 + ss) / 7))
    assert "pooled with the declared figure" in est.describe()


def test_nothing_declared_is_the_measured_spread_and_a_declared_sd_without_reruns_counts_once() -> None:
    est = estimate(0.0, 0, [[1.0, 1.02]])
    assert (est.source, est.runs) == ("measured", 2) and est.sd == pytest.approx(0.02 / math.sqrt(2))
    est = estimate(0.01, 0, [[1.0, 1.02]])
    assert est.source == "pooled" and est.runs == 2
    assert est.sd == pytest.approx(math.sqrt((0.01 ** 2 + 0.0002) / 2))
