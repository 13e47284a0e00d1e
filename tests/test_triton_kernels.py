"""The generated Triton kernels (patterndsl/kernels) against the float64 dense-mask reference.

Run on CPU in Triton's interpreter (TRITON_INTERPRET=1, set by tests/kernel_checks.py), so
shapes are small: n up to ~300, block sizes 16..64, head dims 16..64. Forward outputs, the
log-sum-exp, and dQ, dK, dV are compared with `attention_reference` in float64 on the same
(rounded) inputs by kernel_checks.assert_matches_reference: the tolerance is a multiple of the
error of the same computation done eagerly in the test's dtype, so fp16 is held to fp16's
standard and fp32 to fp32's.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest

# kernel_checks sets TRITON_INTERPRET=1, which must come before triton's import.
from kernel_checks import (assert_entmax_matches_reference, assert_matches_reference, biased_reference,
                           entmax_reference, forward_backward, interpreter, random_inputs, reference_lse,
                           triton_attention)

triton = pytest.importorskip("triton", reason="the Triton kernels need triton installed (pip install triton)")
torch = pytest.importorskip("torch")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import patterndsl  # noqa: E402
from patterndsl import strategies as S  # noqa: E402
from patterndsl.errors import SpatError  # noqa: E402

CI = bool(os.environ.get("CI"))


def examples(count: int) -> int:
    """``count`` hypothesis examples, scaled by $PATTERNDSL_TEST_SCALE (e.g. 20 for a long run)."""
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))


_FIXTURES = (interpreter,)  # (used by pytest by name)


# ---- generated cases -----------------------------------------------------------------------

BLOCKS = st.sampled_from((16, 32, 64))  # the block-size policy: powers of two ≥ 16
WORK = 220 if CI else 160  # most (batch × head × block pair) computations per example: interpreter time


@st.composite
def cases(draw):
    """(source, n, layer, block size, batch, heads, kv heads, head dim, dtype): any pattern
    (nested expressions over every primitive and operator, or whole files with layers and
    heads), ragged n, square and rectangular blocks, grouped-query heads."""
    source = draw(st.one_of(S.pattern_sources(), S.files()))
    block_q = draw(BLOCKS)
    block_k = block_q if draw(st.booleans()) else draw(BLOCKS)
    compiled_heads = patterndsl.compile(source, 1).heads
    heads = compiled_heads if compiled_heads > 1 else draw(st.sampled_from((1, 2, 3, 4)))
    kv_heads = draw(st.sampled_from([d for d in range(1, heads + 1) if heads % d == 0]))
    batch = draw(st.sampled_from((1, 2))) if heads <= 2 else 1
    # Keep the interpreter's work bounded: at most WORK block pairs over all batches and heads.
    pairs_per_head = max(1, WORK // (batch * heads))
    max_n = max(1, min(300, int(math.sqrt(pairs_per_head * block_q * block_k))))
    n = draw(st.one_of(st.integers(1, min(max_n, 40)), st.integers(1, max_n)))
    layers = patterndsl.compile(source, n).layers
    layer = draw(st.integers(0, layers))  # == layers: cycles back to layer 0
    head_dim = draw(st.sampled_from((16, 24, 32, 40, 64)))
    dtype = draw(st.sampled_from((torch.float32, torch.float16)))
    seed = draw(st.integers(0, 2**31 - 1))
    return source, n, layer, (block_q, block_k), batch, heads, kv_heads, head_dim, dtype, seed



@settings(max_examples=examples(16 if CI else 12), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_kernels_match_the_dense_reference(case):
    source, n, layer, block_size, batch, heads, kv_heads, head_dim, dtype, seed = case
    compiled = patterndsl.compile(source, n)
    # A pattern reading segment ids runs here without ids (one document, as compiled.mask
    # reads it); tests/test_triton_segments.py gives it ids.
    q, k, v, d_out = random_inputs(batch, heads, kv_heads, n, head_dim, dtype, seed, spread=2.0)
    assert_matches_reference(compiled, layer, q, k, v, d_out, block_size=block_size)


# ---- chosen cases --------------------------------------------------------------------------


@pytest.mark.parametrize("source, n, block_size", [
    ("window(5) | global(0..3)", 100, 32),           # partial blocks, ragged end
    ("causal", 96, 32),                                # full blocks on and below the diagonal, n % 32 == 0
    ("causal", 97, 16),                                # a full block cut by the ragged end
    ("all", 130, (64, 32)),                            # every block full; tiles smaller than blocks
    ("random(7, seed=3) | self", 90, (16, 32)),       # per-block bitmaps; rectangular blocks
    ("cols(1, 3, 5, 7, 9, 11, 13, 15, 17, 19)", 70, 32),  # an index list read from a table
    ("stride(7) & causal | logsparse", 120, 32),
    ("all", 16, 32),                                   # n a multiple of the tile, not of the block:
    ("all", 32, 64),                                   # whole tiles past n inside a full block
])
def test_primitive_kernels(source, n, block_size):
    compiled = patterndsl.compile(source, n)
    q, k, v, d_out = random_inputs(2, 2, 1, n, 32, torch.float32, seed=n)
    assert_matches_reference(compiled, 0, q, k, v, d_out, block_size=block_size)


def test_layers_and_heads_choose_their_own_pattern():
    source = textwrap.dedent("""\
        layers {
            heads {
                0..2: window(3, 0)
                2: chunk(16)
                3: random(4) & causal
            }
            stride(5) | self
        }
        """)
    compiled = patterndsl.compile(source, 75)
    q, k, v, d_out = random_inputs(1, 4, 2, 75, 16, torch.float32, seed=1)
    for layer in (0, 1, 2):
        assert_matches_reference(compiled, layer, q, k, v, d_out, block_size=32)


def test_empty_rows_give_zeros_and_zero_gradients():
    # Queries 8.. have no key; their rows share blocks with rows that have some.
    compiled = patterndsl.compile("rows(0..8) & window(2)", 40)
    q, k, v, d_out = random_inputs(1, 2, 2, 40, 16, torch.float16, seed=2)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out, lse = triton_attention(q, k, v, compiled, return_lse=True, block_size=16)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), d_out)
    assert (out[:, :, 8:] == 0).all() and (dq[:, :, 8:] == 0).all()
    assert torch.isinf(lse[:, :, 8:]).all() and (lse[:, :, 8:] < 0).all()
    assert torch.isfinite(lse[:, :, :8]).all()
    assert all(torch.isfinite(t).all() for t in (out, dq, dk, dv))
    assert (dk[:, :, 11:] == 0).all() and (dv[:, :, 11:] == 0).all()  # keys 11.. are never attended

    nothing = patterndsl.compile("none", 40)
    out = triton_attention(q, k, v, nothing)
    assert (out == 0).all()
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), d_out)
    assert all((t == 0).all() for t in (dq, dk, dv))


def test_scale_head_dims_and_strided_inputs():
    compiled = patterndsl.compile("window(9) | global(0..4)", 64)
    # head_dim 8 and 100 are padded to 16 and 128 inside the kernels.
    for head_dim in (8, 100):
        q, k, v, d_out = random_inputs(1, 2, 2, 64, head_dim, torch.float32, seed=head_dim)
        assert_matches_reference(compiled, 0, q, k, v, d_out, scale=0.3, block_size=32)
    # [batch, n, heads, D] inputs viewed as [batch, heads, n, D]: not contiguous.
    q, k, v, d_out = (t.transpose(1, 2).contiguous().transpose(1, 2)
                      for t in random_inputs(1, 2, 1, 64, 16, torch.float32, seed=5))
    assert not q.is_contiguous()
    assert_matches_reference(compiled, 0, q, k, v, d_out, block_size=32)


def test_bfloat16_on_cpu_is_computed_in_float32():
    # Triton's interpreter gets bfloat16 tl.dot wrong, so the module computes bfloat16 in
    # float32 on CPU (benchmarks/gpu_attention.py --check tests bfloat16 on a GPU).
    compiled = patterndsl.compile("window(4) | cols(0)", 48)
    q, k, v, d_out = random_inputs(1, 2, 2, 48, 16, torch.bfloat16, seed=3)
    q.requires_grad_()
    out = triton_attention(q, k, v, compiled, block_size=16)
    dq, = torch.autograd.grad(out, q, d_out)
    assert out.dtype == dq.dtype == torch.bfloat16
    want = forward_backward(lambda q_, k_, v_: patterndsl.attention_reference(q_, k_, v_, compiled),
                            q.double(), k.double(), v.double(), d_out.double())
    assert (out.double() - want[0]).abs().max().item() < 0.02
    assert (dq.double() - want[1]).abs().max().item() < 0.05


# ---- a per-key score bias ------------------------------------------------------------------


@settings(max_examples=examples(6 if CI else 4), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases(), st.sampled_from(("full", "per batch", "per head", "per key")), st.sampled_from((None, 1, 2)))
def test_key_bias_matches_the_dense_reference(case, bias_shape, max_blocks):
    source, n, layer, block_size, batch, heads, kv_heads, head_dim, dtype, seed = case
    compiled = patterndsl.compile(source, n)
    # A pattern reading segment ids runs here without ids (one document, as compiled.mask
    # reads it); tests/test_triton_segments.py gives it ids.
    q, k, v, d_out = random_inputs(batch, heads, kv_heads, n, head_dim, dtype, seed, spread=2.0)
    shape = {"full": (batch, heads, n), "per batch": (batch, 1, n), "per head": (heads, n), "per key": (n,)}[bias_shape]
    key_bias = (torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2).to(dtype)
    assert_matches_reference(compiled, layer, q, k, v, d_out, block_size=block_size, max_blocks=max_blocks,
                             key_bias=key_bias)


@pytest.mark.parametrize("max_blocks", [None, 1])
def test_key_bias_of_minus_infinity_leaves_keys_out(max_blocks):
    # Padding keys 30.. masked by the bias: rows whose only keys are padding are empty (zeros),
    # the rest equal attention without those keys.
    n = 40
    compiled = patterndsl.compile("window(3) | cols(0)", n)
    q, k, v, d_out = random_inputs(2, 2, 1, n, 16, torch.float32, seed=11)
    key_bias = torch.zeros(2, 1, n)
    key_bias[:, :, 30:] = float("-inf")
    key_bias[1, :, 0] = float("-inf")  # batch 1: key 0 too, so rows 34.. have no key left
    assert_matches_reference(compiled, 0, q, k, v, d_out, block_size=16, max_blocks=max_blocks, key_bias=key_bias)
    out = triton_attention(q, k, v, compiled, block_size=16, key_bias=key_bias, max_blocks_per_program=max_blocks)
    assert (out[1, :, 34:] == 0).all() and (out[0, :, 34:] != 0).any()
    unbiased = patterndsl.compile("(window(3) | cols(0)) & cols(0..30)", n)
    assert (out[0] - triton_attention(q, k, v, unbiased, block_size=16)[0]).abs().max().item() < 1e-5


def test_key_bias_is_checked():
    compiled = patterndsl.compile("window(2)", 32)
    q = torch.randn(1, 2, 32, 16)
    for bad, message in ((torch.zeros(1, 2, 31), "does not broadcast"), (torch.zeros(32, dtype=torch.long), "floating"),
                         ([0.0] * 32, "must be a floating-point tensor")):
        with pytest.raises(SpatError, match=message):
            triton_attention(q, q, q, compiled, key_bias=bad)


# ---- sparsemax and α-entmax ----------------------------------------------------------------


ALPHAS = st.sampled_from((2.0, 1.5, 1.25))


@settings(max_examples=examples(6 if CI else 4), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases(), ALPHAS, st.booleans(), st.sampled_from((None, 1)))
def test_entmax_matches_the_dense_reference(case, alpha, with_bias, max_blocks):
    source, n, layer, block_size, batch, heads, kv_heads, head_dim, dtype, seed = case
    compiled = patterndsl.compile(source, n)
    # A pattern reading segment ids runs here without ids (one document, as compiled.mask
    # reads it); tests/test_triton_segments.py gives it ids.
    q, k, v, d_out = random_inputs(batch, heads, kv_heads, n, head_dim, dtype, seed, spread=2.0)
    key_bias = (torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
                if with_bias else None)
    assert_entmax_matches_reference(compiled, layer, q, k, v, d_out, alpha, block_size, max_blocks, key_bias)


@pytest.mark.parametrize("alpha", [2.0, 1.5, 1.25])
def test_entmax_chosen_cases(alpha):
    # Partial and full blocks, a ragged end, grouped heads, empty rows (40..), cut backward lists.
    compiled = patterndsl.compile("rows(0..40) & (window(4) | cols(0..3) | causal)", 50)
    q, k, v, d_out = random_inputs(1, 2, 1, 50, 16, torch.float32, seed=int(alpha * 4))
    key_bias = torch.randn(1, 2, 50, generator=torch.Generator().manual_seed(3))
    assert_entmax_matches_reference(compiled, 0, q * 3, k, v, d_out, alpha, 16, key_bias=key_bias)
    assert_entmax_matches_reference(compiled, 0, q, k, v, d_out, alpha, (32, 16), max_blocks=1)
    out = triton_attention(q, k, v, compiled, block_size=16, alpha=alpha)
    assert (out[:, :, 40:] == 0).all()


def test_sparsemax_rows_are_exactly_sparse():
    # With V the identity, the output is the attention matrix itself: zero exactly where the
    # reference's sparsemax is zero, and the file's `prob sparsemax` is what the kernels run.
    n = 48
    compiled = patterndsl.compile("prob sparsemax\nwindow(6) | cols(0)", n)
    q, k, _, _ = random_inputs(1, 1, 1, n, n, torch.float32, seed=5, spread=1.5)
    v = torch.eye(n).reshape(1, 1, n, n)
    weights = triton_attention(q, k, v, compiled, block_size=16)
    want = entmax_reference(q.double(), k.double(), v.double(), compiled, 0, n ** -0.5, 2)
    assert torch.equal(weights == 0, want == 0)
    assert ((weights == 0) & compiled.mask(0, 0)).any()  # sparse inside the pattern, not only outside it
    assert (weights.sum(-1) - 1).abs().max().item() < 1e-5
    softmax = triton_attention(q, k, v, compiled, block_size=16, alpha=1)
    assert torch.equal(softmax > 0, compiled.mask(0, 0).expand(1, 1, n, n))


def test_alpha_is_checked():
    compiled = patterndsl.compile("window(2)", 32)
    q = torch.randn(1, 1, 32, 16)
    for bad in (0.5, 2.5, "1.5", True):
        with pytest.raises(SpatError, match="alpha"):
            triton_attention(q, q, q, compiled, alpha=bad)


TWO_HEADS = "heads {\n    0: self\n    1: causal\n}"


# ---- long lists cut into work items (load balancing) ---------------------------------------
# With max_blocks_per_program = 1, 2 or 3 nearly every list is cut: forward pieces merged by
# log-sum-exp, dQ and dK/dV pieces summed from scratch slots. The default limit (4 x the mean
# list, at least 16) cuts nothing at these sizes, so these tests are what covers that path.


@settings(max_examples=examples(8 if CI else 5), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases(), st.sampled_from((1, 2, 3)))
def test_cut_lists_match_the_dense_reference(case, max_blocks):
    source, n, layer, block_size, batch, heads, kv_heads, head_dim, dtype, seed = case
    compiled = patterndsl.compile(source, n)
    # A pattern reading segment ids runs here without ids (one document, as compiled.mask
    # reads it); tests/test_triton_segments.py gives it ids.
    q, k, v, d_out = random_inputs(batch, heads, kv_heads, n, head_dim, dtype, seed, spread=2.0)
    assert_matches_reference(compiled, layer, q, k, v, d_out, block_size=block_size, max_blocks=max_blocks)


@pytest.mark.parametrize("source, n, block_size, max_blocks, dtype", [
    ("window(5) | global(0..3)", 100, 16, 1, torch.float16),  # a long row and a long column, ragged
    ("window(5) | global(0..3)", 128, 16, 2, torch.float32),  # pieces of two, n % block == 0
    ("causal", 97, (32, 16), 3, torch.float16),               # rectangular blocks, full blocks cut
    ("rows(0..20) & (window(2) | cols(20..40))", 40, 16, 1, torch.float32),  # empty rows in cut lists
    ("window(40) | global(0..3)", 300, 128, 1, torch.float32),  # float32 tiles of 64: two per block
])
def test_cut_lists(source, n, block_size, max_blocks, dtype):
    compiled = patterndsl.compile(source, n)
    q, k, v, d_out = random_inputs(1, 4, 2, n, 32, dtype, seed=n + max_blocks)  # grouped heads
    assert_matches_reference(compiled, 0, q, k, v, d_out, block_size=block_size, max_blocks=max_blocks)


def test_cut_lists_with_heads_of_different_patterns():
    # Grouped heads with different patterns share a dK/dV program: the pieces are common to all
    # patterns (a piece of a shorter list may be empty).
    source = "heads {\n    0: window(3, 0) | cols(0)\n    1: causal\n    2: self\n    3: none\n}"
    compiled = patterndsl.compile(source, 70)
    q, k, v, d_out = random_inputs(1, 4, 2, 70, 16, torch.float32, seed=4)
    assert_matches_reference(compiled, 0, q, k, v, d_out, block_size=16, max_blocks=2)


def test_cut_empty_rows_give_zeros_and_minus_infinity():
    compiled = patterndsl.compile("rows(0..8) & (window(2) | cols(20..40))", 40)
    q, k, v, d_out = random_inputs(1, 2, 2, 40, 16, torch.float16, seed=2)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out, lse = triton_attention(q, k, v, compiled, return_lse=True, block_size=16, max_blocks_per_program=1)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), d_out)
    assert all(torch.isfinite(t).all() for t in (out, dq, dk, dv))
    assert (out[:, :, 8:] == 0).all() and (dq[:, :, 8:] == 0).all()
    assert torch.isinf(lse[:, :, 8:]).all() and (lse[:, :, 8:] < 0).all() and torch.isfinite(lse[:, :, :8]).all()


def test_work_items_cover_every_list_once():
    import numpy as np

    from patterndsl.kernels.generate import _layout_tables, distinct_patterns, work_items

    compiled = patterndsl.compile("heads {\n    0: window(4) | global(0..2)\n    1: causal\n}", 200)
    patterns, _ = distinct_patterns(compiled)
    _, tables = _layout_tables(compiled, patterns, 16, 32)
    for prefix, rows in (("", 13), ("t_", 7)):
        partial_ptr, full_ptr = (tables[prefix + name].astype(np.int64) for name in ("partial_ptr", "full_ptr"))
        limit, items, counts = work_items(partial_ptr, full_ptr, len(patterns), 3)
        item_rows, slots = items["item_info"].reshape(-1, 2).T
        ranges = items["items"].reshape(len(patterns), -1, 4)
        for p in range(len(patterns)):
            for row in range(rows):
                mine = ranges[p, item_rows == row]
                mine = mine[np.argsort(slots[item_rows == row])]
                r = p * (rows + 1) + row
                # The pieces, in slot order, tile the row's partial list, then its full list.
                partial = [i for s, e, _, _ in mine for i in range(s, e)]
                full = [i for _, _, s, e in mine for i in range(s, e)]
                assert partial == list(range(partial_ptr[r], partial_ptr[r + 1]))
                assert full == list(range(full_ptr[r], full_ptr[r + 1]))
                assert ((mine[:, 1] - mine[:, 0]) + (mine[:, 3] - mine[:, 2]) <= limit).all()
        splits = items["splits"].reshape(-1, 3)
        assert counts == {"items": len(item_rows), "slots": int(splits[:, 2].sum()), "splits": len(splits)}
        for row, first, count in splits:
            assert sorted(slots[item_rows == row]) == list(range(first, first + count))
        assert (slots[np.isin(item_rows, splits[:, 0], invert=True)] == -1).all()


def test_default_limit_cuts_only_outlying_lists():
    from patterndsl.kernels import module_source

    def constants(source, n):
        namespace = {}
        text = module_source(patterndsl.compile(source, n), 128)
        for line in text.splitlines():
            if line.startswith(("SPLIT_Q,", "SPLIT_K,")):
                exec(line, namespace)
        return namespace

    for plain in ("causal", "window(256)", "stride(64) & causal"):
        assert constants(plain, 8192)["SPLIT_Q"] is False and constants(plain, 8192)["SPLIT_K"] is False
    cut = constants("window(256) | global(0..8)", 32768)  # query block 0 and key block 0: all 256 blocks
    assert cut["SPLIT_Q"] and cut["SPLIT_K"] and cut["NUM_Q_SPLITS"] == cut["NUM_K_SPLITS"] == 1
    assert cut["NUM_Q_SLOTS"] == cut["NUM_K_SLOTS"] == 10  # 256 blocks, pieces of <= max(16, 4 x 7.0) = 28


def test_limit_from_the_environment(monkeypatch):
    from patterndsl.kernels import module_source

    compiled = patterndsl.compile("window(2)", 64)
    assert "SPLIT_Q, NUM_Q_ITEMS, NUM_Q_SLOTS, NUM_Q_SPLITS = False" in module_source(compiled, 16)
    monkeypatch.setenv("PATTERNDSL_MAX_BLOCKS_PER_PROGRAM", "1")
    assert "SPLIT_Q, NUM_Q_ITEMS, NUM_Q_SLOTS, NUM_Q_SPLITS = True" in module_source(compiled, 16)
    monkeypatch.setenv("PATTERNDSL_MAX_BLOCKS_PER_PROGRAM", "zero")
    with pytest.raises(SpatError, match="positive integer"):
        module_source(compiled, 16)
    with pytest.raises(SpatError, match="positive integer"):
        module_source(compiled, 16, 0)


# ---- errors --------------------------------------------------------------------------------


def test_bad_inputs_are_diagnosed():
    compiled = patterndsl.compile("window(2)", 32)
    q = torch.randn(1, 4, 32, 16)
    kv = torch.randn(1, 2, 32, 16)
    cases = [
        ((torch.randn(1, 4, 33, 16), kv, kv), "q has 33 rows but k, v have 32 keys"),
        ((q, torch.randn(1, 3, 32, 16), torch.randn(1, 3, 32, 16)), "must divide"),
        ((q.double(), kv.double(), kv.double()), "dtype"),
        ((torch.randn(1, 4, 32, 300), torch.randn(1, 2, 32, 300), torch.randn(1, 2, 32, 300)), "head_dim"),
        ((q[0], kv, kv), "shaped"),
        ((q, kv, torch.randn(1, 1, 32, 16)), "k and v must be shaped"),
    ]
    for (q_, k_, v_), message in cases:
        with pytest.raises(SpatError, match=message):
            triton_attention(q_, k_, v_, compiled)
    with pytest.raises(SpatError, match="block size 24 is not a power of two ≥ 16"):  # the one policy
        triton_attention(q, kv, kv, compiled, block_size=24)
    two_heads = patterndsl.compile(TWO_HEADS, 32)
    with pytest.raises(SpatError, match="2 heads"):
        triton_attention(q, kv, kv, two_heads)


def test_cpu_without_the_interpreter_is_diagnosed(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    compiled = patterndsl.compile("window(2)", 32)
    q = torch.randn(1, 1, 32, 16)
    with pytest.raises(SpatError, match="TRITON_INTERPRET"):
        triton_attention(q, q, q, compiled)


# ---- the standalone module -----------------------------------------------------------------

STANDALONE_RUN = """
import sys
sys.modules["patterndsl"] = None   # any import of patterndsl now fails
import torch
import kernel
assert not any(name == "patterndsl" or name.startswith("patterndsl.") for name in sys.modules
               if sys.modules[name] is not None)
inputs = torch.load("inputs.pt")
q, k, v = (t.requires_grad_() for t in inputs["qkv"])
results = {}
for layer in range(kernel.LAYERS + 1):
    out, lse = kernel.attention(q, k, v, layer=layer, return_lse=True)
    grads = torch.autograd.grad(out, (q, k, v), inputs["d_out"])
    results[layer] = (out.detach(), lse, *grads)
key_bias = inputs["key_bias"].requires_grad_()
out = kernel.attention(q, k, v, layer=0, key_bias=key_bias)
results["key_bias"] = (out.detach(), *torch.autograd.grad(out, (q, k, v, key_bias), inputs["d_out"]))
try:
    kernel.attention(q, k[:, :, :-1], v[:, :, :-1])  # keys of another n than the module's tables
except ValueError as error:
    results["error"] = str(error)
torch.save(results, "results.pt")
"""


def test_standalone_module_runs_without_patterndsl(tmp_path):
    spat = tmp_path / "local.spat"
    spat.write_text(textwrap.dedent("""\
        block 32
        layers {
            heads {
                0: window(4, 0) | cols(0..2)
                1: random(3)
            }
            chunk(20) & causal
        }
        """), encoding="utf-8")
    n = 70
    # Lists cut into pieces of at most 2 blocks: the standalone module runs its merging kernels too.
    written = subprocess.run([sys.executable, "-m", "patterndsl.cli", "compile", str(spat), "--n", str(n),
                              "--target", "triton", "-o", str(tmp_path / "kernel.py")],
                             capture_output=True, text=True, env={**os.environ, "PATTERNDSL_MAX_BLOCKS_PER_PROGRAM": "2"})
    assert written.returncode == 0, written.stderr
    text = (tmp_path / "kernel.py").read_text(encoding="utf-8")
    assert "import patterndsl" not in text and "from patterndsl" not in text
    assert "SPLIT_Q, NUM_Q_ITEMS, NUM_Q_SLOTS, NUM_Q_SPLITS = True" in text
    assert "def attention(q, k, v, layer=0, scale=None" in text and "class _BlockSparseAttention" in text

    compiled = patterndsl.compile(spat, n)
    q, k, v, d_out = random_inputs(1, 2, 1, n, 16, torch.float32, seed=7)
    key_bias = torch.randn(1, 1, n, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).float()
    torch.save({"qkv": (q, k, v), "d_out": d_out, "key_bias": key_bias}, tmp_path / "inputs.pt")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TRITON_INTERPRET"] = "1"
    # -I: no PYTHONPATH, no user site, and the script's directory (not the repository) on sys.path.
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.'); {STANDALONE_RUN}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = torch.load(tmp_path / "results.pt")
    assert "compiled for n = 70" in results["error"]
    for layer in range(compiled.layers + 1):
        exact = forward_backward(lambda q_, k_, v_: patterndsl.attention_reference(q_, k_, v_, compiled, layer),
                                 q.double(), k.double(), v.double(), d_out.double())
        out, lse, *grads = results[layer]
        for mine, want in zip((out, *grads), exact):
            assert (mine.double() - want).abs().max().item() < 1e-4
        want_lse = reference_lse(q, k, compiled, layer, 16 ** -0.5)
        assert torch.equal(torch.isinf(lse), torch.isinf(want_lse))
    exact = forward_backward(lambda q_, k_, v_, b_: biased_reference(q_, k_, v_, compiled, 0, 16 ** -0.5, b_),
                             q.double(), k.double(), v.double(), key_bias.double(), d_out.double())
    for mine, want in zip(results["key_bias"], exact):
        assert mine.shape == want.shape and (mine.double() - want).abs().max().item() < 1e-4


def test_module_text_quotes_any_source_safely():
    import ast

    from patterndsl.kernels import module_source

    source = '# """ closes a docstring, \\ escapes, \x01 is unprintable\nwindow(2) | cols(0, 2, 4, 6, 8, 10, 12, 14, 16)\n'
    text = module_source(patterndsl.compile(source, 40), 16)
    tree = ast.parse(text)
    docstring = ast.get_docstring(tree)
    assert '# """ closes a docstring, \\ escapes, ? is unprintable' in docstring  # as written, less \x01
    assert "T_member0" in text  # nine ranges: a table lookup, not an inline test


def test_in_process_module_is_the_emitted_module(tmp_path):
    from patterndsl.kernels import kernel_module, module_source

    compiled = patterndsl.compile("window(3) | global(0..2)", 50)
    path = tmp_path / "k.py"
    written = patterndsl.targets.get_target("triton").emit(compiled, path)
    assert "blocks of 128 x 128" in written
    assert path.read_text(encoding="utf-8") == module_source(compiled)
    module = kernel_module(compiled)
    assert open(module.__file__, encoding="utf-8").read() == module_source(compiled)
    assert kernel_module(compiled) is module


def kernels_file_text():
    from patterndsl.kernels import generate

    return generate.KERNELS.read_text(encoding="utf-8")


def test_the_kernels_module_is_the_module_of_the_empty_pattern():
    # patterndsl/kernels/blocksparse.py is real code: its pattern part is the one generated for
    # `none` at n = 1, so it imports and runs as it reads.
    from patterndsl.kernels import blocksparse, module_source

    def pattern_part(text):
        start = text.index("N = 1  #")
        return text[start:text.index("    return connected\n", start)]

    assert pattern_part(kernels_file_text()) == pattern_part(module_source(patterndsl.compile("none", 1), 16))
    q = torch.randn(2, 2, 1, 16, requires_grad=True)
    out, lse = blocksparse.attention(q, q, q, return_lse=True)
    assert (out == 0).all() and torch.isinf(lse).all()
    assert (torch.autograd.grad(out.sum(), q)[0] == 0).all()


def test_the_module_is_the_kernels_source_less_what_it_does_not_use():
    import ast

    from patterndsl.kernels import module_source

    def definitions(text):
        tree = ast.parse(text)
        return {node.name: ast.get_source_segment(text, node) for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.ClassDef))}

    real = definitions(kernels_file_text())
    merging = {"_fwd_combine", "_merge_forward", "_merge_program", "_sum_slots", "_sum_into", "_scratch"}
    compiled = patterndsl.compile("window(2) | global(0..2)", 200)
    uncut, both_cut = module_source(compiled, 16), module_source(compiled, 16, 2)
    key_cut = module_source(patterndsl.compile("window(2) | cols(0..2)", 200), 16, 4)  # key block 0 only
    assert "SPLIT_Q, NUM_Q_ITEMS, NUM_Q_SLOTS, NUM_Q_SPLITS = False" in key_cut
    assert "SPLIT_K, NUM_K_ITEMS, NUM_K_SLOTS, NUM_K_SPLITS = True" in key_cut
    for text, left_out in ((uncut, merging), (both_cut, set()), (key_cut, {"_fwd_combine", "_merge_forward"})):
        mine = definitions(text)
        embedded = {"qkv_problem", "layer_problem"}  # patterndsl/inputs.py's checks, in place of their import
        assert set(mine) - embedded == set(real) - left_out and embedded <= set(mine)
        for name, source in mine.items():
            if name in embedded:
                continue
            if name != "_allowed":  # the one generated function
                assert source == real[name], name
        assert text.count("def _attn_bwd_dkdv(") == text.count("def _attn_fwd(") == 1
        compile(text, "<kernel module>", "exec")


# ---- the nn.Module -------------------------------------------------------------------------


def test_sparse_attention_module_matches_the_reference_backend():
    torch.manual_seed(0)
    source = "window(6, 0) | cols(0)"
    layer = patterndsl.SparseAttention(source, embed_dim=48, num_heads=4, num_kv_heads=2, block_size=16)
    reference = patterndsl.SparseAttention(source, embed_dim=48, num_heads=4, num_kv_heads=2, backend="reference")
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 37, 48, requires_grad=True)
    y = layer(x)
    y_ref = reference(x)
    assert y.shape == x.shape
    assert (y - y_ref).abs().max().item() < 1e-5
    grad, = torch.autograd.grad(y.square().sum(), x)
    grad_ref, = torch.autograd.grad(y_ref.square().sum(), x)
    assert (grad - grad_ref).abs().max().item() < 1e-4
    assert layer(torch.randn(1, 20, 48)).shape == (1, 20, 48)  # another n: compiled again


def test_sparse_attention_module_checks_its_arguments(monkeypatch):
    with pytest.raises(SpatError, match="must divide"):
        patterndsl.SparseAttention("causal", embed_dim=48, num_heads=4, num_kv_heads=3)
    with pytest.raises(SpatError, match="layer must be"):
        patterndsl.SparseAttention("causal", embed_dim=48, num_heads=4, layer="0")
    with pytest.raises(SpatError, match="multiple of num_heads"):
        patterndsl.SparseAttention("causal", embed_dim=50, num_heads=4)
    with pytest.raises(SpatError, match="2 heads"):
        patterndsl.SparseAttention(patterndsl.compile(TWO_HEADS, 8), embed_dim=48, num_heads=4)
    layer = patterndsl.SparseAttention("causal", embed_dim=16, num_heads=2)
    with pytest.raises(SpatError, match="expected input"):
        layer(torch.randn(2, 5, 17))
    # Without the interpreter, CPU falls back to the reference and still agrees.
    x = torch.randn(1, 9, 16)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    fallback = layer(x)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert (layer(x) - fallback).abs().max().item() < 1e-5
