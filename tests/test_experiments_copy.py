"""Yun et al. 2020's experiments: the sparse Transformer, the copying data and metrics,
pattern variants, reach depths, and `patterndsl experiment copy / lm` on tiny settings."""
import csv
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

import patterndsl
from patterndsl import SpatError
from patterndsl.cli import main
from patterndsl.experiments import yun, experiments
from patterndsl.experiments.copy import copy_batch, copy_metrics, copy_sources, scored_queries
from patterndsl.experiments.lm import corpus, split, windows
from patterndsl.models import CONFIGURATIONS, attend, configure, configured_source, sparse_transformer

YUN = Path(__file__).parent.parent / "examples" / "yun"
FILES = ["strided", "fixed", "star", "random", "dense"]


def masked_softmax_attention(q, k, v, allowed):
    """Attention written out: scores, -inf where not allowed ([H, n, n]), softmax, values;
    a row with no key gives zeros (FIXED's summary layer has such rows)."""
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return weights.nan_to_num(0.0) @ v


def expected_masks(compiled, configuration, heads, layer):
    """[heads, n, n]: the mask of each head at ``layer`` under the configuration, from the file's own masks."""
    masks = compiled.masks()[:, 0]  # [p, n, n]
    p = compiled.layers
    if configuration == "sequential":
        return masks[layer % p].expand(heads, -1, -1)
    if configuration == "union":
        return masks.any(dim=0).expand(heads, -1, -1)
    return torch.stack([masks[h * p // heads] for h in range(heads)])


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
@pytest.mark.parametrize("name", ["strided", "fixed", "random"])
def test_model_attention_equals_the_dense_reference(name, configuration):
    compiled = patterndsl.compile(YUN.joinpath(f"{name}.spat").read_text().replace("let level = 16", "let level = 4")
                                  .replace("let level = isqrt(n)", "let level = 4"), n=24)
    heads = 4
    pattern = configure(compiled, configuration, heads)
    generator = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, heads, 24, 8, generator=generator) for _ in range(3))
    for layer in range(3):
        got = attend(q, k, v, pattern, layer)
        want = masked_softmax_attention(q, k, v, expected_masks(compiled, configuration, heads, layer))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_multihead_spreads_the_patterns_over_head_ranges():
    compiled = patterndsl.compile(YUN / "strided.spat", n=16)
    text = configured_source(compiled, "multihead", 5)
    assert "0..3:" in text and "3..5:" in text
    with pytest.raises(SpatError, match="at least 2 heads"):
        configured_source(compiled, "multihead", 1)
    with pytest.raises(SpatError, match="unknown configuration"):
        configure(compiled, "diagonal", 4)


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_model_is_causal_with_causal_patterns(configuration):
    """A causal pattern: changing token t changes no logit before t."""
    compiled = patterndsl.compile(YUN / "strided.spat", n=16)
    torch.manual_seed(0)
    model = sparse_transformer(compiled, vocab=5, depth=3, width=16, heads=2, configuration=configuration).eval()
    ids = torch.randint(0, 5, (1, 16))
    changed = ids.clone()
    changed[0, 9] = (ids[0, 9] + 1) % 5
    with torch.no_grad():
        before, after = model(ids), model(changed)
    assert before.shape == (1, 16, 5)
    torch.testing.assert_close(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])


def test_model_needs_heads_that_divide_the_width():
    compiled = patterndsl.compile("causal", n=8)
    with pytest.raises(SpatError, match="multiple of the heads"):
        sparse_transformer(compiled, vocab=4, depth=1, width=10, heads=4)


@settings(max_examples=20, deadline=None)
@given(half=st.integers(2, 20), vocab=st.integers(2, 30), seed=st.integers(0, 2**31))
def test_copy_batch_is_zero_w_zero_w(half, vocab, seed):
    n = 2 * half
    ids = copy_batch(torch.Generator().manual_seed(seed), 3, n, vocab)
    assert ids.shape == (3, n) and ids.dtype == torch.long
    assert (ids[:, 0] == 0).all() and (ids[:, half] == 0).all()
    assert torch.equal(ids[:, 1:half], ids[:, half + 1:])
    words = ids[:, 1:half]
    assert words.min() >= 1 and words.max() <= vocab - 1
    assert torch.equal(ids, copy_batch(torch.Generator().manual_seed(seed), 3, n, vocab))
    # every scored query's source token is the token it must predict
    for query, source in copy_sources(n):
        assert torch.equal(ids[:, query + 1], ids[:, source])
        assert source <= query


def test_copy_batch_rejects_odd_lengths_and_empty_vocabularies():
    with pytest.raises(ValueError):
        copy_batch(torch.Generator(), 1, 9, 4)
    with pytest.raises(ValueError):
        copy_batch(torch.Generator(), 1, 8, 1)


def test_copy_metrics():
    n, vocab = 10, 6
    ids = copy_batch(torch.Generator().manual_seed(1), 4, n, vocab)
    perfect = torch.full((4, n, vocab), -30.0)
    perfect[:, :-1].scatter_(2, ids[:, 1:, None], 30.0)  # predicts every next token
    metrics = copy_metrics(perfect, ids)
    assert metrics["token_accuracy"] == 1.0 and metrics["sequence_accuracy"] == 1.0
    assert float(metrics["loss"]) < 1e-6
    # one wrong token in the second copy of sequence 0; errors outside it do not count
    wrong = perfect.clone()
    query = scored_queries(n)[2]
    wrong[0, query] = wrong[0, query].roll(1)
    wrong[:, 1] = wrong[:, 1].roll(1, dims=-1)  # the first copy is not scored
    metrics = copy_metrics(wrong, ids)
    assert metrics["token_accuracy"] == pytest.approx(1 - 1 / (4 * len(scored_queries(n))))
    assert metrics["sequence_accuracy"] == 0.75
    uniform = copy_metrics(torch.zeros(4, n, vocab), ids)
    assert float(uniform["loss"]) == pytest.approx(torch.log(torch.tensor(float(vocab))).item())


def test_variants_substitute_the_level_and_match_random_to_strided():
    files = [YUN / f"{name}.spat" for name in FILES]
    found = yun.variants(files, [4, 8], 32)
    assert [(v.name, v.level) for v in found] == [("strided", 4), ("strided", 8), ("fixed", 4), ("fixed", 8),
                                                   ("star", None), ("random", 4), ("random", 8), ("dense", None)]
    strided = {v.level: v for v in found if v.name == "strided"}
    assert "let level = 4" in strided[4].text
    assert torch.equal(strided[4].compiled.masks(), patterndsl.compile("""layers {
        window(3, 0)
        stride(4) & causal
    }""", n=32).masks())
    for variant in (v for v in found if v.name == "random"):
        target = yun.mean_connections(strided[variant.level].compiled)
        got = yun.mean_connections(variant.compiled)
        keys = int(variant.text.split("let keys = ")[1].split()[0])
        # the nearest: one key more or fewer per row is no closer
        for other in (keys - 1, keys + 1):
            text = variant.text.replace(f"let keys = {keys}", f"let keys = {other}")
            assert abs(yun.mean_connections(patterndsl.compile(text, n=32)) - target) >= abs(got - target)


def test_a_level_line_twice_is_an_error(tmp_path):
    path = tmp_path / "twice.spat"
    path.write_text("let level = 2\nlet level = 3\nwindow(level, 0)\n")
    with pytest.raises(SpatError, match="must appear once"):
        yun.variants([path], [4], 16)


def test_reach_depths():
    n = 32
    sources = copy_sources(n)
    strided = patterndsl.compile(YUN.joinpath("strided.spat").read_text(), n=n)  # stride isqrt(32) = 5
    assert yun.reach_depths(strided, 2 * n, sources) == {"causal_depth": 2, "target_depth": 2}
    star = patterndsl.compile(YUN / "star.spat", n=n)
    # one token further back per layer: the copy needs n/2 - 1 layers, all of the prefix n - 2
    assert yun.reach_depths(star, 2 * n, sources) == {"causal_depth": n - 2, "target_depth": n // 2 - 1}
    dense = patterndsl.compile("causal", n=n)
    assert yun.reach_depths(dense, 2 * n, sources) == {"causal_depth": 1, "target_depth": 1}
    assert yun.reach_depths(patterndsl.compile("self", n=n), 2 * n, sources) == {"causal_depth": None,
                                                                                 "target_depth": None}


COPY_COLUMNS = ["pattern", "file", "level", "configuration", "p", "depth", "n", "vocab", "seed", "steps_run", "loss",
                "token_accuracy", "sequence_accuracy", "train_loss", "c1_self_loops", "c2_hamiltonian_path",
                "c3_finite_depth", "s", "connections_per_layer", "growth", "causal_depth", "copy_depth"]


def test_copy_command_on_a_tiny_setting(tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["experiment", "copy", str(YUN / "strided.spat"), str(YUN / "star.spat"), "--n", "12", "--depths", "2",
            "--levels", "3,2", "--sweep-depths", "deepest", "--configurations", "sequential,union", "--steps", "3",
            "--batch", "2", "--width", "8", "--heads", "2", "--vocab", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    document = json.loads((out / "copy.json").read_text())
    rows = document["results"]
    # the main level first, one configuration after the other: strided at level 3 at depths 1, 2 in
    # both configurations, star once per depth; then strided at level 2 at the deepest only
    assert [(r["pattern"], r["level"], r["configuration"], r["depth"]) for r in rows] == [
        ("strided", 3, "sequential", 1), ("strided", 3, "sequential", 2), ("star", None, "any", 1),
        ("star", None, "any", 2), ("strided", 3, "union", 1), ("strided", 3, "union", 2),
        ("strided", 2, "sequential", 2), ("strided", 2, "union", 2)]
    assert document["meta"]["complete"] is True
    assert all(r["steps_run"] == 3 for r in rows)
    assert all(list(r) == COPY_COLUMNS for r in rows)
    assert document["meta"]["settings"]["steps"] == 3 and document["meta"]["experiment"] == "copy"
    for r in rows:
        assert 0.0 <= r["token_accuracy"] <= 1.0 and 0.0 <= r["sequence_accuracy"] <= r["token_accuracy"] + 1e-9
        assert r["c1_self_loops"] is True and r["c3_finite_depth"] is False and r["s"] is None
    star = next(r for r in rows if r["pattern"] == "star")
    assert star["copy_depth"] == 12 // 2 - 1 and star["connections_per_layer"] == 12 * 3 - 2 - 1  # row 0, row 1
    with (out / "copy.csv").open() as handle:
        records = list(csv.DictReader(handle))
    assert list(records[0]) == COPY_COLUMNS and len(records) == len(rows)
    assert records[2]["level"] == "" and records[0]["token_accuracy"] == str(rows[0]["token_accuracy"])
    assert (out / "copy_depth.png").stat().st_size > 0 and (out / "copy_sparsity.png").stat().st_size > 0
    # the summary: one table per configuration, a row per pattern and level, a column per depth
    assert "**SEQUENTIAL**" in table and "**UNION**" in table
    assert table.count("\n| strided | 3 |") == 2 and table.count("\n| strided | 2 |") == 2
    assert table.count("\n| star | — |") == 2
    sequential_strided = table.split("**UNION**")[0].split("\n| strided | 3 | ")[1].split("\n")[0]
    cells = [cell.strip() for cell in sequential_strided.split("|")]
    assert cells[1:3] == [f"{rows[0]['token_accuracy']:.3f}", f"{rows[1]['token_accuracy']:.3f}"]


def test_copy_command_rejects_bad_options(tmp_path, capsys):
    base = ["experiment", "copy", str(YUN / "dense.spat"), "--n", "8", "--steps", "1", "--out", str(tmp_path)]
    assert main(base + ["--configurations", "diagonal"]) == 2
    assert "unknown configuration 'diagonal'" in capsys.readouterr().err
    assert main(base + ["--levels", "0"]) == 2
    assert main(base + ["--n", "9"]) == 2
    assert "even --n" in capsys.readouterr().err
    assert main(base + ["--steps", "0"]) == 2
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_lm_corpus_is_deterministic_and_split():
    text, names = corpus(20_000)
    assert len(text) == 20_000 and names == sorted(names) and all(name.endswith(".py") for name in names)
    assert corpus(20_000) == (text, names)
    training, validation = split(text)
    assert training + validation == text and len(validation) == 2_000
    data = torch.frombuffer(bytearray(validation), dtype=torch.uint8)
    batch = windows(data, torch.tensor([0, 5]), 4)
    assert batch.tolist() == [list(validation[0:5]), list(validation[5:10])]


def test_lm_command_on_a_tiny_setting(tmp_path):
    out = tmp_path / "lm"
    argv = ["experiment", "lm", str(YUN / "random.spat"), str(YUN / "strided.spat"), "--n", "8", "--depths", "1",
            "--levels", "2", "--configurations", "multihead", "--steps", "2", "--batch", "2", "--width", "8",
            "--heads", "2", "--corpus-bytes", "5000", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    document = json.loads((out / "lm.json").read_text())
    rows = document["results"]
    assert [(r["pattern"], r["configuration"], r["steps_run"]) for r in rows] == [("random", "multihead", 2),
                                                                                 ("strided", "multihead", 2)]
    for r in rows:
        assert r["val_perplexity"] == pytest.approx(2.718281828 ** r["val_loss"], rel=1e-3)
        assert r["bits_per_byte"] == pytest.approx(r["val_loss"] / 0.693147, rel=1e-3)
        assert "copy_depth" not in r
    assert document["meta"]["corpus"]["bytes"] == 5000 and len(document["meta"]["corpus"]["sha256"]) == 64
    assert (out / "lm_sparsity.png").exists()


def test_experiments_are_discovered():
    assert {"copy", "lm"} <= set(experiments())


def test_every_run_is_saved_as_it_finishes(tmp_path):
    """An interrupted grid keeps its rows: results are written after each run, marked incomplete."""
    tiny = yun.Settings(n=8, vocab=4, depths=2, levels=(2,), configurations=("sequential",), steps=1, batch=2,
                         width=8, heads=2, eval_sequences=4)
    variants = yun.variants([YUN / "strided.spat"], [2], 8)
    seen = []
    save = yun.saver(tiny, tmp_path, "copy")

    def record(rows):
        save(rows)
        seen.append(len(json.loads((tmp_path / "copy.json").read_text())["results"]))

    ids = copy_batch(torch.Generator().manual_seed(0), 4, 8, 4)
    rows = yun.run_grid(tiny, yun.grid(tiny, variants), make_batch=lambda g: copy_batch(g, 2, 8, 4),
                         loss_of=lambda model, batch: copy_metrics(model(batch), batch)["loss"],
                         evaluate=lambda model: {"token_accuracy": copy_metrics(model(ids), ids)["token_accuracy"]},
                         progress=False, save=record)
    assert seen == [1, 2] and len(rows) == 2
    assert json.loads((tmp_path / "copy.json").read_text())["meta"]["complete"] is False
