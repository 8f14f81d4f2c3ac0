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
from ._checks import check_finite, check_p, check_positive_int, describe
from .measure import Measure, measure
from .registry import check_same_space, get_representation, get_scheme

__all__ = ["EstimateContext", "SlicedResult", "SlicingScheme", "make_generator", "resolve_scheme", "sliced_costs", "sliced_wasserstein"]


@dataclass
class EstimateContext:
    """What a scheme's :meth:`SlicingScheme.estimate` may look at besides the per-slice costs."""

    mu: Measure
    nu: Measure
    directions: torch.Tensor  # (L, d), data dtype and device
    p: float
    generator: torch.Generator | None


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
        """``costs (B, L)`` of W_p^p per slice -> estimates of ``E W_p^p`` ``(B,)`` and their stderr ``(B,)``."""
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
        costs: ``(B, L)`` per-slice ``W_p^p`` (``(L,)`` when unbatched).
        directions: ``(L, d)`` directions used.
    """

    value: torch.Tensor
    stderr: torch.Tensor
    costs: torch.Tensor
    directions: torch.Tensor


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
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {describe(seed)}")
    return torch.Generator().manual_seed(seed)


def resolve_scheme(scheme, options=None, *, name: str = "scheme") -> SlicingScheme:
    """A registered scheme name (built with ``options``) or a SlicingScheme instance -> the instance.

    ``name`` is the argument the errors speak of (schemes that wrap another pass ``"base"``).
    """
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


def _check_directions(directions, dim: int, like: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(directions, torch.Tensor):
        try:
            directions = torch.as_tensor(directions)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name}: expected an (L, {dim}) array of unit rows, got {describe(directions)}") from exc
    if directions.ndim != 2 or directions.shape[1] != dim or directions.shape[0] < 1:
        raise ValueError(f"{name}: expected shape (L, {dim}) with L >= 1, got {tuple(directions.shape)}")
    directions = directions.to(device=like.device, dtype=like.dtype)
    check_finite(directions, name)
    norms = directions.detach().norm(dim=1)
    if bool(((norms - 1).abs() > 1e-4).any()):
        k = int((norms - 1).abs().argmax())
        raise ValueError(f"{name}: expected unit rows, got row {k} with norm {norms[k].item():.6g}")
    return directions


def sliced_costs(mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> torch.Tensor:
    """``(B, L)`` per-slice ``W_p^p`` between the projections of ``mu`` and ``nu``, differentiable."""
    return representation_costs(get_representation(mu.kind), mu, nu, directions, p)


def representation_costs(space, mu: Measure, nu: Measure, directions: torch.Tensor, p: float) -> torch.Tensor:
    """:func:`sliced_costs` with the representation ``space`` given (registered or not)."""
    # The fast path pairs sorted atoms and treats weights as constants: not when they need gradients.
    weights_grad = torch.is_grad_enabled() and (mu.weights.requires_grad or nu.weights.requires_grad)
    uniform = mu.uniform and nu.uniform and mu.n_points == nu.n_points and not weights_grad
    if space.linear:
        return _ot1d.LinearSlicedCost.apply(
            mu.support, nu.support, directions, mu.weights, nu.weights, p, uniform
        )
    if space.domain == "circle":  # projections are positions on the circle R/Z (length 1)
        from . import _circle

        def cost(u, v):
            return _circle.circle_costs(u, v, mu.weights, nu.weights, p)
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
    return torch.cat(parts, -1)


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
        scheme.fit(mu, nu, p=p, generator=generator)
    mu, nu = scheme.lift(mu), scheme.lift(nu)
    space = get_representation(mu.kind)
    dim = space.direction_dim(mu)
    if directions is None:
        n = check_positive_int(n_projections, "n_projections")
        directions = _check_directions(scheme.directions(n, dim, generator=generator), dim, mu.support,
                                       f"directions returned by scheme {type(scheme).__name__}")
    else:
        directions = _check_directions(directions, dim, mu.support, "directions")

    costs = sliced_costs(mu, nu, directions, p)  # (B, L) W_p^p per slice
    mean, mean_err = scheme.estimate(costs, EstimateContext(mu, nu, directions, p, generator))
    tiny = torch.finfo(mean.dtype).tiny
    value = torch.where(mean > 0, mean.clamp_min(tiny).pow(1.0 / p), 0.0)  # finite gradient at 0
    # delta method: d (m^(1/p)) / dm = m^(1/p - 1) / p; at m = 0 the error of m^(1/p) is m_err^(1/p).
    m = mean.detach().clamp_min(0)
    stderr = torch.where(m > 0, mean_err * m.pow(1.0 / p - 1.0) / p, mean_err.pow(1.0 / p))
    if not (mu.batched or nu.batched):
        value, stderr, costs = value[0], stderr[0], costs[0]
    if return_result:
        return SlicedResult(value, stderr.detach(), costs, directions)
    return value
