"""Reading shapes from files and from trimesh / open3d objects.

Point formats (.npy .npz .xyz .pcd, and PLY / OBJ / OFF files without faces) give their points as
they are; mesh formats (.ply .obj .off .stl) and mesh objects give ``n_samples`` seeded,
area-uniform samples of their surface (:func:`sample_surface`).

Files are untrusted input, and every format has one reader here, the same whatever is installed:
trimesh and open3d read no file (their objects are accepted in memory, and imported only then).

- Every count a header declares is checked against the bytes present before anything is allocated:
  a 100-byte file that claims 80 million points is refused at once.
- A body that does not match its header (shorter, longer, garbage where numbers belong) is an
  error, never zeros nor made-up points; face indices must lie in range.
- Nothing is unpickled: ``.npy`` headers are parsed here; object, structured, bool, complex and text
  dtypes are refused; an ``.npz`` member is bounded by the zip directory and the available memory.
- Every failure is a ``ValueError`` naming the file and what is wrong (``KeyboardInterrupt`` and
  ``SystemExit`` pass through).
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import re
import struct
import zipfile

import numpy as np

from ._checks import as_host_array, available_memory, check_int, check_memory, check_positive_int, describe, format_bytes

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
    v = as_host_array(vertices, "vertices", "a numeric array").astype(np.float64)
    if np.abs(v).max() > np.finfo(np.float32).max:  # the samples are float32
        raise ValueError(f"vertices: coordinates up to {np.abs(v).max():.3g} are beyond the float32 range of the "
                         "samples; rescale the mesh")
    tri = v[as_host_array(faces, "faces", "a numeric array")[face]]  # (N, 3, D)
    return np.einsum("nk,nkd->nd", bary, tri).astype(np.float32)


def surface_draws(vertices, faces, n_samples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The random draws behind :func:`sample_surface`: face indices ``(N,)`` and barycentric
    coordinates ``(N, 3)``; sample ``k`` is ``sum_j bary[k, j] * vertices[faces[face[k], j]]``.

    Callers that need gradients with respect to the vertices (mesh measures) combine the vertices
    themselves with these fixed draws. Inputs are validated as for :func:`sample_surface`.
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    seed = check_int(seed, "seed")
    check_memory(n_samples * 96, "n_samples", f"{n_samples} surface samples")  # draws (N, 4) and samples (N, D)
    v, f = (as_host_array(t, name, "a numeric array") for t, name in ((vertices, "vertices"), (faces, "faces")))
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
    with np.errstate(over="ignore", invalid="ignore"):
        unit = float(max(np.abs(a).max(), np.abs(b).max()))  # areas relative to unit^2: no scale over- or underflows
    if not math.isfinite(unit):
        raise ValueError(f"vertices: the edges of the mesh overflow float64 (coordinates up to {np.abs(v).max():.3g})")
    if unit > 0:
        unit = math.ldexp(1.0, math.frexp(unit)[1] - 1)  # a power of 2: exact
        a, b = a / unit, b / unit
    gram = (a * a).sum(1) * (b * b).sum(1) - (a * b).sum(1) ** 2  # (F,) = (2 area / unit^2)^2
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
        vertices, faces = _read_file(path, SUFFIXES, _READERS.get(path.suffix.lower()))
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
    big = np.abs(vertices) > np.finfo(np.float32).max  # points are float32: these would become inf
    if big.any():
        row = int(np.argwhere(big)[0, 0])
        raise ValueError(f"obj: {where} has a coordinate beyond the float32 range at point {row}: "
                         f"{vertices[row].tolist()}")
    return vertices, faces, where


def read_array(path) -> np.ndarray:
    """The array of a ``.npy`` file, or of a ``.npz`` archive (its array ``points``, or its only array).

    Any shape: representations other than point clouds read their input from such files (stacks of
    SPD matrices ``(N, n, n)``, unit vectors ``(N, d)``). Only real numeric dtypes (integers and
    floats) are read; the header's shape is checked against the bytes present before anything is
    allocated. Errors name the file and what was wrong.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() not in ARRAY_SUFFIXES:
        raise ValueError(f"obj: expected a .npy or .npz file, got '{path}'")
    return _read_file(path, ARRAY_SUFFIXES, _read_npz if path.suffix.lower() == ".npz" else _read_npy_file)


def _read_file(path: pathlib.Path, suffixes, read):
    """``read(path)`` after the checks every file gets; any failure of ``read`` -> ValueError naming the file."""
    if not path.exists():
        raise FileNotFoundError(f"obj: no such file '{path}'")
    if path.is_dir():
        raise ValueError(f"obj: '{path}' is a directory; expected a file with suffix {', '.join(suffixes)}")
    if read is None:
        raise ValueError(f"obj: unsupported suffix {path.suffix!r} of '{path}'; supported: {', '.join(suffixes)}")
    where = f"file '{path}'"
    try:
        if path.stat().st_size == 0:
            raise ValueError("it is empty (0 bytes)")
        return read(path)
    except AssertionError:  # an internal invariant: a bug here, not a bad file
        raise
    except Exception as exc:  # every parser failure (MemoryError included); KeyboardInterrupt and SystemExit pass
        reason = str(exc) if type(exc) is ValueError else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"obj: could not read {where} as {path.suffix[1:].upper()}: {reason}") from exc


# ------------------------------------------------------------------------------------ .npy and .npz
_DTYPE_KINDS = {"b": "booleans", "c": "complex numbers", "O": "Python objects", "U": "text", "S": "bytes",
                "V": "raw or structured records", "M": "dates", "m": "time spans"}


def _read_npy_file(path: pathlib.Path) -> np.ndarray:
    with open(path, "rb") as fh:
        return _read_npy(fh, os.fstat(fh.fileno()).st_size, "the file")


def _read_npy(fh, size: int, what: str) -> np.ndarray:
    """The array of a ``.npy`` stream of ``size`` bytes, its header checked before anything is allocated."""
    version = np.lib.format.read_magic(fh)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"{what} has .npy format version {version[0]}.{version[1]}; geom reads 1.0 and 2.0")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(fh)  # a literal dict parsed without eval; a bad one is a ValueError
    if dtype.kind not in "iuf" or dtype.fields is not None or dtype.subdtype is not None or dtype.itemsize > 8:
        holds = _DTYPE_KINDS.get(dtype.kind, "a structured or extended-precision type")
        raise ValueError(f"{what} holds {holds} (dtype {dtype}); expected real numbers (an integer or float dtype)")
    if any(n < 0 for n in shape):
        raise ValueError(f"{what} declares the invalid shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    present = size - fh.tell()
    if nbytes != present:
        raise ValueError(f"{what} declares an array of shape {shape} and dtype {dtype} ({format_bytes(nbytes)}), "
                         f"but {present} bytes follow its header")
    if nbytes > available_memory():
        raise ValueError(f"{what} declares an array of {format_bytes(nbytes)}, more than the "
                         f"{format_bytes(available_memory())} of memory available")
    buf = np.empty(nbytes, np.uint8)
    view, got = memoryview(buf), 0
    while got < nbytes and (n := fh.readinto(view[got:])):
        got += n
    if got != nbytes or fh.read(1):  # a zip member is checked against its CRC when read to its end
        raise ValueError(f"{what} holds {got} bytes of array data, its header declares {nbytes}")
    array = buf.view(dtype).reshape(shape[::-1]).T if fortran else buf.view(dtype).reshape(shape)
    return np.require(array.astype(dtype.newbyteorder("="), copy=False), requirements="C")  # a 0-d array stays 0-d


def _read_npz(path: pathlib.Path) -> np.ndarray:
    """The array ``points`` (or the only array) of a zip of ``.npy`` members, as ``np.savez`` writes."""
    with zipfile.ZipFile(path) as archive:
        members = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i
                   for i in archive.infolist() if not i.is_dir()}
        keys = list(members)
        if "points" not in keys and len(keys) != 1:
            raise ValueError(f"expected an array named 'points' or a single array, got keys {keys}")
        info = members["points" if "points" in keys else keys[0]]
        what = f"its member '{info.filename}'"
        # the zip directory's sizes bound what is read; deflate expands at most 1032-fold
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise ValueError(f"{what} is stored uncompressed in {info.compress_size} bytes but declares "
                             f"{info.file_size}")
        if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > 1032 * info.compress_size + 1024:
            raise ValueError(f"{what} declares {info.file_size} bytes inflated from {info.compress_size} compressed "
                             "bytes, more than deflate can produce")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ValueError(f"{what} uses zip compression method {info.compress_type}; expected stored or deflated "
                             "members, as numpy.savez and numpy.savez_compressed write")
        with archive.open(info) as fh:
            return _read_npy(fh, info.file_size, what)


def _points_array(path: pathlib.Path):
    array = (_read_npz if path.suffix.lower() == ".npz" else _read_npy_file)(path)
    return (array[:, None] if array.ndim == 1 else array), None  # (N,): N points on the line


# ------------------------------------------------------------------------------------- text helpers
def _show(line: bytes) -> str:
    text = line.decode("ascii", "replace")
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _text_lines(data: bytes) -> list[bytes]:
    """The non-blank lines of a text body, stripped, ``#`` comments removed."""
    return [s for s in (line.split(b"#", 1)[0].strip() for line in data.splitlines()) if s]


def _count(word: bytes | str, what: str) -> int:
    if not re.fullmatch(r"\d{1,18}", word.decode("latin-1") if isinstance(word, bytes) else word, re.ASCII):
        raise ValueError(f"expected a count of {what}, got {word!r}")
    return int(word)


def _parse(words, dtype, what: str) -> np.ndarray:
    """Number tokens -> an array of ``dtype`` (float64 or int64); the first bad token is named."""
    try:
        return np.array(words, dtype=dtype)
    except (ValueError, OverflowError):
        for word in words:
            try:
                np.array([word], dtype=dtype)
            except (ValueError, OverflowError):
                expected = "integers" if dtype == np.int64 else "numbers"
                raise ValueError(f"{what}: expected {expected}, got {_show(word)}") from None
        raise


def _table(lines: list[bytes], what: str, width: int | None = None, min_width: int = 1, dtype=np.float64):
    """Lines of numbers, all of one length (``width``, or at least ``min_width``) -> ``(R, C)`` array;
    errors name the first bad line (``what`` and its index)."""
    if not lines:
        return np.zeros((0, width or min_width), dtype)
    try:  # numpy's C parser: strict about garbage and about rows of changing length
        table = np.loadtxt(io.BytesIO(b"\n".join(lines)), dtype=dtype, ndmin=2, comments=None, encoding="latin1")
    except ValueError:
        table = None
    if table is not None and len(table) == len(lines) and table.shape[1] == (width or max(table.shape[1], min_width)):
        return table
    rows = [line.split() for line in lines]
    expect = width or max(len(rows[0]), min_width)
    for i, row in enumerate(rows):
        if len(row) != expect:
            need = f"{expect}" if width or i else f"at least {min_width}"
            raise ValueError(f"{what} {i} has {len(row)} values, expected {need}: {_show(lines[i])}")
        _parse(row, dtype, f"{what} {i}")
    raise ValueError(f"the {what}s are no table of numbers")  # pragma: no cover (numpy refused what Python reads)


def _fan(counts, flat, n_vertices: int) -> np.ndarray | None:
    """Polygons (vertex counts ``(F,)``, their indices one after another) -> ``(T, 3)`` triangles,
    fans around each polygon's first vertex; counts >= 3 and indices in range are checked."""
    counts, flat = np.asarray(counts, np.int64), np.asarray(flat, np.int64)  # (F,), (sum counts,)
    assert counts.sum() == len(flat)
    if len(counts) == 0:
        return None
    if (counts < 3).any():
        k = int(np.argmax(counts < 3))
        raise ValueError(f"face {k} has {counts[k]} vertices, expected at least 3")
    bad = (flat < 0) | (flat >= n_vertices)
    if bad.any():
        k = int(np.argmax(bad))
        face = int(np.searchsorted(np.cumsum(counts), k, side="right"))
        raise ValueError(f"face {face} refers to vertex {flat[k]}, outside [0, {n_vertices}) (the vertices present)")
    n_tri = counts - 2  # (F,)
    first = np.cumsum(counts) - counts  # (F,) start of each polygon in flat
    poly = np.repeat(np.arange(len(counts)), n_tri)  # (T,)
    k = np.arange(int(n_tri.sum())) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri) + 1  # (T,) in 1 .. count - 2
    base = first[poly]  # (T,)
    return np.stack([flat[base], flat[base + k], flat[base + k + 1]], 1)  # (T, 3)


# ---------------------------------------------------------------------------------------- .xyz, OFF, OBJ
def _read_xyz(path: pathlib.Path):
    """One point per line, ``x y z`` and optional further numeric columns (normals, colours)."""
    return _table(_text_lines(path.read_bytes()), "point", min_width=3)[:, :3], None


def _read_off(path: pathlib.Path):
    """OFF: a header ``OFF`` (COFF, NOFF...), counts ``V F E`` (on the header line too, as in some
    ModelNet files: ``OFF8048 35408 0``), V vertex lines, F face lines ``n i_1 .. i_n``, nothing after."""
    lines = _text_lines(path.read_bytes())
    match = re.fullmatch(rb"(?:ST)?C?N?OFF(.*)", lines[0], re.S) if lines else None
    if match is None:
        raise ValueError(f"expected the header line 'OFF', got {_show(lines[0]) if lines else 'only comments'}")
    counts, body = match.group(1).split(), lines[1:]
    if not counts and body:
        counts, body = body[0].split(), body[1:]
    if len(counts) != 3:
        raise ValueError(f"expected the counts line 'V F E' after 'OFF', got {_show(b' '.join(counts))}")
    n_v, n_f = _count(counts[0], "vertices"), _count(counts[1], "faces")
    if n_v + n_f != len(body):
        raise ValueError(f"the header declares {n_v} vertices and {n_f} faces ({n_v + n_f} lines), "
                         f"the body has {len(body)} lines")
    vertices = _table(body[:n_v], "vertex", min_width=3)[:, :3]  # (V, 3)
    return vertices, _polygons(body[n_v:], n_v)


def _polygons(lines: list[bytes], n_vertices: int) -> np.ndarray | None:
    """Face lines ``n i_1 .. i_n`` (and maybe a colour after) -> ``(T, 3)`` triangles."""
    try:  # every face of one size, in one read
        table = _table(lines, "face", dtype=np.int64)  # (F, C)
    except ValueError:
        table = None
    if table is not None and len(table) and (table[:, 0] == table[0, 0]).all() and 3 <= table[0, 0] < table.shape[1]:
        return _fan(table[:, 0], table[:, 1:1 + table[0, 0]].reshape(-1), n_vertices)
    sizes, flat = [], []
    for k, line in enumerate(lines):
        words = line.split()
        n = int(words[0]) if re.fullmatch(rb"\d{1,9}", words[0]) else -1
        if n < 0 or len(words) < 1 + n:
            raise ValueError(f"face {k} is not 'n i_1 .. i_n' (n indices after n): {_show(line)}")
        sizes.append(n)
        flat += words[1:1 + n]
    return _fan(sizes, _parse(flat, np.int64, "face indices"), n_vertices)


def _read_obj(path: pathlib.Path):
    """Wavefront OBJ: ``v x y z`` vertices and ``f i[/t[/n]] ...`` polygons (1-based, negative counts
    back from the last vertex); other statements (normals, texture coordinates, groups) are skipped."""
    vertices, sizes, seen, flat = [], [], [], []
    for line in path.read_bytes().splitlines():
        words = line.split(b"#", 1)[0].split()
        if words and words[0] == b"v":
            if len(words) < 4:
                raise ValueError(f"vertex {len(vertices)} has fewer than 3 coordinates: {_show(line)}")
            vertices.append(b" ".join(words[1:4]))
        elif words and words[0] == b"f":
            if len(words) < 4:
                raise ValueError(f"face {len(sizes)} has fewer than 3 vertices: {_show(line)}")
            sizes.append(len(words) - 1)
            seen.append(len(vertices))
            flat += [w.split(b"/", 1)[0] for w in words[1:]]
    if not vertices:
        raise ValueError("it holds no vertex line ('v x y z')")
    index = _parse(flat, np.int64, "face indices")  # (sum sizes,)
    if (index == 0).any():
        face = int(np.searchsorted(np.cumsum(sizes), int(np.argmax(index == 0)), side="right"))
        raise ValueError(f"face {face} has the vertex index 0 (OBJ indices start at 1)")
    index = np.where(index > 0, index - 1, np.repeat(np.asarray(seen, np.int64), sizes) + index)  # 0-based
    return _table(vertices, "vertex", width=3), _fan(sizes, index, len(vertices))


# ------------------------------------------------------------------------------------------------ STL
_STL_WORDS = {0: b"facet", 1: b"normal", 5: b"outer", 6: b"loop", 7: b"vertex", 11: b"vertex", 15: b"vertex",
              19: b"endloop", 20: b"endfacet"}  # the 21 words of an ASCII facet, numbers elsewhere
_STL_NUMBERS = [2, 3, 4, 8, 9, 10, 12, 13, 14, 16, 17, 18]


def _read_stl(path: pathlib.Path):
    """Binary STL (80-byte header, count n, exactly 50 bytes per triangle) or ASCII STL."""
    data = path.read_bytes()
    n = struct.unpack_from("<I", data, 80)[0] if len(data) >= 84 else None
    if n is not None and len(data) == 84 + 50 * n:
        records = np.frombuffer(data, np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")]),
                                n, 84)
        vertices = records["v"].reshape(-1, 3).astype(np.float64)  # (3n, 3)
    elif data.lstrip().startswith(b"solid"):
        vertices = _stl_ascii(data)
    else:
        detail = f"a binary STL of {n} triangles has 84 + 50 x {n} = {84 + 50 * n} bytes" if n is not None \
            else "a binary STL has at least 84 bytes"
        raise ValueError(f"it is no ASCII STL (no 'solid' line) and {detail}, the file has {len(data)}")
    if len(vertices) == 0:
        raise ValueError("it holds no triangles")
    return vertices, np.arange(len(vertices)).reshape(-1, 3)


def _stl_ascii(data: bytes) -> np.ndarray:
    """``solid name``, facets of 21 words (numbers at :data:`_STL_NUMBERS`), ``endsolid name``; repeated."""
    lines = [s for s in (line.strip() for line in data.splitlines()) if s]
    triangles, done, i = [], 0, 0
    while i < len(lines):
        if not lines[i].startswith(b"solid"):
            raise ValueError(f"expected 'solid name', got {_show(lines[i])}")
        j = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(b"endsolid")), None)
        if j is None:
            raise ValueError("a solid has no 'endsolid' line (truncated?)")
        words = b" ".join(lines[i + 1:j]).split()
        if len(words) % 21:
            raise ValueError(f"a solid holds {len(words)} words, not whole facets of 21 ('facet normal nx ny nz "
                             "outer loop vertex x y z (3 times) endloop endfacet')")
        grid = np.array(words, dtype=object).reshape(-1, 21)  # (F, 21)
        for column, word in _STL_WORDS.items():
            bad = grid[:, column] != word
            if bad.any():
                k = int(np.argmax(bad))
                raise ValueError(f"facet {done + k}: expected {word.decode()!r}, got {_show(grid[k, column])}")
        numbers = _parse(grid[:, _STL_NUMBERS].ravel().tolist(), np.float64, f"facets {done} to {done + len(grid) - 1}")
        triangles.append(numbers.reshape(-1, 12)[:, 3:])  # (F, 9): the normals are checked, not kept
        done, i = done + len(grid), j + 1
    return np.concatenate(triangles).reshape(-1, 3) if triangles else np.zeros((0, 3))


# ------------------------------------------------------------------------------------------------ PLY
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


def _read_ply(path: pathlib.Path):
    """PLY, ascii or binary: element ``vertex`` with x y z, optional element ``face`` with a list
    ``vertex_indices`` (or ``vertex_index``); other elements and properties are read and skipped."""
    data = path.read_bytes()
    order, elements, offset = _ply_header(data)
    read = _ply_ascii if order is None else _ply_binary
    values = read(data, offset, elements, order)  # {element: {property: (n,) values or (counts, flat)}}
    if "vertex" not in values or not {"x", "y", "z"} <= set(values["vertex"]):
        raise ValueError("the header declares no element 'vertex' with properties x, y and z")
    vertex = values["vertex"]
    if any(isinstance(vertex[c], tuple) for c in "xyz"):
        raise ValueError("the vertex properties x, y, z are lists, expected numbers")
    vertices = np.stack([np.asarray(vertex[c], np.float64) for c in "xyz"], 1)  # (V, 3)
    face = values.get("face", {})
    lists = [face[p] for p in ("vertex_indices", "vertex_index") if isinstance(face.get(p), tuple)]
    if face and (not lists or lists[0][1].dtype.kind not in "iu"):
        raise ValueError("the element 'face' has no list property vertex_indices of integers")
    return vertices, _fan(*lists[0], len(vertices)) if face else None


def _ply_header(data: bytes):
    """-> (byte order '<' '>' or None for ascii, [(element, count, [(property, type)])], body offset);
    a list property's type is ``(count type, item type)``."""
    if not data.startswith((b"ply\n", b"ply\r\n")):
        raise ValueError("it does not start with the line 'ply'")
    offset, order, elements = data.index(b"\n") + 1, "", []
    while True:
        end = data.find(b"\n", offset)
        if end < 0:
            raise ValueError("the header has no 'end_header' line")
        line, offset = data[offset:end].decode("latin-1").strip(), end + 1
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words == ["end_header"]:
            break
        if words[0] == "format" and len(words) == 3 and words[1] in _PLY_FORMATS and words[2] == "1.0" and order == "":
            order = _PLY_FORMATS[words[1]]
        elif words[0] == "element" and len(words) == 3:
            elements.append((words[1], _count(words[2], f"'{words[1]}' records"), []))
        elif words[0] == "property" and elements and len(words) == 3 and words[1] in _PLY_TYPES:
            elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
        elif words[0] == "property" and elements and len(words) == 5 and words[1] == "list" \
                and _PLY_TYPES.get(words[2], "f")[0] in "iu" and words[3] in _PLY_TYPES:
            elements[-1][2].append((words[4], (_PLY_TYPES[words[2]], _PLY_TYPES[words[3]])))
        else:
            raise ValueError(f"unexpected header line {line[:60]!r}")
    if order == "":
        raise ValueError("the header has no line 'format ascii|binary_little_endian|binary_big_endian 1.0'")
    for name, _, props in elements:
        if not props:
            raise ValueError(f"the element '{name}' has no properties")
    return order, elements, offset


def _ply_ascii(data: bytes, offset: int, elements, order):
    """One line per record, after the header; as many lines as the header declares records."""
    declared = sum(n for _, n, _ in elements)
    at_most = data.count(b"\n", offset) + 1  # counted before anything is split
    lines = [s for s in (line.strip() for line in data[offset:].splitlines()) if s] if declared <= at_most else []
    if len(lines) != declared:
        counts = " and ".join(f"{n} {name}" for name, n, _ in elements)
        has = f"{len(lines)} lines" if declared <= at_most else f"at most {at_most} lines"
        raise ValueError(f"the header declares {counts} records ({declared} lines), the body has {has}")
    values, start = {}, 0
    for name, n, props in elements:
        block, start = lines[start:start + n], start + n
        if any(isinstance(t, tuple) for _, t in props):
            values[name] = _ply_ascii_lists([line.split() for line in block], name, props)
            continue
        table = _table(block, f"{name} record", width=len(props))  # (n, P)
        values[name] = {p: table[:, j].astype(t) if t[0] == "f" else table[:, j] for j, (p, t) in enumerate(props)}
    return values


def _ply_ascii_lists(rows, name: str, props) -> dict:
    """Lines of records with list properties (``count item item ...``), one token at a time."""
    got = {p: [] for p, _ in props}
    sizes = {p: [] for p, t in props if isinstance(t, tuple)}
    for i, row in enumerate(rows):
        j = 0
        for p, t in props:
            if j >= len(row):
                raise ValueError(f"{name} record {i} ends before its property {p}: {_show(b' '.join(row))}")
            if isinstance(t, tuple):
                m = _count(row[j], f"items of {p}")
                if j + 1 + m > len(row):
                    raise ValueError(f"{name} record {i} ends inside its list {p} of {m} items")
                sizes[p].append(m)
                got[p] += row[j + 1:j + 1 + m]
                j += 1 + m
            else:
                got[p].append(row[j])
                j += 1
        if j != len(row):
            raise ValueError(f"{name} record {i} has {len(row)} values, its properties take {j}")
    kind = {p: t[1] if isinstance(t, tuple) else t for p, t in props}  # of the values (list items)
    items = {p: _parse(got[p], np.int64 if isinstance(t, tuple) and kind[p][0] in "iu" else np.float64,
                       f"{name} {p}") for p, t in props}  # list indices as integers
    return {p: (np.array(sizes[p], np.int64), items[p]) if p in sizes else
            items[p].astype(kind[p]) if kind[p][0] == "f" else items[p] for p, _ in props}


_PLY_CODES = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}  # struct


def _ply_binary(data: bytes, offset: int, elements, order: str):
    """Records packed one after another; every element's size is checked against the bytes left."""
    values = {}
    for name, n, props in elements:
        if any(isinstance(t, tuple) for _, t in props):
            values[name], offset = _ply_binary_lists(data, offset, name, n, props, order)
            continue
        dtype = np.dtype([(p, order + t) for p, t in props])
        if n * dtype.itemsize > len(data) - offset:
            raise ValueError(f"the header declares {n} '{name}' records of {dtype.itemsize} bytes "
                             f"({format_bytes(n * dtype.itemsize)}), {len(data) - offset} bytes are left")
        records = np.frombuffer(data, dtype, n, offset)  # (n,)
        values[name], offset = {p: records[p] for p, _ in props}, offset + n * dtype.itemsize
    if offset != len(data):
        raise ValueError(f"{len(data) - offset} bytes follow the last record the header declares")
    return values


def _ply_binary_lists(data: bytes, offset: int, name: str, n: int, props, order: str):
    """Records with list properties: in one read where every record has the list lengths of the
    first (triangle meshes), else one record at a time. -> ({property: values}, offset after them)."""
    least = sum(int((t[0] if isinstance(t, tuple) else t)[1]) for _, t in props)  # bytes with empty lists
    if n * least > len(data) - offset:
        raise ValueError(f"the header declares {n} '{name}' records of at least {least} bytes "
                         f"({format_bytes(n * least)}), {len(data) - offset} bytes are left")
    if n:
        first = _ply_walk(data, offset, name, 1, props, order)[1]  # the list lengths of record 0
        dtype = np.dtype([f for p, t in props for f in ([(p + "#n", order + t[0]), (p, order + t[1], (first[p][0],))]
                                                          if isinstance(t, tuple) else [(p, order + t)])])
        if n * dtype.itemsize <= len(data) - offset:
            records = np.frombuffer(data, dtype, n, offset)  # (n,)
            if all((records[p + "#n"] == first[p][0]).all() for p in first):
                return {p: (records[p + "#n"].astype(np.int64), records[p].reshape(-1)) if p in first else records[p]
                        for p, _ in props}, offset + n * dtype.itemsize
    items, sizes, offset = _ply_walk(data, offset, name, n, props, order)
    kind = {p: t[1] if isinstance(t, tuple) else t for p, t in props}  # of the values (list items)
    return {p: (np.array(sizes[p], np.int64), np.array(items[p], kind[p])) if p in sizes else
            np.array(items[p], kind[p]) for p, _ in props}, offset


def _ply_walk(data: bytes, offset: int, name: str, n: int, props, order: str):
    """``n`` records one at a time -> ({property: values}, {list property: lengths}, offset after them)."""
    items = {p: [] for p, _ in props}
    sizes = {p: [] for p, t in props if isinstance(t, tuple)}
    for i in range(n):
        for p, t in props:
            length, item = 1, t
            if isinstance(t, tuple):
                item = t[1]
                if offset + int(t[0][1]) > len(data):
                    raise ValueError(f"'{name}' record {i} runs past the end of the file (truncated?)")
                (length,), offset = struct.unpack_from(order + _PLY_CODES[t[0]], data, offset), offset + int(t[0][1])
                if length < 0:
                    raise ValueError(f"'{name}' record {i} has a list {p} of {length} items")
                sizes[p].append(length)
            if offset + length * int(item[1]) > len(data):
                raise ValueError(f"'{name}' record {i} runs past the end of the file (truncated?)")
            items[p] += struct.unpack_from(f"{order}{length}{_PLY_CODES[item]}", data, offset)
            offset += length * int(item[1])
    return items, sizes, offset


# ------------------------------------------------------------------------------------------------ PCD
_PCD_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
_PCD_TYPES = {("F", "4"): "f4", ("F", "8"): "f8", **{(t, s): f"{t.lower()}{s}" for t in "IU" for s in "1248"}}
_LZF_MAX_RATIO = 88  # one 3-byte back reference writes at most 264 bytes


def _read_pcd(path: pathlib.Path) -> tuple[np.ndarray, None]:
    """Point Cloud Library's PCD (v0.5 to v0.7): ascii, binary and binary_compressed (LZF, one column
    of values per field) bodies; fields x y z are read, the others checked and skipped."""
    data = path.read_bytes()
    header, offset = {}, 0
    while "DATA" not in header:
        if offset >= len(data):
            raise ValueError("the header has no DATA line")
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end
        line, offset = data[offset:end].decode("latin-1").strip(), end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        if key.upper() not in _PCD_KEYS or key.upper() in header:
            raise ValueError(f"unexpected line {line[:60]!r} in the header (it ends with a DATA line)")
        header[key.upper()] = values
    missing = [k for k in ("FIELDS", "SIZE", "TYPE", "WIDTH") if k not in header]
    if missing:
        raise ValueError(f"the header has no {' or '.join(missing)} line")
    fields = header["FIELDS"]
    counts = [_count(c, "values per field") for c in header.get("COUNT", ["1"] * len(fields))]
    if not len(header["SIZE"]) == len(header["TYPE"]) == len(counts) == len(fields) or 0 in counts:
        raise ValueError(f"FIELDS {fields}, SIZE {header['SIZE']}, TYPE {header['TYPE']} and COUNT {counts} do not "
                         "match: expected one size, type and count >= 1 per field")
    kinds = [_PCD_TYPES.get((t.upper(), s)) for t, s in zip(header["TYPE"], header["SIZE"])]
    if None in kinds:
        k = kinds.index(None)
        raise ValueError(f"field {fields[k]!r} has TYPE {header['TYPE'][k]} and SIZE {header['SIZE'][k]}; expected "
                         "F with 4 or 8, I or U with 1, 2, 4 or 8")
    if not {"x", "y", "z"} <= set(fields) or any(counts[fields.index(c)] != 1 for c in "xyz"):
        raise ValueError(f"expected FIELDS with x y z (COUNT 1 each), got {fields}")
    width, height = _count(header["WIDTH"][0], "WIDTH"), _count(header.get("HEIGHT", ["1"])[0], "HEIGHT")
    n = _count(header.get("POINTS", [str(width * height)])[0], "POINTS")
    if n != width * height or len(header["WIDTH"]) != 1 or len(header.get("POINTS", [n])) != 1:
        raise ValueError(f"POINTS {header.get('POINTS')} is not WIDTH x HEIGHT = {width} x {height}")
    kind, body = " ".join(header["DATA"]).lower(), len(data) - offset
    sizes = [np.dtype(k).itemsize * c for k, c in zip(kinds, counts)]  # bytes of each field per point
    columns = [sum(counts[:fields.index(c)]) for c in "xyz"]  # of each of x y z in a row of values
    if kind == "ascii":
        lines = _text_lines(data[offset:])
        if len(lines) != n:
            raise ValueError(f"the header declares {n} points (one a line), the body has {len(lines)} lines")
        return _table(lines, "point", width=sum(counts))[:, columns], None
    if kind == "binary":
        if body != n * sum(sizes):
            raise ValueError(f"the header declares {n} points of {sum(sizes)} bytes ({format_bytes(n * sum(sizes))}), "
                             f"the body has {body} bytes")
        dtype = np.dtype([(f"f{i}", "<" + k, (c,)) for i, (k, c) in enumerate(zip(kinds, counts))])
        records = np.frombuffer(data, dtype, n, offset)  # (n,)
        return np.stack([records[f"f{fields.index(c)}"][:, 0] for c in "xyz"], 1).astype(np.float64), None
    if kind == "binary_compressed":
        if body < 8:
            raise ValueError(f"the compressed body has {body} bytes, fewer than its 8-byte size header")
        packed, unpacked = struct.unpack_from("<II", data, offset)
        if unpacked != n * sum(sizes) or packed != body - 8 or unpacked > _LZF_MAX_RATIO * packed:
            raise ValueError(f"the header declares {n} points of {sum(sizes)} bytes ({format_bytes(n * sum(sizes))}); "
                             f"the compressed body declares {unpacked} bytes packed in {packed}, and "
                             f"{body - 8} bytes follow (LZF expands at most {_LZF_MAX_RATIO}-fold)")
        if unpacked > available_memory():
            raise ValueError(f"its {n} points need {format_bytes(unpacked)}, more than the "
                             f"{format_bytes(available_memory())} of memory available")
        raw = _lzf_decompress(data[offset + 8:], unpacked)  # field after field, each (n, count)
        starts = np.cumsum([0] + sizes[:-1]) * n
        xyz = [np.frombuffer(raw, "<" + kinds[k], n, starts[k]) for k in map(fields.index, "xyz")]
        return np.stack(xyz, 1).astype(np.float64), None
    raise ValueError(f"DATA {kind!r} is unknown; expected ascii, binary or binary_compressed")


def _lzf_decompress(src: bytes, size: int) -> bytearray:
    """LZF (liblzf, as PCL writes it) -> exactly ``size`` bytes; every run and reference is bounds-checked.

    A control byte ``c < 32`` starts a literal run of ``c + 1`` bytes; otherwise ``c >> 5`` (7: plus
    the next byte) + 2 bytes are copied from ``((c & 31) << 8) + next byte + 1`` bytes back.
    """
    out, i, o = bytearray(size), 0, 0
    while i < len(src):
        ctrl, i = src[i], i + 1
        if ctrl < 32:
            length = ctrl + 1
            if i + length > len(src) or o + length > size:
                raise ValueError(f"LZF: a literal run of {length} bytes at byte {i - 1} runs past the end")
            out[o:o + length], i, o = src[i:i + length], i + length, o + length
            continue
        length = ctrl >> 5
        if length == 7:
            length += src[i] if i < len(src) else 0
            i += 1
        if i >= len(src):
            raise ValueError("LZF: the data ends inside a back reference")
        ref, i, length = o - ((ctrl & 31) << 8) - src[i] - 1, i + 1, length + 2
        if ref < 0 or o + length > size:
            raise ValueError(f"LZF: a back reference at byte {i - 2} points before the start or past the end")
        if o - ref >= length:
            out[o:o + length] = out[ref:ref + length]
        else:  # an overlapping copy repeats the last o - ref bytes
            out[o:o + length] = (out[ref:o] * (length // (o - ref) + 1))[:length]
        o += length
    if o != size:
        raise ValueError(f"LZF: the data unpack to {o} bytes, the header declares {size}")
    return out


_READERS = {".npy": _points_array, ".npz": _points_array, ".xyz": _read_xyz, ".off": _read_off,
            ".obj": _read_obj, ".stl": _read_stl, ".ply": _read_ply, ".pcd": _read_pcd}


# ----------------------------------------------------------------------------------- in-memory objects
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
