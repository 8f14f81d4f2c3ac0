"""The sliced MMD flow of the Riesz kernel: particles descend the sliced energy distance with momentum.

Paper: *Generative Sliced MMD Flows with Riesz Kernels*, Johannes Hertrich, Christian Wald, Fabian
Altekrüger, Paul Hagemann (ICLR 2024).
"""

from __future__ import annotations

import torch

from .._checks import as_real_tensor, check_finite, check_positive_int, check_real
from ..measures import measure
from ..mmd import sliced_energy_distance
from ..sliced import resolve_scheme
from ._base import (FlowResult, _check_callback, _check_finite_at, _eval_directions, _generator, _pair,
                    _record_set, _run, _step_or_default)

__all__ = ["mmd_flow"]


def mmd_flow(
    source,
    target,
    *,
    steps: int,
    lr: float | None = None,
    momentum: float = 0.9,
    n_projections: int = 256,
    scheme="mc",
    seed: int | None = None,
    generator: torch.Generator | None = None,
    record_every=None,
    callback=None,
    eval_projections: int = 256,
    velocity=None,
    **scheme_options,
) -> FlowResult:
    """Sliced MMD flow with the Riesz kernel ``r = 1``: particles descend the sliced energy distance.

    Each step draws fresh directions, takes the gradient ``g`` of :func:`sliced_energy_distance`
    from the particles to ``target`` and moves with momentum (heavy ball, as the paper)::

        v <- momentum * v - lr * g_i / a_i,     x_i <- x_i + v_i

    Dividing by the particle's mass ``a_i`` (``1 / N`` when uniform) makes the step of one particle
    independent of ``N``: ``g_i / a_i = 2 E_theta c_d (G - F)(<theta, x_i>) theta`` is a unit-scale
    drift towards the target.

    Args:
        source: the particles: an ``(N, d)`` point cloud or anything :func:`geom.measure` accepts
            (not a batch), with positive weights.
        target: a measure of the same dimension (any ``M``, any weights).
        steps: number of steps, ``>= 1``.
        lr: step size ``> 0``, in units of length per step; default (None) ``0.05 *
            target_scale(target)`` (see :data:`geom.flows.DEFAULT_STEP`).
        momentum: in ``[0, 1)``; 0 is plain gradient descent.
        n_projections: directions per step.
        scheme: name or instance of a scheme with uniform directions (a stateful instance keeps its
            state across steps).
        seed, generator, record_every, callback, eval_projections: as in :func:`geom.flows.sw_flow`
            (the callback sees each step's own estimate, taken before the step's move).
        velocity: ``(N, d)`` initial velocity (default zero). To continue a run exactly, call again
            with ``source = result.particles``, ``velocity = result.info["velocity"]``, the same
            generator object (or one with its state restored) and the same scheme instance.
        **scheme_options: options of the named scheme.

    Returns:
        A :class:`geom.flows.FlowResult`; ``values`` are the sliced energy distances to the target on
        ``eval_projections`` fixed uniform directions at the recorded steps; ``info`` holds the
        options and the final ``velocity``.
    """
    mu, nu = _pair(source, target)
    if bool((mu.weights <= 0).any()):
        raise ValueError("source: expected positive weights for every particle, got a zero weight")
    steps = check_positive_int(steps, "steps")
    lr = _step_or_default(lr, "mmd", nu)
    momentum = check_real(momentum, "momentum", "in [0, 1)", lambda v: 0 <= v < 1)
    n_projections = check_positive_int(n_projections, "n_projections")
    _check_callback(callback)
    record = _record_set(record_every, steps)
    scheme = resolve_scheme(scheme, scheme_options)
    gen = _generator(seed, generator)
    eval_dirs = _eval_directions(eval_projections, mu.dim, gen, mu.support)

    x = mu.support[0].detach().clone()  # (N, d)
    a = mu.weights[0].detach()  # (N,)
    target_measure = measure(nu.support[0].detach(), weights=nu.weights[0].detach())
    if velocity is None:
        velocity = torch.zeros_like(x)
    else:
        velocity = as_real_tensor(velocity, "velocity", f"an {tuple(x.shape)} array like source")
        if tuple(velocity.shape) != tuple(x.shape):
            raise ValueError(f"velocity: expected shape {tuple(x.shape)} like source, got {tuple(velocity.shape)}")
        velocity = velocity.detach().to(x.device, x.dtype)
        check_finite(velocity, "velocity")

    def step(k):
        nonlocal x, velocity
        xr = x.requires_grad_()
        value = sliced_energy_distance(measure(xr, weights=a), target_measure, n_projections=n_projections,
                                       scheme=scheme, generator=gen)
        (grad,) = torch.autograd.grad(value, xr)
        _check_finite_at(k, "gradient", grad)
        velocity = momentum * velocity - lr * grad / a[:, None]
        x = x.detach() + velocity
        return x, float(value.detach())

    def evaluate(x):
        with torch.no_grad():
            return float(sliced_energy_distance(measure(x, weights=a), target_measure, directions=eval_dirs))

    particles, traj, at, values, done = _run(step, x, steps=steps, record=record, callback=callback,
                                            evaluate=evaluate)
    info = dict(method="mmd", objective="sliced energy distance (Riesz kernel r = 1)", lr=lr, momentum=momentum,
                n_projections=n_projections, scheme=type(scheme).__name__, steps=steps, steps_done=done,
                stopped=done < steps, seed=gen.initial_seed(), eval_projections=eval_dirs.shape[0],
                value=f"sliced energy distance to the target on {eval_dirs.shape[0]} fixed uniform directions",
                velocity=velocity.detach().clone())
    return FlowResult(particles.clone(), traj, at, values, info)
