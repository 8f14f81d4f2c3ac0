"""The PAC-Bayes power curves: two-sample test power of SW with uniform slices against slices learned by
maximising the PAC-Bayes bound (:mod:`geom.learn.pacbayes`), and the bound itself.

The problem: ``mu`` the standard normal of R^d, ``nu`` the same moved by ``shift`` along one direction
and with standard deviation ``scale`` along a second one (a random orthonormal pair per seed), both
truncated to the ball of radius ``sqrt(d) + 2``, so that the diameter ``Delta = 2 (sqrt(d) + 2)`` is known
before any sample is drawn. Per seed and dimension, on three independent splits:

1. learn: ``rho`` (a mixture of 2 vMF) climbs the smooth bound on ``n_train`` points of each law;
2. certify: the bound (:func:`geom.learn.pacbayes.certify`, probability >= 0.95) on ``n_hold`` fresh
   points of each law, for ``rho`` and for the uniform prior;
3. test: for each sample size ``n``, ``reps`` fresh pairs of samples of size ``n``; the permutation test
   (``n_permutations`` relabellings, the SW_p statistic along ``L`` directions drawn afresh per test from
   the uniform law or from ``rho``) rejects at level ``alpha``; power is the rejection rate. The null rate
   of the learned slices (two samples of ``mu``) is reported too: the directions never see the test
   samples, so the test keeps its level.
"""

from __future__ import annotations

import math
import pathlib
import time

import numpy as np
import torch

ALPHA = 0.05
P_ORDER = 1.0
SHIFT, SCALE = 0.5, 1.5


def _config(quick: bool) -> dict:
    if quick:
        return dict(dims=(10,), sizes={10: (20, 80)}, reps=20, n_train=2000, n_hold=5000, n_steps=50,
                    n_permutations=49, n_slices=50, n_cert=1024)
    return dict(dims=(10, 50), sizes={10: (10, 20, 40, 80, 160), 50: (20, 40, 80, 160, 320)}, reps=100,
                n_train=10000, n_hold=20000, n_steps=200, n_permutations=99, n_slices=50, n_cert=4096)


def _one(seed: int, d: int, cfg: dict, bar) -> dict:
    from geom.directions import haar_rotation, uniform_directions
    from geom.learn import pacbayes as pb

    g = torch.Generator().manual_seed(1000 * seed + d)
    basis = haar_rotation(d, g)[:, :2]  # (d, 2)
    radius = math.sqrt(d) + 2
    diameter = 2 * radius

    def null(n):
        return pb.truncated_gaussians(n, basis, radius=radius, generator=g)

    def alt(n):
        return pb.truncated_gaussians(n, basis, shift=SHIFT, scale=SCALE, radius=radius, generator=g)

    start = time.perf_counter()
    fit = pb.fit_vmf_mixture(null(cfg["n_train"]), alt(cfg["n_train"]), diameter=diameter, p=P_ORDER,
                             n_components=2, n_steps=cfg["n_steps"], lr=0.05, n_samples=32, generator=g,
                             progress=False)
    fit_seconds = time.perf_counter() - start
    rho = fit.rho
    xh, yh = null(cfg["n_hold"]), alt(cfg["n_hold"])
    learned = pb.certify(rho, xh, yh, diameter=diameter, p=P_ORDER, n_slices=cfg["n_cert"], generator=g)
    uniform = pb.certify(None, xh, yh, diameter=diameter, p=P_ORDER, n_slices=cfg["n_cert"], generator=g)
    L, P = cfg["n_slices"], cfg["n_permutations"]
    power = {"uniform": [], "learned": [], "null_learned": []}
    for n in cfg["sizes"][d]:
        hits = {k: 0 for k in power}
        for _ in range(cfg["reps"]):
            x, y = null(n), alt(n)
            tu = uniform_directions(L, d, g).float()
            tl = rho.sample(L, generator=g).float()
            hits["uniform"] += pb.sw_permutation_test(x, y, tu, p=P_ORDER, n_permutations=P, generator=g)[1] <= ALPHA
            hits["learned"] += pb.sw_permutation_test(x, y, tl, p=P_ORDER, n_permutations=P, generator=g)[1] <= ALPHA
            x2 = null(n)
            hits["null_learned"] += pb.sw_permutation_test(x, x2, tl, p=P_ORDER, n_permutations=P,
                                                           generator=g)[1] <= ALPHA
            bar.update(1)
        for k in power:
            power[k].append(hits[k] / cfg["reps"])
    align = (rho.locations @ basis).abs()  # (K, 2) |cos| to the two directions of change
    return dict(seed=seed, d=d, sizes=list(cfg["sizes"][d]), power=power, fit_seconds=fit_seconds,
                objective_first=fit.history[0] if fit.history else None,
                objective_last=fit.history[-1] if fit.history else None,
                kappas=rho.kappas.tolist(), weights=rho.weights.tolist(), alignment=align.tolist(),
                bound_learned=learned.as_dict(), bound_uniform=uniform.as_dict())


def _ms(values) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.3f} ± {a.std():.3f}"


def _figure(runs: list[dict], dims, out: pathlib.Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geom._files import save_figure

    fig, axes = plt.subplots(1, len(dims), figsize=(5.2 * len(dims), 4.0), squeeze=False)
    for ax, d in zip(axes[0], dims):
        rs = [r for r in runs if r["d"] == d]
        sizes = rs[0]["sizes"]
        for key, label, style in (("learned", "learned rho (PAC-Bayes)", "o-"), ("uniform", "uniform slices", "s-"),
                                  ("null_learned", "learned rho, null (level)", "x:")):
            a = np.array([r["power"][key] for r in rs])  # (seeds, sizes)
            ax.errorbar(sizes, a.mean(0), yerr=a.std(0), fmt=style, capsize=3, label=label)
        ax.axhline(ALPHA, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("sample size n (per law)")
        ax.set_ylabel(f"rejection rate at alpha = {ALPHA}")
        b = np.mean([r["bound_learned"]["bound"] for r in rs])
        bu = np.mean([r["bound_uniform"]["bound"] for r in rs])
        ax.set_title(f"d = {d}: SW_1 permutation test\nbound {b:.3f} (learned) vs {bu:.3f} (uniform)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = out / "learn-pacbayes-power.png"
    save_figure(fig, path, dpi=90)
    plt.close(fig)
    return path.name


def run(quick: bool, seeds: list[int], out: pathlib.Path) -> dict:
    from tqdm import tqdm

    cfg = _config(quick)
    total = len(seeds) * sum(len(cfg["sizes"][d]) * cfg["reps"] for d in cfg["dims"])
    runs = []
    with tqdm(total=total, desc="pacbayes power", unit="test") as bar:
        for d in cfg["dims"]:
            for seed in seeds:
                runs.append(_one(seed, d, cfg, bar))
    figure = _figure(runs, cfg["dims"], out)
    lines = [
        f"Two-sample permutation test (SW_{P_ORDER:g} statistic, {cfg['n_slices']} slices drawn afresh per test, "
        f"{cfg['n_permutations']} relabellings, level {ALPHA}) between a standard normal and the same moved by "
        f"{SHIFT} along one direction and with standard deviation {SCALE} along another, both truncated to the "
        f"ball of radius sqrt(d) + 2 (diameter Delta known a priori). Learned slices: a 2-component vMF mixture "
        f"maximising the PAC-Bayes bound on a separate split of {cfg['n_train']} points per law; the bound "
        f"(probability >= 0.95, on E_S SW_1(mu_n, nu_n; rho), without the plug-in bias term) on another "
        f"{cfg['n_hold']} points per law. Power = rejection rate over {cfg['reps']} sample pairs, mean ± std over "
        f"seeds {seeds}.",
        "",
    ]
    for d in cfg["dims"]:
        rs = [r for r in runs if r["d"] == d]
        lines += [f"**d = {d}**", "", "| n | uniform slices | learned rho | learned rho, null (level) |",
                  "|---:|---:|---:|---:|"]
        for i, n in enumerate(rs[0]["sizes"]):
            lines.append(f"| {n} | " + " | ".join(_ms([r["power"][k][i] for r in rs])
                                                    for k in ("uniform", "learned", "null_learned")) + " |")
        lines += ["", "| slices | SW_1 on held-out (MC) | KL bound | PAC-Bayes lower bound |", "|---|---:|---:|---:|"]
        for key, label in (("bound_uniform", "uniform (prior)"), ("bound_learned", "learned rho")):
            lines.append(f"| {label} | {_ms([r[key]['empirical'] for r in rs])} | {_ms([r[key]['kl'] for r in rs])} "
                         f"| {_ms([r[key]['bound'] for r in rs])} |")
        kap = [k for r in rs for k in r["kappas"]]
        align = [max(a) for r in rs for a in r["alignment"]]
        lines += ["", f"Learned concentrations kappa: {', '.join(f'{k:.1f}' for k in kap)}; |cos| of each location "
                      f"to the nearer direction of change: {', '.join(f'{a:.2f}' for a in align)}; fit "
                      f"{_ms([r['fit_seconds'] for r in rs])} s.", ""]
    every = all(np.mean([r["power"]["learned"][i] for r in runs if r["d"] == d])
                >= np.mean([r["power"]["uniform"][i] for r in runs if r["d"] == d])
                for d in cfg["dims"] for i in range(len(cfg["sizes"][d])))
    lines += [f"Target (learned power >= uniform at every sample size, on the mean over seeds): "
              f"{'met' if every else 'NOT met'}.", "", f"![PAC-Bayes power curves]({figure})"]
    return {"title": "PAC-Bayes slice distributions: two-sample power", "markdown": "\n".join(lines),
            "json": {"config": {k: (v if k != "sizes" else {str(a): b for a, b in v.items()}) for k, v in cfg.items()},
                     "alpha": ALPHA, "p": P_ORDER, "shift": SHIFT, "scale": SCALE, "seeds": list(seeds),
                     "target_met": every, "runs": runs, "figure": figure}}
