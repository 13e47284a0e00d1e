"""Queries at an offset from the keys (q_offset): decoding with a KV cache, chunked prefill.

q [B, H, m, D] holds the queries at positions q_offset … q_offset + m − 1, k and v the
keys 0 … n_kv − 1, the pattern is evaluated at n = n_kv. Everything is checked against
the rows of the full computation at n = n_kv through the dense reference:

- hypothesis patterns × n_kv × m × q_offset × ρ: attention_reference(q_offset=) against the
  full computation's rows; the native path forward and backward against it;
- the layout of some rows (layout.block_layout(q_offset=, q_len=)) against the blocks of
  the dense mask's rows, and against the full layout's rows where the blocks line up;
- decoding step by step equals the full computation's rows for every example file;
- compiled.at caches lengths within a bound; bad q_offset → SpatError; one FlexAttention case.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import compiled as compiled_module
from patterndsl import strategies as S
from patterndsl.errors import SpatError
from patterndsl.layout import block_layout

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.spat"))
MAPS = st.sampled_from(["softmax", "sparsemax", "entmax(1.5)"])
BLOCKS = st.sampled_from([16, 32, (16, 32), (32, 16)])


def examples(count: int) -> int:
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))


def qkv(batch, heads, kv_heads, n, dim, seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, h, n, dim, generator=generator, dtype=dtype) for h in (heads, kv_heads, kv_heads)]


@st.composite
def windows(draw, max_n=60):
    """(n_kv, q_offset, m) with 0 <= q_offset, 1 <= m, q_offset + m <= n_kv."""
    n_kv = draw(S.sizes(max_n=max_n))
    m = draw(st.one_of(st.just(1), st.integers(1, n_kv)))
    q_offset = draw(st.one_of(st.just(n_kv - m), st.integers(0, n_kv - m)))
    return n_kv, q_offset, m


def block_states(dense: np.ndarray, block_q: int, block_k: int) -> np.ndarray:
    rows, cols = dense.shape
    out = np.zeros((math.ceil(rows / block_q), math.ceil(cols / block_k)), dtype=np.int8)
    for a in range(out.shape[0]):
        for b in range(out.shape[1]):
            block = dense[a * block_q:(a + 1) * block_q, b * block_k:(b + 1) * block_k]
            out[a, b] = 2 if block.all() else 1 if block.any() else 0
    return out


@settings(max_examples=examples(25), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(), MAPS, windows(), BLOCKS, st.sampled_from([(1, 1), (2, 1), (2, 2)]), st.integers(0, 99))
def test_rows_at_an_offset_are_the_full_computations_rows(source, prob, window, block_size, heads, seed):
    n_kv, q_offset, m = window
    compiled = patterndsl.compile(f"prob {prob}\n{source}", n=max(1, n_kv // 2))  # another n: at(n_kv)
    q, k, v = qkv(1, *heads, n_kv, 4, seed)
    full = patterndsl.attention_reference(q, k, v, compiled.at(n_kv), scale=0.7)[:, :, q_offset:q_offset + m]
    rows = q[:, :, q_offset:q_offset + m].clone().requires_grad_()
    k, v = k.requires_grad_(), v.requires_grad_()
    want = patterndsl.attention_reference(rows, k, v, compiled, scale=0.7, q_offset=q_offset)
    torch.testing.assert_close(want, full, rtol=0, atol=1e-12)
    got = patterndsl.attention(rows, k, v, compiled, scale=0.7, q_offset=q_offset, backend="native",
                               block_size=block_size)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    grad = torch.randn(got.shape, generator=torch.Generator().manual_seed(seed), dtype=got.dtype)
    for name, g, w in zip("qkv", torch.autograd.grad(got, (rows, k, v), grad),
                          torch.autograd.grad(want, (rows, k, v), grad)):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10, msg=lambda text: f"d{name}: {text}")
    mask = compiled.at(n_kv).mask(q_offset=q_offset, q_len=m)
    assert torch.equal(mask, compiled.at(n_kv).mask()[q_offset:q_offset + m])


@settings(max_examples=examples(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(), windows(max_n=80), BLOCKS)
def test_the_layout_of_some_rows(source, window, block_size):
    n, q_offset, m = window
    pattern = patterndsl.compile(source, n).pattern()
    block_q, block_k = (block_size, block_size) if isinstance(block_size, int) else block_size
    rows = block_layout(pattern, n, block_q, block_k, q_offset=q_offset, q_len=m)
    dense = patterndsl.compile(source, n).dense()[q_offset:q_offset + m]
    assert np.array_equal(rows.to_dense(), block_states(dense, block_q, block_k))
    assert rows.connections == int(dense.sum())
    assert (rows.q_offset, rows.num_rows, rows.num_q_blocks) == (q_offset, m, math.ceil(m / block_q))
    assert rows.computed_pairs() == sum(
        min(block_q, m - a * block_q) * min(block_k, n - b * block_k) for a, b in zip(*np.nonzero(rows.to_dense())))
    if q_offset % block_q == 0 and (m % block_q == 0 or q_offset + m == n):  # the blocks line up
        whole = block_layout(pattern, n, block_q, block_k).to_dense()
        first = q_offset // block_q
        assert np.array_equal(rows.to_dense(), whole[first:first + rows.num_q_blocks])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_decoding_step_by_step_equals_the_full_computation(path):
    n = 24
    compiled = patterndsl.compile(path, n)
    heads = compiled.heads
    q, k, v = qkv(1, heads, heads, n, 4, seed=3)
    for layer in range(compiled.layers):
        for t in range(n):  # decoding: one query at t against the cache of t + 1 keys
            step = patterndsl.attention(q[:, :, t:t + 1], k[:, :, :t + 1], v[:, :, :t + 1], compiled, layer,
                                        q_offset=t, backend="native", block_size=16)
            full = patterndsl.attention_reference(q[:, :, :t + 1], k[:, :, :t + 1], v[:, :, :t + 1],
                                                  compiled.at(t + 1), layer)
            torch.testing.assert_close(step[:, :, 0], full[:, :, t], rtol=0, atol=1e-10)
        # chunked prefill: two chunks of the full sequence
        for q_offset, m in ((0, 10), (10, n - 10)):
            chunk = patterndsl.attention(q[:, :, q_offset:q_offset + m], k, v, compiled, layer, q_offset=q_offset,
                                         backend="native", block_size=16)
            full = patterndsl.attention_reference(q, k, v, compiled, layer)
            torch.testing.assert_close(chunk, full[:, :, q_offset:q_offset + m], rtol=0, atol=1e-10)


def test_at_caches_lengths_within_a_bound(monkeypatch):
    monkeypatch.setattr(compiled_module, "MAX_CACHED_LENGTHS", 4)
    compiled = patterndsl.compile("window(isqrt(n), 0) | cols(0..2)", 8)
    assert compiled.at(8) is compiled
    seen = [compiled.at(n) for n in range(9, 15)]
    assert [c.n for c in seen] == list(range(9, 15))
    assert compiled._lengths.compiles == 6
    assert len(compiled._lengths.entries) == 4  # the oldest lengths were dropped
    assert compiled.at(14) is seen[-1] and seen[0].at(13) is seen[-2]  # shared by the family
    assert compiled._lengths.compiles == 6
    compiled.at(9)  # dropped: compiled again
    assert compiled._lengths.compiles == 7
    assert str(compiled.at(100).pattern()) == str(patterndsl.compile("window(isqrt(n), 0) | cols(0..2)", 100).pattern())


def test_decoding_compiles_each_length_once():
    compiled = patterndsl.compile("window(4, 0) | cols(0..2)", 1)
    q, k, v = qkv(1, 1, 1, 10, 4, seed=0, dtype=torch.float32)
    for _ in range(2):  # the second pass finds every length in the cache
        for t in range(10):
            patterndsl.attention(q[:, :, t:t + 1], k[:, :, :t + 1], v[:, :, :t + 1], compiled, q_offset=t,
                                 backend="native")
    assert compiled._lengths.compiles == 9  # n = 2 … 10 (n = 1 is compiled itself)


@pytest.mark.parametrize("q_len, n_kv, q_offset, message", [
    (1, 8, -1, "q_offset must be >= 0"),
    (2, 8, 7, "lie beyond the 8 keys"),
    (0, 8, 0, "at least one query"),
    (1, 8, 1.5, "q_offset must be an integer"),
    (1, 8, True, "q_offset must be an integer"),
])
def test_bad_offsets_are_spat_errors(q_len, n_kv, q_offset, message):
    compiled = patterndsl.compile("causal", 8)
    q, k, v = qkv(1, 1, 1, n_kv, 4, seed=0, dtype=torch.float32)
    q = q[:, :, :q_len]
    for call in (patterndsl.attention_reference, patterndsl.attention,
                 lambda *a, **o: patterndsl.attention(*a, backend="native", **o)):
        with pytest.raises(SpatError, match=message) as info:
            call(q, k, v, compiled, q_offset=q_offset)
        assert info.value.help and "q_offset" in info.value.help
    with pytest.raises(SpatError, match=message):
        compiled.mask(q_offset=q_offset, q_len=q_len)
    with pytest.raises(SpatError, match=message):
        block_layout(compiled.pattern(), 8, 16, q_offset=q_offset, q_len=q_len)


def test_the_length_hint_names_q_offset():
    compiled = patterndsl.compile("causal", 8)
    q, k, v = qkv(1, 1, 1, 8, 4, seed=0, dtype=torch.float32)
    from patterndsl.inputs import check_qkv

    with pytest.raises(SpatError) as info:
        check_qkv(q[:, :, :1], k, v, compiled)
    assert "q_offset" in info.value.help and "compiled.at(n)" not in info.value.help
    # patterndsl.attention takes it: the last row of the full computation
    out = patterndsl.attention(q[:, :, 7:], k, v, compiled, q_offset=7)
    torch.testing.assert_close(out, patterndsl.attention_reference(q, k, v, compiled)[:, :, 7:])


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_block_mask_with_queries_at_an_offset():
    """The rectangular BlockMask (Q_LEN ≠ KV_LEN, mask_mod shifted by q_offset) through eager
    FlexAttention (torch.compile on CPU takes minutes on a loaded machine: the compiled call,
    backend="flex", runs with PATTERNDSL_FLEX_TESTS=1)."""
    from torch.nn.attention.flex_attention import flex_attention

    from patterndsl.targets.flex import rows_block_mask

    compiled = patterndsl.compile("(window(8, 0) | cols(0..4)) & causal | stride(17)", 200)
    q, k, v = qkv(1, 2, 2, 200, 16, seed=1, dtype=torch.float32)
    want = patterndsl.attention_reference(q, k, v, compiled)
    for q_offset, m in ((150, 40), (199, 1), (3, 130)):
        block_mask = rows_block_mask(compiled, 0, 32, "cpu", q_offset, m)
        with torch.no_grad():
            got = flex_attention(q[:, :, q_offset:q_offset + m], k, v, block_mask=block_mask)
        torch.testing.assert_close(got, want[:, :, q_offset:q_offset + m], rtol=1e-5, atol=1e-5)
    if os.environ.get("PATTERNDSL_FLEX_TESTS"):
        with torch.no_grad():
            got = patterndsl.attention(q[:, :, 150:190], k, v, compiled, q_offset=150, backend="flex")
        torch.testing.assert_close(got, want[:, :, 150:190], rtol=1e-5, atol=1e-5)


def test_the_readme_decoding_snippet_runs_as_written():
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("### Decoding with a KV cache"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["rows"].shape == (4, 32)
    assert torch.equal(namespace["rows"], namespace["compiled"].mask()[16:20])
