"""The Triton kernels (in Triton's interpreter) on the constructs of the language's
newer parts — blocks(B) { }, transpose, offsets, if, random(avoid=) — against the
float64 reference, forward and backward (the helper of tests/test_triton_kernels.py).
The generic kernel tests draw them too, through patterndsl.strategies."""
from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported (see test_triton_kernels.py)
pytest.importorskip("triton")
torch = pytest.importorskip("torch")

import patterndsl  # noqa: E402
from test_triton_kernels import assert_matches_reference, interpreter  # noqa: E402,F401  (its fixture)


@pytest.mark.parametrize(("source", "n", "block_size"), [
    ("blocks(16) { window(1) | global(0) | random(1, seed=3, avoid=window(1)) }", 100, 16),  # whole blocks
    ("blocks(8) { causal } & window(20) | blocks(32) { self }", 90, 16),  # blocks inside kernel blocks, and over
    ("blocks(5) { stride(2) } - self", 70, 16),  # not aligned: the element predicate over blocks
    ("transpose(random(3, seed=4)) | transpose(summary(7, 2, offset=3))", 80, 16),
    ("chunk(8, offset=3) | stride(5, offset=-2) & window(if(n > 64, 9, 2))", 75, 32),
])
def test_kernels_match_the_reference(source, n, block_size):
    compiled = patterndsl.compile(source, n)
    generator = torch.Generator().manual_seed(n)
    q, k, v, d_out = (torch.randn(1, 2, n, 16, generator=generator) for _ in range(4))
    assert_matches_reference(compiled, 0, q, k, v, d_out, block_size=block_size)
