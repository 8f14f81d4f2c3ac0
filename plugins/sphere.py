"""``"sphere"``: measures on the sphere S^(d-1), compared by spherical sliced Wasserstein (SSW).

Paper: C. Bonet, P. Berg, N. Courty, F. Septier, L. Drumetz, M.-T. Pham, *Spherical
Sliced-Wasserstein*, ICLR 2023.

A slice is a great circle: a 2-frame ``U`` (``d x 2``, orthonormal columns) sends ``x`` to the
point ``U^T x / |U^T x|`` of the circle, read as the position ``atan2(<x, U_2>, <x, U_1>) / (2 pi)
mod 1`` on the circle of length 1 (POT's convention). 1-D transport runs on the circle
(:func:`geom._circle.circle_costs`, exact), and ``SSW_p = (E_U W_p^p(P^U#mu, P^U#nu))^(1/p)`` with ``U``
uniform (Haar) on the Stiefel manifold V_(d,2) -- the convention of :func:`geom.sliced_wasserstein`.

Directions live in :class:`geom.Frames`: ``(L, d, 2)`` orthonormal frames ``U`` (POT's
``projections``), given as they are to ``directions=`` and returned as they are in
``SlicedResult.directions``. Uniform frames are the sign-fixed Q factors of Gaussian ``d x 2``
matrices (Gram-Schmidt): for an orthogonal ``O``, ``O G`` has the law of ``G`` and
``Q(O G) = O Q(G)``, so the law of ``Q(G)`` is invariant under rotations (Haar). Schemes draw in
that space (Monte Carlo, randomised Sobol frames for ``"qmc"``, the reservoir, ``"max"`` and
``"dsw"`` through its Gaussian coordinates); those built on the Euclidean sphere (``"cv"``,
``"vmf-dsw"``, the spiral and energy point sets) say so.

Options of ``geom.measure(x, kind="sphere", normalize=False)``: with ``normalize=True`` nonzero points
are divided by their norm; otherwise a point whose norm is off 1 by more than 1e-4 is an error
naming its index. :func:`sliced_wasserstein_sphere_uniform` is SSW_2 to the uniform law on the
sphere in closed form per slice.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

import geom
from geom._checks import check_bool, check_finite, check_p, describe
from geom.directions import Frames, gram_schmidt_frames
from geom.measures import Measure, as_support, normalize_weights
from geom.sliced import finish_slices, prepare_slices, relative_costs

__all__ = ["Sphere", "directions_to_frames", "frames_to_directions", "sliced_wasserstein_sphere_uniform"]

SPHERE_TOL = 1e-4  # |norm - 1| allowed for points on the sphere (POT's tolerance)


def directions_to_frames(directions: torch.Tensor) -> torch.Tensor:
    """Deprecated: ``(L, 2 d)`` rows of the first contract -> ``(L, d, 2)`` frames (each row read as a
    ``d x 2`` matrix, row-major, and orthonormalised). Directions are frames now: pass them as they are."""
    warnings.warn("directions_to_frames is deprecated: the sphere's directions are (L, d, 2) frames",
                  DeprecationWarning, stacklevel=2)
    L, two_d = directions.shape
    return gram_schmidt_frames(directions.reshape(L, two_d // 2, 2))


def frames_to_directions(frames) -> torch.Tensor:
    """Deprecated: the frames themselves, checked (``(L, d, 2)`` with orthonormal columns). The sphere's
    ``directions=`` take frames as they are, as POT's ``sliced_wasserstein_sphere(..., projections=U)``."""
    warnings.warn("frames_to_directions is deprecated: pass the (L, d, 2) frames as directions= directly",
                  DeprecationWarning, stacklevel=2)
    if not isinstance(frames, torch.Tensor):
        frames = torch.as_tensor(np.asarray(frames) if not isinstance(frames, (list, tuple)) else frames)
    if frames.ndim != 3 or frames.shape[2] != 2 or frames.shape[0] < 1:
        raise ValueError(f"frames: expected shape (L, d, 2) with L >= 1, got {tuple(frames.shape)}")
    return Frames(frames.shape[1]).check(frames, "frames")


def _angles(support: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """``(B, N, d)`` points, ``(L, d, 2)`` frames -> ``(B, L, N)`` positions in [0, 1) on the circle."""
    c = torch.einsum("bnd,ldk->blnk", support, frames)  # (B, L, N, 2)
    c1, c2 = c[..., 0], c[..., 1]
    ok = (c1 != 0) | (c2 != 0)  # a point orthogonal to the plane has no image: position 0, no gradient
    t = torch.atan2(torch.where(ok, c2, 0.0), torch.where(ok, c1, 1.0)) / (2 * math.pi)  # (-1/2, 1/2]
    t = torch.where(t < 0, t + 1.0, t)
    return torch.where(t >= 1.0, t - 1.0, t)


class Sphere(geom.Representation):
    """Weighted points on the unit sphere S^(d-1), ``d >= 2``; slices are great circles."""

    linear = False
    domain = "circle"

    def build(self, obj, *, weights=None, normalize: bool = False, **options):
        if options:
            raise TypeError(f"unknown options for kind 'sphere': {sorted(options)} (expected normalize)")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize: expected True or False, got {describe(normalize)}")
        if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
            obj = geom.io.read_points(obj)
        support = as_support(obj)
        if support.ndim not in (2, 3):
            raise ValueError(f"obj: expected points of shape (N, d) or (B, N, d), got {describe(support)}")
        batched = support.ndim == 3
        if not batched:
            support = support[None]
        if support.shape[0] == 0 or support.shape[1] == 0:
            raise ValueError(f"obj: expected at least one point, got shape {tuple(support.shape)}")
        if support.shape[2] < 2:
            raise ValueError(f"obj: expected points in R^d with d >= 2 (S^(d-1) with a great circle), got d = {support.shape[2]}")
        check_finite(support.detach(), "obj")
        norms = support.detach().norm(dim=-1)  # (B, N)
        if normalize:
            if bool((norms == 0).any()):
                k = tuple((norms == 0).nonzero()[0].tolist())
                raise ValueError(f"obj: normalize=True needs nonzero points, got the zero vector at index {k[1 if not batched else 0:]}")
            support = support / support.norm(dim=-1, keepdim=True)
        else:
            off = (norms - 1).abs() > SPHERE_TOL
            if bool(off.any()):
                k = tuple(off.nonzero()[0].tolist())
                where = k if batched else k[1:]
                raise ValueError(
                    f"obj: expected points on the unit sphere (|norm - 1| <= {SPHERE_TOL:g}), got norm "
                    f"{norms[k].item():.6g} at index {where}; pass normalize=True to project onto the sphere"
                )
        w, uniform = normalize_weights(weights, support, batched=batched)
        return Measure(support, w, kind=self.name, batched=batched, uniform=uniform)

    def direction_space(self, mu):
        return Frames(mu.support.shape[-1])

    def project(self, support, directions):
        return _angles(support, directions)  # (B, L, N)


def _unif_costs(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """W_2^2 on the circle between ``sum_i w_i delta_(t_i)`` (rows ``t (B, L, N)``) and the uniform law.

    With ``x`` sorted, ``c_i`` the weight before atom ``i`` and ``m = sum w_i x_i``, the optimal shift
    of ``F^-1(s) - s`` is its mean, so ``W_2^2 = int (F^-1(s) - s)^2 ds - (m - 1/2)^2``, i.e.
    ``sum w x^2 - m^2 + sum w x (1 - w - 2 c) + 1/12`` (Bonet et al., Proposition 1).
    """
    t = t.double()
    w = w.double()[:, None, :].expand_as(t)
    order = t.detach().argsort(-1)
    x, ws = t.gather(-1, order), w.gather(-1, order)
    before = ws.cumsum(-1) - ws
    m = (ws * x).sum(-1)
    return (ws * x * x).sum(-1) - m * m + (ws * x * (1.0 - ws - 2.0 * before)).sum(-1) + 1.0 / 12.0


def sliced_wasserstein_sphere_uniform(mu, *, p: float = 2, n_projections: int = 256, scheme="mc",
                                      directions=None, seed=None, generator=None, return_result=False,
                                      **scheme_options):
    """SSW_2 between a measure on the sphere and the uniform law on it: ``(E_U W_2^2(P^U#mu, Unif))^(1/2)``.

    The image of the uniform law on S^(d-1) under every great-circle projection is uniform on the
    circle, so each slice has a closed form (:func:`_unif_costs`); only ``mu`` is sampled.

    POT's ``ot.sliced_wasserstein_sphere_unif`` returns the same value (the root of the mean of
    ``W_2^2``, not its square) for uniform weights; for weighted input it pairs the sorted positions
    with unsorted weights, so compare weighted measures with a fine uniform grid instead.

    Args:
        mu: a ``"sphere"`` Measure, or points ``(N, d)`` / ``(B, N, d)`` on the sphere.
        p: only 2 (the closed form).
        n_projections, scheme, directions, seed, generator, **scheme_options: as in
            :func:`geom.sliced_wasserstein` (directions are ``(L, d, 2)`` frames); the scheme's
            estimate applies (randomisation groups, reservoir weights); schemes that learn from
            the data are refused.
        return_result: return a :class:`geom.SlicedResult` (value, stderr, costs, directions).

    Returns:
        A differentiable tensor, scalar or ``(B,)``; or a SlicedResult.
    """
    p = check_p(p)
    return_result = check_bool(return_result, "return_result")
    if p != 2:
        raise ValueError(f"p: the closed form to the uniform law is for p = 2, got {p!r}")
    if not isinstance(mu, Measure):
        rep = Sphere()
        rep.name = "sphere"
        mu = rep.build(mu)
    elif mu.kind != "sphere":
        raise ValueError(f"mu: expected a measure of kind 'sphere', got {mu.kind!r}")
    s = prepare_slices(mu, None, p=2, n_projections=n_projections, scheme=scheme, directions=directions, seed=seed,
                       generator=generator, scheme_options=scheme_options,
                       uniform_only="the distance to the uniform law (nothing to learn from on its side)",
                       bytes_per_direction=40 * mu.batch_size * mu.n_points)
    costs = _unif_costs(_angles(s.mu.support, s.directions), s.mu.weights).to(mu.dtype)  # (B, L) W_2^2 per slice
    costs, scale = relative_costs(costs, torch.ones_like(costs, dtype=torch.float64), 2.0)
    result = finish_slices(s, costs, scale)
    return result if return_result else result.value


@geom.hookimpl
def geom_register_representations(register):
    register("sphere", Sphere)
