"""The native CPU path with run-time segments: per-batch-row block skipping.

    python benchmarks/segments_native.py --n 16384 --batch 4 --heads 2 --dim 64

`segment & causal` over packed documents of random lengths (each batch row its own,
uniform in 1 … n/4, the last one cut at n), through `patterndsl.native.native_attention`
with each of its ways to pick key blocks (native.SEGMENT_SKIPPING):

- **per_row**: each batch row computes only the key blocks its query blocks' documents
  reach (segments.segment_block_ranges of that row; the default);
- **union**: every batch row computes the union over the batch of those ranges (what the
  path did before per-row skipping);
- **static**: the layout that holds for every segmentation (`causal`), whatever the ids;

and the dense reference (`patterndsl.attention_reference`: SDPA with the [B, n, n] mask
built from the same ids), forward only. Forward (and forward + backward with --backward)
warm, best of --repeat, one torch thread (the machine is shared); every output is
compared with the dense reference's.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from isolated import best_of
from segments_layout import random_ids


def main() -> None:
    import patterndsl
    from patterndsl import native

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backward", action="store_true")
    parser.add_argument("--no-dense", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, batch = args.n, args.batch
    rng = np.random.default_rng(0)
    ids = random_ids(batch, n, rng)
    compiled = patterndsl.compile("segment & causal", n)
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, args.heads, n, args.dim, requires_grad=args.backward) for _ in range(3))
    rows = {}
    with torch.no_grad():
        if not args.no_dense:
            rows["dense reference"] = best_of(lambda: patterndsl.attention_reference(q, k, v, compiled, segments=ids),
                                           1)
    reference = rows.get("dense reference", (None, None))[1]
    for mode in ("per_row", "union", "static"):
        native.SEGMENT_SKIPPING = mode
        native.native_attention(q[:, :, :128], k, v, compiled, segments=ids)  # caches the static table
        with torch.no_grad():
            rows[mode] = best_of(lambda: native.native_attention(q, k, v, compiled, segments=ids), args.repeat)
        if args.backward:
            def step():
                out = native.native_attention(q, k, v, compiled, segments=ids)
                out.sum().backward()
                return out.detach()
            rows[mode + " fwd+bwd"] = best_of(step, args.repeat)
    native.SEGMENT_SKIPPING = "per_row"
    docs = [int(np.unique(r).size) for r in ids.numpy()]
    print(f"n = {n}, batch {batch}, heads {args.heads}, dim {args.dim}, fp32, blocks of 128, documents per row "
          f"{docs}, best of {args.repeat} (dense: 1), torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| segment & causal | seconds | time / per_row | max abs diff vs dense |")
    print("|---|---|---|---|")
    for name, (seconds, out) in rows.items():
        base = rows["per_row fwd+bwd" if "bwd" in name else "per_row"][0]
        diff = "" if reference is None or "bwd" in name else f"{(out - reference).abs().max().item():.1e}"
        print(f"| {name} | {seconds:.2f} | {seconds / base:.1f}× | {diff} |")


if __name__ == "__main__":
    main()
