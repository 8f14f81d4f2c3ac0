"""Amortized projections: time per training step and discriminativeness of each sliced loss.

The step: a small main model (a folding decoder: one learned 32-dimensional code per cloud, a fixed
template of points on the unit sphere, a per-point MLP ``[template, code] -> R^3``) is fitted to a batch
of ``B`` clouds of the generated ``shapes`` dataset; one step is zero_grad, the decoder's forward, the
loss, the backward and the optimiser step(s) (for the amortized schemes, the amortized model's Adam step
too: one backward plays both sides of the game through the gradient reversal, see
``geom_plugins.amortized``). The losses, all ``geom.losses.SlicedWassersteinLoss`` with p = 2:

* ``SW (mc)``: L uniform directions;
* ``max-SW``: ``"max"`` with 10 warm-started Adam steps per call from one start (``n_projections = B``,
  one learned direction per cloud);
* ``v-DSW``: ``"vmf-dsw"``, 10 Adam steps on the shared vMF location per call, L directions;
* ``amortized v-DSW (variant)``: ``"amortized-vmf-dsw"``, L directions from the location the
  ``linear`` / ``attention`` / ``efficient`` model predicts per pair;
* ``amortized max-SW (efficient)``: ``"amortized-max"``, the predicted direction itself (L = 1).

All losses of a seed start from the same decoder and run their steps in turns (one step of each, then
the next round), so a change of load on the shared machine falls on all of them alike; the first
``warm`` rounds are not timed. Reported per loss, mean ± std over the seeds:

* time per step (mean over the timed steps of a seed) and its ratio to SW (mc)'s in the same run;
* its own value at the start (the same decoder output against the same targets for every loss: a larger
  value is a more discriminative distance on that pair; the amortized models are then untrained), and
  its value after the steps, with the state it reached, on one common pair (SW (mc)'s fitted output
  against the targets);
* the plain SW_2 (mc, 1000 directions, fixed seed) and the Chamfer distance of the decoder's output after
  the steps: how far each loss has brought the fit (a common yardstick).
"""

from __future__ import annotations

import pathlib
import statistics
import time

import torch

TARGET = 1.5  # amortized v-DSW: at most this times SW's time per step


def _config(quick: bool) -> dict:
    if quick:
        return dict(B=4, N=256, L=50, warm=1, steps=3, code=32, hidden=32)
    return dict(B=16, N=1024, L=100, warm=2, steps=25, code=32, hidden=32)


class _Folding(torch.nn.Module):
    """``(B, N, 3)`` clouds from learned codes ``(B, code)`` and a fixed template ``(N, 3)``."""

    def __init__(self, template: torch.Tensor, B: int, code: int, hidden: int, generator: torch.Generator):
        super().__init__()
        self.register_buffer("template", template)
        self.codes = torch.nn.Parameter(0.1 * torch.randn(B, code, generator=generator))
        layers = []
        for n_in, n_out in ((3 + code, hidden), (hidden, hidden), (hidden, 3)):
            layer = torch.nn.Linear(n_in, n_out, device="meta").to_empty(device="cpu")
            with torch.no_grad():
                bound = n_in ** -0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
            layers += [layer, torch.nn.ReLU()]
        self.net = torch.nn.Sequential(*layers[:-1])

    def forward(self) -> torch.Tensor:
        B, N = self.codes.shape[0], self.template.shape[0]
        inputs = torch.cat([self.template.expand(B, N, 3), self.codes[:, None].expand(B, N, -1)], -1)
        return self.template + self.net(inputs)  # (B, N, 3)


def _losses(cfg: dict, seed: int):
    """(key, label, L, loss module) per method; fresh instances for a seed."""
    from geom.losses import SlicedWassersteinLoss
    from geom_plugins.amortized import AmortizedMaxSliced, AmortizedVonMisesFisher

    B, L = cfg["B"], cfg["L"]
    out = [("mc", "SW (mc)", L, SlicedWassersteinLoss("mc", n_projections=L, seed=seed)),
           ("max", "max-SW (10 ascent steps)", B,
            SlicedWassersteinLoss("max", n_projections=B, seed=seed, n_steps=10, n_starts=1)),
           ("vmf-dsw", "v-DSW (10 ascent steps)", L,
            SlicedWassersteinLoss("vmf-dsw", n_projections=L, seed=seed, n_steps=10, kappa=10.0))]
    for variant in ("linear", "attention", "efficient"):
        scheme = AmortizedVonMisesFisher(variant=variant, kappa=10.0, model_seed=seed)
        out.append((f"amortized-vmf-{variant}", f"amortized v-DSW ({variant})", L,
                    SlicedWassersteinLoss(scheme, n_projections=L, seed=seed)))
    scheme = AmortizedMaxSliced(variant="efficient", model_seed=seed)
    out.append(("amortized-max-efficient", "amortized max-SW (efficient)", 1,
                SlicedWassersteinLoss(scheme, n_projections=1, seed=seed)))
    return out


def _targets(cfg: dict, seed: int) -> torch.Tensor:
    """``(B, N, 3)`` clouds of the generated shapes, the classes in turn, each normalised to the unit ball."""
    import geom

    B = cfg["B"]
    ds = geom.load_dataset("shapes", n_per_class=-(-B // 6), n_points=cfg["N"], seed=seed)
    by_class: dict[int, list] = {}
    for item, label in ds:
        by_class.setdefault(int(label), []).append(item)
    order = [by_class[c][k] for k in range(max(map(len, by_class.values()))) for c in sorted(by_class)
             if k < len(by_class[c])]
    clouds = torch.stack(order[:B]).float()
    return geom.measure(clouds, normalize="sphere").support


def _one(seed: int, cfg: dict, bar) -> dict:
    import geom

    targets = _targets(cfg, seed)
    g = torch.Generator().manual_seed(seed)
    template = torch.nn.functional.normalize(torch.randn(cfg["N"], 3, generator=g), dim=1)
    init = _Folding(template, cfg["B"], cfg["code"], cfg["hidden"], g).state_dict()
    runs = []
    for key, label, L, loss in _losses(cfg, seed):
        model = _Folding(template, cfg["B"], cfg["code"], cfg["hidden"], g)
        model.load_state_dict(init)  # every loss starts from the same decoder
        params = list(loss.scheme_parameters())
        opts = [torch.optim.Adam(model.parameters(), lr=1e-2)] + ([torch.optim.Adam(params, lr=1e-2)] if params else [])
        with torch.no_grad():
            start_value = float(loss(model(), targets))
        runs.append(dict(key=key, label=label, L=L, loss=loss, model=model, opts=opts, times=[],
                         start_value=start_value))
    for step in range(cfg["warm"] + cfg["steps"]):
        for run in runs:
            t0 = time.perf_counter()
            for opt in run["opts"]:
                opt.zero_grad()
            value = run["loss"](run["model"](), targets)
            value.backward()
            for opt in run["opts"]:
                opt.step()
            dt = time.perf_counter() - t0
            if step >= cfg["warm"]:
                run["times"].append(dt)
            run["last"] = float(value.detach())
            bar.update(1)
    with torch.no_grad():
        common = runs[0]["model"]()  # SW (mc)'s fit: one pair every trained loss is read on
    out = {}
    for run in runs:
        with torch.no_grad():
            final = run["model"]()
            on_common = float(run["loss"](common, targets))
            sw = geom.sliced_wasserstein(final, targets, n_projections=1000, seed=12345).mean()
            chamfer = geom.chamfer_distance(final, targets).mean()
        out[run["key"]] = dict(label=run["label"], L=run["L"], step_seconds=statistics.fmean(run["times"]),
                               step_seconds_std=statistics.pstdev(run["times"]), start_value=run["start_value"],
                               last_value=run["last"], common_value=on_common, final_sw=float(sw), final_chamfer=float(chamfer))
    mc = out["mc"]["step_seconds"]
    for v in out.values():
        v["ratio"] = v["step_seconds"] / mc
    return out


def _pm(values, fmt: str) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:{fmt}} ± {std:{fmt}}"


def run(quick: bool, seeds: list[int], out: pathlib.Path) -> dict:
    """Every loss for every seed; the table and the raw numbers."""
    from tqdm import tqdm

    cfg = _config(quick)
    n_losses = 7
    per_seed = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine's cores are shared: one intra-op thread, the same for every loss
    try:
        with tqdm(total=len(seeds) * n_losses * (cfg["warm"] + cfg["steps"]), desc="amortized steps",
                  unit="step") as bar:
            for seed in seeds:
                per_seed[seed] = _one(seed, cfg, bar)
    finally:
        torch.set_num_threads(threads)
    keys = list(per_seed[seeds[0]])
    rows = ["| loss | L | time per step (ms) | ratio to SW (mc) | own value at the start | own value after, on SW's fit "
            "| SW_2 after | Chamfer after |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    summary = {}
    for key in keys:
        items = [per_seed[s][key] for s in seeds]
        col = {name: [it[name] for it in items] for name in ("step_seconds", "ratio", "start_value", "common_value",
                                                              "final_sw", "final_chamfer")}
        summary[key] = {name: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
                        for name, v in col.items()}
        rows.append(f"| {items[0]['label']} | {items[0]['L']} | {_pm([1e3 * t for t in col['step_seconds']], '.1f')} | "
                    f"{_pm(col['ratio'], '.2f')} | {_pm(col['start_value'], '.4f')} | {_pm(col['common_value'], '.4f')} | "
                    f"{_pm(col['final_sw'], '.4f')} | "
                    f"{_pm(col['final_chamfer'], '.4f')} |")
    amortized = [k for k in keys if k.startswith("amortized-vmf")]
    verdicts = []
    for k in amortized:
        r = summary[k]["ratio"]["mean"]
        verdicts.append(f"{per_seed[seeds[0]][k]['label']}: {r:.2f}x ({'meets' if r <= TARGET else 'misses'} "
                        f"the target of {TARGET}x)")
    markdown = "\n".join([
        f"B = {cfg['B']} clouds of {cfg['N']} points (generated shapes, normalised to the unit ball), a folding "
        f"decoder fitted by Adam (lr 0.01), {cfg['steps']} timed steps after {cfg['warm']} warm-up rounds, the losses "
        f"in turns; mean ± std over {len(seeds)} seed(s); one torch intra-op thread. Time per step: the decoder's forward and backward, the "
        "loss (and its scheme's own work: ascent steps or the amortized model) and the optimiser steps. "
        "Own value at the start: each loss on the same initial output and targets (larger: more discriminative; "
        "the amortized models are then untrained). Own value after, on SW's fit: each loss, with the state it "
        "reached (learned directions, trained amortized model), on the output of the decoder SW (mc) trained. "
        "SW_2 after (mc, 1000 directions) and Chamfer after: the fit each loss reached.",
        "",
        *rows,
        "",
        "Target (amortized v-DSW at most 1.5x SW's time per step): " + "; ".join(verdicts) + ".",
    ])
    return {"title": "Amortized projections: time per step and discriminativeness",
            "markdown": markdown,
            "json": {"config": cfg, "seeds": seeds, "summary": summary,
                     "per_seed": {str(s): v for s, v in per_seed.items()}, "target_ratio": TARGET}}
