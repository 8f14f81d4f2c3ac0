"""Loaders of on-disk collections: ModelNet (merged OFF headers), ShapeNet (taxonomy, splits), PointNet
HDF5 and plain folders, each against a tiny tree written here in the real format."""

import csv
import json
import warnings
import zlib

import numpy as np
import pytest
import torch

import geom
import geom.io
from geom_datasets import loaders, shapes
from geom_datasets.loaders import FolderDataset, HDF5Dataset, ModelNet, ShapeNet

# ----------------------------------------------------------------- writers of the real formats


def write_off(path, v, f, *, merged=False):
    """OFF; ``merged`` writes the ModelNet variant ``OFF<V> <F> 0`` on one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f"OFF{len(v)} {len(f)} 0\n" if merged else f"OFF\n{len(v)} {len(f)} 0\n"
    rows = [" ".join(f"{x:.9g}" for x in p) for p in v] + [f"3 {a} {b} {c}" for a, b, c in f]
    path.write_text(head + "\n".join(rows) + "\n")


def write_obj(path, v, f):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    path.write_text("# written by the tests\n" + "\n".join(rows) + "\n")


def write_ply(path, v, f):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(shapes.mesh_bytes(v, f))


def moved(mesh, scale=1.0, shift=(0.0, 0.0, 0.0)):
    """A mesh scaled and shifted away from the origin, so that normalisation has work to do."""
    v, f = mesh
    return (v * np.float32(scale) + np.asarray(shift, np.float32)).astype(np.float32), f


BOX = moved(shapes.cube(size=2.0, divisions=2), 1.0, (5.0, -1.0, 2.0))  # surface: max |x - c|_inf = 1
BALL = moved(shapes.sphere(radius=1.0, subdivisions=1), 3.0, (0.0, 4.0, 0.0))
EGG = moved(shapes.ellipsoid(subdivisions=1), 2.0, (-3.0, 0.0, 1.0))
# no symmetry: its vertex mean (1, .25, .25) is not its surface centroid
TETRA = (np.array([[0, 0, 0], [4, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
         np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64))


@pytest.fixture
def modelnet(tmp_path):
    """root/<class>/<train|test>/<class>_NNNN.off; airplane_0001 has the merged header."""
    root = tmp_path / "ModelNet"
    write_off(root / "airplane" / "train" / "airplane_0001.off", *BOX, merged=True)
    write_off(root / "airplane" / "train" / "airplane_0002.off", *EGG)
    write_off(root / "airplane" / "test" / "airplane_0003.off", *BALL, merged=True)
    write_off(root / "chair" / "train" / "chair_0001.off", *BALL)
    write_off(root / "chair" / "test" / "chair_0002.off", *TETRA, merged=True)
    return root


def face_centroids_and_areas(v, f):
    tri = np.asarray(v, np.float64)[f]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    return tri.mean(1), area


# ----------------------------------------------------------------- ModelNet


def test_modelnet_index_labels_and_the_merged_off_header(modelnet):
    assert (modelnet / "airplane/train/airplane_0001.off").read_text().startswith(f"OFF{len(BOX[0])} ")
    train = ModelNet(modelnet, split="train", n_points=64)
    test = ModelNet(modelnet, split="test", n_points=64)
    every = ModelNet(modelnet, n_points=64)
    assert train.classes == test.classes == ["airplane", "chair"]
    assert [e.key for e in train._entries] == ["airplane/train/airplane_0001.off", "airplane/train/airplane_0002.off",
                                               "chair/train/chair_0001.off"]
    assert [y for _, y in train] == [0, 0, 1] and [y for _, y in test] == [0, 1] and len(every) == 5
    x, y = train[0]
    assert x.shape == (64, 3) and x.dtype == torch.float32 and y == 0
    assert torch.equal(train[-1][0], train[2][0])
    with pytest.raises(IndexError, match="expected -3 <= index < 3, got 3"):
        train[3]
    # the merged-header file is read exactly: its face centroids and areas come back as mesh-discrete
    mu, _ = ModelNet(modelnet, split="train", kind="mesh-discrete", normalize=None)[0]
    centroids, area = face_centroids_and_areas(*BOX)
    np.testing.assert_allclose(mu.support[0].numpy(), centroids, atol=1e-5)
    np.testing.assert_allclose(mu.weights[0].numpy(), area / area.sum(), atol=1e-6)
    # and its surface samples lie on the box surface: max |x - centre|_inf = 1
    raw, _ = ModelNet(modelnet, split="train", n_points=200, normalize=None)[0]
    np.testing.assert_allclose(np.abs(raw.numpy() - [5.0, -1.0, 2.0]).max(1), 1.0, atol=1e-5)


def test_modelnet_seeds_are_deterministic_and_differ(modelnet):
    a = ModelNet(modelnet, split="train", n_points=128, seed=3)
    b = ModelNet(modelnet, split="train", n_points=128, seed=3)
    c = ModelNet(modelnet, split="train", n_points=128, seed=4)
    assert torch.equal(a[1][0], b[1][0]) and not torch.allclose(a[1][0], c[1][0])
    # a file's cloud does not depend on the split or the order of access
    every = ModelNet(modelnet, n_points=128, seed=3)
    assert torch.equal(every[[e.key for e in every._entries].index("chair/train/chair_0001.off")][0], a[2][0])
    assert not torch.allclose(a[0][0], a[1][0])  # items draw from different streams


def test_normalisation_sphere_and_box_against_the_raw_cloud(modelnet):
    raw = ModelNet(modelnet, split="train", n_points=300, normalize=None, seed=1)[1][0].double().numpy()
    sphere = ModelNet(modelnet, split="train", n_points=300, normalize="sphere", seed=1)[1][0].double().numpy()
    box = ModelNet(modelnet, split="train", n_points=300, normalize="box", seed=1)[1][0].double().numpy()
    centred = raw - raw.mean(0)  # centre of "sphere": the mean of the cloud
    np.testing.assert_allclose(sphere, centred / np.linalg.norm(centred, axis=1).max(), atol=1e-6)
    np.testing.assert_allclose(sphere.mean(0), 0, atol=1e-6)
    assert abs(np.linalg.norm(sphere, axis=1).max() - 1) < 1e-6
    lo, hi = box.min(0), box.max(0)  # centre of "box": the middle of the bounding box
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-6)
    assert lo.min() >= -1 - 1e-6 and hi.max() <= 1 + 1e-6
    longest = np.argmax(raw.max(0) - raw.min(0))
    np.testing.assert_allclose([lo[longest], hi[longest]], [-1, 1], atol=1e-6)
    assert (hi - lo).min() < 1.9  # the egg is not a cube: other axes do not touch


def test_mesh_kinds_normalise_the_mesh_and_give_measures(modelnet):
    mu, y = ModelNet(modelnet, split="test", kind="varifold")[1]  # chair_0002: the tetrahedron
    assert isinstance(mu, geom.Measure) and mu.kind == "varifold" and y == 1
    assert mu.support.shape == (1, 4, 6)
    np.testing.assert_allclose(mu.support[0, :, 3:].norm(dim=1).numpy(), 1, atol=1e-5)  # unit normals
    # "sphere" centres the surface: the area-weighted centroid of the faces is 0, every vertex in the ball
    disc, _ = ModelNet(modelnet, split="test", kind="mesh-discrete")[1]
    np.testing.assert_allclose((disc.weights[0, :, None] * disc.support[0]).sum(0).numpy(), 0, atol=1e-6)
    assert disc.support[0].norm(dim=1).max() < 1
    box, _ = ModelNet(modelnet, split="test", kind="mesh-discrete", normalize="box")[1]
    assert box.support.abs().max() <= 1
    samples, _ = ModelNet(modelnet, split="test", kind="mesh", n_points=77, seed=2)[1]
    assert samples.kind == "mesh" and samples.support.shape == (1, 77, 3)
    assert samples.support[0].norm(dim=1).max() <= 1 + 1e-6


def test_cache_is_written_outside_root_and_reused(modelnet, tmp_path, monkeypatch):
    before = sorted(p for p in modelnet.rglob("*"))
    cache = tmp_path / "cache"
    first = ModelNet(modelnet, split="train", n_points=50, seed=5, cache=cache)
    clouds = [x for x, _ in first]
    meshes = [m.support for m, _ in ModelNet(modelnet, split="train", kind="varifold", cache=cache)]
    assert len(list(cache.glob("*.npy"))) == 3 and len(list(cache.glob("*.npz"))) == 3
    assert sorted(p for p in modelnet.rglob("*")) == before  # nothing written inside root

    def fail(*args, **kwargs):
        raise AssertionError("the file was read again")

    monkeypatch.setattr(geom.io, "read_points", fail)
    monkeypatch.setattr(geom.io, "read_mesh", fail)
    again = ModelNet(modelnet, split="train", n_points=50, seed=5, cache=cache)
    assert all(torch.equal(a, b) for a, (b, _) in zip(clouds, again))
    assert all(torch.equal(a, m.support) for a, (m, _) in zip(meshes, ModelNet(modelnet, split="train", kind="varifold",
                                                                              cache=cache)))
    with pytest.raises(AssertionError, match="read again"):  # another seed is another key
        ModelNet(modelnet, split="train", n_points=50, seed=6, cache=cache)[0]


def test_dataloader_batches_points(modelnet):
    data = ModelNet(modelnet, n_points=32)
    batch, labels = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch.shape == (4, 32, 3) and batch.dtype == torch.float32
    assert labels.tolist() == [y for _, y in list(data)[:4]] == [0, 0, 0, 1]
    assert torch.equal(batch[2], data[2][0])


def test_modelnet_errors_name_the_path_and_layout(modelnet, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such path '.*nowhere'; expected a ModelNet folder: root/<class>"):
        ModelNet(tmp_path / "nowhere")
    flat = tmp_path / "flat"
    write_off(flat / "airplane" / "airplane_0001.off", *BOX)
    with pytest.raises(ValueError, match=r"'.*flat' has no <class>/train or <class>/test folders; expected"):
        ModelNet(flat)
    with pytest.raises(TypeError, match="root: expected the path of a ModelNet folder"):
        ModelNet(None)
    for option, value, pattern in [("split", "validation", "split: expected one of"),
                                   ("kind", "voxels", "kind: expected one of"),
                                   ("normalize", "unit", "normalize: expected one of"),
                                   ("n_points", 0, "n_points: expected a positive integer, got 0")]:
        with pytest.raises(ValueError, match=pattern):
            ModelNet(modelnet, **{option: value})


def test_modelnet_empty_class_folder_warns_and_keeps_its_label(modelnet):
    (modelnet / "lamp" / "train").mkdir(parents=True)
    with pytest.warns(geom.GeomWarning, match=r"class folder '.*lamp' has no files with suffix .off in train/"):
        data = ModelNet(modelnet, split="train")
    assert data.classes == ["airplane", "chair", "lamp"] and sorted({e.label for e in data._entries}) == [0, 1]


def test_unreadable_file_is_an_error_at_access_naming_it(modelnet):
    (modelnet / "chair" / "train" / "chair_0009.off").write_text("OFF\n3 1 0\n0 0 0\n1 0\n")
    data = ModelNet(modelnet, split="train", n_points=16)
    assert len(data) == 4  # indexed, not skipped
    data[0]
    with pytest.raises(ValueError, match=r"item 3 \(chair/train/chair_0009.off, class 'chair'\): could not read "
                                         r"file '.*chair_0009.off'"):
        data[3]


# ----------------------------------------------------------------- ShapeNet


def shapenet_tree(root, models):
    """root/<synset>/<model>/models/model_normalized.obj for each (synset, model, mesh)."""
    for synset, model, mesh in models:
        write_obj(root / synset / model / "models" / "model_normalized.obj", *mesh)
    return root


MODELS = [("02691156", f"plane{k}", BOX) for k in range(5)] + [("03001627", f"chair{k}", EGG) for k in range(3)]


def test_shapenet_class_names_from_the_taxonomy_or_synset_ids(tmp_path):
    root = shapenet_tree(tmp_path / "ShapeNetCore.v2", MODELS)
    plain = ShapeNet(root, n_points=20)
    assert plain.classes == ["02691156", "03001627"] and [y for _, y in plain] == [0] * 5 + [1] * 3
    (root / "taxonomy.json").write_text(json.dumps([
        {"synsetId": "02691156", "name": "airplane,aeroplane,plane", "children": [], "numInstances": 5},
        {"synsetId": "03001627", "name": "chair", "children": [], "numInstances": 3},
        {"synsetId": "04379243", "name": "table", "children": [], "numInstances": 0}]))
    named = ShapeNet(root, n_points=20)
    assert named.classes == ["airplane", "chair"]
    x, y = named[6]
    assert x.shape == (20, 3) and y == 1 and named._entries[6].key == "03001627/chair1/models/model_normalized.obj"
    assert abs(x.norm(dim=1).max() - 1) < 1e-6


def test_shapenet_fixed_split_without_a_split_file(tmp_path):
    root = shapenet_tree(tmp_path / "sn", MODELS)
    train, test = ShapeNet(root, split="train", seed=0), ShapeNet(root, split="test", seed=9)
    keys = lambda d: {e.key.split("/")[1] for e in d._entries}  # noqa: E731
    assert keys(train) | keys(test) == {m for _, m, _ in MODELS} and not keys(train) & keys(test)
    assert len(test) == round(0.2 * 5) + round(0.2 * 3)
    first = min((m for s, m, _ in MODELS if s == "02691156"), key=lambda m: zlib.crc32(f"02691156/{m}".encode()))
    assert first in keys(test)
    half = ShapeNet(root, split="test", test_fraction=0.5)
    assert len(half) == round(2.5) + round(1.5) and keys(test) <= keys(half)
    with pytest.raises(ValueError, match=r"split: 'val' needs the official split file '.*all.csv'"):
        ShapeNet(root, split="val")
    with pytest.raises(ValueError, match="test_fraction: expected a real number in"):
        ShapeNet(root, test_fraction=1.5)


def test_shapenet_official_split_file(tmp_path):
    root = shapenet_tree(tmp_path / "sn", MODELS)
    split = {"plane0": "val", "plane1": "test", "chair0": "test"}
    with open(root / "all.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "synsetId", "subSynsetId", "modelId", "split"])
        for k, (s, m, _) in enumerate(MODELS[:-1]):  # chair2 is not listed; synset ids lose their 0 as in the file
            w.writerow([k, int(s), int(s), m, split.get(m, "train")])
    with pytest.warns(geom.GeomWarning, match="1 models under .* are not listed"):
        test = ShapeNet(root, split="test")
    assert [e.key.split("/")[1] for e in test._entries] == ["plane1", "chair0"] and [y for _, y in test] == [0, 1]
    with pytest.warns(geom.GeomWarning):
        assert [e.key.split("/")[1] for e in ShapeNet(root, split="val")._entries] == ["plane0"]
    assert len(ShapeNet(root)) == 8  # split=None: every model on disk


def test_shapenet_wrong_layout_and_missing_models(tmp_path):
    wrong = tmp_path / "wrong"
    write_obj(wrong / "02691156" / "plane0" / "model.obj", *BOX)
    with pytest.raises(ValueError, match=r"'.*wrong' has no <synsetId>/<modelId>/models/model_normalized.obj"):
        ShapeNet(wrong)
    root = shapenet_tree(tmp_path / "sn", MODELS[:2])
    (root / "02691156" / "broken" / "models").mkdir(parents=True)
    with pytest.warns(geom.GeomWarning, match=r"1 model folders .* are skipped, e.g. '.*broken'"):
        assert len(ShapeNet(root)) == 2


# ----------------------------------------------------------------- HDF5


@pytest.fixture
def h5_folder(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    root.mkdir()
    data = {split: rng.normal(size=(n, 64, 3)).astype(np.float32) for split, n in [("train", 5), ("test", 3)]}
    labels = {"train": np.array([[0], [2], [1], [2], [0]], np.uint8), "test": np.array([1, 1, 2], np.int64)}
    for split in ("train", "test"):
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as fh:
            fh["data"], fh["label"] = data[split], labels[split]
    return root, data, labels


def test_hdf5_rows_labels_and_shape_names(h5_folder):
    root, data, labels = h5_folder
    plain = HDF5Dataset(root, split="train", n_points=64, normalize=None)
    assert plain.classes == ["0", "1", "2"] and [y for _, y in plain] == [0, 2, 1, 2, 0]
    np.testing.assert_array_equal(plain[3][0].numpy(), data["train"][3])  # P == n_points: as stored
    (root / "shape_names.txt").write_text("airplane\nbathtub\nbed\n")
    with pytest.warns(geom.GeomWarning, match="class 'airplane' \\(label 0\\) has no rows in the test files"):
        test = HDF5Dataset(root, split="test")
    assert test.classes == ["airplane", "bathtub", "bed"] and [y for _, y in test] == [1, 1, 2]
    assert len(HDF5Dataset(root)) == 8
    with pytest.warns(geom.GeomWarning, match="class 'airplane'"):
        single = HDF5Dataset(root / "ply_data_test0.h5", n_points=64, normalize=None)
    np.testing.assert_array_equal(single[2][0].numpy(), data["test"][2])
    batch, y = next(iter(torch.utils.data.DataLoader(test, batch_size=3)))
    assert batch.shape == (3, 1024, 3) and y.tolist() == [1, 1, 2]


def test_hdf5_subsample_without_and_pad_with_replacement(h5_folder):
    root, data, _ = h5_folder
    row = {tuple(p) for p in data["train"][1].tolist()}
    small = HDF5Dataset(root, split="train", n_points=40, normalize=None, seed=1)[1][0].numpy()
    drawn = {tuple(p) for p in small.tolist()}
    assert small.shape == (40, 3) and len(drawn) == 40 and drawn <= row  # distinct points of the row
    big = HDF5Dataset(root, split="train", n_points=100, normalize=None, seed=1)[1][0].numpy()
    assert big.shape == (100, 3) and {tuple(p) for p in big.tolist()} == row  # every point, plus repeats
    other = HDF5Dataset(root, split="train", n_points=40, normalize=None, seed=2)[1][0].numpy()
    assert not np.array_equal(small, other)
    np.testing.assert_array_equal(small, HDF5Dataset(root, split="train", n_points=40, normalize=None, seed=1)[1][0])
    box = HDF5Dataset(root, split="train", n_points=40, normalize="box")[1][0].numpy()
    assert np.isclose(box.max(0) - box.min(0), 2, atol=1e-6).any() and np.abs(box).max() <= 1 + 1e-6


def test_hdf5_errors(h5_folder, tmp_path):
    h5py = pytest.importorskip("h5py")
    root, _, _ = h5_folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"'.*empty' holds no .h5 / .hdf5 files; expected a PointNet-style"):
        HDF5Dataset(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"split: the file '.*ply_data_test0.h5' is not a 'train' file"):
        HDF5Dataset(root / "ply_data_test0.h5", split="train")
    with pytest.raises(ValueError, match="kind: expected one of"):
        HDF5Dataset(root, kind="varifold")
    with h5py.File(root / "ply_data_train1.h5", "w") as fh:
        fh["points"] = np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match=r"'.*ply_data_train1.h5': expected datasets 'data' and 'label'"):
        HDF5Dataset(root, split="train")
    (root / "ply_data_train1.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match=r"could not read '.*ply_data_train1.h5' as HDF5"):
        HDF5Dataset(root, split="train")
    (root / "ply_data_train1.h5").unlink()
    (root / "shape_names.txt").write_text("airplane\nbathtub\n")
    with pytest.raises(ValueError, match=r"'.*ply_data_test0.h5' has label 2, which has no name in "
                                         r"'.*shape_names.txt': it lists 2 classes"):
        HDF5Dataset(root)


# ----------------------------------------------------------------- folder


@pytest.fixture
def folder(tmp_path):
    """Split folders above and below the class folders; .ply, .obj and .npy files."""
    root = tmp_path / "scans"
    write_ply(root / "train" / "cube" / "a.ply", *BOX)
    write_obj(root / "train" / "egg" / "b.obj", *EGG)
    (root / "test" / "cube").mkdir(parents=True)
    np.save(root / "test" / "cube" / "c.npy", np.random.default_rng(0).normal(size=(10, 3)))
    write_ply(root / "ball" / "test" / "d.ply", *BALL)
    write_obj(root / "ball" / "e.obj", *BALL)  # in no split
    return root


def test_folder_classes_splits_and_point_files(folder):
    every = FolderDataset(folder, n_points=16, normalize=None)
    assert every.classes == ["ball", "cube", "egg"] and len(every) == 5
    assert {e.key: y for e, y in zip(every._entries, [y for _, y in every])} == {
        "ball/e.obj": 0, "ball/test/d.ply": 0, "test/cube/c.npy": 1, "train/cube/a.ply": 1, "train/egg/b.obj": 2}
    with pytest.warns(geom.GeomWarning, match="class 'egg' .* has no files in split 'test'"):
        test = FolderDataset(folder, split="test", n_points=16, normalize=None)
    assert [e.key for e in test._entries] == ["ball/test/d.ply", "test/cube/c.npy"] and [y for _, y in test] == [0, 1]
    cloud = test[1][0].double().numpy()  # 10 stored points -> each once plus 6 repeats
    stored = np.load(folder / "test" / "cube" / "c.npy")
    assert cloud.shape == (16, 3) and {tuple(p) for p in cloud.astype(np.float32).tolist()} == \
        {tuple(p) for p in stored.astype(np.float32).tolist()}
    with pytest.warns(geom.GeomWarning, match="class 'ball' .* has no files in split 'train'"):
        train = FolderDataset(folder, split="train", kind="varifold")
    assert [m.kind for m, _ in train] == ["varifold", "varifold"] and train[0][0].support.shape == (1, len(BOX[1]), 6)
    with pytest.warns(geom.GeomWarning), pytest.raises(ValueError, match=r"could not read file '.*c.npy': kind "
                                                                     r"'varifold' needs a triangle mesh"):
        FolderDataset(folder, split="test", kind="varifold")[1]


def test_folder_warnings_and_errors(folder, tmp_path):
    np.save(folder / "loose.npy", np.zeros((4, 3)))
    (folder / "lamp").mkdir()
    (folder / "lamp" / "notes.txt").write_text("no shapes here")
    with pytest.warns(geom.GeomWarning) as record:
        data = FolderDataset(folder, split="train")
    messages = " | ".join(str(w.message) for w in record)
    assert "1 files of" in messages and "loose.npy" in messages
    assert f"'{folder / 'lamp'}' has no files" in messages
    assert "class 'ball' (label 0)" in messages and "no files in split 'train'" in messages
    assert data.classes == ["ball", "cube", "egg"]
    bare = tmp_path / "bare"
    (bare / "a").mkdir(parents=True)
    (bare / "a" / "x.txt").write_text("")
    with pytest.raises(ValueError, match=r"'.*bare' has no files with suffix .npy, .npz.* inside class folders"):
        FolderDataset(bare)


# ----------------------------------------------------------------- registration


def test_registered_names_and_load_dataset(modelnet, restore_registry):
    seen = []
    loaders.geom_register_datasets(lambda name, cls: seen.append((name, cls)))
    assert seen == [("modelnet", ModelNet), ("shapenet", ShapeNet), ("hdf5", HDF5Dataset), ("folder", FolderDataset)]
    for name, cls in seen:
        assert cls.description and {"split", "n_points", "seed", "normalize", "kind", "cache"} <= set(cls.options)
        if name not in geom.datasets():
            geom.register_dataset(name, cls)
    data = geom.load_dataset("modelnet", root=modelnet, split="test", n_points=8)
    assert isinstance(data, ModelNet) and len(data) == 2 and data[0][0].shape == (8, 3)
    assert repr(data) == "ModelNet(2 items, 2 classes)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean tree gives no warning
        ModelNet(modelnet)


def test_hdf5_nan_rows_name_the_file_the_dataset_and_the_row(h5_folder):
    h5py = pytest.importorskip("h5py")
    root, data, labels = h5_folder
    bad = data["train"].copy()
    bad[3, 7, 1] = np.nan
    bad[4, 0, 0] = np.inf
    with h5py.File(root / "ply_data_train0.h5", "w") as fh:
        fh["data"], fh["label"] = bad, labels["train"]
    train = HDF5Dataset(root, split="train", n_points=64)
    assert train[2][0].isfinite().all()  # the other rows read as before
    for row, point in [(3, 7), (4, 0)]:
        with pytest.raises(ValueError, match=rf"could not read file '.*ply_data_train0.h5': dataset 'data', row {row}: "
                                             rf"point {point} has a NaN or inf coordinate"):
            train[row]


def test_hdf5_labels_out_of_range_name_the_file_and_the_label(h5_folder):
    h5py = pytest.importorskip("h5py")
    root, data, labels = h5_folder
    (root / "shape_names.txt").write_text("airplane\nbathtub\nbed\n")
    with h5py.File(root / "ply_data_test0.h5", "w") as fh:
        fh["data"], fh["label"] = data["test"], np.array([1, 3, 2])
    for split in ("train", None):  # a label beyond the names is an error whatever the split asked
        with pytest.raises(ValueError, match=r"'.*ply_data_test0.h5' has label 3, which has no name in "
                                             r"'.*shape_names.txt': it lists 3 classes"):
            HDF5Dataset(root, split=split)
    with h5py.File(root / "ply_data_test0.h5", "w") as fh:
        fh["data"], fh["label"] = data["test"], np.array([1, -4, 2])
    with pytest.raises(ValueError, match=r"'.*ply_data_test0.h5' has the negative label -4 \(row 1\)"):
        HDF5Dataset(root, split="test")
    (root / "shape_names.txt").unlink()  # without names, a label is a class: it may not outnumber the rows
    with h5py.File(root / "ply_data_test0.h5", "w") as fh:
        fh["data"], fh["label"] = data["test"], np.array([1, 2**40, 2])
    with pytest.raises(ValueError, match=r"'.*ply_data_test0.h5' has label 1099511627776, not below the number of "
                                         r"rows \(8\) .*list the class names, in label order, in '.*shape_names.txt'"):
        HDF5Dataset(root)


def test_hdf5_classes_do_not_depend_on_the_split(h5_folder):
    h5py = pytest.importorskip("h5py")
    root, data, labels = h5_folder
    with h5py.File(root / "ply_data_test0.h5", "w") as fh:
        fh["data"], fh["label"] = data["test"], np.array([1, 3, 2])
    with pytest.warns(geom.GeomWarning, match=r"class '3' \(label 3\) has no rows in the train files"):
        train = HDF5Dataset(root, split="train")
    with pytest.warns(geom.GeomWarning, match=r"class '0' \(label 0\) has no rows in the test files"):
        test = HDF5Dataset(root, split="test")
    assert train.classes == test.classes == ["0", "1", "2", "3"]


@pytest.mark.parametrize("case", ["unwritten data", "partly written chunks", "data group", "text data", "float labels",
                                  "labels too short", "two points per row", "no points"])
def test_hdf5_datasets_are_checked_before_rows_are_read(tmp_path, case):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "ply_data_train0.h5"
    with h5py.File(path, "w") as fh:
        if case == "unwritten data":  # a header claiming rows the file never stored: read back as fill values
            fh.create_dataset("data", shape=(4, 2048, 3), dtype="f4")
        elif case == "partly written chunks":
            fh.create_dataset("data", shape=(4, 64, 3), dtype="f4", chunks=(1, 64, 3), compression="gzip")
            fh["data"][0] = np.ones((64, 3))
        elif case == "data group":
            fh.create_group("data")
        elif case == "text data":
            fh["data"] = np.full((4, 5, 3), "x", dtype="S1")
        else:
            shape = {"two points per row": (4, 5, 2), "no points": (4, 0, 3)}.get(case, (4, 5, 3))
            fh["data"] = np.ones(shape, np.float32)
        labels = {"float labels": np.zeros(4), "labels too short": np.zeros(3, np.int64)}
        fh["label"] = labels.get(case, np.zeros(4, np.int64))
    needle = {"unwritten data": "dataset '/data' is not stored in the file",
              "partly written chunks": "dataset '/data' is not stored in the file",
              "data group": "expected datasets 'data' and 'label'"}.get(case, "expected numbers 'data' \\(N, P, 3\\)")
    with pytest.raises(ValueError, match=rf"root: '.*ply_data_train0.h5': .*{needle}"):
        HDF5Dataset(path)


def test_n_points_beyond_memory_is_refused_up_front(modelnet):
    with pytest.raises(ValueError, match=r"^n_points: this needs about .* of memory for items of 1000000000 points"):
        ModelNet(modelnet, n_points=np.int64(10**9))
    assert len(ModelNet(modelnet, n_points=np.int64(16))[0][0]) == 16
