"""Running one benchmark case in a fresh subprocess (imported by the benchmark scripts).

A fresh process makes its peak resident memory (ru_maxrss) its own, and an empty
TorchInductor cache makes "cold" really compile.
"""
from __future__ import annotations

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


def best_time(function, repeat: int) -> float:
    """The best wall time of ``repeat`` calls of ``function()``: on a shared machine the
    minimum is the least noisy estimate of what a call costs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best
