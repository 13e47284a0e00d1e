"""GPU benchmark of the generated Triton block-sparse attention kernels.

    python benchmarks/gpu_attention.py --check --out gpu.md

--check first runs forward and backward of every pattern below (and a few more) at a
small ragged n in bfloat16, float16 and float32 against the float64 dense-mask reference,
printing PASS or FAIL per case; two of its cases cut every block list into pieces of one
or two blocks (max_blocks_per_program), so that the kernels of cut lists and their merges
are checked on the GPU too; some add a random key_bias (its gradient checked too), and the
same patterns run under `prob sparsemax` and `prob entmax(1.5)` (the reference honours the
file's prob). Then, in bfloat16 for head dims 128 and 64 and n from 8k to 128k, it times
forward and backward of

    - our kernels (patterndsl.kernels.triton_attention, blocks of 128),
    - torch.compile(flex_attention) with the same block layout (the BlockMask of
      patterndsl.targets.flex.block_mask: the same partial/full block lists and a mask_mod
      generated from the same IR),
    - dense F.scaled_dot_product_attention (is_causal for the causal patterns; skipped
      above --max-dense-n, where it takes too long),

and, for the first pattern at the first head dim, our kernels with a key bias and with
sparsemax and 1.5-entmax (VARIANTS; compare with the softmax row above them), and prints
a markdown table, also written to --out.

Work is counted over the computed blocks: a forward pass does 4·D flops per in-bounds
pair of every partial or full block (QK^T and PV, 2·D each; layout.computed_pairs()),
a backward pass 2.5 times that (QK^T again, dP, dV, dQ, dK: 5 matmuls against 2). Dense
SDPA's TFLOP/s count its own work (n² pairs, or n(n+1)/2 with is_causal). Speedups
compare times, which is what a model sees.

The whole run stays near --budget seconds (default 230), in this order, each step as
time allows: at the first head dim and the two smallest sizes, ours, SDPA and
FlexAttention (whose torch.compile per shape is the slow part, ~5 s); then ours and SDPA
for the other rows; then FlexAttention for them. What is left out is marked "–"
and listed.

Backward is timed alone, as `out.backward(d_out, retain_graph=True)` on one kept graph,
the same way for ours, FlexAttention and SDPA. FlexAttention's compiled backward donates
its saved buffers by default, which forbids retain_graph: the benchmark turns that off
(torch._functorch.config.donated_buffer = False), which costs its backward nothing but
the buffer reuse. Tiles, warps and stages are the generated module's
TILES table (patterndsl/kernels/blocksparse.py), checked to fit sm_90 without register
spills in 16-bit: forward 128×64 tiles, 4 warps (8 at head dim 128), 3 stages;
backward 128×32 tiles (dQ: 128 queries looping over 32 keys; dK/dV: 128 keys looping
over 32 queries), 3 stages, 4 warps for dQ and 8 for dK/dV (8 for both at head dim 128).

--documents [N ...] instead times packed documents (issue 14): `segment & causal` with
run-time segment ids [batch, n] (a new random draw of document lengths per row), a training
step (fwd + bwd) and a decode step (one query at q_offset n - 1), against torch.compile'd
flex_attention with attention-gym's document mask_mod and create_block_mask (its time listed
apart: a training step with new documents pays it every batch, as ours pays its per-call
segment tables, which its times include). On CPU it is a smoke run of the setup in Triton's
interpreter: TRITON_INTERPRET=1 python benchmarks/gpu_attention.py --documents 256 --doc-batch 2 --no-flex.

Runs from the repository checkout: PYTHONPATH=. python benchmarks/gpu_attention.py.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import patterndsl  # noqa: E402
from patterndsl.kernels import triton_attention  # noqa: E402

BLOCK = 128

# (name, .spat source or file, layer, dense SDPA counterpart is causal, largest n to run)
PATTERNS = [
    ("window(256) | global(0..8)", "window(256) | global(0..8)", 0, False, None),
    ("strided.spat layer 0: window(√n-1, 0)", REPO / "examples" / "strided.spat", 0, True, None),
    ("strided.spat layer 1: stride(√n) & causal", REPO / "examples" / "strided.spat", 1, True, None),
    # Token-level random keys land in ~r·BLOCK different key blocks per query block, so at the
    # block level this is nearly dense (see the block-efficiency column) and its per-block
    # bitmaps grow with the blocks touched: it runs at the small sizes only. A block-random
    # primitive (BigBird's actual scheme) would keep it sparse.
    ("BigBird-like: window(192) | global(0..128) | random(3)",
     "window(192) | global(0..128) | random(3, seed=1)", 0, False, 16384),
    ("causal", "causal", 0, True, None),
]

# Variants of the first pattern, timed with our kernels alone (at the first head dim): a key
# bias, and the sparse probability maps (their thresholds take extra passes over each row).
VARIANTS = [(" + key_bias", {"key_bias": True}), (" · sparsemax", {"alpha": 2.0}), (" · entmax(1.5)", {"alpha": 1.5})]

CHECK_SOURCE = """\
let l = isqrt(n)
layers {
    window(256) | global(0..8)
    window(l - 1, 0)
    stride(l) & causal
    window(192) | global(0..128) | random(3, seed=1)
    causal
    rows(0..500) & window(3)
    heads {
        0..2: window(64, 0) | cols(0..4) | logsparse
        2..4: chunk(100) - self | summary(64, 2)
    }
}
"""

# A kernel error beyond FACTOR × the error of eager attention in the same dtype (both
# against float64), and beyond FLOOR × the largest reference value, is a FAIL.
CHECK_FACTOR = 8.0
CHECK_FLOOR = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def log(*parts):
    print(*parts, flush=True)


# ---- correctness -------------------------------------------------------------------------


def forward_backward(function, *inputs):
    """(out, and the gradient of each input) of ``function(*inputs[:-1])`` against ``inputs[-1]``."""
    *inputs, d_out = inputs
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = function(*inputs)
    return (out.detach(), *torch.autograd.grad(out, inputs, d_out))


def check_case(compiled, layer, dtype, head_dim, block, device, batch=2, heads=4, kv_heads=2, max_blocks=None,
               key_bias=False):
    """Ours against patterndsl.attention_reference (which honours the file's `prob`), in float64
    and eagerly in ``dtype``; with ``key_bias``, a random [batch, heads, n] bias and its gradient too."""
    generator = torch.Generator(device=device).manual_seed(1000 * layer + head_dim)
    n = compiled.n

    def draw(*shape):
        return torch.randn(*shape, device=device, generator=generator, dtype=torch.float32).to(dtype)

    q, k, v, d_out = (draw(batch, count, n, head_dim) for count in (heads, kv_heads, kv_heads, heads))
    inputs = (q, k, v) + ((draw(batch, heads, n),) if key_bias else ())

    def reference(q_, k_, v_, *bias):
        return patterndsl.attention_reference(q_, k_, v_, compiled, layer, **({"key_bias": bias[0]} if bias else {}))

    def kernels(q_, k_, v_, *bias):
        return triton_attention(q_, k_, v_, compiled, layer, block_size=block, max_blocks_per_program=max_blocks,
                                key_bias=bias[0] if bias else None)

    exact = forward_backward(reference, *(t.double() for t in inputs), d_out.double())
    eager = forward_backward(reference, *inputs, d_out)
    ours = forward_backward(kernels, *inputs, d_out)
    worst, notes = 0.0, []
    for name, mine, eager_value, want in zip(("out", "dq", "dk", "dv", "d key_bias"), ours, eager, exact):
        if not torch.isfinite(mine).all():
            return False, f"{name} has NaN/inf"
        error = (mine.double() - want).abs().max().item()
        eager_error = (eager_value.double() - want).abs().max().item()
        allowed = max(CHECK_FACTOR * eager_error, CHECK_FLOOR[dtype] * max(1.0, want.abs().max().item()))
        worst = max(worst, error / allowed)
        notes.append(f"{name} {error:.1e} (eager {eager_error:.1e})")
    allowed_rows = torch.stack([compiled.mask(layer, h) for h in range(compiled.heads)]).to(device).any(-1)
    empty = ~allowed_rows.expand(batch, heads, n)  # [pattern heads, n] -> [batch, heads, n]
    if empty.any() and not ((ours[0][empty] == 0).all() and (ours[1][empty] == 0).all()):
        return False, "an empty row has a nonzero output or dQ"
    return worst <= 1.0, ", ".join(notes) + f"; worst {worst:.2f} of allowed"


# The probability maps checked besides softmax: the same patterns under `prob sparsemax` and
# `prob entmax(1.5)` (the kernels read the file's prob; so does the reference).
CHECK_PROBS = ("softmax", "sparsemax", "entmax(1.5)")


def run_check(device, n) -> tuple[int, list[str]]:
    # (prob, dtype, head dim, block, max blocks per program: None = the default, which cuts no list
    # at this n; 1 or 2 cut nearly every list, to check the split kernels; with a key bias)
    cases = [("softmax", torch.bfloat16, 64, BLOCK, None, False), ("softmax", torch.float16, 64, BLOCK, None, False),
             ("softmax", torch.float32, 64, BLOCK, None, False), ("softmax", torch.bfloat16, 128, BLOCK, None, False),
             ("softmax", torch.float16, 96, 64, None, False),
             ("softmax", torch.bfloat16, 128, BLOCK, 2, False), ("softmax", torch.float32, 64, BLOCK, 1, False),
             ("softmax", torch.bfloat16, 64, BLOCK, None, True), ("softmax", torch.float32, 64, BLOCK, 1, True)]
    cases += [(prob, dtype, 64, BLOCK, max_blocks, bias) for prob in CHECK_PROBS[1:]
              for dtype, max_blocks, bias in ((torch.bfloat16, None, False), (torch.float32, None, True),
                                              (torch.float32, 1, False))]
    lines, failures, compiled = [], 0, {}
    log(f"## check: n = {n}, batch 2, 4 query heads, 2 key/value heads, vs float64 reference")
    for prob, dtype, head_dim, block, max_blocks, bias in cases:
        if prob not in compiled:
            compiled[prob] = patterndsl.compile(f"prob {prob}\n" + CHECK_SOURCE, n)
        for layer in range(compiled[prob].layers):
            name = (f"{prob} {str(dtype).replace('torch.', '')} D={head_dim} block={block}"
                    f"{f' cut to {max_blocks}' if max_blocks else ''}{' key bias' if bias else ''} layer {layer}")
            try:
                ok, detail = check_case(compiled[prob], layer, dtype, head_dim, block, device, max_blocks=max_blocks,
                                        key_bias=bias)
            except Exception as error:  # report and go on: the rest of the run still informs
                ok, detail = False, f"{type(error).__name__}: {error}"
                traceback.print_exc()
            failures += not ok
            line = f"{'PASS' if ok else 'FAIL'} {name}: {detail}"
            log(line)
            lines.append(line)
    log(f"check: {len(lines) - failures} PASS, {failures} FAIL")
    return failures, lines


# ---- timing --------------------------------------------------------------------------------


def bench_ms(fn, grad_to_none=None) -> float:
    if torch.cuda.is_available():
        import triton.testing

        fn()  # compile first: do_bench sizes its repetitions from its first calls
        torch.cuda.synchronize()
        return triton.testing.do_bench(fn, warmup=10, rep=40, grad_to_none=grad_to_none)
    fn()  # CPU (a smoke run): one warm call, then the mean of three
    start = time.perf_counter()
    for _ in range(3):
        fn()
    return (time.perf_counter() - start) / 3 * 1e3


def time_fwd_bwd(function, q, k, v, d_out):
    """(forward ms, backward ms) of ``function``; backward is timed alone on a kept graph."""
    fwd = bench_ms(lambda: function(q, k, v))
    out = function(q, k, v)
    bwd = bench_ms(lambda: out.backward(d_out, retain_graph=True), grad_to_none=[q, k, v])
    return fwd, bwd


def make_flex(compiled, layer, device):
    from torch.nn.attention.flex_attention import flex_attention

    # The compiled backward would otherwise donate (reuse) its saved buffers, and then refuse
    # retain_graph=True, which time_fwd_bwd needs to time backward alone on one kept graph.
    import torch._functorch.config as functorch_config

    if hasattr(functorch_config, "donated_buffer"):
        functorch_config.donated_buffer = False

    from patterndsl.targets.flex import block_mask

    mask = block_mask(compiled, layer, BLOCK, device)
    compiled_flex = torch.compile(flex_attention, dynamic=False)
    return lambda q, k, v: compiled_flex(q, k, v, block_mask=mask)


def tflops(flops, ms):
    return flops / (ms * 1e-3) / 1e12 if ms and ms > 0 else float("nan")


def fmt(value, digits=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


class Row:
    def __init__(self, name, head_dim, n, compiled, layer, causal, options=None):
        self.name, self.head_dim, self.n, self.layer, self.causal = name, head_dim, n, layer, causal
        self.options = options or {}  # VARIANTS: key_bias, alpha (ours only)
        self.compiled = compiled
        layout = compiled.layout(layer, 0, BLOCK)
        self.blocks = layout.num_blocks
        self.density = layout.num_blocks / (layout.num_q_blocks * layout.num_k_blocks)
        self.efficiency = layout.efficiency()
        self.pairs = layout.computed_pairs()
        self.ours = self.flex = self.sdpa = None  # (fwd ms, bwd ms)
        self.flex_compile_s = None
        self.note = ""


def shapes(head_dim):
    """(batch, heads): model width 1024 (16 heads of 64, 8 of 128), batch 1."""
    return 1, 1024 // head_dim


def inputs(n, head_dim, device, dtype=torch.bfloat16):
    batch, heads = shapes(head_dim)
    generator = torch.Generator(device=device).manual_seed(n + head_dim)
    return [torch.randn(batch, heads, n, head_dim, device=device, dtype=dtype, generator=generator).requires_grad_()
            for _ in range(3)] + [torch.randn(batch, heads, n, head_dim, device=device, dtype=dtype, generator=generator)]


def cut_lists(compiled, max_blocks):
    """How the generated module cuts long block lists (patterndsl.kernels.generate.work_items)."""
    from patterndsl.kernels import kernel_module

    module = kernel_module(compiled, BLOCK, max_blocks)
    return (f"cut lists: Q {module.NUM_Q_SPLITS} into {module.NUM_Q_SLOTS} pieces, "
            f"K {module.NUM_K_SPLITS} into {module.NUM_K_SLOTS} pieces")


def measure_ours_and_sdpa(row, device, max_dense_n, max_blocks=None):
    q, k, v, d_out = inputs(row.n, row.head_dim, device)
    options = dict(row.options)
    if options.pop("key_bias", False):
        options["key_bias"] = torch.randn(q.shape[:3], device=device, dtype=q.dtype).requires_grad_()
    row.ours = time_fwd_bwd(lambda q_, k_, v_: triton_attention(q_, k_, v_, row.compiled, row.layer, block_size=BLOCK,
                                                                max_blocks_per_program=max_blocks, **options),
                            q, k, v, d_out)
    if row.n <= max_dense_n and not row.options:
        row.sdpa = time_fwd_bwd(lambda q_, k_, v_: F.scaled_dot_product_attention(q_, k_, v_, is_causal=row.causal),
                                q, k, v, d_out)


def measure_flex(row, device):
    q, k, v, d_out = inputs(row.n, row.head_dim, device)
    start = time.perf_counter()
    flex = make_flex(row.compiled, row.layer, device)
    flex(q, k, v).backward(d_out)  # compile forward and backward
    if device.type == "cuda":
        torch.cuda.synchronize()
    row.flex_compile_s = time.perf_counter() - start
    row.flex = time_fwd_bwd(flex, q, k, v, d_out)


def table(rows, device_name) -> str:
    lines = [
        f"bfloat16, batch 1, heads × head dim = 1024, blocks of {BLOCK}; {device_name}; "
        f"torch {torch.__version__}, triton {_triton_version()}",
        "",
        "TFLOP/s over computed blocks (fwd 4·D per pair, bwd 2.5× that); SDPA's over its own dense work. "
        "fwd/bwd vs flex = flex's time / ours (targets: fwd ≥ 1.0×, bwd ≥ 0.9×); "
        "% of SDPA = our TFLOP/s / SDPA's (target ≥ 70%); vs SDPA = SDPA's time / ours (fwd+bwd).",
        "",
        "| pattern | D | n | blocks computed | block eff. | ours fwd ms | ours bwd ms | ours fwd TFLOP/s | "
        "ours bwd TFLOP/s | flex fwd ms | flex bwd ms | flex fwd TFLOP/s | fwd vs flex | bwd vs flex | "
        "SDPA fwd ms | SDPA bwd ms | SDPA fwd TFLOP/s | % of SDPA fwd / bwd | vs SDPA |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        batch, heads = shapes(row.head_dim)
        flops = 4 * row.head_dim * row.pairs * batch * heads
        dense_pairs = row.n * (row.n + 1) // 2 if row.causal else row.n * row.n
        dense_flops = 4 * row.head_dim * dense_pairs * batch * heads
        ours, flex, sdpa = row.ours or (None, None), row.flex or (None, None), row.sdpa or (None, None)
        total = sum(ours) if row.ours else None
        vs_sdpa = sum(sdpa) / total if row.sdpa and total else None

        def ratio(other, mine):
            return f"{other / mine:.2f}×" if other and mine else "–"

        rates = [tflops(flops, ours[0]) if ours[0] else None, tflops(2.5 * flops, ours[1]) if ours[1] else None]
        dense_rates = [tflops(dense_flops, sdpa[0]) if sdpa[0] else None,
                       tflops(2.5 * dense_flops, sdpa[1]) if sdpa[1] else None]
        share = " / ".join(f"{mine / dense:.0%}" if mine and dense else "–" for mine, dense in zip(rates, dense_rates))
        lines.append(
            f"| {(row.name + row.note).replace('|', chr(92) + '|')} | {row.head_dim} | {row.n:,} | {row.density:.1%} ({row.blocks:,}) | "
            f"{row.efficiency:.0%} | {fmt(ours[0], 3)} | {fmt(ours[1], 3)} | {fmt(rates[0], 0)} | {fmt(rates[1], 0)} | "
            f"{fmt(flex[0], 3)} | {fmt(flex[1], 3)} | {fmt(tflops(flops, flex[0]) if flex[0] else None, 0)} | "
            f"{ratio(flex[0], ours[0])} | {ratio(flex[1], ours[1])} | {fmt(sdpa[0], 3)} | {fmt(sdpa[1], 3)} | "
            f"{fmt(dense_rates[0], 0)} | {share} | {fmt(vs_sdpa) + '×' if vs_sdpa else '–'} |")
    return "\n".join(lines)


# One kernel for every n and q_offset decoding (issue 14): a pattern whose constants depend on n.
N_DEPENDENT = "stride(isqrt(n)) & causal | global(n - 1) | window(cdiv(n, 64), 0) & causal"


def _compilations(module):
    """How many variants Triton compiled of the module's forward kernel (None if unknown)."""
    caches = getattr(module._attn_fwd, "device_caches", None)
    try:
        return sum(len(cache[0]) for cache in caches.values()) if caches else None
    except (TypeError, IndexError, KeyError):
        return None


def measure_lengths(device, sizes, head_dim=64, dtype=torch.bfloat16):
    """Markdown lines: the same kernels at every n (first call, warm forward, compilations so far),
    and a decoding step (q_offset = n - 1, one query) against recomputing the whole forward."""
    from patterndsl.kernels import kernel_plan, triton_attention

    compiled = patterndsl.compile(N_DEPENDENT, sizes[0])
    lines = ["## One kernel for every n, and decoding with q_offset", "",
             f"`{N_DEPENDENT}`, D={head_dim}, batch 1, 8 heads, {dtype}.", "",
             "| n | first call s | fwd ms | forward compilations so far | decode step ms | full fwd ms | decode / full |",
             "|---|---|---|---|---|---|---|"]
    for n in sizes:
        at = compiled.at(n)
        q, k, v = (torch.randn(1, 8, n, head_dim, device=device, dtype=dtype) for _ in range(3))
        start = time.perf_counter()
        triton_attention(q, k, v, at)
        torch.cuda.synchronize() if device.type == "cuda" else None
        first = time.perf_counter() - start
        full = bench_ms(lambda: triton_attention(q, k, v, at))
        last = q[:, :, -1:].contiguous()
        decode = bench_ms(lambda: triton_attention(last, k, v, at, q_offset=n - 1))
        module, _ = kernel_plan(at)
        lines.append(f"| {n} | {first:.2f} | {fmt(full)} | {_compilations(module)} | {fmt(decode, 3)} | "
                     f"{fmt(full)} | {decode / full:.3f} |")
        log(lines[-1])
    return lines


# Packed documents (issue 14): `segment & causal` with run-time ids against FlexAttention with
# attention-gym's document mask_mod (document_id[q] == document_id[kv] and q >= kv).
DOCUMENTS = "segment & causal"


def document_ids(batch, n, device, mean_length=None, seed=0):
    """int32 [batch, n]: each row packs documents of random lengths (exponential around
    ``mean_length``, default n / 16; one-token documents among them), a new draw per row."""
    generator = torch.Generator().manual_seed(seed)
    mean_length = mean_length or max(1, n // 16)
    rows = []
    for _ in range(batch):
        lengths = (torch.empty(4 * (n // mean_length + 1)).exponential_(1.0 / mean_length, generator=generator)
                   .long().clamp(min=1))
        ids = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)[:n]
        rows.append(torch.cat([ids, ids.new_full((n - ids.numel(),), lengths.numel())]))
    return torch.stack(rows).to(device=device, dtype=torch.int32)


def document_mask_mod(ids, q_offset=0):
    """attention-gym's document mask_mod (causal within each document), queries at q_offset.."""
    def mask_mod(b, h, q_idx, kv_idx):
        position = q_idx + q_offset
        return (ids[b, position] == ids[b, kv_idx]) & (position >= kv_idx)

    return mask_mod


def measure_documents(device, sizes, batch=4, head_dim=64, heads=16, dtype=torch.bfloat16, flex=True):
    """Markdown lines: a document-masked training step (fwd + bwd, new ids each step, so the
    layout is rebuilt per call: ours from the ids on the device, flex by create_block_mask) and a
    decode step (one query at q_offset n - 1 against n keys), ours against FlexAttention."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    import torch._functorch.config as functorch_config

    if hasattr(functorch_config, "donated_buffer"):
        functorch_config.donated_buffer = False
    compiled_flex = torch.compile(flex_attention, dynamic=False) if flex else None
    make_mask = torch.compile(create_block_mask) if flex and device.type == "cuda" else create_block_mask
    lines = ["## Packed documents: `segment & causal` vs FlexAttention's document mask_mod", "",
             f"batch {batch}, {heads} heads, D={head_dim}, {dtype}, random document lengths (mean n / 16), "
             f"blocks of {BLOCK}. Layout = ours' per-call segment tables / flex's create_block_mask.", "",
             "| n | ours fwd ms | ours bwd ms | flex fwd ms | flex bwd ms | flex block mask ms | "
             "step vs flex (kernels) | step vs flex (+ mask) | ours decode ms | flex decode ms | "
             "flex decode mask ms | decode vs flex (+ mask) | max err vs fp64 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        compiled = patterndsl.compile(DOCUMENTS, n)
        ids = document_ids(batch, n, device, seed=n)
        generator = torch.Generator(device=device).manual_seed(n)
        q, k, v, d_out = (torch.randn(batch, heads, n, head_dim, device=device, dtype=dtype, generator=generator)
                          for _ in range(4))
        q, k, v = (t.requires_grad_() for t in (q, k, v))

        def ours(q_, k_, v_):
            return triton_attention(q_, k_, v_, compiled, block_size=BLOCK, segments=ids)

        error = None
        if n <= 4096:  # against the float64 dense reference, same ids (two rows)
            want = patterndsl.attention_reference(*(t[:2, :2].double() for t in (q, k, v)), compiled,
                                                  segments=ids[:2])
            got = triton_attention(*(t[:2, :2].detach() for t in (q, k, v)), compiled, block_size=BLOCK,
                                   segments=ids[:2])
            error = (got.double() - want).abs().max().item()
        mine = time_fwd_bwd(ours, q, k, v, d_out)
        last = q[:, :, -1:].detach().contiguous()
        decode = bench_ms(lambda: triton_attention(last, k.detach(), v.detach(), compiled, block_size=BLOCK,
                                                   segments=ids, q_offset=n - 1))
        theirs = mask_ms = flex_decode = decode_mask_ms = None
        if flex:
            try:
                mask = make_mask(document_mask_mod(ids), batch, None, n, n, device=device, BLOCK_SIZE=BLOCK)
                mask_ms = bench_ms(lambda: make_mask(document_mask_mod(ids), batch, None, n, n, device=device,
                                                     BLOCK_SIZE=BLOCK))
                theirs = time_fwd_bwd(lambda q_, k_, v_: compiled_flex(q_, k_, v_, block_mask=mask), q, k, v, d_out)
            except Exception as failure:  # e.g. no flex backward on CPU: the decode step still informs
                log(f"flex training step at n={n}: {type(failure).__name__}: {failure}"[:300])
            try:
                decode_mask = create_block_mask(document_mask_mod(ids, n - 1), batch, None, 1, n, device=device,
                                                BLOCK_SIZE=BLOCK)
                decode_mask_ms = bench_ms(lambda: create_block_mask(document_mask_mod(ids, n - 1), batch, None, 1, n,
                                                                    device=device, BLOCK_SIZE=BLOCK))
                flex_decode = bench_ms(lambda: compiled_flex(last, k.detach(), v.detach(), block_mask=decode_mask))
            except Exception as failure:
                log(f"flex decode step at n={n}: {type(failure).__name__}: {failure}"[:300])
        step, flex_step = sum(mine), sum(theirs) if theirs else None

        def ratio(other, ours_ms):
            return f"{other / ours_ms:.2f}×" if other and ours_ms else "–"

        lines.append(f"| {n:,} | {fmt(mine[0], 3)} | {fmt(mine[1], 3)} | {fmt(theirs and theirs[0], 3)} | "
                     f"{fmt(theirs and theirs[1], 3)} | {fmt(mask_ms, 3)} | {ratio(flex_step, step)} | "
                     f"{ratio(flex_step and mask_ms and flex_step + mask_ms, step)} | {fmt(decode, 3)} | "
                     f"{fmt(flex_decode, 3)} | {fmt(decode_mask_ms, 3)} | "
                     f"{ratio(flex_decode and decode_mask_ms and flex_decode + decode_mask_ms, decode)} | "
                     f"{'–' if error is None else f'{error:.1e}'} |")
        log(lines[-1])
    return lines


def check_documents(device, n=1000, batch=2, heads=4, kv_heads=2, head_dim=64):
    """Markdown lines: PASS/FAIL of segment patterns' fwd + bwd (ours vs the float64 dense reference
    with the same ids; the tolerance as in --check: CHECK_FACTOR x eager's error in the dtype)."""
    lines, failures = [], 0
    for source in (DOCUMENTS, "segment & window(256, 0)", "segment & (causal | segment_start(4))",
                   "prob sparsemax\nsegment & causal"):
        compiled = patterndsl.compile(source, n)
        for dtype in (torch.bfloat16, torch.float32):
            ids = document_ids(batch, n, device, mean_length=97, seed=len(source))
            generator = torch.Generator(device=device).manual_seed(n)
            q, k, v, d_out = (torch.randn(batch, count, n, head_dim, device=device, generator=generator).to(dtype)
                              for count in (heads, kv_heads, kv_heads, heads))

            def reference(q_, k_, v_):
                return patterndsl.attention_reference(q_, k_, v_, compiled, segments=ids)

            def kernels(q_, k_, v_):
                return triton_attention(q_, k_, v_, compiled, block_size=BLOCK, segments=ids)

            exact = forward_backward(reference, q.double(), k.double(), v.double(), d_out.double())
            eager = forward_backward(reference, q, k, v, d_out)
            ours = forward_backward(kernels, q, k, v, d_out)
            worst, notes = 0.0, []
            for name, mine, eager_value, want in zip(("out", "dq", "dk", "dv"), ours, eager, exact):
                error = (mine.double() - want).abs().max().item() if torch.isfinite(mine).all() else float("inf")
                eager_error = (eager_value.double() - want).abs().max().item()
                allowed = max(CHECK_FACTOR * eager_error, CHECK_FLOOR[dtype] * max(1.0, want.abs().max().item()))
                worst = max(worst, error / allowed)
                notes.append(f"{name} {error:.1e} (eager {eager_error:.1e})")
            failures += worst > 1.0
            lines.append(f"{'PASS' if worst <= 1.0 else 'FAIL'} {source!r} {str(dtype).replace('torch.', '')} n={n}: "
                         + ", ".join(notes))
            log(lines[-1])
    return failures, lines


def measure_layout_build(device, n, batch, repeat=3):
    """Markdown lines: the per-call segment tables of our kernels (`_segments`: ids -> per-row
    block ranges, on the device) against FlexAttention's compiled create_block_mask with the
    document mask_mod, new random ids each repetition, best of ``repeat``; checks that every
    block the rival keeps is in our ranges."""
    from torch.nn.attention.flex_attention import create_block_mask

    from patterndsl.kernels import kernel_plan

    compiled = patterndsl.compile(DOCUMENTS, n)
    module, plan = kernel_plan(compiled, BLOCK)
    head_pattern = plan.heads(0, 1, device)
    tables = plan.tables("cpu")
    partial_idx, full_idx = tables[int(tables[1]):], tables[int(tables[3]):]

    def ours(ids):
        seg = module._segments(ids.to(torch.int64), plan, head_pattern)
        torch.cuda.synchronize() if device.type == "cuda" else None
        return seg

    def rival(ids):
        mask = create_block_mask(document_mask_mod(ids), batch, None, n, n, device=device, BLOCK_SIZE=BLOCK,
                                 _compile=True)
        torch.cuda.synchronize() if device.type == "cuda" else None
        return mask

    ours(document_ids(batch, n, device, seed=1))
    rival(document_ids(batch, n, device, seed=1))  # compile once at this shape
    mine, theirs = [], []
    for repetition in range(repeat):
        ids = document_ids(batch, n, device, seed=100 + repetition)
        start = time.perf_counter()
        _, ranges, _ = ours(ids)
        mine.append(time.perf_counter() - start)
        start = time.perf_counter()
        kept = rival(ids).to_dense().bool().cpu()[:, 0]  # [batch, query blocks, key blocks]
        theirs.append(time.perf_counter() - start)
        ranges = ranges.cpu()
        for b in range(batch):
            for qb in range(kept.shape[1]):
                ps, pe, fs, fe = ranges[b, 0, qb].tolist()
                listed = set(partial_idx[ps:pe].tolist()) | set(full_idx[fs:fe].tolist())
                assert set(torch.nonzero(kept[b, qb]).flatten().tolist()) <= listed, (b, qb)
    best, rival_best = min(mine), min(theirs)
    return ["## Per-call layout of packed documents for the Triton kernels", "",
            f"`{DOCUMENTS}`, n = {n}, batch {batch}, blocks of {BLOCK}, best of {repeat}, new random document "
            f"lengths (mean n / 16) each time; {device}, torch {torch.__version__}, {torch.get_num_threads()} threads.",
            "", "| layout build | ours: blocksparse._segments (ms) | create_block_mask compiled (ms) | ratio |",
            "|---|---|---|---|", f"| {DOCUMENTS} | {best * 1e3:.1f} | {rival_best * 1e3:.1f} | "
            f"{rival_best / best:.0f}× |"]


def _triton_version():
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "not installed"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="verify fwd+bwd against the reference first")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 32768, 131072], help="sequence lengths")
    parser.add_argument("--head-dims", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--budget", type=float, default=230.0,
                        help="seconds for the whole run (default 230; the last FlexAttention compile may run past it)")
    parser.add_argument("--max-dense-n", type=int, default=65536, help="largest n for dense SDPA")
    parser.add_argument("--no-flex", action="store_true", help="leave FlexAttention out")
    parser.add_argument("--max-blocks-per-program", type=int, default=None,
                        help="cut block lists longer than this into pieces (default: the generated module's "
                             "rule, 4 x the mean list and at least 16)")
    parser.add_argument("--check-only", action="store_true", help="run --check and stop")
    parser.add_argument("--check-n", type=int, default=1000, help="sequence length of --check (default 1000)")
    parser.add_argument("--documents", type=int, nargs="*", default=None,
                        help="only the packed-documents rows (`segment & causal` training step and decode step "
                             "vs FlexAttention's document mask_mod), at these n (default 8192 32768)")
    parser.add_argument("--doc-batch", type=int, default=4, help="batch of --documents (default 4)")
    parser.add_argument("--layout-build", type=int, nargs=2, metavar=("N", "BATCH"), default=None,
                        help="only the per-call segment layout build of our kernels vs create_block_mask "
                             "(e.g. --layout-build 32768 8; runs on CPU too)")
    parser.add_argument("--lengths", type=int, nargs="*", default=None,
                        help="only the one-kernel-many-n and q_offset decoding rows, at these n "
                             "(e.g. --lengths 4096 5000 8192)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or 'unknown'})"
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        log("no GPU: set TRITON_INTERPRET=1 for a (slow) smoke run on CPU with tiny --sizes")
        return 2
    log(f"device: {device_name}; torch {torch.__version__}; triton {_triton_version()}; python {platform.python_version()}")
    report = [f"# Block-sparse attention on {device_name}", ""]

    failures = 0
    if args.check or args.check_only:
        failures, lines = run_check(device, args.check_n)
        report += ["## Check (fwd + bwd vs float64 reference)", "", "```", *lines, "```", ""]
        if args.check_only:
            _write(args.out, report)
            return 1 if failures else 0

    if args.layout_build is not None:
        report += measure_layout_build(device, *args.layout_build)
        _write(args.out, report)
        log("\n".join(report))
        return 0

    if args.documents is not None:
        if device.type == "cuda":
            failures, lines = check_documents(device)
            report += ["## Check: segment patterns, fwd + bwd vs float64 reference", "", "```", *lines, "```", ""]
        heads = 1024 // 64 if device.type == "cuda" else 1
        report += measure_documents(device, args.documents or [8192, 32768], batch=args.doc_batch,
                                    heads=heads, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32,
                                    flex=not args.no_flex)
        _write(args.out, report)
        log("\n".join(report))
        return 1 if failures else 0

    if args.lengths is not None:
        report += measure_lengths(device, args.lengths or [4096, 5000, 8192])
        _write(args.out, report)
        log("\n".join(report))
        return 1 if failures else 0

    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = max(512, torch._dynamo.config.accumulated_cache_size_limit)

    rows, compiled_cache = [], {}
    for head_dim in args.head_dims:
        for name, source, layer, causal, largest in PATTERNS:
            for n in args.sizes:
                if largest is not None and n > largest:
                    continue
                key = (str(source), n)
                if key not in compiled_cache:
                    compiled_cache[key] = patterndsl.compile(source, n)
                rows.append(Row(name, head_dim, n, compiled_cache[key], layer, causal))
    name, source, layer, causal, largest = PATTERNS[0]
    for suffix, options in VARIANTS:
        rows += [Row(name + suffix, args.head_dims[0], n, compiled_cache[(str(source), n)], layer, causal, options)
                 for n in args.sizes]

    # The schedule, most wanted first: at the first head dim and the two smallest sizes (the
    # issue's comparison), ours and SDPA then FlexAttention, row by row; then ours and SDPA for
    # the other rows; then the rest of FlexAttention. Each step runs only while time is left.
    first_dim, small = args.head_dims[0], sorted(args.sizes)[:2]
    wanted = [r for r in rows if r.head_dim == first_dim and r.n in small]
    steps = ([step for r in wanted for step in [("ours", r)] + ([] if args.no_flex or r.options else [("flex", r)])]
             + [("ours", r) for r in rows if r not in wanted]
             + ([] if args.no_flex else [("flex", r) for r in rows if r not in wanted and not r.options]))
    skipped = []
    for kind, row in steps:
        label = f"{row.name} D={row.head_dim} n={row.n}"
        if time.perf_counter() - started > args.budget:
            skipped.append(f"{'flex ' if kind == 'flex' else ''}{label}: out of time")
            continue
        if kind == "ours":
            try:
                measure_ours_and_sdpa(row, device, args.max_dense_n, args.max_blocks_per_program)
            except Exception as error:
                row.note = f" (error: {type(error).__name__})"
                traceback.print_exc()
                failures += 1
            log(f"{label}: ours {row.ours}, SDPA {row.sdpa}; {cut_lists(row.compiled, args.max_blocks_per_program)} "
                f"[{time.perf_counter() - started:.0f} s]")
        else:
            if row.ours is None:
                continue
            try:
                measure_flex(row, device)
            except Exception as error:
                skipped.append(f"flex {label}: {type(error).__name__}: {error}"[:300])
                traceback.print_exc()
            log(f"{label}: flex {row.flex} (compile {fmt(row.flex_compile_s, 1)} s) "
                f"[{time.perf_counter() - started:.0f} s]")
        torch.cuda.empty_cache() if device.type == "cuda" else None
        _write(args.out, report + [table(rows, device_name)])

    body = table(rows, device_name)
    if skipped:
        body += "\n\nNot measured:\n" + "\n".join(f"- {line}" for line in skipped)
    compile_times = [f"{row.name} D={row.head_dim} n={row.n}: {row.flex_compile_s:.1f} s" for row in rows
                     if row.flex_compile_s is not None]
    if compile_times:
        body += "\n\nFlexAttention first call (torch.compile of forward and backward):\n" + \
            "\n".join(f"- {line}" for line in compile_times)
    log("")
    log(body)
    _write(args.out, report + [body, "", f"Total time {time.perf_counter() - started:.0f} s."])
    return 1 if failures else 0


def _write(path, lines):
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
