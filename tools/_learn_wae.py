"""Learning benchmark, part ``wae``: the sliced Wasserstein autoencoder on scikit-learn's 8x8 digits.

For every penalty (none, i.e. a plain autoencoder, and ``lam * SW_2`` with the ``mc``, ``qmc`` and
``dsw`` schemes at the same L) and every seed (the seed sets the train/test split, the weights, the
batches, the prior samples and the directions): :func:`geom.learn.wae.train_wae`, then
:func:`geom.learn.wae.evaluate` on the held-out digits. The table gives mean ± std over the seeds of the
two-sample 1-NN accuracy of decoded prior samples against real test digits (0.5 is ideal), the SW_2
between the encoded test digits and prior samples (next to the floor: two prior samples of that size),
the largest per-coordinate KS statistic, the test reconstruction error and the seconds per run. The
reference row is real training digits against the test digits. Figures: ``learn-wae-samples.png``
(decoded prior samples per penalty, first seed) and ``learn-wae-latents.png`` (test latents against
the prior, first two coordinates).
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from geom._files import save_figure
from geom.learn import wae

LATENT_DIM = 8
LAM = 1.0
L = 64
# (label, scheme, lam, scheme options)
CONFIGS = [
    ("none (lam = 0)", "mc", 0.0, {}),
    ("mc", "mc", LAM, {}),
    ("qmc", "qmc", LAM, {}),
    ("dsw", "dsw", LAM, {"n_steps": 5}),
]
METRICS = ("nn_accuracy", "latent_sw", "latent_ks", "recon", "seconds")


def _ms(values, digits: int = 3) -> str:
    v = np.asarray(values, dtype=float)
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _grid(images: torch.Tensor, rows: int) -> np.ndarray:
    """``(rows * cols, 64)`` images -> one ``(8 rows + gaps, 8 cols + gaps)`` array."""
    cols = images.shape[0] // rows
    out = np.zeros((rows * 9 - 1, cols * 9 - 1))  # gaps: white once inverted
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        out[r * 9:r * 9 + 8, c * 9:c * 9 + 8] = images[k].reshape(8, 8).numpy()
    return out


def _figures(models: dict, x_test: torch.Tensor, out, seed: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("real test digits", x_test[:64])]
    for label, model in models.items():
        panels.append((f"samples, {label}", model.sample(64, generator=torch.Generator().manual_seed(seed))))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, (title, images) in zip(axes, panels):
        ax.imshow(1.0 - _grid(images, 8), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, out / "learn-wae-samples.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(models), figsize=(3 * len(models), 3.1), sharex=True, sharey=True)
    prior = wae.prior_sample(x_test.shape[0], LATENT_DIM, generator=torch.Generator().manual_seed(seed))
    for ax, (label, model) in zip(axes, models.items()):
        with torch.no_grad():
            z = model.encode(x_test)
        ax.scatter(prior[:, 0], prior[:, 1], s=4, c="0.7", label="prior")
        ax.scatter(z[:, 0], z[:, 1], s=4, c="C0", label="encoded test digits")
        ax.set_title(label, fontsize=9)
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("latents (coordinates 1 and 2) against the N(0, I) prior", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "learn-wae-latents.png", dpi=110)
    plt.close(fig)
    return ["learn-wae-samples.png", "learn-wae-latents.png"]


@contextlib.contextmanager
def one_thread():
    """One torch thread and one BLAS thread inside, the old counts after: the networks are tiny and the
    machine's cores shared (numpy's OpenBLAS, which the 1-D transport's projections use, ignores
    ``torch.set_num_threads``; two BLAS threads on busy cores made one SW call of two 128 x 64 clouds
    with 128 directions 5-10x slower). threadpoolctl comes with scikit-learn, the ``learn`` extra."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


def run(quick: bool, seeds: list[int], out) -> dict:
    """The part's table, JSON and figures (see the module)."""
    with one_thread():
        return _run(quick, seeds, out)


def _run(quick: bool, seeds: list[int], out) -> dict:
    epochs = 15 if quick else 200
    results = {label: {m: [] for m in (*METRICS, "latent_sw_floor")} for label, *_ in CONFIGS}
    reference = []
    first_models = {}
    for seed in seeds:
        x_train, _, x_test, _ = wae.load_digits(seed=seed)
        pick = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(seed))[:x_test.shape[0]]
        reference.append(wae.one_nn_accuracy(x_train[pick], x_test))
        for label, scheme, lam, options in CONFIGS:
            start = time.perf_counter()
            r = wae.train_wae(x_train, latent_dim=LATENT_DIM, scheme=scheme, n_projections=L, lam=lam, epochs=epochs,
                              seed=seed, progress=True, **options)
            seconds = time.perf_counter() - start
            metrics = wae.evaluate(r.model, x_test, seed=seed)
            metrics["seconds"] = seconds
            for k in results[label]:
                results[label][k].append(metrics[k])
            if seed == seeds[0]:
                first_models[label] = r.model
    figures = _figures(first_models, wae.load_digits(seed=seeds[0])[2], out, seeds[0])
    lines = [
        f"Sliced Wasserstein autoencoder on scikit-learn's 8x8 digits (1437 train / 360 test images, "
        f"{LATENT_DIM}-D N(0, I) prior, MLP 64-128-128-{LATENT_DIM} and back, Adam 1e-3, {epochs} epochs of "
        f"batches of 128; penalty lam * SW_2(latents, prior samples) with lam = {LAM:g} and L = {L} directions). "
        f"Mean ± std over {len(seeds)} seed(s) (split, weights, batches, directions). 1-NN: leave-one-out "
        "accuracy of the 1-NN classifier between 360 decoded prior samples and the 360 test digits (0.5: "
        "indistinguishable). Latent SW: SW_2 between the encoded test digits and as many prior samples "
        "(Monte Carlo, 1000 directions, the same for every row); two prior samples of that size are at "
        f"{_ms(results[CONFIGS[1][0]]['latent_sw_floor'])}. KS: largest Kolmogorov-Smirnov statistic of one "
        "latent coordinate against N(0, 1). Reconstruction: squared error per test image, summed over pixels in [0, 1].",
        "",
        "| penalty | 1-NN accuracy (0.5 ideal) | latent SW_2 to prior | latent KS | reconstruction | s / run |",
        "|---|---|---|---|---|---|",
    ]
    for label, *_ in CONFIGS:
        r = results[label]
        lines.append(f"| {label} | {_ms(r['nn_accuracy'])} | {_ms(r['latent_sw'])} | {_ms(r['latent_ks'])} | "
                     f"{_ms(r['recon'])} | {_ms(r['seconds'], 1)} |")
    lines.append(f"| reference: real train digits | {_ms(reference)} | | | | |")
    lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in figures) + "."]
    finite = {label: {k: [v if math.isfinite(v) else None for v in vs] for k, vs in r.items()}
              for label, r in results.items()}
    return {
        "title": "Wasserstein autoencoder with a sliced penalty (digits)",
        "markdown": "\n".join(lines),
        "json": {"seeds": seeds, "epochs": epochs, "latent_dim": LATENT_DIM, "lam": LAM, "n_projections": L,
                 "configs": [{"label": c[0], "scheme": c[1], "lam": c[2], "options": c[3]} for c in CONFIGS],
                 "results": finite, "reference_nn_accuracy": reference, "figures": figures},
    }
