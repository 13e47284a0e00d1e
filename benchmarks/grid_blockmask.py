"""NATTEN 7 × 7 BlockMask build: patterndsl against compiled `create_block_mask`.

    python benchmarks/grid_blockmask.py               # 128 × 128 and 256 × 256 images
    python benchmarks/grid_blockmask.py --sides 128   # one size

For NATTEN 7 × 7 (Hassani et al. 2023) on a G × G image, in raster order and tile by
tile (`tile=(8, 16)`: one tile is one FlexAttention block of 128 tokens), this times
building the FlexAttention BlockMask (block 128, 1 head):

- **patterndsl**: `patterndsl.compile(source, n).block_mask(128)` — the grid's keys
  listed from its neighbourhood box, the block layout from them; a fresh compile each
  call (nothing cached). Cold is the first call in the process, warm the best of three.
- **create_block_mask compiled**: `torch.compile(create_block_mask)` with a hand-written
  mask_mod of NATTEN's rule over (q_idx, kv_idx) (the coordinates from the token order,
  the clamped window), cold = the first call (compiling), warm = the best of three more.

Both masks are checked to hold the same blocks (kv_num_blocks + full_kv_num_blocks per
row). Also printed: the layout's blocks touched, its block sparsity (the fraction of
block pairs never computed) and efficiency (pairs connected / pairs computed). One
process for all rows (not isolated per method as benchmarks/block_mask.py is).
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.nn.attention.flex_attention import create_block_mask

import patterndsl

BLOCK = 128
K = 7


def natten_mask_mod(side: int, tile):
    """NATTEN's rule, written by hand: start = clamp(x − 3, 0, side − 7) per axis."""
    def coords(t):
        if tile is None:
            return t // side, t % side
        th, tw = tile
        per, across = th * tw, side // tw
        tid, inner = t // per, t % per
        return (tid // across) * th + inner // tw, (tid % across) * tw + inner % tw

    def mask_mod(b, h, q_idx, kv_idx):
        rq, cq = coords(q_idx)
        rk, ck = coords(kv_idx)
        sr = torch.clamp(rq - K // 2, 0, side - K)
        sc = torch.clamp(cq - K // 2, 0, side - K)
        return (rk >= sr) & (rk < sr + K) & (ck >= sc) & (ck < sc + K)

    return mask_mod


def best_of(build, repeats=3):
    best, out = float("inf"), None
    for _ in range(repeats):
        out = None
        start = time.perf_counter()
        out = build()
        best = min(best, time.perf_counter() - start)
    return best, out


def blocks_per_row(mask):
    return (mask.kv_num_blocks + mask.full_kv_num_blocks).reshape(-1)


def row(side: int, tile) -> dict:
    n = side * side
    source = f"grid({side}, {side}" + (f", tile=({tile[0]}, {tile[1]})" if tile else "") + f") {{ natten({K}, {K}) }}"

    def ours():
        return patterndsl.compile(source, n, memory_budget=1 << 40).block_mask(BLOCK)

    start = time.perf_counter()
    mine = ours()
    our_cold = time.perf_counter() - start
    our_warm, mine = best_of(ours)

    builder = torch.compile(create_block_mask)
    mask_mod = natten_mask_mod(side, tile)
    start = time.perf_counter()
    theirs = builder(mask_mod, 1, 1, n, n, device="cpu", BLOCK_SIZE=BLOCK)
    their_cold = time.perf_counter() - start
    their_warm, theirs = best_of(lambda: builder(mask_mod, 1, 1, n, n, device="cpu", BLOCK_SIZE=BLOCK))
    same = bool(torch.equal(blocks_per_row(mine).cpu(), blocks_per_row(theirs).cpu()))

    layout = patterndsl.compile(source, n).layout(block_size=BLOCK)
    grid_blocks = layout.num_q_blocks * layout.num_k_blocks
    return {"source": source, "n": n, "ours_cold": our_cold, "ours_warm": our_warm, "rival_cold": their_cold,
            "rival_warm": their_warm, "same_blocks": same, "blocks": layout.num_blocks,
            "partial": layout.num_partial, "sparsity": 1 - layout.num_blocks / grid_blocks,
            "efficiency": layout.efficiency()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", nargs="+", type=int, default=[128, 256])
    args = parser.parse_args()
    print("| grid | order | n | ours cold s | ours warm s | compiled cold s | compiled warm s | warm ratio "
          "| same blocks | blocks (partial) | block sparsity | efficiency |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for side in args.sides:
        for tile in (None, (8, 16)):
            r = row(side, tile)
            order = "raster" if tile is None else "tile=(8, 16)"
            print(f"| {side} × {side} | {order} | {r['n']:,} | {r['ours_cold']:.3f} | {r['ours_warm']:.3f} "
                  f"| {r['rival_cold']:.2f} | {r['rival_warm']:.3f} | {r['rival_warm'] / r['ours_warm']:.1f}× "
                  f"| {'yes' if r['same_blocks'] else 'NO'} | {r['blocks']:,} ({r['partial']:,}) "
                  f"| {r['sparsity']:.2%} | {r['efficiency']:.1%} |", flush=True)


if __name__ == "__main__":
    main()
