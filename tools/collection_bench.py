"""Collections benchmark: the full SW matrix of 1000 shapes from quantile embeddings, against per-pair loops.

Collection: ``--n-shapes`` seeded shapes of :class:`geom_datasets.generators.Shapes` (spheres,
ellipsoids, tori, cubes, capsules, torus knots; randomly rotated), ``--n-points`` surface points each,
float32. All SW values are ``SW_2`` on the same ``L = --n-projections`` directions; the embedding
uses ``K = N`` levels, where it is exact. Measured in one run:

* **matrix**: embed + :func:`geom.collection.pairwise` (the whole 1000 x 1000 matrix, upper
  triangle by blocks; best of 3, as the machine is shared; the loops and Dask best of 2) against two per-pair loops on the same directions, each timed on a random sample
  of pairs and **extrapolated** to all ``C (C - 1) / 2`` pairs (said so in the table): POT's
  ``ot.sliced_wasserstein_distance`` (the anchor, one call per pair) and geom's own batched per-pair
  path (``pairwise(mode="exact")``, one :func:`geom.sliced_wasserstein` on a batch of pairs);
* **agreement**: the largest relative difference between the matrix and each per-pair value on the sample;
* **kNN**: recall@10 of :func:`geom.collection.knn` (BLAS blocks, and faiss where installed) against
  brute force on the full matrix, with times, and an extrapolation to a database of 1e5 shapes;
* **Dask**: the same matrix on a ``LocalCluster`` of 2 worker processes (one thread each): equal bit
  for bit or not, and its time;
* **regression**: held-out R^2 of kernel ridge regression with the Gaussian SW kernel, predicting
  the middle semi-axis ``t`` of random ellipsoids ``(1, t, t^2 / 2 + 0.2)`` from their point clouds;
* **two-sample power**: rejection rate at level 0.05 of :func:`geom.collection.mmd_test` between
  collections of ellipsoids with ``t ~ U[0.3, 0.7]`` and ``t ~ U[0.3 + delta, 0.7 + delta]`` (delta = 0:
  the level);
* **peak resident memory** of the process (``ru_maxrss``) after the single-process matrix, before Dask starts.

    python tools/collection_bench.py          # writes tools/results/collection.{json,md,png}
    python tools/collection_bench.py --n-shapes 200 --no-dask
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import resource
import time

import numpy as np
import torch

import geom
import geom.collection as gc
from geom._files import save_figure, write_text

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _shapes(n: int, n_points: int, seed: int):
    per_class = math.ceil(n / 6)
    ds = geom.load_dataset("shapes", n_per_class=per_class, n_points=n_points, seed=seed)
    order = np.random.default_rng(seed).permutation(len(ds))[:n]  # every class, in random order
    items = [ds[int(i)] for i in order]
    return torch.stack([x for x, _ in items]), np.array([int(y) for _, y in items])


def ellipsoids(seed: int, C: int, N: int, low: float = 0.3, high: float = 0.7):
    """Clouds on randomly rotated ellipsoids with semi-axes ``(1, t, t^2 / 2 + 0.2)``, ``t ~ U[low, high]``."""
    g = torch.Generator().manual_seed(seed)
    t = low + (high - low) * torch.rand(C, generator=g)
    z = torch.nn.functional.normalize(torch.randn(C, N, 3, generator=g), dim=-1)
    q, _ = torch.linalg.qr(torch.randn(C, 3, 3, generator=g))
    x = z * torch.stack([torch.ones_like(t), t, t * t / 2 + 0.2], -1)[:, None]
    return x @ q.transpose(1, 2), t


def _time(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run(n_shapes: int, n_points: int, L: int, pot_pairs: int, geom_pairs: int, dask: bool, seed: int) -> dict:
    import ot

    x, labels = _shapes(n_shapes, n_points, seed)
    C = len(x)
    n_pairs = C * (C - 1) // 2
    print(f"{C} shapes x {n_points} points, L = {L} directions", flush=True)
    gc.pairwise(x[:4], n_projections=L, seed=seed, progress=False)  # warm-up: thread pools, allocator
    runs = []
    for _ in range(3):  # best of 3: the machine is shared (the same embedding and matrix each time)
        emb = D = None  # the previous run's freed first: the peak is one run's
        t_embed, emb = _time(lambda: gc.embed(x, n_projections=L, seed=seed, progress=False))
        t_matrix, D = _time(lambda: gc.pairwise(emb, progress=False))
        runs.append((t_embed + t_matrix, t_embed, t_matrix))
    t_total, t_embed, t_matrix = min(runs)
    peak = _peak_rss()
    print(f"embedding {t_embed:.2f} s + matrix {t_matrix:.2f} s; peak RSS {peak / 2**30:.2f} GiB", flush=True)

    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(C, 1)
    pick = rng.choice(n_pairs, max(pot_pairs, geom_pairs), replace=False)
    dirs = emb.directions
    P = dirs.T.double().numpy()  # POT's (d, L)
    xs = x.double().numpy()
    sub = pick[:pot_pairs]
    t_pot, pot = min((_time(lambda: np.array([ot.sliced_wasserstein_distance(xs[a], xs[b], p=2, projections=P)
                                              for a, b in zip(i[sub], j[sub])])) for _ in range(2)), key=lambda r: r[0])
    per_pot = t_pot / len(sub)
    gsub = pick[:geom_pairs]
    mu = geom.measure(x)
    t_geom, per_geom_values = min((_time(lambda: torch.cat([
        geom.sliced_wasserstein(mu[torch.from_numpy(i[s])], mu[torch.from_numpy(j[s])], directions=dirs).double()
        for s in np.array_split(gsub, max(1, len(gsub) // 256))])) for _ in range(2)), key=lambda r: r[0])
    per_geom = t_geom / len(gsub)
    emb_pot = D[i[sub], j[sub]].numpy()
    emb_geom = D[i[gsub], j[gsub]].numpy()
    agree_pot = float(np.max(np.abs(emb_pot - pot) / pot))
    agree_geom = float(np.max(np.abs(emb_geom - per_geom_values.numpy()) / per_geom_values.numpy()))
    print(f"POT {per_pot * 1e3:.2f} ms / pair ({len(sub)} pairs), geom per pair {per_geom * 1e3:.3f} ms "
          f"({len(gsub)} pairs); agreement {agree_pot:.2e} (POT), {agree_geom:.2e} (geom)", flush=True)

    # kNN: exact, so recall against brute force on the full matrix
    k = 10
    Dm = D.clone()
    Dm.fill_diagonal_(math.inf)
    brute = Dm.argsort(dim=1, stable=True)[:, :k]
    t_knn, (_, idx) = _time(lambda: gc.knn(emb, k=k, progress=False))
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(idx.tolist(), brute.tolist())]))
    same_class = float((labels[idx.numpy()] == labels[:, None]).mean())
    knn = {"k": k, "blas": {"seconds": t_knn, "recall": recall}, "same_class_share": same_class}
    try:
        import faiss  # noqa: F401

        t_faiss, (_, fidx) = _time(lambda: gc.knn(emb, k=k, backend="faiss"))
        knn["faiss"] = {"seconds": t_faiss, "recall": float(np.mean(
            [len(set(a) & set(b)) / k for a, b in zip(fidx.tolist(), brute.tolist())]))}
    except ImportError:
        knn["faiss"] = None
    per_pair_knn = t_knn / (C * C)
    knn["extrapolation_1e5"] = {
        "seconds_per_query": per_pair_knn * 1e5, "seconds_all_queries": per_pair_knn * 1e10,
        "embedding_bytes": 1e5 * emb.vectors.shape[1] * 4,
        "note": f"extrapolated linearly from the measured cost per (query, member) pair: one query against 1e5 "
                f"shapes {per_pair_knn * 1e5:.3g} s, all 1e5 against each other {per_pair_knn * 1e10 / 3600:.3g} h "
                f"in one process; their embeddings at K = {emb.n_quantiles}, L = {L} take "
                f"{1e5 * emb.vectors.shape[1] * 4 / 2**30:.0f} GiB (float32): shard them on Dask or take fewer levels"}
    print(f"kNN recall@{k} {recall:.3f} in {t_knn:.2f} s; same class {same_class:.3f}", flush=True)

    dask_row = None
    if dask:
        from geom.collection._dask import local_client

        client = local_client(2)
        try:
            gc.pairwise(emb[:8], client=client, progress=False)  # workers import geom and torch
            t_dask, Dd = min((_time(lambda: gc.pairwise(emb, client=client, progress=False)) for _ in range(2)),
                             key=lambda r: r[0])
        finally:
            cluster = client.cluster
            client.close()
            cluster.close()
        dask_row = {"seconds": t_dask, "identical": bool(torch.equal(Dd, D)), "workers": 2}
        print(f"Dask, 2 workers: {t_dask:.2f} s, identical: {dask_row['identical']}", flush=True)

    # distribution regression: predict t from the clouds
    xtr, ttr = ellipsoids(seed + 1, 300, 512)
    xte, tte = ellipsoids(seed + 2, 200, 512)
    tr = gc.embed(xtr, n_projections=L, seed=seed, progress=False)
    gamma = 0.1 / float(gc.pairwise(tr, condensed=True, progress=False).square().median())
    model = gc.KernelModel("ridge", gamma=gamma, alpha=1e-3).fit(tr, ttr.numpy())
    r2 = model.score(xte, tte.numpy())
    print(f"kernel ridge R^2 (held out) {r2:.4f}", flush=True)

    # two-sample power on shifted collections
    power = []
    reps = 20
    for delta in (0.0, 0.05, 0.1, 0.2):
        rejected = 0
        for r in range(reps):
            a, _ = ellipsoids(1000 + r, 25, 256)
            b, _ = ellipsoids(2000 + r, 25, 256, 0.3 + delta, 0.7 + delta)
            res = gc.mmd_test(a, b, n_permutations=199, seed=r, n_projections=32)
            rejected += res.pvalue <= 0.05
        power.append({"delta": delta, "rejection_rate": rejected / reps, "repetitions": reps})
        print(f"MMD test delta {delta}: rejection rate {rejected / reps:.2f}", flush=True)

    return {
        "collection": {"shapes": C, "points": n_points, "directions": L, "n_quantiles": emb.n_quantiles,
                       "embedding_dim": emb.vectors.shape[1], "dtype": str(emb.vectors.dtype)},
        "matrix": {"embed_seconds": t_embed, "pairwise_seconds": t_matrix, "total_seconds": t_total,
                   "pairs": n_pairs},
        "pot": {"seconds_per_pair": per_pot, "sampled_pairs": len(sub), "extrapolated_seconds": per_pot * n_pairs,
                "ratio": per_pot * n_pairs / t_total, "max_relative_difference": agree_pot},
        "geom_per_pair": {"seconds_per_pair": per_geom, "sampled_pairs": len(gsub),
                          "extrapolated_seconds": per_geom * n_pairs, "ratio": per_geom * n_pairs / t_total,
                          "max_relative_difference": agree_geom},
        "knn": knn, "dask": dask_row, "regression": {"r2": r2, "train": 300, "test": 200, "points": 512},
        "two_sample": power, "peak_rss_bytes": peak,
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "geom": geom.__version__},
    }


def _markdown(r: dict) -> str:
    c, m, pot, gp = r["collection"], r["matrix"], r["pot"], r["geom_per_pair"]
    rows = [
        ("full matrix, embeddings (embed + pairwise; best of 3)", f"{m['total_seconds']:.2f} s "
         f"({m['embed_seconds']:.2f} + {m['pairwise_seconds']:.2f})", "1"),
        (f"POT per-pair loop (timed on {pot['sampled_pairs']} pairs, extrapolated)",
         f"{pot['extrapolated_seconds']:.0f} s", f"{pot['ratio']:.0f}x"),
        (f"geom batched per-pair (timed on {gp['sampled_pairs']} pairs, extrapolated)",
         f"{gp['extrapolated_seconds']:.0f} s", f"{gp['ratio']:.0f}x"),
    ]
    if r["dask"]:
        d = r["dask"]
        rows.append((f"Dask LocalCluster, {d['workers']} worker processes", f"{d['seconds']:.2f} s",
                     "identical bits" if d["identical"] else "DIFFERENT"))
    lines = [f"Collection: {c['shapes']} shapes x {c['points']} points, L = {c['directions']}, K = {c['n_quantiles']} "
             f"(exact for uniform clouds), {c['dtype']}.", "",
             "| what | time | ratio to embeddings |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {x} |" for a, b, x in rows]
    knn, reg = r["knn"], r["regression"]
    faiss = knn["faiss"]
    lines += ["", "| measure | value |", "| --- | --- |",
              f"| largest relative difference to POT / geom per pair (sampled pairs) | {pot['max_relative_difference']:.1e} "
              f"/ {gp['max_relative_difference']:.1e} |",
              f"| kNN recall@{knn['k']} vs brute force, BLAS | {knn['blas']['recall']:.3f} ({knn['blas']['seconds']:.2f} s) |"]
    if faiss:
        lines.append(f"| kNN recall@{knn['k']}, faiss IndexFlatL2 | {faiss['recall']:.3f} ({faiss['seconds']:.2f} s) |")
    lines += [f"| kNN neighbours of the same class | {knn['same_class_share']:.3f} |",
              f"| kNN over 1e5 shapes (extrapolated) | {knn['extrapolation_1e5']['note']} |",
              f"| kernel ridge R^2, ellipsoid axis (held out, {reg['test']} clouds) | {reg['r2']:.4f} |"]
    lines += [f"| MMD test rejection rate, delta = {p['delta']:g} ({p['repetitions']} runs) | {p['rejection_rate']:.2f} |"
              for p in r["two_sample"]]
    lines.append(f"| peak resident memory (single process) | {r['peak_rss_bytes'] / 2**30:.2f} GiB |")
    return "\n".join(lines) + "\n"


def _plot(r: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = ["embeddings", "geom per pair\n(extrapolated)", "POT per pair\n(extrapolated)"]
    times = [r["matrix"]["total_seconds"], r["geom_per_pair"]["extrapolated_seconds"], r["pot"]["extrapolated_seconds"]]
    a.bar(names, times, color=["C0", "C1", "C2"])
    a.set(yscale="log", ylabel="seconds", title=f"{r['collection']['shapes']} x {r['collection']['shapes']} SW matrix")
    b.plot([p["delta"] for p in r["two_sample"]], [p["rejection_rate"] for p in r["two_sample"]], marker="o")
    b.axhline(0.05, color="0.6", ls="--")
    b.set(xlabel="shift delta of the axis law", ylabel="rejection rate", title="MMD test power", ylim=(0, 1.05))
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-shapes", type=int, default=1000)
    parser.add_argument("--n-points", type=int, default=2048)
    parser.add_argument("--n-projections", type=int, default=64)
    parser.add_argument("--pot-pairs", type=int, default=200, help="pairs the POT loop is timed on")
    parser.add_argument("--geom-pairs", type=int, default=2048, help="pairs geom's per-pair path is timed on")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "tools" / "results" / "collection"))
    args = parser.parse_args(argv)
    r = run(args.n_shapes, args.n_points, args.n_projections, args.pot_pairs, args.geom_pairs, not args.no_dask,
            args.seed)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps(r, indent=2, allow_nan=False))
    md = _markdown(r)
    write_text(out.with_suffix(".md"), md)
    _plot(r, out.with_suffix(".png"))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
