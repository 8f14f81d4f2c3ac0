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

Helpers: :func:`uniform_directions` (rows on the sphere), :func:`haar_orthogonal` and
:func:`haar_rotation` (the Haar law on O(n)), :func:`gram_schmidt_frames`.
"""

from __future__ import annotations

import math

import torch

from .contract import DirectionSpace, UnitSphere

__all__ = ["Frames", "SymmetricDirections", "UnitSphere", "gram_schmidt_frames", "haar_orthogonal", "haar_rotation",
           "uniform_directions"]


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
