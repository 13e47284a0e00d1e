"""`bernoulli(p, q, seed=s)` in the generated code: its hash inlined in FlexAttention's
mask_mod and in the Triton kernels (in Triton's interpreter), against the dense reference
and the float64 attention reference, forward and backward (the helpers of
tests/test_flex.py and tests/test_triton_kernels.py)."""
from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported (see test_triton_kernels.py)
pytest.importorskip("triton")
torch = pytest.importorskip("torch")

import patterndsl  # noqa: E402
from test_flex import check_mask_mod  # noqa: E402
from test_triton_kernels import assert_matches_reference, interpreter  # noqa: E402,F401  (its fixture)

_FIXTURES = (interpreter,)  # (used by pytest by name)


@pytest.mark.parametrize(("source", "n"), [
    ("bernoulli(1, 3, seed=5)", 70),
    ("transpose(bernoulli(2, 7, seed=41)) | self", 100),
    ("bernoulli(1, 2, seed=9) & causal | grid(4, 4, offset=3) { bernoulli(1, 4) }", 33),
    ("blocks(16) { bernoulli(1, 2, seed=1) } & window(20)", 96),
])
def test_mask_mod_matches_the_reference(source, n):
    check_mask_mod(patterndsl.compile(source, n), 0, (32, 16))
    check_mask_mod(patterndsl.compile(source, n), 0, (16, 16))


@pytest.mark.parametrize(("source", "n", "block_size"), [
    # ragged (the last blocks are cut), both orientations of the hash
    ("transpose(bernoulli(3, 4, seed=11)) & causal | bernoulli(1, 3, seed=5)", 70, 32),
])
def test_kernels_match_the_reference(source, n, block_size):
    compiled = patterndsl.compile(source, n)
    generator = torch.Generator().manual_seed(n)
    q, k, v, d_out = (torch.randn(1, 2, n, 16, generator=generator) for _ in range(4))
    assert_matches_reference(compiled, 0, q, k, v, d_out, block_size=block_size)
