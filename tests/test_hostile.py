"""Hostile and careless input, against the command line and the Python API.

Every case states its exact outcome: a diagnostic with its message and exit code (1
for the input, 2 for usage), or the right result; never a traceback, an internal
error (exit 70), a hang or an overwritten input. Subprocess cases have a time-out only
as a guard against a hang (generous, for a loaded machine); nothing here is timed.

The cases tried: every entry of CLI_CASES, API_CASES and TENSOR_CASES (the last against
each of three entry points) and the subprocess tests.
"""
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import patterndsl
from patterndsl import SpatError
from patterndsl.cli import main

ROOT = Path(__file__).parent.parent
HANG_GUARD = 300  # seconds: only a hang would reach it

# ---- the command line, in process ------------------------------------------------------
# (argv with {dir} for the scratch folder, exit code, what stderr must say). Each case runs
# in a fresh folder holding p.spat (window(2)), link.spat -> p.spat, hard.spat (a hard
# link to p.spat), pic.png (a pattern file with a picture's name) and a folder sub/.

CLI_CASES = {
    # outputs that are an input, by any name: refused, the input untouched
    "flex over its input": (["compile", "p.spat", "--n", "16", "--target", "flex", "-o", "p.spat"], 1,
                            "refusing to write p.spat: it is the input file p.spat"),
    "torch over ./input": (["compile", "p.spat", "--n", "16", "--target", "torch", "-o", "./p.spat"], 1,
                           "refusing to write p.spat: it is the input file p.spat"),
    "triton over a symlink": (["compile", "p.spat", "--n", "16", "--target", "triton", "-o", "link.spat"], 1,
                              "refusing to write link.spat: it is the input file p.spat"),
    "input through a symlink": (["compile", "link.spat", "--n", "16", "--target", "flex", "-o", "p.spat"], 1,
                                "refusing to write p.spat: it is the input file link.spat"),
    "mask over a hard link": (["mask", "p.spat", "--n", "16", "-o", "hard.spat"], 1,
                              "refusing to write hard.spat: it is the input file p.spat"),
    "png over its input": (["show", "pic.png", "--n", "16", "--png", "pic.png"], 1,
                           "refusing to write pic.png: it is the input file pic.png"),
    "certificate over its input": (["check", "p.spat", "--n", "16", "--certificate", "{dir}/p.spat"], 1,
                                   "it is the input file p.spat"),
    "default name is the input": (["compile", "p.pt", "--n", "16", "--target", "torch"], 1,
                                  "refusing to write p.pt: it is the input file p.pt"),
    # outputs that cannot be written
    "torch to a missing folder": (["compile", "p.spat", "--n", "16", "--target", "torch", "-o", "/nonexistent/m.pt"],
                                  1, "cannot write /nonexistent/m.pt: No such file or directory"),
    "torch to a full device": (["compile", "p.spat", "--n", "16", "--target", "torch", "-o", "/dev/full"], 1,
                               "cannot write /dev/full: No space left on device"),
    "flex to a full device": (["compile", "p.spat", "--n", "16", "--target", "flex", "-o", "/dev/full"], 1,
                              "cannot write /dev/full: No space left on device"),
    "mask to a folder": (["mask", "p.spat", "--n", "16", "-o", "sub"], 1, "cannot write sub: it is a directory"),
    "png with another extension": (["show", "p.spat", "--n", "16", "--png", "x.jpg"], 2,
                                   "--png writes a PNG picture: name it OUT.png, not x.jpg"),
    # inputs that are not files
    "a device that never ends": (["show", "/dev/zero", "--n", "16"], 1, "cannot read /dev/zero: not a regular file"),
    "a folder": (["show", "sub", "--n", "16"], 1, "cannot read sub: Is a directory"),
    "a missing file": (["layout", "nothing.spat", "--n", "16"], 1, "cannot read nothing.spat: No such file"),
    "a 4 GB sparse file": (["show", "huge.spat", "--n", "16"], 1, "file too large: more than 262,144 characters"),
    "a certificate that never ends": (["verify", "p.spat", "/dev/zero"], 1, "cannot read /dev/zero: not a regular file"),
    # block sizes: one policy
    "block size 100": (["layout", "p.spat", "--n", "64", "--block-size", "100"], 2,
                       "block size 100 is not a power of two ≥ 16"),
    "block size 8": (["layout", "p.spat", "--n", "64", "--block-size", "8"], 2, "block size 8 is not a power of two"),
    "block size 0": (["layout", "p.spat", "--n", "64", "--block-size", "0"], 2, "must be a positive integer"),
    "block size 16x8": (["show", "p.spat", "--n", "64", "--png", "x.png", "--block-size", "16x8"], 2,
                        "block size 8 is not a power of two"),
    "block size 2^70": (["layout", "p.spat", "--n", "64", "--block-size", str(2**70)], 2,
                        "block size 1180591620717411303424 is beyond 2^62"),
    "block size 16x2^63": (["layout", "p.spat", "--n", "64", "--block-size", f"16x{2**63}"], 2, "is beyond 2^62"),
    "block size words": (["layout", "p.spat", "--n", "64", "--block-size", "big"], 2, "not an integer: 'big'"),
    "block size for a dense target": (["compile", "p.spat", "--n", "64", "--target", "torch", "--block-size", "64"],
                                      2, "the torch target is dense: it has no blocks"),
    "block size 24 for flex": (["compile", "p.spat", "--n", "64", "--target", "flex", "--block-size", "24"], 2,
                               "block size 24 is not a power of two"),
    # options that make no sense
    "negative budget": (["check", "p.spat", "--n", "16", "--budget", "-1"], 2,
                        "must be a finite number of seconds ≥ 0, got -1"),
    "endless budget": (["check", "p.spat", "--n", "16", "--budget", "inf"], 2, "must be a finite number"),
    "budget nan": (["check", "p.spat", "--n", "16", "--budget", "nan"], 2, "must be a finite number"),
    "no-simplify without emit": (["compile", "p.spat", "--n", "16", "--no-simplify"], 2,
                                 "--no-simplify goes with --emit ir"),
    "compile without a file": (["compile", "--n", "16"], 2, "the following arguments are required: FILE"),
    "memory budget in words": (["mask", "p.spat", "--n", "16", "--memory-budget", "lots"], 2, "not a size: 'lots'"),
    "n zero": (["show", "p.spat", "--n", "0"], 2, "must be at least 1, got 0"),
    "n beyond 2^40": (["show", "p.spat", "--n", str(2**40 + 1)], 1, "n must be between 1 and 2^40"),
    # huge n: served within the budget, or refused up front with the size
    "layout at 2^40": (["layout", "p.spat", "--n", str(2**40)], 1,
                       "the block layout of window(2) at n = 1,099,511,627,776 in blocks of 128 × 128 needs about"),
    "flex at 2^40": (["compile", "p.spat", "--n", str(2**40), "--target", "flex", "-o", "m.py"], 1,
                     "more than the memory budget of 2.0 GiB"),
    "triton at 2^40": (["compile", "p.spat", "--n", str(2**40), "--target", "triton", "-o", "m.py"], 1,
                       "more than the memory budget of 2.0 GiB"),
    "show at 2^40": (["show", "p.spat", "--n", str(2**40)], 1, "show draws masks up to n = 67,108,864"),
    "png of all at 2^20": (["show", "all.spat", "--n", str(2**20), "--png", "a.png", "--block-size", "16"], 0,
                           "(layouts over the memory or drawing budget drawn as 512 × 512 regions from sampled rows)"),
    "grid at 2^20": (["layout", "p.spat", "--n", str(2**20), "--block-size", "16", "--grid"], 1,
                     "--grid draws layouts up to 256 × 256 blocks; this one is 65,536 × 65,536"),
    "mask at 2^20": (["mask", "p.spat", "--n", str(2**20)], 1, "mask needs 1.0 TiB, more than the memory budget"),
    "show beyond a small budget": (["show", "p.spat", "--n", str(2**20), "--memory-budget", "16M"], 1,
                                   "drawing n = 1,048,576 (whole rows of the mask, evaluated one at a time) needs "
                                   "about 32.0 MiB, more than the memory budget of 16.0 MiB"),
    "torch at 2^20": (["compile", "p.spat", "--n", str(2**20), "--target", "torch"], 1, "mask needs 1.0 TiB"),
    "random tables of a module": (["compile", "random.spat", "--n", "65536", "--target", "flex", "-o", "m.py",
                                   "--memory-budget", "64M"], 1, "the tables of a FlexAttention module at n = 65,536"),
    "transpose(random) layout at 2^26": (["layout", "tr.spat", "--n", str(2**26)], 1,
                                         "the block layout of transpose(random(3, seed=1)) | window(1) at n = "
                                         "67,108,864 in blocks of 128 × 128 needs about 32.2 GiB"),
    "transpose(random) flex at 2^26": (["compile", "tr.spat", "--n", str(2**26), "--target", "flex", "-o", "m.py"],
                                       1, "the tables of a FlexAttention module at n = 67,108,864"),
    "transpose(random) triton at 2^26": (["compile", "tr.spat", "--n", str(2**26), "--target", "triton", "-o",
                                          "m.py"], 1, "the tables of a Triton module at n = 67,108,864"),
    "transpose(random) show at 2^26": (["show", "tr.spat", "--n", str(2**26)], 1,
                                       "(inverting the keys of its transpose(random): all n rows drawn and sorted "
                                       "once) needs about 18.0 GiB, more than the memory budget of 2.0 GiB"),
    "transpose(random) png at 2^40": (["show", "tr.spat", "--n", str(2**40), "--png", "t.png"], 1,
                                      "(inverting the keys of its transpose(random): all n rows drawn and sorted "
                                      "once) needs about 288.0 TiB"),
    # (a grid of boxes, natten in tiles, is drawn from its runs at any n; stride2d lists its keys)
    "a grid at 2^26": (["show", "stride.spat", "--n", str(2**26)], 1,
                       "listing the keys of grid(512, 512) { stride2d(2, 2) } at n = 67,108,864 "
                       "(262,144 rows × 65536 slots) needs at least 128.0 GiB"),
    # certificates that are not one
    "an empty certificate": (["verify", "p.spat", "empty.json"], 1,
                             "empty.json:1:1: error: not a patterndsl certificate: the object has none of the fields "
                             "a certificate needs (format, source_sha256, n, layers, heads, prob, nonempty_rows, "
                             "conditions)"),
    "a certificate that is a list": (["verify", "p.spat", "list.json"], 1,
                                     "list.json:1:1: error: not a patterndsl certificate: not a JSON object but an "
                                     "array"),
    "a certificate with a few fields": (["verify", "p.spat", "few.json"], 1,
                                        "few.json:1:1: error: not a patterndsl certificate: missing the fields "
                                        "format, source_sha256, layers"),
    "a certificate that is broken JSON": (["verify", "p.spat", "bad.json"], 1,
                                          "bad.json:2:12: error: cannot read the certificate: Expecting value"),
    # --emit writes to -o like every output (it printed to standard output and ignored -o)
    "emit ir over its input": (["compile", "p.spat", "--n", "16", "--emit", "ir", "-o", "link.spat"], 1,
                               "refusing to write link.spat: it is the input file p.spat"),
    "emit ast to a full device": (["compile", "p.spat", "--emit", "ast", "-o", "/dev/full"], 1,
                                  "cannot write /dev/full: No space left on device"),
    "emit ir to a file": (["compile", "p.spat", "--n", "16", "--emit", "ir", "-o", "ir.txt"], 0, "wrote ir.txt: the IR"),
    # an empty file name is no file (it read as the current folder, or as no output at all)
    "an empty output": (["mask", "p.spat", "--n", "16", "-o", ""], 2, "argument -o/--output: an empty file name"),
    "an empty png": (["show", "p.spat", "--n", "16", "--png", ""], 2, "argument --png: an empty file name"),
    "an empty certificate name": (["check", "p.spat", "--n", "16", "--certificate", ""], 2,
                                  "argument --certificate: an empty file name"),
    "an empty input": (["layout", "", "--n", "16"], 2, "argument FILE: an empty file name"),
    "an empty certificate to verify": (["verify", "p.spat", ""], 2, "argument CERT: an empty file name"),
    "fmt of an empty name": (["fmt", "--write", ""], 2, "argument FILE: an empty file name"),
    # a grid at 2^40: its layout's estimate built arrays over every block row (64 GiB) first
    "a grid's layout at 2^40": (["layout", "natten.spat", "--n", str(2**40)], 1,
                                "at n = 1,099,511,627,776 in blocks of 128 × 128 needs at least 33.0 TiB"),
    "a grid's flex module at 2^40": (["compile", "natten.spat", "--n", str(2**40), "--target", "flex", "-o", "m.py"],
                                     1, "needs at least 33.0 TiB, more than the memory budget of 2.0 GiB"),
    "a grid's png at 2^40": (["show", "natten.spat", "--n", str(2**40), "--png", "g.png"], 1,
                             "more than the memory budget of 2.0 GiB"),
    # summary's key blocks and transpose(summary)'s query blocks: its estimate too walked every
    # block column or row (64 GiB at 2^40: "out of memory" at the default budget)
    "summary's layout at 2^40": (["layout", "summary.spat", "--n", str(2**40)], 1,
                                 "summary(8, 2) | window(1) at n = 1,099,511,627,776 in blocks of 128 × 128 needs "
                                 "at least 33.0 TiB"),
    "transpose(summary)'s layout at 2^40": (["layout", "tsummary.spat", "--n", str(2**40)], 1,
                                            "needs at least 33.0 TiB, more than the memory budget of 2.0 GiB"),
    "transpose(summary)'s flex module at 2^40": (
        ["compile", "tsummary.spat", "--n", str(2**40), "--target", "flex", "-o", "m.py"], 1,
        "needs at least 33.0 TiB, more than the memory budget of 2.0 GiB"),
    "transpose(summary)'s triton module at 2^40": (
        ["compile", "tsummary.spat", "--n", str(2**40), "--target", "triton", "-o", "m.py"], 1,
        "needs at least 33.0 TiB, more than the memory budget of 2.0 GiB"),
    # a grid sized by n lists its keys per cell: refused before the per-cell arrays (1 TiB at 2^40)
    "a video grid's png at 2^40": (["show", "video.spat", "--n", str(2**40), "--png", "v.png"], 1,
                                   "(137,438,953,472 cells) needs at least 12.0 TiB, more than the memory budget"),
    # bernoulli's exact counts evaluate n² pairs: refused up front (it ran for hours at 2^20)
    "check bernoulli at 2^20": (["check", "bernoulli.spat", "--n", str(2**20)], 1,
                                "check at n = 1,048,576 would list the keys of bernoulli(1, 4, seed=2) pair by pair: "
                                "1,099,511,627,776 pairs (n² per bernoulli), more than the 1,073,741,824"),
    # a grid's estimate leaves its key lists out: a lower bound, said "at least"; others "about"
    "check of a grid at 2^40": (["check", "natten.spat", "--n", str(2**40)], 1,
                                "check at n = 1,099,511,627,776 needs at least 192.0 TiB (arrays of n entries for "
                                "its largest head; the keys its grids list come on top)"),
    "check without a grid at 2^40": (["check", "p.spat", "--n", str(2**40)], 1,
                                     "check at n = 1,099,511,627,776 needs about 192.0 TiB (arrays of n entries for "
                                     "its largest head), over"),
    "show of a grid beyond a small budget": (["show", "stride.spat", "--n", str(2**20), "--memory-budget", "16M"], 1,
                                             "drawing n = 1,048,576 (whole rows of the mask, evaluated one at a time) "
                                             "needs at least 32.0 MiB, more than the memory budget of 16.0 MiB"),
    # an option given where it does nothing is refused, not ignored
    "target with emit ir": (["compile", "p.spat", "--n", "16", "--emit", "ir", "--target", "flex"], 2,
                            "--target does nothing with --emit ir (it prints the IR instead of compiling"),
    "torch, the default target, with emit ir": (["compile", "p.spat", "--n", "16", "--emit", "ir", "--target",
                                                 "torch"], 2, "--target does nothing with --emit ir"),
    "block size with emit ir": (["compile", "p.spat", "--n", "16", "--emit", "ir", "--block-size", "64"], 2,
                                "--block-size does nothing with --emit ir"),
    "memory budget with emit ir": (["compile", "p.spat", "--n", "16", "--emit", "ir", "--memory-budget", "1G"], 2,
                                   "--memory-budget does nothing with --emit ir"),
    "n, target and block size with emit ast": (["compile", "p.spat", "--emit", "ast", "--n", "16", "--target", "flex",
                                                "--block-size", "32"], 2,
                                               "--n, --target, --block-size do nothing with --emit ast (it prints the "
                                               "syntax tree, which is the same at every n: nothing is compiled)"),
    "m and memory budget with emit ast": (["compile", "p.spat", "--emit", "ast", "--m", "4", "--memory-budget", "1G"],
                                          2, "--m, --memory-budget do nothing with --emit ast"),
    "a file with list-targets": (["compile", "p.spat", "--list-targets"], 2,
                                 "FILE does nothing with --list-targets (it lists the targets and exits)"),
    "options with list-targets": (["compile", "--list-targets", "--n", "16", "-o", "t.txt", "--target", "flex"], 2,
                                  "--n, --target, -o do nothing with --list-targets"),
    "width with png": (["show", "p.spat", "--n", "16", "--png", "w.png", "--width", "40"], 2,
                       "--width does nothing with --png (it sets the width of the drawing in the terminal)"),
    "grid with json": (["layout", "p.spat", "--n", "16", "--grid", "--json"], 2,
                       "--grid does nothing with --json (the JSON holds the layouts' numbers"),
    "check budget without n": (["check", "p.spat", "--budget", "3"], 2,
                               "--budget does nothing without --n (the growth formula in n is read from the file"),
    "check memory budget and m without n": (["check", "p.spat", "--memory-budget", "1G", "--m", "3"], 2,
                                            "--m, --memory-budget do nothing without --n"),
    "check budget for a cross file": (["check", "cross.spat", "--n", "64", "--budget", "3"], 2,
                                      "--budget does nothing for a cross file (it bounds the searches for C1–C3"),
    "check memory budget under its floor": (["check", "p.spat", "--n", "16", "--memory-budget", "1G"], 2,
                                            "--memory-budget 1.0 GiB does nothing for check: it always allows itself "
                                            "4.0 GiB; a budget above that raises it"),
    "check memory budget over its floor": (["check", "p.spat", "--n", "16", "--memory-budget", "8G"], 0, ""),
    "check budget with n": (["check", "p.spat", "--n", "16", "--budget", "3"], 0, ""),
    "check json without n": (["check", "p.spat", "--json"], 0, ""),
    "emit ir of a cross file with m": (["compile", "crossm.spat", "--n", "64", "--m", "5", "--emit", "ir"], 0, ""),
    "emit ast to a file": (["compile", "p.spat", "--emit", "ast", "-o", "ast.txt"], 0, "wrote ast.txt: the AST"),
    "width without png": (["show", "p.spat", "--n", "16", "--width", "40"], 0, ""),
    "block size with png": (["show", "p.spat", "--n", "64", "--png", "b.png", "--block-size", "16"], 0, "wrote b.png"),
    "list-targets alone": (["compile", "--list-targets"], 0, ""),
    # an option given twice: argparse kept the last value, the first did nothing
    "n given twice": (["layout", "p.spat", "--n", "16", "--n", "32"], 2, "--n given twice: give it once"),
    "target given twice": (["compile", "p.spat", "--n", "16", "--target", "flex", "--target=triton", "-o", "m.py"],
                           2, "--target given twice: give it once"),
    "a flag given twice": (["layout", "p.spat", "--n", "16", "--grid", "--grid"], 2, "--grid given twice"),
    "an output given twice": (["mask", "p.spat", "--n", "16", "-o", "a.npy", "--output", "b.npy"], 2,
                              "--output given twice: give it once"),
    "fmt check and write": (["fmt", "--check", "--write", "p.spat"], 2, "not allowed with argument --check"),
    # check without --n
    "check an unknown name without n": (["check", "unknown.spat"], 1, "unknown primitive or function 'foo'"),
    "check mutual recursion without n": (["check", "recursive.spat"], 1, "recursive def: a → b → a"),
}

FILES = {
    "p.spat": "window(2)\n", "summary.spat": "summary(8, 2) | window(1)\n",
    "tsummary.spat": "transpose(summary(8, 2)) | transpose(causal)\n", "pic.png": "window(2)\n", "p.pt": "window(2)\n", "all.spat": "all\n",
    "random.spat": "random(1000, seed=1)\n", "unknown.spat": "foo(3)\n",
    "recursive.spat": "def a(x) = b(x)\ndef b(x) = a(x)\na(1)\n",
    "tr.spat": "transpose(random(3, seed=1)) | window(1)\n", "bernoulli.spat": "bernoulli(1, 4, seed=2)\n",
    "video.spat": "let s = max(2, isqrt(n) // 8 * 2)\ngrid(2, s, s, tile=(1, 2, 2)) { sliding_tiles3d(1, 3, 3) }\n",
    "natten.spat": "grid(64, 64, tile=(8, 8)) { natten(7, 7) }\n",
    "cross.spat": "queries 40\nwindow(8) | cols(0)\n", "crossm.spat": "queries m\nwindow(2)\n", "stride.spat": "grid(512, 512) { stride2d(2, 2) }\n",
    "empty.json": "{}\n", "list.json": "[]\n",
    "few.json": '{"n": 16, "heads": 1}\n', "bad.json": '{"n": 16,\n "format": }\n',
}


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "link.spat").symlink_to("p.spat")
    os.link(tmp_path / "p.spat", tmp_path / "hard.spat")
    (tmp_path / "sub").mkdir()
    with open(tmp_path / "huge.spat", "wb") as huge:  # 4 GB, sparse: nothing is written
        huge.truncate(4 << 30)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PATTERNDSL_MEMORY_BUDGET", raising=False)
    return tmp_path


def _snapshot(folder: Path) -> dict:
    return {path.name: path.read_bytes() for path in folder.iterdir()
            if path.is_file() and path.name != "huge.spat" and not path.is_symlink()}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_cli_hostile_input(name, scratch, capsys):
    argv, code, message = CLI_CASES[name]
    before = _snapshot(scratch)
    assert main([arg.format(dir=scratch) for arg in argv]) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and "internal error" not in err
    after = _snapshot(scratch)
    assert {k: after[k] for k in before} == before, "an input changed"
    assert not [p for p in scratch.iterdir() if p.name.endswith(".tmp")], "a temporary file was left"


# ---- the command line, in a subprocess: what could hang ----------------------------------

def _run(args, cwd, **kwargs):
    return subprocess.run([sys.executable, "-m", "patterndsl.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=HANG_GUARD, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)


def test_a_fifo_as_input_does_not_hang(scratch):
    os.mkfifo(scratch / "fifo.spat")
    result = _run(["show", "fifo.spat", "--n", "16"], scratch)
    assert result.returncode == 1
    assert "cannot read fifo.spat: not a regular file" in result.stderr


def test_endless_standard_input_is_cut_at_the_limit(scratch):
    with open("/dev/zero", "rb") as zeros:
        result = _run(["show", "-", "--n", "16"], scratch, stdin=zeros)
    assert result.returncode == 1
    assert "<stdin>:1:1: error: file too large: more than 262,144 characters" in result.stderr


def test_a_fifo_nobody_reads_as_the_output_does_not_hang(scratch):
    os.mkfifo(scratch / "out.npy")
    result = _run(["mask", "p.spat", "--n", "16", "-o", "out.npy"], scratch)
    assert result.returncode == 1
    assert "cannot write out.npy: No such device or address" in result.stderr
    assert stat.S_ISFIFO(os.stat(scratch / "out.npy").st_mode)


def test_suggestions_stay_linear_in_the_file(monkeypatch):
    """4,000 lines `let xK = strde` took 105 s: every error compared its name with every
    name in the file. Only the diagnostics shown get a suggestion, so the comparisons
    grow linearly with the file (counted, not timed)."""
    import patterndsl.resolve as resolve

    compared = []
    real = resolve.did_you_mean
    monkeypatch.setattr(resolve, "did_you_mean", lambda word, candidates: compared.append(len(candidates))
                        or real(word, candidates))

    def comparisons(lines: int) -> int:
        compared.clear()
        source = "".join(f"let x{k} = strde\n" for k in range(lines)) + "window(1)\n"
        with pytest.raises(SpatError) as info:
            patterndsl.compile(source, 16)
        assert info.value.message == "unknown name 'strde'" and "did you mean 'stride'?" in str(info.value)
        return sum(compared)

    small, large = comparisons(500), comparisons(2000)
    assert large <= 4.5 * small, (small, large)  # quadratic would be 16×


def test_emit_to_a_file_is_what_it_prints(scratch, capsys):
    assert main(["compile", "p.spat", "--n", "16", "--emit", "ir"]) == 0
    printed = capsys.readouterr().out
    assert main(["compile", "p.spat", "--n", "16", "--emit", "ir", "-o", "ir.txt"]) == 0
    assert (scratch / "ir.txt").read_text() == printed and capsys.readouterr().out == ""


def test_running_out_of_memory_is_a_diagnostic(scratch, capsys, monkeypatch):
    """Everything is checked against the memory budget first; a budget raised beyond what the
    machine has can still run out: a diagnostic that says so, exit 1, not an internal error."""
    import patterndsl.cli as cli

    def exhausted(args):
        raise MemoryError()

    monkeypatch.setitem(cli.COMMANDS, "layout", exhausted)
    assert main(["layout", "p.spat", "--n", "16", "--memory-budget", "1000T"]) == 1
    err = capsys.readouterr().err
    assert "error: out of memory: this machine could not provide what the memory budget of 1000.0 TiB allows" in err
    assert "lower the budget to the memory this machine has" in err and "internal error" not in err


def test_verify_keeps_a_primitive_without_an_encoding_as_intervals(monkeypatch):
    """verify read such a primitive (`segment`) as a dense [rows, n] array and one interval per
    key: 4 GiB for 256 rows at n = 2^20. Its keys are each row's runs, a few rows at a time
    (the pairs evaluated at once are counted, not timed)."""
    import numpy as np

    from patterndsl.verify import _DENSE_CELLS, _keys, _Meter

    n = 1 << 20
    node = patterndsl.compile("segment", n).pattern()
    # without segment ids verify reads `segment` as one interval per row; with ids it has no
    # encoding of its own and takes the path under test
    monkeypatch.setattr("patterndsl.verify._no_segment_ids", lambda: False)
    evaluated = []
    real = type(node).predicate
    monkeypatch.setattr(type(node), "predicate", lambda self, i, j, n: evaluated.append(np.broadcast_shapes(
        np.shape(i), np.shape(j))) or real(self, i, j, n))
    rows = np.arange(256, dtype=np.int64)
    keys = _keys(node, rows, n, _Meter(1 << 40))
    assert keys.own.tolist() == list(range(256)) and set(keys.lo.tolist()) == {0} and set(keys.hi.tolist()) == {n}
    assert evaluated and max(a * b for a, b in evaluated) <= _DENSE_CELLS


@pytest.mark.parametrize("source", ["segment_start(3)", "causal - segment", "segment & window(2)"])
def test_verify_fallback_runs_match_the_reference(source):
    """The runs read off each row are the row's keys exactly (against the dense reference)."""
    import numpy as np

    from patterndsl.verify import _keys, _Meter

    for n in (1, 2, 9, 40):
        compiled = patterndsl.compile(source, n)
        rows = np.arange(n, dtype=np.int64)
        keys = _keys(compiled.pattern(), rows, n, _Meter(1 << 40))
        got = np.zeros((n, n), dtype=bool)
        for own, lo, hi in zip(keys.own, keys.lo, keys.hi):
            got[own, lo:hi] = True
        assert np.array_equal(got, compiled.dense()), (source, n)


@pytest.mark.parametrize("source", ["segment & causal", "(segment & window(3)) | segment_start(2)",
                                    "causal - segment", "segment_start(3) | window(0)"])
@pytest.mark.parametrize("n", [1, 7, 70])
def test_verify_of_segment_patterns_holds(source, n):
    from patterndsl.analysis.check import check
    from patterndsl.verify import verify_report

    _, cert = check(patterndsl.compile(source, n), budget_seconds=1.0)
    assert verify_report(source, cert) == {"failures": [], "unchecked": []}


def test_check_work_pair_by_pair_is_counted_up_front():
    from patterndsl.analysis.check import CHECK_PAIRS, check, pair_by_pair_work

    at = patterndsl.compile("bernoulli(1, 4, seed=2) | transpose(bernoulli(1, 3, seed=5)) | window(1)", 1 << 14)
    assert pair_by_pair_work(at)[0] == 2 << 28
    assert pair_by_pair_work(patterndsl.compile("window(1) | random(2, seed=1)", 1 << 20))[0] == 0
    assert pair_by_pair_work(patterndsl.compile("bernoulli(1, 2)", 1 << 15))[0] == CHECK_PAIRS  # (allowed)
    with pytest.raises(SpatError, match="pairs \\(n² per bernoulli\\), more than the 1,073,741,824"):
        check(patterndsl.compile("bernoulli(1, 2) | window(2)", (1 << 15) + 1))


def test_verify_meters_a_grid_pair_as_the_work_it_is(monkeypatch):
    """verify reads a grid's rows pair by pair (rows × cells), a few dozen numpy passes a pair:
    metered at one unit each, the counts claim of sliding_tile_video at n = 2^20 (1.3·10^10
    pairs) ran 2^31 of them, 100 s of CPU, before it was unchecked (the hostile sweep's `verify
    video`). Now at _GRID_PAIR_UNITS each: a claim evaluates at most budget / 16 pairs. (The
    example's own operand is a box of cells, counted now by its volume: `| self` makes it none.)"""
    from patterndsl import verify
    from patterndsl.analysis.check import check

    source = (Path(__file__).parent.parent / "examples" / "sliding_tile_video.spat").read_text()
    compiled = patterndsl.compile(source.replace("sliding_tiles3d(3, 3, 3)", "sliding_tiles3d(3, 3, 3) | self"),
                                  1 << 20)
    _, cert = check(compiled, budget_seconds=1)
    pairs = []
    original = verify._grid_pairs
    monkeypatch.setattr(verify, "_grid_pairs", lambda node, i, j, n: pairs.append(len(i)) or original(node, i, j, n))
    budget = 1 << 26
    report = verify.verify_report(compiled, cert, max_work=budget)
    assert report["failures"] == [] and any(u.startswith("counts") for u in report["unchecked"])
    assert 0 < sum(pairs) <= 4 * budget // 16  # (at one unit a pair, the counts claim alone took `budget`)


def test_the_lower_bound_on_depth_stops_at_the_deadline():
    """layered_reach is O(n) per step and a 1024 × 1024 grid's window2d takes thousands of
    steps (minutes at n = 2^20, past check's --budget): it gives up at the deadline."""
    from patterndsl.analysis.structural import layered_reach
    from patterndsl.analysis.structural_deciders import budget_clock

    patterns = [patterndsl.compile("window(1)", 64).pattern()]
    assert layered_reach(patterns, 64, 0, 100) == (63, 63)  # S^63 of row 0 is [n]; token 63 is not in S^62
    patterns = [patterndsl.compile("window(1)", 64).pattern()]  # (not the rows the call above kept)
    assert layered_reach(patterns, 64, 0, 100, deadline=budget_clock() - 1) is None


# ---- the Python API: values ---------------------------------------------------------------

def _compiled():
    return patterndsl.compile("window(2)", 16)


API_CASES = {
    "memory budget as the CLI writes it": (lambda: patterndsl.compile("window(2)", 16, memory_budget="2G").memory_budget,
                                           2 << 30),
    "memory budget True": (lambda: patterndsl.compile("window(2)", 16, memory_budget=True),
                           "memory_budget must be a number of bytes"),
    "memory budget negative": (lambda: patterndsl.compile("window(2)", 16, memory_budget=-1),
                               "memory_budget must be a number of bytes"),
    "memory budget in words": (lambda: patterndsl.compile("window(2)", 16, memory_budget="lots"),
                               "memory_budget: not a size: 'lots'"),
    "at(None)": (lambda: _compiled().at(None), "n must be an integer, got None"),
    "at(1.5)": (lambda: _compiled().at(1.5), "n must be an integer, got 1.5"),
    "at(True)": (lambda: _compiled().at(True), "n must be an integer, got True"),
    "at('16')": (lambda: _compiled().at("16"), "n must be an integer, got '16'"),
    "at(0)": (lambda: _compiled().at(0), "n must be between 1 and 2^40, got 0"),
    "at(numpy 32)": (lambda: _compiled().at(np.int64(32)).n, 32),
    "block_size=(16,)": (lambda: _compiled().layout(block_size=(16,)), "block_size is an int or a (BQ, BK) pair"),
    "block_size=100": (lambda: _compiled().layout(block_size=100), "block size 100 is not a power of two ≥ 16"),
    "block_size=8": (lambda: _compiled().block_mask(block_size=8), "block size 8 is not a power of two ≥ 16"),
    "block_size=2^70": (lambda: _compiled().layout(block_size=2**70), "block size 1180591620717411303424 is beyond 2^62"),
    "block_size=2^62": (lambda: _compiled().layout(block_size=2**62).num_blocks, 1),
    "block_size=16.0": (lambda: _compiled().layout(block_size=16.0), "must be a positive integer"),
    "block_size=True": (lambda: _compiled().layout(block_size=True), "must be a positive integer"),
    "a file name as source": (lambda: patterndsl.compile("local.spat", n=64),
                              "a str is .spat source text; to read the file, pass a pathlib.Path"),
    "source of another type": (lambda: patterndsl.compile(b"window(2)", n=64),
                               "source must be .spat text (str) or a file (pathlib.Path), not bytes"),
    "a missing Path": (lambda: patterndsl.compile(Path("no/such.spat"), n=64), "cannot read no/such.spat"),
    "a device Path": (lambda: patterndsl.compile(Path("/dev/zero"), n=64), "not a regular file"),
    "additive mask as bool": (lambda: _compiled().additive_mask(dtype=torch.bool),
                              "it needs a floating-point dtype, got torch.bool"),
    "additive mask as int": (lambda: _compiled().additive_mask(dtype=torch.int32), "floating-point dtype"),
    "additive mask as float16": (lambda: _compiled().additive_mask(dtype=torch.float16).dtype, torch.float16),
    "layout at 2^40": (lambda: patterndsl.compile("window(1)", 2**40).layout(), "needs about 34.5 TiB"),
    "block mask at 2^26": (lambda: patterndsl.compile("window(1)", 2**26).block_mask(),
                           "a FlexAttention BlockMask at n = 67,108,864 in blocks of 128 × 128 needs about 4.0 TiB"),
    "dense mask at 2^20": (lambda: patterndsl.compile("window(1)", 2**20).mask(), "mask needs 1.0 TiB"),
    "layer -1": (lambda: _compiled().mask(layer=-1), "layer must be a non-negative integer"),
    "layer True": (lambda: _compiled().mask(layer=True), "layer must be a non-negative integer, got True"),
    "layer 2.0": (lambda: _compiled().layout(layer=2.0), "layer must be a non-negative integer, got 2.0"),
    "head as numpy": (lambda: _compiled().mask(head=np.int64(0)).shape, (16, 16)),
    "block mask on no device": (lambda: _compiled().block_mask(device="toaster"), "cannot use device 'toaster'"),
    "additive mask dtype by name": (lambda: _compiled().additive_mask(dtype="float32"), "floating-point dtype"),
    "parse of bytes": (lambda: patterndsl.parse(b"window(2)"), "source must be .spat text (str) or a file"),
    "format of None": (lambda: patterndsl.format(None), "source must be .spat text (str) or a file"),
    "SparseAttention of a missing Path": (lambda: patterndsl.SparseAttention(Path("no.spat"), 16, 2),
                                          "cannot read no.spat"),
    "SparseAttention of a number": (lambda: patterndsl.SparseAttention(12, 16, 2), "pattern must be a CompiledPattern"),
    "SparseAttention heads 0": (lambda: patterndsl.SparseAttention("window(2)", 16, 0), "num_heads must be an integer ≥ 1"),
    "attention with block 24": (lambda: patterndsl.attention(*_qkv(), _compiled(), block_size=24),
                                "block size 24 is not a power of two"),
    "head 5": (lambda: _compiled().mask(head=5), "head must be in 0..1, got 5"),
    "SparseAttention with a typo": (lambda: patterndsl.SparseAttention("windw(4)", 16, 2),
                                    "unknown primitive or function 'windw'"),
    "SparseAttention with a bad block": (lambda: patterndsl.SparseAttention("window(4)", 16, 2, block_size=24),
                                         "block size 24 is not a power of two"),
    "SparseAttention scale 'x'": (lambda: patterndsl.SparseAttention("window(4)", 16, 2, scale="x"),
                                  "scale must be None or a finite number, got 'x'"),
    "SparseAttention of numpy": (lambda: patterndsl.SparseAttention("window(4)", 16, 2)(np.zeros((1, 4, 16))),
                                 "x must be a torch.Tensor"),
    "SparseAttention float64 input": (
        lambda: patterndsl.SparseAttention("window(4)", 16, 2)(torch.zeros(1, 4, 16, dtype=torch.float64)),
        "x is torch.float64 on cpu but the layer's weights are torch.float32"),
    "SparseAttention flex on CPU with grad": (
        lambda: patterndsl.SparseAttention("window(4)", 16, 2, backend="flex")(torch.zeros(1, 4, 16)),
        "FlexAttention has no backward pass on CPU"),
    "verify_report of {}": (lambda: _verify("window(2)", {}),
                            {"failures": ["certificate: the object has none of the fields a certificate needs "
                                          "(format, source_sha256, n, layers, heads, prob, nonempty_rows, "
                                          "conditions): is it a file `patterndsl check --certificate` wrote?"],
                             "unchecked": []}),
    "verify_report of a list": (lambda: _verify("window(2)", [])["failures"][0].split(";")[0],
                                ("certificate: not a JSON object but an array")),
    # segment ids that are not a tensor, or have no values: the mask names them (AttributeError, NotImplementedError)
    "mask of numpy ids": (lambda: patterndsl.compile("segment & causal", 8).mask(segments=np.zeros((1, 8), dtype=int)),
                          "segments must be a torch tensor, got ndarray"),
    "mask of list ids": (lambda: patterndsl.compile("segment & causal", 8).mask(segments=[[0] * 8]),
                         "segments must be a torch tensor, got list"),
    "mask of meta ids": (lambda: patterndsl.compile("segment & causal", 8).mask(
        segments=torch.zeros(1, 8, dtype=torch.int32, device="meta")), "segments is a meta tensor"),
    "mask of 1-D ids": (lambda: patterndsl.compile("segment & causal", 8).mask(segments=torch.zeros(8, dtype=torch.int8)),
                        "segments has shape (8,), but the call needs [B, n] = [B, 8]"),
    "mask of no rows of ids": (lambda: tuple(patterndsl.compile("segment & causal", 8).mask(
        segments=torch.zeros(0, 8, dtype=torch.int32)).shape), (0, 8, 8)),
    "a grid's layout at 2^40": (lambda: patterndsl.compile("grid(64, 64, tile=(8, 8)) { natten(7, 7) }", 2**40)
                                .layout(), "needs at least 33.0 TiB"),
    "transpose(summary) layout at 2^40": (lambda: patterndsl.compile("transpose(summary(8, 2)) | window(1)", 2**40)
                                          .layout(), "needs at least 33.0 TiB"),
    "transpose(random) layout at 2^26": (
        lambda: patterndsl.compile("transpose(random(3, seed=1)) | window(1)", 2**26).layout(), "needs about 32.2 GiB"),
}


def _verify(source, cert):
    from patterndsl.verify import verify_report

    return verify_report(source, cert)


@pytest.mark.parametrize("name", sorted(API_CASES))
def test_python_api_hostile_values(name):
    call, expected = API_CASES[name]
    if isinstance(expected, str) and not name.startswith("verify_report"):  # (a report is returned, not raised)
        with pytest.raises(SpatError) as info:
            call()
        assert expected in str(info.value)
    else:
        assert call() == expected


# ---- the Python API: q, k, v, everywhere ---------------------------------------------------

def _qkv(q_shape=(1, 2, 16, 8), k_shape=None, dtype=torch.float32):
    k_shape = k_shape or q_shape
    return torch.zeros(q_shape, dtype=dtype), torch.zeros(k_shape, dtype=dtype), torch.zeros(k_shape, dtype=dtype)


TENSOR_CASES = {
    "numpy q": (lambda: (np.zeros((1, 2, 16, 8)),) + _qkv()[1:], {}, "q must be a torch.Tensor, got numpy.ndarray"),
    "a list k": (lambda: (_qkv()[0], [[0.0]], _qkv()[2]), {}, "k must be a torch.Tensor, got list"),
    "int tensors": (lambda: _qkv(dtype=torch.int64), {}, "q has dtype int64"),
    "bool tensors": (lambda: _qkv(dtype=torch.bool), {}, "q has dtype bool"),
    "mixed dtypes": (lambda: (_qkv()[0].half(),) + _qkv()[1:], {}, "must share one dtype"),
    "three dimensions": (lambda: _qkv((2, 16, 8)), {}, "must be shaped [batch, heads, n, head_dim]"),
    "[B, n, H, D]": (lambda: _qkv((1, 16, 2, 8)), {}, "look shaped [batch, n, heads, head_dim]"),
    # another n for all three is not an error (the pattern at that n: compiled.at); more queries than keys is
    "q beyond the keys": (lambda: _qkv((1, 2, 17, 8), (1, 2, 16, 8)), {}, "16 keys"),
    "batch 1 against 2": (lambda: _qkv((1, 2, 16, 8), (2, 2, 16, 8)), {}, "same batch size; got 1, 2, 2"),
    "head_dim mismatch": (lambda: _qkv((1, 2, 16, 8), (1, 2, 16, 4)), {}, "same head_dim; got 8 and 4"),
    "k and v differ": (lambda: (_qkv()[0], _qkv()[1], torch.zeros(1, 1, 16, 8)), {}, "k and v must be shaped alike"),
    "3 heads over 2": (lambda: _qkv((1, 3, 16, 8), (1, 2, 16, 8)), {}, "key/value heads (2) must divide query heads (3)"),
    "no kv heads": (lambda: _qkv((1, 2, 16, 8), (1, 0, 16, 8)), {}, "key/value heads (0) must divide"),
    "empty head_dim": (lambda: _qkv((1, 2, 16, 0)), {}, "head_dim must be at least 1, got 0"),
    "two devices": (lambda: (_qkv()[0].to("meta"),) + _qkv()[1:], {}, "must be on one device"),
    "scale 'x'": (lambda: _qkv(), {"scale": "x"}, "scale must be None or a finite number, got 'x'"),
    "scale nan": (lambda: _qkv(), {"scale": float("nan")}, "scale must be None or a finite number"),
    "scale True": (lambda: _qkv(), {"scale": True}, "scale must be None or a finite number"),
    "compiled None": (lambda: _qkv(), {"compiled": None}, "compiled must be a CompiledPattern, got NoneType"),
    "layer -1": (lambda: _qkv(), {"layer": -1}, "layer must be a non-negative integer"),
}


def _entry_points():
    from patterndsl.targets import flex

    def module_attention(q, k, v, compiled, layer=0, scale=None):
        namespace: dict = {}
        exec(compile(flex.emit_module(compiled), "generated", "exec"), namespace)
        try:
            return namespace["attention"](q, k, v, layer=layer, scale=scale)
        except ValueError as exc:  # the generated module knows no SpatError
            raise SpatError(patterndsl.errors.Diagnostic(str(exc))) from None

    return {"attention_reference": patterndsl.attention_reference, "attention": patterndsl.attention,
            "flex module": module_attention}


@pytest.mark.parametrize("entry", ["attention_reference", "attention", "flex module"])
@pytest.mark.parametrize("name", sorted(TENSOR_CASES))
def test_every_entry_point_rejects_the_same_inputs(entry, name):
    make, options, message = TENSOR_CASES[name]
    q, k, v = make()
    compiled = options.get("compiled", _compiled())
    if entry == "flex module" and compiled is None:
        pytest.skip("a generated module is its own pattern")
    call = _entry_points()[entry]
    with pytest.raises(SpatError) as info:
        call(q, k, v, compiled, layer=options.get("layer", 0), scale=options.get("scale"))
    assert message in str(info.value)


def test_the_transpose_hint_names_the_fix():
    q, k, v = _qkv((1, 16, 2, 8))
    with pytest.raises(SpatError) as info:
        patterndsl.attention_reference(q, k, v, _compiled())
    assert info.value.help == "inputs shaped [batch, n, heads, head_dim] need .transpose(1, 2) first"
    assert "compiled.at(n)" not in str(info.value)


def test_float64_is_fine_for_the_reference_only():
    q, k, v = _qkv(dtype=torch.float64)
    out = patterndsl.attention_reference(q, k, v, _compiled())
    assert out.dtype == torch.float64
    with pytest.raises(SpatError, match="q has dtype float64"):
        patterndsl.attention(q, k, v, _compiled())


# ---- memory refusals: "about" an estimate, "at least" a lower bound -----------------------

GRID_SOURCES = ("grid(64, 64, tile=(8, 8)) { natten(7, 7) }", "let s = isqrt(n)\ngrid(s, s) { window2d(1, 2) }",
                "grid(16, 8, order=morton) { stride2d(2, 3) & causal } | window(1)",
                "grid(4, 4, 4) { window3d(1, 1, 1) } | global(0)")


@pytest.mark.parametrize("source", GRID_SOURCES)
@pytest.mark.parametrize("n, block", [(4096, 16), (1 << 16, 128)])
def test_a_grid_layout_refused_early_reports_a_lower_bound(source, n, block):
    """Over a budget the block rows alone pass, a grid's layout is refused from those: an
    AtLeast, no larger than the whole estimate (which is "about"), and worded "at least"."""
    from patterndsl.layout import layout_memory
    from patterndsl.reference import AtLeast, require_memory

    pattern = patterndsl.compile(source, n).pattern()
    early, whole = layout_memory(pattern, n, block, block, budget=1), layout_memory(pattern, n, block, block)
    assert isinstance(early, AtLeast) and not isinstance(whole, AtLeast)
    assert early <= whole
    for needed, word in ((early, "at least"), (whole, "about")):
        with pytest.raises(SpatError) as raised:
            require_memory("it", needed, 1, "help")
        assert f"it needs {word} " in str(raised.value)


@pytest.mark.parametrize("source, lower", [(GRID_SOURCES[0], True), (GRID_SOURCES[3], True),
                                           ("window(2) | global(0)", False), ("blocks(16) { causal }", False)])
def test_check_memory_is_a_lower_bound_exactly_when_a_grid_lists_keys(source, lower):
    from patterndsl.analysis.check import memory_needed
    from patterndsl.reference import AtLeast

    assert isinstance(memory_needed(patterndsl.compile(source, 256)), AtLeast) == lower


# ---- the sweep's own verdicts: CPU time, not wall time ------------------------------------

def _sweep():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hostile_sweep", ROOT / "scripts" / "hostile_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sweep_calls_a_run_that_waits_without_cpu_a_hang(monkeypatch):
    sweep = _sweep()
    monkeypatch.setattr(sweep, "WALL_KILL", 2)  # the wall-time guard: 2 s for a limit of 1 s
    done = sweep.measured_run(["sleep", str(HANG_GUARD)], 1.0)
    assert done["killed"] == "hang" and done["rc"] is None
    assert sweep.killed_verdict(done, 1.0) == "HANG (wall > 2 s, under 1% of a core at the end)"


def test_the_sweep_stops_a_run_at_twice_its_cpu_limit(monkeypatch):
    """Also past the wall-time guard: a run still computing (starved of CPU on a loaded
    machine, here given a guard of 1 s) is no hang; only its CPU limit stops it."""
    sweep = _sweep()
    monkeypatch.setattr(sweep, "WALL_KILL", 1)
    monkeypatch.setattr(sweep, "WALL_CAP", HANG_GUARD)
    done = sweep.measured_run([sys.executable, "-c", "while True: pass"], 1.0)
    assert done["killed"] == "cpu" and done["cpu"] >= sweep.CPU_KILL * 1.0 - 1
    assert sweep.killed_verdict(done, 1.0) == "TIMEOUT (CPU > 2 s)"


def test_the_sweep_reads_a_run_that_ends_whole():
    done = _sweep().measured_run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); "
                                                        "sys.exit(3)"], 60.0)
    assert (done["rc"], done["stdout"], done["stderr"], done["killed"]) == (3, "out\n", "err\n", None)
    assert 0 < done["cpu"] < 60
