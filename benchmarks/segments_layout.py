"""Per-batch block layout for packed documents: `segment & causal` with run-time ids.

    python benchmarks/segments_layout.py --n 32768 --batch 8 --block 128 --repeat 3

patterndsl: `patterndsl.targets.flex.segment_block_mask` — the static layout (cached
once per compiled pattern) cut to `segments.segment_block_ranges` of the ids, a
FlexAttention BlockMask [B, 1, …] built with torch ops over the block grid.
Rival, measured in the same run: FlexAttention's `create_block_mask` with the
attention-gym document mask_mod (`document_id[b, q] == document_id[b, kv]` and
`q >= kv`), compiled (`_compile=True`, warmed up once at the same shape before timing).
Both get the same random document lengths; the script checks that every block the
rival keeps is one patterndsl keeps too (patterndsl marks blocks partial: its
mask_mod decides the pairs).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def random_ids(batch: int, n: int, rng) -> torch.Tensor:
    rows = []
    for _ in range(batch):
        lengths = []
        while sum(lengths) < n:
            lengths.append(int(rng.integers(1, n // 4)))
        rows.append(np.repeat(np.arange(len(lengths)), lengths)[:n])
    return torch.tensor(np.stack(rows), dtype=torch.int32)


def main() -> None:
    import patterndsl
    from patterndsl.targets.flex import segment_block_mask, segment_mask_mod_factory
    from torch.nn.attention.flex_attention import create_block_mask

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=32768)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, batch, block = args.n, args.batch, args.block
    rng = np.random.default_rng(0)
    compiled = patterndsl.compile("segment & causal", n)
    make = segment_mask_mod_factory(compiled, 0, block)
    segment_block_mask(compiled, 0, random_ids(batch, n, rng), block, make=make)  # caches the static layout

    def rival(ids):
        def document_causal(b, h, q_idx, kv_idx):
            return (ids[b, q_idx] == ids[b, kv_idx]) & (q_idx >= kv_idx)

        return create_block_mask(document_causal, batch, None, n, n, device="cpu", BLOCK_SIZE=block,
                                 _compile=True)

    rival(random_ids(batch, n, rng))  # compile once at this shape
    ours, theirs = [], []
    for _ in range(args.repeat):
        ids = random_ids(batch, n, rng)
        start = time.perf_counter()
        mine = segment_block_mask(compiled, 0, ids, block, make=make)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        other = rival(ids)
        theirs.append(time.perf_counter() - start)
        kept = mine.to_dense().bool()
        rival_kept = other.to_dense().bool()
        assert not (rival_kept & ~kept).any(), "patterndsl dropped a block the rival keeps"
    best_ours, best_theirs = min(ours), min(theirs)
    print(f"n = {n}, batch {batch}, blocks of {block}, best of {args.repeat}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| layout build | patterndsl (ms) | create_block_mask compiled (ms) | ratio |")
    print("|---|---|---|---|")
    print(f"| segment & causal | {best_ours * 1e3:.1f} | {best_theirs * 1e3:.1f} | "
          f"{best_theirs / best_ours:.0f}× |")


if __name__ == "__main__":
    main()
