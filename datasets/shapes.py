"""Procedural shapes the project generates itself, and the bundled sample files made from them.

Every factory returns a closed, outward-oriented triangle mesh as ``(vertices, faces)``:
``vertices`` is a float32 ``(V, 3)`` array, ``faces`` an int64 ``(F, 3)`` array of vertex indices.
The geometry is computed in float64 with numpy and cast at the end, so the closed forms (a sphere's
vertices lie at ``radius``, a torus's satisfy ``(sqrt(x^2 + y^2) - R)^2 + z^2 = r^2``) hold to float32
precision. Random shapes (:func:`noisy_sphere`, :func:`noisy`, :func:`partial_scan`, :func:`bend`)
take a ``seed`` and draw only from ``numpy.random.default_rng(seed)``.

Beyond the bundled samples: :func:`capsule` and :func:`torus_knot` (closed tubes), and three
operations on any mesh ``(vertices, faces)``: :func:`noisy` (seeded noise along the vertex normals),
:func:`partial_scan` (the faces a scanner sees from one direction, or a plane cut: an open mesh) and
:func:`bend` (a smooth seeded deformation that keeps the faces, so vertex ``i`` of the result is the
image of vertex ``i``: a ground-truth correspondence).

The files under ``datasets/samples/`` are written by :func:`write_samples`::

    python -m geom_datasets.shapes datasets/samples

>>> v, f = sphere(radius=2.0, subdivisions=1)
>>> v.shape, f.shape, v.dtype, f.dtype
((42, 3), (80, 3), dtype('float32'), dtype('int64'))
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Callable

import numpy as np

__all__ = [
    "SAMPLES",
    "bend",
    "capsule",
    "cube",
    "ellipsoid",
    "icosphere",
    "mesh_bytes",
    "noisy",
    "noisy_sphere",
    "partial_scan",
    "sphere",
    "torus",
    "torus_knot",
    "torus_knot_curve",
    "vertex_normals",
    "write_samples",
]

Mesh = tuple[np.ndarray, np.ndarray]

_T = (1.0 + math.sqrt(5.0)) / 2.0
_ICOSAHEDRON_VERTICES = np.array(
    [
        [-1, _T, 0], [1, _T, 0], [-1, -_T, 0], [1, -_T, 0],
        [0, -1, _T], [0, 1, _T], [0, -1, -_T], [0, 1, -_T],
        [_T, 0, -1], [_T, 0, 1], [-_T, 0, -1], [-_T, 0, 1],
    ],
    dtype=np.float64,
)  # (12, 3)
_ICOSAHEDRON_FACES = np.array(
    [
        [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
        [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
        [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
        [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
    ],
    dtype=np.int64,
)  # (20, 3), counter-clockwise seen from outside


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite positive number, got {value!r}")
    return float(value)


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _finish(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    return np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.int64)


def icosphere(subdivisions: int = 3) -> Mesh:
    """Unit icosphere in float64: an icosahedron whose faces are split in four ``subdivisions`` times.

    Every step puts a vertex at the midpoint of each edge (shared edges get one vertex) and pushes
    all vertices back onto the unit sphere.

    Returns:
        ``vertices (10 * 4**s + 2, 3)`` float64 unit vectors and ``faces (20 * 4**s, 3)`` int64.
    """
    subdivisions = _check_int(subdivisions, "subdivisions", 0)
    vertices = _ICOSAHEDRON_VERTICES / np.linalg.norm(_ICOSAHEDRON_VERTICES, axis=1, keepdims=True)
    faces = _ICOSAHEDRON_FACES
    for _ in range(subdivisions):
        edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)  # (3F, 2)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)  # (E, 2), (3F,)
        mids = vertices[unique].mean(axis=1)  # (E, 3)
        mid = (len(vertices) + inverse.reshape(-1)).reshape(-1, 3)  # (F, 3): ab, bc, ca
        a, b, c = faces.T
        ab, bc, ca = mid.T
        faces = np.concatenate(
            [np.stack(t, axis=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]
        )  # (4F, 3)
        vertices = np.concatenate([vertices, mids])
        vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    return vertices, faces


def sphere(radius: float = 1.0, subdivisions: int = 3) -> Mesh:
    """Icosphere of the given ``radius``: every vertex at distance ``radius`` from the origin.

    Returns:
        ``vertices (V, 3)`` float32, ``faces (F, 3)`` int64 with ``V = 10 * 4**subdivisions + 2``.
    """
    radius = _check_positive(radius, "radius")
    vertices, faces = icosphere(subdivisions)
    return _finish(vertices * radius, faces)


def ellipsoid(axes=(1.3, 1.0, 0.7), subdivisions: int = 3) -> Mesh:
    """Icosphere stretched by the semi-axes ``axes = (a, b, c)``: ``(x/a)^2 + (y/b)^2 + (z/c)^2 = 1``."""
    try:
        values = [float(a) for a in axes]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"axes: expected three positive numbers, got {axes!r}") from exc
    if len(values) != 3:
        raise ValueError(f"axes: expected three semi-axes, got {len(values)}")
    scale = np.array([_check_positive(a, f"axes[{i}]") for i, a in enumerate(values)])  # (3,)
    vertices, faces = icosphere(subdivisions)
    return _finish(vertices * scale, faces)


def noisy_sphere(sigma: float = 0.03, seed: int = 0, radius: float = 1.0, subdivisions: int = 3) -> Mesh:
    """Icosphere whose vertices are moved along their normals by seeded Gaussian noise.

    Vertex ``k`` lands at distance ``radius + sigma * z_k`` from the origin, ``z_k ~ N(0, 1)`` drawn
    from ``numpy.random.default_rng(seed)``; its direction is the clean sphere's.
    """
    sigma = _check_positive(sigma, "sigma")
    radius = _check_positive(radius, "radius")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__} {seed!r}")
    vertices, faces = icosphere(subdivisions)
    z = np.random.default_rng(seed).standard_normal(len(vertices))  # (V,)
    return _finish(vertices * (radius + sigma * z)[:, None], faces)


def torus(R: float = 1.0, r: float = 0.35, n_major: int = 48, n_minor: int = 24) -> Mesh:
    """Ring torus around the z axis, sampled on an ``n_major x n_minor`` grid of angles.

    Vertex ``(i, j)`` is ``((R + r cos v) cos u, (R + r cos v) sin u, r sin v)`` with
    ``u = 2 pi i / n_major`` and ``v = 2 pi j / n_minor``, so every vertex satisfies
    ``(sqrt(x^2 + y^2) - R)^2 + z^2 = r^2``.

    Returns:
        ``vertices (n_major * n_minor, 3)`` float32, ``faces (2 * n_major * n_minor, 3)`` int64.
    """
    R, r = _check_positive(R, "R"), _check_positive(r, "r")
    if r >= R:
        raise ValueError(f"r: expected a tube radius smaller than R={R} (a ring torus), got {r}")
    n_major, n_minor = _check_int(n_major, "n_major", 3), _check_int(n_minor, "n_minor", 3)
    u = 2 * np.pi * np.arange(n_major) / n_major  # (n_major,)
    v = 2 * np.pi * np.arange(n_minor) / n_minor  # (n_minor,)
    U, V = np.meshgrid(u, v, indexing="ij")  # (n_major, n_minor)
    ring = R + r * np.cos(V)
    vertices = np.stack([ring * np.cos(U), ring * np.sin(U), r * np.sin(V)], axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    i1, j1 = (i + 1) % n_major, (j + 1) % n_minor
    a, b, c, d = (i * n_minor + j), (i1 * n_minor + j), (i1 * n_minor + j1), (i * n_minor + j1)
    # d/du x d/dv points away from the tube's core circle, so (a, b, c) is counter-clockwise outside
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return _finish(vertices, faces)


def cube(size: float = 1.5, divisions: int = 8) -> Mesh:
    """Axis-aligned cube of edge ``size`` centred at the origin, each face a ``divisions`` x
    ``divisions`` grid of squares split into two triangles (so faces are small and evenly spread).

    Returns:
        ``vertices (6 * divisions**2 + 2, 3)`` float32, ``faces (12 * divisions**2, 3)`` int64.
    """
    size = _check_positive(size, "size")
    n = _check_int(divisions, "divisions", 1)
    h = size / 2
    grid = np.linspace(-h, h, n + 1)  # shared by every face, so edge vertices coincide exactly
    G1, G2 = np.meshgrid(grid, grid, indexing="ij")  # (n+1, n+1)
    k = np.arange(n + 1)
    K1, K2 = np.meshgrid(k[:-1], k[:-1], indexing="ij")  # (n, n) lower-left corners
    p00, p10 = K1 * (n + 1) + K2, (K1 + 1) * (n + 1) + K2
    p11, p01 = p10 + 1, p00 + 1
    quad = np.concatenate([np.stack([p00, p10, p11], -1).reshape(-1, 3), np.stack([p00, p11, p01], -1).reshape(-1, 3)])
    vertices, faces = [], []
    for axis in range(3):
        b, c = (axis + 1) % 3, (axis + 2) % 3  # e_b x e_c = e_axis
        for sign in (1.0, -1.0):
            pts = np.empty((n + 1, n + 1, 3))
            pts[..., axis], pts[..., b], pts[..., c] = sign * h, G1, G2
            tri = quad if sign > 0 else quad[:, ::-1]
            faces.append(tri + sum(len(p) for p in vertices))
            vertices.append(pts.reshape(-1, 3))
    vertices, faces = np.concatenate(vertices), np.concatenate(faces)
    unique, inverse = np.unique(vertices, axis=0, return_inverse=True)  # merge shared edge vertices
    return _finish(unique, inverse.reshape(-1)[faces])


# ----------------------------------------------------------------- tubes and operations on meshes


def _grid_faces(n_rows: int, n_cols: int, *, wrap_rows: bool) -> np.ndarray:
    """Two triangles per cell of a grid whose vertex ``(i, j)`` has index ``i * n_cols + j``.

    Columns wrap around; rows wrap when ``wrap_rows``. Each triangle's normal points along
    ``d/dcol x d/drow``, so a grid whose column direction crossed with its row direction points
    outward is outward-oriented.
    """
    i, j = np.meshgrid(np.arange(n_rows if wrap_rows else n_rows - 1), np.arange(n_cols), indexing="ij")
    i1, j1 = (i + 1) % n_rows, (j + 1) % n_cols
    a, b, c, d = i * n_cols + j, i * n_cols + j1, i1 * n_cols + j1, i1 * n_cols + j
    return np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])


def capsule(radius: float = 0.5, length: float = 1.0, n_around: int = 32, n_cap: int = 8, n_length: int = 8) -> Mesh:
    """Capsule along the z axis: the points at distance ``radius`` from the segment
    ``[(0, 0, -length/2), (0, 0, length/2)]`` (a cylinder closed by two hemispheres).

    A surface of revolution: ``n_cap`` rings per hemisphere (equal steps of polar angle),
    ``n_length - 1`` rings inside the cylinder, ``n_around`` vertices per ring, and the two poles.
    Every vertex lies exactly on the capsule.

    Returns:
        ``vertices (n_around * (2 n_cap + n_length - 1) + 2, 3)`` float32 and
        ``faces (2 n_around * (2 n_cap + n_length - 2) + 2 n_around, 3)`` int64.
    """
    r, length = _check_positive(radius, "radius"), _check_positive(length, "length")
    n_around = _check_int(n_around, "n_around", 3)
    n_cap, n_length = _check_int(n_cap, "n_cap", 1), _check_int(n_length, "n_length", 1)
    h = length / 2
    a = 0.5 * np.pi * np.arange(1, n_cap + 1) / n_cap  # (n_cap,) polar angle from each pole
    z_cyl = -h + length * np.arange(1, n_length) / n_length  # (n_length - 1,)
    rho = np.concatenate([r * np.sin(a), np.full(n_length - 1, r), r * np.sin(a[::-1])])  # (K,) bottom to top
    z = np.concatenate([-h - r * np.cos(a), z_cyl, h + r * np.cos(a[::-1])])  # (K,)
    return _finish(*_revolve(rho, z, -h - r, h + r, n_around))


def _revolve(rho: np.ndarray, z: np.ndarray, z_bottom: float, z_top: float, n_around: int) -> Mesh:
    """Closed surface of revolution about z: rings ``(rho_k, z_k)`` listed bottom to top, two poles."""
    u = 2 * np.pi * np.arange(n_around) / n_around  # (n_around,)
    zz = np.broadcast_to(z[:, None], (len(z), n_around))
    rings = np.stack([rho[:, None] * np.cos(u), rho[:, None] * np.sin(u), zz], -1)  # (K, n_around, 3)
    vertices = np.concatenate([[[0.0, 0.0, z_bottom]], rings.reshape(-1, 3), [[0.0, 0.0, z_top]]])  # (K n + 2, 3)
    # d/du x d/dz points away from the axis: the grid (rows = rings upward, columns = angle) is outward
    j, j1 = np.arange(n_around), (np.arange(n_around) + 1) % n_around
    last, top = 1 + (len(z) - 1) * n_around, len(vertices) - 1
    faces = np.concatenate([
        np.stack([np.zeros_like(j), 1 + j1, 1 + j], -1),  # bottom fan, facing -z
        1 + _grid_faces(len(z), n_around, wrap_rows=False),
        np.stack([np.full_like(j, top), last + j, last + j1], -1),  # top fan, facing +z
    ])
    return vertices, faces


def _coprime_knot(p, q) -> tuple[int, int]:
    p, q = _check_int(p, "p", 1), _check_int(q, "q", 1)
    if math.gcd(p, q) != 1:
        raise ValueError(f"q: expected p and q coprime (a (p, q) torus knot is one closed curve), got p={p}, q={q}")
    return p, q


def torus_knot_curve(t, p: int = 2, q: int = 3, R: float = 1.0, r: float = 0.4) -> np.ndarray:
    """Centre curve of :func:`torus_knot` at parameters ``t`` (any shape ``S``), as ``(*S, 3)`` float64:
    ``((R + r cos qt) cos pt, (R + r cos qt) sin pt, r sin qt)``, winding ``p`` times around the z
    axis and ``q`` times around the core circle of the torus ``(R, r)``."""
    t = np.asarray(t, dtype=np.float64)
    ring = R + r * np.cos(q * t)
    return np.stack([ring * np.cos(p * t), ring * np.sin(p * t), r * np.sin(q * t)], -1)


def torus_knot(
    p: int = 2, q: int = 3, R: float = 1.0, r: float = 0.4, tube: float = 0.12, n_along: int = 256, n_around: int = 16
) -> Mesh:
    """Tube of radius ``tube`` around the ``(p, q)`` torus knot :func:`torus_knot_curve` (the trefoil
    by default).

    Ring ``k`` sits at ``c(t_k)``, ``t_k = 2 pi k / n_along``, in the plane normal to the curve's
    tangent: vertex ``(k, j)`` is ``c(t_k) + tube (cos v_j N_k + sin v_j B_k)``, so it is at distance
    ``tube`` from the centre curve. The normal ``N_k`` is carried along the curve by parallel transport
    and the closing twist is spread evenly over the rings, so the frame turns as little as possible
    and joins up after one loop. ``p`` and ``q`` must be coprime; ``tube < r`` is required, and the
    defaults give a tube that does not touch itself.

    Returns:
        ``vertices (n_along * n_around, 3)`` float32, ``faces (2 n_along n_around, 3)`` int64.
    """
    p, q = _coprime_knot(p, q)
    R, r, tube = _check_positive(R, "R"), _check_positive(r, "r"), _check_positive(tube, "tube")
    if r >= R:
        raise ValueError(f"r: expected a torus radius smaller than R={R}, got {r}")
    if tube >= r:
        raise ValueError(f"tube: expected a tube radius smaller than r={r}, got {tube}")
    n_along, n_around = _check_int(n_along, "n_along", 3), _check_int(n_around, "n_around", 3)
    t = 2 * np.pi * np.arange(n_along) / n_along  # (K,)
    centre = torus_knot_curve(t, p, q, R, r)  # (K, 3)
    ring = R + r * np.cos(q * t)
    tangent = np.stack([
        -q * r * np.sin(q * t) * np.cos(p * t) - p * ring * np.sin(p * t),
        -q * r * np.sin(q * t) * np.sin(p * t) + p * ring * np.cos(p * t),
        q * r * np.cos(q * t),
    ], -1)  # (K, 3) = c'(t)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.empty_like(tangent)  # (K, 3) parallel transport: project the previous normal
    seed = np.cross(tangent[0], [0.0, 0.0, 1.0] if abs(tangent[0, 2]) < 0.9 else [1.0, 0.0, 0.0])
    normal[0] = seed / np.linalg.norm(seed)
    for k in range(1, n_along + 1):
        n = normal[k - 1] - (normal[k - 1] @ tangent[k % n_along]) * tangent[k % n_along]
        n /= np.linalg.norm(n)
        if k < n_along:
            normal[k] = n
    twist = math.atan2(np.cross(normal[0], n) @ tangent[0], normal[0] @ n)  # transported N_0 = R(twist) N_0
    alpha = -twist * np.arange(n_along) / n_along  # (K,) undo the twist gradually
    binormal = np.cross(tangent, normal)
    normal = np.cos(alpha)[:, None] * normal + np.sin(alpha)[:, None] * binormal
    binormal = np.cross(tangent, normal)  # (K, 3)
    v = 2 * np.pi * np.arange(n_around) / n_around  # (J,)
    offset = np.cos(v)[None, :, None] * normal[:, None] + np.sin(v)[None, :, None] * binormal[:, None]  # (K, J, 3)
    vertices = (centre[:, None] + tube * offset).reshape(-1, 3)
    # d/dv x d/dt = (outward offset) |c'|: rows = rings along the curve, columns = angle around it
    return _finish(vertices, _grid_faces(n_along, n_around, wrap_rows=True))


def _as_mesh(mesh, name: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (V, 3) float64, faces (F, 3) int64)`` from a ``(vertices, faces)`` pair or a trimesh."""
    if hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        mesh = (mesh.vertices, mesh.faces)
    if not isinstance(mesh, (tuple, list)) or len(mesh) != 2:
        raise TypeError(f"{name}: expected a (vertices, faces) pair, got {type(mesh).__name__}")
    v, f = np.asarray(mesh[0]), np.asarray(mesh[1])
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or v.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected vertices of shape (V, 3), got shape {v.shape} and dtype {v.dtype}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: expected finite vertex coordinates, got NaN or inf")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.dtype.kind not in "iu":
        raise ValueError(
            f"{name}: expected faces as a non-empty (F, 3) integer array, got shape {f.shape} and dtype {f.dtype}"
        )
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"{name}: expected face indices in [0, {len(v)}), got values in [{f.min()}, {f.max()}]")
    return v.astype(np.float64), f.astype(np.int64)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed: expected a non-negative int, got {type(seed).__name__} {seed!r}")
    return int(seed)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals ``(V, 3)`` float64 (zero for a vertex in no face)."""
    v, f = _as_mesh((vertices, faces))
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # (F, 3), |.| = 2 area
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, f[:, k], cross)
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)


def noisy(mesh, sigma: float = 0.01, seed: int = 0, *, along_normals: bool = True) -> Mesh:
    """The mesh with seeded Gaussian noise on its vertices, faces unchanged.

    With ``along_normals`` vertex ``k`` moves by ``sigma * z_k * n_k`` (``z_k ~ N(0, 1)``, ``n_k`` its
    unit area-weighted normal), the usual model of a range scanner's depth noise; otherwise by
    ``sigma * z_k`` with ``z_k ~ N(0, I_3)``. Draws come from ``numpy.random.default_rng(seed)``.
    """
    v, f = _as_mesh(mesh)
    sigma, seed = _check_positive(sigma, "sigma"), _check_seed(seed)
    rng = np.random.default_rng(seed)
    if along_normals:
        moved = v + sigma * rng.standard_normal(len(v))[:, None] * vertex_normals(v, f)
    else:
        moved = v + sigma * rng.standard_normal(v.shape)
    return _finish(moved, f)


def _unit_direction(direction, rng) -> np.ndarray:
    if direction is None:
        d = rng.standard_normal(3)
    else:
        d = np.asarray(direction, dtype=np.float64)
        if d.shape != (3,) or not np.isfinite(d).all() or not np.linalg.norm(d) > 0:
            raise ValueError(f"direction: expected a nonzero finite 3-vector or None, got {direction!r}")
    return d / np.linalg.norm(d)


def _occluded(origins: np.ndarray, d: np.ndarray, tri: np.ndarray, eps: float, chunk: int = 256) -> np.ndarray:
    """Whether the ray ``origin + t d``, ``t > eps``, hits a triangle (Moller-Trumbore), per origin."""
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]  # (F, 3)
    pvec = np.cross(d, e2)  # (F, 3)
    det = (e1 * pvec).sum(1)  # (F,)
    ok = np.abs(det) > 1e-14 * max(float(np.abs(det).max()), 1e-300)
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    hit = np.zeros(len(origins), dtype=bool)
    for s in range(0, len(origins), chunk):
        tvec = origins[s:s + chunk, None] - v0[None]  # (C, F, 3)
        u = (tvec * pvec).sum(-1) * inv  # (C, F)
        qvec = np.cross(tvec, e1)  # (C, F, 3)
        w = (qvec @ d) * inv
        t = (qvec * e2).sum(-1) * inv
        hit[s:s + chunk] = (ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > eps)).any(1)
    return hit


def partial_scan(mesh, direction=None, *, mode: str = "view", fraction: float = 0.5, seed: int = 0,
                 return_index: bool = False):
    """The part of a mesh that an incomplete scan captures: an open mesh.

    - ``mode="view"``: the faces a camera far away along ``direction`` sees: facing it
      (``cos(n_f, direction) > 1e-6``, so edge-on faces are dropped) and not hidden, i.e. the ray
      from the face's centroid towards the camera meets no other face.
    - ``mode="cut"``: a plane cut normal to ``direction``: the faces whose centroid lies in the lowest
      ``fraction`` of heights ``c_f . direction`` (``fraction`` of the faces, rounded up).

    Unused vertices are dropped and the faces re-indexed, keeping their orientation.

    Args:
        mesh: ``(vertices (V, 3), faces (F, 3))``.
        direction: ``(3,)`` direction from the object towards the camera (``"view"``) or the cut's
            normal (``"cut"``); ``None`` draws a uniform random direction from ``seed``.
        mode: ``"view"`` or ``"cut"``.
        fraction: share of faces kept by ``"cut"``, in ``(0, 1]``.
        seed: seed of ``numpy.random.default_rng`` (used when ``direction`` is ``None``).
        return_index: also return the ``(V',)`` indices of the kept vertices in the input mesh.

    Returns:
        ``vertices (V', 3)`` float32 and ``faces (F', 3)`` int64 (and the index).
    """
    v, f = _as_mesh(mesh)
    seed = _check_seed(seed)
    if mode not in ("view", "cut"):
        raise ValueError(f"mode: expected 'view' or 'cut', got {mode!r}")
    fraction = _check_positive(fraction, "fraction")
    if fraction > 1:
        raise ValueError(f"fraction: expected a share of faces in (0, 1], got {fraction}")
    d = _unit_direction(direction, np.random.default_rng(seed))  # (3,)
    tri = v[f]  # (F, 3, 3)
    centroid = tri.mean(1)  # (F, 3)
    if mode == "view":
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3)
        facing = normal @ d > 1e-6 * np.linalg.norm(normal, axis=1)  # (F,) edge-on faces are not seen
        scale = float(np.linalg.norm(v.max(0) - v.min(0)))
        keep = facing.copy()
        keep[facing] = ~_occluded(centroid[facing], d, tri, 1e-7 * scale)
    else:
        height = centroid @ d  # (F,)
        keep = np.zeros(len(f), dtype=bool)
        keep[np.argsort(height, kind="stable")[: math.ceil(fraction * len(f))]] = True
    if not keep.any():
        raise ValueError(f"direction: no face of the mesh is visible from {d.tolist()}")
    used, faces = np.unique(f[keep], return_inverse=True)  # (V',), re-indexed faces
    out = _finish(v[used], faces.reshape(-1, 3))
    return (*out, used) if return_index else out


def bend(mesh, strength: float = 0.3, seed: int = 0, *, n_centers: int = 4, width: float = 0.5,
         return_field: bool = False):
    """A smooth, seeded random deformation of a mesh; faces unchanged, so vertex ``i`` of the result
    is the image of vertex ``i`` (the ground-truth correspondence).

    Every point moves by ``u(x) = sum_k a_k exp(-|x - c_k|^2 / (2 s^2))``: ``n_centers`` Gaussian
    bumps with centres ``c_k`` uniform in the mesh's bounding box, width ``s = width * diameter``
    (the bounding box's diagonal) and amplitudes ``a_k = strength * s * sqrt(e) * w_k * e_k``
    (``e_k`` uniform unit vectors, ``w`` uniform on the simplex). A bump's Jacobian has norm at most
    ``|a_k| / (s sqrt(e))``, so ``u`` is ``strength``-Lipschitz: ``x -> x + u(x)`` is a diffeomorphism
    of R^3 for ``strength < 1`` (nowhere folds or turns a small face over), and two vertices at
    distance ``l`` move by vectors at most ``strength * l`` apart. The largest displacement is about
    ``1.6 * strength * s``. Draws come from ``numpy.random.default_rng(seed)``; the field depends on
    the vertex positions only, not on their order.

    Args:
        mesh: ``(vertices (V, 3), faces (F, 3))``.
        strength: Lipschitz constant of the displacement, in ``[0, 1)``.
        seed: seed of ``numpy.random.default_rng``.
        n_centers: number of bumps.
        width: bump width relative to the mesh's diameter, ``> 0``.
        return_field: also return the displacement ``u`` as a function ``(N, 3) -> (N, 3)``.

    Returns:
        ``vertices' (V, 3)`` float32 and ``faces (F, 3)`` int64 (a copy of the input's), and ``u``.
    """
    v, f = _as_mesh(mesh)
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.integer, np.floating)):
        raise TypeError(f"strength: expected a number in [0, 1), got {type(strength).__name__} {strength!r}")
    if not 0 <= strength < 1:
        raise ValueError(
            f"strength: expected a Lipschitz constant in [0, 1) (1 or more may fold the surface), got {strength!r}"
        )
    seed, n_centers = _check_seed(seed), _check_int(n_centers, "n_centers", 1)
    lo, hi = v.min(0), v.max(0)
    s = _check_positive(width, "width") * max(float(np.linalg.norm(hi - lo)), 1e-12)
    rng = np.random.default_rng(seed)
    centres = lo + (hi - lo) * rng.random((n_centers, 3))  # (K, 3)
    e = rng.standard_normal((n_centers, 3))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    w = rng.dirichlet(np.ones(n_centers))  # (K,)
    amplitude = float(strength) * s * math.sqrt(math.e) * w[:, None] * e  # (K, 3)

    def field(x):
        x = np.asarray(x, dtype=np.float64)  # (N, 3)
        d2 = ((x[:, None] - centres[None]) ** 2).sum(-1)  # (N, K)
        return np.exp(-d2 / (2 * s * s)) @ amplitude  # (N, 3)

    out = _finish(v + field(v), f.copy())
    return (*out, field) if return_field else out


SAMPLES: dict[str, Callable[[], Mesh]] = {
    "sphere": sphere,
    "torus": torus,
    "cube": cube,
    "ellipsoid": ellipsoid,
    "noisy_sphere": noisy_sphere,
}
"""Name -> factory (called with its defaults) of the bundled sample shapes."""


def mesh_bytes(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """The binary little-endian PLY file of a mesh (float32 vertices, as trimesh exports it)."""
    import trimesh

    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False).export(file_type="ply", encoding="binary")


def write_samples(folder, overwrite: bool = False) -> dict[str, pathlib.Path]:
    """Write every shape of :data:`SAMPLES` to ``folder/<name>.ply`` (binary PLY).

    A file that already holds exactly the generated bytes is left alone. Every existing file that
    differs is reported before anything is written, so a refusal changes nothing.

    Args:
        folder: destination directory, created when missing.
        overwrite: replace existing files whose content differs.

    Returns:
        Name -> path of each sample file.

    Raises:
        FileExistsError: a file differs from the generated one and ``overwrite`` is false.
    """
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"folder: expected a directory, got the file {folder}")
    payloads = {name: mesh_bytes(*factory()) for name, factory in SAMPLES.items()}
    paths = {name: folder / f"{name}.ply" for name in SAMPLES}
    stale = {n: p for n, p in paths.items() if p.exists() and (p.is_dir() or p.read_bytes() != payloads[n])}
    if stale and not overwrite:
        listed = ", ".join(str(p) for p in stale.values())
        raise FileExistsError(
            f"{listed}: already exists with different content than the generated sample; "
            "pass overwrite=True (--overwrite) to replace it"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in paths.items():
        if path.exists() and name not in stale:
            continue
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(payloads[name])
        os.replace(tmp, path)
    return paths


def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m geom_datasets.shapes", description="Write the bundled sample shapes as binary PLY files."
    )
    parser.add_argument("folder", help="destination directory (created when missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace files whose content differs")
    args = parser.parse_args(argv)
    try:
        paths = write_samples(args.folder, overwrite=args.overwrite)
    except OSError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    for name, path in paths.items():
        print(f"{name:<14} {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
