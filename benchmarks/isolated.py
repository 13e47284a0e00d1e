"""Running one benchmark case in a fresh subprocess (imported by the benchmark scripts).

A fresh process makes its peak resident memory (ru_maxrss) its own, and an empty
TorchInductor cache makes "cold" really compile.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def in_subprocess(script: str, case: list, timeout: float) -> dict:
    """Run ``script --case JSON(case)`` in a subprocess; its last stdout line is a JSON
    result. Failures come back as {"error": "..."} rather than raising."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, PYTHONWARNINGS="ignore")
        try:
            done = subprocess.run([sys.executable, script, "--case", json.dumps(case)],
                                  capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": "killed (out of memory?)" if done.returncode < 0 else last[:80]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def case_parser(description: str, patterns, repeat: int, timeout: float) -> argparse.ArgumentParser:
    """The options of a benchmark whose cases run in_subprocess: the hidden --case, the
    sequence lengths, the patterns, the repeats and each case's timeout (add its own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", nargs="+", type=int, default=[4096, 16384])
    parser.add_argument("--patterns", nargs="+", default=list(patterns), choices=list(patterns))
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--timeout", type=float, default=timeout)
    return parser


def parse_or_run_case(parser: argparse.ArgumentParser, run_case) -> argparse.Namespace:
    """The parsed options; or, in the subprocess in_subprocess starts (--case JSON), run
    that case and print its result as the last line (what in_subprocess reads), then exit."""
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*json.loads(args.case))))
        sys.exit(0)
    return args


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux: ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(build, repeats: int = 3):
    """(the best time of ``repeats`` calls of ``build``, the last result): millisecond timings
    on a shared machine vary by several ms from call to call. The last result is freed
    before each call, so peak memory is one build's."""
    best, out = float("inf"), None
    for _ in range(repeats):
        out = None
        start = time.perf_counter()
        out = build()
        best = min(best, time.perf_counter() - start)
    return best, out


def best_time(function, repeat: int) -> float:
    """The best wall time of ``repeat`` calls of ``function()``."""
    return best_of(function, repeat)[0]
