"""Generated datasets: procedural shapes, von Mises-Fisher mixtures, SPD ensembles, Gaussian mixtures.

Four registered generators (``root`` must be ``None``; each reads no files):

- ``"shapes"`` (:class:`Shapes`): seeded random sphere, ellipsoid, torus, cube, capsule and torus-knot
  surfaces (random size, aspect and rotation; optional noise and partial scans), sampled as point
  clouds or built as mesh measures; with ``bend > 0`` an item is a pair (shape, smoothly bent shape)
  whose rows correspond (:func:`geom_datasets.shapes.bend`).
- ``"sphere-mixtures"`` (:class:`SphereMixtures`): clouds on S^(d-1) from mixtures of von Mises-Fisher
  distributions, drawn with Wood's sampler (A. T. A. Wood, *Simulation of the von Mises Fisher
  distribution*, 1994; :func:`geom.directions.von_mises_fisher`); a class is a mixture.
- ``"spd"`` (:class:`SPDEnsembles`): covariance matrices of simulated multichannel signals with class
  structure: Wishart samples with class-dependent scale matrices, or class-specific mixing matrices
  applied to white sources with random powers plus sensor noise (:func:`geom_plugins.spd.covariances`).
- ``"gaussians"`` (:class:`GaussianMixtures`): clouds in R^d from class-dependent Gaussian mixtures.

Randomness: the class structure (means, scale and mixing matrices) comes from
``numpy.random.default_rng([seed, 0])`` and item ``i`` from ``default_rng([seed, 1, i])`` alone, so
every item is reproducible by random access, whatever was read before. Labels are ints; ``classes``
names them in order.

>>> data = Shapes(n_per_class=2, n_points=128, seed=0)
>>> len(data), data.classes[:3]
(12, ['sphere', 'ellipsoid', 'torus'])
>>> points, label = data[5]
>>> tuple(points.shape), label, data.classes[label]
((128, 3), 2, 'torus')
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

import geom
from geom._checks import check_int, check_memory, check_real, describe
from geom.io import surface_draws
from geom.directions import haar_orthogonal

from . import shapes

__all__ = ["GaussianMixtures", "SPDEnsembles", "Shapes", "SphereMixtures"]


class _Generated(geom.Dataset):
    """Shared plumbing: ``root`` must be None, seeds, index checks, per-item generators."""

    name = ""

    def _setup(self, root, seed, n_items: int, name: str = "n_per_class") -> None:
        if n_items > sys.maxsize:  # len() must hold it
            raise ValueError(f"{name}: expected at most {sys.maxsize} items in all, got {n_items}")
        if root is not None:
            raise ValueError(
                f"root: the generated dataset {self.name!r} reads no files; expected root=None, got {root!r}"
            )
        self.seed = check_int(seed, "seed", minimum=0)
        self._n = n_items

    def __len__(self) -> int:
        return self._n

    def _index(self, index) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected an int, got {describe(index)}")
        if not -self._n <= index < self._n:
            raise IndexError(f"index: expected -{self._n} <= index < {self._n}, got {index}")
        return int(index) % self._n

    def _structure_rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0])

    def _item_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 1, index])


def _check_memory(n_values: int, sizes: dict[str, int], what: str) -> None:
    """Refuse up front options whose arrays of ``n_values`` float64 numbers (times a few working copies)
    exceed the available memory, naming the largest of ``sizes`` (option -> its share of ``n_values``)."""
    check_memory(32 * n_values, max(sizes, key=sizes.get), what)


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def _rotation(rng: np.random.Generator, d: int = 3) -> np.ndarray:
    """A uniform (Haar) random rotation of R^d: :func:`geom.directions.haar_orthogonal` of a Gaussian
    matrix drawn from ``rng``, det +1."""
    q = haar_orthogonal(torch.from_numpy(rng.standard_normal((d, d)))).numpy()
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q  # (d, d)


def _check_kind(kind, allowed: tuple) -> str:
    if kind not in allowed:
        raise ValueError(f"kind: expected one of {list(allowed)}, got {kind!r}")
    return kind


# ----------------------------------------------------------------- shapes

_SHAPE_CLASSES = ["sphere", "ellipsoid", "torus", "cube", "capsule", "torus-knot"]


def _random_shape(name: str, rng: np.random.Generator) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
    """Mesh (in its canonical pose) and parameters of a random instance of class ``name``."""
    u = rng.uniform
    if name == "sphere":
        params = {"radius": u(0.6, 1.0)}
        return shapes.sphere(subdivisions=3, **params), params
    if name == "ellipsoid":
        params = {"axes": tuple(u(0.4, 1.0, 3))}
        return shapes.ellipsoid(subdivisions=3, **params), params
    if name == "torus":
        R = u(0.6, 0.9)
        params = {"R": R, "r": R * u(0.2, 0.45)}
        return shapes.torus(n_major=48, n_minor=24, **params), params
    if name == "cube":
        params = {"edges": tuple(u(0.8, 1.4, 3))}
        v, f = shapes.cube(size=1.0, divisions=8)
        return (v * np.asarray(params["edges"], dtype=np.float32), f), params
    if name == "capsule":
        params = {"radius": u(0.25, 0.45), "length": u(0.5, 1.2)}
        return shapes.capsule(n_around=24, n_cap=6, n_length=6, **params), params
    R = u(0.6, 0.8)
    params = {"p": 2, "q": 3, "R": R, "r": R * u(0.35, 0.45), "tube": R * u(0.08, 0.12)}
    return shapes.torus_knot(n_along=160, n_around=12, **params), params


class Shapes(_Generated):
    """Seeded random 3-D shapes as labelled point clouds (or mesh measures), optionally as bent pairs.

    Classes, in label order, with their random parameters (uniform in the ranges; every instance
    fits in the ball of radius 1.3):

    - ``sphere``: radius in [0.6, 1.0] (icosphere, 642 vertices);
    - ``ellipsoid``: three semi-axes in [0.4, 1.0];
    - ``torus``: R in [0.6, 0.9], tube radius r = R * [0.2, 0.45];
    - ``cube``: a box with three edges in [0.8, 1.4];
    - ``capsule``: radius in [0.25, 0.45], cylinder length in [0.5, 1.2];
    - ``torus-knot``: the (2, 3) trefoil on the torus (R, r), R in [0.6, 0.8], r = R * [0.35, 0.45],
      tube radius R * [0.08, 0.12].

    Each instance is centred at the origin and turned by a uniform random rotation (``rotation`` in
    :meth:`instance`: points = canonical points @ rotation.T). Item ``i`` has label
    ``i // n_per_class``.

    Args:
        root: must be None.
        n_per_class: items per class (default 10).
        n_points: points sampled area-uniformly on the surface (default 1024); for ``kind="mesh"``
            the measure's ``n_samples``.
        seed: seed of all randomness (default 0).
        noise: standard deviation of Gaussian noise (default 0: none): added to every point for
            ``kind="points"``, along the vertex normals of the mesh for the mesh kinds
            (:func:`geom_datasets.shapes.noisy`).
        partial: keep only what a camera sees from a random direction
            (:func:`geom_datasets.shapes.partial_scan`, mode ``"view"``; default False).
        kind: ``"points"`` (default): an item is an ``(n_points, 3)`` float32 tensor; ``"mesh"``,
            ``"mesh-discrete"`` or ``"varifold"``: a :class:`geom.Measure` of that kind.
        bend: Lipschitz strength in [0, 1) of a smooth random bending
            (:func:`geom_datasets.shapes.bend`); 0 (default) is off. When positive an item is
            ``((source, bent), label)``. For ``kind="points"`` row k of ``bent`` is the image of row
            k of ``source`` (the same face and barycentric draws on both meshes; noise is drawn
            independently for each); for ``"mesh-discrete"`` and ``"varifold"`` face k corresponds to
            face k; ``"mesh"`` samples each surface by its own areas, so rows do not correspond.
    """

    name = "shapes"
    description = "seeded random spheres, ellipsoids, tori, cubes, capsules, torus knots (noisy, partial, bent pairs)"
    items_are_shapes = True
    options = {
        "n_per_class": "items per class (default 10)",
        "n_points": "points sampled on each surface (default 1024)",
        "seed": "seed of all randomness (default 0)",
        "noise": "std of Gaussian noise on the points / along the normals (default 0.0)",
        "partial": "partial scan seen from a random direction (default False)",
        "kind": "points, mesh, mesh-discrete or varifold (default points)",
        "bend": "strength in [0, 1) of a random bending; > 0 gives (source, bent) pairs (default 0.0)",
    }
    classes = list(_SHAPE_CLASSES)

    def __init__(self, root=None, *, n_per_class=10, n_points=1024, seed=0, noise=0.0, partial=False,
                 kind="points", bend=0.0):
        self.n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
        self._setup(root, seed, self.n_per_class * len(self.classes))
        self.n_points = check_int(n_points, "n_points", minimum=1)
        _check_memory(8 * self.n_points, {"n_points": self.n_points}, f"items of {self.n_points} surface samples")
        self.noise = check_real(noise, "noise", ">= 0", lambda v: v >= 0)
        if not isinstance(partial, bool):
            raise TypeError(f"partial: expected True or False, got {describe(partial)}")
        self.partial = partial
        self.kind = _check_kind(kind, ("points", "mesh", "mesh-discrete", "varifold"))
        self.bend = check_real(bend, "bend", "in [0, 1)", lambda v: 0 <= v < 1)

    def instance(self, index: int) -> dict:
        """Everything about item ``index`` before sampling: ``label``, ``params`` (the class's
        random parameters), ``rotation (3, 3)``, ``mesh`` (rotated, partial when asked, noise-free)
        and ``bent`` (its bending with the same faces, or None)."""
        return self._instance(index)[0]

    def _instance(self, index: int) -> tuple[dict, np.random.Generator]:
        index = self._index(index)
        rng = self._item_rng(index)
        label = index // self.n_per_class
        (v, f), params = _random_shape(self.classes[label], rng)
        rotation = _rotation(rng)
        mesh = (v.astype(np.float64) @ rotation.T, f)
        if self.partial:
            mesh = shapes.partial_scan(mesh, None, mode="view", seed=int(rng.integers(2**31)))
        bent = shapes.bend(mesh, self.bend, int(rng.integers(2**31))) if self.bend > 0 else None
        return {"label": label, "params": params, "rotation": rotation, "mesh": mesh, "bent": bent}, rng

    def __getitem__(self, index):
        info, rng = self._instance(index)
        meshes = [info["mesh"]] + ([info["bent"]] if info["bent"] is not None else [])
        if self.kind == "points":
            face, bary = surface_draws(*meshes[0], self.n_points, seed=int(rng.integers(2**31)))  # shared draws
            items = []
            for v, f in meshes:
                x = np.einsum("nk,nkd->nd", bary, np.asarray(v, dtype=np.float64)[f[face]])  # (n_points, 3)
                if self.noise > 0:
                    x = _noise_in_range(x + self.noise * rng.standard_normal(x.shape), self.noise)
                items.append(torch.from_numpy(x.astype(np.float32)))
        else:
            seed = int(rng.integers(2**31))
            items = []
            for v, f in meshes:
                if self.noise > 0:
                    v, f = shapes.noisy((v, f), self.noise, int(rng.integers(2**31)))
                    v = _noise_in_range(v, self.noise)
                v = torch.as_tensor(np.asarray(v, dtype=np.float32))
                options = {"n_samples": self.n_points, "seed": seed} if self.kind == "mesh" else {}
                items.append(geom.measure((v, torch.as_tensor(f)), kind=self.kind, **options))
        return (items[0] if len(items) == 1 else tuple(items)), info["label"]


def _noise_in_range(x: np.ndarray, noise: float) -> np.ndarray:
    """``x`` unless noise took it beyond the float32 range of the items (a ValueError naming ``noise``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        representable = np.isfinite(np.asarray(x, dtype=np.float32)).all()
    if not representable:
        raise ValueError(f"noise: {noise:g} times a Gaussian leaves the float32 range of the points; choose a "
                         "smaller noise")
    return x


# ----------------------------------------------------------------- von Mises-Fisher mixtures


def mean_resultant_length(d: int, kappa: float) -> float:
    """``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)``: the mean of ``x . mu`` under vMF(mu, kappa) on S^(d-1)."""
    from scipy.special import ive

    return float(ive(d / 2, kappa) / ive(d / 2 - 1, kappa))


class SphereMixtures(_Generated):
    """Point clouds on the sphere S^(d-1) drawn from von Mises-Fisher mixtures; a class is a mixture.

    Class ``c`` is the equal-weight mixture of ``n_components`` distributions vMF(``means[c, k]``,
    ``kappa``), density proportional to ``exp(kappa mu^T x)``, with means uniform on the sphere (drawn
    once from the seed). Item ``i`` (label ``i % n_classes``) holds ``n_points`` draws: component counts
    multinomial, each component by Wood's sampler, rows shuffled; :meth:`components` gives each row's
    component. The mean of ``x . mu`` within a component is ``A_d(kappa)``
    (:func:`mean_resultant_length`).

    Args:
        root: must be None.
        d: ambient dimension, ``>= 2`` (default 3: points on S^2).
        n_classes: number of mixtures (default 2).
        n_components: components per mixture (default 3).
        kappa: concentration ``> 0`` (default 20.0).
        n_points: points per item (default 256).
        n_items: number of items (default 20).
        seed: seed of all randomness (default 0).
        kind: ``"points"`` (default): an ``(n_points, d)`` float32 tensor of unit rows; ``"sphere"``:
            a :class:`geom.Measure` of that kind.

    Attributes:
        means: ``(n_classes, n_components, d)`` float64 unit vectors.
    """

    name = "sphere-mixtures"
    description = "clouds on S^(d-1) from von Mises-Fisher mixtures (Wood's sampler); one class per mixture"
    options = {
        "d": "ambient dimension, points on S^(d-1) (default 3)",
        "n_classes": "number of mixtures (default 2)",
        "n_components": "vMF components per mixture (default 3)",
        "kappa": "concentration (default 20.0)",
        "n_points": "points per item (default 256)",
        "n_items": "number of items, label = index % n_classes (default 20)",
        "seed": "seed of all randomness (default 0)",
        "kind": "points or sphere (default points)",
    }

    def __init__(self, root=None, *, d=3, n_classes=2, n_components=3, kappa=20.0, n_points=256, n_items=20,
                 seed=0, kind="points"):
        self._setup(root, seed, check_int(n_items, "n_items", minimum=1), "n_items")
        self.d = check_int(d, "d", minimum=2)
        self.n_classes = check_int(n_classes, "n_classes", minimum=1)
        self.n_components = check_int(n_components, "n_components", minimum=1)
        self.kappa = check_real(kappa, "kappa", "> 0", lambda v: v > 0)
        self.n_points = check_int(n_points, "n_points", minimum=1)
        C, K, d, n = self.n_classes, self.n_components, self.d, self.n_points
        _check_memory(C * K * d, {"n_classes": C, "n_components": K, "d": d}, f"the {C} x {K} mixture means in R^{d}")
        _check_memory(4 * n * d, {"n_points": n, "d": d}, f"items of {n} points in R^{d}")
        self.kind = _check_kind(kind, ("points", "sphere"))
        self.classes = [f"mixture-{c}" for c in range(self.n_classes)]
        means = self._structure_rng().standard_normal((self.n_classes, self.n_components, self.d))
        self.means = means / np.linalg.norm(means, axis=-1, keepdims=True)

    def _draw(self, index: int) -> tuple[torch.Tensor, np.ndarray, int]:
        from geom.directions import von_mises_fisher

        index = self._index(index)
        rng = self._item_rng(index)
        label = index % self.n_classes
        counts = rng.multinomial(self.n_points, np.full(self.n_components, 1.0 / self.n_components))  # (K,)
        g = _torch_generator(rng)
        parts = [von_mises_fisher(torch.from_numpy(self.means[label, k]), self.kappa, int(n), generator=g)
                 for k, n in enumerate(counts) if n > 0]
        component = np.repeat(np.arange(self.n_components), counts)  # (n_points,)
        order = rng.permutation(self.n_points)
        return torch.cat(parts)[torch.from_numpy(order)], component[order], label

    def components(self, index: int) -> np.ndarray:
        """``(n_points,)`` component index of each row of item ``index``."""
        return self._draw(index)[1]

    def __getitem__(self, index):
        x, _, label = self._draw(index)
        x = x.float()  # (n_points, d)
        return (x if self.kind == "points" else geom.measure(x, kind="sphere", normalize=True)), label


# ----------------------------------------------------------------- SPD ensembles

_SPD_KINDS = ("spd", "spd-logsw", "spd-affine")


class SPDEnsembles(_Generated):
    """Covariance matrices of simulated multichannel signals with class structure.

    Every matrix is ``covariances(x, shrinkage=shrinkage, center=False)``
    (:func:`geom_plugins.spd.covariances`) of a zero-mean signal ``x`` of ``n_channels`` channels and
    ``n_times`` samples:

    - ``model="wishart"``: ``x = L_c z``, ``z`` white, ``L_c L_c^T = Sigma_c``; without shrinkage the
      matrix is Wishart(``Sigma_c / n_times``, ``n_times``), mean ``Sigma_c``.
    - ``model="signals"``: ``x = A_c diag(sqrt(p)) s + noise * e``, ``s`` and ``e`` white, source powers
      ``p = exp(0.5 g)``, ``g ~ N(0, I)`` drawn per matrix (trial-to-trial variability), ``A_c`` the class's
      mixing matrix; mean ``exp(1/8) A_c A_c^T + noise^2 I`` without shrinkage.

    ``Sigma_c = Q_c diag(lambda_c) Q_c^T`` and ``A_c = Q_c diag(sqrt(lambda_c))``, ``Q_c`` a random
    rotation and ``log lambda_c`` uniform in [-1, 1], are drawn once from the seed; :attr:`scales` holds
    each class's mean matrix. Item ``i`` has label ``i // n_per_class``.

    Args:
        root: must be None.
        model: ``"wishart"`` (default) or ``"signals"``.
        n_channels: matrix size n (default 4).
        n_times: time samples per signal (default 64); at least ``n_channels`` without shrinkage.
        n_classes: number of classes (default 2).
        n_per_class: items per class (default 10).
        n_matrices: ``None`` (default): an item is one ``(n, n)`` matrix; an int m: an ensemble
            ``(m, n, n)``.
        shrinkage: as in ``covariances``: ``None`` (default), a number in [0, 1] or ``"ledoit-wolf"``.
        noise: sensor noise standard deviation of ``"signals"`` (default 0.1).
        seed: seed of all randomness (default 0).
        kind: ``None`` (default): float32 tensors; ``"spd"``, ``"spd-logsw"`` or ``"spd-affine"``: a
            :class:`geom.Measure` of that kind over the item's matrices.

    Attributes:
        scales: ``(n_classes, n, n)`` float64 mean matrix of each class (without shrinkage).
    """

    name = "spd"
    description = "SPD ensembles: Wishart samples or covariances of mixed multichannel signals, by class"
    options = {
        "model": "wishart or signals (default wishart)",
        "n_channels": "matrix size (default 4)",
        "n_times": "time samples per simulated signal (default 64)",
        "n_classes": "number of classes (default 2)",
        "n_per_class": "items per class (default 10)",
        "n_matrices": "None: one (n, n) matrix per item; m: an (m, n, n) ensemble (default None)",
        "shrinkage": "None, a number in [0, 1] or ledoit-wolf (default None)",
        "noise": "sensor noise std of the signals model (default 0.1)",
        "seed": "seed of all randomness (default 0)",
        "kind": "None (tensors), spd, spd-logsw or spd-affine (default None)",
    }

    def __init__(self, root=None, *, model="wishart", n_channels=4, n_times=64, n_classes=2, n_per_class=10,
                 n_matrices=None, shrinkage=None, noise=0.1, seed=0, kind=None):
        self.n_classes = check_int(n_classes, "n_classes", minimum=1)
        self.n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
        self._setup(root, seed, self.n_classes * self.n_per_class, "n_classes, n_per_class")
        if model not in ("wishart", "signals"):
            raise ValueError(f"model: expected 'wishart' or 'signals', got {model!r}")
        self.model = model
        self.n_channels = check_int(n_channels, "n_channels", minimum=1)
        self.n_times = check_int(n_times, "n_times", minimum=1)
        self.n_matrices = None if n_matrices is None else check_int(n_matrices, "n_matrices", minimum=1)
        if not (shrinkage is None or shrinkage == "ledoit-wolf"):
            check_real(shrinkage, "shrinkage", "in [0, 1], None or 'ledoit-wolf'", lambda v: 0 <= v <= 1)
        if (shrinkage is None or shrinkage == 0) and self.n_times < self.n_channels:
            raise ValueError(f"n_times: expected at least n_channels={self.n_channels} time samples without "
                             f"shrinkage (else the covariance is singular), got {self.n_times}")
        self.shrinkage = shrinkage
        self.noise = check_real(noise, "noise", ">= 0", lambda v: v >= 0)
        C, m, n, T = self.n_classes, self.n_matrices or 1, self.n_channels, self.n_times
        _check_memory(3 * C * n * n, {"n_classes": C, "n_channels": n * n}, f"the {C} class matrices of size {n}")
        _check_memory(3 * m * n * (T + n), {"n_matrices": m, "n_channels": n * n, "n_times": T},
                      f"items of {m} signals of {n} channels x {T} times")
        self.kind = None if kind is None else _check_kind(kind, _SPD_KINDS + (None,))
        self.classes = [f"class-{c}" for c in range(self.n_classes)]
        rng = self._structure_rng()
        n = self.n_channels
        rotations = np.stack([_rotation(rng, n) for _ in range(self.n_classes)])  # (C, n, n)
        lam = np.exp(rng.uniform(-1.0, 1.0, (self.n_classes, n)))  # (C, n)
        self._factors = rotations * np.sqrt(lam)[:, None, :]  # (C, n, n): L_c = A_c = Q_c diag(sqrt(lambda_c))
        scales = self._factors @ self._factors.transpose(0, 2, 1)  # (C, n, n)
        if model == "signals":
            scales = math.exp(1 / 8) * scales + self.noise**2 * np.eye(n)
        self.scales = scales

    def __getitem__(self, index):
        from geom_plugins.spd import covariances

        index = self._index(index)
        rng = self._item_rng(index)
        label = index // self.n_per_class
        m, n, T = self.n_matrices or 1, self.n_channels, self.n_times
        factor = self._factors[label]  # (n, n)
        z = rng.standard_normal((m, n, T))
        if self.model == "wishart":
            x = factor @ z  # (m, n, T)
        else:
            power = np.exp(0.5 * rng.standard_normal((m, n, 1)))  # (m, n, 1)
            x = factor @ (np.sqrt(power) * z) + self.noise * rng.standard_normal((m, n, T))
        S = covariances(torch.from_numpy(x), shrinkage=self.shrinkage, center=False).float()  # (m, n, n)
        S = 0.5 * (S + S.transpose(1, 2))  # exactly symmetric in float32
        if self.kind is not None:
            return geom.measure(S, kind=self.kind), label
        return (S[0] if self.n_matrices is None else S), label


# ----------------------------------------------------------------- Gaussian mixtures


class GaussianMixtures(_Generated):
    """Point clouds in R^d from class-dependent Gaussian mixtures.

    Class ``c`` is the equal-weight mixture of ``n_components`` Gaussians N(``means[c, k]``,
    ``covariances[c, k]``): means ``~ N(0, separation^2 I)``, covariances ``Q diag(lambda) Q^T`` with
    ``Q`` a random rotation and ``lambda`` uniform in [0.1, 1], drawn once from the seed. Item ``i``
    (label ``i // n_per_class``) holds ``n_points`` i.i.d. draws of its class's mixture;
    :meth:`components` gives each row's component.

    Args:
        root: must be None.
        d: dimension (default 3).
        n_points: points per item (default 256).
        n_per_class: items per class (default 10).
        n_classes: number of classes (default 3).
        n_components: Gaussians per class (default 2).
        separation: standard deviation of the means (default 2.0).
        seed: seed of all randomness (default 0).

    Attributes:
        means: ``(n_classes, n_components, d)``; covariances: ``(n_classes, n_components, d, d)``;
        weights: ``(n_components,)`` (all float64).
    """

    name = "gaussians"
    description = "clouds in R^d from class-dependent Gaussian mixtures"
    options = {
        "d": "dimension (default 3)",
        "n_points": "points per item (default 256)",
        "n_per_class": "items per class (default 10)",
        "n_classes": "number of classes (default 3)",
        "n_components": "Gaussians per class mixture (default 2)",
        "separation": "standard deviation of the component means (default 2.0)",
        "seed": "seed of all randomness (default 0)",
    }

    def __init__(self, root=None, *, d=3, n_points=256, n_per_class=10, n_classes=3, n_components=2,
                 separation=2.0, seed=0):
        self.n_classes = check_int(n_classes, "n_classes", minimum=1)
        self.n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
        self._setup(root, seed, self.n_classes * self.n_per_class, "n_classes, n_per_class")
        self.d = check_int(d, "d", minimum=1)
        self.n_points = check_int(n_points, "n_points", minimum=1)
        self.n_components = check_int(n_components, "n_components", minimum=1)
        self.separation = check_real(separation, "separation", ">= 0", lambda v: v >= 0)
        C, K, d, N = self.n_classes, self.n_components, self.d, self.n_points
        _check_memory(3 * C * K * d * d, {"n_classes": C, "n_components": K, "d": d * d},
                      f"the {C} x {K} covariance matrices in R^{d}")
        _check_memory(N * d * (d + 3), {"n_points": N, "d": d * d}, f"items of {N} points in R^{d}")
        self.classes = [f"class-{c}" for c in range(self.n_classes)]
        rng = self._structure_rng()
        self.means = self.separation * rng.standard_normal((C, K, d))
        with np.errstate(over="ignore"):
            representable = np.isfinite(self.means.astype(np.float32)).all()  # the items are float32
        if not representable:
            raise ValueError(f"separation: means {self.separation:g} times a Gaussian leave the float32 range of the "
                             "items; choose a smaller separation")
        Q = np.stack([_rotation(rng, d) for _ in range(C * K)]).reshape(C, K, d, d)
        lam = rng.uniform(0.1, 1.0, (C, K, d))
        self.covariances = (Q * lam[..., None, :]) @ Q.swapaxes(-1, -2)  # (C, K, d, d)
        self._factors = Q * np.sqrt(lam)[..., None, :]  # (C, K, d, d): factor factor^T = covariance
        self.weights = np.full(K, 1.0 / K)

    def _draw(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        index = self._index(index)
        rng = self._item_rng(index)
        label = index // self.n_per_class
        component = rng.choice(self.n_components, size=self.n_points, p=self.weights)  # (N,)
        z = rng.standard_normal((self.n_points, self.d))
        x = self.means[label, component] + np.einsum("nij,nj->ni", self._factors[label, component], z)  # (N, d)
        return x, component, label

    def components(self, index: int) -> np.ndarray:
        """``(n_points,)`` component index of each row of item ``index``."""
        return self._draw(index)[1]

    def __getitem__(self, index):
        x, _, label = self._draw(index)
        return torch.from_numpy(x.astype(np.float32)), label


@geom.hookimpl
def geom_register_datasets(register):
    register("gaussians", GaussianMixtures)
    register("shapes", Shapes)
    register("spd", SPDEnsembles)
    register("sphere-mixtures", SphereMixtures)
