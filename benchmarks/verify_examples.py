"""`check --certificate` then `verify` of every example at one n, for one or more checkouts.

    python benchmarks/verify_examples.py --n 1048576 --tree /tmp/main --tree .

For each example and tree (PYTHONPATH = the tree, run in turn, serially), the certificate
is written by that tree's `check` and re-checked by the same tree's `verify` (default
budget): prints verify's exit status (0 every claim checked and holds, 4 some claim
unchecked within the budget), the claims it left unchecked, and verify's CPU seconds
(user + system of the child) and peak memory. Each child may use 8 GiB of address space (past it: a MemoryError, its
exit status 1). Markdown table. With --claims, each verify is run again in process with every
claim timed: the claims over 0.05 CPU s (and counts) with their metered units, CPU s and
units per second (what a unit of the budget costs)."""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


MEMORY = 8 << 30  # address space per child: past it, a MemoryError (not the machine's OOM killer)


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


CLAIMS = """
import json, sys, time
from pathlib import Path
from patterndsl import verify
from patterndsl.compiled import compile as compile_source
cert = json.load(open(sys.argv[2]))
original = verify._Claims.run
def run(self, name, check, *args):
    start = time.process_time()
    original(self, name, check, *args)
    cpu = time.process_time() - start
    if cpu > 0.05 or name == "counts":
        print(f"  {name}: {self.meter.used:,} units, {cpu:.2f} CPU s, {self.meter.used / max(cpu, 1e-9) / 1e6:.1f} Munits/s")
verify._Claims.run = run
verify.verify_report(compile_source(Path(sys.argv[1]), cert["n"]), cert)
"""


def run(tree: Path, args: list, timeout: float, script=None):
    env = dict(os.environ, PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = ["-c", script] if script else ["-m", "patterndsl.cli"]
    try:
        done = subprocess.run([sys.executable, *command, *args], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=timeout, preexec_fn=_limit_memory)
        rc, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        rc, out = "timeout", ""
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, out, cpu, after.ru_maxrss


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--tree", action="append", default=None, help="a checkout (repeatable; default this one)")
    ap.add_argument("--only", default=None, help="comma-separated example names")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per verify (default 900)")
    ap.add_argument("--claims", action="store_true", help="then each claim's units and CPU seconds")
    args = ap.parse_args(argv)
    trees = [Path(t).resolve() for t in (args.tree or [ROOT])]
    only = set(args.only.split(",")) if args.only else None
    print(f"n = {args.n:,}; trees: {', '.join(map(str, trees))}\n")
    print("| example | tree | verify exit | unchecked | verify CPU s | peak RSS MB (so far) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((ROOT / "examples").glob("*.spat")):
            if only and path.stem not in only:
                continue
            for t, tree in enumerate(trees):
                cert = Path(tmp) / f"{path.stem}.{t}.json"
                rc, out, _, _ = run(tree, ["check", str(path), "--n", str(args.n), "--certificate", str(cert)],
                                    args.timeout)
                if not cert.exists():  # (exit 3 only says a condition fails: its certificate is written)
                    print(f"| {path.stem} | {tree.name} | check exit {rc} | | | |", flush=True)
                    continue
                rc, out, cpu, rss = run(tree, ["verify", str(path), str(cert)], args.timeout)
                unchecked = "; ".join(line.split(": needs")[0].removeprefix("unchecked: ")
                                      for line in out.splitlines() if line.startswith("unchecked:"))
                print(f"| {path.stem} | {tree.name} | {rc} | {unchecked} | {cpu:.1f} | {rss / 1024:.0f} |", flush=True)
                if args.claims:
                    _, out, _, _ = run(tree, [str(path), str(cert)], args.timeout, script=CLAIMS)
                    print(out.rstrip(), flush=True)


if __name__ == "__main__":
    main()
