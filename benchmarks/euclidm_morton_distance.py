"""Brief euclidm: CPU seconds of the CLI on a distance rule over a square grid, this tree against
a baseline tree (PYTHONPATH), both in the same run.

    python benchmarks/euclidm_morton_distance.py BASELINE_DIR [N ...]

BASELINE_DIR holds a `patterndsl` package (e.g. `git archive b8b2958 patterndsl | tar -x -C DIR`).
ONLY=name:command (e.g. ONLY="euclid2-morton:check") runs just those."""
import os
import resource
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = {"euclid2-morton": "grid(s, s, order=morton) { euclid(2) }",
         "manhattan3-morton": "grid(s, s, order=morton) { manhattan(3) }",
         "euclid2-rows": "grid(s, s) { euclid(2) }"}
COMMANDS = [["check"], ["check", "--json"], ["layout"]]


def cpu(tree, args, timeout=300):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ, PYTHONPATH=tree)
    try:
        rc = subprocess.run([sys.executable, "-m", "patterndsl.cli", *args], env=env, capture_output=True,
                            timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, rc


def main():
    base, sizes = sys.argv[1], [int(x) for x in sys.argv[2:]] or [1 << 18]
    with tempfile.TemporaryDirectory() as tmp:
        for name, body in FILES.items():
            path = os.path.join(tmp, name + ".spat")
            with open(path, "w") as f:
                f.write(f"let s = isqrt(n)\n{body}\n")
            for n in sizes:
                for command in COMMANDS:
                    if os.environ.get("ONLY", f"{name}:{' '.join(command)}") != f"{name}:{' '.join(command)}":
                        continue
                    args = [*command, path, "--n", str(n)]
                    new, rc_new = cpu(HERE, args)
                    old, rc_old = cpu(base, args)
                    print(f"{name} {' '.join(command)} n={n}: new {new:.1f} CPU s (rc {rc_new}), "
                          f"baseline {old:.1f} CPU s (rc {rc_old}), ratio {old / max(new, 1e-9):.1f}x", flush=True)


if __name__ == "__main__":
    main()
