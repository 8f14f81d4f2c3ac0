"""Learning benchmark, part ``adapt``: unsupervised domain adaptation by the sliced Wasserstein discrepancy.

Two shifts generated here (:mod:`geom.learn.adapt`): scikit-learn's two moons with the target rotated
about their centre, and scikit-learn's 8x8 digits with the target images rotated. For every shift,
method (source-only, plain SW feature alignment, SWD) and seed (the seed sets the draws or splits, the
weights, the batches and the directions), :func:`geom.learn.adapt.train_adapt` with the same networks,
optimiser and number of iterations, then the accuracy on held-out target points (their labels are
never seen in training) and on the source. The table gives mean ± std over the seeds, and the SWD
gain over source-only per seed. Figure: ``learn-adapt-moons.png``, the decision regions of the three
methods on the moons (first seed) with the source and target points.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from geom._files import save_figure
from geom.learn import adapt

from _learn_wae import one_thread  # tools/ is on the path of tools/learn_bench.py

MOONS_DEGREES = 40.0
DIGITS_DEGREES = 30.0
# per shift: the data and train_adapt's settings (the same for the three methods)
SHIFTS = {
    "moons": dict(label=f"two moons, target rotated {MOONS_DEGREES:g}°",
                  data=lambda seed: adapt.rotated_moons(400, 400, 1000, degrees=MOONS_DEGREES, noise=0.1, seed=seed),
                  # the SWD paper's two-moons demo: 3-layer width-15 networks with Glorot weights, plain gradient
                  # descent at 0.005 on the whole source and target, 10000 iterations of one step A, B, C each
                  train=dict(hidden=15, feat_dim=15, steps=10000, batch_size=400, lr=5e-3, optimizer="sgd",
                             init="xavier", n_generator_steps=1, lam=1.0, n_projections=128)),
    "digits": dict(label=f"8x8 digits, target rotated {DIGITS_DEGREES:g}°",
                   data=lambda seed: adapt.transformed_digits("rotate", degrees=DIGITS_DEGREES, seed=seed),
                   train=dict(hidden=128, feat_dim=64, steps=1500, batch_size=128, lr=1e-3, n_generator_steps=1,
                              lam=1.0, n_projections=128)),
}
EXTRA_SEEDS = 3
"""The moons are cheap: source-only and SWD also run on this many seeds after the given ones (a wider look
at the spread of the gain, reported on its own line)."""
NAMES = {"source_only": "source-only", "sw": "SW feature alignment", "swd": "SWD"}


def _ms(values, scale: float = 100.0, digits: int = 1) -> str:
    v = np.asarray(values, dtype=float) * scale
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _figure(models: dict, d: adapt.Domains, out) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = torch.cat([d.xs, d.xt_test])
    lo, hi = pts.min(0).values - 0.4, pts.max(0).values + 0.4
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 300), torch.linspace(lo[1], hi[1], 300), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), sharex=True, sharey=True)
    for ax, (method, model) in zip(axes, models.items()):
        p = model.predict_proba(grid)[:, 1].reshape(gx.shape)
        ax.contourf(gx, gy, p, levels=[0, 0.5, 1], colors=["#d8e4f0", "#f4dcd2"])
        ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=0.8)
        ax.scatter(d.xs[:, 0], d.xs[:, 1], c=np.where(d.ys.numpy() == 1, "C3", "C0"), s=5, label="source, by class")
        ax.scatter(d.xt_test[:300, 0], d.xt_test[:300, 1], c=np.where(d.yt_test[:300].numpy() == 1, "C1", "C9"), s=9,
                   marker="x", alpha=0.8, label="target (coloured by the labels no method sees)")
        acc = adapt.accuracy(model, d.xt_test, d.yt_test)
        ax.set_title(f"{NAMES[method]}: target accuracy {100 * acc:.1f}%", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    save_figure(fig, out / "learn-adapt-moons.png", dpi=110)
    plt.close(fig)
    return "learn-adapt-moons.png"


def run(quick: bool, seeds: list[int], out) -> dict:
    """The part's table, JSON and figure (see the module)."""
    with one_thread():
        return _run(quick, seeds, out)


def _run(quick: bool, seeds: list[int], out) -> dict:
    results = {}
    figure = None
    for shift, spec in SHIFTS.items():
        train = dict(spec["train"])
        if quick:
            train["steps"] = 200
        results[shift] = {m: {"target": [], "source": [], "seconds": []} for m in adapt.METHODS}
        for seed in seeds:
            d = spec["data"](seed)
            models = {}
            for method in adapt.METHODS:
                start = time.perf_counter()
                r = adapt.train_adapt(d, method, seed=seed, progress=True, **train)
                row = results[shift][method]
                row["seconds"].append(time.perf_counter() - start)
                row["target"].append(adapt.accuracy(r.model, d.xt_test, d.yt_test))
                row["source"].append(adapt.accuracy(r.model, d.xs, d.ys))
                models[method] = r.model
            if shift == "moons" and seed == seeds[0]:
                figure = _figure(models, d, out)
    extra = list(range(max(seeds) + 1, max(seeds) + 1 + EXTRA_SEEDS))
    wide = {m: [] for m in ("source_only", "swd")}
    train = dict(SHIFTS["moons"]["train"], **({"steps": 200} if quick else {}))
    for seed in seeds + extra:
        d = SHIFTS["moons"]["data"](seed)
        for method in wide:
            if seed in seeds:
                wide[method].append(results["moons"][method]["target"][seeds.index(seed)])
            else:
                r = adapt.train_adapt(d, method, seed=seed, progress=True, **train)
                wide[method].append(adapt.accuracy(r.model, d.xt_test, d.yt_test))
    lines = [
        "Target test accuracy (%) of the three methods with the same networks (G: MLP to ReLU features; F1, F2: "
        "MLPs; prediction: mean of the two classifiers' probabilities), the same optimiser and the same "
        f"number of iterations; mean ± std over {len(seeds)} seed(s). SWD: steps A, B, C of Lee et al. (2019) "
        "with the discrepancy SW_2^2 between the classifiers' probability outputs on the target; SW feature "
        "alignment: source cross-entropy + SW_2(G(source), G(target)); all SW values from "
        "geom.losses.SlicedWassersteinLoss (mc, 128 directions). Target labels are never used in training. "
        "Moons: the setting of the SWD paper's two-moons demo (3-layer networks of width 15 with Glorot weights, "
        "plain gradient descent at 0.005 on the whole source and target, 10000 iterations of one step A, B, C "
        "each; the target here rotated 40° about the moons' centre). The former moons setting (width 64, Adam at "
        "1e-3 on batches of 128, 4 generator steps per iteration, 1000 iterations) gave an SWD gain of +2.5 ± 2.4 "
        "on seeds 0-2 (+13.0 ± 12.8 on seeds 0-5), the target accuracy oscillating during training. Digits: Adam.",
        "",
        "| shift | source-only | SW feature alignment | SWD | SWD − source-only (per seed) | source accuracy (SWD) |",
        "|---|---|---|---|---|---|",
    ]
    for shift, spec in SHIFTS.items():
        r = results[shift]
        gain = np.asarray(r["swd"]["target"]) - np.asarray(r["source_only"]["target"])
        lines.append(f"| {spec['label']} | {_ms(r['source_only']['target'])} | {_ms(r['sw']['target'])} | "
                     f"{_ms(r['swd']['target'])} | {_ms(gain)} ({', '.join(f'{100 * g:+.1f}' for g in gain)}) | "
                     f"{_ms(r['swd']['source'])} |")
    gain = np.asarray(wide["swd"]) - np.asarray(wide["source_only"])
    lines.append(f"| {SHIFTS['moons']['label']}, seeds {seeds[0]}-{extra[-1]} | {_ms(wide['source_only'])} | | "
                 f"{_ms(wide['swd'])} | {_ms(gain)} ({', '.join(f'{100 * g:+.1f}' for g in gain)}) | |")
    lines += ["", "Settings: " + "; ".join(
        f"{shift}: " + ", ".join(f"{k}={v}" for k, v in spec["train"].items()) for shift, spec in SHIFTS.items())
        + "." + (f" Figure: `{figure}`." if figure else "")]
    return {
        "title": "Domain adaptation by the sliced Wasserstein discrepancy",
        "markdown": "\n".join(lines),
        "json": {"seeds": seeds, "quick": quick, "results": results, "figure": figure,
                 "moons_wide": {"seeds": seeds + extra, **wide},
                 "settings": {s: {"label": spec["label"], **spec["train"]} for s, spec in SHIFTS.items()}},
    }
