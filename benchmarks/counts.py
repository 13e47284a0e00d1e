"""Exact connection counts (patterndsl.analysis.connection_counts) for every example.

    python benchmarks/counts.py [--n 65536 1048576]

For each example and n: the time of `connection_counts` (per layer × head and the
union over layers, with the per-row statistics), its peak Python-heap memory
(tracemalloc, which sees numpy's allocations), and whether a slow path was taken.
The issue's budget for the *whole* check: every example at n = 65,536 in under
2 s, at n = 2^20 in under 30 s with peak memory under 4 GB.
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from pathlib import Path

import patterndsl
from patterndsl.analysis import connection_counts

EXAMPLES = Path(__file__).parent.parent / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[65536, 1 << 20])
    args = parser.parse_args()
    print("| example | n | layers×heads | connections (per layer) | union | time (s) | peak memory (MiB) | slow path |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.n:
        total = 0.0
        for path in sorted(EXAMPLES.glob("*.spat")):
            compiled = patterndsl.compile(path, n=n)
            tracemalloc.start()
            start = time.perf_counter()
            result = connection_counts(compiled)
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            total += elapsed
            per_layer = ", ".join(str(c) for layer in result["per_layer"] for c in layer)
            union = ", ".join(str(c) for c in result["union"])
            slow = "yes" if result["slow_path"] else "no"
            print(f"| {path.stem} | {n} | {compiled.layers}×{compiled.heads} | {per_layer} | {union} | "
                  f"{elapsed:.3f} | {peak / 2**20:.0f} | {slow} |")
        print(f"| **all examples** | {n} | | | | **{total:.3f}** | | |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess max RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
