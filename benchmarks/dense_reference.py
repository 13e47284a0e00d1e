"""Dense reference masks: patterndsl's evaluator against FlexAttention's `create_mask`.

    python benchmarks/dense_reference.py [--n 16384] [--repeat 3]

For every example, the time to build the full dense mask with
`CompiledPattern.dense_all()`; for the patterns that have a hand-written
FlexAttention `mask_mod`, also torch's `create_mask` (which evaluates the
mask_mod on all n² pairs) in the same run, and the ratio. The issue's target:
a dense mask at n = 16,384 in under 2 s. Best of --repeat runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.nn.attention.flex_attention import create_mask

import patterndsl
from isolated import best_time

EXAMPLES = Path(__file__).parent.parent / "examples"


def _design_card(b, h, q, kv):
    return ((q - kv).abs() <= 64) | ((q - kv) % 128 == 0) | (q < 8) | (kv < 8)


def _sinks(b, h, q, kv):
    return (((q - kv) >= 0) & ((q - kv) <= 1019) | (kv < 4)) & (kv <= q)


def _star(b, h, q, kv):
    return ((q - kv).abs() <= 1) | (q == 0) | (kv == 0)


RIVALS = {"design_card": _design_card, "sinks": _sinks, "star": _star}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"n = {args.n}, best of {args.repeat}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| example | layers×heads | patterndsl dense (s) | create_mask (s) | create_mask / patterndsl |")
    print("|---|---|---|---|---|")
    for path in sorted(EXAMPLES.glob("*.spat")):
        compiled = patterndsl.compile(path, n=args.n, memory_budget=16 << 30)
        ours = best_time(compiled.dense_all, args.repeat)
        rival = RIVALS.get(path.stem)
        if rival is not None:
            expected = compiled.mask()
            got = create_mask(rival, None, None, args.n, args.n, device="cpu")[0, 0]
            assert torch.equal(got, expected), f"the rival mask_mod for {path.stem} is not the same pattern"
            theirs = best_time(lambda: create_mask(rival, None, None, args.n, args.n, device="cpu"), args.repeat)
            columns = f"{theirs:.2f} | {theirs / ours:.2f}×"
        else:
            columns = "– | –"
        print(f"| {path.stem} | {compiled.layers}×{compiled.heads} | {ours:.2f} | {columns} |")


if __name__ == "__main__":
    main()
