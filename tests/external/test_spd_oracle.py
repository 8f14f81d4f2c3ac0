"""SPD measures against independent computations: scipy's ``logm`` and POT's 1-D transport per slice
(SPDSW, log-SW), POT's sliced Wasserstein on the vectorised logarithms, and the Busemann function of
the affine-invariant metric from the spectrum of ``X^-1/2 exp(s A) X^-1/2`` at large s, with mpmath."""

import math

import mpmath
import numpy as np
import ot
import pytest
import scipy.linalg
import torch

import geom
from geom.registry import get_representation
from geom_plugins import spd

KINDS = {"spd": spd.LogEuclideanSPD, "spd-logsw": spd.LogSlicedSPD, "spd-affine": spd.AffineInvariantSPD}


@pytest.fixture
def kinds(restore_registry):
    for name, cls in KINDS.items():
        try:
            get_representation(name)
        except ValueError:
            geom.register_representation(name, cls)


def spd_matrices(N, n, rng, spread=1.0):
    G = rng.standard_normal((N, n, n))
    return np.stack([scipy.linalg.expm(spread * (g + g.T) / 2) for g in G])


def unit_symmetric(L, n, rng):
    A = rng.standard_normal((L, n, n))
    A = A + A.transpose(0, 2, 1)
    return A / np.linalg.norm(A, axis=(1, 2))[:, None, None]


def oracle_costs(proj_x, proj_y, a, b, p):
    """W_p^p per slice from POT's 1-D solver; proj_* are (L, N) projections."""
    metric = "sqeuclidean" if p == 2 else "minkowski"
    return np.array([ot.emd2_1d(u, v, a, b, metric=metric, p=p) for u, v in zip(proj_x, proj_y)])


def test_spd_log_equals_scipy_logm():
    X = spd_matrices(5, 4, np.random.default_rng(0), spread=1.5)
    ours = spd.spd_log(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(ours, np.stack([scipy.linalg.logm(x).real for x in X]), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("p", [1, 2])
def test_spdsw_equals_logm_and_pot_per_slice(kinds, p):
    rng = np.random.default_rng(1)
    n, L = 3, 12
    X, Y = spd_matrices(14, n, rng), spd_matrices(9, n, rng, spread=1.4)
    a, b = rng.uniform(0.2, 1.0, 14), rng.uniform(0.2, 1.0, 9)
    a, b = a / a.sum(), b / b.sum()
    A = unit_symmetric(L, n, rng)
    rows = torch.from_numpy(A)
    res = geom.sliced_wasserstein(geom.measure(X, kind="spd", weights=a), geom.measure(Y, kind="spd", weights=b),
                                  directions=rows, p=p, return_result=True)
    logx, logy = [np.stack([scipy.linalg.logm(m).real for m in Z]) for Z in (X, Y)]
    tx = np.einsum("lij,nij->ln", A, logx)  # <A, log X>_F, (L, N)
    ty = np.einsum("lij,nij->ln", A, logy)
    costs = oracle_costs(tx, ty, a, b, p)
    np.testing.assert_allclose(res.costs.numpy(), costs, rtol=1e-8, atol=1e-10)
    assert abs(res.value.item() - costs.mean() ** (1 / p)) < 1e-8


def test_logsw_equals_pot_sliced_wasserstein_on_vectorised_logs(kinds):
    rng = np.random.default_rng(2)
    n, L = 4, 20
    X, Y = spd_matrices(11, n, rng), spd_matrices(16, n, rng, spread=0.7)
    b = rng.uniform(0.1, 1.0, 16)
    b = b / b.sum()
    A = unit_symmetric(L, n, rng)
    iu = np.triu_indices(n, 1)

    def vec(S):  # orthonormal coordinates of Sym(n), written independently of the plugin
        return np.concatenate([np.diagonal(S, axis1=-2, axis2=-1), np.sqrt(2) * S[..., iu[0], iu[1]]], -1)

    theta = vec(A)  # (L, D) unit rows
    value = geom.sliced_wasserstein(geom.measure(X, kind="spd-logsw"), geom.measure(Y, kind="spd-logsw", weights=b),
                                    directions=torch.from_numpy(theta))
    logx, logy = [vec(np.stack([scipy.linalg.logm(m).real for m in Z])) for Z in (X, Y)]
    expected = ot.sliced_wasserstein_distance(logx, logy, np.full(11, 1 / 11), b, projections=theta.T, p=2)
    assert abs(value.item() - expected) < 1e-9


def busemann_mpmath(X, A, s=80):
    """-B^A(X), minus the limit of ``d_AI(X, exp(s A)) - s``, from the eigenvalues alone at high precision.

    The log-eigenvalues of ``X^-1/2 exp(s A) X^-1/2``, sorted, are ``mu_i = s a_i + c_i + O(exp(-s gap))``
    (``a`` the sorted eigenvalues of ``A``), so ``d = |mu| = s + <a, c> + O(1/s)`` (``|a| = 1``) and
    ``B^A(X) = <a, c>``, with ``c = mu - s a`` read off at a large ``s`` (exponentially accurate;
    ``d - s`` itself converges only as 1/s)."""
    with mpmath.workdps(int(s) + 40):
        w, V = np.linalg.eigh(A)  # ascending
        Vm = mpmath.matrix(V.tolist())
        E = Vm * mpmath.diag([mpmath.exp(s * mpmath.mpf(float(x))) for x in w]) * Vm.T  # exp(s A)
        C = mpmath.cholesky(mpmath.matrix(X.tolist()))
        Ci = C**-1
        lam, _ = mpmath.eigsy(Ci * E * Ci.T)  # the spectrum of X^-1/2 exp(sA) X^-1/2 (a congruent matrix)
        mu = sorted(mpmath.log(x) for x in lam)
        return -float(sum(mpmath.mpf(float(a)) * (m - s * mpmath.mpf(float(a))) for a, m in zip(w, mu)))


def test_affine_projections_equal_the_busemann_limit(kinds):
    rng = np.random.default_rng(3)
    n = 3
    X = spd_matrices(4, n, rng, spread=1.2)
    # directions with well separated eigenvalues, so that s = 80 is far into the limit
    theta = np.array([[0.75, 0.1, -0.65], [-0.2, 0.8, -0.6]])
    theta = theta / np.linalg.norm(theta, axis=1, keepdims=True)
    Q = np.linalg.qr(rng.standard_normal((2, n, n)))[0]
    A = np.einsum("lij,lj,lkj->lik", Q, theta, Q)
    rows = torch.from_numpy(A)
    ours = get_representation("spd-affine").project(torch.from_numpy(X)[None], rows)[0].numpy()  # (L, N)
    oracle = np.array([[busemann_mpmath(x, a) for x in X] for a in A])
    np.testing.assert_allclose(ours, oracle, rtol=0, atol=1e-10)


def test_hspdsw_equals_busemann_oracle_and_pot(kinds):
    rng = np.random.default_rng(4)
    n, L = 2, 3
    X, Y = spd_matrices(6, n, rng), spd_matrices(5, n, rng, spread=1.5)
    A = unit_symmetric(L, n, rng)
    res = geom.sliced_wasserstein(geom.measure(X, kind="spd-affine"), geom.measure(Y, kind="spd-affine"),
                                  directions=torch.from_numpy(A), return_result=True)
    tx = np.array([[busemann_mpmath(x, a, s=120) for x in X] for a in A])
    ty = np.array([[busemann_mpmath(y, a, s=120) for y in Y] for a in A])
    costs = oracle_costs(tx, ty, np.full(6, 1 / 6), np.full(5, 1 / 5), 2)
    np.testing.assert_allclose(res.costs.numpy(), costs, rtol=1e-8, atol=1e-10)
    assert math.isclose(res.value.item(), math.sqrt(costs.mean()), rel_tol=1e-8)
