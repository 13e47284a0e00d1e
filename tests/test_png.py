"""`patterndsl show --png`: a valid PNG whose pixels show the block layout."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

import patterndsl
from patterndsl.cli import main
from patterndsl.show import _CELL_COLOURS, _block_picture, render_png

ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def colours_in(path) -> set:
    with Image.open(path) as image:
        assert image.format == "PNG"
        rgb = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return {"#%02x%02x%02x" % tuple(pixel) for pixel in np.unique(rgb, axis=0)}


def test_show_png_writes_a_png_with_each_state_in_its_colour(tmp_path, capsys):
    out = tmp_path / "fixed.png"
    code = main(["show", str(ROOT / "examples/fixed.spat"), "--n", "512", "--png", str(out)])
    assert code == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert "wrote" in capsys.readouterr().err
    colours = colours_in(out)
    # fixed has full blocks (chunk & causal below the diagonal), partial blocks, and
    # connected pairs in them: each colour must appear (the palette keeps flat colours exact).
    for state in (0, 2, 3, 5):
        assert _CELL_COLOURS[state] in colours, f"no {_CELL_COLOURS[state]} (cell value {state})"
    assert "#ff00ff" not in colours, "a cell that is connected but in an empty block, or unconnected in a full one"


def test_show_png_without_full_blocks_has_no_full_colour(tmp_path):
    out = tmp_path / "stride.png"
    compiled = patterndsl.compile("stride(7)", 300)
    render_png(compiled, out, block_size=(32, 64))
    assert compiled.layout(0, 0, (32, 64)).num_full == 0
    assert _CELL_COLOURS[5] not in colours_in(out)


def test_large_n_draws_blocks_only(tmp_path):
    compiled = patterndsl.compile("window(5000) | global(0..8)", 1 << 16)
    out = tmp_path / "big.png"
    described = render_png(compiled, out, block_size=2048)  # 32 × 32 blocks, each several pixels
    assert described.endswith("blocks only")
    assert {_CELL_COLOURS[2], _CELL_COLOURS[5]} <= colours_in(out)
    assert _CELL_COLOURS[3] not in colours_in(out), "no pairs drawn at this n"


def test_block_picture_pools_large_grids_from_the_nonempty_blocks():
    layout = patterndsl.compile("window(0) | cols(0)", 4096).layout(0, 0, 16)  # 256 × 256 blocks
    picture, step_q, step_k = _block_picture(layout, 100)
    assert (step_q, step_k) == (3, 3) and picture.shape == (86, 86)
    grid = layout.to_dense()
    padded = np.zeros((258, 258), dtype=np.int8)
    padded[:256, :256] = grid
    assert np.array_equal(picture, padded.reshape(86, 3, 86, 3).max(axis=(1, 3)))


def test_show_png_heads_and_layers_get_one_panel_each(tmp_path):
    compiled = patterndsl.compile("layers {\n heads {\n  0..2: causal\n  2: window(2)\n }\n window(5)\n}", 64)
    described = render_png(compiled, tmp_path / "panels.png", block_size=16)
    assert described.startswith("3 panel(s)")


@pytest.mark.parametrize("argv, message", [
    (["--block-size", "16"], "--block-size goes with --png"),
    (["--png", "x.png", "--block-size", "16x16x16"], "a block size is B or BQxBK"),
])
def test_show_png_usage_errors(argv, message, capsys):
    assert main(["show", str(ROOT / "examples/star.spat"), "--n", "64"] + argv) == 2
    assert message in capsys.readouterr().err


def test_show_png_to_an_unwritable_place_is_a_clean_error(tmp_path, capsys):
    target = tmp_path / "no_such_directory" / "out.png"
    assert main(["show", str(ROOT / "examples/star.spat"), "--n", "64", "--png", str(target)]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_a_layout_over_the_memory_budget_is_drawn_from_sampled_rows(tmp_path):
    # window(64) | global(0..8) at 2^26 in blocks of 128 lists 1.5M blocks (2.2 GiB): the panel
    # is 512 × 512 regions counted from sampled rows instead, partial along the diagonal and
    # on global's row and column, empty elsewhere
    from patterndsl.show import _SampledPicture

    compiled = patterndsl.compile("window(64) | global(0..8)", 1 << 26)
    described = render_png(compiled, tmp_path / "huge.png")
    assert described.endswith("(layouts over the memory or drawing budget drawn as 512 × 512 regions from sampled rows)")
    picture = _SampledPicture(compiled.pattern(0, 0), 1 << 26, 512)
    partial = picture.cells == 2
    assert partial[np.arange(512), np.arange(512)].all() and partial[0].all() and partial[:, 0].all()
    assert (picture.cells == 0).sum() >= 512 * 507


def test_png_of_drawn_keys_samples_regions_within_a_bound(tmp_path, monkeypatch):
    """bernoulli's layout decides every pair (n² at 2^20, 2^52 at 2^26): beyond
    PNG_DRAWN_KEYS the panel is drawn from sampled rows, counted on column samples."""
    from test_show import count_pairs_evaluated

    seen = count_pairs_evaluated(monkeypatch)
    for n in (1 << 20, 1 << 26):
        seen[0] = 0
        compiled = patterndsl.compile("bernoulli(1, 4)", n)
        described = render_png(compiled, tmp_path / "b.png")
        assert "from sampled rows" in described
        assert 0 < seen[0] <= 1 << 27, (n, seen[0])
