"""Particle flows driven by sliced optimal transport: the users of the estimator that move clouds.

Every flow takes any slicing scheme (a registered name or an instance, whose state, such as the
``"reservoir"``'s, is kept from step to step), a ``seed`` or ``generator``, records its trajectory at
chosen steps, and returns a :class:`FlowResult`. An optional ``callback(step, particles, value)``
runs after every step (a tool's progress bar and checkpoints); returning ``False`` stops the flow
cleanly at that step.

* :func:`sw_flow`, the SW gradient flow (the point-cloud interpolation experiment of the
  quasi-Monte Carlo and control-variate sliced Wasserstein papers): particles follow
  ``-grad SW_p^p(mu_x, nu)`` by Adam or SGD. The source weights stay fixed.
* :func:`swf`, the Sliced-Wasserstein Flow of *Sliced-Wasserstein Flows: Nonparametric Generative
  Modeling via Optimal Transport and Diffusions*, Antoine Liutkus, Umut Simsekli, Szymon Majewski,
  Alain Durmus and Fabian-Robert Stoter (ICML 2019): at each step, on fresh directions, every
  particle's projection is sent through the 1-D optimal transport map to the target's projection
  (the target quantile function composed with the particles' CDF); the displacements, averaged
  over the directions, move the particles, plus optional Gaussian noise (entropic regularisation).
* :func:`conditional_swf`, from *Nonparametric Generative Modeling with Conditional
  Sliced-Wasserstein Flows*, Chao Du, Tianbo Li, Tianyu Pang, Shuicheng Yan and Min Lin (ICML
  2023): the SWF on joint vectors ``[x, label_scale * onehot(label)]`` whose label block never
  moves (class-conditional sampling), with masked coordinates held fixed (inpainting).

Recorded values (``FlowResult.values``) are ``SW_p`` to the target on ``eval_projections`` uniform
directions drawn once at the start from the flow's generator (common random numbers: the curve is
smooth and comparable across schemes); the ``value`` given to the callback is the flow's own
estimate on the slices of that step, at the positions the step started from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import _ot1d
from ._checks import _as_int, as_host_array, check_memory, check_p, check_positive_int, check_real, describe
from .measures import Measure, measure
from .registry import check_same_space, get_representation
from .contract import SlicingScheme
from .sliced import finish_slices, make_generator, prepare_slices, relative_costs, resolve_scheme, sliced_wasserstein

__all__ = ["FlowDiverged", "FlowResult", "conditional_swf", "sw_flow", "swf", "transport_targets"]

transport_targets = _ot1d.transport_map  # the name of the first release


@dataclass
class FlowResult:
    """What a flow returns.

    Attributes:
        particles: ``(N, d)`` final positions (detached).
        trajectory: ``(T, N, d)`` positions at the recorded steps (detached, on the CPU).
        steps: ``(T,)`` the step number of each recorded frame (0 is the start).
        values: ``(T,)`` the flow's objective at the recorded steps (for example SW_2 to the target).
        info: method, options and anything else a tool writes into its JSON summary.
    """

    particles: torch.Tensor
    trajectory: torch.Tensor
    steps: torch.Tensor
    values: torch.Tensor
    info: dict = field(default_factory=dict)


class FlowDiverged(ValueError):
    """A flow stopped because a quantity became NaN or infinite (a step size or ``p`` too large).

    Attributes:
        step: the step at which it happened (1 is the first step).
        what: ``"particles"``, ``"value"``, ``"recorded value"`` or ``"gradient"``.
        detail: the first non-finite entry and how many there are.
    """

    def __init__(self, step: int, what: str, detail: str):
        super().__init__(f"the flow diverged at step {step}: the {what} became non-finite ({detail}); "
                         f"try a smaller step size (lr / step_size) or a smaller p")
        self.step, self.what, self.detail = step, what, detail


def _check_finite_at(step: int, what: str, t) -> None:
    """:class:`FlowDiverged` unless ``t`` (a tensor or a float) is finite everywhere."""
    if isinstance(t, torch.Tensor):
        bad = ~torch.isfinite(t.detach())
        if bool(bad.any()):
            where = tuple(bad.nonzero()[0].tolist())
            raise FlowDiverged(step, what, f"{t.detach()[where].item()} at index {where}, "
                                           f"{int(bad.sum())} of {t.numel()} entries")
    elif not math.isfinite(t):
        raise FlowDiverged(step, what, f"{t}")


# ----------------------------------------------------------------------------- shared machinery


def _cloud(obj, name: str) -> Measure:
    """One point cloud (batch size 1) of a linear representation, from anything geom.measure takes."""
    try:
        m = measure(obj)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    if m.batch_size != 1:
        raise ValueError(f"{name}: expected one cloud (N, d), got a batch of {m.batch_size}")
    if m.support.ndim != 3 or not get_representation(m.kind).linear:
        raise ValueError(f"{name}: expected a point cloud (N, d), got a measure of kind {m.kind!r}")
    return m


def _pair(source, target) -> tuple[Measure, Measure]:
    mu, nu = _cloud(source, "source"), _cloud(target, "target")
    check_same_space(mu, nu)
    if mu.dim != nu.dim:
        raise ValueError(f"source, target: expected the same dimension, got {mu.dim} and {nu.dim}")
    if mu.device != nu.device:
        raise ValueError(f"source, target: expected the same device, got {mu.device} and {nu.device}")
    dtype = torch.promote_types(mu.dtype, nu.dtype)
    return mu.to(dtype), nu.to(dtype)


@dataclass(frozen=True)
class _Every:
    """Steps ``0, k, 2k, ...`` and the last: a set of steps held in O(1) memory whatever ``steps``."""

    k: int
    steps: int

    def __contains__(self, step) -> bool:
        return 0 <= step <= self.steps and (step % self.k == 0 or step == self.steps)

    def __len__(self) -> int:
        return self.steps // self.k + 1 + (self.steps % self.k != 0)


def _record_set(record_every, steps: int):
    """Steps to record: ``None`` (about 100 frames), an int (every k-th step), or explicit steps
    (numpy integers count as ints); a container of steps that supports ``in`` and ``len``."""
    if record_every is None:
        record_every = max(1, steps // 100)
    if _as_int(record_every) is not None:
        return _Every(check_positive_int(record_every, "record_every"), steps)
    if isinstance(record_every, Sequence) and not isinstance(record_every, str):
        out = set()
        for s in record_every:
            k = _as_int(s)
            if k is None or not 0 <= k <= steps:
                raise ValueError(f"record_every: expected steps in [0, {steps}], got {s!r}")
            out.add(k)
        if not out:
            raise ValueError("record_every: expected at least one step, got an empty list")
        return out
    raise TypeError(f"record_every: expected a positive int or a list of steps, got {describe(record_every)}")


def _check_step(value, name: str, dtype: torch.dtype) -> float:
    """A step size ``> 0`` that the particles' dtype holds (optimizers multiply by it in that dtype)."""
    top = torch.finfo(dtype).max
    return check_real(value, name, f"> 0 and at most {top:.3g} (the range of {dtype})", lambda v: 0 < v <= top)


def _check_optimizer_state(opt: torch.optim.Optimizer, x: torch.Tensor, optimizer: str) -> None:
    """After ``load_state_dict``: every hyperparameter of the kind of its default, every state
    tensor finite and of the particles' shape (a ValueError naming ``optimizer_state``)."""
    def bad(what: str):
        return ValueError(f"optimizer_state: does not fit a {optimizer} optimizer of this flow ({what})")

    for group in opt.param_groups:
        for key, default in opt.defaults.items():
            value = group.get(key, bad(f"no {key!r} in a parameter group"))
            if isinstance(value, Exception):
                raise value
            if isinstance(default, bool) or default is None:
                ok = value is None or isinstance(value, bool) if default is None else isinstance(value, bool)
            elif isinstance(default, tuple):
                ok = isinstance(value, (tuple, list)) and len(value) == len(default) and all(
                    _is_real(v) for v in value)
            else:
                ok = _is_real(value) or isinstance(value, torch.Tensor) and value.numel() == 1
            if not ok:
                raise bad(f"{key} = {value!r}, expected a value like {default!r}")
    for state in opt.state.values():
        for key, value in state.items():
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                if not _is_real(value):
                    raise bad(f"state {key!r} is {describe(value)}")
                continue
            if value.ndim and tuple(value.shape) != tuple(x.shape):
                raise bad(f"state {key!r} has shape {tuple(value.shape)}, the particles {tuple(x.shape)}")
            if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
                raise bad(f"state {key!r} is not a finite float tensor")


def _is_real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _check_callback(callback):
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable (step, particles, value) or None, got {describe(callback)}")


def _generator(seed, generator) -> torch.Generator:
    gen = make_generator(seed, generator)
    if gen is None:  # neither given: a fresh OS-seeded generator (never torch's global one)
        gen = torch.Generator()
        gen.seed()
    return gen


def _eval_directions(n: int, dim: int, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """``(n, dim)`` uniform unit rows for the recorded values, drawn once from their own generator
    (seeded with ``gen``'s seed), so the flow's generator drives the steps alone: a flow stopped at
    step k and continued with the same generator and scheme instance repeats the uninterrupted run."""
    n = check_positive_int(n, "eval_projections")
    check_memory(16 * n * dim, "eval_projections", f"{n} evaluation directions in dimension {dim}")
    own = torch.Generator().manual_seed(gen.initial_seed())
    theta = torch.randn(n, dim, generator=own, dtype=torch.float64)
    return (theta / theta.norm(dim=1, keepdim=True)).to(device=like.device, dtype=like.dtype)


def _sw_evaluator(weights, nu, eval_dirs, p):
    """``evaluate(x) -> SW_p(x, nu)`` on the fixed ``eval_dirs``, for particles ``x (N, d)`` with ``weights (1, N)``."""
    uniform = bool((weights == weights[:, :1]).all())

    def evaluate(x):
        mu = Measure(x[None], weights, kind=nu.kind, batched=False, uniform=uniform)
        with torch.no_grad():
            return float(sliced_wasserstein(mu, nu, p=p, directions=eval_dirs))

    return evaluate


def _run(step, x0, *, steps, record, callback, evaluate, view=lambda x: x):
    """The loop every flow shares.

    ``step(k) -> (x, value)`` moves the particles from step ``k - 1`` to step ``k`` (``value``: the
    step's own estimate, shown to ``callback``); frames at the steps in ``record`` hold ``view(x)`` and
    ``evaluate(x)``. Returns the final particles, the trajectory, the recorded steps, the values and
    the last step done. Particles, values or recorded values that stop being finite raise
    :class:`FlowDiverged` naming the step: a diverged flow never reads as a converged one.
    """
    frames, at, values = [], [], []
    shape = view(x0.detach()).shape
    check_memory(len(record) * (math.prod(shape) * x0.element_size() + 16), "record_every",
                 f"a trajectory of {len(record)} frames of shape {tuple(shape)}")

    def keep(k, x):
        value = evaluate(x.detach())
        _check_finite_at(k, "recorded value", value)
        values.append(value)
        frames.append(view(x.detach()).to("cpu", copy=True))
        at.append(k)

    x, done = x0, 0
    if 0 in record:
        keep(0, x)
    for k in range(1, steps + 1):
        x, value = step(k)
        _check_finite_at(k, "value", value)
        _check_finite_at(k, "particles", x)
        done = k
        stop = callback is not None and callback(k, view(x.detach()).clone(), value) is False
        if k in record or (stop and record):
            keep(k, x)
        if stop:
            break
    trajectory = torch.stack(frames) if frames else view(x0.detach()).new_empty(0, *view(x0).shape).cpu()
    return (view(x.detach()), trajectory, torch.tensor(at, dtype=torch.long),
            torch.tensor(values, dtype=torch.float64), done)


# ----------------------------------------------------------------------------- SW gradient flow


def sw_flow(
    source,
    target,
    *,
    steps: int,
    lr: float,
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
        lr: step size, ``> 0``.
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
    lr = _check_step(lr, "lr", mu.dtype)
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
        cur = Measure(x[None], mu.weights, kind=mu.kind, batched=False, uniform=mu.uniform)
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


# ----------------------------------------------------------------------------- SWF and conditional SWF


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

    def step(k):
        nonlocal x
        cur = Measure(x[None], a[None], kind=nu.kind, batched=False, uniform=uniform_src)
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
        rel, scale = relative_costs(costs.to(x.dtype)[None], torch.ones_like(costs)[None], 2.0)  # (1, L), (1,)
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
    nu_joint = Measure(joint(nu.support[0], lt)[None], nu.weights, kind=nu.kind, batched=False, uniform=nu.uniform)
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
