"""Metrics comparing a deformed triangle mesh with a target mesh.

A mesh argument is a ``(vertices (V, 3), faces (F, 3))`` tuple (arrays, tensors or nested lists), a
mesh file path or a trimesh / open3d mesh (read by :func:`geom.io.read_mesh`). Surface measures are
seeded, area-uniform samples (:func:`surface_samples`, the draws of :func:`geom.io.surface_draws`)
computed in float64; the two meshes of a comparison are sampled with the same ``seed``, so a mesh
compared with itself gives exactly 0 (and 1 for the normal agreement), and a mesh and a copy of it
moved by a similarity get corresponding samples.

- :func:`chamfer`, :func:`hausdorff`: :func:`geom.chamfer_distance` (mean squared nearest-sample
  distance both ways, summed) and :func:`geom.hausdorff_distance` (not squared) of the samples; KeOps
  where ``backend="auto"`` finds it worth it and it compiles, dense torch otherwise.
- :func:`normal_agreement`: how well the surfaces' orientations match, ``1/2 (mean_i |<n_a(x_i),
  n_b(y_nn(i))>| + mean_j |<n_b(y_j), n_a(x_nn(j))>|)``, with ``n`` the unit normal of the sampled
  face and ``nn`` the nearest sample of the other surface: 1 for a mesh against itself, orientation
  (winding) ignored.
- :func:`normal_smoothness`: a property of one mesh, PyTorch3D's ``mesh_normal_consistency``: the mean
  over pairs of faces sharing an edge of ``1 - cos(n_f, n_g)``, 0 for a flat sheet. (PyTorch3D's
  name says "consistency", but it measures smoothness, not agreement with a target.)
- :func:`sliced_w2`: :func:`geom.sliced_wasserstein` (``p = 2``) of the samples, seeded directions.
- :func:`exact_w2`: the exact ``W_2`` between the uniform empirical measures of ``n_samples`` samples
  of each surface, by an optimal assignment (:func:`scipy.optimize.linear_sum_assignment`).
- :func:`mesh_metrics`: all of them (and :func:`geom.deform.intersect.self_intersection_fraction` of
  the deformed mesh) after the similarity that moves the target's bounding-box centre to the origin
  and scales its bounding-box diagonal to 1, applied to both meshes and recorded in the result.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .._checks import check_memory, check_positive_int, describe
from ..io import read_mesh, surface_draws
from ..reductions import chamfer_distance, hausdorff_distance
from ..sliced import sliced_wasserstein
from .intersect import mesh_arrays, pairs_within_groups, self_intersection_fraction

__all__ = ["chamfer", "exact_w2", "hausdorff", "mesh_metrics", "normal_agreement", "normal_smoothness", "sliced_w2",
           "surface_samples"]


def _mesh(obj, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A mesh argument -> validated ``(V, 3)`` float64 and ``(F, 3)`` int64; errors start with ``name``."""
    try:
        if isinstance(obj, (tuple, list)) and len(obj) == 2:
            return mesh_arrays(*obj)
        if isinstance(obj, (str, os.PathLike)) or type(obj).__module__.startswith(("trimesh", "open3d")):
            return mesh_arrays(*read_mesh(obj))
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise type(exc)(f"{name}: {str(exc).replace('obj: ', '', 1)}") from None
    raise TypeError(f"{name}: expected a (vertices, faces) tuple, a mesh file path or a trimesh / open3d mesh, "
                    f"got {describe(obj)}")


def _face_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``(F, 3)`` unit normals (right-hand rule), zero for zero-area faces."""
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def _samples(mesh: tuple[np.ndarray, np.ndarray], n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    v, f = mesh
    face, bary = surface_draws(v, f, n_samples, seed=seed)
    points = np.einsum("nk,nkd->nd", bary, v[f[face]])
    return points, _face_normals(v, f)[face]


def surface_samples(mesh, n_samples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded area-uniform surface samples and the unit normals of their faces, float64.

    Args:
        mesh: ``(vertices, faces)``, a mesh file path or a trimesh / open3d mesh.
        n_samples: number of samples ``N``.
        seed: seed of the draws (:func:`geom.io.surface_draws`).

    Returns:
        ``points (N, 3)`` and ``normals (N, 3)``.

    >>> p, n = surface_samples(([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]), 2)
    >>> p.shape, n.tolist()
    ((2, 3), [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    """
    return _samples(_mesh(mesh, "mesh"), n_samples, seed)


def _pair(a, b, n_samples: int, seed: int, names=("a", "b")):
    x = _samples(_mesh(a, names[0]), n_samples, seed)
    y = _samples(_mesh(b, names[1]), n_samples, seed)
    return x, y


def chamfer(a, b, *, n_samples: int = 4096, seed: int = 0, backend: str = "auto") -> float:
    """Chamfer distance between ``n_samples`` surface samples of meshes ``a`` and ``b``
    (:func:`geom.chamfer_distance`: squared distances, the two directions summed).

    >>> tri = ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    >>> chamfer(tri, ([[0, 0, 2], [1, 0, 2], [0, 1, 2]], [[0, 1, 2]]), n_samples=64)
    8.0
    """
    (x, _), (y, _) = _pair(a, b, n_samples, seed)
    return float(chamfer_distance(torch.from_numpy(x), torch.from_numpy(y), backend=backend))


def hausdorff(a, b, *, n_samples: int = 4096, seed: int = 0, backend: str = "auto") -> float:
    """Symmetric Hausdorff distance between ``n_samples`` surface samples of ``a`` and ``b``
    (:func:`geom.hausdorff_distance`, not squared)."""
    (x, _), (y, _) = _pair(a, b, n_samples, seed)
    return float(hausdorff_distance(torch.from_numpy(x), torch.from_numpy(y), backend=backend))


def _nearest(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index of the nearest row of ``y`` for each row of ``x`` (exact, k-d tree)."""
    from scipy.spatial import cKDTree

    return cKDTree(y).query(x, k=1)[1]


def normal_agreement(a, b, *, n_samples: int = 4096, seed: int = 0) -> float:
    """Mean ``|cos|`` between the face normals at nearest samples of two surfaces, in ``[0, 1]``.

    ``1/2 (mean_i |<n_a(x_i), n_b(y_nn(i))>| + mean_j |<n_b(y_j), n_a(x_nn(j))>|)``: ``x``, ``y`` the
    samples of ``a`` and ``b`` with the unit normals ``n`` of their faces, ``nn`` the nearest sample of
    the other surface. 1 when the surfaces agree (a mesh and itself); the absolute value makes it
    blind to the winding. Samples on zero-area faces never occur (they have no area).

    >>> tri = ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    >>> normal_agreement(tri, ([[0, 0, 1], [1, 0, 1], [0, 0, 2]], [[0, 1, 2]]), n_samples=16)
    0.0
    """
    (x, nx), (y, ny) = _pair(a, b, n_samples, seed)
    to_b = np.abs((nx * ny[_nearest(x, y)]).sum(1)).mean()
    to_a = np.abs((ny * nx[_nearest(y, x)]).sum(1)).mean()
    return float(min(1.0, 0.5 * (to_b + to_a)))


def normal_smoothness(vertices, faces) -> float:
    """PyTorch3D's ``mesh_normal_consistency``: mean over pairs of faces sharing an edge of ``1 - cos``.

    For an edge ``(u, w)`` and two faces on it with opposite corners ``p`` and ``q``, the normals are
    ``n_p = (w - u) x (p - u)`` and ``n_q = (q - u) x (w - u)`` (the faces' normals when they are
    consistently wound, whatever the actual winding) and the term is ``1 - cos(n_p, n_q)``: 0 for a
    flat sheet, 1 at a right dihedral angle, 2 folded back. Edges are vertex-index pairs; an edge of
    ``k`` faces gives its ``k (k - 1) / 2`` pairs (PyTorch3D counts some twice when ``k >= 4``), a
    boundary edge none. A zero-area face has cosine 0, as PyTorch3D's ``cosine_similarity`` gives it.
    No pair at all gives 0.

    >>> normal_smoothness([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]])
    0.0
    """
    v, f = mesh_arrays(vertices, faces)
    corner = np.arange(3)
    u, w, p = f[:, corner], f[:, (corner + 1) % 3], f[:, (corner + 2) % 3]  # (F, 3): edges and their opposite corners
    lo, hi, p = np.minimum(u, w).ravel(), np.maximum(u, w).ravel(), p.ravel()
    order = np.lexsort((hi, lo))
    lo, hi, p = lo[order], hi[order], p[order]
    new = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])]
    sizes = np.diff(np.r_[np.flatnonzero(new), len(lo)])
    check_memory(float((sizes * (sizes - 1) // 2).sum()) * 64, "faces", "pairs of faces around the edges")
    i, j = pairs_within_groups(sizes)
    if len(i) == 0:
        return 0.0
    e = v[hi[i]] - v[lo[i]]
    n_p, n_q = np.cross(e, v[p[i]] - v[lo[i]]), np.cross(v[p[j]] - v[lo[i]], e)
    norms = np.linalg.norm(n_p, axis=1) * np.linalg.norm(n_q, axis=1)
    cos = np.divide((n_p * n_q).sum(1), norms, out=np.zeros(len(i)), where=norms > 0)
    return float((1 - np.clip(cos, -1.0, 1.0)).mean())


def sliced_w2(a, b, *, n_samples: int = 4096, seed: int = 0, n_projections: int = 256) -> float:
    """Sliced ``W_2`` between ``n_samples`` surface samples of ``a`` and ``b``
    (:func:`geom.sliced_wasserstein`, ``p = 2``, ``n_projections`` directions drawn with ``seed``)."""
    return _sliced(a, b, n_samples, seed, n_projections)[0]


def _sliced(a, b, n_samples, seed, n_projections, names=("a", "b")) -> tuple[float, float]:
    (x, _), (y, _) = _pair(a, b, n_samples, seed, names)
    r = sliced_wasserstein(torch.from_numpy(x), torch.from_numpy(y), p=2, n_projections=n_projections, seed=seed,
                           return_result=True)
    return float(r.value), float(r.stderr)


def exact_w2(a, b, *, n_samples: int = 1024, seed: int = 0) -> float:
    """Exact ``W_2`` between the uniform empirical measures of ``n_samples`` surface samples of each of
    ``a`` and ``b``: ``sqrt(min_sigma mean_i |x_i - y_sigma(i)|^2)`` over permutations ``sigma``, by
    :func:`scipy.optimize.linear_sum_assignment` (``O(N^3)`` time, an ``(N, N)`` cost matrix).

    >>> tri = ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    >>> exact_w2(tri, ([[0, 0, 3], [1, 0, 3], [0, 1, 3]], [[0, 1, 2]]), n_samples=8)
    3.0
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    n_samples = check_positive_int(n_samples, "n_samples")
    check_memory(n_samples * n_samples * 16.0, "n_samples", f"the {n_samples} x {n_samples} cost matrix")
    (x, _), (y, _) = _pair(a, b, n_samples, seed)
    cost = cdist(x, y, "sqeuclidean")
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def mesh_metrics(mesh, target, *, n_samples: int = 4096, seed: int = 0, n_projections: int = 256,
                 exact_samples: int = 1024, backend: str = "auto") -> dict:
    """Every metric between a deformed ``mesh`` and its ``target``, after scaling the target to a unit
    bounding-box diagonal.

    The similarity ``x -> (x - c) / d`` (``c`` the centre and ``d`` the diagonal of the target's
    axis-aligned bounding box) is applied to both meshes first, so distances are fractions of the
    target's size. Its ``scale = 1 / d`` and ``offset = c`` are recorded: a distance in the input's
    units is the value divided by ``scale`` (Chamfer: by ``scale**2``). A translation of both meshes
    changes nothing; a rotation changes the box, so the values change by the ratio of the scales,
    except ``sliced_w2``, whose seeded directions then meet other projections (equal in law).

    Args:
        mesh, target: ``(vertices, faces)``, mesh file paths or trimesh / open3d meshes.
        n_samples: surface samples per mesh for Chamfer, Hausdorff, the normal agreement and sliced W2.
        seed: seed of the surface samples and of the directions.
        n_projections: directions of the sliced estimate.
        exact_samples: samples per mesh for the exact ``W_2`` (``O(N^3)``).
        backend: of Chamfer and Hausdorff: ``"auto"``, ``"keops"`` or ``"dense"``.

    Returns:
        A dict: ``chamfer``, ``hausdorff``, ``normal_agreement``, ``sliced_w2`` and its standard error
        ``sliced_w2_stderr``, ``exact_w2``, ``normal_smoothness`` (of ``mesh``),
        ``self_intersection_fraction`` (of ``mesh``), and what was done: ``normalization``
        (``"target bounding-box diagonal -> 1, centre -> origin"``), ``scale``, ``offset`` (3 floats),
        ``n_samples``, ``seed``, ``n_projections``, ``exact_samples``.

    Raises:
        TypeError, ValueError: naming ``mesh``, ``target`` or the option; ``target`` when its
            vertices all coincide (no size to scale to).
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    exact_samples = check_positive_int(exact_samples, "exact_samples")
    n_projections = check_positive_int(n_projections, "n_projections")
    (v, f), (vt, ft) = _mesh(mesh, "mesh"), _mesh(target, "target")
    lo, hi = vt.min(0), vt.max(0)
    diagonal = float(np.linalg.norm(hi - lo))
    if not diagonal > 0:
        raise ValueError(f"target: expected a mesh of positive size, got all {len(vt)} vertices at {vt[0].tolist()}")
    offset = 0.5 * (lo + hi)
    scale = 1.0 / diagonal
    a, b = ((v - offset) * scale, f), ((vt - offset) * scale, ft)
    sliced, stderr = _sliced(a, b, n_samples, seed, n_projections, ("mesh", "target"))
    return {
        "chamfer": chamfer(a, b, n_samples=n_samples, seed=seed, backend=backend),
        "hausdorff": hausdorff(a, b, n_samples=n_samples, seed=seed, backend=backend),
        "normal_agreement": normal_agreement(a, b, n_samples=n_samples, seed=seed),
        "sliced_w2": sliced,
        "sliced_w2_stderr": stderr,
        "exact_w2": exact_w2(a, b, n_samples=exact_samples, seed=seed),
        "normal_smoothness": normal_smoothness(*a),
        "self_intersection_fraction": self_intersection_fraction(*a),
        "normalization": "target bounding-box diagonal -> 1, centre -> origin",
        "scale": scale,
        "offset": offset.tolist(),
        "n_samples": n_samples,
        "seed": seed,
        "n_projections": n_projections,
        "exact_samples": exact_samples,
    }
