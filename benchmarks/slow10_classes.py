"""The slow classes of issue 10, before and after (branch slow10): each case is a CLI command
run as a subprocess under PYTHONPATH=<tree>, its CPU seconds (user + system of the child)
measured with resource.getrusage, a time-out kept for the trees that do not finish.

    python benchmarks/slow10_classes.py BEFORE_TREE AFTER_TREE [TIMEOUT_S] [CASE_TEXT]

CASE_TEXT: only the cases whose source holds it (e.g. "stride(4096)").

A tree is a folder holding the patterndsl package (e.g. `git archive <commit> | tar -x -C dir`).
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile

CASES = [
    ("summary(4096, 2)", ["check"], 1 << 20),
    ("summary(4096, 2)", ["check"], 1 << 24),
    ("transpose(summary(4096, 2))", ["check"], 1 << 20),
    ("stride(4096)", ["check"], 1 << 20),
    ("stride(4096) | window(1)", ["check"], 1 << 20),
    ("summary(64, 3, offset=5) | local(2)", ["check"], 1 << 20),
    ("blocks(64) { summary(8, 2) }", ["layout"], 1 << 20),
    ("bernoulli(1, 4)", ["show"], 1 << 15),
    ("bernoulli(1, 4)", ["show"], 1 << 26),
    ("bernoulli(1, 4)", ["show", "--png", "{png}"], 1 << 20),
    ("bernoulli(1, 4)", ["show", "--png", "{png}"], 1 << 26),
    ("random(1000, seed=1)", ["show"], 1 << 26),
]


def run(tree: str, source: str, command: list, n: int, timeout: float):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.spat")
        with open(path, "w") as f:
            f.write(source + "\n")
        argv = [command[0], path] + [a.replace("{png}", os.path.join(tmp, "p.png")) for a in command[1:]]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            done = subprocess.run([sys.executable, "-m", "patterndsl.cli", *argv, "--n", str(n)],
                                  env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True,
                                  timeout=timeout)
            outcome = f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            outcome = "killed at the time-out"
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return cpu, outcome


def main():
    before, after = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 120.0
    only = sys.argv[4] if len(sys.argv) > 4 else ""
    print("| case | command | n | before CPU s | after CPU s | ratio | outcome after |")
    print("|---|---|---|---|---|---|---|")
    for source, command, n in (case for case in CASES if only in case[0]):
        new, outcome = run(after, source, command, n, timeout)
        old, old_outcome = run(before, source, command, n, timeout)
        shown = f"{old:.1f}" + (" (killed)" if "killed" in old_outcome else "")
        print(f"| `{source}` | {' '.join(command[:2]).replace(' {png}', '')} | {n:,} | {shown} | {new:.1f} | "
              f"{old / max(new, 1e-9):.1f}{'+' if 'killed' in old_outcome else ''} | {outcome} |", flush=True)


if __name__ == "__main__":
    main()
