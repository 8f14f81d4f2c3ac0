"""What every flow shares: the result, the checks of its arguments, the recording loop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .._checks import _as_int, check_memory, check_positive_int, check_real, describe
from ..measures import Measure, measure
from ..registry import check_same_space, get_representation
from ..sliced import make_generator, sliced_wasserstein

__all__ = ["FlowDiverged", "FlowResult"]


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


DEFAULT_STEP = {"sw": 0.02, "mmd": 0.05}
"""``lr`` of :func:`~geom.flows.sw_flow` and :func:`~geom.flows.mmd_flow` when none is given, as a
fraction of :func:`target_scale` (so the step is the same relative to any target: a unit sphere gets
``lr`` 0.02 and 0.05, the same sphere scaled by 100 gets 2 and 5). The SWF's ``step_size`` needs none:
it is already a fraction of the transport displacement."""


def target_scale(target) -> float:
    """The scale of a cloud: its RMS radius about its weighted mean, ``sqrt(sum_j b_j |y_j - ybar|^2)``
    (1 for a unit sphere's surface; 1 too for a cloud of one point, which has no scale)."""
    nu = target if isinstance(target, Measure) else _cloud(target, "target")
    y, b = nu.support[0].detach().double(), nu.weights[0].detach().double()
    b = b / b.sum()
    mean = b @ y
    scale = float((b @ (y - mean).square().sum(1)).sqrt())
    return scale if math.isfinite(scale) and scale > 1e-9 * float(y.abs().max()) else 1.0  # rounding is no scale


def _step_or_default(lr, method: str, nu: Measure) -> float:
    """``lr`` checked, or the default :data:`DEFAULT_STEP` ``* target_scale(nu)`` where it is None."""
    return _check_step(DEFAULT_STEP[method] * target_scale(nu) if lr is None else lr, "lr", nu.dtype)


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
