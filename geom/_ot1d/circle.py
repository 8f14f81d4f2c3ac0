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
  cost between the two (:func:`_line_cost`), taken at the shift itself.

Every ``p`` stays in range: the derivatives are kept as ``mantissa * top^p`` (``top`` the largest
distance in the sum) and compared in logarithms, the costs as ``scale^p * cost``. At large ``p``
``W_p^p`` at a kink lies orders of magnitude below the cost of the pieces beside it, so it is never
extrapolated from them, and the piece of rounding-level mass that the kink's two coinciding levels
leave carries no mass.

Gradients flow to ``u``, ``v``, ``a`` and ``b``. For positions the optimal shift is held fixed
(envelope theorem). For weights it is not: the minimiser sits where ``F - G`` takes the median level
(``p = 1``), or at a kink where a level of G meets a level of F (``p > 1``), and it moves with those
levels; the gradient follows it (the median level's weight is the one that keeps the optimality
condition, the kink is ``cG_j - cF_i`` with autograd). The search runs in float64 without autograd; results have ``u``'s dtype.
"""

from __future__ import annotations

import numpy as np
import torch

from .line import absolute_costs
from .pool import run_tasks, sort_rows

__all__ = ["circle_costs", "optimal_shift", "scaled_circle_costs"]

_MAX_STEPS = 200  # search steps; bisection alone needs ~60 in float64
_KINK_TOL = 64 * 2.0**-52  # kinks closer than this times max(N, M) count as one (rounding of levels)


def _sorted_levels(x: torch.Tensor, w: torch.Tensor):
    """Rows ``x (R, N)`` in [0, 1), weights ``w (R, N)`` -> sorted positions, their permutation, the
    sorted weights and the cumulative levels, both normalised by the same total so that the levels
    end at exactly 1 and the first level is the first weight (all float64, autograd kept)."""
    _, perm = sort_rows(x.detach(), True)
    xs = x.gather(-1, perm)
    ws = w.gather(-1, perm)
    c = ws.cumsum(-1)
    total = c[..., -1:]
    return xs, perm, ws / total, c / total


def _wrap(x: torch.Tensor) -> torch.Tensor:
    """Positions mod 1, in [0, 1) (a value that rounds to 1 becomes 0), float64, autograd kept."""
    x = x.double()
    y = x - x.detach().floor()
    return torch.where(y >= 1.0, y - 1.0, y)


def _pow(d: torch.Tensor, p: float) -> torch.Tensor:
    return d * d if p == 2.0 else d.abs().pow(p)


def _slope(theta, xs, cF, ys, ynext, cG, p: float):
    """Right derivative ``c'(theta+) = top^p d`` at ``t_j = cG_j - theta``: ``d (R,)``, ``log top (R,)``
    (``top`` the largest distance in the sum, so that no ``p`` overflows or underflows ``d``) and the
    unwrapped F-level counts ``(R, M)``.

    The count of extended F levels ``cF_i + m`` below ``t`` is ``i + N m``; ``F^-1(t) = x_i + m``.
    """
    N = xs.shape[-1]
    t = cG - theta[:, None]  # (R, M) where the G levels sit in t
    m = torch.ceil(t) - 1.0
    r = t - m  # (0, 1]
    i = _searchsorted(cF, r).clamp_(max=N - 1)
    xq = xs.gather(-1, i) + m  # F^-1(t_j), left-continuous
    up, down = (xq - ynext).abs(), (xq - ys).abs()  # (R, M)
    top = torch.maximum(up, down).detach().amax(-1, keepdim=True)  # (R, 1)
    top = torch.where(top > 0, top, 1.0)
    d = (_pow(up / top, p) - _pow(down / top, p)).sum(-1)
    return d, top[:, 0].log(), i + N * m.long()


def _searchsorted(levels: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``torch.searchsorted(levels, q)`` row by row; on CPU numpy's, which is ~3x faster for the
    nearly sorted queries here (a sorted run rotated once), on the thread pool of :mod:`geom._ot1d`."""
    if levels.device.type != "cpu":
        return torch.searchsorted(levels, q.contiguous())
    ln, qn = levels.numpy(), q.contiguous().numpy()
    out = np.empty(qn.shape, np.int64)

    def job(k: int) -> None:
        out[k] = np.searchsorted(ln[k], qn[k])

    run_tasks(job, ((k,) for k in range(qn.shape[0])), qn.size)
    return torch.from_numpy(out)


def _level(idx: torch.Tensor, cF: torch.Tensor) -> torch.Tensor:
    """Extended F level ``cF_(idx mod N) + idx div N``."""
    N = cF.shape[-1]
    q = torch.div(idx, N, rounding_mode="floor")
    return cF.gather(-1, idx - q * N) + q


def optimal_shift(xs, cF, ys, cG, p: float):
    """The minimiser ``theta (R,)`` of ``c(theta)`` for sorted float64 rows (no autograd).

    Also returns ``kinked (R,)``: True where ``theta`` is a kink (the only one in the final bracket,
    or one of a cluster narrower than the rounding of the levels), and there the kink's G level
    ``j (R,)`` and extended F level ``i (R,)``, with ``theta = cG_j - (cF_(i mod N) + i div N)``
    (0 elsewhere): the shift moves with those levels.

    Args:
        xs, ys: ``(R, N)``, ``(R, M)`` sorted positions in [0, 1).
        cF, cG: their cumulative levels, ending at 1.
        p: order, ``p > 1``.
    """
    R = xs.shape[0]
    ynext = torch.cat([ys[:, 1:], ys[:, :1] + 1.0], -1)  # value after each G level
    # The optimal plan moves mass by at most 1/2, which puts the optimal shift in [-2, 2].
    lo, hi = xs.new_full((R,), -2.0), xs.new_full((R,), 2.0)
    dlo, llo, ilo = _slope(lo, xs, cF, ys, ynext, cG, p)  # c'(lo+) = exp(p llo) dlo
    dhi, lhi, ihi = _slope(hi, xs, cF, ys, ynext, cG, p)
    theta = hi.clone()
    kinked = torch.zeros(R, dtype=torch.bool)
    kink_j, kink_i = torch.zeros(R, dtype=torch.long), torch.zeros(R, dtype=torch.long)
    done = dhi <= 0  # c'(2+) <= 0 only on a flat bottom: 2 is a minimiser
    first = dlo >= 0  # c'(-2+) >= 0: -2 is the smallest minimiser
    theta[first & ~done] = -2.0
    done |= first
    step = 0
    rows = (~done).nonzero()[:, 0]
    # Illinois variant of the secant method: when the same end moves twice, halve the other end's
    # derivative in the secant formula; bisect when two steps did not halve the bracket.
    flo, fhi = dlo.clone(), dhi.clone()  # in units of exp(p llo), exp(p lhi)
    moved = torch.zeros(R, dtype=torch.long)  # +1: hi moved last, -1: lo moved last
    width2 = torch.full((R,), 64.0, dtype=xs.dtype)  # bracket width two steps ago (none yet)
    width1 = torch.full((R,), 64.0, dtype=xs.dtype)
    tol = _KINK_TOL * max(xs.shape[-1], ys.shape[-1])  # rounding of the cumulative levels
    while rows.numel():
        xs_, cF_, ys_, yn_, cG_ = (t[rows] for t in (xs, cF, ys, ynext, cG))
        lo_, hi_, dlo_, dhi_, flo_, fhi_ = (t[rows] for t in (lo, hi, dlo, dhi, flo, fhi))
        llo_, lhi_ = llo[rows], lhi[rows]
        width = hi_ - lo_
        # secant step -flo / (fhi - flo) = 1 / (1 + |fhi| / |flo|), the ratio taken in logarithms
        ratio = fhi_.abs().log() - flo_.abs().log() + p * (lhi_ - llo_)
        frac = torch.nan_to_num(torch.sigmoid(-ratio), nan=0.5).clamp(1.0 / 1024, 1023.0 / 1024)
        frac = torch.where(width > 0.5 * width2[rows], 0.5, frac)
        mid = lo_ + frac * width
        dm, lm, im = _slope(mid, xs_, cF_, ys_, yn_, cG_, p)
        right = dm >= 0  # the smallest minimiser is <= mid
        last = moved[rows]
        flo_ = torch.where(right, torch.where(last == 1, 0.5 * flo_, flo_), dm)
        fhi_ = torch.where(right, dm, torch.where(last == -1, 0.5 * fhi_, fhi_))
        moved[rows] = torch.where(right, 1, -1)
        lo_, dlo_, llo_ = torch.where(right, lo_, mid), torch.where(right, dlo_, dm), torch.where(right, llo_, lm)
        hi_, dhi_, lhi_ = torch.where(right, mid, hi_), torch.where(right, dm, dhi_), torch.where(right, lm, lhi_)
        llo[rows], lhi[rows] = llo_, lhi_
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
        k_max, j = torch.where(crossing, kink, -inf).max(-1)
        k_min = torch.where(crossing, kink, inf).amin(-1)
        single = ((ilo_ - ihi_).amax(-1) <= 1) & (k_max - k_min <= tol)
        flat = dhi_ == 0  # hi is a minimiser
        narrow = (hi_ - lo_) <= tol
        fin = single | flat | narrow | ~crossing.any(-1)
        iso = single & ~flat
        at = (iso | (narrow & ~flat)) & crossing.any(-1) & (k_max >= lo_) & (k_max <= hi_)  # a kink ends it
        theta[rows] = torch.where(at, k_max, hi_)
        kinked[rows] = at
        kink_j[rows], kink_i[rows] = j, ihi_.gather(-1, j[:, None])[:, 0]
        rows = rows[~fin]
        step += 1
        if step >= _MAX_STEPS:
            break
    return theta, kinked, kink_j, kink_i


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
    _, perm = sort_rows(z.detach(), True)
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
    return absolute_costs(*scaled_circle_costs(u, v, a, b, p), p)


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
        differentiable, scale float64 and constant (as :class:`geom.LinearSlicedCost` returns
        them; scale 1 for ``p = 1``). POT's ``ot.wasserstein_circle`` returns ``W_p^p``, not ``W_p``.
        The search runs in float64, on derivatives and costs kept as ``mantissa * exp(p log scale)``,
        so that every ``p`` stays in range.

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
    a_ = a_ / a_.sum(-1, keepdim=True)  # normalised as _sorted_levels does G's: equal measures, equal levels
    xs, _, _, cF = _sorted_levels(x, a_)
    ys, _, wy, cG = _sorted_levels(y, b_)
    with torch.no_grad():
        theta, kinked, j, i = optimal_shift(xs, cF, ys, cG, float(p))
    # At a kink the shift is where a level of G meets a level of F, and it moves with them: taken
    # with autograd, the weights' gradients follow it (W_p^p = c(theta*(w), w) along the kink).
    theta = torch.where(kinked, cG.gather(-1, j[:, None])[:, 0] - _level(i[:, None], cF)[:, 0], theta)
    # W_p^p is the line cost at the shift itself (held fixed: the envelope theorem gives the gradients
    # in the positions), never extrapolated from the pieces beside it: at large p those lie orders of
    # magnitude above it.
    pos, mass = _line_measure(ys, wy, cG, theta)
    cost, scale = _line_cost(x, a_, pos, mass, float(p))  # (R,): W_p^p = scale^p cost
    # W_p^p = scale^p cost with cost in float64's range: moved into the scale, so that it is 1 (or 0)
    # and survives the cast to u's dtype
    unit = torch.where(cost.detach() > 0, cost.detach(), 1.0)
    cost, scale = (cost / unit).reshape(B, L), (scale * unit ** (1.0 / p)).reshape(B, L)
    return cost.to(u.dtype), scale


def _line_cost(x, a, y, b, p: float):
    """``W_p^p = scale^p cost`` between rows of measures on the line, ``x, a (R, N)`` and ``y, b (R, M)``
    (weights summing to the same total), as ``(cost, scale)`` ``(R,)``: differentiable (autograd)
    in the positions and the weights, ``scale`` the largest gap of a piece (float64, constant).

    Pieces of rounding-level mass carry none: at a kink two levels coincide (the shift is defined by
    that), and the few ulps their difference rounds to would, at large ``p``, hold a gap far above
    ``W_p`` and outweigh everything else.
    """
    R, N = x.shape
    px, py = x.detach().argsort(-1), y.detach().argsort(-1)
    xs, ys = x.gather(-1, px), y.gather(-1, py)  # (R, N), (R, M)
    ca, cb = a.gather(-1, px).cumsum(-1), b.gather(-1, py).cumsum(-1)
    ca, cb = ca / ca[:, -1:], cb / cb[:, -1:]  # levels, ending at 1
    t, _ = torch.sort(torch.cat([ca, cb], -1), -1)  # (R, N + M) breakpoints
    dt = torch.diff(t, dim=-1, prepend=t.new_zeros(R, 1))  # mass of each piece
    i = torch.searchsorted(ca.detach(), t.detach()).clamp_(max=N - 1)  # x atom holding each piece
    j = torch.searchsorted(cb.detach(), t.detach()).clamp_(max=ys.shape[-1] - 1)
    keep = dt.detach() > 8 * 2.0**-52 * t.shape[-1]
    gap = torch.where(keep, (xs.gather(-1, i) - ys.gather(-1, j)).abs(), 0.0)  # (R, N + M)
    top = gap.detach().amax(-1, keepdim=True)
    top = torch.where(top > 0, top, 1.0)
    cost = (torch.where(keep, dt, 0.0) * _pow(gap / top, p)).sum(-1)
    return cost, top[:, 0]
