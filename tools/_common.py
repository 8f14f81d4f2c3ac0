"""What the ``geom`` commands and the benchmarks share: option parsing, schemes, measures, seeds,
Ctrl-C helpers and small printing helpers.

At module level this imports only the standard library (the command line imports it before geom,
under its own Ctrl-C handler); geom, torch and POT are imported by the functions that use them.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal

USER_ERRORS = (ValueError, TypeError, OSError)
"""Exceptions reported as one line and exit status 2 (FileNotFoundError is an OSError), with
``geom.PluginError`` (a plugin broke the contract)."""

SAMPLING_KINDS = ("points", "mesh")
"""Kinds that sample mesh surfaces, and so take ``--n-samples`` and ``--seed``."""

NORMALIZE = ("sphere", "box")
"""``--normalize`` values (see :func:`geom.measure`)."""


# ---------------------------------------------------------------------------------------------- Ctrl-C


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


def _interruption_point() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed under ``geom``'s main and the exception got lost."""
    check = getattr(signal.getsignal(signal.SIGINT), "check", None)
    if check is not None:
        check()


# ---------------------------------------------------------------------------------------------- arguments


def _parse_options(items: list[str], flag: str = "--option") -> dict:
    """``["key=value", ...]`` -> options; a value is JSON where it parses (3, 0.5, true, null), else text."""
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ValueError(f"{flag}: expected KEY=VALUE with KEY a name, got {item!r}")
        if key in options:
            raise ValueError(f"{flag}: {key!r} given twice")
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


def _add_normalize(parser) -> None:
    parser.add_argument("--normalize", default=None, choices=NORMALIZE,
                        help="move and scale each input on its own: sphere (centre at 0, farthest point at "
                             "distance 1) or box (bounding box in [-1, 1]^d); default: as given")


# ---------------------------------------------------------------------------------------------- geom objects


def _scheme_class(name: str) -> type:
    """The scheme registered as ``name``; a ValueError naming ``--scheme`` lists the registered ones."""
    from geom.registry import get_scheme

    try:
        return get_scheme(name)
    except (TypeError, ValueError) as exc:
        raise _named(exc, "--scheme", ("scheme",)) from None


def _new_scheme(name: str, options: dict):
    """A fresh instance of the scheme ``name`` built with its ``--option`` values."""
    try:
        return _scheme_class(name)(**options)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"--option: {exc}") from None


def _measure(obj, what: str, kind: str | None = None, normalize: str | None = None, options: dict | None = None):
    """``geom.measure(obj, kind=kind, normalize=normalize, **options)``; errors name the argument
    ``what``, and the sphere kind's request for ``normalize=True`` says how to pass it from the
    command line (``options`` may hold the kind's own ``normalize``: see :func:`_check_normalize`)."""
    import geom

    options = dict(options or {}, **({} if normalize is None else {"normalize": normalize}))
    try:
        return geom.measure(obj, kind=kind, **options)
    except (TypeError, ValueError, OSError) as exc:
        exc = _named(exc, what)
        if kind == "sphere" and "normalize=True" in str(exc):
            exc = type(exc)(f"{exc} (from the command line: --kind-option normalize=true)")
        raise exc from None


def exact_w2(x, y) -> float:
    """Exact W_2 between two uniform clouds (POT's network simplex); the benchmarks score flows with it too."""
    import numpy as np
    import ot
    import torch

    M = torch.cdist(x, y).square().numpy()
    return math.sqrt(max(float(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), M,
                                      numItermax=10_000_000)), 0.0))


# ---------------------------------------------------------------------------------------------- printing


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, allow_nan=False))


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
