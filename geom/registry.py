"""The plugin registry: pluggy hooks, entry points in group ``"geom"``, and the name -> class tables.

Built-in schemes and representations enter exactly as a third-party package's do: through an entry
point in group ``"geom"`` naming a module with ``@geom.hookimpl`` functions. Each hook receives a
``register(name, cls)`` callback and may call it any number of times.

Plugins load lazily, on the first look-up, all at once and all or nothing per plugin:

- A plugin that raises anything while it is imported or while its hooks run (``SystemExit``,
  ``KeyboardInterrupt`` and other ``BaseException`` subclasses included) is skipped as a whole, none of
  its items registered, with a :class:`~geom.GeomWarning` naming it. Only a real Ctrl-C (SIGINT
  arriving while plugins load) stops the loading; nothing is then kept, and the next look-up starts
  over. A plugin that looks up the registry while it is being loaded is skipped the same way.
- A name registered by two or more plugins is a conflict: :func:`schemes`, :func:`representations`
  and :func:`datasets` omit it (they list the names that can be used), :func:`plugins` reports it
  on each plugin involved, a :class:`~geom.GeomWarning` announces it once, and using the name raises
  :class:`PluginError` naming every plugin and the ``GEOM_DISABLE_PLUGINS`` setting that resolves it.
  Everything else keeps working.
- ``GEOM_DISABLE_PLUGINS=a,b`` blocks entry points by name; a distribution whose entry points cannot
  be read is skipped with a warning.

Registering at run time (:func:`register_scheme` and friends) a name that is already taken, or in
conflict, raises :class:`PluginError` at once.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import re
import signal
import threading
import warnings
from dataclasses import dataclass, field

import pluggy

from ._checks import GeomWarning
from .contract import PROJECT, Command, Dataset, HookSpecs, Representation, SlicingScheme, hookimpl, hookspec

__all__ = [
    "PluginError",
    "PluginInfo",
    "check_same_space",
    "commands",
    "datasets",
    "get_command",
    "get_dataset",
    "get_representation",
    "get_scheme",
    "hookimpl",
    "hookspec",
    "plugins",
    "register_command",
    "register_dataset",
    "register_representation",
    "register_scheme",
    "representations",
    "schemes",
]

RUNTIME = "<runtime>"


class PluginError(RuntimeError):
    """A plugin broke the contract (for example two plugins registered the same name)."""


@dataclass
class PluginInfo:
    """One plugin as ``geom plugins`` shows it.

    ``schemes``, ``representations`` and ``datasets`` list every name the plugin registered;
    ``conflicts`` says which of them other plugins registered too (such names cannot be used);
    ``error`` says why a skipped plugin was skipped (it then registers nothing).
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    schemes: list[str] = field(default_factory=list)
    representations: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    error: str | None = None
    conflicts: list[str] = field(default_factory=list)


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _entry_points(notes: list[str]) -> list:
    """The entry points of group ``"geom"``; distributions whose metadata cannot be read are skipped."""
    try:
        return list(md.entry_points(group=PROJECT))
    except Exception:  # one malformed distribution: read them one at a time to find it
        pass
    eps, seen = [], set()
    for dist in md.distributions():
        where = getattr(dist, "_path", None) or "a distribution"
        try:
            name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
            if name not in seen:  # the first on sys.path wins, as in importlib.metadata
                seen.add(name)
                eps.extend(dist.entry_points.select(group=PROJECT))
        except Exception as exc:
            notes.append(f"geom: the entry points of {where} cannot be read and are skipped: {_failure(exc)}")
    return eps


@contextlib.contextmanager
def _sigint_seen():
    """Yield a list that receives an item when SIGINT arrives, so that a real Ctrl-C can be told
    from a plugin raising KeyboardInterrupt (only where Python handles SIGINT, in the main thread)."""
    seen: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGINT) if main else None
    if not callable(old):
        yield seen
        return

    def handler(signum, frame):
        seen.append(signum)
        old(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        if signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, old)


def _remedy(plugins: list[str]) -> str:
    return " or ".join(f"GEOM_DISABLE_PLUGINS={','.join(o for o in plugins if o != keep)} keeps {keep!r}"
                       for keep in plugins)


_BASES = {"schemes": SlicingScheme, "representations": Representation, "datasets": Dataset, "commands": Command}


class _Registry:
    kinds = {"schemes": "geom_register_schemes", "representations": "geom_register_representations",
             "datasets": "geom_register_datasets", "commands": "geom_register_commands"}

    def __init__(self):
        self._lock = threading.RLock()
        self._loaded = False
        self._loading = False
        self.tables: dict[str, dict[str, tuple[type, str]]] = {k: {} for k in self.kinds}
        self.conflicts: dict[str, dict[str, list[str]]] = {k: {} for k in self.kinds}  # name -> plugins
        self.info: dict[str, PluginInfo] = {}

    def load(self) -> None:
        """Load every plugin once; the tables change only when the whole load has succeeded."""
        with self._lock:
            if self._loaded:
                return
            if self._loading:
                raise PluginError("the plugin registry was looked up while its plugins were loading; a plugin "
                                  "may not use it at import or in its registration hooks")
            self._loading = True
            try:
                tables, conflicts, info, notes = self._collect()
            finally:
                self._loading = False
            self.tables, self.conflicts, self.info = tables, conflicts, info
            self._loaded = True
        for note in notes:  # after the commit: a warning turned into an error leaves a usable registry
            warnings.warn(note, GeomWarning, stacklevel=4)

    def _collect(self):
        """Import the enabled plugins and run their hooks into fresh tables; ``self`` is not touched."""
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(HookSpecs)
        disabled = {n.strip() for n in os.environ.get("GEOM_DISABLE_PLUGINS", "").split(",") if n.strip()}
        info: dict[str, PluginInfo] = {}
        declared: dict[str, str] = {}  # entry-point name -> its value
        notes: list[str] = []
        owners: dict[tuple[str, str], list[tuple[type, str]]] = {}  # (kind, name) -> [(cls, plugin), ...]
        about: dict[int, tuple[str, str]] = {}  # id(distribution) -> (name, version), its metadata parsed once
        with _sigint_seen() as interrupted:
            for ep in sorted(_entry_points(notes), key=lambda e: e.name):
                if ep.name in disabled:
                    continue
                if ep.name in declared:
                    notes.append(f"geom plugin {ep.name!r} is declared twice, as {declared[ep.name]} and as "
                                 f"{ep.value}; the second is skipped")
                    continue
                declared[ep.name] = ep.value
                plugin = info[ep.name] = PluginInfo(ep.name)
                staged: list[tuple[str, str, type]] = []  # a plugin's items count only if all its hooks finish
                what = f"failed to load ({ep.value})"
                try:
                    dist = getattr(ep, "dist", None)
                    if dist is not None:  # each read of dist.metadata parses the whole file, README included
                        if id(dist) not in about:
                            meta = dist.metadata
                            about[id(dist)] = (meta["Name"], meta["Version"])
                        plugin.distribution, plugin.version = about[id(dist)]
                    module = ep.load()
                    pm.register(module, name=ep.name)
                    for kind, hook_name in self.kinds.items():
                        what = f"raised in {hook_name}"
                        for impl in getattr(pm.hook, hook_name).get_hookimpls():
                            if impl.plugin is module:
                                impl.function(register=lambda n, c, _k=kind: self._stage(staged, _k, n, c))
                except BaseException as exc:  # a broken plugin must never break geom; a real Ctrl-C does
                    if interrupted:
                        raise
                    plugin.error = _failure(exc)
                    notes.append(f"geom plugin {ep.name!r} {what} and is skipped: {plugin.error}")
                    continue
                for kind, name, cls in staged:
                    owners.setdefault((kind, name), []).append((cls, ep.name))
                    getattr(plugin, kind).append(name)
        tables = {k: {} for k in self.kinds}
        conflicts = {k: {} for k in self.kinds}
        for (kind, name), regs in owners.items():
            if len(regs) == 1:
                tables[kind][name] = regs[0]
                continue
            names = [p for _, p in regs]
            conflicts[kind][name] = names
            for p in names:
                others = ", ".join(repr(o) for o in names if o != p)
                info[p].conflicts.append(f"{kind[:-1]} {name!r} is also registered by {others}")
            notes.append(f"geom: {self._conflict(kind, name, names)}")
        return tables, conflicts, info, notes

    @staticmethod
    def _conflict(kind: str, name: str, plugins: list[str]) -> str:
        owners = ", ".join(repr(p) for p in plugins[:-1]) + f" and {plugins[-1]!r}"
        return (f"{kind[:-1]} {name!r} is registered by plugins {owners}, and cannot be used until all but one "
                f"are disabled: {_remedy(plugins)}")

    def _stage(self, staged: list, kind: str, name, cls) -> None:
        name, cls = self._check(kind, name, cls)
        if any(k == kind and n == name for k, n, _ in staged):
            raise PluginError(f"{kind[:-1]} {name!r} is registered twice by the same plugin")
        staged.append((kind, name, cls))

    @staticmethod
    def _check(kind: str, name, cls) -> tuple[str, type]:
        base = _BASES[kind]
        if not isinstance(name, str) or not name:
            raise TypeError(f"name: expected a non-empty string, got {name!r}")
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"cls: expected a subclass of geom.{base.__name__} for {name!r}, got {cls!r}")
        return name, cls

    def add(self, kind: str, name, cls, plugin: str) -> None:
        """Register one item at run time: a name already taken (or in conflict) is an error at once."""
        name, cls = self._check(kind, name, cls)
        with self._lock:
            table = self.tables[kind]
            taken = [table[name][1]] if name in table else self.conflicts[kind].get(name, [])
            if taken:
                by = " and by ".join(f"plugin {p!r}" for p in (*taken, plugin))
                raise PluginError(f"{kind[:-1]} {name!r} is registered twice: by {by}; disable one with "
                                  "GEOM_DISABLE_PLUGINS")
            table[name] = (cls, plugin)
            info = self.info.setdefault(plugin, PluginInfo(plugin))
            getattr(info, kind).append(name)

    def get(self, kind: str, name: str) -> type:
        arg = {"schemes": "scheme", "representations": "kind", "datasets": "name", "commands": "command"}[kind]
        if not isinstance(name, str):
            raise TypeError(f"{arg}: expected a registered {kind[:-1]} name, got {name!r}")
        self.load()
        table = self.tables[kind]
        if name in self.conflicts[kind]:
            raise PluginError(self._conflict(kind, name, self.conflicts[kind][name]))
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise ValueError(f"{arg}: unknown {kind[:-1]} {name!r}; registered {kind}: {known}")
        return table[name][0]


_registry = _Registry()


def schemes() -> list[str]:
    """Sorted names of the registered slicing schemes (a name two plugins registered is left out)."""
    _registry.load()
    return sorted(_registry.tables["schemes"])


def representations() -> list[str]:
    """Sorted names of the registered measure representations (the ``kind=`` values; names in conflict
    between plugins are left out)."""
    _registry.load()
    return sorted(_registry.tables["representations"])


def register_scheme(name: str, cls: type) -> None:
    """Register a :class:`~geom.SlicingScheme` subclass under ``name`` at run time."""
    _registry.load()
    _registry.add("schemes", name, cls, RUNTIME)


def register_representation(name: str, cls: type) -> None:
    """Register a :class:`~geom.Representation` subclass under ``name`` at run time."""
    _registry.load()
    _registry.add("representations", name, cls, RUNTIME)


def datasets() -> list[str]:
    """Sorted names of the registered datasets (see :func:`geom.load_dataset`; names in conflict are left out)."""
    _registry.load()
    return sorted(_registry.tables["datasets"])


def register_dataset(name: str, cls: type) -> None:
    """Register a :class:`~geom.Dataset` subclass under ``name`` at run time."""
    _registry.load()
    _registry.add("datasets", name, cls, RUNTIME)


def get_scheme(name: str) -> type:
    """The :class:`~geom.SlicingScheme` subclass registered as ``name`` (PluginError for a name in conflict)."""
    return _registry.get("schemes", name)


def commands() -> list[str]:
    """Sorted names of the registered ``geom`` subcommands (names in conflict are left out)."""
    _registry.load()
    return sorted(_registry.tables["commands"])


def register_command(name: str, cls: type) -> None:
    """Register a :class:`~geom.Command` subclass as ``geom <name>`` at run time."""
    _registry.load()
    _registry.add("commands", name, cls, RUNTIME)


def get_command(name: str) -> type:
    """The :class:`~geom.Command` subclass registered as ``name`` (PluginError for a name in conflict)."""
    return _registry.get("commands", name)


def get_dataset(name: str) -> type:
    """The :class:`~geom.Dataset` subclass registered as ``name`` (PluginError for a name in conflict)."""
    return _registry.get("datasets", name)


def check_same_space(mu, nu) -> None:
    """ValueError unless ``mu`` and ``nu`` can be compared: the same kind, or kinds of one ``family``
    (measures in the same space, such as point clouds and samples of mesh surfaces)."""
    if mu.kind == nu.kind:
        return
    a, b = get_representation(mu.kind), get_representation(nu.kind)
    if not (a.family and a.family == b.family):
        raise ValueError(f"mu, nu: expected measures of the same kind (or of one family), got {mu.kind!r} "
                         f"(family {a.family or None!r}) and {nu.kind!r} (family {b.family or None!r})")


def get_representation(name: str):
    """An instance of the representation registered as ``name`` (its ``name`` attribute set)."""
    rep = _registry.get("representations", name)()
    rep.name = name
    return rep


def plugins() -> list[PluginInfo]:
    """Every plugin seen: entry points (with distribution and version, the reason a skipped one was
    skipped, the names it shares with other plugins) and run-time registrations."""
    _registry.load()
    return sorted(_registry.info.values(), key=lambda i: i.name)
