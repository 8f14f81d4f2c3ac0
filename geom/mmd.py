"""Sliced energy distance (the MMD of the Riesz kernel ``r = 1``) and the sliced MMD particle flow.

Paper: *Generative Sliced MMD Flows with Riesz Kernels*, Johannes Hertrich, Christian Wald, Fabian
Altekrüger, Paul Hagemann (ICLR 2024).

The energy distance is the squared MMD of the Riesz kernel ``K(x, y) = -|x - y|``::

    ED(mu, nu) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|,   X, X' ~ mu,  Y, Y' ~ nu  (not squared)

(the convention of :func:`geom.energy_distance`, weights included). It is linear in the pairwise
distances, and for ``theta`` uniform on the sphere ``E_theta |<theta, z>| = |z| / c_d``, so

    ED(mu, nu) = c_d E_theta ED(theta#mu, theta#nu),   c_d = sqrt(pi) Gamma((d+1)/2) / Gamma(d/2):

``c_d`` times the mean over any number of slices is an *unbiased* estimate of the full energy
distance, not only of a sliced surrogate. On the line, sort the pooled projections ``s`` of both
measures with signed weights ``w = (a, -b)`` (they sum to 0); then ``ED = -sum_ij w_i w_j |s_i - s_j|
= 2 sum_k W_k^2 (s_(k+1) - s_k)`` with ``W_k`` the running sum of the sorted weights (``F - G``
between consecutive atoms): one sort, O(K log K) for ``K = N + M`` instead of O(K^2), and a sum of
non-negative terms (no cancellation). The hand-written backward uses the same sort:

* ``d ED / d s_k = -2 w_k (sum_{s_j < s_k} w_j - sum_{s_j > s_k} w_j)`` (ties count on neither side:
  the gradient of ``|s - s'|`` at ``s = s'`` is 0, as in :func:`geom.energy_distance`);
* ``d ED / d w_k = -2 sum_j w_j |s_k - s_j|``, from running sums of ``w`` and ``w s``.

The directions are constants, so the forward pass sums each slice's gradient (times ``theta_l`` for
the supports) as it goes: memory ``O((N + M) d)`` for any number of slices, and backward, for the
usual mean over slices, only scales the sums.

As in :mod:`geom._ot1d`, sorting is the whole cost: on CPU the slices go through numpy tasks on the
core's thread pool (numpy sorts ~10x faster than torch here), on CUDA through ``torch.sort``.

Directions come from any slicing scheme whose directions are uniform on the sphere (``"mc"``,
``"qmc"``, ...); data-dependent schemes are refused since ``c_d`` holds only for uniform directions.
The scheme's own :meth:`~geom.SlicingScheme.estimate` averages the per-slice values (quasi-Monte
Carlo's randomisation groups and the reservoir's importance weights apply as for ``W_p^p``).

:func:`mmd_flow` moves particles down this estimate with momentum and fresh directions at every
step, as the paper's sliced MMD flow.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch

from . import _ot1d
from ._checks import as_real_tensor, check_bool, check_finite, check_memory, check_positive_int, check_real
from .flows import (FlowResult, _check_callback, _check_finite_at, _check_step, _eval_directions, _generator, _pair,
                    _record_set, _run)
from .measures import measure
from .reductions import _prepare
from .sliced import finish_slices, make_generator, prepare_slices, resolve_scheme

__all__ = ["energy_slicing_constant", "mmd_flow", "sliced_energy_distance"]

_BUFFER = 8
"""Slices whose support gradients a thread keeps in point order before adding them up in one product."""


def energy_slicing_constant(d: int) -> float:
    """``c_d = sqrt(pi) Gamma((d+1)/2) / Gamma(d/2)``, so that ``c_d E_theta |<theta, z>| = |z|``.

    For ``theta`` uniform on ``S^(d-1)`` and ``d >= 2``, ``t = theta_1`` has the density
    ``(1 - t^2)^((d-3)/2) / B(1/2, (d-1)/2)`` on ``[-1, 1]``, hence
    ``E|t| = 2 int_0^1 t (1 - t^2)^((d-3)/2) dt / B(1/2, (d-1)/2) = 2 / ((d-1) B(1/2, (d-1)/2))``
    ``= Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2))`` (with ``B(1/2, k) = sqrt(pi) Gamma(k) / Gamma(k + 1/2)``
    and ``(d-1)/2 Gamma((d-1)/2) = Gamma((d+1)/2)``). By rotation invariance
    ``E|<theta, z>| = |z| E|t| = |z| / c_d``. For ``d = 1``, ``theta = +-1`` and ``c_1 = 1``.

    >>> round(energy_slicing_constant(3), 12), round(energy_slicing_constant(2) / math.pi, 12)
    (2.0, 0.5)
    """
    d = check_positive_int(d, "d")
    if d == 1:
        return 1.0
    return math.exp(0.5 * math.log(math.pi) + math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def _energy_rows(s: torch.Tensor, w: torch.Tensor, need_s: bool, need_w: bool):
    """1-D energy distances of pooled rows in torch (the CUDA path; CPU uses :func:`_cpu_chunk`).

    ``s (R, K)`` are positions, ``w (R, K)`` signed float64 weights ``(a, -b)``.

    Returns ``value (R,)`` and the gradients ``(R, K)`` with respect to ``s`` and ``w`` (None where not
    needed), in the order of ``s``.
    """
    R, K = s.shape
    ss, perm = _ot1d.sort_rows(s, True)  # (R, K) sorted (numpy threads on CPU, torch.sort on CUDA)
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
    """Numpy ``(B, D, N + M)`` pooled supports (coordinates contiguous), ``(B, N + M)`` float64 ``(a, -b)``
    and, per batch item, ``(a_0, b_0)`` when both weight vectors are constant (else None)."""
    pooled = np.ascontiguousarray(torch.cat([x, y], 1).detach().numpy().transpose(0, 2, 1))
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
    pooled, w, const = _pooled(x, y, a, b)  # (B, D, K), (B, K), [(a_0, b_0) or None]
    dtype = pooled.dtype
    th = theta.detach().numpy().astype(dtype)
    th64 = th.astype(np.float64)
    energy = np.empty((B, L), dtype)
    need_s, need_w = need[0] or need[1], need[2] or need[3]
    ups = None if up is None else up.detach().numpy().astype(np.float64)  # (B, Lc)
    ws = _ot1d._Workspace()
    step = max(1, _ot1d._TASK_ELEMENTS // K)  # directions per task
    rows = max(step, _BUFFER)
    c0, c1 = (0 if need[0] else N), (K if need[1] else N)  # columns whose support gradient is needed
    sums: dict[int, list] = {}  # per thread: [(B, D, c1 - c0) support sums, (B, K) weight sums, buffer]
    lock = threading.Lock()

    def flush(acc) -> None:
        """Add the buffered slices of one thread to its support sums: one (D, n) @ (n, c1 - c0) product."""
        k, n, rows, dirs = acc[2]
        if n:
            acc[0][k] += dirs[:n].T @ rows[:n, c0:c1]
        acc[2][1] = 0

    def task(k: int, l0: int, l1: int) -> None:
        r = l1 - l0
        s = ws.get("s", (r, K), dtype)
        np.matmul(th[l0:l1], pooled[k], out=s)  # (r, K) projections
        perm = ws.get("perm", (r, K), np.int64)
        _ot1d._argsort_inplace(s, perm, ws)
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
        ident = threading.get_ident()
        if ident not in sums:
            with lock:  # support: up to _BUFFER slices of gradients in point order, then one product
                sums[ident] = [np.zeros((B, D, c1 - c0)) if need_s else None, np.zeros((B, K)) if need_w else None,
                               [k, 0, np.empty((rows, K)), np.empty((rows, D))] if need_s else None]
        acc = sums[ident]
        if r > 1:  # flat indices into the (r, K) block
            perm += (ws.iota(r) * K)[:, None]
        flat = perm.reshape(-1)
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
            buffer = acc[2]
            if buffer[0] != k or buffer[1] + r > rows:
                flush(acc)
                buffer[0] = k
            n = buffer[1]
            buffer[2][n : n + r].reshape(-1)[flat] = g.reshape(-1)  # point order
            np.multiply(th64[l0:l1], ups[k, l0:l1, None], out=buffer[3][n : n + r])  # up_l theta_l
            buffer[1] = n + r
        if need_w:
            scattered = ws.get("scattered", (r, K), np.float64)  # per-slice gradients in point order
            t = s - s[:, K // 2 : K // 2 + 1].astype(np.float64)  # centred: sum_j w_j |s_k - s_j| is translation invariant
            wt = wk * t
            Q = np.cumsum(wt, axis=-1)
            # h_k = sum_j w_j |s_k - s_j| = t_k (W_below - W_above) - (Q_below - Q_above); d energy / d w_k = -2 h_k
            h = t * (2.0 * P - wk - P[:, -1:]) - (2.0 * Q - wt - Q[:, -1:])
            scattered.reshape(-1)[flat] = h.reshape(-1)
            acc[1][k] -= 2.0 * (ups[k, l0:l1] @ scattered)

    _ot1d.run_tasks(task, ((k, l0, min(L, l0 + step)) for k in range(B) for l0 in range(0, L, step)), B * L * K)
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
        for l0, l1 in _ot1d.direction_chunks(L, B, x.shape[1] + y.shape[1], 128):
            energies[:, l0:l1], part = _torch_chunk(x, y, theta[l0:l1], a, b, need,
                                                    None if up is None else up[:, l0:l1])
            for total, g in zip(grads, part):
                if total is not None:
                    total += g
    return energies.to(x.dtype), [None if g is None else g.to(t.dtype) for g, t in zip(grads, (x, y, a, b))]


class _SlicedEnergy(torch.autograd.Function):
    """``(B, L)`` 1-D energy distances of ``x @ theta.T`` vs ``y @ theta.T`` with weights ``a``, ``b``.

    Differentiable in ``x``, ``y``, ``a``, ``b`` (``theta`` is a constant); both clouds are first moved
    by one common point (:func:`geom._ot1d.centred`). The forward pass also sums
    the per-slice gradients (``O((N + M) d)`` memory, whatever the number of slices): a mean over
    slices, the usual upstream, sends the same gradient to every slice and backward only scales
    those sums. Any other upstream makes backward sort again, weighting each slice by its gradient.
    """

    @staticmethod
    def forward(ctx, x, y, theta, a, b):
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3], ctx.needs_input_grad[4])
        up = x.new_ones(x.shape[0], theta.shape[0]) if any(need) else None
        x, y = _ot1d.centred(x, y, a, b)  # one common origin: float32 far from 0 keeps its digits
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


def sliced_energy_distance(
    mu,
    nu,
    *,
    n_projections: int = 256,
    scheme="mc",
    directions=None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    return_result: bool = False,
    **scheme_options,
):
    """Unbiased sliced estimate of the energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|``.

    ``c_d`` (:func:`energy_slicing_constant`) times the mean over ``L`` directions of the exact 1-D
    energy distances of the projections, each computed by one sort of the ``N + M`` pooled values.
    Its expectation over uniform directions is :func:`geom.energy_distance` (same convention: not
    squared, weights included); its standard error shrinks like ``sqrt(d / L)`` relative to the value.

    Args:
        mu, nu: Measures or anything :func:`geom.measure` accepts (point clouds ``(N, d)`` or batches
            ``(B, N, d)`` compared item by item), of the same dimension.
        n_projections: number of directions ``L`` drawn from the scheme.
        scheme: registered scheme name or :class:`geom.SlicingScheme` instance giving directions uniform
            on the sphere (data-dependent schemes are refused).
        directions: ``(L, d)`` unit rows to use instead of the scheme's.
        seed, generator: the randomness of the directions (one of them; neither uses torch's global RNG).
        return_result: return a :class:`geom.SlicedResult` (``costs`` then holds the per-slice
            estimates ``c_d ED(theta_l#mu, theta_l#nu)``, whose mean is the value).
        **scheme_options: options of the named scheme.

    Returns:
        A tensor on the inputs' device and dtype, differentiable in the supports and the weights:
        scalar, or ``(B,)`` for batches; or a :class:`geom.SlicedResult` with the standard error
        over slices.

    >>> from geom.mmd import sliced_energy_distance
    >>> value = sliced_energy_distance([[0.0, 0.0]], [[3.0, 4.0]], directions=[[0.6, 0.8]])  # 1-D: 2 * 5
    >>> round(value.item() / math.pi, 5)  # times c_2 = pi / 2
    5.0
    """
    return_result = check_bool(return_result, "return_result")
    s = prepare_slices(mu, nu, p=1, n_projections=n_projections, scheme=scheme, directions=directions, seed=seed,
                       generator=generator, scheme_options=scheme_options,
                       uniform_only="the sliced energy distance (its constant c_d)")
    if not s.space.euclidean:
        raise ValueError(f"mu, nu: the sliced energy distance slices point clouds along unit rows; kind "
                         f"{s.mu.kind!r} slices along {s.space.describe()}")
    x, y, a, b, _, unit = _prepare(s.mu, s.nu)  # (B, N, D), (B, M, D), (B, N), (B, M): centred, / unit
    costs = (energy_slicing_constant(x.shape[-1]) * unit) * _SlicedEnergy.apply(x, y, s.directions.detach(), a, b)
    if not bool(torch.isfinite(costs.detach()).all()):  # (B, L) unbiased per slice
        raise ValueError(f"mu, nu: the sliced energy distance leaves the range of {x.dtype} (clouds of extent about "
                         f"{unit:.3g}); rescale the clouds or use float64")
    result = finish_slices(s, costs, None, root=False)  # the scheme's estimate of the mean over slices
    return result if return_result else result.value


def mmd_flow(
    source,
    target,
    *,
    steps: int,
    lr: float = 0.1,
    momentum: float = 0.9,
    n_projections: int = 256,
    scheme="mc",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    record_every=None,
    callback=None,
    eval_projections: int = 256,
    velocity=None,
    **scheme_options,
) -> FlowResult:
    """Sliced MMD flow with the Riesz kernel ``r = 1``: particles descend the sliced energy distance.

    Each step draws fresh directions, takes the gradient ``g`` of :func:`sliced_energy_distance`
    from the particles to ``target`` and moves with momentum (heavy ball, as the paper)::

        v <- momentum * v - lr * g_i / a_i,     x_i <- x_i + v_i

    Dividing by the particle's mass ``a_i`` (``1 / N`` when uniform) makes the step of one particle
    independent of ``N``: ``g_i / a_i = 2 E_theta c_d (G - F)(<theta, x_i>) theta`` is a unit-scale
    drift towards the target.

    Args:
        source: the particles: an ``(N, d)`` point cloud or anything :func:`geom.measure` accepts
            (not a batch), with positive weights.
        target: a measure of the same dimension (any ``M``, any weights).
        steps: number of steps, ``>= 1``.
        lr: step size ``> 0``, in units of length per step.
        momentum: in ``[0, 1)``; 0 is plain gradient descent.
        n_projections: directions per step.
        scheme: name or instance of a scheme with uniform directions (a stateful instance keeps its
            state across steps).
        seed, generator, record_every, callback, eval_projections: as in :func:`geom.flows.sw_flow`
            (the callback sees each step's own estimate, taken before the step's move).
        velocity: ``(N, d)`` initial velocity (default zero). To continue a run exactly, call again
            with ``source = result.particles``, ``velocity = result.info["velocity"]``, the same
            generator object (or one with its state restored) and the same scheme instance.
        **scheme_options: options of the named scheme.

    Returns:
        A :class:`geom.flows.FlowResult`; ``values`` are the sliced energy distances to the target on
        ``eval_projections`` fixed uniform directions at the recorded steps; ``info`` holds the
        options and the final ``velocity``.
    """
    mu, nu = _pair(source, target)
    if bool((mu.weights <= 0).any()):
        raise ValueError("source: expected positive weights for every particle, got a zero weight")
    steps = check_positive_int(steps, "steps")
    lr = _check_step(lr, "lr", mu.dtype)
    momentum = check_real(momentum, "momentum", "in [0, 1)", lambda v: 0 <= v < 1)
    n_projections = check_positive_int(n_projections, "n_projections")
    _check_callback(callback)
    record = _record_set(record_every, steps)
    scheme = resolve_scheme(scheme, scheme_options)
    gen = _generator(seed, generator)
    eval_dirs = _eval_directions(eval_projections, mu.dim, gen, mu.support)

    x = mu.support[0].detach().clone()  # (N, d)
    a = mu.weights[0].detach()  # (N,)
    target_measure = measure(nu.support[0].detach(), weights=nu.weights[0].detach())
    if velocity is None:
        velocity = torch.zeros_like(x)
    else:
        velocity = as_real_tensor(velocity, "velocity", f"an {tuple(x.shape)} array like source")
        if tuple(velocity.shape) != tuple(x.shape):
            raise ValueError(f"velocity: expected shape {tuple(x.shape)} like source, got {tuple(velocity.shape)}")
        velocity = velocity.detach().to(x.device, x.dtype)
        check_finite(velocity, "velocity")

    def step(k):
        nonlocal x, velocity
        xr = x.requires_grad_()
        value = sliced_energy_distance(measure(xr, weights=a), target_measure, n_projections=n_projections,
                                       scheme=scheme, generator=gen)
        (grad,) = torch.autograd.grad(value, xr)
        _check_finite_at(k, "gradient", grad)
        velocity = momentum * velocity - lr * grad / a[:, None]
        x = x.detach() + velocity
        return x, float(value.detach())

    def evaluate(x):
        with torch.no_grad():
            return float(sliced_energy_distance(measure(x, weights=a), target_measure, directions=eval_dirs))

    particles, traj, at, values, done = _run(step, x, steps=steps, record=record, callback=callback,
                                            evaluate=evaluate)
    info = dict(method="mmd", objective="sliced energy distance (Riesz kernel r = 1)", lr=lr, momentum=momentum,
                n_projections=n_projections, scheme=type(scheme).__name__, steps=steps, steps_done=done,
                stopped=done < steps, seed=gen.initial_seed(), eval_projections=eval_dirs.shape[0],
                value=f"sliced energy distance to the target on {eval_dirs.shape[0]} fixed uniform directions",
                velocity=velocity.detach().clone())
    return FlowResult(particles.clone(), traj, at, values, info)
