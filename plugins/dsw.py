"""``"dsw"`` and ``"vmf-dsw"``: distributional sliced Wasserstein, directions from a learned distribution.

``"dsw"`` -- K. Nguyen, N. Ho, T. Pham, H. Bui, *Distributional Sliced-Wasserstein and Applications to
Generative Modeling*, ICLR 2021 (the DSWD that B.-H. Tran et al., *Model Selection for Bayesian
Autoencoders*, NeurIPS 2021, optimise):

    DSW_p(mu, nu; C) = sup_{sigma : E_{theta, theta' ~ sigma} |theta^T theta'| <= C} (E_{theta ~ sigma} W_p^p)^(1/p)

``sigma`` is the pushforward of the uniform measure on the sphere by a learned map
``f(u) = (W u + b) / |W u + b|`` (the paper's one-layer network, started at ``W = I, b = 0``, i.e. at
plain SW). :meth:`Distributional.fit` climbs the Lagrangian of the paper,
``(E_theta W_p^p)^(1/p) - lam * E |theta^T theta'|``, with Adam on ``(W, b)``, drawing fresh uniform
samples from the generator at each step (the expectation over pairs uses distinct pairs). The
multiplier ``lam`` (in the units of the distance) stands for the constraint level ``C``: a larger
``lam`` keeps the directions more spread out (smaller ``C``); ``regularizer_`` reports the
``E |theta^T theta'|`` reached, i.e. the ``C`` the chosen ``lam`` implies.

``"vmf-dsw"`` -- K. Nguyen, D. Nguyen, N. Ho, *Self-Attention Amortized Distributional Projection
Optimization for Sliced Wasserstein Point-Cloud Reconstruction*, ICML 2023 (v-DSW):

    v-DSW_p(mu, nu; kappa) = max_{epsilon in S^(d-1)} (E_{theta ~ vMF(epsilon, kappa)} W_p^p)^(1/p)

The location ``epsilon`` is climbed by Adam through a reparameterised von Mises-Fisher sampler
(:func:`sample_von_mises_fisher`: Wood's 1994 rejection sampler for the cosine to the location, a
uniform tangent direction, and a Householder reflection that carries the reference axis onto
``epsilon``, differentiable in ``epsilon``). The paper's amortised self-attention network that
predicts ``epsilon`` from the two point clouds is not part of this scheme: ``epsilon`` is optimised
per call, warm-started from the previous call.

Both: the estimate of ``E W_p^p`` is the mean over the L directions drawn from the learned
distribution and its standard error is std/sqrt(L): the Monte Carlo error *given* the learned
distribution (the optimisation itself is not part of it). In a batch all items share one
distribution, the one that maximises the batch mean of the objective. Before any fit, or in another
dimension than the one fitted, ``"dsw"`` draws uniform directions (its starting distribution) and
``"vmf-dsw"`` draws from ``vMF(epsilon, kappa)`` around a location drawn uniformly from the generator.

Options (both): ``n_steps`` (int >= 0, default 20) ascent steps per call of ``fit`` (0 freezes the distribution); ``lr`` (float, default
0.05) Adam step size; ``n_samples`` (int >= 2, default 32) directions drawn per ascent step;
``warm_start`` (bool, default True) keep the learned parameters from call to call.
``"dsw"``: ``lam`` (float >= 0, default 1.0) the Lagrange multiplier of the spread constraint.
``"vmf-dsw"``: ``kappa`` (float > 0, default 10.0) the concentration; larger is closer to max-sliced.
"""

from __future__ import annotations

import math

import torch

import geom
from geom._checks import check_int, check_memory, check_positive_int, check_real, describe
from geom.ascent import ProjectedAscent
from geom.directions import uniform_directions
from geom.sliced import direction_space, sliced_value

__all__ = ["Distributional", "VonMisesFisherDSW", "sample_von_mises_fisher"]


def _wood_cosines(n: int, dim: int, kappa: float, generator) -> torch.Tensor:
    """``(n,)`` float64 ``1 - w``, one minus the cosines ``w = theta . epsilon`` of vMF(epsilon, kappa)
    on S^(dim-1) (Wood, 1994). Kept as ``1 - w``, with ``x0 = 1 - delta`` and ``b`` computed without
    ``kappa^2``: every finite ``kappa`` keeps its digits (``1 - w`` is about ``(dim - 1) / (2 kappa)``)."""
    if dim == 1:  # S^0 = {-1, +1}: P(+epsilon) = e^k / (e^k + e^-k)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.where(u < 1.0 / (1.0 + math.exp(-2.0 * kappa)), 0.0, 2.0)
    m = dim - 1
    r = m / (2.0 * kappa)
    b = r / (1.0 + math.sqrt(1.0 + r * r))  # m / (2 kappa + sqrt(4 kappa^2 + m^2))
    delta = 2.0 * b / (1.0 + b)  # 1 - x0
    log_norm = math.log(delta) + math.log(2.0 - delta)  # log(1 - x0^2)
    out = torch.empty(n, dtype=torch.float64)
    pending = torch.arange(n)
    while pending.numel():  # vectorised rejection: redraw only the rejected ones
        k = pending.numel()
        chi = torch.randn(k, 2, m, generator=generator, dtype=torch.float64).square().sum(-1)  # (k, 2)
        z = chi[:, 0] / chi.sum(-1)  # Beta(m/2, m/2)
        log_u = torch.rand(k, generator=generator, dtype=torch.float64).log()
        y = 2.0 * b * z / (1.0 - (1.0 - b) * z)  # 1 - w
        # kappa (w - x0) + m log((1 - x0 w) / (1 - x0^2)) >= log u, each term without cancellation
        ok = kappa * (delta - y) + m * (torch.log(delta + y - delta * y) - log_norm) >= log_u
        out[pending[ok]] = y[ok]
        pending = pending[~ok]
    return out


def sample_von_mises_fisher(loc: torch.Tensor, kappa: float, n: int, *, generator=None) -> torch.Tensor:
    """``n`` samples of the von Mises-Fisher distribution ``vMF(loc, kappa)`` on S^(d-1), differentiable in ``loc``.

    Density ``proportional to exp(kappa * loc^T theta)``. The cosine ``w = loc^T theta`` comes from
    Wood's rejection sampler (A. T. A. Wood, *Simulation of the von Mises Fisher distribution*, 1994),
    the tangent part is uniform; the sample is built around a reference axis ``r = -sign(loc_0) e_0``
    and carried to ``loc`` by the Householder reflection ``H = I - 2 h h^T``, ``h = (r - loc)/|r - loc|``
    (``|r - loc| >= sqrt 2``, so ``H`` is smooth in ``loc``). The mean of ``w`` is
    ``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)``.

    Args:
        loc: ``(d,)`` location (normalised here; gradients flow through the normalisation).
        kappa: concentration ``> 0``.
        n: number of samples.
        generator: the randomness (CPU ``torch.Generator``); the samples take ``loc``'s dtype and device.

    Returns:
        ``(n, d)`` unit rows.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> theta = sample_von_mises_fisher(torch.tensor([0.0, 0.0, 1.0]), 50.0, 4, generator=g)
    >>> bool((theta[:, 2] > 0.5).all())
    True
    """
    kappa = check_real(kappa, "kappa", "> 0", lambda v: v > 0)
    n = check_positive_int(n, "n")
    if not isinstance(loc, torch.Tensor) or loc.ndim != 1 or loc.shape[0] < 1 or not loc.is_floating_point():
        raise TypeError(f"loc: expected a floating (d,) tensor, got {describe(loc)}")
    d = loc.shape[0]
    loc = loc / loc.norm()
    y = _wood_cosines(n, d, kappa, generator)  # (n,) 1 - w
    tangent = uniform_directions(n, d - 1, generator) if d > 1 else torch.empty(n, 0, dtype=torch.float64)  # (n, d-1)
    s = 1.0 if float(loc[0].detach()) <= 0 else -1.0  # reference axis r = s e_0, on the far side from loc
    sine = (y * (2.0 - y)).clamp_min(0).sqrt()  # (n,) sqrt(1 - w^2)
    x = torch.cat([s * (1.0 - y)[:, None], sine[:, None] * tangent], 1)  # (n, d)
    x = x.to(dtype=loc.dtype, device=loc.device)
    r = torch.zeros_like(loc)
    r[0] = s
    h = (r - loc) / (r - loc).norm()  # (d,)
    return x - 2.0 * (x @ h)[:, None] * h  # (n, d): H x, with H r = loc


class _Learned(geom.SlicingScheme):
    """Shared options and the ascent loop of the two distributional schemes."""

    def __init__(self, *, n_steps=20, lr=0.05, n_samples=32, warm_start=True):
        self.n_steps = check_int(n_steps, "n_steps")
        self.lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
        self.n_samples = check_positive_int(n_samples, "n_samples")
        if self.n_samples < 2:
            raise ValueError(f"n_samples: expected at least 2 directions per ascent step, got {n_samples}")
        if not isinstance(warm_start, bool):
            raise TypeError(f"warm_start: expected True or False, got {describe(warm_start)}")
        self.warm_start = warm_start

    def _space(self, mu):
        """The direction space, after checking that ``n_samples`` directions (and their pairwise
        products, for the spread penalty) fit in memory."""
        space = direction_space(mu)
        S = self.n_samples
        check_memory(S * (48 * space.gaussian_dim + 40 * mu.batch_size) + 2 * S * S, "n_samples",
                     f"{S} directions per ascent step and their pairwise products")
        return space

    def _ascend(self, mu, nu, p, params, sample, penalty=None, after_step=None):
        """Adam on ``params`` for ``n_steps``: maximise the batch mean of ``(E W_p^p)^(1/p)``, minus
        ``penalty(theta)``; ``after_step()`` runs after every update. Returns the last ``(S, *shape)`` draw."""
        mu, nu = mu.detach(), nu.detach()
        ascent = ProjectedAscent(params, project=after_step)
        if self.n_steps == 0:  # frozen: the distribution as it is
            with torch.no_grad():
                return sample()
        with torch.enable_grad():
            for _ in range(self.n_steps):
                theta = sample()  # (S, d)
                objective = sliced_value(mu, nu, theta, p).mean()  # (E W_p^p)^(1/p), stable for every p
                if penalty is not None:
                    objective = objective - penalty(theta)
                objective.backward()
                ascent.step(self.lr)
        return theta.detach()


class Distributional(_Learned):
    """Distributional SW: directions ``f(u)``, ``u`` uniform, ``f(u) = (W u + b) / |W u + b|`` learned.

    Attributes:
        weight_, bias_: ``(k, k)`` and ``(k,)`` float64 parameters of ``f`` (``k = space.gaussian_dim``,
            ``d`` for unit rows), None before any fit.
        regularizer_: ``E |theta^T theta'|`` estimated at the last ascent step (the level ``C`` reached).
    """

    def __init__(self, *, lam=1.0, **options):
        super().__init__(**options)
        self.lam = check_real(lam, "lam", ">= 0", lambda v: v >= 0)
        self.weight_: torch.Tensor | None = None
        self.bias_: torch.Tensor | None = None
        self.regularizer_: float | None = None

    @staticmethod
    def _push(space, u, weight, bias):
        return space.from_gaussian(u @ weight.T + bias)  # (n, *shape)

    def fit(self, mu, nu, *, p, generator=None):
        space = self._space(mu)
        k = space.gaussian_dim
        if self.warm_start and self.weight_ is not None and self.weight_.shape[0] == k:
            weight, bias = self.weight_, self.bias_
        else:
            weight, bias = torch.eye(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
        kw = dict(dtype=mu.dtype, device=mu.device)
        weight = weight.to(**kw).clone().requires_grad_(True)
        bias = bias.to(**kw).clone().requires_grad_(True)
        S = self.n_samples
        off = ~torch.eye(S, dtype=torch.bool, device=mu.device)  # distinct pairs

        def sample():
            return self._push(space, uniform_directions(S, k, generator).to(**kw), weight, bias)

        def spread(theta):  # E |<theta, theta'>| over distinct pairs, directions of unit length
            t = theta.reshape(S, -1)
            t = t / t.norm(dim=1, keepdim=True)
            return (t @ t.T).abs()[off].mean()

        theta = self._ascend(mu, nu, p, [weight, bias], sample, lambda theta: self.lam * spread(theta))
        self.weight_, self.bias_ = weight.detach().double().cpu(), bias.detach().double().cpu()
        self.regularizer_ = float(spread(theta))

    def directions(self, n, space, *, generator=None):
        """``n`` directions ``f(u)``, ``u`` uniform (``f`` the identity before a fit in this space)."""
        u = uniform_directions(n, space.gaussian_dim, generator)  # (n, k)
        if self.weight_ is None or self.weight_.shape[0] != space.gaussian_dim:
            return space.from_gaussian(u)
        theta = self._push(space, u, self.weight_, self.bias_)
        finite = torch.isfinite(theta).reshape(n, -1).all(1).reshape(n, *[1] * len(space.shape))
        return torch.where(finite, theta, space.from_gaussian(u))  # W u + b = 0: measure zero


class VonMisesFisherDSW(_Learned):
    """v-DSW: directions ``~ vMF(epsilon, kappa)``, the location ``epsilon`` learned by gradient ascent.

    Attributes:
        location_: ``(d,)`` float64 learned unit location, None before any fit.
    """

    def __init__(self, *, kappa=10.0, **options):
        super().__init__(**options)
        self.kappa = check_real(kappa, "kappa", "> 0", lambda v: v > 0)
        self.location_: torch.Tensor | None = None

    def check_space(self, space):
        self.require_euclidean(space, "the von Mises-Fisher law")

    def fit(self, mu, nu, *, p, generator=None):
        space = self._space(mu)
        self.check_space(space)
        dim = space.dim
        loc = self.location_
        if not (self.warm_start and loc is not None and loc.shape[0] == dim):
            loc = uniform_directions(1, dim, generator)[0]
        v = loc.to(dtype=mu.dtype, device=mu.device).clone().requires_grad_(True)  # (d,), theta ~ vMF(v / |v|, kappa)

        def sample():
            return sample_von_mises_fisher(v, self.kappa, self.n_samples, generator=generator)

        def renormalise():
            with torch.no_grad():
                v.div_(v.norm())

        self._ascend(mu, nu, p, [v], sample, after_step=renormalise)
        loc = v.detach().double().cpu()
        self.location_ = loc / loc.norm()

    def directions(self, n, space, *, generator=None):
        """``n`` draws of ``vMF(location_, kappa)`` (a location drawn from ``generator`` before a fit)."""
        dim = space.dim
        loc = self.location_
        if loc is None or loc.shape[0] != dim:
            loc = uniform_directions(1, dim, generator)[0]
        return sample_von_mises_fisher(loc, self.kappa, n, generator=generator)


@geom.hookimpl
def geom_register_schemes(register):
    register("dsw", Distributional)
    register("vmf-dsw", VonMisesFisherDSW)
