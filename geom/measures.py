"""Measures: weighted, batched supports living in a representation space.

A :class:`Measure` is a batch of ``B`` discrete measures ``sum_i w_i delta_{x_i}`` stored as a padded
support tensor ``(B, N, *event)`` and weights ``(B, N)`` that are non-negative and sum to 1 per
measure (padding has weight zero). The representation (``kind``) says what the support means, what a
direction is and how a support is projected onto a line; :func:`measure` is the single door from
raw input to a Measure.
"""

from __future__ import annotations

import os

import torch

from ._checks import _as_int, as_real_tensor, check_device, check_finite, describe
from .io import ARRAY_SUFFIXES, read_array
from .registry import get_representation

__all__ = ["Measure", "as_support", "measure", "normalize_weights"]

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
        return self.support[0, 0].numel()

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
        """A measure of the same kind with a new ``support`` (same ``(B, N, *event)`` shape as before,
        for example moved points; differentiable) and/or new ``weights`` (``(B, N)``, or ``(N,)`` for an
        unbatched measure; normalised to sum to 1). What is not given is kept."""
        new = self.support
        if support is not None:
            if not isinstance(support, torch.Tensor):
                support = as_support(support, "support", f"an array of shape {tuple(self.support.shape)}")
            if not self.batched and tuple(support.shape) == tuple(self.support.shape[1:]):
                support = support[None]
            if tuple(support.shape) != tuple(self.support.shape):
                raise ValueError(f"support: expected shape {tuple(self.support.shape[0 if self.batched else 1:])} "
                                 f"(that of the measure), got {tuple(support.shape)}")
            check_device(support, "support")
            check_finite(support.detach(), "support")
            new = support
        if weights is None:
            w, uniform = self.weights.to(device=new.device, dtype=new.dtype), self.uniform
        else:
            w, uniform = normalize_weights(weights, new, batched=self.batched)
        return Measure(new, w, kind=self.kind, batched=self.batched, uniform=uniform)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.support.shape[0 if self.batched else 1:]))
        return f"Measure(kind={self.kind!r}, support={shape}, dtype={self.dtype}, device={self.device})"


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


def measure(obj, kind: str | None = None, weights=None, **options) -> Measure:
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
        **options: passed to the representation.

    Tensors keep their dtype, device and autograd history; numpy float64 stays float64, everything
    else becomes float32.

    >>> import geom
    >>> mu = geom.measure([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], weights=[1, 3])
    >>> mu.weights.tolist()
    [[0.25, 0.75]]
    """
    if isinstance(obj, Measure):
        if weights is not None or options or (kind is not None and kind != obj.kind):
            raise ValueError(
                f"obj: got a Measure of kind {obj.kind!r}; weights, kind and options cannot be changed "
                "on an existing Measure (build a new one from its support)"
            )
        return obj
    kind = kind or "points"
    rep = get_representation(kind)
    if kind != "points" and isinstance(obj, (str, os.PathLike)):
        if str(obj).lower().endswith(ARRAY_SUFFIXES):
            obj = read_array(obj)  # array files hold any kind's input; point clouds read their files themselves
        elif rep.expects:
            raise ValueError(f"obj: kind {kind!r} expects {rep.expects}, got the file '{obj}' (shape files are "
                             "read by kind 'points' and the mesh kinds)")
    return rep.build(obj, weights=weights, **options)
