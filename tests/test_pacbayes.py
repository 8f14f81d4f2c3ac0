"""geom.learn.pacbayes and the "pacbayes" scheme: the PAC-Bayes bound, the vMF KL, the reparameterised
draws, the learned slice distribution and the permutation test built on it."""

import math

import pytest
import torch

import geom
import geom.testing
from geom.directions import haar_rotation, uniform_directions, von_mises_fisher
from geom.learn import pacbayes as pb
from geom_plugins.pacbayes import PacBayes

integrate = pytest.importorskip("scipy.integrate")


# ----------------------------------------------------------------------------------- the bound


def test_bound_matches_its_formula_by_hand():
    # 0.5 - (2 + log(1/0.1)) / 10 - 10 * 1^2 * (1/100 + 1/100) / 8
    #   = 0.5 - (2 + 2.302585093) / 10 - 0.025 = 0.5 - 0.4302585093 - 0.025 = 0.0447414907
    bound, lam = pb.pac_bayes_bound(0.5, 2.0, n=100, diameter=1.0, p=1, delta=0.1, lam=10.0)
    assert bound == pytest.approx(0.0447414907, abs=1e-9)
    assert lam == 10.0


def test_bound_over_a_grid_by_hand():
    # n = 50, m = 200, Delta = 2, p = 2: Delta^(2p) (1/n + 1/m) / 8 = 16 * 0.025 / 8 = 0.05
    # grid {1, 4}, delta = 0.05: log(2 / 0.05) = log 40 = 3.688879454
    #   lam = 1: 1 - 3.688879454 - 0.05 = -2.738879454
    #   lam = 4: 1 - 3.688879454 / 4 - 0.2 = -0.122219864  (the larger)
    bound, lam = pb.pac_bayes_bound(1.0, 0.0, n=50, m=200, diameter=2.0, p=2, delta=0.05, lam=[1.0, 4.0])
    assert bound == pytest.approx(-0.122219864, abs=1e-8)
    assert lam == 4.0


def test_default_grid_and_its_union_bound():
    # base = sqrt(8 / (1 * (1/100 + 1/100))) = sqrt(400) = 20, then doubling
    grid = pb.lambda_grid(100, diameter=1.0, p=1)
    assert len(grid) == pb.GRID_SIZE
    assert grid[0] == pytest.approx(20.0) and grid[3] == pytest.approx(160.0)
    bound, lam = pb.pac_bayes_bound(0.5, 3.0, n=100, diameter=1.0, p=1, delta=0.05)
    by_hand = max(0.5 - (3.0 + math.log(pb.GRID_SIZE / 0.05)) / g - g * 0.02 / 8 for g in grid)
    assert bound == pytest.approx(by_hand, abs=1e-12) and lam in grid


def test_empirical_bernstein_by_hand():
    costs = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)  # mean 0.5, unbiased variance 1/3
    # 0.5 - sqrt(2 (1/3) log(2/0.1) / 4) - 7 * 1 * log(20) / (3 * 3)
    log20 = math.log(20.0)
    expected = 0.5 - math.sqrt(2 * log20 / 12) - 7 * log20 / 9
    assert pb.empirical_bernstein_lower(costs, 1.0, 0.1) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------------- vMF against uniform


def _kl_by_quadrature(kappa: float, d: int) -> float:
    """KL(vMF || uniform) from the density of the cosine w, f(w) ~ e^(kappa w) (1 - w^2)^((d-3)/2):
    log q(theta) = kappa w - log(|S^(d-2)| int e^(kappa w) (1 - w^2)^((d-3)/2) dw), no Bessel function."""
    def area(k):  # |S^(k-1)|
        return 2 * math.pi ** (k / 2) / math.gamma(k / 2)

    def f(w):
        return math.exp(kappa * (w - 1)) * (1 - w * w) ** ((d - 3) / 2)

    z = integrate.quad(f, -1, 1, limit=200, epsabs=0, epsrel=1e-12)[0]
    mean = integrate.quad(lambda w: w * f(w), -1, 1, limit=200, epsabs=0, epsrel=1e-12)[0] / z
    return kappa * mean - (math.log(area(d - 1)) + math.log(z) + kappa) + math.log(area(d))


@pytest.mark.parametrize("d", [3, 10])
@pytest.mark.parametrize("kappa", [0.3, 2.0, 25.0])
def test_vmf_kl_matches_quadrature(d, kappa):
    assert float(pb.vmf_kl_uniform(kappa, d)) == pytest.approx(_kl_by_quadrature(kappa, d), rel=1e-7, abs=1e-12)


def test_vmf_kl_matches_monte_carlo_in_d3():
    # in d = 3 the density is kappa / (4 pi sinh kappa) e^(kappa w): KL = E[log q] + log(4 pi)
    kappa, g = 4.0, torch.Generator().manual_seed(3)
    theta = von_mises_fisher(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), kappa, 200_000, generator=g)
    log_q = math.log(kappa / (4 * math.pi * math.sinh(kappa))) + kappa * theta[:, 2]
    values = log_q + math.log(4 * math.pi)
    estimate, err = float(values.mean()), float(values.std() / math.sqrt(values.numel()))
    assert abs(float(pb.vmf_kl_uniform(kappa, 3)) - estimate) < 5 * err


def test_vmf_kl_on_the_circle_of_two_points_and_at_zero():
    # S^0: P(+m) = e^k / (e^k + e^-k); KL to (1/2, 1/2) = k tanh k - log cosh k
    for k in (0.2, 1.5, 6.0):
        assert float(pb.vmf_kl_uniform(k, 1)) == pytest.approx(k * math.tanh(k) - math.log(math.cosh(k)), rel=1e-10)
    assert float(pb.vmf_kl_uniform(1e-8, 50)) == pytest.approx(0.0, abs=1e-12)


def test_vmf_kl_gradient_matches_finite_differences():
    kappa = torch.tensor([0.5, 5.0, 60.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: pb.vmf_kl_uniform(k, 7), (kappa,))


def test_mixture_kl_bound_is_the_weighted_sum():
    w, k = torch.tensor([0.25, 0.75], dtype=torch.float64), torch.tensor([2.0, 9.0], dtype=torch.float64)
    expected = 0.25 * float(pb.vmf_kl_uniform(2.0, 6)) + 0.75 * float(pb.vmf_kl_uniform(9.0, 6))
    assert float(pb.mixture_kl_bound(w, k, 6)) == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------------- learning and the scheme


def _problem(d, seed, shift=1.5):
    g = torch.Generator().manual_seed(seed)
    basis = haar_rotation(d, g)[:, :2]
    radius = math.sqrt(d) + 2
    return g, basis, radius


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learning_raises_the_held_out_bound(seed):
    d = 5
    g, basis, radius = _problem(d, seed)

    def draw(n, shift):
        return pb.truncated_gaussians(n, basis, shift=shift, radius=radius, generator=g)

    fit = pb.fit_vmf_mixture(draw(3000, 0.0), draw(3000, 1.5), diameter=2 * radius, p=1, n_components=2,
                             n_steps=60, lr=0.05, n_samples=16, generator=g)
    x, y = draw(3000, 0.0), draw(3000, 1.5)
    learned = pb.certify(fit.rho, x, y, diameter=2 * radius, p=1, n_slices=1024, generator=g)
    uniform = pb.certify(None, x, y, diameter=2 * radius, p=1, n_slices=1024, generator=g)
    assert learned.bound > uniform.bound + 0.05
    assert learned.kl > 0 and uniform.kl == 0
    assert fit.history[-1] > fit.history[0]
    assert float((fit.rho.locations @ basis[:, 0]).abs().max()) > 0.9  # found the direction of the shift


def test_certify_parts_add_up():
    d = 4
    g, basis, radius = _problem(d, 7)
    x = pb.truncated_gaussians(500, basis, radius=radius, generator=g)
    y = pb.truncated_gaussians(400, basis, shift=1.0, radius=radius, generator=g)
    rho = pb.VmfMixture(basis[:, :1].T.clone(), torch.tensor([5.0], dtype=torch.float64),
                        torch.tensor([1.0], dtype=torch.float64))
    r = pb.certify(rho, x, y, diameter=2 * radius, p=1, n_slices=256, seed=1)
    again, _ = pb.pac_bayes_bound(r.empirical_lower, r.kl, n=500, m=400, diameter=2 * radius, p=1, delta=0.025)
    assert r.bound == pytest.approx(again, abs=1e-12)
    assert r.kl == pytest.approx(float(pb.vmf_kl_uniform(5.0, d)), rel=1e-12)
    assert r.empirical_lower < r.empirical and (r.n, r.m) == (500, 400)
    assert pb.certify(rho, x, y, diameter=2 * radius, p=1, n_slices=256, seed=1) == r  # same seed, same report


def test_scheme_honours_the_contract():
    geom.testing.check_scheme(PacBayes)


def test_scheme_with_a_fitted_distribution_honours_the_contract_and_draws_from_it():
    rho = pb.VmfMixture(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), torch.tensor([200.0],
                        dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
    geom.testing.check_scheme(PacBayes, distribution=rho)
    scheme = PacBayes(distribution=rho)
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    res = geom.sliced_wasserstein(x, x + 1.0, scheme=scheme, n_projections=32, seed=0, return_result=True)
    assert float(res.directions[:, 2].min()) > 0.9  # around the fixed location, never refitted
    assert torch.equal(scheme.locations_, rho.locations)


def test_scheme_learns_the_discriminative_direction():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(400, 6, generator=g)
    y = torch.randn(400, 6, generator=g)
    y[:, 4] += 2.0
    scheme = PacBayes(n_components=1, n_steps=60, diameter=12.0)
    geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=64, seed=3, p=1)
    assert abs(float(scheme.locations_[0, 4])) > 0.9
    # the learned SW is larger than the uniform one on these samples (the distribution puts its mass there)
    learned = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=256, seed=4, p=1)
    uniform = geom.sliced_wasserstein(x, y, n_projections=256, seed=4, p=1)
    assert float(learned) > 1.5 * float(uniform)


# ----------------------------------------------------------------------------------- the permutation test


def test_permutation_test_rejects_a_clear_difference():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(40, 3, generator=g), torch.randn(40, 3, generator=g) + 2.0
    stat, pvalue = pb.sw_permutation_test(x, y, uniform_directions(20, 3, g).float(), p=1, n_permutations=99, seed=0)
    assert pvalue == pytest.approx(1 / 100) and stat > 1.0


@pytest.mark.slow
def test_permutation_test_keeps_its_level_with_learned_slices():
    # directions learned on one split, the test on fresh null samples: rejections ~ Binomial(R, <= alpha)
    d, R, alpha = 5, 400, 0.05
    g, basis, radius = _problem(d, 4)
    fit = pb.fit_vmf_mixture(pb.truncated_gaussians(1000, basis, radius=radius, generator=g),
                             pb.truncated_gaussians(1000, basis, shift=1.0, radius=radius, generator=g),
                             diameter=2 * radius, p=1, n_steps=30, n_samples=16, generator=g)
    rejections = 0
    for _ in range(R):
        x = pb.truncated_gaussians(15, basis, radius=radius, generator=g)
        y = pb.truncated_gaussians(15, basis, radius=radius, generator=g)
        theta = fit.rho.sample(20, generator=g).float()
        rejections += pb.sw_permutation_test(x, y, theta, p=1, n_permutations=39, generator=g)[1] <= alpha
    # mean <= R alpha = 20, sd <= sqrt(R alpha (1 - alpha)) = 4.36: a margin of 3 sd
    assert rejections <= R * alpha + 3 * math.sqrt(R * alpha * (1 - alpha))


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, name", [
    (dict(delta=1.5), "delta"), (dict(diameter=-1.0), "diameter"), (dict(kl=-0.1), "kl"), (dict(lam=[]), "lam"),
    (dict(lam=-2.0), "lam"), (dict(n=0), "n"), (dict(p=0.5), "p"),
])
def test_bound_errors_name_the_argument(kwargs, name):
    args = dict(empirical=0.3, kl=1.0, n=10, diameter=1.0, p=1, delta=0.05) | kwargs
    with pytest.raises((ValueError, TypeError), match=rf"^{name}:"):
        pb.pac_bayes_bound(args.pop("empirical"), args.pop("kl"), **args)


def test_other_errors_name_the_argument():
    with pytest.raises(ValueError, match="^kappa:"):
        pb.vmf_kl_uniform(0.0, 3)
    with pytest.raises(ValueError, match="^weights:"):
        pb.VmfMixture(torch.eye(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64),
                      torch.tensor([0.5, 0.6], dtype=torch.float64))
    with pytest.raises(TypeError, match="^kappas:"):
        pb.VmfMixture(torch.eye(2, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                      torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="^x:"):
        pb.fit_vmf_mixture(torch.randn(10, 1), torch.randn(10, 1), diameter=1.0)
    with pytest.raises(TypeError, match="^x:"):
        pb.fit_vmf_mixture([[0.0, 1.0]], torch.randn(10, 2), diameter=1.0)
    rho = pb.VmfMixture(torch.eye(3, dtype=torch.float64)[:1], torch.ones(1, dtype=torch.float64),
                        torch.ones(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="^rho:"):
        pb.certify(rho, torch.randn(10, 4), torch.randn(10, 4), diameter=5.0, p=1)
    with pytest.raises(ValueError, match="^n_permutations:"):
        pb.sw_permutation_test(torch.randn(5, 2), torch.randn(5, 2), uniform_directions(3, 2).float(),
                               n_permutations=0)
    with pytest.raises(ValueError, match="^n_components:"):
        PacBayes(n_components=0)
    with pytest.raises(TypeError, match="^distribution:"):
        PacBayes(distribution="vmf")
    with pytest.raises(ValueError, match="^radius:"):
        pb.truncated_gaussians(10, torch.eye(3)[:, :2], radius=-1.0)


@pytest.mark.parametrize("unit", [1e-20, 1e20])
def test_the_learned_slices_do_not_depend_on_the_units_of_the_data(unit):
    """The objective's two terms both scale as diameter^p: the scheme fits in units of the diameter, so
    data in any units (far outside float32's range of W_2^2 here) gives the same law."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    y = torch.randn(300, 3, generator=g, dtype=torch.float64) + torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
    fits = []
    for scale in (1.0, unit):
        scheme = PacBayes(n_components=1, n_steps=20)
        scheme.fit(geom.measure(x * scale), geom.measure(y * scale), p=2, generator=torch.Generator().manual_seed(1))
        fits.append((scheme.locations_, scheme.kappas_))
    torch.testing.assert_close(fits[1][0], fits[0][0], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(fits[1][1], fits[0][1], rtol=1e-6, atol=1e-8)


def test_a_huge_p_keeps_the_current_law_and_says_so():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g) + 1
    scheme = PacBayes(n_components=1, n_steps=5)
    with pytest.warns(geom.GeomWarning, match="fitted for p <= 64, got p = 1e"):
        scheme.fit(geom.measure(x), geom.measure(y), p=1e6)
    assert scheme.distribution is None
