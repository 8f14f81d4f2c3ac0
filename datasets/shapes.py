"""Procedural shapes the project generates itself, and the bundled sample files made from them.

Every factory returns a closed, outward-oriented triangle mesh as ``(vertices, faces)``:
``vertices`` is a float32 ``(V, 3)`` array, ``faces`` an int64 ``(F, 3)`` array of vertex indices.
The geometry is computed in float64 with numpy and cast at the end, so the closed forms (a sphere's
vertices lie at ``radius``, a torus's satisfy ``(sqrt(x^2 + y^2) - R)^2 + z^2 = r^2``) hold to float32
precision. The only random shape, :func:`noisy_sphere`, takes a ``seed``.

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
    "cube",
    "ellipsoid",
    "icosphere",
    "mesh_bytes",
    "noisy_sphere",
    "sphere",
    "torus",
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
