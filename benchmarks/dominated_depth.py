"""check and verify of patterns whose s comes from dominating rows (analysis/dominance.py),
this tree against a baseline tree, CPU seconds of each subprocess.

    python benchmarks/dominated_depth.py --baseline /path/to/other/checkout [--n 65536]

Each pattern is checked with a certificate (`patterndsl.cli check --certificate`) and the
certificate verified (`patterndsl.cli verify`) under each tree's code (PYTHONPATH), one
after the other; CPU time is the children's user + system time (the machine is shared:
wall time is noisy). Reported: the C3 verdict (s or its bounds), CPU seconds, the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

PATTERNS = [
    "segment & (causal | window(-2, 2) | segment_start(2))",
    "causal | window(-2, 2) | cols(0..2)",
    "causal | window(-3, 3) | cols(0..1)",
]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(tree: Path, args: list, timeout: float) -> "tuple[float, int]":
    env = dict(os.environ, PYTHONPATH=str(tree))
    before = _cpu()
    done = subprocess.run([sys.executable, "-m", "patterndsl.cli", *args], env=env, cwd=tree,
                          capture_output=True, text=True, timeout=timeout)
    return _cpu() - before, done.returncode


def measure(tree: Path, source: str, n: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spat, cert = Path(tmp) / "p.spat", Path(tmp) / "p.cert"
        spat.write_text(source + "\n")
        check_cpu, _ = _run(tree, ["check", str(spat), "--n", str(n), "--certificate", str(cert)], timeout)
        depth = json.loads(cert.read_text())["conditions"][0]["finite_depth"]
        verify_cpu, rc = _run(tree, ["verify", str(spat), str(cert)], timeout)
    verdict = f"s = {depth['s']}" if depth.get("s") is not None else f"s in {depth.get('s_bounds')}"
    return {"verdict": verdict, "check": check_cpu, "verify": verify_cpu, "verify_rc": rc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, type=Path, help="another checkout (its repository root)")
    parser.add_argument("--n", type=int, default=65536)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    print(f"n = {args.n:,}; CPU seconds (user + system of each subprocess)")
    for source in PATTERNS:
        rows = {name: measure(tree, source, args.n, args.timeout)
                for name, tree in (("baseline", args.baseline.resolve()), ("this tree", here))}
        b, t = rows["baseline"], rows["this tree"]
        print(f"{source}\n  baseline:  {b['verdict']:<20} check {b['check']:6.2f} s  verify {b['verify']:6.2f} s "
              f"(exit {b['verify_rc']})\n  this tree: {t['verdict']:<20} check {t['check']:6.2f} s  "
              f"verify {t['verify']:6.2f} s (exit {t['verify_rc']})\n"
              f"  check CPU ratio baseline / this tree: {b['check'] / max(t['check'], 1e-9):.1f}")


if __name__ == "__main__":
    main()
