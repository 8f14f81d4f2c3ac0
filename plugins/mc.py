"""``"mc"``: plain Monte Carlo slicing, directions uniform on the sphere S^(d-1).

The estimate of ``E W_p^p`` is the sample mean over the L slices, its standard error the sample
standard deviation over sqrt(L) (the default of :class:`geom.SlicingScheme`).
"""

import torch

import geom


class MonteCarlo(geom.SlicingScheme):
    """Independent directions, uniform on the unit sphere (normalised Gaussian vectors)."""

    def directions(self, n, dim, *, generator=None):
        theta = torch.randn(n, dim, generator=generator, dtype=torch.float64)
        return theta / theta.norm(dim=1, keepdim=True)


@geom.hookimpl
def geom_register_schemes(register):
    register("mc", MonteCarlo)
