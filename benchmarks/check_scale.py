"""`patterndsl check` at scale (issue 11 §4): wall and CPU seconds and peak memory, one process each.

    python benchmarks/check_scale.py [--n 1048576 16777216] [--only bigbird star] [--structured]
                                     [--verify] [--huge] [--tree /path/to/checkout] [--timeout 600]
                                     [--memory-budget 8G]

Every case runs the command line a user runs — `python -m patterndsl.cli check FILE --n N` — in
a fresh subprocess, reaped with os.wait4, so its CPU time (user + sys) and peak RSS are its own.
--structured adds O(n) structured patterns (window, window | global, chunk, global, window | stride); --verify writes
bigbird's certificate at 2^20 and times `patterndsl verify` of it in another process; --huge
runs `check` of the structured patterns at n = 2^30 (served within 4 GB, or refused up front
with the memory it would need). --tree runs another checkout (PYTHONPATH), for before/after
numbers in the same session. On a machine shared with other jobs the wall seconds follow the
load; read the CPU seconds. Targets: every example at 2^24 under 30 s; verify of bigbird at
2^20 under 10 s.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
STRUCTURED = ["window(1)", "window(1) | global(0)", "chunk(64) | window(2)", "global(0..8)", "chunk(64)",
              "window(64) | stride(128)"]


def measured(argv: list[str], tree: Path, timeout: float, max_memory: int = 0) -> dict:
    """Run ``python -m patterndsl.cli *argv`` under ``tree`` and reap it with os.wait4: exit
    code, wall and CPU (user + sys) seconds and peak RSS (MiB) of that process alone, and
    the last line of its output. ``max_memory`` (bytes, 0 = none) caps its address space, so
    a case that outgrows the budget fails on its own instead of pushing a shared machine
    into swap or the OOM killer."""
    env = {**os.environ, "PYTHONPATH": str(tree)}

    def cap():
        if max_memory:
            resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))

    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "patterndsl.cli", *argv], env=env, cwd=tree,
                                stdout=out, stderr=subprocess.STDOUT, text=True, preexec_fn=cap)
        killed = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout and not killed:
                proc.kill()
                killed = True
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        lines = out.read().strip().splitlines()
    return {"rc": "timeout" if killed else proc.returncode, "wall": wall,
            "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024,
            "last": (lines or [""])[-1][:120],
            "refusal": next((line.split("error: ")[-1] for line in lines
                         if "needs about" in line or "needs at least" in line), None)}


def row(name, n, result, command) -> str:
    verdict = {0: "every condition holds", 3: "not every condition holds", 4: "unchecked claims"}.get(
        result["rc"], f"exit {result['rc']}: {result['last']}")
    if result["refusal"]:
        verdict = f"refused up front: {result['refusal']}"
    name, command = name.replace("|", "\\|"), command.replace("|", "\\|")
    return (f"| {n:,} | {name} | {result['wall']:.1f} | {result['cpu']:.1f} | {result['rss']:,.0f} | "
            f"{verdict} | `{command}` |")


def add_process_options(parser: argparse.ArgumentParser, only_help: str, max_memory: float) -> None:
    """The options of a script whose commands each run in their own `measured` process:
    which cases, which checkout, and each process's time and address-space limits."""
    parser.add_argument("--only", nargs="+", metavar="NAME", help=only_help)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to run (default: this one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    parser.add_argument("--max-memory", type=float, default=max_memory, metavar="GIB",
                        help=f"address-space cap per command in GiB (0: none; default {max_memory:g})")


def process_limits(args) -> "tuple[Path, int]":
    """The checkout (printed first) and the address-space cap in bytes that add_process_options read."""
    tree = args.tree.resolve()
    print(f"tree {tree}")
    return tree, int(args.max_memory * (1 << 30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1 << 20, 1 << 24])
    parser.add_argument("--structured", action="store_true", help="also O(n) structured patterns")
    parser.add_argument("--verify", action="store_true", help="also verify bigbird's certificate at 2^20")
    parser.add_argument("--huge", action="store_true", help="also the structured patterns at n = 2^30")
    add_process_options(parser, "only these examples", max_memory=8.0)
    parser.add_argument("--memory-budget", metavar="SIZE",
                        help="pass --memory-budget SIZE to every check (e.g. 8G: past check's up-front estimate)")
    args = parser.parse_args()
    tree, cap = process_limits(args)
    print("| n | pattern | wall s | CPU s | peak RSS MiB | result | command |")
    print("|---:|---|---:|---:|---:|---|---|")
    cases = [(p.stem, str(p)) for p in sorted(EXAMPLES.glob("*.spat")) if not args.only or p.stem in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(STRUCTURED if args.structured or args.huge else []):
            path = Path(tmp) / f"structured{i}.spat"
            path.write_text(text + "\n")
            cases.append((f"`{text}`", str(path)))
        sizes = [(n, cases) for n in args.n]
        if args.huge:
            sizes.append((1 << 30, [c for c in cases if c[0].startswith("`")]))
        for n, todo in sizes:
            for name, path in todo:
                if n == 1 << 30 and not name.startswith("`"):
                    continue
                if n != 1 << 30 and name.startswith("`") and not args.structured:
                    continue
                budget = ["--memory-budget", args.memory_budget] if args.memory_budget else []
                argv = ["check", path, "--n", str(n), *budget]
                shown = (f"patterndsl check {Path(path).name if name.startswith('`') else 'examples/' + Path(path).name} "
                         f"--n {n}" + "".join(f" {a}" for a in budget))
                print(row(name, n, measured(argv, tree, args.timeout, cap), shown), flush=True)
        if args.verify:
            n = 1 << 20
            cert = str(Path(tmp) / "bigbird.cert")
            source = str(EXAMPLES / "bigbird.spat")
            made = measured(["check", source, "--n", str(n), "--certificate", cert], tree, args.timeout, cap)
            print(row("bigbird (check --certificate)", n, made,
                      f"patterndsl check examples/bigbird.spat --n {n} --certificate CERT"), flush=True)
            checked = measured(["verify", source, cert], tree, args.timeout, cap)
            print(row("bigbird (verify)", n, checked, "patterndsl verify examples/bigbird.spat CERT"), flush=True)


if __name__ == "__main__":
    main()
