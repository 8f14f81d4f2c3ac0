"""``"aswd"``: augmented sliced Wasserstein distance, slices of a learned injective lifting.

Paper: X. Chen, Y. Yang, Y. Li, *Augmented Sliced Wasserstein Distances*, ICLR 2022.

A point ``x in R^d`` is lifted onto the hypersurface ``g(x) = [x, f(x)] in R^D``, ``D = d + k``, with
``f`` a small neural network (one hidden LeakyReLU layer of width ``hidden``, ``k = lifted_dim``
outputs). Linear slices of the lifted points are non-linear slices of the original ones:

    ASWD_p(mu, nu; g) = ( E_{theta ~ U(S^(D-1))} W_p^p(theta^T g # mu, theta^T g # nu) )^(1/p)

:meth:`Augmented.fit` trains ``f`` by gradient ascent (Adam) on the objective of the paper,

    ASWD_p(mu, nu; g) - penalty * ( (E_mu |g(x)|^p)^(1/p) + (E_nu |g(y)|^p)^(1/p) ),

each step on ``fit_projections`` fresh uniform directions of ``S^(D-1)`` and on ``fit_points`` atoms
of each measure drawn by weight (the whole measure when it is smaller), all from the generator, with
the supports detached from the caller's graph. :meth:`Augmented.lift` then maps both measures
through ``g``, differentiably in the support, and the core slices them with uniform directions of
``S^(D-1)`` (:meth:`Augmented.directions`). The network starts from weights drawn from the generator
(``N(0, 1/fan_in)``, zero biases) and is kept on the instance.

The penalty: ``ASWD_p <= c^(1/p) ((E_mu |g|^p)^(1/p) + (E_nu |g|^p)^(1/p))`` with ``c = E|theta_1|^p``
(``c = 1/D`` for ``p = 2``), so ``penalty > c^(1/p)`` (``1/sqrt(D)``, 0.41 for ``d = k = 3``) keeps the
objective bounded above; a smaller penalty lets ``f`` grow without bound over repeated fits on
well-separated pairs, and the value with it. With ``f = 0`` the value is ``(E|theta_(1..d)|^p)^(1/p)``
times plain SW_p (``sqrt(d/D)`` for ``p = 2``: the directions spend part of their length on the
extra coordinates); the ascent moves away from there only where the extra coordinates pay for their
norm, so pairs that differ little relative to their spread stay near that value.

Metric: ``g(x) = [x, f(x)]`` is injective whatever ``f`` is (its first ``d`` coordinates are ``x``).
For a *fixed* injective ``g``, ``ASWD_p(., .; g)`` is a metric on measures with finite ``p``-th
moments of ``g`` (the paper's condition): it is the sliced Wasserstein distance between ``g#mu`` and
``g#nu``, and ``g#mu = g#nu`` only when ``mu = nu``. The value depends on the trained network, which
is state on the instance: every ``fit`` (every call without ``directions=``) continues training from
where the last one stopped, so the same pair gives another value after more training, and networks
trained per pair give no triangle inequality across pairs. To compare many pairs under one metric,
train, then set ``n_steps = 0`` on the instance (the network is then frozen). A new network is drawn
on first use and whenever the dimension ``d`` or the batch size changes; every item of a batch has
its own network. Directions given by the caller (``directions=``, ``(L, D)`` rows) skip the training
and need a network fitted before. Point clouds (kind ``"points"``) only.

Estimate and standard error: the mean of the L per-slice costs and std/sqrt(L) (the default), the
Monte Carlo error of the slices *given* the trained network; the training is not part of it.

Options:
    hidden (int >= 1, default 32): width of the hidden layer of ``f``.
    lifted_dim (int >= 1, default 3): ``k``, the number of coordinates ``f`` adds.
    n_steps (int >= 0, default 50): Adam steps per call of ``fit``; 0 freezes the network.
    lr (float > 0, default 0.05): Adam step size.
    penalty (float >= 0, default 0.5): ``lambda``, the weight of the norm regulariser.
    fit_projections (int >= 1, default 64): directions drawn per ascent step.
    fit_points (int >= 1, default 512): atoms drawn from each measure per ascent step.
"""

from __future__ import annotations

import math

import torch

import geom
from geom._checks import check_int, check_memory, check_positive_int, check_real
from geom.ascent import ProjectedAscent
from geom.directions import uniform_directions
from geom.measures import Measure
from geom.sliced import sliced_value

__all__ = ["Augmented", "LiftingNet"]

class LiftingNet(torch.nn.Module):
    """``f : R^d -> R^k``, one hidden LeakyReLU layer; one independent network per batch item.

    Parameters have a leading batch axis ``B`` (``B = 1`` is shared by every item of a batch):
    ``w1 (B, d, h)``, ``b1 (B, 1, h)``, ``w2 (B, h, k)``, ``b2 (B, 1, k)``.
    """

    def __init__(self, batch: int, dim: int, hidden: int, out: int, *, generator=None):
        super().__init__()
        # Weights N(0, 1/fan_in) from the generator, biases 0: f keeps the scale of x at the start.
        def normal(*shape):
            return torch.randn(*shape, generator=generator, dtype=torch.float64) / math.sqrt(shape[-2])

        self.w1 = torch.nn.Parameter(normal(batch, dim, hidden))
        self.b1 = torch.nn.Parameter(torch.zeros(batch, 1, hidden, dtype=torch.float64))
        self.w2 = torch.nn.Parameter(normal(batch, hidden, out))
        self.b2 = torch.nn.Parameter(torch.zeros(batch, 1, out, dtype=torch.float64))
        self.act = torch.nn.LeakyReLU(0.2)

    @property
    def shape(self) -> tuple[int, int]:
        """``(B, d)``: the batch size and input dimension the network was built for."""
        return self.w1.shape[0], self.w1.shape[1]

    def forward(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``(B, N, d)`` -> ``(B, N, k)``; ``params`` replaces the weights (same names and shapes)."""
        w = dict(self.named_parameters()) if params is None else params
        return self.act(x @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]


class Augmented(geom.SlicingScheme):
    """Augmented sliced Wasserstein: uniform slices of the lifted points ``[x, f(x)]``.

    Attributes:
        net_: the :class:`LiftingNet` ``f`` (float64 master weights), None before the first fit.
        objective_: ``(B,)`` objective of the paper at the last ascent step (on that step's atoms and
            directions, so noisy) of the last fit that took steps, or None.
    """

    def __init__(self, *, hidden=32, lifted_dim=3, n_steps=50, lr=0.05, penalty=0.5, fit_projections=64,
                 fit_points=512):
        self.hidden = check_positive_int(hidden, "hidden")
        self.lifted_dim = check_positive_int(lifted_dim, "lifted_dim")
        self.n_steps = check_int(n_steps, "n_steps")
        self.lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
        self.penalty = check_real(penalty, "penalty", ">= 0", lambda v: v >= 0)
        self.fit_projections = check_positive_int(fit_projections, "fit_projections")
        self.fit_points = check_positive_int(fit_points, "fit_points")
        self.net_: LiftingNet | None = None
        self.objective_: torch.Tensor | None = None

    # -- the lifting ---------------------------------------------------------------------------
    @staticmethod
    def _check_points(m: Measure, name: str) -> None:
        if m.kind != "points" or m.support.ndim != 3:
            raise ValueError(f"{name}: scheme 'aswd' lifts point clouds (kind 'points', support (B, N, D)), "
                             f"got kind {m.kind!r} with support of shape {tuple(m.support.shape)}")

    def _lift(self, m: Measure, params: dict[str, torch.Tensor]) -> Measure:
        x = m.support  # (B, N, d)
        fx = self.net_(x, params)  # (B, N, k)
        if fx.shape[0] != x.shape[0]:  # a network shared by the batch
            fx = fx.expand(x.shape[0], -1, -1)
        # not replace(): a lifting that leaves the dtype's range is the core's to name (mu, nu)
        return Measure(torch.cat([x, fx], -1), m.weights, kind=m.kind, batched=m.batched, uniform=m.uniform)

    def lift(self, measure: Measure) -> Measure:
        """``(B, N, d)`` support -> ``(B, N, d + lifted_dim)`` support ``[x, f(x)]``, same weights.

        Differentiable in the support (not in the network, whose weights are detached here).
        """
        self._check_points(measure, "measure")
        B, d = measure.batch_size, measure.dim
        if self.net_ is None or self.net_.shape[1] != d or self.net_.shape[0] not in (1, B):
            have = "no network" if self.net_ is None else f"a network for (B, d) = {self.net_.shape}"
            raise ValueError(f"measure: scheme 'aswd' has {have}, got a measure with (B, d) = ({B}, {d}); "
                             "call geom.sliced_wasserstein without directions= (or fit()) first")
        x = measure.support
        params = {k: v.detach().to(dtype=x.dtype, device=x.device) for k, v in self.net_.named_parameters()}
        return self._lift(measure, params)

    # -- the training --------------------------------------------------------------------------
    def _objective(self, mu: Measure, nu: Measure, params, directions: torch.Tensor, p: float) -> torch.Tensor:
        gm, gn = self._lift(mu, params), self._lift(nu, params)
        value = sliced_value(gm, gn, directions, p)  # ASWD_p, (B,)
        tiny = torch.finfo(value.dtype).tiny

        def moment(m: Measure) -> torch.Tensor:  # (E |g(x)|^p)^(1/p) = top (E (|g(x)| / top)^p)^(1/p), (B,)
            norm = torch.linalg.vector_norm(m.support, dim=-1)  # (B, N)
            top = norm.detach().amax(-1).clamp_min(tiny)  # (B,): every p and every scale stay in range
            e = (m.weights * (norm / top[:, None]).pow(p)).sum(-1)
            return top * e.clamp_min(tiny).pow(1.0 / p)

        return value - self.penalty * (moment(gm) + moment(gn))

    def objective(self, mu, nu, directions, *, p: float = 2) -> torch.Tensor:
        """The objective of the paper with the current network and the given ``(L, d + k)`` directions.

        ``ASWD_p(mu, nu; g) - penalty * ((E_mu |g|^p)^(1/p) + (E_nu |g|^p)^(1/p))``, ``(B,)``.
        """
        mu, nu = geom.measure(mu), geom.measure(nu)
        lifted = self.lift(mu)  # checks the network
        params = {k: v.detach().to(lifted.support) for k, v in self.net_.named_parameters()}
        return self._objective(mu, nu, params, torch.as_tensor(directions).to(lifted.support), float(p))

    def fit(self, mu, nu, *, p, generator=None):
        """Adam ascent on the network weights; a new network (drawn from ``generator``) on a change of ``(B, d)``."""
        self._check_points(mu, "mu")
        self._check_points(nu, "nu")
        B, d = mu.batch_size, mu.dim
        h, k, n = self.hidden, self.lifted_dim, min(self.fit_points, max(mu.n_points, nu.n_points))
        check_memory(32 * B * h * (d + k + 2), "hidden" if h >= d + k else "lifted_dim",
                     f"{B} lifting networks of {h} hidden units and {k} outputs")
        check_memory(32 * B * max(mu.n_points, nu.n_points, n) * (h + k), "hidden" if h >= k else "lifted_dim",
                     f"the hidden layer and the lift of {B} x {max(mu.n_points, nu.n_points)} points")
        check_memory(self.fit_projections * (48 * (d + k) + 40 * B), "fit_projections",
                     f"{self.fit_projections} directions per ascent step")
        if self.net_ is None or self.net_.shape != (B, d):
            self.net_ = LiftingNet(B, d, self.hidden, self.lifted_dim, generator=generator)
        if self.n_steps == 0:
            return
        x = mu.support
        D = d + self.lifted_dim
        with torch.enable_grad():
            params = {k: v.detach().to(x).requires_grad_(True) for k, v in self.net_.named_parameters()}
            ascent = ProjectedAscent(params.values())
            for _ in range(self.n_steps):
                sub_mu, sub_nu = self._subsample(mu, generator), self._subsample(nu, generator)
                theta = uniform_directions(self.fit_projections, D, generator).to(x)  # (L_fit, D)
                obj = self._objective(sub_mu, sub_nu, params, theta, p)  # (B,)
                ascent.step(self.lr, torch.autograd.grad(obj.sum(), list(params.values())))
        with torch.no_grad():
            for name, v in self.net_.named_parameters():
                v.copy_(params[name].to(v))
        self.objective_ = obj.detach()

    def _subsample(self, m: Measure, generator) -> Measure:
        """``m`` detached; above ``fit_points`` atoms, ``fit_points`` atoms drawn by weight (uniform weights)."""
        support, weights = m.support.detach(), m.weights.detach()  # (B, N, d), (B, N)
        n = self.fit_points
        if m.n_points <= n:
            return m.detach()
        idx = torch.multinomial(weights.double().cpu(), n, replacement=True, generator=generator)  # (B, n)
        idx = idx.to(support.device)
        picked = torch.gather(support, 1, idx[..., None].expand(-1, -1, support.shape[-1]))  # (B, n, d)
        uniform = torch.full((m.batch_size, n), 1.0 / n, dtype=weights.dtype, device=weights.device)
        return Measure(picked, uniform, kind=m.kind, batched=True, uniform=True)

    def directions(self, n, space, *, generator=None):
        """``(n, D)`` uniform on S^(D-1); after :meth:`lift`, ``D = d + lifted_dim``."""
        return space.sample(n, generator)

    def load_state_dict(self, state):
        """The default, after building ``net_`` (made lazily by :meth:`fit`) for the ``(B, d)`` of the
        state's weights; the default then checks every weight against the network's shapes."""
        net = state.get("net_") if isinstance(state, dict) else None
        w1 = net.get("state", {}).get("w1") if isinstance(net, dict) and isinstance(net.get("state"), dict) else None
        if isinstance(w1, torch.Tensor) and w1.ndim == 3:
            B, d, _ = w1.shape  # (B, d, hidden)
            self.net_ = LiftingNet(B, d, self.hidden, self.lifted_dim, generator=torch.Generator())
        super().load_state_dict(state)


@geom.hookimpl
def geom_register_schemes(register):
    register("aswd", Augmented)
