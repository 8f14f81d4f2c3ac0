"""Sliced energy distance (the MMD of the Riesz kernel ``r = 1``) and the sliced MMD particle flow.

Paper: *Generative Sliced MMD Flows with Riesz Kernels*, Johannes Hertrich, Christian Wald, Fabian
Altekrüger, Paul Hagemann (ICLR 2024).

The energy distance is the squared MMD of the Riesz kernel ``K(x, y) = -|x - y|``::

    ED(mu, nu) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|,   X, X' ~ mu,  Y, Y' ~ nu  (not squared)

(the convention of :func:`geom.energy_distance`, weights included). It is linear in the pairwise
distances, and for ``theta`` uniform on the sphere ``E_theta |<theta, z>| = |z| / c_d``, so

    ED(mu, nu) = c_d E_theta ED(theta#mu, theta#nu),   c_d = sqrt(pi) Gamma((d+1)/2) / Gamma(d/2):

``c_d`` times the mean over any number of slices is an *unbiased* estimate of the full energy
distance, not only of a sliced surrogate. On the line, sort the pooled projections ``s`` of both
measures with signed weights ``w = (a, -b)`` (they sum to 0); then ``ED = -sum_ij w_i w_j |s_i - s_j|
= 2 sum_k W_k^2 (s_(k+1) - s_k)`` with ``W_k`` the running sum of the sorted weights (``F - G``
between consecutive atoms): one sort, O(K log K) for ``K = N + M`` instead of O(K^2), and a sum of
non-negative terms (no cancellation). The hand-written backward uses the same sort:

* ``d ED / d s_k = -2 w_k (sum_{s_j < s_k} w_j - sum_{s_j > s_k} w_j)`` (ties count on neither side:
  the gradient of ``|s - s'|`` at ``s = s'`` is 0, as in :func:`geom.energy_distance`);
* ``d ED / d w_k = -2 sum_j w_j |s_k - s_j|``, from running sums of ``w`` and ``w s``.

The directions are constants, so the forward pass sums each slice's gradient (times ``theta_l`` for
the supports) as it goes: memory ``O((N + M) d)`` for any number of slices, and backward, for the
usual mean over slices, only scales the sums.

As in :mod:`geom._ot1d`, sorting is the whole cost: on CPU the slices go through numpy tasks on the
core's thread pool (numpy sorts ~10x faster than torch here), on CUDA through ``torch.sort``.

Directions come from any slicing scheme whose directions are uniform on the sphere (``"mc"``,
``"qmc"``, ...); data-dependent schemes are refused since ``c_d`` holds only for uniform directions.
The scheme's own :meth:`~geom.SlicingScheme.estimate` averages the per-slice values (quasi-Monte
Carlo's randomisation groups and the reservoir's importance weights apply as for ``W_p^p``).

:func:`geom.flows.mmd_flow` moves particles down this estimate with momentum and fresh directions at
every step, as the paper's sliced MMD flow.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_bool, check_positive_int
from ._ot1d import SlicedEnergy
from .reductions import _prepare
from .sliced import finish_slices, prepare_slices

__all__ = ["energy_slicing_constant", "sliced_energy_distance"]



def energy_slicing_constant(d: int) -> float:
    """``c_d = sqrt(pi) Gamma((d+1)/2) / Gamma(d/2)``, so that ``c_d E_theta |<theta, z>| = |z|``.

    For ``theta`` uniform on ``S^(d-1)`` and ``d >= 2``, ``t = theta_1`` has the density
    ``(1 - t^2)^((d-3)/2) / B(1/2, (d-1)/2)`` on ``[-1, 1]``, hence
    ``E|t| = 2 int_0^1 t (1 - t^2)^((d-3)/2) dt / B(1/2, (d-1)/2) = 2 / ((d-1) B(1/2, (d-1)/2))``
    ``= Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2))`` (with ``B(1/2, k) = sqrt(pi) Gamma(k) / Gamma(k + 1/2)``
    and ``(d-1)/2 Gamma((d-1)/2) = Gamma((d+1)/2)``). By rotation invariance
    ``E|<theta, z>| = |z| E|t| = |z| / c_d``. For ``d = 1``, ``theta = +-1`` and ``c_1 = 1``.

    >>> round(energy_slicing_constant(3), 12), round(energy_slicing_constant(2) / math.pi, 12)
    (2.0, 0.5)
    """
    d = check_positive_int(d, "d")
    if d == 1:
        return 1.0
    return math.exp(0.5 * math.log(math.pi) + math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def sliced_energy_distance(
    mu,
    nu,
    *,
    n_projections: int = 256,
    scheme="mc",
    directions=None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    return_result: bool = False,
    **scheme_options,
):
    """Unbiased sliced estimate of the energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|``.

    ``c_d`` (:func:`energy_slicing_constant`) times the mean over ``L`` directions of the exact 1-D
    energy distances of the projections, each computed by one sort of the ``N + M`` pooled values.
    Its expectation over uniform directions is :func:`geom.energy_distance` (same convention: not
    squared, weights included); its standard error shrinks like ``sqrt(d / L)`` relative to the value.

    Args:
        mu, nu: Measures or anything :func:`geom.measure` accepts (point clouds ``(N, d)`` or batches
            ``(B, N, d)`` compared item by item), of the same dimension.
        n_projections: number of directions ``L`` drawn from the scheme.
        scheme: registered scheme name or :class:`geom.SlicingScheme` instance giving directions uniform
            on the sphere (data-dependent schemes are refused).
        directions: ``(L, d)`` unit rows to use instead of the scheme's.
        seed, generator: the randomness of the directions (one of them; neither uses torch's global RNG).
        return_result: return a :class:`geom.SlicedResult` (``costs`` then holds the per-slice
            estimates ``c_d ED(theta_l#mu, theta_l#nu)``, whose mean is the value).
        **scheme_options: options of the named scheme.

    Returns:
        A tensor on the inputs' device and dtype, differentiable in the supports and the weights:
        scalar, or ``(B,)`` for batches; or a :class:`geom.SlicedResult` with the standard error
        over slices.

    >>> from geom.mmd import sliced_energy_distance
    >>> value = sliced_energy_distance([[0.0, 0.0]], [[3.0, 4.0]], directions=[[0.6, 0.8]])  # 1-D: 2 * 5
    >>> round(value.item() / math.pi, 5)  # times c_2 = pi / 2
    5.0
    """
    return_result = check_bool(return_result, "return_result")
    s = prepare_slices(mu, nu, p=1, n_projections=n_projections, scheme=scheme, directions=directions, seed=seed,
                       generator=generator, scheme_options=scheme_options,
                       uniform_only="the sliced energy distance (its constant c_d)")
    if not s.space.euclidean:
        raise ValueError(f"mu, nu: the sliced energy distance slices point clouds along unit rows; kind "
                         f"{s.mu.kind!r} slices along {s.space.describe()}")
    x, y, a, b, _, unit = _prepare(s.mu, s.nu)  # (B, N, D), (B, M, D), (B, N), (B, M): centred, / unit
    energies = SlicedEnergy.apply(x, y, s.directions.detach(), a, b)  # (B, L) in units of `unit`
    c = energy_slicing_constant(x.shape[-1]) * unit
    if not bool(torch.isfinite(c * energies.detach()).all()):
        raise ValueError(f"mu, nu: the sliced energy distance leaves the range of {x.dtype} (clouds of extent about "
                         f"{unit:.3g}); rescale the clouds or use float64")
    scale = torch.full((x.shape[0],), c, dtype=torch.float64, device=x.device)  # (B,) c_d * unit
    result = finish_slices(s, energies, scale, root=False)  # the scheme's estimate of the mean, times c_d * unit
    return result if return_result else result.value
