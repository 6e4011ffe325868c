"""golf-mini tokenizer (evaluator-owned, staged read-only into every workspace).

Byte-level BPE: token ids 0..255 are raw bytes; merge ``i`` (a pair of earlier ids ``(a, b)``)
creates id ``256 + i``. Text is encoded by applying the merges in order, each left to right over
the whole sequence. The recipe decides which merges to learn (and ships them in the artifact);
this file decides how they are applied, for training and for the held-out score alike.
"""

from __future__ import annotations

import numpy as np


class TokenizerError(ValueError):
    """The merge list is malformed."""


def check_merges(merges) -> list[tuple[int, int]]:
    """The merges as a list of int pairs, each referring only to earlier ids."""
    if not isinstance(merges, list):
        raise TokenizerError("merges must be a list of [a, b] pairs")
    out = []
    for i, pair in enumerate(merges):
        if (not isinstance(pair, list | tuple) or len(pair) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)):
            raise TokenizerError(f"merge {i} is not a pair of token ids: {pair!r}")
        a, b = pair
        if not (0 <= a < 256 + i and 0 <= b < 256 + i):
            raise TokenizerError(f"merge {i} = ({a}, {b}) refers to an id not defined before it")
        out.append((a, b))
    return out


def merge_pair(ids: np.ndarray, a: int, b: int, new: int) -> np.ndarray:
    """Replace every non-overlapping occurrence of ``a b`` (left to right) by ``new``."""
    if len(ids) < 2:
        return ids
    hit = (ids[:-1] == a) & (ids[1:] == b)
    pos = np.flatnonzero(hit)
    if len(pos) == 0:
        return ids
    if a == b:  # runs like "a a a": take the 1st, 3rd, ... occurrence of each run
        brk = np.ones(len(pos), dtype=bool)
        brk[1:] = pos[1:] != pos[:-1] + 1
        starts = np.flatnonzero(brk)
        offset = np.arange(len(pos)) - starts[np.cumsum(brk) - 1]
        pos = pos[offset % 2 == 0]
    out = ids.copy()
    out[pos] = new
    keep = np.ones(len(ids), dtype=bool)
    keep[pos + 1] = False
    return out[keep]


def encode(data: bytes, merges) -> np.ndarray:
    """Token ids (int32) of ``data`` under ``merges``."""
    ids = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    for i, (a, b) in enumerate(merges):
        ids = merge_pair(ids, a, b, 256 + i)
    return ids


def token_bytes(merges) -> np.ndarray:
    """The number of UTF-8 bytes each token id stands for."""
    lengths = np.ones(256 + len(merges), dtype=np.int64)
    for i, (a, b) in enumerate(merges):
        lengths[256 + i] = lengths[a] + lengths[b]
    return lengths
