"""`patterndsl show`: the mask drawn in the terminal, one panel per layer and head.

Small masks are drawn pair by pair (each pair two characters wide, so the
picture is square). Larger ones are downsampled: each character covers a
rectangle of pairs and is shaded by the fraction of them that are connected
(any connection at all shows). The mask is streamed block of rows by block of
rows, so drawing never holds the n × n mask; beyond EXACT_LIMIT the rows are
sampled and the density is marked as an estimate.
"""
from __future__ import annotations

import numpy as np

from .errors import Diagnostic, SpatError
from .reference import evaluate, row_blocks

EXACT_LIMIT = 1 << 15  # above this n, rows are sampled
MAX_N = 1 << 26
_SHADES = "░▒▓"
_SAMPLED_ROWS_PER_BIN = 8


def _cell_counts(pattern, n: int, rows: int, cols: int, sample: bool):
    """(connected pairs, pairs looked at) per cell, and the totals."""
    col_edges = (np.arange(cols + 1) * n) // cols
    row_edges = (np.arange(rows + 1) * n) // rows
    counts = np.zeros((rows, cols), dtype=np.int64)
    seen = np.zeros(rows, dtype=np.int64)  # query rows evaluated per row bin
    if sample:
        picks = [np.unique(np.linspace(lo, hi - 1, _SAMPLED_ROWS_PER_BIN).astype(np.int64))
                 for lo, hi in zip(row_edges[:-1], row_edges[1:])]
        query_blocks = [np.concatenate(picks)]
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
    out = []
    for layer, patterns in enumerate(compiled.patterns):
        groups: dict = {}
        for head, pattern in enumerate(patterns):
            groups.setdefault(pattern, []).append(head)
        for pattern, heads in groups.items():
            body, density, detail = _panel_lines(pattern, n, width)
            where = [f"layer {layer}"] if compiled.layers > 1 else []
            if compiled.heads > 1:
                where.append("heads " + _ranges(heads) if len(heads) > 1 else f"head {heads[0]}")
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


def _ranges(heads: list[int]) -> str:
    parts, start = [], heads[0]
    for prev, cur in zip(heads, heads[1:] + [None]):
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}..{prev + 1}")
            start = cur
    return ", ".join(parts)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"
