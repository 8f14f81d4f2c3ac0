"""geom.learn.wae: the sliced penalty is the one estimator, a step lowers it, the penalty pulls the latents
to the prior, the 1-NN two-sample accuracy and the KS statistics on known cases, determinism, bad input."""

import math

import pytest
import torch

import geom
from geom.learn import wae
from geom.losses import SlicedWassersteinLoss

pytest.importorskip("sklearn")


def _unit_rows(n, d, seed):
    v = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def digits():
    return wae.load_digits(seed=0)


@pytest.mark.parametrize("scheme", ["mc", "qmc", "dsw"])
def test_penalty_is_the_estimator_on_the_same_directions(scheme):
    g = torch.Generator().manual_seed(3)
    z, pz = torch.randn(40, 5, generator=g), torch.randn(30, 5, generator=g) + 0.3
    theta = _unit_rows(16, 5, 7)
    loss = SlicedWassersteinLoss(scheme=scheme, n_projections=16, seed=0)
    got = wae.sliced_penalty(z, pz, loss, 2.5, directions=theta)
    want = 2.5 * geom.sliced_wasserstein(z, pz, directions=theta, scheme=scheme)
    torch.testing.assert_close(got, want)
    # without directions: the loss's first draw is the functional's draw with the same seed
    fresh = SlicedWassersteinLoss(scheme=scheme, n_projections=16, seed=11)
    torch.testing.assert_close(wae.sliced_penalty(z, pz, fresh, 0.5),
                               0.5 * geom.sliced_wasserstein(z, pz, scheme=scheme, n_projections=16, seed=11))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_step_lowers_the_penalty_on_a_fixed_batch(digits, seed):
    x = digits[0][:64]
    model = wae.WAE(latent_dim=4, hidden=32, seed=seed)
    pz = wae.prior_sample(64, 4, generator=torch.Generator().manual_seed(seed))
    theta = _unit_rows(32, 4, seed)
    loss = SlicedWassersteinLoss(n_projections=32, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    before = wae.sliced_penalty(model.encode(x), pz, loss, directions=theta)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = wae.sliced_penalty(model.encode(x), pz, loss, directions=theta)
    assert after < before


def test_the_penalty_pulls_the_latents_to_the_prior(digits):
    x_train, _, x_test, _ = digits
    for seed in (0, 1):
        on, off = (wae.train_wae(x_train[:512], latent_dim=4, hidden=64, lam=lam, epochs=30, seed=seed)
                   for lam in (3.0, 0.0))
        m_on, m_off = (wae.evaluate(r.model, x_test, seed=seed, n_projections=200) for r in (on, off))
        assert m_on["latent_sw"] < 0.5 * m_off["latent_sw"]
        assert m_on["latent_ks"] < m_off["latent_ks"]
        assert m_on["latent_sw_floor"] < m_on["latent_sw"] * 1.5  # the floor is the order of a good match
        assert all(math.isfinite(v) for v in m_on.values())


def test_training_is_deterministic(digits):
    a, b = (wae.train_wae(digits[0][:256], latent_dim=2, hidden=16, epochs=2, seed=5, scheme="qmc")
            for _ in range(2))
    assert a.recon == b.recon and a.penalty == b.penalty
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(a.model.sample(5, generator=g1), b.model.sample(5, generator=g2))


def test_one_nn_accuracy_known_cases():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, generator=g)
    assert wae.one_nn_accuracy(a, a + 100.0) == 1.0  # far apart: every neighbour from its own sample
    assert wae.one_nn_accuracy(a, a.clone()) == 0.0  # copies: every neighbour is the copy, from the other sample
    accs = [wae.one_nn_accuracy(torch.randn(200, 3, generator=g), torch.randn(200, 3, generator=g)) for _ in range(5)]
    assert abs(sum(accs) / len(accs) - 0.5) < 0.08  # one law: chance (the std of one draw is about 0.025)


def test_ks_statistics_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(4)
    z = torch.randn(300, 3, generator=g) * torch.tensor([1.0, 1.5, 0.7]) + torch.tensor([0.0, 0.2, 0.0])
    for prior, cdf in (("gaussian", stats.norm.cdf), ("uniform", stats.uniform(-math.sqrt(3), 2 * math.sqrt(3)).cdf)):
        got = wae.ks_statistics(z, prior)
        want = [stats.kstest(z[:, j].double().numpy(), cdf).statistic for j in range(3)]
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


def test_priors_have_unit_variance():
    for prior in wae.PRIORS:
        s = wae.prior_sample(20000, 3, prior, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(s.var(0), torch.ones(3), atol=0.05, rtol=0)
    u = wae.prior_sample(1000, 2, "uniform", generator=torch.Generator().manual_seed(0))
    assert u.abs().max() <= math.sqrt(3)


def test_digits_split(digits):
    x_train, y_train, x_test, y_test = digits
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    assert 0 <= float(x_train.min()) and float(x_train.max()) <= 1
    assert set(y_test.tolist()) == set(range(10))
    again = wae.load_digits(seed=0)
    assert torch.equal(again[2], x_test)


@pytest.mark.parametrize("call, match", [
    (lambda x: wae.prior_sample(3, 2, "cauchy"), "prior"),
    (lambda x: wae.WAE(prior="laplace"), "prior"),
    (lambda x: wae.train_wae(x, lam=-1.0, epochs=1), "lam"),
    (lambda x: wae.train_wae(x, epochs=0), "epochs"),
    (lambda x: wae.train_wae(x[:1], epochs=1), "x_train"),
    (lambda x: wae.train_wae(x, epochs=1, scheme="nope"), "scheme"),
    (lambda x: wae.WAE().encode(x[:, :10]), "x"),
    (lambda x: wae.WAE(latent_dim=3).decode(torch.zeros(2, 4)), "z"),
    (lambda x: wae.one_nn_accuracy(x, x[:, :3]), "a, b"),
    (lambda x: wae.load_digits(test_fraction=1.5), "test_fraction"),
    (lambda x: wae.evaluate("model", x), "model"),
    (lambda x: wae.sliced_penalty(x, x, lambda a, b: 0.0), "loss"),
    (lambda x: wae.ks_statistics(x, "cauchy"), "prior"),
])
def test_bad_input_names_the_argument(digits, call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call(digits[0][:8])
