"""``"qmc"``: quasi-Monte Carlo slicing, QSW and randomized QSW (RQSW).

Paper: K. Nguyen, N. Bariletto, N. Ho, *Quasi-Monte Carlo for 3D Sliced Wasserstein*, ICLR 2024.

Monte Carlo slicing averages ``W_p^p`` over i.i.d. uniform directions, with error ``O(L^-1/2)``.
QSW averages over a low-discrepancy point set on the sphere instead (a deterministic rule whose
error decays faster); RQSW randomises the point set so that every direction is marginally uniform
on the sphere, which makes the average an unbiased estimate of ``E_theta W_p^p`` while keeping the
even spread of the set.

Point sets (option ``point_set``):

========================  ====================================================  ==========  ==========================
name                      construction                                          dimensions  randomisation
========================  ====================================================  ==========  ==========================
``"gaussian"``            Sobol points through the inverse normal CDF,          any d       scrambled Sobol
                          normalised
``"equal_area"``          Sobol points of the unit square through Lambert's     d = 3       scrambled Sobol
                          (Archimedes') equal-area map ``(x, y) -> (2 sqrt(x -
                          x^2) cos 2 pi y, 2 sqrt(x - x^2) sin 2 pi y, 1 - 2x)``
``"spiral"``              generalized spiral points: ``z_i = 1 - (2i - 1)/L``,  d = 3       Haar-random rotation
                          ``phi_i = arccos z_i``, ``psi_i = 1.8 sqrt(L) phi_i
                          mod 2 pi``
``"max_distance"``        maximise the sum of pairwise distances                any d       Haar-random rotation
``"coulomb"`` (default)   minimise the Coulomb energy ``sum 1/|t_i - t_j|``     any d       Haar-random rotation
========================  ====================================================  ==========  ==========================

The two optimised sets follow the paper: gradient descent of the energy on the sphere (tangent
gradients, quasi-Newton steps, projection back onto the sphere) from a deterministic start (the
spiral points in d = 3, as in the paper; the fixed Gaussian-Sobol set elsewhere; alternating ``+-1``
on the line, where S^0 has two points), cached per ``(L, d, point_set)`` in this module so a training loop pays for the
optimisation once. By Stolarsky's invariance principle the sum of distances is, up to constants,
the spherical-cap L2 discrepancy: ``max_distance`` minimises that discrepancy. Beyond the paper,
``gaussian``, ``max_distance`` and ``coulomb`` work in every dimension; ``equal_area`` and
``spiral`` are constructions on S^2 and raise a ValueError elsewhere.

Why ``coulomb`` is the default: in the paper's 3-D experiments the Coulomb-energy set gives the
smallest approximation error among the QSW sets and its rotated version (RCQSW) is the variant the
paper recommends for stochastic optimisation; it also exists in every dimension, so the default
works for any data. ``spiral`` is nearly as accurate in 3-D with no optimisation at all.

Randomisation and standard error (options ``randomize``, ``n_randomizations``): with
``randomize=True`` (the default) the ``L`` directions are split into ``R = min(n_randomizations, L)``
consecutive groups of ``L // R`` or ``L // R + 1`` directions; each group is an independently
randomised point set of its size (a fresh scrambling of the Sobol points, or a fresh Haar-random
rotation ``Q`` of the deterministic set: ``Q`` from the QR factorisation of a Gaussian matrix with
the signs of ``R``'s diagonal moved into ``Q``). The estimate of ``E W_p^p`` is the mean of the
``R`` group means, each unbiased; its standard error is the standard deviation of the group means
over ``sqrt(R)``.

The default is ``R = 1``, the paper's RQSW: one randomised set of all ``L`` points. It is the most
accurate choice, and it has no standard error: one randomisation is one draw of the estimator, and
nothing in it measures its spread, so the reported stderr is ``nan``. An error bar needs ``R >= 2``
independent randomisations, and it costs accuracy, because each group is a smaller, less even set.
Measured on five 3-D shape pairs (2048 surface samples each, 20 seeds, L = 100), the RMSE against
Monte Carlo's: ``R = 1`` 0.0003-0.032x, ``R = 2`` 0.001-0.089x, ``R = 3`` 0.003-0.12x (the
cube/ellipsoid pair, with its sharp edges, is the hardest; ``tools/schemes_bench.py``). ``R = 2``
gives an unbiased variance estimate with one degree of freedom: honest but rough; raise ``R`` for a
steadier error bar.

With ``randomize=False`` the scheme is the deterministic QSW rule (Sobol sets with one fixed
scrambling, which keeps their points off the corners and the centre of the cube). A deterministic
rule has no sampling distribution, hence no standard error: the reported stderr is ``nan``, and the
estimate carries a bias of the size of the rule's quadrature error.

Other direction spaces (frames of the sphere kind, SPD directions) map ``k = space.gaussian_dim``
Gaussian coordinates to a direction (``space.from_gaussian``), and the maps of geom's spaces depend on
the coordinates' direction only (``space.scale_invariant``): a point uniform on S^(k-1) gives a
uniform direction. So ``"max_distance"`` and ``"coulomb"`` sets of S^(k-1), Haar-rotated, serve
there, and ``"gaussian"`` (Sobol points through the inverse normal CDF) in every space; ``"spiral"``
and ``"equal_area"`` are constructions on S^2 and are refused. The default (``point_set=None``) is
``"max_distance"`` there: for the distance of 80 points on S^2 to the uniform law (frames of R^3,
``k = 6``, L = 64, 40 seeds, three measures) the RMSE against Monte Carlo's was 0.42-0.43x for
``"max_distance"``, 0.53-0.58x for ``"coulomb"``, 0.62-0.72x for ``"gaussian"``.

The grouping of the last :meth:`QuasiMonteCarlo.directions` call is remembered on the instance for
:meth:`QuasiMonteCarlo.estimate`, which applies it when the core says the scheme drew the
directions (``context.drawn``); directions the caller gave (``directions=...``) get the plain mean
and a ``nan`` stderr.
"""

from __future__ import annotations

import math

import torch

import geom
from geom import _cache
from geom._checks import check_memory, check_positive_int, describe
from geom.directions import haar_rotation

__all__ = ["POINT_SETS", "QuasiMonteCarlo", "energy_points", "equal_area_map", "gaussian_map", "haar_rotation",
           "spiral_points"]  # haar_rotation: from geom.directions, kept here for imports of the first release

#: point set -> the dimensions of the Euclidean sphere it exists in (None: every dimension; only
#: ``"gaussian"`` exists in the other direction spaces).
POINT_SETS = {"gaussian": None, "equal_area": (3,), "spiral": (3,), "max_distance": None, "coulomb": None}
_SOBOL_SETS = ("gaussian", "equal_area")
_FIXED_SCRAMBLE = 0  # the Sobol scrambling of the deterministic rule
_ENERGY_CACHE: dict[tuple[int, int, str], torch.Tensor] = {}  # first level; the second is on disk
_ENERGY_FORMAT = 1  # version of the point sets on disk: bump it when their construction changes


def _ndtri(u: torch.Tensor) -> torch.Tensor:
    """``Phi^-1(u)`` of points of the unit cube, float64, kept off the infinite ends."""
    return torch.special.ndtri(u.to(torch.float64).clamp(2.0**-53, 1.0 - 2.0**-53))


def gaussian_map(u: torch.Tensor) -> torch.Tensor:
    """``(n, d)`` points of the open unit cube -> ``(n, d)`` unit rows ``Phi^-1(u) / |Phi^-1(u)|``.

    A uniform ``u`` gives a standard Gaussian vector, whose direction is uniform on the sphere.
    """
    z = _ndtri(u)  # (n, d)
    return z / z.norm(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)


def equal_area_map(u: torch.Tensor) -> torch.Tensor:
    """``(n, 2)`` points of the unit square -> ``(n, 3)`` unit rows by Lambert's equal-area map.

    ``(x, y) -> (2 sqrt(x - x^2) cos 2 pi y, 2 sqrt(x - x^2) sin 2 pi y, 1 - 2 x)``: the height
    ``z = 1 - 2x`` and the longitude ``2 pi y`` are uniform under the surface measure (Archimedes),
    so the map carries the uniform law of the square to the uniform law of S^2.
    """
    u = torch.as_tensor(u, dtype=torch.float64)
    x, y = u[:, 0], u[:, 1]  # (n,)
    r = 2.0 * (x - x * x).clamp_min(0.0).sqrt()
    theta = torch.stack([r * torch.cos(2 * math.pi * y), r * torch.sin(2 * math.pi * y), 1.0 - 2.0 * x], 1)
    return theta / theta.norm(dim=1, keepdim=True)  # exact up to rounding; renormalised


def spiral_points(n: int) -> torch.Tensor:
    """``(n, 3)`` generalized spiral points on S^2 (Rakhmanov, Saff and Zhou), as in the paper.

    ``z_i = 1 - (2i - 1)/n``, ``phi_i = arccos z_i``, ``psi_i = 1.8 sqrt(n) phi_i mod 2 pi`` and
    ``theta_i = (sin phi_i cos psi_i, sin phi_i sin psi_i, cos phi_i)`` for ``i = 1..n``.
    """
    i = torch.arange(1, n + 1, dtype=torch.float64)
    phi = torch.arccos(1.0 - (2.0 * i - 1.0) / n)
    psi = torch.remainder(1.8 * math.sqrt(n) * phi, 2 * math.pi)
    return torch.stack([torch.sin(phi) * torch.cos(psi), torch.sin(phi) * torch.sin(psi), torch.cos(phi)], 1)


def _sobol(n: int, dim: int, seed: int) -> torch.Tensor:
    """``(n, dim)``: the first ``n`` points of the Sobol sequence in ``[0, 1)^dim``, scrambled by
    ``seed`` (random linear matrix scrambling and digital shift: every point is uniform on the cube)."""
    return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)


def _pair_energy(theta: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy of unit rows ``theta (m, d)`` and its Euclidean gradient ``(m, d)``.

    ``coulomb``: ``sum_{i<j} 1/r_ij``; ``max_distance``: ``-sum_{i<j} r_ij`` (minimised), with
    ``r_ij = |theta_i - theta_j|``. For ``E = sum f(r_ij)``, ``dE/dtheta_i = sum_j f'(r)/r (theta_i - theta_j)``.
    """
    r = theta @ theta.T  # (m, m), then |a - b| = sqrt(2 - 2 a.b) on the sphere, in place
    r.mul_(-2.0).add_(2.0).clamp_min_(1e-30).sqrt_()
    if kind == "coulomb":
        r.diagonal().fill_(math.inf)  # no self-interaction: 1/inf = 0
        w = r.reciprocal_()  # 1/r
        energy = w.sum() / 2
        w.mul_(w * w).neg_()  # f'(r)/r = -1/r^3
    else:
        r.diagonal().fill_(0.0)
        energy = -r.sum() / 2
        r.diagonal().fill_(math.inf)
        w = r.reciprocal_().neg_()  # f'(r)/r = -1/r
    return energy, theta * w.sum(1, keepdim=True) - w @ theta


def _optimise(theta: torch.Tensor, kind: str) -> torch.Tensor:
    """Minimise the pair energy over ``m`` points of the sphere, from ``theta (m, d)``.

    Quasi-Newton (L-BFGS, strong Wolfe line search) descent of ``x -> E(x / |x|)``: its gradient is
    the energy's gradient projected on the tangent space of the sphere (over ``|x|``), so the steps
    are projected gradient steps with curvature information, and the result is projected back onto
    the sphere. The number of energy evaluations is capped near ``5e7 / (m^2 (1 + d/3))`` (at least
    50), which bounds the one-off cost (``m = 1000`` in 3-D: a few seconds); the start is already a
    good set, so a capped run still lowers its energy.
    """
    m, d = theta.shape
    if m < 2 or d < 2:
        return theta
    x = theta.clone()
    evaluations = max(50, min(3000, int(5e7 / (m * m * (1 + d / 3)))))
    optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=evaluations, max_eval=evaluations, tolerance_grad=1e-10,
                                  tolerance_change=1e-14, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        norm = x.norm(dim=1, keepdim=True)  # (m, 1)
        t = x / norm
        energy, grad = _pair_energy(t, kind)
        x.grad = (grad - (grad * t).sum(1, keepdim=True) * t) / norm  # tangent part, chain rule through x / |x|
        return energy

    with torch.no_grad():
        optimizer.step(closure)
    return x / x.norm(dim=1, keepdim=True)


def energy_points(n: int, dim: int, kind: str = "coulomb") -> torch.Tensor:
    """``(n, dim)`` unit rows minimising the Coulomb energy (``kind="coulomb"``) or maximising the
    sum of pairwise distances (``kind="max_distance"``); computed once per ``(n, dim, kind)``.

    The start is deterministic: the spiral points in dimension 3, the fixed Gaussian-Sobol set in
    other dimensions, and alternating ``+1, -1`` on the line (S^0 has two points).

    Optimised sets are kept in this process and on disk, in ``qmc/`` of geom's cache folder
    (:mod:`geom._cache`), so each is computed once per user (a line on stderr says so when it is).
    A cached file is checked (shape, float64, finite, unit rows) and never unpickled; a bad one is
    recomputed and rewritten with a GeomWarning naming it; an unwritable folder keeps sets in memory.
    """
    if kind not in ("coulomb", "max_distance"):
        raise ValueError(f"kind: expected 'coulomb' or 'max_distance', got {kind!r}")
    key = (n, dim, kind)
    if key not in _ENERGY_CACHE:
        if dim == 1:
            theta = (1.0 - 2.0 * (torch.arange(n) % 2)).to(torch.float64).reshape(n, 1)
        else:
            path = _cache.cache_dir() / "qmc" / f"{kind}-n{n}-d{dim}-v{_ENERGY_FORMAT}.npy"
            stored = _cache.load_array(path, (n, dim), unit_rows=True) if n > 1 else None  # one point: no optimising
            if stored is not None:
                theta = torch.from_numpy(stored)
            else:  # the optimiser holds a few (n, n) matrices of pair distances
                check_memory(32 * n * n + 64 * n * dim, "n_projections", f"the {kind!r} point set of {n} "
                             f"directions (pair distances of {n} x {n})")
                if n > 1:
                    _cache.announce(f"computing the {kind!r} point set of {n} directions in dimension {dim} "
                                    f"(once; {_cache.where(path.parent)})")
                start = spiral_points(n) if dim == 3 else gaussian_map(_sobol(n, dim, _FIXED_SCRAMBLE))
                theta = _optimise(start, kind)
                if n > 1:
                    _cache.save_array(path, theta.numpy())
        _ENERGY_CACHE[key] = theta
    return _ENERGY_CACHE[key].clone()


class QuasiMonteCarlo(geom.SlicingScheme):
    """Quasi-Monte Carlo directions: QSW (``randomize=False``) and RQSW (``randomize=True``).

    Args:
        point_set: ``"coulomb"``, ``"max_distance"``, ``"gaussian"`` (any dimension),
            ``"equal_area"`` or ``"spiral"`` (dimension 3 only); see the module docstring. Default
            None: ``"coulomb"`` on the Euclidean sphere, ``"max_distance"`` of the Gaussian coordinates
            in frames and SPD directions.
        randomize: draw an independently randomised set per group (unbiased RQSW, with a standard
            error); False gives the deterministic QSW rule (stderr ``nan``).
        n_randomizations: number ``R`` of independent randomised groups the ``L`` directions are
            split into (``min(R, L)`` are used). Default 1: the most accurate estimate, stderr
            ``nan``; ``R >= 2`` gives a standard error at some cost in accuracy. Must be 1 when
            ``randomize`` is False.

    >>> import geom, torch
    >>> x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    >>> r = geom.sliced_wasserstein(x, x + 1.0, scheme=QuasiMonteCarlo(), n_projections=100, seed=0,
    ...                             return_result=True)
    >>> round(r.value.item(), 2)  # exact: |(1, 1, 1)| / sqrt(3) = 1
    1.0
    """

    def __init__(self, *, point_set: str | None = None, randomize: bool = True, n_randomizations: int = 1,
                 **options):
        super().__init__(**options)
        if point_set is not None and not isinstance(point_set, str):
            raise TypeError(f"point_set: expected one of {sorted(POINT_SETS)}, got {describe(point_set)}")
        if point_set is not None and point_set not in POINT_SETS:
            raise ValueError(f"point_set: expected one of {sorted(POINT_SETS)}, got {point_set!r}")
        if not isinstance(randomize, bool):
            raise TypeError(f"randomize: expected True or False, got {describe(randomize)}")
        check_positive_int(n_randomizations, "n_randomizations")
        if not randomize and n_randomizations != 1:
            raise ValueError(f"n_randomizations: expected 1 with randomize=False (a deterministic rule has one "
                             f"realisation), got {n_randomizations}")
        self.point_set, self.randomize, self.n_randomizations = point_set, randomize, n_randomizations
        self._last: tuple[int, ...] | None = None  # the group sizes of the last draw

    def _set_for(self, space) -> str:
        """The point set used in ``space``: the option, or by default ``"coulomb"`` on the Euclidean
        sphere, ``"max_distance"`` of the Gaussian coordinates in other scale-invariant spaces (frames,
        SPD directions), ``"gaussian"`` elsewhere."""
        if self.point_set is not None:
            return self.point_set
        if space.euclidean:
            return "coulomb"
        return "max_distance" if space.scale_invariant else "gaussian"

    def check_space(self, space):
        name = self._set_for(space)
        if name in ("spiral", "equal_area"):
            self.require_euclidean(space, f"point_set {name!r}")
        elif name != "gaussian" and not (space.euclidean or space.scale_invariant):
            raise ValueError(f"point_set: {name!r} spreads points on a sphere, and {space!r} maps Gaussian vectors "
                             "to directions otherwise than by their direction; use point_set='gaussian'")
        dims = POINT_SETS[name]
        if dims is not None and space.dim not in dims:
            anywhere = sorted(k for k, v in POINT_SETS.items() if v is None or space.dim in v)
            raise ValueError(f"point_set: {name!r} exists only in dimension {dims[0]}, got directions "
                             f"in dimension {space.dim}; point sets for dimension {space.dim}: {anywhere}")

    def _point_set(self, m: int, space, generator) -> torch.Tensor:
        """One point set of ``m`` directions, randomised when ``self.randomize``."""
        name = self._set_for(space)
        if name in _SOBOL_SETS:
            seed = _FIXED_SCRAMBLE
            if self.randomize:  # a fresh scrambling: every point uniform on the cube, the set still even
                seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            if name == "gaussian":
                return space.from_gaussian(_ndtri(_sobol(m, space.gaussian_dim, seed)))
            return equal_area_map(_sobol(m, 2, seed))
        k = space.dim if space.euclidean else space.gaussian_dim  # the sphere the set is spread on
        theta = spiral_points(m) if name == "spiral" else energy_points(m, k, name)
        if self.randomize:
            theta = theta @ haar_rotation(k, generator)
        return theta if space.euclidean else space.from_gaussian(theta)

    def directions(self, n, space, *, generator=None):
        """``(n, *space.shape)``: ``R = min(n_randomizations, n)`` consecutive groups, one point set each."""
        self.check_space(space)
        groups = min(self.n_randomizations, n)
        sizes = tuple(n // groups + (g < n % groups) for g in range(groups))
        theta = torch.cat([self._point_set(m, space, generator) for m in sizes])  # (n, *shape)
        self._last = sizes
        return theta

    def estimate(self, costs, context):
        """``costs (B, L)`` -> mean of the group means ``(B,)``, and their spread over ``sqrt(R)`` ``(B,)``."""
        if context.directions.shape[0] != costs.shape[-1]:
            raise ValueError(f"costs: expected one cost per direction ({context.directions.shape[0]}), got "
                             f"shape {tuple(costs.shape)}")
        sizes = self._last if context.drawn else None
        if sizes is None or sum(sizes) != costs.shape[-1]:  # not this instance's draw: no randomisation to use
            value = costs.mean(-1)
            return value, torch.full_like(value.detach(), math.nan)
        means = torch.stack([c.mean(-1) for c in torch.split(costs, sizes, dim=-1)], -1)  # (B, R)
        value = means.mean(-1)
        if len(sizes) < 2 or not self.randomize:
            return value, torch.full_like(value.detach(), math.nan)
        return value, means.detach().std(-1) / math.sqrt(len(sizes))


@geom.hookimpl
def geom_register_schemes(register):
    register("qmc", QuasiMonteCarlo)
