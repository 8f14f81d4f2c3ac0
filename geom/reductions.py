"""Pairwise reductions between point clouds: energy, Chamfer and Hausdorff distances.

Every reduction is assembled from two kernels over all pairs ``(x_i, y_j)``, reduced over ``j``:

* ``nearest(x, y, penalty)``: ``argmin_j |x_i - y_j|^2 + penalty_j``, ``(B, N)`` indices;
* ``sums(x, y, w)``: ``sum_j w_j [|x_i - y_j|, (x_i - y_j) / |x_i - y_j|]``, ``(B, N, 1 + D)``.

Each kernel exists twice, in one table: ``"dense"`` (torch, in blocks of rows so memory stays
bounded) and ``"keops"`` (pykeops, compiled for CPU or CUDA; see :mod:`geom._keops`). Neither kernel
keeps an autograd graph over the pairs: the nearest neighbours are gathered back differentiably,
and the energy distance's gradient comes out of ``sums`` with its value. Both backends give the
same numbers; ``backend="auto"`` takes KeOps for large problems when it compiles here.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch.autograd.function import once_differentiable

from . import _keops
from ._checks import GeomWarning, check_memory
from .measures import measure
from .registry import check_same_space

__all__ = ["chamfer_distance", "energy_distance", "hausdorff_distance", "warm_keops_cache"]

_BLOCK = 2**24  # entries of the (B, rows, M, D) differences a dense block holds at once
_AUTO_PAIRS = 2**20  # "auto" takes KeOps from this many pairs in the largest pairwise term on
_warned = False  # the "auto" fallback to dense warns once per process


def _blocks(x: torch.Tensor, y: torch.Tensor) -> list[slice]:
    B, N, D = x.shape
    rows = max(1, _BLOCK // (B * y.shape[1] * D))
    return [slice(s, s + rows) for s in range(0, N, rows)]


def _dense_nearest(x: torch.Tensor, y: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    out = []
    for r in _blocks(x, y):
        sq = (x[:, r, None] - y[:, None]).square().sum(-1)  # (B, n, M)
        out.append((sq + penalty[:, None]).argmin(-1))  # (B, n)
    return torch.cat(out, 1)


def _dense_sums(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(x.dtype).tiny
    out = []
    for r in _blocks(x, y):
        diff = x[:, r, None] - y[:, None]  # (B, n, M, D)
        sq = diff.square().sum(-1)  # (B, n, M)
        w_r = w[:, None] * torch.where(sq > 0, sq.clamp_min(tiny).rsqrt(), 0.0)  # (B, n, M) w_j / |x_i - y_j|
        out.append(torch.cat([(w_r * sq).sum(-1, keepdim=True), torch.einsum("bnm,bnmd->bnd", w_r, diff)], -1))
    return torch.cat(out, 1)  # (B, N, 1 + D)


_BACKENDS = {
    "dense": {"nearest": _dense_nearest, "sums": _dense_sums},
    "keops": {"nearest": _keops.nearest, "sums": _keops.sums},
}


def _pick(name: str, backend, calls) -> str:
    """``"dense"`` or ``"keops"`` for kernel ``name`` run on every ``(x (B, N, D), y (B, M, D))`` of ``calls``.

    ``"auto"`` decides by the largest pairwise term: KeOps from ``max N * M >= _AUTO_PAIRS`` on, when
    it runs here (the energy distance's ``N^2`` and ``M^2`` terms count as much as its ``N M`` one).
    """
    global _warned
    if not isinstance(backend, str) or backend not in ("auto", *_BACKENDS):
        raise ValueError(f"backend: expected one of 'auto', {', '.join(map(repr, _BACKENDS))}; got {backend!r}")
    if backend != "auto":
        return backend
    if max(x.shape[1] * y.shape[1] for x, y in calls) < _AUTO_PAIRS:
        return "dense"
    x = calls[0][0]
    reason = _keops.failure(name, x.shape[-1], x.dtype, x.device)
    if reason is None:
        return "keops"
    if not _warned:
        _warned = True
        warnings.warn(f"backend='auto': using the dense backend; {reason}", GeomWarning, stacklevel=4)
    return "dense"


def _need(name: str, backend: str, calls) -> int:
    """Bytes that ``calls`` of kernel ``name`` hold at once: every result (gathered nearest points or
    sums, ``(B, N, 1 + D)``), plus the largest dense block ``(B, rows, M, D)`` or the contiguous copies
    KeOps makes of broadcast inputs."""
    x = calls[0][0]
    B, D, item = x.shape[0], x.shape[-1], x.element_size()
    per_point = 8 + 2 * D * item if name == "nearest" else 2 * (1 + D) * item  # index + gathered point | sums
    results = sum(B * p.shape[1] * per_point for p, _ in calls)
    if backend == "keops":
        return results + sum(B * (p.shape[1] + q.shape[1]) * D * item for p, q in calls)
    block = max(B * min(p.shape[1], max(1, _BLOCK // (B * q.shape[1] * D))) * q.shape[1] * (2 * D + 4) * item
                for p, q in calls)
    return results + block


def _kernel(name: str, backend, *calls):
    """The kernel ``name`` of ``backend`` ("auto" resolved) for the ``(x, y)`` pairs of supports it
    will run on; a ValueError naming ``mu, nu`` where that would need more memory than is available."""
    chosen = _pick(name, backend, calls)
    x = calls[0][0]
    sizes = " and ".join(f"{p.shape[0]} x {p.shape[1]} x {q.shape[1]}" for p, q in calls)
    check_memory(_need(name, chosen, calls), "mu, nu", f"backend={chosen!r} on (batch x points x points) pairs "
                 f"{sizes}", device=x.device)
    return _BACKENDS[chosen][name]


def _prepare(mu, nu):
    """Measures -> supports ``(B, N, D)``, ``(B, M, D)``, weights ``(B, N)``, ``(B, M)``, ``batched`` and
    a length ``unit``: the supports returned are the clouds moved by one common point (the midpoint
    of their weighted means: float32 far from the origin keeps its digits), and divided by
    ``unit``, a power of 2 (1 unless squared distances of clouds of that extent would leave the
    dtype's range). Distances between the returned supports are the true ones divided by ``unit``."""
    mu, nu = measure(mu), measure(nu)
    check_same_space(mu, nu)
    if mu.support.ndim != 3 or nu.support.ndim != 3:
        raise ValueError(f"mu, nu: expected point supports (B, N, D), got kind {mu.kind!r}")
    if mu.dim != nu.dim:
        raise ValueError(f"mu, nu: expected the same dimension, got {mu.dim} and {nu.dim}")
    if mu.device != nu.device:
        raise ValueError(f"mu, nu: expected the same device, got {mu.device} and {nu.device}")
    B = max(mu.batch_size, nu.batch_size)
    if {mu.batch_size, nu.batch_size} - {1, B}:
        raise ValueError(f"mu, nu: expected equal batch sizes, got {mu.batch_size} and {nu.batch_size}")
    dtype = torch.promote_types(mu.dtype, nu.dtype)
    x, y = mu.support.to(dtype), nu.support.to(dtype)  # (Bx, N, D), (By, M, D), not yet broadcast
    a, b = mu.weights.to(dtype), nu.weights.to(dtype)
    with torch.no_grad():  # the midpoint of the weighted means: per item, or of all items when one side broadcasts
        mx, my = torch.matmul(a[:, None, :], x.detach()), torch.matmul(b[:, None, :], y.detach())  # (Bx|By, 1, D)
        if mu.batch_size != nu.batch_size:
            mx, my = mx.mean(0, keepdim=True), my.mean(0, keepdim=True)
        c = 0.5 * (mx + my)  # (B or 1, 1, D)
    x, y = x - c, y - c
    top = max(x.detach().abs().max().item(), y.detach().abs().max().item())
    fi = torch.finfo(dtype)
    unit = 1.0
    if not fi.tiny**0.5 * 2**12 <= top <= fi.max**0.5 / 2**12 and 0 < top < math.inf:  # squares leave the range
        unit = math.ldexp(1.0, math.frexp(top)[1] - 1)  # a power of 2 (the scaling is exact), in (top / 2, top]
        x, y = (x * (1 / unit), y * (1 / unit)) if unit >= 1 else (x / unit, y / unit)  # factors the dtype holds
    x, y = x.expand(B, -1, -1), y.expand(B, -1, -1)
    return x, y, a.expand(B, -1), b.expand(B, -1), mu.batched or nu.batched, unit


class _Energy(torch.autograd.Function):
    """``2 sum a_i b_j |x_i - y_j| - sum a_i a_j |x_i - x_j| - sum b_i b_j |y_i - y_j|``, ``(B,)``."""

    @staticmethod
    def forward(ctx, x, y, a, b, sums):
        sxy, sxx, syy = sums(x, y, b), sums(x, x, a), sums(y, y, b)  # (B, N|M, 1 + D)
        value = 2 * (a * sxy[..., 0]).sum(-1) - (a * sxx[..., 0]).sum(-1) - (b * syy[..., 0]).sum(-1)  # (B,)
        # d/dx_i = 2 a_i sum_j [b_j u(x_i - y_j) - a_j u(x_i - x_j)], u(d) = d / |d| (0 at d = 0)
        gx = 2 * a[..., None] * (sxy[..., 1:] - sxx[..., 1:]) if ctx.needs_input_grad[0] else None
        gy = 2 * b[..., None] * (sums(y, x, a)[..., 1:] - syy[..., 1:]) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(gx, gy)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        gx, gy = ctx.saved_tensors
        g = grad[:, None, None]  # (B, 1, 1)
        return None if gx is None else g * gx, None if gy is None else g * gy, None, None, None


def _nearest_sq(x: torch.Tensor, y: torch.Tensor, b: torch.Tensor, nearest) -> torch.Tensor:
    """``(B, N)``: ``min_j |x_i - y_j|^2`` over ``j`` with ``b_j > 0``, differentiable in ``x`` and ``y``."""
    penalty = torch.zeros_like(b).masked_fill(b == 0, math.inf)  # (B, M) zero weight: never nearest
    with torch.no_grad():
        idx = nearest(x.detach(), y.detach(), penalty)  # (B, N)
    near = torch.gather(y, 1, idx[..., None].expand(-1, -1, y.shape[-1]))  # (B, N, D)
    return (x - near).square().sum(-1)


def _finish(value: torch.Tensor, batched: bool, unit: float, power: int, what: str) -> torch.Tensor:
    """``value * unit^power`` (the reduction in the data's units), unbatched where the input was; a
    ValueError naming the measures where that leaves the range of the dtype."""
    out = value * unit**power if unit != 1 else value
    bad = ~torch.isfinite(out.detach()) | ((out.detach() == 0) & (value.detach() > 0))  # overflow, underflow
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        size = math.log10(value[k].item()) + power * math.log10(unit) if value[k].item() > 0 else math.inf
        raise ValueError(f"mu, nu: the {what} of item {k} is about 1e{size:.0f}, outside the range of {value.dtype}; "
                         "rescale the clouds or use float64")
    return out if batched else out[0]


def energy_distance(mu, nu, *, backend: str = "auto") -> torch.Tensor:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with ``X ~ mu``, ``Y ~ nu`` (not squared).

    Args:
        mu, nu: Measures or anything :func:`geom.measure` accepts, of the same dimension ``D``;
            ``(B, N, D)`` batches are compared item by item.
        backend: ``"dense"`` (torch), ``"keops"`` (pykeops) or ``"auto"``: KeOps when the largest
            pairwise term, ``max(N, M)^2`` here (``N M`` for Chamfer and Hausdorff), reaches ``2**20``
            pairs and KeOps compiles here; otherwise dense.

    Raises:
        ValueError: naming ``mu, nu`` and the memory needed, where the chosen backend would need more
            memory than is available (on the CPU), before anything is allocated.

    Returns:
        A tensor on the inputs' device and dtype: scalar, or ``(B,)`` for batches, differentiable in
        the support points (the gradient of ``|x - x'|`` at ``x = x'`` is taken as 0). On the line it
        equals ``2 * integral (F - G)^2``. GeomLoss's ``SamplesLoss("energy")`` is half of it.

    >>> import geom
    >>> geom.energy_distance([[0.0, 0.0, 0.0]], [[3.0, 4.0, 0.0]]).item()
    10.0
    """
    x, y, a, b, batched, unit = _prepare(mu, nu)
    sums = _kernel("sums", backend, (x, y), (x, x), (y, y), (y, x))  # every pairwise term decides
    return _finish(_Energy.apply(x, y, a, b, sums), batched, unit, 1, "energy distance")


def chamfer_distance(mu, nu, *, backend: str = "auto") -> torch.Tensor:
    """Chamfer distance ``sum_i a_i min_j |x_i - y_j|^2 + sum_j b_j min_i |x_i - y_j|^2``.

    With uniform weights it is the mean squared nearest-neighbour distance from ``mu`` to ``nu`` plus
    the one from ``nu`` to ``mu``. Points of zero weight (batch padding) are nobody's nearest.

    Args:
        mu, nu: Measures or anything :func:`geom.measure` accepts (weights ``a``, ``b`` sum to 1).
        backend: ``"dense"``, ``"keops"`` or ``"auto"``, as in :func:`energy_distance`.

    Returns:
        A differentiable tensor: scalar, or ``(B,)`` for batches.

    >>> import geom
    >>> geom.chamfer_distance([[0.0, 0.0, 0.0]], [[3.0, 4.0, 0.0]]).item()
    50.0
    """
    x, y, a, b, batched, unit = _prepare(mu, nu)
    nearest = _kernel("nearest", backend, (x, y), (y, x))
    value = (a * _nearest_sq(x, y, b, nearest)).sum(-1) + (b * _nearest_sq(y, x, a, nearest)).sum(-1)  # (B,)
    return _finish(value, batched, unit, 2, "Chamfer distance")


def hausdorff_distance(mu, nu, *, backend: str = "auto") -> torch.Tensor:
    """Symmetric Hausdorff distance ``max(max_i min_j |x_i - y_j|, max_j min_i |x_i - y_j|)`` (not squared).

    Only points of positive weight count, so zero-weight padding of a batch changes nothing.

    Args:
        mu, nu: Measures or anything :func:`geom.measure` accepts.
        backend: ``"dense"``, ``"keops"`` or ``"auto"``, as in :func:`energy_distance`.

    Returns:
        A differentiable tensor: scalar, or ``(B,)`` for batches (the gradient at 0 is 0).

    >>> import geom
    >>> geom.hausdorff_distance([[0.0, 0.0], [1.0, 0.0]], [[0.0, 2.0]]).item()
    2.2360680103302
    """
    x, y, a, b, batched, unit = _prepare(mu, nu)
    nearest = _kernel("nearest", backend, (x, y), (y, x))
    dx = _nearest_sq(x, y, b, nearest).masked_fill(a == 0, 0.0)  # (B, N)
    dy = _nearest_sq(y, x, a, nearest).masked_fill(b == 0, 0.0)  # (B, M)
    sq = torch.maximum(dx.amax(-1), dy.amax(-1))  # (B,)
    value = torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), 0.0)
    return _finish(value, batched, unit, 1, "Hausdorff distance")


def warm_keops_cache() -> list[str]:
    """Compile every KeOps formula the reductions use (3-D, float32 and float64, each device here).

    They go to KeOps' cache folder (see :mod:`geom._keops`), where every later process finds them.
    Raises RuntimeError saying why when pykeops cannot import or compile. Prints nothing on stdout;
    each formula that is not yet in the cache says on stderr, in one line, that it is compiling.

    Returns:
        One description per compiled formula, e.g. ``"ArgMin(SqNorm2(x-y)+p) D=3 float32 cpu"``.
    """
    return _keops.warm_cache()
