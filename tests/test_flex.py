"""The FlexAttention target (patterndsl/targets/flex.py) and patterndsl.attention.

- The BlockMask built from our layout against torch's own `create_block_mask` run on
  the dense reference mask: the same key blocks per query block (as sets), the same
  full/partial split, the same transposed lists — for hypothesis-generated patterns
  at ragged n with BQ ≠ BK.
- The generated mask_mod against the dense reference, pair by pair, through torch's
  `create_mask` (the vmap path FlexAttention uses).
- Attention against `attention_reference`: unfused FlexAttention (it evaluates the
  mask_mod on every pair) on several patterns, and compiled FlexAttention (which
  reads our block lists and skips mask_mod on full blocks) on one rich case, since
  each compilation takes seconds on a CPU.
- The emitted module, imported in a fresh interpreter where patterndsl cannot be imported.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.attention.flex_attention import create_block_mask, create_mask, flex_attention

import patterndsl
from patterndsl import strategies as S
from patterndsl.cli import main
from patterndsl.targets import flex

ROOT = pathlib.Path(__file__).resolve().parent.parent
CI = bool(os.environ.get("CI"))
# (BQ, BK) pairs FlexAttention accepts, square and not.
BLOCK_SIZES = st.sampled_from([(16, 16), (32, 16), (16, 64), (64, 32), (128, 128)])

# Unfused FlexAttention warns on every call that it is unfused; that is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def examples(count: int) -> int:
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))


def block_sets(num_blocks, indices, head: int = 0) -> list[set]:
    """Per row of a BlockMask's lists: the set of listed blocks."""
    counts = num_blocks[0, head].tolist()
    rows = indices[0, head].tolist()
    return [set(row[:count]) for row, count in zip(rows, counts)]


def ragged_edge(n: int, block_q: int, block_k: int, qb: int, kb: int) -> bool:
    return (n % block_q and qb == n // block_q) or (n % block_k and kb == n // block_k)


def check_against_create_block_mask(compiled, block_q: int, block_k: int):
    ours = flex.block_mask(compiled, 0, (block_q, block_k))
    n = compiled.n
    for head in range(compiled.heads):
        ours_head = head if ours.kv_num_blocks.shape[1] > 1 else 0
        dense = torch.from_numpy(compiled.dense(0, head))
        theirs = create_block_mask(lambda b, h, q, k: dense[q, k], 1, 1, n, n, device="cpu",
                                   BLOCK_SIZE=(block_q, block_k))
        assert ours.BLOCK_SIZE == theirs.BLOCK_SIZE == (block_q, block_k)
        assert ours.kv_indices.shape[2:] == theirs.kv_indices.shape[2:]
        assert ours.kv_indices.dtype == ours.kv_num_blocks.dtype == torch.int32
        for forward in (True, False):  # the kv lists, then the transposed (q) lists
            prefix = "" if forward else "q"
            names = ("kv_num_blocks", "kv_indices") if forward else ("q_num_blocks", "q_indices")
            full_names = tuple("full_" + name for name in names)
            our_partial = block_sets(*(getattr(ours, a) for a in names), ours_head)
            our_full = block_sets(*(getattr(ours, a) for a in full_names), ours_head)
            their_partial = block_sets(*(getattr(theirs, a) for a in names))
            their_full = block_sets(*(getattr(theirs, a) for a in full_names))
            for row, (op, of, tp, tf) in enumerate(zip(our_partial, our_full, their_partial, their_full)):
                where = f"head {head}, {prefix or 'kv'} row {row}, n={n}, blocks {block_q}×{block_k}"
                assert op | of == tp | tf, where
                assert not op & of, where
                # torch pads the mask with zeros to whole blocks, so a ragged block at the
                # end is never full for it; ours is full when every in-bounds pair is.
                # Everything else must agree exactly.
                for column in of - tf:
                    qb, kb = (row, column) if forward else (column, row)
                    assert ragged_edge(n, block_q, block_k, qb, kb), f"{where}: block {column} full only in ours"
                    assert dense[qb * block_q:(qb + 1) * block_q, kb * block_k:(kb + 1) * block_k].all(), where
                assert tf <= of, f"{where}: full for torch, partial or missing in ours"


@settings(max_examples=examples(120 if CI else 60), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(), st.integers(1, 600), BLOCK_SIZES)
def test_block_mask_matches_create_block_mask(source, n, block_size):
    check_against_create_block_mask(patterndsl.compile(source, n), *block_size)


@settings(max_examples=examples(20), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.files(), S.sizes(max_n=300), BLOCK_SIZES)
def test_block_mask_of_files_with_heads_and_layers(source, n, block_size):
    compiled = patterndsl.compile(source, n)
    check_against_create_block_mask(compiled, *block_size)
    ours = flex.block_mask(compiled, 0, block_size)
    distinct = {id(layout) for layout in compiled.layouts(0, block_size)}
    assert ours.kv_indices.shape[:2] == (1, compiled.heads if len(distinct) > 1 else 1)


def check_mask_mod(compiled, layer: int = 0, block_size=(32, 16)):
    mask_mod = flex.mask_mod(compiled, layer, block_size)
    n = compiled.n
    got = create_mask(mask_mod, 1, compiled.heads, n, n, device="cpu")[0]
    for head in range(compiled.heads):
        want = torch.from_numpy(compiled.dense(layer, head))
        wrong = (got[head] != want).nonzero()
        assert wrong.numel() == 0, (f"layer {layer} head {head}, n={n}: the mask_mod says "
                                    f"{bool(got[head][tuple(wrong[0])])} at (q, k) = {tuple(wrong[0].tolist())}\n"
                                    + flex.mask_mod_source(compiled, layer, block_size).source)


@settings(max_examples=examples(150 if CI else 80), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(), S.sizes(max_n=200), BLOCK_SIZES)
def test_mask_mod_matches_dense_reference(source, n, block_size):
    check_mask_mod(patterndsl.compile(source, n), 0, block_size)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.files(), S.sizes(max_n=120))
def test_mask_mod_of_every_layer_and_head(source, n):
    compiled = patterndsl.compile(source, n)
    for layer in range(compiled.layers):
        check_mask_mod(compiled, layer)


def test_mask_mod_uses_tables_for_long_index_lists_and_random():
    compiled = patterndsl.compile("global(0, 3, 5, 7, 11, 13, 17, 19, 23, 29, n-3..n) | random(5, seed=9)", 500)
    source = flex.mask_mod_source(compiled, 0, 64)
    assert set(source.tables) == {"member0", "pairs1_slots", "pairs1_bits"}
    assert source.tables["member0"].dtype == np.int8 and source.tables["member0"].shape == (500,)
    check_mask_mod(compiled, 0, 64)


def test_head_patterns_are_picked_by_head_index():
    compiled = patterndsl.compile("heads {\n 0..2: causal\n 2: none\n 3..5: window(1) | cols(7)\n}", 40)
    source = flex.mask_mod_source(compiled, 0).source
    assert source.count("torch.where") == 2  # three runs of heads
    check_mask_mod(compiled)


def random_qkv(batch, heads, kv_heads, n, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, heads, n, dim, generator=generator),
            torch.randn(batch, kv_heads, n, dim, generator=generator),
            torch.randn(batch, kv_heads, n, dim, generator=generator))


@pytest.mark.parametrize("source, n, heads, kv_heads, block_size", [
    ("window(3) | global(0..2)", 77, 2, 2, (16, 16)),
    ("heads {\n 0: causal - rows(5..9)\n 1: random(6, seed=4) | self\n}", 130, 2, 1, (32, 16)),
    ("stride(5) & ~chunk(16) | logsparse", 64, 4, 2, (16, 32)),
])
@pytest.mark.parametrize("lazy_grids", [False, True], ids=["one_buffer", "lazy_mappings"])
def test_unfused_flex_attention_matches_reference(source, n, heads, kv_heads, block_size, lazy_grids, monkeypatch):
    if lazy_grids:  # the index grids of long rows (over a page), here forced at small n
        monkeypatch.setattr(flex, "_ONE_PAGE", 0)
    compiled = patterndsl.compile(source, n)
    q, k, v = random_qkv(2, heads, kv_heads, n, 16)
    block_mask = compiled.block_mask(block_size)
    got = flex_attention(q, k, v, block_mask=block_mask, enable_gqa=kv_heads != heads)
    want = patterndsl.attention_reference(q, k, v, compiled)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_compiled_attention_matches_reference():
    """One compilation, many features: heads with different patterns (one with empty
    rows, one with full blocks cut by the ragged end, one with random keys), ragged n,
    BQ ≠ BK, grouped-query attention, an explicit scale; then a second call that reuses it."""
    source = "heads {\n 0: window(4) - rows(10..20)\n 1: cols(0..40) | rows(100..n)\n 2..4: random(7, seed=1) | self\n}"
    compiled = patterndsl.compile(source, 150)
    layout = compiled.layout(0, 1, (32, 64))
    assert layout.num_full and any(layout.full_idx == 2), "a full block at the ragged end"
    q, k, v = random_qkv(2, 4, 2, 150, 16, seed=3)
    want = patterndsl.attention_reference(q, k, v, compiled, scale=0.3)
    got = patterndsl.attention(q, k, v, compiled, scale=0.3, block_size=(32, 64))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.all(got[:, 0, 10:20] == 0), "rows with no connection give zeros"
    cache = compiled.__dict__["_flex_attention"]
    assert list(cache) == [(0, 32, 64, "cpu")]
    q2 = q.flip(2)
    torch.testing.assert_close(patterndsl.attention(q2, k, v, compiled, scale=0.3, block_size=(32, 64)),
                               patterndsl.attention_reference(q2, k, v, compiled, scale=0.3),
                               atol=1e-5, rtol=1e-5)
    assert len(cache) == 1


@pytest.mark.parametrize("q_shape, k_shape, message", [
    ((1, 2, 64), (1, 2, 64, 8), "shaped [batch, heads, n, head_dim]"),
    ((1, 2, 33, 8), (1, 2, 32, 8), "lie beyond the 32 keys"),  # another n alone runs at compiled.at(n)
    ((1, 3, 64, 8), (1, 2, 64, 8), "must be equal and divide query heads"),
    ((2, 2, 64, 8), (1, 2, 64, 8), "same batch size"),
    ((1, 2, 64, 8), (1, 2, 64, 4), "same head_dim"),
])
def test_attention_rejects_bad_shapes(q_shape, k_shape, message):
    compiled = patterndsl.compile("window(2)", 64)
    with pytest.raises(patterndsl.SpatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        patterndsl.attention(torch.zeros(q_shape), torch.zeros(k_shape), torch.zeros(k_shape), compiled)


def test_attention_rejects_head_count_mismatch():
    compiled = patterndsl.compile("heads {\n 0..3: causal\n}", 16)
    q = torch.zeros(1, 2, 16, 8)
    with pytest.raises(patterndsl.SpatError, match="the pattern has 3 heads but q has 2"):
        patterndsl.attention(q, q, q, compiled)


def test_block_mask_at_a_million_tokens():
    """n = 2^20 in blocks of 512 (2048 × 2048 blocks): built from the layout's lists, with
    no pair evaluated and no dense transposition (BlockMask's own [rows, columns] index
    tensors are the only dense part)."""
    compiled = patterndsl.compile("window(1024) | global(0..8)", 1 << 20)
    block_mask = compiled.block_mask(512)
    assert block_mask.kv_indices.shape == (1, 1, 2048, 2048)
    assert block_mask.seq_lengths == (1 << 20, 1 << 20)
    counts = (block_mask.kv_num_blocks + block_mask.full_kv_num_blocks)[0, 0]
    assert counts[0].item() == 2048 and counts[1:].max().item() == 6  # blocks i-2..i+2 and block 0
    assert torch.equal(block_mask.q_num_blocks + block_mask.full_q_num_blocks,
                       block_mask.kv_num_blocks + block_mask.full_kv_num_blocks)  # the pattern is symmetric
    partial = block_mask.kv_indices[0, 0, 5, :block_mask.kv_num_blocks[0, 0, 5]].tolist()
    full = block_mask.full_kv_indices[0, 0, 5, :block_mask.full_kv_num_blocks[0, 0, 5]].tolist()
    assert (partial, full) == ([0, 3, 7], [4, 5, 6])


def test_compile_cli_writes_a_module_that_needs_only_torch(tmp_path):
    spat = tmp_path / "two_layers.spat"
    spat.write_text("layers {\n heads {\n  0: window(3) | global(0, 2, 4, 6, 8, 10, 12, 14, 16, 30..n)\n"
                    "  1: random(5, seed=2) - rows(7..9)\n }\n stride(9) & causal\n}\n")
    out = tmp_path / "two_layers_flex.py"
    assert main(["compile", str(spat), "--n", "90", "--target", "flex", "-o", str(out), "--memory-budget", "1G"]) == 0
    compiled = patterndsl.compile(spat, 90)
    expected = {}
    for layer in range(2):
        ours = flex.block_mask(compiled, layer)
        expected[layer] = {name: getattr(ours, name) for name in (
            "kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
            "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices")}
    q, k, v = random_qkv(1, 2, 1, 90, 16)
    reference = [patterndsl.attention_reference(q, k, v, compiled, layer) for layer in range(2)]
    torch.save({"expected": expected, "qkv": (q, k, v), "reference": reference}, tmp_path / "expected.pt")
    script = f"""
import sys, warnings
sys.modules["patterndsl"] = None  # the module must not need patterndsl
sys.path.insert(0, {str(tmp_path)!r})
warnings.simplefilter("ignore")
import torch
from torch.nn.attention.flex_attention import create_mask, flex_attention
import two_layers_flex as module
data = torch.load({str(tmp_path / "expected.pt")!r})
q, k, v = data["qkv"]
for layer in range(2):
    bm = module.block_mask(layer)
    for name, want in data["expected"][layer].items():
        assert torch.equal(getattr(bm, name), want), (layer, name)
    out = flex_attention(q, k, v, block_mask=bm, enable_gqa=True)
    torch.testing.assert_close(out, data["reference"][layer], atol=1e-5, rtol=1e-5)
out = module.attention(q, k, v, layer=3)  # compiled; layer 3 is layer 1 of 2
torch.testing.assert_close(out, data["reference"][1], atol=1e-5, rtol=1e-5)
print("ok", module.N, module.HEADS, module.LAYERS, module.BLOCK_SIZE)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ok", "90", "2", "2", "(128,", "128)"]
    text = out.read_text()
    assert "def _layer0_mask_mod(member0, pairs1_slots, pairs1_bits):" in text
    assert "import patterndsl" not in text


def test_deepest_patterns_make_a_mask_mod_and_deeper_source_is_a_clean_error():
    from patterndsl.targets import get_target

    assert get_target("flex").suffix == "_flex.py"
    # The language allows 100 levels of nesting; the generated source nests about as deep.
    deepest = "".join(f"stride({i + 2}) - (" for i in range(97)) + "self" + ")" * 97
    check_mask_mod(patterndsl.compile(deepest, 300))
    # Python's parser stops at 200 nested parentheses: that must be a SpatError, not a SyntaxError.
    too_deep = flex.MaskModSource("def mask_mod(b, h, q_idx, kv_idx):\n    return " + "(" * 300 + "q_idx"
                                  + ")" * 300 + "\n", {})
    with pytest.raises(patterndsl.SpatError, match="too deeply nested"):
        too_deep.build()


def test_compile_cli_default_output_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(ROOT / "examples/star.spat"), "--n", "64", "--target", "flex"]) == 0
    assert (tmp_path / "star_flex.py").exists()
    assert "wrote star_flex.py: a FlexAttention module" in capsys.readouterr().err


def test_emitted_module_quotes_any_file_name(tmp_path):
    from patterndsl.errors import Source

    source = Source("window(1)", 'odd """ name \\ with\r\nlines.spat')
    text = flex.emit_module(patterndsl.compile(source, 16))
    namespace: dict = {}
    exec(compile(text, "emitted", "exec"), namespace)
    assert 'odd """ name \\ with\r\nlines.spat' in namespace["__doc__"]
    assert namespace["block_mask"](0).kv_num_blocks.tolist() == [[[1]]]


BLOCK_MASK_TENSORS = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
                      "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices")


@settings(max_examples=examples(15), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(), S.pattern_sources(), st.integers(1, 400), BLOCK_SIZES, st.booleans())
def test_index_grids_in_one_allocation_or_four_are_the_torch_builders(first, second, n, block_size, one_buffer):
    """make_block_mask's CPU grids (four views of one zeroed buffer when rows fit a page, four
    arrays otherwise; forced here both ways) hold exactly torch_make_block_mask's tensors, for
    one head and for two heads with different lists, and the four grids never overlap."""
    block_q, block_k = block_size
    layouts = [patterndsl.compile(source, n).layout(0, 0, block_size) for source in (first, second)]
    for heads in ([layouts[0]], layouts):
        numpy_lists = [flex.layout_lists(layout, torch.device("cpu")) for layout in heads]
        torch_lists = [{name: tuple(torch.from_numpy(np.asarray(a)) for a in lists)
                        for name, lists in per_head.items() if name != "device"} for per_head in numpy_lists]
        page = flex._ONE_PAGE
        flex._ONE_PAGE = page if one_buffer else 0
        try:
            ours = flex.make_block_mask(n, block_q, block_k, numpy_lists, None)
        finally:
            flex._ONE_PAGE = page
        theirs = flex.torch_make_block_mask(n, block_q, block_k, torch_lists, None)
        for name in BLOCK_MASK_TENSORS:
            assert torch.equal(getattr(ours, name), getattr(theirs, name)), name
        spans = sorted((t.data_ptr(), t.data_ptr() + t.numel() * t.element_size())
                       for t in (getattr(ours, name) for name in BLOCK_MASK_TENSORS if name.endswith("indices")))
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), spans
        if one_buffer:  # views of one buffer start on 64-byte boundaries from its start, as allocations would
            assert all((start - spans[0][0]) % 64 == 0 for start, _ in spans)


def test_block_masks_again_and_at_other_blocks_from_one_compile():
    """The mask_mod's source is written once per compile, layer and blocks: a second BlockMask
    of a compile, and one at other blocks (random's bitmap tables are per block), still match
    create_block_mask on the dense reference; a new compile at another n writes its own."""
    compiled = patterndsl.compile("random(3, seed=4) | window(2)", 200)
    for block_size in ((32, 16), (16, 64), (32, 16)):
        check_against_create_block_mask(compiled, *block_size)
        check_mask_mod(compiled, 0, block_size)
    check_mask_mod(patterndsl.compile("random(3, seed=4) | window(2)", 150), 0, (32, 16))


@settings(max_examples=examples(20), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.files(), S.sizes(max_n=200), BLOCK_SIZES, st.integers(0, 10 ** 9))
def test_a_text_compiled_again_shares_only_its_parse(source, n, block_size, salt):
    """compile keeps the AST of a text it parsed (patterndsl/compiled.py) and nothing built from
    it: compiling the same text again shares the module but resolves it afresh (its own IR
    objects, layouts and BlockMask), and all of it agrees with the same file under a text the
    cache has not seen (a comment added) and with create_block_mask."""
    first = patterndsl.compile(source, n)
    again = patterndsl.compile(source, n)
    unseen = patterndsl.compile(source + f"\n# {salt} {n}\n", n)
    assert again.module is first.module and unseen.module is not first.module
    assert again.patterns == unseen.patterns
    for layer in range(again.layers):
        # (simplify hands one shared node, e.g. `all`, to every compile, whatever its text)
        shared = [u is f for u, f in zip(unseen.patterns[layer], first.patterns[layer])]
        for ours, theirs, common in zip(again.patterns[layer], first.patterns[layer], shared):
            assert common or ours is not theirs
        # a layout is shared among compiles only where an unseen text's is too (that shared node's)
        earlier = {id(layout) for layout in first.layouts(layer, block_size)}
        for ours, theirs in zip(again.layouts(layer, block_size), unseen.layouts(layer, block_size)):
            assert ours.same_as(theirs) and (id(ours) not in earlier or id(theirs) in earlier)
    check_against_create_block_mask(again, *block_size)


def test_a_text_that_does_not_parse_fails_every_time():
    """Nothing is kept of a failed parse: the error comes back on each compile, and the fixed
    text compiles."""
    for _ in range(3):
        with pytest.raises(patterndsl.SpatError, match="<string>:1:"):
            patterndsl.compile("window(2) & & causal\n", 64)
    assert patterndsl.compile("window(2) & causal\n", 64).dense().sum() == 64 + 63 + 62
