"""The element predicate as source code, for generated torch and Triton code.

`predicate_source(pattern, q, k, n, backend)` returns one Python expression over
two integer tensors named ``q`` (query indices) and ``k`` (key indices), which
broadcast against each other. Each primitive writes its own part
(`Primitive.source` in patterndsl/primitives.py); the combinators join the parts
with ``|``, ``&`` and ``~`` (their `source`, patterndsl/ir.py).

The expression uses only what torch tensors and Triton ``tl`` tensors both
support with the same meaning: integer ``+ - *``, comparisons, ``&``, ``|``,
``~`` on booleans, and ``//`` and ``%`` on non-negative operands only — or where
only "remainder is zero" matters, which truncated and floor division agree on.
Distance parameters are clamped to [-n, n] so every value fits in int32.

Parts that no short expression describes (``random``, index lists of many
ranges) are *data-backed*: the backend supplies a table and a lookup expression.
`BlockBitmaps` is the table both backends use for ``random``: one packed bitmap
per block the primitive touches, found through a [query blocks × key blocks]
slot grid, so its size follows the blocks touched rather than n².
"""
from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass

import numpy as np

from .ir import IndexSet, Pattern

MAX_INLINE_INTERVALS = 8  # an index list of more ranges becomes a lookup table


class Backend:
    """Hooks for the data-backed parts; subclasses register tables in ``self.tables``.

    ``tables`` maps a generated name to a numpy array that the generated code
    receives under that name (a captured tensor, or a kernel pointer argument)."""

    def __init__(self, block_q: int, block_k: int):
        self.block_q, self.block_k = block_q, block_k  # the kernel's blocks, for BlockBitmaps
        self.tables: dict[str, np.ndarray] = {}
        self._names: dict[object, str] = {}

    def table_name(self, key, prefix: str, make) -> str:
        """The name of the table for ``key``, made once by ``make()``."""
        name = self._names.get(key)
        if name is None:
            name = f"{prefix}{len(self._names)}"
            self._names[key] = name
            made = make()
            for suffix, array in (made.items() if isinstance(made, dict) else (("", made),)):
                self.tables[name + suffix] = array
        return name

    def member(self, var: str, indices: IndexSet, n: int) -> str:
        """An expression: ``var`` ∈ indices."""
        intervals = indices.intervals
        if not intervals:
            return f"({var} < 0)"
        if len(intervals) <= MAX_INLINE_INTERVALS:
            parts = [f"({var} == {lo})" if hi == lo + 1 else f"(({var} >= {lo}) & ({var} < {hi}))"
                     for lo, hi in intervals]
            return parts[0] if len(parts) == 1 else "(" + " | ".join(parts) + ")"
        name = self.table_name(("member", indices, n), "member", lambda: indices.mask(n).astype(np.int8))
        return self.lookup_member(name, var)

    def lookup_member(self, name: str, var: str) -> str:
        """An expression reading the int8 [n] table ``name`` at ``var`` as a boolean."""
        raise NotImplementedError

    def bitmaps_table(self, primitive, n: int) -> str:
        """NAME, where tables NAME_slots and NAME_bits hold the primitive's BlockBitmaps for
        this backend's blocks (made once)."""
        def make():
            bitmaps = BlockBitmaps.of(primitive, n, self.block_q, self.block_k)
            return {"_slots": bitmaps.slots, "_bits": bitmaps.bits}

        return self.table_name(("bitmaps", primitive, n), "pairs", make)

    def data(self, primitive, q: str, k: str, n: int) -> str:
        """An expression for a data-backed primitive (random)."""
        raise NotImplementedError(f"this backend has no data-backed form of {primitive.name}")

    # Run-time segments (`segment`, `segment_start`; patterndsl/segments.py). The generated
    # code must define these names before the predicate when ``uses_segments`` is set:
    # seg_q = the query's segment id (segments[b, q_offset + row]), seg_k = the key's
    # (segments[b, key]), segrank_k = the key's rank among the positions carrying its id
    # (segments.ranks; only when ``uses_segment_ranks``).
    SEG_Q, SEG_K, SEGRANK_K = "seg_q", "seg_k", "segrank_k"
    uses_segments = False
    uses_segment_ranks = False

    def segment_ids(self) -> tuple[str, str]:
        """The names of the query's and the key's segment ids in the generated code."""
        self.uses_segments = True
        return self.SEG_Q, self.SEG_K

    def segment_rank(self) -> str:
        """The name of the key's rank within its segment in the generated code."""
        self.uses_segments = self.uses_segment_ranks = True
        return self.SEGRANK_K


def predicate_source(pattern: Pattern, q: str, k: str, n: int, backend: Backend) -> str:
    """The pattern's element predicate as an expression over tensors ``q`` and ``k``."""
    return pattern.source(q, k, n, backend)


@dataclass(eq=False)
class BlockBitmaps:
    """A data-backed primitive's pairs, one packed bitmap per block it touches.

    ``slots`` is int32 [query blocks, key blocks]: 0 where the primitive has no pair
    in the block, else s ≥ 1, the block's bitmap ``bits[s]`` (``bits[0]`` is all
    zeros). ``bits`` is int32 [slots + 1, block_q, words]: key offset c of row r is
    bit c % 32 of word c // 32. The lookup expression:

        (bits[slots[q // BQ, k // BK], q % BQ, (k % BK) // 32] >> ((k % BK) % 32)) & 1
    """

    block_q: int
    block_k: int
    slots: np.ndarray
    bits: np.ndarray

    @staticmethod
    def of(primitive, n: int, block_q: int, block_k: int) -> "BlockBitmaps":
        rows = np.arange(n, dtype=np.int64)
        keys = primitive.row_points(rows, n)  # int64 [n, k], -1 for no key
        row_of = np.broadcast_to(rows[:, None], keys.shape)[keys >= 0]
        keys = keys[keys >= 0]
        num_q, num_k = -(-n // block_q), -(-n // block_k)
        block = row_of // block_q * num_k + keys // block_k
        # Number the touched blocks 1, 2, … in grid order through the (dense) slot grid
        # itself: no sort of the n·r keys.
        touched = np.zeros(num_q * num_k, dtype=bool)
        touched[block] = True
        slots = np.cumsum(touched, dtype=np.int32)
        slots[~touched] = 0
        count = int(touched.sum())
        words = -(-block_k // 32)
        offset = keys % block_k
        word = (slots[block].astype(np.int64) * block_q + row_of % block_q) * words + offset // 32
        # A row's keys are distinct, so its bits in one word are distinct powers of two:
        # their sum is their OR, and a float64 sum of at most 32 of them below 2^32 is exact.
        summed = np.bincount(word, weights=np.ldexp(1.0, offset % 32), minlength=(count + 1) * block_q * words)
        bits = summed.astype(np.uint32).reshape(count + 1, block_q, words)
        return BlockBitmaps(block_q, block_k, slots.reshape(num_q, num_k), bits.view(np.int32))

    def contains(self, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The lookup in numpy (the generated code does the same)."""
        words = self.bits[self.slots[q // self.block_q, k // self.block_k], q % self.block_q,
                          (k % self.block_k) // 32]
        return ((words >> ((k % self.block_k) % 32)) & 1).astype(bool)


def packed_lines(array: np.ndarray, width: int = 88) -> list[str]:
    """The array's bytes, zlib-compressed and base64-encoded, cut into lines of ``width``
    characters, for tables embedded in generated modules. Level 6: level 9 takes 15×
    as long on random bitmaps (9 s for bigbird's at n = 8192) for 8% fewer bytes."""
    data = base64.b64encode(zlib.compress(np.ascontiguousarray(array).tobytes(), 6)).decode("ascii")
    return [data[i:i + width] for i in range(0, len(data), width)] or [""]
