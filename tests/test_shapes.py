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


# ----------------------------------------------------------------- capsule, torus knot, noisy, partial scans, bend


def closed_oriented(v, f):
    """Every edge in exactly two faces, used once in each direction (consistent orientation)."""
    directed = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    undirected, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    opposite = np.unique(directed, axis=0)
    return bool((counts == 2).all() and len(opposite) == len(directed)), len(undirected)


def segment_distance(x, h):
    """Distance from points to the segment [(0, 0, -h), (0, 0, h)]."""
    z = np.clip(x[:, 2], -h, h)
    return np.linalg.norm(x - np.stack([0 * z, 0 * z, z], 1), axis=1)


@pytest.mark.parametrize(
    "radius, length, n_around, n_cap, n_length", [(0.5, 1.0, 32, 8, 8), (0.3, 2.0, 5, 1, 1), (1.0, 0.2, 12, 3, 2)]
)
def test_capsule_lies_on_its_surface_closed_and_outward(radius, length, n_around, n_cap, n_length):
    v, f = shapes.capsule(radius, length, n_around, n_cap, n_length)
    v64 = v.astype(np.float64)
    np.testing.assert_allclose(segment_distance(v64, length / 2), radius, rtol=1e-6)
    closed, n_edges = closed_oriented(v, f)
    assert closed and len(v) - n_edges + len(f) == 2 and face_areas(v, f).min() > 0
    volume = as_trimesh((v, f)).volume
    exact = math.pi * radius**2 * length + 4 / 3 * math.pi * radius**3
    assert 0 < volume < exact  # inscribed polyhedron, outward faces
    if n_around >= 32:
        assert volume > 0.98 * exact


def test_torus_knot_tube_has_its_radius_around_the_centre_curve():
    from scipy.spatial import cKDTree

    p, q, R, r, tube = 2, 3, 1.0, 0.4, 0.12
    v, f = shapes.torus_knot(p, q, R, r, tube, n_along=256, n_around=16)
    t = np.linspace(0, 2 * np.pi, 400_000, endpoint=False)
    curve = shapes.torus_knot_curve(t, p, q, R, r)  # (T, 3)
    dist, _ = cKDTree(curve).query(v.astype(np.float64))
    np.testing.assert_allclose(dist, tube, atol=2e-5)  # curve spacing ~1e-5
    closed, n_edges = closed_oriented(v, f)
    assert closed and len(v) - n_edges + len(f) == 0  # a torus topologically
    length = np.linalg.norm(np.diff(curve, axis=0, append=curve[:1]), axis=1).sum()
    volume = as_trimesh((v, f)).volume  # Pappus along the curve: pi tube^2 * length
    assert 0.97 < volume / (math.pi * tube**2 * length) < 1.0
    # the tube never meets itself: no vertex comes closer than tube to any part of the curve
    assert dist.min() > 0.999 * tube


def test_torus_knot_other_knots_and_the_frame_closes_up():
    v, f = shapes.torus_knot(3, 4, n_along=300, n_around=10)
    closed, _ = closed_oriented(v, f)
    assert closed and as_trimesh((v, f)).volume > 0
    # the closing seam is as regular as any other: ring 0 and ring K-1 differ like any two neighbours
    rings = v.reshape(300, 10, 3).astype(np.float64)
    steps = np.linalg.norm(np.diff(rings, axis=0, append=rings[:1]), axis=-1).max(1)  # (K,)
    assert steps[-1] < 1.5 * np.median(steps)


def test_noisy_moves_vertices_along_normals_by_seeded_draws():
    v0, f0 = shapes.torus()
    sigma = 0.02
    v, f = shapes.noisy((v0, f0), sigma, seed=3)
    np.testing.assert_array_equal(f, f0)
    n = shapes.vertex_normals(v0, f0)
    d = v.astype(np.float64) - v0
    np.testing.assert_allclose(np.cross(d, n), 0, atol=1e-6)  # along the normal
    z = np.random.default_rng(3).standard_normal(len(v0))
    np.testing.assert_allclose((d * n).sum(1), sigma * z, atol=1e-6)
    iso, _ = shapes.noisy((v0, f0), sigma, seed=3, along_normals=False)
    dz = (iso.astype(np.float64) - v0).ravel()
    assert abs(dz.std() - sigma) < 5 * sigma / math.sqrt(2 * len(dz))
    np.testing.assert_array_equal(shapes.noisy((v0, f0), sigma, 3)[0], v)
    assert np.abs(shapes.noisy((v0, f0), sigma, 4)[0] - v).max() > 1e-3


def test_vertex_normals_of_a_sphere_point_outward():
    v, f = shapes.sphere()
    n = shapes.vertex_normals(v, f)
    assert ((n * v).sum(1) / np.linalg.norm(v, axis=1) > 0.999).all()


def test_partial_view_of_a_convex_shape_keeps_exactly_the_front_faces():
    v, f = shapes.sphere(subdivisions=2)
    d = np.array([0.3, -0.5, 0.8])
    pv, pf, used = shapes.partial_scan((v, f), d, return_index=True)
    v64 = v.astype(np.float64)
    n = np.cross(v64[f[:, 1]] - v64[f[:, 0]], v64[f[:, 2]] - v64[f[:, 0]])
    front = n @ d > 1e-6 * np.linalg.norm(n, axis=1) * np.linalg.norm(d)
    np.testing.assert_array_equal(pv, v[used])
    # the kept faces are exactly the front faces, same vertex order (orientation kept)
    assert len(pf) == front.sum() and {tuple(t) for t in used[pf]} == {tuple(t) for t in f[front]}
    assert not as_trimesh((pv, pf)).is_watertight


def test_partial_view_hides_occluded_faces():
    lower, fl = shapes.sphere(1.0, 2)
    upper, fu = shapes.sphere(1.5, 2)
    v = np.concatenate([lower, upper + np.float32([0, 0, 4])])
    f = np.concatenate([fl, fu + len(lower)])
    pv, pf, used = shapes.partial_scan((v, f), [0, 0, 1], return_index=True)
    assert used.min() >= len(lower)  # the lower sphere lies in the upper one's shadow
    kept = {tuple(t) for t in used[pf]}
    front = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])[:, 2] > 0
    assert kept == {tuple(t) for t in f[front & (np.arange(len(f)) >= len(fl))]}
    # seen from below, the lower sphere hides the middle of the upper one, not its rim
    _, pf, used = shapes.partial_scan((v, f), [0, 0, -1], return_index=True)
    upper_kept = used[pf][(used[pf] >= len(lower)).all(1)]  # (k, 3) faces of the upper sphere
    rim = np.linalg.norm(v[upper_kept].mean(1)[:, :2], axis=1)
    assert len(upper_kept) > 0 and rim.min() > 0.9
    below = np.cross(lower[fl[:, 1]] - lower[fl[:, 0]], lower[fl[:, 2]] - lower[fl[:, 0]])[:, 2] < 0
    assert (used[pf] < len(lower)).all(1).sum() == below.sum()  # the lower sphere's whole bottom


def test_partial_cut_keeps_the_lowest_fraction_and_is_seeded():
    v, f = shapes.torus()
    pv, pf, used = shapes.partial_scan((v, f), mode="cut", fraction=0.3, seed=5, return_index=True)
    assert len(pf) == math.ceil(0.3 * len(f))
    a, b, _ = shapes.partial_scan((v, f), mode="cut", fraction=0.3, seed=5, return_index=True)
    np.testing.assert_array_equal(a, pv)
    other = shapes.partial_scan((v, f), mode="cut", fraction=0.3, seed=6, return_index=True)[2]
    assert set(other.tolist()) != set(used.tolist())
    # the cut is a plane: every kept centroid is lower than every dropped one along some direction
    d = np.random.default_rng(5).standard_normal(3)
    d /= np.linalg.norm(d)
    h = v.astype(np.float64)[f].mean(1) @ d
    key = lambda t: (t[:, 0] * len(v) + t[:, 1]) * len(v) + t[:, 2]  # noqa: E731
    kept = np.isin(key(f), key(used[pf]))
    assert kept.sum() == len(pf)
    assert h[kept].max() <= h[~kept].min()


def test_bend_keeps_faces_and_moves_vertices_smoothly_without_flips():
    for v, f in (shapes.sphere(), shapes.torus(), shapes.torus_knot(n_along=128, n_around=12)):
        strength = 0.5
        bv, bf, field = shapes.bend((v, f), strength, seed=1, return_field=True)
        np.testing.assert_array_equal(bf, f)
        assert bv.shape == v.shape and bv.dtype == np.float32
        v64 = v.astype(np.float64)
        u = field(v64)
        np.testing.assert_allclose(bv, v64 + u, atol=1e-6)
        s = 0.5 * np.linalg.norm(v64.max(0) - v64.min(0))
        assert np.linalg.norm(u, axis=1).max() > 0.1 * strength * s  # really moves
        # neighbours move alike: |u_i - u_j| <= strength |x_i - x_j| on every edge
        e = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        du = np.linalg.norm(u[e[:, 0]] - u[e[:, 1]], axis=1)
        dx = np.linalg.norm(v64[e[:, 0]] - v64[e[:, 1]], axis=1)
        assert (du <= strength * dx + 1e-12).all()
        assert (du / dx).max() > 0.05 * strength  # ... and not trivially
        n0 = np.cross(v64[f[:, 1]] - v64[f[:, 0]], v64[f[:, 2]] - v64[f[:, 0]])
        b64 = bv.astype(np.float64)
        n1 = np.cross(b64[f[:, 1]] - b64[f[:, 0]], b64[f[:, 2]] - b64[f[:, 0]])
        assert ((n0 * n1).sum(1) > 0).all()  # no face turned over
        assert as_trimesh((bv, bf)).volume > 0


def test_bend_correspondence_is_exact_under_any_vertex_order():
    """Vertex i goes to vertex i: relabelling the vertices relabels the result the same way."""
    v, f = shapes.torus(n_major=24, n_minor=12)
    perm = np.random.default_rng(0).permutation(len(v))
    inverse = np.argsort(perm)
    bv, _ = shapes.bend((v, f), 0.6, seed=2)
    pv, pf = shapes.bend((v[perm], inverse[f]), 0.6, seed=2)
    np.testing.assert_array_equal(pv, bv[perm])
    np.testing.assert_array_equal(pf, inverse[f])


def test_bend_is_seeded_and_zero_strength_is_the_identity():
    v, f = shapes.capsule()
    a, b, c = (shapes.bend((v, f), 0.4, seed=s)[0] for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-2
    np.testing.assert_array_equal(shapes.bend((v, f), 0.0)[0], v)


@pytest.mark.parametrize(
    "call, error, needle",
    [
        (lambda: shapes.capsule(radius=0), ValueError, "radius"),
        (lambda: shapes.capsule(length=-1), ValueError, "length"),
        (lambda: shapes.capsule(n_around=2), ValueError, "n_around"),
        (lambda: shapes.torus_knot(2, 4), ValueError, "coprime"),
        (lambda: shapes.torus_knot(0, 3), ValueError, "p:"),
        (lambda: shapes.torus_knot(tube=0.5), ValueError, "tube"),
        (lambda: shapes.noisy(shapes.sphere(), sigma=-1), ValueError, "sigma"),
        (lambda: shapes.noisy((np.zeros((3, 2)), [[0, 1, 2]]), 0.1), ValueError, "mesh"),
        (lambda: shapes.noisy(shapes.sphere(), 0.1, seed=-1), TypeError, "seed"),
        (lambda: shapes.partial_scan(shapes.sphere(), [0, 0, 0]), ValueError, "direction"),
        (lambda: shapes.partial_scan(shapes.sphere(), mode="slice"), ValueError, "mode"),
        (lambda: shapes.partial_scan(shapes.sphere(), mode="cut", fraction=1.5), ValueError, "fraction"),
        (lambda: shapes.bend(shapes.sphere(), 1.0), ValueError, "strength"),
        (lambda: shapes.bend(shapes.sphere(), "a"), TypeError, "strength"),
        (lambda: shapes.bend(shapes.sphere(), 0.3, n_centers=0), ValueError, "n_centers"),
        (lambda: shapes.bend((np.zeros((3, 3)), [[0, 1, 5]]), 0.3), ValueError, "mesh"),
    ],
)
def test_new_generators_name_the_bad_argument(call, error, needle):
    with pytest.raises(error, match=needle):
        call()
