"""Triangle meshes as measures: ``"mesh"``, ``"mesh-discrete"`` and ``"varifold"``.

From *Diffeomorphic Mesh Deformation via Efficient Optimal Transport for Cortical Surface
Reconstruction*, Tung Le, Khai Nguyen, Shanlin Sun, Kun Han, Nhat Ho, Xiaohui Xie (2023; ICLR 2024).
A surface becomes a probability measure and two surfaces are compared by the sliced Wasserstein
distance; all three kinds are linear (``t = <x, theta>``, directions uniform on the sphere of the
support's dimension), so every scheme of the Euclidean case applies.

- ``"mesh"`` (continuous measure): ``n_samples`` area-uniform samples of the surface (exactly that
  many, uniform weights). Faces are drawn with probability proportional to their area and a point in
  the face by the barycentric coordinates ``(1 - sqrt(r1), sqrt(r1) (1 - r2), sqrt(r1) r2)``, from a
  numpy Generator seeded with ``seed``: the same draws as :func:`geom.io.sample_surface`, so a mesh
  file gives the same points as kind ``"points"``. A sample is a barycentric combination of the
  vertices, so gradients reach the vertices (the draws themselves are held fixed). Options
  ``n_samples=2048``, ``seed=0``.
- ``"mesh-discrete"``: face centroids ``c_f`` with weights ``area_f / total area``; differentiable in
  the vertices through the support and the weights. No options.
- ``"varifold"`` (oriented varifold): the 6-vector ``(c_f, s * n_f)``, ``n_f`` the unit normal of face
  ``f`` (right-hand rule on its vertex order, outward for counter-clockwise faces seen from outside),
  weights ``area_f / total area``; a direction is a unit row of R^6. Option ``normal_scale=s`` (default
  1.0, the paper's plain concatenation of position and normal): normals have length 1 while positions
  spread over the shape, so for shapes of unit size (diameter about 2) both parts count alike; scale
  shapes to unit size, or set ``s`` to about half the shape's diameter to keep that balance.

Input: a ``(vertices, faces)`` tuple (``vertices (V, 3)`` float tensor or array, may require grad;
``faces (F, 3)`` integers), a trimesh or open3d triangle mesh, or a mesh file (read by
:func:`geom.io.read_mesh`); a Python list of such meshes is a padded batch (``"mesh"``: ``(B, n_samples,
D)``; the others: ``(B, F_max, D)`` with zero weights on the padding). Zero-area faces get weight zero,
a zero normal and finite gradients; a mesh whose faces all have zero area is an error.

>>> import geom, torch
>>> v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
>>> mu = geom.measure((v, torch.tensor([[0, 1, 2]])), kind="varifold")
>>> mu.support[0, 0].tolist()  # centroid, then the unit normal
[0.3333333432674408, 0.3333333432674408, 0.0, 0.0, 0.0, 1.0]
"""

from __future__ import annotations

import abc
import math
import os

import numpy as np
import torch

import geom
from geom._checks import check_device, check_int, check_memory, check_real, describe
from geom.io import surface_draws
from geom.measures import Measure

from .points import as_support

__all__ = ["DiscreteMesh", "MeshSamples", "Varifold", "face_geometry", "mesh_tensors"]


# ----------------------------------------------------------------- input


def _vertices_tensor(vertices, where: str) -> torch.Tensor:
    v = as_support(vertices, f"vertices{where}", "a (V, 3) array or tensor")
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise ValueError(f"vertices{where}: expected shape (V, 3) with V >= 1, got {tuple(v.shape)}")
    bad = ~torch.isfinite(v.detach())
    if bool(bad.any()):
        row = int(bad.any(1).nonzero()[0, 0])
        raise ValueError(f"vertices{where}: expected finite coordinates, got {v[row].detach().tolist()} at row {row}")
    return v


def _faces_tensor(faces, n_vertices: int, device, where: str) -> torch.Tensor:
    if isinstance(faces, torch.Tensor):
        f = check_device(faces, f"faces{where}")
    else:
        try:
            f = np.asarray(faces)
            if f.dtype.kind == "u":  # torch reduces few unsigned types: int64 (larger values wrap negative)
                f = f.astype(np.int64)
            f = torch.as_tensor(f)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"faces{where}: expected an (F, 3) integer array, got {describe(faces)}") from exc
    if f.dtype in (torch.uint16, torch.uint32, torch.uint64):
        f = f.to(torch.int64)
    if f.is_floating_point() or f.is_complex() or f.dtype == torch.bool:
        raise TypeError(f"faces{where}: expected integer vertex indices, got dtype {f.dtype}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces{where}: expected shape (F, 3) (triangles), got {tuple(f.shape)}")
    if f.shape[0] == 0:
        raise ValueError(f"faces{where}: expected a mesh with at least one face, got no faces (shape (0, 3))")
    lo, hi = int(f.min()), int(f.max())
    if lo < 0 or hi >= n_vertices:
        raise ValueError(f"faces{where}: expected vertex indices in [0, {n_vertices}), got values in [{lo}, {hi}]")
    return f.to(device=device, dtype=torch.long)


def mesh_tensors(obj, where: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """One mesh -> ``vertices (V, 3)`` float tensor (autograd kept) and ``faces (F, 3)`` long tensor.

    ``obj`` is a ``(vertices, faces)`` tuple, a trimesh / open3d triangle mesh or a mesh file path.
    ``where`` (e.g. ``"[2]"``) is appended to the argument names in errors, for items of a batch.
    """
    if isinstance(obj, tuple):
        if len(obj) != 2:
            raise ValueError(f"obj{where}: expected a (vertices, faces) pair, got a tuple of length {len(obj)}")
        v = _vertices_tensor(obj[0], where)
        return v, _faces_tensor(obj[1], v.shape[0], v.device, where)
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        raise TypeError(f"obj{where}: expected a mesh, got {describe(obj)}; pass a (vertices, faces) tuple")
    if not isinstance(obj, (str, os.PathLike)) and not type(obj).__module__.startswith(("trimesh", "open3d")):
        raise TypeError(f"obj{where}: expected a (vertices, faces) tuple, a trimesh or open3d triangle mesh, "
                        f"a mesh file or a list of these, got {describe(obj)}")
    try:
        v, f = geom.io.read_mesh(obj)  # numpy; files, trimesh and open3d (imported only when it is the input)
    except ValueError as exc:
        raise ValueError(str(exc).replace("obj:", f"obj{where}:", 1)) from exc
    return torch.from_numpy(v), torch.from_numpy(f)


def face_geometry(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centroids ``(F, 3)``, areas ``(F,)`` and unit normals ``(F, 3)`` of a triangle mesh, differentiable.

    A zero-area face has area 0 and normal 0, and every gradient stays finite (the norm is only
    taken where it is positive). Areas beyond the dtype's range (vertices near 1e20 in float32) are
    ``inf``; :func:`_face_frames` gives them relative to a unit, as the mesh kinds use them.
    """
    centroid, area, normal, unit = _face_frames(vertices, faces)
    return centroid, area * unit**2, normal


def _face_frames(vertices: torch.Tensor, faces: torch.Tensor):
    """:func:`face_geometry` with the areas in units of ``unit**2`` (``unit`` a power of 2 near the
    largest edge coordinate): in range for every scale of the mesh, as area weights and normals need."""
    tri = vertices[faces]  # (F, 3, 3)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]  # (F, 3)
    top = max(e1.detach().abs().max().item(), e2.detach().abs().max().item())
    if not math.isfinite(top):
        raise ValueError(f"vertices: the edges of the mesh overflow {vertices.dtype} (coordinates up to "
                         f"{vertices.detach().abs().max().item():.3g}); rescale the mesh")
    unit = math.ldexp(1.0, math.frexp(top)[1] - 1) if top > 0 else 1.0  # a power of 2: exact scaling
    e1, e2 = (e1 * (1 / unit), e2 * (1 / unit)) if unit >= 1 else (e1 / unit, e2 / unit)
    cross = torch.linalg.cross(e1, e2, dim=-1)  # (F, 3) = 2 area n / unit^2
    sq = (cross * cross).sum(-1)  # (F,)
    ok = sq > torch.finfo(sq.dtype).tiny
    norm = torch.where(ok, sq, torch.ones_like(sq)).sqrt()  # (F,), never sqrt(0)
    area = torch.where(ok, 0.5 * norm, torch.zeros_like(norm))
    normal = torch.where(ok[:, None], cross / norm[:, None], torch.zeros_like(cross))
    return tri.mean(1), area, normal, unit


# ----------------------------------------------------------------- representations


class _MeshKind(geom.Representation):
    """Shared input handling: one mesh or a list of meshes -> per-mesh (support, weights) -> padded batch."""

    linear = True
    options: dict = {}  # option name -> default
    uniform_weights = False  # every mesh gets equal weights on the same number of atoms

    @abc.abstractmethod
    def _item(self, vertices, faces, where: str, **options) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, D)`` support and ``(N,)`` weights summing to 1 for one mesh."""

    def _options(self, options: dict) -> dict:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            expected = sorted(self.options) or "none"
            raise TypeError(f"unknown options for kind {self.name!r}: {unknown}; expected {expected}")
        return {**self.options, **options}

    def build(self, obj, *, weights=None, **options) -> Measure:
        if weights is not None:
            raise ValueError(f"weights: kind {self.name!r} weighs the surface by area itself; got {describe(weights)} "
                             "(build a 'points' measure from mu.support to choose weights)")
        options = self._options(options)
        batched = isinstance(obj, list)
        if batched:
            if not obj:
                raise ValueError("obj: expected a list of at least one mesh, got an empty list")
            items = [self._item(*mesh_tensors(m, f"[{i}]"), f"[{i}]", **options) for i, m in enumerate(obj)]
        else:
            items = [self._item(*mesh_tensors(obj), "", **options)]
        dtype = items[0][0].dtype
        for s, _ in items[1:]:
            dtype = torch.promote_types(dtype, s.dtype)
        devices = {s.device for s, _ in items}
        if len(devices) > 1:
            raise ValueError(f"obj: expected every mesh of the batch on one device, got {sorted(map(str, devices))}")
        support = torch.nn.utils.rnn.pad_sequence([s.to(dtype) for s, _ in items], batch_first=True)  # (B, N, D)
        w = torch.nn.utils.rnn.pad_sequence([w.to(dtype) for _, w in items], batch_first=True)  # (B, N), 0 = padding
        return Measure(support, w, kind=self.name, batched=batched, uniform=self.uniform_weights)

    def project(self, support, directions):
        return torch.matmul(directions, support.transpose(1, 2))  # (B, L, N)


def _area_weights(area: torch.Tensor, where: str) -> torch.Tensor:
    total = area.sum()
    if not bool(total.detach() > 0):
        raise ValueError(f"faces{where}: every one of the {area.shape[0]} faces has zero area; there is no surface")
    return area / total  # (F,)


class MeshSamples(_MeshKind):
    """``"mesh"``: ``n_samples`` seeded area-uniform surface samples, uniform weights."""

    name = "mesh"
    family = "points"  # surface samples are a point cloud: comparable with "points" and "mesh-discrete"
    options = {"n_samples": 2048, "seed": 0}
    uniform_weights = True

    def _item(self, vertices, faces, where, *, n_samples, seed):
        n_samples = check_int(n_samples, "n_samples", minimum=1)
        check_memory(n_samples * 128, "n_samples", f"{n_samples} surface samples")  # draws, samples, gradients
        seed = check_int(seed, "seed", minimum=0)
        try:
            face, bary = surface_draws(vertices.detach().cpu().numpy(), faces.cpu().numpy(), n_samples, seed=seed)
        except ValueError as exc:
            raise ValueError(str(exc).replace("faces:", f"faces{where}:", 1)) from None
        tri = vertices[faces[torch.from_numpy(face).to(faces.device)]]  # (N, 3, 3)
        bary = torch.from_numpy(bary).to(device=vertices.device, dtype=vertices.dtype)  # (N, 3)
        support = (bary[:, :, None] * tri).sum(1)  # (N, 3)
        return support, torch.full((n_samples,), 1.0 / n_samples, dtype=vertices.dtype, device=vertices.device)


class DiscreteMesh(_MeshKind):
    """``"mesh-discrete"``: face centroids weighted by face area."""

    name = "mesh-discrete"
    family = "points"

    def _item(self, vertices, faces, where):
        centroid, area, _, _ = _face_frames(vertices, faces)
        return centroid, _area_weights(area, where)


class Varifold(_MeshKind):
    """``"varifold"``: ``(centroid, normal_scale * unit normal)`` in R^6, weighted by face area."""

    name = "varifold"
    options = {"normal_scale": 1.0}

    def _item(self, vertices, faces, where, *, normal_scale):
        top = torch.finfo(vertices.dtype).max
        s = check_real(normal_scale, "normal_scale", f"> 0 and at most {top:.3g} (the range of {vertices.dtype})",
                       lambda v: 0 < v <= top)
        centroid, area, normal, _ = _face_frames(vertices, faces)
        return torch.cat([centroid, s * normal], -1), _area_weights(area, where)  # (F, 6), (F,)


@geom.hookimpl
def geom_register_representations(register):
    register("mesh", MeshSamples)
    register("mesh-discrete", DiscreteMesh)
    register("varifold", Varifold)
