"""The ``"cv"`` scheme: control variates for SW_2^2 (Nguyen & Ho, 2024).

The control variates and the estimate are recomputed here with numpy from the clouds, independently
of the plugin's torch code; unbiasedness is checked against a Monte Carlo reference with many
directions, variance reduction on generated 3-D shapes, gradients by finite differences.
"""

import math

import numpy as np
import pytest
import torch

import geom
import geom.testing
from geom.io import sample_surface
from geom.sliced import EstimateContext
from geom_datasets import shapes
from geom_plugins.cv import ControlVariates
from geom_plugins.mc import MonteCarlo


def _clouds(d=3, B=2, N=40, M=30, seed=5):
    """Two batches of anisotropic weighted clouds, N != M, that differ in position and in shape."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, d, generator=g, dtype=torch.float64) * torch.linspace(1.0, 0.2, d, dtype=torch.float64)
    y = torch.randn(B, M, d, generator=g, dtype=torch.float64) * torch.linspace(0.3, 1.0, d, dtype=torch.float64)
    y = y + torch.linspace(0.8, -0.4, d, dtype=torch.float64)
    wx = torch.rand(B, N, generator=g, dtype=torch.float64) + 0.2
    wy = torch.rand(B, M, generator=g, dtype=torch.float64) + 0.2
    return geom.measure(x, weights=wx), geom.measure(y, weights=wy)


def _moments(measure):
    """Weighted means ``(B, d)`` and covariances ``(B, d, d)`` with numpy."""
    x, w = measure.support.detach().numpy(), measure.weights.detach().numpy()
    m = np.einsum("bn,bnd->bd", w, x)
    c = x - m[:, None]
    return m, np.einsum("bn,bnd,bne->bde", w, c, c)


def _numpy_variate(mu, nu, theta, variate):
    """``C (B, L)`` and ``E C (B,)`` from the formulas of the module docstring."""
    (m1, S1), (m2, S2) = _moments(mu), _moments(nu)
    theta = theta.detach().numpy()
    d = theta.shape[1]
    dm = m1 - m2
    C = (dm @ theta.T) ** 2
    EC = (dm**2).sum(-1) / d
    if variate == "upper":
        C = C + np.einsum("ld,bde,le->bl", theta, S1 + S2, theta)
        EC = EC + (np.trace(S1, axis1=1, axis2=2) + np.trace(S2, axis1=1, axis2=2)) / d
    return C, EC


def _numpy_estimate(costs, C, EC):
    """Control-variate estimate, optimal gamma and standard error (L - 2 degrees of freedom), numpy."""
    K = costs.detach().numpy()
    L = K.shape[1]
    gamma = np.array([np.cov(k, c)[0, 1] / np.var(c, ddof=1) for k, c in zip(K, C)])
    value = K.mean(1) - gamma * (C.mean(1) - EC)
    residual = K - gamma[:, None] * (C - EC[:, None])
    return value, gamma, residual.std(1, ddof=2) / math.sqrt(L)


def _sw2(mu, nu, scheme, L, seed, **kw):
    return geom.sliced_wasserstein(mu, nu, scheme=scheme, n_projections=L, seed=seed, **kw) ** 2


def test_contract():
    geom.testing.check_scheme(ControlVariates)
    geom.testing.check_scheme(ControlVariates, variate="upper")
    geom.testing.check_scheme(ControlVariates, base="mc", gamma=0.5)


@pytest.mark.parametrize("d", [3, 10])
def test_closed_form_expectations_by_monte_carlo(d):
    mu, nu = _clouds(d=d, B=1)
    (m1, S1), (m2, _) = _moments(mu), _moments(nu)
    dm, S = (m1 - m2)[0], S1[0]
    n = 200_000
    theta = ControlVariates().directions(n, d, generator=torch.Generator().manual_seed(1))  # (n, d)
    t = theta.numpy()
    for samples, closed in [((t @ dm) ** 2, dm @ dm / d), (np.einsum("ld,de,le->l", t, S, t), np.trace(S) / d)]:
        se = samples.std() / math.sqrt(n)
        assert abs(samples.mean() - closed) < 4 * se, (samples.mean(), closed, se)
    for variate in ("lower", "upper"):  # the plugin's C and E C are those formulas, and E C is C's mean
        few = theta[:2]  # few directions: the plugin projects the points instead of forming S
        C, EC = ControlVariates(variate=variate).control_variate(mu, nu, few)
        np.testing.assert_allclose(C.numpy(), _numpy_variate(mu, nu, few, variate)[0], rtol=1e-10, atol=1e-12)
        C, EC = ControlVariates(variate=variate).control_variate(mu, nu, theta)
        C_np, EC_np = _numpy_variate(mu, nu, theta, variate)
        np.testing.assert_allclose(C.numpy(), C_np, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(EC.numpy(), EC_np, rtol=1e-12)
        se = C.std().item() / math.sqrt(n)
        assert abs(C.mean().item() - EC.item()) < 4 * se, (variate, C.mean().item(), EC.item(), se)


@pytest.mark.parametrize("variate", ["lower", "upper"])
def test_estimate_and_stderr_match_the_formula(variate):
    mu, nu = _clouds()
    res = geom.sliced_wasserstein(mu, nu, scheme=ControlVariates(variate=variate), n_projections=32, seed=3,
                                  return_result=True)
    C, EC = _numpy_variate(mu, nu, res.directions, variate)
    value, gamma, se = _numpy_estimate(res.costs, C, EC)
    assert np.all(np.abs(gamma) > 0.1)  # the variate is used, not skipped
    np.testing.assert_allclose(res.value.detach().numpy() ** 2, value, rtol=1e-10)
    # the core reports the stderr of SW_2 = sqrt(mean) by the delta method: se(mean) / (2 SW_2)
    np.testing.assert_allclose(res.stderr.numpy() * 2 * res.value.detach().numpy(), se, rtol=1e-8)
    mc = geom.sliced_wasserstein(mu, nu, n_projections=32, seed=3, return_result=True)
    assert torch.equal(mc.directions, res.directions)  # same directions as mc for the same seed


def test_lower_is_exact_on_translates():
    mu, _ = _clouds(d=4, B=2)
    shift = torch.tensor([0.7, -1.2, 0.3, 2.0], dtype=torch.float64)
    nu = geom.measure(mu.support + shift, weights=mu.weights)
    res = geom.sliced_wasserstein(mu, nu, scheme=ControlVariates(), n_projections=10, seed=0, return_result=True)
    expected = (shift**2).sum() / 4  # SW_2^2 of a translate: E (theta . t)^2 = |t|^2 / d
    torch.testing.assert_close(res.value.detach() ** 2, expected.expand(2), rtol=1e-10, atol=0)
    assert bool((res.stderr < 1e-7).all()), res.stderr
    mc = geom.sliced_wasserstein(mu, nu, n_projections=10, seed=0) ** 2
    assert bool(((mc - expected).abs() > 1e-3).all())  # Monte Carlo alone is not exact


def test_upper_is_exact_on_scaled_centred_copies():
    mu, _ = _clouds(d=3, B=1)
    m = torch.einsum("bn,bnd->bd", mu.weights, mu.support)
    x = mu.support - m[:, None]  # centred
    s = 1.8
    mu, nu = geom.measure(x, weights=mu.weights), geom.measure(s * x, weights=mu.weights)
    # theta#nu = s theta#mu, so W_2^2 = (1 - s)^2 theta^T S theta = (1 - s)^2 / (1 + s^2) * C_upper
    S = torch.einsum("bn,bnd,bne->bde", mu.weights, x, x)[0]
    expected = (1 - s) ** 2 * torch.trace(S) / 3
    upper = _sw2(mu, nu, ControlVariates(variate="upper"), 12, 0)
    torch.testing.assert_close(upper.detach(), expected.expand(1), rtol=1e-10, atol=0)
    # "lower" is 0 on centred pairs: it leaves plain Monte Carlo, identical to mc for the same seed
    torch.testing.assert_close(_sw2(mu, nu, ControlVariates(), 12, 0), _sw2(mu, nu, MonteCarlo(), 12, 0),
                               rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def reference():
    """``E W_2^2`` of the ``_clouds()`` pair by Monte Carlo with 200 000 directions, and its standard error."""
    ref = geom.sliced_wasserstein(*_clouds(), n_projections=200_000, seed=123, return_result=True)
    return ref.costs.mean(-1), ref.costs.std(-1) / math.sqrt(ref.costs.shape[-1])


class RotatedFibonacci(geom.SlicingScheme):
    """Randomised quasi-Monte Carlo in 3-D: a Fibonacci sphere under a Haar-random rotation, so each
    direction is uniform on the sphere while the set is evenly spread."""

    def directions(self, n, dim, *, generator=None):
        assert dim == 3
        i = torch.arange(n, dtype=torch.float64) + 0.5
        z = 1 - 2 * i / n
        phi = math.pi * (1 + math.sqrt(5)) * i
        r = (1 - z**2).sqrt()
        points = torch.stack([r * phi.cos(), r * phi.sin(), z], 1)  # (n, 3)
        q, rr = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
        return points @ (q * torch.sign(torch.diagonal(rr))).T


@pytest.mark.parametrize("scheme", [ControlVariates(), ControlVariates(variate="upper"),
                                    ControlVariates(base=RotatedFibonacci())], ids=["lower", "upper", "rqmc-base"])
def test_unbiased_over_seeds(scheme, reference):
    mu, nu = _clouds()
    ref, ref_se = reference  # (B,), (B,)
    S, L = 150, 64
    values = torch.stack([_sw2(mu, nu, scheme, L, seed).detach() for seed in range(S)])  # (S, B)
    se = values.std(0) / math.sqrt(S)
    z = (values.mean(0) - ref) / (se**2 + ref_se**2).sqrt()
    assert bool((z.abs() < 4).all()), (values.mean(0), ref, z)


def test_variance_reduction_on_translated_shapes():
    v1, _ = shapes.torus()
    v2, _ = shapes.torus(n_major=40, n_minor=20)  # another sampling of the same torus: N != M
    x, y = torch.from_numpy(v1), torch.from_numpy(v2) + torch.tensor([0.5, 0.3, 0.2])
    L, S = 100, 30
    mc = torch.stack([_sw2(x, y, MonteCarlo(), L, s).detach() for s in range(S)])
    cv = torch.stack([_sw2(x, y, ControlVariates(), L, s).detach() for s in range(S)])
    factor = (mc.var() / cv.var()).item()
    assert factor >= 4, f"variance reduction of cv over mc at L={L}: {factor:.3g}"


def test_gradients_match_finite_differences_at_the_fitted_gamma():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = 0.6 * torch.randn(5, 3, generator=g, dtype=torch.float64) + torch.tensor([0.9, -0.5, 0.2], dtype=torch.float64)
    wy = torch.rand(5, generator=g, dtype=torch.float64) + 0.2
    L = 7

    def sw2(scheme, x, y):
        gen = torch.Generator().manual_seed(11)  # the same directions at every call
        return geom.sliced_wasserstein(x, geom.measure(y, weights=wy), scheme=scheme, n_projections=L,
                                       generator=gen, return_result=True)

    for variate in ("lower", "upper"):
        xs, ys = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        res = sw2(ControlVariates(variate=variate), xs, ys)
        gx, gy = torch.autograd.grad(res.value**2, (xs, ys))
        assert bool(torch.isfinite(gx).all() and torch.isfinite(gy).all())
        # gamma is a constant for autograd: the gradient is that of the estimate at the fitted gamma
        mu, nu = geom.measure(x[None]), geom.measure(y[None], weights=wy[None])
        C, EC = _numpy_variate(mu, nu, res.directions, variate)
        gamma = _numpy_estimate(res.costs.detach()[None], C, EC)[1].item()
        fixed = ControlVariates(variate=variate, gamma=gamma)
        eps = 1e-6
        for t, grad, which in ((x, gx, 0), (y, gy, 1)):
            fd = torch.zeros_like(t)
            for idx in np.ndindex(*t.shape):
                plus, minus = t.clone(), t.clone()
                plus[idx] += eps
                minus[idx] -= eps
                args_p = (plus, y) if which == 0 else (x, plus)
                args_m = (minus, y) if which == 0 else (x, minus)
                fd[idx] = (sw2(fixed, *args_p).value ** 2 - sw2(fixed, *args_m).value ** 2) / (2 * eps)
            torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


def test_base_supplies_the_directions():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(ControlVariates(base="mc").directions(9, 4, generator=g1),
                       MonteCarlo().directions(9, 4, generator=g2))
    base = RotatedFibonacci()
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(ControlVariates(base=base).directions(16, 3, generator=g1),
                       base.directions(16, 3, generator=g2))


def test_other_p_falls_back_to_monte_carlo():
    mu, nu = _clouds()
    for p in (1, 3):
        a = geom.sliced_wasserstein(mu, nu, p=p, scheme=ControlVariates(), n_projections=20, seed=2, return_result=True)
        b = geom.sliced_wasserstein(mu, nu, p=p, n_projections=20, seed=2, return_result=True)
        assert torch.equal(a.value, b.value) and torch.equal(a.stderr, b.stderr)
    assert not torch.equal(_sw2(mu, nu, ControlVariates(), 20, 2), _sw2(mu, nu, MonteCarlo(), 20, 2))


class Learned(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):
        return torch.eye(dim, dtype=torch.float64)[torch.arange(n) % dim]

    def fit(self, mu, nu, *, p, generator=None):
        self.fitted = True


@pytest.mark.parametrize(
    "options, error, words",
    [
        ({"variate": "middle"}, ValueError, ["variate", "lower", "'middle'"]),
        ({"variate": 2}, TypeError, ["variate", "int"]),
        ({"gamma": "0.5"}, TypeError, ["gamma", "str"]),
        ({"gamma": True}, TypeError, ["gamma", "bool"]),
        ({"gamma": math.nan}, ValueError, ["gamma", "nan"]),
        ({"base": 3}, TypeError, ["base", "int"]),
        ({"base": "no-such-scheme"}, ValueError, ["base", "no-such-scheme"]),
        ({"base": Learned()}, ValueError, ["base", "Learned", "fit"]),
        ({"varite": "lower"}, TypeError, ["varite"]),
    ],
)
def test_bad_options(options, error, words):
    with pytest.raises(error) as info:
        ControlVariates(**options)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_randomised_qmc_base_gives_its_own_standard_error():
    """With base="qmc", the corrected slices go to the base's estimate: the error bar is the spread of
    its independent randomisations, which matches the spread over seeds; the i.i.d. formula would
    overstate it many times over on an even point set."""
    from geom_plugins.qmc import QuasiMonteCarlo

    x = torch.from_numpy(sample_surface(*shapes.torus(), 300, seed=1)).double()
    y = torch.from_numpy(sample_surface(*shapes.ellipsoid(), 300, seed=2)).double() + torch.tensor([0.4, 0.0, 0.2])
    scheme = ControlVariates(base=QuasiMonteCarlo(point_set="spiral", n_randomizations=4))
    context = dict(mu=geom.measure(x), nu=geom.measure(y), p=2.0, generator=None)
    values, stderr, iid = [], [], []  # SW_2^2, the reported stderr, the i.i.d. formula's, all in SW_2^2 units
    for s in range(120):
        r = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=96, seed=s, return_result=True)
        costs, ctx = r.costs.reshape(1, -1), EstimateContext(directions=r.directions, drawn=True, **context)
        values.append(r.value.item() ** 2)
        stderr.append(scheme.estimate(costs, ctx)[1].item())
        iid.append(ControlVariates().estimate(costs, ctx)[1].item())
    spread = torch.tensor(values).std()
    assert 0.75 < (torch.tensor(stderr).pow(2).mean().sqrt() / spread).item() < 1.33
    overstated = (torch.tensor(iid).pow(2).mean().sqrt() / spread).item()
    assert overstated > 4, overstated  # measured 12.6  # the i.i.d. formula overstates it
    one = geom.sliced_wasserstein(x, y, scheme="cv", base="qmc", n_projections=96, seed=0, return_result=True)
    assert math.isnan(one.stderr.item())  # one randomisation (qmc's default): no error bar



def test_representations_that_do_not_project_linearly_are_refused():
    x = torch.nn.functional.normalize(torch.randn(30, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    mu, nu = geom.measure(x, kind="sphere"), geom.measure(x.flip(0)[:20], kind="sphere")
    with pytest.raises(ValueError, match="scheme 'cv': control variates need linear projections.*'sphere'"):
        geom.sliced_wasserstein(mu, nu, scheme="cv", n_projections=16, seed=0)
    geom.sliced_wasserstein(mu, nu, scheme="mc", n_projections=16, seed=0)  # the same pair works elsewhere
