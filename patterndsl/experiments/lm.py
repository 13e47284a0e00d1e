"""`patterndsl experiment lm`: byte-level language modelling with Yun et al. 2020's patterns.

The corpus is the source of Python's standard library as shipped with the running
interpreter — nothing is downloaded: the top-level ``*.py`` files of
``sysconfig.get_paths()["stdlib"]`` in sorted order, concatenated until
``corpus_bytes``; the first 90% trains, the last 10% validates. Tokens are bytes
(vocabulary 256). The model reads n bytes and predicts each next one; the
validation loss is the mean cross-entropy in nats per byte over evenly spaced
windows of the validation text, and perplexity its exponential. The files, the
Python version and a hash of the text are recorded with the results. From Python:

    from patterndsl.experiments.lm import QUICK, run_lm
    rows = run_lm(QUICK, out=Path("lm_results"))
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from . import Experiment
from . import yun


@dataclass(frozen=True)
class LMSettings(yun.Settings):
    vocab: int = 256  # bytes
    steps: int = 2000
    lr: float = 2e-3
    width: int = 128
    corpus_bytes: int = 4_000_000


DEFAULT = LMSettings()
QUICK = LMSettings(n=64, depths=2, levels=(8, 16), configurations=("sequential",), steps=300, width=64,
                   eval_sequences=128, corpus_bytes=1_000_000)


def corpus(limit: int) -> tuple[bytes, list[str]]:
    """The standard library's top-level source files, sorted by name, concatenated up to ``limit`` bytes."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    text, names = bytearray(), []
    for path in sorted(root.glob("*.py")):
        if len(text) >= limit:
            break
        text += path.read_bytes()[: limit - len(text)]
        names.append(path.name)
    if len(text) < 1024:
        from ..errors import Diagnostic, SpatError

        raise SpatError(Diagnostic(f"found only {len(text)} bytes of Python source under {root}"))
    return bytes(text), names


def split(text: bytes) -> tuple[bytes, bytes]:
    """(training, validation): the first 90% and the last 10%."""
    cut = len(text) * 9 // 10
    return text[:cut], text[cut:]


def windows(data, starts, n: int):
    """[len(starts), n + 1] byte windows of ``data`` (a uint8 tensor) beginning at ``starts``."""
    import torch

    return data[starts.unsqueeze(1) + torch.arange(n + 1)].long()


def lm_loss(model, window):
    """Mean next-byte cross-entropy (nats) of a [B, n + 1] window: read n bytes, predict the next n."""
    import torch.nn.functional as F

    logits = model(window[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))


def run_lm(settings: LMSettings, files: list[Path] | None = None, out: Path | None = None,
           progress: bool = True) -> list[dict]:
    """Train every run of the grid; write lm.csv, lm.json and lm_sparsity.png under ``out`` (if given)."""
    import hashlib

    import torch

    text, names = corpus(settings.corpus_bytes)
    training, validation = (torch.frombuffer(bytearray(part), dtype=torch.uint8) for part in split(text))
    if len(validation) <= settings.n + 1:
        from ..errors import Diagnostic, SpatError

        raise SpatError(Diagnostic(f"the validation text ({len(validation)} bytes) is shorter than n + 1"))
    held_out = windows(validation, torch.linspace(0, len(validation) - settings.n - 2,
                                                  settings.eval_sequences).long(), settings.n)

    def make_batch(generator):
        starts = torch.randint(0, len(training) - settings.n - 1, (settings.batch,), generator=generator)
        return windows(training, starts, settings.n)

    def evaluate(model):
        loss = float(sum(lm_loss(model, part) * len(part) for part in held_out.split(64)) / len(held_out))
        return {"val_loss": round(loss, 4), "val_perplexity": round(math.exp(loss), 3),
                "bits_per_byte": round(loss / math.log(2), 4)}

    corpus_meta = {"python_stdlib_files": names, "bytes": len(text), "sha256": hashlib.sha256(text).hexdigest()}
    return yun.run_experiment(settings, "lm", files, out, progress, make_batch=make_batch, loss_of=lm_loss,
                               evaluate=evaluate, metric="val_loss", axis_label="validation loss (nats per byte)",
                               extra_meta={"corpus": corpus_meta})


def add_arguments(parser) -> None:
    yun.add_settings_arguments(parser, DEFAULT, QUICK, "corpus-bytes", int,
                                f"bytes of the corpus (default {DEFAULT.corpus_bytes:,})")


def _validate(settings) -> None:
    from ..cli import UsageError

    if settings.corpus_bytes < 1024:
        raise UsageError(f"--corpus-bytes must be at least 1024, not {settings.corpus_bytes}")


def run(args) -> int:
    return yun.run_command(args, DEFAULT, QUICK, "lm", run_lm, render, _validate)


def render(rows: list[dict]) -> str:
    """The results as a Markdown table."""
    head = "| pattern | level | config | layers | val. loss | perplexity | bits/byte | keys/query | C3 |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['pattern']} | {yun.show(r['level'])} | {r['configuration']} | {r['depth']} "
                     f"| {r['val_loss']:.4f} | {r['val_perplexity']:.3f} | {r['bits_per_byte']:.4f} "
                     f"| {r['connections_per_layer'] / r['n']:.1f} | {yun.show(r['c3_finite_depth'])} |")
    return "\n".join(lines)


EXPERIMENT = Experiment("lm", "byte-level language modelling on Python's standard library source with Yun et al. "
                              "2020's patterns: validation loss by pattern, configuration and sparsity",
                        add_arguments, run)
