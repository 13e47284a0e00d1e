"""The native path with run-time segments: per-batch-row key-block skipping and query
windows (q_offset) against the dense reference built with the same ids (forward and
backward), and the blocks each batch row computes against brute force."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import native
from patterndsl.segments import within_segments

from test_segments import PATTERNS, segmentations

WITHIN = ("segment & causal", "segment_start(2)", "(segment & window(2, 0)) | segment_start(1)",
          "(segment & causal) - window(1, 0)", "segment & ~causal")


# blocks are ≥ 16: up to 80 positions, so that several blocks and documents meet
LONGER = st.integers(1, 80).flatmap(lambda n: segmentations(n=n))


@contextlib.contextmanager
def skipping(mode: str):
    old, native.SEGMENT_SKIPPING = native.SEGMENT_SKIPPING, mode
    try:
        yield
    finally:
        native.SEGMENT_SKIPPING = old


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(PATTERNS + WITHIN), LONGER, st.sampled_from((16, (16, 32), (32, 16))),
       st.sampled_from(("per_row", "union", "static")), st.data())
def test_native_rows_against_reference(source, ids, block_size, mode, data):
    """Rows q_offset … q_offset + m − 1 (or all) with the ids: equal to the reference's,
    values and gradients, whichever blocks the ids let the path skip."""
    batch, n = ids.shape
    q_offset = data.draw(st.integers(0, n - 1))
    m = data.draw(st.integers(1, n - q_offset))
    compiled = patterndsl.compile(source, n)
    torch.manual_seed(0)
    q = torch.randn(batch, 2, m, 3, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(batch, 1, n, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    with skipping(mode):
        out = native.native_attention(q, k, v, compiled, segments=ids, block_size=block_size, q_offset=q_offset)
    ref = patterndsl.attention_reference(q, k, v, compiled, segments=ids, q_offset=q_offset)
    assert torch.allclose(out, ref, atol=1e-10), (source, ids, q_offset, m)
    weight = torch.arange(m, dtype=out.dtype)[:, None]
    grads = torch.autograd.grad((out * weight).sum(), (q, k, v))
    expected = torch.autograd.grad((ref * weight).sum(), (q, k, v))
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(WITHIN + ("segment", "segment & window(3, 0)")), LONGER,
       st.sampled_from((16, (16, 32), (32, 16))), st.data())
def test_each_row_computes_the_blocks_its_documents_reach(source, ids, block_size, data):
    """Per batch row: every block holding a connected pair is computed, and for contiguous
    documents no computed block lies outside the documents of its query block's rows."""
    batch, n = ids.shape
    q_offset = data.draw(st.integers(0, n - 1))
    m = data.draw(st.integers(1, n - q_offset))
    compiled = patterndsl.compile(source, n)
    pattern = compiled.pattern()
    assert within_segments(pattern)
    block_q, block_k = compiled.block_sizes(block_size)
    padded = native._padded_length(n, block_q, block_k)
    entries = native.segment_plans(compiled, 0, block_q, block_k, ids, padded, q_offset, m)
    assert len(entries) == batch
    for b, (rows, plans) in enumerate(entries):
        assert rows == slice(b, b + 1)
        (heads, groups, test), = plans
        computed = {(int(qb), int(kb)) for g in groups for qb, kbs in zip(g.query_blocks, g.key_blocks)
                    for kb in kbs}
        row = ids[b].to(torch.int64).numpy()
        mask = compiled.mask(segments=ids[b:b + 1])[0].numpy()[q_offset:q_offset + m]  # the reference
        needed = {(r // block_q, j // block_k) for r, j in zip(*np.nonzero(mask))}
        assert needed <= computed, (source, row)
        contiguous = len(np.unique(row)) == 1 + int((np.diff(row) != 0).sum())
        if contiguous:
            for qb, kb in computed:
                docs = {row[r] for r in range(q_offset + qb * block_q, q_offset + min(m, (qb + 1) * block_q))}
                assert any(row[j] in docs for j in range(kb * block_k, min(n, (kb + 1) * block_k))), (qb, kb)


def test_within_segments():
    for source in WITHIN + ("segment & (causal | segment_start(2))",):
        assert within_segments(patterndsl.compile(source, 16).pattern()), source
    for source in ("causal - segment", "~segment | self", "segment_start(3) | window(1)", "causal",
                   "segment | causal", "~segment"):
        assert not within_segments(patterndsl.compile(source, 16).pattern()), source


def test_hand_drawn_skipping():
    """Two documents of 32 in blocks of 16: `segment & causal` computes (0,0) (1,0) (1,1) for
    the first and (2,2) (3,2) (3,3) for the second — 6 of the causal layout's 10 blocks;
    the decode row (q_offset 63) only key blocks 2 and 3."""
    compiled = patterndsl.compile("segment & causal", 64)
    ids = torch.tensor([[0] * 32 + [1] * 32, [0] * 64])
    entries = native.segment_plans(compiled, 0, 16, 16, ids, 64)

    def blocks(plans):
        return sorted((int(qb), int(kb)) for g in plans[0][1] for qb, kbs in zip(g.query_blocks, g.key_blocks)
                      for kb in kbs)

    assert blocks(entries[0][1]) == [(0, 0), (1, 0), (1, 1), (2, 2), (3, 2), (3, 3)]
    assert len(blocks(entries[1][1])) == 10
    decode = native.segment_plans(compiled, 0, 16, 16, ids, 64, q_offset=63, m=1)
    assert blocks(decode[0][1]) == [(0, 2), (0, 3)]
    assert blocks(decode[1][1]) == [(0, 0), (0, 1), (0, 2), (0, 3)]


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(("segment & causal", "segment & window(20, 0)", "segment & (causal | segment_start(2))",
                        "segment", "segment & window(3)", "segment & global(0, 5)")),
       LONGER, st.sampled_from((16, (16, 32), (32, 16))))
def test_flex_block_lists(source, ids, block_size):
    """segment_block_mask's lists (intervals found by binary search where the static rows
    are intervals) against the blocks of the static layout within each row's ranges, both
    directions, and every block holding a connected pair of the reference mask kept."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    from patterndsl.segments import segment_block_ranges
    from patterndsl.targets.flex import segment_block_mask, segment_layouts

    batch, n = ids.shape
    compiled = patterndsl.compile(source, n)
    block_q, block_k = compiled.block_sizes(block_size)
    mask = segment_block_mask(compiled, 0, ids, block_size)
    static = segment_layouts(compiled, 0, block_q, block_k)[0].to_dense() > 0
    lo, hi = segment_block_ranges(ids, 0, n, block_q, block_k)
    dense = compiled.mask(segments=ids).numpy()
    for b in range(batch):
        expected = static.copy()
        for qb in range(static.shape[0]):
            expected[qb, :lo[b, qb]] = expected[qb, hi[b, qb]:] = False
        kept = np.zeros_like(expected)
        for qb in range(static.shape[0]):
            count = int(mask.kv_num_blocks[b, 0, qb])
            kept[qb, mask.kv_indices[b, 0, qb, :count].numpy()] = True
            assert count == len(set(mask.kv_indices[b, 0, qb, :count].tolist()))
        assert np.array_equal(kept, expected), (source, ids[b])
        by_keys = np.zeros_like(expected)
        for kb in range(static.shape[1]):
            count = int(mask.q_num_blocks[b, 0, kb])
            by_keys[mask.q_indices[b, 0, kb, :count].numpy(), kb] = True
        assert np.array_equal(by_keys, expected)
        for r, j in zip(*np.nonzero(dense[b])):
            assert kept[r // block_q, j // block_k]
