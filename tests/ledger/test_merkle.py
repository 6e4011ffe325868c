"""Tests for ledger.merkle against a naive RFC 6962 reference, published vectors and properties.

The reference below is written straight from RFC 6962 §2.1 (MTH), §2.1.1 (PATH) and §2.1.2
(PROOF / SUBPROOF): recursive, slicing, and parameterised by a hasher so that the same code can
also build *symbolic* trees (nested tuples), which the mutation tests use to predict exactly when
a proof checked under a different index or size must still verify.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# --------------------------------------------------------------------------------------------
# Naive reference, from RFC 6962 §2.1
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hasher:
    empty: Any
    leaf: Any  # data -> hash
    node: Any  # (left, right) -> hash


SHA = _Hasher(
    empty=hashlib.sha256(b"").digest(),
    leaf=lambda d: hashlib.sha256(b"\x00" + d).digest(),
    node=lambda a, b: hashlib.sha256(b"\x01" + a + b).digest(),
)
# Symbolic trees: data are ints, a leaf is ("L", d), a node ("N", left, right).
SYM = _Hasher(empty=("E",), leaf=lambda d: ("L", d), node=lambda a, b: ("N", a, b))


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(d: list, h: _Hasher = SHA) -> Any:
    n = len(d)
    if n == 0:
        return h.empty
    if n == 1:
        return h.leaf(d[0])
    k = _k(n)
    return h.node(naive_mth(d[:k], h), naive_mth(d[k:], h))


def naive_path(m: int, d: list, h: _Hasher = SHA) -> list:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return naive_path(m, d[:k], h) + [naive_mth(d[k:], h)]
    return naive_path(m - k, d[k:], h) + [naive_mth(d[:k], h)]


def naive_subproof(m: int, d: list, b: bool, h: _Hasher = SHA) -> list:
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d, h)]
    k = _k(n)
    if m <= k:
        return naive_subproof(m, d[:k], b, h) + [naive_mth(d[k:], h)]
    return naive_subproof(m - k, d[k:], False, h) + [naive_mth(d[:k], h)]


def naive_proof(m: int, d: list, h: _Hasher = SHA) -> list:
    """PROOF(m, D[n]) for 0 < m < n."""
    return naive_subproof(m, d, True, h)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def data_of(n: int, seed: bytes = b"") -> list[bytes]:
    """n distinct leaf payloads."""
    return [seed + b"leaf-" + i.to_bytes(4, "big") for i in range(n)]


def hashes_of(data: list[bytes]) -> list[bytes]:
    return [SHA.leaf(x) for x in data]


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _subst(expr: tuple, table: dict) -> tuple:
    hit = table.get(expr)
    if hit is not None:
        return hit
    if expr[0] == "N":
        return ("N", _subst(expr[1], table), _subst(expr[2], table))
    return expr


@functools.cache
def inclusion_shape(i: int, n: int) -> tuple:
    """The root of a size-n tree as an expression in ("leaf",) and the proof slots ("v", j)."""
    d = list(range(n))
    table = {SYM.leaf(i): ("leaf",)}
    table.update({p: ("v", j) for j, p in enumerate(naive_path(i, d, SYM))})
    return _subst(naive_mth(d, SYM), table)


@functools.cache
def consistency_shape(m: int, n: int) -> tuple[tuple, tuple]:
    """(old root, new root) for 0 < m < n as expressions in the proof slots ("v", j) and, when m is
    a power of two (the verifier then prepends the old root to the path), ("old",)."""
    d = list(range(n))
    old, new = naive_mth(d[:m], SYM), naive_mth(d, SYM)
    table = {p: ("v", j) for j, p in enumerate(naive_proof(m, d, SYM))}
    if m & (m - 1) == 0:
        table[old] = ("old",)
    return _subst(old, table), _subst(new, table)


def consistency_expected(m: int, n: int, m2: int, n2: int, proof: list, old: bytes, new: bytes) -> bool:
    """Whether a verifier following RFC 9162 must accept (m2, n2, old, new, proof), where proof,
    old and new are the genuine ones for (m, n) over distinct leaves (no hash collisions)."""
    if not 0 <= m2 <= n2:
        return False
    if m2 == n2:
        return not proof and old == new
    if m2 == 0:
        return not proof and old == EMPTY_ROOT
    if not proof:
        return False
    s_old, s_new = consistency_shape(m, n)
    t_old, t_new = consistency_shape(m2, n2)
    # The verifier for (m2, n2) takes the old root as an input: instantiate its ("old",) slot
    # with what the old root really is, in terms of (m, n)'s slots.
    t_old, t_new = _subst(t_old, {("old",): s_old}), _subst(t_new, {("old",): s_old})
    n_slots = len(naive_proof(m2, list(range(n2)), SYM))
    return n_slots == len(proof) and (t_old, t_new) == (s_old, s_new)


# --------------------------------------------------------------------------------------------
# Hash primitives and the naive reference itself
# --------------------------------------------------------------------------------------------


def test_hash_primitives() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)
    # Domain separation: a leaf whose data is two hashes is not the node over them.
    assert leaf_hash(a + b) != node_hash(a, b)


def test_split_point() -> None:
    assert [_k(n) for n in range(2, 18)] == [1, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 16]


# --------------------------------------------------------------------------------------------
# 1. Exhaustive agreement with the naive reference, sizes 0..64
# --------------------------------------------------------------------------------------------

MAX_EXHAUSTIVE = 64
DATA = data_of(MAX_EXHAUSTIVE)
LEAVES = hashes_of(DATA)


@pytest.mark.parametrize("n", range(MAX_EXHAUSTIVE + 1))
def test_root_matches_naive(n: int) -> None:
    want = naive_mth(DATA[:n])
    assert root(LEAVES[:n]) == want
    assert root(tuple(LEAVES[:n])) == want
    assert Frontier.of(LEAVES[:n]).root() == want


@pytest.mark.parametrize("n", range(1, MAX_EXHAUSTIVE + 1))
def test_inclusion_matches_naive(n: int) -> None:
    r = naive_mth(DATA[:n])
    for i in range(n):
        want = naive_path(i, DATA[:n])
        assert inclusion_proof(LEAVES[:n], i) == want
        assert inclusion_proof(LEAVES, i, n) == want  # a prefix of a longer list
        assert verify_inclusion(LEAVES[i], i, n, want, r)


@pytest.mark.parametrize("n", range(MAX_EXHAUSTIVE + 1))
def test_consistency_matches_naive(n: int) -> None:
    new = naive_mth(DATA[:n])
    for m in range(n + 1):
        want = naive_proof(m, DATA[:n]) if 0 < m < n else []
        assert consistency_proof(LEAVES[:n], m) == want
        assert consistency_proof(LEAVES, m, n) == want
        assert verify_consistency(m, n, naive_mth(DATA[:m]), new, want)


# --------------------------------------------------------------------------------------------
# 2. Known-answer vectors (certificate-transparency merkle_tree_test / merkle_test.py)
# --------------------------------------------------------------------------------------------

CT_DATA = [
    bytes.fromhex(x)
    for x in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_ROOTS = [
    bytes.fromhex(x)
    for x in [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]


def _hx(*xs: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in xs]


# (index, size, path); CT numbers leaves from 1, these are 0-based.
CT_INCLUSION = [
    (0, 1, []),
    (0, 2, _hx("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")),
    (1, 2, _hx("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")),
    (2, 3, _hx("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _hx(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        0,
        8,
        _hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _hx(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

# (old_size, new_size, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _hx(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]


def test_ct_vectors_roots() -> None:
    leaves = [leaf_hash(x) for x in CT_DATA]
    assert EMPTY_ROOT == CT_ROOTS[0]
    f = Frontier()
    for n, want in enumerate(CT_ROOTS):
        assert naive_mth(CT_DATA[:n]) == want  # the reference agrees with the published values
        assert root(leaves[:n]) == want
        assert f.root() == want
        if n < len(leaves):
            f.append(leaves[n])


@pytest.mark.parametrize("index,size,path", CT_INCLUSION)
def test_ct_vectors_inclusion(index: int, size: int, path: list[bytes]) -> None:
    leaves = [leaf_hash(x) for x in CT_DATA]
    assert naive_path(index, CT_DATA[:size]) == path
    assert inclusion_proof(leaves, index, size) == path
    assert verify_inclusion(leaves[index], index, size, path, CT_ROOTS[size])


@pytest.mark.parametrize("old,new,path", CT_CONSISTENCY)
def test_ct_vectors_consistency(old: int, new: int, path: list[bytes]) -> None:
    leaves = [leaf_hash(x) for x in CT_DATA]
    if 0 < old < new:
        assert naive_proof(old, CT_DATA[:new]) == path
    assert consistency_proof(leaves, old, new) == path
    assert verify_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], path)


def test_ct_vectors_consistency_negative() -> None:
    _, _, p68 = CT_CONSISTENCY[2]
    r6, r8 = CT_ROOTS[6], CT_ROOTS[8]
    assert not verify_consistency(6, 8, r6, r8, p68[:2])  # too short
    assert not verify_consistency(6, 8, r6, r8, [*p68, p68[0]])  # too long
    assert not verify_consistency(6, 8, r6, flip(r8, 0), p68)  # bad second hash
    assert not verify_consistency(6, 8, flip(r6, 0), r8, p68)  # bad first hash
    assert not verify_consistency(6, 8, flip(r6, 0), flip(r8, 0), p68)
    _, _, p25 = CT_CONSISTENCY[3]
    assert not verify_consistency(5, 2, CT_ROOTS[5], CT_ROOTS[2], p25)  # newer tree is smaller
    # Stricter than CT's python client, per RFC 9162: no bogus proof for size 0 or equal sizes.
    assert verify_consistency(0, 1, EMPTY_ROOT, CT_ROOTS[1], [])
    assert not verify_consistency(0, 1, EMPTY_ROOT, CT_ROOTS[1], [CT_ROOTS[1]])
    assert not verify_consistency(0, 1, CT_ROOTS[1], CT_ROOTS[1], [])  # not the empty root
    assert not verify_consistency(3, 3, CT_ROOTS[3], CT_ROOTS[3], [CT_ROOTS[1]])
    assert not verify_consistency(3, 3, CT_ROOTS[2], CT_ROOTS[3], [])


def test_ct_vector_real_log_audit_path() -> None:
    """A real CT log audit path (certificate-transparency python/ct/crypto/merkle_test.py)."""
    path = _hx(
        "1a208aeebcd1b39fe2de247ee8db9454e1e93a312d206b87f6ca9cc6ec6f1ddd",
        "0a1b78b383f580856f433c01a5741e160d451c185910027f6cc9f828687a40c4",
        "3d1745789bc63f2da15850de1c12a5bf46ed81e1cc90f086148b1662e79aab3d",
        "9095b61e14d8990acf390905621e62b1714fb8e399fbb71de5510e0aef45affe",
        "0a332b91b8fab564e6afd1dd452449e04619b18accc0ff9aa8393cd4928451f2",
        "2336f0181d264aed6d8f3a6507ca14a8d3b3c3a23791ac263e845d208c1ee330",
        "b4ce56e300590500360c146c6452edbede25d4ed83919278749ee5dbe178e048",
        "933f6ddc848ea562e4f9c5cfb5f176941301dad0c6fdb9d1fbbe34fac1be6966",
        "b95a6222958a86f74c030be27c44f57dbe313e5e7c7f4ffb98bcbd3a03bb52f2",
        "daeeb3ce5923defd0faeb8e0c210b753b85b809445d7d3d3cd537a9aabaa9c45",
        "7fadd0a13e9138a2aa6c3fdec4e2275af233b94812784f66bcca9aa8e989f2bc",
        "1864e6ba3e32878610546539734fb5eeae2529991f130c575c73a7e25a2a7c56",
        "12842d1202b1dc6828a17ab253c02e7ce9409b5192430feba44189f39cc02d66",
        "29af64b16fa3053c13d02ac63aa75b23aa468506e44c3a2315edc85d2dc22b11",
        "b527b99934a0bd9edd154e449b0502e2c499bba783f3bc3dfe23364b6b532009",
        "4584db8ae8e351ace08e01f306378a92bfd43611714814f3d834a2842d69faa8",
        "86a9a41573b0d6e4292f01e93243d6cc65b30f06606fc6fa57390e7e90ed580f",
        "a88b98fbe84d4c6aae8db9d1605dfac059d9f03fe0fcb0d5dff1295dacba09e6",
        "06326dc617a6d1f7021dc536026dbfd5fffc6f7c5531d48ef6ccd1ed1569f2a1",
        "f41fe8fdc3a2e4e8345e30216e7ebecffee26ff266eeced208a6c2a3cf08f960",
        "40cf5bde8abb76983f3e98ba97aa36240402975674e120f234b3448911090f8d",
        "b3222dc8658538079883d980d7fdc2bef9285344ea34338968f736b04aeb387a",
    )
    leaf = bytes.fromhex("7a395c866d5ecdb0cccb623e011dbc392cd348d1d1d72776174e127a24b09c78")
    want = bytes.fromhex("78316a05c9bcf14a3a4548f5b854a9adfcd46a4c034401b3ce7eb7ac2f1d0ecb")
    assert verify_inclusion(leaf, 848049, 3630887, path, want)
    assert not verify_inclusion(leaf, 848049 + 1, 3630887, path, want)
    assert not verify_inclusion(leaf, 848049, 3630887, path[:-1], want)
    assert not verify_inclusion(leaf, 848049 + 2 ** (len(path) + 1), 3630887, path, want)


# --------------------------------------------------------------------------------------------
# Edge cases and API contracts
# --------------------------------------------------------------------------------------------


def test_verify_inclusion_rejects_bad_shapes() -> None:
    leaves = LEAVES[:5]
    r = root(leaves)
    p = inclusion_proof(leaves, 4)
    assert verify_inclusion(leaves[4], 4, 5, p, r)
    assert not verify_inclusion(leaves[4], 5, 5, p, r)  # index == size
    assert not verify_inclusion(leaves[4], -1, 5, p, r)
    assert not verify_inclusion(leaves[4], 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(leaves[4], 4, 5, [*p, p[0]], r)
    assert not verify_inclusion(leaves[4], 4, 5, p[:-1], r)
    assert not verify_inclusion(leaves[4][:31], 4, 5, p, r)
    assert not verify_inclusion(leaves[4], 4, 5, [p[0] + b"\x00"], r)
    assert not verify_inclusion(leaves[4], 4, 5, p, r[:16])
    assert verify_inclusion(leaves[0], 0, 1, [], leaves[0])
    assert not verify_inclusion(leaves[0], 0, 1, [leaves[1]], leaves[0])


def test_verify_consistency_rejects_bad_shapes() -> None:
    r3, r7 = root(LEAVES[:3]), root(LEAVES[:7])
    p = consistency_proof(LEAVES[:7], 3)
    assert verify_consistency(3, 7, r3, r7, p)
    assert not verify_consistency(7, 3, r7, r3, p)
    assert not verify_consistency(-1, 7, r3, r7, p)
    assert not verify_consistency(3, 7, r3, r7, [])
    assert not verify_consistency(3, 7, r3, r7, [*p, p[0]])
    assert not verify_consistency(3, 7, r3, r7, p[:-1])
    assert not verify_consistency(3, 7, r3, r7, [x[:31] for x in p])
    assert not verify_consistency(3, 7, r3[:31], r7, p)
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(7, 7, r7, r7, [])


def test_proof_argument_errors() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES[:4], 4)
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES[:4], -1)
    with pytest.raises(ValueError):
        inclusion_proof(LEAVES[:4], 0, 5)
    with pytest.raises(ValueError):
        inclusion_proof([], 0)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES[:4], 5)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES[:4], -1)
    with pytest.raises(ValueError):
        consistency_proof(LEAVES[:4], 2, 5)
    assert consistency_proof([], 0) == []


def test_size_is_not_bound_by_the_proof() -> None:
    """Documented limitation of RFC 6962 proofs: a path only fixes a shape, so a size with the same
    shape accepts it too. (Leaf 0's path in 5 leaves is all right-siblings, as it is in 6.)"""
    leaves = LEAVES[:6]
    p5, r5 = inclusion_proof(leaves, 0, 5), root(leaves[:5])
    assert verify_inclusion(leaves[0], 0, 6, p5, r5)
    assert inclusion_shape(0, 5) == inclusion_shape(0, 6)
    assert inclusion_shape(0, 5) != inclusion_shape(0, 4)
    assert not verify_inclusion(leaves[0], 0, 4, p5, r5)


# --------------------------------------------------------------------------------------------
# Exhaustive single-bit flips on small trees
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 11])
def test_every_bit_flip_breaks_inclusion(n: int) -> None:
    leaves = LEAVES[:n]
    r = root(leaves)
    for i in range(n):
        p = inclusion_proof(leaves, i)
        assert verify_inclusion(leaves[i], i, n, p, r)
        for bit in range(256):
            assert not verify_inclusion(flip(leaves[i], bit), i, n, p, r)
            assert not verify_inclusion(leaves[i], i, n, p, flip(r, bit))
            for j in range(len(p)):
                bad = [*p[:j], flip(p[j], bit), *p[j + 1 :]]
                assert not verify_inclusion(leaves[i], i, n, bad, r)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 11])
def test_every_bit_flip_breaks_consistency(n: int) -> None:
    leaves = LEAVES[:n]
    new = root(leaves)
    for m in range(1, n):
        old = root(leaves[:m])
        p = consistency_proof(leaves, m)
        assert verify_consistency(m, n, old, new, p)
        for bit in range(256):
            assert not verify_consistency(m, n, flip(old, bit), new, p)
            assert not verify_consistency(m, n, old, flip(new, bit), p)
            for j in range(len(p)):
                bad = [*p[:j], flip(p[j], bit), *p[j + 1 :]]
                assert not verify_consistency(m, n, old, new, bad)


@pytest.mark.parametrize("n", range(1, 17))
def test_inclusion_accepts_exactly_same_shape(n: int) -> None:
    """For every (i, n) and every other (i2, n2) with n2 <= 17: a genuine proof is accepted under
    (i2, n2) iff RFC 6962 gives (i2, n2) the same path shape (so never for another index)."""
    leaves = LEAVES[:n]
    r = root(leaves)
    for i in range(n):
        p = inclusion_proof(leaves, i)
        for n2 in range(0, 18):
            for i2 in range(-1, n2 + 1):
                want = (i2, n2) == (i, n) or (
                    0 <= i2 < n2 and inclusion_shape(i2, n2) == inclusion_shape(i, n)
                )
                assert verify_inclusion(leaves[i], i2, n2, p, r) == want, (i, n, i2, n2)
                if n2 == n and i2 != i:
                    assert not want


@pytest.mark.parametrize("n", range(0, 13))
def test_consistency_accepts_exactly_same_shape(n: int) -> None:
    """For every (m, n) and every (m2, n2) with n2 <= 13: a genuine proof is accepted under (m2, n2)
    iff the RFC 9162 rules and the RFC 6962 proof shape say so."""
    new = root(LEAVES[:n])
    for m in range(n + 1):
        old = root(LEAVES[:m])
        p = consistency_proof(LEAVES[:n], m)
        for n2 in range(0, 14):
            for m2 in range(-1, n2 + 2):
                want = (m2, n2) == (m, n) or consistency_expected(m, n, m2, n2, p, old, new)
                assert verify_consistency(m2, n2, old, new, p) == want, (m, n, m2, n2)


# --------------------------------------------------------------------------------------------
# 3. Property tests
# --------------------------------------------------------------------------------------------

SETTINGS = settings(max_examples=60, deadline=None)
seeds = st.binary(min_size=0, max_size=8)


def _int_mutations(x: int) -> set[int]:
    return {x - 1, x + 1, *(x ^ (1 << b) for b in range(10))}


@SETTINGS
@given(data=st.data(), seed=seeds)
def test_inclusion_properties(data: st.DataObject, seed: bytes) -> None:
    n = data.draw(st.integers(1, 300), label="n")
    i = data.draw(st.integers(0, n - 1), label="i")
    leaves = hashes_of(data_of(n, seed))
    r = root(leaves)
    p = inclusion_proof(leaves, i)
    assert verify_inclusion(leaves[i], i, n, p, r)

    bit = data.draw(st.integers(0, 255), label="bit")
    assert not verify_inclusion(flip(leaves[i], bit), i, n, p, r)
    assert not verify_inclusion(leaves[i], i, n, p, flip(r, bit))
    if p:
        j = data.draw(st.integers(0, len(p) - 1), label="j")
        assert not verify_inclusion(leaves[i], i, n, [*p[:j], flip(p[j], bit), *p[j + 1 :]], r)
        assert not verify_inclusion(leaves[i], i, n, p[:-1], r)
        if len(p) > 1:
            assert not verify_inclusion(leaves[i], i, n, p[::-1], r)
    assert not verify_inclusion(leaves[i], i, n, [*p, leaves[i]], r)

    # Any other index in the same tree fails.
    for i2 in _int_mutations(i):
        if i2 != i:
            assert not verify_inclusion(leaves[i], i2, n, p, r)
    # Other (index, size) pairs: rejected unless the RFC path has exactly the same shape.
    joint = data.draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(_int_mutations(i))), st.sampled_from(sorted(_int_mutations(n)))),
            max_size=4,
        ),
        label="joint",
    )
    for i2, n2 in [(i, n2) for n2 in _int_mutations(n)] + joint:
        want = 0 <= i2 < n2 and inclusion_shape(i2, n2) == inclusion_shape(i, n)
        assert verify_inclusion(leaves[i], i2, n2, p, r) == want, (i2, n2)


@SETTINGS
@given(data=st.data(), seed=seeds)
def test_consistency_properties(data: st.DataObject, seed: bytes) -> None:
    n = data.draw(st.integers(1, 300), label="n")
    m = data.draw(st.integers(0, n), label="m")
    leaves = hashes_of(data_of(n, seed))
    old, new = root(leaves[:m]), root(leaves)
    p = consistency_proof(leaves, m)
    assert verify_consistency(m, n, old, new, p)

    bit = data.draw(st.integers(0, 255), label="bit")
    if m > 0:  # the empty tree is a prefix of every tree: any new root goes, but only EMPTY_ROOT
        assert not verify_consistency(m, n, old, flip(new, bit), p)
    assert not verify_consistency(m, n, flip(old, bit), new, p)
    if p:
        j = data.draw(st.integers(0, len(p) - 1), label="j")
        assert not verify_consistency(m, n, old, new, [*p[:j], flip(p[j], bit), *p[j + 1 :]])
        assert not verify_consistency(m, n, old, new, p[:-1])
        if len(p) > 1:
            assert not verify_consistency(m, n, old, new, p[::-1])
    assert not verify_consistency(m, n, old, new, [*p, new])

    joint = data.draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(_int_mutations(m))), st.sampled_from(sorted(_int_mutations(n)))),
            max_size=4,
        ),
        label="joint",
    )
    for m2, n2 in [(m2, n) for m2 in _int_mutations(m)] + [(m, n2) for n2 in _int_mutations(n)] + joint:
        want = consistency_expected(m, n, m2, n2, p, old, new)
        assert verify_consistency(m2, n2, old, new, p) == want, (m2, n2)


@settings(max_examples=40, deadline=None)
@given(
    seed=seeds,
    chunks=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    use_extend=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_frontier_properties(seed: bytes, chunks: list[int], use_extend: list[bool]) -> None:
    leaves = hashes_of(data_of(sum(chunks), seed))
    f = Frontier()
    pos = 0
    snapshots: list[tuple[int, bytes, bytes]] = []
    for c, ext in zip(chunks, use_extend, strict=False):
        chunk = leaves[pos : pos + c]
        if ext:
            f.extend(iter(chunk))
        else:
            for h in chunk:
                f.append(h)
        pos += c
        assert f.size == pos
        assert f.root() == root(leaves[:pos])
        assert len(f.hashes) == pos.bit_count()
        blob = f.to_bytes()
        assert len(blob) == 8 + 32 * pos.bit_count()
        g = Frontier.from_bytes(blob)
        assert g == f and g.size == pos and g.root() == f.root() and g.to_bytes() == blob
        snapshots.append((pos, blob, f.root()))

    # A restored or copied frontier keeps growing to the same roots; the original is untouched.
    for size, blob, r in snapshots:
        g = Frontier.from_bytes(blob)
        c = g.copy()
        c.extend(leaves[size:])
        assert c.root() == f.root() and c == f
        assert g.size == size and g.root() == r


@pytest.mark.parametrize("n", range(0, 70))
def test_frontier_every_size(n: int) -> None:
    data = data_of(n, b"x")
    leaves = hashes_of(data)
    f = Frontier.of(leaves)
    assert f.size == n
    assert f.root() == root(leaves) == naive_mth(data)
    # The frontier's hashes are the roots of the perfect subtrees given by the bits of n.
    lo, want = 0, []
    for b in reversed(range(n.bit_length())):
        if n >> b & 1:
            want.append(root(leaves[lo : lo + (1 << b)]))
            lo += 1 << b
    assert list(f.hashes) == want


def test_frontier_copy_is_independent_and_from_bytes_validates() -> None:
    f = Frontier.of(LEAVES[:5])
    g = f.copy()
    g.append(LEAVES[5])
    assert f.size == 5 and f.root() == root(LEAVES[:5])
    assert g.size == 6 and g.root() == root(LEAVES[:6])
    assert f != g
    assert Frontier().to_bytes() == bytes(8)
    assert Frontier.from_bytes(bytes(8)).root() == EMPTY_ROOT
    blob = f.to_bytes()  # size 5: two hashes
    for bad in (b"", blob[:7], blob[:-1], blob + b"\x00", blob[:8] + blob[8:40]):
        with pytest.raises(ValueError):
            Frontier.from_bytes(bad)
    with pytest.raises(ValueError):
        f.append(b"short")
    with pytest.raises(ValueError):
        f.extend([LEAVES[0], b"short"])
    assert f.size == 6 and f.root() == root([*LEAVES[:5], LEAVES[0]])  # the good one went in


def test_larger_tree_proofs() -> None:
    n = 5000
    leaves = hashes_of(data_of(n, b"big"))
    r = root(leaves)
    assert Frontier.of(leaves).root() == r
    for i in (0, 1, 2047, 2048, 4095, 4096, n - 2, n - 1):
        assert verify_inclusion(leaves[i], i, n, inclusion_proof(leaves, i), r)
    for m in (1, 2, 1000, 2048, 4095, 4096, 4097, n - 1, n):
        assert verify_consistency(m, n, root(leaves[:m]), r, consistency_proof(leaves, m))
