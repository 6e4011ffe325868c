"""Proposal diversity over hypothesis texts, per campaign — the measure of arXiv 2605.05724.

The paper describes it as TF-IDF of the hypothesis text, online clustering at cosine >= 0.30, and
effective clusters = exp of the Shannon entropy of the cluster sizes. The variant computed here is
the one that reproduces its figure for the released Parameter Golf record (pg_main: 439.6 in the
paper, 439.8 here; see the README's "Imported records" for the other runs):

* **texts**: the hypothesis of each of the campaign's proposals (kinds ``proposal`` and
  ``imported``; the baseline, reruns and confirmations repeat an earlier idea and are left out;
  empty hypotheses too), in log order (for an imported record: trial-number order);
* **terms**: the text lower-cased, tokens ``\\b\\w\\w+\\b`` (runs of two or more Unicode word
  characters; single characters are dropped), minus the 318 English stop words of the Glasgow
  Information Retrieval Group's list (:data:`ENGLISH_STOP_WORDS`); unigrams only;
* **weights**: term frequency ``1 + ln(count)`` (sublinear), ``idf = ln((1 + N) / (1 + df)) + 1``
  (smoothed) where N and df are counted over *all* of the campaign's proposals — the vectorizer is
  fitted once on the whole set, not as each hypothesis arrives — then each vector L2-normalised;
* **clustering**: leader clustering in log order — a hypothesis joins the cluster whose *first
  member* (its leader) has the highest cosine with it, if that cosine is >= 0.30 (ties: the earliest
  cluster), else it founds a new cluster; leaders never change;
* **effective clusters** = exp(−Σ p ln p) over the cluster shares p (1 when all hypotheses share a
  cluster, the cluster count when they are spread evenly).

Measured on pg_main, the choices that move the figure: a cosine against the cluster's centroid (sum
of members) instead of its leader gives 268.8; idf counted as hypotheses arrive gives 385.1; raw
instead of sublinear tf 375.5; unsmoothed idf 459.1; no stop words 443.0; clustering the baseline
too 440.6. Because idf is fitted on the whole set, a new proposal can move earlier assignments:
the projection re-clusters a campaign whenever it gained proposals since the last query (it only
queues texts while folding, so the campaign loop, which never asks, never pays).

Also reported: **largest-cluster share** = size of the largest cluster / hypotheses; **near-duplicate
rate** = share of hypotheses whose cosine (same vectors) to some *earlier* hypothesis is >= 0.9.

Both searches are exact and stay fast at tens of thousands of hypotheses:

* nearest leader: an inverted index maps each *rare* term (in at most 5% of the hypotheses) to numpy
  arrays of (leader, weight); one ``bincount`` over the postings of a vector's rare terms gives the
  rare part of its dot product with every leader. The common terms add at most
  ``|v_common| · |leader_common|`` (Cauchy–Schwarz), so only leaders whose bound reaches 0.30 are
  re-scored exactly, best bound first, stopping once no remaining bound can beat the best exact cosine.
* near-duplicates: for unit vectors, cos(u, v) >= 0.9 needs v to hold one of u's *prefix* terms (u's
  heaviest terms holding more than 1 − 0.9² of its squared mass; otherwise the cosine is at most the
  norm of the rest, < 0.9) and u to hold one of v's. Each hypothesis indexes only its prefix terms;
  the candidates found through them are filtered by v's prefix before the full cosine.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ledger import events as ev
from ledger.app import Recorded
from projections.base import Projection
from projections.trials import TrialTable

JOIN_COSINE = 0.30
NEAR_DUP_COSINE = 0.9
COMMON_DF = 0.05  # terms in more than 5% of a campaign's hypotheses are "common" (bounded, then re-scored)
KINDS = ("proposal", "imported")
_TOKEN = re.compile(r"\b\w\w+\b")
# The English stop-word list of the Glasgow Information Retrieval Group (318 words; the list
# scikit-learn ships as ENGLISH_STOP_WORDS), with its historical misspellings kept.
ENGLISH_STOP_WORDS = frozenset("""
a about above across after afterwards again against all almost alone along already also although
always am among amongst amoungst amount an and another any anyhow anyone anything anyway anywhere
are around as at back be became because become becomes becoming been before beforehand behind being
below beside besides between beyond bill both bottom but by call can cannot cant co con could couldnt
cry de describe detail do done down due during each eg eight either eleven else elsewhere empty enough
etc even ever every everyone everything everywhere except few fifteen fifty fill find fire first five
for former formerly forty found four from front full further get give go had has hasnt have he hence
her here hereafter hereby herein hereupon hers herself him himself his how however hundred i ie if in
inc indeed interest into is it its itself keep last latter latterly least less ltd made many may me
meanwhile might mill mine more moreover most mostly move much must my myself name namely neither never
nevertheless next nine no nobody none noone nor not nothing now nowhere of off often on once one only
onto or other others otherwise our ours ourselves out over own part per perhaps please put rather re
same see seem seemed seeming seems serious several she should show side since sincere six sixty so
some somehow someone something sometime sometimes somewhere still such system take ten than that the
their them themselves then thence there thereafter thereby therefore therein thereupon these they
thick thin third this those though three through throughout thru thus to together too top toward
towards twelve twenty two un under until up upon us very via was we well were what whatever when
whence whenever where whereafter whereas whereby wherein whereupon wherever whether which while whither
who whoever whole whom whose why will with within without would yet you your yours yourself yourselves
""".split())


def tokens(text: str) -> list[str]:
    """The terms of a hypothesis: lower-cased runs of 2+ word characters, stop words removed."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in ENGLISH_STOP_WORDS]


@dataclass(frozen=True, slots=True)
class _Vector:
    """A unit TF-IDF vector: term ids ascending, their weights, and the same as a dict."""

    ids: np.ndarray
    w: np.ndarray
    by_id: dict[int, float]


def vectorize(texts: list[str]) -> list[_Vector]:
    """Sublinear-tf, smoothed-idf, L2-normalised vectors, the idf fitted on all of ``texts``."""
    counts = [Counter(tokens(t)) for t in texts]
    vocab: dict[str, int] = {}
    df: Counter[int] = Counter()
    docs: list[list[tuple[int, int]]] = []
    for c in counts:
        doc = [(vocab.setdefault(t, len(vocab)), n) for t, n in c.items()]
        df.update(i for i, _ in doc)
        docs.append(doc)
    n_docs = len(texts)
    idf = {i: math.log((1 + n_docs) / (1 + d)) + 1.0 for i, d in df.items()}
    out = []
    for doc in docs:
        doc.sort()
        ids = np.fromiter((i for i, _ in doc), dtype=np.int64, count=len(doc))
        w = np.fromiter(((1.0 + math.log(n)) * idf[i] for i, n in doc), dtype=np.float64, count=len(doc))
        norm = float(np.sqrt(np.dot(w, w)))
        if norm > 0:
            w = w / norm
        out.append(_Vector(ids, w, dict(zip(ids.tolist(), w.tolist(), strict=True))))
    return out


class _Postings:
    """A growable (id, weight) list in numpy arrays."""

    __slots__ = ("ids", "w", "n")

    def __init__(self) -> None:
        self.ids = np.empty(4, dtype=np.int64)
        self.w = np.empty(4, dtype=np.float64)
        self.n = 0

    def add(self, i: int, w: float) -> None:
        if self.n == len(self.ids):
            self.ids = np.concatenate([self.ids, np.empty(self.n, dtype=np.int64)])
            self.w = np.concatenate([self.w, np.empty(self.n, dtype=np.float64)])
        self.ids[self.n] = i
        self.w[self.n] = w
        self.n += 1


def _dots(index: dict[int, _Postings], ids: np.ndarray, w: np.ndarray, size: int) -> np.ndarray:
    """Dot products of the vector (ids, w) with every indexed vector (0..size-1), through the postings."""
    got = [(index[i], x) for i, x in zip(ids.tolist(), w.tolist(), strict=True) if i in index]
    got = [(p, x) for p, x in got if p.n]
    if not got:
        return np.zeros(size)
    all_ids = np.concatenate([p.ids[: p.n] for p, _ in got])
    weights = np.concatenate([p.w[: p.n] * x for p, x in got])
    return np.bincount(all_ids, weights=weights, minlength=size)


def leader_clusters(vectors: list[_Vector], common: set[int]) -> list[int]:
    """Each vector's cluster under leader clustering at cosine >= JOIN_COSINE (see the module doc).
    ``common``: term ids left out of the postings pass and added back exactly where they can matter."""
    index: dict[int, _Postings] = {}
    leaders: list[_Vector] = []
    common_norm = np.zeros(max(1, len(vectors)))  # each leader's norm over the common terms
    assign: list[int] = []
    for v in vectors:
        k = len(leaders)
        best = -1
        if k:
            is_common = np.fromiter((i in common for i in v.ids.tolist()), dtype=bool, count=len(v.ids))
            rare = ~is_common
            dots = _dots(index, v.ids[rare], v.w[rare], k)
            vc = v.w[is_common]
            if not len(vc):
                best = int(np.argmax(dots))  # the first of equals
                if dots[best] < JOIN_COSINE:
                    best = -1
            else:
                cids = v.ids[is_common].tolist()
                bound = dots + float(np.sqrt(np.dot(vc, vc))) * common_norm[:k]
                cand = np.flatnonzero(bound >= JOIN_COSINE)
                cand = cand[np.lexsort((cand, -bound[cand]))]  # best bound first, then earliest
                best_cos = -math.inf
                for c in cand.tolist():
                    if bound[c] < best_cos:
                        break
                    lv = leaders[c].by_id
                    cos = float(dots[c]) + sum(x * lv.get(i, 0.0) for i, x in zip(cids, vc.tolist(), strict=True))
                    if cos > best_cos or (cos == best_cos and c < best):
                        best, best_cos = c, cos
                if best_cos < JOIN_COSINE:
                    best = -1
        if best < 0:
            best = k
            leaders.append(v)
            sq = 0.0
            for i, x in zip(v.ids.tolist(), v.w.tolist(), strict=True):
                if i in common:
                    sq += x * x
                else:
                    p = index.get(i)
                    if p is None:
                        p = index[i] = _Postings()
                    p.add(k, x)
            common_norm[k] = math.sqrt(sq)
        assign.append(best)
    return assign


def _prefix(v: _Vector, tau: float) -> list[int]:
    """The heaviest terms of a unit vector holding more than 1 - tau² of its squared mass: a vector
    that shares none of them has cosine < tau with it (the rest has norm < tau)."""
    need = 1.0 - tau * tau
    out, mass = [], 0.0
    for i, x in sorted(v.by_id.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(i)
        mass += x * x
        if mass > need + 1e-12:
            break
    return out


def near_duplicates(vectors: list[_Vector]) -> int:
    """How many vectors have cosine >= NEAR_DUP_COSINE with some earlier one (exact)."""
    prefix_index: dict[int, list[int]] = {}
    count = 0
    for doc, v in enumerate(vectors):
        prefix = _prefix(v, NEAR_DUP_COSINE)
        cands: set[int] = set()
        for i in v.by_id:
            lst = prefix_index.get(i)
            if lst:
                cands.update(lst)
        for j in sorted(cands):
            u = vectors[j].by_id
            if any(i in u for i in prefix) and sum(x * u.get(i, 0.0) for i, x in v.by_id.items()) >= NEAR_DUP_COSINE:
                count += 1
                break
        for i in prefix:
            prefix_index.setdefault(i, []).append(doc)
    return count


@dataclass(frozen=True, slots=True)
class Clustering:
    """The diversity of one campaign's hypotheses, as computed from their texts in order."""

    numbers: list[int]
    assign: list[int]
    near_dups: int

    @classmethod
    def of(cls, numbered: list[tuple[int, str]]) -> Clustering:
        vectors = vectorize([t for _n, t in numbered])
        df: Counter[int] = Counter()
        for v in vectors:
            df.update(v.by_id)
        common = {i for i, d in df.items() if d > COMMON_DF * len(vectors)}
        return cls([n for n, _t in numbered], leader_clusters(vectors, common), near_duplicates(vectors))

    @property
    def sizes(self) -> list[int]:
        return [n for _c, n in sorted(Counter(self.assign).items())]

    def summary(self) -> dict[str, Any]:
        n = len(self.assign)
        if n == 0:
            return {"hypotheses": 0, "clusters": 0, "effective_clusters": 0.0, "max_cluster_share": 0.0,
                    "near_duplicates": 0, "near_dup_rate": 0.0, "cluster_sizes": []}
        sizes = self.sizes
        h = -sum((s / n) * math.log(s / n) for s in sizes)
        return {
            "hypotheses": n,
            "clusters": len(sizes),
            "effective_clusters": math.exp(h),
            "max_cluster_share": max(sizes) / n,
            "near_duplicates": self.near_dups,
            "near_dup_rate": self.near_dups / n,
            "cluster_sizes": sorted(sizes, reverse=True),
        }


class Diversity(Projection):
    """Diversity per campaign. Folding only collects the hypotheses; a campaign is clustered when a
    summary is asked for and it gained hypotheses since the last one (the idf is fitted on them all)."""

    name = "diversity"
    requires = (TrialTable,)
    KINDS = KINDS

    def __init__(self, deps: dict[type[Projection], Projection] | None = None):
        super().__init__(deps)
        self.table: TrialTable = self.deps[TrialTable]  # type: ignore[assignment]
        self.texts: dict[uuid.UUID, list[tuple[int, str]]] = {}
        self._done: dict[uuid.UUID, Clustering] = {}

    def on_TrialProposed(self, rec: Recorded, e: ev.TrialProposed) -> None:
        if e.kind not in KINDS or not e.hypothesis.strip():
            return
        self.texts.setdefault(e.campaign_id, []).append((e.number, e.hypothesis))

    def clustering(self, campaign_id: uuid.UUID) -> Clustering:
        texts = self.texts.get(campaign_id, [])
        done = self._done.get(campaign_id)
        if done is None or len(done.numbers) != len(texts):
            done = self._done[campaign_id] = Clustering.of(texts)
        return done

    def summary(self, campaign_id: uuid.UUID) -> dict[str, Any]:
        return self.clustering(campaign_id).summary()

    def cluster_of(self, campaign_id: uuid.UUID) -> dict[int, int]:
        c = self.clustering(campaign_id)
        return dict(zip(c.numbers, c.assign, strict=True))

    @property
    def state(self) -> dict[str, Any]:
        out = {}
        for cid in sorted(self.texts, key=str):
            info = self.table.campaigns.get(cid)
            c = self.clustering(cid)
            s = c.summary()
            s["assign"] = list(c.assign)
            out[info.name if info else str(cid)] = s
        return out
