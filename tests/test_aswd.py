"""The ``"aswd"`` scheme: augmented sliced Wasserstein distance (Chen, Yang, Li, 2022).

The lifting is checked against a numpy forward pass of the network and by finite differences; the
value against POT's sliced Wasserstein distance on the lifted points and, for ``f = 0``, against
the closed form ``|theta_(1..d)|^p W_p^p`` per slice; the training by the objective it climbs and by
its separation of shapes compared with plain SW.
"""

import math

import numpy as np
import ot
import pytest
import torch

import geom
import geom.testing
from geom.measures import Measure
from geom_datasets import shapes
from geom_plugins.aswd import Augmented


def _clouds(B=2, N=30, M=25, d=3, seed=0, dtype=torch.float64):
    """Two weighted batches ``(B, N, d)``, ``(B, M, d)`` that differ in shape and position."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, d, generator=g, dtype=dtype)
    y = torch.randn(B, M, d, generator=g, dtype=dtype) * torch.linspace(1.2, 0.3, d, dtype=dtype) + 0.5
    wx = torch.rand(B, N, generator=g, dtype=dtype) + 0.2
    wy = torch.rand(B, M, generator=g, dtype=dtype) + 0.2
    return geom.measure(x, weights=wx), geom.measure(y, weights=wy)


def _unit(n, d, seed, dtype=torch.float64):
    theta = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return theta / theta.norm(dim=1, keepdim=True)


def _numpy_f(net, x, b):
    """The network of item ``b`` evaluated with numpy: ``leaky_relu(x W1 + b1) W2 + b2``."""
    w1, b1, w2, b2 = (t.detach().double().numpy()[b] for t in (net.w1, net.b1, net.w2, net.b2))
    h = x @ w1 + b1
    return np.where(h > 0, h, 0.2 * h) @ w2 + b2


def _fitted(mu, nu, seed=0, **options):
    scheme = Augmented(**options)
    scheme.fit(mu, nu, p=2.0, generator=torch.Generator().manual_seed(seed))
    return scheme


def _surface(mesh, n, seed):
    """``n`` float64 points of a generated mesh, area-uniform (``geom.measure`` samples meshes)."""
    import trimesh

    return geom.measure(trimesh.Trimesh(*mesh), n_samples=n, seed=seed).to(torch.float64)


def test_aswd_honours_the_scheme_contract():
    geom.testing.check_scheme(Augmented)
    geom.testing.check_scheme(Augmented, dims=(2, 3), lifted_dim=1, n_steps=2, hidden=4)


def test_lift_is_x_then_the_network():
    mu, nu = _clouds()
    scheme = _fitted(mu, nu, n_steps=5)
    lifted = scheme.lift(mu)
    x = mu.support
    assert lifted.support.shape == (2, 30, 3 + 3)
    # injective by construction: the first d coordinates are x itself, bit for bit
    assert torch.equal(lifted.support[..., :3], x)
    assert torch.equal(lifted.weights, mu.weights)
    assert (lifted.kind, lifted.batched, lifted.uniform) == ("points", True, False)
    for b in range(2):  # every item of the batch has its own network
        expected = _numpy_f(scheme.net_, x[b].numpy(), b)
        np.testing.assert_allclose(lifted.support[b, :, 3:].numpy(), expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(scheme.net_.w1[0], scheme.net_.w1[1])
    x0, y0 = geom.measure(x[0, :4]), geom.measure(nu.support[0])  # unbatched: (N, d) in, flag kept
    single = _fitted(x0, y0, n_steps=1).lift(x0)
    assert single.batched is False and single.support.shape == (1, 4, 6)


def test_lift_is_differentiable_in_the_support():
    mu, nu = _clouds(B=1, N=4, M=5)
    scheme = _fitted(mu, nu, n_steps=10)  # non-zero biases: no kink of the LeakyReLU at the points
    x = mu.support.detach().clone().requires_grad_(True)

    def lifted(x):
        return scheme.lift(Measure(x, mu.weights, kind="points", batched=True, uniform=False)).support

    assert torch.autograd.gradcheck(lifted, (x,), eps=1e-6, atol=1e-7)
    # d/dx sum(g(x)) = 1 (the identity part) + column sums of the Jacobian of f, by central differences
    (grad,) = torch.autograd.grad(lifted(x).sum(), x)
    fd = torch.zeros_like(x)
    eps = 1e-6
    for i in range(4):
        for j in range(3):
            e = torch.zeros_like(x)
            e[0, i, j] = eps
            df = (_numpy_f(scheme.net_, (x + e)[0].detach().numpy(), 0)
                  - _numpy_f(scheme.net_, (x - e)[0].detach().numpy(), 0)) / (2 * eps)  # (4, k)
            fd[0, i, j] = 1.0 + df[i].sum()
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(grad, torch.ones_like(grad))  # f does depend on x


@pytest.mark.parametrize("p", [1, 2])
def test_value_is_sliced_wasserstein_of_the_lifted_points(p):
    mu, nu = _clouds()
    scheme = _fitted(mu, nu, n_steps=5)
    theta = _unit(50, 6, seed=3)
    res = geom.sliced_wasserstein(mu, nu, scheme=scheme, directions=theta, p=p, return_result=True)
    for b in range(2):
        x, y = mu.support[b].numpy(), nu.support[b].numpy()
        gx = np.concatenate([x, _numpy_f(scheme.net_, x, b)], 1)
        gy = np.concatenate([y, _numpy_f(scheme.net_, y, b)], 1)
        ref = ot.sliced_wasserstein_distance(gx, gy, mu.weights[b].numpy(), nu.weights[b].numpy(),
                                             projections=theta.numpy().T, p=p)
        assert res.value[b].item() == pytest.approx(float(ref), rel=1e-9)


def test_zero_network_gives_scaled_slices_of_the_original_points():
    # f = 0: theta . g(x) = theta_(1..d) . x, so every slice costs |theta_(1..d)|^p W_p^p along
    # theta_(1..d) / |theta_(1..d)|, and the value is sqrt(d / D) SW_2 in expectation (p = 2).
    mu, nu = _clouds(B=1)
    scheme = _fitted(mu, nu, n_steps=0)
    with torch.no_grad():
        scheme.net_.w2.zero_()
        scheme.net_.b2.zero_()
    theta = _unit(20, 6, seed=4)
    costs = geom.sliced_wasserstein(mu, nu, scheme=scheme, directions=theta, p=2, return_result=True).costs
    x, y = mu.support[0].numpy(), nu.support[0].numpy()
    a, b = mu.weights[0].numpy(), nu.weights[0].numpy()
    for i, t in enumerate(theta.numpy()):
        r = np.linalg.norm(t[:3])
        w = ot.wasserstein_1d(x @ t[:3] / r, y @ t[:3] / r, a, b, p=2)
        assert costs[0, i].item() == pytest.approx(r**2 * float(w), rel=1e-9)
    many = geom.sliced_wasserstein(mu, nu, scheme=scheme, directions=_unit(20000, 6, seed=5), return_result=True)
    sw = geom.sliced_wasserstein(mu, nu, directions=_unit(20000, 3, seed=6))
    assert many.value.item() == pytest.approx(math.sqrt(3 / 6) * sw.item(), rel=0.02)


def test_fit_climbs_the_objective_and_the_value():
    mu, nu = _surface(shapes.sphere(), 300, 1), _surface(shapes.torus(), 300, 2)
    before = _fitted(mu, nu, seed=7, n_steps=0)
    after = _fitted(mu, nu, seed=7, n_steps=100)  # the same starting network, then 100 ascent steps
    assert torch.equal(before.net_.w1, _fitted(mu, nu, seed=7, n_steps=0).net_.w1)
    theta = _unit(2000, 6, seed=8)
    obj0, obj1 = before.objective(mu, nu, theta).item(), after.objective(mu, nu, theta).item()
    v0 = geom.sliced_wasserstein(mu, nu, scheme=before, directions=theta).item()
    v1 = geom.sliced_wasserstein(mu, nu, scheme=after, directions=theta).item()
    assert obj1 > obj0 + 0.05, (obj0, obj1)
    assert v1 > 1.5 * v0, (v0, v1)
    # objective = value - penalty * (moment of g#mu + moment of g#nu), from the lifted points
    gm, gn = after.lift(mu), after.lift(nu)
    moments = sum(float((m.weights * m.support.square().sum(-1)).sum().sqrt()) for m in (gm, gn))
    assert obj1 == pytest.approx(v1 - 0.5 * moments, rel=1e-9)
    # the same measure is at distance 0, with and without a fit on the pair
    assert geom.sliced_wasserstein(mu, mu, scheme=after, directions=theta).item() == 0.0
    assert geom.sliced_wasserstein(mu, mu, scheme=after, seed=0).item() == 0.0


def test_training_separates_shapes_more_than_plain_sw():
    # sphere vs torus: ASWD exceeds SW; sphere vs another sample of the sphere: the ascent finds
    # nothing worth the penalty and the value stays at sqrt(d / D) SW (f near 0). Three calls,
    # warm-started, as in a training loop.
    sphere, torus, sphere2 = (_surface(shapes.sphere(), 300, 1), _surface(shapes.torus(), 300, 2),
                              _surface(shapes.sphere(), 300, 3))
    theta, theta3 = _unit(4000, 6, seed=9), _unit(4000, 3, seed=9)
    values = {}
    for name, other in (("torus", torus), ("sphere", sphere2)):
        scheme = Augmented()
        for call in range(3):
            geom.sliced_wasserstein(sphere, other, scheme=scheme, seed=call)
        values[name] = (geom.sliced_wasserstein(sphere, other, scheme=scheme, directions=theta).item(),
                        geom.sliced_wasserstein(sphere, other, directions=theta3).item())
    (a_t, sw_t), (a_s, sw_s) = values["torus"], values["sphere"]
    assert a_t > 1.5 * sw_t, values
    assert a_s == pytest.approx(math.sqrt(3 / 6) * sw_s, rel=0.03), values
    assert a_t / a_s > 2 * sw_t / sw_s, values  # the contrast between the pairs at least doubles


def test_same_seed_same_value_and_no_global_rng():
    mu, nu = _clouds(dtype=torch.float32)
    values = []
    for trial in range(2):
        torch.manual_seed(trial)  # a different global state each time: it must not matter
        state = torch.random.get_rng_state()
        values.append(geom.sliced_wasserstein(mu, nu, scheme=Augmented(n_steps=10), seed=5))
        assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(values[0], values[1])
    other = geom.sliced_wasserstein(mu, nu, scheme=Augmented(n_steps=10), seed=6)
    assert not torch.equal(values[0], other)


def test_state_warm_start_freeze_and_new_networks():
    mu, nu = _clouds(B=1)
    scheme = Augmented(n_steps=5)
    geom.sliced_wasserstein(mu, nu, scheme=scheme, seed=0)
    w = scheme.net_.w1.detach().clone()
    geom.sliced_wasserstein(mu, nu, scheme=scheme, seed=0)
    assert not torch.equal(w, scheme.net_.w1)  # trained on from where it stopped
    scheme.n_steps = 0  # frozen: every call uses the same lifting
    w = scheme.net_.w1.detach().clone()
    a = geom.sliced_wasserstein(mu, nu, scheme=scheme, seed=1)
    b = geom.sliced_wasserstein(mu, nu, scheme=scheme, seed=1)
    assert torch.equal(w, scheme.net_.w1) and torch.equal(a, b)
    x2, y2 = _clouds(B=3, d=2)
    geom.sliced_wasserstein(x2, y2, scheme=scheme, seed=0)  # new dimension and batch size
    assert scheme.net_.shape == (3, 2)


def test_gradients_with_respect_to_the_support():
    mu, nu = _clouds(N=8, M=6)
    scheme = _fitted(mu, nu, n_steps=10)
    theta = _unit(16, 6, seed=10)
    x = mu.support.detach().clone().requires_grad_(True)
    wx, wy = mu.weights, nu.weights

    def value(x):
        return geom.sliced_wasserstein(geom.measure(x, weights=wx), geom.measure(nu.support, weights=wy),
                                       scheme=scheme, directions=theta)

    (grad,) = torch.autograd.grad(value(x).sum(), x)
    assert torch.isfinite(grad).all() and (grad != 0).any()
    assert torch.autograd.gradcheck(value, (x,), eps=1e-6, atol=1e-6)
    # through a fit as well (float32, the default path): finite gradients for the batch
    x32 = mu.support.float().requires_grad_(True)
    v = geom.sliced_wasserstein(x32, nu.support.float(), scheme=Augmented(n_steps=5), seed=0)
    (g32,) = torch.autograd.grad(v.sum(), x32)
    assert v.shape == (2,) and torch.isfinite(g32).all() and (g32 != 0).any()


@pytest.mark.parametrize(
    "options, error, match",
    [
        (dict(lifted_dim=0), ValueError, "lifted_dim"),
        (dict(lifted_dim=2.5), TypeError, "lifted_dim"),
        (dict(n_steps=-1), ValueError, "n_steps: expected an integer >= 0, got -1"),
        (dict(penalty=-0.1), ValueError, "penalty: expected a real number >= 0"),
        (dict(penalty="big"), TypeError, "penalty"),
        (dict(hidden=0), ValueError, "hidden"),
        (dict(lr=0.0), ValueError, "lr: expected a real number > 0"),
        (dict(fit_projections=0), ValueError, "fit_projections"),
        (dict(fit_points=0), ValueError, "fit_points"),
        (dict(kappa=1.0), TypeError, "unexpected keyword argument 'kappa'"),
    ],
)
def test_bad_options_raise_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        Augmented(**options)


def test_lift_without_a_network_or_of_another_kind_raises():
    mu, nu = _clouds(B=1)
    with pytest.raises(ValueError, match="no network.*without directions="):
        geom.sliced_wasserstein(mu, nu, scheme=Augmented(), directions=_unit(4, 6, seed=0))
    scheme = _fitted(mu, nu, n_steps=0)
    with pytest.raises(ValueError, match=r"network for \(B, d\) = \(1, 3\).*\(1, 2\)"):
        scheme.lift(geom.measure(torch.zeros(5, 2)))
    other = Measure(mu.support, mu.weights, kind="sphere", batched=True, uniform=False)
    with pytest.raises(ValueError, match="kind 'points'"):
        scheme.lift(other)
