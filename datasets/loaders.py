"""Loaders for the 3-D collections users already have on disk: ``"modelnet"``, ``"shapenet"``,
``"hdf5"`` and ``"folder"``.

The collections and their papers:

- ModelNet10/40, from *3D ShapeNets: A Deep Representation for Volumetric Shapes*, Zhirong Wu,
  Shuran Song, Aditya Khosla, Fisher Yu, Linguang Zhang, Xiaoou Tang, Jianxiong Xiao (CVPR 2015):
  ``root/<class>/<train|test>/<class>_NNNN.off``; classes are the sorted class folders. Some files
  merge the header and the counts on one line (``OFF8048 35408 0``); ``geom.io.read_mesh`` (geom's own OFF reader)
  reads that variant, and the tests check it.
- ShapeNetCore v2, from *ShapeNet: An Information-Rich 3D Model Repository*, Angel X. Chang, Thomas
  Funkhouser, Leonidas Guibas et al. (2015): ``root/<synsetId>/<modelId>/models/model_normalized.obj``.
  Classes are the sorted synset folders, named by the first name of ``root/taxonomy.json`` (a list of
  ``{"synsetId", "name", ...}``) when present, by the synset id otherwise.
- PointNet's HDF5 files, from *PointNet: Deep Learning on Point Sets for 3D Classification and
  Segmentation*, Charles R. Qi, Hao Su, Kaichun Mo, Leonidas J. Guibas (CVPR 2017): ``.h5`` files with
  datasets ``data (N, P, 3)`` and ``label (N,)`` or ``(N, 1)``; class names from ``shape_names.txt``.
- Any folder of mesh / point files (suffixes of :data:`geom.io.SUFFIXES`), class = parent folder.

Common options (all loaders):

- ``split``: ``"train"``, ``"test"`` (``"val"`` where the layout has it) or ``None`` (every item).
  Labels never depend on the split: ``classes`` lists every class of ``root``.
- ``n_points`` (1024): points per item. Meshes give ``n_points`` seeded area-uniform surface samples;
  point files and HDF5 rows with ``P`` points give a seeded subsample without replacement when
  ``P > n_points``, every point once plus ``n_points - P`` repeats drawn with replacement when
  ``P < n_points``, the points as stored when ``P == n_points``.
- ``seed`` (0): item ``i`` draws from ``numpy.random.default_rng`` seeded with ``(seed, crc32(key))``,
  ``key`` the file's path relative to ``root`` (``#row`` added for HDF5 rows): same seed, same data,
  whatever the split or the order of access.
- ``normalize`` (``"sphere"``): ``"sphere"`` moves the centre to 0 and scales the farthest point to norm
  1; ``"box"`` moves the bounding-box centre (``(min + max) / 2``) to 0 and scales the largest extent
  to ``[-1, 1]``; ``None`` keeps the coordinates. For ``kind="points"`` the returned cloud itself is
  normalised (centre: the mean of its points). For the mesh kinds the mesh is normalised (centre: the
  area-weighted surface centroid; scale: the farthest vertex of a face), then the measure is built.
- ``kind`` (``"points"``): ``"points"`` gives ``(n_points, 3)`` float32 tensors; ``"mesh"``,
  ``"mesh-discrete"`` or ``"varifold"`` (mesh files only) give a :class:`geom.Measure` of that kind
  (see ``geom_plugins.mesh``; ``"mesh"`` takes ``n_samples=n_points`` and the item's seed).
- ``cache`` (``None``): a folder where items are stored and reused: clouds as ``.npy``, normalised
  meshes (mesh kinds) as ``.npz``, keyed by the file (resolved path, size, modification time), the
  options and the item's seed. Nothing is ever written inside ``root`` unless ``cache`` points there;
  a cache folder inside ``root`` is never indexed, and must hold nothing but cache entries. An entry
  is returned only if it holds what it should (a finite float32 ``(n_points, 3)`` cloud; finite
  float32 ``vertices (V, 3)`` and int64 ``faces (F, 3)`` indexing them), read without pickle and with
  the ``.npy`` headers checked against the bytes present; anything else is recomputed and rewritten.
  Entries are written to a temporary file of their own and renamed into place
  (:func:`geom._files.atomic_path`), so concurrent readers and writers (threads, DataLoader workers)
  never see a partial entry.

Errors and warnings: a missing ``root`` is a FileNotFoundError, a ``root`` without the expected
layout a ValueError, both naming the path and describing the layout. Names starting with a dot
(hidden files, temporary files ``geom._files.TEMP_PREFIX...``) or ``__`` are never indexed. A class
folder without files (in the requested split) keeps its label and gets a :class:`geom.GeomWarning`
naming it. Files are
indexed once in ``__init__`` (sorted, deterministic) and read lazily in ``__getitem__``; a file that
cannot be read is a ValueError at access naming it (never skipped: the length stays true).

>>> normalize_points([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 1.0, 0.0]], "box").tolist()
[[-1.0, -0.5, 0.0], [1.0, -0.5, 0.0], [0.0, 0.5, 0.0]]
"""

from __future__ import annotations

import abc
import csv
import hashlib
import json
import math
import os
import pathlib
import re
import sys
import warnings
import zipfile
import zlib
from typing import NamedTuple

import numpy as np
import torch

import geom
import geom.io
from geom._checks import GeomWarning, available_memory, check_int, check_memory, check_real, describe
from geom._files import TEMP_PREFIX, atomic_write

__all__ = ["FolderDataset", "HDF5Dataset", "ModelNet", "ShapeNet", "normalize_mesh", "normalize_points"]

KINDS = ("points", "mesh", "mesh-discrete", "varifold")
NORMALIZE = ("sphere", "box", None)
SPLIT_NAMES = ("train", "test", "val")
_COMMON = {
    "root": "the folder (or file) the dataset reads",
    "split": "'train', 'test' or None for every item (default None)",
    "n_points": "points per item: surface samples of meshes, subsample / repeats of clouds (default 1024)",
    "seed": "seed of the sampling; item i uses (seed, crc32 of its file) (default 0)",
    "normalize": "'sphere' (centre, max norm 1), 'box' (into [-1, 1]^3 by the largest extent) or None "
                 "(default 'sphere')",
    "kind": "'points' (tensor) or, for meshes, 'mesh', 'mesh-discrete', 'varifold' (geom.Measure) (default 'points')",
    "cache": "folder where sampled clouds / normalised meshes are stored and reused (default None: no cache)",
}
_BYTES_PER_POINT = 256
"""About the memory one point of an item takes while it is sampled, resized and normalised (float64 copies)."""
_CACHE_ENTRY = re.compile(r"-[0-9a-f]{20}\.np[yz]$")
"""How cache entries are named: ``<file stem>-<20 hex digits of the key>.npy`` or ``.npz``."""


class _Entry(NamedTuple):
    path: pathlib.Path  # the file to read
    label: int
    key: str  # relative path (+ "#row"): names the item in seeds, cache keys and errors


def _progress(iterable, desc: str, unit: str = " folders"):
    """A tqdm bar on stderr, shown only when stderr is a terminal (long scans of big trees)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, leave=False, disable=None)


def _hidden(name: str) -> bool:
    """Hidden names, temporary files and archive debris (``.x``, ``.geom-tmp-...``, ``__MACOSX``): never indexed."""
    return name.startswith((".", "__", TEMP_PREFIX))


def _subdirs(folder: pathlib.Path, skip: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Sorted sub-folders of ``folder``, hidden ones and the folder ``skip`` (the cache) left out."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name) and p != skip)


def _warn(message: str) -> None:
    """A GeomWarning attributed to the first caller outside this module (the user's line)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, GeomWarning, stacklevel=level)


# ----------------------------------------------------------------- geometry


def _resize(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(P, 3)`` -> ``(n, 3)``: subsample without replacement (P > n), every point + repeats (P < n)."""
    p = len(points)
    if p > n:
        return points[np.sort(rng.choice(p, n, replace=False))]
    if p < n:
        return points[np.concatenate([np.arange(p), rng.integers(0, p, n - p)])]
    return points


def _centre_scale(x: np.ndarray, mode, centre=None) -> tuple[np.ndarray, float]:
    """Centre ``(3,)`` and scale of the normalisation ``(x - centre) / scale`` of points ``x (N, 3)``."""
    if mode == "box":
        lo, hi = x.min(0), x.max(0)  # (3,)
        return (lo + hi) / 2, float((hi - lo).max()) / 2
    centre = x.mean(0) if centre is None else centre  # (3,)
    return centre, float(np.linalg.norm(x - centre, axis=1).max())


def normalize_points(x: np.ndarray, mode) -> np.ndarray:
    """``(N, 3)`` cloud normalised by ``mode`` (``"sphere"``, ``"box"``, ``None``), float64."""
    x = np.asarray(x, dtype=np.float64)
    if mode is None:
        return x
    centre, scale = _centre_scale(x, mode)
    return (x - centre) / (scale if scale > 0 else 1.0)  # a single point is only centred


def normalize_mesh(vertices: np.ndarray, faces: np.ndarray, mode) -> np.ndarray:
    """Vertices ``(V, 3)`` of a mesh normalised by ``mode``: the surface (area-weighted face
    centroids) is centred for ``"sphere"``, and only vertices of faces count for the scale."""
    v = np.asarray(vertices, dtype=np.float64)
    if mode is None:
        return v
    used = v[np.unique(faces)]  # (U, 3)
    centre = None
    if mode == "sphere":
        tri = v[faces]  # (F, 3, 3)
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)  # (F,)
        total = area.sum()
        centre = (area @ tri.mean(1)) / total if total > 0 else used.mean(0)  # (3,)
    centre, scale = _centre_scale(used, mode, centre)
    return (v - centre) / (scale if scale > 0 else 1.0)


# ----------------------------------------------------------------- cache entries


def _read_npy(fh, size: int) -> np.ndarray:
    """The array of a ``.npy`` stream of ``size`` bytes, checked before anything is allocated: a plain
    dtype (no pickled objects), C order, and a header whose shape exactly fills the remaining bytes."""
    version = np.lib.format.read_magic(fh)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in read_header:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, fortran, dtype = read_header[version](fh)
    if dtype.hasobject or fortran:
        raise ValueError(f"expected a C-ordered array of plain numbers, got dtype {dtype} (Fortran order: {fortran})")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != size - fh.tell():
        raise ValueError(f"the header claims {shape} {dtype} ({nbytes} bytes), the file holds {size - fh.tell()}")
    data = bytearray(fh.read(nbytes))  # writable: torch.from_numpy shares it
    if len(data) != nbytes:
        raise ValueError(f"expected {nbytes} bytes of data, got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with archive.open(info) as fh:
        return _read_npy(fh, info.file_size)


def _read_entry(path: pathlib.Path, n_points: int):
    """A cache entry that holds what it should, or None (absent, unreadable or wrong: it is rebuilt).

    ``.npy``: a finite float32 ``(n_points, 3)`` cloud. ``.npz``: uncompressed members ``vertices``,
    finite float32 ``(V, 3)``, and ``faces``, int64 ``(F, 3)`` with indices in ``[0, V)``, V, F >= 1.
    """
    try:
        if path.suffix == ".npy":
            with open(path, "rb") as fh:
                cloud = _read_npy(fh, os.fstat(fh.fileno()).st_size)
            ok = cloud.dtype == np.float32 and cloud.shape == (n_points, 3) and np.isfinite(cloud).all()
            return cloud if ok else None
        with zipfile.ZipFile(path) as archive:
            info = {i.filename: i for i in archive.infolist()}
            if sorted(info) != ["faces.npy", "vertices.npy"] or \
                    any(i.compress_type != zipfile.ZIP_STORED for i in info.values()):
                return None
            v, f = [_read_member(archive, info[name]) for name in ("vertices.npy", "faces.npy")]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):  # absent (FileNotFoundError) included
        return None
    ok = v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == 3 and len(v) > 0 and np.isfinite(v).all() \
        and f.dtype == np.int64 and f.ndim == 2 and f.shape[1] == 3 and len(f) > 0 and f.min() >= 0 and f.max() < len(v)
    return (v, f) if ok else None


# ----------------------------------------------------------------- the shared base


class _Loader(geom.Dataset):
    """Common options, the index, lazy reading, normalisation and the cache; subclasses only index.

    A subclass sets ``layout`` (the expected layout, for errors), ``splits`` (accepted split names)
    and implements ``_index() -> (classes, entries)``.
    """

    items_are_shapes = True  # meshes and point clouds of objects

    layout = ""
    splits: tuple[str, ...] = ("train", "test")
    kinds: tuple[str, ...] = KINDS
    options = dict(_COMMON)

    def __init__(self, root=None, *, split=None, n_points=1024, seed=0, normalize="sphere", kind="points",
                 cache=None):
        if split is not None and split not in self.splits:
            raise ValueError(f"split: expected one of {list(self.splits) + [None]}, got {split!r}")
        if kind not in self.kinds:
            raise ValueError(f"kind: expected one of {list(self.kinds)}, got {kind!r}")
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize: expected one of {list(NORMALIZE)}, got {normalize!r}")
        self.split, self.kind, self.normalize = split, kind, normalize
        self.n_points = check_int(n_points, "n_points", minimum=1)
        check_memory(self.n_points * _BYTES_PER_POINT, "n_points", f"items of {self.n_points} points")
        self.seed = check_int(seed, "seed", minimum=0)
        if cache is not None and not isinstance(cache, (str, os.PathLike)):
            raise TypeError(f"cache: expected a folder path or None, got {describe(cache)}")
        self.cache = None if cache is None else pathlib.Path(cache)
        if self.cache is not None and self.cache.exists() and not self.cache.is_dir():
            raise ValueError(f"cache: expected a folder, got the file '{self.cache}'")
        if root is None or not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root: expected the path of {self.layout}, got {describe(root)}")
        self.root = pathlib.Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"root: no such path '{self.root}'; expected {self.layout}")
        self._skip = self._cache_in_root()
        self.classes, self._entries = self._index()
        if not self._entries:
            which = f" in split {split!r}" if split else ""
            raise ValueError(f"root: found no items{which} under '{self.root}'; expected {self.layout}")

    def _cache_in_root(self) -> pathlib.Path | None:
        """The cache folder, spelt as a path under ``root``, when it lies inside ``root`` (the index
        skips it); None otherwise. Such a folder must hold cache entries only, so that no data hides in it."""
        if self.cache is None or not self.root.is_dir():
            return None
        root = self.root.resolve()
        for cache in (self.cache.parent.resolve() / self.cache.name, self.cache.resolve()):  # a link, its target
            if cache == root:
                raise ValueError(f"cache: expected a folder of its own, got root '{self.root}' itself")
            if root in cache.parents:
                break
        else:
            return None
        if self.cache.is_dir():
            foreign = [e.name for e in os.scandir(self.cache) if not e.name.startswith(TEMP_PREFIX)
                       and (e.is_dir() or not _CACHE_ENTRY.search(e.name))]
            if foreign:
                raise ValueError(f"cache: the folder '{self.cache}' lies inside root, which does not index it, and "
                                 f"holds '{sorted(foreign)[0]}', which is no cache entry; choose a folder of its own")
        return self.root / cache.relative_to(root)

    @abc.abstractmethod
    def _index(self) -> tuple[list[str], list[_Entry]]:
        """``(classes, entries)``: class names in label order and the sorted items of the split."""

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index):
        if isinstance(index, torch.Tensor) and index.ndim == 0:
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected an integer, got {describe(index)}")
        n = len(self._entries)
        if not -n <= index < n:
            raise IndexError(f"index: expected -{n} <= index < {n}, got {index}")
        entry = self._entries[index % n]
        seed = int(np.random.SeedSequence([self.seed, zlib.crc32(entry.key.encode())]).generate_state(1)[0])
        try:
            if self.kind == "points":
                cloud = self._cached(entry, seed, ".npy", lambda: self._cloud(entry, seed))  # (n_points, 3)
                return torch.from_numpy(cloud), entry.label
            v, f = self._cached(entry, None, ".npz", lambda: self._mesh(entry))
        except (ValueError, OSError, KeyError) as exc:
            raise ValueError(f"item {index % n} ({entry.key}, class {self.classes[entry.label]!r}): could not "
                             f"read file '{entry.path}': {exc}") from exc
        options = {"n_samples": self.n_points, "seed": seed} if self.kind == "mesh" else {}
        return geom.measure((torch.from_numpy(v), torch.from_numpy(f)), kind=self.kind, **options), entry.label

    # -- reading (subclasses with other storage override _points)

    def _points(self, entry: _Entry, seed: int) -> np.ndarray:
        """Raw points of an item: ``n_points`` surface samples of a mesh, or a point file's points."""
        points = geom.io.read_points(entry.path, n_samples=self.n_points, seed=seed)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"expected 3-D points, got shape {points.shape}")
        return points

    def _cloud(self, entry: _Entry, seed: int) -> np.ndarray:
        points = _resize(self._points(entry, seed), self.n_points, np.random.default_rng(seed))  # (n, 3)
        return normalize_points(points, self.normalize).astype(np.float32)

    def _mesh(self, entry: _Entry) -> tuple[np.ndarray, np.ndarray]:
        try:
            v, f = geom.io.read_mesh(entry.path)
        except ValueError as exc:
            raise ValueError(f"kind {self.kind!r} needs a triangle mesh: {exc}") from exc
        return normalize_mesh(v, f, self.normalize).astype(np.float32), f

    def _cached(self, entry: _Entry, seed, suffix: str, compute):
        """``compute()``, stored in / read from the cache folder when there is one."""
        if self.cache is None:
            return compute()
        stat = entry.path.stat()
        key = json.dumps([1, self.kind, str(entry.path.resolve()), entry.key, stat.st_size, stat.st_mtime_ns,
                          self.n_points if suffix == ".npy" else None, self.normalize, seed])
        name = f"{entry.path.stem}-{hashlib.sha1(key.encode()).hexdigest()[:20]}{suffix}"
        path = self.cache / name
        value = _read_entry(path, self.n_points)
        if value is not None:
            return value
        value = compute()
        self.cache.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:  # a temporary file of its own, renamed into place
            if suffix == ".npy":
                np.save(fh, value)
            else:
                np.savez(fh, vertices=value[0], faces=value[1])
        return value

    def _files_of_class(self, folder: pathlib.Path, label: int, files: list[pathlib.Path], where: str) -> list[_Entry]:
        """Entries of one class folder; a warning names the folder when it has no files."""
        if not files:
            _warn(f"class folder '{folder}' has no files{where}; class {folder.name!r} keeps label {label} "
                  "and has no items")
        return [_Entry(p, label, p.relative_to(self.root).as_posix()) for p in sorted(files)]


def _is_suffix(path: pathlib.Path, suffixes) -> bool:
    return not _hidden(path.name) and path.is_file() and path.suffix.lower() in suffixes


# ----------------------------------------------------------------- ModelNet


class ModelNet(_Loader):
    """ModelNet10/40: ``root/<class>/<train|test>/<class>_NNNN.off`` (merged ``OFF8048 35408 0`` headers read)."""

    description = "ModelNet10/40 meshes: root/<class>/<train|test>/<class>_NNNN.off"
    layout = ("a ModelNet folder: root/<class>/<train|test>/<class>_NNNN.off "
              "(one folder per class, each with train/ and test/ folders of .off files)")
    options = dict(_COMMON)

    def _index(self):
        if not self.root.is_dir():
            raise ValueError(f"root: '{self.root}' is not a folder; expected {self.layout}")
        folders = _subdirs(self.root, self._skip)
        if not any((f / s).is_dir() for f in folders for s in ("train", "test")):
            raise ValueError(f"root: '{self.root}' has no <class>/train or <class>/test folders; "
                             f"expected {self.layout}")
        splits = [self.split] if self.split else ["train", "test"]
        where = " with suffix .off in " + " or ".join(f"{s}/" for s in splits)
        entries = []
        for label, folder in enumerate(_progress(folders, "indexing ModelNet")):
            files = [p for s in splits if (folder / s).is_dir()
                     for p in (folder / s).iterdir() if _is_suffix(p, (".off",))]
            entries += self._files_of_class(folder, label, files, where)
        return [f.name for f in folders], entries


# ----------------------------------------------------------------- ShapeNet


class ShapeNet(_Loader):
    """ShapeNetCore v2: ``root/<synsetId>/<modelId>/models/model_normalized.obj``.

    Splits: with ``root/all.csv`` (the official split file, columns ``id,synsetId,subSynsetId,modelId,
    split``) its ``split`` column decides (``train``, ``val``, ``test``); models on disk that it does not
    list belong to no split (a warning says how many). Without it, a fixed split that does not depend on
    ``seed``: in each class, models sorted by ``crc32("<synsetId>/<modelId>")`` (ties by id), the first
    ``round(test_fraction * n)`` are ``"test"``, the rest ``"train"``.
    """

    description = "ShapeNetCore v2 meshes: root/<synsetId>/<modelId>/models/model_normalized.obj"
    layout = ("a ShapeNetCore v2 folder: root/<synsetId>/<modelId>/models/model_normalized.obj "
              "(optional root/taxonomy.json for class names, root/all.csv for the official split)")
    splits = SPLIT_NAMES
    options = {**_COMMON,
               "split": "'train', 'val' (with all.csv), 'test' or None for every model (default None)",
               "test_fraction": "fraction of each class in 'test' when root/all.csv is absent (default 0.2)"}
    MODEL = pathlib.Path("models", "model_normalized.obj")

    def __init__(self, root=None, *, test_fraction=0.2, **options):
        self.test_fraction = check_real(test_fraction, "test_fraction", "in [0, 1]", lambda x: 0 <= x <= 1)
        super().__init__(root, **options)

    def _index(self):
        if not self.root.is_dir():
            raise ValueError(f"root: '{self.root}' is not a folder; expected {self.layout}")
        folders, models, missing = _subdirs(self.root, self._skip), [], []
        for folder in _progress(folders, "indexing ShapeNet"):
            inside = _subdirs(folder, self._skip)
            models.append([m for m in inside if (m / self.MODEL).is_file()])
            missing += [m for m in inside if not (m / self.MODEL).is_file()]
        if not any(models):
            raise ValueError(f"root: '{self.root}' has no <synsetId>/<modelId>/{self.MODEL.as_posix()} files; "
                             f"expected {self.layout}")
        if missing:
            _warn(f"{len(missing)} model folders of '{self.root}' have no {self.MODEL.as_posix()} and are "
                  f"skipped, e.g. '{missing[0]}'")
        chosen = self._split(folders, models)
        entries = []
        for label, (folder, found) in enumerate(zip(folders, chosen)):
            where = f" with {self.MODEL.as_posix()}" + (f" in split {self.split!r}" if self.split else "")
            entries += self._files_of_class(folder, label, [m / self.MODEL for m in found], where)
        return self._names([f.name for f in folders]), entries

    def _split(self, folders, models) -> list[list[pathlib.Path]]:
        if self.split is None:
            return models
        table = self.root / "all.csv"
        if table.is_file():
            with open(table, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if not rows or not {"synsetId", "modelId", "split"} <= set(rows[0]):
                raise ValueError(f"root: '{table}' is not a ShapeNet split file; expected the columns "
                                 f"id,synsetId,subSynsetId,modelId,split, got {list(rows[0]) if rows else 'no rows'}")
            split_of = {(r["synsetId"].strip().zfill(8), r["modelId"].strip()): r["split"].strip() for r in rows}
            unlisted = sum((f.name.zfill(8), m.name) not in split_of for f, ms in zip(folders, models) for m in ms)
            if unlisted:
                _warn(f"{unlisted} models under '{self.root}' are not listed in '{table}' and belong to no split")
            return [[m for m in ms if split_of.get((f.name.zfill(8), m.name)) == self.split]
                    for f, ms in zip(folders, models)]
        if self.split == "val":
            raise ValueError(f"split: 'val' needs the official split file '{table}', which is absent; "
                             "use 'train', 'test' or None")
        chosen = []
        for folder, ms in zip(folders, models):
            ranked = sorted(ms, key=lambda m: (zlib.crc32(f"{folder.name}/{m.name}".encode()), m.name))
            n_test = round(self.test_fraction * len(ranked))
            chosen.append(ranked[:n_test] if self.split == "test" else ranked[n_test:])
        return chosen

    def _names(self, synsets: list[str]) -> list[str]:
        """Class names: the first name of each synset in root/taxonomy.json, else the synset id."""
        path = self.root / "taxonomy.json"
        if not path.is_file():
            return synsets
        try:
            taxonomy = json.loads(path.read_text())
            names = {str(t["synsetId"]): str(t["name"]).split(",")[0].strip() for t in taxonomy}
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"root: could not read '{path}': expected a JSON list of "
                             f'{{"synsetId", "name", ...}} objects ({type(exc).__name__}: {exc})') from exc
        out = [names.get(s, s) for s in synsets]
        return [f"{n} ({s})" if out.count(n) > 1 else n for n, s in zip(out, synsets)]  # names stay unique


# ----------------------------------------------------------------- HDF5


class HDF5Dataset(_Loader):
    """PointNet-style ``.h5``: datasets ``data (N, P, 3)`` and ``label (N,)`` or ``(N, 1)``.

    ``root`` is one file or a folder of ``.h5`` / ``.hdf5`` files; with a folder, ``split`` keeps the
    files whose name holds ``train`` / ``test`` / ``val`` after a non-letter or at the start
    (``ply_data_train0.h5``). Class names: ``shape_names.txt`` beside the files (one per line, label
    order), else the label numbers as strings. Items are points only. Needs h5py (``pip install geom[hdf5]``).
    """

    description = "PointNet-style HDF5 point clouds: root/*_train*.h5, *_test*.h5 with data (N, P, 3), label (N,)"
    layout = ("a PointNet-style .h5 file, or a folder of them named like ply_data_train0.h5 / ply_data_test0.h5, "
              "each with datasets 'data' (N, P, 3) and 'label' (N,) or (N, 1); optional shape_names.txt")
    splits = SPLIT_NAMES
    kinds = ("points",)
    options = {**_COMMON, "split": "'train', 'test', 'val' (files whose name holds it) or None (default None)",
               "kind": "'points' only: rows are point clouds (default 'points')"}

    def _index(self):
        h5py = _h5py()
        if self.root.is_file():
            files = [self.root]
            if self.split and not self._in_split(self.root):
                raise ValueError(f"split: the file '{self.root}' is not a {self.split!r} file (its name does not hold "
                                 f"{self.split!r}); pass split=None to read it whole")
        else:
            files = sorted(p for p in self.root.iterdir() if _is_suffix(p, (".h5", ".hdf5")))
            if not files:
                raise ValueError(f"root: '{self.root}' holds no .h5 / .hdf5 files; expected {self.layout}")
        labels = {path: self._labels(h5py, path) for path in _progress(files, "indexing HDF5", " files")}  # (N,) each
        names = (self.root.parent if self.root.is_file() else self.root) / "shape_names.txt"
        top, where = max(((int(y.max()), p) for p, y in labels.items() if len(y)), default=(-1, None),
                         key=lambda t: t[0])
        if names.is_file():
            classes = [line.strip() for line in names.read_text().splitlines() if line.strip()]
            if top >= len(classes):
                raise ValueError(f"root: '{where}' has label {top}, which has no name in '{names}': it lists "
                                 f"{len(classes)} classes (labels 0 to {len(classes) - 1})")
        else:
            rows = sum(len(y) for y in labels.values())
            if top >= rows:
                raise ValueError(f"root: '{where}' has label {top}, not below the number of rows ({rows}) of the "
                                 f"files of '{self.root}'; list the class names, in label order, in '{names}'")
            classes = [str(k) for k in range(top + 1)]
        entries = []
        for path, y in labels.items():
            if self.split is None or self._in_split(path):
                name = path.name if self.root.is_file() else path.relative_to(self.root).as_posix()
                entries += [_Entry(path, int(label), f"{name}#{row}") for row, label in enumerate(y)]
        for label in sorted(set(range(len(classes))) - {e.label for e in entries}):
            _warn(f"class {classes[label]!r} (label {label}) has no rows in the {self.split or 'selected'} files of "
                  f"'{self.root}'")
        return classes, entries

    def _labels(self, h5py, path: pathlib.Path) -> np.ndarray:
        """``(N,)`` int64 labels of one file, after its datasets' shapes, dtypes and storage are checked."""
        try:
            with h5py.File(path, "r") as fh:
                data, label = fh.get("data"), fh.get("label")
                if not (isinstance(data, h5py.Dataset) and isinstance(label, h5py.Dataset)):
                    raise ValueError(f"expected datasets 'data' and 'label', got {sorted(fh.keys())}")
                shape = data.shape
                if len(shape) != 3 or shape[1] == 0 or shape[2] != 3 or data.dtype.kind not in "fiu" or \
                        label.shape not in ((shape[0],), (shape[0], 1)) or label.dtype.kind not in "iu":
                    raise ValueError(f"data has shape {shape} ({data.dtype}) and label {label.shape} "
                                     f"({label.dtype}); expected numbers 'data' (N, P, 3) with P >= 1 and integers "
                                     "'label' (N,) or (N, 1)")
                unstored = [ds.name for ds in (data, label) if not _stored(ds)]
                if unstored:
                    raise ValueError(f"dataset {unstored[0]!r} is not stored in the file (unwritten, external or "
                                     "virtual storage)")
                if shape[1] * _BYTES_PER_POINT > available_memory():
                    raise ValueError(f"its rows of {shape[1]} points need more memory than is available")
                y = label[()].reshape(-1)  # (N,)
        except OSError as exc:
            raise ValueError(f"root: could not read '{path}' as HDF5: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"root: '{path}': {exc}; expected {self.layout}") from exc
        if len(y) and y.min() < 0:
            row = int(np.argmin(y))
            raise ValueError(f"root: '{path}' has the negative label {y[row]} (row {row}); expected labels >= 0")
        if len(y) and int(y.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"root: '{path}' has the label {y.max()}, beyond int64")
        return y.astype(np.int64)

    def _in_split(self, path: pathlib.Path) -> bool:
        return re.search(rf"(?:^|[^a-z]){self.split}", path.stem.lower()) is not None

    def _points(self, entry: _Entry, seed: int) -> np.ndarray:
        row = int(entry.key.rsplit("#", 1)[1])
        with _h5py().File(entry.path, "r") as fh:
            points = np.asarray(fh["data"][row], dtype=np.float64)  # (P, 3)
        bad = ~np.isfinite(points)
        if points.ndim != 2 or points.shape[1] != 3 or bad.any():
            what = f"point {np.argwhere(bad)[0, 0]} has a NaN or inf coordinate" if bad.any() else \
                f"expected (P, 3) points, got shape {points.shape}"
            raise ValueError(f"dataset 'data', row {row}: {what}")
        return points


def _stored(ds) -> bool:
    """Whether every element of an HDF5 dataset is stored in its own file: no fill values standing in
    for data never written (a header larger than the file), no external or virtual storage."""
    if ds.size == 0:
        return True
    if ds.is_virtual or ds.external:
        return False
    if ds.chunks is None:  # contiguous or compact: the bytes are all there or none are
        return ds.id.get_storage_size() == ds.size * ds.dtype.itemsize
    return ds.id.get_num_chunks() == math.prod(-(-n // c) for n, c in zip(ds.shape, ds.chunks))


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("the 'hdf5' dataset needs h5py: pip install geom[hdf5]") from exc
    return h5py


# ----------------------------------------------------------------- any folder


class FolderDataset(_Loader):
    """Any tree of mesh / point files: the class of a file is its nearest folder below ``root`` that is
    not named ``train``, ``test`` or ``val``; such split folders may sit above or below the class folders
    (``root/<split>/<class>/...`` or ``root/<class>/<split>/...``). Files with no class folder (directly
    in ``root`` or a split folder) are skipped with a warning. A folder directly below ``root`` (or a
    split folder) with no file of a known suffix gets a warning naming it and is no class.
    """

    description = "any tree of mesh / point files (.ply .obj .off .stl .npy ...): class = parent folder"
    layout = (f"a folder tree root/[<split>/]<class>/[<split>/]<files> of files with suffix "
              f"{', '.join(geom.io.SUFFIXES)}; split folders are named {', '.join(SPLIT_NAMES)}")
    splits = SPLIT_NAMES
    options = {**_COMMON, "split": "'train', 'test', 'val' (files below a folder of that name) or None (default None)"}

    def _index(self):
        if not self.root.is_dir():
            raise ValueError(f"root: '{self.root}' is not a folder; expected {self.layout}")
        found, stray = [], []  # (relative path, class, split)
        for folder, dirs, files in _progress(os.walk(self.root), "indexing folder"):
            dirs[:] = sorted(d for d in dirs if not _hidden(d) and pathlib.Path(folder, d) != self._skip)
            for name in sorted(files):
                path = pathlib.Path(folder, name)
                if _hidden(name) or path.suffix.lower() not in geom.io.SUFFIXES:
                    continue
                parts = path.relative_to(self.root).parts[:-1]
                splits = [p for p in parts if p in SPLIT_NAMES]
                classes = [p for p in parts if p not in SPLIT_NAMES]
                if not classes:
                    stray.append(path)
                    continue
                found.append((path, classes[-1], splits[0] if splits else None))
        if not found:
            raise ValueError(f"root: '{self.root}' has no files with suffix {', '.join(geom.io.SUFFIXES)} "
                             f"inside class folders; expected {self.layout}")
        if stray:
            _warn(f"{len(stray)} files of '{self.root}' are not inside a class folder and are skipped, "
                  f"e.g. '{stray[0]}'")
        tops = [d for s in [self.root] + [self.root / n for n in SPLIT_NAMES if (self.root / n).is_dir()]
                for d in _subdirs(s, self._skip) if d.name not in SPLIT_NAMES]
        for d in tops:
            if not any(p.suffix.lower() in geom.io.SUFFIXES and not _hidden(p.name) and p.is_file()
                       and not (self._skip and p.is_relative_to(self._skip)) for p in d.rglob("*")):
                _warn(f"class folder '{d}' has no files with suffix {', '.join(geom.io.SUFFIXES)}; it is no class")
        classes = sorted({c for _, c, _ in found})
        label = {c: k for k, c in enumerate(classes)}
        chosen = [(p, c) for p, c, s in found if self.split is None or s == self.split]
        for c in sorted(set(classes) - {c for _, c in chosen}):
            _warn(f"class {c!r} (label {label[c]}) of '{self.root}' has no files in split {self.split!r}")
        return classes, [_Entry(p, label[c], p.relative_to(self.root).as_posix()) for p, c in chosen]


@geom.hookimpl
def geom_register_datasets(register):
    register("modelnet", ModelNet)
    register("shapenet", ShapeNet)
    register("hdf5", HDF5Dataset)
    register("folder", FolderDataset)
