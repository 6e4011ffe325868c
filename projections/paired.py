"""Paired tests for comparing two arms seed by seed (``tools/bench_search.py``): exact, no scipy.

:func:`wilcoxon` — the Wilcoxon signed-rank test on the paired differences ``a_i - b_i``: zero
differences are dropped (Wilcoxon's convention), tied absolute differences get their average rank,
and the p-values come from the exact null distribution of W+ (every one of the 2^n sign patterns
equally likely), computed by counting, not by the normal approximation. ``p_greater`` is the
one-sided p-value for "a is larger" (P(W+ >= observed)), ``p_two_sided`` twice the smaller tail
(at most 1). With n non-zero pairs the smallest possible one-sided p is 1 / 2^n (5 pairs: 0.031;
two-sided 0.0625), so fewer than 5 seeds can never reach 0.05 one-sided.

:func:`sign_test` — the exact binomial sign test on the same pairs (counts only the signs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from math import comb
from typing import Any


@dataclass(frozen=True)
class PairedResult:
    test: str
    n: int  # non-zero pairs
    zeros: int  # pairs with no difference (dropped)
    statistic: float  # W+ (wilcoxon) or the number of positive differences (sign)
    p_greater: float
    p_two_sided: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["p_greater"], d["p_two_sided"] = round(self.p_greater, 6), round(self.p_two_sided, 6)
        return d


def _differences(a: Sequence[float], b: Sequence[float], tol: float) -> tuple[list[float], int]:
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length ({len(a)} and {len(b)})")
    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    nonzero = [x for x in d if abs(x) > tol]
    return nonzero, len(d) - len(nonzero)


def _ranks(values: list[float]) -> list[float]:
    """Average ranks (1-based) of ``values``."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def wilcoxon(a: Sequence[float], b: Sequence[float], *, tol: float = 1e-12) -> PairedResult:
    d, zeros = _differences(a, b, tol)
    n = len(d)
    if n == 0:
        return PairedResult("wilcoxon signed-rank (exact)", 0, zeros, 0.0, 1.0, 1.0)
    ranks = _ranks([abs(x) for x in d])
    twice = [round(2 * r) for r in ranks]  # ranks are multiples of 1/2: count in halves
    w_obs = sum(t for t, x in zip(twice, d, strict=True) if x > 0)
    dist = {0: 1}  # the number of sign patterns giving each 2 x W+
    for t in twice:
        nxt = dict(dist)
        for w, c in dist.items():
            nxt[w + t] = nxt.get(w + t, 0) + c
        dist = nxt
    total = 2 ** n
    ge = sum(c for w, c in dist.items() if w >= w_obs) / total
    le = sum(c for w, c in dist.items() if w <= w_obs) / total
    return PairedResult("wilcoxon signed-rank (exact)", n, zeros, w_obs / 2, ge, min(1.0, 2 * min(ge, le)))


def sign_test(a: Sequence[float], b: Sequence[float], *, tol: float = 1e-12) -> PairedResult:
    d, zeros = _differences(a, b, tol)
    n = len(d)
    pos = sum(1 for x in d if x > 0)
    if n == 0:
        return PairedResult("sign (exact binomial)", 0, zeros, 0.0, 1.0, 1.0)
    ge = sum(comb(n, k) for k in range(pos, n + 1)) / 2 ** n
    le = sum(comb(n, k) for k in range(0, pos + 1)) / 2 ** n
    return PairedResult("sign (exact binomial)", n, zeros, float(pos), ge, min(1.0, 2 * min(ge, le)))
