"""patterndsl: a compiler for sparse attention patterns.

    import patterndsl
    compiled = patterndsl.compile("window(64) | global(0..8)", n=4096)
    compiled.mask(layer=0, head=0)      # torch.BoolTensor [n, n]
    compiled.layout(block_size=128)     # the block layout (patterndsl.layout.BlockLayout)
    patterndsl.attention(q, k, v, compiled, layer=0)
"""
# patterndsl.attention is the function, not its module: importing it here, before
# anything imports the submodule, binds the name for good (the module imports torch
# lazily, so this costs nothing).
from .attention import attention
from .compiled import CompiledPattern, compile, parse
from .errors import SpatError
from .formatter import format
from .targets.torch import attention_reference

__all__ = ["CompiledPattern", "SparseAttention", "SpatError", "attention", "attention_reference",
           "compile", "format", "parse"]


def __getattr__(name):
    # Imported on first use: it pulls in torch and Triton.
    if name == "SparseAttention":
        from .nn import SparseAttention

        return SparseAttention
    raise AttributeError(f"module 'patterndsl' has no attribute {name!r}")
