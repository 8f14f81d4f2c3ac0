"""The datasets door: the registry's third table, geom.load_dataset, the Dataset contract, `geom datasets`."""

import json

import pytest
import torch

import geom
from geom_tools import cli


class Squares(geom.Dataset):
    """A toy dataset: item i is i times a (4, 3) block of ones, label i % 2."""

    description = "toy squares for the tests"
    options = {"n": "number of items (default 3)"}
    classes = ["even", "odd"]

    def __init__(self, root=None, *, n=3):
        self.root, self.n = root, n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if not -self.n <= index < self.n:
            raise IndexError(f"index: expected -{self.n} <= index < {self.n}, got {index}")
        index %= self.n
        return torch.full((4, 3), float(index)), index % 2


def test_load_dataset_builds_the_registered_class_with_root_and_options(restore_registry):
    geom.register_dataset("test-squares", Squares)
    assert "test-squares" in geom.datasets()
    data = geom.load_dataset("test-squares", root="/somewhere", n=5)
    assert isinstance(data, Squares) and data.root == "/somewhere" and len(data) == 5
    items = list(data)  # iteration goes through __getitem__ in order
    assert [label for _, label in items] == [0, 1, 0, 1, 0]
    assert torch.equal(items[3][0], torch.full((4, 3), 3.0)) and data.classes[items[3][1]] == "odd"
    batch, labels = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch.shape == (4, 4, 3) and labels.tolist() == [0, 1, 0, 1]
    assert repr(data) == "Squares(5 items, 2 classes)"


def test_registry_errors_name_the_dataset(restore_registry):
    with pytest.raises(ValueError, match="name: unknown dataset 'no-such-data'; registered datasets:"):
        geom.load_dataset("no-such-data")
    with pytest.raises(TypeError, match="cls: expected a subclass of geom.Dataset"):
        geom.register_dataset("test-not-a-dataset", dict)
    geom.register_dataset("test-squares", Squares)
    with pytest.raises(geom.PluginError, match="dataset 'test-squares' is registered twice"):
        geom.register_dataset("test-squares", Squares)


def test_a_dataset_must_implement_len_and_getitem():
    class Half(geom.Dataset):
        def __len__(self):
            return 0

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_geom_datasets_lists_descriptions_and_options(restore_registry, capsys):
    geom.register_dataset("test-squares", Squares)
    assert cli.main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "test-squares: toy squares for the tests" in out and "    n: number of items (default 3)" in out
    assert cli.main(["datasets", "--json"]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["test-squares"] == {"name": "test-squares", "description": "toy squares for the tests",
                                      "options": {"n": "number of items (default 3)"}}
    assert cli.main(["plugins"]) == 0
    assert "test-squares" in capsys.readouterr().out  # the plugins table has a datasets column


def test_an_unknown_option_is_named_with_the_valid_ones(restore_registry):
    geom.register_dataset("test-squares", Squares)
    with pytest.raises(TypeError, match=r"^m: unknown option of dataset 'test-squares'; valid options: n$"):
        geom.load_dataset("test-squares", m=5)
    with pytest.raises(TypeError, match=r"^a, b: unknown options of dataset 'test-squares'; valid options: n$"):
        geom.load_dataset("test-squares", b=1, a=2)


BUILT_IN = ["airports", "digits", "folder", "gaussians", "hdf5", "modelnet", "shapenet", "shapes", "spd",
            "sphere-mixtures"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_dataset_names_an_unknown_option_and_lists_its_own(name):
    cls = geom.registry.get_dataset(name)
    with pytest.raises(TypeError) as info:
        geom.load_dataset(name, n_point=3)  # a typo of n_points, which some of them take
    message = str(info.value)
    assert message.startswith(f"n_point: unknown option of dataset {name!r}; valid options: ")
    listed = message.split("valid options: ")[1].split(", ")
    assert set(cls.options) <= set(listed) and ("root" in listed) == (name in ("folder", "hdf5", "modelnet",
                                                                              "shapenet"))
