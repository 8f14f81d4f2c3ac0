"""``"max"``: max-sliced Wasserstein distance by projected gradient ascent on the direction.

Paper: I. Deshpande, Y.-T. Hu, R. Sun, A. Pyrros, N. Siddiqui, S. Koyejo, Z. Zhao, D. Forsyth,
A. Schwing, *Max-Sliced Wasserstein Distance and its use for GANs*, CVPR 2019.

``Max-SW_p(mu, nu) = max_{theta in S^(d-1)} W_p(theta#mu, theta#nu)``: the single most discriminative
slice instead of the average over all of them. :meth:`MaxSliced.fit` climbs ``W_p(theta)`` on the
sphere: ``W_p`` per slice from :func:`geom.sliced.slice_distances` on detached supports (the same
maximiser as ``W_p^p``, in range for every ``p``), Adam or plain gradient
ascent (:class:`geom.ascent.ProjectedAscent`) on a free vector ``v`` with ``theta = v / |v|`` (``v``
renormalised after each step, the step size annealed from ``lr`` to 0 by a cosine schedule), keeping
the best iterate seen. In other direction spaces ``v`` holds the space's Gaussian coordinates and
``theta = space.from_gaussian(v)`` (frames by Gram-Schmidt, SPD directions by ``P diag(theta) P^T``). It starts from
the direction learned at the previous call (warm start: pass the same instance at every step of a
training loop) and from ``n_starts - 1`` uniformly random directions drawn from the generator
(``n_starts`` of them on first use, or when the dimension or batch size changed); the best ascent wins.

Batches: every item ``b`` gets its own direction ``theta_b``. :meth:`MaxSliced.directions` returns
the learned directions cycled to ``n`` rows (for a single pair all ``n`` rows are copies of one
direction, so ask ``n_projections=1``: more copies only repeat the same sort; for a batch ask
``n_projections >= B``), and :meth:`MaxSliced.estimate` takes the *maximum* of the per-slice costs of
each item, which is at least the cost at that item's own direction. Directions given by the caller
(``directions=``) skip the ascent; the estimate is then the maximum over those slices.

Before any fit (or in another dimension than the one fitted) the directions are copies of one
uniformly random direction drawn from the generator: the point an ascent would start from.

Gradients: the value is ``W_p(theta*)`` at the learned direction ``theta*``, which is held fixed when
differentiating with respect to the supports. By the envelope theorem that is the gradient of the
maximum itself when ``theta*`` is an exact, smooth maximiser (the gradient in ``theta`` vanishes there).

Standard error: ``nan``. The value is a maximum found by optimisation, not an average of
independent draws, so there is no sampling error to report. It is the cost of a feasible direction,
hence never above the true Max-SW of the two measures; the gap is the optimisation error, which
shrinks as ``n_steps`` and ``n_starts`` grow.

Options:
    n_steps (int >= 0, default 100): ascent steps per call of :meth:`fit`, 0 keeps the starts (about 0.1 s for two clouds of
        1e4 points in R^3 on one CPU core; fewer suffice in a training loop, thanks to the warm start).
    lr (float, default 0.2): initial step size. For ``"adam"`` it is about the angle (radians) moved
        per step, whatever the scale of the data; for ``"sgd"`` it multiplies the raw gradient of
        ``W_p``, so it depends on the scale of the data.
    optimizer (str, default ``"adam"``): ``"adam"`` or ``"sgd"`` (plain projected gradient ascent).
    n_starts (int, default 8): ascents run side by side from different starts; the best is kept. W_p
        along a direction has several local maxima on most pairs: over 8 seeds on two bundled shape
        pairs (``tools/learned_bench.py``) one start reached the maximum in 8 of 16 runs, eight starts
        in 15 of 16.
    warm_start (bool, default True): start from the previous call's direction when the dimension
        and batch size match.
"""

from __future__ import annotations

import math

import torch

import geom
from geom._checks import check_int, check_positive_int, check_real, describe
from geom.ascent import ProjectedAscent
from geom.sliced import direction_space, slice_distances

__all__ = ["MaxSliced"]

_OPTIMIZERS = ("adam", "sgd")


class MaxSliced(geom.SlicingScheme):
    """Max-sliced Wasserstein: one learned direction per pair, by projected gradient ascent.

    Attributes:
        direction_: ``(B, *shape)`` float64 learned directions (one per batch item), None before any fit.
        cost_: ``(B,)`` float64 ``W_p^p`` at ``direction_`` on the data of the last fit.
    """

    def __init__(self, *, n_steps=100, lr=0.2, optimizer="adam", n_starts=8, warm_start=True):
        self.n_steps = check_int(n_steps, "n_steps")
        self.lr = check_real(lr, "lr", "> 0", lambda v: v > 0)
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(_OPTIMIZERS)}, got {optimizer!r}")
        self.optimizer = optimizer
        self.n_starts = check_positive_int(n_starts, "n_starts")
        if not isinstance(warm_start, bool):
            raise TypeError(f"warm_start: expected True or False, got {describe(warm_start)}")
        self.warm_start = warm_start
        self.direction_: torch.Tensor | None = None
        self.cost_: torch.Tensor | None = None

    def fit(self, mu, nu, *, p, generator=None):
        """Climb ``W_p(theta)`` for every item of the batch; keep the best direction seen."""
        space = direction_space(mu)
        k = space.gaussian_dim
        B, S = mu.batch_size, self.n_starts
        warm = self.direction_
        if not (self.warm_start and warm is not None and tuple(warm.shape) == (B, *space.shape)):
            warm = None
        n_random = S - (warm is not None)
        starts = torch.randn(B * n_random, k, generator=generator, dtype=torch.float64).view(B, n_random, k)
        if warm is not None:
            starts = torch.cat([space.coordinates(warm)[:, None], starts], 1)  # (B, S, k)
        starts = starts / starts.norm(dim=-1, keepdim=True)
        # one slice_distances call per item: the core shares one set of directions across a batch
        items = [(mu[b:b + 1].detach(), nu[b:b + 1].detach()) for b in range(B)]
        with torch.enable_grad():
            v = starts.to(dtype=mu.dtype, device=mu.device).clone().requires_grad_(True)  # (B, S, k) free vectors

            def renormalise():  # every direction space maps a scaled vector to the same direction
                v.div_(v.norm(dim=-1, keepdim=True))

            ascent = ProjectedAscent([v], self.optimizer, project=renormalise)
            best = torch.full((B, S), -math.inf, dtype=torch.float64)
            best_theta = space.from_gaussian(starts.reshape(B * S, k)).reshape(B, S, *space.shape)
            for step in range(self.n_steps + 1):
                theta = space.from_gaussian(v.reshape(B * S, k)).reshape(B, S, *space.shape)  # (B, S, *shape)
                dist = torch.cat([slice_distances(m, n, theta[b], p) for b, (m, n) in enumerate(items)])  # (B, S)
                c = dist.detach().double().cpu()
                better = c > best
                best = torch.where(better, c, best)
                best_theta[better] = theta.detach().double().cpu()[better]
                if step == self.n_steps:
                    break
                dist.sum().backward()
                ascent.step(self.lr * 0.5 * (1 + math.cos(math.pi * step / self.n_steps)))  # cosine annealing
        top = best.argmax(1)  # (B,) the best start of every item
        self.direction_ = space.from_gaussian(space.coordinates(best_theta[torch.arange(B), top]))  # (B, *shape)
        self.cost_ = best[torch.arange(B), top] ** p  # W_p^p

    def directions(self, n, space, *, generator=None):
        """The learned directions cycled to ``n`` rows; before a fit, ``n`` copies of a random one."""
        theta = self.direction_
        if theta is None or tuple(theta.shape[1:]) != tuple(space.shape):
            return space.sample(1, generator).expand(n, *space.shape).clone()
        if n < theta.shape[0]:
            raise ValueError(f"n_projections: expected at least the batch size {theta.shape[0]} for scheme 'max' "
                             f"(one learned direction per item), got {n}")
        return theta[torch.arange(n) % theta.shape[0]]

    def estimate(self, costs, context):
        """The largest per-slice cost of every item; stderr nan (a maximum, not a sample mean)."""
        value = costs.max(-1).values  # (B,)
        return value, torch.full_like(value.detach(), math.nan)


@geom.hookimpl
def geom_register_schemes(register):
    register("max", MaxSliced)
