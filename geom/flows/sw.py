"""The SW gradient flow: particles follow ``-grad SW_p^p`` by Adam or SGD."""

from __future__ import annotations

import torch

from .._checks import check_memory, check_p, check_positive_int, describe
from ..sliced import resolve_scheme, sliced_wasserstein
from ._base import (FlowResult, _check_callback, _check_finite_at, _check_optimizer_state,
                    _eval_directions, _generator, _pair, _record_set, _run, _step_or_default, _sw_evaluator)

__all__ = ["sw_flow"]


def sw_flow(
    source,
    target,
    *,
    steps: int,
    lr: float | None = None,
    optimizer: str = "adam",
    scheme="mc",
    n_projections: int = 128,
    p: float = 2,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    record_every=None,
    callback=None,
    eval_projections: int = 256,
    optimizer_state: dict | None = None,
    **scheme_options,
) -> FlowResult:
    """Move the source's points along ``-grad SW_p^p`` to the target (Adam or SGD).

    The gradient of ``SW_p^p`` with respect to point ``x_i`` carries its mass ``a_i`` (``1/N`` for a
    uniform cloud); the step divides it out, so ``x_i <- x_i - lr * grad_i / a_i`` for SGD (the
    Wasserstein gradient: the step size does not depend on N) and Adam runs on ``grad_i / a_i``.
    Zero-weight points do not move. Each step draws fresh directions from the one scheme instance.

    Args:
        source: ``(N, d)`` cloud (array, tensor, file or Measure); its weights stay fixed.
        target: ``(M, d)`` cloud.
        steps: number of steps, ``>= 1``.
        lr: step size, ``> 0``; default (None) ``0.02 * target_scale(target)`` (see
            :data:`geom.flows.DEFAULT_STEP`): the same relative step for a target of any size.
        optimizer: ``"adam"`` or ``"sgd"``.
        scheme: registered scheme name or a :class:`SlicingScheme` instance (kept across steps).
        n_projections: directions per step.
        p: the order of ``SW_p``; the flow descends ``SW_p^p``.
        seed, generator: the randomness (one of them; neither: a fresh OS-seeded generator, whose seed
            is ``info["seed"]``).
        record_every: ``None`` (about 100 frames), an int k (steps 0, k, 2k, ... and the last) or a list
            of steps.
        callback: ``callback(step, particles (N, d), value)`` after every step; ``False`` stops.
        eval_projections: directions of the recorded ``SW_p`` values.
        optimizer_state: ``info["optimizer_state"]`` of an earlier run, to continue it (Adam's moments).
        **scheme_options: options of the named scheme.

    Returns:
        :class:`FlowResult`; ``values`` are ``SW_p`` to the target at the recorded steps;
        ``info["optimizer_state"]`` the optimizer's state dict.

    To continue a run (stopped by its callback, say) exactly, call again with ``source =
    result.particles``, the same generator object (or one with its state restored), the same scheme
    instance and ``optimizer_state = result.info["optimizer_state"]``.

    >>> import torch, geom.flows
    >>> x = torch.zeros(8, 2, dtype=torch.float64); y = x + 1
    >>> r = geom.flows.sw_flow(x, y, steps=100, lr=0.05, seed=0)
    >>> bool(r.values[-1] < 0.05 * r.values[0])
    True
    """
    mu, nu = _pair(source, target)
    steps = check_positive_int(steps, "steps")
    lr = _step_or_default(lr, "sw", nu)
    p = check_p(p)
    n_projections = check_positive_int(n_projections, "n_projections")
    if not isinstance(optimizer, str) or optimizer.lower() not in ("adam", "sgd"):
        raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {optimizer!r}")
    optimizer = optimizer.lower()
    _check_callback(callback)
    record = _record_set(record_every, steps)
    inst = resolve_scheme(scheme, scheme_options)
    check_memory(8 * n_projections * (2 * mu.dim + 2), "n_projections", f"{n_projections} directions per step")
    gen = _generator(seed, generator)
    eval_dirs = _eval_directions(eval_projections, mu.dim, gen, mu.support)

    a = mu.weights[0]  # (N,)
    inv_mass = torch.where(a > 0, 1.0 / a.clamp_min(torch.finfo(a.dtype).tiny), 0.0)[:, None]  # (N, 1)
    x = mu.support[0].detach().clone().requires_grad_(True)  # (N, d)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([x], lr=lr)
    if optimizer_state is not None:
        if not isinstance(optimizer_state, dict):
            raise TypeError(f"optimizer_state: expected the dict info['optimizer_state'] of a run, got "
                            f"{describe(optimizer_state)}")
        try:
            opt.load_state_dict(optimizer_state)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            raise ValueError(f"optimizer_state: does not fit a {optimizer} optimizer of this flow ({exc})") from None
        _check_optimizer_state(opt, x, optimizer)

    def step(k):
        opt.zero_grad(set_to_none=True)
        cur = mu.replace(support=x[None])  # the particles, differentiable
        value = sliced_wasserstein(cur, nu, p=p, n_projections=n_projections, scheme=inst, generator=gen)
        _check_finite_at(k, "value", value)
        value.pow(p).backward()
        _check_finite_at(k, "gradient", x.grad)  # before the step: the particles stay those of step k - 1
        x.grad.mul_(inv_mass)  # (N, d) Wasserstein gradient: independent of N
        opt.step()
        return x, float(value.detach())

    particles, traj, at, values, done = _run(step, x, steps=steps, record=record, callback=callback,
                                            evaluate=_sw_evaluator(mu.weights, nu, eval_dirs, p))
    info = dict(method="sw", optimizer=optimizer, lr=lr, p=p, n_projections=n_projections,
                scheme=type(inst).__name__, steps=steps, steps_done=done, stopped=done < steps,
                seed=gen.initial_seed(), eval_projections=eval_dirs.shape[0],
                value=f"SW_{p:g} to the target on {eval_dirs.shape[0]} fixed uniform directions",
                optimizer_state=opt.state_dict())
    return FlowResult(particles.clone(), traj, at, values, info)
