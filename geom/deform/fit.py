"""``deform``: a template mesh moved onto a target by a neural-ODE diffeomorphism (or free vertices).

Each step moves the template's vertices (``phi_1(x_0)`` of a :class:`NeuralODEDeformation`, or the
vertices themselves for ``method="vertices"``), builds the moved mesh's measure, and takes an Adam step
on ``SW_2^2(moved, target)`` (fresh directions each step from one scheme instance) or the Chamfer
distance between surface samples, plus weighted regularisers (:mod:`geom.deform.losses`).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .._checks import GeomWarning, check_bool, check_int, check_real, describe
from ..ascent import ProjectedAscent
from ..measures import collate, measure, normalization
from ..reductions import chamfer_distance
from ..sliced import make_generator, resolve_scheme, sliced_wasserstein
from .losses import REGULARIZERS, mean_squared_edge
from .ode import NeuralODEDeformation, VelocityField
from .templates import MeshTopology, as_mesh, as_target

__all__ = ["DeformResult", "KINDS", "LOSSES", "METHODS", "deform"]

LOSSES = ("sw", "chamfer")
METHODS = ("ode", "vertices")
KINDS = ("varifold", "mesh", "mesh-discrete")
LR = {"ode": 0.003, "vertices": 0.01}
"""Adam's default step sizes: on the field's weights, and on free vertices in units of the target's radius."""
REGULARIZATION = {"normal": 0.003, "edge": 0.001}
"""The default regularisers: they keep the moved mesh's triangles from folding where the field
compresses them (without them a 600-step fit of the bunny left 37 crossing faces), at little cost to the
fit."""
SOLVER_OPTIONS = ("steps", "method", "rtol", "atol", "adjoint")


@dataclass
class DeformResult:
    """What :func:`deform` returns.

    Attributes:
        vertices: ``(V, 3)`` float64 moved vertices (detached), a list of them for a batch (unpadded).
        faces: ``(F, 3)`` int64, the template's (a list for a batch).
        history: ``"loss"`` (the objective: data term plus weighted regularisers), ``"data"`` (``SW_2``, or
            the Chamfer distance) and each regulariser's unweighted value: ``(steps + 1,)`` float64 tensors,
            ``(steps + 1, B)`` for a batch; row ``i`` is measured after ``i`` updates (row 0: the template).
        deformation: the trained :class:`NeuralODEDeformation` (``method="ode"``; it works in the
            normalised coordinates where ``normalize`` was given), else None.
        settings: every setting used, the normalisations (``centre``, ``scale``: ``x -> (x - centre) /
            scale``), the genera of template and target, the target's ``radius`` (the objective's unit)
            and, for ``"ode"``, ``solver_error`` (:meth:`NeuralODEDeformation.solver_error` at the
            template's vertices after training; a GeomWarning when above a tenth of a mean edge).
        optimizer_state: Adam's state after the last step.
    """

    vertices: torch.Tensor | list
    faces: torch.Tensor | list
    history: dict = field(default_factory=dict)
    deformation: NeuralODEDeformation | None = None
    settings: dict = field(default_factory=dict)
    #: Adam's state after the last step (``t``, ``m``, ``v``): ``deform(..., optimizer_state=...)`` continues it
    optimizer_state: dict | None = None


def _choice(value, name: str, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {list(options)}, got {describe(value)}")
    return value


def _similarity(points: torch.Tensor, how):
    """``(centre (3,), scale)`` of :func:`geom.measures.normalization` of the points (None: identity)."""
    if how is None:
        return torch.zeros(3, dtype=points.dtype), 1.0
    centre, scale = normalization(measure(points), how)
    return centre[0].to(points.dtype), float(scale[0])


def _pairs(template, target) -> tuple[list, list, bool]:
    """Templates and targets as equal-length lists (one template or one target broadcasts)."""
    batched = isinstance(template, list) or isinstance(target, list)
    templates = template if isinstance(template, list) else None
    targets = target if isinstance(target, list) else None
    for name, items in (("template", templates), ("target", targets)):
        if items is not None and not items:
            raise ValueError(f"{name}: expected a non-empty list of meshes, got an empty list")
    n = len(templates or targets or [None])
    templates = templates or [template] * n
    targets = targets or [target] * n
    if len(templates) != len(targets):
        raise ValueError(f"template, target: expected lists of one length, got {len(templates)} templates and "
                         f"{len(targets)} targets")
    return templates, targets, batched


class _Item(NamedTuple):
    """One template, ready: normalised vertices ``(V, 3)``, faces ``(F, 3)``, topology, its root mean
    square edge length, the centre ``(3,)`` and radius of its vertices (a new field's frame), the radius
    of its target's points (the objective's unit of length) and the options of its measures' kind."""

    vertices: torch.Tensor
    faces: torch.Tensor
    topology: MeshTopology
    edge: float
    centre: torch.Tensor
    radius: float
    unit: float
    options: dict


def _pair(template, target, where: str, loss: str, kind: str, options: dict, normalize):
    """One (template, target) pair -> the template's :class:`_Item`, the target's measure, and notes
    (genus, normalisation) for the settings; the checks of :func:`deform`, naming ``template{where}``."""
    v, f = as_mesh(template, f"template{where}")
    topo = MeshTopology(f)
    if bool((topo.counts > 2).any()):
        i = int((topo.counts > 2).nonzero()[0, 0])
        raise ValueError(f"template{where}: expected a manifold mesh (every edge in at most two faces), got edge "
                         f"{topo.edges[i].tolist()} in {int(topo.counts[i])} faces")
    points, tf = as_target(target, f"target{where}")
    if tf is None and kind != "mesh":
        raise ValueError(f"kind: {kind!r} needs the target's faces (face areas{' and normals' * (kind == 'varifold')}), "
                         f"got a point cloud of {len(points)} points as target{where}; use kind='mesh' (surface "
                         "samples of the template against the points) or loss='chamfer'")
    t_topo = None if tf is None else MeshTopology(tf)
    if t_topo is not None and t_topo.euler != topo.euler:
        warnings.warn(f"template{where}, target{where}: the template has genus {topo.genus:g} and the target genus "
                      f"{t_topo.genus:g} (Euler characteristics {topo.euler} and {t_topo.euler}); a deformation keeps "
                      "the template's genus (a genus-0 template cannot become a torus)", GeomWarning, stacklevel=3)
    (vc, vs), (tc, ts) = _similarity(v, normalize), _similarity(points, normalize)
    v, points = (v - vc) / vs, (points - tc) / ts
    (centre, radius), unit = _similarity(v, "sphere"), _similarity(points, "sphere")[1]
    if kind == "varifold":  # normals as long as positions vary: normal_scale in target radii
        options = dict(options, normal_scale=options.get("normal_scale", 1.0) * unit)
    if tf is None:
        nu = measure(points)
    elif kind == "mesh":  # surface samples are points: targets of one batch then collate, meshes or clouds
        nu = measure(measure((points, tf), kind="mesh", **options).support[0])
    else:
        nu = measure((points, tf), kind=kind, **options)
    notes = dict(template=dict(genus=topo.genus, centre=vc.tolist(), scale=vs),
                 target=dict(genus=None if t_topo is None else t_topo.genus, centre=tc.tolist(), scale=ts, radius=unit))
    return _Item(v, f, topo, float(mean_squared_edge(v, topo).sqrt()), centre, radius, unit, options), nu, notes


def _deformation(given, ode, generator, n_fields: int, centre=None, length=None) -> NeuralODEDeformation:
    """A copy of the ``given`` deformation, or a new one from the ``ode`` options with ``n_fields``
    copies of one seeded initial field, field ``k`` in the frame ``centre[k] (3,)``, ``length[k]`` (unless
    the options set them)."""
    if given is not None:
        if ode:
            raise ValueError("ode: options of a new deformation, given with deformation=; set them on it")
        if not isinstance(given, NeuralODEDeformation):
            raise TypeError(f"deformation: expected a NeuralODEDeformation, got {describe(given)}")
        return copy.deepcopy(given)
    options = dict(ode or {})
    solver = {key: options.pop(key) for key in SOLVER_OPTIONS if key in options}
    framed = "centre" not in options and "length" not in options and centre is not None
    velocity = VelocityField(generator=generator, **options)
    velocity = velocity.repeat(n_fields) if n_fields > 1 else velocity
    if framed:
        velocity.centre.copy_(centre.to(velocity.centre.dtype).expand_as(velocity.centre))
        velocity.length.copy_(length.to(velocity.length.dtype).expand_as(velocity.length))
    return NeuralODEDeformation(velocity, **solver)


def deform(template, target, *, loss: str = "sw", kind: str = "varifold", scheme="qmc", n_projections: int = 128,
           steps: int = 300, lr: float | None = None, seed: int | None = None, generator=None,
           optimizer_state: dict | None = None, regularizers: dict | None = None,
           method: str = "ode", normalize: str | None = None, shared: bool = False,
           deformation: NeuralODEDeformation | None = None, ode: dict | None = None, kind_options: dict | None = None,
           n_samples: int = 2048, warmup: int = 150, callback=None) -> DeformResult:
    """Deform ``template`` onto ``target``; a batch of pairs in one call.

    Args:
        template: a mesh: a ``(vertices (V, 3), faces (F, 3))`` tuple, a mesh file or a trimesh / open3d
            mesh (:func:`geom.deform.icosphere` gives one); manifold (an edge in at most two faces).
            A list: a batch (one template with a list of targets is used for each).
        target: a mesh as above or a point cloud ``(N, 3)`` (array, tensor, point file); a list: a batch.
            A mesh target of another Euler characteristic than the template gives a GeomWarning: the
            deformation keeps the template's genus.
        loss: ``"sw"`` (``SW_2^2`` between ``geom.measure(moved, kind=kind)`` and the target's measure of
            the same kind; for a point-cloud target the points themselves, with ``kind="mesh"`` only)
            or ``"chamfer"`` (:func:`geom.chamfer_distance` between ``n_samples`` surface samples of the
            moved template and of the target, or the points; ``kind`` unused). The objective divides it
            by the square of the target's radius (the largest distance of its points from their mean),
            so that it, the regularisers' weights and the step sizes do not depend on the target's size.
        kind: ``"varifold"`` (default; centroids and normals), ``"mesh"`` (surface samples, fresh
            each step) or ``"mesh-discrete"`` (area-weighted centroids).
        scheme, n_projections: the slicing scheme (name or instance; one instance draws fresh directions
            every step) and its number of directions.
        steps: Adam steps, ``>= 1``. lr: their size (default :data:`LR`: 0.003 on the field's weights,
            0.01 target radii on free vertices).
        seed, generator: every random draw (the field's initialisation, directions, surface samples)
            comes from ``torch.Generator().manual_seed(seed)`` (default seed 0) or from ``generator`` (one
            of them): same seed, same result bit for bit.
        optimizer_state: ``DeformResult.optimizer_state`` of an earlier call: Adam continues from it.
            With that call's ``deformation`` (or its vertices as the template, for ``"vertices"``) and a
            generator in the state it had before the earlier call's last row drew (the callback can
            save it), the run continues bit for bit (``geom deform --resume`` does so).
        regularizers: ``{"edge": w, "laplacian": w, "normal": w}`` weights ``>= 0`` of the terms of
            :mod:`geom.deform.losses`, added per pair to the data term; default :data:`REGULARIZATION`
            (``{"normal": 0.003, "edge": 0.001}``), ``{}`` for none.
        method: ``"ode"`` (a :class:`NeuralODEDeformation` moves the vertices: a diffeomorphism) or
            ``"vertices"`` (Adam on the free vertices, for comparison; no guarantee against
            self-intersection).
        normalize: ``"sphere"`` or ``"box"``: template and target are each moved and scaled first
            (:func:`geom.measures.normalization` of their vertices / points); the result stays in the
            target's normalised frame. None: as given.
        shared: for a batch, one velocity field for every pair (trained on the sum of the losses);
            default one field per pair, trained at once: pair ``k`` then gets what ``deform(template_k,
            target_k)`` gives with the same seed (its field starts from the same initialisation, sees
            the same directions and samples; Adam is per parameter), up to rounding in the padded
            batch, and exactly so only for fixed-grid solvers (an adaptive one chooses one step size
            for the whole batch).
        deformation: a :class:`NeuralODEDeformation` to start from (a copy is trained).
        ode: options of the :class:`NeuralODEDeformation` built otherwise: the solver's (``steps=8``,
            ``method="rk4"``, ``rtol``, ``atol``, ``adjoint``) and the :class:`VelocityField`'s
            (``hidden=64``, ``layers=2``, ``fourier=64``, ``bandwidth=1``, ``stationary``,
            ``activation="tanh"``, ``final_scale=0``: the flow starts at the identity; ``centre`` and
            ``length``: default the template's vertex mean and radius).
        warmup: for ``"ode"``: the field's Fourier features are weighted by ``min(1, t / warmup)`` after
            ``t`` Adam updates (of the whole run: it continues with ``optimizer_state``), so the field
            first fits the coarse shape, then the detail (with the features at full weight from the
            start, 300 steps onto the arm folded 1140 of its 1280 faces; with a warm-up of 150: none,
            and the bunny's Chamfer unchanged). 0: no warm-up. A given ``deformation`` without
            ``optimizer_state`` keeps its weight.
        kind_options: options of the kind (``normal_scale`` for ``"varifold"``, in target radii: the
            normals are scaled by it times the target's radius; ``n_samples`` for ``"mesh"``);
            n_samples: surface samples of ``loss="chamfer"``.
        callback: ``callback(step, vertices, values)`` at each row of the history (``vertices`` as in
            the result, ``values`` a dict of that row); returning True stops there.

    Returns:
        A :class:`DeformResult`.
    """
    loss, kind, method = _choice(loss, "loss", LOSSES), _choice(kind, "kind", KINDS), _choice(method, "method", METHODS)
    steps = check_int(steps, "steps", minimum=1)
    lr = LR[method] if lr is None else check_real(lr, "lr", "> 0", lambda v: v > 0)
    n_projections = check_int(n_projections, "n_projections", minimum=1)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    warmup = check_int(warmup, "warmup", minimum=0)
    shared = check_bool(shared, "shared")
    if normalize not in (None, "sphere", "box"):
        raise ValueError(f"normalize: expected 'sphere', 'box' or None, got {describe(normalize)}")
    weights = dict(REGULARIZATION if regularizers is None else regularizers)
    for name, w in weights.items():
        if name not in REGULARIZERS:
            raise ValueError(f"regularizers: expected names among {sorted(REGULARIZERS)}, got {name!r}")
        weights[name] = check_real(w, f"regularizers[{name!r}]", ">= 0", lambda v: v >= 0)
    kind_options = dict(kind_options or {})
    if "seed" in kind_options:
        raise ValueError("kind_options: 'seed' is deform's own (the samples follow its seed)")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {describe(callback)}")
    if method == "vertices" and (deformation is not None or ode):
        raise ValueError("deformation, ode: belong to method='ode', got method='vertices'")
    generator = make_generator(0 if seed is None and generator is None else seed, generator)
    scheme_name = scheme if isinstance(scheme, str) else type(scheme).__name__
    scheme = resolve_scheme(scheme) if loss == "sw" else None

    templates, targets, batched = _pairs(template, target)
    B = len(templates)
    used_kind = kind if loss == "sw" else "mesh"
    target_options = kind_options if loss == "sw" else dict(n_samples=n_samples)
    items, nus, info = [], [], dict(template=[], target=[])
    for k, pair in enumerate(zip(templates, targets)):
        item, nu_k, notes = _pair(*pair, (f"[{k}]" if batched else ""), loss, used_kind, target_options, normalize)
        items.append(item)
        nus.append(nu_k)
        for side in info:
            info[side].append(notes[side])
    nu = collate(nus) if batched else nus[0]
    x0 = torch.nn.utils.rnn.pad_sequence([it.vertices for it in items], batch_first=True)  # (B, V_max, 3)

    units = torch.tensor([it.unit for it in items], dtype=x0.dtype)  # (B,): the targets' radii
    if method == "ode":
        if shared:
            centre, length = _similarity(torch.cat([it.vertices for it in items]), "sphere")
            centre, length = centre[None], torch.tensor([length], dtype=x0.dtype)
        else:
            centre = torch.stack([it.centre for it in items])
            length = torch.tensor([it.radius for it in items], dtype=x0.dtype)
        given = deformation
        deformation = _deformation(deformation, ode, generator, B if not shared else 1, centre, length)
        params = list(deformation.parameters())
        current = lambda: deformation(x0)  # noqa: E731
    else:
        moved = x0.clone().requires_grad_()
        params = [moved]
        current = lambda: moved  # noqa: E731
    # Adam's steps: on the field's weights (free of size: the field works in its template's frame), on
    # free vertices in target radii (the gradient in those units too, so that Adam's epsilon is)
    unit = units[:, None, None] if batched else float(units[0])
    size = lr if method == "ode" else lr * unit
    optimizer = ProjectedAscent(params, "adam")
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    # a new field, or one whose training continues, follows the warm-up; a given field alone keeps its weight
    ramp = (method == "ode" and (given is None or optimizer_state is not None)
            and isinstance(deformation.field, VelocityField) and deformation.field.frequencies.shape[1] > 0)

    def evaluate(x):
        moved = [(x[k, :len(it.vertices)], it.faces) for k, it in enumerate(items)]
        if used_kind == "varifold":  # each pair's own normal scale
            mu = [measure(m, kind=used_kind, **it.options) for m, it in zip(moved, items)]
            mu = collate(mu) if batched else mu[0]
        else:
            opts = dict(target_options)
            if used_kind == "mesh":  # fresh surface samples each step
                opts["seed"] = int(torch.randint(1 << 31, (), generator=generator))
            mu = measure(moved if batched else moved[0], kind=used_kind, **opts)
        if loss == "sw":
            data = sliced_wasserstein(mu, nu, p=2, n_projections=n_projections, scheme=scheme, generator=generator)
            objective = data**2
        else:
            data = objective = chamfer_distance(mu, nu)
        values = dict(data=data.reshape(B))
        total = objective.reshape(B) / units**2  # free of the size, as the regularisers are
        for name, w in weights.items():
            values[name] = torch.stack([REGULARIZERS[name](v, f, it.topology)
                                        for (v, f), it in zip(moved, items)])
            total = total + w * values[name]
        values["loss"] = total
        return total, values

    history = {}
    for step in range(steps + 1):
        if ramp:  # coarse to fine: after t updates of the whole run, weight t / warmup
            deformation.field.fourier_weight.fill_(min(1.0, optimizer.t / warmup) if warmup else 1.0)
        with torch.set_grad_enabled(step < steps):
            x = current()
            total, values = evaluate(x)
        for name, value in values.items():
            history.setdefault(name, []).append(value.detach().double())
        vertices = [x[k, :len(it.vertices)].detach().clone() for k, it in enumerate(items)]
        if callback is not None and callback(step, vertices if batched else vertices[0],
                                             {name: (v if batched else v[0]).detach() for name, v in values.items()}) is True:
            break
        if step == steps:
            break
        total.sum().backward()
        optimizer.step(-size, None if method == "ode" else [moved.grad * unit])  # Adam's descent
    history = {name: torch.stack(rows) if batched else torch.stack(rows)[:, 0] for name, rows in history.items()}
    solver_error = None
    if method == "ode":  # the solved map is a diffeomorphism only while the solver is accurate
        solver_error = float(deformation.solver_error(x0))
        edge = min(it.edge for it in items)
        if solver_error > 0.1 * edge:
            warnings.warn(f"ode: the solver's error at the template's vertices is {solver_error:.3g}, "
                          f"{solver_error / edge:.2g} of a mean edge: the solved map may fold the surface; give "
                          f"ode={{'steps': {2 * deformation.steps}}} or more (or an adaptive method)", GeomWarning,
                          stacklevel=2)
    settings = dict(loss=loss, kind=used_kind, scheme=scheme_name, n_projections=n_projections, steps=steps, lr=lr,
                    seed=seed if seed is not None or generator is not None else 0,
                    regularizers=weights, method=method, normalize=normalize, shared=shared, ode=dict(ode or {}),
                    kind_options=kind_options, n_samples=n_samples, warmup=warmup, batch_size=B if batched else None,
                    solver_error=solver_error, **info)
    faces = [it.faces for it in items]
    return DeformResult(vertices if batched else vertices[0], faces if batched else faces[0], history,
                        deformation if method == "ode" else None, settings, optimizer.state_dict())
