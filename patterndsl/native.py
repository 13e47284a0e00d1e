"""The native path: block-sparse attention in eager torch, forward and backward, for every ρ.

    out = patterndsl.native.native_attention(q, k, v, compiled, layer=0, key_bias=None)

It walks the pattern's block layout (`compiled.layout`, patterndsl/layout.py): each
query block computes only its key blocks, partial blocks with their element mask
(evaluated once, from the IR, and kept: O(blocks) booleans). No torch.compile, no
n × n tensor: memory is the q, k, v tensors, their gradients and one chunk of scores.

Query blocks are grouped by the length of their list, so the blocks of one group are
gathered into one batched matmul without padding: a `global` row that touches every
key block forms its own group and pads nothing else. A group is cut into chunks of at
most SCORE_ELEMENTS scores (a very long list is cut between rows), so the memory
stays bounded whatever the skew. Every query row's keys lie in its block's list, so a
chunk holds whole rows and ρ (patterndsl/probability.py) is applied there exactly.

The forward pass keeps one number per row for sparsemax/entmax — the threshold τ —
and the backward pass recomputes each chunk's scores and weights from it (softmax's
weights are recomputed with the fused torch.softmax, which is faster on CPU than
exp(s − lse) because torch's exp is slow for −∞), then scatters dK, dV and the key bias's
gradient back with index_add. Scores are computed in float32 (float64 for float64
inputs), so fp16 and bf16 inputs work too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import probability
from .layout import PARTIAL
from .inputs import key_bias_for
from .reference import index_dtype
from .targets.torch import checked_reference_inputs

SCORE_ELEMENTS = 1 << 20  # scores in one chunk (4 MiB in float32): bounds the temporaries


@dataclass
class _Group:
    """Query blocks with lists of the same length L: ``query_blocks`` [m], ``key_blocks``
    [m, L] their key blocks, ``blocked`` [m, BQ, L·BK] bool, True where a pair is not
    connected or out of bounds (None when every pair is connected and in bounds)."""

    query_blocks: "torch.Tensor"
    key_blocks: "torch.Tensor"
    blocked: "torch.Tensor | None"
    every_key: bool  # the lists hold every key block (a `global` row): k and v need no gather


def _partial_masks(pattern, n: int, rows: np.ndarray, cols: np.ndarray, row_end: "int | None" = None) -> np.ndarray:
    """Bool [BQ, C]: the element mask of one query block's rows [BQ] at the columns [C] of
    its partial blocks (indices beyond n, or rows from ``row_end`` on, are clamped to
    evaluate, then cleared)."""
    dtype = index_dtype(n)
    row_end = n if row_end is None else row_end
    i, j = np.minimum(rows, n - 1).astype(dtype)[:, None], np.minimum(cols, n - 1).astype(dtype)[None, :]
    return np.asarray(pattern.predicate(i, j, n), dtype=bool) & (rows < row_end)[:, None] & (cols < n)[None, :]


def _groups(layout, pattern) -> list[_Group]:
    """The layout's query blocks grouped by list length, with their keys and masks."""
    n, block_q, block_k = layout.n, layout.block_q, layout.block_k
    # a layout of some rows (q_offset): query block b holds rows q_offset + b·BQ …, cut at q_len
    row0, num_rows = getattr(layout, "q_offset", 0), getattr(layout, "num_rows", n)
    qb, kb, states = layout.blocks()
    order = np.lexsort((kb, qb))
    qb, kb, states = qb[order], kb[order], states[order]
    counts = np.bincount(qb, minlength=layout.num_q_blocks)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    groups = []
    for length in np.unique(counts[counts > 0]):
        blocks = np.flatnonzero(counts == length)
        at = starts[blocks, None] + np.arange(length)  # [m, L blocks]
        key_blocks, partial = kb[at], states[at] == PARTIAL
        rows = blocks[:, None] * block_q + np.arange(block_q)  # [m, BQ]
        cols = key_blocks[:, :, None] * block_k + np.arange(block_k)  # [m, L, BK]
        mask = None
        if partial.any() or rows.max() >= num_rows or cols.max() >= n:
            mask = np.broadcast_to((rows < num_rows)[:, :, None, None] & (cols < n)[:, None, :, :],
                                   (len(blocks), block_q, length, block_k)).copy()
            for r in np.flatnonzero(partial.any(axis=1)):
                slots = np.flatnonzero(partial[r])
                evaluated = _partial_masks(pattern, n, rows[r] + row0, cols[r, slots].reshape(-1),
                                           row0 + num_rows)
                mask[r][:, slots, :] = evaluated.reshape(block_q, len(slots), block_k)
            mask = torch.from_numpy(~mask.reshape(len(blocks), block_q, length * block_k))
        groups.append(_Group(torch.from_numpy(blocks), torch.from_numpy(key_blocks), mask,
                             every_key=length == _padded_length(n, block_q, block_k) // block_k))
    return groups


def plans(compiled, layer: int, block_q: int, block_k: int) -> list[tuple[list[int], list[_Group]]]:
    """(heads, groups) for each distinct layout of one layer (cached on ``compiled``)."""
    cache = compiled.__dict__.setdefault("_native_plans", {})
    key = (layer, block_q, block_k)
    if key not in cache:
        layouts = compiled.layouts(layer, (block_q, block_k))
        by_layout: dict[int, tuple[list[int], list[_Group]]] = {}
        for head, layout in enumerate(layouts):
            if id(layout) not in by_layout:
                by_layout[id(layout)] = ([], _groups(layout, compiled.patterns[layer][head]))
            by_layout[id(layout)][0].append(head)
        cache[key] = list(by_layout.values())
    return cache[key]


MAX_CACHED_ROW_PLANS = 8  # plans of some rows (q_offset) kept per compiled pattern


def row_plans(compiled, layer: int, block_q: int, block_k: int, q_offset: int, q_len: int):
    """plans() for the rows q_offset … q_offset + q_len − 1 only (layout.rows_layout; a bounded cache)."""
    from .layout import block_layout

    cache = compiled.__dict__.setdefault("_native_row_plans", {})
    key = (layer, block_q, block_k, q_offset, q_len)
    if key in cache:
        cache[key] = cache.pop(key)
        return cache[key]
    by_pattern: dict = {}
    for head, pattern in enumerate(compiled.patterns[layer]):
        if pattern not in by_pattern:
            layout = block_layout(pattern, compiled.n, block_q, block_k, q_offset=q_offset, q_len=q_len)
            by_pattern[pattern] = ([], _groups(layout, pattern))
        by_pattern[pattern][0].append(head)
    while len(cache) >= MAX_CACHED_ROW_PLANS:
        del cache[next(iter(cache))]
    cache[key] = list(by_pattern.values())
    return cache[key]


def _chunks(group: _Group, batch_heads: int, block_q: int, block_k: int):
    """(first block, end block, first row, end row) slices of a group holding at most
    SCORE_ELEMENTS scores: several whole blocks, or rows of one block when its list is long."""
    m, length = group.key_blocks.shape
    per_row = batch_heads * length * block_k
    if per_row * block_q <= SCORE_ELEMENTS:
        step = SCORE_ELEMENTS // (per_row * block_q)
        for start in range(0, m, step):
            yield start, min(m, start + step), 0, block_q
    else:
        rows = max(1, SCORE_ELEMENTS // per_row)
        for block in range(m):
            for row in range(0, block_q, rows):
                yield block, block + 1, row, min(block_q, row + rows)


class _Chunk:
    """One chunk's gathered q, k, v blocks (in the compute dtype) and its scores.

    The tensors are viewed as blocks — q as [B, h, query blocks, BQ, D], k and v as
    [B, h, key blocks, BK, D] — so gathering a block list copies whole blocks."""

    def __init__(self, group, piece, blocks, scale, dtype, segment_test=None):
        first, end, self.row0, self.row1 = piece
        self.every_key = group.every_key
        self.query_blocks = group.query_blocks[first:end]
        self.key_blocks = group.key_blocks[first:end].reshape(-1)
        q, k, v, bias = blocks
        batch, heads, _, block_k, dim = k.shape
        block_q = q.shape[3]
        c = end - first
        self.q = q.index_select(2, self.query_blocks)[:, :, :, self.row0:self.row1].to(dtype)
        if group.every_key:  # the lists are 0, 1, …: k and v themselves, shared by the c blocks
            self.k, self.v = (t.to(dtype).view(batch, heads, 1, -1, dim).expand(batch, heads, c, -1, dim)
                              for t in (k, v))
        else:
            self.k = k.index_select(2, self.key_blocks).to(dtype).view(batch, heads, c, -1, dim)
            self.v = v.index_select(2, self.key_blocks).to(dtype).view(batch, heads, c, -1, dim)
        scores = (self.q * scale) @ self.k.transpose(-1, -2)  # scaling q: fewer elements than the scores
        if bias is not None:
            scores += bias.index_select(2, self.key_blocks).to(dtype).view(batch, heads, c, 1, -1)
        blocked = None
        if group.blocked is not None:  # an additive −∞/0 mask made once per chunk, broadcast over B and h:
            # masked_fill_ with a bool mask is several times slower on CPU
            blocked = group.blocked[first:end, self.row0:self.row1].to(scores.device)
        if segment_test is not None:  # run-time segments: the pattern's own test, per batch row
            tested = segment_test.blocked(self, block_q, block_k).to(scores.device)
            blocked = tested if blocked is None else tested | blocked
        if blocked is not None:  # one −∞/0 addition for both masks
            scores.add_(torch.where(blocked, float("-inf"), 0.0).to(dtype))
        self.scores = scores

    def put(self, target, value):
        """Write the chunk's rows of ``value`` [B, h, c, rows, ...] into ``target``, a tensor of
        query blocks [B, h, query blocks, BQ, ...]."""
        if self.row1 - self.row0 == target.shape[3]:
            target.index_copy_(2, self.query_blocks, value)
        else:  # one block, some of its rows
            target[:, :, int(self.query_blocks[0]), self.row0:self.row1] = value[:, :, 0]

    def accumulate_keys(self, target, weights, values):
        """target[key] += Σ_rows weights[row, key] · values[row] at the chunk's keys: target is a
        tensor of key blocks [B, h, key blocks, BK, D], weights [B, h, c, rows, L·BK] and values
        [B, h, c, rows, D]. With every key in the lists it is one in-place batched matmul."""
        if not self.every_key:
            self.add_to_keys(target, weights.transpose(-1, -2) @ values)
            return
        batch, heads = target.shape[:2]
        flat = target.view(batch * heads, -1, target.shape[-1])
        rows = weights.shape[2] * weights.shape[3]
        flat.baddbmm_(weights.reshape(batch * heads, rows, -1).transpose(1, 2),
                      values.reshape(batch * heads, rows, -1))

    def add_to_keys(self, target, value):
        """Add ``value`` [B, h, c, L·BK, ...] to ``target``, a tensor of key blocks
        [B, h, key blocks, BK, ...], at the chunk's key blocks."""
        batch, heads, _, block_k = target.shape[:4]
        target.index_add_(2, self.key_blocks, value.reshape(batch, heads, -1, block_k, *target.shape[4:]))


def _as_blocks(tensor, block: int):
    """[B, h, N, ...] -> [B, h, N / block, block, ...] (a view)."""
    return tensor.view(tensor.shape[0], tensor.shape[1], -1, block, *tensor.shape[3:])


class _NativeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, groups, prob, scale, block_q, block_k, segment_test=None):
        dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        batch, heads, n, dim = q.shape
        blocks = (_as_blocks(q, block_q), _as_blocks(k, block_k), _as_blocks(v, block_k),
                  None if bias is None else _as_blocks(bias, block_k))
        out = torch.zeros(batch, heads, n, dim, dtype=dtype, device=q.device)
        threshold = torch.zeros(batch, heads, n, dtype=dtype, device=q.device)
        out_blocks, threshold_blocks = _as_blocks(out, block_q), _as_blocks(threshold, block_q)
        for group in groups:
            for piece in _chunks(group, batch * heads, block_q, block_k):
                chunk = _Chunk(group, piece, blocks, scale, dtype, segment_test)
                if prob.is_softmax:  # no threshold kept: the backward pass recomputes the softmax
                    chunk.put(out_blocks, _softmax(chunk.scores) @ chunk.v)
                else:
                    p, t = probability.forward(chunk.scores, prob, overwrite=True)
                    chunk.put(out_blocks, p @ chunk.v)
                    chunk.put(threshold_blocks, t.squeeze(-1))
        ctx.save_for_backward(q, k, v, bias, out, threshold)
        ctx.groups, ctx.prob, ctx.scale, ctx.block_sizes = groups, prob, scale, (block_q, block_k)
        ctx.segment_test = segment_test
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias, out, threshold = ctx.saved_tensors
        prob, scale, (block_q, block_k) = ctx.prob, ctx.scale, ctx.block_sizes
        dtype = threshold.dtype
        batch, heads = q.shape[:2]
        blocks = (_as_blocks(q, block_q), _as_blocks(k, block_k), _as_blocks(v, block_k),
                  None if bias is None else _as_blocks(bias, block_k))
        dq, dk, dv = (torch.zeros(t.shape, dtype=dtype, device=q.device) for t in (q, k, v))
        dbias = None if bias is None else torch.zeros(bias.shape, dtype=dtype, device=q.device)
        grad_out = grad_out.to(dtype).contiguous()
        grad_blocks = _as_blocks(grad_out, block_q)
        out_blocks = _as_blocks(out, block_q)
        dq_blocks, dk_blocks, dv_blocks = _as_blocks(dq, block_q), _as_blocks(dk, block_k), _as_blocks(dv, block_k)
        threshold_blocks = _as_blocks(threshold, block_q)
        for group in ctx.groups:
            for piece in _chunks(group, batch * heads, block_q, block_k):
                chunk = _Chunk(group, piece, blocks, scale, dtype, ctx.segment_test)
                rows = chunk.query_blocks, slice(chunk.row0, chunk.row1)
                if prob.is_softmax:  # softmax again: faster than exp(s − lse), whose exp(−∞) is slow on CPU
                    p = _softmax(chunk.scores)
                else:
                    p = probability.recompute(chunk.scores, _rows(threshold_blocks, rows).unsqueeze(-1), prob,
                                              overwrite=True)
                grad = _rows(grad_blocks, rows)
                chunk.accumulate_keys(dv_blocks, p, grad)
                # softmax's Σ_j p_ij·dp_ij is dO_i · O_i: one number per row, from [rows, D] tensors
                delta = (grad * _rows(out_blocks, rows)).sum(dim=-1, keepdim=True) if prob.is_softmax else None
                ds = probability.backward(p, grad @ chunk.v.transpose(-1, -2), prob, delta=delta, overwrite=True)
                if dbias is not None:
                    chunk.add_to_keys(_as_blocks(dbias, block_k), ds.sum(dim=-2))
                ds *= scale
                chunk.put(dq_blocks, ds @ chunk.k)
                chunk.accumulate_keys(dk_blocks, ds, chunk.q)
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype),
                None if dbias is None else dbias.to(bias.dtype), None, None, None, None, None, None)


def _softmax(scores):
    """The softmax of ``scores`` along the last dimension, −∞ where not connected; a row of −∞
    gives weights 0. torch.softmax is one fused pass; the unfused max, sub, exp and sum are
    many times slower on CPU because torch's vectorised exp takes a slow path for −∞."""
    p = torch.softmax(scores, dim=-1)
    if torch.isnan(p[..., :1]).any():  # a row without connections (all −∞) gives NaN
        p = torch.nan_to_num_(p, nan=0.0)
    return p


def _rows(tensor, rows):
    """The rows (query blocks, row slice) of a tensor of query blocks [B, h, blocks, BQ, ...]."""
    blocks, within = rows
    return tensor.index_select(2, blocks)[:, :, :, within]


def _padded_length(n: int, block_q: int, block_k: int) -> int:
    """n rounded up to whole query blocks and whole key blocks."""
    unit = math.lcm(block_q, block_k)
    return -(-n // unit) * unit


def _padded(tensor, extra: int, pad):
    """``tensor`` contiguous, padded with zeros at the end of the sequence (``pad`` for F.pad)
    when the blocks do not divide n."""
    return (F.pad(tensor, pad) if extra else tensor).contiguous()


def native_attention(q, k, v, compiled, layer: int = 0, scale: float | None = None, *,
                     key_bias=None, block_size=None, q_offset: int = 0, segments=None):
    """Block-sparse attention of q, k, v with one layer of a compiled pattern, for the file's
    ρ, in eager torch; differentiable in q, k, v and ``key_bias``.

    q: [B, H, n, D]; k and v: [B, Hkv, n, D] with Hkv dividing H (grouped-query
    attention); the pattern's heads 1 or H. ``scale`` defaults to 1/√D; ``key_bias``
    (broadcastable to [B, H, n]) is added to the score of every (query, key j) before ρ.
    ``block_size`` (an int or (BQ, BK)) sets the blocks: the file's `block`, else 128.
    Same result as `patterndsl.attention_reference`, in O(blocks computed) memory.

    q may be shorter than k, v: q [B, H, m, D] holds the queries at positions q_offset …
    q_offset + m − 1, k, v [B, Hkv, n_kv, D] the keys 0 … n_kv − 1, and the pattern is evaluated
    at n = n_kv (compiled.at(n_kv)); only the blocks of those rows are computed.
    ``segments`` (an integer tensor [B, n_kv]) gives the segment ids of a pattern that uses
    `segment` (patterndsl/segments.py): the blocks come from the layout that holds for
    every segmentation, and each computed block applies the pattern's test with the ids.
    When every pair of the pattern shares a segment (`segment & …`; segments.within_segments),
    each batch row computes only the key blocks its query blocks' documents reach
    (segments.segment_block_ranges), with q_offset too.
    """
    if getattr(compiled, "cross", False):  # m queries × n keys: through its square, as patterndsl.attention
        from .cross import to_square

        k, v, compiled, key_bias = to_square(q, k, v, compiled, scale, key_bias, q_offset, segments)
    compiled, layer = checked_reference_inputs(q, k, v, compiled, layer, scale, q_offset)
    batch, heads, m, dim = q.shape
    n = k.shape[2]
    rectangular = not (q_offset == 0 and m == n)
    from .segments import check_segments

    segments = check_segments(segments, batch, n, q.device, uses_segments=compiled.uses_segments,
                              what="native_attention")
    scale = dim ** -0.5 if scale is None else float(scale)
    bias = key_bias_for(key_bias, batch, heads, n, q)
    block_q, block_k = compiled.block_sizes(block_size)
    if k.shape[1] != heads:
        k = k.repeat_interleave(heads // k.shape[1], dim=1)
        v = v.repeat_interleave(heads // v.shape[1], dim=1)
    padded, padded_q = _padded_length(n, block_q, block_k), _padded_length(m, block_q, block_k)
    q = _padded(q, padded_q - m, (0, 0, 0, padded_q - m))
    k, v = (_padded(t, padded - n, (0, 0, 0, padded - n)) for t in (k, v))
    if bias is not None:
        bias = _padded(bias, padded - n, (0, padded - n))
    prob = probability.as_map(compiled.prob)
    if segments is not None:  # per batch row (or all rows at once): its own key blocks and test
        pieces = []
        for rows, layer_plans in segment_plans(compiled, layer, block_q, block_k, segments, padded,
                                               int(q_offset), m):
            pieces.append(_run_plans(layer_plans, heads, compiled.heads, q[rows], k[rows], v[rows],
                                     None if bias is None else bias[rows], prob, scale, block_q, block_k))
        out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)
        return out[:, :, :m]
    if rectangular:
        layer_plans = row_plans(compiled, layer, block_q, block_k, int(q_offset), m)
    else:
        layer_plans = plans(compiled, layer, block_q, block_k)
    out = _run_plans(layer_plans, heads, compiled.heads, q, k, v, bias, prob, scale, block_q, block_k)
    return out[:, :, :m]


def _run_plans(layer_plans, heads: int, pattern_heads_count: int, q, k, v, bias, prob, scale, block_q, block_k):
    """The attention of each plan's heads (its groups, and its segment test if any), in head order."""
    outs, order = [], []
    for pattern_heads, groups, *test in layer_plans:
        chosen = list(range(heads)) if pattern_heads_count == 1 else pattern_heads
        pick = (lambda t: t) if len(chosen) == heads else (lambda t: t[:, chosen])
        outs.append(_NativeAttention.apply(pick(q), pick(k), pick(v), None if bias is None else pick(bias),
                                    groups, prob, scale, block_q, block_k, *test))
        order += chosen
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)[:, np.argsort(order)]


# ---- run-time segments (patterndsl/segments.py) ---------------------------------------



# How a call with segment ids picks its key blocks (benchmarks/native_cpu.py compares them):
# "per_row" — each batch row computes the key blocks its documents reach (patterns whose
# pairs all share a segment); "union" — every row the union of those ranges; "static" —
# the layout that holds for every segmentation, whatever the ids.
SEGMENT_SKIPPING = "per_row"


class _SegmentTest:
    """The element test of a pattern using `segment`, evaluated per batch row on a chunk's
    rows and keys with the ids: generated torch source (codegen, the flex backend's
    tables), seg_q / seg_k / segrank_k gathered from the ids."""

    def __init__(self, pattern, n: int, block_q: int, block_k: int, ids, ranks, q_offset: int = 0, code=None):
        if code is None:
            code = _segment_code(pattern, n, block_q, block_k)
        self.code, self.tables = code
        self.n, self.ids, self.ranks, self.q_offset = n, ids, ranks, q_offset  # ids, ranks: int64 [B, padded n]

    def blocked(self, chunk, block_q: int, block_k: int):
        """Bool [B, 1, c, rows, L·BK]: True where the pattern does not connect the pair."""
        c = chunk.query_blocks.numel()
        rows = self.q_offset + chunk.query_blocks[:, None] * block_q + torch.arange(chunk.row0, chunk.row1)  # [c, r]
        cols = (chunk.key_blocks.view(c, -1)[:, :, None] * block_k + torch.arange(block_k)).reshape(c, -1)
        device = self.ids.device
        rows = torch.clamp(rows, max=self.n - 1).to(device)  # rows past the queries: cleared by the bounds mask
        cols = cols.to(device)
        q = rows[None, :, :, None]
        k = torch.clamp(cols, max=self.n - 1)[None, :, None, :]
        names = {"torch": torch, "q": q, "k": k,
                 "seg_q": self.ids[:, rows][:, :, :, None], "seg_k": self.ids[:, cols][:, :, None, :],
                 "segrank_k": self.ranks[:, cols][:, :, None, :]}
        names.update({name: t.to(device) for name, t in self.tables.items()})
        allowed = eval(self.code, names)
        return ~torch.broadcast_to(allowed, (self.ids.shape[0], c, rows.shape[1], cols.shape[1])).unsqueeze(1)


def _segment_code(pattern, n: int, block_q: int, block_k: int):
    """(code, tables): the pattern's test as compiled torch source with its tables."""
    from .targets.flex import TorchBackend

    backend = TorchBackend(block_q, block_k)
    source = pattern.source("q", "k", n, backend)
    code = compile(source, "<patterndsl segment test>", "eval")
    return code, {name: torch.from_numpy(np.ascontiguousarray(t)) for name, t in backend.tables.items()}


class _BlockTable:
    """A layout's blocks sorted by (query block, key block), made once per pattern: each
    block's element mask where one is needed (a partial block, or one past the last row or
    key; ``bounds_only``: the bounds only, for a pattern whose segment test decides the
    pairs). ``groups(keep)`` groups the blocks ``keep`` selects, in O(selected blocks)."""

    def __init__(self, layout, pattern, bounds_only: bool = False):
        n, block_q, block_k = layout.n, layout.block_q, layout.block_k
        row0, num_rows = getattr(layout, "q_offset", 0), getattr(layout, "num_rows", n)
        self.block_q, self.block_k, self.num_q_blocks = block_q, block_k, layout.num_q_blocks
        self.every = _padded_length(n, block_q, block_k) // block_k
        qb, kb, states = layout.blocks()
        order = np.lexsort((kb, qb))
        self.qb, self.kb, states = qb[order].astype(np.int64), kb[order].astype(np.int64), states[order]
        partial = (states == PARTIAL) & (not bounds_only)
        need = partial | ((self.qb + 1) * block_q > num_rows) | ((self.kb + 1) * block_k > n)
        at = np.flatnonzero(need)
        self.index = np.full(self.qb.size, -1, dtype=np.int64)
        self.index[at] = np.arange(at.size)
        masks = np.empty((at.size, block_q, block_k), dtype=bool)
        if at.size:
            firsts = np.flatnonzero(np.r_[True, self.qb[at][1:] != self.qb[at][:-1]])
            for piece in np.split(np.arange(at.size), firsts[1:]):
                slots = at[piece]
                block = int(self.qb[slots[0]])
                rows = block * block_q + np.arange(block_q)
                cols = self.kb[slots][:, None] * block_k + np.arange(block_k)  # [S, BK]
                inside = (rows < num_rows)[None, :, None] & (cols < n)[:, None, :]  # [S, BQ, BK]
                evaluate = partial[slots]
                if evaluate.any():
                    got = _partial_masks(pattern, n, rows + row0, cols[evaluate].reshape(-1), row0 + num_rows)
                    inside[evaluate] = got.reshape(block_q, -1, block_k).transpose(1, 0, 2)
                masks[piece] = inside
        self.masks = masks

    def groups(self, keep=None) -> list[_Group]:
        qb, kb, index = self.qb, self.kb, self.index
        if keep is not None:
            qb, kb, index = qb[keep], kb[keep], index[keep]
        block_q, block_k = self.block_q, self.block_k
        counts = np.bincount(qb, minlength=self.num_q_blocks)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        groups = []
        for length in np.unique(counts[counts > 0]):
            blocks = np.flatnonzero(counts == length)
            at = starts[blocks, None] + np.arange(length)  # [m, L]
            key_blocks, slots = kb[at], index[at]
            mask = None
            masked = slots >= 0
            if masked.any():
                blocked = np.zeros((len(blocks), length, block_q, block_k), dtype=bool)
                blocked[masked] = ~self.masks[slots[masked]]
                mask = torch.from_numpy(np.ascontiguousarray(blocked.transpose(0, 2, 1, 3))
                                        .reshape(len(blocks), block_q, length * block_k))
            groups.append(_Group(torch.from_numpy(blocks), torch.from_numpy(key_blocks), mask,
                                 every_key=int(length) == self.every))
        return groups


def _segment_table(compiled, pattern, block_q: int, block_k: int, q_offset: int, m: int):
    """(table, test code) of one pattern using `segment` for the rows q_offset … q_offset + m − 1:
    its static layout (segments.static_pattern: what holds for every segmentation) with
    bounds masks, cached on ``compiled`` (row windows: a bounded cache)."""
    from .layout import block_layout
    from .primitives import All, Nothing
    from .segments import static_pattern

    n = compiled.n
    whole = q_offset == 0 and m == n
    cache = compiled.__dict__.setdefault("_segment_tables" if whole else "_segment_row_tables", {})
    key = (pattern, block_q, block_k, q_offset, m)
    if key in cache:
        cache[key] = cache.pop(key)
        return cache[key]
    static = static_pattern(pattern, All(), Nothing())
    layout = (block_layout(static, n, block_q, block_k) if whole
              else block_layout(static, n, block_q, block_k, q_offset=q_offset, q_len=m))
    entry = (_BlockTable(layout, static, bounds_only=True), _segment_code(pattern, n, block_q, block_k))
    if not whole:
        while len(cache) >= MAX_CACHED_ROW_PLANS:
            del cache[next(iter(cache))]
    cache[key] = entry
    return entry


def segment_plans(compiled, layer: int, block_q: int, block_k: int, segments, padded: int,
                  q_offset: int = 0, m: "int | None" = None):
    """[(batch rows, [(heads, groups, test)])] for a call with segment ids, rows q_offset …
    q_offset + m − 1: each pattern's static layout (cached), each computed block applying the
    pattern's test with the ids. For a pattern whose pairs all share a segment
    (segments.within_segments), each batch row keeps only the key blocks in its own
    segments.segment_block_ranges (SEGMENT_SKIPPING = "per_row"): one entry per batch row;
    otherwise one entry for every row (slice(None))."""
    from .segments import segment_block_ranges, segment_start_sizes, torch_ranks, within_segments

    n = compiled.n
    m = n - q_offset if m is None else m
    ids = segments.to(torch.int64)
    reads_ranks = any(segment_start_sizes(p) for p in compiled.patterns[layer])  # `segment_start`: ranks
    ranks = torch_ranks(ids) if reads_ranks else ids
    pad = padded - n
    ids_p, ranks_p = (F.pad(t, (0, pad), value=-1) if pad else t for t in (ids, ranks))
    patterns = compiled.patterns[layer]
    tables = {p: _segment_table(compiled, p, block_q, block_k, q_offset, m) for p in dict.fromkeys(patterns)}
    skipping = SEGMENT_SKIPPING if any(within_segments(p) for p in tables) else "static"
    ranges = None
    if skipping != "static":
        lo, hi = segment_block_ranges(ids, q_offset, m, block_q, block_k)
        if skipping == "union":
            lo, hi = lo.min(dim=0, keepdim=True).values, hi.max(dim=0, keepdim=True).values
        ranges = lo.cpu().numpy(), hi.cpu().numpy()

    def plans_for(row, rows):
        by_pattern: dict = {}
        for head, pattern in enumerate(patterns):
            if pattern not in by_pattern:
                table, code = tables[pattern]
                keep = None
                if row is not None and within_segments(pattern):
                    lo, hi = ranges[0][row], ranges[1][row]
                    keep = (table.kb >= lo[table.qb]) & (table.kb < hi[table.qb])
                test = _SegmentTest(pattern, n, block_q, block_k, ids_p[rows], ranks_p[rows], q_offset, code)
                by_pattern[pattern] = [[], table.groups(keep), test]
            by_pattern[pattern][0].append(head)
        return [tuple(entry) for entry in by_pattern.values()]

    if skipping == "per_row":
        return [(slice(b, b + 1), plans_for(b, slice(b, b + 1))) for b in range(ids.shape[0])]
    return [(slice(None), plans_for(0 if skipping == "union" else None, slice(None)))]
