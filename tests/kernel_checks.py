"""The one check of the generated Triton kernels against the float64 dense reference, for every
tests/test_*kernels*.py and tests/test_triton_*.py file that runs them.

    from kernel_checks import assert_matches_reference, interpreter  # (interpreter: its fixture)
    assert_matches_reference(compiled, layer, q, k, v, d_out, block_size=16)

Run on CPU in Triton's interpreter (TRITON_INTERPRET=1, set here before triton is imported).
Forward outputs, the log-sum-exp, and dQ, dK, dV (and d key_bias) are compared with the
reference in float64 on the same (rounded) inputs; the tolerance is a multiple of the error of
the same computation done eagerly in the test's dtype, so fp16 is held to fp16's standard and
fp32 to fp32's. A file whose `prob` is sparsemax or entmax is checked against the entmax
package's dense α-entmax; a pattern reading segment ids against the reference with those ids.
"""
from __future__ import annotations

import os

import pytest

# Triton decides whether to interpret when it is first imported, so this comes first. CPU
# tensors only run in the interpreter; the flag has no effect on other tests (torch's own
# CPU code paths do not use Triton).
os.environ["TRITON_INTERPRET"] = "1"

torch = pytest.importorskip("torch")

import patterndsl  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def interpreter():
    """Fail loudly (not with Triton's puzzling error) when triton was imported before the test
    module could turn its interpreter on, e.g. by another test module at collection."""
    pytest.importorskip("triton", reason="the Triton kernels need triton installed (pip install triton)")
    from patterndsl.kernels import interpreter_ready

    os.environ["TRITON_INTERPRET"] = "1"
    assert interpreter_ready(), ("triton was imported before TRITON_INTERPRET=1 was set: run these tests "
                                 "with TRITON_INTERPRET=1 in the environment")


def triton_attention(*args, **kwargs):
    from patterndsl.kernels import triton_attention

    return triton_attention(*args, **kwargs)


def random_inputs(batch, heads, kv_heads, n, head_dim, dtype, seed, spread=1.0):
    """q, k, v, d_out: normal values times ``spread``, drawn in float64 and rounded to ``dtype``."""
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return (torch.randn(*shape, generator=generator, dtype=torch.float64) * spread).to(dtype)

    return (draw(batch, heads, n, head_dim), draw(batch, kv_heads, n, head_dim),
            draw(batch, kv_heads, n, head_dim), draw(batch, heads, n, head_dim))


def assert_kernels_match(source, n, block_size):
    """The kernels of ``source`` at ``n`` (layer 0; one batch, two heads, head dim 16, float32)
    against the reference, forward and backward: the chosen cases of the constructs' files."""
    compiled = patterndsl.compile(source, n)
    generator = torch.Generator().manual_seed(n)
    q, k, v, d_out = (torch.randn(1, 2, n, 16, generator=generator) for _ in range(4))
    assert_matches_reference(compiled, 0, q, k, v, d_out, block_size=block_size)


# ---- the reference -------------------------------------------------------------------------


def allowed_pairs(compiled, layer, segments=None):
    """bool [1 or batch, heads, n, n]: the pattern's pairs of each head (for each batch row's
    segment ids, given ``segments``)."""
    if segments is None:
        return torch.stack([compiled.mask(layer, h) for h in range(compiled.heads)]).unsqueeze(0)
    return torch.stack([compiled.mask(layer, h, segments=segments) for h in range(compiled.heads)], dim=1)


def reference_lse(q, k, compiled, layer, scale, segments=None):
    """float64 log-sum-exp of each row's scaled, masked scores (-inf for an empty row)."""
    heads, kv_heads = q.shape[1], k.shape[1]
    k = k.double().repeat_interleave(heads // kv_heads, dim=1)
    scores = q.double() @ k.transpose(-1, -2) * scale
    return torch.logsumexp(scores.masked_fill(~allowed_pairs(compiled, layer, segments), float("-inf")), dim=-1)


def forward_backward(function, *inputs):
    """(out, and the gradient of each input) of ``function(*inputs[:-1])`` against ``inputs[-1]``."""
    *inputs, d_out = inputs
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = function(*inputs)
    return (out.detach(), *torch.autograd.grad(out, inputs, d_out))


# Whatever the eager computation in the same dtype gets wrong, the kernels may get wrong
# a few times over (they round P to the input dtype for the second matmul, as
# FlashAttention does); FLOOR absorbs cases where eager happens to be nearly exact.
TOLERANCE = {torch.float32: (4.0, 1e-5), torch.float16: (4.0, 2e-3)}


def allowed_error(name, dtype, eager_error, want, d_out, v):
    """The error the kernels may make in ``name`` (out, dq, dk, dv, d key_bias): a few times the
    eager computation's, plus the floor of the dtype times the size of the values. For the
    gradients, the floor scales with |dO| |V| too: in a row with one key, dS = P (dP - delta)
    cancels to 0 exactly in the reference (and in eager), to the rounding of dO.V against
    delta = dO.O in the kernels."""
    factor, floor = TOLERANCE[dtype]
    cancellation = (d_out.abs().max() * v.abs().max()).item() if name != "out" else 0.0
    return factor * eager_error + floor * max(1.0, want.abs().max().item(), cancellation)


def biased_scores(q, k, compiled, layer, scale, key_bias):
    """(scores + key bias with the pattern's pairs only, -inf elsewhere; the empty rows), in q's dtype."""
    heads, kv_heads = q.shape[1], k.shape[1]
    scores = q @ k.repeat_interleave(heads // kv_heads, dim=1).transpose(-1, -2) * scale
    scores = scores + key_bias.to(q.dtype).expand(q.shape[:3]).unsqueeze(-2)
    scores = scores.masked_fill(~allowed_pairs(compiled, layer), float("-inf"))
    return scores, torch.isinf(scores).all(-1)  # a key_bias of -inf leaves a key out


def biased_reference(q, k, v, compiled, layer, scale, key_bias):
    """Dense attention with a key bias: masked softmax of the biased scores; empty rows 0."""
    scores, empty = biased_scores(q, k, compiled, layer, scale, key_bias)
    weights = torch.softmax(scores.masked_fill(empty.unsqueeze(-1), 0.0), dim=-1).masked_fill(empty.unsqueeze(-1), 0.0)
    return weights @ v.repeat_interleave(q.shape[1] // k.shape[1], dim=1)


def assert_matches_reference(compiled, layer, q, k, v, d_out, scale=None, block_size=None, max_blocks=None,
                             key_bias=None, segments=None):
    """Kernels vs float64 reference: outputs, LSE, gradients (of key_bias too, if given); no
    NaN; empty rows exactly 0. With a key bias, the reference is `biased_reference`; with
    ``segments`` (ids [batch, n]), attention_reference with those ids; a file whose `prob` is
    sparsemax or entmax is checked by `assert_entmax_matches_reference`."""
    from patterndsl.kernels.generate import alpha_of

    if alpha_of(compiled) is not None:  # the kernels run the file's prob
        assert segments is None, "entmax with segments: see test_triton_segments.test_sparsemax_with_segments"
        return assert_entmax_matches_reference(compiled, layer, q, k, v, d_out, alpha_of(compiled), block_size,
                                               max_blocks, key_bias, scale)
    assert key_bias is None or segments is None, "biased_reference reads no segment ids"
    dtype = q.dtype
    scale_value = scale if scale is not None else q.shape[-1] ** -0.5
    names, tensors = ("out", "dq", "dk", "dv"), (q, k, v)
    if key_bias is not None:
        names, tensors = names + ("d key_bias",), tensors + (key_bias,)

    def reference(q_, k_, v_, *bias):
        if bias:
            return biased_reference(q_, k_, v_, compiled, layer, scale_value, bias[0])
        return patterndsl.attention_reference(q_, k_, v_, compiled, layer, scale, segments=segments)

    exact = forward_backward(reference, *(t.double() for t in tensors), d_out.double())
    eager = forward_backward(reference, *tensors, d_out)
    lse_box = []

    def kernels(q_, k_, v_, *bias):
        out, lse = triton_attention(q_, k_, v_, compiled, layer, scale, block_size=block_size, return_lse=True,
                                    max_blocks_per_program=max_blocks, key_bias=bias[0] if bias else None,
                                    segments=segments)
        lse_box.append(lse)
        return out

    ours = forward_backward(kernels, *tensors, d_out)
    for name, mine, eager_value, want in zip(names, ours, eager, exact):
        assert mine.dtype == dtype and mine.shape == want.shape, name
        assert torch.isfinite(mine).all(), f"{name} has NaN or inf"
        error = (mine.double() - want).abs().max().item()
        eager_error = (eager_value.double() - want).abs().max().item()
        allowed = allowed_error(name, dtype, eager_error, want, d_out, v)
        assert error <= allowed, (f"{name}: max error {error:.3g} > {allowed:.3g} "
                                  f"(eager {dtype} error {eager_error:.3g})")

    # The log-sum-exp: -inf exactly for the empty rows, close elsewhere.
    lse = lse_box[0]
    if key_bias is None:
        want_lse = reference_lse(q, k, compiled, layer, scale_value, segments)
    else:
        want_lse = torch.logsumexp(biased_scores(q.double(), k.double(), compiled, layer, scale_value, key_bias.double())[0], -1)
    empty = torch.isinf(want_lse)
    assert torch.equal(torch.isinf(lse), empty.expand(lse.shape))
    lse_tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    if (~empty).any():
        error = (lse.double() - want_lse).masked_fill(empty, 0.0).abs().max().item()
        assert error <= lse_tolerance * (1 + want_lse[~empty].abs().max().item())

    # A row with no connection outputs zeros and passes no gradient to its query.
    out, dq = ours[0], ours[1]
    rows = empty.expand(out.shape[:3])
    assert (out[rows] == 0).all() and (dq[rows] == 0).all()


# ---- sparsemax and α-entmax ----------------------------------------------------------------


def entmax_reference(q, k, v, compiled, layer, scale, alpha, key_bias=None):
    """Dense α-entmax attention over each row's connected keys (the entmax package: sparsemax,
    entmax15, entmax_bisect); rows with no connection give 0."""
    entmax = pytest.importorskip("entmax")
    zero = torch.zeros(q.shape[-2], dtype=q.dtype)
    scores, empty = biased_scores(q, k, compiled, layer, scale, key_bias if key_bias is not None else zero)
    # Far below any row's threshold (within 1 / (α - 1) of its largest score): weight exactly 0.
    scores = scores.masked_fill(torch.isinf(scores), -1e4).masked_fill(empty.unsqueeze(-1), 0.0)
    if alpha == 2:
        weights = entmax.sparsemax(scores, dim=-1)
    elif alpha == 1.5:
        weights = entmax.entmax15(scores, dim=-1)
    else:
        weights = entmax.entmax_bisect(scores, alpha, dim=-1, n_iter=60)
    weights = weights.masked_fill(empty.unsqueeze(-1), 0.0)
    return weights @ v.repeat_interleave(q.shape[1] // k.shape[1], dim=1)


# The rounding the eager float32 reference may lack: float16's own; and for float32 that of the
# threshold search, iterated where the reference sorts (a row with one key is exact in eager).
ROUNDING = {torch.float32: 2e-6, torch.float16: 1e-3}


def assert_entmax_matches_reference(compiled, layer, q, k, v, d_out, alpha, block_size, max_blocks=None,
                                    key_bias=None, scale=None):
    """Kernels vs the float64 entmax reference: outputs and gradients (of key_bias too); rows
    with no connection give exactly 0."""
    dtype = q.dtype
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    tensors = (q, k, v) + ((key_bias,) if key_bias is not None else ())

    def reference(q_, k_, v_, *bias):
        return entmax_reference(q_, k_, v_, compiled, layer, scale, alpha, *bias)

    def kernels(q_, k_, v_, *bias):
        return triton_attention(q_, k_, v_, compiled, layer, scale, block_size=block_size, alpha=alpha,
                                max_blocks_per_program=max_blocks, key_bias=bias[0] if bias else None)

    exact = forward_backward(reference, *(t.double() for t in tensors), d_out.double())
    # The error the same computation makes in the test's dtype (float32 for float16: the entmax
    # package's sort and bisection are not meant for half precision on CPU).
    eager = forward_backward(reference, *(t.float() for t in tensors), d_out.float())
    ours = forward_backward(kernels, *tensors, d_out)
    for name, mine, eager_value, want in zip(("out", "dq", "dk", "dv", "d key_bias"), ours, eager, exact):
        assert mine.dtype == dtype and mine.shape == want.shape, name
        assert torch.isfinite(mine).all(), f"{name} has NaN or inf"
        error = (mine.double() - want).abs().max().item()
        eager_error = max((eager_value.double() - want).abs().max().item(), ROUNDING[dtype] * want.abs().max().item())
        allowed = allowed_error(name, dtype, eager_error, want, d_out, v)
        assert error <= allowed, f"α={alpha} {name}: max error {error:.3g} > {allowed:.3g} (eager {eager_error:.3g})"
    empty = ~allowed_pairs(compiled, layer).any(-1).expand(ours[0].shape[:3])
    assert (ours[0][empty] == 0).all() and (ours[1][empty] == 0).all()
