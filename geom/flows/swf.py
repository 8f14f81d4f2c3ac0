"""The Sliced-Wasserstein Flow and its conditional version: particles sent through the 1-D transport maps."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import _ot1d
from .._checks import as_host_array, check_positive_int, check_real
from ..contract import SlicingScheme
from ..measures import Measure
from ..sliced import finish_slices, prepare_slices, relative_costs, resolve_scheme
from ._base import (FlowResult, _check_callback, _check_step, _eval_directions, _generator, _pair, _record_set, _run,
                    _sw_evaluator)

__all__ = ["conditional_swf", "swf"]


def _swf_core(x0, a, nu, frozen, *, steps, step_size, n_projections, noise, inst, gen, record, callback,
              eval_dirs, view, method, info):
    """The SWF loop on ``x0 (N, D)`` with masses ``a (N,)``; ``frozen (N, D)`` bool coordinates never move."""
    N, D = x0.shape
    nb = nu.support[0]  # (M, D)
    b = nu.weights[0]
    same_uniform = bool(nu.uniform and N == nu.n_points and bool((a == a[0]).all()))
    uniform_src = bool((a == a[0]).all())
    if type(inst).lift is not SlicingScheme.lift:
        raise ValueError(f"scheme: the SWF moves particles along directions of their own space; "
                         f"{type(inst).__name__} lifts the measures to another space (use sw_flow)")
    M = nb.shape[0]
    sigma = math.sqrt(2.0 * noise * step_size)
    x = x0.detach().clone()
    source = Measure(x[None], a[None], kind=nu.kind, batched=False, uniform=uniform_src)  # its support moves

    def step(k):
        nonlocal x
        cur = source.replace(support=x[None])
        s = prepare_slices(cur, nu, p=2.0, n_projections=n_projections, scheme=inst, generator=gen,
                           bytes_per_direction=24 * (N + M))
        th = s.directions  # (L, D) in the data's dtype
        theta = th.double()
        L = theta.shape[0]
        xc, yc = _ot1d.centred(x[None], nb[None], a[None], b[None])  # one common origin: float32 keeps its digits
        u, v = th @ xc[0].T, th @ yc[0].T  # (L, N), (L, M) in the data's dtype (float32 sorts fastest)
        T, costs = _ot1d.transport_map(u, a, v, b, same_uniform=same_uniform)
        # E[d theta theta^T] = I: d / L sum_l (T_l - u_l) theta_l estimates the full displacement.
        drift = (D / L) * ((T - u.double()).T @ theta)  # (N, D)
        move = (step_size * drift).to(x.dtype)
        if sigma > 0:
            move += sigma * torch.randn(N, D, generator=gen, dtype=torch.float64).to(x)
        x = x + move if frozen is None else torch.where(frozen, x, x + move)  # observed: bit-identical
        if not bool(torch.isfinite(costs).all()):  # the particles overflow: the loop names the divergence
            return x, math.inf
        rel, scale = relative_costs(costs[None], torch.ones_like(costs)[None], 2.0)  # (1, L) in [0, 1], (1,)
        rel = rel.to(x.dtype)
        value = finish_slices(s, rel, scale).value  # the scheme's estimate: stateful schemes update here
        return x, float(value)

    particles, traj, at, values, done = _run(step, x, steps=steps, record=record, callback=callback,
                                            evaluate=_sw_evaluator(a[None], nu, eval_dirs, 2.0), view=view)
    info.update(method=method, step_size=step_size, noise=noise, n_projections=n_projections,
                scheme=type(inst).__name__, steps=steps, steps_done=done, stopped=done < steps,
                seed=gen.initial_seed(), eval_projections=eval_dirs.shape[0],
                value=f"SW_2 to the target on {eval_dirs.shape[0]} fixed uniform directions")
    return FlowResult(particles.clone(), traj, at, values, info)


def _check_swf_args(steps, step_size, n_projections, noise, callback, record_every):
    steps = check_positive_int(steps, "steps")
    step_size = _check_step(step_size, "step_size", torch.float64)
    n_projections = check_positive_int(n_projections, "n_projections")
    noise = check_real(noise, "noise", ">= 0", lambda v: v >= 0)
    _check_callback(callback)
    return steps, step_size, n_projections, noise, _record_set(record_every, steps)


def _mask(mask, N: int, d: int, device) -> torch.Tensor | None:
    """``None``, ``(d,)`` or ``(N, d)`` booleans (True = observed, never moves) -> ``(N, d)`` or None."""
    if mask is None:
        return None
    m = as_host_array(mask, "mask", f"booleans of shape ({d},) or ({N}, {d})")
    if m.dtype.kind != "b":
        raise TypeError(f"mask: expected booleans (True = observed coordinate), got dtype {m.dtype}")
    if tuple(m.shape) not in ((d,), (N, d)):
        raise ValueError(f"mask: expected shape ({d},) or ({N}, {d}), got {tuple(m.shape)}")
    return torch.from_numpy(m.copy()).to(device).expand(N, d).clone()


def swf(
    source,
    target,
    *,
    steps: int,
    step_size: float,
    n_projections: int = 128,
    noise: float = 0.0,
    scheme="mc",
    mask=None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    record_every=None,
    callback=None,
    eval_projections: int = 256,
    **scheme_options,
) -> FlowResult:
    """Sliced-Wasserstein Flow (Liutkus et al., 2019): particles follow 1-D OT maps on fresh slices.

    One step, with ``L`` fresh directions ``theta_l`` and ``u_il = <theta_l, x_i>``::

        x_i <- x_i + step_size * (d / L) sum_l (T_l(u_il) - u_il) theta_l + sqrt(2 noise step_size) z_i

    with ``T_l`` the 1-D optimal transport map from the particles' projection to the target's
    (:func:`geom._ot1d.transport_map`: the target quantile function composed with the particles' CDF, target
    weights allowed) and ``z_i`` standard Gaussian. Scaling: for uniform directions ``E[d theta
    theta^T] = I``, so the ``d / L`` sum estimates the whole displacement; ``step_size = 1`` is a full
    step whatever ``d`` (with ``L = d`` orthonormal directions it is the iterative distribution
    transfer step), and ``step_size = 1 / d`` with one direction moves each projection exactly onto
    its target quantile. The paper's drift averages over the sphere without the factor ``d``: its
    step ``h`` is ``d * step_size`` and its regularisation ``lambda`` is ``noise / d``. With
    ``noise = 0`` the step is the Wasserstein gradient step of ``SW_2^2 / 2`` times ``d``.

    Args:
        source: ``(N, d)`` initial particles (array, tensor, file or Measure), usually noise.
        target: ``(M, d)`` target cloud, weights allowed.
        steps: number of steps, ``>= 1``.
        step_size: fraction of the full transport step, ``> 0`` (``<= 1`` is stable).
        n_projections: fresh directions per step.
        noise: entropic regularisation ``>= 0`` (variance ``2 noise step_size`` per step and coordinate).
        scheme: registered name or :class:`SlicingScheme` instance (kept across steps); schemes that
            lift the measures to another space are refused.
        mask: ``(d,)`` or ``(N, d)`` booleans: True coordinates never move (inpainting).
        seed, generator, record_every, callback, eval_projections: as in :func:`sw_flow`; a run is
            continued exactly from ``result.particles`` with the same generator and scheme instance.

    Returns:
        :class:`FlowResult`; ``values`` are ``SW_2`` to the target at the recorded steps.
    """
    mu, nu = _pair(source, target)
    steps, step_size, n_projections, noise, record = _check_swf_args(
        steps, step_size, n_projections, noise, callback, record_every)
    frozen = _mask(mask, mu.n_points, mu.dim, mu.device)
    inst = resolve_scheme(scheme, scheme_options)
    gen = _generator(seed, generator)
    eval_dirs = _eval_directions(eval_projections, mu.dim, gen, mu.support)
    return _swf_core(mu.support[0], mu.weights[0], nu, frozen, steps=steps, step_size=step_size,
                     n_projections=n_projections, noise=noise, inst=inst, gen=gen, record=record,
                     callback=callback, eval_dirs=eval_dirs, view=lambda x: x, method="swf", info={})


def _labels(labels, n: int, name: str, what: str) -> np.ndarray:
    arr = as_host_array(labels, name, f"one label (int or str) per {what} point")
    if arr.dtype.kind not in "biufUS":
        raise TypeError(f"{name}: expected labels that are ints or strings, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected one label per {what} point, shape ({n},), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite labels, got {arr[~np.isfinite(arr)][0]}")
    return arr


def conditional_swf(
    source,
    target,
    source_labels,
    target_labels,
    *,
    steps: int,
    step_size: float,
    label_scale: float,
    n_projections: int = 128,
    noise: float = 0.0,
    scheme="mc",
    mask=None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    record_every=None,
    callback=None,
    eval_projections: int = 256,
    **scheme_options,
) -> FlowResult:
    """Conditional SWF (Du et al., 2023): the SWF of joint vectors ``[x, label_scale * onehot(label)]``.

    The target is the joint cloud of its points and labels; every particle carries its
    conditioning class in a label block that never moves, so the projections of the label block
    pull each particle towards the target points of its class (the larger ``label_scale``, the
    closer to a flow per class). ``mask`` holds observed coordinates of ``x`` fixed (inpainting). The
    step, its ``d / L`` scaling (``d`` the joint dimension: the estimate of the full displacement of
    the moving block stays unbiased) and the noise are those of :func:`swf`.

    Args:
        source: ``(N, d)`` initial particles.
        target: ``(M, d)`` target cloud.
        source_labels: ``(N,)`` the class each particle is drawn for (every class must occur in the target).
        target_labels: ``(M,)`` the target points' classes (ints or strings).
        label_scale: weight ``> 0`` of the label block.
        mask: ``(d,)`` or ``(N, d)`` booleans over ``x``: True coordinates never move.
        steps, step_size, n_projections, noise, scheme, seed, generator, record_every, callback,
        eval_projections, **scheme_options: as in :func:`swf`.

    Returns:
        :class:`FlowResult` of the ``x`` part (``(N, d)`` particles, ``(T, N, d)`` trajectory);
        ``values`` are ``SW_2`` between the joint clouds; ``info["classes"]`` lists the classes in the
        order of the one-hot block.
    """
    mu, nu = _pair(source, target)
    N, M, d = mu.n_points, nu.n_points, mu.dim
    ls, lt = _labels(source_labels, N, "source_labels", "source"), _labels(target_labels, M, "target_labels", "target")
    label_scale = _check_step(label_scale, "label_scale", mu.dtype)
    steps, step_size, n_projections, noise, record = _check_swf_args(
        steps, step_size, n_projections, noise, callback, record_every)
    frozen_x = _mask(mask, N, d, mu.device)
    classes = np.unique(lt)
    missing = sorted(set(np.unique(ls).tolist()) - set(classes.tolist()))
    if missing:
        raise ValueError(f"source_labels: classes {missing[:5]} have no target points (target classes: "
                         f"{classes.tolist()[:10]})")
    K = len(classes)

    def joint(x, labels):
        onehot = torch.zeros(x.shape[0], K, dtype=x.dtype, device=x.device)
        idx = torch.as_tensor(np.searchsorted(classes, labels), device=x.device)
        onehot[torch.arange(x.shape[0], device=x.device), idx] = label_scale
        return torch.cat([x, onehot], 1)  # (n, d + K)

    z0 = joint(mu.support[0], ls)
    nu_joint = nu.replace(support=joint(nu.support[0], lt)[None])  # (1, M, d + K)
    frozen = torch.zeros(N, d + K, dtype=torch.bool, device=mu.device)
    frozen[:, d:] = True  # the label block never moves
    if frozen_x is not None:
        frozen[:, :d] = frozen_x
    inst = resolve_scheme(scheme, scheme_options)
    gen = _generator(seed, generator)
    eval_dirs = _eval_directions(eval_projections, d + K, gen, mu.support)
    info = dict(label_scale=label_scale, classes=classes.tolist(), masked=frozen_x is not None)
    return _swf_core(z0, mu.weights[0], nu_joint, frozen, steps=steps, step_size=step_size,
                     n_projections=n_projections, noise=noise, inst=inst, gen=gen, record=record,
                     callback=callback, eval_dirs=eval_dirs, view=lambda z: z[:, :d], method="cswf", info=info)
