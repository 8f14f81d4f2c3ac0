"""The deformation: a velocity field ``v(x, t)`` integrated by torchdiffeq, ``phi_1`` and its inverse.

The flow map ``phi_t`` solves ``d/dt phi_t(x) = v(phi_t(x), t)``, ``phi_0(x) = x``. For a field that is
C^1 in ``x`` (smooth activations) and bounded on bounded sets, ``phi_1`` is a diffeomorphism: two
trajectories never meet, so a surface moved by it never passes through itself, and the Jacobian
determinant ``det D phi_1 = exp(int_0^1 div v dt)`` stays positive. Its inverse is the same equation
integrated from ``t = 1`` back to ``t = 0``; a numerical solver gives both up to its own error (RK4 with
``n`` steps: ``O(n^-4)``).

torchdiffeq is imported only when a flow is integrated: ``pip install 'geom[deform]'``.
"""

from __future__ import annotations

import copy
import math

import torch

from .._checks import as_real_tensor, check_bool, check_int, check_real, describe

__all__ = ["ADAPTIVE", "FIXED", "NeuralODEDeformation", "VelocityField", "odeint"]

FIXED = ("rk4", "euler", "midpoint", "heun2", "heun3", "explicit_adams", "implicit_adams")
"""torchdiffeq's fixed-grid solvers: ``steps`` steps of size ``1 / steps``."""
ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
"""torchdiffeq's adaptive solvers: steps chosen to meet ``rtol`` and ``atol``."""
ACTIVATIONS = {"softplus": torch.nn.functional.softplus, "tanh": torch.tanh}


def odeint(adjoint: bool = False):
    """torchdiffeq's ``odeint`` (``odeint_adjoint`` where ``adjoint``); an ImportError naming the extra
    where torchdiffeq is not installed."""
    try:
        import torchdiffeq
    except ImportError as exc:
        raise ImportError("geom.deform needs torchdiffeq: pip install 'geom[deform]'") from exc
    return torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint


class VelocityField(torch.nn.Module):
    """An MLP velocity field ``v(x, t)`` (or ``v(x)`` when ``stationary``); ``K`` independent fields at once.

    ``v(x, t) = length * f((x - centre) / length, t)`` with the MLP
    ``f(u, t) = W_L s(... s(W_1 [e(u), t] + b_1) ...) + b_L``, ``s`` tanh or softplus (smooth, so the flow
    is C^1) and ``e(u) = [u, sin(2 pi u B), cos(2 pi u B)]`` (random Fourier features, or ``e(u) = u``).
    ``centre`` and ``length`` make the field free of the data's position and size: the same weights
    move a shape 1000 times larger by a 1000 times larger velocity, and one learning rate fits both.
    Weights are ``(K, in, out)``: field ``k`` moves item ``k`` of a ``(K, N, dim)`` batch, and one field
    (``K = 1``) moves every item.

    Args:
        dim: dimension of the points.
        hidden: width of the hidden layers; layers: their number (``>= 1``).
        stationary: no time input.
        activation: ``"tanh"`` (default; trains far faster than softplus here) or ``"softplus"``.
        fourier: number ``F`` of random Fourier features (Tancik et al. 2020), fixed ``B (dim, F) ~
            N(0, bandwidth^2)``: they let the field bend at the scale ``length / bandwidth``; without them
            a tanh MLP learns fine detail slowly (supervised onto geom's folded sphere, 600 Adam steps:
            mean squared error 3e-3 with 32 hidden units and none, 1.5e-5 with 64 features). 0: none.
        bandwidth: their standard deviation, in cycles per ``length``. The features are multiplied by
            the buffer ``fourier_weight`` (1; :func:`geom.deform.deform` raises it from 0 to 1 over its
            first ``warmup`` steps: the field first learns the coarse shape).
        centre, length: ``(dim,)`` (or ``(K, dim)``) and a positive number (or ``(K,)``): the frame of
            ``u`` (default the origin and 1; :func:`geom.deform.deform` gives a new field its
            template's centre and radius).
        n_fields: ``K``.
        final_scale: the last layer's initial weights and bias are multiplied by it (default 0: the
            flow starts at the identity, ``phi_1(x) = x``).
        generator: the randomness of the initialisation (torch's default layer initialisation,
            ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, drawn field after field, layer after layer).
        dtype: of the parameters.
    """

    def __init__(self, dim: int = 3, hidden: int = 64, layers: int = 2, *, stationary: bool = False,
                 activation: str = "tanh", fourier: int = 64, bandwidth: float = 1.0, centre=None, length=1.0,
                 n_fields: int = 1, final_scale: float = 0.0, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        dim, hidden = check_int(dim, "dim", minimum=1), check_int(hidden, "hidden", minimum=1)
        layers, n_fields = check_int(layers, "layers", minimum=1), check_int(n_fields, "n_fields", minimum=1)
        self.stationary = check_bool(stationary, "stationary")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation, self.dim = activation, dim
        final_scale = check_real(final_scale, "final_scale", ">= 0", lambda s: s >= 0)
        fourier = check_int(fourier, "fourier", minimum=0)
        bandwidth = check_real(bandwidth, "bandwidth", "> 0", lambda v: v > 0)
        frequencies = torch.randn(dim, fourier, generator=generator, dtype=dtype) * bandwidth
        self.register_buffer("frequencies", frequencies)  # (dim, F), fixed: part of the state, not trained
        self.register_buffer("fourier_weight", torch.ones((), dtype=dtype))  # deform fades the features in
        centre = torch.zeros(dim, dtype=dtype) if centre is None else as_real_tensor(centre, "centre", "a (dim,) or (K, dim) tensor").to(dtype)
        if isinstance(length, (int, float)) and not isinstance(length, bool):
            length = torch.tensor(float(length))
        length = as_real_tensor(length, "length", "a positive number or (K,) tensor").to(dtype)
        if centre.shape not in ((dim,), (n_fields, dim)) or not bool(torch.isfinite(centre).all()):
            raise ValueError(f"centre: expected finite values of shape ({dim},) or ({n_fields}, {dim}), got "
                             f"{describe(centre)}")
        if length.shape not in ((), (n_fields,)) or not bool((length > 0).all() and torch.isfinite(length).all()):
            raise ValueError(f"length: expected a finite positive number or ({n_fields},) of them, got {describe(length)}")
        self.register_buffer("centre", centre.expand(n_fields, dim).clone())  # (K, dim)
        self.register_buffer("length", length.expand(n_fields).clone())  # (K,)
        sizes = [dim + 2 * fourier + (0 if stationary else 1), *[hidden] * layers, dim]
        weights, biases = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1 / math.sqrt(fan_in)
            w = (2 * torch.rand(n_fields, fan_in, fan_out, generator=generator, dtype=dtype) - 1) * bound
            b = (2 * torch.rand(n_fields, fan_out, generator=generator, dtype=dtype) - 1) * bound
            weights.append(w)
            biases.append(b)
        weights[-1], biases[-1] = weights[-1] * final_scale, biases[-1] * final_scale
        self.weights = torch.nn.ParameterList(weights)  # (K, in, out) each
        self.biases = torch.nn.ParameterList(biases)  # (K, out) each

    @property
    def n_fields(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor, t: torch.Tensor | float = 0.0) -> torch.Tensor:
        """``v(x, t)`` for ``x (K, N, dim)`` (or ``(B, N, dim)`` with one field, or ``(N, dim)``) -> same shape."""
        K, lead = self.n_fields, x.shape[:-1]
        if K > 1 and (x.ndim != 3 or x.shape[0] != K):
            raise ValueError(f"x: expected shape ({K}, N, {self.dim}) for {K} fields, got {tuple(x.shape)}")
        h = x.reshape(K, -1, x.shape[-1])  # (K, N', dim): bmm, much faster than broadcast matmul on the CPU
        length = self.length.to(h.dtype)[:, None, None]
        h = (h - self.centre.to(h.dtype)[:, None]) / length
        if self.frequencies.shape[1]:
            angle = (2 * math.pi) * (h @ self.frequencies.to(h.dtype))
            w = self.fourier_weight.to(h.dtype)
            h = torch.cat([h, w * torch.sin(angle), w * torch.cos(angle)], -1)
        if not self.stationary:
            h = torch.cat([h, torch.as_tensor(t, dtype=h.dtype, device=h.device).expand(*h.shape[:-1], 1)], -1)
        act = ACTIVATIONS[self.activation]
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.bmm(h, w) + b[:, None]
            if i < len(self.weights) - 1:
                h = act(h)
        return (h * length).reshape(*lead, self.dim)

    def repeat(self, n: int) -> "VelocityField":
        """``n * K`` independent fields, each of the ``n`` copies starting where this one is."""
        new = copy.deepcopy(self)
        for p in [*new.parameters(), new.centre, new.length]:
            p.data = p.data.repeat(n, *[1] * (p.ndim - 1))
        return new

    def select(self, k: int) -> "VelocityField":
        """Field ``k`` alone (a copy, ``K = 1``)."""
        k = check_int(k, "k")
        if k >= self.n_fields:
            raise ValueError(f"k: expected a field index in [0, {self.n_fields}), got {k}")
        new = copy.deepcopy(self)
        for p in [*new.parameters(), new.centre, new.length]:
            p.data = p.data[k:k + 1].clone()
        return new


class _Dynamics(torch.nn.Module):
    """torchdiffeq's ``func(t, y)`` of a field ``v(x, t)``."""

    def __init__(self, field: torch.nn.Module):
        super().__init__()
        self.field = field

    def forward(self, t, y):
        return self.field(y, t)


class NeuralODEDeformation(torch.nn.Module):
    """A diffeomorphism of R^dim: the time-1 flow map ``phi_1`` of a velocity field, and its inverse.

    It moves any point set: ``(N, dim)`` points or a ``(B, N, dim)`` batch (with ``K`` fields, ``B = K``:
    field ``k`` moves item ``k``), differentiably in the points and the parameters; a trained one applies
    to other meshes and point clouds. ``state_dict`` / ``load_state_dict`` are torch's (build the same
    field, then load).

    Args:
        field: a module ``v(x, t) -> velocity`` of the shape of ``x``; default a :class:`VelocityField`
            built from ``field_options`` (``dim``, ``hidden``, ``layers``, ``stationary``,
            ``activation``, ``n_fields``, ``final_scale``, ``generator``, ``dtype``).
        steps: number of steps of a fixed-grid solver (step size ``1 / steps``).
        method: a solver of torchdiffeq, fixed-grid (:data:`FIXED`, default ``"rk4"``) or adaptive
            (:data:`ADAPTIVE`, such as ``"dopri5"``, which ignores ``steps``).
        rtol, atol: tolerances of adaptive solvers.
        adjoint: differentiate by the adjoint equation (``odeint_adjoint``: memory constant in the
            number of steps, gradients up to the solver's error) instead of through the solver's steps.

    >>> phi = NeuralODEDeformation(final_scale=1.0, generator=torch.Generator().manual_seed(0))
    >>> x = torch.zeros(4, 3, dtype=torch.float64)
    >>> bool((phi.inverse(phi(x)) - x).abs().max() < 1e-6)
    True
    """

    def __init__(self, field: torch.nn.Module | None = None, *, steps: int = 8, method: str = "rk4",
                 rtol: float = 1e-6, atol: float = 1e-8, adjoint: bool = False, **field_options):
        super().__init__()
        if field is None:
            field = VelocityField(**field_options)
        elif field_options:
            raise TypeError(f"field options {sorted(field_options)} given with a field; set them on the field")
        if not isinstance(field, torch.nn.Module):
            raise TypeError(f"field: expected a torch.nn.Module v(x, t), got {describe(field)}")
        if method not in FIXED + ADAPTIVE:
            raise ValueError(f"method: expected a torchdiffeq solver, one of {list(FIXED + ADAPTIVE)}, got {method!r}")
        self.field, self.dynamics = field, _Dynamics(field)
        self.steps, self.method = check_int(steps, "steps", minimum=1), method
        self.rtol = check_real(rtol, "rtol", "> 0", lambda v: v > 0)
        self.atol = check_real(atol, "atol", "> 0", lambda v: v > 0)
        self.adjoint = check_bool(adjoint, "adjoint")

    def flow(self, points, t0: float = 0.0, t1: float = 1.0) -> torch.Tensor:
        """``points`` moved along the flow from time ``t0`` to ``t1`` (``t1 < t0``: backward)."""
        x = as_real_tensor(points, "points", "an (N, dim) or (B, N, dim) tensor")
        param = next(self.field.parameters(), None)
        if param is not None:
            x = x.to(dtype=param.dtype, device=param.device)
        if x.ndim not in (2, 3) or x.shape[-1] == 0:
            raise ValueError(f"points: expected shape (N, dim) or (B, N, dim), got {tuple(x.shape)}")
        solve = odeint(self.adjoint)
        if self.method in FIXED:  # the grid itself: exactly `steps` equal steps
            t = torch.linspace(float(t0), float(t1), self.steps + 1, dtype=x.dtype, device=x.device)
            options = dict(method=self.method)
        else:
            t = torch.tensor([float(t0), float(t1)], dtype=x.dtype, device=x.device)
            options = dict(method=self.method, rtol=self.rtol, atol=self.atol)
        if self.adjoint:
            options["adjoint_params"] = tuple(self.dynamics.parameters())
        return solve(self.dynamics, x, t, **options)[-1]

    def forward(self, points) -> torch.Tensor:
        """``phi_1(points)``, the same shape."""
        return self.flow(points, 0.0, 1.0)

    def inverse(self, points) -> torch.Tensor:
        """``phi_1^{-1}(points)``: the flow integrated from ``t = 1`` back to ``t = 0``."""
        return self.flow(points, 1.0, 0.0)

    def solver_error(self, points) -> torch.Tensor:
        """An estimate of the solver's error at ``points``: the largest distance between ``phi_1`` as
        solved and with twice the steps (fixed grids; adaptive solvers: a tenth of the tolerances).

        The exact flow map is a diffeomorphism; the solved one is one only while this error is small
        next to the scale at which the field bends: a strong field (large weights, Fourier features) on
        too coarse a grid can give a map whose Jacobian determinant is negative somewhere, which folds a
        surface. :func:`geom.deform.deform` warns when it exceeds a tenth of the template's mean edge.
        """
        with torch.no_grad():
            y = self(points)
            finer = copy.copy(self)
            if self.method in FIXED:
                finer.steps = 2 * self.steps
            else:
                finer.rtol, finer.atol = self.rtol / 10, self.atol / 10
            return (finer(points) - y).norm(dim=-1).max()

    def select(self, k: int) -> "NeuralODEDeformation":
        """The deformation of field ``k`` alone (of a :class:`VelocityField` with several)."""
        if not isinstance(self.field, VelocityField):
            raise TypeError(f"select: needs a VelocityField, got a field of type {type(self.field).__name__}")
        return NeuralODEDeformation(self.field.select(k), steps=self.steps, method=self.method, rtol=self.rtol,
                                    atol=self.atol, adjoint=self.adjoint)
