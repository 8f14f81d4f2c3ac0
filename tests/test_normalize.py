"""geom.measure(..., normalize="sphere" | "box"), Measure.normalized and geom.measures.normalization."""

import math
import pathlib

import numpy as np
import pytest
import torch

import geom
from geom.measures import normalization

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "datasets" / "samples"


def _rotation(seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q  # (3, 3), det +1


def _cloud(seed: int, n: int = 60) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)


def _directions(n: int = 32, d: int = 3) -> torch.Tensor:
    return geom.UnitSphere(d).sample(n, torch.Generator().manual_seed(7))  # (n, d) float64


def test_closed_forms_on_small_examples():
    # sphere: weights [3, 1] on 0 and 4: centroid 1, farthest point at distance 3
    mu = geom.measure([[0.0], [4.0]], weights=[3, 1], normalize="sphere")
    assert mu.support[0, :, 0].tolist() == pytest.approx([-1 / 3, 1.0])
    # box: bounding box [0, 2] x [0, 6], centre (1, 3), longest side 6
    nu = geom.measure([[0.0, 0.0], [2.0, 0.0], [2.0, 6.0]], normalize="box")
    torch.testing.assert_close(nu.support[0], torch.tensor([[-1 / 3, -1.0], [1 / 3, -1.0], [1 / 3, 1.0]]))
    centre, scale = normalization(geom.measure([[0.0], [4.0]], weights=[3, 1]), "sphere")
    assert centre.tolist() == [[1.0]] and scale.tolist() == [3.0] and centre.dtype == torch.float64


@pytest.mark.parametrize("seed", [0, 1])
def test_sphere_centroid_at_origin_and_farthest_point_at_distance_one(seed):
    w = torch.rand(60, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mu = geom.measure(_cloud(seed) * 40 + 3, weights=w, normalize="sphere")
    x, w = mu.support[0], mu.weights[0]
    torch.testing.assert_close(w @ x, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert x.norm(dim=1).max().item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_box_is_centred_with_longest_side_two(seed):
    mu = geom.measure(_cloud(seed) * 40 - 7, normalize="box")
    lo, hi = mu.support[0].amin(0), mu.support[0].amax(0)
    torch.testing.assert_close(lo + hi, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (hi - lo).max().item() == pytest.approx(2.0, abs=1e-12)
    assert (hi - lo).min().item() < 1.9  # the other sides are not stretched to 2


def test_sw_is_scale_and_translation_free_after_normalisation():
    """Two shapes in different units and places: after normalisation SW is that of the unit-size shapes."""
    a, b = _cloud(0), _cloud(1) ** 2
    theta = _directions()
    for how in ("sphere", "box"):
        want = geom.sliced_wasserstein(geom.measure(a, normalize=how), geom.measure(b, normalize=how), directions=theta)
        moved = geom.measure(1000.0 * b + torch.tensor([5.0, -3.0, 2.0], dtype=torch.float64), normalize=how)
        got = geom.sliced_wasserstein(geom.measure(0.01 * a, normalize=how), moved, directions=theta)
        assert got.item() == pytest.approx(want.item(), rel=1e-9)
        raw = geom.sliced_wasserstein(0.01 * a, 1000.0 * b, directions=theta).item()
        assert abs(raw - want.item()) > 100 * want.item()  # without it the value is mostly the units


def test_sphere_normalisation_is_rotation_equivariant_and_box_is_not():
    x, R = _cloud(2), _rotation(3)
    t = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    y = 2.5 * x @ R.T + t  # a scaled, rotated and translated copy
    sphere = geom.measure(x, normalize="sphere").support[0]
    torch.testing.assert_close(geom.measure(y, normalize="sphere").support[0], sphere @ R.T)
    box = geom.measure(x, normalize="box").support[0]
    assert not torch.allclose(geom.measure(y, normalize="box").support[0], box @ R.T, atol=1e-3)
    # so SW between a shape and its moved copy, sliced along the rotated directions, is that of the shape itself
    b = geom.measure(_cloud(4), normalize="sphere")
    b_moved = geom.measure(3.0 * b.support[0] @ R.T - t, normalize="sphere")
    theta = _directions()
    want = geom.sliced_wasserstein(geom.measure(x, normalize="sphere"), b, directions=theta)
    got = geom.sliced_wasserstein(geom.measure(y, normalize="sphere"), b_moved, directions=theta @ R.T)
    assert got.item() == pytest.approx(want.item(), rel=1e-9)


def test_real_meshes_in_different_units():
    mesh_m = geom.io.read_mesh(SAMPLES / "torus.ply")
    v, f = geom.io.read_mesh(SAMPLES / "ellipsoid.ply")
    mesh_mm = (1000.0 * v, f)
    theta = _directions().float()
    for kind in ("mesh", "mesh-discrete"):
        opts = {"n_samples": 256} if kind == "mesh" else {}
        raw = geom.sliced_wasserstein(geom.measure(mesh_m, kind=kind, **opts), geom.measure(mesh_mm, kind=kind, **opts),
                                      directions=theta).item()
        a = geom.measure(mesh_m, kind=kind, normalize="sphere", **opts)
        b = geom.measure(mesh_mm, kind=kind, normalize="sphere", **opts)
        b_m = geom.measure((v, f), kind=kind, normalize="sphere", **opts)
        value = geom.sliced_wasserstein(a, b, directions=theta).item()
        assert value == pytest.approx(geom.sliced_wasserstein(a, b_m, directions=theta).item(), rel=1e-4)
        assert value < 1 < raw  # unit-size shapes; the raw value is in millimetres


def test_each_item_of_a_batch_is_normalised_on_its_own():
    x = torch.stack([_cloud(0), 50.0 * _cloud(1) + 9.0])  # (2, 60, 3)
    for how in ("sphere", "box"):
        batch = geom.measure(x, normalize=how)
        assert batch.batched and batch.support.shape == (2, 60, 3)
        for k in range(2):
            torch.testing.assert_close(batch.support[k], geom.measure(x[k], normalize=how).support[0])
        centre, scale = normalization(geom.measure(x), how)
        assert centre.shape == (2, 3) and scale.shape == (2,) and scale[1] > 40 * scale[0]


def test_zero_weight_points_are_ignored_and_moved_alike():
    x = _cloud(5, 10)
    far = torch.cat([x, torch.full((2, 3), 1e4, dtype=torch.float64)])  # two far points of weight zero
    w = torch.cat([torch.ones(10, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)])
    for how in ("sphere", "box"):
        plain, padded = geom.measure(x, normalize=how), geom.measure(far, weights=w, normalize=how)
        torch.testing.assert_close(padded.support[0, :10], plain.support[0])
        c, s = normalization(geom.measure(x), how)
        torch.testing.assert_close(padded.support[0, 10:], (far[10:] - c) / s)  # the same map, not clamped
        torch.testing.assert_close(padded.weights, geom.measure(far, weights=w).weights)


def test_varifold_normals_untouched_and_centroids_as_mesh_discrete():
    v, f = geom.io.read_mesh(SAMPLES / "cube.ply")
    mesh = (10.0 * v + 4.0, f)
    plain = geom.measure(mesh, kind="varifold", normal_scale=0.5)
    for how in ("sphere", "box"):
        mu = geom.measure(mesh, kind="varifold", normal_scale=0.5, normalize=how)
        assert mu.support.shape[-1] == 6 and mu.kind == "varifold"
        assert torch.equal(mu.support[..., 3:], plain.support[..., 3:])
        torch.testing.assert_close(mu.support[..., :3], geom.measure(mesh, kind="mesh-discrete", normalize=how).support)
        centre, scale = normalization(plain, how)
        assert centre.shape == (1, 3) and scale.shape == (1,)


def test_a_measure_is_normalised_and_the_map_is_a_fixed_similarity():
    x = (_cloud(6) * 3).requires_grad_()
    mu = geom.measure(x)
    nu = geom.measure(mu, normalize="sphere")
    assert nu is not mu and (nu.kind, nu.batched, nu.uniform) == ("points", False, True)
    torch.testing.assert_close(nu.support, mu.normalized("sphere").support)
    nu.support.sum().backward()  # centre and scale are constants: d/dx of (x - c) / s is 1 / s
    _, scale = normalization(mu, "sphere")
    torch.testing.assert_close(x.grad, torch.full_like(x, 1 / scale.item()))
    assert nu.dtype == torch.float64 and geom.measure(x.float(), normalize="box").dtype == torch.float32
    with pytest.raises(ValueError, match="obj"):
        geom.measure(mu, weights=torch.ones(60), normalize="sphere")


def test_a_single_point_is_only_centred():
    mu = geom.measure([[3.0, 4.0], [3.0, 4.0]], normalize="sphere")
    assert mu.support[0].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert normalization(geom.measure([[2.0, 1.0]]), "box")[1].tolist() == [1.0]


def test_bool_normalize_still_reaches_the_sphere_kind():
    x = [[3.0, 0.0, 0.0], [0.0, 0.0, -0.5]]
    mu = geom.measure(x, kind="sphere", normalize=True)
    assert mu.kind == "sphere" and mu.support[0].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]
    with pytest.raises(ValueError, match="normalize=True"):  # the sphere kind's own check, as before
        geom.measure(x, kind="sphere", normalize=False)
    with pytest.raises(TypeError, match="unknown options for kind 'points'"):
        geom.measure(x, normalize=True)


@pytest.mark.parametrize("kind", ["sphere", "spd", "spd-affine", "graph"])
def test_kinds_without_positions_are_refused(kind):
    with pytest.raises(ValueError, match=rf"normalize: .* kind {kind!r}"):
        geom.measure(np.eye(3)[None].repeat(2, 0), kind=kind, normalize="box")
    with pytest.raises(ValueError, match=r"how: .* kind 'sphere'.*normalize=True"):
        geom.measure([[1.0, 0.0], [0.0, 1.0]], kind="sphere").normalized("sphere")


def test_bad_normalize_values_are_named():
    with pytest.raises(ValueError, match=r"normalize: expected 'sphere', 'box' or None .*got str 'ball'"):
        geom.measure([[0.0, 1.0]], normalize="ball")
    with pytest.raises(TypeError, match=r"normalize: expected 'sphere', 'box' or None .*got int 1"):
        geom.measure([[0.0, 1.0]], normalize=1)
    with pytest.raises(ValueError, match="how: expected 'sphere' or 'box', got None"):
        geom.measure([[0.0, 1.0]]).normalized(None)
    with pytest.raises(TypeError, match="measure: expected a geom.Measure, got ndarray"):
        normalization(np.zeros((2, 3)), "box")


def test_padding_thrown_beyond_the_dtype_is_an_error():
    x = torch.tensor([[0.0], [1e-30], [3e38]])  # the spread is 1e-30; the zero-weight point lands at 3e68
    with pytest.raises(ValueError, match=r"how: the 'box' normalisation takes points beyond the range of torch.float32 \(points of weight zero"):
        geom.measure(x, weights=[1, 1, 0]).normalized("box")
    assert math.isfinite(geom.measure(x[:2], normalize="box").support.abs().max().item())
