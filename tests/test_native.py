"""The native CPU path (patterndsl/native.py) against the float64 dense reference.

- Hypothesis patterns and files × shapes (batch, grouped-query heads, head dims, ragged
  n, block sizes with BQ ≠ BK) × every probability map: outputs and the gradients with
  respect to q, k, v and the key bias.
- torch.autograd.gradcheck in float64.
- Chunks: long lists cut between rows give the same result; every chunk stays within
  SCORE_ELEMENTS scores, and the scores computed are exactly the blocks' pairs (work
  counted, never timed).
- fp32 and bf16 inputs; `patterndsl.attention` and `SparseAttention` pick the path on CPU.
"""
from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import native, probability
from patterndsl import strategies as S

MAPS = st.sampled_from(["softmax", "sparsemax", "entmax(1.5)", "entmax(1.3)"])
BLOCKS = st.sampled_from([16, 32, (16, 32), (32, 16)])


def examples(count: int) -> int:
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))


def with_prob(source: str, prob: str) -> str:
    return f"prob {prob}\n{source}"


def inputs(batch, heads, kv_heads, n, dim, seed, dtype=torch.float64, bias_shape=None):
    generator = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(batch, h, n, dim, generator=generator, dtype=dtype) * 1.5
               for h in (heads, kv_heads, kv_heads)]
    if bias_shape is not None:
        tensors.append(torch.randn(*bias_shape, generator=generator, dtype=dtype))
    return [t.requires_grad_() for t in tensors]


def compare(compiled, layer, q, k, v, bias, block_size, atol=1e-10):
    got = native.native_attention(q, k, v, compiled, layer, 0.8, key_bias=bias, block_size=block_size)
    want = patterndsl.attention_reference(q, k, v, compiled, layer, 0.8, key_bias=bias)
    torch.testing.assert_close(got, want, rtol=0, atol=atol)
    wrt = [t for t in (q, k, v, bias) if t is not None]
    grad = torch.randn(got.shape, generator=torch.Generator().manual_seed(7), dtype=got.dtype)
    for name, g, w in zip("qkvb", torch.autograd.grad(got, wrt, grad), torch.autograd.grad(want, wrt, grad)):
        torch.testing.assert_close(g, w, rtol=0, atol=atol, msg=lambda m: f"d{name}: {m}")


@settings(max_examples=examples(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(), MAPS, S.sizes(max_n=90), BLOCKS, st.sampled_from([(1, 1), (2, 1), (4, 2), (2, 2)]),
       st.integers(1, 2), st.integers(1, 9), st.sampled_from([None, "key", "batch", "full"]), st.integers(0, 99))
def test_native_matches_reference(source, prob, n, block_size, heads, batch, dim, bias, seed):
    compiled = patterndsl.compile(with_prob(source, prob), n)
    bias_shape = {None: None, "key": (n,), "batch": (batch, 1, n), "full": (batch, heads[0], n)}[bias]
    q, k, v, *rest = inputs(batch, *heads, n, dim, seed, bias_shape=bias_shape)
    compare(compiled, 0, q, k, v, rest[0] if rest else None, block_size)


@settings(max_examples=examples(20), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.files(), S.sizes(max_n=60), BLOCKS, st.integers(0, 99))
def test_native_matches_reference_on_files_with_heads_and_layers(source, n, block_size, seed):
    compiled = patterndsl.compile(source, n)
    heads = compiled.heads
    kv_heads = 1 if heads % 2 else max(1, heads // 2)
    q, k, v, bias = inputs(1, heads, kv_heads, n, 4, seed, bias_shape=(1, heads, n))
    for layer in range(compiled.layers):
        compare(compiled, layer, q, k, v, bias, block_size)


@pytest.mark.parametrize("prob", ["softmax", "sparsemax", "entmax(1.5)", "entmax(1.4)"])
def test_gradcheck(prob):
    compiled = patterndsl.compile(with_prob("window(2) & causal | global(5) - rows(9..11)", prob), 19)
    q, k, v, bias = inputs(1, 2, 1, 19, 2, seed=4, bias_shape=(1, 2, 19))
    assert torch.autograd.gradcheck(
        lambda *t: native.native_attention(*t[:3], compiled, key_bias=t[3], block_size=16), (q, k, v, bias),
        fast_mode=True)


@pytest.mark.parametrize("prob", ["softmax", "sparsemax", "entmax(1.5)"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_empty_rows_and_an_empty_pattern_give_zeros(prob, dtype):
    for source in ("window(1) - rows(3..20)", "none"):
        compiled = patterndsl.compile(with_prob(source, prob), 40)
        q, k, v = inputs(1, 1, 1, 40, 4, seed=0, dtype=dtype)
        out = native.native_attention(q, k, v, compiled, block_size=16)
        assert torch.equal(out[0, 0, 3:20], torch.zeros(17, 4, dtype=out.dtype))
        out.sum().backward()
        assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
        assert torch.equal(q.grad[0, 0, 3:20], torch.zeros(17, 4, dtype=dtype))


def test_long_lists_cut_between_rows_give_the_same_result(monkeypatch):
    compiled = patterndsl.compile("prob sparsemax\nwindow(3) | global(0..2)", 70)
    q, k, v, bias = inputs(2, 2, 2, 70, 5, seed=1, bias_shape=(70,))
    monkeypatch.setattr(native, "SCORE_ELEMENTS", 100)  # fewer than one block's scores
    compare(compiled, 0, q, k, v, bias, 16)


def test_chunks_stay_bounded_and_compute_exactly_the_blocks(monkeypatch):
    """Work counted: the scores computed are the layout's computed pairs, padded to whole
    blocks, and no chunk holds more than SCORE_ELEMENTS of them — no n × n tensor."""
    n, batch, heads = 1000, 1, 2
    compiled = patterndsl.compile("prob entmax(1.5)\nwindow(40) | global(0..4)", n)
    layout = compiled.layout(block_size=32)
    sizes = []
    real = probability.forward
    monkeypatch.setattr(native.probability, "forward", lambda s, p, **kw: (sizes.append(s.numel()), real(s, p, **kw))[1])
    monkeypatch.setattr(native, "SCORE_ELEMENTS", 1 << 14)
    q, k, v = inputs(batch, heads, heads, n, 4, seed=2)
    native.native_attention(q, k, v, compiled, block_size=32)
    assert max(sizes) <= 1 << 14 < n * n
    assert sum(sizes) == batch * heads * layout.num_blocks * 32 * 32


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2e-5), (torch.bfloat16, 3e-2)])
def test_low_precision_inputs(dtype, atol):
    compiled = patterndsl.compile("prob entmax(1.5)\nwindow(5) | stride(9)", 50)
    q, k, v = inputs(1, 2, 1, 50, 8, seed=3)
    got = native.native_attention(*(t.detach().to(dtype) for t in (q, k, v)), compiled, block_size=16)
    assert got.dtype == dtype
    want = patterndsl.attention_reference(q, k, v, compiled)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=atol * 10 if dtype == torch.bfloat16 else atol)


def test_attention_auto_on_cpu_takes_the_native_path_for_training():
    """FlexAttention has no backward on CPU: auto must not pick it when gradients are needed,
    nor for another ρ or a key bias."""
    compiled = patterndsl.compile("window(4) | global(0)", 40)
    q, k, v = inputs(1, 2, 2, 40, 4, seed=6, dtype=torch.float32)
    out = patterndsl.attention(q, k, v, compiled, block_size=16)
    out.square().sum().backward()
    want = patterndsl.attention_reference(q, k, v, compiled)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-5)
    sparse = patterndsl.compile("prob sparsemax\nwindow(4) | global(0)", 40)
    with torch.no_grad():
        torch.testing.assert_close(patterndsl.attention(q, k, v, sparse, block_size=16),
                                   patterndsl.attention_reference(q, k, v, sparse), rtol=0, atol=1e-5)
    with pytest.raises(patterndsl.SpatError, match="unknown backend"):
        patterndsl.attention(q, k, v, compiled, backend="fast")


def test_sparse_attention_layer_trains_on_the_native_path():
    torch.manual_seed(0)
    layer = patterndsl.SparseAttention("prob entmax(1.5)\nwindow(3) | global(0)", embed_dim=16, num_heads=4,
                                       num_kv_heads=2, backend="native", block_size=16)
    x = torch.randn(2, 37, 16)
    target = torch.randn(2, 37, 16)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = (layer(x) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and all(math.isfinite(l) for l in losses)
