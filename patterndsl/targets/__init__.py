"""Code-generation targets, registered by name (`patterndsl compile --target NAME`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import Diagnostic, SpatError, did_you_mean


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    suffix: str  # the output file's usual extension
    emit: Callable  # emit(compiled, path) -> str: what was written, for the CLI to print


TARGETS: dict[str, Target] = {}


def register(name: str, description: str, suffix: str):
    def decorate(emit):
        TARGETS[name] = Target(name, description, suffix, emit)
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
