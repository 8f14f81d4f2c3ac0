"""geom.learn.adapt: the SWD is the one estimator (zero for identical classifiers, symmetric), the
generated shifts are exact (rotations in closed form), a source-only model learns the source, the
training steps do what they say, determinism, bad input."""

import math

import numpy as np
import pytest
import torch

import geom
from geom.learn import adapt
from geom.losses import SlicedWassersteinLoss

pytest.importorskip("sklearn")


def _probs(n, k, seed):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)).softmax(1)


@pytest.mark.parametrize("k", [2, 10])
def test_swd_is_zero_for_identical_outputs_symmetric_and_the_estimator(k):
    p1, p2 = _probs(50, k, 0), _probs(50, k, 1)
    assert float(adapt.swd_discrepancy(p1, p1.clone(), SlicedWassersteinLoss(n_projections=32, seed=0))) == 0.0
    ab = adapt.swd_discrepancy(p1, p2, SlicedWassersteinLoss(n_projections=32, seed=3))
    ba = adapt.swd_discrepancy(p2, p1, SlicedWassersteinLoss(n_projections=32, seed=3))
    torch.testing.assert_close(ab, ba)
    assert float(ab) > 0
    torch.testing.assert_close(ab, geom.sliced_wasserstein(p1, p2, n_projections=32, seed=3).square())


def test_swd_of_identical_classifiers_is_zero():
    model = adapt.AdaptNet(2, 2, hidden=8, feat_dim=4, seed=0)
    model.F2.load_state_dict(model.F1.state_dict())
    with torch.no_grad():
        _, a, b = model(torch.randn(30, 2, generator=torch.Generator().manual_seed(0)))
    assert float(adapt.swd_discrepancy(a.softmax(1), b.softmax(1), SlicedWassersteinLoss(seed=0))) == 0.0
    assert float(adapt.swd_discrepancy(a.softmax(1), b.softmax(1) * 0 + 0.5, SlicedWassersteinLoss(seed=0))) > 0


def test_swd_with_binary_outputs_is_the_1d_wasserstein():
    # K = 2: p = (q, 1 - q) projects to (t1 - t2) q + t2 and E (t1 - t2)^2 = 1 on the circle, so
    # SW_2^2 = W_2^2 of the two laws of q (here with equal sizes: the mean squared gap of the sorted q)
    q1, q2 = torch.rand(40, generator=torch.Generator().manual_seed(1)), torch.rand(40) ** 2
    p1, p2 = torch.stack([q1, 1 - q1], 1), torch.stack([q2, 1 - q2], 1)
    angles = (torch.arange(4000, dtype=torch.float64) + 0.5) * (2 * math.pi / 4000)
    circle = torch.stack([angles.cos(), angles.sin()], 1).float()  # a fine even grid on S^1
    got = adapt.swd_discrepancy(p1, p2, SlicedWassersteinLoss(), directions=circle)
    want = (q1.sort().values - q2.sort().values).square().mean()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_rotate_closed_form():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(adapt.rotate(x, 90.0), torch.tensor([[0.0, 1.0], [-2.0, 0.0], [-4.0, 3.0]],
                                                                   dtype=torch.float64))
    c = torch.tensor([0.5, 0.25], dtype=torch.float64)
    a = 37.0
    r = adapt.rotate(x, a, c)
    torch.testing.assert_close((r - c).norm(dim=1), (x - c).norm(dim=1))  # distances to the centre kept
    cos = ((r - c) * (x - c)).sum(1) / (x - c).norm(dim=1).square()
    torch.testing.assert_close(cos, torch.full((3,), math.cos(math.radians(a)), dtype=torch.float64))
    torch.testing.assert_close(adapt.rotate(adapt.rotate(x, a, c), 50.0, c), adapt.rotate(x, a + 50.0, c))
    torch.testing.assert_close(adapt.rotate(r, -a, c), x)


@pytest.mark.parametrize("seed", [0, 1])
def test_rotated_moons_rotate_one_draw(seed):
    flat = adapt.rotated_moons(60, 50, 40, degrees=0.0, seed=seed)
    turned = adapt.rotated_moons(60, 50, 40, degrees=45.0, seed=seed)
    assert torch.equal(flat.xs, turned.xs) and torch.equal(flat.ys, turned.ys)
    torch.testing.assert_close(turned.xt, adapt.rotate(flat.xt, 45.0, adapt.MOONS_CENTER))
    torch.testing.assert_close(turned.xt_test, adapt.rotate(flat.xt_test, 45.0, adapt.MOONS_CENTER))
    assert torch.equal(flat.yt, turned.yt)
    assert turned.xs.shape == (60, 2) and turned.xt.shape == (50, 2) and turned.xt_test.shape == (40, 2)
    assert not torch.equal(flat.xs[:40], flat.xt_test)  # independent draws


def test_rotate_images_quarter_turns_are_exact():
    x = torch.rand(3, 64, generator=torch.Generator().manual_seed(0))
    img = x.reshape(3, 8, 8).numpy()
    np.testing.assert_array_equal(adapt.rotate_images(x, 90.0).reshape(3, 8, 8).numpy(), np.rot90(img, 1, (1, 2)))
    np.testing.assert_array_equal(adapt.rotate_images(x, -90.0).reshape(3, 8, 8).numpy(), np.rot90(img, -1, (1, 2)))
    torch.testing.assert_close(adapt.rotate_images(x, 0.0), x)
    mass = adapt.rotate_images(x, 30.0).sum(1)
    assert bool((mass <= x.sum(1) + 1e-5).all())  # bilinear: no mass created (corners fall outside)


def test_transformed_digits():
    inv = adapt.transformed_digits("invert", seed=0)
    rot = adapt.transformed_digits("rotate", degrees=90.0, seed=0)
    assert torch.equal(inv.xs, rot.xs) and torch.equal(inv.yt, rot.yt)
    # inverting twice, rotating back: the same images under both shifts
    np.testing.assert_array_equal((1.0 - inv.xt).reshape(-1, 8, 8).numpy(),
                                  np.rot90(rot.xt.reshape(-1, 8, 8).numpy(), -1, (1, 2)))
    assert len(inv.xs) + len(inv.xt) + len(inv.xt_test) == 1797 and inv.n_classes == 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_source_only_learns_the_source(seed):
    d = adapt.rotated_moons(200, 100, 200, degrees=40.0, seed=seed)
    r = adapt.train_adapt(d, "source_only", hidden=16, feat_dim=8, steps=300, lr=1e-2, seed=seed)
    assert adapt.accuracy(r.model, d.xs, d.ys) > 0.95
    assert all(math.isnan(v) for v in r.discrepancy)
    assert r.ce[-1] < 0.5 * r.ce[0]


def test_steps_b_and_c_do_their_jobs():
    # one iteration's step B raises the SWD between the classifiers, step C lowers it again (same directions)
    d = adapt.rotated_moons(100, 100, 10, degrees=40.0, seed=0)
    theta = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    theta = theta / theta.norm(dim=1, keepdim=True)
    loss = SlicedWassersteinLoss()
    for seed in range(3):
        model = adapt.AdaptNet(2, 2, hidden=16, feat_dim=8, seed=seed)

        def disc():
            _, a, b = model(d.xt)
            return adapt.swd_discrepancy(a.softmax(1), b.softmax(1), loss, directions=theta)

        start = disc()
        opt_f = torch.optim.SGD([*model.F1.parameters(), *model.F2.parameters()], lr=0.1)
        opt_f.zero_grad()
        (-start).backward()
        opt_f.step()
        raised = disc()
        assert raised > start
        opt_g = torch.optim.SGD(model.G.parameters(), lr=0.1)
        opt_g.zero_grad()
        raised.backward()
        opt_g.step()
        assert disc() < raised


def test_xavier_init_is_glorot_uniform_with_zero_biases():
    model = adapt.AdaptNet(2, 2, hidden=15, feat_dim=15, seed=0, init="xavier")
    default = adapt.AdaptNet(2, 2, hidden=15, feat_dim=15, seed=0)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 9
    for layer in layers:
        w, bias = layer.weight.detach(), layer.bias.detach()
        bound = math.sqrt(6.0 / sum(w.shape))
        assert bool((bias == 0).all()) and float(w.abs().max()) <= bound
        assert float(w.abs().max()) > 0.8 * bound  # spread over the whole Glorot interval
    assert not torch.equal(model.F1[0].weight, model.F2[0].weight)
    assert not torch.equal(model.G[0][0].weight, default.G[0][0].weight)
    again = adapt.AdaptNet(2, 2, hidden=15, feat_dim=15, seed=0, init="xavier")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_sgd_full_batch_step_is_plain_gradient_descent():
    # one source-only iteration on the whole source (batch_size >= its size): w - lr * grad of both CEs
    d = adapt.rotated_moons(40, 30, 10, seed=2)
    lr = 0.05
    start = adapt.AdaptNet(2, 2, hidden=8, feat_dim=4, seed=5, init="xavier")
    _, a, b = start(d.xs)
    loss = torch.nn.functional.cross_entropy(a, d.ys) + torch.nn.functional.cross_entropy(b, d.ys)
    grads = torch.autograd.grad(loss, list(start.parameters()))
    r = adapt.train_adapt(d, "source_only", hidden=8, feat_dim=4, steps=1, batch_size=40, lr=lr, optimizer="sgd",
                          init="xavier", seed=5)
    for w, g, got in zip(start.parameters(), grads, r.model.parameters()):
        torch.testing.assert_close(got, w - lr * g)


@pytest.mark.parametrize("method", adapt.METHODS)
def test_training_is_deterministic(method):
    d = adapt.rotated_moons(50, 50, 20, seed=3)
    seen = []
    a, b = (adapt.train_adapt(d, method, hidden=8, feat_dim=4, steps=20, batch_size=16, seed=4, log_every=5,
                              callback=lambda step, model: seen.append(step)) for _ in range(2))
    assert seen == [0, 5, 10, 15, 19] * 2 and len(a.ce) == 5
    assert a.ce == b.ce
    np.testing.assert_array_equal(np.array(a.discrepancy), np.array(b.discrepancy))
    torch.testing.assert_close(a.model.predict_proba(d.xt_test), b.model.predict_proba(d.xt_test), rtol=0, atol=0)


@pytest.fixture(scope="module")
def moons():
    return adapt.rotated_moons(20, 20, 20, seed=0)


@pytest.mark.parametrize("call, match", [
    (lambda d: adapt.train_adapt(d, "mcd"), "method"),
    (lambda d: adapt.train_adapt("domains"), "domains"),
    (lambda d: adapt.train_adapt(d, steps=0), "steps"),
    (lambda d: adapt.train_adapt(d, lam=-1.0), "lam"),
    (lambda d: adapt.train_adapt(d, ascent=0.0), "ascent"),
    (lambda d: adapt.train_adapt(d, callback="print"), "callback"),
    (lambda d: adapt.train_adapt(d, optimizer="rmsprop"), "optimizer"),
    (lambda d: adapt.train_adapt(d, init="he"), "init"),
    (lambda d: adapt.train_adapt(d, "sw", steps=1, scheme="nope"), "scheme"),
    (lambda d: adapt.rotated_moons(0), "n_source"),
    (lambda d: adapt.rotated_moons(degrees=math.inf), "degrees"),
    (lambda d: adapt.rotated_moons(noise=-0.1), "noise"),
    (lambda d: adapt.rotate(torch.zeros(3, 3), 10.0), "x"),
    (lambda d: adapt.rotate(torch.zeros(3, 2), 10.0, center=(0.0, 0.0, 0.0)), "center"),
    (lambda d: adapt.rotate_images(torch.zeros(2, 63), 10.0), "images"),
    (lambda d: adapt.transformed_digits("blur"), "transform"),
    (lambda d: adapt.transformed_digits(target_fraction=1.0), "target_fraction"),
    (lambda d: adapt.swd_discrepancy(_probs(5, 2, 0), _probs(5, 3, 0), SlicedWassersteinLoss()), "p1, p2"),
    (lambda d: adapt.swd_discrepancy(_probs(5, 2, 0), "p2", SlicedWassersteinLoss()), "p2"),
    (lambda d: adapt.swd_discrepancy(_probs(5, 2, 0), _probs(5, 2, 1), SlicedWassersteinLoss(p=1)), "loss"),
    (lambda d: adapt.AdaptNet(2, 1), "n_classes"),
    (lambda d: adapt.AdaptNet(2, 2, init="he"), "init"),
    (lambda d: adapt.AdaptNet(2, 2)(torch.zeros(3, 5)), "x"),
    (lambda d: adapt.accuracy("model", d.xs, d.ys), "model"),
    (lambda d: adapt.accuracy(adapt.AdaptNet(2, 2), d.xs, d.ys[:3]), "y"),
])
def test_bad_input_names_the_argument(moons, call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call(moons)
