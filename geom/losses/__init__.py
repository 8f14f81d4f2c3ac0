"""Loss modules for learning with sliced distances (``torch.nn.Module``), each a door to one functional.

- :class:`SlicedWassersteinLoss`: :func:`geom.sliced_wasserstein` with any slicing scheme, whose instance
  (and so its reservoir, its learned directions or its amortized network) lasts across steps;
- :class:`SlicedEnergyLoss`: :func:`geom.sliced_energy_distance`;
- :class:`ChamferLoss`: :func:`geom.chamfer_distance` (KeOps on large clouds where it compiles), for
  comparison.

They take ``(B, N, d)`` batches of clouds or ``(N, d)`` clouds and feature batches; see
:mod:`geom.losses._modules` for the contract of state, randomness and devices. The networks of amortized
projections (the vMF location or the max direction predicted from the two clouds) are in
:mod:`geom.losses.amortized`; the scheme that uses them is ``geom_plugins.amortized``.
"""

from ._modules import ChamferLoss, SlicedEnergyLoss, SlicedWassersteinLoss

__all__ = ["ChamferLoss", "SlicedEnergyLoss", "SlicedWassersteinLoss"]
