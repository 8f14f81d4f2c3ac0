"""``"cv"``: control variates for the Monte Carlo estimate of ``SW_2^2``.

From *Sliced Wasserstein Estimation with Control Variates*, Khai Nguyen and Nhat Ho (ICLR 2024).
Directions are uniform on the sphere S^(d-1), as for ``"mc"``. Each slice's cost ``K(theta) =
W_2^2(theta#mu, theta#nu)`` is paired with a control variate ``C(theta)`` whose expectation over
the direction is known in closed form, and the estimate subtracts the part of the noise that ``C``
explains.

Control variates. Fit Gaussians to the projected measures: ``theta#mu ~ N(theta.m1, theta^T S1
theta)`` with ``m1 = sum_i a_i x_i`` and ``S1 = sum_i a_i (x_i - m1)(x_i - m1)^T`` (weighted mean and
covariance of ``mu``; likewise ``m2, S2`` for ``nu``). With ``dm = m1 - m2``, their distance is
``W_2^2 = (theta.dm)^2 + (sqrt(theta^T S1 theta) - sqrt(theta^T S2 theta))^2``; the second term has
no closed-form expectation, so the paper bounds it:

- ``variate="lower"`` (default): ``C = (theta.dm)^2`` (drop it; also a lower bound of the true
  ``K``, by Jensen), ``E C = |dm|^2 / d``.
- ``variate="upper"``: ``C = (theta.dm)^2 + theta^T S1 theta + theta^T S2 theta`` (as
  ``(s1 - s2)^2 <= s1^2 + s2^2``; also ``K`` under the independent coupling, an upper bound),
  ``E C = (|dm|^2 + tr S1 + tr S2) / d``.

Both expectations follow from ``E[theta theta^T] = I / d`` for theta uniform on S^(d-1) (the matrix
commutes with rotations and has trace 1): ``E (theta.v)^2 = |v|^2 / d``, ``E theta^T S theta = tr S / d``.
The paper proposes both and ranks neither in general. ``"lower"`` is the default because it tracks
the part of ``K`` that varies most when the measures differ in position: on exact translates
``K = C`` and the estimate is exact, and on 3-D shape pairs that differ by a shift it cut the
variance at L = 100 by far more than ``"upper"`` did (whose ``tr S`` terms vary with theta for flat
shapes and blur the correlation). On centred pairs (``dm = 0``) ``"lower"`` is the constant 0 and the
estimate is plain Monte Carlo; ``"upper"`` can still help there when the spreads differ.

Estimate (per batch item, from the same L slices): ``mean(K) - gamma (mean(C) - E C)`` with the
optimal coefficient ``gamma = cov(K, C) / var(C)``, held constant for autograd (detached): the
value stays differentiable with respect to the supports and weights through ``K``, ``C`` and
``E C``, and its gradient is the control-variate estimate of ``grad E K`` at that ``gamma``. Where
``C`` does not vary beyond rounding (``"lower"`` on centred pairs, d = 1) ``gamma = 0``: plain
Monte Carlo.
Estimating ``gamma`` from the slices it corrects leaves a bias of order 1/L, small next to the
standard error of one estimate (order 1/sqrt(L)).

Standard error: the standard deviation of the residuals ``K - gamma (C - E C)`` over sqrt(L), with
L - 2 degrees of freedom (a fitted intercept and slope); ``nan`` for L < 3 (L < 2 when ``gamma``
is fixed). With a ``base`` scheme, the corrected per-slice values ``K - gamma (C - E C)`` go to the
base's own ``estimate``, which knows how its directions were drawn: randomised quasi-Monte Carlo
then reports the spread of its independent randomisations (``nan`` with one), not an i.i.d. error
that would overstate the true one by orders of magnitude.

Composition with ``base="qmc"`` (RQSW + CV): an even point set of ~100 directions already integrates
the quadratic control variates almost exactly (``mean C`` is ``E C`` to a few digits), so the
correction is tiny and the estimate is that of RQSW; the combination keeps CV's exactness on
translates.

Options:
    variate: ``"lower"`` (default) or ``"upper"``.
    gamma: ``None`` (default; the optimal coefficient from the slices) or a fixed real number.
    base: ``None`` (uniform directions drawn here) or a scheme, registered name or instance, whose
        ``directions`` are used instead, e.g. randomised quasi-Monte Carlo directions. Its
        directions must be uniform on the sphere one by one (the closed-form ``E C`` assumes it);
        data-dependent schemes (those with their own ``fit`` or ``lift``) are refused. The base's
        ``estimate`` averages the corrected slices and gives their standard error.

Scope: the control variates are built for ``p = 2`` on linear representations (``project(x, theta) =
x @ theta.T``: point clouds, meshes, ``"spd-logsw"``, ``"graph"``). For ``p != 2`` the estimate falls
back to the plain mean of ``"mc"`` and its standard error; on other representations (spheres, SPDSW)
the Gaussian fits of the projections have no meaning, and the scheme raises a ValueError saying so.
"""

import math

import torch

import geom
from geom._checks import check_real
from geom.registry import get_representation
from geom.sliced import resolve_scheme

VARIATES = ("lower", "upper")


class ControlVariates(geom.SlicingScheme):
    """Uniform directions and a control-variate estimate of ``E W_2^2`` (see the module docstring).

    Args:
        variate: ``"lower"`` or ``"upper"``, the control variate.
        gamma: ``None`` to estimate the optimal coefficient per batch item, or a fixed number.
        base: ``None``, or a :class:`geom.SlicingScheme` (instance or registered name) with
            uniformly distributed directions to draw from.
    """

    def __init__(self, *, variate: str = "lower", gamma=None, base=None, **options):
        super().__init__(**options)
        if not isinstance(variate, str):
            raise TypeError(f"variate: expected one of {VARIATES}, got {type(variate).__name__} {variate!r}")
        if variate not in VARIATES:
            raise ValueError(f"variate: expected one of {VARIATES}, got {variate!r}")
        if gamma is not None:
            gamma = check_real(gamma, "gamma", "(finite) or None")
        if base is not None:
            base = resolve_scheme(base, name="base")
            if base.learns_from_data:
                raise ValueError(
                    f"base: expected a scheme with uniformly distributed directions, got {type(base).__name__}, "
                    "which learns from the data (it overrides fit or lift); control variates need E C "
                    "under uniform directions"
                )
        self.variate, self.gamma, self.base = variate, gamma, base

    def check_space(self, space):  # non-linear representations are refused by estimate, which names the kind
        if self.base is not None:
            self.base.check_space(space)

    def directions(self, n, space, *, generator=None):
        if self.base is not None:
            return self.base.directions(n, space, generator=generator)
        return space.sample(n, generator)

    def control_variate(self, mu, nu, theta, scale=None):
        """The control variate per slice and its expectation over uniform directions.

        Args:
            mu, nu: :class:`geom.Measure` point clouds, supports ``(B, N, d)``, ``(B, M, d)``.
            theta: ``(L, d)`` unit directions.
            scale: ``(B,)`` unit of length (the costs' ``context.scale``): the variates are those of the
                supports divided by it, so that no scale of the data overflows or underflows.

        Returns:
            ``C (B, L)`` and ``E C (B,)``, differentiable in the supports and weights.
        """
        d = theta.shape[1]
        x, y = mu.support.reshape(*mu.support.shape[:2], -1), nu.support.reshape(*nu.support.shape[:2], -1)
        if scale is not None:
            unit = scale.to(x.dtype)[:, None, None]  # (B, 1, 1)
            x, y = x / unit, y / unit
        m1 = torch.einsum("bn,bnd->bd", mu.weights, x)  # (B, d)
        m2 = torch.einsum("bn,bnd->bd", nu.weights, y)  # (B, d)
        dm = m1 - m2  # (B, d)
        C = (dm @ theta.T) ** 2  # (B, L)
        EC = (dm**2).sum(-1)  # (B,), times d
        if self.variate == "upper":
            for pts, w, m in ((x, mu.weights, m1), (y, nu.weights, m2)):
                q, tr = _projected_variances(pts - m[:, None], w, theta)  # (B, L), (B,)
                C, EC = C + q, EC + tr
        return C, EC / d

    def estimate(self, costs, context):
        if not get_representation(context.mu.kind).linear:
            raise ValueError(f"scheme 'cv': control variates need linear projections (point clouds, meshes, "
                             f"'spd-logsw', 'graph'); kind {context.mu.kind!r} projects otherwise: use 'mc' or 'qmc'")
        if context.p != 2:
            return super().estimate(costs, context)  # the control variates are built for W_2^2
        L = costs.shape[-1]
        if L < 2 and self.gamma is None:
            return super().estimate(costs, context)  # gamma cannot be estimated from one slice
        # the costs are in units of scale^2: so are the variates of the supports divided by scale
        C, EC = self.control_variate(context.mu, context.nu, context.directions, context.scale)  # (B, L), (B,)
        C, EC = C.to(costs.dtype), EC.to(costs.dtype)
        if self.gamma is None:
            gamma, fitted = _optimal_gamma(costs.detach(), C.detach())  # (B,), (B,) bool
        else:
            gamma, fitted = torch.full_like(EC, self.gamma).detach(), torch.zeros_like(EC, dtype=torch.bool)
        corrected = costs - gamma[:, None] * (C - EC[:, None])  # (B, L), same expectation as the costs
        if self.base is not None:  # the base knows how its directions were drawn: its mean and its error
            return self.base.estimate(corrected, context)
        value = corrected.mean(-1)  # (B,)
        residual = corrected.detach()
        dof = L - 1 - fitted.to(costs.dtype)  # (B,): one less where gamma was fitted to these slices
        spread = (residual - residual.mean(-1, keepdim=True)).pow(2).sum(-1) / dof  # (B,)
        spread = torch.where(dof > 0, spread, math.nan)
        return value, spread.sqrt() / math.sqrt(L)


def _projected_variances(centred, w, theta):
    """``theta_l^T S theta_l (B, L)`` and ``tr S (B,)`` for ``S = sum_n w_n c_n c_n^T``, ``centred (B, N, d)``."""
    B, N, d = centred.shape
    L = theta.shape[0]
    tr = torch.einsum("bn,bnd->b", w, centred**2)  # (B,)
    if d * (N + L) <= N * L:  # through the d x d covariance: O(N d^2 + L d^2)
        S = torch.einsum("bn,bnd,bne->bde", w, centred, centred)  # (B, d, d)
        q = torch.einsum("ld,bde,le->bl", theta, S, theta)  # (B, L)
    else:  # through the projections: O(N L d)
        q = torch.einsum("bn,bnl->bl", w, (centred @ theta.T) ** 2)  # (B, L)
    return q, tr


def _optimal_gamma(costs, C):
    """``cov(K, C) / var(C)`` per batch item ``(B,)``, and where it was fitted ``(B,)``: ``gamma = 0``
    where ``C`` varies no more than rounding errors of ``C`` or ``K`` (nothing to regress on)."""
    Kc = costs.double() - costs.double().mean(-1, keepdim=True)  # (B, L)
    Cc = C.double() - C.double().mean(-1, keepdim=True)  # (B, L)
    var = (Cc**2).sum(-1)  # (B,)
    scale = torch.maximum(C.double().abs().amax(-1), costs.double().abs().amax(-1)) ** 2 * C.shape[-1]  # (B,)
    flat = var <= (1e3 * torch.finfo(C.dtype).eps) ** 2 * scale
    gamma = (Kc * Cc).sum(-1) / torch.where(flat, 1.0, var)
    return torch.where(flat, 0.0, gamma).to(costs.dtype), ~flat


@geom.hookimpl
def geom_register_schemes(register):
    register("cv", ControlVariates)
