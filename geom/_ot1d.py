"""Exact optimal transport between 1-D measures, row by row: the core of every sliced distance.

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
together (about half the cost of ``argsort``); the merge of quantile levels is one stable int64
sort of two sorted runs. On CUDA, and for non-linear projections, :func:`rows_cost` in torch.
:class:`LinearSlicedCost` walks through directions in chunks, so memory stays bounded whatever
the number of directions.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["LinearSlicedCost", "ProjectedCost", "absolute_costs", "rows_cost", "sort_rows", "transport_map"]

_WORKERS = max(1, min(8, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None
_BLAS = None  # threadpoolctl controller, made on first parallel call
_PARALLEL_MIN = 1 << 16  # elements below which threads cost more than they save
_TASK_ELEMENTS = 1 << 16  # a task takes one row, or whole rows up to this many elements (measured best)
CHUNK_BYTES = 1 << 27  # working memory of one chunk of directions (~128 MiB)
STORE_BYTES = 1 << 29  # keep per-slice gradients for backward up to this size, else recompute


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="geom-sort")
    return _POOL


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0  # run_tasks calls in flight, from any thread
_BLAS_LIMIT = None  # their shared threadpoolctl limiter, restored by the last one out


@contextlib.contextmanager
def _blas_one_thread():
    """numpy's BLAS on one thread while any :func:`run_tasks` call of any thread is in flight."""
    global _BLAS, _BLAS_USERS, _BLAS_LIMIT
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            if _BLAS is None:
                from threadpoolctl import ThreadpoolController

                _BLAS = ThreadpoolController()  # the BLAS numpy loaded, found once
            _BLAS_LIMIT = _BLAS.limit(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                _BLAS_LIMIT.restore_original_limits()
                _BLAS_LIMIT = None


def run_tasks(task, jobs, elements: int) -> None:
    """``task(*job)`` for every job: here when there is one job or fewer than :data:`_PARALLEL_MIN`
    ``elements`` in all, else on the sort pool with numpy's BLAS held to one thread meanwhile.

    Tasks project with BLAS; a multithreaded BLAS called from both pool threads at once makes them
    wait on each other, and the pool then gained nothing (project + argsort of 2e5 values: 5.3 ms
    per row with two pool threads against 2.6 ms with BLAS on one thread).
    """
    jobs = list(jobs)
    if len(jobs) == 1 or elements < _PARALLEL_MIN:
        for job in jobs:
            task(*job)
        return
    with _blas_one_thread():
        list(_pool().map(lambda job: task(*job), jobs))


class _Workspace:
    """Work arrays for one call, one set per thread, reused by every task that thread runs.

    Fresh arrays of a few hundred KiB come from mmap and pay a page fault per 4 KiB on first
    touch; at N = 1e5 that costs as much as the arithmetic of a task, so tasks reuse these.
    They are freed with the workspace when the call returns.
    """

    def __init__(self) -> None:
        self._arrays: dict[tuple[int, str], np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        key = (threading.get_ident(), name)
        a = self._arrays.get(key)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[key] = np.empty(shape, dtype)
        return a

    def iota(self, n: int) -> np.ndarray:
        """``arange(n)`` as int64 (read only)."""
        key = (0, f"iota{n}")
        if key not in self._arrays:
            self._arrays[key] = np.arange(n, dtype=np.int64)
        return self._arrays[key]


_INDEX_BITS = 28
"""Low mantissa bits of a float64 key that carry the index (rows up to 2^28 values)."""


def _argsort_inplace(a: np.ndarray, perm: np.ndarray, ws: _Workspace) -> None:
    """Sort the rows of ``a`` in place and write their permutation (int64) into ``perm``.

    A float32 converts to float64 exactly with 29 low mantissa bits at zero; the column index goes
    in the low :data:`_INDEX_BITS` of them (mirrored for negative values, whose magnitude grows
    with those bits), which keeps each key strictly between the float64 images of the float32
    neighbours of its value. One float64 sort then yields both, ties broken by index, and casting
    back to float32 rounds the index away (it stays below half a float32 ulp): about 0.8x the
    cost of packing order-preserving int32 bits and the index into an int64, and half an argsort.
    Other dtypes, or rows longer than 2^28, use a stable argsort.
    """
    n = a.shape[-1]
    if a.dtype != np.float32 or n > 1 << _INDEX_BITS:
        perm[...] = np.argsort(a, axis=-1, kind="stable")
        a[...] = np.take_along_axis(a, perm, axis=-1)
        return
    mask = (1 << _INDEX_BITS) - 1
    keys = ws.get("keys", a.shape, np.float64)
    bits, low = keys.view(np.int64), ws.get("low", a.shape, np.int64)
    np.copyto(keys, a)  # exact
    np.right_shift(bits, 63, out=low)  # -1 for negative keys, else 0
    np.bitwise_and(low, mask, out=low)
    np.bitwise_xor(low, ws.iota(n), out=low)  # index, mirrored for negatives
    bits |= low
    keys.sort(axis=-1)
    np.right_shift(bits, 63, out=low)
    np.bitwise_and(low, mask, out=low)
    np.bitwise_and(bits, mask, out=perm)
    perm ^= low
    np.copyto(a, keys, casting="same_kind")  # round to nearest: the index bits vanish


def sort_rows(u: torch.Tensor, with_perm: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sort along the last dim: ``(..., N)`` -> ``(sorted values, int64 permutation or None)``."""
    if u.device.type != "cpu":
        if with_perm:
            return torch.sort(u, dim=-1)
        return torch.sort(u, dim=-1).values, None
    values = u.detach().reshape(-1, u.shape[-1]).numpy().copy()  # sorted in place
    perm = np.empty(values.shape, np.int64) if with_perm else None
    rows, n = values.shape
    step = max(1, _TASK_ELEMENTS // n)  # rows per task: a task's working set stays in cache
    ws = _Workspace()

    def job(r0: int) -> None:
        if perm is None:
            values[r0 : r0 + step].sort(axis=-1)
        else:
            _argsort_inplace(values[r0 : r0 + step], perm[r0 : r0 + step], ws)

    run_tasks(job, ((r0,) for r0 in range(0, rows, step)), values.size)
    values_t = torch.from_numpy(values).view(u.shape)
    return values_t, None if perm is None else torch.from_numpy(perm).view(u.shape)


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
        sum is safe, else the row's largest gap, as in :func:`_pair_sorted`), and a tuple
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


def direction_chunks(L: int, B: int, n_total: int, bytes_per_entry: int = 64):
    """Ranges ``(l0, l1)`` of directions whose working memory stays near :data:`CHUNK_BYTES`."""
    step = max(1, min(L, CHUNK_BYTES // max(1, B * n_total * bytes_per_entry)))
    return [(l0, min(L, l0 + step)) for l0 in range(0, L, step)]


def _safe(cost: np.ndarray, n: int, dtype) -> np.ndarray:
    """Rows whose cost ``mean |d|^p`` was computed without overflow and without losing digits to
    underflow: within ``dtype``'s range (a cost summed in float64 from float32 gaps may exceed it),
    and at least ``n tiny / eps`` (the most that ``n`` underflowed terms lose is then one ulp of the
    cost). A zero cost is not safe: every term may have underflowed."""
    fi = np.finfo(dtype)
    return (cost <= float(fi.max)) & (cost >= n * float(fi.tiny) / float(fi.eps))  # False for NaN


def _row_scale(d: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(r,)`` largest ``|d|`` of each row (over ``mask``), 1 where it is 0: rows divided by it
    hold values in [-1, 1] with at least one of modulus 1."""
    ad = np.abs(d) if mask is None else np.where(mask, np.abs(d), 0)
    m = ad.max(-1).astype(np.float64)
    m[m == 0] = 1.0
    return m


def _pair_terms(d: np.ndarray, p: float, slope: np.ndarray) -> np.ndarray:
    n = d.shape[-1]
    if p == 2.0:
        np.multiply(d, 2.0 / n, out=slope)
        return np.einsum("ij,ij->i", d, d) / n
    ad = np.abs(d)
    if p == 1.0:
        np.sign(d, out=slope)
        slope /= n
        return ad.mean(-1)
    np.multiply((p / n) * ad ** (p - 1.0), np.sign(d), out=slope)
    return (ad**p).mean(-1)


def _pair_sorted(d: np.ndarray, p: float, slope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of sorted differences ``d`` -> ``(cost, scale)``: ``W_p^p = scale^p cost`` per row with
    ``cost`` the mean of ``|d / scale|^p``; ``slope`` gets ``d cost / d d``.

    ``scale`` is 1 where ``mean |d|^p`` is safe in ``d``'s dtype (:func:`_safe`); elsewhere (large or
    small ``p``, huge or tiny gaps) the row is recomputed divided by its largest gap.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # such rows are computed again
        cost = _pair_terms(d, p, slope)
    scale = np.ones(d.shape[0])
    bad = ~_safe(cost, d.shape[-1], d.dtype)
    if bad.any():
        scale[bad] = m = _row_scale(d[bad])
        sub = slope[bad]
        cost[bad] = _pair_terms((d[bad] / m[:, None]).astype(d.dtype), p, sub)
        slope[bad] = sub / m[:, None]
    return cost, scale


def _merge_quantiles(xs, ys, px, py, a, b, p: float, need_w: tuple[bool, bool], ws: _Workspace):
    """W_p^p between weighted 1-D measures by merging their cumulative-weight sequences.

    ``xs (r, N)``, ``ys (r, M)`` are sorted rows, ``px``, ``py`` their permutations and ``a (N,)``,
    ``b (M,)`` the float64 weights. Between consecutive breakpoints of the merged levels both
    quantile functions are constant, so the integral is a sum over ``N + M`` pieces. Levels in
    [0, 1] are non-negative float64, so their bits sort as integers: shifted left one bit, with the
    lowest bit marking y, one *stable* int64 sort (a linear merge of two sorted runs) gives the
    merged order, x breakpoints first on ties. Returns cost and scale ``(r,)`` (``W_p^p = scale^p
    cost``, as in :func:`_pair_sorted`) and the gradients of cost with respect
    to ``xs``, ``ys`` and, where ``need_w`` asks, the sorted weights (else None), all in sorted
    order. Every ``(r, N + M)`` array is a reused work array.
    """
    r, N = xs.shape
    M = ys.shape[1]
    K = N + M
    levels = ws.get("levels", (r, K), np.float64)
    totals = []
    for w, perm, part in ((a, px, levels[:, :N]), (b, py, levels[:, N:])):
        part[...] = w[perm]
        np.cumsum(part, axis=-1, out=part)
        totals.append(part[:, -1:].copy())
        part /= totals[-1]  # both end at exactly 1
    keys = levels.view(np.int64)
    keys <<= 1
    keys[:, N:] |= 1
    keys.sort(axis=-1, kind="stable")
    i, j, tmp = (ws.get(name, (r, K), np.int64) for name in ("i", "j", "tmp"))
    np.bitwise_and(keys, 1, out=tmp)
    np.subtract(1, tmp, out=tmp)  # 1 where a piece ends at an x breakpoint
    np.cumsum(tmp, axis=-1, out=i)
    i -= tmp  # x breakpoints strictly before each piece end: the x atom holding the piece
    np.subtract(ws.iota(K), i, out=j)  # likewise for y
    np.minimum(i, N - 1, out=i)
    np.minimum(j, M - 1, out=j)
    keys >>= 1
    t = keys.view(np.float64)  # merged breakpoints
    dt = ws.get("dt", (r, K), np.float64)
    np.subtract(t[:, 1:], t[:, :-1], out=dt[:, 1:])
    dt[:, 0] = t[:, 0]  # mass of each piece
    if r > 1:  # flat indices into the (r, N) and (r, M) rows
        i += ws.iota(r)[:, None] * N
        j += ws.iota(r)[:, None] * M
    d, dy = ws.get("d", (r, K), xs.dtype), ws.get("dy", (r, K), xs.dtype)
    np.take(xs.reshape(-1), i, out=d)
    np.take(ys.reshape(-1), j, out=dy)
    d -= dy  # gap of each piece
    g = ws.get("g", (r, K), np.float64)
    ck = ws.get("ck", (r, K), np.float64) if any(need_w) else None  # cost of each piece per unit mass
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # such rows are computed again
        cost = _piece_terms(d, dt, p, g, ck, dy)
    scale = np.ones(r)
    bad = ~_safe(cost, K, d.dtype)
    if bad.any():  # W_p^p = scale^p sum dt |d / scale|^p, scale the largest gap of a piece with mass
        has_mass = dt[bad] > 0  # pieces without mass cost nothing: their gaps may exceed the scale
        scale[bad] = m = _row_scale(d[bad], has_mass)
        sub = [None if a is None else a[bad] for a in (g, ck, dy)]
        cost[bad] = _piece_terms(np.where(has_mass, d[bad] / m[:, None], 0).astype(d.dtype), dt[bad], p, *sub)
        g[bad] = sub[0] / m[:, None]
        if ck is not None:
            ck[bad] = sub[1]
    gw = [None, None]
    if ck is not None:
        # Moving a level moves mass between the piece ending there and the next one: d cost /
        # d level = ck[piece] - ck[next piece]; it is booked on the atom whose level it is.
        step = ws.get("step", (r, K), np.float64)
        np.subtract(ck[:, :-1], ck[:, 1:], out=step[:, :-1])
        step[:, -1] = 0.0
        for side, (need, n_side, index) in enumerate(((need_w[0], N, i), (need_w[1], M, j))):
            if not need:
                continue
            mask = tmp if side == 0 else 1 - tmp  # pieces ending at this side's levels
            G = np.bincount(index.reshape(-1), weights=(step * mask).reshape(-1), minlength=r * n_side)
            G = G.reshape(r, n_side)
            suffix = np.cumsum(G[:, ::-1], axis=-1)[:, ::-1]
            at_levels = np.einsum("ij,ij,ij->i", step, mask, t)[:, None]  # sum_k G_k level_k
            gw[side] = (suffix - at_levels) / totals[side]
    gx = np.bincount(i.reshape(-1), weights=g.reshape(-1), minlength=r * N).reshape(r, N)
    gy = np.bincount(j.reshape(-1), weights=g.reshape(-1), minlength=r * M).reshape(r, M)
    return cost, scale, gx, np.negative(gy, out=gy), gw[0], gw[1]


def _piece_terms(d, dt, p: float, g, ck, tmp) -> np.ndarray:
    """``sum dt |d|^p`` per row of pieces with gaps ``d`` and masses ``dt``; writes ``g``, its
    derivative in each gap, and where given ``ck = |d|^p`` (cost per unit mass); ``tmp`` is work space."""
    if p == 2.0:
        cost = np.einsum("ij,ij,ij->i", dt, d, d)
        if ck is not None:
            np.multiply(d, d, out=ck)
        np.multiply(d, dt, out=g)
        g *= 2.0
    elif p == 1.0:
        cost = np.einsum("ij,ij->i", dt, np.abs(d, out=tmp))
        if ck is not None:
            ck[...] = tmp
        np.multiply(np.sign(d, out=tmp), dt, out=g)
    else:
        ad = np.abs(d)
        if ck is not None:
            np.power(ad, p, out=ck)
        cost = np.einsum("ij,ij->i", dt, ad**p if ck is None else ck)
        np.multiply(p * ad ** (p - 1.0), np.sign(d), out=g)
        g *= dt  # d cost / d (x_i - y_j) per piece
    return cost


def _cpu_chunk(x, y, theta, a, b, p: float, uniform: bool, need=(False, False, False, False)):
    """Costs and per-slice gradients of ``x @ theta.T`` vs ``y @ theta.T`` on CPU, in numpy.

    Tasks on the thread pool each take one batch item and a few directions (about
    :data:`_TASK_ELEMENTS` projected values), project, sort and pair (uniform, N == M) or merge
    quantiles (weighted), and write their costs and gradient rows, so a task's working set stays in
    cache. Same contract as :func:`rows_cost` for ``u = x @ theta.T``.
    """
    B, N, _ = x.shape
    M, L = y.shape[1], theta.shape[0]
    # (B, D, N) layout: a projection row is then one pass over contiguous coordinates.
    xs_, ys_ = (np.ascontiguousarray(t.detach().numpy().transpose(0, 2, 1)) for t in (x, y))
    th = theta.detach().numpy()
    dtype = xs_.dtype
    a_, b_ = (None, None) if uniform else (a.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64))
    cost, scale = np.empty((B, L), dtype), np.empty((B, L))
    grads = [np.empty((B, L, n), dtype) if wanted else None for wanted, n in zip(need, (N, M, N, M))]
    ws = _Workspace()

    def task(k: int, l0: int, l1: int) -> None:
        r = l1 - l0
        u, v = ws.get("u", (r, N), dtype), ws.get("v", (r, M), dtype)
        np.matmul(th[l0:l1], xs_[k], out=u)  # (r, N) projections
        np.matmul(th[l0:l1], ys_[k], out=v)
        pu = ws.get("pu", (r, N), np.int64) if need[0] or not uniform else None
        pv = ws.get("pv", (r, M), np.int64) if need[1] or not uniform else None
        for w, pw in ((u, pu), (v, pv)):
            if pw is None:
                w.sort(axis=-1)
            else:
                _argsort_inplace(w, pw, ws)
        if uniform:
            slope = ws.get("slope", (r, N), dtype)
            cost[k, l0:l1], scale[k, l0:l1] = _pair_sorted(np.subtract(u, v, out=u), p, slope)
            sorted_grads = (slope, np.negative(slope, out=u), None, None)
        else:
            cost[k, l0:l1], scale[k, l0:l1], *sorted_grads = _merge_quantiles(u, v, pu, pv, a_[k], b_[k], p,
                                                                               need[2:], ws)
        if r > 1:  # flat indices into the (r, N) and (r, M) blocks
            for perm in (pu, pv):
                if perm is not None:
                    perm += ws.iota(r)[:, None] * perm.shape[1]
        for out, perm, values in zip(grads, (pu, pv, pu, pv), sorted_grads):
            if out is not None:  # unsort: one flat fancy assignment (put_along_axis is ~5x slower)
                out[k, l0:l1].reshape(-1)[perm.reshape(-1)] = values.reshape(-1)

    step = max(1, _TASK_ELEMENTS // max(N, M))
    run_tasks(task, ((k, l0, min(L, l0 + step)) for k in range(B) for l0 in range(0, L, step)), B * L * (N + M))
    return (torch.from_numpy(cost), torch.from_numpy(scale),
            tuple(None if g is None else torch.from_numpy(g) for g in grads))


def _slices(x, y, theta, a, b, p, uniform, need):
    """Per chunk of directions: ``(l0, l1, cost (B, Lc), scale (B, Lc), (gu, gv, ga, gb))``, as in
    :func:`rows_cost`."""
    B, N, M = x.shape[0], x.shape[1], y.shape[1]
    cpu = x.device.type == "cpu"
    for l0, l1 in direction_chunks(theta.shape[0], B, N + M, 16 if cpu else 64):
        th = theta[l0:l1]  # (Lc, D)
        if cpu:
            yield (l0, l1, *_cpu_chunk(x, y, th, a, b, p, uniform, need))
        else:
            u, v = torch.matmul(th, x.transpose(1, 2)), torch.matmul(th, y.transpose(1, 2))  # (B, Lc, N|M)
            yield (l0, l1, *rows_cost(u, v, a, b, p, uniform, need))


def centred(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """``x - c``, ``y - c`` (detached) with ``c (B, 1, D)`` the midpoint of the two weighted means.
    Sliced distances do not change when both measures move together, and coordinates near the
    origin keep their digits in the projections: float32 clouds around 1e7 with gaps around 1 would
    otherwise lose all of them. Any point among the data serves, so ``c`` is computed in the data's
    dtype (a convex combination: it cannot overflow)."""
    x, y = x.detach(), y.detach()
    c = 0.5 * (torch.matmul(a.detach()[:, None, :].to(x.dtype), x) + torch.matmul(b.detach()[:, None, :].to(x.dtype), y))
    return x - c, y - c


class LinearSlicedCost(torch.autograd.Function):
    """Per-slice costs of ``x @ theta.T`` vs ``y @ theta.T``, fused and chunked.

    Returns ``(costs (B, L), scale (B, L) float64)`` with ``W_p^p = scale^p costs`` per slice (see
    :func:`rows_cost`); ``scale`` is a constant for autograd. Both clouds are first moved by one
    common point (:func:`centred`). Gradients flow to ``x``, ``y``, ``theta`` and the weights ``a``,
    ``b`` (not on the uniform fast path, whose weights are constants). Per-slice gradients are kept
    for backward when they fit in :data:`STORE_BYTES`, else backward re-sorts chunk by chunk.
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
        costs = x.new_empty(B, L)
        scale = torch.empty(B, L, dtype=torch.float64, device=x.device)
        dtheta = x.new_zeros(B, L, D) if need_t else None
        saved = []
        # Gradients come with the sort; compute them now only if kept, or needed for theta.
        want = tuple((wanted and store) or (need_t and k < 2) for k, wanted in enumerate(need))
        for l0, l1, cost, sc, grads in _slices(xc, yc, theta, a, b, p, uniform, want):
            costs[:, l0:l1], scale[:, l0:l1] = cost, sc
            if need_t:  # d cost_l / d theta_l = sum_i gu_i x_i + sum_j gv_j y_j (either origin: sum gu + sum gv = 0)
                dtheta[:, l0:l1] = torch.matmul(grads[0], xc) + torch.matmul(grads[1], yc)
            if store:
                saved.append((l0, l1, tuple(g if wanted else None for g, wanted in zip(grads, need))))
        ctx.p, ctx.uniform, ctx.need, ctx.saved = p, uniform, need, saved if store else None
        ctx.save_for_backward(xc, yc, theta, a, b, dtheta)
        ctx.mark_non_differentiable(scale)
        return costs, scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_costs, _grad_scale):  # (B, L)
        xc, yc, theta, a, b, dtheta = ctx.saved_tensors
        B, L = grad_costs.shape
        N, M = a.shape[1], b.shape[1]
        D = theta.shape[1]
        out = [grad_costs.new_zeros(shape) if wanted else None
               for shape, wanted in zip(((B, N, D), (B, M, D), (B, N), (B, M)), ctx.need)]
        if any(ctx.need):
            chunks = ctx.saved
            if chunks is None:
                chunks = ((l0, l1, g) for l0, l1, _, _, g in _slices(xc, yc, theta, a, b, ctx.p, ctx.uniform,
                                                                      ctx.need))
            for l0, l1, grads in chunks:
                w = grad_costs[:, l0:l1]  # (B, Lc)
                wth = w[..., None] * theta[l0:l1].detach()  # (B, Lc, D): weights folded in
                for k, g in enumerate(grads):
                    if out[k] is None:
                        continue
                    if k < 2:  # support: (B, N, Lc) @ (B, Lc, D)
                        out[k] += torch.matmul(g.transpose(1, 2), wth)
                    else:  # weights: (B, 1, Lc) @ (B, Lc, N)
                        out[k] += torch.matmul(w[:, None, :].to(g.dtype), g)[:, 0].to(out[k].dtype)
        gt = (grad_costs[..., None] * dtheta).sum(0) if dtheta is not None else None
        ctx.saved = None
        gx, gy, ga, gb = out
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


def transport_map(u: torch.Tensor, a: torch.Tensor, v: torch.Tensor, b: torch.Tensor, *, same_uniform: bool = False):
    """Where the 1-D optimal transport map sends each particle, row by row.

    Args:
        u: ``(L, N)`` projections of the particles, masses ``a (N,)``.
        v: ``(L, M)`` projections of the target, masses ``b (M,)``.
        same_uniform: ``N == M`` with uniform masses (the k-th smallest goes to the k-th smallest).

    Returns:
        ``T (L, N)``: the mean of the target quantile function over the particle's mass interval
        ``[F(u_i^-), F(u_i)]`` (``F`` the particles' CDF), i.e. the barycentric projection of the
        monotone coupling, which is ``Q_nu(F(u_i))`` when each particle meets one target atom; and
        ``costs (L,)``: ``W_2^2`` of each row.
    """
    L, N = u.shape
    us, pu = sort_rows(u, True)  # (L, N)
    vs, pv = sort_rows(v, not same_uniform)  # (L, M)
    us, vs = us.to(u.device, torch.float64), vs.to(u.device, torch.float64)
    pu = pu.to(u.device)
    if same_uniform:
        T_sorted = vs
        costs = (vs - us).square().mean(-1)
    else:
        a64, b64 = a.to(torch.float64), b.to(torch.float64)
        a_s, b_s = a64[pu], b64[pv.to(u.device)]  # (L, N), (L, M) masses in sorted order
        A = a_s.cumsum(-1)
        A = A / A[:, -1:]  # particle levels F(u_i)
        B = b_s.cumsum(-1)
        B = B / B[:, -1:]
        C = (b_s * vs).cumsum(-1)  # int_0^{B_j} Q_nu
        Bp = torch.cat([B.new_zeros(L, 1), B[:, :-1]], -1)  # B_{j-1}
        Cp = torch.cat([C.new_zeros(L, 1), C[:, :-1]], -1)

        def integral(s):  # int_0^s Q_nu, piecewise linear in s
            j = torch.searchsorted(B, s).clamp_(max=B.shape[1] - 1)
            return Cp.gather(-1, j) + vs.gather(-1, j) * (s - Bp.gather(-1, j)), j

        hi, j = integral(A)
        lo, _ = integral(torch.cat([A.new_zeros(L, 1), A[:, :-1]], -1))
        mass = A - torch.cat([A.new_zeros(L, 1), A[:, :-1]], -1)  # (L, N)
        T_sorted = torch.where(mass > 0, (hi - lo) / mass.clamp_min(1e-300), vs.gather(-1, j))
        # W_2^2 = int F^-1^2 - 2 int F^-1 G^-1 + int G^-1^2, with int F^-1 G^-1 = sum_i u_i mass_i T_i.
        costs = ((mass * us * (us - 2 * T_sorted)).sum(-1) + (b_s * vs * vs).sum(-1) / B[:, -1]).clamp_min(0)
    T = torch.empty_like(T_sorted).scatter_(-1, pu, T_sorted)  # back to the particles' order
    return T, costs
