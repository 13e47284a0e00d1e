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
from patterndsl.segments import per_segmentation  # noqa: E402
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
    (large,) = per_segmentation(patterndsl.compile("segment & window(1)", 64))
    assert large["hamiltonian_path"]["holds"] is None
    assert "not decided for every segmentation" in large["finite_depth"]["reason"]
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
