"""Offline real data: scikit-learn's digits (pixel measures, R^64 vectors, the split) and the airports on S^2.

The oracles are independent of geom_datasets.real: sklearn's own arrays, pandas' reading of the airports
CSV through vega_datasets, published great-circle distances, and POT's sliced distances.
"""

import builtins
import math
import sys

import numpy as np
import pytest
import torch

import geom
from geom_datasets.real import PIXEL_GRID, Airports, Digits, collate_measures, latlon_to_sphere

sklearn_datasets = pytest.importorskip("sklearn.datasets")
vega = pytest.importorskip("vega_datasets")
ot = pytest.importorskip("ot")

DIGIT_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # UCI optdigits test set, as sklearn ships it


@pytest.fixture(scope="module")
def sk():
    bunch = sklearn_datasets.load_digits()
    return bunch.images, bunch.target


@pytest.fixture(scope="module")
def digits():
    return Digits()


@pytest.fixture(scope="module")
def table():
    """The airports as pandas reads them (its "NA" reading: missing state)."""
    return vega.local_data.airports()


# ---------------------------------------------------------------------------------------------- digits


def test_digits_counts_and_classes(digits, sk):
    assert len(digits) == 1797 and digits.classes == [str(d) for d in range(10)]
    assert torch.bincount(digits.targets).tolist() == DIGIT_COUNTS
    np.testing.assert_array_equal(digits.targets.numpy(), sk[1])
    np.testing.assert_array_equal(digits.images.numpy(), sk[0])
    assert [digits[i][1] for i in (0, 1, 9, -1)] == [int(sk[1][0]), int(sk[1][1]), int(sk[1][9]), int(sk[1][-1])]


def test_pixel_grid_is_the_8x8_grid_of_centres_with_row_0_on_top():
    xs = ys = (np.arange(8) + 0.5) / 8
    assert PIXEL_GRID.shape == (64, 2) and PIXEL_GRID.dtype == torch.float32
    grid = PIXEL_GRID.numpy().reshape(8, 8, 2)  # [row, column]
    np.testing.assert_allclose(grid[..., 0], np.broadcast_to(xs, (8, 8)))  # x grows with the column
    np.testing.assert_allclose(grid[..., 1], np.broadcast_to(ys[::-1, None], (8, 8)))  # y falls with the row
    assert len({tuple(p) for p in PIXEL_GRID.tolist()}) == 64


def test_pixel_measure_weights_are_the_normalised_intensities_on_the_grid(digits, sk):
    for i in (0, 7, 1000, -1):
        mu, label = digits[i]
        assert isinstance(mu, geom.Measure) and mu.kind == "points" and not mu.batched
        assert torch.equal(mu.support[0], PIXEL_GRID)
        img = sk[0][i].reshape(64)
        np.testing.assert_allclose(mu.weights[0].double().numpy(), img / img.sum(), rtol=1e-6, atol=1e-9)
        assert mu.weights.sum().item() == pytest.approx(1.0, abs=1e-6)
        assert int((mu.weights[0] == 0).sum()) == int((img == 0).sum())  # blank pixels kept at weight zero
    # the image's centre of mass is the measure's mean: a "1" is narrower in x than a "0"
    centre = (mu.weights[0, :, None] * mu.support[0]).sum(0)
    img = sk[0][-1]
    np.testing.assert_allclose(centre[0].item(), (img.sum(0) * ((np.arange(8) + 0.5) / 8)).sum() / img.sum(), rtol=1e-5)


def test_vectors_are_the_images_over_16(sk):
    data = Digits(representation="vectors")
    x, label = data[3]
    assert x.shape == (64,) and x.dtype == torch.float32 and label == sk[1][3]
    np.testing.assert_allclose(x.numpy(), sk[0][3].reshape(64) / 16)
    batch, labels = data.batch([3, 4, -1])
    assert batch.shape == (3, 64) and torch.equal(batch[0], x) and labels.tolist() == sk[1][[3, 4, -1]].tolist()
    stacked, _ = next(iter(torch.utils.data.DataLoader(data, batch_size=5)))
    assert torch.equal(stacked, data.batch(range(5))[0])


def test_batched_pixel_measures_equal_single_items_and_pot(digits):
    theta = torch.nn.functional.normalize(torch.randn(32, 2, generator=torch.Generator().manual_seed(0)), dim=1)
    mus, labels = digits.batch([0, 1, 2])
    nus, _ = digits.batch([10, 11, 12])
    assert mus.support.shape == (3, 64, 2) and labels.tolist() == [digits[i][1] for i in (0, 1, 2)]
    for k in range(3):
        assert torch.equal(mus.support[k], PIXEL_GRID) and torch.allclose(mus.weights[k], digits[k][0].weights[0])
    batched = geom.sliced_wasserstein(mus, nus, directions=theta)  # (3,)
    for k, (i, j) in enumerate([(0, 10), (1, 11), (2, 12)]):
        (a, _), (b, _) = digits[i], digits[j]
        single = geom.sliced_wasserstein(a, b, directions=theta)
        assert batched[k].item() == pytest.approx(single.item(), rel=1e-5)
        ref = ot.sliced_wasserstein_distance(PIXEL_GRID.double().numpy(), PIXEL_GRID.double().numpy(),
                                             a.weights[0].double().numpy(), b.weights[0].double().numpy(),
                                             projections=theta.double().numpy().T)
        assert single.item() == pytest.approx(float(ref), rel=1e-4)


def test_same_digit_images_are_closer_than_different_digits_on_average():
    data = Digits(split="test", seed=1)
    rng = np.random.default_rng(0)
    by_class = [np.flatnonzero(data.targets.numpy() == c) for c in range(10)]
    same = [rng.choice(rows, 2, replace=False) for rows in by_class for _ in range(6)]  # 60 pairs
    diff = []
    for _ in range(60):
        c, d = rng.choice(10, 2, replace=False)
        diff.append((rng.choice(by_class[c]), rng.choice(by_class[d])))
    sw = {}
    for name, pairs in (("same", same), ("diff", diff)):
        i, j = np.array(pairs).T
        sw[name] = geom.sliced_wasserstein(data.batch(i)[0], data.batch(j)[0], n_projections=64, seed=0)  # (60,)
    gap = sw["diff"].mean() - sw["same"].mean()
    se = math.sqrt(sw["diff"].var() / 60 + sw["same"].var() / 60)
    assert gap > 3 * se, (sw["same"].mean().item(), sw["diff"].mean().item(), se)


def test_split_is_seeded_stratified_and_partitions_the_images():
    train, test = Digits(split="train", seed=3), Digits(split="test", seed=3)
    rows_train, rows_test = set(train.indices.tolist()), set(test.indices.tolist())
    assert not rows_train & rows_test and rows_train | rows_test == set(range(1797))
    assert len(test) == 450 and len(train) == 1347
    for c, n in enumerate(DIGIT_COUNTS):  # each digit contributes round(0.25 n) test images
        assert int((test.targets == c).sum()) == round(0.25 * n) and int((train.targets == c).sum()) == n - round(0.25 * n)
    assert torch.equal(Digits(split="test", seed=3).indices, test.indices)  # same seed, same split
    other = Digits(split="test", seed=4)
    assert len(other) == 450 and not torch.equal(other.indices, test.indices)
    small = Digits(split="test", seed=3, test_fraction=0.1)
    assert len(small) == sum(round(0.1 * n) for n in DIGIT_COUNTS)


def test_classes_subset_relabels_in_the_given_order_and_keeps_the_split(sk):
    full = Digits(split="train", seed=2)
    sub = Digits(split="train", seed=2, classes=["8", 3])
    assert sub.classes == ["8", "3"]
    digit = sk[1][sub.indices.numpy()]
    assert set(digit.tolist()) == {3, 8}
    np.testing.assert_array_equal(sub.targets.numpy(), np.where(digit == 8, 0, 1))
    expected = [r for r in full.indices.tolist() if sk[1][r] in (3, 8)]
    assert sub.indices.tolist() == expected  # the split of a digit does not depend on `classes`


def test_digits_through_load_dataset(restore_registry):
    if "digits" not in geom.datasets():
        geom.register_dataset("digits", Digits)
    data = geom.load_dataset("digits", representation="vectors", classes=["0"])
    assert isinstance(data, Digits) and len(data) == DIGIT_COUNTS[0] and data.classes == ["0"]


@pytest.mark.parametrize(
    "options, error, needle",
    [
        ({"representation": "image"}, ValueError, "representation: expected 'pixels' or 'vectors', got 'image'"),
        ({"split": "val"}, ValueError, "split: expected 'all', 'train' or 'test', got 'val'"),
        ({"test_fraction": 1.0}, ValueError, "test_fraction"),
        ({"test_fraction": "0.2"}, TypeError, "test_fraction"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"classes": ["3", "10"]}, ValueError, r"classes: .*unknown \['10'\]"),
        ({"classes": ["3", 3]}, ValueError, "classes: expected a non-empty list of distinct"),
        ({"classes": "3"}, TypeError, "classes"),
        ({"root": "/data"}, ValueError, "root: the digits ship with scikit-learn"),
    ],
)
def test_digits_option_errors_name_the_option(options, error, needle):
    with pytest.raises(error, match=needle):
        Digits(**options)


def test_digits_index_errors(digits):
    with pytest.raises(IndexError, match="index: expected -1797 <= index < 1797, got 1797"):
        digits[1797]
    with pytest.raises(IndexError, match="indices"):
        digits.batch([0, 5000])


# -------------------------------------------------------------------------------------------- airports


def test_airport_points_are_unit_vectors_in_file_order(table):
    data = Airports()
    assert data.points.shape == (3376, 3) and data.points.dtype == torch.float32
    np.testing.assert_allclose(data.points.double().norm(dim=1).numpy(), 1.0, atol=1e-6)
    assert data.iata == table["iata"].tolist()
    lat = np.degrees(np.arcsin(np.clip(data.points[:, 2].double().numpy(), -1, 1)))
    lon = np.degrees(np.arctan2(data.points[:, 1].double().numpy(), data.points[:, 0].double().numpy()))
    np.testing.assert_allclose(lat, table["latitude"], atol=1e-3)  # float32 round trip
    np.testing.assert_allclose(lon, table["longitude"], atol=1e-3)


def test_known_airports_map_to_the_right_points():
    data = Airports()
    jfk, lax = (data.points[data.iata.index(c)].double().numpy() for c in ("JFK", "LAX"))
    lat, lon = math.radians(40.639751), math.radians(-73.778926)  # JFK in the file
    np.testing.assert_allclose(jfk, [math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)],
                               atol=1e-6)
    assert jfk[0] > 0 and jfk[1] < 0 and jfk[2] > 0  # west of Greenwich, north of the equator
    # great-circle distance JFK - LAX: 2475 statute miles = 3983 km, Earth radius 6371 km
    assert 6371 * math.acos(float(np.dot(jfk, lax))) == pytest.approx(3983, abs=15)
    np.testing.assert_allclose(latlon_to_sphere([90.0, 0.0], [0.0, 90.0]), [[0, 0, 1], [0, 1, 0]], atol=1e-15)


def test_per_state_items_match_the_csv(table):
    data = Airports()
    counts = table["state"].value_counts()  # pandas: "NA" is missing, so those airports have no state
    assert data.classes == sorted(counts.index) and len(data) == 56
    assert sum(len(m) for m in data.members) == 3376 - int(table["state"].isna().sum()) == 3364
    for code in ("AK", "TX", "CA", "DC", "PR"):
        label = data.classes.index(code)
        mu, got = data[label]
        assert got == label and mu.kind == "sphere" and mu.n_points == counts[code]
        expected = table.loc[table["state"] == code, ["latitude", "longitude"]].to_numpy()
        np.testing.assert_allclose(mu.support[0].double().numpy(), latlon_to_sphere(expected[:, 0], expected[:, 1]),
                                   atol=1e-6)
        assert torch.allclose(mu.weights, torch.full_like(mu.weights, 1 / counts[code]))
    assert data.classes[data[-1][1]] == "WY"


def test_airports_options_all_states_and_kinds():
    everything, label = Airports(by="all")[0]
    assert label == 0 and everything.kind == "sphere" and everything.n_points == 3376
    sub = Airports(states=["NV", "CA"], kind="points")
    assert sub.classes == ["NV", "CA"] and len(sub) == 2
    x, label = sub[1]
    assert isinstance(x, torch.Tensor) and x.shape == (205, 3) and label == 1
    on_sphere, _ = Airports(states=["CA"])[0]
    assert on_sphere.kind == "sphere" and torch.equal(on_sphere.support[0], x)



@pytest.mark.parametrize("latitude, longitude", [("north", "-89.2"), ("95.0", "-89.2"), ("31.9", "-190"),
                                                 ("nan", "-89.2"), ("", "-89.2")])
def test_an_airport_row_without_a_valid_position_names_the_file_and_the_row(tmp_path, monkeypatch,
                                                                             latitude, longitude):
    import geom_datasets.real as real

    path = tmp_path / "airports.csv"
    path.write_text("iata,name,city,state,country,latitude,longitude\n"
                    "00M,Thigpen,Bay Springs,MS,USA,31.95376472,-89.23450472\n"
                    f"00R,Livingston,Livingston,TX,USA,{latitude},{longitude}\n")
    monkeypatch.setattr(real, "airports_csv", lambda: path)
    with pytest.raises(ValueError, match=rf"'.*airports.csv': row 3 \('00R'\) has latitude '{latitude}' and "
                                         rf"longitude '{longitude}'; expected numbers in \[-90, 90\] and "
                                         r"\[-180, 180\]"):
        Airports()
    path.write_text("iata,lat,lon\n00M,31.9,-89.2\n")
    with pytest.raises(ValueError, match=r"'.*airports.csv': expected an airports table with columns"):
        Airports()

def test_spherical_sw_between_states_equals_pot_and_orders_by_geography(table):

    data = Airports(states=["CA", "NV", "ME"])
    (ca, _), (nv, _), (me, _) = data[0], data[1], data[2]
    U = ot.sliced.get_projections_sphere(3, 64, seed=0)  # (64, 3, 2) Haar frames
    theta = torch.tensor(U, dtype=torch.float32)  # (L, 3, 2) frames, native
    sw = {k: geom.sliced_wasserstein(ca, m, directions=theta).item() for k, m in (("ca", ca), ("nv", nv), ("me", me))}
    assert sw["ca"] < 1e-5  # float32 roundoff only
    assert sw["nv"] < sw["me"] / 3  # Nevada borders California, Maine is across the continent
    xyz = {c: latlon_to_sphere(*table.loc[table["state"] == c, ["latitude", "longitude"]].to_numpy().T)
           for c in ("CA", "ME")}
    ref = ot.sliced_wasserstein_sphere(xyz["CA"], xyz["ME"], n_projections=64, projections=U)
    assert sw["me"] == pytest.approx(float(ref), rel=1e-4)


def test_collate_measures_pads_with_zero_weight_and_keeps_distances():
    data = Airports(states=["RI", "CA", "NV", "DE"])
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=collate_measures)
    mu, labels = next(iter(loader))
    assert labels.tolist() == [0, 1, 2, 3] and mu.kind == "sphere" and mu.support.shape == (4, 205, 3)
    ref, _ = Airports(by="all")[0]
    theta = geom.Frames(3).sample(16, torch.Generator().manual_seed(1)).float()  # (16, 3, 2) great circles
    batched = geom.sliced_wasserstein(mu, ref, directions=theta)  # (4,) every state against all airports
    for k in range(4):
        assert batched[k].item() == pytest.approx(geom.sliced_wasserstein(data[k][0], ref, directions=theta).item(),
                                                  rel=1e-5)
        n = len(data.members[k])
        assert float(mu.weights[k, n:].abs().sum()) == 0.0 and mu.weights[k].sum().item() == pytest.approx(1.0)
    with pytest.raises(TypeError, match="items: expected a geom.Measure at position 0, got str"):
        collate_measures([("cloud", 0)])
    with pytest.raises(ValueError, match=r"items: expected Measures of one kind, got kinds \['points', 'sphere'\]"):
        collate_measures([data[0], (geom.measure(torch.zeros(3, 3)), 1)])


def test_airports_through_load_dataset(restore_registry, table):
    if "airports" not in geom.datasets():
        geom.register_dataset("airports", Airports)
    data = geom.load_dataset("airports", states=["HI"])
    assert isinstance(data, Airports) and data[0][0].n_points == int((table["state"] == "HI").sum()) == 16


@pytest.mark.parametrize(
    "options, error, needle",
    [
        ({"by": "country"}, ValueError, "by: expected 'state' or 'all', got 'country'"),
        ({"kind": "mesh"}, ValueError, "kind: expected 'sphere' or 'points', got 'mesh'"),
        ({"kind": None}, ValueError, "kind: expected 'sphere' or 'points', got None"),
        ({"states": ["CA", "XX"]}, ValueError, r"states: .*unknown \['XX'\]"),
        ({"states": ["NA"]}, ValueError, r"states: .*unknown \['NA'\]"),  # "NA" is no state
        ({"states": ["CA"], "by": "all"}, ValueError, "states: only used with by='state'"),
        ({"root": "/data"}, ValueError, "root: the airports ship with vega_datasets"),
    ],
)
def test_airports_option_errors_name_the_option(options, error, needle):
    with pytest.raises(error, match=needle):
        Airports(**options)


# ---------------------------------------------------------------------------------- missing extras


def block_import(monkeypatch, name):
    real_import = builtins.__import__

    def fake(module, *args, **kwargs):
        if module == name or module.startswith(name + "."):
            raise ImportError(f"No module named {module!r}")
        return real_import(module, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, key)


def test_missing_sklearn_names_the_digits_extra(monkeypatch):
    block_import(monkeypatch, "sklearn")
    with pytest.raises(ImportError, match=r"pip install geom\[digits\]"):
        Digits()


def test_missing_vega_datasets_names_the_airports_extra(monkeypatch):
    block_import(monkeypatch, "vega_datasets")
    with pytest.raises(ImportError, match=r"pip install geom\[airports\]"):
        Airports()
