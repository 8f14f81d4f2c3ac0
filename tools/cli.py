"""The ``geom`` command line: argument parsing, progress bars, printing and files; the maths is in geom.

Commands are plugins: each is a :class:`geom.Command` registered through the hook
``geom_register_commands`` by a module named in entry-point group ``"geom"``; the built-in ones
(:mod:`geom_tools.commands`) enter through that door too, so new ones plug in without touching
:func:`main`::

    geom --version
    geom compare A B [--scheme S] [--option KEY=VALUE ...] [--n-projections L] [--p P] [--seed K]
                     [--metrics chamfer,energy] [--kind K] [--kind-option KEY=VALUE ...]
                     [--normalize sphere|box] [--n-samples N] [--json]
    geom plugins [--json]
    geom datasets [--json]
    geom demo [--n-projections L] [--seed K] [--n-samples N] [--scheme S] [--json]
    geom flow SOURCE TARGET --method sw|swf|cswf|mmd [--scheme S] [--option KEY=VALUE ...] [--steps N] [--lr X]
              [--n-projections L] [--n-points N] [--seed K] [--record-every K] [--normalize sphere|box]
              [--root DIR] --out DIR [--resume | --force]
    geom generate --method swf|cswf|mmd --dataset NAME [--n-samples N] [--steps N] [--seed K] [--class C]
                  [--normalize sphere|box] [--root DIR] --out DIR [--force]

User errors (bad values, missing or unreadable files, broken plugins) and usage errors end as one
line ``geom: error: <message>`` on stderr and exit status 2, never a traceback. Ctrl-C at any moment
ends as one line and exit status 130: this module imports only the standard library (geom and torch
are imported by :func:`main`, under its handler), and holds a handler of its own while it is being
imported. A third-party command that fails with any other exception is reported as one line
naming its plugin; a bug of a built-in one shows its traceback.
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

from ._common import USER_ERRORS, _interruption_point, _sigint_held  # noqa: E402  (standard library only)

__all__ = ["USER_ERRORS", "build_parser", "main"]

geom = None
"""The geom package, imported by :func:`main` (importing torch takes a second: under main's Ctrl-C handler)."""


def _import_geom() -> None:
    global geom
    with _sigint_held():  # some libraries catch BaseException around optional imports: Ctrl-C waits
        import geom


class UsageError(Exception):
    """A command line argparse cannot parse; :func:`main` prints it as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, its usage errors raised as :class:`UsageError` (one line) instead of a usage block."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The ``geom`` argument parser: one sub-parser per command registered through the hook
    ``geom_register_commands`` (the built-in ones by :mod:`geom_tools.commands`, a plugin like any
    other). A command whose class fails to build or to configure its sub-parser is left out with a
    one-line warning on stderr; running a name that two plugins registered says so in one line."""
    if geom is None:
        _import_geom()
    from geom import registry

    parser = _Parser(prog="geom", description="Geometry and point-cloud toolkit built on sliced optimal transport.")
    parser.add_argument("--version", action="version", version=f"geom {geom.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    owners = {name: info.name for info in registry.plugins() for name in info.commands}
    usable = set(registry.commands())
    for name in sorted(owners):
        if name not in usable:  # in conflict: `geom <name> ...` reports the PluginError
            child = sub.add_parser(name, help="unavailable: registered by more than one plugin", add_help=False,
                                   prefix_chars="\0")  # no options: whatever follows is taken, then refused
            child.add_argument("arguments", nargs="*")
            child.set_defaults(run=_conflict(name))
            continue
        child = None
        try:
            command = registry.get_command(name)()
            child = sub.add_parser(name, help=command.help, description=command.help)
            command.configure(child)
        except Exception as exc:  # a broken command must not break the others
            if child is not None:
                del sub.choices[name]
                sub._choices_actions.pop()  # its line in `geom --help`
            print(f"geom: warning: command {name!r} of plugin {owners[name]!r} is skipped: building its arguments "
                  f"raised {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            continue
        child.set_defaults(run=command.run, geom_plugin=owners[name],
                           geom_builtin=type(command).__module__.startswith(f"{__package__}."))
    return parser


def _conflict(name: str):
    def run(args):
        from geom.registry import get_command

        get_command(name)  # raises the PluginError naming the plugins and how to choose one
        return 0
    return run


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
    except Exception as exc:  # a bug: ours shows its traceback, a third-party command's is one line
        if getattr(args, "geom_builtin", True):
            raise
        _interruption_point()
        print(f"geom: error: command {args.command!r} of plugin {args.geom_plugin!r} failed: "
              f"{type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 2
    if status != 130:  # 130: the command said so itself
        _interruption_point()
    return status


if _BEFORE_IMPORT is not None:  # the module is imported: main() installs its own handler
    signal.signal(signal.SIGINT, _BEFORE_IMPORT)

if __name__ == "__main__":
    raise SystemExit(main())
