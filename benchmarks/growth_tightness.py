"""How tight the growth classes are: claimed exponent against measured, on a fixed random corpus.

    python benchmarks/growth_tightness.py [--patterns 300] [--seed 2026] [--show 20]

For every pattern of a seeded random corpus (primitives whose parameters are
small constants or expressions in n — `isqrt(n)`, `n // 3`, `n-4..n`,
`max(0, n - isqrt(n))..n`, shifted windows … — combined with | & - ~), the
exact connection count (patterndsl.analysis.counts) at n = 2^10 … 2^16 and the
growth class that `patterndsl check` claims without an n (n^a log^b n, Θ or O).

measured exponent: the slope of log(count / log2(n)^b) against log n over the
three largest n (b the claimed log power), so it is comparable to a.

Reports: how many claims are within 0.05 of the measured exponent; how many of
those are claimed Θ (tight); and checks that no claim is contradicted — the count
never exceeds the bound at that n (`bound_at_n`), and a Θ claim's count / n^a log^b n
stays within a constant factor. Patterns with no connection at the largest n, or
fewer than 64 (a slope of such small counts says nothing), are counted apart.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from fractions import Fraction

import numpy as np

import patterndsl
from patterndsl.analysis.counts import connection_counts
from patterndsl.analysis.growth import growth, growth_formula

NS = [2 ** k for k in range(10, 17)]
TOLERANCE = 0.05
TINY = 64  # fewer connections than this at n = 2^16: too few for a slope (listed apart)

SMALL = ["0", "1", "2", "3", "5", "8"]
POSITIVE = ["1", "2", "3", "4", "8"]
SIZES_IN_N = ["isqrt(n)", "ilog2(n)", "n // 4", "n // 8", "isqrt(n) // 2", "ilog2(n) + 1",
              "cdiv(n, 16)", "isqrt(n) * ilog2(n)", "min(n, 12)", "max(1, isqrt(n) - 3)"]
INDEX_ITEMS = ["0", "3", "n - 1", "n // 2", "isqrt(n)", "0..4", "2..10", "n - 4..n", "n-8..n",
               "n // 2..n // 2 + 3", "max(0, n - isqrt(n))..n", "0..isqrt(n)", "n // 2..n",
               "0..n // 4", "isqrt(n)..2 * isqrt(n)", "n - ilog2(n)..n", "max(0, n - 6)..n + 2",
               "n..n + 3", "0..ilog2(n)"]
SHIFTS = ["n // 3, -(n // 3) + ilog2(n)", "-(isqrt(n)), isqrt(n) + 2", "-3, 7", "5, -2", "isqrt(n), 0",
          "0, isqrt(n)", "n // 2, -(n // 2) + 1", "-(n // 4), n // 4 + isqrt(n)", "ilog2(n), -1",
          "n, -(n) + 2", "n // 4, 0", "0, 3"]


def _param(rng: random.Random, positive: bool = False) -> str:
    if rng.random() < 0.45:
        return rng.choice(POSITIVE if positive else SMALL)
    return rng.choice(SIZES_IN_N)


# The arguments of each kind of leaf (window2: a shifted window).
ARGUMENTS = {
    "window": _param,
    "window2": lambda rng: rng.choice(SHIFTS),
    "dilated": lambda rng: f"{_param(rng)}, {_param(rng, positive=True)}",
    "stride": lambda rng: rng.choice(["2", "5", "isqrt(n)", "n // 4", "ilog2(n) + 1", "n", "cdiv(n, 8)"]),
    "chunk": lambda rng: rng.choice(["4", "16", "isqrt(n)", "n // 2", "ilog2(n) + 1", "n"]),
    "summary": lambda rng: rng.choice(["16, 2", "8, 8", "isqrt(n), 1", "n, 1", "n, 3", "n // 4, 2"]),
    "random": lambda rng: f"{rng.choice(['2', '6', 'isqrt(n)', 'ilog2(n)'])}, seed={rng.randrange(5)}",
}


def _leaf(rng: random.Random) -> str:
    kind = rng.choice(["window", "window2", "dilated", "stride", "chunk", "summary", "global", "rows",
                       "cols", "random", "bare", "window", "global", "cols"])
    if kind in ("global", "rows", "cols"):
        items = rng.sample(INDEX_ITEMS, rng.choice([1, 1, 1, 2]))
        return f"{kind}({', '.join(items)})"
    if kind == "bare":
        return rng.choice(["all", "none", "self", "causal", "logsparse"])
    return f"{kind.rstrip('2')}({ARGUMENTS[kind](rng)})"


def _pattern(rng: random.Random, depth: int) -> tuple[str, bool]:
    """(source, whether it is a single primitive)."""
    if depth == 0 or rng.random() < 0.35:
        return _leaf(rng), True
    op = rng.choice(["|", "|", "&", "&", "-", "~"])
    if op == "~":
        return f"~{_operand(rng, depth - 1)}", False
    return f"{_operand(rng, depth - 1)} {op} {_operand(rng, depth - 1)}", False


def _operand(rng: random.Random, depth: int) -> str:
    text, leaf = _pattern(rng, depth)
    return text if leaf else f"({text})"


def pattern(rng: random.Random, depth: int = 2) -> str:
    """One random pattern of the corpus (valid at every n ≥ 16; tests/test_growth_tightness.py
    draws from it too)."""
    return _pattern(rng, depth)[0]


def corpus(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < count:
        source = pattern(rng)
        if source not in seen:
            seen.add(source)
            out.append(source)
    return out


def _class_value(n: int, a: Fraction, b: Fraction) -> float:
    return n ** float(a) * math.log2(n) ** float(b)


def measure(source: str) -> dict:
    claim = growth_formula(source)["per_layer"][0][0]
    a, b = (Fraction(x) for x in claim["exponent"])
    counts, bounds = [], []
    for n in NS:
        compiled = patterndsl.compile(source, n)
        counts.append(connection_counts(compiled)["per_layer"][0][0])
        bounds.append(growth(compiled)["per_layer"][0][0]["bound_at_n"])
    out = {"source": source, "claim": claim["bound"], "a": a, "b": b, "tight": claim["tight"],
           "counts": counts, "contradicted": any(c > u for c, u in zip(counts, bounds))}
    if counts[-1] < TINY:
        out["measured"] = None
        out["tiny"] = counts[-1] > 0
        return out
    top = np.array(NS[-3:], dtype=float)
    values = np.array(counts[-3:], dtype=float)
    if (values <= 0).any():
        out["measured"] = None
        return out
    out["measured"] = float(np.polyfit(np.log(top), np.log(values / np.log2(top) ** float(b)), 1)[0])
    ratios = [c / _class_value(n, a, b) for n, c in zip(NS, counts)]
    # A Θ claim: count / class stays within a constant factor over 2^10 … 2^16.
    out["theta_broken"] = claim["tight"] and (min(ratios) <= 0 or max(ratios) / min(ratios) > 16)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--show", type=int, default=20, help="list this many claims that miss the measured exponent")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = [measure(source) for source in corpus(args.patterns, args.seed)]
    measured = [r for r in results if r["measured"] is not None]
    close = [r for r in measured if abs(r["measured"] - float(r["a"])) <= TOLERANCE]
    tight = [r for r in close if r["tight"]]
    contradicted = [r for r in results if r["contradicted"]]
    theta_broken = [r for r in measured if r.get("theta_broken")]
    print(f"corpus: {len(results)} patterns (seed {args.seed}), n = 2^10 … 2^16, "
          f"{time.perf_counter() - started:.0f} s")
    tiny = [r for r in results if r.get("tiny")]
    print(f"empty at n = 2^16 (nothing to measure): {len(results) - len(measured) - len(tiny)}; "
          f"with 1 … {TINY - 1} connections (too few for a slope): {len(tiny)}, "
          f"of which claimed O(n^a log^b n) with a < 1: {sum(r['a'] < 1 for r in tiny)}")
    print(f"claimed exponent within {TOLERANCE} of measured: {len(close)} of {len(measured)} "
          f"({100 * len(close) / max(len(measured), 1):.1f}%)")
    print(f"  of which claimed Θ: {len(tight)} ({100 * len(tight) / max(len(close), 1):.1f}%)")
    print(f"claims contradicted by a count above the bound: {len(contradicted)}")
    print(f"Θ claims whose count / class varies more than 16×: {len(theta_broken)}")
    misses = [r for r in measured if r not in close]
    misses.sort(key=lambda r: -abs(r["measured"] - float(r["a"])))
    for r in misses[: args.show]:
        print(f"  miss: {r['claim']:<16} measured {r['measured']:.2f}  {r['source']}")
    loose = [r for r in close if not r["tight"]]
    for r in loose[: args.show]:
        print(f"  O but measured alike: {r['claim']:<16} measured {r['measured']:.2f}  {r['source']}")
    for r in contradicted + theta_broken:
        print(f"  CONTRADICTED: {r['claim']} {r['source']} counts {r['counts']}")
    return 1 if contradicted or theta_broken else 0


if __name__ == "__main__":
    sys.exit(main())
