"""Energy, Chamfer and Hausdorff distances: closed forms, invariances, backends agree, gradients, errors."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import geom
from geom import _keops, reductions

FUNCS = {"energy": geom.energy_distance, "chamfer": geom.chamfer_distance, "hausdorff": geom.hausdorff_distance}


def keops_or_skip(device=torch.device("cpu")):
    pytest.importorskip("pykeops")
    for kernel in _keops.FORMULAS:
        reason = _keops.failure(kernel, 3, torch.float32, device)
        if reason is not None:
            pytest.skip(f"KeOps cannot run here: {reason}")


@pytest.fixture(params=["dense", pytest.param("keops", marks=pytest.mark.keops)])
def backend(request):
    if request.param == "keops":
        keops_or_skip()
    return request.param


def cloud(gen, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)


def weights(gen, *shape, dtype=torch.float32):
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) + 0.1).to(dtype)


def padded_pair(gen, sizes_x, sizes_y, dim=3, dtype=torch.float32):
    """Two padded batches and the list of unpadded item pairs.

    The padding has zero weight and lies among the real points, so it would change every result if
    it were not ignored (as a nearest neighbour, or as a far point in Hausdorff's max).
    """
    B = len(sizes_x)
    x, y = cloud(gen, B, max(sizes_x), dim, dtype=dtype) * 2, cloud(gen, B, max(sizes_y), dim, dtype=dtype) * 2
    a, b = torch.zeros(B, x.shape[1], dtype=dtype), torch.zeros(B, y.shape[1], dtype=dtype)
    items = []
    for k, (n, m) in enumerate(zip(sizes_x, sizes_y)):
        xk, yk = cloud(gen, n, dim, dtype=dtype), cloud(gen, m, dim, dtype=dtype) + 0.5
        ak, bk = weights(gen, n, dtype=dtype), weights(gen, m, dtype=dtype)
        x[k, :n], y[k, :m], a[k, :n], b[k, :m] = xk, yk, ak, bk
        items.append((geom.measure(xk, weights=ak), geom.measure(yk, weights=bk)))
    return geom.measure(x, weights=a), geom.measure(y, weights=b), items


# ---------------------------------------------------------------- closed forms


def test_single_points_closed_forms(backend):
    x = torch.tensor([[0.3, -1.0, 2.0]])
    y = torch.tensor([[1.3, 1.0, 0.0]])  # |x - y| = 3
    assert geom.chamfer_distance(x, y, backend=backend).item() == pytest.approx(2 * 9.0, rel=1e-6)
    assert geom.hausdorff_distance(x, y, backend=backend).item() == pytest.approx(3.0, rel=1e-6)
    assert geom.energy_distance(x, y, backend=backend).item() == pytest.approx(2 * 3.0, rel=1e-6)


def test_hand_computed_weighted_example(backend):
    # x = {0 (weight 1/4), 1 (weight 3/4)}, y = {3}: nearest distances 3, 2 and 2.
    mu = geom.measure(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), weights=[1.0, 3.0])
    nu = geom.measure(torch.tensor([[3.0, 0.0, 0.0]]))
    assert geom.chamfer_distance(mu, nu, backend=backend).item() == pytest.approx(0.25 * 9 + 0.75 * 4 + 4, rel=1e-6)
    assert geom.hausdorff_distance(mu, nu, backend=backend).item() == pytest.approx(3.0, rel=1e-6)
    # 2 E|X - Y| - E|X - X'| = 2 (0.25 * 3 + 0.75 * 2) - 2 * 0.25 * 0.75 * 1
    assert geom.energy_distance(mu, nu, backend=backend).item() == pytest.approx(4.5 - 0.375, rel=1e-6)


def test_energy_of_a_measure_with_itself_is_zero(backend):
    gen = torch.Generator().manual_seed(0)
    x, a = cloud(gen, 50, 3), weights(gen, 50)
    mu = geom.measure(x, weights=a)
    assert geom.energy_distance(mu, mu, backend=backend).item() == 0.0
    perm = torch.randperm(50, generator=gen)  # the same measure, points listed in another order
    same = geom.energy_distance(mu, geom.measure(x[perm], weights=a[perm]), backend=backend).item()
    assert abs(same) < 1e-5
    for f in (geom.chamfer_distance, geom.hausdorff_distance):
        assert f(mu, mu, backend=backend).item() == 0.0


def test_energy_is_positive_on_random_pairs(backend):
    gen = torch.Generator().manual_seed(1)
    x, y = cloud(gen, 16, 20, 3), cloud(gen, 16, 13, 3) * 1.1 + 0.05
    values = geom.energy_distance(geom.measure(x, weights=weights(gen, 16, 20)),
                                  geom.measure(y, weights=weights(gen, 16, 13)), backend=backend)
    assert values.shape == (16,)
    assert bool((values > 0).all()), values


def test_energy_on_the_line_is_twice_the_cdf_l2_distance():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=7), rng.normal(0.4, 1.5, size=11)
    a, b = rng.uniform(0.1, 1, 7), rng.uniform(0.1, 1, 11)
    a, b = a / a.sum(), b / b.sum()
    t = np.sort(np.concatenate([x, y]))
    F = np.array([a[x <= s].sum() for s in t])  # right-continuous CDFs on the merged support
    G = np.array([b[y <= s].sum() for s in t])
    expected = 2 * np.sum((F[:-1] - G[:-1]) ** 2 * np.diff(t))
    value = geom.energy_distance(geom.measure(x, weights=a), geom.measure(y, weights=b), backend="dense")
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- invariances


@pytest.mark.parametrize("name", FUNCS)
def test_symmetry(backend, name):
    gen = torch.Generator().manual_seed(3)
    mu = geom.measure(cloud(gen, 40, 3), weights=weights(gen, 40))
    nu = geom.measure(cloud(gen, 25, 3) + 0.3, weights=weights(gen, 25))
    f = FUNCS[name]
    assert f(mu, nu, backend=backend).item() == pytest.approx(f(nu, mu, backend=backend).item(), rel=1e-5)


@pytest.mark.parametrize("name", FUNCS)
def test_translation_and_rotation_invariance(name):
    gen = torch.Generator().manual_seed(4)
    x, y = cloud(gen, 30, 3, dtype=torch.float64), cloud(gen, 21, 3, dtype=torch.float64) + 0.2
    a, b = weights(gen, 30, dtype=torch.float64), weights(gen, 21, dtype=torch.float64)
    rot, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    shift = torch.tensor([5.0, -2.0, 0.7], dtype=torch.float64)
    f = FUNCS[name]
    ref = f(geom.measure(x, weights=a), geom.measure(y, weights=b)).item()
    moved = f(geom.measure(x @ rot.T + shift, weights=a), geom.measure(y @ rot.T + shift, weights=b)).item()
    assert moved == pytest.approx(ref, rel=1e-10)
    assert ref > 0


@pytest.mark.parametrize("name", FUNCS)
def test_zero_weight_padding_changes_nothing(backend, name):
    gen = torch.Generator().manual_seed(5)
    mu, nu, items = padded_pair(gen, [12, 30, 7], [9, 4, 30])
    f = FUNCS[name]
    batched = f(mu, nu, backend=backend)
    assert batched.shape == (3,)
    expected = torch.stack([f(m, n, backend=backend) for m, n in items])
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-6)


def test_batch_of_one_broadcasts_against_a_batch():
    gen = torch.Generator().manual_seed(6)
    x, y = cloud(gen, 10, 3), cloud(gen, 4, 8, 3)
    for f in FUNCS.values():
        values = f(x, y, backend="dense")
        assert values.shape == (4,)
        torch.testing.assert_close(values, torch.stack([f(x, yk, backend="dense") for yk in y]))


def test_dtype_and_scalar_results():
    x64 = torch.rand(6, 2, dtype=torch.float64)
    for f in FUNCS.values():
        out = f(x64, x64 + 1, backend="dense")
        assert out.shape == () and out.dtype == torch.float64
        out32 = f(np.random.default_rng(0).random((5, 2)).astype(np.float32), [[0.0, 0.0]], backend="dense")
        assert out32.shape == () and out32.dtype == torch.float32


# ---------------------------------------------------------------- backends agree


@pytest.mark.keops
@pytest.mark.parametrize("name", FUNCS)
def test_dense_equals_keops_with_gradients(device, name):
    keops_or_skip(device)
    gen = torch.Generator().manual_seed(7)
    mu, nu, _ = padded_pair(gen, [37, 50], [23, 61])
    f = FUNCS[name]
    out, grads = {}, {}
    for backend in ("dense", "keops"):
        x = mu.support.detach().to(device).requires_grad_()
        y = nu.support.detach().to(device).requires_grad_()
        value = f(geom.measure(x, weights=mu.weights.to(device)), geom.measure(y, weights=nu.weights.to(device)),
                  backend=backend)
        assert value.device.type == device.type
        out[backend] = value.detach()
        grads[backend] = torch.autograd.grad(value.sum(), (x, y))
    torch.testing.assert_close(out["keops"], out["dense"], rtol=1e-5, atol=1e-5)
    for gk, gd in zip(grads["keops"], grads["dense"]):
        torch.testing.assert_close(gk, gd, rtol=1e-4, atol=1e-5)
    assert float(grads["dense"][0].abs().sum()) > 0


@pytest.mark.keops
def test_auto_takes_keops_on_large_problems_and_agrees_with_dense():
    keops_or_skip()
    gen = torch.Generator().manual_seed(8)
    x, y = cloud(gen, 1024, 3), cloud(gen, 1100, 3) + 0.1
    assert x.shape[0] * y.shape[0] >= reductions._AUTO_PAIRS
    for f in FUNCS.values():
        torch.testing.assert_close(f(x, y), f(x, y, backend="dense"), rtol=1e-5, atol=1e-6)


@pytest.mark.keops
def test_warm_keops_cache_compiles_both_formulas_for_both_dtypes():
    keops_or_skip()
    done = geom.reductions.warm_keops_cache()
    for formula, reduction, _ in _keops.FORMULAS.values():
        for dtype in ("float32", "float64"):
            assert any(d.startswith(f"{reduction}({formula})") and dtype in d for d in done), done


def test_auto_falls_back_to_dense_with_one_warning(monkeypatch):
    monkeypatch.setattr(reductions, "_AUTO_PAIRS", 1)
    monkeypatch.setattr(reductions, "_warned", False)
    monkeypatch.setattr(_keops, "failure", lambda *args: "pykeops: no compiler found")
    x, y = torch.rand(5, 3), torch.rand(4, 3)
    with pytest.warns(geom.GeomWarning, match="no compiler found") as record:
        first = geom.chamfer_distance(x, y)
        second = geom.energy_distance(x, y)
    assert len(record) == 1
    assert first.item() == geom.chamfer_distance(x, y, backend="dense").item()
    assert second.item() == geom.energy_distance(x, y, backend="dense").item()


def test_explicit_keops_without_pykeops_raises_runtime_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pykeops.torch", None)  # "import pykeops.torch" now fails
    _keops._routine.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"pykeops could not run.*(ModuleNotFoundError|ImportError)"):
            geom.hausdorff_distance(torch.rand(5, 3), torch.rand(4, 3), backend="keops")
    finally:
        _keops._routine.cache_clear()


def test_small_auto_problems_never_import_pykeops():
    code = ("import sys, torch, geom; x = torch.rand(30, 3); "
            "[f(x, x + 1) for f in (geom.energy_distance, geom.chamfer_distance, geom.hausdorff_distance)]; "
            "print('pykeops' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def record_backends(monkeypatch):
    """Replace both backends' kernels by stand-ins that record their backend and return zeros, so the
    decision of "auto" (KeOps taken to run here) is seen without computing 1e10 pairs."""
    used = []

    def stand_in(backend, name):
        def kernel(x, y, v):  # (B, N, D), (B, M, D), (B, M) -> (B, N) indices | (B, N, 1 + D) sums
            used.append(backend)
            if name == "nearest":
                return torch.zeros(x.shape[:2], dtype=torch.long)
            return x.new_zeros(*x.shape[:2], 1 + x.shape[-1])
        return kernel

    monkeypatch.setattr(reductions, "_BACKENDS", {b: {k: stand_in(b, k) for k in ks}
                                                  for b, ks in reductions._BACKENDS.items()})
    monkeypatch.setattr(_keops, "failure", lambda *args: None)
    return used


# (N, M) -> backend "auto" takes: the energy distance computes N^2, M^2 and N M pairs, Chamfer and
# Hausdorff N M pairs only (2**20 = 1048576)
AUTO = {
    "energy": {(1, 10**5): "keops", (10**5, 1): "keops", (10**5, 10**5): "keops", (1100, 2): "keops",
               (30, 40): "dense", (1000, 1000): "dense"},
    "chamfer": {(1, 10**5): "dense", (10**5, 1): "dense", (10**5, 10**5): "keops", (2000, 1000): "keops",
                (30, 40): "dense", (1100, 2): "dense"},
}
AUTO["hausdorff"] = AUTO["chamfer"]


@pytest.mark.parametrize("name", FUNCS)
def test_auto_decides_by_the_largest_pairwise_term(monkeypatch, name):
    used = record_backends(monkeypatch)
    for (n, m), expected in AUTO[name].items():
        used.clear()
        FUNCS[name](torch.zeros(n, 3), torch.ones(m, 3))
        assert used and set(used) == {expected}, ((n, m), used)


@pytest.mark.parametrize("backend", ["dense", "keops", "auto"])
@pytest.mark.parametrize("name", FUNCS)
def test_backend_needing_more_memory_than_available_is_refused_up_front(monkeypatch, name, backend):
    # one cloud of 1e6 points against a batch of 1e6 single points: 12 MB each, but each result (and
    # each dense block, and KeOps' contiguous copy of the broadcast cloud) holds 1e12 entries
    monkeypatch.setattr(_keops, "failure", lambda *args: None)  # "auto" takes KeOps without compiling
    x, y = torch.zeros(10**6, 3), torch.ones(10**6, 1, 3)
    with pytest.raises(ValueError, match=r"^mu, nu: this needs about [\d.]+ TiB of memory for backend=") as info:
        FUNCS[name](x, y, backend=backend)
    assert "more than the" in str(info.value) and "1000000 x 1000000 x 1" in str(info.value)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", FUNCS)
def test_gradients_finite_with_duplicated_points(backend, name):
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 0.5], [1.0, 2.0, 0.5]], requires_grad=True)
    y = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5], [3.0, 0.0, 1.0]], requires_grad=True)
    f = FUNCS[name]
    gx, gy = torch.autograd.grad(f(x, y, backend=backend), (x, y))
    assert bool(torch.isfinite(gx).all() and torch.isfinite(gy).all())
    # identical clouds are a minimum: value 0 and gradient 0
    z = x.detach().clone().requires_grad_()
    value = f(z, x.detach(), backend=backend)
    (gz,) = torch.autograd.grad(value, z)
    assert value.item() == 0.0 and bool((gz == 0).all()), gz


@pytest.mark.parametrize("name", FUNCS)
def test_gradient_matches_finite_differences(name):
    gen = torch.Generator().manual_seed(9)
    x = cloud(gen, 2, 6, 3, dtype=torch.float64).requires_grad_()
    y = (cloud(gen, 2, 5, 3, dtype=torch.float64) + 0.4).requires_grad_()
    a, b = weights(gen, 2, 6, dtype=torch.float64), weights(gen, 2, 5, dtype=torch.float64)
    f = FUNCS[name]
    assert torch.autograd.gradcheck(
        lambda x, y: f(geom.measure(x, weights=a), geom.measure(y, weights=b), backend="dense"), (x, y)
    )


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", ["cuda-keops", "Dense", None, 3])
def test_bad_backend_names_the_argument_and_the_choices(bad):
    for f in FUNCS.values():
        with pytest.raises(ValueError, match=r"backend: expected one of 'auto', 'dense', 'keops'"):
            f(torch.rand(4, 3), torch.rand(5, 3), backend=bad)


def test_dimension_and_batch_mismatch():
    for f in FUNCS.values():
        with pytest.raises(ValueError, match=r"mu, nu: expected the same dimension, got 3 and 2"):
            f(torch.rand(4, 3), torch.rand(5, 2))
        with pytest.raises(ValueError, match=r"mu, nu: expected equal batch sizes, got 2 and 3"):
            f(torch.rand(2, 4, 3), torch.rand(3, 5, 3))
