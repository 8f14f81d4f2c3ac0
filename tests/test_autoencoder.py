"""geom.learn.autoencoder: the PointNet autoencoder, its seeded batches and training loop, its scores and figures.

Models are tiny (a few thousand parameters, clouds of 16-64 points), so that every case runs in a second.
The EMD is checked against a brute-force search over matchings and a closed form (a translated cloud);
POT and SciPy's assignment solver are the oracles in tests/external/test_autoencoder_pot.py.
"""

import itertools
import sys

import numpy as np
import pytest
import torch

import geom
from geom.learn import autoencoder as ae

TINY = dict(encoder=(16, 32), decoder=(64,))


def clouds(b=4, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, 3, generator=g) * torch.tensor([1.0, 0.6, 0.3])


def test_the_autoencoder_overfits_one_batch():
    x = clouds(4, 64)
    model = ae.PointNetAutoencoder(n_points=64, latent=8, seed=0, **TINY)
    loss = ae.build_loss("sw", n_projections=32, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = float(ae.chamfer_scores(ae.reconstruct(model, x), x).mean())
    values = [ae.train_step(model, x, loss, opt) for _ in range(250)]
    after = float(ae.chamfer_scores(ae.reconstruct(model, x), x).mean())
    assert np.mean(values[-10:]) < values[0] / 10  # the training loss, SW_2
    assert after < before / 10  # and an independent score of the same reconstructions


def test_the_encoder_is_invariant_to_the_order_of_the_points_and_the_batch():
    x = clouds(3, 50)
    model = ae.PointNetAutoencoder(n_points=20, latent=5, seed=1, **TINY)
    z = model.encode(x)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model.encode(x[:, perm]), z, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.encode(x[1:2]), z[1:2], rtol=0, atol=1e-6)  # no batch statistics
    assert model.encode(x[:, :7]).shape == (3, 5)  # any number of points
    assert model(x).shape == (3, 20, 3)
    # a real dependence on the points: another cloud, another code
    assert (model.encode(x + torch.tensor([0.5, 0.0, 0.0])) - z).abs().max() > 1e-3


def test_weights_are_seeded_and_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    a, b = ae.PointNetAutoencoder(seed=4, **TINY), ae.PointNetAutoencoder(seed=4, **TINY)
    c = ae.PointNetAutoencoder(seed=5, **TINY)
    assert torch.equal(torch.get_rng_state(), state)
    for (k, u), (_, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(u, v) and not torch.equal(u, w), k
    bound = 1 / np.sqrt(3)  # PyTorch's default law: U(-1/sqrt(fan_in), +1/sqrt(fan_in))
    first = a.point_mlp[0].weight.detach()
    assert float(first.abs().max()) <= bound and float(first.abs().max()) > 0.9 * bound


def test_batches_are_seeded_permutations_and_resume_inside_an_epoch():
    x = clouds(10, 4)
    loader = ae.CloudBatches(x, 3, seed=2)
    assert len(loader) == 4 and len(ae.CloudBatches(x, 3, drop_last=True)) == 3
    for epoch in range(3):
        order = loader.order(epoch)
        assert sorted(order.tolist()) == list(range(10))
        batches = list(loader.batches(epoch))
        assert [len(b) for b in batches] == [3, 3, 3, 1]
        torch.testing.assert_close(torch.cat(batches), x[order], rtol=0, atol=0)
        for start in range(4):
            tail = list(loader.batches(epoch, start))
            assert len(tail) == 4 - start and all(torch.equal(u, v) for u, v in zip(tail, batches[start:]))
    assert not torch.equal(loader.order(0), loader.order(1))
    assert torch.equal(ae.CloudBatches(x, 3, seed=2).order(1), loader.order(1))
    assert not torch.equal(ae.CloudBatches(x, 3, seed=3).order(1), loader.order(1))
    assert ae.CloudBatches(x, 3, shuffle=False).order(5).tolist() == list(range(10))


@pytest.mark.parametrize("name", ["sw", "sw-qmc", "chamfer"])
def test_train_stopped_and_continued_equals_one_run_bit_for_bit(name):
    x = clouds(10, 16)

    def setup():
        model = ae.PointNetAutoencoder(n_points=16, latent=4, seed=0, **TINY)
        return model, torch.optim.Adam(model.parameters(), lr=1e-2), ae.build_loss(name, **(
            {} if name == "chamfer" else dict(n_projections=8, seed=0)))

    loader = ae.CloudBatches(x, 4, seed=0)
    model, opt, loss = setup()
    whole = ae.train(model, loader, loss, 3, opt)
    assert len(whole.values) == 9 and whole.position == (3, 0) and len(whole.epoch_seconds) == 3
    assert whole.epochs == [0, 0, 0, 1, 1, 1, 2, 2, 2] and whole.batches == [0, 1, 2] * 3
    model2, opt2, loss2 = setup()
    first = ae.train(model2, loader, loss2, 3, opt2, callback=lambda e, b, v: not (e == 1 and b == 0))
    assert first.stopped and first.position == (1, 1) and len(first.values) == 4
    # a fresh model, optimizer and loss loaded with the stopped run's state continue it exactly
    model3, opt3, loss3 = setup()
    model3.load_state_dict(model2.state_dict())
    opt3.load_state_dict(opt2.state_dict())
    loss3.load_state_dict(loss2.state_dict())
    rest = ae.train(model3, loader, loss3, 3, opt3, start=first.position)
    assert first.values + rest.values == whole.values
    for k, v in model.state_dict().items():
        assert torch.equal(model3.state_dict()[k], v), k


def test_every_loss_trains_a_step():
    x = clouds(2, 24)
    for name in ae.LOSSES:
        model = ae.PointNetAutoencoder(n_points=24, latent=4, seed=0, **TINY)
        options = dict(n_steps=2) if name in ("sw-vmf", "sw-max") else {}
        loss = ae.build_loss(name, **({} if name == "chamfer" else dict(n_projections=4, seed=0, **options)))
        value = ae.train_step(model, x, loss, torch.optim.Adam(model.parameters(), 1e-3))
        assert np.isfinite(value) and value > 0, name


def test_a_scheme_instance_and_its_network_train_with_the_model():
    from geom_plugins.amortized import AmortizedVonMisesFisher

    scheme = AmortizedVonMisesFisher(variant="linear", model_seed=0)
    loss = ae.build_loss("sw", scheme=scheme, n_projections=8, seed=0)
    assert loss.scheme is scheme
    psi = list(loss.scheme_parameters())
    assert psi, "the amortized model's weights are the loss's scheme parameters"
    model = ae.PointNetAutoencoder(n_points=16, latent=4, seed=0, **TINY)
    before = [p.detach().clone() for p in psi]
    ae.train_step(model, clouds(2, 16), loss, torch.optim.Adam([*model.parameters(), *psi], lr=1e-2))
    assert any(not torch.equal(a, p) for a, p in zip(before, psi))  # one backward moved the network too


def test_a_torch_dataloader_feeds_train_too():
    x = clouds(6, 16)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.arange(6)), batch_size=3)
    model = ae.PointNetAutoencoder(n_points=16, latent=4, seed=0, **TINY)
    result = ae.train(model, data, ae.build_loss("chamfer"), 2, torch.optim.Adam(model.parameters(), 1e-3))
    assert len(result.values) == 4 and result.position == (2, 0)
    with pytest.raises(ValueError, match="start: continuing inside an epoch"):
        ae.train(model, data, ae.build_loss("chamfer"), 2, torch.optim.Adam(model.parameters()), start=(0, 1))


def brute_force_emd(a: np.ndarray, b: np.ndarray) -> float:
    """The mean distance under the best of all one-to-one matchings."""
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    return min(d[np.arange(len(a)), list(p)].mean() for p in itertools.permutations(range(len(b))))


@pytest.mark.parametrize("seed", range(3))
def test_emd_is_the_best_matching_on_tiny_clouds(seed):
    x, y = clouds(2, 6, seed), clouds(2, 6, seed + 10) + 0.3
    got = ae.emd_scores(x, y, n_points=6, seed=seed)  # all points: the subsample is a permutation
    assert got.dtype == torch.float64 and got.shape == (2,)
    for i in range(2):
        assert got[i].item() == pytest.approx(brute_force_emd(x[i].double().numpy(), y[i].double().numpy()), rel=1e-12)


def test_emd_of_a_translated_cloud_is_the_translation_and_subsamples_are_seeded():
    x = clouds(3, 200).double()
    t = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    got = ae.emd_scores(x, x + t, n_points=500)
    torch.testing.assert_close(got, torch.full((3,), 1.3, dtype=torch.float64), rtol=1e-12, atol=0)
    y = x.flip(1) + 0.1
    a, b = ae.emd_scores(x, y, n_points=40, seed=1), ae.emd_scores(x, y, n_points=40, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, ae.emd_scores(x, y, n_points=40, seed=2))


def test_chamfer_and_sw_scores_are_the_functionals_per_item():
    x, y = clouds(3, 20), clouds(3, 30, 1)
    torch.testing.assert_close(ae.chamfer_scores(x, y), geom.chamfer_distance(x, y))
    want = torch.stack([geom.sliced_wasserstein(x[i], y[i], n_projections=64, seed=5) for i in range(3)])
    torch.testing.assert_close(ae.sw_scores(x, y, n_projections=64, seed=5), want, rtol=1e-5, atol=1e-6)


def test_the_linear_probe_separates_separable_codes_and_evaluate_reports_every_score():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    codes = rng.normal(size=(60, 4)) * 0.1 + np.eye(3, 4)[labels] * 3
    assert ae.probe_accuracy(codes[::2], labels[::2], codes[1::2], labels[1::2]) == 1.0
    assert ae.probe_accuracy(codes[::2], labels[::2], codes[1::2], labels[1::2], kind="logistic") == 1.0
    flipped = (labels[1::2] + 1) % 3  # the classifier predicts the true classes: these labels are all wrong
    assert ae.probe_accuracy(codes[::2], labels[::2], codes[1::2], flipped) == 0.0
    x = clouds(6, 16)
    model = ae.PointNetAutoencoder(n_points=16, latent=4, seed=0, **TINY)
    scores = ae.evaluate(model, x, labels=torch.tensor([0, 1] * 3), train=(x, torch.tensor([0, 1] * 3)),
                         emd_points=16, sw_projections=32)
    recon = ae.reconstruct(model, x)
    assert scores["chamfer"] == pytest.approx(float(geom.chamfer_distance(recon, x).double().mean()), rel=1e-6)
    assert scores["emd"] == pytest.approx(float(ae.emd_scores(recon, x, n_points=16).mean()))
    assert 0 <= scores["probe_accuracy"] <= 1 and len(scores["per_item"]["sw"]) == 6


def test_figures_are_pngs_and_the_interpolation_starts_and_ends_at_the_codes(tmp_path):
    x = clouds(3, 16)
    model = ae.PointNetAutoencoder(n_points=16, latent=4, seed=0, **TINY)
    ae.plot_reconstructions(x, ae.reconstruct(model, x), tmp_path / "r.png", titles=["a", "b", "c"])
    path = tmp_path / "i.png"
    with open(path, "wb") as fh:  # a file handle works too
        mid = ae.plot_interpolation(model, x[0], x[1], fh, n_steps=5)
    for p in (tmp_path / "r.png", path):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with torch.no_grad():
        ends = model(x[:2])
    assert mid.shape == (5, 16, 3)
    torch.testing.assert_close(mid[[0, -1]], ends, rtol=0, atol=1e-5)


def test_load_clouds_splits_the_generated_shapes_by_class():
    data = ae.load_clouds("shapes", n_points=32, seed=0, n_per_class=4)
    (x, y), (xt, yt) = data["train"], data["test"]
    assert x.shape == (18, 32, 3) and xt.shape == (6, 32, 3) and x.dtype == torch.float32
    assert sorted(yt.tolist()) == list(range(6)) and data["classes"][0] == "sphere"
    assert np.bincount(y.numpy()).tolist() == [3] * 6  # a quarter of each class held out
    again = ae.load_clouds("shapes", n_points=32, seed=0, n_per_class=4)
    assert torch.equal(again["test"][0], xt)
    with pytest.raises(ValueError, match="name: expected a dataset of shapes"):
        ae.load_clouds("digits")


def test_bad_input_names_the_argument():
    model = ae.PointNetAutoencoder(n_points=8, latent=3, **TINY)
    cases = [
        (lambda: ae.PointNetAutoencoder(n_points=0), ValueError, "n_points"),
        (lambda: ae.PointNetAutoencoder(latent=2.5), TypeError, "latent"),
        (lambda: ae.PointNetAutoencoder(encoder=()), ValueError, "encoder"),
        (lambda: ae.PointNetAutoencoder(decoder="wide"), TypeError, "decoder"),
        (lambda: model.encode(torch.zeros(2, 5, 2)), ValueError, "x: expected a floating tensor of shape (B, N, 3)"),
        (lambda: model.encode(torch.zeros(5, 3)), ValueError, "x"),
        (lambda: model.encode(torch.full((1, 4, 3), float("nan"))), ValueError, "x: expected finite"),
        (lambda: model.encode([[0.0, 0.0, 0.0]]), TypeError, "x"),
        (lambda: model.decode(torch.zeros(2, 4)), ValueError, "z"),
        (lambda: ae.train_step(model, clouds(2, 8), "sw", torch.optim.Adam(model.parameters())), TypeError, "loss"),
        (lambda: ae.train_step(model, clouds(2, 8), ae.build_loss("chamfer"), None), TypeError, "optimizer"),
        (lambda: ae.train_step(model, clouds(2, 8), lambda r, t: torch.zeros(3), torch.optim.Adam(model.parameters())),
         TypeError, "loss: expected a scalar or (2,)"),
        (lambda: ae.train_step(model, clouds(2, 8), lambda r, t: r.sum() * float("nan"),
                               torch.optim.Adam(model.parameters())), ValueError, "loss: became nan"),
        (lambda: ae.train(model, clouds(2, 8), ae.build_loss("chamfer"), -1, torch.optim.Adam(model.parameters())),
         ValueError, "epochs"),
        (lambda: ae.build_loss("wasserstein"), ValueError, "name: expected one of sw, sw-qmc"),
        (lambda: ae.build_loss("chamfer", scheme="mc"), ValueError, "scheme: the chamfer loss has no"),
        (lambda: ae.build_loss("sw-qmc", scheme="mc"), ValueError, "scheme: loss 'sw-qmc' slices with 'qmc'"),
        (lambda: ae.CloudBatches(torch.zeros(3, 4)), ValueError, "clouds"),
        (lambda: ae.CloudBatches(clouds(2, 4), 0), ValueError, "batch_size"),
        (lambda: ae.emd_scores(clouds(2, 4), clouds(3, 4)), ValueError, "x, y: expected batches of as many"),
        (lambda: ae.probe_accuracy(np.zeros((4, 2)), [0] * 4, np.zeros((2, 2)), [0, 0]), ValueError, "train_labels"),
        (lambda: ae.probe_accuracy(np.zeros((4, 2)), [0, 1] * 2, np.zeros((2, 3)), [0, 1]), ValueError,
         "matching sizes"),
        (lambda: ae.probe_accuracy(np.zeros((4, 2)), [0, 1] * 2, np.zeros((2, 2)), [0, 1], kind="knn"), ValueError,
         "kind"),
        (lambda: ae.evaluate(model, clouds(2, 8), labels=torch.tensor([0, 1])), ValueError, "labels, train"),
        (lambda: ae.plot_interpolation(model, clouds(1, 8)[0], clouds(1, 9)[0], "x.png"), ValueError, "a, b"),
    ]
    for call, kind, needle in cases:
        with pytest.raises(kind) as info:
            call()
        assert needle in str(info.value), (needle, str(info.value))


@pytest.mark.parametrize("module, call", [
    ("ot", lambda: ae.emd_scores(clouds(1, 4), clouds(1, 4))),
    ("sklearn", lambda: ae.probe_accuracy(np.zeros((2, 1)), [0, 1], np.zeros((2, 1)), [0, 1])),
])
def test_missing_optional_packages_name_the_learn_extra(monkeypatch, module, call):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"pip install geom\[learn\]"):
        call()


def test_principal_axes_undo_a_rotation_and_never_reflect():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 400, 3, generator=g, dtype=torch.float64) ** 2) * torch.tensor([3.0, 2.0, 1.0],
                                                                                     dtype=torch.float64) + 5
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # a Haar rotation or reflection; make it a rotation
    q = q if torch.det(q) > 0 else -q
    a, b = ae.principal_axes(x), ae.principal_axes(x @ q.T)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-9)  # same pose whatever the rotation
    cov = a.transpose(1, 2) @ a / 400
    off = cov - torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
    assert float(off.abs().max()) < 1e-9 and bool((torch.diff(torch.diagonal(cov, dim1=1, dim2=2)) <= 0).all())
    torch.testing.assert_close(a.mean(1), torch.zeros(2, 3, dtype=torch.float64), rtol=0, atol=1e-12)
    for i in range(2):  # the map from the centred cloud is a rotation (det +1), found by least squares
        xc = x[i] - x[i].mean(0)
        rot = torch.linalg.lstsq(xc, a[i]).solution
        assert float(torch.det(rot)) == pytest.approx(1.0, abs=1e-9)
    assert ae.principal_axes(x.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="align"):
        ae.load_clouds("shapes", n_per_class=2, align="icp")


def test_emd_scores_print_nothing_though_pot_imports_pykeops():
    """POT imports geomloss, which imports pykeops, which prints a CUDA warning on stdout without a GPU."""
    import subprocess
    import sys

    code = ("import torch; from geom.learn.autoencoder import emd_scores; "
            "emd_scores(torch.zeros(1, 4, 3), torch.ones(1, 4, 3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout == ""
