"""Intrinsic sliced Wasserstein on graphs and meshes (plugins/graph.py): closed-form spectra, POT as an
independent oracle, metric axioms, the Hilbert embedding, and the level and power of the collection tests."""

import math

import numpy as np
import ot
import pytest
import torch

import geom
from geom.testing import check_representation
from geom_datasets import shapes
from geom_plugins import graph as g


def path_adjacency(n):
    a = np.diag(np.ones(n - 1), 1)
    return a + a.T


def cycle_adjacency(n):
    a = path_adjacency(n)
    a[0, -1] = a[-1, 0] = 1.0
    return a


def random_graph(n, seed):
    """A connected weighted graph: a random spanning path plus random extra edges."""
    rng = np.random.default_rng(seed)
    a = np.zeros((n, n))
    order = rng.permutation(n)
    a[order[:-1], order[1:]] = rng.uniform(0.5, 2.0, n - 1)
    extra = rng.random((n, n)) < 0.3
    a[extra] = rng.uniform(0.1, 1.0, extra.sum())
    a = np.triu(a, 1)
    return a + a.T


def path_closed_form(n, K):
    """Eigenpairs of the path graph's Laplacian: 4 sin^2(pi k / 2n), sqrt(2/n) cos(pi k (j + 1/2) / n)."""
    k = np.arange(1, K + 1)
    j = np.arange(n)[:, None]
    return 4 * np.sin(np.pi * k / (2 * n)) ** 2, np.sqrt(2 / n) * np.cos(np.pi * k * (j + 0.5) / n)


# ---------------------------------------------------------------- spectra


def test_path_graph_eigenpairs_are_the_closed_form_cosines():
    n, K = 30, 10
    G = g.GraphDomain(path_adjacency(n), n_eigenpairs=K)
    lam, phi = path_closed_form(n, K)
    np.testing.assert_allclose(G.eigenvalues, lam, rtol=1e-10)
    # eigenvalues are simple: each eigenvector is the cosine up to its sign
    np.testing.assert_allclose(np.abs(np.sum(G.eigenfunctions * phi, 0)), 1.0, atol=1e-10)
    signs = np.sign(np.sum(G.eigenfunctions * phi, 0))
    np.testing.assert_allclose(G.eigenfunctions, phi * signs, atol=1e-10)
    assert G.eigenfunctions is G.eigenfunctions  # computed once, cached


def test_cycle_graph_eigenpairs_pair_up_in_cosine_sine_planes():
    n, m = 24, 5
    G = g.GraphDomain(cycle_adjacency(n), n_eigenpairs=2 * m)
    expected = np.repeat(4 * np.sin(np.pi * np.arange(1, m + 1) / n) ** 2, 2)  # double eigenvalues
    np.testing.assert_allclose(G.eigenvalues, expected, rtol=1e-10)
    j = np.arange(n)
    for q in range(1, m + 1):
        plane = np.stack([np.cos(2 * np.pi * q * j / n), np.sin(2 * np.pi * q * j / n)], 1) / np.sqrt(n / 2)
        pair = G.eigenfunctions[:, 2 * q - 2:2 * q]  # (n, 2), orthonormal basis of the same plane
        np.testing.assert_allclose(plane @ (plane.T @ pair), pair, atol=1e-10)
        np.testing.assert_allclose(pair.T @ pair, np.eye(2), atol=1e-10)


def test_disconnected_graph_has_one_spectrum_per_component():
    a = np.zeros((9, 9))
    a[:5, :5] = path_adjacency(5)
    a[5:, 5:] = path_adjacency(4)
    G = g.GraphDomain(a, n_eigenpairs=None)
    assert G.n_components == 2 and G.n_eigenpairs == 7
    union = np.sort(np.concatenate([path_closed_form(5, 4)[0], path_closed_form(4, 3)[0]]))
    np.testing.assert_allclose(G.eigenvalues, union, rtol=1e-10)
    phi = G.eigenfunctions
    on_first = np.abs(phi[5:]).max(0) < 1e-10
    on_second = np.abs(phi[:5]).max(0) < 1e-10
    assert bool((on_first ^ on_second).all()) and on_first.sum() == 4  # each lives on one component
    # mass moved between components is seen (the push-forwards differ in shape)
    d = g.intrinsic_sliced_wasserstein(np.eye(9)[0], np.eye(9)[6], G)
    assert d.item() > 0.1


def test_cotangent_laplacian_of_the_sphere_has_the_spherical_harmonic_spectrum():
    """-Delta on the sphere of radius R has eigenvalues l(l+1)/R^2 with multiplicity 2l+1. The cotangent
    discretisation converges as O(h^2): measured relative errors for l <= 3 are 5.6% (subdivisions=2) and
    1.4% (subdivisions=3), a factor 4 per halving of the edge length. Tolerance 3% at subdivisions=3, and
    the error must fall by more than 3x from 2 to 3 subdivisions."""
    R = 2.0
    bands = np.repeat([1, 2, 3], [3, 5, 7])
    exact = bands * (bands + 1) / R**2
    errors = []
    for sub in (2, 3):
        G = g.MeshDomain(*shapes.sphere(radius=R, subdivisions=sub), n_eigenpairs=15)
        errors.append(np.abs(G.eigenvalues / exact - 1).max())
    assert errors[1] < 0.03, errors
    assert errors[0] / errors[1] > 3.0, errors
    phi = G.eigenfunctions  # M-orthonormal: phi^T M phi = I
    np.testing.assert_allclose(phi.T @ (G.mass[:, None] * phi), np.eye(15), atol=1e-10)
    np.testing.assert_allclose(G.mass.sum(), 4 * np.pi * R**2, rtol=0.02)  # lumped mass = mesh area


def test_sparse_and_dense_solvers_agree():
    v, f = shapes.sphere(subdivisions=2)
    dense = g.MeshDomain(v, f, n_eigenpairs=8, solver="dense")
    sparse = g.MeshDomain(v, f, n_eigenpairs=8, solver="eigsh", seed=3)
    np.testing.assert_allclose(sparse.eigenvalues, dense.eigenvalues, rtol=1e-9)
    G1 = g.GraphDomain(path_adjacency(40), n_eigenpairs=6, solver="eigsh")
    G2 = g.GraphDomain(path_adjacency(40), n_eigenpairs=6, solver="dense")
    np.testing.assert_allclose(G1.eigenfunctions, G2.eigenfunctions, atol=1e-8)  # simple spectrum, signs fixed


# ---------------------------------------------------------------- the distance


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("weighting", ["biharmonic", "heat", "power"])
def test_isw_equals_pot_per_closed_form_eigenfunction(p, weighting):
    n, K = 25, 8
    G = g.GraphDomain(path_adjacency(n), n_eigenpairs=K, weighting=weighting, t=0.7, s=0.5)
    lam, phi = path_closed_form(n, K)
    alpha = {"biharmonic": lam**-2.0, "heat": np.exp(-0.7 * lam), "power": lam**-0.5}[weighting]
    rng = np.random.default_rng(p)
    a, b = rng.random(n) ** 3, rng.random(n) ** 3
    terms = [alpha[k] * ot.wasserstein_1d(phi[:, k], phi[:, k], a / a.sum(), b / b.sum(), p=p) for k in range(K)]
    value, costs = g.intrinsic_sliced_wasserstein(a, b, G, p=p, return_costs=True)
    np.testing.assert_allclose(costs.numpy(), terms, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(value.item(), sum(terms) ** (1 / p), rtol=1e-8)
    normalized = g.intrinsic_sliced_wasserstein(a, b, G, p=p, normalize=True)
    np.testing.assert_allclose(normalized.item(), (sum(terms) / alpha.sum()) ** (1 / p), rtol=1e-8)
    # node samples: the empirical measures of sampled nodes, against POT on the sampled values
    x, y = rng.integers(0, n, 17), rng.integers(0, n, 11)
    mu = geom.measure(G, kind="graph", nodes=x, dtype=torch.float64)
    nu = geom.measure(G, kind="graph", nodes=y, dtype=torch.float64)
    ref = sum(alpha[k] * ot.wasserstein_1d(phi[x, k], phi[y, k], p=p) for k in range(K))
    np.testing.assert_allclose(g.intrinsic_sliced_wasserstein(mu, nu, G, p=p).item(), ref ** (1 / p), rtol=1e-8)


@pytest.mark.parametrize("p", [1, 2])
def test_isw_is_a_metric_on_small_graphs(p):
    rng = np.random.default_rng(10 + p)
    for seed in range(3):
        n = 7 + seed
        G = g.GraphDomain(random_graph(n, seed), n_eigenpairs=None)  # the full spectrum
        # sparse and dense node distributions, and Diracs
        w = np.concatenate([rng.dirichlet(np.ones(n), 6), rng.dirichlet(0.2 * np.ones(n), 6), np.eye(n)[:3]])
        W = torch.as_tensor(w)
        C = len(w)
        D = torch.stack([g.intrinsic_sliced_wasserstein(W[i], W, G, p=p) for i in range(C)])  # (C, C)
        assert torch.allclose(D, D.T, rtol=1e-12, atol=1e-14)  # symmetry
        assert D.diagonal().abs().max() < 1e-12  # d(mu, mu) = 0
        off = D[~torch.eye(C, dtype=torch.bool)]
        assert off.min() > 1e-6  # distinct distributions are apart
        violation = (D[:, :, None] - D[:, None, :] - D.T[None, :, :]).max()  # d(i,k) - d(i,j) - d(j,k)
        assert violation < 1e-12 * D.max(), violation


def test_isw_is_differentiable_in_the_node_weights():
    n = 10
    G = g.GraphDomain(random_graph(n, 4), n_eigenpairs=6)
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.random(n) + 0.1, requires_grad=True)
    b = torch.tensor(rng.random(n) + 0.1)
    (grad,) = torch.autograd.grad(g.intrinsic_sliced_wasserstein(a, b, G), a)
    h = 1e-6
    for i in range(3):
        e = torch.zeros(n, dtype=torch.float64)
        e[i] = h
        isw = g.intrinsic_sliced_wasserstein
        fd = (isw(a.detach() + e, b, G) - isw(a.detach() - e, b, G)) / (2 * h)
        np.testing.assert_allclose(grad[i].item(), fd.item(), rtol=1e-4, atol=1e-8)


def test_axis_directions_of_the_core_give_isw_over_sqrt_k():
    """The representation's support is the scaled embedding: the core's SW along the K axes is the mean
    of the ISW terms, SW_2 = ISW_2 / sqrt(K); uniform random directions give a different number."""
    v, f = shapes.sphere(subdivisions=2)
    G = g.MeshDomain(v, f, n_eigenpairs=9, weighting="heat", t=0.05)
    rng = np.random.default_rng(1)
    a = torch.as_tensor(rng.random((3, len(v))))  # a batch of 3 against one measure
    b = torch.as_tensor(rng.random(len(v)))
    mu, nu = geom.measure(G, kind="graph", weights=a), geom.measure(G, kind="graph", weights=b)
    assert mu.support.dtype == torch.float64 and mu.support.shape == (3, len(v), 9)
    isw = g.intrinsic_sliced_wasserstein(mu, nu, G)
    sw_axes = geom.sliced_wasserstein(mu, nu, directions=torch.eye(9, dtype=torch.float64))
    torch.testing.assert_close(sw_axes * 3.0, isw, rtol=1e-10, atol=0)
    sw_random = geom.sliced_wasserstein(mu, nu, n_projections=64, seed=0)
    assert not torch.allclose(sw_random * 3.0, isw, rtol=1e-3)


def test_check_representation():
    G = g.GraphDomain(random_graph(12, 1), n_eigenpairs=5)
    check_representation(g.GraphMeasures, G, weights=np.random.default_rng(0).random(12))
    check_representation(g.GraphMeasures, G, nodes=[[0, 3, 3, 7], [1, 1, 2, 11]])
    mesh = g.MeshDomain(*shapes.sphere(subdivisions=1), n_eigenpairs=4)
    check_representation(g.GraphMeasures, mesh)


# ---------------------------------------------------------------- Hilbert embedding and collection tests


def test_hilbert_embedding_distance_approaches_isw_squared():
    G = g.GraphDomain(random_graph(12, 2), n_eigenpairs=None)
    w = torch.as_tensor(np.random.default_rng(5).dirichlet(np.ones(12), 4))
    d2 = torch.stack([g.intrinsic_sliced_wasserstein(w[0], w[i], G) ** 2 for i in range(1, 4)])
    errors = []
    for J in (50, 5000):
        e = g.hilbert_embedding(w, G, n_quantiles=J)  # (4, K * J)
        assert e.shape == (4, 11 * J)
        errors.append(((e[1:] - e[0]).pow(2).sum(1) / d2 - 1).abs().max().item())
    assert errors[1] < 5e-3 and errors[1] < errors[0] / 10, errors  # Riemann sum error O(1 / J)


def test_hilbert_embedding_reads_quantiles_on_the_grid_j_over_j_plus_1():
    """Weights 0.3 / 0.7 on nodes 2 and 5: F^-1(1/4) is node 2's value, F^-1(2/4) and F^-1(3/4) node 5's."""
    G = g.GraphDomain(path_adjacency(8), n_eigenpairs=4)
    w = np.zeros((1, 8))
    w[0, 2], w[0, 5] = 0.3, 0.7
    e = g.hilbert_embedding(w, G, n_quantiles=3).reshape(4, 3)  # (K, J)
    emb = G.embedding  # (n, K) sqrt(alpha_k) phi_k
    for k in range(4):
        lo, hi = sorted([emb[2, k], emb[5, k]])
        first = emb[2, k] if emb[2, k] < emb[5, k] else emb[5, k]  # the smaller value holds its node's mass
        mass_low = 0.3 if first == emb[2, k] else 0.7
        expected = [lo if level <= mass_low else hi for level in (0.25, 0.5, 0.75)]
        np.testing.assert_allclose(e[k].numpy() * math.sqrt(3), expected, rtol=1e-12)


def collection(rng, C, center, n=50):
    """C distributions on a path of n nodes: 60 draws around a random center ~ N(center, 3^2), sd 5."""
    x = np.arange(n)
    out = []
    for _ in range(C):
        prob = np.exp(-0.5 * ((x - rng.normal(center, 3)) / 5) ** 2)
        out.append(rng.multinomial(60, prob / prob.sum()))
    return np.array(out, dtype=float)


@pytest.mark.parametrize("method", ["permutation", "combined"])
def test_collection_test_holds_its_level_and_has_power(method):
    """40 seeded repetitions each: same meta-distribution -> rejection rate at 0.05 below 0.15 (measured
    0.05 permutation, 0.025 combined); centers shifted by 4 nodes -> rejects in at least 80% (measured
    1.0 and 0.95)."""
    G = g.GraphDomain(path_adjacency(50), n_eigenpairs=20)
    rates = {}
    for shift in (0, 4):
        pvalues = []
        for r in range(40):
            rng = np.random.default_rng(1000 * shift + r)
            X, Y = collection(rng, 20, 20), collection(rng, 20, 20 + shift)
            pvalues.append(g.collection_test(X, Y, G, method=method, n_permutations=200, seed=r).pvalue)
        pvalues = np.array(pvalues)
        assert ((pvalues > 0) & (pvalues <= 1)).all()
        rates[shift] = (pvalues <= 0.05).mean()
    assert rates[0] < 0.15 and rates[4] >= 0.8, rates


def test_permutation_test_is_seeded_and_exact_in_its_resolution():
    G = g.GraphDomain(path_adjacency(30), n_eigenpairs=8)
    rng = np.random.default_rng(0)
    X, Y = collection(rng, 6, 12, n=30), collection(rng, 5, 12, n=30)
    r1 = g.collection_test(X, Y, G, n_permutations=300, seed=7)
    r2 = g.collection_test(X, Y, G, n_permutations=300, generator=torch.Generator().manual_seed(7))
    assert r1.pvalue == r2.pvalue and r1.n_permutations == 300
    assert round(r1.pvalue * 301) == pytest.approx(r1.pvalue * 301)  # (1 + count) / (1 + P)
    ex, ey = g.hilbert_embedding(X, G), g.hilbert_embedding(Y, G)
    assert r1.statistic == pytest.approx((ex.mean(0) - ey.mean(0)).pow(2).sum().item())
    # a collection against itself relabelled: the observed split is typical, never significant
    same = g.collection_test(np.concatenate([X, Y])[::2], np.concatenate([X, Y])[1::2], G, seed=1)
    assert same.pvalue > 0.05


def test_harmonic_mean_combination_is_calibrated_for_independent_uniform_pvalues():
    rng = np.random.default_rng(0)
    p = np.array([g._combine(rng.random(30), "hmp")[1] for _ in range(4000)])
    se = math.sqrt(0.05 * 0.95 / len(p))
    assert abs((p <= 0.05).mean() - 0.05) < 4 * se
    assert g._combine(np.array([0.3]), "cauchy")[1] == pytest.approx(0.3)  # one p-value comes back


# ---------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    a = path_adjacency(5)
    asym = a.copy()
    asym[0, 1] = 2.0
    with pytest.raises(ValueError, match="adjacency.*symmetric"):
        g.GraphDomain(asym)
    neg = a.copy()
    neg[0, 1] = neg[1, 0] = -1.0
    with pytest.raises(ValueError, match="adjacency.*non-negative"):
        g.GraphDomain(neg)
    with pytest.raises(ValueError, match="adjacency.*square"):
        g.GraphDomain(np.ones((3, 4)))
    with pytest.raises(ValueError, match="n_eigenpairs.*at most"):
        g.GraphDomain(a, n_eigenpairs=5)
    with pytest.raises(ValueError, match="weighting"):
        g.GraphDomain(a, weighting="gauss")
    with pytest.raises(ValueError, match="t: "):
        g.GraphDomain(a, weighting="heat", t=-1.0)
    G = g.GraphDomain(a, n_eigenpairs=3)
    with pytest.raises(ValueError, match="weights: expected shape \\(5,\\)"):
        geom.measure(G, kind="graph", weights=np.ones(4))
    with pytest.raises(ValueError, match="mu: expected shape \\(5,\\)"):
        g.intrinsic_sliced_wasserstein(np.ones(6), np.ones(5), G)
    with pytest.raises(ValueError, match="nodes: expected indices in \\[0, 5\\)"):
        geom.measure(G, kind="graph", nodes=[0, 5])
    with pytest.raises(TypeError, match="obj: expected a GraphDomain"):
        geom.measure(np.ones(5), kind="graph")
    with pytest.raises(ValueError, match="faces: expected vertex indices"):
        g.MeshDomain(np.eye(3), np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match="X: expected a collection of at least 2"):
        g.collection_test(np.ones((1, 5)), np.ones((3, 5)), G)
    with pytest.raises(ValueError, match="method"):
        g.collection_test(np.ones((2, 5)), np.ones((3, 5)), G, method="ks")
