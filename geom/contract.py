"""The plugin contract: hook specifications and the base classes third-party packages subclass.

This is a leaf module: it imports no other part of geom beyond the leaf helpers :mod:`geom._checks`
and :mod:`geom._state` (which import nothing else of geom), so the registry, the estimator and every
plugin can import it without a cycle.

A plugin is a module named by an entry point in group ``"geom"``; its ``@geom.hookimpl`` functions
receive a ``register(name, cls)`` callback and may call it any number of times:

- ``geom_register_schemes``: :class:`SlicingScheme` subclasses;
- ``geom_register_representations``: :class:`Representation` subclasses;
- ``geom_register_datasets``: :class:`Dataset` subclasses;
- ``geom_register_commands``: :class:`Command` subclasses (``geom <name>`` subcommands).

The parts a slicing scheme and a representation agree on::

    Representation.direction_space(mu) -> DirectionSpace     shape of one direction, uniform law, checks
    SlicingScheme.directions(n, space, generator=...)        (n, *space.shape) directions in that space
    Representation.project(support, directions)              (B, L, N) positions on the line or circle
    SlicingScheme.estimate(costs, context)                   E W_p^p and its standard error
"""

from __future__ import annotations

import abc
import argparse
import functools
import inspect
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pluggy
import torch

from . import _state
from ._checks import _as_int, check_device, check_finite, describe

__all__ = ["PROJECT", "Command", "Dataset", "DirectionSpace", "EstimateContext", "HookSpecs", "Representation",
           "SlicingScheme", "UnitSphere", "hookimpl", "hookspec"]

PROJECT = "geom"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    """The hooks a plugin may implement; each receives ``register(name, cls)``."""

    @hookspec
    def geom_register_schemes(self, register):
        """Register slicing schemes: ``register(name, cls)`` once per scheme (cls subclasses SlicingScheme)."""

    @hookspec
    def geom_register_representations(self, register):
        """Register measure representations: ``register(name, cls)`` once per representation."""

    @hookspec
    def geom_register_datasets(self, register):
        """Register datasets: ``register(name, cls)`` once per dataset (cls subclasses geom.Dataset)."""

    @hookspec
    def geom_register_commands(self, register):
        """Register ``geom`` subcommands: ``register(name, cls)`` once per command (cls subclasses geom.Command)."""


# ----------------------------------------------------------------------------------- direction spaces


class DirectionSpace(abc.ABC):
    """Where the directions of one representation live: the shape of one direction, its uniform law
    (the law the representation's sliced distance is defined with) and the checks of given ones.

    Uniform draws are pushforwards of standard Gaussians: :meth:`from_gaussian` maps ``(n, gaussian_dim)``
    standard normal vectors to ``(n, *shape)`` directions with the uniform law, differentiably (almost
    everywhere). So every scheme that draws Gaussian vectors (Monte Carlo, scrambled Sobol points
    through the inverse normal CDF, learned push-forwards, ascent on free vectors) works in every
    space; schemes whose construction needs the Euclidean sphere check :attr:`euclidean`.

    Attributes:
        shape: the shape of one direction, e.g. ``(d,)`` unit rows, ``(d, 2)`` frames.
        gaussian_dim: how many independent standard normal numbers one uniform draw takes.
        euclidean: True for unit rows of R^d with the uniform law of the sphere S^(d-1).
    """

    shape: tuple[int, ...] = ()
    gaussian_dim: int = 0
    euclidean: bool = False
    #: ``from_gaussian(c z) == from_gaussian(z)`` for ``c > 0``: then a point uniform on the sphere
    #: S^(gaussian_dim - 1) of Gaussian coordinates maps to a uniform direction, so even point sets of
    #: that sphere (quasi-Monte Carlo) serve this space too
    scale_invariant: bool = False
    #: what the directions are, for error messages (``"unit rows"``)
    noun: str = "directions"

    @abc.abstractmethod
    def from_gaussian(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, gaussian_dim)`` -> ``(n, *shape)``: uniform directions from standard normal vectors."""

    @abc.abstractmethod
    def coordinates(self, directions: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` directions -> ``(n, gaussian_dim)`` vectors ``z`` with ``from_gaussian(z) ==
        directions``: where an ascent on free vectors starts from given directions (warm starts)."""

    @abc.abstractmethod
    def _validate(self, directions: torch.Tensor, name: str) -> None:
        """Raise ValueError naming ``name`` when ``directions (L, *shape)`` are not in the space."""

    def describe(self) -> str:
        """What the directions are, for error messages (``"(L, 3) unit rows"``)."""
        return f"{self._shape()} {self.noun}"

    def _shape(self) -> str:
        return f"(L, {', '.join(map(str, self.shape))})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, *shape)`` float64 directions, independent and uniform (CPU, from ``generator``)."""
        return self.from_gaussian(torch.randn(n, self.gaussian_dim, generator=generator, dtype=torch.float64))

    def check(self, directions, name: str, like: torch.Tensor | None = None, rows: int | None = None) -> torch.Tensor:
        """Validated ``(L, *shape)`` directions, cast to ``like``'s dtype and device (autograd kept).

        Errors name ``name``, say what a direction of this space is and what came.
        """
        if not isinstance(directions, torch.Tensor):
            try:
                directions = torch.as_tensor(directions)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"{name}: expected an {self._shape()} array of {self.noun}, got "
                                f"{describe(directions)}") from exc
        check_device(directions, name)
        if tuple(directions.shape[1:]) != tuple(self.shape) or directions.ndim != 1 + len(self.shape) \
                or directions.shape[0] < 1:
            raise ValueError(f"{name}: expected shape {self._shape()} with L >= 1 ({self.noun}), got shape "
                             f"{tuple(directions.shape)}")
        if rows is not None and directions.shape[0] != rows:
            raise ValueError(f"{name}: expected {rows} directions (the number asked for), got {directions.shape[0]}")
        if directions.is_complex() or directions.dtype == torch.bool or not (
                directions.is_floating_point() or directions.dtype in (torch.int8, torch.int16, torch.int32,
                                                                       torch.int64, torch.uint8)):
            raise TypeError(f"{name}: expected real {self.noun}, got dtype {directions.dtype}")
        if like is not None:
            directions = directions.to(device=like.device, dtype=like.dtype)
        elif not directions.is_floating_point():
            directions = directions.double()
        check_finite(directions, name)
        self._validate(directions.detach(), name)
        return directions

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.shape == other.shape

    def __hash__(self) -> int:
        return hash((type(self), self.shape))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape})"


class UnitSphere(DirectionSpace):
    """Unit rows of R^d, uniform on the sphere S^(d-1): the directions of linear representations."""

    euclidean = True
    scale_invariant = True
    noun = "unit rows"
    #: how far from 1 the norm of a given direction may be
    tolerance = 1e-4

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.shape = (self.dim,)
        self.gaussian_dim = self.dim

    def from_gaussian(self, z):
        return z / z.norm(dim=-1, keepdim=True)

    def coordinates(self, directions):
        return directions

    def _validate(self, directions, name):
        d = directions.detach().cpu()  # in numpy: a few us where torch took about 30
        d = d if d.dtype in (torch.float32, torch.float64) else d.double()
        err = np.abs(np.linalg.norm(d.numpy(), axis=1) - 1)
        if bool((err > self.tolerance).any()):
            k = int(err.argmax())
            raise ValueError(f"{name}: expected unit rows, got row {k} with norm {directions[k].norm().item():.6g}")


# ----------------------------------------------------------------------------------- representations


class Representation(abc.ABC):
    """Base class of measure representations (the plugin contract).

    A representation turns raw input into a :class:`geom.Measure` (:meth:`build`), says where its
    directions live (:meth:`direction_space`) and projects a support onto them (:meth:`project`).
    ``linear = True`` promises that the direction space is :class:`UnitSphere` and that
    ``project(x, theta) == x @ theta.T``; the core then runs a fused, chunked kernel that never holds
    all projections in memory. ``domain`` says where 1-D transport happens: ``"line"``, or
    ``"circle"`` for projections that are positions on the circle R/Z of length 1 (``project`` returns
    values in ``[0, 1)``; transport along the circle, as POT's ``wasserstein_circle``).
    """

    name: str = ""
    linear: bool = False
    domain: str = "line"
    #: Kinds of one family hold measures in the same space with the same support layout and
    #: projection (``"points"``: point clouds, samples and centroids of mesh surfaces), so they can be
    #: compared with each other; ``""``: comparable with its own kind only.
    family: str = ""
    #: What :meth:`build` takes, for error messages (``"SPD matrices: an (N, n, n) array ..."``).
    expects: str = ""

    @abc.abstractmethod
    def build(self, obj, *, weights=None, **options):
        """Turn raw input into a Measure of this kind (validate it, name the argument on error)."""

    def direction_space(self, mu) -> DirectionSpace:
        """The directions of measures like ``mu``; default: unit rows of R^(direction_dim(mu))."""
        return UnitSphere(self.direction_dim(mu))

    def direction_dim(self, mu) -> int:
        """Deprecated (use :meth:`direction_space`): the length of one direction row."""
        return mu.dim

    @abc.abstractmethod
    def project(self, support: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """``(B, N, *event)``, ``(L, *space.shape)`` -> ``(B, L, N)`` differentiable projections."""


# ----------------------------------------------------------------------------------- slicing schemes


@dataclass
class EstimateContext:
    """What a scheme's :meth:`SlicingScheme.estimate` may look at besides the per-slice costs."""

    mu: object  #: the Measure (after the scheme's lift)
    nu: object
    directions: torch.Tensor  #: ``(L, *space.shape)``, data dtype and device
    p: float
    generator: torch.Generator | None
    #: ``(B,)`` float64: the costs handed to :meth:`SlicingScheme.estimate` are ``W_p^p / scale^p``
    #: (``scale`` is the largest per-slice ``W_p``, so they lie in [0, 1] whatever ``p``); None: 1.
    #: Estimates linear in the costs need not look at it; estimates that mix in other quantities
    #: (control variates in absolute units, costs kept from earlier calls) convert with it.
    scale: torch.Tensor | None = None
    #: True when these are the directions the scheme's own :meth:`SlicingScheme.directions` returned
    #: in this call; False when the caller gave them (``directions=``): a scheme that remembers its
    #: draw (groups of randomisations, reservoir candidates) must not apply it then.
    drawn: bool = False
    #: the direction space of the slices
    space: DirectionSpace | None = None


class SlicingScheme(abc.ABC):
    """Base class of slicing schemes (the plugin contract).

    Subclasses implement :meth:`directions`; :meth:`estimate` defaults to the sample mean of the
    per-slice costs and its standard error. Options arrive as keyword arguments of ``__init__``
    (from ``geom.sliced_wasserstein(..., scheme="name", **options)``). Stateful schemes keep their
    state on the instance, so pass the same instance at every step of a training loop.
    """

    def __init__(self, **options):
        if options:
            raise TypeError(f"{type(self).__name__}: unknown options {sorted(options)}")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "directions" in cls.__dict__:
            cls.directions = _spaced(cls.__dict__["directions"], cls.__name__)
            if getattr(cls.directions, "_geom_legacy", False) and "check_space" not in cls.__dict__:
                cls.check_space = _rows_only  # the first contract drew unit rows only

    @abc.abstractmethod
    def directions(self, n: int, space: DirectionSpace, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, *space.shape)`` directions in ``space`` (``space.sample(n, generator)`` draws uniform
        ones). The core checks them and casts them to the data's dtype and device.

        ``space`` may be given as an int ``d`` by a caller: it then means :class:`UnitSphere` ``(d)``."""

    def check_space(self, space: DirectionSpace) -> None:
        """Raise ValueError when the scheme cannot draw in ``space`` (default: every space will do).

        Schemes built on the Euclidean sphere call :meth:`require_euclidean`."""

    def require_euclidean(self, space: DirectionSpace, what: str) -> None:
        """ValueError unless ``space`` is a Euclidean sphere of unit rows; ``what`` names the part of the
        scheme that needs it."""
        if not space.euclidean:
            raise ValueError(f"scheme {type(self).__name__}: {what} needs directions on the Euclidean sphere "
                             f"(unit rows), and this representation slices along {space.describe()}")

    def fit(self, mu, nu, *, p: float, generator: torch.Generator | None = None) -> None:
        """Learn from the data before :meth:`directions` is called (when the caller gives none).

        Data-dependent schemes (max-sliced, distributional, augmented) optimise their directions or
        their lifting here and keep the result on the instance; the default learns nothing.
        """

    def lift(self, measure):
        """The measure the directions act on; augmented schemes map the support to a higher dimension.

        Must stay differentiable in ``measure.support``. The default is the measure itself.
        """
        return measure

    def state_dict(self) -> dict:
        """The instance's state (what it learned or accumulated) as tensors and plain types only.

        Checkpoints store it without pickle (arrays plus JSON, :mod:`geom._state`); a fresh instance
        built with the same options and given it through :meth:`load_state_dict` continues exactly
        where this one stopped. The default takes every attribute of the instance.
        """
        return _state.scheme_state(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (ValueError naming what does not fit)."""
        _state.load_scheme_state(self, state)

    @property
    def learns_from_data(self) -> bool:
        """True when the class overrides :meth:`fit` or :meth:`lift`: its slices depend on the data, so
        it cannot serve as the uniform-direction base of another scheme (control variates, reservoir)."""
        cls = type(self)
        return cls.fit is not SlicingScheme.fit or cls.lift is not SlicingScheme.lift

    def estimate(self, costs: torch.Tensor, context: EstimateContext) -> tuple[torch.Tensor, torch.Tensor]:
        """``costs (B, L)`` of W_p^p per slice -> estimates of ``E W_p^p`` ``(B,)`` and their stderr ``(B,)``.

        The costs come in units of ``context.scale ** p`` (see :class:`EstimateContext`), and the
        estimates are read in the same units."""
        L = costs.shape[-1]
        value = costs.mean(-1)
        if L < 2:
            return value, torch.full_like(value, math.nan)
        return value, costs.detach().std(-1) / math.sqrt(L)


def _spaced(fn, owner: str):
    """``directions`` of a subclass, taking a DirectionSpace or an int dimension (unit rows). A scheme
    written for the first contract, ``directions(self, n, dim, ...)``, gets ``space.dim`` where the
    space is a Euclidean sphere (with a DeprecationWarning) and a ValueError elsewhere."""
    if getattr(fn, "_geom_spaced", False) or not callable(fn):
        return fn
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    legacy = len(names) > 2 and names[2] == "dim"

    @functools.wraps(fn)
    def directions(self, n, space, *args, **kwargs):
        if legacy:
            if isinstance(space, DirectionSpace):
                if not space.euclidean:
                    raise ValueError(f"scheme {owner}: its directions(n, dim) draws unit rows (the first plugin "
                                     f"contract), and this representation slices along {space.describe()}; write "
                                     "directions(self, n, space, *, generator) and draw with space.sample(n, generator)")
                warnings.warn(f"scheme {owner}: directions(self, n, dim, ...) is deprecated; write directions(self, "
                              "n, space, *, generator) (space.shape, space.sample(n, generator))", DeprecationWarning,
                              stacklevel=2)
                space = space.dim
        elif not isinstance(space, DirectionSpace):
            d = _as_int(space)
            if d is None or d < 1:
                raise TypeError(f"space: expected a geom.DirectionSpace or a dimension d >= 1 (unit rows), got "
                                f"{describe(space)}")
            space = UnitSphere(d)
        return fn(self, n, space, *args, **kwargs)

    directions._geom_spaced = True
    directions._geom_legacy = legacy
    return directions


def _rows_only(self, space) -> None:
    self.require_euclidean(space, "directions(n, dim) of the first plugin contract")


# ----------------------------------------------------------------------------------- datasets, commands


class Dataset(torch.utils.data.Dataset, metaclass=abc.ABCMeta):
    """Base class of registered datasets (the plugin contract).

    Subclasses take ``root`` (a folder, for loaders of files; ``None`` for generators) and keyword
    options in ``__init__``, validate them (errors name the option or the path, what was expected and
    what came), and implement ``__len__`` and ``__getitem__(i) -> (item, label)``.

    Class attributes:
        description: one line for ``geom datasets``.
        items_are_shapes: every item is one whole 3-D object (see below).
        options: option name -> one line (with its default), for ``geom datasets``; with the named
            keyword parameters of ``__init__``, the options :func:`geom.load_dataset` accepts.

    Attributes:
        classes: class names in label order.
    """

    description: str = ""
    options: dict[str, str] = {}
    classes: list[str] = []
    #: True when every item is one whole object (a 3-D shape), so that generating "a sample of the
    #: dataset" means a new shape per class (``geom generate``), not points of all classes pooled
    items_are_shapes: bool = False

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of items."""

    @abc.abstractmethod
    def __getitem__(self, index: int):
        """``(item, label)`` of item ``index`` (negative indices count from the end)."""

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items, {len(self.classes)} classes)"


class Command(abc.ABC):
    """One ``geom <name>`` subcommand (the plugin contract for ``geom_register_commands``).

    ``configure`` adds the command's arguments to its sub-parser; ``run`` executes the parsed
    arguments, prints or writes the result and returns the exit status. Raise ValueError, TypeError
    or OSError for a user's mistake: ``geom`` prints it as one line and exits with status 2.
    """

    #: one-line summary shown by ``geom --help``
    help: str = ""

    @abc.abstractmethod
    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to ``parser``."""

    @abc.abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Run the command; return the exit status."""
