"""One Triton kernel source for every n, q length and q_offset (issue 14 item 3, issue 10).

The kernels take n, the query length m and q_offset as run-time arguments, and the
predicates' constants that depend on n as a table (patterndsl/kernels/generate.py), so a
pattern's module is generated and imported once and serves every n; only the tables (a
Plan) are per n. Checked against the dense reference at each n (query rows q_offset.. are
rows of the full computation at n = n_kv), with the bounded module cache and the standalone
module's interpreter lock and shared input checks. Kept small: Triton's interpreter is slow.
"""
from __future__ import annotations

import importlib.util
import linecache
import sys
import threading

import pytest

triton = pytest.importorskip("triton", reason="the Triton kernels need triton installed (pip install triton)")
torch = pytest.importorskip("torch")

import patterndsl  # noqa: E402
from patterndsl.errors import SpatError  # noqa: E402

N_DEPENDENT = "stride(isqrt(n)) | global(n - 1) | window(cdiv(n, 8), 0) | random(2, seed=1)"


@pytest.fixture(autouse=True, scope="module")
def interpreter():
    from patterndsl.kernels import interpreter_ready, interpreting

    if not interpreting():
        pytest.skip("these tests run the kernels in Triton's interpreter (TRITON_INTERPRET=1)")
    assert interpreter_ready(), "triton was imported before TRITON_INTERPRET=1 was set"


def inputs(n, m=None, heads=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, heads, n if m is None else m, 16, generator=g)
    k, v = (torch.randn(1, heads, n, 16, generator=g) for _ in range(2))
    return q, k, v


def rows_reference(q, k, v, compiled, q_offset):
    """The dense reference's rows q_offset .. q_offset + m - 1 at n = n_kv, q's rows put in place
    in a full-length q (the other rows are zeros: rows are independent)."""
    full = torch.zeros(q.shape[0], q.shape[1], k.shape[2], q.shape[3], dtype=q.dtype)
    full = torch.cat([full[:, :, :q_offset], q, full[:, :, q_offset + q.shape[2]:]], dim=2)
    out = patterndsl.attention_reference(full, k, v, compiled.at(k.shape[2]))
    return out[:, :, q_offset:q_offset + q.shape[2]]


def test_the_kernels_source_is_the_same_at_every_n():
    from patterndsl.kernels.generate import module_parts

    compiled = patterndsl.compile(N_DEPENDENT, 64)
    parts = [module_parts(compiled.at(n), 16) for n in (33, 64, 100, 257, 1000)]
    assert all(p.parameterized for p in parts)
    assert len({p.key for p in parts}) == 1  # one kernel source ...
    assert len({p.plan["tables"].tobytes() for p in parts}) == len(parts)  # ... and the tables of each n
    assert "stride(8)" in parts[1].text() and "stride(10)" in parts[2].text()  # PATTERNS: data of its n


def test_an_n_the_template_does_not_fit_gets_source_of_its_own():
    from patterndsl.kernels import triton_attention
    from patterndsl.kernels.generate import module_parts

    # min(n, 50) is 50 at the probe lengths (a constant of the template), 32 at n = 32
    compiled = patterndsl.compile("stride(min(n, 50)) | window(1)", 32)
    assert not module_parts(compiled, 16).parameterized and module_parts(compiled.at(64), 16).parameterized
    assert module_parts(compiled, 16).key != module_parts(compiled.at(64), 16).key
    assert module_parts(compiled.at(64), 16).key == module_parts(compiled.at(200), 16).key
    q, k, v = inputs(32, seed=5)
    out = triton_attention(q, k, v, compiled, block_size=16)
    assert (out - patterndsl.attention_reference(q, k, v, compiled)).abs().max().item() < 1e-5


def test_one_module_serves_many_n():
    from patterndsl.kernels import _modules, kernel_plan, triton_attention

    compiled = patterndsl.compile(N_DEPENDENT, 64)
    before = set(_modules)
    modules = set()
    for n in (40, 97):
        q, k, v = inputs(n, seed=n)
        out = triton_attention(q, k, v, compiled.at(n), block_size=16)
        want = patterndsl.attention_reference(q, k, v, compiled.at(n))
        assert (out - want).abs().max().item() < 1e-5, n
        modules.add(kernel_plan(compiled.at(n), 16)[0])
    assert len(modules) == 1 and len(set(_modules) - before) == 1
    # k, v of another length than compiled.n: compiled.at(n_kv), the same kernels
    q, k, v = inputs(80, seed=3)
    out = triton_attention(q, k, v, compiled, block_size=16)
    assert (out - patterndsl.attention_reference(q, k, v, compiled.at(80))).abs().max().item() < 1e-5
    assert len(set(_modules) - before) == 1


@pytest.mark.parametrize("source, n, m, q_offset", [
    ("window(3, 0) | global(0..2)", 50, 7, 20),   # a chunk in the middle (not block-aligned)
    ("causal & (stride(5) | window(2, 0))", 37, 1, 36),   # one decoding step: the last row
])
def test_q_offset_gives_rows_of_the_full_computation(source, n, m, q_offset):
    from patterndsl.kernels import triton_attention

    compiled = patterndsl.compile(source, n)
    q, k, v = inputs(n, m, heads=2, seed=m)
    d_out = torch.randn(1, 2, m, 16, generator=torch.Generator().manual_seed(9))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = triton_attention(*leaves, compiled, block_size=16, q_offset=q_offset)
    grads = torch.autograd.grad(out, leaves, d_out)
    ref_leaves = [t.double().requires_grad_() for t in (q, k, v)]
    want = rows_reference(*ref_leaves, compiled, q_offset)
    want_grads = torch.autograd.grad(want, ref_leaves, d_out.double())
    assert (out.double() - want).abs().max().item() < 1e-5
    for mine, exact in zip(grads, want_grads):
        assert (mine.double() - exact).abs().max().item() < 1e-5


def test_decoding_step_through_the_api():
    compiled = patterndsl.compile("causal & window(4, 0) | cols(0)", 16)
    for t in (5, 16):  # n_kv = t + 1 keys, the query at position t
        q, k, v = inputs(t + 1, 1, seed=t)
        out = patterndsl.attention(q, k, v, compiled, backend="triton", block_size=16, q_offset=t)
        want = patterndsl.attention_reference(torch.cat([torch.zeros(1, 1, t, 16), q], 2), k, v,
                                              compiled.at(t + 1))[:, :, t:]
        assert (out - want).abs().max().item() < 1e-5


def test_rows_outside_the_keys_are_refused():
    from patterndsl.kernels import triton_attention

    compiled = patterndsl.compile("window(2)", 32)
    q, k, v = inputs(32, 4)
    for offset in (29, -1, 1.5, True):
        with pytest.raises(SpatError, match="q_offset"):
            triton_attention(q, k, v, compiled, block_size=16, q_offset=offset)
    with pytest.raises(SpatError, match="segment"):
        triton_attention(q, k, v, compiled, block_size=16, segments=torch.zeros(1, 32, dtype=torch.int64))


def test_the_module_cache_is_bounded(monkeypatch):
    from patterndsl import kernels

    monkeypatch.setattr(kernels, "MAX_MODULES", 1)
    first = kernels.kernel_module(patterndsl.compile("window(1) | cols(3)", 32), 16)
    assert sys.modules[first.__name__] is first
    linecache.getlines(first.__file__)
    assert first.__file__ in linecache.cache
    second = kernels.kernel_module(patterndsl.compile("window(2) | cols(5)", 32), 16)
    assert second is not first and len(kernels._modules) == 1
    assert first.__name__ not in sys.modules and first.__file__ not in linecache.cache
    assert sys.modules[second.__name__] is second
    # the evicted pattern's module is imported again when it is used again
    again = kernels.kernel_module(patterndsl.compile("window(1) | cols(3)", 32), 16)
    assert again is not first and sys.modules[again.__name__] is again


def load_standalone(tmp_path, compiled):
    from patterndsl.kernels import module_source

    text = module_source(compiled, 16)
    path = tmp_path / "standalone_kernel.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("standalone_kernel_tri14", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return text, module


def test_standalone_module_shares_the_input_checks_and_serializes(tmp_path):
    from patterndsl.inputs import qkv_problem

    compiled = patterndsl.compile("window(2, 0) | cols(0)", 40)
    text, module = load_standalone(tmp_path, compiled)
    assert "def qkv_problem(" in text and "def layer_problem(" in text and "patterndsl.inputs" not in text
    try:
        q, k, v = inputs(40)
        for bad in ((q.int(), k.int(), v.int()), (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)),
                    (q, k[:, :, :-1], v[:, :, :-1])):
            problem = qkv_problem(*bad, 40, 1, None, max_head_dim=256)
            with pytest.raises(ValueError) as error:
                module.attention(*bad)
            assert str(error.value).startswith(problem[0])
        with pytest.raises(ValueError, match="layer must be a non-negative integer"):
            module.attention(q, k, v, layer=-1)

        # Every call into the kernels holds the interpreter lock (Triton's interpreter is not
        # thread-safe); threads get the serial results.
        forward, held = module._forward, []

        def checked(*args, **kwargs):
            held.append(module._INTERPRETER_LOCK._is_owned())
            return forward(*args, **kwargs)

        module._forward = checked
        want = patterndsl.attention_reference(q, k, v, compiled)
        results = [None] * 3

        def run(i):
            results[i] = module.attention(q, k, v)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert held == [True] * 3
        for out in results:
            assert (out - want).abs().max().item() < 1e-5
        # q_offset in the standalone module: rows of its n
        out = module.attention(q[:, :, 30:33], k, v, q_offset=30)
        assert (out - want[:, :, 30:33]).abs().max().item() < 1e-5
    finally:
        sys.modules.pop("standalone_kernel_tri14", None)
