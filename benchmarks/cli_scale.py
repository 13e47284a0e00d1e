"""The CLI's slow classes of the hostile sweep (issue 10): `check` at 2^20 and `compile --target
flex` at 2^26 with --memory-budget 8G, for every example (and the sweep's own `window(2)`): wall
and CPU seconds and peak memory, one process each.

    python benchmarks/cli_scale.py [--only swin window2] [--commands check flex]
                                   [--tree /path/to/checkout] [--timeout 600] [--max-memory 10]

Every case runs the command line a user runs in a fresh subprocess, reaped with os.wait4
(benchmarks/check_scale.py's `measured`), so its CPU time (user + sys) and peak RSS are its
own. --tree runs another checkout (PYTHONPATH) for before/after numbers in the same session.
Read the CPU seconds: on a shared machine the wall seconds follow the load. Target: every
case well under 20 CPU s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_scale import EXAMPLES, add_process_options, measured, process_limits  # noqa: E402

COMMANDS = {
    "check": lambda path, out: ["check", path, "--n", str(1 << 20)],
    "flex": lambda path, out: ["compile", path, "--n", str(1 << 26), "--target", "flex", "--memory-budget", "8G",
                               "-o", f"{out}/m_flex.py"],
}
EXTRA = {"window2": "window(2)\n"}  # the sweep's `budget 8G flex 2^26` input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", nargs="+", choices=sorted(COMMANDS), default=sorted(COMMANDS))
    add_process_options(parser, "only these examples (file stems, or window2)", max_memory=10.0)  # the sweep's cap
    args = parser.parse_args()
    tree, cap = process_limits(args)
    print("| command | pattern | wall s | CPU s | peak RSS MiB | exit | last line |")
    print("|---|---|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(p.stem, str(p)) for p in sorted(EXAMPLES.glob("*.spat"))]
        for name, text in EXTRA.items():
            Path(tmp, f"{name}.spat").write_text(text)
            cases.append((name, str(Path(tmp, f"{name}.spat"))))
        for command in args.commands:
            for name, path in cases:
                if args.only and name not in args.only:
                    continue
                result = measured(COMMANDS[command](path, tmp), tree, args.timeout, cap)
                last = result["last"].replace("|", "\\|")
                print(f"| {command} | {name} | {result['wall']:.1f} | {result['cpu']:.1f} | {result['rss']:,.0f} | "
                      f"{result['rc']} | {last[:70]} |", flush=True)


if __name__ == "__main__":
    main()
