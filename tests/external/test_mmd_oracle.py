"""The sliced energy distance against independent oracles: unbiasedness over seeds.

Its expectation over uniform directions is the full energy distance, so the mean over many seeds
must match, within a few standard errors, (i) the energy distance computed here from scipy's
``cdist`` matrices in float64 and (ii) the core's exact :func:`geom.energy_distance`; the mean of its
gradients must match the exact gradient likewise.
"""

import math

import numpy as np
import torch
from scipy.spatial.distance import cdist

import geom
from geom.mmd import sliced_energy_distance


def scipy_energy(x, y, a, b):
    """``2 a^T D_xy b - a^T D_xx a - b^T D_yy b`` from full float64 distance matrices."""
    x, y, a, b = (np.asarray(t, dtype=np.float64) for t in (x, y, a, b))
    return 2 * a @ cdist(x, y) @ b - a @ cdist(x, x) @ a - b @ cdist(y, y) @ b


def problem(seed, n, m, d):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) * np.linspace(0.5, 1.5, d) + 0.4
    a, b = rng.uniform(0.1, 1.0, n), rng.uniform(0.1, 1.0, m)
    return x, y, a / a.sum(), b / b.sum()


def test_mean_over_seeds_matches_scipy_and_core():
    for d, (n, m) in ((2, (50, 35)), (5, (40, 60)), (12, (30, 30))):
        x, y, a, b = problem(d, n, m, d)
        exact = scipy_energy(x, y, a, b)
        mu, nu = geom.measure(torch.from_numpy(x), weights=a), geom.measure(torch.from_numpy(y), weights=b)
        core = geom.energy_distance(mu, nu, backend="dense").item()
        assert abs(core - exact) < 1e-10 * max(1.0, exact)  # the two exact oracles agree
        runs = torch.stack([sliced_energy_distance(mu, nu, n_projections=8, seed=s) for s in range(500)])
        tol = 4 * runs.std().item() / math.sqrt(runs.numel())
        assert abs(runs.mean().item() - exact) < tol, (d, runs.mean().item(), exact, tol)


def test_mean_over_seeds_of_the_gradient_matches_the_exact_gradient():
    x, y, a, b = problem(7, 25, 20, 3)
    mu_x = torch.from_numpy(x).requires_grad_()
    nu = geom.measure(torch.from_numpy(y), weights=b)
    (exact,) = torch.autograd.grad(geom.energy_distance(geom.measure(mu_x, weights=a), nu, backend="dense"), mu_x)
    grads = []
    for s in range(400):
        value = sliced_energy_distance(geom.measure(mu_x, weights=a), nu, n_projections=8, seed=s)
        grads.append(torch.autograd.grad(value, mu_x)[0])
    grads = torch.stack(grads)  # (S, N, d)
    S = grads.shape[0]
    # Squared error of the mean vs its expectation (the summed variance of the mean): about 1 when
    # unbiased; the coordinates are correlated, so it fluctuates more than a chi-square over N d.
    sq_err = (grads.mean(0) - exact).square().sum()
    expected = grads.var(0).sum() / S
    assert float(sq_err / expected) < 3.0
    cos = torch.nn.functional.cosine_similarity(grads.mean(0).flatten(), exact.flatten(), dim=0)
    assert cos > 0.99
