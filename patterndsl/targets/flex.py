"""The FlexAttention target: a BlockMask built from our block layout, and a mask_mod
generated from the IR.

`block_mask(compiled, layer)` never evaluates the n² pairs that
`torch.nn.attention.flex_attention.create_block_mask` evaluates: the block lists
come straight from `compiled.layouts(...)` (computed from the primitives'
structure), and the transposed lists that backward passes need come from the
layout's own transposed CSR, not from torch's dense [query blocks × key blocks]
transposition. What remains dense is BlockMask's format itself: its index tensors
are [B, H, rows, columns] padded to the full number of blocks, which FlexAttention's
kernels require.

The mask_mod is one vectorizable torch expression per distinct head pattern
(`patterndsl.codegen.predicate_source`); tables (index lists of many ranges, the
pairs of `random`) become tensors the function captures. With several head
patterns, the expression picks one by the head index ``h``.

`patterndsl compile FILE --n N --target flex -o out.py` writes all this as a
Python module that needs only torch.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import numpy as np

from ..codegen import Backend, packed_lines, predicate_source
from ..reference import require_memory
from ..errors import Diagnostic, SpatError
from ..inputs import layer_problem, qkv_problem
from . import register

MASK_MOD_ARGS = ("b", "h", "q_idx", "kv_idx")


def require_softmax(compiled, what: str = "--target flex") -> None:
    """A SpatError, at the file's `prob`, unless its probability map is softmax: FlexAttention's
    score_mod acts on the scores before a softmax it fixes."""
    if str(compiled.prob) == "softmax":
        return
    from .. import ast as A

    span = next((s.span for s in compiled.module.statements if isinstance(s, A.Prob)), None)
    raise SpatError(Diagnostic(
        f"FlexAttention cannot run `prob {compiled.prob}` ({what}): it applies softmax after its "
        "score_mod, and no other probability map",
        span, help="the targets that run every ρ: --target triton, and in Python patterndsl.attention "
                   "(the native path on CPU, the Triton kernels on CUDA) or attention_reference"),
        compiled.source)


class TorchBackend(Backend):
    """Tables for the data-backed parts, read with torch indexing (works under vmap
    and inside torch.compile, where the tables become captured buffers)."""

    def lookup_member(self, name: str, var: str) -> str:
        return f"({name}[{var}] != 0)"

    def data(self, primitive, q: str, k: str, n: int) -> str:
        bq, bk = self.block_q, self.block_k
        name = self.bitmaps_table(primitive, n)
        # BlockBitmaps' lookup: bit (k % BK) % 32 of word (k % BK) // 32 of row q % BQ
        # of the bitmap of block (q // BQ, k // BK).
        return (f"((({name}_bits[{name}_slots[{q} // {bq}, {k} // {bk}], {q} % {bq}, ({k} % {bk}) // 32]"
                f" >> (({k} % {bk}) % 32)) & 1) != 0)")


@dataclass
class MaskModSource:
    """A mask_mod as Python source: ``source`` defines ``mask_mod(b, h, q_idx, kv_idx)``
    over the numpy ``tables`` (names the source uses) and the module ``torch``."""

    source: str
    tables: dict

    def build(self, device="cpu"):
        """The mask_mod function, its tables as tensors on ``device``."""
        import torch

        namespace = {"torch": torch}
        namespace.update({name: torch.from_numpy(np.ascontiguousarray(table)).to(device)
                          for name, table in self.tables.items()})
        exec(_mask_mod_code(self.source), namespace)
        return namespace["mask_mod"]


@functools.lru_cache(maxsize=64)
def _mask_mod_code(source: str):
    """The code object of a mask_mod's source: Python's compile() of it costs more than the
    rest of a small BlockMask (0.3 ms for a NATTEN grid), and the same pattern, compiled
    again, writes the same source. Failures are not cached: each call raises again."""
    try:
        return compile(source, "<patterndsl mask_mod>", "exec")
    except (SyntaxError, RecursionError, MemoryError):
        raise SpatError(Diagnostic(
            "the pattern is too deeply nested to write as a FlexAttention mask_mod",
            help="flatten long chains of operators (unions and intersections of many parts "
                 "need no nesting), or use the dense target: --target torch")) from None


def _head_groups(patterns) -> list[tuple[int, int, object]]:
    """Runs of consecutive heads with the same pattern: (first head, end, pattern)."""
    groups = []
    for head, pattern in enumerate(patterns):
        if groups and groups[-1][2] == pattern:
            groups[-1] = (groups[-1][0], head + 1, pattern)
        else:
            groups.append((head, head + 1, pattern))
    return groups


def mask_mod_source(compiled, layer: int = 0, block_size=None, *, one_document: bool = True) -> MaskModSource:
    """The mask_mod of one layer as source code (``block_size`` only sets the tiling
    of `random`'s bitmap tables). ``one_document``: define the segment names for a pattern
    using `segment` as one document (False: the caller defines them from run-time ids)."""
    block_q, block_k = compiled.block_sizes(block_size)
    layer, _ = compiled.index(layer, 0)
    backend = TorchBackend(block_q, block_k)
    groups = _head_groups(compiled.patterns[layer])
    size = getattr(compiled, "size", compiled.n)  # a cross file's patterns are built for max(m, n)
    expressions = [predicate_source(pattern, "q_idx", "kv_idx", size, backend) for _, _, pattern in groups]
    # One expression per run of heads; a chain of torch.where picks the run of head h
    # (the runs tile 0..H, so each test needs only the run's end).
    body = expressions[-1]
    for (_, end, _), expression in zip(reversed(groups[:-1]), reversed(expressions[:-1])):
        body = f"torch.where(h < {end}, {expression},\n        {body})"
    where = ", ".join(f"heads {lo}..{hi}" for lo, hi, _ in groups) if len(groups) > 1 else "every head"
    # Without run-time ids a pattern using `segment` means one document: every id equal,
    # each key's rank in its segment its position (segment_mask_mod_factory reads real ids).
    segment_names = (f"    {backend.SEG_Q}, {backend.SEG_K} = q_idx * 0, kv_idx * 0\n    {backend.SEGRANK_K} = kv_idx\n"
                     if backend.uses_segments and one_document else "")
    source = (f"def mask_mod({', '.join(MASK_MOD_ARGS)}):\n"
              f"    # n = {compiled.n}, layer {layer}: {where}\n"
              f"{segment_names}"
              f"    return {body}\n")
    return MaskModSource(source, backend.tables)


def mask_mod(compiled, layer: int = 0, block_size=None, device="cpu"):
    """The mask_mod(b, h, q_idx, kv_idx) of one layer, as a function (its source written once
    per compile, layer and blocks: a BlockMask built again pays only the tables' tensors)."""
    key = (compiled.index(layer, 0)[0], compiled.block_sizes(block_size))
    written = compiled.__dict__.setdefault("_mask_mod_sources", {})
    if key not in written:
        written[key] = mask_mod_source(compiled, layer, block_size)
    return written[key].build(device)


# ---- BlockMask from CSR lists ----------------------------------------------------
# BlockMask's format is dense in its last dimension: each index tensor is [B, H, rows,
# columns], a row's blocks first and zeros after them, and FlexAttention's compiled CPU
# kernel asserts columns × BLOCK ≥ KV_LEN. A narrower overlapping view (row stride = the
# widest row) computes the same attention but changes the tensors' strides with the
# pattern, and Dynamo guards on strides: every new width would recompile flex_attention.
# So the tensors keep create_block_mask's shape and strides, and only the listed entries
# are written: on the CPU into zeroed memory whose pages no list reaches stay unallocated
# (`_lazy_zeros`: 2^20 tokens in blocks of 64 touch MiBs of the 1 GiB grids), on another
# device by one scatter of the entries' flat positions. When a grid's rows are short (one
# page holds a row, so every page gets written anyway), the four grids are views of one
# allocation: numpy asks huge pages for it from 4 MiB on, and writing four separate 1 MiB
# grids (1,024 page faults, 1.6 ms) cost 30× the 55 µs of one 4 MiB buffer.


def _padded_positions(ptr: np.ndarray, idx: np.ndarray, columns: int):
    """(counts int32 [rows], flat positions int64, values idx): CSR lists (ptr [rows + 1],
    idx) written as FlexAttention's [rows, columns] grid holds them, each row's blocks first."""
    ptr = np.asarray(ptr, dtype=np.int64)
    counts = ptr[1:] - ptr[:-1]  # (np.diff: a few µs more of Python)
    total = int(ptr[-1])
    if not total:  # no blocks (a layout with only full or only partial ones)
        return counts.astype(np.int32), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
    # entry e of row r goes to r * columns + (e - ptr[r])
    shift = np.arange(0, counts.size * columns, columns, dtype=np.int64) - ptr[:-1]
    positions = np.arange(total, dtype=np.int64) + np.repeat(shift, counts)
    return counts.astype(np.int32), positions, idx  # (the int32 grid converts the values as it takes them)


def make_block_mask(n: int, block_q: int, block_k: int, head_lists, mask_mod, q_len=None):
    """A BlockMask [1, H, …] from per-head block lists: ``head_lists[h]`` is
    `layout_lists(layout, device)` (heads may share one dict, which is then written once
    per head and computed once)."""
    import torch

    q_len = n if q_len is None else q_len  # fewer queries than keys: a rectangular BlockMask
    num_q, num_k = -(-q_len // block_q), -(-n // block_k)
    device = head_lists[0]["device"]
    heads = len(head_lists)
    arguments = {}
    # the four grids hold heads · num_q · num_k entries each (kv: [num_q, num_k], q: transposed)
    grids = _index_grids(heads, max(num_q, 1), max(num_k, 1)) if device.type == "cpu" else None
    for which, (kind, lists, rows, columns) in enumerate((
            ("kv", "partial", num_q, num_k), ("full_kv", "full", num_q, num_k),
            ("q", "t_partial", num_k, num_q), ("full_q", "t_full", num_k, num_q))):
        columns = max(columns, 1)
        made = {}  # id of a head's lists -> its (counts, positions, values)
        for per_head in head_lists:
            if id(per_head) not in made:
                made[id(per_head)] = _padded_positions(*per_head[lists], columns)
        counts = (made[id(head_lists[0])][0][None, None] if heads == 1
                  else np.stack([made[id(per_head)][0] for per_head in head_lists])[None])
        counts = torch.from_numpy(counts)
        arguments[f"{kind}_num_blocks"] = counts if device.type == "cpu" else counts.to(device)
        if device.type == "cpu":
            indices = grids[which].reshape(1, heads, rows, columns)
            for head, per_head in enumerate(head_lists):
                _, positions, values = made[id(per_head)]
                if positions.size:
                    indices[0, head].reshape(-1)[positions] = values
            arguments[f"{kind}_indices"] = torch.from_numpy(indices)
        else:
            indices = torch.zeros((1, heads, rows, columns), dtype=torch.int32, device=device)
            for head, per_head in enumerate(head_lists):
                _, positions, values = made[id(per_head)]
                indices[0, head].view(-1)[torch.from_numpy(positions).to(device)] = torch.from_numpy(values.astype(np.int32)).to(device)
            arguments[f"{kind}_indices"] = indices
    return assemble_block_mask(arguments, q_len, n, block_q, block_k, mask_mod)


_ONE_PAGE = 4096 // 4  # int32 entries in a page


def _index_grids(heads: int, num_q: int, num_k: int) -> list:
    """Four zeroed int32 arrays of heads · num_q · num_k entries each, for make_block_mask's
    index grids: views of one allocation when a grid's rows fit in a page (each starting on a
    64-byte boundary, as separate tensors would), else four lazily committed ones."""
    size = heads * num_q * num_k
    if max(num_q, num_k) > _ONE_PAGE:  # long rows: only their first pages are ever written
        return [_lazy_zeros(size) for _ in range(4)]
    stride = -(-size // 16) * 16
    whole = np.zeros(4 * stride, dtype=np.int32)
    return [whole[k * stride:k * stride + size] for k in range(4)]


def _lazy_zeros(size: int) -> np.ndarray:
    """``size`` int32 zeros whose pages are committed only where written: an anonymous mapping
    without huge pages. numpy's zeros ask huge pages from 4 MiB on, and then the first write
    to each row of a 2^20-token grid (blocks of 64: rows of 64 KiB) commits 2 MiB — all four
    1 GiB grids, 8–21 s; with 4 KiB pages the same writes commit 0.29 GB in 0.4 s."""
    import mmap

    region = mmap.mmap(-1, max(size, 1) * 4)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # also where huge pages are the system's default
        region.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(region, dtype=np.int32, count=size)


def assemble_block_mask(arguments: dict, q_len: int, n: int, block_q: int, block_k: int, mask_mod):
    """The BlockMask of the eight tensors ``arguments`` (kv_num_blocks, kv_indices,
    full_kv_…, q_…, full_q_…), on this torch's BlockMask constructor."""
    import inspect

    from torch.nn.attention.flex_attention import BlockMask

    # the constructor's parameter names from its code object: inspect.signature costs 20 µs,
    # a tenth of a small BlockMask
    code = inspect.unwrap(BlockMask.__init__).__code__
    parameters = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    if "q_indices" not in parameters:  # an old torch that transposes the lists itself
        return BlockMask.from_kv_blocks(arguments["kv_num_blocks"], arguments["kv_indices"],
                                        arguments["full_kv_num_blocks"], arguments["full_kv_indices"],
                                        BLOCK_SIZE=(block_q, block_k), mask_mod=mask_mod)
    if "seq_lengths" in parameters:  # torch ≥ 2.6 knows a length that is not a multiple of the block
        arguments["seq_lengths"] = (q_len, n)
    return BlockMask(BLOCK_SIZE=(block_q, block_k), mask_mod=mask_mod, **arguments)


# The emitted module's builder: the same tensors as make_block_mask, from the CSR lists as
# torch tensors, in torch alone (the module needs no numpy and no patterndsl).


def fill_padded_lists(ptr, idx, counts, indices):
    """Write CSR lists (ptr [rows + 1], idx) in FlexAttention's form: ``counts`` [rows]
    gets each row's number of blocks, ``indices`` [rows, columns] (zeros) each row's
    blocks first."""
    import torch

    ptr = ptr.to(torch.int64)
    per_row = ptr[1:] - ptr[:-1]
    counts.copy_(per_row)
    row = torch.repeat_interleave(torch.arange(per_row.numel(), device=ptr.device), per_row)
    position = torch.arange(row.numel(), device=ptr.device) - ptr[:-1][row]
    indices[row, position] = idx.to(indices.dtype)


def torch_make_block_mask(n: int, block_q: int, block_k: int, head_lists, mask_mod, q_len=None):
    """make_block_mask for ``head_lists[h]`` mapping partial, full, t_partial and t_full to
    (ptr, idx) torch tensors; heads that share lists are copied, not rebuilt."""
    import torch

    q_len = n if q_len is None else q_len
    num_q, num_k = -(-q_len // block_q), -(-n // block_k)
    device = head_lists[0]["partial"][0].device
    heads = len(head_lists)
    arguments = {}
    for kind, lists, rows, columns in (("kv", "partial", num_q, num_k), ("full_kv", "full", num_q, num_k),
                                       ("q", "t_partial", num_k, num_q), ("full_q", "t_full", num_k, num_q)):
        counts = torch.zeros((1, heads, rows), dtype=torch.int32, device=device)
        indices = torch.zeros((1, heads, rows, max(columns, 1)), dtype=torch.int32, device=device)
        first_head = {}  # id of a head's lists -> the first head that has them
        for head, per_head in enumerate(head_lists):
            seen = first_head.setdefault(id(per_head), head)
            if seen == head:
                fill_padded_lists(*per_head[lists], counts[0, head], indices[0, head])
            else:
                counts[0, head] = counts[0, seen]
                indices[0, head] = indices[0, seen]
        arguments[f"{kind}_num_blocks"], arguments[f"{kind}_indices"] = counts, indices
    return assemble_block_mask(arguments, q_len, n, block_q, block_k, mask_mod)


# ---- from a compiled pattern -----------------------------------------------------


def layout_lists(layout, device) -> dict:
    """make_block_mask's input for one layout: its four CSR lists (numpy) and the device."""
    lists = {name: (getattr(layout, name + "_ptr"), getattr(layout, name + "_idx"))
             for name in ("partial", "full", "t_partial", "t_full")}
    lists["device"] = device
    return lists


def distinct_layouts(compiled, layer: int = 0, block_size=None):
    """(the distinct layouts of one layer, the index of each head's): heads that share a
    layout object share an entry; one entry means the BlockMask has one head."""
    distinct: list = []
    which = [_index_by_identity(distinct, layout) for layout in compiled.layouts(layer, block_size)]
    return distinct, which


def _index_by_identity(distinct: list, item) -> int:
    """The index of ``item`` in ``distinct`` by identity, appended when new (layouts
    are shared objects; comparing their arrays would cost far more)."""
    for k, seen in enumerate(distinct):
        if seen is item:
            return k
    distinct.append(item)
    return len(distinct) - 1


def _usable_device(device):
    """torch.device(device), or a SpatError when it is no device or not available here."""
    import torch

    try:
        device = torch.device(device)
        if device.type != "cpu":  # (the CPU is always there: no tensor to make)
            torch.empty(0, device=device)
    except (RuntimeError, TypeError, AssertionError) as exc:
        raise SpatError(Diagnostic(f"cannot use device {device!r}: {str(exc).splitlines()[0]}",
                                   help="e.g. device=\"cpu\", or \"cuda\" on a machine with a GPU")) from None
    return device


usable_device = _usable_device


def block_mask_bytes(compiled, layer: int, block_q: int, block_k: int) -> int:
    """The bytes of a BlockMask's index tensors: four int32 [1, H, rows, columns] grids, H the
    layer's distinct head patterns (1 when every head shares one)."""
    heads = len(set(compiled.patterns[layer]))
    return 4 * 4 * heads * -(-compiled.n // block_q) * -(-compiled.n // block_k)


def block_mask(compiled, layer: int = 0, block_size=None, device="cpu"):
    """A FlexAttention BlockMask [1, H, …] of one layer, built from the block layout.

    H is the pattern's number of heads, or 1 when every head has the same layout.
    ``block_size`` is an int or a (BQ, BK) pair (default: the file's `block`, else 128).
    """
    block_q, block_k = compiled.block_sizes(block_size)
    layer, _ = compiled.index(layer, 0)
    device = _usable_device(device)
    require_memory(f"a FlexAttention BlockMask at n = {compiled.n:,} in blocks of {block_q} × {block_k}",
                   block_mask_bytes(compiled, layer, block_q, block_k), compiled.memory_budget,
                   "use larger blocks or a smaller n (FlexAttention's BlockMask pads its block lists to "
                   "the whole [query blocks × key blocks] grid)")
    compiled.require_table_memory((block_q, block_k), [layer], "the mask_mod")
    distinct, which = distinct_layouts(compiled, layer, (block_q, block_k))
    lists = [layout_lists(layout, device) for layout in distinct]
    head_lists = [lists[k] for k in which] if len(distinct) > 1 else lists
    return make_block_mask(compiled.n, block_q, block_k, head_lists,
                           mask_mod(compiled, layer, (block_q, block_k), device))


def rows_block_mask(compiled, layer: int, block_size, device, q_offset: int, q_len: int):
    """A BlockMask [1, H, …] for q_len queries at positions q_offset … against compiled.n keys
    (FlexAttention's Q_LEN ≠ KV_LEN): the lists from layout.block_layout(..., q_offset=, q_len=),
    the mask_mod the pattern's with q_idx + q_offset."""
    from ..layout import block_layout

    block_q, block_k = compiled.block_sizes(block_size)
    layer, _ = compiled.index(layer, 0)
    device = _usable_device(device)
    compiled.require_table_memory((block_q, block_k), [layer], "the mask_mod")
    distinct: dict = {}
    for pattern in compiled.patterns[layer]:
        if pattern not in distinct:
            distinct[pattern] = layout_lists(block_layout(pattern, compiled.n, block_q, block_k,
                                                           q_offset=q_offset, q_len=q_len), device)
    head_lists = [distinct[p] for p in compiled.patterns[layer]] if len(distinct) > 1 else list(distinct.values())
    base = mask_mod(compiled, layer, (block_q, block_k), device)

    def shifted(b, h, q_idx, kv_idx):
        return base(b, h, q_idx + q_offset, kv_idx)

    return make_block_mask(compiled.n, block_q, block_k, head_lists, shifted, q_len=q_len)


# ---- the emitted module ----------------------------------------------------------


def _packed(array: np.ndarray, indent: str) -> str:
    """A numpy array as a Python expression: a literal when short, else zlib-compressed
    base64 for `_unpack` (compact and exact), wrapped at about 100 columns."""
    array = np.ascontiguousarray(array)
    if array.size <= 32:
        return f"torch.tensor({array.tolist()}, dtype=torch.{array.dtype.name})"
    text = f"\n{indent}    ".join(repr(line) for line in packed_lines(array))
    return f'_unpack("{array.dtype.str}", {tuple(array.shape)},\n{indent}    {text})'


_MODULE_HEADER = '''\
"""FlexAttention for {name}, generated by patterndsl.

n = {n}, {layers} layer pattern(s) (layer l of a model uses pattern l mod {layers}),
{heads} head(s), blocks of {block_q} x {block_k} (queries x keys).

{patterns}

Needs only torch (2.5 or newer):

    import this_module as pattern
    out = pattern.attention(q, k, v, layer=0)   # q [B, H, n, D]; k, v [B, Hkv, n, D], Hkv divides H
    bm = pattern.block_mask(layer=0, device="cuda")   # a flex_attention BlockMask
"""
import base64
import functools
import zlib

import torch
from torch.nn.attention.flex_attention import flex_attention

N = {n}
BLOCK_SIZE = ({block_q}, {block_k})
HEADS = {heads}
LAYERS = {layers}

_DTYPES = {{"|i1": torch.int8, "<i2": torch.int16, "<i4": torch.int32, "<i8": torch.int64}}


def _unpack(dtype, shape, *chunks):
    """A tensor from zlib-compressed, base64-encoded little-endian bytes."""
    raw = bytearray(zlib.decompress(base64.b64decode("".join(chunks))))
    return torch.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(shape)
'''

_MODULE_FOOTER = '''

def _layer_index(layer):
    """Layer l of a model uses pattern l mod LAYERS; a negative or non-integer layer is an error."""
    problem = layer_problem(layer)
    if problem is not None:
        raise ValueError(problem)
    return int(layer) % LAYERS


def mask_mod(layer=0, device="cpu"):
    """mask_mod(b, h, q_idx, kv_idx) of one layer, its tables on ``device``."""
    return _mask_mod(_layer_index(layer), str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _mask_mod(layer, device):
    return MASK_MODS[layer](**{name: table.to(device) for name, table in TABLES[layer].items()})


def block_mask(layer=0, device="cpu"):
    """The BlockMask [1, H, ...] of one layer on ``device``: H = HEADS, or 1 where every
    head has the same layout. Built from the block lists above."""
    return _block_mask(_layer_index(layer), str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _block_mask(layer, device):
    heads = [{name: (ptr.to(device), idx.to(device)) for name, (ptr, idx) in LAYOUTS[k].items()}
             for k in sorted(set(HEAD_LAYOUT[layer]))]
    by_index = dict(zip(sorted(set(HEAD_LAYOUT[layer])), heads))
    head_lists = [by_index[k] for k in HEAD_LAYOUT[layer]] if len(heads) > 1 else heads
    return torch_make_block_mask(N, BLOCK_SIZE[0], BLOCK_SIZE[1], head_lists, _mask_mod(layer, device))


@functools.lru_cache(maxsize=None)
def _compiled_flex_attention():
    return torch.compile(flex_attention, dynamic=False)


def attention(q, k, v, layer=0, scale=None):
    """Sparse attention with this pattern: q [B, H, n, D]; k and v [B, Hkv, n, D] with Hkv
    dividing H; float16, bfloat16 or float32. A query row with no connection gives zeros
    (FlexAttention's rule). FlexAttention has no backward pass on CPU."""
    problem = qkv_problem(q, k, v, N, HEADS, scale)
    if problem is not None:
        raise ValueError(problem[0] + (f" ({problem[1]})" if problem[1] else ""))
    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise ValueError("FlexAttention has no backward pass on CPU, and q, k or v requires grad "
                         "(run under torch.no_grad(), or on a GPU)")
    return _compiled_flex_attention()(q, k, v, block_mask=block_mask(layer, q.device), scale=scale,
                                      enable_gqa=k.shape[1] != q.shape[1])
'''


def _in_docstring(text: str) -> str:
    """Text that reads back the same from inside a triple-quoted docstring (a file may be
    named anything): backslashes, quotes and carriage returns escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")


def emit_module(compiled, block_size=None) -> str:
    """The source of a torch-only Python module with every layer's mask_mod, block
    layouts, `block_mask(layer, device)` and `attention(q, k, v, layer)`."""
    block_q, block_k = compiled.block_sizes(block_size)
    compiled.require_table_memory((block_q, block_k), what="a FlexAttention module")
    compiled.require_layout_memory((block_q, block_k))
    layouts, head_layout, sources, tables, described = [], [], [], [], []
    for layer in range(compiled.layers):  # every layout first (cached): one refused before any is counted
        compiled.layouts(layer, (block_q, block_k))
    for layer in range(compiled.layers):
        head_layout.append([_index_by_identity(layouts, layout)
                            for layout in compiled.layouts(layer, (block_q, block_k))])
        mod = mask_mod_source(compiled, layer, (block_q, block_k))
        sources.append(mod.source)
        tables.append(mod.tables)
        for lo, hi, pattern in _head_groups(compiled.patterns[layer]):
            where = [f"layer {layer}"] if compiled.layers > 1 else []
            where += [f"heads {lo}..{hi}"] if compiled.heads > 1 else []
            described.append(f"{', '.join(where) + ': ' if where else ''}{pattern}\n"
                             f"    {compiled.layout(layer, lo, (block_q, block_k)).summary()}")
    parts = [_MODULE_HEADER.format(name=_in_docstring(compiled.source.name), n=compiled.n,
                                   layers=compiled.layers, heads=compiled.heads, block_q=block_q,
                                   block_k=block_k, patterns=_in_docstring("\n".join(described)))]
    parts.append("\n\n# Each layer's element predicate, generated from the IR: a function of the layer's\n"
                 "# TABLES (captured tensors) that returns its mask_mod.\n")
    for layer, (source, layer_tables) in enumerate(zip(sources, tables)):
        body = "".join("    " + line + "\n" for line in source.splitlines())
        parts.append(f"def _layer{layer}_mask_mod({', '.join(layer_tables)}):\n{body}    return mask_mod\n\n\n")
    parts.append("MASK_MODS = [" + ", ".join(f"_layer{layer}_mask_mod" for layer in range(len(sources))) + "]\n")
    parts.append("\nTABLES = [\n" + "".join(
        "    {" + "".join(f"\n        {name!r}: {_packed(table, '        ')}," for name, table in layer_tables.items())
        + "},\n" for layer_tables in tables) + "]\n")
    parts.append("\n# Block layouts in CSR form: the partial and full key blocks of each query block, and\n"
                 "# the transposed lists (the query blocks of each key block) that backward passes use.\n"
                 "LAYOUTS = [\n")
    for layout in layouts:
        parts.append("    {" + "".join(
            f"\n        {name!r}: ({_packed(getattr(layout, name + '_ptr'), '            ')},\n"
            f"            {_packed(getattr(layout, name + '_idx'), '            ')}),"
            for name in ("partial", "full", "t_partial", "t_full")) + "},\n")
    parts.append("]\n")
    parts.append(f"HEAD_LAYOUT = {head_layout}  # per layer, the LAYOUTS entry of each head\n\n\n")
    parts.append("\n\n".join(inspect.getsource(function) for function in (
        fill_padded_lists, torch_make_block_mask, assemble_block_mask, qkv_problem, layer_problem)))
    parts.append(_MODULE_FOOTER)
    if getattr(compiled, "cross", False):
        return _cross_module("".join(parts), compiled.m)
    return "".join(parts)


def _cross_module(text: str, m: int) -> str:
    """The module of a cross file (`queries`, patterndsl/cross.py): M queries against N keys, a
    rectangular BlockMask (Q_LEN = M); q must have M rows."""
    edits = [
        ("\nN = ", f"\nM = {m}  # a cross file: M queries x N keys\nN = "),
        ("torch_make_block_mask(N, BLOCK_SIZE[0], BLOCK_SIZE[1], head_lists, _mask_mod(layer, device))",
         "torch_make_block_mask(N, BLOCK_SIZE[0], BLOCK_SIZE[1], head_lists, _mask_mod(layer, device), q_len=M)"),
        ("    problem = qkv_problem(q, k, v, N, HEADS, scale)\n",
         "    problem = qkv_problem(q, k, v, N, HEADS, scale, queries_may_differ=True)\n"
         "    if problem is None and q.shape[2] != M:\n"
         "        problem = (f\"q has {q.shape[2]} rows, but this cross pattern has M = {M} queries\", None)\n"),
    ]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


# "_flex.py": the default output (FILE's stem + suffix) must not clobber a module named
# like the .spat file, nor the triton target's.
@register("flex", "a torch-only Python module: FlexAttention BlockMask, mask_mod and attention()", "_flex.py",
          block_sparse=True)
def emit_flex(compiled, path, block_size=None) -> str:
    require_softmax(compiled)
    text = emit_module(compiled, block_size)
    path.write_text(text, encoding="utf-8")
    return f"a FlexAttention module ({len(text.encode()):,} bytes)"


# ---- run-time segments (patterndsl/segments.py) ------------------------------------


def segment_mask_mod_factory(compiled, layer: int = 0, block_size=None, device="cpu"):
    """make(SEG, SEGRANK) -> mask_mod(b, h, q_idx, kv_idx) of one layer of a pattern using
    `segment`: the generated predicate with seg_q = SEG[b, q_idx], seg_k = SEG[b, kv_idx]
    and segrank_k = SEGRANK[b, kv_idx] (int64 [B, n] tensors: the ids and their ranks,
    segments.torch_ranks). The function is made once; each call's ids are only data."""
    import torch

    made = mask_mod_source(compiled, layer, block_size, one_document=False)
    header, *body = made.source.splitlines()
    source = ("def make(SEG, SEGRANK):\n"
              f"    {header}\n"
              "        seg_q = SEG[b, q_idx]\n"
              "        seg_k = SEG[b, kv_idx]\n"
              "        segrank_k = SEGRANK[b, kv_idx]\n"
              + "".join(f"    {line}\n" for line in body)
              + "    return mask_mod\n")
    namespace = {"torch": torch}
    namespace.update({name: torch.from_numpy(np.ascontiguousarray(table)).to(device)
                      for name, table in made.tables.items()})
    exec(compile(source, "<patterndsl segment mask_mod>", "exec"), namespace)
    return namespace["make"]


def segment_layouts(compiled, layer: int, block_q: int, block_k: int) -> list:
    """Each head's block layout of the pattern with `segment` read as what holds for every
    segmentation (segments.static_pattern), cached on ``compiled``."""
    from ..layout import block_layout
    from ..primitives import All, Nothing
    from ..segments import static_pattern

    cache = compiled.__dict__.setdefault("_segment_layouts", {})
    key = (layer, block_q, block_k)
    if key not in cache:
        made: dict = {}
        for pattern in compiled.patterns[layer]:
            if pattern not in made:
                made[pattern] = block_layout(static_pattern(pattern, All(), Nothing()), compiled.n, block_q, block_k)
        cache[key] = [made[p] for p in compiled.patterns[layer]]
    return cache[key]


def segment_block_mask(compiled, layer: int, segments, block_size=None, device="cpu", make=None):
    """A BlockMask [B, H, …] for one call's segment ids: the static layout (segment read as
    what holds for every segmentation; segment_layouts) cut, when the
    pattern is `segment & …`, to each batch row's segments.segment_block_ranges — torch
    ops on the device over the [B, H, query blocks, key blocks] grid, no n² mask_mod sweep.
    Every kept block is partial (the mask_mod decides its pairs)."""
    import torch
    from torch.nn.attention.flex_attention import BlockMask

    from ..segments import segment_block_ranges, top_level_segment, torch_ranks

    block_q, block_k = compiled.block_sizes(block_size)
    layer, _ = compiled.index(layer, 0)
    n = compiled.n
    ids = segments.to(device=device, dtype=torch.int64)
    batch = ids.shape[0]
    layouts = segment_layouts(compiled, layer, block_q, block_k)
    distinct, which = [], []
    for layout in layouts:
        which.append(_index_by_identity(distinct, layout))
    arguments = {}
    within = all(top_level_segment(p) for p in compiled.patterns[layer])
    intervals = _interval_rows(compiled, distinct, device) if within else None
    if intervals is not None:  # each static row an interval, both ends nondecreasing (causal, windows):
        # the kept blocks are intervals too, in rows and in columns: no [B, H, Q, K] grid to scan
        lo, hi = segment_block_ranges(ids, 0, n, block_q, block_k)
        static_lo, static_hi = intervals  # [H', Q]
        if len(distinct) > 1:
            static_lo, static_hi = (t[torch.tensor(which, device=device)] for t in intervals)
        arguments.update(_interval_lists(torch.maximum(lo[:, None], static_lo[None]),
                                         torch.minimum(hi[:, None], static_hi[None]), distinct[0].num_k_blocks))
    else:
        static = torch.stack([torch.from_numpy(layout.to_dense() > 0) for layout in distinct]).to(device)  # [H', Q, K]
        keep = static.unsqueeze(0).expand(batch, *static.shape)
        if within:
            lo, hi = segment_block_ranges(ids, 0, n, block_q, block_k)
            kb = torch.arange(static.shape[-1], device=device)
            keep = keep & ((kb >= lo[:, None, :, None]) & (kb < hi[:, None, :, None]))
        if len(distinct) > 1:
            keep = keep[:, torch.tensor(which, device=device)]
        for kind, grid in (("kv", keep), ("q", keep.transpose(-1, -2))):
            counts, indices = _ordered_lists(grid)
            arguments[f"{kind}_num_blocks"], arguments[f"{kind}_indices"] = counts, indices
            arguments[f"full_{kind}_num_blocks"] = torch.zeros_like(counts)
            arguments[f"full_{kind}_indices"] = torch.zeros_like(indices)
    if make is None:
        make = segment_mask_mod_factory(compiled, layer, (block_q, block_k), device)
    ids = ids.contiguous()  # whatever the caller's strides: Dynamo guards on the captured tensors' strides
    ranks = torch_ranks(ids).contiguous() if _reads_ranks(compiled, layer) else ids
    mask_mod = make(ids, ranks)
    import inspect

    parameters = inspect.signature(BlockMask.__init__).parameters
    if "q_indices" not in parameters:  # an old torch that transposes the lists itself
        return BlockMask.from_kv_blocks(arguments["kv_num_blocks"], arguments["kv_indices"],
                                        BLOCK_SIZE=(block_q, block_k), mask_mod=mask_mod)
    if "seq_lengths" in parameters:
        arguments["seq_lengths"] = (n, n)
    return BlockMask(BLOCK_SIZE=(block_q, block_k), mask_mod=mask_mod, **arguments)


def _interval_rows(compiled, distinct: list, device):
    """(lo, hi) int64 [H', Q] on ``device`` when every static layout's query block keeps one
    interval [lo, hi) of key blocks with lo and hi nondecreasing (causal, windows), else
    None; computed once per layout (O(blocks)) and cached on ``compiled``."""
    import torch

    cache = compiled.__dict__.setdefault("_segment_intervals", {})
    rows = []
    for layout in distinct:
        if id(layout) not in cache:
            qb, kb, _ = layout.blocks()
            count = np.bincount(qb, minlength=layout.num_q_blocks)
            first = np.full(layout.num_q_blocks, layout.num_k_blocks, dtype=np.int64)
            last = np.full(layout.num_q_blocks, -1, dtype=np.int64)
            np.minimum.at(first, qb, kb)
            np.maximum.at(last, qb, kb)
            lo, hi = np.where(count > 0, first, 0), np.where(count > 0, last + 1, 0)
            fine = (bool(np.all(count == hi - lo)) and bool(np.all(np.diff(lo) >= 0))
                    and bool(np.all(np.diff(hi) >= 0)))
            cache[id(layout)] = (layout, (lo, hi) if fine else None)  # the layout kept: ids stay unique
        rows.append(cache[id(layout)][1])
    if any(row is None for row in rows):
        return None
    return tuple(torch.from_numpy(np.stack([row[k] for row in rows])).to(device) for k in (0, 1))


def _interval_lists(lo, hi, num_k: int) -> dict:
    """BlockMask lists for kept blocks [lo, hi) per (batch, head, query block) — lo and hi
    [B, H, Q] nondecreasing along Q — and their transposes: each key block's query blocks
    are then the interval of blocks with lo ≤ kb < hi, found by binary search. Indices past
    a row's count are 0, as `_ordered_lists` leaves them."""
    import torch

    lo, hi = lo.to(torch.int32), torch.maximum(hi, lo).to(torch.int32)
    # (an empty row as lo = hi keeps both ends nondecreasing for the binary searches)
    kv_counts = hi - lo
    columns = torch.arange(num_k, device=lo.device, dtype=torch.int32)
    kv_indices = torch.where(columns < kv_counts[..., None], lo[..., None] + columns, 0)
    keys = columns.expand(*lo.shape[:-1], num_k).contiguous()
    first = torch.searchsorted(hi.contiguous(), keys, right=True, out_int32=True)  # first query block with hi > kb
    end = torch.searchsorted(lo.contiguous(), keys, right=True, out_int32=True)  # past the last with lo ≤ kb
    q_counts = torch.clamp(end - first, min=0)
    rows = torch.arange(lo.shape[-1], device=lo.device, dtype=torch.int32)
    q_indices = torch.where(rows < q_counts[..., None], first[..., None] + rows, 0)
    # every kept block is partial (the mask_mod decides its pairs): no full-block lists
    return {"kv_num_blocks": kv_counts, "kv_indices": kv_indices, "full_kv_num_blocks": None,
            "full_kv_indices": None, "q_num_blocks": q_counts, "q_indices": q_indices,
            "full_q_num_blocks": None, "full_q_indices": None}


def _ordered_lists(keep):
    """(counts int32 [..., rows], indices int32 [..., rows, columns]): each row's kept
    columns first, ascending — by a cumulative sum and one scatter, no sort."""
    import torch

    columns = keep.shape[-1]
    position = torch.cumsum(keep, dim=-1, dtype=torch.int32) - 1
    target = torch.where(keep, position, torch.full_like(position, columns)).to(torch.int64)  # dropped: a spare column
    indices = torch.zeros(*keep.shape[:-1], columns + 1, dtype=torch.int32, device=keep.device)
    index = torch.arange(columns, dtype=torch.int32, device=keep.device).expand(keep.shape)
    indices.scatter_(-1, target, index)
    return keep.sum(dim=-1, dtype=torch.int32), indices[..., :columns].contiguous()


def _reads_ranks(compiled, layer: int) -> bool:
    """Whether the layer uses `segment_start` (whose test reads each key's rank)."""
    def walk(node):
        return type(node).__name__ == "SegmentStart" or any(walk(c) for c in node.children())

    return any(walk(p) for p in compiled.patterns[layer])
