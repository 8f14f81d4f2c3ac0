"""geom.losses: the modules equal the functional API (values and gradients), keep their scheme's state and
their generator across steps, round-trip through state_dict (and the safe checkpoint format), and name
the argument on bad input."""

import pytest
import torch

import geom
from geom import _state
from geom.losses import ChamferLoss, SlicedEnergyLoss, SlicedWassersteinLoss
from geom.sliced import resolve_scheme


def clouds(B=3, N=40, M=50, d=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, d, generator=g, dtype=dtype)
    y = 0.5 * torch.randn(B, M, d, generator=g, dtype=dtype) + torch.linspace(0, 1, d, dtype=dtype)
    return x, y


SCHEMES = ["mc", "qmc", "reservoir", "cv", "max", "vmf-dsw", "dsw"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sw_loss_equals_functional_value_and_gradient(scheme):
    """Same scheme (a fresh instance each side), same seed: the same value and the same gradient, item by item."""
    x, y = clouds()
    opts = {"n_steps": 3} if scheme in ("max", "vmf-dsw", "dsw") else {}
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss = SlicedWassersteinLoss(scheme, n_projections=24, reduction="none", seed=7, **opts)
    got = loss(x1, y)
    want = geom.sliced_wasserstein(x2, y, scheme=scheme, n_projections=24, seed=7, **opts)
    assert got.shape == (3,)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=0)


@pytest.mark.parametrize("reduction, fold", [("mean", torch.mean), ("sum", torch.sum), ("none", lambda v: v)])
def test_reductions_weights_and_p(reduction, fold):
    x, y = clouds(N=30, M=30)
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 30, generator=g), torch.rand(3, 30, generator=g)
    loss = SlicedWassersteinLoss(n_projections=16, p=3, reduction=reduction, seed=2)
    want = geom.sliced_wasserstein(geom.measure(x, weights=a), geom.measure(y, weights=b), p=3, n_projections=16,
                                   seed=2)
    torch.testing.assert_close(loss(x, y, a, b), fold(want), rtol=0, atol=0)


def test_unbatched_clouds_and_feature_batches():
    """An (N, d) pair (a feature batch: d = 16 features) gives a scalar whatever the reduction, equal to the
    functional; a single cloud broadcasts against a batch."""
    g = torch.Generator().manual_seed(3)
    f, h = torch.randn(64, 16, generator=g), torch.randn(48, 16, generator=g) + 0.3
    for reduction in ("mean", "none"):
        loss = SlicedWassersteinLoss(n_projections=32, reduction=reduction, seed=5)
        value = loss(f, h)
        assert value.shape == ()
        torch.testing.assert_close(value, geom.sliced_wasserstein(f, h, n_projections=32, seed=5), rtol=0, atol=0)
    x, y = clouds()
    loss = SlicedWassersteinLoss(n_projections=8, reduction="none", seed=0)
    torch.testing.assert_close(loss(x, y[0]), geom.sliced_wasserstein(x, y[0], n_projections=8, seed=0))


def test_directions_given_override_the_scheme():
    x, y = clouds()
    theta = torch.nn.functional.normalize(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    loss = SlicedWassersteinLoss(n_projections=99, seed=0)
    before = loss.generator.get_state()
    torch.testing.assert_close(loss(x, y, directions=theta), geom.sliced_wasserstein(x, y, directions=theta).mean())
    assert torch.equal(loss.generator.get_state(), before)  # the generator is not used


def test_generator_advances_like_one_seeded_generator():
    """Call k of the module equals call k of the functional on one torch.Generator().manual_seed(seed)."""
    x, y = clouds()
    loss = SlicedWassersteinLoss(n_projections=16, seed=11)
    g = torch.Generator().manual_seed(11)
    values = [loss(x, y) for _ in range(3)]
    for v in values:
        torch.testing.assert_close(v, geom.sliced_wasserstein(x, y, n_projections=16, generator=g).mean(),
                                   rtol=0, atol=0)
    assert len({float(v) for v in values}) == 3  # fresh directions at every call


def test_unseeded_module_follows_torch_manual_seed():
    x, y = clouds()
    torch.manual_seed(123)
    a = SlicedWassersteinLoss(n_projections=16)(x, y)
    torch.manual_seed(123)
    b = SlicedWassersteinLoss(n_projections=16)(x, y)
    torch.manual_seed(124)
    c = SlicedWassersteinLoss(n_projections=16)(x, y)
    assert a.item() == b.item() and a.item() != c.item()


def test_reservoir_state_lasts_across_steps():
    """The module's reservoir fills at the first step and serves the next: the second value equals a second
    call on one functional instance, and differs from a fresh instance's second draw."""
    x, y = clouds()
    loss = SlicedWassersteinLoss("reservoir", n_projections=32, seed=4)
    ref, g = resolve_scheme("reservoir"), torch.Generator().manual_seed(4)
    fresh_g = torch.Generator().manual_seed(4)
    for step in range(3):
        got = loss(x, y)
        want = geom.sliced_wasserstein(x, y, scheme=ref, n_projections=32, generator=g).mean()
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        fresh = geom.sliced_wasserstein(x, y, scheme="reservoir", n_projections=32, generator=fresh_g).mean()
        if step == 0:  # both start empty
            assert got.item() == fresh.item()
        else:
            assert got.item() != fresh.item()
        assert loss.scheme.reservoir.shape[0] > 0
    torch.testing.assert_close(loss.scheme.reservoir, ref.reservoir, rtol=0, atol=0)


def test_learned_scheme_warm_starts_inside_the_module():
    """max-sliced keeps its direction: after a few steps the module's value matches one functional instance
    called as often, and a cold start with no ascent (n_steps=0) is lower."""
    x, y = clouds()
    loss = SlicedWassersteinLoss("max", n_projections=3, reduction="none", seed=0, n_steps=5)
    ref, g = resolve_scheme("max", {"n_steps": 5}), torch.Generator().manual_seed(0)
    for _ in range(3):
        got = loss(x, y)
        torch.testing.assert_close(got, geom.sliced_wasserstein(x, y, scheme=ref, n_projections=3, generator=g),
                                   rtol=0, atol=0)
    assert loss.scheme.direction_.shape == (3, 3)
    cold = geom.sliced_wasserstein(x, y, scheme="max", n_projections=3, seed=0, n_steps=0)
    assert bool((got >= cold - 1e-6).all()) and bool((got > cold + 1e-3).any())


@pytest.mark.parametrize("scheme", ["reservoir", "max", "vmf-dsw"])
def test_state_dict_round_trip_continues_exactly(scheme, tmp_path):
    """A fresh module (another seed) given the state dict, through the safe .npz format, continues the first."""
    x, y = clouds()
    opts = {"n_steps": 3} if scheme != "reservoir" else {}
    a = SlicedWassersteinLoss(scheme, n_projections=8, seed=1, **opts)
    for _ in range(2):
        a(x, y)
    arrays, skeleton = _state.flatten(a.state_dict())
    _state.save_npz(tmp_path / "loss.npz", arrays, {"skeleton": skeleton})
    arrays, meta = _state.load_npz(tmp_path / "loss.npz")
    b = SlicedWassersteinLoss(scheme, n_projections=8, seed=99, **opts)
    b.load_state_dict(_state.unflatten(arrays, meta["skeleton"]))
    for _ in range(2):
        torch.testing.assert_close(b(x, y), a(x, y), rtol=0, atol=0)


def test_state_dict_refuses_a_foreign_state():
    a = SlicedWassersteinLoss("max", n_projections=4, seed=0)
    b = SlicedWassersteinLoss("reservoir", n_projections=4, seed=0)
    with pytest.raises(ValueError):
        b.load_state_dict(a.state_dict())
    bad = a.state_dict()
    bad["_extra_state"] = {"generator": torch.zeros(3, dtype=torch.uint8), "scheme": {}}
    with pytest.raises(ValueError, match="generator"):
        a.load_state_dict(bad)


def test_to_device_and_dtype(device):
    x, y = clouds(dtype=torch.float64)
    loss = SlicedWassersteinLoss(n_projections=16, seed=0).to(device)
    value = loss(x.to(device), y.to(device))
    assert value.device.type == device.type and value.dtype == torch.float64
    torch.testing.assert_close(value.cpu(), geom.sliced_wasserstein(x, y, n_projections=16, seed=0).mean())
    chamfer = ChamferLoss().to(device)(x.to(device), y.to(device))
    torch.testing.assert_close(chamfer.cpu(), geom.chamfer_distance(x, y).mean())


def test_energy_loss_equals_functional():
    x, y = clouds()
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    for scheme in ("mc", "qmc"):
        loss = SlicedEnergyLoss(scheme, n_projections=32, reduction="sum", seed=3)
        got = loss(x1, y)
        want = geom.sliced_energy_distance(x2, y, scheme=scheme, n_projections=32, seed=3).sum()
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        got.backward()
        want.backward()
        torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["dense", "auto"])
def test_chamfer_loss_equals_functional(backend):
    x, y = clouds()
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = ChamferLoss("none", backend=backend)(x1, y)
    want = geom.chamfer_distance(x2, y, backend=backend)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=0)


@pytest.mark.keops
def test_chamfer_loss_keops_backend_matches_dense():
    from geom import _keops

    if _keops.failure("nearest", 3, torch.float32, torch.device("cpu")) is not None:
        pytest.skip("pykeops does not compile here")
    x, y = clouds(N=200, M=150)
    torch.testing.assert_close(ChamferLoss(backend="keops")(x, y), ChamferLoss(backend="dense")(x, y),
                               rtol=1e-5, atol=1e-6)


def test_finite_difference_gradients_float64():
    """torch.autograd.gradcheck on small float64 clouds (directions fixed, so each call is the same function)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 5, 3, generator=g, dtype=torch.float64) + 0.5
    theta = torch.nn.functional.normalize(torch.randn(7, 3, generator=g, dtype=torch.float64), dim=1)
    sw = SlicedWassersteinLoss(p=2)
    assert torch.autograd.gradcheck(lambda x: sw(x, y, directions=theta), (x,))
    energy = SlicedEnergyLoss()
    assert torch.autograd.gradcheck(lambda x: energy(x, y, directions=theta), (x,))
    chamfer = ChamferLoss(backend="dense")
    assert torch.autograd.gradcheck(lambda x: chamfer(x, y), (x,))
    w = torch.rand(2, 6, generator=g, dtype=torch.float64).add(0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: sw(x.detach(), y, w, directions=theta), (w,))


@pytest.mark.parametrize("make, match", [
    (lambda: SlicedWassersteinLoss(reduction="avg"), "reduction"),
    (lambda: SlicedWassersteinLoss(p=0.5), "p"),
    (lambda: SlicedWassersteinLoss(n_projections=0), "n_projections"),
    (lambda: SlicedWassersteinLoss(scheme="no-such-scheme"), "scheme"),
    (lambda: SlicedWassersteinLoss(seed=1, generator=torch.Generator()), "seed, generator"),
    (lambda: SlicedWassersteinLoss(generator="g"), "generator"),
    (lambda: SlicedWassersteinLoss("mc", bogus=1), "bogus"),
    (lambda: SlicedEnergyLoss("max"), "scheme"),
    (lambda: ChamferLoss(backend="gpu"), "backend"),
    (lambda: ChamferLoss(reduction=None), "reduction"),
])
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


@pytest.mark.parametrize("call, error, match", [
    (lambda f, x: f(x[0, 0], x), ValueError, "x: expected shape"),
    (lambda f, x: f(x[None], x), ValueError, "x: expected shape"),
    (lambda f, x: f(x, x.tolist()), TypeError, "y: expected a torch.Tensor"),
    (lambda f, x: f(x, x.long()), TypeError, "y: expected a floating-point"),
    (lambda f, x: f(x, x, torch.ones(2, 9)), ValueError, "x_weights: expected shape"),
    (lambda f, x: f(x, x, None, [1.0]), TypeError, "y_weights"),
    (lambda f, x: f(x, x, -torch.ones(2, 10)), ValueError, "x_weights"),
    (lambda f, x: f(x, x[..., :2]), ValueError, "dimension"),
    (lambda f, x: f(x, x[:1].expand(3, -1, -1).contiguous()), ValueError, "batch"),
])
@pytest.mark.parametrize("cls", [SlicedWassersteinLoss, SlicedEnergyLoss, ChamferLoss])
def test_bad_inputs_name_the_argument(cls, call, error, match):
    x = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(error, match=match):
        call(cls(), x)
