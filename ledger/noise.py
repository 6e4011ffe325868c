"""The metric's noise a campaign's keep rule uses: the task's declared figure pooled with what the
campaign measured on its own runs. Computed here and only here::

    est = estimate(0.0096, 5, [[3.08, 3.07, 3.09], [3.01, 3.03]])
    est.sd, est.runs, est.source     # the pooled sd, the 10 runs it rests on, "pooled"

A *group* is the runs of one code on different seeds: the baseline and its reruns, a candidate and
its confirmation runs, any trial and its reruns. A group of n >= 2 runs gives a sample variance with
n - 1 degrees of freedom; the declared sd counts as a sample variance with r - 1 degrees of freedom,
r the reruns it was measured on (``[noise] reruns``; a declared sd with fewer than two reruns counts
as one degree of freedom). The estimate is the pooled standard deviation

    sd = sqrt( sum_i df_i * s_i^2 / sum_i df_i )

over the declared figure and every measured group: the minimum-variance estimate of one common sd,
each source weighted by the evidence behind it. It rests on the declared reruns plus the measured
runs (``runs``). ``source`` says what it is made of: ``declared`` (nothing measured yet),
``measured`` (nothing declared) or ``pooled``. Pooling, not max(declared, measured): the threshold
follows the evidence both ways (a declared figure from a quiet machine grows when this machine's
runs spread more, and one lucky pair of runs cannot shrink it much), and no single group ratchets
it up for the rest of the campaign.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

DECLARED, MEASURED, POOLED = "declared", "measured", "pooled"


@dataclass(frozen=True)
class NoiseEstimate:
    sd: float
    runs: int  # the runs it rests on: the declared reruns + the measured runs (groups of 2 or more)
    source: str  # declared | measured | pooled
    measured_sd: float | None  # the measured groups' pooled sd alone (None: no group of 2 yet)
    measured_runs: int
    groups: int  # measured groups of 2 or more runs

    def describe(self) -> str:
        if self.source == DECLARED:
            return f"sd {self.sd:.4g} as declared ({self.runs} runs)"
        meas = f"measured {self.measured_sd:.4g} over {self.measured_runs} runs in {self.groups} group(s)"
        return f"sd {self.sd:.4g} ({meas}" + (", pooled with the declared figure)" if self.source == POOLED else ")")


def estimate(declared_sd: float, declared_runs: int, groups: Sequence[Sequence[float]]) -> NoiseEstimate:
    """The noise the keep rule uses (see the module doc). ``groups``: scores of one code per group."""
    measured = [[float(x) for x in g if math.isfinite(x)] for g in groups]
    measured = [g for g in measured if len(g) >= 2]
    m_df = sum(len(g) - 1 for g in measured)
    m_ss = sum((len(g) - 1) * statistics.variance(g) for g in measured)
    m_runs = sum(len(g) for g in measured)
    measured_sd = math.sqrt(m_ss / m_df) if m_df else None
    d_df = max(declared_runs - 1, 1) if declared_sd > 0 else 0
    if not m_df:
        return NoiseEstimate(float(declared_sd), int(declared_runs), DECLARED, None, 0, 0)
    if not d_df:
        return NoiseEstimate(float(measured_sd or 0.0), m_runs, MEASURED, measured_sd, m_runs, len(measured))
    sd = math.sqrt((d_df * declared_sd ** 2 + m_ss) / (d_df + m_df))
    return NoiseEstimate(sd, int(declared_runs) + m_runs, POOLED, measured_sd, m_runs, len(measured))
