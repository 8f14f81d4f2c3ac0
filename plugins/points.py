"""``"points"``: weighted point clouds in R^D, projected linearly, ``t = <x, theta>``.

Accepts arrays, tensors and nested lists of shape ``(N, D)`` or ``(B, N, D)`` (``(N,)`` is N points
on the line), and, through :mod:`geom.io`, files, trimesh and open3d objects (meshes become seeded,
area-uniform surface samples).
"""

from __future__ import annotations

import numpy as np
import torch

import geom
from geom._checks import check_finite, describe
from geom.measures import Measure, as_support, normalize_weights

__all__ = ["PointCloud", "as_support"]

class PointCloud(geom.Representation):
    """Weighted point clouds in R^D."""

    linear = True
    family = "points"

    def build(self, obj, *, weights=None, **options):
        if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__") or not isinstance(
            obj, (torch.Tensor, np.ndarray, list, tuple)
        ):
            obj = geom.io.read_points(obj, **options)
        elif options:
            raise TypeError(f"unknown options for kind 'points' with array input: {sorted(options)}")
        support = as_support(obj)
        if support.ndim == 1:
            support = support[:, None]
        if support.ndim not in (2, 3):
            raise ValueError(f"obj: expected shape (N, D) or (B, N, D), got {describe(support)}")
        batched = support.ndim == 3
        if not batched:
            support = support[None]
        if support.shape[1] == 0:
            raise ValueError("obj: expected at least one point, got an empty cloud (0 points)")
        if support.shape[2] == 0 or support.shape[0] == 0:
            raise ValueError(f"obj: expected points with at least one coordinate, got shape {tuple(support.shape)}")
        check_finite(support.detach(), "obj")
        w, uniform = normalize_weights(weights, support, batched=batched)
        return Measure(support, w, kind=self.name, batched=batched, uniform=uniform)

    def project(self, support, directions):
        return torch.matmul(directions, support.transpose(1, 2))  # (B, L, N)


@geom.hookimpl
def geom_register_representations(register):
    register("points", PointCloud)
