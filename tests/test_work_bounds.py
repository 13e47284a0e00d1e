"""Work and state stay bounded: counted, never timed."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl.arrays import unique_sorted


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2**40, 2**40), max_size=200), st.integers(1, 5000))
def test_unique_sorted_is_np_unique(values, stride):
    codes = np.asarray(values, dtype=np.int64) * stride
    got, counts = unique_sorted(codes, return_counts=True)
    want, want_counts = np.unique(codes, return_counts=True)
    assert np.array_equal(got, want) and np.array_equal(counts, want_counts)
    assert np.array_equal(unique_sorted(codes), want)


@pytest.mark.parametrize("source", ["random(40, seed=1)", "window(3) | global(0..4) | random(40, seed=2)",
                                    "random(40, seed=3) & causal"])
def test_a_random_layout_draws_each_row_once(source, monkeypatch):
    """A token-level random layout costs the n·r keys it draws: each query row's keys are
    drawn once per layout, whatever the block size."""
    from patterndsl import randomgen

    drawn = []
    real = randomgen.key_sets
    monkeypatch.setattr(randomgen, "key_sets", lambda seed, rows, n, r: drawn.append(len(rows)) or real(seed, rows, n, r))
    for n, block in ((2048, 128), (2048, 16), (4096, 64)):
        drawn.clear()
        layout = patterndsl.compile(source, n).layout(block_size=block)
        assert sum(drawn) == n, (n, block, sum(drawn))
        assert layout.num_blocks > 0


def test_show_evaluates_sampled_rows_a_few_at_a_time(monkeypatch):
    """show at a large n samples rows and counts them from the row structure; whatever it
    evaluates pair by pair comes in chunks of at most 2^22 pairs, never all at once (a
    (152, n) array was 19 GiB at n = 2^24)."""
    import patterndsl.show as show

    shapes = []
    real = show.evaluate
    monkeypatch.setattr(show, "evaluate", lambda pattern, query, n: shapes.append((len(query), n))
                        or real(pattern, query, n))
    n = 1 << 17
    text = show.render(patterndsl.compile("window(1)", n), width=40)
    assert "estimated from" in text
    assert all(rows * width <= 1 << 22 for rows, width in shapes)


def test_sparse_attention_keeps_a_bounded_number_of_lengths():
    import torch

    from patterndsl.nn import MAX_COMPILED_LENGTHS

    layer = patterndsl.SparseAttention("window(2)", embed_dim=8, num_heads=2, backend="reference")
    with torch.no_grad():
        for n in range(1, MAX_COMPILED_LENGTHS + 10):
            layer(torch.zeros(1, n, 8))
    assert len(layer._compiled) == MAX_COMPILED_LENGTHS
    assert max(layer._compiled) == MAX_COMPILED_LENGTHS + 9  # the most recent are kept


def test_the_flex_cache_is_bounded():
    from patterndsl.attention import MAX_CACHED_FLEX, _flex_for

    compiled = patterndsl.compile("window(2)", 256)
    for layer in range(MAX_CACHED_FLEX + 4):
        _flex_for(compiled, layer, 16, "cpu")
    assert len(compiled._flex_attention) == MAX_CACHED_FLEX
    assert (MAX_CACHED_FLEX + 3, 16, 16, "cpu") in compiled._flex_attention


def test_interpreter_calls_are_serialized(monkeypatch):
    """Triton's interpreter is not thread-safe: under TRITON_INTERPRET=1 calls into the
    kernels hold one lock; otherwise none is taken."""
    pytest.importorskip("triton")
    from patterndsl.attention import interpreter_lock

    def most_at_once() -> int:
        inside, most, guard = [0], [0], threading.Lock()
        barrier = threading.Barrier(4, timeout=5)

        def work():
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
            with interpreter_lock():
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                for _ in range(20000):
                    pass
                with guard:
                    inside[0] -= 1

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return most[0]

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert most_at_once() == 1


def test_show_samples_fewer_rows_at_huge_n(monkeypatch):
    """At n = 2^23 the pairs show evaluates one by one stay near 2^28 (counted): sampled rows
    are counted from the row structure, not key by key."""
    import patterndsl.show as show

    pairs = []
    real = show.evaluate
    monkeypatch.setattr(show, "evaluate", lambda pattern, query, n: pairs.append(len(query) * n)
                        or real(pattern, query, n))
    n = 1 << 23
    text = show.render(patterndsl.compile("window(1)", n), width=40)
    assert sum(pairs) <= max(1 << 28, 19 * n) and "sampled rows)" in text
