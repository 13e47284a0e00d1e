"""The seeded generator behind `random(r, seed=s)` (patterndsl/randomgen.py).

The README's language reference promises a documented, platform-independent generator: the same
file and the same n must give the same mask everywhere, forever. So besides
checking that the vectorized generator equals the plain-Python definition, the
tests below pin fixed values; any change to the generator fails them.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import randomgen

ROOT = Path(__file__).resolve().parent.parent


def examples(count: int) -> int:
    """``count`` hypothesis examples, scaled by $PATTERNDSL_TEST_SCALE (e.g. 20 for a long run)."""
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))


# ---- fixed values -----------------------------------------------------------------------


def test_splitmix64_published_values():
    # The SplitMix64 generator seeded with 0 outputs these three numbers (the
    # reference implementation by Vigna, used e.g. to seed xoshiro); output k is
    # splitmix64(k · golden) with splitmix64 as randomgen defines it.
    golden = 0x9E3779B97F4A7C15
    assert randomgen.splitmix64(0) == 0xE220A8397B1DCDAF
    assert randomgen.splitmix64(golden) == 0x6E789E6AA1B965F4
    assert randomgen.splitmix64((2 * golden) % 2**64) == 0x06C45D188009454F


def test_draw_golden():
    assert randomgen.draw(0, 0, 0) == 0x238275BC38FCBE91
    assert randomgen.draw(5, 6, 7) == 0xE8C0E7615EA4517A


@pytest.mark.parametrize(("seed", "row", "n", "r", "expected"), [
    (0, 0, 10, 3, [1, 4, 9]),
    (1, 5, 100, 8, [62, 45, 15, 87, 22, 93, 98, 18]),
    (2**40 + 7, 123, 1000, 5, [160, 13, 675, 897, 947]),
    (2**62, 2**39, 2**40, 4, [90266168378, 183543486615, 489527168569, 975792949526]),
    (42, 0, 5, 5, [0, 1, 2, 3, 4]),  # k = n: Floyd's algorithm then picks 0, 1, …, n-1 in order
    (9, 1, 4, 10, [0, 1, 2, 3]),  # r > n: every key
    (3, 2, 10, 0, []),
])
def test_reference_keys_golden(seed, row, n, r, expected):
    assert randomgen.reference_keys(seed, row, n, r) == expected
    assert randomgen.keys(seed, np.array([row]), n, r).tolist() == [expected]


def test_mask_golden():
    mask = patterndsl.compile("random(2, seed=3)", 6).dense()
    assert [np.flatnonzero(row).tolist() for row in mask] == [[2, 5], [0, 5], [2, 4], [3, 4], [2, 5], [0, 4]]


# ---- the vectorized generator is the documented one ----------------------------------------------


@settings(max_examples=examples(60), deadline=None)
@given(seed=st.one_of(st.integers(0, 50), st.integers(0, 2**64 - 1)),
       n=st.one_of(st.integers(1, 20), st.integers(1, 200)),
       data=st.data())
def test_vectorized_equals_reference(seed, n, data):
    # k > 64 takes the vectorized generator's other membership test; cover both.
    r = data.draw(st.one_of(st.integers(0, n + 3), st.integers(60, 70)), label="r")
    rows = data.draw(st.lists(st.one_of(st.integers(0, n - 1), st.integers(0, 2**40)), min_size=1, max_size=6),
                     label="rows")
    got = randomgen.keys(seed, np.array(rows, dtype=np.int64), n, r)
    assert got.shape == (len(rows), min(r, n))
    assert got.tolist() == [randomgen.reference_keys(seed, row, n, r) for row in rows]


@pytest.mark.parametrize(("n", "r"), [(130, 65), (130, 129), (66, 66), (300, 70)])
def test_vectorized_equals_reference_dense_membership(n, r):
    rows = np.arange(n)
    got = randomgen.keys(11, rows, n, r)
    assert got.tolist() == [randomgen.reference_keys(11, int(row), n, r) for row in rows]


def test_keys_are_distinct_and_in_range():
    for n, r in [(1, 1), (7, 3), (50, 49), (200, 100)]:
        picks = randomgen.keys(5, np.arange(n), n, r)
        for row in picks.tolist():
            assert len(set(row)) == len(row) == min(r, n)
            assert all(0 <= key < n for key in row)


# ---- determinism --------------------------------------------------------------------------------

SOURCE = "random(5, seed=7) | random(n // 4, seed=123456789) & causal"
N = 97


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(mask, dtype=bool).tobytes()).hexdigest()


def test_two_compiles_agree():
    first = patterndsl.compile(SOURCE, N)
    second = patterndsl.compile(SOURCE, N)
    np.testing.assert_array_equal(first.dense(), second.dense())
    np.testing.assert_array_equal(first.mask().numpy(), second.mask().numpy())
    np.testing.assert_array_equal(first.dense(), patterndsl.compile(SOURCE, N, simplify=False).dense())


def test_fresh_process_agrees():
    code = ("import hashlib, numpy, patterndsl; "
            f"m = patterndsl.compile({SOURCE!r}, {N}).dense(); "
            "print(hashlib.sha256(numpy.ascontiguousarray(m, dtype=bool).tobytes()).hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == _digest(patterndsl.compile(SOURCE, N).dense())


def test_rows_do_not_depend_on_how_they_are_evaluated():
    # The reference evaluator works in blocks of rows; a row's keys depend only on
    # (seed, row, n, r).
    from patterndsl.primitives import Random
    from patterndsl.reference import evaluate

    pattern = Random(6, 99)
    whole = patterndsl.compile("random(6, seed=99)", 50, simplify=False).dense()
    for rows in ([0], [49, 3, 17], list(range(10, 20))):
        np.testing.assert_array_equal(evaluate(pattern, np.array(rows), 50), whole[rows])


def test_different_seeds_differ():
    digests = {_digest(patterndsl.compile(f"random(4, seed={seed})", 32).dense()) for seed in range(12)}
    assert len(digests) == 12
    # ... and rows differ from one another within one mask
    mask = patterndsl.compile("random(4, seed=1)", 32).dense()
    assert len({row.tobytes() for row in mask}) > 16


def test_different_n_changes_keys_but_not_counts():
    small = patterndsl.compile("random(3, seed=2)", 40).dense()
    large = patterndsl.compile("random(3, seed=2)", 41).dense()
    assert (small.sum(axis=1) == 3).all() and (large.sum(axis=1) == 3).all()
    assert not np.array_equal(small, large[:40, :40])


# ---- random(r, seed=s, avoid=P): BigBird's rule ---------------------------------------------


@settings(max_examples=examples(60), deadline=None)
@given(seed=st.integers(0, 2**62), r=st.integers(0, 12), n=st.integers(1, 40),
       avoid=st.sampled_from(("window(1)", "global(0, 3)", "causal", "stride(3)", "all", "none")))
def test_avoiding_keys_equal_the_plain_python_rule(seed, r, n, avoid):
    """Row i: min(r, m) keys among its m free keys, the free keys at the ranks that
    Floyd's algorithm over 0..m-1 picks (randomgen.reference_avoiding_keys)."""
    blocked = patterndsl.compile(avoid, n).mask().numpy()
    got = patterndsl.compile(f"random({r}, seed={seed}, avoid={avoid})", n).mask().numpy()
    for i in range(n):
        free = np.flatnonzero(~blocked[i]).tolist()
        expected = set(randomgen.reference_avoiding_keys(seed, i, free, r))
        assert set(np.flatnonzero(got[i]).tolist()) == expected
        assert len(expected) == min(r, len(free))


def test_avoiding_keys_golden():
    # Fixed values: a change to the rule or the generator fails this.
    assert randomgen.reference_avoiding_keys(0, 0, [3, 5, 7, 9, 11], 2) == [5, 11]
    rows = np.arange(4)
    free = np.ones((4, 10), dtype=bool)
    free[:, :3] = False
    keys = randomgen.avoiding_keys(7, rows, free, 3)
    assert [sorted(row) for row in keys.tolist()] == [sorted(randomgen.reference_avoiding_keys(7, i, list(range(3, 10)), 3))
                                                      for i in range(4)]


def test_avoiding_keys_in_row_chunks_equal_the_plain_python_rule(monkeypatch):
    # A free matrix larger than _FREE_ENTRIES is drawn a few rows at a time (memory); same keys.
    monkeypatch.setattr(randomgen, "_FREE_ENTRIES", 50)
    rng = np.random.default_rng(3)
    free = rng.random((37, 23)) < 0.6
    rows = np.arange(100, 137, dtype=np.int64)
    got = randomgen.avoiding_keys(11, rows, free, 5)
    for k, i in enumerate(rows):
        expected = randomgen.reference_avoiding_keys(11, int(i), list(np.flatnonzero(free[k])), 5)
        assert set(got[k][got[k] >= 0].tolist()) == set(expected)


# ---- rows drawn once per analysis (randomgen.drawn_once) -----------------------------------

from patterndsl.analysis.check import check  # noqa: E402
from patterndsl.reference import evaluate  # noqa: E402


@pytest.mark.parametrize("source", ["random(n - 1, seed=3)", "random(n - 1, seed=16, avoid=cols(87..93))",
                                    "rows(45..75, n - 1..n) & random(n - 1, seed=16, avoid=window(10, -9))"])
def test_check_draws_each_row_once(source):
    """Above the dense limit, `check` asks for the rows of random(n - 1) hundreds of times
    (counts, diagonal, columns, covers); each row is drawn once (counted, not timed), and the
    counts are the reference's."""
    n = 2100
    compiled = patterndsl.compile(source, n)
    before = randomgen.rows_drawn()
    report, _ = check(compiled, budget_seconds=2.0)
    drawn = randomgen.rows_drawn() - before
    assert drawn <= n, drawn
    assert not randomgen.keeping()  # the store is dropped with the analysis
    dense = evaluate(compiled.patterns[0][0], np.arange(n), n)
    assert report["connections"]["union"] == [int(dense.sum())]


@settings(max_examples=examples(40), deadline=None)
@given(seed=st.integers(0, 2**40), n=st.integers(1, 120), data=st.data())
def test_kept_rows_answer_as_drawn(seed, n, data):
    """Inside drawn_once: the kept keys are each row's set (sorted), pairs are membership in
    it — for any order and repetition of rows, and when the store is full (drawn as without it)."""
    r = data.draw(st.sampled_from([0, 1, 3, n // 2, max(n - 1, 0), n, n + 5]))
    k = min(r, n)
    rows = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=40)), dtype=np.int64)
    cols = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=rows.size, max_size=rows.size)), dtype=np.int64)
    full = data.draw(st.booleans())
    expected = [set(randomgen.reference_keys(seed, int(i), n, r)) for i in rows]

    def draw(part):
        return randomgen.key_sets(seed, part, n, r)

    limit = 0 if full else randomgen._KEPT_ENTRIES
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(randomgen, "_KEPT_ENTRIES", limit)
        with randomgen.drawn_once():
            for _ in range(2):  # drawn, then read back
                keys = randomgen.kept_keys(("test", seed, n, r), rows, n, k, draw)
                assert [set(row) for row in keys.tolist()] == expected
                if k and not full:
                    assert (np.diff(keys, axis=1) > 0).all()
                hits = randomgen.kept_pairs(("test", seed, n, r), rows, cols, n, k, draw)
                if k and not full:
                    assert hits.tolist() == [int(j) in e for j, e in zip(cols, expected)]
                else:
                    assert hits is None or not hits.any()


@settings(max_examples=examples(60), deadline=None)
@given(seed=st.integers(0, 2**40), n=st.integers(1, 300), data=st.data())
def test_key_sets_near_n_equal_the_reference(seed, n, data):
    """r close to n: most draws land on an earlier step's m_t (the taken links followed by
    pointer doubling)."""
    r = data.draw(st.sampled_from([n, n - 1, max(0, n - 2), (3 * n) // 4, n // 2]))
    rows = np.array(data.draw(st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=8)), dtype=np.int64)
    got = randomgen.key_sets(seed, rows, n, r)
    for row, keys in zip(rows, got):
        assert sorted(keys.tolist()) == sorted(randomgen.reference_keys(seed, int(row), n, r))


@settings(max_examples=examples(60), deadline=None)
@given(seed=st.integers(0, 2**40), r=st.integers(0, 30), data=st.data())
def test_run_keys_equal_the_plain_python_rule(seed, r, data):
    """Free keys given as runs (several per row, some empty): the keys at Floyd's ranks."""
    rows = np.arange(data.draw(st.integers(1, 6)), dtype=np.int64)
    S = data.draw(st.integers(1, 5))
    gaps = np.array(data.draw(st.lists(st.integers(0, 4), min_size=rows.size * S, max_size=rows.size * S))).reshape(-1, S)
    lengths = np.array(data.draw(st.lists(st.integers(0, 6), min_size=rows.size * S, max_size=rows.size * S))).reshape(-1, S)
    starts = np.cumsum(gaps, axis=1) + np.concatenate([np.zeros((rows.size, 1), dtype=np.int64),
                                                        np.cumsum(lengths, axis=1)[:, :-1]], axis=1)
    n = int((starts + lengths).max()) + 1
    got = randomgen.run_keys(seed, rows, starts, lengths, n, r)
    for i, row in enumerate(rows):
        free = [int(a) + t for a, size in zip(starts[i], lengths[i]) for t in range(size)]
        expected = randomgen.reference_avoiding_keys(seed, int(row), free, r)
        assert sorted(x for x in got[i].tolist() if x >= 0) == sorted(expected)
        assert (got[i] >= 0).sum() == min(r, len(free))
