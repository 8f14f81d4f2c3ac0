"""Deform a sphere mesh onto a target surface by gradient descent on the varifold sliced Wasserstein
distance, moving the vertices (the faces stay): the mesh-deformation use of the mesh measures.

The target is a generated cube by default, or any mesh file (``--target``) of genus 0 (a sphere
cannot become a torus by moving its vertices). Each step draws fresh
directions (``qmc`` by default) and moves the vertices with Adam, on the distance alone (no
smoothness term); ``--method ode`` moves them by a neural-ODE diffeomorphism instead (geom.deform). Writes the loss curve and snapshots of the mesh under ``--out``:

    python tools/mesh_flow.py                               # sphere -> cube, 300 steps
    python tools/mesh_flow.py --target bunny.off --steps 600 --kind mesh-discrete
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

import geom
from geom._files import save_figure, write_text

ROOT = pathlib.Path(__file__).resolve().parents[1]


def unit_scale(vertices: np.ndarray) -> np.ndarray:
    """Centre at the vertex mean and scale into the unit ball."""
    v = vertices - vertices.mean(0)
    return v / np.linalg.norm(v, axis=1).max()


def flow(source, target, *, kind="varifold", scheme="qmc", steps=300, lr=None, n_projections=128, seed=0,
         every=10, method="vertices"):
    """Adam on the source vertices (``method="vertices"``) or on a neural-ODE deformation (``"ode"``), by
    :func:`geom.deform.deform`; returns the final vertices, the loss curve ``[(step, SW_2 after step
    updates)]`` and snapshots every ``every`` steps."""
    from tqdm import tqdm

    from geom.deform import deform

    snapshots = {}
    with tqdm(total=steps, desc="mesh flow", unit="step", file=sys.stderr) as bar:
        def record(step, vertices, values):
            if step % every == 0 or step == steps:
                snapshots[step] = vertices.numpy().copy()
            bar.update(step > 0)

        result = deform(source, target, method=method, kind=kind, scheme=scheme, steps=steps, lr=lr,
                        n_projections=n_projections, seed=seed, callback=record)
    curve = [(step, float(sw)) for step, sw in enumerate(result.history["data"])]
    return result.vertices.numpy(), curve, snapshots


def plot(curve, snapshots, faces, target, path: pathlib.Path):
    import matplotlib.pyplot as plt

    steps = sorted(snapshots)
    shown = [steps[0], steps[len(steps) // 3], steps[2 * len(steps) // 3], steps[-1]]
    fig = plt.figure(figsize=(16, 4))
    ax = fig.add_subplot(1, 5, 1)
    s, sw = zip(*curve)
    ax.semilogy(s, sw)
    ax.set_xlabel("step")
    ax.set_ylabel("varifold SW_2 to the target")
    ax.grid(True, which="both", alpha=0.3)
    for k, step in enumerate(shown):
        ax = fig.add_subplot(1, 5, k + 2, projection="3d")
        ax.plot_trisurf(*snapshots[step].T, triangles=faces, color="tab:blue", alpha=0.6, linewidth=0.1)
        tv = target[0]
        ax.scatter(*tv[:: max(1, len(tv) // 400)].T, s=1, c="tab:red")
        ax.set_title(f"step {step}", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    from geom_datasets import shapes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=None, help="mesh file of the target (default: a generated cube)")
    ap.add_argument("--kind", default="varifold", choices=["varifold", "mesh-discrete", "mesh"])
    ap.add_argument("--scheme", default="qmc")
    ap.add_argument("--method", default="vertices", choices=["vertices", "ode"],
                    help="move free vertices, or the template by a neural-ODE diffeomorphism (geom.deform)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=None, help="Adam step size (default: deform's)")
    ap.add_argument("--n-projections", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "tools" / "results"), help="folder for the PNG and JSON")
    args = ap.parse_args(argv)
    source = shapes.sphere(radius=0.8, subdivisions=3)
    if args.target is None:
        tv, tf = shapes.cube()
        name = "cube"
    else:
        tv, tf = geom.io.read_mesh(args.target)
        name = pathlib.Path(args.target).stem
    target = (unit_scale(np.asarray(tv, dtype=np.float64)), np.asarray(tf))
    final, curve, snapshots = flow(source, target, kind=args.kind, scheme=args.scheme, steps=args.steps,
                                   lr=args.lr, n_projections=args.n_projections, seed=args.seed,
                                   method=args.method)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"mesh-flow-{name}-{args.kind}" + ("-ode" if args.method == "ode" else "")
    plot(curve, snapshots, source[1], target, out / f"{stem}.png")
    write_text(out / f"{stem}.json", json.dumps(dict(settings=vars(args), curve=curve), indent=1))
    print(f"SW_2 {curve[0][1]:.4f} -> {curve[-1][1]:.4f} in {args.steps} steps; wrote {out / stem}.png, .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
