"""Mesh measures against independent computations: trimesh's face areas, centroids and normals, and
POT's sliced Wasserstein distance on the same atoms, weights and directions."""

import numpy as np
import ot
import pytest
import torch
import trimesh

import geom
from geom_datasets import shapes
from geom_plugins.mesh import DiscreteMesh, MeshSamples, Varifold, face_geometry

KINDS = {"mesh": MeshSamples, "mesh-discrete": DiscreteMesh, "varifold": Varifold}


@pytest.mark.parametrize("mesh", [shapes.torus(n_major=14, n_minor=7), shapes.noisy_sphere(subdivisions=2)])
def test_face_geometry_matches_trimesh(mesh):
    v, f = mesh
    tm = trimesh.Trimesh(v.astype(np.float64), f, process=False)
    centroid, area, normal = face_geometry(torch.tensor(v, dtype=torch.float64), torch.tensor(f))
    np.testing.assert_allclose(area.numpy(), tm.area_faces, rtol=1e-10)
    np.testing.assert_allclose(centroid.numpy(), tm.triangles_center, atol=1e-12)
    np.testing.assert_allclose(normal.numpy(), tm.face_normals, atol=1e-6)  # trimesh's normals are float32-accurate


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_varifold_sw_matches_pot(p, scale):
    """The varifold atoms rebuilt from trimesh (centroid, scale * normal; area weights) give POT's SW."""
    a, b = shapes.ellipsoid(subdivisions=2), shapes.torus(n_major=16, n_minor=8)  # 320 and 256 faces: N != M
    theta = torch.randn(64, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta = theta / theta.norm(dim=1, keepdim=True)
    mine = geom.sliced_wasserstein(geom.measure(a, kind="varifold", normal_scale=scale).to(torch.float64),
                                   geom.measure(b, kind="varifold", normal_scale=scale).to(torch.float64),
                                   directions=theta, p=p)
    atoms = []
    for v, f in (a, b):
        tm = trimesh.Trimesh(v.astype(np.float64), f, process=False)
        x = np.concatenate([tm.triangles_center, scale * tm.face_normals], 1)  # (F, 6)
        atoms += [x, tm.area_faces / tm.area_faces.sum()]
    ref = ot.sliced_wasserstein_distance(atoms[0], atoms[2], atoms[1], atoms[3], projections=theta.numpy().T, p=p)
    assert mine.item() == pytest.approx(float(ref), rel=1e-5)


def test_mesh_samples_match_the_points_kind_of_a_file(tmp_path):
    """A mesh file as "mesh" and as "points" (geom.io's sampler) gives the same points for a seed."""
    v, f = shapes.torus(n_major=12, n_minor=6)
    path = tmp_path / "torus.obj"
    trimesh.Trimesh(v, f, process=False).export(path)
    mesh = geom.measure(str(path), kind="mesh", n_samples=321, seed=4)
    points = geom.measure(str(path), n_samples=321, seed=4)
    torch.testing.assert_close(mesh.support, points.support)
