"""`patterndsl show`: the mask drawn in the terminal, one panel per layer and head.

Small masks are drawn pair by pair (each pair two characters wide, so the
picture is square). Larger ones are downsampled: each character covers a
rectangle of pairs and is shaded by the fraction of them that are connected
(any connection at all shows). The mask is streamed block of rows by block of
rows, so drawing never holds the n × n mask; beyond EXACT_LIMIT the rows are
sampled (eight per row of characters, down to one at the largest n, a few rows
evaluated at a time) and the density is marked as an estimate.
"""
from __future__ import annotations

import numpy as np

from .errors import Diagnostic, SpatError
from .ir import IndexSet
from .layout import FULL
from .reference import evaluate, require_memory, row_blocks

EXACT_LIMIT = 1 << 15  # above this n, rows are sampled
MAX_N = 1 << 26
_SHADES = "░▒▓"
_SAMPLED_ROWS_PER_BIN = 8
_SAMPLED_PAIRS_PER_CHUNK = 1 << 22  # pairs of sampled rows evaluated at once
_BYTES_PER_EVALUATED_COLUMN = 32  # a row's index arrays and the predicates' temporaries (measured: 31)
_SAMPLED_PAIRS = 1 << 28  # pairs evaluated for one sampled panel, unless one row per bin needs more


def _cell_counts(pattern, n: int, rows: int, cols: int, sample: bool):
    """(connected pairs, pairs looked at) per cell, and the totals."""
    col_edges = (np.arange(cols + 1) * n) // cols
    row_edges = (np.arange(rows + 1) * n) // rows
    counts = np.zeros((rows, cols), dtype=np.int64)
    seen = np.zeros(rows, dtype=np.int64)  # query rows evaluated per row bin
    if sample:
        # Up to _SAMPLED_ROWS_PER_BIN rows per bin, fewer when n is so large that they would
        # exceed _SAMPLED_PAIRS (at least one per bin: every bin is drawn).
        per_bin = int(np.clip(_SAMPLED_PAIRS // (n * rows), 1, _SAMPLED_ROWS_PER_BIN))
        picks = np.concatenate([np.unique(np.linspace(lo, hi - 1, per_bin).astype(np.int64))
                                for lo, hi in zip(row_edges[:-1], row_edges[1:])])
        # A few rows at a time: each evaluated row is n wide (64 MiB at n = 2^26).
        per_chunk = max(1, _SAMPLED_PAIRS_PER_CHUNK // n)
        query_blocks = [picks[start:start + per_chunk] for start in range(0, picks.size, per_chunk)]
    else:
        query_blocks = [np.arange(lo, hi) for lo, hi in row_blocks(n)]
    for query in query_blocks:
        mask = evaluate(pattern, query, n)
        per_col = np.add.reduceat(mask, col_edges[:-1], axis=1, dtype=np.int64)
        row_bin = np.searchsorted(row_edges, query, side="right") - 1
        np.add.at(counts, row_bin, per_col)
        np.add.at(seen, row_bin, 1)
    capacity = seen[:, None] * np.diff(col_edges)[None, :]
    total = int(counts.sum())
    looked = int(seen.sum()) * n
    return counts, capacity, total, looked


def _panel_lines(pattern, n: int, width: int) -> tuple[list[str], float, str]:
    inner = max(8, width - 2)
    if 2 * n <= inner:  # exact: every pair drawn, two characters wide
        mask = evaluate(pattern, np.arange(n), n)
        body = ["".join("██" if bit else "  " for bit in row) for row in mask]
        count = int(mask.sum())
        return body, count / (n * n), f"{count:,} of {n * n:,} pairs"
    cols = min(n, inner)
    rows = max(1, min(n, (cols + 1) // 2))  # a character is about twice as tall as wide
    sample = n > EXACT_LIMIT
    counts, capacity, total, looked = _cell_counts(pattern, n, rows, cols, sample)
    body = []
    for count_row, capacity_row in zip(counts, capacity):
        chars = []
        for count, cap in zip(count_row, capacity_row):
            if count == 0:
                chars.append(" ")
            elif count == cap:
                chars.append("█")
            else:
                chars.append(_SHADES[min(2, int(3 * count / cap))])
        body.append("".join(chars))
    density = total / looked
    if sample:
        return body, density, f"estimated from {looked // n:,} sampled rows"
    return body, density, f"{total:,} of {n * n:,} pairs"


def render(compiled, width: int = 80) -> str:
    """Every layer and head of ``compiled`` drawn as text (heads with the same pattern share a panel)."""
    n = compiled.n
    if n > MAX_N:
        raise SpatError(Diagnostic(f"show draws masks up to n = {MAX_N:,}; n = {n:,} is larger"))
    require_memory(f"drawing n = {n:,} (whole rows of the mask, evaluated one at a time)",
                   n * _BYTES_PER_EVALUATED_COLUMN, compiled.memory_budget, "use a smaller --n")
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
            title = " · ".join(where + [f"n = {n:,}", f"density {100 * density:.2f}% ({detail})"])
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
    panels = []  # (layer, heads, pattern, layout)
    for layer, patterns in enumerate(compiled.patterns):
        groups: dict = {}
        for head, pattern in enumerate(patterns):
            groups.setdefault(pattern, []).append(head)
        for pattern, heads in groups.items():
            panels.append((layer, heads, pattern, compiled.layout(layer, heads[0], (block_q, block_k))))
    columns = max(sum(1 for p in panels if p[0] == layer) for layer in range(compiled.layers))
    pairs_drawn = n <= dense_limit
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
        else:  # one cell per block (or per group of blocks)
            picture, step_q, step_k = _block_picture(layout, PNG_MAX_GRID)
            cells = 2 * picture + (picture == FULL)
            # The cells cover whole blocks; the axes stop at n, cutting the ragged last blocks.
            extent = (0, picture.shape[1] * step_k * block_k, picture.shape[0] * step_q * block_q, 0)
        # Shrunk to the panel's pixels in colour (rgba), not in cell values: blending
        # categories by value would invent colours.
        ax.imshow(cells, cmap=colours, vmin=0, vmax=len(_CELL_COLOURS) - 1, interpolation="antialiased",
                  interpolation_stage="rgba", extent=extent)
        if max(layout.num_q_blocks, layout.num_k_blocks) <= 64:  # block boundaries, while visible
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
                    + ("" if pairs_drawn else f"\nblocks only: pairs are drawn up to n = {dense_limit:,}"), fontsize=9)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    try:
        _save_png(figure, path)
    finally:
        plt.close(figure)
    return (f"{len(panels)} panel(s), n = {n:,}, blocks of {block_q} × {block_k}"
            + ("" if pairs_drawn else ", blocks only"))


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
