"""``geom flow`` and ``geom generate``: point-cloud flows from the command line.

The algorithms live in the library (:func:`geom.flows.sw_flow`, :func:`geom.flows.swf`,
:func:`geom.flows.conditional_swf`, :func:`geom.mmd.mmd_flow`); this module parses arguments, shows a
progress bar (stderr), handles Ctrl-C and writes files::

    geom flow SOURCE TARGET --method sw|swf|cswf|mmd [--scheme S] [--option KEY=VALUE ...] [--steps N]
              [--lr X] [--n-projections L] [--n-points N] [--seed K] [--record-every K]
              [--labels SPEC] [--label-scale S] --out DIR [--resume | --force]
    geom generate --method swf|cswf|mmd --dataset NAME [--n-samples N] [--steps N] [--seed K]
              [--class C] --out DIR [--force]

SOURCE and TARGET are files (any format :func:`geom.measure` reads; meshes give ``--n-points`` seeded
surface samples), ``dataset:NAME:INDEX`` (item INDEX of ``geom.load_dataset(NAME, seed=K)``) or, for
SOURCE, ``noise`` (``--n-points`` standard Gaussian points in the target's dimension). ``--lr`` is
the step size of each method: Adam's learning rate for ``sw``, the fraction of the full transport
step for ``swf`` and ``cswf``, the length per step for ``mmd``.

``cswf`` is the conditional SWF between labelled clouds: each point carries a part label and the
flow sends every part of SOURCE to the same part of TARGET. ``--labels AXIS:K`` (default ``z:4``)
cuts each cloud into K slabs of equal size along a coordinate (x, y, z or its index); ``--labels
npz`` takes the ``labels`` arrays (one integer per point) of two ``.npz`` archives.

``geom flow`` writes into DIR: ``trajectory.npz`` (``trajectory (T, N, d)``, ``steps``, ``values``),
``final.ply`` (``final.npy`` when d > 3), ``frames.png``, ``loss.png``, ``summary.json`` and
``checkpoint.pt`` (particles, generator state, scheme instance, Adam state or velocity, part labels,
arguments); ``trajectory.npz`` also holds the particles' ``labels`` for ``cswf``. Ctrl-C stops at the
current step, writes all of these and exits with status 130; ``--resume`` continues the run
(``--steps`` may grow; any other differing argument is refused) and repeats the uninterrupted one
exactly, for every method (the checkpoint keeps Adam's moments for ``sw`` and the velocity for
``mmd``).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import shlex
import signal
import sys
import time

import numpy as np
import torch

import geom
import geom.flows
from geom._checks import check_positive_int

__all__ = ["configure_flow", "configure_generate", "exact_w2", "run_flow", "run_generate"]

FLOW_METHODS = ("sw", "swf", "cswf", "mmd")
DEFAULT_LR = {"sw": 0.02, "swf": 0.5, "cswf": 0.5, "mmd": 0.05}
"""Step size of each method when ``--lr`` is not given."""
RESUMABLE_KEYS = ("steps",)
"""Arguments that ``--resume`` may change."""
OUTPUTS = ("trajectory.npz", "final.ply", "final.npy", "frames.png", "loss.png", "summary.json", "checkpoint.pt")


# ---------------------------------------------------------------------------------------------- inputs


def _dataset_item(name: str, index_text: str, args, what: str):
    from geom.registry import get_dataset

    cls = get_dataset(name)  # ValueError listing the registered datasets
    try:
        index = int(index_text)
    except ValueError:
        raise ValueError(f"{what}: expected dataset:NAME:INDEX with an integer INDEX, got {index_text!r}") from None
    options = {"seed": args.seed} if "seed" in cls.options else {}
    if "n_points" in cls.options:
        options["n_points"] = args.n_points
    try:
        data = geom.load_dataset(name, **options)
    except (TypeError, ValueError, OSError) as exc:
        raise type(exc)(f"{what}: dataset {name!r}: {exc}") from None
    if not -len(data) <= index < len(data):
        raise ValueError(f"{what}: dataset {name!r} has {len(data)} items, got index {index}")
    item, _ = data[index]
    return _weighted_cloud(item, what)


def _weighted_cloud(obj, what: str):
    """``(points (N, d), weights (N,))`` float64 of one cloud, its zero-weight points dropped."""
    m = obj if isinstance(obj, geom.Measure) else geom.measure(obj)
    if m.batch_size != 1 or m.support.ndim != 3:
        raise ValueError(f"{what}: expected one point cloud (N, d), got a measure of kind {m.kind!r} "
                         f"with support {tuple(m.support.shape)}")
    x, w = m.support[0].detach().to("cpu", torch.float64), m.weights[0].detach().to("cpu", torch.float64)
    keep = w > 0
    return x[keep], w[keep] / w[keep].sum()


def _cloud_of(obj, what: str) -> torch.Tensor:
    """``(N, d)`` float64 points of one cloud (its positive-weight points)."""
    return _weighted_cloud(obj, what)[0]


def _as_input(x: torch.Tensor, w: torch.Tensor):
    """What a flow takes: the bare points when the weights are uniform, else a weighted measure."""
    return x if bool((w == w[0]).all()) else geom.measure(x, weights=w)


def _load_input(text: str, args, what: str, dim: int | None = None):
    """SOURCE / TARGET text -> ``(points (N, d), weights (N,))`` float64."""
    if text == "noise":
        if dim is None:
            raise ValueError(f"{what}: 'noise' is only valid as SOURCE (it takes the target's dimension)")
        gen = torch.Generator().manual_seed(args.seed)
        x = torch.randn(args.n_points, dim, generator=gen, dtype=torch.float64)
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
    try:
        m = geom.measure(str(path), kind="points", n_samples=args.n_points, seed=args.seed)
    except (TypeError, ValueError, OSError) as exc:
        raise type(exc)(f"{what}: {exc}") from None
    return _weighted_cloud(m, what)


# ---------------------------------------------------------------------------------------------- output folder


def _prepare_out(text: str, *, resume: bool, force: bool) -> pathlib.Path:
    """Check that ``--out`` can be used: absent or empty, or ``--force``, or ``--resume`` with a checkpoint."""
    out = pathlib.Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out: '{text}' exists and is not a directory")
    busy = out.is_dir() and any(out.iterdir())
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint.pt in '{text}' to continue")
    elif busy and not force:
        raise FileExistsError(f"--out: '{text}' is not empty; pass --force to overwrite or --resume to continue")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".geom-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"--out: cannot write to '{text}' ({exc.strerror or exc})") from None
    if force and not resume:
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
    return out


def _export_cloud(x: np.ndarray, out: pathlib.Path) -> str:
    """``final.ply`` (2-D clouds padded with z = 0), or ``final.npy`` when d > 3; returns the file name."""
    n, d = x.shape
    if d > 3:
        np.save(out / "final.npy", x)
        return "final.npy"
    import trimesh

    xyz = np.zeros((n, 3))
    xyz[:, :d] = x
    trimesh.PointCloud(xyz).export(out / "final.ply")
    return "final.ply"


def _plot_frames(traj: np.ndarray, steps: np.ndarray, path: pathlib.Path, labels: np.ndarray | None = None,
                 n_frames: int = 6) -> None:
    """A strip of up to ``n_frames`` snapshots: 3-D scatter for d = 3, else the first two coordinates;
    points coloured by their part label when there are labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T, _, d = traj.shape
    colour = {} if labels is None else dict(c=labels % 10, cmap="tab10", vmin=0, vmax=10)
    pick = sorted(set(np.linspace(0, T - 1, min(n_frames, T)).round().astype(int).tolist()))
    lo, hi = traj.min(axis=(0, 1)), traj.max(axis=(0, 1))
    fig = plt.figure(figsize=(3 * len(pick), 3.2))
    for i, t in enumerate(pick):
        if d == 3:
            ax = fig.add_subplot(1, len(pick), i + 1, projection="3d")
            ax.scatter(*traj[t].T, s=2, **colour)
            ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), zlim=(lo[2], hi[2]))
        else:
            ax = fig.add_subplot(1, len(pick), i + 1)
            y = traj[t, :, 1] if d > 1 else np.zeros(traj.shape[1])
            ax.scatter(traj[t, :, 0], y, s=2, **colour)
            ax.set_xlim(lo[0], hi[0])
            if d > 1:
                ax.set_ylim(lo[1], hi[1])
            ax.set_aspect("equal", adjustable="box")
        ax.set_title(f"step {int(steps[t])}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_loss(steps: np.ndarray, values: np.ndarray, label: str, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    positive = values > 0
    ax.plot(steps[positive], values[positive], marker=".")
    ax.set(xlabel="step", ylabel=label, yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- progress and Ctrl-C


class _Monitor:
    """The flow's callback: advances the progress bar and stops the flow once Ctrl-C has been pressed.

    While active, SIGINT sets :attr:`interrupted` (the flow then stops at the end of its current step)
    and restores the default handler, so a second Ctrl-C stops at once.
    """

    def __init__(self, bar, offset: int):
        self.bar, self.offset, self.interrupted = bar, offset, False
        self._previous = None

    def _on_sigint(self, signum, frame):
        self.interrupted = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __enter__(self):
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
    parser.add_argument("source", metavar="SOURCE", help="shape file, dataset:NAME:INDEX or noise")
    parser.add_argument("target", metavar="TARGET", help="shape file or dataset:NAME:INDEX")
    parser.add_argument("--method", required=True, metavar="M",
                        help="sw (SW gradient flow, Adam), swf (sliced-Wasserstein flow), cswf (conditional SWF "
                             "between labelled parts) or mmd (sliced MMD flow)")
    parser.add_argument("--scheme", default="mc", metavar="S", help="slicing scheme (default: mc; see `geom plugins`)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
                        help="an option of the scheme, repeatable (values read as JSON where they parse)")
    parser.add_argument("--steps", type=int, default=300, metavar="N", help="number of steps (default: 300)")
    parser.add_argument("--lr", type=float, default=None, metavar="X",
                        help="step size (default: sw 0.02, swf and cswf 0.5, mmd 0.05)")
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
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (absent or empty)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run whose checkpoint.pt is in DIR")
    group.add_argument("--force", action="store_true", help="overwrite the outputs in a non-empty DIR")


def _flow_settings(args) -> dict:
    """The checked argument set (everything a checkpoint must agree on, plus ``steps``)."""
    method = str(args.method).lower()
    if method not in FLOW_METHODS:
        raise ValueError(f"--method: expected one of {', '.join(FLOW_METHODS)}, got {args.method!r}")
    steps = check_positive_int(args.steps, "--steps")
    lr = DEFAULT_LR[method] if args.lr is None else args.lr
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"--lr: expected a positive number, got {lr}")
    check_positive_int(args.n_projections, "--n-projections")
    check_positive_int(args.n_points, "--n-points")
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
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
    from .cli import _parse_options  # here: cli imports this module

    options = _parse_options(args.options)
    return dict(source=args.source, target=args.target, method=method, scheme=args.scheme, options=options,
                steps=steps, lr=lr, n_projections=args.n_projections, n_points=args.n_points, seed=args.seed,
                record_every=args.record_every, labels=labels, label_scale=label_scale)


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
    with np.load(path) as z:
        if "labels" not in z.files:
            raise ValueError(f"--labels: {what} '{text}' has no 'labels' array (it has {', '.join(z.files)})")
        labels = z["labels"]
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
    remaining = total - start
    local = [t - start for t in _record_steps(s["record_every"], total) if t > start]
    if start == 0:
        local = [0] + local
    common = dict(steps=remaining, n_projections=s["n_projections"], scheme=scheme, generator=gen,
                  record_every=local, callback=monitor)
    if s["method"] == "sw":
        return geom.flows.sw_flow(x, y, lr=s["lr"], optimizer_state=opt_state, **common)
    if s["method"] == "swf":
        return geom.flows.swf(x, y, step_size=s["lr"], **common)
    if s["method"] == "cswf":
        return geom.flows.conditional_swf(x, y, *labels, step_size=s["lr"], label_scale=s["label_scale"], **common)
    from geom.mmd import mmd_flow

    return mmd_flow(x, y, lr=s["lr"], velocity=opt_state, **common)


def run_flow(args: argparse.Namespace) -> int:
    """Run ``geom flow``; returns 0, or 130 when interrupted (after writing the checkpoint)."""
    from tqdm import tqdm

    s = _flow_settings(args)
    out = _prepare_out(args.out, resume=args.resume, force=args.force)
    previous = None
    if args.resume:
        previous = torch.load(out / "checkpoint.pt", weights_only=False)
        saved = previous["settings"]
        differ = [k for k in saved if k not in RESUMABLE_KEYS and saved[k] != s.get(k)]
        if differ:
            what = "; ".join(f"{k}={saved[k]!r}, got {s.get(k)!r}" for k in differ)
            raise ValueError(f"--resume: the run in '{args.out}' was started with other arguments: {what} "
                             f"(only --steps may change)")
        if previous["steps_done"] >= s["steps"]:
            raise ValueError(f"--resume: the run in '{args.out}' already did {previous['steps_done']} steps; "
                             f"give --steps larger than that to continue it")
        y, wy = previous["target"], previous["target_weights"]
        x, wx = previous["particles"], previous["source_weights"]
        start, scheme, opt_state = previous["steps_done"], previous["scheme"], previous["optimizer_state"]
        labels = previous.get("labels")  # None for checkpoints written before cswf existed
        gen = torch.Generator()
        gen.set_state(previous["generator_state"])
    else:
        y, wy = _load_input(s["target"], args, "TARGET")
        x, wx = _load_input(s["source"], args, "SOURCE", dim=y.shape[1])
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"SOURCE, TARGET: expected the same dimension, got {x.shape[1]} and {y.shape[1]}")
        from geom.registry import get_scheme

        try:
            scheme = get_scheme(s["scheme"])(**s["options"])
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"--option: {exc}") from None
        start, opt_state = 0, None
        labels = _point_labels(s["labels"], s, x, y) if s["method"] == "cswf" else None
        gen = torch.Generator().manual_seed(s["seed"])

    t0 = time.perf_counter()
    bar = tqdm(total=s["steps"], initial=start, desc=f"geom flow {s['method']}", unit="step", file=sys.stderr,
               dynamic_ncols=True)
    try:
        with _Monitor(bar, start) as monitor:
            result = _run_method(s, _as_input(x, wx), _as_input(y, wy), start=start, total=s["steps"], scheme=scheme, gen=gen,
                                 opt_state=opt_state, labels=labels, monitor=monitor)
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
    checkpoint = dict(settings=s, particles=result.particles.detach().cpu(), steps_done=done, target=y,
                      target_weights=wy, source_weights=wx,
                      generator_state=gen.get_state(), scheme=scheme,
                      optimizer_state=result.info.get("velocity" if s["method"] == "mmd" else "optimizer_state"),
                      labels=labels, trajectory=traj, steps=at, values=values,
                      seconds=elapsed, start_value=(previous or {}).get("start_value", float(values[0])))
    torch.save(checkpoint, out / "checkpoint.pt")
    _write_flow_outputs(out, s, checkpoint, result, args)

    if monitor.interrupted and done < s["steps"]:
        cmd = " ".join(shlex.quote(a) for a in _command_line(args)) + " --resume"
        print(f"geom: interrupted at step {done} of {s['steps']}; checkpoint in {out}; continue with: {cmd}",
              file=sys.stderr)
        return 130
    print(f"{s['method']}: distance {checkpoint['start_value']:.4g} -> {float(values[-1]):.4g} in {done} steps "
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
    return argv


def _write_flow_outputs(out: pathlib.Path, s: dict, ck: dict, result, args) -> None:
    traj = ck["trajectory"].numpy()
    steps, values = ck["steps"].numpy(), ck["values"].numpy()
    labels = None if ck["labels"] is None else ck["labels"][0].numpy()  # the particles' part labels
    np.savez(out / "trajectory.npz", trajectory=traj, steps=steps, values=values,
             **({} if labels is None else {"labels": labels}))
    final = _export_cloud(ck["particles"].numpy(), out)
    _plot_frames(traj, steps, out / "frames.png", labels)
    label = {"mmd": "sliced energy distance", "cswf": "SW_2 of (point, label) to the target"}.get(
        s["method"], "SW_2 to the target")
    _plot_loss(steps, values, label, out / "loss.png")
    summary = dict(
        command=_command_line(args), method=s["method"], scheme=s["scheme"], options=s["options"], seed=s["seed"],
        lr=s["lr"], n_projections=s["n_projections"], n_points=s["n_points"], steps=s["steps"],
        steps_done=ck["steps_done"], complete=ck["steps_done"] >= s["steps"], resumed=bool(args.resume),
        value=result.info.get("value", label), start_value=ck["start_value"], end_value=float(values[-1]),
        n_source=int(traj.shape[1]), n_target=int(ck["target"].shape[0]), dim=int(traj.shape[2]),
        final=final, seconds=round(ck["seconds"], 3), version=geom.__version__,
    )
    if labels is not None:
        summary.update(labels=s["labels"], label_scale=s["label_scale"], n_labels=int(len(np.unique(labels))))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


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
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (absent or empty)")
    parser.add_argument("--force", action="store_true", help="overwrite the outputs in a non-empty DIR")


def _split_data(name: str, args):
    """``(train (M, d), train labels (M,), test (K, d), test labels (K,), classes, is_digits)``, float64.

    Digits: the 64-D intensity vectors of the dataset's own seeded stratified split. Other datasets:
    items are point clouds; a seeded quarter of each class's items is held out and the points of
    the items are pooled (a point's label is its item's class).
    """
    from geom.registry import get_dataset

    cls = get_dataset(name)  # ValueError listing the registered datasets
    if name == "digits":
        train = geom.load_dataset(name, representation="vectors", split="train", seed=args.seed)
        test = geom.load_dataset(name, representation="vectors", split="test", seed=args.seed)
        (x, y), (xt, yt) = train.batch(), test.batch()
        return x.double(), y, xt.double(), yt, list(train.classes), True
    options = {k: v for k, v in (("seed", args.seed), ("n_points", args.n_points)) if k in cls.options}
    try:
        data = geom.load_dataset(name, **options)
    except (TypeError, ValueError, OSError) as exc:
        raise type(exc)(f"--dataset: {name!r}: {exc}") from None
    labels = np.array([int(data[i][1]) for i in range(len(data))])
    rng = np.random.default_rng(args.seed)
    held = np.zeros(len(data), dtype=bool)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        held[rows[: max(1, round(HELD_OUT * len(rows)))] if len(rows) > 1 else []] = True

    def pool(rows):
        clouds = [_cloud_of(data[int(i)][0], f"--dataset: {name!r} item {int(i)}") for i in rows]
        lab = torch.cat([torch.full((len(c),), int(labels[i])) for c, i in zip(clouds, rows)])
        x = torch.cat(clouds)
        if len(x) > MAX_POOL:
            keep = torch.from_numpy(np.sort(rng.choice(len(x), MAX_POOL, replace=False)))
            x, lab = x[keep], lab[keep]
        return x, lab

    x, y = pool(np.flatnonzero(~held))
    xt, yt = pool(np.flatnonzero(held))
    return x, y, xt, yt, list(data.classes), False


def exact_w2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact W_2 between two uniform clouds (POT's network simplex); the benchmarks score flows with it too."""
    import ot

    M = torch.cdist(x, y).square().numpy()
    return math.sqrt(max(float(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), M,
                                      numItermax=10_000_000)), 0.0))


def _plot_samples(samples: np.ndarray, labels: np.ndarray, held: np.ndarray, classes, digits: bool,
                  path: pathlib.Path) -> None:
    """Digits: 8x8 images, one row per class (one grid when unconditional); clouds: a scatter per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = sorted(set(labels.tolist()))
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
        fig = plt.figure(figsize=(2.6 * len(present), 2.8))
        for i, c in enumerate(present):
            ax = fig.add_subplot(1, len(present), i + 1, projection="3d" if d == 3 else None)
            s = samples[labels == c]
            ax.scatter(*(held[:, :3].T if d == 3 else held[:, :2].T), s=1, c="0.75")
            ax.scatter(*(s[:, :3].T if d == 3 else s[:, :2].T), s=2)
            ax.set_title(classes[c] if len(present) > 1 else "samples (grey: held-out)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


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
    check_positive_int(args.n_projections, "--n-projections")
    check_positive_int(args.n_points, "--n-points")
    if not (math.isfinite(args.label_scale) and args.label_scale > 0):
        raise ValueError(f"--label-scale: expected a positive number, got {args.label_scale}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
    out = _prepare_out(args.out, resume=False, force=args.force)

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
    labels = torch.tensor(wanted).repeat_interleave(n) if method == "cswf" else torch.full((n,), wanted[0] if len(wanted) == 1 else -1)
    gen = torch.Generator().manual_seed(args.seed)
    source = torch.randn(len(labels), x.shape[1], generator=gen, dtype=torch.float64)  # (S, d) noise

    t0 = time.perf_counter()
    bar = tqdm(total=steps, desc=f"geom generate {method}", unit="step", file=sys.stderr, dynamic_ncols=True)
    common = dict(steps=steps, n_projections=args.n_projections, generator=gen, record_every=[steps])
    try:
        with _Monitor(bar, 0) as monitor:
            if method == "cswf":
                r = geom.flows.conditional_swf(source, x, labels, y, step_size=lr, label_scale=args.label_scale,
                                               callback=monitor, **common)
            elif method == "swf":
                r = geom.flows.swf(source, x, step_size=lr, callback=monitor, **common)
            else:
                from geom.mmd import mmd_flow

                r = mmd_flow(source, x, lr=lr, callback=monitor, **common)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    samples = r.particles.detach().cpu().double()  # (S, d)

    held = xt if method != "cswf" else xt[torch.isin(yt, torch.tensor(wanted))]
    scores = dict(w2=exact_w2(samples, held), energy=float(geom.energy_distance(samples, held)))
    rng = np.random.default_rng(args.seed)  # a real training subset like the samples, as the reference
    if method == "cswf":
        ref = torch.cat([x[torch.from_numpy(rng.choice(np.flatnonzero((y == c).numpy()), n))] for c in wanted])
    else:
        ref = x[torch.from_numpy(rng.choice(len(x), min(len(samples), len(x)), replace=False))]
    reference = dict(w2=exact_w2(ref, held), energy=float(geom.energy_distance(ref, held)))
    summary = dict(
        command=["geom", "generate", "--method", method, "--dataset", args.dataset, "--n-samples", str(n),
                 "--steps", str(steps), "--seed", str(args.seed), "--out", args.out]
        + (["--class", str(args.cls)] if args.cls is not None else []),
        method=method, dataset=args.dataset, n_samples=len(samples), dim=int(samples.shape[1]), steps=steps,
        steps_done=int(r.info["steps_done"]), lr=lr, n_projections=args.n_projections, seed=args.seed,
        label_scale=args.label_scale if method == "cswf" else None,
        classes=[classes[c] for c in wanted], n_train=len(x), n_held_out=len(held),
        w2_to_held_out=scores["w2"], energy_to_held_out=scores["energy"],
        reference_train_subset=dict(n=len(ref), w2_to_held_out=reference["w2"],
                                    energy_to_held_out=reference["energy"]),
        seconds=round(elapsed, 3), version=geom.__version__,
    )
    if digits and method == "cswf":
        nearest = torch.cdist(samples, x).argmin(1)  # 1-NN on the real training digits
        summary["nn1_accuracy"] = float((y[nearest] == labels).double().mean())
        summary["nn1_accuracy_real_test"] = float((y[torch.cdist(xt, x).argmin(1)] == yt).double().mean())
    np.savez(out / "samples.npz", samples=samples.numpy(), labels=labels.numpy())
    _plot_samples(samples.numpy(), labels.numpy(), held.numpy(), classes, digits, out / "samples.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if monitor.interrupted and summary["steps_done"] < steps:
        print(f"geom: interrupted at step {summary['steps_done']} of {steps}; samples so far in {out}",
              file=sys.stderr)
        return 130
    extra = f", 1-NN accuracy {summary['nn1_accuracy']:.3f}" if "nn1_accuracy" in summary else ""
    print(f"{method} on {args.dataset}: {len(samples)} samples, W2 to held-out {scores['w2']:.4g} "
          f"(real train subset: {reference['w2']:.4g}), energy {scores['energy']:.4g}{extra}; outputs in {out}")
    return 0
