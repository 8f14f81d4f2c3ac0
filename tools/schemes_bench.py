"""Slicing-scheme benchmark: error against the number of directions, variance reduction, stderr
calibration, time per call, and gradient flows.

The error study follows the 3-D experiment of the quasi-Monte Carlo sliced Wasserstein paper: for
shape pairs (surface samples of shapes the project generates, plus the real meshes of
``../shared/data/meshes`` when present), every unbiased scheme estimates ``SW_2^2`` with
``L in {10, 30, 100, 300, 1000}`` directions over many seeds; the reference is a Fibonacci-lattice
quadrature with 2^17 directions (its own error is printed: the gap to the 2^16-point rule). The table
gives the mean absolute error and the RMSE; a log-log plot shows RMSE against L.

Then: the variance of ``SW_2^2`` estimates of ``cv`` against ``mc`` on translated and on centred
pairs; whether the standard error ``mc`` reports matches the spread over seeds; time per call at
N = 1e5 (ratio to ``mc`` in the same run); and gradient flows that move one cloud onto another with
each scheme, scored by the exact ``W_2`` (POT's ``emd2``) on subsamples along the way.

    python tools/schemes_bench.py                # writes tools/results/schemes.{json,md} and two PNGs
    python tools/schemes_bench.py --quick        # fewer seeds, sizes and steps: a smoke run
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
from geom.io import sample_surface
from geom.registry import get_scheme
from geom_tools._common import exact_w2

ROOT = pathlib.Path(__file__).resolve().parents[1]
MESHES = ROOT.parent / "shared" / "data" / "meshes"

# (label, registered scheme, options). Unbiased estimators of SW_2^2 take part in the error study.
UNBIASED = [
    ("mc", "mc", {}),
    ("rqsw gaussian", "qmc", {"point_set": "gaussian"}),
    ("rqsw equal_area", "qmc", {"point_set": "equal_area"}),
    ("rqsw spiral", "qmc", {"point_set": "spiral"}),
    ("rqsw max_distance", "qmc", {"point_set": "max_distance"}),
    ("rqsw coulomb", "qmc", {"point_set": "coulomb"}),
    ("rqsw coulomb, R=2", "qmc", {"point_set": "coulomb", "n_randomizations": 2}),
    ("cv", "cv", {}),
    ("cv upper", "cv", {"variate": "upper"}),
    ("cv + rqsw", "cv", {"base": "qmc"}),
    ("reservoir", "reservoir", {}),
]
DETERMINISTIC = [  # QSW: no randomisation, the same error for every seed
    ("qsw spiral", "qmc", {"point_set": "spiral", "randomize": False}),
    ("qsw coulomb", "qmc", {"point_set": "coulomb", "randomize": False}),
]
LEARNED = [("max", "max", {}), ("dsw", "dsw", {}), ("vmf-dsw", "vmf-dsw", {}), ("aswd", "aswd", {})]
VARIANCE = ["mc", "cv", "cv upper", "cv + rqsw", "rqsw coulomb, R=2"]
FLOWS = ["mc", "rqsw coulomb", "cv", "reservoir", "max", "dsw", "vmf-dsw", "aswd"]


def available(configs):
    """The configurations whose scheme is registered here (a missing plugin is reported, not faked)."""
    known = set(geom.schemes())
    kept = [c for c in configs if c[1] in known]
    for label, name, _ in configs:
        if name not in known:
            print(f"  skipping {label}: scheme {name!r} is not installed", file=sys.stderr)
    return kept


def fibonacci_directions(n: int) -> torch.Tensor:
    """``(n, 3)`` Fibonacci lattice on the sphere: equal-area quadrature nodes (the reference rule)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = torch.sqrt(1.0 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], 1)


def shape_pairs(n: int, seed: int = 0, meshes: pathlib.Path = MESHES):
    """``[(name, x (n, 3), y (n, 3))]`` float64 surface samples: generated shapes, then real meshes."""
    from geom_datasets import shapes

    def cloud(mesh, k, shift=(0.0, 0.0, 0.0)):
        return torch.from_numpy(sample_surface(*mesh, n, seed=seed + k)).double() + torch.tensor(shift)

    pairs = [
        ("sphere / torus", cloud(shapes.sphere(), 1), cloud(shapes.torus(), 2)),
        ("cube / ellipsoid", cloud(shapes.cube(), 3), cloud(shapes.ellipsoid(), 4)),
        ("torus / shifted torus", cloud(shapes.torus(), 5), cloud(shapes.torus(), 6, (0.6, -0.3, 0.2))),
        ("cube / shifted ellipsoid", cloud(shapes.cube(), 7), cloud(shapes.ellipsoid(), 8, (-0.4, 0.5, 0.3))),
    ]
    if meshes.is_dir():
        for a, b in [("bunny_small.off", "hemisphere.obj"), ("arm.obj", "decimated-knight.obj")]:
            if (meshes / a).exists() and (meshes / b).exists():
                x, y = (geom.measure(meshes / f, n_samples=n, seed=seed + k).support[0].double() for k, f in enumerate((a, b)))
                x, y = (t - t.mean(0) for t in (x, y))  # real meshes come in their own frames: centre them
                scale = max(x.norm(dim=1).max(), y.norm(dim=1).max())
                pairs.append((f"{a} / {b}", x / scale, y / scale))
    return pairs


def sw2_squared(x, y, *, scheme="mc", seed=None, n_projections=None, directions=None, **options):
    r = geom.sliced_wasserstein(x, y, p=2, scheme=scheme, seed=seed, n_projections=n_projections or 1,
                                directions=directions, return_result=True, **options)
    return float(r.value) ** 2, float(r.stderr), float(r.value)


def reference(x, y, n: int = 1 << 17):
    fine = sw2_squared(x, y, directions=fibonacci_directions(n))[0]
    coarse = sw2_squared(x, y, directions=fibonacci_directions(n // 2))[0]
    return fine, abs(fine - coarse)


def error_study(pairs, configs, Ls, seeds, references):
    """Error of each configuration's SW_2^2 against ``references[pair] = (value, its own error)``."""
    from tqdm import tqdm

    rows = []
    for (pair, x, y), (label, name, options) in tqdm([(p, c) for p in pairs for c in configs], desc="errors",
                                                    unit="scheme", file=sys.stderr):
        ref, ref_err = references[pair]
        for L in Ls:
            # one instance for all seeds: the reservoir keeps its state along the calls on this pair,
            # as in a loop; the other schemes are stateless (or only cache their point sets)
            scheme = get_scheme(name)(**options)
            est = np.array([sw2_squared(x, y, scheme=scheme, seed=s, n_projections=L)[0] for s in seeds])
            err = est - ref
            rows.append(dict(pair=pair, scheme=label, L=L, reference=ref, reference_error=ref_err,
                             mean_abs_error=float(np.abs(err).mean()), rmse=float(np.sqrt((err**2).mean())),
                             relative_rmse=float(np.sqrt((err**2).mean()) / ref), seeds=len(seeds)))
    return rows


def variance_study(pairs, L, seeds, configs):
    """Per scheme of VARIANCE, over seeds: the variance of SW_2^2 and its reduction against mc, and
    the reported stderr of SW_2 (root mean square over seeds) against the spread of SW_2."""
    rows = []
    for pair, x, y in pairs:
        apart = "shifted" in pair  # the others are centred (up to sampling noise), the real meshes by us
        for centred in (False, True) if apart else (True,):
            xs, ys = (x - x.mean(0), y - y.mean(0)) if centred else (x, y)
            row = dict(pair=pair, centred=centred, L=L, seeds=len(seeds), schemes={})
            for label, name, options in configs:
                scheme = get_scheme(name)(**options)
                est = np.array([sw2_squared(xs, ys, scheme=scheme, seed=s, n_projections=L) for s in seeds])
                row["schemes"][label] = dict(variance=float(est[:, 0].var(ddof=1)),
                                             stderr_rms=float(np.sqrt(np.mean(est[:, 1] ** 2))),
                                             spread=float(est[:, 2].std(ddof=1)))
            for r in row["schemes"].values():
                r["reduction"] = row["schemes"]["mc"]["variance"] / r["variance"]
                r["stderr_over_spread"] = r["stderr_rms"] / r["spread"]
            rows.append(row)
    return rows


def timing(configs, n: int, L: int, reps: int = 5):
    """Seconds per value + gradient call at N = M = n: the first call of a fresh instance (point
    sets optimised, reservoirs empty), then the best of ``reps`` later calls, each paired with a call
    of mc (A/B, so that drifts of the machine hit both) for the ratio."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) + 0.5  # float32, as users' clouds

    def call(scheme):
        xr = x.clone().requires_grad_()
        geom.sliced_wasserstein(xr, y, scheme=scheme, n_projections=L, seed=1).backward()

    mc = get_scheme("mc")()
    call(mc)  # warm-up
    rows = []
    for label, name, options in configs:
        scheme = get_scheme(name)(**options)
        first = _clock(lambda: call(scheme))
        pairs = [(_clock(lambda: call(scheme)), _clock(lambda: call(mc))) for _ in range(reps)]
        best, best_mc = min(p[0] for p in pairs), min(p[1] for p in pairs)
        rows.append(dict(scheme=label, n=n, L=L, first_call=first, seconds=best, mc_seconds=best_mc,
                         over_mc=best / best_mc))
    return rows


def _clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flows(configs, n: int, steps: int, L: int, lr: float, every: int):
    """Move a sphere sample onto a torus sample (n points each) by gradient descent on SW_2^2.

    One scheme instance per flow (stateful schemes keep their state across steps), a fresh seed per
    step, the same start and step size for all. Every ``every`` steps the exact W_2 between the whole
    clouds by POT's ``emd2``, which is 0 only when the flow has reached the target points.
    """
    from geom_datasets import shapes
    from tqdm import tqdm

    x0 = torch.from_numpy(sample_surface(*shapes.sphere(), n, seed=10)).double() * 0.6
    y = torch.from_numpy(sample_surface(*shapes.torus(), n, seed=11)).double()

    curves = {}
    for label, name, options in tqdm(configs, desc="flows", unit="scheme", file=sys.stderr):
        scheme = get_scheme(name)(**options)
        x = x0.clone().requires_grad_()
        curve = [(0, exact_w2(x.detach(), y))]
        for step in range(1, steps + 1):
            value = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=L, seed=step)
            (grad,) = torch.autograd.grad(value**2, x)
            with torch.no_grad():
                x -= lr * n * grad  # SW_2^2 gradients carry a 1/N: step per point
            if step % every == 0 or step == steps:
                curve.append((step, exact_w2(x.detach(), y)))
        curves[label] = curve
    return curves


def _style(label: str) -> dict:
    """Families share a line style: mc black, rqsw solid, cv dashed, qsw dotted, the rest dash-dot."""
    if label == "mc":
        return dict(color="black", lw=2.2, ls="-")
    family = label.split()[0]
    return dict(ls={"rqsw": "-", "cv": "--", "qsw": ":"}.get(family, "-."), lw=1.4)


def plot_errors(rows, path: pathlib.Path):
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    labels = list(dict.fromkeys(r["scheme"] for r in rows))
    cols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows + 0.9), squeeze=False)
    colors = plt.get_cmap("tab20")
    for ax, pair in zip(axes.flat, pairs):
        for k, label in enumerate(labels):
            pts = [(r["L"], r["relative_rmse"]) for r in rows if r["pair"] == pair and r["scheme"] == label]
            style = _style(label)
            style.setdefault("color", colors(k % 20))
            ax.loglog(*zip(*pts), marker="o", ms=3, label=label, **style)
        ax.set_title(pair, fontsize=9)
        ax.set_xlabel("L (directions)")
        ax.set_ylabel("RMSE of SW_2^2 / SW_2^2")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.flat[len(pairs):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(7, len(names)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.9 / (3.6 * nrows + 0.9) + 0.02, 1, 1))
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_flows(curves, path: pathlib.Path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    colors = plt.get_cmap("tab10")
    for k, (label, curve) in enumerate(curves.items()):
        style = _style(label)
        style.setdefault("color", colors(k % 10))
        ax.semilogy(*zip(*curve), marker=".", label=label, **style)
    ax.set_xlabel("step")
    ax.set_ylabel("exact W_2 to the target (emd2)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def targets(errors, variance, times, L: int) -> list[str]:
    """The benchmark targets, each with the measured worst case and whether it is met."""
    def verdict(ok):
        return "met" if ok else "**missed**"

    at = {(r["pair"], r["scheme"]): r["rmse"] for r in errors if r["L"] == L}
    lines = []
    for label in ("rqsw coulomb", "rqsw spiral"):
        ratios = [at[p, label] / at[p, "mc"] for p, s in at if s == label]
        if ratios:
            lines.append(f"RMSE of {label} / mc at L = {L}, worst pair: {max(ratios):.3f} (target <= 0.05: "
                         f"{verdict(max(ratios) <= 0.05)})")
    ratios = [at[p, "rqsw coulomb, R=2"] / at[p, "mc"] for p, s in at if s == "rqsw coulomb, R=2"]
    if ratios:
        lines.append(f"with an error bar (R = 2 randomisations), worst pair: {max(ratios):.3f} (no target)")
    moved = [r["schemes"]["cv"]["reduction"] for r in variance if not r["centred"] and "cv" in r["schemes"]]  # shifted
    if moved:
        lines.append(f"variance reduction of cv on the translated pairs: {min(moved):.3g}x and more (target >= 4x: "
                     f"{verdict(min(moved) >= 4)}); on the centred pairs: "
                     + ", ".join(f"{r['schemes']['cv']['reduction']:.2f}x" for r in variance if r["centred"]))
    over = {r["scheme"]: r["over_mc"] for r in times}
    for label in ("rqsw coulomb", "cv"):
        if label in over:
            lines.append(f"time of {label} / mc per call: {over[label]:.2f}x (target <= 1.10x: {verdict(over[label] <= 1.1)})")
    worst = max(abs(r["schemes"]["mc"]["stderr_over_spread"] - 1) for r in variance)
    lines.append(f"mc stderr / spread over seeds, worst pair: off by {100 * worst:.0f}% (target within 30%: "
                 f"{verdict(worst <= 0.3)})")
    return lines


def markdown(errors, variance, times, curves, flow, L_table: int) -> str:
    out = [f"RMSE of SW_2^2 at L = {L_table}, relative to the reference value (and ratio to mc's RMSE):", ""]
    pairs = list(dict.fromkeys(r["pair"] for r in errors))
    labels = list(dict.fromkeys(r["scheme"] for r in errors))
    out.append("| scheme | " + " | ".join(pairs) + " |")
    out.append("|:---|" + "---:|" * len(pairs))
    at = {(r["pair"], r["scheme"]): r for r in errors if r["L"] == L_table}
    for label in labels:
        cells = []
        for pair in pairs:
            r, mc = at.get((pair, label)), at.get((pair, "mc"))
            ratio = "" if mc is None or label == "mc" else f" ({r['rmse'] / mc['rmse']:.2g}x)"
            cells.append(f"{r['relative_rmse']:.2e}{ratio}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    labels = [k for k in variance[0]["schemes"] if k != "mc"]
    out += ["", f"Variance of SW_2^2 over {variance[0]['seeds']} seeds at L = {variance[0]['L']}, mc's, and its "
            "reduction by each scheme (mc / scheme):", "",
            "| pair | centred | var mc | " + " | ".join(labels) + " |", "|:---|:---|---:|" + "---:|" * len(labels)]
    for r in variance:
        sc = r["schemes"]
        out.append(f"| {r['pair']} | {'yes' if r['centred'] else 'no'} | {sc['mc']['variance']:.2e} | "
                   + " | ".join(f"{sc[v]['reduction']:.3g}x" for v in labels) + " |")
    reporting = [k for k in variance[0]["schemes"] if all(math.isfinite(r["schemes"][k]["stderr_rms"]) for r in variance)]
    out += ["", "The reported standard error of SW_2 (root mean square over the seeds) over the spread of SW_2 "
            "over the seeds (1 = calibrated; schemes that report one):", "",
            "| pair | centred | " + " | ".join(reporting) + " |", "|:---|:---|" + "---:|" * len(reporting)]
    for r in variance:
        out.append(f"| {r['pair']} | {'yes' if r['centred'] else 'no'} | "
                   + " | ".join(f"{r['schemes'][v]['stderr_over_spread']:.2f}" for v in reporting) + " |")
    out += ["", f"Value + gradient, N = M = {times[0]['n']:,}, L = {times[0]['L']}, float32: first call of a fresh "
            "instance, then the best of 5 later calls, each paired with a call of mc:", "",
            "| scheme | first call (s) | seconds | mc (s) | / mc |", "|:---|---:|---:|---:|---:|"]
    out += [f"| {r['scheme']} | {r['first_call']:.3f} | {r['seconds']:.3f} | {r['mc_seconds']:.3f} | {r['over_mc']:.2f}x |"
            for r in times]
    out += ["", "Targets, from the numbers above:", ""] + [f"- {line}" for line in targets(errors, variance, times, L_table)]
    if curves:
        mid = len(next(iter(curves.values()))) // 2
        out += ["", f"Gradient flows, a sphere sample onto a torus sample ({flow['n']} points each, L = {flow['L']} "
                f"directions per step, step {flow['lr']} per point): exact W_2 between the clouds (emd2):", "",
                f"| scheme | start | step {next(iter(curves.values()))[mid][0]} | step {flow['steps']} |",
                "|:---|---:|---:|---:|"]
        out += [f"| {k} | {c[0][1]:.4f} | {c[mid][1]:.4f} | {c[-1][1]:.4f} |" for k, c in curves.items()]
    return "\n".join(out) + "\n"


FULL = dict(n_points=2048, Ls=[10, 30, 100, 300, 1000], seeds=20, variance_seeds=200, reference_n=1 << 17,
            timing_n=100_000, flow=dict(n=1000, steps=300, L=10, lr=0.5, every=20))
QUICK = dict(n_points=512, Ls=[10, 30, 100], seeds=5, variance_seeds=10, reference_n=1 << 17,
             timing_n=10_000, flow=dict(n=500, steps=20, L=10, lr=0.5, every=5))


def run(out: pathlib.Path, *, n_points, Ls, seeds, variance_seeds, reference_n, timing_n, flow, meshes=MESHES,
        configs=None) -> str:
    """Every study at the given sizes; writes the tables and plots into ``out`` and returns the markdown.

    ``configs``: ``(unbiased, deterministic, learned)`` lists of ``(label, scheme, options)``, default
    the module's; the variance study and the flows take the labels of VARIANCE and FLOWS among them.
    """
    unbiased, deterministic, learned = configs or (UNBIASED, DETERMINISTIC, LEARNED)
    out.mkdir(parents=True, exist_ok=True)
    pairs = shape_pairs(n_points, meshes=meshes)
    print(f"error study: {len(pairs)} pairs, L in {Ls}, {seeds} seeds", file=sys.stderr)
    references = {}
    for pair, x, y in pairs:
        references[pair] = reference(x, y, reference_n)
        print(f"  {pair}: SW_2^2 = {references[pair][0]:.6g} (reference rule error ~{references[pair][1]:.1g})",
              file=sys.stderr)
    errors = error_study(pairs, available(unbiased), Ls, range(seeds), references)
    errors += error_study(pairs, available(deterministic), Ls, range(1), references)
    variance = variance_study(pairs, 100, range(variance_seeds), [c for c in available(unbiased) if c[0] in VARIANCE])
    everything = available(unbiased + deterministic + learned)
    times = timing(everything, timing_n, 100)
    curves = flows([c for c in everything if c[0] in FLOWS], **flow)
    plot_errors(errors, out / "schemes-error.png")
    plot_flows(curves, out / "schemes-flows.png")
    table = markdown(errors, variance, times, curves, flow, 100 if 100 in Ls else Ls[-1])
    write_text(out / "schemes.md", table)
    write_text(out / "schemes.json", json.dumps(dict(errors=errors, variance=variance, times=times, flows=curves,
                                                      flow_settings=flow, torch=torch.__version__), indent=1))
    print(f"wrote {out}/schemes.{{json,md}}, schemes-error.png, schemes-flows.png", file=sys.stderr)
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds, sizes and steps (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "tools" / "results"), help="folder for JSON, markdown and PNGs")
    args = ap.parse_args(argv)
    print(run(pathlib.Path(args.out), **(QUICK if args.quick else FULL)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
