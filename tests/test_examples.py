"""The example patterns in examples/ against the papers they reproduce.

Each reference below is written from the paper's own definition, as plain
Python loops over (query i, key j), and deliberately NOT by transcribing the
.spat formula: the point is to check that the formula in the example file
means what the paper says, for every sequence length, including tiny and
ragged ones.

Conventions (the README's language reference): indices are 0-based, mask[i, j] is True
when query i attends to key j.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch

import patterndsl

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

# Sequence lengths: trivial, tiny, ragged (not a multiple of any parameter)
# and a couple of "real" sizes. Examples whose parameters exceed 257 also get
# a length at which every part of the pattern is exercised (see EXTRA_NS).
NS = [1, 2, 7, 64, 100, 257]


# ---------------------------------------------------------------------------
# References, one per paper. Each returns one [n, n] bool array per layer.
# ---------------------------------------------------------------------------


def _empty(n: int) -> np.ndarray:
    return np.zeros((n, n), dtype=bool)


def ref_strided(n: int) -> list[np.ndarray]:
    """Child et al. 2019, Sec. 4.3: strided attention, autoregressive.

    l is close to sqrt(n). Head/layer 1 attends to the previous l locations
    (the query included): i - j < l. Head/layer 2 attends to every l-th
    location: (i - j) mod l == 0. Both only look back: j <= i.
    """
    l = math.isqrt(n)
    a1, a2 = _empty(n), _empty(n)
    for i in range(n):
        for j in range(i + 1):
            a1[i, j] = i - j < l
            a2[i, j] = (i - j) % l == 0
    return [a1, a2]


def ref_fixed(n: int) -> list[np.ndarray]:
    """Child et al. 2019, Sec. 4.3: fixed attention, autoregressive.

    A(1) = {j : floor(j / l) == floor(i / l)}
    A(2) = {j : j mod l in {t, t+1, ..., l}},  t = l - c
    with l = 128, c = 8, and j <= i.
    """
    l, c = 128, 8
    t = l - c
    a1, a2 = _empty(n), _empty(n)
    for i in range(n):
        for j in range(i + 1):
            a1[i, j] = j // l == i // l
            a2[i, j] = t <= j % l <= l
    return [a1, a2]


def ref_star(n: int) -> list[np.ndarray]:
    """Guo et al. 2019, Sec. 3.1: Star-Transformer with token 0 as the relay.

    The relay attends to every node and every node attends to the relay
    (radial connections); a satellite attends to itself and its left and
    right neighbours (ring connections, open at the ends).
    """
    relay = 0
    m = _empty(n)
    for i in range(n):
        for j in range(n):
            radial = i == relay or j == relay
            ring = j in (i - 1, i, i + 1)
            m[i, j] = radial or ring
    return [m]


def ref_longformer(n: int) -> list[np.ndarray]:
    """Beltagy et al. 2020, Sec. 3.1: sliding window of size w plus global.

    "Given a fixed window size w, each token attends to w/2 tokens on each
    side." A global token attends to all tokens and all tokens attend to it.
    w = 512, global tokens = {0} ([CLS]).
    """
    w = 512
    global_tokens = {0}
    m = _empty(n)
    for i in range(n):
        for j in range(n):
            in_window = i - w // 2 <= j <= i + w // 2
            m[i, j] = in_window or i in global_tokens or j in global_tokens
    return [m]


def ref_longformer_dilated(n: int) -> list[np.ndarray]:
    """Beltagy et al. 2020, Sec. 3.1: dilated sliding window plus global.

    Window size w with gaps of size d: query i sees the w/2 keys on each
    side spaced d apart, i.e. j = i + k*d for k = -w/2 .. w/2.
    w = 128, d = 2, global tokens = {0}.
    """
    w, d = 128, 2
    global_tokens = {0}
    m = _empty(n)
    for i in range(n):
        for k in range(-(w // 2), w // 2 + 1):
            j = i + k * d
            if 0 <= j < n:
                m[i, j] = True
        for j in range(n):
            if i in global_tokens or j in global_tokens:
                m[i, j] = True
    return [m]


BIGBIRD_W, BIGBIRD_G, BIGBIRD_R, BIGBIRD_SEED = 3 * 64, 2 * 64, 3 * 64, 2020


def ref_bigbird_window_global(n: int) -> np.ndarray:
    """Zaheer et al. 2020, Sec. 2: the deterministic part of BigBird-ITC.

    Window: "the query at location i attends from i - w/2 to i + w/2 keys",
    w = 3 blocks of 64. Global (ITC): the first g = 2 blocks of 64 tokens
    attend to everything and are attended to by everything.
    """
    w, g = BIGBIRD_W, BIGBIRD_G
    m = _empty(n)
    for i in range(n):
        for j in range(n):
            in_window = i - w // 2 <= j <= i + w // 2
            m[i, j] = in_window or i < g or j < g
    return m


def ref_logsparse(n: int) -> list[np.ndarray]:
    """Li et al. 2019: LogSparse self-attention.

    Cell l attends to I_l = {l - 2^floor(log2 l), ..., l - 2^1, l - 2^0, l}:
    itself and the cells at exponentially growing distances in the past.
    """
    m = _empty(n)
    for i in range(n):
        allowed = {i}
        if i >= 1:
            for k in range(i.bit_length()):  # k = 0 .. floor(log2 i)
                allowed.add(i - 2**k)
        for j in range(n):
            m[i, j] = j in allowed
    return [m]


def ref_sinks(n: int) -> list[np.ndarray]:
    """Xiao et al. 2023 (StreamingLLM): 4 attention sinks + rolling cache.

    The KV cache for query i holds the 4 initial tokens and the 1020 most
    recent tokens up to and including i (a 1024-entry cache, "4+1020").
    """
    sinks, recent = 4, 1020
    m = _empty(n)
    for i in range(n):
        cache = set(range(min(sinks, i + 1)))
        cache |= set(range(max(0, i - recent + 1), i + 1))
        for j in range(n):
            m[i, j] = j in cache
    return [m]


def ref_prefix_lm(n: int) -> list[np.ndarray]:
    """Raffel et al. 2020 (T5), Sec. 3.2.1: causal masking with a prefix.

    Fully-visible masking over the prefix (prefix tokens see the whole
    prefix), causal masking over the rest. Prefix = first max(1, n // 2).
    """
    p = max(1, n // 2)
    m = _empty(n)
    for i in range(n):
        for j in range(n):
            both_in_prefix = i < p and j < p
            m[i, j] = both_in_prefix or j <= i
    return [m]


def ref_design_card(n: int) -> list[np.ndarray]:
    """The README's first example: window(64) | stride(128) | global(0..8)."""
    m = _empty(n)
    for i in range(n):
        for j in range(n):
            local = abs(i - j) <= 64
            strided = (i - j) % 128 == 0
            global_ = i < 8 or j < 8
            m[i, j] = local or strided or global_
    return [m]


def ref_natten(n: int) -> list[np.ndarray]:
    """Hassani et al. 2023 (NAT), Sec. 3.1: pixel (r, c) attends to the 7 × 7 pixels
    around it, the window moved inside the image at the edges (start = clamp(r − 3,
    0, H − 7)). 64 × 64 image; tokens go tile by tile (8 × 8 tiles, raster order of
    the tiles and inside each); tokens past n do not exist."""
    def pixel(t):
        tile, inside = divmod(t, 64)
        return (tile // 8) * 8 + inside // 8, (tile % 8) * 8 + inside % 8

    def start(x):
        return min(max(x - 3, 0), 64 - 7)

    m = _empty(n)
    for i in range(min(n, 4096)):
        ri, ci = pixel(i)
        for j in range(min(n, 4096)):
            rj, cj = pixel(j)
            m[i, j] = start(ri) <= rj < start(ri) + 7 and start(ci) <= cj < start(ci) + 7
    return [m]


def ref_swin(n: int) -> list[np.ndarray]:
    """Liu et al. 2021 (Swin), Sec. 3.2: attention within non-overlapping 8 × 8 windows
    of the 64 × 64 map (raster order), then within windows shifted by (4, 4) — not
    cyclic here: windows start at 4 + 8k, so the edge windows are smaller."""
    layers = []
    for shift in (0, 4):
        m = _empty(n)
        for i in range(min(n, 4096)):
            for j in range(min(n, 4096)):
                (ri, ci), (rj, cj) = divmod(i, 64), divmod(j, 64)
                m[i, j] = (ri - shift) // 8 == (rj - shift) // 8 and (ci - shift) // 8 == (cj - shift) // 8
        layers.append(m)
    return layers


def ref_sliding_tile_video(n: int) -> list[np.ndarray]:
    """Zhang et al. 2025 (STA): a 30 × 48 × 80 video latent in tiles of 6 × 8 × 8 tokens,
    numbered tile by tile (raster order of the 5 × 6 × 10 tiles, raster order inside a
    tile); query tile (a, b, c) attends to the 3 × 3 × 3 tiles starting at
    clamp(x − 1, 0, L − 3) on each tile axis of L tiles. Tokens past n do not exist."""
    t = np.arange(n)
    tile = t // 384
    coords = (tile // 60, tile // 10 % 6, tile % 10)
    m = np.ones((n, n), dtype=bool)
    for x, length in zip(coords, (5, 6, 10)):
        start = np.clip(x - 1, 0, length - 3)
        m &= (x[None, :] >= start[:, None]) & (x[None, :] < start[:, None] + 3)
    return [m]


def ref_strided_image(n: int) -> list[np.ndarray]:
    """Child et al. 2019, Sec. 4.3 on a 64 × 64 image (raster order) with the stride l
    equal to the width: one layer attends to the earlier pixels of the query's row, the
    other to the earlier pixels of its column."""
    row, column = _empty(n), _empty(n)
    for i in range(min(n, 4096)):
        for j in range(min(i + 1, 4096)):
            row[i, j] = i // 64 == j // 64
            column[i, j] = i % 64 == j % 64
    return [row, column]


def ref_vision_language(n: int) -> list[np.ndarray]:
    """PaliGemma-style (Beyer et al. 2024) prompt: causal text, and the 256 image tokens
    (positions 32 … 287) attending to each other in both directions."""
    m = _empty(n)
    for i in range(n):
        for j in range(n):
            m[i, j] = j <= i or (32 <= i < 288 and 32 <= j < 288)
    return [m]


REFERENCES = {
    "natten.spat": ref_natten,
    "swin.spat": ref_swin,
    "strided.spat": ref_strided,
    "fixed.spat": ref_fixed,
    "star.spat": ref_star,
    "longformer.spat": ref_longformer,
    "longformer_dilated.spat": ref_longformer_dilated,
    "logsparse.spat": ref_logsparse,
    "sinks.spat": ref_sinks,
    "prefix_lm.spat": ref_prefix_lm,
    "design_card.spat": ref_design_card,
    "sliding_tile_video.spat": ref_sliding_tile_video,
    "strided_image.spat": ref_strided_image,
    "vision_language.spat": ref_vision_language,
}

# Lengths past the examples' parameters, so the whole pattern is exercised:
# fixed needs n > 128 + 128 to show several summaries per row, longformer's
# window (256 per side) covers every n <= 257, and the sinks only separate
# from the recent window once n > 1024.
EXTRA_NS = {
    "fixed.spat": [300],
    "longformer.spat": [700],
    "sinks.spat": [1100],
    "sliding_tile_video.spat": [1300],  # tiles of 384: several, and a window that ends
    "strided_image.spat": [300],  # past the fourth row
}

# Every example file must be covered by a reference (BigBird is tested on
# its own below, because its random part cannot be written independently;
# Phi-3-small has 32 heads, tested head by head below).
SPECIAL = {"bigbird.spat", "bigbird_blocked.spat", "phi3_small.spat",
           "deepspeed_fixed.spat"}  # tests/test_deepspeed_fixed.py


def ref_phi3_small(n: int, head: int) -> list[np.ndarray]:
    """Phi-3-small (Abdin et al. 2024), as its code builds the mask
    (vLLM blocksparse_attention/utils.py, get_sparse_attn_mask, with the model's
    config: block_size 64, local_blocks 16, vert_stride 8, 32 heads, not
    homo_head): num_blocks = cdiv(n, 64); head_sliding_step = max(1, 8 // 32) = 1;
    block (q, k) is on when q >= k and (q - k < 16 or (k + h*step + 1) % 8 == 0);
    the token mask is that block mask expanded to 64 x 64 tiles, times tril.
    Layer 0 is the dense causal layer."""
    block, local, stride = 64, 16, 8
    step = max(1, stride // 32)
    blocks = -(-n // block)
    q, k = np.arange(blocks)[:, None], np.arange(blocks)[None, :]
    block_mask = (q >= k) & ((q - k < local) | ((k + head * step + 1) % stride == 0))
    tile = np.kron(block_mask, np.ones((block, block), dtype=bool))[:n, :n]
    causal = np.tril(np.ones((n, n), dtype=bool))
    return [causal, tile & causal]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _compile(source, n: int):
    return patterndsl.compile(source, n=n)


def _mask(pattern, n: int, layer: int = 0, head: int = 0) -> np.ndarray:
    mask = pattern.mask(layer=layer, head=head)
    assert isinstance(mask, torch.Tensor), type(mask)
    assert mask.dtype == torch.bool, mask.dtype
    assert tuple(mask.shape) == (n, n), tuple(mask.shape)
    return mask.detach().cpu().numpy()


def _assert_same(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    if np.array_equal(got, expected):
        return
    diff = np.argwhere(got != expected)
    shown = ", ".join(
        f"({i},{j}): got {bool(got[i, j])}, paper {bool(expected[i, j])}"
        for i, j in diff[:8]
    )
    raise AssertionError(f"{what}: {len(diff)} cells differ, e.g. {shown}")


def _example_cases():
    for name, _ in sorted(REFERENCES.items()):
        for n in NS + EXTRA_NS.get(name, []):
            yield pytest.param(name, n, id=f"{name[:-5]}-n{n}")


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_every_example_is_covered():
    files = {p.name for p in EXAMPLES.glob("*.spat")}
    assert files == set(REFERENCES) | SPECIAL


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("*.spat")), ids=lambda p: p.name
)
def test_example_starts_with_a_comment(path: pathlib.Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path.name} is empty"
    assert lines[0].startswith("#"), f"{path.name}: first line not a comment"
    too_long = [k + 1 for k, line in enumerate(lines) if len(line) > 79]
    assert not too_long, f"{path.name}: lines longer than 79 chars: {too_long}"


@pytest.mark.parametrize("name, n", list(_example_cases()))
def test_example_matches_paper(name: str, n: int):
    pattern = _compile(EXAMPLES / name, n)
    expected = REFERENCES[name](n)
    assert pattern.layers == len(expected)
    assert pattern.heads == 1
    for layer, exp in enumerate(expected):
        got = _mask(pattern, n, layer=layer, head=0)
        _assert_same(got, exp, f"{name} n={n} layer={layer}")


@pytest.mark.parametrize("name", sorted(REFERENCES), ids=lambda s: s[:-5])
def test_example_small_n_sweep(name: str):
    # Every n from 1 to 16: parameters derived from n (isqrt, n // 2, ...)
    # must stay valid and keep matching the paper at every length.
    for n in range(1, 17):
        pattern = _compile(EXAMPLES / name, n)
        expected = REFERENCES[name](n)
        assert pattern.layers == len(expected)
        for layer, exp in enumerate(expected):
            _assert_same(_mask(pattern, n, layer=layer), exp, f"{name} n={n}")


@pytest.mark.parametrize("n", [1, 64, 100, 257, 700, 1300, 4096], ids=lambda n: f"n{n}")
def test_bigbird_blocked(n: int):
    """Zaheer et al. 2020, App. D: blocks of 64; query block q attends to blocks
    q - 1, q, q + 1 and to the first and last blocks (global, both ways), and to
    exactly min(3, m) other key blocks, m = the blocks outside those; every pair of
    a chosen block pair is connected."""
    block, r = 64, 3
    blocks = -(-n // block)
    got = _mask(_compile(EXAMPLES / "bigbird_blocked.spat", n), n)
    token_block = np.arange(n) // block
    q, k = np.arange(blocks)[:, None], np.arange(blocks)[None, :]
    near = (np.abs(q - k) <= 1) | (q == 0) | (q == blocks - 1) | (k == 0) | (k == blocks - 1)
    # whole blocks: the token mask is constant on every block pair
    block_mask = got[np.arange(blocks) * block][:, np.arange(blocks) * block]
    expanded = block_mask[token_block[:, None], token_block[None, :]]
    _assert_same(got, expanded, f"bigbird_blocked n={n} (whole blocks)")
    assert (block_mask[near]).all()
    outside = block_mask & ~near
    assert (outside.sum(axis=1) == np.minimum(r, (~near).sum(axis=1))).all()


@pytest.mark.parametrize("n", [1, 64, 100, 1100, 2500], ids=lambda n: f"n{n}")
def test_phi3_small(n: int):
    pattern = _compile(EXAMPLES / "phi3_small.spat", n)
    assert pattern.layers == 2
    assert pattern.heads == 32
    heads = range(32) if n <= 100 else (0, 1, 7, 8, 13, 31)
    for head in heads:
        expected = ref_phi3_small(n, head)
        for layer, exp in enumerate(expected):
            _assert_same(_mask(pattern, n, layer=layer, head=head), exp, f"phi3_small n={n} head={head}")


def _bigbird_random(n: int) -> np.ndarray:
    src = f"random({BIGBIRD_R}, seed={BIGBIRD_SEED})"
    return _mask(_compile(src, n), n)


@pytest.mark.parametrize("n", NS + [700], ids=lambda n: f"n{n}")
def test_bigbird(n: int):
    pattern = _compile(EXAMPLES / "bigbird.spat", n)
    assert pattern.layers == 1
    assert pattern.heads == 1
    got = _mask(pattern, n)

    # The random part: each query row holds exactly min(r, n) keys.
    rand = _bigbird_random(n)
    counts = rand.sum(axis=1)
    assert (counts == min(BIGBIRD_R, n)).all(), counts

    # BigBird = window | global | random, with the same seeded draw.
    expected = ref_bigbird_window_global(n) | rand
    _assert_same(got, expected, f"bigbird.spat n={n}")

    # The draw is reproducible.
    again = _mask(_compile(EXAMPLES / "bigbird.spat", n), n)
    assert np.array_equal(got, again)
