"""``"mc"``: plain Monte Carlo slicing, directions uniform on the sphere S^(d-1).

The estimate of ``E W_p^p`` is the sample mean over the L slices, its standard error the sample
standard deviation over sqrt(L) (the default of :class:`geom.SlicingScheme`).
"""

from __future__ import annotations

import torch

import geom


def uniform_directions(n: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n, dim)`` float64 rows, independent and uniform on S^(dim-1): normalised Gaussian vectors."""
    theta = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return theta / theta.norm(dim=1, keepdim=True)


class MonteCarlo(geom.SlicingScheme):
    """Independent directions, uniform on the unit sphere (normalised Gaussian vectors)."""

    def directions(self, n, dim, *, generator=None):
        return uniform_directions(n, dim, generator)


@geom.hookimpl
def geom_register_schemes(register):
    register("mc", MonteCarlo)
