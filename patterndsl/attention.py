"""`patterndsl.attention`: sparse attention with a compiled pattern.

On CUDA it runs the generated Triton kernels (`patterndsl.kernels`) when they are
available. Elsewhere it runs the native path (patterndsl/native.py: block-sparse
eager torch, forward and backward, every probability map) whenever gradients are
needed, the file's ρ is not softmax or a key bias is given; for a softmax forward
pass, torch.compile'd FlexAttention with the block mask built from the pattern's
block layout (patterndsl/targets/flex.py). A query row with no connection gives
zeros, never NaN.
"""
from __future__ import annotations

import contextlib
import threading
import types

from .errors import Diagnostic, SpatError
from .inputs import FLOAT_DTYPES, check_qkv, for_keys


def _flex_call(q, k, v, block_mask, scale, enable_gqa):
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=enable_gqa)


def _compiled_flex(layer: int):
    """torch.compile'd FlexAttention, on a fresh copy of `_flex_call`'s code: Dynamo keeps
    its compiled graphs and their recompile limit per code object, so a model whose
    layers use many patterns does not exhaust one shared limit and fall back to the
    unfused O(n²) implementation."""
    import torch

    code = _flex_call.__code__.replace(co_name=f"patterndsl_flex_attention_layer{layer}")
    function = types.FunctionType(code, _flex_call.__globals__, code.co_name)
    return torch.compile(function, dynamic=False)


MAX_CACHED_FLEX = 8  # (layer, block size, device) entries kept per compiled pattern


def _flex_for(compiled, layer: int, block_size, device):
    """(block mask, compiled FlexAttention), made once per (pattern, layer, block size, device);
    the MAX_CACHED_FLEX most recently used are kept."""
    from .targets.flex import block_mask

    block_q, block_k = compiled.block_sizes(block_size)
    cache = compiled.__dict__.setdefault("_flex_attention", {})
    key = (layer, block_q, block_k, str(device))
    with _cache_lock:
        if key in cache:
            cache[key] = cache.pop(key)  # most recently used last
            return cache[key]
    made = (block_mask(compiled, layer, (block_q, block_k), device), _compiled_flex(layer))
    with _cache_lock:
        while len(cache) >= MAX_CACHED_FLEX:
            del cache[next(iter(cache))]
        cache[key] = made
    return made


_cache_lock = threading.Lock()
_ROWS_FLEX: dict = {}  # layer -> torch.compile'd FlexAttention for queries at an offset (Q_LEN ≠ KV_LEN)
_interpreter_lock = threading.RLock()


@contextlib.contextmanager
def interpreter_lock():
    """Held around calls into Triton kernels while Triton runs them in its interpreter
    (TRITON_INTERPRET=1), which is not thread-safe; free otherwise."""
    try:
        from .kernels import interpreting

        serialize = interpreting()
    except ImportError:  # no Triton: nothing to serialize
        serialize = False
    if not serialize:
        yield
        return
    with _interpreter_lock:
        yield


def _triton_attention():
    """patterndsl.kernels.triton_attention, or None where the kernels cannot be imported."""
    try:
        import triton  # noqa: F401  (the kernels need it at call time)

        from .kernels import triton_attention
    except ImportError:
        return None
    return triton_attention


BACKENDS = ("auto", "native", "flex", "triton", "reference")


def _needs_grad(*tensors) -> bool:
    import torch

    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _run_triton(q, k, v, compiled, layer, scale, block_size, key_bias, q_offset, segments):
    """patterndsl.kernels.triton_attention, one call at a time under Triton's interpreter
    (backend="triton", or chosen by "auto" on CUDA)."""
    from .kernels import triton_attention

    with interpreter_lock():
        return triton_attention(q, k, v, compiled, layer, scale, block_size=block_size, key_bias=key_bias,
                                q_offset=q_offset, segments=segments)


def attention(q, k, v, compiled, layer: int = 0, scale: float | None = None, *, block_size=None,
              key_bias=None, backend: str = "auto", q_offset: int = 0, segments=None):
    """Sparse attention of q, k, v with one layer of a compiled pattern.

    q: [B, H, n, D]; k and v: [B, Hkv, n, D] with Hkv dividing H (grouped-query
    attention). The pattern's heads must be 1 (shared by every head) or H. ``scale``
    defaults to 1/√D. ``block_size`` (an int or a (BQ, BK) pair) sets the blocks; by
    default the file's `block`, else 128. ``key_bias`` (broadcastable to [B, H, n]) is
    added to every score of key j before the file's ρ. Same result as
    `patterndsl.attention_reference`, without the n × n mask.

    ``backend``: "native" (patterndsl/native.py: block-sparse eager torch, forward and
    backward, every ρ), "flex" (torch.compile'd FlexAttention: softmax only, and on CPU
    forward only), "triton" (the generated kernels, CUDA or TRITON_INTERPRET=1) or
    "reference". "auto" takes the Triton kernels on CUDA; elsewhere the native path
    when gradients are needed, ρ is not softmax or a key bias is given, and
    FlexAttention otherwise.

    Queries and keys may differ in length (a KV cache, chunked prefill): q [B, H, m, D]
    holds the queries at positions ``q_offset`` … q_offset + m − 1, k and v [B, Hkv, n_kv, D]
    the keys 0 … n_kv − 1, and the pattern is evaluated at n = n_kv (``compiled.at(n_kv)``,
    cached): the result is rows q_offset … q_offset + m − 1 of the full computation at n_kv.
    Needs 0 ≤ q_offset and q_offset + m ≤ n_kv. "auto" takes the native path for such rows
    on CPU (and for a single query), and the Triton kernels on CUDA, which run every n_kv
    and q length with the same kernels.

    A cross file (`queries M`: m queries × n keys, patterndsl/cross.py) takes q [B, H, m, D]
    (or rows q_offset … of its m queries) and k, v [B, Hkv, n, D] on every backend.

    ``segments``: for a pattern using `segment` / `segment_start`, the segment ids, an
    integer tensor [B, n] of any integer dtype (only equality matters), on q's device;
    required exactly when the pattern uses them. The ids are data: nothing is
    recompiled when they change.
    """
    if backend not in BACKENDS:
        raise SpatError(Diagnostic(f"unknown backend {backend!r}", help="one of " + ", ".join(BACKENDS)))
    if getattr(compiled, "cross", False):  # m queries × n keys (patterndsl/cross.py): through its square
        from .cross import to_square

        k, v, compiled, key_bias = to_square(q, k, v, compiled, scale, key_bias, q_offset, segments)
    if backend == "flex":  # a property of the file, so said before anything about the inputs
        from .targets.flex import require_softmax

        require_softmax(compiled, "backend='flex'")
    if backend == "triton":  # the kernels check q, k, v themselves: q may be shorter (q_offset), any n_kv
        return _run_triton(q, k, v, compiled, layer, scale, block_size, key_bias, q_offset, segments)
    # The native path and the reference also run float64 (gradcheck) and any value width;
    # the kernels do not.
    dense_or_native = backend in ("native", "reference")
    compiled = for_keys(compiled, k)
    check_qkv(q, k, v, compiled, scale, dtypes=FLOAT_DTYPES + (("float64",) if dense_or_native else ()),
              value_dim_may_differ=dense_or_native, q_offset=q_offset)
    layer, _ = compiled.index(layer, 0)
    rectangular = not (q_offset == 0 and q.shape[2] == k.shape[2])
    bias = {} if key_bias is None else {"key_bias": key_bias}
    if rectangular:
        bias["q_offset"] = int(q_offset)
    from .segments import check_segments

    segments = check_segments(segments, q.shape[0], k.shape[2], q.device, uses_segments=compiled.uses_segments)
    if segments is not None:
        bias["segments"] = segments
    if backend == "auto":
        triton_attention = _triton_attention() if q.device.type == "cuda" else None
        if triton_attention is not None:  # the kernels take segment ids as data too
            backend = "triton"
        elif (not str(compiled.prob) == "softmax" or key_bias is not None or _needs_grad(q, k, v)
              or rectangular or q.shape[2] == 1 or segments is not None):  # rows at an offset (or one query, decoding's first
            # step): the native path computes only their blocks, with nothing to compile
            backend = "native"
        else:
            backend = "flex"
    if backend == "native":
        from .native import native_attention

        return native_attention(q, k, v, compiled, layer, scale, block_size=block_size, **bias)
    if backend == "triton":  # chosen by "auto"
        return _run_triton(q, k, v, compiled, layer, scale, block_size, key_bias, q_offset, segments)
    if backend == "reference":
        from .targets.torch import attention_reference

        return attention_reference(q, k, v, compiled, layer, scale, **bias)
    if rectangular and segments is not None:
        raise SpatError(Diagnostic("backend='flex' takes segments= or q_offset=, not both",
                                   help="backend='native' (or 'auto') runs segment ids with queries at an offset"))
    if rectangular:
        from .targets.flex import rows_block_mask

        check_flex_backward(q, k, v)
        if key_bias is not None:
            raise SpatError(Diagnostic("backend='flex' takes no key_bias",
                                       help="backend='native' (or 'auto') adds a per-key bias"))
        block_mask = rows_block_mask(compiled, layer, block_size, q.device, int(q_offset), q.shape[2])
        with _cache_lock:
            if layer not in _ROWS_FLEX:
                _ROWS_FLEX[layer] = _compiled_flex(layer)
            flex = _ROWS_FLEX[layer]
        return flex(q, k, v, block_mask, scale, k.shape[1] != q.shape[1])
    check_flex_backward(q, k, v)
    if key_bias is not None:
        raise SpatError(Diagnostic("backend='flex' takes no key_bias",
                                   help="backend='native' (or 'auto') adds a per-key bias"))
    if segments is not None:
        return segment_flex_attention(q, k, v, compiled, layer, scale, segments, block_size)
    block_mask, flex = _flex_for(compiled, layer, block_size, q.device)
    return flex(q, k, v, block_mask, scale, k.shape[1] != q.shape[1])


def check_flex_backward(q, k, v) -> None:
    """FlexAttention has no backward pass on CPU (torch raises only after compiling, tens of
    seconds in): refuse up front when autograd would need one."""
    import torch

    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise SpatError(Diagnostic(
            "FlexAttention has no backward pass on CPU, and q, k or v requires grad",
            help="on CPU, train with backend=\"native\" (what backend=\"auto\" picks when gradients are "
                 "needed); run FlexAttention under torch.no_grad(); or use a GPU"))


def segment_flex_attention(q, k, v, compiled, layer, scale, segments, block_size=None):
    """FlexAttention with run-time segment ids: one compiled FlexAttention and one mask_mod
    factory per (pattern, layer, block size, device), a new BlockMask per call."""
    from .targets.flex import segment_block_mask, segment_mask_mod_factory

    check_flex_backward(q, k, v)
    block_q, block_k = compiled.block_sizes(block_size)
    cache = compiled.__dict__.setdefault("_segment_flex", {})
    key = (layer, block_q, block_k, str(q.device))
    if key not in cache:
        cache[key] = (segment_mask_mod_factory(compiled, layer, (block_q, block_k), q.device), _compiled_flex(layer))
    make, flex = cache[key]
    block_mask = segment_block_mask(compiled, layer, segments, (block_q, block_k), q.device, make)
    return flex(q, k, v, block_mask, scale, k.shape[1] != q.shape[1])
