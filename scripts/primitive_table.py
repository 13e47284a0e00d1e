"""Print the README's tables of the primitives: `python scripts/primitive_table.py`.

One row per form of each registered primitive, in the registry's order, from the
primitive's own `meaning` (patterndsl/primitives.py); then, the same way, the
grid primitives (patterndsl/grid.py's registry, which only `grid { }` reads).
tests/test_packaging.py checks that README.md holds exactly this output: the first
table under "### Primitives", the second under "### Patterns over grids".
"""
from __future__ import annotations

from patterndsl.grid import GRID_PRIMITIVES
from patterndsl.primitives import PRIMITIVES


def _rows(registry) -> list[str]:
    lines = []
    for cls in registry.values():
        for call, meaning in cls.meaning:
            escaped = meaning.replace("|", "\\|")  # a bar would end the Markdown cell
            lines.append(f"| `{call}` | {escaped} |")
    return lines


def table() -> str:
    lines = ["| primitive | (i, j) is in the pattern exactly when |", "|---|---|"]
    return "\n".join(lines + _rows(PRIMITIVES))


def grid_table() -> str:
    """The grid primitives: (r, c) or (f, r, c) are the coordinates of the cells of i and j."""
    lines = ["| call | (i, j) is connected exactly when |", "|---|---|"]
    return "\n".join(lines + _rows(GRID_PRIMITIVES))


if __name__ == "__main__":
    print(table())
    print()
    print(grid_table())
