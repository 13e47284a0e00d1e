"""Time check_conditions (+ certificate) for every example at n = 65,536 and 2^20.

    python benchmarks/conditions.py [n ...]

Prints a markdown table: example, n, seconds, peak memory (tracemalloc, numpy
allocations included), and the verdicts C1, C2, C3 (s or bounds)."""
from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import patterndsl
from patterndsl.analysis.conditions import certificate, check_conditions

ROOT = Path(__file__).resolve().parent.parent


def verdict(c):
    fd = c["finite_depth"]
    c3 = {True: "yes", False: "no", None: "?"}[fd["holds"]]
    if fd["holds"]:
        c3 += f" s={fd['s']}" if fd.get("s") is not None else f" s∈{fd.get('s_bounds')}"
    yn = {True: "yes", False: "no", None: "?"}
    return yn[c["self_loops"]["holds"]], yn[c["hamiltonian_path"]["holds"]], c3


def main(sizes):
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


if __name__ == "__main__":
    main([int(x) for x in sys.argv[1:]] or [65536, 1 << 20])
