"""Reading shapes from files and from trimesh / open3d objects.

Point formats (.npy .npz .xyz .pcd, and PLY files without faces) give their points as they are;
mesh formats (.ply .obj .off .stl) and mesh objects give ``n_samples`` seeded, area-uniform samples
of their surface (:func:`sample_surface`). trimesh and open3d are imported only when needed, and
.pcd files are read without open3d where it is absent.
"""

from __future__ import annotations

import os
import pathlib
import re
import warnings

import numpy as np

from ._checks import check_positive_int, describe

__all__ = ["ARRAY_SUFFIXES", "SUFFIXES", "read_array", "read_mesh", "read_points", "sample_surface", "surface_draws"]

SUFFIXES = (".npy", ".npz", ".obj", ".off", ".pcd", ".ply", ".stl", ".xyz")
ARRAY_SUFFIXES = (".npy", ".npz")
_ACCEPTED = (
    f"a file path with suffix {', '.join(SUFFIXES)}, a trimesh Trimesh / PointCloud / Scene "
    "or an open3d PointCloud / TriangleMesh"
)


def sample_surface(vertices, faces, n_samples: int, *, seed: int = 0) -> np.ndarray:
    """Seeded, area-uniform samples of a triangle mesh surface.

    Faces are drawn with probability proportional to their area (zero-area faces never), then a
    point uniform in the face through barycentric coordinates ``(1 - sqrt(r1), sqrt(r1) (1 - r2),
    sqrt(r1) r2)`` (:func:`surface_draws`). Only a numpy Generator seeded with ``seed`` is used: same
    seed, same samples.

    Args:
        vertices: ``(V, D)`` coordinates, ``D >= 2``.
        faces: ``(F, 3)`` integer indices into ``vertices``.
        n_samples: number of samples ``N``.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(N, D)`` float32 samples.

    >>> sample_surface([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], 4).shape
    (4, 3)
    """
    face, bary = surface_draws(vertices, faces, n_samples, seed=seed)  # (N,), (N, 3)
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)[face]]  # (N, 3, D)
    return np.einsum("nk,nkd->nd", bary, tri).astype(np.float32)


def surface_draws(vertices, faces, n_samples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The random draws behind :func:`sample_surface`: face indices ``(N,)`` and barycentric
    coordinates ``(N, 3)``; sample ``k`` is ``sum_j bary[k, j] * vertices[faces[face[k], j]]``.

    Callers that need gradients with respect to the vertices (mesh measures) combine the vertices
    themselves with these fixed draws. Inputs are validated as for :func:`sample_surface`.
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] < 2 or v.dtype.kind not in "biuf":
        raise ValueError(f"vertices: expected a numeric array of shape (V, D) with D >= 2, got {describe(v)}")
    if not np.isfinite(v).all():
        raise ValueError("vertices: expected finite coordinates, got NaN or inf")
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0 or f.dtype.kind not in "iu":
        raise ValueError(f"faces: expected a non-empty integer array of shape (F, 3), got {describe(f)}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"faces: expected indices in [0, {len(v)}), got values in [{f.min()}, {f.max()}]")
    tri = v.astype(np.float64)[f]  # (F, 3, D)
    a, b = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]  # (F, D)
    gram = (a * a).sum(1) * (b * b).sum(1) - (a * b).sum(1) ** 2  # (F,) = (2 area)^2
    area = 0.5 * np.sqrt(np.maximum(gram, 0.0))  # (F,)
    if not area.sum() > 0:
        raise ValueError(f"faces: every one of the {len(f)} faces has zero area; there is no surface to sample")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(area)
    cdf /= cdf[-1]
    # side="right" with u < 1 never lands on a face whose cdf step is zero (zero area)
    face = np.searchsorted(cdf, rng.random(n_samples), side="right")  # (N,)
    r1, r2 = rng.random((2, n_samples, 1))  # (N, 1) each
    s = np.sqrt(r1)
    return face, np.concatenate([1 - s, s * (1 - r2), s * r2], 1)  # (N,), (N, 3)


def read_points(obj, *, n_samples: int = 2048, seed: int = 0) -> np.ndarray:
    """Points of a shape: a point cloud's points, or seeded area-uniform samples of a mesh surface.

    Args:
        obj: a path (.ply .obj .off .stl .pcd .xyz .npy .npz), a trimesh ``Trimesh``,
            ``PointCloud`` or ``Scene`` (merged), or an open3d ``PointCloud`` / ``TriangleMesh``.
        n_samples: number of surface samples taken from a mesh (point clouds keep all points).
        seed: seed of the surface sampler.

    Returns:
        ``(N, D)`` float32 points, all finite.
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected a non-negative integer, got {describe(seed)}")
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed}")
    vertices, faces, _ = _load(obj)
    if faces is not None and len(faces):
        return sample_surface(vertices, faces, n_samples, seed=seed)
    return vertices.astype(np.float32)


def read_mesh(obj) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(V, 3)`` float32 and faces ``(F, 3)`` int64 of a mesh file, trimesh or open3d mesh."""
    vertices, faces, where = _load(obj)
    if faces is None or len(faces) == 0:
        raise ValueError(f"obj: {where} has no faces; expected a triangle mesh")
    if vertices.shape[1] != 3:
        raise ValueError(f"obj: {where} has {vertices.shape[1]}-D vertices; expected 3-D vertices")
    return vertices.astype(np.float32), np.asarray(faces, dtype=np.int64)


def _load(obj) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Any accepted input -> (vertices (V, D), faces (F, 3) or None, description), validated."""
    if isinstance(obj, (str, os.PathLike)):
        path = pathlib.Path(obj)
        where = f"file '{path}'"
        vertices, faces = _load_file(path, where)
    else:
        where = describe(obj)
        try:
            vertices, faces = _from_object(obj)
        except ValueError as exc:
            raise ValueError(f"obj: could not read {where}: {exc}") from exc
    vertices = np.asarray(vertices)
    if vertices.dtype.kind not in "biuf":
        raise ValueError(f"obj: {where} holds non-numeric data of dtype {vertices.dtype}")
    if vertices.ndim != 2 or vertices.shape[0] == 0 or vertices.shape[1] == 0:
        raise ValueError(f"obj: {where}: expected points of shape (N, D) with N, D >= 1, got {vertices.shape}")
    bad = ~np.isfinite(vertices)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"obj: {where} has a NaN or inf coordinate at point {row}: {vertices[row].tolist()}")
    return vertices, faces, where


def _load_file(path: pathlib.Path, where: str):
    if not path.exists():
        raise FileNotFoundError(f"obj: no such file '{path}'")
    if path.is_dir():
        raise ValueError(f"obj: '{path}' is a directory; expected a file with suffix {', '.join(SUFFIXES)}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"obj: unsupported suffix {path.suffix!r} of '{path}'; supported: {', '.join(SUFFIXES)}")
    if path.stat().st_size == 0:
        raise ValueError(f"obj: could not read {where}: it is empty (0 bytes)")
    try:
        if suffix in ARRAY_SUFFIXES:
            return _read_array(path, suffix), None
        if suffix == ".xyz":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "Empty input file": checked below
                return np.loadtxt(path, comments="#", usecols=(0, 1, 2), ndmin=2, dtype=np.float64), None
        if suffix == ".pcd":
            return _read_pcd(path), None
        return _read_trimesh_file(path, suffix)
    except (ValueError, OSError, EOFError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"obj: could not read {where} as {suffix[1:].upper()}: {exc}") from exc


def read_array(path) -> np.ndarray:
    """The array of a ``.npy`` file, or of a ``.npz`` archive (its array ``points``, or its only array).

    Any shape: representations other than point clouds read their input from such files (stacks of
    SPD matrices ``(N, n, n)``, unit vectors ``(N, d)``). Errors name the file and what was wrong.
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ValueError(f"obj: expected a .npy or .npz file, got '{path}'")
    if not path.exists():
        raise FileNotFoundError(f"obj: no such file '{path}'")
    try:
        return _read_array(path, suffix)
    except (ValueError, OSError, EOFError, KeyError) as exc:
        raise ValueError(f"obj: could not read file '{path}' as {suffix[1:].upper()}: {exc}") from exc


def _read_array(path: pathlib.Path, suffix: str) -> np.ndarray:
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if "points" not in keys and len(keys) != 1:
            raise ValueError(f"expected an array named 'points' or a single array, got keys {keys}")
        return archive["points" if "points" in keys else keys[0]]


def _read_trimesh_file(path: pathlib.Path, suffix: str):
    import trimesh

    try:
        loaded = trimesh.load(str(path), file_type=suffix[1:], force=None, process=False)
    except Exception as exc:  # trimesh raises many exception types on malformed files
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(loaded, (trimesh.Trimesh, trimesh.PointCloud, trimesh.Scene)):
        raise ValueError(f"it holds a {type(loaded).__name__}, not a mesh or point cloud")
    vertices, faces = _from_object(loaded)
    if suffix == ".ply":  # trimesh silently reads a truncated ASCII PLY: compare with its header
        with open(path, "rb") as fh:
            header = fh.read(65536).split(b"end_header", 1)[0].decode("ascii", "replace")
        declared = dict((k, int(n)) for k, n in re.findall(r"^element\s+(\w+)\s+(\d+)", header, re.M))
        if declared.get("vertex", len(vertices)) != len(vertices):
            raise ValueError(f"header declares {declared['vertex']} vertices, the data holds {len(vertices)}")
        if declared.get("face", 0) > (0 if faces is None else len(faces)):
            raise ValueError(f"header declares {declared['face']} faces, the data holds fewer (truncated?)")
    return vertices, faces


def _from_object(obj):
    """A trimesh / open3d object -> (vertices, faces or None); open3d is never imported here."""
    module, name = type(obj).__module__, type(obj).__name__
    if module.startswith("open3d") and name == "PointCloud":
        return np.asarray(obj.points), None
    if module.startswith("open3d") and name == "TriangleMesh":
        return np.asarray(obj.vertices), np.asarray(obj.triangles)
    if module.startswith("trimesh"):
        import trimesh

        if isinstance(obj, trimesh.Trimesh):
            return np.asarray(obj.vertices), np.asarray(obj.faces)
        if isinstance(obj, trimesh.PointCloud):
            return np.asarray(obj.vertices), None
        if isinstance(obj, trimesh.Scene):
            return _merge_scene(obj)
    raise TypeError(f"obj: expected {_ACCEPTED}, got {describe(obj)}")


def _merge_scene(scene):
    """Every mesh of a trimesh Scene, moved by its node transform, as one mesh (point clouds if no mesh)."""
    import trimesh

    meshes, clouds = [], []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]  # (4, 4), geometry key
        geometry = scene.geometry[name]
        if not isinstance(geometry, (trimesh.Trimesh, trimesh.PointCloud)):
            continue  # paths and other geometry without a surface or points
        vertices, faces = _from_object(geometry)
        vertices = vertices @ transform[:3, :3].T + transform[:3, 3]  # (V, 3)
        (meshes if faces is not None and len(faces) else clouds).append((vertices, faces))
    if meshes:
        offsets = np.cumsum([0] + [len(v) for v, _ in meshes[:-1]])  # first vertex of each mesh
        faces = [f + o for (_, f), o in zip(meshes, offsets)]
        return np.concatenate([v for v, _ in meshes]), np.concatenate(faces)
    if clouds:
        return np.concatenate([v for v, _ in clouds]), None
    raise ValueError("it contains no mesh or point cloud (no vertices or faces could be read)")


def _read_pcd(path: pathlib.Path) -> np.ndarray:
    """PCD points through open3d where importable, else the plain reader (ascii and binary)."""
    try:
        import open3d
    except (ImportError, OSError):
        return _read_pcd_plain(path)
    points = np.asarray(open3d.io.read_point_cloud(str(path), format="pcd").points)
    if len(points) == 0:
        raise ValueError("open3d read no points from it")
    return points


def _read_pcd_plain(path: pathlib.Path) -> np.ndarray:
    data = path.read_bytes()
    header, offset = {}, 0
    while "DATA" not in header:
        end = data.find(b"\n", offset)
        if end < 0:
            raise ValueError("the header has no DATA line")
        line = data[offset:end].decode("ascii").strip()
        offset = end + 1
        if line and not line.startswith("#"):
            key, *values = line.split()
            header[key.upper()] = values
    fields = header.get("FIELDS", [])
    if not {"x", "y", "z"} <= set(fields):
        raise ValueError(f"expected FIELDS with x y z, got {fields}")
    n = int(header["POINTS"][0]) if "POINTS" in header else int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
    counts = [int(c) for c in header.get("COUNT", ["1"] * len(fields))]
    columns = np.cumsum([0] + counts[:-1])  # first column of each field
    xyz = [int(columns[fields.index(c)]) for c in "xyz"]
    kind = header["DATA"][0].lower()
    if kind == "ascii":
        table = np.loadtxt(data[offset:].decode("ascii").splitlines(), ndmin=2, dtype=np.float64)
        if table.shape[0] != n:
            raise ValueError(f"header declares {n} points, the data holds {table.shape[0]}")
        return table[:, xyz]
    if kind == "binary":
        codes = {"F": "f", "I": "i", "U": "u"}
        dtype = np.dtype([(f"f{i}", f"<{codes[t]}{s}", (c,)) for i, (t, s, c) in
                          enumerate(zip(header["TYPE"], header["SIZE"], counts))])
        if len(data) - offset < n * dtype.itemsize:
            raise ValueError(f"header declares {n} points, the data is shorter (truncated?)")
        records = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
        return np.stack([records[f"f{fields.index(c)}"][:, 0] for c in "xyz"], axis=1).astype(np.float64)
    raise ValueError(f"DATA {kind} is not supported without open3d (supported: ascii, binary)")
