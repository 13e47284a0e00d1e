"""`patterndsl check`: counts, growth and Yun et al.'s conditions in one report.

`check(compiled)` returns the JSON document described in README.md ("patterndsl
check"); `render(report)` draws it for the terminal; `all_hold(report)` is what
sets the exit code.
"""
from __future__ import annotations

import math
import time

from .. import randomgen
from .conditions import certificate, check_conditions
from .counts import connection_counts
from .growth import growth


CHECK_MEMORY = 4 << 30  # check's own floor; a larger --memory-budget raises it
BYTES_PER_TOKEN = 96  # peak of check per token for one pattern (counts, rows, ends), measured
BYTES_PER_LAYER_TOKEN = 16  # per token and further distinct layer of a head (its degrees and diagonal)


def memory_needed(compiled) -> int:
    """About the peak memory of ``check``: arrays of n entries for the largest head.
    Patterns are analysed one at a time (the counts keep each one's totals, not its rows),
    so the peak is one pattern and the union of its head (twice the one-pattern figure),
    plus the arrays the conditions hold for each further distinct layer of that head. Only a lower
    bound (an AtLeast) for a pattern holding a grid: the keys a grid lists come on top."""
    from ..grid import Grid
    from ..layout import holds
    from ..reference import AtLeast

    layers = max((len({layer[h] for layer in compiled.patterns}) for h in range(compiled.heads)), default=1)
    needed = compiled.n * (2 * BYTES_PER_TOKEN + BYTES_PER_LAYER_TOKEN * max(0, layers - 1))
    grids = any(holds(pattern, Grid) for pattern in {p for layer in compiled.patterns for p in layer})
    return AtLeast(needed) if grids else needed


CHECK_PAIRS = 1 << 30  # pairs check evaluates one by one (bernoulli's hash: about a minute of CPU)


def pair_by_pair_work(compiled) -> "tuple[int, str]":
    """(pairs, one of them): the pairs whose keys the exact counts evaluate one by one, n per
    row of every distinct bernoulli (it has no structure to count from)."""
    from ..primitives import Bernoulli

    found, stack, seen = [], [p for layer in compiled.patterns for p in layer], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Bernoulli):
            found.append(node)
        stack.extend(node.children())
    return len(found) * compiled.n * compiled.n, (str(found[0]) if found else "")


@randomgen.drawn_once()  # counts and conditions share each random operand's drawn rows
def check(compiled, budget_seconds: float = 10.0) -> tuple[dict, dict]:
    """Every claim about ``compiled``: (the report, the certificate), both JSON-serialisable.
    Refused up front (SpatError) when it would need more than the memory budget."""
    from ..errors import require_compiled
    from ..reference import budget_scope

    require_compiled(compiled, "check()")
    with budget_scope(compiled.memory_budget):  # what refuses work without `compiled` at hand reads it too
        return _checked(compiled, budget_seconds)


def _checked(compiled, budget_seconds: float) -> tuple[dict, dict]:
    from ..errors import Diagnostic, SpatError
    from ..reference import AtLeast, format_bytes, memory_budget

    needed = memory_needed(compiled)
    allowed = max(CHECK_MEMORY, memory_budget(compiled.memory_budget))
    if needed > allowed:
        lower = isinstance(needed, AtLeast)
        raise SpatError(Diagnostic(
            f"check at n = {compiled.n:,} needs {'at least' if lower else 'about'} {format_bytes(needed)} "
            f"(arrays of n entries for its largest head{'; the keys its grids list come on top' if lower else ''}), "
            f"over the memory budget of {format_bytes(allowed)}",
            help="raise it with --memory-budget (or PATTERNDSL_MEMORY_BUDGET), or check a smaller n"))
    pairs, example = pair_by_pair_work(compiled)
    if pairs > CHECK_PAIRS:
        raise SpatError(Diagnostic(
            f"check at n = {compiled.n:,} would list the keys of {example} pair by pair: "
            f"{pairs:,} pairs (n² per bernoulli), more than the {CHECK_PAIRS:,} check evaluates",
            help=f"its counts are exact, so they cost n² here: check it at n ≤ {math.isqrt(CHECK_PAIRS):,} "
                 "(the growth analysis claims O(n²) at every n)"))
    start = time.perf_counter()
    counts = connection_counts(compiled)
    conditions = check_conditions(compiled, budget_seconds=budget_seconds)
    growth_report = growth(compiled)
    report = {
        "n": compiled.n,
        "layers": compiled.layers,
        "heads": compiled.heads,
        "connections": {"per_layer": counts["per_layer"], "union": counts["union"],
                        "rows": counts["rows"], "union_rows": counts["union_rows"]},
        "growth": growth_report["growth"],
        "growth_detail": {k: v for k, v in growth_report.items() if k not in ("n", "growth")},
        "nonempty_rows": conditions["nonempty_rows"],
        "empty_row": conditions["empty_row"],
        "conditions": conditions["conditions"],
        "prob": {"name": conditions["prob"]["name"], "assumption2": conditions["prob"]["assumption2"]},
    }
    if compiled.uses_segments:
        report["segments"] = _segment_bounds(compiled)
    report["seconds"] = round(time.perf_counter() - start, 3)
    cert = certificate(compiled, conditions, counts=counts)
    if "segments" in report:  # the claims for every segmentation: verify re-checks them (or lists them unchecked)
        cert["segments"] = {"every_segmentation": report["segments"]["every_segmentation"]}
    return report, cert


def _segment_bounds(compiled) -> dict:
    """For a pattern reading run-time segment ids: what the claims above are about (one
    document: every id equal) and the pair counts bounded for every segmentation
    (patterndsl.segments.count_bounds), per layer and head."""
    from ..primitives import All, Nothing, Self
    from ..segments import count_bounds
    from .counts import row_degrees

    def count(pattern, n):
        return int(row_degrees(pattern, n).sum())

    from .segment_conditions import per_segmentation

    return {"claims_are_for": "one document (every segment id equal)",
            "every_segmentation": per_segmentation(compiled),
            "pairs_every_segmentation": [[list(count_bounds(p, compiled.n, count, All(), Nothing(), Self()))
                                          for p in layer]
                                         for layer in compiled.patterns]}


def all_hold(report: dict) -> bool:
    """True when every condition holds (none fails, none is undecided)."""
    if report["nonempty_rows"] is not True or report["prob"]["assumption2"] is not True:
        return False
    return all(head[name]["holds"] is True for head in report["conditions"]
               for name in ("self_loops", "hamiltonian_path", "finite_depth"))


def _verdict(claim: dict) -> str:
    return {True: "holds", False: "fails", None: "undecided"}[claim["holds"]]


def _depth(claim: dict) -> str:
    if claim["holds"] is True:
        lo, hi = claim.get("s_bounds") or [None, None]
        if claim.get("s") is not None:
            return f"holds, s = {claim['s']}"
        return f"holds, {lo} ≤ s ≤ {hi if hi is not None else '?'}"
    if claim["holds"] is False:
        pair = claim.get("unreachable")
        return "fails" + (f": query {pair[0]} never receives token {pair[1]}" if pair else "")
    lo, hi = claim.get("s_bounds") or [None, None]
    return f"undecided ({claim.get('reason', 'within budget')}; s ≥ {lo})"


def connection_lines(report: dict, area: int, area_name: str, row: str) -> list[str]:
    """The lines under `connections` of a rendered check report: each layer and head's
    count (as a share of the ``area`` of all pairs) and its per-``row`` statistics, then
    the union over layers when there are several. Shared by the square report (n², row)
    and the cross one (m·n, query row; patterndsl/cross_check.py)."""
    lines = []
    for layer, heads in enumerate(report["connections"]["per_layer"]):
        for head, count in enumerate(heads):
            stats = report["connections"]["rows"][layer][head]
            lines.append(f"  layer {layer} head {head}: {count:,} ({100 * count / area:.3g}% of {area_name}); "
                         f"per {row} min {stats['min']:,}, mean {stats['mean']:.1f}, max {stats['max']:,}")
    if report["layers"] > 1:
        for head, count in enumerate(report["connections"]["union"]):
            lines.append(f"  union of layers, head {head}: {count:,}")
    return lines


def render(report: dict, name: str) -> str:
    """A readable report for the terminal."""
    lines = [f"{name}: n = {report['n']:,}, {report['layers']} layer(s), {report['heads']} head(s)", ""]
    lines.append("connections")
    n = report["n"]
    lines += connection_lines(report, area=n * n, area_name="n²", row="row")
    if "segments" in report:
        lines.append("  the pattern reads run-time segment ids: the counts, growth and conditions here are for "
                     "one document (every id equal); for every segmentation:")
        for layer, heads in enumerate(report["segments"]["pairs_every_segmentation"]):
            for head, (low, high) in enumerate(heads):
                lines.append(f"  layer {layer} head {head}: {low:,} ≤ connections ≤ {high:,}")
    detail = report["growth_detail"]
    lines.append(f"growth: {detail['bound']}" + ("" if detail["tight"] else " (an upper bound, maybe not tight)"))
    lines.append(f"  {detail['dominant']['why']}")
    lines.append("")
    lines.append(f"every query row has a key: {'yes' if report['nonempty_rows'] else 'no'}"
                 + (f" (first empty: layer, head, row = {report['empty_row']})" if report["empty_row"] else ""))
    lines.append(f"probability map {report['prob']['name']}: Assumption 2 "
                 + ("holds" if report["prob"]["assumption2"] else "fails"))
    lines.append("")
    lines.append("Assumption 1 (Yun et al. 2020)")
    for head in report["conditions"]:
        c1, c2, c3 = head["self_loops"], head["hamiltonian_path"], head["finite_depth"]
        c1_text = _verdict(c1) + (f": layer {c1['missing'][0]} row {c1['missing'][2]} has no self-loop"
                                  if c1.get("missing") else "")
        witness = c2.get("witness")
        c2_text = c2.get("reason", "undecided") if c2["holds"] is None else _verdict(c2) + (f" (witness: {witness} order)" if isinstance(witness, str)
                                  else " (witness permutation in the certificate)" if witness else "")
        lines.append(f"  head {head['head']}: C1 self-loops {c1_text}; C2 Hamiltonian path {c2_text}; "
                     f"C3 finite depth {_depth(c3)}")
    if "segments" in report:
        lines.append("  for every segmentation (C2, C3: within each packed document):")
        for head in report["segments"]["every_segmentation"]:
            parts = []
            for name, label in (("self_loops", "C1 self-loops"), ("hamiltonian_path", "C2 Hamiltonian path"),
                                ("finite_depth", "C3 finite depth")):
                claim = head[name]
                parts.append(f"{label} " + (claim["reason"] if claim["holds"] is None
                                            else f"{_verdict(claim)} ({claim['why']})"))
            lines.append(f"  head {head['head']}: " + "; ".join(parts))
    lines.append("")
    lines.append(f"verdict: {'every condition holds' if all_hold(report) else 'not every condition holds'}")
    return "\n".join(lines) + "\n"


def render_growth(report: dict, name: str) -> str:
    """The growth report of a file checked without an n: the bound as a formula in n."""
    lines = [f"{name}: growth {report['bound']}" + ("" if report["tight"] else " (an upper bound, maybe not tight)")]
    for layer, heads in enumerate(report["per_layer"]):
        for head, entry in enumerate(heads):
            extra = str(entry["exceptional_rows"])
            lines.append(f"  layer {layer} head {head}: {entry['bound']}, per row ≤ {entry['per_row']}"
                         + (f", plus {extra} row{'' if extra == '1' else 's'} of up to n keys"
                            if extra != "0" else ""))
    lines.append(f"  {report['dominant']['why']}")
    return "\n".join(lines) + "\n"
