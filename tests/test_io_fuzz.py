"""geom.measure on random bytes, and on random truncations and byte flips of valid files of every
format: the outcome is a ValueError or a valid Measure (finite support, weights summing to 1), never
another exception, and the memory it takes is bounded by the file's size."""

import tracemalloc
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geom
from test_io import unit_cube, write_obj, write_off, write_pcd_ascii, write_pcd_binary, write_pcd_compressed, \
    write_ply_ascii, write_ply_binary

MiB = 1 << 20
SUFFIXES = (".ply", ".obj", ".off", ".stl", ".pcd", ".xyz", ".npy", ".npz")
SEEDS = ("points.ply", "faces.ply", "binary_points.ply", "binary_faces.ply", "big_endian.ply", "trimesh.ply",
         "mesh.obj", "mesh.off", "merged.off", "ascii.stl", "binary.stl", "ascii.pcd", "binary.pcd", "compressed.pcd",
         "points.xyz", "points.npy", "line.npy", "stored.npz", "deflated.npz")
FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def valid(folder) -> dict[str, bytes]:
    """A small valid file of every format, and of every body each format has."""
    cube = unit_cube()
    v, f = np.asarray(cube.vertices), np.asarray(cube.faces)  # (8, 3), (12, 3)
    cloud = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    out = folder / "valid"
    out.mkdir()
    write_ply_ascii(out / "points.ply", cloud)
    write_ply_ascii(out / "faces.ply", v, f)
    write_ply_binary(out / "binary_points.ply", cloud)
    write_ply_binary(out / "binary_faces.ply", v, f)
    write_ply_binary(out / "big_endian.ply", v, f, order=">")
    cube.export(out / "trimesh.ply")
    write_obj(out / "mesh.obj", v, f)
    write_off(out / "mesh.off", v, f)
    (out / "merged.off").write_text((out / "mesh.off").read_text().replace("OFF\n", "OFF", 1))
    cube.export(out / "ascii.stl", file_type="stl_ascii")
    cube.export(out / "binary.stl")
    write_pcd_ascii(out / "ascii.pcd", cloud)
    write_pcd_binary(out / "binary.pcd", cloud)
    write_pcd_compressed(out / "compressed.pcd", np.repeat(cloud, 4, axis=0))  # repeats: back references
    np.savetxt(out / "points.xyz", cloud)
    np.save(out / "points.npy", cloud)
    np.save(out / "line.npy", cloud[:, 0])
    np.savez(out / "stored.npz", points=cloud)
    np.savez_compressed(out / "deflated.npz", points=cloud)
    files = {name: (out / name).read_bytes() for name in SEEDS}
    assert zipfile.ZipFile(out / "deflated.npz").infolist()[0].compress_type == zipfile.ZIP_DEFLATED
    for name in SEEDS:  # each one is valid as it is
        assert check(out / name) is not None, name
    return files


def check(path):
    """``geom.measure(path)``: a valid Measure or None after a ValueError; any other exception propagates.
    Peak memory traced (numpy's allocations included) stays under 64 MiB + 200 x the file's size."""
    size = path.stat().st_size
    tracemalloc.start()
    try:
        mu = geom.measure(path, n_samples=64, seed=0)
    except ValueError:
        mu = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 64 * MiB + 200 * size, f"{path.name}: {peak / MiB:.1f} MiB for a file of {size} bytes"
    if mu is not None:
        assert mu.support.shape[1] >= 1 and torch.isfinite(mu.support).all()
        assert (mu.weights >= 0).all()
        torch.testing.assert_close(mu.weights.sum(-1), torch.ones(mu.weights.shape[0]))
    return mu


MAGIC = {".ply": [b"ply\n", b"ply\nformat binary_little_endian 1.0\nelement vertex "], ".obj": [b"v "],
         ".off": [b"OFF\n"], ".stl": [b"solid ", b"\0" * 80], ".pcd": [b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\n"],
         ".xyz": [b"1 2 3\n"], ".npy": [b"\x93NUMPY\x01\x00"], ".npz": [b"PK\x03\x04"]}


@pytest.mark.parametrize("suffix", SUFFIXES)
@FUZZ
@given(data=st.data())
def test_random_bytes(folder, suffix, data):
    """Random bytes, alone or after the first bytes of the format, so that the parsers are reached."""
    start = data.draw(st.sampled_from([b""] + MAGIC[suffix]))
    path = folder / f"random{suffix}"
    path.write_bytes(start + data.draw(st.binary(max_size=512)))
    check(path)


def mutations(original: bytes, max_flips: int = 4):
    """A truncation, byte flips, or both, of ``original``."""
    cut = st.one_of(st.just(len(original)), st.integers(0, len(original)))
    flips = st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=max_flips)
    return st.tuples(cut, flips)


def mutate(original: bytes, cut: int, flips) -> bytes:
    data = bytearray(original)
    for at, byte in flips:
        data[at] = byte
    return bytes(data[:cut])


@pytest.mark.parametrize("name", SEEDS)
@FUZZ
@given(data=st.data())
def test_truncations_and_flips(folder, valid, name, data):
    cut, flips = data.draw(mutations(valid[name]))
    path = folder / f"mutated-{name}"
    path.write_bytes(mutate(valid[name], cut, flips))
    check(path)


@pytest.mark.slow
@settings(FUZZ, max_examples=3000)
@given(data=st.data())
def test_truncations_and_flips_sweep(folder, valid, data):
    name = data.draw(st.sampled_from(SEEDS))
    cut, flips = data.draw(mutations(valid[name], max_flips=16))
    path = folder / f"swept-{name}"
    path.write_bytes(mutate(valid[name], cut, flips))
    check(path)
