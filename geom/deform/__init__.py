"""Mesh deformation: a template moved onto a target by a neural-ODE diffeomorphism, driven by sliced
Wasserstein distances between mesh measures.

After *Diffeomorphic Mesh Deformation via Efficient Optimal Transport for Cortical Surface
Reconstruction* (Le et al., ICLR 2024): meshes are measures (``geom.measure(mesh, kind="varifold")``:
area-weighted centroids with their normals), the loss is the sliced Wasserstein distance between the
moved template's measure and the target's (fresh ``qmc`` directions every step), and a velocity field
``v(x, t)`` integrated over ``t in [0, 1]`` (torchdiffeq) moves the template's vertices, so the map is a
diffeomorphism: it is invertible, its Jacobian determinant is positive, and the surface never passes
through itself (up to the solver's error).

- :func:`deform`: template (a mesh; :func:`icosphere`) onto a target mesh or point cloud, or a batch of
  pairs; ``method="vertices"`` moves free vertices instead, for comparison.
- :class:`NeuralODEDeformation`: the map ``phi_1`` (``forward``) and ``phi_1^{-1}`` (``inverse``) of any
  ``(N, 3)`` or ``(B, N, 3)`` points; :class:`VelocityField`: its MLP field.
- :mod:`geom.deform.losses`: edge-length, Laplacian and normal-consistency regularisers.
- :mod:`geom.deform.metrics`: Chamfer, Hausdorff, normal agreement and smoothness, SW and exact W_2,
  all at once by :func:`mesh_metrics` (target scaled to a unit bounding-box diagonal).
- :mod:`geom.deform.intersect`: the fraction of self-intersecting faces (:func:`self_intersection_fraction`),
  on CPU in numpy: a grid broad phase and exact-case triangle-triangle tests.

torchdiffeq is needed only to integrate (``pip install 'geom[deform]'``); importing this works without it.

>>> import geom.deform as gd
>>> template = gd.icosphere(2)
>>> result = gd.deform(template, gd.icosphere(2, radius=1.3), steps=2, n_projections=16)  # doctest: +SKIP
"""

from .fit import DeformResult, deform
from .intersect import SelfIntersections, self_intersection_fraction, self_intersections
from .losses import edge_loss, laplacian_loss, normal_loss
from .metrics import chamfer, exact_w2, hausdorff, mesh_metrics, normal_agreement, normal_smoothness, sliced_w2
from .ode import NeuralODEDeformation, VelocityField
from .templates import MeshTopology, genus, icosphere

__all__ = ["DeformResult", "MeshTopology", "NeuralODEDeformation", "SelfIntersections", "VelocityField", "chamfer",
           "deform", "edge_loss", "exact_w2", "genus", "hausdorff", "icosphere", "laplacian_loss", "mesh_metrics",
           "normal_agreement", "normal_loss", "normal_smoothness", "self_intersection_fraction", "self_intersections",
           "sliced_w2"]
