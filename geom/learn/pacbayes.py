"""Slice distributions learned by maximising a PAC-Bayes lower bound on the adaptive sliced Wasserstein.

R. Ohana, K. Nadjahi, A. Rakotomamonjy, L. Ralaivola, *Shedding a PAC-Bayesian Light on Adaptive
Sliced-Wasserstein Distances*, ICML 2023. For a slice distribution ``rho`` on the sphere S^(d-1)::

    SW_p^p(mu, nu; rho) = E_{theta ~ rho} W_p^p(theta#mu, theta#nu)

The bound
---------
Assumptions: ``mu`` and ``nu`` live in a set of R^d of diameter at most ``Delta`` (known before the
data: the bound is not certified when ``Delta`` is estimated from the samples); ``X_1..X_n ~ mu`` and
``Y_1..Y_m ~ nu`` are independent; the prior ``pi`` (here the uniform law on the sphere), ``lambda > 0``
(or a finite grid of them) and ``delta in (0, 1)`` are fixed before the samples are seen. Then, with
probability at least ``1 - delta`` over the samples, *simultaneously for every* ``rho``::

    E_S[SW_p^p(mu_n, nu_m; rho)] >= SW_p^p(mu_n, nu_m; rho) - (KL(rho || pi) + log(1/delta)) / lambda
                                    - lambda * Delta^(2p) * (1/n + 1/m) / 8

``E_S`` is the mean over fresh samples of the same sizes. Proof: ``theta^T x`` and ``theta^T y`` are
``Delta`` apart at most, so moving one of the ``n + m`` atoms moves ``W_p^p(theta#mu_n, theta#nu_m)`` by
at most ``Delta^p / n`` (resp. ``/ m``); McDiarmid's exponential moment for every ``theta`` under
``pi`` and the Donsker-Varadhan change of measure give the bound. With ``n = m`` the last term is
``lambda Delta^(2p) / (4 n)``, the paper's (and its code's ``(KL + 4.6) / lambda + lambda Delta^(2p) / (4 n)``,
``4.6 = log 100``, i.e. ``delta = 0.01``). The paper's population statement subtracts besides
``psi_{mu,nu}(rho, n) = E_rho[E_S W_p^p(theta#mu_n, theta#nu_m) - W_p^p(theta#mu, theta#nu)] >= 0``,
the plug-in bias (non-negative by the joint convexity of ``W_p^p``), which needs assumptions on
``mu, nu`` beyond the diameter and is *not* part of the number computed here.

:func:`pac_bayes_bound` takes ``lambda`` as one number or as a grid ``Lambda`` of ``G`` values fixed
before the data; with a grid the bound is the largest over it with ``log(G / delta)`` in place of
``log(1 / delta)`` (a union bound). The default grid, :func:`lambda_grid`, is
``lambda_j = 2^j sqrt(8 / (Delta^(2p) (1/n + 1/m)))``, ``j = 0..15``: it depends on ``n, m, Delta, p``
only, and is within a factor 2 of the optimum ``lambda* = sqrt(8 (KL + log(G/delta)) / (Delta^(2p) (1/n + 1/m)))``
for every ``KL + log(G/delta)`` in ``[1, 4^15]``.

The slice term ``SW_p^p(mu_n, nu_m; rho)`` is itself an expectation over ``rho``:
:func:`certify` estimates it with ``L`` slices drawn from ``rho`` (independent of the samples) and
replaces it by the empirical-Bernstein lower confidence limit of A. Maurer and M. Pontil (*Empirical
Bernstein Bounds and Sample Variance Penalization*, COLT 2009, Theorem 4) for costs in ``[0, Delta^p]``::

    mean - sqrt(2 V log(2/delta') / L) - 7 Delta^p log(2/delta') / (3 (L - 1))

(``V`` the sample variance of the ``L`` costs). The reported ``bound`` uses ``delta / 2`` for the samples
and ``delta / 2`` for the slices, so it holds with probability at least ``1 - delta``.

The slice distribution and its KL
---------------------------------
``rho = sum_k w_k vMF(m_k, kappa_k)``, a mixture of von Mises-Fisher laws. For one component against
the uniform law (closed form, ``nu = d/2 - 1``, ``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)`` the
mean cosine)::

    KL(vMF(m, kappa) || U(S^(d-1))) = kappa A_d(kappa) + nu log kappa - log I_nu(kappa) - nu log 2 - log Gamma(d/2)

(it does not depend on ``m``; ``d/d kappa = kappa A_d'(kappa)``, ``A_d' = 1 - A_d^2 - (d - 1) A_d / kappa``).
For the mixture the KL has no closed form; :func:`mixture_kl_bound` uses the convexity upper bound
``KL(sum_k w_k q_k || pi) <= sum_k w_k KL(q_k || pi)``, so the PAC-Bayes bound stays a valid lower bound.

Learning
--------
:func:`fit_vmf_mixture` climbs, with Adam on ``(m_k, log kappa_k, logit w_k)``, the bound at the best
``lambda`` of a continuum (a smooth stand-in for the grid's maximum; :func:`certify` then evaluates the
grid bound proper, preferably on held-out samples)::

    J(rho) = sum_k w_k mean_s W_p^p(theta_ks) - 2 sqrt((KL_conv(rho) + log(G/delta)) Delta^(2p) (1/n + 1/m) / 8)

with ``S`` draws ``theta_ks`` per component (stratified: the weights enter exactly). The draws are
reparameterised (:func:`geom.directions.von_mises_fisher`): Wood's rejection sampler for the cosine to the
location, a uniform tangent part, and the implicit reparameterisation gradient in ``kappa``, which the rejection
sampler does not have (M. Figurnov, S. Mohamed, A. Mnih, *Implicit Reparameterization Gradients*, NeurIPS 2018).
Every cost goes through :func:`geom.sliced_wasserstein` with the drawn directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import check_int, check_positive_int, check_real, describe
from ..directions import _log_bessel_i, _mean_cosine, von_mises_fisher
from ..measures import Measure
from ..sliced import make_generator, sliced_wasserstein

__all__ = ["BoundReport", "FitResult", "VmfMixture", "certify", "empirical_bernstein_lower", "fit_vmf_mixture",
           "lambda_grid", "mean_cosine", "mixture_kl_bound", "pac_bayes_bound", "slice_costs",
           "sw_permutation_test", "truncated_gaussians", "vmf_kl_uniform"]

GRID_SIZE = 16
_KAPPA_RANGE = (1e-4, 1e5)


# ----------------------------------------------------------------------------------- checks


def _check_dim(dim, name="dim") -> int:
    return check_int(dim, name, minimum=1)


def _check_delta(delta) -> float:
    return check_real(delta, "delta", "in (0, 1)", lambda v: 0 < v < 1)


def _check_diameter(diameter) -> float:
    return check_real(diameter, "diameter", "> 0 (the diameter of the supports)", lambda v: v > 0)


def _check_p(p) -> float:
    return check_real(p, "p", ">= 1", lambda v: v >= 1)


def _points(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point() or x.shape[0] < 1:
        raise TypeError(f"{name}: expected a floating (N, d) tensor of sample points with N >= 1, got {describe(x)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite coordinates, got non-finite values")
    return x


def _samples(x, name: str):
    """``(data, d, n)``: a detached ``(N, d)`` / ``(B, N, d)`` floating tensor or a :class:`geom.Measure` of
    points, its dimension and its number of atoms."""
    if isinstance(x, Measure):
        if x.support.ndim != 3:
            raise TypeError(f"{name}: expected a Measure of points ((B, N, d) support), got support of shape "
                            f"{tuple(x.support.shape)}")
        return x.detach(), x.dim, x.n_points
    if not isinstance(x, torch.Tensor) or x.ndim not in (2, 3) or not x.is_floating_point() or x.shape[-2] < 1:
        raise TypeError(f"{name}: expected a floating (N, d) or (B, N, d) tensor of sample points (or a geom.Measure), "
                        f"got {describe(x)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite coordinates, got non-finite values")
    return x.detach(), x.shape[-1], x.shape[-2]


# ----------------------------------------------------------------------------------- vMF against uniform


def mean_cosine(kappa, dim: int) -> torch.Tensor:
    """``E[theta^T m]`` under ``vMF(m, kappa)`` on S^(d-1): ``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)``.

    Args:
        kappa: concentration(s) ``> 0``, a number or a tensor of any shape.
        dim: ``d``, the dimension of the ambient space.

    Returns:
        float64 tensor of ``kappa``'s shape (not differentiable).
    """
    dim = _check_dim(dim)
    k = _kappa_array(kappa)
    return torch.from_numpy(_mean_cosine(k, dim))


def _kappa_array(kappa) -> np.ndarray:
    if isinstance(kappa, torch.Tensor):
        if not kappa.is_floating_point():
            raise TypeError(f"kappa: expected a floating tensor, got {describe(kappa)}")
        k = kappa.detach().double().cpu().numpy()
    else:
        check_real(kappa, "kappa", "> 0", lambda v: v > 0)
        k = np.asarray(float(kappa))
    if not (np.isfinite(k).all() and (k > 0).all()):
        raise ValueError(f"kappa: expected finite concentrations > 0, got {k.ravel()[:4].tolist()}")
    return np.array(k, dtype=np.float64)


def _kl_values(k: np.ndarray, dim: int) -> np.ndarray:
    from scipy.special import gammaln

    nu = dim / 2 - 1
    a = _mean_cosine(k, dim)
    kl = k * a + nu * np.log(k) - _log_bessel_i(nu, k) - nu * math.log(2) - gammaln(dim / 2)
    return np.asarray(np.maximum(kl, 0.0), dtype=np.float64)  # KL >= 0; rounding near kappa = 0 only


class _KL(torch.autograd.Function):
    """``KL(vMF(., kappa) || uniform)`` with its derivative ``kappa A_d'(kappa)``."""

    @staticmethod
    def forward(ctx, kappa, dim):
        k = kappa.detach().double().cpu().numpy()
        ctx.dim = dim
        ctx.save_for_backward(kappa)
        return torch.from_numpy(_kl_values(k, dim)).to(dtype=kappa.dtype, device=kappa.device)

    @staticmethod
    def backward(ctx, grad):
        (kappa,) = ctx.saved_tensors
        k = kappa.detach().double().cpu().numpy()
        a = _mean_cosine(k, ctx.dim)
        slope = np.asarray(k * (1 - a * a) - (ctx.dim - 1) * a, dtype=np.float64)  # kappa A'(kappa)
        return grad * torch.from_numpy(slope).to(dtype=kappa.dtype, device=kappa.device), None


def vmf_kl_uniform(kappa, dim: int) -> torch.Tensor:
    """``KL(vMF(m, kappa) || U(S^(d-1)))`` in closed form, differentiable in ``kappa``.

    ``kappa A_d(kappa) + nu log kappa - log I_nu(kappa) - nu log 2 - log Gamma(d/2)`` with ``nu = d/2 - 1``
    (any location ``m``; ``d = 1``: ``kappa tanh(kappa) - log cosh(kappa)``, the same formula).

    Args:
        kappa: concentration(s) ``> 0``: a number, or a floating tensor of any shape (gradients flow).
        dim: ``d >= 1``.

    Returns:
        tensor of ``kappa``'s shape (float64 for a number), in nats.

    >>> round(float(vmf_kl_uniform(1e-6, 3)), 9)
    0.0
    """
    dim = _check_dim(dim)
    _kappa_array(kappa)
    if not isinstance(kappa, torch.Tensor):
        kappa = torch.tensor(float(kappa), dtype=torch.float64)
    return _KL.apply(kappa, dim)


def mixture_kl_bound(weights: torch.Tensor, kappas: torch.Tensor, dim: int) -> torch.Tensor:
    """``sum_k w_k KL(vMF(m_k, kappa_k) || uniform)``: the convexity upper bound on the KL of the mixture.

    Args:
        weights: ``(K,)`` non-negative weights summing to 1.
        kappas: ``(K,)`` concentrations ``> 0``.
        dim: ``d``.

    Returns:
        scalar tensor, differentiable in both.
    """
    return (weights * vmf_kl_uniform(kappas, dim)).sum()


# ----------------------------------------------------------------------------------- the mixture


@dataclass
class VmfMixture:
    """``rho = sum_k w_k vMF(m_k, kappa_k)`` on S^(d-1).

    Attributes:
        locations: ``(K, d)`` float64 unit rows ``m_k``.
        kappas: ``(K,)`` float64 concentrations ``> 0``.
        weights: ``(K,)`` float64 weights ``>= 0`` summing to 1.
    """

    locations: torch.Tensor
    kappas: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self):
        loc, kap, w = self.locations, self.kappas, self.weights
        if not isinstance(loc, torch.Tensor) or loc.ndim != 2 or loc.shape[0] < 1 or loc.shape[1] < 2 \
                or not loc.is_floating_point():
            raise TypeError(f"locations: expected a floating (K, d) tensor with K >= 1 and d >= 2, got {describe(loc)}")
        K = loc.shape[0]
        for name, t in (("kappas", kap), ("weights", w)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (K,) or not t.is_floating_point():
                raise TypeError(f"{name}: expected a floating ({K},) tensor (one per location), got {describe(t)}")
        loc, kap, w = (t.detach().double().cpu() for t in (loc, kap, w))
        norms = loc.norm(dim=1)
        if not bool(torch.isfinite(loc).all()) or bool((norms == 0).any()):
            raise ValueError("locations: expected finite nonzero rows")
        if not bool(torch.isfinite(kap).all()) or bool((kap <= 0).any()):
            raise ValueError(f"kappas: expected finite concentrations > 0, got {kap.tolist()}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or abs(float(w.sum()) - 1) > 1e-6:
            raise ValueError(f"weights: expected non-negative weights summing to 1, got {w.tolist()}")
        self.locations, self.kappas, self.weights = loc / norms[:, None], kap, w / w.sum()

    @property
    def dim(self) -> int:
        return self.locations.shape[1]

    @property
    def n_components(self) -> int:
        return self.locations.shape[0]

    def kl_bound(self) -> float:
        """The convexity upper bound on ``KL(rho || uniform)`` (:func:`mixture_kl_bound`), in nats."""
        return float(mixture_kl_bound(self.weights, self.kappas, self.dim))

    def sample(self, n: int, *, generator=None) -> torch.Tensor:
        """``(n, d)`` float64 draws: components by their weights, then each component's vMF draws (grouped
        by component, in component order)."""
        n = check_positive_int(n, "n")
        pick = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        counts = torch.bincount(pick, minlength=self.n_components).tolist()
        parts = [von_mises_fisher(self.locations[k], self.kappas[k], c, generator=generator)
                 for k, c in enumerate(counts) if c]
        return torch.cat(parts)


# ----------------------------------------------------------------------------------- the bound


def _spread(n: int, m: int, diameter: float, p: float) -> float:
    """``Delta^(2p) (1/n + 1/m) / 8``: the exponential-moment constant of the bound."""
    try:
        return math.exp(2 * p * math.log(diameter)) * (1 / n + 1 / m) / 8
    except OverflowError:
        raise ValueError(f"diameter, p: Delta^(2p) = {diameter:g}^{2 * p:g} overflows float64; rescale the data") from None


def lambda_grid(n: int, m: int | None = None, *, diameter: float, p: float, size: int = GRID_SIZE) -> list[float]:
    """The default grid of ``lambda``: ``2^j sqrt(8 / (Delta^(2p) (1/n + 1/m)))``, ``j = 0..size-1``.

    It depends on the sample sizes, the diameter and ``p`` only (never on the samples), as the bound needs.
    """
    n = check_positive_int(n, "n")
    m = n if m is None else check_positive_int(m, "m")
    base = 1 / math.sqrt(_spread(n, m, _check_diameter(diameter), _check_p(p)))
    return [base * 2.0**j for j in range(check_positive_int(size, "size"))]


def pac_bayes_bound(empirical: float, kl: float, *, n: int, m: int | None = None, diameter: float, p: float,
                    delta: float = 0.05, lam=None) -> tuple[float, float]:
    """The PAC-Bayes lower bound on ``E_S SW_p^p(mu_n, nu_m; rho)`` (see the module for the statement).

    ``empirical - (kl + log(G / delta)) / lam - lam Delta^(2p) (1/n + 1/m) / 8``, the largest over the
    ``G`` values of ``lam`` (``G = 1`` for one number).

    Args:
        empirical: ``SW_p^p(mu_n, nu_m; rho)`` on the samples (a p-th power, not its root).
        kl: ``KL(rho || pi)`` or an upper bound on it, ``>= 0``.
        n, m: sample sizes of ``mu`` and ``nu`` (``m = n`` by default).
        diameter: ``Delta``, the diameter of the supports.
        p: the order, ``>= 1``.
        delta: the confidence level, in (0, 1).
        lam: ``lambda > 0``, a sequence of them fixed before the data, or None for :func:`lambda_grid`.

    Returns:
        ``(bound, lam)``: the bound and the ``lambda`` that gives it.

    >>> pac_bayes_bound(0.5, 2.0, n=100, diameter=1.0, p=1, delta=0.1, lam=10.0)[0]  # doctest: +ELLIPSIS
    0.044741...
    """
    empirical = check_real(empirical, "empirical", "(the empirical SW_p^p)")
    kl = check_real(kl, "kl", ">= 0", lambda v: v >= 0)
    n = check_positive_int(n, "n")
    m = n if m is None else check_positive_int(m, "m")
    diameter, p, delta = _check_diameter(diameter), _check_p(p), _check_delta(delta)
    if lam is None:
        grid = lambda_grid(n, m, diameter=diameter, p=p)
    elif isinstance(lam, (list, tuple)):
        if not lam:
            raise ValueError("lam: expected at least one value, got an empty sequence")
        grid = [check_real(v, "lam", "> 0", lambda v: v > 0) for v in lam]
    else:
        grid = [check_real(lam, "lam", "> 0 (or a sequence of them)", lambda v: v > 0)]
    c = _spread(n, m, diameter, p)
    log_term = kl + math.log(len(grid) / delta)
    values = [empirical - log_term / g - g * c for g in grid]
    j = int(np.argmax(values))
    return values[j], grid[j]


def empirical_bernstein_lower(costs: torch.Tensor, upper: float, delta: float) -> float:
    """Lower confidence limit on the mean of i.i.d. values in ``[0, upper]`` (Maurer and Pontil, 2009, Theorem 4).

    ``mean - sqrt(2 V log(2/delta) / L) - 7 upper log(2/delta) / (3 (L - 1))``, ``V`` the unbiased sample
    variance: holds with probability at least ``1 - delta``.

    Args:
        costs: ``(L,)`` values, ``L >= 2``.
        upper: the largest value they can take.
        delta: in (0, 1).
    """
    if not isinstance(costs, torch.Tensor) or costs.ndim != 1 or costs.shape[0] < 2:
        raise TypeError(f"costs: expected a (L,) tensor with L >= 2, got {describe(costs)}")
    upper = check_real(upper, "upper", "> 0", lambda v: v > 0)
    delta = _check_delta(delta)
    c = costs.detach().double()
    L = c.shape[0]
    log_term = math.log(2 / delta)
    return float(c.mean() - (2 * c.var() * log_term / L).sqrt() - 7 * upper * log_term / (3 * (L - 1)))


def slice_costs(x, y, theta: torch.Tensor, p: float) -> torch.Tensor:
    """``(L,)`` per-slice ``W_p^p(theta_l#mu_n, theta_l#nu_m)`` through :func:`geom.sliced_wasserstein`,
    differentiable in the directions ``theta (L, d)``; for batches the mean over the items."""
    costs = sliced_wasserstein(x, y, directions=theta, p=p, return_result=True).costs
    return costs.mean(0) if costs.ndim == 2 else costs


@dataclass
class BoundReport:
    """The bound of :func:`certify` and its parts.

    Attributes:
        bound: the certified lower bound on ``E_S SW_p^p(mu_n, nu_m; rho)`` (probability ``>= 1 - delta``).
        empirical: Monte Carlo estimate of ``SW_p^p(mu_n, nu_m; rho)`` over ``n_slices`` draws of ``rho``.
        stderr: its standard error.
        empirical_lower: the empirical-Bernstein lower limit of ``empirical`` (level ``delta / 2``).
        kl: the KL bound used; ``lam``: the ``lambda`` of the grid that gives the bound;
        complexity: ``empirical_lower - bound``, the price of the data and of ``rho``'s KL.
        n, m, diameter, p, delta, n_slices: as given.
    """

    bound: float
    empirical: float
    stderr: float
    empirical_lower: float
    kl: float
    lam: float
    complexity: float
    n: int
    m: int
    diameter: float
    p: float
    delta: float
    n_slices: int

    def as_dict(self) -> dict:
        return dict(vars(self))


def certify(rho: VmfMixture | None, x: torch.Tensor, y: torch.Tensor, *, diameter: float, p: float,
            delta: float = 0.05, n_slices: int = 4096, seed=None, generator=None) -> BoundReport:
    """The PAC-Bayes bound for ``rho`` on the samples ``x ~ mu``, ``y ~ nu`` (held out from its learning).

    The slice term is the empirical-Bernstein lower limit over ``n_slices`` draws of ``rho`` (level
    ``delta / 2``); the PAC-Bayes bound takes ``delta / 2`` and the default grid of ``lambda``.

    Args:
        rho: the slice distribution; None for the uniform prior itself (KL 0).
        x, y: ``(N, d)``, ``(M, d)`` samples.
        diameter: ``Delta`` (fixed before seeing the samples for the bound to hold).
        p: the order.
        delta: total confidence, in (0, 1).
        n_slices: draws of ``rho``, ``>= 2``.
        seed, generator: the randomness of the draws.
    """
    x, y = _points(x, "x"), _points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x, y: expected the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if rho is not None and not isinstance(rho, VmfMixture):
        raise TypeError(f"rho: expected a VmfMixture or None (uniform), got {describe(rho)}")
    if rho is not None and rho.dim != x.shape[1]:
        raise ValueError(f"rho: expected a distribution on S^{x.shape[1] - 1} (d = {x.shape[1]}), got d = {rho.dim}")
    diameter, p, delta = _check_diameter(diameter), _check_p(p), _check_delta(delta)
    L = check_int(n_slices, "n_slices", minimum=2)
    gen = make_generator(seed, generator)
    from ..directions import uniform_directions

    with torch.no_grad():
        theta = uniform_directions(L, x.shape[1], gen) if rho is None else rho.sample(L, generator=gen)
        costs = slice_costs(x, y, theta.to(x.dtype), p).double()  # (L,)
    kl = 0.0 if rho is None else rho.kl_bound()
    upper = math.exp(p * math.log(diameter))
    lower = empirical_bernstein_lower(costs, upper, delta / 2)
    n, m = x.shape[0], y.shape[0]
    bound, lam = pac_bayes_bound(lower, kl, n=n, m=m, diameter=diameter, p=p, delta=delta / 2)
    return BoundReport(bound, float(costs.mean()), float(costs.std() / math.sqrt(L)), lower, kl, lam,
                       lower - bound, n, m, diameter, p, delta, L)


# ----------------------------------------------------------------------------------- learning


@dataclass
class FitResult:
    """What :func:`fit_vmf_mixture` returns: the learned ``rho`` and the objective ``J`` at every step."""

    rho: VmfMixture
    history: list[float] = field(default_factory=list)


def _initial_locations(x, y, d, dtype, p, K, n_candidates, generator) -> torch.Tensor:
    """``(K, d)`` starting locations: the best of ``n_candidates`` uniform directions by their cost on the
    data, greedily, each at least 60 degrees from the ones taken (up to sign: the costs are even)."""
    from ..directions import uniform_directions

    cand = uniform_directions(n_candidates, d, generator)  # (C, d)
    with torch.no_grad():
        order = torch.argsort(slice_costs(x, y, cand.to(dtype), p), descending=True).tolist()
    chosen = []
    for i in order:
        if all(abs(float(cand[i] @ cand[j])) < 0.5 for j in chosen):
            chosen.append(i)
        if len(chosen) == K:
            break
    for i in order:  # fewer than K far apart (tiny d): the best remaining ones
        if len(chosen) == K:
            break
        if i not in chosen:
            chosen.append(i)
    return cand[chosen]


def fit_vmf_mixture(x, y, *, diameter: float, p: float = 2, n_components: int = 2,
                    n_steps: int = 200, lr: float = 0.05, n_samples: int = 32, delta: float = 0.05,
                    kappa_init: float | None = None, n_candidates: int = 256, init: VmfMixture | None = None,
                    seed=None, generator=None, progress: bool | None = None) -> FitResult:
    """Learn a vMF mixture ``rho`` by climbing the smooth PAC-Bayes objective ``J`` (see the module).

    Args:
        x, y: ``(N, d)``, ``(M, d)`` training samples of ``mu`` and ``nu`` (``d >= 2``); or ``(B, N, d)``
            batches, or :class:`geom.Measure` s of points (weights honoured), for the batch mean of ``J``.
        diameter: ``Delta``, the diameter of the supports.
        p: the order.
        n_components: ``K``.
        n_steps: Adam steps (0: the starting distribution).
        lr: Adam step size (on the raw locations, ``log kappa`` and the weight logits).
        n_samples: draws per component and step, ``>= 2``.
        delta: the confidence level in ``J``'s ``log(G / delta)``.
        kappa_init: starting concentration (default ``d``).
        n_candidates: uniform directions scored for the starting locations.
        init: start from this mixture instead (its ``K`` and ``d`` must fit).
        seed, generator: the randomness (one of them).
        progress: a tqdm bar (default: from 50 steps on).

    Returns:
        :class:`FitResult` with the learned mixture and ``J`` at each step.
    """
    (x, d, n), (y, dy, m) = _samples(x, "x"), _samples(y, "y")
    if dy != d:
        raise ValueError(f"x, y: expected the same dimension, got {d} and {dy}")
    dtype = x.dtype
    if d < 2:
        raise ValueError(f"x: expected points of dimension d >= 2 (a vMF mixture on S^(d-1) to learn), got d = {d}")
    diameter, p, delta = _check_diameter(diameter), _check_p(p), _check_delta(delta)
    K = check_positive_int(n_components, "n_components")
    n_steps = check_int(n_steps, "n_steps")
    lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
    S = check_int(n_samples, "n_samples", minimum=2)
    n_candidates = check_int(n_candidates, "n_candidates", minimum=1)
    kappa0 = float(d) if kappa_init is None else check_real(kappa_init, "kappa_init", "> 0", lambda v: v > 0)
    gen = make_generator(seed, generator)
    if init is not None:
        if not isinstance(init, VmfMixture):
            raise TypeError(f"init: expected a VmfMixture, got {describe(init)}")
        if init.dim != d or init.n_components != K:
            raise ValueError(f"init: expected {K} components on S^{d - 1}, got {init.n_components} on S^{init.dim - 1}")
        loc0, logk0, logit0 = init.locations, init.kappas.log(), init.weights.clamp_min(1e-300).log()
    else:
        loc0 = _initial_locations(x, y, d, dtype, p, K, n_candidates, gen)
        logk0 = torch.full((K,), math.log(kappa0), dtype=torch.float64)
        logit0 = torch.zeros(K, dtype=torch.float64)
    loc, logk, logit = (t.clone().double().requires_grad_(True) for t in (loc0, logk0, logit0))
    c = _spread(n, m, diameter, p)
    log_grid = math.log(GRID_SIZE / delta)
    lo, hi = (math.log(v) for v in _KAPPA_RANGE)

    from ..ascent import ProjectedAscent

    def project():
        loc.div_(loc.norm(dim=1, keepdim=True))
        logk.clamp_(lo, hi)

    ascent = ProjectedAscent([loc, logk, logit], project=project)
    history = []
    from tqdm import tqdm

    bar = tqdm(total=n_steps, desc="geom pacbayes fit", disable=not (n_steps >= 50 if progress is None else progress))
    try:
        with torch.enable_grad():
            for _ in range(n_steps):
                kappa = logk.exp()
                w = torch.softmax(logit, 0)
                theta = torch.cat([von_mises_fisher(loc[k], kappa[k], S, generator=gen) for k in range(K)])  # (K S, d)
                costs = slice_costs(x, y, theta.to(dtype), p).double().reshape(K, S)
                empirical = (w * costs.mean(1)).sum()
                kl = mixture_kl_bound(w, kappa, d)
                objective = empirical - 2 * torch.sqrt((kl + log_grid) * c)
                objective.backward()
                ascent.step(lr)
                history.append(float(objective.detach()))
                bar.update(1)
    finally:
        bar.close()
    with torch.no_grad():
        rho = VmfMixture(loc.detach(), logk.detach().exp(), torch.softmax(logit.detach(), 0))
    return FitResult(rho, history)


# ----------------------------------------------------------------------------------- two-sample test


def sw_permutation_test(x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor, *, p: float = 2,
                        n_permutations: int = 199, seed=None, generator=None) -> tuple[float, float]:
    """Permutation two-sample test with the sliced Wasserstein statistic along fixed directions.

    Null hypothesis: ``x`` and ``y`` are samples of one law. The statistic is ``SW_p`` of the two samples
    along ``directions`` (chosen independently of ``x`` and ``y``: drawn from the prior, or from a ``rho``
    learned on other samples, so that the test is exact); the p-value counts the random relabellings of the
    pooled sample whose statistic is at least the observed one, ``(1 + #) / (1 + n_permutations)``. All
    relabellings go through :func:`geom.sliced_wasserstein` as one batch.

    Args:
        x, y: ``(N, d)``, ``(M, d)`` samples.
        directions: ``(L, d)`` unit rows.
        p: the order.
        n_permutations: relabellings drawn, ``>= 1``.
        seed, generator: the randomness of the relabellings.

    Returns:
        ``(statistic, pvalue)``.
    """
    x, y = _points(x, "x"), _points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x, y: expected the same dimension, got {x.shape[1]} and {y.shape[1]}")
    P = check_positive_int(n_permutations, "n_permutations")
    gen = make_generator(seed, generator)
    N = x.shape[0]
    z = torch.cat([x, y])  # (N + M, d)
    C = z.shape[0]
    perms = torch.stack([torch.arange(C)] + [torch.randperm(C, generator=gen) for _ in range(P)])  # (P + 1, C)
    with torch.no_grad():
        stats = sliced_wasserstein(z[perms[:, :N]], z[perms[:, N:]], directions=directions, p=p)  # (P + 1,)
    observed = float(stats[0])
    return observed, (1 + int((stats[1:] >= stats[0]).sum())) / (1 + P)


def truncated_gaussians(n: int, basis: torch.Tensor, *, shift: float = 0.0, scale: float = 1.0,
                        radius: float, seed=None, generator=None) -> torch.Tensor:
    """``n`` points of a Gaussian law truncated to the ball ``|x| <= radius`` (rejection), the two-sample
    problem of the PAC-Bayes benchmark: the standard normal of R^d, moved by ``shift`` along ``basis[:, 0]``
    and with standard deviation ``scale`` along ``basis[:, 1]``. ``shift = 0, scale = 1`` is the null law;
    the two laws differ along two directions only, and both live in a ball of diameter ``2 radius``.

    Args:
        n: number of points.
        basis: ``(d, 2)`` orthonormal columns (``d >= 2``).
        shift, scale: the change along the two columns (``scale > 0``).
        radius: the truncation radius ``> 0``.
        seed, generator: the randomness.

    Returns:
        ``(n, d)`` float32 points.
    """
    n = check_positive_int(n, "n")
    if not isinstance(basis, torch.Tensor) or basis.ndim != 2 or basis.shape[1] != 2 or basis.shape[0] < 2:
        raise TypeError(f"basis: expected a (d, 2) tensor of orthonormal columns, got {describe(basis)}")
    shift = check_real(shift, "shift", "(a number)")
    scale = check_real(scale, "scale", "> 0", lambda v: v > 0)
    radius = check_real(radius, "radius", "> 0", lambda v: v > 0)
    gen = make_generator(seed, generator)
    U = basis.double()
    parts, have = [], 0
    for _ in range(1000):
        z = torch.randn(2 * n, U.shape[0], generator=gen, dtype=torch.float64)  # (2n, d)
        z = z + shift * U[:, 0] + (scale - 1) * (z @ U[:, 1])[:, None] * U[:, 1]
        z = z[z.norm(dim=1) <= radius]
        parts.append(z)
        have += z.shape[0]
        if have >= n:
            return torch.cat(parts)[:n].float()
    raise ValueError(f"radius: {radius:g} keeps too few points of this law (fewer than {n} in 2000 n draws)")
