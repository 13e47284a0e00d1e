"""`patterndsl check` of a cross file (`queries M`, patterndsl/cross.py): exact counts per
query row, from the primitives' row structure over the square the file is the corner of;
the growth where it applies; Yun et al.'s conditions C1–C3, which are about square
patterns, reported as not applicable."""
from __future__ import annotations

from .cross import embedded
from .errors import SpatError
from .ir import Pattern
from .passes import simplify


# ---- the analyses: `patterndsl check` of a cross file -------------------------------------


def row_degrees(compiled, pattern_index: "tuple[int, int] | None" = None, pattern: "Pattern | None" = None):
    """int64 [m]: the keys of each query row, exact, from the primitives' row structure
    (analysis/counts.py over the square: O(size), never m × n)."""
    from .analysis.counts import row_degrees as square_degrees

    if pattern is None:
        pattern = compiled.pattern(*pattern_index)
    return square_degrees(embedded(pattern, compiled.m, compiled.n, compiled.size), compiled.size)[:compiled.m]


def check_report(compiled) -> dict:
    """What `patterndsl check` proves of a cross file: exact counts per layer and head (and
    for the union over layers), the rows without a key, and the growth when it applies.
    Yun et al.'s conditions C1–C3 are about square patterns (self-loops, a Hamiltonian
    path, depth over one sequence) and are reported as not applicable."""
    from .analysis.counts import degree_stats
    from .ir import Union

    done: dict = {}

    def degrees(pattern):
        if pattern not in done:
            done[pattern] = row_degrees(compiled, pattern=pattern)
        return done[pattern]

    per_layer = [[int(degrees(p).sum()) for p in layer] for layer in compiled.patterns]
    rows = [[degree_stats(degrees(p)) for p in layer] for layer in compiled.patterns]
    union, union_rows = [], []
    for h in range(compiled.heads):
        parts = tuple(dict.fromkeys(layer[h] for layer in compiled.patterns))
        found = degrees(parts[0] if len(parts) == 1 else simplify(Union(parts), compiled.size))
        union.append(int(found.sum()))
        union_rows.append(degree_stats(found))
    return {
        "cross": True, "m": compiled.m, "n": compiled.n, "layers": compiled.layers, "heads": compiled.heads,
        "connections": {"per_layer": per_layer, "union": union, "rows": rows, "union_rows": union_rows},
        "nonempty_rows": all(s["empty_rows"] == 0 for layer in rows for s in layer),
        "growth": _growth(compiled),
        "conditions": "not applicable: C1–C3 (Yun et al.) are about square patterns over one sequence",
        "prob": str(compiled.prob),
    }


def _growth(compiled) -> dict:
    """The growth of the n × n pattern whose first m rows the file is, when m ≤ n (its
    bound at n is then a rigorous bound on the rectangle's count); none claimed for m > n."""
    from .analysis.growth import growth

    if compiled.m > compiled.n:
        return {"claimed": False, "why": f"m = {compiled.m:,} > n = {compiled.n:,}: the growth classes are "
                                         f"about n × n patterns, and rows beyond n are not rows of one"}
    try:
        found = growth(compiled)
    except SpatError as exc:
        return {"claimed": False, "why": exc.diagnostics[0].message}
    return {"claimed": True, "growth": found["growth"], "bound": found["growth"],
            "why": f"an upper bound: the m ≤ n queries are rows 0 … m − 1 of the n × n pattern, of which "
                   f"{found['dominant']['why']}",
            "bound_at_n": [[entry.get("bound_at_n") for entry in layer] for layer in found["per_layer"]]}


def render_report(report: dict, name: str) -> str:
    from .analysis.check import connection_lines

    m, n = report["m"], report["n"]
    lines = [f"{name}: cross-attention, m = {m:,} queries × n = {n:,} keys, {report['layers']} layer(s), "
             f"{report['heads']} head(s)", "", "connections"]
    lines += connection_lines(report, area=m * n, area_name="m·n", row="query row")
    growth = report["growth"]
    lines.append(f"growth: {growth['bound']}" if growth["claimed"] else "growth: not claimed")
    lines.append(f"  {growth['why']}")
    lines.append("")
    empty = [s["empty_rows"] for layer in report["connections"]["rows"] for s in layer]
    lines.append("every query row has a key: " + ("yes" if report["nonempty_rows"] else
                                                   f"no ({max(empty):,} query rows without a key in some head)"))
    lines.append(f"Assumption 1 (Yun et al. 2020): {report['conditions']}")
    return "\n".join(lines) + "\n"
