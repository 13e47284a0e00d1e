"""The Triton target: a standalone Python module of block-sparse attention kernels.

`patterndsl compile FILE --n N --target triton -o kernel.py` writes the module that
patterndsl/kernels/generate.py generates: Triton kernels (forward, dQ, dK/dV) with
the pattern's element predicate inlined, the block tables embedded, a
torch.autograd.Function and `attention(q, k, v, layer=0, scale=None)`. It needs only
torch and triton. The block size is the file's `block` statement, else 128 (the
kernels cut each block into smaller tiles where that is faster, so 128 costs the GPU
nothing; a smaller `block` skips more of a sparse pattern).
"""
from __future__ import annotations

from pathlib import Path

from . import register


@register("triton", "a standalone Triton block-sparse attention module (forward + backward)", ".py",
          block_sparse=True)
def emit_triton(compiled, path, block_size=None) -> str:
    from ..kernels.generate import module_source

    block_q, block_k = compiled.block_sizes(block_size)
    compiled.require_table_memory((block_q, block_k), what="a Triton module")
    # The layouts first: each is refused up front when it would exceed the memory budget.
    layouts = {id(l): l for layer in range(compiled.layers) for l in compiled.layouts(layer, (block_q, block_k))}
    text = module_source(compiled, (block_q, block_k))
    Path(path).write_text(text, encoding="utf-8")
    computed = sum(l.num_blocks for l in layouts.values())
    return (f"Triton kernels for {compiled.layers} layer(s) x {compiled.heads} head(s), blocks of "
            f"{block_q} x {block_k}, {len(layouts)} distinct layout(s) computing {computed:,} blocks")
