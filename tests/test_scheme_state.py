"""Scheme state without pickle (geom/_state.py): trees as arrays plus JSON, the default
``state_dict`` / ``load_state_dict`` of every registered scheme, and hostile files and states.

The round trip goes the way a checkpoint goes: ``flatten``, ``save_npz`` (one ``.npz``), ``load_npz``,
``unflatten``, then ``load_state_dict`` on a fresh instance built with the same options; the
continued run must equal the uninterrupted one bit for bit.
"""

import json
import math
import zipfile

import numpy as np
import pytest
import torch

import geom
import geom.testing
from geom._state import flatten, load_npz, read_npz, save_npz, unflatten
from geom.flows import sw_flow
from geom.registry import get_scheme

SCHEMES = {
    "mc": {}, "qmc": {}, "cv": {}, "reservoir": {"reservoir_size": 4}, "aswd": {"n_steps": 3, "hidden": 8},
    "max": {"n_steps": 5}, "dsw": {"n_steps": 3}, "vmf-dsw": {"n_steps": 3},
    "amortized-max": {"hidden": 8}, "amortized-vmf-dsw": {"hidden": 8}, "pacbayes": {"n_steps": 3, "n_samples": 4},
}


def clouds(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    return x, 0.5 * torch.randn(25, 3, generator=g, dtype=torch.float64) + 1.0


def through_a_file(tmp_path, tree):
    """``tree`` written and read back as a checkpoint is: one .npz of arrays plus a JSON document."""
    arrays, skeleton = flatten(tree)
    save_npz(tmp_path / "state.npz", arrays, {"tree": skeleton})
    arrays, meta = load_npz(tmp_path / "state.npz")
    return unflatten(arrays, meta["tree"])


def test_every_registered_scheme_is_covered():
    assert set(SCHEMES) == set(geom.schemes())


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_flow_continued_from_a_saved_state_equals_the_uninterrupted_flow(tmp_path, name):
    x, y = clouds()
    make = lambda: get_scheme(name)(**SCHEMES[name])  # noqa: E731
    kw = dict(lr=0.05, n_projections=6, record_every=[0])
    full = sw_flow(x, y, steps=6, scheme=make(), generator=torch.Generator().manual_seed(3), **kw)

    gen, scheme = torch.Generator().manual_seed(3), make()
    first = sw_flow(x, y, steps=6, scheme=scheme, generator=gen, callback=lambda k, *_: k < 3, **kw)
    assert first.info["steps_done"] == 3
    saved = through_a_file(tmp_path, dict(scheme=scheme.state_dict(), generator=gen.get_state(),
                                          adam=first.info["optimizer_state"]))
    fresh, gen2 = make(), torch.Generator()
    fresh.load_state_dict(saved["scheme"])
    gen2.set_state(saved["generator"])
    rest = sw_flow(first.particles, y, steps=3, scheme=fresh, generator=gen2, optimizer_state=saved["adam"], **kw)
    assert torch.equal(rest.particles, full.particles)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_repeated_estimates_continue_alike_after_a_round_trip(tmp_path, name):
    """Several sliced_wasserstein calls with fit (learned directions, a reservoir), state saved,
    then the same calls on the used instance and on a fresh one given its state."""
    x, y = clouds(1)
    used = get_scheme(name)(**SCHEMES[name])
    for seed in range(3):
        geom.sliced_wasserstein(x, y, scheme=used, n_projections=8, seed=seed)
    fresh = get_scheme(name)(**SCHEMES[name])
    fresh.load_state_dict(through_a_file(tmp_path, used.state_dict()))
    for seed in range(3, 6):
        a = geom.sliced_wasserstein(x, y, scheme=used, n_projections=8, seed=seed, return_result=True)
        b = geom.sliced_wasserstein(x, y, scheme=fresh, n_projections=8, seed=seed, return_result=True)
        assert torch.equal(a.directions, b.directions) and torch.equal(a.value, b.value)


# ---------------------------------------------------------------------------------------------- trees


def test_trees_round_trip_with_their_types_aliases_and_non_finite_numbers(tmp_path):
    t = torch.arange(6.0).reshape(2, 3).requires_grad_(True)
    tree = {"t": t, "again": t, "ints": torch.tensor([1, 2]), "flag": torch.tensor([True]), "scalar": torch.tensor(2.5),
            "array": np.eye(2, dtype=np.float32), "tuple": (1, "a", None, False), "list": [1.5, math.inf, -math.inf],
            "nan": math.nan, "by_int": {0: {"step": torch.tensor(1.0)}}, "nested": {"a": [{"b": (2,)}]},
            "np_int": np.int64(7), "np_float": np.float32(0.5)}
    back = through_a_file(tmp_path, tree)
    assert back["again"] is back["t"] and back["t"].requires_grad and torch.equal(back["t"], t)
    assert back["ints"].dtype == torch.int64 and back["flag"].dtype == torch.bool and back["scalar"].shape == ()
    assert isinstance(back["array"], np.ndarray) and back["array"].dtype == np.float32
    assert back["tuple"] == (1, "a", None, False) and back["list"] == [1.5, math.inf, -math.inf]
    assert math.isnan(back["nan"]) and back["by_int"][0]["step"].item() == 1.0 and back["nested"] == {"a": [{"b": (2,)}]}
    assert back["np_int"] == 7 and type(back["np_int"]) is int and back["np_float"] == 0.5


@pytest.mark.parametrize("bad", [lambda: 3, object(), {1.5: 2}, torch.zeros(2, dtype=torch.bfloat16), {1, 2}])
def test_flatten_refuses_what_is_not_a_tree(bad):
    with pytest.raises((TypeError, ValueError), match=r"state\['x'\]"):
        flatten({"x": bad})


@pytest.mark.parametrize("skeleton, needle", [
    ({"tensor": "9"}, "not in the file"),
    ({"pickle": "0"}, "skeleton node"),
    ({"dict": {"a": {"tensor": "0", "extra": 1}}}, "unexpected keys"),
    ({"float": "1e999"}, "'nan', 'inf' or '-inf'"),
    ({"items": [[True, 1]]}, "keys must be str or int"),
    ({"tuple": "abc"}, "holds a list"),
    (math.inf, "non-finite"),
    (json.loads("[" * 100 + "]" * 100), "nested deeper"),
])
def test_unflatten_refuses_hostile_skeletons(skeleton, needle):
    with pytest.raises(ValueError, match=needle):
        unflatten({"0": np.zeros(2)} if "tensor" in json.dumps(skeleton) else {}, skeleton)


def test_unflatten_refuses_arrays_nothing_refers_to():
    with pytest.raises(ValueError, match="nothing refers to: 1"):
        unflatten({"0": np.zeros(1), "1": np.zeros(1)}, {"tensor": "0"})


# ---------------------------------------------------------------------------------------------- files


class Planted:
    """Unpickling this creates a marker file: a checkpoint that holds it must never be unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_npz_holding_a_pickle_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "marker"
    obj = np.empty(1, dtype=object)
    obj[0] = Planted(marker)
    np.savez(tmp_path / "evil.npz", __meta__=np.frombuffer(b"{}", np.uint8), x=obj)
    with pytest.raises(ValueError, match="evil.npz.*dtype object"):
        load_npz(tmp_path / "evil.npz")
    assert not marker.exists()


def lying_npz(path, shape):
    """A stored .npz whose one member's header claims ``shape`` of float64 but holds 24 bytes."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(3))
    header["shape"] = shape
    with zipfile.ZipFile(path, "w") as zf, zf.open("x.npy", "w") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(np.zeros(3).tobytes())


@pytest.mark.parametrize("case, needle", [
    ("empty", "empty"), ("garbage", "truncated or corrupt"), ("truncated", "truncated or corrupt"),
    ("lying header", r"claims shape \(2000000000, 3\)"), ("short header", r"claims shape \(2,\)"),
    ("not npy", "not an .npy array"), ("no meta", "no JSON document"), ("bad json", "does not parse"),
    ("crc", "truncated or corrupt"),
])
def test_bad_npz_files_are_value_errors_naming_the_file(tmp_path, case, needle):
    path = tmp_path / "f.npz"
    good = tmp_path / "good.npz"
    save_npz(good, {"x": np.arange(1000.0)}, {"a": 1})
    data = good.read_bytes()
    if case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(b"PK\x03\x04" + bytes(range(256)))
    elif case == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif case == "lying header":
        lying_npz(path, (2_000_000_000, 3))
    elif case == "short header":
        lying_npz(path, (2,))
    elif case == "not npy":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("x.txt", "hello")
    elif case == "no meta":
        np.savez(path, x=np.zeros(2))
    elif case == "bad json":
        np.savez(path, __meta__=np.frombuffer(b"{not json", np.uint8))
    else:  # one byte of the array data flipped: the zip checksum no longer matches
        i = data.index(np.arange(1000.0)[500:501].tobytes())
        path.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1:])
    with pytest.raises(ValueError, match=needle) as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_read_npz_reads_only_the_names_asked_for(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.arange(3), b=np.ones(2))
    assert list(read_npz(tmp_path / "two.npz", {"a"})) == ["a"]
    np.savez_compressed(tmp_path / "z.npz", a=np.arange(5))  # deflated members are read, bounded by the ratio
    assert read_npz(tmp_path / "z.npz")["a"].tolist() == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------- scheme states


def used(name, **options):
    scheme = get_scheme(name)(**{**SCHEMES[name], **options})
    x, y = clouds()
    geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=8, seed=0)
    return scheme


def test_loading_names_the_attribute_that_does_not_fit():
    state = used("reservoir").state_dict()
    fresh = get_scheme("reservoir")(**SCHEMES["reservoir"])
    with pytest.raises(ValueError, match=r"Reservoir\.bogus: unknown attribute"):
        fresh.load_state_dict({**state, "bogus": 1})
    with pytest.raises(ValueError, match=r"Reservoir\.step: missing"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "step"})
    with pytest.raises(ValueError, match=r"Reservoir\.reservoir: expected a torch.float64 tensor with 2 dimensions"):
        fresh.load_state_dict({**state, "reservoir": torch.zeros(3, dtype=torch.float32)})
    with pytest.raises(ValueError, match=r"Reservoir\.step: expected int, got str"):
        fresh.load_state_dict({**state, "step": "3"})
    with pytest.raises(ValueError, match=r"Reservoir\.base: the state holds a .*QuasiMonteCarlo"):
        fresh.load_state_dict(used("reservoir", base="qmc").state_dict())


def test_nested_base_scheme_and_learned_network_round_trip(tmp_path):
    with_base = used("cv", base="qmc")
    assert with_base.state_dict()["base"]["__kind__"] == "scheme"
    fresh = get_scheme("cv")(base="qmc")
    fresh.load_state_dict(through_a_file(tmp_path, with_base.state_dict()))
    assert fresh.base._last == with_base.base._last and fresh.base._last is not None  # the group sizes
    net = used("aswd")
    other = get_scheme("aswd")(**SCHEMES["aswd"])
    assert other.net_ is None  # built lazily in fit: the override builds it before the default loads
    other.load_state_dict(through_a_file(tmp_path, net.state_dict()))
    assert all(torch.equal(a, b) for a, b in zip(net.net_.parameters(), other.net_.parameters()))
    wider = get_scheme("aswd")(**{**SCHEMES["aswd"], "hidden": 9})
    with pytest.raises(ValueError, match=r"Augmented\.hidden|Augmented\.net_"):
        wider.load_state_dict(net.state_dict())


class Lazy(geom.SlicingScheme):
    """Keeps an object made at the first call: the default load cannot rebuild it."""

    def __init__(self):
        self.memory = None

    def directions(self, n, dim, *, generator=None):
        if self.memory is None:
            self.memory = Box(torch.randn(dim, generator=generator, dtype=torch.float64))
        theta = torch.randn(n, dim, generator=generator, dtype=torch.float64) + self.memory.v
        return theta / theta.norm(dim=1, keepdim=True)


class Box:
    def __init__(self, v):
        self.v = v


class Unstorable(geom.SlicingScheme):
    def __init__(self):
        self.rule = lambda n: n

    def directions(self, n, dim, *, generator=None):
        theta = torch.randn(n, dim, generator=generator, dtype=torch.float64)
        return theta / theta.norm(dim=1, keepdim=True)


def test_check_scheme_fails_schemes_whose_state_does_not_round_trip():
    with pytest.raises(AssertionError, match=r"check_scheme\(Lazy\).*load_state_dict.*Lazy\.memory"):
        geom.testing.check_scheme(Lazy)
    with pytest.raises(AssertionError, match=r"check_scheme\(Unstorable\).*state_dict.*Unstorable\.rule"):
        geom.testing.check_scheme(Unstorable)


def test_reservoir_state_whose_arrays_disagree_in_length_is_refused():
    state = used("reservoir").state_dict()
    R = state["reservoir"].shape[0]
    assert R >= 2
    fresh = get_scheme("reservoir")(**SCHEMES["reservoir"])
    with pytest.raises(ValueError, match=rf"state: log_keys: expected shape \({R},\)"):
        fresh.load_state_dict({**state, "log_keys": state["log_keys"][:-1]})
    with pytest.raises(ValueError, match="state: reservoir: expected .* R <= 4"):
        big = torch.cat([state["reservoir"]] * 3)
        fresh.load_state_dict({**state, "reservoir": big})
    fresh.load_state_dict(state)  # the state itself loads
