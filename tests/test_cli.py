"""The `patterndsl` command: golden files for its output, exit codes, files it writes.

Regenerate the golden files with PATTERNDSL_REGEN_GOLDEN=1 (then read the diff).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from patterndsl.cli import main

ROOT = Path(__file__).parent.parent
GOLDEN = Path(__file__).parent / "golden" / "cli"

# name → (argv, expected exit code); stdout and stderr are compared with NAME.out / NAME.err
CASES = {
    "show_strided_16": (["show", "examples/strided.spat", "--n", "16", "--width", "80"], 0),
    "show_design_card_512": (["show", "examples/design_card.spat", "--n", "512", "--width", "72"], 0),
    "show_bigbird_300": (["show", "examples/bigbird.spat", "--n", "300", "--width", "60"], 0),
    "show_heads": (["show", "tests/golden/cli/heads.spat", "--n", "12", "--width", "40"], 0),
    "emit_ir_bigbird": (["compile", "examples/bigbird.spat", "--n", "300", "--emit", "ir"], 0),
    "emit_ir_heads": (["compile", "tests/golden/cli/heads.spat", "--n", "64", "--emit", "ir"], 0),
    "emit_ir_unsimplified": (["compile", "tests/golden/cli/heads.spat", "--n", "64", "--emit", "ir",
                              "--no-simplify"], 0),
    "emit_ast_star": (["compile", "examples/star.spat", "--emit", "ast"], 0),
    "fmt_messy": (["fmt", "tests/golden/cli/messy.spat"], 0),
    "fmt_check_messy": (["fmt", "--check", "tests/golden/cli/messy.spat"], 1),
    "list_targets": (["compile", "--list-targets"], 0),
    "error_input": (["mask", "tests/golden/cli/broken.spat", "--n", "64"], 1),
    "error_values": (["mask", "tests/golden/cli/broken_values.spat", "--n", "64"], 1),
    "check_star": (["check", "examples/star.spat", "--n", "64"], 0),
    "check_strided": (["check", "examples/strided.spat", "--n", "256"], 3),
    "check_heads": (["check", "tests/golden/cli/heads.spat", "--n", "40"], 3),
    "check_growth_without_n": (["check", "examples/strided.spat"], 0),
    "check_growth_heads": (["check", "tests/golden/cli/heads.spat"], 0),
    "error_budget": (["mask", "examples/strided.spat", "--n", "70000"], 1),
    "error_unknown_target": (["compile", "examples/star.spat", "--n", "8", "--target", "trch"], 2),
    "error_missing_file": (["show", "tests/golden/cli/no_such_file.spat", "--n", "8"], 1),
    "error_emit_ir_needs_n": (["compile", "examples/star.spat", "--emit", "ir"], 2),
    "layout_fixed_grid": (["layout", "examples/fixed.spat", "--n", "512", "--block-size", "64x32", "--grid"], 0),
    "layout_heads": (["layout", "tests/golden/cli/heads.spat", "--n", "1024"], 0),
    "layout_design_card": (["layout", "examples/design_card.spat", "--n", "4096"], 0),
    "error_layout_block_size": (["layout", "examples/star.spat", "--n", "64", "--block-size", "8x8x8"], 2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_output(name, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("PATTERNDSL_MEMORY_BUDGET", raising=False)
    argv, expected_code = CASES[name]
    code = main(argv)
    captured = capsys.readouterr()
    for suffix, text in ((".out", captured.out), (".err", captured.err)):
        path = GOLDEN / (name + suffix)
        if os.environ.get("PATTERNDSL_REGEN_GOLDEN"):
            if text:
                path.write_text(text)
            elif path.exists():
                path.unlink()
        expected = path.read_text() if path.exists() else ""
        assert text == expected, f"{name}{suffix} differs from the golden file"
    assert code == expected_code
    assert "Traceback" not in captured.err


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["mask", "examples/star.spat"]) == 2  # --n missing
    assert main(["show", "examples/star.spat", "--n", "0"]) == 2
    assert main(["frobnicate"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_mask_writes_layers_heads_n_n(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "mask.npy"
    assert main(["mask", "tests/golden/cli/heads.spat", "--n", "40", "-o", str(out)]) == 0
    masks = np.load(out)
    assert masks.dtype == bool and masks.shape == (2, 4, 40, 40)
    import patterndsl

    expected = patterndsl.compile(Path("tests/golden/cli/heads.spat"), n=40).dense_all()
    assert np.array_equal(masks, expected)


def test_mask_default_output_name(tmp_path, monkeypatch):
    source = tmp_path / "local.spat"
    source.write_text("window(2)\n")
    monkeypatch.chdir(tmp_path)
    assert main(["mask", "local.spat", "--n", "10"]) == 0
    assert np.load(tmp_path / "local.npy").shape == (1, 1, 10, 10)


def test_compile_torch_target(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "masks.pt"
    assert main(["compile", "examples/strided.spat", "--n", "32", "--target", "torch", "-o", str(out)]) == 0
    saved = torch.load(out)
    assert saved["masks"].shape == (2, 1, 32, 32) and saved["masks"].dtype == torch.bool


def test_fmt_write_and_stdin(tmp_path, monkeypatch, capsys):
    path = tmp_path / "m.spat"
    path.write_text("window( 3 )|causal   # keep me\n")
    assert main(["fmt", "--check", str(path)]) == 1
    assert main(["fmt", "--write", str(path)]) == 0
    assert path.read_text() == "window(3) | causal  # keep me\n"
    assert main(["fmt", "--check", str(path)]) == 0
    capsys.readouterr()
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"self|causal\n")))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == "self | causal\n"


def test_write_failure_is_an_input_error(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["mask", "examples/star.spat", "--n", "8", "-o", "/nonexistent/dir/m.npy"]) == 1
    assert "cannot write /nonexistent/dir/m.npy" in capsys.readouterr().err


def test_console_script_runs(tmp_path):
    """The installed `patterndsl` command, in a subprocess: diagnostics and exit code."""
    bad = tmp_path / "bad.spat"
    bad.write_text("window(64) | strde(128)\n")
    result = subprocess.run([sys.executable, "-m", "patterndsl.cli", "show", str(bad), "--n", "64"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert f"{bad}:1:14: error: unknown primitive or function 'strde'" in result.stderr
    assert "did you mean 'stride'" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_json_and_certificate_round_trip(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.chdir(ROOT)
    cert = tmp_path / "cert.json"
    code = main(["check", "examples/strided.spat", "--n", "64", "--json", "--certificate", str(cert)])
    report = json.loads(capsys.readouterr().out)
    assert code == 3  # causal: query 0 never receives any later token
    assert report["n"] == 64 and report["layers"] == 2 and report["heads"] == 1
    assert report["connections"]["per_layer"] == [[484], [288]]
    assert report["conditions"][0]["finite_depth"]["holds"] is False
    assert report["prob"] == {"name": "softmax", "assumption2": True}
    assert report["growth"] == "O(n^1.5)" and report["growth_detail"]["tight"] is True
    assert main(["verify", "examples/strided.spat", str(cert)]) == 0
    # a corrupted claim fails the independent check
    data = json.loads(cert.read_text())
    data["conditions"][0]["finite_depth"] = {"holds": True, "s": 2, "s_bounds": [2, 2], "evidence": {}}
    cert.write_text(json.dumps(data))
    assert main(["verify", "examples/strided.spat", str(cert)]) == 3
    assert "FAILED" in capsys.readouterr().out


def test_verify_rejects_junk_certificate(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    assert main(["verify", "examples/star.spat", str(junk)]) == 1
    assert "cannot read the certificate" in capsys.readouterr().err


def test_compiling_for_a_block_sparse_target_warns_of_low_block_efficiency(tmp_path, capsys):
    design_card = str(ROOT / "examples" / "design_card.spat")
    assert main(["compile", design_card, "--n", "4096", "--target", "flex", "-o", str(tmp_path / "m.py")]) == 0
    err = capsys.readouterr().err
    assert "warning: layer 0: block efficiency 7.8% with 64 × 64 blocks" in err
    assert "help: block 16 gives 26.2%" in err
    longformer = str(ROOT / "examples" / "longformer.spat")
    assert main(["compile", longformer, "--n", "4096", "--target", "flex", "-o", str(tmp_path / "l.py")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_layout_json(capsys):
    import json

    fixed = str(ROOT / "examples" / "fixed.spat")
    assert main(["layout", fixed, "--n", "512", "--block-size", "64x32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["layer"], r["head"], r["block_q"], r["block_k"]) for r in report] == [(0, 0, 64, 32), (1, 0, 64, 32)]
    assert report[0]["full"] == 8 and report[0]["partial"] == 16 and report[0]["warning"] is None
    assert report[1]["efficiency"] == report[1]["connections"] / report[1]["computed_pairs"]
    assert "block 16 gives" in report[1]["warning"]["help"]


def test_version_and_list_targets_without_a_file(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"patterndsl {version('patterndsl')}\n"
    assert main(["compile", "--list-targets"]) == 0
    assert capsys.readouterr().out == (GOLDEN / "list_targets.out").read_text()


def test_a_failed_write_leaves_the_old_output_whole_and_no_temporary(tmp_path, monkeypatch, capsys):
    """Outputs are written beside the target and renamed: a write that fails half-way
    leaves the previous file as it was; a reader during the write sees the old file."""
    import patterndsl.cli as cli

    out = tmp_path / "m.npy"
    out.write_bytes(b"previous")
    seen_during_write = []

    def half_then_fail(path, array):
        seen_during_write.append(out.read_bytes())
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "_save_npy", half_then_fail)
    assert main(["mask", str(ROOT / "examples/star.spat"), "--n", "8", "-o", str(out)]) == 1
    assert f"cannot write {out}: No space left on device" in capsys.readouterr().err
    assert seen_during_write == [b"previous"] and out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"]


def test_writes_through_a_symlink_replace_its_target_and_keep_the_mode(tmp_path):
    target = tmp_path / "real.npy"
    target.write_bytes(b"old")
    target.chmod(0o640)
    (tmp_path / "link.npy").symlink_to("real.npy")
    assert main(["mask", str(ROOT / "examples/star.spat"), "--n", "8", "-o", str(tmp_path / "link.npy")]) == 0
    assert (tmp_path / "link.npy").is_symlink()
    assert np.load(target).shape == (1, 1, 8, 8)
    assert (target.stat().st_mode & 0o777) == 0o640


def test_mask_output_keeps_the_name_given(tmp_path, capsys):
    out = tmp_path / "out.bin"
    assert main(["mask", str(ROOT / "examples/star.spat"), "--n", "8", "-o", str(out)]) == 0
    assert f"wrote {out}:" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert np.load(out).shape == (1, 1, 8, 8)


def test_module_names_are_importable(tmp_path, monkeypatch, capsys):
    source = tmp_path / "my-pattern.v2.spat"
    source.write_text("window(2)\n")
    monkeypatch.chdir(tmp_path)
    assert main(["compile", source.name, "--n", "32", "--target", "flex"]) == 0
    assert (tmp_path / "my_pattern_v2_flex.py").exists()
    assert "warning" not in capsys.readouterr().err
    assert main(["compile", source.name, "--n", "32", "--target", "flex", "-o", "my-mod.py"]) == 0
    assert ("warning: my-mod.py cannot be imported as a module: 'my-mod' is not a Python name\n"
            "  help: name it e.g. my_mod.py") in capsys.readouterr().err


def test_layout_json_warnings_are_diagnostics(capsys):
    import json

    assert main(["layout", str(ROOT / "examples/design_card.spat"), "--n", "4096", "--json"]) == 0
    warning = json.loads(capsys.readouterr().out)[0]["warning"]
    assert warning["severity"] == "warning"
    assert warning["message"].startswith("block efficiency 7.8% with 64 × 64 blocks")
    assert warning["help"].startswith("block 16 gives 26.2%")
