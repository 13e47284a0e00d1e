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

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import Diagnostic, SpatError
from ..inputs import check_qkv
from .generate import MAX_HEAD_DIM, module_source, resolve_max_blocks

__all__ = ["triton_attention", "kernel_module", "module_source", "interpreting", "interpreter_ready"]

_modules: dict[str, object] = {}  # by digest of the generated text
_lock = threading.Lock()


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


def _import_source(text: str):
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    # Triton interprets or compiles a kernel as decided when it is defined: keep both kinds apart.
    key = (digest, interpreting())
    with _lock:
        module = _modules.get(key)
        if module is not None:
            return module
        name = f"patterndsl_kernel_{digest}" + ("_interpreted" if key[1] else "")
        try:
            path = _write_once(cache_dir(), f"patterndsl_kernel_{digest}.py", text)
        except OSError:  # an unwritable home directory: the temporary directory will do
            path = _write_once(Path(tempfile.gettempdir()) / "patterndsl-triton", f"patterndsl_kernel_{digest}.py", text)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # registered like any imported module
        spec.loader.exec_module(module)
        _modules[key] = module
        return module


def kernel_module(compiled, block_size=None, max_blocks_per_program=None):
    """The imported kernel module of ``compiled`` for ``block_size`` (default: the file's
    `block`, else 128); generated once per compiled pattern, block size and limit on the blocks
    per program (``max_blocks_per_program``, else $PATTERNDSL_MAX_BLOCKS_PER_PROGRAM, else the
    layout's default: see patterndsl.kernels.generate.work_items)."""
    limit = resolve_max_blocks(max_blocks_per_program)
    key = compiled.block_sizes(block_size) + (limit, interpreting())
    per_pattern = compiled.__dict__.setdefault("_triton_modules", {})
    if key not in per_pattern:
        per_pattern[key] = _import_source(module_source(compiled, key[:2], limit))
    return per_pattern[key]


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


def triton_attention(q, k, v, compiled, layer: int = 0, scale: float | None = None, *,
                     block_size=None, return_lse: bool = False, max_blocks_per_program=None,
                     key_bias=None, alpha=None):
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
    4 times the mean list and at least 16)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        raise SpatError(Diagnostic("Triton is not installed", help="pip install triton, or use "
                                   "patterndsl.attention_reference")) from None
    check_qkv(q, k, v, compiled, scale, max_head_dim=MAX_HEAD_DIM)
    _check_device(q)
    layer, _ = compiled.index(layer, 0)
    module = kernel_module(compiled, block_size, max_blocks_per_program)
    if key_bias is not None:
        try:
            module._key_bias_view(key_bias, q)
        except ValueError as error:
            raise SpatError(Diagnostic(str(error), help="key_bias holds one value per key: shape [batch, heads, "
                                       "n], [batch, 1, n], [n] or anything else that broadcasts")) from None
    alpha = module.ALPHA if alpha is None else alpha
    try:
        module._prob_mode(alpha)
    except ValueError as error:
        raise SpatError(Diagnostic(str(error))) from None
    return module.attention(q, k, v, layer=layer, scale=scale, return_lse=return_lse, key_bias=key_bias,
                            alpha=alpha)
