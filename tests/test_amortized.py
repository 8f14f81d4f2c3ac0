"""Amortized projections (geom.losses.amortized, geom_plugins.amortized): the models are permutation invariant
and symmetric, the scheme slices each item of a batch by its own law through the one estimator, the
adversarial gradients are the ones documented, an ascent finds a clearly best direction, and the state
round-trips."""

import math

import pytest
import torch

import geom
import geom.testing
from geom import _state
from geom.losses import SlicedEnergyLoss, SlicedWassersteinLoss
from geom.losses.amortized import VARIANTS, AmortizedModel, amortized_model
from geom_plugins import amortized as plugin
from geom_plugins.amortized import AmortizedMaxSliced, AmortizedVonMisesFisher

SCHEMES = [AmortizedVonMisesFisher, AmortizedMaxSliced]


def pair(B=3, N=40, M=30, d=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, d, generator=g, dtype=dtype) * torch.tensor([1.5, 0.5, 0.2], dtype=dtype)[:d]
    y = 0.4 * torch.randn(B, M, d, generator=g, dtype=dtype) + 0.3
    return x, y


def householder(eps: torch.Tensor) -> torch.Tensor:
    """``(d, d)`` orthogonal Q whose first column is eps (a QR completion, independent of the plugin's map)."""
    d = eps.shape[0]
    basis = torch.cat([eps[:, None], torch.eye(d, dtype=eps.dtype)], 1)
    q, _ = torch.linalg.qr(basis)
    return q * torch.sign(q[:, :1].T @ eps)  # first column = +eps


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_model_is_symmetric_and_permutation_invariant(variant):
    x, y = pair(dtype=torch.float32)
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(3, 40, generator=g) + 0.1, torch.rand(3, 30, generator=g) + 0.1
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    f = amortized_model(variant, 3, seed=2)
    out = f(x, y, a, b)
    assert out.shape == (3, 3)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert torch.equal(f(y, x, b, a), out)  # symmetric, exactly
    px, py = torch.randperm(40, generator=g), torch.randperm(30, generator=g)
    torch.testing.assert_close(f(x[:, px], y[:, py], a[:, px], b[:, py]), out, rtol=1e-5, atol=1e-6)
    # padding: points of zero weight change nothing
    xp = torch.cat([x, 100 * torch.randn(3, 5, 3, generator=g)], 1)
    ap = torch.cat([a, torch.zeros(3, 5)], 1)
    torch.testing.assert_close(f(xp, y, ap, b), out, rtol=1e-5, atol=1e-6)
    # batched: item by item
    torch.testing.assert_close(torch.cat([f(x[i:i + 1], y[i:i + 1], a[i:i + 1], b[i:i + 1]) for i in range(3)]), out,
                               rtol=1e-5, atol=1e-6)
    # the data matter: another pair, another direction (the model is not a constant)
    assert not torch.allclose(f(2 * x + 1, y, a, b), out, atol=1e-3)


def test_models_are_seeded_and_leave_the_global_rng():
    before = torch.random.get_rng_state()
    for variant in VARIANTS:
        one, two = amortized_model(variant, 3, seed=4), amortized_model(variant, 3, seed=4)
        other = amortized_model(variant, 3, seed=5)
        for p, q, r in zip(one.parameters(), two.parameters(), other.parameters()):
            assert torch.equal(p, q) and not torch.equal(p, r)
    assert torch.equal(before, torch.random.get_rng_state())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("cls", SCHEMES)
def test_each_item_is_sliced_by_its_own_law(cls, variant):
    """The batch value equals, item by item, geom.sliced_wasserstein along the item's own directions Q_b Z
    (Q_b the documented orthogonal map with Q_b e_0 = epsilon_b, Z the shared draws the result reports)."""
    x, y = pair()
    scheme = cls(variant=variant, model_seed=1)
    scheme.model.double()
    result = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=25, seed=3, return_result=True)
    eps, z = scheme.location_, result.directions  # (B, d), (L, d) shared draws around e_0
    assert result.value.shape == (3,)
    for b in range(3):
        theta = z @ plugin_map(eps[b]).T  # (L, d): item b's directions
        torch.testing.assert_close(theta.norm(dim=1), torch.ones(25, dtype=torch.float64))
        want = geom.sliced_wasserstein(x[b], y[b], directions=theta)
        torch.testing.assert_close(result.value[b], want, rtol=1e-12, atol=1e-12)
        if cls is AmortizedMaxSliced:  # the slice is epsilon_b itself
            torch.testing.assert_close(theta, eps[b].expand(25, 3), rtol=0, atol=1e-12)
            assert math.isnan(result.stderr[b])
        else:
            assert result.stderr[b] > 0


def plugin_map(eps: torch.Tensor) -> torch.Tensor:
    """The orthogonal map of the plugin's docstring, ``Q = sigma (I - 2 h h^T)``, ``h = (e_0 - sigma eps)/|.|``."""
    sigma = -1.0 if eps[0] > 0 else 1.0
    h = -sigma * eps
    h[0] += 1.0
    h = h / h.norm()
    q = sigma * (torch.eye(eps.shape[0], dtype=eps.dtype) - 2 * torch.outer(h, h))
    torch.testing.assert_close(q[:, 0], eps)  # Q e_0 = eps
    torch.testing.assert_close(q @ q.T, torch.eye(eps.shape[0], dtype=eps.dtype))
    return q


def test_vmf_draws_have_the_law_around_each_location():
    """Item b's directions Q_b Z have the mean resultant of vMF(epsilon_b, kappa) on S^2, coth(k) - 1/k, along
    epsilon_b, and no mean component orthogonal to it (within 5 standard errors, 4000 draws)."""
    x, y = pair()
    kappa = 4.0
    scheme = AmortizedVonMisesFisher(variant="efficient", kappa=kappa)
    scheme.model.double()
    result = geom.sliced_wasserstein(x, y, scheme=scheme, n_projections=4000, seed=0, return_result=True)
    mean = 1 / math.tanh(kappa) - 1 / kappa
    for b in range(3):
        eps = scheme.location_[b]
        theta = result.directions @ plugin_map(eps).T
        along = theta @ eps
        assert abs(along.mean().item() - mean) < 5 * along.std().item() / math.sqrt(4000)
        other = householder(eps)[:, 1:]  # (d, d - 1) orthonormal complement of eps
        side = theta @ other
        assert bool((side.mean(0).abs() < 5 * side.std(0) / math.sqrt(4000)).all())


def test_unbatched_pair_and_given_directions():
    x, y = pair()
    scheme = AmortizedVonMisesFisher(variant="linear")
    value = SlicedWassersteinLoss(scheme, n_projections=16, seed=0)(x[0].float(), y[0].float())
    assert value.shape == () and value > 0 and scheme.location_.shape == (1, 3)
    theta = torch.nn.functional.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    loss = SlicedWassersteinLoss(AmortizedMaxSliced(), reduction="none")
    torch.testing.assert_close(loss(x.float(), y.float(), directions=theta),
                               geom.sliced_wasserstein(x.float(), y.float(), directions=theta))


def test_gradients_main_model_and_reversal():
    """The main model's gradient is that of SW at the item's directions held fixed; psi's gradient with
    reverse_gradient=True is exactly minus the one without."""
    x, y = pair()
    grads = {}
    for reverse in (True, False):
        loss = SlicedWassersteinLoss(AmortizedVonMisesFisher(variant="efficient", reverse_gradient=reverse),
                                     n_projections=12, seed=2).double()
        xr = x.clone().requires_grad_(True)
        loss(xr, y).backward()
        grads[reverse] = ([p.grad.clone() for p in loss.scheme_parameters()], xr.grad, loss.scheme.location_)
    for p, q in zip(grads[True][0], grads[False][0]):
        assert torch.equal(p, -q) and p.abs().sum() > 0
    assert torch.equal(grads[True][1], grads[False][1])
    # the main gradient against the functional, item by item along fixed directions
    eps = grads[True][2]
    z = geom.sliced_wasserstein(x, y, scheme=AmortizedVonMisesFisher(variant="efficient"), n_projections=12,
                                seed=2, return_result=True).directions
    xf = x.clone().requires_grad_(True)
    total = sum(geom.sliced_wasserstein(xf[b], y[b], directions=z.double() @ plugin_map(eps[b]).T) for b in range(3))
    (total / 3).backward()
    torch.testing.assert_close(grads[True][1], xf.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", SCHEMES)
def test_finite_difference_gradients_in_psi(cls):
    """gradcheck in float64 on the linear model's weights (the generator rewound at each call, so every
    evaluation draws the same Z). The clouds reach the network detached, by design (the main model's
    gradient is that of SW at the predicted directions, checked above), so x is not an input here."""
    x, y = pair(B=2, N=6, M=5)
    loss = SlicedWassersteinLoss(cls(variant="linear", reverse_gradient=False), n_projections=5, seed=0).double()
    start = loss.generator.get_state()
    names = ["scheme_modules.model.value.weight", "scheme_modules.model.value.bias"]
    w0 = [dict(loss.named_parameters())[n].detach().clone().requires_grad_(True) for n in names]

    def value(w, c):
        loss.generator.set_state(start)
        return torch.func.functional_call(loss, {names[0]: w, names[1]: c}, (x, y))

    assert torch.autograd.gradcheck(value, tuple(w0))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("cls", SCHEMES)
def test_ascent_finds_the_clearly_best_direction(cls, variant):
    """X stretched along u, Y a small round blob: W_2 along theta is largest at +-u. A few steps of the
    documented loop (one backward, a minimising Adam on psi, the gradient reversed) raise W_2 along the
    predicted location from its start to near the best, on every one of four seeds."""
    u = torch.nn.functional.normalize(torch.tensor([1.0, 2.0, -1.0]), dim=0)
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(2, 128, 3, generator=g)
        x = 0.15 * z + 2.0 * z[..., :1] * u  # (2, 128, 3): std 2 along u
        y = 0.15 * torch.randn(2, 96, 3, generator=g)
        loss = SlicedWassersteinLoss(cls(variant=variant, model_seed=seed, kappa=20.0) if cls is AmortizedVonMisesFisher
                                     else cls(variant=variant, model_seed=seed), n_projections=16, seed=seed)
        opt = torch.optim.Adam(loss.scheme_parameters(), lr=0.1)

        def along():  # W_2 of each item along its predicted location
            eps = loss.scheme.location_.float()
            return torch.stack([geom.sliced_wasserstein(x[b], y[b], directions=eps[b:b + 1]) for b in range(2)])

        best = torch.stack([geom.sliced_wasserstein(x[b], y[b], directions=u[None]) for b in range(2)])
        for step in range(40):
            value = loss(x, y)
            if step == 0:
                start = along()
            opt.zero_grad()
            value.backward()
            opt.step()
        loss(x, y)
        end = along()
        assert bool((end >= start - 1e-4).all()), (seed, start, end)
        assert bool((end >= 0.95 * best).all()), (seed, end, best)


def test_state_dict_round_trip_through_the_safe_format(tmp_path):
    x, y = pair(dtype=torch.float32)
    def make():
        return SlicedWassersteinLoss(AmortizedVonMisesFisher(variant="efficient"), n_projections=8, seed=1)

    a = make()
    opt = torch.optim.Adam(a.scheme_parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        a(x, y).backward()
        opt.step()
    arrays, skeleton = _state.flatten(a.state_dict())
    _state.save_npz(tmp_path / "loss.npz", arrays, {"skeleton": skeleton})
    arrays, meta = _state.load_npz(tmp_path / "loss.npz")
    b = make()
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # trained != fresh
    b.load_state_dict(_state.unflatten(arrays, meta["skeleton"]))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    for _ in range(2):
        assert torch.equal(a(x, y), b(x, y))
    assert any(k.startswith("scheme_modules.model.") for k in a.state_dict())
    assert "model" not in a.state_dict()["_extra_state"]["scheme"]  # the weights once, as module entries


def test_to_device_moves_the_network(device):
    x, y = pair(dtype=torch.float32)
    loss = SlicedWassersteinLoss(AmortizedMaxSliced(variant="attention"), n_projections=1, seed=0).to(device)
    assert all(p.device.type == device.type for p in loss.scheme_parameters())
    value = loss(x.to(device), y.to(device))
    assert value.device.type == device.type and torch.isfinite(value)


@pytest.mark.parametrize("cls", SCHEMES)
def test_contract(cls):
    geom.testing.check_scheme(cls, variant="linear")
    geom.testing.check_scheme(cls, dims=(3,), variant="efficient")


def test_plugin_registers_both_names():
    seen = {}
    plugin.geom_register_schemes(lambda name, cls: seen.setdefault(name, cls))
    assert seen == {"amortized-max": AmortizedMaxSliced, "amortized-vmf-dsw": AmortizedVonMisesFisher}


@pytest.mark.parametrize("make, error, match", [
    (lambda: AmortizedVonMisesFisher(variant="transformer"), ValueError, "variant"),
    (lambda: AmortizedVonMisesFisher(kappa=0), ValueError, "kappa"),
    (lambda: AmortizedMaxSliced(reverse_gradient="yes"), TypeError, "reverse_gradient"),
    (lambda: AmortizedMaxSliced(hidden=0), ValueError, "hidden"),
    (lambda: AmortizedMaxSliced(dim=0), ValueError, "dim"),
    (lambda: AmortizedMaxSliced(kappa=3.0), TypeError, "kappa"),
    (lambda: amortized_model("mlp", 3), ValueError, "variant"),
    (lambda: SlicedEnergyLoss(AmortizedMaxSliced()), ValueError, "scheme"),
])
def test_bad_options(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs_name_the_argument():
    f = amortized_model("efficient", 3)
    x = torch.randn(2, 10, 3)
    with pytest.raises(ValueError, match="x: expected a \\(B, N, 3\\)"):
        f(x[..., :2], x)
    with pytest.raises(ValueError, match="b: expected weights of shape"):
        f(x, x, None, torch.ones(2, 9))
    with pytest.raises(ValueError, match="x, y: expected the same batch size"):
        f(x, x[:1])
    with pytest.raises(ValueError, match="mu: .*dim=3"):
        SlicedWassersteinLoss(AmortizedVonMisesFisher())(torch.randn(2, 10, 2), torch.randn(2, 10, 2))
    assert isinstance(f, AmortizedModel)


def test_deepcopy_keeps_one_network():
    """A copied loss holds one network, shared by its scheme and its registered modules, and continues alike."""
    import copy

    x, y = pair(dtype=torch.float32)
    a = SlicedWassersteinLoss(AmortizedVonMisesFisher(variant="linear"), n_projections=8, seed=0)
    a(x, y)
    b = copy.deepcopy(a)
    assert b.scheme.model is b.scheme_modules["model"] and b.scheme.model is not a.scheme.model
    assert torch.equal(a(x, y), b(x, y))
