"""The ``geom`` command line: argument parsing, progress bars, printing and files; the maths is in geom.

Commands live in the table :data:`COMMANDS` (name -> :class:`Command`), so new ones plug in without
touching :func:`main`::

    geom --version
    geom compare A B [--scheme S] [--option KEY=VALUE ...] [--n-projections L] [--p P] [--seed K]
                     [--metrics chamfer,energy] [--kind K] [--n-samples N] [--json]
    geom plugins [--json]
    geom datasets [--json]
    geom demo [--n-projections L] [--seed K] [--n-samples N] [--scheme S] [--json]
    geom flow SOURCE TARGET --method sw|swf|mmd [--scheme S] [--option KEY=VALUE ...] [--steps N] [--lr X]
              [--n-projections L] [--n-points N] [--seed K] [--record-every K] --out DIR [--resume | --force]
    geom generate --method swf|cswf|mmd --dataset NAME [--n-samples N] [--steps N] [--seed K] [--class C]
                  --out DIR [--force]

User errors (bad values, missing or unreadable files, broken plugins) and usage errors end as one
line ``geom: error: <message>`` on stderr and exit status 2, never a traceback. Ctrl-C at any moment
ends as one line and exit status 130: this module imports only the standard library (geom and torch
are imported by :func:`main`, under its handler), and holds a handler of its own while it is being
imported.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_early(signum, frame):  # Ctrl-C while this module is imported: nothing to clean up yet
    os.write(2, b"geom: interrupted\n")
    os._exit(130)


try:
    _BEFORE_IMPORT = signal.signal(signal.SIGINT, _interrupted_early)
except ValueError:  # imported outside the main thread
    _BEFORE_IMPORT = None

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import textwrap  # noqa: E402
from typing import Callable  # noqa: E402

__all__ = ["COMMANDS", "METRICS", "USER_ERRORS", "Command", "build_parser", "main"]

geom = None
"""The geom package, imported by :func:`main` (importing torch takes a second: under main's Ctrl-C handler)."""

USER_ERRORS = (ValueError, TypeError, OSError)
"""Exceptions reported as one line and exit status 2 (FileNotFoundError is an OSError), with
``geom.PluginError`` (a plugin broke the contract)."""


def _import_geom() -> None:
    global geom
    with _sigint_held():  # some libraries catch BaseException around optional imports: Ctrl-C waits
        import geom


@contextlib.contextmanager
def _sigint_held():
    """Hold Ctrl-C back while the block runs (a checkpoint written whole, an import that would swallow
    it), then deliver it to the handler from before."""
    caught = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    except ValueError:  # not the main thread: nothing to hold back
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and previous is not signal.SIG_IGN:
        (previous if callable(previous) else signal.default_int_handler)(signal.SIGINT, None)


METRICS: dict[str, str] = {
    "chamfer": "chamfer_distance",
    "energy": "energy_distance",
    "hausdorff": "hausdorff_distance",
}
"""``--metrics`` name -> function of :mod:`geom` called as ``f(mu, nu)``."""


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``geom <name>`` command.

    Attributes:
        help: one-line summary shown by ``geom --help``.
        configure: adds the command's arguments to its sub-parser.
        run: executes the parsed arguments, prints the result and returns the exit status.
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------------------------------- helpers


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    """Columns padded to their widest cell; columns in ``right`` aligned right (numbers)."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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


def _parse_options(items: list[str]) -> dict:
    """``["key=value", ...]`` -> scheme options; a value is JSON where it parses (3, 0.5, true, null), else text."""
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ValueError(f"--option: expected KEY=VALUE with KEY a name, got {item!r}")
        if key in options:
            raise ValueError(f"--option: {key!r} given twice")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def _named(exc: Exception, name: str, library: tuple[str, ...] = ("obj",)) -> Exception:
    """``exc`` again (same type), its message naming ``name``: a leading ``library`` argument name
    (``obj: ...``, the argument of geom.measure) is replaced, anything else gets the prefix."""
    text = str(exc)
    for old in library:
        if text.startswith(old + ": "):
            text = text[len(old) + 2:]
            break
    return type(exc)(f"{name}: {text}")


def _check_seed(seed) -> int:
    """``--seed``: an integer in [0, 2^64), what torch's and numpy's generators take."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"--seed: expected an integer in [0, 2^64), got {seed!r}")
    return seed


def _scheme_class(name: str) -> type:
    """The scheme registered as ``name``; a ValueError naming ``--scheme`` lists the registered ones."""
    from geom.registry import get_scheme

    try:
        return get_scheme(name)
    except (TypeError, ValueError) as exc:
        raise _named(exc, "--scheme", ("scheme",)) from None


def _check_common(args: argparse.Namespace) -> None:
    """Validate cheap arguments before any file is read; ``args.scheme`` becomes the scheme instance
    built with the ``--option`` values (bad names or values fail here, naming the option)."""
    from geom._checks import check_memory, check_p, check_positive_int

    try:
        check_p(args.p)
    except (TypeError, ValueError) as exc:
        raise _named(exc, "--p", ("p",)) from None
    n_projections = check_positive_int(args.n_projections, "--n-projections")
    n_samples = check_positive_int(args.n_samples, "--n-samples")
    _check_seed(args.seed)
    if args.kind is not None:
        from geom.registry import get_representation

        try:
            get_representation(args.kind)
        except (TypeError, ValueError) as exc:
            raise _named(exc, "--kind", ("kind",)) from None
    if (args.kind or "points") in SAMPLING_KINDS:  # float64 samples of both meshes (a lower bound)
        check_memory(2 * 24 * n_samples, "--n-samples", f"{n_samples} surface samples of each mesh")
    check_memory(24 * n_projections, "--n-projections", f"{n_projections} directions")
    args.options = _parse_options(args.options)
    args.scheme_name = args.scheme
    cls = _scheme_class(args.scheme)
    try:
        args.scheme = cls(**args.options)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"--option: {exc}") from None


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


SAMPLING_KINDS = ("points", "mesh")
"""Kinds that sample mesh surfaces, and so take ``--n-samples`` and ``--seed``."""


def _load(path: pathlib.Path, args: argparse.Namespace, name: str) -> geom.Measure:
    """The measure in the file ``path``; errors name the argument ``name`` (A or B)."""
    kind = args.kind or "points"
    options = dict(n_samples=args.n_samples, seed=args.seed) if kind in SAMPLING_KINDS else {}
    try:
        return geom.measure(str(path), kind=kind, **options)
    except (TypeError, ValueError, OSError) as exc:
        raise _named(exc, name) from None


def _metric(name: str, mu: geom.Measure, nu: geom.Measure) -> float:
    return float(getattr(geom, METRICS[name])(mu, nu))


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-projections", type=int, default=256, metavar="L",
                        help="number of slicing directions (default: 256)")
    parser.add_argument("--seed", type=int, default=0, metavar="K",
                        help="seed of the surface samples and of the directions (default: 0)")
    parser.add_argument("--n-samples", type=int, default=2048, metavar="N",
                        help="surface samples drawn from each mesh (default: 2048)")
    parser.add_argument("--scheme", default="mc", metavar="S", help="slicing scheme (default: mc; see `geom plugins`)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
                        help="an option of the scheme, repeatable: --option point_set=spiral --option "
                             "n_randomizations=4 (values read as JSON numbers, true/false/null, else text)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, allow_nan=False))


# ---------------------------------------------------------------------------------------------- compare


def _configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="first shape file (.ply .obj .off .stl .pcd .xyz .npy .npz)")
    parser.add_argument("b", metavar="B", help="second shape file")
    _add_sampling_options(parser)
    parser.add_argument("--p", type=float, default=2.0, metavar="P", help="order of SW_p, P >= 1 (default: 2)")
    parser.add_argument("--metrics", default="", metavar="M[,M...]",
                        help=f"also compute these, comma-separated: {', '.join(METRICS)}")
    parser.add_argument("--kind", default=None, metavar="K",
                        help="measure representation (default: points; see `geom plugins`)")


def _run_compare(args: argparse.Namespace) -> int:
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
            "a": str(a), "b": str(b), "kind": mu.kind,
            "n_points": {"a": mu.n_points, "b": nu.n_points}, "n_samples": args.n_samples,
            "scheme": args.scheme_name, "options": args.options, "n_projections": args.n_projections, "p": args.p,
            "seed": args.seed, "value": value, "stderr": _finite_or_none(stderr),
            "metrics": {k: _finite_or_none(v) for k, v in values.items()},
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


def _configure_plugins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def _run_plugins(args: argparse.Namespace) -> int:
    infos = geom.plugins()
    if args.json:
        _print_json([dataclasses.asdict(info) for info in infos])
        return 0
    rows = [
        [i.name, i.distribution or "-", i.version or "-", ", ".join(i.schemes) or "-",
         ", ".join(i.representations) or "-", ", ".join(i.datasets) or "-",
         f"failed: {i.error}" if i.error else f"conflict: {'; '.join(i.conflicts)}" if i.conflicts else "ok"]
        for i in infos
    ]
    print(_table(["plugin", "distribution", "version", "schemes", "representations", "datasets", "status"], rows))
    if any(i.conflicts for i in infos):
        print("A name in conflict cannot be used until all but one of its plugins are disabled: "
              "GEOM_DISABLE_PLUGINS=plugin[,plugin...]")
    return 0


# ---------------------------------------------------------------------------------------------- datasets


def _configure_datasets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def _run_datasets(args: argparse.Namespace) -> int:
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


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    _add_sampling_options(parser)
    parser.set_defaults(p=2.0, kind=None)


def _run_demo(args: argparse.Namespace) -> int:
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
    table = [[f"{r['a']} vs {r['b']}", f"{r['sw2']:.4f}", f"± {r['stderr']:.4f}" if math.isfinite(r["stderr"]) else "-",
              f"{r['chamfer']:.4f}"] for r in rows]
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


# ---------------------------------------------------------------------------------------------- main

def _from_flow_cli(name: str) -> Callable:
    """``flow_cli.<name>``, imported at the first call (the module imports torch)."""
    def call(*args):
        from . import flow_cli

        return getattr(flow_cli, name)(*args)

    call.__name__ = name
    return call


COMMANDS: dict[str, Command] = {
    "compare": Command("compare two shape files: SW_p ± stderr, and optional metrics", _configure_compare, _run_compare),
    "plugins": Command("list installed plugins and what each registers", _configure_plugins, _run_plugins),
    "demo": Command("compare every pair of the bundled sample shapes (the job of `make run`)",
                    _configure_demo, _run_demo),
    "datasets": Command("list registered datasets, their descriptions and options", _configure_datasets,
                        _run_datasets),
    "flow": Command("flow a point cloud onto another (sw, swf, cswf, mmd): trajectory, frames, loss curve, summary",
                    _from_flow_cli("configure_flow"), _from_flow_cli("run_flow")),
    "generate": Command("generate samples of a dataset from noise (swf, cswf, mmd): grid PNG, W2 and energy to "
                        "held-out data", _from_flow_cli("configure_generate"), _from_flow_cli("run_generate")),
}
"""Command name -> :class:`Command`; ``geom <name>`` runs it."""


class UsageError(Exception):
    """A command line argparse cannot parse; :func:`main` prints it as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, its usage errors raised as :class:`UsageError` (one line) instead of a usage block."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The ``geom`` argument parser with one sub-parser per entry of :data:`COMMANDS`."""
    if geom is None:
        _import_geom()
    parser = _Parser(prog="geom", description="Geometry and point-cloud toolkit built on sliced optimal transport.")
    parser.add_argument("--version", action="version", version=f"geom {geom.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, command in COMMANDS.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(child)
        child.set_defaults(run=command.run)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


class _Interrupt:
    """:func:`main`'s SIGINT handler: Ctrl-C raises KeyboardInterrupt, except while one is being handled
    (it is already on its way to main, which prints one line). One that a library swallowed (some
    catch BaseException around their optional imports) is raised again by :meth:`check`."""

    def __init__(self):
        self.pending = self.caught = False

    def __call__(self, signum, frame):
        if self.caught or isinstance(sys.exc_info()[1], KeyboardInterrupt):
            return
        self.pending = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.pending and not self.caught:
            raise KeyboardInterrupt


def _interruption_point() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed under :func:`main` and the exception got lost."""
    check = getattr(signal.getsignal(signal.SIGINT), "check", None)
    if check is not None:
        check()


def main(argv: list[str] | None = None) -> int:
    """Run ``geom`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    0 on success; 2 for a usage error or a user error (one line ``geom: error: ...`` on stderr);
    130 when interrupted (one line ``geom: interrupted...``), whenever Ctrl-C comes: while geom is
    imported, the arguments parsed, the files read, the flow run or its files written. The SIGINT
    handler from before is restored on return; with ``argv`` None (the console script) Ctrl-C is
    ignored from then on, while the interpreter exits.
    """
    interrupt = _Interrupt()
    try:
        before = signal.signal(signal.SIGINT, interrupt)
    except ValueError:  # not the main thread: Ctrl-C raises KeyboardInterrupt as usual
        before = None
    try:
        return _main(argv)
    except KeyboardInterrupt:
        interrupt.caught = True
        print("geom: interrupted", file=sys.stderr)
        return 130
    finally:
        if before is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN if argv is None else before)


def _main(argv: list[str] | None) -> int:
    _import_geom()
    parser = build_parser()
    _interruption_point()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except UsageError as exc:
        print(f"geom: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    try:
        status = int(args.run(args) or 0)
    except BrokenPipeError:  # e.g. `geom demo | head`: stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except (*USER_ERRORS, geom.PluginError) as exc:
        _interruption_point()  # an error after a Ctrl-C that a library swallowed is that Ctrl-C's doing
        print(f"geom: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    if status != 130:  # 130: the command said so itself
        _interruption_point()
    return status


if _BEFORE_IMPORT is not None:  # the module is imported: main() installs its own handler
    signal.signal(signal.SIGINT, _BEFORE_IMPORT)

if __name__ == "__main__":
    raise SystemExit(main())
