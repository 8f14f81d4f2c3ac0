"""Dataset caches: an entry is returned only if it holds what it should, concurrent writers never meet,
and a cache folder inside the dataset root is never read as data."""

import concurrent.futures
import random
import threading
import time
import warnings
import zipfile

import numpy as np
import pytest
import torch

import geom
from geom_datasets.loaders import FolderDataset, ModelNet, ShapeNet

from test_loaders import BALL, BOX, EGG, TETRA, shapenet_tree, write_off, write_ply


@pytest.fixture
def modelnet(tmp_path):
    root = tmp_path / "ModelNet"
    write_off(root / "airplane" / "test" / "airplane_0000.off", *BOX)
    write_off(root / "airplane" / "train" / "airplane_0001.off", *BOX)
    write_off(root / "airplane" / "train" / "airplane_0002.off", *EGG)
    write_off(root / "chair" / "train" / "chair_0001.off", *BALL)
    write_off(root / "chair" / "test" / "chair_0002.off", *TETRA)
    return root


def entry_of(cache, stem, suffix):
    (path,) = cache.glob(f"{stem}-*{suffix}")
    return path


class Marker:
    """Unpickling this would create the file ``path``: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def lying_npy(shape, data=bytes(12)):
    """A .npy header claiming ``shape`` float32, followed by ``data``."""
    text = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode("latin1")
    text += b" " * (117 - len(text)) + b"\n"  # magic (6) + version (2) + length (2) + 118 = 128 bytes
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


BAD_CLOUDS = {
    "wrong shape": lambda path: np.save(path, np.zeros((5, 3), np.float32)),
    "wrong dtype": lambda path: np.save(path, np.zeros((50, 3), np.float64)),
    "not finite": lambda path: np.save(path, np.full((50, 3), np.nan, np.float32)),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:-7]),
    "empty": lambda path: path.write_bytes(b""),
    "garbage": lambda path: path.write_bytes(b"not an array at all" * 10),
    "lying header": lambda path: path.write_bytes(lying_npy((2_000_000_000, 3))),
    "a header shorter than its data": lambda path: path.write_bytes(lying_npy((5, 3), path.read_bytes()[128:])),
    "fortran order": lambda path: np.save(path, np.asfortranarray(np.zeros((50, 3), np.float32))),
}


@pytest.mark.parametrize("damage", sorted(BAD_CLOUDS))
def test_a_cloud_entry_that_does_not_hold_the_cloud_is_rebuilt(modelnet, tmp_path, damage):
    cache = tmp_path / "cache"
    plain = ModelNet(modelnet, split="train", n_points=50, seed=3)
    cached = ModelNet(modelnet, split="train", n_points=50, seed=3, cache=cache)
    expected = plain[1][0]
    assert torch.equal(cached[1][0], expected)  # written
    path = entry_of(cache, "airplane_0002", ".npy")
    BAD_CLOUDS[damage](path)
    again = ModelNet(modelnet, split="train", n_points=50, seed=3, cache=cache)[1][0]
    assert again.dtype == torch.float32 and torch.equal(again, expected)
    assert np.array_equal(np.load(path, allow_pickle=False), expected.numpy())  # and rewritten whole


def test_a_pickled_entry_is_never_unpickled_and_is_rebuilt(modelnet, tmp_path):
    cache, marker = tmp_path / "cache", tmp_path / "unpickled"
    expected = ModelNet(modelnet, split="train", n_points=50)[0][0]
    ModelNet(modelnet, split="train", n_points=50, cache=cache)[0]
    path = entry_of(cache, "airplane_0001", ".npy")
    np.save(path, np.array([Marker(marker)], dtype=object), allow_pickle=True)
    np.load(path, allow_pickle=True)  # the planted file really runs code when unpickled
    assert marker.exists()
    marker.unlink()
    again = ModelNet(modelnet, split="train", n_points=50, cache=cache)[0][0]
    assert not marker.exists() and torch.equal(again, expected)


def write_npz(path, **arrays):
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as fh:
                np.lib.format.write_array(fh, array, allow_pickle=True)


BAD_MESHES = {
    "faces out of range": lambda path, v, f: np.savez(path, vertices=v, faces=f + len(v)),
    "negative faces": lambda path, v, f: np.savez(path, vertices=v, faces=np.where(f == 0, -1, f)),
    "faces of the wrong dtype": lambda path, v, f: np.savez(path, vertices=v, faces=f.astype(np.float64)),
    "vertices of the wrong shape": lambda path, v, f: np.savez(path, vertices=v[:, :2], faces=f),
    "vertices not finite": lambda path, v, f: np.savez(path, vertices=v * np.nan, faces=f),
    "a missing member": lambda path, v, f: np.savez(path, vertices=v),
    "no faces": lambda path, v, f: np.savez(path, vertices=v, faces=f[:0]),
    "truncated": lambda path, v, f: path.write_bytes(path.read_bytes()[:200]),
    "not a zip file": lambda path, v, f: path.write_bytes(b"PK\x03\x04 and then nothing useful"),
    "a pickled member": lambda path, v, f: write_npz(path, vertices=np.array([Marker(path.parent / "unpickled")],
                                                                            dtype=object), faces=f),
    "a lying member header": lambda path, v, f: write_npz(path, vertices=np.zeros((1, 3), np.float32), faces=f)
    or _lie_in_member(path),
}


def _lie_in_member(path):
    """Rewrite the archive with a 'vertices' member whose header claims (2e9, 3)."""
    with zipfile.ZipFile(path) as archive:
        faces = archive.read("faces.npy")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("vertices.npy", lying_npy((2_000_000_000, 3)))
        archive.writestr("faces.npy", faces)


@pytest.mark.parametrize("damage", sorted(BAD_MESHES))
def test_a_mesh_entry_that_does_not_hold_the_mesh_is_rebuilt(modelnet, tmp_path, damage):
    cache = tmp_path / "cache"
    expected = ModelNet(modelnet, split="test", kind="mesh-discrete")[0][0]
    ModelNet(modelnet, split="test", kind="mesh-discrete", cache=cache)[0]
    path = entry_of(cache, "airplane_0000", ".npz")
    with np.load(path, allow_pickle=False) as archive:
        v, f = archive["vertices"], archive["faces"]
    BAD_MESHES[damage](path, v, f)
    again = ModelNet(modelnet, split="test", kind="mesh-discrete", cache=cache)[0][0]
    assert torch.equal(again.support, expected.support) and torch.equal(again.weights, expected.weights)
    assert not (tmp_path / "unpickled").exists()
    with np.load(path, allow_pickle=False) as archive:  # rewritten whole
        assert np.array_equal(archive["vertices"], v) and np.array_equal(archive["faces"], f)


def test_threads_sharing_a_cache_never_see_each_others_temporary_files(tmp_path, monkeypatch):
    save = np.save

    def slow_save(*args, **kwargs):  # a slow disk: writers overlap, whatever the thread scheduling
        time.sleep(0.005)
        save(*args, **kwargs)

    monkeypatch.setattr(np, "save", slow_save)
    root = tmp_path / "scans"
    for k, mesh in enumerate([BOX, BALL, EGG]):
        write_ply(root / f"class{k % 2}" / f"mesh{k}.ply", *mesh)
    seeds, n_threads = range(30), 6
    plain = {seed: FolderDataset(root, n_points=3000, seed=seed) for seed in seeds}
    cache = tmp_path / "cache"
    cached = [{seed: FolderDataset(root, n_points=3000, seed=seed, cache=cache) for seed in seeds}
              for _ in range(2)]  # two objects per entry, one cache folder
    together = threading.Barrier(n_threads, timeout=60)

    def reads(worker):  # every thread asks for the same new entry at the same moment
        order = random.Random(worker).sample(range(3), 3)
        out = []
        try:
            for seed in seeds:
                together.wait()
                out += [(seed, i, cached[worker % 2][seed][i][0]) for i in order]
        except BaseException:
            together.abort()  # the others stop waiting; this error is the one reported
            raise
        return out

    with concurrent.futures.ThreadPoolExecutor(n_threads) as pool:
        results = [r for batch in pool.map(reads, range(n_threads)) for r in batch]  # re-raises a worker's error
    assert len(results) == n_threads * len(seeds) * 3
    assert all(torch.equal(x, plain[seed][i][0]) for seed, i, x in results)
    assert len(list(cache.iterdir())) == 3 * len(seeds)  # the entries, and no temporary file left behind


# ----------------------------------------------------------------- a cache inside root


def test_a_cache_inside_root_is_never_a_class(modelnet, tmp_path):
    cache = modelnet / "cache"
    first = ModelNet(modelnet, split="train", n_points=20, cache=cache)
    items = [x for x, _ in first]
    assert any(cache.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "class folder 'cache' has no files" either
        again = ModelNet(modelnet, split="train", n_points=20, cache=cache)
    assert again.classes == first.classes == ["airplane", "chair"]
    assert all(torch.equal(a, b) for a, (b, _) in zip(items, again))



def test_a_cache_inside_root_through_a_symbolic_link_is_never_a_class(modelnet, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (modelnet / "cache").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    [x for x, _ in ModelNet(modelnet, cache=modelnet / "cache", n_points=20)]
    (tmp_path / "link").symlink_to(modelnet, target_is_directory=True)  # root spelt through a link
    for root in (modelnet, tmp_path / "link"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ModelNet(root, cache=modelnet / "cache", n_points=20).classes == ["airplane", "chair"]

def test_a_cache_inside_a_folder_tree_is_never_read_as_items(tmp_path):
    for k, inside in enumerate(("cache", "cube/cache", "cube/deeper/cache")):
        root = tmp_path / f"scans{k}"
        write_ply(root / "cube" / "a.ply", *BOX)
        write_ply(root / "ball" / "b.ply", *BALL)
        cache = root / inside
        first = FolderDataset(root, n_points=20, cache=cache)
        [x for x, _ in first]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = FolderDataset(root, n_points=20, cache=cache)
        assert again.classes == ["ball", "cube"] and [e.key for e in again._entries] == ["ball/b.ply", "cube/a.ply"]


@pytest.mark.parametrize("inside", ["cache", "02691156/cache"])  # beside the synsets, or among the models of one
def test_a_cache_inside_shapenet_is_never_a_synset_or_a_model(tmp_path, inside):
    root = shapenet_tree(tmp_path / "sn", [("02691156", "plane0", BOX), ("03001627", "chair0", EGG)])
    [x for x, _ in ShapeNet(root, n_points=20, cache=root / inside)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "model folders ... have no models/model_normalized.obj" either
        again = ShapeNet(root, n_points=20, cache=root / inside)
    assert again.classes == ["02691156", "03001627"] and len(again) == 2


def test_a_cache_inside_root_must_hold_only_cache_entries(modelnet, tmp_path):
    with pytest.raises(ValueError, match=r"cache: expected a folder of its own, got root '.*ModelNet' itself"):
        ModelNet(modelnet, cache=modelnet)
    with pytest.raises(ValueError, match=r"cache: the folder '.*chair' lies inside root, .* holds 'test', which is "
                                         r"no cache entry"):
        ModelNet(modelnet, cache=modelnet / "chair")  # a class folder: its data would vanish from the index
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "notes.ply").write_text("anything")
    assert len(ModelNet(modelnet, cache=tmp_path / "outside")) == 5  # outside root: the user's own business


def test_hidden_and_temporary_files_are_never_indexed(tmp_path):
    root = tmp_path / "scans"
    write_ply(root / "cube" / "a.ply", *BOX)
    write_ply(root / "cube" / f"{geom._files.TEMP_PREFIX}a.ply.x1y2.ply", *BOX)  # another writer's temporary file
    write_ply(root / "cube" / "._a.ply", *BOX)  # archive debris
    write_off(root / "chair" / "train" / ".chair_0001.off", *BALL)
    write_off(root / "chair" / "train" / "chair_0002.off", *BALL)
    assert [e.key for e in FolderDataset(root)._entries] == ["chair/train/chair_0002.off", "cube/a.ply"]
    with pytest.warns(geom.GeomWarning, match="class folder '.*cube' has no files with suffix .off"):
        data = ModelNet(root)
    assert [e.key for e in data._entries] == ["chair/train/chair_0002.off"]
