"""`bernoulli(p, q, seed=s)`: each pair on its own with probability p/q, from the counter-based
hash of (s, i, j) that patterndsl/randomgen.py defines and the README states.

The hash is the element predicate itself, so the checks are: the vectorized hash equals a
plain-Python one written here from the README's definition; fixed values that must never
change; the torch and Triton source computes the same bits on int32 and int64 indices; the
mask has the density and independence it promises; and the pipeline (counts, growth, layouts,
flex, Triton's interpreter, verify) agrees with the dense reference. The generic property tests
(test_primitives, test_counts, test_layout, test_flex, …) draw it from the registry as well.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import SpatError, randomgen, verify
from patterndsl.analysis import row_degrees
from patterndsl.analysis.growth import growth
from patterndsl.primitives import Bernoulli

# ---- the definition, from the README, in plain Python ---------------------------------------

_MASK64 = (1 << 64) - 1
_LANES = (
    ((31321, 24593, 30011, 27449, 19183, 28277, 22921, 25117),
     (0x9E37, 0x79B9, 0x7F4A, 0x7C15, 0xBF58, 0x476D, 0x1CE4, 0xE5B9)),
    ((29573, 25819, 32603, 21001, 26951, 23827, 31079, 20507),
     (0x94D0, 0x49BB, 0x1331, 0x11EB, 0x2545, 0xF491, 0x4F6C, 0xDD1D)),
)


def splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def plain_hash(seed: int, i: int, j: int) -> int:
    z = splitmix64(seed)
    w = [(z >> (16 * k)) & 0xFFFF for k in range(4)]
    lanes = []
    for (multipliers, constants), start, word in zip(_LANES, (w[0], w[1]), (w[2], w[3])):
        x = start
        for v, a, c in zip((i & 0xFFFF, i >> 16, 0, j & 0xFFFF, j >> 16, word, 0, 0), multipliers, constants):
            x = ((x ^ v ^ c) * a) % 65521
        lanes.append(x)
    return ((lanes[0] & 0x7FFF) << 15) | (lanes[1] & 0x7FFF)


def plain_pair(p: int, q: int, seed: int, i: int, j: int) -> bool:
    return plain_hash(seed, i, j) * q < p * 2**30


# ---- fixed values ---------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "i", "j", "expected"), [
    (0, 0, 0, 78841753),
    (0, 1, 0, 279630896),
    (0, 0, 1, 479072858),
    (5, 3, 7, 1004146130),
    (2**62, 2**31 - 1, 2**30 + 12345, 662878900),
    (123456789, 65535, 65536, 260742821),
])
def test_hash_golden(seed, i, j, expected):
    assert plain_hash(seed, i, j) == expected
    assert randomgen.bernoulli_hash(seed, i, j) == expected


def test_mask_golden():
    # bernoulli(1, 2, seed=3) at n = 6, from the definition (the rows as a picture)
    rows = ["".join("1" if plain_pair(1, 2, 3, i, j) else "0" for j in range(6)) for i in range(6)]
    assert rows == ["111011", "100111", "001110", "101010", "010101", "001111"]
    mask = patterndsl.compile("bernoulli(1, 2, seed=3)", 6).dense(0, 0)
    assert ["".join(str(int(x)) for x in row) for row in mask] == rows


# ---- the vectorized hash, the source, verify's evaluator: the same bits ----------------------

indices = st.one_of(st.integers(0, 300), st.integers(0, 2**31 - 1), st.sampled_from((65535, 65536, 2**31 - 1)))
seeds = st.one_of(st.integers(0, 20), st.integers(0, 2**64 + 5))


@settings(max_examples=60, deadline=None)
@given(seeds, st.lists(st.tuples(indices, indices), min_size=1, max_size=20))
def test_vectorized_hash_and_verify_equal_the_definition(seed, pairs):
    i = np.array([a for a, _ in pairs], dtype=np.int64)
    j = np.array([b for _, b in pairs], dtype=np.int64)
    want = [plain_hash(seed, a, b) for a, b in pairs]
    assert randomgen.bernoulli_hash(seed, i, j).tolist() == want
    assert randomgen.bernoulli_hash(seed, i.astype(np.int32), j.astype(np.int32)).tolist() == want
    assert verify._bernoulli_hash(seed, i, j).tolist() == want


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2**41), st.data(), seeds, st.booleans(), st.integers(1, 40))
def test_predicate_pairs_reference_and_verify_agree(q, data, seed, swapped, n):
    p = data.draw(st.integers(0, q))
    node = Bernoulli(p, q, seed, swapped)
    rows = np.arange(n, dtype=np.int64)
    dense = node.predicate(rows[:, None], rows[None, :], n)
    want = np.array([[plain_pair(p, q, seed, *((j, i) if swapped else (i, j))) for j in range(n)]
                     for i in range(n)])
    assert np.array_equal(dense, want)
    assert np.array_equal(verify._bernoulli_rows(node, rows, n), want)
    i, j = np.repeat(rows, n), np.tile(rows, n)
    assert np.array_equal(node.pairs(i, j, n), want.reshape(-1))
    assert all(node.reference_pair(a, b, n) == want[a, b] for a, b in [(0, 0), (n - 1, 0), (0, n - 1)])


def test_source_is_the_same_on_int32_and_int64_torch_tensors():
    torch = pytest.importorskip("torch")
    node = Bernoulli(3, 7, 2**40 + 1)
    text = node.source("q", "k", 2**31 - 1, None)
    for offset in (0, 65530, 2**31 - 300):
        qs = np.arange(offset, offset + 64, dtype=np.int64)
        want = node.predicate(qs[:, None], qs[None, :], 2**31 - 1)
        for dtype in (torch.int32, torch.int64):
            q = torch.tensor(qs, dtype=dtype)[:, None]
            k = torch.tensor(qs, dtype=dtype)[None, :]
            got = eval(text, {}, {"q": q, "k": k})  # noqa: S307 (our generated expression)
            assert np.array_equal(got.numpy(), want), (offset, dtype)


# ---- what it promises about the mask ---------------------------------------------------------


@pytest.mark.parametrize(("p", "q", "seed"), [(1, 2, 0), (1, 10, 7), (9, 10, 2**50), (1, 3, 11)])
def test_density_and_independence(p, q, seed):
    n = 512
    mask = patterndsl.compile(f"bernoulli({p}, {q}, seed={seed})", n).dense(0, 0).astype(np.float64)
    rate = p / q
    sigma = np.sqrt(rate * (1 - rate) / n**2)
    assert abs(mask.mean() - rate) < 5 * sigma
    # neighbours along a row, a column, the diagonal and the transpose are uncorrelated
    above = np.triu_indices(n, 1)
    for a, b in ((mask[:, :-1], mask[:, 1:]), (mask[:-1], mask[1:]), (mask[:-1, :-1], mask[1:, 1:]),
                 (mask[above], mask.T[above])):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.02
    # each row's count is about binomial(n, p/q)
    counts = mask.sum(axis=1)
    assert abs(counts.std() / np.sqrt(n * rate * (1 - rate)) - 1) < 0.2


def test_seeds_give_different_masks():
    masks = [patterndsl.compile(f"bernoulli(1, 2, seed={s})", 64).dense(0, 0) for s in (0, 1, 2**62)]
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[0], masks[2])
    assert np.array_equal(masks[0], patterndsl.compile("bernoulli(1, 2)", 64).dense(0, 0))  # seed 0 by default


def test_transpose_and_folding():
    n = 48
    plain = patterndsl.compile("bernoulli(2, 5, seed=4)", n).dense(0, 0)
    assert np.array_equal(patterndsl.compile("transpose(bernoulli(2, 5, seed=4))", n).dense(0, 0), plain.T)
    assert str(patterndsl.compile("bernoulli(0, 5)", n).pattern()) == "none"
    assert str(patterndsl.compile("bernoulli(5, 5)", n).pattern()) == "all"
    assert str(patterndsl.compile("transpose(bernoulli(1, 5))", n).pattern()) == "transpose(bernoulli(1, 5, seed=0))"


# ---- the pipeline ---------------------------------------------------------------------------


def test_counts_growth_and_layout():
    n = 200
    compiled = patterndsl.compile("bernoulli(1, 4, seed=3) | window(2)", n)
    dense = compiled.dense(0, 0)
    assert list(row_degrees(compiled.pattern(), n)) == dense.sum(axis=1).tolist()
    out = growth(compiled)
    assert out["growth"] == "O(n^2)" and not out["tight"]
    assert out["per_layer"][0][0]["bound_at_n"] >= dense.sum()
    empty = growth(patterndsl.compile("bernoulli(0, n) | self", n))
    assert empty["growth"] == "O(n)"
    layout = compiled.layout(0, 0, 16)
    # every block of 16 × 16 pairs is partial (p/q = 1/4: none empty, none full)
    assert layout.num_full == 0 and layout.num_partial == (-(-n // 16)) ** 2


def test_errors_name_the_parameter():
    for source, needle in (("bernoulli(3, 2)", "needs p ≤ q"), ("bernoulli(1, 0)", "needs q ≥ 1"),
                           ("bernoulli(-1, 2)", "needs p ≥ 0"), ("bernoulli(1, 2, seed=-1)", "needs seed ≥ 0")):
        with pytest.raises(SpatError) as info:
            patterndsl.compile(source, 16)
        assert needle in str(info.value) and "^" in str(info.value), source
