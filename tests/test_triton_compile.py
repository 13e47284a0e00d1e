"""The generated kernels compile for an H100 (sm_90) — without a GPU.

Triton's interpreter (tests/test_triton_kernels.py) checks what the kernels compute, but
not that Triton's compiler accepts them: globals that are not constexpr, type errors in
branches, tiles that overflow shared memory or spill registers only show when compiling
for a real target. Triton can compile ahead of time for any target with the ptxas it
ships, so this test does that, for exactly the kernels the launcher builds (the module's own
`attention`, forward and backward, run on "meta" tensors with a stand-in sm_90 driver: Triton
binds and specializes each launch as on an H100, and its jit cache hook takes the
specialization), each compiled once per session: for a module whose patterns use every kind of
predicate (inline tests, an index-list table, random bitmaps, several patterns chosen at run
time) at a ragged n, in bfloat16 and float32, without cut lists and with every list cut (work
items, scratch slots, the two kernels merging the pieces), with and without a key bias, for
queries at an offset and for α-entmax, checking shared memory; and for a plain pattern at head
dims 64 and 128 in bfloat16, checking that no registers spill.
Checked with Triton 3.9 (an older Triton without the jit cache hook skips it).
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
#
# What is compiled is what the launcher builds: each call below runs the module's own
# `attention` (forward and backward) on tensors of the "meta" device (shapes and dtypes, no
# data), with a stand-in driver whose target is sm_90, so Triton binds and specializes every
# kernel launched exactly as on an H100; its jit cache hook takes each specialization instead of
# compiling and launching it. Each distinct one is then compiled once, into one Triton cache
# shared by every test of the session.
CHILD = r"""
import json, os, sys, time
import torch, triton
try:
    from triton import knobs
    knobs.runtime.jit_cache_hook
except (ImportError, AttributeError):
    sys.exit("no jit cache hook in this triton")
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import patterndsl
from patterndsl.kernels import kernel_module

jobs, directory = json.loads(sys.argv[1]), sys.argv[2]
TARGET = GPUTarget("cuda", 90, 32)
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
OPTIONS = ("num_warps", "num_ctas", "num_stages", "enable_fp_fusion", "launch_cooperative_grid", "extern_libs")


class Sm90:
    # The driver calls the launcher makes before it binds a kernel's arguments.
    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return TARGET


taken = []


def take(*, key, fn, compile, **_):
    taken.append((fn.jit_function, compile))
    return True  # neither compiled nor launched here


triton.runtime.driver.set_active(Sm90())
knobs.runtime.jit_cache_hook = take
modules, builds, labels = {}, {}, {}
for tag, source, n, limit, dtype_name, head_dim, kv_heads, calls in jobs:
    if (source, n, limit) not in modules:
        modules[source, n, limit] = kernel_module(patterndsl.compile(source, n), 128, max_blocks_per_program=limit)
    module, dtype = modules[source, n, limit], DTYPES[dtype_name]
    q, k, v = (torch.empty(1, heads, n, head_dim, dtype=dtype, device="meta", requires_grad=True)
               for heads in (2, kv_heads, kv_heads))
    for call in calls:  # "softmax", "key bias", "rows" (queries at an offset), "entmax" (with a key bias)
        taken.clear()
        kwargs = {"key_bias": torch.empty(1, 1, n, device="meta")} if call in ("key bias", "entmax") else {}
        kwargs.update({"alpha": 1.5} if call == "entmax" else {})
        rows = (q[:, :, 1:], 1) if call == "rows" else (q, 0)
        out = module.attention(rows[0], k, v, q_offset=rows[1], **kwargs)
        torch.autograd.grad(out, (q, k, v), torch.empty_like(out))
        for kernel, spec in taken:
            build = (kernel.fn.__module__, kernel.fn.__name__, str(spec["key"]))
            builds.setdefault(build, (kernel, spec, dtype_name, head_dim))
            labels.setdefault(build, set()).add((tag, call))

results = []
for index, (build, (kernel, spec, dtype_name, head_dim)) in enumerate(builds.items()):
    start = time.process_time()
    compiled = triton.compile(ASTSource(kernel, spec["signature"], spec["constants"], spec["configs"][0]),
                              target=TARGET, options={name: spec[name] for name in OPTIONS})
    path = os.path.join(directory, f"{dtype_name}_{head_dim}_{index}.cubin")
    with open(path, "wb") as out:
        out.write(compiled.asm["cubin"])
    constants = {kernel.arg_names[path[0]]: value for path, value in spec["constants"].items()
                 if len(path) == 1 and isinstance(value, (bool, int, str))}
    results.append(dict(kernel=kernel.fn.__name__, jobs=sorted({tag for tag, _ in labels[build]}),
                        calls=sorted({call for _, call in labels[build]}), dtype=dtype_name, head_dim=head_dim,
                        constants=constants, shared=compiled.metadata.shared, cubin=path,
                        seconds=time.process_time() - start))
print(json.dumps(results))
"""

# Every kind of predicate, several patterns chosen at run time, a ragged n (all masks on); the
# module without cut lists (the default limit) and with every list cut (limit 1: work items,
# scratch slots and the two merging kernels), softmax with and without a key bias, queries at an
# offset (the forward and dQ passes then walk whole lists) and α-entmax.
# Two query heads share one key/value head (GROUP = 2; the launcher specializes GROUP = 1 as a
# constant, so grouped heads are the general kernel).
PREDICATES = [("predicates", SOURCE, 300, None, "bf16", 64, 1, ["softmax", "entmax"]),
              ("predicates", SOURCE, 300, 1, "bf16", 128, 1, ["key bias", "rows"]),
              ("predicates", SOURCE, 300, 1, "fp32", 64, 1, ["key bias", "rows", "entmax"])]
# A plain pattern as the GPU benchmark runs it (the default limit cuts the global rows' lists).
PLAIN = "window(256) | global(0..8)"
TILES = [("plain", PLAIN, 8192, None, "bf16", head_dim, 2, ["softmax", "key bias", "rows"]) for head_dim in (64, 128)]


@pytest.fixture(scope="session")
def sm90_kernels(tmp_path_factory):
    """Every kernel the launcher builds for PREDICATES and TILES, compiled for sm_90 once per
    session in one child process: dicts (kernel, jobs ("predicates", "plain"), calls, dtype,
    head_dim, constants (the constexpr arguments), shared (bytes), cubin (its file), seconds)."""
    directory = tmp_path_factory.mktemp("sm90")
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(directory / "triton-cache")
    env["PATTERNDSL_CACHE_DIR"] = str(directory / "patterndsl-cache")
    run = subprocess.run([sys.executable, "-c", CHILD, json.dumps(PREDICATES + TILES), str(directory)], env=env,
                         capture_output=True, text=True, timeout=1800)
    if run.returncode != 0 and "No module named 'triton.backends.nvidia'" in run.stderr:
        pytest.skip("this triton build has no NVIDIA backend to compile for sm_90")
    if run.returncode != 0 and "no jit cache hook in this triton" in run.stderr:
        pytest.skip("this triton has no jit cache hook (knobs.runtime.jit_cache_hook) to take the launches")
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_kernels_compile_for_sm90_within_shared_memory(sm90_kernels):
    kernels = [k for k in sm90_kernels if "predicates" in k["jobs"]]
    built = {(k["dtype"], k["head_dim"], k["kernel"], k["constants"].get("SPLIT"), k["constants"].get("HAS_BIAS"),
              k["constants"].get("PROB")) for k in kernels}
    # Without cut lists: the three passes, and α-entmax's forward and its two backward passes.
    for name in ("_attn_fwd", "_attn_bwd_dq", "_attn_bwd_dkdv"):
        assert ("bf16", 64, name, False, False, None if name == "_attn_fwd" else 0) in built, name
    assert {("bf16", 64, "_entmax_fwd", None, True, 3)} <= built
    # With every list cut: the passes as cut (a key bias or not), the forward and dQ passes
    # uncut for queries at an offset, and the kernels merging the pieces.
    for dtype, head_dim in (("bf16", 128), ("fp32", 64)):
        for name in ("_attn_fwd", "_attn_bwd_dq"):
            assert (dtype, head_dim, name, True, True) <= {b[:5] for b in built}, name
            assert (dtype, head_dim, name, False, False) <= {b[:5] for b in built}, name
        assert (dtype, head_dim, "_attn_bwd_dkdv", True, True) in {b[:5] for b in built}
        assert {"_fwd_combine", "_sum_slots"} <= {b[2] for b in built if b[:2] == (dtype, head_dim)}
    for kernel in kernels:
        # The merging kernels only add loaded tiles: they may need no shared memory at all.
        assert (0 if kernel["kernel"] in ("_fwd_combine", "_sum_slots") else 1) <= kernel["shared"] <= SHARED_MEMORY, kernel


def test_16_bit_kernels_do_not_spill_registers(sm90_kernels):
    """The tiles of a plain pattern (as the GPU benchmark runs it) keep within the registers."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    tool = tool if os.path.exists(tool) else shutil.which("cuobjdump")
    if tool is None:
        pytest.skip("cuobjdump (shipped with Triton's NVIDIA backend) is not available to read register use")
    kernels = [k for k in sm90_kernels if "plain" in k["jobs"]]
    assert {k["kernel"] for k in kernels} == {"_attn_fwd", "_attn_bwd_dq", "_attn_bwd_dkdv", "_fwd_combine", "_sum_slots"}
    for kernel in kernels:
        usage = subprocess.run([tool, "--dump-resource-usage", kernel["cubin"]], capture_output=True, text=True).stdout
        stack = re.search(r"STACK:(\d+)", usage)
        assert stack is not None, usage
        assert int(stack.group(1)) == 0, f"{kernel['kernel']} {kernel['dtype']} D={kernel['head_dim']} spills: {usage}"
