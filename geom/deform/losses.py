"""Regularisers of a moved mesh (vertices ``(V, 3)``, the template's faces and topology).

Each is a scalar, differentiable in the vertices, zero on its ideal meshes and free of the mesh's
position and size (so one weight serves meshes of any size, and a run that restarts from moved
vertices sees the same terms):

- ``edge``: ``Var_e(|e|^2) / (mean_e |e|^2)^2``, the squared coefficient of variation of the squared
  edge lengths (0 when every edge has the same length; it does not resist a change of size).
- ``laplacian``: ``mean_i |mean_{j ~ i} x_j - x_i|^2 / mean_e |e|^2``, the uniform (umbrella)
  Laplacian in units of the mean edge: 0 where every vertex is the mean of its neighbours.
- ``normal``: ``mean over pairs (f, g) of faces sharing an edge of 1 - cos(n_f, n_g)``, the normal
  consistency (0 on a plane; a zero-area face has normal 0, so cos 0 there, with finite gradients).
"""

from __future__ import annotations

import torch

from .templates import MeshTopology

__all__ = ["REGULARIZERS", "edge_loss", "laplacian_loss", "mean_squared_edge", "normal_loss"]


def squared_edges(vertices: torch.Tensor, topo: MeshTopology) -> torch.Tensor:
    """``|e|^2`` of each edge, ``(E,)``."""
    e = topo.edges.to(vertices.device)
    return (vertices[e[:, 0]] - vertices[e[:, 1]]).pow(2).sum(-1)


def mean_squared_edge(vertices: torch.Tensor, topo: MeshTopology) -> torch.Tensor:
    """``mean_e |e|^2`` of a mesh: the unit of :func:`edge_loss` and :func:`laplacian_loss`."""
    return squared_edges(vertices, topo).mean()


def edge_loss(vertices: torch.Tensor, topo: MeshTopology) -> torch.Tensor:
    """``Var_e(|e|^2) / (mean_e |e|^2)^2`` for vertices ``(V, 3)``."""
    sq = squared_edges(vertices, topo)  # (E,)
    return (sq - sq.mean()).pow(2).mean() / sq.mean() ** 2


def laplacian_loss(vertices: torch.Tensor, topo: MeshTopology) -> torch.Tensor:
    """``mean_i |mean_{j ~ i} x_j - x_i|^2 / mean_e |e|^2`` over the vertices with neighbours."""
    e = topo.edges.to(vertices.device)
    degree = torch.bincount(e.reshape(-1), minlength=len(vertices))  # (V,)
    total = torch.zeros_like(vertices).index_add(0, e[:, 0], vertices[e[:, 1]]).index_add(0, e[:, 1], vertices[e[:, 0]])
    used = degree > 0
    lap = total[used] / degree[used, None] - vertices[used]  # (V_used, 3)
    return lap.pow(2).sum(-1).mean() / mean_squared_edge(vertices, topo)


def normal_loss(vertices: torch.Tensor, faces: torch.Tensor, topo: MeshTopology) -> torch.Tensor:
    """``mean (1 - cos(n_f, n_g))`` over the pairs of faces sharing an edge (0 where there are none)."""
    tri = vertices[faces]  # (F, 3, 3)
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)  # (F, 3)
    sq = cross.pow(2).sum(-1)
    ok = sq > torch.finfo(sq.dtype).tiny
    n = torch.where(ok[:, None], cross / torch.where(ok, sq, 1.0).sqrt()[:, None], 0.0)  # unit or 0
    pairs = topo.edge_faces.to(vertices.device)
    if len(pairs) == 0:
        return vertices.new_zeros(())
    return (1 - (n[pairs[:, 0]] * n[pairs[:, 1]]).sum(-1)).mean()


REGULARIZERS = {
    "edge": lambda v, f, topo: edge_loss(v, topo),
    "laplacian": lambda v, f, topo: laplacian_loss(v, topo),
    "normal": lambda v, f, topo: normal_loss(v, f, topo),
}
"""name -> ``term(vertices, faces, topology)``."""
