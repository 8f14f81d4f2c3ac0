"""Generated shape pairs with exact ground truth, for tests and the benchmark.

* :func:`permuted_bent_pair`: a mesh, and a smooth near-isometric bending of it
  (:func:`geom_datasets.shapes.bend`) under a random vertex permutation; ground truth exact.
* :func:`remeshed_pair`: a mesh and another triangulation of the same surface (open3d's quadric
  decimation to a fraction of the faces, then the same bending applied to it); ground truth: the
  target vertex nearest the bent image of each source vertex (within about half an edge of the
  nearest point on the surface). Needs open3d.
* :func:`partial_pair`: a plane cut keeping a share of the faces (:func:`geom_datasets.shapes.partial_scan`)
  matched onto the whole bent, permuted shape; ground truth exact.

Each pair is a dict: ``source`` and ``target`` ``(vertices, faces)``, ``truth (n_source,)`` target
vertex of each source vertex, and ``symmetry`` (None unless given for the base shape).
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int
from ..spectral import mesh_arrays

__all__ = ["partial_pair", "permuted_bent_pair", "reflection_symmetry", "remeshed_pair"]


def permuted_bent_pair(vertices, faces, *, strength: float = 0.3, seed: int = 0, symmetry=None,
                       rotate: bool = False) -> dict:
    """``source = (V, F)``; ``target`` = its bending by ``strength`` with vertex ``j`` of the target the
    image of source vertex ``perm[j]`` (a permutation drawn from ``seed``); ``rotate``: the target also
    turned by a uniform random rotation about its centroid (drawn from ``seed``), so that methods
    which use the pose (ICP from the identity) get no help from it."""
    from geom_datasets import shapes  # the datasets' bend generator (same distribution)

    v, f = mesh_arrays(vertices, faces)
    seed = check_int(seed, "seed")
    rng = np.random.default_rng(seed)
    bent, _ = shapes.bend((v, f), strength, int(rng.integers(2**31)))
    perm = rng.permutation(len(v))  # target j = bent[perm[j]]
    inv = np.argsort(perm)
    moved = np.asarray(bent, np.float64)
    if rotate:
        import scipy.spatial.transform as tr

        c = moved.mean(0)
        moved = (moved - c) @ tr.Rotation.random(random_state=rng).as_matrix().T + c
    target = (moved[perm], inv[f])
    sym = None
    if symmetry is not None:  # a symmetry s of the source: on the target, j -> inv[s[perm[j]]]
        s = np.asarray(symmetry, np.int64)
        sym = inv[s[perm]]
    return {"source": (v, f), "target": target, "truth": inv, "symmetry": sym}


def reflection_symmetry(vertices, axis: int = 0, *, tol: float = 1e-3) -> np.ndarray | None:
    """The vertex map of the reflection ``x_axis -> -x_axis`` about the centroid when it maps the vertex
    set onto itself (each reflected vertex within ``tol * diameter`` of a vertex), else None."""
    v = np.asarray(vertices, np.float64)
    c = v - v.mean(0)
    r = c.copy()
    r[:, axis] *= -1
    import scipy.spatial

    d, j = scipy.spatial.cKDTree(c).query(r)
    diam = float(np.linalg.norm(c.max(0) - c.min(0)))
    return j.astype(np.int64) if d.max() <= tol * diam else None


def remeshed_pair(vertices, faces, *, fraction: float = 0.5, strength: float = 0.3, seed: int = 0) -> dict:
    """``source = (V, F)``; ``target`` = a quadric decimation to ``fraction`` of the faces, bent by the
    same smooth field as the source's image would be (:func:`geom_datasets.shapes.bend`, ``seed``)."""
    try:
        import open3d as o3d
    except ImportError as exc:
        raise ImportError("remeshed_pair: decimation needs open3d: pip install 'geom[open3d]'") from exc
    from geom_datasets import shapes

    from .._checks import check_real

    v, f = mesh_arrays(vertices, faces)
    fraction = check_real(fraction, "fraction", "in (0, 1)", lambda x: 0 < x < 1)
    rng = np.random.default_rng(check_int(seed, "seed"))
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f.astype(np.int32)))
    low = mesh.simplify_quadric_decimation(max(4, int(fraction * len(f))))
    low.remove_unreferenced_vertices()
    vl, fl = np.asarray(low.vertices, np.float64), np.asarray(low.triangles, np.int64)
    _, _, field = shapes.bend((v, f), strength, int(rng.integers(2**31)), return_field=True)
    target = (vl + field(vl), fl)
    import scipy.spatial

    _, truth = scipy.spatial.cKDTree(target[0]).query(v + field(v))
    return {"source": (v, f), "target": target, "truth": truth.astype(np.int64), "symmetry": None}


def partial_pair(vertices, faces, *, fraction: float = 0.7, strength: float = 0.3, seed: int = 0,
                 rotate: bool = False) -> dict:
    """``source`` = the faces below a plane cut normal to a random direction (``fraction`` of them,
    :func:`geom_datasets.shapes.partial_scan`); ``target`` = the whole shape bent and permuted as in
    :func:`permuted_bent_pair` (same ``seed``); ``truth`` maps each kept vertex to its image."""
    from geom_datasets import shapes

    full = permuted_bent_pair(vertices, faces, strength=strength, seed=seed, rotate=rotate)
    v, f = full["source"]
    pv, pf, index = shapes.partial_scan((v, f), mode="cut", fraction=fraction, seed=seed, return_index=True)
    pv, pf, keep = _largest_component(np.asarray(pv, np.float64), pf)  # a cut may leave islands
    return {"source": (pv, pf), "target": full["target"], "truth": full["truth"][index[keep]], "symmetry": None}


def _largest_component(v: np.ndarray, f: np.ndarray):
    """The largest edge-connected piece of a mesh, re-indexed, and the kept vertices' old indices."""
    import scipy.sparse as sp
    import scipy.sparse.csgraph as cg

    i, j = f.ravel(), np.roll(f, 1, axis=1).ravel()
    _, label = cg.connected_components(sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(len(v), len(v))),
                                       directed=False)
    big = np.bincount(label).argmax()
    keep = np.flatnonzero(label == big)
    new = np.full(len(v), -1)
    new[keep] = np.arange(len(keep))
    faces = new[f[(label[f] == big).all(1)]]
    return v[keep], faces, keep
