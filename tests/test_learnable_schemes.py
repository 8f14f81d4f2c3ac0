"""Learnable slicing schemes: "max" (max-sliced), "dsw" (distributional) and "vmf-dsw" (von Mises-Fisher).

The reference pair is an anisotropic Gaussian cloud and its copy stretched twice along x: every slice
costs about ``(sigma_y(theta) - sigma_x(theta))^2``, largest at ``theta = +-e_x``.
"""

import math

import ot
import pytest
import torch
from scipy.special import ive

import geom
import geom.testing
from geom.sliced import sliced_costs
from geom_plugins.dsw import Distributional, VonMisesFisherDSW
from geom_plugins.maxsliced import MaxSliced

SCHEMES = [MaxSliced, Distributional, VonMisesFisherDSW]
F64 = torch.float64


def stretched_pair(n=2000, seed=0, axis=0):
    """An anisotropic Gaussian cloud in R^3 and its copy stretched twice along ``axis``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=F64) * torch.tensor([1.0, 0.7, 0.5], dtype=F64)
    stretch = torch.ones(3, dtype=F64)
    stretch[axis] = 2.0
    return x, x * stretch


def fibonacci_sphere(n):
    """``(n, 3)`` nearly uniform grid of unit vectors."""
    i = torch.arange(n, dtype=F64)
    z = 1 - (2 * i + 1) / n
    r = (1 - z * z).sqrt()
    phi = i * math.pi * (3 - math.sqrt(5))
    return torch.stack([r * phi.cos(), r * phi.sin(), z], 1)


@pytest.fixture(scope="module")
def pair():
    return stretched_pair()


@pytest.fixture(scope="module")
def reference(pair):
    """Brute force over a dense grid (max and argmax of W_2^2) and plain Monte Carlo SW_2."""
    x, y = pair
    grid = fibonacci_sphere(20000)
    costs = sliced_costs(geom.measure(x), geom.measure(y), grid, 2.0)[0]  # (G,)
    k = int(costs.argmax())
    mc = geom.sliced_wasserstein(x, y, n_projections=4000, seed=1, return_result=True)
    return {"grid_max": costs[k].item(), "grid_argmax": grid[k], "mc": mc.value.item(), "mc_err": mc.stderr.item()}


@pytest.fixture(scope="module")
def max_result(pair):
    scheme = MaxSliced()
    res = geom.sliced_wasserstein(*pair, scheme=scheme, n_projections=1, seed=0, return_result=True)
    return scheme, res


# --- the plugin contract --------------------------------------------------------------------------


@pytest.mark.parametrize("cls, options", [
    (MaxSliced, {}), (MaxSliced, {"n_starts": 3, "optimizer": "sgd", "n_steps": 5}),
    (Distributional, {}), (Distributional, {"lam": 0.0, "n_steps": 3}),
    (VonMisesFisherDSW, {}), (VonMisesFisherDSW, {"kappa": 0.5, "n_steps": 3}),
])
def test_check_scheme(cls, options):
    geom.testing.check_scheme(cls, **options)


@pytest.mark.parametrize("cls", SCHEMES)
def test_same_seed_same_result(cls, pair):
    x, y = pair[0][:300], pair[1][:300]
    a = geom.sliced_wasserstein(x, y, scheme=cls(n_steps=5), n_projections=8, seed=3, return_result=True)
    b = geom.sliced_wasserstein(x, y, scheme=cls(n_steps=5), n_projections=8, seed=3, return_result=True)
    c = geom.sliced_wasserstein(x, y, scheme=cls(n_steps=5), n_projections=8, seed=4, return_result=True)
    assert torch.equal(a.directions, b.directions) and torch.equal(a.value, b.value)
    assert not torch.equal(a.directions, c.directions)


# --- max-sliced -----------------------------------------------------------------------------------


def test_max_finds_the_best_direction(max_result, reference):
    scheme, res = max_result
    theta = scheme.direction_[0]
    assert abs(theta[0].item()) > 0.999  # +-e_x, the stretched axis
    assert abs(theta @ reference["grid_argmax"]).item() > 0.999
    # at least the best of 20000 grid directions (up to rounding), and not far above it
    grid_max = reference["grid_max"]
    assert res.value.item() ** 2 >= grid_max * (1 - 1e-9)
    assert res.value.item() ** 2 <= grid_max * (1 + 1e-3)
    assert math.isnan(res.stderr.item())
    assert torch.allclose(res.directions, theta.expand_as(res.directions))


def test_max_value_matches_pot_at_the_learned_direction(pair, max_result):
    scheme, res = max_result
    x, y = pair
    expected = ot.sliced_wasserstein_distance(x.numpy(), y.numpy(), projections=scheme.direction_.T.numpy(), p=2)
    assert res.value.item() == pytest.approx(float(expected), rel=1e-10)
    assert scheme.cost_.item() == pytest.approx(float(expected) ** 2, rel=1e-10)


def test_max_is_above_monte_carlo_sw(max_result, reference):
    _, res = max_result
    assert res.value.item() > reference["mc"] + 10 * reference["mc_err"]


def test_max_is_a_stationary_point(pair, max_result):
    """The gradient in theta vanishes at the learned direction (what the envelope theorem needs)."""
    scheme, _ = max_result
    mu, nu = geom.measure(pair[0]), geom.measure(pair[1])

    def tangent_gradient(theta):
        theta = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(sliced_costs(mu, nu, theta[None], 2.0).sum(), theta)
        return (g - (g @ theta) * theta).norm().item()

    at_random = tangent_gradient(torch.tensor([0.6, 0.6, math.sqrt(0.28)], dtype=F64))
    assert tangent_gradient(scheme.direction_[0]) < 0.02 * at_random


def test_max_is_projected_ascent_not_the_first_draw(pair):
    x, y = pair
    start = geom.sliced_wasserstein(x, y, scheme=MaxSliced(n_steps=1, lr=1e-12), n_projections=1, seed=5)
    climbed = geom.sliced_wasserstein(x, y, scheme=MaxSliced(), n_projections=1, seed=5)
    assert climbed.item() > start.item() + 0.05


def test_max_warm_start_and_best_iterate(pair):
    x, y = pair
    scheme = MaxSliced()
    scheme.fit(geom.measure(x), geom.measure(y), p=2.0, generator=torch.Generator().manual_seed(0))
    first = scheme.cost_.item()
    # warm: big steps leave the optimum it starts from, but the best iterate seen is kept
    again = MaxSliced(n_steps=2, lr=1.0)
    again.direction_ = scheme.direction_.clone()
    again.fit(geom.measure(x), geom.measure(y), p=2.0, generator=torch.Generator().manual_seed(1))
    assert again.cost_.item() >= first
    # cold: a random start and tiny steps stay far below
    cold = MaxSliced(n_steps=2, lr=1e-12, warm_start=False)
    cold.direction_ = scheme.direction_.clone()
    cold.fit(geom.measure(x), geom.measure(y), p=2.0, generator=torch.Generator().manual_seed(2))
    assert cold.cost_.item() < first - 0.05


def test_max_batch_has_one_direction_per_item():
    x0, y0 = stretched_pair(500, seed=1, axis=0)
    x1, y1 = stretched_pair(500, seed=2, axis=2)
    scheme = MaxSliced(n_starts=2)
    res = geom.sliced_wasserstein(torch.stack([x0, x1]), torch.stack([y0, y1]), scheme=scheme, n_projections=2,
                                  seed=0, return_result=True)
    assert abs(scheme.direction_[0, 0].item()) > 0.99 and abs(scheme.direction_[1, 2].item()) > 0.99
    for b, (x, y) in enumerate(((x0, y0), (x1, y1))):
        alone = geom.sliced_wasserstein(x, y, scheme=MaxSliced(n_starts=2), n_projections=1, seed=0)
        assert res.value[b].item() == pytest.approx(alone.item(), rel=1e-4)
    with pytest.raises(ValueError, match="n_projections"):
        scheme.directions(1, 3)


def test_max_estimate_is_the_largest_given_slice(pair):
    x, y = pair[0][:200], pair[1][:200]
    theta = torch.randn(5, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    theta = theta / theta.norm(dim=1, keepdim=True)
    scheme = MaxSliced()
    value = geom.sliced_wasserstein(x, y, scheme=scheme, directions=theta)
    xn, yn = x.numpy(), y.numpy()
    per_slice = [ot.sliced_wasserstein_distance(xn, yn, projections=t[:, None].numpy(), p=2) for t in theta]
    assert value.item() == pytest.approx(max(per_slice), rel=1e-10)
    assert scheme.direction_ is None  # given directions: no ascent


# --- distributional schemes -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Distributional, VonMisesFisherDSW])
def test_distributional_between_sw_and_max(cls, pair, reference, max_result):
    res = geom.sliced_wasserstein(*pair, scheme=cls(), n_projections=500, seed=0, return_result=True)
    value, err = res.value.item(), res.stderr.item()
    # learned something: well above plain SW, and never above the best single slice
    assert value > reference["mc"] + 3 * math.hypot(err, reference["mc_err"])
    assert value <= max_result[1].value.item() + 3 * err


def test_vmf_location_and_kappa(pair, max_result):
    values = []
    for kappa in (1.0, 10.0, 100.0):
        scheme = VonMisesFisherDSW(kappa=kappa)
        res = geom.sliced_wasserstein(*pair, scheme=scheme, n_projections=500, seed=0, return_result=True)
        assert abs(scheme.location_[0].item()) > 0.95  # the location climbs to the stretched axis
        cosines = res.directions @ scheme.location_
        A = ive(1.5, kappa) / ive(0.5, kappa)
        assert abs(cosines.mean().item() - A) < 4 * cosines.std().item() / math.sqrt(500) + 1e-12
        values.append((res.value.item(), res.stderr.item()))
    # more concentrated around the best axis: closer to max-sliced
    for (v0, e0), (v1, e1) in zip(values, values[1:]):
        assert v1 > v0 + 3 * math.hypot(e0, e1)
    assert values[-1][0] <= max_result[1].value.item() + 3 * values[-1][1]


def test_dsw_multiplier_spreads_the_directions(pair):
    results = []
    for lam in (0.1, 1.0, 10.0):
        scheme = Distributional(lam=lam)
        res = geom.sliced_wasserstein(*pair, scheme=scheme, n_projections=500, seed=0, return_result=True)
        theta = res.directions
        spread = (theta @ theta.T).abs()[~torch.eye(500, dtype=torch.bool)].mean().item()
        assert scheme.regularizer_ == pytest.approx(spread, abs=0.1)
        results.append((res.value.item(), res.stderr.item(), spread))
    for (v0, e0, s0), (v1, e1, s1) in zip(results, results[1:]):
        assert s1 < s0 - 0.05  # a larger multiplier: a smaller E|theta^T theta'| (smaller C)
        assert v1 < v0 - 3 * math.hypot(e0, e1)


def test_dsw_before_fit_is_uniform():
    theta = Distributional().directions(20000, 3, generator=torch.Generator().manual_seed(0))
    assert theta.mean(0).norm().item() < 4 * math.sqrt(1 / 20000)  # E theta = 0
    second = (theta.T @ theta / 20000 - torch.eye(3, dtype=F64) / 3).abs().max().item()
    assert second < 0.02  # E theta theta^T = I / 3


# --- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SCHEMES)
def test_gradient_matches_finite_differences(cls):
    """Autograd through the scheme's estimate equals central differences at the learned directions."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, generator=g, dtype=F64).requires_grad_(True)
    y = 0.5 * torch.randn(7, 3, generator=g, dtype=F64) + torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    scheme = cls(n_steps=30)
    res = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=6, seed=1, return_result=True)
    (grad,) = torch.autograd.grad(res.value, x)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    theta, h = res.directions.detach(), 1e-6
    fd = torch.zeros_like(grad)
    for i in range(x.shape[0]):
        for j in range(3):
            e = torch.zeros_like(x)
            e[i, j] = h
            up = geom.sliced_wasserstein(x.detach() + e, y, scheme=scheme, directions=theta)
            down = geom.sliced_wasserstein(x.detach() - e, y, scheme=scheme, directions=theta)
            fd[i, j] = (up - down) / (2 * h)
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("cls", SCHEMES)
def test_fit_runs_under_no_grad(cls, pair):
    x, y = pair[0][:200], pair[1][:200]
    with torch.no_grad():
        value = geom.sliced_wasserstein(x, y, scheme=cls(), n_projections=64, seed=0)
    mc = geom.sliced_wasserstein(x, y, n_projections=2000, seed=0)
    assert value.item() > mc.item()


# --- bad options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, options, error, name", [
    (VonMisesFisherDSW, {"kappa": 0}, ValueError, "kappa"),
    (VonMisesFisherDSW, {"kappa": -2.0}, ValueError, "kappa"),
    (VonMisesFisherDSW, {"kappa": "big"}, TypeError, "kappa"),
    (VonMisesFisherDSW, {"n_samples": 1}, ValueError, "n_samples"),
    (Distributional, {"lam": -1.0}, ValueError, "lam"),
    (Distributional, {"lam": None}, TypeError, "lam"),
    (Distributional, {"lr": 0.0}, ValueError, "lr"),
    (Distributional, {"warm_start": 1}, TypeError, "warm_start"),
    (Distributional, {"kappa": 1.0}, TypeError, "kappa"),
    (MaxSliced, {"n_steps": -1}, ValueError, "n_steps"),
    (MaxSliced, {"n_steps": 2.5}, TypeError, "n_steps"),
    (MaxSliced, {"lr": math.nan}, ValueError, "lr"),
    (MaxSliced, {"optimizer": "rmsprop"}, ValueError, "optimizer"),
    (MaxSliced, {"n_starts": 0}, ValueError, "n_starts"),
    (MaxSliced, {"lam": 1.0}, TypeError, "lam"),
])
def test_bad_options(cls, options, error, name):
    with pytest.raises(error, match=name):
        cls(**options)
