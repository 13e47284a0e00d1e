"""The one code generator for Triton block-sparse attention.

`module_source(compiled, block_size)` returns the text of a self-contained Python
module (torch and Triton only; patterndsl is not imported) that runs every layer
and head of a compiled pattern. `patterndsl compile --target triton` writes it to
a file; `patterndsl.kernels.triton_attention` writes it to a cache directory and
imports it (Triton's JIT reads a kernel's source from its file).

The module is the source of patterndsl/kernels/blocksparse.py, real code, with its
*pattern part* written for the pattern (see `KernelSource.assemble`):

- the distinct patterns of all layers and heads, numbered 0..P-1 (pattern ids),
  and a table of the pattern id of each layer and head;
- TABLES, one int32 buffer: each pattern's block layout (CSR lists of partial and
  full key blocks per query block, and the transposed lists) concatenated, the work
  items below, and the data tables the predicates read, zlib-compressed and
  base64-encoded;
- `_allowed(q, k, N, pattern, TABLES)`: the element predicate of every pattern, each
  written by its primitives (`Primitive.source`, patterndsl/codegen.py) and chosen
  by pattern id at run time;
- when some query block's list (or some key block's transposed list) is much longer
  than the others', work items that cut the long lists into pieces of at most
  MAX_BLOCKS_PER_PROGRAM blocks (see `work_items`), so that one program no longer does
  the work of hundreds: e.g. `global(0..8)` gives query block 0 every key block.
  The kernels that merge the pieces are left out of a module that cuts no list.
"""
from __future__ import annotations

import ast
import functools
import math
import os
import re
import textwrap
from pathlib import Path

import numpy as np

from ..codegen import Backend, packed_lines, predicate_source
from ..errors import Diagnostic, SpatError

MAX_HEAD_DIM = 256
# $PATTERNDSL_MAX_BLOCKS_PER_PROGRAM overrides the default limit on the blocks one program walks.
MAX_BLOCKS_ENV = "PATTERNDSL_MAX_BLOCKS_PER_PROGRAM"
TILE_QUANTUM = 16  # the smallest kernel tile (tl.dot needs 16); block sizes must be multiples of it


class TritonBackend(Backend):
    """Data-backed predicate parts as Triton loads from tables named ``T_<name>``.

    Table lookups are masked to the sequence (``N`` is the predicate's parameter), so
    the padding rows and columns of a tile read nothing out of bounds."""

    def lookup_member(self, name: str, var: str) -> str:
        return f"(tl.load(T_{name} + {var}, mask=({var} >= 0) & ({var} < N), other=0) != 0)"

    def data(self, primitive, q: str, k: str, n: int) -> str:
        bq, bk = self.block_q, self.block_k
        name = self.bitmaps_table(primitive, n)
        if self.tables[name + "_bits"].size >= 2**31:
            raise SpatError(Diagnostic(f"{primitive} at n = {n} needs {self.tables[name + '_bits'].size:,} bitmap "
                                       "words, more than int32 offsets reach",
                                       help="use larger blocks or fewer random keys"))
        num_k_blocks, words = -(-n // bk), -(-bk // 32)
        inside = f"({q} < N) & ({k} < N)"
        slot = f"tl.load(T_{name}_slots + ({q} // {bq}) * {num_k_blocks} + {k} // {bk}, mask={inside}, other=0)"
        word = (f"tl.load(T_{name}_bits + ({slot} * {bq} + {q} % {bq}) * {words} + ({k} % {bk}) // 32, "
                f"mask={inside}, other=0)")
        return f"((({word} >> (({k} % {bk}) % 32)) & 1) != 0)"


def alpha_of(compiled) -> float | None:
    """The α of the file's probability map (``str(compiled.prob)``): None for softmax, 2.0 for
    sparsemax, α for entmax(α)."""
    prob = str(compiled.prob)
    if prob == "softmax":
        return None
    if prob == "sparsemax":
        return 2.0
    match = re.fullmatch(r"entmax\(([0-9.]+)\)", prob)
    if match is None:
        raise SpatError(Diagnostic(f"the Triton kernels have no probability map {prob!r}",
                                   help="they run softmax, sparsemax and entmax(α)"))
    return float(match.group(1))


def check_block_sizes(block_q: int, block_k: int):
    for size in (block_q, block_k):
        if size % TILE_QUANTUM:
            raise SpatError(Diagnostic(f"the Triton kernels need block sizes that are multiples of {TILE_QUANTUM}, "
                                       f"got {block_q} x {block_k}",
                                       help="use block 64 or block 128 (powers of two suit GPUs best)"))


def distinct_patterns(compiled):
    """(patterns, head_patterns): the distinct IR patterns in first-seen order, and for each
    layer the pattern id of each head ([id] alone when every head shares it)."""
    ids: dict = {}
    head_patterns = []
    for layer in compiled.patterns:
        row = [ids.setdefault(pattern, len(ids)) for pattern in layer]
        head_patterns.append(row[:1] if compiled.heads == 1 else row)
    return list(ids), head_patterns


def _one_document(primitive, positive: bool):
    """What a segment primitive is replaced by in the pattern read inside one run of equal ids,
    as a subset of the pattern: `segment` is `all` there (exactly); `segment_start(k)` depends
    on where the run starts, so it is `none` where it appears positively, `all` negatively."""
    from ..primitives import All, Nothing

    if type(primitive).__name__ == "Segment" or not positive:
        return All()
    return Nothing()


def segment_layout(pattern, n: int, block_q: int, block_k: int):
    """The block layout the kernels run a pattern reading segment ids with, for every
    segmentation: its blocks those of the pattern with `segment` read as `all` (a superset:
    segments.static_pattern), full those full for the pattern read in one document
    (`_one_document`, a subset there), partial the others. The kernels take a full block's tile
    as full only where its queries and keys lie in one run of equal ids (`_segment_cut`), and
    each batch row skips the blocks outside its documents (`_segments`)."""
    from ..layout import FULL, PARTIAL, BlockLayout, block_layout
    from ..primitives import All, Nothing
    from ..segments import static_pattern

    superset = block_layout(static_pattern(pattern, All(), Nothing()), n, block_q, block_k)
    inside = block_layout(static_pattern(pattern, lambda p: _one_document(p, True), lambda p: _one_document(p, False)),
                          n, block_q, block_k)
    qb, kb, _ = superset.blocks()
    full_qb, full_kb, full_states = inside.blocks()
    num_k = superset.num_k_blocks
    full_keys = (full_qb * num_k + full_kb)[full_states == FULL]
    states = np.where(np.isin(qb * num_k + kb, full_keys), FULL, PARTIAL).astype(np.int8)
    return BlockLayout.from_blocks(n, block_q, block_k, qb, kb, states, lambda: superset.connections)


def _layout_tables(compiled, patterns, block_q, block_k):
    """The CSR lists of every pattern, concatenated; ptr entries index the concatenation."""
    from ..layout import block_layout
    from ..segments import uses_segments

    layouts = [segment_layout(p, compiled.n, block_q, block_k) if uses_segments(p) else
               block_layout(p, compiled.n, block_q, block_k) for p in patterns]
    tables = {}
    for name in ("partial", "full", "t_partial", "t_full"):
        ptrs, idxs, base = [], [], 0
        for layout in layouts:
            ptr = getattr(layout, name + "_ptr").astype(np.int64)
            idx = getattr(layout, name + "_idx").astype(np.int64)
            ptrs.append(ptr + base)
            idxs.append(idx)
            base += idx.size
        if base >= 2**31:
            raise SpatError(Diagnostic(f"the block lists hold {base:,} blocks, more than int32 offsets reach",
                                       help="use larger blocks"))
        tables[name + "_ptr"] = np.concatenate(ptrs).astype(np.int32)
        tables[name + "_idx"] = np.concatenate(idxs).astype(np.int32)
    return layouts, tables


def default_max_blocks(lengths: np.ndarray) -> int:
    """The most blocks one work item may hold, for lists of these lengths ([patterns, rows]):
    4 times the mean list, and at least 16. A list no longer than that is left whole, so the
    usual pattern (window, causal, ...) is not split at all; an item of 16 blocks or more does
    enough work that writing its partial result (and merging it) costs little beside it."""
    mean = float(lengths.sum()) / max(lengths.size, 1)
    return max(16, math.ceil(4 * mean))


def resolve_max_blocks(max_blocks_per_program) -> int | None:
    """The explicit limit: the argument, else $PATTERNDSL_MAX_BLOCKS_PER_PROGRAM, else None
    (the layout's default_max_blocks)."""
    value = max_blocks_per_program
    if value is None:
        text = os.environ.get(MAX_BLOCKS_ENV, "").strip()
        if not text:
            return None
        try:
            value = int(text)
        except ValueError:
            raise SpatError(Diagnostic(f"${MAX_BLOCKS_ENV} must be a positive integer, got {text!r}")) from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpatError(Diagnostic(f"max_blocks_per_program must be a positive integer, got {value!r}"))
    return int(value)


def work_items(partial_ptr: np.ndarray, full_ptr: np.ndarray, patterns: int, limit: int | None):
    """Work items over the lists of one direction (query blocks' key-block lists, or key blocks'
    query-block lists), or None when no list is longer than the limit.

    partial_ptr, full_ptr: the concatenated CSR pointers, [patterns * (rows + 1)]. A row's list is
    its partial blocks then its full blocks; a row is cut into c = ceil(L / limit) near-equal
    pieces, L its longest list over the patterns. The pieces are shared by all patterns (piece j
    of every pattern's list, possibly empty), so that the grid, the scratch slots and the merge
    do not depend on the pattern a head runs (grouped heads with different patterns share one
    dK/dV program). Returns (limit, tables, counts):

      items [patterns, items, 4]: absolute partial start, end, full start, end of each piece;
      item_info [items, 2]: the row, and its scratch slot (-1: the row is whole, write directly);
      splits [split rows, 3]: the row, its first slot, its number of pieces (slots are consecutive).

    Items run longest first, so the long pieces start early and the short ones fill in behind
    them (the GPU runs programs roughly in launch order)."""
    partial_ptr = partial_ptr.astype(np.int64).reshape(patterns, -1)
    full_ptr = full_ptr.astype(np.int64).reshape(patterns, -1)
    num_partial, num_full = np.diff(partial_ptr, axis=1), np.diff(full_ptr, axis=1)  # [patterns, rows]
    lengths = num_partial + num_full
    limit = limit if limit is not None else default_max_blocks(lengths)
    longest = lengths.max(axis=0)
    count = np.maximum(1, -(-longest // limit))
    if count.max() <= 1:
        return None
    rows = np.repeat(np.arange(count.size), count)
    piece = np.arange(rows.size) - np.repeat(np.cumsum(count) - count, count)
    pieces = count[rows]
    length, own_partial = lengths[:, rows], num_partial[:, rows]
    a, b = piece * length // pieces, (piece + 1) * length // pieces  # [patterns, items], combined offsets
    items = np.stack([partial_ptr[:, rows] + np.minimum(a, own_partial),
                      partial_ptr[:, rows] + np.minimum(b, own_partial),
                      full_ptr[:, rows] + np.maximum(a - own_partial, 0),
                      full_ptr[:, rows] + np.maximum(b - own_partial, 0)], axis=-1)
    split_rows = np.flatnonzero(count > 1)
    first_slot = np.zeros(count.size, dtype=np.int64)
    first_slot[split_rows] = np.cumsum(count[split_rows]) - count[split_rows]
    slot = np.where(pieces > 1, first_slot[rows] + piece, -1)
    order = np.argsort(-(b - a).max(axis=0), kind="stable")
    tables = {
        "items": items[:, order].astype(np.int32).ravel(),
        "item_info": np.stack([rows, slot], axis=-1)[order].astype(np.int32).ravel(),
        "splits": np.stack([split_rows, first_slot[split_rows], count[split_rows]], axis=-1).astype(np.int32).ravel(),
    }
    counts = {"items": int(rows.size), "slots": int(count[split_rows].sum()), "splits": int(split_rows.size)}
    return limit, tables, counts


def _allowed_body(expressions: list[str], patterns, data_lines: list[str], parameterized: bool = False) -> list[str]:
    """The body of `_allowed`: pointers to its data tables (and its n-dependent constants),
    then one branch per pattern id (none when there is one pattern). With ``parameterized``
    the branches name their pattern by id (PATTERNS[id] holds its text at the module's n), so
    that the body is the same at every n."""
    def branch(expression, pid, pattern, indent):
        comment = f"PATTERNS[{pid}]" if parameterized else textwrap.shorten(str(pattern), 200, placeholder=" …")
        return [f"{indent}# {comment}", f"{indent}connected = in_bounds & {expression}"]

    lines = [f"    {line}" for line in data_lines] + ["    in_bounds = (q < N) & (k < N)"]
    if len(expressions) == 1:
        return lines + branch(expressions[0], 0, patterns[0], "    ") + ["    return connected"]
    for pid, (expression, pattern) in enumerate(zip(expressions, patterns)):
        keyword = "if" if pid == 0 else ("else" if pid == len(expressions) - 1 else "elif")
        lines.append(f"    {keyword}:" if keyword == "else" else f"    {keyword} pattern == {pid}:")
        lines += branch(expression, pid, pattern, "        ")
    return lines + ["    return connected"]


# ---- one kernel source for every n ---------------------------------------------------------
# The predicates' source holds integer constants, some of which depend on n (stride(isqrt(n)),
# global(n - 1), a random table's number of key blocks). They are found by writing the
# predicates at two probe lengths: where only some literals differ, those literals become
# run-time parameters P0, P1, ... (read from TABLES' `params` table), so the kernels' source
# is the same at every n whose predicates have that shape with the same other literals (checked
# for each n). Other n (a shape that changes with n) get source of their own.
PROBES = (4093, 6151)
# The names the `segment` primitives' source refers to (patterndsl/codegen.py's backend hooks).
_SEGMENT_NAMES = re.compile(r"\b(seg_q|seg_k|segrank_k)\b")
_LITERAL = re.compile(r"(?<![\w.])\d+(?![\w.])")


def _predicates(compiled, block_q: int, block_k: int):
    """(patterns, head patterns, predicate expressions, backend) of ``compiled`` at its n."""
    patterns, head_patterns = distinct_patterns(compiled)
    backend = TritonBackend(block_q, block_k)
    expressions = [predicate_source(p, "q", "k", compiled.n, backend) for p in patterns]
    return patterns, head_patterns, expressions, backend


def _shape(expressions, head_patterns):
    """(the expressions with every integer literal as '#', and with the head patterns; the literals)."""
    text = "\n".join(expressions)
    return (_LITERAL.sub("#", text), repr(head_patterns)), [int(x) for x in _LITERAL.findall(text)]


def parameter_template(compiled, block_q: int, block_k: int):
    """(shape, literals at the first probe, positions of the n-dependent literals), or None where
    the predicates' shape differs between the probe lengths; made once per compiled pattern."""
    cache = compiled.__dict__.setdefault("_triton_templates", {})
    key = (block_q, block_k)
    if key not in cache:
        shapes = []
        for probe in PROBES:
            try:
                _, heads, expressions, _ = _predicates(compiled.at(probe), block_q, block_k)
            except SpatError:
                shapes = None
                break
            shapes.append(_shape(expressions, heads))
        if shapes is None or shapes[0][0] != shapes[1][0]:
            cache[key] = None
        else:
            (shape, first), (_, second) = shapes
            cache[key] = (shape, first, tuple(i for i, (x, y) in enumerate(zip(first, second)) if x != y))
    return cache[key]


def parameterize(compiled, expressions, head_patterns, block_q: int, block_k: int):
    """(expressions with the n-dependent literals as P0, P1, ..., their values at compiled.n),
    or (expressions, None) where compiled.n does not fit the template (source of its own)."""
    template = parameter_template(compiled, block_q, block_k)
    shape, literals = _shape(expressions, head_patterns)
    if template is None or shape != template[0]:
        return expressions, None
    positions = set(template[2])
    if any(value != template[1][i] for i, value in enumerate(literals) if i not in positions):
        return expressions, None
    counter = iter(range(len(literals)))
    order = {position: j for j, position in enumerate(template[2])}

    def replace(match):
        index = next(counter)
        return f"P{order[index]}" if index in positions else match.group(0)

    text = _LITERAL.sub(replace, "\n".join(expressions))
    return text.split("\n"), [literals[i] for i in template[2]]


def _docstring_safe(text: str) -> str:
    """``text`` as it may stand inside a triple-quoted docstring: printable, no backslash escapes,
    no closing quotes."""
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text)
    return text.replace("\\", "\\\\").replace('"' * 3, '\\"' * 3)


# ---- the kernels' own source ---------------------------------------------------------------

KERNELS = Path(__file__).with_name("blocksparse.py")
# Definitions of blocksparse.py that only cut lists use, left out of a module that cuts none:
# those of cut query-block lists (forward merge), and those of any cut list (the summing of
# gradient pieces, scratch buffers).
CUT_QUERY_LISTS_ONLY = ("_fwd_combine", "_merge_forward")
CUT_LISTS_ONLY = ("_merge_program", "_sum_slots", "MERGE_TILE", "_scratch", "_sum_into")


class KernelSource:
    """blocksparse.py's text as top-level statements, each with its lines (decorators and the
    comment lines right above it included), read without importing it (nor triton)."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.tree = ast.parse(text)
        self.spans = []  # (first line, end line, names defined), 0-based, end exclusive
        previous_end = 0
        for node in self.tree.body:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
            while first > previous_end and self.lines[first - 1].startswith("#"):
                first -= 1
            self.spans.append((first, node.end_lineno, _defined_names(node)))
            previous_end = node.end_lineno

    def pattern_part_names(self) -> set[str]:
        """The names the pattern part defines: every statement after the imports up to `_allowed`."""
        names = set()
        for node, (_, _, defined) in zip(self.tree.body, self.spans):
            if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr)):
                names |= defined
            if "_allowed" in defined:
                return names
        raise AssertionError("blocksparse.py defines no _allowed")

    def node(self, name: str):
        return next(node for node, (_, _, names) in zip(self.tree.body, self.spans) if name in names)

    def literal(self, name: str):
        return ast.literal_eval(self.node(name).value)

    def assemble(self, docstring: str, pattern_part: str, generated: set[str], left_out: set[str]) -> str:
        """The module: ``docstring``, then every statement but the module's docstring, with the
        statements defining ``generated`` names replaced by ``pattern_part`` (at the first of
        them) and those defining ``left_out`` names dropped. The text between statements
        (blank lines, section comments) is kept."""
        out, cursor, placed = [docstring], 0, False
        for index, (first, end, names) in enumerate(self.spans):
            gap = self.lines[cursor:first]
            cursor = end
            if index == 0 and isinstance(self.tree.body[0], ast.Expr):
                continue  # the module docstring
            if names & generated:
                if not placed:  # the pattern part, where the first placeholder stood
                    out += gap + [pattern_part]
                    placed = True
            elif names & left_out:
                continue
            else:
                out += gap + self.lines[first:end]
        return "\n".join(out + self.lines[cursor:]).rstrip("\n") + "\n"


def _defined_names(node) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {name.id for target in node.targets for name in ast.walk(target) if isinstance(name, ast.Name)}
    return set()


@functools.lru_cache(maxsize=1)
def kernel_source() -> KernelSource:
    return KernelSource(KERNELS.read_text(encoding="utf-8"))


def _tables_buffer(names, tables: dict, data: dict):
    """(one int32 array: the offsets of the ``names`` tables and of the predicates' ``data``
    tables, then those tables; and the offset and size of every table by name)."""
    parts = [(name, np.ascontiguousarray(tables[name]).astype(np.int32).ravel()) for name in names]
    parts += [(name, np.ascontiguousarray(array).astype(np.int32).ravel()) for name, array in data.items()]
    parts = [(name, array if array.size else np.zeros(1, dtype=np.int32)) for name, array in parts]
    where, offset = {}, len(names) + len(data)
    for name, array in parts:
        where[name] = (offset, array.size)
        offset += array.size
    if offset >= 2**31:
        raise SpatError(Diagnostic(f"the kernels' tables hold {offset:,} entries, more than int32 offsets reach",
                                   help="use larger blocks"))
    header = np.array([where[name][0] for name, _ in parts], dtype=np.int32)
    return np.concatenate([header] + [array for _, array in parts]), where


class ModuleParts:
    """The generated module of one compiled pattern, block size and limit, in its two parts:
    ``code``, the n-independent part of its pattern part (block sizes, layers and heads, the
    probability map and `_allowed`), the same for every n the predicates' template fits; and
    the data of its n: ``plan`` (the keyword arguments of the module's `Plan`) and the data
    lines of the pattern part (``data``). ``text()`` is the whole module."""

    def __init__(self, compiled, code: str, data: str, plan: dict, left_out: set, parameterized: bool):
        self.compiled, self.code, self.data, self.plan = compiled, code, data, plan
        self.left_out, self.parameterized = left_out, parameterized

    @property
    def key(self) -> str:
        """What identifies the kernels' source: the code part and what the module leaves out."""
        return self.code + "\n# left out: " + ", ".join(sorted(self.left_out))

    def text(self) -> str:
        source = kernel_source()
        pattern_part = self.data + "\n" + self.code
        if self.left_out:
            pattern_part += ("\n\n# Left out, as no list they merge is cut (the launch code calls them only when SPLIT_Q\n"
                             f"# or SPLIT_K says so): {', '.join(sorted(self.left_out))}.")
        text = source.assemble(_docstring(self.compiled, self.compiled.n), pattern_part,
                               source.pattern_part_names(), self.left_out)
        return _embed_input_checks(text)


_INPUTS_IMPORT = "from patterndsl.inputs import layer_problem, qkv_problem  # noqa: E402  (replaced in a generated module)"


def _embed_input_checks(text: str) -> str:
    """The module with blocksparse.py's import of patterndsl/inputs.py's checks replaced by their
    source (the flex target embeds them the same way): the same messages, no patterndsl."""
    import inspect

    from .. import inputs

    assert text.count(_INPUTS_IMPORT) == 1, "blocksparse.py imports the input checks once"
    embedded = "\n\n".join(inspect.getsource(function).rstrip() for function in (inputs.qkv_problem,
                                                                                  inputs.layer_problem))
    return text.replace(_INPUTS_IMPORT, embedded)


def module_parts(compiled, block_size=None, max_blocks_per_program=None) -> ModuleParts:
    """The parts of the generated kernel module for ``compiled`` (see `module_source`)."""
    block_q, block_k = compiled.block_sizes(block_size)
    check_block_sizes(block_q, block_k)
    limit = resolve_max_blocks(max_blocks_per_program)
    n = compiled.n
    source = kernel_source()
    patterns, head_patterns, expressions, backend = _predicates(compiled, block_q, block_k)
    from ..segments import top_level_segment, uses_segments

    segmented = any(uses_segments(p) for p in patterns)
    segment_ranges = [bool(uses_segments(p) and top_level_segment(p)) for p in patterns]
    expressions, params = parameterize(compiled, expressions, head_patterns, block_q, block_k)
    layouts, layout_tables = _layout_tables(compiled, patterns, block_q, block_k)
    split_tables, split_constants, cut, plan = {}, [], {}, {"n": n, "head_patterns": head_patterns,
                                                              "segment_ranges": segment_ranges}
    for side, prefix, rows in (("Q", "", "query"), ("K", "t_", "key")):
        split = work_items(layout_tables[prefix + "partial_ptr"], layout_tables[prefix + "full_ptr"],
                           len(patterns), limit)
        cut[side] = split is not None
        side_limit, tables, counts = split if split else (None, {}, {"items": 0, "slots": 0, "splits": 0})
        for name in ("items", "item_info", "splits"):
            split_tables[f"{side.lower()}_{name}"] = tables.get(name, np.zeros(0, dtype=np.int32))
        plan[f"split_{side.lower()}"] = (split is not None, counts["items"], counts["slots"], counts["splits"])
        split_constants.append(
            f"SPLIT_{side}, NUM_{side}_ITEMS, NUM_{side}_SLOTS, NUM_{side}_SPLITS = {split is not None}, "
            f"{counts['items']}, {counts['slots']}, {counts['splits']}"
            + (f"  # {rows} blocks' lists cut into pieces of <= {side_limit} blocks" if split else
               f"  # no {rows} block's list is cut"))
    split_tables["params"] = np.array(params or [], dtype=np.int64)

    data = {f"T_{name}": backend.tables[name] for name in sorted(backend.tables)}
    names = source.literal("TABLE_NAMES")
    buffer, where = _tables_buffer(names, {**layout_tables, **split_tables}, data)
    plan["tables"] = buffer

    notes = {"partial_ptr": "[patterns * (NUM_Q_BLOCKS + 1)]", "partial_idx": "key blocks",
             "full_ptr": "[patterns * (NUM_Q_BLOCKS + 1)]", "full_idx": "key blocks",
             "t_partial_ptr": "[patterns * (NUM_K_BLOCKS + 1)]", "t_partial_idx": "query blocks",
             "t_full_ptr": "[patterns * (NUM_K_BLOCKS + 1)]", "t_full_idx": "query blocks",
             "params": f"the predicates' n-dependent constants P0.. ({len(params or [])})"}
    for side in ("q", "k"):
        count = f"NUM_{side.upper()}_ITEMS"
        notes[f"{side}_items"] = f"[patterns, {count}, 4]: partial start, end, full start, end"
        notes[f"{side}_item_info"] = f"[{count}, 2]: block, scratch slot (-1: not cut)"
        notes[f"{side}_splits"] = f"[NUM_{side.upper()}_SPLITS, 3]: block, first slot, pieces"
    for name, array in data.items():
        notes[name] = f"{list(array.shape)} of {array.dtype.name}, read by _allowed"
    table_notes = [f"#   {offset:>9,} {size:>9,}  {name}: {notes[name]}" for name, (offset, size) in where.items()]
    # The data tables' offsets stand in the header (at n's own offsets), so `_allowed` reads the
    # same at every n: for a random table, only its size changes with n.
    data_lines = [f"{name} = TABLES + tl.load(TABLES + {len(names) + i})  # its offset, in the header"
                  if params is not None else f"{name} = TABLES + {where[name][0]}  # {notes[name]}"
                  for i, name in enumerate(data)]
    data_lines += [f"P{j} = tl.load(_table(TABLES, PARAMS) + {j})" for j in range(len(params or []))]
    text = "\n".join(expressions)
    if "seg_q" in text or "seg_k" in text:  # the batch row's segment data (blocksparse._segments)
        data_lines += ["seg_q = tl.load(SEG + q, mask=(q >= 0) & (q < N), other=-1)",
                       "seg_k = tl.load(SEG + k, mask=(k >= 0) & (k < N), other=-2)"]
    if "segrank_k" in text:
        data_lines += ["segrank_k = tl.load(SEG + N + k, mask=(k >= 0) & (k < N), other=0)"]

    pattern_lines = "\n".join(f"    {str(p)!r}," for p in patterns)
    layout_lines = "\n".join(f"#   pattern {pid}: {layout.summary()}" for pid, layout in enumerate(layouts))
    allowed = source.node("_allowed")
    allowed_head = source.lines[allowed.decorator_list[0].lineno - 1:allowed.body[0].end_lineno]
    data_part = "\n".join([
        f"N = {n}  # the sequence length the tables were built for",
        f"NUM_Q_BLOCKS, NUM_K_BLOCKS = {-(-n // block_q)}, {-(-n // block_k)}",
        "# Work items (load balancing): whether long lists are cut, into how many pieces, scratch",
        "# slots (one per piece of a cut list) and cut lists.",
        *split_constants,
        "",
        "# The distinct patterns (simplified, in .spat syntax); a pattern id indexes this list.",
        f"PATTERNS = [\n{pattern_lines}\n]",
        "# HEAD_PATTERNS[layer][head]: the pattern id of each head (one entry: every head shares it).",
        f"HEAD_PATTERNS = {head_patterns!r}",
        "# SEGMENT_RANGES[id]: whether the pattern is `segment & …` (no pair outside a shared segment), so",
        "# that each batch row skips the key blocks outside its query blocks' segments.",
        f"SEGMENT_RANGES = {segment_ranges!r}",
        "# Block layouts:",
        layout_lines,
        "# TABLES (int32, zlib-compressed, base64), described below: offset, entries, table",
        *table_notes,
        "_TABLES = (",
        *(f'    "{chunk}",' for chunk in packed_lines(buffer)),
        ")",
    ])
    code_part = "\n".join([
        "# The kernels' source from here on is the same at every n (n is a run-time argument).",
        f"BLOCK_Q, BLOCK_K = {block_q}, {block_k}  # block layout: queries x keys per block",
        f"LAYERS, HEADS = {compiled.layers}, {compiled.heads}  # layer l uses HEAD_PATTERNS[l % LAYERS]",
        f"ALPHA = {alpha_of(compiled)!r}  # the probability map of the file's `prob`: None softmax, 2 sparsemax, else α-entmax",
        f"SEGMENTED = {segmented!r}  # whether a pattern reads run-time segment ids (attention(..., segments=))",
        "",
        "",
        *allowed_head,
        *_allowed_body(expressions, patterns, data_lines, params is not None),
    ])
    left_out = set()
    if not cut["Q"]:
        left_out.update(CUT_QUERY_LISTS_ONLY)
    if not (cut["Q"] or cut["K"]):
        left_out.update(CUT_LISTS_ONLY)
    return ModuleParts(compiled, code_part, data_part, plan, left_out, params is not None)


def module_source(compiled, block_size=None, max_blocks_per_program=None) -> str:
    """The generated kernel module for ``compiled`` with blocks of ``block_size`` (an int or
    (BQ, BK); default: the file's `block`, else 128). ``max_blocks_per_program`` caps the blocks
    one program walks (default: $PATTERNDSL_MAX_BLOCKS_PER_PROGRAM, else `default_max_blocks`).
    Its tables are those of compiled.n; its kernels' source (the `code` of `module_parts`) is
    the same at every n where the predicates' template fits."""
    return module_parts(compiled, block_size, max_blocks_per_program).text()


def _docstring(compiled, n: int) -> str:
    # The pattern's source, quoted safely inside the module's docstring.
    quoted = textwrap.indent(_docstring_safe(compiled.source.text.rstrip()), "    ")
    return "\n".join([
        f'"""Block-sparse attention kernels for {_docstring_safe(compiled.source.name)} at n = {n},',
        f"generated by patterndsl (do not edit: regenerate with `patterndsl compile FILE --n {n} --target triton`).",
        "",
        "    from kernel import attention",
        "    out = attention(q, k, v, layer=0)        # q: [batch, heads, n, head_dim] on a GPU",
        "",
        "Needs only torch and triton. On CPU, set TRITON_INTERPRET=1 before importing (slow).",
        "Forward: one program per tile of queries and head, online softmax over the tile's",
        "key blocks; blocks whose pairs are all connected skip the predicate. Backward: dQ over",
        "the same lists, dK and dV over the transposed lists. Lists much longer than the rest",
        "are cut into pieces, computed by separate programs and merged. The kernels are those of",
        "patterndsl/kernels/blocksparse.py; the pattern part (constants, tables, _allowed) is this",
        "pattern's.",
        "",
        "The pattern source:",
        "",
        quoted,
        '"""',
    ])
