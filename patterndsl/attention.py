"""`patterndsl.attention`: sparse attention with a compiled pattern.

On CUDA it runs the generated Triton kernels (`patterndsl.kernels`) when they are
available; everywhere else (and on CUDA without them) it runs torch.compile'd
FlexAttention with the block mask built from the pattern's block layout
(patterndsl/targets/flex.py). A query row with no connection gives zeros, never
NaN — FlexAttention's own rule, which the tests check.
"""
from __future__ import annotations

import contextlib
import threading
import types

from .errors import Diagnostic, SpatError
from .inputs import check_qkv


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


def attention(q, k, v, compiled, layer: int = 0, scale: float | None = None, *, block_size=None):
    """Sparse attention of q, k, v with one layer of a compiled pattern.

    q: [B, H, n, D]; k and v: [B, Hkv, n, D] with Hkv dividing H (grouped-query
    attention). The pattern's heads must be 1 (shared by every head) or H. ``scale``
    defaults to 1/√D. ``block_size`` (an int or a (BQ, BK) pair) sets FlexAttention's
    blocks; by default the file's `block`, else 128. Same result as
    `patterndsl.attention_reference`, without the n × n mask.
    """
    check_qkv(q, k, v, compiled, scale)
    layer, _ = compiled.index(layer, 0)
    if q.device.type == "cuda":
        triton_attention = _triton_attention()
        if triton_attention is not None:
            return triton_attention(q, k, v, compiled, layer, scale, block_size=block_size)
    check_flex_backward(q, k, v)
    block_mask, flex = _flex_for(compiled, layer, block_size, q.device)
    return flex(q, k, v, block_mask, scale, k.shape[1] != q.shape[1])


def check_flex_backward(q, k, v) -> None:
    """FlexAttention has no backward pass on CPU (torch raises only after compiling, tens of
    seconds in): refuse up front when autograd would need one."""
    import torch

    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise SpatError(Diagnostic(
            "FlexAttention has no backward pass on CPU, and q, k or v requires grad",
            help="on CPU, train with patterndsl.attention_reference (SparseAttention(backend=\"reference\")) "
                 "or the Triton kernels in Triton's interpreter (TRITON_INTERPRET=1); run inference "
                 "under torch.no_grad(); or use a GPU"))
