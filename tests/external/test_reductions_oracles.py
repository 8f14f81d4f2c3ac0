"""The reductions against independent oracles: scipy's distance matrices and GeomLoss.

Both backends (dense torch, KeOps) must give the numbers computed here from full
``scipy.spatial.distance.cdist`` matrices in float64, with weights, ``N != M`` and zero-weight
padding, and Hausdorff must agree with ``scipy.spatial.distance.directed_hausdorff``.
"""

import numpy as np
import pytest
import torch

import geom
from geom import _keops

scipy_distance = pytest.importorskip("scipy.spatial.distance")


@pytest.fixture(params=["dense", pytest.param("keops", marks=pytest.mark.keops)])
def backend(request):
    if request.param == "keops":
        pytest.importorskip("pykeops")
        for kernel in _keops.FORMULAS:
            reason = _keops.failure(kernel, 3, torch.float32, torch.device("cpu"))
            if reason is not None:
                pytest.skip(f"KeOps cannot run here: {reason}")
    return request.param


def random_pair(seed, n, m, dim=3, pad=0):
    """Float32 clouds and normalised float64 weights; the last ``pad`` points of x have weight 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = (rng.normal(size=(m, dim)) * 1.3 + 0.2).astype(np.float32)
    a, b = rng.uniform(0.1, 1.0, n), rng.uniform(0.1, 1.0, m)
    a[n - pad:] = 0.0
    return x, y, a / a.sum(), b / b.sum()


def scipy_reductions(x, y, a, b):
    """Energy, Chamfer and Hausdorff from full float64 cdist matrices, zero-weight points dropped."""
    x, y = x.astype(np.float64)[a > 0], y.astype(np.float64)[b > 0]
    a, b = a[a > 0], b[b > 0]
    dxy = scipy_distance.cdist(x, y)
    dxx, dyy = scipy_distance.cdist(x, x), scipy_distance.cdist(y, y)
    energy = 2 * a @ dxy @ b - a @ dxx @ a - b @ dyy @ b
    chamfer = a @ (dxy**2).min(1) + b @ (dxy**2).min(0)
    hausdorff = max(dxy.min(1).max(), dxy.min(0).max())
    return {"energy": energy, "chamfer": chamfer, "hausdorff": hausdorff}


FUNCS = {"energy": geom.energy_distance, "chamfer": geom.chamfer_distance, "hausdorff": geom.hausdorff_distance}


@pytest.mark.parametrize("seed, n, m, pad", [(0, 1, 1, 0), (1, 40, 17, 0), (2, 128, 301, 9), (3, 300, 64, 30)])
def test_reductions_equal_scipy_cdist(backend, seed, n, m, pad):
    x, y, a, b = random_pair(seed, n, m, pad=pad)
    expected = scipy_reductions(x, y, a, b)
    mu, nu = geom.measure(x, weights=a), geom.measure(y, weights=b)
    for name, f in FUNCS.items():
        value = f(mu, nu, backend=backend)
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(expected[name], rel=2e-5, abs=1e-6), name


def test_batched_reductions_equal_scipy_cdist(backend):
    pairs = [random_pair(10 + k, 50, 50, pad=pad) for k, pad in enumerate([0, 20, 45])]
    mu = geom.measure(np.stack([p[0] for p in pairs]), weights=np.stack([p[2] for p in pairs]))
    nu = geom.measure(np.stack([p[1] for p in pairs]), weights=np.stack([p[3] for p in pairs]))
    expected = [scipy_reductions(*p) for p in pairs]
    for name, f in FUNCS.items():
        values = f(mu, nu, backend=backend)
        assert values.shape == (3,)
        np.testing.assert_allclose(values.numpy(), [e[name] for e in expected], rtol=2e-5, atol=1e-6)


def test_hausdorff_equals_scipy_directed_hausdorff(backend):
    x, y, a, b = random_pair(20, 200, 150)
    expected = max(scipy_distance.directed_hausdorff(x, y)[0], scipy_distance.directed_hausdorff(y, x)[0])
    value = geom.hausdorff_distance(x, y, backend=backend)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_energy_is_twice_geomloss_energy_loss():
    # GeomLoss's SamplesLoss("energy") is the kernel norm 0.5 * ||a - b||_k^2 with k(x, y) = -|x - y|,
    # i.e. 0.5 * (2 E|X - Y| - E|X - X'| - E|Y - Y'|): half of our energy distance. Its tensorized
    # distances floor squared distances at 1e-8, so it reads |x_i - x_i| as 1e-4 on the diagonals of the
    # X-X and Y-Y terms: 2 * loss = ours - 1e-4 * (sum a_i^2 + sum b_j^2) (no other pair is that close).
    geomloss = pytest.importorskip("geomloss")
    x, y, a, b = random_pair(30, 60, 45, pad=5)
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    at, bt = torch.tensor(a), torch.tensor(b)
    loss = geomloss.SamplesLoss("energy", backend="tensorized")(at, xt, bt, yt)
    ours = geom.energy_distance(geom.measure(xt, weights=at), geom.measure(yt, weights=bt), backend="dense")
    diagonal_floor = 1e-4 * float((at**2).sum() + (bt**2).sum())
    assert float(torch.pdist(xt).min()) > 1e-4 and float(torch.pdist(yt).min()) > 1e-4
    assert ours.item() == pytest.approx(2 * loss.item() + diagonal_floor, rel=1e-10)
    assert loss.item() > 0


def test_energy_gradient_equals_geomloss_autograd():
    geomloss = pytest.importorskip("geomloss")
    x, y, a, b = random_pair(31, 40, 30)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    at, bt = torch.tensor(a), torch.tensor(b)
    loss = geomloss.SamplesLoss("energy", backend="tensorized")(at, xt, bt, yt)
    expected = torch.autograd.grad(2 * loss, (xt, yt))
    ours = geom.energy_distance(geom.measure(xt, weights=at), geom.measure(yt, weights=bt), backend="dense")
    for g, e in zip(torch.autograd.grad(ours, (xt, yt)), expected):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-12)
