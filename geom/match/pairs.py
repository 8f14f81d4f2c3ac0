"""Generated shape pairs with ground truth, for tests and the benchmark.

* :func:`permuted_bent_pair`: a mesh, and its image under a smooth displacement field (the datasets'
  near-isometric bending, :func:`geom_datasets.shapes.bend` with ``return_field=True``), an optional
  random rotation and a random vertex permutation; ground truth exact.
* :func:`remeshed_pair`: a mesh and another triangulation of the same surface (open3d's quadric
  decimation to a fraction of the faces), both moved by the same field; ground truth: the target
  vertex nearest the image of each source vertex. Needs open3d.
* :func:`partial_pair`: the faces below a random plane cut (largest piece) matched onto the whole
  moved, permuted shape; ground truth exact.

The field is passed in (geom's core never imports the datasets package): ``field(x (n, 3)) -> (n, 3)``
displacements, None for none. Each pair is a dict: ``source`` and ``target`` ``(vertices, faces)``,
``truth (n_source,)`` the target vertex of each source vertex, and ``symmetry`` (None unless given).
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_real
from ..spectral import mesh_arrays

__all__ = ["partial_pair", "permuted_bent_pair", "reflection_symmetry", "remeshed_pair"]


def _moved(v: np.ndarray, field) -> np.ndarray:
    if field is None:
        return v.copy()
    if not callable(field):
        raise TypeError(f"field: expected a callable (n, 3) -> (n, 3) displacements or None, got {type(field).__name__}")
    u = np.asarray(field(v), dtype=np.float64)
    if u.shape != v.shape or not np.isfinite(u).all():
        raise ValueError(f"field: expected finite displacements of shape {v.shape}, got {u.shape}")
    return v + u


def permuted_bent_pair(vertices, faces, *, field=None, seed: int = 0, symmetry=None, rotate: bool = False) -> dict:
    """``source = (V, F)``; ``target`` = its image under ``field``, turned by a uniform random rotation
    about the centroid when ``rotate`` (so that pose-based methods get no help), with vertex ``j`` of
    the target the image of source vertex ``perm[j]`` (rotation and permutation drawn from ``seed``).
    ``symmetry``: a vertex map of a symmetry of the source, carried to the target."""
    v, f = mesh_arrays(vertices, faces)
    rng = np.random.default_rng(check_int(seed, "seed"))
    moved = _moved(v, field)
    if rotate:
        import scipy.spatial.transform as tr

        c = moved.mean(0)
        moved = (moved - c) @ tr.Rotation.random(random_state=rng).as_matrix().T + c
    perm = rng.permutation(len(v))  # target j = moved[perm[j]]
    inv = np.argsort(perm)
    sym = None
    if symmetry is not None:  # a symmetry s of the source: on the target, j -> inv[s[perm[j]]]
        sym = inv[np.asarray(symmetry, np.int64)[perm]]
    return {"source": (v, f), "target": (moved[perm], inv[f]), "truth": inv, "symmetry": sym}


def remeshed_pair(vertices, faces, *, field=None, fraction: float = 0.5) -> dict:
    """``source = (V, F)``; ``target`` = a quadric decimation to ``fraction`` of the faces, moved by
    ``field``; ``truth``: the target vertex nearest each moved source vertex."""
    try:
        import open3d as o3d
    except ImportError as exc:
        raise ImportError("remeshed_pair: decimation needs open3d: pip install 'geom[open3d]'") from exc
    import scipy.spatial

    v, f = mesh_arrays(vertices, faces)
    fraction = check_real(fraction, "fraction", "in (0, 1)", lambda x: 0 < x < 1)
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f.astype(np.int32)))
    low = mesh.simplify_quadric_decimation(max(4, int(fraction * len(f))))
    low.remove_unreferenced_vertices()
    vl, fl = np.asarray(low.vertices, np.float64), np.asarray(low.triangles, np.int64)
    target = (_moved(vl, field), fl)
    _, truth = scipy.spatial.cKDTree(target[0]).query(_moved(v, field))
    return {"source": (v, f), "target": target, "truth": truth.astype(np.int64), "symmetry": None}


def partial_pair(vertices, faces, *, field=None, fraction: float = 0.7, seed: int = 0, rotate: bool = False) -> dict:
    """``source`` = the faces whose centroids lie lowest along a random direction (``fraction`` of
    them, drawn from ``seed``; the largest connected piece); ``target`` = the whole shape as in
    :func:`permuted_bent_pair`; ``truth`` maps each kept vertex to its image."""
    full = permuted_bent_pair(vertices, faces, field=field, seed=seed, rotate=rotate)
    v, f = full["source"]
    fraction = check_real(fraction, "fraction", "in (0, 1]", lambda x: 0 < x <= 1)
    d = np.random.default_rng([check_int(seed, "seed"), 1]).standard_normal(3)
    height = v[f].mean(1) @ (d / np.linalg.norm(d))  # (F,)
    kept = f[np.argsort(height, kind="stable")[: int(np.ceil(fraction * len(f)))]]
    pv, pf, index = _largest_component(v, kept)
    return {"source": (pv, pf), "target": full["target"], "truth": full["truth"][index], "symmetry": None}


def _largest_component(v: np.ndarray, f: np.ndarray):
    """The largest edge-connected piece of the mesh ``(v, f)`` (unused vertices dropped), re-indexed,
    and the kept vertices' indices in ``v``."""
    import scipy.sparse as sp
    import scipy.sparse.csgraph as cg

    i, j = f.ravel(), np.roll(f, 1, axis=1).ravel()
    graph = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(len(v), len(v)))
    _, label = cg.connected_components(graph, directed=False)
    used = np.zeros(len(v), bool)
    used[f.ravel()] = True
    big = np.bincount(label[used]).argmax()
    keep = np.flatnonzero(used & (label == big))
    new = np.full(len(v), -1)
    new[keep] = np.arange(len(keep))
    return v[keep], new[f[(label[f] == big).all(1)]], keep


def reflection_symmetry(vertices, axis: int = 0, *, tol: float = 1e-3) -> np.ndarray | None:
    """The vertex map of the reflection ``x_axis -> -x_axis`` about the centroid when it maps the vertex
    set onto itself (each reflected vertex within ``tol * diameter`` of a vertex), else None."""
    import scipy.spatial

    v = np.asarray(vertices, np.float64)
    c = v - v.mean(0)
    r = c.copy()
    r[:, axis] *= -1
    d, j = scipy.spatial.cKDTree(c).query(r)
    diam = float(np.linalg.norm(c.max(0) - c.min(0)))
    return j.astype(np.int64) if d.max() <= tol * diam else None
