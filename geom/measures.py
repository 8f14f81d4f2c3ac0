"""Measures: weighted, batched supports living in a representation space.

A :class:`Measure` is a batch of ``B`` discrete measures ``sum_i w_i delta_{x_i}`` stored as a padded
support tensor ``(B, N, *event)`` and weights ``(B, N)`` that are non-negative and sum to 1 per
measure (padding has weight zero). The representation (``kind``) says what the support means, what a
direction is and how a support is projected onto a line; :func:`measure` is the single door from
raw input to a Measure.

:meth:`Measure.normalized` (``measure(..., normalize="sphere" | "box")``) moves and scales the
positions of each item to unit size (:func:`normalization` gives the map); :func:`collate` stacks
dataset items of any sizes into one padded batch (the ``collate_fn`` of a DataLoader).
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import torch
import torch.utils.data

from ._checks import _as_int, as_real_tensor, check_device, check_finite, describe
from .io import ARRAY_SUFFIXES, read_array
from .registry import get_representation

__all__ = ["POSITIONS", "Measure", "as_support", "collate", "measure", "normalization", "normalize_weights"]

_ACCEPTED = "an array, tensor or nested list of shape (N, D) or (B, N, D), a file path, a trimesh or open3d object"


def as_support(obj, name: str = "obj", expected: str = _ACCEPTED) -> torch.Tensor:
    """Numeric input -> float tensor: float64 kept, every other type float32, autograd kept (the
    support converter of representations). Errors name the argument ``name`` and say ``expected``."""
    return as_real_tensor(obj, name, expected)


class Measure:
    """A batch of weighted discrete measures.

    Attributes:
        support: ``(B, N, *event)`` tensor (for point clouds ``event = (D,)``).
        weights: ``(B, N)`` tensor, non-negative, each row summing to 1.
        kind: registered name of the representation the support belongs to.
        batched: whether the input had a batch dimension (results are then ``(B,)``, else scalars).
        uniform: every measure has the same number of points, all with equal weight (the fast path).
    """

    __slots__ = ("support", "weights", "kind", "batched", "uniform")

    def __init__(self, support: torch.Tensor, weights: torch.Tensor, *, kind: str, batched: bool, uniform: bool):
        assert support.shape[:2] == weights.shape, (support.shape, weights.shape)
        self.support, self.weights = support, weights
        self.kind, self.batched, self.uniform = kind, batched, uniform

    @property
    def batch_size(self) -> int:
        return self.support.shape[0]

    @property
    def n_points(self) -> int:
        return self.support.shape[1]

    @property
    def dim(self) -> int:
        """Dimension of the ambient space of one support point (``D`` for point clouds)."""
        return math.prod(self.support.shape[2:])  # from the shape: indexing a tensor costs ~10 us

    @property
    def dtype(self) -> torch.dtype:
        return self.support.dtype

    @property
    def device(self) -> torch.device:
        return self.support.device

    def to(self, *args, **kwargs) -> "Measure":
        """Move or cast like :meth:`torch.Tensor.to`; autograd history is kept."""
        support = self.support.to(*args, **kwargs)
        weights = self.weights.to(device=support.device, dtype=support.dtype)
        return Measure(support, weights, kind=self.kind, batched=self.batched, uniform=self.uniform)

    def detach(self) -> "Measure":
        """The same measure cut from the autograd graph (support and weights detached)."""
        return Measure(self.support.detach(), self.weights.detach(), kind=self.kind, batched=self.batched,
                       uniform=self.uniform)

    def expand(self, batch_size: int) -> "Measure":
        """A batch of ``batch_size`` items: a batch of one repeated (a view, no copy), or ``self`` when
        it already has that size. The result is batched unless it is ``self``."""
        B = _as_int(batch_size)
        if B is None or B < 1:
            raise TypeError(f"batch_size: expected a positive int, got {describe(batch_size)}")
        if B == self.batch_size:
            return self
        if self.batch_size != 1:
            raise ValueError(f"batch_size: a batch of {self.batch_size} measures cannot be expanded to {B} (only "
                             "a batch of one broadcasts)")
        return Measure(self.support.expand(B, *self.support.shape[1:]), self.weights.expand(B, -1), kind=self.kind,
                       batched=True, uniform=self.uniform)

    def __len__(self) -> int:
        """The batch size ``B``."""
        return self.batch_size

    def __getitem__(self, index) -> "Measure":
        """Items of the batch: an int gives one unbatched measure; a slice, a list or a tensor of indices
        or booleans gives a batch. Indices count from the end when negative; out of range is an IndexError."""
        i = _as_int(index)
        if i is not None:
            B = self.batch_size
            if not -B <= i < B:
                raise IndexError(f"index: expected an item index in [-{B}, {B}), got {i}")
            i %= B
            return Measure(self.support[i:i + 1], self.weights[i:i + 1], kind=self.kind, batched=False,
                           uniform=self.uniform)
        if isinstance(index, slice):
            support, weights = self.support[index], self.weights[index]
        else:
            try:
                idx = torch.as_tensor(index, device=self.support.device)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"index: expected an int, a slice or indices, got {describe(index)}") from exc
            if idx.dtype == torch.bool:
                if tuple(idx.shape) != (self.batch_size,):
                    raise IndexError(f"index: expected {self.batch_size} booleans, got shape {tuple(idx.shape)}")
                idx = idx.nonzero()[:, 0]
            if idx.ndim != 1 or idx.is_floating_point() or idx.is_complex():
                raise TypeError(f"index: expected an int, a slice or a 1-D array of integer indices, got "
                                f"{describe(index)}")
            B = self.batch_size
            if idx.numel() and (int(idx.min()) < -B or int(idx.max()) >= B):
                raise IndexError(f"index: expected item indices in [-{B}, {B}), got [{int(idx.min())}, {int(idx.max())}]")
            support, weights = self.support[idx], self.weights[idx]
        if support.shape[0] == 0:
            raise IndexError("index: selects no item (a Measure holds at least one)")
        return Measure(support, weights, kind=self.kind, batched=True, uniform=self.uniform)

    def replace(self, *, support=None, weights=None) -> "Measure":
        """A measure of the same kind with a new ``support`` (the same ``B`` and ``N``, for example moved
        points, or points lifted to more coordinates; differentiable) and/or new ``weights`` (``(B, N)``,
        or ``(N,)`` for an unbatched measure; normalised to sum to 1). What is not given is kept."""
        new = self.support
        if support is not None:
            if not isinstance(support, torch.Tensor):
                support = as_support(support, "support", f"an array of shape {tuple(self.support.shape)}")
            lead = tuple(self.support.shape[:2])  # (B, N)
            if not self.batched and support.ndim >= 1 and support.shape[0] == lead[1] and \
                    support.ndim == self.support.ndim - 1:
                support = support[None]
            if tuple(support.shape[:2]) != lead or support.ndim < 3:
                want = f"({lead[0]}, {lead[1]}, ...)" if self.batched else f"({lead[1]}, ...)"
                raise ValueError(f"support: expected shape {want} (the points of the measure), got "
                                 f"{tuple(support.shape)}")
            check_device(support, "support")
            check_finite(support.detach(), "support")
            new = support
        if weights is None:
            w, uniform = self.weights.to(device=new.device, dtype=new.dtype), self.uniform
        else:
            w, uniform = normalize_weights(weights, new, batched=self.batched)
        return Measure(new, w, kind=self.kind, batched=self.batched, uniform=uniform)

    def normalized(self, how: str) -> "Measure":
        """This measure with its positions moved and scaled item by item: ``x -> (x - centre) / scale``
        with ``(centre, scale)`` of :func:`normalization` (``how`` is ``"sphere"`` or ``"box"``).

        Weights, kind and flags are kept; for ``"varifold"`` only the first 3 coordinates (the
        centroids) move, the normal part is left as it is. ``centre`` and ``scale`` are constants
        (computed from detached data), so the map is a fixed similarity and gradients flow through it
        to the support.

        >>> import geom
        >>> mu = geom.measure([[0.0, 0.0], [4.0, 0.0]]).normalized("sphere")
        >>> mu.support[0].tolist()
        [[-1.0, 0.0], [1.0, 0.0]]
        """
        centre, scale = normalization(self, how)
        d, x = centre.shape[-1], self.support
        moved = ((x[..., :d].double() - centre[:, None]) / scale[:, None, None]).to(x.dtype)  # (B, N, d)
        if not bool(torch.isfinite(moved.detach()).all()):  # points of positive weight land in [-1, 1]
            raise ValueError(f"how: the {how!r} normalisation takes points beyond the range of {x.dtype} (points "
                             "of weight zero far from the measure)")
        support = torch.cat([moved, x[..., d:]], -1) if d < x.shape[-1] else moved
        return Measure(support, self.weights, kind=self.kind, batched=self.batched, uniform=self.uniform)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.support.shape[0 if self.batched else 1:]))
        return f"Measure(kind={self.kind!r}, support={shape}, dtype={self.dtype}, device={self.device})"


#: Kinds whose support rows begin with positions and go on with other coordinates: kind -> how many
#: leading coordinates are positions. Kinds of family ``"points"`` are positions throughout.
POSITIONS = {"varifold": 3}

_HOW = ("sphere", "box")


def _position_dims(kind: str, name: str) -> int | None:
    """How many leading coordinates of a ``(B, N, D)`` support of ``kind`` are positions (None: all)."""
    if kind in POSITIONS:
        return POSITIONS[kind]
    if get_representation(kind).family == "points":
        return None
    hint = "; normalize=True projects the points onto the sphere" if kind == "sphere" else ""
    raise ValueError(f"{name}: 'sphere' and 'box' normalisation move and scale positions, which kind {kind!r} "
                     f"has not (point clouds, mesh kinds and 'varifold' have them){hint}")


def normalization(measure: Measure, how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The similarity :meth:`Measure.normalized` applies: ``x -> (x - centre) / scale`` per item.

    Only points of positive weight count (zero-weight padding is ignored):

    - ``how="sphere"``: ``centre`` is the weighted mean of the positions and ``scale`` the largest
      distance from it of a point of positive weight (afterwards that point is at distance 1). It is
      rotation-equivariant: rotated input gives the rotated normalised measure.
    - ``how="box"``: ``centre`` is the centre of the axis-aligned bounding box of the points of positive
      weight and ``scale`` half its longest side (afterwards the box is centred, fits [-1, 1]^D and
      its longest side is 2).

    A measure without extent (one point, or all at one place) gets ``scale = 1``: it is only centred.
    Both are computed in float64 from the detached support and weights: constants, not functions
    of the data for autograd.

    Args:
        measure: a Measure of a kind with positions (family ``"points"``: ``"points"``, ``"mesh"``,
            ``"mesh-discrete"``; and ``"varifold"``, whose first 3 coordinates are positions).
        how: ``"sphere"`` or ``"box"``.

    Returns:
        ``centre (B, D)`` and ``scale (B,)``, float64 on the measure's device; ``D`` the number of
        positional coordinates (3 for ``"varifold"``).

    >>> import geom
    >>> mu = geom.measure([[[0.0, 0.0], [2.0, 0.0], [2.0, 6.0]]])
    >>> centre, scale = geom.measures.normalization(mu, "box")
    >>> centre.tolist(), scale.tolist()
    ([[1.0, 3.0]], [3.0])
    """
    if not isinstance(measure, Measure):
        raise TypeError(f"measure: expected a geom.Measure, got {describe(measure)}")
    if not isinstance(how, str) or how not in _HOW:
        raise ValueError(f"how: expected 'sphere' or 'box', got {how!r}")
    d = _position_dims(measure.kind, "how")
    if measure.support.ndim != 3:
        raise ValueError(f"how: expected a support of shape (B, N, D), got {tuple(measure.support.shape)}")
    x = measure.support.detach()[..., :d].double()  # (B, N, D)
    w = measure.weights.detach().double()  # (B, N)
    keep = (w > 0)[..., None]  # (B, N, 1)
    if how == "sphere":
        centre = (w[..., None] * x).sum(1) / w.sum(1, keepdim=True)  # (B, D)
        shift = torch.where(keep, x - centre[:, None], 0.0)  # (B, N, D)
        top = shift.abs().amax((1, 2)).clamp_min(torch.finfo(torch.float64).tiny)  # (B,): no overflow in the squares
        scale = top * (shift / top[:, None, None]).norm(dim=-1).amax(1)  # (B,)
    else:
        inf = torch.tensor(torch.inf, dtype=torch.float64, device=x.device)
        lo, hi = torch.where(keep, x, inf).amin(1), torch.where(keep, x, -inf).amax(1)  # (B, D)
        centre, scale = lo / 2 + hi / 2, (hi / 2 - lo / 2).amax(1)  # halves first: no overflow
    return centre, torch.where(scale > 0, scale, torch.ones_like(scale))


def normalize_weights(weights, support: torch.Tensor, *, batched: bool) -> tuple[torch.Tensor, bool]:
    """Validate ``weights`` against a ``(B, N, ...)`` support; return ``((B, N) weights, uniform)``."""
    B, N = support.shape[:2]
    if weights is None:
        return torch.full((B, N), 1.0 / N, dtype=support.dtype, device=support.device), True
    if not isinstance(weights, torch.Tensor):
        try:
            weights = torch.as_tensor(weights)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"weights: expected an array of non-negative numbers, got {describe(weights)}") from exc
    if weights.is_complex() or weights.dtype == torch.bool:
        raise TypeError(f"weights: expected real numbers, got dtype {weights.dtype}")
    check_device(weights, "weights")
    expected = (B, N) if batched else (N,)
    if tuple(weights.shape) != expected:
        raise ValueError(f"weights: expected shape {expected} to match the support, got {tuple(weights.shape)}")
    # Normalised in float64 (autograd kept), then cast: float64 weights beyond the support's dtype
    # (1e300, 1e-320 for float32 data) neither overflow nor vanish in the cast.
    weights = weights.to(device=support.device, dtype=torch.float64).reshape(B, N)
    check_finite(weights, "weights")
    if bool((weights < 0).any()):
        raise ValueError(f"weights: expected non-negative values, got {weights.min().item()}")
    top = weights.amax(-1, keepdim=True)  # (B, 1): divided by it first, the sum cannot overflow
    if bool((top <= 0).any()):
        raise ValueError("weights: expected a positive sum for every measure, got a sum of 0")
    weights = weights / top
    weights = (weights / weights.sum(-1, keepdim=True)).to(support.dtype)
    uniform = bool((weights == weights[:, :1]).all())
    return weights, uniform


def measure(obj, kind: str | None = None, weights=None, normalize=None, **options) -> Measure:
    """Turn ``obj`` into a :class:`Measure`.

    Args:
        obj: a Measure (returned as is), a numpy array, torch tensor or nested list of shape ``(N, D)``
            or ``(B, N, D)`` (``(N,)`` means N points on the line), a file path (.ply .obj .off .stl
            .pcd .xyz .npy .npz), or a trimesh / open3d point cloud or mesh. For other kinds, a
            ``.npy`` / ``.npz`` file is read and its array handed to the representation. Meshes become seeded,
            area-uniform surface samples (options ``n_samples=2048``, ``seed=0``).
        kind: registered representation name (see :func:`geom.representations`); default ``"points"``.
        weights: ``(N,)`` or ``(B, N)`` non-negative weights, normalised to sum to 1 per measure; zero
            weights pad batches of clouds with different sizes. Default: uniform.
        normalize: ``"sphere"`` or ``"box"``: each item is moved and scaled by
            :meth:`Measure.normalized` (centre at the origin; farthest point of positive weight at
            distance 1, or bounding box in [-1, 1]^D with its longest side 2), for kinds with positions
            (``"points"``, ``"mesh"``, ``"mesh-discrete"``, the centroids of ``"varifold"``); a Measure
            ``obj`` is normalised too. ``None`` (default): as given. A bool is the ``"sphere"`` kind's
            own option (``True`` projects the points onto the unit sphere) and reaches it as before.
        **options: passed to the representation.

    Tensors keep their dtype, device and autograd history; numpy float64 stays float64, everything
    else becomes float32.

    >>> import geom
    >>> mu = geom.measure([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], weights=[1, 3])
    >>> mu.weights.tolist()
    [[0.25, 0.75]]
    >>> geom.measure([[1.0, 1.0], [3.0, 1.0]], normalize="sphere").support[0].tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """
    how = None
    if isinstance(normalize, bool):
        options["normalize"] = normalize  # the "sphere" kind's own option
    elif isinstance(normalize, str) and normalize in _HOW:
        how = normalize
    elif normalize is not None:
        # a string of another value is a ValueError, except for the kind whose option is a bool
        raise (ValueError if isinstance(normalize, str) and kind != "sphere" else TypeError)(
            f"normalize: expected 'sphere', 'box' or None (or a bool for kind 'sphere'), got {describe(normalize)}")
    if isinstance(obj, Measure):
        if weights is not None or options or (kind is not None and kind != obj.kind):
            raise ValueError(
                f"obj: got a Measure of kind {obj.kind!r}; weights, kind and options cannot be changed "
                "on an existing Measure (build a new one from its support)"
            )
        return obj if how is None else _normalized(obj, how)
    kind = kind or "points"
    rep = get_representation(kind)
    if how is not None:
        _position_dims(kind, "normalize")  # refused before anything is built
    if kind != "points" and isinstance(obj, (str, os.PathLike)):
        if str(obj).lower().endswith(ARRAY_SUFFIXES):
            obj = read_array(obj)  # array files hold any kind's input; point clouds read their files themselves
        elif rep.expects:
            raise ValueError(f"obj: kind {kind!r} expects {rep.expects}, got the file '{obj}' (shape files are "
                             "read by kind 'points' and the mesh kinds)")
    mu = rep.build(obj, weights=weights, **options)
    return mu if how is None else _normalized(mu, how)


def _normalized(mu: Measure, how: str) -> Measure:
    """:meth:`Measure.normalized`, its errors naming ``normalize`` (the argument of :func:`measure`)."""
    try:
        return mu.normalized(how)
    except ValueError as exc:
        raise ValueError(str(exc).replace("how:", "normalize:", 1)) from None


# ----------------------------------------------------------------------------------- collation


def collate(items):
    """Stack dataset items into one padded batch: the ``collate_fn`` of a DataLoader of Measures.

    ``torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=geom.collate)``.

    Args:
        items: a non-empty list of Measures of one kind and one event shape (``support (B_i, N_i,
            *event)``; any ``N_i``, unbatched or batched; a tensor or array item is a point cloud,
            ``geom.measure(item)``), or of ``(item, label)`` pairs as datasets return them, ``item`` a Measure or a tuple of Measures (the ``(source, bent)`` pairs of
            ``"shapes"``).

    Returns:
        One batched Measure ``(sum B_i, max N_i, *event)``: each item's atoms first, then padding
        with weight zero (copies of the item's first atom, so the padding stays in the space: on the
        sphere, SPD); ``uniform`` only where every item is uniform with the same ``N``. The dtype is
        the items' promoted dtype; autograd is kept. For pairs: ``(batch, labels)``, the labels
        through torch's ``default_collate`` (ints -> a ``(B,)`` int64 tensor); a tuple item gives a
        tuple of batches.

    Each row of the batch is the same measure as its item, so
    ``geom.sliced_wasserstein(batch, nu)[k]`` is the value of item ``k``.

    >>> import geom
    >>> batch = geom.collate([geom.measure([[0.0], [1.0]]), geom.measure([[5.0]])])
    >>> batch.support[..., 0].tolist(), batch.weights.tolist()
    ([[0.0, 1.0], [5.0, 5.0]], [[0.5, 0.5], [1.0, 0.0]])
    """
    if not isinstance(items, (list, tuple)) or not items:
        raise (ValueError if isinstance(items, (list, tuple)) else TypeError)(
            f"items: expected a non-empty list of Measures or of (Measure, label) pairs, got {describe(items)}")
    items = [_as_item(it) for it in items]
    if all(isinstance(m, Measure) for m in items):
        return _pad(items)
    if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
        bad = next(i for i, it in enumerate(items) if not isinstance(it, Measure))
        raise TypeError(f"items: expected Measures or (Measure, label) pairs, got {describe(items[bad])} at "
                        f"position {bad}")
    xs, labels = zip(*items)
    xs = [tuple(_as_item(m) for m in x) if isinstance(x, tuple) else _as_item(x) for x in xs]
    if all(isinstance(x, tuple) and x and all(isinstance(m, Measure) for m in x) for x in xs):
        if len({len(x) for x in xs}) > 1:
            raise ValueError(f"items: expected tuples of Measures of one length, got lengths {sorted({len(x) for x in xs})}")
        batch = tuple(_pad(column) for column in zip(*xs))
    else:
        batch = _pad(xs)
    return batch, torch.utils.data.default_collate(list(labels))


def _as_item(item):
    """A tensor or array item (a point cloud ``(N, D)``, as datasets return by default) -> its Measure."""
    return measure(item) if isinstance(item, (torch.Tensor, np.ndarray)) else item


def _pad(measures) -> Measure:
    """Measures of one kind and event shape -> one batch padded with zero-weight copies of first atoms."""
    bad = next((i for i, m in enumerate(measures) if not isinstance(m, Measure)), None)
    if bad is not None:
        raise TypeError(f"items: expected a geom.Measure at position {bad}, got {describe(measures[bad])}")
    for what, of in (("kind", lambda m: m.kind), ("event shape", lambda m: tuple(m.support.shape[2:])),
                     ("device", lambda m: str(m.device))):
        found = sorted({of(m) for m in measures}, key=str)
        if len(found) > 1:
            raise ValueError(f"items: expected Measures of one {what}, got {what}s {found}")
    dtype = functools.reduce(torch.promote_types, (m.dtype for m in measures))
    n = max(m.n_points for m in measures)
    supports, weights = [], []
    for m in measures:
        pad = (m.batch_size, n - m.n_points)
        supports.append(torch.cat([m.support, m.support[:, :1].expand(*pad, *m.support.shape[2:])], 1).to(dtype))
        weights.append(torch.cat([m.weights, m.weights.new_zeros(pad)], 1).to(dtype))
    uniform = all(m.uniform and m.n_points == n for m in measures)
    return Measure(torch.cat(supports), torch.cat(weights), kind=measures[0].kind, batched=True, uniform=uniform)


def _refuse_default_collate(batch, *, collate_fn_map=None):
    raise TypeError(f"default_collate: got {len(batch)} geom.Measure items, which it cannot stack (their supports "
                    "may differ in size and their weights must stay a measure); use DataLoader(..., "
                    "collate_fn=geom.collate)")


try:  # torch's default_collate dispatches on this private map (torch >= 1.13); without it, nothing to point out
    from torch.utils.data._utils.collate import default_collate_fn_map as _collate_map
except ImportError:  # pragma: no cover
    _collate_map = None
if isinstance(_collate_map, dict):
    _collate_map[Measure] = _refuse_default_collate
