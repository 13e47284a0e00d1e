"""Cross-attention (patterndsl/cross.py; README "Cross-attention"): a file with `queries M`
is a pattern over m queries × n keys, each primitive read by absolute index.

- Hand-drawn rectangles (m < n, m > n, ragged) from the meanings alone.
- The definition: the m × n corner of the square pattern at max(m, n), with `n` the
  number of keys — hypothesis rectangles (m, n ≥ 1) and random nested patterns.
- Every target against the dense reference: counts, block layouts (and the square's
  layouts that the kernels run), the native path forward and backward, FlexAttention's
  BlockMask and mask_mod (unfused flex_attention on Q_LEN ≠ KV_LEN), the emitted
  FlexAttention and torch files, attention_reference against masked softmax written here.
- Diagnostics with carets; the CLI; the README snippet as written.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import cross, cross_check
from patterndsl import strategies as S
from patterndsl.cli import main
from patterndsl.primitives import PRIMITIVES

ROOT = Path(__file__).resolve().parent.parent
# What a cross file may use: every primitive but random (min(r, n) keys per row of a square)
# and the segment primitives (ids of one sequence), which the resolver refuses there.
CROSS_NAMES = tuple(name for name in PRIMITIVES if name not in ("random", "segment", "segment_start"))
PATTERNS = S.pattern_sources(max_depth=2, leaves=S.primitive_sources(CROSS_NAMES))
QUICK = settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def rows(mask) -> tuple[str, ...]:
    return tuple("".join("1" if x else "0" for x in row) for row in np.asarray(mask))


# ---- hand-drawn rectangles ----------------------------------------------------------------


HAND_DRAWN = {
    # 3 queries × 6 keys: |i − j| ≤ 1 by absolute index
    ("queries 3\nwindow(1)", 6, None): ("110000",
                                        "111000",
                                        "011100"),
    # 5 queries × 3 keys: causal goes on past the last key
    ("queries 5\ncausal", 3, None): ("100",
                                     "110",
                                     "111",
                                     "111",
                                     "111"),
    # queries 0..9 against keys 0..2, j ≥ i − 6: row 8 reaches key 2 only, row 9 none
    ("queries 10\nwindow(6, 0)", 3, None): ("100", "110", "111", "111", "111", "111", "111",
                                            "011", "001", "000"),
    # rows(R) keeps rows beyond n: i ∈ 4..6 of 7 queries
    ("queries m\nrows(4..6)", 3, 7): ("000", "000", "000", "000", "111", "111", "000"),
    # Flamingo: text chunks of 2 tokens, images of 3 keys; chunk t sees image t (7 queries, 9 keys)
    ("queries m\nintervals(2, 3)", 9, 7): ("111000000",
                                           "111000000",
                                           "000111000",
                                           "000111000",
                                           "000000111",
                                           "000000111",
                                           "000000000"),
    # m = n // 2 queries, each the keys of its chunk of n // m = 2, and a sink
    ("queries n // 2\nintervals(1, n // m) | cols(0)", 8, None): ("11000000",
                                                                  "10110000",
                                                                  "10001100",
                                                                  "10000011"),
    # a pattern over blocks of 2: blocks(2) { self } on 5 queries × 2 keys
    ("queries 5\nblocks(2) { self }", 2, None): ("11", "11", "00", "00", "00"),
}


@pytest.mark.parametrize("source, n, m", list(HAND_DRAWN))
def test_hand_drawn_rectangles(source, n, m):
    compiled = patterndsl.compile(source, n, m=m)
    want = HAND_DRAWN[(source, n, m)]
    assert compiled.cross and compiled.m == len(want) and compiled.n == n
    assert rows(compiled.dense()) == want
    assert rows(compiled.mask()) == want
    assert rows(compiled.masks()[0, 0]) == want
    assert rows(compiled.mask(q_offset=1, q_len=2)) == want[1:3]
    assert rows(compiled.mask(q_offset=np.int64(1))) == want[1:]  # a numpy offset, as in a square file


def test_the_query_count_is_an_expression_that_may_use_n_and_the_callers_m():
    assert patterndsl.compile("queries 4 * n\ncausal", 3).m == 12
    assert patterndsl.compile("queries m\ncausal", 3, m=5).m == 5
    assert patterndsl.compile("queries 5\nlet k = m - 1\nwindow(k)", 3, m=5).dense().all()
    family = patterndsl.compile("queries m\nintervals(2, 3)", 9, m=7)
    assert family.at(12).m == 7 and family.at(12).n == 12


# ---- the definition, for any rectangle ------------------------------------------------------


def corner(text: str, m: int, n: int) -> np.ndarray:
    """The m × n corner of the square pattern at max(m, n), `n` replaced by the number of keys."""
    square = re.sub(r"\bn\b", str(n), text)
    return patterndsl.compile(square, max(m, n)).dense()[:m, :n]


@QUICK
@given(PATTERNS, st.integers(1, 40), st.integers(1, 40))
def test_a_cross_pattern_is_the_corner_of_the_square_one(text, m, n):
    compiled = patterndsl.compile(f"queries {m}\n{text}", n)
    dense = compiled.dense()
    assert dense.shape == (m, n)
    assert np.array_equal(dense, corner(text, m, n))


@QUICK
@given(PATTERNS, st.integers(1, 40), st.integers(1, 40))
def test_counts_are_exact_on_rectangles(text, m, n):
    compiled = patterndsl.compile(f"queries m\n{text}", n, m=m)
    dense = compiled.dense()
    report = cross_check.check_report(compiled)
    assert report["connections"]["per_layer"] == [[int(dense.sum())]]
    stats = report["connections"]["rows"][0][0]
    assert (stats["min"], stats["max"], stats["empty_rows"]) == (
        int(dense.sum(1).min()), int(dense.sum(1).max()), int((dense.sum(1) == 0).sum()))
    growth = report["growth"]
    assert growth["claimed"] == (m <= n) or "m is known only" in growth["why"]
    if growth["claimed"]:  # a rigorous bound on the rectangle's count at this n
        assert growth["bound_at_n"][0][0] >= dense.sum()


def dense_blocks(dense: np.ndarray, block_q: int, block_k: int) -> dict:
    m, n = dense.shape
    out = {}
    for qb in range(-(-m // block_q)):
        for kb in range(-(-n // block_k)):
            tile = dense[qb * block_q:(qb + 1) * block_q, kb * block_k:(kb + 1) * block_k]
            if tile.any():
                out[(qb, kb)] = 2 if tile.all() else 1
    return out


def layout_blocks(layout) -> dict:
    qb, kb, states = layout.blocks()
    return {(int(a), int(b)): int(s) for a, b, s in zip(qb, kb, states)}


@QUICK
@given(PATTERNS, st.integers(1, 90), st.integers(1, 90), st.sampled_from([(16, 16), (16, 32), (32, 16)]))
def test_block_layouts_on_rectangles(text, m, n, block_size):
    compiled = patterndsl.compile(f"queries {m}\n{text}", n)
    dense = compiled.dense()
    assert layout_blocks(compiled.layout(0, 0, block_size)) == dense_blocks(dense, *block_size)
    # the square the kernels run: the same key blocks, nothing beyond m rows or n keys
    square = cross.square(compiled)
    padded = np.zeros((square.n, square.n), dtype=bool)
    padded[:m, :n] = dense
    assert np.array_equal(square.dense(), padded)
    got = layout_blocks(square.layout(0, 0, block_size))
    assert set(got) == set(dense_blocks(padded, *block_size))


# ---- attention --------------------------------------------------------------------------------


def masked_softmax_attention(q, k, v, allowed):
    """Attention written out here from the dense mask [m, n]: softmax over each row's keys, zeros
    for a row without one."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ v


@settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(PATTERNS, st.integers(1, 40), st.integers(1, 40), st.sampled_from([(1, 1), (2, 1), (2, 2)]),
       st.integers(0, 2**16))
def test_native_and_reference_attention_on_rectangles(text, m, n, heads, seed):
    h, h_kv = heads
    compiled = patterndsl.compile(f"queries {m}\n{text}", n)
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(2, h, m, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, h_kv, n, 8, generator=generator, dtype=torch.float64, requires_grad=True)
            for _ in range(2))
    allowed = torch.from_numpy(compiled.dense())
    want = masked_softmax_attention(q, k.repeat_interleave(h // h_kv, 1), v.repeat_interleave(h // h_kv, 1), allowed)
    reference = patterndsl.attention_reference(q, k, v, compiled)
    torch.testing.assert_close(reference, want)
    got = patterndsl.attention(q, k, v, compiled, backend="native", block_size=16)
    torch.testing.assert_close(got, want)
    grads = torch.autograd.grad(got.sum(), (q, k, v))
    expected = torch.autograd.grad(want.sum(), (q, k, v))
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)
    if m > 1:  # rows of the m queries: q_offset within m
        part = patterndsl.attention(q[:, :, 1:], k, v, compiled, q_offset=1, backend="native", block_size=16)
        torch.testing.assert_close(part, want[:, :, 1:])


def test_attention_takes_a_key_bias_and_another_number_of_keys():
    compiled = patterndsl.compile("queries n // 2\nwindow(1) | intervals(2, 4)", 8)
    q = torch.randn(1, 2, 6, 8, dtype=torch.float64)
    k, v = (torch.randn(1, 2, 12, 8, dtype=torch.float64) for _ in range(2))
    bias = torch.randn(12, dtype=torch.float64)
    at12 = compiled.at(12)
    assert at12.m == 6
    allowed = torch.from_numpy(at12.dense())
    scores = (q @ k.transpose(-1, -2)) * 8 ** -0.5 + bias
    want = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0) @ v
    torch.testing.assert_close(patterndsl.attention(q, k, v, compiled, key_bias=bias, backend="native"), want)
    torch.testing.assert_close(patterndsl.attention_reference(q, k, v, compiled, key_bias=bias), want)


# ---- FlexAttention ------------------------------------------------------------------------------


def mask_mod_dense(mask_mod, m: int, n: int) -> torch.Tensor:
    """The mask_mod at every (q_idx, kv_idx), by broadcasting (the generated predicates are
    elementwise torch)."""
    zero = torch.zeros((), dtype=torch.int64)
    got = mask_mod(zero, zero, torch.arange(m)[:, None], torch.arange(n)[None, :])
    return torch.broadcast_to(got, (m, n))


def check_block_mask(block_mask, dense: torch.Tensor, block: int = 16):
    m, n = dense.shape
    assert block_mask.shape[-2:] == (m, n)
    listed = block_mask.to_dense()[0, 0][:-(-m // block), :-(-n // block)].numpy()
    assert {(int(a), int(b)) for a, b in zip(*np.nonzero(listed))} == set(dense_blocks(dense.numpy(), block, block))
    assert torch.equal(mask_mod_dense(block_mask.mask_mod, m, n), dense)


@settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(PATTERNS, st.integers(1, 70), st.integers(1, 70))
def test_flex_block_mask_on_rectangles(text, m, n):
    compiled = patterndsl.compile(f"queries {m}\n{text}", n)
    check_block_mask(compiled.block_mask(16), torch.from_numpy(compiled.dense()))


@pytest.mark.filterwarnings("ignore")
def test_flex_attention_and_the_emitted_files(tmp_path):
    """The BlockMask run by (unfused) FlexAttention, and the emitted module's BlockMask: on 70
    queries × 40 keys (m > n) and 20 × 40."""
    from torch.nn.attention.flex_attention import flex_attention

    source = tmp_path / "flamingo.spat"
    source.write_text("queries m\nintervals(cdiv(m, 4), cdiv(n, 4)) | cols(0..2)\n")
    for m in (70, 20):
        compiled = patterndsl.compile(source, 40, m=m)
        dense = torch.from_numpy(compiled.dense())
        q, k, v = torch.randn(1, 1, m, 16), torch.randn(1, 1, 40, 16), torch.randn(1, 1, 40, 16)
        with torch.no_grad():
            out = flex_attention(q, k, v, block_mask=compiled.block_mask(16))
        torch.testing.assert_close(out, masked_softmax_attention(q, k, v, dense), rtol=1e-5, atol=1e-5)
        target = tmp_path / f"flamingo{m}_flex.py"
        assert main(["compile", str(source), "--n", "40", "--m", str(m), "--target", "flex",
                     "--block-size", "16", "-o", str(target)]) == 0
        spec = importlib.util.spec_from_file_location(target.stem, target)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.M == m and module.N == 40
        check_block_mask(module.block_mask(), dense)
        with pytest.raises(ValueError, match=f"M = {m} queries"):
            module.attention(q[:, :, :5], k, v)
    assert main(["compile", str(source), "--n", "40", "--m", "70", "-o", str(tmp_path / "f.pt")]) == 0
    saved = torch.load(tmp_path / "f.pt")
    assert saved["m"] == 70 and torch.equal(saved["masks"][0, 0], torch.from_numpy(
        patterndsl.compile(source, 40, m=70).dense()))


# ---- the command line ---------------------------------------------------------------------------


def test_cli_check_layout_and_mask(tmp_path, capsys):
    source = tmp_path / "cross.spat"
    source.write_text("queries m\nintervals(2, 3) | cols(0)\n")
    assert main(["check", str(source), "--n", "9", "--m", "7"]) == 0
    out = capsys.readouterr().out
    assert "m = 7 queries × n = 9 keys" in out and "layer 0 head 0: 23 " in out
    assert "C1–C3 (Yun et al.) are about square patterns" in out and "query rows without a key" not in out
    assert main(["layout", str(source), "--n", "40", "--m", "33", "--block-size", "16"]) == 0
    assert "3 × 3 blocks of 16 × 16" in capsys.readouterr().out
    assert main(["mask", str(source), "--n", "9", "--m", "7", "-o", str(tmp_path / "m.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "m.npy")[0, 0], patterndsl.compile(source, 9, m=7).dense())
    assert main(["check", str(source), "--n", "9"]) == 1  # `queries m` without --m
    assert "none was given" in capsys.readouterr().err
    assert main(["check", str(source)]) == 2
    assert main(["show", str(source), "--n", "9", "--m", "7"]) == 1
    assert main(["compile", str(source), "--n", "9", "--m", "7", "--target", "triton", "-o", str(tmp_path / "t.py")]) == 1
    assert "writes n × n kernels" in capsys.readouterr().err


# ---- diagnostics ----------------------------------------------------------------------------------


DIAGNOSTICS = [
    ("queries 3\ntranspose(causal)", 8, None, "2:1", "^^^^^^^^^^^^^^^^^", "transpose(P) needs a square pattern"),
    ("queries 3\ncausal & segment", 8, None, "2:10", "^^^^^^^", "`segment` compares the segment ids of one"),
    ("queries 3\nrandom(2)", 8, None, "2:1", "^^^^^^^^^", "`random` draws min(r, n) keys"),
    ("queries 3\ngrid(2, 4) { causal }", 8, None, "2:1", "^^^^^^^^^^^^^^^^^^^^^", "grid { } needs a square"),
    ("queries m\ncausal", 8, None, "1:9", "^", "none was given"),
    ("queries 4\ncausal", 8, 5, "1:9", "^", "declares 4 queries"),
    ("queries 0 * n\ncausal", 8, None, "1:9", "^^^^^", "between 1 and 2^30 queries"),
    ("queries 3\nlet m = 2\ncausal", 8, None, "2:5", "^", "`m` is the number of queries"),
    ("queries 3\nqueries 4\ncausal", 8, None, "2:1", "^^^^^^^^^", "`queries` is given twice"),
    ("queries\ncausal", 8, None, "1:8", "^", "expected"),
]


@pytest.mark.parametrize("text, n, m, where, caret, message", DIAGNOSTICS)
def test_diagnostics_point_at_the_cause(text, n, m, where, caret, message):
    with pytest.raises(patterndsl.SpatError) as info:
        patterndsl.compile(text, n, m=m)
    shown = str(info.value)
    assert f"<string>:{where}: error:" in shown and message in shown
    assert any(line.strip() == caret for line in shown.splitlines())
    assert "help:" in shown


def test_m_for_a_square_file_and_q_outside_the_m_queries():
    with pytest.raises(patterndsl.SpatError, match="declares none"):
        patterndsl.compile("causal", 8, m=3)
    with pytest.raises(patterndsl.SpatError, match="m must be an integer, got True"):
        patterndsl.compile("queries m\ncausal", 8, m=True)
    compiled = patterndsl.compile("queries 4\ncausal", 8)
    q, k = torch.randn(1, 1, 5, 8), torch.randn(1, 1, 8, 8)
    with pytest.raises(patterndsl.SpatError, match="beyond the cross file's 4 queries"):
        patterndsl.attention(q, k, k, compiled)
    with pytest.raises(patterndsl.SpatError, match="no segments="):
        patterndsl.attention(q[:, :, :4], k, k, compiled, segments=torch.zeros(1, 8, dtype=torch.int64))


def test_the_formatter_keeps_queries():
    text = "queries m\nlet img = cdiv(n, 4)\nintervals(cdiv(m, 4), img) | cols(0..2)\n"
    from patterndsl.formatter import format as fmt

    assert fmt(text) == text


def test_the_readme_cross_attention_snippet_runs_as_written():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Cross-attention"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["out"].shape == (1, 8, 77, 64)
    assert namespace["mask"].shape == (77, 256)


def test_the_triton_kernels_on_rectangles():
    """backend="triton" runs the square of the file with q at q_offset (Triton's interpreter, n ≤ 64)."""
    pytest.importorskip("triton", reason="the Triton kernels need triton installed (pip install triton)")
    from patterndsl.kernels import interpreting

    if not interpreting():
        pytest.skip("runs the kernels in Triton's interpreter (TRITON_INTERPRET=1)")
    for m, n in ((40, 24), (9, 33)):
        compiled = patterndsl.compile(f"queries {m}\n(window(3) & causal) | intervals(4, 8) | cols(0)", n)
        q, k, v = torch.randn(1, 2, m, 16), torch.randn(1, 1, n, 16), torch.randn(1, 1, n, 16)
        got = patterndsl.attention(q, k, v, compiled, backend="triton", block_size=16)
        torch.testing.assert_close(got, patterndsl.attention_reference(q, k, v, compiled), rtol=1e-4, atol=1e-4)


def test_heads_and_layers_in_a_cross_file():
    text = "queries 5\nlayers {\n    heads {\n        0: causal\n        1: intervals(2, 2)\n    }\n    window(1)\n}\n"
    compiled = patterndsl.compile(text, 3)
    assert (compiled.layers, compiled.heads) == (2, 2)
    assert rows(compiled.dense(0, 0)) == ("100", "110", "111", "111", "111")
    assert rows(compiled.dense(0, 1)) == ("110", "110", "001", "001", "000")
    assert rows(compiled.dense(1, 1)) == ("110", "111", "011", "001", "000")
    q = torch.randn(1, 2, 5, 8, dtype=torch.float64)
    k, v = torch.randn(1, 2, 3, 8, dtype=torch.float64), torch.randn(1, 2, 3, 8, dtype=torch.float64)
    for layer in (0, 1):
        allowed = torch.from_numpy(compiled.dense_all()[layer])
        want = masked_softmax_attention(q, k, v, allowed)
        torch.testing.assert_close(patterndsl.attention(q, k, v, compiled, layer, backend="native"), want)


@pytest.mark.parametrize("pattern", ["queries 77\nall", "queries m\nwindow(2)",
                                     lambda: patterndsl.compile("queries 77\nall", n=256),
                                     lambda: patterndsl.compile("queries m\nall", n=256, m=300)])
def test_sparse_attention_refuses_a_cross_file_at_construction(pattern):
    # Self-attention reads queries and keys from one x: with m > n it used to run silently,
    # taking x's n rows for the first n of the m queries.
    from patterndsl.nn import SparseAttention

    with pytest.raises(patterndsl.SpatError, match="SparseAttention is self-attention") as caught:
        SparseAttention(pattern() if callable(pattern) else pattern, 32, 2)
    assert "patterndsl.attention" in caught.value.diagnostics[0].help


@pytest.mark.parametrize("m", [77, 300])
def test_native_attention_called_directly_runs_a_cross_file(m):
    # It used to refuse m > n, saying the queries lay beyond the keys.
    from patterndsl.native import native_attention

    compiled = patterndsl.compile("queries m\nintervals(cdiv(m, 4), 64) | cols(0)", n=256, m=m)
    gen = torch.Generator().manual_seed(m)
    q = torch.randn(1, 2, m, 16, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(1, 2, 256, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    out = native_attention(q, k, v, compiled)
    assert out.shape == (1, 2, m, 16)
    torch.testing.assert_close(out, patterndsl.attention_reference(q, k, v, compiled))


def test_triton_attention_called_directly_points_a_cross_file_at_patterndsl_attention():
    from patterndsl.kernels import triton_attention

    compiled = patterndsl.compile("queries 77\nall", n=256)
    q = torch.randn(1, 2, 77, 16)
    k, v = (torch.randn(1, 2, 256, 16) for _ in range(2))
    with pytest.raises(patterndsl.SpatError, match="cross-attention file") as caught:
        triton_attention(q, k, v, compiled)
    assert "backend=\"triton\"" in caught.value.diagnostics[0].help
