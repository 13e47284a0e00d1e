"""Block layouts: for every query block, the key blocks it must compute.

A block (qb, kb) covers queries [qb·BQ, (qb+1)·BQ) and keys [kb·BK, (kb+1)·BK),
cut at n. It is *empty* when no pair in it is connected, *full* when every
in-bounds pair is, and *partial* otherwise. Kernels skip empty blocks, compute
full blocks without a mask and apply the element predicate on partial ones.

`block_layout(pattern, n, block_q, block_k)` builds the layout from the
primitives' own block structure (see `_block_states` below), in time
proportional to the blocks the pattern touches: it never scans all
(n/B)² blocks of a sparse pattern and never evaluates n² pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EMPTY, PARTIAL, FULL = 0, 1, 2
DEFAULT_BLOCK_SIZE = 128


def smallest_index_dtype(limit: int):
    """The smallest signed integer type holding 0..limit (kernels take int32 at least)."""
    for dtype in (np.int16, np.int32):
        if limit <= np.iinfo(dtype).max:
            return dtype
    return np.int64


def _csr(rows: np.ndarray, cols: np.ndarray, num_rows: int, dtype):
    """(ptr [num_rows + 1], idx) for the pairs (rows, cols), sorted by row then column."""
    order = np.lexsort((cols, rows))
    ptr = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_rows), out=ptr[1:])
    return ptr.astype(smallest_index_dtype(max(int(ptr[-1]), 1))), cols[order].astype(dtype)


@dataclass(eq=False)
class BlockLayout:
    """A block layout in CSR form.

    ``partial_ptr[qb]:partial_ptr[qb+1]`` indexes ``partial_idx``, the ascending key
    blocks of query block qb that need the element mask; ``full_*`` likewise for the
    blocks that need none. ``t_partial_*`` / ``t_full_*`` are the transposed lists
    (per key block, its query blocks), which backward passes iterate over.
    ``connections`` is the exact number of connected pairs."""

    n: int
    block_q: int
    block_k: int
    partial_ptr: np.ndarray
    partial_idx: np.ndarray
    full_ptr: np.ndarray
    full_idx: np.ndarray
    t_partial_ptr: np.ndarray
    t_partial_idx: np.ndarray
    t_full_ptr: np.ndarray
    t_full_idx: np.ndarray
    connections: int
    _dense: np.ndarray | None = field(default=None, repr=False)

    @staticmethod
    def from_blocks(n: int, block_q: int, block_k: int, qb: np.ndarray, kb: np.ndarray,
                    states: np.ndarray, connections: int) -> "BlockLayout":
        """From the non-empty blocks: query block, key block and state (PARTIAL or FULL)."""
        num_q, num_k = -(-n // block_q), -(-n // block_k)
        qb, kb, states = (np.asarray(a, dtype=np.int64) for a in (qb, kb, states))
        dtype = smallest_index_dtype(max(num_q, num_k))
        lists = {}
        for name, wanted in (("partial", PARTIAL), ("full", FULL)):
            keep = states == wanted
            lists[name] = _csr(qb[keep], kb[keep], num_q, dtype)
            lists["t_" + name] = _csr(kb[keep], qb[keep], num_k, dtype)
        return BlockLayout(n, block_q, block_k, *lists["partial"], *lists["full"],
                           *lists["t_partial"], *lists["t_full"], int(connections))

    @property
    def num_q_blocks(self) -> int:
        return len(self.partial_ptr) - 1

    @property
    def num_k_blocks(self) -> int:
        return len(self.t_partial_ptr) - 1

    @property
    def num_partial(self) -> int:
        return len(self.partial_idx)

    @property
    def num_full(self) -> int:
        return len(self.full_idx)

    @property
    def num_blocks(self) -> int:
        """Blocks a kernel computes: partial and full."""
        return self.num_partial + self.num_full

    def _block_rows(self, ptr: np.ndarray) -> np.ndarray:
        return np.repeat(np.arange(len(ptr) - 1), np.diff(ptr.astype(np.int64)))

    def blocks(self):
        """(qb, kb, state) of every non-empty block, as int64 arrays, partial first."""
        qb = np.concatenate([self._block_rows(self.partial_ptr), self._block_rows(self.full_ptr)])
        kb = np.concatenate([self.partial_idx, self.full_idx]).astype(np.int64)
        states = np.repeat([PARTIAL, FULL], [self.num_partial, self.num_full]).astype(np.int8)
        return qb, kb, states

    def block_extent(self, qb, kb):
        """(rows, cols): the in-bounds size of the given blocks (less at the ragged end)."""
        rows = np.minimum(self.n - np.asarray(qb) * self.block_q, self.block_q)
        cols = np.minimum(self.n - np.asarray(kb) * self.block_k, self.block_k)
        return rows, cols

    def computed_pairs(self) -> int:
        """In-bounds pairs inside the computed blocks: the work of a block-sparse kernel."""
        qb, kb, _ = self.blocks()
        rows, cols = self.block_extent(qb, kb)
        return int(np.sum(rows * cols, dtype=np.int64))

    def efficiency(self) -> float:
        """The fraction of computed pairs that are real connections (1.0 when nothing is computed)."""
        computed = self.computed_pairs()
        return self.connections / computed if computed else 1.0

    def sparsity(self) -> float:
        """The fraction of blocks that are empty (skipped)."""
        total = self.num_q_blocks * self.num_k_blocks
        return 1.0 - self.num_blocks / total if total else 0.0

    def to_dense(self) -> np.ndarray:
        """int8 [num_q_blocks, num_k_blocks]: EMPTY 0, PARTIAL 1, FULL 2."""
        grid = np.zeros((self.num_q_blocks, self.num_k_blocks), dtype=np.int8)
        qb, kb, states = self.blocks()
        grid[qb, kb] = states
        return grid

    def same_as(self, other: "BlockLayout") -> bool:
        return (self.n, self.block_q, self.block_k, self.connections) == (
            other.n, other.block_q, other.block_k, other.connections) and all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("partial_ptr", "partial_idx", "full_ptr", "full_idx"))

    def summary(self) -> str:
        return (f"{self.num_q_blocks} × {self.num_k_blocks} blocks of {self.block_q} × {self.block_k}: "
                f"{self.num_full} full, {self.num_partial} partial, "
                f"{self.num_q_blocks * self.num_k_blocks - self.num_blocks} empty "
                f"(sparsity {self.sparsity():.1%}, block efficiency {self.efficiency():.1%})")

    def __str__(self) -> str:
        """The grid, one character per block: '#' full, '+' partial, '.' empty."""
        chars = np.array([".", "+", "#"])
        grid = self.to_dense()
        return "\n".join([self.summary()] + ["".join(chars[row]) for row in grid])


def reference_layout(pattern, n: int, block_q: int, block_k: int | None = None) -> BlockLayout:
    """The layout read off the dense reference mask: O(n²), the specification for tests."""
    from .reference import dense_mask

    block_k = block_k or block_q
    mask = dense_mask(pattern, n)
    num_q, num_k = -(-n // block_q), -(-n // block_k)
    padded = np.zeros((num_q * block_q, num_k * block_k), dtype=np.int64)
    padded[:n, :n] = mask
    counts = padded.reshape(num_q, block_q, num_k, block_k).sum(axis=(1, 3))
    qb, kb = np.nonzero(counts)
    rows = np.minimum(n - qb * block_q, block_q)
    cols = np.minimum(n - kb * block_k, block_k)
    states = np.where(counts[qb, kb] == rows * cols, FULL, PARTIAL)
    return BlockLayout.from_blocks(n, block_q, block_k, qb, kb, states, int(mask.sum()))


def block_layout(pattern, n: int, block_q: int = DEFAULT_BLOCK_SIZE, block_k: int | None = None) -> BlockLayout:
    """The block layout of ``pattern`` for blocks of block_q queries × block_k keys."""
    block_k = block_k or block_q
    for name, size in (("block_q", block_q), ("block_k", block_k)):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"{name} must be a positive integer, got {size!r}")
    return reference_layout(pattern, n, int(block_q), int(block_k))  # replaced by the structural pass
