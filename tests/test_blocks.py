"""`blocks(B) { P }`: (i, j) exactly when (⌊i/B⌋, ⌊j/B⌋) is in P, P over the ⌈n/B⌉
blocks. Hand-drawn masks, the dense reference against the definition, exact counts,
block layouts (only FULL blocks when B meets the kernel's blocks, with no block
evaluated), scoping of lets and defs, the formatter and the diagnostics. The generic
property tests draw it through patterndsl.strategies.blocked_sources."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import SpatError
from patterndsl import strategies as S
from patterndsl.analysis.counts import row_degrees
from patterndsl.formatter import format as fmt
from patterndsl.layout import BlockGrid, block_layout, reference_layout
from patterndsl.syntax import parse


def mask(source: str, n: int, simplify: bool = True) -> np.ndarray:
    return patterndsl.compile(source, n, simplify=simplify).mask().numpy()


def drawn(rows) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in rows])


@pytest.mark.parametrize(("source", "n", "rows"), [
    # blocks {0,1} {2,3} {4}: each block sees itself and the one before
    ("blocks(2) { window(1, 0) }", 5, ("11000", "11000", "11110", "11110", "00111")),
    # n keeps meaning the sequence length: the last block is cdiv(n, 2) - 1 = 2
    ("blocks(2) { global(cdiv(n, 2) - 1) }", 5, ("00001", "00001", "00001", "00001", "11111")),
    # a pattern over blocks nested in a union with a token pattern
    ("blocks(3) { self } | window(1)", 6, ("111000", "111000", "111100", "001111", "000111", "000111")),
    # blocks of blocks: ⌊⌊i/2⌋/2⌋ = ⌊i/4⌋
    ("blocks(2) { blocks(2) { self } }", 6, ("111100", "111100", "111100", "111100", "000011", "000011")),
    ("blocks(100) { none }", 3, ("000", "000", "000")),
    ("transpose(blocks(2) { causal })", 4, ("1111", "1111", "0011", "0011")),
])
def test_hand_drawn(source, n, rows):
    assert (mask(source, n) == drawn(rows)).all()
    assert (mask(source, n, simplify=False) == drawn(rows)).all()


def _without_n(text: str) -> bool:
    """No `n` (its meaning differs inside blocks) and no segment primitive (refused there)."""
    names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)
    return "n" not in names and not any(name.startswith("segment") for name in names)


@settings(max_examples=60, deadline=None)
@given(body=S.pattern_sources(max_depth=2, leaves=S.leaf_sources().filter(_without_n)), n=S.sizes(max_n=40),
       size=st.integers(1, 12))
def test_blocks_is_the_pattern_over_blocks(body, n, size):
    """(Bodies without `n`, which inside means the sequence length, not the block count.)"""
    blocks = -(-n // size)
    inner = mask(body, blocks)
    i = np.arange(n)
    expected = inner[(i // size)[:, None], (i // size)[None, :]]
    assert (mask(f"blocks({size}) {{ {body} }}", n) == expected).all()


@settings(max_examples=60, deadline=None)
@given(source=S.blocked_sources(), n=S.sizes(max_n=80))
def test_exact_counts(source, n):
    compiled = patterndsl.compile(source, n)
    assert row_degrees(compiled.pattern(), n).tolist() == compiled.mask().numpy().sum(axis=1).tolist()


@pytest.mark.parametrize(("source", "block_size"), [
    ("blocks(64) { window(1) | global(0) | random(2, seed=5) }", 64),
    ("blocks(64) { window(2, 0) | stride(4) }", 32),  # kernel blocks inside pattern blocks
    ("blocks(16) { window(3) & ~chunk(4) }", 64),  # pattern blocks inside kernel blocks
])
def test_aligned_layouts_are_exact_without_evaluating_blocks(source, block_size, monkeypatch):
    n = 64 * 37 + 5  # ragged: the last pattern block is cut at the sequence end
    pattern = patterndsl.compile(source, n).pattern()
    expected = reference_layout(pattern, n, block_size)

    def refuse(self, node, qb, kb):
        raise AssertionError("a block was evaluated")

    monkeypatch.setattr(BlockGrid, "evaluate_blocks", refuse)
    got = block_layout(pattern, n, block_size)
    assert got.same_as(expected)
    if source.startswith("blocks(64)"):
        assert got.num_partial == 0  # whole blocks


def test_aligned_layout_at_a_million_tokens_touches_only_its_blocks(monkeypatch):
    n = 1 << 20
    calls = []
    original = BlockGrid.evaluate_blocks
    monkeypatch.setattr(BlockGrid, "evaluate_blocks", lambda self, node, qb, kb: calls.append(qb.size)
                        or original(self, node, qb, kb))
    layout = patterndsl.compile("blocks(128) { window(1) | global(0) }", n).layout(block_size=128)
    blocks = n // 128
    assert layout.num_partial == 0 and layout.num_full == (3 * blocks - 2) + 2 * (blocks - 2)  # the band, row 0 and column 0
    assert calls == []


def test_lets_and_defs_are_evaluated_over_the_blocks():
    text = ("let last = cdiv(n, 4) - 1\nlet ends = global(0, last)\ndef near(w) = window(w)\n"
            "blocks(4) { ends | near(0) } | near(1)\n")
    n = 10
    blocks = mask("global(0, 2) | self", 3)
    i = np.arange(n)
    expected = blocks[(i // 4)[:, None], (i // 4)[None, :]] | (np.abs(i[:, None] - i[None, :]) <= 1)
    assert (mask(text, n) == expected).all()


@pytest.mark.parametrize("text", [
    "blocks(64) { window(1) | global(0) }",
    "blocks(cdiv(n, 16)) {\n    window(1) |\n    global(0)\n}",
    "window(1) | transpose(blocks(2) { causal }) - blocks(n // 4 + 1) { self }",
])
def test_format_round_trip(text):
    once = fmt(text)
    assert parse(once) == parse(text)
    assert fmt(once) == once
    n = 33
    assert (mask(once, n) == mask(text, n)).all()


@pytest.mark.parametrize(("text", "message"), [
    ("blocks(0) { self }", "blocks(B) needs B ≥ 1, but B = 0"),
    ("blocks(causal) { self }", "expected a block size, found the pattern `causal`"),
    ("blocks(2, 3) { self }", "blocks takes one block size, got 2 arguments"),
    ("blocks(2) { 3 }", "expected a pattern, found the integer 3"),
    ("blcks(2) { self }", "did you mean 'blocks'"),
    ("def f(p) = blocks(2) { p }\nf(causal)", "the pattern parameter 'p' cannot be used inside blocks { }"),
])
def test_diagnostics(text, message):
    with pytest.raises(SpatError) as info:
        patterndsl.compile(text, 64)
    assert message in str(info.value)
    assert "^" in str(info.value)
