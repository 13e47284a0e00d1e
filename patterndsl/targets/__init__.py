"""Code-generation targets, registered by name (`patterndsl compile --target NAME`).

A target declares whether it is block-sparse (its output walks the block layout, so
`--block-size` applies and low block efficiency is worth a warning) and which block
sizes it accepts: patterndsl.blocksize's one policy, optionally capped by the target.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..blocksize import BLOCK_SIZE_HELP, block_size_problem
from ..errors import Diagnostic, SpatError, did_you_mean


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    suffix: str  # the output file's usual extension
    # emit(compiled, path, block_size) -> str: what was written, for the CLI to print;
    # block_size is None (the file's `block`, else 128) or a checked (BQ, BK) pair
    emit: Callable
    block_sparse: bool = False
    max_block_size: int | None = None  # None: any size the policy allows

    def block_size_problem(self, size) -> str | None:
        """Why this target cannot use blocks of ``size``, or None when it can."""
        if not self.block_sparse:
            return f"the {self.name} target is dense: it has no blocks"
        problem = block_size_problem(size)
        if problem is None and self.max_block_size is not None and size > self.max_block_size:
            problem = f"the {self.name} target takes blocks up to {self.max_block_size}, not {size}"
        return problem

    def check_block_sizes(self, sizes) -> None:
        """Raise a SpatError unless this target accepts every size in ``sizes``."""
        for size in sizes:
            problem = self.block_size_problem(size)
            if problem:
                raise SpatError(Diagnostic(problem, help=BLOCK_SIZE_HELP if self.block_sparse else None))


TARGETS: dict[str, Target] = {}


def register(name: str, description: str, suffix: str, *, block_sparse: bool = False,
             max_block_size: int | None = None):
    def decorate(emit):
        TARGETS[name] = Target(name, description, suffix, emit, block_sparse, max_block_size)
        return emit

    return decorate


def get_target(name: str) -> Target:
    _load_builtin_targets()
    if name not in TARGETS:
        raise SpatError(Diagnostic(f"unknown target '{name}'",
                                   help=did_you_mean(name, TARGETS) or "targets: " + ", ".join(sorted(TARGETS))))
    return TARGETS[name]


def target_names() -> list[str]:
    _load_builtin_targets()
    return sorted(TARGETS)


def _load_builtin_targets():
    from . import flex, torch, triton  # noqa: F401  (each registers itself)
