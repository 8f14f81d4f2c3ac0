"""Real data that works offline: scikit-learn's 8x8 digits and the vega_datasets airports on S^2.

Both collections ship inside a Python package, so nothing is downloaded; the packages are optional
extras imported only when a dataset is built (``pip install geom[digits]``, ``geom[airports]``).

``"digits"`` (:class:`Digits`): the 1797 handwritten digits of :func:`sklearn.datasets.load_digits`
(UCI optical recognition of handwritten digits, 8x8 images of integer intensities 0..16), either

- ``representation="pixels"`` (default): each image is a weighted 2-D measure, a :class:`geom.Measure`
  of kind ``"points"`` whose support is the 64 pixel centres of the unit square (:data:`PIXEL_GRID`)
  and whose weights are the intensities divided by their sum. Blank pixels stay in the support with
  weight zero, so every image has the same ``(64, 2)`` support and images batch without padding; or
- ``representation="vectors"``: each image is a point of R^64, the ``(64,)`` float32 tensor of its
  intensities divided by 16 (row-major; values in ``[0, 1]``).

``geom.sliced_wasserstein(a, b)`` compares two pixel measures directly (sliced Wasserstein between
images as in N. Bonneel, J. Rabin, G. Peyre, H. Pfister, *Sliced and Radon Wasserstein Barycenters of
Measures*, JMIV 2015); :meth:`Digits.batch` stacks many images into one batched Measure.

``"airports"`` (:class:`Airports`): the 3376 airports of vega_datasets' ``airports.csv`` (FAA codes,
names, US states, latitude and longitude in degrees), mapped to the unit sphere S^2 by
:func:`latlon_to_sphere`: ``x = cos(lat) cos(lon)``, ``y = cos(lat) sin(lon)``, ``z = sin(lat)``
(longitude positive east, so the Earth's centre is the origin, z points to the North Pole and x to
latitude 0, longitude 0). With ``by="state"`` (default) an item is the airports of one state as a
uniform measure on the sphere, label the state; with ``by="all"`` the one item is every airport.
Items are Measures of kind ``"sphere"`` by default, so ``geom.sliced_wasserstein(a, b)`` is the
spherical sliced Wasserstein distance (C. Bonet et al., *Spherical Sliced-Wasserstein*, ICLR 2023).

Items that are Measures do not stack with PyTorch's default collate: pass
``collate_fn=geom.collate`` to a DataLoader (it pads with zero weights), or use
:meth:`Digits.batch`.

>>> data = Digits(split="test", classes=["3", "8"])
>>> len(data), data.classes
(90, ['3', '8'])
>>> a, label = data[0]
>>> a.support.shape, a.weights.shape, round(float(a.weights.sum()), 6)
(torch.Size([1, 64, 2]), torch.Size([1, 64]), 1.0)
"""

from __future__ import annotations

import csv

import numpy as np
import torch

import geom
from geom._checks import check_int, check_real, describe

__all__ = ["Airports", "Digits", "PIXEL_GRID", "airports_csv", "collate_measures", "latlon_to_sphere"]

_DIGIT_NAMES = [str(d) for d in range(10)]

PIXEL_GRID = torch.tensor(
    [[(j + 0.5) / 8, (7.5 - i) / 8] for i in range(8) for j in range(8)], dtype=torch.float32
)  # (64, 2)
"""Centres ``(x, y)`` of the 8x8 pixels in ``[0, 1]^2``, row-major like ``image.reshape(64)``: pixel
``(row i, column j)`` sits at ``((j + 0.5) / 8, 1 - (i + 0.5) / 8)`` (row 0 on top, y pointing up)."""


def _select(value, name: str, allowed: list[str], default: list[str]) -> list[str]:
    """A list of distinct names from ``allowed`` (ints accepted as their str); ``None`` -> ``default``."""
    if value is None:
        return list(default)
    if isinstance(value, (str, int)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name}: expected a list of names from {allowed}, got {describe(value)}")
    names = [str(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v for v in value]
    bad = [v for v in names if v not in allowed]
    if bad:
        raise ValueError(f"{name}: expected names from {allowed}, got unknown {bad!r}")
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{name}: expected a non-empty list of distinct names, got {names!r}")
    return names


def _check_index(index, n: int) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"index: expected an int, got {describe(index)}")
    if not -n <= index < n:
        raise IndexError(f"index: expected -{n} <= index < {n}, got {index}")
    return int(index) % n


def collate_measures(batch):
    """``collate_fn`` for DataLoaders of Measure items: :func:`geom.collate` (kept under this name).

    ``[(Measure, label)]`` -> ``(Measure (B, N_max, ...), (B,) labels)``, padded with zero-weight copies
    of each measure's first point (a copy stays on the sphere, so ``"sphere"`` measures stay valid).
    """
    return geom.collate(batch)


class Digits(geom.Dataset):
    """scikit-learn's 8x8 handwritten digits, as 2-D pixel measures or as points of R^64.

    Args:
        root: must be ``None`` (the data ships with scikit-learn).
        representation: ``"pixels"`` (item: a Measure of kind ``"points"`` on :data:`PIXEL_GRID`,
            weights the normalised intensities, blank pixels at weight zero) or ``"vectors"`` (item: a
            ``(64,)`` float32 tensor, intensities / 16).
        split: ``"all"``, ``"train"`` or ``"test"``. The split is stratified and seeded: with
            ``numpy.random.default_rng(seed)``, each digit 0..9 in turn has its images permuted and the
            first ``round(test_fraction * count)`` (Python's round, half to even) go to ``"test"``, the rest to ``"train"``. It does
            not depend on ``classes``.
        test_fraction: share of every digit in ``"test"``, in (0, 1); default 0.25 (1797 images:
            450 test, 1347 train).
        seed: seed of the split.
        classes: digits to keep, names ``"0"``..``"9"`` (ints accepted); labels follow this order.

    Attributes:
        classes: digit names in label order.
        images: ``(N, 8, 8)`` float32 intensities 0..16 of the kept images.
        targets: ``(N,)`` int64 labels (indices into ``classes``).
        indices: ``(N,)`` int64 rows of the kept images in ``sklearn.datasets.load_digits()``.
    """

    description = "scikit-learn's 1797 8x8 handwritten digits (offline): 2-D pixel measures or points of R^64"
    options = {
        "representation": '"pixels" (weighted measure on the 8x8 pixel centres in [0, 1]^2) or "vectors" '
        '((64,) intensities / 16) (default "pixels")',
        "split": '"all", "train" or "test", seeded and stratified by digit (default "all")',
        "test_fraction": "share of each digit in the test split (default 0.25)",
        "seed": "seed of the train/test split (default 0)",
        "classes": 'digits to keep, e.g. ["3", "8"]; labels follow this order (default all ten)',
    }

    def __init__(self, root=None, *, representation="pixels", split="all", test_fraction=0.25, seed=0, classes=None):
        if root is not None:
            raise ValueError(f"root: the digits ship with scikit-learn, expected None, got {root!r}")
        if representation not in ("pixels", "vectors"):
            raise ValueError(f"representation: expected 'pixels' or 'vectors', got {representation!r}")
        if split not in ("all", "train", "test"):
            raise ValueError(f"split: expected 'all', 'train' or 'test', got {split!r}")
        test_fraction = check_real(test_fraction, "test_fraction", "in (0, 1)", lambda v: 0 < v < 1)
        seed = check_int(seed, "seed")
        self.representation, self.split, self.test_fraction, self.seed = representation, split, test_fraction, seed
        self.classes = _select(classes, "classes", _DIGIT_NAMES, _DIGIT_NAMES)

        images, target = _load_digits()  # (1797, 8, 8), (1797,)
        in_test = np.zeros(len(target), dtype=bool)
        rng = np.random.default_rng(seed)
        for digit in range(10):  # every digit consumes the generator, whatever `classes` keeps
            rows = rng.permutation(np.flatnonzero(target == digit))
            in_test[rows[: round(test_fraction * len(rows))]] = True
        keep = {"all": np.ones_like(in_test), "train": ~in_test, "test": in_test}[split]
        label_of = np.full(10, -1)
        label_of[[int(c) for c in self.classes]] = np.arange(len(self.classes))
        keep &= label_of[target] >= 0
        rows = np.flatnonzero(keep)
        self.indices = torch.from_numpy(rows)  # (N,)
        self.images = torch.from_numpy(images[rows]).to(torch.float32)  # (N, 8, 8)
        self.targets = torch.from_numpy(label_of[target[rows]]).to(torch.int64)  # (N,)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        index = _check_index(index, len(self))
        intensity = self.images[index].reshape(64)  # (64,)
        label = int(self.targets[index])
        if self.representation == "vectors":
            return intensity / 16.0, label
        return geom.measure(PIXEL_GRID, weights=intensity), label

    def batch(self, indices=None):
        """Many items at once: ``(items, (B,) int64 labels)`` for ``indices`` (default: every item).

        ``items`` is a batched Measure ``(B, 64, 2)`` for ``"pixels"`` (compare two batches item by
        item with one ``geom.sliced_wasserstein`` call) or a ``(B, 64)`` float32 tensor for ``"vectors"``.
        """
        idx = torch.arange(len(self)) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
        if idx.ndim != 1 or (len(idx) and not bool(((idx >= -len(self)) & (idx < len(self))).all())):
            raise IndexError(f"indices: expected a 1-D list of indices in [-{len(self)}, {len(self)}), got {indices!r}")
        intensity = self.images[idx].reshape(len(idx), 64)  # (B, 64)
        labels = self.targets[idx]
        if self.representation == "vectors":
            return intensity / 16.0, labels
        support = PIXEL_GRID.expand(len(idx), 64, 2)  # (B, 64, 2)
        return geom.measure(support, weights=intensity), labels


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "the 'digits' dataset needs scikit-learn, which ships the images: pip install geom[digits]"
        ) from exc
    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def latlon_to_sphere(latitude, longitude) -> np.ndarray:
    """Latitude and longitude in degrees (longitude positive east) -> ``(..., 3)`` float64 unit vectors.

    ``(cos(lat) cos(lon), cos(lat) sin(lon), sin(lat))``: z towards the North Pole, x towards latitude
    0, longitude 0. The angle between two images is the great-circle distance in radians.
    """
    lat, lon = np.radians(np.asarray(latitude, dtype=np.float64)), np.radians(np.asarray(longitude, dtype=np.float64))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def airports_csv():
    """Path of the airports CSV bundled with vega_datasets (ImportError naming the extra when absent)."""
    try:
        from vega_datasets import local_data
    except ImportError as exc:
        raise ImportError(
            "the 'airports' dataset needs vega_datasets, which ships the airport table: pip install geom[airports]"
        ) from exc
    return local_data.airports.filepath


def _read_airports(path) -> tuple[list[dict], np.ndarray]:
    """Rows of the airports CSV and their ``(A, 2)`` latitudes and longitudes, each row checked."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = {"iata", "state", "latitude", "longitude"}
    if not rows or not columns <= set(rows[0]):
        raise ValueError(f"'{path}': expected an airports table with columns {sorted(columns)}, got "
                         f"{sorted(rows[0]) if rows else 'no rows'}")
    latlon = np.empty((len(rows), 2))
    for i, r in enumerate(rows):
        try:
            latlon[i] = float(r["latitude"]), float(r["longitude"])
        except (TypeError, ValueError):
            latlon[i] = np.nan
        if not (abs(latlon[i, 0]) <= 90 and abs(latlon[i, 1]) <= 180):  # NaN fails too
            raise ValueError(f"'{path}': row {i + 2} ({r.get('iata')!r}) has latitude {r['latitude']!r} and "
                             f"longitude {r['longitude']!r}; expected numbers in [-90, 90] and [-180, 180]")
    return rows, latlon


class Airports(geom.Dataset):
    """US airport locations (vega_datasets, offline) as measures on the unit sphere S^2.

    Items: ``(item, label)`` with one item per class: ``item`` the airports of one state (or all of
    them) as a uniform :class:`geom.Measure` of kind ``"sphere"`` (default) or an ``(n, 3)`` float32
    tensor of unit vectors, and ``label == index``, the state's position in :attr:`classes`. Each
    class is one measure, not a collection of samples: compare states with each other, or sample
    from a state's measure, rather than holding items of a class out.

    The CSV is read as text (columns ``iata, name, city, state, country, latitude, longitude``); the
    state ``"NA"`` means unknown (12 airports, among them 4 outside the US states) and such airports
    belong to no state. A row without a finite latitude in [-90, 90] and longitude in [-180, 180] is
    a ValueError naming the file and the row.

    Args:
        root: must be ``None`` (the data ships with vega_datasets).
        by: ``"state"`` (one item per state, its airports, label the state; airports of unknown state
            left out) or ``"all"`` (one item holding all 3376 airports, class ``"all"``).
        kind: ``"sphere"`` (item: a uniform Measure of kind ``"sphere"``, for spherical SW) or
            ``"points"`` (item: the ``(n, 3)`` float32 tensor of unit vectors, as the 3-D loaders
            give; ``geom.measure`` of it compares the same points in R^3).
        states: with ``by="state"``, the state codes to keep (labels follow this order); default every
            code of the file, sorted (56: the 50 states, DC and 5 territories).

    Attributes:
        classes: state codes in label order (``["all"]`` with ``by="all"``).
        iata, state: per airport of the file, in file order (``state`` is ``""`` where unknown).
        points: ``(3376, 3)`` float32 unit vectors of every airport, in file order.
        members: per label, the ``(n,)`` int64 rows of :attr:`points` in that item.
    """

    description = "3376 US airports from vega_datasets (offline) as points on the sphere S^2, one measure per state"
    options = {
        "by": '"state" (one measure per state) or "all" (every airport in one measure) (default "state")',
        "kind": '"sphere" (geom.Measure, for spherical SW) or "points" ((n, 3) tensor of unit vectors) '
        '(default "sphere")',
        "states": 'state codes to keep, e.g. ["CA", "NV"]; labels follow this order (default all, sorted)',
    }

    def __init__(self, root=None, *, by="state", kind="sphere", states=None):
        if root is not None:
            raise ValueError(f"root: the airports ship with vega_datasets, expected None, got {root!r}")
        if by not in ("state", "all"):
            raise ValueError(f"by: expected 'state' or 'all', got {by!r}")
        if kind not in ("sphere", "points"):
            raise ValueError(f"kind: expected 'sphere' or 'points', got {kind!r}")
        if by == "all" and states is not None:
            raise ValueError(f"states: only used with by='state', got {states!r} with by='all'")
        self.by, self.kind = by, kind
        rows, latlon = _read_airports(airports_csv())  # (A, 2) degrees
        self.iata = [r["iata"] for r in rows]
        self.state = [r["state"] if r["state"] != "NA" else "" for r in rows]
        xyz = latlon_to_sphere(latlon[:, 0], latlon[:, 1])  # (A, 3)
        self.points = torch.from_numpy(xyz).to(torch.float32)  # (A, 3)
        if by == "all":
            self.classes, self.members = ["all"], [torch.arange(len(rows))]
            return
        codes = sorted({s for s in self.state if s})
        self.classes = _select(states, "states", codes, codes)
        state = np.array(self.state)
        self.members = [torch.from_numpy(np.flatnonzero(state == c)) for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index):
        index = _check_index(index, len(self))
        x = self.points[self.members[index]]  # (n, 3)
        return (geom.measure(x, kind="sphere") if self.kind == "sphere" else x), index


@geom.hookimpl
def geom_register_datasets(register):
    register("digits", Digits)
    register("airports", Airports)
