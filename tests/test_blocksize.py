"""One block-size policy: a file's `block`, `--block-size`, `block_size=` and every target
accept and refuse the same sizes (patterndsl/blocksize.py)."""
import pytest

import patterndsl
from patterndsl import SpatError
from patterndsl.blocksize import is_block_size
from patterndsl.cli import main
from patterndsl.targets import TARGETS, target_names

ACCEPTED = [16, 32, 64, 128, 256, 1024]
REFUSED = [-16, 0, 1, 8, 15, 17, 24, 48, 100, 129, 1000]


def file_accepts(size: int) -> bool:
    try:
        patterndsl.compile(f"block {size}\nwindow(2)", 64)
    except SpatError as exc:
        assert exc.message in (f"block size {size} is not a power of two ≥ 16",
                               f"a block size must be a positive integer, a power of two ≥ 16; got {size}"), exc.message
        return False
    return True


def python_accepts(size: int) -> bool:
    compiled = patterndsl.compile("window(2)", 64)
    outcomes = set()
    for call in (lambda: compiled.layout(block_size=size), lambda: compiled.block_sizes((size, 16)),
                 lambda: compiled.block_sizes((16, size))):
        try:
            call()
            outcomes.add(True)
        except SpatError as exc:
            assert "power of two ≥ 16" in exc.message, exc.message
            outcomes.add(False)
    assert len(outcomes) == 1, "block_size= decides the same for BQ, BK and a square block"
    return outcomes.pop()


def cli_accepts(size: int, capsys) -> bool:
    code = main(["layout", "examples/star.spat", "--n", "64", "--block-size", str(size)])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert "power of two ≥ 16" in err, err
    return code == 0


def target_accepts(name: str, size: int) -> bool:
    return TARGETS[name].block_size_problem(size) is None


@pytest.mark.parametrize("size", ACCEPTED + REFUSED)
def test_every_door_takes_the_same_sizes(size, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parent.parent)
    expected = size in ACCEPTED
    assert is_block_size(size) is expected
    assert file_accepts(size) is expected
    assert python_accepts(size) is expected
    assert cli_accepts(size, capsys) is expected
    for name in target_names():
        target = TARGETS[name]
        if target.block_sparse:
            assert target_accepts(name, size) is expected, name
        else:
            assert target.block_size_problem(size) == f"the {name} target is dense: it has no blocks"


def test_targets_declare_whether_they_are_block_sparse():
    target_names()
    assert {name: TARGETS[name].block_sparse for name in TARGETS} == {"torch": False, "flex": True, "triton": True}


def test_the_cli_passes_the_block_size_to_a_block_sparse_target(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parent.parent)
    out = tmp_path / "star_flex.py"
    assert main(["compile", "examples/star.spat", "--n", "64", "--target", "flex", "--block-size", "16x32",
                 "-o", str(out)]) == 0
    assert "BLOCK_SIZE = (16, 32)" in out.read_text()
    assert main(["compile", "examples/star.spat", "--n", "64", "--target", "torch", "--block-size", "16"]) == 2
    assert "the torch target is dense: it has no blocks" in capsys.readouterr().err


def test_non_integers_are_refused_with_their_value():
    compiled = patterndsl.compile("window(2)", 64)
    for value in (16.0, "16", True, [16, 16, 16]):
        with pytest.raises(SpatError):
            compiled.layout(block_size=value)
