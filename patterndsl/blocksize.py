"""The one block-size policy: a block size is a power of two, at least 16.

Kernels tile the mask in such blocks (Triton's tiles are multiples of 16; FlexAttention's
blocks divide its tiles), so the same rule holds wherever a block size comes from: a
file's `block` statement, `--block-size` on the command line, `block_size=` in Python, and
every block-sparse target (each declares the sizes it accepts in patterndsl/targets).
"""
from __future__ import annotations

import numbers

from .errors import Diagnostic, SpatError

MIN_BLOCK_SIZE = 16
MAX_BLOCK_SIZE = 1 << 62  # the language's largest integer (a file's `block` cannot pass it); n ≤ 2^40 anyway
BLOCK_SIZE_HELP = "kernels tile the mask in power-of-two blocks: 16, 32, 64, 128, …"


def is_block_size(size) -> bool:
    """Whether ``size`` is an allowed block size: an integer, a power of two ≥ 16."""
    return (isinstance(size, numbers.Integral) and not isinstance(size, bool)
            and MIN_BLOCK_SIZE <= size <= MAX_BLOCK_SIZE and not size & (size - 1))


def block_size_problem(size) -> str | None:
    """What is wrong with ``size`` as a block size, or None when it is one."""
    if is_block_size(size):
        return None
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        return f"a block size must be a positive integer, a power of two ≥ {MIN_BLOCK_SIZE}; got {size!r}"
    if size > MAX_BLOCK_SIZE:
        return f"block size {size} is beyond 2^62 (a block of n or more keys is already the whole sequence)"
    return f"block size {size} is not a power of two ≥ {MIN_BLOCK_SIZE}"


def block_size_pair(size) -> tuple[int, int]:
    """(BQ, BK) from an int or a (BQ, BK) pair, each checked by the policy (SpatError)."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise SpatError(Diagnostic(f"block_size is an int or a (BQ, BK) pair, got {tuple(size)!r}",
                                       help="e.g. block_size=128 or block_size=(64, 128)"))
        pair = tuple(size)
    else:
        pair = (size, size)
    for value in pair:
        problem = block_size_problem(value)
        if problem:
            raise SpatError(Diagnostic(problem, help=BLOCK_SIZE_HELP))
    return int(pair[0]), int(pair[1])
