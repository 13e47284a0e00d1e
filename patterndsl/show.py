"""`patterndsl show`: the mask drawn in the terminal, one panel per layer and head.

Small masks are drawn pair by pair (each pair two characters wide, so the
picture is square). Larger ones are downsampled: each character covers a
rectangle of pairs and is shaded by the fraction of them that are connected
(any connection at all shows). The mask is streamed block of rows by block of
rows, so drawing never holds the n × n mask; beyond EXACT_LIMIT the rows are
sampled (eight per row of characters, down to one at the largest n, a few rows
evaluated at a time) and the density is marked as an estimate. Drawing work stays
bounded for drawn keys too (bernoulli's n a row): rows are then counted on column samples,
and sampled below EXACT_LIMIT as well when all n rows would cost more than _EXACT_ELEMENTS.
"""
from __future__ import annotations

import numpy as np

from .errors import Diagnostic, SpatError
from .ir import IndexSet
from .layout import FULL, holds
from .reference import AtLeast, evaluate, require_memory

EXACT_LIMIT = 1 << 15  # above this n, rows are sampled
MAX_N = 1 << 26
_SHADES = "░▒▓"
_BYTES_PER_EVALUATED_COLUMN = 32  # a row's index arrays and the predicates' temporaries (measured: 31)


def _cell_counts(pattern, n: int, rows: int, cols: int, sample: bool, elements: int = 1 << 22):
    """Per cell: (connected pairs, pairs looked at), estimated (weighted) when sampled, and the
    same unweighted; the totals (density: connected / looked) and the rows looked at.

    Each query row looked at is counted per column bin from the pattern's row structure
    (`_row_bin_counts`: its intervals, progressions and points, never the n keys of the row).
    Sampled (n beyond EXACT_LIMIT): evenly spaced rows of every bin, plus the rows the
    pattern singles out (the ends of its index lists: `global(0..8)`'s rows show however
    thin), each weighted by the rows it stands for, so the density stays an unbiased estimate."""
    col_edges = (np.arange(cols + 1) * n) // cols
    row_edges = (np.arange(rows + 1) * n) // rows
    counter = _RowCounter(pattern, n)
    counter.use_columns(cols)
    sample = sample or n * counter.row_cost(cols) > _EXACT_ELEMENTS  # every row would cost too much
    if sample:
        per_bin = int(np.clip(elements // (rows * counter.row_cost(cols)), 1, _MAX_SAMPLED_ROWS_PER_BIN))
        regular = np.unique(np.concatenate([np.linspace(lo, hi - 1, per_bin).astype(np.int64)
                                            for lo, hi in zip(row_edges[:-1], row_edges[1:])]))
        special = _singled_out_rows(pattern, n)
        regular = np.setdiff1d(regular, special, assume_unique=True)
        picks = np.concatenate([special, regular])
        weights = np.ones(picks.size, dtype=np.float64)
        bins = np.searchsorted(row_edges, picks, side="right") - 1
        held = np.bincount(bins[special.size:], minlength=rows)  # regular rows per bin
        fixed = np.bincount(bins[:special.size], minlength=rows)  # singled-out rows per bin
        stands_for = (np.diff(row_edges) - fixed) / np.maximum(held, 1)
        weights[special.size:] = stands_for[bins[special.size:]]
    else:
        picks = np.arange(n, dtype=np.int64)
        weights = None
    counts = np.zeros((rows, cols), dtype=np.float64 if sample else np.int64)
    raw = np.zeros((rows, cols), dtype=np.int64)  # unweighted: full means every row looked at is full
    seen = np.zeros(rows, dtype=np.int64)  # query rows evaluated per row bin
    weight_seen = np.zeros(rows, dtype=np.float64)
    step = max(1, _ELEMENTS_PER_CHUNK // counter.row_cost(cols))
    for start in range(0, picks.size, step):
        query = picks[start:start + step]
        per_col = counter.bin_counts(query, col_edges)
        row_bin = _bin_of(query, row_edges)
        flat = (row_bin[:, None] * cols + np.arange(cols)).reshape(-1)
        raw += np.bincount(flat, weights=per_col.reshape(-1), minlength=rows * cols).astype(np.int64).reshape(rows, cols)
        seen += np.bincount(row_bin, minlength=rows)
        if sample:
            w = weights[start:start + step]
            counts += np.bincount(flat, weights=(per_col * w[:, None]).reshape(-1), minlength=rows * cols).reshape(rows, cols)
            weight_seen += np.bincount(row_bin, weights=w, minlength=rows)
    widths = np.diff(col_edges)
    capacity = seen[:, None] * widths[None, :]
    if not sample:
        return raw, capacity, raw, capacity, int(raw.sum()), n * n, n, False
    # the estimated fraction per cell, as (weighted count, weighted capacity)
    weighted_capacity = weight_seen[:, None] * widths[None, :]
    total = float(counts.sum())
    return counts, weighted_capacity, raw, capacity, total, float(weight_seen.sum()) * n, int(picks.size), True


_MAX_SAMPLED_ROWS_PER_BIN = 64
_EXACT_ELEMENTS = 1 << 27  # below EXACT_LIMIT too, rows are sampled when all n would cost more
_ELEMENTS_PER_CHUNK = 1 << 20
_MAX_SINGLED_OUT = 1 << 12  # rows singled out by index lists, sampled besides the regular ones
_COLUMN_SAMPLES = 256  # columns per cell evaluated where the row structure does not count a row


def _bin_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin b with edges[b] ≤ value < edges[b + 1] of each value, for edges (b · n) // bins
    (a searchsorted without the search: b is ⌊value · bins / n⌋ or one more)."""
    bins = edges.size - 1
    n = int(edges[-1])
    guess = np.minimum(values * bins // n, bins - 1)
    return guess + ((guess < bins - 1) & (edges[np.minimum(guess + 1, bins)] <= values))


def _singled_out_rows(pattern, n: int) -> np.ndarray:
    """Sorted distinct rows at the ends of the index lists in ``pattern`` (global(R)'s R, …),
    at most _MAX_SINGLED_OUT of them."""
    found, stack, seen = set(), [pattern], set()
    while stack and len(found) < _MAX_SINGLED_OUT:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for indices in node.index_sets():
            for lo, hi in indices.intervals[:_MAX_SINGLED_OUT]:
                found.update(r for r in (lo, hi - 1) if 0 <= r < n)
        stack.extend(node.children())
    return np.array(sorted(found)[:_MAX_SINGLED_OUT], dtype=np.int64)


def drawn_keys_per_row(formula, n: int) -> int:
    """The keys a row's point atoms list (bernoulli: n, random(r): r), from its row
    structure (an analysis.counts.Formula, or None)."""
    return 0 if formula is None else sum(a.width(n) for a in formula.atoms["points"])


class _RowCounter:
    """Per query row, the keys in each column bin, from the row structure: the row's keys are
    cut into segments at the interval atoms' ends and the bins' edges, each segment counted in
    closed form (as the exact counter does, patterndsl/analysis/counts.py), point atoms
    corrected key by key. Rows the structure cannot count in closed form (several periodic
    atoms with a large common period, or a node without a row structure) are evaluated on
    _COLUMN_SAMPLES evenly spaced columns per bin: exact for bins that narrow, else estimated."""

    def __init__(self, pattern, n: int):
        from .analysis.counts import Formula

        self.pattern, self.n = pattern, n
        self.estimated = False
        try:
            self.formula = Formula(pattern, n)
        except NotImplementedError:
            self.formula = None
        self.drawn = drawn_keys_per_row(self.formula, n)

    def use_columns(self, cols: int) -> None:
        """Count rows from column samples when listing their drawn keys (bernoulli's n a row,
        random(r)'s r) would cost more than the samples: bernoulli(1, 4) at n = 2^26 listed
        2^26 keys per row looked at."""
        if self.formula is not None and self.drawn > (cols + 1) * _COLUMN_SAMPLES:
            self.formula = None

    def row_cost(self, cols: int) -> int:
        """About the array entries one row costs (for chunking and sampling)."""
        if self.formula is None:
            return (cols + 1) * _COLUMN_SAMPLES + self.n // 8
        atoms = self.formula.atoms
        cost = cols + 3 + 2 * len(atoms["interval"]) + sum(a.width(self.n) for a in atoms["points"])
        return cost << min(len(atoms["periodic"]), 8) if len(atoms["periodic"]) > 1 else cost

    def bin_counts(self, rows: np.ndarray, col_edges: np.ndarray) -> np.ndarray:
        """int64 [len(rows), bins]: the keys of each row in each bin [col_edges[b], col_edges[b+1])."""
        if self.formula is None:
            return self._sampled(rows, col_edges)
        counts, undecided = self._structural(rows, col_edges)
        if undecided.any():
            counts[undecided] = self._sampled(rows[undecided], col_edges)
        return counts

    def _sampled(self, rows, col_edges):
        """Bin counts from evaluating the predicate on a few columns per bin (every column of a
        bin no wider than _COLUMN_SAMPLES)."""
        from .reference import index_dtype

        n, bins = self.n, col_edges.size - 1
        widths = np.diff(col_edges)
        take = np.minimum(widths, _COLUMN_SAMPLES)
        if np.any(take < widths):
            self.estimated = True
        columns = np.concatenate([lo + (np.arange(t) * w) // max(t, 1)
                                  for lo, w, t in zip(col_edges[:-1], widths, take)]).astype(np.int64)
        dtype = index_dtype(n)
        out = np.zeros((rows.size, bins), dtype=np.int64)
        step = max(1, (1 << 20) // max(1, n // 8 + columns.size))
        for start in range(0, rows.size, step):
            i = rows[start:start + step].astype(dtype).reshape(-1, 1)
            hit = np.asarray(self.pattern.predicate(i, columns.astype(dtype).reshape(1, -1), n), dtype=bool)
            hit = np.broadcast_to(hit, (i.shape[0], columns.size))
            hits = np.add.reduceat(hit.astype(np.int64), np.concatenate([[0], np.cumsum(take)[:-1]]), axis=1)
            hits = np.where(take[None, :] > 0, hits, 0)
            # scale each bin's hits by the columns each sample stands for (exact when take == width)
            out[start:start + step] = np.where(take == widths, hits,
                                               np.rint(hits * widths / np.maximum(take, 1)).astype(np.int64))
        return out

    def _structural(self, rows, col_edges):
        from .analysis.counts import enumerated_segment_counts, progression_count as _progression_count

        formula, n = self.formula, self.n
        B, bins = rows.size, col_edges.size - 1
        intervals = [a.bounds(rows, n) for a in formula.atoms["interval"]]
        periodic = [a.progression(rows, n) for a in formula.atoms["periodic"]]
        point_atoms = formula.atoms["points"]
        cuts = [np.broadcast_to(col_edges.astype(np.int64), (B, col_edges.size))]
        cuts += [np.stack([lo, hi], axis=1) for lo, hi in intervals]
        cuts = np.sort(np.concatenate(cuts, axis=1), axis=1)
        seg_lo, seg_hi = cuts[:, :-1], cuts[:, 1:]
        length = seg_hi - seg_lo
        env = {("interval", k): (lo[:, None] <= seg_lo) & (seg_lo < hi[:, None])
               for k, (lo, hi) in enumerate(intervals)}
        for k in range(len(point_atoms)):
            env[("points", k)] = False

        def with_periodic(values):
            return {**env, **{("periodic", k): v for k, v in enumerate(values)}}

        def column(a):
            return a[:, None] if isinstance(a, np.ndarray) else a

        undecided = np.zeros(B, dtype=bool)
        P = len(periodic)
        if P == 0:
            seg = np.where(np.broadcast_to(formula.evaluate(env), seg_lo.shape), length, 0)
        elif P == 1:
            m, a, c = periodic[0]
            hits = _progression_count(seg_lo, seg_hi, m, column(a), c)
            on = np.broadcast_to(formula.evaluate(with_periodic([True])), seg_lo.shape)
            off = np.broadcast_to(formula.evaluate(with_periodic([False])), seg_lo.shape)
            seg = np.where(on, hits, 0) + np.where(off, length - hits, 0)
        else:
            seg, todo = enumerated_segment_counts(formula, with_periodic, periodic, seg_lo, seg_hi, length > 0)
            if todo.any():
                import math

                lcm = math.lcm(*(m for m, _, _ in periodic))
                if lcm <= 4096:  # by the residues mod the common period, in closed form
                    extra = np.zeros(seg_lo.shape, dtype=np.int64)
                    for rho in range(lcm):
                        at = [(rho - column(a)) % m < c for m, a, c in periodic]
                        hits = -((rho - seg_hi) // lcm) + ((rho - seg_lo) // lcm)
                        extra += np.where(np.broadcast_to(formula.evaluate(with_periodic(at)), seg_lo.shape), hits, 0)
                    seg += np.where(todo, extra, 0)
                else:
                    undecided = todo.any(axis=1)
        # each segment lies in one bin (the bins' edges are cuts)
        seg_bin = _bin_of(np.minimum(seg_lo, n - 1), col_edges)
        flat = (np.arange(B)[:, None] * bins + seg_bin).reshape(-1)
        out = np.bincount(flat, weights=seg.reshape(-1), minlength=B * bins)
        out = np.rint(out).astype(np.int64).reshape(B, bins)
        if point_atoms:
            out += self._point_corrections(rows, intervals, periodic, col_edges)
        return out, undecided

    def _point_corrections(self, rows, intervals, periodic, col_edges):
        """F(i, j*) − F_without_points(i, j*) for every distinct point j* of each row, per bin."""
        from .analysis.counts import point_pair_changes

        formula, n = self.formula, self.n
        B, bins = rows.size, col_edges.size - 1
        lists = [a.points(rows, n) for a in formula.atoms["points"]]
        local, cols, change = point_pair_changes(formula, lists, intervals, periodic, n)
        key_bin = _bin_of(cols, col_edges)
        return np.bincount(local * bins + key_bin, weights=change, minlength=B * bins).astype(np.int64).reshape(B, bins)


def _panel_lines(pattern, n: int, width: int) -> tuple[list[str], float, str]:
    inner = max(8, width - 2)
    if 2 * n <= inner:  # exact: every pair drawn, two characters wide
        mask = evaluate(pattern, np.arange(n), n)
        body = ["".join("██" if bit else "  " for bit in row) for row in mask]
        count = int(mask.sum())
        return body, count / (n * n), f"{count:,} of {n * n:,} pairs"
    cols = min(n, inner)
    rows = max(1, min(n, (cols + 1) // 2))  # a character is about twice as tall as wide
    counts, capacity, raw, raw_capacity, total, looked, rows_looked, sample = _cell_counts(
        pattern, n, rows, cols, n > EXACT_LIMIT)
    body = []
    for count_row, capacity_row, raw_row, raw_cap_row in zip(counts, capacity, raw, raw_capacity):
        chars = []
        for count, cap, hits, most in zip(count_row, capacity_row, raw_row, raw_cap_row):
            if hits == 0:
                chars.append(" ")
            elif hits == most:
                chars.append("█")
            else:  # any connection at all shows
                chars.append(_SHADES[max(0, min(2, int(3 * count / cap)))])
        body.append("".join(chars))
    density = total / looked
    if sample:
        return body, density, f"estimated from {rows_looked:,} sampled rows"
    return body, density, f"{total:,} of {n * n:,} pairs"


def render(compiled, width: int = 80) -> str:
    """Every layer and head of ``compiled`` drawn as text (heads with the same pattern share a panel)."""
    n = compiled.n
    if n > MAX_N:
        raise SpatError(Diagnostic(f"show draws masks up to n = {MAX_N:,}; n = {n:,} is larger"))
    from .grid import Grid

    grids = any(holds(p, Grid) for layer in compiled.patterns for p in layer)  # their key lists come on top
    require_memory(f"drawing n = {n:,} (whole rows of the mask, evaluated one at a time)",
                   (AtLeast if grids else int)(n * _BYTES_PER_EVALUATED_COLUMN), compiled.memory_budget,
                   "use a smaller --n")
    _require_inversion_memory(compiled)
    out = []
    for layer, patterns in enumerate(compiled.patterns):
        groups: dict = {}
        for head, pattern in enumerate(patterns):
            groups.setdefault(pattern, []).append(head)
        for pattern, heads in groups.items():
            body, density, detail = _panel_lines(pattern, n, width)
            where = [f"layer {layer}"] if compiled.layers > 1 else []
            if compiled.heads > 1:
                where.append("heads " + head_ranges(heads) if len(heads) > 1 else f"head {heads[0]}")
            shown = f"{100 * density:.2f}" if density == 0 or density >= 5e-5 else f"{100 * density:.2g}"
            title = " · ".join(where + [f"n = {n:,}", f"density {shown}% ({detail})"])
            out.append(title)
            out.append(f"  {_short(str(pattern), width - 2)}")
            span = len(body[0]) if body else 0
            out.append("┌" + "─" * span + "┐")
            out.extend("│" + line + "│" for line in body)
            out.append("└" + "─" * span + "┘")
            out.append("")
    if 2 * n > max(8, width - 2):  # downsampled
        out.append("each character covers a rectangle of pairs: █ all connected, ▓ ▒ ░ fewer, blank none")
    return "\n".join(out).rstrip("\n") + "\n"


def _require_inversion_memory(compiled) -> None:
    """Refuse up front a pattern whose transpose(random) would be inverted over the budget."""
    from .layout import inversion_memory

    n = compiled.n
    for pattern in dict.fromkeys(p for layer in compiled.patterns for p in layer):
        require_memory(lambda: f"drawing {_short(str(pattern), 60)} at n = {n:,} (inverting the keys of its "
                               f"transpose(random): all n rows drawn and sorted once)",
                       inversion_memory(pattern, n), compiled.memory_budget, "use a smaller --n")


def head_ranges(heads: list[int]) -> str:
    """Head indices as .spat index-list text: [0, 1, 2, 5] → "0..3, 5"."""
    return str(IndexSet.from_indices(heads))


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


# ---- pictures (show --png) -------------------------------------------------------

PNG_DENSE_LIMIT = 4096  # up to this n the picture shows every pair; beyond, only blocks
PNG_MAX_GRID = 1024  # block grids larger than this per side are pooled for the picture
# A picture's cells hold 2 · block state + connected (0 empty, 2 partial block, 3 a
# connected pair in a partial block, 5 full block); 1 and 4 cannot happen and would
# show in magenta.
_CELL_COLOURS = ("#ffffff", "#ff00ff", "#fde3bf", "#b34a1c", "#ff00ff", "#3b6fb6")


def _block_picture(layout, limit: int) -> tuple[np.ndarray, int, int]:
    """The block grid as an int8 picture of at most ``limit`` cells per side, built from
    the non-empty blocks only (never the whole grid of a large n). A cell pooling
    several blocks shows the strongest state among them: full over partial over
    empty. Returns (picture, blocks per cell down, blocks per cell across)."""
    step_q = -(-layout.num_q_blocks // limit)
    step_k = -(-layout.num_k_blocks // limit)
    picture = np.zeros((-(-layout.num_q_blocks // step_q), -(-layout.num_k_blocks // step_k)), dtype=np.int8)
    qb, kb, states = layout.blocks()
    np.maximum.at(picture, (qb // step_q, kb // step_k), states)
    return picture, step_q, step_k


def render_png(compiled, path, block_size=None, dense_limit: int = PNG_DENSE_LIMIT) -> str:
    """Draw every layer and head (heads with the same pattern share a panel) as a PNG:
    the block layout coloured by state, the connected pairs on top when n ≤
    ``dense_limit``. Returns a one-line description of what was drawn."""
    try:
        import matplotlib
    except ImportError:
        raise SpatError(Diagnostic("show --png needs matplotlib, which is not installed",
                                   help="pip install 'patterndsl[png]' (or pip install matplotlib)")) from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n = compiled.n
    block_q, block_k = compiled.block_sizes(block_size)
    _require_inversion_memory(compiled)
    panels = []  # (layer, heads, pattern, layout)
    for layer, patterns in enumerate(compiled.patterns):
        groups: dict = {}
        for head, pattern in enumerate(patterns):
            groups.setdefault(pattern, []).append(head)
        for pattern, heads in groups.items():
            if n > dense_limit and (_layout_over_budget(compiled, pattern, block_q, block_k)
                                    or _layout_draws_too_many(pattern, n)):
                # Its layout would pass the memory budget, or draw too many keys: the picture's
                # cells (regions of about n / PNG_SAMPLED_CELLS pairs a side) counted from
                # sampled rows instead.
                panels.append((layer, heads, pattern, _SampledPicture(pattern, n, PNG_SAMPLED_CELLS)))
            else:
                panels.append((layer, heads, pattern, compiled.layout(layer, heads[0], (block_q, block_k))))
    columns = max(sum(1 for p in panels if p[0] == layer) for layer in range(compiled.layers))
    pairs_drawn = n <= dense_limit
    sampled = any(isinstance(p[3], _SampledPicture) for p in panels)
    figure, axes = plt.subplots(compiled.layers, columns,
                                figsize=(max(4.8, 3.6 * columns), 3.9 * compiled.layers + 0.6),
                                squeeze=False, dpi=100)
    for ax in axes.flat:
        ax.axis("off")
    next_column = [0] * compiled.layers
    colours = ListedColormap(_CELL_COLOURS)
    for layer, heads, pattern, layout in panels:
        ax = axes[layer, next_column[layer]]
        next_column[layer] += 1
        ax.axis("on")
        if pairs_drawn:  # one cell per pair: its block's state, and whether it is connected
            grid = layout.to_dense()
            state = np.repeat(np.repeat(grid, block_q, axis=0), block_k, axis=1)[:n, :n]
            cells = 2 * state + compiled.dense(layer, heads[0])
            extent = (0, n, n, 0)
        elif isinstance(layout, _SampledPicture):  # one cell per region, its state estimated
            cells, extent = layout.cells, (0, n, n, 0)
        else:  # one cell per block (or per group of blocks)
            picture, step_q, step_k = _block_picture(layout, PNG_MAX_GRID)
            cells = 2 * picture + (picture == FULL)
            # The cells cover whole blocks; the axes stop at n, cutting the ragged last blocks.
            extent = (0, picture.shape[1] * step_k * block_k, picture.shape[0] * step_q * block_q, 0)
        # Shrunk to the panel's pixels in colour (rgba), not in cell values: blending
        # categories by value would invent colours.
        ax.imshow(cells, cmap=colours, vmin=0, vmax=len(_CELL_COLOURS) - 1, interpolation="antialiased",
                  interpolation_stage="rgba", extent=extent)
        if not isinstance(layout, _SampledPicture) and max(layout.num_q_blocks, layout.num_k_blocks) <= 64:
            # block boundaries, while visible
            for edge in range(block_k, n, block_k):
                ax.axvline(edge, color="#888888", linewidth=0.4)
            for edge in range(block_q, n, block_q):
                ax.axhline(edge, color="#888888", linewidth=0.4)
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)
        ax.tick_params(labelsize=7)
        where = [f"layer {layer}"] if compiled.layers > 1 else []
        if compiled.heads > 1:
            where.append("heads " + head_ranges(heads) if len(heads) > 1 else f"head {heads[0]}")
        ax.set_title(("  ·  ".join(where) + "\n" if where else "") + _short(str(pattern), 48), fontsize=8)
        if isinstance(layout, _SampledPicture):
            ax.set_xlabel(f"keys · regions of ~{layout.side:,} × {layout.side:,} pairs\n"
                          f"estimated from {layout.rows_looked:,} sampled rows · density {layout.density:.2g}",
                          fontsize=7)
        else:
            ax.set_xlabel(f"keys · {layout.num_full} full, {layout.num_partial} partial blocks\n"
                          f"efficiency {layout.efficiency():.1%} · sparsity {layout.sparsity():.1%}", fontsize=7)
        ax.set_ylabel("queries", fontsize=7)
    legend = [Patch(facecolor=_CELL_COLOURS[5], edgecolor="#888888", label="full block"),
              Patch(facecolor=_CELL_COLOURS[2], edgecolor="#888888", label="partial block")]
    if pairs_drawn:
        legend.append(Patch(facecolor=_CELL_COLOURS[3], edgecolor="#888888", label="connected pair in it"))
    legend.append(Patch(facecolor=_CELL_COLOURS[0], edgecolor="#888888", label="empty block"))
    figure.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=7, frameon=False)
    figure.suptitle(f"n = {n:,} · blocks of {block_q} × {block_k}"
                    + ("" if pairs_drawn else f"\nblocks only: pairs are drawn up to n = {dense_limit:,}")
                    + ("\nlayouts over the budget: regions of sampled rows" if sampled else ""), fontsize=9)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    try:
        _save_png(figure, path)
    finally:
        plt.close(figure)
    return (f"{len(panels)} panel(s), n = {n:,}, blocks of {block_q} × {block_k}"
            + ("" if pairs_drawn else ", blocks only")
            + (f" (layouts over the memory or drawing budget drawn as {PNG_SAMPLED_CELLS} × {PNG_SAMPLED_CELLS} regions "
               f"from sampled rows)" if sampled else ""))


PNG_SAMPLED_CELLS = 512  # regions per side of a panel drawn from sampled rows


def _layout_over_budget(compiled, pattern, block_q: int, block_k: int) -> bool:
    from .layout import layout_memory
    from .reference import memory_budget

    budget = memory_budget(compiled.memory_budget)
    return layout_memory(pattern, compiled.n, block_q, block_k, budget) > budget


PNG_DRAWN_KEYS = 1 << 28  # keys a layout may draw (n rows of drawn keys) before regions are sampled


def _layout_draws_too_many(pattern, n: int) -> bool:
    """Whether its layout would list more than PNG_DRAWN_KEYS drawn keys (bernoulli's n²,
    random(r)'s n·r): the blocks' counts come from every one of them."""
    from .analysis.counts import Formula

    try:
        formula = Formula(pattern, n)
    except NotImplementedError:
        return False
    return n * drawn_keys_per_row(formula, n) > PNG_DRAWN_KEYS


class _SampledPicture:
    """A panel of ``cells`` × ``cells`` regions, each coloured as a block would be (full, partial,
    empty) from the rows `show` samples (`_cell_counts`): what `show --png` draws of a pattern
    whose block layout would pass the memory budget or draw too many keys."""

    def __init__(self, pattern, n: int, cells: int):
        cells = min(cells, n)
        _, _, raw, raw_capacity, total, looked, rows_looked, _ = _cell_counts(pattern, n, cells, cells, True,
                                                                              elements=1 << 20)
        state = np.where(raw == 0, 0, np.where(raw == raw_capacity, 2, 1))
        self.cells = (2 * state + (state == FULL)).astype(np.int8)
        self.side = -(-n // cells)
        self.rows_looked = rows_looked
        self.density = total / looked if looked else 0.0


def _save_png(figure, path) -> None:
    """Save as a palette PNG: the picture has a few flat colours and their blends, so 64
    palette entries keep it looking the same at a third of the size of RGBA."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=64).save(path, format="PNG", optimize=True)
