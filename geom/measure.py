"""Measures: weighted, batched supports living in a representation space.

A :class:`Measure` is a batch of ``B`` discrete measures ``sum_i w_i delta_{x_i}`` stored as a padded
support tensor ``(B, N, *event)`` and weights ``(B, N)`` that are non-negative and sum to 1 per
measure (padding has weight zero). The representation (``kind``) says what the support means, what a
direction is and how a support is projected onto a line; :func:`measure` is the single door from
raw input to a Measure.
"""

from __future__ import annotations

import abc
import os

import torch

from ._checks import check_device, check_finite, describe

__all__ = ["Measure", "Representation", "measure", "normalize_weights"]


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

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.support.shape[0 if self.batched else 1:]))
        return f"Measure(kind={self.kind!r}, support={shape}, dtype={self.dtype}, device={self.device})"


class Representation(abc.ABC):
    """Base class of measure representations (the plugin contract).

    A representation turns raw input into a :class:`Measure` (:meth:`build`), and projects a support
    onto lines given by directions (:meth:`project`). ``linear = True`` promises that
    ``project(x, theta) == x @ theta.T``; the core then runs a fused, chunked kernel that never holds
    all projections in memory. ``domain`` says where 1-D transport happens: ``"line"``, or
    ``"circle"`` for projections that are positions on the circle R/Z of length 1 (``project`` returns
    values in ``[0, 1)``; transport along the circle, as POT's ``wasserstein_circle``).

    The directions a scheme draws are ``(L, direction_dim)`` unit rows, uniform on the sphere for
    ``"mc"``; ``project`` may read a row as another object (a 2-frame, a symmetric matrix), so that
    uniform rows give the law of directions the representation's distance is defined with.
    """

    name: str = ""
    linear: bool = False
    domain: str = "line"
    #: Kinds of one family hold measures in the same space with the same support layout and
    #: projection (``"points"``: point clouds, samples and centroids of mesh surfaces), so they can be
    #: compared with each other; ``""``: comparable with its own kind only.
    family: str = ""
    #: What :meth:`build` takes, for error messages (``"SPD matrices: an (N, n, n) array ..."``).
    expects: str = ""

    @abc.abstractmethod
    def build(self, obj, *, weights=None, **options) -> Measure:
        """Turn raw input into a Measure of this kind (validate it, name the argument on error)."""

    def direction_dim(self, mu: Measure) -> int:
        """Length of one direction row for measures of this kind."""
        return mu.dim

    @abc.abstractmethod
    def project(self, support: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """``(B, N, *event)``, ``(L, d)`` -> ``(B, L, N)`` differentiable projections."""


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
    from .io import ARRAY_SUFFIXES, read_array
    from .registry import get_representation

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
