"""Decoding with a KV cache on CPU: one step (q_offset = t, one query against t + 1 keys)
against recomputing the full sequence at n = t + 1, in the same run; and the layout of one
row against the whole layout at n = 65,536.

    python benchmarks/decode_cpu.py [--n 4096] [--heads 8] [--dim 64] [--repeat 5]

Both paths are patterndsl's native CPU path (patterndsl/native.py) under torch.no_grad();
the step's output is checked against the full computation's last row before timing.
"""
from __future__ import annotations

import argparse

import torch

import patterndsl
from patterndsl.layout import block_layout
from isolated import best_time

PATTERN = "(window(256, 0) | cols(0..8)) & causal"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    n, heads, dim = args.n, args.heads, args.dim
    compiled = patterndsl.compile(PATTERN, n)
    q, k, v = (torch.randn(1, heads, n, dim) for _ in range(3))
    print(f"pattern: {PATTERN}; heads {heads}, head_dim {dim}, float32, torch threads {torch.get_num_threads()}")
    print("| n_kv (step t = n_kv - 1) | decode step (q_offset) | recompute full sequence | ratio |")
    print("|---:|---:|---:|---:|")
    with torch.no_grad():
        for n_kv in (n // 4, n // 2, n):
            t = n_kv - 1
            at = compiled.at(n_kv)  # compiled once per length (cached), outside the timing

            def step():
                return patterndsl.attention(q[:, :, t:t + 1], k[:, :, :n_kv], v[:, :, :n_kv], at, q_offset=t,
                                            backend="native")

            def full():
                return patterndsl.attention(q[:, :, :n_kv], k[:, :, :n_kv], v[:, :, :n_kv], at,
                                            backend="native")

            torch.testing.assert_close(step()[:, :, 0], full()[:, :, t], rtol=1e-5, atol=1e-5)
            a, b = best_time(step, args.repeat), best_time(full, args.repeat)
            print(f"| {n_kv:,} | {a * 1e3:.2f} ms | {b * 1e3:.1f} ms | {b / a:.0f}× |")
    # compiled.at: a new length (resolve + simplify) against a cached one
    fresh = patterndsl.compile(PATTERN, 16)
    cold = best_time(lambda: fresh.at(fresh.n + 1 + len(fresh._lengths.entries) * 7919), 3)
    warm = best_time(lambda: compiled.at(n), 100)
    print(f"\ncompiled.at(n): a new length {cold * 1e3:.2f} ms, a cached one {warm * 1e6:.1f} µs")
    big = 65536
    pattern = patterndsl.compile(PATTERN, big).pattern()
    one_row = best_time(lambda: block_layout(pattern, big, 128, 128, q_offset=big - 1, q_len=1), args.repeat)
    whole = best_time(lambda: block_layout(pattern, big, 128, 128), args.repeat)
    print(f"layout at n = {big:,}, blocks 128: one row (q_offset = n - 1) {one_row * 1e3:.2f} ms, "
          f"the whole layout {whole * 1e3:.1f} ms ({whole / one_row:.0f}×)")


if __name__ == "__main__":
    main()
