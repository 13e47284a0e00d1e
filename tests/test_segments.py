"""Run-time segments (`segment`, `segment_start(k)`; patterndsl/segments.py) against the
dense reference built with the same ids: hypothesis segmentations (random document
lengths, empty and one-token documents, per-batch differences, non-contiguous ids, every
integer dtype) through the reference mask, the native path (forward and backward) and
FlexAttention (forward; one compiled function shared by every case)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import SpatError
from patterndsl import strategies as S
from patterndsl.primitives import All, Nothing
from patterndsl.reference import dense_mask
from patterndsl.segments import (check_segments, ranks, segment_block_ranges, static_pattern, torch_ranks,
                                 using)

DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)

PATTERNS = ("segment", "segment & causal", "segment & window(3, 0)", "segment & (causal | segment_start(2))",
            "segment_start(1)", "causal - segment", "~segment | self", "segment & random(2, seed=3)",
            "segment_start(3) | window(1)", "segment & global(0, 5)")


@st.composite
def segmentations(draw, n: int | None = None, batch: int | None = None):
    """int tensor [B, n]: per batch row either packed documents (random lengths, empty and
    one-token documents among them) or non-contiguous ids; a random integer dtype."""
    n = draw(st.integers(1, 40)) if n is None else n
    batch = draw(st.integers(1, 3)) if batch is None else batch
    dtype = draw(st.sampled_from(DTYPES))
    rows = []
    for _ in range(batch):
        if draw(st.booleans()):
            lengths, left = [], n
            while left > 0:
                length = draw(st.sampled_from((0, 1, 1, 2, 3, 5, 8, 13, n)))
                lengths.append(min(length, left))
                left -= lengths[-1]
            first = draw(st.integers(0, 20))
            rows.append(np.repeat(np.arange(first, first + len(lengths)), lengths))
        else:
            rows.append(np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))))
    return torch.tensor(np.stack(rows), dtype=torch.int64).to(dtype)


def brute_pair(node, i: int, j: int, n: int) -> bool:
    """The pattern at one pair, from the primitives' plain-Python meanings."""
    kind, parts = type(node).__name__, node.children()
    if kind == "Union":
        return any(brute_pair(p, i, j, n) for p in parts)
    if kind == "Intersection":
        return all(brute_pair(p, i, j, n) for p in parts)
    if kind == "Difference":
        return brute_pair(parts[0], i, j, n) and not brute_pair(parts[1], i, j, n)
    if kind == "Complement":
        return not brute_pair(parts[0], i, j, n)
    return bool(node.reference_pair(i, j, n))


def brute_mask(pattern, ids: np.ndarray) -> np.ndarray:
    n = ids.size
    with using(ids):
        return np.array([[brute_pair(pattern, i, j, n) for j in range(n)] for i in range(n)], dtype=bool)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(PATTERNS), segmentations())
def test_mask_is_the_meaning(source, ids):
    n = ids.shape[1]
    compiled = patterndsl.compile(source, n)
    masks = compiled.mask(segments=ids)
    assert masks.shape == (ids.shape[0], n, n)
    for row, mask in zip(ids.to(torch.int64).numpy(), masks.numpy()):
        assert np.array_equal(mask, brute_mask(compiled.pattern(), row)), (source, row)


def test_hand_drawn_segment_start():
    # ids 5 5 3 3 5 5: the first two positions carrying 5 are 0 and 1; of 3, positions 2 and 3
    compiled = patterndsl.compile("segment_start(1)", 6)
    mask = compiled.mask(segments=torch.tensor([[5, 5, 3, 3, 5, 5]]))[0].int().tolist()
    assert mask == [[1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0],
                    [0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    packed = patterndsl.compile("segment & causal", 5).mask(segments=torch.tensor([[0, 0, 1, 1, 1]]))[0]
    assert packed.int().tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0],
                                     [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]]


@settings(max_examples=15, deadline=None)
@given(segmentations(), S.pattern_sources(max_depth=2, leaves=S.primitive_sources()))
def test_static_pattern_holds_every_segmentation(ids, source):
    """The kernels' layout pattern (segment read as what holds for every segmentation) is a
    superset of the pattern under any ids, also under complements and differences."""
    n = ids.shape[1]
    for text in (f"segment & ({source})", f"({source}) - segment", f"~(segment_start(2) & ({source}))"):
        pattern = patterndsl.compile(text, n).pattern()
        static = dense_mask(static_pattern(pattern, All(), Nothing()), n)
        for row in ids.to(torch.int64).numpy():
            with using(row):
                assert not (dense_mask(pattern, n) & ~static).any(), text


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 3), max_size=30))
def test_ranks(ids):
    ids = np.array(ids, dtype=np.int64)
    expected = [sum(1 for p in range(j) if ids[p] == ids[j]) for j in range(ids.size)]
    assert ranks(ids).tolist() == expected
    if ids.size:
        assert torch_ranks(torch.from_numpy(ids)[None])[0].tolist() == expected


@settings(max_examples=60, deadline=None)
@given(segmentations(), st.integers(1, 9), st.integers(1, 9), st.data())
def test_block_ranges(ids, block_q, block_k, data):
    """Every key block sharing a segment with a row of the query block lies in [lo, hi);
    for contiguous documents the range is the smallest such."""
    batch, n = ids.shape
    q_offset = data.draw(st.integers(0, n - 1))
    m = data.draw(st.integers(1, n - q_offset))
    lo, hi = segment_block_ranges(ids, q_offset, m, block_q, block_k)
    num_q = -(-m // block_q)
    assert lo.shape == hi.shape == (batch, num_q)
    for b, row in enumerate(ids.to(torch.int64).numpy()):
        contiguous = len(np.unique(row)) == 1 + int((np.diff(row) != 0).sum())
        for qb in range(num_q):
            rows = range(q_offset + qb * block_q, q_offset + min(m, (qb + 1) * block_q))
            shared = sorted({j // block_k for r in rows for j in range(n) if row[j] == row[r]})
            assert lo[b, qb] <= shared[0] and shared[-1] < hi[b, qb]
            if contiguous:
                assert (lo[b, qb], hi[b, qb]) == (shared[0], shared[-1] + 1)
            else:
                assert (lo[b, qb], hi[b, qb]) == (0, -(-n // block_k))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(PATTERNS + ("prob sparsemax\nsegment & causal",)), segmentations(),
       st.sampled_from((16, (16, 32))), st.sampled_from((1, 2)))
def test_native_forward_and_backward(source, ids, block_size, heads):
    torch.manual_seed(0)
    batch, n = ids.shape
    compiled = patterndsl.compile(source, n)
    q, k, v = (torch.randn(batch, heads, n, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    out = patterndsl.attention(q, k, v, compiled, segments=ids, block_size=block_size, backend="native")
    ref = patterndsl.attention_reference(q, k, v, compiled, segments=ids)
    assert torch.allclose(out, ref, atol=1e-10)
    grads = torch.autograd.grad((out * torch.arange(n, dtype=out.dtype)[:, None]).sum(), (q, k, v))
    expected = torch.autograd.grad((ref * torch.arange(n, dtype=out.dtype)[:, None]).sum(), (q, k, v))
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-9)


def test_flex_forward_without_recompiling():
    """One compiled FlexAttention serves every segmentation (the ids are data): the
    forward pass equals the reference, and Dynamo captured one graph."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    from torch._dynamo.utils import counters

    n, batch = 128, 2
    compiled = patterndsl.compile("segment & (causal | segment_start(2))", n)
    torch.manual_seed(1)
    q, k, v = (torch.randn(batch, 1, n, 16) for _ in range(3))
    rng = np.random.default_rng(0)
    counters.clear()
    for dtype in (torch.int8, torch.int64, torch.uint8):
        lengths = rng.integers(0, 40, size=(batch, 12))
        ids = torch.tensor(np.stack([np.repeat(np.arange(12), row)[:n] for row in lengths]))
        ids = torch.cat([ids, torch.full((batch, n), 12)], dim=1)[:, :n].to(dtype)
        with torch.no_grad():
            out = patterndsl.attention(q, k, v, compiled, segments=ids, backend="flex", block_size=64)
            ref = patterndsl.attention_reference(q, k, v, compiled, segments=ids)
        assert torch.allclose(out, ref, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1


def test_bad_segments_are_diagnosed():
    compiled = patterndsl.compile("segment & causal", 8)
    q = k = v = torch.randn(2, 1, 8, 4)
    cases = {
        "ids": "must be a torch tensor",
        torch.zeros(2, 8): "integer dtype",
        torch.zeros(2, 7, dtype=torch.int32): "shape (2, 7)",
        torch.zeros(8, dtype=torch.int32): "shape (8,)",
    }
    for segments, message in cases.items():
        with pytest.raises(SpatError, match=message.replace("(", r"\(").replace(")", r"\)")):
            patterndsl.attention(q, k, v, compiled, segments=segments)
    with pytest.raises(SpatError, match="does not use `segment`"):
        patterndsl.attention(q, k, v, patterndsl.compile("causal", 8), segments=torch.zeros(2, 8, dtype=torch.int8))
    with pytest.raises(SpatError, match="does not use `segment`"):
        check_segments(torch.zeros(1, 8, dtype=torch.int8), 1, 8, uses_segments=False)
    with pytest.raises(SpatError, match="blocks"):
        patterndsl.compile("blocks(2) { segment }", 8).mask(segments=torch.zeros(1, 8, dtype=torch.int8))


def test_no_ids_is_one_document():
    compiled = patterndsl.compile("segment & causal", 8)
    q = k = v = torch.randn(1, 1, 8, 4, dtype=torch.float64)
    one = torch.zeros(1, 8, dtype=torch.int8)
    assert torch.allclose(patterndsl.attention(q, k, v, compiled, backend="native"),
                          patterndsl.attention(q, k, v, compiled, segments=one, backend="native"))


def test_uses_segments():
    assert patterndsl.compile("causal | segment_start(1)", 8).uses_segments
    assert not patterndsl.compile("causal", 8).uses_segments


def test_readme_packed_documents_snippet_runs():
    """The tour's packed-documents snippet runs exactly as written."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("### Packed documents")
    begin = readme.index("```python\n", start) + len("```python\n")
    snippet = readme[begin:readme.index("```\n", begin)]
    exec(compile(snippet, "README.md", "exec"), {})


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(PATTERNS + ("segment_start(2) & causal", "window(2) - segment_start(1)")),
       st.integers(1, 12), st.data())
def test_count_bounds_hold_for_every_segmentation(source, n, data):
    """The analyzer's bounds for unknown ids against brute force over random segmentations."""
    from patterndsl.analysis.counts import row_degrees
    from patterndsl.segments import count_bounds

    pattern = patterndsl.compile(source, n).pattern()
    from patterndsl.primitives import Self

    low, high = count_bounds(pattern, n, lambda p, n: row_degrees(p, n).sum(), All(), Nothing(), Self())
    ids = data.draw(segmentations(n=n, batch=6))
    for row in ids.to(torch.int64).numpy():
        assert low <= brute_mask(pattern, row).sum() <= high, (source, row)
    # attained where the pattern is monotone in `segment`: one document, n one-token documents
    if source in ("segment", "segment & causal", "segment & window(3, 0)"):
        assert high == brute_mask(pattern, np.zeros(n, dtype=np.int64)).sum()
        assert low == brute_mask(pattern, np.arange(n)).sum()


@pytest.mark.parametrize("source, message", [
    ("transpose(segment_start(2)) | causal", "transpose of `segment_start` is not supported"),
    ("grid(4, 4) { segment & window2d(1, 1) }", "cannot be used inside grid"),
    ("blocks(2) { segment_start(1) }", "cannot be used inside blocks"),
])
def test_refused_where_positions_are_not_tokens(source, message):
    with pytest.raises(patterndsl.SpatError, match=message):
        patterndsl.compile(source, 16)
