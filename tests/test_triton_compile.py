"""The generated kernels compile for an H100 (sm_90) — without a GPU.

Triton's interpreter (tests/test_triton_kernels.py) checks what the kernels compute, but
not that Triton's compiler accepts them: globals that are not constexpr, type errors in
branches, tiles that overflow shared memory or spill registers only show when compiling
for a real target. Triton can compile ahead of time for any target with the ptxas it
ships, so this test does that, with the tiles the module launches: for a module whose
patterns use every kind of predicate (inline tests, an index-list table, random bitmaps,
several patterns chosen at run time) at a ragged n, in bfloat16 and float32, checking
shared memory; and for a plain pattern at head dims 64 and 128 in bfloat16, checking that
no registers spill. Each pass is compiled as launched without cut lists and with them
(SPLIT: work items, scratch slots; compiled with a key bias, so that its path is checked
too), and so are the two kernels that merge the pieces; the α-entmax forward and backward
compile within shared memory too.
Passes with Triton 3.6 and 3.9.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("triton", reason="compiling the kernels needs triton installed")
pytest.importorskip("torch")

SHARED_MEMORY = 232448  # bytes of shared memory a block may use on sm_90 (227 KiB)

SOURCE = """\
layers {
    window(5) | global(0..3) | cols(1, 3, 5, 7, 9, 11, 13, 15, 17, 19)
    stride(7) & causal | logsparse
    heads {
        0: random(3, seed=1) | chunk(50)
        1: dilated(2, 3) - self | summary(16, 2)
    }
}
"""

# Run in a child process: the kernels must be defined with the interpreter off, and the test
# session may have turned it on (tests/test_triton_kernels.py does).
CHILD = r"""
import json, os, sys
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import patterndsl
from patterndsl.kernels import kernel_module

source, n, configs, directory = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
# The blocks benchmarks use; every list cut, so that the module holds the merging kernels too.
module = kernel_module(patterndsl.compile(source, n), 128, max_blocks_per_program=1)
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
SCALARS = {"H", "H_KV", "GROUP"}
# Run-time lengths (not specialized: one compiled kernel serves every n, q length and offset).
LENGTHS = {"N", "M", "Q_OFF", "NUM_ITEMS", "NUM_SLOTS"}
SCRATCH = {"LSE", "DELTA", "ACC_S", "M_S", "L_S", "DQ_S", "DK_S", "DV_S", "SCRATCH", "BIAS", "D_BIAS"}


def signature(kernel, dtype, constants):
    types, attrs = {}, {}
    for index, name in enumerate(kernel.arg_names):
        aligned = True
        if name in constants:
            types[name] = "constexpr"
            continue
        if name in ("Q", "K", "V", "Out", "DO", "DQ", "DK", "DV"):
            types[name] = "*" + dtype
        elif name in SCRATCH:
            types[name] = "*fp32"
        elif name in ("qk_scale", "sm_scale", "alpha"):
            types[name], aligned = "fp32", False
        elif name in LENGTHS:
            types[name], aligned = "i32", False
        elif name in SCALARS or name.startswith("stride"):
            types[name], aligned = "i32", name.startswith("stride")
        else:  # TABLES (block lists and the predicates' data), head patterns
            types[name] = "*i32"
        if aligned:  # what Triton's launcher sees for 16-byte aligned pointers and strides
            attrs[(index,)] = [["tt.divisibility", 16]]
    return types, attrs


results = []


def build(name, kernel, dtype_name, head_dim, constants, warps, stages):
    if "SEGMENTED" in kernel.arg_names:  # as launched for a pattern without segment ids
        constants = dict(constants, SEGMENTED=False)
    types, attrs = signature(kernel, dtype_name, constants)
    compiled = triton.compile(ASTSource(kernel, types, constants, attrs), target=GPUTarget("cuda", 90, 32),
                              options=dict(num_warps=warps, num_stages=stages))
    path = os.path.join(directory, f"{dtype_name}_{head_dim}_{len(results)}.cubin")
    with open(path, "wb") as out:
        out.write(compiled.asm["cubin"])
    results.append(dict(kernel=name, dtype=dtype_name, head_dim=head_dim, shared=compiled.metadata.shared,
                        cubin=path))


for dtype_name, head_dim, with_split, with_entmax in configs:
    block_d, forward, dq, dkdv, precision = module._settings(head_dim, DTYPES[dtype_name])
    passes = (("forward", module._attn_fwd, forward, False),
              ("dQ", module._attn_bwd_dq, dq, False),
              ("dK/dV", module._attn_bwd_dkdv, dkdv, True))
    for name, kernel, (own, loop, warps, stages), keys_own in passes:
        block_m, block_n = (loop, own) if keys_own else (own, loop)
        tiles = dict(BLOCK_Q=module.BLOCK_Q, BLOCK_K=module.BLOCK_K, BLOCK_M=module._fit(block_m, module.BLOCK_Q),
                     BLOCK_N=module._fit(block_n, module.BLOCK_K), BLOCK_D=block_d, HEAD_DIM=head_dim,
                     PRECISION=precision)
        # softmax without and with cut lists (and then a key bias: both paths of each); α-entmax
        variants = [(False, 0)] + [(True, 0)] * with_split + [(False, 3)] * with_entmax
        for split, prob in variants:
            if prob and kernel is module._attn_fwd:  # entmax has its own forward kernel
                kernel, name = module._entmax_fwd, "entmax forward"
            constants = dict(tiles, HAS_BIAS=split or bool(prob))
            if kernel is module._entmax_fwd:
                constants.update(PROB=prob, BISECTIONS=module.BISECTIONS, NEWTON_STEPS=module.NEWTON_STEPS)
            else:
                constants.update(SPLIT=split)
                if kernel is not module._attn_fwd:
                    constants["PROB"] = prob
                else:  # as launched: the full blocks cut keys past n only at a ragged n
                    constants["RAGGED"] = n % module.BLOCK_K != 0
            label = name + (" split, key bias" if split else "") + (" entmax" if prob and "entmax" not in name else "")
            build(label, kernel, dtype_name, head_dim, constants, warps, stages)
    if not with_split:
        continue
    tile = module._fit(module.MERGE_TILE, module.BLOCK_Q)
    build("merge forward", module._fwd_combine, dtype_name, head_dim,
          dict(HEAD_DIM=head_dim, BLOCK_Q=module.BLOCK_Q, BLOCK_M=tile, BLOCK_D=block_d),
          module.MERGE_WARPS, 3)
    build("sum slots", module._sum_slots, dtype_name, head_dim,
          dict(HEAD_DIM=head_dim, BLOCK_ROWS=module.BLOCK_Q, BLOCK_M=tile, BLOCK_D=block_d,
               SPLITS=int(module.K_SPLITS)), module.MERGE_WARPS, 3)
print(json.dumps(results))
"""


def compile_for_sm90(directory, source, n, configs):
    """Compile the module's kernels for each (dtype, head dim, with the SPLIT variants and the
    merging kernels) in a child process."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(directory / "triton-cache")
    env["PATTERNDSL_CACHE_DIR"] = str(directory / "patterndsl-cache")
    run = subprocess.run([sys.executable, "-c", CHILD, source, str(n), json.dumps(configs), str(directory)], env=env, capture_output=True, text=True, timeout=900)
    if run.returncode != 0 and "No module named 'triton.backends.nvidia'" in run.stderr:
        pytest.skip("this triton build has no NVIDIA backend to compile for sm_90")
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_kernels_compile_for_sm90_within_shared_memory(tmp_path):
    # Every kind of predicate, several patterns chosen at run time, a ragged n (all masks on).
    # The kernels with cut lists (SPLIT) and the merges at two of the three: they take time to compile.
    kernels = compile_for_sm90(tmp_path, SOURCE, 300, [("bf16", 64, False, True), ("bf16", 128, True, False),
                                                       ("fp32", 64, True, True)])
    # 3 passes; with SPLIT, 3 passes unsplit and split and the 2 merges; with entmax its 3 passes
    assert len(kernels) == 3 + 2 * 8 + 2 * 3
    for kernel in kernels:
        # The merging kernels only add loaded tiles: they may need no shared memory at all.
        assert (0 if kernel["kernel"] in ("merge forward", "sum slots") else 1) <= kernel["shared"] <= SHARED_MEMORY, kernel


def test_16_bit_kernels_do_not_spill_registers(tmp_path):
    """The tiles of a plain pattern (as the GPU benchmark runs it) keep within the registers."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    tool = tool if os.path.exists(tool) else shutil.which("cuobjdump")
    if tool is None:
        pytest.skip("cuobjdump (shipped with Triton's NVIDIA backend) is not available to read register use")
    kernels = compile_for_sm90(tmp_path, "window(256) | global(0..8)", 8192, [("bf16", 64, True, False),
                                                                               ("bf16", 128, True, False)])
    for kernel in kernels:
        usage = subprocess.run([tool, "--dump-resource-usage", kernel["cubin"]], capture_output=True, text=True).stdout
        stack = re.search(r"STACK:(\d+)", usage)
        assert stack is not None, usage
        assert int(stack.group(1)) == 0, f"{kernel['kernel']} {kernel['dtype']} D={kernel['head_dim']} spills: {usage}"
