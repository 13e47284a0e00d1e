"""examples/deepspeed_fixed.spat against a plain-Python transcription of DeepSpeed's
FixedSparsityConfig.make_layout (microsoft/DeepSpeed, deepspeed/ops/sparse_attention/
sparsity_config.py, commit 38327e07): every block of every mode, the masks compared exactly."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "deepspeed_fixed.spat"
BLOCK = 16


def deepspeed_fixed_layout(num_blocks, num_local_blocks=4, num_global_blocks=1, attention="bidirectional",
                           horizontal_global_attention=False, h=0, num_different_global_patterns=1):
    """FixedSparsityConfig.set_local_layout + set_global_layout for head h, line by line
    (numpy for torch; the checks of __init__ included)."""
    if num_local_blocks % num_global_blocks != 0:
        raise ValueError("num_local_blocks must be divisible by num_global_blocks")
    if attention != "bidirectional" and horizontal_global_attention:
        raise ValueError("only bidirectional attention has horizontal global attention")
    layout = np.zeros((num_blocks, num_blocks), dtype=np.int64)
    # set_local_layout
    for i in range(0, num_blocks, num_local_blocks):
        end = min(i + num_local_blocks, num_blocks)
        for row in range(i, end):
            for col in range(i, (row + 1 if attention == "unidirectional" else end)):
                layout[row, col] = 1
    # set_global_layout
    first_global_block_idx = num_local_blocks - (1 + h % num_different_global_patterns) * num_global_blocks
    end = num_blocks - (num_blocks % num_local_blocks)
    for i in range(first_global_block_idx, end, num_local_blocks):
        first_row = 0 if attention == "bidirectional" else i
        layout[first_row:, i:i + num_global_blocks] = 1
        if horizontal_global_attention:
            layout[i:i + num_global_blocks, :] = 1
    if end < num_blocks:
        start = min(end + first_global_block_idx, num_blocks - num_global_blocks)
        end = start + num_global_blocks
        first_row = 0 if attention == "bidirectional" else start
        layout[first_row:, start:end] = 1
        if horizontal_global_attention:
            layout[start:end, :] = 1
    return layout


def definitions() -> str:
    """The example file without its last line (the pattern): its defs and `block 16`."""
    lines = EXAMPLE.read_text().rstrip("\n").splitlines()
    assert lines[-1] == "blocks(16) { bidirectional(4, 1) }"
    return "\n".join(lines[:-1])


MODES = {"bidirectional": dict(attention="bidirectional"), "unidirectional": dict(attention="unidirectional"),
         "horizontal": dict(attention="bidirectional", horizontal_global_attention=True)}


def check(mode: str, num_blocks: int, L: int, G: int):
    n = num_blocks * BLOCK  # DeepSpeed needs n divisible by the block
    source = definitions() + f"\nblocks({BLOCK}) {{ {mode}({L}, {G}) }}\n"
    got = patterndsl.compile(source, n).mask()
    blocks = deepspeed_fixed_layout(num_blocks, L, G, **MODES[mode])
    want = np.kron(blocks, np.ones((BLOCK, BLOCK), dtype=np.int64)).astype(bool)
    wrong = np.argwhere(got != want)
    assert wrong.size == 0, f"{mode}({L}, {G}) at {num_blocks} blocks: first wrong pair {tuple(wrong[0])}"


@st.composite
def configurations(draw):
    G = draw(st.integers(1, 4))
    L = G * draw(st.integers(1, 4))
    return draw(st.sampled_from(sorted(MODES))), draw(st.integers(G, 14)), L, G  # at least G blocks


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(configurations())
def test_every_mode_matches_deepspeed(configuration):
    check(*configuration)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("num_blocks, L, G", [(8, 4, 1), (7, 4, 2), (9, 4, 2), (5, 4, 1), (3, 4, 1), (1, 4, 1),
                                              (10, 6, 3), (6, 2, 2), (13, 1, 1)])
def test_hand_picked_configurations(mode, num_blocks, L, G):
    check(mode, num_blocks, L, G)


def test_the_example_is_deepspeeds_default():
    for num_blocks in (4, 6, 16):
        got = patterndsl.compile(EXAMPLE, num_blocks * BLOCK).mask()
        want = np.kron(deepspeed_fixed_layout(num_blocks), np.ones((BLOCK, BLOCK), dtype=np.int64)).astype(bool)
        assert np.array_equal(got, want)


def test_unidirectional_global_groups_reach_above_the_diagonal():
    # DeepSpeed sets rows i.. of the G columns i..i+G-1: with G = 2, block row 2 sees block 3
    layout = deepspeed_fixed_layout(4, 4, 2, attention="unidirectional")
    assert layout[2, 3] == 1 and layout[1, 2] == 0
    check("unidirectional", 4, 4, 2)
