"""The package as users get it: a built wheel carries the grammar and works on its own;
the README documents every primitive."""
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from patterndsl.primitives import PRIMITIVES

ROOT = Path(__file__).parent.parent


def test_wheel_ships_the_grammar_and_compiles(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path)], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{build.stderr}")
    wheel = next(tmp_path.glob("patterndsl-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "patterndsl/grammar/spat.lark" in names
        assert any(name.endswith("entry_points.txt") for name in names)
        archive.extractall(tmp_path / "site")
    # Import from the unpacked wheel only (not the source tree): the grammar must be found there.
    check = subprocess.run(
        [sys.executable, "-c",
         "import patterndsl, sys; c = patterndsl.compile('window(1) | global(0)', n=6); "
         "assert patterndsl.__file__.startswith(sys.argv[1]), patterndsl.__file__; "
         "print(int(c.mask().sum()))", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""})
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "24"


def test_readme_documents_every_primitive():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Primitives"):readme.index("### Operators")]
    documented = set(re.findall(r"^\| `([a-z_][a-z_0-9]*)", table, flags=re.M))
    assert documented == set(PRIMITIVES)


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_primitive_table_is_generated_from_the_registry():
    """README's primitive table is the output of scripts/primitive_table.py."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Primitives"):readme.index("### Operators")]
    assert _script("primitive_table").table() in table


def test_readme_grid_table_is_generated_from_the_grid_registry():
    """README's table of the grid primitives is the second output of scripts/primitive_table.py."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Patterns over grids"):readme.index("### Integer expressions")]
    assert _script("primitive_table").grid_table() in section


def test_the_table_regex_sees_every_name():
    names = re.findall(r"^\| `([a-z_][a-z_0-9]*)", "| `block_random(b, r)` | x |\n| `all` | y |\n", flags=re.M)
    assert names == ["block_random", "all"]


def test_readme_commands_are_the_ci_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install torch==2.13.0 && pip install -e '.[dev]'" in readme
    assert "python -m pytest" in readme and "python -m pytest" in ci
    assert "torch==2.13.0" in ci and "-e '.[dev,hf]'" in ci  # CI also runs the Hugging Face tests
    assert ci.index("torch==2.13.0") < ci.index("-e '.[dev,hf]'")  # the CPU build of torch first


def test_readme_examples_table_is_current():
    """README's table of the examples is the output of scripts/examples_table.py."""
    assert _script("examples_table").table() in (ROOT / "README.md").read_text()
