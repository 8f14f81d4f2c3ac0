"""geom: geometry and point-cloud toolkit built on sliced optimal transport.

The one data flow::

    geom.measure(obj, kind=...) -> Measure -> geom.sliced_wasserstein(mu, nu, scheme=...) -> value
                                              (directions -> projection -> 1-D OT -> estimate)

Slicing schemes and measure representations are plugins (pluggy, entry-point group ``"geom"``).
"""

__version__ = "0.1.0"

from . import flows, io
from ._checks import GeomWarning
from .contract import Command, Dataset, DirectionSpace, EstimateContext, Representation, SlicingScheme, UnitSphere
from .data import load_dataset
from .directions import Frames, SymmetricDirections
from .measures import Measure, collate, measure
from .flows import mmd_flow
from .mmd import energy_slicing_constant, sliced_energy_distance
from .reductions import chamfer_distance, energy_distance, hausdorff_distance
from .registry import (
    PluginError,
    commands,
    datasets,
    hookimpl,
    plugins,
    register_command,
    register_dataset,
    register_representation,
    register_scheme,
    representations,
    schemes,
)
from .plans import SlicedPlan, sliced_plan
from .sliced import SlicedResult, sliced_wasserstein


def __getattr__(name):
    """``geom.deform`` and ``geom.collection`` on first use (mesh deformation: torchdiffeq is imported only
    when it integrates; collections: dask, scikit-learn and faiss only when asked for; shape matching:
    robust-laplacian and potpourri3d only when a method needs them)."""
    if name in ("collection", "deform", "match"):
        import importlib

        return importlib.import_module(f".{name}", __name__)  # not `from . import`: that asks this hook again
    raise AttributeError(f"module 'geom' has no attribute {name!r}")


__all__ = [
    "Command",
    "Dataset",
    "DirectionSpace",
    "EstimateContext",
    "Frames",
    "GeomWarning",
    "Measure",
    "PluginError",
    "Representation",
    "SlicedPlan",
    "SlicedResult",
    "SlicingScheme",
    "SymmetricDirections",
    "UnitSphere",
    "__version__",
    "chamfer_distance",
    "collate",
    "commands",
    "datasets",
    "energy_distance",
    "energy_slicing_constant",
    "flows",
    "hausdorff_distance",
    "hookimpl",
    "io",
    "load_dataset",
    "measure",
    "mmd_flow",
    "plugins",
    "register_command",
    "register_dataset",
    "register_representation",
    "register_scheme",
    "representations",
    "schemes",
    "sliced_plan",
    "sliced_energy_distance",
    "sliced_wasserstein",
]
