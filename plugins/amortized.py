"""``"amortized-vmf-dsw"`` and ``"amortized-max"``: directions predicted from the two clouds by a trained network.

Paper: K. Nguyen, D. Nguyen, N. Ho, *Self-Attention Amortized Distributional Projection Optimization for
Sliced Wasserstein Point-Cloud Reconstruction*, ICML 2023.

For every pair ``(X_b, Y_b)`` of a batch an amortized model ``f_psi`` (:mod:`geom.losses.amortized`:
``"linear"``, ``"attention"`` or ``"efficient"`` attention; symmetric in the two clouds, invariant to
permuting their points) predicts a unit vector ``epsilon_b = f_psi(X_b, Y_b)``:

* ``"amortized-vmf-dsw"`` (amortized v-DSW): the ``L`` directions of item ``b`` are drawn from
  ``vMF(epsilon_b, kappa)`` by :func:`geom.directions.von_mises_fisher` (reparameterised, so
  differentiable in ``epsilon_b``), and the value is the Monte Carlo v-DSW at that location,
  ``(mean_l W_p^p(theta_bl#X_b, theta_bl#Y_b))^(1/p)``; a metric for every location (the paper's point);
* ``"amortized-max"`` (amortized max-SW): ``epsilon_b`` itself is the slice: ``W_p`` along it (ask
  ``n_projections=1``; more rows are copies of it and cost more sorts for the same value).

Training contract (the paper's adversarial game). The main model minimises the value, the amortized
model maximises it. The network sees the clouds detached (as in the paper), so the main model's
gradient is that of the sliced distance at the predicted directions held fixed; the value reaches
``psi`` through the directions (the per-item maps below). With ``reverse_gradient=True`` (default) the gradient that reaches ``psi`` is
negated, so one backward pass and two minimising optimisers play both sides::

    loss = geom.losses.SlicedWassersteinLoss("amortized-vmf-dsw", n_projections=100, seed=0,
                                             variant="efficient", dim=3)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    opt_psi = torch.optim.Adam(loss.scheme_parameters(), 1e-3)     # the amortized model's weights
    for x in batches:
        value = loss(net(x), x)                                     # (B, N, 3) clouds
        opt.zero_grad(); opt_psi.zero_grad()
        value.backward()          # net: d SW / d net;  psi: -d SW / d psi (gradient reversal)
        opt.step(); opt_psi.step()                                  # descent on SW, ascent on SW

With ``reverse_gradient=False`` ``psi`` receives ``+d SW / d psi``: step it with ``maximize=True``. The
loss module registers the network (``loss.scheme_modules``), so ``.to(device)`` moves it and
``state_dict()`` holds its weights.

How a batch goes through the one estimator. The core slices all items of a batch along the same ``L``
directions; here each item has its own law. vMF is equivariant under orthogonal maps: if
``Z_l ~ vMF(u, kappa)`` around a fixed axis ``u = e_0`` and ``Q_b`` is orthogonal with ``Q_b u = epsilon_b``,
then ``Q_b Z_l ~ vMF(epsilon_b, kappa)``, and ``<Q_b Z_l, x> = <Z_l, Q_b^T x>``. So :meth:`fit` predicts
``epsilon (B, d)`` and builds ``Q_b = sigma_b (I - 2 h_b h_b^T)``, the Householder reflection carrying ``u``
to ``sigma_b epsilon_b`` (``h_b = (u - sigma_b epsilon_b) / |u - sigma_b epsilon_b|``, with the sign
``sigma_b = -sign(u . epsilon_b)`` that keeps ``|u - sigma_b epsilon_b| >= sqrt 2``, the sampler's own
choice of reference), :meth:`lift` maps item ``b``'s points by ``Q_b^T = Q_b`` (differentiable in the
points and in ``epsilon_b``, hence in ``psi``), and :meth:`directions` draws the ``L`` shared
``Z_l = von_mises_fisher(u, kappa, L)`` (``"amortized-max"``: ``Z_l = u``). Each item's slices
have exactly the law ``vMF(epsilon_b, kappa)`` (and its max slice is exactly ``epsilon_b``); the items
share the underlying draws, as every item of a batch shares plain SW's directions. The cost is plain
SW's at the same ``L`` (one sort per slice and item, ``d``-dimensional projections) plus a ``(d, d)``
map per item, the network, and, when ``psi`` takes gradients, the per-slice gradients of the second
cloud too (the targets' projections then depend on ``psi``): measured in ``tools/_learn_amortized.py``.
``result.directions`` holds the shared ``Z`` (item ``b``'s directions are
``Q_b Z``; :attr:`location_` holds the ``epsilon_b``). Directions given by the caller (``directions=``)
are taken as they are, with the plain mean (no fit, no map).

Before a fit (``directions`` called on its own) the scheme draws as its unamortized counterpart before
one: vMF around a location drawn from the generator (``"amortized-vmf-dsw"``), or copies of one
uniform direction (``"amortized-max"``).

Standard error: std / sqrt(L) of the scaled per-slice costs given the predicted location (v-DSW; the
amortization gap is not part of it); nan for ``"amortized-max"`` (one slice, not a sample mean).

Options: ``variant`` (``"linear"``, ``"attention"``, ``"efficient"``; default ``"efficient"``); ``dim`` (the
dimension of the points, default 3); ``hidden`` (query and key features of the attention variants,
default 16: they cost ``O(N hidden)`` (efficient) and ``O(N^2 hidden)`` (attention) per cloud);
``model_seed`` (the seed of the network's initial weights, default 0); ``reverse_gradient`` (default
True); ``"amortized-vmf-dsw"``: ``kappa`` (concentration > 0, default 10.0, as ``"vmf-dsw"``).
"""

from __future__ import annotations

import abc
import math

import torch

import geom
from geom._checks import check_bool, check_real
from geom.directions import uniform_directions, von_mises_fisher
from geom.losses.amortized import VARIANTS, amortized_model
from geom.measures import Measure

__all__ = ["AmortizedMaxSliced", "AmortizedVonMisesFisher"]


class _Reverse(torch.autograd.Function):
    """Identity forward, negated gradient backward (gradient reversal)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class _Amortized(geom.SlicingScheme):
    """The amortized model, the per-item maps of a batch and the estimate (see the module docstring).

    Attributes:
        model: the :class:`geom.losses.amortized.AmortizedModel` (an ``nn.Module``; its weights are the state).
        location_: ``(B, d)`` the locations (directions) predicted at the last fit, detached, float64 on the
            CPU; None before any fit.
    """

    #: an estimate with a standard error (False: one slice, nan)
    _sampled = True

    def __init__(self, *, variant="efficient", dim=3, hidden=16, model_seed=0, reverse_gradient=True, **options):
        super().__init__(**options)
        if not isinstance(variant, str) or variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {', '.join(map(repr, sorted(VARIANTS)))}, got {variant!r}")
        self.variant = variant
        self.reverse_gradient = check_bool(reverse_gradient, "reverse_gradient")
        self.model = amortized_model(variant, dim, hidden=hidden, seed=model_seed)
        self.location_: torch.Tensor | None = None
        self._pending = None  # this call's (mu, nu, Q (B, d, d)), between fit and estimate

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["_pending"] = None  # a call in flight is not state
        return state

    def fit(self, mu, nu, *, p, generator=None):
        """Predict ``epsilon (B, d)`` from the detached clouds and the maps ``Q_b`` this call's lift applies."""
        self._pending = None
        d = self.model.dim
        for m, name in ((mu, "mu"), (nu, "nu")):
            if m.support.ndim != 3 or m.dim != d or m.kind != "points":
                raise ValueError(f"{name}: scheme {type(self).__name__} predicts directions for (B, N, {d}) point "
                                 f"clouds (option dim={d}), got a {m.kind!r} measure of support shape "
                                 f"{tuple(m.support.shape)}")
        first = next(self.model.parameters())
        kw = dict(dtype=first.dtype, device=first.device)
        eps = self.model(mu.support.detach().to(**kw), nu.support.detach().to(**kw),
                         mu.weights.detach().to(**kw), nu.weights.detach().to(**kw))  # (B, d)
        if self.reverse_gradient and eps.requires_grad:
            eps = _Reverse.apply(eps)
        eps = eps.to(dtype=mu.dtype, device=mu.device)
        self.location_ = eps.detach().double().cpu()
        sigma = torch.where(eps[:, :1].detach() > 0, -1.0, 1.0).to(eps.dtype)  # (B, 1): u . sigma eps <= 0
        v = sigma * eps  # (B, d)
        h = -v
        h[:, 0] = h[:, 0] + 1.0  # u - v, u = e_0
        h = h / h.norm(dim=1, keepdim=True)  # |u - v| >= sqrt 2
        eye = torch.eye(d, dtype=eps.dtype, device=eps.device)
        q = sigma[:, :, None] * (eye - 2.0 * h[:, :, None] * h[:, None, :])  # (B, d, d): Q_b u = eps_b, Q_b = Q_b^T
        self._pending = (mu, nu, q)

    def lift(self, measure):
        """Item ``b``'s points mapped by ``Q_b`` when ``measure`` is one this call fitted; others as given."""
        if self._pending is None or not any(measure is m for m in self._pending[:2]):
            return measure
        support = torch.bmm(measure.support, self._pending[2])  # (B, N, d): rows x^T Q_b = (Q_b x)^T
        return Measure(support, measure.weights, kind=measure.kind, batched=measure.batched, uniform=measure.uniform)

    @abc.abstractmethod
    def _draw(self, n: int, loc: torch.Tensor, generator) -> torch.Tensor:
        """``(n, d)`` directions of the law around ``loc (d,)`` (the vMF law, or the point mass of max-SW)."""

    def directions(self, n, space, *, generator=None):
        """``(n, d)`` draws around ``u = e_0`` after a fit (item ``b`` reads them through ``Q_b``); before
        one, around a location drawn from the generator."""
        self.check_space(space)
        if self._pending is None:
            return self._draw(n, uniform_directions(1, space.dim, generator)[0], generator)
        q = self._pending[2]
        u = torch.zeros(space.dim, dtype=q.dtype, device=q.device)
        u[0] = 1.0
        return self._draw(n, u, generator)

    def check_space(self, space):
        self.require_euclidean(space, "the amortized directions")

    def estimate(self, costs, context):
        """The mean of the per-slice costs and its standard error (nan for the max slice)."""
        self._pending = None
        value, stderr = super().estimate(costs, context)
        if not self._sampled and context.drawn:
            stderr = torch.full_like(stderr, math.nan)
        return value, stderr


class AmortizedVonMisesFisher(_Amortized):
    """Amortized v-DSW: item ``b``'s directions ``~ vMF(f_psi(X_b, Y_b), kappa)``."""

    def __init__(self, *, kappa=10.0, **options):
        super().__init__(**options)
        self.kappa = check_real(kappa, "kappa", "> 0", lambda v: v > 0)

    def _draw(self, n, loc, generator):
        return von_mises_fisher(loc, self.kappa, n, generator=generator)


class AmortizedMaxSliced(_Amortized):
    """Amortized max-SW: item ``b``'s slice is ``f_psi(X_b, Y_b)`` itself (``n`` copies of it)."""

    _sampled = False

    def _draw(self, n, loc, generator):
        return (loc / loc.norm()).expand(n, loc.shape[0])


@geom.hookimpl
def geom_register_schemes(register):
    register("amortized-max", AmortizedMaxSliced)
    register("amortized-vmf-dsw", AmortizedVonMisesFisher)
