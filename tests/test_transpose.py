"""`transpose(P)` ((i, j) in it exactly when (j, i) is in P) and the offsets of `chunk`
and `stride`: hand-drawn masks, the dense reference against the definition, and the
diagnostics. The generic property tests (counts, layouts, growth, flex, Triton) draw
transposes through patterndsl.strategies.leaf_sources."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings

import patterndsl
from patterndsl import SpatError
from patterndsl import strategies as S
from patterndsl.analysis.counts import row_degrees


def mask(source: str, n: int, simplify: bool = True) -> np.ndarray:
    return patterndsl.compile(source, n, simplify=simplify).mask().numpy()


def drawn(rows) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in rows])


@pytest.mark.parametrize(("source", "n", "rows"), [
    ("transpose(causal)", 4, ("1111", "0111", "0011", "0001")),
    # rows(1) becomes column 1
    ("transpose(rows(1) | self)", 4, ("1100", "0100", "0110", "0101")),
    # summary's row side: the last row of every chunk of 3 attends to everything
    ("transpose(summary(3, 1))", 5, ("00000", "00000", "11111", "00000", "00000")),
    # window(2, 0) looks back 2; its transpose looks ahead 2
    ("transpose(window(2, 0)) - self", 5, ("01100", "00110", "00011", "00001", "00000")),
    # stride(3, offset=1): i − j ≡ 1; transposed: j − i ≡ 1 (mod 3)
    ("transpose(stride(3, offset=1))", 5, ("01001", "00100", "10010", "01001", "00100")),
    ("transpose(transpose(causal))", 3, ("100", "110", "111")),
    ("transpose(~causal)", 3, ("000", "100", "110")),
])
def test_hand_drawn(source, n, rows):
    expected = drawn(rows)
    assert (mask(source, n) == expected).all()
    assert (mask(source, n, simplify=False) == expected).all()


@settings(max_examples=60, deadline=None)
@given(source=S.pattern_sources(max_depth=2), n=S.sizes(max_n=24))
def test_transpose_is_the_transposed_reference(source, n):
    assume("segment_start" not in source)  # its transpose is refused (tested in test_segments)
    plain = mask(source, n)
    assert (mask(f"transpose({source})", n) == plain.T).all()
    assert (mask(f"transpose(transpose({source}))", n) == plain).all()


@settings(max_examples=40, deadline=None)
@given(source=S.primitive_sources(("random",)), n=S.sizes(max_n=40))
def test_transposed_random_counts_are_its_column_counts(source, n):
    """transpose(random) is the one transpose kept as a node: its rows are random's columns."""
    compiled = patterndsl.compile(f"transpose({source})", n)
    dense = mask(source, n)
    assert row_degrees(compiled.pattern(), n).tolist() == dense.sum(axis=0).tolist()


def test_transposed_random_layout_is_the_transposed_blocks():
    n = 300
    plain = patterndsl.compile("random(5, seed=7)", n).layout(block_size=32).to_dense()
    turned = patterndsl.compile("transpose(random(5, seed=7))", n).layout(block_size=32).to_dense()
    assert (np.asarray(turned) == np.asarray(plain).T).all()


@pytest.mark.parametrize(("source", "message"), [
    ("transpose(3)", "transpose takes a pattern, found the integer 3"),
    ("transpose(causal, self)", "transpose takes one pattern, got 2 arguments"),
    ("transpose(p=causal)", "transpose takes one pattern, got 1 arguments"),
    ("transpse(causal)", "did you mean 'transpose'"),
])
def test_diagnostics(source, message):
    with pytest.raises(SpatError) as info:
        patterndsl.compile(source, 16)
    assert message in str(info.value)
    assert "^" in str(info.value)


@pytest.mark.parametrize(("source", "equal"), [
    ("chunk(4, offset=5)", "chunk(4, offset=1)"),  # only the remainder mod b matters
    ("stride(4, offset=-1)", "stride(4, offset=3)"),
    ("chunk(4, offset=0)", "chunk(4)"),
])
def test_offsets_reduce(source, equal):
    assert str(patterndsl.compile(source, 16, simplify=False).pattern()) == equal


@settings(max_examples=80, deadline=None)
@given(n=S.sizes(max_n=30), b=S.st.integers(1, 40), o=S.st.integers(-50, 50))
def test_offsets_against_the_definition(n, b, o):
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    assert (mask(f"chunk({b}, offset={o})", n) == ((i + o) // b == (j + o) // b)).all()
    assert (mask(f"stride({b}, offset={o})", n) == ((i - j - o) % b == 0)).all()
