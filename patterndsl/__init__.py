"""patterndsl: a compiler for sparse attention patterns.

    import patterndsl
    compiled = patterndsl.compile("window(64) | global(0..8)", n=4096)
    compiled.mask(layer=0, head=0)      # torch.BoolTensor [n, n]
"""
from .compiled import CompiledPattern, compile, parse
from .errors import SpatError
from .formatter import format
from .targets.torch import attention_reference

__all__ = ["CompiledPattern", "SpatError", "attention_reference", "compile", "format", "parse"]
