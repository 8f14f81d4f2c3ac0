"""Energy-distance benchmark: the sorted sliced estimate against the exact pairwise energy distance.

For clouds of N = M points in 3-D, :func:`geom.mmd.sliced_energy_distance` (one sort per slice,
O(P (N + M) log(N + M)) for P slices) against the exact :func:`geom.energy_distance` (O(N M) pairs,
KeOps when it compiles here, else the dense torch backend), value and gradient with respect to the
first cloud. For each number of slices P the table gives, over a few seeds:

* the relative value error ``|ED_P - ED| / ED`` (root mean square over the seeds), the estimate's own
  relative standard error, and the reference rate ``sqrt(d / P)``;
* the cosine between the sliced and the exact gradients (mean over the seeds);
* the time of value + gradient (median over the seeds) and its ratio to the exact computation,
  timed in the same run after a warm-up (KeOps compiles its formulas on first use).

    python tools/energy_bench.py                     # writes tools/results/energy.{json,md}
    python tools/energy_bench.py --sizes 10000 --reps 2
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import statistics
import time

import torch

import geom
from geom._files import write_text
from geom import _keops
from geom.mmd import sliced_energy_distance

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _problem(n: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randn(n, d, generator=g) * 0.5 + 1.0
    return x, y


def _value_grad(fn, x: torch.Tensor, y: torch.Tensor):
    """Time ``fn(x, y)`` and its gradient with respect to ``x``: (seconds, value, gradient)."""
    xr = x.clone().requires_grad_()
    start = time.perf_counter()
    value = fn(xr, y)
    (grad,) = torch.autograd.grad(value, xr)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, float(value.detach()), grad


def _exact_backend() -> str:
    try:
        reason = _keops.failure("sums", 3, torch.float32, torch.device("cpu"))
    except Exception as exc:  # pykeops missing or broken: the dense backend still gives the exact value
        reason = f"{type(exc).__name__}: {exc}"
    return "keops" if reason is None else "dense"


def run(sizes, projections, reps: int, d: int = 3, device: str = "cpu") -> dict:
    backend = _exact_backend()
    exact_fn = lambda x, y: geom.energy_distance(x, y, backend=backend)  # noqa: E731
    # warm-up: KeOps compilation (or loading), thread pools, allocator
    wx, wy = _problem(2000, d, 99)
    _value_grad(exact_fn, wx.to(device), wy.to(device))
    _value_grad(lambda x, y: sliced_energy_distance(x, y, n_projections=16, seed=0), wx.to(device), wy.to(device))
    rows = []
    for n in sizes:
        x, y = (t.to(device) for t in _problem(n, d))
        t_exact, v_exact, g_exact = _value_grad(exact_fn, x, y)
        print(f"N = {n}: exact energy distance {v_exact:.6g} ({backend}, {t_exact:.2f} s value + gradient)", flush=True)
        for P in projections:
            errs, stderrs, cosines, times = [], [], [], []
            for seed in range(reps):
                def fn(x, y):
                    res = sliced_energy_distance(x, y, n_projections=P, seed=seed, return_result=True)
                    stderrs.append(float(res.stderr))
                    return res.value

                t, v, g = _value_grad(fn, x, y)
                errs.append((v - v_exact) / v_exact)
                cosines.append(float(torch.nn.functional.cosine_similarity(g.flatten(), g_exact.flatten(), dim=0)))
                times.append(t)
            row = dict(
                N=n, P=P, exact=v_exact, exact_backend=backend, exact_time_s=t_exact,
                rel_error_rms=math.sqrt(sum(e * e for e in errs) / len(errs)),
                rel_stderr=statistics.mean(stderrs) / v_exact, ref_sqrt_d_over_P=math.sqrt(d / P),
                grad_cosine=statistics.mean(cosines), sliced_time_s=statistics.median(times),
            )
            row["speedup"] = t_exact / row["sliced_time_s"]
            rows.append(row)
            print(_line(row), flush=True)
    return dict(
        d=d, reps=reps, device=device, torch=torch.__version__, machine=platform.machine(),
        threads=torch.get_num_threads(), rows=rows,
    )


HEADER = (
    "| N | P | rel. value error (RMS) | rel. stderr | sqrt(d/P) | grad cosine | sliced time (s) | exact time (s) | speed-up |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _line(r: dict) -> str:
    return (
        f"| {r['N']:.0e} | {r['P']} | {r['rel_error_rms']:.4f} | {r['rel_stderr']:.4f} | {r['ref_sqrt_d_over_P']:.3f} | "
        f"{r['grad_cosine']:.4f} | {r['sliced_time_s']:.3f} | {r['exact_time_s']:.2f} ({r['exact_backend']}) | "
        f"{r['speedup']:.0f}x |"
    )


def table(result: dict) -> str:
    lines = [
        f"Sorted sliced energy distance vs exact energy distance, d = {result['d']}, N = M, "
        f"{result['reps']} seeds per row, device {result['device']}, {result['threads']} torch threads.",
        "",
        HEADER,
        *(_line(r) for r in result["rows"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="N = M")
    ap.add_argument("--projections", type=int, nargs="+", default=[16, 64, 256, 1024], help="numbers of slices P")
    ap.add_argument("--reps", type=int, default=3, help="seeds per (N, P)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "tools" / "results"), help="folder for energy.json and energy.md")
    args = ap.parse_args(argv)
    result = run(args.sizes, args.projections, args.reps, device=args.device)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = table(result)
    write_text(out / "energy.md", text)
    write_text(out / "energy.json", json.dumps(result, indent=2) + "\n")
    print()
    print(text)


if __name__ == "__main__":
    main()
