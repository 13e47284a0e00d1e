"""`transpose(P)` ((i, j) in it exactly when (j, i) is in P) and the offsets of `chunk`
and `stride`: hand-drawn masks, the dense reference against the definition, and the
diagnostics; the exact counts and the block layouts of transposes against the transposed
reference; and the size of the IR a transpose lowers to at n = 2^26, which must not grow
with n (summary's row side was rows(R) with ⌈n/b⌉ intervals, which every command walked).
The generic property tests (counts, layouts, growth, flex, Triton) draw transposes of
primitives through patterndsl.strategies.leaf_sources."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import assume, given, settings

import patterndsl
from patterndsl import SpatError
from patterndsl import strategies as S
from patterndsl.analysis.counts import row_degrees
from patterndsl.reference import dense_mask


def mask(source: str, n: int, simplify: bool = True) -> np.ndarray:
    return patterndsl.compile(source, n, simplify=simplify).mask().numpy()


def drawn(rows) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in rows])


@pytest.mark.parametrize(("source", "n", "rows"), [
    ("transpose(causal)", 4, ("1111", "0111", "0011", "0001")),
    # rows(1) becomes column 1
    ("transpose(rows(1) | self)", 4, ("1100", "0100", "0110", "0101")),
    # summary's row side: the last row of every chunk of 3 attends to everything
    ("transpose(summary(3, 1))", 5, ("00000", "00000", "11111", "00000", "00000")),
    # window(2, 0) looks back 2; its transpose looks ahead 2
    ("transpose(window(2, 0)) - self", 5, ("01100", "00110", "00011", "00001", "00000")),
    # stride(3, offset=1): i − j ≡ 1; transposed: j − i ≡ 1 (mod 3)
    ("transpose(stride(3, offset=1))", 5, ("01001", "00100", "10010", "01001", "00100")),
    ("transpose(transpose(causal))", 3, ("100", "110", "111")),
    ("transpose(~causal)", 3, ("000", "100", "110")),
])
def test_hand_drawn(source, n, rows):
    expected = drawn(rows)
    assert (mask(source, n) == expected).all()
    assert (mask(source, n, simplify=False) == expected).all()


@settings(max_examples=60, deadline=None)
@given(source=S.pattern_sources(max_depth=2), n=S.sizes(max_n=24))
def test_transpose_is_the_transposed_reference(source, n):
    assume("segment_start" not in source)  # its transpose is refused (tested in test_segments)
    plain = mask(source, n)
    assert (mask(f"transpose({source})", n) == plain.T).all()
    assert (mask(f"transpose(transpose({source}))", n) == plain).all()


@settings(max_examples=40, deadline=None)
@given(source=S.primitive_sources(("random",)), n=S.sizes(max_n=40))
def test_transposed_random_counts_are_its_column_counts(source, n):
    """transpose(random) is the one transpose kept as a node: its rows are random's columns."""
    compiled = patterndsl.compile(f"transpose({source})", n)
    dense = mask(source, n)
    assert row_degrees(compiled.pattern(), n).tolist() == dense.sum(axis=0).tolist()


def test_transposed_random_layout_is_the_transposed_blocks():
    n = 300
    plain = patterndsl.compile("random(5, seed=7)", n).layout(block_size=32).to_dense()
    turned = patterndsl.compile("transpose(random(5, seed=7))", n).layout(block_size=32).to_dense()
    assert (np.asarray(turned) == np.asarray(plain).T).all()


@pytest.mark.parametrize(("source", "message"), [
    ("transpose(3)", "transpose takes a pattern, found the integer 3"),
    ("transpose(causal, self)", "transpose takes one pattern, got 2 arguments"),
    ("transpose(p=causal)", "transpose takes one pattern, got 1 arguments"),
    ("transpse(causal)", "did you mean 'transpose'"),
])
def test_diagnostics(source, message):
    with pytest.raises(SpatError) as info:
        patterndsl.compile(source, 16)
    assert message in str(info.value)
    assert "^" in str(info.value)


@pytest.mark.parametrize(("source", "equal"), [
    ("chunk(4, offset=5)", "chunk(4, offset=1)"),  # only the remainder mod b matters
    ("stride(4, offset=-1)", "stride(4, offset=3)"),
    ("chunk(4, offset=0)", "chunk(4)"),
])
def test_offsets_reduce(source, equal):
    assert str(patterndsl.compile(source, 16, simplify=False).pattern()) == equal


@settings(max_examples=80, deadline=None)
@given(n=S.sizes(max_n=30), b=S.st.integers(1, 40), o=S.st.integers(-50, 50))
def test_offsets_against_the_definition(n, b, o):
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    assert (mask(f"chunk({b}, offset={o})", n) == ((i + o) // b == (j + o) // b)).all()
    assert (mask(f"stride({b}, offset={o})", n) == ((i - j - o) % b == 0)).all()


# ---- nested transposes against the dense reference ----------------------------------------


def transposable_sources(max_depth: int = 2):
    return S.pattern_sources(max_depth=max_depth).filter(lambda text: "segment_start" not in text)


@settings(max_examples=60, deadline=None)
@given(a=transposable_sources(), b=transposable_sources(), n=S.sizes(max_n=24), join=S.st.sampled_from("|&-"))
def test_transposes_inside_expressions_are_the_transposed_reference(a, b, n, join):
    """transpose(a) join b is the reference of a, transposed, joined with b's; both the IR as
    lowered and its printed form parsed back (printed IR parses back to the same IR)."""
    A, B = (dense_mask(patterndsl.compile(x, n).pattern(), n) for x in (a, b))
    expected = {"|": A.T | B, "&": A.T & B, "-": A.T & ~B}[join]
    for simplify in (True, False):
        turned = patterndsl.compile(f"transpose({a}) {join} ({b})", n, simplify=simplify).pattern()
        assert (dense_mask(turned, n) == expected).all()
        again = patterndsl.compile(str(turned), n, simplify=False).pattern()
        assert (dense_mask(again, n) == expected).all()


@settings(max_examples=50, deadline=None)
@given(source=transposable_sources(), n=S.sizes(max_n=40))
def test_transposed_counts_are_the_column_counts(source, n):
    """The exact counter on transpose(P): its row degrees are the reference's column sums of P."""
    dense = dense_mask(patterndsl.compile(source, n).pattern(), n)
    for simplify in (True, False):
        turned = patterndsl.compile(f"transpose({source})", n, simplify=simplify).pattern()
        assert row_degrees(turned, n).tolist() == dense.sum(axis=0).tolist()


def block_states(dense: np.ndarray, block_q: int, block_k: int) -> np.ndarray:
    """EMPTY 0 / PARTIAL 1 / FULL 2 of each block of a dense mask (cut at its edges)."""
    rows, cols = -(-dense.shape[0] // block_q), -(-dense.shape[1] // block_k)
    out = np.zeros((rows, cols), dtype=np.int8)
    for r in range(rows):
        for c in range(cols):
            block = dense[r * block_q:(r + 1) * block_q, c * block_k:(c + 1) * block_k]
            out[r, c] = 2 if block.all() else 1 if block.any() else 0
    return out


@settings(max_examples=50, deadline=None)
@given(source=transposable_sources(), n=S.sizes(max_n=80),
       blocks=S.st.sampled_from(((16, 16), (16, 32), (32, 16))))
def test_transposed_layouts_are_the_transposed_reference_blocks(source, n, blocks):
    dense = dense_mask(patterndsl.compile(source, n).pattern(), n)
    compiled = patterndsl.compile(f"transpose({source})", n)
    layout = compiled.layout(block_size=blocks).to_dense()
    assert (np.asarray(layout) == block_states(dense.T, *blocks)).all()


@pytest.mark.parametrize("source", ["summary(8, 2)", "summary(8, 2, offset=3)", "summary(5, 3, offset=-1)",
                                    "summary(n + 3, 3)", "summary(64, 1) & causal"])
@pytest.mark.parametrize("n", [1, 7, 33, 100])
def test_summary_row_side_against_the_definition(source, n):
    """transpose(summary(b, c, offset=o)): the rows i with (i + o) mod b ≥ b − c hold every key."""
    plain = mask(source, n)
    turned = patterndsl.compile(f"transpose({source})", n)
    assert (turned.mask().numpy() == plain.T).all()
    assert row_degrees(turned.pattern(), n).tolist() == plain.sum(axis=0).tolist()


# ---- the IR of a transpose does not grow with n ---------------------------------------------

BIG = 1 << 26


def ir_weight(pattern) -> tuple[int, int]:
    """(nodes, intervals of their index lists) of a lowered pattern: what every command walks.
    Its printed form (str) holds every parameter and interval, nodes kept as fields included."""
    text = str(pattern)
    return pattern.size(), text.count("..") + text.count(",")


def identifiers(pattern) -> int:
    return len(re.findall(r"[a-z_][a-z_0-9]*", str(pattern)))


def text_size(pattern) -> int:
    """Its printed length with every number one digit (a transpose may print n: causal's is
    window(0, n))."""
    return len(re.sub(r"[0-9]+", "0", str(pattern)))


@pytest.mark.parametrize("source", [
    "summary(8, 2)", "summary(8, 2, offset=3)", "summary(2, 1)", "summary(1000, 999)",
    "blocks(4) { summary(8, 2) }", "grid(64, 64) { summary(8, 2) }", "summary(8, 2) | window(4)",
    "summary(8, 2) & stride(4) | cols(0..4, n - 3..n)", "~summary(8, 2) - self", "summary(8, 2) - summary(16, 2)",
])
def test_transposed_summary_is_constant_size_at_2_26(source):
    """summary's row side is one node at any n (it was rows(R), 2^23 intervals here)."""
    for simplify in (True, False):
        plain = patterndsl.compile(source, BIG, simplify=simplify).pattern()
        turned = patterndsl.compile(f"transpose({source})", BIG, simplify=simplify).pattern()
        small = patterndsl.compile(f"transpose({source})", 1 << 12, simplify=simplify).pattern()
        assert ir_weight(turned) == ir_weight(small)
        assert turned.size() == plain.size()
        assert text_size(turned) <= text_size(plain) + 12 * identifiers(plain)
        assert patterndsl.compile(f"transpose({turned})", BIG, simplify=simplify).pattern() == plain


@settings(max_examples=80, deadline=None)
@given(source=transposable_sources())
def test_a_transpose_is_no_larger_than_its_operand_at_2_26(source):
    """Every primitive's transpose is a node of its own size (a primitive with the transposed
    meaning, or a wrapper reading the operand), so transpose(P) at n = 2^26 has P's nodes and
    about P's text: nothing in it is listed per row."""
    plain = patterndsl.compile(source, BIG, simplify=False).pattern()
    turned = patterndsl.compile(f"transpose({source})", BIG, simplify=False).pattern()
    assert turned.size() == plain.size()
    assert ir_weight(turned)[1] <= ir_weight(plain)[1] + 2 * identifiers(plain)
    assert text_size(turned) <= text_size(plain) + 12 * identifiers(plain)


@pytest.mark.parametrize(("source", "n"), [
    ("grid(96, 80) { transpose(natten(7, 5)) }", 96 * 80),
    ("grid(48, 64, tile=(4, 8)) { transpose(sliding_tiles(3, 3)) }", 48 * 64),
    ("grid(4, 20, 24) { transpose(natten3d(3, 5, 7)) }", 4 * 20 * 24),
    ("grid(30, 40) { transpose(natten(31, 3)) }", 30 * 40 - 7),  # a kernel as long as its axis; cells cut off
])
def test_transposed_grid_keys_are_listed_from_boxes(source, n, monkeypatch):
    """A transposed natten's rows hold more runs than a row formula keeps, so its keys are
    listed: from the cells in a box around each query (a few per row), not against every cell
    (cells² pairs: show of a 1024 × 1024 grid ran for hours). Counted, not timed."""
    from patterndsl.grid import GridTransposed

    pattern = patterndsl.compile(source, n).pattern()
    asked = []
    rule = GridTransposed.rule

    def counted(self, a, b):
        asked.append(np.broadcast_shapes(*(np.shape(x) for x in (*a, *b))))
        return rule(self, a, b)

    monkeypatch.setattr(GridTransposed, "rule", counted)
    keys = pattern.row_points(np.arange(n), n)
    evaluated = sum(int(np.prod(shape)) for shape in asked)
    assert evaluated <= 300 * n < n * n
    listed = np.zeros((n, n), dtype=bool)
    rows, slots = np.nonzero(keys >= 0)
    listed[rows, keys[rows, slots]] = True
    monkeypatch.undo()
    assert (listed == dense_mask(pattern, n)).all()


@pytest.mark.parametrize(("command", "code", "message"), [
    (["layout"], 1, "the block layout of transpose(summary(8, 2)) at n = 67,108,864 in blocks of 128 × 128 needs"),
    (["compile", "--target", "flex", "-o", "m.py"], 1, "the block layout of transpose(summary(8, 2)) at n = 67,108,864"),
    (["compile", "--target", "triton", "-o", "m.py"], 1, "the block layout of transpose(summary(8, 2)) at n = "),
    (["compile", "--target", "torch", "-o", "m.pt"], 1, "mask needs 4096.0 TiB, more than the memory budget"),
    (["mask", "-o", "m.npy"], 1, "mask needs 4096.0 TiB, more than the memory budget"),
    (["check"], 1, "check at n = 67,108,864 needs about"),
    (["show"], 0, "each character covers a rectangle of pairs"),
])
def test_every_command_serves_or_refuses_the_row_side_at_2_26(command, code, message, tmp_path, monkeypatch, capsys):
    """Each command at 2^26 answers from the one node (the refusals name it, with the size)."""
    from patterndsl.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PATTERNDSL_MEMORY_BUDGET", raising=False)
    (tmp_path / "t.spat").write_text("transpose(summary(8, 2))\n")
    assert main([command[0], "t.spat", "--n", str(BIG), *command[1:]]) == code
    captured = capsys.readouterr()
    assert message in captured.err + captured.out
    assert "Traceback" not in captured.err


def test_verify_reads_the_row_side_as_rows(tmp_path, monkeypatch, capsys):
    """verify's independent checker reads transpose(summary) as its held rows (m units for m
    rows), not by evaluating whole rows (m · n units: 4 · 10^9 at n = 2^16, 100 times this budget)."""
    from patterndsl.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.spat").write_text("transpose(summary(64, 2, offset=5)) | window(1)\n")
    assert main(["check", "t.spat", "--n", str(1 << 16), "--certificate", "t.cert"]) == 0
    assert main(["verify", "t.spat", "t.cert", "--budget", str(40_000_000)]) == 0  # (m · n: 4 · 10^9)
    assert "every claim was checked and holds" in capsys.readouterr().out
