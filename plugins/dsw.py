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
(:func:`geom.directions.von_mises_fisher`: Wood's 1994 rejection sampler for the cosine to the location, a
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

import torch

import geom
from geom._checks import check_int, check_memory, check_positive_int, check_real, describe
from geom.ascent import ProjectedAscent
from geom.directions import uniform_directions, von_mises_fisher
from geom.sliced import direction_space, sliced_value

__all__ = ["Distributional", "VonMisesFisherDSW"]


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
            return von_mises_fisher(v, self.kappa, self.n_samples, generator=generator)

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
        return von_mises_fisher(loc, self.kappa, n, generator=generator)


@geom.hookimpl
def geom_register_schemes(register):
    register("dsw", Distributional)
    register("vmf-dsw", VonMisesFisherDSW)
