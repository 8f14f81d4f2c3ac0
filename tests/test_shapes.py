"""Procedural shapes: closed forms, orientation, determinism, and the bundled sample files."""

import math

import numpy as np
import pytest

from geom_datasets import SAMPLES_DIR, shapes

trimesh = pytest.importorskip("trimesh")


def as_trimesh(mesh):
    v, f = mesh
    return trimesh.Trimesh(vertices=v, faces=f, process=False)


def face_areas(v, f):
    v = v.astype(np.float64)
    return 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)


@pytest.mark.parametrize("name", sorted(shapes.SAMPLES))
def test_samples_are_closed_outward_meshes_of_the_promised_dtypes(name):
    v, f = shapes.SAMPLES[name]()
    assert v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == 3
    assert f.dtype == np.int64 and f.ndim == 2 and f.shape[1] == 3
    assert f.min() == 0 and f.max() == len(v) - 1  # every vertex used, no index out of range
    m = as_trimesh((v, f))
    assert m.is_watertight and m.is_winding_consistent
    assert m.volume > 0  # faces counter-clockwise seen from outside
    assert face_areas(v, f).min() > 0  # no degenerate triangle
    # Euler characteristic: 2 for the sphere-like shapes, 0 for the torus
    edges = np.unique(np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    assert len(v) - len(edges) + len(f) == (0 if name == "torus" else 2)


@pytest.mark.parametrize("radius, subdivisions", [(1.0, 3), (2.5, 1), (0.1, 0), (3.0, 4)])
def test_sphere_vertices_lie_on_the_sphere(radius, subdivisions):
    v, f = shapes.sphere(radius=radius, subdivisions=subdivisions)
    assert len(v) == 10 * 4**subdivisions + 2 and len(f) == 20 * 4**subdivisions
    np.testing.assert_allclose(np.linalg.norm(v.astype(np.float64), axis=1), radius, rtol=1e-6, atol=1e-5)
    # inscribed polyhedron: volume below the ball's, converging to it with subdivisions
    ratio = as_trimesh((v, f)).volume / (4 / 3 * math.pi * radius**3)
    assert ratio < 1 and (subdivisions < 3 or ratio > 0.99)


def test_sphere_edges_shrink_by_half_per_subdivision():
    def max_edge(s):
        v, f = shapes.sphere(subdivisions=s)
        return np.linalg.norm(v[f] - v[np.roll(f, 1, axis=1)], axis=-1).max()

    for s in range(1, 4):
        assert 0.45 < max_edge(s + 1) / max_edge(s) < 0.56


@pytest.mark.parametrize("R, r, n_major, n_minor", [(1.0, 0.35, 48, 24), (2.0, 0.5, 7, 5), (1.0, 0.9, 3, 3)])
def test_torus_vertices_satisfy_the_implicit_equation(R, r, n_major, n_minor):
    v, f = shapes.torus(R=R, r=r, n_major=n_major, n_minor=n_minor)
    assert v.shape == (n_major * n_minor, 3) and f.shape == (2 * n_major * n_minor, 3)
    x, y, z = v.astype(np.float64).T
    np.testing.assert_allclose((np.hypot(x, y) - R) ** 2 + z**2, r**2, atol=1e-6 * R**2)
    m = as_trimesh((v, f))
    assert m.is_watertight and m.volume > 0
    if n_major >= 48:  # the polyhedral torus converges to Pappus' volume 2 pi^2 R r^2
        np.testing.assert_allclose(m.volume, 2 * math.pi**2 * R * r**2, rtol=0.02)


@pytest.mark.parametrize("size, divisions", [(1.5, 8), (1.0, 1), (3.0, 5)])
def test_cube_area_volume_and_bounds(size, divisions):
    v, f = shapes.cube(size=size, divisions=divisions)
    assert len(v) == 6 * divisions**2 + 2 and len(f) == 12 * divisions**2
    np.testing.assert_allclose(face_areas(v, f).sum(), 6 * size**2, rtol=1e-6)
    np.testing.assert_allclose(as_trimesh((v, f)).volume, size**3, rtol=1e-6)
    np.testing.assert_allclose(np.abs(v).max(axis=1), size / 2, rtol=1e-6)  # every vertex on the surface
    np.testing.assert_allclose(face_areas(v, f), (size / divisions) ** 2 / 2, rtol=1e-4)  # all faces small, equal


def test_ellipsoid_vertices_satisfy_the_implicit_equation():
    axes = (1.3, 1.0, 0.7)
    v, f = shapes.ellipsoid(axes=axes)
    np.testing.assert_allclose(((v.astype(np.float64) / np.array(axes)) ** 2).sum(1), 1.0, atol=1e-6)
    assert (np.abs(v).max(axis=0) <= np.array(axes, dtype=np.float32)).all()
    ratio = as_trimesh((v, f)).volume / (4 / 3 * math.pi * np.prod(axes))
    assert 0.99 < ratio < 1
    np.testing.assert_array_equal(f, shapes.sphere()[1])  # same connectivity as the sphere it stretches


def test_noisy_sphere_moves_vertices_along_normals_by_seeded_noise():
    sigma = 0.03
    clean, f0 = shapes.sphere()
    v, f = shapes.noisy_sphere(sigma=sigma, seed=0)
    np.testing.assert_array_equal(f, f0)
    norms = np.linalg.norm(v.astype(np.float64), axis=1)
    # direction unchanged: the displacement is along the sphere's normal
    np.testing.assert_allclose(v / norms[:, None], clean, atol=1e-6)
    # radial offsets are exactly sigma * N(0, 1) draws of numpy's generator with that seed
    z = np.random.default_rng(0).standard_normal(len(v))
    np.testing.assert_allclose(norms - 1.0, sigma * z, atol=1e-6)
    assert abs((norms - 1).std() - sigma) < 0.15 * sigma  # 642 draws: std within 15 %


def test_noisy_sphere_is_deterministic_under_a_seed():
    a, b, c = (shapes.noisy_sphere(seed=s)[0] for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_every_factory_is_deterministic():
    for name, factory in shapes.SAMPLES.items():
        (v1, f1), (v2, f2) = factory(), factory()
        np.testing.assert_array_equal(v1, v2, err_msg=name)
        np.testing.assert_array_equal(f1, f2, err_msg=name)


@pytest.mark.parametrize(
    "call, error, needle",
    [
        (lambda: shapes.sphere(radius=0), ValueError, "radius"),
        (lambda: shapes.sphere(radius=float("nan")), ValueError, "radius"),
        (lambda: shapes.sphere(subdivisions=-1), ValueError, "subdivisions"),
        (lambda: shapes.sphere(subdivisions=1.5), TypeError, "subdivisions"),
        (lambda: shapes.torus(R=1, r=1), ValueError, "r:"),
        (lambda: shapes.torus(n_major=2), ValueError, "n_major"),
        (lambda: shapes.cube(size=-1), ValueError, "size"),
        (lambda: shapes.cube(divisions=0), ValueError, "divisions"),
        (lambda: shapes.ellipsoid(axes=(1, 1)), ValueError, "axes"),
        (lambda: shapes.ellipsoid(axes=(1, 0, 1)), ValueError, "axes[1]"),
        (lambda: shapes.noisy_sphere(seed="a"), TypeError, "seed"),
        (lambda: shapes.noisy_sphere(sigma=0), ValueError, "sigma"),
    ],
)
def test_bad_parameters_name_the_argument(call, error, needle):
    with pytest.raises(error, match=needle.replace("[", r"\[").replace("]", r"\]")):
        call()


def test_committed_samples_equal_the_generator():
    """The files under datasets/samples cannot drift from shapes.py."""
    assert sorted(p.stem for p in SAMPLES_DIR.glob("*.ply")) == sorted(shapes.SAMPLES)
    for name, factory in shapes.SAMPLES.items():
        path = SAMPLES_DIR / f"{name}.ply"
        assert path.stat().st_size < 100_000, path
        v, f = factory()
        loaded = trimesh.load(path, process=False)
        np.testing.assert_array_equal(np.asarray(loaded.vertices, dtype=np.float32), v, err_msg=name)
        np.testing.assert_array_equal(np.asarray(loaded.faces), f, err_msg=name)
        assert path.read_bytes() == shapes.mesh_bytes(v, f), name


def test_write_samples_writes_every_shape_and_is_idempotent(tmp_path):
    paths = shapes.write_samples(tmp_path / "new")
    assert sorted(paths) == sorted(shapes.SAMPLES)
    for name, path in paths.items():
        loaded = trimesh.load(path, process=False)
        np.testing.assert_array_equal(np.asarray(loaded.vertices, dtype=np.float32), shapes.SAMPLES[name]()[0])
    stamps = {n: p.stat().st_mtime_ns for n, p in paths.items()}
    shapes.write_samples(tmp_path / "new")  # identical files: nothing rewritten, no error
    assert {n: p.stat().st_mtime_ns for n, p in paths.items()} == stamps


def test_write_samples_refuses_to_overwrite_a_different_file(tmp_path):
    mine = tmp_path / "torus.ply"
    mine.write_bytes(b"my own torus")
    with pytest.raises(FileExistsError, match="torus.ply"):
        shapes.write_samples(tmp_path)
    assert mine.read_bytes() == b"my own torus"
    assert not (tmp_path / "sphere.ply").exists()  # a refusal writes nothing at all
    shapes.write_samples(tmp_path, overwrite=True)
    assert mine.read_bytes() == shapes.mesh_bytes(*shapes.torus())
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_module_entry_point_writes_the_samples(tmp_path, capsys):
    assert shapes._main([str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.ply")) == sorted(shapes.SAMPLES)
    (tmp_path / "cube.ply").write_bytes(b"x")
    with pytest.raises(SystemExit) as exc:
        shapes._main([str(tmp_path)])
    assert exc.value.code == 2 and "cube.ply" in capsys.readouterr().err
