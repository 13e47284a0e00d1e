"""Fresh BlockMask build of this tree against another commit's, A/B, in CPU time.

    python benchmarks/blockmask_ab.py --base 030eddc --cases natten128 phi3 --rounds 3

Each round runs, for the base commit (checked out by `git archive` into a temporary
directory) and then for this tree, one subprocess per case that times 60 calls (after 5
warm-up calls) of each of: a fresh `patterndsl.compile` + `block_mask` of every layer (grid
tables cleared: blockmask_build.py's "ours BlockMask"), a fresh compile + `layouts`, and the
compile alone — by `time.thread_time` (this thread's CPU time: the build is one thread, and
CPU time moves less with a shared machine's load than wall time). Printed per case and
measure: the least time of all rounds of each tree and their ratio (the machine's best),
and the median of the rounds' medians and their ratio. The cases are blockmask_build.py's.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import json, sys, time
sys.path.insert(0, "benchmarks")
import patterndsl
from patterndsl import grid as G
import blockmask_build as B

source, n, block = B.CASES[sys.argv[1]](32768)

def masks():
    G.box_counter.cache_clear()
    compiled = patterndsl.compile(source, n, memory_budget=1 << 40)
    return [compiled.block_mask(block, layer) for layer in range(compiled.layers)]

def layouts():
    G.box_counter.cache_clear()
    compiled = patterndsl.compile(source, n, memory_budget=1 << 40)
    return [compiled.layouts(layer, block) for layer in range(compiled.layers)]

def compile_only():
    return patterndsl.compile(source, n, memory_budget=1 << 40)

out = {}
for name, build in (("BlockMask", masks), ("layout", layouts), ("compile", compile_only)):
    for _ in range(5):
        build()
    times = []
    for _ in range(60):
        start = time.thread_time()
        result = build()
        times.append(time.thread_time() - start)
        del result
    times.sort()
    out[name] = (times[0], times[len(times) // 2])
print(json.dumps(out))
'''


def run(tree: Path, case: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, case], cwd=tree, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        raise SystemExit(f"{tree}: {case}: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (e.g. main)")
    parser.add_argument("--cases", nargs="+", default=["natten128", "phi3"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as base:
        archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        print("| case | measure | base least (ms) | this least (ms) | least, base / this "
              "| base median (ms) | this median (ms) | median, base / this |")
        print("|---|---|---|---|---|---|---|---|")
        for case in args.cases:
            results = {"base": [], "this": []}
            for _ in range(args.rounds):  # the trees alternate: both see the same load
                results["base"].append(run(Path(base), case))
                results["this"].append(run(ROOT, case))
            for measure in ("BlockMask", "layout", "compile"):
                least = {tree: min(r[measure][0] for r in rs) * 1e3 for tree, rs in results.items()}
                median = {tree: statistics.median(r[measure][1] for r in rs) * 1e3 for tree, rs in results.items()}
                print(f"| {case} | {measure} | {least['base']:.3f} | {least['this']:.3f} "
                      f"| {least['base'] / least['this']:.2f}× | {median['base']:.3f} | {median['this']:.3f} "
                      f"| {median['base'] / median['this']:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
