"""Learned slicing schemes: the seed-to-seed spread of their values against the standard error they report.

``max``, ``dsw``, ``vmf-dsw`` and ``aswd`` learn their slices from the data before estimating. The
standard error they report is *conditional on the learned slices*: the Monte Carlo error of the L
slices drawn given the learned distribution or network (``nan`` for ``max``, a maximum), which leaves
out how much the learning itself varies with the seed. This benchmark measures that variation: on
3-D shape pairs (surface samples of the shapes the project generates, as in
:mod:`geom_tools.schemes_bench`), every scheme runs once per seed, each time as a *fresh instance*
(so every seed learns from scratch), and the table gives per scheme and pair the mean over the seeds,
their standard deviation (the spread), the range, the median reported stderr and spread / stderr.

For ``max`` (with one start and with its default number of starts) it also gives a reference: the
largest per-slice ``W_2`` over a Fibonacci lattice of directions on S^2, refined by a short ascent
(the ``max`` scheme itself, warm-started at the best few lattice directions with a smaller step),
and how many seeds land within 1% of it.

    python tools/learned_bench.py                 # writes tools/results/learned.{json,md}
    python tools/learned_bench.py --quick         # fewer seeds and pairs: a smoke run
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
from geom._files import write_text
from geom.registry import get_scheme
from geom.sliced import slice_distances
from geom_tools.schemes_bench import MESHES, ROOT, available, fibonacci_directions, shape_pairs

# (label, registered scheme, options). Every seed gets a fresh instance of the scheme.
CONFIGS = [
    ("max, n_starts=1", "max", {"n_starts": 1}),
    ("max", "max", {}),  # the default number of starts
    ("dsw", "dsw", {}),
    ("vmf-dsw", "vmf-dsw", {}),
    ("aswd", "aswd", {}),
]
WITHIN = 0.01
"""A ``max`` value counts as having found the maximum when it is within this fraction of the reference."""


def n_projections(name: str, L: int) -> int:
    """``max`` slices along one learned direction: more rows would only repeat the same sort."""
    return 1 if name == "max" else L


def run_seed(x, y, name: str, options: dict, seed: int, L: int) -> tuple[float, float]:
    """``(SW_2, reported stderr)`` of a fresh instance of scheme ``name`` learning from scratch with ``seed``."""
    r = geom.sliced_wasserstein(x, y, p=2, scheme=get_scheme(name)(**options), n_projections=n_projections(name, L),
                                seed=seed, return_result=True)
    return float(r.value), float(r.stderr)


def summary(values, stderrs) -> dict:
    """Mean, spread (standard deviation over the seeds, ddof=1), range, median stderr and their ratio."""
    v, s = np.asarray(values, dtype=float), np.asarray(stderrs, dtype=float)
    spread = float(v.std(ddof=1)) if v.size > 1 else math.nan
    median = float(np.median(s)) if np.isfinite(s).any() else math.nan  # max reports nan for every seed
    ratio = spread / median if math.isfinite(median) and median > 0 else math.nan
    return dict(mean=float(v.mean()), spread=spread, min=float(v.min()), max=float(v.max()),
                median_stderr=median, spread_over_stderr=ratio)


def grid_distances(x, y, directions: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``(L,)`` float64 per-slice ``W_2`` along each row of ``directions``, in chunks of ``chunk`` rows."""
    mu, nu = geom.measure(x), geom.measure(y)
    theta = directions.to(mu.dtype)
    with torch.no_grad():
        parts = [slice_distances(mu, nu, theta[i:i + chunk], 2)[0] for i in range(0, theta.shape[0], chunk)]
    return torch.cat(parts).double()


def max_reference(x, y, *, n_directions: int = 4096, n_refine: int = 8, separation: float = 0.2,
                  n_steps: int = 100, lr: float = 0.02) -> dict:
    """The largest per-slice ``W_2`` over ``n_directions`` Fibonacci-lattice directions, then refined.

    The refinement warm-starts the ``max`` scheme (one start, ``lr`` smaller than its default) at the
    ``n_refine`` best lattice directions that are at least ``separation`` radians apart (``W_2`` is
    the same along ``theta`` and ``-theta``, so angles are taken up to sign); the ascent keeps the best
    iterate seen, its start included, so the reference is never below the lattice maximum.
    """
    theta = fibonacci_directions(n_directions)
    w = grid_distances(x, y, theta)
    starts = []
    for i in torch.argsort(w, descending=True).tolist():
        if all(abs(float(theta[i] @ t)) < math.cos(separation) for t in starts):
            starts.append(theta[i])
            if len(starts) == n_refine:
                break
    refined = []
    for start in starts:
        scheme = get_scheme("max")(n_starts=1, n_steps=n_steps, lr=lr)
        scheme.direction_ = start[None].clone()  # (B = 1, 3): the warm start of its first fit
        refined.append(float(geom.sliced_wasserstein(x, y, p=2, scheme=scheme, n_projections=1, seed=0)))
    return dict(grid=float(w.max()), value=max(refined), refined=refined, n_directions=n_directions,
                n_refine=len(starts), n_steps=n_steps, lr=lr)


def spread_study(pairs, configs, seeds, L: int, reference_options: dict | None = None):
    """One row per (pair, configuration): the per-seed values and stderrs and their :func:`summary`;
    for ``max`` also the reference, the seeds within ``WITHIN`` of it and the best seed's excess over it."""
    from tqdm import tqdm

    seeds = list(seeds)
    references = {}
    if any(name == "max" for _, name, _ in configs):
        for pair, x, y in tqdm(pairs, desc="max reference", unit="pair", file=sys.stderr):
            references[pair] = max_reference(x, y, **(reference_options or {}))
    rows = []
    for (pair, x, y), (label, name, options) in tqdm([(p, c) for p in pairs for c in configs], desc="seeds",
                                                    unit="scheme", file=sys.stderr):
        start = time.perf_counter()
        values, stderrs = zip(*(run_seed(x, y, name, options, s, L) for s in seeds))
        row = dict(pair=pair, scheme=label, name=name, options=options, n_projections=n_projections(name, L),
                   seeds=seeds, values=list(values), stderrs=list(stderrs), **summary(values, stderrs),
                   seconds_per_seed=(time.perf_counter() - start) / len(seeds))
        if name == "max":
            ref = references[pair]
            row.update(reference=ref, within=sum(v >= (1 - WITHIN) * ref["value"] for v in values),
                       excess=max(values) - ref["value"])
        rows.append(row)
    return rows


def _g(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.3g}"


def markdown(rows, L: int) -> str:
    n = len(rows[0]["seeds"])
    out = [f"SW_2 over {n} seeds (a fresh instance per seed), L = {L} directions (1 for max): mean, spread (standard "
           "deviation over the seeds), range, the median stderr the scheme reports, spread / stderr, and seconds per seed "
           "(learning and estimate):", "",
           "| scheme | pair | mean | spread | min | max | median stderr | spread / stderr | s / seed |",
           "|:---|:---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['scheme']} | {r['pair']} | {r['mean']:.4f} | {_g(r['spread'])} | {r['min']:.4f} | "
                   f"{r['max']:.4f} | {_g(r['median_stderr'])} | {_g(r['spread_over_stderr'])} | "
                   f"{r['seconds_per_seed']:.2f} |")
    maxed = [r for r in rows if r["name"] == "max"]
    if maxed:
        labels = list(dict.fromkeys(r["scheme"] for r in maxed))
        ref = maxed[0]["reference"]
        out += ["", f"Max-sliced W_2 against a reference (the best of {ref['n_directions']} Fibonacci-lattice "
                f"directions, refined by {ref['n_steps']} ascent steps from the {ref['n_refine']} best separated "
                f"ones): seeds within {100 * WITHIN:g}% of it, and the best seed minus the reference:", "",
                "| pair | lattice max | reference | " + " | ".join(f"{k}: within {100 * WITHIN:g}%" for k in labels)
                + " | " + " | ".join(f"{k}: best - ref" for k in labels) + " |",
                "|:---|---:|---:|" + "---:|" * (2 * len(labels))]
        for pair in dict.fromkeys(r["pair"] for r in maxed):
            at = {r["scheme"]: r for r in maxed if r["pair"] == pair}
            ref = next(iter(at.values()))["reference"]
            out.append(f"| {pair} | {ref['grid']:.4f} | {ref['value']:.4f} | "
                       + " | ".join(f"{at[k]['within']}/{n}" for k in labels) + " | "
                       + " | ".join(f"{at[k]['excess']:.1e}" for k in labels) + " |")
    return "\n".join(out) + "\n"


PAIRS = ("sphere / torus", "cube / ellipsoid")  # a third pair (torus / shifted torus) took the run past 3 min
FULL = dict(n_points=2048, seeds=8, L=100, pairs=PAIRS, reference=dict(n_directions=4096))
QUICK = dict(n_points=128, seeds=3, L=16, pairs=PAIRS, reference=dict(n_directions=512, n_refine=4, n_steps=50))


def run(out: pathlib.Path, *, n_points, seeds, L, pairs=None, reference=None, meshes=MESHES, configs=None) -> str:
    """The study at the given sizes on the shape pairs named in ``pairs`` (those that exist here; all
    of :func:`shape_pairs` when None); writes ``out`` (JSON) and the markdown next to it (``.md``), and
    returns the markdown."""
    chosen = [c for c in shape_pairs(n_points, meshes=meshes) if pairs is None or c[0] in pairs]
    configs = available(configs or CONFIGS)
    seeds = range(seeds) if isinstance(seeds, int) else seeds
    print(f"learned schemes: {len(chosen)} pairs, {n_points} points each, {len(list(seeds))} seeds, L = {L}",
          file=sys.stderr)
    rows = spread_study(chosen, configs, seeds, L, reference)
    table = markdown(rows, L)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".md"), table)
    write_text(out, json.dumps(dict(rows=rows, n_points=n_points, L=L, within=WITHIN, torch=torch.__version__),
                               indent=1))
    print(f"wrote {out} and {out.with_suffix('.md').name}", file=sys.stderr)
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds, points and pairs (a smoke run)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..n-1 (default 8; 3 with --quick)")
    ap.add_argument("--out", default=str(ROOT / "tools" / "results" / "learned.json"),
                    help="JSON file to write (the markdown goes next to it, .md)")
    args = ap.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        if args.seeds < 2:
            ap.error("--seeds: expected at least 2 (a spread needs two values)")
        settings["seeds"] = args.seeds
    print(run(pathlib.Path(args.out), **settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
