"""Device check: every path geom runs on a GPU, against the same computation on the CPU.

One short script for a machine with CUDA: each row runs one computation on both devices with the
same data and directions, and compares value and gradient (relative error, gradient cosine) and
time. Prints a table and writes JSON. Without CUDA, ``--device cpu`` runs the same rows CPU against
CPU, so the script itself is tested everywhere.

    python tools/gpu_check.py                         # --device cuda, JSON to tools/results/gpu.json
    python tools/gpu_check.py --device cpu --json /tmp/gpu.json --quick
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import sys
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rows(n: int):
    """``name -> fn(device) -> (value, gradient or None)``; every fn draws its data from fixed seeds."""
    import geom
    import geom.flows

    def cloud(seed, m, d=3, shift=0.0, dtype=torch.float32):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(m, d, generator=g, dtype=torch.float64).add(shift).to(dtype)

    def unit(seed, L, d):
        g = torch.Generator().manual_seed(seed)
        t = torch.randn(L, d, generator=g, dtype=torch.float64)
        return t / t.norm(dim=1, keepdim=True)

    def sw(p=2.0, weighted=False, dtype=torch.float32, shift=0.0, m=None):
        def run(device):
            x = cloud(0, n, shift=shift, dtype=dtype).to(device).requires_grad_()
            y = cloud(1, m or n, shift=shift + 0.5, dtype=dtype).to(device)
            w = (torch.rand(n, generator=torch.Generator().manual_seed(2)) + 0.1).to(device, dtype) if weighted else None
            v = geom.sliced_wasserstein(geom.measure(x, weights=w), y, p=p, directions=unit(3, 256, 3).to(device, dtype))
            return v, torch.autograd.grad(v, x)[0]
        return run

    def energy(device):
        x = cloud(0, n).to(device).requires_grad_()
        v = geom.sliced_energy_distance(x, cloud(1, n, shift=0.5).to(device), directions=unit(3, 256, 3).to(device))
        return v, torch.autograd.grad(v, x)[0]

    def sphere(device):
        mu = geom.measure(cloud(0, n // 4, dtype=torch.float64).to(device), kind="sphere", normalize=True)
        nu = geom.measure(cloud(1, n // 4, shift=0.3, dtype=torch.float64).to(device), kind="sphere", normalize=True)
        return geom.sliced_wasserstein(mu, nu, p=2, n_projections=64, seed=0), None

    def spd(device):
        g = torch.Generator().manual_seed(0)
        A = torch.randn(200, 3, 3, generator=g, dtype=torch.float64)
        X = (A @ A.transpose(1, 2) + 0.5 * torch.eye(3, dtype=torch.float64)).to(device)
        return geom.sliced_wasserstein(geom.measure(X, kind="spd"), geom.measure(X * 1.5, kind="spd"), n_projections=64,
                                       seed=0), None

    def reduction(name):
        def run(device):
            x = cloud(0, n).to(device).requires_grad_()
            v = getattr(geom, name)(x, cloud(1, n, shift=0.5).to(device))
            return v, torch.autograd.grad(v, x)[0]
        return run

    def swf(device):
        r = geom.flows.swf(cloud(0, n).to(device), cloud(1, n, shift=1.0).to(device), steps=3, n_projections=64,
                           step_size=0.5, seed=0)
        return r.values[-1], r.particles

    return {
        "SW_2 uniform f32": sw(),
        "SW_2 uniform f64": sw(dtype=torch.float64),
        "SW_1 uniform f32": sw(p=1.0),
        "SW_3 weighted N != M f32": sw(p=3.0, weighted=True, m=n // 2 + 7),
        "SW_300 uniform f32 (large p)": sw(p=300.0),
        "SW_2 f32 at 1e7 from the origin": sw(shift=1e7),
        "sliced energy f32": energy,
        "sphere SSW_2 f64": sphere,
        "spd SPDSW f64": spd,
        "chamfer f32": reduction("chamfer_distance"),
        "energy distance f32": reduction("energy_distance"),
        "swf 3 steps f32": swf,
    }


def _compare(a, b) -> tuple[float, float]:
    """Relative error of ``b`` against ``a`` and the cosine of the two (flattened)."""
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    rel = float((a - b).norm() / a.norm().clamp_min(1e-300))
    cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0)) if a.numel() > 1 else math.nan
    return rel, cos


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="device to check against the CPU (default: cuda)")
    parser.add_argument("--quick", action="store_true", help="1000 points per cloud instead of 100000")
    parser.add_argument("--json", default="tools/results/gpu.json", metavar="PATH", help="where to write the JSON")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --device cpu to check the script itself", file=sys.stderr)
        return 2
    from geom._files import write_text

    n = 1000 if args.quick else 100_000
    results, failed = [], 0
    print(f"| check | value rel. err. | grad cosine | cpu s | {device.type} s |")
    print("|---|---:|---:|---:|---:|")
    for name, fn in _rows(n).items():
        row = dict(check=name)
        try:
            t = time.perf_counter()
            ref = fn(torch.device("cpu"))
            row["cpu_s"] = time.perf_counter() - t
            fn(device)  # warm-up: kernels, allocator, KeOps formulas
            _sync(device)
            t = time.perf_counter()
            got = fn(device)
            _sync(device)
            row["device_s"] = time.perf_counter() - t
            row["value_rel_err"], _ = _compare(ref[0], got[0])
            row["grad_cos"] = _compare(ref[1], got[1])[1] if ref[1] is not None else None
            row["ok"] = row["value_rel_err"] < 1e-3 and (row["grad_cos"] is None or row["grad_cos"] > 0.999)
        except Exception as exc:  # a device failure is a row of the report, not the end of the check
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        failed += not row["ok"]
        cos = "-" if row.get("grad_cos") is None else f"{row['grad_cos']:.6f}"
        if "error" in row:
            print(f"| {name} | failed: {row['error'][:80]} | | | |")
        else:
            print(f"| {name} | {row['value_rel_err']:.2e} | {cos} | {row['cpu_s']:.3f} | {row['device_s']:.3f} |")
        results.append(row)
    meta = dict(device=str(device), name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
                torch=torch.__version__, n_points=n)
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(dict(meta=meta, rows=results), indent=2) + "\n")
    print(f"\n{len(results) - failed} of {len(results)} checks agree; wrote {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
