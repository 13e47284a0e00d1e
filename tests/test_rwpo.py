"""patterndsl.rwpo (Han, Osher, Li: RWPO with an L1 prior) and its experiments."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings

torch = pytest.importorskip("torch")

import patterndsl  # noqa: E402
from patterndsl import strategies as S  # noqa: E402
from patterndsl import rwpo  # noqa: E402
from patterndsl.cli import main  # noqa: E402
from patterndsl.experiments import mixture  # noqa: E402

LAM, H, BETA = 0.3, 0.1, 1.5


def direct_mean(x, lam, h, beta, *, joint, mask=None):
    """The RWPO mean from its definition, w_jl ∝ exp(−β|x_j − x_l|²/(4h) + b_l), float64."""
    s = torch.sign(x) * torch.clamp(x.abs() - lam * h, min=0)
    b = beta / 2 * (lam * s.abs() + (s - x) ** 2 / (2 * h))  # [N, d]
    differences = (x[:, None, :] - x[None, :, :]) ** 2  # [N, N, d]
    out = torch.zeros_like(x)
    columns = [slice(None)] if joint else [slice(c, c + 1) for c in range(x.shape[1])]
    for column in columns:
        logits = -beta * differences[..., column].sum(-1) / (4 * h) + b[:, column].sum(-1)[None, :]
        if mask is not None:
            logits = logits.masked_fill(~mask, -math.inf)
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)
        out[:, column] = weights @ x[:, column]
    return out


PATTERNS = ["random(5) | self", "chunk(7)", "window(3) | global(0..2)", "stride(5) & window(12)",
            "random(6, seed=2)", "logsparse", "(random(4) | window(2)) - self", "rows(0..3)"]


@pytest.mark.parametrize("joint", [True, False])
def test_attention_form_equals_the_direct_formula(joint):
    generator = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(40, 3, generator=generator, dtype=torch.float64)
    expected = direct_mean(x, LAM, H, BETA, joint=joint)
    assert torch.allclose(rwpo.rwpo_mean(x, LAM, H, BETA, joint=joint), expected, atol=1e-12, rtol=0)
    batched = torch.stack([x, -x])
    got = rwpo.rwpo_mean(batched, LAM, H, BETA, joint=joint)
    assert torch.allclose(got[1], direct_mean(-x, LAM, H, BETA, joint=joint), atol=1e-12, rtol=0)


@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("source", PATTERNS)
def test_attention_form_with_a_pattern_equals_the_masked_formula(source, joint):
    generator = torch.Generator().manual_seed(1)
    x = 3 * torch.randn(40, 2, generator=generator, dtype=torch.float64)
    compiled = patterndsl.compile(source, n=40)
    expected = direct_mean(x, LAM, H, BETA, joint=joint, mask=compiled.mask())
    got = rwpo.rwpo_mean(x, LAM, H, BETA, joint=joint, pattern=compiled)
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)


@settings(max_examples=60, deadline=None)
@given(source=S.pattern_sources(), n=S.sizes(max_n=48))
def test_key_lists_are_the_reference_mask(source, n):
    compiled = patterndsl.compile(source, n=n)
    keys, valid = rwpo.interaction_keys(compiled)
    rebuilt = np.zeros((n, n), dtype=bool)
    rebuilt[np.repeat(np.arange(n), keys.shape[1])[valid.ravel()], keys[valid]] = True
    assert np.array_equal(rebuilt, compiled.dense())
    assert valid.sum() == compiled.dense().sum()  # no key listed twice


def test_a_pattern_for_another_n_is_an_error():
    with pytest.raises(patterndsl.SpatError, match="compiled for n = 10"):
        rwpo.rwpo_mean(torch.zeros(12, 2), LAM, H, pattern=patterndsl.compile("chunk(4)", n=10))


def laplace_gaussian_marginal(lam, mu):
    """(grid, density) of ∝ exp(−λ|x|)·N(μ, 1), by quadrature."""
    t = np.linspace(-10, 12, 20001)
    density = np.exp(-(t - mu) ** 2 / 2 - lam * np.abs(t))
    return t, density / np.trapezoid(density, t)


def assert_matches(samples, t, density, tolerance):
    """Mean, spread and quartiles of the samples against the density's."""
    mean = np.trapezoid(t * density, t)
    sd = math.sqrt(np.trapezoid((t - mean) ** 2 * density, t))
    quartiles = np.interp([0.25, 0.5, 0.75], np.cumsum(density) / density.sum(), t)
    assert abs(samples.mean() - mean) < tolerance
    assert abs(samples.std() - sd) < tolerance
    assert np.allclose(np.quantile(samples, [0.25, 0.5, 0.75]), quartiles, atol=tolerance)


def test_splitting_sampler_finds_a_one_dimensional_laplace_marginal():
    """Target ∝ exp(−λ|x|) · N(2, 1): the particles' mean, spread and quartiles match."""
    lam, mu = 1.0, 2.0
    x0 = 3 * torch.randn(400, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = rwpo.sample(x0, lambda y: y - mu, lam, rwpo.halved_steps(0.1, 200), beta=1.0)
    assert_matches(x[:, 0].numpy(), *laplace_gaussian_marginal(lam, mu), tolerance=0.15)
    start = x0[:, 0].numpy()
    with pytest.raises(AssertionError):  # the check can fail: the initial particles do not pass
        assert_matches(start, *laplace_gaussian_marginal(lam, mu), tolerance=0.15)


def test_myula_finds_the_same_marginal():
    lam, mu = 1.0, 2.0
    generator = torch.Generator().manual_seed(4)
    x0 = torch.zeros(4000, 1, dtype=torch.float64)
    x = rwpo.sample(x0, lambda y: y - mu, lam, [0.01] * 800, method="myula", generator=generator)
    assert_matches(x[:, 0].numpy(), *laplace_gaussian_marginal(lam, mu), tolerance=0.15)


def test_splitting_order_and_method_are_checked():
    with pytest.raises(ValueError, match="order"):
        rwpo.splitting_step(torch.zeros(3, 1), lambda y: y, 0.1, 0.1, order="backwards")
    with pytest.raises(ValueError, match="method"):
        rwpo.sample(torch.zeros(3, 1), lambda y: y, 0.1, [0.1], method="svgd")


def test_halved_steps_follow_the_matlab_script():
    steps = rwpo.halved_steps(0.1, 100)
    assert len(steps) == 100 and steps[48] == 0.1 and steps[49] == 0.025 and steps[-1] == 0.025


def test_rwpo_layer_trains_and_keeps_shapes():
    torch.manual_seed(0)
    layer = rwpo.RWPOLayer(2, lam=0.5, h=0.1, depth=2, width=16, pattern="random(8) | self")
    x = torch.randn(32, 2)
    out = layer(x)
    assert out.shape == x.shape
    out.pow(2).mean().backward()
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        assert layer(torch.randn(3, 16, 2)).shape == (3, 16, 2)  # batches of particle sets, n = 16


def test_exact_marginal_closed_form_agrees_with_quadrature():
    a = np.array([-8.0, -4.0, 0.0, 4.0])
    assert np.allclose(mixture.laplace_gaussian_mass(a, 0.1), mixture.laplace_gaussian_mass_numerical(a, 0.1),
                       rtol=1e-7)
    authors = mixture.laplace_gaussian_mass(a, 0.1, authors=True)
    assert not np.allclose(authors, mixture.laplace_gaussian_mass(a, 0.1), rtol=1e-3)  # λ·sd ≠ λ·v
    marginal = mixture.exact_marginal(0, 20, 0.1)
    assert abs(marginal.sum() * mixture.GRID[2] - 1) < 1e-12


def test_mixture_gradient_is_the_gradient_of_g():
    means = mixture.mixture_means(3)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    g = -torch.logsumexp(-((x[:, None, :] - means[None]) ** 2).sum(-1) / (2 * mixture.VARIANCE), dim=1)
    (autograd,) = torch.autograd.grad(g.sum(), x)
    assert torch.allclose(mixture.mixture_gradient(means)(x.detach()), autograd)


def test_mixture_cli_on_a_tiny_setting(tmp_path, capsys):
    out = tmp_path / "mixture.json"
    code = main(["experiment", "mixture", "--seeds", "0", "1", "--particles", "12", "--iterations", "4",
                 "--dim", "3", "--scaling-particles", "32", "--patterns", "chunk(8)", "--dense-max", "16", "--dense-probe", "1",
                 "--out", str(out), "--plots", str(tmp_path), "--quiet"])
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results) >= {"experiment", "settings", "marginals", "exact_samples", "runs", "summary", "scaling"}
    assert results["settings"]["iterations"] == 4 and results["settings"]["seeds"] == [0, 1]
    assert len(results["runs"]) == len(mixture.CONFIGS) * 2 * 2  # configs × seeds × coordinates
    for run in results["runs"]:
        assert set(run) >= {"method", "softmax", "order", "seed", "coordinate", "distance", "curve"}
        assert len(run["curve"]) == 4 and run["curve"][-1] == run["distance"]
        assert 0 <= run["distance"] <= 2
    assert len(results["summary"]) == (len(mixture.CONFIGS) + 1) * 2  # and the exact samples' floor
    assert len(results["exact_samples"]) == 2 * 2
    assert [row["interaction"] for row in results["scaling"]] == ["chunk(8)", "myula", "exact-samples", "dense"]
    assert [row["iterations"] for row in results["scaling"]] == [4, 4, 0, 1]  # dense at 32 > 16: timed only
    assert results["scaling"][-1]["distance"] is None and results["scaling"][0]["keys_per_particle"] == 8
    assert (tmp_path / "mixture_distance.png").exists() and (tmp_path / "mixture_marginals.png").exists()
    assert "distance" in capsys.readouterr().out


def test_generative_target_samples_follow_the_density():
    from patterndsl.experiments import rwpo_generative as gen

    lam = 2.0
    samples = gen.sample_target(20000, lam, np.random.default_rng(0))
    t = np.linspace(-8, 8, 1601)
    u, v = np.meshgrid(t, t, indexing="ij")
    density = np.exp(-lam * (np.abs(u) + np.abs(v))) * sum(
        np.exp(-((u - a) ** 2 + (v - b) ** 2) / (2 * gen.VARIANCE)) for a, b in gen.CENTRES)
    cdf = np.cumsum(density.sum(1)) / density.sum()  # coordinate 1's distribution function on the grid
    points = np.array([-3.0, -2.0, -1.0, -0.2, 0.0, 0.2, 1.0, 2.0, 3.0])
    empirical = (samples[:, 0][None, :] <= points[:, None]).mean(1)
    assert np.allclose(empirical, np.interp(points, t, cdf), atol=0.015)
    near_axes = (np.abs(u) < gen.NEAR_ZERO) | (np.abs(v) < gen.NEAR_ZERO)
    assert abs(gen.sparse_share(torch.from_numpy(samples)) - density[near_axes].sum() / density.sum()) < 0.02


def test_generative_cli_on_a_tiny_setting(tmp_path, capsys):
    out = tmp_path / "generative.json"
    code = main(["experiment", "rwpo-generative", "--steps", "3", "--eval-every", "2", "--particles", "16",
                 "--eval-particles", "32", "--depth", "1", "--width", "8", "--pattern", "random(4) | self",
                 "--out", str(out), "--plots", str(tmp_path), "--quiet"])
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results["models"]) == {"l1-prior", "no-prior"}
    for model in results["models"].values():
        assert [point["step"] for point in model["curve"]] == [0, 2, 3]
        assert set(model["final"]) == {"step", "mmd", "sliced_wasserstein", "sparse_share"}
    assert (tmp_path / "rwpo_generative.png").exists()
    assert "sliced W2" in capsys.readouterr().out


def test_exact_samples_match_the_exact_marginal():
    """The 20-d sampler and the numerical marginal agree: many samples' KDE is close to it."""
    samples = mixture.sample_laplace_gaussian_mixture(mixture.mixture_means(20).numpy(), mixture.VARIANCE, 0.1,
                                                      20000, np.random.default_rng(0))
    exact = mixture.exact_marginal(0, 20, 0.1)
    authors = mixture.exact_marginal(0, 20, 0.1, mass=lambda a: mixture.laplace_gaussian_mass(a, 0.1, authors=True))
    assert mixture.kde_distance(samples[:, 0], exact) < 0.05
    assert mixture.kde_distance(samples[:, 0], authors) > 0.055  # the authors' λ·sd marginal is another density


def test_a_pattern_with_heads_is_refused():
    compiled = patterndsl.compile("heads {\n    0: chunk(4)\n    1: self\n}", n=8)
    with pytest.raises(patterndsl.SpatError, match="one layer and one head"):
        rwpo.rwpo_mean(torch.zeros(8, 2), LAM, H, pattern=compiled)


def test_the_experiment_modules_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, patterndsl.experiments as e; names = e.experiments(); "
            "print('mixture' in names and 'rwpo-generative' in names, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False"]
