"""Generated Triton block-sparse attention, in process.

    from patterndsl.kernels import triton_attention
    out = triton_attention(q, k, v, compiled, layer=0)      # differentiable

The kernels are the module patterndsl/kernels/generate.py writes for
`patterndsl compile --target triton`: the same text is written to a cache
directory (Triton's JIT reads kernels' source from their file), imported, and
kept per compiled pattern and block size. Triton compiles each kernel once per
dtype and tile configuration; a second pattern with the same generated text
reuses the imported module.

The cache directory is $PATTERNDSL_CACHE_DIR, else ~/.cache/patterndsl/triton.
On CPU, Triton runs only in its interpreter: set TRITON_INTERPRET=1 before the
first call.
"""
from __future__ import annotations

import collections
import hashlib
import importlib.util
import linecache
import os
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import Diagnostic, SpatError
from ..inputs import check_qkv
from .generate import MAX_HEAD_DIM, module_parts, module_source, resolve_max_blocks

__all__ = ["triton_attention", "kernel_module", "kernel_plan", "module_source", "interpreting", "interpreter_ready"]

# The imported kernel modules, by (digest of the kernels' source, interpreted), least recently
# used first: at most MAX_MODULES are kept; an evicted one leaves sys.modules and linecache too.
# The kernels' source does not depend on n (patterndsl/kernels/generate.py), so one module
# serves every n of a pattern; each n has its own Plan (tables), MAX_PLANS kept per pattern.
MAX_MODULES = 16
MAX_PLANS = 8
_modules: "collections.OrderedDict[tuple, object]" = collections.OrderedDict()
_lock = threading.RLock()


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def interpreter_ready() -> bool:
    """Whether triton.language itself was loaded for the interpreter. Triton decides when it is
    first imported: its own helpers (tl.zeros, the combine functions of tl.max and tl.sum) are
    @triton.jit functions, interpreted only if TRITON_INTERPRET was set by then."""
    import triton.language as tl
    from triton.runtime.jit import JITFunction

    return not isinstance(getattr(tl, "zeros", None), JITFunction)  # InterpretedFunction is not one


def cache_dir() -> Path:
    root = os.environ.get("PATTERNDSL_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "patterndsl" / "triton"


def _write_once(directory: Path, filename: str, text: str) -> Path:
    """``directory/filename`` holding ``text``, written unless it already does."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        # Write, then rename into place: another process may be importing the same file.
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    return path


def _evict(module) -> None:
    sys.modules.pop(module.__name__, None)
    path = getattr(module, "__file__", None)
    if path:
        linecache.cache.pop(path, None)


def _import_source(text: str, key_text: str | None = None):
    """The module of ``text``, imported once per ``key_text`` (default: the text itself): modules
    whose kernels' source is the same share one module, whatever their tables."""
    digest = hashlib.sha256((key_text if key_text is not None else text).encode("utf-8")).hexdigest()[:24]
    # Triton interprets or compiles a kernel as decided when it is defined: keep both kinds apart.
    key = (digest, interpreting())
    with _lock:
        module = _modules.get(key)
        if module is not None:
            _modules.move_to_end(key)
            return module
        name = f"patterndsl_kernel_{digest}" + ("_interpreted" if key[1] else "")
        filename = f"patterndsl_kernel_{digest}_{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}.py"
        try:
            path = _write_once(cache_dir(), filename, text)
        except OSError:  # an unwritable home directory: the temporary directory will do
            path = _write_once(Path(tempfile.gettempdir()) / "patterndsl-triton", filename, text)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # registered like any imported module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        _modules[key] = module
        while len(_modules) > MAX_MODULES:
            _, old = _modules.popitem(last=False)
            _evict(old)
        return module


def kernel_plan(compiled, block_size=None, max_blocks_per_program=None):
    """(the imported kernel module, the Plan of compiled.n) of ``compiled`` for ``block_size``
    (default: the file's `block`, else 128) and limit on the blocks per program
    (``max_blocks_per_program``, else $PATTERNDSL_MAX_BLOCKS_PER_PROGRAM, else the layout's
    default: see patterndsl.kernels.generate.work_items). The module is shared by every n
    whose kernels' source is the same; plans are kept per compiled pattern (MAX_PLANS)."""
    limit = resolve_max_blocks(max_blocks_per_program)
    key = compiled.block_sizes(block_size) + (limit, interpreting())
    with _lock:
        per_pattern = compiled.__dict__.setdefault("_triton_plans", collections.OrderedDict())
        made = per_pattern.get(key)
        if made is not None:
            per_pattern.move_to_end(key)
            module_key, plan = made
            module = _modules.get((module_key, key[-1]))
            if module is not None:
                _modules.move_to_end((module_key, key[-1]))
                return module, plan
    parts = module_parts(compiled, key[:2], limit)
    digest = hashlib.sha256(parts.key.encode("utf-8")).hexdigest()[:24]
    with _lock:
        module = _modules.get((digest, key[-1]))
        if module is not None:  # the kernels of another n: only the tables are new
            _modules.move_to_end((digest, key[-1]))
    if module is None:
        module = _import_source(parts.text(), parts.key)
    plan = module.Plan(**parts.plan)
    with _lock:
        per_pattern[key] = (digest, plan)
        while len(per_pattern) > MAX_PLANS:
            per_pattern.popitem(last=False)
    return module, plan


def kernel_module(compiled, block_size=None, max_blocks_per_program=None):
    """The imported kernel module of ``compiled`` for ``block_size`` (see `kernel_plan`). Its
    own tables (PLAN) are those of the first n it was imported for: run it at compiled.n with
    `kernel_plan`'s plan (`triton_attention` does)."""
    return kernel_plan(compiled, block_size, max_blocks_per_program)[0]


def _check_device(q) -> None:
    """On CPU the kernels run only in Triton's interpreter, switched on before triton's import."""
    if q.device.type == "cpu" and not interpreting():
        raise SpatError(Diagnostic("the Triton kernels run on a GPU, or on CPU in Triton's interpreter",
                                   help="set TRITON_INTERPRET=1 before triton is imported (slow), or use "
                                        "patterndsl.attention_reference"))
    if q.device.type == "cpu" and not interpreter_ready():
        raise SpatError(Diagnostic("TRITON_INTERPRET=1 was set after triton was imported, which Triton's "
                                   "interpreter does not support",
                                   help="set TRITON_INTERPRET=1 in the environment before starting Python"))


def _at_keys(compiled, k):
    """``compiled`` at n = the keys' length (compiled.at(n), MAX_PLANS kept per pattern)."""
    import torch

    n = k.shape[2] if isinstance(k, torch.Tensor) and k.dim() == 4 else None
    if n is None or n == getattr(compiled, "n", n) or not hasattr(compiled, "at"):
        return compiled
    with _lock:
        lengths = compiled.__dict__.setdefault("_triton_lengths", collections.OrderedDict())
        if n in lengths:
            lengths.move_to_end(n)
            return lengths[n]
    at = compiled.at(n)
    with _lock:
        lengths[n] = at
        while len(lengths) > MAX_PLANS:
            lengths.popitem(last=False)
    return at


def _as_long_as_keys(q, k):
    """q, or where q holds fewer rows than k a view of it as long as k (for the checks of
    everything but the rows)."""
    import torch

    if (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and q.dim() == 4 and k.dim() == 4
            and 1 <= q.shape[2] < k.shape[2]):
        return q[:, :, :1].expand(q.shape[0], q.shape[1], k.shape[2], q.shape[3])
    return q


def _check_rows(q, k, q_offset) -> None:
    """Query rows q_offset .. q_offset + m - 1 must lie within the n keys."""
    if isinstance(q_offset, bool) or not isinstance(q_offset, int) or q_offset < 0:
        raise SpatError(Diagnostic(f"q_offset must be a non-negative integer, got {q_offset!r}"))
    m, n = q.shape[2], k.shape[2]
    if m == 0 or q_offset + m > n:
        raise SpatError(Diagnostic(f"q of length {m} at q_offset {q_offset} does not lie within the {n} keys",
                                   help="query row r is at position q_offset + r; keys at 0 .. n - 1: "
                                        "q_offset + m <= n"))


def triton_attention(q, k, v, compiled, layer: int = 0, scale: float | None = None, *,
                     block_size=None, return_lse: bool = False, max_blocks_per_program=None,
                     key_bias=None, alpha=None, segments=None, q_offset: int = 0):
    """Block-sparse attention of ``compiled``'s layer ``layer`` with generated Triton kernels.

    q: [batch, heads, n, head_dim]; k, v: [batch, kv_heads, n, head_dim], kv_heads dividing
    heads; float16, bfloat16 or float32. ``scale`` defaults to 1/sqrt(head_dim). ``key_bias``,
    a float tensor broadcastable to [batch, heads, n], is added to the (scaled) score of every
    query with key j before the softmax (-inf leaves key j out); differentiable, its gradient
    summed over the dimensions it was broadcast along. Rows with no connection give zeros and
    zero gradients. ``alpha`` picks the probability map applied to each row's connected keys:
    None (the default) the file's `prob`; 1 softmax; 2 sparsemax; any other value in (1, 2)
    α-entmax, whose per-row threshold is found from the row's computed blocks (softmax is the
    fast path; entmax takes about 30 passes over a row's blocks to find it). ``return_lse`` also
    returns the float32 log-sum-exp per row ([batch, heads, n], -inf for an empty row; for
    entmax the thresholds instead). ``max_blocks_per_program``
    caps the key (or, backward, query) blocks one program walks: longer lists are cut into
    pieces computed in parallel and merged (default: $PATTERNDSL_MAX_BLOCKS_PER_PROGRAM, else
    4 times the mean list and at least 16).

    q may hold m <= n rows: row r is at absolute position ``q_offset`` + r against the keys
    0 .. n - 1, under the pattern at n = the keys' length (compiled.at(n) where it differs from
    compiled.n): decoding and chunked prefill. The kernels are the same at every n and m (n,
    m and q_offset are run-time arguments); only the tables are per n.

    ``segments``: for a pattern using `segment` / `segment_start`, the segment ids, an integer
    tensor [batch, n] on q's device (only equality matters; None: one document). They are the
    kernels' data: each batch row's block ranges and the predicate's segment data are built on
    the device per call (blocksparse._segments), and nothing is compiled again."""
    try:
        import triton  # noqa: F401
    except ImportError:
        raise SpatError(Diagnostic("Triton is not installed", help="pip install triton, or use "
                                   "patterndsl.attention_reference")) from None
    if getattr(compiled, "cross", False):  # (cross.py lies above the kernels: it pads k, v to its square)
        raise SpatError(Diagnostic("triton_attention takes an n × n pattern, and this is a cross-attention "
                                   "file (`queries M`: m queries × n keys)",
                                   help="call patterndsl.attention(q, k, v, compiled, backend=\"triton\"), "
                                        "which runs a cross file on these kernels"))
    compiled = _at_keys(compiled, k)
    check_qkv(_as_long_as_keys(q, k), k, v, compiled, scale, max_head_dim=MAX_HEAD_DIM)
    _check_rows(q, k, q_offset)
    from ..segments import check_segments

    segments = check_segments(segments, q.shape[0], k.shape[2], q.device, uses_segments=compiled.uses_segments)
    _check_device(q)
    layer, _ = compiled.index(layer, 0)
    module, plan = kernel_plan(compiled, block_size, max_blocks_per_program)
    if not module.SEGMENTED:
        segments = None  # `segment` simplified away at this n (e.g. `segment & none`): the ids change nothing
    if key_bias is not None:
        try:
            module._key_bias_view(key_bias, q, n=k.shape[2])
        except ValueError as error:
            raise SpatError(Diagnostic(str(error), help="key_bias holds one value per key: shape [batch, heads, "
                                       "n], [batch, 1, n], [n] or anything else that broadcasts")) from None
    alpha = module.ALPHA if alpha is None else alpha
    try:
        module._prob_mode(alpha)
    except ValueError as error:
        raise SpatError(Diagnostic(str(error))) from None
    return module.attention(q, k, v, layer=layer, scale=scale, return_lse=return_lse, key_bias=key_bias,
                            alpha=alpha, q_offset=q_offset, plan=plan, segments=segments)
