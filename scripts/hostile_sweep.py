"""Every CLI command × sequence lengths up to 2^40 × a few patterns, each in a subprocess.

Each outcome must be a clean diagnostic (exit 1 or 2, an `error:` line, no traceback, never
exit 70) or a result (exit 0; 3 or 4 for check / verify: a condition or claim that fails or
is undecided is an answer) within LIMIT seconds. Anything else is listed as a failure: an
internal error, a traceback, a time-out, a crash. Each command runs with its address space
capped (MEMORY_CAP), so a blow-up shows as an error here instead of taking the machine.

    python scripts/hostile_sweep.py [--jobs 2] [--limit 60] [--only show,layout] [--n 1,1048576]

Prints one line per run and a summary; exits 1 when some run failed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMORY_CAP = 10 << 30  # bytes of address space per command

PATTERNS = {
    "window": "window(64)\n",
    "longformer": (ROOT / "examples" / "longformer.spat").read_text(),
    "bigbird": (ROOT / "examples" / "bigbird.spat").read_text(),
    "transpose-random": "transpose(random(3, seed=1)) | window(1)\n",
    "natten": (ROOT / "examples" / "natten.spat").read_text(),
    "segment-causal": "segment & causal\n",
}
SIZES = (1, 1 << 20, 1 << 26, 1 << 40)
COMMANDS = {
    "show": lambda f, n, d: ["show", f, "--n", str(n), "--width", "60"],
    "show-png": lambda f, n, d: ["show", f, "--n", str(n), "--png", f"{d}/out.png"],
    "layout": lambda f, n, d: ["layout", f, "--n", str(n)],
    "check": lambda f, n, d: ["check", f, "--n", str(n), "--budget", "5", "--certificate", f"{d}/cert.json"],
    "torch": lambda f, n, d: ["compile", f, "--n", str(n), "--target", "torch", "-o", f"{d}/m.pt"],
    "flex": lambda f, n, d: ["compile", f, "--n", str(n), "--target", "flex", "-o", f"{d}/m_flex.py"],
    "triton": lambda f, n, d: ["compile", f, "--n", str(n), "--target", "triton", "-o", f"{d}/m_triton.py"],
    "mask": lambda f, n, d: ["mask", f, "--n", str(n), "-o", f"{d}/m.npy"],
    "verify": lambda f, n, d: ["verify", f, f"{d}/cert.json"],
}
RESULT_CODES = {"check": (0, 3), "verify": (0, 3, 4)}


def _cap():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_one(command: str, pattern: str, n: int, folder: str, limit: float) -> dict:
    spat = os.path.join(folder, f"{pattern}.spat")
    argv = COMMANDS[command](spat, n, folder)
    if command == "verify" and not os.path.exists(f"{folder}/cert.json"):
        # check refused this n: verify a certificate that only claims it (the header)
        with open(f"{folder}/cert.json", "w") as out:
            json.dump({"format": "patterndsl-certificate/2", "n": n}, out)
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "patterndsl.cli", *argv], capture_output=True, text=True,
                              timeout=limit * 2, cwd=folder, preexec_fn=_cap,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "TRITON_INTERPRET": "1"})
        rc, err, out = done.returncode, done.stderr, done.stdout
    except subprocess.TimeoutExpired:
        rc, err, out = None, "", ""
    seconds = time.monotonic() - start
    if rc is None:
        verdict = f"TIMEOUT (> {limit * 2:.0f} s)"
    elif "Traceback" in err or "Traceback" in out:
        verdict = "TRACEBACK"
    elif rc == 70:
        verdict = "INTERNAL ERROR"
    elif rc in (1, 2):
        verdict = "diagnostic" if "error" in err else "FAILURE WITHOUT A MESSAGE"
    elif rc in RESULT_CODES.get(command, (0,)):
        verdict = "result"
    else:
        verdict = f"EXIT {rc}"
    if verdict in ("diagnostic", "result") and seconds > limit:
        verdict = f"SLOW {verdict}"
    last = (err.strip().splitlines() or out.strip().splitlines() or [""])
    first_error = next((line for line in last if "error" in line), last[0])
    return {"command": command, "pattern": pattern, "n": n, "rc": rc, "seconds": round(seconds, 1),
            "verdict": verdict, "message": first_error[:240]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds a run may take")
    parser.add_argument("--only", help="commands, comma-separated")
    parser.add_argument("--patterns", help="patterns, comma-separated")
    parser.add_argument("--n", help="sizes, comma-separated")
    parser.add_argument("--json", help="write every outcome here")
    args = parser.parse_args()
    commands = args.only.split(",") if args.only else list(COMMANDS)
    patterns = args.patterns.split(",") if args.patterns else list(PATTERNS)
    sizes = [int(x) for x in args.n.split(",")] if args.n else list(SIZES)
    with tempfile.TemporaryDirectory(prefix="hostile_sweep.") as scratch:
        groups = []  # one folder per (pattern, n): check writes the certificate verify reads
        for pattern in patterns:
            for n in sizes:
                folder = os.path.join(scratch, f"{pattern}.{n}")
                os.mkdir(folder)
                Path(folder, f"{pattern}.spat").write_text(PATTERNS[pattern])
                groups.append((pattern, n, folder))

        def run_group(group):
            pattern, n, folder = group
            out = []
            for command in commands:
                result = run_one(command, pattern, n, folder, args.limit)
                print(f"{result['verdict']:>22}  {result['seconds']:6.1f} s  {command:8} {pattern:17} n={n:<14,} "
                      f"rc={result['rc']}  {result['message']}", flush=True)
                out.append(result)
            return out

        with ThreadPoolExecutor(args.jobs) as pool:
            results = [r for group in pool.map(run_group, groups) for r in group]
    bad = [r for r in results if r["verdict"] not in ("diagnostic", "result")]
    print(f"\n{len(results)} runs: {sum(r['verdict'] == 'result' for r in results)} results, "
          f"{sum(r['verdict'] == 'diagnostic' for r in results)} clean diagnostics, {len(bad)} otherwise")
    for r in bad:
        print(f"  {r['verdict']}: {r['command']} {r['pattern']} n={r['n']:,} ({r['seconds']} s): {r['message']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
