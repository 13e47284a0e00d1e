"""What the experiments of Yun et al. 2020 share: pattern variants, analyzer verdicts,
the training loop, progress, results files and plots.

`copy.py` (the copying task) and `lm.py` (language modelling) use these. Nothing
here imports torch or matplotlib at module import time.

**Sparsity levels.** The language has no way to override a `let` from the API, so
a file takes its level from its text: a line `let level = …` is replaced by
`let level = L` for each level L of the sweep, and a line `let keys = …` by the
number of keys that gives the file as many connections per layer as the
reference file (the one named strided.spat, else the first with a `let level`) at that
level. A file with neither line runs once, at its own sparsity.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..compiled import compile as compile_pattern
from ..errors import Diagnostic, SpatError

LEVEL = re.compile(r"^let level = [^#\n]*", re.MULTILINE)
KEYS = re.compile(r"^let keys = [^#\n]*", re.MULTILINE)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "yun"
DEFAULT_FILES = ("strided", "fixed", "star", "random", "dense")


@dataclass(frozen=True)
class Settings:
    """A grid of runs and how each trains (the copying task's defaults; lm changes a few)."""

    n: int = 128  # sequence length
    vocab: int = 16  # tokens
    depths: int = 4  # models with 1 … depths layers
    levels: tuple[int, ...] = (11, 6, 22)  # sparsity levels; the first is the main one (STRIDED's stride √n)
    sweep_depths: str = "deepest"  # train the other levels at "all" depths or only the "deepest"
    configurations: tuple[str, ...] = ("sequential", "union", "multihead")
    steps: int = 1500
    batch: int = 32
    lr: float = 3e-3
    width: int = 64
    heads: int = 4
    seed: int = 0
    eval_sequences: int = 256
    threads: int = 1


def default_files() -> list[Path]:
    files = [EXAMPLES / f"{name}.spat" for name in DEFAULT_FILES]
    missing = [str(path) for path in files if not path.exists()]
    if missing:
        raise SpatError(Diagnostic(f"the example files are missing: {', '.join(missing)}",
                                   help="name the .spat files to run (they ship with the repository, "
                                        "under examples/yun/)"))
    return files


@dataclass
class Variant:
    """One file at one sparsity level (or its own, when it has none)."""

    name: str
    path: str
    level: int | None
    text: str
    compiled: object = field(repr=False)


def _substitute(text: str, pattern: re.Pattern, name: str, value: int, path: str) -> str:
    if len(pattern.findall(text)) != 1:
        raise SpatError(Diagnostic(f"{path}: `let {name} = …` must appear once to set the sparsity level"))
    return pattern.sub(f"let {name} = {value}", text)


def mean_connections(compiled) -> float:
    """Connections per layer (mean over layers and heads), from the dense masks (n ≤ a few thousand)."""
    masks = compiled.masks()
    return float(masks.sum()) / (masks.shape[0] * masks.shape[1])


def _matching_keys(text: str, path: str, n: int, target: float) -> int:
    """The smallest `keys` whose file has at least ``target`` connections per layer (they grow with keys)."""
    def connections(keys: int) -> float:
        return mean_connections(compile_pattern(_substitute(text, KEYS, "keys", keys, path), n))

    lo, hi = 1, n
    while lo < hi:
        mid = (lo + hi) // 2
        if connections(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    # the nearer of lo and lo - 1
    if lo > 1 and abs(connections(lo - 1) - target) <= abs(connections(lo) - target):
        return lo - 1
    return lo


def variants(files: list[Path], levels: list[int], n: int) -> list[Variant]:
    """Every file at every level (files without a level once), in order."""
    texts = [(path.stem, str(path), path.read_text(encoding="utf-8")) for path in files]
    leveled = [(name, path, text) for name, path, text in texts if LEVEL.search(text)]
    chosen = [entry for entry in leveled if entry[0] == "strided"] or leveled
    reference = (chosen[0][1], chosen[0][2]) if chosen else None
    out = []
    for name, path, text in texts:
        if LEVEL.search(text):
            for level in levels:
                body = _substitute(text, LEVEL, "level", level, path)
                out.append(Variant(name, path, level, body, compile_pattern(body, n)))
        elif KEYS.search(text):
            if reference is None:
                raise SpatError(Diagnostic(f"{path} sets `keys` to match a reference pattern, but no file "
                                           f"has a `let level` line"))
            for level in levels:
                target = mean_connections(compile_pattern(_substitute(reference[1], LEVEL, "level", level,
                                                                      reference[0]), n))
                keys = _matching_keys(text, path, n, target)
                body = _substitute(text, KEYS, "keys", keys, path)
                out.append(Variant(name, path, level, body, compile_pattern(body, n)))
        else:
            out.append(Variant(name, path, None, text, compile_pattern(text, n)))
    return out


def configurations_of(variant: Variant, requested: list[str]) -> list[str]:
    """The configurations to train: one pattern (p = 1) is the same in all three, so it runs once."""
    return requested if variant.compiled.layers > 1 else ["sequential"]


def grid(settings, variants: list) -> list[tuple]:
    """(variant, configuration, depth) for every run: depths 1 … settings.depths at the main
    level (the first), and the other levels at every depth or only the deepest.

    Ordered so that an interrupted run has kept the most: the main level before the
    others, each configuration in turn (sequential first), every pattern at each."""
    main = settings.levels[0]
    runs = []
    for at_main in (True, False):
        for configuration in settings.configurations:
            for variant in variants:
                if (variant.level in (None, main)) != at_main or configuration not in configurations_of(
                        variant, list(settings.configurations)):
                    continue
                swept = not at_main and settings.sweep_depths == "deepest"
                for depth in ([settings.depths] if swept else range(1, settings.depths + 1)):
                    runs.append((variant, configuration, depth))
    return runs


# ---- what the analyzer says, and where information can reach ---------------------------


def verdicts(compiled) -> dict:
    """`patterndsl check`'s verdicts, flattened to one row: C1, C2, C3 with s, connections, growth.

    Per-head verdicts are combined: a condition holds when it holds for every head."""
    from ..analysis.check import check

    report, _ = check(compiled, budget_seconds=5.0)

    def combined(name):
        values = [head[name]["holds"] for head in report["conditions"]]
        return False if False in values else (None if None in values else True)

    depths = [head["finite_depth"].get("s") for head in report["conditions"]]
    per_layer = report["connections"]["per_layer"]
    return {"c1_self_loops": combined("self_loops"), "c2_hamiltonian_path": combined("hamiltonian_path"),
            "c3_finite_depth": combined("finite_depth"),
            "s": max(depths) if depths and None not in depths else None,
            "connections_per_layer": sum(map(sum, per_layer)) / (len(per_layer) * len(per_layer[0])),
            "growth": report["growth"]}


def reach_depths(compiled, depth_limit: int, targets) -> dict:
    """Through how many layers information can travel, counting the residual stream.

    After layer ℓ a token holds what it held before and what each key it attends to
    (in any head of that layer's pattern) held. ``causal_depth``: the first depth at
    which every query holds every token at or before it; ``target_depth``: the first
    at which each query t holds token targets[t] (pairs (t, source)); None beyond
    ``depth_limit`` or when nothing changes any more."""
    import numpy as np

    n = compiled.n
    graphs = [np.logical_or.reduce(compiled.dense_all()[layer], axis=0).astype(np.float32)
              for layer in range(compiled.layers)]
    held = np.eye(n, dtype=np.float32)
    causal = np.tril(np.ones((n, n), dtype=bool))
    rows, cols = zip(*targets) if targets else ((), ())
    found = {"causal_depth": None, "target_depth": None}
    for depth in range(1, depth_limit + 1):
        before = held
        held = np.minimum(held + graphs[(depth - 1) % len(graphs)] @ held, 1.0)
        reached = held > 0
        if found["causal_depth"] is None and reached[causal].all():
            found["causal_depth"] = depth
        if found["target_depth"] is None and reached[list(rows), list(cols)].all():
            found["target_depth"] = depth
        if None not in found.values() or (np.array_equal(before, held) and depth >= len(graphs)):
            break
    return found


# ---- training -----------------------------------------------------------------------------


class Progress:
    """One progress bar over every training step of the grid: tqdm when installed, else a line on stderr."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled, self.label = total, 0, enabled, ""
        self.start = time.monotonic()
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="step", file=sys.stderr)
            except ImportError:
                pass

    def describe(self, label: str) -> None:
        self.label = label
        if self.bar is not None:
            self.bar.set_description(label)

    def step(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(count)
        elif self.done == self.total or self.done % 20 == 0:
            width = 30
            filled = width * self.done // max(self.total, 1)
            elapsed = time.monotonic() - self.start
            eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} steps, "
                             f"{elapsed / 60:.1f} min, ~{eta / 60:.1f} min left  {self.label[:40]:<40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")


def train(model, next_batch, loss_of, training, progress: Progress) -> list[float]:
    """AdamW at a constant rate after a linear warm-up, gradients clipped at 1; the training losses.

    ``training`` has ``steps`` and ``lr``. (No decay: copying is learnt in a sudden
    transition, and a decaying rate delays it.)"""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=0.01)
    warmup = max(1, training.steps // 20)

    def rate(step):
        if step < warmup:
            return (step + 1) / warmup
        return 1.0

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    losses = []
    model.train()
    for _ in range(training.steps):
        loss = loss_of(model, next_batch())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        progress.step()
    model.eval()
    return losses


def run_grid(settings, runs: list[tuple], *, make_batch, loss_of, evaluate, progress: bool,
             targets=None, target_name: str = "target_depth", save=None) -> list[dict]:
    """Train every (variant, configuration, depth) of ``runs`` from the same seeds on the same data.

    ``make_batch(generator)`` draws a training batch; ``loss_of(model, batch)`` is what is
    minimised; ``evaluate(model)`` gives the row's metrics; ``targets``, if given, are the
    (query, token) pairs whose reach through the layers is reported as ``target_name``;
    ``save(rows)``, if given, is called after every run (so an interrupted grid keeps its rows)."""
    import torch

    from ..models import configure, sparse_transformer

    torch.set_num_threads(settings.threads)
    bar = Progress(len(runs) * settings.steps, enabled=progress)
    analyses: dict = {}
    rows = []
    for variant, configuration, depth in runs:
        key = (variant.name, variant.level, configuration)
        if key not in analyses:
            pattern = configure(variant.compiled, configuration, settings.heads)
            reach = reach_depths(pattern, 2 * settings.n, targets or [])
            analyses[key] = {**verdicts(pattern), "causal_depth": reach["causal_depth"]}
            if targets:
                analyses[key][target_name] = reach["target_depth"]
        bar.describe(f"{variant.name} {variant.level or ''} {configuration} L={depth}")
        torch.manual_seed(settings.seed)
        model = sparse_transformer(variant.compiled, vocab=settings.vocab, depth=depth, width=settings.width,
                                   heads=settings.heads, configuration=configuration)
        data = torch.Generator().manual_seed(settings.seed + 1)  # every run sees the same batches
        losses = train(model, lambda: make_batch(data), loss_of, settings, bar)
        with torch.no_grad():
            metrics = evaluate(model)
        tail = losses[-20:]
        rows.append({"pattern": variant.name, "file": variant.path, "level": variant.level,
                     "configuration": configuration if variant.compiled.layers > 1 else "any",
                     "p": variant.compiled.layers, "depth": depth, "n": settings.n, "vocab": settings.vocab,
                     "seed": settings.seed, "steps_run": len(losses), **metrics,
                     "train_loss": round(sum(tail) / len(tail), 4) if tail else None, **analyses[key]})
        if save is not None:
            save(rows)
    bar.close()
    return rows


def run_experiment(settings, stem: str, files: list[Path] | None, out: Path | None, progress: bool, *,
                   make_batch, loss_of, evaluate, metric: str, axis_label: str, targets=None,
                   target_name: str = "target_depth", extra_meta: dict | None = None) -> list[dict]:
    """The files' variants, the grid trained (`run_grid`), the results and plots under ``out``."""
    variants_ = variants(files or default_files(), list(settings.levels), settings.n)
    save = saver(settings, out, stem, extra_meta)
    rows = run_grid(settings, grid(settings, variants_), make_batch=make_batch, loss_of=loss_of, evaluate=evaluate,
                    progress=progress, targets=targets, target_name=target_name, save=save)
    finish(rows, settings, out, stem, metric, axis_label, save)
    return rows


def saver(settings, out: Path | None, stem: str, extra_meta: dict | None = None):
    """``save(rows, complete=False)``: writes ``stem``.csv and ``stem``.json under ``out`` (nothing if None)."""
    def save(rows: list[dict], complete: bool = False) -> None:
        if out is not None and rows:
            write_results(rows, out, stem, {"experiment": stem, "complete": complete,
                                            "settings": dataclasses.asdict(settings), **(extra_meta or {})})
    return save


def finish(rows: list[dict], settings, out: Path | None, stem: str, metric: str, axis_label: str, save) -> None:
    """The complete results, and the plots, under ``out``."""
    if out is None or not rows:
        return
    save(rows, complete=True)
    # a one-pattern file ran once, "any" configuration: draw it in every panel
    for_plots = [dict(r, configuration="sequential" if r["configuration"] == "any" else r["configuration"])
                 for r in rows]
    plot_metric(for_plots, metric, axis_label, out, stem, settings.levels[0])


# ---- the command line ---------------------------------------------------------------------


def _ints(text: str) -> tuple[int, ...]:
    import argparse

    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_settings_arguments(parser, defaults, quick, name: str, kind, help: str) -> None:
    """The options of an experiment: those copy and lm share, and one of its own (``--name``
    of type ``kind``); None means "the setting's value"."""
    parser.add_argument(f"--{name}", type=kind, help=help)
    parser.add_argument("files", nargs="*", type=Path,
                        help="the .spat files (default: examples/yun/{strided,fixed,star,random,dense}.spat)")
    parser.add_argument("--quick", action="store_true",
                        help=f"the quick setting (n = {quick.n}, {quick.steps} steps; about 20 minutes on 2 CPU cores)")
    parser.add_argument("--out", type=Path, default=None, help="where the results and plots go")
    parser.add_argument("--n", type=int, help=f"sequence length (default {defaults.n}, quick {quick.n})")
    parser.add_argument("--depths", type=int, help=f"train 1 … DEPTHS layers (default {defaults.depths})")
    parser.add_argument("--levels", type=_ints, help="sparsity levels, comma-separated; the first is the main one "
                                                     f"(default {','.join(map(str, defaults.levels))}, "
                                                     f"quick {','.join(map(str, quick.levels))})")
    parser.add_argument("--sweep-depths", choices=("all", "deepest"),
                        help="train the other levels at all depths or only the deepest")
    parser.add_argument("--configurations", type=lambda text: tuple(text.split(",")),
                        help="comma-separated, of sequential, union, multihead (default all three)")
    for name, kind in (("steps", int), ("batch", int), ("lr", float), ("width", int), ("heads", int),
                       ("seed", int), ("threads", int)):
        parser.add_argument(f"--{name}", type=kind, help=f"default {getattr(defaults, name)}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def settings_from(args, defaults, quick):
    """The setting the arguments choose: --quick or the default, with each given option replacing its field."""
    from ..cli import UsageError
    from ..models import CONFIGURATIONS

    base = quick if args.quick else defaults
    given = {option.name: getattr(args, option.name) for option in dataclasses.fields(base)
             if getattr(args, option.name, None) is not None}
    settings = dataclasses.replace(base, **given)
    unknown = [c for c in settings.configurations if c not in CONFIGURATIONS]
    if unknown:
        raise UsageError(f"unknown configuration {unknown[0]!r}; one of " + ", ".join(CONFIGURATIONS))
    for name in ("n", "depths", "steps", "batch", "width", "heads", "threads", "eval_sequences"):
        if getattr(settings, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(settings, name)}")
    if settings.lr <= 0:
        raise UsageError(f"--lr must be positive, not {settings.lr}")
    return settings


def run_command(args, defaults, quick, stem: str, run_experiment, render, validate) -> int:
    """`patterndsl experiment STEM`: the setting, the runs, the table on stdout, the files under --out."""
    settings = settings_from(args, defaults, quick)
    validate(settings)
    out = args.out or Path(f"{stem}_results")
    rows = run_experiment(settings, args.files or None, out, progress=not args.no_progress)
    print(render(rows))
    names = [f"{stem}.csv", f"{stem}.json", f"{stem}_depth.png", f"{stem}_sparsity.png"]
    print("wrote " + ", ".join(str(out / name) for name in names), file=sys.stderr)
    return 0


# ---- results ------------------------------------------------------------------------------


def write_results(rows: list[dict], out: Path, stem: str, meta: dict) -> tuple[Path, Path]:
    """``stem``.csv (one row per run) and ``stem``.json ({"meta": …, "results": rows})."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    columns = list(rows[0]) if rows else []
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    json_path.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n", encoding="utf-8")
    return csv_path, json_path


def show(value) -> str:
    """A table cell: yes / no for verdicts, — for none."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "—" if value is None else str(value)


def _label(row: dict) -> str:
    return row["pattern"] + ("" if row["level"] is None else f" (level {row['level']})")


def plot_metric(rows: list[dict], metric: str, axis_label: str, out: Path, stem: str,
                main_level: int | None, plots: tuple[str, ...] = ("depth", "sparsity")) -> list[Path]:
    """``stem``_depth.png (metric against depth, one panel per configuration, at the main
    level) and ``stem``_sparsity.png (metric against connections per layer, at the
    deepest model). matplotlib is needed only here."""
    import matplotlib

    matplotlib.use("Agg")
    configurations = [c for c in ("sequential", "union", "multihead") if any(r["configuration"] == c for r in rows)]
    single = {r["pattern"] for r in rows if r["p"] == 1}
    paths = []
    if "depth" in plots:
        paths.append(_plot_depth(rows, metric, axis_label, out / f"{stem}_depth.png", main_level, configurations,
                                 single))
    if "sparsity" in plots:
        paths.append(_plot_sparsity(rows, metric, axis_label, out / f"{stem}_sparsity.png", configurations,
                                    single))
    return paths


def _panels(configurations):
    import matplotlib.pyplot as plt

    return plt.subplots(1, len(configurations), figsize=(4.2 * len(configurations), 3.6), squeeze=False,
                        sharey=True)


def _save(fig, axes, axis_label, path: Path) -> Path:
    import matplotlib.pyplot as plt

    axes[0][0].set_ylabel(axis_label)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_depth(rows, metric, axis_label, path, main_level, configurations, single) -> Path:
    fig, axes = _panels(configurations)
    colors = {label: f"C{index % 10}" for index, label in enumerate(dict.fromkeys(map(_label, rows)))}
    for ax, configuration in zip(axes[0], configurations):
        chosen = [r for r in rows if (r["configuration"] == configuration or r["pattern"] in single)
                  and r["level"] in (main_level, None)]
        for label in (label for label in colors if any(_label(r) == label for r in chosen)):
            line = sorted((r["depth"], r[metric]) for r in chosen if _label(r) == label)
            ax.plot([d for d, _ in line], [v for _, v in line], marker="o", label=label, color=colors[label])
        ax.set_title(configuration.upper())
        ax.set_xlabel("layers")
        ax.set_xticks(sorted({r["depth"] for r in rows}))
        ax.grid(alpha=0.3)
    return _save(fig, axes, axis_label, path)


def _plain_ticks(ax, values) -> None:
    """Ticks 1, 2, 5, 10, 20, … over the values' range, written as plain numbers (no 3×10⁰)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    lo, hi = min(values) / 1.2, max(values) * 1.2
    ticks = [m * 10 ** e for e in range(-1, 5) for m in (1, 2, 5) if lo <= m * 10 ** e <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks or [round(min(values), 1)]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())


def _plot_sparsity(rows, metric, axis_label, path, configurations, single) -> Path:
    deepest = max(r["depth"] for r in rows)
    fig, axes = _panels(configurations)
    colors = {pattern: f"C{index % 10}" for index, pattern in enumerate(dict.fromkeys(r["pattern"] for r in rows))}
    for ax, configuration in zip(axes[0], configurations):
        chosen = [r for r in rows if r["depth"] == deepest
                  and (r["configuration"] == configuration or r["pattern"] in single)]
        for pattern in (pattern for pattern in colors if any(r["pattern"] == pattern for r in chosen)):
            line = sorted((r["connections_per_layer"] / r["n"], r[metric]) for r in chosen if r["pattern"] == pattern)
            ax.plot([x for x, _ in line], [v for _, v in line], marker="o", label=pattern, color=colors[pattern])
        ax.set_title(f"{configuration.upper()}, {deepest} layers")
        ax.set_xlabel("keys per query (mean, per layer)")
        ax.set_xscale("log")
        _plain_ticks(ax, [r["connections_per_layer"] / r["n"] for r in chosen])
        ax.grid(alpha=0.3)
    return _save(fig, axes, axis_label, path)
