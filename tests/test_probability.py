"""Probability maps (patterndsl/probability.py), the `prob` statement, and the reference's ρ.

- The maps against the `entmax` package (sparsemax, entmax15, entmax_bisect) on masked
  rows: the map of a row over its connected keys only, 0 elsewhere and on empty rows.
- Their support-aware backward passes by gradcheck (float64).
- `prob entmax(α)`: parsing, printing, formatting, and the diagnostics.
- `attention_reference` honours ρ: a `prob sparsemax` file gives exactly sparse rows
  and differs from softmax; key_bias against a hand-written formula; gradients.
- Assumption 2 for every map, checked on the numbers, in `check` and in certificates.
- The flex target's diagnostic for other maps.
"""
from __future__ import annotations

import json
import math

import entmax
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import probability
from patterndsl.cli import main

MAPS = ["softmax", "sparsemax", "entmax(1.5)", "entmax(1.25)", "entmax(1.75)"]


def package_map(prob: str):
    """The entmax package's (or torch's) version of a map, on one unmasked row."""
    prob = probability.as_map(prob)
    if prob.is_softmax:
        return lambda x: torch.softmax(x, dim=-1)
    if prob.name == "sparsemax":
        return lambda x: entmax.sparsemax(x, dim=-1)
    if prob.alpha == 1.5:
        return lambda x: entmax.entmax15(x, dim=-1)
    return lambda x: entmax.entmax_bisect(x, float(prob.alpha), dim=-1, n_iter=100)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(MAPS), st.integers(1, 6), st.integers(1, 40), st.floats(0.1, 20), st.integers(0, 2**31))
def test_maps_match_the_entmax_package_on_masked_rows(prob, rows, keys, spread, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(rows, keys, generator=generator, dtype=torch.float64) * spread
    connected = torch.rand(rows, keys, generator=generator) < 0.7
    connected[0] = False  # an empty row
    got = probability.probabilities(scores.masked_fill(~connected, -math.inf), prob)
    assert torch.equal(got[~connected], torch.zeros_like(got[~connected]))
    for row in range(1, rows):
        if connected[row].any():
            want = package_map(prob)(scores[row][connected[row]])
            torch.testing.assert_close(got[row][connected[row]], want, rtol=0, atol=1e-12)


def test_sparse_maps_are_exactly_sparse_and_softmax_is_not():
    scores = torch.tensor([[3.0, 1.0, -2.0, 0.5, -math.inf]], dtype=torch.float64)
    sparse = probability.probabilities(scores, "sparsemax")
    assert sparse.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]
    assert (probability.probabilities(scores, "entmax(1.5)")[0, 2:] == 0).all()
    assert (probability.probabilities(scores, "softmax")[0, :4] > 0).all()


@pytest.mark.parametrize("prob", MAPS)
def test_map_gradients(prob):
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(5, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    connected = torch.rand(5, 9, generator=generator) < 0.6
    connected[2] = False
    assert torch.autograd.gradcheck(
        lambda s: probability.probabilities(s.masked_fill(~connected, -math.inf), prob, dim=-1), (scores,))
    # Along another dimension too.
    assert torch.autograd.gradcheck(
        lambda s: probability.probabilities(s.masked_fill(~connected, -math.inf).T, prob, dim=0), (scores,))


@pytest.mark.parametrize("prob", MAPS)
def test_threshold_recomputes_the_map(prob):
    scores = torch.randn(4, 3, 50, dtype=torch.float32) * 4
    scores[0, 0] = -math.inf
    p, threshold = probability.forward(scores, prob)
    torch.testing.assert_close(probability.recompute(scores, threshold, prob), p, rtol=0, atol=1e-6)
    assert torch.equal(p[0, 0], torch.zeros(50))


# ---- the language -------------------------------------------------------------------------


@pytest.mark.parametrize("written, printed, alpha", [
    ("softmax", "softmax", 1), ("sparsemax", "sparsemax", 2), ("entmax(1.5)", "entmax(1.5)", 1.5),
    ("entmax(1.50)", "entmax(1.5)", 1.5), ("entmax(2)", "sparsemax", 2), ("entmax(2.0)", "sparsemax", 2),
    ("entmax(1.125)", "entmax(1.125)", 1.125), ("entmax( 1.5 )", "entmax(1.5)", 1.5)])
def test_prob_statement(written, printed, alpha):
    compiled = patterndsl.compile(f"prob {written}\nwindow(2)", 16)
    assert str(compiled.prob) == printed and compiled.prob == printed
    assert float(compiled.prob.alpha) == alpha
    assert json.dumps({"prob": compiled.prob}) == json.dumps({"prob": printed})
    formatted = patterndsl.format(f"prob {written}\nwindow(2)\n")
    assert formatted == f"prob {written.replace(' ', '')}\nwindow(2)\n"
    assert patterndsl.format(formatted) == formatted


def test_prob_survives_pickling():
    import pickle

    prob = patterndsl.compile("prob entmax(1.25)\nself", 4).prob
    again = pickle.loads(pickle.dumps(prob))
    assert again == "entmax(1.25)" and again.alpha == prob.alpha and again.name == "entmax"


@pytest.mark.parametrize("text, message, column, help_part", [
    ("prob entmax(2.5)", "α = 2.5 is outside (1, 2]", 13, "α = 1 is softmax"),
    ("prob entmax(1)", "α = 1 is outside (1, 2]", 13, "α = 2 sparsemax"),
    ("prob entmax(1.0)", "α = 1.0 is outside (1, 2]", 13, "softmax"),
    ("prob entmax(0.5)", "α = 0.5 is outside (1, 2]", 13, "softmax"),
    ("prob entmax(a)", "α must be a decimal number such as 1.5, not 'a'", 13, "prob entmax(1.5)"),
    ("prob entmax(1.5e0)", "α must be a decimal number such as 1.5, not '1.5e0'", 13, "prob entmax(1.5)"),
    ("prob entmax", "entmax needs its α", 6, "prob entmax(1.5)"),
    ("prob softmax(2)", "softmax takes no argument", 14, "prob softmax"),
    ("prob entmx(1.5)", "unknown probability map 'entmx'", 6, "did you mean 'entmax'?"),
    ("prob sparsmax", "unknown probability map 'sparsmax'", 6, "did you mean 'sparsemax'?"),
])
def test_prob_diagnostics(text, message, column, help_part):
    with pytest.raises(patterndsl.SpatError) as error:
        patterndsl.compile(text + "\nwindow(2)", 16)
    diagnostic = error.value.diagnostics[0]
    assert diagnostic.message == message
    assert (diagnostic.span.line, diagnostic.span.column) == (1, column)
    assert help_part in diagnostic.help
    assert "^" in str(error.value)


def test_prob_syntax_errors_say_how_to_write_it():
    with pytest.raises(patterndsl.SpatError) as error:
        patterndsl.compile("prob entmax()\nwindow(2)", 16)
    assert "prob entmax(1.5)" in error.value.diagnostics[0].help


# ---- the reference ------------------------------------------------------------------------


def qkv(batch, heads, kv_heads, n, dim, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, h, n, dim, generator=generator, dtype=dtype, requires_grad=True)
            for h in (heads, kv_heads, kv_heads)]


def hand_written(q, k, v, allowed, prob, scale, bias=None):
    """Per row: the map of package_map over the connected keys, written out."""
    heads = q.shape[1]
    k = k.repeat_interleave(heads // k.shape[1], dim=1)
    v = v.repeat_interleave(heads // v.shape[1], dim=1)
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for h in range(heads):
            for i in range(q.shape[2]):
                keys = allowed[h if allowed.shape[0] > 1 else 0, i].nonzero().flatten()
                if len(keys):
                    scores = (k[b, h, keys] @ q[b, h, i]) * scale
                    if bias is not None:
                        scores = scores + bias[b, h, keys]
                    out[b, h, i] = package_map(prob)(scores) @ v[b, h, keys]
    return out


@pytest.mark.parametrize("prob", MAPS)
def test_reference_honours_prob_and_key_bias(prob):
    source = f"prob {prob}\nheads {{\n 0: window(2) & causal - rows(3..5)\n 1: stride(3) | cols(0)\n}}"
    compiled = patterndsl.compile(source, 12)
    q, k, v = qkv(2, 2, 1, 12, 4, seed=3)
    bias = torch.randn(2, 1, 12, dtype=torch.float64, requires_grad=True)
    allowed = torch.stack([compiled.mask(0, h) for h in range(2)])
    got = patterndsl.attention_reference(q, k, v, compiled, scale=0.7, key_bias=bias)
    want = hand_written(q, k, v, allowed, prob, 0.7, bias.expand(2, 2, 12))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    assert torch.equal(got[:, 0, 3:5], torch.zeros_like(got[:, 0, 3:5]))  # empty rows
    got_grads = torch.autograd.grad(got.square().sum(), (q, k, v, bias))
    want_grads = torch.autograd.grad(want.square().sum(), (q, k, v, bias))
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-9)


def test_sparsemax_file_is_not_softmax_and_its_rows_are_exactly_sparse():
    n = 64
    sparse = patterndsl.compile("prob sparsemax\nwindow(8) | global(0..2)", n)
    dense = patterndsl.compile("window(8) | global(0..2)", n)
    q, k, _ = qkv(1, 1, 1, n, 8, seed=5)
    identity = torch.eye(n, dtype=torch.float64)[None, None]  # v = I: the output is the weights
    weights_of = {name: patterndsl.attention_reference(q, k, identity, compiled, scale=4.0)[0, 0]
                  for name, compiled in (("sparse", sparse), ("dense", dense))}
    allowed = sparse.mask()
    assert torch.equal(weights_of["sparse"][~allowed], torch.zeros_like(weights_of["sparse"][~allowed]))
    assert (weights_of["sparse"][allowed] == 0).sum() > allowed.sum() // 4  # exact zeros inside the pattern
    assert (weights_of["dense"][allowed] > 0).all()
    assert not torch.allclose(weights_of["sparse"], weights_of["dense"])


def test_key_bias_shape_errors():
    compiled = patterndsl.compile("window(1)", 8)
    q, k, v = qkv(2, 2, 2, 8, 4)
    for bad in (torch.zeros(3, 1, 8), torch.zeros(7), torch.zeros(8, dtype=torch.int64), [0.0] * 8):
        with pytest.raises(patterndsl.SpatError):
            patterndsl.attention_reference(q, k, v, compiled, key_bias=bad)


# ---- Assumption 2 ------------------------------------------------------------------------


@pytest.mark.parametrize("prob", MAPS + ["entmax(1.01)", "entmax(1.99)"])
def test_assumption2_holds_on_the_numbers(prob):
    """ρ(t·v) with hardmax_scale's t puts at least 1 − η on the largest entry, for rows
    whose largest entry exceeds the rest by the gap ζ."""
    assert probability.assumption2(prob)
    gap, eta, n = 0.3, 1e-3, 50
    generator = torch.Generator().manual_seed(0)
    v = torch.rand(200, n, generator=generator, dtype=torch.float64) * 5
    top = v.argmax(dim=-1)
    v[torch.arange(200), top] = v.max(dim=-1).values + gap
    second = v.clone()
    second[torch.arange(200), top] = -math.inf
    assert ((v.max(dim=-1).values - second.max(dim=-1).values) >= gap - 1e-12).all()
    p = probability.probabilities(probability.hardmax_scale(prob, gap, eta, n) * v, prob)
    assert (p[torch.arange(200), top] >= 1 - eta).all()
    if not probability.as_map(prob).is_softmax:  # the sparse maps reach the hardmax exactly
        assert (p[torch.arange(200), top] == 1).all()


def test_check_and_certificates_report_assumption2_for_entmax(tmp_path, capsys):
    spat = tmp_path / "e.spat"
    spat.write_text("prob entmax(1.5)\nwindow(1) | global(0)\n")
    cert = tmp_path / "e.cert.json"
    assert main(["check", str(spat), "--n", "32", "--json", "--certificate", str(cert)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prob"] == {"name": "entmax(1.5)", "assumption2": True}
    assert json.loads(cert.read_text())["prob"] == {"name": "entmax(1.5)", "assumption2": True}
    assert main(["verify", str(spat), str(cert)]) == 0


# ---- the flex target --------------------------------------------------------------------


def test_flex_target_refuses_other_maps(tmp_path, capsys):
    spat = tmp_path / "s.spat"
    spat.write_text("window(4)\nprob entmax(1.5)\n")
    assert main(["compile", str(spat), "--n", "64", "--target", "flex", "-o", str(tmp_path / "s_flex.py")]) == 1
    err = capsys.readouterr().err
    assert "s.spat:2:1: error: FlexAttention cannot run `prob entmax(1.5)`" in err
    assert "--target triton" in err and "patterndsl.attention" in err
    assert not (tmp_path / "s_flex.py").exists()
    compiled = patterndsl.compile(spat, 64)
    q, k, v = qkv(1, 1, 1, 64, 4)
    with pytest.raises(patterndsl.SpatError, match="FlexAttention cannot run"):
        patterndsl.attention(q, k, v, compiled, backend="flex")
