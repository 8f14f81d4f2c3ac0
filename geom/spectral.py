"""Spectral geometry of meshes and point clouds: Laplace–Beltrami operators, eigenpairs, HKS and WKS.

The one implementation behind :class:`geom_plugins.graph.MeshDomain` (intrinsic sliced Wasserstein)
and :mod:`geom.match` (functional maps)::

    (V, 3) vertices [+ (F, 3) faces] --laplacian()--> L (V, V) sparse, PSD stiffness; M (V,) lumped mass
                                     --eigenpairs()-> L phi = lambda M phi: (k,) lambda ascending,
                                                      (V, k) phi M-orthonormal, signs fixed
                                     --hks() / wks()-> (V, T) / (V, E) descriptors

Operators (``method=``):

* ``"cotangent"``: ``L_ij = -(cot a_ij + cot b_ij) / 2`` and the barycentric lumped mass, for
  manifold meshes with well-shaped triangles. Needs faces.
* ``"robust"``: the tufted intrinsic Delaunay Laplacian of Sharp & Crane, *A Laplacian for Nonmanifold
  Triangle Meshes* (SGP 2020), from the ``robust-laplacian`` package: for point clouds (no faces) and
  for non-manifold or badly shaped meshes, where the cotangent weights turn negative. Optional:
  ``pip install 'geom[match]'``.

Eigenpairs are solved by ``scipy.sparse.linalg.eigsh`` in shift-invert mode about a small negative
shift (``L + shift M`` is definite, so the factorisation exists even with the null space), densely for
small problems. Sign convention: each eigenvector's first entry of (near-)largest magnitude is
positive, so a shape and its permuted copy get the same eigenvectors wherever the eigenvalue is simple.

Descriptors (Sun, Ovsjanikov & Guibas 2009; Aubry, Schlickewei & Cremers 2011):

* HKS ``h_t(x) = sum_k exp(-t lambda_k) phi_k(x)^2``, at log-spaced times.
* WKS ``w_e(x) = sum_k exp(-(e - log lambda_k)^2 / 2 sigma^2) phi_k(x)^2 / sum_k exp(...)``, at
  energies spaced evenly over ``[log lambda_1, log lambda_K]`` (the null eigenvalue is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._checks import as_host_array, check_int, check_real, describe

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["Spectrum", "check_connected", "cotangent_laplacian", "eigenpairs", "hks", "laplacian", "mesh_arrays",
           "robust_laplacian", "spectrum", "wks"]

METHODS = ("cotangent", "robust")
SOLVERS = ("auto", "dense", "eigsh")
DENSE_MAX_NODES = 1000  # "auto" solves densely up to this many nodes, with eigsh (shift-invert) above


def mesh_arrays(vertices, faces, name: str = "vertices") -> tuple[np.ndarray, np.ndarray]:
    """``(V, 3)`` finite float64 vertices and ``(F, 3)`` int64 faces indexing them; errors name ``name`` and ``faces``."""
    v = points_array(vertices, name)
    f = as_host_array(faces, "faces", "an (F, 3) integer array")
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0 or f.dtype.kind not in "iu":
        raise ValueError(f"faces: expected a non-empty (F, 3) integer array, got {describe(f)}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"faces: expected vertex indices in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    return v, f.astype(np.int64)


def points_array(vertices, name: str = "vertices") -> np.ndarray:
    """``(V, 3)`` finite float64 positions; errors name ``name``."""
    v = as_host_array(vertices, name, "an (n, 3) array")
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0 or v.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected (V, 3) real vertices, got {describe(v)}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: expected finite vertex positions")
    return v.astype(np.float64)


def cotangent_laplacian(vertices, faces) -> tuple[sp.csr_matrix, np.ndarray]:
    """Cotangent Laplacian and lumped mass of a triangle mesh.

    ``L_ij = -(cot a_ij + cot b_ij) / 2`` for an edge ``ij`` with opposite angles ``a_ij, b_ij``,
    ``L_ii = -sum_j L_ij`` (positive semi-definite); ``M_ii`` is a third of the area of the faces
    around vertex ``i``. Degenerate (zero-area) faces contribute nothing.

    Args:
        vertices: ``(V, 3)`` positions; faces: ``(F, 3)`` vertex indices.

    Returns:
        ``L`` as a ``(V, V)`` scipy CSR matrix and the ``(V,)`` lumped masses, float64.
    """
    v, f = mesh_arrays(vertices, faces)  # (V, 3) float64, (F, 3) int64
    V = len(v)
    rows, cols, vals = [], [], []
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1) / 2  # (F,)
    for c in range(3):  # corner c, opposite edge (a, b)
        i, a, b = f[:, c], f[:, (c + 1) % 3], f[:, (c + 2) % 3]
        e1, e2 = v[a] - v[i], v[b] - v[i]  # (F, 3)
        cross = np.linalg.norm(np.cross(e1, e2), axis=1)  # (F,) twice the area
        ok = cross > 1e-12 * np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
        cot = np.divide((e1 * e2).sum(1), cross, out=np.zeros(len(f)), where=ok)  # (F,)
        rows += [a, b]
        cols += [b, a]
        vals += [cot / 2, cot / 2]
    import scipy.sparse as sp  # imported on first use: geom's plugin load stays light
    w = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(V, V)).tocsr()
    laplacian = (sp.diags(np.asarray(w.sum(1)).ravel()) - w).tocsr()
    mass = np.bincount(f.ravel(), weights=np.repeat(area / 3, 3), minlength=V)  # (V,)
    return laplacian, mass


def robust_laplacian(vertices, faces=None, *, mollify_factor: float = 1e-5,
                     n_neighbors: int = 30) -> tuple[sp.csr_matrix, np.ndarray]:
    """The tufted intrinsic Delaunay Laplacian (Sharp & Crane 2020) of a mesh, or of a point cloud
    (``faces=None``: a local Delaunay triangulation of ``n_neighbors`` nearest neighbours per point).

    Returns ``L`` (``(V, V)`` CSR, PSD) and the ``(V,)`` lumped masses, float64, as
    :func:`cotangent_laplacian`. Needs ``pip install 'geom[match]'`` (robust-laplacian).
    """
    try:
        import robust_laplacian as rl
    except ImportError as exc:
        raise ImportError("robust_laplacian: the 'robust' Laplacian needs the robust-laplacian package: "
                          "pip install 'geom[match]'") from exc
    mollify = check_real(mollify_factor, "mollify_factor", ">= 0", lambda x: x >= 0)
    if faces is None:
        v = points_array(vertices)
        k = check_int(n_neighbors, "n_neighbors", minimum=3)
        if len(v) <= k:
            raise ValueError(f"vertices: a point-cloud Laplacian with n_neighbors={k} needs more than {k} points, "
                             f"got {len(v)}")
        L, M = rl.point_cloud_laplacian(v, mollify_factor=mollify, n_neighbors=k)
    else:
        v, f = mesh_arrays(vertices, faces)
        L, M = rl.mesh_laplacian(v, f, mollify_factor=mollify)
    import scipy.sparse as sp  # imported on first use: geom's plugin load stays light

    return sp.csr_matrix(L, dtype=np.float64), np.asarray(M.diagonal(), dtype=np.float64)


def laplacian(vertices, faces=None, *, method: str = "cotangent", **options) -> tuple[sp.csr_matrix, np.ndarray]:
    """``(L, mass)`` of a mesh or point cloud by ``method`` (``"cotangent"`` needs faces; ``"robust"``
    works with or without); ``options`` go to :func:`robust_laplacian`."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if method == "cotangent":
        if faces is None:
            raise ValueError("faces: the 'cotangent' Laplacian needs a triangle mesh, got a point cloud (no faces); "
                             "pass faces or use method='robust'")
        if options:
            raise TypeError(f"options {sorted(options)}: apply to method='robust' only")
        L, mass = cotangent_laplacian(vertices, faces)
    else:
        L, mass = robust_laplacian(vertices, faces, **options)
    if not bool((mass > 0).all()):
        raise ValueError(f"faces: vertex {int(np.argmin(mass > 0))} belongs to no face of positive area; "
                         "expected every vertex on a non-degenerate face")
    return L, mass


def n_components(stiffness) -> int:
    """Number of connected components of the graph of ``stiffness``'s nonzero entries."""
    import scipy.sparse.csgraph

    return int(scipy.sparse.csgraph.connected_components(scipy.sparse.csr_matrix(stiffness) != 0, directed=False)[0])


def check_connected(stiffness, name: str = "mesh") -> None:
    """A ValueError naming ``name`` unless the operator's graph is connected (functional maps, geodesics)."""
    c = n_components(stiffness)
    if c != 1:
        raise ValueError(f"{name}: expected a connected mesh, got {c} connected components; split it or keep the "
                         "largest component")


def eigenpairs(stiffness, mass, k: int, *, solver: str = "auto", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest eigenpairs of ``L phi = lambda M phi``, null space included.

    Args:
        stiffness: ``(n, n)`` symmetric PSD sparse ``L``; mass: ``(n,)`` positive diagonal of ``M``.
        k: number of eigenpairs, ``1 <= k <= n``.
        solver: ``"dense"`` (scipy.linalg.eigh), ``"eigsh"`` (shift-invert Lanczos, ``k <= n - 2``) or
            ``"auto"`` (dense up to 1000 nodes or when ``k >= n - 1``).
        seed: seed of eigsh's start vector.

    Returns:
        ``(k,)`` eigenvalues, ascending, and ``(n, k)`` eigenvectors, ``M``-orthonormal, each with its
        first entry of (near-)largest magnitude positive.
    """
    import scipy.sparse as sp  # imported on first use: geom's plugin load stays light

    L = sp.csr_matrix(stiffness, dtype=np.float64)
    mass = np.asarray(mass, dtype=np.float64)
    n = L.shape[0]
    if solver not in SOLVERS:
        raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
    k = check_int(k, "n_eigen", minimum=1)
    if k > n:
        raise ValueError(f"n_eigen: expected at most the number of vertices, {n}, got {k}")
    seed = check_int(seed, "seed")
    dense = solver == "dense" or (solver == "auto" and (n <= DENSE_MAX_NODES or k >= n - 1))
    if dense:
        inv_sqrt = 1.0 / np.sqrt(mass)  # (n,)  M^-1/2 L M^-1/2 u = lambda u, phi = M^-1/2 u
        sym = inv_sqrt[:, None] * L.toarray() * inv_sqrt[None, :]
        import scipy.linalg  # imported on first use: geom's plugin load stays light

        lam, u = scipy.linalg.eigh(sym, subset_by_index=[0, k - 1])
        phi = inv_sqrt[:, None] * u  # (n, k)
    else:
        if k >= n - 1:
            raise ValueError(f"solver: 'eigsh' computes at most n - 2 = {n - 2} eigenpairs, asked for {k}; "
                             "use solver='dense'")
        v0 = np.random.default_rng(seed).standard_normal(n)  # (n,) seeded start vector
        shift = 1e-8 * float(np.max(L.diagonal() / mass))  # L + shift M is definite
        import scipy.sparse.linalg

        lam, phi = scipy.sparse.linalg.eigsh(L, k=k, M=sp.diags(mass), sigma=-shift, which="LM", v0=v0)
        order = np.argsort(lam)
        lam, phi = lam[order], phi[:, order]
    mag = np.abs(phi)  # sign convention: the first entry of (near-)largest magnitude is positive
    peak = (mag >= (1 - 1e-6) * mag.max(0, keepdims=True)).argmax(0)  # (k,)
    phi = phi * np.sign(phi[peak, np.arange(k)])[None, :]
    return lam, phi


@dataclass
class Spectrum:
    """A shape's Laplacian, mass and first eigenpairs (``evals[0] ~ 0``, ``evecs[:, 0]`` constant).

    Attributes:
        vertices: ``(V, 3)``; faces: ``(F, 3)`` or None for a point cloud.
        stiffness: ``(V, V)`` CSR ``L``; mass: ``(V,)``.
        evals: ``(K,)`` ascending; evecs: ``(V, K)``, ``M``-orthonormal.
    """

    vertices: np.ndarray
    faces: np.ndarray | None
    stiffness: sp.csr_matrix
    mass: np.ndarray
    evals: np.ndarray
    evecs: np.ndarray

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    @property
    def area(self) -> float:
        return float(self.mass.sum())


def spectrum(vertices, faces=None, *, n_eigen: int = 50, method: str | None = None, solver: str = "auto",
             seed: int = 0, **options) -> Spectrum:
    """Laplacian, mass and the first ``n_eigen`` eigenpairs of a connected mesh or point cloud.

    ``method`` None: ``"cotangent"`` with faces, ``"robust"`` without. A ValueError for a disconnected
    shape (its null space is not the constants alone) or ``n_eigen`` above the vertex count.
    """
    method = ("cotangent" if faces is not None else "robust") if method is None else method
    if faces is not None:
        v, f = mesh_arrays(vertices, faces)
    else:
        v, f = points_array(vertices), None
    n_eigen = check_int(n_eigen, "n_eigen", minimum=1)
    if n_eigen > len(v):
        raise ValueError(f"n_eigen: expected at most the number of vertices, {len(v)}, got {n_eigen}")
    L, mass = laplacian(v, f, method=method, **options)
    check_connected(L)
    lam, phi = eigenpairs(L, mass, n_eigen, solver=solver, seed=seed)
    return Spectrum(v, f, L, mass, lam, phi)


def _check_eigen(evals, evecs) -> tuple[np.ndarray, np.ndarray]:
    lam = np.asarray(evals, dtype=np.float64)
    phi = np.asarray(evecs, dtype=np.float64)
    if lam.ndim != 1 or phi.ndim != 2 or phi.shape[1] != lam.shape[0]:
        raise ValueError(f"evals, evecs: expected (K,) and (V, K), got {lam.shape} and {phi.shape}")
    if not (np.isfinite(lam).all() and np.isfinite(phi).all()):
        raise ValueError("evals, evecs: expected finite eigenpairs")
    return lam, phi


def hks(evals, evecs, times=None, *, n_times: int = 16) -> np.ndarray:
    """Heat kernel signature ``(V, T)``: ``h_t(x) = sum_k exp(-t lambda_k) phi_k(x)^2``.

    ``times`` None: ``n_times`` log-spaced in ``[4 log 10 / lambda_K, 4 log 10 / lambda_1]`` (Sun et al.).
    """
    lam, phi = _check_eigen(evals, evecs)
    lam = np.clip(lam, 0, None)
    if times is None:
        n_times = check_int(n_times, "n_times", minimum=1)
        positive = lam[lam > 1e-12 * max(lam.max(), 1e-300)]
        if positive.size == 0:
            raise ValueError("evals: expected at least one positive eigenvalue to choose the heat times")
        times = np.geomspace(4 * np.log(10) / positive.max(), 4 * np.log(10) / positive.min(), n_times)
    t = np.asarray(times, dtype=np.float64).ravel()
    if t.size == 0 or not (np.isfinite(t).all() and (t > 0).all()):
        raise ValueError(f"times: expected positive finite heat times, got {t}")
    return (phi**2) @ np.exp(-np.outer(lam, t))  # (V, K) @ (K, T)


def wks(evals, evecs, *, n_energies: int = 100, sigma_factor: float = 7.0) -> np.ndarray:
    """Wave kernel signature ``(V, E)`` over ``n_energies`` log-energies in ``[log lambda_1, log lambda_K]``
    with bandwidth ``sigma = sigma_factor * spacing`` (Aubry et al.); the null eigenvalue(s) are skipped,
    each energy's row is normalised by its sum over the eigenvalues."""
    lam, phi = _check_eigen(evals, evecs)
    n_energies = check_int(n_energies, "n_energies", minimum=1)
    sigma_factor = check_real(sigma_factor, "sigma_factor", "> 0", lambda x: x > 0)
    keep = lam > 1e-8 * max(float(lam.max()), 1e-300)
    if keep.sum() < 2:
        raise ValueError(f"evals: WKS needs at least 2 positive eigenvalues, got {int(keep.sum())}")
    log_lam = np.log(lam[keep])  # (K',)
    e = np.linspace(log_lam[0], log_lam[-1], n_energies)  # (E,)
    sigma = sigma_factor * (e[1] - e[0] if n_energies > 1 else (log_lam[-1] - log_lam[0]) / 10)
    g = np.exp(-((e[None, :] - log_lam[:, None]) ** 2) / (2 * sigma**2))  # (K', E)
    return (phi[:, keep] ** 2) @ g / g.sum(0, keepdims=True)
