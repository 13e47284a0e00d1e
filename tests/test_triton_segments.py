"""Run-time segments in the generated Triton kernels (issue 14 §1).

`segment` and `segment_start(k)` read segment ids given at call time ([B, n], any integer
dtype): the kernels take them as data (patterndsl/kernels/blocksparse.py `_segments`), so one
module serves every segmentation. Checked in Triton's interpreter against the float64 dense
reference built with the same ids — forward and backward, random document lengths (empty and
one-token documents, a different segmentation per batch row, ids that recur) — plus each
batch row's block ranges, decoding rows, no recompilation and the standalone module. Kept
small: the interpreter is slow.
"""
from __future__ import annotations

import importlib.util

import pytest

# kernel_checks sets TRITON_INTERPRET=1, which must come before triton's import.
from kernel_checks import assert_matches_reference, interpreter

triton = pytest.importorskip("triton", reason="the Triton kernels need triton installed (pip install triton)")
torch = pytest.importorskip("torch")
import numpy as np  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import patterndsl  # noqa: E402
from patterndsl.errors import SpatError  # noqa: E402

PATTERNS = ("segment & causal", "segment & window(8, 0)", "segment & (causal | segment_start(2))")
DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
_FIXTURES = (interpreter,)  # (used by pytest by name)


def packed(lengths, first=0):
    """One batch row's ids: documents of these lengths (0 allowed), numbered from ``first``."""
    return np.repeat(np.arange(first, first + len(lengths)), lengths)


@st.composite
def segmentations(draw, n: int, batch: int):
    """int tensor [batch, n]: per row packed documents of random lengths (empty and one-token
    documents among them), or now and then ids that recur (not contiguous); a random dtype."""
    rows = []
    for _ in range(batch):
        if draw(st.integers(0, 4)):
            lengths, left = [], n
            while left > 0:
                length = draw(st.sampled_from((0, 1, 1, 2, 5, 13, 31, 40, n)))
                lengths.append(min(length, left))
                left -= lengths[-1]
            rows.append(packed(lengths, draw(st.integers(0, 20))))
        else:
            rows.append(np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))))
    return torch.tensor(np.stack(rows), dtype=torch.int64).to(draw(st.sampled_from(DTYPES)))


def inputs(batch, heads, n, seed, kv_heads=None, dim=16):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, n, dim, generator=g)
    k, v = (torch.randn(batch, kv_heads or heads, n, dim, generator=g) for _ in range(2))
    return q, k, v, torch.randn(batch, heads, n, dim, generator=g)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(PATTERNS), st.integers(1, 64), st.sampled_from(((32, 32), (16, 32))),
       st.sampled_from(((1, 1), (2, 1))), st.data())
def test_segment_patterns_match_the_dense_reference(source, n, block_size, heads, data):
    ids = data.draw(segmentations(n, batch=2))
    q, k, v, d_out = inputs(2, heads[0], n, seed=n, kv_heads=heads[1])
    assert_matches_reference(patterndsl.compile(source, n), 0, q, k, v, d_out, block_size=block_size,
                             segments=ids)


def test_documents_straddling_blocks():
    """Full blocks (causal's, below the diagonal) cut by document boundaries, one-token and
    empty documents, and a second row whose ids recur: fwd and bwd, two heads, GQA."""
    n = 48  # blocks of 16: block (1, 0) lies in the first document, (2, 0) and (2, 1) do not
    ids = torch.tensor(np.stack([packed([33, 1, 0, 1, 13]), np.r_[np.zeros(20), np.ones(12), np.zeros(16)]]),
                       dtype=torch.int32)
    q, k, v, d_out = inputs(2, 2, n, seed=1, kv_heads=1)
    assert_matches_reference(patterndsl.compile("segment & (causal | segment_start(2))", n), 0, q, k, v, d_out,
                             block_size=16, segments=ids)


def test_each_batch_row_skips_the_key_blocks_outside_its_documents():
    from patterndsl.kernels import kernel_plan

    n, block = 256, 32
    compiled = patterndsl.compile("segment & causal", n)
    module, plan = kernel_plan(compiled, block)
    ids = torch.tensor(np.stack([packed([100, 156]), packed([256]), packed([32] * 8)]))
    head_pattern = plan.heads(0, 1, "cpu")
    seg, forward, backward = module._segments(ids, plan, head_pattern)
    assert seg.dtype == torch.int32 and tuple(seg.shape) == (3, 3, n)
    assert forward.shape == (3, 1, n // block, 4) and backward.shape == (3, 1, n // block, 4)
    partial_idx = plan.tables("cpu")[plan.tables("cpu")[1]:]
    full_idx = plan.tables("cpu")[plan.tables("cpu")[3]:]

    def key_blocks(b, qb):
        start, end, full_start, full_end = forward[b, 0, qb].tolist()
        return sorted(partial_idx[start:end].tolist() + full_idx[full_start:full_end].tolist())

    assert key_blocks(0, 4) == [3, 4]          # rows 128..159: keys 100..159 only
    assert key_blocks(0, 3) == [0, 1, 2, 3]    # rows 96..127 span both documents: keys 0..127
    assert key_blocks(1, 7) == list(range(8))  # one document: causal's whole row
    assert all(key_blocks(2, qb) == [qb] for qb in range(8))  # a document per block: its diagonal
    t_start, t_end, t_full_start, t_full_end = backward[2, 0, 5].tolist()
    assert t_end - t_start + t_full_end - t_full_start == 1  # and the transposed lists likewise
    # ranks and run starts, renumbered ids
    assert seg[0, 1, 99].item() == 99 and seg[0, 1, 100].item() == 0 and seg[0, 2, 150].item() == 100
    assert seg[0, 0].unique().tolist() == [0, 1]


def test_new_ids_compile_nothing(monkeypatch):
    """The ids are data: after the first call, other segmentations (and dtypes) import no module
    and build no tables."""
    from patterndsl import kernels
    from patterndsl.kernels import generate, triton_attention

    n = 48
    compiled = patterndsl.compile("segment & window(8, 0)", n)
    q, k, v, _ = inputs(1, 1, n, seed=3)
    with torch.no_grad():
        triton_attention(q, k, v, compiled, block_size=16, segments=torch.zeros(1, n, dtype=torch.int64))
        calls = []
        monkeypatch.setattr(kernels, "_import_source", lambda *a, **k: calls.append("import"))
        original = generate.module_parts
        monkeypatch.setattr(kernels, "module_parts", lambda *a, **k: calls.append("parts") or original(*a, **k))
        for lengths, dtype in (([10, 38], torch.int32), ([1, 0, 47], torch.uint8)):
            ids = torch.tensor(packed(lengths)[None], dtype=dtype)
            out = triton_attention(q, k, v, compiled, block_size=16, segments=ids)
            want = patterndsl.attention_reference(q.double(), k.double(), v.double(), compiled, segments=ids)
            assert (out.double() - want).abs().max().item() < 2e-5
    assert calls == []


def test_decoding_rows_with_segments():
    """Rows at an offset (a KV cache) read the ids at their absolute positions."""
    from patterndsl.kernels import triton_attention

    n = 64
    compiled = patterndsl.compile("segment & (causal | segment_start(2))", n)
    ids = torch.tensor(np.stack([packed([20, 1, 43]), packed([63, 1])]), dtype=torch.int16)
    q, k, v, _ = inputs(2, 1, n, seed=4)
    full = patterndsl.attention_reference(q.double(), k.double(), v.double(), compiled, segments=ids)
    with torch.no_grad():
        for q_offset, m in ((63, 1), (20, 1), (17, 16)):
            out = triton_attention(q[:, :, q_offset:q_offset + m], k, v, compiled, block_size=16, segments=ids,
                                   q_offset=q_offset)
            assert (out.double() - full[:, :, q_offset:q_offset + m]).abs().max().item() < 2e-5


def test_sparsemax_with_segments():
    """The other probability maps take segments too (their forward pass has the same lists)."""
    from patterndsl.kernels import triton_attention

    n = 32
    compiled = patterndsl.compile("prob sparsemax\nsegment & causal", n)
    ids = torch.tensor(packed([9, 1, 22])[None])
    q, k, v, _ = inputs(1, 1, n, seed=5)
    with torch.no_grad():
        out = triton_attention(q * 3, k, v, compiled, block_size=16, segments=ids)
    want = patterndsl.attention_reference(q.double() * 3, k.double(), v.double(), compiled, segments=ids)
    assert (out.double() - want).abs().max().item() < 1e-4


def test_the_standalone_module_takes_segments(tmp_path):
    from patterndsl.kernels import module_source

    n = 40
    compiled = patterndsl.compile("segment & causal", n)
    path = tmp_path / "segment_kernel.py"
    path.write_text(module_source(compiled, 16), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("segment_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.SEGMENTED and module.SEGMENT_RANGES == [True]
    ids = torch.tensor(packed([7, 0, 33])[None], dtype=torch.int64)
    q, k, v, _ = inputs(1, 1, n, seed=6)
    with torch.no_grad():
        out = module.attention(q, k, v, layer=0, segments=ids, q_offset=0)
        one_document = module.attention(q, k, v)  # segments=None: every id equal
    want = patterndsl.attention_reference(q.double(), k.double(), v.double(), compiled, segments=ids)
    assert (out.double() - want).abs().max().item() < 2e-5
    plain = patterndsl.attention_reference(q.double(), k.double(), v.double(), compiled)
    assert (one_document.double() - plain).abs().max().item() < 2e-5
    with pytest.raises(ValueError, match="shape"):
        module.attention(q, k, v, segments=ids[:, :-1])
    with pytest.raises(ValueError, match="integer"):
        module.attention(q, k, v, segments=ids.float())


def test_bad_segments_are_diagnosed():
    from patterndsl.kernels import triton_attention

    compiled = patterndsl.compile("segment & causal", 16)
    q, k, v, _ = inputs(1, 1, 16, seed=7)
    with pytest.raises(SpatError, match="shape"):
        triton_attention(q, k, v, compiled, segments=torch.zeros(2, 16, dtype=torch.int32))
    with pytest.raises(SpatError, match="does not use `segment`"):
        triton_attention(q, k, v, patterndsl.compile("causal", 16), segments=torch.zeros(1, 16, dtype=torch.int32))


def test_ids_changed_in_place_are_read_again():
    """The segment tables are reused for the same unchanged ids tensor only."""
    from patterndsl.kernels import triton_attention

    n = 32
    compiled = patterndsl.compile("segment & causal", n)
    ids = torch.zeros(1, n, dtype=torch.int32)
    q, k, v, _ = inputs(1, 1, n, seed=8)
    with torch.no_grad():
        first = triton_attention(q, k, v, compiled, block_size=16, segments=ids)
        ids[0, 10:] = 1  # in place: a new version of the same tensor
        second = triton_attention(q, k, v, compiled, block_size=16, segments=ids)
    for out in (first, second):
        want = patterndsl.attention_reference(q.double(), k.double(), v.double(), compiled,
                                              segments=ids if out is second else torch.zeros_like(ids))
        assert (out.double() - want).abs().max().item() < 2e-5
