"""The plugin contract, as checks a plugin author runs in their own tests.

:func:`check_scheme` checks a :class:`geom.SlicingScheme` subclass and :func:`check_representation` a
:class:`geom.Representation` subclass against the contract the core relies on. Each raises an
:class:`AssertionError` whose message names the class, the call and what was expected on the first
violation, and returns None when everything holds. The checks need no test framework (this module
does not import pytest), draw all their randomness from seeded generators and leave torch's global
random state as they found it.

Usage, in a plugin package's tests (``tests/test_contract.py``)::

    import torch

    import geom
    import geom.testing
    from my_package import MyRepresentation


    class FixedAxes(geom.SlicingScheme):
        def check_space(self, space):
            self.require_euclidean(space, "the coordinate axes")

        def directions(self, n, space, *, generator=None):
            return torch.eye(space.dim)[torch.arange(n) % space.dim]


    def test_fixedaxes_honours_the_scheme_contract():
        geom.testing.check_scheme(FixedAxes)


    def test_my_representation_honours_the_contract():
        example = torch.randn(32, 3, requires_grad=True)  # an input MyRepresentation.build accepts
        geom.testing.check_representation(MyRepresentation, example)
"""

from __future__ import annotations

import torch

from ._checks import describe
from .contract import DirectionSpace, EstimateContext, Representation, SlicingScheme, UnitSphere
from .directions import Frames, SymmetricDirections
from .measures import Measure, measure
from .sliced import SlicedResult, sliced_costs, sliced_wasserstein

__all__ = ["check_representation", "check_scheme"]

DEFAULT_DIMS = (1, 2, 3, 10)
_COUNTS = (1, 2, 7, 64)  # numbers of directions asked for in every dimension
_UNIT_TOL = 1e-5
_ZERO_TOL = 1e-6


def _fail(who: str, message: str):
    raise AssertionError(f"{who}: {message}")


def _call(who: str, what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; an exception becomes an AssertionError naming the call."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # any exception from plugin code is a contract violation
        raise AssertionError(f"{who}: {what} raised {type(exc).__name__}: {exc}") from exc


def _label(cls) -> str:
    return getattr(cls, "__qualname__", None) or repr(cls)


def _check_dims(dims) -> tuple[int, ...]:
    if isinstance(dims, int) or not hasattr(dims, "__iter__"):
        raise TypeError(f"dims: expected a sequence of positive integers, got {describe(dims)}")
    dims = tuple(dims)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"dims: expected a non-empty sequence of positive integers, got {dims!r}")
    return dims


def _check_unit_rows(who: str, call: str, theta, n: int, dim: int) -> None:
    """``theta`` is a real floating ``(n, dim)`` tensor of finite unit rows."""
    if not isinstance(theta, torch.Tensor):
        _fail(who, f"{call} returned {describe(theta)}; expected a torch.Tensor of shape ({n}, {dim})")
    if tuple(theta.shape) != (n, dim):
        _fail(who, f"{call} returned shape {tuple(theta.shape)}; expected ({n}, {dim}) (one row per direction)")
    if not theta.is_floating_point():
        _fail(who, f"{call} returned dtype {theta.dtype}; expected a real floating dtype")
    t = theta.detach()
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        row = int((~finite).any(1).nonzero()[0])
        _fail(who, f"{call} returned non-finite values (row {row}: {t[row].tolist()}); expected finite unit rows")
    gap = (t.double().norm(dim=1) - 1).abs()  # (n,)
    if bool((gap > _UNIT_TOL).any()):
        row = int(gap.argmax())
        _fail(
            who,
            f"{call} returned row {row} with norm {t[row].double().norm().item():.8g}; expected unit rows "
            f"(|norm - 1| <= {_UNIT_TOL:g}); normalise with theta / theta.norm(dim=1, keepdim=True)",
        )


def _check_per_item(who: str, what: str, t, shape: tuple, *, nan_ok: bool, nonneg: bool) -> None:
    if not isinstance(t, torch.Tensor):
        _fail(who, f"{what} is {describe(t)}; expected a torch.Tensor of shape {shape}")
    if tuple(t.shape) != shape:
        _fail(who, f"{what} has shape {tuple(t.shape)}; expected {shape}")
    v = t.detach()
    bad = ~(torch.isfinite(v) | torch.isnan(v)) if nan_ok else ~torch.isfinite(v)
    if bool(bad.any()):
        allowed = "finite values or nan" if nan_ok else "finite values"
        _fail(who, f"{what} = {v.tolist()}; expected {allowed}")
    if nonneg and bool((v < 0).any()):
        _fail(who, f"{what} = {v.tolist()}; expected non-negative values")


def check_scheme(cls, *, dims=DEFAULT_DIMS, **options) -> None:
    """Check that a slicing scheme honours the plugin contract; raise AssertionError on a violation.

    Runs, on fresh instances ``cls(**options)``:

    1. ``cls`` is a subclass of :class:`geom.SlicingScheme`.
    2. ``directions(n, dim, generator=g)`` for ``n`` in (1, 2, 7, 64) and every ``dim`` in ``dims``
       (unit rows: ``geom.UnitSphere(dim)``) returns a real floating ``torch.Tensor`` of shape
       ``(n, dim)`` with finite unit rows (``|norm - 1| <= 1e-5``); in :class:`geom.Frames` ``(3)``
       and :class:`geom.SymmetricDirections` ``(3)`` it either declines in ``check_space`` (a
       ValueError) or returns directions of that space.
    3. Reproducibility: two instances given two generators seeded alike return identical
       directions, and drawing with a generator leaves torch's global random state untouched (a
       scheme must draw from the generator it is given, never from the global RNG).
    4. ``estimate(costs, context)`` on real per-slice costs ``(B, L)`` (``L`` in {1, 16}) returns two
       tensors of shape ``(B,)``: a finite value and a standard error that is non-negative or nan
       (nan is allowed: one slice, or a scheme without an error estimate).
    5. End to end through :func:`geom.sliced_wasserstein` with the instance, in dimension 3 (or the
       first of ``dims`` without 3), on a cloud and on a batch ``(B, N, D)`` of clouds with
       ``N != M``, for p in {1, 2}: a finite non-negative value of shape ``()`` / ``(B,)``, a
       standard error of the same shape (non-negative or nan), ``SW(x, x) <= 1e-6``, and a finite
       gradient with respect to the support points.
    6. State without pickle: after a few calls, ``state_dict()`` goes through arrays and JSON
       (:func:`geom._state.flatten`, ``json.dumps``) into a fresh instance's ``load_state_dict``, and
       the two instances then give bit-identical results on the same calls (the continuation of a
       checkpointed run). Schemes with state the default cannot rebuild (an object made lazily in
       ``fit``) override both methods.

    Args:
        cls: the scheme class (not an instance).
        dims: the dimensions the scheme supports; pass a subset of the default ``(1, 2, 3, 10)``
            for a scheme that only works in some dimensions.
        **options: keyword options of ``cls`` (as ``geom.sliced_wasserstein(..., scheme=name,
            **options)`` passes them).

    Returns:
        None.

    Raises:
        AssertionError: on the first violation, naming the class, the call and what was expected.
        TypeError, ValueError: ``dims`` is not a non-empty sequence of positive integers.

    Example, a test function in a plugin package::

        def test_fixedaxes_contract():
            geom.testing.check_scheme(FixedAxes)
            geom.testing.check_scheme(HemisphereOnly, dims=(2, 3))
    """
    dims = _check_dims(dims)
    who = f"check_scheme({_label(cls)})"
    if not (isinstance(cls, type) and issubclass(cls, SlicingScheme)):
        _fail(who, f"expected a subclass of geom.SlicingScheme, got {describe(cls)}")
    opts = ", ".join(f"{k}={v!r}" for k, v in options.items())
    make = f"{cls.__name__}({opts})"

    def fresh() -> SlicingScheme:
        return _call(who, make, cls, **options)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _check_directions_contract(who, fresh, dims)
        _check_other_spaces(who, fresh)
        _check_reproducible(who, fresh, dims)
        dim = 3 if 3 in dims else dims[0]
        _check_estimate(who, fresh(), dim)
        _check_end_to_end(who, fresh(), dim)
        _check_state_round_trip(who, fresh, dim)


def _check_directions_contract(who: str, fresh, dims: tuple[int, ...]) -> None:
    scheme = fresh()
    for dim in dims:
        for n in _COUNTS:
            g = torch.Generator().manual_seed(1000 * dim + n)
            call = f"directions(n={n}, dim={dim}, generator=g)"
            theta = _call(who, call, scheme.directions, n, dim, generator=g)
            _check_unit_rows(who, call, theta, n, dim)


def _check_other_spaces(who: str, fresh) -> None:
    """In the frames of the sphere kind and the SPD directions: the scheme either declines the space in
    ``check_space`` (a ValueError saying why) or draws ``(n, *space.shape)`` directions that pass the
    space's own ``check``."""
    for space in (Frames(3), SymmetricDirections(3)):
        scheme = fresh()
        try:
            scheme.check_space(space)
        except ValueError:
            continue  # declined, with a reason
        call = f"directions(n=7, {space!r}, generator=g)"
        theta = _call(who, call, scheme.directions, 7, space, generator=torch.Generator().manual_seed(5))
        if not isinstance(theta, torch.Tensor) or tuple(theta.shape) != (7, *space.shape):
            _fail(who, f"{call} returned {describe(theta)}; expected shape {(7, *space.shape)}, directions of the "
                       "space (check_space accepted it; raise ValueError there to decline a space)")
        _call(who, f"{space!r}.check({call})", space.check, theta.detach().double(), "directions")


def _check_reproducible(who: str, fresh, dims: tuple[int, ...]) -> None:
    for dim in dims:
        n, seed = 7, 4321 + dim
        call = f"directions(n={n}, dim={dim}, generator=torch.Generator().manual_seed({seed}))"
        first = _call(who, call, fresh().directions, n, dim, generator=torch.Generator().manual_seed(seed))
        second = _call(who, call, fresh().directions, n, dim, generator=torch.Generator().manual_seed(seed))
        if not torch.equal(first.detach(), second.detach()):
            _fail(
                who,
                f"not reproducible: two instances given two generators seeded with {seed} returned different "
                f"directions from {call}; draw every random number from `generator` (e.g. "
                "torch.randn(n, dim, generator=generator))",
            )
        torch.manual_seed(2_147_483_647 - dim)  # a global state no earlier call left behind
        state = torch.random.get_rng_state()
        _call(who, call, fresh().directions, n, dim, generator=torch.Generator().manual_seed(seed))
        if not torch.equal(state, torch.random.get_rng_state()):
            _fail(
                who,
                f"{call} changed torch's global random state; with a generator given, a scheme must draw "
                "from that generator only (pass generator=generator to torch.randn / torch.rand)",
            )


def _clouds(dim: int, batch: int | None, seed: int, requires_grad: bool = False):
    """Two clouds of 20 and 15 points in R^dim (batched ``(B, N, dim)`` when ``batch`` is given)."""
    g = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    x = torch.randn(*lead, 20, dim, generator=g)
    y = 0.5 * torch.randn(*lead, 15, dim, generator=g) + 1.0
    return x.requires_grad_(requires_grad), y


def _check_estimate(who: str, scheme: SlicingScheme, dim: int) -> None:
    B = 3
    x, y = _clouds(dim, B, seed=11)
    w = torch.rand(B, y.shape[1], generator=torch.Generator().manual_seed(12)) + 0.1  # (B, M)
    mu, nu = measure(x), measure(y, weights=w)
    for L in (16, 1):
        g = torch.Generator().manual_seed(13 + L)
        call = f"directions(n={L}, dim={dim}, generator=g)"
        theta = _call(who, call, scheme.directions, L, dim, generator=g)
        _check_unit_rows(who, call, theta, L, dim)
        theta = theta.detach().to(x.dtype)  # (L, d)
        costs = sliced_costs(mu, nu, theta, 2.0)  # (B, L)
        context = EstimateContext(mu, nu, theta, 2.0, g, drawn=True)
        call = f"estimate(costs of shape {tuple(costs.shape)}, context)"
        out = _call(who, call, scheme.estimate, costs, context)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            _fail(who, f"{call} returned {describe(out)}; expected a pair (value, stderr) of tensors of shape ({B},)")
        value, stderr = out
        _check_per_item(who, f"the value from {call}", value, (B,), nan_ok=False, nonneg=False)
        _check_per_item(who, f"the stderr from {call}", stderr, (B,), nan_ok=True, nonneg=True)


def _check_end_to_end(who: str, scheme: SlicingScheme, dim: int) -> None:
    L = 16
    for batch in (None, 2):
        shape = () if batch is None else (batch,)
        for p in (1, 2):
            x, y = _clouds(dim, batch, seed=21 + p, requires_grad=True)
            call = (
                f"geom.sliced_wasserstein(x {tuple(x.shape)}, y {tuple(y.shape)}, scheme=<instance>, p={p}, "
                f"n_projections={L}, seed=0, return_result=True)"
            )
            res = _call(who, call, sliced_wasserstein, x, y, scheme=scheme, p=p, n_projections=L, seed=0,
                        return_result=True)
            if not isinstance(res, SlicedResult):
                _fail(who, f"{call} returned {describe(res)}; expected a geom.SlicedResult")
            _check_per_item(who, f"the value of {call}", res.value, shape, nan_ok=False, nonneg=True)
            _check_per_item(who, f"the stderr of {call}", res.stderr, shape, nan_ok=True, nonneg=True)
            if not res.value.requires_grad:
                _fail(who, f"the value of {call} does not depend on the support (no autograd graph); "
                           "estimate() must keep the costs' graph (do not detach the value)")
            (grad,) = _call(who, f"backward through {call}", torch.autograd.grad, res.value.sum(), x,
                            allow_unused=True)
            if grad is None:
                _fail(who, f"the value of {call} has no gradient with respect to the support")
            if not bool(torch.isfinite(grad).all()):
                _fail(who, f"the gradient of {call} with respect to the support is not finite")
            same = f"geom.sliced_wasserstein(x, x, scheme=<instance>, p={p}, n_projections={L}, seed=0)"
            zero = _call(who, same, sliced_wasserstein, x.detach(), x.detach(), scheme=scheme, p=p,
                         n_projections=L, seed=0)
            z = zero.detach()
            if tuple(z.shape) != shape or not bool(torch.isfinite(z).all()) or bool((z.abs() > _ZERO_TOL).any()):
                _fail(who, f"{same} = {z.tolist()}; expected 0 (within {_ZERO_TOL:g}) of shape {shape}")
    one = _call(who, "geom.sliced_wasserstein(x, y, scheme=<instance>, n_projections=1, seed=0)",
                sliced_wasserstein, *_clouds(dim, None, seed=31), scheme=scheme, n_projections=1, seed=0)
    _check_per_item(who, "the value of geom.sliced_wasserstein(x, y, scheme=<instance>, n_projections=1)",
                    one, (), nan_ok=False, nonneg=True)


def _check_state_round_trip(who: str, fresh, dim: int) -> None:
    import json

    from ._state import flatten, unflatten

    scheme, L = fresh(), 8
    x, y = _clouds(dim, None, seed=41)
    for seed in (42, 43):  # some state to keep (learned directions, a reservoir)
        _call(who, "geom.sliced_wasserstein(x, y, scheme=<instance>, seed=...)", sliced_wasserstein, x, y,
              scheme=scheme, n_projections=L, seed=seed)
    state = _call(who, "state_dict()", scheme.state_dict)
    try:
        arrays, skeleton = flatten(state, "state_dict()")
        text = json.dumps(skeleton, allow_nan=False)
    except (TypeError, ValueError) as exc:
        _fail(who, f"state_dict() cannot be stored without pickle: {exc}; keep tensors and plain types "
                   "(or override state_dict and load_state_dict)")
    other = fresh()
    restored = unflatten({k: v.copy() for k, v in arrays.items()}, json.loads(text))
    _call(who, "load_state_dict(state) on a fresh instance, state = the state_dict() of a used one "
               "through arrays and JSON", other.load_state_dict, restored)
    for seed in (44, 45):
        call = f"geom.sliced_wasserstein(x, y, scheme=<instance>, n_projections={L}, seed={seed}, return_result=True)"
        a, b = (_call(who, call, sliced_wasserstein, x, y, scheme=inst, n_projections=L, seed=seed, return_result=True)
                for inst in (scheme, other))
        if not (torch.equal(a.directions, b.directions) and torch.equal(a.value.detach(), b.value.detach())):
            _fail(who, f"a fresh instance given load_state_dict(state_dict()) of a used one continues otherwise: "
                       f"{call} gives {b.value.item()!r} where the used instance gives {a.value.item()!r}; the "
                       "state must hold everything the next calls depend on")


def _registered_name(cls) -> str | None:
    """The name ``cls`` is registered under as a representation (the first, sorted), or None."""
    from .registry import _registry

    _registry.load()
    names = sorted(n for n, (c, _plugin) in _registry.tables["representations"].items() if c is cls)
    return names[0] if names else None


def _sliced(rep: Representation, name: str | None, mu: Measure, nu: Measure, theta: torch.Tensor, p: float):
    """``SW_p(mu, nu)`` with the given directions through the core's one estimator, by the registered
    representation or, for a class not registered, by ``rep`` itself."""
    if name is not None:
        return sliced_wasserstein(mu, nu, directions=theta, p=p)
    from .sliced import _estimate

    return _estimate(mu, nu, p=float(p), directions=theta, representation=rep).value


def check_representation(cls, example, **options) -> None:
    """Check that a measure representation honours the plugin contract; raise AssertionError on a violation.

    Builds a measure from ``example`` with ``cls().build(example, **options)`` and checks:

    1. ``cls`` is a subclass of :class:`geom.Representation`.
    2. ``build`` returns a :class:`geom.Measure` with a ``(B, N, *event)`` support and ``(B, N)``
       weights that are finite, non-negative and sum to 1 per measure (1e-5); an unbatched measure
       has ``B == 1``; when ``cls`` is registered, the measure's ``kind`` is its registered name.
    3. ``direction_space(measure)`` is a :class:`geom.DirectionSpace` whose uniform draws pass its own
       ``check``, and ``project(support, directions)`` for ``(L, *space.shape)`` directions drawn
       from it with a seeded generator is a finite ``(B, L, N)`` tensor; with ``linear = True`` the
       space is :class:`geom.UnitSphere` and the projection equals ``support @ directions.T``
       (transposed to ``(B, L, N)``); the projection is differentiable with respect to a floating
       support.
    4. ``SW_2(measure, measure) <= 1e-6``.
    5. When the support requires grad (for example a tensor ``example`` with ``requires_grad``):
       ``SW_2`` against a re-weighted copy of the measure has a finite gradient with respect to the
       support, not all zero when the distance is positive.

    When ``cls`` is registered (through a plugin or :func:`geom.register_representation`), the
    distances go through :func:`geom.sliced_wasserstein`; otherwise through ``cls().project`` and the
    core's exact 1-D transport, the path the core takes for representations that are not linear.

    Args:
        cls: the representation class (not an instance).
        example: an input that ``cls().build`` accepts, with at least one point.
        **options: keyword options of ``build`` (as ``geom.measure(example, kind=name, **options)``
            passes them).

    Returns:
        None.

    Raises:
        AssertionError: on the first violation, naming the class, the call and what was expected.

    Example, a test function in a plugin package::

        def test_sphere_contract():
            pts = torch.nn.functional.normalize(torch.randn(40, 3), dim=1).requires_grad_()
            geom.testing.check_representation(SpherePoints, pts)
    """
    who = f"check_representation({_label(cls)})"
    if not (isinstance(cls, type) and issubclass(cls, Representation)):
        _fail(who, f"expected a subclass of geom.Representation, got {describe(cls)}")
    name = _registered_name(cls)
    rep = _call(who, f"{cls.__name__}()", cls)
    if name is not None:
        rep.name = name
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mu = _call(who, f"build({describe(example)})", rep.build, example, **options)
        _check_measure(who, mu, name)
        _check_projection(who, rep, name, mu)


def _check_measure(who: str, mu, name: str | None) -> None:
    if not isinstance(mu, Measure):
        _fail(who, f"build() returned {describe(mu)}; expected a geom.Measure")
    support, weights = mu.support, mu.weights
    if not isinstance(support, torch.Tensor) or support.ndim < 3:
        _fail(who, f"build() returned a support {describe(support)}; expected a tensor of shape (B, N, *event)")
    if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != tuple(support.shape[:2]):
        _fail(who, f"build() returned weights {describe(weights)}; expected shape {tuple(support.shape[:2])}")
    if support.shape[1] < 1:
        _fail(who, "build() returned a measure with no points; expected at least one")
    if not mu.batched and support.shape[0] != 1:
        _fail(who, f"build() returned an unbatched measure with batch size {support.shape[0]}; expected 1")
    if name is not None and mu.kind != name:
        _fail(who, f"build() returned a Measure of kind {mu.kind!r}; expected {name!r}, the name the class is "
                   "registered under (pass kind=self.name)")
    if support.is_floating_point() and not bool(torch.isfinite(support.detach()).all()):
        _fail(who, "build() returned a support with non-finite values")
    w = weights.detach().double()
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        _fail(who, f"build() returned weights with negative or non-finite values (min {w.min().item():.6g})")
    total = w.sum(-1)  # (B,)
    if bool(((total - 1).abs() > 1e-5).any()):
        sums = ", ".join(f"{t:.6g}" for t in total.tolist())
        _fail(who, f"build() returned weights summing to [{sums}] per measure; expected 1 (within 1e-5)")


def _check_projection(who: str, rep: Representation, name: str | None, mu: Measure) -> None:
    support = mu.support
    B, N = support.shape[:2]
    space = _call(who, "direction_space(measure)", rep.direction_space, mu)
    if not isinstance(space, DirectionSpace):
        _fail(who, f"direction_space(measure) returned {describe(space)}; expected a geom.DirectionSpace")
    if rep.linear and not isinstance(space, UnitSphere):
        _fail(who, f"linear = True promises unit-row directions, but direction_space(measure) is {space!r}")
    L = 8
    dtype = support.dtype if support.is_floating_point() else torch.float32
    call = f"direction_space(measure).sample({L}, generator)"
    theta = _call(who, call, space.sample, L, torch.Generator().manual_seed(0))
    _call(who, f"direction_space(measure).check({call})", space.check, theta, "directions")
    theta = theta.to(device=support.device, dtype=dtype)  # (L, *space.shape)
    d = theta[0].numel()
    call = f"project(support {tuple(support.shape)}, directions {tuple(theta.shape)})"
    proj = _call(who, call, rep.project, support, theta)
    if not isinstance(proj, torch.Tensor) or tuple(proj.shape) != (B, L, N):
        _fail(who, f"{call} returned {describe(proj)}; expected shape {(B, L, N)} (batch, direction, point)")
    if not bool(torch.isfinite(proj.detach()).all()):
        _fail(who, f"{call} returned non-finite values")
    if rep.linear:
        flat = support.detach().reshape(B, N, -1)
        if flat.shape[-1] != d:
            _fail(who, f"linear = True, but a support point has {flat.shape[-1]} coordinates and directions {d}")
        expected = torch.matmul(flat.to(dtype), theta.T).transpose(1, 2)  # (B, L, N)
        err = (proj.detach() - expected).abs().max().item()
        tol = 100 * torch.finfo(dtype).eps * d * (1 + expected.abs().max().item())
        if err > tol:
            _fail(who, f"linear = True promises project(x, theta) == x @ theta.T, but they differ by {err:.3g}")
    if support.is_floating_point():
        leaf = support.detach().clone().requires_grad_(True)
        out = _call(who, call, rep.project, leaf, theta)
        if not out.requires_grad:
            _fail(who, f"{call} is not differentiable with respect to the support (no autograd graph)")
        (g,) = torch.autograd.grad(out.sum(), leaf, allow_unused=True)
        if g is None or not bool(torch.isfinite(g).all()):
            _fail(who, f"{call} has a missing or non-finite gradient with respect to the support")

    via = "geom.sliced_wasserstein" if name is not None else "SW_2 (through project())"
    call = f"{via}(measure, measure)"
    zero = _call(who, call, _sliced, rep, name, mu, mu, theta, 2.0).detach()
    if not bool(torch.isfinite(zero).all()) or bool((zero.abs() > _ZERO_TOL).any()):
        _fail(who, f"{call} = {zero.tolist()}; expected 0 (within {_ZERO_TOL:g})")

    if support.requires_grad:
        w = mu.weights.detach() * torch.arange(1, N + 1, dtype=mu.weights.dtype, device=mu.weights.device)
        w = w / w.sum(-1, keepdim=True)  # (B, N), non-uniform
        nu = mu.detach().replace(weights=w if mu.batched else w[0])
        call = f"{via}(measure, re-weighted copy)"
        value = _call(who, call, _sliced, rep, name, mu, nu, theta, 2.0)
        if not value.requires_grad:
            _fail(who, f"{call} does not depend on the support (no autograd graph)")
        (g,) = _call(who, f"backward through {call}", torch.autograd.grad, value.sum(), support, allow_unused=True)
        if g is None or not bool(torch.isfinite(g).all()):
            _fail(who, f"{call} has a missing or non-finite gradient with respect to the support")
        if value.detach().max().item() > _ZERO_TOL and not bool((g != 0).any()):
            _fail(who, f"{call} is positive but its gradient with respect to the support is 0")
