"""The von Mises-Fisher sampler of :mod:`geom.directions`: its law (the mean cosine and its spread against
the Bessel ratio), its reparameterised gradients in the location and in the concentration, seeds and errors."""

import math

import pytest
import torch
from scipy.special import ive

from geom.directions import _cosine_slope, von_mises_fisher
from geom.learn.pacbayes import mean_cosine

F64 = torch.float64


@pytest.mark.parametrize("d", [1, 2, 3, 10])
@pytest.mark.parametrize("kappa", [0.5, 5.0, 200.0])
def test_cosines_have_the_mean_and_spread_of_the_law(d, kappa):
    g = torch.Generator().manual_seed(10 * d + int(kappa))
    loc = torch.randn(d, generator=g, dtype=F64)
    loc = loc / loc.norm()
    n = 20000
    theta = von_mises_fisher(loc, kappa, n, generator=g)
    assert theta.shape == (n, d)
    assert torch.allclose(theta.norm(dim=1), torch.ones(n, dtype=F64), atol=1e-12)
    cosines = theta @ loc  # (n,)
    A = ive(d / 2, kappa) / ive(d / 2 - 1, kappa)  # mean cosine of vMF on S^(d-1)
    var = 1 - (d - 1) * A / kappa - A * A  # Var(cos) = E cos^2 - A^2, with E cos^2 = 1 - (d - 1) A / kappa
    assert abs(cosines.mean().item() - A) <= 5 * math.sqrt(var / n) + 1e-12
    # the mean resultant points at loc: its tangent part is Monte Carlo noise of variance (1 - E c^2) / n
    R = theta.mean(0)
    tangent = (R - (R @ loc) * loc).norm().item()
    assert tangent <= 5 * math.sqrt((1 - cosines.square().mean().item()) / n) + 1e-12
    assert R @ loc > 0


def test_errors_name_the_argument():
    loc = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    for kappa in (0, -1.0, math.inf, math.nan, torch.tensor(0.0), torch.tensor(math.nan, dtype=F64)):
        with pytest.raises(ValueError, match="kappa"):
            von_mises_fisher(loc, kappa, 5)
    for kappa in ("large", torch.tensor([1.0, 2.0]), torch.tensor(3)):
        with pytest.raises(TypeError, match="kappa"):
            von_mises_fisher(loc, kappa, 5)
    with pytest.raises(TypeError, match="loc"):
        von_mises_fisher([0.0, 1.0], 1.0, 5)
    for bad in (torch.zeros(3), torch.tensor([1.0, math.inf, 0.0]), torch.tensor([math.nan, 1.0])):
        with pytest.raises(ValueError, match="loc: expected a nonzero finite location"):
            von_mises_fisher(bad, 1.0, 5)
    with pytest.raises(ValueError, match="n"):
        von_mises_fisher(loc, 1.0, 0)
    with pytest.raises(ValueError, match="kappa: a gradient in the concentration needs d >= 2"):
        von_mises_fisher(torch.tensor([1.0], dtype=F64), torch.tensor(2.0, dtype=F64, requires_grad=True), 5)


@pytest.mark.parametrize("d, kappa", [(2, 3.0), (3, 0.5), (10, 20.0)])
def test_has_the_vmf_mean_and_its_location_gradient(d, kappa):
    # E[theta] = A_d(kappa) m, so d/dloc E[a^T theta] = A_d(kappa) (I - m m^T) a / |loc|
    g = torch.Generator().manual_seed(d)
    loc = torch.randn(d, generator=g, dtype=torch.float64).mul(2.0).requires_grad_(True)
    a = torch.randn(d, generator=g, dtype=torch.float64)
    theta = von_mises_fisher(loc, kappa, 100_000, generator=g)
    assert torch.allclose(theta.detach().norm(dim=1), torch.ones(100_000, dtype=torch.float64), atol=1e-12)
    A = float(mean_cosine(kappa, d))
    m = (loc / loc.norm()).detach()
    err = 5 / math.sqrt(theta.shape[0])  # every coordinate of theta is in [-1, 1]
    assert torch.allclose(theta.detach().mean(0), A * m, atol=err)
    (grad,) = torch.autograd.grad((theta @ a).mean(), loc)
    expected = A * (a - (a @ m) * m) / loc.detach().norm()
    assert torch.allclose(grad, expected, atol=3 * a.norm() * err)


def test_is_reproducible_and_leaves_the_global_rng():
    loc = torch.tensor([0.3, -1.0, 0.5, 2.0], dtype=torch.float64)
    state = torch.random.get_rng_state()
    one = von_mises_fisher(loc, 7.0, 16, generator=torch.Generator().manual_seed(5))
    two = von_mises_fisher(loc, 7.0, 16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(one, two) and torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("d, kappa", [(2, 3.0), (3, 0.7), (10, 20.0), (40, 8.0)])
def test_kappa_gradient_is_the_derivative_of_the_mean_cosine(d, kappa):
    # E[w] = A_d(kappa), so the mean of the implicit dw/dkappa is A_d'(kappa) (finite differences of the Bessel ratio)
    loc = torch.zeros(d, dtype=torch.float64)
    loc[0] = 1.0
    k = torch.tensor(kappa, dtype=torch.float64, requires_grad=True)
    theta = von_mises_fisher(loc, k, 40_000, generator=torch.Generator().manual_seed(d))
    w = theta[:, 0]
    (total,) = torch.autograd.grad(w.sum(), k)
    mean_slope = float(total) / w.numel()
    with torch.no_grad():  # per-sample slopes for the Monte Carlo error: dw/dk = dtheta_0 / dk
        y = 1 - w.detach()
        per = _cosine_slope(y, kappa, d)
    assert float(per.mean()) == pytest.approx(mean_slope, rel=1e-9)
    h = 1e-5 * kappa
    exact = float((mean_cosine(kappa + h, d) - mean_cosine(kappa - h, d)) / (2 * h))
    assert abs(mean_slope - exact) < 5 * float(per.std()) / math.sqrt(w.numel()) + 1e-9
