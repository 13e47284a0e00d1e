"""Cross-attention: a file with `queries M` is a pattern over m queries × n keys.

The language side lives in the resolver (patterndsl/resolve.py): `queries M` binds the
name `m` (M may be `m` itself: then m is given when compiling, `compile(src, n, m=77)`,
`--m 77`), refuses what only means something on a square (`transpose`, `grid { }`, the
segment primitives) and builds every primitive for size = max(m, n). The m × n pattern
is the top-left corner of that size × size square pattern, so each primitive keeps its
meaning by absolute index — `causal` is j ≤ i, `window(w)` is |i − j| ≤ w, `rows(R)` is
i ∈ R — and `intervals(q, k)` (⌊i/q⌋ = ⌊j/k⌋) pairs the query interval t with the key
interval t (Flamingo's text chunk t attending to image t).

Everything below this module reuses the square machinery through that embedding: the
*square* of a cross file (`square(compiled)`) is the same file at size × size with each
pattern intersected with rows(0..m) & cols(0..n), so that the rows beyond m and the keys
beyond n are empty. Its layouts, counts, native / FlexAttention / Triton paths are the
square ones; attention pads k, v (and a key bias) to the size when m > n — the padded
keys are never connected — and reads q as rows 0 … m − 1 (q_offset: rows of the m).
The dense reference (`dense`) evaluates the corner directly, and is the specification.
"""
from __future__ import annotations

import copy

import numpy as np

from .errors import Diagnostic, SpatError
from .ir import IndexSet, Intersection, Pattern
from .passes import simplify
from .primitives import Cols, Rows
from .reference import check_budget, index_dtype

_ROW_ELEMENTS = 1 << 20  # pairs the dense reference evaluates at once


# ---- the dense reference ---------------------------------------------------------------


def _rows(pattern: Pattern, size: int, n: int, start: int, stop: int) -> np.ndarray:
    dtype = index_dtype(size)
    i = np.arange(start, stop, dtype=np.int64).astype(dtype).reshape(-1, 1)
    j = np.arange(n, dtype=dtype).reshape(1, -1)
    return np.asarray(pattern.predicate(i, j, size), dtype=bool)


def _corner(pattern: Pattern, size: int, n: int, start: int, stop: int, out: np.ndarray) -> np.ndarray:
    step = max(1, _ROW_ELEMENTS // max(n, 1))
    for lo in range(start, stop, step):
        hi = min(stop, lo + step)
        out[lo - start:hi - start] = _rows(pattern, size, n, lo, hi)
    return out


def fill_dense(compiled, pattern: Pattern, out: np.ndarray) -> np.ndarray:
    """``out``, bool [m, n], filled: query i (0 ≤ i < m) attends to key j (0 ≤ j < n)
    (CompiledPattern.dense_all fills each distinct pattern of a cross file with it)."""
    return _corner(pattern, compiled.size, compiled.n, 0, compiled.m, out)


def dense(compiled, layer: int = 0, head: int = 0) -> np.ndarray:
    """bool [m, n]: query i (0 ≤ i < m) attends to key j (0 ≤ j < n)."""
    pattern = compiled.pattern(layer, head)
    check_budget((compiled.m, compiled.n), compiled.memory_budget)
    return fill_dense(compiled, pattern, np.empty((compiled.m, compiled.n), dtype=bool))


def mask(compiled, layer: int = 0, head: int = 0, q_offset: int = 0, q_len=None):
    """torch.BoolTensor [m, n] (or the rows q_offset … q_offset + q_len − 1 of it)."""
    import torch

    q_offset, q_len = compiled.query_rows(q_offset, q_len)
    check_budget((q_len, compiled.n), compiled.memory_budget)
    out = np.empty((q_len, compiled.n), dtype=bool)
    _corner(compiled.pattern(layer, head), compiled.size, compiled.n, q_offset, q_offset + q_len, out)
    return torch.from_numpy(out)


# ---- the square it is the corner of ------------------------------------------------------


def embedded(pattern: Pattern, m: int, n: int, size: int) -> Pattern:
    """``pattern`` & rows(0..m) & cols(0..n) at size: the cross pattern as a square one
    (simplified: at m = size or n = size the cut on that side goes away)."""
    cut = Intersection((pattern, Rows(IndexSet.of([(0, m)], size)), Cols(IndexSet.of([(0, n)], size))))
    return simplify(cut, size)


def square(compiled):
    """The square CompiledPattern (size × size) whose top-left m × n corner is ``compiled``;
    cached on it. Its rows beyond m and keys beyond n have no connection."""
    found = compiled.__dict__.get("_square")
    if found is not None:
        return found
    found = copy.copy(compiled)
    found.__dict__ = {key: value for key, value in compiled.__dict__.items() if not key.startswith("_")}
    once: dict = {}
    for pattern in {p for layer in compiled.patterns for p in layer}:
        once[pattern] = embedded(pattern, compiled.m, compiled.n, compiled.size)
    found.patterns = tuple(tuple(once[p] for p in layer) for layer in compiled.patterns)
    found.raw_patterns = found.patterns
    found.cross, found.n, found.m = False, compiled.size, compiled.size
    found._lengths = _NoOtherLengths(found)
    compiled.__dict__["_square"] = found
    return found


class _NoOtherLengths:
    """The square of a cross file serves its own size only (at() of it is itself)."""

    def __init__(self, compiled):
        self.compiled, self.compiles = compiled, 0

    def get(self, n):
        if n == self.compiled.n:
            return self.compiled
        raise SpatError(Diagnostic(f"the square of a cross file is compiled for size {self.compiled.n} only, "
                                   f"not {n}", help="call compiled.at(n) on the cross file itself"))

    def put(self, n, compiled):
        return self.get(n)


# ---- block layouts ---------------------------------------------------------------------


def layout(pattern: Pattern, m: int, n: int, size: int, block_q: int, block_k: int):
    """The block layout of the m × n pattern: ⌈m/BQ⌉ query blocks × ⌈n/BK⌉ key blocks
    (layout.BlockLayout with q_len = m), each block exactly empty, partial or full over its
    pairs inside the rectangle.

    It is the square's layout (`layout.block_layout` of the embedded pattern at the size:
    time proportional to the blocks touched), whose blocks all lie inside the rectangle;
    only a block that the rectangle's ragged edge (m or n not a multiple of the block, and
    short of the size) cuts can be full here and partial there: those blocks, at most
    ⌈m/BQ⌉ + ⌈n/BK⌉, are evaluated over their pairs."""
    from .layout import FULL, PARTIAL, BlockLayout, block_layout

    whole = block_layout(embedded(pattern, m, n, size), size, block_q, block_k)
    qb, kb, states = whole.blocks()
    num_q, num_k = -(-m // block_q), -(-n // block_k)
    assert not ((qb >= num_q) | (kb >= num_k)).any()  # the cut leaves nothing beyond m rows, n keys
    edge = (((qb == num_q - 1) & (m % block_q != 0) & (m < size))
            | ((kb == num_k - 1) & (n % block_k != 0) & (n < size)))
    dtype = index_dtype(size)
    for at in np.flatnonzero(edge & (states == PARTIAL)):
        r0, c0 = int(qb[at]) * block_q, int(kb[at]) * block_k
        i = np.arange(r0, min(m, r0 + block_q), dtype=np.int64).astype(dtype)[:, None]
        j = np.arange(c0, min(n, c0 + block_k), dtype=np.int64).astype(dtype)[None, :]
        if np.asarray(pattern.predicate(i, j, size), dtype=bool).all():
            states[at] = FULL
    return BlockLayout.from_blocks(n, block_q, block_k, qb, kb, states, whole.connections, q_offset=0, q_len=m)


def budgeted_layout(compiled, pattern: Pattern, block_q: int, block_k: int):
    """The m × n block layout of one of the file's patterns, refused before it is built
    when it would exceed the memory budget (CompiledPattern.layouts caches it per head)."""
    from .layout import layout_memory
    from .reference import memory_budget, require_memory

    require_memory(f"the block layout at m = {compiled.m:,}, n = {compiled.n:,} in blocks of "
                   f"{block_q} × {block_k}",
                   layout_memory(embedded(pattern, compiled.m, compiled.n, compiled.size), compiled.size,
                                 block_q, block_k, memory_budget(compiled.memory_budget)),
                   compiled.memory_budget, "use larger blocks (--block-size, block_size=) or smaller m, n")
    return layout(pattern, compiled.m, compiled.n, compiled.size, block_q, block_k)


def block_mask(compiled, layer: int = 0, block_size=None, device="cpu"):
    """A FlexAttention BlockMask [1, H, …] with Q_LEN = m and KV_LEN = n, from the m × n
    layouts, with the pattern's mask_mod (generated at the size)."""
    from .targets.flex import layout_lists, make_block_mask, mask_mod, usable_device

    block_q, block_k = compiled.block_sizes(block_size)
    layer, _ = compiled.index(layer, 0)
    device = usable_device(device)
    distinct: dict = {}
    for pattern, found in zip(compiled.patterns[layer], compiled.layouts(layer, (block_q, block_k))):
        if pattern not in distinct:
            distinct[pattern] = layout_lists(found, device)
    head_lists = ([distinct[p] for p in compiled.patterns[layer]] if len(distinct) > 1
                  else list(distinct.values()))
    return make_block_mask(compiled.n, block_q, block_k, head_lists,
                           mask_mod(square(compiled), layer, (block_q, block_k), device), q_len=compiled.m)


# ---- attention ---------------------------------------------------------------------------


def to_square(q, k, v, compiled, scale=None, key_bias=None, q_offset: int = 0, segments=None):
    """(k, v, the square, key_bias) for attention of a cross file: q [B, H, m, D] (or rows
    q_offset … of the m queries), k, v [B, Hkv, n, D]. The square of the file (`square`)
    then runs q at q_offset against k, v and a key bias padded to the size with keys that
    are never connected (patterndsl.attention calls this)."""
    import torch
    import torch.nn.functional as F

    from .inputs import check_qkv, for_keys

    if segments is not None:
        raise SpatError(Diagnostic("a cross file takes no segments=: segment ids belong to one sequence",
                                   help="drop segments=, or drop `queries` for an n × n pattern"))
    compiled = for_keys(compiled, k)
    check_qkv(q, k, v, compiled, scale, dtypes=("float16", "bfloat16", "float32", "float64"),
              value_dim_may_differ=True, q_offset=q_offset)
    sq, n = square(compiled), compiled.n
    extra = sq.n - n
    if extra:
        k, v = F.pad(k, (0, 0, 0, extra)), F.pad(v, (0, 0, 0, extra))
        if key_bias is not None:
            key_bias = torch.as_tensor(key_bias)
            if key_bias.dim() >= 1 and key_bias.shape[-1] == n:
                key_bias = F.pad(key_bias, (0, extra))
    return k, v, sq, key_bias
