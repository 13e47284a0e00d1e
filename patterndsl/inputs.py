"""One validation of q, k, v for every attention entry point.

`patterndsl.attention_reference`, `patterndsl.attention`, `SparseAttention` and the
modules that `compile --target flex` writes all check their inputs with `qkv_problem`
and `layer_problem`. Both use nothing but torch (imported inside), so the generated
modules embed their source with `inspect.getsource` and report the same messages
without patterndsl installed; in patterndsl, `check_qkv` raises them as SpatErrors.

The rules: q is [B, H, n, D]; k and v are [B, Hkv, n, D] with Hkv dividing H
(grouped-query attention); one dtype and one device for all three; n the pattern's
length; the pattern's heads 1 or H; ``scale`` None or a finite real number.
"""
from __future__ import annotations

FLOAT_DTYPES = ("float16", "bfloat16", "float32")  # what every kernel runs; the reference adds float64


def qkv_problem(q, k, v, n, pattern_heads, scale=None, dtypes=("float16", "bfloat16", "float32"),
                max_head_dim=None, value_dim_may_differ=False, queries_may_differ=False):
    """(message, help) for the first rule that q, k, v or scale break, else None.

    n and pattern_heads are the pattern's length and heads; dtypes names the torch dtypes
    accepted (e.g. "float32"); max_head_dim caps D when the kernels have a limit;
    value_dim_may_differ lets v's last dimension differ from k's (the dense reference and
    the native path compute P·V for any value width; the kernels tile one D);
    queries_may_differ lets q's length m differ from n (queries at an offset: the caller
    checks q_offset with query_window_problem)."""
    import math
    import numbers

    import torch

    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if not isinstance(tensor, torch.Tensor):
            kind = type(tensor).__module__.split(".")[0] + "." + type(tensor).__name__
            hint = ("convert it with torch.from_numpy(array)" if kind.startswith("numpy.")
                    else "q, k and v are torch tensors shaped [batch, heads, n, head_dim]")
            return f"{name} must be a torch.Tensor, got {kind.removeprefix('builtins.')}", hint
    shapes = f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
    transpose = "inputs shaped [batch, n, heads, head_dim] need .transpose(1, 2) first"
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        return f"q, k and v must be shaped [batch, heads, n, head_dim]; got {shapes}", transpose
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if str(tensor.dtype).removeprefix("torch.") not in dtypes:
            return (f"{name} has dtype {str(tensor.dtype).removeprefix('torch.')}; q, k and v must be one of "
                    f"{', '.join(dtypes)}", "convert them with .to(torch.float32) (or float16, bfloat16)")
    if not (q.dtype == k.dtype == v.dtype):
        return (f"q, k and v must share one dtype; got {q.dtype}, {k.dtype}, {v.dtype}",
                "convert them with .to(q.dtype)")
    if not (q.device == k.device == v.device):
        return (f"q, k and v must be on one device; got {q.device}, {k.device}, {v.device}",
                "move them with .to(q.device)")
    batch, heads, length, head_dim = q.shape
    if (length != n and not queries_may_differ) or k.shape[2] != n or v.shape[2] != n:
        if q.shape[1] == n and length != n:
            return (f"q, k and v look shaped [batch, n, heads, head_dim] ({shapes}); "
                    f"they must be [batch, heads, n, head_dim] with n = {n}", transpose)
        if k.shape[2] == v.shape[2] and length != k.shape[2]:
            return (f"q has {length} rows but k, v have {k.shape[2]} keys, and the pattern was compiled for "
                    f"n = {n}", "queries at other positions than the keys (a KV cache, chunked prefill) "
                    "go through patterndsl.attention(q, k, v, compiled, q_offset=...) with queries at "
                    "q_offset ... q_offset + m - 1 (decoding: q_offset = n_kv - m); it evaluates the "
                    "pattern at n = n_kv")
        return (f"the pattern was compiled for n = {n}, but q, k, v have lengths {length}, "
                f"{k.shape[2]}, {v.shape[2]}", "patterndsl.attention and attention_reference take any length "
                "(they use compiled.at(n_kv)); elsewhere compile for this n: compiled.at(n_kv)")
    if k.shape[0] != batch or v.shape[0] != batch:
        return (f"q, k and v must have the same batch size; got {batch}, {k.shape[0]}, {v.shape[0]}",
                "expand a shared k, v explicitly: k.expand(q.shape[0], -1, -1, -1)")
    if k.shape[:3] != v.shape[:3] or (k.shape[3] != v.shape[3] and not value_dim_may_differ):
        return (f"k and v must be shaped alike [batch, kv_heads, n, head_dim]; got {tuple(k.shape)} "
                f"and {tuple(v.shape)}", None)
    if k.shape[3] != head_dim:
        return f"q and k must have the same head_dim; got {head_dim} and {k.shape[3]}", None
    kv_heads = k.shape[1]
    if kv_heads == 0 or heads % kv_heads:
        return (f"key/value heads ({kv_heads}) must divide query heads ({heads})",
                "k and v heads must be equal and divide query heads: grouped-query attention shares "
                "each k, v head among H / Hkv query heads")
    if pattern_heads not in (1, heads):
        return (f"the pattern has {pattern_heads} heads but q has {heads}",
                "a pattern with a `heads { }` block needs q with exactly that many heads")
    if head_dim == 0 or (max_head_dim is not None and head_dim > max_head_dim):
        limit = f"in 1..{max_head_dim}" if max_head_dim is not None else "at least 1"
        return f"head_dim must be {limit}, got {head_dim}", None
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
                              or not math.isfinite(scale)):
        return f"scale must be None or a finite number, got {scale!r}", "the default is 1 / sqrt(head_dim)"
    return None


def query_window_problem(m, n_kv, q_offset, keys="n_kv"):
    """(message, help) when queries at q_offset ... q_offset + m - 1 do not fit against the
    n_kv keys 0 ... n_kv - 1 (q_offset an int >= 0, m >= 1, q_offset + m <= n_kv), else None."""
    import numbers

    usage = ("query row r is at position q_offset + r; keys are at 0 ... n_kv - 1, so 0 <= q_offset and "
             "q_offset + m <= n_kv (decoding with a KV cache: q_offset = n_kv - m)")
    if isinstance(q_offset, bool) or not isinstance(q_offset, numbers.Integral):
        return f"q_offset must be an integer, got {q_offset!r}", usage
    if isinstance(m, bool) or not isinstance(m, numbers.Integral):
        return f"q_len must be an integer, got {m!r}", usage
    if q_offset < 0:
        return f"q_offset must be >= 0, got {q_offset}", usage
    if m < 1:
        return f"there must be at least one query, got {m}", usage
    if q_offset + m > n_kv:
        return (f"queries at positions {q_offset} ... {q_offset + m - 1} lie beyond the {n_kv} keys "
                f"({keys} = {n_kv}): q_offset + m = {q_offset + m} > {n_kv}", usage)
    return None


def layer_problem(layer):
    """A message when ``layer`` is not a layer index (an integer ≥ 0; layer l uses pattern
    l mod p), else None."""
    import numbers

    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or layer < 0:
        return f"layer must be a non-negative integer, got {layer!r}"
    return None


def check_qkv(q, k, v, compiled, scale=None, dtypes=FLOAT_DTYPES, max_head_dim=None,
              value_dim_may_differ=False, q_offset=None) -> None:
    """Raise a SpatError for the first rule q, k, v, scale or ``compiled`` break. With
    ``q_offset`` (not None), q may be shorter than k, v: its rows at q_offset + r."""
    from .errors import Diagnostic, SpatError

    # Duck-typed, so that this module imports nothing of patterndsl's above it (compiled.py
    # uses layer_problem): a CompiledPattern is what has n, heads and patterns.
    if not all(hasattr(compiled, name) for name in ("n", "heads", "patterns")):
        raise SpatError(Diagnostic(f"compiled must be a CompiledPattern, got {type(compiled).__name__}",
                                   help="compile the pattern first: patterndsl.compile(source, n)"))
    problem = qkv_problem(q, k, v, compiled.n, compiled.heads, scale, dtypes, max_head_dim,
                          value_dim_may_differ, queries_may_differ=q_offset is not None)
    if problem is None and q_offset is not None and getattr(compiled, "cross", False):
        problem = cross_query_problem(q.shape[2], compiled.m, q_offset)
    elif problem is None and q_offset is not None:
        problem = query_window_problem(q.shape[2], k.shape[2], q_offset)
    if problem is not None:
        raise SpatError(Diagnostic(problem[0], help=problem[1]))


def cross_query_problem(length, m, q_offset):
    """(message, help) when a cross file's q (``length`` rows at q_offset …) does not lie
    within its m queries (README, "Cross-attention"), else None."""
    problem = query_window_problem(length, m, q_offset, keys="m")
    if problem is None:
        return None
    return (problem[0].replace("lie beyond the", "lie beyond the cross file's").replace(" keys (m", " queries (m"),
            f"a cross file has m = {m} queries (its `queries` statement) against the n keys of k, v: "
            f"q holds rows q_offset ... q_offset + len - 1 of those m")


def for_keys(compiled, k):
    """``compiled`` at the keys' length n_kv (compiled.at(n_kv), cached there) when k is a
    [B, Hkv, n_kv, D] tensor of another length than compiled.n; else ``compiled`` itself."""
    import torch

    if (isinstance(k, torch.Tensor) and k.dim() == 4 and k.shape[2] >= 1 and hasattr(compiled, "at")
            and getattr(compiled, "n", None) != k.shape[2]
            and not _looks_transposed(k, compiled.n)):  # [B, n, H, D]: let the check name the transpose
        return compiled.at(int(k.shape[2]))
    return compiled


def _looks_transposed(k, n) -> bool:
    """k [B, n, H, D] rather than [B, H, n_kv, D]: its second dimension is n and its length is
    not (more than one key: a first decoding step [B, H, 1, D] is no transpose)."""
    return n > 1 and k.shape[1] == n and 1 < k.shape[2] < n


def key_bias_for(key_bias, batch: int, heads: int, n: int, like):
    """``key_bias`` broadcast to [B, H, n] in q's dtype and device (a view), or None."""
    import torch

    from .errors import Diagnostic, SpatError

    if key_bias is None:
        return None
    if not isinstance(key_bias, torch.Tensor) or not key_bias.is_floating_point():
        raise SpatError(Diagnostic(f"key_bias must be a floating-point torch.Tensor, got "
                                   f"{getattr(key_bias, 'dtype', type(key_bias).__name__)}"))
    try:
        return key_bias.to(dtype=like.dtype, device=like.device).expand(batch, heads, n)
    except RuntimeError:
        raise SpatError(Diagnostic(f"key_bias {tuple(key_bias.shape)} does not broadcast to "
                                   f"[batch, heads, n] = {[batch, heads, n]}",
                                   help="give one bias per key: shaped [n], [B, 1, n] or [B, H, n]")) from None
