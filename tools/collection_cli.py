"""``geom collection``: embeddings, SW matrices, kNN and two-sample tests of whole collections.

The maths lives in :mod:`geom.collection`; this module reads the collection, parses arguments,
shows progress bars (stderr) and writes files::

    geom collection embed|matrix|knn|test SOURCE --out DIR [--scheduler ADDRESS | --workers N]
                    [--n-projections L] [--n-quantiles K] [--p P] [--seed S] [--n-points N]
                    [--normalize sphere|box] [--block-size B] [--k K] [--classes A,B] [--against SOURCE2]
                    [--n-permutations P] [--gamma G] [--root DIR] [--resume | --force]

SOURCE is a folder of shape files (.ply .obj .off .stl .pcd .xyz .npy .npz; meshes give ``--n-points``
seeded surface samples; files in subfolders take the subfolder's name as their class), or
``dataset:NAME`` (the items and labels of ``geom.load_dataset(NAME, seed=S, n_points=N)``).

What each action writes into DIR (every file to a temporary name, then renamed):

* ``embed``: ``embedding.npz`` (``vectors``, ``error``, ``origin``, ``directions``, ``labels``; arrays
  only, no pickle; see :class:`geom.collection.Embedding`) and ``summary.json`` (its ``scale``:
  ``SW_p = scale * ||vectors[a] - vectors[b]||_p``);
* ``matrix``: ``matrix.npy`` (the SW matrix), ``blocks/`` (its blocks, as they finish: ``--resume``
  after an interruption skips those present), ``heatmap.png`` (the matrix in clustered order:
  average-linkage leaves), ``mds.png`` (classical MDS in 2-D, coloured by class) and ``summary.json``;
* ``knn``: ``neighbours.npz`` (``indices``, ``distances`` of the ``--k`` nearest other members) and
  ``summary.json`` (with the share of neighbours of the same class);
* ``test``: ``summary.json`` (the MMD statistic and its permutation p-value) between two classes of
  SOURCE (``--classes A,B``; only their members are embedded) or between SOURCE and ``--against SOURCE2``.

Every ``summary.json`` lists the members in row order (file or dataset item, and class).

``--workers N`` starts a Dask LocalCluster of N worker processes; ``--scheduler ADDRESS`` uses a
running one (``pip install 'geom[dask]'``; Dask moves tasks and results with pickle: use a scheduler you
trust). ``--force`` replaces the outputs of an earlier
``geom collection`` in DIR and removes nothing else.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import pathlib
import sys

import numpy as np
import torch

import geom
from geom._checks import check_int, check_positive_int
from geom._files import TEMP_PREFIX

from ._common import _add_normalize, _check_seed, _measure, _print_json
from .flow_cli import (SUMMARY, _dataset_class, _load_dataset, _output, _pyplot, _refuse_foreign, _save_figure,
                       _written_by)

__all__ = ["ACTIONS", "configure", "run"]

ACTIONS = ("embed", "matrix", "knn", "test")
OUTPUTS = {"embed": ("embedding.npz", SUMMARY), "matrix": ("matrix.npy", "heatmap.png", "mds.png", SUMMARY),
           "knn": ("neighbours.npz", SUMMARY), "test": (SUMMARY,)}
ALL_OUTPUTS = tuple(dict.fromkeys(n for names in OUTPUTS.values() for n in names))
BLOCKS = "blocks"
SUFFIXES = (".ply", ".obj", ".off", ".stl", ".pcd", ".xyz", ".npy", ".npz")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", metavar="ACTION", help="embed, matrix, knn or test")
    parser.add_argument("source", metavar="SOURCE", help="folder of shape files (subfolders: classes) or dataset:NAME")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (absent or empty)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="a running Dask scheduler; one you trust: Dask moves tasks and results with pickle")
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="start a Dask LocalCluster of N worker processes")
    parser.add_argument("--n-projections", type=int, default=64, metavar="L", help="shared directions (default 64)")
    parser.add_argument("--n-quantiles", type=int, default=None, metavar="K",
                        help="quantile levels (default: the largest number of points, exact for uniform clouds)")
    parser.add_argument("--p", type=float, default=2.0, metavar="P", help="order of SW_p (default 2)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of samples and directions (default 0)")
    parser.add_argument("--n-points", type=int, default=2048, metavar="N",
                        help="surface samples per mesh, points per dataset item (default 2048)")
    _add_normalize(parser)
    parser.add_argument("--block-size", type=int, default=None, metavar="B", help="rows of a matrix block")
    parser.add_argument("--k", type=int, default=5, metavar="K", help="knn: neighbours per member (default 5)")
    parser.add_argument("--classes", default=None, metavar="A,B", help="test: the two classes of SOURCE compared")
    parser.add_argument("--against", default=None, metavar="SOURCE2", help="test: a second collection")
    parser.add_argument("--n-permutations", type=int, default=1000, metavar="P", help="test: relabellings")
    parser.add_argument("--gamma", default="median", metavar="G",
                        help="test: Gaussian kernel width, a number or median (default)")
    parser.add_argument("--root", default=None, metavar="DIR", help="folder of on-disk datasets")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="matrix: continue, skipping the blocks in DIR/blocks")
    again.add_argument("--force", action="store_true", help="replace the outputs of an earlier geom collection")


# ---------------------------------------------------------------------------------------------- inputs


def _folder_items(folder: pathlib.Path, args, what: str):
    files = sorted(q for q in folder.rglob("*") if q.is_file() and q.suffix.lower() in SUFFIXES
                   and not q.name.startswith(TEMP_PREFIX))
    if not files:
        raise FileNotFoundError(f"{what}: no shape files ({' '.join(SUFFIXES)}) in '{folder}'")
    from tqdm import tqdm

    items, names = [], []
    for path in tqdm(files, desc="geom collection read", unit="file", file=sys.stderr,
                     disable=len(files) < 20):
        mesh = path.suffix.lower() in (".ply", ".obj", ".off", ".stl")
        options = dict(n_samples=args.n_points, seed=args.seed) if mesh else {}
        items.append(_measure(str(path), f"{what} file '{path}'", "points", args.normalize, options))
        names.append(str(path.relative_to(folder)))
    classes = sorted({pathlib.Path(n).parent.as_posix() for n in names})
    labels = [classes.index(pathlib.Path(n).parent.as_posix()) for n in names]
    return items, np.array(labels), [c if c != "." else "all" for c in classes], names


def _dataset_items(name: str, args, what: str):
    cls = _dataset_class(name, what)
    options = {k: v for k, v in (("seed", args.seed), ("n_points", args.n_points)) if k in cls.options}
    data = _load_dataset(name, args, what, **options)
    items, labels = [], []
    for k in range(len(data)):
        item, label = data[k]
        items.append(_measure(item, f"{what} item {k}", normalize=args.normalize) if args.normalize or not
                     isinstance(item, geom.Measure) else item)
        labels.append(int(label))
    classes = list(getattr(data, "classes", None) or sorted(set(map(str, labels))))
    return items, np.array(labels), classes, [f"{name}:{k}" for k in range(len(data))]


def _read(text: str, args, what: str):
    if text.startswith("dataset:"):
        name = text.split(":", 1)[1]
        if not name:
            raise ValueError(f"{what}: expected dataset:NAME, got {text!r}")
        return _dataset_items(name, args, what)
    folder = pathlib.Path(text).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{what}: '{text}' is not a folder (expected a folder of shape files or dataset:NAME)")
    return _folder_items(folder, args, what)


def _check(args) -> None:
    if args.action not in ACTIONS:
        raise ValueError(f"ACTION: expected one of {', '.join(ACTIONS)}, got {args.action!r}")
    check_positive_int(args.n_projections, "--n-projections")
    if args.n_quantiles is not None:
        check_positive_int(args.n_quantiles, "--n-quantiles")
    if not (math.isfinite(args.p) and args.p >= 1):
        raise ValueError(f"--p: expected a finite number >= 1, got {args.p}")
    _check_seed(args.seed)
    check_positive_int(args.n_points, "--n-points")
    if args.block_size is not None:
        check_positive_int(args.block_size, "--block-size")
    check_positive_int(args.k, "--k")
    check_positive_int(args.n_permutations, "--n-permutations")
    if args.workers is not None:
        check_int(args.workers, "--workers", minimum=1)
    if (args.workers is not None or args.scheduler is not None) and importlib.util.find_spec("distributed") is None:
        raise ValueError(f"{'--workers' if args.workers is not None else '--scheduler'}: running on Dask needs "
                         "dask.distributed: pip install 'geom[dask]'")
    if args.action == "test":
        if (args.classes is None) == (args.against is None):
            raise ValueError("--classes, --against: test compares two classes of SOURCE (--classes A,B) or SOURCE with "
                             "a second collection (--against SOURCE2); give exactly one")
        if args.gamma != "median":
            try:
                args.gamma = float(args.gamma)
            except ValueError:
                raise ValueError(f"--gamma: expected a positive number or median, got {args.gamma!r}") from None
            if not (math.isfinite(args.gamma) and args.gamma > 0):
                raise ValueError(f"--gamma: expected a positive number or median, got {args.gamma}")
    if args.resume and args.action != "matrix":
        raise ValueError(f"--resume: only matrix keeps blocks to continue from, got action {args.action}")


def _prepare_out(args) -> tuple[pathlib.Path, set[str]]:
    """The output folder, usable as flow_cli's are: absent or empty, or with --force holding only files
    an earlier ``geom collection`` wrote, or with --resume holding its blocks."""
    out = pathlib.Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out: '{args.out}' exists and is not a directory")
    present = {q.name for q in out.iterdir() if not q.name.startswith(TEMP_PREFIX)} if out.is_dir() else set()
    ours = _written_by(out, "collection", ALL_OUTPUTS + (BLOCKS,)) if present else set()
    if args.resume and not (out / BLOCKS / "manifest.json").is_file():
        raise FileNotFoundError(f"--resume: no {BLOCKS}/manifest.json in '{args.out}' to continue")
    if present and not (args.force or args.resume):
        raise FileExistsError(f"--out: '{args.out}' is not empty; pass --force to overwrite"
                              f"{' or --resume to continue' if args.action == 'matrix' else ''}")
    if args.force:
        _refuse_foreign(out, "collection", ALL_OUTPUTS + (BLOCKS,), ours, "--force")
        if BLOCKS in ours:
            for block in (out / BLOCKS).glob("*"):
                if block.name == "manifest.json" or (block.name.startswith("block-") and block.suffix == ".npy"):
                    block.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"--out: cannot create '{args.out}' ({exc.strerror or exc})") from None
    return out, ours


# ---------------------------------------------------------------------------------------------- plots


def _heatmap(D: np.ndarray, labels: np.ndarray, fh) -> list[int]:
    """The matrix in clustered order (average linkage); returns the order."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    order = leaves_list(linkage(squareform(D, checks=False), "average")) if len(D) > 2 else np.arange(len(D))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(D[np.ix_(order, order)], cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="SW")
    ax.set(title="SW matrix, clustered order", xticks=[], yticks=[])
    _save_figure(fig, fh)
    return order.tolist()


def classical_mds(D: np.ndarray, dim: int = 2) -> np.ndarray:
    """``(C, dim)`` coordinates whose distances best match ``D`` (Torgerson: double centring, top eigenvectors)."""
    C = len(D)
    J = np.eye(C) - 1.0 / C
    B = -0.5 * J @ (D**2) @ J
    w, V = np.linalg.eigh(B)
    top = np.argsort(w)[::-1][:dim]
    return V[:, top] * np.sqrt(np.clip(w[top], 0, None))


def _mds_plot(D: np.ndarray, labels: np.ndarray, classes: list[str], fh) -> None:
    xy = classical_mds(D)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, name in enumerate(classes):
        keep = labels == c
        if keep.any():
            ax.scatter(xy[keep, 0], xy[keep, 1], s=10, label=name)
    ax.set(title="classical MDS of the SW matrix", xlabel="MDS 1", ylabel="MDS 2")
    if len(classes) <= 12:
        ax.legend(fontsize=7, markerscale=1.5)
    _save_figure(fig, fh)


# ---------------------------------------------------------------------------------------------- run


def _client(args):
    if args.scheduler is not None:
        return args.scheduler, None
    if args.workers is not None:
        from geom.collection._dask import local_client

        c = local_client(args.workers)
        return c, c
    return None, None


def run(args) -> int:
    import geom.collection as gc

    _check(args)
    out, ours = _prepare_out(args)
    items, labels, classes, names = _read(args.source, args, "SOURCE")
    wanted = None
    if args.action == "test" and args.classes is not None:
        items, labels, names, wanted = _pick_classes(args, items, labels, classes, names)
    written: list[str] = []
    summary = {"command": _command_line(args), "action": args.action, "source": args.source,
               "n_measures": len(items), "classes": classes, "n_projections": args.n_projections, "p": args.p,
               "seed": args.seed, "version": geom.__version__}
    client, own = _client(args)
    try:
        emb = gc.embed(items, n_projections=args.n_projections, n_quantiles=args.n_quantiles, p=args.p,
                       seed=args.seed, client=client, progress=True)
        summary.update(n_quantiles=emb.n_quantiles, scale=emb.scale, max_error=float(emb.error.max()))
        if args.action == "embed":
            with _output(out / "embedding.npz") as fh:
                origin = np.zeros(emb.n_projections) if emb.origin is None else emb.origin.numpy()
                np.savez(fh, vectors=emb.vectors.numpy(), error=emb.error.numpy(), origin=origin,
                         directions=emb.directions.numpy(), labels=labels)
            written.append("embedding.npz")
        elif args.action == "matrix":
            D = gc.pairwise(emb, block_size=args.block_size, client=client, out=out / BLOCKS, progress=True).numpy()
            written.append(BLOCKS)
            with _output(out / "matrix.npy") as fh:
                np.save(fh, D, allow_pickle=False)
            with _output(out / "heatmap.png") as fh:
                summary["clustered_order"] = _heatmap(D, labels, fh)
            with _output(out / "mds.png") as fh:
                _mds_plot(D, labels, classes, fh)
            written += ["matrix.npy", "heatmap.png", "mds.png"]
            off = D[np.triu_indices(len(D), 1)]
            summary.update(mean_sw=float(off.mean()) if off.size else None)
        elif args.action == "knn":
            d, i = gc.knn(emb, k=args.k, block_size=args.block_size, client=client, progress=True)
            with _output(out / "neighbours.npz") as fh:
                np.savez(fh, indices=i.numpy(), distances=d.numpy())
            written.append("neighbours.npz")
            summary.update(k=args.k, same_class=float((labels[i.numpy()] == labels[:, None]).mean()))
        else:
            summary.update(_test(args, gc, emb, labels, classes, wanted))
    finally:
        if own is not None:
            cluster = own.cluster
            own.close()
            cluster.close()
    for name in sorted(ours - set(written) - {SUMMARY}):
        if name != BLOCKS:
            (out / name).unlink(missing_ok=True)
    summary["members"] = [{"name": n, "class": classes[y]} for n, y in zip(names, labels.tolist())]
    summary["files"] = written + [SUMMARY]
    with _output(out / SUMMARY, "w") as fh:
        json.dump(summary, fh, indent=2, allow_nan=False)
    _print_json({k: v for k, v in summary.items() if k not in ("clustered_order", "command", "members")})
    return 0


def _command_line(args) -> list[str]:
    argv = ["geom", "collection", args.action, args.source, "--out", args.out, "--n-projections",
            str(args.n_projections), "--p", repr(args.p), "--seed", str(args.seed), "--n-points", str(args.n_points)]
    for flag, value in (("--n-quantiles", args.n_quantiles), ("--normalize", args.normalize),
                        ("--block-size", args.block_size), ("--classes", args.classes), ("--against", args.against)):
        if value is not None:
            argv += [flag, str(value)]
    if args.action == "knn":
        argv += ["--k", str(args.k)]
    if args.action == "test":
        argv += ["--n-permutations", str(args.n_permutations), "--gamma", str(args.gamma)]
    return argv


def _pick_classes(args, items, labels, classes, names):
    """``test --classes A,B``: only the members of the two classes (embedded, the others not)."""
    wanted = [c.strip() for c in args.classes.split(",")]
    if len(wanted) != 2 or len(set(wanted)) != 2 or any(c not in classes for c in wanted):
        raise ValueError(f"--classes: expected two of the classes {', '.join(classes)}, got {args.classes!r}")
    keep = [k for k, y in enumerate(labels) if classes[y] in wanted]
    return [items[k] for k in keep], labels[keep], [names[k] for k in keep], wanted


def _test(args, gc, emb, labels, classes, wanted) -> dict:
    if wanted is not None:
        a, b = (torch.from_numpy(np.flatnonzero(labels == classes.index(c))) for c in wanted)
        ex, ey = emb[a], emb[b]
        what = wanted
    else:
        other, _, _, _ = _read(args.against, args, "--against")
        ex, ey = emb, gc.embed(other, directions=emb.directions, n_quantiles=emb.n_quantiles, p=emb.p, progress=True)
        what = [args.source, args.against]
    r = gc.mmd_test(ex, ey, gamma=args.gamma, n_permutations=args.n_permutations, seed=args.seed, progress=True)
    return {"compared": what, "sizes": [len(ex), len(ey)], "mmd2": r.statistic, "pvalue": r.pvalue,
            "n_permutations": r.n_permutations, "gamma": r.gamma}
