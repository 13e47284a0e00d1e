"""`bernoulli(p, q, seed=s)` in the generated code: its hash inlined in FlexAttention's
mask_mod and in the Triton kernels (in Triton's interpreter), against the dense reference
and the float64 attention reference, forward and backward (the helpers of
tests/test_flex.py and tests/kernel_checks.py)."""
from __future__ import annotations

import pytest

from kernel_checks import assert_kernels_match, interpreter  # (sets TRITON_INTERPRET=1)

pytest.importorskip("triton")

import patterndsl  # noqa: E402
from test_flex import check_mask_mod  # noqa: E402

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
    assert_kernels_match(source, n, block_size)
