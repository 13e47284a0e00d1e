"""`patterndsl experiment mixture`: BRWP-splitting against MYULA on the Laplace-prior mixture.

Han, Osher and Li's mixture experiment (arXiv 2502.16773; `Mixture_distribution.m`
and `utils/Mixture_example.m` in github.com/fq-han/BRWP-splitting), with the
settings of their script: d = 20, β = 1, h = 0.1 divided by 4 at iteration 50,
100 particles, 100 iterations, λ = 0.1, X₀ = 5·N(0, I); the target is
exp(−λ‖x‖₁) times an equal mixture of four Gaussians of variance 4 with means
2·(4, −2), 2·(−2, −4), 2·(−4, 2), 2·(2, −4) in coordinates 1–2 and 0 elsewhere.
The distance is the L1 distance, on [−20, 20] with step 0.01, between a Gaussian
KDE (variance 0.1) of one coordinate of the particles and that coordinate's exact
marginal. Then the same sampler at 10,000 and 100,000 particles, with every pair
interacting (where that fits) or through sparse `.spat` patterns over particles.

Nothing heavy is imported at module import time (`patterndsl --help` imports it).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from . import Experiment

MEANS_1_2 = ((8.0, -4.0), (-4.0, -8.0), (-8.0, 4.0), (4.0, -8.0))  # 2·(4, −2), …: the script's `as`
VARIANCE = 4.0
GRID = (-20.0, 20.0, 0.01)
KDE_VARIANCE = 0.1
CONFIGS = (  # (method, softmax, order): the authors' MATLAB form first
    ("splitting", "per-coordinate", "gradient-first"),
    ("splitting", "joint", "gradient-first"),
    ("splitting", "per-coordinate", "score-first"),
    ("splitting", "joint", "score-first"),
    ("myula", None, None),
)


def progress(iterable, total: int, desc: str, enabled: bool = True):
    """tqdm when it is installed, else a bar on stderr (on a terminal; a line per tenth elsewhere)."""
    if not enabled:
        yield from iterable
        return
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(iterable, total=total, desc=desc, leave=False)
        return
    terminal, width, shown = sys.stderr.isatty(), 30, -1
    for done, item in enumerate(iterable, start=1):
        yield item
        tenth = 10 * done // max(total, 1)
        if terminal:
            filled = width * done // max(total, 1)
            sys.stderr.write(f"\r{desc} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        elif tenth != shown:
            sys.stderr.write(f"{desc}: {done}/{total}\n")
        shown = tenth
        sys.stderr.flush()
    if terminal:
        sys.stderr.write("\r" + " " * (len(desc) + width + 24) + "\r")


# ---------------------------------------------------------------- the target

def mixture_means(dim: int):
    """[4, dim] float64: the four means, zero beyond coordinate 2."""
    import torch

    means = torch.zeros(4, dim, dtype=torch.float64)
    means[:, :2] = torch.tensor(MEANS_1_2, dtype=torch.float64)
    return means


def mixture_gradient(means, variance: float = VARIANCE):
    """∇g for g = −log Σ_n ¼·exp(−|x − a_n|²/(2·variance)): the responsibilities times (x − a_n)/variance."""
    import torch

    def grad_g(x):
        diff = x[:, None, :] - means.to(x.dtype)[None]  # [N, 4, d]
        weights = torch.softmax(-(diff ** 2).sum(-1) / (2 * variance), dim=1)  # equal mixture weights cancel
        return (weights[..., None] * diff).sum(1) / variance

    return grad_g


def grid():
    import numpy as np

    lo, hi, step = GRID
    return np.linspace(lo, hi, int(round((hi - lo) / step)) + 1)


def laplace_gaussian_mass(a, lam: float, variance: float = VARIANCE, *, authors: bool = False):
    """∫ exp(−(y − a)²/(2v) − λ|y|) dy in closed form (for each a): completing the square
    on each half-line shifts the mean by ∓λv and leaves the factor exp(((a ∓ λv)² − a²)/(2v)).
    ``authors=True`` writes λ·sd instead of λ·v in that factor, as `Mixture_example.m` does."""
    import numpy as np
    from scipy.special import ndtr

    a = np.asarray(a, dtype=np.float64)
    sd = math.sqrt(variance)
    shift_factor = lam * (sd if authors else variance)
    upper = np.exp(((a - shift_factor) ** 2 - a ** 2) / (2 * variance)) * ndtr((a - lam * variance) / sd)
    lower = np.exp(((a + shift_factor) ** 2 - a ** 2) / (2 * variance)) * ndtr(-(a + lam * variance) / sd)
    return math.sqrt(2 * math.pi * variance) * (upper + lower)


def laplace_gaussian_mass_numerical(a, lam: float, variance: float = VARIANCE, step: float = 1e-3):
    """The same integral by the trapezoidal rule on [a − 60, a + 60] (beyond it the integrand is < e^-450)."""
    import numpy as np

    out = []
    for centre in np.atleast_1d(np.asarray(a, dtype=np.float64)):
        y = np.arange(centre - 60.0, centre + 60.0 + step / 2, step)
        out.append(np.trapezoid(np.exp(-(y - centre) ** 2 / (2 * variance) - lam * np.abs(y)), y))
    return np.array(out)


def sample_laplace_gaussian_mixture(means, variance: float, lam: float, count: int, rng):
    """Exact samples of ∝ exp(−λ‖x‖₁)·Σ_n N(x; a_n, variance·I) (equal weights), numpy
    float64 [count, d], ``means`` [K, d] numpy.

    Within a component the coordinates are independent, each ∝ exp(−(y − a)²/(2v) − λ|y|):
    on y > 0 a normal of mean a − λv cut at 0, on y < 0 one of mean a + λv, in the
    proportions of their masses; the components are weighted by their total masses."""
    import numpy as np
    from scipy.special import ndtr, ndtri

    sd = math.sqrt(variance)
    up_mean, down_mean = means - lam * variance, means + lam * variance
    up = np.exp((up_mean ** 2 - means ** 2) / (2 * variance)) * ndtr(up_mean / sd)  # mass on y > 0
    down = np.exp((down_mean ** 2 - means ** 2) / (2 * variance)) * ndtr(-down_mean / sd)
    weights = np.prod(up + down, axis=1)
    component = rng.choice(len(means), size=count, p=weights / weights.sum())
    positive = rng.random((count, means.shape[1])) < (up / (up + down))[component]
    mean = np.where(positive, up_mean[component], down_mean[component])
    cut = ndtr(-mean / sd)  # P(y < 0) before cutting: invert the cut normal's distribution function
    u = rng.random(mean.shape)
    level = np.where(positive, cut + u * (1 - cut), u * cut)
    return mean + sd * ndtri(np.clip(level, 1e-300, 1 - 1e-16))


def exact_marginal(coordinate: int, dim: int, lam: float, *, mass=None):
    """The density of coordinate ``coordinate`` (0-based) of the target on `grid()`,
    normalized so that its sum times the step is 1 (as the authors do).

    Coordinates are independent within a component: the marginal is
    Σ_n ¼·exp(−(t − a_nc)²/(2v) − λ|t|)·Π_{c' ≠ c} Z(a_nc'), with Z the integral
    `laplace_gaussian_mass_numerical` computes (``mass`` replaces it)."""
    import numpy as np

    mass = mass or (lambda a: laplace_gaussian_mass_numerical(a, lam))
    means = np.zeros((4, dim))
    means[:, :2] = MEANS_1_2
    t = grid()
    density = np.zeros_like(t)
    for component in means:
        others = np.delete(component, coordinate)
        weight = np.prod(mass(others) / mass(np.zeros(1)))  # the Z of zero means cancel: ratios keep it finite
        density += 0.25 * weight * np.exp(-(t - component[coordinate]) ** 2 / (2 * VARIANCE) - lam * np.abs(t))
    return density / (density.sum() * GRID[2])


def kde_distance(samples, marginal) -> float:
    """Σ |KDE − marginal|·step on `grid()`, the KDE Gaussian of variance 0.1 (`TVL1_dist_norm.m`)."""
    import numpy as np

    samples = np.asarray(samples, dtype=np.float64)
    t = grid()
    kde = np.zeros_like(t)
    for lo in range(0, samples.size, 2048):
        chunk = samples[lo:lo + 2048]
        kde += np.exp(-(t[:, None] - chunk[None, :]) ** 2 / (2 * KDE_VARIANCE)).sum(1)
    kde /= samples.size * math.sqrt(2 * math.pi * KDE_VARIANCE)
    return float(np.abs(kde - marginal).sum() * GRID[2])


# ---------------------------------------------------------------- runs

def _initial(particles: int, dim: int, seed: int, dtype):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return 5.0 * torch.randn(particles, dim, generator=generator, dtype=torch.float64).to(dtype), generator


def run_config(config, args, seed: int, marginals, *, particles=None, pattern=None, dtype=None, curves=True,
               iterations=None):
    """One sampler run; returns (final particles, {coordinate label: [distance per iteration]}).
    The step sizes are those of args.iterations iterations; ``iterations`` may stop earlier."""
    import torch

    from .. import rwpo

    method, softmax, order = config
    particles = particles or args.particles
    dtype = dtype or torch.float64
    x0, generator = _initial(particles, args.dim, seed, dtype)
    steps = rwpo.halved_steps(args.h, args.iterations)[:iterations]
    trace = {label: [] for label in marginals}

    def record(iteration, x):
        if curves or iteration == len(steps):
            for label, (column, marginal) in marginals.items():
                trace[label].append(kde_distance(x[:, column].numpy(), marginal))

    iterations = progress(range(len(steps)), len(steps), f"{method} {softmax or ''} {order or ''} seed {seed}".strip(),
                          enabled=not args.quiet)
    x = x0
    grad_g = mixture_gradient(mixture_means(args.dim))
    with torch.no_grad():
        for k in iterations:
            x = rwpo.sample(x, grad_g, args.lam, [steps[k]], args.beta, method=method,
                            joint=softmax == "joint", order=order or "gradient-first", pattern=pattern,
                            generator=generator)
            record(k + 1, x)
    return x, trace


def _summary(values):
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max())}


def run(args) -> int:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    labels = {"1": 0, "d": args.dim - 1}
    exact = {label: exact_marginal(column, args.dim, args.lam) for label, column in labels.items()}
    authors = {label: exact_marginal(column, args.dim, args.lam,
                                     mass=lambda a: laplace_gaussian_mass(a, args.lam, authors=True))
               for label, column in labels.items()}
    closed = {label: exact_marginal(column, args.dim, args.lam, mass=lambda a: laplace_gaussian_mass(a, args.lam))
              for label, column in labels.items()}
    step = GRID[2]
    results = {
        "experiment": "mixture",
        "source": "Han, Osher, Li, arXiv 2502.16773; fq-han/BRWP-splitting Mixture_distribution.m",
        "settings": {"dim": args.dim, "beta": args.beta, "h": args.h, "h_divided_by_4_at_iteration": args.iterations // 2,
                     "particles": args.particles, "iterations": args.iterations, "lam": args.lam,
                     "init": "5 * N(0, I)", "kde_variance": KDE_VARIANCE, "grid": list(GRID),
                     "seeds": args.seeds, "torch_threads": args.threads},
        "marginals": {label: {"l1_authors_vs_exact": float(np.abs(authors[label] - exact[label]).sum() * step),
                              "l1_closed_form_vs_numerical": float(np.abs(closed[label] - exact[label]).sum() * step)}
                      for label in labels},
        "exact_samples": [], "runs": [], "summary": [], "scaling": [],
    }
    marginals = {label: (labels[label], exact[label]) for label in labels}
    means = mixture_means(args.dim).numpy()
    for seed in args.seeds:  # the floor: what as many exact, independent samples score
        samples = sample_laplace_gaussian_mixture(means, VARIANCE, args.lam, args.particles,
                                                  np.random.default_rng(seed))
        for label, column in labels.items():
            results["exact_samples"].append({"seed": seed, "coordinate": label,
                                             "distance": kde_distance(samples[:, column], exact[label])})
    for label in labels:
        results["summary"].append({"method": "exact-samples", "softmax": None, "order": None, "coordinate": label,
                                   **_summary([r["distance"] for r in results["exact_samples"]
                                               if r["coordinate"] == label]),
                                   "authors_marginal_mean": None})
        _print_summary(results["summary"][-1])
    finals = {}
    for config in CONFIGS:
        for seed in args.seeds:
            x, trace = run_config(config, args, seed, marginals)
            finals.setdefault(config, x)
            for label, column in labels.items():
                results["runs"].append({
                    "method": config[0], "softmax": config[1], "order": config[2], "seed": seed,
                    "coordinate": label, "distance": trace[label][-1],
                    "distance_authors_marginal": kde_distance(x[:, column].numpy(), authors[label]),
                    "curve": trace[label]})
        for label in labels:
            rows = [r for r in results["runs"] if (r["method"], r["softmax"], r["order"]) == config
                    and r["coordinate"] == label]
            results["summary"].append({"method": config[0], "softmax": config[1], "order": config[2],
                                       "coordinate": label, **_summary([r["distance"] for r in rows]),
                                       "authors_marginal_mean": _summary([r["distance_authors_marginal"]
                                                                          for r in rows])["mean"]})
            _print_summary(results["summary"][-1])
    out = Path(args.out)
    _write(out, results)
    if args.plots:  # before the scaling table, which takes long
        for path in plot(results, exact, authors, finals, Path(args.plots)):
            print(f"wrote {path}", flush=True)
    for particles in args.scaling_particles:
        for interaction in list(args.patterns) + ["myula", "exact-samples", "dense"]:
            row = (floor_row(args, particles, marginals) if interaction == "exact-samples"
                   else scaling_row(args, particles, interaction, marginals))
            if row is None:
                continue
            results["scaling"].append(row)
            _write(out, results)  # after every row: the long runs keep what they finished
            distances = ", ".join(f"coord {label} {value:.3f}" for label, value in (row["distance"] or {}).items())
            each = f"({row['seconds_per_iteration']:.3f} s each)" if row["iterations"] else ""
            print(f"N = {particles:>7,} {interaction:<22} {row['iterations']:>3} iterations "
                  f"{row['seconds']:8.1f} s {each:<18}   {distances or 'timing only'}", flush=True)
    _write(out, results)
    print(f"wrote {out}")
    return 0


def scaling_row(args, particles: int, interaction: str, marginals):
    """One row of the scaling table: the MATLAB form of BRWP-splitting through ``interaction``
    ("dense", or a .spat pattern over particles) or MYULA, seed args.seeds[0], float32.
    Dense runs fully up to --dense-max particles and, up to --dense-probe-max, only
    --dense-probe iterations to time it (distance None); beyond, not at all (None)."""
    import torch

    from .. import compile as compile_pattern
    from ..rwpo import key_lists

    iterations = args.iterations
    if interaction == "dense" and particles > args.dense_max:
        if particles > args.dense_probe_max:
            return None
        iterations = args.dense_probe
    started = time.perf_counter()
    pattern, keys = None, particles
    if interaction not in ("dense", "myula"):
        pattern = compile_pattern(interaction, particles)
        keys = float(key_lists(pattern, "cpu")[1].sum(1).double().mean())  # built once, cached
    key_seconds = time.perf_counter() - started
    config = ("myula", None, None) if interaction == "myula" else CONFIGS[0]
    x, trace = run_config(config, args, args.seeds[0], marginals, particles=particles, pattern=pattern,
                          dtype=torch.float32, curves=False, iterations=iterations)
    seconds = time.perf_counter() - started
    complete = iterations == args.iterations
    return {"particles": particles, "interaction": interaction, "method": config[0],
            "keys_per_particle": None if interaction == "myula" else keys,
            "iterations": iterations, "seconds": seconds, "seconds_per_iteration": (seconds - key_seconds) / iterations,
            "key_list_seconds": key_seconds, "seed": args.seeds[0], "dtype": "float32",
            "distance": {label: trace[label][-1] for label in trace} if complete else None}


def floor_row(args, particles: int, marginals):
    """The scaling table's floor: as many exact, independent samples of the target (seed args.seeds[0])."""
    import numpy as np

    started = time.perf_counter()
    samples = sample_laplace_gaussian_mixture(mixture_means(args.dim).numpy(), VARIANCE, args.lam, particles,
                                              np.random.default_rng(args.seeds[0]))
    return {"particles": particles, "interaction": "exact-samples", "method": "exact-samples",
            "keys_per_particle": None, "iterations": 0, "seconds": time.perf_counter() - started,
            "seconds_per_iteration": None, "key_list_seconds": 0.0, "seed": args.seeds[0], "dtype": "float64",
            "distance": {label: kde_distance(samples[:, column], marginal)
                         for label, (column, marginal) in marginals.items()}}


def _write(path: Path, results) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def _print_summary(row) -> None:
    name = f"splitting, {row['softmax']}, {row['order']}" if row["method"] == "splitting" else row["method"]
    authors = row["authors_marginal_mean"]
    print(f"{name:<42} coord {row['coordinate']:<2} distance {row['mean']:.3f} ± {row['std']:.3f} "
          f"(min {row['min']:.3f}, max {row['max']:.3f}"
          + (f"; vs the authors' marginal {authors:.3f})" if authors is not None else ")"), flush=True)


def plot(results, exact, authors, finals, folder: Path) -> list[Path]:
    """mixture_distance.png (distance per iteration, mean over seeds) and
    mixture_marginals.png (the exact marginals against the KDEs of ``finals``, each
    config's final particles for the first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    dim = results["settings"]["dim"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, label in zip(axes, ("1", "d")):
        for config in CONFIGS:
            curves = [r["curve"] for r in results["runs"] if (r["method"], r["softmax"], r["order"]) == config
                      and r["coordinate"] == label]
            name = "MYULA" if config[0] == "myula" else f"splitting, {config[1]}, {config[2]}"
            ax.plot(np.arange(1, len(curves[0]) + 1), np.mean(curves, axis=0), label=name)
        floor = np.mean([r["distance"] for r in results["exact_samples"] if r["coordinate"] == label])
        ax.axhline(floor, color="grey", ls="--", lw=1, label="as many exact samples")
        ax.set_title(f"coordinate {1 if label == '1' else dim}")
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
    axes[0].set_ylabel(f"L1 distance to the marginal, mean of {len(results['settings']['seeds'])} seeds")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    paths = [folder / "mixture_distance.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    t = grid()
    settings = results["settings"]
    for ax, (label, column) in zip(axes, (("1", 0), ("d", dim - 1))):
        ax.plot(t, exact[label], "k", lw=2, label="exact marginal")
        if label == "1":
            ax.plot(t, authors[label], "k--", lw=1, label="the authors' marginal (λ·sd)")
        for config, colour in ((CONFIGS[0], "tab:blue"), (CONFIGS[-1], "tab:red")):
            samples = finals[config][:, column].numpy()
            kde = np.exp(-(t[:, None] - samples[None, :]) ** 2 / (2 * KDE_VARIANCE)).sum(1)
            kde /= samples.size * math.sqrt(2 * math.pi * KDE_VARIANCE)
            ax.plot(t, kde, color=colour, label="BRWP-splitting (MATLAB form)" if config[0] == "splitting" else "MYULA")
        ax.set_xlim(-15, 15)
        ax.set_title(f"coordinate {column + 1}, seed {settings['seeds'][0]}, {settings['particles']} particles")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(folder / "mixture_marginals.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def add_arguments(parser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)),
                        help="seeds of X0 and MYULA's noise (default 0..9)")
    parser.add_argument("--particles", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=100, help="h is divided by 4 at iteration ⌊iterations/2⌋")
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--h", type=float, default=0.1)
    parser.add_argument("--lam", type=float, default=0.1, help="L1 weight λ")
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--scaling-particles", type=int, nargs="*", default=[1_000, 10_000, 100_000],
                        help="particle counts of the scaling table (none: skip it)")
    parser.add_argument("--patterns", nargs="*", default=["random(100) | self", "chunk(100)"],
                        help=".spat interaction patterns over particles for the scaling table")
    parser.add_argument("--dense-max", type=int, default=1_000,
                        help="largest particle count run fully with every pair interacting")
    parser.add_argument("--dense-probe-max", type=int, default=10_000,
                        help="beyond --dense-max and up to this, dense interaction is only timed")
    parser.add_argument("--dense-probe", type=int, default=2, help="iterations of that timing")
    add_output_arguments(parser, "docs/results/mixture.json")


def add_output_arguments(parser, out: str) -> None:
    """--threads, --out, --plots, --quiet: shared with rwpo-generative."""
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=out, help="the results file (JSON)")
    parser.add_argument("--plots", default="docs/images", help="folder of the plots ('' for none)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


EXPERIMENT = Experiment(
    name="mixture",
    help="BRWP-splitting (RWPO with an L1 prior) against MYULA on Han, Osher and Li's Laplace-prior "
         "Gaussian mixture, and its scaling to 100,000 particles with sparse interaction patterns",
    add_arguments=add_arguments,
    run=run,
)
