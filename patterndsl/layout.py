"""Block layouts: for every query block, the key blocks it must compute.

A block (qb, kb) covers queries [qb·BQ, (qb+1)·BQ) and keys [kb·BK, (kb+1)·BK),
cut at n. It is *empty* when no pair in it is connected, *full* when every
in-bounds pair is, and *partial* otherwise. Kernels skip empty blocks, compute
full blocks without a mask and apply the element predicate on partial ones.

`block_layout(pattern, n, block_q, block_k)` builds the layout from the
nodes' own block structure (`block_candidates`, `block_states`, `block_counts`
of each primitive and combinator, patterndsl/ir.py), in time
proportional to the blocks the pattern touches: it never scans all
(n/B)² blocks of a sparse pattern and never evaluates n² pairs.
"""
from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .analysis.counts import row_degrees
from .arrays import unique_sorted
from .errors import Diagnostic, warning
from .reference import AtLeast, dense_mask, index_dtype

EMPTY, PARTIAL, FULL = 0, 1, 2
DEFAULT_BLOCK_SIZE = 128


def smallest_index_dtype(limit: int):
    """The smallest signed integer type holding 0..limit (kernels take int32 at least)."""
    return np.int16 if limit <= 32767 else np.int32 if limit <= 2147483647 else np.int64  # (np.iinfo: 3 µs a call)


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
    _connections: "int | Callable[[], int]" = field(repr=False)
    # A layout of some rows only (block_layout(..., q_offset=, q_len=)): query block qb holds the
    # rows q_offset + qb·BQ … (cut at q_offset + q_len), the keys are still 0 … n − 1.
    q_offset: int = 0
    q_len: "int | None" = None

    @property
    def num_rows(self) -> int:
        """The query rows the layout covers (n, or q_len for a layout of some rows)."""
        return self.n if self.q_len is None else self.q_len

    @property
    def connections(self) -> int:
        """The exact number of connected pairs (counted on first use: O(n))."""
        if callable(self._connections):
            self._connections = int(self._connections())
        return self._connections

    @staticmethod
    def from_blocks(n: int, block_q: int, block_k: int, qb: np.ndarray, kb: np.ndarray,
                    states: np.ndarray, connections, *, q_offset: int = 0,
                    q_len: "int | None" = None, ordered: "bool | None" = None) -> "BlockLayout":
        """From the non-empty blocks: query block, key block and state (PARTIAL or FULL).
        ``ordered``: the blocks are listed in row-major order, each once (None: check)."""
        num_q, num_k = -(-(n if q_len is None else q_len) // block_q), -(-n // block_k)
        states = np.asarray(states, dtype=np.int8)  # (EMPTY, PARTIAL, FULL: no int64 copy)
        dtype = smallest_index_dtype(max(num_q, num_k))
        if ordered is None:
            qb, kb = (np.asarray(a, dtype=np.int64) for a in (qb, kb))
            ordered = bool(np.all((qb[1:] > qb[:-1]) | ((qb[1:] == qb[:-1]) & (kb[1:] > kb[:-1]))))
        if not ordered:
            qb, kb = (np.asarray(a, dtype=np.int64) for a in (qb, kb))
            order = np.lexsort((kb, qb))
            qb, kb, states = qb[order], kb[order], states[order]
        # Row-major blocks need no sort by row: a row's pointers are where its blocks start
        # (searchsorted, O(rows · log blocks)); their transpose is a stable sort by column
        # (numpy's stable sort of 16-bit values is a radix sort). The blocks are narrowed to
        # the index type once, so the takes, the sort and the searches read 2 or 4 bytes an
        # entry (searchsorted's needles in the same type: mixed types copy the haystack). The
        # lists are cut by flatnonzero and take: a boolean mask index costs about four passes
        # of arithmetic over the same blocks.
        at = smallest_index_dtype(max(num_q, num_k) + 1)
        qb, kb = np.asarray(qb).astype(at, copy=False), np.asarray(kb).astype(at, copy=False)
        rows_at, cols_at = np.arange(num_q + 1, dtype=at), np.arange(num_k + 1, dtype=at)
        lists = {}
        for name, wanted in (("partial", PARTIAL), ("full", FULL)):
            keep = np.flatnonzero(states == wanted)
            rows, cols = qb.take(keep), kb.take(keep)
            by_col = np.argsort(cols, kind="stable")
            t_cols = cols.take(by_col)
            ptr_dtype = smallest_index_dtype(max(keep.size, 1))
            lists[name] = (np.searchsorted(rows, rows_at).astype(ptr_dtype), cols.astype(dtype, copy=False))
            lists["t_" + name] = (np.searchsorted(t_cols, cols_at).astype(ptr_dtype),
                                  rows.take(by_col).astype(dtype, copy=False))
        return BlockLayout(n, block_q, block_k, *lists["partial"], *lists["full"],
                           *lists["t_partial"], *lists["t_full"], connections, q_offset, q_len)

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
        rows = np.minimum(self.num_rows - np.asarray(qb) * self.block_q, self.block_q)
        cols = np.minimum(self.n - np.asarray(kb) * self.block_k, self.block_k)
        return rows, cols

    def computed_pairs(self) -> int:
        """In-bounds pairs inside the computed blocks: the work of a block-sparse kernel. In
        closed form from the block counts (every block is block_q × block_k but those of the
        last query-block row and key-block column), not a pass over the blocks: summary(),
        efficiency() and the warnings ask it several times (12 million blocks at 2^26)."""
        num_q, num_k = self.num_q_blocks, self.num_k_blocks
        if num_q == 0 or num_k == 0:
            return 0
        lists = ((self.partial_ptr, self.partial_idx), (self.full_ptr, self.full_idx))
        last_row = sum(int(ptr[-1]) - int(ptr[-2]) for ptr, _ in lists)
        last_col = sum(int(ptr[-1]) - int(ptr[-2]) for ptr in (self.t_partial_ptr, self.t_full_ptr))
        corner = sum(int(ptr[-1]) > int(ptr[-2]) and int(idx[int(ptr[-1]) - 1]) == num_k - 1 for ptr, idx in lists)
        rows, cols = (int(x) for x in self.block_extent(num_q - 1, num_k - 1))
        q, k = self.block_q, self.block_k
        return (q * k * (self.num_blocks - last_row - last_col + corner) + rows * k * (last_row - corner)
                + q * cols * (last_col - corner) + rows * cols * corner)

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
        return (self.n, self.block_q, self.block_k, self.connections, self.q_offset, self.num_rows) == (
            other.n, other.block_q, other.block_k, other.connections, other.q_offset, other.num_rows) and all(
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


# ---- the structural pass ----------------------------------------------------------------

UNKNOWN = 3  # only inside the pass: a combination its parts do not decide


@dataclass(eq=False)
class BlockGrid:
    """The blocks of an n × n mask; what primitives need to classify blocks in closed form.

    Blocks are named by arrays ``qb`` (query block) and ``kb`` (key block), or by their
    ``code`` qb·num_k + kb. Bounds are inclusive: rows r0..r1, columns c0..c1."""

    n: int
    block_q: int
    block_k: int
    memo: dict = field(default_factory=dict)  # per-primitive data shared across calls (random keys)

    @property
    def num_q(self) -> int:
        return -(-self.n // self.block_q)

    @property
    def num_k(self) -> int:
        return -(-self.n // self.block_k)

    @property
    def num_blocks(self) -> int:
        return self.num_q * self.num_k

    def rows(self, qb):
        r0 = np.asarray(qb, dtype=np.int64) * self.block_q
        return r0, np.minimum(r0 + self.block_q, self.n) - 1

    def cols(self, kb):
        c0 = np.asarray(kb, dtype=np.int64) * self.block_k
        return c0, np.minimum(c0 + self.block_k, self.n) - 1

    def area(self, qb, kb):
        (r0, r1), (c0, c1) = self.rows(qb), self.cols(kb)
        return (r1 - r0 + 1) * (c1 - c0 + 1)

    def offsets(self, qb, kb):
        """(lo, hi): the block holds exactly the offsets j − i in lo..hi (every one of them)."""
        qb, kb = np.asarray(qb, dtype=np.int64), np.asarray(kb, dtype=np.int64)
        if self.n % self.block_q or self.n % self.block_k:  # a ragged last block
            (r0, r1), (c0, c1) = self.rows(qb), self.cols(kb)
            return c0 - r1, c1 - r0
        d = kb * self.block_k - qb * self.block_q  # c0 − r0
        return d - (self.block_q - 1), d + (self.block_k - 1)

    def codes(self, qb, kb):
        return np.asarray(qb, dtype=np.int64) * self.num_k + np.asarray(kb, dtype=np.int64)

    def decode(self, codes):
        qb = codes // self.num_k  # (a division by a scalar is numpy's fast one; % is not)
        return qb, codes - qb * self.num_k

    def all_codes(self):
        return np.arange(self.num_blocks, dtype=np.int64)

    def key_block_range(self, qb, first_col, last_col):
        """Codes of the blocks (qb, kb) for kb covering columns first_col..last_col (per entry,
        clipped to [0, n)); empty ranges give nothing. Sorted and unique."""
        qb = np.asarray(qb, dtype=np.int64)
        lo = np.clip(np.asarray(first_col, dtype=np.int64), 0, self.n) // self.block_k
        hi = np.clip(np.asarray(last_col, dtype=np.int64), -1, self.n - 1) // self.block_k  # (−1 // B = −1)
        lo, hi, qb = np.broadcast_arrays(lo, hi, qb)
        length = np.maximum(hi - lo + 1, 0)
        starts = np.repeat(self.codes(qb, lo) - np.cumsum(length) + length, length)
        codes = starts + np.arange(int(length.sum()), dtype=np.int64)
        if qb.ndim == 1 and bool(np.all(qb[1:] > qb[:-1])):  # one range per block row, rows ascending
            return codes
        return unique_sorted(codes)

    def columns_in_band(self, kb, lo: int, hi: int):
        """Sorted codes of the blocks (qb, k), for every query block qb and each k of the
        sorted key blocks ``kb``, that hold an offset j − i in lo..hi (a column pattern —
        `summary`, `global` of keys — cut by a band: no cross product of all rows first)."""
        kb = np.asarray(kb, dtype=np.int64)
        qb = np.arange(self.num_q, dtype=np.int64)
        r0 = qb * self.block_q
        first = np.clip(r0 + lo, 0, self.n) // self.block_k
        last = np.clip(np.minimum(r0 + self.block_q, self.n) - 1 + hi, -1, self.n - 1) // self.block_k
        start = np.searchsorted(kb, first)
        length = np.maximum(np.searchsorted(kb, last, side="right") - start, 0)
        total = int(length.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        # entry e of row q is kb[start[q] + (e − its row's first entry)], plus q · num_k
        shift = np.repeat(start - np.cumsum(length) + length, length)
        return kb.take(shift + np.arange(total, dtype=np.int64)) + np.repeat(qb * self.num_k, length)

    def band_candidates(self, lo: int, hi: int):
        """Codes of the blocks that hold an offset j − i in lo..hi."""
        qb = np.arange(self.num_q, dtype=np.int64)
        r0, r1 = self.rows(qb)
        return self.key_block_range(qb, r0 + lo, r1 + hi)

    def band_states(self, qb, kb, lo: int, hi: int):
        """States of blocks under the predicate lo ≤ j − i ≤ hi."""
        if self.n % self.block_q or self.n % self.block_k:  # a ragged last block
            first, last = self.offsets(qb, kb)
            some = (last >= lo) & (first <= hi)
            every = (first >= lo) & (last <= hi)  # (implies some)
            return some.view(np.int8) + every.view(np.int8)  # EMPTY 0, PARTIAL 1, FULL 2
        # Whole blocks: the block holds the offsets d − (BQ − 1) … d + (BK − 1), d = c0 − r0,
        # so each test is d against a constant, and a test that every block passes (d runs
        # over −(n − BQ) … n − BK: causal's lo = −n) is not made.
        bq, bk = self.block_q, self.block_k
        d = np.asarray(kb, dtype=np.int64) * bk - np.asarray(qb, dtype=np.int64) * bq
        lowest, highest = -(self.n - bq), self.n - bk

        def within(at_least: int, at_most: int):  # bool array lo' ≤ d ≤ hi', or None: all
            tests = ([d >= at_least] if at_least > lowest else []) + ([d <= at_most] if at_most < highest else [])
            return tests[0] & tests[1] if len(tests) == 2 else tests[0] if tests else None

        some, every = within(lo - (bk - 1), hi + (bq - 1)), within(lo + (bq - 1), hi - (bk - 1))
        if some is None:  # (every block holds some offset in the band)
            some = np.ones(d.shape, dtype=bool)
        return some.view(np.int8) + (every.view(np.int8) if every is not None else np.int8(1))

    def band_counts(self, qb, kb, lo: int, hi: int):
        """Pairs with lo ≤ j − i ≤ hi in each block, in closed form."""
        return self._pairs_below(qb, kb, hi) - self._pairs_below(qb, kb, lo - 1)

    def _pairs_below(self, qb, kb, x):
        """Pairs with j − i ≤ x: Σ over rows i of clip(i + x − c0 + 1, 0, width)."""
        (r0, r1), (c0, c1) = self.rows(qb), self.cols(kb)
        width = c1 - c0 + 1

        def partial_sum(t):  # Σ_{u ≤ t} clip(u, 0, width)
            t = np.asarray(t, dtype=np.int64)
            inside = np.clip(t, 0, width)
            return inside * (inside + 1) // 2 + np.maximum(t - width, 0) * width

        return partial_sum(r1 + x - c0 + 1) - partial_sum(r0 - 1 + x - c0 + 1)

    def states_from_counts(self, qb, kb, counts):
        counts = np.asarray(counts)
        return (counts > 0).view(np.int8) + (counts == self.area(qb, kb)).view(np.int8)  # EMPTY 0, PARTIAL 1, FULL 2

    # ---- what the combinators (patterndsl/ir.py) ask: their parts' answers combined ------

    @staticmethod
    def complement_states(states):
        """The states of a complement, from its operand's: EMPTY ↔ FULL."""
        return (FULL - states).astype(np.int8)

    def exact_counts(self, node, qb, kb):
        """node.block_counts as an int64 array, -1 where it knows none."""
        counts = node.block_counts(self, qb, kb)
        return np.full(qb.shape, -1, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)

    def combined_states(self, node, parts, flips, union: bool, qb, kb):
        """int8 states of ``node``, the union (else the intersection) of ``parts``, those
        with ``flips`` true complemented, at the blocks (qb, kb), exactly."""
        if qb.size == 0:
            return np.zeros(0, dtype=np.int8)
        # With EMPTY < PARTIAL < FULL a union's state is its parts' largest, an intersection's
        # their smallest — except where two or more parts are partial and none absorbing
        # (a union of partial blocks may be full, an intersection empty): those are resolved.
        # A part is asked only about the blocks the earlier ones left open (not absorbed);
        # the first about all of them, with no index arrays (a boolean mask index costs 4×
        # a pass over the blocks).
        absorbing = FULL if union else EMPTY
        combine = np.maximum if union else np.minimum
        out = partials = None
        owned = False  # whether ``out`` is this call's own array (the first part's is not)
        for part, flip in zip(parts, flips):
            open_ = None if out is None else np.flatnonzero(out != absorbing)
            if open_ is not None and open_.size == 0:
                break
            whole = open_ is None or open_.size == out.size
            states = part.block_states(self, qb, kb) if whole else part.block_states(self, qb.take(open_), kb.take(open_))
            states = np.asarray(states, dtype=np.int8)
            if flip:
                states = self.complement_states(states)
            if out is None:
                out, partials = states, (states == PARTIAL).view(np.int8)
            elif whole:
                out, partials, owned = combine(out, states), partials + (states == PARTIAL), True
            else:
                if not owned:
                    out, owned = out.copy(), True
                out[open_] = combine(out.take(open_), states)
                partials[open_] += states == PARTIAL
        ambiguous = np.flatnonzero((partials >= 2) & (out == PARTIAL))
        if ambiguous.size:
            out = out if owned else out.copy()
            out[ambiguous] = self._resolve(node, parts, flips, union, qb.take(ambiguous), kb.take(ambiguous))
        return out

    def combined_counts(self, parts, flips, union: bool, qb, kb):
        """Exact pair counts of a union (else intersection) of terms where they follow
        from closed forms, else -1: a part's counts pass on where the other terms do not
        change them on that block (EMPTY terms of a union, FULL terms of an
        intersection), which is where two ambiguous parts usually meet."""
        area = self.area(qb, kb)
        neutral, absorbing = (EMPTY, FULL) if union else (FULL, EMPTY)
        out = np.full(qb.shape, -1, dtype=np.int64)
        states = [part.block_states(self, qb, kb) for part in parts]
        states = [self.complement_states(s) if flip else s for s, flip in zip(states, flips)]
        absorbed = np.any([s == absorbing for s in states], axis=0)
        out[absorbed] = 0 if absorbing == EMPTY else area[absorbed]
        others = np.sum([s != neutral for s in states], axis=0)
        out[~absorbed & (others == 0)] = 0 if neutral == EMPTY else area[~absorbed & (others == 0)]
        for part, flip, s in zip(parts, flips, states):
            alone = np.nonzero(~absorbed & (others == 1) & (s != neutral))[0]
            if alone.size:
                counts = self.exact_counts(part, qb[alone], kb[alone])
                out[alone] = np.where(counts < 0, -1, area[alone] - counts) if flip else counts
        return out

    def _resolve(self, node, parts, flips, union: bool, qb, kb):
        """States of ambiguous blocks: by the parts' pair counts where those decide (a union
        with fewer pairs than the block is not full; an intersection of parts with more
        than (k − 1)·area pairs is not empty), else by evaluating just those blocks."""
        out = np.full(qb.shape, UNKNOWN, dtype=np.int8)
        area = self.area(qb, kb)
        counts = [self.exact_counts(part, qb, kb) for part in parts]
        known = np.all([c >= 0 for c in counts], axis=0)
        total = np.sum([area - c if flip else c for c, flip in zip(counts, flips)], axis=0)
        decided = known & (total < area if union else total > (len(parts) - 1) * area)
        out[decided] = PARTIAL
        todo = np.nonzero(out == UNKNOWN)[0]
        if todo.size:
            out[todo] = self.evaluate_blocks(node, qb[todo], kb[todo])
        return out

    # ---- `blocks(B) { P }` when B does not meet the kernel's blocks (ir.Blocked) ------------
    #
    # Kernel block (qb, kb) holds the cells (pattern block pairs) a0..a1 × b0..b1 of P over
    # ⌈n/B⌉, each cut by the kernel block but never missed: it is FULL when every one of them
    # is in P, EMPTY when none is. P's own layout on ``inner`` (a grid over the cells whose
    # blocks are about the kernel's, in cells) decides most blocks from the few inner blocks
    # that meet each one; only kernel blocks cut through a PARTIAL inner block are evaluated,
    # on their cells.

    def cells(self, qb, kb, size: int):
        """(a0, a1, b0, b1): the cells of ``size`` (inclusive ranges) that block (qb, kb) meets."""
        (r0, r1), (c0, c1) = self.rows(qb), self.cols(kb)
        return r0 // size, r1 // size, c0 // size, c1 // size

    def covered_states(self, operand, inner: "BlockGrid", size: int, qb, kb):
        """States of the kernel blocks (qb, kb) of `blocks(size) { operand }`, from the operand's
        states on ``inner`` (see above)."""
        qb, kb = np.asarray(qb, dtype=np.int64), np.asarray(kb, dtype=np.int64)
        shape = qb.shape
        qb, kb = qb.reshape(-1), kb.reshape(-1)
        if qb.size == 0:
            return np.zeros(shape, dtype=np.int8)
        a0, a1, b0, b1 = self.cells(qb, kb, size)
        iq0, iq1, ik0, ik1 = a0 // inner.block_q, a1 // inner.block_q, b0 // inner.block_k, b1 // inner.block_k
        span_q, span_k = int((iq1 - iq0).max()) + 1, int((ik1 - ik0).max()) + 1
        iq = iq0[:, None, None] + np.arange(span_q)[None, :, None]
        ik = ik0[:, None, None] + np.arange(span_k)[None, None, :]
        iq, ik = np.broadcast_arrays(iq, ik)
        valid = (iq <= iq1[:, None, None]) & (ik <= ik1[:, None, None])
        owner = np.broadcast_to(np.arange(qb.size)[:, None, None], valid.shape)[valid]
        iq, ik = iq[valid], ik[valid]
        states = operand.block_states(inner, iq, ik)
        (p0, p1), (q0, q1) = inner.rows(iq), inner.cols(ik)
        contained = (p0 >= a0[owner]) & (p1 <= a1[owner]) & (q0 >= b0[owner]) & (q1 <= b1[owner])

        def some(where):
            return np.bincount(owner[where], minlength=qb.size) > 0

        full, empty = some(states == FULL), some(states == EMPTY)
        partial_inside, partial_cut = some((states == PARTIAL) & contained), some((states == PARTIAL) & ~contained)
        out = np.where(full & ~empty & ~partial_inside & ~partial_cut, FULL,
                       np.where(~full & ~partial_inside & ~partial_cut, EMPTY, PARTIAL)).astype(np.int8)
        # A cut partial inner block decides nothing unless a full and an empty one (or a
        # partial one wholly inside) already make the block partial.
        open_ = np.flatnonzero(partial_cut & ~partial_inside & ~(full & empty))
        if open_.size:
            out[open_] = self._cell_states(operand, inner.n, a0[open_], a1[open_], b0[open_], b1[open_])
        return out.reshape(shape)

    def _cell_states(self, operand, cells: int, a0, a1, b0, b1):
        """States from the operand's pairs on every cell a0..a1 × b0..b1 (inclusive), vectorized
        in chunks of about _CELL_PAIRS pairs."""
        out = np.empty(a0.shape, dtype=np.int8)
        span_q, span_k = int((a1 - a0).max()) + 1, int((b1 - b0).max()) + 1
        step = max(1, _CELL_PAIRS // (span_q * span_k))
        for start in range(0, a0.size, step):
            part = slice(start, start + step)
            i = a0[part, None, None] + np.arange(span_q)[None, :, None]
            j = b0[part, None, None] + np.arange(span_k)[None, None, :]
            i, j = np.broadcast_arrays(i, j)
            valid = (i <= a1[part, None, None]) & (j <= b1[part, None, None])
            held = np.zeros(valid.shape, dtype=bool)
            held[valid] = operand.pairs(i[valid], j[valid], cells)
            some, every = held.any(axis=(1, 2)), (held | ~valid).all(axis=(1, 2))
            out[part] = np.where(every, FULL, np.where(some, PARTIAL, EMPTY))
        return out

    def covered_candidates(self, operand, inner: "BlockGrid", size: int):
        """Sorted codes of the kernel blocks that the operand's non-empty inner blocks meet (a
        superset of the non-empty blocks of `blocks(size) { operand }`); None when the operand
        may touch any inner block."""
        codes = operand.block_candidates(inner)
        if codes is None:
            return None
        iq, ik = inner.decode(codes)
        keep = operand.block_states(inner, iq, ik) != EMPTY if iq.size else np.zeros(0, dtype=bool)
        iq, ik = iq[keep], ik[keep]
        if iq.size == 0:
            return np.zeros(0, dtype=np.int64)
        (p0, p1), (q0, q1) = inner.rows(iq), inner.cols(ik)  # cells, inclusive
        first_q = p0 * size // self.block_q
        last_q = np.minimum((p1 + 1) * size, self.n) - 1
        last_q //= self.block_q
        span = int((last_q - first_q).max()) + 1
        qb = first_q[:, None] + np.arange(span)[None, :]
        valid = qb <= last_q[:, None]
        owner = np.broadcast_to(np.arange(iq.size)[:, None], valid.shape)[valid]
        return self.key_block_range(qb[valid], q0[owner] * size, (q1[owner] + 1) * size - 1)

    def evaluate_blocks(self, node, qb, kb):
        """States by evaluating the node's predicate on each block (BQ × BK pairs each):
        the fallback of primitives without a closed form, and of ambiguous combinations."""
        dtype = index_dtype(self.n)
        out = np.empty(qb.shape, dtype=np.int8)
        (r0, r1), (c0, c1) = self.rows(qb), self.cols(kb)
        for t in range(qb.size):
            i = np.arange(r0[t], r1[t] + 1, dtype=dtype).reshape(-1, 1)
            j = np.arange(c0[t], c1[t] + 1, dtype=dtype).reshape(1, -1)
            mask = node.predicate(i, j, self.n)
            out[t] = FULL if mask.all() else PARTIAL if mask.any() else EMPTY
        return out


_CELL_PAIRS = 1 << 22  # cell pairs evaluated at once by BlockGrid._cell_states


# Building a layout holds, per listed block, its code, query and key block, state and the
# CSR lists sorted from them (int64 while built); per row of blocks, the pointers.
_BYTES_PER_LISTED_BLOCK = 64
_BYTES_PER_BLOCK_ROW = 64
_BYTES_PER_QUERY = 32  # the exact connection count's per-row degrees


def layout_memory(pattern, n: int, block_q: int, block_k: int, budget: "int | None" = None) -> int:
    """About the peak bytes `block_layout` needs (its listed blocks, block rows and the per-row
    degrees it counts connections with), from the same estimate that plans the layout: the
    callers refuse a layout over the memory budget before building it. With ``budget``, for a
    pattern holding a node whose estimate walks every block row or column (a grid's boxes,
    summary's key blocks: 64 GiB at n = 2^40): when the block rows and per-row degrees alone
    pass it, those (an AtLeast: a lower bound), without that estimate."""
    grid = BlockGrid(n, block_q, block_k)
    rows = (grid.num_q + grid.num_k) * _BYTES_PER_BLOCK_ROW + n * _BYTES_PER_QUERY + inversion_memory(pattern, n)
    if budget is not None and rows > budget and holds(pattern, lambda node: node.estimate_walks_blocks):
        return AtLeast(rows)
    _plan(pattern, grid)
    return pattern.block_estimate(grid) * _BYTES_PER_LISTED_BLOCK + rows


def holds(pattern, kind) -> bool:
    """Whether some node of ``pattern`` is a ``kind`` (a class, or a test of the node)."""
    test = kind if callable(kind) and not isinstance(kind, type) else (lambda node: isinstance(node, kind))
    stack, seen = [pattern], set()
    while stack:
        node = stack.pop()
        if test(node):
            return True
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.children())
    return False


def inversion_memory(pattern, n: int) -> int:
    """About the peak bytes of inverting the keys of every transpose(random) in ``pattern``
    (its keys per row are the operand's queries per column: all n rows drawn and sorted
    once), 0 when it has none: whatever reads such a pattern's rows pays it first."""
    return max((node.inversion_bytes(n) for node in _point_nodes(pattern) if hasattr(node, "inversion_bytes")),
               default=0)


def block_layout(pattern, n: int, block_q: int = DEFAULT_BLOCK_SIZE, block_k: int | None = None, *,
                 q_offset: int = 0, q_len: "int | None" = None) -> BlockLayout:
    """The block layout of ``pattern`` for blocks of block_q queries × block_k keys.

    The candidate blocks come from the primitives' own structure (the sparsest part
    of an intersection lists them, the others only classify them), so the work is
    proportional to the blocks the pattern touches times the size of the pattern.

    With ``q_offset`` / ``q_len``: the layout of the rows q_offset … q_offset + q_len − 1 only
    (q_len defaults to n − q_offset), the pattern at n; its query block qb holds the rows
    q_offset + qb·block_q …, its key blocks are the usual ones (`rows_layout`)."""
    block_k = block_k or block_q
    for name, size in (("block_q", block_q), ("block_k", block_k)):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"{name} must be a positive integer, got {size!r}")
    if not (q_offset == 0 and q_len in (None, n)) or isinstance(q_offset, bool):
        from .inputs import query_window_problem

        m = q_len if q_len is not None else (n - q_offset if isinstance(q_offset, (int, np.integer)) else 0)
        problem = query_window_problem(m, n, q_offset, keys="n")
        if problem:
            from .errors import SpatError

            raise SpatError(Diagnostic(problem[0], help=problem[1]))
        return rows_layout(pattern, n, int(block_q), int(block_k), int(q_offset), int(m))
    key = (id(pattern), n, int(block_q), int(block_k))
    shared = _live_layout(pattern, key)
    if shared is not None:
        return shared
    grid = _planned(pattern, n, int(block_q), int(block_k)) or BlockGrid(n, int(block_q), int(block_k))
    codes = pattern.block_candidates(grid)
    if codes is None:
        codes = grid.all_codes()
    # States a chunk of candidates at a time: the temporaries of the nodes' closed forms are
    # per candidate, and a pattern's candidates can be many times its blocks (phi3 at 2^20:
    # 33 million candidates, half of them cut by causal).
    kept_q, kept_k, kept_states = [], [], []
    ordered = bool(np.all(codes[1:] > codes[:-1]))  # sorted distinct codes: the blocks come out row-major
    for start in range(0, codes.size, _STATED_AT_ONCE):
        part = codes[start:start + _STATED_AT_ONCE]
        qb, kb = grid.decode(part)
        states = pattern.block_states(grid, qb, kb)
        keep = np.flatnonzero(states)  # not EMPTY
        if keep.size < states.size:  # (exact candidates, as phi3's, keep every block)
            qb, kb, states = qb.take(keep), kb.take(keep), states.take(keep)
        kept_q.append(qb)
        kept_k.append(kb)
        kept_states.append(states)
    del codes
    empty = np.zeros(0, dtype=np.int64)
    qb, kb = (x[0] if len(x) == 1 else np.concatenate(x) if x else empty for x in (kept_q, kept_k))
    states = (kept_states[0] if len(kept_states) == 1 else np.concatenate(kept_states) if kept_states
              else np.zeros(0, dtype=np.int8))
    del kept_q, kept_k, kept_states

    if not (states == PARTIAL).any():  # whole blocks: the connections are their pairs
        count_connections = int(grid.area(qb, kb).sum())
    elif _point_nodes(pattern) == [pattern]:  # random alone: its blocks' counts, already drawn
        count_connections = (lambda: int(pattern.block_counts(grid, qb, kb).sum()))
    else:  # (the blocks again from the layout's lists: the count must not keep these arrays alive)
        count_connections = (lambda: _connections(pattern, n, *built().blocks()[:2], built()))
    layout = BlockLayout.from_blocks(n, grid.block_q, grid.block_k, qb, kb, states, count_connections,
                                     ordered=ordered)
    built = weakref.ref(layout)
    _share_layout(pattern, key, layout)
    return layout


_COUNTED_AT_ONCE = 1 << 20  # blocks whose closed-form pair counts _connections asks at once
_EVALUATED_PAIRS = 1 << 22  # pairs of the blocks without one that _connections evaluates at most
_EVALUATED_BLOCKS = 1 << 12  # and blocks (one predicate call each)


def _connections(pattern, n: int, qb: np.ndarray, kb: np.ndarray, layout: BlockLayout) -> int:
    """The exact number of connected pairs of a layout's blocks (qb, kb): from the blocks'
    closed-form pair counts (`block_counts`) when the pattern has them for all but a few blocks,
    those few evaluated pair by pair; else from every row's degree (O(n)). longformer_dilated at
    2^26: 2.6 million blocks, three of them not decided by one part alone, where the rows'
    degrees took 8–25 s."""
    grid = BlockGrid(n, layout.block_q, layout.block_k)
    if qb.size <= n:  # (more blocks than rows: the rows are the cheaper count)
        total, open_q, open_k = 0, [], []
        for start in range(0, qb.size, _COUNTED_AT_ONCE):
            q, k = qb[start:start + _COUNTED_AT_ONCE], kb[start:start + _COUNTED_AT_ONCE]
            counts = grid.exact_counts(pattern, q, k)
            unknown = np.flatnonzero(counts < 0)
            total += int(counts.sum()) + unknown.size  # (each unknown one counted as −1)
            open_q.append(q.take(unknown))
            open_k.append(k.take(unknown))
        open_q, open_k = (np.concatenate(x) if x else np.zeros(0, dtype=np.int64) for x in (open_q, open_k))
        if open_q.size <= _EVALUATED_BLOCKS and int(grid.area(open_q, open_k).sum()) <= _EVALUATED_PAIRS:
            (r0, r1), (c0, c1) = grid.rows(open_q), grid.cols(open_k)
            dtype = index_dtype(n)
            for t in range(open_q.size):
                i = np.arange(r0[t], r1[t] + 1, dtype=dtype).reshape(-1, 1)
                j = np.arange(c0[t], c1[t] + 1, dtype=dtype).reshape(1, -1)
                total += int(np.count_nonzero(pattern.predicate(i, j, n)))
            return total
    return int(row_degrees(pattern, n).sum())


# The grid that layout_memory last estimated on, handed to the block_layout that follows it
# (Compiled.layouts asks the estimate, then the layout): its memo holds what the estimate
# computed on the way — a grid's candidate blocks are its estimate — so the layout does not
# compute it again. One slot, for one pattern object, taken by the first block_layout of it.
_PLANNED: list = [None]


def _plan(pattern, grid: BlockGrid) -> None:
    try:
        _PLANNED[0] = (weakref.ref(pattern), grid)
    except TypeError:  # a node without weak references gets no hand-off
        _PLANNED[0] = None


def _planned(pattern, n: int, block_q: int, block_k: int) -> "BlockGrid | None":
    entry, _PLANNED[0] = _PLANNED[0], None
    if entry is None or entry[0]() is not pattern:
        return None
    grid = entry[1]
    return grid if (grid.n, grid.block_q, grid.block_k) == (n, block_q, block_k) else None


# The layouts built and still alive, by pattern *object* and blocks: heads and layers that
# share a pattern (one object in a compile) get one layout, built once, while it is in use;
# an equal pattern of another compile builds its own. Weak references only: nothing is kept.
_LIVE_LAYOUTS: dict = {}


def _live_layout(pattern, key) -> "BlockLayout | None":
    entry = _LIVE_LAYOUTS.get(key)
    if entry is None:
        return None
    owner, layout = entry[0](), entry[1]()
    return layout if owner is pattern else None  # (an id is reused once its object is gone)


def _share_layout(pattern, key, layout: BlockLayout) -> None:
    def forget(ref):  # the layout is gone: drop its entry, unless a newer one took the key
        if _LIVE_LAYOUTS.get(key, (None, None))[1] is ref:
            del _LIVE_LAYOUTS[key]

    try:
        _LIVE_LAYOUTS[key] = (weakref.ref(pattern), weakref.ref(layout, forget))
    except TypeError:  # a node without weak references is not shared
        pass


_STATED_AT_ONCE = 1 << 22  # candidate blocks whose states block_layout asks at once
_ROW_ELEMENTS = 1 << 21  # pairs evaluated at once by rows_layout


def rows_layout(pattern, n: int, block_q: int, block_k: int, q_offset: int, q_len: int) -> BlockLayout:
    """The layout of the rows q_offset … q_offset + q_len − 1 of ``pattern`` at n (see block_layout).

    It evaluates those rows' pairs — q_len × n of them, a few query blocks at a time — and
    reduces them to blocks: O(q_len · n) time and O(block_q · n) memory, never the n / block_q
    block rows of the whole layout (decoding one token at n = 65,536 evaluates 65,536 pairs)."""
    dtype = index_dtype(n)
    num_k = -(-n // block_k)
    padded_k = num_k * block_k
    per_step = max(1, _ROW_ELEMENTS // max(padded_k * block_q, 1))
    qbs, kbs, all_states, connections = [], [], [], 0
    num_q = -(-q_len // block_q)
    j = np.arange(n, dtype=dtype)[None, :]
    for first in range(0, num_q, per_step):
        last = min(num_q, first + per_step)
        r0, r1 = first * block_q, min(q_len, last * block_q)
        i = (q_offset + np.arange(r0, r1, dtype=np.int64)).astype(dtype)[:, None]
        mask = np.asarray(pattern.predicate(i, j, n), dtype=bool)
        connections += int(np.count_nonzero(mask))
        if padded_k != n:
            mask = np.concatenate([mask, np.zeros((r1 - r0, padded_k - n), dtype=bool)], axis=1)
        per_row = mask.reshape(r1 - r0, num_k, block_k).sum(axis=2, dtype=np.int64)
        counts = np.add.reduceat(per_row, np.arange(0, r1 - r0, block_q), axis=0)
        rows = np.minimum(q_len - np.arange(first, last) * block_q, block_q)[:, None]
        cols = np.minimum(n - np.arange(num_k) * block_k, block_k)[None, :]
        states = np.where(counts == 0, EMPTY, np.where(counts == rows * cols, FULL, PARTIAL))
        qb, kb = np.nonzero(states)
        qbs.append(qb + first)
        kbs.append(kb)
        all_states.append(states[qb, kb])
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    return BlockLayout.from_blocks(n, block_q, block_k, cat(qbs), cat(kbs), cat(all_states), connections,
                                   q_offset=q_offset, q_len=q_len)


# ---- block efficiency ------------------------------------------------------------------

LOW_EFFICIENCY = 0.25  # below this, a block-sparse kernel wastes most of its work
MIN_GRID_FOR_WARNINGS = 4  # blocks per side
CANDIDATE_BLOCK_SIZES = (16, 32, 64, 128, 256)
_MAX_TRIAL_BLOCKS = 1 << 22  # a trial layout for a suggestion lists at most about this many blocks


_MAX_TRIAL_POINTS = 1 << 21  # a trial draws at most about this many keys of point-backed parts
_MIN_SAMPLED_STRIPS = 16


@dataclass(frozen=True)
class TrialEstimate:
    """The efficiency and block count of a trial block size, estimated from ``strips``
    evenly spaced query-block rows out of ``of`` (exact when strips == of)."""

    block_q: int
    block_k: int
    blocks: int
    computed: int
    connections: int
    strips: int
    of: int

    @property
    def exact(self) -> bool:
        return self.strips == self.of

    @property
    def num_blocks(self) -> int:
        return self.blocks

    def efficiency(self) -> float:
        return self.connections / self.computed if self.computed else 1.0


def _point_nodes(pattern) -> list:
    """The point-backed nodes (random, transpose(random)) in ``pattern``, each once."""
    found, stack, seen = [], [pattern], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if getattr(node, "point_backed", False):
            found.append(node)
        stack.extend(node.children())
    return found


def estimate_trial(pattern, n: int, size: int, connections: int) -> TrialEstimate:
    """The block layout at ``size`` × ``size`` estimated without building it: the exact
    non-empty blocks of evenly spaced query-block rows (from those rows' keys as intervals,
    else by stating every key block of each), the point-backed parts (random) drawing only
    those rows' keys, scaled to the whole grid. The work is about _MAX_TRIAL_POINTS keys and
    a few rows of blocks, whatever n is."""
    grid = BlockGrid(n, size, size)
    points = _point_nodes(pattern)
    # a row's work: its keys, and for random(…, avoid=P) the row of P it draws around
    per_row = sum(node.row_point_count(n) + (n if getattr(node, "avoid", None) is not None else 0)
                  for node in points)
    strips = _MAX_TRIAL_POINTS // max(1, per_row * size)
    strips = min(strips, (1 << 20) // max(1, grid.num_k))
    strips = min(grid.num_q, max(_MIN_SAMPLED_STRIPS, strips))
    qs = np.unique(np.linspace(0, grid.num_q - 1, strips).round().astype(np.int64))
    r0, r1 = grid.rows(qs)
    rows = np.concatenate([np.arange(a, b + 1, dtype=np.int64) for a, b in zip(r0, r1)])
    scale = n / rows.size  # the sampled strips are whole query-block rows: scale by the rows they stand for
    # the intervals hold at least the point-backed parts' keys: past the bound, state the blocks
    touched = _strips_touched(pattern, grid, r0, r1, rows) if per_row * rows.size <= _MAX_TRIAL_INTERVALS else None
    if touched is None:
        touched = _strips_touched_by_states(pattern, grid, qs, rows, points)
    blocks, area = touched
    return TrialEstimate(size, size, int(round(blocks * grid.num_q / qs.size)), int(round(area * scale)),
                         connections, int(qs.size), grid.num_q)


_MAX_TRIAL_INTERVALS = 1 << 21  # the sampled rows' keys are read as intervals up to about this many


def _strips_touched(pattern, grid: BlockGrid, r0, r1, rows) -> "tuple[int, int] | None":
    """(non-empty blocks, their pairs) of the query-block rows r0..r1 (inclusive, per strip;
    ``rows`` all their rows), from the rows' keys as intervals (analysis/rowsets.py): a block
    is non-empty exactly when some row of its strip has a key in its columns. O(intervals),
    where stating every key block of a strip is O(n / block_k) per strip (window(2) at 2^26,
    block 16: 4 million blocks a strip). None when the rows hold too many intervals."""
    from .analysis.rowsets import TooManyIntervals, row_keys

    try:
        keys = row_keys(pattern, rows, grid.n, limit=_MAX_TRIAL_INTERVALS)
    except TooManyIntervals:
        return None
    if keys.lo.size == 0:
        return 0, 0
    heights = r1 - r0 + 1
    strip = np.repeat(np.arange(heights.size, dtype=np.int64), heights)[keys.own]
    # each interval as the key blocks it meets, offset per strip so one sorted sweep merges them
    offset = strip * (grid.num_k + 1)
    first, last = keys.lo // grid.block_k + offset, (keys.hi - 1) // grid.block_k + offset
    order = np.argsort(first, kind="stable")
    first, last = first[order], np.maximum.accumulate(last[order])
    starts = np.ones(first.size, dtype=bool)
    starts[1:] = first[1:] > last[:-1] + 1
    begin = np.flatnonzero(starts)
    lo_block, hi_block = first[begin], last[np.append(begin[1:], first.size) - 1]
    owner = lo_block // (grid.num_k + 1)
    lo_block, hi_block = lo_block - owner * (grid.num_k + 1), hi_block - owner * (grid.num_k + 1)
    columns = np.minimum((hi_block + 1) * grid.block_k, grid.n) - lo_block * grid.block_k
    return int((hi_block - lo_block + 1).sum()), int((columns * heights[owner]).sum())


def _strips_touched_by_states(pattern, grid: BlockGrid, qs, rows, points) -> "tuple[int, int]":
    """`_strips_touched` by stating every key block of the query-block rows ``qs``."""
    n = grid.n
    for node in points:  # the nodes' block counts, from the sampled rows only
        keys = node.row_points(rows, n)
        owner = np.broadcast_to(rows[:, None], keys.shape)
        held = keys >= 0
        grid.memo[("point blocks", node)] = unique_sorted(
            grid.codes(owner[held] // grid.block_q, keys[held] // grid.block_k), return_counts=True)
    qb = np.repeat(qs, grid.num_k)
    kb = np.tile(np.arange(grid.num_k, dtype=np.int64), qs.size)
    touched = pattern.block_states(grid, qb, kb) != EMPTY
    return int(touched.sum()), int(grid.area(qb[touched], kb[touched]).sum())


def _trial_is_large(pattern, n: int, size: int) -> bool:
    points = _point_nodes(pattern)
    per_row = sum(node.row_point_count(n) for node in points)
    return n * per_row > _MAX_TRIAL_POINTS or pattern.block_estimate(BlockGrid(n, size, size)) > _MAX_TRIAL_BLOCKS


def suggest_block_size(pattern, n: int, current: BlockLayout):
    """(block size, its layout or TrialEstimate) of the square block size from
    CANDIDATE_BLOCK_SIZES with the best efficiency (the larger on ties), or None when none
    beats ``current``. A trial that would be large (point-backed parts drawing more than
    _MAX_TRIAL_POINTS keys, or more than _MAX_TRIAL_BLOCKS blocks) is estimated from a
    sample of query-block rows (`estimate_trial`) instead of built."""
    best = None
    for size in CANDIDATE_BLOCK_SIZES:
        if (size, size) == (current.block_q, current.block_k):
            continue
        if _trial_is_large(pattern, n, size):
            trial = estimate_trial(pattern, n, size, current.connections)
        else:
            trial = block_layout(pattern, n, size, size)
            trial._connections = current.connections  # the same pattern: count once
        if trial.efficiency() > current.efficiency() and (best is None or trial.efficiency() >= best[1].efficiency()):
            best = (size, trial)
    return best


def efficiency_warning(pattern, layout: BlockLayout) -> "Diagnostic | None":
    """A warning Diagnostic (message, help) when the layout's block efficiency is below
    LOW_EFFICIENCY."""
    if min(layout.num_q_blocks, layout.num_k_blocks) < MIN_GRID_FOR_WARNINGS:
        return None  # so few blocks that every kernel is dense: nothing to tune
    efficiency = layout.efficiency()
    if layout.num_blocks == 0 or efficiency >= LOW_EFFICIENCY:
        return None
    computed = layout.computed_pairs()
    message = (f"block efficiency {efficiency:.1%} with {layout.block_q} × {layout.block_k} blocks: a "
               f"block-sparse kernel computes {computed:,} pairs for {layout.connections:,} connections "
               f"({computed / max(layout.connections, 1):.0f}× the work); the blocks are "
               f"{1 - layout.sparsity():.0%} of the grid")
    suggestion = suggest_block_size(pattern, layout.n, layout)
    if suggestion is not None and suggestion[1].efficiency() >= 2 * efficiency:
        size, trial = suggestion
        about = "" if getattr(trial, "exact", True) else "about "
        help = (f"block {size} gives {about}{trial.efficiency():.1%} ({about}{trial.num_blocks:,} blocks); "
                f"set it with `block {size}` in the file or block_size={size}")
    else:
        about = "" if suggestion is None or getattr(suggestion[1], "exact", True) else "about "
        best = f" (the best, block {suggestion[0]}, gives {about}{suggestion[1].efficiency():.1%})" if suggestion else ""
        if layout.sparsity() < 0.5:
            why = ("the connections are spread over most blocks (a stride, summary or random part does "
                   "that), so a dense kernel may be as fast")
        else:
            why = "the blocks it touches hold only a few connections each, at any block size"
        help = "no block size from 16 to 256 does much better" + best + ": " + why
    return warning(message, help)


def describe_layouts(compiled, block_size=None, grid: bool = False) -> "tuple[str, list[Diagnostic]]":
    """The text `patterndsl layout` prints, and the efficiency warnings (Diagnostics)."""
    from .errors import require_compiled

    require_compiled(compiled, "describe_layouts()")
    lines, warnings, seen = [], [], {}
    for layer in range(compiled.layers):
        layouts = compiled.layouts(layer, block_size)
        for head, layout in enumerate(layouts):
            where = f"layer {layer}" + (f", head {head}" if compiled.heads > 1 else "")
            if id(layout) in seen:
                lines.append(f"{where}: the same layout as {seen[id(layout)]}")
                continue
            seen[id(layout)] = where
            lines.append(f"{where}: {layout.summary()}")
            if grid:
                lines.extend(str(layout).splitlines()[1:])
            found = efficiency_warning(compiled.pattern(layer, head), layout)
            if found:
                warnings.append(dataclasses.replace(found, message=f"{where}: {found.message}"))
    return "\n".join(lines), warnings
