"""The plugin registry: pluggy hooks, entry points in group ``"geom"``, and the name -> class tables.

Built-in schemes and representations enter exactly as a third-party package's do: through an entry
point in group ``"geom"`` naming a module with ``@geom.hookimpl`` functions. Each hook receives a
``register(name, cls)`` callback and may call it any number of times.

Plugins load lazily, on the first look-up. A plugin that fails to import is skipped with a
:class:`~geom.GeomWarning` naming it; ``GEOM_DISABLE_PLUGINS=a,b`` blocks entry points by name; a name
registered twice is an error naming both plugins.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
import warnings
from dataclasses import dataclass, field

import pluggy

from ._checks import GeomWarning

__all__ = [
    "PluginError",
    "PluginInfo",
    "check_same_space",
    "datasets",
    "get_dataset",
    "get_representation",
    "get_scheme",
    "hookimpl",
    "hookspec",
    "plugins",
    "register_dataset",
    "register_representation",
    "register_scheme",
    "representations",
    "schemes",
]

PROJECT = "geom"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
RUNTIME = "<runtime>"


class PluginError(RuntimeError):
    """A plugin broke the contract (for example two plugins registered the same name)."""


class _Specs:
    @hookspec
    def geom_register_schemes(self, register):
        """Register slicing schemes: call ``register(name, cls)`` once per scheme (cls subclasses SlicingScheme)."""

    @hookspec
    def geom_register_representations(self, register):
        """Register measure representations: call ``register(name, cls)`` once per representation."""

    @hookspec
    def geom_register_datasets(self, register):
        """Register datasets: call ``register(name, cls)`` once per dataset (cls subclasses geom.Dataset)."""


@dataclass
class PluginInfo:
    """One plugin as ``geom plugins`` shows it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    schemes: list[str] = field(default_factory=list)
    representations: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    error: str | None = None


class _Registry:
    kinds = {"schemes": "geom_register_schemes", "representations": "geom_register_representations",
             "datasets": "geom_register_datasets"}

    def __init__(self):
        self._lock = threading.RLock()
        self._loaded = False
        self._error: PluginError | None = None
        self.tables: dict[str, dict[str, tuple[type, str]]] = {k: {} for k in self.kinds}
        self.info: dict[str, PluginInfo] = {}

    def load(self) -> None:
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._loaded:
                return
            self._loaded = True
            pm = pluggy.PluginManager(PROJECT)
            pm.add_hookspecs(_Specs)
            disabled = {n.strip() for n in os.environ.get("GEOM_DISABLE_PLUGINS", "").split(",") if n.strip()}
            for ep in sorted(md.entry_points(group=PROJECT), key=lambda e: e.name):
                if ep.name in disabled or ep.name in self.info:
                    continue
                dist = getattr(ep, "dist", None)
                info = PluginInfo(ep.name, dist and dist.metadata["Name"], dist and dist.version)
                self.info[ep.name] = info
                try:
                    pm.register(ep.load(), name=ep.name)
                except Exception as exc:  # a broken plugin must never break geom
                    self._skip(info, f"failed to load ({ep.value})", exc)
            for kind, hook_name in self.kinds.items():
                for impl in getattr(pm.hook, hook_name).get_hookimpls():
                    info = self.info.setdefault(impl.plugin_name, PluginInfo(impl.plugin_name))
                    if info.error:
                        continue
                    staged = []  # a plugin's items count only if its hook runs to the end
                    try:
                        impl.function(register=lambda n, c, _k=kind: staged.append(self._check(_k, n, c)))
                    except Exception as exc:
                        self._skip(info, f"raised in {hook_name}", exc)
                        continue
                    try:
                        for name, cls in staged:
                            self.add(kind, name, cls, impl.plugin_name)
                    except PluginError as exc:
                        self._error = exc
                        raise

    @staticmethod
    def _skip(info: PluginInfo, what: str, exc: Exception) -> None:
        info.error = f"{type(exc).__name__}: {exc}"
        info.schemes.clear()
        info.representations.clear()
        info.datasets.clear()
        warnings.warn(f"geom plugin {info.name!r} {what} and is skipped: {info.error}", GeomWarning, stacklevel=4)

    @staticmethod
    def _check(kind: str, name, cls) -> tuple[str, type]:
        from .datasets import Dataset
        from .measure import Representation
        from .sliced import SlicingScheme

        base = {"schemes": SlicingScheme, "representations": Representation, "datasets": Dataset}[kind]
        if not isinstance(name, str) or not name:
            raise TypeError(f"name: expected a non-empty string, got {name!r}")
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"cls: expected a subclass of geom.{base.__name__} for {name!r}, got {cls!r}")
        return name, cls

    def add(self, kind: str, name, cls, plugin: str) -> None:
        name, cls = self._check(kind, name, cls)
        with self._lock:
            table = self.tables[kind]
            if name in table:
                raise PluginError(
                    f"{kind[:-1]} {name!r} is registered twice: by plugin {table[name][1]!r} and by plugin "
                    f"{plugin!r}; disable one with GEOM_DISABLE_PLUGINS"
                )
            table[name] = (cls, plugin)
            info = self.info.setdefault(plugin, PluginInfo(plugin))
            getattr(info, kind).append(name)

    def get(self, kind: str, name: str) -> type:
        self.load()
        table = self.tables[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            arg = {"schemes": "scheme", "representations": "kind", "datasets": "name"}[kind]
            raise ValueError(f"{arg}: unknown {kind[:-1]} {name!r}; registered {kind}: {known}")
        return table[name][0]


_registry = _Registry()


def schemes() -> list[str]:
    """Sorted names of the registered slicing schemes."""
    _registry.load()
    return sorted(_registry.tables["schemes"])


def representations() -> list[str]:
    """Sorted names of the registered measure representations (the ``kind=`` values)."""
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
    """Sorted names of the registered datasets (see :func:`geom.load_dataset`)."""
    _registry.load()
    return sorted(_registry.tables["datasets"])


def register_dataset(name: str, cls: type) -> None:
    """Register a :class:`~geom.Dataset` subclass under ``name`` at run time."""
    _registry.load()
    _registry.add("datasets", name, cls, RUNTIME)


def get_scheme(name: str) -> type:
    return _registry.get("schemes", name)


def get_dataset(name: str) -> type:
    if not isinstance(name, str):
        raise TypeError(f"name: expected a registered dataset name, got {name!r}")
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
    if not isinstance(name, str):
        raise TypeError(f"kind: expected a registered representation name, got {name!r}")
    rep = _registry.get("representations", name)()
    rep.name = name
    return rep


def plugins() -> list[PluginInfo]:
    """Every plugin seen: entry points (with distribution and version) and run-time registrations."""
    _registry.load()
    return sorted(_registry.info.values(), key=lambda i: i.name)
