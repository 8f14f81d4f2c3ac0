"""Core benchmark: sliced Wasserstein value + gradient, geom vs POT vs the sort floor, and peak memory.

Prints a markdown table and writes JSON. The anchors run in the same process on the same data:

* POT: ``ot.sliced_wasserstein_distance`` (torch backend) with the same directions;
* floor: sorting the two projected ``(L, N)`` matrices once with numpy (``torch.sort`` on CUDA),
  i.e. the least any sort-based exact estimator must do; numpy sorts on one thread, so the table
  also gives the floor with the rows split over the threads geom uses;
* geom's floor: the sorts geom cannot do without, on those threads: the order of a side whose gradient
  or weights it needs (sorted as packed value-index keys, its cheapest argsort), values for the other.
  ``POT / geom's floor`` is the most any implementation of these sorts could reach against POT.

Peak memory is measured first, in a fresh subprocess (its resident high-water mark, ``VmHWM``).

    python tools/bench.py                       # N in {1e4, 1e5}, L = 256, memory at N = 1e6, L = 1024
    python tools/bench.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


def _time(fn, reps: int) -> tuple[float, float]:
    """Best wall time of ``reps`` runs after one warm-up, and the value of the last run."""
    value = fn()  # warm-up (thread pools, allocator)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, value


def _problem(n: int, m: int, L: int, d: int, weighted: bool, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g).to(device)
    y = (torch.randn(m, d, generator=g) * 0.5 + 1.0).to(device)
    a = b = None
    if weighted:
        a, b = torch.rand(n, generator=g) + 0.1, torch.rand(m, generator=g) + 0.1
        a, b = (a / a.sum()).to(device), (b / b.sum()).to(device)
    theta = torch.randn(L, d, generator=g, dtype=torch.float64)
    theta = (theta / theta.norm(dim=1, keepdim=True)).float().to(device)
    return x, y, a, b, theta


def geom_value_grad(x, y, a, b, theta, p=2):
    import geom

    xr = x.clone().requires_grad_()
    value = geom.sliced_wasserstein(geom.measure(xr, weights=a), geom.measure(y, weights=b), p=p, directions=theta)
    value.backward()
    return value.item()


def pot_value_grad(x, y, a, b, theta, p=2):
    import ot

    xr = x.clone().requires_grad_()
    value = ot.sliced_wasserstein_distance(xr, y, a, b, projections=theta.T, p=p)
    value.backward()
    return value.item()


def sort_floor(x, y, theta, threads: int = 1, orders=(False, False)):
    """Sorting the two projected matrices ``(L, N)``, ``(L, M)`` (:func:`row_sorts`)."""
    ux, uy = theta @ x.T, theta @ y.T  # projections are not timed
    if x.device.type != "cpu":
        return lambda: (torch.sort(ux, dim=1), torch.sort(uy, dim=1))
    return row_sorts(ux.numpy(), uy.numpy(), threads, orders)


def row_sorts(ux: np.ndarray, uy: np.ndarray, threads: int = 1, orders=(False, False)):
    """A function sorting the rows of ``ux`` and ``uy``, split over ``threads``: by value (``np.sort``),
    or, for a side marked in ``orders``, as the packed value-index keys geom sorts where it needs the
    order (:func:`geom._ot1d.kernels.sorted_keys`, half the cost of an argsort), a few rows at a time as
    geom's tasks take them. With ``orders`` it is geom's own floor: the sorts it cannot do without."""
    from geom._ot1d import kernels

    def keys(part: np.ndarray) -> None:
        step = max(1, (1 << 16) // part.shape[1])  # rows per task, as in geom's sort pool
        work = np.empty((step, part.shape[1]))
        for r0 in range(0, part.shape[0], step):
            rows = part[r0 : r0 + step]
            kernels.sorted_keys(rows, work[: rows.shape[0]])

    parts = [(u[rows], order) for u, order in zip((ux, uy), orders)
             for rows in np.array_split(np.arange(u.shape[0]), threads)]
    job = lambda part: keys(part[0]) if part[1] else np.sort(part[0], axis=1)  # noqa: E731
    if threads == 1:
        return lambda: [job(part) for part in parts]
    pool = ThreadPoolExecutor(threads)
    return lambda: list(pool.map(job, parts))


def run_speed(sizes, L, d, reps, pot_max, weighted_n, device):
    """Uniform N = M at each size, then weighted with M = 0.8 N at ``weighted_n``."""
    cases = [(n, n, False) for n in sizes] + ([(weighted_n, int(0.8 * weighted_n), True)] if weighted_n else [])
    rows = []
    for n, m, weighted in cases:
        x, y, a, b, theta = _problem(n, m, L, d, weighted, device)
        t_geom, v_geom = _time(lambda: geom_value_grad(x, y, a, b, theta), reps)
        t_floor, _ = _time(sort_floor(x, y, theta), reps)
        threads = torch.get_num_threads()
        t_floor_mt = _time(sort_floor(x, y, theta, threads), reps)[0] if device == "cpu" and threads > 1 else None
        # geom's own floor: x's order for its gradient, y's for its weights
        t_own = _time(sort_floor(x, y, theta, threads, (True, weighted)), reps)[0] if device == "cpu" else None
        t_pot = v_pot = None
        if n <= pot_max:
            t_pot, v_pot = _time(lambda: pot_value_grad(x, y, a, b, theta), 1 if n >= 50_000 else reps)
        rows.append(
            dict(n=n, m=m, weighted=weighted, L=L, d=d, device=device, geom_s=t_geom, pot_s=t_pot, floor_s=t_floor,
                 floor_threads_s=t_floor_mt, floor_threads=threads, own_floor_s=t_own,
                 geom_over_own_floor=None if t_own is None else t_geom / t_own,
                 pot_over_own_floor=None if t_pot is None or t_own is None else t_pot / t_own,
                 pot_over_geom=None if t_pot is None else t_pot / t_geom, geom_over_floor=t_geom / t_floor,
                 geom_over_floor_threads=None if t_floor_mt is None else t_geom / t_floor_mt,
                 value_geom=v_geom, value_pot=v_pot)
        )
        print(f"  N = {n:>9,}, M = {m:>9,}{' weighted' if weighted else ''}: geom {t_geom:.3f} s, floor {t_floor:.3f} s"
              + ("" if t_pot is None else f", POT {t_pot:.3f} s"), file=sys.stderr)
    return rows


def _batched_problem(B: int, n: int, L: int, d: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(B, n, d, generator=g), torch.randn(B, n, d, generator=g) * 0.5 + 1.0
    theta = torch.nn.functional.normalize(torch.randn(L, d, generator=g, dtype=torch.float64), dim=1).float()
    return x, y, theta


def torch_sort_value_grad(x, y, theta):
    """The plain implementation: project, ``torch.sort`` along the points, mean squared gap, root."""
    xr = x.clone().requires_grad_()
    u, v = (torch.sort(t @ theta.T, dim=-2).values for t in (xr, y))  # (B, N, L)
    value = (u - v).square().mean((-2, -1)).sqrt()  # (B,)
    value.sum().backward()
    return value


def run_batched(cases, reps: int):
    """Batched small pairs, value + gradient of every pair's SW_2: geom (one batched call), a POT loop
    over the pairs, the plain ``torch.sort`` implementation, and the sort floor of the same rows."""
    import ot

    import geom

    rows = []
    for B, n, L in cases:
        x, y, theta = _batched_problem(B, n, L)

        def geom_run():
            xr = x.clone().requires_grad_()
            value = geom.sliced_wasserstein(xr, y, directions=theta)
            value.sum().backward()
            return value

        def pot_run():
            xr = x.clone().requires_grad_()
            values = torch.stack([ot.sliced_wasserstein_distance(xr[b], y[b], projections=theta.T) for b in range(B)])
            values.sum().backward()
            return values

        t_geom, v_geom = _time(geom_run, reps)
        t_pot, v_pot = _time(pot_run, 1)
        t_torch, v_torch = _time(lambda: torch_sort_value_grad(x, y, theta), reps)
        ux, uy = (np.ascontiguousarray((t @ theta.T).transpose(1, 2).reshape(B * L, n).numpy()) for t in (x, y))
        t_floor, _ = _time(row_sorts(ux, uy), reps)  # the same (B L, N) rows
        t_own, _ = _time(row_sorts(ux, uy, torch.get_num_threads(), (True, False)), reps)  # x's order: its gradient
        agree = float((v_geom.detach() - v_pot.detach()).abs().max() / v_pot.detach().abs().max())
        rows.append(dict(B=B, n=n, L=L, geom_s=t_geom, pot_loop_s=t_pot, torch_sort_s=t_torch, floor_s=t_floor,
                         own_floor_s=t_own, pot_over_geom=t_pot / t_geom, torch_over_geom=t_torch / t_geom,
                         geom_over_floor=t_geom / t_floor, geom_over_own_floor=t_geom / t_own,
                         pot_over_own_floor=t_pot / t_own, relative_gap_to_pot=agree))
        print(f"  B = {B}, N = {n}, L = {L}: geom {t_geom:.4f} s, POT loop {t_pot:.3f} s, torch.sort {t_torch:.3f} s, "
              f"floor {t_floor:.4f} s", file=sys.stderr)
    return rows


def run_tiny(n: int = 128, L: int = 64, calls: int = 2000):
    """The fixed cost of one small call (value + gradient, B = 1): the median over ``calls`` calls, next
    to floors timed the same way: the least autograd round trip (a leaf, ``sum()``, ``backward()``),
    which any differentiable call pays, ``np.sort`` of the two projected ``(L, N)`` matrices, and the
    sorts geom does there (:func:`row_sorts` with the first cloud's order)."""
    import geom

    x, y, theta = _batched_problem(1, n, L)
    x, y = x[0], y[0]
    u, v = (theta @ x.T).numpy(), (theta @ y.T).numpy()

    def geom_call():
        geom.sliced_wasserstein(x.clone().requires_grad_(), y, directions=theta).backward()

    def autograd_call():
        x.clone().requires_grad_().sum().backward()

    def median_us(fn):
        times = []
        for k in range(calls + 50):
            start = time.perf_counter()
            fn()
            if k >= 50:  # warm-up calls
                times.append(time.perf_counter() - start)
        return np.array(times) * 1e6

    times = median_us(geom_call)
    autograd = float(np.median(median_us(autograd_call)))
    sort = float(np.median(median_us(lambda: (np.sort(u, axis=1), np.sort(v, axis=1)))))
    own = float(np.median(median_us(row_sorts(u, v, 1, (True, False)))))  # x's order for its gradient
    median = float(np.median(times))
    return dict(n=n, L=L, calls=calls, median_us=median, p90_us=float(np.quantile(times, 0.9)),
                autograd_floor_us=autograd, sort_floor_us=sort, own_sort_floor_us=own,
                over_floors=median / (autograd + sort), over_own_floors=median / (autograd + own))


def run_plan(n: int, L: int, reps: int):
    """Sliced plans (the per-slice monotone plans) against the SW value on the same directions and
    against the sort floor of the same rows."""
    import geom

    x, y, _, _, theta = _problem(n, n, L, 3, False, "cpu")
    t_value, _ = _time(lambda: geom.sliced_wasserstein(x, y, directions=theta), reps)
    t_plan, _ = _time(lambda: geom.sliced_plan(x, y, directions=theta), reps)
    t_floor, _ = _time(sort_floor(x, y, theta, torch.get_num_threads()), reps)
    return dict(n=n, L=L, plan_s=t_plan, sw_value_s=t_value, floor_threads_s=t_floor, plan_over_value=t_plan / t_value,
                plan_over_floor_threads=t_plan / t_floor)


def run_embedding(n_shapes: int, n: int, L: int, reps: int):
    """Quantile embeddings of a collection (:func:`geom.collection.embed`, K = N levels, exact for uniform
    clouds) against np.sort of the same (shapes L, N) projected rows, on one thread and on all."""
    import geom.collection as gc

    x, _, theta = _batched_problem(n_shapes, n, L)
    t_embed, _ = _time(lambda: gc.embed(x, directions=theta, progress=False), reps)
    u = np.ascontiguousarray((x @ theta.T).transpose(1, 2).reshape(n_shapes * L, n).numpy())
    t_floor, _ = _time(lambda: np.sort(u, axis=1), reps)
    threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(threads)
    parts = np.array_split(u, threads)
    t_floor_mt, _ = _time(lambda: list(pool.map(lambda part: np.sort(part, axis=1), parts)), reps)
    return dict(n_shapes=n_shapes, n=n, L=L, embed_s=t_embed, floor_s=t_floor, floor_threads_s=t_floor_mt,
                threads=threads, embed_over_floor=t_embed / t_floor, embed_over_floor_threads=t_embed / t_floor_mt)


_MEMORY_CHILD = """
import sys, time, torch, geom

def peak_rss():  # this process's high-water mark; VmHWM starts afresh at exec, ru_maxrss may not
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

n, L, d = int(sys.argv[1]), int(sys.argv[2]), 3
g = torch.Generator().manual_seed(0)
x = torch.randn(n, d, generator=g, requires_grad=True); y = torch.randn(n, d, generator=g) + 1
base = peak_rss()
geom.sliced_wasserstein(x[:64], y[:64], n_projections=4, seed=0).backward()  # numba, its kernels, the pool
loaded = peak_rss()
t = time.perf_counter()
v = geom.sliced_wasserstein(x, y, n_projections=L, seed=0); v.backward()
t = time.perf_counter() - t
print(base, loaded, peak_rss(), t, v.item())
"""


def run_memory(n: int, L: int):
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(n), str(L)], check=True, capture_output=True,
                         text=True).stdout.split()
    base, loaded, peak, seconds, value = int(out[0]), int(out[1]), int(out[2]), float(out[3]), float(out[4])
    return dict(n=n, L=L, d=3, peak_rss_bytes=peak, baseline_rss_bytes=base, kernels_rss_bytes=loaded,
                seconds=seconds, value=value,
                inputs_bytes=2 * n * 3 * 4, projections_if_materialised_bytes=2 * n * L * 4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e4,1e5", help="comma-separated N = M values")
    ap.add_argument("--L", type=int, default=256, help="number of directions")
    ap.add_argument("--d", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="best of this many timed runs")
    ap.add_argument("--pot-max", type=float, default=1e5, help="largest N to run POT on")
    ap.add_argument("--weighted-n", type=float, default=1e5, help="N of the weighted case (M = 0.8 N); 0 skips it")
    ap.add_argument("--memory-n", type=float, default=1e6)
    ap.add_argument("--memory-L", type=int, default=1024)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--batched", default="64x2048x256,32x2048x100", help="batched small pairs, BxNxL, comma-separated; "
                    "'' skips them")
    ap.add_argument("--plan-n", type=float, default=1e5, help="N of the sliced-plan row (L = 64); 0 skips it")
    ap.add_argument("--no-tiny", action="store_true", help="skip the fixed cost of a tiny call")
    ap.add_argument("--embed", default="1000x2048x64", help="collection embedding row, shapes x N x L; '' skips it")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default="bench-results/core.json", help="where to write the results")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    from geom import _keops

    _keops.import_quietly()  # POT imports pykeops through geomloss, which would print a CUDA warning
    import ot

    print(f"geom core benchmark on {args.device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads); POT {ot.__version__}, torch {torch.__version__}", file=sys.stderr)
    memory = None if args.no_memory else run_memory(int(args.memory_n), args.memory_L)
    speed = run_speed(sizes, args.L, args.d, args.reps, args.pot_max, int(args.weighted_n), args.device)

    print(f"\nSW_2 value + gradient w.r.t. the first cloud, d = {args.d}, L = {args.L}, float32, {args.device}, "
          f"best of {args.reps} (POT: one run from N = 50,000)\n")
    threads = speed[0]["floor_threads"] if speed else 1
    print(f"| N | M | weights | geom (s) | POT (s) | sort floor (s) | floor, {threads} threads (s) "
          f"| geom's floor, {threads} threads (s) | POT / geom | geom / floor | geom / floor, {threads} threads "
          f"| geom / geom's floor | POT / geom's floor |")
    print("|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    for r in speed:
        print(f"| {r['n']:,} | {r['m']:,} | {'random' if r['weighted'] else 'uniform'} | {r['geom_s']:.3f} "
              f"| {fmt(r['pot_s'], '.3f')} | {r['floor_s']:.3f} | {fmt(r['floor_threads_s'], '.3f')} "
              f"| {fmt(r['own_floor_s'], '.3f')} | {fmt(r['pot_over_geom'], '.1f')}x | {r['geom_over_floor']:.2f}x "
              f"| {fmt(r['geom_over_floor_threads'], '.2f')}x | {fmt(r['geom_over_own_floor'], '.2f')}x "
              f"| {fmt(r['pot_over_own_floor'], '.1f')}x |")
    batched = tiny = plan = embedding = None
    if args.device == "cpu":
        cases = [tuple(int(v) for v in c.split("x")) for c in args.batched.split(",") if c]
        batched = run_batched(cases, args.reps) if cases else None
        tiny = None if args.no_tiny else run_tiny()
        plan = run_plan(int(args.plan_n), 64, args.reps) if args.plan_n else None
        if args.embed:
            embedding = run_embedding(*(int(v) for v in args.embed.split("x")), args.reps)
    if batched:
        print("\nBatched small pairs, SW_2 value + gradient of every pair, d = 3, float32: geom in one call, POT in a "
              "loop over the pairs, the plain torch.sort implementation, and np.sort of the same (B L, N) rows\n")
        print(f"| B | N | L | geom (s) | POT loop (s) | torch.sort (s) | sort floor (s) | geom's floor, {threads} threads "
              "(s) | POT / geom | torch.sort / geom | geom / floor | geom / geom's floor | POT / geom's floor |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in batched:
            print(f"| {r['B']} | {r['n']:,} | {r['L']} | {r['geom_s']:.4f} | {r['pot_loop_s']:.3f} | {r['torch_sort_s']:.3f} "
                  f"| {r['floor_s']:.4f} | {r['own_floor_s']:.4f} | {r['pot_over_geom']:.1f}x | {r['torch_over_geom']:.1f}x "
                  f"| {r['geom_over_floor']:.2f}x | {r['geom_over_own_floor']:.2f}x | {r['pot_over_own_floor']:.1f}x |")
    if tiny:
        print(f"\nFixed cost of a tiny call (N = M = {tiny['n']}, L = {tiny['L']}, B = 1, value + gradient): median "
              f"{tiny['median_us']:.0f} us, 90th percentile {tiny['p90_us']:.0f} us over {tiny['calls']} calls; floors: "
              f"the least autograd round trip {tiny['autograd_floor_us']:.0f} us, np.sort of both projected rows "
              f"{tiny['sort_floor_us']:.0f} us; geom / (their sum) = {tiny['over_floors']:.2f}x; the sorts geom does "
              f"(packed keys for the first cloud's order) {tiny['own_sort_floor_us']:.0f} us; geom / (autograd + "
              f"those) = {tiny['over_own_floors']:.2f}x")
    if plan:
        print(f"\nSliced plans, N = M = {plan['n']:,}, L = {plan['L']}: {plan['plan_s']:.3f} s against the SW value "
              f"{plan['sw_value_s']:.3f} s on the same directions ({plan['plan_over_value']:.2f}x) and the "
              f"{threads}-thread sort floor {plan['floor_threads_s']:.3f} s ({plan['plan_over_floor_threads']:.2f}x)")
    if embedding:
        e = embedding
        print(f"\nCollection embeddings, {e['n_shapes']} shapes x {e['n']:,} points, L = {e['L']}, K = N levels: "
              f"{e['embed_s']:.3f} s against np.sort of the same rows {e['floor_s']:.3f} s on one thread "
              f"({e['embed_over_floor']:.2f}x) and {e['floor_threads_s']:.3f} s on {e['threads']} "
              f"({e['embed_over_floor_threads']:.2f}x)")
    if memory:
        gib = 2**30
        print(f"\nPeak resident memory, value + gradient, N = M = {memory['n']:,}, L = {memory['L']}: "
              f"{memory['peak_rss_bytes'] / gib:.2f} GiB (after imports and data: {memory['baseline_rss_bytes'] / gib:.2f} GiB; "
              f"with numba, its kernels and the sort pool loaded by a small call: {memory['kernels_rss_bytes'] / gib:.2f} GiB; "
              f"all projections at once would take {memory['projections_if_materialised_bytes'] / gib:.1f} GiB); "
              f"{memory['seconds']:.1f} s")
    if args.json:
        import pathlib

        from geom._files import write_text

        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(torch=torch.__version__, pot=ot.__version__, machine=platform.machine(), device=args.device,
                    threads=torch.get_num_threads(), reps=args.reps)
        doc = dict(meta=meta, speed=speed, batched=batched, tiny=tiny, plan=plan, embedding=embedding, memory=memory)
        write_text(path, json.dumps(doc, indent=2))
        print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
