"""Proposal diversity over hypothesis texts: online TF-IDF clustering, per campaign.

Each proposal's hypothesis (kinds ``proposal`` and ``imported``; baselines, reruns and
confirmations repeat an earlier idea and are left out) becomes a TF-IDF vector *when it arrives*:
terms are lower-cased words and numbers (a small stop-word list removed), term frequency is
``1 + ln(count)``, and ``idf = ln((1 + N) / (1 + df)) + 1`` over the N hypotheses seen so far,
this one included; the vector is L2-normalised. The vector joins the cluster whose centroid (the
sum of its members' vectors) is nearest by cosine if that cosine is >= 0.30, else it opens a new
cluster. Because vectors are fixed at arrival and clusters only grow, the result depends only on
the order of the log: rebuilding equals folding incrementally.

Reported per campaign:

* **effective clusters** = exp(Shannon entropy of the cluster-size distribution) (1 when all
  hypotheses share one cluster, the cluster count when they are spread evenly);
* **largest-cluster share** = size of the largest cluster / hypotheses;
* **near-duplicate rate** = share of hypotheses whose cosine to some *earlier* hypothesis of the
  campaign is >= 0.9.

The nearest-centroid search runs in a hashed space: each term goes to one of 4096 dimensions with a
sign (crc32 of the term; the feature-hashing trick), cluster sums are the columns of a float32 matrix
and the cosines to all centroids are one vectorised product. Collisions make those cosines
approximate (the noise is small and zero-mean), and the cost stays linear in the number of clusters
instead of in the vocabulary they hold. The near-duplicate search is exact: a candidate must share
one of the new vector's heaviest terms (those holding more than 1 - 0.9² of its squared mass; a
vector sharing none of them has cosine < 0.9), and each candidate's cosine is computed in full.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
import zlib
from collections import Counter
from typing import Any

import numpy as np

from ledger import events as ev
from ledger.app import Recorded
from projections.base import Projection
from projections.trials import TrialTable

JOIN_COSINE = 0.30
HASH_DIM = 4096
NEAR_DUP_COSINE = 0.9
_TOKEN = re.compile(r"[a-z][a-z0-9_]*|\d+(?:\.\d+)?(?:e-?\d+)?")
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in into is it its of on or so than that the their then "
    "this to was were which while will with we our can not no more less via per vs".split()
)


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS and (len(t) > 1 or t.isdigit())]


@functools.lru_cache(maxsize=1 << 16)
def _slot(term: str) -> tuple[int, float]:
    """The hashed dimension and sign of a term (stable across processes: crc32, not hash())."""
    h = zlib.crc32(term.encode())
    return h % HASH_DIM, (1.0 if (h >> 20) & 1 else -1.0)


def _prefix(order: list[tuple[str, float]], tau: float) -> list[str]:
    """The heaviest terms of a unit vector whose squared mass exceeds 1 - tau^2."""
    need = 1.0 - tau * tau
    out, mass = [], 0.0
    for t, w in order:
        out.append(t)
        mass += w * w
        if mass > need + 1e-12:
            break
    return out


class _CampaignDiversity:
    __slots__ = ("n", "df", "vectors", "postings", "centroids", "cnorm2", "k", "sizes", "assign", "near_dups",
                 "numbers")

    def __init__(self) -> None:
        self.n = 0
        self.df: Counter[str] = Counter()
        self.vectors: list[dict[str, float]] = []
        self.postings: dict[str, list[int]] = {}  # term -> hypotheses holding it
        self.centroids = np.zeros((HASH_DIM, 64), dtype=np.float32)  # hashed cluster sums, one column each
        self.cnorm2 = np.zeros(64, dtype=np.float64)
        self.k = 0
        self.sizes: list[int] = []
        self.assign: list[int] = []
        self.near_dups = 0
        self.numbers: list[int] = []

    def add(self, number: int, text: str) -> None:
        tf = Counter(tokens(text))
        self.n += 1
        for t in tf:
            self.df[t] += 1
        n = self.n
        vec = {t: (1.0 + math.log(c)) * (math.log((1 + n) / (1 + self.df[t])) + 1.0) for t, c in tf.items()}
        norm = math.sqrt(sum(v * v for v in vec.values()))
        if norm > 0:
            vec = {t: v / norm for t, v in vec.items()}

        # near-duplicate: candidates share a prefix term (exact for the 0.9 threshold)
        order = sorted(vec.items(), key=lambda kv: (-kv[1], kv[0]))
        cands: set[int] = set()
        for t in _prefix(order, NEAR_DUP_COSINE):
            cands.update(self.postings.get(t, ()))
        for j in sorted(cands):
            other = self.vectors[j]
            if sum(w * other.get(t, 0.0) for t, w in vec.items()) >= NEAR_DUP_COSINE:
                self.near_dups += 1
                break

        # nearest centroid, in the hashed space
        slots: dict[int, float] = {}
        for t, w in vec.items():
            i, sign = _slot(t)
            slots[i] = slots.get(i, 0.0) + sign * w
        idx = np.fromiter(slots.keys(), dtype=np.intp, count=len(slots))
        val = np.fromiter(slots.values(), dtype=np.float32, count=len(slots))
        k = self.k
        cluster = -1
        if k and len(idx):
            dots = (self.centroids[idx, :k] * val[:, None]).sum(axis=0, dtype=np.float64)
            norms = np.sqrt(self.cnorm2[:k])
            cos = np.divide(dots, norms, out=np.zeros(k), where=norms > 0)
            best = int(np.argmax(cos))
            if cos[best] >= JOIN_COSINE:
                cluster = best
        if cluster < 0:
            cluster = self._new_cluster()
        col = self.centroids[:, cluster]
        col[idx] += val
        self.cnorm2[cluster] = float(np.dot(col.astype(np.float64), col.astype(np.float64)))
        self.sizes[cluster] += 1
        self.assign.append(cluster)
        i = len(self.vectors)
        self.vectors.append(vec)
        self.numbers.append(number)
        for t in vec:
            self.postings.setdefault(t, []).append(i)

    def _new_cluster(self) -> int:
        if self.k == self.centroids.shape[1]:
            cap = self.k * 2
            grown = np.zeros((HASH_DIM, cap), dtype=np.float32)
            grown[:, : self.k] = self.centroids
            self.centroids = grown
            norms = np.zeros(cap, dtype=np.float64)
            norms[: self.k] = self.cnorm2
            self.cnorm2 = norms
        self.k += 1
        self.sizes.append(0)
        return self.k - 1

    def summary(self) -> dict[str, Any]:
        n = len(self.assign)
        if n == 0:
            return {"hypotheses": 0, "clusters": 0, "effective_clusters": 0.0, "max_cluster_share": 0.0,
                    "near_duplicates": 0, "near_dup_rate": 0.0, "cluster_sizes": []}
        h = -sum((s / n) * math.log(s / n) for s in self.sizes if s)
        return {
            "hypotheses": n,
            "clusters": len(self.sizes),
            "effective_clusters": math.exp(h),
            "max_cluster_share": max(self.sizes) / n,
            "near_duplicates": self.near_dups,
            "near_dup_rate": self.near_dups / n,
            "cluster_sizes": sorted(self.sizes, reverse=True),
        }


class Diversity(Projection):
    name = "diversity"
    requires = (TrialTable,)
    KINDS = ("proposal", "imported")

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.table: TrialTable = self.deps[TrialTable]  # type: ignore[assignment]
        self.per: dict[uuid.UUID, _CampaignDiversity] = {}

    def on_TrialProposed(self, rec: Recorded, e: ev.TrialProposed) -> None:
        if e.kind not in self.KINDS or not e.hypothesis.strip():
            return
        self.per.setdefault(e.campaign_id, _CampaignDiversity()).add(e.number, e.hypothesis)

    def summary(self, campaign_id: uuid.UUID) -> dict[str, Any]:
        d = self.per.get(campaign_id)
        return d.summary() if d else _CampaignDiversity().summary()

    def cluster_of(self, campaign_id: uuid.UUID) -> dict[int, int]:
        d = self.per.get(campaign_id)
        return dict(zip(d.numbers, d.assign, strict=True)) if d else {}

    @property
    def state(self) -> dict[str, Any]:
        out = {}
        for cid, d in self.per.items():
            info = self.table.campaigns.get(cid)
            s = d.summary()
            s["assign"] = list(d.assign)
            out[info.name if info else str(cid)] = s
        return out
