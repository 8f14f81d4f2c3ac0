"""``geom match A B --out DIR``: a point-to-point map between two shapes, a colour-transfer render, a JSON.

::

    geom match A B --out DIR [--method fmap|fmap-sw|sliced-plan|rigid] [--n-eigen K]
                   [--ground-truth FILE.npy] [--seed S] [--force]

The maths is :func:`geom.match.match`; this module reads the shapes, shows progress (stderr), and
writes, each to a temporary file renamed into place:

* ``map.npy``: ``(n_A,)`` int64, the vertex of B for each vertex of A;
* ``render.png``: B coloured by its coordinates, and A coloured through the map (a right map shows
  the same colours on corresponding parts);
* ``summary.json``: the command, method, sizes, seconds and, with ``--ground-truth`` (a ``.npy``
  of ``n_A`` target indices, read without pickle), the mean geodesic error normalised by
  ``sqrt(area(B))``, the PCK curve up to 0.1 and its AUC.

``--force`` replaces only files an earlier ``geom match`` wrote in DIR.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from .flow_cli import SUMMARY, _output, _prepare_out, _pyplot, _remove_stale, _save_figure

__all__ = ["MATCH_OUTPUTS", "configure", "run"]

MATCH_OUTPUTS = ("map.npy", "render.png", SUMMARY)
"""Every file ``geom match`` writes (``--force`` removes no other)."""
METHODS = ("fmap", "fmap-sw", "sliced-plan", "rigid")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="A", help="source shape: a mesh file (.ply, .obj, .off); a point cloud for rigid")
    parser.add_argument("target", metavar="B", help="target shape")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (absent or empty, or --force)")
    parser.add_argument("--method", default="fmap", choices=METHODS, help="fmap (WKS + ZoomOut, default), fmap-sw "
                        "(SW alignment + entropic refinement), sliced-plan, rigid")
    parser.add_argument("--n-eigen", type=int, default=60, metavar="K", help="eigenfunctions of the final map (60)")
    parser.add_argument("--ground-truth", default=None, metavar="FILE", help=".npy of n_A target vertex indices")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (0)")
    parser.add_argument("--force", action="store_true", help="replace the outputs of an earlier geom match in DIR")


def _command_line(args) -> list[str]:
    argv = ["geom", "match", args.source, args.target, "--out", args.out, "--method", args.method,
            "--n-eigen", str(args.n_eigen), "--seed", str(args.seed)]
    if args.ground_truth is not None:
        argv += ["--ground-truth", args.ground_truth]
    return argv


def _read_shape(path: str, flag: str):
    import geom.io

    try:
        vertices, faces, _ = geom.io._load(path)
    except (TypeError, ValueError, OSError) as exc:
        text = str(exc).removeprefix("obj: ")
        raise type(exc)(f"{flag}: {text}") from None
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"{flag}: expected 3-D vertices, got shape {vertices.shape}")
    return np.asarray(vertices, np.float64), None if faces is None or len(faces) == 0 else np.asarray(faces, np.int64)


def _read_truth(path: str, n_source: int, n_target: int) -> np.ndarray:
    try:
        truth = np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused
        raise ValueError(f"--ground-truth: cannot read '{path}' without pickle ({exc})") from None
    except OSError as exc:
        raise OSError(f"--ground-truth: cannot read '{path}' ({exc.strerror or exc})") from None
    from geom.match.fmap import check_p2p

    try:
        return check_p2p(truth, n_source, n_target, "--ground-truth")
    except ValueError as exc:
        raise ValueError(f"{exc} (file '{path}')") from None


def _render(va, fa, vb, fb, T, fh) -> None:
    """B coloured by its normalised coordinates; A coloured by the colour of its image under T."""
    lo, hi = vb.min(0), vb.max(0)
    colour_b = (vb - lo) / np.maximum(hi - lo, 1e-12)
    colour_a = colour_b[T]
    plt = _pyplot()
    fig = plt.figure(figsize=(9, 4.5))
    for k, (v, f, c, title) in enumerate(((va, fa, colour_a, "A, coloured through the map"),
                                          (vb, fb, colour_b, "B"))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        if f is not None:
            tri = ax.plot_trisurf(v[:, 0], v[:, 1], v[:, 2], triangles=f, linewidth=0, antialiased=False)
            tri.set_facecolor(c[f].mean(1))
        else:
            ax.scatter(v[:, 0], v[:, 1], v[:, 2], c=c, s=2)
        ax.set_title(title)
        ax.set_axis_off()
        span = (v.max(0) - v.min(0)).max() / 2
        mid = (v.max(0) + v.min(0)) / 2
        ax.set(xlim=(mid[0] - span, mid[0] + span), ylim=(mid[1] - span, mid[1] + span),
               zlim=(mid[2] - span, mid[2] + span))
    _save_figure(fig, fh)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from geom.match import match, score_map
    from geom.match.pipeline import progress_steps

    if args.n_eigen < 2:
        raise ValueError(f"--n-eigen: expected an integer >= 2, got {args.n_eigen}")
    if not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed: expected an integer in [0, 2^63), got {args.seed}")
    va, fa = _read_shape(args.source, "A")
    vb, fb = _read_shape(args.target, "B")
    truth = None if args.ground_truth is None else _read_truth(args.ground_truth, len(va), len(vb))
    if truth is not None and fb is None:
        raise ValueError("--ground-truth: geodesic errors need B to be a triangle mesh, got a point cloud")
    if args.method != "rigid":  # checked before the progress bar starts, so an error stays one line
        for flag, v, f in (("A", va, fa), ("B", vb, fb)):
            if f is None:
                raise ValueError(f"{flag}: method {args.method!r} needs a triangle mesh, got a point cloud without "
                                 "faces; use --method rigid for point clouds")
            if args.n_eigen > len(v):
                raise ValueError(f"--n-eigen: expected at most the number of vertices, {len(v)} (of {flag}), got "
                                 f"{args.n_eigen}")
    out, ours = _prepare_out(args.out, "match", MATCH_OUTPUTS, force=args.force)
    steps = progress_steps(args.method, n_eigen=args.n_eigen)  # match()'s stages
    bar = tqdm(desc="geom match", total=steps, unit="step", leave=False)

    def progress(stage: str, n: int = 1) -> None:
        bar.set_postfix_str(stage)
        bar.update(n)

    t0 = time.perf_counter()
    try:
        result = match((va, fa) if fa is not None else va, (vb, fb) if fb is not None else vb, method=args.method,
                       n_eigen=args.n_eigen, seed=args.seed, progress=progress)
    except ValueError as exc:
        text = str(exc)
        for old, new in (("source: ", "A: "), ("target: ", "B: "), ("n_eigen: ", "--n-eigen: "),
                         ("mesh: ", "A or B: ")):
            if text.startswith(old):
                text = new + text[len(old):]
        raise ValueError(text) from None
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    summary = {"command": _command_line(args), "method": args.method, "n_source": int(len(va)),
               "n_target": int(len(vb)), "seconds": seconds, "info": result.info}
    if truth is not None:
        summary["ground_truth"] = score_map(result.p2p, truth, vb, fb, seed=args.seed).to_json()
    with _output(out / "map.npy") as fh:
        np.save(fh, result.p2p.astype(np.int64), allow_pickle=False)
    with _output(out / "render.png") as fh:
        _render(va, fa, vb, fb, result.p2p, fh)
    _remove_stale(out, ours, list(MATCH_OUTPUTS))
    import geom

    summary.update(version=geom.__version__, files=list(MATCH_OUTPUTS))
    with _output(out / SUMMARY, "w") as fh:  # last: it lists the files above
        fh.write(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    line = f"geom match: {args.method}, {len(va)} -> {len(vb)} vertices in {seconds:.1f} s"
    if truth is not None:
        g = summary["ground_truth"]
        line += f"; mean geodesic error {g['mean_geodesic_error']:.4f}, AUC {g['auc']:.3f}"
    print(line + f"; wrote {out}")
    return 0
