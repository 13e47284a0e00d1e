"""`patterndsl experiment copy`: Yun et al. 2020's copying task, beside what `check` proves.

Sequences ``0 w 0 w`` of n tokens, w drawn uniformly from the symbols 1 … vocab−1;
a causal sparse Transformer (patterndsl.models) predicts each next token, and the
loss and accuracy are those of the second copy of w (query t predicts token t + 1;
for t in the second copy its source is token t − n/2 + 1). Every .spat file ×
configuration × depth 1 … L × sparsity level is trained from the same seeds on
the same data, and each row of the results carries the analyzer's verdicts for
the pattern the model used. From Python:

    from patterndsl.experiments.copy import QUICK, run_copy
    rows = run_copy(QUICK, out=Path("copy_results"))
"""
from __future__ import annotations

from pathlib import Path

from . import Experiment
from . import yun


# The settings of the copying task: n (0, w, 0, w with |w| = n/2 − 1), vocab (token 0 is
# the separator, w uses 1 … vocab − 1), and those of every Yun et al. experiment.
CopySettings = yun.Settings

DEFAULT = CopySettings()
# Finishes within 20 minutes on a 2-core CPU: n = 64, the other levels only at four layers.
QUICK = CopySettings(n=64, levels=(8, 16), sweep_depths="deepest", steps=600)


def copy_batch(generator, batch: int, n: int, vocab: int):
    """[batch, n] token ids: 0, w, 0, w with w uniform over 1 … vocab − 1 (``generator``: a torch.Generator)."""
    import torch

    if n < 4 or n % 2:
        raise ValueError(f"the copying task needs an even n ≥ 4, not {n}")
    if vocab < 2:
        raise ValueError(f"the copying task needs at least one symbol besides the separator (vocab ≥ 2), not {vocab}")
    words = torch.randint(1, vocab, (batch, n // 2 - 1), generator=generator)
    zeros = torch.zeros(batch, 1, dtype=torch.long)
    return torch.cat([zeros, words, zeros, words], dim=1)


def scored_queries(n: int) -> range:
    """The queries whose next token is the second copy of w: n/2 … n − 2."""
    return range(n // 2, n - 1)


def copy_sources(n: int) -> list[tuple[int, int]]:
    """(query, the token it must copy): query t predicts token t + 1, which repeats token t + 1 − n/2."""
    return [(t, t + 1 - n // 2) for t in scored_queries(n)]


def copy_metrics(logits, ids) -> dict:
    """Loss (mean cross-entropy, nats), token accuracy and sequence accuracy on the second copy."""
    import torch.nn.functional as F

    n = ids.shape[1]
    queries = scored_queries(n)
    predicted = logits[:, queries.start:queries.stop]
    targets = ids[:, queries.start + 1:queries.stop + 1]
    loss = F.cross_entropy(predicted.reshape(-1, predicted.shape[-1]), targets.reshape(-1))
    correct = predicted.argmax(-1) == targets
    return {"loss": loss, "token_accuracy": float(correct.float().mean()),
            "sequence_accuracy": float(correct.all(dim=1).float().mean())}


def run_copy(settings: CopySettings, files: list[Path] | None = None, out: Path | None = None,
             progress: bool = True) -> list[dict]:
    """Train every run of the grid; write copy.csv, copy.json and the plots under ``out`` (if given)."""
    import torch

    evaluation = copy_batch(torch.Generator().manual_seed(settings.seed + 2), settings.eval_sequences,
                            settings.n, settings.vocab)

    def evaluate(model):
        metrics = copy_metrics(model(evaluation), evaluation)
        return {"loss": round(float(metrics["loss"]), 4), "token_accuracy": round(metrics["token_accuracy"], 4),
                "sequence_accuracy": round(metrics["sequence_accuracy"], 4)}

    return yun.run_experiment(settings, "copy", files, out, progress,
                               make_batch=lambda data: copy_batch(data, settings.batch, settings.n, settings.vocab),
                               loss_of=lambda model, ids: copy_metrics(model(ids), ids)["loss"], evaluate=evaluate,
                               metric="token_accuracy", axis_label="copy accuracy (second copy, per token)",
                               targets=copy_sources(settings.n), target_name="copy_depth")


# ---- the command ----------------------------------------------------------------------------


def add_arguments(parser) -> None:
    yun.add_settings_arguments(parser, DEFAULT, QUICK, "vocab", int,
                                f"symbols, the separator 0 included (default {DEFAULT.vocab})")


def _validate(settings) -> None:
    from ..cli import UsageError

    if settings.n < 4 or settings.n % 2:
        raise UsageError(f"the copying task needs an even --n of at least 4, not {settings.n}")
    if settings.vocab < 2:
        raise UsageError(f"--vocab must be at least 2 (the separator and one symbol), not {settings.vocab}")


def run(args) -> int:
    return yun.run_command(args, DEFAULT, QUICK, "copy", run_copy, summary, _validate)


def summary(rows: list[dict]) -> str:
    """Markdown tables: per configuration, copy accuracy by pattern (and level) × depth, beside
    the analyzer's verdicts and the depth at which every copy source can reach its query."""
    depths = sorted({r["depth"] for r in rows})
    out = []
    configurations = list(dict.fromkeys(r["configuration"] for r in rows if r["configuration"] != "any"))
    for configuration in configurations or ["any"]:
        chosen = [r for r in rows if r["configuration"] in (configuration, "any")]
        out += [f"**{configuration.upper()}** (token accuracy on the second copy)", "",
                "| pattern | level | keys/query | " + " | ".join(f"{d} layer{'s' if d > 1 else ''}" for d in depths)
                + " | C1 | C2 | C3 | copy reach |",
                "|" + "---|" * (len(depths) + 7)]
        for key in dict.fromkeys((r["pattern"], r["level"]) for r in chosen):
            line = [r for r in chosen if (r["pattern"], r["level"]) == key]
            by_depth = {r["depth"]: f"{r['token_accuracy']:.3f}" for r in line}
            first = line[0]
            out.append(f"| {key[0]} | {yun.show(key[1])} | {first['connections_per_layer'] / first['n']:.1f} | "
                       + " | ".join(by_depth.get(d, "") for d in depths)
                       + f" | {yun.show(first['c1_self_loops'])} | {yun.show(first['c2_hamiltonian_path'])} "
                         f"| {yun.show(first['c3_finite_depth'])} | {yun.show(first['copy_depth'])} |")
        out.append("")
    return "\n".join(out)


EXPERIMENT = Experiment("copy", "Yun et al. 2020's copying task: sparse Transformers by pattern, configuration, "
                                "depth and sparsity, beside the analyzer's verdicts", add_arguments, run)
