"""The Python API: compile, masks, the torch target and the reference attention."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import patterndsl
from patterndsl import SpatError

EXAMPLES = Path(__file__).parent.parent / "examples"

MULTI = """
let s = isqrt(n)
layers {
    window(s - 1, 0)
    heads {
        0..2: stride(s) & causal
        2..4: global(0) | self
    }
}
"""


def test_compile_text_and_path_agree(tmp_path):
    path = tmp_path / "p.spat"
    path.write_text(MULTI)
    from_text = patterndsl.compile(MULTI, n=20)
    from_path = patterndsl.compile(path, n=20)
    assert (from_text.layers, from_text.heads) == (from_path.layers, from_path.heads) == (2, 4)
    assert torch.equal(from_text.masks(), from_path.masks())
    assert from_path.source.name == str(path)


def test_mask_is_bool_tensor_and_heads_broadcast():
    compiled = patterndsl.compile(MULTI, n=16)
    mask = compiled.mask(layer=0, head=3)
    assert mask.dtype == torch.bool and mask.shape == (16, 16)
    # layer 0 has no heads block: every head has the same pattern
    for head in range(4):
        assert torch.equal(compiled.mask(0, head), mask)
    # window(3, 0): j in [i - 3, i]
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    assert torch.equal(mask, (j <= i) & (j >= i - 3))
    # layer 1 heads 2..4: global(0) | self
    assert torch.equal(compiled.mask(1, 2), (i == 0) | (j == 0) | (i == j))
    assert compiled.masks().shape == (2, 4, 16, 16)


def test_layers_cycle_over_depth():
    compiled = patterndsl.compile(MULTI, n=9)
    assert torch.equal(compiled.mask(layer=2, head=0), compiled.mask(layer=0, head=0))
    assert torch.equal(compiled.mask(layer=5, head=1), compiled.mask(layer=1, head=1))


def test_bad_layer_or_head_is_a_spat_error():
    compiled = patterndsl.compile(MULTI, n=9)
    with pytest.raises(SpatError, match="head must be in 0..4"):
        compiled.mask(head=4)
    with pytest.raises(SpatError, match="layer must be"):
        compiled.mask(layer=-1)


def test_additive_mask():
    compiled = patterndsl.compile("causal", n=5)
    additive = compiled.additive_mask()
    assert additive.dtype == torch.float32
    assert torch.equal(additive == 0, compiled.mask())
    assert torch.isinf(additive[~compiled.mask()]).all() and (additive[~compiled.mask()] < 0).all()
    assert compiled.additive_mask(dtype=torch.float16).dtype == torch.float16


def test_memory_budget_refuses_with_a_clear_error(monkeypatch):
    compiled = patterndsl.compile("window(3)", n=1000, memory_budget=500_000)
    with pytest.raises(SpatError) as info:
        compiled.mask()
    message = str(info.value)
    assert "1000 × 1000" in message and "memory budget" in message and "help:" in message
    monkeypatch.setenv("PATTERNDSL_MEMORY_BUDGET", "1M")
    assert patterndsl.compile("window(3)", n=1000).mask().shape == (1000, 1000)
    with pytest.raises(SpatError, match="memory budget"):
        patterndsl.compile("window(3)", n=2000).mask()


def test_dense_mask_at_16k_is_not_refused_by_default():
    # 16384² bytes = 256 MiB, well inside the 2 GiB default.
    compiled = patterndsl.compile("window(1) | global(0)", n=16384)
    dense = compiled.dense()
    assert dense.shape == (16384, 16384)
    assert int(dense.sum()) == 3 * 16384 - 2 + 2 * 16383 - 2  # band, plus row 0 and column 0


def test_at_recompiles_for_another_n():
    compiled = patterndsl.compile("stride(isqrt(n))", n=16)
    assert str(compiled.pattern()) == "stride(4)"
    assert str(compiled.at(100).pattern()) == "stride(10)"


def test_n_must_be_a_positive_integer():
    for bad in (0, -3):
        with pytest.raises(SpatError, match="n must be between 1"):
            patterndsl.compile("causal", n=bad)
    with pytest.raises(SpatError, match="n must be an integer"):
        patterndsl.compile("causal", n=2.5)


def test_missing_file_and_non_utf8_are_spat_errors(tmp_path):
    with pytest.raises(SpatError, match="cannot read"):
        patterndsl.compile(tmp_path / "missing.spat", n=4)
    junk = tmp_path / "junk.spat"
    junk.write_bytes(b"\xff\xfe\x00window(3)")
    with pytest.raises(SpatError, match="not UTF-8"):
        patterndsl.compile(junk, n=4)


def test_parse_and_format_are_exported():
    module = patterndsl.parse("window( 3 )|causal")
    assert patterndsl.format(module) == "window(3) | causal\n"
    assert patterndsl.format("window( 3 )|causal") == "window(3) | causal\n"


def test_block_and_prob_are_recorded():
    compiled = patterndsl.compile("block 64, 32\nprob sparsemax\ncausal", n=8)
    assert compiled.block_size == (64, 32)
    assert compiled.prob == "sparsemax"
    assert patterndsl.compile("causal", n=8).prob == "softmax"


def _dense_attention(q, k, v, allowed, scale):
    """Attention written out by hand in float64, zero for empty rows."""
    scores = (q.double() @ k.double().transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ v.double()


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_attention_reference_matches_hand_written_softmax(kv_heads):
    torch.manual_seed(0)
    compiled = patterndsl.compile(MULTI, n=24)
    q = torch.randn(2, 4, 24, 8)
    k = torch.randn(2, kv_heads, 24, 8)
    v = torch.randn(2, kv_heads, 24, 8)
    for layer in range(2):
        out = patterndsl.attention_reference(q, k, v, compiled, layer=layer)
        repeat = 4 // kv_heads
        allowed = compiled.masks()[layer].unsqueeze(0)
        expected = _dense_attention(q, k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1),
                                    allowed, 1 / math.sqrt(8))
        torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def test_attention_reference_zero_rows_not_nan():
    compiled = patterndsl.compile("rows(0..3) & causal", n=8)
    q = torch.randn(1, 2, 8, 4, requires_grad=True)
    out = patterndsl.attention_reference(q, q, q, compiled)
    assert not torch.isnan(out).any()
    assert torch.equal(out[0, :, 3:], torch.zeros(2, 5, 4))
    out.sum().backward()
    assert not torch.isnan(q.grad).any()


def test_attention_reference_shape_errors():
    compiled = patterndsl.compile(MULTI, n=8)
    # another length of q, k, v: the pattern at that n (compiled.at(9)), not an error
    same = torch.randn(1, 4, 9, 4)
    torch.testing.assert_close(patterndsl.attention_reference(same, same, same, compiled),
                               patterndsl.attention_reference(same, same, same, compiled.at(9)))
    with pytest.raises(SpatError, match="lie beyond the 9 keys"):
        patterndsl.attention_reference(torch.randn(1, 4, 10, 4), *(torch.randn(1, 4, 9, 4),) * 2, compiled)
    with pytest.raises(SpatError, match="4 heads but q has 3"):
        patterndsl.attention_reference(*(torch.randn(1, 3, 8, 4),) * 3, compiled)
    with pytest.raises(SpatError, match="must divide"):
        q = torch.randn(1, 4, 8, 4)
        kv = torch.randn(1, 3, 8, 4)
        patterndsl.attention_reference(q, kv, kv, compiled)


def test_torch_target_file(tmp_path):
    from patterndsl.targets import get_target

    compiled = patterndsl.compile(MULTI, n=12)
    get_target("torch").emit(compiled, tmp_path / "out.pt")
    saved = torch.load(tmp_path / "out.pt")
    assert torch.equal(saved["masks"], compiled.masks())
    assert (saved["n"], saved["layers"], saved["heads"]) == (12, 2, 4)


def test_unknown_target_suggests():
    from patterndsl.targets import get_target

    with pytest.raises(SpatError) as info:
        get_target("trch")
    assert "did you mean 'torch'" in str(info.value)


def test_examples_compile_and_are_canonical():
    for path in sorted(EXAMPLES.glob("*.spat")):
        compiled = patterndsl.compile(path, n=64)
        assert compiled.masks().shape == (compiled.layers, compiled.heads, 64, 64)
        assert patterndsl.format(path) == path.read_text(), f"{path.name} is not in canonical form"


def test_dense_all_evaluates_identical_patterns_once(monkeypatch):
    import patterndsl.compiled as compiled_module

    calls = []
    real = compiled_module.dense_mask
    monkeypatch.setattr(compiled_module, "dense_mask", lambda *a, **k: calls.append(1) or real(*a, **k))
    compiled = patterndsl.compile(MULTI, n=8)
    masks = compiled.dense_all()
    assert len(calls) == 3  # layer 0 (all heads), layer 1 heads 0..2, layer 1 heads 2..4
    assert np.array_equal(masks[0, 0], masks[0, 3])


def test_the_readme_first_python_snippet_runs_as_written(tmp_path, monkeypatch):
    """The README's tour writes local.spat with a heredoc, then its first Python snippet
    uses it: both run as written (q, k, v defined)."""
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    spat = re.search(r"cat > local.spat <<'EOF'\n(.*?)\nEOF\n", readme, re.S).group(1)
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "local.spat").write_text(spat + "\n")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    compiled = namespace["compiled"]
    assert namespace["out"].shape == (1, 1, 4096, 64)
    assert torch.equal(namespace["mask"], compiled.mask())
