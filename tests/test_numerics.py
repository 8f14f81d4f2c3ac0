"""No silent wrong numbers: large p, clouds far from the origin, overflowing weights, NaN estimates,
schemes that return the wrong number of directions, and requests that would exhaust memory."""

import math

import mpmath
import numpy as np
import pytest
import torch

import geom
from geom.sliced import EstimateContext

F64 = torch.float64
mpmath.mp.dps = 60


def unit_rows(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, d, generator=g, dtype=F64)
    return t / t.norm(dim=1, keepdim=True)


def mp_line_cost(u, v, a, b, p):
    """``W_p^p`` between weighted 1-D samples as an mpmath number: the quantile integral, with the
    levels in exact rationals of the float64 weights and the powers in 60 digits."""
    iu, iv = np.argsort(u, kind="stable"), np.argsort(v, kind="stable")
    u, v, a, b = u[iu], v[iv], a[iu], b[iv]
    ca = np.cumsum([mpmath.mpf(float(w)) for w in a])
    cb = np.cumsum([mpmath.mpf(float(w)) for w in b])
    ca, cb = ca / ca[-1], cb / cb[-1]
    levels = sorted(set(list(ca) + list(cb)))
    total, prev, i, j = mpmath.mpf(0), mpmath.mpf(0), 0, 0
    for t in levels:
        while ca[i] < t:
            i += 1
        while cb[j] < t:
            j += 1
        total += (t - prev) * abs(mpmath.mpf(float(u[i])) - mpmath.mpf(float(v[j]))) ** p
        prev = t
    return total


def mp_sw(x, y, a, b, theta, p):
    """``SW_p`` with the given directions, the projections in float64 (exact products of the data
    are not needed: the test data are float64), everything after in 60 digits."""
    costs = [mp_line_cost(x @ t, y @ t, a, b, p) for t in theta]
    return float((sum(costs) / len(costs)) ** (mpmath.mpf(1) / p))


@pytest.mark.parametrize("p", [20.0, 100.0, 200.0, 300.0, 1000.0, 5000.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_large_p_matches_a_60_digit_reference(p, weighted):
    rng = np.random.default_rng(int(p) + weighted)
    n, m = (40, 40) if not weighted else (40, 31)
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(m, 3)) * 1.5 + 0.4
    a = rng.random(n) + 0.1 if weighted else np.ones(n)
    b = rng.random(m) + 0.1 if weighted else np.ones(m)
    theta = unit_rows(6, 3, int(p))
    want = mp_sw(x, y, a / a.sum(), b / b.sum(), theta.numpy(), p)
    for dtype, rtol in ((F64, 1e-12), (torch.float32, 2e-5)):
        mu = geom.measure(torch.tensor(x, dtype=dtype), weights=torch.tensor(a, dtype=dtype))
        nu = geom.measure(torch.tensor(y, dtype=dtype), weights=torch.tensor(b, dtype=dtype))
        got = geom.sliced_wasserstein(mu, nu, p=p, directions=theta)
        assert torch.isfinite(got) and got.item() == pytest.approx(want, rel=rtol), (dtype, got.item(), want)


@pytest.mark.parametrize("p", [50.0, 200.0])
def test_large_p_gradient_matches_finite_differences(p):
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.normal(size=(12, 2)), dtype=F64, requires_grad=True)
    y = torch.tensor(rng.normal(size=(9, 2)) + 0.5, dtype=F64)
    theta = unit_rows(5, 2, 3)

    def f(z):
        return geom.sliced_wasserstein(z, y, p=p, directions=theta)

    (grad,) = torch.autograd.grad(f(x), x)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    h = 1e-6
    fd = torch.zeros_like(x)
    with torch.no_grad():
        for idx in np.ndindex(*x.shape):
            e = torch.zeros_like(x)
            e[idx] = h
            fd[idx] = (f(x + e) - f(x - e)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-4, atol=1e-7)
    # float32 follows float64: the gradient does not vanish or blow up
    x32 = x.detach().float().requires_grad_()
    (g32,) = torch.autograd.grad(geom.sliced_wasserstein(x32, y.float(), p=p, directions=theta.float()), x32)
    assert torch.nn.functional.cosine_similarity(g32.double().flatten(), grad.flatten(), dim=0) > 0.9999


def test_large_p_result_keeps_exact_scaled_costs():
    x, y = torch.randn(50, 3), torch.randn(50, 3) + 2.0
    r = geom.sliced_wasserstein(x, y, p=300, n_projections=16, seed=0, return_result=True)
    assert torch.isfinite(r.value) and r.value > 1
    assert r.scaled_costs.max().item() == pytest.approx(1.0)  # the largest slice, in units of scale^p
    assert 0 <= r.scaled_costs.min().item()
    assert torch.isfinite(r.stderr) and r.stderr > 0
    with pytest.raises(ValueError, match="p: the per-slice W_p.*outside the range of torch.float32"):
        r.costs  # W_p^p of these slices is ~2^300: not a float32
    r2 = geom.sliced_wasserstein(x, y, p=2, n_projections=16, seed=0, return_result=True)
    torch.testing.assert_close(r2.value, r2.costs.mean().sqrt())


def test_large_p_on_the_sphere():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 3, generator=g, dtype=F64), torch.randn(50, 3, generator=g, dtype=F64) + 0.3
    mu, nu = (geom.measure(t, kind="sphere", normalize=True) for t in (x, y))
    values = [geom.sliced_wasserstein(mu, nu, p=p, n_projections=32, seed=1).item() for p in (2, 20, 80, 150, 2000, 1e300)]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert values == sorted(values)  # SW_p grows with p (Jensen), and never collapses to 0
    f32 = geom.sliced_wasserstein(mu.to(torch.float32), nu.to(torch.float32), p=150, n_projections=32, seed=1)
    assert f32.item() == pytest.approx(values[3], rel=1e-4)


class _NaNScheme(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):
        return torch.eye(dim, dtype=F64)[:1].expand(n, dim)

    def estimate(self, costs, context):
        return torch.full(costs.shape[:1], math.nan, dtype=costs.dtype), torch.zeros(costs.shape[:1])


def test_nan_estimate_is_an_error_not_zero():
    with pytest.raises(ValueError, match="_NaNScheme.*not a finite number"):
        geom.sliced_wasserstein(torch.randn(5, 2), torch.randn(5, 2), scheme=_NaNScheme(), n_projections=3)


class _Short(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):
        return torch.eye(dim, dtype=F64)[:1].expand(max(1, n - 1), dim)


def test_scheme_with_the_wrong_number_of_directions_is_named():
    with pytest.raises(ValueError, match=r"scheme _Short \(module .*test_numerics\).*expected 4 directions.*got 3"):
        geom.sliced_wasserstein(torch.randn(5, 2), torch.randn(5, 2), scheme=_Short(), n_projections=4)


@pytest.mark.parametrize("offset", [1e6, 1e7])
@pytest.mark.parametrize("weighted", [False, True])
def test_float32_far_from_the_origin_keeps_its_digits(offset, weighted):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1, 3, generator=g, dtype=F64) * offset
    x = (base + torch.randn(300, 3, generator=g, dtype=F64)).float()  # differences ~1 at ~1e7
    y = (base + torch.randn(250 if weighted else 300, 3, generator=g, dtype=F64) * 1.3 + 0.5).float()
    a = torch.rand(300, generator=g) + 0.5 if weighted else None
    theta = unit_rows(64, 3, 1)
    ref_x = x.double().requires_grad_()
    ref = geom.sliced_wasserstein(geom.measure(ref_x, weights=None if a is None else a.double()), y.double(),
                                  directions=theta)
    (ref_g,) = torch.autograd.grad(ref, ref_x)
    x32 = x.clone().requires_grad_()
    got = geom.sliced_wasserstein(geom.measure(x32, weights=a), y, directions=theta.float())
    (g32,) = torch.autograd.grad(got, x32)
    assert got.item() == pytest.approx(ref.item(), rel=1e-4)
    cos = torch.nn.functional.cosine_similarity(g32.double().flatten(), ref_g.flatten(), dim=0)
    assert cos > 0.9999
    # and a shift of both together changes nothing
    moved = geom.measure(x - base.float(), weights=a)
    assert geom.sliced_wasserstein(moved, y - base.float(), directions=theta.float()).item() == \
        pytest.approx(ref.item(), rel=1e-4)


def test_sliced_energy_far_from_the_origin_keeps_its_digits():
    g = torch.Generator().manual_seed(4)
    base = torch.full((1, 3), 1e7, dtype=F64)
    x = (base + torch.randn(200, 3, generator=g, dtype=F64)).float()
    y = (base + torch.randn(150, 3, generator=g, dtype=F64) + 0.7).float()
    theta = unit_rows(128, 3, 2)
    ref_x = x.double().requires_grad_()
    ref = geom.sliced_energy_distance(ref_x, y.double(), directions=theta)
    (ref_g,) = torch.autograd.grad(ref, ref_x)
    x32 = x.clone().requires_grad_()
    got = geom.sliced_energy_distance(x32, y, directions=theta.float())
    (g32,) = torch.autograd.grad(got, x32)
    assert got.item() == pytest.approx(ref.item(), rel=1e-4)
    assert torch.nn.functional.cosine_similarity(g32.double().flatten(), ref_g.flatten(), dim=0) > 0.9999


def test_weights_whose_sum_overflows_are_normalised():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(40, 3, generator=g), torch.randn(30, 3, generator=g) + 0.2
    w = torch.rand(40, generator=g) + 0.5
    big = w / w.max() * 3e38  # each finite in float32, their sum is not
    assert not torch.isfinite(big.sum())
    mu, ref = geom.measure(x, weights=big), geom.measure(x, weights=w)
    torch.testing.assert_close(mu.weights, ref.weights)
    theta = unit_rows(16, 3, 0).float()
    assert geom.sliced_wasserstein(mu, y, directions=theta).item() == pytest.approx(
        geom.sliced_wasserstein(ref, y, directions=theta).item(), rel=1e-6)


@pytest.mark.parametrize("n", [10**9, 10**12])
def test_n_projections_that_would_exhaust_memory_are_refused_up_front(n):
    with pytest.raises(ValueError, match="n_projections: this needs about .* of memory"):
        geom.sliced_wasserstein(torch.randn(5, 3), torch.randn(5, 3), n_projections=n)


def test_n_samples_that_would_exhaust_memory_are_refused_up_front():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    f = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="n_samples: this needs about"):
        geom.measure((v, f), kind="mesh", n_samples=10**10)


def test_numpy_integers_are_integers():
    x, y = torch.randn(8, 2), torch.randn(8, 2)
    want = geom.sliced_wasserstein(x, y, p=3, n_projections=8, seed=1)
    got = geom.sliced_wasserstein(x, y, p=np.int64(3), n_projections=np.int64(8), seed=np.int64(1))
    assert got.item() == want.item()
    with pytest.raises(TypeError, match="n_projections"):
        geom.sliced_wasserstein(x, y, n_projections=np.bool_(True))


def test_weights_given_to_the_estimator_point_to_geom_measure():
    with pytest.raises(TypeError, match="weights: belongs to the measures.*geom.measure"):
        geom.sliced_wasserstein(torch.randn(4, 2), torch.randn(4, 2), weights=torch.ones(4))


def test_seed_outside_64_bits_is_named():
    with pytest.raises(ValueError, match="seed: expected an integer in"):
        geom.sliced_wasserstein(torch.randn(4, 2), torch.randn(4, 2), seed=1 << 64)


def test_an_unsupported_device_is_named():
    with pytest.raises(ValueError, match="device 'meta'"):
        geom.measure(torch.empty(4, 3, device="meta"))


@pytest.mark.parametrize("kind, expects", [("graph", "a GraphDomain"), ("spd", "SPD matrices"),
                                           ("spd-logsw", "SPD matrices"), ("spd-affine", "SPD matrices")])
def test_kinds_that_do_not_read_shape_files_say_what_they_expect(tmp_path, kind, expects):
    path = tmp_path / "tri.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                    "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
                    "3 0 1 2\n")
    with pytest.raises(ValueError, match=f"kind '{kind}' expects {expects}.*tri.ply"):
        geom.measure(path, kind=kind)


def test_cv_and_reservoir_read_the_cost_scale():
    """The estimate of a scheme that mixes in quantities in absolute units is the same whatever unit
    the costs come in: scaled costs with their scale equal absolute costs."""
    from geom_plugins.cv import ControlVariates

    g = torch.Generator().manual_seed(2)
    mu, nu = geom.measure(torch.randn(1, 30, 3, generator=g, dtype=F64)), geom.measure(
        torch.randn(1, 30, 3, generator=g, dtype=F64) + 1.0)
    theta = unit_rows(40, 3, 9)
    from geom.sliced import relative_costs, scaled_costs

    costs, scale = relative_costs(*scaled_costs(mu, nu, theta, 2.0), 2.0)
    assert scale.item() != pytest.approx(1.0)
    cv = ControlVariates()
    v_scaled, e_scaled = cv.estimate(costs, EstimateContext(mu, nu, theta, 2.0, None, scale))
    v_abs, e_abs = cv.estimate(costs * scale[:, None] ** 2, EstimateContext(mu, nu, theta, 2.0, None))
    torch.testing.assert_close(v_scaled * scale**2, v_abs)
    torch.testing.assert_close(e_scaled * scale**2, e_abs)


def test_surface_samples_that_would_exhaust_memory_are_refused_up_front(tmp_path):
    path = tmp_path / "tri.off"
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(ValueError, match="n_samples: this needs about"):
        geom.measure(path, n_samples=10**10)



@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.5])
def test_relative_costs_are_the_same_whatever_unit_the_slices_come_in(dtype, p):
    """Per-slice ``(costs, scale)`` and ``(costs / k^p, k)`` are the same W_p^p: the relative costs, their
    unit and their gradient agree, whether every scale is 1 or not (two ways of computing them)."""
    from geom.sliced import relative_costs

    g = torch.Generator().manual_seed(int(10 * p))
    c = torch.rand(3, 17, generator=g, dtype=F64) * 10.0 ** torch.randint(-6, 6, (3, 1), generator=g)
    k = 0.5 + 3.5 * torch.rand(3, 17, generator=g, dtype=F64)
    plain = c.to(dtype).clone().requires_grad_()
    scaled = (c / k**p).to(dtype).requires_grad_()
    rel, top = relative_costs(plain, torch.ones_like(c), p)
    rel_k, top_k = relative_costs(scaled, k, p)
    tol = dict(rtol=1e-5, atol=0) if dtype == torch.float32 else dict(rtol=1e-12, atol=0)
    torch.testing.assert_close(rel_k, rel, **tol)
    torch.testing.assert_close(top_k, top, **tol)
    torch.testing.assert_close(rel.detach().amax(-1), torch.ones(3, dtype=dtype), **tol)
    w = torch.rand(3, 17, generator=g, dtype=dtype)
    (rel * w).sum().backward()
    (rel_k * w).sum().backward()
    torch.testing.assert_close(scaled.grad, plain.grad * k.to(dtype) ** p, **tol)  # d rel / d c = 1 / S^p


def test_float32_relative_costs_whose_factor_leaves_float32_stay_exact():
    """Subnormal float32 costs: the factor 1 / max lies beyond float32, and the product is taken in float64."""
    from geom.sliced import relative_costs

    c = torch.tensor([[1e-41, 2e-41, 4e-41]], dtype=torch.float32)
    rel, _ = relative_costs(c, torch.ones(1, 3, dtype=F64), 1.0)
    assert rel.dtype == torch.float32
    torch.testing.assert_close(rel, c.double() / c.double().max(), check_dtype=False, rtol=1e-6, atol=0)
    assert rel.max().item() == 1.0


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_an_item_at_distance_zero_leaves_the_others_of_its_batch_unchanged(p):
    """A batch item with SW = 0 takes the guarded root (and logarithmic relative costs); the other items
    get the same value, stderr and gradient as when compared alone."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 40, 3, generator=g, dtype=F64)
    y = torch.randn(2, 40, 3, generator=g, dtype=F64) + 0.5
    y[0] = x[0]  # item 0: the same cloud
    theta = unit_rows(32, 3, 4)
    xb = x.clone().requires_grad_()
    both = geom.sliced_wasserstein(xb, y, p=p, directions=theta, return_result=True)
    both.value.sum().backward()
    x1 = x[1].clone().requires_grad_()
    alone = geom.sliced_wasserstein(x1, y[1], p=p, directions=theta, return_result=True)
    alone.value.backward()
    assert both.value[0].item() == 0.0 and both.stderr[0].item() == 0.0
    torch.testing.assert_close(both.value[1], alone.value, rtol=1e-13, atol=0)
    torch.testing.assert_close(both.stderr[1], alone.stderr, rtol=1e-12, atol=0)
    torch.testing.assert_close(xb.grad[1], x1.grad, rtol=1e-12, atol=1e-15)
    assert torch.isfinite(xb.grad[0]).all()
