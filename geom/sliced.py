"""The sliced Wasserstein estimator: the one data flow of geom.

::

    geom.measure(obj) -> Measure --+
                                   +--> scheme.fit(mu, nu) ; scheme.lift(measure)   learnable schemes only
                                   +--> scheme.directions(L, d, generator)          (L, d) unit rows
                                   +--> space.project(support, directions)          (B, L, N) on the line
                                   +--> 1-D OT per slice (sorting, autograd)        costs (B, L) = W_p^p
                                   +--> scheme.estimate(costs, context)             E W_p^p and its stderr
                                   +--> SW_p = (E W_p^p)^(1/p), stderr by the delta method

Convention: ``SW_p(mu, nu) = (E_theta W_p^p(theta#mu, theta#nu))^(1/p)`` (as POT).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch

from . import _ot1d
from ._ot1d import absolute_costs
from ._checks import (_as_int, check_bool, check_device, check_finite, check_memory, check_p, check_positive_int,
                      describe)
from .measure import Measure, measure
from .registry import check_same_space, get_representation, get_scheme

__all__ = ["EstimateContext", "SlicedResult", "SlicingScheme", "absolute_costs", "check_gradient_p", "make_generator",
           "relative_costs", "resolve_scheme", "scaled_costs", "slice_distances", "sliced_costs", "sliced_value",
           "sliced_wasserstein"]


@dataclass
class EstimateContext:
    """What a scheme's :meth:`SlicingScheme.estimate` may look at besides the per-slice costs."""

    mu: Measure
    nu: Measure
    directions: torch.Tensor  # (L, d), data dtype and device
    p: float
    generator: torch.Generator | None
    #: ``(B,)`` float64: the costs handed to :meth:`SlicingScheme.estimate` are ``W_p^p / scale^p``
    #: (``scale`` is the largest per-slice ``W_p``, so they lie in [0, 1] whatever ``p``); None: 1.
    #: Estimates linear in the costs need not look at it; estimates that mix in other quantities
    #: (control variates in absolute units, costs kept from earlier calls) convert with it.
    scale: torch.Tensor | None = None


class SlicingScheme(abc.ABC):
    """Base class of slicing schemes (the plugin contract).

    Subclasses implement :meth:`directions`; :meth:`estimate` defaults to the sample mean of the
    per-slice costs and its standard error. Options arrive as keyword arguments of ``__init__``
    (from ``geom.sliced_wasserstein(..., scheme="name", **options)``). Stateful schemes keep their
    state on the instance, so pass the same instance at every step of a training loop.
    """

    def __init__(self, **options):
        if options:
            raise TypeError(f"{type(self).__name__}: unknown options {sorted(options)}")

    @abc.abstractmethod
    def directions(self, n: int, dim: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, dim)`` unit rows. The core casts them to the data's dtype and device."""

    def fit(self, mu: Measure, nu: Measure, *, p: float, generator: torch.Generator | None = None) -> None:
        """Learn from the data before :meth:`directions` is called (when the caller gives none).

        Data-dependent schemes (max-sliced, distributional, augmented) optimise their directions or
        their lifting here and keep the result on the instance; the default learns nothing.
        """

    def lift(self, measure: Measure) -> Measure:
        """The measure the directions act on; augmented schemes map the support to a higher dimension.

        Must stay differentiable in ``measure.support``. The default is the measure itself.
        """
        return measure

    def state_dict(self) -> dict:
        """The instance's state (what it learned or accumulated) as tensors and plain types only.

        Checkpoints store it without pickle (arrays plus JSON, :mod:`geom._state`); a fresh instance
        built with the same options and given it through :meth:`load_state_dict` continues exactly
        where this one stopped. The default takes every attribute of the instance.
        """
        from ._state import scheme_state

        return scheme_state(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (ValueError naming what does not fit)."""
        from ._state import load_scheme_state

        load_scheme_state(self, state)

    @property
    def learns_from_data(self) -> bool:
        """True when the class overrides :meth:`fit` or :meth:`lift`: its slices depend on the data, so
        it cannot serve as the uniform-direction base of another scheme (control variates, reservoir)."""
        cls = type(self)
        return cls.fit is not SlicingScheme.fit or cls.lift is not SlicingScheme.lift

    def estimate(self, costs: torch.Tensor, context: EstimateContext) -> tuple[torch.Tensor, torch.Tensor]:
        """``costs (B, L)`` of W_p^p per slice -> estimates of ``E W_p^p`` ``(B,)`` and their stderr ``(B,)``.

        The costs come in units of ``context.scale ** p`` (see :class:`EstimateContext`), and the
        estimates are read in the same units."""
        L = costs.shape[-1]
        value = costs.mean(-1)
        if L < 2:
            return value, torch.full_like(value, math.nan)
        return value, costs.detach().std(-1) / math.sqrt(L)


@dataclass
class SlicedResult:
    """A sliced Wasserstein estimate with its uncertainty.

    Attributes:
        value: ``SW_p`` (scalar, or ``(B,)`` for batches), differentiable.
        stderr: standard error of ``value`` (delta method on the per-slice costs), detached.
        scaled_costs: ``(B, L)`` per-slice ``W_p^p / scale^p`` in [0, 1] (``(L,)`` when unbatched),
            differentiable: the costs exactly, whatever ``p``.
        directions: ``(L, d)`` directions used.
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


def _check_directions(directions, dim: int, like: torch.Tensor, name: str, rows: int | None = None) -> torch.Tensor:
    if not isinstance(directions, torch.Tensor):
        try:
            directions = torch.as_tensor(directions)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name}: expected an (L, {dim}) array of unit rows, got {describe(directions)}") from exc
    check_device(directions, name)
    if directions.ndim != 2 or directions.shape[1] != dim or directions.shape[0] < 1:
        raise ValueError(f"{name}: expected shape (L, {dim}) with L >= 1, got {tuple(directions.shape)}")
    if rows is not None and directions.shape[0] != rows:
        raise ValueError(f"{name}: expected {rows} directions (the number asked for), got {directions.shape[0]}")
    if directions.is_complex() or directions.dtype == torch.bool:
        raise TypeError(f"{name}: expected real unit rows, got dtype {directions.dtype}")
    directions = directions.to(device=like.device, dtype=like.dtype)
    check_finite(directions, name)
    norms = directions.detach().norm(dim=1)
    if bool(((norms - 1).abs() > 1e-4).any()):
        k = int((norms - 1).abs().argmax())
        raise ValueError(f"{name}: expected unit rows, got row {k} with norm {norms[k].item():.6g}")
    return directions


def sliced_costs(mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> torch.Tensor:
    """``(B, L)`` per-slice ``W_p^p`` between the projections of ``mu`` and ``nu``, differentiable
    (a ValueError naming ``p`` where they leave the dtype's range; :func:`scaled_costs` never does)."""
    return absolute_costs(*scaled_costs(mu, nu, directions, p), p)


def scaled_costs(mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice ``(costs, scale)``, both ``(B, L)``, with ``W_p^p = scale^p costs``: ``costs``
    differentiable in the data's dtype, ``scale`` float64 and constant."""
    return representation_costs(get_representation(mu.kind), mu, nu, directions, p)


def representation_costs(space, mu: Measure, nu: Measure, directions: torch.Tensor, p: float):
    """:func:`scaled_costs` with the representation ``space`` given (registered or not)."""
    # The fast path pairs sorted atoms and treats weights as constants: not when they need gradients.
    weights_grad = torch.is_grad_enabled() and (mu.weights.requires_grad or nu.weights.requires_grad)
    uniform = mu.uniform and nu.uniform and mu.n_points == nu.n_points and not weights_grad
    if space.linear:
        return _finite(mu, nu, *_ot1d.LinearSlicedCost.apply(
            mu.support, nu.support, directions, mu.weights, nu.weights, p, uniform
        ))
    if space.domain == "circle":  # projections are positions on the circle R/Z (length 1)
        from . import _circle

        def cost(u, v):
            return _circle.scaled_circle_costs(u, v, mu.weights, nu.weights, p)
    elif space.domain == "line":
        def cost(u, v):
            return _ot1d.ProjectedCost.apply(u, v, mu.weights, nu.weights, p, uniform)
    else:
        raise ValueError(f"representation {mu.kind!r}: expected domain 'line' or 'circle', got {space.domain!r}")
    B, N, M = mu.batch_size, mu.n_points, nu.n_points
    parts = []
    for l0, l1 in _ot1d.direction_chunks(directions.shape[0], B, N + M):
        th = directions[l0:l1]
        u, v = space.project(mu.support, th), space.project(nu.support, th)  # (B, Lc, N), (B, Lc, M)
        parts.append(cost(u, v))
    return _finite(mu, nu, torch.cat([c for c, _ in parts], -1), torch.cat([s for _, s in parts], -1))


def _finite(mu: Measure, nu: Measure, costs: torch.Tensor, scale: torch.Tensor):
    """``(costs, scale)`` unless a slice is not a number: then the projections of the supports left
    the range of their dtype (coordinates near its largest value), a ValueError naming the measures."""
    if bool(torch.isfinite(costs.detach()).all()) and bool(torch.isfinite(scale).all()):
        return costs, scale
    top = max(mu.support.detach().abs().max().item(), nu.support.detach().abs().max().item())
    if not math.isfinite(top):  # a scheme's lifting (the measures themselves are checked finite)
        raise ValueError(f"mu, nu: the supports the slices are taken from hold non-finite values (lifted by the "
                         f"scheme from {mu.dtype} measures); rescale the measures or use float64")
    if top < torch.finfo(mu.dtype).tiny:  # gradients of the scaled costs go as 1 / scale: beyond the range
        raise ValueError(f"mu, nu: the supports are subnormal numbers (coordinates up to {top:.3g}, below the smallest "
                         f"normal {mu.dtype}, {torch.finfo(mu.dtype).tiny:.3g}); rescale them or use float64")
    raise ValueError(f"mu, nu: the per-slice costs are not finite: the projections of these {mu.kind!r} measures "
                     f"leave the range of {mu.dtype} (coordinates up to {top:.3g}); rescale them or use float64")


def slice_distances(mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> torch.Tensor:
    """``(B, L)`` per-slice ``W_p``, differentiable, for every ``p`` and every scale of the data (the
    p-th root taken of the scaled costs: ``W_p = scale * costs^(1/p)``)."""
    costs, scale = scaled_costs(mu, nu, directions, p)
    return scale.to(costs.dtype) * root_p(costs, p)


def sliced_value(mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> torch.Tensor:
    """``(B,)`` ``(mean_l W_p^p)^(1/p)`` over the given directions (the plain mean), differentiable,
    for every ``p`` and every scale of the data: the objective of schemes that learn directions."""
    costs, scale = relative_costs(*scaled_costs(mu, nu, directions, p), p)
    return scale.to(costs.dtype) * root_p(costs.mean(-1), p)


def relative_costs(costs: torch.Tensor, scale: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice ``(costs, scale)`` (``W_p^p = scale^p costs``) -> ``(costs / S^p (B, L), S (B,))``
    with ``S`` the largest per-slice ``W_p`` of each item (1 where all are 0), so that the costs lie
    in [0, 1] and the largest is 1. Done in logarithms, so no ``p`` overflows or underflows."""
    log_w = scale.log() + costs.detach().double().clamp_min(0).log() / p  # (B, L) log W_p per slice
    log_s = log_w.amax(-1)  # (B,)
    log_s = torch.where(torch.isfinite(log_s), log_s, 0.0)  # every slice 0
    factor = torch.exp(p * (scale.log() - log_s[:, None]))  # (B, L) scale^p / S^p, finite
    return (costs.double() * factor).to(costs.dtype), log_s.exp()


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
        directions: ``(L, d)`` unit rows; override the scheme's directions (its estimate still applies).
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
    p = check_p(p)
    return_result = check_bool(return_result, "return_result")
    mu, nu = measure(mu), measure(nu)
    check_same_space(mu, nu)
    if mu.dim != nu.dim:
        raise ValueError(f"mu, nu: expected the same dimension, got {mu.dim} and {nu.dim}")
    if mu.batch_size != nu.batch_size and 1 not in (mu.batch_size, nu.batch_size):
        raise ValueError(f"mu, nu: expected equal batch sizes, got {mu.batch_size} and {nu.batch_size}")
    if mu.dtype != nu.dtype or mu.device != nu.device:
        dtype = torch.promote_types(mu.dtype, nu.dtype)
        if mu.device != nu.device:
            raise ValueError(f"mu, nu: expected the same device, got {mu.device} and {nu.device}")
        mu, nu = mu.to(dtype), nu.to(dtype)
    B = max(mu.batch_size, nu.batch_size)
    if mu.batch_size != B:
        mu = Measure(mu.support.expand(B, *mu.support.shape[1:]), mu.weights.expand(B, -1), kind=mu.kind,
                     batched=True, uniform=mu.uniform)
    if nu.batch_size != B:
        nu = Measure(nu.support.expand(B, *nu.support.shape[1:]), nu.weights.expand(B, -1), kind=nu.kind,
                     batched=True, uniform=nu.uniform)

    scheme = resolve_scheme(scheme, scheme_options)
    generator = make_generator(seed, generator)
    if directions is None:
        n = check_positive_int(n_projections, "n_projections")
        check_memory(n * (48 * mu.dim + 40 * B), "n_projections", f"{n} directions and their costs")
        scheme.fit(mu, nu, p=p, generator=generator)
    mu, nu = scheme.lift(mu), scheme.lift(nu)
    space = get_representation(mu.kind)
    dim = space.direction_dim(mu)
    if directions is None:
        directions = _check_directions(scheme.directions(n, dim, generator=generator), dim, mu.support,
                                       f"directions returned by scheme {_scheme_name(scheme)}", rows=n)
    else:
        directions = _check_directions(directions, dim, mu.support, "directions")
    check_gradient_p(p, mu, nu)

    costs, scale = relative_costs(*scaled_costs(mu, nu, directions, p), p)  # (B, L) in [0, 1], (B,) max W_p
    mean, mean_err = scheme.estimate(costs, EstimateContext(mu, nu, directions, p, generator, scale))
    value, stderr = _root(mean, mean_err, scale, p, scheme)
    if not (mu.batched or nu.batched):
        value, stderr, costs, scale = value[0], stderr[0], costs[0], scale[0]
    if return_result:
        return SlicedResult(value, stderr.detach(), costs, directions, scale, p)
    return value


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


def _root(mean: torch.Tensor, mean_err: torch.Tensor, scale: torch.Tensor, p: float, scheme):
    """``SW_p = scale * mean^(1/p)`` and its stderr by the delta method, from a scheme's estimate of
    ``E W_p^p / scale^p``; a ValueError naming the scheme where the estimate is not a number."""
    if not bool(torch.isfinite(mean.detach()).all()):
        k = int((~torch.isfinite(mean.detach())).nonzero()[0, 0])
        raise ValueError(f"scheme {_scheme_name(scheme)}: the estimate of E W_p^p is {mean[k].item()} for item "
                         f"{k}, not a finite number")
    tiny = torch.finfo(mean.dtype).tiny
    s = scale.to(mean.dtype)
    value = s * root_p(mean, p)
    # delta method: d (m^(1/p)) / dm = m^(1/p - 1) / p; at m = 0 the error of m^(1/p) is m_err^(1/p).
    m = mean.detach().clamp_min(0)
    err = mean_err.detach()
    stderr = s * torch.where(m > 0, err * m.clamp_min(tiny).pow(1.0 / p - 1.0) / p, err.clamp_min(0).pow(1.0 / p))
    return value, stderr
