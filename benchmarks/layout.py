"""The block layout alone: build time and peak memory of `block_layout`, up to n = 2^20.

    python benchmarks/layout.py                    # every case below
    python benchmarks/layout.py --n 65536 1048576  # chosen sizes

benchmarks/block_mask.py measures the whole FlexAttention BlockMask against
`create_block_mask`; this measures the pass that both our BlockMask and our
Triton kernels consume. Each case runs in a fresh subprocess: "cold" is the first
`block_layout` call there, "warm" the best of three more on a freshly compiled
pattern (nothing cached); "peak" is the largest memory the pass allocated
(tracemalloc, numpy included), not the interpreter's. The pattern's connection
count (for the efficiency column) is computed after the clock stops.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = {
    "window(256) | global(0..8)": "window(256) | global(0..8)",
    "longformer": ROOT / "examples" / "longformer.spat",
    "sinks": ROOT / "examples" / "sinks.spat",
    "strided layer 0": ROOT / "examples" / "strided.spat",
    "logsparse": ROOT / "examples" / "logsparse.spat",
    "bigbird": ROOT / "examples" / "bigbird.spat",
}
LARGEST = {"bigbird": 32768, "logsparse": 262144}  # beyond: the layout itself is (n/B)²-sized

CASE = r"""
import json, sys, time, tracemalloc
from pathlib import Path
sys.path.insert(0, {root!r})
import patterndsl
from patterndsl.layout import block_layout
source, n = {source!r}, {n}
source = Path(source) if source.endswith(".spat") else source
pattern = patterndsl.compile(source, n).pattern(0, 0)
tracemalloc.start()
start = time.perf_counter(); layout = block_layout(pattern, n, 128); cold = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
warm = []
for _ in range(3):
    fresh = patterndsl.compile(source, n).pattern(0, 0)
    start = time.perf_counter(); block_layout(fresh, n, 128); warm.append(time.perf_counter() - start)
print(json.dumps({{"cold": cold, "warm": min(warm), "peak": peak, "blocks": layout.num_blocks,
                  "efficiency": layout.efficiency()}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[4096, 32768, 262144, 1048576])
    args = parser.parse_args()
    print("| pattern | n | blocks (of 128 × 128) | block efficiency | cold (s) | warm (s) | peak (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for name, source in PATTERNS.items():
        for n in args.n:
            if n > LARGEST.get(name, 1 << 62):
                continue
            code = CASE.format(root=str(ROOT), source=str(source), n=n)
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if done.returncode:
                print(f"| {name} | {n:,} | failed: {done.stderr.strip().splitlines()[-1]} |||||")
                continue
            r = json.loads(done.stdout)
            label = name.replace("|", "\\|")
            print(f"| {label} | {n:,} | {r['blocks']:,} | {r['efficiency']:.0%} | {r['cold']:.3f} | "
                  f"{r['warm']:.3f} | {r['peak'] / 2**20:.0f} |", flush=True)


if __name__ == "__main__":
    main()
