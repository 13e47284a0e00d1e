"""The full `patterndsl check` of every example: compile, counts, growth, conditions, certificate.

    python benchmarks/check.py [--n 65536 1048576] [--verify] [--structured]

Each example is checked in a fresh process, so that its peak memory (max RSS,
which includes the interpreter and torch/numpy) is its own. With --verify the
certificate is then re-checked by `patterndsl.verify` in the same process (its
seconds; the RSS column is the peak of both). --structured adds a few O(n)
structured patterns (window, window | global, chunk). A refused n (over the memory
budget) prints the diagnostic. Targets (issues 5 and 11): every example at
n = 65,536 in under 2 s, at 2^20 in under 30 s, at 2^24 in under 30 s; 2^30 served
within 4 GB or refused up front; verify of bigbird at 2^20 under 10 s.
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
from patterndsl.verify import verify_report
path, n, also_verify = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
source = Path(path) if path.endswith(".spat") else path
start = time.perf_counter()
try:
    compiled = patterndsl.compile(source, n=n)
    report, cert = check(compiled)
except patterndsl.SpatError as exc:
    print(json.dumps({"refused": str(exc).splitlines()[0]}))
    sys.exit(0)
seconds = time.perf_counter() - start
verify_seconds = verified = None
if also_verify:
    start = time.perf_counter()
    result = verify_report(compiled, json.loads(json.dumps(cert)))
    verify_seconds = time.perf_counter() - start
    verified = "accepted" if not result["failures"] and not result["unchecked"] else (
        f"{len(result['failures'])} failed, {len(result['unchecked'])} unchecked")
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss_mib": rss, "report": report, "verify_seconds": verify_seconds,
                  "verified": verified}))
"""
STRUCTURED = ["window(1)", "window(1) | global(0)", "chunk(64) | window(2)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[65536, 1 << 20])
    parser.add_argument("--verify", action="store_true", help="also time verify of the certificate")
    parser.add_argument("--structured", action="store_true", help="also check a few O(n) structured patterns")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these examples")
    args = parser.parse_args()
    print("| n | example | check (s) | peak RSS (MiB) | growth | C1 | C2 | C3 | verify (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    cases = [(p.stem, str(p)) for p in sorted(EXAMPLES.glob("*.spat")) if not args.only or p.stem in args.only]
    cases += [(f"`{s}`", s) for s in STRUCTURED] if args.structured else []
    for n in args.n:
        total = 0.0
        for name, path in cases:
            out = subprocess.run([sys.executable, "-c", _ONE, path, str(n), "1" if args.verify else "0"],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(f"| {n:,} | {name} | failed: {out.stderr.strip().splitlines()[-1]} |", flush=True)
                continue
            result = json.loads(out.stdout)
            if "refused" in result:
                print(f"| {n:,} | {name} | refused: {result['refused']} |", flush=True)
                continue
            report = result["report"]
            total += result["seconds"]
            verdicts = []
            for condition in ("self_loops", "hamiltonian_path", "finite_depth"):
                values = {head[condition]["holds"] for head in report["conditions"]}
                verdicts.append("/".join({True: "yes", False: "no", None: "?"}[v] for v in sorted(values, key=str)))
            depth = report["conditions"][0]["finite_depth"]
            if depth["holds"]:
                verdicts[-1] += f" s={depth['s']}" if depth.get("s") is not None else f" s∈{depth['s_bounds']}"
            checked = (f"{result['verify_seconds']:.2f} ({result['verified']})" if result["verify_seconds"] is not None
                       else "")
            print(f"| {n:,} | {name} | {result['seconds']:.2f} | {result['rss_mib']:.0f} | "
                  f"{report['growth_detail']['bound']} | " + " | ".join(verdicts) + f" | {checked} |", flush=True)
        print(f"| {n:,} | **all** | **{total:.2f}** | | | | | | |")


if __name__ == "__main__":
    main()
