"""The 1-D energy distance of pooled projections by one sort, with its gradients summed in the forward pass.

On the line, sort the pooled projections ``s`` of both measures with signed weights ``w = (a, -b)``;
then ``ED = -sum_ij w_i w_j |s_i - s_j| = 2 sum_k W_k^2 (s_(k+1) - s_k)`` with ``W_k`` the running sum
of the sorted weights: O(K log K) for ``K = N + M``, and a sum of non-negative terms. See
:mod:`geom.mmd` for the estimator built on it.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from . import kernels, pool
from .line import centred, direction_chunks
from .pool import _TASK_ELEMENTS, _argsort_inplace, _project_blocks, _Workspace, run_tasks, sort_rows

__all__ = ["SlicedEnergy"]

_BUFFER = 8
"""Slices whose support gradients a thread keeps in point order before adding them up in one product."""
_BUFFER_WIDE = 1 << 21
"""From :data:`geom._ot1d.pool.WIDE` dimensions on, a thread buffers up to this many gradient values
(16 MiB) before its product: each flush writes the whole (D, K) float64 sum, so eight slices a flush
made the sums bound by memory (N = M = 1e4, d = 1024, L = 256: 1.15 s of tasks a call)."""


def _energy_rows(s: torch.Tensor, w: torch.Tensor, need_s: bool, need_w: bool):
    """1-D energy distances of pooled rows in torch (the CUDA path; CPU uses :func:`_cpu_chunk`).

    ``s (R, K)`` are positions, ``w (R, K)`` signed float64 weights ``(a, -b)``.

    Returns ``value (R,)`` and the gradients ``(R, K)`` with respect to ``s`` and ``w`` (None where not
    needed), in the order of ``s``.
    """
    R, K = s.shape
    ss, perm = sort_rows(s, True)  # (R, K) sorted (numpy threads on CPU, torch.sort on CUDA)
    ws = w.gather(-1, perm)  # (R, K) sorted signed weights
    P = ws.cumsum(-1)  # (R, K) running sums: F - G on (s_k, s_(k+1))
    t = ss.to(torch.float64)
    value = 2.0 * (P[:, :-1].square() * (t[:, 1:] - t[:, :-1])).sum(-1)  # (R,)
    gs = gw = None
    if need_s:
        total = P[:, -1:]  # (R, 1), 0 up to rounding
        below, above = P - ws, total - P  # weight strictly before / after position k
        same = ss[:, 1:] == ss[:, :-1]  # (R, K - 1) ties
        if bool(same.any()):  # a tie group counts on neither side of its members
            idx = torch.arange(K, device=s.device).expand(R, K)
            starts = torch.ones_like(ss, dtype=torch.bool)
            starts[:, 1:] = ~same
            ends = torch.ones_like(starts)
            ends[:, :-1] = ~same
            first = torch.where(starts, idx, 0).cummax(-1).values  # (R, K) first index of k's group
            last = torch.where(ends, idx, K - 1).flip(-1).cummin(-1).values.flip(-1)
            below, above = below.gather(-1, first), above.gather(-1, last)
        g = -2.0 * ws * (below - above)  # (R, K)
        gs = torch.empty_like(g).scatter_(-1, perm, g).to(s.dtype)
    if need_w:
        t = t - t[:, K // 2 : K // 2 + 1]  # centred: sum_j w_j |s_k - s_j| is translation invariant
        Q = (ws * t).cumsum(-1)  # (R, K)
        nb, na = P - ws, P[:, -1:] - P  # weights below / above k
        qb, qa = Q - ws * t, Q[:, -1:] - Q  # weighted positions below / above k
        h = t * (nb - na) - (qb - qa)  # (R, K) sum_j w_j |s_k - s_j|
        gw = torch.empty_like(h).scatter_(-1, perm, -2.0 * h)
    return value, gs, gw


def _untie(s: np.ndarray, gap: np.ndarray, below: np.ndarray, above: np.ndarray) -> None:
    """Give every member of a tie group of the sorted rows ``s (r, K)`` the ``below`` of its group's
    first member and the ``above`` of its last (in place): equal values count on neither side.

    ``gap (r, K - 1)`` holds ``s[k + 1] - s[k]``, zero exactly at ties. Ties are rare (float32
    collisions, duplicated points), so only their positions are touched.
    """
    r, K = s.shape
    tied = np.flatnonzero(gap == 0)  # flat in (r, K - 1): s[k] == s[k + 1]
    left = tied // (K - 1) * K + tied % (K - 1)  # flat in (r, K)
    members = np.union1d(left, left + 1)  # sorted flat positions in a tie group
    new = np.ones(members.size, bool)
    flat = s.reshape(-1)
    gap = (members[1:] != members[:-1] + 1) | (members[1:] % K == 0)  # not adjacent in one row
    new[1:] = gap | (flat[members[1:]] != flat[members[:-1]])  # a group starts
    group = np.cumsum(new) - 1
    firsts, lasts = members[new], members[np.append(new[1:], True)]
    below.reshape(-1)[members] = below.reshape(-1)[firsts[group]]
    above.reshape(-1)[members] = above.reshape(-1)[lasts[group]]


def _pooled(x, y, a, b):
    """Numpy ``(B, D, N + M)`` pooled supports (coordinates contiguous; ``(B, N + M, D)`` from
    :data:`geom._ot1d.pool.WIDE` dimensions on), ``(B, N + M)`` float64 ``(a, -b)`` and, per batch
    item, ``(a_0, b_0)`` when both weight vectors are constant (else None)."""
    pooled = torch.cat([x, y], 1).detach().numpy()
    if x.shape[-1] < pool.WIDE:
        pooled = np.ascontiguousarray(pooled.transpose(0, 2, 1))
    a_, b_ = a.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)
    const = [(a_[k, 0], b_[k, 0]) if (a_[k] == a_[k, 0]).all() and (b_[k] == b_[k, 0]).all() else None
             for k in range(a_.shape[0])]
    return pooled, np.concatenate([a_, -b_], -1), const


def _cpu_chunk(x, y, theta, a, b, need=(False,) * 4, up=None):
    """:func:`_energy_rows` for the linear projections ``x @ theta.T``, ``y @ theta.T`` on CPU, in numpy.

    Tasks on the core's sorting thread pool each take one batch item and a few directions, project,
    sort (float32 values packed with their index into one float64 key, see :mod:`geom._ot1d`), write
    the energies and, for the inputs flagged in ``need`` (``x, y, a, b``), add ``up[k, l]`` times
    slice ``l``'s gradient to per-thread sums (work arrays reused per thread). Returns ``energy
    (B, Lc)`` and the summed gradients ``(gx (B, N, D), gy (B, M, D), ga (B, N), gb (B, M))`` as
    float64 tensors (None where not needed).
    """
    B, N, D = x.shape
    M, L = y.shape[1], theta.shape[0]
    K = N + M
    pooled, w, const = _pooled(x, y, a, b)  # (B, D, K) or wide (B, K, D), (B, K), [(a_0, b_0) or None]
    dtype = pooled.dtype
    th = theta.detach().numpy().astype(dtype)
    projected = _project_blocks(th, pooled)[0] if D >= pool.WIDE else None  # (B, Lc, K), see pool.WIDE
    th64 = th.astype(np.float64)
    energy = np.empty((B, L), dtype)
    need_s, need_w = need[0] or need[1], need[2] or need[3]
    ups = None if up is None else up.detach().numpy().astype(np.float64)  # (B, Lc)
    ws = _Workspace()
    step = max(1, _TASK_ELEMENTS // K)  # directions per task
    rows = max(step, _BUFFER if D < pool.WIDE else min(L, _BUFFER_WIDE // K))  # slices per buffered product
    c0, c1 = (0 if need[0] else N), (K if need[1] else N)  # columns whose support gradient is needed
    sums: dict[int, list] = {}  # per thread: [(B, D, c1 - c0) support sums, (B, K) weight sums, buffer]
    lock = threading.Lock()

    def flush(acc) -> None:
        """Add the buffered slices of one thread to its support sums: one (D, n) @ (n, c1 - c0) product."""
        k, n, rows, dirs = acc[2]
        if n:
            acc[0][k] += dirs[:n].T @ rows[:n, c0:c1]
        acc[2][1] = 0

    def slot(k: int, r: int):
        """This thread's sums and the next ``r`` rows of its buffer (flushed first when full or of
        another batch item)."""
        ident = threading.get_ident()
        if ident not in sums:
            with lock:  # support: up to _BUFFER slices of gradients in point order, then one product
                sums[ident] = [np.zeros((B, D, c1 - c0)) if need_s else None, np.zeros((B, K)) if need_w else None,
                               [k, 0, np.empty((rows, K)), np.empty((rows, D))] if need_s else None]
        acc = sums[ident]
        if need_s:
            buffer = acc[2]
            if buffer[0] != k or buffer[1] + r > rows:
                flush(acc)
                buffer[0] = k
        return acc

    def booked(acc, k: int, l0: int, l1: int) -> None:
        """The buffer's next ``l1 - l0`` rows hold those slices' gradients: book them with ``up_l theta_l``."""
        buffer, n, r = acc[2], acc[2][1], l1 - l0
        np.multiply(th64[l0:l1], ups[k, l0:l1, None], out=buffer[3][n : n + r])  # up_l theta_l
        buffer[1] = n + r

    def compiled_rows(k: int, l0: int, l1: int, s, perm) -> None:
        """Energies and position gradients of the task by the compiled kernel (no weight gradients)."""
        r = l1 - l0
        e = ws.get("e", (r,), np.float64)
        acc = slot(k, r) if need_s else None
        g = acc[2][2][acc[2][1] : acc[2][1] + r] if need_s else ws.get("g0", (0, 0), np.float64)
        use_const = const[k] is not None
        ca, cb = const[k] if use_const else (0.0, 0.0)
        kernels.energy_rows(s, perm, w[k], N, ca, cb, use_const, need_s, e, g)
        energy[k, l0:l1] = e
        if need_s:
            booked(acc, k, l0, l1)

    def task(k: int, l0: int, l1: int) -> None:
        r = l1 - l0
        if projected is None:
            s = ws.get("s", (r, K), dtype)
            np.matmul(th[l0:l1], pooled[k], out=s)  # (r, K) projections
        else:  # rows of the chunk's projections, sorted in place there
            s = projected[k, l0:l1]
        perm = ws.get("perm", (r, K), np.int64)
        _argsort_inplace(s, perm, ws)
        if not need_w:
            compiled_rows(k, l0, l1, s, perm)
            return
        wk = ws.get("w", (r, K), np.float64)
        if const[k] is None:
            np.take(w[k], perm, out=wk)  # sorted signed weights
        else:  # constant weights per side: sequential passes instead of a random gather
            first = ws.get("first", (r, K), np.bool_)
            np.less(perm, N, out=first)  # an atom of the first measure
            wk.fill(-const[k][1])
            np.copyto(wk, const[k][0], where=first)
        P = ws.get("P", (r, K), np.float64)
        np.cumsum(wk, axis=-1, out=P)  # F - G between consecutive atoms
        gap = ws.get("gap", (r, K - 1), np.float64)
        np.subtract(s[:, 1:], s[:, :-1], out=gap)  # exact or nearly: neighbours in sorted order
        energy[k, l0:l1] = 2.0 * np.einsum("ij,ij,ij->i", P[:, :-1], P[:, :-1], gap)
        if not (need_s or need_w):
            return
        acc = slot(k, r)
        if need_s:
            # d energy / d s_k = -2 w_k (weight strictly below - weight strictly above) = 2 w_k (w_k - 2 P_k + P_K)
            g = ws.get("g", (r, K), np.float64)
            if np.count_nonzero(gap) == gap.size:  # no ties (the rule): one fused formula
                np.multiply(P, -2.0, out=g)
                g += wk
                g += P[:, -1:]
            else:  # a tie group counts on neither side of its members
                above = ws.get("above", (r, K), np.float64)
                np.subtract(wk, P, out=g)  # minus the weight strictly below
                np.subtract(P, P[:, -1:], out=above)  # minus the weight strictly above
                _untie(s, gap, g, above)
                g -= above
            g *= wk
            g *= 2.0
            n = acc[2][1]
            kernels.unsort_rows(g, perm, acc[2][2][n : n + r])  # point order
            booked(acc, k, l0, l1)
        if need_w:
            scattered = ws.get("scattered", (r, K), np.float64)  # per-slice gradients in point order
            t = s - s[:, K // 2 : K // 2 + 1].astype(np.float64)  # centred: sum_j w_j |s_k - s_j| is translation invariant
            wt = wk * t
            Q = np.cumsum(wt, axis=-1)
            # h_k = sum_j w_j |s_k - s_j| = t_k (W_below - W_above) - (Q_below - Q_above); d energy / d w_k = -2 h_k
            h = t * (2.0 * P - wk - P[:, -1:]) - (2.0 * Q - wt - Q[:, -1:])
            kernels.unsort_rows(h, perm, scattered)
            acc[1][k] -= 2.0 * (ups[k, l0:l1] @ scattered)

    run_tasks(task, ((k, l0, min(L, l0 + step)) for k in range(B) for l0 in range(0, L, step)), B * L * K)
    grads = [None] * 4
    if need_s:
        for acc in sums.values():
            flush(acc)
        total = torch.from_numpy(sum(acc[0] for acc in sums.values()).transpose(0, 2, 1))  # (B, c1 - c0, D)
        grads[0] = total[:, : N - c0] if need[0] else None
        grads[1] = total[:, N - c0 :] if need[1] else None
    if need_w:
        total = torch.from_numpy(sum(v[1] for v in sums.values()))  # (B, K)
        grads[2], grads[3] = total[:, :N], -total[:, N:]  # w = (a, -b)
    return torch.from_numpy(energy), grads


def _torch_chunk(x, y, theta, a, b, need=(False,) * 4, up=None):
    """:func:`_cpu_chunk` in torch, for any device (CUDA sorts with ``torch.sort``)."""
    B, N, _ = x.shape
    M, Lc = y.shape[1], theta.shape[0]
    K = N + M
    s = torch.cat([x.detach() @ theta.T, y.detach() @ theta.T], 1).transpose(1, 2).reshape(B * Lc, K)
    w = torch.cat([a, -b], -1).detach().to(torch.float64)[:, None].expand(B, Lc, K).reshape(B * Lc, K)
    value, gs, gw = _energy_rows(s, w, need[0] or need[1], need[2] or need[3])
    grads = [None] * 4
    if gs is not None:  # sum_l up_l g_l theta_l: (B, K, D)
        total = torch.einsum("blk,bl,ld->bkd", gs.view(B, Lc, K).double(), up.double(), theta.double())
        grads[0], grads[1] = total[:, :N], total[:, N:]
    if gw is not None:
        total = torch.einsum("blk,bl->bk", gw.view(B, Lc, K), up.double())
        grads[2], grads[3] = total[:, :N], -total[:, N:]  # w = (a, -b)
    return value.view(B, Lc).to(x.dtype), grads


def _energies(x, y, theta, a, b, need=(False,) * 4, up=None):
    """``(B, L)`` 1-D energies of all slices and the gradients ``sum_l up[:, l] d energy_l / d input``
    for the inputs ``x, y, a, b`` flagged in ``need`` (x's dtype, None elsewhere).

    On CPU in one pass over the directions (the tasks' work arrays do not grow with ``L``); on other
    devices chunk by chunk, since a chunk's projections and gradients are whole tensors there.
    """
    B, N, _ = x.shape
    L = theta.shape[0]
    if x.device.type == "cpu":
        energies, grads = _cpu_chunk(x, y, theta, a, b, need, up)
    else:
        energies = x.new_empty(B, L)
        grads = [torch.zeros(t.shape, dtype=torch.float64, device=t.device) if k else None
                 for t, k in zip((x, y, a, b), need)]
        for l0, l1 in direction_chunks(L, B, x.shape[1] + y.shape[1], 128):
            energies[:, l0:l1], part = _torch_chunk(x, y, theta[l0:l1], a, b, need,
                                                    None if up is None else up[:, l0:l1])
            for total, g in zip(grads, part):
                if total is not None:
                    total += g
    return energies.to(x.dtype), [None if g is None else g.to(t.dtype) for g, t in zip(grads, (x, y, a, b))]


class SlicedEnergy(torch.autograd.Function):
    """``(B, L)`` 1-D energy distances of ``x @ theta.T`` vs ``y @ theta.T`` with weights ``a``, ``b``.

    Differentiable in ``x``, ``y``, ``a``, ``b`` (``theta`` is a constant); both clouds are first moved
    by one common point (:func:`geom.centred`). The forward pass also sums
    the per-slice gradients (``O((N + M) d)`` memory, whatever the number of slices): a mean over
    slices, the usual upstream, sends the same gradient to every slice and backward only scales
    those sums. Any other upstream makes backward sort again, weighting each slice by its gradient.
    """

    @staticmethod
    def forward(ctx, x, y, theta, a, b):
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3], ctx.needs_input_grad[4])
        up = x.new_ones(x.shape[0], theta.shape[0]) if any(need) else None
        x, y = centred(x, y, a, b)  # one common origin: float32 far from 0 keeps its digits
        energies, sums = _energies(x, y, theta, a, b, need, up)
        ctx.need, ctx.sums = need, sums
        ctx.save_for_backward(x, y, theta, a, b)
        return energies

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # (B, L)
        x, y, theta, a, b = ctx.saved_tensors
        if bool((grad == grad[:, :1]).all()):  # the same upstream for every slice of an item
            scale = grad[:, 0]
            out = [None if g is None else g * scale.view(-1, *[1] * (g.dim() - 1)).to(g.dtype) for g in ctx.sums]
        else:
            out = _energies(x, y, theta, a, b, ctx.need, grad)[1]
        gx, gy, ga, gb = out
        return gx, gy, None, ga, gb
