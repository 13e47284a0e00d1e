"""Print the README's table of the primitives: `python scripts/primitive_table.py`.

One row per form of each registered primitive, in the registry's order, from the
primitive's own `meaning` (patterndsl/primitives.py). tests/test_packaging.py
checks that README.md holds exactly this output.
"""
from __future__ import annotations

from patterndsl.primitives import PRIMITIVES


def table() -> str:
    lines = ["| primitive | (i, j) is in the pattern exactly when |", "|---|---|"]
    for cls in PRIMITIVES.values():
        for call, meaning in cls.meaning:
            escaped = meaning.replace("|", "\\|")  # a bar would end the Markdown cell
            lines.append(f"| `{call}` | {escaped} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
