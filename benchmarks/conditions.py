"""Conditions at scale, and how often they stay undecided on a fixed random corpus.

    python benchmarks/conditions.py [n ...]          # every example: seconds, memory, verdicts
    python benchmarks/conditions.py --corpus [COUNT] # undecided rates by n range

The corpus is COUNT (default 300) random files drawn from a seeded generator (nested
unions, intersections, differences and complements of every primitive, with layers and
heads), each checked at one n per range. Run it with PYTHONPATH pointing at another
checkout to compare versions (before / after). Prints markdown tables."""
from __future__ import annotations

import random
import sys
import time
import tracemalloc
from pathlib import Path

import patterndsl
from patterndsl.analysis.conditions import certificate, check_conditions

ROOT = Path(__file__).resolve().parent.parent
RANGES = [(64, 512), (2049, 4099), (16384, 65536)]


def verdict(c):
    fd = c["finite_depth"]
    c3 = {True: "yes", False: "no", None: "?"}[fd["holds"]]
    if fd["holds"]:
        c3 += f" s={fd['s']}" if fd.get("s") is not None else f" s∈{fd.get('s_bounds')}"
    yn = {True: "yes", False: "no", None: "?"}
    return yn[c["self_loops"]["holds"]], yn[c["hamiltonian_path"]["holds"]], c3


def examples(sizes):
    print("| example | n | seconds | peak MiB | C1 | C2 | C3 |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        for path in sorted((ROOT / "examples").glob("*.spat")):
            compiled = patterndsl.compile(path, n)
            tracemalloc.start()
            t = time.perf_counter()
            results = check_conditions(compiled, budget_seconds=20)
            certificate(compiled, results)
            seconds = time.perf_counter() - t
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            c1, c2, c3 = verdict(results["conditions"][0])
            print(f"| {path.stem} | {n} | {seconds:.2f} | {peak:.0f} | {c1} | {c2} | {c3} |", flush=True)


# ---- the random corpus ---------------------------------------------------------------------


def _size(rng):
    return rng.choice(["1", "2", "3", "4", "8", "16", "64", "isqrt(n)", "ilog2(n)", "n // 8", "n // 3"])


def _indices(rng):
    picks = [rng.choice(["0", "1", "n - 1", "n // 2", "0..4", "n - 4..n", "0..isqrt(n)", "n // 2..n // 2 + 3"])
             for _ in range(rng.randint(1, 2))]
    return ", ".join(picks)


def _primitive(rng):
    kind = rng.choice(["window", "window2", "dilated", "stride", "chunk", "summary", "global", "rows", "cols",
                       "logsparse", "random", "causal", "self", "all"])
    if kind == "window":
        return f"window({_size(rng)})"
    if kind == "window2":
        return f"window({rng.choice(['0', '1', '4', '-2', 'isqrt(n)'])}, {rng.choice(['0', '1', '3', '8'])})"
    if kind == "dilated":
        return f"dilated({_size(rng)}, {rng.choice(['2', '3', '4'])})"
    if kind == "stride":
        return f"stride({rng.choice(['2', '3', '7', 'isqrt(n)'])})"
    if kind == "chunk":
        return f"chunk({rng.choice(['2', '16', '64', 'isqrt(n)'])})"
    if kind == "summary":
        return f"summary({rng.choice(['8', '16', '64'])}, {rng.choice(['1', '2'])})"
    if kind in ("global", "rows", "cols"):
        return f"{kind}({_indices(rng)})"
    if kind == "random":
        return f"random({rng.choice(['1', '2', '4'])}, seed={rng.randint(0, 99)})"
    return kind


def _expression(rng, depth):
    if depth == 0 or rng.random() < 0.35:
        return _primitive(rng)
    op = rng.choice([" | ", " | ", " & ", " - ", "~"])
    if op == "~":
        return f"~({_expression(rng, depth - 1)})"
    return f"({_expression(rng, depth - 1)}{op}{_expression(rng, depth - 1)})"


def corpus(count: int, seed: int = 20260101) -> list[str]:
    """``count`` random files: an expression, or layers of them, or heads."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        shape = rng.random()
        if shape < 0.6:
            out.append(_expression(rng, 3) + "\n")
        elif shape < 0.85:
            body = "\n".join("    " + _expression(rng, 2) for _ in range(rng.randint(2, 3)))
            out.append(f"layers {{\n{body}\n}}\n")
        else:
            body = "\n".join(f"    {h}..{h + 1}: " + _expression(rng, 2) for h in range(2))
            out.append(f"heads {{\n{body}\n}}\n")
    return out


def undecided(count: int) -> None:
    rng = random.Random(7)
    sources = corpus(count)
    print("| n range | heads | C2 undecided | C3 undecided | C3 bounds only | seconds |")
    print("|---|---|---|---|---|---|")
    for lo, hi in RANGES:
        heads = c2 = c3 = bounds = 0
        start = time.perf_counter()
        for source in sources:
            n = rng.randint(lo, hi)
            try:
                compiled = patterndsl.compile(source, n)
            except patterndsl.SpatError:
                continue
            for cond in check_conditions(compiled, budget_seconds=2)["conditions"]:
                heads += 1
                c2 += cond["hamiltonian_path"]["holds"] is None
                fd = cond["finite_depth"]
                c3 += fd["holds"] is None
                bounds += fd["holds"] is True and fd.get("s") is None
        seconds = time.perf_counter() - start
        print(f"| {lo:,} … {hi:,} | {heads} | {100 * c2 / max(heads, 1):.1f}% | {100 * c3 / max(heads, 1):.1f}% "
              f"| {100 * bounds / max(heads, 1):.1f}% | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--corpus"]:
        undecided(int(sys.argv[2]) if len(sys.argv) > 2 else 300)
    else:
        examples([int(x) for x in sys.argv[1:]] or [65536, 1 << 20])
