"""The seed papers' experiments, run as `patterndsl experiment NAME …` or from Python.

Each experiment is a module in this package that defines a module-level
``EXPERIMENT = Experiment(name, help, add_arguments, run)``; the CLI discovers
the modules here, so adding an experiment touches no other file. Modules must not
import torch (or anything slow) at import time: `patterndsl --help` imports them all.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Experiment:
    name: str
    help: str
    add_arguments: Callable  # (argparse.ArgumentParser) -> None
    run: Callable  # (argparse.Namespace) -> int, the exit code


def experiments() -> dict[str, Experiment]:
    """Every experiment of this package, by name."""
    found: dict[str, Experiment] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        experiment = getattr(module, "EXPERIMENT", None)
        if isinstance(experiment, Experiment):
            found[experiment.name] = experiment
    return found


def add_parsers(parser) -> None:
    """`patterndsl experiment NAME`: one sub-command per experiment."""
    names = parser.add_subparsers(dest="experiment", metavar="NAME", required=True)
    for experiment in experiments().values():
        sub = names.add_parser(experiment.name, help=experiment.help, description=experiment.help)
        experiment.add_arguments(sub)


def run(args) -> int:
    return experiments()[args.experiment].run(args)
