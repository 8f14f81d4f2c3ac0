"""geom._ot1d.circle: exact optimal transport on the circle R/Z, against independent oracles."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from geom._ot1d.circle import circle_costs, scaled_circle_costs

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


def _log_shift_cost(xs, ys, ca, cb, theta, p):
    """``log c(theta)``, ``c(theta) = int_0^1 |F^-1(t) - G^-1(t + theta)|^p dt``, exactly over the pieces
    between consecutive levels, summed in logarithms (no p over- or underflows)."""
    cuts = {0.0, 1.0, *ca.tolist()}
    for k in range(-3, 4):
        cuts |= {float(c) + k - theta for c in cb if 0 < float(c) + k - theta < 1}
    cuts = sorted(cuts)
    logs = []
    for t0, t1 in zip(cuts[:-1], cuts[1:]):
        t = 0.5 * (t0 + t1)
        s = t + theta
        gap = abs(xs[min(np.searchsorted(ca, t), len(xs) - 1)] - ys[min(np.searchsorted(cb, s % 1), len(ys) - 1)]
                  - np.floor(s))
        if t1 > t0 and gap > 0:
            logs.append(np.log(t1 - t0) + p * np.log(gap))
    return -np.inf if not logs else np.logaddexp.reduce(logs)


def kink_oracle(x, y, a, b, p):
    """``W_p`` on the circle by enumeration: ``c`` is convex and piecewise linear in the shift, with
    kinks where a level of G meets a level of F, so its minimum is ``c`` at the best kink."""
    ox, oy = np.argsort(x), np.argsort(y)
    xs, ys = x[ox], y[oy]
    ca, cb = np.cumsum(a[ox]) / a.sum(), np.cumsum(b[oy]) / b.sum()
    kinks = {g - f + k for g in (0.0, *cb) for f in (0.0, *ca) for k in (-1, 0, 1)}
    return np.exp(min(_log_shift_cost(xs, ys, ca, cb, t, p) for t in kinks) / p)


@pytest.mark.parametrize("p", (2.0, 7.0, 50.0, 300.0, 1e5))
def test_large_p_matches_the_kink_enumeration(p):
    # W_p at large p is decided by the largest gaps: the minimum of c sits at a kink, where the cost
    # of the pieces beside it is orders of magnitude above it, so neither an extrapolation from them
    # nor a rounding-level piece at the kink itself may enter the value.
    rng = np.random.default_rng(3)
    for _ in range(12):
        N, M = rng.integers(1, 7, 2)
        x, y = rng.random(N), rng.random(M)
        a, b = rng.random(N) + 0.1, rng.random(M) + 0.1
        a, b = a / a.sum(), b / b.sum()
        cost, scale = scaled_circle_costs(*(torch.tensor(t)[None, None] for t in (x, y)),
                                          *(torch.tensor(t)[None] for t in (a, b)), p)
        got = (scale * cost.double() ** (1 / p)).item()
        assert got == pytest.approx(kink_oracle(x, y, a, b, p), rel=1e-10), (N, M)


def test_equal_measures_at_large_p_are_at_distance_zero():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(1, 8, 10, generator=g, dtype=torch.float64)
    w = torch.full((1, 10), 0.1)
    for p in (3.0, 50.0, 1e4):
        cost, _ = scaled_circle_costs(u, u, w, w, p)
        assert bool((cost == 0).all()), p
