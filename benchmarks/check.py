"""The full `patterndsl check` of every example: compile, counts, growth, conditions, certificate.

    python benchmarks/check.py [--n 65536 1048576]

Each example is checked in a fresh process, so that its peak memory (max RSS,
which includes the interpreter and torch/numpy) is its own. The issue's targets:
every example at n = 65,536 in under 2 s, at n = 2^20 in under 30 s with peak
memory under 4 GB, on the project's 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"

_ONE = """
import json, resource, sys, time
from pathlib import Path
import patterndsl
from patterndsl.analysis.check import check
path, n = Path(sys.argv[1]), int(sys.argv[2])
start = time.perf_counter()
report, cert = check(patterndsl.compile(path, n=n))
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss_mib": rss, "report": report}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[65536, 1 << 20])
    args = parser.parse_args()
    print("| n | example | check (s) | peak RSS (MiB) | growth | C1 | C2 | C3 |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.n:
        total = 0.0
        for path in sorted(EXAMPLES.glob("*.spat")):
            out = subprocess.run([sys.executable, "-c", _ONE, str(path), str(n)], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"| {n:,} | {path.stem} | failed: {out.stderr.strip().splitlines()[-1]} |")
                continue
            result = json.loads(out.stdout)
            report = result["report"]
            total += result["seconds"]
            verdicts = []
            for name in ("self_loops", "hamiltonian_path", "finite_depth"):
                values = {head[name]["holds"] for head in report["conditions"]}
                verdicts.append("/".join({True: "yes", False: "no", None: "?"}[v] for v in sorted(values, key=str)))
            print(f"| {n:,} | {path.stem} | {result['seconds']:.2f} | {result['rss_mib']:.0f} | "
                  f"{report['growth_detail']['bound']} | "
                  + " | ".join(verdicts) + " |")
        print(f"| {n:,} | **all examples** | **{total:.2f}** | | | | | |")


if __name__ == "__main__":
    main()
