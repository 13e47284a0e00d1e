"""The seeded generator behind `random(r, seed=s)`.

It is defined here exactly, so that the same file and the same n give the same
mask on every platform, numpy version and process:

    splitmix64(x) = the SplitMix64 output function (Steele et al., 2014) applied
                    to x + 0x9E3779B97F4A7C15, all arithmetic mod 2^64
    draw(s, i, t) = splitmix64(splitmix64(splitmix64(s) XOR i) XOR t)

Row i of `random(r, seed=s)` holds k = min(r, n) distinct keys, chosen by
Floyd's sampling algorithm over 0..n-1:

    S = {}
    for t, m in enumerate(range(n - k, n)):
        x = draw(s, i, t) mod (m + 1)
        S = S ∪ {m} if x ∈ S else S ∪ {x}

Row i of `random(r, seed=s, avoid=P)` draws among the m keys j with (i, j) ∉ P
(BigBird's rule): the same algorithm over 0..m-1 picks k = min(r, m) ranks, and
the keys are the free keys at those ranks, the free keys taken in ascending
order (`avoiding_keys`, `reference_avoiding_keys`).

`draw` uses only 64-bit integer arithmetic; the vectorized version below and
the plain-Python one (`reference_keys`) compute the same numbers, which the
tests check, together with fixed values that must never change.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB
_CHUNK = 1 << 15  # entries per row chunk of the vectorized draws
_STEP_ROWS = 1 << 15  # rows per pass of `draw_minima` (uint64 buffers of 256 KiB: in cache)
_FREE_ENTRIES = 1 << 22  # [rows × n] entries of `avoiding_keys`' free matrix handled at a time
_KEPT_ENTRIES = 1 << 25  # keys `drawn_once` keeps at most (int32 where n < 2^31: 128 MiB)


def splitmix64(x: int) -> int:
    z = (x + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _MUL1) & _MASK
    z = ((z ^ (z >> 27)) * _MUL2) & _MASK
    return z ^ (z >> 31)


def draw(seed: int, row: int, step: int) -> int:
    return splitmix64(splitmix64(splitmix64(seed) ^ row) ^ step)


def reference_keys(seed: int, row: int, n: int, r: int) -> list[int]:
    """Row ``row``'s keys in the order Floyd's algorithm picks them (plain Python)."""
    k = min(r, n)
    chosen: list[int] = []
    seen: set[int] = set()
    for step, m in enumerate(range(n - k, n)):
        x = draw(seed, row, step) % (m + 1)
        pick = m if x in seen else x
        seen.add(pick)
        chosen.append(pick)
    return chosen


def _splitmix64_array(x: np.ndarray) -> np.ndarray:
    # numpy's uint64 array arithmetic wraps mod 2^64, like the definition.
    z = x + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MUL1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MUL2)
    return z ^ (z >> np.uint64(31))


def keys(seed: int, rows: np.ndarray, n: int, r: int) -> np.ndarray:
    """The keys of each row in ``rows``: int64 [len(rows), min(r, n)], in pick order."""
    k = min(r, n)
    rows = np.asarray(rows, dtype=np.uint64).reshape(-1)
    out = np.empty((rows.size, k), dtype=np.int64)
    if k == 0 or rows.size == 0:
        return out
    row_state = _splitmix64_array(np.full(rows.shape, splitmix64(seed), dtype=np.uint64) ^ rows)
    # Every draw at once; only the membership test below is sequential.
    steps = np.arange(k, dtype=np.uint64)
    bounds = np.arange(n - k, n, dtype=np.uint64) + np.uint64(1)
    draws = (_splitmix64_array(row_state[:, None] ^ steps[None, :]) % bounds[None, :]).astype(np.int64)
    # Membership of x in the row's picks so far: a dense bit per key when k is
    # large, a comparison against the picks when it is small.
    chosen = np.zeros((rows.size, n), dtype=bool) if k > 64 else None
    index = np.arange(rows.size)
    for step, m in enumerate(range(n - k, n)):
        x = draws[:, step]
        if chosen is not None:
            taken = chosen[index, x]
        else:
            taken = (out[:, :step] == x[:, None]).any(axis=1)
        pick = np.where(taken, m, x)
        out[:, step] = pick
        if chosen is not None:
            chosen[index, pick] = True
    return out


def row_states(seed: int, rows: np.ndarray) -> np.ndarray:
    """uint64 [len(rows)]: splitmix64(splitmix64(seed) XOR i), the per-row half of `draw`."""
    rows = np.asarray(rows, dtype=np.uint64).reshape(-1)
    return _splitmix64_array(np.full(rows.shape, splitmix64(seed), dtype=np.uint64) ^ rows)


def draws_into(states: np.ndarray, n: int, k: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Fill ``out`` (uint64 [len(states), k]) with x_t = draw(s, i, t) mod (n − k + t + 1),
    in place (``tmp``: a scratch array of the same shape); returns it viewed as int64."""
    steps = np.arange(k, dtype=np.uint64)
    bounds = np.arange(n - k + 1, n + 1, dtype=np.uint64)
    np.bitwise_xor(states[:, None], steps[None, :], out=out)
    out += np.uint64(_GOLDEN)
    np.right_shift(out, np.uint64(30), out=tmp)
    out ^= tmp
    out *= np.uint64(_MUL1)
    np.right_shift(out, np.uint64(27), out=tmp)
    out ^= tmp
    out *= np.uint64(_MUL2)
    np.right_shift(out, np.uint64(31), out=tmp)
    out ^= tmp
    np.remainder(out, bounds[None, :], out=out)
    return out.view(np.int64)


def raw_draws(seed: int, rows: np.ndarray, n: int, k: int) -> np.ndarray:
    """int64 [len(rows), k]: x_t = draw(s, i, t) mod (n − k + t + 1) for every row i and
    step t < k — Floyd's draws before the membership test. Computed in place, in row
    chunks of about _CHUNK entries (numpy's temporaries then stay in cache: 2–3× faster
    than whole-array expressions at k = 192)."""
    states = row_states(seed, rows)
    out = np.empty((states.size, k), dtype=np.uint64)
    if k == 0 or states.size == 0:
        return out.view(np.int64)
    step = max(1, _CHUNK // k)
    tmp = np.empty((min(step, states.size), k), dtype=np.uint64)
    for start in range(0, states.size, step):
        z = out[start:start + step]
        draws_into(states[start:start + step], n, k, z, tmp[:z.shape[0]])
    return out.view(np.int64)


def draw_minima(states: np.ndarray, n: int, k: int, offsets: list) -> list[np.ndarray]:
    """For each offset o in ``offsets`` (uint64 [len(states)], or None for 0): uint64
    [len(states)], the least (x_t − o) mod 2^64 over the steps t < k of each row's draws
    x_t = draw(s, i, t) mod (n − k + t + 1) (``states``: `row_states`) — some x_t lies in
    [o, o + L) exactly when it is < L — without keeping the draws.

    Step by step over _STEP_ROWS rows at a time, not row by row as `raw_draws`: the
    remainder of step t has then one divisor for all those rows, and numpy divides an
    array by a scalar by multiplying (floor_divide, then x − q·d: 0.8 ns an entry here
    against 2.0 for an array remainder); 3.4–4 ns a draw in all, against about 10 for
    `raw_draws` and a test per draw (k = 192, two offsets; the same outputs: the tests
    compare it with `draw`)."""
    B = states.size
    minima = [np.full(B, np.iinfo(np.uint64).max, dtype=np.uint64) for _ in offsets]
    if k == 0 or B == 0:
        return minima
    z = np.empty(min(B, _STEP_ROWS), dtype=np.uint64)
    tmp = np.empty_like(z)
    golden, mul1, mul2 = np.uint64(_GOLDEN), np.uint64(_MUL1), np.uint64(_MUL2)
    s30, s27, s31 = np.uint64(30), np.uint64(27), np.uint64(31)
    for start in range(0, B, _STEP_ROWS):
        stop = min(B, start + _STEP_ROWS)
        state, x, t_ = states[start:stop], z[:stop - start], tmp[:stop - start]
        parts = [(None if o is None else o[start:stop], least[start:stop]) for o, least in zip(offsets, minima)]
        for step in range(k):
            bound = np.uint64(n - k + step + 1)
            np.bitwise_xor(state, np.uint64(step), out=x)  # splitmix64, as in `draws_into`
            x += golden
            np.right_shift(x, s30, out=t_)
            x ^= t_
            x *= mul1
            np.right_shift(x, s27, out=t_)
            x ^= t_
            x *= mul2
            np.right_shift(x, s31, out=t_)
            x ^= t_
            np.floor_divide(x, bound, out=t_)  # x mod bound = x − ⌊x / bound⌋ · bound
            t_ *= bound
            x -= t_
            for offset, least in parts:
                if offset is None:
                    np.minimum(least, x, out=least)
                else:
                    np.subtract(x, offset, out=t_)
                    np.minimum(least, t_, out=least)
    return minima


def key_sets(seed: int, rows: np.ndarray, n: int, r: int) -> np.ndarray:
    """The same keys as `keys` (each row's set; the order within a row may differ),
    without the sequential membership test, for many rows and large r (in row chunks,
    see `_key_sets_block`)."""
    global _rows_drawn
    k = min(r, n)
    rows = np.asarray(rows, dtype=np.uint64).reshape(-1)
    _rows_drawn += rows.size
    step = max(1, _CHUNK // max(k, 1))
    if k == 0 or rows.size <= step:
        return _key_sets_block(seed, rows, n, r)
    out = np.empty((rows.size, k), dtype=np.int64)
    for start in range(0, rows.size, step):
        out[start:start + step] = _key_sets_block(seed, rows[start:start + step], n, r)
    return out


# ---- rows drawn once per analysis -----------------------------------------------------------

_rows_drawn = 0  # rows whose keys `key_sets` drew
_kept: "_KeptRows | None" = None  # the store of the open `drawn_once`, if any
_kept_depth = 0
_kept_lock = threading.Lock()


def rows_drawn() -> int:
    """How many rows `key_sets` has drawn in this process: what an analysis costs in
    draws, counted instead of timed (rows given back by `drawn_once` are not drawn)."""
    return _rows_drawn


def keeping() -> bool:
    """Whether a `drawn_once` is open (an analysis keeps the rows it draws)."""
    return _kept is not None


@contextlib.contextmanager
def drawn_once():
    """Within it (nested uses share one store), `kept_keys` and `kept_pairs` draw each
    row of each named operand once and answer from a store after: an analysis asks for
    the rows of one `random` operand hundreds of times (counts, diagonals, columns,
    covers), each a full Floyd draw when r is close to n. The store keeps at most
    _KEPT_ENTRIES keys (beyond, rows are drawn as without it) and is dropped when the
    outermost use ends. Usable as a decorator."""
    global _kept, _kept_depth
    with _kept_lock:
        _kept_depth += 1
        if _kept is None:
            _kept = _KeptRows()
    try:
        yield
    finally:
        with _kept_lock:
            _kept_depth -= 1
            if _kept_depth == 0:
                _kept = None


def kept_keys(name, rows: np.ndarray, n: int, width: int, draw) -> np.ndarray:
    """int64 [len(rows), width]: ``draw(rows)`` (each row's keys in [0, n), −1 padded),
    each row ascending; inside `drawn_once` every row of operand ``name`` (hashable: the
    primitive and n) is drawn once, else ``draw(rows)`` itself."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    found = _kept.lookup(name, rows, n, width, draw) if _kept is not None and rows.size and width else None
    if found is None:
        return draw(rows)
    keys, local = found
    return keys[local].astype(np.int64)


def kept_pairs(name, i: np.ndarray, j: np.ndarray, n: int, width: int, draw) -> "np.ndarray | None":
    """Bool [len(i)]: j[t] among the keys of row i[t] (see `kept_keys`), by a binary search
    in the row's sorted keys (O(log width) per pair, not a row of keys each); None outside
    `drawn_once` or when the store is full."""
    i = np.asarray(i, dtype=np.int64).reshape(-1)
    j = np.asarray(j, dtype=np.int64).reshape(-1)
    found = _kept.lookup(name, i, n, width, draw) if _kept is not None and i.size and width else None
    if found is None:
        return None
    keys, local = found
    position = np.zeros(i.size, dtype=np.int64)  # the first slot holding a key ≥ j
    step = 1 << (width.bit_length() - 1)
    while step:
        probe = position + step
        below = probe <= width
        below[below] = keys[local[below], probe[below] - 1] < j[below]
        position[below] = probe[below]
        step >>= 1
    inside = position < width
    hit = np.zeros(i.size, dtype=bool)
    hit[inside] = keys[local[inside], position[inside]] == j[inside]
    return hit


class _KeptRows:
    """Per operand: the sorted keys of its rows [lo, hi) in one table [hi − lo, width] (int32
    when n < 2^31) and which of them are drawn; a table grows to cover the rows asked for.
    Only the draws run outside the lock (threads of one count draw different rows)."""

    def __init__(self):
        self.tables: dict = {}  # name -> (lo, keys, drawn)
        self.entries = 0

    def lookup(self, name, rows, n, width, draw):
        """(the table's keys, the rows' places in it), every row drawn; None when full."""
        with _kept_lock:
            if self._cover(name, int(rows.min()), int(rows.max()) + 1, width, n) is None:
                return None
            lo, _, drawn = self.tables[name]
            missing = np.unique(rows[~drawn[rows - lo]])
        found = np.sort(draw(missing), axis=1) if missing.size else None
        with _kept_lock:
            lo, keys, drawn = self.tables[name]  # another thread may have grown it meanwhile
            if found is not None:
                keys[missing - lo], drawn[missing - lo] = found, True
            return keys, rows - lo

    def _cover(self, name, lo, hi, width, n):
        """The table of ``name`` grown to cover rows [lo, hi), or None when that would keep
        more than _KEPT_ENTRIES keys."""
        table = self.tables.get(name)
        size = 0
        if table is not None:
            size = table[1].shape[0]
            if table[0] <= lo and hi <= table[0] + size:
                return table
            lo, hi = min(lo, table[0]), max(hi, table[0] + size)
        if self.entries + (hi - lo - size) * width > _KEPT_ENTRIES:
            return None
        keys = np.empty((hi - lo, width), dtype=np.int32 if n < 1 << 31 else np.int64)
        drawn = np.zeros(hi - lo, dtype=bool)
        if table is not None:
            at = table[0] - lo
            keys[at:at + size], drawn[at:at + size] = table[1], table[2]
        self.entries += (hi - lo - size) * width
        self.tables[name] = (lo, keys, drawn)
        return self.tables[name]


def _key_sets_block(seed: int, rows: np.ndarray, n: int, r: int) -> np.ndarray:
    """The same keys as `keys` (each row's set; the order within a row may differ),
    without the sequential membership test, for many rows and large r.

    Write x_t = draw(s, i, t) mod (m_t + 1), m_t = n − k + t, and c_t for "step t
    found x_t taken" (so it picks m_t). By induction every x_s (s < t) is in S
    after step s (picked, or already there), and every pick is an x_s or an m_s
    with c_s; so the taken set before step t is {x_s : s < t} ∪ {m_s : s < t, c_s}:

        c_t = (x_t = x_s for some s < t)  or  (s = x_t − (n − k) ∈ [0, t) and c_s)

    The first part is a sort per row; the second follows the links t → x_t − (n − k)
    by pointer doubling, vectorized over rows and steps.
    """
    k = min(r, n)
    rows = np.asarray(rows, dtype=np.uint64).reshape(-1)
    if k == 0 or rows.size == 0:
        return np.empty((rows.size, k), dtype=np.int64)
    draws = raw_draws(seed, rows, n, k)
    # Repeats of an earlier draw: sort (value, step) pairs packed into one int64.
    shift = max(k - 1, 1).bit_length()
    packed = np.sort((draws << shift) | np.arange(k, dtype=np.int64)[None, :], axis=1)
    repeat = np.zeros(packed.shape, dtype=bool)
    repeat[:, 1:] = ((packed[:, 1:] ^ packed[:, :-1]) >> shift) == 0
    taken = np.zeros(packed.shape, dtype=bool)
    row, position = np.nonzero(repeat)
    taken[row, packed[row, position] & ((1 << shift) - 1)] = True
    # x_t = m_s for an earlier s that was taken: c_t |= c_s with s = x_t − (n − k) < t, a
    # forest of links to earlier steps; c_t is the OR of the repeats along t's chain, found
    # by pointer doubling (a few passes: chains are short) rather than a loop over t.
    back = draws - (n - k)  # the step s whose m_s equals x_t
    linked = (back >= 0) & (back < np.arange(k, dtype=np.int64)[None, :])
    if linked.any():
        up = np.where(linked, back, k)  # k: a step past the end, never taken, its own link
        up = np.concatenate([up, np.full((up.shape[0], 1), k, dtype=np.int64)], axis=1)
        taken = np.concatenate([taken, np.zeros((taken.shape[0], 1), dtype=bool)], axis=1)
        while True:
            taken |= np.take_along_axis(taken, up, axis=1)
            up = np.take_along_axis(up, up, axis=1)
            if (up == k).all():
                break
        taken = taken[:, :k]
    return np.where(taken, np.arange(n - k, n, dtype=np.int64)[None, :], draws)


def reference_avoiding_keys(seed: int, row: int, free: list[int], r: int) -> list[int]:
    """Row ``row``'s keys among the ascending list ``free`` of its free keys (plain Python)."""
    return [free[rank] for rank in reference_keys(seed, row, len(free), r)]


def avoiding_keys(seed: int, rows: np.ndarray, free: np.ndarray, r: int) -> np.ndarray:
    """int64 [len(rows), min(r, n)]: each row's keys drawn among its free keys (``free``:
    bool [len(rows), n]), -1 in the slots beyond min(r, m) of a row with m < r free keys.
    Rows with the same m are drawn together (`key_sets` over 0..m-1)."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    step = max(1, _FREE_ENTRIES // max(1, free.shape[1]))
    if rows.size > step:  # the free keys' positions take 16 bytes each: a few rows at a time
        return np.concatenate([avoiding_keys(seed, rows[start:start + step], free[start:start + step], r)
                               for start in range(0, rows.size, step)])
    counts = free.sum(axis=1)
    width = min(r, free.shape[1])
    out = np.full((rows.size, width), -1, dtype=np.int64)
    if width == 0 or rows.size == 0:
        return out
    row_of, column = np.nonzero(free)  # ascending within each row
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for m in np.unique(counts):
        if m == 0:
            continue
        group = np.flatnonzero(counts == m)
        ranks = key_sets(seed, rows[group], int(m), r)  # [len(group), min(r, m)]
        out[group, : ranks.shape[1]] = column[start[group][:, None] + ranks]
    return out


def run_keys(seed: int, rows: np.ndarray, starts: np.ndarray, lengths: np.ndarray, n: int, r: int) -> np.ndarray:
    """The keys of `avoiding_keys` from each row's free keys given as ascending runs
    (``starts``, ``lengths``: int64 [len(rows), S]; the free key of rank ρ lies in the run
    where the lengths' running sum passes ρ), without a row of n booleans: int64
    [len(rows), min(r, n)] with n = the keys the runs reach, -1 beyond min(r, m)."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    ends = np.cumsum(lengths, axis=1)
    counts = ends[:, -1] if ends.shape[1] else np.zeros(rows.size, dtype=np.int64)
    shift = starts - (ends - lengths)  # key − rank inside each run: non-decreasing along a row
    width = min(r, n)
    out = np.full((rows.size, width), -1, dtype=np.int64)
    for m in np.unique(counts):
        if m == 0 or width == 0:
            continue
        group = np.flatnonzero(counts == m)
        ranks = key_sets(seed, rows[group], int(m), r)  # [len(group), min(r, m)]
        # key = rank + the shift of its run = rank + shift_0 + Σ_{s ≥ 1, rank ≥ end_{s−1}} (shift_s − shift_{s−1})
        keys = ranks + shift[group, :1]
        for s in range(1, shift.shape[1]):
            rise = (shift[group, s] - shift[group, s - 1])[:, None]
            keys += np.where(ranks >= ends[group, s - 1][:, None], rise, 0)
        out[group, : ranks.shape[1]] = keys
    return out


# ---- bernoulli(p, q, seed=s): a counter-based hash of (s, i, j) -----------------------------
#
# Each pair is decided on its own, from a hash of (s, i, j) alone, so the hash is the
# element predicate itself: numpy, torch and Triton evaluate the same expression. It uses
# only operations that mean the same on int32 and int64 tensors of every backend — no
# value ever reaches 2^31 (so nothing overflows, whatever the index dtype), `^` on
# non-negative integers, and `%`, `//` on non-negative operands by constants:
#
#     P = 65521 (the largest prime below 2^16)
#     round(x, v, A, C) = ((x XOR v XOR C) · A) mod P    x, v, C < 2^16, A < 2^15: below 2^31
#     z = splitmix64(s); w_k = ⌊z / 2^(16k)⌋ mod 2^16 (k = 0..3)
#     lane(x, w) = eight rounds, in order, with v =
#         i mod 2^16, ⌊i / 2^16⌋, 0, j mod 2^16, ⌊j / 2^16⌋, w, 0, 0
#         and the lane's A_1..A_8, C_1..C_8 (BERNOULLI_A, BERNOULLI_B below)
#     a = lane_A(w_0, w_2), b = lane_B(w_1, w_3)
#     h(s, i, j) = (a mod 2^15) · 2^15 + (b mod 2^15)       (0 ≤ h < 2^30)
#
# and (i, j) is in bernoulli(p, q, seed=s) exactly when h · q < p · 2^30, i.e. when
# h < T = ⌈p · 2^30 / q⌉ (T computed once, in exact integer arithmetic): for a uniform h
# the probability T / 2^30 is within 2^-30 of p/q; p = 0 is never, p = q always.
# Indices below 2^31 (every index dtype the targets use) keep ⌊i / 2^16⌋ < 2^15.

BERNOULLI_P = 65521
# (multipliers A_1..A_8 < 2^15, constants C_1..C_8 < 2^16) of the two lanes
BERNOULLI_A = ((31321, 24593, 30011, 27449, 19183, 28277, 22921, 25117),
               (0x9E37, 0x79B9, 0x7F4A, 0x7C15, 0xBF58, 0x476D, 0x1CE4, 0xE5B9))
BERNOULLI_B = ((29573, 25819, 32603, 21001, 26951, 23827, 31079, 20507),
               (0x94D0, 0x49BB, 0x1331, 0x11EB, 0x2545, 0xF491, 0x4F6C, 0xDD1D))
BERNOULLI_BITS = 30


def bernoulli_words(seed: int) -> tuple[int, int, int, int]:
    """The four 16-bit words w_0..w_3 of splitmix64(seed)."""
    z = splitmix64(seed)
    return tuple((z >> (16 * k)) & 0xFFFF for k in range(4))


def bernoulli_threshold(p: int, q: int) -> int:
    """T = ⌈p · 2^30 / q⌉: (i, j) is connected exactly when h(s, i, j) < T."""
    return -(-(p << BERNOULLI_BITS) // q)


def bernoulli_hash(seed: int, i, j):
    """h(s, i, j) of the definition above, for any i, j that support ``^ * % // +`` with
    Python ints: ints, numpy integer arrays (they broadcast), or `SourceExpr` (which writes
    the same computation as torch/Triton source)."""
    w = bernoulli_words(seed)

    def lane(x, word, constants):
        inputs = (i % 65536, i // 65536, 0, j % 65536, j // 65536, word, 0, 0)
        for v, a, c in zip(inputs, *constants):
            x = ((x ^ (v ^ c)) * a) % BERNOULLI_P
        return x

    a = lane(w[0], w[2], BERNOULLI_A)
    b = lane(w[1], w[3], BERNOULLI_B)
    return (a % 32768) * 32768 + b % 32768

