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

Both searches are exact and use prefix filtering: a candidate must share one of the new vector's
heaviest terms (those holding more than 1 - t² of its squared mass, for threshold t); anything
sharing none of them has cosine < t. The inverted indexes then only touch rare terms' postings.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import Counter
from typing import Any

from ledger import events as ev
from ledger.app import Recorded
from projections.base import Projection
from projections.trials import TrialTable

JOIN_COSINE = 0.30
NEAR_DUP_COSINE = 0.9
_TOKEN = re.compile(r"[a-z][a-z0-9_]*|\d+(?:\.\d+)?(?:e-?\d+)?")
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in into is it its of on or so than that the their then "
    "this to was were which while will with we our can not no more less via per vs".split()
)


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS and (len(t) > 1 or t.isdigit())]


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


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    get = b.get
    return sum(w * get(t, 0.0) for t, w in a.items())


class _CampaignDiversity:
    __slots__ = ("n", "df", "vectors", "postings", "centroids", "cnorm2", "sizes", "cluster_terms",
                 "assign", "near_dups", "numbers")

    def __init__(self) -> None:
        self.n = 0
        self.df: Counter[str] = Counter()
        self.vectors: list[dict[str, float]] = []
        self.postings: dict[str, list[int]] = {}
        self.centroids: list[dict[str, float]] = []
        self.cnorm2: list[float] = []
        self.sizes: list[int] = []
        self.cluster_terms: dict[str, set[int]] = {}
        self.assign: list[int] = []
        self.near_dups = 0
        self.numbers: list[int] = []

    def add(self, number: int, text: str) -> None:
        toks = tokens(text)
        tf = Counter(toks)
        self.n += 1
        for t in tf:
            self.df[t] += 1
        n = self.n
        vec = {t: (1.0 + math.log(c)) * (math.log((1 + n) / (1 + self.df[t])) + 1.0) for t, c in tf.items()}
        norm = math.sqrt(sum(v * v for v in vec.values()))
        if norm > 0:
            vec = {t: v / norm for t, v in vec.items()}
        idx = len(self.vectors)

        # Candidates share a term with v's *prefix*: its heaviest terms holding more than
        # 1 - tau^2 of its squared mass. A vector sharing none of them has cosine <= the norm of
        # v's remaining terms < tau, so the search is exact for the threshold decision.
        order = sorted(vec.items(), key=lambda kv: (-kv[1], kv[0]))

        # near-duplicate: cosine >= 0.9 to an earlier hypothesis
        dup = False
        cands: set[int] = set()
        for t in _prefix(order, NEAR_DUP_COSINE):
            plist = self.postings.get(t)
            if plist:
                cands.update(plist)
        for j in sorted(cands):
            if _dot(vec, self.vectors[j]) >= NEAR_DUP_COSINE:
                dup = True
                break
        if dup:
            self.near_dups += 1

        # nearest centroid among clusters that can reach the joining cosine
        ccands: set[int] = set()
        for t in _prefix(order, JOIN_COSINE):
            ccands.update(self.cluster_terms.get(t, ()))
        best, best_cos, best_dot = -1, -1.0, 0.0
        for c in sorted(ccands):
            dot = _dot(vec, self.centroids[c])
            cn = math.sqrt(self.cnorm2[c])
            cos = dot / cn if cn > 0 else 0.0
            if cos > best_cos:
                best, best_cos, best_dot = c, cos, dot
        v2 = sum(v * v for v in vec.values())
        if best >= 0 and best_cos >= JOIN_COSINE:
            cen = self.centroids[best]
            self.cnorm2[best] += 2 * best_dot + v2
            for t, w in vec.items():
                if t not in cen:
                    self.cluster_terms.setdefault(t, set()).add(best)
                cen[t] = cen.get(t, 0.0) + w
            self.sizes[best] += 1
            cluster = best
        else:
            cluster = len(self.centroids)
            self.centroids.append(dict(vec))
            self.cnorm2.append(v2)
            self.sizes.append(1)
            for t in vec:
                self.cluster_terms.setdefault(t, set()).add(cluster)
        self.assign.append(cluster)
        self.vectors.append(vec)
        self.numbers.append(number)
        for t in vec:
            self.postings.setdefault(t, []).append(idx)

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
