"""Triton block-sparse attention kernels: forward, dQ and dK/dV over a pattern's block lists.

This is ordinary code (torch and triton only; it imports nothing from patterndsl), and it is
also the body of every generated kernel module: patterndsl/kernels/generate.py writes a
pattern's module as this file's source with the *pattern part* below replaced by the
pattern's own constants, block tables and element predicate `_allowed`, and with the
definitions of `CUT_LISTS_ONLY` left out when no block list is cut. Triton compiles a kernel
from its source, reading the globals of the module that defines it, so each pattern runs as
its own module; this one holds placeholders (an empty pattern) that make it import and read as
one.

Layout of the work (laid out like Triton's fused-attention tutorial):
- forward: one program per tile of queries and head, online softmax over the tile's query
  block's key blocks: first the partial blocks (with the predicate), then the full ones
  (every in-bounds pair connected, no predicate);
- backward: dQ over the same lists; dK and dV over the transposed lists (for each key block,
  its query blocks), summing the query heads that share a key/value head;
- a list much longer than the rest is cut into pieces computed by separate programs, which
  write partial results to scratch slots that `_fwd_combine` and `_sum_slots` merge.
"""
import base64
import contextlib
import threading
import zlib

import torch
import triton
import triton.language as tl

# ---- the pattern part ----------------------------------------------------------------------

# A generated module defines these names for its pattern (see patterndsl/kernels/generate.py);
# here they are those it generates for the pattern `none` at n = 1 with blocks of 16, so that
# this module runs as it reads (tests/test_triton_kernels.py checks both).
N = 1  # the sequence length the tables were built for
NUM_Q_BLOCKS, NUM_K_BLOCKS = 1, 1
# Work items (load balancing): whether long lists are cut, into how many pieces, scratch
# slots (one per piece of a cut list) and cut lists.
SPLIT_Q, NUM_Q_ITEMS, NUM_Q_SLOTS, NUM_Q_SPLITS = False, 0, 0, 0  # no query block's list is cut
SPLIT_K, NUM_K_ITEMS, NUM_K_SLOTS, NUM_K_SPLITS = False, 0, 0, 0  # no key block's list is cut

# The distinct patterns (simplified, in .spat syntax); a pattern id indexes this list.
PATTERNS = [
    'none',
]
# HEAD_PATTERNS[layer][head]: the pattern id of each head (one entry: every head shares it).
HEAD_PATTERNS = [[0]]
# SEGMENT_RANGES[id]: whether the pattern is `segment & …` (no pair outside a shared segment), so
# that each batch row skips the key blocks outside its query blocks' segments.
SEGMENT_RANGES = [False]
# Block layouts:
#   pattern 0: 1 × 1 blocks of 16 × 16: 0 full, 0 partial, 1 empty (sparsity 100.0%, block efficiency 100.0%)
# TABLES (int32, zlib-compressed, base64), described below: offset, entries, table
#          15         2  partial_ptr: [patterns * (NUM_Q_BLOCKS + 1)]
#          17         1  partial_idx: key blocks
#          18         2  full_ptr: [patterns * (NUM_Q_BLOCKS + 1)]
#          20         1  full_idx: key blocks
#          21         2  t_partial_ptr: [patterns * (NUM_K_BLOCKS + 1)]
#          23         1  t_partial_idx: query blocks
#          24         2  t_full_ptr: [patterns * (NUM_K_BLOCKS + 1)]
#          26         1  t_full_idx: query blocks
#          27         1  q_items: [patterns, NUM_Q_ITEMS, 4]: partial start, end, full start, end
#          28         1  q_item_info: [NUM_Q_ITEMS, 2]: block, scratch slot (-1: not cut)
#          29         1  q_splits: [NUM_Q_SPLITS, 3]: block, first slot, pieces
#          30         1  k_items: [patterns, NUM_K_ITEMS, 4]: partial start, end, full start, end
#          31         1  k_item_info: [NUM_K_ITEMS, 2]: block, scratch slot (-1: not cut)
#          32         1  k_splits: [NUM_K_SPLITS, 3]: block, first slot, pieces
#          33         1  params: the predicates' n-dependent constants P0.. (0)
_TABLES = (
    "eJytw4kJACAMBMHrQBTFYOLXf5NuEQ5MkpRZWNnYaRx0BicXNw+v/nqYuAF3",
)
# The kernels' source from here on is the same at every n (n is a run-time argument).
BLOCK_Q, BLOCK_K = 16, 16  # block layout: queries x keys per block
LAYERS, HEADS = 1, 1  # layer l uses HEAD_PATTERNS[l % LAYERS]
ALPHA = None  # the probability map of the file's `prob`: None softmax, 2 sparsemax, else α-entmax
SEGMENTED = False  # whether a pattern reads run-time segment ids (attention(..., segments=))


@triton.jit
def _allowed(q, k, N, pattern, TABLES, SEG):
    """Which pairs (q, k) of a tile are connected under pattern id `pattern`: q and k are int32
    index tensors that broadcast ([M, 1] and [1, N], or the transpose in the dK/dV kernel).
    Pairs outside the sequence are never connected. A generated module's predicate reads its
    data (index lists, random bitmaps) from TABLES at the offsets TABLES' header gives, and its
    constants that depend on n (P0, P1, ...) from TABLES' params, so that it reads the same at
    every n. A pattern that reads run-time segment ids (SEGMENTED) reads them from SEG, the
    batch row's int32 [3, N]: segment ids, ranks within the segment, run starts (`_segments`)."""
    in_bounds = (q < N) & (k < N)
    # PATTERNS[0]
    connected = in_bounds & (k < 0)
    return connected

# ---- end of the pattern part ---------------------------------------------------------------

# TABLES, one int32 buffer, starts with the offset of each block table, in this order:
#   partial_ptr / partial_idx: for each pattern p and query block qb, the key blocks that need
#       the element predicate, in CSR form: entries partial_ptr[r] : partial_ptr[r + 1] of
#       partial_idx, for row r = p * (NUM_Q_BLOCKS + 1) + qb (the pointers index partial_idx).
#   full_ptr / full_idx: the key blocks every in-bounds pair of which is connected (no predicate).
#   t_partial_* / t_full_*: the same, transposed: for each pattern and key block, its query blocks
#       (row r = p * (NUM_K_BLOCKS + 1) + kb); the dK/dV kernel walks these.
#   q_items / q_item_info / q_splits: the work items of the forward and dQ passes when some
#       query block's list is cut (SPLIT_Q): per pattern and item the ranges of partial_idx and
#       full_idx it walks; per item its query block and scratch slot (-1: the block's list is
#       whole, so the item writes its output directly); per cut query block its first slot and
#       number of pieces, which a second, small kernel merges. k_*: the same for dK/dV over the
#       transposed lists (SPLIT_K).
#   params: the predicates' constants that depend on n (P0, P1, ... in `_allowed`), so that the
#       kernels' source is the same at every n.
# The header then holds the offset of each of the predicates' data tables (in `_allowed`'s
# order); after them come the data the predicates read. Every table holds at least one element.
TABLE_NAMES = ("partial_ptr", "partial_idx", "full_ptr", "full_idx",
               "t_partial_ptr", "t_partial_idx", "t_full_ptr", "t_full_idx",
               "q_items", "q_item_info", "q_splits", "k_items", "k_item_info", "k_splits", "params")
(PARTIAL_PTR, PARTIAL_IDX, FULL_PTR, FULL_IDX, T_PARTIAL_PTR, T_PARTIAL_IDX, T_FULL_PTR, T_FULL_IDX,
 Q_ITEMS, Q_ITEM_INFO, Q_SPLITS, K_ITEMS, K_ITEM_INFO, K_SPLITS, PARAMS) = (tl.constexpr(i) for i in range(15))

# Kernels may read only constexpr globals.
LN2 = tl.constexpr(0.6931471805599453)
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _table(TABLES, which):
    """The block table ``which`` (an index of TABLE_NAMES) inside TABLES."""
    return TABLES + tl.load(TABLES + which)


# ---- forward -------------------------------------------------------------------------------


@triton.jit
def _fwd_blocks(acc, l_i, m_i, q, offs_m, K_head, V_head, BIAS_row, stride_kn, stride_vn, start, end,
                BLOCK_LIST, TABLES, SEG, pattern, qk_scale, N, HEAD_DIM: tl.constexpr,
                BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                APPLY_PATTERN: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                SEGMENTED: tl.constexpr = False, RAGGED: tl.constexpr = True):
    """Online softmax over the key blocks BLOCK_LIST[start:end], each BLOCK_K keys taken
    BLOCK_N at a time. Scores are kept in base 2 (qk_scale includes log2(e)); with HAS_BIAS,
    each key's bias (BIAS_row, float32 [N]) is added to its scores. With SEGMENTED, a full
    block's tile is full only where its rows and keys lie in one segment (`_segment_cut`)."""
    offs_d = tl.arange(0, BLOCK_D)
    local_n = tl.arange(0, BLOCK_N)
    # One flat loop over (block, tile within the block), so that Triton's software pipeliner,
    # which works on innermost loops, can prefetch the next tile across blocks.
    for step in range(start * (BLOCK_K // BLOCK_N), end * (BLOCK_K // BLOCK_N)):
        key_block = tl.load(BLOCK_LIST + step // (BLOCK_K // BLOCK_N))
        start_n = key_block * BLOCK_K + (step % (BLOCK_K // BLOCK_N)) * BLOCK_N
        offs_n = start_n + local_n
        K_tile = K_head + start_n.to(tl.int64) * stride_kn
        V_tile = V_head + start_n.to(tl.int64) * stride_vn
        kT = tl.load(K_tile + local_n[None, :] * stride_kn + offs_d[:, None],
                     mask=(offs_n[None, :] < N) & (offs_d[:, None] < HEAD_DIM), other=0.0)
        qk = tl.dot(q, kT, input_precision=PRECISION) * qk_scale
        if HAS_BIAS:
            qk += _load_key_bias(BIAS_row, offs_n, N)[None, :]
        if APPLY_PATTERN:
            connected = _allowed(offs_m[:, None], offs_n[None, :], N, pattern, TABLES, SEG)
            qk = tl.where(connected, qk, float("-inf"))
        elif SEGMENTED:
            connected = _segment_cut(offs_m[:, None], offs_n[None, :], N, pattern, TABLES, SEG,
                                     tl.min(offs_m, 0), tl.max(offs_m, 0), start_n, start_n + BLOCK_N - 1)
            qk = tl.where(connected, qk, float("-inf"))
        elif RAGGED:  # a full block at the ragged end: only the keys past n are cut (N is a run-time
            # argument; RAGGED, n % BLOCK_K != 0, is the one thing about it the kernel specializes on)
            qk = tl.where(offs_n[None, :] < N, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        # A row that has met no connected key yet keeps m = -inf; measure it from 0
        # instead, so that no -inf - -inf (NaN) is ever formed.
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(qk - m_ref[:, None])
        alpha = tl.math.exp2(m_i - m_ref)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V_tile + local_n[:, None] * stride_vn + offs_d[None, :],
                    mask=(offs_n[:, None] < N) & (offs_d[None, :] < HEAD_DIM), other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _segment_cut(rows, cols, N, pattern, TABLES, SEG, first_q, last_q, first_k, last_k):
    """The connected pairs of a tile of a full block under run-time segments. The full blocks
    are those full for the pattern read in one document (`segment` as `all`): the tile's pairs
    are all connected (in bounds) where its queries first_q..last_q and keys first_k..last_k lie
    in one run of equal ids (the run start of the last position is at most the first), and
    are the predicate's elsewhere. rows and cols broadcast as in `_allowed`."""
    connected = (rows >= 0) & (rows < N) & (cols < N)
    lo = tl.minimum(first_q, first_k)
    hi = tl.minimum(tl.maximum(last_q, last_k), N - 1)
    if tl.load(SEG + 2 * N + hi) > lo:
        connected = _allowed(rows, cols, N, pattern, TABLES, SEG)
    return connected


@triton.jit
def _load_key_bias(BIAS_row, offs_n, N):
    """The bias of keys offs_n, in the units of the scores (the launch code scales it: by
    log2(e) for softmax, by α - 1 for entmax); 0 past the end."""
    return tl.load(BIAS_row + offs_n, mask=offs_n < N, other=0.0)


@triton.jit
def _program(TILES, SPLIT: tl.constexpr):
    """(tile, batch x head) of this program. Without SPLIT the grid is (tiles, batch x heads).
    With SPLIT it is one axis of TILES x (batch x heads) programs, batch x head varying fastest:
    the GPU starts programs roughly in that order, so the longest work items (first in the
    tables) of every head start first, rather than those of the last head after all the short
    items of the others."""
    if SPLIT:
        heads = tl.num_programs(0) // TILES
        return tl.program_id(0) // heads, tl.program_id(0) % heads
    else:
        return tl.program_id(0), tl.program_id(1)


@triton.jit
def _item_ranges(ITEMS, ITEM_INFO, item, pattern, NUM_ITEMS):
    """(block, scratch slot, partial start, partial end, full start, full end) of a work item."""
    ranges = ITEMS + (pattern * NUM_ITEMS + item) * 4
    return (tl.load(ITEM_INFO + 2 * item), tl.load(ITEM_INFO + 2 * item + 1), tl.load(ranges),
            tl.load(ranges + 1), tl.load(ranges + 2), tl.load(ranges + 3))


@triton.jit
def _query_tile(tile, pattern, TABLES, NUM_ITEMS, N, Q_BASE,
                BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr, SPLIT: tl.constexpr):
    """(first query row, sub-tile within the query block, scratch slot, partial start, partial
    end, full start, full end) of the forward and dQ programs' tile `tile`. Without SPLIT, tile
    t is rows t * BLOCK_M.. and walks its query block's whole lists (slot -1). With SPLIT, it is
    sub-tile t % (BLOCK_Q // BLOCK_M) of work item t // (BLOCK_Q // BLOCK_M), a piece of its
    query block's lists. Rows are absolute positions (q_offset + the row of q): without SPLIT,
    tile t starts at Q_BASE + t * BLOCK_M (Q_BASE: q_offset rounded down to BLOCK_M); the
    launch code takes SPLIT only when q holds every row (q_offset 0, length N)."""
    if SPLIT:
        item = tile // (BLOCK_Q // BLOCK_M)
        sub = tile % (BLOCK_Q // BLOCK_M)
        query_block, slot, partial_start, partial_end, full_start, full_end = _item_ranges(
            _table(TABLES, Q_ITEMS), _table(TABLES, Q_ITEM_INFO), item, pattern, NUM_ITEMS)
        return (query_block * BLOCK_Q + sub * BLOCK_M, sub, slot, partial_start, partial_end,
                full_start, full_end)
    else:
        start_m = Q_BASE + tile * BLOCK_M
        row = pattern * (tl.cdiv(N, BLOCK_Q) + 1) + start_m // BLOCK_Q
        partial_ptr, full_ptr = _table(TABLES, PARTIAL_PTR), _table(TABLES, FULL_PTR)
        return (start_m, 0, -1, tl.load(partial_ptr + row), tl.load(partial_ptr + row + 1),
                tl.load(full_ptr + row), tl.load(full_ptr + row + 1))


@triton.jit
def _query_program(tile, batch_head, HEAD_PATTERN, TABLES, H, GROUP, NUM_ITEMS, N, Q_BASE,
                   BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr, SPLIT: tl.constexpr,
                   SEG_RANGES, SEGMENTED: tl.constexpr):
    """What a forward or dQ program (tile `tile`, batch x head `batch_head`) works on: (batch,
    head, key/value head, pattern id, then `_query_tile`'s first row, sub-tile, scratch slot,
    partial start, partial end, full start, full end). With SEGMENTED (never with SPLIT), the
    list ranges are the batch row's own: SEG_RANGES, int32 [batch x heads, query blocks, 4],
    the pattern's lists cut to the key blocks that may share a segment with the block
    (`_segments`)."""
    batch = batch_head // H
    head = batch_head % H
    pattern = tl.load(HEAD_PATTERN + head)
    start_m, sub, slot, partial_start, partial_end, full_start, full_end = _query_tile(
        tile, pattern, TABLES, NUM_ITEMS, N, Q_BASE, BLOCK_Q, BLOCK_M, SPLIT)
    if SEGMENTED:
        ranges = SEG_RANGES + (batch_head.to(tl.int64) * tl.cdiv(N, BLOCK_Q) + start_m // BLOCK_Q) * 4
        partial_start, partial_end = tl.load(ranges), tl.load(ranges + 1)
        full_start, full_end = tl.load(ranges + 2), tl.load(ranges + 3)
    return (batch, head, head // GROUP, pattern, start_m, sub, slot, partial_start, partial_end,
            full_start, full_end)


@triton.jit
def _load_rows(X, batch, head, start, stride_b, stride_h, stride_n, N, HEAD_DIM: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """Rows start.. of X[batch, head] as a [BLOCK_M, BLOCK_D] tile, zero outside rows 0..N-1
    (start may be negative) and past HEAD_DIM."""
    local_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    return tl.load(X + batch.to(tl.int64) * stride_b + head.to(tl.int64) * stride_h + start.to(tl.int64) * stride_n
                   + local_m[:, None] * stride_n + offs_d[None, :],
                   mask=((start + local_m)[:, None] >= 0) & ((start + local_m)[:, None] < N)
                   & (offs_d[None, :] < HEAD_DIM), other=0.0)


@triton.jit
def _store_output(acc, l_i, m_i, Out, LSE, batch, head, batch_head, start_m,
                  stride_ob, stride_oh, stride_on, N, HEAD_DIM: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """Normalize a finished tile and write its output and natural-log log-sum-exp. A row with
    no connection has l = 0 and acc = 0: it outputs zeros, and its log-sum-exp (of nothing)
    is -inf. start_m is the row of q (may be negative: rows outside 0..N-1 are not written; N
    here is q's length)."""
    local_m = tl.arange(0, BLOCK_M)
    offs_m = start_m + local_m
    offs_d = tl.arange(0, BLOCK_D)
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * LN2)
    O_tile = (Out + batch.to(tl.int64) * stride_ob + head.to(tl.int64) * stride_oh
              + start_m.to(tl.int64) * stride_on)
    tl.store(O_tile + local_m[:, None] * stride_on + offs_d[None, :], out.to(Out.dtype.element_ty),
             mask=(offs_m[:, None] >= 0) & (offs_m[:, None] < N) & (offs_d[None, :] < HEAD_DIM))
    tl.store(LSE + batch_head.to(tl.int64) * N + offs_m, lse, mask=(offs_m >= 0) & (offs_m < N))


@triton.jit(do_not_specialize=["N", "M", "Q_OFF", "NUM_ITEMS", "NUM_SLOTS"])
def _attn_fwd(Q, K, V, BIAS, Out, LSE, TABLES, HEAD_PATTERN, ACC_S, M_S, L_S, SEG, SEG_RANGES,
              stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
              stride_vb, stride_vh, stride_vn, stride_bb, stride_bh, stride_ob, stride_oh, stride_on,
              H, GROUP, qk_scale, N, M, Q_OFF, HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr,
              BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
              SPLIT: tl.constexpr, NUM_ITEMS, NUM_SLOTS, RAGGED: tl.constexpr = True,
              SEGMENTED: tl.constexpr = False):
    """One program per tile of BLOCK_M queries and per (batch, head): its partial key blocks
    with the predicate, then its full blocks without. With SEGMENTED, SEG holds the segment data
    [batch, 3, N] and SEG_RANGES each batch row's list ranges (`_query_program`). Writes the output and the natural-log
    log-sum-exp (-inf for an empty row). With HAS_BIAS, BIAS is the float32 key bias
    [batch, heads, N] (unit stride over keys; stride_bb, stride_bh may be 0: broadcast).
    N is the number of keys; q holds M rows at absolute positions Q_OFF.. (Out and LSE too).

    `_query_tile` says which rows and which lists (or piece of them) a program takes. A piece of a
    cut list writes its unnormalized state (acc, running max m in base 2, sum l) to scratch slot
    `slot` ([batch * heads, NUM_SLOTS, BLOCK_Q] rows of BLOCK_D), for _fwd_combine to merge."""
    tile, batch_head = _program(NUM_ITEMS * (BLOCK_Q // BLOCK_M), SPLIT)
    batch, head, kv_head, pattern, start_m, sub, slot, partial_start, partial_end, full_start, full_end = (
        _query_program(tile, batch_head, HEAD_PATTERN, TABLES, H, GROUP, NUM_ITEMS, N, (Q_OFF // BLOCK_M) * BLOCK_M,
                       BLOCK_Q, BLOCK_M, SPLIT, SEG_RANGES, SEGMENTED))
    offs_m = start_m + tl.arange(0, BLOCK_M)
    local_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    SEG_row = SEG + batch.to(tl.int64) * 3 * N
    K_head = K + batch.to(tl.int64) * stride_kb + kv_head.to(tl.int64) * stride_kh
    V_head = V + batch.to(tl.int64) * stride_vb + kv_head.to(tl.int64) * stride_vh
    BIAS_row = BIAS + batch.to(tl.int64) * stride_bb + head.to(tl.int64) * stride_bh
    q = _load_rows(Q, batch, head, start_m - Q_OFF, stride_qb, stride_qh, stride_qn, M, HEAD_DIM, BLOCK_M, BLOCK_D)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    acc, l_i, m_i = _fwd_blocks(acc, l_i, m_i, q, offs_m, K_head, V_head, BIAS_row, stride_kn, stride_vn,
                                partial_start, partial_end, _table(TABLES, PARTIAL_IDX), TABLES, SEG_row, pattern,
                                qk_scale, N, HEAD_DIM, BLOCK_K, BLOCK_N, BLOCK_D, True, HAS_BIAS, PRECISION)
    acc, l_i, m_i = _fwd_blocks(acc, l_i, m_i, q, offs_m, K_head, V_head, BIAS_row, stride_kn, stride_vn,
                                full_start, full_end, _table(TABLES, FULL_IDX), TABLES, SEG_row, pattern,
                                qk_scale, N, HEAD_DIM, BLOCK_K, BLOCK_N, BLOCK_D, False, HAS_BIAS, PRECISION,
                                SEGMENTED, RAGGED)

    if SPLIT:
        if slot >= 0:
            # Whole tiles, padding rows and columns included: the scratch has room for them.
            scratch = (batch_head.to(tl.int64) * NUM_SLOTS + slot) * BLOCK_Q + sub * BLOCK_M + local_m
            tl.store(ACC_S + scratch[:, None] * BLOCK_D + offs_d[None, :], acc)
            tl.store(M_S + scratch, m_i)
            tl.store(L_S + scratch, l_i)
        else:
            _store_output(acc, l_i, m_i, Out, LSE, batch, head, batch_head, start_m - Q_OFF,
                          stride_ob, stride_oh, stride_on, M, HEAD_DIM, BLOCK_M, BLOCK_D)
    else:
        _store_output(acc, l_i, m_i, Out, LSE, batch, head, batch_head, start_m - Q_OFF,
                      stride_ob, stride_oh, stride_on, M, HEAD_DIM, BLOCK_M, BLOCK_D)


@triton.jit
def _merge_program(TABLES, SPLITS: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_M: tl.constexpr):
    """(batch x head, sub-tile, cut block, its first scratch slot, its number of pieces) of a
    merging program: one per tile of BLOCK_M rows of a cut block and per (batch, head)."""
    split = tl.program_id(0) // (BLOCK_ROWS // BLOCK_M)
    splits = _table(TABLES, SPLITS) + 3 * split
    return (tl.program_id(1), tl.program_id(0) % (BLOCK_ROWS // BLOCK_M), tl.load(splits), tl.load(splits + 1),
            tl.load(splits + 2))


@triton.jit(do_not_specialize=["N", "NUM_SLOTS"])
def _fwd_combine(Out, LSE, TABLES, ACC_S, M_S, L_S, stride_ob, stride_oh, stride_on, H,
                 N, HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, NUM_SLOTS):
    """One program per tile of BLOCK_M rows of a cut query block and per (batch, head): merges
    the partial states of the block's pieces (log-sum-exp: rescale each to the common maximum,
    then add) and writes the output and log-sum-exp like an uncut block."""
    batch_head, sub, query_block, first, count = _merge_program(TABLES, Q_SPLITS, BLOCK_Q, BLOCK_M)
    local_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for slot in range(first, first + count):
        scratch = (batch_head.to(tl.int64) * NUM_SLOTS + slot) * BLOCK_Q + sub * BLOCK_M + local_m
        m_s = tl.load(M_S + scratch)
        m_new = tl.maximum(m_i, m_s)
        # As in _fwd_blocks: rows with no connection so far keep m = -inf, measured from 0.
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_ref)
        beta = tl.math.exp2(m_s - m_ref)
        l_i = l_i * alpha + tl.load(L_S + scratch) * beta
        acc = acc * alpha[:, None] + tl.load(ACC_S + scratch[:, None] * BLOCK_D + offs_d[None, :]) * beta[:, None]
        m_i = m_new
    _store_output(acc, l_i, m_i, Out, LSE, batch_head // H, batch_head % H, batch_head,
                  query_block * BLOCK_Q + sub * BLOCK_M, stride_ob, stride_oh, stride_on,
                  N, HEAD_DIM, BLOCK_M, BLOCK_D)


@triton.jit(do_not_specialize=["N", "NUM_SLOTS"])
def _sum_slots(SCRATCH, Out, TABLES, stride_ob, stride_oh, stride_on, H, N,
               HEAD_DIM: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_M: tl.constexpr,
               BLOCK_D: tl.constexpr, NUM_SLOTS, SPLITS: tl.constexpr):
    """One program per tile of BLOCK_M rows of a cut block (BLOCK_ROWS rows) and per (batch,
    head): adds the float32 gradients its pieces left in their scratch slots and writes the sum
    (a fixed order: deterministic, unlike atomic adds). SPLITS: Q_SPLITS or K_SPLITS."""
    batch_head, sub, block, first, count = _merge_program(TABLES, SPLITS, BLOCK_ROWS, BLOCK_M)
    local_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    total = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for slot in range(first, first + count):
        scratch = (batch_head.to(tl.int64) * NUM_SLOTS + slot) * BLOCK_ROWS + sub * BLOCK_M + local_m
        total += tl.load(SCRATCH + scratch[:, None] * BLOCK_D + offs_d[None, :])
    start_m = block * BLOCK_ROWS + sub * BLOCK_M
    offs_m = start_m + local_m
    tl.store(Out + (batch_head // H).to(tl.int64) * stride_ob + (batch_head % H).to(tl.int64) * stride_oh
             + start_m.to(tl.int64) * stride_on + local_m[:, None] * stride_on + offs_d[None, :],
             total.to(Out.dtype.element_ty), mask=(offs_m[:, None] < N) & (offs_d[None, :] < HEAD_DIM))


# ---- sparsemax and α-entmax forward ---------------------------------------------------------
# entmax_α(s)_j = [z_j - τ]_+^(1 / (α - 1)) with z = (α - 1) s and τ the row's threshold, which
# makes the row sum to 1 (Peters, Niculae and Martins 2019; α = 2 is sparsemax). τ lies in
# [max z - 1, max z): the largest term alone reaches 1 at its lower end. Each row's τ is found
# from its own computed blocks only, one pass over them per step: a pass for max z, BISECTIONS
# passes halving the bracket, then NEWTON_STEPS Newton steps on the row's mass f(τ) from the
# bracket's lower end. f is convex and decreasing (α <= 2), so Newton's steps from below stay
# below the root and converge to it: quadratically, and for sparsemax (f piecewise linear)
# exactly once the support is found (Michelot's algorithm). AdaSplash (Gonçalves et al. 2025)
# finds τ the same way, densely, with Halley's steps.


@triton.jit
def _entmax_scores(q, offs_m, K_head, BIAS_row, stride_kn, start_n, TABLES, SEG, pattern, qk_scale,
                   N, HEAD_DIM: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_D: tl.constexpr, APPLY_PATTERN: tl.constexpr, HAS_BIAS: tl.constexpr,
                   PRECISION: tl.constexpr, SEGMENTED: tl.constexpr):
    """z = (α - 1) (scale q.k + bias) of the keys start_n.. (qk_scale and the bias carry the
    α - 1), -inf where a pair is not connected."""
    offs_d = tl.arange(0, BLOCK_D)
    local_n = tl.arange(0, BLOCK_N)
    offs_n = start_n + local_n
    kT = tl.load(K_head + start_n.to(tl.int64) * stride_kn + local_n[None, :] * stride_kn + offs_d[:, None],
                 mask=(offs_n[None, :] < N) & (offs_d[:, None] < HEAD_DIM), other=0.0)
    z = tl.dot(q, kT, input_precision=PRECISION) * qk_scale
    if HAS_BIAS:
        z += _load_key_bias(BIAS_row, offs_n, N)[None, :]
    if APPLY_PATTERN:
        z = tl.where(_allowed(offs_m[:, None], offs_n[None, :], N, pattern, TABLES, SEG), z, float("-inf"))
    elif SEGMENTED:
        z = tl.where(_segment_cut(offs_m[:, None], offs_n[None, :], N, pattern, TABLES, SEG, tl.min(offs_m, 0),
                                  tl.max(offs_m, 0), start_n, start_n + BLOCK_N - 1), z, float("-inf"))
    else:
        z = tl.where(offs_n[None, :] < N, z, float("-inf"))
    return z


@triton.jit
def _entmax_blocks(m_i, s1, s2, acc, accw, q, offs_m, tau, K_head, V_head, BIAS_row, stride_kn,
                   stride_vn, start, end, BLOCK_LIST, TABLES, SEG, pattern, qk_scale, alpha,
                   N, HEAD_DIM: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_D: tl.constexpr, APPLY_PATTERN: tl.constexpr, HAS_BIAS: tl.constexpr,
                   PROB: tl.constexpr, MODE: tl.constexpr, PRECISION: tl.constexpr, SEGMENTED: tl.constexpr):
    """One pass over the key blocks BLOCK_LIST[start:end] (each BLOCK_K keys, BLOCK_N at a time),
    with P = [z - τ]_+^(1/(α-1)) and G = P^(2-α) of `_probabilities` (unnormalized). MODE 0:
    m_i = max z. MODE 1: s1 = sum P (the row's mass f(τ)), s2 = sum G (-(α - 1) f'(τ)).
    MODE 2: also acc = sum P V and accw = sum G V."""
    local_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    for step in range(start * (BLOCK_K // BLOCK_N), end * (BLOCK_K // BLOCK_N)):
        key_block = tl.load(BLOCK_LIST + step // (BLOCK_K // BLOCK_N))
        start_n = key_block * BLOCK_K + (step % (BLOCK_K // BLOCK_N)) * BLOCK_N
        z = _entmax_scores(q, offs_m, K_head, BIAS_row, stride_kn, start_n, TABLES, SEG, pattern, qk_scale,
                           N, HEAD_DIM, BLOCK_K, BLOCK_N, BLOCK_D, APPLY_PATTERN, HAS_BIAS, PRECISION, SEGMENTED)
        if MODE == 0:
            m_i = tl.maximum(m_i, tl.max(z, 1))
        else:
            p, g = _probabilities(z, tau[:, None], tau[:, None] * 0.0 + 1.0, alpha, PROB)
            s1 += tl.sum(p, 1)
            s2 += tl.sum(g, 1)
            if MODE == 2:
                offs_n = start_n + local_n
                v = tl.load(V_head + start_n.to(tl.int64) * stride_vn + local_n[:, None] * stride_vn
                            + offs_d[None, :], mask=(offs_n[:, None] < N) & (offs_d[None, :] < HEAD_DIM), other=0.0)
                acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
                accw = tl.dot(g.to(v.dtype), v, accw, input_precision=PRECISION)
    return m_i, s1, s2, acc, accw


@triton.jit
def _entmax_pass(m_i, s1, s2, acc, accw, q, offs_m, tau, K_head, V_head, BIAS_row, stride_kn,
                 stride_vn, partial_start, partial_end, full_start, full_end, TABLES, SEG, pattern, qk_scale,
                 alpha, N, HEAD_DIM: tl.constexpr, BLOCK_K: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                 PROB: tl.constexpr, MODE: tl.constexpr, PRECISION: tl.constexpr, SEGMENTED: tl.constexpr):
    """`_entmax_blocks` over a tile's partial blocks (with the predicate), then its full ones."""
    m_i, s1, s2, acc, accw = _entmax_blocks(
        m_i, s1, s2, acc, accw, q, offs_m, tau, K_head, V_head, BIAS_row, stride_kn, stride_vn,
        partial_start, partial_end, _table(TABLES, PARTIAL_IDX), TABLES, SEG, pattern, qk_scale, alpha,
        N, HEAD_DIM, BLOCK_K, BLOCK_N, BLOCK_D, True, HAS_BIAS, PROB, MODE, PRECISION, SEGMENTED)
    return _entmax_blocks(
        m_i, s1, s2, acc, accw, q, offs_m, tau, K_head, V_head, BIAS_row, stride_kn, stride_vn,
        full_start, full_end, _table(TABLES, FULL_IDX), TABLES, SEG, pattern, qk_scale, alpha,
        N, HEAD_DIM, BLOCK_K, BLOCK_N, BLOCK_D, False, HAS_BIAS, PROB, MODE, PRECISION, SEGMENTED)


@triton.jit(do_not_specialize=["N", "M", "Q_OFF"])
def _entmax_fwd(Q, K, V, BIAS, Out, TAU, NORM, WBAR, TABLES, HEAD_PATTERN, SEG, SEG_RANGES,
                stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                stride_vb, stride_vh, stride_vn, stride_bb, stride_bh, stride_ob, stride_oh, stride_on,
                H, GROUP, qk_scale, alpha, N, M, Q_OFF, HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr,
                BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                HAS_BIAS: tl.constexpr, PROB: tl.constexpr, BISECTIONS: tl.constexpr,
                NEWTON_STEPS: tl.constexpr, PRECISION: tl.constexpr, SEGMENTED: tl.constexpr = False):
    """One program per tile of BLOCK_M queries and per (batch, head), over its query block's
    whole lists (τ needs the whole row: cut lists are not used here). Writes the output, τ
    (TAU, float32 [batch, heads, N]; 0 for an empty row), 1 / the row's sum (NORM; 0 for an
    empty row: it outputs zeros) and WBAR = sum_j G_ij V_j / sum_j G_ij (float32 [batch, heads,
    N, BLOCK_D]), which the backward pass needs (`_attn_bwd_dq`)."""
    batch_head = tl.program_id(1)
    batch, head, kv_head, pattern, start_m, _, _, partial_start, partial_end, full_start, full_end = (
        _query_program(tl.program_id(0), batch_head, HEAD_PATTERN, TABLES, H, GROUP, 0, N,
                       (Q_OFF // BLOCK_M) * BLOCK_M, BLOCK_Q, BLOCK_M, False, SEG_RANGES, SEGMENTED))
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    SEG_row = SEG + batch.to(tl.int64) * 3 * N
    K_head = K + batch.to(tl.int64) * stride_kb + kv_head.to(tl.int64) * stride_kh
    V_head = V + batch.to(tl.int64) * stride_vb + kv_head.to(tl.int64) * stride_vh
    BIAS_row = BIAS + batch.to(tl.int64) * stride_bb + head.to(tl.int64) * stride_bh
    rows_q = offs_m - Q_OFF  # the rows of q (and of Out, TAU, NORM, WBAR)
    row_ok = (rows_q >= 0) & (rows_q < M)
    io_mask = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    q = _load_rows(Q, batch, head, start_m - Q_OFF, stride_qb, stride_qh, stride_qn, M, HEAD_DIM, BLOCK_M, BLOCK_D)

    zero = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    m_i, _, _, _, _ = _entmax_pass(m_i, zero, zero, acc, acc, q, offs_m, zero, K_head, V_head, BIAS_row,
                                   stride_kn, stride_vn, partial_start, partial_end, full_start, full_end, TABLES,
                                   SEG_row, pattern, qk_scale, alpha, N, HEAD_DIM, BLOCK_K, BLOCK_N, BLOCK_D, HAS_BIAS,
                                   PROB, 0, PRECISION, SEGMENTED)
    # An empty row keeps max z = -inf: measured from 0 instead, its terms all stay 0.
    m_i = tl.where(m_i == float("-inf"), 0.0, m_i)
    low, high = m_i - 1.0, m_i  # f(low) >= 1 > f(high) = 0, for any row with a key
    for _ in range(BISECTIONS):
        middle = 0.5 * (low + high)
        _, mass, _, _, _ = _entmax_pass(m_i, zero, zero, acc, acc, q, offs_m, middle, K_head, V_head, BIAS_row,
                                        stride_kn, stride_vn, partial_start, partial_end, full_start, full_end,
                                        TABLES, SEG_row, pattern, qk_scale, alpha, N, HEAD_DIM, BLOCK_K, BLOCK_N,
                                        BLOCK_D, HAS_BIAS, PROB, 1, PRECISION, SEGMENTED)
        low = tl.where(mass >= 1.0, middle, low)
        high = tl.where(mass >= 1.0, high, middle)
    tau = low
    for _ in range(NEWTON_STEPS):  # tau += (f(tau) - 1) / -f'(tau), with -f' = sum G / (α - 1)
        _, mass, slope, _, _ = _entmax_pass(m_i, zero, zero, acc, acc, q, offs_m, tau, K_head, V_head, BIAS_row,
                                            stride_kn, stride_vn, partial_start, partial_end, full_start, full_end,
                                            TABLES, SEG_row, pattern, qk_scale, alpha, N, HEAD_DIM, BLOCK_K, BLOCK_N,
                                            BLOCK_D, HAS_BIAS, PROB, 1, PRECISION, SEGMENTED)
        tau = tl.where(slope > 0.0, tau + (mass - 1.0) * (alpha - 1.0) / tl.where(slope > 0.0, slope, 1.0), tau)
    _, total, weight, acc, accw = _entmax_pass(m_i, zero, zero, acc, acc, q, offs_m, tau, K_head, V_head, BIAS_row,
                                               stride_kn, stride_vn, partial_start, partial_end, full_start, full_end,
                                               TABLES, SEG_row, pattern, qk_scale, alpha, N, HEAD_DIM, BLOCK_K, BLOCK_N,
                                               BLOCK_D, HAS_BIAS, PROB, 2, PRECISION, SEGMENTED)
    empty = total == 0.0
    norm = tl.where(empty, 0.0, 1.0 / tl.where(empty, 1.0, total))
    out = acc * norm[:, None]
    wbar = accw / tl.where(weight == 0.0, 1.0, weight)[:, None]
    tl.store(Out + batch.to(tl.int64) * stride_ob + head.to(tl.int64) * stride_oh
             + rows_q[:, None].to(tl.int64) * stride_on + offs_d[None, :],
             out.to(Out.dtype.element_ty), mask=io_mask)
    rows = batch_head.to(tl.int64) * M + rows_q
    tl.store(TAU + rows, tl.where(empty, 0.0, tau), mask=row_ok)
    tl.store(NORM + rows, norm, mask=row_ok)
    tl.store(WBAR + rows[:, None] * BLOCK_D + offs_d[None, :], wbar, mask=row_ok[:, None])


# ---- backward ------------------------------------------------------------------------------


@triton.jit
def _probabilities(scores, row_stat, row_norm, alpha, PROB: tl.constexpr):
    """(P, G) of a tile from its scores, with dS = G * (dP - delta) (see `_attn_bwd_dq`).
    Softmax (PROB 0): P = 2^(s - lse), scores and lse in base 2, and G = P. Entmax (PROB 1:
    sparsemax, 2: 1.5-entmax, 3: any α in (1, 2)): the scores are z = (α - 1) s, row_stat the
    row's threshold τ and row_norm 1 / the row's sum, P = [z - τ]_+^(1 / (α - 1)) * row_norm
    and G = P^(2 - α) where P > 0, else 0 (the entmax Jacobian: Peters et al. 2019)."""
    if PROB == 0:
        p = tl.math.exp2(scores - row_stat)
        return p, p
    else:
        x = tl.maximum(scores - row_stat, 0.0)
        if PROB == 1:
            return x * row_norm, tl.where(x > 0.0, 1.0, 0.0)
        elif PROB == 2:
            return x * x * row_norm, x * tl.sqrt(row_norm)
        else:
            support = (x > 0.0) & (row_norm > 0.0)
            # log2 P, taken only where P > 0 (no log of 0)
            log_p = (tl.math.log2(tl.where(support, x, 1.0)) / (alpha - 1.0)
                     + tl.math.log2(tl.where(support, row_norm, 1.0)))
            return (tl.where(support, tl.math.exp2(log_p), 0.0),
                    tl.where(support, tl.math.exp2(log_p * (2.0 - alpha)), 0.0))


@triton.jit
def _dq_blocks(dq, q, do, lse2, norm, delta, offs_m, K_head, V_head, BIAS_row, stride_kn, stride_vn, start,
               end, BLOCK_LIST, TABLES, SEG, pattern, qk_scale, alpha, N, HEAD_DIM: tl.constexpr,
               BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
               APPLY_PATTERN: tl.constexpr, HAS_BIAS: tl.constexpr, PROB: tl.constexpr,
               PRECISION: tl.constexpr, SEGMENTED: tl.constexpr):
    """dQ (up to the softmax scale) over the key blocks BLOCK_LIST[start:end]:
    P = exp(S - lse), dS = P * (dO V^T - delta), dQ += dS K; for entmax (PROB > 0), P and
    the G of dS = G * (dO V^T - delta) come from `_probabilities`."""
    offs_d = tl.arange(0, BLOCK_D)
    local_n = tl.arange(0, BLOCK_N)
    for step in range(start * (BLOCK_K // BLOCK_N), end * (BLOCK_K // BLOCK_N)):
        key_block = tl.load(BLOCK_LIST + step // (BLOCK_K // BLOCK_N))
        start_n = key_block * BLOCK_K + (step % (BLOCK_K // BLOCK_N)) * BLOCK_N
        offs_n = start_n + local_n
        kv_mask = (offs_n[None, :] < N) & (offs_d[:, None] < HEAD_DIM)
        kT = tl.load(K_head + start_n.to(tl.int64) * stride_kn + local_n[None, :] * stride_kn
                     + offs_d[:, None], mask=kv_mask, other=0.0)
        vT = tl.load(V_head + start_n.to(tl.int64) * stride_vn + local_n[None, :] * stride_vn
                     + offs_d[:, None], mask=kv_mask, other=0.0)
        qk = tl.dot(q, kT, input_precision=PRECISION) * qk_scale
        if HAS_BIAS:
            qk += _load_key_bias(BIAS_row, offs_n, N)[None, :]
        p, g = _probabilities(qk, lse2[:, None], norm[:, None], alpha, PROB)
        if APPLY_PATTERN:
            p = tl.where(_allowed(offs_m[:, None], offs_n[None, :], N, pattern, TABLES, SEG), p, 0.0)
        elif SEGMENTED:
            p = tl.where(_segment_cut(offs_m[:, None], offs_n[None, :], N, pattern, TABLES, SEG, tl.min(offs_m, 0),
                                      tl.max(offs_m, 0), start_n, start_n + BLOCK_N - 1), p, 0.0)
        else:
            p = tl.where(offs_n[None, :] < N, p, 0.0)
        if PROB == 0:
            g = p
        else:
            g = tl.where(p > 0.0, g, 0.0)
        dp = tl.dot(do, vT, input_precision=PRECISION)
        ds = g * (dp - delta[:, None])
        dq = tl.dot(ds.to(kT.dtype), tl.trans(kT), dq, input_precision=PRECISION)
    return dq


@triton.jit(do_not_specialize=["N", "M", "Q_OFF", "NUM_ITEMS", "NUM_SLOTS"])
def _attn_bwd_dq(Q, K, V, BIAS, DO, DQ, LSE, NORM, DELTA, TABLES, HEAD_PATTERN, DQ_S, SEG, SEG_RANGES,
                 stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                 stride_vb, stride_vh, stride_vn, stride_bb, stride_bh, stride_dob, stride_doh, stride_don,
                 stride_dqb, stride_dqh, stride_dqn,
                 H, GROUP, qk_scale, sm_scale, alpha, N, M, Q_OFF, HEAD_DIM: tl.constexpr,
                 BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                 PROB: tl.constexpr, PRECISION: tl.constexpr, SPLIT: tl.constexpr,
                 NUM_ITEMS, NUM_SLOTS, SEGMENTED: tl.constexpr = False):
    """One program per tile of BLOCK_M queries and per (batch, head), over the same key-block
    lists (or, with SPLIT, work items) as the forward pass. A piece of a cut list writes its
    float32 dQ to its scratch slot, for _sum_slots to add up.

    Softmax (PROB 0): LSE is the natural-log log-sum-exp and DELTA_i = dO_i . O_i. Entmax:
    LSE holds the thresholds τ, NORM 1 / the rows' sums, and DELTA_i = dO_i . (sum_j G_ij V_j
    / sum_j G_ij) (the WBAR of `_entmax_fwd`); the scores there are z = (α - 1) s."""
    tile, batch_head = _program(NUM_ITEMS * (BLOCK_Q // BLOCK_M), SPLIT)
    batch, head, kv_head, pattern, start_m, sub, slot, partial_start, partial_end, full_start, full_end = (
        _query_program(tile, batch_head, HEAD_PATTERN, TABLES, H, GROUP, NUM_ITEMS, N, (Q_OFF // BLOCK_M) * BLOCK_M,
                       BLOCK_Q, BLOCK_M, SPLIT, SEG_RANGES, SEGMENTED))
    offs_m = start_m + tl.arange(0, BLOCK_M)
    local_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    SEG_row = SEG + batch.to(tl.int64) * 3 * N
    rows_q = offs_m - Q_OFF  # the rows of q, dO, dQ and the row statistics
    row_ok = (rows_q >= 0) & (rows_q < M)
    io_mask = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    q = _load_rows(Q, batch, head, start_m - Q_OFF, stride_qb, stride_qh, stride_qn, M, HEAD_DIM, BLOCK_M, BLOCK_D)
    do = _load_rows(DO, batch, head, start_m - Q_OFF, stride_dob, stride_doh, stride_don, M, HEAD_DIM, BLOCK_M,
                    BLOCK_D)
    lse = tl.load(LSE + batch_head.to(tl.int64) * M + rows_q, mask=row_ok, other=0.0)
    norm = lse
    if PROB == 0:
        # An empty row (lse = -inf) is cut by the predicate everywhere; give it a finite value so
        # that exp2 below never sees -inf - -inf.
        lse2 = tl.where(lse == float("-inf"), 0.0, lse * LOG2E)
    else:
        lse2 = lse  # τ, finite (0 for an empty row, whose NORM is 0)
        norm = tl.load(NORM + batch_head.to(tl.int64) * M + rows_q, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + batch_head.to(tl.int64) * M + rows_q, mask=row_ok, other=0.0)
    K_head = K + batch.to(tl.int64) * stride_kb + kv_head.to(tl.int64) * stride_kh
    V_head = V + batch.to(tl.int64) * stride_vb + kv_head.to(tl.int64) * stride_vh
    BIAS_row = BIAS + batch.to(tl.int64) * stride_bb + head.to(tl.int64) * stride_bh

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    dq = _dq_blocks(dq, q, do, lse2, norm, delta, offs_m, K_head, V_head, BIAS_row, stride_kn, stride_vn,
                    partial_start, partial_end, _table(TABLES, PARTIAL_IDX), TABLES, SEG_row, pattern, qk_scale,
                    alpha, N, HEAD_DIM, BLOCK_K, BLOCK_N, BLOCK_D, True, HAS_BIAS, PROB, PRECISION, SEGMENTED)
    dq = _dq_blocks(dq, q, do, lse2, norm, delta, offs_m, K_head, V_head, BIAS_row, stride_kn, stride_vn,
                    full_start, full_end, _table(TABLES, FULL_IDX), TABLES, SEG_row, pattern, qk_scale, alpha,
                    N, HEAD_DIM, BLOCK_K, BLOCK_N, BLOCK_D, False, HAS_BIAS, PROB, PRECISION, SEGMENTED)
    DQ_tile = (DQ + batch.to(tl.int64) * stride_dqb + head.to(tl.int64) * stride_dqh
               + rows_q[:, None].to(tl.int64) * stride_dqn + offs_d[None, :])
    if SPLIT:
        if slot >= 0:
            scratch = (batch_head.to(tl.int64) * NUM_SLOTS + slot) * BLOCK_Q + sub * BLOCK_M + local_m
            tl.store(DQ_S + scratch[:, None] * BLOCK_D + offs_d[None, :], dq * sm_scale)
        else:
            tl.store(DQ_tile, (dq * sm_scale).to(DQ.dtype.element_ty), mask=io_mask)
    else:
        tl.store(DQ_tile, (dq * sm_scale).to(DQ.dtype.element_ty), mask=io_mask)


@triton.jit
def _dkdv_blocks(dk, dv, d_bias, k, v, bias, offs_n, Q_head, DO_head, LSE_head, NORM_head, DELTA_head,
                 stride_qn, stride_don, start, end, BLOCK_LIST, TABLES, SEG, pattern, qk_scale, alpha,
                 N, M, Q_OFF, HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_D: tl.constexpr, APPLY_PATTERN: tl.constexpr, HAS_BIAS: tl.constexpr,
                 PROB: tl.constexpr, PRECISION: tl.constexpr, SEGMENTED: tl.constexpr):
    """dK (up to the softmax scale) and dV of one key tile over the query blocks
    BLOCK_LIST[start:end], each BLOCK_Q queries taken BLOCK_M at a time, computed transposed:
    P^T = exp(K Q^T + bias - lse), dV += P^T dO, dS^T = P^T * (V dO^T - delta), dK += dS^T Q,
    and with HAS_BIAS d_bias += the sum of dS^T over the queries (bias: the tile's keys' bias
    in base 2; d_bias: float32 [BLOCK_N]). Entmax (PROB > 0): as in `_dq_blocks`. Query rows
    are absolute; q, dO and the row statistics hold the M rows from Q_OFF (others count 0)."""
    offs_d = tl.arange(0, BLOCK_D)
    local_m = tl.arange(0, BLOCK_M)
    for step in range(start * (BLOCK_Q // BLOCK_M), end * (BLOCK_Q // BLOCK_M)):
        query_block = tl.load(BLOCK_LIST + step // (BLOCK_Q // BLOCK_M))
        start_m = query_block * BLOCK_Q + (step % (BLOCK_Q // BLOCK_M)) * BLOCK_M
        offs_m = start_m + local_m
        rows_q = offs_m - Q_OFF
        row_ok = (rows_q >= 0) & (rows_q < M)
        qT = tl.load(Q_head + rows_q[None, :].to(tl.int64) * stride_qn
                     + offs_d[:, None], mask=row_ok[None, :] & (offs_d[:, None] < HEAD_DIM),
                     other=0.0)
        do = tl.load(DO_head + rows_q[:, None].to(tl.int64) * stride_don
                     + offs_d[None, :], mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM),
                     other=0.0)
        lse = tl.load(LSE_head + rows_q, mask=row_ok, other=0.0)
        norm = lse
        if PROB == 0:
            lse2 = tl.where(lse == float("-inf"), 0.0, lse * LOG2E)
        else:
            lse2 = lse
            norm = tl.load(NORM_head + rows_q, mask=row_ok, other=0.0)
        delta = tl.load(DELTA_head + rows_q, mask=row_ok, other=0.0)
        qkT = tl.dot(k, qT, input_precision=PRECISION) * qk_scale
        if HAS_BIAS:
            qkT += bias[:, None]
        pT, gT = _probabilities(qkT, lse2[None, :], norm[None, :], alpha, PROB)
        if APPLY_PATTERN:
            pT = tl.where(_allowed(offs_m[None, :], offs_n[:, None], N, pattern, TABLES, SEG) & row_ok[None, :],
                          pT, 0.0)
        elif SEGMENTED:
            pT = tl.where(_segment_cut(offs_m[None, :], offs_n[:, None], N, pattern, TABLES, SEG, start_m,
                                       start_m + BLOCK_M - 1, tl.min(offs_n, 0), tl.max(offs_n, 0))
                          & row_ok[None, :], pT, 0.0)
        else:
            pT = tl.where(row_ok[None, :], pT, 0.0)
        if PROB == 0:
            gT = pT
        else:
            gT = tl.where(pT > 0.0, gT, 0.0)
        dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=PRECISION)
        dpT = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        dsT = gT * (dpT - delta[None, :])
        if HAS_BIAS:
            d_bias += tl.sum(dsT, 1)
        dk = tl.dot(dsT.to(qT.dtype), tl.trans(qT), dk, input_precision=PRECISION)
    return dk, dv, d_bias


@triton.jit(do_not_specialize=["N", "M", "Q_OFF", "NUM_ITEMS", "NUM_SLOTS"])
def _attn_bwd_dkdv(Q, K, V, BIAS, DO, DK, DV, D_BIAS, LSE, NORM, DELTA, TABLES, HEAD_PATTERN, DK_S, DV_S, SEG,
                   SEG_RANGES,
                   stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn, stride_bb, stride_bh, stride_dob, stride_doh, stride_don,
                   stride_dkb, stride_dkh, stride_dkn, stride_dvb, stride_dvh, stride_dvn,
                   H, H_KV, GROUP, qk_scale, sm_scale, alpha, N, M, Q_OFF, HEAD_DIM: tl.constexpr,
                   BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                   PROB: tl.constexpr, PRECISION: tl.constexpr, SPLIT: tl.constexpr,
                   NUM_ITEMS, NUM_SLOTS, SEGMENTED: tl.constexpr = False):
    """One program per tile of BLOCK_N keys and per (batch, key/value head). It sums over the
    GROUP query heads that share the key/value head (grouped-query attention), each through its
    own pattern's transposed lists, so dK and dV are written once, without atomics. With SPLIT,
    program t is sub-tile t % (BLOCK_K // BLOCK_N) of work item t // (BLOCK_K // BLOCK_N); the
    pieces of a cut list are the same for every pattern, so the loop over grouped heads stays,
    and each piece writes its float32 dK and dV to its scratch slot, for _sum_slots.

    With HAS_BIAS, it also writes d key_bias of each grouped head, float32 D_BIAS [batch,
    heads, N] (zeroed first): directly, or for a piece of a cut list by atomic adds. LSE, NORM
    and DELTA: as in `_attn_bwd_dq`. With SEGMENTED (never with SPLIT), SEG holds the segment
    data [batch, 3, N] and SEG_RANGES, int32 [batch x heads, key blocks, 4], each batch row's
    ranges of the transposed lists, cut to the query blocks that may share a segment with the
    key block (`_segments`)."""
    tile, batch_kv_head = _program(NUM_ITEMS * (BLOCK_K // BLOCK_N), SPLIT)
    batch = batch_kv_head // H_KV
    kv_head = batch_kv_head % H_KV
    SEG_row = SEG + batch.to(tl.int64) * 3 * N
    if SPLIT:
        item = tile // (BLOCK_K // BLOCK_N)
        sub = tile % (BLOCK_K // BLOCK_N)
        item_info = _table(TABLES, K_ITEM_INFO)
        key_block = tl.load(item_info + 2 * item)
        slot = tl.load(item_info + 2 * item + 1)
        start_n = key_block * BLOCK_K + sub * BLOCK_N
    else:
        start_n = tile * BLOCK_N
        key_block = start_n // BLOCK_K

    offs_n = start_n + tl.arange(0, BLOCK_N)
    local_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    io_mask = (offs_n[:, None] < N) & (offs_d[None, :] < HEAD_DIM)
    k = _load_rows(K, batch, kv_head, start_n, stride_kb, stride_kh, stride_kn, N, HEAD_DIM, BLOCK_N, BLOCK_D)
    v = _load_rows(V, batch, kv_head, start_n, stride_vb, stride_vh, stride_vn, N, HEAD_DIM, BLOCK_N, BLOCK_D)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for g in range(GROUP):
        head = kv_head * GROUP + g
        pattern = tl.load(HEAD_PATTERN + head)
        if SPLIT:
            _, _, partial_start, partial_end, full_start, full_end = _item_ranges(
                _table(TABLES, K_ITEMS), _table(TABLES, K_ITEM_INFO), item, pattern, NUM_ITEMS)
        else:
            col = pattern * (tl.cdiv(N, BLOCK_K) + 1) + key_block
            partial_ptr, full_ptr = _table(TABLES, T_PARTIAL_PTR), _table(TABLES, T_FULL_PTR)
            partial_start, partial_end = tl.load(partial_ptr + col), tl.load(partial_ptr + col + 1)
            full_start, full_end = tl.load(full_ptr + col), tl.load(full_ptr + col + 1)
        if SEGMENTED:
            ranges = SEG_RANGES + ((batch.to(tl.int64) * H + head) * tl.cdiv(N, BLOCK_K) + key_block) * 4
            partial_start, partial_end = tl.load(ranges), tl.load(ranges + 1)
            full_start, full_end = tl.load(ranges + 2), tl.load(ranges + 3)
        Q_head = Q + batch.to(tl.int64) * stride_qb + head.to(tl.int64) * stride_qh
        DO_head = DO + batch.to(tl.int64) * stride_dob + head.to(tl.int64) * stride_doh
        row_stats = (batch.to(tl.int64) * H + head) * M
        d_bias = tl.zeros([BLOCK_N], dtype=tl.float32)
        bias = d_bias
        if HAS_BIAS:
            bias = _load_key_bias(BIAS + batch.to(tl.int64) * stride_bb + head.to(tl.int64) * stride_bh, offs_n, N)
        dk, dv, d_bias = _dkdv_blocks(dk, dv, d_bias, k, v, bias, offs_n, Q_head, DO_head, LSE + row_stats,
                                      NORM + row_stats, DELTA + row_stats, stride_qn, stride_don, partial_start,
                                      partial_end, _table(TABLES, T_PARTIAL_IDX), TABLES, SEG_row, pattern, qk_scale,
                                      alpha, N, M, Q_OFF, HEAD_DIM, BLOCK_Q, BLOCK_M, BLOCK_D, True, HAS_BIAS, PROB,
                                      PRECISION, SEGMENTED)
        dk, dv, d_bias = _dkdv_blocks(dk, dv, d_bias, k, v, bias, offs_n, Q_head, DO_head, LSE + row_stats,
                                      NORM + row_stats, DELTA + row_stats, stride_qn, stride_don, full_start,
                                      full_end, _table(TABLES, T_FULL_IDX), TABLES, SEG_row, pattern, qk_scale,
                                      alpha, N, M, Q_OFF, HEAD_DIM, BLOCK_Q, BLOCK_M, BLOCK_D, False, HAS_BIAS, PROB,
                                      PRECISION, SEGMENTED)
        if HAS_BIAS:
            D_BIAS_row = D_BIAS + row_stats + offs_n
            if SPLIT:
                if slot >= 0:
                    tl.atomic_add(D_BIAS_row, d_bias, mask=offs_n < N)
                else:
                    tl.store(D_BIAS_row, d_bias, mask=offs_n < N)
            else:
                tl.store(D_BIAS_row, d_bias, mask=offs_n < N)
    DK_tile = (DK + batch.to(tl.int64) * stride_dkb + kv_head.to(tl.int64) * stride_dkh
               + start_n.to(tl.int64) * stride_dkn + local_n[:, None] * stride_dkn + offs_d[None, :])
    DV_tile = (DV + batch.to(tl.int64) * stride_dvb + kv_head.to(tl.int64) * stride_dvh
               + start_n.to(tl.int64) * stride_dvn + local_n[:, None] * stride_dvn + offs_d[None, :])
    if SPLIT:
        if slot >= 0:
            scratch = (batch_kv_head.to(tl.int64) * NUM_SLOTS + slot) * BLOCK_K + sub * BLOCK_N + local_n
            tl.store(DK_S + scratch[:, None] * BLOCK_D + offs_d[None, :], dk * sm_scale)
            tl.store(DV_S + scratch[:, None] * BLOCK_D + offs_d[None, :], dv)
        else:
            tl.store(DK_tile, (dk * sm_scale).to(DK.dtype.element_ty), mask=io_mask)
            tl.store(DV_tile, dv.to(DV.dtype.element_ty), mask=io_mask)
    else:
        tl.store(DK_tile, (dk * sm_scale).to(DK.dtype.element_ty), mask=io_mask)
        tl.store(DV_tile, dv.to(DV.dtype.element_ty), mask=io_mask)


# ---- Triton's interpreter ------------------------------------------------------------------


class _Interpreted:
    """A @triton.jit function under Triton's interpreter (TRITON_INTERPRET=1), called without
    re-patching triton.language. Each call of an InterpretedFunction from inside a kernel
    patches triton.language for the callee's globals again (InterpretedFunction.__call__),
    though the kernel's launch has patched it for these very globals (every helper lives in
    this module): that took about a fifth of the interpreter's time in these kernels. A call
    runs the same rewritten function the interpreter would run; a launch (``kernel[grid]``)
    and every attribute are the InterpretedFunction's own."""

    def __init__(self, function):
        self.function = function

    def __call__(self, *args, **kwargs):
        return self.function.rewrite()(*args, **kwargs)

    def __getitem__(self, grid):
        return self.function[grid]

    def __getattr__(self, name):
        return getattr(self.function, name)


def _call_jit_functions_directly(namespace):
    """Under the interpreter, each jit function of ``namespace`` (a module's globals) as an
    `_Interpreted`; compiled kernels (no interpreter) are left as they are."""
    interpreted = getattr(getattr(triton.runtime, "interpreter", None), "InterpretedFunction", None)
    if interpreted is None or not hasattr(interpreted, "rewrite"):  # another Triton: its own calls
        return
    for name, value in list(namespace.items()):
        if isinstance(value, interpreted):
            namespace[name] = _Interpreted(value)


_call_jit_functions_directly(globals())


# ---- launching -----------------------------------------------------------------------------

# Kernel tiles and launch settings, by head dimension (the padded power of two): for each pass,
# (rows of the program's own tile, rows of the tiles it loops over, num_warps, num_stages).
# The forward and dQ passes tile queries (BLOCK_M) and loop over keys (BLOCK_N); the dK/dV pass
# tiles keys (BLOCK_N) and loops over queries (BLOCK_M). For 16-bit inputs they follow Triton's
# fused-attention tutorial for H100 (forward 128 x 64; backward 128 x 32 with the loop over the
# small side), with 8 warps where the accumulators are large and fewer pipeline stages at head
# dimension 256. Compiled for sm_90, every setting fits an H100's 227 KiB of shared memory and
# the 16-bit ones up to head dimension 128 fit the registers without spilling (256 spills a
# little in dK/dV); float32 tiles are smaller (twice the bytes, and tf32x3 splits each operand
# in three) and still spill some registers from head dimension 64 up. Each tile is cut to the
# largest power of two that divides the block size, so a tile never straddles two blocks.
TILES = {
    #  D:   forward            dQ                  dK/dV
    16:  ((128, 64, 4, 3), (128, 32, 4, 3), (128, 32, 8, 3)),
    32:  ((128, 64, 4, 3), (128, 32, 4, 3), (128, 32, 8, 3)),
    64:  ((128, 64, 4, 3), (128, 32, 4, 3), (128, 32, 8, 3)),
    128: ((128, 64, 8, 3), (128, 32, 8, 3), (128, 32, 8, 3)),
    256: ((64, 32, 8, 2), (64, 32, 8, 2), (64, 32, 8, 2)),
}
TILES_FLOAT32 = {
    16:  ((64, 64, 4, 2), (64, 32, 4, 2), (64, 32, 4, 2)),
    32:  ((64, 64, 4, 2), (64, 32, 4, 2), (64, 32, 4, 2)),
    64:  ((64, 64, 8, 2), (64, 32, 8, 2), (64, 32, 8, 2)),
    128: ((64, 32, 8, 2), (64, 32, 8, 2), (64, 32, 8, 2)),
    256: ((32, 32, 8, 1), (32, 16, 8, 1), (32, 16, 8, 1)),
}

class Plan:
    """What the kernels read for one length of the keys n: the block tables (TABLES: packed
    lines as in _TABLES, or an int32 array), the work items of each direction (SPLIT, items,
    slots, splits) and the pattern id of each layer's heads. The kernels' source does not
    depend on n (it is a run-time argument, like the predicates' n-dependent constants, which
    TABLES holds): PLAN is the plan of the n this module was generated for, and patterndsl
    passes the plan of any other n to `attention(..., plan=)`."""

    def __init__(self, n, tables, split_q=(False, 0, 0, 0), split_k=(False, 0, 0, 0), head_patterns=None,
                 segment_ranges=None):
        self.n = int(n)
        self.split_q, self.num_q_items, self.num_q_slots, self.num_q_splits = split_q
        self.split_k, self.num_k_items, self.num_k_slots, self.num_k_splits = split_k
        self.head_patterns = HEAD_PATTERNS if head_patterns is None else head_patterns
        self.segment_ranges = SEGMENT_RANGES if segment_ranges is None else segment_ranges
        self._packed = tables
        self._on_device = {}
        self._head_pattern_tensors = {}
        self._list_keys = {}

    def list_keys(self, device):
        """For `_segments`: the entries of each block list as ascending int64 keys (row x (blocks
        of the other side + 1) + block, row = pattern x (blocks + 1) + block), on ``device``, for
        "partial", "full", "t_partial" and "t_full"."""
        key = str(device)
        if key not in self._list_keys:
            table = self.tables("cpu").to(torch.int64)
            num_q, num_k = triton.cdiv(self.n, BLOCK_Q), triton.cdiv(self.n, BLOCK_K)
            keys = {}
            for i, (name, other) in enumerate((("partial", num_k), ("full", num_k), ("t_partial", num_q),
                                               ("t_full", num_q))):
                ptr_at, idx_at = int(table[2 * i]), int(table[2 * i + 1])
                ptr = table[ptr_at:idx_at]
                idx = table[idx_at:idx_at + int(ptr[-1])]
                rows = torch.repeat_interleave(torch.arange(ptr.numel() - 1), ptr[1:] - ptr[:-1])
                keys[name] = (rows * (other + 1) + idx).to(device)
            self._list_keys[key] = keys
        return self._list_keys[key]

    def tables(self, device):
        """TABLES on ``device``, decoded once."""
        key = str(device)
        if key not in self._on_device:
            if isinstance(self._packed, (tuple, list)):
                data = bytearray(zlib.decompress(base64.b64decode("".join(self._packed))))
                table = torch.frombuffer(data, dtype=torch.int32).clone()
            else:
                table = torch.as_tensor(self._packed, dtype=torch.int32)
            self._on_device[key] = table.to(device)
        return self._on_device[key]

    def heads(self, layer, heads, device):
        """int32 [heads]: the pattern id of each query head of ``layer``."""
        key = (layer % LAYERS, heads, str(device))
        if key not in self._head_pattern_tensors:
            ids = self.head_patterns[layer % LAYERS]
            ids = ids * heads if len(ids) == 1 else ids
            self._head_pattern_tensors[key] = torch.tensor(ids, dtype=torch.int32, device=device)
        return self._head_pattern_tensors[key]


PLAN = Plan(N, _TABLES, (SPLIT_Q, NUM_Q_ITEMS, NUM_Q_SLOTS, NUM_Q_SPLITS),
            (SPLIT_K, NUM_K_ITEMS, NUM_K_SLOTS, NUM_K_SPLITS), HEAD_PATTERNS, SEGMENT_RANGES)


def _tables(device, plan=None):
    """TABLES on ``device`` (of ``plan``, default PLAN), decoded once."""
    return (plan or PLAN).tables(device)


def _head_patterns(layer, heads, device, plan=None):
    """int32 [heads]: the pattern id of each query head of ``layer``."""
    return (plan or PLAN).heads(layer, heads, device)


def _fit(preferred, block):
    """The largest power of two <= preferred that divides ``block`` (a multiple of 16)."""
    tile = preferred
    while block % tile:
        tile //= 2
    return tile


def _strides(t):
    return t.stride(0), t.stride(1), t.stride(2)


def _interpreting():
    import os

    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


# The checks of q, k, v every entry point shares (patterndsl/inputs.py); a generated module
# holds their source here, so it reports the same messages without patterndsl.
from patterndsl.inputs import layer_problem, qkv_problem  # noqa: E402  (replaced in a generated module)

# Triton's interpreter (TRITON_INTERPRET=1) is not thread-safe: calls into the kernels are
# serialized while it runs them.
_INTERPRETER_LOCK = threading.RLock()


@contextlib.contextmanager
def _serialized():
    if _interpreting():
        with _INTERPRETER_LOCK:
            yield
    else:
        yield


def _check(q, k, v, layer, scale=None, q_offset=0, n=None):
    """The checks of attention()'s arguments, raising ValueError. q may hold fewer rows than
    k and v (rows q_offset.. of the pattern at n = the keys' length)."""
    problem = layer_problem(layer)
    if problem is not None:
        raise ValueError(problem)
    n = PLAN.n if n is None else n
    full_q = q
    shaped = all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (q, k, v))
    if shaped and q.shape[2] != k.shape[2] and 1 <= q.shape[2] < k.shape[2]:
        full_q = q[:, :, :1].expand(q.shape[0], q.shape[1], k.shape[2], q.shape[3])  # a view: checks the rest
    problem = qkv_problem(full_q, k, v, n, HEADS, scale, max_head_dim=256)
    if problem is not None:
        raise ValueError(problem[0] + (f" ({problem[1]})" if problem[1] else ""))
    if isinstance(q_offset, bool) or not isinstance(q_offset, int) or q_offset < 0:
        raise ValueError(f"q_offset must be a non-negative integer, got {q_offset!r}")
    if q.shape[2] == 0 or q_offset + q.shape[2] > k.shape[2]:
        raise ValueError(f"q of length {q.shape[2]} at q_offset {q_offset} must lie within the "
                         f"{k.shape[2]} keys (rows q_offset .. q_offset + length - 1)")
    if q.device.type == "cpu" and not _interpreting():
        raise ValueError("Triton kernels need a GPU; on CPU set TRITON_INTERPRET=1 (slow) before "
                         "importing this module")


def _settings(head_dim, dtype):
    block_d = max(16, triton.next_power_of_2(head_dim))
    forward, dq, dkdv = (TILES_FLOAT32 if dtype == torch.float32 else TILES)[block_d]
    # float32 products in tl.dot as three TF32 products (about float32's accuracy, on tensor
    # cores), so that the kernels are as exact as torch's float32 attention.
    precision = "tf32x3" if dtype == torch.float32 else "tf32"
    return block_d, forward, dq, dkdv, precision


def _grid(n, block_m, items, block_rows, heads, q_offset=0, m=None):
    """A tile per BLOCK_M rows (of q_offset .. q_offset + m - 1, the tiles aligned to BLOCK_M)
    and per (batch, head), or with work items (SPLIT) a tile per BLOCK_M rows of each item's
    block and per (batch, head) on one axis (see _program)."""
    if items:
        return (items * (block_rows // block_m) * heads, 1)
    m = n if m is None else m
    return (triton.cdiv(q_offset + m, block_m) - q_offset // block_m, heads)


# Tiles of the kernels that merge the pieces of cut lists (memory-bound: small tiles, many programs).
MERGE_TILE, MERGE_WARPS = 64, 4


def _scratch(rows, slots, block_rows, block_d, device):
    """float32 scratch for the pieces of cut lists: [rows (batch x heads), slots, block, BLOCK_D]."""
    return torch.empty(rows * slots * block_rows * block_d, device=device, dtype=torch.float32)


def _merge_forward(out, lse, acc_s, m_s, l_s, block_d, plan):
    """out and lse of the cut query blocks, merged from their pieces' scratch states."""
    batch, heads, n, head_dim = out.shape
    tile = _fit(MERGE_TILE, BLOCK_Q)
    _fwd_combine[(plan.num_q_splits * (BLOCK_Q // tile), batch * heads)](
        out, lse, plan.tables(out.device), acc_s, m_s, l_s, *_strides(out), heads, n, head_dim,
        BLOCK_Q=BLOCK_Q, BLOCK_M=tile, BLOCK_D=block_d, NUM_SLOTS=plan.num_q_slots, num_warps=MERGE_WARPS)


def _sum_into(scratch, out, side, block_d, plan):
    """out's rows of the cut blocks := the sum of their pieces' scratch slots; ``side`` is "Q"
    (dQ: cut query blocks) or "K" (dK, dV: cut key blocks)."""
    batch, heads, n, head_dim = out.shape
    splits, count, slots, block_rows = ((Q_SPLITS, plan.num_q_splits, plan.num_q_slots, BLOCK_Q) if side == "Q" else
                                        (K_SPLITS, plan.num_k_splits, plan.num_k_slots, BLOCK_K))
    tile = _fit(MERGE_TILE, block_rows)
    _sum_slots[(count * (block_rows // tile), batch * heads)](
        scratch, out, plan.tables(out.device), *_strides(out), heads, n, HEAD_DIM=head_dim,
        BLOCK_ROWS=block_rows, BLOCK_M=tile, BLOCK_D=block_d, NUM_SLOTS=slots, SPLITS=int(splits), num_warps=MERGE_WARPS)


def _key_bias_view(key_bias, q, unit=1.0, n=None):
    """``key_bias`` (broadcastable to [batch, heads, n], n the keys' length, default q's) as
    the kernels read it: times ``unit`` (the scores' unit), a float32 [batch, heads, n] view
    with unit stride over keys; raises ValueError."""
    if not isinstance(key_bias, torch.Tensor) or not key_bias.is_floating_point():
        raise ValueError(f"key_bias must be a floating-point tensor, got {type(key_bias).__name__}"
                         + (f" of {key_bias.dtype}" if isinstance(key_bias, torch.Tensor) else ""))
    shape = (q.shape[0], q.shape[1], q.shape[2] if n is None else n)
    try:
        expanded = (key_bias.float() * unit).expand(shape)
    except RuntimeError:
        raise ValueError(f"key_bias of shape {tuple(key_bias.shape)} does not broadcast to [batch, heads, "
                         f"n] = {list(shape)}") from None
    if key_bias.device != q.device:
        raise ValueError(f"key_bias is on {key_bias.device}, q on {q.device}")
    return expanded if expanded.stride(-1) == 1 else expanded.contiguous()


# The search of each row's entmax threshold (see `_entmax_fwd`): halvings of its bracket
# [max z - 1, max z), to 2^-10 of it, then Newton's steps from below, which converge from there
# (quadratically; sparsemax exactly once the support is found) well within float32's precision.
BISECTIONS, NEWTON_STEPS = 10, 6


def _prob_mode(alpha):
    """The kernels' PROB of ``alpha``: 0 softmax (None or 1), 1 sparsemax (2), 2 1.5-entmax,
    3 any other α-entmax, α in (1, 2); raises ValueError."""
    if alpha is None:
        return 0
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 1 <= alpha <= 2:
        raise ValueError(f"alpha must be None or 1 (softmax), or in (1, 2] (entmax; 2 is sparsemax), got {alpha!r}")
    return 0 if alpha == 1 else 1 if alpha == 2 else 2 if alpha == 1.5 else 3


def _entmax_forward(q, k, v, bias, head_pattern, sm_scale, alpha, plan=None, q_offset=0, seg=None):
    """(out, τ, 1 / row sums, WBAR) of α-entmax attention (see `_entmax_fwd`); ``seg``: the
    `_segments` of a pattern reading segment ids, else None."""
    plan = plan or PLAN
    batch, heads, m, head_dim = q.shape
    n = k.shape[2]
    block_d, (tile_m, tile_n, warps, stages), _, _, precision = _settings(head_dim, q.dtype)
    block_m, block_n = _fit(tile_m, BLOCK_Q), _fit(tile_n, BLOCK_K)
    out = torch.empty_like(q)
    tau = torch.empty((batch, heads, m), device=q.device, dtype=torch.float32)
    norm = torch.empty_like(tau)
    wbar = torch.empty((batch, heads, m, block_d), device=q.device, dtype=torch.float32)
    bias_args = (bias, bias.stride(0), bias.stride(1)) if bias is not None else (tau, 0, 0)
    _entmax_fwd[_grid(n, block_m, 0, BLOCK_Q, batch * heads, q_offset, m)](
        q, k, v, bias_args[0], out, tau, norm, wbar, plan.tables(q.device), head_pattern,
        *_segment_args(seg, plan.tables(q.device), 1),
        *_strides(q), *_strides(k), *_strides(v), *bias_args[1:], *_strides(out),
        heads, heads // k.shape[1], sm_scale * (alpha - 1), float(alpha), n, m, q_offset, HEAD_DIM=head_dim,
        BLOCK_Q=BLOCK_Q, BLOCK_K=BLOCK_K, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        HAS_BIAS=bias is not None, PROB=_prob_mode(alpha), BISECTIONS=BISECTIONS,
        NEWTON_STEPS=NEWTON_STEPS, PRECISION=precision, SEGMENTED=seg is not None,
        num_warps=warps, num_stages=stages)
    return out, tau, norm, wbar[..., :head_dim]


# ---- run-time segments ---------------------------------------------------------------------
# A pattern that reads segment ids (`segment`, `segment_start(k)`) has block lists that hold for
# every segmentation: its partial blocks those of the pattern with `segment` read as `all`, its
# full blocks those full for the pattern read in one document (patterndsl/kernels/generate.py).
# Each call's ids become, on their device and with O(n) torch ops (a sort included), the data the
# predicate reads and, per batch row, the ranges of each block list that may share a segment.

_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _check_segments(segments, batch, n, device):
    """``segments`` as an int64 [batch, n] tensor on ``device``; raises ValueError."""
    if not isinstance(segments, torch.Tensor):
        raise ValueError(f"segments must be an integer torch tensor [batch, n], got {type(segments).__name__}")
    if segments.dtype not in _INTEGER_DTYPES and "int" not in str(segments.dtype):
        raise ValueError(f"segments must have an integer dtype, got {segments.dtype}")
    if tuple(segments.shape) != (batch, n):
        raise ValueError(f"segments has shape {tuple(segments.shape)}, but the call needs [batch, n] = [{batch}, {n}]")
    if segments.device != device:
        raise ValueError(f"segments is on {segments.device}, but q, k, v are on {device}")
    return segments.to(torch.int64)


def _block_reduce(values, size, fill, largest):
    """[batch, n] -> [batch, cdiv(n, size)]: the min (or max, ``largest``) of each run of ``size``."""
    batch, n = values.shape
    blocks = triton.cdiv(n, size)
    padded = torch.nn.functional.pad(values, (0, blocks * size - n), value=fill).view(batch, blocks, size)
    return padded.amax(-1) if largest else padded.amin(-1)


def _segments(ids, plan, head_pattern):
    """(SEG int32 [batch, 3, n], forward ranges int32 [batch, heads, query blocks, 4], transposed
    ranges int32 [batch, heads, key blocks, 4]) for int64 segment ids [batch, n].

    SEG holds per position its segment (the ids renumbered 0, 1, ... in order of value, so that
    any integer id fits int32), its rank among the positions with its id (`segment_start`) and
    the start of its run of equal ids (`_segment_cut`). A query block may share a segment only
    with the keys from the first position of any of its rows' ids to the last one: for a pattern
    `segment & …` (SEGMENT_RANGES), each list is cut to the blocks in that range (found by binary
    search in the ascending list keys), for the transposed lists likewise; other patterns keep
    their whole lists. O(n log n) for the sort, O(blocks log blocks) for the ranges: no n x n."""
    batch, n = ids.shape
    device = ids.device
    positions = torch.arange(n, device=device).expand(batch, n)
    sorted_ids, order = torch.sort(ids, dim=1, stable=True)
    starts = torch.ones_like(sorted_ids, dtype=torch.bool)
    starts[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    group_first = torch.cummax(torch.where(starts, positions, 0), dim=1).values  # in sorted order
    group_last = torch.flip(torch.cummin(torch.flip(torch.where(ends, positions, n - 1), [1]), dim=1).values, [1])

    def unsort(values):
        return torch.empty_like(values).scatter_(1, order, values)

    dense = unsort(torch.cumsum(starts, dim=1) - 1)
    rank = unsort(positions - group_first)
    first = unsort(order.gather(1, group_first))  # the stable sort keeps positions ascending in a group
    last = unsort(order.gather(1, group_last))
    change = torch.ones_like(starts)
    change[:, 1:] = ids[:, 1:] != ids[:, :-1]
    run_start = torch.cummax(torch.where(change, positions, 0), dim=1).values
    seg = torch.stack([dense, rank, run_start], dim=1).to(torch.int32).contiguous()

    num_q, num_k = triton.cdiv(n, BLOCK_Q), triton.cdiv(n, BLOCK_K)
    keys = plan.list_keys(device)
    heads = head_pattern.numel()
    patterns = head_pattern.to(torch.int64)
    restrict = torch.tensor(plan.segment_ranges, dtype=torch.bool, device=device)[patterns]  # [heads]
    out = []
    for rows_block, other_block, num_rows, num_other, lists in (
            (BLOCK_Q, BLOCK_K, num_q, num_k, ("partial", "full")),
            (BLOCK_K, BLOCK_Q, num_k, num_q, ("t_partial", "t_full"))):
        lo = _block_reduce(first, rows_block, n, False) // other_block  # [batch, rows]
        hi = _block_reduce(last, rows_block, -1, True) // other_block + 1
        lo = torch.where(restrict[None, :, None], lo[:, None, :], 0)  # [batch, heads, rows]
        hi = torch.where(restrict[None, :, None], hi[:, None, :], num_other)
        row = (patterns[:, None] * (num_rows + 1) + torch.arange(num_rows, device=device))[None]  # [1, heads, rows]
        base = row * (num_other + 1)
        ranges = []
        for name in lists:
            sorted_keys = keys[name]
            if sorted_keys.numel() == 0:
                ranges += [torch.zeros(batch, heads, num_rows, dtype=torch.int64, device=device)] * 2
                continue
            ranges += [torch.searchsorted(sorted_keys, (base + lo).reshape(-1)).view(batch, heads, num_rows),
                       torch.searchsorted(sorted_keys, (base + hi).reshape(-1)).view(batch, heads, num_rows)]
        out.append(torch.stack(ranges, dim=-1).to(torch.int32).contiguous())
    return seg, out[0], out[1]


def _segment_args(seg, placeholder, which):
    """(SEG, SEG_RANGES) of a kernel: ``which`` 1 the forward ranges, 2 the transposed ones;
    ``placeholder`` (never read) without segments."""
    return (placeholder, placeholder) if seg is None else (seg[0], seg[which])


# The last call's segment tables, reused while the same ids tensor (unchanged: its version) comes
# with the same plan and heads, e.g. by every layer of a model in one step. The entry holds the
# ids tensor itself, so no other tensor can take its place at its address.
_LAST_SEGMENTS = [None]


def _cached_segments(segments, ids, plan, head_pattern):
    if segments is None:
        return _segments(ids, plan, head_pattern)
    last = _LAST_SEGMENTS[0]
    if (last is not None and last[0] is segments and last[1] == segments._version and last[2] is plan
            and last[3] is head_pattern):
        return last[4]
    seg = _segments(ids, plan, head_pattern)
    _LAST_SEGMENTS[0] = (segments, segments._version, plan, head_pattern, seg)
    return seg


def _split_q(plan, q_offset, m, n, seg=None):
    """Whether the forward and dQ passes take the cut lists: only when q holds every row (the
    work items are those of whole query blocks) and without segments (each batch row has lists
    of its own, short where its documents are)."""
    return bool(plan.split_q) and q_offset == 0 and m == n and seg is None


def _forward(q, k, v, bias, head_pattern, sm_scale, plan=None, q_offset=0, seg=None):
    plan = plan or PLAN
    batch, heads, m, head_dim = q.shape
    n = k.shape[2]
    tables = plan.tables(q.device)
    block_d, (tile_m, tile_n, warps, stages), _, _, precision = _settings(head_dim, q.dtype)
    block_m, block_n = _fit(tile_m, BLOCK_Q), _fit(tile_n, BLOCK_K)
    out = torch.empty_like(q)
    lse = torch.empty((batch, heads, m), device=q.device, dtype=torch.float32)
    acc_s = m_s = l_s = lse  # placeholders: read only when SPLIT_Q
    bias_args = (bias, bias.stride(0), bias.stride(1)) if bias is not None else (lse, 0, 0)
    split = _split_q(plan, q_offset, m, n, seg)
    items = plan.num_q_items if split else 0
    if split:
        acc_s = _scratch(batch * heads, plan.num_q_slots, BLOCK_Q, block_d, q.device)
        m_s = _scratch(batch * heads, plan.num_q_slots, BLOCK_Q, 1, q.device)
        l_s = _scratch(batch * heads, plan.num_q_slots, BLOCK_Q, 1, q.device)
    _attn_fwd[_grid(n, block_m, items, BLOCK_Q, batch * heads, q_offset, m)](
        q, k, v, bias_args[0], out, lse, tables, head_pattern, acc_s, m_s, l_s, *_segment_args(seg, tables, 1),
        *_strides(q), *_strides(k), *_strides(v), *bias_args[1:], *_strides(out),
        heads, heads // k.shape[1], sm_scale * LOG2E.value, n, m, q_offset, HEAD_DIM=head_dim, BLOCK_Q=BLOCK_Q,
        BLOCK_K=BLOCK_K, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, HAS_BIAS=bias is not None,
        PRECISION=precision, SPLIT=split, NUM_ITEMS=items, NUM_SLOTS=plan.num_q_slots if split else 0,
        RAGGED=n % BLOCK_K != 0, SEGMENTED=seg is not None, num_warps=warps, num_stages=stages)
    if split:
        _merge_forward(out, lse, acc_s, m_s, l_s, block_d, plan)
    return out, lse


def _backward(q, k, v, bias, out, lse, d_out, head_pattern, sm_scale, alpha=None, norm=None, plan=None,
              q_offset=0, seg=None):
    """(dq, dk, dv, d key_bias as float32 [batch, heads, n], or None without a bias). Softmax:
    ``out`` is the output and ``lse`` its log-sum-exp; entmax (``alpha``): ``out`` is the WBAR,
    ``lse`` the thresholds and ``norm`` the 1 / row sums of `_entmax_forward`."""
    plan = plan or PLAN
    batch, heads, m, head_dim = q.shape
    n = k.shape[2]
    kv_heads = k.shape[1]
    tables = plan.tables(q.device)
    block_d, _, dq_tiles, dkdv_tiles, precision = _settings(head_dim, q.dtype)
    # delta_i = sum_d dO_id O_id = sum_j P_ij dP_ij, the softmax's correction term; for entmax
    # sum_j G_ij dP_ij / sum_j G_ij = dO_i . WBAR_i.
    delta = (d_out.float() * out.float()).sum(-1)
    prob, alpha = _prob_mode(alpha), float(alpha or 1)
    qk_scale = sm_scale * LOG2E.value if prob == 0 else sm_scale * (alpha - 1)
    norm = norm if norm is not None else delta
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    d_bias = torch.zeros((batch, heads, n), device=q.device, dtype=torch.float32) if bias is not None else None
    bias_args = (bias, bias.stride(0), bias.stride(1)) if bias is not None else (delta, 0, 0)

    tile_m, tile_n, warps, stages = dq_tiles
    block_m, block_n = _fit(tile_m, BLOCK_Q), _fit(tile_n, BLOCK_K)
    split = _split_q(plan, q_offset, m, n, seg)
    items = plan.num_q_items if split else 0
    dq_s = _scratch(batch * heads, plan.num_q_slots, BLOCK_Q, block_d, q.device) if split else delta
    _attn_bwd_dq[_grid(n, block_m, items, BLOCK_Q, batch * heads, q_offset, m)](
        q, k, v, bias_args[0], d_out, dq, lse, norm, delta, tables, head_pattern, dq_s,
        *_segment_args(seg, tables, 1),
        *_strides(q), *_strides(k), *_strides(v), *bias_args[1:], *_strides(d_out), *_strides(dq),
        heads, heads // kv_heads, qk_scale, sm_scale, alpha, n, m, q_offset, HEAD_DIM=head_dim,
        BLOCK_Q=BLOCK_Q, BLOCK_K=BLOCK_K, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        HAS_BIAS=bias is not None, PROB=prob, PRECISION=precision, SPLIT=split, NUM_ITEMS=items,
        NUM_SLOTS=plan.num_q_slots if split else 0, SEGMENTED=seg is not None, num_warps=warps, num_stages=stages)
    if split:
        _sum_into(dq_s, dq, "Q", block_d, plan)

    tile_n, tile_m, warps, stages = dkdv_tiles
    block_m, block_n = _fit(tile_m, BLOCK_Q), _fit(tile_n, BLOCK_K)
    dk_s = dv_s = delta
    split = bool(plan.split_k) and seg is None
    if split:
        dk_s = _scratch(batch * kv_heads, plan.num_k_slots, BLOCK_K, block_d, q.device)
        dv_s = _scratch(batch * kv_heads, plan.num_k_slots, BLOCK_K, block_d, q.device)
    _attn_bwd_dkdv[_grid(n, block_n, plan.num_k_items if split else 0, BLOCK_K, batch * kv_heads)](
        q, k, v, bias_args[0], d_out, dk, dv, d_bias if bias is not None else delta, lse, norm, delta, tables,
        head_pattern, dk_s, dv_s, *_segment_args(seg, tables, 2),
        *_strides(q), *_strides(k), *_strides(v), *bias_args[1:], *_strides(d_out), *_strides(dk), *_strides(dv),
        heads, kv_heads, heads // kv_heads, qk_scale, sm_scale, alpha, n, m, q_offset, HEAD_DIM=head_dim,
        BLOCK_Q=BLOCK_Q, BLOCK_K=BLOCK_K, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        HAS_BIAS=bias is not None, PROB=prob, PRECISION=precision, SPLIT=split,
        NUM_ITEMS=plan.num_k_items if split else 0, NUM_SLOTS=plan.num_k_slots if split else 0,
        SEGMENTED=seg is not None, num_warps=warps, num_stages=stages)
    if split:
        _sum_into(dk_s, dk, "K", block_d, plan)
        _sum_into(dv_s, dv, "K", block_d, plan)
    return dq, dk, dv, d_bias


def _unit_stride(t):
    return t if t.stride(-1) == 1 else t.contiguous()


class _BlockSparseAttention(torch.autograd.Function):
    """Softmax (alpha None) or α-entmax attention; returns (out, the rows' log-sum-exp or, for
    entmax, their thresholds τ)."""

    @staticmethod
    def forward(ctx, q, k, v, key_bias, head_pattern, sm_scale, alpha, plan=None, q_offset=0, seg=None):
        q, k, v = _unit_stride(q), _unit_stride(k), _unit_stride(v)
        entmax = _prob_mode(alpha) > 0
        bias = None
        if key_bias is not None:  # in the scores' unit: base 2 for softmax, times α - 1 for entmax
            bias = _key_bias_view(key_bias, q, alpha - 1 if entmax else LOG2E.value, k.shape[2])
        if entmax:
            out, lse, norm, wbar = _entmax_forward(q, k, v, bias, head_pattern, sm_scale, alpha, plan, q_offset, seg)
            ctx.save_for_backward(q, k, v, bias, wbar, lse, head_pattern, norm)
        else:
            out, lse = _forward(q, k, v, bias, head_pattern, sm_scale, plan, q_offset, seg)
            ctx.save_for_backward(q, k, v, bias, out, lse, head_pattern)
        ctx.sm_scale, ctx.alpha = sm_scale, alpha if entmax else None
        ctx.plan, ctx.q_offset, ctx.seg = plan, q_offset, seg
        ctx.bias_shape_dtype = (key_bias.shape, key_bias.dtype) if key_bias is not None else None
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, d_out, d_lse):
        # d_lse is None or zero: the log-sum-exp is returned for inspection, not differentiated.
        q, k, v, bias, out, lse, head_pattern, *norm = ctx.saved_tensors
        with _serialized():
            dq, dk, dv, d_bias = _backward(q, k, v, bias, out, lse, _unit_stride(d_out), head_pattern,
                                           ctx.sm_scale, ctx.alpha, *(norm or [None]), plan=ctx.plan,
                                           q_offset=ctx.q_offset, seg=ctx.seg)
        if d_bias is not None:  # summed over the dimensions key_bias was broadcast along
            shape, dtype = ctx.bias_shape_dtype
            d_bias = d_bias.sum_to_size(shape).to(dtype)
        return dq, dk, dv, d_bias, None, None, None, None, None, None


def attention(q, k, v, layer=0, scale=None, return_lse=False, *, key_bias=None, alpha=ALPHA, segments=None,
              q_offset=0, plan=None):
    """Block-sparse attention under this module's pattern (layer ``layer`` mod LAYERS).

    q: [batch, heads, m, head_dim]; k, v: [batch, kv_heads, N, head_dim] with kv_heads
    dividing heads (query head h uses key/value head h // (heads // kv_heads)); float16,
    bfloat16 or float32 (accumulated in float32); head_dim 1..256. Query row r is at absolute
    position ``q_offset`` + r (default 0; q_offset + m <= N), the keys at 0..N-1, under the
    pattern at n = N (rows q_offset.. of the full computation). ``scale`` multiplies the scores (default 1 / sqrt(head_dim)). A query row with
    no connection outputs zeros and gets zero gradients. ``key_bias``, broadcastable to
    [batch, heads, N], is added to the scaled score of every query's pair with key j before the
    softmax (-inf leaves the key out). Differentiable in q, k, v and key_bias. With
    ``return_lse``, also returns the float32 log-sum-exp of each row's scores, [batch, heads,
    m] (-inf for an empty row).

    ``alpha`` picks the probability map (default: the pattern file's `prob`): None or 1 is
    softmax, 2 sparsemax, any other value in (1, 2) α-entmax, applied to each row's connected
    keys; its threshold is found from the row's computed blocks (`_entmax_fwd`), and
    ``return_lse`` then returns the thresholds τ instead (0 for an empty row). ``segments``
    gives the segment ids of a pattern that uses `segment` / `segment_start` (SEGMENTED): an
    integer tensor [batch, N] on q's device, only equality mattering; None is one document.
    They are data: nothing is compiled again when they change. ``plan``
    (patterndsl passes it) holds the tables of another n than this module's own.
    While Triton's interpreter runs the kernels (TRITON_INTERPRET=1), calls are serialized.
    """
    plan = plan or PLAN
    _check(q, k, v, layer, scale, q_offset, plan.n)
    if segments is not None and not SEGMENTED:
        raise ValueError("segments= is for patterns that use `segment`; this module's pattern does not")
    _prob_mode(alpha)
    seg = None
    if SEGMENTED:
        ids = (_check_segments(segments, q.shape[0], k.shape[2], q.device) if segments is not None else
               torch.zeros(q.shape[0], k.shape[2], dtype=torch.int64, device=q.device))  # one document
    if key_bias is not None:
        _key_bias_view(key_bias, q, n=k.shape[2])  # its errors before any work
    sm_scale = float(scale) if scale is not None else q.shape[-1] ** -0.5
    head_pattern = plan.heads(layer, q.shape[1], q.device)
    if SEGMENTED:
        seg = _cached_segments(segments, ids, plan, head_pattern)
    with _serialized():
        if q.dtype == torch.bfloat16 and q.device.type == "cpu":
            # Triton's interpreter multiplies bfloat16 in tl.dot as raw bits (Triton 3.9): compute
            # in float32 there. On a GPU bfloat16 runs natively.
            out, lse = _BlockSparseAttention.apply(q.float(), k.float(), v.float(), key_bias, head_pattern, sm_scale,
                                                   alpha, plan, q_offset, seg)
            out = out.to(torch.bfloat16)
        else:
            out, lse = _BlockSparseAttention.apply(q, k, v, key_bias, head_pattern, sm_scale, alpha, plan, q_offset,
                                                   seg)
    return (out, lse) if return_lse else out
