"""Entropic refinement: log-domain Sinkhorn between spectral embeddings, with epsilon annealing.

Between ``X = Phi_A C`` (``n_A`` points, masses ``a`` = A's lumped areas) and ``Y = Phi_B`` (masses
``b``), with cost ``c_ij = |x_i - y_j|^2``, the potentials are updated in the log domain::

    f_i = -eps log sum_j b_j exp((g_j - c_ij) / eps),    g_j = -eps log sum_i a_i exp((f_i - c_ij) / eps)

(stable for any eps), warm-started as eps decreases geometrically from ``eps_start`` to ``eps_end``
(relative to the mean cost). After each eps the map is updated from the transport plan's
barycentric projection, ``C <- Phi_A^+ (P Phi_B / a)``, as in the paper's adaptive refinement. The
final point-to-point map is the plan's row argmax ``T(x_i) = argmin_j c_ij - g_j - eps log b_j``.

Each log-sum-exp over all pairs comes from float32 matrix products in blocks of rows (``"dense"``;
spectral embeddings sit at the origin, so float32 products lose no digits that matter to a softmax
at these eps) or from a KeOps ``LogSumExp`` reduction (``"keops"``, one formula per width, compiled
once; chosen by ``"auto"`` on CUDA, where it wins).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import _keops
from .._checks import check_int, check_real
from ..spectral import Spectrum
from ._nn import nearest, product_blocks

__all__ = ["entropic_refine", "log_sinkhorn"]

_BLOCK_ELEMENTS = 1 << 20
"""Logits per block of rows (4 MiB in float32, :func:`geom.match._nn.product_blocks`): a block stays in
cache between the product, the max, the exponential and the sum."""
_FLOOR = -80.0
"""Logits below the row maximum by more than this are raised to it before ``exp``: their terms are
below 2e-35 of the largest (nothing a float32 sum keeps), and an ``exp`` whose result is subnormal
costs about 15 times a normal one (5000 x 5000 at eps = 1e-3: 655 ms against 39 ms)."""


def _softmax_blocks(x, y, base, eps, normalise: bool):
    """For each block of rows ``i``, ``(r0, r1, e, m)``: ``e_ij = exp(l_ij - m_i)`` (in a reused buffer)
    with logits ``l_ij = base_j + 2 x_i . y_j / eps`` and ``m_i`` their row maximum; with ``normalise``,
    ``e`` is divided by its row sums (the softmax)."""
    for r0, r1, e in product_blocks(x, y, base, 2 / eps, _BLOCK_ELEMENTS):
        m = e.amax(1, keepdim=True)
        e.sub_(m).clamp_(min=_FLOOR).exp_()
        if normalise:
            e.div_(e.sum(1, keepdim=True))
        yield r0, r1, e, m[:, 0]


def _lse_dense(x, y, h, eps):
    """``(N,)`` ``log sum_j exp((h_j - |x_i - y_j|^2) / eps)``, in blocks of rows: the ``|x_i|^2`` term
    leaves the sum, and the rest is one fused ``addmm`` per block."""
    base = ((h - (y * y).sum(1)) / eps)[None]  # (1, M)
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for r0, r1, e, m in _softmax_blocks(x, y, base, eps, False):
        torch.log(e.sum(1), out=out[r0:r1]).add_(m)
    return out - (x * x).sum(1) / eps


def _lse_keops(x, y, h, eps):
    root = math.sqrt(eps)  # (h_j - |x_i - y_j|^2) / eps = h_j / eps - |x_i / root - y_j / root|^2
    return _keops.lse((x / root)[None], (y / root)[None], (h / eps)[None])[0]


def log_sinkhorn(x, y, a, b, eps: float, *, n_iter: int = 50, f=None, g=None, backend: str = "auto",
                 tol: float = 1e-6):
    """Log-domain Sinkhorn potentials ``(f (N,), g (M,))`` for cost ``|x - y|^2`` and masses ``a, b``
    (each summing to 1); stops when the row marginals are within ``tol`` in L1 or after ``n_iter``."""
    if backend not in ("auto", "dense", "keops"):
        raise ValueError(f"backend: expected 'auto', 'dense' or 'keops', got {backend!r}")
    if backend == "auto":
        usable = x.device.type == "cuda" and _keops.failure("lse", x.shape[1], x.dtype, x.device) is None
        backend = "keops" if usable else "dense"
    lse = _lse_keops if backend == "keops" else _lse_dense
    la, lb = a.log(), b.log()
    f = torch.zeros_like(a) if f is None else f
    g = torch.zeros_like(b) if g is None else g
    for _ in range(n_iter):
        f_new = -eps * lse(x, y, g + eps * lb, eps)
        # after a g-update the column marginals are exact; the row marginals' L1 error is
        # sum_i a_i |exp((f_new_i - f_i) / eps) - 1|, read from the change of f
        err = float((a * torch.expm1((f - f_new) / eps).abs()).sum()) if _ else float("inf")
        f = f_new
        g = -eps * lse(y, x, f + eps * la, eps)
        if err < tol:
            break
    return f, g


def _plan_barycentre(x, y, b, g, eps, target):
    """``(N, K)`` ``sum_j P_ij target_j / a_i`` (rows of the plan normalised), in blocks of rows."""
    base = ((g + eps * b.log() - (y * y).sum(1)) / eps)[None]  # (1, M); |x_i|^2 cancels in the softmax
    out = torch.empty(x.shape[0], target.shape[1], dtype=target.dtype, device=x.device)
    for r0, r1, e, _ in _softmax_blocks(x, y, base, eps, True):
        torch.matmul(e, target, out=out[r0:r1])
    return out


def entropic_refine(C, spec_a: Spectrum, spec_b: Spectrum, *, eps_start: float = 1e-1, eps_end: float = 1e-3,
                    n_eps: int = 3, n_iter: int = 2, backend: str = "auto", progress=None):
    """Refine a ``(k, k)`` functional map by entropic OT between ``Phi_A C`` and ``Phi_B`` with annealed eps.

    Args:
        C: ``(k, k)`` pull-back map, ``k`` at most the eigenfunctions of both spectra.
        eps_start, eps_end, n_eps: the eps schedule, relative to the mean squared norm of ``Phi_B``'s rows.
        n_iter: Sinkhorn iterations per eps, warm-started from the last eps's potentials.
        backend: ``"auto"``, ``"dense"`` or ``"keops"`` for the log-sum-exps.

    Returns ``(C, T)``: the refined map and the point-to-point map (plan argmax) ``(n_A,)``.
    """
    C = np.asarray(C, dtype=np.float64)
    k = C.shape[1]
    if C.ndim != 2 or C.shape[0] != C.shape[1] or k > spec_a.evecs.shape[1] or k > spec_b.evecs.shape[1]:
        raise ValueError(f"C: expected a square map of at most {min(spec_a.evecs.shape[1], spec_b.evecs.shape[1])} "
                         f"eigenfunctions, got shape {C.shape}")
    eps_start = check_real(eps_start, "eps_start", "> 0", lambda e: e > 0)
    eps_end = check_real(eps_end, "eps_end", "in (0, eps_start]", lambda e: 0 < e <= eps_start)
    n_eps, n_iter = check_int(n_eps, "n_eps", minimum=1), check_int(n_iter, "n_iter", minimum=1)
    f32 = lambda v: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))  # noqa: E731
    phi_a, phi_b = f32(spec_a.evecs[:, :k]), f32(spec_b.evecs[:, :k])
    a, b = f32(spec_a.mass / spec_a.mass.sum()), f32(spec_b.mass / spec_b.mass.sum())
    mass_a = torch.from_numpy(spec_a.mass)[:, None]
    # the embeddings' scale: eps is relative to the mean squared norm of Phi_B's rows (k / area)
    unit = float((b[:, None] * phi_b.square()).sum())
    f = g = None
    Ct = torch.from_numpy(C)
    for eps_rel in np.geomspace(eps_start, eps_end, n_eps):
        eps = float(eps_rel) * unit
        x = phi_a @ Ct.float()
        f, g = log_sinkhorn(x, phi_b, a, b, eps, n_iter=n_iter, f=f, g=g, backend=backend)
        soft = _plan_barycentre(x, phi_b, b, g, eps, phi_b)  # (n_A, k) Pi Phi_B
        Ct = torch.from_numpy(spec_a.evecs[:, :k]).T @ (mass_a * soft.double())  # Phi_A^+ Pi Phi_B = Phi_A^T M (.)
        if progress is not None:
            progress(1)
    if not math.isfinite(float(f.sum() + g.sum())):
        raise ValueError("entropic_refine: the Sinkhorn potentials are not finite; raise eps_end")
    T = nearest(phi_a @ Ct.float(), phi_b, -(g + eps * b.log()), backend="gram")
    return Ct.numpy(), T
