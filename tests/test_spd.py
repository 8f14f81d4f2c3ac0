"""Measures of SPD matrices (plugins/spd.py): the law of the directions, congruence invariance, the
Busemann coordinates of the affine-invariant kind, gradients by finite differences, control variates
on the log-SW kind, the covariance helper and bad input. Oracles (scipy, POT, mpmath) live in
tests/external/test_spd_oracle.py."""

import math

import numpy as np
import pytest
import torch

import geom
from geom.directions import haar_orthogonal
from geom.registry import get_representation
from geom.testing import check_representation
from geom_plugins import spd

KINDS = {"spd": spd.LogEuclideanSPD, "spd-logsw": spd.LogSlicedSPD, "spd-affine": spd.AffineInvariantSPD}


@pytest.fixture
def kinds(restore_registry):
    """The three SPD kinds registered (through their entry point, or here at run time)."""
    for name, cls in KINDS.items():
        try:
            present = get_representation(name)
        except ValueError:
            present = None
        if present is None:
            geom.register_representation(name, cls)
        else:
            assert type(present) is cls, present
    return KINDS


def random_spd(N, n, seed, *, batch=None, spread=1.0):
    """``(N, n, n)`` (or ``(batch, N, n, n)``) float64 SPD matrices ``expm(spread * S)``, S Gaussian symmetric."""
    g = torch.Generator().manual_seed(seed)
    lead = (N,) if batch is None else (batch, N)
    G = torch.randn(*lead, n, n, generator=g, dtype=torch.float64)
    return torch.linalg.matrix_exp(spread * (G + G.transpose(-1, -2)) / 2)


def random_orthogonal(n, seed):
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return Q * torch.sign(R.diagonal())


def random_directions(L, n, seed):
    """``(L, n, n)`` symmetric matrices with unit Frobenius norm."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(L, n, n, generator=g, dtype=torch.float64)
    A = A + A.transpose(-1, -2)
    return A / A.flatten(1).norm(dim=1)[:, None, None]


def congruence(Q, X):
    return Q @ X @ Q.T


def rows_for(kind, A):
    """Directions of ``kind`` from ``(L, n, n)`` matrices: native for SPDSW / HSPDSW, log coordinates for log-SW."""
    return spd.sym_to_vec(A) if kind == "spd-logsw" else A


def sw(kind, X, Y, **kw):
    return geom.sliced_wasserstein(geom.measure(X, kind=kind), geom.measure(Y, kind=kind), **kw)


# ---------------------------------------------------------------- coordinates, logarithm, directions


def test_vec_is_an_isometry_of_sym_and_inverts():
    A, B = random_directions(5, 4, 0), random_directions(5, 4, 1)
    fro = (A * B).sum((1, 2))
    torch.testing.assert_close((spd.sym_to_vec(A) * spd.sym_to_vec(B)).sum(-1), fro, rtol=0, atol=1e-14)
    torch.testing.assert_close(spd.vec_to_sym(spd.sym_to_vec(A)), A, rtol=0, atol=1e-15)
    assert spd.sym_to_vec(A).shape == (5, 10)


def test_spd_log_inverts_the_exponential_and_has_the_identity_derivative_at_repeated_eigenvalues():
    X = random_spd(6, 4, 0)
    torch.testing.assert_close(torch.linalg.matrix_exp(spd.spd_log(X)), X, rtol=1e-10, atol=1e-12)
    # at X = c I every eigenvalue is repeated; D log(cI)[E] = E / c, so grad <G, log X> = G / c
    c = 2.5
    X = (c * torch.eye(3, dtype=torch.float64)).requires_grad_(True)
    G = random_directions(1, 3, 3)[0]
    (grad,) = torch.autograd.grad((spd.spd_log(X) * G).sum(), X)
    torch.testing.assert_close(grad, G / c, rtol=0, atol=1e-14)


def test_symmetric_directions_round_trip_through_their_gaussian_coordinates_including_repeated_eigenvalues():
    A = random_directions(7, 4, 5)
    A[0] = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)) / math.sqrt(2)
    space = geom.SymmetricDirections(4)
    z = space.coordinates(A)
    assert z.shape == (7, 4 + 16)
    torch.testing.assert_close(space.from_gaussian(z), A, rtol=0, atol=1e-12)
    with pytest.warns(DeprecationWarning, match="matrices_to_rows"):
        assert torch.equal(spd.matrices_to_rows(A), A)  # the matrices are the directions now
    rows = torch.cat([z[:, :4] / z[:, :4].norm(dim=1, keepdim=True), z[:, 4:]], 1) / math.sqrt(5)  # first release
    with pytest.warns(DeprecationWarning, match="rows_to_matrices"):
        torch.testing.assert_close(spd.rows_to_matrices(rows, 4), A, rtol=0, atol=1e-12)


def test_uniform_directions_have_uniform_eigenvalues_and_haar_eigenvectors():
    n, L = 3, 20000
    g = torch.Generator().manual_seed(0)
    z = torch.randn(L, n + n * n, generator=g, dtype=torch.float64)
    theta, P = z[:, :n] / z[:, :n].norm(dim=1, keepdim=True), haar_orthogonal(z[:, n:].reshape(L, n, n))
    torch.testing.assert_close(P.transpose(-1, -2) @ P, torch.eye(n, dtype=torch.float64).expand(L, n, n),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(geom.SymmetricDirections(n).from_gaussian(z), (P * theta[:, None, :]) @ P.transpose(1, 2))
    # uniform theta and Haar P: every entry has mean 0 and second moment 1/n. Without the sign fix the QR
    # Q factor has P[0, 0] <= 0 always (Householder), so the mean test fails.
    for sample in (theta, P.reshape(L, -1)):
        mean, se = sample.mean(0), sample.std(0) / math.sqrt(L)
        assert bool((mean.abs() < 4.5 * se).all()), mean
        second = (sample**2).mean(0)
        assert bool(((second - 1 / n).abs() < 4.5 * (sample**2).std(0) / math.sqrt(L)).all()), second


def test_spdsw_and_logsw_directions_have_different_laws():
    # tr A = <A, I>: E (tr A)^2 = E (sum theta)^2 = 1 for SPDSW, |vec I|^2 / D = 2 / (n + 1) for log-SW
    n, L = 4, 20000
    g = torch.Generator().manual_seed(1)
    X = random_spd(3, n, 0)
    spaces = {k: get_representation(k).direction_space(geom.measure(X, kind=k)) for k in ("spd", "spd-logsw")}
    assert isinstance(spaces["spd"], geom.SymmetricDirections) and isinstance(spaces["spd-logsw"], geom.UnitSphere)
    tr_spdsw = spaces["spd"].sample(L, g).diagonal(dim1=1, dim2=2).sum(-1)
    tr_logsw = spd.vec_to_sym(spaces["spd-logsw"].sample(L, g)).diagonal(dim1=1, dim2=2).sum(-1)
    for tr, expected in ((tr_spdsw, 1.0), (tr_logsw, 2 / (n + 1))):
        assert abs((tr**2).mean().item() - expected) < 4.5 * (tr**2).std().item() / math.sqrt(L)


# ---------------------------------------------------------------- contract and values


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_contract(kinds, kind):
    X = random_spd(12, 3, 0).requires_grad_(True)
    check_representation(kinds[kind], X)
    check_representation(kinds[kind], random_spd(9, 2, 1, batch=2).float())


@pytest.mark.parametrize("kind", ["spd", "spd-affine"])
def test_log_euclidean_value_on_commuting_matrices(kinds, kind):
    # diagonal X and diagonal A: both kinds project to <a, log diag X>; W_2 of the sorted projections
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(10, 3, generator=g, dtype=torch.float64), torch.randn(10, 3, generator=g, dtype=torch.float64)
    a = torch.tensor([[0.6, -0.8, 0.0], [0.0, 0.6, 0.8]], dtype=torch.float64)
    rows = torch.diag_embed(a)  # (L, 3, 3) directions
    res = sw(kind, torch.diag_embed(x.exp()), torch.diag_embed(y.exp()), directions=rows, return_result=True)
    expected = (((x @ a.T).sort(0).values - (y @ a.T).sort(0).values) ** 2).mean(0)  # (L,)
    torch.testing.assert_close(res.costs, expected, rtol=1e-10, atol=1e-12)


def test_affine_projection_is_invariant_under_upper_unitriangular_congruence_only():
    n = 4
    X = random_spd(8, n, 3)
    theta = torch.tensor([[0.7, 0.5, -0.1, -0.5]], dtype=torch.float64)
    theta = theta / theta.norm()
    P = torch.eye(n, dtype=torch.float64)[None]
    U = torch.eye(n, dtype=torch.float64) + torch.triu(torch.randn(n, n, generator=torch.Generator().manual_seed(4),
                                                                   dtype=torch.float64), 1)
    t = spd.busemann_projections(X[None], theta, P)
    torch.testing.assert_close(spd.busemann_projections(congruence(U, X)[None], theta, P), t, rtol=1e-10, atol=1e-10)
    # the lower unitriangular group is the horospherical group of the opposite end, not of this one
    assert (spd.busemann_projections(congruence(U.T, X)[None], theta, P) - t).abs().max() > 1e-2
    # along its own geodesic exp(s A) the projection is the arc length s
    s = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    on_geodesic = torch.diag_embed(s[:, None] * theta).matrix_exp()
    torch.testing.assert_close(spd.busemann_projections(on_geodesic[None], theta, P)[0, 0], s, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- congruence invariance


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_exact_congruence_invariance_with_transformed_directions(kinds, kind):
    n = 3
    X, Y, Q = random_spd(15, n, 5), random_spd(11, n, 6, spread=1.5), random_orthogonal(n, 7)
    A = random_directions(16, n, 8)
    wx = torch.rand(15, generator=torch.Generator().manual_seed(9), dtype=torch.float64) + 0.1
    mu, nu = geom.measure(X, kind=kind, weights=wx), geom.measure(Y, kind=kind)
    muq, nuq = geom.measure(congruence(Q, X), kind=kind, weights=wx), geom.measure(congruence(Q, Y), kind=kind)
    base = geom.sliced_wasserstein(mu, nu, directions=rows_for(kind, A), return_result=True).costs
    moved = geom.sliced_wasserstein(muq, nuq, directions=rows_for(kind, congruence(Q, A)), return_result=True).costs
    torch.testing.assert_close(moved, base, rtol=1e-9, atol=1e-11)
    # and the same directions without transforming them do give other slices
    other = geom.sliced_wasserstein(muq, nuq, directions=rows_for(kind, A), return_result=True).costs
    assert (other - base).abs().max() > 1e-3


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_congruence_invariance_in_distribution(kinds, kind):
    n, L = 3, 2000
    X, Y, Q = random_spd(20, n, 10), random_spd(20, n, 11, spread=1.5) * 2.0, random_orthogonal(n, 12)
    a = sw(kind, X, Y, n_projections=L, seed=0, return_result=True)
    b = sw(kind, congruence(Q, X), congruence(Q, Y), n_projections=L, seed=1, return_result=True)
    assert abs(a.value - b.value) < 4.5 * math.hypot(a.stderr, b.stderr), (a.value, b.value, a.stderr)
    # a congruence by a non-orthogonal matrix changes the distance well beyond the error bars
    G = torch.diag(torch.tensor([1.0, 6.0, 0.15], dtype=torch.float64))
    c = sw(kind, congruence(G @ Q, X), congruence(G @ Q, Y), n_projections=L, seed=1, return_result=True)
    assert abs(a.value - c.value) > 6 * math.hypot(a.stderr, c.stderr)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("p", [1, 2])
def test_gradient_matches_finite_differences(kinds, kind, p):
    n = 3
    X, Y = random_spd(7, n, 13), random_spd(5, n, 14, spread=1.3)
    w = torch.rand(7, generator=torch.Generator().manual_seed(15), dtype=torch.float64) + 0.2
    space = get_representation(kind).direction_space(geom.measure(X, kind=kind))
    rows = geom.registry.get_scheme("mc")().directions(6, space, generator=torch.Generator().manual_seed(16))

    def f(Z):
        return geom.sliced_wasserstein(geom.measure(Z, kind=kind, weights=w), geom.measure(Y, kind=kind),
                                       directions=rows, p=p)

    Xg = X.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(Xg), Xg)
    g = torch.Generator().manual_seed(17)
    for _ in range(3):
        E = torch.randn(7, n, n, generator=g, dtype=torch.float64)
        E = (E + E.transpose(-1, -2)) / 2
        h = 1e-6
        fd = (f(X + h * E) - f(X - h * E)).item() / (2 * h)
        assert abs(fd - (grad * E).sum().item()) < 1e-6 * (1 + abs(fd)), (fd, (grad * E).sum().item())


# ---------------------------------------------------------------- control variates


def test_control_variates_on_logsw_are_exact_on_log_domain_shifts(kinds):
    n, L = 3, 64
    X = random_spd(40, n, 18)
    S = 0.7 * random_directions(1, n, 19)[0] + 0.4 * torch.eye(n, dtype=torch.float64)
    Y = torch.linalg.matrix_exp(spd.spd_log(X) + S)  # log Y = log X + S: a shift in the log coordinates
    exact = spd.sym_to_vec(S).norm().item() / math.sqrt(n * (n + 1) // 2)  # SW_2 of a shift by s: |s| / sqrt(D)
    mc = torch.stack([sw("spd-logsw", X, Y, n_projections=L, seed=k) for k in range(20)])
    cv = torch.stack([sw("spd-logsw", X, Y, n_projections=L, seed=k, scheme="cv") for k in range(20)])
    assert abs(mc.mean().item() - exact) < 4.5 * mc.std().item() / math.sqrt(20)
    assert mc.var().item() > 1e-4
    torch.testing.assert_close(cv, torch.full_like(cv, exact), rtol=1e-9, atol=0)
    # the SPDSW kind is not linear: "cv" says so instead of returning a meaningless correction
    with pytest.raises(ValueError, match="control variates need linear projections.*'spd'"):
        sw("spd", X, Y, n_projections=L, seed=3, scheme="cv")


# ---------------------------------------------------------------- covariance helper


def test_covariances_shrinkage_keeps_spd_with_more_channels_than_times(kinds):
    x = torch.randn(4, 16, 10, generator=torch.Generator().manual_seed(20), dtype=torch.float64)
    for shrinkage in ("ledoit-wolf", 0.1):
        C = spd.covariances(x, shrinkage=shrinkage)
        assert C.shape == (4, 16, 16)
        assert torch.linalg.eigvalsh(C)[:, 0].min() > 0
        geom.measure(C, kind="spd-logsw")  # accepted as SPD
    with pytest.raises(ValueError, match=r"covariance of x\[0\] is not positive definite"):
        spd.covariances(x, shrinkage=None)


def test_covariances_fixed_shrinkage_against_numpy():
    x = torch.randn(3, 5, 50, generator=torch.Generator().manual_seed(21), dtype=torch.float64)
    s = 0.3
    C = spd.covariances(x, shrinkage=s).numpy()
    for k in range(3):
        S = np.cov(x[k].numpy(), bias=True)
        expected = (1 - s) * S + s * np.trace(S) / 5 * np.eye(5)
        np.testing.assert_allclose(C[k], expected, rtol=1e-12, atol=1e-14)


def test_ledoit_wolf_coefficient_against_the_per_sample_formula():
    # Ledoit & Wolf (2004), Frobenius norms: b^2 = T^-2 sum_t ||x_t x_t^T - S||^2, d^2 = ||S - m I||^2
    g = torch.Generator().manual_seed(22)
    scale = torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0, 3.0], dtype=torch.float64)[:, None]
    x = torch.cat([torch.randn(2, 6, 40, generator=g, dtype=torch.float64),
                   scale * torch.randn(2, 6, 400, generator=g, dtype=torch.float64)[..., :40]])
    C, s = spd.covariances(x, return_shrinkage=True)
    for k in range(4):
        xc = x[k].numpy() - x[k].numpy().mean(1, keepdims=True)
        T = xc.shape[1]
        S = xc @ xc.T / T
        m = np.trace(S) / 6
        d2 = np.sum((S - m * np.eye(6)) ** 2)
        b2 = sum(np.sum((np.outer(xc[:, t], xc[:, t]) - S) ** 2) for t in range(T)) / T**2
        expected = min(b2, d2) / d2
        assert abs(s[k].item() - expected) < 1e-12
        np.testing.assert_allclose(C[k].numpy(), (1 - expected) * S + expected * m * np.eye(6), rtol=1e-12)
    # isotropic data: the target is right, strong shrinkage; very anisotropic data, long series: little
    iso = torch.randn(1, 5, 200, generator=g, dtype=torch.float64)
    aniso = torch.logspace(0, 2, 5, dtype=torch.float64)[:, None] * torch.randn(1, 5, 4000, generator=g,
                                                                               dtype=torch.float64)
    assert spd.covariances(iso, return_shrinkage=True)[1].item() > 0.5
    assert spd.covariances(aniso, return_shrinkage=True)[1].item() < 0.05


def test_covariances_gradient_flows_to_the_signals():
    x = torch.randn(2, 4, 30, generator=torch.Generator().manual_seed(23), dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(spd.covariances(x, shrinkage=0.2).diagonal(dim1=1, dim2=2).sum(), x)
    # d/dx tr C = d/dx tr S = 2 x_c / T
    torch.testing.assert_close(g, 2 * (x - x.mean(-1, keepdim=True)).detach() / 30, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- bad input


def test_bad_matrices_name_the_offending_index(kinds):
    X = random_spd(8, 3, 24)
    bad = X.clone()
    bad[3, 0, 1] += 0.5
    with pytest.raises(ValueError, match=r"X\[3\] is not symmetric \(max \|X - X\^T\| = 0\.5"):
        geom.measure(bad, kind="spd")
    bad = X.clone()
    bad[5] = torch.diag(torch.tensor([1.0, -0.2, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"X\[5\] has eigenvalue -0\.2\b"):
        geom.measure(bad, kind="spd-affine")
    batched = random_spd(4, 3, 25, batch=2)
    batched[1, 2, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"X\[1, 2\] has non-finite entries"):
        geom.measure(batched, kind="spd-logsw")
    for shape in ((8, 3, 4), (3, 3), (2, 2, 8, 3, 3)):
        with pytest.raises(ValueError, match=r"obj: expected SPD matrices of shape \(N, n, n\)"):
            geom.measure(torch.ones(shape), kind="spd")
    with pytest.raises(TypeError, match="unknown options for kind 'spd'"):
        geom.measure(X, kind="spd", tol=1.0)
    with pytest.raises(ValueError, match=r"atol"):
        geom.measure(X, kind="spd", atol=-1.0)
    slightly = X.clone()
    slightly[0, 0, 1] += 1e-3
    geom.measure(slightly, kind="spd", atol=1e-2)  # a looser tolerance accepts it


def test_bad_directions_and_covariance_input(kinds):
    X = random_spd(8, 3, 26)
    with pytest.raises(ValueError, match=r"directions: expected shape \(L, 3, 3\)"):
        sw("spd", X, X, directions=torch.ones(2, 6) / math.sqrt(6))
    with pytest.raises(ValueError, match=r"directions: expected unit Frobenius norms, got directions\[1\]"):
        sw("spd", X, X, directions=torch.stack([torch.eye(3) / math.sqrt(3), torch.eye(3)]))
    with pytest.raises(ValueError, match="directions: expected symmetric matrices"):
        sw("spd-affine", X, X, directions=torch.tensor([[[0.0, 1.0, 0], [0.0, 0.0, 0], [0, 0, 0]]]))
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"A: expected unit Frobenius norms, got A\[1\]"):
        spd.matrices_to_rows(torch.stack([torch.eye(2) / math.sqrt(2), torch.eye(2)]))
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="A: expected symmetric matrices"):
        spd.matrices_to_rows(torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]))
    with pytest.raises(ValueError, match=r"x: expected time series of shape \(N, channels, times\)"):
        spd.covariances(torch.ones(4, 10))
    with pytest.raises(ValueError, match=r"nan or inf in x\[1\]"):
        spd.covariances(torch.tensor([[[1.0, 2.0]], [[float("nan"), 1.0]]]))
    with pytest.raises(ValueError, match=r"shrinkage: expected a real number in \[0, 1\], got 1.5"):
        spd.covariances(torch.randn(2, 3, 10), shrinkage=1.5)
    with pytest.raises(ValueError, match="shrinkage: expected 'ledoit-wolf'"):
        spd.covariances(torch.randn(2, 3, 10), shrinkage="oas")


def nearly_singular(n, smallest, seed, dtype=torch.float64):
    """``Q diag(1, ..., 1, smallest) Q^T`` for a random rotation ``Q``, rounded to ``dtype``."""
    Q = random_orthogonal(n, seed)
    ev = torch.ones(n, dtype=torch.float64)
    ev[-1] = smallest
    return ((Q * ev) @ Q.T).to(dtype)


@pytest.mark.parametrize("dtype, smallest", [(torch.float64, 1e-17), (torch.float32, 1e-9)])
@pytest.mark.parametrize("kind", KINDS)
def test_nearly_singular_matrix_is_refused_naming_batch_item_and_matrix(kinds, kind, dtype, smallest):
    # this rotation makes the computed smallest eigenvalue positive (with LAPACK here), 6 to 60 times
    # the true one: its size is rounding noise, and so would be every logarithm or Cholesky factor
    X, Y = random_spd(4, 3, 30, batch=2).to(dtype), random_spd(5, 3, 31, batch=2).to(dtype)
    X[1, 2] = nearly_singular(3, smallest, 4, dtype)
    with pytest.raises(ValueError, match=r"obj: X\[1, 2\] has eigenvalue .*largest .*3 \* eps \* the largest"):
        sw(kind, X, Y, n_projections=50, seed=0)
    X[1, 2] = nearly_singular(3, 1e-12 if dtype == torch.float64 else 1e-5, 0, dtype)  # ill-conditioned, not singular
    assert torch.isfinite(sw(kind, X, Y, n_projections=50, seed=0)).all()


def test_affine_projection_of_an_unchecked_singular_matrix_names_it(kinds):
    X = random_spd(3, 3, 32)[None]  # (1, 3, 3, 3)
    X[0, 1] = nearly_singular(3, 0.0, 1)
    mu = geom.Measure(X, torch.full((1, 3), 1 / 3, dtype=X.dtype), kind="spd-affine", batched=False, uniform=True)
    nu = geom.measure(random_spd(3, 3, 33), kind="spd-affine")
    with pytest.raises(ValueError, match=r"X\[0, 1\] \(batch item 0, matrix 1\) is too ill-conditioned.*direction"):
        geom.sliced_wasserstein(mu, nu, n_projections=20, seed=0)


def test_linear_algebra_failures_become_errors_naming_the_matrix(kinds, monkeypatch):
    X = random_spd(3, 3, 34)
    X[1] = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"X: X\[1\] has eigenvalues from -1 to 2"):
        spd.spd_log(X)  # never a NaN logarithm
    huge = torch.full((2, 2), 8.5e307, dtype=torch.float64) + torch.eye(2, dtype=torch.float64) * 8.5e307
    with pytest.raises(ValueError, match=r"X: X\[0\] has eigenvalues from .* to (inf|nan)"):
        spd.spd_log(huge[None])
    with pytest.raises(ValueError, match=r"obj: X\[0\] has eigenvalues beyond the range of torch.float64"):
        geom.measure(huge[None], kind="spd")
    A = random_directions(3, 2, 35)
    A[1, 0, 0] = float("nan")
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"A: expected finite entries, got nan or inf in A\[1\]"):
        spd.matrices_to_rows(A)
    with pytest.raises(ValueError, match=r"directions: expected unit Frobenius norms, got directions\[0\] with norm 0"):
        sw("spd", X[[0, 2]], X[[0, 2]] * 2, directions=torch.zeros(1, 3, 3, dtype=torch.float64))
    x = torch.randn(3, 4, 20, generator=torch.Generator().manual_seed(36))
    x[1] *= 1e20  # float32: x x^T overflows
    with pytest.raises(ValueError, match=r"x: the covariance of x\[1\] overflows torch.float32"):
        spd.covariances(x)

    def no_convergence(A):  # LAPACK giving up on the sixth matrix of the stack
        raise torch.linalg.LinAlgError("linalg.eigh: (Batch element 5): The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigvalsh", no_convergence)
    with pytest.raises(ValueError, match=r"obj: X\[1, 1\] cannot be factorised \(linalg.eigh: \(Batch element 5\)"):
        geom.measure(random_spd(4, 3, 37, batch=2), kind="spd")
