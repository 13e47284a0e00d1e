"""stride2d and Morton-order grids at scale (grid12d): every command, one process each.

    python benchmarks/grid12d_scale.py [--tree /path/to/checkout] [--timeout 300] [--only stride morton]

(--only takes the names of FILES, e.g. "morton, raised budget" "raster, raised budget".)

Each case is the command line a user runs (`python -m patterndsl.cli COMMAND FILE --n N …`) in
a fresh subprocess reaped with os.wait4 (benchmarks/check_scale.py `measured`): its exit, wall
and CPU seconds (user + sys) and peak RSS, and the refusal when it refused. --tree runs another
checkout (PYTHONPATH) for before/after numbers in the same session; read the CPU seconds on a
shared machine. Want: each command finishes, or refuses promptly with the size it would need.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_scale import measured  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FILES = {
    "stride": ("grid(4096, 4096) { stride2d(64, 64) | window2d(1, 1) }\n", [1 << 24]),
    "morton": ("grid(8192, 8192, order=morton) { natten(7, 7) }\n", [1 << 26, 1 << 30]),
    "morton, raised budget": ("grid(8192, 8192, order=morton) { natten(7, 7) }\n", [1 << 26]),
    "stride, morton": ("grid(4096, 4096, order=morton) { stride2d(64, 64) | window2d(1, 1) }\n", [1 << 24]),
    "raster, raised budget": ("grid(8192, 8192) { natten(7, 7) }\n", [1 << 26]),
    "stride, raster": ("grid(4096, 4096) { stride2d(64, 64) | window2d(1, 1) }\n", [1 << 24]),  # its rival
}
RAISED = [["layout", "--block-size", "4096", "--memory-budget", "16G"],
          ["compile", "--target", "flex", "--block-size", "4096", "--memory-budget", "16G"],
          ["compile", "--target", "flex", "--memory-budget", "16G"]]
COMMANDS = {
    "stride": [["check"], ["layout"], ["layout", "--block-size", "4096"], ["compile", "--target", "flex"],
               ["compile", "--target", "flex", "--block-size", "4096"]],
    "morton": [["check"], ["layout"], ["layout", "--block-size", "4096"], ["compile", "--target", "flex"],
               ["compile", "--target", "triton"], ["mask"], ["show"]],
    "morton, raised budget": RAISED,
    "stride, morton": [["check"], ["layout", "--block-size", "4096"]],
    "raster, raised budget": RAISED,
    "stride, raster": [["layout", "--block-size", "4096"]],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--only", nargs="*", default=sorted(FILES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("| file | n | command | wall s | CPU s | peak MiB | result |")
        print("|---|---:|---|---:|---:|---:|---|")
        for name in args.only:
            text, sizes = FILES[name]
            path = Path(tmp) / f"{name.replace(', ', '_').replace(' ', '_')}.spat"
            path.write_text(text)
            for n in sizes:
                for command in COMMANDS[name]:
                    out = ["-o", str(Path(tmp) / "out")] if command[0] in ("compile", "mask") else []
                    result = measured([command[0], str(path), "--n", str(n), *command[1:], *out], args.tree,
                                      args.timeout)
                    verdict = (f"refused: {result['refusal']}" if result["refusal"]
                               else f"exit {result['rc']}: {result['last']}")
                    verdict = verdict.replace(f"{text.strip()} ", "the grid ")
                    print(f"| {name} | 2^{n.bit_length() - 1} | {' '.join(command)} | {result['wall']:.1f} | "
                          f"{result['cpu']:.1f} | {result['rss']:,.0f} | {verdict.replace('|', '/')} |", flush=True)


if __name__ == "__main__":
    main()
