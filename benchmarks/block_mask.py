"""Building a FlexAttention BlockMask: patterndsl against `create_block_mask`.

    python benchmarks/block_mask.py                        # the full table
    python benchmarks/block_mask.py --quick                # small n only, to try it out
    python benchmarks/block_mask.py --rival-n 4096 8192 --ours-n 65536 --patterns window_global

For each pattern and n, each method runs in a fresh subprocess (so that its peak
resident memory, ru_maxrss, is its own) with an empty TorchInductor cache (so that
"cold" really compiles):

- **patterndsl**: `patterndsl.compile(source, n).block_mask(128)` for every layer — the
  block layout from the primitives' structure, the mask_mod's tables, the BlockMask
  with our transposed lists. Cold is the first call in the process, warm the best of
  three more calls, each on a freshly compiled pattern (nothing cached).
- **create_block_mask eager**: torch's `create_block_mask(mask_mod, 1, 1, n, n)`,
  which evaluates the mask_mod on all n² pairs (it materializes [n, n] tensors).
  Skipped above --eager-max-n, where it would exhaust memory (the issue measured
  16.8 GB at n = 32,768).
- **create_block_mask compiled**: `torch.compile(create_block_mask)`; cold is the first
  call (compilation included), warm the best of three more.

The rivals get the mask_mod that patterndsl generates for the pattern — plain
torch comparisons, the same as one would write by hand (for bigbird's random keys,
a table lookup) — built before the clock starts. Block size 128 (FlexAttention's
default); heads 1. Peak RSS includes the interpreter and torch (the "baseline"
column: RSS after the imports).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from isolated import best_of, in_subprocess, peak_rss_mib

ROOT = Path(__file__).resolve().parent.parent
WARM_REPEATS = 3
PATTERNS = {
    "window_global": "window(256) | global(0..8)",
    "strided": ROOT / "examples" / "strided.spat",
    "bigbird": ROOT / "examples" / "bigbird.spat",
}
BLOCK = 128
METHODS = ("ours", "eager", "compiled")


def run_case(pattern: str, n: int, method: str) -> dict:
    """In the subprocess: time one method, report as JSON."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask

    import patterndsl
    from patterndsl.targets import flex

    source = PATTERNS[pattern]
    baseline = peak_rss_mib()
    if method == "ours":
        def build():
            compiled = patterndsl.compile(source, n, memory_budget=1 << 40)
            return [compiled.block_mask(BLOCK, layer) for layer in range(compiled.layers)]

        start = time.perf_counter()
        masks = build()
        cold = time.perf_counter() - start
        del masks
        warm, masks = best_of(build, WARM_REPEATS)
    else:
        compiled = patterndsl.compile(source, n, memory_budget=1 << 40)
        mask_mods = [flex.mask_mod(compiled, layer, BLOCK) for layer in range(compiled.layers)]
        builder = create_block_mask if method == "eager" else torch.compile(create_block_mask)

        def build():
            return [builder(mask_mod, 1, 1, n, n, device="cpu", BLOCK_SIZE=BLOCK) for mask_mod in mask_mods]

        start = time.perf_counter()
        masks = build()
        cold = time.perf_counter() - start
        if method == "eager":  # eager has no compilation: report the best of two as both
            del masks
            start = time.perf_counter()
            masks = build()
            warm = time.perf_counter() - start
            cold = warm = min(cold, warm)
        else:
            warm, masks = best_of(build, WARM_REPEATS)
    blocks = sum(int(m.kv_num_blocks.sum() + m.full_kv_num_blocks.sum()) for m in masks)
    return {"cold": cold, "warm": warm, "peak_mib": peak_rss_mib(), "baseline_mib": baseline, "blocks": blocks}


def spawn(pattern: str, n: int, method: str, timeout: float) -> dict:
    return in_subprocess(__file__, [pattern, n, method], timeout)


def fmt_time(result: dict, key: str) -> str:
    return f"{result[key]:.3f}" if "error" not in result else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=list(PATTERNS))
    parser.add_argument("--rival-n", nargs="+", type=int, default=[4096, 8192, 16384, 32768])
    parser.add_argument("--ours-n", nargs="+", type=int, default=[65536, 262144, 1 << 20],
                        help="larger n, for patterndsl alone")
    parser.add_argument("--eager-max-n", type=int, default=16384,
                        help="largest n for eager create_block_mask (it needs ~16 n² bytes)")
    parser.add_argument("--bigbird-max-n", type=int, default=65536,
                        help="largest n for bigbird: token-level random keys touch every block, "
                             "so its layout and tables grow like (n / 128)²")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--quick", action="store_true", help="n = 1024 and 2048, and 8192 for ours")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*json.loads(args.case))))
        return
    if args.quick:
        args.rival_n, args.ours_n = [1024, 2048], [8192]

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, block {BLOCK}, one subprocess per cell\n")
    print("| pattern | n | patterndsl cold / warm (s) | peak RSS (MiB) | eager (s) | eager RSS (MiB) "
          "| compiled cold / warm (s) | compiled RSS (MiB) | eager / ours (warm) | compiled warm / ours warm "
          "| compiled cold / ours cold | same blocks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for pattern in args.patterns:
        for n in sorted(set(args.rival_n) | set(args.ours_n)):
            if pattern == "bigbird" and n > args.bigbird_max_n:
                continue
            ours = spawn(pattern, n, "ours", args.timeout)
            rival = n in args.rival_n
            eager = spawn(pattern, n, "eager", args.timeout) if rival and n <= args.eager_max_n else None
            compiled = spawn(pattern, n, "compiled", args.timeout) if rival else None

            def cell(result, key="warm"):
                if result is None:
                    return "skipped" if rival else ""
                return result.get("error") or f"{result[key]:.3f}"

            def rss(result):
                return "" if result is None or "error" in result else f"{result['peak_mib']:.0f}"

            def ratio(theirs, key_theirs, key_ours):
                if theirs is None or "error" in theirs or "error" in ours:
                    return ""
                return f"{theirs[key_theirs] / ours[key_ours]:.1f}×"

            counts = {r["blocks"] for r in (ours, eager, compiled) if r is not None and "error" not in r}
            agree = "" if not rival else ("yes" if len(counts) == 1 else "NO")
            ours_cells = (ours.get("error") or f"{ours['cold']:.3f} / {ours['warm']:.3f}")
            compiled_cells = (cell(compiled) if compiled is None or "error" in compiled
                              else f"{compiled['cold']:.2f} / {compiled['warm']:.3f}")
            print(f"| {pattern} | {n:,} | {ours_cells} | {rss(ours)} (base {ours.get('baseline_mib', 0):.0f}) "
                  f"| {cell(eager)} | {rss(eager)} | {compiled_cells} | {rss(compiled)} "
                  f"| {ratio(eager, 'warm', 'warm')} | {ratio(compiled, 'warm', 'warm')} "
                  f"| {ratio(compiled, 'cold', 'cold')} | {agree} |", flush=True)


if __name__ == "__main__":
    main()
