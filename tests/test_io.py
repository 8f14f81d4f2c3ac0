"""geom.io: files in their real formats, trimesh / open3d objects, the surface sampler, bad input."""

import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh

import geom
from geom.io import read_mesh, read_points, sample_surface

SHARED_MESHES = [
    "TinyTorus.obj", "arm.obj", "bunny_small.off", "cube_with_fold.ply",
    "decimated-knight.obj", "hemisphere.obj", "truck.obj",
]


# ----------------------------------------------------------------------------------------- writers
def unit_cube() -> trimesh.Trimesh:
    """The cube [0, 1]^3, 8 vertices, 12 triangles."""
    box = trimesh.creation.box(extents=(1, 1, 1))
    return trimesh.Trimesh(box.vertices + 0.5, box.faces, process=False)


def fmt(row) -> str:
    return " ".join(f"{x:.9g}" for x in row)  # 9 significant digits round-trip float32


def write_ply_ascii(path, vertices, faces=None):
    lines = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}",
             "property float x", "property float y", "property float z"]
    if faces is not None:
        lines += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    lines += ["end_header"] + [fmt(v) for v in vertices]
    lines += [] if faces is None else [f"3 {a} {b} {c}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_off(path, vertices, faces):
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"] + [fmt(v) for v in vertices]
    path.write_text("\n".join(lines + [f"3 {a} {b} {c}" for a, b, c in faces]) + "\n")
    return path


def write_obj(path, vertices, faces):
    lines = [f"v {fmt(v)}" for v in vertices] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_pcd_ascii(path, points):
    header = ["# .PCD v0.7", "VERSION 0.7", "FIELDS x y z", "SIZE 4 4 4", "TYPE F F F", "COUNT 1 1 1",
              f"WIDTH {len(points)}", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", f"POINTS {len(points)}", "DATA ascii"]
    path.write_text("\n".join(header + [fmt(p) for p in points]) + "\n")
    return path


def write_ply_binary(path, vertices, faces=None, order="<"):
    """Binary PLY (float32 vertices, faces as uchar counts and int indices), written byte by byte."""
    lines = ["ply", f"format binary_{'little' if order == '<' else 'big'}_endian 1.0",
             f"element vertex {len(vertices)}", "property float x", "property float y", "property float z"]
    body = np.asarray(vertices, order + "f4").tobytes()
    if faces is not None:
        lines += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        records = np.zeros(len(faces), [("n", "u1"), ("i", order + "i4", (3,))])
        records["n"], records["i"] = 3, faces
        body += records.tobytes()
    path.write_bytes(("\n".join(lines + ["end_header"]) + "\n").encode() + body)
    return path


PCD_FIELDS = ["VERSION 0.7", "FIELDS intensity x y z normal", "SIZE 2 4 4 4 8", "TYPE U F F F F", "COUNT 1 1 1 1 3"]


def pcd_header(n, data):
    return ("\n".join(PCD_FIELDS + [f"WIDTH {n}", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", f"POINTS {n}",
                                    f"DATA {data}"]) + "\n").encode()


def write_pcd_binary(path, points):
    """Binary PCD with extra fields around x y z: intensity (u16) first, normals (count 3) after."""
    n = len(points)
    dtype = np.dtype([("i", "<u2"), ("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("n", "<f8", (3,))])
    rec = np.zeros(n, dtype)
    rec["i"], rec["x"], rec["y"], rec["z"] = np.arange(n), points[:, 0], points[:, 1], points[:, 2]
    rec["n"] = 7.0
    path.write_bytes(pcd_header(n, "binary") + rec.tobytes())
    return path


def write_pcd_compressed(path, points):
    """binary_compressed PCD of the fields of write_pcd_binary: field after field, LZF-packed."""
    n = len(points)
    columns = [np.arange(n, dtype="<u2"), *(points[:, k].astype("<f4") for k in range(3)), np.full((n, 3), 7.0, "<f8")]
    raw = b"".join(c.tobytes() for c in columns)
    packed = lzf_compress(raw)
    path.write_bytes(pcd_header(n, "binary_compressed") + struct.pack("<II", len(packed), len(raw)) + packed)
    return path


def lzf_compress(data: bytes) -> bytes:
    """A greedy LZF encoder (liblzf's format: literal runs of 1 to 32 bytes, back references of 3 to
    264 bytes up to 8 KiB back), written from the format so that the reader is checked against it."""
    out, literal, last, i = bytearray(), bytearray(), {}, 0

    def flush():
        for k in range(0, len(literal), 32):
            out.append(len(literal[k:k + 32]) - 1)
            out.extend(literal[k:k + 32])
        literal.clear()

    while i < len(data):
        key, j = data[i:i + 3], last.get(data[i:i + 3])
        last[key] = i
        if len(key) == 3 and j is not None and i - j <= 8192:
            n = 3
            while i + n < len(data) and n < 264 and data[j + n] == data[i + n]:
                n += 1
            flush()
            back, code = i - j - 1, n - 2
            head = [(code << 5) | (back >> 8)] if code < 7 else [(7 << 5) | (back >> 8), code - 7]
            out.extend(head + [back & 255])
            i += n
        else:
            literal.append(data[i])
            i += 1
    flush()
    return bytes(out)


@pytest.fixture
def cloud():
    return np.random.default_rng(3).normal(size=(37, 3)).astype(np.float32)


# ------------------------------------------------------------------------------------ point formats
def test_point_formats_round_trip(tmp_path, cloud):
    extra = np.random.default_rng(4).random((len(cloud), 4))  # normals and a colour: ignored
    xyz = ["# x y z nx ny nz c"] + [f"{fmt(p)} {fmt(e)}" for p, e in zip(cloud, extra)]
    (tmp_path / "c.xyz").write_text("\n".join(xyz) + "\n")
    np.save(tmp_path / "c.npy", cloud)
    np.savez(tmp_path / "named.npz", other=np.zeros((2, 3)), points=cloud)
    np.savez(tmp_path / "single.npz", anything=cloud)
    np.savez_compressed(tmp_path / "deflated.npz", points=cloud)
    np.save(tmp_path / "big_endian.npy", cloud.astype(">f4"))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(cloud))
    files = [write_ply_ascii(tmp_path / "c.ply", cloud), write_pcd_ascii(tmp_path / "c.pcd", cloud),
             write_pcd_binary(tmp_path / "b.pcd", cloud), write_pcd_compressed(tmp_path / "z.pcd", cloud),
             write_ply_binary(tmp_path / "le.ply", cloud), write_ply_binary(tmp_path / "be.ply", cloud, order=">"),
             write_ply_binary(tmp_path / "no_faces.ply", cloud, np.zeros((0, 3))),
             write_ply_ascii(tmp_path / "no_faces_ascii.ply", cloud, np.zeros((0, 3))),
             tmp_path / "c.xyz", tmp_path / "c.npy", tmp_path / "named.npz", tmp_path / "single.npz",
             tmp_path / "deflated.npz", tmp_path / "big_endian.npy", tmp_path / "fortran.npy", str(tmp_path / "c.npy")]
    tmp_path.joinpath("upper.PLY").write_bytes((tmp_path / "c.ply").read_bytes())
    utf8 = (tmp_path / "le.ply").read_bytes().replace(b"ply\n", "ply\ncomment by Jürgen\n".encode(), 1)
    tmp_path.joinpath("utf8.ply").write_bytes(utf8)  # header comments need not be ASCII
    for path in files + [tmp_path / "upper.PLY", tmp_path / "utf8.ply"]:
        got = read_points(path, n_samples=5)  # point clouds keep every point
        assert got.dtype == np.float32 and got.shape == cloud.shape, path
        np.testing.assert_array_equal(got, cloud, err_msg=str(path))


def test_pcd_bodies_without_open3d(tmp_path, cloud, monkeypatch):
    """ascii, binary and binary_compressed (LZF) bodies, with fields before and after x y z."""
    monkeypatch.setitem(sys.modules, "open3d", None)  # `import open3d` now raises ImportError
    big = np.random.default_rng(5).normal(size=(3000, 3)).astype(np.float32)  # back references span the 8 KiB window
    for points in (cloud, big):
        for write in (write_pcd_ascii, write_pcd_binary, write_pcd_compressed):
            np.testing.assert_array_equal(read_points(write(tmp_path / f"{write.__name__}.pcd", points)), points)
    packed = (tmp_path / "write_pcd_compressed.pcd").read_bytes()
    assert len(packed) < 0.6 * len(write_pcd_binary(tmp_path / "b.pcd", big).read_bytes())  # it did compress
    (tmp_path / "t.pcd").write_text((tmp_path / "write_pcd_ascii.pcd").read_text().rsplit("\n", 3)[0] + "\n")
    with pytest.raises(ValueError, match=r"t\.pcd.*declares 3000 points"):
        read_points(tmp_path / "t.pcd")


def test_pcd_written_by_open3d(tmp_path, cloud):
    o3d = pytest.importorskip("open3d")
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.astype(np.float64)))
    pc.normals = o3d.utility.Vector3dVector(np.random.default_rng(1).random((len(cloud), 3)))
    for name, options in (("a.pcd", {"write_ascii": True}), ("b.pcd", {}), ("c.pcd", {"compressed": True})):
        assert o3d.io.write_point_cloud(str(tmp_path / name), pc, **options)
        np.testing.assert_allclose(read_points(tmp_path / name), cloud, rtol=1e-6, atol=1e-6, err_msg=name)
    assert b"DATA binary_compressed" in (tmp_path / "c.pcd").read_bytes()


# ------------------------------------------------------------------------------------- mesh formats
@pytest.fixture
def cube_files(tmp_path):
    cube = unit_cube()
    v, f = np.asarray(cube.vertices), np.asarray(cube.faces)
    cube.export(tmp_path / "bin.ply")  # binary PLY
    cube.export(tmp_path / "cube.stl")  # binary STL
    cube.export(tmp_path / "ascii.stl", file_type="stl_ascii")
    assert (tmp_path / "bin.ply").read_bytes().startswith(b"ply\nformat binary")
    return [write_ply_ascii(tmp_path / "cube.ply", v, f), write_obj(tmp_path / "cube.obj", v, f),
            write_off(tmp_path / "cube.off", v, f), tmp_path / "bin.ply", tmp_path / "cube.stl",
            tmp_path / "ascii.stl", write_ply_binary(tmp_path / "be.ply", v, f, order=">")]


def test_mesh_files_sample_on_the_cube_surface(cube_files):
    for path in cube_files:
        for n in (1, 777):
            pts = read_points(path, n_samples=n, seed=5)
            assert pts.shape == (n, 3) and pts.dtype == np.float32, path
            assert ((pts >= -1e-6) & (pts <= 1 + 1e-6)).all(), path
            on_face = (np.abs(pts) < 1e-6) | (np.abs(pts - 1) < 1e-6)  # (n, 3)
            assert on_face.any(axis=1).all(), path
        # all six faces of the cube are reached
        pts = read_points(path, n_samples=600, seed=0)
        for axis in range(3):
            assert (np.abs(pts[:, axis]) < 1e-6).sum() > 30 and (np.abs(pts[:, axis] - 1) < 1e-6).sum() > 30


def test_seeds(cube_files):
    path = cube_files[0]
    a = read_points(path, n_samples=300, seed=11)
    np.random.seed(0)  # the global numpy state plays no part
    np.testing.assert_array_equal(read_points(path, n_samples=300, seed=11), a)
    np.random.seed(1)
    np.testing.assert_array_equal(read_points(path, n_samples=300, seed=11), a)
    assert not np.allclose(read_points(path, n_samples=300, seed=12), a)
    for other in cube_files[1:3]:  # same vertices and faces in another format: same samples
        np.testing.assert_array_equal(read_points(other, n_samples=300, seed=11), a)


def test_icosphere_samples_between_inner_radius_and_one(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    sphere.export(tmp_path / "s.ply")
    tri = sphere.vertices[sphere.faces]  # (F, 3, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    r_min = np.min(np.abs((normals * tri[:, 0]).sum(1)) / np.linalg.norm(normals, axis=1))
    assert 0.95 < r_min < 1
    norms = np.linalg.norm(read_points(tmp_path / "s.ply", n_samples=3000), axis=1)
    assert norms.min() >= r_min - 1e-6 and norms.max() <= 1 + 1e-6
    assert norms.min() < 1 - (1 - r_min) / 2  # samples come from inside faces, not only vertices


def test_read_mesh(tmp_path, cube_files):
    cube = unit_cube()
    for path in cube_files[:3]:  # ASCII PLY, OBJ, OFF keep the vertex order
        v, f = read_mesh(path)
        assert v.dtype == np.float32 and f.dtype == np.int64
        np.testing.assert_array_equal(v, cube.vertices)
        np.testing.assert_array_equal(f, cube.faces)
    v, f = read_mesh(cube)
    np.testing.assert_array_equal(f, cube.faces)
    write_ply_ascii(tmp_path / "p.ply", cube.vertices)
    for obj in (tmp_path / "p.ply", trimesh.PointCloud(cube.vertices)):
        with pytest.raises(ValueError, match="has no faces"):
            read_mesh(obj)


def test_polygons_become_fans(tmp_path):
    """A quad and a triangle in every format with polygons: fans around each polygon's first vertex."""
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], np.float32)
    polygons, fans = [[0, 1, 2, 3], [1, 4, 2]], [[0, 1, 2], [0, 2, 3], [1, 4, 2]]
    rows = [" ".join(map(str, [len(p)] + p)) for p in polygons]
    head = ["ply", "format ascii 1.0", "element vertex 5", "property float x", "property float y", "property float z",
            "element face 2", "property list uchar int vertex_indices", "end_header"]
    (tmp_path / "a.ply").write_text("\n".join(head + [fmt(p) for p in v] + rows) + "\n")
    binary = b"".join(bytes([len(p)]) + np.asarray(p, "<i4").tobytes() for p in polygons)
    (tmp_path / "b.ply").write_bytes(("\n".join(head).replace("ascii", "binary_little_endian") + "\n").encode()
                                     + v.astype("<f4").tobytes() + binary)
    (tmp_path / "c.off").write_text("\n".join(["OFF", "5 2 0"] + [fmt(p) for p in v] + rows) + "\n")
    (tmp_path / "d.obj").write_text("\n".join([f"v {fmt(p)}" for p in v] + ["f 1 2 3 4", "f -4 -1 -3"]) + "\n")
    for name in ("a.ply", "b.ply", "c.off", "d.obj"):
        got_v, got_f = read_mesh(tmp_path / name)
        np.testing.assert_array_equal(got_v, v, err_msg=name)
        np.testing.assert_array_equal(got_f, fans, err_msg=name)


# -------------------------------------------------------------------------------------- the sampler
def test_area_uniform_between_faces():
    # triangle areas 1 and 3, far apart along x
    v = [[0, 0, 0], [1, 0, 0], [0, 2, 0], [10, 0, 0], [13, 0, 0], [10, 2, 0]]
    n = 20000
    pts = sample_surface(v, [[0, 1, 2], [3, 4, 5]], n, seed=2)
    frac = (pts[:, 0] > 5).mean()
    assert abs(frac - 0.75) < 5 * np.sqrt(0.75 * 0.25 / n)


def test_uniform_inside_a_face():
    # the midpoints cut the triangle into 4 triangles of equal area: each gets a quarter
    a, b, c = np.array([0.0, 0.0]), np.array([4.0, 0.0]), np.array([1.0, 3.0])
    n = 20000
    pts = sample_surface([a, b, c], [[0, 1, 2]], n, seed=3).astype(np.float64)
    bary = np.linalg.solve(np.stack([b - a, c - a], 1), (pts - a).T).T  # (n, 2) weights of b, c
    wb, wc = bary[:, 0], bary[:, 1]
    wa = 1 - wb - wc
    assert (np.stack([wa, wb, wc]) > -1e-6).all()
    tol = 5 * np.sqrt(0.25 * 0.75 / n)
    for w in (wa, wb, wc):  # corner sub-triangles
        assert abs((w > 0.5).mean() - 0.25) < tol
    np.testing.assert_allclose(pts.mean(0), (a + b + c) / 3, atol=0.03)


def test_zero_area_faces_never_sampled():
    v = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [9, 9, 9], [10, 9, 9], [11, 9, 9]]
    degenerate = [[3, 3, 4], [3, 4, 5], [5, 4, 3]]  # repeated vertex, collinear
    for faces in (degenerate + [[0, 1, 2]], [[0, 1, 2]] + degenerate):
        pts = sample_surface(v, faces, 5000, seed=0)
        assert (pts[:, 2] == 0).all() and (pts[:, :2] <= 1 + 1e-6).all()
    with pytest.raises(ValueError, match="zero area"):
        sample_surface(v, degenerate, 10)


def test_sampler_bad_input():
    v, f = [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]
    with pytest.raises(ValueError, match=r"faces: expected indices in \[0, 3\)"):
        sample_surface(v, [[0, 1, 3]], 5)
    with pytest.raises(ValueError, match="faces: expected a non-empty integer array"):
        sample_surface(v, [[0.0, 1.0, 2.0]], 5)
    with pytest.raises(ValueError, match="vertices: expected finite"):
        sample_surface([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]], f, 5)
    for bad, exc in ((0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), ("9", TypeError)):
        with pytest.raises(exc, match="n_samples"):
            sample_surface(v, f, bad)
        with pytest.raises(exc, match="n_samples"):
            read_points(trimesh.Trimesh(v, f), n_samples=bad)
    with pytest.raises(ValueError, match="seed"):
        read_points(trimesh.Trimesh(v, f), seed=-1)


# ----------------------------------------------------------------------------- scenes and objects
OBJ_TWO_PARTS = """mtllib two.mtl
o left
usemtl red
v 0 0 0
v 1 0 0
v 0 2 0
f 1 2 3
o right
usemtl blue
v 10 0 0
v 13 0 0
v 10 2 0
f 4 5 6
"""


def test_obj_scene_is_merged(tmp_path):
    (tmp_path / "two.mtl").write_text("newmtl red\nKd 1 0 0\nnewmtl blue\nKd 0 0 1\n")
    (tmp_path / "two.obj").write_text(OBJ_TWO_PARTS)
    assert isinstance(trimesh.load(tmp_path / "two.obj", force=None, process=False), trimesh.Scene)
    n = 8000
    pts = read_points(tmp_path / "two.obj", n_samples=n, seed=4)
    assert pts.shape == (n, 3) and (pts[:, 2] == 0).all()
    assert abs((pts[:, 0] > 5).mean() - 0.75) < 5 * np.sqrt(0.75 * 0.25 / n)
    v, f = read_mesh(tmp_path / "two.obj")
    assert v.shape == (6, 3) and f.shape == (2, 3)
    np.testing.assert_array_equal(np.sort(v[f].reshape(-1, 3), axis=0), np.sort(v, axis=0))


def test_scene_object_applies_transforms():
    scene = trimesh.Scene()
    scene.add_geometry(unit_cube(), geom_name="a")
    shift = np.eye(4)
    shift[:3, 3] = [100, 0, 0]
    scene.add_geometry(unit_cube(), geom_name="b", transform=shift)
    v, f = read_mesh(scene)
    assert v.shape == (16, 3) and f.shape == (24, 3) and f.max() == 15
    pts = read_points(scene, n_samples=2000, seed=0)
    far = pts[:, 0] > 50
    assert 0.4 < far.mean() < 0.6
    assert (pts[far, 0] >= 100 - 1e-5).all() and (pts[~far, 0] <= 1 + 1e-6).all()
    with pytest.raises(ValueError, match="obj: could not read Scene.*no mesh or point cloud"):
        read_points(trimesh.Scene())


def test_trimesh_objects(cloud):
    cube = unit_cube()
    pts = read_points(cube, n_samples=123, seed=1)
    assert pts.shape == (123, 3)
    np.testing.assert_array_equal(pts, sample_surface(cube.vertices, cube.faces, 123, seed=1))
    np.testing.assert_array_equal(read_points(trimesh.PointCloud(cloud)), cloud)


def test_open3d_objects(cloud):
    o3d = pytest.importorskip("open3d")
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.astype(np.float64)))
    np.testing.assert_array_equal(read_points(pc), cloud)
    box = o3d.geometry.TriangleMesh.create_box()  # the unit cube
    pts = read_points(box, n_samples=400, seed=2)
    assert pts.shape == (400, 3)
    assert ((np.abs(pts) < 1e-6) | (np.abs(pts - 1) < 1e-6)).any(axis=1).all()
    v, f = read_mesh(box)
    np.testing.assert_array_equal(v, np.asarray(box.vertices, dtype=np.float32))
    np.testing.assert_array_equal(f, np.asarray(box.triangles))
    with pytest.raises(TypeError, match="obj: expected .*got LineSet"):
        read_points(o3d.geometry.LineSet())
    with pytest.raises(ValueError, match="has no faces"):
        read_mesh(pc)


def test_reading_files_does_not_import_open3d(tmp_path, cloud):
    """One reader per format whatever is installed: .pcd files never go through open3d."""
    files = [write_ply_ascii(tmp_path / "c.ply", cloud), write_pcd_binary(tmp_path / "c.pcd", cloud),
             write_pcd_ascii(tmp_path / "a.pcd", cloud), tmp_path / "c.npy"]
    np.save(tmp_path / "c.npy", cloud)
    code = (f"import sys, geom; [geom.io.read_points(p) for p in {list(map(str, files))!r}]; "
            "print('open3d' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------- bad input
def test_unsupported_objects():
    for bad in (object(), 3, b"x.ply", None, {"points": [1, 2, 3]}):
        with pytest.raises(TypeError, match=r"^obj: expected a file path .* got "):
            read_points(bad)


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"obj: no such file .*missing\.ply"):
        read_points(tmp_path / "missing.ply")
    (tmp_path / "folder.ply").mkdir()
    with pytest.raises(ValueError, match=r"obj: .*folder\.ply' is a directory"):
        read_points(tmp_path / "folder.ply")
    (tmp_path / "x.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match=r"obj: unsupported suffix '\.txt'.*x\.txt.*\.npy, \.npz, \.obj"):
        read_points(tmp_path / "x.txt")


def test_bad_files(tmp_path, cloud):
    (tmp_path / "zero.off").write_bytes(b"")
    trunc = write_ply_ascii(tmp_path / "trunc.ply", cloud[:3])
    trunc.write_text(trunc.read_text().replace("element vertex 3", "element vertex 100"))
    unit_cube().export(tmp_path / "bin.ply")
    (tmp_path / "bintrunc.ply").write_bytes((tmp_path / "bin.ply").read_bytes()[:-40])
    garbage = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (tmp_path / "garbage.obj").write_bytes(garbage)
    cube = unit_cube()
    lines = write_ply_ascii(tmp_path / "faces.ply", cube.vertices, cube.faces).read_text().splitlines()
    (tmp_path / "faces.ply").write_text("\n".join(lines[:-5]) + "\n")  # 7 of 12 faces left
    (tmp_path / "empty.xyz").write_text("# only a comment\n")
    (tmp_path / "short.xyz").write_text("1 2 3\n4 5\n")
    np.save(tmp_path / "cube3d.npy", np.zeros((2, 3, 4)))
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    np.savez(tmp_path / "two.npz", a=cloud, b=cloud)
    cases = {
        "zero.off": r"could not read .*zero\.off.*empty \(0 bytes\)",
        "trunc.ply": r"could not read .*trunc\.ply.*declares 100 vertex records \(100 lines\), the body has at most 4",
        "bintrunc.ply": r"could not read .*bintrunc\.ply",
        "faces.ply": r"could not read .*faces\.ply",
        "garbage.obj": r"could not read .*garbage\.obj",
        "empty.xyz": r"empty\.xyz.*expected points of shape \(N, D\)",
        "short.xyz": r"could not read .*short\.xyz",
        "cube3d.npy": r"cube3d\.npy.*expected points of shape \(N, D\).*got \(2, 3, 4\)",
        "text.npy": r"text\.npy.*holds text \(dtype <U1\); expected real numbers",
        "objects.npy": r"could not read .*objects\.npy",
        "empty.npy": r"empty\.npy.*expected points of shape",
        "two.npz": r"two\.npz.*'points'.*\['a', 'b'\]",
    }
    for name, pattern in cases.items():
        with pytest.raises(ValueError, match="^obj: .*" + pattern):
            read_points(tmp_path / name)


def test_nan_coordinates(tmp_path, cloud):
    bad = cloud.copy()
    bad[5, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    (tmp_path / "inf.xyz").write_text("0 0 0\n1 inf 2\n")
    write_ply_ascii(tmp_path / "nan.ply", bad)
    for name, row in (("nan.npy", 5), ("inf.xyz", 1), ("nan.ply", 5)):
        with pytest.raises(ValueError, match=rf"^obj: .*{name.replace('.', '[.]')}.*NaN or inf .* point {row}"):
            read_points(tmp_path / name)


# ----------------------------------------------------------------------------------- geom.measure
def test_measure_reads_files(tmp_path, cloud):
    cube = unit_cube()
    cube.export(tmp_path / "x.ply")
    mu = geom.measure(tmp_path / "x.ply", n_samples=500, seed=1)
    assert isinstance(mu, geom.Measure) and mu.n_points == 500 and mu.dim == 3
    np.testing.assert_array_equal(mu.support[0].numpy(), read_points(tmp_path / "x.ply", n_samples=500, seed=1))
    assert geom.measure(str(write_ply_ascii(tmp_path / "c.ply", cloud))).n_points == len(cloud)


@pytest.mark.parametrize("name", SHARED_MESHES)
def test_shared_meshes(meshes_dir, name):
    loaded = trimesh.load(meshes_dir / name, force="mesh", process=False)
    lo, hi = loaded.bounds
    pts = read_points(meshes_dir / name, n_samples=300, seed=0)
    assert pts.shape == (300, 3) and np.isfinite(pts).all()
    assert (pts >= lo - 1e-4 * (hi - lo).max()).all() and (pts <= hi + 1e-4 * (hi - lo).max()).all()
    v, f = read_mesh(meshes_dir / name)
    assert len(f) > 0 and f.max() < len(v)
    assert geom.measure(meshes_dir / name, n_samples=64, seed=0).n_points == 64


def test_array_files_feed_every_kind(tmp_path):
    """.npy / .npz files hold any kind's input: their array goes to the representation unchanged."""
    g = np.random.default_rng(0)
    a = g.normal(size=(6, 3, 3))
    spd = a @ a.transpose(0, 2, 1) + np.eye(3)  # (6, 3, 3) SPD
    np.save(tmp_path / "spd.npy", spd)
    np.savez(tmp_path / "spd.npz", matrices=spd)
    for name in ("spd.npy", "spd.npz"):
        assert np.array_equal(geom.io.read_array(tmp_path / name), spd)
        from_file = geom.measure(tmp_path / name, kind="spd")
        assert torch.equal(from_file.support, geom.measure(spd, kind="spd").support)
    with pytest.raises(ValueError, match=r"obj: expected a \.npy or \.npz file, got '.*spd\.ply'"):
        geom.io.read_array(tmp_path / "spd.ply")
    with pytest.raises(FileNotFoundError, match="no such file"):
        geom.io.read_array(tmp_path / "missing.npy")
    np.savez(tmp_path / "two.npz", a=spd, b=spd)
    with pytest.raises(ValueError, match=r"two\.npz.*a single array"):
        geom.measure(tmp_path / "two.npz", kind="spd")
