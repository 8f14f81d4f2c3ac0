"""The built-in ``geom`` commands, a plugin like any other: the entry point ``commands`` of group
``"geom"`` names this module, whose ``geom_register_commands`` hook registers one
:class:`geom.Command` subclass per command. ``geom flow`` and ``geom generate`` live in
:mod:`geom_tools.flow_cli`, ``geom deform`` in :mod:`geom_tools.deform_cli` and ``geom collection`` in
:mod:`geom_tools.collection_cli`, ``geom match`` in :mod:`geom_tools.match_cli`, ``geom train-ae`` in
:mod:`geom_tools.train_ae_cli`, imported when they are configured or run.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import pathlib
import sys
import textwrap

import geom

from ._common import (SAMPLING_KINDS, _add_normalize, _check_seed, _finite_or_none, _fmt,
                      _measure, _named, _new_scheme, _parse_options, _print_json, _table)

__all__ = ["METRICS", "Collection", "Compare", "Datasets", "Deform", "Demo", "Flow", "Generate", "Match", "Plugins",
           "TrainAE", "geom_register_commands"]

METRICS: dict[str, str] = {
    "chamfer": "chamfer_distance",
    "energy": "energy_distance",
    "hausdorff": "hausdorff_distance",
}
"""``--metrics`` name -> function of :mod:`geom` called as ``f(mu, nu)``."""

DEFAULT_SAMPLES = 2048
"""Surface samples drawn from each mesh when ``--n-samples`` is not given."""


# ---------------------------------------------------------------------------------------------- helpers


def _existing_file(text: str, name: str) -> pathlib.Path:
    path = pathlib.Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file '{text}'")
    if path.is_dir():
        raise IsADirectoryError(f"{name}: '{text}' is a directory; expected a shape file")
    return path


def _parse_metrics(text: str) -> list[str]:
    names = list(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"--metrics: unknown metric {unknown[0]!r}; valid metrics: {', '.join(METRICS)}")
    return names


def _check_normalize(normalize, kind_options: dict) -> None:
    """``--normalize`` (argparse checks its value) next to ``--kind-option``: the sphere kind's own
    ``normalize`` is another option."""
    if normalize is not None and "normalize" in kind_options:
        raise ValueError("--kind-option: normalize (the representation's own option) cannot be combined with "
                         f"--normalize {normalize}")


def _check_common(args: argparse.Namespace) -> None:
    """Validate cheap arguments before any file is read; ``args.scheme`` becomes the scheme instance
    built with the ``--option`` values (bad names or values fail here, naming the option), and
    ``args.n_samples`` the samples drawn (None for a kind that does not sample)."""
    from geom._checks import check_memory, check_p, check_positive_int

    try:
        check_p(args.p)
    except (TypeError, ValueError) as exc:
        raise _named(exc, "--p", ("p",)) from None
    n_projections = check_positive_int(args.n_projections, "--n-projections")
    _check_seed(args.seed)
    kind = args.kind or "points"
    if args.kind is not None:
        from geom.registry import get_representation

        try:
            get_representation(args.kind)
        except (TypeError, ValueError) as exc:
            raise _named(exc, "--kind", ("kind",)) from None
    if kind in SAMPLING_KINDS:  # float64 samples of both meshes (a lower bound)
        args.n_samples = check_positive_int(DEFAULT_SAMPLES if args.n_samples is None else args.n_samples,
                                            "--n-samples")
        check_memory(2 * 24 * args.n_samples, "--n-samples", f"{args.n_samples} surface samples of each mesh")
    elif args.n_samples is not None:
        raise ValueError(f"--n-samples: kind {kind!r} does not sample surfaces (only {' and '.join(SAMPLING_KINDS)} "
                         f"do), got --n-samples {args.n_samples}")
    check_memory(24 * n_projections, "--n-projections", f"{n_projections} directions")
    args.kind_options = _parse_options(args.kind_options, "--kind-option")
    _check_normalize(args.normalize, args.kind_options)
    args.options = _parse_options(args.options)
    args.scheme_name = args.scheme
    args.scheme = _new_scheme(args.scheme, args.options)


def _check_projections(args: argparse.Namespace, mu) -> None:
    """``--n-projections`` against the memory its directions need in the measure's space."""
    from geom._checks import check_memory

    dim = math.prod(mu.support.shape[2:])  # numbers per atom (d, or n * n for matrices)
    check_memory(8 * args.n_projections * (dim + 2), "--n-projections", f"{args.n_projections} directions in "
                 f"dimension {dim}")


def _scheme_text(args: argparse.Namespace) -> str:
    return ", ".join([args.scheme_name] + [f"{k}={v}" for k, v in args.options.items()])


def _pm(stderr: float) -> str:
    """``± stderr``, or why there is none (deterministic rules, one randomisation, maxima)."""
    return f" ± {_fmt(stderr)}" if math.isfinite(stderr) else ", no standard error"


def _load(path: pathlib.Path, args: argparse.Namespace, name: str) -> geom.Measure:
    """The measure in the file ``path``; errors name the argument ``name`` (A or B)."""
    kind = args.kind or "points"
    options = dict(n_samples=args.n_samples, seed=args.seed) if kind in SAMPLING_KINDS else {}
    return _measure(str(path), name, kind, args.normalize, {**options, **args.kind_options})


def _metric(name: str, mu: geom.Measure, nu: geom.Measure) -> float:
    return float(getattr(geom, METRICS[name])(mu, nu))


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-projections", type=int, default=256, metavar="L",
                        help="number of slicing directions (default: 256)")
    parser.add_argument("--seed", type=int, default=0, metavar="K",
                        help="seed of the surface samples and of the directions (default: 0)")
    parser.add_argument("--n-samples", type=int, default=None, metavar="N",
                        help=f"surface samples drawn from each mesh, kinds {' and '.join(SAMPLING_KINDS)} only "
                             f"(default: {DEFAULT_SAMPLES})")
    parser.add_argument("--scheme", default="mc", metavar="S", help="slicing scheme (default: mc; see `geom plugins`)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
                        help="an option of the scheme, repeatable: --option point_set=spiral --option "
                             "n_randomizations=4 (values read as JSON numbers, true/false/null, else text)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


# ---------------------------------------------------------------------------------------------- compare


class Compare(geom.Command):
    help = "compare two shape files: SW_p ± stderr, and optional metrics"

    def configure(self, parser):
        parser.add_argument("a", metavar="A", help="first shape file (.ply .obj .off .stl .pcd .xyz .npy .npz)")
        parser.add_argument("b", metavar="B", help="second shape file")
        _add_sampling_options(parser)
        parser.add_argument("--p", type=float, default=2.0, metavar="P", help="order of SW_p, P >= 1 (default: 2)")
        parser.add_argument("--metrics", default="", metavar="M[,M...]",
                            help=f"also compute these, comma-separated: {', '.join(METRICS)}")
        parser.add_argument("--kind", default=None, metavar="K",
                            help="measure representation (default: points; see `geom plugins`)")
        parser.add_argument("--kind-option", action="append", default=[], metavar="KEY=VALUE", dest="kind_options",
                            help="an option of the representation, repeatable: --kind-option normalize=true "
                                 "(values read as JSON numbers, true/false/null, else text)")
        _add_normalize(parser)

    def run(self, args):
        metrics = _parse_metrics(args.metrics)
        _check_common(args)
        a, b = _existing_file(args.a, "A"), _existing_file(args.b, "B")
        mu, nu = _load(a, args, "A"), _load(b, args, "B")
        _check_projections(args, mu)
        result = geom.sliced_wasserstein(mu, nu, p=args.p, n_projections=args.n_projections, scheme=args.scheme,
                                         seed=args.seed, return_result=True)
        value, stderr = float(result.value), float(result.stderr)
        values = {name: _metric(name, mu, nu) for name in metrics}
        if args.json:
            _print_json({
                "a": str(a), "b": str(b), "kind": mu.kind, "kind_options": args.kind_options,
                "normalize": args.normalize, "n_points": {"a": mu.n_points, "b": nu.n_points},
                "n_samples": args.n_samples, "scheme": args.scheme_name, "options": args.options,
                "n_projections": args.n_projections, "p": args.p, "seed": args.seed, "value": value,
                "stderr": _finite_or_none(stderr), "metrics": {k: _finite_or_none(v) for k, v in values.items()},
                "version": geom.__version__,
            })
            return 0
        label = f"SW_{args.p:g}"
        width = max([len(label), *map(len, values)])
        print(f"{'A':<{width}}   {a} ({mu.n_points} points)")
        print(f"{'B':<{width}}   {b} ({nu.n_points} points)")
        print(f"{label:<{width}} = {_fmt(value)}{_pm(stderr)} ({_scheme_text(args)}, L={args.n_projections}, "
              f"seed={args.seed})")
        for name, v in values.items():
            print(f"{name:<{width}} = {_fmt(v)}")
        return 0


# ---------------------------------------------------------------------------------------------- plugins


class Plugins(geom.Command):
    help = "list installed plugins and what each registers"

    def configure(self, parser):
        parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    def run(self, args):
        infos = geom.plugins()
        if args.json:
            _print_json([dataclasses.asdict(info) for info in infos])
            return 0
        rows = [
            [i.name, i.distribution or "-", i.version or "-", ", ".join(i.schemes) or "-",
             ", ".join(i.representations) or "-", ", ".join(i.datasets) or "-", ", ".join(i.commands) or "-",
             f"failed: {i.error}" if i.error else f"conflict: {'; '.join(i.conflicts)}" if i.conflicts else "ok"]
            for i in infos
        ]
        print(_table(["plugin", "distribution", "version", "schemes", "representations", "datasets", "commands",
                      "status"], rows))
        if any(i.conflicts for i in infos):
            print("A name in conflict cannot be used until all but one of its plugins are disabled: "
                  "GEOM_DISABLE_PLUGINS=plugin[,plugin...]")
        return 0


# ---------------------------------------------------------------------------------------------- datasets


class Datasets(geom.Command):
    help = "list registered datasets, their descriptions and options"

    def configure(self, parser):
        parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    def run(self, args):
        from geom.registry import get_dataset

        entries = [(name, get_dataset(name)) for name in geom.datasets()]
        if args.json:
            _print_json([{"name": n, "description": c.description, "options": dict(c.options)} for n, c in entries])
            return 0
        if not entries:
            print("no datasets registered")
            return 0
        for name, cls in entries:
            print(f"{name}: {cls.description or '(no description)'}")
            for option, text in cls.options.items():
                print(f"    {option}: {text}")
        return 0


# ---------------------------------------------------------------------------------------------- demo


def _sample_files() -> list[pathlib.Path]:
    import geom_datasets
    from geom_datasets.shapes import SAMPLES

    folder = pathlib.Path(geom_datasets.__file__).parent / "samples"
    files = {p.stem: p for p in folder.glob("*.ply")}
    order = [n for n in SAMPLES if n in files] + sorted(n for n in files if n not in SAMPLES)
    if len(order) < 2:
        raise FileNotFoundError(
            f"demo: expected at least two sample meshes in '{folder}', found {len(order)}; "
            f"generate them with: python -m geom_datasets.shapes {folder}"
        )
    return [files[n] for n in order]


class Demo(geom.Command):
    help = "compare every pair of the bundled sample shapes (the job of `make run`)"

    def configure(self, parser):
        _add_sampling_options(parser)
        parser.set_defaults(p=2.0, kind=None, kind_options=[], normalize=None)

    def run(self, args):
        from tqdm import tqdm

        _check_common(args)
        files = _sample_files()
        measures = {path.stem: _load(path, args, path.name) for path in files}
        rows = []
        for a, b in tqdm(list(itertools.combinations(measures, 2)), desc="geom demo", unit="pair", file=sys.stderr):
            mu, nu = measures[a], measures[b]
            result = geom.sliced_wasserstein(mu, nu, p=2, n_projections=args.n_projections, scheme=args.scheme,
                                             seed=args.seed, return_result=True)
            rows.append({"a": a, "b": b, "sw2": float(result.value), "stderr": float(result.stderr),
                         "chamfer": _metric("chamfer", mu, nu)})
        rows.sort(key=lambda r: r["sw2"])
        if args.json:
            _print_json({
                "samples": {name: str(path) for name, path in zip(measures, files)},
                "n_samples": args.n_samples, "n_projections": args.n_projections, "scheme": args.scheme_name,
                "options": args.options, "seed": args.seed,
                "pairs": [{k: _finite_or_none(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
            })
            return 0
        table = [[f"{r['a']} vs {r['b']}", f"{r['sw2']:.4f}",
                  f"± {r['stderr']:.4f}" if math.isfinite(r["stderr"]) else "-", f"{r['chamfer']:.4f}"] for r in rows]
        print(_table(["pair", "SW_2", "stderr", "Chamfer"], table, right={1, 2, 3}))
        print()
        print(textwrap.fill(
            f"Each row compares two bundled shapes through {args.n_samples} seeded surface samples each; "
            f"smaller means more alike (rows run from the closest pair to the farthest). SW_2 is the sliced "
            f"2-Wasserstein distance estimated from L={args.n_projections} directions ({_scheme_text(args)}), "
            "± one standard error of that estimate, and Chamfer the summed mean squared nearest-neighbour "
            "distances both ways.",
            width=100,
        ))
        return 0


# ---------------------------------------------------------------------------------------------- flow, generate


class Flow(geom.Command):
    help = "flow a point cloud onto another (sw, swf, cswf, mmd): trajectory, frames, loss curve, summary"

    def configure(self, parser):
        from . import flow_cli

        flow_cli.configure_flow(parser)

    def run(self, args):
        from . import flow_cli

        return flow_cli.run_flow(args)


class Generate(geom.Command):
    help = "generate samples of a dataset from noise (swf, cswf, mmd): grid PNG, W2 and energy to held-out data"

    def configure(self, parser):
        from . import flow_cli

        flow_cli.configure_generate(parser)

    def run(self, args):
        from . import flow_cli

        return flow_cli.run_generate(args)


class Deform(geom.Command):
    help = "deform a template mesh onto a target (neural ODE or free vertices): mesh, render, loss curve, metrics"

    def configure(self, parser):
        from . import deform_cli

        deform_cli.configure_deform(parser)

    def run(self, args):
        from . import deform_cli

        return deform_cli.run_deform(args)


class Collection(geom.Command):
    help = "embed a collection of shapes, its SW matrix (heatmap, MDS), kNN or a two-sample test, optionally on Dask"

    def configure(self, parser):
        from . import collection_cli

        collection_cli.configure(parser)

    def run(self, args):
        from . import collection_cli

        return collection_cli.run(args)


class TrainAE(geom.Command):
    help = "train a point-cloud autoencoder with a sliced loss: reconstructions, interpolations, Chamfer/EMD/SW, probe"

    def configure(self, parser):
        from . import train_ae_cli

        train_ae_cli.configure(parser)

    def run(self, args):
        from . import train_ae_cli

        return train_ae_cli.run(args)


class Match(geom.Command):
    help = "point-to-point map between two shapes (functional maps, SW, entropic OT, rigid): map, render, JSON"

    def configure(self, parser):
        from . import match_cli

        match_cli.configure(parser)

    def run(self, args):
        from . import match_cli

        return match_cli.run(args)


@geom.hookimpl
def geom_register_commands(register):
    for name, cls in (("compare", Compare), ("plugins", Plugins), ("demo", Demo), ("datasets", Datasets),
                      ("flow", Flow), ("generate", Generate), ("deform", Deform), ("collection", Collection),
                      ("match", Match), ("train-ae", TrainAE)):
        register(name, cls)
