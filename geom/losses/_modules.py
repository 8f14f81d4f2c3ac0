"""``torch.nn.Module`` losses over point clouds and feature batches, each a thin door to one functional.

:class:`SlicedWassersteinLoss` calls :func:`geom.sliced_wasserstein`, :class:`SlicedEnergyLoss`
:func:`geom.sliced_energy_distance` and :class:`ChamferLoss` :func:`geom.chamfer_distance`: every value
comes from the one estimator (or the one pairwise reduction), so a module and its functional agree
to the last bit when they draw the same directions.

What a module adds is what lasts across the steps of a training loop:

* **its scheme instance**, built once in ``__init__`` (from a name and options, or given), so a stateful
  scheme (``"reservoir"``) keeps its reservoir and a learned one (``"max"``, ``"vmf-dsw"``, ``"dsw"``) warm
  starts from the previous step;
* **its generator**, a CPU ``torch.Generator`` that every call draws its directions from: ``seed=s``
  makes the first call equal ``geom.sliced_wasserstein(..., seed=s)`` and the k-th call equal the k-th
  draw of one ``torch.Generator().manual_seed(s)``; ``generator=g`` uses (and advances) ``g``; neither
  seeds a fresh generator from torch's global RNG at construction (so ``torch.manual_seed`` before
  building the loss makes a run repeat);
* **its state dict**: the scheme's state (:meth:`geom.SlicingScheme.state_dict`, tensors and plain
  types) and the generator's state travel as the module's extra state; ``torch.nn.Module`` attributes of
  the scheme (an amortized model's network) are registered as the submodule ``scheme_modules``, so
  their weights are ordinary entries of ``state_dict()``, move with ``.to(device)`` and are listed by
  :meth:`SlicedWassersteinLoss.scheme_parameters`. A fresh module built with the same arguments and
  given that state dict continues exactly where the first one stopped (same next directions).

Inputs: ``x``, ``y`` are ``(B, N, d)`` batches of clouds (compared item by item; a batch of one broadcasts)
or single ``(N, d)`` clouds (feature batches for feature alignment: ``N`` samples of ``d`` features),
with optional weights ``(B, N)`` / ``(N,)`` (non-negative, normalised per cloud; zero pads a batch).
``N`` may differ between ``x`` and ``y``.

Reductions over the batch: ``"mean"`` (default), ``"sum"``, ``"none"`` (the ``(B,)`` values); an unbatched
pair gives a scalar whatever the reduction.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from ..measures import Measure, measure
from ..mmd import sliced_energy_distance
from ..reductions import _BACKENDS, chamfer_distance
from ..sliced import make_generator, resolve_scheme, sliced_wasserstein

__all__ = ["ChamferLoss", "SlicedEnergyLoss", "SlicedWassersteinLoss"]

_REDUCTIONS = ("mean", "none", "sum")


def _check_reduction(reduction) -> str:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {', '.join(map(repr, _REDUCTIONS))}, got {reduction!r}")
    return reduction


def _reduce(value: torch.Tensor, reduction: str) -> torch.Tensor:
    """``(B,)`` values (or a scalar for an unbatched pair) -> the reduction over the batch."""
    if value.ndim == 0 or reduction == "none":
        return value
    return value.mean() if reduction == "mean" else value.sum()


def _cloud(x, weights, name: str, weights_name: str):
    """A validated ``(B, N, d)`` / ``(N, d)`` tensor (or a Measure) with its weights -> a Measure.

    Errors name the argument, say what was expected and what came."""
    if isinstance(x, Measure):
        if weights is not None:
            raise ValueError(f"{weights_name}: {name} is a geom.Measure, which carries its own weights; "
                             f"got {weights_name} as well")
        return x
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, N, d) or (N, d) (or a geom.Measure), "
                        f"got {_checks.describe(x)}")
    if x.ndim not in (2, 3) or x.shape[-2] < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name}: expected shape (B, N, d) (a batch of clouds) or (N, d) (one cloud or a "
                         f"feature batch) with N, d >= 1, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if weights is not None:
        if not isinstance(weights, torch.Tensor):
            raise TypeError(f"{weights_name}: expected a torch.Tensor of shape {tuple(x.shape[:-1])}, got "
                            f"{_checks.describe(weights)}")
        if tuple(weights.shape) != tuple(x.shape[:-1]):
            raise ValueError(f"{weights_name}: expected shape {tuple(x.shape[:-1])} (one weight per point of "
                             f"{name}), got shape {tuple(weights.shape)}")
    try:
        return measure(x, weights=weights)
    except (TypeError, ValueError) as exc:  # the measure's own checks (finite, non-negative weights): named
        raise type(exc)(f"{name}, {weights_name}: {exc}") from None


def _seeded(seed, generator) -> torch.Generator:
    """The module's own CPU generator: ``generator``, or seeded by ``seed``, or by torch's global RNG."""
    g = make_generator(seed, generator)
    if g is None:
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    if g.device.type != "cpu":
        raise ValueError(f"generator: expected a CPU torch.Generator (directions are drawn on the CPU), got one "
                         f"on {g.device}")
    return g


class _SlicedLoss(nn.Module):
    """What the sliced losses share: the scheme instance, the generator and their state."""

    def __init__(self, scheme, n_projections, reduction, seed, generator, scheme_options):
        super().__init__()
        self.scheme = resolve_scheme(scheme, scheme_options)
        self.n_projections = _checks.check_positive_int(n_projections, "n_projections")
        self.reduction = _check_reduction(reduction)
        self.generator = _seeded(seed, generator)
        # nn.Module attributes of the scheme (an amortized model): registered, so that they move with
        # .to(device) and their weights are entries of state_dict()
        self.scheme_modules = nn.ModuleDict({k: v for k, v in vars(self.scheme).items() if isinstance(v, nn.Module)})

    def scheme_parameters(self):
        """The parameters of the scheme's networks (an amortized model's), for an optimiser of their own;
        empty for schemes without one (their learned state is not trained by the caller)."""
        return self.scheme_modules.parameters()

    def get_extra_state(self) -> dict:
        state = self.scheme.state_dict()
        return {"generator": self.generator.get_state(),
                "scheme": {k: v for k, v in state.items() if k not in self.scheme_modules}}

    def set_extra_state(self, state) -> None:
        if not isinstance(state, dict) or set(state) != {"generator", "scheme"} or not isinstance(state["scheme"],
                                                                                                   dict):
            raise ValueError("state_dict: expected the extra state {'generator': ..., 'scheme': {...}} of a "
                             f"{type(self).__name__}, got {_checks.describe(state)}")
        g = state["generator"]
        like = self.generator.get_state()
        if not isinstance(g, torch.Tensor) or g.dtype != like.dtype or g.shape != like.shape:
            raise ValueError(f"state_dict: the generator state should be a uint8 tensor of shape {tuple(like.shape)},"
                             f" got {_checks.describe(g)}")
        scheme_state = dict(state["scheme"])
        current = self.scheme.state_dict()
        for k in self.scheme_modules:  # loaded as ordinary state_dict entries, after this
            scheme_state[k] = current[k]
        self.scheme.load_state_dict(scheme_state)
        self.generator.set_state(g.detach().cpu().clone())

    def _settings(self) -> str:
        return f"scheme={type(self.scheme).__name__}, n_projections={self.n_projections}, reduction={self.reduction!r}"


class SlicedWassersteinLoss(_SlicedLoss):
    """``SW_p(x, y) = (E_theta W_p^p(theta#x, theta#y))^(1/p)`` as a module: :func:`geom.sliced_wasserstein`
    with this module's scheme instance and generator.

    Args:
        scheme: a registered scheme name (see :func:`geom.schemes`) built once with ``**scheme_options``,
            or a :class:`geom.SlicingScheme` instance (kept: its state lasts across calls).
        n_projections: directions ``L`` drawn per call.
        p: order, ``p >= 1``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
        seed, generator: the randomness of the directions (one of them; see the module docstring).
        **scheme_options: options of a named scheme.

    Call: ``loss(x, y, x_weights=None, y_weights=None, directions=None)`` with ``x (B, N, d)`` or ``(N, d)``,
    ``y (B, M, d)`` or ``(M, d)``; ``directions (L, d)`` override the scheme's draw (the generator is then
    not used). Returns the reduced value, differentiable in the clouds and weights.

    Schemes with a network (``geom_plugins.amortized``'s amortized projections) train it through the same
    backward as the main model: see :meth:`scheme_parameters` and that scheme's documentation.

    >>> import torch
    >>> from geom.losses import SlicedWassersteinLoss
    >>> loss = SlicedWassersteinLoss(n_projections=64, seed=0)
    >>> x = torch.zeros(2, 5, 3)
    >>> loss(x, x + torch.tensor([0.0, 0.0, 2.0])).shape
    torch.Size([])
    """

    def __init__(self, scheme="mc", n_projections: int = 256, p: float = 2, reduction: str = "mean", *,
                 seed: int | None = None, generator: torch.Generator | None = None, **scheme_options):
        super().__init__(scheme, n_projections, reduction, seed, generator, scheme_options)
        self.p = _checks.check_p(p)

    def forward(self, x, y, x_weights=None, y_weights=None, *, directions=None) -> torch.Tensor:
        mu, nu = _cloud(x, x_weights, "x", "x_weights"), _cloud(y, y_weights, "y", "y_weights")
        value = sliced_wasserstein(mu, nu, p=self.p, n_projections=self.n_projections, scheme=self.scheme,
                                   directions=directions, generator=None if directions is not None else self.generator)
        return _reduce(value, self.reduction)

    def extra_repr(self) -> str:
        return f"{self._settings()}, p={self.p:g}"


class SlicedEnergyLoss(_SlicedLoss):
    """The sliced estimate of the energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` as a module:
    :func:`geom.sliced_energy_distance` with this module's scheme instance and generator.

    Args:
        scheme: a registered name or instance of a scheme whose directions are uniform on the sphere
            (``"mc"``, ``"qmc"``, ``"reservoir"``, ...; data-dependent schemes are refused).
        n_projections, reduction, seed, generator, **scheme_options: as in :class:`SlicedWassersteinLoss`.

    Call: ``loss(x, y, x_weights=None, y_weights=None, directions=None)`` as :class:`SlicedWassersteinLoss`.
    """

    def __init__(self, scheme="mc", n_projections: int = 256, reduction: str = "mean", *, seed: int | None = None,
                 generator: torch.Generator | None = None, **scheme_options):
        super().__init__(scheme, n_projections, reduction, seed, generator, scheme_options)
        if self.scheme.learns_from_data:
            raise ValueError(f"scheme: the sliced energy distance needs directions with the uniform law (its "
                             f"constant c_d), got the data-dependent scheme {type(self.scheme).__name__}")

    def forward(self, x, y, x_weights=None, y_weights=None, *, directions=None) -> torch.Tensor:
        mu, nu = _cloud(x, x_weights, "x", "x_weights"), _cloud(y, y_weights, "y", "y_weights")
        value = sliced_energy_distance(mu, nu, n_projections=self.n_projections, scheme=self.scheme,
                                       directions=directions,
                                       generator=None if directions is not None else self.generator)
        return _reduce(value, self.reduction)

    def extra_repr(self) -> str:
        return self._settings()


class ChamferLoss(nn.Module):
    """The Chamfer distance ``sum_i a_i min_j |x_i - y_j|^2 + sum_j b_j min_i |x_i - y_j|^2`` as a module:
    :func:`geom.chamfer_distance` (no state; here for comparison with the sliced losses).

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
        backend: ``"auto"`` (KeOps from 2**20 pairs on, where it compiles; dense torch below or without it),
            ``"keops"`` or ``"dense"``, as in :func:`geom.chamfer_distance`.

    Call: ``loss(x, y, x_weights=None, y_weights=None)`` with clouds as in :class:`SlicedWassersteinLoss`.
    """

    def __init__(self, reduction: str = "mean", *, backend: str = "auto"):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        if not isinstance(backend, str) or backend not in ("auto", *_BACKENDS):
            raise ValueError(f"backend: expected one of 'auto', {', '.join(map(repr, _BACKENDS))}; got {backend!r}")
        self.backend = backend

    def forward(self, x, y, x_weights=None, y_weights=None) -> torch.Tensor:
        mu, nu = _cloud(x, x_weights, "x", "x_weights"), _cloud(y, y_weights, "y", "y_weights")
        return _reduce(chamfer_distance(mu, nu, backend=self.backend), self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, backend={self.backend!r}"
