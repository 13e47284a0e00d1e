"""Transposes at scale (brief transpose10): every command on `transpose(P)` against the same
command on P, one process each, and optionally against another checkout (the code before).

    python benchmarks/transpose_scale.py [--n 67108864] [--baseline /work/main]
                                         [--baseline-commands layout,mask] [--timeout 180]

Cases: `transpose(summary(8, 2))` at --n (summary's row side, which lowered to rows(R) with
⌈n/b⌉ intervals) with layout, check, compile --target flex|triton|torch, mask and show; and
`show` of `transpose(grid(1024, 1024) { natten(7, 7) })` at 2^20 (a transposed natten, whose
keys were listed against every cell). Each runs `python -m patterndsl.cli …` in a fresh
subprocess reaped with os.wait4 (benchmarks/check_scale.py's `measured`): its own CPU seconds
(user + sys) and peak RSS. The ratio is the transpose's CPU over its operand's, both from this
run; --baseline runs the transposes of --baseline-commands under another checkout too (killed
after --timeout seconds). A command "finishes promptly or refuses promptly" when its exit code is
0 or a refusal with the size (exit 1) and its CPU time is about its operand's.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from check_scale import ROOT, measured

SUMMARY = ("transpose(summary(8, 2))", "summary(8, 2)")
GRID = ("transpose(grid(1024, 1024) { natten(7, 7) })", "grid(1024, 1024) { natten(7, 7) }")


def commands(path: str, n: int, out: str) -> dict[str, list[str]]:
    size = ["--n", str(n)]
    return {
        "layout": ["layout", path, *size],
        "check": ["check", path, *size],
        "flex": ["compile", path, *size, "--target", "flex", "-o", f"{out}/m_flex.py"],
        "triton": ["compile", path, *size, "--target", "triton", "-o", f"{out}/m_triton.py"],
        "torch": ["compile", path, *size, "--target", "torch", "-o", f"{out}/m.pt"],
        "mask": ["mask", path, *size, "-o", f"{out}/m.npy"],
        "show": ["show", path, *size],
    }


def outcome(result: dict) -> str:
    if result["rc"] == "timeout":
        return "killed at the time-out"
    if result["refusal"]:
        return "refused: " + result["refusal"].split(",")[0].split(" needs")[0][:40] + " needs …"
    return {0: "done", 3: "done (conditions fail)"}.get(result["rc"], f"exit {result['rc']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1 << 26)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout, for before/after")
    parser.add_argument("--baseline-commands", default="layout,mask")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    before = set(args.baseline_commands.split(","))
    print("| case | command | transpose CPU s | operand CPU s | ratio | transpose RSS MiB | outcome | before CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(SUMMARY, args.n, None), (GRID, 1 << 20, ("show",))]
        for (turned, plain), n, only in cases:
            files = {}
            for name, text in (("t", turned), ("p", plain)):
                files[name] = f"{tmp}/{name}.spat"
                Path(files[name]).write_text(text + "\n")
            wanted = commands(files["t"], n, tmp)
            for command in only or wanted:
                t = measured(wanted[command], ROOT, args.timeout)
                p = measured(commands(files["p"], n, tmp)[command], ROOT, args.timeout)
                old = ""
                if args.baseline is not None and (command in before or only):
                    b = measured(wanted[command], args.baseline, args.timeout)
                    old = f"{b['cpu']:.1f} ({outcome(b)})"
                print(f"| `{turned}` at {n:,} | {command} | {t['cpu']:.1f} | {p['cpu']:.1f} | "
                      f"{t['cpu'] / max(p['cpu'], 1e-9):.2f} | {t['rss']:,.0f} | {outcome(t)} | {old} |", flush=True)


if __name__ == "__main__":
    main()
