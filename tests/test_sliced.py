"""Properties of the sliced Wasserstein estimator (geom.sliced_wasserstein and its 1-D OT core).

Every check here would break if the estimator were wrong: exact identities that hold for any fixed
set of directions (zero on the diagonal, symmetry, rotation, translation, scaling, the triangle
inequality), finite differences for gradients, closed forms for the Monte Carlo expectation, and
equality of the internal code paths (chunked, recomputed, non-fused) with the default one.
Continuous random data keeps projections free of ties wherever a gradient is compared exactly.
"""

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import geom
import geom._ot1d.line as ot1d
from geom.registry import _registry
from geom.sliced import sliced_costs

F64 = torch.float64
PROPS = settings(max_examples=25, deadline=None)

seeds = st.integers(0, 2**31 - 1)
sizes = st.integers(1, 9)
dims = st.integers(1, 4)
orders = st.sampled_from([1.0, 1.5, 2.0, 3.0])


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def cloud(seed, n, d, dtype=F64, scale=1.0):
    """``(n, d)`` continuous random points (ties have probability zero)."""
    return scale * torch.randn(n, d, generator=_gen(seed), dtype=dtype)


def positive_weights(seed, n, dtype=F64):
    """``(n,)`` random weights in [0.2, 1.2), not normalised."""
    return 0.2 + torch.rand(n, generator=_gen(seed + 7919), dtype=dtype)


def unit_directions(seed, L, d, dtype=F64):
    th = torch.randn(L, d, generator=_gen(seed + 104729), dtype=dtype)
    return th / th.norm(dim=1, keepdim=True)


def sw(x, y, theta, p, a=None, b=None):
    """SW_p with given directions (both measures built from raw tensors)."""
    return geom.sliced_wasserstein(geom.measure(x, weights=a), geom.measure(y, weights=b), p=p, directions=theta)


def random_orthogonal(seed, d):
    q, r = torch.linalg.qr(torch.randn(d, d, generator=_gen(seed), dtype=F64))
    return q * torch.sign(torch.diagonal(r))  # (d, d), Haar distributed


# --------------------------------------------------------------------------------------------------
# Exact identities for fixed directions


@PROPS
@given(seed=seeds, n=sizes, d=dims, L=st.integers(1, 16), p=orders, weighted=st.booleans())
def test_distance_to_itself_is_zero_with_zero_gradient(seed, n, d, L, p, weighted):
    x = cloud(seed, n, d).requires_grad_(True)
    a = positive_weights(seed, n) if weighted else None
    theta = unit_directions(seed, L, d)
    value = sw(x, x, theta, p, a, a)
    assert value.item() == 0.0
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(grad).all()
    assert torch.equal(grad, torch.zeros_like(grad))


@PROPS
@given(seed=seeds, n=sizes, m=sizes, d=dims, p=orders, weighted=st.booleans())
def test_symmetry(seed, n, m, d, p, weighted):
    x, y = cloud(seed, n, d), cloud(seed + 1, m, d, scale=2.0) + 0.5
    a, b = (positive_weights(seed, n), positive_weights(seed + 1, m)) if weighted else (None, None)
    theta = unit_directions(seed, 12, d)
    torch.testing.assert_close(sw(x, y, theta, p, a, b), sw(y, x, theta, p, b, a), rtol=1e-12, atol=1e-14)


@PROPS
@given(seed=seeds, n=sizes, m=sizes, d=st.integers(2, 4), p=orders, weighted=st.booleans())
def test_rotation_equivariance(seed, n, m, d, p, weighted):
    x, y = cloud(seed, n, d), cloud(seed + 1, m, d) + 1.0
    a, b = (positive_weights(seed, n), positive_weights(seed + 1, m)) if weighted else (None, None)
    theta = unit_directions(seed, 10, d)
    q = random_orthogonal(seed + 2, d)
    rotated = sw(x @ q.T, y @ q.T, theta @ q.T, p, a, b)
    torch.testing.assert_close(rotated, sw(x, y, theta, p, a, b), rtol=1e-10, atol=1e-12)


@PROPS
@given(seed=seeds, n=sizes, d=dims, L=st.integers(1, 20), p=orders, weighted=st.booleans())
def test_translation_closed_form(seed, n, d, L, p, weighted):
    """A translated copy: on every line W_p = |theta . v|, so SW_p = (mean |theta . v|^p)^(1/p)."""
    x = cloud(seed, n, d)
    v = cloud(seed + 3, 1, d)[0] * 2.0  # (d,)
    a = positive_weights(seed, n) if weighted else None
    theta = unit_directions(seed, L, d)
    expected = ((theta @ v).abs() ** p).mean() ** (1.0 / p)
    torch.testing.assert_close(sw(x, x + v, theta, p, a, a), expected, rtol=1e-10, atol=1e-12)
    if p == 2.0:  # the form in the documentation: |v| sqrt(mean over directions of (theta . v/|v|)^2)
        closed = v.norm() * ((theta @ (v / v.norm())) ** 2).mean().sqrt()
        torch.testing.assert_close(sw(x, x + v, theta, 2, a, a), closed, rtol=1e-10, atol=1e-12)


@PROPS
@given(seed=seeds, sizes3=st.tuples(sizes, sizes, sizes), d=dims, p=orders)
def test_triangle_inequality_for_fixed_directions(seed, sizes3, d, p):
    xs = [cloud(seed + k, n, d, scale=1.0 + k) + k for k, n in enumerate(sizes3)]
    ws = [positive_weights(seed + k, n) for k, n in enumerate(sizes3)]
    theta = unit_directions(seed, 8, d)
    ab, bc, ac = (sw(xs[i], xs[j], theta, p, ws[i], ws[j]).item() for i, j in ((0, 1), (1, 2), (0, 2)))
    assert ac <= ab + bc + 1e-9


@PROPS
@given(seed=seeds, n=sizes, m=sizes, d=dims, p=orders, s=st.floats(-4.0, 4.0))
def test_scaling_by_a_signed_factor(seed, n, m, d, p, s):
    x, y = cloud(seed, n, d), cloud(seed + 1, m, d) + 0.3
    a, b = positive_weights(seed, n), positive_weights(seed + 1, m)
    theta = unit_directions(seed, 9, d)
    torch.testing.assert_close(sw(s * x, s * y, theta, p, a, b), abs(s) * sw(x, y, theta, p, a, b),
                               rtol=1e-10, atol=1e-12)


def test_docstring_example_and_hand_computed_values():
    x = torch.tensor([[0.0], [1.0]])
    assert geom.sliced_wasserstein(x, x + 3, directions=[[1.0]]).item() == 3.0
    # {0, 1} uniform vs {0} with mass 1: W_p^p = 1/2 * 1^p, so SW_p = 2^(-1/p)
    for p in (1, 2, 3):
        v = geom.sliced_wasserstein([[0.0], [1.0]], [[0.0]], p=p, directions=[[1.0]])
        assert v.item() == pytest.approx(0.5 ** (1 / p), rel=1e-6)
    # weights 1/4, 3/4 on {0, 4} vs uniform {1, 2}: quantile pieces [0,.25]: 0-1, [.25,.5]: 4-1, [.5,1]: 4-2
    v = geom.sliced_wasserstein(geom.measure([0.0, 4.0], weights=[1, 3]), [1.0, 2.0], p=1, directions=[[1.0]])
    assert v.item() == pytest.approx(0.25 * 1 + 0.25 * 3 + 0.5 * 2, rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Gradients


def central_differences(f, t, eps=1e-6):
    grad = torch.zeros_like(t)
    flat, gflat = t.view(-1), grad.view(-1)
    for k in range(flat.numel()):
        old = flat[k].item()
        flat[k] = old + eps
        hi = f().item()
        flat[k] = old - eps
        lo = f().item()
        flat[k] = old
        gflat[k] = (hi - lo) / (2 * eps)
    return grad


@PROPS
@given(seed=seeds, n=st.integers(2, 7), m=st.integers(2, 7), d=st.integers(1, 3),
       p=st.sampled_from([1.5, 2.0, 3.0]), weighted=st.booleans())
def test_gradient_matches_finite_differences(seed, n, m, d, p, weighted):
    if not weighted:
        m = n  # the fast path: equal sizes, uniform weights
    x, y = cloud(seed, n, d), cloud(seed + 1, m, d, scale=1.5) + 0.7
    a, b = (positive_weights(seed, n), positive_weights(seed + 1, m)) if weighted else (None, None)
    theta = unit_directions(seed, 6, d)
    # keep every projection (of either cloud) 1e-4 away from every other: no tie within the FD step
    gaps = torch.cat([x, y]).matmul(theta.T).sort(0).values.diff(dim=0)  # (n + m - 1, L)
    assume(gaps.min() > 1e-4)
    xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    gx, gy = torch.autograd.grad(sw(xg, yg, theta, p, a, b), (xg, yg))
    f = lambda: sw(x, y, theta, p, a, b)  # noqa: E731  (x, y are perturbed in place)
    torch.testing.assert_close(gx, central_differences(f, x), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(gy, central_differences(f, y), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_gradcheck_support_and_directions(weighted, p):
    """torch.autograd.gradcheck of the per-slice costs w.r.t. points and un-normalised directions."""
    n, m = (6, 6) if not weighted else (6, 9)
    x, y = cloud(11, n, 3), cloud(12, m, 3) + 0.5
    mu = geom.measure(x, weights=positive_weights(11, n) if weighted else None)
    nu = geom.measure(y, weights=positive_weights(12, m) if weighted else None)
    theta = 1.7 * unit_directions(13, 5, 3)  # not unit: the costs are smooth in theta anyway

    def costs(xx, yy, th):
        return sliced_costs(geom.measure(xx, weights=mu.weights[0]), geom.measure(yy, weights=nu.weights[0]), th, p)

    inputs = tuple(t.clone().requires_grad_(True) for t in (x, y, theta))
    assert torch.autograd.gradcheck(costs, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@PROPS
@given(seed=seeds, n=st.integers(1, 6), reps=st.integers(2, 4), d=st.integers(1, 3), p=orders,
       weighted=st.booleans())
def test_gradient_is_finite_with_duplicated_points(seed, n, reps, d, p, weighted):
    """Duplicates inside a cloud and points shared by both clouds: ties everywhere, finite gradients.

    Translating both clouds together leaves SW unchanged, so the gradients sum to zero over all points.
    """
    base = cloud(seed, n, d)
    x = base.repeat(reps, 1).requires_grad_(True)  # every point `reps` times
    y = torch.cat([base[: max(1, n // 2)], cloud(seed + 1, 2, d)]).repeat(2, 1).requires_grad_(True)
    a = positive_weights(seed, x.shape[0]) if weighted else None
    b = positive_weights(seed + 1, y.shape[0]) if weighted else None
    value = sw(x, y, unit_directions(seed, 7, d), p, a, b)
    gx, gy = torch.autograd.grad(value, (x, y))
    assert torch.isfinite(value) and torch.isfinite(gx).all() and torch.isfinite(gy).all()
    torch.testing.assert_close(gx.sum(0) + gy.sum(0), torch.zeros(d, dtype=F64), rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------------------
# Batches, dtypes, randomness


@PROPS
@given(seed=seeds, ns=st.lists(sizes, min_size=1, max_size=4), d=dims, p=orders, uniform=st.booleans())
def test_batch_equals_loop_over_items(seed, ns, d, p, uniform):
    """(B, N, D) with zero-weight padding == item by item, values and gradients (padding gets 0)."""
    B = len(ns)
    ms = [n if uniform else n + 1 + k for k, n in enumerate(ns)]
    N, M = max(ns), max(ms)
    theta = unit_directions(seed, 8, d)
    xs = [cloud(seed + k, n, d) for k, n in enumerate(ns)]
    ys = [cloud(seed + 50 + k, m, d) + 1 for k, m in enumerate(ms)]
    ws = [None if uniform else positive_weights(seed + k, n) for k, n in enumerate(ns)]
    X = 100.0 * torch.ones(B, N, d, dtype=F64)  # far-away padding: it must carry no mass
    Y = -100.0 * torch.ones(B, M, d, dtype=F64)
    A, Bw = torch.zeros(B, N, dtype=F64), torch.zeros(B, M, dtype=F64)
    for k in range(B):
        X[k, : ns[k]], Y[k, : ms[k]] = xs[k], ys[k]
        A[k, : ns[k]] = 1.0 if uniform else ws[k]
        Bw[k, : ms[k]] = 1.0
    X.requires_grad_(True)
    batched = geom.sliced_wasserstein(geom.measure(X, weights=A), geom.measure(Y, weights=Bw), p=p, directions=theta)
    assert batched.shape == (B,)
    (gX,) = torch.autograd.grad(batched.sum(), X)
    for k in range(B):
        xk = xs[k].clone().requires_grad_(True)
        single = sw(xk, ys[k], theta, p, ws[k])
        (gk,) = torch.autograd.grad(single, xk)
        torch.testing.assert_close(batched[k], single, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gX[k, : ns[k]], gk, rtol=1e-10, atol=1e-12)
        assert torch.equal(gX[k, ns[k]:], torch.zeros_like(gX[k, ns[k]:]))


@pytest.mark.parametrize("weighted", [False, True])
def test_unbatched_measure_broadcasts_against_a_batch(weighted):
    theta = unit_directions(0, 16, 3)
    n = 5 if not weighted else 7
    x = cloud(0, n, 3).requires_grad_(True)
    a = positive_weights(0, n) if weighted else None
    Y = torch.stack([cloud(k, 5, 3) for k in (1, 2, 3)])
    values = geom.sliced_wasserstein(geom.measure(x, weights=a), Y, directions=theta)
    assert values.shape == (3,)
    (g,) = torch.autograd.grad(values.sum(), x)
    g_loop = torch.zeros_like(g)
    for k in range(3):
        single = sw(x, Y[k], theta, 2, a)
        torch.testing.assert_close(values[k], single, rtol=1e-12, atol=0)
        g_loop += torch.autograd.grad(single, x)[0]
    torch.testing.assert_close(g, g_loop, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_float32_agrees_with_float64(p, weighted):
    n, m = (300, 300) if not weighted else (300, 211)
    x, y = cloud(1, n, 3), cloud(2, m, 3) * 1.3 + 0.4
    a, b = (positive_weights(1, n), positive_weights(2, m)) if weighted else (None, None)
    theta = unit_directions(3, 64, 3)
    v64 = sw(x, y, theta, p, a, b)
    v32 = sw(x.float(), y.float(), theta.float(), p, a, b)
    assert v64.dtype == F64 and v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=2e-6, atol=0)
    # float64 directions are cast to the float32 data, not the other way round
    assert sw(x.float(), y.float(), theta, p, a, b).dtype == torch.float32


def test_mixed_dtypes_promote_to_float64():
    x, y = cloud(1, 9, 3), cloud(2, 9, 3)
    theta = unit_directions(1, 8, 3)
    v = geom.sliced_wasserstein(x.float(), y, directions=theta)
    assert v.dtype == F64
    torch.testing.assert_close(v, sw(x.float().double(), y, theta, 2), rtol=1e-12, atol=0)


def test_seed_reproducible_and_equivalent_to_generator():
    x, y = cloud(1, 40, 3), cloud(2, 30, 3)
    r1 = geom.sliced_wasserstein(x, y, n_projections=32, seed=5, return_result=True)
    r2 = geom.sliced_wasserstein(x, y, n_projections=32, seed=5, return_result=True)
    r3 = geom.sliced_wasserstein(x, y, n_projections=32, seed=6, return_result=True)
    r4 = geom.sliced_wasserstein(x, y, n_projections=32, generator=torch.Generator().manual_seed(5),
                                 return_result=True)
    assert torch.equal(r1.value, r2.value) and torch.equal(r1.directions, r2.directions)
    assert not torch.equal(r1.directions, r3.directions) and r1.value.item() != r3.value.item()
    assert torch.equal(r1.value, r4.value) and torch.equal(r1.directions, r4.directions)
    # a generator is consumed: two draws from one generator differ
    g = torch.Generator().manual_seed(5)
    first = geom.sliced_wasserstein(x, y, n_projections=32, generator=g)
    second = geom.sliced_wasserstein(x, y, n_projections=32, generator=g)
    assert first.item() == r1.value.item() and second.item() != first.item()


def test_result_fields_have_documented_shapes():
    x, y = cloud(1, 20, 3), cloud(2, 25, 3) + 1
    r = geom.sliced_wasserstein(x, y, n_projections=17, seed=0, return_result=True)
    assert isinstance(r, geom.SlicedResult)
    assert r.value.shape == () and r.stderr.shape == () and r.costs.shape == (17,)
    assert r.directions.shape == (17, 3) and r.directions.dtype == F64
    torch.testing.assert_close(r.directions.norm(dim=1), torch.ones(17, dtype=F64))
    assert r.stderr.item() > 0 and not r.stderr.requires_grad
    torch.testing.assert_close(r.value, r.costs.mean().sqrt())
    # delta method: stderr(SW) = stderr(mean cost) * mean^(1/p - 1) / p
    torch.testing.assert_close(r.stderr, r.costs.std() / math.sqrt(17) / (2 * r.value))
    torch.testing.assert_close(r.value, geom.sliced_wasserstein(x, y, n_projections=17, seed=0))
    X, Y = torch.stack([x, x * 2]), torch.stack([y[:20], y[5:]])
    rb = geom.sliced_wasserstein(X, Y, n_projections=17, seed=0, p=3, return_result=True)
    assert rb.value.shape == (2,) and rb.stderr.shape == (2,) and rb.costs.shape == (2, 17)
    assert rb.directions.shape == (17, 3) and (rb.stderr > 0).all()
    torch.testing.assert_close(rb.value, rb.costs.mean(-1) ** (1 / 3))


def test_stderr_matches_spread_over_seeds():
    x, y = cloud(1, 12, 3), cloud(2, 9, 3) * 0.5 + 0.3
    a = positive_weights(1, 12)
    mu, nu = geom.measure(x, weights=a), geom.measure(y)
    results = [geom.sliced_wasserstein(mu, nu, n_projections=64, seed=s, return_result=True) for s in range(200)]
    values = torch.stack([r.value for r in results])
    reported = torch.stack([r.stderr for r in results]).mean()
    spread = values.std()
    assert abs(reported / spread - 1) < 0.3, (reported.item(), spread.item())


@pytest.mark.parametrize("p", [1, 2, 3])
def test_large_L_converges_to_closed_form(p):
    """Shifted copies in d = 3: W_p(theta#mu, theta#(mu + m)) = |theta . m| and theta . m/|m| ~ U[-1, 1]
    (Archimedes) for uniform directions, so SW_p^p = |m|^p / (p + 1), i.e. SW_2^2 = |m|^2 / 3."""
    x = cloud(4, 200, 3)  # a sample of N(0, I)
    m = torch.tensor([0.6, -1.2, 0.9], dtype=F64)
    r = geom.sliced_wasserstein(x, x + m, p=p, n_projections=4096, seed=123, return_result=True)
    exact = m.norm() / (p + 1) ** (1.0 / p)
    assert abs(r.value - exact) < 5 * r.stderr, (r.value.item(), exact.item(), r.stderr.item())
    assert r.stderr < 0.02 * exact  # the test has power: 4096 slices pin the value to a few percent


# --------------------------------------------------------------------------------------------------
# Internal paths must agree: chunking, backward recomputation, the generic (non-linear) path


def _value_and_grads(mu_x, nu_y, a, b, theta, p, kind="points"):
    x, y, th = (t.clone().requires_grad_(True) for t in (mu_x, nu_y, theta))
    inputs = [x, y, th]
    if a is not None:  # weighted cases: gradients to the weights as well
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        inputs += [a, b]
    mu, nu = geom.measure(x, kind=kind, weights=a), geom.measure(y, kind=kind, weights=b)
    r = geom.sliced_wasserstein(mu, nu, p=p, directions=th, return_result=True)
    loss = r.value.sum() + (r.costs ** 2).sum()  # also pushes non-uniform weights through every slice
    grads = torch.autograd.grad(loss, inputs)
    return (r.value.detach(), r.costs.detach(), *grads)


CASES = [  # (batched, weighted, dtype)
    (False, False, F64),
    (False, True, F64),
    (True, True, F64),
    (False, False, torch.float32),
    (True, True, torch.float32),
]


def _case(batched, weighted, dtype):
    n, m = (40, 40) if not weighted else (40, 33)
    shape_x, shape_y = ((3, n, 3), (3, m, 3)) if batched else ((n, 3), (m, 3))
    x = torch.randn(*shape_x, generator=_gen(1), dtype=F64).to(dtype)
    y = (torch.randn(*shape_y, generator=_gen(2), dtype=F64) + 0.5).to(dtype)
    a = b = None
    if weighted:
        a = torch.rand(shape_x[:-1], generator=_gen(3), dtype=F64) + 0.1
        b = torch.rand(shape_y[:-1], generator=_gen(4), dtype=F64) + 0.1
        if batched:
            a[1, 30:] = 0  # zero-weight padding
    theta = unit_directions(5, 50, 3, dtype)
    return x, y, a, b, theta


def _assert_all_equal(got, want, exact):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if exact:
            assert torch.equal(g, w)
        else:
            tol = 1e-12 if got[0].dtype == F64 else 1e-5  # the data's precision, whatever the weights' dtype
            torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("case", CASES)
def test_tiny_chunks_and_backward_recomputation_change_nothing(monkeypatch, case, p):
    x, y, a, b, theta = _case(*case)
    reference = _value_and_grads(x, y, a, b, theta, p)
    monkeypatch.setattr(ot1d, "STORE_BYTES", 0)  # backward re-sorts instead of using stored gradients
    _assert_all_equal(_value_and_grads(x, y, a, b, theta, p), reference, exact=True)
    monkeypatch.setattr(ot1d, "CHUNK_BYTES", 1)  # one direction per chunk
    assert len(ot1d.direction_chunks(theta.shape[0], 3, 80)) == theta.shape[0]
    # projections of a different chunk shape may round differently in the last bit: compare closely
    _assert_all_equal(_value_and_grads(x, y, a, b, theta, p), reference, exact=False)
    monkeypatch.setattr(ot1d, "STORE_BYTES", 1 << 40)
    _assert_all_equal(_value_and_grads(x, y, a, b, theta, p), reference, exact=False)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("case", CASES)
def test_wide_clouds_projected_by_blocks_give_the_per_task_results(monkeypatch, case, p):
    """From ``WIDE`` dimensions the clouds keep their (B, N, D) layout and each chunk is projected by
    blocks before the tasks sort; values and every gradient (stored, summed in the forward pass and
    re-sorted in backward) are those of the per-task projections, to the data's rounding."""
    x, y, a, b, theta = _case(*case)
    reference = _value_and_grads(x, y, a, b, theta, p)
    monkeypatch.setattr(ot1d.pool, "WIDE", 1)  # every dimension is wide
    _assert_all_equal(_value_and_grads(x, y, a, b, theta, p), reference, exact=False)
    monkeypatch.setattr(ot1d, "STORE_BYTES", 0)  # summed in the forward pass, or sorted again in backward
    _assert_all_equal(_value_and_grads(x, y, a, b, theta, p), reference, exact=False)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("unit", [1.0, 1e-30])  # 1e-30: every row is rescued by its scale in float32
def test_weighted_gradient_of_one_side_equals_that_of_both(p, unit):
    """The merge walk compiled without the other side's gradient gives the same gradient and value."""
    x = (cloud(31, 30, 3) * unit).float()
    y = ((cloud(32, 23, 3) + 0.4) * unit).float()
    a, b = positive_weights(31, 30).float(), positive_weights(32, 23).float()
    theta = unit_directions(33, 20, 3).float()

    def grads(want_x, want_y):
        xr, yr = x.clone().requires_grad_(want_x), y.clone().requires_grad_(want_y)
        value = geom.sliced_wasserstein(geom.measure(xr, weights=a), geom.measure(yr, weights=b), p=p,
                                        directions=theta)
        inputs = [t for t, want in ((xr, want_x), (yr, want_y)) if want]
        return value.detach(), torch.autograd.grad(value, inputs)

    value, (gx, gy) = grads(True, True)
    for want_x, want_y, expected in ((True, False, gx), (False, True, gy)):
        v, (g,) = grads(want_x, want_y)
        assert torch.equal(v, value)
        assert torch.equal(g, expected)


@pytest.mark.parametrize("weighted", [False, True])
def test_gradcheck_in_a_wide_dimension(weighted):
    """gradcheck of the costs w.r.t. points and directions in 40 dimensions (the block projections),
    and a support gradient laid out as the support, (N, D) contiguous."""
    assert 40 >= ot1d.pool.WIDE
    n, m = (7, 7) if not weighted else (7, 10)
    x, y = cloud(21, n, 40), cloud(22, m, 40) + 0.3
    wa, wb = (positive_weights(21, n), positive_weights(22, m)) if weighted else (None, None)
    theta = 1.3 * unit_directions(23, 4, 40)

    def costs(xx, yy, th):
        return sliced_costs(geom.measure(xx, weights=wa), geom.measure(yy, weights=wb), th, 2.0)

    inputs = tuple(t.clone().requires_grad_(True) for t in (x, y, theta))
    assert torch.autograd.gradcheck(costs, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)
    xr = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(costs(xr, y, theta).sum(), (xr,))
    assert gx.is_contiguous()


@pytest.mark.parametrize("scheme", ["mc", "qmc"])
@pytest.mark.parametrize("case", CASES)
def test_gradients_summed_in_the_forward_pass_equal_the_stored_ones_without_a_second_sort(monkeypatch, case, scheme):
    # Past STORE_BYTES the forward pass sums each slice's gradient; a mean over the slices then needs
    # no second pass of sorts in backward, and gives the gradients of the stored per-slice path.
    x, y, a, b, theta = _case(*case)

    def grads():
        xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        inputs = [xr, yr]
        wa, wb = a, b
        if a is not None:
            wa, wb = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
            inputs += [wa, wb]
        value = geom.sliced_wasserstein(geom.measure(xr, weights=wa), geom.measure(yr, weights=wb), p=2,
                                        n_projections=50, scheme=scheme, seed=3)
        return torch.autograd.grad(value.sum(), inputs)

    reference = grads()
    passes = []
    real = ot1d._slices
    monkeypatch.setattr(ot1d, "_slices", lambda *args, **kwargs: passes.append(1) or real(*args, **kwargs))
    monkeypatch.setattr(ot1d, "STORE_BYTES", 0)
    summed = grads()
    assert len(passes) == 1  # the forward pass only
    _assert_all_equal(summed, reference, exact=False)


@pytest.fixture
def nonlinear_points():
    """The "points" representation with ``linear = False``: forces the generic ProjectedCost path."""
    name = "points-generic-path-test"
    geom.representations()  # load the plugins first
    PointCloud = _registry.tables["representations"]["points"][0]
    info = copy.deepcopy(_registry.info)

    class GenericPoints(PointCloud):
        linear = False

    geom.register_representation(name, GenericPoints)
    yield name
    _registry.tables["representations"].pop(name)
    _registry.info.clear()
    _registry.info.update(info)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("case", CASES)
def test_generic_projected_path_equals_fused_path(nonlinear_points, monkeypatch, case, p):
    x, y, a, b, theta = _case(*case)
    fused = _value_and_grads(x, y, a, b, theta, p)
    generic = _value_and_grads(x, y, a, b, theta, p, kind=nonlinear_points)
    _assert_all_equal(generic, fused, exact=False)
    monkeypatch.setattr(ot1d, "CHUNK_BYTES", 1)  # the generic path chunks its projections too
    _assert_all_equal(_value_and_grads(x, y, a, b, theta, p, kind=nonlinear_points), fused, exact=False)


def test_generic_representation_is_used(nonlinear_points, monkeypatch):
    """The fixture really routes through the non-linear path (the fused Function is never called)."""
    calls = []
    original = ot1d.LinearSlicedCost.apply

    def spy(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(ot1d.LinearSlicedCost, "apply", spy)
    x, y = cloud(1, 5, 2), cloud(2, 6, 2)
    geom.sliced_wasserstein(geom.measure(x, kind=nonlinear_points), geom.measure(y, kind=nonlinear_points),
                            n_projections=4, seed=0)
    assert calls == []
    geom.sliced_wasserstein(x, y, n_projections=4, seed=0)
    assert calls == [1]


def test_a_representation_with_an_unknown_domain_is_an_error_naming_it():
    from geom.sliced import representation_costs

    mu = geom.measure(cloud(1, 5, 2))  # loads the plugins

    class OnATorus(_registry.tables["representations"]["points"][0]):
        linear, domain = False, "torus"

    with pytest.raises(ValueError, match="expected domain 'line' or 'circle', got 'torus'"):
        representation_costs(OnATorus(), mu, mu, torch.eye(2), 2.0)


def test_measures_of_different_kinds_compare_only_within_a_family(nonlinear_points, restore_registry):
    x, y = cloud(1, 5, 2), cloud(2, 6, 2)
    # the generic-path kind subclasses the point clouds: the same family, so comparable, same value
    mixed = geom.sliced_wasserstein(geom.measure(x, kind=nonlinear_points), y, n_projections=4, seed=0)
    assert mixed.item() == pytest.approx(geom.sliced_wasserstein(x, y, n_projections=4, seed=0).item(), rel=1e-6)

    class Loner(_registry.tables["representations"]["points"][0]):
        family = ""

    geom.register_representation("loner-test-kind", Loner)
    with pytest.raises(ValueError, match="mu, nu: expected measures of the same kind"):
        geom.sliced_wasserstein(geom.measure(x, kind="loner-test-kind"), y, n_projections=4, seed=0)
    with pytest.raises(ValueError, match="mu, nu: expected measures of the same kind"):
        geom.chamfer_distance(geom.measure(x, kind="loner-test-kind"), y)


# --------------------------------------------------------------------------------------------------
# The 1-D kernel against a brute-force quantile integral (numpy, written independently)


def _w_pp_by_quantiles(u, v, a, b, p):
    """W_p^p on the line: midpoint rule for the integral of |F^-1 - G^-1|^p over levels in [0, 1].

    With integer weights the quantile functions are constant on cells of width 1/(sum a * sum b),
    so a grid that refines those cells makes the midpoint rule exact.
    """
    grid = int(a.sum() * b.sum()) * 16
    t = (np.arange(grid) + 0.5) / grid

    def quantile(x, w):
        order = np.argsort(x)
        c = np.cumsum(w[order]) / w.sum()
        return x[order][np.minimum(np.searchsorted(c, t), len(x) - 1)]

    return np.mean(np.abs(quantile(u, a) - quantile(v, b)) ** p)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_rows_cost_matches_quantile_integral(p):
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=7), rng.normal(size=4) + 0.3
    a, b = rng.integers(1, 5, size=7).astype(float), rng.integers(1, 5, size=4).astype(float)
    want = _w_pp_by_quantiles(u, v, a, b, p)
    a_t, b_t = torch.tensor(a / a.sum())[None], torch.tensor(b / b.sum())[None]  # (1, N), (1, M)
    cost, scale, _ = ot1d.rows_cost(torch.tensor(u)[None, None], torch.tensor(v)[None, None], a_t, b_t, p, False)
    cost = cost * scale**p
    assert cost.item() == pytest.approx(want, rel=1e-10)
    value = geom.sliced_wasserstein(geom.measure(u, weights=a), geom.measure(v, weights=b), p=p, directions=[[1.0]])
    assert value.item() == pytest.approx(want ** (1 / p), rel=1e-10)


@PROPS
@given(seed=seeds, n=st.integers(1, 40), m=st.integers(1, 40), batch=st.integers(1, 3), p=orders,
       ties=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_cpu_merge_kernel_equals_torch_rows_cost(seed, n, m, batch, p, ties, dtype):
    """The numpy CPU kernel (packed sorts, stable merge, flat scatter) against the torch quantile
    merge, on weighted batches with zero weights and, optionally, tied coordinates."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(batch, n, 2, generator=g, dtype=dtype), torch.randn(batch, m, 2, generator=g, dtype=dtype)
    if ties:
        x, y = x.round(), y.round()
    a, b = torch.rand(batch, n, generator=g, dtype=F64), torch.rand(batch, m, generator=g, dtype=F64)
    a[:, 0] = 0.0  # a padded atom
    a[:, -1] += 0.1  # the rows keep mass even when n == 1
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    theta = torch.randn(50, 2, generator=g, dtype=dtype)
    theta = theta / theta.norm(dim=1, keepdim=True)
    cost, scale, grads = ot1d._cpu_chunk(x, y, theta, a, b, p, False, (True,) * 4)
    u, v = theta @ x.transpose(1, 2), theta @ y.transpose(1, 2)
    want, want_scale, want_grads = ot1d.rows_cost(u, v, a, b, p, False, (True,) * 4)
    torch.testing.assert_close(scale, want_scale)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cost, want, **tol)
    if not ties:  # with ties the matching (hence the subgradient) is not unique
        for got, expected in zip(grads, want_grads):
            torch.testing.assert_close(got, expected, **tol)


@PROPS
@given(seed=seeds, n=st.integers(2, 9), m=st.integers(2, 9), p=st.sampled_from([1.5, 2.0, 3.0]), on_cpu_kernel=st.booleans())
def test_weight_gradient_equals_finite_differences(seed, n, m, p, on_cpu_kernel):
    """d SW / d weights (raw, unnormalised) against central differences, through both 1-D OT paths
    (the numpy kernel for point clouds, the torch merge for projections given by a representation)."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, generator=g, dtype=F64), torch.randn(m, 3, generator=g, dtype=F64)
    wa, wb = torch.rand(n, generator=g, dtype=F64) + 0.2, torch.rand(m, generator=g, dtype=F64) + 0.2
    theta = torch.randn(16, 3, generator=g, dtype=F64)
    theta = theta / theta.norm(dim=1, keepdim=True)

    def sw(wa, wb):
        mu, nu = geom.measure(x, weights=wa), geom.measure(y, weights=wb)
        if on_cpu_kernel:
            return geom.sliced_wasserstein(mu, nu, p=p, directions=theta)
        u, v = theta @ mu.support.transpose(1, 2), theta @ nu.support.transpose(1, 2)  # (1, L, N|M)
        costs, scale = ot1d.ProjectedCost.apply(u, v, mu.weights, nu.weights, p, False)
        return (costs * scale**p).mean() ** (1 / p)

    wa_, wb_ = wa.clone().requires_grad_(), wb.clone().requires_grad_()
    sw(wa_, wb_).backward()
    h = 1e-6
    for w, grad, other in ((wa, wa_.grad, lambda v: sw(v, wb)), (wb, wb_.grad, lambda v: sw(wa, v))):
        fd = torch.stack([(other(w + h * e) - other(w - h * e)) / (2 * h) for e in torch.eye(len(w), dtype=F64)])
        torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-7)


def test_uniform_weights_that_need_gradients_leave_the_fast_path():
    """Equal sizes and uniform weights take the pairing fast path, unless the weights need gradients:
    then the merge runs, gives the same value, and the gradient is the centred level derivative."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 2, generator=g, dtype=F64), torch.randn(30, 2, generator=g, dtype=F64)
    w = torch.ones(30, dtype=F64, requires_grad=True)
    theta = torch.randn(8, 2, generator=g, dtype=F64)
    theta = theta / theta.norm(dim=1, keepdim=True)
    with_grad = geom.sliced_wasserstein(geom.measure(x, weights=w), y, directions=theta)
    plain = geom.sliced_wasserstein(x, y, directions=theta)
    torch.testing.assert_close(with_grad, plain, rtol=1e-12, atol=0)
    with_grad.backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    assert abs(float(w.grad.sum())) < 1e-10  # scaling all weights changes nothing
    assert float(w.grad.abs().max()) > 0


class _Doubling(geom.SlicingScheme):
    """A learnable-scheme stand-in: fit records its inputs, lift maps x -> [x, x]."""

    def __init__(self):
        super().__init__()
        self.fitted = []

    def fit(self, mu, nu, *, p, generator=None):
        self.fitted.append((mu.dim, nu.dim, p))

    def lift(self, measure):
        s = measure.support
        return geom.Measure(torch.cat([s, s], -1), measure.weights, kind=measure.kind, batched=measure.batched,
                            uniform=measure.uniform)

    def directions(self, n, dim, *, generator=None):
        theta = torch.randn(n, dim, generator=generator, dtype=F64)
        return theta / theta.norm(dim=1, keepdim=True)


def test_fit_runs_before_directions_and_lift_changes_what_directions_act_on():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, generator=g, dtype=F64, requires_grad=True)
    y = torch.randn(25, 3, generator=g, dtype=F64)
    scheme = _Doubling()
    r = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=7, seed=1, return_result=True)
    assert scheme.fitted == [(3, 3, 2.0)]  # fit saw the measures themselves, before lifting
    assert r.directions.shape == (7, 6)  # directions live in the lifted dimension
    # [x, x] projected on (a, b) is x projected on a + b: the same as SW on the original cloud with
    # directions (a + b), up to the scale |a + b| of each slice
    ab = r.directions[:, :3] + r.directions[:, 3:]
    scale = ab.norm(dim=1)
    plain = geom.sliced_wasserstein(x, y, directions=ab / scale[:, None], return_result=True)
    torch.testing.assert_close(r.costs, plain.costs * scale**2, rtol=1e-12, atol=1e-14)
    r.value.backward()  # gradients reach x through the lift
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    geom.sliced_wasserstein(x, y, scheme=scheme, directions=r.directions)  # given directions: no fit
    assert len(scheme.fitted) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clouds_of_different_sizes_take_the_same_transport_with_or_without_weight_gradients(dtype):
    """Uniform clouds of different sizes merge equal weights as levels (i + 1) / n; asking for the weights'
    gradient makes the merge gather them instead. Value and support gradients agree."""
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(61, 3, generator=g, dtype=dtype), torch.randn(47, 3, generator=g, dtype=dtype) + 0.3
    theta = torch.randn(24, 3, generator=g, dtype=dtype)
    theta = theta / theta.norm(dim=1, keepdim=True)
    grads = []
    for weights in (None, torch.ones(61, dtype=dtype, requires_grad=True)):
        xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
        value = geom.sliced_wasserstein(geom.measure(xs, weights=weights), ys, directions=theta)
        value.backward()
        grads.append((value.detach(), xs.grad, ys.grad))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    for plain, gathered in zip(*grads):
        torch.testing.assert_close(plain, gathered, **tol)
