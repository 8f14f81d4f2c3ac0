"""Flow benchmark: every flow of :mod:`geom.flows` between bundled shapes, per scheme.

For each pair of shapes the project ships (``datasets/samples``: sphere -> torus, cube -> ellipsoid,
seeded surface samples of ``n`` points each), each method runs ``steps`` steps from the same start
with each of its slicing schemes, and the trajectory is scored with the same two yardsticks:

* ``SW_2`` to the target on 1024 fixed uniform directions (not the flow's own estimate), every
  ``every`` steps, relative to its start; the target is below 10% within the run;
* the exact ``W_2`` between the clouds by POT's ``emd2`` (network simplex), every ``5 * every``
  steps: it reaches 0 only when the particles lie on the target points, so it shows that the
  sliced distance falls for the right reason.

Methods and step sizes are those of ``geom flow``: ``sw`` (Adam on ``SW_2^2``), ``swf`` (the
nonparametric flow), ``mmd`` (sliced energy with momentum; uniform-direction schemes only). Prints a
markdown table and writes ``flows.{json,md}`` and ``flows.png`` (two panels per pair).

    python tools/flows_bench.py                  # writes tools/results/flows.{json,md,png}
    python tools/flows_bench.py --quick          # fewer points and steps: a smoke run
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import numpy as np
import torch

import geom
import geom.flows
from geom._files import save_figure, write_text
from geom.flows import mmd_flow
from geom_tools._common import exact_w2

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "datasets" / "samples"
PAIRS = [("sphere", "torus"), ("cube", "ellipsoid")]
# (method, scheme label, registered scheme, options)
RUNS = [
    ("sw", "mc", "mc", {}),
    ("sw", "rqsw", "qmc", {}),
    ("sw", "cv", "cv", {}),
    ("sw", "reservoir", "reservoir", {}),
    ("sw", "dsw", "dsw", {}),
    ("swf", "mc", "mc", {}),
    ("swf", "rqsw", "qmc", {}),
    ("swf", "reservoir", "reservoir", {}),
    ("mmd", "mc", "mc", {}),
    ("mmd", "rqsw", "qmc", {}),
]
STEP = {"sw": 0.02, "swf": 0.5, "mmd": 0.05}
"""Step size of each method: ``geom flow``'s defaults."""
TARGET = 0.1
"""SW_2 at the end of the run relative to its start."""


def load_pair(source: str, target: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded surface samples ``(n, 3)`` float64 of two bundled shapes."""
    clouds = [geom.measure(str(SAMPLES / f"{name}.ply"), kind="points", n_samples=n, seed=seed + k).support[0]
              for k, name in enumerate((source, target))]
    return clouds[0].double(), clouds[1].double()


def flow(method: str, scheme, x: torch.Tensor, y: torch.Tensor, *, steps: int, L: int, every: int, seed: int):
    """One flow; returns its trajectory ``(T, n, 3)``, the recorded steps and the wall time."""
    common = dict(steps=steps, n_projections=L, scheme=scheme, seed=seed, record_every=every)
    start = time.perf_counter()
    if method == "sw":
        r = geom.flows.sw_flow(x, y, lr=STEP[method], **common)
    elif method == "swf":
        r = geom.flows.swf(x, y, step_size=STEP[method], **common)
    else:
        r = mmd_flow(x, y, lr=STEP[method], **common)
    return r.trajectory, r.steps, time.perf_counter() - start


def run(*, n: int, steps: int, L: int, every: int, seed: int, pairs=PAIRS, runs=RUNS) -> dict:
    from geom.registry import get_scheme
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    yardstick = torch.randn(1024, 3, generator=g, dtype=torch.float64)
    yardstick /= yardstick.norm(dim=1, keepdim=True)
    rows = []
    bar = tqdm(total=len(pairs) * len(runs), desc="flows", unit="run", file=sys.stderr)
    for source, target in pairs:
        x, y = load_pair(source, target, n, seed)
        for method, label, name, options in runs:
            traj, at, seconds = flow(method, get_scheme(name)(**options), x, y, steps=steps, L=L, every=every,
                                     seed=seed)
            sw = [float(geom.sliced_wasserstein(f, y, directions=yardstick)) for f in traj]
            w2 = [(int(s), exact_w2(f, y)) for f, s in zip(traj, at) if s % (5 * every) == 0 or s == at[-1]]
            below = [int(s) for s, v in zip(at, sw) if v < TARGET * sw[0]]
            rows.append(dict(pair=f"{source} -> {target}", method=method, scheme=label, steps=[int(s) for s in at],
                             sw=sw, w2=w2, seconds=seconds, ratio=sw[-1] / sw[0],
                             first_below=below[0] if below else None))
            bar.update()
    bar.close()
    return dict(rows=rows, settings=dict(n=n, steps=steps, L=L, every=every, seed=seed, step_size=STEP,
                                         yardstick="SW_2 on 1024 fixed uniform directions"),
                machine=dict(platform=platform.platform(), torch=torch.__version__, threads=torch.get_num_threads()))


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"Flows between bundled shapes, {s['n']} points each, {s['steps']} steps, L = {s['L']} directions per step, "
        f"seed {s['seed']}. SW_2 on 1024 fixed directions; W_2 exact (POT emd2) on the whole clouds.",
        "",
        "| pair | method | scheme | SW_2 start | SW_2 end | end / start | first step < 10% | W_2 start | W_2 end | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['pair']} | {r['method']} | {r['scheme']} | {r['sw'][0]:.4f} | {r['sw'][-1]:.4f} | "
                     f"{r['ratio']:.3f} | {r['first_below'] if r['first_below'] is not None else '-'} | "
                     f"{r['w2'][0][1]:.4f} | {r['w2'][-1][1]:.4f} | {r['seconds']:.1f} |")
    lines += ["", *targets(result)]
    return "\n".join(lines) + "\n"


def targets(result: dict) -> list[str]:
    """The benchmark's targets, with the measured worst case and a verdict."""
    rows = result["rows"]
    worst = max(rows, key=lambda r: r["ratio"])
    met = sum(r["ratio"] < TARGET for r in rows)
    fell = [r for r in rows if r["w2"][-1][1] < r["w2"][0][1]]
    worst_w2 = max(rows, key=lambda r: r["w2"][-1][1] / r["w2"][0][1])
    return [
        f"SW_2 below {TARGET:.0%} of its start after {result['settings']['steps']} steps: {met} of {len(rows)} runs "
        f"(worst: {worst['method']} / {worst['scheme']} on {worst['pair']}, {worst['ratio']:.3f}; "
        f"{'met' if met == len(rows) else '**missed**'})",
        f"exact W_2 fell in {len(fell)} of {len(rows)} runs (least: {worst_w2['method']} / {worst_w2['scheme']} on "
        f"{worst_w2['pair']}, {worst_w2['w2'][0][1]:.3f} -> {worst_w2['w2'][-1][1]:.3f}; "
        f"{'met' if len(fell) == len(rows) else '**missed**'})",
    ]


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys(r["pair"] for r in result["rows"]))
    schemes = list(dict.fromkeys(r["scheme"] for r in result["rows"]))
    dash = {"sw": "-", "swf": "--", "mmd": ":"}
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(pairs), 2, figsize=(10.5, 3.6 * len(pairs)), squeeze=False)
    for row, pair in zip(axes, pairs):
        for r in (r for r in result["rows"] if r["pair"] == pair):
            style = dict(color=colors(schemes.index(r["scheme"]) % 10), ls=dash[r["method"]], lw=1.5)
            label = f"{r['method']} / {r['scheme']}"
            row[0].semilogy(r["steps"], np.array(r["sw"]) / r["sw"][0], label=label, **style)
            row[1].semilogy(*zip(*r["w2"]), marker=".", label=label, **style)
        row[0].axhline(TARGET, color="0.5", lw=0.8)
        row[0].set(title=f"{pair}: SW_2 / start", xlabel="step")
        row[1].set(title=f"{pair}: exact W_2 (emd2)", xlabel="step")
        for ax in row:
            ax.grid(True, which="both", alpha=0.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="points per cloud (default 1024; --quick: 256)")
    ap.add_argument("--steps", type=int, default=None, help="steps per flow (default 300; --quick: 60)")
    ap.add_argument("--L", type=int, default=64, help="directions per step")
    ap.add_argument("--every", type=int, default=None,
                    help="score SW_2 every this many steps, W_2 5x as rarely (default 10; --quick: 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smaller defaults: a smoke run")
    ap.add_argument("--out", default=str(ROOT / "tools" / "results"), help="folder for flows.{json,md,png}")
    args = ap.parse_args(argv)
    small = args.quick
    args.n = args.n or (256 if small else 1024)
    args.steps = args.steps or (60 if small else 300)
    args.every = args.every or (5 if small else 10)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run(n=args.n, steps=args.steps, L=args.L, every=args.every, seed=args.seed)
    table = markdown(result)
    print(table)
    write_text(out / "flows.md", table)
    write_text(out / "flows.json", json.dumps(result, indent=1) + "\n")
    plot(result, out / "flows.png")
    print(f"wrote {out}/flows.{{json,md,png}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
