"""`patterndsl.compile`: source → a CompiledPattern for one sequence length n."""
from __future__ import annotations

import dataclasses
import numbers
import os
import stat
import threading
from pathlib import Path

import numpy as np

from . import ast as A
from .blocksize import block_size_pair
from .errors import Diagnostic, Source, Span, SpatError
from .inputs import cross_query_problem, layer_problem, query_window_problem
from .ir import Pattern
from .passes import simplify
from .reference import budget_scope, check_budget, dense_mask, evaluate, memory_budget, parse_size, require_memory
from .resolve import resolve
from .syntax import MAX_SOURCE_BYTES
from .syntax import parse as parse_source


def decode_source(data: bytes, name: str) -> Source:
    """A Source from the bytes of a file; not UTF-8 is a SpatError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Point at the bad byte in a readable copy of the text.
        shown = Source(data.decode("utf-8", errors="replace"), name)
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8", errors="replace")) + 1
        raise SpatError(Diagnostic(
            f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}",
            Span(line, column, line, column + 1), help="a .spat file is plain text, encoded as UTF-8"),
            shown) from None
    return Source(text.removeprefix("\ufeff"), name)


def read_bounded(path: Path, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """At most ``limit`` + 1 bytes of a regular file (a SpatError for anything else: a
    device, a FIFO or a directory may never end, or never answer)."""
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb", buffering=0) as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise SpatError(Diagnostic(f"cannot read {path}: not a regular file",
                                           help="give a plain file (`-` reads a .spat file from standard input)"))
            return _read_at_most(handle, limit)
    except OSError as exc:
        raise SpatError(Diagnostic(f"cannot read {path}: {exc.strerror or exc}")) from None


def _read_at_most(handle, limit: int) -> bytes:
    """Read until end of file or ``limit`` + 1 bytes, whichever comes first."""
    chunks, size = [], 0
    while size <= limit:
        chunk = handle.read(min(1 << 16, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_stream(stream, name: str = "<stdin>") -> Source:
    """A Source from a binary stream (standard input), reading at most the size limit + 1
    bytes so that an endless stream is refused, not read forever."""
    return decode_source(_read_at_most(stream, MAX_SOURCE_BYTES), name)


def load_source(source: "str | Path | Source") -> Source:
    """A Source from .spat text (str), a file (pathlib.Path) or a Source."""
    if isinstance(source, Source):
        return source
    if isinstance(source, Path):
        return decode_source(read_bounded(source), str(source))
    if isinstance(source, str):
        return Source(source, "<string>")
    raise SpatError(Diagnostic(f"source must be .spat text (str) or a file (pathlib.Path), "
                               f"not {type(source).__name__}"))


def _looks_like_a_file_name(text: str) -> bool:
    return "\n" not in text and (text.strip().endswith(".spat") or ("/" in text and Path(text).is_file()))


def parse(source: "str | Path | Source") -> A.Module:
    """Parse .spat text or a file into its AST (raises SpatError)."""
    return parse_source(load_source(source))


class CompiledPattern:
    """A .spat file evaluated for one sequence length n.

    ``layers`` is p, the number of layer patterns (layer ℓ of a deeper model uses
    pattern ℓ mod p); ``heads`` is H. ``pattern(layer, head)`` is the simplified IR.
    """

    def __init__(self, source: Source, module: A.Module, n: int, *, simplified: bool = True,
                 memory_budget: int | None = None, m: "int | None" = None):
        resolved = resolve(module, source, n, m)
        self.source, self.module, self.n = source, module, n
        # A cross file (`queries M`, patterndsl/cross.py): m queries × n keys; its patterns are
        # built for size = max(m, n) (the rectangle is that square pattern's top-left corner).
        self.cross = resolved.queries is not None
        self.m = resolved.queries if self.cross else n
        self.m_given = m
        self.size = max(self.m, n)
        if m is not None and not self.cross:
            raise SpatError(Diagnostic(f"m = {m} is the number of queries of a cross file, and this file "
                                       f"declares none", help="add `queries m` to the file (m queries × n keys), "
                                                              "or give no m"), source)
        self.simplified = simplified
        # compiled.at(n'): the same file at other lengths, shared by the whole family (an LRU of
        # at most MAX_CACHED_LENGTHS entries), so decoding with a growing KV cache compiles each
        # length once and keeps only the recent ones.
        self._lengths = _LengthCache({n: self})
        self.memory_budget = _memory_budget(memory_budget)
        self.block_size = resolved.block
        self.prob = resolved.prob
        self.raw_patterns = resolved.patterns
        self.patterns = resolved.patterns
        if simplified:
            once: dict[Pattern, Pattern] = {}  # heads and layers often share a pattern
            for pattern in {p for layer in resolved.patterns for p in layer}:
                once[pattern] = simplify(pattern, self.size)
            self.patterns = tuple(tuple(once[p] for p in layer) for layer in resolved.patterns)

    @property
    def layers(self) -> int:
        return len(self.patterns)

    @property
    def heads(self) -> int:
        return len(self.patterns[0])

    def at(self, n: int) -> "CompiledPattern":
        """The same file compiled for another sequence length (cached: the MAX_CACHED_LENGTHS most
        recently used lengths of the file are kept, shared by every length's object)."""
        n = _sequence_length(n)
        if n == self.n:
            return self
        found = self._lengths.get(n)
        if found is None:
            found = CompiledPattern(self.source, self.module, n, simplified=self.simplified,
                                    memory_budget=self.memory_budget, m=self.m_given)
            found._lengths = self._lengths
            found = self._lengths.put(n, found)
        return found

    def query_rows(self, q_offset=0, q_len=None) -> tuple[int, int]:
        """(q_offset, q_len) checked against n: queries at q_offset … q_offset + q_len − 1
        (q_len None: up to n), against the n keys 0 … n − 1 (a cross file: against its m queries)."""
        rows = self.m if self.cross else self.n
        length = q_len if q_len is not None else (rows - q_offset if _is_int(q_offset) else 0)
        problem = (cross_query_problem(length, self.m, q_offset) if self.cross
                   else query_window_problem(length, self.n, q_offset, keys="n"))
        if problem:
            raise SpatError(Diagnostic(problem[0], help=problem[1]))
        return int(q_offset), int(length)

    def index(self, layer: int, head: int) -> tuple[int, int]:
        problem = layer_problem(layer)
        if problem:
            raise SpatError(Diagnostic(problem))
        if isinstance(head, bool) or not isinstance(head, numbers.Integral) or not 0 <= head < self.heads:
            raise SpatError(Diagnostic(f"head must be in 0..{self.heads}, got {head!r}"))
        return int(layer) % self.layers, int(head)


    def pattern(self, layer: int = 0, head: int = 0) -> Pattern:
        layer, head = self.index(layer, head)
        return self.patterns[layer][head]

    def dense(self, layer: int = 0, head: int = 0) -> np.ndarray:
        """The reference mask of one layer and head, as a numpy bool array [n, n] ([m, n] for a
        cross file)."""
        if self.cross:
            from .cross import dense

            return dense(self, layer, head)
        return dense_mask(self.pattern(layer, head), self.n, self.memory_budget)

    def dense_all(self) -> np.ndarray:
        """Every layer and head: numpy bool [p, H, n, n] (identical patterns evaluated once;
        [p, H, m, n] for a cross file)."""
        if self.cross:
            from .cross import fill_dense
        else:
            def fill_dense(compiled, pattern, out):
                return dense_mask(pattern, compiled.n, out=out)
        shape = (self.layers, self.heads, self.m if self.cross else self.n, self.n)
        check_budget(shape, self.memory_budget)
        out = np.empty(shape, dtype=bool)
        done: dict[Pattern, tuple[int, int]] = {}
        for l, layer in enumerate(self.patterns):
            for h, pattern in enumerate(layer):
                if pattern in done:
                    out[l, h] = out[done[pattern]]
                else:
                    fill_dense(self, pattern, out[l, h])
                    done[pattern] = (l, h)
        return out

    def block_sizes(self, block_size=None) -> tuple[int, int]:
        """(BQ, BK): ``block_size`` (an int or a pair), else the file's `block`, else 128."""
        from .layout import DEFAULT_BLOCK_SIZE

        return block_size_pair(block_size if block_size is not None else (self.block_size or DEFAULT_BLOCK_SIZE))

    def layouts(self, layer: int = 0, block_size=None) -> list:
        """The block layout of every head of one layer (patterndsl.layout.BlockLayout);
        heads, and layers, with the same pattern share one object."""
        if self.cross:
            from .cross import budgeted_layout
        else:
            budgeted_layout = _budgeted_layout
        layer, _ = self.index(layer, 0)
        block_q, block_k = self.block_sizes(block_size)
        cache = self.__dict__.setdefault("_layouts", {})
        out = []
        for pattern in self.patterns[layer]:
            key = (pattern, block_q, block_k)
            if key not in cache:
                cache[key] = budgeted_layout(self, pattern, block_q, block_k)
            out.append(cache[key])
        return out

    def require_table_memory(self, block_size=None, layers=None, what: str = "generated code") -> None:
        """Refuse, before building them, the tables that generated code embeds (the per-block
        bitmaps of `random`) when they exceed the memory budget."""
        from .layout import BlockGrid

        block_q, block_k = self.block_sizes(block_size)
        grid = BlockGrid(self.n, block_q, block_k)
        seen, needed, stack = set(), 0, [p for l in (layers if layers is not None else range(self.layers))
                                          for p in self.patterns[l]]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            needed += node.table_bytes(grid) if hasattr(node, "table_bytes") else 0
            stack.extend(node.children())
        require_memory(f"building the tables of {what} at n = {self.n:,} in blocks of {block_q} × {block_k}", needed,
                       self.memory_budget, "use larger blocks, a smaller n or fewer random keys")

    def require_layout_memory(self, block_size=None) -> None:
        """Refuse, before any is built, a layer's block layout over the memory budget (each is
        also refused as it is built; asking all first refuses a file of several layers before
        its earlier layers are built: strided at 2^26 built layer 0, 5 s, then refused layer 1).
        Patterns holding a grid are left to their build: their estimate lists the grid's blocks,
        which the build that follows it reuses."""
        if self.cross:
            return
        from .grid import Grid

        def holds_grid(node) -> bool:
            return isinstance(node, Grid) or any(holds_grid(child) for child in node.children())

        block_q, block_k = self.block_sizes(block_size)
        built = self.__dict__.get("_layouts", {})
        for pattern in dict.fromkeys(p for layer in self.patterns for p in layer):
            if (pattern, block_q, block_k) not in built and not holds_grid(pattern):
                _require_layout_memory(self, pattern, block_q, block_k)

    def layout(self, layer: int = 0, head: int = 0, block_size=None):
        """The block layout of one layer and head (patterndsl.layout.BlockLayout)."""
        _, head = self.index(layer, head)
        return self.layouts(layer, block_size)[head]

    def block_mask(self, block_size=None, layer: int = 0, device="cpu"):
        """A FlexAttention BlockMask of one layer, built from the block layout (never from
        n² pairs), with a mask_mod generated from the IR (patterndsl/targets/flex.py).
        ``block_size`` is an int or a (BQ, BK) pair (default: the file's `block`, else 128)."""
        if self.cross:
            from .cross import block_mask as cross_block_mask

            return cross_block_mask(self, layer, block_size, device)
        from .targets.flex import block_mask

        with budget_scope(self.memory_budget):  # (the mask_mod's tables list a grid's keys)
            return block_mask(self, layer, block_size, device)

    @property
    def uses_segments(self) -> bool:
        """Whether some layer's pattern reads run-time segment ids (`segment`,
        `segment_start`): then attention needs segments=."""
        from .segments import uses_segments

        cached = self.__dict__.get("_uses_segments")
        if cached is None:
            # as written: a pattern that simplifies `segment` away at this n still takes ids
            cached = any(uses_segments(p) for layer in self.raw_patterns for p in layer)
            self.__dict__["_uses_segments"] = cached
        return cached

    def mask(self, layer: int = 0, head: int = 0, *, q_offset: int = 0, q_len: "int | None" = None,
             segments=None):
        """torch.BoolTensor [n, n]: True where query i attends to key j. With ``q_offset`` and
        ``q_len``: the rows q_offset … q_offset + q_len − 1 only, [q_len, n] (q_len defaults to
        n − q_offset), the pattern still at this n (decoding: rows of a KV cache's queries).
        With ``segments`` (an integer tensor [B, n] of segment ids), [B, n, n] (or [B, q_len, n]):
        the mask for each batch row's ids. Without it, a pattern using `segment` is evaluated for
        one document (every id equal)."""
        import torch

        if segments is not None:
            return self._segment_mask(layer, head, segments, q_offset, q_len)
        if self.cross:
            from .cross import mask

            return mask(self, layer, head, q_offset, q_len)
        if q_offset == 0 and q_len is None:
            return torch.from_numpy(self.dense(layer, head))
        q_offset, q_len = self.query_rows(q_offset, q_len)
        pattern = self.pattern(layer, head)
        check_budget((q_len, self.n), self.memory_budget)
        out = np.empty((q_len, self.n), dtype=bool)
        step = max(1, (1 << 20) // max(self.n, 1))
        for start in range(0, q_len, step):
            stop = min(q_len, start + step)
            out[start:stop] = evaluate(pattern, np.arange(q_offset + start, q_offset + stop), self.n)
        return torch.from_numpy(out)

    def _segment_mask(self, layer, head, segments, q_offset, q_len):
        import torch
        from .reference import dense_mask
        from .segments import check_segments, using

        # (the batch from the ids themselves: check_segments names whatever else they are)
        batch = segments.shape[0] if isinstance(segments, torch.Tensor) and segments.dim() == 2 else -1
        check_segments(segments, batch, self.n, uses_segments=self.uses_segments, what="mask")
        if segments.device.type == "meta":
            raise SpatError(Diagnostic("segments is a meta tensor: the mask needs the ids' values",
                                       help="give the ids on the CPU or a GPU"))
        q_offset, q_len = self.query_rows(q_offset, q_len)
        layer, head = self.index(layer, head)
        ids = segments.detach().to("cpu", torch.int64).numpy()
        out = []
        for row in ids:
            with using(row):
                out.append(torch.from_numpy(dense_mask(self.patterns[layer][head], self.n, self.memory_budget)))
        whole = torch.stack(out) if out else torch.zeros(0, self.n, self.n, dtype=torch.bool)
        return whole[:, q_offset:q_offset + q_len]

    def masks(self):
        """torch.BoolTensor [p, H, n, n]."""
        import torch

        return torch.from_numpy(self.dense_all())

    def additive_mask(self, layer: int = 0, head: int = 0, dtype=None):
        """A float mask [n, n] to add to attention scores: 0 where attended, -inf elsewhere."""
        import torch

        dtype = dtype or torch.float32
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise SpatError(Diagnostic(
                f"additive_mask is 0 where attended and -inf elsewhere: it needs a floating-point dtype, "
                f"got {dtype}", help="for a boolean mask (True where attended) use compiled.mask(layer, head)"))
        allowed = self.mask(layer, head)
        return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, float("-inf"))

    def __repr__(self):
        if self.cross:
            return (f"CompiledPattern({self.source.name!r}, m={self.m}, n={self.n}, layers={self.layers}, "
                    f"heads={self.heads}, prob={self.prob!r})")
        return (f"CompiledPattern({self.source.name!r}, n={self.n}, layers={self.layers}, "
                f"heads={self.heads}, prob={self.prob!r})")


MAX_CACHED_LENGTHS = 16  # lengths of one file that compiled.at keeps compiled


class _LengthCache:
    """A bounded LRU {n: CompiledPattern}, thread-safe, shared by a file's compiled lengths."""

    def __init__(self, first: dict):
        import collections
        import threading

        self.entries = collections.OrderedDict(first)
        self.lock = threading.Lock()
        self.compiles = 0  # how many lengths were compiled through at() (tests and benchmarks count)

    def get(self, n):
        with self.lock:
            found = self.entries.get(n)
            if found is not None:
                self.entries.move_to_end(n)
            return found

    def put(self, n, compiled):
        with self.lock:
            if n in self.entries:  # another thread made it first
                self.entries.move_to_end(n)
                return self.entries[n]
            self.compiles += 1
            self.entries[n] = compiled
            while len(self.entries) > MAX_CACHED_LENGTHS:
                self.entries.popitem(last=False)
            return compiled


def _is_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def _sequence_length(n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise SpatError(Diagnostic(f"n must be an integer, got {n!r}",
                                   help="n is the sequence length, e.g. patterndsl.compile(source, n=4096)"))
    return int(n)


def _memory_budget(budget) -> "int | None":
    """None, a number of bytes, or a size such as "2G" (the CLI's --memory-budget syntax)."""
    if budget is None:
        return None
    if isinstance(budget, str):
        try:
            return parse_size(budget)
        except ValueError as exc:
            raise SpatError(Diagnostic(f"memory_budget: {exc}")) from None
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 0:
        raise SpatError(Diagnostic(f"memory_budget must be a number of bytes (an int ≥ 0) or a size such as "
                                   f"\"2G\", got {budget!r}"))
    return int(budget)


def _budgeted_layout(compiled, pattern: Pattern, block_q: int, block_k: int):
    """The n × n block layout of ``pattern``, refused before it is built when it would
    exceed the memory budget (the cross counterpart: patterndsl/cross.py budgeted_layout)."""
    from .layout import block_layout

    with budget_scope(compiled.memory_budget):  # (a grid's listed keys are refused by it too)
        _require_layout_memory(compiled, pattern, block_q, block_k)
        return block_layout(pattern, compiled.n, block_q, block_k)


def _require_layout_memory(compiled, pattern: Pattern, block_q: int, block_k: int) -> None:
    from .layout import layout_memory

    require_memory(lambda: f"the block layout of {_short(pattern)} at n = {compiled.n:,} in blocks of "
                           f"{block_q} × {block_k}",
                   layout_memory(pattern, compiled.n, block_q, block_k, memory_budget(compiled.memory_budget)),
                   compiled.memory_budget, "use larger blocks (--block-size, block_size=) or a smaller n")


def _short(pattern, limit: int = 60) -> str:
    text = str(pattern)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# The ASTs of recently compiled texts: a Module is a pure function of the text (frozen nodes,
# spans by line and column, no file name), and compiled.at(n) already shares one among lengths.
# Compiling the same text again (a BlockMask built afresh each step, a file at many n) skips
# the parse: 0.2–0.3 ms of a 2 ms phi3 BlockMask. Only the parse is kept — resolve, the IR,
# its layouts and BlockMasks are built again — and only for texts of at most _PARSED_TEXT
# characters; a text that fails to parse raises again each time (nothing is kept).
_PARSED: "dict[str, A.Module]" = {}
_PARSED_LOCK = threading.Lock()
_PARSED_TEXTS = 64
_PARSED_TEXT = 1 << 16


def _parsed(source: Source) -> A.Module:
    text = source.text
    if len(text) > _PARSED_TEXT:
        return parse_source(source)
    module = _PARSED.get(text)
    if module is None:
        module = parse_source(source)
        with _PARSED_LOCK:
            if len(_PARSED) >= _PARSED_TEXTS:
                del _PARSED[next(iter(_PARSED))]  # the oldest first
            _PARSED[text] = module
    return module


def compile(source: "str | Path | Source", n: int, *, simplify: bool = True,
            memory_budget: "int | str | None" = None, m: "int | None" = None) -> CompiledPattern:
    """Compile .spat text (str) or a file (pathlib.Path) for sequence length ``n``.
    ``memory_budget`` (bytes, or a size such as "2G") caps the dense masks and layouts.
    ``m``: the number of queries of a cross file that declares `queries m` (README,
    "Cross-attention"); ``n`` is then the number of keys."""
    n = _sequence_length(n)
    if m is not None:
        if isinstance(m, bool) or not isinstance(m, numbers.Integral):
            raise SpatError(Diagnostic(f"m must be an integer, got {m!r}", help="m is the number of queries of a "
                                       "cross file (`queries m`), e.g. patterndsl.compile(source, n=256, m=77)"))
        m = int(m)
    memory_budget = _memory_budget(memory_budget)
    text = source if isinstance(source, str) else None
    source = load_source(source)
    try:
        module = _parsed(source)
    except SpatError as exc:
        if text is not None and _looks_like_a_file_name(text):
            first = dataclasses.replace(exc.diagnostics[0], help=(
                f"a str is .spat source text; to read the file, pass a pathlib.Path: "
                f"patterndsl.compile(Path({text.strip()!r}), n)"))
            raise SpatError([first] + exc.diagnostics[1:], exc.source) from None
        raise
    return CompiledPattern(source, module, n, simplified=simplify, memory_budget=memory_budget, m=m)
