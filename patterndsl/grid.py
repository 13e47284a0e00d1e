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
predicate and the torch/Triton source (`SourceExpr`).

Where it comes from (counts, row sets, layouts): a query's keys are boxes of cells, and
a box is a few runs of consecutive tokens (see "keys per row from coordinate boxes"
below): the exact counter (`grid_degrees`, asked first by analysis/counts.py), the row
sets of the conditions (`Grid.row_keys`) and the row formula (`GridRun` atoms) read
those runs — work the grid's rows × their runs, never a table of n rows. stride2d is
counted from its residue classes (`_class_degrees`: a query's keys are a product of
arithmetic progressions, cut by the other parts' boxes; | - ~ by inclusion–exclusion),
and its row sets list the classes of the rows asked only. Operands without either form
(too many runs) list each row's keys instead (`row_points`: the candidate cells filtered
by the operand's own `pairs`, a table of the grid's cells only). The block layouts come
from coordinate boxes too (see "block layouts from coordinate boxes" below): work
proportional to the blocks touched, in raster, tile and Morton order (a Morton block is
the aligned Z-order cubes it holds); operands without a per-axis form (1D primitives)
fall back to the listed points there. Morton order needs no table of the grid's cells
(`morton_rank`, `morton_cells`: ranks from the Z-order's cubes).
"""
from __future__ import annotations

import functools
import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from . import structure as R
from .ir import Complement, Difference, Intersection, Pattern, Union
from .primitives import (All, Cols, Nothing, ParamError, ParamSpec, Primitive, RowBound, Rows, Self, point_block_counts,
                         point_blocks)
from .source_expr import SourceExpr

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


def _all(conditions):
    """The conjunction of the conditions (None: no condition), or None when there is none."""
    out = None
    for c in conditions:
        if c is not None:
            out = c if out is None else out & c
    return out


def _coords(p, dims):
    """The coordinates (frame first) of raster ranks p (arrays or SourceExpr)."""
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


def _z_bits(dims) -> int:
    return max(int(d - 1).bit_length() for d in dims)


def z_codes(coords, dims) -> np.ndarray:
    """The Z-codes of cells (coordinates frame first): their bits interleaved, the column's
    lowest (object integers when they need more than 62 bits)."""
    bits, axes = _z_bits(dims), len(dims)
    if bits * axes <= 62:  # each coordinate's bits spread a byte at a time (a table of 256 spreads)
        spread = _spread_table(axes)
        code = np.zeros(np.broadcast_shapes(*(np.shape(x) for x in coords)), dtype=np.int64)
        for a, x in enumerate(reversed(coords)):  # column first: its bit is lowest
            x = np.asarray(x, dtype=np.int64)
            for byte in range(0, bits, 8):
                code |= spread.take((x >> byte) & 255) << (byte * axes + a)
        return code
    code = np.zeros(np.shape(coords[0]), dtype=object)
    for b in range(bits):
        for a, x in enumerate(reversed(coords)):  # column first: its bit is lowest
            code = code | (((np.asarray(x) >> b) & 1).astype(code.dtype) << (b * axes + a))
    return code


@functools.lru_cache(maxsize=4)
def _spread_table(axes: int) -> np.ndarray:
    """int64 [256]: the byte v with its bit b moved to bit b · axes."""
    v = np.arange(256, dtype=np.int64)
    return sum(((v >> b) & 1) << (b * axes) for b in range(8))


@functools.lru_cache(maxsize=16)
def morton_ranks(dims: tuple) -> np.ndarray:
    """int64 [cells]: the raster rank of the cell numbered t (cells numbered by the rank
    of their Z-code, which interleaves the coordinates' bits with the column's lowest)."""
    cells = math.prod(dims)
    code = z_codes(_coords(np.arange(cells, dtype=np.int64), dims), dims)
    return np.argsort(code, kind="stable").astype(np.int64)


@functools.lru_cache(maxsize=16)
def _morton_tokens(dims: tuple) -> np.ndarray:
    """int64 [cells]: the Morton token of the cell of raster rank r (`morton_ranks` inverted)."""
    out = np.empty(math.prod(dims), dtype=np.int64)
    out[morton_ranks(dims)] = np.arange(out.size, dtype=np.int64)
    return out


def _cube_cells(base, side, dims):
    """The cells of the grid in the aligned cube of side ``side`` at ``base`` (per axis)."""
    out = None
    for x, d in zip(base, dims):
        c = np.clip(d - x, 0, side)
        out = c if out is None else out * c
    return out


def _dense_codes(dims) -> bool:
    """Whether the grid's Z-codes are exactly 0 … cells − 1 (every side the same power of two)."""
    return len(set(dims)) == 1 and dims[0] == 1 << _z_bits(dims) and _z_bits(dims) * len(dims) <= 62


def morton_rank(coords, dims) -> np.ndarray:
    """The Morton token (rank of the Z-code among the grid's cells) of cells ``coords`` (frame
    first), without a table: the cells before a code are those of the aligned cubes of the
    Z-order before it — per level, the sibling cubes of a smaller digit — each cut by the
    grid (bits × 2^axes steps per cell, whatever the grid's size)."""
    coords = [np.asarray(x, dtype=np.int64) for x in coords]
    if _dense_codes(dims):  # every Z-code is a cell's: the token is the code
        return np.asarray(z_codes(coords, dims), dtype=np.int64)
    axes = len(dims)
    rank = np.zeros(np.broadcast_shapes(*(x.shape for x in coords)), dtype=np.int64)
    for b in range(_z_bits(dims) - 1, -1, -1):
        side = 1 << b
        parent = [(x >> (b + 1)) << (b + 1) for x in coords]
        digit = sum(((x >> b) & 1) << (axes - 1 - k) for k, x in enumerate(coords))  # the column's bit lowest
        for e in range((1 << axes) - 1):  # the siblings e < digit come before
            base = [p + ((e >> (axes - 1 - k)) & 1) * side for k, p in enumerate(parent)]
            rank += np.where(e < digit, _cube_cells(base, side, dims), 0)
    return rank


def morton_cells(t, dims) -> list:
    """The coordinates (frame first) of the cells of Morton tokens ``t`` (0 ≤ t < cells), the
    inverse of `morton_rank`: from the whole grid down, the child cube holding the t-th cell."""
    rest = np.array(t, dtype=np.int64)
    axes = len(dims)
    if _dense_codes(dims):  # the token is the Z-code: its bits taken apart
        out = [np.zeros_like(rest) for _ in dims]
        for b in range(_z_bits(dims)):
            for k in range(axes):
                out[k] |= ((rest >> (b * axes + axes - 1 - k)) & 1) << b
        return out
    base = [np.zeros_like(rest) for _ in dims]
    for b in range(_z_bits(dims) - 1, -1, -1):
        side = 1 << b
        done = np.zeros(rest.shape, dtype=bool)
        chosen = np.zeros_like(rest)
        for e in range(1 << axes):
            cells = _cube_cells([x + ((e >> (axes - 1 - k)) & 1) * side for k, x in enumerate(base)], side, dims)
            take = ~done & (rest < cells)
            chosen = np.where(take, e, chosen)
            rest = np.where(done | take, rest, rest - cells)
            done |= take
        base = [x + ((chosen >> (axes - 1 - k)) & 1) * side for k, x in enumerate(base)]
    return base


def _morton_source_coords(t, dims) -> list:
    """`morton_cells` of a source expression ``t`` where the token is the Z-code
    (`_dense_codes`): each coordinate's bits gathered from the code (no table)."""
    axes, bits = len(dims), _z_bits(dims)
    out = []
    for k in range(axes):
        terms = [f"((({t} >> {b * axes + axes - 1 - k}) & 1) << {b})" for b in range(bits)]
        out.append(SourceExpr(f"({' | '.join(terms)})" if terms else f"({t} & 0)"))
    return out


def _raster(coords, dims):
    rank = None
    for x, d in zip(coords, dims):
        rank = x if rank is None else rank * d + x
    return rank


def tile_coords(t, dims, tile):
    """The coordinates of the cell numbered t when tokens go tile by tile."""
    per_tile = math.prod(tile)
    tiles = tuple(d // s for d, s in zip(dims, tile))
    outer = _coords(t // per_tile, tiles)
    inner = _coords(t % per_tile, tile)
    return [outer[a] * tile[a] + inner[a] for a in range(len(dims))]


class _LRU(OrderedDict):
    """A dict that keeps its ``size`` most recently used entries (`get` and setting use)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        if key not in self:
            return default
        self.move_to_end(key)
        return self[key]

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


# Source text of a rank expression → its coordinates' source (a tiled grid's coordinates
# are shorter written from the token than from the rank: the kernels inline them). Written
# just before the operand's source is (Grid.source), so the recent entries are all it needs.
_KNOWN_COORDS: "_LRU[str, list]" = _LRU(256)


def tile_ranks(t, dims, tile):
    """The raster rank of the cell numbered t when tokens go tile by tile (raster order of
    the tiles, raster order inside a tile); numpy arrays or SourceExpr."""
    per_tile = math.prod(tile)
    tiles = tuple(d // s for d, s in zip(dims, tile))
    outer = _coords(t // per_tile, tiles)
    inner = _coords(t % per_tile, tile)
    rank = None
    for a in range(len(dims)):
        x = outer[a] * tile[a] + inner[a]
        rank = x if rank is None else rank * dims[a] + x
    return rank


_RANK_TABLE = 1 << 22  # tiled and Morton grids of at most this many cells keep their token → rank table


@functools.lru_cache(maxsize=16)
def _tile_rank_table(dims: tuple, tile: tuple) -> np.ndarray:
    """int64 [cells]: the raster rank of the tiled grid's local token t."""
    return tile_ranks(np.arange(math.prod(dims), dtype=np.int64), dims, tile)


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
    estimate_walks_blocks: ClassVar[bool] = True  # its boxes over every block row

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
        """(inside the grid, raster rank: 0 outside), the ranks computed for the tokens inside
        only (a long sequence holds few of them)."""
        t = np.asarray(t, dtype=np.int64)
        local = t - self.offset
        inside = (local >= 0) & (local < self.cells) & (t < n)
        if self.order == "rows" and self.tile is None:
            return inside, np.where(inside, local, 0)
        local = local[inside]
        rank = np.zeros(t.shape, dtype=np.int64)
        if self.order == "morton" and self.cells <= _RANK_TABLE:
            rank[inside] = morton_ranks(self.dims)[local]
        elif self.order == "morton":  # no table of the grid's cells: from the Z-order's cubes
            rank[inside] = _raster(morton_cells(local, self.dims), self.dims)
        elif self.cells <= _RANK_TABLE:  # a gather instead of the digit arithmetic per token
            rank[inside] = _tile_rank_table(self.dims, self.tile)[local]
        else:
            rank[inside] = tile_ranks(local, self.dims, self.tile)
        return inside, rank

    def predicate(self, i, j, n):
        inside_i, ri = self._ranks(i, n)
        inside_j, rj = self._ranks(j, n)
        if ri.ndim == 2 and rj.ndim == 2 and ri.shape[1] == 1 and rj.shape[0] == 1:  # rows × columns
            rows, cols = np.flatnonzero(inside_i[:, 0]), np.flatnonzero(inside_j[0])
            out = np.zeros((ri.shape[0], rj.shape[1]), dtype=bool)
            if rows.size and cols.size:  # the operand asked about the cells inside only
                held = self.operand.predicate(ri[rows], rj[:, cols], self.cells)
                out[np.ix_(rows, cols)] = np.broadcast_to(np.asarray(held, dtype=bool), (rows.size, cols.size))
            return out
        return np.asarray(self.operand.predicate(ri, rj, self.cells), dtype=bool) & inside_i & inside_j

    def pairs(self, i, j, n):
        i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
        out = (i >= self.offset) & (i < min(n, self.offset + self.cells))
        out &= (j >= self.offset) & (j < min(n, self.offset + self.cells))
        todo = np.flatnonzero(out)  # the ranks of the pairs inside only (most of a long sequence is not)
        if todo.size:
            out[todo] = self.operand.pairs(self._ranks(i[todo], n)[1], self._ranks(j[todo], n)[1], self.cells)
        return out

    def _data_backed(self) -> bool:
        """Whether its source needs tables: Morton order where the token is not the Z-code
        (where it is, the coordinates are the token's bits, `_morton_source_coords`), or a
        data-backed part inside (its lookups need ranks that are valid indices even for
        tokens outside the grid)."""
        if self.order == "morton" and not _dense_codes(self.dims):
            return True
        stack = [self.operand]
        while stack:
            node = stack.pop()
            if hasattr(node, "row_points"):
                return True
            stack.extend(node.children())
        return False

    def table_bytes(self, grid) -> int:
        """At least the bytes of the block bitmaps generated code embeds for a data-backed grid
        (codegen.BlockBitmaps: its keys listed, 56 bytes each with their blocks and words, and
        the slot grid), refused up front by CompiledPattern.require_table_memory; 0 otherwise.
        Keys per row: a box operand's largest box, else at least one."""
        from .reference import AtLeast

        if not self._data_backed():
            return 0
        existing = int(np.clip(grid.n - self.offset, 0, self.cells))
        spans = axis_spans(self.operand, self.dims)
        width = math.prod(int(np.max(last - first + 1, initial=0)) for first, last in spans) if spans else 1
        return AtLeast(existing * max(width, 1) * 56 + grid.num_blocks * 5)

    def source(self, q, k, n, backend):
        if self._data_backed():
            return backend.data(self, q, k, n)
        last = min(self.offset + self.cells, n)

        def local(x):
            return SourceExpr(f"({x} - {self.offset})") if self.offset else SourceExpr(x)

        def coords(x):  # tiles; Morton where the token is the Z-code: its bits taken apart
            if self.order == "morton":
                return _morton_source_coords(local(x), self.dims)
            return tile_coords(local(x), self.dims, self.tile)

        def rank(x):
            return local(x) if self.tile is None and self.order == "rows" else _raster(coords(x), self.dims)

        if self.tile is not None or self.order == "morton":
            for x in (q, k):
                _KNOWN_COORDS[str(rank(x))] = [str(c) for c in coords(x)]
        inside = f"(({q} >= {self.offset}) & ({q} < {last}) & ({k} >= {self.offset}) & ({k} < {last}))"
        body = self.operand.source(str(rank(q)), str(rank(k)), self.cells, backend)
        return f"({inside} & {body})"

    # keys per row, listed (counts and layouts read them)

    def row_structure(self, n):
        table = run_table(self, n)
        if table is None:  # no box form, or too many runs per row: the keys listed
            return R.Points(self)
        slots = table[0].shape[1]
        return R.AnyOf(tuple(GridRun(self, slot) for slot in range(slots))) if slots else R.Span(0, 0)

    def row_keys(self, rows, n):
        """The keys of the query tokens ``rows`` as runs (patterndsl.analysis.rowsets.RowKeys),
        from coordinate boxes; None where the operand has no such form."""
        try:
            return grid_row_keys(self, rows, n)
        except NoBoxes:
            if not _has_stride(self.operand):
                return None
        # stride2d: its keys listed for these rows only (never a table of the grid's rows),
        # refused as too many intervals beyond _CLASS_KEYS (the callers give up then)
        from .analysis.rowsets import TooManyIntervals

        listed = np.asarray(rows).size * _class_size(self.operand, self.dims)
        if listed > _CLASS_KEYS:
            raise TooManyIntervals(listed)
        try:
            return grid_row_keys(self, rows, n, classes=True)
        except NoBoxes:
            return None

    def row_point_count(self, n: int) -> int:
        return _grid_points(self, n).shape[1]

    def point_rows(self, n: int) -> "tuple[int, int]":
        """(first, last): only the rows first … last − 1 (the grid's cells) have keys."""
        return min(self.offset, n), min(self.offset + self.cells, n)

    def row_points(self, rows, n):
        table = _grid_points(self, n)  # rows of the grid's existing cells only
        local = np.asarray(rows, dtype=np.int64) - self.offset
        inside = (local >= 0) & (local < table.shape[0])
        out = np.full((local.size, table.shape[1]), -1, dtype=np.int64)
        out[inside] = table[local[inside]]
        return out

    # block layouts: from the boxes of cells of each block (`box_counter`) where the
    # operand has that form, from a union's or intersection's parts each in this grid, else
    # from the listed keys

    def _counter(self):
        return box_counter(self.operand, self.dims)

    def _split(self):
        """The operand's union, difference, complement (or intersection of box-countable
        parts) as that combination of this grid around each part, or None."""
        op = self.operand
        if not isinstance(op, (Union, Intersection, Difference, Complement)):
            return None

        def inside(p):
            return Grid(self.dims, self.offset, self.order, self.tile, p)

        if isinstance(op, Complement):  # the grid's pairs but the operand's
            return Difference(inside(All()), inside(op.operand))
        if isinstance(op, Difference):
            return Difference(inside(op.left), inside(op.right))
        parts = tuple(inside(p) for p in op.parts)
        if isinstance(op, Union):
            return Union(parts)
        return Intersection(parts) if all(p._counter() is not None for p in parts) else None

    def block_counts(self, grid, qb, kb):
        counter = self._counter()
        if counter is not None:
            return _box_block_counts(self, grid, counter, qb, kb)
        split = self._split()
        if split is not None:
            return split.block_counts(grid, qb, kb)
        return point_block_counts(self, grid, qb, kb)

    def block_states(self, grid, qb, kb):
        split = self._split() if self._counter() is None else None
        if split is not None:
            return split.block_states(grid, qb, kb)
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def block_candidates(self, grid):
        counter = self._counter()
        if counter is not None:
            try:
                return _box_block_candidates(self, grid, counter)
            except NoBoxes:  # Morton: a box across too many Z-order cubes
                return point_blocks(self, grid)[0]
        split = self._split()
        if split is not None:
            return split.block_candidates(grid)
        return point_blocks(self, grid)[0]

    def block_estimate(self, grid):
        counter = self._counter()
        if counter is not None:
            try:
                return _box_block_estimate(self, grid, counter)
            except NoBoxes:
                return min(grid.num_blocks, grid.num_q * max(1, self.row_point_count(grid.n)))
        split = self._split()
        if split is not None:
            return split.block_estimate(grid)
        first, last = self.point_rows(grid.n)
        rows_with_keys = (last - 1) // grid.block_q - first // grid.block_q + 1 if last > first else 0
        return min(grid.num_blocks, rows_with_keys * max(1, self.row_point_count(grid.n)))

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


def _keep_compact(out_rows: list, keys: np.ndarray, width: int, node, n: int, rows: int) -> int:
    """Append one chunk's key table cut to its longest row (keys first, -1 after) and return
    the table's width so far; the table (``rows`` existing cells × width) is refused over
    the memory budget before the chunks pile up (a MemoryError otherwise)."""
    from .reference import AtLeast, require_memory

    keys = np.sort(keys, axis=1)[:, ::-1]
    count = int((keys >= 0).sum(axis=1).max(initial=0))
    width = max(width, count)
    require_memory(f"listing the keys of {node} at n = {n:,} ({rows:,} rows × {width} slots)",
                   AtLeast(rows * width * 8), None, "use a smaller n")  # rows still to come may be wider
    out_rows.append(np.ascontiguousarray(keys[:, :count]))
    return width


@functools.lru_cache(maxsize=8)
def _grid_points(node: Grid, n: int) -> np.ndarray:
    """int64 [existing cells, width]: the keys (-1 padded) of the row of the grid's local
    token t (row offset + t), from the candidate cells of each row filtered by the
    operand's `pairs` (used where the operand has no form as boxes, `run_table`)."""
    from .reference import AtLeast, require_memory

    dims, cells = node.dims, node.cells
    # Refused before the per-cell arrays (tokens, ranks, token_of) and a slot per row are built:
    # a grid sized by n (grid(2, s, s) at n = 2^40) has 2^37 cells, 1 TiB for `tokens` alone.
    require_memory(f"listing the keys of {node} at n = {n:,} ({cells:,} cells)",  # the key table comes on top
                   AtLeast(24 * min(cells, max(0, n - node.offset)) + 8 * cells + 8 * n), None, "use a smaller n")
    tokens = np.arange(node.offset, min(n, node.offset + cells), dtype=np.int64)
    out_rows: list = []
    width = 0
    if tokens.size == 0:
        return np.full((0, 0), -1, dtype=np.int64)
    _, ranks = node._ranks(tokens, n)
    # token of each raster rank (-1: the cell does not exist)
    token_of = np.full(cells, -1, dtype=np.int64)
    token_of[ranks] = tokens
    probe = node._box(ranks[:1])
    if probe is None:
        step = max(1, _POINT_ELEMENTS // max(1, tokens.size))
        for start in range(0, tokens.size, step):
            rq = ranks[start:start + step]
            held = np.asarray(node.operand.predicate(rq[:, None], ranks[None, :], cells), dtype=bool)
            width = _keep_compact(out_rows, np.where(held, tokens[None, :], -1), width, node, n, tokens.size)
    else:
        # rows per chunk: about _POINT_ELEMENTS candidate cells (a 3D kernel has 10^4 per row)
        spans = [max(1, int(np.max(hi - lo)) + 1) for lo, hi in probe]
        step = max(1, min(1 << 14, _POINT_ELEMENTS // math.prod(spans)))
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
            width = _keep_compact(out_rows, np.where(held, token_of[cand], -1), width, node, n, tokens.size)
    out = np.full((tokens.size, width), -1, dtype=np.int64)
    at = 0
    for keys in out_rows:
        out[at:at + keys.shape[0], :keys.shape[1]] = keys
        at += keys.shape[0]
    return out


# ---- the grid primitives --------------------------------------------------------------------


class GridPrimitive(Primitive):
    """A primitive over the raster ranks of a grid's cells: ``dims`` (frame first) and
    ``tile`` are its grid's. Subclasses write `rule(a, b)` over coordinate lists (numpy
    arrays or SourceExpr: the same code is the predicate and the source) and `box`."""

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
        node = cls.make(tuple(grid.dims), grid.tile, args)
        node.check()
        return node

    @classmethod
    def make(cls, dims, tile, args):
        return cls(dims=dims, tile=tile, **args)

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
            return [SourceExpr(c) for c in known] if known is not None else _coords(SourceExpr(x), self.dims)

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

    def box(self, coords):
        """Per axis the key coordinates y whose operand box holds x: where those boxes move
        monotonically along the axis (natten's, sliding tiles'), the y from the first box
        ending at or after x to the last starting at or before it. Without it the keys of a
        transposed natten were listed against every cell (cells² pairs: show of a 1024 × 1024
        grid ran for hours, as its rows hold more runs than a row formula keeps)."""
        if not isinstance(self.operand, _AxisRule):
            return None
        out = []
        for axis, x in enumerate(coords):
            span = self.operand.axis_box(axis, np.arange(self.dims[axis], dtype=np.int64))
            if span is None or (np.diff(span[0]) < 0).any() or (np.diff(span[1]) < 0).any():
                return None
            x = np.asarray(x, dtype=np.int64)
            out.append((np.searchsorted(span[1], x, side="left"), np.searchsorted(span[0], x, side="right") - 1))
        return out

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(n, tight=False)


def _positive(value, call, param):
    if value < 1:
        raise ParamError(param, f"{call} needs {param} ≥ 1, but {param} = {value}")


def _nonneg(value, call, param):
    if value < 0:
        raise ParamError(param, f"{call} needs {param} ≥ 0, but {param} = {value}")


@dataclass(frozen=True)
class _AxisRule(GridPrimitive):
    """A grid primitive that is a conjunction of one relation per axis, with one integer
    parameter per axis (frame first, named by ``params``): its 2D and 3D forms are this
    one class with the axis count as a parameter (`_forms` registers them). Subclasses
    write `axis_rule(axis, x, y)` (None: the axis does not constrain) and `axis_box`."""

    dims: tuple
    tile: tuple | None
    values: tuple  # the per-axis parameters, in the order of ``params``
    params: ClassVar[tuple] = ()
    checked: ClassVar = staticmethod(lambda value, call, param: _positive(value, call, param))
    forms: ClassVar[dict] = {}  # axes → the name of that form (`other_form`)

    @classmethod
    def make(cls, dims, tile, args):
        return cls(dims=dims, tile=tile, values=tuple(args[name] for name in cls.params))

    @classmethod
    def other_form(cls):
        return next((name for axes, name in cls.forms.items() if axes != cls.axes), None)

    def check(self):
        for name, value in zip(self.params, self.values):
            self.checked(value, self.name, name)

    def axis_rule(self, axis, x, y):
        raise NotImplementedError

    def axis_box(self, axis, x):
        return None

    def rule(self, a, b):
        return _all(self.axis_rule(axis, x, y) for axis, (x, y) in enumerate(zip(a, b)))

    def box(self, coords):
        boxes = [self.axis_box(axis, x) for axis, x in enumerate(coords)]
        return None if any(b is None for b in boxes) else boxes

    def shown(self):
        return [str(v) for v in self.values]

    @classmethod
    def degree(cls, value):
        """The keys per row its parameter ``value`` allows along one axis (None: any)."""
        return value

    @classmethod
    def row_bound(cls, args, n, ops):
        degree = 1
        for name in cls.params:
            per_axis = cls.degree(args[name])
            if per_axis is None:
                return RowBound(n, tight=False, reflexive=True, symmetric=cls.symmetric)
            degree = degree * per_axis
        return RowBound(ops.min(degree, n), tight=False, reflexive=True, symmetric=cls.symmetric)


def _forms(rule, *forms):
    """Register the forms (name, per-axis parameter names, meaning) of one rule: each is
    the rule's class with its axis count and names, nothing else."""
    names = {len(params): name for name, params, _ in forms}
    for name, params, meaning in forms:
        attrs = {"name": name, "axes": len(params), "params": params, "forms": names,
                 "signatures": (tuple(ParamSpec(p) for p in params) + rule.extra_specs,),
                 "meaning": (meaning,), "__module__": __name__, "__qualname__": name}
        grid_primitive(dataclass(frozen=True)(type(name, (rule,), attrs)))


class _Window(_AxisRule):
    symmetric: ClassVar[bool] = True
    checked: ClassVar = staticmethod(lambda value, call, param: _nonneg(value, call, param))
    extra_specs: ClassVar = ()

    def axis_rule(self, axis, x, y):
        r = self.values[axis]
        return ((x - y) <= r) & ((y - x) <= r) if r < self.dims[axis] else None

    def axis_box(self, axis, x):
        r = self.values[axis]
        return (x - r, x + r)

    @classmethod
    def degree(cls, value):
        return 2 * value + 1


class _Natten(_AxisRule):
    extra_specs: ClassVar = ()

    def axis_rule(self, axis, x, y):
        return _natten_axis(x, y, self.values[axis], self.dims[axis])

    def axis_box(self, axis, x):
        return _natten_box(x, self.values[axis], self.dims[axis])


class _SlidingTiles(_Natten):
    needs_tile: ClassVar[bool] = True

    def axis_rule(self, axis, x, y):
        t = self.tile[axis]
        return _natten_axis(x // t, y // t, self.values[axis], self.dims[axis] // t)

    def axis_box(self, axis, x):
        t = self.tile[axis]
        lo, hi = _natten_box(x // t, self.values[axis], self.dims[axis] // t)
        return (lo * t, hi * t + t - 1)

    @classmethod
    def degree(cls, value):
        return None


@dataclass(frozen=True)
class _Chunk(_AxisRule):
    symmetric: ClassVar[bool] = True
    shifts: tuple = ()  # per axis, () for none
    extra_specs: ClassVar = (ParamSpec("shift", kind="tuple", default=0),)

    @classmethod
    def make(cls, dims, tile, args):
        return cls(dims=dims, tile=tile, values=tuple(args[name] for name in cls.params),
                   shifts=tuple(args[name] for name in cls.tuple_names("shift")))

    @classmethod
    def tuple_names(cls, name):
        return tuple("s" + p[1:] for p in cls.params)

    def _shift(self, axis):
        return self.shifts[axis] if self.shifts else 0

    def axis_rule(self, axis, x, y):
        # ⌊(x − s)/b⌋ = ⌊(y − s)/b⌋, with non-negative operands: x + (b − s mod b)
        size, s = self.values[axis], self._shift(axis)
        return ((x + (size - s % size)) // size == (y + (size - s % size)) // size) if size > 1 else (x == y)

    def axis_box(self, axis, x):
        size, s = self.values[axis], self._shift(axis)
        lo = (x - s) // size * size + s
        return (lo, lo + size - 1)

    def shown(self):
        out = [str(b) for b in self.values]
        if any(self.shifts):
            out.append(f"shift=({', '.join(str(s) for s in self.shifts)})")
        return out


class _Stride(_AxisRule):
    symmetric: ClassVar[bool] = True
    extra_specs: ClassVar = ()

    def axis_rule(self, axis, x, y):
        s, d = self.values[axis], self.dims[axis]
        return ((x - y) % s == 0) if s > 1 and s < d else ((x == y) if s >= d else None)

    @classmethod
    def degree(cls, value):
        return None


_forms(_Window,
       ("window2d", ("a", "b"), ("window2d(a, b)", "|r_i − r_j| ≤ a and |c_i − c_j| ≤ b (inside a 2D grid)")),
       ("window3d", ("t", "a", "b"), ("window3d(t, a, b)", "|f_i − f_j| ≤ t, |r_i − r_j| ≤ a and "
                                      "|c_i − c_j| ≤ b (inside a 3D grid)")))
_forms(_Natten,
       ("natten", ("kh", "kw"), ("natten(kh, kw)", "NATTEN's neighbourhood: per axis of length L with kernel k, "
                                 "the keys [s, s + k) with s = clamp(x_i − ⌊k/2⌋, 0, L − k) (the whole axis when "
                                 "k ≥ L); every query sees kh·kw keys")),
       ("natten3d", ("kt", "kh", "kw"), ("natten3d(kt, kh, kw)", "natten's rule on each of the three axes "
                                         "(frame first)")))
_forms(_SlidingTiles,
       ("sliding_tiles", ("kh", "kw"), ("sliding_tiles(kh, kw)", "natten(kh, kw) on the tile coordinates "
                                        "(⌊r/th⌋, ⌊c/tw⌋) over the grid of tiles (needs tile=; sliding-tile "
                                        "attention)")),
       ("sliding_tiles3d", ("kt", "kh", "kw"), ("sliding_tiles3d(kt, kh, kw)", "natten3d(kt, kh, kw) on the tile "
                                                "coordinates (needs tile=(tt, th, tw))")))
_forms(_Chunk,
       ("chunk2d", ("bh", "bw"), ("chunk2d(bh, bw, shift=(sh, sw))", "⌊(r_i − sh)/bh⌋ = ⌊(r_j − sh)/bh⌋ and "
                                  "⌊(c_i − sw)/bw⌋ = ⌊(c_j − sw)/bw⌋ (Swin windows, shifted; not cyclic; shift "
                                  "defaults to (0, 0))")),
       ("chunk3d", ("bt", "bh", "bw"), ("chunk3d(bt, bh, bw, shift=(st, sh, sw))", "chunk2d's rule on each of the "
                                        "three axes (frame first)")))
_forms(_Stride, ("stride2d", ("sh", "sw"), ("stride2d(sh, sw)", "(r_i − r_j) mod sh = 0 and (c_i − c_j) mod sw = 0")))


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

    def reach(self, dr):
        """The largest |Δc| allowed with this Δr."""
        return self.d - abs(dr)

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

    def reach(self, dr):
        return math.isqrt(self.d * self.d - dr * dr)

    def rule(self, a, b):
        dr, dc = a[0] - b[0], a[1] - b[1]
        return (dr * dr + dc * dc) <= self.d * self.d

    @classmethod
    def row_bound(cls, args, n, ops):
        d = args["d"]
        return RowBound(ops.min((2 * d + 1) * (2 * d + 1), n), tight=False, reflexive=True, symmetric=True)


# ---- block layouts from coordinate boxes ---------------------------------------------------
#
# A run of consecutive tokens of a grid in raster or tile order is a union of at most
# 2m − 1 boxes of cells (m the digits of the token order: a run fixes a prefix of the
# digits, spans a range of one digit and leaves the rest free, and each such piece is a box
# because a tile's digits follow its tile's). So a block of queries (or keys) is a handful
# of boxes, and for a separable operand — a conjunction of one relation per axis, such as
# natten, window2d, chunk2d or their intersections — the pairs between two boxes are the
# product over the axes of the pairs between the two ranges, read off a prefix-sum table
# of that axis's relation. The key blocks a query block touches come from the range its
# boxes reach on each axis. All of it is proportional to the blocks touched.

_MAX_AXIS_TABLE = 2048  # the longest axis given a prefix-sum table (int32, (L + 1)²)
_BOX_PAIRS = 1 << 20  # box pairs counted at once
_MAX_OFFSETS = 1 << 12  # offsets (Δr) summed at most by a distance rule's counter


def _digits(dims, tile):
    """The token order's digits, most significant first, as (radix, axis, multiplier):
    token t = Σ digit_j · W_j, W_j the product of the later radices, and cell coordinate
    x_axis = Σ over the axis's digits of digit · multiplier. Raster order is the tile order
    with tiles (1, …, 1, W), one row each. Digits of radix 1 (always 0) are left out."""
    tile = tuple(tile) if tile is not None else (1,) * (len(dims) - 1) + (dims[-1],)
    digits = [(d // t, a, t) for a, (d, t) in enumerate(zip(dims, tile))]
    digits += [(t, a, 1) for a, t in enumerate(tile)]
    return [d for d in digits if d[0] > 1], tile


def run_boxes(lo, hi, dims, tile):
    """(owner, box_lo, box_hi): the boxes of cells (int64 [k, axes], inclusive) whose union is
    the tokens lo[e] … hi[e] (local: 0 is the grid's first cell) of each entry e, exactly and
    disjointly, at most 2m − 1 per entry; entries with hi < lo have none."""
    digits, _ = _digits(dims, tile)
    axes = len(dims)
    lo, hi = np.asarray(lo, dtype=np.int64).copy(), np.asarray(hi, dtype=np.int64)
    if not digits:  # one cell: its token is its one box
        idx = np.flatnonzero(lo <= hi)
        zeros = np.zeros((idx.size, axes), dtype=np.int64)
        return idx, zeros, zeros.copy()
    # Every digit at once ([entries, digits] arrays): a loop over the digits costs a dozen
    # small numpy calls per digit, which is most of a grid layout's time.
    radix = np.array([d[0] for d in digits], dtype=np.int64)[None, :]
    weight = np.append(np.cumprod(radix[0, :0:-1])[::-1], 1)[None, :]  # W_j: the product of the later radices
    to_axis = np.zeros((len(digits), axes), dtype=np.int64)  # digit j's multiplier in its axis's coordinate
    to_axis[np.arange(len(digits)), [d[1] for d in digits]] = [d[2] for d in digits]
    position = np.arange(len(digits))[None, :]
    owners, los, his = [], [], []
    idx = np.flatnonzero(lo <= hi)
    while idx.size:
        c, h = lo[idx][:, None], hi[idx][:, None]
        # the most free level the run allows: the first digit j whose whole runs of W_j tokens
        # start at c and fit before h (the last digit, W = 1, always does)
        level = ((c % weight == 0) & (c + weight - 1 <= h)).argmax(axis=1)[:, None]
        d = c // weight % radix
        count = np.minimum(radix - d, (h - c + 1) // weight)
        later, at = position > level, position == level
        first = np.where(later, 0, d)
        last = np.where(later, radix - 1, np.where(at, d + count - 1, d))
        owners.append(idx)
        los.append(first @ to_axis)
        his.append(last @ to_axis)
        lo[idx] = c[:, 0] + np.take_along_axis(count * weight, level, axis=1)[:, 0]
        idx = idx[lo[idx] <= hi[idx]]
    if not owners:
        return np.zeros(0, dtype=np.int64), np.zeros((0, axes), dtype=np.int64), np.zeros((0, axes), dtype=np.int64)
    if len(owners) == 1:
        return owners[0], los[0], his[0]
    return np.concatenate(owners), np.concatenate(los), np.concatenate(his)


class _SparseTable:
    """Range minimum (or maximum) over a small int array in O(1) per query."""

    def __init__(self, values, op):
        self.op, self.levels = op, [np.asarray(values, dtype=np.int64)]
        while (1 << len(self.levels)) <= len(values):
            prev, half = self.levels[-1], 1 << (len(self.levels) - 1)
            self.levels.append(op(prev[:-half], prev[half:]))

    def __call__(self, a, b):
        a, b = np.asarray(a), np.asarray(b)
        k = np.floor(np.log2(np.maximum(b - a + 1, 1))).astype(np.int64)
        out = np.empty(np.broadcast(a, b).shape, dtype=np.int64)
        for level in np.unique(k):
            at = k == level
            table = self.levels[level]
            out[at] = self.op(table[a[at]], table[b[at] - (1 << level) + 1])
        return out


class _TableAxis:
    """One axis's relation as a bool matrix: pairs between ranges from its prefix sums, the
    keys a range of queries reaches as one interval (range minimum / maximum)."""

    def __init__(self, m):
        s = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.int32)
        s[1:, 1:] = np.cumsum(np.cumsum(m, axis=0, dtype=np.int32), axis=1, dtype=np.int32)
        self.sums = s
        any_ = m.any(axis=1)
        first = np.where(any_, m.argmax(axis=1), m.shape[1])
        last = np.where(any_, m.shape[1] - 1 - m[:, ::-1].argmax(axis=1), -1)
        self.first, self.last = _SparseTable(first, np.minimum), _SparseTable(last, np.maximum)

    def counts(self, x0, x1, y0, y1):
        s = self.sums
        x1, y1 = x1 + 1, y1 + 1
        return s[x1, y1].astype(np.int64) - s[x0, y1] - s[x1, y0] + s[x0, y0]

    def ends(self, x0, x1):
        return self.first(x0, x1), self.last(x0, x1)

    def reach(self, x0, x1):
        """(entry, first, last): the intervals of keys the query ranges [x0, x1] reach."""
        return np.arange(x0.size), self.first(x0, x1), self.last(x0, x1)

    def reach_count(self, x0, x1):
        """(intervals, the longest) of `reach` per entry, without listing them."""
        return np.ones_like(x0), self.last(x0, x1) - self.first(x0, x1) + 1


class _IntervalAxis:
    """One axis's relation given as an interval of keys per query coordinate x (first[x] …
    last[x], none when first > last: `_axis_span`): its prefix sums built from the intervals
    (no L × L relation matrix), flat (L + 1) × (L + 1) int32, so that a count is four `take`s;
    the keys a range of queries reaches from first[lo] and last[hi] where both ends are
    nondecreasing (natten, window, chunk: every box rule), else from range tables."""

    def __init__(self, first, last):
        size = first.size
        length = np.maximum(last - first + 1, 0).astype(np.int32)
        s = np.zeros((size + 1, size + 1), dtype=np.int32)
        below = np.arange(size + 1, dtype=np.int32)[None, :] - first.astype(np.int32)[:, None]
        np.maximum(below, 0, out=below)  # row x holds clip(y − first, 0, length) of the keys below y
        np.minimum(below, length[:, None], out=below)
        np.cumsum(below, axis=0, out=s[1:])
        self.sums, self.width = s.reshape(-1), size + 1
        if length.min(initial=1) == 0:  # coordinates without keys reach nothing
            first, last = np.where(length > 0, first, size), np.where(length > 0, last, -1)
        self.first, self.last = first.astype(np.int64), last.astype(np.int64)
        self.monotone = bool(np.all(self.first[1:] >= self.first[:-1]) and np.all(self.last[1:] >= self.last[:-1]))
        self.tables = None

    def counts(self, x0, x1, y0, y1):
        s, w = self.sums, self.width
        x0, x1, y1 = x0 * w, (x1 + 1) * w, y1 + 1
        return (s.take(x1 + y1) - s.take(x0 + y1) - s.take(x1 + y0) + s.take(x0 + y0)).astype(np.int64)

    def ends(self, x0, x1):
        """(first, last): the one interval of keys each query range [x0, x1] reaches."""
        if self.monotone:
            return self.first.take(x0), self.last.take(x1)
        if self.tables is None:
            self.tables = _SparseTable(self.first, np.minimum), _SparseTable(self.last, np.maximum)
        return self.tables[0](x0, x1), self.tables[1](x0, x1)

    def reach(self, x0, x1):
        return (np.arange(x0.size), *self.ends(x0, x1))

    def reach_count(self, x0, x1):
        first, last = self.ends(x0, x1)
        return np.ones_like(x0), last - first + 1


def _congruent_below(a, b, s):
    """#{x ∈ [0, a), y ∈ [0, b) : x ≡ y (mod s)}: with a = qa·s + ra, Σ over the residues ρ
    of (qa + [ρ < ra])(qb + [ρ < rb]). ``a`` and ``b`` may be given as their (quotient,
    remainder) by s (`_quot_rem`), so that four counts over the corners of two ranges
    divide each end once."""
    (qa, ra), (qb, rb) = (x if isinstance(x, tuple) else _quot_rem(x, s) for x in (a, b))
    return s * qa * qb + qa * rb + qb * ra + np.minimum(ra, rb)


def _quot_rem(x, s: int):
    """(x // s, x % s), one division (numpy's % by a scalar is no faster than a division)."""
    q = x // s
    return q, x - q * s


class _ProgressionAxis:
    """One axis's relation y − x ≡ 0 (mod s) and |y − x| ≤ e (e None: unbounded) — stride2d's
    residue classes, window2d's band, all, self and their conjunctions — in closed form, any
    axis length: the keys of a query coordinate are an arithmetic progression."""

    def __init__(self, s: int, e, length: int):
        self.s, self.length = s, length
        self.e = None if e is not None and e >= length - 1 else e

    def counts(self, x0, x1, y0, y1):
        x1, y1 = np.maximum(x1, x0 - 1), np.maximum(y1, y0 - 1)  # empty ranges: none
        s, e = self.s, self.e
        if e is None:
            if s == 1:
                return (x1 - x0 + 1) * (y1 - y0 + 1)
            x0, x1, y0, y1 = (_quot_rem(x, s) for x in (x0, x1 + 1, y0, y1 + 1))
            return (_congruent_below(x1, y1, s) - _congruent_below(x0, y1, s)
                    - _congruent_below(x1, y0, s) + _congruent_below(x0, y0, s))
        if s == 1:
            return _pairs_within(x0, x1, y0, y1, e)
        out = 0
        for k in range(-(e // s), e // s + 1):
            out = out + _pairs_diff(x0, x1, y0, y1, k * s)
        return out

    def _steps(self, x0, x1):
        """Per entry the multiples k·s (k0 … k1) of the reached intervals [x0 + k·s, x1 + k·s],
        or one interval (k0 = k1 = 0, widened by ``pad``) where the range covers every residue."""
        s, e, last = self.s, self.e, self.length - 1
        pad = np.full_like(x0, last if e is None else e)
        whole = (s == 1) | (x1 - x0 + 1 >= s)
        bound = last // s if e is None else e // s
        k0 = np.where(whole, 0, np.maximum(-bound, -(x1 // s)))
        k1 = np.where(whole, 0, np.minimum(bound, (last - x0) // s))
        return whole, pad, k0, k1

    def reach(self, x0, x1):
        whole, pad, k0, k1 = self._steps(x0, x1)
        count = np.maximum(k1 - k0 + 1, 0)
        entry = np.repeat(np.arange(x0.size), count)
        k = k0[entry] + np.arange(entry.size) - np.repeat(np.cumsum(count) - count, count)
        step = k * self.s
        first = np.where(whole[entry], x0[entry] - pad[entry], x0[entry] + step)
        last = np.where(whole[entry], x1[entry] + pad[entry], x1[entry] + step)
        return entry, np.maximum(first, 0), np.minimum(last, self.length - 1)

    def reach_count(self, x0, x1):
        whole, pad, k0, k1 = self._steps(x0, x1)
        return np.maximum(k1 - k0 + 1, 0), np.minimum(x1 - x0 + 1 + np.where(whole, 2 * pad, 0), self.length)


class _SpanAxis:
    """One axis's relation where query coordinate x holds the keys [first(x), last(x)], both
    nondecreasing and never empty (natten, chunk2d, sliding_tiles, window2d on an axis too
    long for a table): pairs between ranges from prefix sums of the ends, split where they
    cross the key range's ends (binary search)."""

    def __init__(self, first, last):
        self.first, self.last = first, last
        self.sum_first = np.concatenate([[0], np.cumsum(first)])
        self.sum_last = np.concatenate([[0], np.cumsum(last)])

    @staticmethod
    def usable(first, last) -> bool:
        return bool((first <= last).all() and (np.diff(first) >= 0).all() and (np.diff(last) >= 0).all())

    def counts(self, x0, x1, y0, y1):
        first, last = self.first, self.last
        # the x whose keys meet [y0, y1]: last(x) ≥ y0 and first(x) ≤ y1 (each term ≥ 1 there)
        lo = np.maximum(x0, np.searchsorted(last, y0, "left"))
        hi = np.minimum(x1, np.searchsorted(first, y1, "right") - 1)
        empty = (hi < lo) | (y1 < y0)
        hi = np.where(empty, lo - 1, hi)
        c = np.clip(np.searchsorted(last, y1, "left"), lo, hi + 1)  # x < c: last(x) < y1
        d = np.clip(np.searchsorted(first, y0, "right"), lo, hi + 1)  # x < d: first(x) ≤ y0
        upper = self.sum_last[c] - self.sum_last[lo] + (hi + 1 - c) * y1  # Σ min(last(x), y1)
        lower = (d - lo) * y0 + self.sum_first[hi + 1] - self.sum_first[d]  # Σ max(first(x), y0)
        return np.where(empty, 0, upper - lower + (hi + 1 - lo))

    def ends(self, x0, x1):
        return self.first[x0], self.last[x1]

    def reach(self, x0, x1):
        return np.arange(x0.size), self.first[x0], self.last[x1]

    def reach_count(self, x0, x1):
        return np.ones_like(x0), self.last[x1] - self.first[x0] + 1


class _Separable:
    """Block counting for a conjunction of per-axis relations (`_TableAxis`,
    `_ProgressionAxis` or `_SpanAxis` per axis): the pairs between two boxes are the product over the axes
    of the pairs between their ranges, the keys a box reaches the product of the intervals
    each axis reaches."""

    def __init__(self, axes):
        self.axes = axes

    def counts(self, qlo, qhi, klo, khi):
        """Pairs between query boxes and key boxes (arrays [..., axes] broadcasting)."""
        out = None
        for a, axis in enumerate(self.axes):
            c = axis.counts(qlo[..., a], qhi[..., a], klo[..., a], khi[..., a])
            out = c if out is None else out * c
        return out

    def reach_boxes(self, lo, hi):
        """(entry, first, last): the boxes of keys (per axis inclusive, clipped to the grid)
        that the query boxes [lo, hi] reach, a superset of their keys."""
        entry = np.arange(lo.shape[0])
        if all(hasattr(axis, "ends") for axis in self.axes):  # one interval per axis: one box per query box
            ends = [axis.ends(lo[:, a], hi[:, a]) for a, axis in enumerate(self.axes)]
            return entry, np.stack([f for f, _ in ends], axis=1), np.stack([t for _, t in ends], axis=1)
        first = np.zeros((entry.size, 0), dtype=np.int64)
        last = first
        for a, axis in enumerate(self.axes):
            which, f, t = axis.reach(lo[entry, a], hi[entry, a])
            entry, first, last = entry[which], np.column_stack([first[which], f]), np.column_stack([last[which], t])
        return entry, first, last

    def reach_count(self, lo, hi):
        """(boxes, the longest extent per axis [entries, axes]) of `reach_boxes`, unlisted."""
        count, extent = np.ones(lo.shape[0], dtype=np.int64), []
        for a, axis in enumerate(self.axes):
            c, e = axis.reach_count(lo[:, a], hi[:, a])
            count, extent = count * c, extent + [e]
        return count, np.stack(extent, axis=1)


def _pairs_diff(a, b, c, d, delta):
    """#{x ∈ [a, b], y ∈ [c, d] : y − x = delta}."""
    return np.maximum(0, np.minimum(b, d - delta) - np.maximum(a, c - delta) + 1)


def _pairs_within(a, b, c, d, e):
    """#{x ∈ [a, b], y ∈ [c, d] : |y − x| ≤ e} (e ≥ 0 per entry), in closed form."""
    width = d - c + 1

    def below(t):  # #{x, y : y − x ≤ t} = Σ_{x=a..b} clip(x + t − c + 1, 0, width)
        def partial(u):  # Σ_{v ≤ u} clip(v, 0, width)
            inside = np.clip(u, 0, width)
            return inside * (inside + 1) // 2 + np.maximum(u - width, 0) * width
        return partial(b + t - c + 1) - partial(a - 1 + t - c + 1)

    return below(e) - below(-e - 1)


class _Offsets:
    """Block counting for a 2D rule |Δc| ≤ reach(Δr) (manhattan, euclid): per row offset
    Δr, the pairs of the two row ranges with that offset times the column pairs within
    reach."""

    def __init__(self, d, reach):
        self.d, self.reaches = d, [(dr, reach(dr)) for dr in range(-d, d + 1)]

    def counts(self, qlo, qhi, klo, khi):
        out = 0
        for dr, e in self.reaches:
            out = out + (_pairs_diff(qlo[..., 0], qhi[..., 0], klo[..., 0], khi[..., 0], dr)
                         * _pairs_within(qlo[..., 1], qhi[..., 1], klo[..., 1], khi[..., 1], e))
        return out

    def reach_boxes(self, lo, hi):
        return np.arange(lo.shape[0]), lo - self.d, hi + self.d

    def reach_count(self, lo, hi):
        return np.ones(lo.shape[0], dtype=np.int64), hi - lo + 1 + 2 * self.d


def _axis_relation(node, a: int, d: int):
    """The bool relation matrix along axis ``a`` (length ``d``) of a conjunction of per-axis
    relations, or None when ``node`` is not one."""
    if isinstance(node, _AxisRule):
        x = np.arange(d, dtype=np.int64)
        held = node.axis_rule(a, x[:, None], x[None, :])
        return np.ones((d, d), dtype=bool) if held is None else np.asarray(held, dtype=bool)
    if isinstance(node, (All, Nothing, Self)):  # every pair, none, the same cell: per axis too
        make = {All: np.ones, Nothing: np.zeros}.get(type(node))
        return make((d, d), dtype=bool) if make else np.eye(d, dtype=bool)
    if isinstance(node, GridTransposed):
        inner = _axis_relation(node.operand, a, d)
        return None if inner is None else inner.T
    if isinstance(node, Intersection):
        parts = [_axis_relation(p, a, d) for p in node.parts]
        return None if any(p is None for p in parts) else np.logical_and.reduce(parts)
    return None


def _progression(node, a: int):
    """(s, e): ``node``'s relation along axis ``a`` is y − x ≡ 0 (mod s) and |y − x| ≤ e (e None:
    unbounded), or None when it is not of that form."""
    if isinstance(node, _Stride):
        return node.values[a], None
    if isinstance(node, _Window):
        return 1, node.values[a]
    if isinstance(node, (All, Self)):
        return 1, (None if isinstance(node, All) else 0)
    if isinstance(node, Intersection):
        parts = [_progression(p, a) for p in node.parts]
        if any(p is None for p in parts):
            return None
        bounds = [e for _, e in parts if e is not None]
        return math.lcm(*(s for s, _ in parts)), (min(bounds) if bounds else None)
    return None


def _nodes(op):
    """``op`` and every node below it."""
    stack = [op]
    while stack:
        p = stack.pop()
        yield p
        stack.extend(p.children())


def _has_stride(node) -> bool:
    return any(isinstance(p, _Stride) for p in _nodes(node))


def _axis_counter(node, a: int, d: int, strided: bool, shared: dict):
    """The counter of axis ``a``: in closed form where the relation is a progression and the
    axis is strided or too long for a table, else a table (None: neither) — from the key
    intervals where the axis has them, one table for every axis with the same intervals
    (``shared``: a square natten's two axes)."""
    form = _progression(node, a)
    if form is not None and (strided or d > _MAX_AXIS_TABLE):
        s, e = form
        if s == 1 or e is None or e < s * _MAX_OFFSETS:
            return _ProgressionAxis(s, e, d)
    if d > _MAX_AXIS_TABLE:
        span = _axis_span(node, a, d)
        return _SpanAxis(*span) if span is not None and _SpanAxis.usable(*span) else None
    span = _axis_span(node, a, d)
    if span is not None:
        key = (span[0].tobytes(), span[1].tobytes())
        if key not in shared:
            shared[key] = _IntervalAxis(*span)
        return shared[key]
    m = _axis_relation(node, a, d)
    return None if m is None else _TableAxis(m)


@functools.lru_cache(maxsize=32)
def box_counter(node, dims: tuple):
    """What counts the pairs between boxes of cells of the operand ``node`` of a grid of
    ``dims`` (`_Separable` or `_Offsets`), or None when it has no such form."""
    if isinstance(node, _Distance) and len(dims) == 2 and 2 * node.d + 1 <= _MAX_OFFSETS:
        return _Offsets(node.d, node.reach)
    strided = _has_stride(node)
    shared = {}
    axes = [_axis_counter(node, a, d, strided, shared) for a, d in enumerate(dims)]
    return None if any(x is None for x in axes) else _Separable(axes)


def _block_runs(node, grid, side):
    """(owner block, box_lo, box_hi) of every block of the side ("q" rows, "k" columns),
    and the same padded to [blocks, width, axes] (empty boxes: lo 0, hi −1). Shared by the
    two sides when their blocks are the same, and by every grid of the same geometry."""
    size, count = (grid.block_q, grid.num_q) if side == "q" else (grid.block_k, grid.num_k)
    key = ("grid boxes", node.dims, node.tile, node.offset, size, count)
    if key not in grid.memo:
        b = np.arange(count, dtype=np.int64)
        first = np.maximum(b * size, node.offset) - node.offset
        last = np.minimum(np.minimum((b + 1) * size, grid.n), node.offset + node.cells) - 1 - node.offset
        if node.order == "morton":
            owner, lo, hi = morton_run_boxes(first, last, node.dims)
        else:
            owner, lo, hi = run_boxes(first, last, node.dims, node.tile)
        if owner.size == count and bool(np.all(owner == b)):  # one box per block (runs of whole rows, tiles)
            grid.memo[key] = (owner, lo, hi), (lo[:, None, :], hi[:, None, :])
            return grid.memo[key]
        if not bool(np.all(owner[1:] >= owner[:-1])):
            order = np.argsort(owner, kind="stable")
            owner, lo, hi = owner[order], lo[order], hi[order]
        per = np.bincount(owner, minlength=count)
        slot = np.arange(owner.size) - np.repeat(np.cumsum(per) - per, per)
        width = int(per.max(initial=0))
        padded_lo = np.zeros((count, width, len(node.dims)), dtype=np.int64)
        padded_hi = np.full((count, width, len(node.dims)), -1, dtype=np.int64)
        padded_lo[owner, slot], padded_hi[owner, slot] = lo, hi
        grid.memo[key] = (owner, lo, hi), (padded_lo, padded_hi)
    return grid.memo[key]


def _box_block_counts(node, grid, counter, qb, kb):
    """The operand's pairs in each block (qb, kb): Σ over the query block's boxes and the
    key block's boxes of the pairs between them."""
    _, (qlo, qhi) = _block_runs(node, grid, "q")
    _, (klo, khi) = _block_runs(node, grid, "k")
    qb, kb = np.broadcast_arrays(np.asarray(qb, dtype=np.int64), np.asarray(kb, dtype=np.int64))
    shape, qb, kb = qb.shape, qb.reshape(-1), kb.reshape(-1)
    if qlo.shape[1] == 0 or klo.shape[1] == 0:
        return np.zeros(shape, dtype=np.int64)
    if qlo.shape[1] == 1 and klo.shape[1] == 1:  # one box a block on both sides: no box pairs to sum
        tables = _axis_count_tables(node, grid, counter, qlo, qhi, klo, khi) if qb.size >= _TABLED_BLOCKS else None
        if tables is not None:
            out = None
            for q_range, k_range, table, width in tables:
                c = table.take(q_range.take(qb) * width + k_range.take(kb))
                out = c if out is None else out * c
            return out.reshape(shape)
        return counter.counts(qlo[:, 0].take(qb, axis=0), qhi[:, 0].take(qb, axis=0),
                              klo[:, 0].take(kb, axis=0), khi[:, 0].take(kb, axis=0)).reshape(shape)
    out = np.zeros(qb.size, dtype=np.int64)
    step = max(1, _BOX_PAIRS // (qlo.shape[1] * klo.shape[1]))
    for s in range(0, qb.size, step):
        q, k = qb[s:s + step], kb[s:s + step]
        c = counter.counts(qlo[q][:, :, None, :], qhi[q][:, :, None, :], klo[k][:, None, :, :], khi[k][:, None, :, :])
        out[s:s + step] = c.sum(axis=(1, 2))
    return out.reshape(shape)


_AXIS_TABLE_PAIRS = 1 << 22  # distinct (query range, key range) pairs of one axis counted into a table
_TABLED_BLOCKS = 1 << 14  # blocks counted at once from the tables at least (fewer: the closed forms are cheaper)


def _axis_count_tables(node, grid, counter, qlo, qhi, klo, khi):
    """Per axis of a separable counter, where every block is one box: (query block → its
    range's index, key block → its range's index, the pairs between each two ranges, flat,
    the key ranges' count), or None. The blocks of a grid have few distinct ranges per axis
    (the aligned cubes of a Morton grid: 64 per axis at 4096² in blocks of 64 × 64), so a
    block's count is a product of lookups, not the closed forms per block."""
    if not isinstance(counter, _Separable):
        return None
    key = ("grid axis count tables", node, grid.block_q, grid.block_k)
    if key not in grid.memo:
        tables = []
        for a, axis in enumerate(counter.axes):
            radix = node.dims[a] + 2  # a range (lo, hi) as one code, hi ≥ −1 (empty boxes: 0, −1)
            (qs, q_range), (ks, k_range) = (np.unique(lo[:, 0, a] * radix + hi[:, 0, a] + 1, return_inverse=True)
                                            for lo, hi in ((qlo, qhi), (klo, khi)))
            if qs.size * ks.size > _AXIS_TABLE_PAIRS:
                tables = None
                break
            table = axis.counts((qs // radix)[:, None], (qs % radix - 1)[:, None], (ks // radix)[None, :],
                                (ks % radix - 1)[None, :])
            tables.append((q_range.reshape(-1), k_range.reshape(-1), np.asarray(table, dtype=np.int64).reshape(-1),
                           ks.size))
        grid.memo[key] = tables
    return grid.memo[key]


def _box_block_candidates(node, grid, counter):
    """Sorted codes of the blocks whose keys a query block's boxes reach: per box, the
    range of key coordinates it reaches on each axis; per tile of the token order (a row
    in raster order) that range meets, the span of tokens of its part of the tile. The
    axes are the columns of [boxes, axes] arrays (no loop over them)."""
    key = ("grid box candidates", node)
    if key not in grid.memo:
        (owner, lo, hi), _ = _block_runs(node, grid, "q")
        dims = np.array(node.dims, dtype=np.int64)
        _, tile = _digits(node.dims, node.tile)
        tile = np.array(tile, dtype=np.int64)
        which, first, last = counter.reach_boxes(lo, hi)
        owner, first, last = owner[which], np.maximum(first, 0), np.minimum(last, dims - 1)
        keep = np.all(first <= last, axis=1)
        owner, first, last = owner[keep], first[keep], last[keep]
        if node.order == "morton":  # each reached box as its runs of Morton tokens (aligned Z-order cubes)
            if aligned_morton_blocks(node.dims, grid.block_k, node.offset):
                which, start, stop = morton_block_runs(first, last, node.dims, grid.block_k)
            else:
                which, start, stop = morton_box_runs(first, last, node.dims, grid.block_k, node.offset)
            grid.memo[key] = grid.key_block_range(owner[which], start + node.offset,
                                                  np.minimum(stop - 1 + node.offset, grid.n - 1))
            return grid.memo[key]
        t_lo, t_hi = first // tile, last // tile
        span = t_hi - t_lo + 1
        count = np.prod(span, axis=1)
        which = np.repeat(np.arange(owner.size), count)
        local = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        # the mixed-radix digits of ``local`` over the spans, the last axis fastest
        inner = np.append(np.cumprod(span[:, :0:-1], axis=1)[:, ::-1], np.ones((span.shape[0], 1), np.int64), axis=1)
        t = t_lo.take(which, axis=0) + local[:, None] // inner.take(which, axis=0) % span.take(which, axis=0)
        base = t * tile
        inner_lo = np.maximum(first.take(which, axis=0), base) - base
        inner_hi = np.minimum(last.take(which, axis=0), base + tile - 1) - base
        tiles_after = np.append(np.cumprod((dims // tile)[:0:-1])[::-1], 1)  # the tile index's weights
        cells_after = np.append(np.cumprod(tile[:0:-1])[::-1], 1)  # a cell's offset in its tile
        start = (t @ tiles_after) * int(np.prod(tile)) + node.offset
        stop = start + inner_hi @ cells_after
        start += inner_lo @ cells_after
        grid.memo[key] = grid.key_block_range(owner.take(which), start, np.minimum(stop, grid.n - 1))
    return grid.memo[key]


_EXACT_ESTIMATE = 1 << 22  # candidate blocks listed for an exact estimate when the bound allows at most this many


def _box_block_estimate(node, grid, counter):
    """The candidate blocks of a grid with a box counter: their number (listed) when a bound
    allows at most _EXACT_ESTIMATE, else the bound — per query box, the boxes it reaches
    (`reach_count`, unlisted) × the tiles each meets × the key blocks a tile's part spans —
    so that a layout too large for the budget (stride2d(64, 64) on a 4096² grid at 2^24:
    2.7·10^8 blocks of 128 × 128) is refused before its candidates are listed."""
    (owner, lo, hi), _ = _block_runs(node, grid, "q")
    count, extent = counter.reach_count(lo, hi)
    dims = np.array(node.dims, dtype=np.int64)
    extent = np.clip(extent, 1, dims)
    if node.order == "morton":
        blocks = _morton_blocks_bound(extent, node.dims, grid.block_k)
    else:
        tile = np.array(_digits(node.dims, node.tile)[1], dtype=np.int64)
        tiles = np.prod(np.minimum((extent - 2) // tile + 2, dims // tile), axis=1)  # ⌈(e − 1)/t⌉ + 1
        inner = np.minimum(extent, tile)
        after = np.append(np.cumprod(tile[::-1])[::-1][1:], 1)  # tokens per step of each inner digit
        span = ((inner - 1) * after).sum(axis=1) + 1
        blocks = tiles * np.minimum(grid.num_k, (span + grid.block_k - 2) // grid.block_k + 1)
    per_query_block = np.bincount(owner, weights=(count * blocks).astype(np.float64), minlength=grid.num_q)
    bound = int(np.minimum(per_query_block, grid.num_k).sum())
    return int(node.block_candidates(grid).size) if bound <= _EXACT_ESTIMATE else bound


def _morton_blocks_bound(extent, dims, block: int):
    """The most key blocks (of ``block`` tokens) a box of ``extent`` cells per axis meets in
    Morton order: for any side 2^L, the box lies in Π (⌈(e − 1)/2^L⌉ + 1) aligned Z-order cubes,
    each a run of at most 2^(L·axes) tokens, so of ⌈2^(L·axes)/block⌉ + 1 blocks; the least over L."""
    best = None
    for level in range(_z_bits(dims) + 1):
        side = 1 << level
        cubes = np.prod((extent - 2) // side + 2, axis=1)
        bound = cubes * (-(-(side ** len(dims)) // block) + 1)
        best = bound if best is None else np.minimum(best, bound)
    return best


# ---- keys per row from coordinate boxes (exact counts, row sets) ---------------------------
#
# A query's keys under a box-like operand (natten, window2d, chunk2d, sliding_tiles, their
# transposes and intersections, all, self) are a box of cells: per axis an interval of
# coordinates. In raster or tile order a box is a few runs of consecutive tokens: per axis
# the interval splits into at most three pieces of (tile digit range, inner digit range),
# each product of pieces is a box of digits, and a box of digits is Π (spans of the digits
# before the last partial one) runs. So the keys of a row are its runs — clipped to the
# tokens that exist (below n) — never a list of its keys; unions, intersections and
# differences inside the grid are the row sets' sweeps over those runs, and a 1D operand in
# raster order is its own row structure over the ranks (rank = local token). Counting them
# costs the rows of the grid × their runs; the rows outside the grid have no keys.

_MAX_DISTANCE_BOXES = 1 << 12  # a distance rule as at most this many one-row boxes
_RUN_ATOMS = 8  # a grid's runs as interval atoms of the row formula when it has at most this many
_RUN_PROBES = 16  # rows whose runs `run_table` reads before all of them
_RUN_TABLE = 1 << 24  # entries of a grid's run table (rows × runs) kept as interval atoms
_ROWS_AT_ONCE = 1 << 15  # query rows whose runs are built at once
_MAX_CUBES = 1 << 10  # Z-order cubes cut at once per box (Morton), else its keys are listed
_RANK_INTERVALS = 64  # a 1D operand in a tiled grid: at most this many intervals of ranks per row


class NoBoxes(Exception):
    """The operand of a grid has no form as boxes of cells (Morton order, stride2d, a 1D
    primitive in tile order, …): its keys are listed instead."""


def _axis_span(node, a: int, d: int):
    """(first, last) int64 [d] along axis ``a`` in closed form, from the primitives' own
    `axis_box` (window2d, natten, chunk2d, sliding_tiles, all, self and their intersections:
    no d × d relation), or None."""
    x = np.arange(d, dtype=np.int64)
    if isinstance(node, _AxisRule):
        box = node.axis_box(a, x)
        return None if box is None else (np.maximum(box[0], 0), np.minimum(box[1], d - 1))
    if isinstance(node, (All, Self)):
        return (np.zeros(d, dtype=np.int64), np.full(d, d - 1, dtype=np.int64)) if isinstance(node, All) else (x, x)
    if isinstance(node, Intersection):
        parts = [_axis_span(p, a, d) for p in node.parts]
        if any(p is None for p in parts):
            return None
        return np.maximum.reduce([f for f, _ in parts]), np.minimum.reduce([t for _, t in parts])
    return None


@functools.lru_cache(maxsize=64)
def axis_spans(node, dims: tuple):
    """Per axis (first, last), int64 [length]: the interval of key coordinates that query
    coordinate x reaches (first > last: none), when ``node``'s relation is one interval per
    axis for every coordinate (a box); else None. An axis too long for its relation matrix
    reads the primitives' boxes (`_axis_span`)."""
    out = []
    for a, d in enumerate(dims):
        if d > _MAX_AXIS_TABLE:
            span = _axis_span(node, a, d)
            if span is None:
                return None
            out.append(span)
            continue
        m = _axis_relation(node, a, d)
        if m is None:
            return None
        held = m.any(axis=1)
        first = np.where(held, m.argmax(axis=1), 0).astype(np.int64)
        last = np.where(held, m.shape[1] - 1 - m[:, ::-1].argmax(axis=1), -1).astype(np.int64)
        if (m.sum(axis=1) != np.maximum(last - first + 1, 0)).any():  # a gap: not an interval
            return None
        out.append((first, last))
    return out


def _axis_pieces(lo, hi, size):
    """The coordinates lo … hi of one axis with tiles of ``size`` as at most three pieces
    (valid, tile lo, tile hi, inner lo, inner hi): the first tile's part, the whole tiles
    between, the last tile's part (a part that fills its tile joins the whole tiles)."""
    t0, t1, u0, u1 = lo // size, hi // size, lo % size, hi % size
    single = t0 == t1
    ok = lo <= hi
    head = (ok & ~single & (u0 > 0), t0, t0, u0, np.full_like(u0, size - 1))
    middle_lo = t0 + (u0 > 0)
    middle_hi = t1 - (u1 < size - 1)
    middle = (ok & ~single & (middle_lo <= middle_hi), middle_lo, middle_hi,
              np.zeros_like(u0), np.full_like(u0, size - 1))
    tail = (ok & ~single & (u1 < size - 1), t1, t1, np.zeros_like(u1), u1)
    alone = (ok & single, t0, t0, u0, u1)
    return [alone, head, middle, tail]


def box_runs(lo, hi, dims, tile):
    """(owner, start, stop): the runs of local tokens (half-open, sorted and merged per
    owner) whose union is the box of cells lo[e] … hi[e] (int64 [entries, axes], inclusive,
    clipped to the grid here) of each entry e, in raster order (tile None) or tile order."""
    axes = len(dims)
    tile = tuple(tile) if tile is not None else (1,) * (axes - 1) + (dims[-1],)
    radix = np.array([d // t for d, t in zip(dims, tile)] + list(tile), dtype=np.int64)
    weight = np.append(np.cumprod(radix[::-1])[::-1][1:], 1)  # token = Σ digit_j · weight_j
    dims_ = np.array(dims, dtype=np.int64)
    lo = np.maximum(np.asarray(lo, dtype=np.int64), 0)
    hi = np.minimum(np.asarray(hi, dtype=np.int64), dims_ - 1)
    pieces = [_axis_pieces(lo[:, a], hi[:, a], tile[a]) for a in range(axes)]
    owners, starts, stops = [], [], []
    for choice in itertools.product(range(4), repeat=axes):
        chosen = [pieces[a][c] for a, c in enumerate(choice)]
        valid = np.logical_and.reduce([p[0] for p in chosen])
        idx = np.flatnonzero(valid)
        if idx.size == 0:
            continue
        a_ = np.stack([p[1][idx] for p in chosen] + [p[3][idx] for p in chosen], axis=1)  # digits' lows
        b_ = np.stack([p[2][idx] for p in chosen] + [p[4][idx] for p in chosen], axis=1)  # and highs
        partial = (a_ > 0) | (b_ < radix - 1)
        D = radix.size
        last = np.where(partial.any(axis=1), D - 1 - partial[:, ::-1].argmax(axis=1), 0)  # the last partial digit
        span = b_ - a_ + 1
        before = np.arange(D)[None, :] < last[:, None]
        count = np.prod(np.where(before, span, 1), axis=1)
        which = np.repeat(np.arange(idx.size), count)
        local = np.arange(which.size, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        start = np.zeros(which.size, dtype=np.int64)
        for j in range(D - 1, -1, -1):  # the digits before the last partial one, last fastest
            inner = before[which, j]
            s = span[which, j]
            digit = a_[which, j] + np.where(inner, local % s, 0)
            local = np.where(inner, local // s, local)
            start += digit * weight[j]
        owners.append(idx[which])
        starts.append(start)
        stops.append(start + span[which, last[which]] * weight[last[which]])
    if not owners:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    owner, start, stop = np.concatenate(owners), np.concatenate(starts), np.concatenate(stops)
    order = np.lexsort((start, owner))
    return _merged(owner[order], start[order], stop[order])


def morton_box_runs(lo, hi, dims, block: "int | None" = None, offset: int = 0):
    """`box_runs` in Morton order: the box split into the aligned cubes of the Z-order that
    it holds (a cube of side 2^L is 2^(L·axes) consecutive Z-codes), found level by level
    from the cubes of the box's size down, cutting only the cubes that cross its faces; the cells
    of a cube (cut by the grid) are consecutive tokens from its first, the cells of its
    earlier siblings counted on the way down (no table of the grid's cells, no rank per cube).

    With ``block``: the runs only as precise as blocks of ``block`` tokens (local token t in
    block (t + offset) // block): a cube that meets the box and lies in one block is not cut
    but taken whole, so the descent stops at cubes of about a block (the key blocks a box
    reaches, `_box_block_candidates`, in time the blocks it meets, not its cells)."""
    axes = len(dims)
    lo = np.maximum(np.asarray(lo, dtype=np.int64), 0)
    hi = np.minimum(np.asarray(hi, dtype=np.int64), np.array(dims, dtype=np.int64) - 1)
    owner = np.flatnonzero(np.all(lo <= hi, axis=1))
    corners = np.array(list(itertools.product((0, 1), repeat=axes)), dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    owners, starts, stops = [empty], [empty], [empty]
    entries = lo.shape[0]
    # Start at the cubes of the least side 2^L that no box outgrows (a box then meets at most
    # two per axis), their first tokens by `morton_rank`, not at the whole grid.
    extent = int((hi[owner] - lo[owner]).max(initial=0)) + 1
    level = min(_z_bits(dims), (extent - 1).bit_length())
    side = 1 << level
    base = ((lo[owner] >> level) << level)[:, None, :] + corners[None, :, :] * side
    owner = np.repeat(owner, corners.shape[0])
    base = base.reshape(-1, axes)
    keep = np.all((base <= hi[owner]) & (base < np.array(dims, dtype=np.int64)), axis=1)
    owner, base = owner[keep], base[keep]
    start = morton_rank(list(base.T), dims)
    while owner.size:
        if owner.size > _MAX_CUBES * max(1, entries):  # a box with a long face across many cubes
            raise NoBoxes("too many Z-order cubes")
        side = 1 << level
        cells = _cube_cells(list(base.T), side, dims)
        box_lo, box_hi = lo[owner], hi[owner]
        inside = np.all((base >= box_lo) & (base + side - 1 <= box_hi), axis=1)
        if block is not None:  # (a cube here meets the box: its parent was cut)
            inside |= (start + offset) // block == (start + offset + cells - 1) // block
        owners.append(owner[inside])
        starts.append(start[inside])
        stops.append(start[inside] + cells[inside])
        cut = ~inside
        half = side >> 1
        child = base[cut][:, None, :] + corners[None, :, :] * half
        child_cells = _cube_cells([child[:, :, k] for k in range(axes)], half, dims)
        child_start = start[cut][:, None] + np.cumsum(child_cells, axis=1) - child_cells
        child_owner = np.repeat(owner[cut], corners.shape[0])
        child = child.reshape(-1, axes)
        meets = np.all((child <= hi[child_owner]) & (child + half - 1 >= lo[child_owner]), axis=1)
        meets &= child_cells.reshape(-1) > 0
        owner, base, start = child_owner[meets], child[meets], child_start.reshape(-1)[meets]
        level -= 1
    owner, start, stop = np.concatenate(owners), np.concatenate(starts), np.concatenate(stops)
    order = np.lexsort((start, owner))
    return _merged(owner[order], start[order], stop[order])


def aligned_morton_blocks(dims, block: int, offset: int) -> bool:
    """Whether blocks of ``block`` tokens are boxes of the grid's cells: the token is the Z-code
    (`_dense_codes`), the block a power of two and the grid's first token a block's first."""
    return _dense_codes(dims) and block & (block - 1) == 0 and offset % block == 0


def morton_block_runs(lo, hi, dims, block: int):
    """(owner, start, stop): per box lo[e] … hi[e] (inclusive, clipped to the grid), the local
    token runs of the blocks of ``block`` tokens holding a cell of it, one run a block, where
    `aligned_morton_blocks`: a block is the codes sharing their bits above the lowest log2(block)
    — a box of side 2^(L+1) on the r axes whose bits come lowest (the column's first) and 2^L
    on the others (log2(block) = axes·L + r) — so the blocks a box meets are a box of blocks,
    in closed form (no cubes cut)."""
    axes = len(dims)
    levels, extra = divmod(block.bit_length() - 1, axes)
    shift = np.array([levels + (axes - 1 - k < extra) for k in range(axes)], dtype=np.int64)
    lo = np.maximum(np.asarray(lo, dtype=np.int64), 0)
    hi = np.minimum(np.asarray(hi, dtype=np.int64), np.array(dims, dtype=np.int64) - 1)
    first, last = lo >> shift, hi >> shift
    span = np.where(np.all(lo <= hi, axis=1)[:, None], last - first + 1, 0)
    count = np.prod(span, axis=1)
    which = np.repeat(np.arange(count.size), count)
    local = np.arange(which.size, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    corner = []
    for k in range(axes - 1, -1, -1):  # the mixed-radix digits of ``local`` over the spans, the last axis fastest
        s = span[which, k]
        corner.append((first[which, k] + local % s) << shift[k])
        local = local // s
    start = np.asarray(z_codes(corner[::-1], dims), dtype=np.int64)
    return which, start, start + block


def _merged(owner, start, stop):
    """Runs sorted by owner and start, those that touch joined."""
    if owner.size == 0:
        return owner, start, stop
    joins = np.ones(owner.size, dtype=bool)
    joins[1:] = (owner[1:] != owner[:-1]) | (start[1:] != stop[:-1])
    first = np.flatnonzero(joins)
    last_of = np.append(first[1:], owner.size) - 1
    return owner[first], start[first], stop[last_of]


def _cell_runs(node: Grid, lo, hi):
    """box_runs in the grid's token order (raster, tiles or Morton)."""
    if node.order == "morton":
        return morton_box_runs(lo, hi, node.dims)
    return box_runs(lo, hi, node.dims, node.tile)


def _has_grid_primitive(node) -> bool:
    return any(isinstance(p, GridPrimitive) for p in _nodes(node))


def _local_keys(node: Grid, op, ranks: np.ndarray, existing: int, classes: bool = False):
    """RowKeys (patterndsl.analysis.rowsets) of the query cells of raster ranks ``ranks``
    under the operand ``op``, over local tokens (0: the grid's first cell) below
    ``existing``; raises NoBoxes when ``op`` has no such form. With ``classes``, stride2d's
    keys are listed (`_class_keys`: the caller bounds them), else it has no such form."""
    from .analysis.rowsets import RowKeys, TooManyIntervals, combine, row_keys

    m = ranks.size

    def clipped(owner, start, stop):
        stop = np.minimum(stop, existing)
        keep = start < stop
        return RowKeys(m, owner[keep], start[keep], stop[keep])

    spans = axis_spans(op, node.dims)
    if spans is not None:
        coords = _coords(ranks, node.dims)
        lo = np.stack([first[x] for (first, _), x in zip(spans, coords)], axis=1)
        hi = np.stack([last[x] for (_, last), x in zip(spans, coords)], axis=1)
        if node.order == "morton" and len(node.dims) == 2 and hi.size:  # small boxes: their cells listed
            widths = tuple(max(1, int((last - first + 1).max(initial=1))) for first, last in spans)  # any query's
            if math.prod(widths) <= _BALL_LISTED:
                return clipped(*_box_cell_runs(node, op, spans, widths, ranks))
        return clipped(*_cell_runs(node, lo, hi))
    if isinstance(op, _Distance) and len(node.dims) == 2 and node.order == "morton":
        # each query's cells listed (work: the keys), never one-row boxes cut into Z-order cubes
        # (a cube a cell of their faces); a large rule asked for many queries at once is refused
        # up front (its rows are then listed as points, within the memory budget, or refused)
        cells = (2 * min(op.d, node.dims[0] - 1) + 1) * (2 * min(op.d, node.dims[1] - 1) + 1)  # (≥ the ball's)
        if cells > _BALL_LISTED and m * cells > _BALL_REQUEST:
            raise NoBoxes(f"{op}: {m:,} queries × up to {cells:,} cells")
        runs = _ball_runs(node, op, ranks)  # (non-empty runs of cells that exist when all of them do)
        return RowKeys(m, *runs) if existing >= node.cells else clipped(*runs)
    if isinstance(op, Intersection) and len(node.dims) == 2 and node.order == "morton":
        small = [p for p in op.parts if isinstance(p, _Distance) and _ball(p).shape[0] <= _BALL_LISTED]
        if small:  # the keys are among the ball's cells: those listed, kept where every other part holds
            rest = [p for p in op.parts if p is not small[0]]

            def keep(q, k):
                return np.logical_and.reduce([np.asarray(p.pairs(q, k, node.cells), dtype=bool) for p in rest])

            offsets = _ball(small[0])
            if ranks.size >= _BALL_TABLE_ROWS and node.cells * offsets.shape[0] <= _BALL_TABLE_KEYS:
                table = _ball_table(node, op, lambda r: _listed_cell_runs(node, offsets, r, _coords(r, node.dims),
                                                                          None, keep))
                if table is not None:
                    return clipped(*_table_runs(table, ranks))
            return clipped(*_listed_cell_runs(node, offsets, ranks, _coords(ranks, node.dims), None, keep))
    if isinstance(op, _Distance) and len(node.dims) == 2 and 2 * op.d + 1 <= _MAX_DISTANCE_BOXES:
        r, c = _coords(ranks, node.dims)
        rows = [(dr, op.reach(dr)) for dr in range(-op.d, op.d + 1)]  # one row of cells per Δr
        lo = np.concatenate([np.stack([r + dr, c - e], axis=1) for dr, e in rows])
        hi = np.concatenate([np.stack([r + dr, c + e], axis=1) for dr, e in rows])
        owner, start, stop = _cell_runs(node, lo, hi)
        owner = owner % m
        order = np.lexsort((start, owner))
        return combine([clipped(owner[order], start[order], stop[order])], m, existing, "any")
    if isinstance(op, (Union, Intersection)):
        how = "any" if isinstance(op, Union) else "all"
        return combine([_local_keys(node, p, ranks, existing, classes) for p in op.parts], m, existing, how)
    if isinstance(op, Difference):
        right = combine([_local_keys(node, op.right, ranks, existing, classes)], m, existing, "none")
        return combine([_local_keys(node, op.left, ranks, existing, classes), right], m, existing, "all")
    if isinstance(op, Complement):
        return combine([_local_keys(node, op.operand, ranks, existing, classes)], m, existing, "none")
    if classes and isinstance(op, _Stride):
        return clipped(*_class_keys(node, op.values, ranks))
    if not _has_grid_primitive(op):  # a 1D operand: intervals of raster ranks
        try:
            keys = row_keys(op, ranks, node.cells, limit=_RANK_INTERVALS * max(1, m))
        except TooManyIntervals:
            raise NoBoxes(str(op)) from None
        if node.tile is None and node.order == "rows":  # raster order: a cell's rank is its local token
            return clipped(keys.own, keys.lo, keys.hi)
        # tiles, Morton: each interval of ranks is a few boxes of cells (`run_boxes` in raster order)
        which, lo, hi = run_boxes(keys.lo, keys.hi - 1, node.dims, None)
        owner, start, stop = _cell_runs(node, lo, hi)
        owner = keys.own[which[owner]]
        order = np.lexsort((start, owner))
        return combine([clipped(owner[order], start[order], stop[order])], m, existing, "any")
    raise NoBoxes(str(op))


_BALL_LISTED = 1 << 10  # a distance rule's cells per query listed for any number of queries (Morton) …
_BALL_REQUEST = 1 << 26  # … a larger rule's only while the queries asked × its cells are at most this many
_BALL_CELLS = 1 << 22  # cells of the balls listed at once (`_ball_runs`)


@functools.lru_cache(maxsize=8)
def _ball(op) -> np.ndarray:
    """int64 [cells, 2]: the offsets (Δr, Δc) a distance rule allows, row by row, those that
    reach out of any grid of its shape left out (|Δr| < rows, |Δc| < columns); read-only."""
    rows, cols = op.dims
    dr = np.arange(-min(op.d, rows - 1), min(op.d, rows - 1) + 1, dtype=np.int64)
    reach = np.minimum(np.array([op.reach(int(x)) for x in dr], dtype=np.int64), cols - 1)
    width = 2 * reach + 1
    first = np.cumsum(width) - width
    out = np.stack([np.repeat(dr, width), np.arange(int(width.sum()), dtype=np.int64) - np.repeat(first + reach, width)],
                   axis=1)
    out.setflags(write=False)
    return out


def _ball_runs(node: Grid, op, ranks):
    """(owner, start, stop): the merged runs of local tokens of each query's cells under a
    distance rule, its few cells listed one by one (their tokens by `_cell_tokens`) and sorted
    — in Morton order a one-row box of a few cells is cut into cubes level by level
    (`morton_box_runs`: tens of array passes a box), this is one gather a cell and a sort of
    each query's row of cells, in chunks of `_BALL_CELLS` cells: work linear in the keys. A
    request of at least `_BALL_TABLE_ROWS` queries reads the runs of every cell of the grid,
    listed once (`_ball_table`, for grids of at most `_BALL_TABLE_KEYS` keys): the conditions ask
    for every row a dozen times."""
    offsets = _ball(op)
    if ranks.size >= _BALL_TABLE_ROWS and node.cells * offsets.shape[0] <= _BALL_TABLE_KEYS:
        table = _ball_table(node, op)
        if table is not None:
            return _table_runs(table, ranks)
    return _listed_ball_runs(node, offsets, ranks)


def _listed_ball_runs(node: Grid, offsets, ranks):
    """`_ball_runs` listed for the queries of raster ranks ``ranks``: per query its cells'
    tokens (a cell outside the grid: a token past every other) sorted along the row, a run
    starting where a token is not its predecessor's plus one."""
    return _listed_cell_runs(node, offsets, ranks, _coords(ranks, node.dims), None)


def _listed_cell_runs(node: Grid, offsets, ranks, base, top, keep=None):
    """The runs of the cells base + offset of each query (per axis; with ``top``, only those
    ≤ top), cells outside the grid left out: per query its cells' tokens sorted along the row."""
    r, c = base
    rows, cols = node.dims
    chunk = max(1, _BALL_CELLS // max(1, offsets.shape[0]))
    past = np.int64(node.cells + 1)
    owners, starts, stops = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for s in range(0, ranks.size, chunk):
        rr, cc = r[s:s + chunk, None] + offsets[:, 0], c[s:s + chunk, None] + offsets[:, 1]
        ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
        if top is not None:
            ok &= (rr <= top[0][s:s + chunk, None]) & (cc <= top[1][s:s + chunk, None])
        np.clip(rr, 0, rows - 1, out=rr)
        np.clip(cc, 0, cols - 1, out=cc)
        if keep is not None:  # (query rank, key rank) pairs of the cells kept so far
            at = np.nonzero(ok)
            ok[at] = keep(ranks[s:s + chunk][at[0]], rr[at] * cols + cc[at])
        token = _cell_tokens(node, [rr, cc])
        token[~ok] = past
        token.sort(axis=1)
        first = np.ones(token.shape, dtype=bool)  # a run starts here
        first[:, 1:] = token[:, 1:] != token[:, :-1] + 1
        last = np.ones(token.shape, dtype=bool)  # a run ends here
        last[:, :-1] = first[:, 1:]
        inside = token < past
        own, at = np.nonzero(first & inside)
        owners.append(own + s)
        starts.append(token[own, at])
        stops.append(token[last & inside] + 1)
    return np.concatenate(owners), np.concatenate(starts), np.concatenate(stops)


def _box_cell_runs(node: Grid, op, spans, widths, ranks):
    """`_ball_runs` for a box operand (`axis_spans`) whose boxes hold at most `_BALL_LISTED`
    cells: each query's box listed cell by cell (offsets within the widest box, those past its
    own box left out), from the table of every cell when asked for many queries."""
    if ranks.size >= _BALL_TABLE_ROWS and node.cells * math.prod(widths) <= _BALL_TABLE_KEYS:
        table = _ball_table(node, op, lambda r: _listed_box_runs(node, spans, widths, r))
        if table is not None:
            return _table_runs(table, ranks)
    return _listed_box_runs(node, spans, widths, ranks)


def _listed_box_runs(node: Grid, spans, widths, ranks):
    coords = _coords(ranks, node.dims)
    lo = [first[x] for (first, _), x in zip(spans, coords)]
    hi = [last[x] for (_, last), x in zip(spans, coords)]
    offsets = np.stack(np.meshgrid(*[np.arange(w, dtype=np.int64) for w in widths], indexing="ij"),
                       axis=-1).reshape(-1, 2)
    return _listed_cell_runs(node, offsets, ranks, lo, hi)


_BALL_TABLE_ROWS = 1 << 12  # queries asked at once from which a grid's distance runs are listed for all its cells
_BALL_TABLE_KEYS = 1 << 25  # ... when the grid's cells × the rule's cells are at most this many
_BALL_TABLES: "_LRU[tuple, tuple]" = _LRU(2)


def _ball_table(node: Grid, op, lister=None):
    """(first, start, stop): the runs of `_listed_ball_runs` for every raster rank of the grid,
    rank x's runs at first[x] … first[x + 1] − 1 (start and stop as int32), or None when a
    token does not fit an int32. Kept for the last two (grid, rule) asked."""
    key = (node.dims, node.tile, node.order, op)
    table = _BALL_TABLES.get(key)
    if table is None:
        if node.cells >= 1 << 31:
            return None
        owners, starts, stops = [], [], []
        if lister is None:
            offsets = _ball(op)
            step = max(1, _BALL_CELLS // max(1, offsets.shape[0]))

            def lister(ranks):
                return _listed_ball_runs(node, offsets, ranks)
        else:
            step = _ROWS_AT_ONCE
        for s in range(0, node.cells, step):
            owner, start, stop = lister(np.arange(s, min(node.cells, s + step), dtype=np.int64))
            owners.append(owner + s)
            starts.append(start.astype(np.int32))
            stops.append(stop.astype(np.int32))
        owner = np.concatenate(owners)
        first = np.zeros(node.cells + 1, dtype=np.int64)
        first[1:] = np.cumsum(np.bincount(owner, minlength=node.cells))
        table = (first, np.concatenate(starts), np.concatenate(stops))
        for a in table:
            a.setflags(write=False)
        _BALL_TABLES[key] = table
    return table


def _table_runs(table, ranks):
    """(owner, start, stop) of the queries of raster ranks ``ranks`` from a `_ball_table`."""
    first, start, stop = table
    lo = first[ranks]
    count = first[ranks + 1] - lo
    owner = np.repeat(np.arange(ranks.size, dtype=np.int64), count)
    at = np.arange(owner.size, dtype=np.int64) + np.repeat(lo - (np.cumsum(count) - count), count)
    return owner, start[at].astype(np.int64), stop[at].astype(np.int64)


def morton_run_boxes(lo, hi, dims):
    """(owner, box_lo, box_hi): the boxes of cells (inclusive) whose union is the Morton tokens
    lo[e] … hi[e] of each entry e, exactly and disjointly: the aligned Z-order cubes (cut by
    the grid) that the run holds, from the whole grid down, a cube's first token the count of
    the cells of its earlier siblings (at most 2 · (2^axes − 1) per level)."""
    axes = len(dims)
    lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    if _dense_codes(dims):
        return _dense_run_boxes(lo, hi, dims)
    dims_ = np.array(dims, dtype=np.int64)
    corners = np.array(list(itertools.product((0, 1), repeat=axes)), dtype=np.int64)  # in Z order
    owner = np.flatnonzero(lo <= hi)
    base = np.zeros((owner.size, axes), dtype=np.int64)
    start = np.zeros(owner.size, dtype=np.int64)
    empty = np.zeros((0, axes), dtype=np.int64)
    owners, los, his = [np.zeros(0, dtype=np.int64)], [empty], [empty]
    level = _z_bits(dims)
    while owner.size:
        side = 1 << level
        end = start + _cube_cells(list(base.T), side, dims)  # exclusive
        inside = (start >= lo[owner]) & (end - 1 <= hi[owner]) & (end > start)
        owners.append(owner[inside])
        los.append(base[inside])
        his.append(np.minimum(base[inside] + side - 1, dims_ - 1))
        cut = ~inside & (start <= hi[owner]) & (end - 1 >= lo[owner]) & (end > start)
        half = side >> 1
        child = base[cut][:, None, :] + corners[None, :, :] * half
        cells = _cube_cells([child[:, :, k] for k in range(axes)], half, dims)
        start = (start[cut][:, None] + np.cumsum(cells, axis=1) - cells).reshape(-1)
        owner = np.repeat(owner[cut], corners.shape[0])
        base = child.reshape(-1, axes)
        level -= 1
    return np.concatenate(owners), np.concatenate(los), np.concatenate(his)


def _dense_run_boxes(lo, hi, dims):
    """`morton_run_boxes` where the token is the Z-code (`_dense_codes`): the run split from its
    start into the longest aligned pieces that fit — 2^m codes from a multiple of 2^m are a box,
    of side 2^(L+1) on the r axes whose bits come lowest (the column's first) and 2^L on the
    others (m = axes·L + r) — so a run of whole blocks of a power of two aligned with them is
    one box in one step, not a descent from the whole grid."""
    axes, bits = len(dims), _z_bits(dims)
    owner = np.flatnonzero(lo <= hi)
    start, end = lo[owner], hi[owner] + 1
    owners, bases, sizes = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    while owner.size:
        lowbit = np.where(start > 0, start & -start, 1 << (bits * axes))  # the start's alignment
        size = np.minimum(_floor_log2(lowbit), _floor_log2(end - start))
        owners.append(owner)
        bases.append(start)
        sizes.append(size)
        start = start + (np.int64(1) << size)
        more = start < end
        owner, start, end = owner[more], start[more], end[more]
    owner, base, size = (np.concatenate(x) for x in (owners, bases, sizes))
    base = np.stack(morton_cells(base, dims), axis=1) if base.size else np.zeros((0, axes), dtype=np.int64)
    levels, extra = np.divmod(size, axes)
    side = np.stack([levels + (axes - 1 - k < extra) for k in range(axes)], axis=1)
    return owner, base, base + (np.int64(1) << side) - 1


def _floor_log2(x):
    """⌊log2 x⌋ of positive int64 values (exact: the float's rounding corrected)."""
    out = np.frexp(x.astype(np.float64))[1].astype(np.int64) - 1
    return out - ((np.int64(1) << out) > x)


_CLASS_KEYS = 1 << 22  # stride2d keys listed at most for the rows asked (Grid.row_keys)


def _class_size(op, dims) -> int:
    """The most keys a query has in one residue class of the stride2d's inside ``op``."""
    sizes = [math.prod(-(-d // s) for d, s in zip(dims, p.values)) for p in _nodes(op) if isinstance(p, _Stride)]
    return max(sizes, default=0)


def _cell_tokens(node: Grid, coords):
    """The local tokens of cells ``coords`` (frame first) in the grid's token order."""
    if node.order == "morton" and node.cells <= _RANK_TABLE:  # a gather from the inverse of the rank table
        return _morton_tokens(node.dims)[_raster(coords, node.dims)]
    if node.order == "morton":
        return morton_rank(coords, node.dims)
    if node.tile is None:
        return _raster(coords, node.dims)
    tiles = tuple(d // t for d, t in zip(node.dims, node.tile))
    outer = _raster([x // t for x, t in zip(coords, node.tile)], tiles)
    return outer * math.prod(node.tile) + _raster([x % t for x, t in zip(coords, node.tile)], node.tile)


def _class_keys(node: Grid, mods, ranks):
    """(owner, start, stop): the cells of each query's residue class (y ≡ x mod s per axis),
    listed as merged runs of local tokens: Π ⌈d/s⌉ per query at most."""
    coords = _coords(ranks, node.dims)
    first = [x % s for x, s in zip(coords, mods)]
    counts = [(d - 1 - f) // s + 1 for f, d, s in zip(first, node.dims, mods)]
    total = functools.reduce(np.multiply, counts, np.ones(ranks.size, dtype=np.int64))
    owner = np.repeat(np.arange(ranks.size), total)
    local = np.arange(owner.size, dtype=np.int64) - np.repeat(np.cumsum(total) - total, total)
    cells = [None] * len(mods)
    for a in range(len(mods) - 1, -1, -1):  # the last axis fastest
        c = counts[a][owner]
        cells[a] = first[a][owner] + (local % c) * mods[a]
        local = local // c
    token = _cell_tokens(node, cells)
    order = np.lexsort((token, owner))
    return _merged(owner[order], token[order], token[order] + 1)


_MAX_CLASS_TERMS = 64  # intersections counted at most for one strided operand (inclusion–exclusion)


def _class_degrees(node: Grid, op, ranks: np.ndarray, existing: int, extra=None, within=None) -> np.ndarray:
    """int64 [ranks.size]: the keys of the query cells ``ranks`` under an operand holding
    stride2d, without listing them. A query's stride2d keys are the cells in its residue
    class per axis, so an intersection of stride2d's and box-form parts (window2d, natten,
    causal, …) is the box-form part's runs of tokens, each a few boxes of cells, counted per
    box as a product of arithmetic progressions; unions, differences and complements are
    inclusion–exclusion over such intersections, each cut by ``extra`` (RowKeys over local
    tokens, or None) and to the local token intervals ``within`` (every row's; None: the
    existing cells). Raises NoBoxes without that form."""
    coords = _coords(ranks, node.dims)
    within = ((0, existing),) if within is None else within
    terms = [0]

    def count(conj, mods):
        todo, plain = list(conj), []
        while todo:
            p = todo.pop()
            if isinstance(p, Intersection):
                todo.extend(p.parts)
            elif isinstance(p, _Stride):
                mods = [math.lcm(a, b) for a, b in zip(mods, p.values)]
            else:
                plain.append(p)
        mixed = next((p for p in plain if _has_stride(p)), None)
        if mixed is None:
            terms[0] += 1
            if terms[0] > _MAX_CLASS_TERMS:
                raise NoBoxes("too many intersections to count")
            return _in_classes(node, plain, mods, coords, ranks, existing, extra, within)
        others = [p for p in plain if p is not mixed]
        if isinstance(mixed, Union):
            strided = [p for p in mixed.parts if _has_stride(p)]
            rest = [p for p in mixed.parts if not _has_stride(p)]
            parts = strided + ([rest[0] if len(rest) == 1 else Union(tuple(rest))] if rest else [])
            first, later = parts[0], (parts[1] if len(parts) == 2 else Union(tuple(parts[1:])))
            return count(others + [first], mods) + count(others + [later], mods) - count(others + [first, later], mods)
        if isinstance(mixed, Complement):
            return count(others, mods) - count(others + [mixed.operand], mods)
        if isinstance(mixed, Difference):
            return count(others + [mixed.left], mods) - count(others + [mixed.left, mixed.right], mods)
        raise NoBoxes(str(mixed))

    return count([op], [1] * len(node.dims))


def _in_classes(node: Grid, plain: list, mods: list, coords, ranks, existing: int, extra, within) -> np.ndarray:
    """The keys of each query in the intersection of ``plain`` (box-form parts), ``extra``,
    the local token intervals ``within`` and its residue classes mod ``mods`` per axis (1:
    any coordinate)."""
    from .analysis.rowsets import RowKeys, combine

    inner = All() if not plain else plain[0] if len(plain) == 1 else Intersection(tuple(plain))
    spans = axis_spans(inner, node.dims) if extra is None else None
    if spans is not None:  # a box per query: cut by the boxes of the allowed cells, no runs
        _, lo, hi = _interval_boxes(node, within)
        out = np.zeros(ranks.size, dtype=np.int64)
        for box_lo, box_hi in zip(lo, hi):
            total = np.ones(ranks.size, dtype=np.int64)
            for a, ((first, last), x, s) in enumerate(zip(spans, coords, mods)):
                total *= _in_class(np.maximum(first[x], box_lo[a]), np.minimum(last[x], box_hi[a]), x, s)
            out += total
        return out
    m = ranks.size
    keys = _local_keys(node, inner, ranks, existing)
    if within != ((0, existing),):
        own = np.repeat(np.arange(m), len(within))
        starts, stops = (np.tile(np.array(v, dtype=np.int64), m) for v in zip(*within)) if within else (own, own)
        keys = combine([keys, RowKeys(m, own, starts, stops)], m, existing, "all")
    if extra is not None:
        keys = combine([keys, extra], m, existing, "all")
    if all(s == 1 for s in mods):
        return keys.degrees()
    runs = morton_run_boxes if node.order == "morton" else functools.partial(run_boxes, tile=node.tile)
    which, lo, hi = runs(keys.lo, keys.hi - 1, dims=node.dims)
    own = keys.own[which]
    total = np.ones(own.size, dtype=np.int64)
    for a, s in enumerate(mods):
        total *= _in_class(lo[:, a], hi[:, a], coords[a][own], s)
    out = np.zeros(ranks.size, dtype=np.int64)
    np.add.at(out, own, total)
    return out


def _in_class(lo, hi, x, s: int):
    """#{y ∈ [lo, hi] : y ≡ x (mod s)} (0 for an empty range)."""
    if s == 1:
        return np.maximum(hi - lo + 1, 0)
    return np.maximum((hi - x) // s - (lo - 1 - x) // s, 0)


@functools.lru_cache(maxsize=16)
def _interval_boxes(node: Grid, within: tuple):
    """The boxes of cells whose union is the local tokens of the intervals ``within`` (the
    existing cells, or the columns a probe allows): a few per interval in raster and tile
    order, a few per level in Morton order."""
    lo = np.array([a for a, _ in within], dtype=np.int64)
    hi = np.array([b for _, b in within], dtype=np.int64) - 1
    if node.order == "morton":
        return morton_run_boxes(lo, hi, node.dims)
    return run_boxes(lo, hi, node.dims, node.tile)


def _merge_grids(pattern):
    """A union, intersection or difference of grids of one frame (dims, offset, order, tile:
    a file's layers) as one grid of the combined operands — the same pairs — else itself."""
    if isinstance(pattern, (Union, Intersection, Difference)):
        parts = [_merge_grids(p) for p in pattern.children()]
        if all(isinstance(p, Grid) for p in parts):
            frames = {(p.dims, p.offset, p.order, p.tile) for p in parts}
            if len(frames) == 1:
                first = parts[0]
                return Grid(first.dims, first.offset, first.order, first.tile,
                            pattern.with_children(tuple(p.operand for p in parts)))
        return pattern.with_children(tuple(parts))
    return pattern


def _by_classes(grid) -> bool:
    """Whether a grid is counted by `_class_degrees`: stride2d inside, or Morton order (its
    boxes counted against the existing cells' cubes, not cut into runs of tokens)."""
    return grid.order == "morton" or _has_stride(grid.operand)


def _strided_grid(pattern):
    """(grid, others): ``pattern`` is a grid counted by its classes (`_by_classes`), or its
    intersection with 1D patterns (no grid inside: rows(…), cols(…), causal, as the
    conditions' probes ask); else None."""
    if isinstance(pattern, Grid):
        return (pattern, []) if _by_classes(pattern) else None
    if isinstance(pattern, Intersection):
        parts, todo = [], list(pattern.parts)
        while todo:  # nested intersections flattened
            p = todo.pop()
            if isinstance(p, Intersection):
                todo.extend(p.parts)
            else:
                parts.append(p)
        grids = [p for p in parts if isinstance(p, Grid)]
        others = [p for p in parts if not isinstance(p, Grid)]
        if len(grids) == 1 and _by_classes(grids[0]) and not any(
                isinstance(q, Grid) for p in others for q in _nodes(p)):
            return grids[0], others
    return None


def _tree_degrees(pattern, rows, n: int) -> np.ndarray:
    """The keys of ``rows`` of a tree of grids: from its runs, or (stride2d inside, Morton
    order) a grid's classes and boxes counted (`_class_degrees`), cut by the 1D patterns it
    is intersected with."""
    from .analysis.rowsets import RowKeys, combine, row_keys

    if isinstance(pattern, Grid) and axis_spans(pattern.operand, pattern.dims) is not None:
        return _box_degrees(pattern, rows, n)
    if isinstance(pattern, Grid) and isinstance(pattern.operand, _Distance) and len(pattern.dims) == 2:
        return _box_degrees(pattern, rows, n)
    found = _strided_grid(_merge_grids(pattern))
    if found is None:
        return _tree_keys(pattern, rows, n).degrees()
    grid, others = found
    existing = int(np.clip(n - grid.offset, 0, grid.cells))
    inside = np.flatnonzero((rows >= grid.offset) & (rows < grid.offset + existing))
    within = ((0, existing),)  # the keys allowed, as local token intervals (cols(…): the same for every row)
    for other in others:
        if isinstance(other, Rows):
            inside = inside[R.index_member(other.indices, rows[inside])]
        elif isinstance(other, Cols):
            within = _meet_intervals(within, [(lo - grid.offset, hi - grid.offset) for lo, hi in other.indices.intervals])
    extra = None  # the other 1D parts' keys of these rows, over the grid's local tokens
    for other in others:
        if not isinstance(other, (Rows, Cols)):
            keys = row_keys(other, rows[inside], n)
            lo, hi = np.clip(keys.lo - grid.offset, 0, existing), np.clip(keys.hi - grid.offset, 0, existing)
            keep = lo < hi
            keys = RowKeys(inside.size, keys.own[keep], lo[keep], hi[keep])
            extra = keys if extra is None else combine([extra, keys], inside.size, existing, "all")
    out = np.zeros(rows.size, dtype=np.int64)
    ranks = grid._ranks(rows[inside], n)[1]
    out[inside] = _class_degrees(grid, grid.operand, ranks, existing, extra, within)
    return out


def _box_degrees(node: Grid, rows, n: int) -> np.ndarray:
    """The keys of ``rows`` of a grid whose operand is a box per query (`axis_spans`: natten,
    window2d, chunk2d, …) or a few disjoint boxes (euclid, manhattan: a row of cells per Δr) in
    closed form: the boxes' cells, less their cells among the tokens that do not exist (at or
    beyond n: a few boxes of cells, `_interval_boxes`) — no runs listed, any token order."""
    dims = node.dims
    existing = int(np.clip(n - node.offset, 0, node.cells))
    inside = np.flatnonzero((rows >= node.offset) & (rows < node.offset + existing))
    coords = _coords(node._ranks(rows[inside], n)[1], dims)
    spans = axis_spans(node.operand, dims)
    if spans is not None:
        boxes = [([first[x] for (first, _), x in zip(spans, coords)], [last[x] for (_, last), x in zip(spans, coords)])]
    else:  # euclid / manhattan: one row of cells per Δr, disjoint boxes
        row, col = coords
        boxes = [([row + dr, col - e], [row + dr, col + e]) for dr in range(-node.operand.d, node.operand.d + 1)
                 for e in [node.operand.reach(dr)]]
        boxes = [([np.maximum(a, 0) for a in lo], [np.minimum(b, d - 1) for b, d in zip(hi, dims)]) for lo, hi in boxes]
    gone = _interval_boxes(node, ((existing, node.cells),))[1:] if existing < node.cells and inside.size else ((), ())
    degrees = np.zeros(inside.size, dtype=np.int64)
    for lo, hi in boxes:
        degrees += math.prod(np.maximum(b - a + 1, 0) for a, b in zip(lo, hi))
        for glo, ghi in zip(*gone):  # (gone: none where no query is inside)
            if all(g <= b.max() and a.min() <= g2 for g, g2, a, b in zip(glo, ghi, lo, hi)):
                degrees -= math.prod(np.maximum(np.minimum(b, g2) - np.maximum(a, g) + 1, 0)
                                     for a, b, g, g2 in zip(lo, hi, glo, ghi))
    out = np.zeros(rows.size, dtype=np.int64)
    out[inside] = degrees
    return out


def _meet_intervals(a, b) -> tuple:
    """The intersection of two sorted lists of disjoint half-open intervals."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def grid_row_keys(node: Grid, rows, n: int, classes: bool = False):
    """RowKeys of the query tokens ``rows`` of ``node`` at ``n`` (tokens), from coordinate
    boxes (with ``classes``, stride2d's keys listed); raises NoBoxes when its operand has no
    such form."""
    from .analysis.rowsets import RowKeys

    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    existing = int(np.clip(n - node.offset, 0, node.cells))
    inside = np.flatnonzero((rows >= node.offset) & (rows < node.offset + existing))
    _, ranks = node._ranks(rows[inside], n)
    keys = _local_keys(node, node.operand, ranks, existing, classes)
    return RowKeys(rows.size, inside[keys.own], keys.lo + node.offset, keys.hi + node.offset)


def _tree_keys(pattern, rows, n: int):
    """RowKeys of a union, intersection or difference of grids (NoBoxes otherwise)."""
    from .analysis.rowsets import combine

    if isinstance(pattern, Grid):
        return grid_row_keys(pattern, rows, n)
    if isinstance(pattern, (Union, Intersection)):
        how = "any" if isinstance(pattern, Union) else "all"
        return combine([_tree_keys(p, rows, n) for p in pattern.parts], rows.size, n, how)
    if isinstance(pattern, Difference):
        right = combine([_tree_keys(pattern.right, rows, n)], rows.size, n, "none")
        return combine([_tree_keys(pattern.left, rows, n), right], rows.size, n, "all")
    raise NoBoxes(str(pattern))


def _grids(pattern):
    """The grids of a union / intersection / difference of grids, or None for another tree."""
    if isinstance(pattern, Grid):
        return [pattern]
    if isinstance(pattern, (Union, Intersection, Difference)):
        parts = [_grids(p) for p in pattern.children()]
        return None if any(p is None for p in parts) else [g for p in parts for g in p]
    return None


def grid_degrees(pattern, n: int):
    """int64 [n]: the exact keys of every query row of a grid — or of a union, intersection
    or difference of grids (the union of a file's layers) — from coordinate boxes, in time
    the grid's rows × their runs; None when ``pattern`` is no such tree or an operand has
    no form as boxes (the counter then reads the listed keys)."""
    grids = _grids(pattern)
    if grids is None:  # a grid holding stride2d cut by 1D patterns is counted from its classes
        found = _strided_grid(_merge_grids(pattern))
        if found is None:
            return None
        grids = [found[0]]
    degrees = np.zeros(n, dtype=np.int64)
    first = min(g.offset for g in grids)
    end = min(n, max(g.offset + g.cells for g in grids))  # no grid holds a row outside
    try:
        for start in range(first, end, _ROWS_AT_ONCE):
            rows = np.arange(start, min(end, start + _ROWS_AT_ONCE), dtype=np.int64)
            degrees[rows] = _tree_degrees(pattern, rows, n)
    except NoBoxes:
        return None
    return degrees


@functools.lru_cache(maxsize=8)
def run_table(node: Grid, n: int):
    """(lo, hi) int64 [existing cells, slots]: the runs of tokens of each query cell's row
    (local row index; empty slots lo = hi = 0), or None without a box form or when there
    are more than _RUN_ATOMS slots (the keys are listed then)."""
    existing = int(np.clip(n - node.offset, 0, node.cells))
    los, his, width = [], [], 0
    try:
        if existing > _RUN_PROBES:  # a few rows spread over the grid first: one with too many runs decides
            probe = np.linspace(0, existing - 1, _RUN_PROBES).astype(np.int64) + node.offset
            if int(grid_row_keys(node, probe, n).counts().max(initial=0)) > _RUN_ATOMS:
                return None
        for start in range(0, existing, _ROWS_AT_ONCE):
            rows = np.arange(start, min(existing, start + _ROWS_AT_ONCE), dtype=np.int64) + node.offset
            keys = grid_row_keys(node, rows, n)
            per = keys.counts()
            width = max(width, int(per.max(initial=0)))
            if width > _RUN_ATOMS or existing * width > _RUN_TABLE:
                return None
            slot = np.arange(keys.own.size) - np.repeat(np.cumsum(per) - per, per)
            lo = np.zeros((rows.size, _RUN_ATOMS), dtype=np.int64)
            hi = np.zeros((rows.size, _RUN_ATOMS), dtype=np.int64)
            lo[keys.own, slot], hi[keys.own, slot] = keys.lo, keys.hi
            los.append(lo)
            his.append(hi)
    except NoBoxes:
        return None
    if not los:
        return np.zeros((0, 0), dtype=np.int64), np.zeros((0, 0), dtype=np.int64)
    return np.concatenate(los)[:, :width], np.concatenate(his)[:, :width]


@dataclass(frozen=True)
class GridRun(R.Atom):
    """Slot ``slot`` of a grid's runs (`run_table`): one interval of keys per row (empty
    where the row has fewer runs, or lies outside the grid)."""

    grid: Grid
    slot: int
    kind: ClassVar[str] = "interval"

    def bounds(self, rows, n):
        lo_table, hi_table = run_table(self.grid, n)
        rows = np.asarray(rows, dtype=np.int64)
        local = rows - self.grid.offset
        inside = (local >= 0) & (local < lo_table.shape[0])
        at = np.where(inside, local, 0)
        lo = np.where(inside, lo_table[at, self.slot], 0)
        hi = np.where(inside, hi_table[at, self.slot], 0)
        return lo, hi


def grids_apart(pattern):
    """(``pattern`` with every grid reached through | & - ~ from its root replaced by none,
    the row ranges [lo, hi) of tokens those grids hold), or None when no grid is reached.
    The rows outside the ranges see no grid, so there the pattern is the one without them:
    a 1D pattern combined with grids is counted as itself, and only the grids' rows with
    the grids (the exact counter's split; a grid holds few rows of a long sequence)."""
    ranges = []

    def walk(p):
        if isinstance(p, Grid):
            ranges.append((p.offset, p.offset + p.cells))
            return Nothing()
        if isinstance(p, (Union, Intersection, Difference, Complement)):
            return p.with_children(tuple(walk(c) for c in p.children()))
        return p

    rest = walk(pattern)
    return (rest, ranges) if ranges else None
