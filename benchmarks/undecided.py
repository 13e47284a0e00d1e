"""How often C2 (Hamiltonian path) and C3 (finite depth s) stay undecided, on a fixed corpus.

    python benchmarks/undecided.py                 # the corpus at n in 2,049 … 4,099, then the examples at 2^20
    python benchmarks/undecided.py --count 150     # fewer files
    python benchmarks/undecided.py --save          # (re)draw the corpus into benchmarks/undecided_corpus.json
    python benchmarks/undecided.py --examples-only

The corpus is fixed: benchmarks/undecided_corpus.json holds the files and their n (drawn
once, seeded, from patterndsl.strategies.files() — every primitive, segments, grid { } and
blocks { } included — and from the seeded generator of benchmarks/conditions.py). Run it
with PYTHONPATH pointing at another checkout to compare versions (before / after). A head
counts as undecided for C2 or C3 when ``holds`` is null; "bounds only" when C3 holds with
``s_bounds`` but no exact s. Prints markdown tables."""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "undecided_corpus.json"
RANGE = (2049, 4099)


def draw_corpus(count: int, seed: int = 20261202) -> list:
    """[source, n] pairs: half from hypothesis (derandomized), half from conditions.py's generator."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from patterndsl import strategies as S

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conditions import corpus as generated  # benchmarks/conditions.py

    drawn: list = []
    seen: list = []

    committed = seed == 20261202  # the committed corpus: hypothesis derandomized, as it was drawn
    settle = (lambda f: f) if committed else hypothesis_seed(seed)

    @settle
    @settings(max_examples=2 * count, database=None, derandomize=committed, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), deadline=None)
    @given(S.files())
    def collect(source):
        seen.append(source)  # every 4th draw: consecutive draws are often mutations of one another
        if len(seen) % 4 == 0 and len(drawn) < count // 2 and source not in drawn:
            drawn.append(source)

    collect()
    rng = random.Random(seed)
    made = generated(count - len(drawn), seed=seed)
    sources = [s for pair in zip(drawn, made) for s in pair] + drawn[len(made):] + made[len(drawn):]
    return [[s, rng.randint(*RANGE)] for s in sources]


def load(count: "int | None", start: int = 0, corpus: Path = CORPUS):
    items = json.loads(corpus.read_text())[start:]
    return items[:count] if count else items


def rates(items, budget: float):
    import patterndsl
    from patterndsl.analysis.conditions import check_conditions

    heads = c2 = c3 = bounds = files = 0
    undecided = []
    start = time.perf_counter()
    for source, n in items:
        try:
            compiled = patterndsl.compile(source, n)
        except patterndsl.SpatError:
            continue
        files += 1
        print(f"  {files:4d} files, {heads} heads, {c2} C2 / {c3} C3 undecided, {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
        cpu = time.process_time()
        found = check_conditions(compiled, budget_seconds=budget)["conditions"]
        cpu = time.process_time() - cpu
        if cpu > 2 * budget:  # a budget overrun, named as it happens (a partial run still shows it)
            print(f"  file {files}: {cpu:.1f} CPU s for a budget of {budget} s", file=sys.stderr, flush=True)
        for cond in found:
            heads += 1
            u2 = cond["hamiltonian_path"]["holds"] is None
            fd = cond["finite_depth"]
            u3 = fd["holds"] is None
            c2 += u2
            c3 += u3
            only_bounds = fd["holds"] is True and fd.get("s") is None
            bounds += only_bounds
            if u2 or u3 or only_bounds:
                what = "C2" * u2 + " C3" * u3 + (f" C3 bounds {fd.get('s_bounds')}" if only_bounds else "")
                undecided.append((n, f" file {files} head {cond['head']}{what}", source))
            if u2 or u3:
                print(f"  file {files} head {cond['head']} undecided:{' C2' * u2}{' C3' * u3} (n = {n})",
                      file=sys.stderr, flush=True)
    return files, heads, c2, c3, bounds, time.perf_counter() - start, undecided


def examples(n: int, budget: float, only=None, header=True):
    import patterndsl
    from patterndsl.analysis.conditions import check_conditions

    if header:
        print(f"\n| example at n = {n:,} | C2 | C3 | s | seconds |")
        print("|---|---|---|---|---|")
    for path in sorted((ROOT / "examples").glob("*.spat")):
        if only and path.stem not in only:
            continue
        compiled = patterndsl.compile(path, n)
        t = time.perf_counter()
        conds = check_conditions(compiled, budget_seconds=budget)["conditions"]
        seconds = time.perf_counter() - t
        yn = {True: "yes", False: "no", None: "?"}
        c2 = "/".join(sorted({yn[c["hamiltonian_path"]["holds"]] for c in conds}))
        c3 = "/".join(sorted({yn[c["finite_depth"]["holds"]] for c in conds}))
        s = "/".join(sorted({str(c["finite_depth"].get("s")) if c["finite_depth"].get("s") is not None
                             else str(c["finite_depth"].get("s_bounds")) for c in conds}))
        print(f"| {path.stem} | {c2} | {c3} | {s} | {seconds:.1f} |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100, help="use the first COUNT files of the corpus (default 100)")
    ap.add_argument("--start", type=int, default=0, help="skip the first START files of the corpus")
    ap.add_argument("--budget", type=float, default=2.0, help="check_conditions budget per file (seconds)")
    ap.add_argument("--save", type=int, nargs="?", const=300, default=None, metavar="COUNT",
                    help="draw a new corpus of COUNT files (default 300) into --corpus")
    ap.add_argument("--corpus", type=Path, default=CORPUS,
                    help="the corpus file (default benchmarks/undecided_corpus.json, the committed one)")
    ap.add_argument("--seed", type=int, default=20261202,
                    help="--save: the generator's seed (the committed corpus: 20261202); another seed also "
                         "draws other hypothesis files")
    ap.add_argument("--examples-only", action="store_true")
    ap.add_argument("--no-examples", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the undecided files")
    ap.add_argument("--only", default=None, help="comma-separated example names (no table header)")
    args = ap.parse_args(argv)
    if args.save:
        if args.corpus.resolve() == CORPUS and args.seed != 20261202:
            ap.error("--save with another --seed needs another --corpus (the committed corpus stays as drawn)")
        args.corpus.write_text(json.dumps(draw_corpus(args.save, args.seed), indent=0) + "\n")
        print(f"wrote {args.corpus}")
        return
    import patterndsl

    print(f"patterndsl from {Path(patterndsl.__file__).parent}")
    if not args.examples_only:
        items = load(args.count, args.start, args.corpus)
        digest = hashlib.sha256(json.dumps(items).encode()).hexdigest()[:12]
        files, heads, c2, c3, bounds, seconds, undecided = rates(items, args.budget)
        print(f"corpus {args.corpus.name} (files {args.start} … {args.start + len(items) - 1}, sha256 {digest}…), "
              f"{files} compile")
        print("\n| n range | files | heads | C2 undecided | C3 undecided | C3 bounds only | seconds |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {RANGE[0]:,} … {RANGE[1]:,} | {files} | {heads} | {c2} ({100 * c2 / max(heads, 1):.1f}%) "
              f"| {c3} ({100 * c3 / max(heads, 1):.1f}%) | {bounds} ({100 * bounds / max(heads, 1):.1f}%) "
              f"| {seconds:.0f} |", flush=True)
        if args.list:
            for n, what, source in undecided:
                print(f"\n--- n={n}{what}\n{source}")
    if not args.no_examples:
        only = args.only.split(",") if args.only else None
        examples(1 << 20, max(args.budget, 20.0), only, header=only is None)


if __name__ == "__main__":
    main()
