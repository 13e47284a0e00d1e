"""The sparse Transformer of Yun et al. 2020 ("O(n) Connections are Expressive Enough").

A decoder of L pre-norm residual blocks (attention, then an MLP) over token and
trainable positional embeddings, whose attention follows a .spat file's p patterns
in one of the paper's three configurations:

- ``sequential``: layer ℓ uses pattern ℓ mod p (the theory's setting; what a
  `layers { }` file means);
- ``union``: every layer uses the union of the p patterns;
- ``multihead``: every layer uses all p patterns, head h taking pattern ⌊h·p/H⌋.

The union and multihead configurations are new .spat files (`configured_source`),
written from the file's simplified IR, so the analyzer can check them like any
other file. All attention goes through `attend`, the one call site to switch
backends.
"""
from __future__ import annotations

import math

from .compiled import CompiledPattern, compile as compile_pattern
from .errors import Diagnostic, SpatError

CONFIGURATIONS = ("sequential", "union", "multihead")


def configured_source(compiled: CompiledPattern, configuration: str, heads: int) -> str:
    """The .spat text (for ``compiled.n`` only) of one configuration of ``compiled``'s patterns.

    The file's own per-head patterns are kept only by ``sequential``; the other two
    configurations need a file with one head per layer."""
    if configuration not in CONFIGURATIONS:
        raise SpatError(Diagnostic(f"unknown configuration {configuration!r}",
                                   help="one of " + ", ".join(CONFIGURATIONS)))
    prob = f"prob {compiled.prob}\n"
    if configuration == "sequential":
        return compiled.source.text
    if compiled.heads != 1:
        raise SpatError(Diagnostic(f"the {configuration} configuration needs a file with one head per layer, "
                                   f"not {compiled.heads}"))
    patterns = [str(compiled.pattern(layer, 0)) for layer in range(compiled.layers)]
    if configuration == "union":
        return prob + " | ".join(f"({text})" for text in patterns) + "\n"
    if heads < compiled.layers:
        raise SpatError(Diagnostic(f"the multihead configuration spreads {compiled.layers} patterns over the heads: "
                                   f"it needs at least {compiled.layers} heads, not {heads}"))
    ranges = []
    for index, text in enumerate(patterns):
        lo, hi = -(-index * heads // compiled.layers), -(-(index + 1) * heads // compiled.layers)
        ranges.append(f"    {lo}..{hi}: {text}")
    return prob + "heads {\n" + "\n".join(ranges) + "\n}\n"


def configure(compiled: CompiledPattern, configuration: str, heads: int) -> CompiledPattern:
    """``compiled`` in one configuration, for the model's number of heads."""
    if configuration == "sequential":
        return compiled
    return compile_pattern(configured_source(compiled, configuration, heads), compiled.n,
                           memory_budget=compiled.memory_budget)


def attend(q, k, v, compiled: CompiledPattern, layer: int):
    """The model's attention (q, k, v: [B, H, n, D]): the one place that picks the backend —
    the Triton kernels on a GPU, else the native block-sparse path (patterndsl/native.py),
    which trains on a CPU with every probability map of the file."""
    from .attention import attention

    return attention(q, k, v, compiled, layer, backend="triton" if q.is_cuda else "native")


def sparse_transformer(compiled: CompiledPattern, *, vocab: int, depth: int, width: int = 64, heads: int = 4,
                       mlp_ratio: int = 4, configuration: str = "sequential"):
    """A `SparseTransformer` (torch.nn.Module) for sequences of ``compiled.n`` tokens."""
    import torch
    from torch import nn

    if width % heads:
        raise SpatError(Diagnostic(f"the width ({width}) must be a multiple of the heads ({heads})"))
    pattern = configure(compiled, configuration, heads)
    if pattern.heads not in (1, heads):
        raise SpatError(Diagnostic(f"the pattern has {pattern.heads} heads but the model {heads}"))

    class Block(nn.Module):
        def __init__(self, layer: int):
            super().__init__()
            self.layer = layer
            self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                     nn.Linear(mlp_ratio * width, width))

        def forward(self, x):
            batch, n, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(batch, n, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            mixed = attend(q, k, v, pattern, self.layer)  # [B, H, n, D]
            x = x + self.out(mixed.transpose(1, 2).reshape(batch, n, width))
            return x + self.mlp(self.norm2(x))

    class SparseTransformer(nn.Module):
        """Token ids [B, n] → next-token logits [B, n, vocab]."""

        def __init__(self):
            super().__init__()
            self.pattern, self.configuration, self.depth = pattern, configuration, depth
            self.tokens = nn.Embedding(vocab, width)
            self.positions = nn.Parameter(torch.randn(compiled.n, width) / math.sqrt(width))
            self.blocks = nn.ModuleList(Block(layer) for layer in range(depth))
            self.norm = nn.LayerNorm(width)
            self.head = nn.Linear(width, vocab)

        def forward(self, ids):
            x = self.tokens(ids) + self.positions[: ids.shape[1]]
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))

    return SparseTransformer()
