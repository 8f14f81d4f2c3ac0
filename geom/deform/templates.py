"""Templates and their topology: the icosphere, mesh input, edges, the Euler characteristic and genus.

A deformation moves vertices and keeps faces, so the result has the template's topology: the genus
``g`` of a closed orientable surface follows from its Euler characteristic ``V - E + F = 2 - 2g``
(:func:`genus`), and a genus-0 template cannot become a torus.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from .._checks import as_real_tensor, check_int, check_real, describe
from ..io import read_mesh, read_points

__all__ = ["MeshTopology", "as_mesh", "as_target", "genus", "icosphere", "topology"]


def icosphere(level: int = 3, radius: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A subdivided icosahedron projected onto the sphere of ``radius`` about the origin.

    Each level splits every triangle into four at its edge midpoints (a shared edge gets one
    midpoint) and pushes the vertices back onto the sphere. Faces are counter-clockwise seen from
    outside (the right-hand normal points away from the origin).

    Args:
        level: number of subdivisions, ``>= 0``.
        radius: ``> 0``.

    Returns:
        ``vertices (V, 3)`` float64 with ``V = 10 * 4**level + 2``, ``faces (F, 3)`` int64 with
        ``F = 20 * 4**level``.

    >>> v, f = icosphere(1)
    >>> tuple(v.shape), tuple(f.shape)
    ((42, 3), (80, 3))
    """
    level = check_int(level, "level")
    if level > 9:
        raise ValueError(f"level: expected at most 9 (10 * 4**level + 2 vertices), got {level}")
    radius = check_real(radius, "radius", "> 0", lambda r: r > 0)
    t = (1 + math.sqrt(5)) / 2
    v = np.array([[s, u * t, 0] for s in (-1, 1) for u in (1, -1)], dtype=np.float64)
    v = np.concatenate([v, np.roll(v, 1, axis=1), np.roll(v, 2, axis=1)])  # (12, 3): cyclic (±1, ±t, 0)
    # the 20 faces: triples of mutually adjacent vertices (edge length 2), oriented outward
    d = np.linalg.norm(v[:, None] - v[None], axis=-1)
    near = np.isclose(d, 2.0)
    faces = np.array([(i, j, k) for i in range(12) for j in range(i + 1, 12) for k in range(j + 1, 12)
                      if near[i, j] and near[j, k] and near[i, k]], dtype=np.int64)
    outward = np.einsum("fi,fi->f", np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]]),
                        v[faces].sum(1)) > 0
    faces = np.where(outward[:, None], faces, faces[:, ::-1])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(level):
        edges, inverse = np.unique(np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0,
                                   return_inverse=True)
        m = len(v) + inverse.reshape(-1, 3)  # (F, 3): midpoints of ab, bc, ca
        a, b, c = faces.T
        faces = np.concatenate([np.stack(x, 1) for x in ((a, m[:, 0], m[:, 2]), (m[:, 0], b, m[:, 1]),
                                                         (m[:, 2], m[:, 1], c), m.T)])
        v = np.concatenate([v, v[edges].mean(1)])
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    return torch.from_numpy(v * radius), torch.from_numpy(np.ascontiguousarray(faces))


class MeshTopology:
    """The combinatorics of a triangle mesh, from its faces alone.

    Attributes:
        edges: ``(E, 2)`` int64 unique undirected edges ``(i, j)``, ``i < j``.
        edge_faces: ``(E_2, 2)`` int64, the two faces of each edge shared by two faces.
        counts: ``(E,)`` how many faces hold each edge (1 on a boundary, 2 inside, more: non-manifold).
        n_vertices: number of vertices the faces use (unreferenced vertices do not count).
        euler: ``V - E + F``; genus: ``(2 - euler) / 2`` (an integer for a closed connected surface).
    """

    def __init__(self, faces: torch.Tensor):
        f = faces.detach().cpu().long()
        half = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)  # (3F, 2) directed edges, face k owns rows 3k..3k+2
        self.edges, inverse, self.counts = torch.unique(half.sort(1).values, dim=0, return_inverse=True,
                                                        return_counts=True)
        order = torch.argsort(inverse, stable=True)  # half-edges grouped by edge
        owner = order // 3  # (3F,) face of each grouped half-edge
        start = torch.cumsum(self.counts, 0) - self.counts  # (E,) first slot of each edge
        two = (self.counts == 2).nonzero()[:, 0]
        self.edge_faces = torch.stack([owner[start[two]], owner[start[two] + 1]], 1)  # (E_2, 2)
        self.n_vertices = int(torch.unique(f).numel())
        self.euler = self.n_vertices - len(self.edges) + len(f)
        self.genus = (2 - self.euler) / 2


def topology(faces: torch.Tensor) -> MeshTopology:
    """:class:`MeshTopology` of ``(F, 3)`` faces."""
    return MeshTopology(faces)


def genus(faces) -> float:
    """Genus ``(2 - (V - E + F)) / 2`` of a closed surface with ``(F, 3)`` faces (0: a sphere, 1: a torus).

    >>> genus(icosphere(0)[1])
    0.0
    """
    return MeshTopology(torch.as_tensor(np.asarray(faces) if not isinstance(faces, torch.Tensor) else faces)).genus


def as_mesh(obj, name: str, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(vertices, faces)`` tuple (arrays or tensors), a mesh file or a trimesh / open3d mesh ->
    ``vertices (V, 3)`` of ``dtype`` and ``faces (F, 3)`` int64; ValueError / TypeError naming ``name``
    for empty meshes, wrong shapes, indices out of range and non-finite vertices."""
    if isinstance(obj, tuple) and len(obj) == 2:
        v = as_real_tensor(obj[0], f"{name} vertices", "a (V, 3) array").detach().to(dtype)
        f = torch.as_tensor(np.asarray(obj[1]) if not isinstance(obj[1], torch.Tensor) else obj[1])
    elif isinstance(obj, (str, os.PathLike)) or type(obj).__module__.startswith(("trimesh", "open3d")):
        try:
            v, f = (torch.from_numpy(a) for a in read_mesh(obj))
        except (ValueError, OSError) as exc:  # a missing file stays a FileNotFoundError, naming the argument
            raise type(exc)(f"{name}: {str(exc).removeprefix('obj: ')}") from None
        v = v.to(dtype)
    else:
        raise TypeError(f"{name}: expected a (vertices, faces) tuple, a mesh file or a trimesh / open3d mesh, got "
                        f"{describe(obj)}")
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(v) == 0 or len(f) == 0:
        raise ValueError(f"{name}: expected a non-empty mesh, vertices (V, 3) and faces (F, 3) with V, F >= 1, got "
                         f"vertices {tuple(v.shape)} and faces {tuple(f.shape)}")
    if f.is_floating_point() or f.is_complex() or f.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer faces, got dtype {f.dtype}")
    f = f.long()
    if int(f.min()) < 0 or int(f.max()) >= len(v):
        raise ValueError(f"{name}: expected face indices in [0, {len(v)}), got values in [{int(f.min())}, "
                         f"{int(f.max())}]")
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name}: expected finite vertex coordinates, got NaN or inf")
    return v, f


def as_target(obj, name: str, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A mesh (as :func:`as_mesh`) or a point cloud (``(N, 3)`` array or tensor, or a point file)
    -> ``(points (N, 3), faces (F, 3) or None)``."""
    if isinstance(obj, tuple) or type(obj).__module__.startswith(("trimesh", "open3d")):
        return as_mesh(obj, name, dtype)
    if isinstance(obj, (str, os.PathLike)):
        try:
            return as_mesh(obj, name, dtype)
        except ValueError as exc:
            if "has no faces" not in str(exc):
                raise
        return torch.from_numpy(read_points(obj)).to(dtype), None
    x = as_real_tensor(obj, name, "a mesh or an (N, 3) point cloud").detach().to(dtype)
    if x.ndim != 2 or x.shape[1] != 3 or len(x) == 0:
        raise ValueError(f"{name}: expected a mesh or a point cloud of shape (N, 3) with N >= 1, got shape "
                         f"{tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite coordinates, got NaN or inf")
    return x, None
