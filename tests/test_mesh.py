"""Mesh representations: "mesh" (surface samples), "mesh-discrete" (area-weighted centroids), "varifold"."""

import math

import numpy as np
import pytest
import torch

import geom
import geom.testing
from geom.io import surface_draws
from geom_datasets import shapes
from geom_plugins.mc import uniform_directions
from geom_plugins.mesh import DiscreteMesh, MeshSamples, Varifold, face_geometry

KINDS = {"mesh": MeshSamples, "mesh-discrete": DiscreteMesh, "varifold": Varifold}


def unit_rows(n, dim, seed):
    return uniform_directions(n, dim, torch.Generator().manual_seed(seed))  # (n, dim) float64


def opts(name, n_samples=300, seed=0):
    """The sampling options where the kind takes them ("mesh")."""
    return {"n_samples": n_samples, "seed": seed} if name == "mesh" else {}


def as_points(mu):
    """The same support and weights as a "points" measure (the core compares measures of one kind)."""
    return geom.Measure(mu.support, mu.weights, kind="points", batched=mu.batched, uniform=False)


def two_triangles():
    """Two disjoint right triangles in the planes z = 0 and z = 1, areas 1/2 and 3/2."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 3, 1], [1, 0, 1]], dtype=np.float64)
    f = np.array([[0, 1, 2], [3, 4, 5]])  # the second is clockwise seen from +z: normal -e_z
    return v, f


def on_surface_distance(x, v, f):
    """``(N,)`` distance of each point to the nearest face that contains its projection (inf if none)."""
    a, e1, e2 = v[f[:, 0]], v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]  # (F, 3) each
    gram = np.stack([np.stack([(e1 * e1).sum(1), (e1 * e2).sum(1)], -1),
                     np.stack([(e1 * e2).sum(1), (e2 * e2).sum(1)], -1)], -2)  # (F, 2, 2)
    r = x[:, None, :] - a[None]  # (N, F, 3)
    rhs = np.stack([(r * e1).sum(-1), (r * e2).sum(-1)], -1)  # (N, F, 2)
    lam = np.linalg.solve(gram[None], rhs[..., None])[..., 0]  # (N, F, 2) plane coordinates
    foot = a[None] + lam[..., :1] * e1[None] + lam[..., 1:] * e2[None]  # (N, F, 3)
    inside = (lam >= -1e-9).all(-1) & (lam.sum(-1) <= 1 + 1e-9)  # (N, F)
    return np.where(inside, np.linalg.norm(x[:, None] - foot, axis=-1), np.inf).min(1)


# ----------------------------------------------------------------- contract


@pytest.mark.parametrize("name", sorted(KINDS))
def test_contract(name):
    v, f = shapes.sphere(subdivisions=1)
    vt = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    geom.testing.check_representation(KINDS[name], (vt, f))
    v2, f2 = shapes.torus(n_major=8, n_minor=6)
    geom.testing.check_representation(KINDS[name], [(vt, f), (torch.tensor(v2), f2)])


# ----------------------------------------------------------------- "mesh": samples


def test_mesh_samples_lie_on_the_surface_with_exact_count():
    v, f = shapes.torus(n_major=12, n_minor=8)
    mu = geom.measure((v, f), kind="mesh", n_samples=777, seed=3)
    assert tuple(mu.support.shape) == (1, 777, 3) and mu.uniform
    assert torch.allclose(mu.weights, torch.full((1, 777), 1 / 777))
    x = mu.support[0].numpy()
    assert on_surface_distance(x, v, f).max() < 1e-5
    face, bary = surface_draws(v, f, 777, seed=3)  # the draws, reconstructed
    assert (bary >= 0).all() and np.allclose(bary.sum(1), 1)
    np.testing.assert_allclose(x, np.einsum("nj,njd->nd", bary, v[f[face]]), atol=1e-6)
    # same draws as the "points" kind of a mesh (geom.io.sample_surface)
    np.testing.assert_allclose(x, geom.io.sample_surface(v, f, 777, seed=3), atol=1e-6)


def test_mesh_samples_are_area_uniform():
    v, f = two_triangles()
    n = 4000
    x = MeshSamples().build((v, f), n_samples=n, seed=0).support[0].numpy()  # (n, 3)
    upper = x[:, 2] > 0.5
    se = math.sqrt(0.75 * 0.25 / n)
    assert abs(upper.mean() - 0.75) < 4 * se  # areas 1/2 and 3/2
    # uniform inside a triangle: the mean is the centroid (per-coordinate stderr from the samples)
    for mask, centroid in ((~upper, v[[0, 1, 2]].mean(0)), (upper, v[[3, 4, 5]].mean(0))):
        pts = x[mask]
        assert (np.abs(pts.mean(0) - centroid) < 4 * pts.std(0) / math.sqrt(len(pts)) + 1e-12).all()


def test_same_seed_same_samples():
    v, f = shapes.cube(divisions=3)
    a = MeshSamples().build((v, f), n_samples=300, seed=5).support
    b = MeshSamples().build((v, f), n_samples=300, seed=5).support
    c = MeshSamples().build((v, f), n_samples=300, seed=6).support
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_mesh_gradient_reaches_the_vertices():
    v, f = shapes.sphere(subdivisions=1)
    vt = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    mu = MeshSamples().build((vt, f), n_samples=500, seed=1)
    (grad,) = torch.autograd.grad(mu.support.sum(), vt)
    face, bary = surface_draws(v, f, 500, seed=1)
    expected = np.zeros(len(v))
    np.add.at(expected, f[face].ravel(), bary.ravel())  # d(sum of samples)/d(vertex k) = sum of its bary
    np.testing.assert_allclose(grad.numpy(), np.repeat(expected[:, None], 3, 1), atol=1e-12)


# ----------------------------------------------------------------- discrete kinds: closed forms


def test_discrete_and_varifold_closed_form():
    v, f = two_triangles()
    mu = DiscreteMesh().build((v, f))
    np.testing.assert_allclose(mu.weights[0].numpy(), [0.25, 0.75])
    np.testing.assert_allclose(mu.support[0].numpy(), [v[:3].mean(0), v[3:].mean(0)])
    var = Varifold().build((v, f), normal_scale=2.0)
    np.testing.assert_allclose(var.support[0].numpy(), [[*v[:3].mean(0), 0, 0, 2], [*v[3:].mean(0), 0, 0, -2]])
    np.testing.assert_allclose(var.weights[0].numpy(), [0.25, 0.75])


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_varifold_sees_orientation(scale):
    """Flipping both faces of two_triangles keeps centroids and areas ("mesh-discrete": SW = 0) and
    negates the normals: on e_6 the projections go from (+s: 1/4, -s: 3/4) to (-s: 1/4, +s: 3/4), so
    half the mass moves by 2s and W_2 = sqrt(1/2 (2s)^2) = s sqrt(2)."""
    v, f = two_triangles()
    flipped = np.ascontiguousarray(f[:, ::-1])
    d = geom.sliced_wasserstein(geom.measure((v, f), kind="mesh-discrete"),
                                geom.measure((v, flipped), kind="mesh-discrete"), directions=unit_rows(16, 3, 0))
    assert d.item() == 0
    a, b = (geom.measure((v, g), kind="varifold", normal_scale=scale) for g in (f, flipped))
    e6 = torch.tensor([[0, 0, 0, 0, 0, 1.0]])
    assert geom.sliced_wasserstein(a, b, directions=e6).item() == pytest.approx(scale * math.sqrt(2), rel=1e-9)


def test_varifold_rotates_with_the_mesh():
    v, f = shapes.torus(n_major=10, n_minor=6)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    q = q * torch.linalg.det(q).sign()  # a rotation
    vt = torch.tensor(v, dtype=torch.float64)
    a = Varifold().build((vt, f)).support[0]
    b = Varifold().build((vt @ q.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), f)).support[0]
    torch.testing.assert_close(b[:, 3:], a[:, 3:] @ q.T)
    torch.testing.assert_close(b[:, :3], a[:, :3] @ q.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))


# ----------------------------------------------------------------- convergence, gradients, flow


def test_mesh_measures_of_one_surface_converge():
    """SW between n surface samples of a coarse cube and the area-weighted centroids of a fine one
    (the same surface) falls like n^(-1/2): 64 -> 512 -> 4096 samples, three seeds each."""
    fine = as_points(geom.measure(shapes.cube(divisions=32), kind="mesh-discrete"))
    theta = unit_rows(256, 3, 1)
    coarse = shapes.cube(divisions=2)
    means = []
    for n in (64, 512, 4096):
        d = [geom.sliced_wasserstein(as_points(geom.measure(coarse, kind="mesh", n_samples=n, seed=s)), fine,
                                     directions=theta).item() for s in range(3)]
        means.append(np.mean(d))
    assert means[0] > means[1] > means[2]
    assert means[0] / means[2] > 4  # measured about 8 (sqrt(64) would be exact n^(-1/2))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_sw_gradient_matches_finite_differences(name):
    v, f = shapes.sphere(subdivisions=1)
    v0 = torch.tensor(v, dtype=torch.float64)
    v0 = v0 + 0.05 * torch.randn(v0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = geom.measure(shapes.ellipsoid(subdivisions=0), kind=name, **opts(name, 40)).to(torch.float64)
    theta = unit_rows(32, 6 if name == "varifold" else 3, 2)

    def sw(x):
        return geom.sliced_wasserstein(geom.measure((x, f), kind=name, **opts(name)), target, directions=theta)

    x = v0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sw(x), x)
    h = 1e-7  # W_2^2 is piecewise smooth (kinks where the sorted order or the weight quantiles cross)
    for k in range(3):
        u = torch.randn(v0.shape, generator=torch.Generator().manual_seed(10 + k), dtype=torch.float64)
        fd = (sw(v0 + h * u) - sw(v0 - h * u)).item() / (2 * h)
        assert (grad * u).sum().item() == pytest.approx(fd, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("name", ["varifold", "mesh-discrete"])
def test_gradient_descent_moves_a_sphere_towards_an_ellipsoid(name):
    f_target = shapes.ellipsoid(axes=(1.3, 1.0, 0.7), subdivisions=2)
    target = geom.measure(f_target, kind=name)
    v, f = shapes.sphere(subdivisions=2)
    x = torch.tensor(v, requires_grad=True)
    theta = unit_rows(256, target.dim, 3)

    def distance():
        return geom.sliced_wasserstein(geom.measure((x.detach(), f), kind=name), target, directions=theta).item()

    before = distance()
    opt = torch.optim.Adam([x], lr=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        loss = geom.sliced_wasserstein(geom.measure((x, f), kind=name), target, n_projections=64, generator=g) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = distance()
    assert after < before / 3  # measured: varifold 0.076 -> 0.015, mesh-discrete 0.078 -> 0.012


# ----------------------------------------------------------------- degenerate faces


@pytest.mark.parametrize("name", sorted(KINDS))
def test_degenerate_faces_are_finite_with_zero_weight(name):
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [0.5, 0.5, 1]], dtype=torch.float64,
                     requires_grad=True)
    f = torch.tensor([[0, 1, 2], [0, 1, 3], [4, 4, 4], [1, 2, 4]])  # faces 1 (collinear) and 2 (a point): area 0
    mu = geom.measure((v, f), kind=name, **opts(name, 200))
    assert bool(torch.isfinite(mu.support).all()) and bool(torch.isfinite(mu.weights).all())
    if name == "mesh":
        face, _ = surface_draws(v.detach().numpy(), f.numpy(), 200, seed=0)
        assert not np.isin(face, [1, 2]).any() and np.isin(face, [0, 3]).all()
    else:
        assert mu.weights[0, 1].item() == 0 and mu.weights[0, 2].item() == 0
    nu = geom.measure(shapes.sphere(subdivisions=1), kind=name, **opts(name, 200)).to(torch.float64)
    d = geom.sliced_wasserstein(mu, nu, n_projections=32, seed=0)
    (grad,) = torch.autograd.grad(d, v)
    assert math.isfinite(d.item()) and bool(torch.isfinite(grad).all()) and bool((grad != 0).any())
    _, area, normal = face_geometry(v, f)
    probe = (normal * torch.arange(12.0, dtype=torch.float64).view(4, 3)).sum() + area.sum()
    (g_normal,) = torch.autograd.grad(probe, v)
    assert bool(torch.isfinite(g_normal).all())
    assert normal[1:3].abs().max().item() == 0 and area[1:3].abs().max().item() == 0


# ----------------------------------------------------------------- inputs and errors


def test_trimesh_open3d_and_files_match_the_pair(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    v, f = shapes.torus(n_major=10, n_minor=6)
    ref = {k: geom.measure((v, f), kind=k, **opts(k, 100)).support for k in KINDS}
    path = tmp_path / "torus.ply"
    trimesh.Trimesh(v, f, process=False).export(path)
    inputs = [trimesh.Trimesh(v, f, process=False), str(path)]
    o3d = pytest.importorskip("open3d")
    inputs.append(o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v.astype(np.float64)),
                                            o3d.utility.Vector3iVector(f.astype(np.int32))))
    for obj in inputs:
        for k in KINDS:
            torch.testing.assert_close(geom.measure(obj, kind=k, **opts(k, 100)).support, ref[k])


def test_real_meshes(meshes_dir):
    files = sorted(p for p in meshes_dir.iterdir() if p.suffix.lower() in (".obj", ".off", ".ply"))
    assert files
    for path in files:
        v, f = geom.io.read_mesh(path)
        for k in KINDS:
            mu = geom.measure(path, kind=k, **opts(k, 64))
            assert mu.n_points == (64 if k == "mesh" else len(f))
            assert bool(torch.isfinite(mu.support).all())
            assert abs(mu.weights.sum().item() - 1) < 1e-5
            torch.testing.assert_close(mu.support, geom.measure((v, f), kind=k, **opts(k, 64)).support)


@pytest.mark.parametrize("name", ["mesh-discrete", "varifold"])
def test_batch_is_padded_with_zero_weights(name):
    a, b = shapes.sphere(subdivisions=1), shapes.torus(n_major=10, n_minor=6)  # 80 and 120 faces
    target = shapes.cube(divisions=2)
    mu = geom.measure([a, b], kind=name)
    assert mu.batched and tuple(mu.weights.shape) == (2, 120)
    assert mu.weights[0, 80:].abs().max().item() == 0 and mu.weights[0, :80].min().item() > 0
    theta = unit_rows(32, mu.dim, 4)
    batch = geom.sliced_wasserstein(mu, geom.measure([target, target], kind=name), directions=theta)
    single = [geom.sliced_wasserstein(geom.measure(m, kind=name), geom.measure(target, kind=name), directions=theta)
              for m in (a, b)]
    torch.testing.assert_close(batch, torch.stack(single))
    samples = geom.measure([a, b], kind="mesh", n_samples=50, seed=1)
    assert tuple(samples.support.shape) == (2, 50, 3)
    torch.testing.assert_close(samples.support[1], geom.measure(b, kind="mesh", n_samples=50, seed=1).support[0])


V, F = shapes.sphere(subdivisions=0)


@pytest.mark.parametrize(
    "obj, options, exc, match",
    [
        ((V, np.zeros((0, 3), dtype=np.int64)), {}, ValueError, r"faces: .*at least one face"),
        ((V, F + 1), {}, ValueError, r"faces: expected vertex indices in \[0, 12\), got values in \[1, 12\]"),
        ((V, F - 1), {}, ValueError, r"faces: expected vertex indices in \[0, 12\)"),
        ((np.where(np.arange(12)[:, None] == 4, np.nan, V), F), {}, ValueError, r"vertices: expected finite .* row 4"),
        ((V[:, :2], F), {}, ValueError, r"vertices: expected shape \(V, 3\)"),
        ((V, F[:, :2]), {}, ValueError, r"faces: expected shape \(F, 3\)"),
        ((V, F.astype(np.float32)), {}, TypeError, r"faces: expected integer"),
        ((V, F, F), {}, ValueError, r"obj: expected a \(vertices, faces\) pair"),
        (V, {}, TypeError, r"obj: expected a mesh"),
        ([V, F], {}, TypeError, r"obj\[0\]: expected a mesh, .* pass a \(vertices, faces\) tuple"),
        ({"vertices": V}, {}, TypeError, r"obj: expected a \(vertices, faces\) tuple"),
        ([(V, F), (V, F + 1)], {}, ValueError, r"faces\[1\]: expected vertex indices"),
        ([], {}, ValueError, r"obj: expected a list of at least one mesh"),
        ((np.zeros((3, 3)), np.array([[0, 1, 2]])), {}, ValueError, r"faces: every one of the 1 faces has zero area"),
        ((V, F), {"bogus": 1}, TypeError, r"unknown options .*\['bogus'\]"),
    ],
)
@pytest.mark.parametrize("name", sorted(KINDS))
def test_bad_input_names_the_argument(name, obj, options, exc, match):
    with pytest.raises(exc, match=match):
        geom.measure(obj, kind=name, **options)


@pytest.mark.parametrize(
    "name, options, exc, match",
    [
        ("mesh", {"n_samples": 0}, ValueError, r"n_samples: expected a positive integer, got 0"),
        ("mesh", {"n_samples": 2.5}, TypeError, r"n_samples"),
        ("mesh", {"seed": -1}, ValueError, r"seed: expected an integer >= 0"),
        ("varifold", {"normal_scale": 0.0}, ValueError, r"normal_scale: expected a real number > 0"),
        ("varifold", {"normal_scale": "1"}, TypeError, r"normal_scale"),
        ("mesh-discrete", {"n_samples": 10}, TypeError, r"unknown options for kind 'mesh-discrete'"),
        ("varifold", {"weights": [1.0] * 20}, ValueError, r"weights: kind 'varifold' weighs the surface by area"),
    ],
)
def test_bad_options_name_the_option(name, options, exc, match):
    with pytest.raises(exc, match=match):
        geom.measure((V, F), kind=name, **options)


def test_file_without_faces_is_an_error(tmp_path):
    path = tmp_path / "cloud.xyz"
    np.savetxt(path, V)
    with pytest.raises(ValueError, match="obj: .*has no faces"):
        geom.measure(str(path), kind="varifold")


def test_the_hook_registers_the_three_kinds():
    from geom_plugins import mesh

    seen = []
    mesh.geom_register_representations(lambda name, cls: seen.append((name, cls)))
    assert seen == [("mesh", MeshSamples), ("mesh-discrete", DiscreteMesh), ("varifold", Varifold)]


def test_surface_samples_and_centroids_compare_with_point_clouds():
    """"mesh" and "mesh-discrete" are of the "points" family: comparable with clouds and each other,
    with the values of the same atoms as clouds; the varifold lives in R^6 and is refused."""
    v, f = shapes.sphere(subdivisions=2)
    mesh = (torch.tensor(v, dtype=torch.float64), torch.tensor(f))
    cloud = geom.measure(torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    for kind in ("mesh", "mesh-discrete"):
        mu = geom.measure(mesh, kind=kind)
        as_cloud = geom.measure(mu.support[0], weights=mu.weights[0])
        # measure() normalises the weights again, which may move them by an ulp: equal to float64 rounding
        value = geom.sliced_wasserstein(as_cloud, cloud, seed=1).item()
        assert geom.sliced_wasserstein(mu, cloud, seed=1).item() == pytest.approx(value, rel=1e-13, abs=0)
        assert geom.chamfer_distance(mu, cloud).item() == pytest.approx(geom.chamfer_distance(as_cloud, cloud).item())
    geom.sliced_wasserstein(geom.measure(mesh, kind="mesh"), geom.measure(mesh, kind="mesh-discrete"), seed=0)
    with pytest.raises(ValueError, match=r"'varifold' \(family None\) and 'points' \(family 'points'\)"):
        geom.sliced_wasserstein(geom.measure(mesh, kind="varifold"), geom.measure(torch.randn(10, 6)), seed=0)
