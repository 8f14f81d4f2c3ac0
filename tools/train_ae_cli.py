"""``geom train-ae``: a point-cloud autoencoder trained with a sliced loss, from the command line.

The model, the training loop and the scores live in :mod:`geom.learn.autoencoder`; this module parses
arguments, shows a progress bar (stderr), handles Ctrl-C and writes files::

    geom train-ae --out DIR [--dataset shapes|modelnet|shapenet] [--root PATH]
                  [--loss sw|sw-qmc|sw-vmf|sw-max|sw-amortized|energy|chamfer] [--scheme S] [--option KEY=VALUE ...]
                  [--n-projections L] [--epochs E] [--batch-size B] [--lr X] [--n-points N] [--latent K]
                  [--align pca|none] [--n-per-class K] [--seed S] [--resume | --force]

The data: ``shapes`` (generated: ``--n-per-class`` seeded random instances of each class, a seeded
quarter of each class held out for testing) or ``modelnet`` / ``shapenet`` read from ``--root`` (their
own train and test splits), ``--n-points`` points per cloud; ``--align pca`` (the default for the
randomly rotated shapes) centres every cloud and turns it into its principal axes
(:func:`geom.learn.autoencoder.principal_axes`), ``--align none`` (the default for the loaders, whose
collections come aligned) keeps the dataset's coordinates. The loss (:data:`geom.learn.autoencoder.LOSSES`):
``sw`` (SW_2, Monte Carlo directions, or ``--scheme``), ``sw-qmc`` (randomized QMC, RQSW), ``sw-vmf``
(v-DSW), ``sw-max`` (max-sliced), ``sw-amortized`` (amortized v-DSW: the network that predicts the vMF
location trains in the same Adam step, by gradient reversal), ``energy`` (the sliced energy distance) or
``chamfer``.

DIR gets, in this order: ``checkpoint.npz`` (the model's weights, Adam's state, the loss module's state
(its generator and scheme), the position ``(epoch, batch)`` in the seeded batch order, the loss of
every step and the arguments: arrays plus one JSON document, nothing pickled), ``history.npz`` (the
loss of every step and its epoch), ``reconstructions.png`` (test clouds above their reconstructions),
``interpolation.png`` (decodings along the segment between the codes of two test clouds of different
classes), ``loss.png``, ``metrics.json`` (:func:`geom.learn.autoencoder.evaluate` on the test clouds:
Chamfer, exact EMD, SW_2, the accuracy of a linear SVM on the codes; seconds per epoch) and last
``summary.json``, which lists the files and the checksum of the checkpoint they come from. Every file
is written whole (a temporary file renamed into place).

Ctrl-C stops after the current step, writes all of these and exits with status 130; ``--resume``
continues from the checkpoint (``--epochs`` may grow, no other argument may change) and repeats the
uninterrupted run bit for bit: batches come in an order fixed by ``(seed, epoch)``, and the weights,
Adam's moments and the loss's generator continue from where they stopped. ``--force`` replaces only
files an earlier ``geom train-ae`` wrote.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import pathlib
import shlex
import sys

import numpy as np
import torch

import geom
from geom._checks import check_memory, check_positive_int, describe

from ._common import _check_seed, _new_scheme, _parse_options, _scheme_class
from .flow_cli import (CHECKPOINT, SUMMARY, _Monitor, _output, _plot_loss, _prepare_out, _refuse_foreign,
                       _remove_stale, _sha256, _write_run, check_settings, checkpoint_outputs, open_checkpoint,
                       outputs_current, save_checkpoint)

__all__ = ["OUTPUTS", "configure", "run"]

OUTPUTS = (CHECKPOINT, "history.npz", "reconstructions.png", "interpolation.png", "loss.png", "metrics.json", SUMMARY)
"""Every file ``geom train-ae`` writes, in the order it writes them (``--force`` removes no other)."""
DATASETS = ("shapes", "modelnet", "shapenet")
CHECKPOINT_FORMAT = 1
RESUMABLE_KEYS = ("epochs",)
_CHECKPOINT_KEYS = ("settings", "inputs_sha256", "position", "model", "optimizer", "loss", "values", "epochs",
                    "epoch_seconds", "seconds")
N_FIGURE = 6
"""Test clouds drawn in ``reconstructions.png`` (one per class first)."""


# ---------------------------------------------------------------------------------------------- arguments


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``geom train-ae``."""
    from geom.learn.autoencoder import LOSSES

    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (absent or empty)")
    parser.add_argument("--dataset", default="shapes", choices=DATASETS,
                        help="generated shapes (default) or ModelNet / ShapeNet read from --root")
    parser.add_argument("--root", default=None, metavar="PATH", help="folder of --dataset modelnet or shapenet")
    parser.add_argument("--loss", default="sw", choices=list(LOSSES),
                        help="sw (SW_2, Monte Carlo or --scheme), sw-qmc (RQSW), sw-vmf (v-DSW), sw-max (max-sliced), "
                             "sw-amortized (amortized v-DSW), energy (sliced energy distance), chamfer (default: sw)")
    parser.add_argument("--scheme", default=None, metavar="S",
                        help="slicing scheme of --loss sw or energy (default: mc; see `geom plugins`)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
                        help="an option of the scheme, repeatable (values read as JSON where they parse)")
    parser.add_argument("--n-projections", type=int, default=100, metavar="L",
                        help="directions per step (default: 100)")
    parser.add_argument("--epochs", type=int, default=40, metavar="E", help="epochs (default: 40)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="B", help="clouds per step (default: 16)")
    parser.add_argument("--lr", type=float, default=2e-3, metavar="X", help="Adam's step size (default: 0.002)")
    parser.add_argument("--n-points", type=int, default=256, metavar="N",
                        help="points per cloud, input and reconstruction (default: 256)")
    parser.add_argument("--latent", type=int, default=64, metavar="K", help="size of the code (default: 64)")
    parser.add_argument("--align", default=None, choices=("pca", "none"),
                        help="pca: centre each cloud and turn it into its principal axes; none: as the dataset gives "
                             "them (default: pca for the randomly rotated shapes, none for modelnet and shapenet)")
    parser.add_argument("--n-per-class", type=int, default=40, metavar="K",
                        help="--dataset shapes: instances per class (default: 40)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the data, the split, the weights, the batch order and the directions "
                             "(default: 0)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help=f"continue the run whose {CHECKPOINT} is in DIR")
    group.add_argument("--force", action="store_true", help="replace the outputs of an earlier geom train-ae in DIR")


def _settings(args) -> dict:
    """The checked arguments (everything a checkpoint must agree on, plus ``epochs``)."""
    from geom.learn.autoencoder import LOSSES

    epochs = check_positive_int(args.epochs, "--epochs")
    for flag in ("n_projections", "batch_size", "n_points", "latent", "n_per_class"):
        check_positive_int(getattr(args, flag), "--" + flag.replace("_", "-"))
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr: expected a positive number, got {args.lr}")
    _check_seed(args.seed)
    if args.dataset == "shapes" and args.root is not None:
        raise ValueError(f"--root: --dataset shapes is generated, it reads no folder; got --root {args.root}")
    if args.dataset != "shapes" and args.root is None:
        raise ValueError(f"--root: --dataset {args.dataset} is read from a folder; give --root PATH")
    default = LOSSES[args.loss][1]
    options = _parse_options(args.options)
    if default is None and (args.scheme is not None or options):
        raise ValueError(f"--{'scheme' if args.scheme is not None else 'option'}: --loss {args.loss} has no slicing "
                         f"scheme")
    scheme = args.scheme if args.scheme is not None else default
    if args.scheme is not None and args.loss not in ("sw", "energy") and args.scheme != default:
        raise ValueError(f"--scheme: --loss {args.loss} slices with {default!r}; use --loss sw --scheme "
                         f"{args.scheme} for another scheme, got --scheme {args.scheme}")
    if scheme is not None:
        _scheme_class(scheme)
        _new_scheme(scheme, options)  # bad options fail here, naming --option
    # lower bounds: the clouds, the decoder's last layer, the directions
    check_memory(12 * args.batch_size * args.n_points, "--n-points", f"batches of {args.batch_size} clouds of "
                 f"{args.n_points} points")
    check_memory(4 * 3 * args.n_points * 256, "--n-points", f"a decoder to {args.n_points} points")
    check_memory(24 * args.n_projections, "--n-projections", f"{args.n_projections} directions per step")
    align = args.align or ("pca" if args.dataset == "shapes" else "none")
    return dict(dataset=args.dataset, root=args.root, align=align, loss=args.loss, scheme=scheme, options=options,
                n_projections=args.n_projections, epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                n_points=args.n_points, latent=args.latent, n_per_class=args.n_per_class if args.dataset == "shapes"
                else None, seed=args.seed)


def _command_line(args) -> list[str]:
    """The ``geom train-ae`` call that reproduces ``args`` (without --resume / --force)."""
    argv = ["geom", "train-ae", "--out", args.out, "--dataset", args.dataset, "--loss", args.loss]
    if args.root is not None:
        argv += ["--root", args.root]
    if args.align is not None:
        argv += ["--align", args.align]
    if args.scheme is not None:
        argv += ["--scheme", args.scheme]
    for item in args.options:
        argv += ["--option", item]
    argv += ["--n-projections", str(args.n_projections), "--epochs", str(args.epochs), "--batch-size",
             str(args.batch_size), "--lr", repr(args.lr), "--n-points", str(args.n_points), "--latent",
             str(args.latent), "--seed", str(args.seed)]
    if args.dataset == "shapes":
        argv += ["--n-per-class", str(args.n_per_class)]
    return argv


# ---------------------------------------------------------------------------------------------- inputs and objects


def _data(s: dict, *, index_only: bool = False) -> dict | None:
    """The train and test clouds, and the SHA-256 of their bytes (a resume must see the same data);
    with ``index_only`` the dataset is only opened (a loader indexes its folder), to fail early."""
    from geom.learn.autoencoder import load_clouds

    options = {"n_per_class": s["n_per_class"]} if s["dataset"] == "shapes" else {}
    try:
        if index_only:
            geom.load_dataset(s["dataset"], root=s["root"], n_points=s["n_points"], seed=s["seed"], **options)
            return None
        data = load_clouds(s["dataset"], root=s["root"], n_points=s["n_points"], seed=s["seed"],
                           align=None if s["align"] == "none" else s["align"], progress=s["dataset"] != "shapes",
                           **options)
    except (TypeError, ValueError, OSError) as exc:
        text = str(exc)
        for old in ("root: ", "name: "):
            if text.startswith(old):
                text = ("--root: " if old == "root: " else "--dataset: ") + text[len(old):]
                break
        else:
            text = f"--dataset {s['dataset']}: {text}"
        raise type(exc)(text) from None
    if len(data["train"][0]) < 1 or len(data["test"][0]) < 1:
        raise ValueError(f"--dataset: expected train and test clouds, got {len(data['train'][0])} and "
                         f"{len(data['test'][0])}")
    digest = hashlib.sha256()
    for part in ("train", "test"):
        for t in data[part]:
            digest.update(t.contiguous().numpy().tobytes())
    return dict(data, sha256=digest.hexdigest())


def _objects(s: dict):
    """A fresh model (seeded), the loss module (seeded) and one Adam optimizer of the model's weights and the
    loss's scheme networks (an amortized projection's, trained in the same step by gradient reversal)."""
    from geom.learn.autoencoder import PointNetAutoencoder, build_loss

    model = PointNetAutoencoder(n_points=s["n_points"], latent=s["latent"], seed=s["seed"])
    loss = build_loss(s["loss"], **({} if s["scheme"] is None else dict(scheme=s["scheme"],
                      n_projections=s["n_projections"], seed=s["seed"], **s["options"])))
    psi = list(loss.scheme_parameters()) if hasattr(loss, "scheme_parameters") else []
    optimizer = torch.optim.Adam([*model.parameters(), *psi], lr=s["lr"])
    return model, optimizer, loss


# ---------------------------------------------------------------------------------------------- checkpoints


def _save_checkpoint(out: pathlib.Path, tree: dict) -> str:
    return save_checkpoint(out, tree, "train-ae", CHECKPOINT_FORMAT, OUTPUTS)


def _read_checkpoint(out: pathlib.Path, s: dict, data: dict, model, optimizer, loss) -> dict:
    """The checkpoint in ``out``, checked against the arguments and the data, loaded into ``model``,
    ``optimizer`` and ``loss`` (fresh ones built with the same arguments); one-line ValueErrors."""
    from geom.learn.autoencoder import CloudBatches

    ck, bad = open_checkpoint(out / CHECKPOINT, "train-ae", CHECKPOINT_FORMAT, _CHECKPOINT_KEYS)
    saved = ck["settings"]
    check_settings(saved, s, out, "train-ae", bad, RESUMABLE_KEYS)
    if ck["inputs_sha256"] != data["sha256"]:
        raise ValueError(f"--resume: the data differ from those the run in '{out}' started from")
    per_epoch = len(CloudBatches(data["train"][0], s["batch_size"]))
    position = ck["position"]
    if not (isinstance(position, list) and len(position) == 2 and all(type(v) is int for v in position)
            and position[0] >= 0 and 0 <= position[1] < per_epoch):
        raise bad(f"its position is {position!r}; expected [epoch, batch] with 0 <= batch < {per_epoch}")
    steps = position[0] * per_epoch + position[1]
    for name, dtype in (("values", torch.float64), ("epochs", torch.int64)):
        t = ck[name]
        if not (isinstance(t, torch.Tensor) and t.dtype == dtype and t.shape == (steps,)):
            raise bad(f"it holds {name} as {describe(t)}; expected a {dtype} tensor of shape ({steps},)")
    if not bool(torch.isfinite(ck["values"]).all()):
        raise bad("its loss values are not all finite")
    times = ck["epoch_seconds"]
    if not (isinstance(times, list) and len(times) <= position[0]
            and all(type(v) in (int, float) and math.isfinite(v) and v >= 0 for v in times)) \
            or type(ck["seconds"]) not in (int, float) or not math.isfinite(ck["seconds"]):
        raise bad("its timings are not finite numbers, one per finished epoch")
    for name, target in (("model", model), ("optimizer", optimizer), ("loss", loss)):
        state = ck[name]
        if not isinstance(state, dict):
            raise bad(f"it holds the {name}'s state as {describe(state)}")
        if name == "model":
            own = target.state_dict()
            if set(state) != set(own) or any(not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape
                                             or state[k].dtype != own[k].dtype
                                             or not bool(torch.isfinite(state[k]).all()) for k in own):
                raise bad("its model weights do not fit the model of these arguments (or are not finite)")
        try:
            target.load_state_dict(state)
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise bad(f"its {name} state does not fit ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                      ) from None
    for param, st in optimizer.state.items():  # torch checks neither the moments' shapes nor their values
        for name, t in st.items():
            if not isinstance(t, torch.Tensor) or (name != "step" and t.shape != param.shape):
                raise bad(f"its optimizer state {name!r} is {describe(t)}; expected the shape of its weights "
                          f"{tuple(param.shape)}")
            if not bool(torch.isfinite(t).all()):
                raise bad("its optimizer moments are not all finite")
    return ck | dict(sha256=_sha256(out / CHECKPOINT))


# ---------------------------------------------------------------------------------------------- outputs


def _figure_items(labels: torch.Tensor, k: int) -> list[int]:
    """``k`` test items: the first of each class, then the next ones."""
    first = [int(np.flatnonzero(labels.numpy() == c)[0]) for c in torch.unique(labels).tolist()]
    rest = [i for i in range(len(labels)) if i not in first]
    return (first + rest)[:k]


def _write_outputs(out: pathlib.Path, s: dict, ck: dict, data: dict, model, args, ours: set[str], digest: str) -> dict:
    """The outputs of checkpoint ``ck`` (its weights loaded in ``model``), each replaced whole, then
    ``summary.json``."""
    from geom.learn import autoencoder as ae

    values, epochs = ck["values"].numpy(), ck["epochs"].numpy()
    with _output(out / "history.npz") as fh:
        np.savez(fh, values=values, epochs=epochs)
    (xt, yt), (x, y), classes = data["test"], data["train"], data["classes"]
    pick = _figure_items(yt, N_FIGURE)
    shown = xt[pick]
    with _output(out / "reconstructions.png") as fh:
        ae.plot_reconstructions(shown, ae.reconstruct(model, shown), fh, titles=[classes[int(yt[i])] for i in pick])
    j = next((i for i in pick[1:] if int(yt[i]) != int(yt[pick[0]])), pick[-1])
    with _output(out / "interpolation.png") as fh:
        ae.plot_interpolation(model, xt[pick[0]], xt[j], fh, titles=(classes[int(yt[pick[0]])], classes[int(yt[j])]))
    with _output(out / "loss.png") as fh:
        steps = np.arange(1, len(values) + 1)
        _plot_loss(steps, values if len(values) else np.zeros(0), f"training loss ({s['loss']})", fh)
    probe = len(torch.unique(y)) > 1
    scores = ae.evaluate(model, xt, seed=s["seed"], **(dict(labels=yt, train=(x, y)) if probe else {}))
    times = ck["epoch_seconds"]
    metrics = dict(chamfer=scores["chamfer"], emd=scores["emd"], sw=scores["sw"],
                   probe_accuracy=scores.get("probe_accuracy"), n_train=len(x), n_test=len(xt),
                   steps=len(values), epochs_done=ck["position"][0],
                   loss_start=float(values[0]) if len(values) else None,
                   loss_end=float(values[-1]) if len(values) else None,
                   seconds=ck["seconds"], seconds_per_epoch=float(np.mean(times)) if times else None,
                   per_item=scores["per_item"])
    with _output(out / "metrics.json", "w") as fh:
        fh.write(json.dumps(metrics, indent=2) + "\n")
    _remove_stale(out, ours, list(OUTPUTS))
    done = ck["position"][0] >= s["epochs"]
    summary = dict(command=_command_line(args), **s, epochs_done=ck["position"][0], position=ck["position"],
                   complete=done, resumed=bool(args.resume), classes=classes,
                   **{k: metrics[k] for k in ("chamfer", "emd", "sw", "probe_accuracy", "seconds_per_epoch")},
                   version=geom.__version__, files=list(OUTPUTS), checkpoint_sha256=digest)
    with _output(out / SUMMARY, "w") as fh:  # last: it lists the files above
        fh.write(json.dumps(summary, indent=2) + "\n")
    return metrics


# ---------------------------------------------------------------------------------------------- running


class _Progress(_Monitor):
    """train's callback: the progress bar (epoch and loss) and Ctrl-C (False stops after the step)."""

    def __call__(self, epoch, batch, value):
        self.bar.update(1)
        self.bar.set_postfix_str(f"epoch={epoch + 1} loss={value:.4g}", refresh=False)
        return not self.interrupted


def run(args: argparse.Namespace) -> int:
    """Run ``geom train-ae``; returns 0, or 130 when interrupted (after writing the checkpoint)."""
    import time

    from tqdm import tqdm

    from geom.learn.autoencoder import CloudBatches, train

    s = _settings(args)
    _data(s, index_only=True)  # a missing or malformed --root fails before --out is made
    out, ours = _prepare_out(args.out, "train-ae", OUTPUTS, resume=args.resume, force=args.force)
    data = _data(s)
    cmd = " ".join(shlex.quote(a) for a in _command_line(args)) + " --resume"
    model, optimizer, loss = _objects(s)
    loader = CloudBatches(data["train"][0], s["batch_size"], seed=s["seed"])
    values, epochs, times, seconds, position = [], [], [], 0.0, (0, 0)
    if args.resume:
        ours = ours | checkpoint_outputs(out, "train-ae", OUTPUTS)
        previous = _read_checkpoint(out, s, data, model, optimizer, loss)
        _refuse_foreign(out, "train-ae", OUTPUTS, ours, "--resume")
        position = tuple(previous["position"])
        values, epochs = previous["values"].tolist(), previous["epochs"].tolist()
        times, seconds = list(previous["epoch_seconds"]), float(previous["seconds"])
        if position[0] >= s["epochs"]:
            if outputs_current(out, previous["sha256"], OUTPUTS):
                raise ValueError(f"--resume: the run in '{args.out}' already did {position[0]} epochs; "
                                 f"give --epochs larger than that to continue it")
            _write_outputs(out, s, previous, data, model, args, ours, previous["sha256"])
            print(f"train-ae: the run had done its {position[0]} epochs; its outputs were written again from its "
                  f"checkpoint, in {out}")
            return 0

    t0 = time.perf_counter()
    bar = tqdm(total=s["epochs"] * len(loader), initial=position[0] * len(loader) + position[1],
               desc=f"geom train-ae {s['loss']}", unit="step", file=sys.stderr, dynamic_ncols=True)
    try:
        with _Progress(bar, 0) as monitor:
            result = train(model, loader, loss, s["epochs"], optimizer, start=position, callback=monitor)
    except ValueError as exc:
        if str(exc).startswith("loss: became"):
            raise ValueError(f"--lr: the training diverged ({exc}; now --lr {s['lr']:g})") from None
        raise
    finally:
        bar.close()
    seconds += time.perf_counter() - t0
    values += result.values
    epochs += result.epochs
    times += result.epoch_seconds
    tree = dict(settings=s, inputs_sha256=data["sha256"], position=list(result.position), model=model.state_dict(),
                optimizer=optimizer.state_dict(), loss=loss.state_dict(),
                values=torch.tensor(values, dtype=torch.float64), epochs=torch.tensor(epochs, dtype=torch.int64),
                epoch_seconds=times, seconds=seconds)
    rc, metrics = _write_run(out, tree, _save_checkpoint,
                             lambda digest: _write_outputs(out, s, tree, data, model, args, ours, digest),
                             done=result.position[0] * len(loader) + result.position[1],
                             steps=s["epochs"] * len(loader),
                             interrupted=monitor.interrupted, cmd=cmd)
    if rc is not None:
        return rc
    probe = "-" if metrics["probe_accuracy"] is None else f"{metrics['probe_accuracy']:.3f}"
    print(f"train-ae {s['loss']}: loss {metrics['loss_start']:.4g} -> {metrics['loss_end']:.4g} in {s['epochs']} "
          f"epochs ({seconds:.1f} s); test Chamfer {metrics['chamfer']:.4g}, EMD {metrics['emd']:.4g}, SW_2 "
          f"{metrics['sw']:.4g}, probe accuracy {probe}; outputs in {out}")
    return 0
