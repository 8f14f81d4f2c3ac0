"""``"sphere"``: measures on the sphere S^(d-1), compared by spherical sliced Wasserstein (SSW).

Paper: C. Bonet, P. Berg, N. Courty, F. Septier, L. Drumetz, M.-T. Pham, *Spherical
Sliced-Wasserstein*, ICLR 2023.

A slice is a great circle: a 2-frame ``U`` (``d x 2``, orthonormal columns) sends ``x`` to the
point ``U^T x / |U^T x|`` of the circle, read as the position ``atan2(<x, U_2>, <x, U_1>) / (2 pi)
mod 1`` on the circle of length 1 (POT's convention). 1-D transport runs on the circle
(:func:`geom._circle.circle_costs`, exact), and ``SSW_p = (E_U W_p^p(P^U#mu, P^U#nu))^(1/p)`` with ``U``
uniform (Haar) on the Stiefel manifold V_(d,2) -- the convention of :func:`geom.sliced_wasserstein`.

Directions: every scheme draws unit rows of length ``2 d``; a row is read as a ``d x 2`` matrix
``Z`` (row-major) and ``U`` is the Q factor of ``Z = Q R`` with the signs of ``diag R`` moved into
``Q`` (Gram-Schmidt). Uniform rows give Haar frames: a uniform row is ``G / |G|`` with ``G`` a
Gaussian ``d x 2`` matrix, and a positive scale leaves Q unchanged; for an orthogonal ``O``, ``O G``
has the law of ``G`` and ``Q(O G) = O Q(G)``, so the law of ``Q(G)`` is invariant under rotations.
So Monte Carlo, QMC (``point_set="gaussian"``), reservoir and the other schemes that draw uniform rows
work unchanged. :func:`frames_to_directions` turns given frames ``(L, d, 2)`` into rows.

Options of ``geom.measure(x, kind="sphere", normalize=False)``: with ``normalize=True`` nonzero points
are divided by their norm; otherwise a point whose norm is off 1 by more than 1e-4 is an error
naming its index. :func:`sliced_wasserstein_sphere_uniform` is SSW_2 to the uniform law on the
sphere in closed form per slice.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import geom
from geom._checks import check_bool, check_finite, check_memory, check_p, check_positive_int, describe
from geom.measure import Measure, normalize_weights

__all__ = ["Sphere", "directions_to_frames", "frames_to_directions", "sliced_wasserstein_sphere_uniform"]

SPHERE_TOL = 1e-4  # |norm - 1| allowed for points on the sphere (POT's tolerance)


def directions_to_frames(directions: torch.Tensor) -> torch.Tensor:
    """``(L, 2 d)`` rows -> ``(L, d, 2)`` frames: Q of the row read as a ``d x 2`` matrix, ``diag R > 0``."""
    L, two_d = directions.shape
    z = directions.reshape(L, two_d // 2, 2)
    z1, z2 = z[..., 0], z[..., 1]  # (L, d)
    n1 = z1.norm(dim=-1, keepdim=True)
    u1 = z1 / n1
    w = z2 - (u1 * z2).sum(-1, keepdim=True) * u1
    n2 = w.norm(dim=-1, keepdim=True)
    # the second column's part orthogonal to the first, at the rounding level of the dtype: rank < 2
    flat = (n1 == 0) | (n2 <= 64 * torch.finfo(directions.dtype).eps * z2.norm(dim=-1, keepdim=True))
    if bool(flat.any()):
        k = int(flat.nonzero()[0, 0])
        raise ValueError(f"directions: row {k} read as a d x 2 matrix has rank < 2; expected two independent columns")
    return torch.stack([u1, w / n2], -1)


def frames_to_directions(frames) -> torch.Tensor:
    """``(L, d, 2)`` frames with orthonormal columns -> ``(L, 2 d)`` unit rows that read back as them.

    ``geom.sliced_wasserstein(mu, nu, directions=frames_to_directions(U))`` uses exactly the frames
    ``U`` (as POT's ``sliced_wasserstein_sphere(..., projections=U)``): a frame has Frobenius norm
    ``sqrt(2)``, and the QR factorisation of ``U / sqrt(2)`` gives back ``Q = U``.
    """
    if not isinstance(frames, torch.Tensor):
        frames = torch.as_tensor(np.asarray(frames) if not isinstance(frames, (list, tuple)) else frames)
    if frames.ndim != 3 or frames.shape[2] != 2 or frames.shape[0] < 1:
        raise ValueError(f"frames: expected shape (L, d, 2) with L >= 1, got {tuple(frames.shape)}")
    gram = frames.transpose(1, 2) @ frames  # (L, 2, 2)
    eye = torch.eye(2, dtype=frames.dtype, device=frames.device)
    err = (gram - eye).abs().amax((1, 2))
    if bool((err > 1e-5).any()):
        k = int(err.argmax())
        raise ValueError(f"frames: expected orthonormal columns (U^T U = I), got frame {k} off by {err[k].item():.3g}")
    return frames.reshape(frames.shape[0], -1) / math.sqrt(2.0)


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
        from geom_plugins.points import as_support

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

    def direction_dim(self, mu):
        return 2 * mu.support.shape[-1]

    def project(self, support, directions):
        return _angles(support, directions_to_frames(directions))  # (B, L, N)


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
            :func:`geom.sliced_wasserstein` (directions are ``(L, 2 d)`` rows; see :func:`frames_to_directions`).
        return_result: return a :class:`geom.SlicedResult` (value, stderr, costs, directions).

    Returns:
        A differentiable tensor, scalar or ``(B,)``; or a SlicedResult.
    """
    from geom.sliced import SlicedResult, _check_directions, make_generator, resolve_scheme

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
    dim = 2 * mu.support.shape[-1]
    generator = make_generator(seed, generator)
    if directions is None:
        sch = resolve_scheme(scheme, scheme_options)
        n = check_positive_int(n_projections, "n_projections")
        check_memory(n * (48 * dim + 40 * mu.batch_size * mu.n_points), "n_projections",
                     f"{n} directions and their projections")
        directions = _check_directions(sch.directions(n, dim, generator=generator), dim, mu.support,
                                       f"directions returned by scheme {type(sch).__name__}", rows=n)
    else:
        directions = _check_directions(directions, dim, mu.support, "directions")
    costs = _unif_costs(_angles(mu.support, directions_to_frames(directions)), mu.weights).to(mu.dtype)  # (B, L)
    L = costs.shape[-1]
    mean = costs.mean(-1)
    err = costs.detach().std(-1) / math.sqrt(L) if L > 1 else torch.full_like(mean, math.nan)
    value = mean.clamp_min(torch.finfo(mean.dtype).tiny).sqrt()
    stderr = err / (2 * value.detach())
    if not mu.batched:
        value, stderr, costs = value[0], stderr[0], costs[0]
    if return_result:
        return SlicedResult(value, stderr.detach(), costs, directions)
    return value


@geom.hookimpl
def geom_register_representations(register):
    register("sphere", Sphere)
