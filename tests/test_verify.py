"""verify accepts a certificate only when every claim was re-checked and holds.

The corruption suite takes certificates of many patterns and n and changes one field at a
time so that the claim it belongs to becomes false (a dense brute force filters out the
few changes that leave a claim true); verify must reject every one."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl.analysis.check import check
from patterndsl.reference import evaluate
from patterndsl.verify import _keys, _Meter, _pairs, _row_sizes, verify_report
from test_conditions import brute

ROOT = Path(__file__).resolve().parent.parent


def accepted(compiled, cert, budget=1 << 31) -> bool:
    report = verify_report(compiled, cert, max_work=budget)
    return not report["failures"] and not report["unchecked"]


# ---- the independent counter against the dense reference --------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(), S.sizes(max_n=40))
def test_key_sets_match_the_reference(source, n):
    pattern = patterndsl.compile(source, n).patterns[0][0]
    keys = _keys(pattern, np.arange(n, dtype=np.int64), n, _Meter(1 << 40))
    dense = np.zeros((n, n), dtype=bool)
    for row, lo, hi in zip(keys.own, keys.lo, keys.hi):
        dense[row, lo:hi] = True
    assert (dense == evaluate(pattern, np.arange(n), n)).all()
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    assert (_pairs(pattern, i.reshape(-1), j.reshape(-1), n).reshape(n, n) == dense).all()


@st.composite
def random_unions(draw, n):
    """A union of `random(r)` with interval-like parts (the count re-check's fast path), or
    with parts whose rows hold more intervals than it tests key by key (its fallback)."""
    parts = draw(st.lists(st.sampled_from([
        "window({a})", "window({a}, {b})", "global(0..{a})", "global({g}, {b})", "cols({b}..{d})",
        "rows(0..{a})", "causal", "self", "chunk({c})", "summary(8, 3)", "stride(3)", "logsparse"]),
        min_size=1, max_size=3))
    top = min(n, 40)
    values = {"a": draw(st.integers(1, top)), "b": draw(st.integers(0, top - 1)), "c": draw(st.integers(1, 40)),
              "g": draw(st.integers(0, top - 1))}
    values["d"] = min(n, values["b"] + values["c"])
    r, seed = draw(st.integers(0, 300)), draw(st.integers(0, 2**32))
    text = [p.format(**values) for p in parts] + [f"random({r}, seed={seed})"]
    return " | ".join(draw(st.permutations(text)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3000).flatmap(lambda n: st.tuples(random_unions(n), st.just(n))))
def test_row_sizes_of_unions_with_random_match_the_reference(case):
    source, n = case
    pattern = patterndsl.compile(source, n).patterns[0][0]
    rows = np.unique(np.concatenate([np.arange(min(n, 64)), np.arange(max(0, n - 64), n),
                                     np.random.default_rng(n).integers(0, n, 64)]))
    sizes = _row_sizes(pattern, rows, n, _Meter(1 << 40))
    assert (sizes == evaluate(pattern, rows, n).sum(axis=1)).all()


def test_row_sizes_count_random_keys_inside_the_window_once():
    # n = 300, r = 250: most random keys fall inside window(40) | global(0..5); counted once.
    pattern = patterndsl.compile("window(40) | global(0..5) | random(250, seed=7)", 300).patterns[0][0]
    rows = np.arange(300, dtype=np.int64)
    sizes = _row_sizes(pattern, rows, 300, _Meter(1 << 40))
    assert (sizes == evaluate(pattern, rows, 300).sum(axis=1)).all()
    assert sizes.max() < 300 + 250 - 81  # not |others| + r: overlaps were subtracted


# ---- ground truth, densely ------------------------------------------------------------------


def dense_truth(compiled, h):
    """(union mask, masks, least s or None) for head h."""
    masks = [compiled.dense(k, h) for k in range(compiled.layers)]
    return np.logical_or.reduce(masks), masks, brute(compiled, h)[2]


def is_path(union, g) -> bool:
    return all(union[g[t + 1], g[t]] for t in range(len(g) - 1))


def closed(masks, members, n) -> bool:
    inside = np.zeros(n, dtype=bool)
    inside[members] = True
    return not any(m[inside][:, ~inside].any() for m in masks)


def ranges_of(mask):
    out, idx = [], np.flatnonzero(mask)
    for x in idx.tolist():
        if out and out[-1][1] == x:
            out[-1][1] = x + 1
        else:
            out.append([x, x + 1])
    return out


# ---- corruptions ----------------------------------------------------------------------------


def corruptions(compiled, cert, brute=True):
    """(what, corrupted certificate) pairs; each makes one claim false."""
    n, out = cert["n"], []

    def add(what, change):
        c = copy.deepcopy(cert)
        if change(c) is not False:
            out.append((what, c))

    add("format", lambda c: c.__setitem__("format", "patterndsl-certificate/1"))
    add("source hash", lambda c: c.__setitem__("source_sha256", "0" * 64))
    add("layers", lambda c: c.__setitem__("layers", c["layers"] + 1))
    add("prob name", lambda c: c["prob"].__setitem__("name", "entmax"))
    add("assumption 2", lambda c: c["prob"].__setitem__("assumption2", not c["prob"]["assumption2"]))
    for k, row in enumerate(cert["counts"]["per_layer"]):
        for h, _ in enumerate(row):
            for delta in (1, -1):
                add(f"count layer {k} head {h} {delta:+}",
                    lambda c, k=k, h=h, d=delta: c["counts"]["per_layer"][k].__setitem__(h, c["counts"]["per_layer"][k][h] + d))
    for h, _ in enumerate(cert["counts"]["union"]):
        for delta in (1, -1):
            add(f"union head {h} {delta:+}",
                lambda c, h=h, d=delta: c["counts"]["union"].__setitem__(h, c["counts"]["union"][h] + d))
    # nonempty rows
    ne = cert["nonempty_rows"]

    def flip_nonempty(c):
        if ne["holds"] is True:
            c["nonempty_rows"].update(holds=False, empty_row=[0, 0, 0])
        elif ne["holds"] is False:
            c["nonempty_rows"].update(holds=True, empty_row=None)
            for ev in c["nonempty_rows"]["evidence"]:
                ev.update(holds=True, keys="counts")
                ev.pop("empty_row", None)
        else:
            return False
    add("nonempty verdict", flip_nonempty)
    for number, ev in enumerate(ne["evidence"]):
        if ev["holds"] is True:
            row = compiled.dense(ev["layer"], ev["head"])
            add(f"nonempty evidence {number} says empty",
                lambda c, e=number: c["nonempty_rows"]["evidence"][e].update(holds=False, empty_row=0))
            if isinstance(ev["keys"], list):
                bad = [int(x) for x in np.flatnonzero(~row[0])[:1]]
                if bad:
                    add(f"nonempty evidence {number} key", lambda c, e=number, b=bad[0]:
                        c["nonempty_rows"]["evidence"][e]["keys"].__setitem__(0, b))
        elif ev["holds"] is False:
            row = compiled.dense(ev["layer"], ev["head"])
            full = np.flatnonzero(row.any(axis=1))
            if full.size:
                add(f"nonempty evidence {number} row", lambda c, e=number, r=int(full[0]):
                    c["nonempty_rows"]["evidence"][e].__setitem__("empty_row", r))
    if ne["holds"] is False:
        er = ne["empty_row"]
        row = compiled.dense(er[0], er[1])
        full = np.flatnonzero(row.any(axis=1))
        if full.size:
            add("empty row index", lambda c, r=int(full[0]): c["nonempty_rows"]["empty_row"].__setitem__(2, r))
    for h, cond in enumerate(cert["conditions"]):
        union, masks, s = dense_truth(compiled, h) if brute else (None, None, None)
        # C1
        c1 = cond["self_loops"]
        add(f"head {h} C1 verdict", lambda c, h=h: c["conditions"][h].__setitem__(
            "self_loops", {"holds": False, "missing": [0, h, 0]} if c1["holds"] else {"holds": True}))
        if c1["holds"] is False:
            add(f"head {h} C1 missing index", lambda c, h=h: c["conditions"][h]["self_loops"]["missing"].__setitem__(
                2, (c1["missing"][2] + 1) % n) if (brute and all(m[(c1["missing"][2] + 1) % n, (c1["missing"][2] + 1) % n]
                                                          for m in masks[c1["missing"][0]:c1["missing"][0] + 1])) else False)
        # C2
        hp = cond["hamiltonian_path"]
        if hp["holds"] is True:
            if n >= 2:
                add(f"head {h} C2 verdict", lambda c, h=h: c["conditions"][h].__setitem__(
                    "hamiltonian_path", {"holds": False, "refutation": {"kind": "two_start_sets",
                                                                       "sets": [[[0, 1]], [[1, 2]]]}}))
            add(f"head {h} C2 exhaustive", lambda c, h=h: c["conditions"][h].__setitem__(
                "hamiltonian_path", {"holds": False, "refutation": {"kind": "exhaustive"}}))
            w = hp["witness"]
            g = (list(range(n)) if w == "identity" else list(range(n - 1, -1, -1)) if w == "reversed"
                 else [x for a, b, d in w["runs"] for x in range(a, b, d)] if isinstance(w, dict) else list(w))
            for t in range(n - 1):
                bad = g[:t] + [g[t + 1], g[t]] + g[t + 2:]
                if brute and not is_path(union, bad):
                    add(f"head {h} witness swap {t}", lambda c, h=h, b=bad: c["conditions"][h]["hamiltonian_path"]
                        .__setitem__("witness", b))
                    break
            if n >= 2:
                add(f"head {h} witness repeats", lambda c, h=h: c["conditions"][h]["hamiltonian_path"]
                    .__setitem__("witness", [0] * n))
        elif hp["holds"] is False:
            for w in ("identity", "reversed", list(range(n))[::-1]):
                add(f"head {h} C2 verdict {w!r:.12}", lambda c, h=h, w=w: c["conditions"][h].__setitem__(
                    "hamiltonian_path", {"holds": True, "witness": w}))
            ref = hp["refutation"]
            if ref["kind"] in ("few_successors", "few_predecessors"):
                add(f"head {h} counting kind", lambda c, h=h: c["conditions"][h]["hamiltonian_path"]["refutation"]
                    .__setitem__("kind", "few_predecessors" if ref["kind"] == "few_successors" else "few_successors")
                    if brute and not _counting_valid(union, ref, n) else False)
                add(f"head {h} counting others everything", lambda c, h=h: c["conditions"][h]["hamiltonian_path"]
                    ["refutation"].__setitem__("others", [[0, n]]))
                add(f"head {h} counting tokens", lambda c, h=h: c["conditions"][h]["hamiltonian_path"]
                    ["refutation"].__setitem__("tokens", [[0, 1]]))
            elif ref["kind"] in ("two_start_sets", "two_end_sets"):  # (split: tests/test_verify_corruption.py)
                for which in (0, 1):
                    add(f"head {h} refutation sets overlap {which}", lambda c, h=h, wh=which:
                        c["conditions"][h]["hamiltonian_path"]["refutation"]["sets"].__setitem__(
                            wh, c["conditions"][h]["hamiltonian_path"]["refutation"]["sets"][1 - wh]))
                    add(f"head {h} refutation set everything {which}", lambda c, h=h, wh=which:
                        c["conditions"][h]["hamiltonian_path"]["refutation"]["sets"].__setitem__(wh, [[0, n]]))
                add(f"head {h} refutation kind", lambda c, h=h: c["conditions"][h]["hamiltonian_path"]["refutation"]
                    .__setitem__("kind", "two_end_sets" if ref["kind"] == "two_start_sets" else "two_start_sets")
                    if brute and not _end_sets_valid(union, ref, n, ref["kind"] == "two_start_sets") else False)
        # C3
        fd = cond["finite_depth"]
        if fd["holds"] is True:
            add(f"head {h} C3 verdict", lambda c, h=h: c["conditions"][h].__setitem__(
                "finite_depth", {"holds": False, "unreachable": [0, n - 1], "evidence": {"closed": [[0, 1]]}})
                if n >= 2 else False)
            add(f"head {h} C3 cycle", lambda c, h=h: c["conditions"][h].__setitem__(
                "finite_depth", {"holds": False, "evidence": {"recursion_cycles": [1, 1 + cert["layers"]]}}))
            lo, hi = fd["s_bounds"]
            truth = s if brute else fd["s"]
            if truth is not None:
                for name, new in (("s + 1", [truth + 1, truth + 1]), ("s - 1", [truth - 1, truth - 1]),
                                  ("lo above s", [truth + 1, max(hi, truth + 1)]), ("hi below s", [lo, truth - 1])):
                    if new[0] >= 1 and new[0] <= new[1] and not (new[0] <= truth <= new[1]):
                        add(f"head {h} {name}", lambda c, h=h, new=new: c["conditions"][h]["finite_depth"].update(
                            s_bounds=list(new), s=new[0] if new[0] == new[1] else None))
            ev = fd["evidence"]
            if "hub" in ev:
                add(f"head {h} hub steps", lambda c, h=h: c["conditions"][h]["finite_depth"]["evidence"]["hub"]
                    .update(row_step=2, column_step=1))
        elif fd["holds"] is False:
            add(f"head {h} C3 verdict", lambda c, h=h: c["conditions"][h].__setitem__(
                "finite_depth", {"holds": True, "s": 1, "s_bounds": [1, 1], "evidence": {"recursion": True}}))
            add(f"head {h} C3 verdict hub", lambda c, h=h: c["conditions"][h].__setitem__(
                "finite_depth", {"holds": True, "s": 2, "s_bounds": [2, 2],
                                 "evidence": {"hub": {"token": 0, "row_step": 1, "column_step": 2},
                                              "missing_first": [0, 0]}}))
            ev = fd["evidence"]
            if "closed" in ev:
                add(f"head {h} unreachable reversed", lambda c, h=h: c["conditions"][h]["finite_depth"]
                    .__setitem__("unreachable", fd["unreachable"][::-1]))
                members = [x for a, b in ev["closed"] for x in range(a, b)]
                for extra in range(n):
                    if extra not in members and extra != fd["unreachable"][1]:
                        grown = sorted(members + [extra])
                        if brute and not closed(masks, grown, n):
                            mask = np.zeros(n, dtype=bool)
                            mask[grown] = True
                            add(f"head {h} bogus closed set", lambda c, h=h, r=ranges_of(mask):
                                c["conditions"][h]["finite_depth"]["evidence"].__setitem__("closed", r))
                            break
                add(f"head {h} closed set everything", lambda c, h=h: c["conditions"][h]["finite_depth"]["evidence"]
                    .__setitem__("closed", [[0, n]]))
            elif "empty_rows" in ev:
                for k, i in enumerate(ev["empty_rows"]):
                    full = np.flatnonzero(compiled.dense(k, h).any(axis=1))
                    if full.size:
                        add(f"head {h} empty row of layer {k}", lambda c, h=h, k=k, r=int(full[0]):
                            c["conditions"][h]["finite_depth"]["evidence"]["empty_rows"].__setitem__(k, r))
            elif "periodic" in ev:
                add(f"head {h} period", lambda c, h=h: c["conditions"][h]["finite_depth"]["evidence"]["periodic"]
                    .__setitem__("period", ev["periodic"]["period"] + 1))
                add(f"head {h} period one", lambda c, h=h: c["conditions"][h]["finite_depth"]["evidence"]["periodic"]
                    .__setitem__("period", 1))
            elif "empty_column" in ev:
                attended = np.flatnonzero(compiled.dense(0, h).any(axis=0))
                if attended.size:
                    add(f"head {h} attended column", lambda c, h=h, j=int(attended[0]):
                        c["conditions"][h]["finite_depth"]["evidence"].__setitem__("empty_column", j))
            elif "recursion_cycles" in ev:  # (support_after is corrupted in tests/test_verify_corruption.py)
                add(f"head {h} bare recursion cycle", lambda c, h=h: c["conditions"][h]["finite_depth"]["evidence"]
                    .__setitem__("recursion_cycles", True))
                t0, t1 = ev["recursion_cycles"]
                add(f"head {h} cycle too short", lambda c, h=h: c["conditions"][h]["finite_depth"]["evidence"]
                    .__setitem__("recursion_cycles", [t0, t0]))
    return out


def _counting_valid(union, ref, n):
    """Whether the counting refutation's sets would also be valid under the other kind."""
    X, Y = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for mask, key in ((X, "tokens"), (Y, "others")):
        for a, b in ref[key]:
            mask[a:b] = True
    off = union & ~np.eye(n, dtype=bool)
    if ref["kind"] == "few_successors":  # as few_predecessors: X's keys inside Y
        return not off[X][:, ~Y].any()
    return not off[~Y][:, X].any()


def _end_sets_valid(union, ref, n, as_end_sets):
    """Whether the refutation's sets would also be valid under the other kind."""
    for r in ref["sets"]:
        inside = np.zeros(n, dtype=bool)
        for a, b in r:
            inside[a:b] = True
        off = union & ~np.eye(n, dtype=bool)
        bad = off[~inside][:, inside].any() if as_end_sets else off[inside][:, ~inside].any()
        if bad:
            return False
    return True


def assert_all_rejected(compiled, cert, brute=True):
    assert accepted(compiled, cert), verify_report(compiled, cert)
    rejected = 0
    for what, bad in corruptions(compiled, cert, brute):
        json.dumps(bad)
        assert not accepted(compiled, bad), f"corrupted {what} was accepted"
        rejected += 1
    return rejected


# whole files up to n = 24, and single patterns (smaller certificates) up to n = 12
CORRUPTED = {"files": (S.files(), S.sizes(min_n=1, max_n=24)),
             "small": (S.pattern_sources(), S.sizes(min_n=1, max_n=12))}


@pytest.mark.parametrize("kind", list(CORRUPTED))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_certificates_are_rejected(kind, data):
    sources, sizes = CORRUPTED[kind]
    compiled = patterndsl.compile(data.draw(sources, label="source"), data.draw(sizes, label="n"))
    _, cert = check(compiled, budget_seconds=2)
    assert_all_rejected(compiled, cert)


STALE_N = ["window(1)", "window(2) | global(0)", "~causal", "all", "causal", "stride(3) | window(1)"]


@pytest.mark.parametrize("source", STALE_N)
def test_a_stale_n_is_rejected(source):
    compiled = patterndsl.compile(source, 16)
    _, cert = check(compiled)
    for n in (15, 17):
        stale = dict(cert, n=n)
        assert not accepted(patterndsl.compile(source, n), stale)


@pytest.mark.parametrize("name", ["bigbird", "longformer", "longformer_dilated", "star", "fixed", "strided"])
def test_examples_above_dense_n_reject_corruptions(name):
    compiled = patterndsl.compile(ROOT / "examples" / f"{name}.spat", 2049 if name != "star" else 4099)
    _, cert = check(compiled)
    assert assert_all_rejected(compiled, cert, brute=False) >= 8


# ---- the cases that used to pass ---------------------------------------------------------------


def test_issue_cases_are_rejected():
    # C3 infinite by a recursion cycle, for `all` (s = 1).
    c = patterndsl.compile("all", 4)
    _, cert = check(c)
    bad = copy.deepcopy(cert)
    bad["conditions"][0]["finite_depth"] = {"holds": False, "evidence": {"recursion_cycles": [1, 2]}}
    assert not accepted(c, bad)
    # "non-empty rows: true" resting on counts, for ~causal, whose last row is empty.
    c = patterndsl.compile("~causal", 8)
    _, cert = check(c)
    bad = copy.deepcopy(cert)
    bad["nonempty_rows"] = {"holds": True, "empty_row": None,
                            "evidence": [{"layer": 0, "head": 0, "holds": True, "keys": "counts"}]}
    assert not accepted(c, bad)
    # An exhaustive C2 refutation above n = 12.
    c = patterndsl.compile("window(1)", 13)
    _, cert = check(c)
    bad = copy.deepcopy(cert)
    bad["conditions"][0]["hamiltonian_path"] = {"holds": False, "refutation": {"kind": "exhaustive"}}
    assert not accepted(c, bad)


def test_window_one_at_1024_claiming_two_is_rejected():
    c = patterndsl.compile("window(1)", 1024)
    _, cert = check(c)
    assert accepted(c, cert)
    bad = copy.deepcopy(cert)
    bad["conditions"][0]["finite_depth"].update(s=2, s_bounds=[2, 2])
    assert not accepted(c, bad)


def test_over_budget_is_unchecked_not_accepted():
    c = patterndsl.compile("window(1) | global(0)", 4096)
    _, cert = check(c)
    report = verify_report(c, cert, max_work=1000)
    assert report["failures"] == [] and report["unchecked"]
    assert not accepted(c, cert, budget=1000)
    assert accepted(c, cert)


# ---- the command ---------------------------------------------------------------------------------


class _Run:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    from patterndsl.cli import main

    def run(*args, cwd=None):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        captured = capsys.readouterr()
        return _Run(code, captured.out, captured.err)
    return run


def test_cli_exit_codes(tmp_path, cli):
    _cli = cli
    spat = tmp_path / "w.spat"
    spat.write_text("window(1) | global(0)\n")
    other = tmp_path / "o.spat"
    other.write_text("window(2) | global(0)\n")
    cert = tmp_path / "w.cert.json"
    assert _cli("check", str(spat), "--n", "300", "--certificate", str(cert), cwd=tmp_path).returncode == 0
    ok = _cli("verify", str(spat), str(cert), cwd=tmp_path)
    assert ok.returncode == 0 and "every claim was checked and holds" in ok.stdout
    low = _cli("verify", str(spat), str(cert), "--budget", "100", cwd=tmp_path)
    assert low.returncode == 4 and "unchecked:" in low.stdout and "raise --budget" in low.stdout
    wrong = _cli("verify", str(other), str(cert), cwd=tmp_path)
    assert wrong.returncode == 3 and "another source" in wrong.stdout
    data = json.loads(cert.read_text())
    data["format"] = "patterndsl-certificate/9"
    (tmp_path / "f.json").write_text(json.dumps(data))
    fmt = _cli("verify", str(spat), str(tmp_path / "f.json"), cwd=tmp_path)
    assert fmt.returncode == 3 and "format" in fmt.stdout
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)
    deep = _cli("verify", str(spat), str(tmp_path / "deep.json"), cwd=tmp_path)
    assert deep.returncode == 1 and "nested too deeply" in deep.stderr and "Traceback" not in deep.stderr
    (tmp_path / "deepobj.json").write_text('{"n": 300, "x": ' + "{\"a\": " * 5000 + "1" + "}" * 5001)
    deep = _cli("verify", str(spat), str(tmp_path / "deepobj.json"), cwd=tmp_path)
    assert deep.returncode == 1 and "Traceback" not in deep.stderr


@pytest.mark.parametrize("units", ["0", "-1", "x"])
def test_cli_budget_must_be_positive(tmp_path, units, cli):
    _cli = cli
    spat = tmp_path / "w.spat"
    spat.write_text("window(1)\n")
    assert _cli("verify", str(spat), str(tmp_path / "c.json"), "--budget", units, cwd=tmp_path).returncode == 2


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=2, max_value=40), st.integers(min_value=1, max_value=5))
def test_window_depth_by_intervals_is_exact(n, w):
    c = patterndsl.compile(f"window({w})", n)
    _, cert = check(c)
    fd = cert["conditions"][0]["finite_depth"]
    assert fd["s"] == -(-(n - 1) // w)
    assert accepted(c, cert)
