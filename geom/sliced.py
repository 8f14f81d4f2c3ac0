"""The sliced Wasserstein estimator: the one data flow of geom.

::

    geom.measure(obj) -> Measure --+   prepare_slices: validate, broadcast, resolve the scheme,
                                   +--> scheme.fit(mu, nu) ; scheme.lift(measure)   learnable schemes only
                                   +--> scheme.directions(L, space, generator)      (L, *space.shape)
                                   +--> space.check(directions)                     the representation's space
                                   |
                                   +--> rep.project(support, directions)            (B, L, N) on the line / circle
                                   +--> 1-D OT per slice (sorting, autograd)        costs (B, L) = W_p^p
                                   |
                                   +--> scheme.estimate(costs, context)             finish_slices: E W_p^p, stderr,
                                   +--> SW_p = (E W_p^p)^(1/p), stderr by the delta method, unbatched

Every user of the estimator (the energy distance, the distance to the uniform law on the sphere,
the flows, graph ISW, the learned schemes' inner objectives) goes through :func:`prepare_slices`
and :func:`finish_slices`, so that every scheme's directions and estimate apply on every path.

Convention: ``SW_p(mu, nu) = (E_theta W_p^p(theta#mu, theta#nu))^(1/p)`` (as POT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import _ot1d
from ._checks import _as_int, all_finite, check_bool, check_memory, check_p, check_positive_int, describe
from ._ot1d import absolute_costs
from .contract import DirectionSpace, EstimateContext, Representation, SlicingScheme
from .measures import Measure, measure
from .registry import check_same_space, get_representation, get_scheme

__all__ = ["EstimateContext", "SlicedResult", "Slices", "SlicingScheme", "absolute_costs", "check_gradient_p",
           "direction_space", "finish_slices", "make_generator", "prepare_slices", "relative_costs", "resolve_scheme",
           "scaled_costs", "slice_distances", "sliced_costs", "sliced_value", "sliced_wasserstein"]


@dataclass
class SlicedResult:
    """A sliced Wasserstein estimate with its uncertainty.

    Attributes:
        value: ``SW_p`` (scalar, or ``(B,)`` for batches), differentiable.
        stderr: standard error of ``value`` (delta method on the per-slice costs), detached.
        scaled_costs: ``(B, L)`` per-slice ``W_p^p / scale^p`` in [0, 1] (``(L,)`` when unbatched),
            differentiable: the costs exactly, whatever ``p``.
        directions: ``(L, *shape)`` directions used, in the representation's direction space.
        scale: ``(B,)`` (scalar when unbatched) float64, the largest per-slice ``W_p``; None: 1.
        p: the order.
    """

    value: torch.Tensor
    stderr: torch.Tensor
    scaled_costs: torch.Tensor
    directions: torch.Tensor
    scale: torch.Tensor | None = None
    p: float = 1.0

    @property
    def costs(self) -> torch.Tensor:
        """Per-slice ``W_p^p``, differentiable; a ValueError where they leave the range of the
        data's dtype (large ``p``): then read ``scaled_costs`` and ``scale``."""
        if self.scale is None:
            return self.scaled_costs
        return absolute_costs(self.scaled_costs, self.scale[..., None], self.p)


def make_generator(seed=None, generator=None) -> torch.Generator | None:
    """A CPU generator from ``seed`` or ``generator`` (not both); None leaves torch's global RNG."""
    if seed is not None and generator is not None:
        raise ValueError("seed, generator: pass one of them, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {describe(generator)}")
        return generator
    if seed is None:
        return None
    value = _as_int(seed)
    if value is None:
        raise TypeError(f"seed: expected an int, got {describe(seed)}")
    if not -(1 << 63) <= value < 1 << 64:
        raise ValueError(f"seed: expected an integer in [-2^63, 2^64), got {value}")
    return torch.Generator().manual_seed(value)


def resolve_scheme(scheme, options=None, *, name: str = "scheme") -> SlicingScheme:
    """A registered scheme name (built with ``options``) or a SlicingScheme instance -> the instance.

    ``name`` is the argument the errors speak of (schemes that wrap another pass ``"base"``).
    """
    for key in ("weights", "kind"):
        if key in (options or {}):
            raise TypeError(f"{key}: belongs to the measures, not to the scheme options: build them with "
                            f"geom.measure(x, {key}=...) and pass the Measures")
    if isinstance(scheme, SlicingScheme):
        if options:
            raise TypeError(f"{name} options {sorted(options)} given with a scheme instance; set them on the instance")
        return scheme
    if not isinstance(scheme, str):
        raise TypeError(f"{name}: expected a registered name or a SlicingScheme instance, got {describe(scheme)}")
    try:
        cls = get_scheme(scheme)
    except ValueError as exc:
        raise ValueError(f"{name}: {str(exc).removeprefix('scheme: ')}") from None
    return cls(**(options or {}))


def sliced_costs(mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> torch.Tensor:
    """``(B, L)`` per-slice ``W_p^p`` between the projections of ``mu`` and ``nu``, differentiable
    (a ValueError naming ``p`` where they leave the dtype's range; :func:`scaled_costs` never does)."""
    return absolute_costs(*scaled_costs(mu, nu, directions, p), p)


def scaled_costs(mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice ``(costs, scale)``, both ``(B, L)``, with ``W_p^p = scale^p costs``: ``costs``
    differentiable in the data's dtype, ``scale`` float64 and constant."""
    return representation_costs(get_representation(mu.kind), mu, nu, directions, p)


def representation_costs(rep: Representation, mu: Measure, nu: Measure, directions: torch.Tensor, p: float):
    """:func:`scaled_costs` with the representation ``rep`` given (registered or not)."""
    # The fast path pairs sorted atoms and treats weights as constants: not when they need gradients.
    weights_grad = torch.is_grad_enabled() and (mu.weights.requires_grad or nu.weights.requires_grad)
    uniform = mu.uniform and nu.uniform and mu.n_points == nu.n_points and not weights_grad
    if rep.linear:
        return _finite(mu, nu, *_ot1d.LinearSlicedCost.apply(
            mu.support, nu.support, directions, mu.weights, nu.weights, p, uniform
        ))
    if rep.domain not in _ot1d.COSTS:
        raise ValueError(f"representation {mu.kind!r}: expected domain {' or '.join(map(repr, _ot1d.COSTS))}, got "
                         f"{rep.domain!r}")
    B, N, M = mu.batch_size, mu.n_points, nu.n_points
    parts = []
    for l0, l1 in _ot1d.direction_chunks(directions.shape[0], B, N + M):
        th = directions[l0:l1]
        u, v = rep.project(mu.support, th), rep.project(nu.support, th)  # (B, Lc, N), (B, Lc, M)
        parts.append(_ot1d.projected_costs(rep.domain, u, v, mu.weights, nu.weights, p, uniform))
    return _finite(mu, nu, torch.cat([c for c, _ in parts], -1), torch.cat([s for _, s in parts], -1))


def _check_normal(mu: Measure, nu: Measure) -> None:
    """A ValueError naming the measures when every coordinate is a subnormal number (nonzero, below the
    smallest normal of the dtype): gradients of the scaled costs go as 1 / scale and would overflow."""
    if not mu.support.is_floating_point():
        return
    top = max(mu.support.detach().abs().max().item(), nu.support.detach().abs().max().item())
    tiny = torch.finfo(mu.dtype).tiny
    if 0 < top < tiny:
        raise ValueError(f"mu, nu: the supports are subnormal numbers (coordinates up to {top:.3g}, below the smallest "
                         f"normal {mu.dtype}, {tiny:.3g}); rescale them or use float64")


def _finite(mu: Measure, nu: Measure, costs: torch.Tensor, scale: torch.Tensor):
    """``(costs, scale)`` unless a slice is not a number: then the projections of the supports left
    the range of their dtype (coordinates near its largest value), a ValueError naming the measures."""
    if all_finite(costs) and all_finite(scale):
        return costs, scale
    top = max(mu.support.detach().abs().max().item(), nu.support.detach().abs().max().item())
    if not math.isfinite(top):  # a scheme's lifting (the measures themselves are checked finite)
        raise ValueError(f"mu, nu: the supports the slices are taken from hold non-finite values (lifted by the "
                         f"scheme from {mu.dtype} measures); rescale the measures or use float64")
    _check_normal(mu, nu)
    raise ValueError(f"mu, nu: the per-slice costs are not finite: the projections of these {mu.kind!r} measures "
                     f"leave the range of {mu.dtype} (coordinates up to {top:.3g}); rescale them or use float64")


def slice_distances(mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> torch.Tensor:
    """``(B, L)`` per-slice ``W_p``, differentiable, for every ``p`` and every scale of the data (the
    p-th root taken of the scaled costs: ``W_p = scale * costs^(1/p)``)."""
    costs, scale = scaled_costs(mu, nu, directions, p)
    return scale.to(costs.dtype) * root_p(costs, p)


def sliced_value(mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> torch.Tensor:
    """``(B,)`` ``(mean_l W_p^p)^(1/p)`` over the given directions (the plain Monte Carlo mean, through
    the one estimator), differentiable in the data and the directions, for every ``p`` and every scale
    of the data: the objective of schemes that learn directions."""
    _check_normal(mu, nu)  # an ascent on these would step by gradients of 1 / scale
    value = _estimate(mu, nu, p=p, directions=directions, scheme="mc").value
    return value if value.ndim else value[None]


_F32 = np.finfo(np.float32)


def relative_costs(costs: torch.Tensor, scale: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice ``(costs, scale)`` (``W_p^p = scale^p costs``) -> ``(costs / S^p (B, L), S (B,))``
    with ``S`` the largest per-slice ``W_p`` of each item (1 where all are 0), so that the costs lie
    in [0, 1] and the largest is 1. Done in logarithms, so no ``p`` overflows or underflows."""
    # The constants in numpy (a dozen (B, L) operations: ~1 us each there, ~8 us each in torch).
    c, sc = costs.detach().cpu().numpy().astype(np.float64), scale.detach().cpu().numpy().astype(np.float64)
    big = c.max(-1)  # (B,)
    if bool((sc == 1).all() and ((big > 0) & (big < np.inf)).all()):  # unscaled slices: S^p = max costs
        factor, top = 1.0 / big[:, None], big ** (1.0 / p)
    else:  # in logarithms, so no p overflows or underflows
        log_scale = np.log(sc)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_w = log_scale + np.log(np.maximum(c, 0)) / p  # (B, L) log W_p per slice
        log_s = log_w.max(-1)  # (B,)
        log_s[~np.isfinite(log_s)] = 0.0  # every slice 0
        factor, top = np.exp(p * (log_scale - log_s[:, None])), np.exp(log_s)  # (B, L) scale^p / S^p, (B,) S
    top = torch.from_numpy(top).to(scale.device)
    if costs.dtype == torch.float32 and bool(((factor >= _F32.tiny) & (factor <= _F32.max)).all()):
        factor = factor.astype(np.float32)  # one autograd node, not three; a float32 factor costs an ulp
    elif costs.dtype != torch.float64:  # factors beyond float32 (or another dtype): the product in float64
        return (costs.double() * torch.from_numpy(factor).to(costs.device)).to(costs.dtype), top
    return costs * torch.from_numpy(factor).to(costs.device), top


@dataclass
class Slices:
    """What :func:`prepare_slices` hands to a user of the estimator, and :func:`finish_slices` takes back.

    Attributes:
        mu, nu: the measures, validated, of one dtype, broadcast to one batch size ``B`` and lifted by
            the scheme (``nu`` is None for a distance to a fixed law, such as the uniform one).
        representation: the representation they are sliced by; ``space`` its direction space.
        scheme: the resolved scheme instance.
        directions: ``(L, *space.shape)`` checked directions, in the data's dtype and device.
        drawn: whether the scheme drew them (False: the caller gave them).
        generator, p: as given; batched: whether a result keeps its batch axis.
    """

    mu: Measure
    nu: Measure | None
    representation: Representation
    space: DirectionSpace
    scheme: SlicingScheme
    directions: torch.Tensor
    drawn: bool
    generator: torch.Generator | None
    p: float
    batched: bool


def direction_space(mu: Measure, representation: Representation | None = None) -> DirectionSpace:
    """The direction space of measures like ``mu`` (of its registered kind, or of ``representation``)."""
    return (representation or get_representation(mu.kind)).direction_space(mu)


def _broadcast(mu: Measure, nu: Measure) -> tuple[Measure, Measure]:
    """Two measures of one space -> one dtype and one batch size (a batch of one broadcasts)."""
    check_same_space(mu, nu)
    if mu.dim != nu.dim:
        raise ValueError(f"mu, nu: expected the same dimension, got {mu.dim} and {nu.dim}")
    if mu.batch_size != nu.batch_size and 1 not in (mu.batch_size, nu.batch_size):
        raise ValueError(f"mu, nu: expected equal batch sizes, got {mu.batch_size} and {nu.batch_size}")
    if mu.device != nu.device:
        raise ValueError(f"mu, nu: expected the same device, got {mu.device} and {nu.device}")
    if mu.dtype != nu.dtype:
        dtype = torch.promote_types(mu.dtype, nu.dtype)
        mu, nu = mu.to(dtype), nu.to(dtype)
    B = max(mu.batch_size, nu.batch_size)
    return mu.expand(B), nu.expand(B)


def prepare_slices(mu, nu, *, p: float = 2, n_projections: int = 256, scheme="mc", directions=None, seed=None,
                   generator=None, scheme_options=None, representation: Representation | None = None,
                   uniform_only: str | None = None, bytes_per_direction: int = 0) -> Slices:
    """Validate and broadcast the measures, resolve the scheme, fit and lift, draw and check the directions.

    Args:
        mu, nu: anything :func:`geom.measure` accepts; ``nu=None`` for a distance to a fixed law.
        p, n_projections, scheme, directions, seed, generator: as in :func:`sliced_wasserstein`.
        scheme_options: options of a named scheme.
        representation: slice by this representation instead of the registered one of ``mu.kind``.
        uniform_only: refuse schemes that learn from the data, saying that ``uniform_only`` needs
            uniform directions (the energy distance's constant, the distance to a fixed law).
        bytes_per_direction: memory one direction costs the caller beyond the core's own (its checks).
    """
    p = check_p(p)
    mu = measure(mu)
    if nu is None:
        batched = mu.batched
    else:
        mu, nu = _broadcast(mu, measure(nu))
        batched = mu.batched or nu.batched
    scheme = resolve_scheme(scheme, scheme_options)
    if uniform_only and scheme.learns_from_data:
        raise ValueError(f"scheme: {uniform_only} needs directions with the uniform law, got the data-dependent "
                         f"scheme {_scheme_name(scheme)}")
    generator = make_generator(seed, generator)
    drawn = directions is None
    if drawn:
        n = check_positive_int(n_projections, "n_projections")
        check_memory(n * (48 * mu.dim + 40 * mu.batch_size + bytes_per_direction), "n_projections",
                     f"{n} directions and their costs")
        if nu is not None:
            scheme.fit(mu, nu, p=p, generator=generator)
    mu = scheme.lift(mu)
    nu = None if nu is None else scheme.lift(nu)
    rep = representation or get_representation(mu.kind)
    space = rep.direction_space(mu)
    scheme.check_space(space)
    if drawn:
        directions = space.check(scheme.directions(n, space, generator=generator), f"directions returned by "
                                 f"scheme {_scheme_name(scheme)}", mu.support, rows=n)
    else:
        directions = space.check(directions, "directions", mu.support)
    if nu is not None:
        check_gradient_p(p, mu, nu)
    return Slices(mu, nu, rep, space, scheme, directions, drawn, generator, p, batched)


def finish_slices(s: Slices, costs: torch.Tensor, scale: torch.Tensor | None, *, root: bool = True) -> SlicedResult:
    """``scheme.estimate`` on the per-slice costs, then the value, its stderr and the batch axis.

    Args:
        s: the prepared slices.
        costs: ``(B, L)`` per-slice costs (``W_p^p / scale^p`` from :func:`relative_costs` when ``root``).
        scale: ``(B,)`` float64 unit of the costs (None: 1).
        root: take ``SW_p = scale (E costs)^(1/p)`` and its stderr by the delta method; False: the
            value is the estimate itself (times ``scale``), for quantities that are means of slices.
    """
    context = EstimateContext(s.mu, s.nu, s.directions, s.p, s.generator, scale, s.drawn, s.space)
    mean, mean_err = s.scheme.estimate(costs, context)
    if root:
        value, stderr = _root(mean, mean_err, scale, s.p, s.scheme)
    else:
        _check_estimate(mean, s.scheme)
        unit = 1.0 if scale is None else scale.to(mean.dtype)
        value, stderr = unit * mean, unit * mean_err.detach()
    if not s.batched:
        value, stderr, costs = value[0], stderr[0], costs[0]
        scale = None if scale is None else scale[0]
    return SlicedResult(value, stderr.detach(), costs, s.directions, scale, s.p)


def sliced_wasserstein(
    mu,
    nu,
    *,
    p: float = 2,
    n_projections: int = 256,
    scheme="mc",
    directions=None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    return_result: bool = False,
    **scheme_options,
):
    """Sliced Wasserstein distance ``SW_p = (E_theta W_p^p(theta#mu, theta#nu))^(1/p)``.

    Args:
        mu, nu: Measures or anything :func:`geom.measure` accepts, of the same kind and dimension;
            ``(B, N, D)`` batches are compared item by item (the batch sizes must match).
        p: order, ``p >= 1``.
        n_projections: number of directions ``L`` drawn from the scheme.
        scheme: registered scheme name (see :func:`geom.schemes`) or a :class:`SlicingScheme` instance.
        directions: ``(L, *shape)`` directions in the representation's direction space (``(L, d)`` unit
            rows for points and meshes, ``(L, d, 2)`` frames for the sphere, ``(L, n, n)`` symmetric
            matrices for SPD); override the scheme's directions (its estimate still applies).
        seed, generator: the randomness of the directions (one of them; neither uses torch's global RNG).
        return_result: return a :class:`SlicedResult` with the standard error, costs and directions.
        **scheme_options: options of the named scheme.

    Returns:
        A differentiable tensor: scalar, or ``(B,)`` for batches; or a :class:`SlicedResult`.

    >>> import geom, torch
    >>> x = torch.tensor([[0.0], [1.0]])
    >>> geom.sliced_wasserstein(x, x + 3, directions=[[1.0]]).item()
    3.0
    """
    return_result = check_bool(return_result, "return_result")
    result = _estimate(mu, nu, p=p, n_projections=n_projections, scheme=scheme, directions=directions, seed=seed,
                       generator=generator, scheme_options=scheme_options)
    return result if return_result else result.value


def _estimate(mu, nu, **settings) -> SlicedResult:
    """The estimator: prepared slices, their costs on the line or the circle, the scheme's estimate."""
    s = prepare_slices(mu, nu, **settings)
    costs, scale = relative_costs(*representation_costs(s.representation, s.mu, s.nu, s.directions, s.p), s.p)
    return finish_slices(s, costs, scale)  # from (B, L) costs in [0, 1] and (B,) the largest W_p


def check_gradient_p(p: float, mu: Measure, nu: Measure) -> None:
    """A ValueError naming ``p`` where autograd would differentiate ``SW_p`` but ``p`` exceeds
    ``1 / sqrt(tiny)`` of the data's dtype (about 9e18 in float32): the factor ``1 / p`` of the
    derivative of the p-th root would underflow there, and the gradient with it."""
    need = torch.is_grad_enabled() and any(t.requires_grad for t in (mu.support, nu.support, mu.weights, nu.weights))
    top = torch.finfo(mu.dtype).tiny ** -0.5
    if need and p > top:
        raise ValueError(f"p: gradients of SW_p in {mu.dtype} need p <= {top:.3g} (beyond it the factor 1/p of "
                         f"the derivative underflows), got {p:g}; use float64 or a smaller p")


def root_p(mean: torch.Tensor, p: float) -> torch.Tensor:
    """``mean^(1/p)`` with a finite gradient at 0: a negative estimate (control variates can give
    one) reads as 0, and NaN stays NaN."""
    tiny = torch.finfo(mean.dtype).tiny
    out = torch.where(mean > 0, mean.clamp_min(tiny).pow(1.0 / p), mean.new_zeros(()))
    return torch.where(torch.isnan(mean), mean, out)


def _scheme_name(scheme: SlicingScheme) -> str:
    cls = type(scheme)
    return f"{cls.__name__} (module {cls.__module__})"


def _check_estimate(mean: torch.Tensor, scheme) -> None:
    if not all_finite(mean):
        k = int((~torch.isfinite(mean.detach())).nonzero()[0, 0])
        raise ValueError(f"scheme {_scheme_name(scheme)}: the estimate of E W_p^p is {mean[k].item()} for item "
                         f"{k}, not a finite number")


def _root(mean: torch.Tensor, mean_err: torch.Tensor, scale: torch.Tensor | None, p: float, scheme):
    """``SW_p = scale * mean^(1/p)`` and its stderr by the delta method, from a scheme's estimate of
    ``E W_p^p / scale^p``; a ValueError naming the scheme where the estimate is not a number."""
    _check_estimate(mean, scheme)
    if scale is None:
        scale = torch.ones(mean.shape, dtype=torch.float64, device=mean.device)
    tiny = torch.finfo(mean.dtype).tiny
    s = scale.to(mean.dtype)
    # The delta method, d (m^(1/p)) / dm = m^(1/p - 1) / p, and at m = 0 the error of m^(1/p) is
    # m_err^(1/p). Detached, so in numpy (eight (B,) operations: ~1 us each there, ~8 us each in torch).
    m = mean.detach().cpu().numpy()
    err = mean_err.detach().cpu().numpy().astype(m.dtype, copy=False)
    if bool((m >= tiny).all()):  # root_p's guards are four autograd nodes (~8 us each, both ways) idle here
        value, e = s * mean.pow(1.0 / p), err * m ** (1.0 / p - 1.0) / p
    else:
        value, m = s * root_p(mean, p), np.maximum(m, 0)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the branch not taken may overflow
            e = np.where(m > 0, err * np.maximum(m, tiny) ** (1.0 / p - 1.0) / p, np.maximum(err, 0) ** (1.0 / p))
    return value, s.detach() * torch.from_numpy(e.astype(m.dtype, copy=False)).to(mean.device)
