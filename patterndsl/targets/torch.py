"""The torch target: dense boolean masks, additive masks, and the reference attention."""
from __future__ import annotations

from ..inputs import FLOAT_DTYPES, check_qkv, for_keys, key_bias_for
from . import register


@register("torch", "dense torch.bool masks [layers, heads, n, n] saved with torch.save", ".pt")
def emit_torch(compiled, path, block_size=None) -> str:
    """torch.save of a dict: "masks" (bool [layers, heads, n, n]), "n", "layers", "heads",
    "prob" (its name) and "source" (the .spat text); read it with torch.load(path)."""
    from ..reference import check_budget

    # refused before importing torch (seconds on a loaded machine) when the masks cannot fit
    check_budget((compiled.layers, compiled.heads, compiled.n, compiled.n), compiled.memory_budget)
    import torch

    masks = compiled.masks()
    saved = {"masks": masks, "n": compiled.n, "layers": compiled.layers, "heads": compiled.heads,
             "prob": str(compiled.prob), "source": compiled.source.text}
    if getattr(compiled, "cross", False):  # a cross file: masks [layers, heads, m, n]
        saved["m"] = compiled.m
    with open(path, "wb") as out:  # a file object: torch's own writer turns OSErrors into RuntimeErrors
        try:
            torch.save(saved, out)
        except RuntimeError as exc:
            raise OSError(f"torch.save failed: {exc}".splitlines()[0]) from None
    return f"masks {tuple(masks.shape)} (layers, heads, n, n)"


def checked_reference_inputs(q, k, v, compiled, layer, scale, q_offset):
    """(compiled at the keys' length, the layer index) once q, k, v are checked for the two
    paths that take float64 and a value dim other than the head dim: attention_reference
    and patterndsl.native.native_attention."""
    compiled = for_keys(compiled, k)
    check_qkv(q, k, v, compiled, scale, dtypes=FLOAT_DTYPES + ("float64",), value_dim_may_differ=True,
              q_offset=q_offset)
    layer, _ = compiled.index(layer, 0)
    return compiled, layer


def attention_reference(q, k, v, compiled, layer: int = 0, scale: float | None = None, *, key_bias=None,
                        q_offset: int = 0, segments=None):
    """Attention through the pattern's dense mask: correct and slow (O(n²) memory).

    q: [B, H, n, D]; k and v: [B, Hkv, n, D] with Hkv dividing H (grouped-query
    attention). The pattern's heads must be 1 (shared by every head) or H. The file's
    probability map ρ (`prob`: softmax, sparsemax, entmax(α)) is applied to each query
    row's scores over its connected keys; a query row with no connection gives zeros,
    never NaN. ``key_bias`` (broadcastable to [B, H, n]) is added to the score of every
    (query, key j) pair before ρ; the result is differentiable in it.

    Queries and keys may differ in length: q [B, H, m, D] holds the queries at positions
    q_offset … q_offset + m − 1 against the keys 0 … n_kv − 1 of k, v [B, Hkv, n_kv, D], the
    pattern evaluated at n = n_kv (``compiled.at(n_kv)`` when n_kv is not compiled.n): the
    result is rows q_offset … q_offset + m − 1 of the full computation at n_kv. ``segments`` (an
    integer tensor [B, n_kv]) gives the segment ids of a pattern using `segment`: the mask is
    then compiled.mask(segments=ids), one per batch row.
    """
    import torch
    import torch.nn.functional as F

    from ..probability import as_map, probabilities

    compiled, layer = checked_reference_inputs(q, k, v, compiled, layer, scale, q_offset)
    batch, heads, m, _ = q.shape
    n = k.shape[2]
    kv_heads = k.shape[1]
    bias = key_bias_for(key_bias, batch, heads, n, q)
    if kv_heads != heads:
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
    rows = {} if (q_offset == 0 and m == n) else {"q_offset": int(q_offset), "q_len": m}
    from ..segments import check_segments

    segments = check_segments(segments, batch, n, q.device, uses_segments=compiled.uses_segments,
                              what="attention_reference")
    if segments is None:
        allowed = torch.stack([compiled.mask(layer, h, **rows) for h in range(compiled.heads)]).to(q.device)
        allowed = allowed.unsqueeze(0)  # [1, H or 1, m, n]
    else:
        allowed = torch.stack([compiled.mask(layer, h, segments=segments, **rows) for h in range(compiled.heads)],
                              dim=1).to(q.device)  # [B, H or 1, m, n]
    prob = as_map(compiled.prob)
    if prob.is_softmax and bias is None:
        empty_rows = ~allowed.any(dim=-1, keepdim=True)  # [1, H, m, 1]
        # SDPA gives NaN for a row with nothing to attend to; let such rows see
        # everything, then zero their output.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | empty_rows, scale=scale)
        return out.masked_fill(empty_rows, 0.0)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias.unsqueeze(-2)
    return probabilities(scores.masked_fill(~allowed, float("-inf")), prob) @ v
