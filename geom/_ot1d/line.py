"""Costs on the line: exact optimal transport between 1-D measures, row by row.

For two measures on the line, ``W_p^p = int_0^1 |F^-1(t) - G^-1(t)|^p dt`` with ``F^-1, G^-1`` the
quantile functions. Per row (one batch item, one direction) we sort both samples and

* fast path (same size, uniform weights): pair the k-th smallest with the k-th smallest;
* general path (weights, N != M, zero-weight padding): merge the two cumulative-weight sequences;
  between consecutive breakpoints both quantile functions are constant, so the integral is a sum.

Gradients are by-products of the sort (the matching), so they are computed in the same pass:
``d cost / d u_i = p |u_i - v_match|^(p-1) sign(.) * mass_i``.

Sorting is the whole cost. On CPU numpy's vectorised sort is ~10x faster than torch's, so the
linear projections of a point cloud go through :func:`_cpu_chunk`: numpy tasks on a thread pool,
each projecting, sorting and pairing or merging a few directions with reused work arrays. When the
permutation is needed, each float32 value and its index are packed into one float64 key and sorted
together (about half the cost of ``argsort``); the quantile levels are merged by one compiled walk
per row (:mod:`geom._ot1d.kernels`), linear in ``N + M``: no third sort. Uniform rows are paired, and
weighted rows merged, by one compiled pass straight from the sorted keys, which writes the cost and
the gradient at each atom's place: the keys are never unpacked into sorted values and a permutation
(except where weight gradients are wanted: those come in sorted order). On CUDA, and for
non-linear projections, :func:`rows_cost` in torch.
:class:`LinearSlicedCost` walks through directions in chunks, so memory stays bounded whatever
the number of directions.
"""

from __future__ import annotations

import numpy as np
import torch

from . import kernels, pool
from .pool import _TASK_ELEMENTS, _WORKERS, _argsort_inplace, _project_blocks, _Workspace, run_tasks, sort_rows

__all__ = ["LinearSlicedCost", "ProjectedCost", "absolute_costs", "centred", "direction_chunks", "rows_cost"]

CHUNK_BYTES = 1 << 27  # working memory of one chunk of directions (~128 MiB)
STORE_BYTES = 1 << 29  # keep per-slice gradients for backward up to this size, else recompute


def _pow_and_slope(d: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``|d|^p`` and its derivative ``p |d|^(p-1) sign(d)`` (0 at d = 0 for p = 1)."""
    if p == 2.0:
        return d * d, 2.0 * d
    if p == 1.0:
        return d.abs(), d.sign()
    ad = d.abs()
    return ad.pow(p), p * ad.pow(p - 1.0) * d.sign()


def _level_grad(G: torch.Tensor, levels: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. sorted weights from ``G = d cost / d level`` of normalised cumulative levels.

    ``level_i = S_i / S_N`` with ``S_i`` the running sum of the sorted weights, so
    ``d cost / d w_k = (sum_{i >= k} G_i - sum_i G_i level_i) / S_N``.
    """
    suffix = G.flip(-1).cumsum(-1).flip(-1)
    return (suffix - (G * levels).sum(-1, keepdim=True)) / total


def rows_cost(u, v, a, b, p: float, uniform: bool, need=(False, False, False, False)):
    """W_p^p between 1-D measures row by row, in torch (any device).

    Args:
        u: ``(B, L, N)`` samples of the first measures (one row per batch item and direction).
        v: ``(B, L, M)`` samples of the second measures.
        a, b: ``(B, N)``, ``(B, M)`` weights, rows summing to 1 (shared by the L rows of an item).
        uniform: both weight sets are uniform and N == M (the fast path; no weight gradients).
        need: which per-row gradients to return, w.r.t. ``(u, v, a, b)``.

    Returns:
        cost ``(B, L)``, scale ``(B, L)`` float64 with ``W_p^p = scale^p cost`` (1 where the plain
        sum is safe, else the row's largest gap, as in :func:`_pair_uniform`), and a tuple
        ``(gu (B, L, N), gv (B, L, M), ga (B, L, N), gb (B, L, M))`` of the gradients of cost, with
        None where not needed.
    """
    need_gu, need_gv, need_ga, need_gb = need
    xs, px = sort_rows(u, need_gu or not uniform)  # (B, L, N)
    ys, py = sort_rows(v, need_gv or not uniform)  # (B, L, M)
    B, L, N = xs.shape
    M = ys.shape[-1]
    if uniform:
        def run(sc):
            d = xs - ys
            cost_k, slope = _pow_and_slope(d if sc is None else d / sc, p)  # (B, L, N)
            return cost_k.mean(-1), slope / (N if sc is None else N * sc), d.abs().amax(-1)

        cost, g, gap = run(None)
        cost, scale, g = _rescue(run, cost, g, gap, N)
        gu = torch.empty_like(g).scatter_(-1, px, g) if need_gu else None
        gv = torch.empty_like(g).scatter_(-1, py, g.neg_()) if need_gv else None
        return cost, scale, (gu, gv, None, None)
    # General path: merge cumulative weights. Quantile levels live in float64 whatever the data.
    ca = a[:, None, :].expand(B, L, N).gather(-1, px).double().cumsum(-1)  # (B, L, N)
    cb = b[:, None, :].expand(B, L, M).gather(-1, py).double().cumsum(-1)  # (B, L, M)
    sa, sb = ca[..., -1:].clone(), cb[..., -1:].clone()
    ca /= sa
    cb /= sb
    t, _ = sort_rows(torch.cat([ca, cb], -1), False)  # (B, L, N + M) breakpoints
    dt = torch.diff(t, dim=-1, prepend=t.new_zeros(B, L, 1))  # mass of each piece
    i = torch.searchsorted(ca, t).clamp_(max=N - 1)  # x atom holding each piece
    j = torch.searchsorted(cb, t).clamp_(max=M - 1)  # y atom holding each piece
    gaps = torch.where(dt > 0, xs.gather(-1, i) - ys.gather(-1, j), 0)  # (B, L, N + M); no mass, no cost

    def pw(d, sc):
        return _pow_and_slope(d if sc is None else d / sc, p)

    def run(sc):
        cost_k, slope = pw(gaps, sc)
        g = (dt * slope).to(u.dtype)  # (B, L, N + M)
        return (dt * cost_k).sum(-1).to(u.dtype), g if sc is None else g / sc, gaps.abs().amax(-1)

    cost, g, gap = run(None)
    cost, scale, g = _rescue(run, cost, g, gap, N + M)
    sc = None if bool((scale == 1).all()) else scale[..., None].to(u.dtype)
    gu = gv = ga = gb = None
    if need_gu:
        gu = torch.empty_like(xs).scatter_(-1, px, torch.zeros_like(xs).scatter_add_(-1, i, g))
    if need_gv:
        gv = torch.empty_like(ys).scatter_(-1, py, torch.zeros_like(ys).scatter_add_(-1, j, g.neg_()))
    # Moving a level moves mass between the pieces on either side of it: d cost / d level is the
    # cost of the piece below minus that of the piece above (x atom k -> k + 1 at x levels).
    if need_ga:
        jk = ys.gather(-1, torch.searchsorted(cb, ca).clamp_(max=M - 1))  # y atom at each x level
        G = torch.zeros_like(ca)
        G[..., :-1] = (pw(xs - jk, sc)[0] - pw(xs.roll(-1, -1) - jk, sc)[0])[..., :-1]
        ga = torch.empty_like(xs).scatter_(-1, px, _level_grad(G, ca, sa).to(u.dtype))
    if need_gb:
        ik = xs.gather(-1, torch.searchsorted(ca, cb).clamp_(max=N - 1))  # x atom at each y level
        G = torch.zeros_like(cb)
        G[..., :-1] = (pw(ik - ys, sc)[0] - pw(ik - ys.roll(-1, -1), sc)[0])[..., :-1]
        gb = torch.empty_like(ys).scatter_(-1, py, _level_grad(G, cb, sb).to(u.dtype))
    return cost, scale, (gu, gv, ga, gb)


def _rescue(run, cost, g, gap, n: int):
    """``(cost, scale, g)`` of :func:`rows_cost`: rows whose plain cost is not safe (:func:`_safe`)
    are computed again by ``run(scale)`` with their differences divided by their largest gap."""
    fi = torch.finfo(cost.dtype)
    safe = torch.isfinite(cost) & (cost >= n * fi.tiny / fi.eps)
    scale = torch.ones(cost.shape, dtype=torch.float64, device=cost.device)
    if bool(safe.all()):
        return cost, scale, g
    scale = torch.where(safe | (gap == 0), 1.0, gap.double())
    cost, g, _ = run(scale[..., None].to(cost.dtype))
    return cost, scale, g


def absolute_costs(costs: torch.Tensor, scale: torch.Tensor, p: float) -> torch.Tensor:
    """``costs * scale^p`` in ``costs``' dtype, or a ValueError naming ``p`` where that number
    overflows, or underflows below the dtype's normal range."""
    out = costs.double() * scale.double() ** p
    fi = torch.finfo(costs.dtype)
    bad = ~(out.detach().abs() <= fi.max) | ((out.detach() < fi.tiny) & (costs.detach() > 0))  # NaN too
    if bool(bad.any()):
        k = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"p: the per-slice W_p^p at index {k} is {out[k].item():.3e}, outside the range of "
                         f"{costs.dtype} at p = {p:g}; read the scaled costs and their scale instead")
    return out.to(costs.dtype)


def direction_chunks(L: int, B: int, n_total: int, bytes_per_entry: int = 64, at_least: int = 1):
    """Ranges ``(l0, l1)`` of directions whose working memory stays near :data:`CHUNK_BYTES`, and of at
    least ``at_least`` directions (the sort pool's threads: a chunk of one direction and one item would
    run on one thread; N = M = 1e7 with L = 64 took 4.3x the one-thread sort floor so)."""
    step = max(at_least, 1, min(L, CHUNK_BYTES // max(1, B * n_total * bytes_per_entry)))
    return [(l0, min(L, l0 + step)) for l0 in range(0, L, step)]


def _safe(cost: np.ndarray, n: int, dtype) -> np.ndarray:
    """Rows whose cost ``mean |d|^p`` was computed without overflow and without losing digits to
    underflow: within ``dtype``'s range (a cost summed in float64 from float32 gaps may exceed it),
    and at least ``n tiny / eps`` (the most that ``n`` underflowed terms lose is then one ulp of the
    cost). A zero cost is not safe: every term may have underflowed."""
    fi = np.finfo(dtype)
    return (cost <= float(fi.max)) & (cost >= n * float(fi.tiny) / float(fi.eps))  # False for NaN


def _sorted_side(w: np.ndarray, order: bool, name: str, ws: _Workspace, packed: bool = True):
    """Sort the rows of ``w`` for :func:`kernels.pair_rows` and :func:`kernels.merge_rows`: ``(rows,
    bits, perm)``. Where the atoms' ``order`` is not needed the values are sorted in place; float32 rows
    become sorted packed keys (values and order in one float64 sort, never unpacked) unless ``packed`` is
    False; other rows are argsorted."""
    if not order:
        w.sort(axis=-1)
        return w, None, None
    if packed and w.dtype == np.float32 and w.shape[-1] <= 1 << kernels.INDEX_BITS:
        keys = kernels.sorted_keys(w, ws.get("keys" + name, w.shape, np.float64))
        return keys, keys.view(np.int64), None
    perm = ws.get("p" + name, w.shape, np.int64)
    _argsort_inplace(w, perm, ws)
    return w, None, perm


def _pair_uniform(u, v, p: float, cost, gu, gv, ws: _Workspace) -> np.ndarray:
    """Uniform 1-D transport between the rows of ``u`` and ``v`` (equal lengths, sorted here, in place):
    writes ``cost (r,)`` (``W_p^p = scale^p cost``) and, where ``gu`` / ``gv`` are arrays rather than
    None, the gradients of the cost in the unsorted values; returns ``scale (r,)``.

    Sorting and one compiled pass (:func:`kernels.pair_rows`): the k-th atom goes to the k-th. The scale
    is 1 where ``mean |d|^p`` is safe in the data's dtype (:func:`_safe`); elsewhere (large or small
    ``p``, huge or tiny gaps) the row is paired again with its gaps divided by the largest.
    """
    r, n = u.shape
    xs, xb, px = _sorted_side(u, gu is not None, "u", ws)
    ys, yb, py = _sorted_side(v, gv is not None, "v", ws)
    scale, gap, single = np.ones(r), np.empty(r), u.dtype == np.float32
    kernels.pair_rows(xs, ys, xb, yb, px, py, single, float(p), scale, cost, gap, gu, gv)
    safe = _safe(cost, n, u.dtype)
    if not safe.all():
        bad = np.flatnonzero(~safe)
        scale[bad] = np.where(gap[bad] > 0, gap[bad], 1.0)
        xs, ys, px, py, gu_, gv_ = (None if t is None else np.ascontiguousarray(t[bad])
                                    for t in (xs, ys, px, py, gu, gv))
        xb, yb = (None if b is None else t.view(np.int64) for b, t in ((xb, xs), (yb, ys)))
        sub_cost = np.empty(bad.size, cost.dtype)
        kernels.pair_rows(xs, ys, xb, yb, px, py, single, float(p), np.ascontiguousarray(scale[bad]), sub_cost,
                          np.empty(bad.size), gu_, gv_)
        cost[bad] = sub_cost
        for out, g in ((gu, gu_), (gv, gv_)):
            if out is not None:
                out[bad] = g
    return scale


def _merge_quantiles(u, v, a, b, p: float, cost, grads, ws: _Workspace) -> np.ndarray:
    """Weighted 1-D transport between the rows of ``u (r, N)`` and ``v (r, M)`` (sorted here, in place)
    with the float64 weights ``a (N,)``, ``b (M,)`` (None: equal weights, see :func:`_merge_weights`):
    writes ``cost (r,)`` (``W_p^p = scale^p cost``) and, where ``grads = (gu, gv, ga, gb)`` holds arrays
    rather than None, the gradients of the cost in the values and the weights at each atom's place;
    returns ``scale (r,)``.

    Between consecutive breakpoints of the merged cumulative-weight levels both quantile functions are
    constant, so the integral is a sum over ``N + M`` pieces, walked in one compiled pass per row
    (:func:`kernels.merge_rows`): no third sort. float32 rows are read as sorted packed keys, as the
    uniform pairing reads them, unless weight gradients are wanted (those come in sorted order and go
    back through the permutations). The scale is as in :func:`_pair_uniform`: the largest gap of a piece
    with mass, where the plain sum is not safe.
    """
    r, N = u.shape
    M = v.shape[1]
    gu, gv, ga, gb = grads
    want_w = ga is not None or gb is not None
    single = u.dtype == np.float32
    packed = not want_w and max(N, M) <= 1 << kernels.INDEX_BITS  # both sides alike: the compiled variants
    xs, xb, px = _sorted_side(u, gu is not None or a is not None, "u", ws, packed)
    ys, yb, py = _sorted_side(v, gv is not None or b is not None, "v", ws, packed)
    gap, scale = np.empty(r), np.ones(r)
    gwx = ws.get("gwx", (r, N), np.float64) if want_w else ws.get("gw0", (0, 0), np.float64)
    gwy = ws.get("gwy", (r, M), np.float64) if want_w else gwx
    lx, ly = ws.get("lx", (N + 1,), np.float64), ws.get("ly", (M + 1,), np.float64)  # levels and a sentinel
    kernels.merge_rows(xs, ys, xb, yb, px, py, a, b, single, float(p), scale, want_w, cost, gap, gu, gv, gwx, gwy,
                       lx, ly)
    bad = ~_safe(cost, N + M, u.dtype)
    if bad.any():  # W_p^p = scale^p sum dt |d / scale|^p, scale the largest gap of a piece with mass
        rows = np.flatnonzero(bad)
        scale[rows] = np.where(gap[rows] > 0, gap[rows], 1.0)
        sub = [None if t is None else np.ascontiguousarray(t[rows]) for t in (xs, ys, px, py, gu, gv)]
        sub_bits = [None if bits is None else t.view(np.int64) for bits, t in ((xb, sub[0]), (yb, sub[1]))]
        sub_w = [np.ascontiguousarray(t[rows]) for t in (gwx, gwy)] if want_w else [gwx, gwy]
        sub_cost = np.empty(len(rows), cost.dtype)
        kernels.merge_rows(sub[0], sub[1], *sub_bits, sub[2], sub[3], a, b, single, float(p),
                           np.ascontiguousarray(scale[rows]), want_w, sub_cost, np.empty(len(rows)), sub[4], sub[5],
                           *sub_w, lx, ly)
        cost[rows] = sub_cost
        for out, g in ((gu, sub[4]), (gv, sub[5])) + (tuple(zip((gwx, gwy), sub_w)) if want_w else ()):
            if out is not None:
                out[rows] = g
    for out, perm, values in ((ga, px, gwx), (gb, py, gwy)):
        if out is not None:  # unsort, compiled (numpy's flat fancy assignment took about 2x)
            kernels.unsort_rows(values, perm, out)
    return scale


def _merge_weights(w: torch.Tensor, gradient: bool) -> list:
    """Per batch item, the float64 weights :func:`_merge_quantiles` merges, or None where they are all
    equal and no ``gradient`` of this side is wanted (of its support or of either side's weights): the
    side's values are then sorted alone, with no order, and its levels are ``(i + 1) / n`` (two uniform
    clouds of different sizes, value and gradient of 1e5 against 8e4 points, L = 64: 78-81 -> 70 ms)."""
    w = w.detach().numpy().astype(np.float64)
    return [None if not gradient and row.min() == row.max() else row for row in w]


def _coordinate_rows(x: torch.Tensor) -> np.ndarray:
    """``(B, D, N)`` numpy copy of ``x (B, N, D)``: a projection row is then one pass over contiguous
    coordinates."""
    return np.ascontiguousarray(x.detach().numpy().transpose(0, 2, 1))


def _cpu_chunk(x, y, theta, a, b, p: float, uniform: bool, need=(False, False, False, False), rows=None, ws=None,
               reuse=False):
    """Costs and per-slice gradients of ``x @ theta.T`` vs ``y @ theta.T`` on CPU, in numpy.

    Tasks on the thread pool each take one batch item and a few directions (about
    :data:`_TASK_ELEMENTS` projected values), project, sort and pair (uniform, N == M) or merge
    quantiles (weighted), and write their costs and gradient rows, so a task's working set stays in
    cache. Same contract as :func:`rows_cost` for ``u = x @ theta.T``. ``rows``: the coordinate rows of
    ``x`` and ``y`` and ``ws`` the work arrays, when a caller walking through chunks keeps them; with
    ``reuse`` the gradients are work arrays too, valid until the next call with ``ws``.
    """
    B, N, _ = x.shape
    M, L = y.shape[1], theta.shape[0]
    th = theta.detach().numpy()
    if x.shape[-1] >= pool.WIDE:  # (B, Lc, N), (B, Lc, M) projections first, a block of directions per thread
        projected = _project_blocks(th, x.detach().numpy(), y.detach().numpy())
    else:
        projected = None
        xs_, ys_ = rows if rows is not None else (_coordinate_rows(x), _coordinate_rows(y))  # (B, D, N), (B, D, M)
    dtype = th.dtype
    a_, b_ = (None, None)
    if not uniform:  # a side's gradient: of its support, or of either side's weights
        a_, b_ = (_merge_weights(w, need[side] or need[2] or need[3]) for side, w in enumerate((a, b)))
    cost, scale = np.empty((B, L), dtype), np.empty((B, L))
    ws = _Workspace() if ws is None else ws
    grads = [None if not wanted else ws.get(f"grad{k}", (B, L, n), dtype) if reuse else np.empty((B, L, n), dtype)
             for k, (wanted, n) in enumerate(zip(need, (N, M, N, M)))]

    def task(k: int, l0: int, l1: int) -> None:
        r = l1 - l0
        if projected is not None:  # rows of the chunk's projections, sorted in place there
            u, v = projected[0][k, l0:l1], projected[1][k, l0:l1]
        else:
            u, v = ws.get("u", (r, N), dtype), ws.get("v", (r, M), dtype)
            np.matmul(th[l0:l1], xs_[k], out=u)  # (r, N) projections
            np.matmul(th[l0:l1], ys_[k], out=v)
        if uniform:  # sorted, paired and unsorted gradients written in one compiled pass
            scale[k, l0:l1] = _pair_uniform(u, v, p, cost[k, l0:l1], *(None if g is None else g[k, l0:l1]
                                                                        for g in grads[:2]), ws)
            return
        scale[k, l0:l1] = _merge_quantiles(u, v, a_[k], b_[k], p, cost[k, l0:l1],
                                           [None if g is None else g[k, l0:l1] for g in grads], ws)

    step = max(1, _TASK_ELEMENTS // max(N, M))
    run_tasks(task, ((k, l0, min(L, l0 + step)) for k in range(B) for l0 in range(0, L, step)), B * L * (N + M))
    return (torch.from_numpy(cost), torch.from_numpy(scale),
            tuple(None if g is None else torch.from_numpy(g) for g in grads))


def _slices(x, y, theta, a, b, p, uniform, need, keep=True):
    """Per chunk of directions: ``(l0, l1, cost (B, Lc), scale (B, Lc), (gu, gv, ga, gb))``, as in
    :func:`rows_cost`; unless ``keep``, a chunk's gradients are overwritten by the next chunk's (CPU)."""
    B, N, M = x.shape[0], x.shape[1], y.shape[1]
    cpu = x.device.type == "cpu"
    wide = x.shape[-1] >= pool.WIDE
    rows = (_coordinate_rows(x), _coordinate_rows(y)) if cpu and not wide else None  # copied once for all chunks
    ws = _Workspace()  # and work arrays allocated once (freed and allocated per chunk, they grew the heap)
    per_entry = (20 if wide else 16) if cpu else 64  # bytes: wide chunks hold their projections
    for l0, l1 in direction_chunks(theta.shape[0], B, N + M, per_entry, at_least=_WORKERS if cpu else 1):
        th = theta[l0:l1]  # (Lc, D)
        if cpu:
            yield (l0, l1, *_cpu_chunk(x, y, th, a, b, p, uniform, need, rows, ws, reuse=not keep))
        else:
            u, v = torch.matmul(th, x.transpose(1, 2)), torch.matmul(th, y.transpose(1, 2))  # (B, Lc, N|M)
            yield (l0, l1, *rows_cost(u, v, a, b, p, uniform, need))


def centred(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """``x - c``, ``y - c`` (detached) with ``c (B, 1, D)`` the midpoint of the two weighted means.
    Sliced distances do not change when both measures move together, and coordinates near the
    origin keep their digits in the projections: float32 clouds around 1e7 with gaps around 1 would
    otherwise lose all of them. Any point among the data serves, so ``c`` is computed in the data's
    dtype (a convex combination: it cannot overflow). On CPU below :data:`~geom._ot1d.pool.WIDE`
    dimensions the result lies in the (B, D, N) layout the per-task projections read
    (:func:`_minus_in_rows`)."""
    x, y, a, b = (t.detach().to(x.dtype) for t in (x, y, a, b))
    if x.device.type != "cpu":
        c = 0.5 * (torch.matmul(a[:, None, :], x) + torch.matmul(b[:, None, :], y))
        return x - c, y - c
    xn, yn = x.numpy(), y.numpy()
    c = 0.5 * (np.matmul(a.numpy()[:, None, :], xn) + np.matmul(b.numpy()[:, None, :], yn))  # (B, 1, D)
    if x.shape[-1] >= pool.WIDE:  # a transposing subtraction takes 6x a plain one at d = 1024
        return torch.from_numpy(xn - c), torch.from_numpy(yn - c)
    return _minus_in_rows(xn, c), _minus_in_rows(yn, c)


def _minus_in_rows(t: np.ndarray, c: np.ndarray) -> torch.Tensor:
    """``t - c`` for ``t (B, N, D)``, ``c (B, 1, D)`` on CPU, computed into ``(B, D, N)`` storage and
    returned as its ``(B, N, D)`` view: :func:`_coordinate_rows` of it is then the storage itself, and
    the call holds one copy of each cloud, not two."""
    B, N, D = t.shape
    out = np.empty((B, D, N), dtype=t.dtype)
    np.subtract(t.transpose(0, 2, 1), c.transpose(0, 2, 1), out=out)
    return torch.from_numpy(out).transpose(1, 2)


def _add_grads(out, grads, w, theta, rows: bool) -> None:
    """``out[k] += sum_l w_l g_l theta_l`` (supports) and ``sum_l w_l g_l`` (weights) over a chunk of
    slices with per-slice gradients ``grads``, for each input whose ``out[k]`` is not False; ``w (B, Lc)``
    the weights of the slices (None: 1). ``out`` holds, per input of ``(x, y, a, b)``, False (not wanted),
    True (wanted, no chunk added yet: it becomes this chunk's sum) or the sum so far. Support gradients
    lie in ``(B, D, N)`` storage seen as ``(B, N, D)`` where ``rows`` (the layout of the centred clouds on
    CPU below :data:`~geom._ot1d.pool.WIDE` dimensions), else in ``(B, N, D)``; later chunks add into
    that storage by one batched product, in place (no temporary of the gradient's size)."""
    wth = theta if w is None else w[..., None] * theta  # (Lc, D) or (B, Lc, D): weights folded in
    for k, g in enumerate(grads):
        if out[k] is False or g is None:
            continue
        first = out[k] is True
        if k < 2:  # support
            B, Lc, D = g.shape[0], g.shape[1], wth.shape[-1]
            wt = wth.to(g.dtype).expand(B, Lc, D)
            if rows:  # (D, Lc) @ (Lc, N)
                if first:
                    out[k] = torch.matmul(wt.transpose(1, 2), g).transpose(1, 2)
                else:
                    out[k].transpose(1, 2).baddbmm_(wt.transpose(1, 2), g)
            elif first:  # (N, Lc) @ (Lc, D)
                out[k] = torch.matmul(g.transpose(1, 2), wt)
            else:
                out[k].baddbmm_(g.transpose(1, 2), wt)
        else:  # weights: (B, 1, Lc) @ (B, Lc, N)
            total = g.sum(1) if w is None else torch.matmul(w[:, None, :].to(g.dtype), g)[:, 0]
            if first:
                out[k] = total
            else:
                out[k] += total


class LinearSlicedCost(torch.autograd.Function):
    """Per-slice costs of ``x @ theta.T`` vs ``y @ theta.T``, fused and chunked.

    Returns ``(costs (B, L), scale (B, L) float64)`` with ``W_p^p = scale^p costs`` per slice (see
    :func:`rows_cost`); ``scale`` is a constant for autograd. Both clouds are first moved by one
    common point (:func:`centred`). Gradients flow to ``x``, ``y``, ``theta`` and the weights ``a``,
    ``b`` (not on the uniform fast path, whose weights are constants). Per-slice gradients are kept
    for backward when they fit in :data:`STORE_BYTES`. Beyond it the forward pass also sums them over
    the slices, ``sum_l g_l theta_l``: backward then only scales that sum when the gradient of the
    costs is the same for every slice of an item (the mean of the ``mc`` and ``qmc`` schemes, with no
    slice rescued by a scale), and re-sorts chunk by chunk otherwise.
    """

    @staticmethod
    def forward(ctx, x, y, theta, a, b, p, uniform):
        need_x, need_y, need_t, need_a, need_b = ctx.needs_input_grad[:5]
        need = (need_x, need_y, need_a and not uniform, need_b and not uniform)
        B, N, D = x.shape
        M, L = y.shape[1], theta.shape[0]
        per_slice = sum(n for n, wanted in zip((N, M, N, M), need) if wanted) * x.element_size()
        store = any(need) and B * L * per_slice <= STORE_BYTES
        xc, yc = centred(x, y, a, b)  # (B, N, D), (B, M, D)
        costs = scale = None
        dtheta = x.new_zeros(B, L, D) if need_t else None
        saved = []
        rows = xc.transpose(1, 2).is_contiguous()  # the layout of the support gradients (_add_grads)
        sums = None if store or not any(need) else list(need)  # sum_l of each slice's gradient
        # Gradients come with the sort: compute them now if kept or summed, or needed for theta.
        want = tuple(wanted or (need_t and k < 2) for k, wanted in enumerate(need))
        for l0, l1, cost, sc, grads in _slices(xc, yc, theta, a, b, p, uniform, want, keep=store):
            if (l0, l1) == (0, L):  # one chunk: its costs as they come
                costs, scale = cost.to(x.dtype), sc
            else:  # copied at once: chunks kept alive would pin small arrays between the large temporaries
                if costs is None:  # of the heap, which then grows by one temporary per chunk (1e6 x 1024: 3.4 GiB)
                    costs, scale = x.new_empty(B, L), torch.empty(B, L, dtype=torch.float64, device=x.device)
                costs[:, l0:l1], scale[:, l0:l1] = cost, sc
            if need_t:  # d cost_l / d theta_l = sum_i gu_i x_i + sum_j gv_j y_j (either origin: sum gu + sum gv = 0)
                dtheta[:, l0:l1] = torch.matmul(grads[0], xc) + torch.matmul(grads[1], yc)
            if store:
                saved.append((l0, l1, tuple(g if wanted else None for g, wanted in zip(grads, need))))
            elif sums is not None:
                _add_grads(sums, grads, None, theta[l0:l1].detach(), rows)
        ctx.p, ctx.uniform, ctx.need, ctx.rows = p, uniform, need, rows
        ctx.saved, ctx.sums = saved if store else None, sums
        ctx.save_for_backward(xc, yc, theta, a, b, dtheta)
        ctx.mark_non_differentiable(scale)
        return costs, scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_costs, _grad_scale):  # (B, L)
        xc, yc, theta, a, b, dtheta = ctx.saved_tensors
        if ctx.sums is not None and bool((grad_costs == grad_costs[:, :1]).all()):  # one factor per item
            w = grad_costs[:, 0]
            out = [g * w.view(-1, *([1] * (g.dim() - 1))).to(g.dtype) if wanted else None
                   for g, wanted in zip(ctx.sums, ctx.need)]
        else:
            out = list(ctx.need)
            if any(ctx.need):
                chunks = ctx.saved
                if chunks is None:
                    chunks = ((l0, l1, g) for l0, l1, _, _, g in _slices(xc, yc, theta, a, b, ctx.p, ctx.uniform,
                                                                          ctx.need, keep=False))
                for l0, l1, grads in chunks:
                    _add_grads(out, grads, grad_costs[:, l0:l1], theta[l0:l1].detach(), ctx.rows)
        gt = (grad_costs[..., None] * dtheta).sum(0) if dtheta is not None else None
        ctx.saved = ctx.sums = None
        gx, gy, ga, gb = (g if torch.is_tensor(g) else None for g in out)
        return gx, gy, gt, ga, gb, None, None


class ProjectedCost(torch.autograd.Function):
    """Per-row costs from given projections ``u (B, L, N)``, ``v (B, L, M)``: ``(costs (B, L),
    scale (B, L))`` as :class:`LinearSlicedCost` returns them.

    The path for representations whose projection is not linear: they project, autograd carries
    the gradient of the projection back to their support.
    """

    @staticmethod
    def forward(ctx, u, v, a, b, p, uniform):
        need_u, need_v, need_a, need_b = ctx.needs_input_grad[:4]
        cost, scale, grads = rows_cost(u, v, a, b, p, uniform,
                                       (need_u, need_v, need_a and not uniform, need_b and not uniform))
        ctx.save_for_backward(*grads)
        ctx.mark_non_differentiable(scale)
        return cost, scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_cost, _grad_scale):
        gu, gv, ga, gb = ctx.saved_tensors
        w = grad_cost[..., None]
        per_row = [None if g is None else w * g for g in (gu, gv)]
        per_item = [None if g is None else (w * g).sum(1) for g in (ga, gb)]
        return (*per_row, *per_item, None, None)
