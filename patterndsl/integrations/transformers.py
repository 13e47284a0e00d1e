"""Hugging Face transformers models attending with a patterndsl pattern.

    from patterndsl.integrations.transformers import register
    register("local_sinks", "causal & (window(64, 0) | cols(0..4))")
    model = AutoModelForCausalLM.from_config(config, attn_implementation="local_sinks")

`register(name, pattern)` puts an attention function under ``name`` in transformers'
`AttentionInterface` and a mask function under the same name in its
`AttentionMaskInterface`; every model that dispatches attention through those
interfaces (Llama, Mistral, Qwen2, Gemma, …) then trains and generates with the
pattern, through `patterndsl.attention`: the native block-sparse path on CPU, the
Triton kernels on CUDA.

What the pattern replaces and what it keeps:

- The pattern **replaces the model's causal mask**: a causal language model needs a
  causal pattern (``causal & …``, ``window(w, 0)``, …) — the pattern is taken as written.
  The mask function the model builds (causal, sliding window, packed sequences found
  from ``position_ids``) is not used. A sliding-window *cache* (keys that do not start
  at position 0) is refused; leave ``config.sliding_window`` unset and put the window
  in the pattern.
- **Layers**: attention layer ``module.layer_idx`` uses the pattern's layer
  ``layer_idx % compiled.layers`` (a file with p layers cycles over the model's
  layers, as in Yun et al.'s patterns); heads: the file's heads must be 1 or the
  model's number of query heads.
- **Lengths and the KV cache**: queries are at absolute positions
  ``q_offset … q_offset + m − 1`` (``q_offset``: the tokens already in the cache),
  keys at ``0 … q_offset + m − 1``, and the pattern is evaluated at
  ``n = q_offset + m`` (`patterndsl.attention`'s ``q_offset``). Training and prefill
  are ``q_offset = 0``; decoding step t is row t of the pattern at n = t + 1. The
  pattern is compiled once; other lengths use ``compiled.at(n)`` (which keeps a bounded
  number of lengths). Slots of a static cache (``cache_implementation="static"``)
  beyond ``q_offset + m`` are not attended.
- **Padding** (the 2-D ``attention_mask``): padded keys get a −inf key bias. *Left*
  padding shifts positions: a row whose first L slots are padding is attended as
  if those slots were not there — its first real token is position 0, the pattern is
  evaluated at n = (keys in the row) − L, and queries sitting on padding give zeros —
  so a left-padded prompt in a batch attends exactly as it does alone (the same
  convention as the position ids ``generate()`` builds, ``cumsum(mask) − 1``).
  Padding elsewhere (right padding, holes) only masks those keys.
- **Grouped-query attention**: k and v keep their ``num_key_value_heads``;
  `patterndsl.attention` reads head h's keys from head ``h // (H / Hkv)``.
- Not supported (an error says so): attention dropout > 0, logit soft-capping,
  attention sinks (``s_aux``), an already-built 4-D mask. ``output_attentions``
  gives no weights (None).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from ..attention import BACKENDS, attention
from ..compiled import CompiledPattern, compile as compile_pattern
from ..errors import Diagnostic, SpatError
from ..layout import DEFAULT_BLOCK_SIZE

__all__ = ["PatternMask", "register", "registered"]

DEFAULT_N = 1024  # the length a .spat text is first compiled (checked) at; calls use their own n

_registered: dict[str, "_Adapter"] = {}


class PatternMask:
    """What the mask function hands the attention function of every layer: the padding
    (``keep``: bool [B, kv slots], True for a real token, or None when nothing is padded)
    and ``q_offset``, the absolute position of the first query (tokens already cached)."""

    ndim = 4  # a mask already built: transformers hands it back to the mask function as is

    def __init__(self, keep, q_offset: int):
        self.keep, self.q_offset = keep, q_offset

    def __repr__(self):
        shape = None if self.keep is None else tuple(self.keep.shape)
        return f"PatternMask(keep={shape}, q_offset={self.q_offset})"


def _error(message: str, hint: str | None = None) -> SpatError:
    return SpatError(Diagnostic(message, help=hint))


class _Adapter:
    def __init__(self, name: str, compiled: CompiledPattern, backend: str | None, block_size=None):
        self.name, self.compiled, self.backend, self.block_size = name, compiled, backend, block_size

    # -- the mask function (AttentionMaskInterface) --------------------------------
    def mask(self, batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None,
             attention_mask=None, **kwargs):
        if int(kv_offset) != 0:
            raise _error(f"attn_implementation={self.name!r}: the cache keeps keys from position "
                         f"{int(kv_offset)} on (a sliding-window cache), the pattern needs them from 0",
                         "leave config.sliding_window unset and write the window in the pattern")
        if isinstance(attention_mask, PatternMask):  # built for this step (generate with a static cache)
            return attention_mask
        keep = None
        if attention_mask is not None:
            keep = attention_mask.to(torch.bool)
            if bool(keep.all()):
                keep = None
        return PatternMask(keep, int(q_offset))

    # -- the attention function (AttentionInterface) -------------------------------
    def forward(self, module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                is_causal=None, **kwargs):
        if dropout:
            raise _error(f"attn_implementation={self.name!r} has no attention dropout (got {dropout})",
                         "set config.attention_dropout = 0.0")
        for unsupported in ("softcap", "s_aux", "sinks"):
            if kwargs.get(unsupported) is not None:
                raise _error(f"attn_implementation={self.name!r} does not support {unsupported}")
        if attention_mask is not None and not isinstance(attention_mask, PatternMask):
            raise _error(f"attn_implementation={self.name!r} got a {type(attention_mask).__name__} "
                         "attention mask, not one its mask function built",
                         "pass the 2-D padding mask (batch, tokens) and let the model build the rest")
        m, slots = query.shape[2], key.shape[2]
        if attention_mask is None:  # a model that does not build masks: keys end with the queries
            keep, q_offset = None, slots - m
        else:
            keep, q_offset = attention_mask.keep, attention_mask.q_offset
        length = q_offset + m  # the tokens seen so far; later slots (a static cache) are empty
        if length > slots or q_offset < 0:
            raise _error(f"attn_implementation={self.name!r}: {m} queries from position {q_offset} "
                         f"but {slots} keys")
        key, value = key[:, :, :length], value[:, :, :length]
        if keep is not None:
            if keep.shape[1] < length:
                raise _error(f"the attention mask covers {keep.shape[1]} tokens, the keys {length}")
            keep = keep[:, :length]
        layer = getattr(module, "layer_idx", None) or 0
        scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
        out = self._attend(query, key, value, keep, q_offset, layer, scale)
        return out.transpose(1, 2).contiguous(), None

    def _attend(self, q, k, v, keep, q_offset, layer, scale):
        if keep is None:
            return self._run(q, k, v, q_offset, layer, scale, None)
        batch, n = keep.shape
        first = torch.where(keep.any(1), keep.to(torch.int8).argmax(1), torch.full_like(keep[:, 0], n,
                                                                                          dtype=torch.long))
        parts, order = [], []
        for lead in sorted(set(first.tolist())):
            rows = (first == lead).nonzero().flatten()
            skip = min(max(0, lead - q_offset), q.shape[2])  # queries sitting on left padding
            out = q.new_zeros(len(rows), q.shape[1], q.shape[2], v.shape[-1])
            if skip < q.shape[2]:
                kept = keep[rows, lead:]
                bias = None
                if not bool(kept.all()):
                    bias = torch.zeros(kept.shape, dtype=q.dtype, device=q.device)
                    bias = bias.masked_fill(~kept, float("-inf"))[:, None, :]
                attended = self._run(q[rows, :, skip:], k[rows, :, lead:], v[rows, :, lead:],
                                     q_offset + skip - lead, layer, scale, bias)
                out = torch.cat([out[:, :, :skip], attended], dim=2) if skip else attended
            parts.append(out)
            order.append(rows)
        out = torch.cat(parts)
        inverse = torch.empty_like(torch.cat(order))
        inverse[torch.cat(order)] = torch.arange(batch, device=inverse.device)
        return out[inverse]

    def _block_size(self, n: int):
        """register's block_size, else the file's `block`, else 128 — or for a short
        sequence the smallest block (a power of two, at least 16) that holds it."""
        if self.block_size is not None or self.compiled.block_size is not None:
            return self.block_size
        return min(DEFAULT_BLOCK_SIZE, max(16, 1 << max(0, n - 1).bit_length()))

    def _run(self, q, k, v, q_offset, layer, scale, bias):
        """patterndsl.attention of m queries at q_offset … against the n keys 0 … n − 1
        (the pattern at n: `compiled.at(n)`, which keeps the lengths it made)."""
        backend = self.backend or ("native" if q.device.type == "cpu" else "auto")
        return attention(q, k, v, self.compiled, layer, scale, key_bias=bias, backend=backend,
                         block_size=self._block_size(k.shape[2]), q_offset=q_offset)


def register(name: str, pattern, *, n: int = DEFAULT_N, backend: str | None = None,
             block_size=None) -> CompiledPattern:
    """Register ``pattern`` (.spat text, a pathlib.Path or a CompiledPattern) as
    ``attn_implementation=name`` with transformers' AttentionInterface and
    AttentionMaskInterface, and return the compiled pattern. Text and files are
    compiled at ``n`` to check them; each call runs at its own length. ``backend``:
    None picks "native" on CPU and "auto" (the Triton kernels) on CUDA; otherwise any
    `patterndsl.attention` backend; ``block_size`` (an int or a (BQ, BK) pair) is
    passed on to it (default: the file's `block`, else 128, or for a sequence shorter
    than 128 the smallest power of two ≥ 16 that holds it)."""
    taken = name == "eager" or (name in AttentionInterface._global_mapping and name not in _registered)
    if not isinstance(name, str) or not name or taken:
        raise _error(f"the attention name {name!r} is taken or empty",
                     "pick a name of your own, e.g. \"patterndsl\"; transformers' own names "
                     "(eager, sdpa, flash_attention_*, flex_attention) are not replaced")
    if isinstance(pattern, CompiledPattern):
        compiled = pattern
    elif isinstance(pattern, (str, Path)):
        compiled = compile_pattern(pattern, n)
    else:
        raise _error(f"pattern must be .spat text, a pathlib.Path or a CompiledPattern, got "
                     f"{type(pattern).__name__}")
    if backend is not None and backend not in BACKENDS:
        raise _error(f"unknown backend {backend!r}")
    if block_size is not None:
        compiled.block_sizes(block_size)  # checked now, not at the first forward pass
    adapter = _Adapter(name, compiled, backend, block_size)
    AttentionInterface.register(name, adapter.forward)
    AttentionMaskInterface.register(name, adapter.mask)
    _registered[name] = adapter
    return compiled


def registered(name: str) -> CompiledPattern:
    """The compiled pattern registered under ``name``."""
    if name not in _registered:
        raise _error(f"no pattern is registered as {name!r}", "register(name, pattern) first")
    return _registered[name].compiled
