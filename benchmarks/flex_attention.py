"""CPU attention forward: `patterndsl.attention` against FlexAttention with torch's own
`create_block_mask`.

    python benchmarks/flex_attention.py                    # n = 4096 and 16384
    python benchmarks/flex_attention.py --n 1024 --patterns window_global   # to try it out

Both sides run `torch.compile(flex_attention)` on the CPU with the same mask_mod
(the one patterndsl generates: plain torch comparisons, and a table lookup for
bigbird's random keys); they differ in how the BlockMask is made:

- **patterndsl**: `patterndsl.attention(q, k, v, compiled, layer)`, which builds the
  BlockMask from the block layout and caches it with the compiled function;
- **rival**: `create_block_mask(mask_mod, 1, 1, n, n)` (eager, its default, which
  evaluates all n² pairs), then the compiled `flex_attention`.

Cold is the first call in a fresh process with an empty TorchInductor cache: block
mask plus compilation plus one forward (for patterndsl also parsing the pattern; for
the rival also building the mask_mod's tables, which a hand-written BigBird mask_mod
needs too). Warm is the best of --repeat forwards
after that (the rival's block mask already built, as a model would keep it).
B = 1, H = 4, D = 64, fp32, block 128; one subprocess per cell. The outputs of the
two sides are compared (max |difference|).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from isolated import case_parser, in_subprocess, parse_or_run_case

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = {  # name: (source, layer)
    "window_global": ("window(256) | global(0..8)", 0),
    "strided_layer1": (ROOT / "examples" / "strided.spat", 1),
    "bigbird": (ROOT / "examples" / "bigbird.spat", 0),
}
BATCH, HEADS, DIM, BLOCK = 1, 4, 64, 128


def run_case(pattern: str, n: int, method: str, repeat: int, out_path: str) -> dict:
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    import patterndsl
    from patterndsl.targets import flex

    source, layer = PATTERNS[pattern]
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(BATCH, HEADS, n, DIM, generator=generator) for _ in range(3))
    start = time.perf_counter()
    if method == "ours":
        compiled = patterndsl.compile(source, n, memory_budget=1 << 40)

        def forward():
            return patterndsl.attention(q, k, v, compiled, layer, block_size=BLOCK)
    else:
        compiled = patterndsl.compile(source, n, memory_budget=1 << 40)
        start = time.perf_counter()  # from here: the mask_mod's tables (bigbird's random keys), as by hand
        mask_mod = flex.mask_mod(compiled, layer, BLOCK)
        block_mask = create_block_mask(mask_mod, 1, 1, n, n, device="cpu", BLOCK_SIZE=BLOCK)
        compiled_flex = torch.compile(flex_attention, dynamic=False)

        def forward():
            return compiled_flex(q, k, v, block_mask=block_mask)
    out = forward()
    cold = time.perf_counter() - start
    warm = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = forward()
        warm = min(warm, time.perf_counter() - start)
    torch.save(out, out_path)
    return {"cold": cold, "warm": warm}


def spawn(pattern: str, n: int, method: str, repeat: int, out_path: str, timeout: float) -> dict:
    return in_subprocess(__file__, [pattern, n, method, repeat, out_path], timeout)


def main() -> None:
    args = parse_or_run_case(case_parser(__doc__.splitlines()[0], PATTERNS, repeat=3, timeout=900), run_case)

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, B={BATCH} H={HEADS} D={DIM} fp32, block {BLOCK}, "
          f"warm = best of {args.repeat}\n")
    print("| pattern | n | patterndsl cold (s) | rival cold (s) | cold ratio (rival / ours) "
          "| patterndsl warm (s) | rival warm (s) | warm ratio (rival / ours) | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for pattern in args.patterns:
            for n in args.n:
                paths = {m: str(Path(scratch) / f"{m}.pt") for m in ("ours", "rival")}
                ours = spawn(pattern, n, "ours", args.repeat, paths["ours"], args.timeout)
                rival = spawn(pattern, n, "rival", args.repeat, paths["rival"], args.timeout)
                if "error" in ours or "error" in rival:
                    print(f"| {pattern} | {n:,} | {ours.get('error', '')} | {rival.get('error', '')} |||||", flush=True)
                    continue
                diff = (torch.load(paths["ours"]) - torch.load(paths["rival"])).abs().max().item()
                print(f"| {pattern} | {n:,} | {ours['cold']:.2f} | {rival['cold']:.2f} "
                      f"| {rival['cold'] / ours['cold']:.2f}× | {ours['warm']:.3f} | {rival['warm']:.3f} "
                      f"| {rival['warm'] / ours['warm']:.2f}× | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
