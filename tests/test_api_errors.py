"""SpatError is the only exception the public Python API raises for bad input (issue 10).

Every public function (patterndsl.__all__ and the documented analysis, layout and verify
functions) is called with hostile values of each class — bad sources (text, files, devices,
non-strings), bad n, bad layer/head indices, bad block sizes, non-CompiledPattern arguments —
by hypothesis and by hand. Each call either returns or raises SpatError; anything else fails.
"""
from __future__ import annotations

import os
import pathlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import SpatError
from patterndsl.analysis.check import check
from patterndsl.analysis.conditions import check_conditions
from patterndsl.analysis.counts import connection_counts
from patterndsl.analysis.growth import bounds, growth, growth_formula
from patterndsl.layout import describe_layouts
from patterndsl.verify import verify_certificate, verify_report

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api_errors")
    made = {
        "misspelt.spat": "windw(4)\n",
        "recursive.spat": "def a(x) = b(x)\ndef b(x) = a(x)\na(1)\n",
        "empty.spat": "",
        "unknown.spat": "window(w)\n",
        "int_for_pattern.spat": "let w = 3\nw | window(1)\n",
    }
    for name, text in made.items():
        (folder / name).write_text(text)
    (folder / "binary.spat").write_bytes(b"\xff\xfe\x00\x01")
    (folder / "huge.spat").write_bytes(b"window(1)\n" * 40_000)  # over the 256 KiB limit
    paths = [folder / name for name in made] + [folder / "binary.spat", folder / "huge.spat",
                                                folder / "missing.spat", folder]
    if os.path.exists("/dev/zero"):
        paths.append(pathlib.Path("/dev/zero"))
    return paths


BAD_TEXTS = ["windw(4)", "window(", "", "   ", "let x = 3", "window(x)", "window(all)", "window(1.5)",
             "random(-1)", "stride(0)", "\x00", "window(1) |", "def a(x) = b(x)\ndef b(x) = a(x)\na(1)",
             "heads { 0..2: window(1) }", "block 100\nwindow(1)", "block 0\nwindow(1)", "window(2**70)",
             "global(n..n+1)", "layers {\n}"]
NOT_SOURCES = [None, 3, 1.5, b"window(1)", ["window(1)"], {"a": 1}, object()]


def source_functions():
    return {
        "compile": lambda s: patterndsl.compile(s, 16),
        "parse": patterndsl.parse,
        "format": patterndsl.format,
        "growth_formula": growth_formula,
        "bounds": bounds,
        "verify_report": lambda s: verify_report(s, {}),
        "verify_certificate": lambda s: verify_certificate(s, {}),
    }


def returns_or_spat_error(call):
    try:
        call()
    except SpatError as error:
        assert str(error)  # renders
    # any other exception propagates and fails the test


@SETTINGS
@given(st.sampled_from(sorted(source_functions())),
       st.one_of(st.sampled_from(BAD_TEXTS), st.sampled_from(NOT_SOURCES), st.text(max_size=30)))
def test_bad_sources_raise_spat_error(name, source):
    returns_or_spat_error(lambda: source_functions()[name](source))


def test_bad_files_raise_spat_error(files):
    unreadable = {"binary.spat", "huge.spat", "missing.spat", "zero"}
    semantic = {"compile", "growth_formula", "bounds"}  # parse and format read syntax only
    for path in files:
        for name, function in source_functions().items():
            # verify_* may report a bad certificate before reading the source: either outcome is clean
            if name in semantic or not name.startswith("verify") and (path.name in unreadable or path.is_dir()):
                with pytest.raises(SpatError):
                    function(path)
            else:
                returns_or_spat_error(lambda: function(path))
            if path.suffix == ".spat" and path.exists() and path.stat().st_size < 1000:
                returns_or_spat_error(lambda: function(path.read_text(errors="replace")))


def test_growth_formula_of_a_bad_file_names_the_place(files):
    misspelt = next(p for p in files if p.name == "misspelt.spat")
    with pytest.raises(SpatError) as caught:
        growth_formula(misspelt)
    assert (caught.value.line, caught.value.column) == (1, 1) and "windw" in str(caught.value)
    recursive = next(p for p in files if p.name == "recursive.spat")
    with pytest.raises(SpatError, match="recursi"):
        growth_formula(recursive)


BAD_N = [0, -1, 2 ** 41, True, False, 1.5, "8", None, 2 ** 64, -2 ** 70, float("nan"), float("inf"), [8]]


@SETTINGS
@given(st.one_of(st.sampled_from(BAD_N), st.integers(max_value=0), st.integers(min_value=2 ** 40 + 1),
                 st.floats(), st.text(max_size=5)))
def test_bad_n_raises_spat_error(n):
    with pytest.raises(SpatError):
        patterndsl.compile("window(2) | global(0)", n)
    with pytest.raises(SpatError):
        patterndsl.compile("window(2)", 16).at(n)


@pytest.fixture(scope="module")
def layered():
    return patterndsl.compile("layers {\n window(1)\n heads { 0..2: window(2)\n 2..3: window(3) }\n}", 64)


# layers cycle (layer mod p, as documented), so only negative and non-integer layers are bad;
# a head must be below the head count
BAD_LAYERS = [-1, True, 1.5, "0", None, -2 ** 70, [0]]
BAD_HEADS = BAD_LAYERS + [3, 5, 2 ** 70]


@SETTINGS
@given(st.sampled_from(["pattern", "dense", "layout", "mask", "additive_mask"]),
       st.one_of(st.sampled_from(BAD_HEADS), st.integers(min_value=3), st.integers(max_value=-1)),
       st.booleans())
def test_bad_layer_and_head_indices_raise_spat_error(layered, method, index, as_head):
    if not as_head and index not in BAD_LAYERS and isinstance(index, int) and index >= 0:
        assert getattr(layered, method)(index) is not None  # layer mod p
        return
    args = (0, index) if as_head else (index,)
    with pytest.raises(SpatError):
        getattr(layered, method)(*args)


@pytest.mark.parametrize("index", BAD_LAYERS, ids=repr)
def test_bad_layer_of_layouts_and_block_mask(layered, index):
    with pytest.raises(SpatError):
        layered.layouts(index)
    with pytest.raises(SpatError):
        layered.block_mask(layer=index)


BAD_BLOCK_SIZES = [0, -1, 7, 100, 2 ** 40 + 1, True, 1.5, "64", (16,), (16, 16, 16), (0, 16), [16, "a"], (True, 16)]


@pytest.mark.parametrize("size", BAD_BLOCK_SIZES, ids=repr)
def test_bad_block_sizes_raise_spat_error(layered, size):
    for call in (lambda: layered.layout(block_size=size), lambda: layered.layouts(0, size),
                 lambda: layered.block_mask(block_size=size), lambda: describe_layouts(layered, size)):
        with pytest.raises(SpatError):
            call()


@pytest.mark.parametrize("value", [None, 3, "window(1)", pathlib.Path("x.spat"), {}], ids=repr)
def test_the_analyses_want_a_compiled_pattern(value):
    for function in (growth, check, check_conditions, connection_counts, describe_layouts):
        with pytest.raises(SpatError, match="expects a CompiledPattern"):
            function(value)
    with pytest.raises(SpatError, match="compile it first"):
        growth("window(1)")


@pytest.mark.parametrize("cert", [None, 3, [], {"a": 1}, "x", {"conditions": 3}, {"n": "x"}], ids=repr)
def test_bad_certificates_raise_spat_error_or_report(cert):
    returns_or_spat_error(lambda: verify_report("window(2) | global(0)", cert))
    returns_or_spat_error(lambda: verify_certificate("window(2) | global(0)", cert))


@pytest.mark.parametrize("keywords", [dict(simplify="x"), dict(memory_budget="2G"), dict(memory_budget=True),
                                      dict(memory_budget=-1), dict(memory_budget="lots")], ids=repr)
def test_compile_keywords(keywords):
    returns_or_spat_error(lambda: patterndsl.compile("window(2)", 16, **keywords))


def _attention_cases():
    q = torch.randn(1, 2, 16, 8)
    yield "numpy q", dict(q=q.numpy())
    yield "3-d q", dict(q=q[0])
    yield "int", dict(q=q.int(), k=q.int(), v=q.int())
    yield "bool", dict(q=q.bool(), k=q.bool(), v=q.bool())
    yield "head_dim", dict(k=torch.randn(1, 2, 16, 4))
    yield "batch", dict(k=torch.randn(2, 2, 16, 8), v=torch.randn(2, 2, 16, 8))
    yield "kv heads", dict(k=torch.randn(1, 3, 16, 8), v=torch.randn(1, 3, 16, 8))
    yield "compiled None", dict(compiled=None)
    yield "compiled str", dict(compiled="window(1)")
    for layer in (-1, True, 1.5):  # layer 1 of one layer is layer 0 (layers cycle)
        yield f"layer {layer!r}", dict(layer=layer)
    yield "scale str", dict(scale="x")
    yield "scale tensor", dict(scale=torch.ones(2))
    yield "key_bias shape", dict(key_bias=torch.ones(3))
    yield "key_bias str", dict(key_bias="x")


@pytest.mark.parametrize("function", ["attention", "attention_reference"])
def test_attention_arguments(function):
    compiled = patterndsl.compile("window(2) | global(0)", 16)
    q = torch.randn(1, 2, 16, 8)
    cases = list(_attention_cases())
    if function == "attention":
        cases += [("block_size 0", dict(block_size=0)), ("block_size (16,)", dict(block_size=(16,))),
                  ("backend x", dict(backend="x"))]
    for name, change in cases:
        arguments = dict(q=q, k=q, v=q, compiled=compiled)
        arguments.update(change)
        with pytest.raises(SpatError):
            getattr(patterndsl, function)(**arguments)


@pytest.mark.parametrize("arguments", [("windw(4)", 16, 2), ("window(1)", 0, 2), ("window(1)", 16, True),
                                       ("window(1)", 16, 3), (None, 16, 2), (3, 16, 2),
                                       ("window(1)", 16, 2, 3)], ids=repr)
def test_sparse_attention_arguments(arguments):
    with pytest.raises(SpatError):
        patterndsl.SparseAttention(*arguments)


def test_one_row_of_a_transposed_random_is_not_a_square():
    # transpose(random) evaluated one query row at a time (as `show` does) used to build the
    # operand's n × n booleans: MemoryError (exit 70) at n = 2^26
    import numpy as np

    n = 1 << 21
    pattern = patterndsl.compile("transpose(random(2, seed=1)) | window(1)", n).pattern()
    row = pattern.predicate(np.array([[5]]), np.arange(n)[None, :], n)
    assert row.shape == (1, n) and row[0, 4:7].all()
    small = patterndsl.compile("transpose(random(3, seed=2))", 50)
    dense = small.dense()[0] if small.dense().ndim == 3 else small.dense()
    forward = patterndsl.compile("random(3, seed=2)", 50).dense()
    forward = forward[0] if forward.ndim == 3 else forward
    assert np.array_equal(dense, forward.T)
