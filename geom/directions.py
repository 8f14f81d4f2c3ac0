"""Direction spaces and the helpers plugin authors draw directions with.

Every representation owns a :class:`~geom.DirectionSpace` (``Representation.direction_space(mu)``):

============================  ==================  =============================================
space                         one direction       uniform law
============================  ==================  =============================================
:class:`~geom.UnitSphere`     ``(d,)`` unit row   the sphere S^(d-1) (points, meshes, graphs)
:class:`Frames`               ``(d, 2)`` frame    Haar on the Stiefel manifold V(d, 2) (sphere)
:class:`SymmetricDirections`  ``(n, n)`` matrix   ``P diag(theta) P^T``, theta on S^(n-1), P Haar (SPD)
============================  ==================  =============================================

Each maps standard Gaussian vectors to uniform directions (``from_gaussian``), so a scheme draws in
any space with ``space.sample(n, generator)``, or pushes its own Gaussian-like points through
``space.from_gaussian`` (quasi-Monte Carlo through the inverse normal CDF, ascent on free vectors).

Helpers: :func:`uniform_directions` (rows on the sphere), :func:`von_mises_fisher` (the von Mises-Fisher
law around a location, reparameterised in the location and the concentration), :func:`haar_orthogonal`
and :func:`haar_rotation` (the Haar law on O(n)), :func:`gram_schmidt_frames`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._checks import check_positive_int, check_real, describe
from .contract import DirectionSpace, UnitSphere

__all__ = ["Frames", "SymmetricDirections", "UnitSphere", "gram_schmidt_frames", "haar_orthogonal", "haar_rotation",
           "uniform_directions", "von_mises_fisher"]


def uniform_directions(n: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n, dim)`` float64 rows, independent and uniform on S^(dim-1): normalised Gaussian vectors."""
    return UnitSphere(dim).sample(n, generator)


def haar_orthogonal(z: torch.Tensor) -> torch.Tensor:
    """``(..., n, n)`` Gaussian matrices -> ``(..., n, n)`` orthogonal matrices with the Haar law on O(n).

    The Q factor of ``z = Q R`` with the signs of ``diag R`` moved into ``Q`` (without that correction
    the law of Q depends on the QR implementation and is not Haar). Differentiable.
    """
    q, r = torch.linalg.qr(z)
    sign = torch.where(r.diagonal(dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(q.dtype)  # (..., n)
    return q * sign.unsqueeze(-2)  # scales column j by sign(R_jj)


def haar_rotation(dim: int, generator: torch.Generator | None = None, *, special: bool = False) -> torch.Tensor:
    """A ``(dim, dim)`` float64 orthogonal matrix drawn from the Haar measure on O(dim) (on SO(dim),
    determinant +1, with ``special=True``)."""
    q = haar_orthogonal(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    if special and bool(torch.linalg.det(q) < 0):
        q[:, 0] = -q[:, 0]
    return q


def gram_schmidt_frames(z: torch.Tensor) -> torch.Tensor:
    """``(..., d, 2)`` matrices -> ``(..., d, 2)`` orthonormal frames: Gram-Schmidt on the two columns
    (the sign-fixed Q factor). A Gaussian matrix gives a Haar frame of V(d, 2); a positive scale of the
    input leaves the frame unchanged. ValueError where the two columns are dependent (rank < 2)."""
    z1, z2 = z[..., 0], z[..., 1]  # (..., d)
    n1 = z1.norm(dim=-1, keepdim=True)
    u1 = z1 / n1
    w = z2 - (u1 * z2).sum(-1, keepdim=True) * u1
    n2 = w.norm(dim=-1, keepdim=True)
    # the second column's part orthogonal to the first, at the rounding level of the dtype: rank < 2
    flat = (n1 == 0) | (n2 <= 64 * torch.finfo(z.dtype).eps * z2.norm(dim=-1, keepdim=True))
    if bool(flat.any()):
        k = int(flat.reshape(-1).nonzero()[0, 0])
        raise ValueError(f"directions: matrix {k} has rank < 2; expected two independent columns")
    return torch.stack([u1, w / n2], -1)


class Frames(DirectionSpace):
    """``(d, 2)`` orthonormal 2-frames ``U`` (``U^T U = I``), Haar on the Stiefel manifold V(d, 2): a
    frame spans the plane of a great circle of S^(d-1) (POT's ``projections`` of
    ``sliced_wasserstein_sphere``)."""

    noun = "orthonormal frames"
    scale_invariant = True
    #: how far from the identity ``U^T U`` of a given frame may be
    tolerance = 1e-5

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.shape = (self.dim, 2)
        self.gaussian_dim = 2 * self.dim

    def from_gaussian(self, z):
        return gram_schmidt_frames(z.reshape(z.shape[0], self.dim, 2))

    def coordinates(self, directions):
        return directions.reshape(directions.shape[0], -1)  # an orthonormal frame is its own Q factor

    def _validate(self, directions, name):
        gram = directions.transpose(1, 2) @ directions  # (L, 2, 2)
        err = (gram - torch.eye(2, dtype=gram.dtype, device=gram.device)).abs().amax((1, 2))
        if bool((err > self.tolerance).any()):
            k = int(err.argmax())
            raise ValueError(f"{name}: expected orthonormal frames (U^T U = I), got frame {k} off by "
                             f"{err[k].item():.3g}")


class SymmetricDirections(DirectionSpace):
    """``(n, n)`` symmetric matrices ``A`` with ``||A||_F = 1``, drawn as ``A = P diag(theta) P^T``
    with ``theta`` uniform on S^(n-1) and ``P`` Haar on O(n) (the law of SPDSW)."""

    noun = "symmetric matrices of unit Frobenius norm"
    scale_invariant = True
    #: how far from 1 the Frobenius norm of a given direction may be
    tolerance = 1e-4

    def __init__(self, n: int):
        self.n = int(n)
        self.shape = (self.n, self.n)
        self.gaussian_dim = self.n + self.n * self.n

    def from_gaussian(self, z):
        n = self.n
        theta = z[:, :n] / z[:, :n].norm(dim=1, keepdim=True)  # (L, n) uniform on S^(n-1)
        P = haar_orthogonal(z[:, n:].reshape(-1, n, n))  # (L, n, n) Haar, independent of theta
        return (P * theta.unsqueeze(-2)) @ P.transpose(-1, -2)  # (L, n, n)

    def coordinates(self, directions):
        # A = P diag(theta) P^T by eigh; an orthogonal P is its own sign-fixed Q factor
        theta, P = torch.linalg.eigh((directions + directions.transpose(-1, -2)) / 2)
        return torch.cat([theta, P.reshape(P.shape[0], -1)], 1)

    def _validate(self, directions, name):
        asym = (directions - directions.transpose(-1, -2)).abs().flatten(1).amax(1)  # (L,)
        tol = math.sqrt(torch.finfo(directions.dtype).eps)
        if bool((asym > tol).any()):
            k = int(asym.argmax())
            raise ValueError(f"{name}: expected symmetric matrices, got {name}[{k}] with max |A - A^T| = "
                             f"{asym[k].item():.3g}")
        err = (directions.flatten(1).norm(dim=1) - 1).abs()
        if bool((err > self.tolerance).any()):
            k = int(err.argmax())
            raise ValueError(f"{name}: expected unit Frobenius norms, got {name}[{k}] with norm "
                             f"{directions[k].norm().item():.6g}")


# ----------------------------------------------------------------------------------- von Mises-Fisher


def von_mises_fisher(loc: torch.Tensor, kappa, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws of the von Mises-Fisher law ``vMF(m, kappa)`` on S^(d-1), ``m = loc / |loc|``, with
    density proportional to ``exp(kappa m^T theta)``; differentiable in ``loc`` and in ``kappa``.

    The cosine ``w = m^T theta`` comes from Wood's rejection sampler (A. T. A. Wood, *Simulation of the
    von Mises Fisher distribution*, 1994), kept as ``1 - w`` so that every finite ``kappa`` keeps its
    digits; the tangent part is uniform. The draw is built around a reference axis ``r = -sign(m_0) e_0``
    and carried to ``m`` by the Householder reflection ``H = I - 2 h h^T``, ``h = (r - m) / |r - m|``
    (``|r - m| >= sqrt 2``, so ``H`` is smooth in ``loc``). The rejection sampler has no gradient in
    ``kappa``; a tensor ``kappa`` gets the implicit reparameterisation one (M. Figurnov, S. Mohamed,
    A. Mnih, *Implicit Reparameterization Gradients*, NeurIPS 2018): ``dw/dkappa = int_w^1 (t - A_d)
    f(t) dt / f(w)`` (``f`` the density of ``w``, ``A_d = I_{d/2}(kappa) / I_{d/2-1}(kappa)`` its mean) by
    Gauss-Legendre quadrature, the tangent part fixed.

    Args:
        loc: ``(d,)`` floating location, ``d >= 1`` (normalised here; gradients flow through that).
        kappa: concentration ``> 0``, finite: a number (a constant) or a scalar floating tensor (gradients
            flow, for ``d >= 2``: on S^0 a draw is one of two points).
        n: number of draws.
        generator: the randomness (a CPU ``torch.Generator``; None: torch's global one).

    Returns:
        ``(n, d)`` unit rows of ``loc``'s dtype and device.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> theta = von_mises_fisher(torch.tensor([0.0, 0.0, 1.0]), 50.0, 4, generator=g)
    >>> bool((theta[:, 2] > 0.5).all())
    True
    """
    n = check_positive_int(n, "n")
    if not isinstance(loc, torch.Tensor) or loc.ndim != 1 or loc.shape[0] < 1 or not loc.is_floating_point():
        raise TypeError(f"loc: expected a floating (d,) tensor, got {describe(loc)}")
    if isinstance(kappa, torch.Tensor):
        if not kappa.is_floating_point() or kappa.numel() != 1:
            raise TypeError(f"kappa: expected a number or a floating scalar tensor, got {describe(kappa)}")
        k = float(kappa.detach())
    else:
        k = check_real(kappa, "kappa", "> 0", lambda v: v > 0)
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"kappa: expected a finite concentration > 0, got {k}")
    d = loc.shape[0]
    slope_wanted = isinstance(kappa, torch.Tensor) and kappa.requires_grad and torch.is_grad_enabled()
    if slope_wanted and d == 1:
        raise ValueError("kappa: a gradient in the concentration needs d >= 2 (on S^0 a draw is one of two points)")
    norm = loc.norm()
    if not 0 < float(norm.detach()) < math.inf:
        raise ValueError(f"loc: expected a nonzero finite location, got norm {float(norm.detach())}")
    m = loc / norm
    y = _wood_cosines(n, d, k, generator)  # (n,) float64 1 - w
    if slope_wanted:  # the same values, with the gradient -dw/dkappa
        y = y - _cosine_slope(y, k, d) * (kappa - kappa.detach()).reshape(()).double().cpu()
    tangent = uniform_directions(n, d - 1, generator) if d > 1 else torch.empty(n, 0, dtype=torch.float64)
    s = 1.0 if float(m[0].detach()) <= 0 else -1.0  # reference axis r = s e_0, on the far side from m
    sine = (y * (2.0 - y)).clamp_min(0).sqrt()  # (n,) sqrt(1 - w^2)
    x = torch.cat([s * (1.0 - y)[:, None], sine[:, None] * tangent], 1)  # (n, d) around r
    x = x.to(dtype=loc.dtype, device=loc.device)
    r = torch.zeros_like(m)
    r[0] = s
    h = (r - m) / (r - m).norm()  # (d,)
    return x - 2.0 * (x @ h)[:, None] * h  # (n, d): H x, with H r = m


def _wood_cosines(n: int, dim: int, kappa: float, generator) -> torch.Tensor:
    """``(n,)`` float64 ``1 - w``, one minus the cosines ``w`` of vMF draws to their location on
    S^(dim-1) (Wood, 1994), with ``x0 = 1 - delta`` and ``b`` computed without ``kappa^2``: every finite
    ``kappa`` keeps its digits (``1 - w`` is about ``(dim - 1) / (2 kappa)``)."""
    if dim == 1:  # S^0 = {-1, +1}: P(+m) = e^k / (e^k + e^-k)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.where(u < 1.0 / (1.0 + math.exp(-2.0 * kappa)), 0.0, 2.0)
    m = dim - 1
    r = m / (2.0 * kappa)
    b = r / (1.0 + math.sqrt(1.0 + r * r))  # m / (2 kappa + sqrt(4 kappa^2 + m^2))
    delta = 2.0 * b / (1.0 + b)  # 1 - x0
    log_norm = math.log(delta) + math.log(2.0 - delta)  # log(1 - x0^2)
    out = torch.empty(n, dtype=torch.float64)
    pending = torch.arange(n)
    while pending.numel():  # vectorised rejection: redraw only the rejected ones
        k = pending.numel()
        chi = torch.randn(k, 2, m, generator=generator, dtype=torch.float64).square().sum(-1)  # (k, 2)
        z = chi[:, 0] / chi.sum(-1)  # Beta(m/2, m/2)
        log_u = torch.rand(k, generator=generator, dtype=torch.float64).log()
        y = 2.0 * b * z / (1.0 - (1.0 - b) * z)  # 1 - w
        # kappa (w - x0) + m log((1 - x0 w) / (1 - x0^2)) >= log u, each term without cancellation
        ok = kappa * (delta - y) + m * (torch.log(delta + y - delta * y) - log_norm) >= log_u
        out[pending[ok]] = y[ok]
        pending = pending[~ok]
    return out


_NODES = 64  # Gauss-Legendre nodes of the implicit kappa-gradient


def _cosine_slope(y: torch.Tensor, kappa: float, dim: int) -> torch.Tensor:
    """``(n,)`` float64 ``dw/dkappa`` at ``w = 1 - y`` (implicit reparameterisation; ``dim >= 2``).

    ``int_w^1 (t - A) f(t) / f(w) dt`` with ``t = 1 - y s^2``: the integrand is
    ``(1 - y s^2 - A) e^(kappa y (1 - s^2)) ((2 - y s^2) / (2 - y))^((d-3)/2) 2 y s^(d-2)``, smooth in ``s``."""
    s, ws = np.polynomial.legendre.leggauss(_NODES)
    s = torch.from_numpy((s + 1) / 2)  # (Q,) nodes on [0, 1]
    ws = torch.from_numpy(ws / 2)
    a = float(_mean_cosine(np.asarray(kappa, dtype=np.float64), dim))
    y = y.double()[:, None]  # (n, 1)
    u = y * s * s  # (n, Q) 1 - t
    half = (dim - 3) / 2
    log_part = kappa * (y - u) + half * (torch.log(2 - u) - torch.log(2 - y))
    integrand = (1 - u - a) * torch.exp(log_part) * 2 * y * s.pow(dim - 2)
    return integrand @ ws  # (n,)


def _log_bessel_i(order: float, kappa: np.ndarray) -> np.ndarray:
    """``log I_order(kappa)`` for ``kappa > 0`` (float64): ``log ive + kappa``, and the first two terms of
    the series where ``ive`` underflows (``kappa`` far below the order, where the series is exact to
    rounding)."""
    from scipy.special import gammaln, ive

    shape = np.shape(kappa)
    kappa = np.atleast_1d(np.asarray(kappa, dtype=np.float64))
    with np.errstate(divide="ignore"):
        out = np.log(ive(order, kappa)) + kappa
    small = ~np.isfinite(out)
    if small.any():
        k = kappa[small]
        out[small] = order * np.log(k / 2) - gammaln(order + 1) + np.log1p(k * k / (4 * (order + 1)))
    return out.reshape(shape)


def _mean_cosine(kappa: np.ndarray, dim: int) -> np.ndarray:
    """``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)`` (float64), ``kappa > 0``: the mean cosine of a
    vMF draw to its location on S^(d-1)."""
    nu = dim / 2 - 1
    return np.asarray(np.exp(_log_bessel_i(nu + 1, kappa) - _log_bessel_i(nu, kappa)), dtype=np.float64)
