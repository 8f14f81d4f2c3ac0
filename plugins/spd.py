"""Measures of symmetric positive definite (SPD) matrices: ``"spd"``, ``"spd-logsw"``, ``"spd-affine"``.

From *Sliced-Wasserstein on Symmetric Positive Definite Matrices for M/EEG Signals*, Clément Bonet,
Benoît Malézieux, Alain Rakotomamonjy, Lucas Drumetz, Thomas Moreau, Matthieu Kowalski, Nicolas
Courty (ICML 2023). A measure is a weighted set of SPD matrices ``X_i`` (``(N, n, n)`` or batches
``(B, N, n, n)``, e.g. covariance matrices of M/EEG epochs, see :func:`covariances`); a direction is
a symmetric matrix ``A`` with ``||A||_F = 1`` and each matrix goes to one number:

- ``"spd"`` (SPDSW, log-Euclidean): ``t = <A, log X>_F`` with ``A = P diag(theta) P^T``, ``theta``
  uniform on S^(n-1) and ``P`` Haar on O(n). The support is ``vec(log X)`` (below), ``D = n(n+1)/2``
  coordinates. Directions live in :class:`geom.SymmetricDirections`: ``(L, n, n)`` symmetric
  matrices of unit Frobenius norm, drawn uniformly as ``P diag(theta) P^T`` from ``n + n^2``
  Gaussians (``theta`` the first ``n`` normalised, uniform on S^(n-1); ``P`` the sign-fixed Q factor
  of the other ``n^2`` as a matrix, Haar and independent of ``theta``).
- ``"spd-logsw"`` (log-SW): the Euclidean sliced Wasserstein distance of ``vec(log X)``, directions
  uniform on the unit sphere of Sym(n) (``A = vec^-1(row)``, D-dimensional rows). It is ``linear``,
  so the core's fused kernel and the control variates (``scheme="cv"``) apply. It differs from SPDSW
  only in the law of ``A``: both are invariant under ``A -> Q A Q^T``, but the eigenvalues of a
  uniform unit symmetric matrix are not uniform on S^(n-1) (they repel, as in the Gaussian
  orthogonal ensemble), so the two distances weight the slices differently.
- ``"spd-affine"`` (HSPDSW, affine-invariant metric ``d(X, Y) = ||log(X^-1/2 Y X^-1/2)||_F``):
  ``t = -B^A(X)``, minus the Busemann function of the geodesic ``exp(s A)``, with ``A`` drawn as for
  ``"spd"``. With ``theta`` sorted decreasingly (columns of ``P`` alike) and ``P^T X P = U D U^T``,
  ``U`` upper unitriangular and ``D`` diagonal, ``t = sum_i theta_i log D_ii = <A, log(P D P^T)>``:
  the horospherical group ``U`` leaves ``B^A`` invariant, and on matrices commuting with ``A`` it is
  the log-Euclidean projection. ``D`` comes from a Cholesky factorisation of the index-reversed
  matrix. The support keeps the matrices themselves, ``(B, N, n, n)``.

``vec`` is the orthonormal basis of Sym(n): the ``n`` diagonal entries, then ``sqrt(2) X_ij`` for
``i < j`` (row-major), so ``<A, B>_F = vec(A) . vec(B)`` (:func:`sym_to_vec`, :func:`vec_to_sym`).
Logarithms use ``torch.linalg.eigh`` with a Daleckii-Krein backward that is finite for repeated
eigenvalues (:func:`spd_log`). ``"spd"`` and ``"spd-affine"`` take user directions as ``(L, n, n)``
symmetric unit-Frobenius matrices and return them so in ``SlicedResult.directions``; ``"spd-logsw"``
takes unit rows of the log coordinates (:func:`sym_to_vec` of such matrices).

>>> import geom, math, torch
>>> X = torch.diag_embed(torch.exp(torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)))  # (2, 2, 2)
>>> mu, nu = geom.measure(X, kind="spd"), geom.measure(X * math.exp(2), kind="spd")  # log X + 2 I
>>> A = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)  # one direction, A = diag(1, 0)
>>> round(geom.sliced_wasserstein(mu, nu, directions=A).item(), 6)
2.0
"""

from __future__ import annotations

import math
import re
import warnings

import torch

import geom
from geom._checks import check_int, check_real, describe
from geom.directions import SymmetricDirections
from geom.measures import Measure, as_support, normalize_weights

__all__ = [
    "AffineInvariantSPD",
    "LogEuclideanSPD",
    "LogSlicedSPD",
    "busemann_projections",
    "check_spd",
    "covariances",
    "matrices_to_rows",
    "rows_to_frames",
    "rows_to_matrices",
    "spd_log",
    "sym_to_vec",
    "vec_to_sym",
]

_WORK_BYTES = 1 << 26  # working memory of the affine-invariant projections per chunk (~64 MiB)


# ----------------------------------------------------------------- Sym(n) coordinates


def _triu(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.triu_indices(n, n, 1, device=device).unbind(0)


def _matrix_stack(X, name: str, what: str = "symmetric matrices") -> torch.Tensor:
    """Array-like -> float tensor ``(..., n, n)`` with ``n >= 1``; errors name ``name``."""
    X = as_support(X, name, f"an array of {what} (..., n, n)")
    if X.ndim < 2 or X.shape[-1] != X.shape[-2] or X.shape[-1] == 0:
        raise ValueError(f"{name}: expected {what} of shape (..., n, n) with n >= 1, got {describe(X)}")
    return X


def sym_to_vec(S: torch.Tensor) -> torch.Tensor:
    """``(..., n, n)`` symmetric -> ``(..., n(n+1)/2)``: diagonal, then ``sqrt(2) S_ij`` for ``i < j``."""
    S = _matrix_stack(S, "S")
    n = S.shape[-1]
    i, j = _triu(n, S.device)
    return torch.cat([S.diagonal(dim1=-2, dim2=-1), math.sqrt(2.0) * S[..., i, j]], -1)


def vec_to_sym(v: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Inverse of :func:`sym_to_vec`: ``(..., D)`` -> ``(..., n, n)`` with ``D = n(n+1)/2``."""
    v = as_support(v, "v", "an array of log coordinates (..., n(n+1)/2)")
    if v.ndim < 1:
        raise ValueError(f"v: expected log coordinates of shape (..., n(n+1)/2), got {describe(v)}")
    n = _order(v.shape[-1], "v") if n is None else check_int(n, "n", minimum=1)
    if v.shape[-1] != n * (n + 1) // 2:
        raise ValueError(f"v: expected n(n+1)/2 = {n * (n + 1) // 2} log coordinates for n = {n}, got {v.shape[-1]}")
    i, j = _triu(n, v.device)
    upper = v.new_zeros(*v.shape[:-1], n, n)
    upper[..., i, j] = v[..., n:] / math.sqrt(2.0)
    return torch.diag_embed(v[..., :n]) + upper + upper.transpose(-1, -2)


def _order(D: int, name: str) -> int:
    n = int(round((math.sqrt(8 * D + 1) - 1) / 2))
    if n * (n + 1) // 2 != D:
        raise ValueError(f"{name}: expected n(n+1)/2 log coordinates, got {D}")
    return n


# ----------------------------------------------------------------- the matrix logarithm


class _SymLog(torch.autograd.Function):
    """``log X`` of symmetric positive definite ``X`` by ``eigh``; backward by divided differences."""

    @staticmethod
    def forward(ctx, X):
        w, V = _linalg(torch.linalg.eigh, X, "X")  # (..., n), (..., n, n)
        bad = ~(w[..., 0] > 0) | ~torch.isfinite(w).all(-1)  # (...,)
        if bool(bad.any()):
            k = tuple(bad.nonzero()[0].tolist())
            raise ValueError(f"X: X[{', '.join(map(str, k))}] has eigenvalues from {w[k][0].item():.6g} to "
                             f"{w[k][-1].item():.6g}; expected positive definite matrices with finite eigenvalues")
        logw = w.log()
        ctx.save_for_backward(w, V, logw)
        return (V * logw.unsqueeze(-2)) @ V.transpose(-1, -2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, G):
        w, V, logw = ctx.saved_tensors
        # Daleckii-Krein: D log(X)[E] = V (K o V^T E V) V^T, K_ij = (log w_i - log w_j) / (w_i - w_j), 1/w_i on ties
        wi, wj = w.unsqueeze(-1), w.unsqueeze(-2)  # (..., n, 1), (..., 1, n)
        dw = wi - wj
        tie = dw.abs() <= 1e3 * torch.finfo(w.dtype).eps * torch.maximum(wi, wj)
        safe = torch.where(tie, torch.ones_like(dw), dw)
        K = torch.where(tie, 2.0 / (wi + wj), torch.log1p(safe / wj) / safe)  # log1p: accurate when w_i ~ w_j
        Vt = V.transpose(-1, -2)
        return V @ (K * (Vt @ G @ V)) @ Vt


def spd_log(X: torch.Tensor) -> torch.Tensor:
    """Matrix logarithm of ``(..., n, n)`` SPD matrices, differentiable (finite for repeated eigenvalues).

    Raises ValueError naming the first matrix ``X[i, ...]`` whose eigenvalues are not all positive
    and finite (or whose eigendecomposition fails), never a NaN logarithm.
    """
    return _SymLog.apply(_matrix_stack(X, "X", "SPD matrices"))


# ----------------------------------------------------------------- input validation


def _index(k: tuple, batched: bool) -> str:
    return f"X[{', '.join(map(str, k if batched else k[1:]))}]"


def _linalg(fn, A: torch.Tensor, name: str, index=lambda k: f"X[{', '.join(map(str, k))}]"):
    """``fn(A)`` for a ``(..., n, n)`` stack; a LinAlgError (LAPACK did not converge) becomes a
    ValueError naming ``name`` and the matrix torch reports, as ``index(k)`` of its index tuple ``k``."""
    try:
        return fn(A)
    except torch.linalg.LinAlgError as exc:
        found = re.search(r"Batch element (\d+)", str(exc))
        where = "a matrix"
        if found and A.ndim > 2:
            where = index(tuple(int(i) for i in torch.unravel_index(torch.tensor(int(found[1])), A.shape[:-2])))
        raise ValueError(f"{name}: {where} cannot be factorised ({str(exc).splitlines()[0]})") from None


def _definite(w: torch.Tensor) -> torch.Tensor:
    """``(..., n)`` increasing eigenvalues -> ``(...,)``: numerically positive definite, i.e. every
    eigenvalue finite and the smallest above ``n * eps * largest`` (below it, rounding decides its sign)."""
    n, eps = w.shape[-1], torch.finfo(w.dtype).eps
    return (w[..., 0] > n * eps * w[..., -1]) & torch.isfinite(w[..., -1])


def check_spd(X: torch.Tensor, *, batched: bool, name: str = "obj", atol: float | None = None) -> torch.Tensor:
    """Validate a ``(B, N, n, n)`` stack of SPD matrices and return it symmetrised, ``(X + X^T) / 2``.

    Raises ValueError naming the first offending matrix (``X[i]``, or ``X[b, i]`` for batches) and
    what is wrong with it: non-finite entries, asymmetry beyond ``atol`` (default
    ``sqrt(eps) * max(1, max |X|)`` of the dtype), or an eigenvalue ``<= n * eps * largest`` (not
    positive definite, or so nearly singular that rounding decides the sign of the smallest
    eigenvalue), or an infinite one.
    """
    X = _matrix_stack(X, name, "SPD matrices")
    if X.ndim != 4:
        raise ValueError(f"{name}: expected a (B, N, n, n) stack of SPD matrices, got {describe(X)}")
    Xd = X.detach()
    bad = ~torch.isfinite(Xd).flatten(2).all(-1)  # (B, N)
    if bool(bad.any()):
        k = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"{name}: {_index(k, batched)} has non-finite entries (nan or inf)")
    scale = max(1.0, Xd.abs().max().item())
    tol = math.sqrt(torch.finfo(Xd.dtype).eps) * scale if atol is None else atol
    asym = (Xd - Xd.transpose(-1, -2)).abs().flatten(2).amax(-1)  # (B, N)
    if bool((asym > tol).any()):
        k = tuple((asym > tol).nonzero()[0].tolist())
        raise ValueError(
            f"{name}: {_index(k, batched)} is not symmetric (max |X - X^T| = {asym[k].item():.3g} > "
            f"tolerance {tol:.3g})"
        )
    S = (X + X.transpose(-1, -2)) / 2
    w = _linalg(torch.linalg.eigvalsh, S.detach(), name, lambda k: _index(k, batched))  # (B, N, n) increasing
    bad = ~_definite(w)  # (B, N)
    if bool(bad.any()):
        k = tuple(bad.nonzero()[0].tolist())
        n, lo, hi = w.shape[-1], w[k][0].item(), w[k][-1].item()
        if not bool(torch.isfinite(w[k]).all()):
            raise ValueError(f"{name}: {_index(k, batched)} has eigenvalues beyond the range of {w.dtype} (entries "
                             f"up to {Xd[k].abs().max().item():.3g}); rescale it")
        raise ValueError(
            f"{name}: {_index(k, batched)} has eigenvalue {lo:.6g} (largest {hi:.6g}); expected positive "
            f"definite matrices with finite eigenvalues, the smallest above {n} * eps * the largest = "
            f"{n * torch.finfo(w.dtype).eps * hi:.3g} in {w.dtype} (for nearly singular matrices use float64 "
            "or shrinkage; for covariances with more channels than samples use shrinkage)"
        )
    return S


def _matrices(obj) -> tuple[torch.Tensor, bool]:
    """Raw input -> ``(B, N, n, n)`` float tensor and whether it was batched."""
    X = as_support(obj)
    if X.ndim not in (3, 4) or X.shape[-1] != X.shape[-2]:
        raise ValueError(f"obj: expected SPD matrices of shape (N, n, n) or (B, N, n, n), got {describe(X)}")
    batched = X.ndim == 4
    if not batched:
        X = X[None]
    if X.shape[0] == 0 or X.shape[1] == 0 or X.shape[-1] == 0:
        raise ValueError(f"obj: expected at least one matrix of size n >= 1, got shape {tuple(X.shape)}")
    return X, batched


# ----------------------------------------------------------------- directions


def rows_to_frames(rows: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deprecated (directions are ``(L, n, n)`` matrices now): ``(L, n + n^2)`` rows of the first
    contract -> ``theta (L, n)`` unit vectors and ``P (L, n, n)`` orthogonal matrices (the first block
    normalised; the sign-fixed Q factor of the second block read as an ``n x n`` matrix, row-major)."""
    warnings.warn("rows_to_frames is deprecated: SPD directions are (L, n, n) symmetric matrices",
                  DeprecationWarning, stacklevel=2)
    return _rows_to_frames(rows, n)


def _rows_to_frames(rows, n):
    n = check_int(n, "n", minimum=1)
    rows = as_support(rows, "directions", f"an (L, {n + n * n}) array of rows")
    if rows.ndim != 2 or rows.shape[1] != n + n * n:
        raise ValueError(f"directions: expected shape (L, {n + n * n}) for {n}x{n} matrices, got {tuple(rows.shape)}")
    return _eigen_frames(SymmetricDirections(n).from_gaussian(rows))


def rows_to_matrices(rows: torch.Tensor, n: int) -> torch.Tensor:
    """Deprecated: ``(L, n + n^2)`` rows of the first contract -> ``A = P diag(theta) P^T`` ``(L, n, n)``."""
    warnings.warn("rows_to_matrices is deprecated: SPD directions are (L, n, n) symmetric matrices",
                  DeprecationWarning, stacklevel=2)
    n = check_int(n, "n", minimum=1)
    rows = as_support(rows, "directions", f"an (L, {n + n * n}) array of rows")
    if rows.ndim != 2 or rows.shape[1] != n + n * n:
        raise ValueError(f"directions: expected shape (L, {n + n * n}) for {n}x{n} matrices, got {tuple(rows.shape)}")
    return SymmetricDirections(n).from_gaussian(rows)


def matrices_to_rows(A) -> torch.Tensor:
    """Deprecated: the matrices themselves, checked (``(L, n, n)`` symmetric, unit Frobenius norm).
    ``"spd"`` and ``"spd-affine"`` take them as ``directions=`` as they are."""
    warnings.warn("matrices_to_rows is deprecated: pass the (L, n, n) matrices as directions= directly",
                  DeprecationWarning, stacklevel=2)
    A = _matrix_stack(A, "A")
    if A.ndim != 3 or A.shape[0] < 1:
        raise ValueError(f"A: expected (L, n, n) symmetric matrices, got {describe(A)}")
    finite = torch.isfinite(A).flatten(1).all(1)  # (L,)
    if not bool(finite.all()):
        raise ValueError(f"A: expected finite entries, got nan or inf in A[{int((~finite).nonzero()[0])}]")
    return SymmetricDirections(A.shape[-1]).check(A, "A")


def _eigen_frames(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, n, n)`` symmetric directions -> ``theta (L, n)`` eigenvalues and ``P (L, n, n)`` eigenvectors."""
    theta, P = _linalg(torch.linalg.eigh, (A + A.transpose(-1, -2)) / 2, "directions", lambda k: f"directions[{k[0]}]")
    return theta / theta.norm(dim=1, keepdim=True), P


# ----------------------------------------------------------------- affine-invariant projections


def busemann_projections(X: torch.Tensor, theta: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """``t = -B^A(X)`` for ``A = P diag(theta) P^T``: ``(B, N, n, n)``, ``(L, n)``, ``(L, n, n)`` -> ``(B, L, N)``.

    Sort ``theta`` decreasingly (and ``P``'s columns alike); with ``P^T X P = U D U^T``, ``U`` upper
    unitriangular, ``t = sum_i theta_i log D_ii``. Reversing the index order turns ``U D U^T`` into
    ``L' D' L'^T``, whose ``D'`` is the squared diagonal of the Cholesky factor.
    """
    order = theta.argsort(dim=1, descending=True)  # (L, n)
    theta = theta.gather(1, order).flip(-1)  # (L, n), increasing: the reversed index order
    Pr = P.gather(2, order.unsqueeze(1).expand_as(P)).flip(-1)  # (L, n, n)
    B, N, n = X.shape[0], X.shape[1], X.shape[-1]
    step = max(1, _WORK_BYTES // max(1, B * N * n * n * X.element_size() * 4))
    parts = []
    for l0 in range(0, theta.shape[0], step):
        Pc = Pr[l0:l0 + step]  # (Lc, n, n)
        Y = torch.einsum("lji,bnjk,lkm->blnim", Pc, X, Pc)  # (B, Lc, N, n, n) = Pr^T X Pr
        C, info = torch.linalg.cholesky_ex((Y + Y.transpose(-1, -2)) / 2)  # (B, Lc, N, n, n), (B, Lc, N)
        logd = 2 * C.diagonal(dim1=-2, dim2=-1).log()  # (B, Lc, N, n)
        bad = (info != 0) | ~torch.isfinite(logd).all(-1)  # (B, Lc, N)
        if bool(bad.any()):
            b, l, i = bad.nonzero()[0].tolist()
            raise ValueError(
                f"spd-affine: the matrix X[{b}, {i}] (batch item {b}, matrix {i}) is too ill-conditioned for "
                f"the affine-invariant projections: the Cholesky factorisation of P^T X P fails for direction "
                f"{l0 + l}; build the measure with geom.measure(..., kind='spd-affine'), which checks it, or use "
                "float64"
            )
        parts.append((logd * theta[l0:l0 + step, None, :]).sum(-1))  # (B, Lc, N)
    return torch.cat(parts, 1)


# ----------------------------------------------------------------- representations


def _build(kind: str, obj, weights, options, *, log: bool) -> Measure:
    atol = options.pop("atol", None)
    if options:
        raise TypeError(f"unknown options for kind {kind!r}: {sorted(options)} (accepted: atol)")
    if atol is not None:
        atol = check_real(atol, "atol", ">= 0", lambda v: v >= 0)
    X, batched = _matrices(obj)
    S = check_spd(X, batched=batched, atol=atol)  # (B, N, n, n)
    support = sym_to_vec(spd_log(S)) if log else S  # (B, N, D) or (B, N, n, n)
    w, uniform = normalize_weights(weights, support, batched=batched)
    return Measure(support, w, kind=kind, batched=batched, uniform=uniform)


class LogEuclideanSPD(geom.Representation):
    """``"spd"``: SPDSW, ``t = <A, log X>_F``, ``A = P diag(theta) P^T`` read from ``n + n^2`` rows.

    Support: ``vec(log X)``, ``(B, N, n(n+1)/2)``. Option ``atol``: tolerance of the symmetry check.
    """

    name = "spd"
    expects = "SPD matrices: an (N, n, n) or (B, N, n, n) array, or a .npy / .npz file of one"

    def build(self, obj, *, weights=None, **options):
        return _build(self.name, obj, weights, options, log=True)

    def direction_space(self, mu):
        return SymmetricDirections(_order(mu.dim, "support"))

    def project(self, support, directions):
        return torch.matmul(sym_to_vec(directions), support.transpose(1, 2))  # (L, D) @ (B, D, N) -> (B, L, N)


class LogSlicedSPD(geom.Representation):
    """``"spd-logsw"``: Euclidean SW of ``vec(log X)``, directions uniform on the unit sphere of Sym(n).

    Linear on the ``(B, N, n(n+1)/2)`` log coordinates; a row ``r`` is the direction ``vec_to_sym(r)``.
    """

    name = "spd-logsw"
    expects = "SPD matrices: an (N, n, n) or (B, N, n, n) array, or a .npy / .npz file of one"
    linear = True

    def build(self, obj, *, weights=None, **options):
        return _build(self.name, obj, weights, options, log=True)

    def project(self, support, directions):
        return torch.matmul(directions, support.transpose(1, 2))  # (B, L, N)


class AffineInvariantSPD(geom.Representation):
    """``"spd-affine"``: HSPDSW, Busemann projections of the affine-invariant metric.

    Support: the (symmetrised) matrices, ``(B, N, n, n)``; rows of length ``n + n^2`` as for ``"spd"``.
    """

    name = "spd-affine"
    expects = "SPD matrices: an (N, n, n) or (B, N, n, n) array, or a .npy / .npz file of one"

    def build(self, obj, *, weights=None, **options):
        return _build(self.name, obj, weights, options, log=False)

    def direction_space(self, mu):
        return SymmetricDirections(mu.support.shape[-1])

    def project(self, support, directions):
        theta, P = _eigen_frames(directions)  # A = P diag(theta) P^T
        return busemann_projections(support, theta, P)


# ----------------------------------------------------------------- covariance matrices


def covariances(x, *, shrinkage="ledoit-wolf", center: bool = True, return_shrinkage: bool = False):
    """Covariance matrices of multichannel time series, shrunk towards a scaled identity.

    ``S = x_c x_c^T / T`` per item (``x_c``: each channel minus its mean over time when ``center``),
    then ``(1 - s) S + s (tr S / C) I``. With ``shrinkage="ledoit-wolf"``, ``s`` is the Ledoit-Wolf
    (2004) estimate per item: ``s = min(b^2, d^2) / d^2`` with ``d^2 = ||S - m I||^2``, ``m = tr S / C``,
    ``b^2 = T^-2 sum_t ||x_t x_t^T - S||^2`` (Frobenius norms; the same as scikit-learn's
    ``ledoit_wolf``). A number in ``[0, 1]`` is a fixed ``s``; ``None`` or ``0`` is the plain estimate.

    Args:
        x: ``(N, C, T)`` array or tensor: N items, C channels, T time samples.
        shrinkage: ``"ledoit-wolf"`` (default), a number in ``[0, 1]``, or ``None``.
        center: subtract each channel's mean over time first.
        return_shrinkage: also return the ``(N,)`` shrinkage coefficients used.

    Returns:
        ``(N, C, C)`` SPD matrices (and ``(N,)`` coefficients); differentiable in ``x``.

    Raises:
        ValueError: wrong shape, non-finite values, a covariance that overflows, or a result that is
            not (numerically) positive definite (e.g. no shrinkage with ``C >= T``), naming the item.
    """
    x = as_support(x)
    if x.ndim != 3 or min(x.shape) < 1:
        raise ValueError(f"x: expected time series of shape (N, channels, times), got {describe(x)}")
    if not bool(torch.isfinite(x.detach()).all()):
        k = int((~torch.isfinite(x.detach())).flatten(1).any(1).nonzero()[0])
        raise ValueError(f"x: expected finite values, got nan or inf in x[{k}]")
    N, C, T = x.shape
    if center:
        x = x - x.mean(-1, keepdim=True)
    S = x @ x.transpose(1, 2) / T  # (N, C, C)
    eye = torch.eye(C, dtype=x.dtype, device=x.device)
    m = S.diagonal(dim1=1, dim2=2).sum(-1) / C  # (N,)
    if isinstance(shrinkage, str):
        if shrinkage != "ledoit-wolf":
            raise ValueError(f"shrinkage: expected 'ledoit-wolf', a number in [0, 1] or None, got {shrinkage!r}")
        with torch.no_grad():
            d2 = ((S - m[:, None, None] * eye) ** 2).sum((1, 2))  # (N,)
            # sum_t ||x_t x_t^T - S||^2 = sum_t |x_t|^4 - T ||S||^2 (since sum_t x_t x_t^T = T S)
            b2 = ((x**2).sum(1) ** 2).sum(-1) / T**2 - (S**2).sum((1, 2)) / T  # (N,)
            s = torch.where(d2 > 0, torch.minimum(b2.clamp_min(0), d2) / d2.clamp_min(torch.finfo(x.dtype).tiny), 0.0)
    elif shrinkage is None:
        s = torch.zeros(N, dtype=x.dtype, device=x.device)
    else:
        s = torch.full((N,), check_real(shrinkage, "shrinkage", "in [0, 1]", lambda v: 0 <= v <= 1),
                       dtype=x.dtype, device=x.device)
    out = (1 - s)[:, None, None] * S + (s * m)[:, None, None] * eye  # (N, C, C)
    finite = torch.isfinite(out.detach()).flatten(1).all(1)  # (N,)
    if not bool(finite.all()):
        k = int((~finite).nonzero()[0])
        raise ValueError(f"x: the covariance of x[{k}] overflows {x.dtype} (|x| up to "
                         f"{x[k].detach().abs().max().item():.3g}); rescale x or use float64")
    w = _linalg(torch.linalg.eigvalsh, out.detach(), "x", lambda k: f"the covariance of x[{k[0]}]")  # (N, C)
    ok = _definite(w)  # (N,)
    if not bool(ok.all()):
        k = int((~ok).nonzero()[0])
        raise ValueError(
            f"x: the covariance of x[{k}] is not positive definite (eigenvalue {w[k, 0].item():.3g}, largest "
            f"{w[k, -1].item():.3g}; "
            f"{C} channels, {T} times, shrinkage {s[k].item():.3g}); use shrinkage > 0 or more times"
        )
    return (out, s) if return_shrinkage else out


@geom.hookimpl
def geom_register_representations(register):
    register("spd", LogEuclideanSPD)
    register("spd-logsw", LogSlicedSPD)
    register("spd-affine", AffineInvariantSPD)
