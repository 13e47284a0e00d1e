"""The native CPU path (patterndsl/native.py) against the dense reference and FlexAttention.

    python benchmarks/native_cpu.py                         # n = 4096 and 16384, three patterns
    python benchmarks/native_cpu.py --n 1024 --patterns window_global   # to try it out

For each pattern and n, each in a fresh subprocess (so that its peak memory is its own):

- **native** (`patterndsl.native.native_attention`, for softmax, sparsemax and
  entmax(1.5)): cold forward (compile the pattern, build the layout and the plan, one
  forward pass), warm forward and warm forward + backward (best of --repeat), and the
  peak memory of a forward + backward above what the process held before (q, k, v
  made, nothing of patterndsl computed);
- **dense**: `patterndsl.attention_reference` (SDPA with the dense mask), the same
  numbers, softmax;
- **flex**: `patterndsl.attention(..., backend="flex")`, compiled FlexAttention with
  our block mask: cold (mask and compilation included) and warm forward, softmax
  (FlexAttention has no backward on CPU).

B = 1, H = 4, D = 64, fp32, block 128. torch runs one intra-op thread (--threads): the
machine's cores are shared, and with two threads on an oversubscribed machine every
operation waits for its straggler thread, which measures the scheduler, not the code.
The outputs are compared with the dense reference's (max |difference|).
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from isolated import best_time, case_parser, in_subprocess, parse_or_run_case

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = {  # name: (source, layer)
    "window_global": ("window(256) | global(0..8)", 0),
    "strided_layer1": (ROOT / "examples" / "strided.spat", 1),
    "causal_window": ("window(256, 0)", 0),
}
MAPS = ("softmax", "sparsemax", "entmax(1.5)")
BATCH, HEADS, DIM, BLOCK = 1, 4, 64, 128


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(pattern: str, n: int, method: str, prob: str, repeat: int, threads: int, out_path: str) -> dict:
    import torch

    import patterndsl
    from patterndsl.native import native_attention

    torch.set_num_threads(threads)
    source, layer = PATTERNS[pattern]
    text = source.read_text() if isinstance(source, Path) else source
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(BATCH, HEADS, n, DIM, generator=generator).requires_grad_(method != "flex")
               for _ in range(3))
    before = _peak_mib()
    start = time.perf_counter()
    compiled = patterndsl.compile(f"prob {prob}\n{text}", n, memory_budget=1 << 40)

    def forward():
        if method == "native":
            return native_attention(q, k, v, compiled, layer, block_size=BLOCK)
        if method == "dense":
            return patterndsl.attention_reference(q, k, v, compiled, layer)
        return patterndsl.attention(q, k, v, compiled, layer, block_size=BLOCK, backend="flex")

    with torch.no_grad():
        out = forward()
    result = {"cold": time.perf_counter() - start}
    torch.save(out, out_path)

    if method != "flex":
        forward().sum().backward()  # the first forward + backward sets the peak
        result["peak_mib"] = _peak_mib() - before
        result["backward"] = best_time(lambda: forward().sum().backward(), repeat)
    with torch.no_grad():
        result["warm"] = best_time(forward, repeat)
    return result


def spawn(*case, timeout: float) -> dict:
    return in_subprocess(__file__, list(case), timeout)


def main() -> None:
    parser = case_parser(__doc__.splitlines()[0], PATTERNS, repeat=2, timeout=1200)
    parser.add_argument("--threads", type=int, default=1)
    args = parse_or_run_case(parser, run_case)

    import tempfile

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} thread(s), B={BATCH} H={HEADS} "
          f"D={DIM} fp32, block {BLOCK}, warm = best of {args.repeat}\n")
    print("| pattern | n | method | ρ | cold fwd (s) | warm fwd (s) | fwd + bwd (s) | peak fwd + bwd (MiB) "
          "| max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for pattern in args.patterns:
            for n in args.n:
                rows = [("dense", "softmax"), ("flex", "softmax")] + [("native", prob) for prob in MAPS]
                outputs = {}
                for method, prob in rows:
                    path = str(Path(scratch) / f"{method}_{prob}.pt")
                    got = spawn(pattern, n, method, prob, args.repeat, args.threads, path, timeout=args.timeout)
                    if "error" in got:
                        print(f"| {pattern} | {n:,} | {method} | {prob} | {got['error']} |||||", flush=True)
                        continue
                    outputs[method, prob] = torch.load(path)
                    # softmax rows against the dense reference (the tests check the other maps)
                    reference = outputs.get(("dense", "softmax")) if prob == "softmax" and method != "dense" else None
                    diff = "" if reference is None else f"{(outputs[method, prob] - reference).abs().max().item():.1e}"
                    backward = f"{got['backward']:.2f}" if "backward" in got else "—"
                    peak = f"{got['peak_mib']:,.0f}" if "peak_mib" in got else "—"
                    print(f"| {pattern} | {n:,} | {method} | {prob} | {got['cold']:.2f} | {got['warm']:.3f} "
                          f"| {backward} | {peak} | {diff} |", flush=True)


if __name__ == "__main__":
    main()
