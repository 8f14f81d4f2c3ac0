"""``"mc"``: plain Monte Carlo slicing, directions independent and uniform in the representation's
direction space (the sphere S^(d-1) for point clouds and meshes, Haar frames for the sphere kind,
the SPDSW law for SPD matrices).

The estimate of ``E W_p^p`` is the sample mean over the L slices, its standard error the sample
standard deviation over sqrt(L) (the default of :class:`geom.SlicingScheme`).
"""

from __future__ import annotations

import geom
from geom.directions import uniform_directions

__all__ = ["MonteCarlo", "uniform_directions"]


class MonteCarlo(geom.SlicingScheme):
    """Independent directions, uniform in the direction space (pushforwards of Gaussian vectors)."""

    def directions(self, n, space, *, generator=None):
        return space.sample(n, generator)


@geom.hookimpl
def geom_register_schemes(register):
    register("mc", MonteCarlo)
