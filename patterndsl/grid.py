"""2D and 3D grids: `grid(H, W) { P }`, `grid(T, H, W) { P }` and the primitives that
only mean something inside one (issue 12).

`Grid` (an IR node, as `Blocked` is) maps the tokens offset … offset + cells − 1 that
exist (below n) to the raster ranks of their cells — directly (`order=rows`), tile by
tile (`tile=(th, tw)`) or by the rank of the cell's Z-code (`order=morton`) — and asks
its operand, a pattern over the raster ranks 0 … cells − 1 (built for that size), about
the ranks. Tokens outside the grid have no pairs in it.

The grid primitives (`window2d`, `natten`, `chunk2d`, `stride2d`, `manhattan`,
`euclid`, `sliding_tiles` and the 3D forms) read the coordinates of a raster rank
(frame, row, column; the frame axis first) from the grid they are built in: the
resolver passes the grid's shape (`GridShape`) as the argument ``grid``. Their rules
are written once with Python operators, so that the same code gives the numpy
predicate and the torch/Triton source (`_Expr`).

Where it comes from (counts, layouts): a grid's keys per row are listed explicitly
(`row_points`): the candidate cells of each query — the box its neighbourhood
primitives bound, else every cell — filtered by the operand's own `pairs`. The exact
counter and the block layouts read those points (`structure.Points`), so their work
is proportional to the pairs listed (for a neighbourhood, n · the box), not to n².
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from . import structure as R
from .ir import Intersection, Pattern
from .arrays import unique_sorted
from .primitives import ParamError, ParamSpec, Primitive, RowBound

ORDERS = ("rows", "morton")
GRID_PRIMITIVES: dict[str, type["GridPrimitive"]] = {}


def grid_primitive(cls):
    GRID_PRIMITIVES[cls.name] = cls
    return cls


@dataclass(frozen=True)
class GridShape:
    """The grid a grid primitive is built in: its axis lengths (frame first) and tile sizes
    (None: no tile=). Values are ints, or the growth analysis's quantities (`at` gives ints)."""

    dims: tuple
    tile: tuple | None = None

    def at(self, n):
        return GridShape(tuple(d.at(n) for d in self.dims),
                         None if self.tile is None else tuple(t.at(n) for t in self.tile))


# ---- expressions that are both numpy and source -------------------------------------------


class _Expr:
    """A torch/Triton source expression that composes with Python's operators, so a rule
    written for numpy arrays also writes its own source."""

    def __init__(self, text):
        self.text = str(text)

    def __str__(self):
        return self.text

    def _op(self, op, other, swap=False):
        a, b = (other, self) if swap else (self, other)
        return _Expr(f"({a} {op} {b})")

    __add__ = lambda s, o: s._op("+", o)  # noqa: E731
    __radd__ = lambda s, o: s._op("+", o, True)  # noqa: E731
    __sub__ = lambda s, o: s._op("-", o)  # noqa: E731
    __rsub__ = lambda s, o: s._op("-", o, True)  # noqa: E731
    __mul__ = lambda s, o: s._op("*", o)  # noqa: E731
    __rmul__ = lambda s, o: s._op("*", o, True)  # noqa: E731
    __floordiv__ = lambda s, o: s._op("//", o)  # noqa: E731
    __mod__ = lambda s, o: s._op("%", o)  # noqa: E731
    __le__ = lambda s, o: s._op("<=", o)  # noqa: E731
    __lt__ = lambda s, o: s._op("<", o)  # noqa: E731
    __ge__ = lambda s, o: s._op(">=", o)  # noqa: E731
    __gt__ = lambda s, o: s._op(">", o)  # noqa: E731
    __and__ = lambda s, o: s._op("&", o)  # noqa: E731
    __rand__ = lambda s, o: s._op("&", o, True)  # noqa: E731
    __or__ = lambda s, o: s._op("|", o)  # noqa: E731
    __ror__ = lambda s, o: s._op("|", o, True)  # noqa: E731
    __neg__ = lambda s: _Expr(f"(0 - {s})")  # noqa: E731

    def __eq__(self, other):  # (only ever compared to build a source)
        return self._op("==", other)

    __hash__ = None


def _all(conditions):
    """The conjunction of the conditions (None: no condition), or None when there is none."""
    out = None
    for c in conditions:
        if c is not None:
            out = c if out is None else out & c
    return out


def _coords(p, dims):
    """The coordinates (frame first) of raster ranks p (arrays or _Expr)."""
    out, rest = [], p
    for k in range(len(dims) - 1, -1, -1):
        out.append(rest % dims[k] if k > 0 else rest)
        if k > 0:
            rest = rest // dims[k]
    return out[::-1]


def _natten_axis(x, y, k, length):
    """NATTEN's clamped neighbourhood along one axis: key coordinate y is among the k
    keys of query coordinate x (start = clamp(x − ⌊k/2⌋, 0, length − k)); None when the
    kernel covers the axis."""
    if k >= length:
        return None
    s, last = x - k // 2, length - k
    return (((s <= 0) & (y < k)) | ((s >= last) & (y >= last))
            | ((s > 0) & (s < last) & (y >= s) & (y < s + k)))


def _natten_box(x, k, length):
    if k >= length:
        return np.zeros_like(x), np.full_like(x, length - 1)
    start = np.clip(x - k // 2, 0, length - k)
    return start, start + k - 1


# ---- token orders ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def morton_ranks(dims: tuple) -> np.ndarray:
    """int64 [cells]: the raster rank of the cell numbered t (cells numbered by the rank
    of their Z-code, which interleaves the coordinates' bits with the column's lowest)."""
    cells = math.prod(dims)
    coords = _coords(np.arange(cells, dtype=np.int64), dims)
    bits = max(int(d - 1).bit_length() for d in dims)
    code = np.zeros(cells, dtype=object if bits * len(dims) > 62 else np.int64)
    axes = len(dims)
    for b in range(bits):
        for a, x in enumerate(reversed(coords)):  # column first: its bit is lowest
            code = code | (((x >> b) & 1).astype(code.dtype) << (b * axes + a))
    return np.argsort(code, kind="stable").astype(np.int64)


def tile_coords(t, dims, tile):
    """The coordinates of the cell numbered t when tokens go tile by tile."""
    per_tile = math.prod(tile)
    tiles = tuple(d // s for d, s in zip(dims, tile))
    outer = _coords(t // per_tile, tiles)
    inner = _coords(t % per_tile, tile)
    return [outer[a] * tile[a] + inner[a] for a in range(len(dims))]


# Source text of a rank expression → its coordinates' source (a tiled grid's coordinates
# are shorter written from the token than from the rank: the kernels inline them).
_KNOWN_COORDS: dict[str, list] = {}


def tile_ranks(t, dims, tile):
    """The raster rank of the cell numbered t when tokens go tile by tile (raster order of
    the tiles, raster order inside a tile); numpy arrays or _Expr."""
    per_tile = math.prod(tile)
    tiles = tuple(d // s for d, s in zip(dims, tile))
    outer = _coords(t // per_tile, tiles)
    inner = _coords(t % per_tile, tile)
    rank = None
    for a in range(len(dims)):
        x = outer[a] * tile[a] + inner[a]
        rank = x if rank is None else rank * dims[a] + x
    return rank


# ---- the grid node --------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid(Pattern):
    """`grid(H, W) { P }` / `grid(T, H, W) { P }` (see the module docstring)."""

    dims: tuple
    offset: int
    order: str  # "rows" or "morton"
    tile: tuple | None
    operand: Pattern
    precedence: ClassVar[int] = 100

    @property
    def cells(self) -> int:
        return math.prod(self.dims)

    def children(self):
        return (self.operand,)

    def with_children(self, children):
        return Grid(self.dims, self.offset, self.order, self.tile, children[0])

    def child_n(self, n: int) -> int:
        return self.cells

    def transposed(self, n):
        return Grid(self.dims, self.offset, self.order, self.tile, self.operand.transposed(self.cells))

    def __str__(self):
        options = [str(d) for d in self.dims]
        if self.offset:
            options.append(f"offset={self.offset}")
        if self.order != "rows":
            options.append(f"order={self.order}")
        if self.tile is not None:
            options.append(f"tile=({', '.join(str(t) for t in self.tile)})")
        return f"grid({', '.join(options)}) {{ {self.operand} }}"

    # token → (inside the grid, raster rank)

    def _ranks(self, t, n):
        t = np.asarray(t, dtype=np.int64)
        local = t - self.offset
        inside = (local >= 0) & (local < self.cells) & (t < n)
        local = np.where(inside, local, 0)
        if self.order == "morton":
            rank = morton_ranks(self.dims)[local]
        elif self.tile is not None:
            rank = tile_ranks(local, self.dims, self.tile)
        else:
            rank = local
        return inside, rank

    def predicate(self, i, j, n):
        inside_i, ri = self._ranks(i, n)
        inside_j, rj = self._ranks(j, n)
        return np.asarray(self.operand.predicate(ri, rj, self.cells), dtype=bool) & inside_i & inside_j

    def pairs(self, i, j, n):
        inside_i, ri = self._ranks(i, n)
        inside_j, rj = self._ranks(j, n)
        out = inside_i & inside_j
        todo = np.flatnonzero(out)
        out[todo] = self.operand.pairs(ri[todo], rj[todo], self.cells)
        return out

    def _data_backed(self) -> bool:
        """Whether its source needs tables: Morton order, or a data-backed part inside (its
        lookups need ranks that are valid indices even for tokens outside the grid)."""
        if self.order == "morton":
            return True
        stack = [self.operand]
        while stack:
            node = stack.pop()
            if hasattr(node, "row_points"):
                return True
            stack.extend(node.children())
        return False

    def source(self, q, k, n, backend):
        if self._data_backed():
            return backend.data(self, q, k, n)
        last = min(self.offset + self.cells, n)

        def rank(x):
            local = _Expr(f"({x} - {self.offset})") if self.offset else _Expr(x)
            return local if self.tile is None else tile_ranks(local, self.dims, self.tile)

        if self.tile is not None:
            for x in (q, k):
                local = _Expr(f"({x} - {self.offset})") if self.offset else _Expr(x)
                _KNOWN_COORDS[str(rank(x))] = [str(c) for c in tile_coords(local, self.dims, self.tile)]
        inside = f"(({q} >= {self.offset}) & ({q} < {last}) & ({k} >= {self.offset}) & ({k} < {last}))"
        body = self.operand.source(str(rank(q)), str(rank(k)), self.cells, backend)
        return f"({inside} & {body})"

    # keys per row, listed (counts and layouts read them)

    def row_structure(self, n):
        return R.Points(self)

    def row_point_count(self, n: int) -> int:
        return _grid_points(self, n).shape[1]

    def row_points(self, rows, n):
        return _grid_points(self, n)[np.asarray(rows, dtype=np.int64)]

    def block_counts(self, grid, qb, kb):
        return _point_block_counts(self, grid, qb, kb)

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def block_candidates(self, grid):
        return _point_blocks(self, grid)[0]

    def block_estimate(self, grid):
        return min(grid.num_blocks, grid.num_q * max(1, self.row_point_count(grid.n)))

    # candidate cells of a query: the box its neighbourhood bounds

    def _box(self, ranks):
        """Per axis (lo, hi) inclusive bounds of the cells that may pair with each rank, or
        None (any cell)."""
        return _operand_box(self.operand, ranks, self.dims)


def _operand_box(node, ranks, dims):
    if isinstance(node, GridPrimitive):
        coords = _coords(ranks, dims)
        return node.box(coords)
    if isinstance(node, Intersection):
        boxes = [b for b in (_operand_box(p, ranks, dims) for p in node.parts) if b is not None]
        if not boxes:
            return None
        out = boxes[0]
        for b in boxes[1:]:
            out = [(np.maximum(lo, lo2), np.minimum(hi, hi2)) for (lo, hi), (lo2, hi2) in zip(out, b)]
        return out
    return None


_POINT_ELEMENTS = 1 << 22


def _point_blocks(node, grid):
    """(codes, counts): the kernel blocks holding the grid's listed pairs and how many each
    (rows in chunks of whole query blocks, so the codes come out unique and sorted)."""
    key = ("grid point blocks", node)
    if key not in grid.memo:
        codes, counts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        step = max(1, _POINT_ELEMENTS // max(1, node.row_point_count(grid.n)))
        step = max(grid.block_q, step // grid.block_q * grid.block_q)
        for start in range(0, grid.n, step):
            rows = np.arange(start, min(grid.n, start + step), dtype=np.int64)
            keys = node.row_points(rows, grid.n)
            owner = np.broadcast_to(rows[:, None], keys.shape)
            held = keys >= 0
            block, count = unique_sorted(grid.codes(owner[held] // grid.block_q, keys[held] // grid.block_k),
                                         return_counts=True)
            codes.append(block)
            counts.append(count)
        grid.memo[key] = (np.concatenate(codes), np.concatenate(counts))
    return grid.memo[key]


def _point_block_counts(node, grid, qb, kb):
    codes, counts = _point_blocks(node, grid)
    wanted = grid.codes(qb, kb)
    if codes.size == 0:
        return np.zeros(np.shape(wanted), dtype=np.int64)
    at = np.minimum(np.searchsorted(codes, wanted), codes.size - 1)
    return np.where(codes[at] == wanted, counts[at], 0)


@functools.lru_cache(maxsize=8)
def _grid_points(node: Grid, n: int) -> np.ndarray:
    """int64 [n, width]: row i's keys (-1 padded), from the candidate cells of each row
    filtered by the operand's `pairs`."""
    dims, cells = node.dims, node.cells
    tokens = np.arange(node.offset, min(n, node.offset + cells), dtype=np.int64)
    out_rows: list = []
    width = 0
    if tokens.size == 0:
        return np.full((n, 0), -1, dtype=np.int64)
    _, ranks = node._ranks(tokens, n)
    # token of each raster rank (-1: the cell does not exist)
    token_of = np.full(cells, -1, dtype=np.int64)
    token_of[ranks] = tokens
    probe = node._box(ranks[:1])
    chunk_keys = []
    if probe is None:
        step = max(1, _POINT_ELEMENTS // max(1, tokens.size))
        for start in range(0, tokens.size, step):
            rq = ranks[start:start + step]
            held = np.asarray(node.operand.predicate(rq[:, None], ranks[None, :], cells), dtype=bool)
            keys = np.where(held, tokens[None, :], -1)
            chunk_keys.append(keys)
    else:
        step = 1 << 14
        for start in range(0, tokens.size, step):
            rq = ranks[start:start + step]
            box = node._box(rq)
            spans = [max(0, int(np.max(hi - lo)) + 1) for lo, hi in box]
            grids = np.meshgrid(*[np.arange(s) for s in spans], indexing="ij")
            offsets = [g.reshape(-1) for g in grids]
            cand = None
            valid = np.ones((rq.size, offsets[0].size), dtype=bool)
            for a, ((lo, hi), off) in enumerate(zip(box, offsets)):
                x = lo[:, None] + off[None, :]
                valid &= (x <= hi[:, None]) & (x >= 0) & (x < dims[a])
                x = np.clip(x, 0, dims[a] - 1)
                cand = x if cand is None else cand * dims[a] + x
            flat_q = np.broadcast_to(rq[:, None], cand.shape)[valid]
            flat_k = cand[valid]
            held = np.zeros(cand.shape, dtype=bool)
            held[valid] = node.operand.pairs(flat_q, flat_k, cells)
            keys = np.where(held, token_of[cand], -1)
            chunk_keys.append(keys)
    for keys in chunk_keys:
        keys = np.sort(keys, axis=1)[:, ::-1]  # keys first, -1 after
        width = max(width, int((keys >= 0).sum(axis=1).max(initial=0)))
        out_rows.append(keys)
    from .reference import require_memory

    # (a table of every row, n × width, though only the grid's cells hold keys: refused over the
    # budget rather than a MemoryError)
    require_memory(f"listing the keys of {node} at n = {n:,} ({n:,} rows × {width} slots)", n * width * 8, None,
                   "use a smaller n")
    out = np.full((n, width), -1, dtype=np.int64)
    at = 0
    for keys in out_rows:
        out[tokens[at:at + keys.shape[0]]] = keys[:, :width]
        at += keys.shape[0]
    return out


# ---- the grid primitives --------------------------------------------------------------------


class GridPrimitive(Primitive):
    """A primitive over the raster ranks of a grid's cells: ``dims`` (frame first) and
    ``tile`` are its grid's. Subclasses write `rule(a, b)` over coordinate lists (numpy
    arrays or _Expr: the same code is the predicate and the source) and `box`."""

    axes: ClassVar[int] = 2
    needs_tile: ClassVar[bool] = False

    @classmethod
    def build(cls, args: dict, n: int):
        grid = args.pop("grid")
        if grid is None:
            raise ParamError(None, f"{cls.name} means something only inside a grid",
                             help=f"write grid(H, W) {{ {cls.usage()} }}")
        if len(grid.dims) != cls.axes:
            want = "grid(H, W)" if cls.axes == 2 else "grid(T, H, W)"
            raise ParamError(None, f"{cls.name} is a {cls.axes}D primitive, used in a {len(grid.dims)}D grid",
                             help=f"use it inside {want}" + (
                                 f", or its {len(grid.dims)}D form" if cls.other_form() else ""))
        if cls.needs_tile and grid.tile is None:
            raise ParamError(None, f"{cls.name} needs a tiled grid",
                             help="give the grid tile=(th, tw), the tiles it slides over")
        node = cls(dims=tuple(grid.dims), tile=grid.tile, **args)
        node.check()
        return node

    @classmethod
    def other_form(cls):
        return None

    def check(self):
        pass

    def __str__(self):
        return f"{self.name}({', '.join(self.shown())})"

    def shown(self) -> list[str]:
        raise NotImplementedError

    def predicate(self, i, j, n):
        i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
        out = self.rule(_coords(i, self.dims), _coords(j, self.dims))
        shape = np.broadcast_shapes(i.shape, j.shape)
        return np.broadcast_to(True, shape).copy() if out is None else np.broadcast_to(out, shape)

    def pairs(self, i, j, n):
        return np.asarray(self.predicate(np.asarray(i), np.asarray(j), n), dtype=bool).reshape(-1)

    def reference_pair(self, i, j, n):
        return bool(self.rule(_coords(i, self.dims), _coords(j, self.dims)) in (None, True))

    def source(self, q, k, n, backend):
        def coords(x):
            known = _KNOWN_COORDS.get(x)
            return [_Expr(c) for c in known] if known is not None else _coords(_Expr(x), self.dims)

        out = self.rule(coords(q), coords(k))
        return f"({k} >= 0)" if out is None else str(out)

    def row_structure(self, n):
        # Only a grid asks its operand, and it lists its own keys; asked apart from a grid
        # (never by the compiler), the keys of each rank are listed too.
        return R.Points(_Standalone(self))

    def box(self, coords):
        return None  # any cell

    def transposed(self, n):
        return self if self.symmetric else GridTransposed(dims=self.dims, tile=self.tile, operand=self)

    meaning: ClassVar = ()
    examples: ClassVar = {}


@dataclass(frozen=True)
class _Standalone:
    node: Pattern

    def row_point_count(self, n):
        return n

    def row_points(self, rows, n):
        held = self.node.predicate(np.asarray(rows)[:, None], np.arange(n)[None, :], n)
        return np.where(held, np.arange(n)[None, :], -1)


@dataclass(frozen=True)
class GridTransposed(GridPrimitive):
    """transpose(P) of an asymmetric grid primitive (natten's clamped edges)."""

    dims: tuple
    tile: tuple | None
    operand: GridPrimitive
    name: ClassVar[str] = "transpose"

    def __str__(self):
        return f"transpose({self.operand})"

    def transposed(self, n):
        return self.operand

    def rule(self, a, b):
        return self.operand.rule(b, a)

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(n, tight=False)


def _positive(value, call, param):
    if value < 1:
        raise ParamError(param, f"{call} needs {param} ≥ 1, but {param} = {value}")


def _nonneg(value, call, param):
    if value < 0:
        raise ParamError(param, f"{call} needs {param} ≥ 0, but {param} = {value}")


class _Window(GridPrimitive):
    symmetric: ClassVar[bool] = True

    def _radii(self):
        raise NotImplementedError

    def check(self):
        for name, r in zip(self._names(), self._radii()):
            _nonneg(r, self.name, name)

    def rule(self, a, b):
        return _all(((x - y) <= r) & ((y - x) <= r) if r < d else None
                    for x, y, r, d in zip(a, b, self._radii(), self.dims))

    def box(self, coords):
        return [(x - r, x + r) for x, r in zip(coords, self._radii())]

    def shown(self):
        return [str(r) for r in self._radii()]

    @classmethod
    def row_bound(cls, args, n, ops):
        degree = 1
        for name in cls._names():
            degree = degree * (2 * args[name] + 1)
        return RowBound(ops.min(degree, n), tight=False, reflexive=True, symmetric=True)


@grid_primitive
@dataclass(frozen=True)
class Window2d(_Window):
    dims: tuple
    tile: tuple | None
    a: int
    b: int
    name: ClassVar[str] = "window2d"
    signatures: ClassVar = ((ParamSpec("a"), ParamSpec("b")),)
    meaning: ClassVar = (("window2d(a, b)", "|r_i − r_j| ≤ a and |c_i − c_j| ≤ b (inside a 2D grid)"),)

    @staticmethod
    def _names():
        return ("a", "b")

    def _radii(self):
        return (self.a, self.b)

    @classmethod
    def other_form(cls):
        return "window3d"


@grid_primitive
@dataclass(frozen=True)
class Window3d(_Window):
    dims: tuple
    tile: tuple | None
    t: int
    a: int
    b: int
    name: ClassVar[str] = "window3d"
    axes: ClassVar[int] = 3
    signatures: ClassVar = ((ParamSpec("t"), ParamSpec("a"), ParamSpec("b")),)
    meaning: ClassVar = (("window3d(t, a, b)", "|f_i − f_j| ≤ t, |r_i − r_j| ≤ a and |c_i − c_j| ≤ b "
                                               "(inside a 3D grid)"),)

    @staticmethod
    def _names():
        return ("t", "a", "b")

    def _radii(self):
        return (self.t, self.a, self.b)

    @classmethod
    def other_form(cls):
        return "window2d"


class _Natten(GridPrimitive):
    def _kernels(self):
        raise NotImplementedError

    def check(self):
        for name, k in zip(self._names(), self._kernels()):
            _positive(k, self.name, name)

    def rule(self, a, b):
        return _all(_natten_axis(x, y, k, d) for x, y, k, d in zip(a, b, self._kernels(), self.dims))

    def box(self, coords):
        return [_natten_box(x, k, d) for x, k, d in zip(coords, self._kernels(), self.dims)]

    def shown(self):
        return [str(k) for k in self._kernels()]

    @classmethod
    def row_bound(cls, args, n, ops):
        degree = 1
        for name in cls._names():
            degree = degree * args[name]
        return RowBound(ops.min(degree, n), tight=False, reflexive=True)


@grid_primitive
@dataclass(frozen=True)
class Natten(_Natten):
    dims: tuple
    tile: tuple | None
    kh: int
    kw: int
    name: ClassVar[str] = "natten"
    signatures: ClassVar = ((ParamSpec("kh"), ParamSpec("kw")),)
    meaning: ClassVar = (("natten(kh, kw)", "NATTEN's neighbourhood: per axis of length L with kernel k, the "
                                            "keys [s, s + k) with s = clamp(x_i − ⌊k/2⌋, 0, L − k) (the whole "
                                            "axis when k ≥ L); every query sees kh·kw keys"),)

    @staticmethod
    def _names():
        return ("kh", "kw")

    def _kernels(self):
        return (self.kh, self.kw)

    @classmethod
    def other_form(cls):
        return "natten3d"


@grid_primitive
@dataclass(frozen=True)
class Natten3d(_Natten):
    dims: tuple
    tile: tuple | None
    kt: int
    kh: int
    kw: int
    name: ClassVar[str] = "natten3d"
    axes: ClassVar[int] = 3
    signatures: ClassVar = ((ParamSpec("kt"), ParamSpec("kh"), ParamSpec("kw")),)
    meaning: ClassVar = (("natten3d(kt, kh, kw)", "natten's rule on each of the three axes (frame first)"),)

    @staticmethod
    def _names():
        return ("kt", "kh", "kw")

    def _kernels(self):
        return (self.kt, self.kh, self.kw)

    @classmethod
    def other_form(cls):
        return "natten"


class _SlidingTiles(_Natten):
    needs_tile: ClassVar[bool] = True

    def _tiles(self):
        return tuple(d // t for d, t in zip(self.dims, self.tile))

    def rule(self, a, b):
        return _all(_natten_axis(x // t, y // t, k, d)
                    for x, y, k, d, t in zip(a, b, self._kernels(), self._tiles(), self.tile))

    def box(self, coords):
        out = []
        for x, k, d, t in zip(coords, self._kernels(), self._tiles(), self.tile):
            lo, hi = _natten_box(x // t, k, d)
            out.append((lo * t, hi * t + t - 1))
        return out

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(n, tight=False, reflexive=True)


@grid_primitive
@dataclass(frozen=True)
class SlidingTiles(_SlidingTiles):
    dims: tuple
    tile: tuple | None
    kh: int
    kw: int
    name: ClassVar[str] = "sliding_tiles"
    signatures: ClassVar = ((ParamSpec("kh"), ParamSpec("kw")),)
    meaning: ClassVar = (("sliding_tiles(kh, kw)", "natten(kh, kw) on the tile coordinates (⌊r/th⌋, ⌊c/tw⌋) "
                                                   "over the grid of tiles (needs tile=; sliding-tile attention)"),)

    @staticmethod
    def _names():
        return ("kh", "kw")

    def _kernels(self):
        return (self.kh, self.kw)

    @classmethod
    def other_form(cls):
        return "sliding_tiles3d"


@grid_primitive
@dataclass(frozen=True)
class SlidingTiles3d(_SlidingTiles):
    dims: tuple
    tile: tuple | None
    kt: int
    kh: int
    kw: int
    name: ClassVar[str] = "sliding_tiles3d"
    axes: ClassVar[int] = 3
    signatures: ClassVar = ((ParamSpec("kt"), ParamSpec("kh"), ParamSpec("kw")),)
    meaning: ClassVar = (("sliding_tiles3d(kt, kh, kw)", "natten3d(kt, kh, kw) on the tile coordinates "
                                                         "(needs tile=(tt, th, tw))"),)

    @staticmethod
    def _names():
        return ("kt", "kh", "kw")

    def _kernels(self):
        return (self.kt, self.kh, self.kw)

    @classmethod
    def other_form(cls):
        return "sliding_tiles"


class _Chunk(GridPrimitive):
    symmetric: ClassVar[bool] = True

    def check(self):
        for name, b in zip(self._names(), self._sizes()):
            _positive(b, self.name, name)

    def rule(self, a, b):
        # ⌊(x − s)/b⌋ = ⌊(y − s)/b⌋, with non-negative operands: x + (b − s mod b)
        return _all(((x + (size - s % size)) // size == (y + (size - s % size)) // size) if size > 1 else
                    (x == y) for x, y, size, s in zip(a, b, self._sizes(), self._shifts()))

    def box(self, coords):
        out = []
        for x, size, s in zip(coords, self._sizes(), self._shifts()):
            lo = (x - s) // size * size + s
            out.append((lo, lo + size - 1))
        return out

    def shown(self):
        out = [str(b) for b in self._sizes()]
        if any(self._shifts()):
            out.append(f"shift=({', '.join(str(s) for s in self._shifts())})")
        return out

    @classmethod
    def row_bound(cls, args, n, ops):
        degree = 1
        for name in cls._names():
            degree = degree * args[name]
        return RowBound(ops.min(degree, n), tight=False, reflexive=True, symmetric=True)


@grid_primitive
@dataclass(frozen=True)
class Chunk2d(_Chunk):
    dims: tuple
    tile: tuple | None
    bh: int
    bw: int
    sh: int = 0
    sw: int = 0
    name: ClassVar[str] = "chunk2d"
    signatures: ClassVar = ((ParamSpec("bh"), ParamSpec("bw"), ParamSpec("shift", kind="tuple", default=0)),)
    meaning: ClassVar = (("chunk2d(bh, bw, shift=(sh, sw))", "⌊(r_i − sh)/bh⌋ = ⌊(r_j − sh)/bh⌋ and "
                                                             "⌊(c_i − sw)/bw⌋ = ⌊(c_j − sw)/bw⌋ (Swin windows, "
                                                             "shifted; not cyclic; shift defaults to (0, 0))"),)

    @staticmethod
    def _names():
        return ("bh", "bw")

    @staticmethod
    def tuple_names(name):
        return ("sh", "sw")

    def _sizes(self):
        return (self.bh, self.bw)

    def _shifts(self):
        return (self.sh, self.sw)

    @classmethod
    def other_form(cls):
        return "chunk3d"


@grid_primitive
@dataclass(frozen=True)
class Chunk3d(_Chunk):
    dims: tuple
    tile: tuple | None
    bt: int
    bh: int
    bw: int
    st: int = 0
    sh: int = 0
    sw: int = 0
    name: ClassVar[str] = "chunk3d"
    axes: ClassVar[int] = 3
    signatures: ClassVar = ((ParamSpec("bt"), ParamSpec("bh"), ParamSpec("bw"),
                             ParamSpec("shift", kind="tuple", default=0)),)
    meaning: ClassVar = (("chunk3d(bt, bh, bw, shift=(st, sh, sw))", "chunk2d's rule on each of the three axes "
                                                                     "(frame first)"),)

    @staticmethod
    def _names():
        return ("bt", "bh", "bw")

    @staticmethod
    def tuple_names(name):
        return ("st", "sh", "sw")

    def _sizes(self):
        return (self.bt, self.bh, self.bw)

    def _shifts(self):
        return (self.st, self.sh, self.sw)

    @classmethod
    def other_form(cls):
        return "chunk2d"


@grid_primitive
@dataclass(frozen=True)
class Stride2d(GridPrimitive):
    dims: tuple
    tile: tuple | None
    sh: int
    sw: int
    name: ClassVar[str] = "stride2d"
    symmetric: ClassVar[bool] = True
    signatures: ClassVar = ((ParamSpec("sh"), ParamSpec("sw")),)
    meaning: ClassVar = (("stride2d(sh, sw)", "(r_i − r_j) mod sh = 0 and (c_i − c_j) mod sw = 0"),)

    def check(self):
        _positive(self.sh, self.name, "sh")
        _positive(self.sw, self.name, "sw")

    def rule(self, a, b):
        return _all(((x - y) % s == 0) if s > 1 and s < d else ((x == y) if s >= d else None)
                    for x, y, s, d in zip(a, b, (self.sh, self.sw), self.dims))

    def shown(self):
        return [str(self.sh), str(self.sw)]

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(n, tight=False, reflexive=True, symmetric=True)


class _Distance(GridPrimitive):
    symmetric: ClassVar[bool] = True
    dims: tuple
    tile: tuple | None
    d: int
    signatures: ClassVar = ((ParamSpec("d"),),)

    def check(self):
        _nonneg(self.d, self.name, "d")

    def box(self, coords):
        return [(x - self.d, x + self.d) for x in coords]

    def shown(self):
        return [str(self.d)]


@grid_primitive
@dataclass(frozen=True)
class Manhattan(_Distance):
    dims: tuple
    tile: tuple | None
    d: int
    name: ClassVar[str] = "manhattan"
    meaning: ClassVar = (("manhattan(d)", "|r_i − r_j| + |c_i − c_j| ≤ d"),)

    def rule(self, a, b):
        dr, dc = a[0] - b[0], a[1] - b[1]
        d = self.d
        return ((dr + dc) <= d) & ((dr - dc) <= d) & ((dc - dr) <= d) & ((0 - dr - dc) <= d)

    @classmethod
    def row_bound(cls, args, n, ops):
        d = args["d"]
        return RowBound(ops.min(2 * d * d + 2 * d + 1, n), tight=False, reflexive=True, symmetric=True)


@grid_primitive
@dataclass(frozen=True)
class Euclid(_Distance):
    dims: tuple
    tile: tuple | None
    d: int
    name: ClassVar[str] = "euclid"
    meaning: ClassVar = (("euclid(d)", "(r_i − r_j)² + (c_i − c_j)² ≤ d²"),)

    def rule(self, a, b):
        dr, dc = a[0] - b[0], a[1] - b[1]
        return (dr * dr + dc * dc) <= self.d * self.d

    @classmethod
    def row_bound(cls, args, n, ops):
        d = args["d"]
        return RowBound(ops.min((2 * d + 1) * (2 * d + 1), n), tight=False, reflexive=True, symmetric=True)
