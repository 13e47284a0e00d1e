"""`patterndsl.SparseAttention`: a multi-head attention layer with a .spat pattern.

    layer = patterndsl.SparseAttention("window(128) | global(0..8)", embed_dim=512, num_heads=8)
    y = layer(x)                      # x: [batch, n, 512] -> [batch, n, 512]

It owns the q, k, v and output projections; the attention itself runs the
generated Triton kernels on CUDA (patterndsl/kernels), and on CPU either those
kernels in Triton's interpreter (when TRITON_INTERPRET=1) or the native path
(patterndsl/native.py): block-sparse eager torch, forward and backward, for every
probability map, in memory proportional to the blocks computed.
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path

import torch
from torch import nn

from .blocksize import block_size_pair
from .compiled import CompiledPattern, compile as compile_pattern
from .errors import Diagnostic, SpatError

BACKENDS = ("auto", "triton", "native", "flex", "reference")
MAX_COMPILED_LENGTHS = 16  # sequence lengths whose compiled pattern a layer keeps


class SparseAttention(nn.Module):
    """Multi-head (or grouped-query) self-attention restricted to a sparse pattern.

    pattern: a CompiledPattern, .spat source text (str) or a .spat file (pathlib.Path).
        A pattern is compiled for each sequence length the layer meets (a CompiledPattern
        is used as is at its own n, and recompiled with ``.at(n)`` for others).
    embed_dim, num_heads: the model width and the query heads; embed_dim // num_heads is the
        head dimension (or ``head_dim`` when given).
    num_kv_heads: key/value heads (grouped-query attention), dividing num_heads; default num_heads.
    layer: which of the pattern's layers this is (a `layers { }` block cycles: layer mod p).
    scale: the softmax scale, default 1/sqrt(head_dim). block_size: the kernels' block size
        (default: the file's `block`, else 128).
    backend: "auto" (Triton on CUDA and in the interpreter, else the native path, which trains
        on a CPU), "triton", "native" (patterndsl/native.py), "flex" (patterndsl.attention:
        FlexAttention, softmax only; it has no backward pass on CPU, so on CPU it runs only
        under torch.no_grad() and says so before compiling anything) or "reference" (the
        dense-mask attention_reference, O(n²) memory).
    Bad arguments, and every error of the pattern that does not depend on n, raise a
    SpatError here, not at the first forward pass.
    """

    def __init__(self, pattern, embed_dim: int, num_heads: int, num_kv_heads: int | None = None,
                 layer: int = 0, *, head_dim: int | None = None, bias: bool = True,
                 scale: float | None = None, block_size=None, backend: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        for name, value, least in (("embed_dim", embed_dim, 1), ("num_heads", num_heads, 1),
                                   ("num_kv_heads", num_kv_heads, 1), ("layer", layer, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SpatError(Diagnostic(f"{name} must be an integer ≥ {least}, got {value!r}"))
        if head_dim is None:
            if embed_dim % num_heads:
                raise SpatError(Diagnostic(f"embed_dim ({embed_dim}) must be a multiple of num_heads ({num_heads})",
                                           help="or give head_dim explicitly"))
            head_dim = embed_dim // num_heads
        if num_heads % num_kv_heads:
            raise SpatError(Diagnostic(f"num_kv_heads ({num_kv_heads}) must divide num_heads ({num_heads})"))
        if backend not in BACKENDS:
            raise SpatError(Diagnostic(f"unknown backend {backend!r}", help="one of " + ", ".join(BACKENDS)))
        if isinstance(pattern, CompiledPattern):
            if pattern.heads not in (1, num_heads):
                raise SpatError(Diagnostic(f"the pattern has {pattern.heads} heads but the layer has {num_heads}"))
            self._source, self._compiled = pattern.source, {pattern.n: pattern}
            cross = pattern.cross
        elif isinstance(pattern, (str, Path)):
            from .ast import Queries
            from .compiled import load_source, parse
            from .resolve import resolve

            self._source, self._compiled = load_source(pattern), {}
            # Every error that does not depend on n (syntax, names, arguments, heads) now,
            # not at the first forward pass.
            module = parse(self._source)
            resolve(module, self._source, None)
            cross = any(isinstance(statement, Queries) for statement in module.statements)
        else:
            raise SpatError(Diagnostic(f"pattern must be a CompiledPattern, .spat text or a Path, "
                                       f"not {type(pattern).__name__}"))
        if cross:
            # Self-attention reads its queries and keys from one sequence x: a file of m
            # queries × n keys would read x's rows as both, which is not what it means.
            raise SpatError(Diagnostic("SparseAttention is self-attention, and this is a cross-attention file "
                                       "(`queries M`: m queries × n keys)",
                                       help="call patterndsl.attention(q, k, v, compiled) with the queries and "
                                            "keys of the two sequences, or drop `queries` for an n × n pattern"))
        if block_size is not None:
            block_size_pair(block_size)
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
                                  or not math.isfinite(scale)):
            raise SpatError(Diagnostic(f"scale must be None or a finite number, got {scale!r}"))
        self.embed_dim, self.num_heads, self.num_kv_heads, self.head_dim = embed_dim, num_heads, num_kv_heads, head_dim
        self.layer, self.scale, self.block_size, self.backend = layer, scale, block_size, backend
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, num_heads * head_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(embed_dim, num_kv_heads * head_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(embed_dim, num_kv_heads * head_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(num_heads * head_dim, embed_dim, bias=bias, **factory)

    def compiled(self, n: int) -> CompiledPattern:
        """The pattern compiled for sequence length n (kept for reuse: the last
        MAX_COMPILED_LENGTHS lengths, so a stream of distinct lengths does not grow memory)."""
        if n in self._compiled:
            self._compiled[n] = self._compiled.pop(n)  # most recently used last
        else:
            while len(self._compiled) >= MAX_COMPILED_LENGTHS:
                del self._compiled[next(iter(self._compiled))]
            if self._compiled:
                compiled = next(iter(self._compiled.values())).at(n)
            else:
                compiled = compile_pattern(self._source, n)
            if compiled.heads not in (1, self.num_heads):
                raise SpatError(Diagnostic(f"the pattern has {compiled.heads} heads but the layer has "
                                           f"{self.num_heads}"))
            self._compiled[n] = compiled
        return self._compiled[n]

    def _attend(self, q, k, v, compiled):
        from . import kernels

        backend = self.backend
        if backend == "auto":
            backend = "triton" if q.is_cuda or kernels.interpreting() else "native"
        from .attention import attention

        return attention(q, k, v, compiled, self.layer, self.scale, block_size=self.block_size, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, n, embed_dim] -> [batch, n, embed_dim]."""
        if not isinstance(x, torch.Tensor):
            raise SpatError(Diagnostic(f"x must be a torch.Tensor [batch, n, {self.embed_dim}], "
                                       f"got {type(x).__name__}"))
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise SpatError(Diagnostic(f"expected input [batch, n, {self.embed_dim}], got {tuple(x.shape)}"))
        weight = self.q_proj.weight
        if x.dtype != weight.dtype or x.device != weight.device:
            raise SpatError(Diagnostic(f"x is {x.dtype} on {x.device} but the layer's weights are "
                                       f"{weight.dtype} on {weight.device}",
                                       help="move one to the other: x.to(weight) or layer.to(x)"))
        batch, n, _ = x.shape
        compiled = self.compiled(n)

        def heads(t, count):  # [batch, n, count * D] -> [batch, count, n, D]
            return t.view(batch, n, count, self.head_dim).transpose(1, 2)

        q = heads(self.q_proj(x), self.num_heads)
        k = heads(self.k_proj(x), self.num_kv_heads)
        v = heads(self.v_proj(x), self.num_kv_heads)
        out = self._attend(q, k, v, compiled)
        return self.out_proj(out.transpose(1, 2).reshape(batch, n, self.num_heads * self.head_dim))

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
                f"head_dim={self.head_dim}, layer={self.layer}, backend={self.backend!r}")
