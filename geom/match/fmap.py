"""Functional maps: from descriptors to a map ``C`` between eigenbases, ZoomOut, and point-to-point maps.

Convention (one for the whole package): a point-to-point map ``T`` sends each vertex of shape A to a
vertex of shape B (``T (n_A,)``, a target index per vertex, what ``geom match`` writes). Its
functional map is the pull-back ``f -> f o T`` in the eigenbases::

    C = Phi_A^+ Phi_B[T]    (K_A, K_B),   Phi_A^+ = Phi_A^T M_A   (M-orthonormal bases)

so that ``Phi_B[T] ~ Phi_A C`` and, back, ``T(x) = argmin_y |Phi_A[x] C - Phi_B[y]|`` (nearest
neighbours in the spectral embedding, KeOps ``argKmin``). The identity map of a shape onto itself has
``C = I`` wherever eigenvalues are simple (signs are fixed by :mod:`geom.spectral`'s convention) and
an orthogonal block on each eigenspace.

Solving ``C`` from descriptors (Ovsjanikov et al., *Functional Maps*, SIGGRAPH 2012; Nogneng &
Ovsjanikov 2017; Ren et al., *Continuous and Orientation-preserving Correspondences via Functional
Maps*, SIGGRAPH Asia 2018): with ``a = Phi_A^+ d_A``, ``b = Phi_B^+ d_B`` the descriptors'
coefficients (``d_A ~ d_B o T``)::

    min_C |C b - a|^2 + w_lap |C Lambda_B - Lambda_A C|^2 + w_orient sum_f |C O^B_f - O^A_f C|^2

``O_f = Phi^+ (n . (grad f x grad .)) Phi`` is the orientation operator of descriptor ``f`` (it changes
sign under a reflection, so the term prefers orientation-preserving maps), each pair scaled to unit
mean Frobenius norm so that ``w_orient`` does not depend on the mesh resolution. Without it the problem
splits into one small ridge system per row; with it, one linear system in ``vec C``.

ZoomOut (Melzi et al., SIGGRAPH Asia 2019): from ``k`` to ``K`` eigenfunctions, alternate
``T <- nearest(Phi_A^k C, Phi_B^k)`` and ``C <- Phi_A^{k+s,+} Phi_B^{k+s}[T]``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import check_int, check_real
from ..spectral import Spectrum
from ._nn import nearest

__all__ = ["descriptor_fmap", "fmap_to_p2p", "orientation_operators", "p2p_to_fmap", "zoomout"]


def _check_k(k, spec: Spectrum, name: str) -> int:
    k = check_int(k, name, minimum=1)
    if k > spec.evecs.shape[1]:
        raise ValueError(f"{name}: expected at most the {spec.evecs.shape[1]} eigenpairs computed, got {k}")
    return k


def check_p2p(T, n_source: int, n_target: int, name: str = "p2p") -> np.ndarray:
    """``(n_source,)`` int64 indices in ``[0, n_target)``; a ValueError naming ``name`` otherwise."""
    t = np.asarray(T)
    if t.dtype.kind not in "iu" or t.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D integer array of target vertices, got dtype {t.dtype}, shape {t.shape}")
    if len(t) != n_source:
        raise ValueError(f"{name}: expected one target vertex per source vertex ({n_source}), got {len(t)}")
    if len(t) and (t.min() < 0 or t.max() >= n_target):
        raise ValueError(f"{name}: expected target vertices in [0, {n_target}), got [{t.min()}, {t.max()}]")
    return t.astype(np.int64)


def check_descriptors(desc_a, desc_b, spec_a: Spectrum, spec_b: Spectrum) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``(n_A, Q)`` and ``(n_B, Q)`` descriptors, one row per vertex; a ValueError otherwise."""
    da, db = np.asarray(desc_a, dtype=np.float64), np.asarray(desc_b, dtype=np.float64)
    if da.ndim != 2 or db.ndim != 2 or da.shape[1] != db.shape[1]:
        raise ValueError(f"desc_a, desc_b: expected (n_A, Q) and (n_B, Q) descriptors, got {da.shape} and {db.shape}")
    if da.shape[0] != spec_a.n_vertices or db.shape[0] != spec_b.n_vertices:
        raise ValueError(f"desc_a, desc_b: expected one row per vertex ({spec_a.n_vertices}, {spec_b.n_vertices}), "
                         f"got {da.shape[0]} and {db.shape[0]}")
    return da, db


def p2p_to_fmap(T, spec_a: Spectrum, spec_b: Spectrum, k_a: int | None = None, k_b: int | None = None) -> np.ndarray:
    """``C = Phi_A^+ Phi_B[T]`` ``(k_a, k_b)`` of a point-to-point map ``T`` from A to B."""
    k_a = _check_k(k_a or spec_a.evecs.shape[1], spec_a, "k_a")
    k_b = _check_k(k_b or spec_b.evecs.shape[1], spec_b, "k_b")
    T = check_p2p(T, spec_a.n_vertices, spec_b.n_vertices)
    phi_a = spec_a.evecs[:, :k_a]
    return phi_a.T @ (spec_a.mass[:, None] * spec_b.evecs[T, :k_b])


def fmap_to_p2p(C, spec_a: Spectrum, spec_b: Spectrum, *, backend: str = "auto", pad_to: int | None = None) -> np.ndarray:
    """``T (n_A,)``: each vertex of A to the vertex of B nearest ``Phi_A[x] C`` in ``Phi_B``'s embedding."""
    C = np.asarray(C, dtype=np.float64)
    k_a, k_b = C.shape
    # float32 embeddings: rows near the origin (unit M-norm columns), nearest neighbours in half the time
    x, y = (np.ascontiguousarray(e, dtype=np.float32) for e in (spec_a.evecs[:, :k_a] @ C, spec_b.evecs[:, :k_b]))
    return nearest(x, y, backend=backend, pad_to=pad_to)


def zoomout(C, spec_a: Spectrum, spec_b: Spectrum, k_final: int | None = None, *, step: int = 1,
            backend: str = "auto", return_p2p: bool = True):
    """ZoomOut: grow a ``(k, k)`` map to ``(k_final, k_final)`` by alternating nearest neighbours and
    projection; returns ``(C, T)`` (``T`` from the final ``C``)."""
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"C: expected a square (k, k) functional map, got shape {C.shape}")
    k_final = _check_k(k_final or min(spec_a.evecs.shape[1], spec_b.evecs.shape[1]), spec_a, "k_final")
    _check_k(k_final, spec_b, "k_final")
    step = check_int(step, "step", minimum=1)
    k = C.shape[0]
    while k < k_final:
        T = fmap_to_p2p(C, spec_a, spec_b, backend=backend, pad_to=k_final)
        k = min(k + step, k_final)
        C = p2p_to_fmap(T, spec_a, spec_b, k, k)
    T = fmap_to_p2p(C, spec_a, spec_b, backend=backend, pad_to=k_final)
    return (C, T) if return_p2p else C


def _face_gradients(spec: Spectrum):
    """``(G (3F, V) sparse gradient operator (stacked x, y, z rows), normals (F, 3), areas (F,))``."""
    v, f = spec.vertices, spec.faces
    e = [v[f[:, (c + 2) % 3]] - v[f[:, (c + 1) % 3]] for c in range(3)]  # edge opposite corner c
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    area2 = np.linalg.norm(n, axis=1)  # twice the areas
    ok = area2 > 0
    n = np.divide(n, area2[:, None], out=np.zeros_like(n), where=ok[:, None])
    F, V = len(f), len(v)
    rows, cols, vals = [], [], []
    for c in range(3):  # grad of the hat function of corner c: n x e_c / (2 A)
        g = np.divide(np.cross(n, e[c]), area2[:, None], out=np.zeros_like(n), where=ok[:, None])  # (F, 3)
        for d in range(3):
            rows.append(d * F + np.arange(F))
            cols.append(f[:, c])
            vals.append(g[:, d])
    G = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(3 * F, V))
    return G, n, area2 / 2


def orientation_operators(spec: Spectrum, descriptors, k: int) -> np.ndarray:
    """``(Q, k, k)`` operators ``Phi^+ (n . (grad f_q x grad .)) Phi`` of each descriptor ``f_q`` (``(V, Q)``),
    face values spread to vertices by a third of each face's area."""
    if spec.faces is None:
        raise ValueError("faces: the orientation term needs a triangle mesh, got a point cloud (no faces); "
                         "set orientation weight 0")
    d = np.asarray(descriptors, dtype=np.float64)
    G, n, area = _face_gradients(spec)
    F, V = len(spec.faces), spec.n_vertices
    phi = spec.evecs[:, :k]  # (V, k)
    grad_phi = (G @ phi).reshape(3, F, k)  # (3, F, k)
    grad_d = (G @ d).reshape(3, F, -1)  # (3, F, Q)
    rot = np.cross(n[:, :, None], grad_d.transpose(1, 0, 2), axis=1)  # (F, 3, Q) n x grad f
    to_vertex = sp.csr_matrix((np.repeat(area / 3, 3), (spec.faces.ravel(), np.repeat(np.arange(F), 3))),
                              shape=(V, F))  # (V, F) area-weighted spread
    out = np.empty((d.shape[1], k, k))
    for q in range(d.shape[1]):
        face_vals = np.einsum("fd,dfk->fk", rot[:, :, q], grad_phi)  # (F, k) (n x grad f) . grad phi_j
        out[q] = phi.T @ (to_vertex @ face_vals)  # Phi^T M (M^-1 spread) = Phi^T spread
    return out


def descriptor_fmap(spec_a: Spectrum, spec_b: Spectrum, desc_a, desc_b, k: int = 30, *, w_descr: float = 1.0,
                    w_lap: float = 1e-2, w_orient: float = 0.0) -> np.ndarray:
    """``(k, k)`` functional map ``C`` (pull-back, A <- B) from corresponding descriptors ``(n_A, Q)``
    and ``(n_B, Q)``, by least squares with Laplacian commutativity and orientation preservation.

    Descriptors are normalised to unit ``M``-norm; eigenvalues are scaled by the largest of B so that
    ``w_lap`` does not depend on the shapes' size.
    """
    k_a = _check_k(k, spec_a, "k")
    _check_k(k, spec_b, "k")
    w_descr = check_real(w_descr, "w_descr", ">= 0", lambda x: x >= 0)
    w_lap = check_real(w_lap, "w_lap", ">= 0", lambda x: x >= 0)
    w_orient = check_real(w_orient, "w_orient", ">= 0", lambda x: x >= 0)
    da, db = check_descriptors(desc_a, desc_b, spec_a, spec_b)
    norm_a = np.sqrt((spec_a.mass[:, None] * da**2).sum(0))
    norm_b = np.sqrt((spec_b.mass[:, None] * db**2).sum(0))
    if not (np.isfinite(da).all() and np.isfinite(db).all()) or (norm_a == 0).any() or (norm_b == 0).any():
        raise ValueError("desc_a, desc_b: expected finite descriptors, none identically zero")
    da, db = da / norm_a, db / norm_b
    pa = spec_a.evecs[:, :k].T @ (spec_a.mass[:, None] * da)  # (k, Q) coefficients
    pb = spec_b.evecs[:, :k].T @ (spec_b.mass[:, None] * db)
    scale = max(float(spec_b.evals[k - 1]), float(spec_a.evals[k - 1]), 1e-300)
    la, lb = spec_a.evals[:k] / scale, spec_b.evals[:k] / scale
    if w_orient == 0:  # one ridge system per row i: (w b b^T + w_lap diag((lb - la_i)^2)) c_i = w b a_i
        BBt = w_descr * pb @ pb.T
        C = np.empty((k_a, k))
        for i in range(k_a):
            C[i] = np.linalg.solve(BBt + w_lap * np.diag((lb - la[i]) ** 2) + 1e-12 * np.eye(k), w_descr * pb @ pa[i])
        return C
    # vec(C) row-major: c[i k + j] = C_ij. |C X - Y|^2 -> kron(I, X X^T); |C P - Q C|^2 -> (I kron P^T - Q kron I)
    I = np.eye(k)
    H = w_descr * np.kron(I, pb @ pb.T) + w_lap * np.diag(((lb[None, :] - la[:, None]) ** 2).ravel())
    rhs = w_descr * (pa @ pb.T).ravel()
    Oa, Ob = orientation_operators(spec_a, da, k), orientation_operators(spec_b, db, k)
    for q in range(da.shape[1]):  # each operator pair scaled to unit mean norm: w_orient is dimensionless
        unit = max((np.linalg.norm(Oa[q]) + np.linalg.norm(Ob[q])) / 2, 1e-300)
        A = (np.kron(I, Ob[q].T) - np.kron(Oa[q], I)) / unit  # vec(C Ob - Oa C) = A vec(C)
        H += w_orient * A.T @ A
    return np.linalg.solve(H + 1e-12 * np.eye(k * k), rhs).reshape(k, k)
