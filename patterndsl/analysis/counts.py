"""Exact connection counts from the primitives' row structure — never an n × n mask.

Each primitive describes its keys per query row (`row_structure`, see
patterndsl/structure.py) as a formula over atoms: intervals [lo_i, hi_i),
progressions {j : (j − a_i) mod m < c} and explicit points. For a block of
rows the counter:

 1. splits [0, n) at the 2 + 2·(interval atoms) breakpoints of each row, sorted
    along axis 1 — an [rows, K] array; on each segment every interval atom is
    constant;
 2. counts the formula on each segment with the point atoms false:
    * no periodic atom: the formula is constant → segment length or 0;
    * one periodic atom p: evaluate with p true and p false and count the keys
      of p in the segment in closed form (floor arithmetic);
    * several: per segment, enumerate their truth assignments; segments where
      the formula is constant or depends on only one of them are counted in
      closed form as above; the rest — the **slow path** — by residues mod the
      lcm of the moduli when that is small, else by the dense reference over
      those rows (in row blocks);
 3. corrects for the point atoms (logsparse, random): for every distinct point
    j* of the row, adds F(i, j*) − F_without_points(i, j*).

Time O(n · K · size of the formula), memory O(block · K) — except the slow path.
`row_degrees(pattern, n)` gives the degree of every row, `connection_counts`
the counts of a compiled file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import randomgen
from .. import structure as S
from ..ir import Intersection, Pattern, Union
from ..reference import evaluate as dense_rows

_BLOCK_ELEMENTS = 1 << 21  # about this many [rows × K] entries per row block
_MOBIUS_ROWS = 1 << 14  # rows per block of the sum over intersections (in cache: 3–4× faster than 2^18)
_RANDOM_ROWS = 1 << 16  # rows per block with one plain random atom (two of draw_minima's chunks)
_MAX_ENUMERATED = 8  # enumerate truth assignments of at most this many periodic atoms
_MAX_MOBIUS = 12  # interval atoms for the sum over their intersections (a 4,096-entry truth table)
_MOBIUS_WORK = 96  # at most this many interval operations per row in that sum, else segments
_LISTED = 16  # empty rows listed individually in the statistics


# ---- the formula ---------------------------------------------------------------------


class _Formula:
    """A pattern compiled to a formula over interned atoms.

    Nodes: ("atom", kind, index), ("or", parts), ("and", parts), ("not", part),
    ("const", bool)."""

    def __init__(self, pattern: Pattern, n: int):
        self.n = n
        self.atoms: dict[str, list] = {"interval": [], "periodic": [], "points": []}
        self._ids: dict = {}
        self._nodes: dict = {}
        self.root = self._structure(pattern.row_structure(n))

    def _atom(self, atom):
        if atom not in self._ids:
            bucket = self.atoms[atom.kind]
            self._ids[atom] = ("atom", atom.kind, len(bucket))
            bucket.append(atom)
        return self._ids[atom]

    def _structure(self, node):
        """The formula of a row structure; equal subformulas (a subpattern used twice)
        become one node, which `evaluate` computes once."""
        done = self._nodes.get(node)
        if done is not None:
            return done
        if isinstance(node, S.AnyOf):
            out = ("or", tuple(self._structure(p) for p in node.parts))
        elif isinstance(node, S.AllOf):
            out = ("and", tuple(self._structure(p) for p in node.parts))
        elif isinstance(node, S.Not):
            out = ("not", self._structure(node.part))
        elif isinstance(node, S.Scaled):  # a pattern over blocks: its atoms over tokens
            out = self._structure(S.scale(node.part, node.size, self.n))
        else:
            out = self._atom(node)
        self._nodes[node] = out
        return out

    def mobius(self):
        """The formula without point atoms and with at most one periodic atom p as a sum over
        intersections of its intervals: F = Σ_T w_T · Π_{t∈T} [j ∈ I_t] (its multilinear
        polynomial, the Möbius transform of its truth table over the intervals), once with
        p false (w_off) and once with p true (w_on). A list of (T, w_off, w_on) without the
        zero terms, or None when the truth table is too large (then the counter splits rows
        into segments instead). Exact: the counts are Σ_T w_T · |∩_T I_t|."""
        if hasattr(self, "_mobius"):
            return self._mobius
        self._mobius = None
        m = len(self.atoms["interval"])
        if self.atoms["points"] or len(self.atoms["periodic"]) > 1 or m > _MAX_MOBIUS:
            return None
        tables = []
        for on in [False, True][: 1 + len(self.atoms["periodic"])]:
            table = []
            for assignment in range(1 << m):
                env = {("interval", i): bool(assignment >> i & 1) for i in range(m)}
                if self.atoms["periodic"]:
                    env[("periodic", 0)] = on
                table.append(int(bool(self.evaluate(env))))
            for i in range(m):  # Möbius transform: w_T = Σ_{A ⊆ T} (−1)^{|T∖A|} F(A)
                for assignment in range(1 << m):
                    if assignment >> i & 1:
                        table[assignment] -= table[assignment ^ (1 << i)]
            tables.append(table)
        if len(tables) == 1:
            tables.append(tables[0])
        terms = [(tuple(i for i in range(m) if subset >> i & 1), tables[0][subset], tables[1][subset])
                 for subset in range(1 << m) if tables[0][subset] or tables[1][subset]]
        if sum(max(1, len(subset)) for subset, _, _ in terms) <= _MOBIUS_WORK:
            self._mobius = terms
        return self._mobius

    def evaluate(self, env: dict):
        """The formula's value; env maps (kind, index) to a bool array or a bool."""
        memo: dict = {}

        def ev(node):
            key = id(node)
            if key in memo:
                return memo[key]
            tag = node[0]
            if tag == "atom":
                out = env[(node[1], node[2])]
            elif tag == "or":
                out = ev(node[1][0])
                for part in node[1][1:]:
                    out = np.logical_or(out, ev(part))
            elif tag == "and":
                out = ev(node[1][0])
                for part in node[1][1:]:
                    out = np.logical_and(out, ev(part))
            else:
                out = np.logical_not(ev(node[1]))
            memo[key] = out
            return out

        return ev(self.root)


# ---- counting -----------------------------------------------------------------------


def _progression_count(lo, hi, m, a, c):
    """#{j ∈ [lo, hi) : (j − a) mod m < c}, elementwise (floor arithmetic)."""

    def below(x):
        y = x - a
        return (y // m) * c + np.minimum(y % m, c)

    return below(hi) - below(lo)


# Public names for `patterndsl show`, which counts a row's keys per column bin the same way.
Formula, progression_count = _Formula, _progression_count


@dataclass
class RowCounts:
    """The degree of every query row, and how it was computed."""

    degrees: np.ndarray
    slow_path: list[str] = field(default_factory=list)




def distinct_point_pairs(lists: list, n: int):
    """The distinct (row, key) pairs over the point atoms' key lists (int64 [rows, slots], −1
    padded): (rows, keys, per atom a bool over the pairs: whether the atom holds it)."""
    packed = []
    for k, keys in enumerate(lists):
        r, c = np.nonzero(keys >= 0)
        packed.append((r * n + keys[r, c]) * len(lists) + k)
    packed = np.sort(np.concatenate(packed)) if packed else np.zeros(0, dtype=np.int64)
    pair, source = packed // max(1, len(lists)), packed % max(1, len(lists))
    first = np.ones(pair.size, dtype=bool)
    first[1:] = pair[1:] != pair[:-1]
    run = np.cumsum(first) - 1
    distinct = pair[first]
    members = []
    for k in range(len(lists)):
        held = np.zeros(distinct.size, dtype=bool)
        held[run[source == k]] = True
        members.append(held)
    return distinct // n, distinct % n, members


def point_pair_changes(formula, lists, intervals, periodic, n, skip=None):
    """(rows, keys, change) over the distinct (row, key) pairs of the point atoms' key lists:
    change = F with the points' membership − F with every point atom false (what the points
    add to or take from a row's count); rows where ``skip`` is set are left out."""
    local, cols, members = distinct_point_pairs(lists, n)
    if skip is not None:
        keep = ~skip[local]
        local, cols = local[keep], cols[keep]
        members = [m[keep] for m in members]
    env = {}
    for k, (lo, hi) in enumerate(intervals):
        env[("interval", k)] = (lo[local] <= cols) & (cols < hi[local])
    for k, (m, a, c) in enumerate(periodic):
        offset = a[local] if isinstance(a, np.ndarray) else a
        env[("periodic", k)] = (cols - offset) % m < c
    with_points = formula.evaluate({**env, **{("points", k): v for k, v in enumerate(members)}})
    without = formula.evaluate({**env, **{("points", k): False for k in range(len(lists))}})
    change = np.broadcast_to(with_points, local.shape).astype(np.int64) - np.broadcast_to(without, local.shape)
    return local, cols, change

def enumerated_segment_counts(formula, with_periodic, periodic, seg_lo, seg_hi, todo):
    """(keys per segment [lo, hi) of each row, the segments still to count) for the segments of
    ``todo`` where the formula is constant or depends on one periodic atom alone — found by
    enumerating its 2^P truth assignments (none when P > _MAX_ENUMERATED). ``with_periodic``
    maps the periodic atoms' values to the formula's environment."""
    P = len(periodic)
    length = seg_hi - seg_lo
    total = np.zeros(seg_lo.shape, dtype=np.int64)
    if P > _MAX_ENUMERATED:
        return total, todo
    values = np.stack([np.broadcast_to(formula.evaluate(with_periodic([bool(t >> p & 1) for p in range(P)])),
                                       seg_lo.shape) for t in range(1 << P)])
    constant = (values == values[0]).all(axis=0)
    total += np.where(todo & constant & values[0], length, 0)
    todo = todo & ~constant
    for p in range(P):
        if not todo.any():
            break
        only_p = todo & np.all([values[t] == values[t & (1 << p)] for t in range(1 << P)], axis=0)
        if only_p.any():
            m, a, c = periodic[p]
            hits = _progression_count(seg_lo, seg_hi, m, a[:, None] if isinstance(a, np.ndarray) else a, c)
            part = np.where(values[1 << p], hits, 0) + np.where(values[0], length - hits, 0)
            total += np.where(only_p, part, 0)
            todo = todo & ~only_p
    return total, todo

def _mobius_degrees(terms, intervals, periodic, B: int, n: int) -> np.ndarray:
    """Σ_T w_T · |∩_{t∈T} I_t| per row (see `_Formula.mobius`): an intersection of intervals
    is the interval [max lo, min hi), so each term is a few operations over the rows; with
    one periodic atom p, the keys of p in that interval in closed form."""
    degrees = np.zeros(B, dtype=np.int64)
    for subset, w_off, w_on in terms:
        if subset:
            lo, hi = intervals[subset[0]]
            for t in subset[1:]:
                lo = np.maximum(lo, intervals[t][0])
                hi = np.minimum(hi, intervals[t][1])
            hi = np.maximum(hi, lo)
        else:
            lo, hi = np.zeros(B, dtype=np.int64), np.full(B, n, dtype=np.int64)
        size = hi - lo
        if periodic:
            m, a, c = periodic[0]
            hits = _progression_count(lo, hi, m, a, c)
            degrees += w_off * (size - hits) + w_on * hits
        else:
            degrees += w_off * size
    return degrees


def _block_degrees(formula: _Formula, pattern: Pattern, rows: np.ndarray, n: int, slow: set) -> np.ndarray:
    B = rows.size
    intervals = [a.bounds(rows, n) for a in formula.atoms["interval"]]
    periodic = [a.progression(rows, n) for a in formula.atoms["periodic"]]
    point_atoms = formula.atoms["points"]
    if not point_atoms and len(periodic) <= 1:
        terms = formula.mobius()
        if terms is not None:
            return _mobius_degrees(terms, intervals, periodic, B, n)

    cuts = [np.zeros(B, dtype=np.int64), np.full(B, n, dtype=np.int64)]
    for lo, hi in intervals:
        cuts += [lo, hi]
    cuts = np.sort(np.stack(cuts, axis=1), axis=1)
    seg_lo, seg_hi = np.ascontiguousarray(cuts[:, :-1]), np.ascontiguousarray(cuts[:, 1:])  # (strided: 2× slower below)
    length = seg_hi - seg_lo

    env = {("interval", k): (lo[:, None] <= seg_lo) & (seg_lo < hi[:, None]) for k, (lo, hi) in enumerate(intervals)}
    for k in range(len(point_atoms)):
        env[("points", k)] = False

    def with_periodic(values):
        return {**env, **{("periodic", k): v for k, v in enumerate(values)}}

    def column(a):  # a per-row offset as a column, or a scalar
        return a[:, None] if isinstance(a, np.ndarray) else a

    P = len(periodic)
    if P == 0:
        without = formula.evaluate(env)
        degrees = np.where(without, length, 0).sum(axis=1)
        source = _plain_random(formula)
        if source is not None:
            return _add_random(formula, source, rows, n, degrees, intervals, env,
                               (seg_lo, seg_hi, length, np.broadcast_to(without, seg_lo.shape)))
    elif P == 1:
        m, a, c = periodic[0]
        hits = _progression_count(seg_lo, seg_hi, m, column(a), c)
        on = formula.evaluate(with_periodic([True]))
        off = formula.evaluate(with_periodic([False]))
        degrees = (np.where(on, hits, 0) + np.where(off, length - hits, 0)).sum(axis=1)
    else:
        total, todo = enumerated_segment_counts(formula, with_periodic, periodic, seg_lo, seg_hi,
                                                np.ones(seg_lo.shape, dtype=bool))
        degrees = total.sum(axis=1)
        if todo.any():
            lcm = math.lcm(*(m for m, _, _ in periodic))
            if lcm * seg_lo.shape[1] <= max(64, n):
                slow.add(f"{P} periodic atoms in one segment: counted over the residues mod {lcm}")
                extra = np.zeros(seg_lo.shape, dtype=np.int64)
                for rho in range(lcm):
                    at = [(rho - column(a)) % m < c for m, a, c in periodic]
                    hits = -((rho - seg_hi) // lcm) + ((rho - seg_lo) // lcm)  # j ≡ rho (mod lcm) in [lo, hi)
                    extra += np.where(formula.evaluate(with_periodic(at)), hits, 0)
                degrees = degrees + np.where(todo, extra, 0).sum(axis=1)
            else:
                slow.add(f"{P} periodic atoms in one segment (lcm {lcm}): dense rows")
                need = np.flatnonzero(todo.any(axis=1))
                step = max(1, _BLOCK_ELEMENTS // max(n, 1))
                for start in range(0, need.size, step):
                    chunk = need[start:start + step]
                    degrees[chunk] = dense_rows(pattern, rows[chunk], n).sum(axis=1)
                # The dense rows already hold their points: correct only the others below.
                if point_atoms:
                    done = np.zeros(B, dtype=bool)
                    done[need] = True
                    return _add_points(formula, rows, n, degrees, intervals, periodic, skip=done)
    return _add_points(formula, rows, n, degrees, intervals, periodic)


def _workers(entries: int) -> int:
    """Threads for counting ``entries`` [row × K] entries: PATTERNDSL_THREADS (default 1:
    on a machine shared with other jobs a second thread only competes; on idle cores 2
    halve the wall time of a large count), one below 4 million entries."""
    import os

    if entries < 1 << 22:
        return 1
    try:
        return max(1, int(os.environ.get("PATTERNDSL_THREADS", "1")))
    except ValueError:
        return 1


def _plain_random(formula: _Formula):
    """The `random(r, seed)` primitive (no avoid) when it is the formula's only point atom
    and there is no periodic atom, else None."""
    atoms = formula.atoms["points"]
    if len(atoms) != 1 or formula.atoms["periodic"]:
        return None
    from ..primitives import Random

    source = atoms[0].source
    return source if type(source) is Random and source.avoid is None else None


def _add_random(formula, source, rows, n, degrees, intervals, env, segments):
    """`_add_points` for one plain `random(r, seed)` atom, without building the row's key set.

    Row i's keys S (k = min(r, n) of them) come from Floyd's draws x_t
    (randomgen.raw_draws): every x_t is in S, and every other key of S is a "taken" pick
    m_t ∈ [n − k, n) (randomgen._key_sets_block). Let ch(j) = F(i, j) − F_without_points(i, j),
    constant on each segment between the row's interval cuts, c its value on the segment
    holding n − 1 and E = {j : ch(j) ≠ c}. When E misses [n − k, n), S ∩ E = X ∩ E for
    the distinct draws X, so Σ_{j∈S} ch(j) = c·k + Σ_{j ∈ X ∩ E} (ch(j) − c): the rows
    with a draw in one of E's few segments are found from each segment's least x_t − lo
    (randomgen.draw_minima, no draw kept), and only they are drawn again for their
    (rare) hits, which are deduplicated and evaluated — no sort of the row's keys. Rows
    whose E meets [n − k, n) take `_add_points`."""
    seg_lo, seg_hi, length, without = segments
    k = min(source.r, n)
    B = rows.size
    if k == 0 or B == 0:
        return degrees
    with_points = np.broadcast_to(formula.evaluate({**env, ("points", 0): True}), seg_lo.shape)
    change = with_points.astype(np.int64) - without
    nonempty = length > 0
    last = np.where(nonempty, np.arange(seg_lo.shape[1]), -1).max(axis=1)  # the segment holding n − 1
    c = change[np.arange(B), last]
    exceptional = nonempty & (change != c[:, None])
    fast = ~(exceptional & (seg_hi > n - k)).any(axis=1)
    degrees = degrees.copy()
    step = max(1, _BLOCK_ELEMENTS // k)  # rows whose k keys or draws are held at once
    slow = np.flatnonzero(~fast)
    for start in range(0, slow.size, step):
        part = slow[start:start + step]
        degrees[part] = _add_points(formula, rows[part], n, degrees[part], [(lo[part], hi[part]) for lo, hi in intervals], [])
    exceptional &= fast[:, None]
    degrees[fast] += c[fast] * k
    columns = np.flatnonzero(exceptional.any(axis=0))
    if columns.size == 0:
        return degrees
    los = [seg_lo[:, s] for s in columns]
    lens = [np.where(exceptional[:, s], length[:, s], 0).view(np.uint64) for s in columns]
    # Which rows have a draw in E: the least x_t − lo of each segment, all rows' draws
    # step by step (randomgen.draw_minima); only those rows (a few in a thousand for a
    # window and global tokens) are drawn again, row by row, for their (row, key) hits.
    # When E holds a quarter of the keys or more, most rows hit: every row drawn row by row.
    hit_rows = np.arange(B)
    if sum(int(size.sum()) for size in lens) * k < B * n // 4:
        offsets = [np.ascontiguousarray(lo).view(np.uint64) if lo.any() else None for lo in los]  # None: from key 0
        minima = randomgen.draw_minima(randomgen.row_states(source.seed, rows), n, k, offsets)
        hit_rows = np.flatnonzero(np.logical_or.reduce([least < size for least, size in zip(minima, lens)]))
        if hit_rows.size == 0:
            return degrees
    locals_, keys = [], []
    for start in range(0, hit_rows.size, step):
        part = hit_rows[start:start + step]
        draws = randomgen.raw_draws(source.seed, rows[part], n, k).view(np.uint64)
        hit = np.logical_or.reduce([draws - lo[part, None].view(np.uint64) < size[part, None]
                                    for lo, size in zip(los, lens)])
        r, t = np.nonzero(hit)
        locals_.append(part[r])
        keys.append(draws[r, t].view(np.int64))
    pairs = np.unique(np.concatenate(locals_) * n + np.concatenate(keys))  # distinct (row, key)
    local, cols = pairs // n, pairs % n
    point_env = {("interval", i): (lo[local] <= cols) & (cols < hi[local]) for i, (lo, hi) in enumerate(intervals)}
    gained = np.broadcast_to(formula.evaluate({**point_env, ("points", 0): True}), local.shape).astype(np.int64)
    lost = np.broadcast_to(formula.evaluate({**point_env, ("points", 0): False}), local.shape)
    return degrees + np.bincount(local, weights=gained - lost - c[local], minlength=B).astype(np.int64)


def _add_points(formula, rows, n, degrees, intervals, periodic, skip=None):
    """Add F(i, j*) − F_without_points(i, j*) for every distinct point j* of each row."""
    point_atoms = formula.atoms["points"]
    if not point_atoms:
        return degrees
    B = rows.size
    lists = [a.points(rows, n) for a in point_atoms]
    if len(lists) == 1:
        # One atom: its keys are distinct already; stay in [rows, k] shape.
        keys = lists[0]
        valid = keys >= 0
        if skip is not None:
            valid &= ~skip[:, None]
        env = {}
        for k, (lo, hi) in enumerate(intervals):
            env[("interval", k)] = (lo[:, None] <= keys) & (keys < hi[:, None])
        for k, (m, a, c) in enumerate(periodic):
            offset = a[:, None] if isinstance(a, np.ndarray) else a
            env[("periodic", k)] = (keys - offset) % m < c
        gained = np.logical_and(formula.evaluate({**env, ("points", 0): True}), valid)
        lost = np.logical_and(formula.evaluate({**env, ("points", 0): False}), valid)
        return degrees + np.broadcast_to(gained, keys.shape).sum(axis=1) - np.broadcast_to(lost, keys.shape).sum(axis=1)
    local, _, change = point_pair_changes(formula, lists, intervals, periodic, n, skip)
    return degrees + np.bincount(local, weights=change, minlength=B).astype(np.int64)


def _rows_per_block(formula: _Formula, n: int) -> tuple[int, int]:
    """(rows counted at once, the [rows × width] entries per row that costs)."""
    width = 2 + 2 * len(formula.atoms["interval"])
    plain = _plain_random(formula) is not None  # `_add_random` keeps no [rows × r] keys (its slow rows: in slices)
    if not plain:
        width += sum(a.width(n) for a in formula.atoms["points"])
    width *= 1 << min(len(formula.atoms["periodic"]), _MAX_ENUMERATED) if len(formula.atoms["periodic"]) > 1 else 1
    rows = _MOBIUS_ROWS if formula.mobius() is not None else _BLOCK_ELEMENTS // width
    if plain:
        rows = min(rows, _RANDOM_ROWS)
    return max(1, min(n, rows)), width


@randomgen.drawn_once()  # a random operand's rows drawn once, whatever asks for them
def analyze_rows(pattern: Pattern, n: int) -> RowCounts:
    """The exact degree of every query row of ``pattern`` at ``n``, with the slow paths taken."""
    from ..grid import grid_degrees, grids_apart

    degrees = grid_degrees(pattern, n)  # a grid (or grids combined) from its coordinate boxes
    if degrees is not None:
        return RowCounts(degrees)
    apart = grids_apart(pattern)
    if apart is not None:  # grids with 1D patterns: the grids' rows alone with the grids
        rest, ranges = apart
        result = analyze_rows(rest, n)
        formula, slow = _Formula(pattern, n), set(result.slow_path)
        step = _rows_per_block(formula, n)[0]
        for lo, hi in ranges:
            for start in range(max(0, lo), min(n, hi), step):
                rows = np.arange(start, min(n, hi, start + step), dtype=np.int64)
                result.degrees[rows] = _block_degrees(formula, pattern, rows, n, slow)
        return RowCounts(result.degrees, sorted(slow))
    formula = _Formula(pattern, n)
    step, width = _rows_per_block(formula, n)
    degrees = np.empty(n, dtype=np.int64)
    slow: set = set()

    def block(start):
        rows = np.arange(start, min(n, start + step), dtype=np.int64)
        degrees[start:start + rows.size] = _block_degrees(formula, pattern, rows, n, slow)

    starts = range(0, n, step)
    workers = _workers(n * width) if len(starts) > 1 else 1
    if workers > 1:  # numpy releases the GIL in its loops: row blocks run in parallel
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(block, starts):
                pass
    else:
        for start in starts:
            block(start)
    return RowCounts(degrees, sorted(slow))


def row_degrees(pattern: Pattern, n: int) -> np.ndarray:
    """int64 [n]: the number of keys of each query row of ``pattern`` at ``n``."""
    return analyze_rows(pattern, n).degrees


# ---- a compiled file ------------------------------------------------------------------


def degree_stats(degrees: np.ndarray, listed: int = _LISTED) -> dict:
    """min, max, mean of the row degrees, and the empty rows (count, the first
    ``listed`` indices and up to ``listed`` maximal ranges lo..hi)."""
    empty = np.flatnonzero(degrees == 0)  # sorted and distinct: its runs without IndexSet's sort
    breaks = np.flatnonzero(np.diff(empty) != 1)
    starts = np.concatenate([empty[:1], empty[breaks + 1]])
    ends = np.concatenate([empty[breaks], empty[-1:]]) + 1
    ranges = [(int(lo), int(hi)) for lo, hi in zip(starts[:listed + 1], ends[:listed + 1])]
    n = degrees.size
    return {
        "min": int(degrees.min()) if n else 0,
        "max": int(degrees.max()) if n else 0,
        "mean": float(degrees.mean()) if n else 0.0,
        "empty_rows": int(empty.size),
        "empty_first": [int(i) for i in empty[:listed]],
        "empty_ranges": [[lo, hi] for lo, hi in ranges[:listed]],
        "empty_truncated": starts.size > listed or empty.size > listed,
    }


def absorbed(parts) -> tuple:
    """The distinct ``parts`` of a union without those it absorbs, A ∪ (A ∩ X) = A: a part
    that is an intersection with another part among its operands (phi3_small's layers
    `causal` and `sparse(h) & causal`: their union is causal, counted once for 32 heads)."""
    return tuple(p for p in parts
                 if not (isinstance(p, Intersection) and any(q is not p and q in p.parts for q in parts)))


@randomgen.drawn_once()  # shared by the patterns and the unions of one file
def connection_counts(compiled) -> dict:
    """Exact counts of a CompiledPattern:

        {"n", "layers", "heads",
         "per_layer": [[count of layer l, head h]], "union": [count of the union over layers, per head],
         "rows": [[degree stats of layer l, head h]], "union_rows": [degree stats per head],
         "nonempty_rows": every row of every layer and head has a key,
         "slow_path": [{"layer", "head", "reason"}] (layer None: the union)}

    Identical patterns (heads and layers often share one) are counted once."""
    from ..errors import require_compiled

    require_compiled(compiled, "connection_counts()")
    n = compiled.n
    # Per distinct pattern only its total, statistics and slow paths: its n row degrees
    # are dropped once summarised, so the peak holds one pattern's degrees, not one per
    # head and layer (32 heads at n = 2^24 would keep 4 GiB of them).
    done: dict[Pattern, tuple[int, dict, list[str]]] = {}

    def count(pattern):
        if pattern not in done:
            result = analyze_rows(pattern, n)
            done[pattern] = (int(result.degrees.sum()), degree_stats(result.degrees), result.slow_path)
        return done[pattern]

    per_layer, rows, slow = [], [], []
    for l, layer in enumerate(compiled.patterns):
        per_layer.append([])
        rows.append([])
        for h, pattern in enumerate(layer):
            total, stats, slow_path = count(pattern)
            per_layer[-1].append(total)
            rows[-1].append(dict(stats))
            slow += [{"layer": l, "head": h, "reason": why} for why in slow_path]
    union, union_rows = [], []
    for h in range(compiled.heads):
        distinct = tuple(dict.fromkeys(layer[h] for layer in compiled.patterns))
        parts = absorbed(distinct)
        total, stats, slow_path = count(parts[0] if len(parts) == 1 else Union(parts))
        union.append(total)
        union_rows.append(dict(stats))
        if len(distinct) > 1:
            slow += [{"layer": None, "head": h, "reason": why} for why in slow_path]
    return {
        "n": n, "layers": compiled.layers, "heads": compiled.heads,
        "per_layer": per_layer, "union": union,
        "rows": rows, "union_rows": union_rows,
        "nonempty_rows": all(s["empty_rows"] == 0 for layer in rows for s in layer),
        "slow_path": slow,
    }
