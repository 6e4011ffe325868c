"""RFC 6962 Merkle tree core: tree hash, compact frontier, inclusion and consistency proofs.

Hashing follows RFC 6962 §2.1 (and RFC 9162 §2.1, which keeps the same tree): a leaf hashes as
``SHA-256(0x00 || data)``, an interior node as ``SHA-256(0x01 || left || right)``, and the empty
tree as ``SHA-256("")``. For ``n > 1`` leaves the tree splits at ``k``, the largest power of two
smaller than ``n``: ``MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))``.

Proofs are generated as RFC 6962 §2.1.1 ``PATH(m, D[n])`` and §2.1.2 ``PROOF(m, D[n])`` and checked
with the verification algorithms of RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency).

Every function here takes *leaf hashes* (already ``leaf_hash``-ed, 32 bytes each), never raw data.
Generation is iterative and O(n) hashes per proof; verification is O(log n).

Note that a proof binds a leaf (or an old root) to a root, not to a tree size: the size only picks
the shape of the path, and two sizes whose paths have the same shape accept the same proof (e.g.
the proof of leaf 0 in a 5-leaf tree also verifies against that root when called with size 6).
Trust in a size comes from a signed (size, root) pair, as in a signed tree head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_of_concat",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash (SHA-256)."""

_sha256 = hashlib.sha256

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""``MTH({})``: the root of the empty tree, SHA-256 of the empty string."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` over already-hashed leaves; ``EMPTY_ROOT`` for no leaves.

    Computed level by level: adjacent pairs are hashed and an odd last node is carried up
    unchanged, which yields exactly the RFC 6962 tree (the lone right node of a level is the
    root of the smaller right subtree of the split at the largest power of two).
    """
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    sha = _sha256
    level = leaf_hashes
    while n > 1:
        it = iter(level)
        nxt = [sha(b"\x01" + left + right).digest() for left, right in zip(it, it, strict=False)]
        if n & 1:
            nxt.append(level[n - 1])
        level = nxt
        n = len(nxt)
    return bytes(level[0])


def root_of_concat(leaf_hashes: bytes) -> bytes:
    """``root`` of leaf hashes given as one byte string (32 bytes each, in order); faster on long
    runs, since each pair is already adjacent."""
    n = len(leaf_hashes) // HASH_SIZE
    if n * HASH_SIZE != len(leaf_hashes):
        raise ValueError("leaf hashes must be a multiple of 32 bytes")
    if n == 0:
        return EMPTY_ROOT
    sha = _sha256
    level = bytes(leaf_hashes)
    while n > 1:
        pairs = n // 2
        nxt = b"".join([sha(b"\x01" + level[i:i + 64]).digest() for i in range(0, pairs * 64, 64)])
        if n & 1:
            nxt += level[pairs * 64:]
        level = nxt
        n = pairs + (n & 1)
    return level


class Frontier:
    """The right edge of a tree (a compact range ``[0, size)``) for O(log n) incremental appends.

    Holds the roots of the perfect subtrees given by the set bits of ``size``, largest first.
    ``root()`` equals ``root(all leaves appended so far)`` at every size.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees covering ``[0, size)``, left to right."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
        stack = self._hashes
        h = bytes(leaf_hash)
        s = self._size
        while s & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            s >>= 1
        stack.append(h)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, in order."""
        sha = _sha256
        stack = self._hashes
        size = self._size
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(h)}")
            h = bytes(h)
            s = size
            while s & 1:
                h = sha(b"\x01" + stack.pop() + h).digest()
                s >>= 1
            stack.append(h)
            size += 1
            self._size = size

    def append_subtree(self, subtree_root: bytes, height: int) -> None:
        """Append a perfect subtree of ``2**height`` leaves by its root; ``size`` must be a multiple
        of ``2**height`` (the subtree is then a subtree of every larger tree, as RFC 6962 splits)."""
        width = 1 << height
        if self._size % width:
            raise ValueError(f"a subtree of {width} leaves cannot start at {self._size}")
        stack = self._hashes
        h = bytes(subtree_root)
        s = self._size >> height
        while s & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            s >>= 1
        stack.append(h)
        self._size += width

    def root(self) -> bytes:
        """``MTH`` of the leaves appended so far (folds the subtree roots right to left)."""
        stack = self._hashes
        if not stack:
            return EMPTY_ROOT
        h = stack[-1]
        for left in reversed(stack[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h

    def copy(self) -> Frontier:
        """An independent copy."""
        other = Frontier()
        other._size = self._size
        other._hashes = list(self._hashes)
        return other

    def to_bytes(self) -> bytes:
        """``size`` as 8 bytes big-endian, then the subtree roots (``popcount(size)`` × 32 bytes)."""
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> Frontier:
        """Inverse of ``to_bytes``; raises ``ValueError`` on a malformed encoding."""
        data = bytes(data)
        if len(data) < 8:
            raise ValueError("frontier encoding shorter than its 8-byte size")
        size = int.from_bytes(data[:8], "big")
        count = size.bit_count()
        if len(data) != 8 + HASH_SIZE * count:
            raise ValueError(f"frontier of size {size} needs {count} hashes, got {len(data) - 8} bytes")
        f = cls()
        f._size = size
        f._hashes = [data[8 + HASH_SIZE * i : 8 + HASH_SIZE * (i + 1)] for i in range(count)]
        return f

    @classmethod
    def of(cls, leaf_hashes: Iterable[bytes]) -> Frontier:
        """A frontier holding the given leaf hashes."""
        f = cls()
        f.extend(leaf_hashes)
        return f

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()[:16]}…)"


def _tree_size(leaf_hashes: Sequence[bytes], size: int | None) -> int:
    n = len(leaf_hashes) if size is None else size
    if not 0 <= n <= len(leaf_hashes):
        raise ValueError(f"tree size {n} outside [0, {len(leaf_hashes)}]")
    return n


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """RFC 6962 ``PATH(index, D[size])``: sibling subtree roots, leaf level first.

    ``size`` defaults to ``len(leaf_hashes)``; only the first ``size`` leaves are used.
    Raises ``ValueError`` unless ``0 <= index < size <= len(leaf_hashes)``.
    """
    n = _tree_size(leaf_hashes, size)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} outside tree of size {n}")
    leaves = leaf_hashes if isinstance(leaf_hashes, list) else list(leaf_hashes[:n])
    proof: list[bytes] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            proof.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root(leaves[lo : lo + k]))
            lo += k
    proof.reverse()
    return proof


def consistency_proof(
    leaf_hashes: Sequence[bytes], old_size: int, new_size: int | None = None
) -> list[bytes]:
    """RFC 6962 ``PROOF(old_size, D[new_size])``; empty when ``old_size`` is 0 or ``new_size``.

    ``new_size`` defaults to ``len(leaf_hashes)``. Raises ``ValueError`` unless
    ``0 <= old_size <= new_size <= len(leaf_hashes)``.
    """
    n = _tree_size(leaf_hashes, new_size)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} outside [0, {n}]")
    if old_size == 0 or old_size == n:
        return []
    leaves = leaf_hashes if isinstance(leaf_hashes, list) else list(leaf_hashes[:n])
    proof: list[bytes] = []
    lo, hi, m = 0, n, old_size  # SUBPROOF(m, D[lo:hi], complete), m relative to lo
    complete = True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root(leaves[lo : lo + k]))
            lo += k
            m -= k
            complete = False
    if not complete:
        proof.append(root(leaves[lo:hi]))
    proof.reverse()
    return proof


_BYTES = (bytes, bytearray)


def _is_hash(h: object) -> bool:
    return isinstance(h, _BYTES) and len(h) == HASH_SIZE


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` place ``leaf_hash`` at ``index`` of a ``size``-leaf tree
    whose root is ``root``? False (never an exception) on any malformed or wrong input."""
    if not (_is_hash(leaf_hash) and _is_hash(root) and all(_is_hash(p) for p in proof)):
        return False
    if not 0 <= index < size:
        return False
    sha = _sha256
    fn, sn = index, size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = sha(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the ``old_size`` tree with ``old_root`` a prefix of the ``new_size``
    tree with ``new_root``? False (never an exception) on any malformed or wrong input.

    Edge cases: ``old_size > new_size`` is False; ``old_size == new_size`` needs an empty proof
    and equal roots; ``old_size == 0`` needs an empty proof and ``old_root == EMPTY_ROOT``.
    """
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(p) for p in proof)):
        return False
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    if old_size == 0:
        return len(proof) == 0 and old_root == EMPTY_ROOT
    if len(proof) == 0:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old tree is a subtree of the new
        path.insert(0, bytes(old_root))
    sha = _sha256
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = bytes(path[0])
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha(b"\x01" + c + fr).digest()
            sr = sha(b"\x01" + c + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
