"""patterndsl.integrations.transformers: a tiny randomly initialised Llama (built from a
local config, nothing downloaded) attending with a pattern trains, and generates with
the KV cache token for token what the same model does with a dense-mask reference of
the same pattern (written here from `compiled.mask`, run with torch SDPA)."""
from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="the Hugging Face integration needs transformers: pip install -e '.[hf]'")

from transformers import AttentionInterface, AutoModelForCausalLM, LlamaConfig  # noqa: E402
from transformers.masking_utils import AttentionMaskInterface  # noqa: E402

import patterndsl  # noqa: E402
from patterndsl.integrations.transformers import register, registered  # noqa: E402

# Two layers (cycled over depth): sinks + a short window, then a stride; both causal,
# both different from plain causal attention beyond a few tokens.
PATTERN = """
layers {
    causal & (window(3, 0) | cols(0..2))
    causal & (stride(3) | window(1, 0))
}
"""
NAME = "patterndsl_test"
REFERENCE = "patterndsl_test_dense"


def dense_reference(compiled):
    """A mask function and an attention function implementing the integration's
    documented semantics directly: per batch row, the L leading padding slots are
    dropped, the pattern's dense mask at n = slots − L is read at rows q_offset − L …,
    other padded keys are masked, queries on padding give zeros."""

    def mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, attention_mask=None, **kwargs):
        assert kv_offset == 0
        return {"keep": None if attention_mask is None else attention_mask.bool(), "q_offset": int(q_offset)}

    def forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        b, h, m, d = query.shape
        q_offset = attention_mask["q_offset"]
        n = q_offset + m
        keep = attention_mask["keep"]
        keep = torch.ones(b, n, dtype=torch.bool) if keep is None else keep[:, :n].cpu()
        allowed = torch.zeros(b, m, n, dtype=torch.bool)
        for row in range(b):
            lead = int(keep[row].long().argmax()) if keep[row].any() else n
            if lead == n:
                continue
            full = compiled.at(n - lead).mask(layer=module.layer_idx)  # [n - lead, n - lead]
            for r in range(m):
                position = q_offset + r - lead
                if position >= 0:
                    allowed[row, r, lead:] = full[position] & keep[row, lead:]
        group = h // key.shape[1]
        key = key[:, :, :n].repeat_interleave(group, dim=1)
        value = value[:, :, :n].repeat_interleave(group, dim=1)
        allowed = allowed.to(query.device)
        bias = torch.zeros(b, 1, m, n, dtype=query.dtype, device=query.device)
        bias = bias.masked_fill(~allowed[:, None], -math.inf)
        empty = ~allowed.any(-1)  # [b, m]: rows with nothing to attend give zeros
        bias = bias.masked_fill(empty[:, None, :, None], 0.0)
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scaling)
        out = out.masked_fill(empty[:, None, :, None], 0.0)
        return out.transpose(1, 2).contiguous(), None

    return mask, forward


@pytest.fixture(scope="module")
def compiled():
    made = register(NAME, PATTERN)
    mask, forward = dense_reference(made)
    AttentionInterface.register(REFERENCE, forward)
    AttentionMaskInterface.register(REFERENCE, mask)
    return made


def config():
    return LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2)


def model_pair(implementation=NAME, seed=0):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config(), attn_implementation=implementation).eval()
    reference = AutoModelForCausalLM.from_config(config(), attn_implementation=REFERENCE).eval()
    reference.load_state_dict(model.state_dict())
    return model, reference


def test_register_returns_the_compiled_pattern_and_layers_cycle(compiled):
    assert registered(NAME) is compiled and compiled.layers == 2
    assert transformers.AttentionInterface._global_mapping[NAME].__self__.compiled is compiled
    assert NAME in AttentionMaskInterface._global_mapping
    # the reference really differs from causal attention (the test could fail)
    assert not torch.equal(compiled.at(12).mask(layer=1), torch.ones(12, 12, dtype=torch.bool).tril())


def test_register_refuses_bad_input():
    with pytest.raises(patterndsl.SpatError, match="taken"):
        register("sdpa", "causal")
    with pytest.raises(patterndsl.SpatError, match="pattern must be"):
        register("patterndsl_bad", 3)
    with pytest.raises(patterndsl.SpatError):
        register("patterndsl_bad", "causal &")  # a syntax error in the pattern


def test_tiny_llama_trains(compiled):
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(config(), attn_implementation=NAME)
    ids = torch.randint(3, 96, (2, 24))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(4):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


def test_forward_logits_match_the_dense_reference(compiled):
    model, reference = model_pair()
    ids = torch.randint(3, 96, (3, 20))
    keep = torch.ones(3, 20, dtype=torch.long)
    keep[0, :5] = 0     # left padding: positions shift
    keep[1, 15:] = 0    # right padding: a -inf key bias
    keep[2, 7:9] = 0    # a hole
    with torch.no_grad():
        for mask in (None, keep):
            got = model(input_ids=ids, attention_mask=mask).logits
            want = reference(input_ids=ids, attention_mask=mask).logits
            real = torch.ones(3, 20, dtype=torch.bool) if mask is None else mask.bool()
            torch.testing.assert_close(got[real], want[real], atol=1e-4, rtol=1e-4)
    # the pattern matters: plain causal attention gives other logits
    causal = AutoModelForCausalLM.from_config(config(), attn_implementation="sdpa").eval()
    causal.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(causal(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-3)


def test_gradients_match_the_dense_reference(compiled):
    model, reference = model_pair(seed=2)
    ids = torch.randint(3, 96, (2, 16))
    for m in (model, reference):
        m.train()
        m(input_ids=ids, labels=ids).loss.backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=name)


def test_generate_matches_the_dense_reference_token_for_token(compiled):
    model, reference = model_pair(seed=3)
    prompt = torch.randint(3, 96, (1, 7))
    options = dict(max_new_tokens=12, do_sample=False, min_new_tokens=12)
    got = model.generate(prompt, **options)
    want = reference.generate(prompt, **options)
    assert got.shape == (1, 19)
    assert torch.equal(got, want)
    # decoding with the cache equals running the whole sequence again at every step
    with torch.no_grad():
        full = model(input_ids=got[:, :-1]).logits[0, 6:].argmax(-1)
    assert torch.equal(full, got[0, 7:])


def test_generate_with_a_left_padded_batch(compiled):
    model, reference = model_pair(seed=4)
    short, long = torch.randint(3, 96, (1, 4)), torch.randint(3, 96, (1, 9))
    ids = torch.cat([torch.cat([torch.zeros(1, 5, dtype=torch.long), short], 1), long])
    mask = (torch.arange(9)[None] >= torch.tensor([[5], [0]])).long()
    options = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0)
    got = model.generate(ids, attention_mask=mask, **options)
    want = reference.generate(ids, attention_mask=mask, **options)
    assert torch.equal(got, want)
    # left padding shifts positions: the padded prompt continues as it does alone
    alone = model.generate(short, **options)
    assert torch.equal(got[0, 5:], alone[0])


def test_from_pretrained_of_a_locally_saved_model(compiled, tmp_path):
    model, _ = model_pair(seed=5)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=NAME).eval()
    assert loaded.config._attn_implementation == NAME
    ids = torch.randint(3, 96, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_unsupported_settings_are_refused(compiled):
    cfg = config()
    cfg.attention_dropout = 0.1
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=NAME).train()
    with pytest.raises(patterndsl.SpatError, match="dropout"):
        model(input_ids=torch.randint(3, 96, (1, 8)))


def test_the_readme_example_runs_as_written():
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Hugging Face models"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    out = scope["out"]
    assert out.shape == (2, 20)
    # row 0 continues as its 5-token prompt alone does
    alone = scope["model"].generate(scope["prompts"][:1, 3:], max_new_tokens=12, do_sample=False)
    assert torch.equal(out[0, 3:], alone[0])


def test_block_size_does_not_change_the_result(compiled):
    register("patterndsl_test_blocks", PATTERN, block_size=32)
    model, _ = model_pair(seed=6)
    other = AutoModelForCausalLM.from_config(config(), attn_implementation="patterndsl_test_blocks").eval()
    other.load_state_dict(model.state_dict())
    ids = torch.randint(3, 96, (1, 40))
    with torch.no_grad():
        torch.testing.assert_close(other(input_ids=ids).logits, model(input_ids=ids).logits)
    with pytest.raises(patterndsl.SpatError):
        register("patterndsl_test_blocks", PATTERN, block_size=24)  # not a power of two


def test_the_triton_kernels_in_the_interpreter_match_the_dense_reference(compiled):
    """The path a CUDA model takes (backend="auto" there), run by Triton's interpreter."""
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("with CUDA, the GPU run of the other tests takes this path")
    from patterndsl.kernels import interpreting

    if not interpreting():
        pytest.skip("the Triton interpreter is off (TRITON_INTERPRET is not 1)")
    register("patterndsl_test_triton", PATTERN, backend="triton")
    model, reference = model_pair(seed=7)
    kernels = AutoModelForCausalLM.from_config(config(), attn_implementation="patterndsl_test_triton").eval()
    kernels.load_state_dict(model.state_dict())
    ids = torch.randint(3, 96, (2, 12))
    keep = torch.ones(2, 12, dtype=torch.long)
    keep[0, :3] = 0
    keep[1, 10:] = 0
    with torch.no_grad():
        got = kernels(input_ids=ids, attention_mask=keep).logits
        want = reference(input_ids=ids, attention_mask=keep).logits
    torch.testing.assert_close(got[keep.bool()], want[keep.bool()], atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the Triton kernels)")
def test_on_cuda_generate_matches_the_dense_reference(compiled):
    model, reference = model_pair(seed=8)
    model, reference = model.cuda(), reference.cuda()
    ids = torch.randint(3, 96, (2, 9), device="cuda")
    mask = torch.ones(2, 9, dtype=torch.long, device="cuda")
    mask[0, :4] = 0
    options = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).logits
        want = reference(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], atol=2e-3, rtol=2e-3)  # TF32 on GPUs
    assert torch.equal(model.generate(ids, attention_mask=mask, **options),
                       reference.generate(ids, attention_mask=mask, **options))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_import_patterndsl_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, patterndsl, patterndsl.integrations; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_generate_with_a_static_cache_equals_the_dynamic_cache(compiled):
    """A static cache: slots past the tokens seen are not attended, and the mask that
    generate() builds ahead of the forward pass comes back through the mask function."""
    model, _ = model_pair(seed=9)
    ids = torch.randint(3, 96, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[0, :2] = 0
    options = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0, attention_mask=mask)
    assert torch.equal(model.generate(ids, cache_implementation="static", **options),
                       model.generate(ids, **options))
