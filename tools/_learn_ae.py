"""The autoencoder table: a PointNet autoencoder (:mod:`geom.learn.autoencoder`) trained with each loss on
the generated shapes, scored on held-out shapes, mean ± std over seeds.

Per seed: the ``shapes`` dataset (six classes: sphere, ellipsoid, torus, cube, capsule, torus knot;
``n_per_class`` seeded random instances of each, randomly rotated, ``n_points`` surface samples each),
every cloud centred and turned into its principal axes (``align="pca"``: the canonical pose that the
aligned ShapeNet of the papers has; the classes then differ in shape, not in pose), a seeded quarter of
each class held out. For each training loss a fresh model (weights of that seed)
is trained with Adam for the same number of epochs on the same seeded batches; every sliced loss draws
``L`` directions per step from its own generator of that seed:

- ``SW (MC)``: SW_2, Monte Carlo directions;
- ``RQSW (QMC)``: SW_2 over a randomized quasi-Monte Carlo point set (the Coulomb-energy set, one fresh
  Haar rotation per step: the RCQSW the QSW paper recommends for training), the same ``L``;
- ``v-DSW``: SW_2 over ``L`` directions of ``vMF(epsilon, kappa=10)``, the location climbed by 5 Adam
  steps per training step (warm-started), as in the v-DSW of the amortized-projection paper without the
  amortizing network;
- ``amortized v-DSW``: the same law with the location predicted for each pair by the paper's efficient
  self-attention model (``geom_plugins.amortized``), trained jointly with the autoencoder in the same Adam
  step (gradient reversal: the model ascends the distance the autoencoder descends);
- ``sliced energy``: the sliced energy distance, ``L`` Monte Carlo directions;
- ``Chamfer``: the Chamfer distance.

Scores on the held-out clouds (the reconstructions against the inputs): Chamfer, exact EMD (POT's network
simplex on the full ``n_points`` clouds: the mean Euclidean distance under the optimal matching), SW_2
(1024 Monte Carlo directions, fixed seed), and the accuracy of a linear SVM on the codes (fitted on the
training codes). The time per epoch is the wall time of training only (on this shared CPU, one thread).
"""

from __future__ import annotations

import math
import pathlib
import time

import numpy as np
import torch

LOSSES = (
    ("SW (MC)", "sw", {}),
    ("RQSW (QMC)", "sw-qmc", {}),
    ("v-DSW", "sw-vmf", {"n_steps": 5}),
    ("amortized v-DSW", "sw-amortized", {}),
    ("sliced energy", "energy", {}),
    ("Chamfer", "chamfer", {}),
)
"""(row label, :data:`geom.learn.autoencoder.LOSSES` name, scheme options)."""
METRICS = (("chamfer", "Chamfer (x10^2)", 100), ("emd", "EMD (x10^2)", 100), ("sw", "SW_2 (x10^2)", 100),
           ("probe_accuracy", "probe accuracy (%)", 100))


def _config(quick: bool) -> dict:
    if quick:
        return dict(n_per_class=12, n_points=128, epochs=4, batch_size=16, lr=2e-3, latent=64, n_projections=100)
    return dict(n_per_class=40, n_points=256, epochs=40, batch_size=16, lr=2e-3, latent=64, n_projections=100)


def _ms(values, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` (sample std, ddof 1; the mean alone for one value)."""
    v = np.asarray(values, dtype=float) * scale
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _loss(name: str, cfg: dict, seed: int, options: dict):
    from geom.learn import autoencoder as ae

    if name == "chamfer":
        return ae.build_loss(name)
    if name == "sw-amortized":
        options = dict(variant="efficient", kappa=10.0, model_seed=seed, **options)
    return ae.build_loss(name, n_projections=cfg["n_projections"], seed=seed, **options)


def _one(seed: int, cfg: dict, out: pathlib.Path, bar, figures: bool) -> dict:
    from geom.learn import autoencoder as ae

    data = ae.load_clouds("shapes", n_points=cfg["n_points"], seed=seed, n_per_class=cfg["n_per_class"], align="pca")
    (x, y), (xt, yt), classes = data["train"], data["test"], data["classes"]
    loader = ae.CloudBatches(x, cfg["batch_size"], seed=seed)
    results, models = {}, {}
    for label, name, options in LOSSES:
        model = ae.PointNetAutoencoder(n_points=cfg["n_points"], latent=cfg["latent"], seed=seed)
        loss = _loss(name, cfg, seed, options)
        # the amortized model's weights train in the same step (gradient reversal: one minimising optimiser)
        optimizer = torch.optim.Adam([*model.parameters(), *getattr(loss, "scheme_parameters", list)()], lr=cfg["lr"])
        bar.set_postfix_str(f"seed={seed} loss={label}")
        t0 = time.perf_counter()
        trained = ae.train(model, loader, loss, cfg["epochs"], optimizer, progress=bar)
        seconds = time.perf_counter() - t0
        scores = ae.evaluate(model, xt, labels=yt, train=(x, y), emd_points=cfg["n_points"], seed=0)
        results[name] = dict(label=label, **{k: scores[k] for k, _, _ in METRICS},
                             seconds_per_epoch=float(np.mean(trained.epoch_seconds)), seconds=seconds,
                             loss_start=trained.values[0], loss_end=float(np.mean(trained.values[-len(loader):])))
        models[name] = model
    if figures:
        pick = [int(np.flatnonzero(yt.numpy() == c)[0]) for c in range(len(classes))]
        shown = xt[pick]
        ae.plot_reconstructions(shown, {label: ae.reconstruct(models[name], shown) for label, name, _ in LOSSES},
                                out / "learn-ae-reconstructions.png", titles=[classes[int(yt[i])] for i in pick])
        a, b = pick[classes.index("torus")], pick[classes.index("capsule")]
        for name in ("sw", "sw-qmc"):
            ae.plot_interpolation(models[name], xt[a], xt[b], out / f"learn-ae-interpolation-{name}.png",
                                  titles=("torus", "capsule"))
    return dict(seed=seed, n_train=len(x), n_test=len(xt), losses=results)


def run(quick: bool, seeds: list[int], out: pathlib.Path) -> dict:
    from tqdm import tqdm

    from geom.learn.autoencoder import CloudBatches

    torch.set_num_threads(1)
    cfg = _config(quick)
    n_train = 6 * cfg["n_per_class"] - 6 * max(1, round(0.25 * cfg["n_per_class"]))
    per_epoch = len(CloudBatches(torch.zeros(n_train, 1, 3), cfg["batch_size"]))
    runs = []
    with tqdm(total=len(seeds) * len(LOSSES) * cfg["epochs"] * per_epoch, desc="learn ae", unit="step") as bar:
        for i, seed in enumerate(seeds):
            runs.append(_one(seed, cfg, out, bar, figures=i == 0))
    table = {}
    for _, name, _ in LOSSES:
        table[name] = {k: [r["losses"][name][k] for r in runs] for k in (*[m for m, _, _ in METRICS],
                                                                        "seconds_per_epoch")}
    lines = [
        f"PointNet autoencoder (shared MLP 3-32-64-128, max pool, code {cfg['latent']}; MLP decoder "
        f"{cfg['latent']}-256-256-{cfg['n_points']}x3) on the generated shapes ({cfg['n_per_class']} random, randomly "
        f"rotated instances of each of 6 classes, {cfg['n_points']} points each, turned into their principal axes; "
        f"{runs[0]['n_train']} train / "
        f"{runs[0]['n_test']} held-out clouds per seed), {cfg['epochs']} epochs of Adam (lr {cfg['lr']:g}, batches of "
        f"{cfg['batch_size']}), every sliced loss with L = {cfg['n_projections']} directions per step. Scores of the "
        f"held-out reconstructions; mean ± std (ddof 1) over seeds {seeds}. Chamfer: mean squared nearest-neighbour "
        f"distances both ways; EMD: exact optimal matching, mean Euclidean distance (POT); SW_2: 1024 MC directions, "
        f"fixed seed; probe: linear SVM on the codes. Lower is better except the probe.",
        "",
        "| training loss | " + " | ".join(h for _, h, _ in METRICS) + " | s / epoch |",
        "|---|" + "---:|" * (len(METRICS) + 1),
    ]
    for label, name, _ in LOSSES:
        cells = [_ms(table[name][k], scale) if k != "probe_accuracy" else _ms(table[name][k], scale, 1)
                 for k, _, scale in METRICS]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_ms(table[name]['seconds_per_epoch'])} |")
    # the target: RQSW reconstructs at least as well as MC at the same L
    verdict = []
    for key, head, scale in METRICS[:3]:
        mc, qmc = np.array(table["sw"][key]), np.array(table["sw-qmc"][key])
        wins = int((qmc <= mc).sum())
        verdict.append(dict(metric=key, mc=float(mc.mean()), qmc=float(qmc.mean()), ratio=float(qmc.mean() / mc.mean()),
                            qmc_not_worse_seeds=wins, seeds=len(seeds)))
    held = all(v["qmc"] <= v["mc"] for v in verdict)
    lines += [
        "",
        "Target, RQSW (QMC) reconstructs at least as well as MC at the same L: "
        + ("**met**" if held else "**not met**") + " on the means ("
        + "; ".join(f"{v['metric']} (x10^2) {100 * v['qmc']:.3f} vs {100 * v['mc']:.3f}, ratio {v['ratio']:.3f}, "
                    f"RQSW <= MC in {v['qmc_not_worse_seeds']} of {v['seeds']} seeds" for v in verdict) + ").",
        "",
        "Figures: `learn-ae-reconstructions.png` (seed 0: one held-out cloud of each class, then its reconstruction "
        "by the model of each loss), `learn-ae-interpolation-sw.png` and `learn-ae-interpolation-sw-qmc.png` "
        "(decodings along the segment between the codes of a held-out torus and capsule).",
    ]
    return dict(title="Point-cloud autoencoder: training loss against reconstruction metrics",
                markdown="\n".join(lines),
                json=dict(config=cfg, seeds=seeds, runs=runs, target=dict(held=held, metrics=verdict),
                          summary={name: {k: dict(mean=float(np.mean(v)), std=float(np.std(v, ddof=1))
                                                  if len(v) > 1 else math.nan)
                                          for k, v in table[name].items()} for _, name, _ in LOSSES}))
