"""Scaling benchmark: the time of SW_2 value + gradient against N, L and d, next to its two floors.

For each point of three sweeps (N with L = 64, d = 3; L with N = 1e4, d = 3; d with N = 1e4, L = 256),
uniform clouds N = M in float32, gradient with respect to the first cloud:

* ``geom``: :func:`geom.sliced_wasserstein`, value and gradient (best of a few runs);
* ``sort floor``: ``np.sort`` of the two projected ``(L, N)`` matrices on one thread, the least a
  sort-based exact estimator does, projections not timed;
* ``projection``: the two products ``theta @ x.T`` (torch, every thread), what a sort cannot hide
  when ``d`` grows;
* the memory regime: per-slice gradients kept for backward (up to 512 MiB) or summed in the forward
  pass (beyond it), and the bytes that all projections at once would take.

The table shows where each regime takes over: the per-call fixed cost at small N L, the sort in the
middle, the projection at large d. Writes ``tools/results/scaling.{json,md,png}``.

    python tools/scaling_bench.py            # about 3 minutes on 2 cores
    python tools/scaling_bench.py --quick    # a smoke run with small sizes
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import numpy as np
import torch

import geom
from geom._files import atomic_write, write_text
from geom._ot1d.line import STORE_BYTES

ROOT = pathlib.Path(__file__).resolve().parents[1]

SWEEPS = {
    "N": dict(values=[1_000, 10_000, 100_000, 1_000_000, 10_000_000], fixed=dict(L=64, d=3)),
    "L": dict(values=[16, 64, 256, 1024, 4096], fixed=dict(N=10_000, d=3)),
    "d": dict(values=[2, 8, 32, 128, 512, 1024], fixed=dict(N=10_000, L=256)),
}
QUICK = {"N": [1_000, 10_000], "L": [16, 64], "d": [2, 32]}


def _best(fn, budget: float = 2.0, most: int = 5) -> float:
    """Best wall time of up to ``most`` runs after a warm-up, fewer when one run exceeds ``budget``."""
    fn()
    best = float("inf")
    for _ in range(most):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        if best > budget:
            break
    return best


def measure(N: int, L: int, d: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(N, d, generator=g), torch.randn(N, d, generator=g) * 0.5 + 1.0
    theta = torch.nn.functional.normalize(torch.randn(L, d, generator=g, dtype=torch.float64), dim=1).float()

    def value_grad():
        xr = x.clone().requires_grad_()
        geom.sliced_wasserstein(xr, y, directions=theta).backward()

    t_geom = _best(value_grad)
    t_proj = _best(lambda: (theta @ x.T, theta @ y.T))
    ux, uy = (theta @ x.T).numpy(), (theta @ y.T).numpy()
    t_sort = _best(lambda: (np.sort(ux, axis=1), np.sort(uy, axis=1)))
    per_slice_bytes = L * N * 4
    return dict(N=N, L=L, d=d, geom_s=t_geom, sort_floor_s=t_sort, projection_s=t_proj,
                geom_over_floor=t_geom / t_sort, projection_over_floor=t_proj / t_sort,
                ns_per_value=t_geom / (2 * N * L) * 1e9,
                gradients="kept" if per_slice_bytes <= STORE_BYTES else "summed in the forward pass",
                projections_bytes=2 * per_slice_bytes)


def _table(rows) -> list[str]:
    lines = ["| sweep | N | L | d | geom (s) | sort floor (s) | projection (s) | geom / floor | projection / floor "
             "| ns per projected value | per-slice gradients | all projections |",
             "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|---:|"]
    for r in rows:
        lines.append(f"| {r['sweep']} | {r['N']:,} | {r['L']:,} | {r['d']:,} | {r['geom_s']:.4f} | {r['sort_floor_s']:.4f} "
                     f"| {r['projection_s']:.4f} | {r['geom_over_floor']:.2f}x | {r['projection_over_floor']:.2f}x "
                     f"| {r['ns_per_value']:.1f} | {r['gradients']} | {r['projections_bytes'] / 2**20:,.0f} MiB |")
    return lines


def _plot(rows, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, sweep in zip(axes, SWEEPS):
        part = [r for r in rows if r["sweep"] == sweep]
        if not part:
            continue
        xs = [r[sweep] for r in part]
        for key, label, style in (("geom_s", "geom, value + gradient", "o-"),
                                  ("sort_floor_s", "sort floor (np.sort, 1 thread)", "s--"),
                                  ("projection_s", "projection (theta @ x.T)", "^:")):
            ax.loglog(xs, [r[key] for r in part], style, label=label)
        fixed = ", ".join(f"{k} = {v:,}" for k, v in SWEEPS[sweep]["fixed"].items())
        ax.set_xlabel(sweep)
        ax.set_title(f"time against {sweep} ({fixed})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "tools" / "results" / "scaling"),
                    help="path prefix of the .json, .md and .png files")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    points = [(sweep, value) for sweep, spec in SWEEPS.items()
              for value in (QUICK[sweep] if args.quick else spec["values"])]
    rows = []
    for sweep, value in tqdm(points, desc="scaling", unit="point"):
        size = dict(SWEEPS[sweep]["fixed"], **{sweep: value})
        rows.append(dict(sweep=sweep, **measure(size["N"], size["L"], size["d"])))
    lines = [f"SW_2 value + gradient, uniform N = M, float32, cpu ({platform.machine()}, {torch.get_num_threads()} "
             f"torch threads, torch {torch.__version__}); best of up to 5 runs", "", *_table(rows)]
    print("\n".join(lines))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(machine=platform.machine(), threads=torch.get_num_threads(), torch=torch.__version__,
                store_bytes=STORE_BYTES, quick=args.quick)
    write_text(out.with_suffix(".json"), json.dumps(dict(meta=meta, rows=rows), indent=2))
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    _plot(rows, out.with_suffix(".png"))
    print(f"\nwrote {out}.json, .md, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
