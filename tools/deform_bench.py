"""Mesh deformation benchmark: the SW-varifold neural ODE against free vertices and PyTorch3D's
mesh-deformation recipe, on genus-0 targets.

A sphere template (``geom.deform.icosphere``) is moved onto each target by three methods, all with the
same number of steps:

- ``ode``: :func:`geom.deform.deform` with ``method="ode"``, ``loss="sw"``, ``kind="varifold"``,
  ``scheme="qmc"``: a neural-ODE diffeomorphism trained on the varifold sliced Wasserstein distance.
- ``vertices``: the same loss on free vertices (``method="vertices"``).
- ``anchor``: the recipe of PyTorch3D's mesh-deformation tutorial ("Deform a source mesh to form a
  target mesh using 3D loss functions"), reimplemented here with geom's pieces because PyTorch3D does
  not install here: free vertex offsets from the icosphere, SGD (``lr=1``, ``momentum=0.9``), each step
  the Chamfer distance between 5000 fresh surface samples of the moved mesh and of the target
  (``geom.chamfer_distance``, PyTorch3D's default reductions: the two mean squared nearest distances
  summed) plus ``1 * edge + 0.01 * normal + 0.1 * laplacian`` with PyTorch3D's definitions
  (:func:`p3d_edge_loss`, :func:`p3d_normal_consistency`, :func:`p3d_laplacian_smoothing`; geom's own
  regularisers in :mod:`geom.deform.losses` are scale-free variants and differ).

The targets: the bundled genus-0 shapes (ellipsoid, cube, capsule), a generated folded sphere
(:func:`folded_sphere`: a radial spherical-harmonic displacement with deep folds), and the genus-0 meshes
of ``../shared/data/meshes`` when present (arm, bunny_small, decimated-knight). Every target is first
centred at its vertex mean and scaled into the unit ball (``geom.measures.normalization(..., "sphere")``),
where the unit template sits. Per target and method: :func:`geom.deform.metrics.mesh_metrics` (Chamfer,
Hausdorff, the normal agreement and the normal smoothness, the self-intersecting face fraction; the
target scaled to a unit bounding-box diagonal) and the wall time. Then, in the same run, the time per step
(value and gradient) of the SW loss and of the exact Chamfer loss (KeOps where available) with 1e4 and
1e5 surface samples.

    python tools/deform_bench.py              # writes tools/results/deform.{json,md} and deform.png
    python tools/deform_bench.py --quick      # a smoke run (few steps, small meshes, two targets)
    python tools/deform_bench.py --targets cube folded --steps 400
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np
import torch

import geom
from geom._files import save_figure, write_text
from geom.deform.fit import LR, REGULARIZATION

ROOT = pathlib.Path(__file__).resolve().parents[1]
MESHES = ROOT.parent / "shared" / "data" / "meshes"
SHARED = {"arm": "arm.obj", "bunny": "bunny_small.off", "knight": "decimated-knight.obj"}
BUNDLED = ("ellipsoid", "cube", "capsule")
TARGETS = BUNDLED + ("folded",) + tuple(SHARED)
METHODS = ("ode", "vertices", "anchor")
METRICS = ("chamfer", "hausdorff", "normal_agreement", "normal_smoothness", "self_intersection_fraction",
           "self_intersecting_faces", "seconds", "seconds_per_step")
ANCHOR_WEIGHTS = dict(chamfer=1.0, edge=1.0, normal=0.01, laplacian=0.1)  # the tutorial's
ANCHOR_SAMPLES = 5000

FULL = dict(level=3, steps=300, n_projections=128, target_level=4, timing_sizes=(10_000, 100_000), metric_samples=4096)
QUICK = dict(level=1, steps=3, n_projections=16, target_level=2, timing_sizes=(1000,), metric_samples=256)


# --- the folded sphere -------------------------------------------------------------------------------------

def real_harmonic(l: int, m: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """The real spherical harmonic ``Y_lm`` (orthonormal on the sphere) at polar angle ``theta``, azimuth ``phi``."""
    from scipy.special import factorial, lpmv

    k = abs(m)
    norm = math.sqrt((2 * l + 1) / (4 * math.pi) * factorial(l - k) / factorial(l + k))
    p = lpmv(k, l, np.cos(theta))
    if m == 0:
        return norm * p
    return math.sqrt(2) * norm * p * (np.cos(k * phi) if m > 0 else np.sin(k * phi))


def folded_radius(directions: np.ndarray, *, amplitude: float = 0.6, degrees=(4, 6, 8), seed: int = 0) -> np.ndarray:
    """``r = 1 + amplitude * Y / max|Y|`` at unit ``directions (N, 3)``: ``Y`` a seeded random sum of real
    spherical harmonics, one per degree in ``degrees`` (orders and coefficients from
    ``numpy.random.default_rng(seed)``), scaled so that ``r`` spans ``[1 - amplitude, 1 + amplitude]``
    (``max|Y|`` over a fixed dense Fibonacci grid, so the scaling does not depend on ``directions``)."""
    rng = np.random.default_rng(seed)
    terms = [(l, int(rng.integers(-l, l + 1)), float(rng.choice([-1, 1]) * rng.uniform(0.6, 1.0))) for l in degrees]

    def y(d):
        theta = np.arccos(np.clip(d[:, 2], -1.0, 1.0))
        phi = np.arctan2(d[:, 1], d[:, 0])
        return sum(c * real_harmonic(l, m, theta, phi) for l, m, c in terms)

    n = 20000
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    a = i * math.pi * (3 - math.sqrt(5))
    grid = np.stack([np.sqrt(1 - z * z) * np.cos(a), np.sqrt(1 - z * z) * np.sin(a), z], 1)
    return 1.0 + amplitude * y(directions) / np.abs(y(grid)).max()


def folded_sphere(level: int = 4, *, amplitude: float = 0.6, degrees=(4, 6, 8), seed: int = 0):
    """A genus-0 mesh with deep folds: the icosphere of ``level`` with each vertex ``d`` moved to
    ``folded_radius(d) * d``; ``(vertices (V, 3) float64, faces (F, 3) int64)`` tensors."""
    from geom.deform import icosphere

    v, f = icosphere(level)
    r = folded_radius(v.numpy(), amplitude=amplitude, degrees=degrees, seed=seed)
    return v * torch.from_numpy(r)[:, None], f


# --- PyTorch3D's regularisers ---------------------------------------------------------------------------

def p3d_edge_loss(vertices: torch.Tensor, topo) -> torch.Tensor:
    """PyTorch3D's ``mesh_edge_loss(target_length=0)``: the mean over the unique edges of ``|e|^2``."""
    e = topo.edges.to(vertices.device)
    return (vertices[e[:, 0]] - vertices[e[:, 1]]).norm(dim=1).pow(2).mean()


def p3d_laplacian_smoothing(vertices: torch.Tensor, topo) -> torch.Tensor:
    """PyTorch3D's ``mesh_laplacian_smoothing(method="uniform")``: the mean over the vertices of the norm
    (not squared) of ``mean_{j ~ i} x_j - x_i`` (``-x_i`` for a vertex without edges, as its ``L - I``)."""
    e = topo.edges.to(vertices.device)
    degree = torch.bincount(e.reshape(-1), minlength=len(vertices)).to(vertices.dtype)
    total = torch.zeros_like(vertices).index_add(0, e[:, 0], vertices[e[:, 1]]).index_add(0, e[:, 1], vertices[e[:, 0]])
    inverse = torch.where(degree > 0, 1 / degree.clamp(min=1), 0.0)
    return (total * inverse[:, None] - vertices).norm(dim=1).mean()


def p3d_normal_consistency(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """PyTorch3D's ``mesh_normal_consistency``: for each edge ``(u, w)`` shared by two faces with opposite
    corners ``p`` and ``q``, ``1 - cos(n_p, n_q)`` with ``n_p = (w - u) x (p - u)`` and
    ``n_q = -(w - u) x (q - u)``, averaged over the edges of exactly two faces (every interior edge of a
    manifold mesh; PyTorch3D's extra pairs at non-manifold edges are left out); the cosine is
    ``torch.nn.functional.cosine_similarity``'s (``eps = 1e-6`` in PyTorch3D)."""
    f = faces.to(vertices.device)
    corner = torch.arange(3)
    u, w, p = f[:, corner], f[:, (corner + 1) % 3], f[:, (corner + 2) % 3]
    lo, hi, p = torch.minimum(u, w).reshape(-1), torch.maximum(u, w).reshape(-1), p.reshape(-1)
    key = lo * (int(f.max()) + 1) + hi
    order = torch.argsort(key, stable=True)
    lo, hi, p, key = lo[order], hi[order], p[order], key[order]
    _, counts = torch.unique_consecutive(key, return_counts=True)
    start = torch.cumsum(counts, 0) - counts
    first = start[counts == 2]
    if len(first) == 0:
        return vertices.new_zeros(())
    a, b = lo[first], hi[first]
    edge = vertices[b] - vertices[a]
    n_p = torch.linalg.cross(edge, vertices[p[first]] - vertices[a], dim=-1)
    n_q = -torch.linalg.cross(edge, vertices[p[first + 1]] - vertices[a], dim=-1)
    return (1 - torch.nn.functional.cosine_similarity(n_p, n_q, dim=1, eps=1e-6)).mean()


def surface_points(vertices: torch.Tensor, faces: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``(n, 3)`` area-uniform surface samples, differentiable in the vertices (``geom.measure`` kind mesh)."""
    return geom.measure((vertices, faces), kind="mesh", n_samples=n, seed=seed).support[0]


def anchor(template, target, *, steps: int, lr: float = 1.0, momentum: float = 0.9, n_samples: int = ANCHOR_SAMPLES,
           weights=None, seed: int = 0, callback=None) -> dict:
    """PyTorch3D's tutorial recipe on free vertices: ``{"vertices", "faces", "history"}``."""
    from geom.deform import MeshTopology

    w = dict(ANCHOR_WEIGHTS if weights is None else weights)
    v0, faces = template
    tv, tf = target
    topo = MeshTopology(faces)
    offsets = torch.zeros_like(v0, requires_grad=True)
    optimizer = torch.optim.SGD([offsets], lr=lr, momentum=momentum)
    history = {name: [] for name in ("loss", *w)}
    base = 1_000_003 * (seed + 1)
    for step in range(steps):
        optimizer.zero_grad()
        v = v0 + offsets
        terms = dict(chamfer=geom.chamfer_distance(surface_points(v, faces, n_samples, seed=base + 2 * step),
                                                   surface_points(tv, tf, n_samples, seed=base + 2 * step + 1)),
                     edge=p3d_edge_loss(v, topo), normal=p3d_normal_consistency(v, faces),
                     laplacian=p3d_laplacian_smoothing(v, topo))
        loss = sum(w[name] * terms[name] for name in w)
        for name in w:
            history[name].append(float(terms[name].detach()))
        history["loss"].append(float(loss.detach()))
        loss.backward()
        optimizer.step()
        if callback is not None:
            callback(step)
    return dict(vertices=(v0 + offsets).detach(), faces=faces, history=history)


# --- targets and runs ------------------------------------------------------------------------------------

def unit_ball(vertices: torch.Tensor) -> torch.Tensor:
    """Centred at the vertex mean, scaled into the unit ball (``geom.measures.normalization(..., "sphere")``)."""
    centre, scale = geom.measures.normalization(geom.measure(vertices), "sphere")
    return (vertices - centre[0].to(vertices.dtype)) / float(scale[0])


def load_targets(names, *, target_level: int = 4, meshes=MESHES) -> dict:
    """name -> ``(vertices (V, 3) float64, faces (F, 3) int64)`` normalised into the unit ball; shared meshes
    that are absent are skipped (and reported)."""
    from geom_datasets import shapes

    out = {}
    for name in names:
        if name in BUNDLED:
            v, f = getattr(shapes, name)()
        elif name == "folded":
            v, f = folded_sphere(target_level)
        elif name in SHARED:
            path = pathlib.Path(meshes) / SHARED[name]
            if not path.exists():
                print(f"  skipping {name}: {path} is absent", file=sys.stderr)
                continue
            from geom.io import read_mesh

            v, f = read_mesh(path)
        else:
            raise ValueError(f"target: expected one of {list(TARGETS)}, got {name!r}")
        v = torch.as_tensor(np.asarray(v), dtype=torch.float64)
        out[name] = (unit_ball(v), torch.as_tensor(np.asarray(f), dtype=torch.int64))
    return out


def run_method(method: str, template, target, *, steps: int, n_projections: int, seed: int = 0, bar=None):
    """``(vertices, faces, history, seconds)`` of one method on one target."""
    from geom.deform import deform

    tick = (lambda *a: bar.update(1)) if bar is not None else None
    start = time.perf_counter()
    if method == "anchor":
        r = anchor(template, target, steps=steps, seed=seed, callback=tick)
        v, f, history = r["vertices"], r["faces"], r["history"]
    else:
        def callback(step, vertices, values):
            if step > 0 and tick is not None:
                tick()

        r = deform(template, target, method=method, loss="sw", kind="varifold", scheme="qmc",
                   n_projections=n_projections, steps=steps, seed=seed, callback=callback)  # deform's defaults
        v, f = r.vertices, r.faces
        history = {name: [float(x) for x in values] for name, values in r.history.items()}
    return v, f, history, time.perf_counter() - start


def score(vertices, faces, target, *, n_samples: int) -> dict:
    """:func:`geom.deform.metrics.mesh_metrics` plus the number of self-intersecting faces."""
    from geom.deform.intersect import self_intersections
    from geom.deform.metrics import mesh_metrics

    m = mesh_metrics((vertices, faces), target, n_samples=n_samples, exact_samples=min(1024, n_samples))
    m["self_intersecting_faces"] = int(self_intersections(vertices, faces).mask.sum())
    m["n_faces"] = len(faces)
    return m


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call when ``repeats > 1``."""
    if repeats > 1:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def step_times(template, target, sizes, *, n_projections: int) -> list:
    """Seconds per step (value and gradient in the moved vertices) of ``SW_2^2`` between ``kind="mesh"``
    measures of ``n`` surface samples (``qmc`` directions) and of the exact Chamfer distance between ``n``
    surface samples (KeOps where it compiles, dense otherwise), for each ``n`` in ``sizes``."""
    from geom import _keops

    backend = "keops" if _keops.failure("nearest", 3, torch.float64, torch.device("cpu")) is None else "dense"
    v0, faces = template
    tv, tf = target
    rows = []
    for n in sizes:
        nu = geom.measure((tv, tf), kind="mesh", n_samples=n, seed=1)
        y = nu.support[0]
        scheme = geom.sliced.resolve_scheme("qmc")
        generator = torch.Generator().manual_seed(0)

        def sw():
            v = v0.clone().requires_grad_()
            mu = geom.measure((v, faces), kind="mesh", n_samples=n, seed=0)
            (geom.sliced_wasserstein(mu, nu, p=2, n_projections=n_projections, scheme=scheme,
                                     generator=generator) ** 2).backward()

        def chamfer():
            v = v0.clone().requires_grad_()
            geom.chamfer_distance(surface_points(v, faces, n, seed=0), y, backend=backend).backward()

        repeats = 3 if n <= 20_000 else 1
        t_sw, t_ch = _timed(sw, repeats), _timed(chamfer, repeats)
        rows.append(dict(n_samples=n, sw=t_sw, chamfer=t_ch, speedup=t_ch / t_sw, chamfer_backend=backend,
                         n_projections=n_projections, repeats=repeats))
        print(f"  step time n={n}: SW {t_sw:.3g} s, Chamfer ({backend}) {t_ch:.3g} s", file=sys.stderr)
    return rows


# --- report ------------------------------------------------------------------------------------------------

def verdicts(rows, timing) -> dict:
    """The issue's targets, met or missed, with the numbers they rest on."""
    by = {(r["target"], r["method"]): r for r in rows}
    names = list(dict.fromkeys(r["target"] for r in rows))
    out = {}
    faces = {t: by[(t, "ode")]["self_intersecting_faces"] for t in names if (t, "ode") in by}
    out["ode_no_self_intersection"] = dict(met=all(v == 0 for v in faces.values()), faces=faces)
    ratio, agree, smooth = {}, {}, {}
    for t in names:
        if (t, "ode") in by and (t, "anchor") in by:
            o, a = by[(t, "ode")], by[(t, "anchor")]
            ratio[t] = o["chamfer"] / a["chamfer"]
            agree[t] = (o["normal_agreement"], a["normal_agreement"])
            smooth[t] = (o["normal_smoothness"], a["normal_smoothness"])
    out["chamfer_within_1.5x_anchor"] = dict(met=bool(ratio) and all(r <= 1.5 for r in ratio.values()), ratio=ratio)
    out["normal_agreement_at_least_anchor"] = dict(met=bool(agree) and all(o >= a for o, a in agree.values()),
                                                   ode_anchor=agree)
    out["normal_smoothness_at_most_anchor"] = dict(met=bool(smooth) and all(o <= a for o, a in smooth.values()),
                                                   ode_anchor=smooth)
    big = [t for t in timing if t["n_samples"] >= 100_000]
    if big:
        out["sw_5x_faster_at_1e5"] = dict(met=big[0]["speedup"] >= 5, speedup=big[0]["speedup"])
    seconds = {t: by[(t, "ode")]["seconds"] for t in names if (t, "ode") in by}
    out["ode_under_5_min_per_target"] = dict(met=all(s <= 300 for s in seconds.values()), seconds=seconds)
    return out


def markdown(rows, timing, verdict, settings) -> str:
    out = [f"Template: icosphere level {settings['level']} ({settings['n_faces']} faces), {settings['steps']} steps "
           f"per method; SW: varifold, qmc, {settings['n_projections']} directions, the rest deform's defaults (Adam lr "
           f"{LR['ode']} on a time-dependent field with Fourier features, {LR['vertices']} target radii on free vertices; "
           f"regularisers {REGULARIZATION}); anchor: PyTorch3D's "
           "recipe (Chamfer of 5000 samples + 1 edge + 0.01 normal + 0.1 Laplacian, SGD lr 1 momentum 0.9). Metrics "
           f"after scaling the target to a unit bounding-box diagonal, {settings['metric_samples']} samples "
           "(Chamfer: squared distances; normal agreement: higher is better; normal smoothness, PyTorch3D's "
           "normal consistency: lower is smoother):", "",
           "| target | method | Chamfer | Hausdorff | normal agreement | normal smoothness | self-int. faces | "
           "self-int. fraction | wall s | ms / step |",
           "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['target']} | {r['method']} | {r['chamfer']:.2e} | {r['hausdorff']:.3f} | "
                   f"{r['normal_agreement']:.3f} | {r['normal_smoothness']:.3f} | {r['self_intersecting_faces']} | "
                   f"{r['self_intersection_fraction']:.4f} | {r['seconds']:.1f} | {1000 * r['seconds_per_step']:.0f} |")
    if timing:
        out += ["", "Time per step (value and gradient in the template's vertices), same run:", "",
                "| surface samples | SW (mesh, qmc) s | exact Chamfer s | backend | Chamfer / SW |",
                "|---:|---:|---:|:---|---:|"]
        for t in timing:
            out.append(f"| {t['n_samples']:.0e} | {t['sw']:.3f} | {t['chamfer']:.3f} | {t['chamfer_backend']} | "
                       f"{t['speedup']:.1f} |")
    out += ["", "Targets of the issue:", ""]
    for name, v in verdict.items():
        details = {k: val for k, val in v.items() if k != "met"}
        out.append(f"- {name}: {'met' if v['met'] else 'missed'} ({_compact(details)})")
    return "\n".join(out) + "\n"


def _compact(obj) -> str:
    if isinstance(obj, dict):
        return ", ".join(f"{k}: {_compact(v)}" for k, v in obj.items())
    if isinstance(obj, (tuple, list)):
        return "/".join(_compact(v) for v in obj)
    if isinstance(obj, float):
        return f"{obj:.3g}"
    return str(obj)


def plot(results: dict, targets: dict, path: pathlib.Path) -> None:
    """Rows: targets; columns: the target, then each method's result; self-intersecting faces in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from geom.deform.intersect import self_intersections

    names = list(targets)
    columns = ["target", *METHODS]
    fig = plt.figure(figsize=(2.2 * len(columns), 2.2 * len(names)))
    light = np.array([0.3, 0.4, 0.85]) / np.linalg.norm([0.3, 0.4, 0.85])
    for i, name in enumerate(names):
        for j, col in enumerate(columns):
            v, f = targets[name] if col == "target" else results[(name, col)]
            v, f = np.asarray(v, dtype=float), np.asarray(f)
            ax = fig.add_subplot(len(names), len(columns), i * len(columns) + j + 1, projection="3d")
            tri = v[f]
            n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
            shade = 0.35 + 0.65 * np.abs(n @ light)
            colors = np.stack([0.55 * shade, 0.7 * shade, 0.9 * shade, np.ones_like(shade)], 1)
            bad = self_intersections(v, f).mask
            colors[bad] = [0.9, 0.05, 0.05, 1.0]
            ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, edgecolors="none"))
            ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
            ax.set_box_aspect((1, 1, 1))
            ax.view_init(elev=20, azim=35)
            ax.set_axis_off()
            title = col if col == "target" else f"{col} ({int(bad.sum())} red)"
            ax.set_title(f"{name}: {title}" if j == 0 else title, fontsize=7)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.97, wspace=0, hspace=0.08)
    save_figure(fig, path, dpi=72)
    plt.close(fig)


def run(out: pathlib.Path, *, targets=TARGETS, steps: int, level: int, n_projections: int, target_level: int,
        timing_sizes, metric_samples: int, meshes=MESHES, figure: bool = True, threads: int = 1) -> str:
    """The benchmark; writes ``out`` (JSON), the Markdown next to it (``.md``) and the figure (``.png``)."""
    from tqdm import tqdm

    from geom.deform import icosphere

    torch.set_num_threads(threads)  # more threads than free cores slow these small ops down several times
    chosen = load_targets(targets, target_level=target_level, meshes=meshes)
    template = icosphere(level)
    settings = dict(level=level, n_faces=len(template[1]), steps=steps, n_projections=n_projections,
                    target_level=target_level, metric_samples=metric_samples, anchor_weights=ANCHOR_WEIGHTS,
                    anchor_samples=ANCHOR_SAMPLES, lr=LR, regularizers=REGULARIZATION, anchor_lr=1.0, anchor_momentum=0.9, threads=threads,
                    targets=list(chosen), torch=torch.__version__)
    print(f"deform bench: {len(chosen)} targets, {len(METHODS)} methods, {steps} steps, template level {level}",
          file=sys.stderr)
    rows, results = [], {}
    with tqdm(total=len(chosen) * len(METHODS) * steps, desc="deform", unit="step", file=sys.stderr) as bar:
        for name, target in chosen.items():
            for method in METHODS:
                bar.set_postfix_str(f"{name} {method}")
                v, f, history, seconds = run_method(method, template, target, steps=steps,
                                                    n_projections=n_projections, bar=bar)
                results[(name, method)] = (v, f)
                m = score(v, f, target, n_samples=metric_samples)
                rows.append(dict(target=name, method=method, seconds=seconds, seconds_per_step=seconds / steps,
                                 final_loss=history["loss"][-1], **m))
    timing = step_times(template, chosen["folded"] if "folded" in chosen else next(iter(chosen.values())),
                        timing_sizes, n_projections=n_projections) if timing_sizes else []
    verdict = verdicts(rows, timing)
    table = markdown(rows, timing, verdict, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".md"), table)
    write_text(out, json.dumps(dict(rows=rows, timing=timing, verdicts=verdict, settings=settings), indent=1))
    if figure:
        plot(results, chosen, out.with_suffix(".png"))
    print(f"wrote {out}, {out.with_suffix('.md').name}" + (f", {out.with_suffix('.png').name}" if figure else ""),
          file=sys.stderr)
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: few steps, small meshes, two targets")
    ap.add_argument("--steps", type=int, default=None, help=f"steps per method (default {FULL['steps']})")
    ap.add_argument("--targets", nargs="+", choices=TARGETS, default=None, help="targets (default all present)")
    ap.add_argument("--level", type=int, default=None,
                    help=f"icosphere level of the template (default {FULL['level']}; 4 is the tutorial's)")
    ap.add_argument("--out", default=str(ROOT / "tools" / "results" / "deform.json"),
                    help="JSON file to write (the Markdown and the figure go next to it)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    ap.add_argument("--no-figure", action="store_true", help="skip the figure")
    args = ap.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        ap.error("--steps: expected at least 1")
    if args.level is not None and not 0 <= args.level <= 6:
        ap.error("--level: expected 0 to 6")
    settings = {**(QUICK if args.quick else FULL), **({} if args.steps is None else {"steps": args.steps}),
                **({} if args.level is None else {"level": args.level})}
    targets = args.targets or (("ellipsoid", "folded") if args.quick else TARGETS)
    print(run(pathlib.Path(args.out), targets=targets, figure=not args.no_figure, threads=args.threads, **settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
