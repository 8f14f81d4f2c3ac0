"""``"pacbayes"``: directions from a von Mises-Fisher mixture learned by maximising a PAC-Bayes bound.

R. Ohana, K. Nadjahi, A. Rakotomamonjy, L. Ralaivola, *Shedding a PAC-Bayesian Light on Adaptive
Sliced-Wasserstein Distances*, ICML 2023. The slice distribution ``rho = sum_k w_k vMF(m_k, kappa_k)``
maximises the smooth PAC-Bayes objective of :mod:`geom.learn.pacbayes`
(``E_rho W_p^p - 2 sqrt((KL(rho || uniform) + log(G/delta)) Delta^(2p) (1/n + 1/m) / 8)``) on the measures
given to :meth:`PacBayes.fit`, or is given ready (``distribution=``, then nothing is learned). The bound
itself, certified on held-out samples, is :func:`geom.learn.pacbayes.certify`.

Before any fit, or in another dimension than the one learned, directions are uniform (the prior).
In a batch all items share one distribution, the one that maximises the batch mean of the objective.
``n``, ``m`` in the objective are the numbers of atoms of ``mu`` and ``nu`` (the bound assumes uniform
weights, i.e. empirical measures). The estimate is the mean over the drawn directions and its standard
error std/sqrt(L): the Monte Carlo error given ``rho``.

Options: ``n_components`` (int >= 1, default 2) ``K``; ``n_steps`` (int >= 0, default 30) Adam steps per
call of ``fit``; ``lr`` (default 0.05); ``n_samples`` (int >= 2, default 16) draws per component and step;
``delta`` (default 0.05) the confidence in the objective; ``diameter`` (float > 0 or None, default None)
``Delta``, the diameter of the supports: None takes ``2 max_i |z_i - c|`` over the pooled atoms (an upper
bound on the samples' diameter, but then the bound is a heuristic, not a certificate); ``kappa_init``
(default ``d``); ``warm_start`` (bool, default True) continue from the last fit in the same dimension;
``distribution`` (a :class:`geom.learn.pacbayes.VmfMixture` or None) a fitted ``rho``, kept fixed.
"""

from __future__ import annotations

import warnings

import torch

import geom
from geom._checks import check_int, check_positive_int, check_real, describe
from geom.learn.pacbayes import VmfMixture, fit_vmf_mixture

__all__ = ["PacBayes"]


P_MAX = 64.0


class PacBayes(geom.SlicingScheme):
    """Directions ``~ rho``, a vMF mixture learned by the PAC-Bayes objective (or given).

    The bound is fitted for ``p <= P_MAX``: its two terms scale as ``diameter^p``, and beyond that the
    per-slice costs of data in units of its diameter leave float64 (gaps of 0.1 underflow at p = 308);
    a larger ``p`` keeps the current law (uniform before any fit) and says so with a GeomWarning.

    Attributes:
        locations_, kappas_, weights_: ``(K, d)``, ``(K,)``, ``(K,)`` float64 parameters of ``rho``; None
            before any fit (or given through ``distribution``).
        objective_: the objective at the last ascent step of the last fit (None before any).
    """

    def __init__(self, *, n_components=2, n_steps=30, lr=0.05, n_samples=16, delta=0.05, diameter=None,
                 kappa_init=None, warm_start=True, distribution=None):
        self.n_components = check_positive_int(n_components, "n_components")
        self.n_steps = check_int(n_steps, "n_steps")
        self.lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
        self.n_samples = check_int(n_samples, "n_samples", minimum=2)
        self.delta = check_real(delta, "delta", "in (0, 1)", lambda v: 0 < v < 1)
        self.diameter = None if diameter is None else check_real(diameter, "diameter", "> 0 or None", lambda v: v > 0)
        self.kappa_init = None if kappa_init is None else check_real(kappa_init, "kappa_init", "> 0", lambda v: v > 0)
        if not isinstance(warm_start, bool):
            raise TypeError(f"warm_start: expected True or False, got {describe(warm_start)}")
        self.warm_start = warm_start
        if distribution is not None and not isinstance(distribution, VmfMixture):
            raise TypeError(f"distribution: expected a geom.learn.pacbayes.VmfMixture or None, got {describe(distribution)}")
        self.frozen = distribution is not None
        self.locations_ = None if distribution is None else distribution.locations.clone()
        self.kappas_ = None if distribution is None else distribution.kappas.clone()
        self.weights_ = None if distribution is None else distribution.weights.clone()
        self.objective_: float | None = None

    @property
    def distribution(self) -> VmfMixture | None:
        """The current ``rho`` (None before any fit)."""
        if self.locations_ is None:
            return None
        return VmfMixture(self.locations_, self.kappas_, self.weights_)

    def check_space(self, space):
        self.require_euclidean(space, "the von Mises-Fisher mixture")

    def fit(self, mu, nu, *, p, generator=None):
        if self.frozen or self.n_steps == 0:
            return
        space = geom.sliced.direction_space(mu)
        self.check_space(space)
        d = space.dim
        if d < 2:
            return  # S^0: the uniform law on {-1, +1} is the only direction law that matters
        if p > P_MAX:
            warnings.warn(f"scheme pacbayes: the bound is fitted for p <= {P_MAX:g}, got p = {p:g}; the slices keep "
                          "their current law", geom.GeomWarning, stacklevel=2)
            return
        z = torch.cat([mu.support.detach().reshape(-1, d), nu.support.detach().reshape(-1, d)]).double()
        centre = z.mean(0)
        diameter = self.diameter
        if diameter is None:
            diameter = max(2 * float((z - centre).norm(dim=1).max()), torch.finfo(torch.float64).tiny)
        # in units of the diameter: the objective's two terms both scale as diameter^p, so its maximiser
        # does not move, and the per-slice costs stay inside float range whatever the data's units
        mu, nu = (m.replace(support=(m.support.detach().double() - centre) / diameter) for m in (mu, nu))
        rho = self.distribution
        init = rho if self.warm_start and rho is not None and rho.dim == d \
            and rho.n_components == self.n_components else None
        fitted = fit_vmf_mixture(mu, nu, diameter=1.0, p=p, n_components=self.n_components, n_steps=self.n_steps,
                                 lr=self.lr, n_samples=self.n_samples, delta=self.delta, kappa_init=self.kappa_init,
                                 init=init, generator=generator, progress=False)
        rho = fitted.rho
        self.locations_, self.kappas_, self.weights_ = rho.locations, rho.kappas, rho.weights
        self.objective_ = fitted.history[-1] if fitted.history else None

    def directions(self, n, space, *, generator=None):
        """``n`` draws of ``rho`` (uniform before a fit in this dimension)."""
        rho = self.distribution
        if rho is None or rho.dim != space.dim:
            return space.sample(n, generator)
        return rho.sample(n, generator=generator)


@geom.hookimpl
def geom_register_schemes(register):
    register("pacbayes", PacBayes)
