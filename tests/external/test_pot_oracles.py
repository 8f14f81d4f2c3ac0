"""geom.sliced_wasserstein against independent oracles: POT (torch backend) and scipy.

With the same directions (POT takes projections as ``(d, L)``: we pass ``directions.T``) both
compute ``SW_p = (mean_l W_p^p(theta_l#mu, theta_l#nu))^(1/p)`` exactly, so values and autograd
gradients must agree to rounding. In d = 1 with the direction ``[[1.0]]``, ``SW_p`` is the exact
1-D distance ``W_p = (W_p^p)^(1/p)``.
"""

import numpy as np
import pytest
import torch

import geom

ot = pytest.importorskip("ot")

F64 = torch.float64
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}
GRAD_TOL = {torch.float64: dict(rtol=1e-9, atol=1e-12), torch.float32: dict(rtol=1e-4, atol=1e-6)}


def problem(n, m, d, weighted, seed=0, dtype=F64, L=32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    y = 1.3 * torch.randn(m, d, generator=g, dtype=F64) + 0.4
    a = torch.rand(n, generator=g, dtype=F64) + 0.1 if weighted else torch.full((n,), 1.0 / n, dtype=F64)
    b = torch.rand(m, generator=g, dtype=F64) + 0.1 if weighted else torch.full((m,), 1.0 / m, dtype=F64)
    theta = torch.randn(L, d, generator=g, dtype=F64)
    theta = theta / theta.norm(dim=1, keepdim=True)
    return tuple(t.to(device=device, dtype=dtype) for t in (x, y, a / a.sum(), b / b.sum(), theta))


def pot_sw(x, y, a, b, theta, p):
    return ot.sliced_wasserstein_distance(x, y, a, b, projections=theta.T, p=p)


def geom_sw(x, y, a, b, theta, p):
    return geom.sliced_wasserstein(geom.measure(x, weights=a), geom.measure(y, weights=b), p=p, directions=theta)


SETTINGS = [  # (n, m, weighted)
    (50, 50, False),  # equal sizes, uniform weights: the fast path
    (50, 37, False),  # N != M
    (50, 37, True),  # weighted, N != M
    (40, 40, True),  # weighted, equal sizes
    (1500, 1500, False),  # L * N above the threshold where rows are sorted on the thread pool
    (1500, 1100, True),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("n, m, weighted", SETTINGS)
def test_value_and_gradients_equal_pot(n, m, weighted, p, dtype, device):
    x, y, a, b, theta = problem(n, m, 3, weighted, seed=n + m + p, dtype=dtype, L=64, device=device)
    xs = [x.clone().requires_grad_(True), x.clone().requires_grad_(True)]
    ys = [y.clone().requires_grad_(True), y.clone().requires_grad_(True)]
    ours = geom_sw(xs[0], ys[0], a, b, theta, p)
    theirs = pot_sw(xs[1], ys[1], a, b, theta, p)
    assert ours.dtype == dtype and ours.device == x.device
    torch.testing.assert_close(ours, theirs.to(dtype), **TOL[dtype])
    g_ours = torch.autograd.grad(ours, (xs[0], ys[0]))
    g_theirs = torch.autograd.grad(theirs, (xs[1], ys[1]))
    for g1, g2 in zip(g_ours, g_theirs):
        torch.testing.assert_close(g1, g2, **GRAD_TOL[dtype])


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("n, m, weighted", SETTINGS)
def test_directions_gradient_equals_pot(n, m, weighted, p):
    """Gradient w.r.t. the directions (a leaf tensor): POT differentiates through ``X @ projections``."""
    x, y, a, b, theta = problem(n, m, 2, weighted, seed=7 * n + m + p, L=9)
    t1, t2 = theta.clone().requires_grad_(True), theta.T.clone().requires_grad_(True)
    (g_ours,) = torch.autograd.grad(geom_sw(x, y, a, b, t1, p), t1)
    (g_theirs,) = torch.autograd.grad(ot.sliced_wasserstein_distance(x, y, a, b, projections=t2, p=p), t2)
    torch.testing.assert_close(g_ours, g_theirs.T, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_batch_with_zero_weight_padding_equals_pot_per_item(p):
    sizes = [(30, 22), (17, 30), (25, 25)]
    B, N, M = len(sizes), 30, 30
    theta = problem(2, 2, 3, False, seed=99, L=40)[4]
    X, Y = torch.full((B, N, 3), 50.0, dtype=F64), torch.full((B, M, 3), -50.0, dtype=F64)
    A, Bw = torch.zeros(B, N, dtype=F64), torch.zeros(B, M, dtype=F64)
    items = []
    for k, (n, m) in enumerate(sizes):
        x, y, a, b, _ = problem(n, m, 3, weighted=k != 2, seed=k)
        X[k, :n], Y[k, :m], A[k, :n], Bw[k, :m] = x, y, a, b
        items.append((x, y, a, b))
    values = geom.sliced_wasserstein(geom.measure(X, weights=A), geom.measure(Y, weights=Bw), p=p, directions=theta)
    assert values.shape == (B,)
    for k, (x, y, a, b) in enumerate(items):
        torch.testing.assert_close(values[k], pot_sw(x, y, a, b, theta, p), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_one_dimension_equals_exact_1d_ot(p, weighted):
    """d = 1, direction [[1.0]]: SW_p = (W_p^p)^(1/p) from POT's emd2_1d and wasserstein_1d (and scipy for p = 1)."""
    rng = np.random.default_rng(p)
    u, v = rng.normal(size=23), 1.5 * rng.normal(size=31) + 0.2
    a = rng.uniform(0.1, 1.0, size=23) if weighted else np.full(23, 1 / 23)
    b = rng.uniform(0.1, 1.0, size=31) if weighted else np.full(31, 1 / 31)
    a, b = a / a.sum(), b / b.sum()
    ours = geom.sliced_wasserstein(geom.measure(u, weights=a), geom.measure(v, weights=b), p=p, directions=[[1.0]])
    assert ours.dtype == F64
    emd = ot.emd2_1d(u, v, a, b, metric="minkowski", p=p)  # exact LP on the line, cost |x - y|^p
    # (n, 1) columns: one batch item for POT's batched quantile code
    quantiles = ot.wasserstein_1d(torch.tensor(u)[:, None], torch.tensor(v)[:, None], torch.tensor(a), torch.tensor(b),
                                  p=p)[0]
    assert ours.item() == pytest.approx(emd ** (1 / p), rel=1e-10)
    assert ours.item() == pytest.approx(quantiles.item() ** (1 / p), rel=1e-10)
    if p == 1:
        scipy_stats = pytest.importorskip("scipy.stats")
        assert ours.item() == pytest.approx(scipy_stats.wasserstein_distance(u, v, a, b), rel=1e-10)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_one_dimension_gradient_equals_pot(p):
    rng = np.random.default_rng(10 + p)
    u = torch.tensor(rng.normal(size=12), requires_grad=True)
    v = torch.tensor(rng.normal(size=7) + 0.5, requires_grad=True)
    a, b = torch.tensor(rng.uniform(0.1, 1, 12)), torch.tensor(rng.uniform(0.1, 1, 7))
    a, b = a / a.sum(), b / b.sum()
    ours = geom.sliced_wasserstein(geom.measure(u, weights=a), geom.measure(v, weights=b), p=p, directions=[[1.0]])
    g_ours = torch.autograd.grad(ours, (u, v))
    theirs = ot.wasserstein_1d(u[:, None], v[:, None], a, b, p=p)[0] ** (1 / p)
    g_theirs = torch.autograd.grad(theirs, (u, v))
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    for g1, g2 in zip(g_ours, g_theirs):
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12)


def test_monte_carlo_directions_equal_pot_with_the_same_directions():
    """The scheme's own directions (returned in the result) reproduce POT's value."""
    x, y, a, b, _ = problem(60, 45, 4, True, seed=3)
    r = geom.sliced_wasserstein(geom.measure(x, weights=a), geom.measure(y, weights=b), p=2, n_projections=50,
                                seed=11, return_result=True)
    assert r.directions.shape == (50, 4)
    torch.testing.assert_close(r.value, pot_sw(x, y, a, b, r.directions, 2), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("n, m", [(40, 40), (37, 23)])
def test_weight_gradients_equal_pot(n, m, p):
    """d SW / d raw weights: geom normalises them inside geom.measure, POT gets w / w.sum()."""
    x, y, a, b, theta = problem(n, m, 3, True, seed=4)
    wa, wb = (a * 7.0).requires_grad_(), (b * 3.0).requires_grad_()
    pot_sw(x, y, wa / wa.sum(), wb / wb.sum(), theta, p).backward()
    want = wa.grad.clone(), wb.grad.clone()
    wa.grad = wb.grad = None
    geom_sw(x, y, wa, wb, theta, p).backward()
    torch.testing.assert_close(wa.grad, want[0], **GRAD_TOL[F64])
    torch.testing.assert_close(wb.grad, want[1], **GRAD_TOL[F64])
