"""geom.spectral: Laplacians, eigenpairs, HKS / WKS, and the errors at its boundary."""

import sys

import numpy as np
import pytest

from geom import spectral
from geom_datasets import shapes

BANDS = np.repeat([0, 1, 2, 3], [1, 3, 5, 7])  # complete spherical-harmonic bands l <= 3: 16 eigenpairs


def test_eigsh_shift_invert_matches_the_dense_solver_with_the_null_space():
    v, f = shapes.sphere(subdivisions=3)  # 642 vertices
    L, M = spectral.cotangent_laplacian(v, f)
    dense = spectral.eigenpairs(L, M, 10, solver="dense")
    sparse = spectral.eigenpairs(L, M, 10, solver="eigsh", seed=1)
    np.testing.assert_allclose(sparse[0], dense[0], rtol=1e-8, atol=1e-10)
    assert abs(dense[0][0]) < 1e-9  # the constants
    np.testing.assert_allclose(dense[1][:, 0], 1 / np.sqrt(M.sum()), rtol=1e-8)  # M-normalised constant, sign +
    phi = sparse[1]
    np.testing.assert_allclose(phi.T @ (M[:, None] * phi), np.eye(10), atol=1e-8)


def test_robust_point_cloud_laplacian_has_the_spherical_spectrum():
    pytest.importorskip("robust_laplacian")
    R = 1.5
    v, _ = shapes.sphere(radius=R, subdivisions=4)  # 2562 points, no faces used
    s = spectral.spectrum(v, None, n_eigen=16)  # point cloud -> robust Laplacian
    exact = BANDS * (BANDS + 1) / R**2
    np.testing.assert_allclose(s.evals[1:], exact[1:], rtol=0.05)
    np.testing.assert_allclose(s.area, 4 * np.pi * R**2, rtol=0.03)


def test_robust_mesh_laplacian_equals_cotangent_on_a_delaunay_mesh():
    pytest.importorskip("robust_laplacian")
    v, f = shapes.sphere(subdivisions=3)  # an icosphere is intrinsically Delaunay: the two operators agree
    a = spectral.spectrum(v, f, n_eigen=12, method="cotangent")
    b = spectral.spectrum(v, f, n_eigen=12, method="robust", mollify_factor=0.0)
    np.testing.assert_allclose(b.evals[1:], a.evals[1:], rtol=1e-6)
    np.testing.assert_allclose(b.mass, a.mass, rtol=1e-6)


def test_eigenvectors_of_a_permuted_mesh_are_the_permuted_eigenvectors():
    v, f = shapes.bend(shapes.ellipsoid(subdivisions=3), 0.3, seed=2)  # no symmetry: simple spectrum and a
    v = v.astype(np.float64)  # unique largest entry per eigenvector, so the sign convention is order-free
    perm = np.random.default_rng(0).permutation(len(v))
    inv = np.argsort(perm)
    a = spectral.spectrum(v, f, n_eigen=8)
    b = spectral.spectrum(v[perm], inv[f], n_eigen=8)
    np.testing.assert_allclose(b.evals, a.evals, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(b.evecs, a.evecs[perm], atol=1e-7)


def test_hks_and_wks_are_constant_on_the_sphere_and_hks_follows_the_addition_theorem():
    """On the unit sphere a complete band l has sum_m Y_lm(x)^2 = (2l + 1) / (4 pi) at every x, so with
    bands l <= 3 both signatures are constant across vertices; HKS then equals
    sum_l (2l + 1) exp(-t l (l + 1)) / (4 pi). A random vertex perturbation breaks the constancy."""
    v, f = shapes.sphere(subdivisions=4)
    s = spectral.spectrum(v, f, n_eigen=16)
    t = np.array([0.05, 0.2, 1.0])
    h = spectral.hks(s.evals, s.evecs, t)  # (V, 3)
    assert h.shape == (len(v), 3)
    assert (h.std(0) / h.mean(0)).max() < 0.005  # measured 6e-4 (discretisation splits the bands)
    exact = np.exp(-np.outer(t, BANDS * (BANDS + 1))).sum(1) / (4 * np.pi)  # each eigenpair adds 1 / (4 pi) on average
    np.testing.assert_allclose(h.mean(0), exact, rtol=0.03)
    w = spectral.wks(s.evals, s.evecs, n_energies=20)
    assert w.shape == (len(v), 20) and (w.std(0) / w.mean(0)).max() < 0.005  # measured 9e-4
    bumpy = v * (1 + 0.1 * np.sin(3 * v[:, :1]))
    wb = spectral.wks(*(lambda q: (q.evals, q.evecs))(spectral.spectrum(bumpy, f, n_eigen=16)), n_energies=20)
    assert (wb.std(0) / wb.mean(0)).max() > 0.02  # measured 0.03


def test_default_hks_times_are_log_spaced_and_positive():
    v, f = shapes.torus(n_major=24, n_minor=12)
    s = spectral.spectrum(v, f, n_eigen=20)
    h = spectral.hks(s.evals, s.evecs, n_times=5)
    assert h.shape == (len(v), 5) and (h > 0).all()
    assert (np.diff(h.mean(0)) < 0).all()  # heat leaves each point as t grows (mean of h_t = sum_k e^{-t l_k} / area)


# ---------------------------------------------------------------- errors


def test_cotangent_needs_faces():
    v, _ = shapes.sphere(subdivisions=1)
    with pytest.raises(ValueError, match="faces: the 'cotangent' Laplacian needs a triangle mesh"):
        spectral.spectrum(v, None, n_eigen=4, method="cotangent")


def test_disconnected_mesh_is_refused():
    v, f = shapes.sphere(subdivisions=1)
    v2 = np.concatenate([v, v + 5])
    f2 = np.concatenate([f, f + len(v)])
    with pytest.raises(ValueError, match="mesh: expected a connected mesh, got 2 connected components"):
        spectral.spectrum(v2, f2, n_eigen=4)


def test_n_eigen_above_the_vertex_count_is_refused():
    v, f = shapes.sphere(subdivisions=0)  # 12 vertices
    with pytest.raises(ValueError, match="n_eigen: expected at most the number of vertices, 12, got 13"):
        spectral.spectrum(v, f, n_eigen=13)
    with pytest.raises(ValueError, match="n_eigen"):
        spectral.eigenpairs(*spectral.cotangent_laplacian(v, f), 13)


def test_bad_method_and_solver_are_named():
    v, f = shapes.sphere(subdivisions=0)
    with pytest.raises(ValueError, match="method: expected one of"):
        spectral.laplacian(v, f, method="fem")
    with pytest.raises(ValueError, match="solver: expected one of"):
        spectral.eigenpairs(*spectral.cotangent_laplacian(v, f), 3, solver="lobpcg")


def test_missing_robust_laplacian_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "robust_laplacian", None)
    v, _ = shapes.sphere(subdivisions=1)
    with pytest.raises(ImportError, match=r"pip install 'geom\[match\]'"):
        spectral.robust_laplacian(v)
