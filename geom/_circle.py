"""Exact optimal transport between measures on the circle R/Z (length 1), row by row.

The 1-D core of spherical sliced Wasserstein (C. Bonet, P. Berg, N. Courty, F. Septier, L. Drumetz,
M.-T. Pham, *Spherical Sliced-Wasserstein*, ICLR 2023), which sends points of the sphere to great
circles. Positions are in ``[0, 1)``; the distance between ``x`` and ``y`` is ``min(|x - y|, 1 - |x - y|)``.

Cut the circle at a point and unroll it: with ``F^-1``, ``G^-1`` the quantile functions of the two
measures extended to the real line (``G^-1(s + 1) = G^-1(s) + 1``),

    W_p^p = min_theta c(theta),   c(theta) = int_0^1 |F^-1(t) - G^-1(t + theta)|^p dt

(Delon, Salomon, Sobolevski, *Fast transport optimization for Monge costs on the circle*, 2010).
``c`` is convex; for discrete measures it is piecewise linear, with kinks where a level
``t = cG_j - theta`` of G crosses a level of F.

* ``p = 1``: exactly, by the level median (Hundrieser, Klatt, Munk, *The statistics of circular
  optimal transport*, 2022): ``W_1 = min_alpha int_0^1 |F(x) - G(x) - alpha| dx``, attained at the
  weighted median ``alpha`` of ``F - G`` (weights: the lengths of the arcs where it is constant).
* ``p > 1``: a bracketed search for the root of the right derivative ``c'(theta+)``, alternating
  secant and bisection steps. It stops when the bracket holds a single kink (then that kink is the
  minimiser, exactly) or when the bracket is a few ulps wide. The right derivative is a sum over
  the G levels: moving ``theta`` up moves mass at ``t = cG_j - theta`` from ``y_j`` to ``y_(j+1)``,
  so ``c'(theta+) = sum_j |F^-1(t_j) - y_(j+1)|^p - |F^-1(t_j) - y_j|^p`` (one searchsorted).
  At the optimal shift, G's quantile function on ``(0, 1]`` is that of a measure on the line (its
  atoms moved by whole turns, the atom cut by ``t = 0`` split in two), and ``W_p^p`` is the line
  cost of :func:`geom._ot1d.rows_cost` between the two.

Gradients flow to ``u``, ``v``, ``a`` and ``b``. For positions the optimal shift is held fixed
(envelope theorem). For weights it is not: the minimiser sits where ``F - G`` takes the median level
(``p = 1``), or at a kink where a level of G meets a level of F (``p > 1``), and it moves with those
levels; the gradient follows it (the median level's weight is the one that keeps the optimality
condition, the kink is ``cG_j - cF_i`` with autograd). The search runs in float64 without autograd; results have ``u``'s dtype.
"""

from __future__ import annotations

import numpy as np
import torch

from . import _ot1d

__all__ = ["circle_costs", "optimal_shift", "scaled_circle_costs"]

_MAX_STEPS = 200  # search steps; bisection alone needs ~60 in float64
_KINK_TOL = 64 * 2.0**-52  # kinks closer than this times max(N, M) count as one (rounding of levels)


def _sorted_levels(x: torch.Tensor, w: torch.Tensor):
    """Rows ``x (R, N)`` in [0, 1), weights ``w (R, N)`` -> sorted positions, their permutation, the
    sorted weights and the cumulative levels normalised to end at exactly 1 (all float64, autograd kept)."""
    _, perm = _ot1d.sort_rows(x.detach(), True)
    xs = x.gather(-1, perm)
    ws = w.gather(-1, perm)
    c = ws.cumsum(-1)
    return xs, perm, ws, c / c[..., -1:]


def _wrap(x: torch.Tensor) -> torch.Tensor:
    """Positions mod 1, in [0, 1) (a value that rounds to 1 becomes 0), float64, autograd kept."""
    x = x.double()
    y = x - x.detach().floor()
    return torch.where(y >= 1.0, y - 1.0, y)


def _pow(d: torch.Tensor, p: float) -> torch.Tensor:
    return d * d if p == 2.0 else d.abs().pow(p)


def _slope(theta, xs, cF, ys, ynext, cG, p: float):
    """Right derivative ``c'(theta+)`` ``(R,)`` and the unwrapped F-level counts ``(R, M)`` at ``t_j = cG_j - theta``.

    The count of extended F levels ``cF_i + m`` below ``t`` is ``i + N m``; ``F^-1(t) = x_i + m``.
    """
    N = xs.shape[-1]
    t = cG - theta[:, None]  # (R, M) where the G levels sit in t
    m = torch.ceil(t) - 1.0
    r = t - m  # (0, 1]
    i = _searchsorted(cF, r).clamp_(max=N - 1)
    xq = xs.gather(-1, i) + m  # F^-1(t_j), left-continuous
    d = (_pow(xq - ynext, p) - _pow(xq - ys, p)).sum(-1)
    return d, i + N * m.long()


def _searchsorted(levels: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``torch.searchsorted(levels, q)`` row by row; on CPU numpy's, which is ~3x faster for the
    nearly sorted queries here (a sorted run rotated once), on the thread pool of :mod:`geom._ot1d`."""
    if levels.device.type != "cpu":
        return torch.searchsorted(levels, q.contiguous())
    ln, qn = levels.numpy(), q.contiguous().numpy()
    out = np.empty(qn.shape, np.int64)

    def job(k: int) -> None:
        out[k] = np.searchsorted(ln[k], qn[k])

    _ot1d.run_tasks(job, ((k,) for k in range(qn.shape[0])), qn.size)
    return torch.from_numpy(out)


def _level(idx: torch.Tensor, cF: torch.Tensor) -> torch.Tensor:
    """Extended F level ``cF_(idx mod N) + idx div N``."""
    N = cF.shape[-1]
    q = torch.div(idx, N, rounding_mode="floor")
    return cF.gather(-1, idx - q * N) + q


def optimal_shift(xs, cF, ys, cG, p: float):
    """The minimiser ``theta (R,)`` of ``c(theta)`` for sorted float64 rows (no autograd).

    Also returns the final bracket ``lo, hi (R,)`` and ``isolated (R,)``: True where ``theta`` is the
    only kink in ``(lo, hi]`` (so ``c`` is linear on ``[lo, theta]`` and on ``[theta, hi]``).

    Args:
        xs, ys: ``(R, N)``, ``(R, M)`` sorted positions in [0, 1).
        cF, cG: their cumulative levels, ending at 1.
        p: order, ``p > 1``.
    """
    R = xs.shape[0]
    ynext = torch.cat([ys[:, 1:], ys[:, :1] + 1.0], -1)  # value after each G level
    # The optimal plan moves mass by at most 1/2, which puts the optimal shift in [-2, 2].
    lo, hi = xs.new_full((R,), -2.0), xs.new_full((R,), 2.0)
    dlo, ilo = _slope(lo, xs, cF, ys, ynext, cG, p)
    dhi, ihi = _slope(hi, xs, cF, ys, ynext, cG, p)
    theta = hi.clone()
    isolated = torch.zeros(R, dtype=torch.bool)
    done = dhi <= 0  # c'(2+) <= 0 only on a flat bottom: 2 is a minimiser
    first = dlo >= 0  # c'(-2+) >= 0: -2 is the smallest minimiser
    theta[first & ~done] = -2.0
    done |= first
    step = 0
    rows = (~done).nonzero()[:, 0]
    # Illinois variant of the secant method: when the same end moves twice, halve the other end's
    # derivative in the secant formula; bisect when two steps did not halve the bracket.
    flo, fhi = dlo.clone(), dhi.clone()
    moved = torch.zeros(R, dtype=torch.long)  # +1: hi moved last, -1: lo moved last
    width2 = torch.full((R,), 64.0, dtype=xs.dtype)  # bracket width two steps ago (none yet)
    width1 = torch.full((R,), 64.0, dtype=xs.dtype)
    tol = _KINK_TOL * max(xs.shape[-1], ys.shape[-1])  # rounding of the cumulative levels
    while rows.numel():
        xs_, cF_, ys_, yn_, cG_ = (t[rows] for t in (xs, cF, ys, ynext, cG))
        lo_, hi_, dlo_, dhi_, flo_, fhi_ = (t[rows] for t in (lo, hi, dlo, dhi, flo, fhi))
        width = hi_ - lo_
        frac = (-flo_ / (fhi_ - flo_)).clamp(1.0 / 1024, 1023.0 / 1024)
        frac = torch.where(width > 0.5 * width2[rows], 0.5, frac)
        mid = lo_ + frac * width
        dm, im = _slope(mid, xs_, cF_, ys_, yn_, cG_, p)
        right = dm >= 0  # the smallest minimiser is <= mid
        last = moved[rows]
        flo_ = torch.where(right, torch.where(last == 1, 0.5 * flo_, flo_), dm)
        fhi_ = torch.where(right, dm, torch.where(last == -1, 0.5 * fhi_, fhi_))
        moved[rows] = torch.where(right, 1, -1)
        lo_, dlo_ = torch.where(right, lo_, mid), torch.where(right, dlo_, dm)
        hi_, dhi_ = torch.where(right, mid, hi_), torch.where(right, dm, dhi_)
        ilo_, ihi_ = ilo[rows], ihi[rows]
        ilo_ = torch.where(right[:, None], ilo_, im)
        ihi_ = torch.where(right[:, None], im, ihi_)
        lo[rows], hi[rows], dlo[rows], dhi[rows], flo[rows], fhi[rows] = lo_, hi_, dlo_, dhi_, flo_, fhi_
        ilo[rows], ihi[rows] = ilo_, ihi_
        width2[rows], width1[rows] = width1[rows], hi_ - lo_
        # Kinks in (lo, hi]: G level j crosses the F levels ilo_j - 1, ..., ihi_j on the way.
        crossing = ilo_ > ihi_  # (r, M)
        kink = cG_ - _level(ihi_, cF_)  # the crossing nearest to hi
        inf = torch.full_like(kink, float("inf"))
        k_max = torch.where(crossing, kink, -inf).amax(-1)
        k_min = torch.where(crossing, kink, inf).amin(-1)
        single = ((ilo_ - ihi_).amax(-1) <= 1) & (k_max - k_min <= tol)
        flat = dhi_ == 0  # hi is a minimiser
        narrow = (hi_ - lo_) <= tol
        fin = single | flat | narrow | ~crossing.any(-1)
        iso = single & ~flat
        theta[rows] = torch.where(iso, k_max.clamp(lo_, hi_), hi_)
        isolated[rows] = iso & (k_max > lo_) & (k_max < hi_)
        rows = rows[~fin]
        step += 1
        if step >= _MAX_STEPS:
            break
    return theta, lo, hi, isolated


def _line_measure(ys, ws, cG, theta):
    """G's quantile function ``t -> G^-1(t + theta)`` on ``(0, 1]`` as a measure on the line.

    Atom ``j`` (position ``y_j + k_j``) holds the piece ``(e_j - w_j, e_j]`` with ``e_j = cG_j + k_j -
    theta`` in ``(0, 1]``; the piece cut by ``t = 0`` keeps ``min(w_j, e_j)`` and its rest wraps to the
    end as an extra atom ``y_j + k_j + 1``. Returns positions ``(R, M + 1)``, weights ``(R, M + 1)``.
    """
    k = torch.floor(theta.detach()[:, None] - cG.detach()) + 1.0  # (R, M) whole turns
    e = cG + k - theta[:, None]  # piece ends, (0, 1]
    pos = ys + k
    mass = torch.minimum(ws, e)
    rest = ws - e  # > 0 only for the piece cut by t = 0
    s = rest.detach().argmax(-1, keepdim=True)  # (R, 1)
    pos = torch.cat([pos, pos.gather(-1, s) + 1.0], -1)
    mass = torch.cat([mass, rest.gather(-1, s).clamp_min(0.0)], -1)
    return pos, mass


def _w1(x, y, a, b):
    """``W_1`` on the circle by the level median, rows ``x (R, N)``, ``y (R, M)``, weights alike."""
    z = torch.cat([x, y], -1)  # (R, K)
    w = torch.cat([a, -b], -1)
    _, perm = _ot1d.sort_rows(z.detach(), True)
    zs, diff = z.gather(-1, perm), w.gather(-1, perm).cumsum(-1)  # F - G on [z_k, z_(k+1))
    arc = torch.cat([zs[:, 1:] - zs[:, :-1], zs[:, :1] + 1.0 - zs[:, -1:]], -1)  # the last arc wraps
    with torch.no_grad():  # weighted median of F - G, arcs as weights
        dsort, order = torch.sort(diff, -1)
        cum = arc.gather(-1, order).cumsum(-1)
        at = torch.searchsorted(cum, 0.5 * cum[:, -1:]).clamp_(max=cum.shape[-1] - 1)
        alpha = dsort.gather(-1, at)  # (R, 1)
        # d W / d diff_j = arc_j s_j with s_j = sign(diff_j - alpha), except on the median level,
        # which follows the perturbation: there s takes the value that keeps sum_j arc_j s_j = 0.
        s = torch.sign(diff - alpha)
        at = (diff - alpha).abs() <= 1e-12
        pull = (arc * s).sum(-1, keepdim=True) / (arc * at).sum(-1, keepdim=True).clamp_min(1e-300)
        s = torch.where(at, -pull, s)
    return (arc * s * (diff - alpha)).sum(-1)


def circle_costs(u: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: float) -> torch.Tensor:
    """``(B, L)`` ``W_p^p`` on the circle, ``u``'s dtype: :func:`scaled_circle_costs` multiplied out
    (a ValueError naming ``p`` where that leaves the dtype's range).

    >>> import torch
    >>> u, v = torch.tensor([[[0.05]]]), torch.tensor([[[0.95]]])
    >>> w = torch.ones(1, 1)
    >>> round(circle_costs(u, v, w, w, 2).item(), 6)  # the Diracs are 0.1 apart across 0
    0.01
    """
    return _ot1d.absolute_costs(*scaled_circle_costs(u, v, a, b, p), p)


def scaled_circle_costs(u: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: float):
    """``W_p^p`` on the circle R/Z of length 1 between rows of positions, differentiable.

    Args:
        u: ``(B, L, N)`` positions in [0, 1) (other values are taken mod 1).
        v: ``(B, L, M)`` positions.
        a, b: ``(B, N)``, ``(B, M)`` non-negative weights summing to 1 (shared by the L rows of an item;
            zero weights pad).
        p: order, ``p >= 1``.

    Returns:
        ``(costs, scale)``, both ``(B, L)``: ``W_p^p = scale^p costs``, costs in ``u``'s dtype and
        differentiable, scale float64 and constant (as :class:`geom._ot1d.LinearSlicedCost` returns
        them; scale 1 for ``p = 1``). POT's ``ot.wasserstein_circle`` returns ``W_p^p``, not ``W_p``.
        The search runs in float64: a ``W_p^p`` outside float64's range (distances far below 1 at
        large ``p``) raises a ValueError naming ``p``.

    >>> import torch
    >>> u, v = torch.tensor([[[0.05]]]), torch.tensor([[[0.95]]])
    >>> w = torch.ones(1, 1)
    >>> cost, scale = scaled_circle_costs(u, v, w, w, 2)
    >>> round((cost * scale**2).item(), 6)  # the Diracs are 0.1 apart across 0
    0.01
    """
    B, L, N = u.shape
    M = v.shape[-1]
    x, y = _wrap(u).reshape(B * L, N), _wrap(v).reshape(B * L, M)
    a_ = a.double()[:, None, :].expand(B, L, N).reshape(B * L, N)
    b_ = b.double()[:, None, :].expand(B, L, M).reshape(B * L, M)
    if p == 1.0:
        cost = _w1(x, y, a_, b_).reshape(B, L)
        return cost.to(u.dtype), torch.ones_like(cost.detach())
    xs, _, _, cF = _sorted_levels(x, a_)
    ys, _, wy, cG = _sorted_levels(y, b_)
    ynext = torch.cat([ys[:, 1:], ys[:, :1] + 1.0], -1)
    with torch.no_grad():
        theta, lo, hi, iso = optimal_shift(xs, cF, ys, cG, float(p))
    # At an isolated kink c is the larger of two lines (the pieces on either side); W_p^p is their
    # intersection, computed from both sides so that gradients follow the kink as the data move.
    # Elsewhere theta is held fixed (envelope theorem).
    t_lo = torch.where(iso, 0.5 * (lo + theta), theta)
    t_hi = torch.where(iso, 0.5 * (theta + hi), theta)
    R = B * L
    pos, mass = _line_measure(torch.cat([ys, ys]), torch.cat([wy, wy]), torch.cat([cG, cG]), torch.cat([t_lo, t_hi]))
    c2, s2 = _ot1d.ProjectedCost.apply(torch.cat([x, x])[:, None, :], pos[:, None, :], torch.cat([a_, a_]), mass,
                                       float(p), False)
    c2 = c2[:, 0] * s2[:, 0] ** p  # (2R,) float64 W_p^p on both sides of the shift
    c_lo, c_hi = c2[:R], c2[R:]
    cost = c_lo
    if bool(iso.any()):
        s_lo = _slope(t_lo, xs, cF.detach(), ys, ynext, cG.detach(), float(p))[0]  # < 0
        s_hi = _slope(t_hi, xs, cF.detach(), ys, ynext, cG.detach(), float(p))[0]  # > 0
        gap = torch.where(iso, s_lo - s_hi, -1.0)
        t_x = (c_hi - c_lo + s_lo * t_lo - s_hi * t_hi) / gap
        cost = torch.where(iso, c_lo + s_lo * (t_x - t_lo), c_lo)
    cost = cost.reshape(B, L)
    if bool((s2 != 1).any()) or not bool(torch.isfinite(cost.detach()).all()):  # outside float64's safe range
        raise ValueError(f"p: W_p^p on the circle leaves float64's range at p = {p:g} (distances far below "
                         "1 raised to a large power); choose a smaller p")
    scale = torch.where(cost.detach() > 0, cost.detach().clamp_min(1e-300) ** (1.0 / p), 1.0)  # W_p per slice
    return (cost / scale**p).to(u.dtype), scale
