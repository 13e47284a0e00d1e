"""Print the README's table of the examples: `python scripts/examples_table.py`.

For every file in examples/: p (layers), the exact connections at n = 4096 (per
layer, and the union when p > 1), the growth class, and Yun et al.'s conditions
C1, C2, C3 (with s) from `patterndsl check`. tests/test_packaging.py checks that
README.md holds exactly this output.
"""
from __future__ import annotations

from pathlib import Path

import patterndsl
from patterndsl.analysis.check import check

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
N = 4096


def _verdict(claims, name) -> str:
    values = [claim[name] for claim in claims]
    if name == "finite_depth":
        texts = []
        for c in values:
            if c["holds"] is True:
                texts.append(f"yes, s = {c['s']}" if c.get("s") is not None
                             else f"yes, {c['s_bounds'][0]} ≤ s ≤ {c['s_bounds'][1]}")
            else:
                texts.append({False: "no", None: "undecided"}[c["holds"]])
    else:
        texts = [{True: "yes", False: "no", None: "undecided"}[c["holds"]] for c in values]
    return " / ".join(dict.fromkeys(texts))


def table() -> str:
    lines = [f"| example | p | connections at n = {N:,} | growth | C1 self-loops | C2 Hamiltonian path | C3 finite depth |",
             "|---|---|---|---|---|---|---|"]
    for path in sorted(EXAMPLES.glob("*.spat")):
        report, _ = check(patterndsl.compile(path, n=N))
        per_layer = [f"{count:,}" for heads in report["connections"]["per_layer"] for count in dict.fromkeys(heads)]
        connections = " + ".join(per_layer)
        if report["layers"] > 1:
            connections += f" (union {report['connections']['union'][0]:,})"
        conditions = report["conditions"]
        lines.append(f"| {path.stem} | {report['layers']} | {connections} | {report['growth_detail']['bound']} | "
                     f"{_verdict(conditions, 'self_loops')} | {_verdict(conditions, 'hamiltonian_path')} | "
                     f"{_verdict(conditions, 'finite_depth')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(), end="")
