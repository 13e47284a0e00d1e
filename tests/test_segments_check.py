"""`patterndsl check` on segment patterns: the diagnostics without --n equal those with it
(the symbolic growth domain walks the same refusals), and the analyzer's claims for every
segmentation against brute force over random segmentations at small n."""
from __future__ import annotations

import pytest

from patterndsl.cli import main

REFUSED = ("transpose(segment_start(2)) | causal\n",
           "segment & transpose(transpose(segment_start(1)) | causal)\n",
           "x = segment_start(3)\ntranspose(x) & causal\n",
           "blocks(2) { segment }\n",
           "grid(4, 4) { segment & window2d(1, 1) }\n")


@pytest.mark.parametrize("text", REFUSED)
def test_check_without_n_gives_the_diagnostic(tmp_path, capsys, text):
    path = tmp_path / "p.spat"
    path.write_text(text)
    outputs = []
    for extra in ([], ["--n", "64"]):
        assert main(["check", str(path), *extra]) == 1
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
    assert outputs[0] == outputs[1]
    assert f"{path}:" in outputs[0] and "^" in outputs[0]


import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import patterndsl  # noqa: E402
from patterndsl.analysis.check import check as run_check  # noqa: E402
from patterndsl.analysis.segment_conditions import per_segmentation  # noqa: E402
from patterndsl.verify import verify_report  # noqa: E402

from test_segments import brute_mask  # noqa: E402

CLAIMED = ("segment & causal", "segment & window(1)", "segment_start(1)", "segment & ~causal",
           "segment & (causal | segment_start(1))", "segment & (window(1) - segment_start(1))",
           "(segment & window(1, 0)) | segment_start(2)", "causal - segment", "segment & (self | cols(0))",
           "segment & window(2) & ~segment_start(1)", "segment | self")


def packed(n, data):
    """Random packed documents (one-token and long among them) or non-contiguous ids."""
    if data.draw(st.booleans()):
        lengths, left = [], n
        while left:
            lengths.append(min(left, data.draw(st.sampled_from((1, 1, 2, 3, 5, n)))))
            left -= lengths[-1]
        return np.repeat(np.arange(len(lengths)), lengths)
    return np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))


def documents(ids):
    """The runs of equal ids: (start, length)."""
    starts = [0] + [p for p in range(1, ids.size) if ids[p] != ids[p - 1]]
    return [(a, (starts + [ids.size])[k + 1] - a) for k, a in enumerate(starts)]


def reach(union, start):
    seen, frontier = {start}, [start]
    while frontier:
        frontier = [j for i in frontier for j in np.flatnonzero(union[i]) if j not in seen]
        seen.update(frontier)
    return seen


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(CLAIMED), st.integers(1, 7), st.data())
def test_claims_for_every_segmentation_against_brute_force(source, n, data):
    pattern = patterndsl.compile(source, n).pattern()
    (claims,) = per_segmentation(patterndsl.compile(source, n))
    c1, c2, c3 = claims["self_loops"], claims["hamiltonian_path"], claims["finite_depth"]
    if c1["holds"] is False:  # its witness: a document starting at i − r
        _, i, r = c1["missing"]
        ids = np.arange(n) + 1
        ids[i - r:i + 1] = 0
        assert not brute_mask(pattern, ids)[i, i]
    for _ in range(4):
        ids = packed(n, data)
        mask = brute_mask(pattern, ids)
        if c1["holds"]:
            assert mask.diagonal().all(), ids
        if len(np.unique(ids)) == len(documents(ids)):  # packed: per-document claims apply
            for a, length in documents(ids):
                inner = mask[a:a + length, a:a + length]
                if c2["holds"]:
                    steps = np.arange(1, length)
                    order = (inner[steps, steps - 1] if c2["witness"] == "identity" else inner[steps - 1, steps])
                    assert order.all(), ids
                if c3["holds"]:
                    assert all(len(reach(inner, i)) == length for i in range(length)), ids
    if c3["holds"] is False:  # its witness: the document alone
        (a, length), (i, j) = c3["document"], c3["unreachable"]
        ids = np.arange(n) + 1
        ids[a:a + length] = 0
        mask = brute_mask(pattern, ids)[a:a + length, a:a + length]
        assert j - a not in reach(mask, i - a)


def test_hand_written_claims():
    (causal,) = per_segmentation(patterndsl.compile("segment & causal", 8))
    assert causal["self_loops"]["holds"] is True
    assert causal["hamiltonian_path"]["holds"] is True and causal["hamiltonian_path"]["witness"] == "identity"
    assert causal["finite_depth"]["holds"] is False
    (sinks,) = per_segmentation(patterndsl.compile("segment_start(2)", 8))
    assert sinks["self_loops"]["holds"] is False and sinks["self_loops"]["missing"][2] == 2  # rank 2: not a sink
    (window,) = per_segmentation(patterndsl.compile("segment & window(1)", 8))
    assert all(window[name]["holds"] is True for name in ("self_loops", "hamiltonian_path", "finite_depth"))
    (across,) = per_segmentation(patterndsl.compile("segment | causal", 8))
    assert across["self_loops"]["holds"] is True and across["finite_depth"]["holds"] is None


@pytest.mark.parametrize("source", ["segment & window(1)", "segment & causal", "segment_start(1)"])
def test_verify_rechecks_the_segment_claims(source):
    compiled = patterndsl.compile(source, 10)
    _, cert = run_check(compiled)
    assert "segments" in cert
    assert verify_report(compiled, cert) == {"failures": [], "unchecked": []}
    (claims,) = cert["segments"]["every_segmentation"]
    tampered = []
    flipped = dict(claims["self_loops"])
    if flipped["holds"]:
        flipped.update(holds=False, missing=[0, 3, 0])
    else:
        flipped = {"holds": True}
    tampered.append(("self_loops", flipped))
    tampered.append(("finite_depth", {"holds": not claims["finite_depth"]["holds"], "document": [0, 10],
                                      "unreachable": [0, 9]}))
    if source != "segment & window(1)":  # (there both orders hold)
        tampered.append(("hamiltonian_path", {"holds": True, "witness": "reversed"}))
    for name, claim in tampered:
        bad = {**cert, "segments": {"every_segmentation": [{**claims, name: claim}]}}
        report = verify_report(compiled, bad)
        assert report["failures"] and report["failures"][0].startswith(f"segments: head 0: {name}"), (name, report)


# ---- every document, at any n (patterndsl/analysis/segment_conditions.py) ------------------


from patterndsl.analysis.segment_conditions import document_local  # noqa: E402
from patterndsl.segments import one_document  # noqa: E402

LOCAL = ("causal", "self", "all", "none", "window(1)", "window(2, 0)", "window(0, 1)", "window(1, 2)",
         "window(3, -1)", "dilated(1, 2)", "stride(2)", "stride(3, offset=1)", "logsparse")
OTHER = ("chunk(3)", "cols(0)", "global(1)", "summary(3, 1)", "rows(2)")
SINKS = ("segment_start(1)", "segment_start(2)", "segment_start(3)")


@st.composite
def formulas(draw, atoms, depth=2):
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(atoms))
    op = draw(st.sampled_from(("&", "|", "-", "~")))
    left = draw(formulas(atoms, depth - 1))
    if op == "~":
        return f"~({left})"
    return f"({left} {op} {draw(formulas(atoms, depth - 1))})"


@st.composite
def segment_files(draw, local_only=False):
    """Files of one or two layers whose pairs share a segment: `segment & X` or
    `segment_start(k) | …` forms, X from document-local primitives (and others)."""
    atoms = LOCAL + SINKS + (() if local_only else OTHER)

    def layer():
        body = draw(formulas(atoms))
        return draw(st.sampled_from((f"segment & {body}", f"segment & {body}", f"segment & ({body} | segment_start(1))",
                                     f"segment & ({body} | window(1))", f"segment & {body} | segment_start(2)",
                                     f"segment & ({body} | segment_start(2) & window(1, 0))",
                                     f"segment & ({body} | segment_start(3) & window(0, 1))")))

    if draw(st.booleans()):
        return layer() + "\n"
    return "layers {\n    " + layer() + "\n    " + layer() + "\n}\n"


def every_document(compiled):
    """Per document [a, a + L) of every packed segmentation (each other token alone), from the
    primitives' plain meanings: (a, L, the layers' L × L masks)."""
    n = compiled.n
    stack = [compiled.patterns[k][0] for k in range(compiled.layers)]
    for length in range(1, n + 1):
        for a in range(n - length + 1):
            ids = one_document(n, a, length)
            yield a, length, [brute_mask(p, ids)[a:a + length, a:a + length] for p in stack]


def has_path(union):
    size = union.shape[0]
    ends = {(1 << v, v) for v in range(size)}  # (visited set, last token)
    for _ in range(size - 1):
        ends = {(mask | 1 << v, v) for mask, last in ends for v in range(size)
                if not mask >> v & 1 and union[v, last]}
    return bool(ends)


def depth(masks):
    """The least s with S^s = J inside one document (layers cycled), or None (infinite)."""
    size, p = masks[0].shape[0], len(masks)
    S, seen = masks[0].copy(), set()
    for t in range(1, p * size * size + 2):
        if S.all():
            return t
        key = (t % p, S.tobytes())
        if key in seen:
            return None
        seen.add(key)
        S = (masks[t % p].astype(int) @ S.astype(int)) > 0
    return None


def strongly_connected(union):
    return all(len(reach(union, i)) == union.shape[0] for i in range(union.shape[0]))


@settings(max_examples=120, deadline=None)
@given(segment_files(), st.integers(1, 7))
def test_every_document_verdicts_against_brute_force(source, n):
    compiled = patterndsl.compile(source, n)
    if compiled.heads != 1:
        return
    (claims,) = per_segmentation(compiled)
    c1, c2, c3 = claims["self_loops"], claims["hamiltonian_path"], claims["finite_depth"]
    docs = list(every_document(compiled))
    unions = {(a, length): np.logical_or.reduce(masks) for a, length, masks in docs}
    if c2["holds"] is True:
        for (a, length), union in unions.items():
            steps = np.arange(1, length)
            assert (union[steps, steps - 1] if c2["witness"] == "identity" else union[steps - 1, steps]).all()
    elif c2["holds"] is False:
        assert not has_path(unions[tuple(c2["document"])])
    else:  # undecided only where neither order holds in every document and every pair document has a path
        assert all(has_path(u) for (a, length), u in unions.items() if length == 2)
    if c3["holds"] is True:
        assert all(strongly_connected(u) for u in unions.values())
        assert all(np.diagonal(m).all() for _, _, masks in docs for m in masks)
        if c3.get("s") is not None:
            assert c3["s"] == max(depth(masks) for _, _, masks in docs)
    elif c3["holds"] is False:
        (a, length), (i, j) = c3["document"], c3["unreachable"]
        assert j - a not in reach(unions[a, length], i - a)
    else:  # undecided only without C1 (with the brute force below DOCUMENT_N, n ≤ 7 here)
        assert c1["holds"] is not True
        assert all(strongly_connected(u) for u in unions.values())


@settings(max_examples=40, deadline=None)
@given(segment_files(local_only=True), st.integers(2, 9), st.data())
def test_a_document_is_a_prefix_of_the_one_document_pattern(source, n, data):
    """What the `prefixes` evidence rests on: for a document-local pattern, the pairs of any
    document [a, a + L) are the top-left L × L block of the pattern with every id equal."""
    compiled = patterndsl.compile(source, n)
    stack = [compiled.patterns[k][0] for k in range(compiled.layers)]
    assert all(document_local(p) for p in stack)
    ids = packed(n, data)
    for p in stack:
        whole = brute_mask(p, np.zeros(n, dtype=np.int64))
        mask = brute_mask(p, ids)
        for a, length in documents(ids):
            if len(np.unique(ids)) == len(documents(ids)):
                assert np.array_equal(mask[a:a + length, a:a + length], whole[:length, :length]), (source, ids)


@settings(max_examples=25, deadline=None)
@given(segment_files(), st.integers(1, 9))
def test_verify_accepts_the_every_document_claims(source, n):
    compiled = patterndsl.compile(source, n)
    _, cert = run_check(compiled)
    # (every claim: the one-document ones read `segment`, `segment_start` as key intervals too)
    assert verify_report(compiled, cert) == {"failures": [], "unchecked": []}, source


# (source, C2, C3, s) for every segmentation at n = 4096: the verdicts for common packed patterns
TABLE = [("segment & causal", "identity", False, None),
         ("segment & window(3)", "identity", True, 1365),  # ⌈(n − 1)/3⌉: the longest document
         ("segment & window(1, 0)", "identity", False, None),
         ("segment & window(0, 1)", "reversed", False, None),
         ("segment & (causal | segment_start(2))", "identity", False, None),  # [0, 3): token 2 never reaches 0
         ("segment & (causal | window(0, 1))", "identity", True, 4095),  # token 0 moves one step a layer
         ("segment & (window(1) | segment_start(4))", "identity", True, None),
         ("segment & (window(2, 1) | segment_start(1))", "identity", True, None),
         ("segment & chunk(64)", False, False, None),  # [63, 65): two chunks
         ("segment & (chunk(64) | window(1))", "identity", True, None),
         ("segment & logsparse", "identity", True, None),
         ("segment & stride(2)", None, False, None),  # neither neighbour: no path in [0, 2)
         ("layers {\n  segment & window(1, 0)\n  segment & window(0, 1)\n}", "identity", True, 8190),  # a step each way every other layer
         ("segment & (window(8, 0) | segment_start(1))", "identity", False, None),
         # the chain fails at rank 2, every document of length 2 is connected: the prefixes decide
         ("segment & (window(1, 0) | segment_start(2))", "identity", False, None),  # [0, 3): no query before 2 sees it
         ("segment & (window(0, 1) | segment_start(2) & window(1, 0))", "reversed", False, None),  # [0, 4): 3 sees none before
         ("segment & (causal | window(-2, 2) | segment_start(2))", "identity", True, None)]  # every prefix connected


@pytest.mark.parametrize("source, order, connected, s", TABLE)
def test_table_of_packed_patterns(source, order, connected, s):
    n = 4096
    compiled = patterndsl.compile(source, n)
    (claims,) = per_segmentation(compiled)
    c2, c3 = claims["hamiltonian_path"], claims["finite_depth"]
    if order is None or order is False:
        assert c2["holds"] is False and c2["document"][1] == 2
    else:
        assert c2["holds"] is True and c2["witness"] == order
    assert c3["holds"] is connected
    assert c3.get("s") == s
    if connected is False:  # a small document names the failure
        assert c3["document"][1] <= 4


def test_verify_rejects_tampered_every_document_evidence():
    def claims_of(source, n):
        compiled = patterndsl.compile(source, n)
        _, cert = run_check(compiled)
        return compiled, cert, cert["segments"]["every_segmentation"][0]

    def failures(compiled, cert, claims, name, claim):
        bad = {**cert, "segments": {"every_segmentation": [{**claims, name: claim}]}}
        return [f for f in verify_report(compiled, bad)["failures"] if f.startswith(f"segments: head 0: {name}")]

    compiled, cert, claims = claims_of("segment & (causal | segment_start(2))", 64)
    assert verify_report(compiled, cert)["failures"] == []
    assert failures(compiled, cert, claims, "finite_depth", {"holds": True, "evidence": {"chain": {}}})
    assert failures(compiled, cert, claims, "finite_depth", {"holds": True, "evidence": {"prefixes": True}})
    assert failures(compiled, cert, claims, "hamiltonian_path", {"holds": False, "document": [3, 2]})
    compiled, cert, claims = claims_of("segment & window(2)", 64)
    assert claims["finite_depth"]["s"] == 32
    for wrong in (31, 33, True, "32"):
        assert failures(compiled, cert, claims, "finite_depth", {**claims["finite_depth"], "s": wrong})
    assert failures(compiled, cert, claims, "finite_depth", {**claims["finite_depth"], "evidence": {"hub": 1}})
    compiled, cert, claims = claims_of("segment & (chunk(8) | window(0, 1))", 64)  # not document-local
    assert claims["finite_depth"]["holds"] is False
    assert failures(compiled, cert, claims, "finite_depth", {"holds": True, "evidence": {"prefixes": True}})
    assert failures(compiled, cert, claims, "hamiltonian_path", {"holds": True, "witness": "identity"})
