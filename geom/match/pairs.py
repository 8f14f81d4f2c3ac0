"""Generated shape pairs with exact ground truth, for tests and the benchmark.

* :func:`permuted_bent_pair`: a mesh, and a smooth near-isometric bending of it
  (:func:`geom_datasets.shapes.bend`) under a random vertex permutation; ground truth exact.
* :func:`remeshed_pair`: a mesh and another triangulation of the same surface (vertices resampled on
  it by a seeded jitter along the surface, then re-triangulated); ground truth by the nearest vertex.

Each pair is a dict: ``source`` and ``target`` ``(vertices, faces)``, ``truth (n_source,)`` target
vertex of each source vertex, and ``symmetry`` (None unless given for the base shape).
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int
from ..spectral import mesh_arrays

__all__ = ["permuted_bent_pair", "reflection_symmetry"]


def permuted_bent_pair(vertices, faces, *, strength: float = 0.3, seed: int = 0, symmetry=None) -> dict:
    """``source = (V, F)``; ``target`` = its bending by ``strength`` with vertex ``j`` of the target the
    image of source vertex ``perm[j]`` (a permutation drawn from ``seed``)."""
    from geom_datasets import shapes  # the datasets' bend generator (same distribution)

    v, f = mesh_arrays(vertices, faces)
    seed = check_int(seed, "seed")
    rng = np.random.default_rng(seed)
    bent, _ = shapes.bend((v, f), strength, int(rng.integers(2**31)))
    perm = rng.permutation(len(v))  # target j = bent[perm[j]]
    inv = np.argsort(perm)
    target = (np.asarray(bent, np.float64)[perm], inv[f])
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
