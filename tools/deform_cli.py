"""``geom deform``: a template mesh moved onto a target by :func:`geom.deform.deform`, from the command line.

The algorithm lives in the library; this module parses arguments, shows a progress bar (stderr),
handles Ctrl-C and writes files::

    geom deform TEMPLATE TARGET --out DIR [--loss sw|chamfer] [--kind varifold|mesh|mesh-discrete]
                [--method ode|vertices] [--scheme S] [--option KEY=VALUE ...] [--n-projections L]
                [--steps N] [--lr X] [--seed K] [--normalize sphere|box] [--resume | --force]

TEMPLATE is ``sphere:LEVEL`` (:func:`geom.deform.icosphere`) or a manifold mesh file; TARGET a mesh
file, or a point file with ``--kind mesh`` or ``--loss chamfer``. ``--normalize`` centres and scales
each on its own first; the deformed mesh is written back in the target's own coordinates.

DIR gets, in this order: ``checkpoint.npz`` (the deformation's ``state_dict``, or the free vertices
for ``--method vertices``, Adam's moments, the generator state, the scheme's state, the loss history
and the arguments: arrays plus one JSON document, nothing pickled), ``deformed.ply`` and
``deformed.obj``, ``render.png`` (template where it starts, result, target; faces of the result that
cross another face in red), ``loss.png``, ``metrics.json`` (:func:`geom.deform.metrics.mesh_metrics`
of the result against the target, wall time, time per step) and last ``summary.json``, which lists
the files and the checksum of the checkpoint they come from. Every file is written whole (a
temporary file renamed into place).

Ctrl-C stops at the end of the current step, writes all of these and exits with status 130;
``--resume`` continues (``--steps`` may grow, no other argument may change) and repeats the
uninterrupted run bit for bit: :func:`geom.deform.deform` gets a generator in the checkpoint's state
(the one before the stopped step's draws: directions, surface samples), ``optimizer_state=`` (Adam's
``t``, ``m``, ``v``) and ``deformation=`` the trained field (or the free vertices as the template): the
resumed run's first row is the stopped step again, with the same draws, and every later step
continues the same random stream. ``--force`` replaces only files an earlier ``geom deform`` wrote.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import pathlib
import shlex
import sys
import time
import warnings

import numpy as np
import torch

import geom
from geom._checks import check_positive_int, describe

from ._common import _add_normalize, _check_seed, _new_scheme, _parse_options, _scheme_class
from .flow_cli import (CHECKPOINT, SUMMARY, _Monitor, _output, _plot_loss, _prepare_out, _pyplot, _refuse_foreign,
                       _remove_stale, _save_figure, _sha256, _write_run, check_settings, checkpoint_outputs,
                       open_checkpoint, outputs_current, save_checkpoint)

__all__ = ["DEFORM_OUTPUTS", "configure_deform", "run_deform"]

DEFORM_OUTPUTS = (CHECKPOINT, "deformed.ply", "deformed.obj", "render.png", "loss.png", "metrics.json", SUMMARY)
"""Every file ``geom deform`` writes, in the order it writes them (``--force`` removes no other)."""
CHECKPOINT_FORMAT = 1
RESUMABLE_KEYS = ("steps",)
_CHECKPOINT_KEYS = ("settings", "inputs_sha256", "steps_done", "vertices", "state", "adam", "generator_state", "scheme",
                    "history", "seconds")
_RENAMES = (("template, target", "TEMPLATE, TARGET"), ("template", "TEMPLATE"), ("target", "TARGET"), ("kind", "--kind"), ("lr", "--lr"),
            ("n_projections", "--n-projections"), ("steps", "--steps"), ("scheme", "--scheme"))
"""The library's argument names -> the command line's, in one-line errors."""


# ---------------------------------------------------------------------------------------------- arguments


def configure_deform(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``geom deform``."""
    from geom.deform.fit import KINDS, LOSSES, LR, METHODS

    parser.add_argument("template", metavar="TEMPLATE", help="sphere:LEVEL (an icosphere, LEVEL 0-9) or a mesh file")
    parser.add_argument("target", metavar="TARGET", help="mesh file (a point file with --kind mesh or --loss chamfer)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (absent or empty)")
    parser.add_argument("--loss", default="sw", choices=LOSSES, help="sliced Wasserstein (default) or Chamfer")
    parser.add_argument("--kind", default="varifold", choices=KINDS,
                        help="measure of the meshes for --loss sw (default: varifold: centroids and normals)")
    parser.add_argument("--method", default="ode", choices=METHODS,
                        help="ode (a neural-ODE diffeomorphism, default) or vertices (free vertices)")
    parser.add_argument("--scheme", default="qmc", metavar="S", help="slicing scheme (default: qmc; see `geom plugins`)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
                        help="an option of the scheme, repeatable (values read as JSON where they parse)")
    parser.add_argument("--n-projections", type=int, default=128, metavar="L", help="directions per step (default: 128)")
    parser.add_argument("--steps", type=int, default=300, metavar="N", help="Adam steps (default: 300)")
    parser.add_argument("--lr", type=float, default=None, metavar="X",
                        help=f"Adam's step size (default: {LR['ode']} on the field, {LR['vertices']} target radii on free vertices)")
    parser.add_argument("--seed", type=int, default=0, metavar="K",
                        help="seed of the field's initialisation, the directions and the samples (default: 0)")
    _add_normalize(parser)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help=f"continue the run whose {CHECKPOINT} is in DIR")
    group.add_argument("--force", action="store_true", help="replace the outputs of an earlier geom deform in DIR")


def _settings(args) -> dict:
    """The checked arguments (everything a checkpoint must agree on, plus ``steps``)."""
    steps = check_positive_int(args.steps, "--steps")
    check_positive_int(args.n_projections, "--n-projections")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr: expected a positive number, got {args.lr}")
    _check_seed(args.seed)
    _scheme_class(args.scheme)
    options = _parse_options(args.options)
    _new_scheme(args.scheme, options)  # bad options fail here, naming --option
    return dict(template=args.template, target=args.target, loss=args.loss, kind=args.kind, method=args.method,
                scheme=args.scheme, options=options, n_projections=args.n_projections, steps=steps, lr=args.lr,
                seed=args.seed, normalize=args.normalize)


def _command_line(args) -> list[str]:
    """The ``geom deform`` call that reproduces ``args`` (without --resume / --force)."""
    argv = ["geom", "deform", args.template, args.target, "--out", args.out, "--loss", args.loss, "--kind", args.kind,
            "--method", args.method, "--scheme", args.scheme]
    for item in args.options:
        argv += ["--option", item]
    argv += ["--n-projections", str(args.n_projections), "--steps", str(args.steps), "--seed", str(args.seed)]
    if args.lr is not None:
        argv += ["--lr", repr(args.lr)]
    if args.normalize is not None:
        argv += ["--normalize", args.normalize]
    return argv


def _renamed(exc: Exception) -> Exception:
    """A library error naming ``template``, ``kind``, ... again, naming the command line's argument."""
    text = str(exc)
    for old, new in _RENAMES:
        for sep in (": ", "[", ", "):
            if text.startswith(old + sep):
                return type(exc)(new + text[len(old):])
    return exc


# ---------------------------------------------------------------------------------------------- inputs


def _template(text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``sphere:LEVEL`` or a mesh file -> ``(vertices (V, 3) float64, faces (F, 3) int64)``."""
    from geom.deform import icosphere
    from geom.deform.templates import as_mesh

    if text.startswith("sphere:"):
        level = text.partition(":")[2]
        if not level.strip().isdigit() or int(level) > 9:
            raise ValueError(f"TEMPLATE: expected sphere:LEVEL with an integer LEVEL in [0, 9], got {text!r}")
        return icosphere(int(level))
    _existing(text, "TEMPLATE")
    return as_mesh(text, "TEMPLATE")


def _existing(text: str, name: str) -> None:
    path = pathlib.Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file '{text}'")
    if path.is_dir():
        raise IsADirectoryError(f"{name}: '{text}' is a directory; expected a mesh file")


def _inputs(s: dict) -> dict:
    """Template and target, read, checked (manifold template, a kind that fits the target: the
    library's checks, naming the arguments) and normalised each on its own with ``--normalize``."""
    from geom.deform.fit import _pair, _similarity
    from geom.deform.templates import as_target

    v, f = _template(s["template"])
    _existing(s["target"], "TARGET")
    points, tf = as_target(s["target"], "TARGET")
    (vc, vs), (tc, ts) = _similarity(v, s["normalize"]), _similarity(points, s["normalize"])
    x0, y = (v - vc) / vs, (points - tc) / ts  # what deform(normalize=...) does, so that a resume can skip it
    target = y if tf is None else (y, tf)
    used_kind = s["kind"] if s["loss"] == "sw" else "mesh"
    options = {} if s["loss"] == "sw" else dict(n_samples=2048)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", geom.GeomWarning)
        try:
            _pair((x0, f), target, "", s["loss"], used_kind, options, None)
        except (TypeError, ValueError) as exc:
            raise _renamed(exc) from None
    for w in caught:
        print(f"geom: warning: {_renamed(w.message)}", file=sys.stderr)
    digest = hashlib.sha256()
    for t in (x0, f, y) + (() if tf is None else (tf,)):
        digest.update(t.contiguous().numpy().tobytes())
    return dict(template=(x0, f), target=target, template_frame=(vc, vs), target_frame=(tc, ts),
                original_target=(points, tf), sha256=digest.hexdigest())


# ---------------------------------------------------------------------------------------------- deform's state


class _Progress(_Monitor):
    """deform's callback: the progress bar (the loss), Ctrl-C (True stops deform), and the generator
    and scheme states before each row's draws, which a resumed run must start from."""

    def __init__(self, bar, offset: int, held: dict, scheme, start_state):
        super().__init__(bar, offset)
        self.held, self.scheme = held, scheme
        self.next_state, self.start_state, self.step = start_state, None, 0

    def __call__(self, step, vertices, values):
        self.start_state = self.next_state  # before this row's draws (None: a fresh run's row 0)
        self.next_state = (self.held["generator"].get_state(), copy.deepcopy(self.scheme.state_dict()))
        self.step = step
        return not super().__call__(step, vertices, float(values["loss"]))  # flow's: False stops, deform's: True


def _fresh_deformation() -> torch.nn.Module:
    """A deformation of deform's default architecture, for a checkpoint's state_dict."""
    from geom.deform.fit import _deformation

    return _deformation(None, None, torch.Generator(), 1)


# ---------------------------------------------------------------------------------------------- checkpoints


def _save_checkpoint(out: pathlib.Path, tree: dict) -> str:
    return save_checkpoint(out, tree, "deform", CHECKPOINT_FORMAT, DEFORM_OUTPUTS)


def _read_checkpoint(out: pathlib.Path, s: dict, inputs: dict) -> dict:
    """The checkpoint in ``out``, checked against the arguments and the inputs; one-line ValueErrors."""
    ck, bad = open_checkpoint(out / CHECKPOINT, "deform", CHECKPOINT_FORMAT, _CHECKPOINT_KEYS)
    saved = ck["settings"]
    check_settings(saved, s, out, "deform", bad, RESUMABLE_KEYS)
    if ck["inputs_sha256"] != inputs["sha256"]:
        raise ValueError(f"--resume: TEMPLATE or TARGET differ from those the run in '{out}' started from")
    done = ck["steps_done"]
    if type(done) is not int or not 0 <= done or not isinstance(ck["history"], dict) or any(
            not isinstance(h, torch.Tensor) or h.shape != (done + 1,) for h in ck["history"].values()):
        raise bad(f"steps_done {done!r} does not fit its history")
    v = ck["vertices"]
    if not (isinstance(v, torch.Tensor) and v.shape == inputs["template"][0].shape and bool(torch.isfinite(v).all())):
        raise bad(f"it holds the vertices as {describe(v)}; expected {tuple(inputs['template'][0].shape)} finite")
    if done > 0:
        state = ck["state"]
        if s["method"] == "ode":
            if not isinstance(state, dict):
                raise bad(f"it holds the deformation as {describe(state)}")
            phi = _fresh_deformation()
            try:
                phi.load_state_dict(state)
            except (RuntimeError, TypeError, KeyError) as exc:
                raise bad(f"its deformation does not fit ({str(exc).splitlines()[0]})") from None
            ck["deformation"] = phi
        elif not (isinstance(state, torch.Tensor) and state.shape == inputs["template"][0].shape
                  and bool(torch.isfinite(state).all())):
            raise bad(f"it holds the vertices as {describe(state)}; expected {tuple(inputs['template'][0].shape)} finite")
        adam = ck["adam"]
        if not (isinstance(adam, dict) and set(adam) == {"t", "m", "v"} and adam["t"] == done):
            raise bad("it holds no Adam state of its steps")
        gen = torch.Generator()
        try:
            gen.set_state(ck["generator_state"])
        except (RuntimeError, TypeError) as exc:
            raise bad(f"its generator state is unusable ({exc})") from None
    scheme = _new_scheme(s["scheme"], s["options"])
    if ck["scheme"] is not None:
        try:
            scheme.load_state_dict(ck["scheme"])
        except (ValueError, TypeError) as exc:
            raise bad(f"its state of scheme {s['scheme']!r} does not fit: {exc}") from None
    return ck | dict(scheme_instance=scheme, sha256=_sha256(out / CHECKPOINT))


# ---------------------------------------------------------------------------------------------- outputs


def _write_ply(fh, v: np.ndarray, f: np.ndarray) -> None:
    head = (f"ply\nformat ascii 1.0\ncomment geom deform\nelement vertex {len(v)}\nproperty double x\n"
            f"property double y\nproperty double z\nelement face {len(f)}\nproperty list uchar int vertex_indices\n"
            "end_header\n")
    fh.write(head + "".join(f"{a!r} {b!r} {c!r}\n" for a, b, c in v.tolist())
             + "".join(f"3 {a} {b} {c}\n" for a, b, c in f.tolist()))


def _write_obj(fh, v: np.ndarray, f: np.ndarray) -> None:
    fh.write("# geom deform\n" + "".join(f"v {a!r} {b!r} {c!r}\n" for a, b, c in v.tolist())
             + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f.tolist()))


def _crossing(v: np.ndarray, f: np.ndarray) -> np.ndarray | None:
    """Faces that cross another face of the mesh, or None where the checker is unavailable."""
    try:
        from geom.deform.intersect import self_intersections
    except ImportError:
        return None
    return self_intersections(v, f).mask


def _render(panels, fh) -> None:
    """Meshes side by side in 3-D, one axis box for all; faces of a ``red`` mask drawn red."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    fig = _pyplot().figure(figsize=(4 * len(panels), 4.2))
    allv = np.concatenate([v for _, v, _, _ in panels])
    lo, hi = allv.min(0), allv.max(0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-12) * 1.05
    light = np.array([0.3, 0.4, 0.87])
    for i, (title, v, f, red) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, projection="3d")
        tri = v[f]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        shade = 0.35 + 0.65 * np.abs(n @ light) / np.maximum(np.linalg.norm(n, axis=1), 1e-300)
        colours = np.column_stack([0.45 * shade, 0.6 * shade, 0.85 * shade, np.ones(len(f))])
        if red is not None and red.any():
            colours[red] = [0.9, 0.1, 0.1, 1.0]
            title += f" ({int(red.sum())} crossing faces)"
        ax.add_collection3d(Poly3DCollection(tri, facecolors=colours, edgecolors="none"))
        for axis, c in zip("xyz", centre):
            getattr(ax, f"set_{axis}lim")(c - half, c + half)
        ax.set_box_aspect((1, 1, 1))
        ax.set_title(title)
    _save_figure(fig, fh)


def _in_target_frame(x: torch.Tensor, inputs: dict) -> np.ndarray:
    """Normalised coordinates -> the target's own."""
    tc, ts = inputs["target_frame"]
    return (x * ts + tc).numpy()


def _write_outputs(out: pathlib.Path, s: dict, ck: dict, inputs: dict, args, ours: set[str], digest: str) -> dict:
    """The outputs of checkpoint ``ck`` (SHA-256 ``digest``), each replaced whole, then ``summary.json``."""
    from geom.deform.metrics import mesh_metrics

    faces = inputs["template"][1].numpy()
    v = _in_target_frame(ck["vertices"], inputs)
    with _output(out / "deformed.ply", "w") as fh:
        _write_ply(fh, v, faces)
    with _output(out / "deformed.obj", "w") as fh:
        _write_obj(fh, v, faces)
    points, tf = inputs["original_target"]
    target = points.numpy()
    start = _in_target_frame(inputs["template"][0], inputs)
    red = _crossing(v, faces)
    panels = [("template", start, faces, None), (f"result, step {ck['steps_done']}", v, faces, red)]
    if tf is not None:
        panels.append(("target", target, tf.numpy(), None))
    with _output(out / "render.png") as fh:
        _render(panels, fh)
    history = {k: h.numpy() for k, h in ck["history"].items()}
    with _output(out / "loss.png") as fh:
        _plot_loss(np.arange(len(history["loss"])), history["loss"],
                   ("SW_2^2" if s["loss"] == "sw" else "Chamfer") + " / target radius^2 + regularisers", fh)
    if tf is not None:
        metrics = mesh_metrics((v, faces), (target, tf.numpy()), seed=s["seed"])
    else:  # a point cloud: Chamfer between the result's surface samples and the points
        samples = geom.measure((torch.from_numpy(v), inputs["template"][1]), kind="mesh", n_samples=4096,
                               seed=s["seed"])
        metrics = dict(chamfer=float(geom.chamfer_distance(samples, geom.measure(points))),
                       self_intersection_fraction=None if red is None else float(red.mean()))
    metrics["self_intersecting_faces"] = None if red is None else int(red.sum())
    done = ck["steps_done"]
    metrics.update(loss_start=float(history["loss"][0]), loss_end=float(history["loss"][-1]), steps_done=done,
                   seconds=ck["seconds"], seconds_per_step=ck["seconds"] / max(done, 1))
    with _output(out / "metrics.json", "w") as fh:
        fh.write(json.dumps(metrics, indent=2) + "\n")
    _remove_stale(out, ours, list(DEFORM_OUTPUTS))
    summary = dict(command=_command_line(args), **{k: s[k] for k in s if k not in ("template", "target")},
                   template=s["template"], target=s["target"], steps_done=done, complete=done >= s["steps"],
                   resumed=bool(args.resume), loss_start=metrics["loss_start"], loss_end=metrics["loss_end"],
                   n_vertices=int(len(v)), n_faces=int(len(faces)), seconds=metrics["seconds"],
                   version=geom.__version__, files=list(DEFORM_OUTPUTS), checkpoint_sha256=digest)
    with _output(out / SUMMARY, "w") as fh:  # last: it lists the files above
        fh.write(json.dumps(summary, indent=2) + "\n")
    return metrics


# ---------------------------------------------------------------------------------------------- running


def run_deform(args: argparse.Namespace) -> int:
    """Run ``geom deform``; returns 0, or 130 when interrupted (after writing the checkpoint)."""
    from tqdm import tqdm

    s = _settings(args)
    inputs = _inputs(s)
    out, ours = _prepare_out(args.out, "deform", DEFORM_OUTPUTS, resume=args.resume, force=args.force)
    cmd = " ".join(shlex.quote(a) for a in _command_line(args)) + " --resume"
    previous = None
    start, scheme, start_state, adam, deformation = 0, _new_scheme(s["scheme"], s["options"]), None, None, None
    template = inputs["template"]
    if args.resume:
        ours = ours | checkpoint_outputs(out, "deform", DEFORM_OUTPUTS)
        previous = _read_checkpoint(out, s, inputs)
        _refuse_foreign(out, "deform", DEFORM_OUTPUTS, ours, "--resume")
        start = previous["steps_done"]
        if start >= s["steps"]:
            if outputs_current(out, previous["sha256"], DEFORM_OUTPUTS):
                raise ValueError(f"--resume: the run in '{args.out}' already did {start} steps; "
                                 f"give --steps larger than that to continue it")
            _write_outputs(out, s, previous, inputs, args, ours, previous["sha256"])
            print(f"deform: the run had done its {start} steps; its outputs were written again from its "
                  f"checkpoint, in {out}")
            return 0
        if start > 0:
            scheme, adam = previous["scheme_instance"], previous["adam"]
            start_state = (previous["generator_state"], previous["scheme"])
            if s["method"] == "ode":
                deformation = previous["deformation"]
            else:
                template = (previous["state"], template[1])

    t0 = time.perf_counter()
    class LossBar(tqdm):  # flow's monitor shows a distance; this is deform's loss
        def set_postfix_str(self, text="", refresh=True):
            super().set_postfix_str(text.replace("distance=", "loss=", 1), refresh)

    bar = LossBar(total=s["steps"], initial=start, desc=f"geom deform {s['method']}", unit="step", file=sys.stderr,
               dynamic_ncols=True)
    try:
        generator = torch.Generator().manual_seed(s["seed"])
        if start_state is not None:
            generator.set_state(start_state[0])
        held = dict(generator=generator)
        with _Progress(bar, start, held, scheme, start_state) as monitor, warnings.catch_warnings():
            warnings.simplefilter("ignore", geom.GeomWarning)  # said once, by _inputs
            result = geom.deform.deform(template, inputs["target"], loss=s["loss"], kind=s["kind"], scheme=scheme,
                                        n_projections=s["n_projections"], steps=s["steps"] - start, lr=s["lr"],
                                        generator=generator, optimizer_state=adam, method=s["method"],
                                        deformation=deformation, callback=monitor)
    except (TypeError, ValueError) as exc:
        raise _renamed(exc) from None
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0

    done = start + monitor.step
    history = {k: h.detach().double() for k, h in result.history.items()}
    if previous is not None and start > 0:
        history = {k: torch.cat([previous["history"][k][:start], h]) for k, h in history.items()}
        elapsed += previous["seconds"]
    trained = monitor.step > 0 or start > 0
    opt = result.optimizer_state
    state_at = monitor.start_state
    tree = dict(settings=s, inputs_sha256=inputs["sha256"], steps_done=done, vertices=result.vertices,
                state=(result.deformation.state_dict() if s["method"] == "ode" else result.vertices) if trained else None,
                adam=opt if trained else None,
                generator_state=None if state_at is None else state_at[0],
                scheme=None if state_at is None else state_at[1], history=history, seconds=elapsed)
    rc, metrics = _write_run(out, tree, _save_checkpoint,
                             lambda digest: _write_outputs(out, s, tree, inputs, args, ours, digest),
                             done=done, steps=s["steps"], interrupted=monitor.interrupted, cmd=cmd)
    if rc is not None:
        return rc
    print(f"deform {s['method']}: loss {metrics['loss_start']:.4g} -> {metrics['loss_end']:.4g} in {done} steps "
          f"({elapsed:.1f} s); Chamfer {metrics['chamfer']:.4g}, self-intersecting faces "
          f"{metrics['self_intersecting_faces']}; outputs in {out}")
    return 0

