"""``geom flow`` and ``geom generate``: point-cloud flows from the command line.

The algorithms live in the library (:func:`geom.flows.sw_flow`, :func:`geom.flows.swf`,
:func:`geom.flows.conditional_swf`, :func:`geom.flows.mmd_flow`); this module parses arguments, shows a
progress bar (stderr), handles Ctrl-C and writes files::

    geom flow SOURCE TARGET --method sw|swf|cswf|mmd [--scheme S] [--option KEY=VALUE ...] [--steps N]
              [--lr X] [--n-projections L] [--n-points N] [--seed K] [--record-every K]
              [--labels SPEC] [--label-scale S] [--normalize sphere|box] [--root DIR] --out DIR
              [--resume | --force]
    geom generate --method swf|cswf|mmd --dataset NAME [--n-samples N] [--steps N] [--seed K]
              [--class C] [--normalize sphere|box] [--root DIR] --out DIR [--force]

SOURCE and TARGET are files (any format :func:`geom.measure` reads; meshes give ``--n-points`` seeded
surface samples), ``dataset:NAME:INDEX`` (item INDEX of ``geom.load_dataset(NAME, root=DIR, seed=K)``, ``--root`` for
datasets read from disk) or, for SOURCE, ``noise`` (``--n-points`` Gaussian points centred at the
target's mean, with its RMS radius). ``--normalize sphere|box`` moves and scales SOURCE and TARGET
each on its own (:func:`geom.measure`); the flow then runs, and every output (trajectory, final
cloud, frames) is written, in those normalised coordinates. ``--lr`` is the step size of each
method: Adam's learning rate for ``sw`` and the length per step for ``mmd`` (default: a fraction
of the target's scale, :data:`geom.flows.DEFAULT_STEP`, so that large and small shapes converge
alike), the fraction of the full transport step for ``swf`` and ``cswf`` (default 0.5); the
summary records the value used.

``cswf`` is the conditional SWF between labelled clouds: each point carries a part label and the
flow sends every part of SOURCE to the same part of TARGET. ``--labels AXIS:K`` (default ``z:4``)
cuts each cloud into K slabs of equal size along a coordinate (x, y, z or its index); ``--labels
npz`` takes the ``labels`` arrays (one integer per point) of two ``.npz`` archives.

``geom flow`` writes into DIR, in this order: ``checkpoint.npz`` (particles, generator state, the
scheme's state, Adam's moments or the velocity, part labels, the recorded frames and the arguments:
arrays plus one JSON document, nothing pickled), ``trajectory.npz`` (``trajectory (T, N, d)``,
``steps``, ``values``, and the particles' ``labels`` for ``cswf``), ``final.ply`` (``final.npy`` when
d > 3), ``frames.png``, ``loss.png`` and last ``summary.json``, which lists the files written and the
checksum of the checkpoint they come from. Every file is written to a temporary file and renamed
into place, so each is whole, old or new, whatever happens. Ctrl-C stops at the current step,
writes all of these and exits with status 130; ``--resume`` continues the run (``--steps`` may grow;
any other differing argument is refused) and repeats the uninterrupted one exactly, for every
method. A checkpoint that is complete but whose outputs are missing or stale (a second Ctrl-C, a
full disk) makes ``--resume`` write them. ``--force`` replaces a finished run's files: it removes
only files that an earlier run of the same command wrote there (those its summary or checkpoint
lists) and refuses where the folder holds a file of an output's name that no such run wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import pathlib
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

import geom
import geom.flows
from geom._checks import check_memory, check_positive_int, describe
from geom._files import TEMP_PREFIX, atomic_write
from geom._state import flatten, load_npz, read_npz, save_npz, unflatten

from ._common import (_add_normalize, _check_seed, _interruption_point, _measure, _named,
                      _new_scheme, _parse_options, _scheme_class, _sigint_held, exact_w2)

__all__ = ["configure_flow", "configure_generate", "run_flow", "run_generate"]

FLOW_METHODS = ("sw", "swf", "cswf", "mmd")
DEFAULT_LR = {"swf": 0.5, "cswf": 0.5}
"""Step size of the SWF methods when ``--lr`` is not given (a fraction of the transport step); sw
and mmd take the library's default, a fraction of the target's scale (:data:`geom.flows.DEFAULT_STEP`)."""
RESUMABLE_KEYS = ("steps",)
"""Arguments that ``--resume`` may change."""
CHECKPOINT, SUMMARY, LEGACY_CHECKPOINT = "checkpoint.npz", "summary.json", "checkpoint.pt"
CHECKPOINT_FORMAT = 1
"""Layout of ``checkpoint.npz``; another number is refused."""
FLOW_OUTPUTS = (CHECKPOINT, "trajectory.npz", "final.ply", "final.npy", "frames.png", "loss.png", SUMMARY)
"""Every file ``geom flow`` writes (``--force`` removes no other)."""
GENERATE_OUTPUTS = ("samples.npz", "samples.png", SUMMARY)
"""Every file ``geom generate`` writes."""
MAX_JSON = 16 << 20
"""Largest summary.json read back (to find which files an earlier run wrote)."""


# ---------------------------------------------------------------------------------------------- inputs


def _dataset_class(name: str, what: str) -> type:
    """The dataset registered as ``name``; a ValueError naming the argument ``what`` lists the registered ones."""
    from geom.registry import get_dataset

    try:
        return get_dataset(name)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        raise type(exc)(f"{what}: {text.split(': ', 1)[1] if text.startswith('name: ') else text}") from None


def _load_dataset(name: str, args, what: str, **options):
    """``geom.load_dataset(name, root=--root, **options)``; errors name the argument ``what``."""
    try:
        return geom.load_dataset(name, root=args.root, **options)
    except (TypeError, ValueError, OSError) as exc:
        raise type(exc)(f"{what}: dataset {name!r}: {exc}") from None


def _dataset_item(name: str, index_text: str, args, what: str):
    cls = _dataset_class(name, what)
    try:
        index = int(index_text)
    except ValueError:
        raise ValueError(f"{what}: expected dataset:NAME:INDEX with an integer INDEX, got {index_text!r}") from None
    options = {"seed": args.seed} if "seed" in cls.options else {}
    if "n_points" in cls.options:
        options["n_points"] = args.n_points
    data = _load_dataset(name, args, what, **options)
    if not -len(data) <= index < len(data):
        raise ValueError(f"{what}: dataset {name!r} has {len(data)} items, got index {index}")
    item, _ = data[index]
    return _weighted_cloud(item, what, args.normalize)


def _weighted_cloud(obj, what: str, normalize: str | None = None):
    """``(points (N, d), weights (N,))`` float64 of one cloud (normalised on its own with ``normalize``),
    its zero-weight points dropped."""
    m = _measure(obj, what, normalize=normalize) if normalize or not isinstance(obj, geom.Measure) else obj
    if m.batch_size != 1 or m.support.ndim != 3:
        raise ValueError(f"{what}: expected one point cloud (N, d), got a measure of kind {m.kind!r} "
                         f"with support {tuple(m.support.shape)}")
    x, w = m.support[0].detach().to("cpu", torch.float64), m.weights[0].detach().to("cpu", torch.float64)
    keep = w > 0
    return x[keep], w[keep] / w[keep].sum()


def _cloud_of(obj, what: str, normalize: str | None = None) -> torch.Tensor:
    """``(N, d)`` float64 points of one cloud (its positive-weight points)."""
    return _weighted_cloud(obj, what, normalize)[0]


def _as_input(x: torch.Tensor, w: torch.Tensor):
    """What a flow takes: the bare points when the weights are uniform, else a weighted measure."""
    return x if bool((w == w[0]).all()) else geom.measure(x, weights=w)


def _load_input(text: str, args, what: str, target=None):
    """SOURCE / TARGET text -> ``(points (N, d), weights (N,))`` float64; ``noise`` (SOURCE only) is
    Gaussian, centred at the mean of ``target = (points, weights)`` with its RMS radius."""
    if text == "noise":
        if target is None:
            raise ValueError(f"{what}: 'noise' is only valid as SOURCE (it takes the target's dimension and scale)")
        y, wy = target
        gen = torch.Generator().manual_seed(args.seed)
        z = torch.randn(args.n_points, y.shape[1], generator=gen, dtype=torch.float64)
        x = wy @ y + geom.flows.target_scale(_as_input(y, wy)) / math.sqrt(y.shape[1]) * z
        return x, torch.full((args.n_points,), 1.0 / args.n_points, dtype=torch.float64)
    if text.startswith("dataset:"):
        parts = text.split(":")
        if len(parts) != 3 or not parts[1]:
            raise ValueError(f"{what}: expected dataset:NAME:INDEX, got {text!r}")
        return _dataset_item(parts[1], parts[2], args, what)
    path = pathlib.Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what}: no such file '{text}' (expected a file, dataset:NAME:INDEX or noise)")
    if path.is_dir():
        raise IsADirectoryError(f"{what}: '{text}' is a directory; expected a shape file")
    options = dict(n_samples=args.n_points, seed=args.seed)
    return _weighted_cloud(_measure(str(path), what, "points", args.normalize, options), what)


# ---------------------------------------------------------------------------------------------- output folder


def _read_json(path: pathlib.Path):
    """The JSON document in ``path``, or None where it is missing, too large or not JSON."""
    try:
        if path.stat().st_size > MAX_JSON:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _written_by(out: pathlib.Path, command: str, outputs: tuple[str, ...]) -> set[str]:
    """The outputs in ``out`` that an earlier ``geom <command>`` wrote: those its summary lists and,
    for flow, those its checkpoint lists (written first, it names the files that follow it)."""
    names = set()
    summary = _read_json(out / SUMMARY)
    if isinstance(summary, dict) and isinstance(summary.get("command"), list) \
            and summary["command"][1:2] == [command] and isinstance(summary.get("files"), list):
        names.update(n for n in summary["files"] if isinstance(n, str))
    if command == "flow" and (out / CHECKPOINT).is_file():
        try:
            _, meta = load_npz(out / CHECKPOINT, meta_only=True)
        except (ValueError, OSError):
            meta = None
        if isinstance(meta, dict) and meta.get("command") == "flow" and isinstance(meta.get("outputs"), list):
            names.update(n for n in meta["outputs"] if isinstance(n, str))
    return names & set(outputs)


def _prepare_out(text: str, command: str, outputs: tuple[str, ...], *, resume: bool = False,
                 force: bool = False) -> tuple[pathlib.Path, set[str]]:
    """Check that ``--out`` can be used; returns the folder and the outputs an earlier run wrote there.

    Usable: absent or empty (temporary files of interrupted writers aside); with ``--force``, when
    every file of an output's name was written by an earlier ``geom <command>``; with ``--resume``,
    when it holds a checkpoint.
    """
    out = pathlib.Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out: '{text}' exists and is not a directory")
    present = {p.name for p in out.iterdir() if not p.name.startswith(TEMP_PREFIX)} if out.is_dir() else set()
    ours = _written_by(out, command, outputs) if present else set()
    if resume and CHECKPOINT not in present:
        if LEGACY_CHECKPOINT in present:
            raise ValueError(f"--resume: '{text}' holds only {LEGACY_CHECKPOINT}, a checkpoint of an older geom, "
                             f"which cannot be loaded safely (it is a pickle, which can run any code); it was not "
                             f"opened: start the run again in a new --out folder")
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in '{text}' to continue")
    if present and not (force or resume):
        raise FileExistsError(f"--out: '{text}' is not empty; pass --force to overwrite or --resume to continue")
    if force and not resume:
        _refuse_foreign(out, command, outputs, ours, "--force")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(f"--out: cannot write to '{text}' ({exc.strerror or exc})") from None
    return out, ours


def _refuse_foreign(out: pathlib.Path, command: str, outputs: tuple[str, ...], ours: set[str], flag: str) -> None:
    """FileExistsError where ``out`` holds a file of an output's name that no earlier run wrote."""
    foreign = sorted(n for n in outputs if (out / n).exists() and n not in ours)
    if foreign:
        raise FileExistsError(
            f"{flag}: '{out}' holds {', '.join(foreign)}, which no earlier `geom {command}` wrote there; geom "
            f"replaces only its own outputs: move {'it' if len(foreign) == 1 else 'them'} away or choose another --out")


@contextlib.contextmanager
def _output(path: pathlib.Path, mode: str = "wb"):
    """A file handle that replaces ``path`` whole on success (:func:`geom._files.atomic_write`); an
    OSError (a full disk, say) names the file and leaves the earlier one of that name as it was."""
    _interruption_point()  # a Ctrl-C that a library swallowed stops here, between two whole files
    try:
        with atomic_write(path, mode) as fh:
            yield fh
    except OSError as exc:
        raise OSError(f"--out: cannot write '{path}' ({exc.strerror or exc}); the earlier file of that name, "
                      f"if any, is intact") from None


def _remove_stale(out: pathlib.Path, ours: set[str], written: list[str]) -> None:
    """Remove the earlier run's outputs that this run did not write again (``final.ply`` for ``final.npy``)."""
    for name in sorted(ours - set(written)):
        (out / name).unlink(missing_ok=True)


def _export_cloud(x: np.ndarray, fh, name: str) -> None:
    """``final.ply`` (2-D clouds padded with z = 0) or ``final.npy`` (d > 3) into the file ``fh``."""
    n, d = x.shape
    if name.endswith(".npy"):
        np.save(fh, x)
        return
    with _sigint_held():  # trimesh catches BaseException around its optional imports: Ctrl-C waits for it
        import trimesh

    xyz = np.zeros((n, 3))
    xyz[:, :d] = x
    trimesh.PointCloud(xyz).export(file_obj=fh, file_type="ply")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, fh) -> None:
    fig.tight_layout()
    fig.savefig(fh, format="png", dpi=80)
    _pyplot().close(fig)


def _plot_frames(traj: np.ndarray, steps: np.ndarray, fh, labels: np.ndarray | None = None,
                 n_frames: int = 6, target: np.ndarray | None = None) -> None:
    """A strip of up to ``n_frames`` snapshots: 3-D scatter for d = 3, else the first two coordinates;
    points coloured by their part label when there are labels; the ``target`` drawn light behind the
    particles in every panel, whose axis limits hold both."""
    T, _, d = traj.shape
    colour = {} if labels is None else dict(c=labels % 10, cmap="tab10", vmin=0, vmax=10)
    pick = sorted(set(np.linspace(0, T - 1, min(n_frames, T)).round().astype(int).tolist()))
    fig = _pyplot().figure(figsize=(3 * len(pick), 3.2))

    def coords(x):  # what is drawn of (n, d) points: 3 coordinates for d = 3, else 2 (y = 0 on the line)
        return x[:, :3] if d == 3 else np.column_stack([x[:, 0], x[:, 1] if d > 1 else np.zeros(len(x))])

    for i, t in enumerate(pick):
        shown = [coords(traj[t])] + ([] if target is None else [coords(target)])
        lo, hi = np.min([p.min(0) for p in shown], 0), np.max([p.max(0) for p in shown], 0)
        pad = 0.02 * np.maximum(hi - lo, 1e-12)
        ax = fig.add_subplot(1, len(pick), i + 1, projection="3d" if d == 3 else None)
        if target is not None:
            ax.scatter(*shown[1].T, s=1, c="0.8", zorder=0)
        ax.scatter(*shown[0].T, s=2, zorder=1, **colour)
        for axis, a, b in zip("xyz", lo - pad, hi + pad):
            getattr(ax, f"set_{axis}lim")(a, b)
        if d != 3:
            ax.set_aspect("equal", adjustable="box")
        ax.set_title(f"step {int(steps[t])}")
    _save_figure(fig, fh)


def _plot_loss(steps: np.ndarray, values: np.ndarray, label: str, fh) -> None:
    fig, ax = _pyplot().subplots(figsize=(5, 3.5))
    positive = values > 0
    ax.plot(steps[positive], values[positive], marker=".")
    ax.set(xlabel="step", ylabel=label, yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    _save_figure(fig, fh)


# ---------------------------------------------------------------------------------------------- progress and Ctrl-C


class _Monitor:
    """The flow's callback: advances the progress bar and stops the flow once Ctrl-C has been pressed.

    While active, SIGINT sets :attr:`interrupted` (the flow then stops at the end of its current step)
    and restores the handler from before, so a second Ctrl-C stops at once.
    """

    def __init__(self, bar, offset: int):
        self.bar, self.offset, self.interrupted = bar, offset, False
        self._previous = None

    def _on_sigint(self, signum, frame):
        self.interrupted = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __enter__(self):
        _interruption_point()
        try:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: Ctrl-C raises KeyboardInterrupt as usual
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def __call__(self, step, particles, value):
        if step > 0:
            self.bar.n = self.offset + step
            self.bar.set_postfix_str(f"distance={value:.4g}", refresh=False)
            self.bar.update(0)
        return not self.interrupted


# ---------------------------------------------------------------------------------------------- flow


def configure_flow(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``geom flow``."""
    parser.add_argument("source", metavar="SOURCE",
                        help="shape file, dataset:NAME:INDEX or noise (Gaussian, with the target's mean and RMS radius)")
    parser.add_argument("target", metavar="TARGET", help="shape file or dataset:NAME:INDEX")
    parser.add_argument("--method", required=True, metavar="M",
                        help="sw (SW gradient flow, Adam), swf (sliced-Wasserstein flow), cswf (conditional SWF "
                             "between labelled parts) or mmd (sliced MMD flow)")
    parser.add_argument("--scheme", default="mc", metavar="S", help="slicing scheme (default: mc; see `geom plugins`)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
                        help="an option of the scheme, repeatable (values read as JSON where they parse)")
    parser.add_argument("--steps", type=int, default=300, metavar="N", help="number of steps (default: 300)")
    parser.add_argument("--lr", type=float, default=None, metavar="X",
                        help="step size (default: sw 0.02 and mmd 0.05 times the target's RMS radius, swf and cswf "
                             "0.5)")
    parser.add_argument("--n-projections", type=int, default=128, metavar="L", help="directions per step (default: 128)")
    parser.add_argument("--n-points", type=int, default=1024, metavar="N",
                        help="points sampled from meshes / dataset items, and noise points (default: 1024)")
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="seed of samples, noise and flow (default: 0)")
    parser.add_argument("--record-every", type=int, default=None, metavar="K",
                        help="record the particles every K steps (default: about 100 frames)")
    parser.add_argument("--labels", default=None, metavar="SPEC",
                        help="cswf: AXIS:K, K equal slabs of each cloud along x, y, z or a coordinate index "
                             "(default: z:4), or npz: the 'labels' arrays of two .npz inputs")
    parser.add_argument("--label-scale", type=float, default=None, metavar="S",
                        help="cswf: weight of the one-hot label block (default: 2)")
    _add_normalize(parser)
    parser.add_argument("--root", default=None, metavar="DIR", help="folder of on-disk datasets (dataset:NAME:INDEX)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (absent or empty); coordinates are normalised ones with --normalize")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help=f"continue the run whose {CHECKPOINT} is in DIR")
    group.add_argument("--force", action="store_true", help="replace the outputs of an earlier geom flow in DIR")


def _frame_count(record_every: int | None, steps: int) -> int:
    """How many frames :func:`_record_steps` keeps (without building them)."""
    k = record_every or max(1, steps // 100)
    return len(range(0, steps + 1, k)) + (steps % k != 0)


def _flow_settings(args) -> dict:
    """The checked argument set (everything a checkpoint must agree on, plus ``steps``)."""
    method = str(args.method).lower()
    if method not in FLOW_METHODS:
        raise ValueError(f"--method: expected one of {', '.join(FLOW_METHODS)}, got {args.method!r}")
    steps = check_positive_int(args.steps, "--steps")
    lr = DEFAULT_LR.get(method) if args.lr is None else args.lr
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"--lr: expected a positive number, got {lr}")
    n_projections = check_positive_int(args.n_projections, "--n-projections")
    n_points = check_positive_int(args.n_points, "--n-points")
    _check_seed(args.seed)
    if args.record_every is not None:
        check_positive_int(args.record_every, "--record-every")
    labels, label_scale = args.labels, args.label_scale
    if method == "cswf":
        labels = "z:4" if labels is None else str(labels)
        label_scale = 2.0 if label_scale is None else label_scale
        if not (math.isfinite(label_scale) and label_scale > 0):
            raise ValueError(f"--label-scale: expected a positive number, got {label_scale}")
    elif labels is not None or label_scale is not None:
        raise ValueError(f"--{'labels' if labels is not None else 'label-scale'}: only used by --method cswf, "
                         f"got --method {method}")
    _scheme_class(args.scheme)  # names --scheme and lists the registered ones
    options = _parse_options(args.options)
    # lower bounds (one coordinate per point); the real sizes are checked again once the inputs are read
    frames = _frame_count(args.record_every, steps)
    check_memory(32 * n_points, "--n-points", f"{n_points} particles")
    check_memory(8 * frames * n_points, "--n-points" if args.record_every is None else "--record-every",
                 f"a trajectory of {frames} frames of {n_points} points")
    check_memory(24 * n_projections, "--n-projections", f"{n_projections} directions per step")
    return dict(source=args.source, target=args.target, method=method, scheme=args.scheme, options=options,
                steps=steps, lr=lr, n_projections=args.n_projections, n_points=args.n_points, seed=args.seed,
                record_every=args.record_every, labels=labels, label_scale=label_scale, normalize=args.normalize,
                root=args.root)


def _step(s: dict, target) -> float:
    """The run's step size: ``--lr``, the SWF's default, or the library's default for the target."""
    if s["lr"] is not None:
        return s["lr"]
    return geom.flows.DEFAULT_STEP[s["method"]] * geom.flows.target_scale(target)


def _record_steps(record_every: int | None, steps: int) -> list[int]:
    k = record_every or max(1, steps // 100)
    return sorted(set(range(0, steps + 1, k)) | {steps})


def _slab_labels(x: torch.Tensor, axis: int, k: int) -> torch.Tensor:
    """``(N,)`` labels ``0..k-1``: the cloud cut into ``k`` slabs of equal size along coordinate ``axis``."""
    rank = torch.empty(len(x), dtype=torch.long)
    rank[torch.argsort(x[:, axis], stable=True)] = torch.arange(len(x))
    return rank * k // len(x)


def _npz_labels(text: str, n: int, what: str) -> torch.Tensor:
    path = pathlib.Path(text).expanduser()
    if path.suffix.lower() != ".npz" or not path.is_file():
        raise ValueError(f"--labels: 'npz' takes the labels of .npz archives; {what} is '{text}'")
    arrays = read_npz(path, {"labels"})  # checked against the bytes present, never unpickled
    if "labels" not in arrays:
        raise ValueError(f"--labels: {what} '{text}' has no 'labels' array")
    labels = arrays["labels"]
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"--labels: expected one integer label per point of {what}, shape ({n},), "
                         f"got {labels.dtype} {labels.shape}")
    return torch.from_numpy(labels.astype(np.int64))


def _point_labels(spec: str, s: dict, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Source and target part labels of ``--labels SPEC``."""
    if spec == "npz":
        return _npz_labels(s["source"], len(x), "SOURCE"), _npz_labels(s["target"], len(y), "TARGET")
    axis_text, _, k_text = spec.partition(":")
    d = x.shape[1]
    axis = {"x": 0, "y": 1, "z": 2}.get(axis_text.lower(), axis_text)
    try:
        axis, k = int(axis), int(k_text)
    except ValueError:
        raise ValueError(f"--labels: expected AXIS:K (AXIS x, y, z or a coordinate index, K an integer) or npz, "
                         f"got {spec!r}") from None
    if not 0 <= axis < d:
        raise ValueError(f"--labels: expected an axis below the dimension {d}, got {axis_text!r}")
    if not 1 <= k <= min(len(x), len(y)):
        raise ValueError(f"--labels: expected 1 <= K <= {min(len(x), len(y))} slabs, got {k}")
    return _slab_labels(x, axis, k), _slab_labels(y, axis, k)


def _run_method(s: dict, x, y, *, start: int, total: int, scheme, gen, opt_state, labels,
                monitor) -> geom.flows.FlowResult:
    """Steps ``start + 1 .. total`` of the flow from particles ``x``; recorded steps are global."""
    lr = _step(s, y)
    remaining = total - start
    local = [t - start for t in _record_steps(s["record_every"], total) if t > start]
    if start == 0:
        local = [0] + local
    common = dict(steps=remaining, n_projections=s["n_projections"], scheme=scheme, generator=gen,
                  record_every=local, callback=monitor)
    try:
        if s["method"] == "sw":
            return geom.flows.sw_flow(x, y, lr=lr, optimizer_state=opt_state, **common)
        if s["method"] == "swf":
            return geom.flows.swf(x, y, step_size=lr, **common)
        if s["method"] == "cswf":
            return geom.flows.conditional_swf(x, y, *labels, step_size=lr, label_scale=s["label_scale"],
                                              **common)
        from geom.flows import mmd_flow

        return mmd_flow(x, y, lr=lr, velocity=opt_state, **common)
    except geom.flows.FlowDiverged as exc:
        raise ValueError(f"the flow diverged at step {start + exc.step}: the {exc.what} became non-finite "
                         f"({exc.detail}); try a smaller --lr (now {lr:g})") from None
    except ValueError as exc:  # the library's argument name -> the command's
        if str(exc).startswith("n_projections:"):
            raise _named(exc, "--n-projections", ("n_projections",)) from None
        raise


# ---------------------------------------------------------------------------------------------- checkpoints

_CHECKPOINT_KEYS = ("settings", "steps_done", "particles", "source_weights", "target", "target_weights", "labels",
                    "generator_state", "scheme", "optimizer_state", "trajectory", "steps", "values", "seconds",
                    "start_value", "value")
"""The entries of a checkpoint's tree (see :func:`geom._state.flatten`)."""


def _flow_outputs(dim: int) -> list[str]:
    """The files a run in dimension ``dim`` writes, in the order it writes them."""
    return [CHECKPOINT, "trajectory.npz", "final.npy" if dim > 3 else "final.ply", "frames.png", "loss.png", SUMMARY]


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_run(out: pathlib.Path, tree: dict, save_checkpoint, write_outputs, *, done: int, steps: int,
               interrupted: bool, cmd: str):
    """The end of a run of ``geom flow`` or ``geom deform``: the checkpoint (``save_checkpoint(out, tree)``,
    written whole or not at all, Ctrl-C held), then ``write_outputs(digest)``. Returns ``(130, None)``
    after an interruption (said on stderr, with the command that continues), else ``(None, what
    write_outputs returned)``."""
    digest = None
    try:
        with _sigint_held():  # the checkpoint is written whole, or not at all
            digest = save_checkpoint(out, tree)
        written = write_outputs(digest)
    except KeyboardInterrupt:
        if digest is None:
            raise
        print(f"geom: interrupted while writing the outputs; the checkpoint of step {done} in {out} is complete: "
              f"write them with: {cmd}", file=sys.stderr)
        return 130, None
    if interrupted and done < steps:
        print(f"geom: interrupted at step {done} of {steps}; checkpoint in {out}; continue with: {cmd}",
              file=sys.stderr)
        return 130, None
    return None, written


def save_checkpoint(out: pathlib.Path, tree: dict, command: str, fmt: int, outputs) -> str:
    """Write ``checkpoint.npz`` of ``geom <command>`` (the tree's arrays plus one JSON document naming
    the command, the format, this geom's version and the ``outputs`` the run writes); its SHA-256."""
    arrays, skeleton = flatten(tree, "checkpoint")
    meta = dict(format=fmt, command=command, version=geom.__version__, outputs=list(outputs), tree=skeleton)
    with _output(out / CHECKPOINT) as fh:
        save_npz(fh, arrays, meta)
    return _sha256(out / CHECKPOINT)


def checkpoint_outputs(out: pathlib.Path, command: str, outputs) -> set[str]:
    """The outputs a ``geom <command>`` checkpoint in ``out`` names (it is written first), among ``outputs``."""
    try:
        _, meta = load_npz(out / CHECKPOINT, meta_only=True)
    except (ValueError, OSError):
        return set()
    if isinstance(meta, dict) and meta.get("command") == command and isinstance(meta.get("outputs"), list):
        return {n for n in meta["outputs"] if isinstance(n, str)} & set(outputs)
    return set()


def check_settings(saved, s: dict, out: pathlib.Path, command: str, bad, resumable: tuple[str, ...]) -> None:
    """The checkpoint's ``saved`` settings against this call's ``s``: the same keys, and equal values
    except the ``resumable`` ones (one-line ValueErrors)."""
    if not isinstance(saved, dict) or set(saved) != set(s):
        raise bad(f"its settings are not those of geom {command} ({', '.join(s)})")
    differ = [k for k in saved if k not in resumable and saved[k] != s[k]]
    if differ:
        what = "; ".join(f"{k}={saved[k]!r}, got {s[k]!r}" for k in differ)
        may = " or ".join(f"--{k.replace('_', '-')}" for k in resumable)
        raise ValueError(f"--resume: the run in '{out}' was started with other arguments: {what} "
                         f"(only {may} may change)")


def outputs_current(out: pathlib.Path, digest: str, outputs) -> bool:
    """True when the summary in ``out`` comes from the checkpoint ``digest``, lists exactly ``outputs``,
    and every one of them is there."""
    summary = _read_json(out / SUMMARY)
    return isinstance(summary, dict) and summary.get("checkpoint_sha256") == digest \
        and summary.get("files") == list(outputs) and all((out / n).is_file() for n in outputs)


def _save_checkpoint(out: pathlib.Path, tree: dict) -> str:
    return save_checkpoint(out, tree, "flow", CHECKPOINT_FORMAT, _flow_outputs(tree["particles"].shape[1]))


def _tensors(tree):
    """Every tensor in a tree."""
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (list, tuple, dict)):
        for v in tree.values() if isinstance(tree, dict) else tree:
            yield from _tensors(v)


def open_checkpoint(path: pathlib.Path, command: str, fmt: int, keys) -> tuple[dict, Callable[[str], ValueError]]:
    """The tree of the checkpoint of ``geom <command>`` at ``path`` (format ``fmt``, this geom's version,
    exactly the entries ``keys``), and ``bad(what)``, the one-line ValueError of a wrong entry."""
    advice = "it cannot be resumed: start the run again in a new --out folder"

    def bad(what: str) -> ValueError:
        return ValueError(f"--resume: checkpoint '{path}': {what}; {advice}")

    try:
        arrays, meta = load_npz(path)
    except ValueError as exc:
        raise ValueError(f"--resume: checkpoint {exc}; {advice}") from None
    if not isinstance(meta, dict) or meta.get("command") != command:
        raise bad(f"it is not a checkpoint of geom {command}")
    if meta.get("format") != fmt:
        raise bad(f"it has checkpoint format {meta.get('format')!r}; this geom reads format {fmt}")
    if meta.get("version") != geom.__version__:
        raise bad(f"it was written by geom {meta.get('version')!r}; this is geom {geom.__version__}, whose steps "
                  f"need not repeat that version's")
    try:
        ck = unflatten(arrays, meta.get("tree"), "checkpoint")
    except ValueError as exc:
        raise bad(f"it is corrupt ({exc})") from None
    if not isinstance(ck, dict) or set(ck) != set(keys):
        raise bad(f"it does not hold the entries of a checkpoint ({', '.join(keys)})")
    return ck, bad


def _read_checkpoint(out: pathlib.Path, s: dict) -> dict:
    """The checkpoint in ``out``, every entry checked (types, shapes against each other, finite numbers,
    the scheme's state against a fresh instance), plus its ``scheme`` instance, generator ``gen`` and
    ``sha256``; a one-line ValueError naming the file and what is wrong."""
    ck, bad = open_checkpoint(out / CHECKPOINT, "flow", CHECKPOINT_FORMAT, _CHECKPOINT_KEYS)
    saved = ck["settings"]
    check_settings(saved, s, out, "flow", bad, RESUMABLE_KEYS)
    if type(saved["steps"]) is not int:
        raise bad(f"its settings are not those of geom flow ({', '.join(s)})")

    def tensor(t, name: str, dtype, *shape):
        if not (isinstance(t, torch.Tensor) and t.dtype == dtype and t.ndim == len(shape)
                and all(n is None or n == m for n, m in zip(shape, t.shape))):
            want = ", ".join("?" if n is None else str(n) for n in shape)
            raise bad(f"it holds {name} as {describe(t)}; expected a {dtype} tensor of shape ({want})")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise bad(f"its {name} are not all finite")
        return t

    f64 = torch.float64
    x = tensor(ck["particles"], "particles", f64, None, None)
    N, d = x.shape
    M = len(tensor(ck["target"], "target", f64, None, d))
    wx, wy = tensor(ck["source_weights"], "source_weights", f64, N), tensor(ck["target_weights"], "target_weights", f64, M)
    T = len(tensor(ck["trajectory"], "trajectory", f64, None, N, d))
    at = tensor(ck["steps"], "steps", torch.int64, T)
    tensor(ck["values"], "values", f64, T)
    tensor(ck["generator_state"], "generator_state", torch.uint8, *torch.Generator().get_state().shape)
    done = ck["steps_done"]
    if min(N, M, d, T) == 0:
        raise bad(f"it holds an empty cloud or trajectory ({N} particles, {M} target points, {T} frames in R^{d})")
    if bool((wx < 0).any() | (wy < 0).any()) or not (wx.sum() > 0 and wy.sum() > 0):
        raise bad("it holds negative weights, or weights that sum to 0")
    if type(done) is not int or not 0 <= done <= saved["steps"]:
        raise bad(f"steps_done is {done!r}; expected an integer in [0, {saved['steps']}]")
    if at[0] != 0 or at[-1] != done or not bool((at[1:] > at[:-1]).all()):
        raise bad(f"its recorded steps {at.tolist()[:6]}... do not rise from 0 to the {done} steps done")
    labels = ck["labels"]
    if s["method"] == "cswf":
        if not (isinstance(labels, list) and len(labels) == 2):
            raise bad(f"it holds labels as {describe(labels)}; expected the source and target part labels")
        labels = (tensor(labels[0], "source labels", torch.int64, N), tensor(labels[1], "target labels", torch.int64, M))
    elif labels is not None:
        raise bad(f"it holds part labels, which --method {s['method']} does not use")
    opt = ck["optimizer_state"]
    if s["method"] == "mmd":
        tensor(opt, "the velocity", f64, N, d)
    elif s["method"] == "sw":
        if not (isinstance(opt, dict) and set(opt) == {"state", "param_groups"}):
            raise bad(f"it holds Adam's state as {describe(opt)}; expected a dict of 'state' and 'param_groups'")
        for t in _tensors(opt):
            if t.ndim and (tuple(t.shape) != (N, d) or not bool(torch.isfinite(t).all())):
                raise bad(f"it holds Adam moments of shape {tuple(t.shape)}; expected finite ({N}, {d}) like the particles")
    elif opt is not None:
        raise bad(f"it holds an optimizer state, which --method {s['method']} does not use")
    for name in ("seconds", "start_value"):
        if type(ck[name]) not in (int, float) or not math.isfinite(ck[name]):
            raise bad(f"{name} is {ck[name]!r}; expected a finite number")
    if not isinstance(ck["value"], str):
        raise bad(f"value is {ck['value']!r}; expected the description of the recorded values")
    scheme = _new_scheme(s["scheme"], s["options"])
    try:
        scheme.load_state_dict(ck["scheme"])
    except (ValueError, TypeError) as exc:
        raise bad(f"its state of scheme {s['scheme']!r} does not fit: {exc}") from None
    gen = torch.Generator()
    try:
        gen.set_state(ck["generator_state"])
    except RuntimeError as exc:
        raise bad(f"its generator state is unusable ({exc})") from None
    return ck | dict(labels=labels, scheme=scheme, gen=gen, sha256=_sha256(out / CHECKPOINT))


def _outputs_current(out: pathlib.Path, digest: str) -> bool:
    """True when the summary in ``out`` comes from the checkpoint ``digest`` and every file it lists is there."""
    summary = _read_json(out / SUMMARY)
    files = summary.get("files") if isinstance(summary, dict) else None
    return isinstance(files, list) and summary.get("checkpoint_sha256") == digest and all(
        isinstance(n, str) and n in FLOW_OUTPUTS and (out / n).is_file() for n in files)


# ---------------------------------------------------------------------------------------------- running the flow


def _check_sizes(s: dict, n: int, m: int, d: int) -> None:
    """Memory for the inputs as read (``n`` particles, ``m`` target points in R^d)."""
    frames = _frame_count(s["record_every"], s["steps"])
    check_memory(8 * frames * n * d, "--n-points" if s["record_every"] is None else "--record-every",
                 f"a trajectory of {frames} frames of {n} points in R^{d}")
    check_memory(8 * s["n_projections"] * (d + 2), "--n-projections", f"{s['n_projections']} directions in R^{d}")


def run_flow(args: argparse.Namespace) -> int:
    """Run ``geom flow``; returns 0, or 130 when interrupted (after writing the checkpoint)."""
    from tqdm import tqdm

    s = _flow_settings(args)
    out, ours = _prepare_out(args.out, "flow", FLOW_OUTPUTS, resume=args.resume, force=args.force)
    cmd = " ".join(shlex.quote(a) for a in _command_line(args)) + " --resume"
    previous = None
    if args.resume:
        previous = _read_checkpoint(out, s)
        _refuse_foreign(out, "flow", FLOW_OUTPUTS, ours, "--resume")
        done = previous["steps_done"]
        if done >= s["steps"]:
            if _outputs_current(out, previous["sha256"]):
                raise ValueError(f"--resume: the run in '{args.out}' already did {done} steps; "
                                 f"give --steps larger than that to continue it")
            _write_flow_outputs(out, s, previous, args, ours, previous["sha256"])
            print(f"{s['method']}: the run had done its {done} steps; its outputs were missing or stale and are "
                  f"written again from its checkpoint, in {out}")
            return 0
        y, wy, x, wx = (previous[k] for k in ("target", "target_weights", "particles", "source_weights"))
        start, scheme, gen, opt_state, labels = (previous[k] for k in ("steps_done", "scheme", "gen",
                                                                         "optimizer_state", "labels"))
    else:
        y, wy = _load_input(s["target"], args, "TARGET")
        x, wx = _load_input(s["source"], args, "SOURCE", target=(y, wy))
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"SOURCE, TARGET: expected the same dimension, got {x.shape[1]} and {y.shape[1]}")
        _check_sizes(s, len(x), len(y), x.shape[1])
        scheme, start, opt_state = _new_scheme(s["scheme"], s["options"]), 0, None
        labels = _point_labels(s["labels"], s, x, y) if s["method"] == "cswf" else None
        gen = torch.Generator().manual_seed(s["seed"])

    t0 = time.perf_counter()
    bar = tqdm(total=s["steps"], initial=start, desc=f"geom flow {s['method']}", unit="step", file=sys.stderr,
               dynamic_ncols=True)
    try:
        with _Monitor(bar, start) as monitor:
            result = _run_method(s, _as_input(x, wx), _as_input(y, wy), start=start, total=s["steps"], scheme=scheme,
                                 gen=gen, opt_state=opt_state, labels=labels, monitor=monitor)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0

    done = start + int(result.info["steps_done"])
    traj, at, values = result.trajectory, result.steps + start, result.values
    if previous is not None:  # the first part's frames up to where it stopped, then the new steps
        new = result.steps > 0
        traj = torch.cat([previous["trajectory"], traj[new]])
        at = torch.cat([previous["steps"], at[new]])
        values = torch.cat([previous["values"], values[new]])
        elapsed += previous["seconds"]
    tree = dict(settings=s, steps_done=done, particles=result.particles.detach().cpu(), source_weights=wx,
                target=y, target_weights=wy, labels=None if labels is None else list(labels),
                generator_state=gen.get_state(), scheme=scheme.state_dict(),
                optimizer_state=result.info.get("velocity" if s["method"] == "mmd" else "optimizer_state"),
                trajectory=traj, steps=at, values=values, seconds=elapsed,
                start_value=(previous or {}).get("start_value", float(values[0])), value=result.info["value"])
    rc, _ = _write_run(out, tree, _save_checkpoint, lambda digest: _write_flow_outputs(out, s, tree, args, ours, digest),
                       done=done, steps=s["steps"], interrupted=monitor.interrupted, cmd=cmd)
    if rc is not None:
        return rc
    print(f"{s['method']}: distance {tree['start_value']:.4g} -> {float(values[-1]):.4g} in {done} steps "
          f"({elapsed:.1f} s); outputs in {out}")
    return 0


def _command_line(args) -> list[str]:
    """The ``geom flow`` call that reproduces ``args`` (without --resume / --force)."""
    argv = ["geom", "flow", args.source, args.target, "--method", str(args.method), "--scheme", args.scheme]
    for item in args.options:
        argv += ["--option", item]
    argv += ["--steps", str(args.steps), "--n-projections", str(args.n_projections), "--n-points",
             str(args.n_points), "--seed", str(args.seed), "--out", args.out]
    if args.lr is not None:
        argv += ["--lr", repr(args.lr)]
    if args.record_every is not None:
        argv += ["--record-every", str(args.record_every)]
    if args.labels is not None:
        argv += ["--labels", args.labels]
    if args.label_scale is not None:
        argv += ["--label-scale", repr(args.label_scale)]
    if args.normalize is not None:
        argv += ["--normalize", args.normalize]
    if args.root is not None:
        argv += ["--root", args.root]
    return argv


def _write_flow_outputs(out: pathlib.Path, s: dict, ck: dict, args, ours: set[str], digest: str) -> None:
    """The outputs of checkpoint ``ck`` (SHA-256 ``digest``), each replaced whole, then the earlier run's
    stale outputs removed, then ``summary.json``, which lists them all."""
    traj, steps, values = (ck[k].numpy() for k in ("trajectory", "steps", "values"))
    particles = ck["particles"].numpy()
    labels = None if ck["labels"] is None else ck["labels"][0].numpy()  # the particles' part labels
    files = _flow_outputs(particles.shape[1])
    with _output(out / "trajectory.npz") as fh:
        np.savez(fh, trajectory=traj, steps=steps, values=values, **({} if labels is None else {"labels": labels}))
    with _output(out / files[2]) as fh:
        _export_cloud(particles, fh, files[2])
    with _output(out / "frames.png") as fh:
        _plot_frames(traj, steps, fh, labels, target=ck["target"].numpy())
    label = {"mmd": "sliced energy distance", "cswf": "SW_2 of (point, label) to the target"}.get(
        s["method"], "SW_2 to the target")
    with _output(out / "loss.png") as fh:
        _plot_loss(steps, values, label, fh)
    _remove_stale(out, ours, files)
    summary = dict(
        command=_command_line(args), method=s["method"], scheme=s["scheme"], options=s["options"], seed=s["seed"],
        lr=_step(s, _as_input(ck["target"], ck["target_weights"])), normalize=s["normalize"], n_projections=s["n_projections"], n_points=s["n_points"], steps=s["steps"],
        steps_done=ck["steps_done"], complete=ck["steps_done"] >= s["steps"], resumed=bool(args.resume),
        value=ck["value"], start_value=ck["start_value"], end_value=float(values[-1]),
        n_source=int(traj.shape[1]), n_target=int(ck["target"].shape[0]), dim=int(traj.shape[2]),
        final=files[2], seconds=round(ck["seconds"], 3), version=geom.__version__, files=files,
        checkpoint_sha256=digest,
    )
    if labels is not None:
        summary.update(labels=s["labels"], label_scale=s["label_scale"], n_labels=int(len(np.unique(labels))))
    with _output(out / SUMMARY, "w") as fh:
        fh.write(json.dumps(summary, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- generate

GENERATE_METHODS = ("swf", "cswf", "mmd")
HELD_OUT = 0.25
"""Share of the items (of every class) held out to score the samples."""
MAX_POOL = 4096
"""Point-cloud datasets: at most this many pooled training points (seeded subsample) per flow target."""


def configure_generate(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``geom generate``."""
    parser.add_argument("--method", required=True, metavar="M",
                        help="swf (sliced-Wasserstein flow), cswf (class-conditional SWF) or mmd (sliced MMD flow)")
    parser.add_argument("--dataset", required=True, metavar="NAME", help="dataset to imitate (see `geom datasets`)")
    parser.add_argument("--n-samples", type=int, default=None, metavar="N",
                        help="samples to generate: per class for cswf (default 20), in all otherwise (default 200)")
    parser.add_argument("--steps", type=int, default=200, metavar="N", help="flow steps (default: 200)")
    parser.add_argument("--lr", type=float, default=None, metavar="X", help="step size (default: swf/cswf 0.5, mmd 0.05)")
    parser.add_argument("--n-projections", type=int, default=128, metavar="L", help="directions per step (default: 128)")
    parser.add_argument("--label-scale", type=float, default=5.0, metavar="S",
                        help="cswf: weight of the one-hot label block (default: 5)")
    parser.add_argument("--n-points", type=int, default=256, metavar="N",
                        help="point-cloud datasets: points per item (default: 256)")
    parser.add_argument("--seed", type=int, default=0, metavar="K",
                        help="seed of the data split, the noise and the flow (default: 0)")
    parser.add_argument("--class", dest="cls", default=None, metavar="C", help="generate this class only")
    _add_normalize(parser)
    parser.add_argument("--root", default=None, metavar="DIR", help="folder of an on-disk dataset")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (absent or empty)")
    parser.add_argument("--force", action="store_true", help="overwrite the outputs in a non-empty DIR")


def _split_data(name: str, args):
    """``(train (M, d), train labels (M,), test (K, d), test labels (K,), classes, is_digits)``, float64.

    Digits: the 64-D intensity vectors of the dataset's own seeded stratified split. Other datasets:
    items are point clouds (or measures, such as the airports of one state on the sphere); a seeded
    quarter of each class's items is held out, or, for a class of one item, a seeded quarter of that
    item's points (none of a single point), and the points are pooled (a point's label is its item's
    class).
    """
    cls = _dataset_class(name, "--dataset")
    if name == "digits":
        if args.normalize is not None:
            raise ValueError(f"--normalize: the digits are 64-D intensity vectors, one per item, not shapes; got "
                             f"--normalize {args.normalize}")
        train = _load_dataset(name, args, "--dataset", representation="vectors", split="train", seed=args.seed)
        test = _load_dataset(name, args, "--dataset", representation="vectors", split="test", seed=args.seed)
        (x, y), (xt, yt) = train.batch(), test.batch()
        return x.double(), y, xt.double(), yt, list(train.classes), True
    options = {k: v for k, v in (("seed", args.seed), ("n_points", args.n_points)) if k in cls.options}
    data = _load_dataset(name, args, "--dataset", **options)
    if len(data) == 0:
        raise ValueError(f"--dataset: {name!r} has no items")
    labels = np.array([int(data[i][1]) for i in range(len(data))])
    rng = np.random.default_rng(args.seed)

    def cloud(i):
        return _cloud_of(data[int(i)][0], f"--dataset: {name!r} item {int(i)}", args.normalize)

    held = np.zeros(len(data), dtype=bool)  # items held out
    split = {}  # item of a one-item class -> (its points, their seeded order, how many are held out)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        if len(rows) > 1:
            held[rows[: max(1, round(HELD_OUT * len(rows)))]] = True
            continue
        points = cloud(rows[0])
        if len(points) < 2:  # one point: nothing to hold out, it trains
            continue
        split[int(rows[0])] = (points, torch.from_numpy(rng.permutation(len(points))),
                               max(1, round(HELD_OUT * len(points))))
    train, test = [], []  # (points (n, d), label) of every part, in item order
    for i in range(len(data)):
        if i in split:
            points, order, k = split[i]
            test.append((points[order[:k]], labels[i]))
            train.append((points[order[k:]], labels[i]))
        else:
            (test if held[i] else train).append((cloud(i), labels[i]))

    def pool(parts):
        x = torch.cat([p for p, _ in parts])
        lab = torch.cat([torch.full((len(p),), int(c)) for p, c in parts])
        if len(x) > MAX_POOL:
            keep = torch.from_numpy(np.sort(rng.choice(len(x), MAX_POOL, replace=False)))
            x, lab = x[keep], lab[keep]
        return x, lab

    x, y = pool(train)
    xt, yt = pool(test)
    return x, y, xt, yt, list(data.classes), False


def _plot_samples(samples: np.ndarray, labels: np.ndarray, held: np.ndarray, held_labels: np.ndarray, classes,
                  digits: bool, fh, max_panels: int = 12) -> None:
    """Digits: 8x8 images, one row per class (one grid when unconditional). Clouds: one panel per
    generated shape (the samples of a class; all samples when unconditional), its held-out points
    grey behind it (the first ``max_panels`` classes)."""
    plt = _pyplot()
    present = sorted(set(labels.tolist()))[:max_panels]
    if digits:
        rows = [np.flatnonzero(labels == c)[:10] for c in present] if len(present) > 1 else \
            [np.arange(len(samples))[i:i + 10] for i in range(0, min(len(samples), 100), 10)]
        ncol = max(len(r) for r in rows)
        fig, axes = plt.subplots(len(rows), ncol, figsize=(ncol * 0.8, len(rows) * 0.8), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for i, row in enumerate(rows):
            for j, k in enumerate(row):
                axes[i, j].imshow(samples[k].reshape(8, 8).clip(0, 1), cmap="gray_r", vmin=0, vmax=1)
            if len(present) > 1:
                axes[i, 0].set_title(classes[present[i]], fontsize=7, loc="left")
    else:
        d = samples.shape[1]
        ncol = min(len(present), 4)
        nrow = -(-len(present) // ncol)
        fig = plt.figure(figsize=(4.5 * ncol, 4.5 * nrow))
        for i, c in enumerate(present):
            ax = fig.add_subplot(nrow, ncol, i + 1, projection="3d" if d == 3 else None)
            ref = held[held_labels == c] if c >= 0 else held
            for x, style in ((ref, dict(s=2, c="0.8")), (samples[labels == c], dict(s=6))):
                ax.scatter(*(x[:, :3].T if d == 3 else x[:, :2].T), **style)
            name = classes[c] if c >= 0 else "samples"
            ax.set_title(f"{name} ({int((labels == c).sum())} points; grey: held-out)", fontsize=9)
    _save_figure(fig, fh)


def run_generate(args: argparse.Namespace) -> int:
    """Run ``geom generate``; returns 0, or 130 when interrupted (the samples so far are written)."""
    from tqdm import tqdm

    method = str(args.method).lower()
    if method not in GENERATE_METHODS:
        raise ValueError(f"--method: expected one of {', '.join(GENERATE_METHODS)}, got {args.method!r}")
    steps = check_positive_int(args.steps, "--steps")
    lr = (0.05 if method == "mmd" else 0.5) if args.lr is None else args.lr
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"--lr: expected a positive number, got {lr}")
    n = check_positive_int(args.n_samples if args.n_samples is not None else (20 if method == "cswf" else 200),
                           "--n-samples")
    n_projections = check_positive_int(args.n_projections, "--n-projections")
    n_points = check_positive_int(args.n_points, "--n-points")
    if not (math.isfinite(args.label_scale) and args.label_scale > 0):
        raise ValueError(f"--label-scale: expected a positive number, got {args.label_scale}")
    _check_seed(args.seed)
    # lower bounds (one coordinate per point); checked again with the dimension of the data
    check_memory(32 * n, "--n-samples", f"{n} samples")
    check_memory(12 * n_points, "--n-points", f"items of {n_points} points")
    check_memory(24 * n_projections, "--n-projections", f"{n_projections} directions per step")
    out, _ = _prepare_out(args.out, "generate", GENERATE_OUTPUTS, force=args.force)

    x, y, xt, yt, classes, digits = _split_data(args.dataset, args)
    if args.cls is not None:
        if str(args.cls) not in classes:
            raise ValueError(f"--class: expected one of {', '.join(map(str, classes))}, got {args.cls!r}")
        c = classes.index(str(args.cls))
        if method != "cswf":  # unconditional flows learn the chosen class alone
            x, y, xt, yt = x[y == c], y[y == c], xt[yt == c], yt[yt == c]
        wanted = [c]
    else:
        wanted = sorted(set(y.tolist()))
    # Datasets of shapes: an unconditional flow learns each class alone (a new whole shape per class, --n-samples
    # points each); pooled, the classes' points would make one meaningless blob. Others: one pooled distribution.
    per_class = method != "cswf" and _dataset_class(args.dataset, "--dataset").items_are_shapes and len(wanted) > 1
    if method == "cswf" or per_class:
        labels = torch.tensor(wanted).repeat_interleave(n)
    else:
        labels = torch.full((n,), wanted[0] if len(wanted) == 1 else -1)
    d = x.shape[1]
    check_memory(32 * len(labels) * d, "--n-samples", f"{len(labels)} samples in R^{d}")
    check_memory(8 * n_projections * (d + 2 * (len(labels) + len(x))), "--n-projections",
                 f"{n_projections} directions and projections of {len(labels)} + {len(x)} points per step")
    gen = torch.Generator().manual_seed(args.seed)
    source = torch.randn(len(labels), x.shape[1], generator=gen, dtype=torch.float64)  # (S, d) noise

    t0 = time.perf_counter()
    runs = [(source[labels == c], x[y == c]) for c in wanted] if per_class else [(source, x)]
    bar = tqdm(total=steps * len(runs), desc=f"geom generate {method}", unit="step", file=sys.stderr,
               dynamic_ncols=True)
    common = dict(steps=steps, n_projections=args.n_projections, generator=gen, record_every=[steps])
    moved, steps_done = [], []
    try:
        for k, (start, target) in enumerate(runs):
            with _Monitor(bar, k * steps) as monitor:
                if method == "cswf":
                    r = geom.flows.conditional_swf(start, target, labels, y, step_size=lr,
                                                   label_scale=args.label_scale, callback=monitor, **common)
                elif method == "swf":
                    r = geom.flows.swf(start, target, step_size=lr, callback=monitor, **common)
                else:
                    r = geom.flows.mmd_flow(start, target, lr=lr, callback=monitor, **common)
            moved.append(r.particles.detach().cpu().double())
            steps_done.append(int(r.info["steps_done"]))
            if monitor.interrupted:
                break
    except geom.flows.FlowDiverged as exc:
        raise ValueError(f"the flow diverged at step {exc.step}: the {exc.what} became non-finite ({exc.detail}); "
                         f"try a smaller --lr (now {lr:g})") from None
    finally:
        bar.close()
    labels = labels[: sum(len(m) for m in moved)]
    elapsed = time.perf_counter() - t0
    samples = torch.cat(moved)  # (S, d)

    keep = torch.isin(yt, torch.tensor(wanted)) if method == "cswf" or per_class else torch.ones(len(yt), dtype=torch.bool)
    held, held_labels = xt[keep], yt[keep]
    scores = dict(w2=exact_w2(samples, held), energy=float(geom.energy_distance(samples, held)))
    rng = np.random.default_rng(args.seed)  # a real training subset like the samples, as the reference
    if method == "cswf" or per_class:
        ref = torch.cat([x[torch.from_numpy(rng.choice(np.flatnonzero((y == c).numpy()), n))] for c in wanted])
    else:
        ref = x[torch.from_numpy(rng.choice(len(x), min(len(samples), len(x)), replace=False))]
    reference = dict(w2=exact_w2(ref, held), energy=float(geom.energy_distance(ref, held)))
    summary = dict(
        command=["geom", "generate", "--method", method, "--dataset", args.dataset, "--n-samples", str(n),
                 "--steps", str(steps), "--seed", str(args.seed), "--out", args.out]
        + (["--class", str(args.cls)] if args.cls is not None else [])
        + (["--normalize", args.normalize] if args.normalize is not None else [])
        + (["--root", args.root] if args.root is not None else []),
        method=method, dataset=args.dataset, normalize=args.normalize, n_samples=len(samples), dim=int(samples.shape[1]), steps=steps,
        steps_done=min(steps_done) if len(steps_done) == len(runs) else steps_done[-1], lr=lr,
        per_class=per_class, n_projections=args.n_projections, seed=args.seed,
        label_scale=args.label_scale if method == "cswf" else None,
        classes=[classes[c] for c in wanted], n_train=len(x), n_held_out=len(held),
        w2_to_held_out=scores["w2"], energy_to_held_out=scores["energy"],
        reference_train_subset=dict(n=len(ref), w2_to_held_out=reference["w2"],
                                    energy_to_held_out=reference["energy"]),
        seconds=round(elapsed, 3), version=geom.__version__, files=list(GENERATE_OUTPUTS),
    )
    if digits and method == "cswf":
        nearest = torch.cdist(samples, x).argmin(1)  # 1-NN on the real training digits
        summary["nn1_accuracy"] = float((y[nearest] == labels).double().mean())
        summary["nn1_accuracy_real_test"] = float((y[torch.cdist(xt, x).argmin(1)] == yt).double().mean())
    with _output(out / "samples.npz") as fh:
        np.savez(fh, samples=samples.numpy(), labels=labels.numpy())
    with _output(out / "samples.png") as fh:
        _plot_samples(samples.numpy(), labels.numpy(), held.numpy(), held_labels.numpy(), classes, digits, fh)
    with _output(out / SUMMARY, "w") as fh:  # last: it lists the files above
        fh.write(json.dumps(summary, indent=2) + "\n")
    if monitor.interrupted and summary["steps_done"] < steps:
        print(f"geom: interrupted at step {summary['steps_done']} of {steps}; samples so far in {out}",
              file=sys.stderr)
        return 130
    extra = f", 1-NN accuracy {summary['nn1_accuracy']:.3f}" if "nn1_accuracy" in summary else ""
    print(f"{method} on {args.dataset}: {len(samples)} samples, W2 to held-out {scores['w2']:.4g} "
          f"(real train subset: {reference['w2']:.4g}), energy {scores['energy']:.4g}{extra}; outputs in {out}")
    return 0
