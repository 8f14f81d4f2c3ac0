"""geom.collate: dataset items -> one padded batch; torch's default_collate pointing to it; transform=."""

import json

import numpy as np
import pytest
import torch

import geom
from geom.registry import get_representation
from geom_tools import cli

TETRA = (torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64),
         torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))  # 4 faces
OCTA = (torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float64)
        * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64),
        torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]))  # 8


def _spd(n_matrices: int, seed: int) -> torch.Tensor:
    a = torch.randn(n_matrices, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.transpose(1, 2) + 0.5 * torch.eye(3, dtype=torch.float64)  # (N, 3, 3)


def _sphere(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _items(kind: str) -> list:
    """Three items of ``kind`` with different numbers of atoms, and a reference measure."""
    if kind == "points":
        g = torch.Generator().manual_seed(0)
        raw = [(torch.randn(n, 3, generator=g, dtype=torch.float64), w) for n, w in ((5, None), (9, torch.arange(1.0, 10)),
                                                                                     (7, None))]
        return [geom.measure(x, weights=w) for x, w in raw] + [geom.measure(torch.randn(6, 3, generator=g) + 1)]
    if kind == "mesh":
        return [geom.measure(m, kind="mesh", n_samples=n, seed=n) for m, n in ((TETRA, 20), (OCTA, 35), (TETRA, 11),
                                                                                (OCTA, 16))]
    if kind in ("mesh-discrete", "varifold"):
        return [geom.measure(m, kind=kind) for m in (TETRA, OCTA, (2 * OCTA[0], OCTA[1]), (TETRA[0] + 1, TETRA[1]))]
    if kind == "sphere":
        return [geom.measure(_sphere(n, n), kind="sphere", normalize=True) for n in (5, 8, 3, 6)]
    return [geom.measure(_spd(n, n), kind=kind) for n in (4, 6, 2, 5)]  # the spd kinds


KINDS = ["points", "mesh", "mesh-discrete", "varifold", "sphere", "spd", "spd-logsw", "spd-affine"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_row_of_the_batch_is_its_item(kind):
    *items, ref = _items(kind)
    batch = geom.collate(items)
    n = max(m.n_points for m in items)
    assert batch.kind == kind and batch.batched and batch.support.shape[:2] == (3, n)
    assert batch.support.shape[2:] == items[0].support.shape[2:]
    for k, m in enumerate(items):
        assert torch.equal(batch.weights[k, :m.n_points], m.weights[0])
        assert torch.equal(batch.weights[k, m.n_points:], torch.zeros(n - m.n_points, dtype=batch.dtype))
    assert not batch.uniform  # the items differ in size
    theta = get_representation(kind).direction_space(batch).sample(12, torch.Generator().manual_seed(1))
    values = geom.sliced_wasserstein(batch, ref, directions=theta)  # (3,)
    assert values.shape == (3,)
    for k, m in enumerate(items):
        assert values[k].item() == pytest.approx(geom.sliced_wasserstein(m, ref, directions=theta).item(), rel=1e-9)


def test_uniform_only_when_every_item_is_uniform_with_one_size():
    a, b = geom.measure(np.zeros((4, 2))), geom.measure(np.ones((4, 2)))
    assert geom.collate([a, b]).uniform
    assert not geom.collate([a, geom.measure(np.ones((4, 2)), weights=[1, 2, 3, 4])]).uniform
    assert not geom.collate([a, geom.measure(np.ones((3, 2)))]).uniform


def test_pairs_give_labels_and_batched_items_are_concatenated():
    *items, _ = _items("points")
    batch, labels = geom.collate([(m, k + 3) for k, m in enumerate(items)])
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 4, 5]
    torch.testing.assert_close(batch.support, geom.collate(items).support)
    two = geom.collate([geom.collate(items[:2]), items[2]])  # a batch of 2 and an item
    assert two.batch_size == 3 and torch.equal(two.weights, geom.collate(items).weights)
    mixed = geom.collate([items[0], items[1].to(torch.float32)])
    assert mixed.dtype == torch.float64 and mixed.weights.dtype == torch.float64


def test_autograd_reaches_every_item():
    x = torch.randn(4, 2, requires_grad=True, generator=torch.Generator().manual_seed(0))
    y = torch.randn(6, 2, requires_grad=True, generator=torch.Generator().manual_seed(1))
    geom.collate([geom.measure(x), geom.measure(y)]).support.sum().backward()
    want = torch.ones(4, 2)
    want[0] = 3.0  # the first point and its two padding copies
    assert torch.equal(x.grad, want)
    assert torch.equal(y.grad, torch.ones(6, 2))


def test_errors_name_items():
    a, s = geom.measure(np.zeros((3, 3))), geom.measure(_sphere(3, 0), kind="sphere", normalize=True)
    with pytest.raises(ValueError, match=r"items: expected a non-empty list .*got list \[\]"):
        geom.collate([])
    with pytest.raises(TypeError, match="items: expected a non-empty list .*got Measure"):
        geom.collate(a)
    with pytest.raises(ValueError, match=r"items: expected Measures of one kind, got kinds \['points', 'sphere'\]"):
        geom.collate([a, s])
    with pytest.raises(ValueError, match=r"items: expected Measures of one event shape, got event shapes \[\(2,\), \(3,\)\]"):
        geom.collate([a, geom.measure(np.zeros((3, 2)))])
    with pytest.raises(TypeError, match="items: expected Measures or \\(Measure, label\\) pairs, got str .* at "
                                        "position 1"):
        geom.collate([a, "cloud"])
    with pytest.raises(TypeError, match="items: expected a geom.Measure at position 1, got str"):
        geom.collate([(a, 0), ("cloud", 1)])


def test_tensor_and_array_items_are_point_clouds():
    """Datasets return (n_points, 3) tensors by default: they collate as point clouds of any sizes."""
    x, y = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64), np.ones((5, 2))
    batch = geom.collate([x, y])
    assert batch.kind == "points" and batch.support.shape == (2, 5, 2)
    assert torch.equal(batch.support[0, :3], x) and batch.weights[0].tolist() == [1 / 3] * 3 + [0.0, 0.0]
    pairs, labels = geom.collate([(x, 4), (y, 7)])
    assert torch.equal(pairs.weights, batch.weights) and labels.tolist() == [4, 7]


def test_default_collate_points_to_geom_collate():
    items = _items("points")[:2]
    with pytest.raises(TypeError, match=r"use DataLoader\(\.\.\., collate_fn=geom\.collate\)"):
        torch.utils.data.default_collate(items)
    data = geom.load_dataset("shapes", n_per_class=1, n_points=8, kind="mesh-discrete")
    with pytest.raises(TypeError, match="collate_fn=geom.collate"):
        next(iter(torch.utils.data.DataLoader(data, batch_size=2)))


def test_dataloader_end_to_end_with_shapes_and_a_transform():
    data = geom.load_dataset("shapes", n_per_class=2, n_points=16, kind="mesh-discrete",
                             transform=lambda m: m.normalized("sphere"))
    assert len(data) == 12 and data.classes == geom.load_dataset("shapes").classes and data.n_points == 16
    loader = torch.utils.data.DataLoader(data, batch_size=5, collate_fn=geom.collate)
    batches = list(loader)
    assert [b.batch_size for b, _ in batches] == [5, 5, 2]
    labels = torch.cat([lab for _, lab in batches])
    assert labels.tolist() == [i // 2 for i in range(12)]
    ref, _ = data[11]
    theta = geom.UnitSphere(3).sample(8, torch.Generator().manual_seed(0)).float()
    values = torch.cat([geom.sliced_wasserstein(b, ref, directions=theta) for b, _ in batches])  # (12,)
    for i, (item, label) in enumerate(data):
        assert item.support.norm(dim=-1)[item.weights > 0].max().item() == pytest.approx(1.0, abs=1e-6)
        assert values[i].item() == pytest.approx(geom.sliced_wasserstein(item, ref, directions=theta).item(), rel=1e-5)


def test_bent_pairs_collate_to_a_pair_of_batches():
    data = geom.load_dataset("shapes", n_per_class=1, n_points=8, kind="varifold", bend=0.3)
    (source, bent), labels = geom.collate([data[0], data[3]])
    assert source.kind == bent.kind == "varifold" and source.batch_size == bent.batch_size == 2
    assert labels.tolist() == [0, 3]
    assert torch.equal(bent.support[1, :data[3][0][1].n_points], data[3][0][1].support[0])


def test_transform_is_applied_to_items_and_checked():
    plain = geom.load_dataset("shapes", n_per_class=1, n_points=8)
    assert type(plain).__name__ == "Shapes"  # no transform: the dataset itself
    data = geom.load_dataset("shapes", n_per_class=1, n_points=8, transform=lambda x: geom.measure(2 * x))
    x, label = plain[4]
    mu, label2 = data[4]
    assert isinstance(mu, geom.Measure) and label2 == label and torch.equal(mu.support[0], 2 * x)
    assert [lab for _, lab in data] == list(range(6)) and "Shapes(6 items" in repr(data)
    with pytest.raises(TypeError, match="transform: expected a callable applied to each item, or None, got str"):
        geom.load_dataset("shapes", transform="sphere")
    with pytest.raises(TypeError, match="transform: expected a callable .*got int 3"):
        geom.data.Transformed(plain, 3)


def test_geom_datasets_lists_no_transform_option(capsys):
    assert cli.main(["datasets", "--json"]) == 0
    listed = {d["name"]: d["options"] for d in json.loads(capsys.readouterr().out)}
    assert list(listed["shapes"]) == ["n_per_class", "n_points", "seed", "noise", "partial", "kind", "bend"]
    assert not any("transform" in options for options in listed.values())
