"""The Triton kernels (in Triton's interpreter) on the constructs of the language's
newer parts — blocks(B) { }, transpose, offsets, if, random(avoid=) — against the
float64 reference, forward and backward (tests/kernel_checks.py).
The generic kernel tests draw them too, through patterndsl.strategies."""
from __future__ import annotations

import pytest

from kernel_checks import assert_kernels_match, interpreter  # (sets TRITON_INTERPRET=1)

pytest.importorskip("triton")

_FIXTURES = (interpreter,)  # (used by pytest by name)


@pytest.mark.parametrize(("source", "n", "block_size"), [
    ("blocks(16) { window(1) | global(0) | random(1, seed=3, avoid=window(1)) }", 100, 16),  # whole blocks
    ("blocks(8) { causal } & window(20) | blocks(32) { self }", 90, 16),  # blocks inside kernel blocks, and over
    ("blocks(5) { stride(2) } - self", 70, 16),  # not aligned: the element predicate over blocks
    ("transpose(random(3, seed=4)) | transpose(summary(7, 2, offset=3))", 80, 16),
    ("chunk(8, offset=3) | stride(5, offset=-2) & window(if(n > 64, 9, 2))", 75, 32),
])
def test_kernels_match_the_reference(source, n, block_size):
    assert_kernels_match(source, n, block_size)
