"""geom._circle: exact optimal transport on the circle R/Z, against independent oracles."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from geom._circle import circle_costs

P_VALUES = (1.0, 1.5, 2.0, 3.0)


def circ(x, y):
    d = np.abs(x - y) % 1.0
    return np.minimum(d, 1.0 - d)


def lp_cost(x, y, a, b, p):
    """W_p^p by linear programming over transport plans (scipy's HiGHS), an independent oracle."""
    N, M = len(x), len(y)
    C = circ(x[:, None], y[None, :]) ** p
    rows = np.kron(np.eye(N), np.ones(M))
    cols = np.kron(np.ones(N), np.eye(M))
    res = linprog(C.ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([a, b]), bounds=(0, None),
                  method="highs")
    assert res.status == 0
    return res.fun


def shift_cost(x, y, p):
    """Equal sizes, uniform weights: the optimal matching is a cyclic shift of the sorted orders."""
    x, y = np.sort(x), np.sort(y)
    return min(np.mean(circ(x, np.roll(y, k)) ** p) for k in range(len(x)))


def cost(x, y, a, b, p):
    t = lambda z: torch.as_tensor(np.asarray(z, dtype=np.float64))  # noqa: E731
    return circle_costs(t(x)[None, None], t(y)[None, None], t(a)[None], t(b)[None], p).item()


@pytest.mark.parametrize("p", P_VALUES)
def test_weighted_costs_equal_linear_programming(p):
    rng = np.random.default_rng(int(10 * p))
    for trial in range(12):
        N, M = rng.integers(1, 9, 2)
        x, y = rng.random(N), rng.random(M)
        if trial % 3 == 0:  # ties and coincident kinks
            x, y = np.round(8 * x) % 8 / 8, np.round(8 * y) % 8 / 8
        a, b = rng.random(N) + 0.05, rng.random(M) + 0.05
        a, b = a / a.sum(), b / b.sum()
        assert cost(x, y, a, b, p) == pytest.approx(lp_cost(x, y, a, b, p), abs=1e-9)


@pytest.mark.parametrize("p", P_VALUES)
def test_uniform_costs_equal_the_best_cyclic_matching(p):
    rng = np.random.default_rng(1)
    for N in (1, 5, 200):
        x, y = rng.random(N), rng.random(N) ** 3
        w = np.full(N, 1.0 / N)
        assert cost(x, y, w, w, p) == pytest.approx(shift_cost(x, y, p), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("p", P_VALUES)
def test_dirac_and_its_rotation(p):
    for x0, s in itertools.product((0.0, 0.3, 0.93), (0.05, 0.3, 0.5, 0.7, 0.99)):
        expected = min(s, 1 - s) ** p
        assert cost([x0], [(x0 + s) % 1], [1.0], [1.0], p) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("p", P_VALUES)
def test_common_rotation_and_swap_leave_the_cost_unchanged(p):
    rng = np.random.default_rng(2)
    x, y = rng.random(40), rng.random(23) ** 2
    a, b = rng.random(40), rng.random(23)
    a, b = a / a.sum(), b / b.sum()
    base = cost(x, y, a, b, p)
    assert base > 1e-4
    for s in (0.1, 0.5, 0.77):
        assert cost((x + s) % 1, (y + s) % 1, a, b, p) == pytest.approx(base, rel=1e-11)
    assert cost(y, x, b, a, p) == pytest.approx(base, rel=1e-11)
    assert cost(x + 3.0, y - 2.0, a, b, p) == pytest.approx(base, rel=1e-11)  # positions are taken mod 1


def test_batches_and_zero_weight_padding():
    rng = np.random.default_rng(3)
    B, L, N, M = 2, 3, 7, 5
    u, v = torch.rand(B, L, N, dtype=torch.float64), torch.rand(B, L, M, dtype=torch.float64)
    a, b = torch.rand(B, N, dtype=torch.float64), torch.rand(B, M, dtype=torch.float64)
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    for p in (1.0, 2.0, 1.5):
        c = circle_costs(u, v, a, b, p)
        assert c.shape == (B, L)
        for i, j in itertools.product(range(B), range(L)):
            ref = lp_cost(u[i, j].numpy(), v[i, j].numpy(), a[i].numpy(), b[i].numpy(), p)
            assert c[i, j].item() == pytest.approx(ref, abs=1e-9)
        pad = torch.cat([v, torch.tensor(rng.random((B, L, 3)))], -1)  # zero-weight atoms anywhere
        bp = torch.cat([b, torch.zeros(B, 3, dtype=torch.float64)], -1)
        torch.testing.assert_close(circle_costs(u, pad, a, bp, p), c, rtol=1e-12, atol=1e-14)


def test_float32_input_keeps_its_dtype():
    u, v = torch.rand(1, 4, 9), torch.rand(1, 4, 6)
    a, b = torch.full((1, 9), 1 / 9), torch.full((1, 6), 1 / 6)
    c = circle_costs(u, v, a, b, 2.0)
    assert c.dtype == torch.float32
    torch.testing.assert_close(c.double(), circle_costs(u.double(), v.double(), a.double(), b.double(), 2.0),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("p", (1.0, 1.5, 2.0))
def test_gradients_match_finite_differences(p):
    g = torch.Generator().manual_seed(4)
    B, L, N, M = 2, 2, 6, 4
    u = torch.rand(B, L, N, generator=g, dtype=torch.float64).requires_grad_()
    v = torch.rand(B, L, M, generator=g, dtype=torch.float64).requires_grad_()
    a0 = (torch.rand(B, N, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    b0 = (torch.rand(B, M, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    w = torch.rand(B, L, generator=g, dtype=torch.float64)

    def f(u, v, a0, b0):
        return (w * circle_costs(u, v, a0 / a0.sum(1, keepdim=True), b0 / b0.sum(1, keepdim=True), p)).sum()

    grads = torch.autograd.grad(f(u, v, a0, b0), (u, v, a0, b0))
    eps = 1e-6
    for k, (t, gt) in enumerate(zip((u, v, a0, b0), grads)):
        flat = t.detach().reshape(-1)
        for idx in range(0, flat.numel(), 3):
            args = [s.detach() for s in (u, v, a0, b0)]
            hi, lo = args[k].clone().reshape(-1), args[k].clone().reshape(-1)
            hi[idx] += eps
            lo[idx] -= eps
            args_hi, args_lo = list(args), list(args)
            args_hi[k], args_lo[k] = hi.reshape(t.shape), lo.reshape(t.shape)
            fd = (f(*args_hi) - f(*args_lo)).item() / (2 * eps)
            assert gt.reshape(-1)[idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-7), (k, idx)
