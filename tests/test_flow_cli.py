"""``geom flow`` (tools/flow_cli.py), run in-process through ``cli.main(argv)``.

Files are checked against the library (the same flow called directly gives the same particles),
interrupts are real SIGINTs sent from inside the flow's callback, and a resumed run must repeat the
uninterrupted one bit for bit.
"""

import json
import pathlib
import signal

import numpy as np
import pytest
import torch

import geom
import geom.flows
from geom_datasets import shapes

from cli_helpers import assert_user_error, interrupt_at, run

SAMPLES = pathlib.Path(shapes.__file__).parent / "samples"
SMALL = ["--n-points", "96", "--n-projections", "32"]


def load(out):
    with np.load(out / "trajectory.npz") as z:
        traj = {k: z[k] for k in z.files}
    return traj, json.loads((out / "summary.json").read_text())


@pytest.fixture
def pair():
    return SAMPLES / "sphere.ply", SAMPLES / "torus.ply"


# ---------------------------------------------------------------------------------------------- outputs


def test_sw_flow_between_bundled_shapes_writes_every_output(capsys, tmp_path, pair):
    out = tmp_path / "run"
    rc, stdout, err = run(capsys, "flow", *pair, "--method", "sw", "--steps", 60, "--lr", 0.03,
                          "--record-every", 20, "--seed", 4, *SMALL, "--out", out)
    assert rc == 0, err
    assert "geom flow sw" in err  # the progress bar
    traj, summary = load(out)
    assert traj["trajectory"].shape == (4, 96, 3)
    assert traj["steps"].tolist() == [0, 20, 40, 60]
    # the start is the seeded surface sample of SOURCE, as geom.measure draws it
    mu = geom.measure(str(pair[0]), kind="points", n_samples=96, seed=4)
    nu = geom.measure(str(pair[1]), kind="points", n_samples=96, seed=4)
    np.testing.assert_allclose(traj["trajectory"][0], mu.support[0].double().numpy(), rtol=0, atol=1e-7)
    # the same flow called in the library gives the same particles and values
    lib = geom.flows.sw_flow(mu.support[0].double(), nu.support[0].double(), steps=60, lr=0.03, n_projections=32,
                             seed=4, record_every=20)
    np.testing.assert_array_equal(traj["trajectory"][-1], lib.particles.numpy())
    np.testing.assert_allclose(traj["values"], lib.values.numpy(), rtol=1e-12)
    assert traj["values"][-1] < 0.3 * traj["values"][0]
    import trimesh

    ply = trimesh.load(out / "final.ply")
    np.testing.assert_allclose(np.asarray(ply.vertices), traj["trajectory"][-1], atol=1e-6)
    for name in ("frames.png", "loss.png", "checkpoint.npz"):
        assert (out / name).stat().st_size > 0
    assert summary["method"] == "sw" and summary["seed"] == 4 and summary["steps_done"] == 60
    assert summary["start_value"] == pytest.approx(traj["values"][0])
    assert summary["end_value"] == pytest.approx(traj["values"][-1])
    assert summary["version"] == geom.__version__ and summary["complete"] is True
    assert summary["command"][:3] == ["geom", "flow", str(pair[0])]
    assert summary["files"] == ["checkpoint.npz", "trajectory.npz", "final.ply", "frames.png", "loss.png",
                                "summary.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(summary["files"])  # no temporary files left
    assert f"{summary['end_value']:.4g}" in stdout


def test_swf_from_noise_in_two_dimensions_to_an_array_file(capsys, tmp_path):
    rng = np.random.default_rng(0)
    target = tmp_path / "ring.npy"
    angle = rng.uniform(0, 2 * np.pi, 200)
    np.save(target, np.stack([np.cos(angle), np.sin(angle)], 1) * 3)
    out = tmp_path / "run"
    rc, _, err = run(capsys, "flow", "noise", target, "--method", "swf", "--steps", 40, *SMALL, "--out", out)
    assert rc == 0, err
    traj, summary = load(out)
    assert traj["trajectory"].shape[1:] == (96, 2) and summary["dim"] == 2
    # noise: seeded Gaussian points centred at the target's mean, with its RMS radius (about 3 here)
    y = np.load(target)
    mean, rms = y.mean(0), np.sqrt(np.square(y - y.mean(0)).sum(1).mean())
    z = torch.randn(96, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    np.testing.assert_allclose(traj["trajectory"][0], mean + rms / np.sqrt(2) * z, rtol=1e-5, atol=1e-5)
    radius = np.linalg.norm(traj["trajectory"][-1], axis=1)
    assert abs(np.median(radius) - 3) < 0.3  # the particles reached the ring of radius 3
    assert traj["values"][-1] < 0.2 * traj["values"][0]
    import trimesh

    xyz = np.asarray(trimesh.load(out / "final.ply").vertices)
    np.testing.assert_allclose(xyz[:, :2], traj["trajectory"][-1], atol=1e-5)
    assert np.all(xyz[:, 2] == 0)


def test_dataset_items_as_source_and_target(capsys, tmp_path):
    out = tmp_path / "run"
    rc, _, err = run(capsys, "flow", "dataset:shapes:0", "dataset:shapes:3", "--method", "swf", "--steps", 10,
                     *SMALL, "--seed", 2, "--out", out)
    assert rc == 0, err
    traj, _ = load(out)
    item, _ = geom.load_dataset("shapes", n_points=96, seed=2)[0]
    np.testing.assert_array_equal(traj["trajectory"][0], item.double().numpy())


def test_weighted_target_keeps_its_weights(capsys, tmp_path):
    """A digit item is a pixel measure with intensity weights: the flow must fit the weighted measure."""
    out = tmp_path / "run"
    rc, _, err = run(capsys, "flow", "noise", "dataset:digits:0", "--method", "swf", "--steps", 60,
                     "--n-points", 150, "--out", out)
    assert rc == 0, err
    traj, summary = load(out)
    assert traj["trajectory"].shape[1:] == (150, 2)
    item, _ = geom.load_dataset("digits", seed=0)[0]
    final = torch.from_numpy(traj["trajectory"][-1])
    weighted = float(geom.sliced_wasserstein(final, item, n_projections=512, seed=0))
    uniform = float(geom.sliced_wasserstein(final, item.support[0][item.weights[0] > 0], n_projections=512, seed=0))
    assert weighted < 0.5 * uniform


def test_cswf_sends_each_part_to_the_same_part_of_the_target(capsys, tmp_path, pair):
    out = tmp_path / "run"
    rc, _, err = run(capsys, "flow", *pair, "--method", "cswf", "--labels", "z:3", "--steps", 60, *SMALL,
                     "--out", out)
    assert rc == 0, err
    traj, summary = load(out)
    assert summary["labels"] == "z:3" and summary["label_scale"] == 2.0 and summary["n_labels"] == 3
    labels = traj["labels"]
    mu = geom.measure(str(pair[0]), kind="points", n_samples=96, seed=0).support[0].double()
    nu = geom.measure(str(pair[1]), kind="points", n_samples=96, seed=0).support[0].double()
    # the labels are thirds of the source along z, and the library's flow gives the same particles
    z_rank = np.argsort(np.argsort(mu[:, 2].numpy(), kind="stable"), kind="stable")
    np.testing.assert_array_equal(labels, z_rank * 3 // 96)
    target_labels = torch.from_numpy(np.argsort(np.argsort(nu[:, 2].numpy(), kind="stable"), kind="stable") * 3 // 96)
    lib = geom.flows.conditional_swf(mu, nu, torch.from_numpy(labels), target_labels, steps=60, step_size=0.5,
                                     label_scale=2.0, n_projections=32, seed=0)
    np.testing.assert_array_equal(traj["trajectory"][-1], lib.particles.numpy())
    # each part of the final cloud lies on its own part of the target: the nearest target point of
    # a particle mostly carries the particle's label (a plain SWF mixes the parts of the torus)
    final = torch.from_numpy(traj["trajectory"][-1])
    nearest = target_labels[torch.cdist(final, nu).argmin(1)].numpy()
    plain = geom.flows.swf(mu, nu, steps=60, step_size=0.5, n_projections=32, seed=0).particles
    plain_nearest = target_labels[torch.cdist(plain, nu).argmin(1)].numpy()
    assert (nearest == labels).mean() > 0.8 > (plain_nearest == labels).mean()


def test_cswf_labels_from_npz_archives_and_label_errors(capsys, tmp_path, pair):
    rng = np.random.default_rng(0)
    src, dst = tmp_path / "src.npz", tmp_path / "dst.npz"
    x = rng.normal(size=(60, 2))
    y = np.concatenate([rng.normal(size=(30, 2)) * 0.2 + [4, 0], rng.normal(size=(30, 2)) * 0.2 - [4, 0]])
    np.savez(src, points=x, labels=(x[:, 0] > 0).astype(int))  # right half -> right blob
    np.savez(dst, points=y, labels=np.repeat([1, 0], 30))
    out = tmp_path / "run"
    rc, _, err = run(capsys, "flow", src, dst, "--method", "cswf", "--labels", "npz", "--label-scale", 10,
                     "--steps", 80, "--n-projections", 32, "--out", out)
    assert rc == 0, err
    traj, _ = load(out)
    final, labels = traj["trajectory"][-1], traj["labels"]
    assert np.all(np.sign(final[:, 0]) == np.where(labels == 1, 1, -1))  # every particle reached its blob
    base = ["flow", *pair, "--steps", 3, *SMALL, "--out", tmp_path / "bad"]
    assert_user_error(*run(capsys, *base, "--method", "swf", "--labels", "z:2"), "--labels", "only used by")
    assert_user_error(*run(capsys, *base, "--method", "cswf", "--labels", "w:2"), "--labels", "AXIS:K")
    assert_user_error(*run(capsys, *base, "--method", "cswf", "--labels", "5:2"), "--labels", "below the dimension 3")
    assert_user_error(*run(capsys, *base, "--method", "cswf", "--labels", "z:0"), "--labels", "K <= 96")
    assert_user_error(*run(capsys, *base, "--method", "cswf", "--labels", "npz"), "--labels", ".npz", "SOURCE")
    assert_user_error(*run(capsys, *base, "--method", "cswf", "--label-scale", -1), "--label-scale")
    np.savez(tmp_path / "nolabels.npz", points=x)
    assert_user_error(*run(capsys, "flow", tmp_path / "nolabels.npz", dst, "--method", "cswf", "--labels", "npz",
                           "--out", tmp_path / "bad"), "--labels", "no 'labels' array")


def test_force_overwrites_a_finished_run(capsys, tmp_path, pair):
    out = tmp_path / "run"
    assert run(capsys, "flow", *pair, "--method", "swf", "--steps", 5, *SMALL, "--out", out)[0] == 0
    rc, _, err = run(capsys, "flow", *pair, "--method", "swf", "--steps", 7, *SMALL, "--out", out, "--force")
    assert rc == 0, err
    assert load(out)[1]["steps_done"] == 7


# ---------------------------------------------------------------------------------------------- interrupt and resume


@pytest.mark.parametrize("method", ["sw", "swf", "cswf", "mmd"])
def test_interrupted_then_resumed_equals_uninterrupted_bit_for_bit(capsys, tmp_path, pair, monkeypatch, method):
    args = ["flow", *pair, "--method", method, "--steps", 30, "--record-every", 10, "--scheme", "qmc", *SMALL]
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN where the process started ignoring it
    whole = tmp_path / "whole"
    assert run(capsys, *args, "--out", whole)[0] == 0

    part = tmp_path / "part"
    with monkeypatch.context() as m:
        interrupt_at(m, 13)
        rc, _, err = run(capsys, *args, "--out", part)
    assert rc == 130
    line = [x for x in err.splitlines() if x.startswith("geom: interrupted")]
    assert len(line) == 1 and "at step 13 of 30" in line[0] and "--resume" in line[0]
    _, summary = load(part)
    assert summary["steps_done"] == 13 and summary["complete"] is False
    assert signal.getsignal(signal.SIGINT) is before  # handler restored

    rc, _, err = run(capsys, *args, "--out", part, "--resume")
    assert rc == 0, err
    a, sa = load(whole)
    b, sb = load(part)
    np.testing.assert_array_equal(b["trajectory"][-1], a["trajectory"][-1])  # same generator, scheme, Adam state
    assert b["steps"].tolist() == [0, 10, 13, 20, 30]  # the stop frame is kept
    keep = [0, 1, 3, 4]
    np.testing.assert_array_equal(b["trajectory"][keep], a["trajectory"])
    np.testing.assert_array_equal(b["values"][keep], a["values"])
    assert sb["end_value"] == sa["end_value"] and sb["resumed"] is True
    assert a["values"][-1] < 0.7 * a["values"][0]


def test_resume_extends_a_finished_run(capsys, tmp_path, pair):
    args = ["flow", *pair, "--method", "sw", *SMALL]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run(capsys, *args, "--steps", 20, "--record-every", 5, "--out", whole)[0] == 0
    assert run(capsys, *args, "--steps", 12, "--record-every", 5, "--out", part)[0] == 0
    rc, _, err = run(capsys, *args, "--steps", 20, "--record-every", 5, "--out", part, "--resume")
    assert rc == 0, err
    np.testing.assert_array_equal(load(part)[0]["trajectory"][-1], load(whole)[0]["trajectory"][-1])


def test_resume_refuses_changed_arguments_and_missing_checkpoints(capsys, tmp_path, pair):
    out = tmp_path / "run"
    args = ["flow", *pair, "--method", "swf", *SMALL, "--out", out]
    assert run(capsys, *args, "--steps", 5)[0] == 0
    assert_user_error(*run(capsys, *args, "--steps", 9, "--seed", 1, "--resume"), "--resume", "seed=0")
    assert_user_error(*run(capsys, *args, "--steps", 9, "--lr", 0.1, "--resume"), "lr=0.5")
    assert_user_error(*run(capsys, *args, "--steps", 5, "--resume"), "already did 5 steps")
    assert_user_error(*run(capsys, "flow", *pair, "--method", "swf", "--out", tmp_path / "new", "--resume"),
                      "--resume", "no checkpoint.npz")


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_exit_2(capsys, tmp_path, pair):
    out = str(tmp_path / "o")
    flat = tmp_path / "flat.npy"
    np.save(flat, np.random.default_rng(0).normal(size=(50, 2)))
    cases = [
        (["--method", "nope"], ["--method", "'nope'"]),
        (["--method", "sw", "--steps", "0"], ["--steps"]),
        (["--method", "sw", "--lr", "-1"], ["--lr"]),
        (["--method", "sw", "--n-points", "0"], ["--n-points"]),
        (["--method", "sw", "--option", "bogus"], ["--option"]),
    ]
    for extra, needles in cases:
        assert_user_error(*run(capsys, "flow", *pair, *extra, "--out", out), *needles)
    assert_user_error(*run(capsys, "flow", flat, pair[1], "--method", "sw", "--out", out), "dimension", "2 and 3")
    assert_user_error(*run(capsys, "flow", pair[0], "noise", "--method", "sw", "--out", out), "TARGET", "noise")
    assert_user_error(*run(capsys, "flow", tmp_path / "none.ply", pair[1], "--method", "sw", "--out", out),
                      "SOURCE", "none.ply")
    assert_user_error(*run(capsys, "flow", "dataset:shapes:x", pair[1], "--method", "sw", "--out", out),
                      "SOURCE", "INDEX")
    assert_user_error(*run(capsys, "flow", "dataset:shapes:100000", pair[1], "--method", "sw", "--out", out),
                      "SOURCE", "100000")
    assert_user_error(*run(capsys, "flow", "dataset:nosuch:1", pair[1], "--method", "sw", "--out", out), "nosuch")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_boundary_errors_name_the_command_line_argument(capsys, tmp_path, pair):
    out = tmp_path / "o"
    base = ["flow", *pair, "--method", "swf", "--steps", 3, *SMALL, "--out", out]
    assert_user_error(*run(capsys, *base, "--scheme", "nope"), "--scheme", "'nope'", "mc", "reservoir")
    assert_user_error(*run(capsys, *base, "--seed", 2**64), "--seed", "2^64")
    assert_user_error(*run(capsys, *base, "--seed", -3), "--seed", "-3")
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY nonsense")
    rc, stdout, err = run(capsys, "flow", garbage, pair[1], "--method", "swf", "--out", out)
    assert_user_error(rc, stdout, err, "geom: error: SOURCE: ", "garbage.npy")
    assert "obj" not in err
    assert_user_error(*run(capsys, "generate", "--method", "swf", "--dataset", "digits", "--seed", 2**70,
                           "--out", out), "--seed")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("argument", ["--n-points", "--n-projections"])
def test_sizes_beyond_memory_are_refused_before_anything_is_read(capsys, tmp_path, pair, argument):
    rc, stdout, err = run(capsys, "flow", pair[0], tmp_path / "not-read.ply", "--method", "swf",
                          argument, 10**12, "--out", tmp_path / "o")
    assert_user_error(rc, stdout, err, f"geom: error: {argument}: ", "memory")
    rc, stdout, err = run(capsys, "generate", "--method", "swf", "--dataset", "digits", "--n-samples"
                          if argument == "--n-points" else argument, 10**12, "--out", tmp_path / "o")
    assert_user_error(rc, stdout, err, "memory")


def test_a_diverging_flow_is_one_line_naming_the_step_and_keeps_the_checkpoint_from_before(capsys, tmp_path, pair):
    """With this step size the particles overflow after some 50 steps (SW = 0 was recorded for them)."""
    out = tmp_path / "run"
    args = ["flow", *pair, "--method", "swf", *SMALL, "--lr", 1e3, "--out", out]
    rc, stdout, err = run(capsys, *args, "--steps", 300)
    assert_user_error(rc, stdout, err, "diverged at step", "non-finite", "--lr")
    assert not out.exists() or not any(out.iterdir())
    assert run(capsys, *args, "--steps", 10)[0] == 0  # still finite
    before = (out / "checkpoint.npz").read_bytes()
    rc, stdout, err = run(capsys, *args, "--steps", 300, "--resume")
    assert_user_error(rc, stdout, err, "diverged at step", "non-finite")
    assert (out / "checkpoint.npz").read_bytes() == before and load(out)[1]["steps_done"] == 10


def test_generate_airports_holds_out_points_of_each_one_item_state(capsys, tmp_path):
    pytest.importorskip("vega_datasets")
    out = tmp_path / "gen"
    rc, stdout, err = run(capsys, "generate", "--method", "swf", "--dataset", "airports", "--n-samples", 50,
                          "--steps", 30, "--n-projections", 16, "--out", out)
    assert rc == 0, err
    samples, _, summary = gen_load(out)
    assert samples.shape == (50, 3) and summary["n_held_out"] > 0 and summary["n_train"] > 0
    # every airport is a unit vector: the flow brought the noise close to the sphere
    radius = np.linalg.norm(samples, axis=1)
    noise = np.linalg.norm(np.random.default_rng(0).normal(size=(50, 3)), axis=1)
    assert np.abs(radius - 1).mean() < 0.5 * np.abs(noise - 1).mean()


def test_output_folder_errors(capsys, tmp_path, pair):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    base = ["flow", *pair, "--method", "swf", "--steps", 3, *SMALL]
    assert_user_error(*run(capsys, *base, "--out", blocker / "sub"), "--out", "cannot write")
    assert_user_error(*run(capsys, *base, "--out", blocker), "--out", "not a directory")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "other.txt").write_text("keep")
    assert_user_error(*run(capsys, *base, "--out", busy), "--out", "not empty", "--force", "--resume")
    assert (busy / "other.txt").read_text() == "keep"
    rc, out, err = run(capsys, *base, "--out", busy, "--force", "--resume")  # argparse: mutually exclusive
    assert rc == 2 and "not allowed with" in err


# ---------------------------------------------------------------------------------------------- generate


def gen_load(out):
    with np.load(out / "samples.npz") as z:
        return z["samples"], z["labels"], json.loads((out / "summary.json").read_text())


def energy_oracle(x, y):
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistics) by dense distances."""
    return 2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()


def test_generate_cswf_digits_scores_against_independent_oracles(capsys, tmp_path):
    import ot

    out = tmp_path / "gen"
    rc, stdout, err = run(capsys, "generate", "--method", "cswf", "--dataset", "digits", "--n-samples", 6,
                          "--steps", 60, "--n-projections", 32, "--seed", 1, "--out", out)
    assert rc == 0, err
    samples, labels, summary = gen_load(out)
    assert samples.shape == (60, 64) and labels.tolist() == np.repeat(np.arange(10), 6).tolist()
    train = geom.load_dataset("digits", representation="vectors", split="train", seed=1)
    test = geom.load_dataset("digits", representation="vectors", split="test", seed=1)
    (x, y), (xt, _) = train.batch(), test.batch()
    x, xt, s = x.double(), xt.double(), torch.from_numpy(samples)
    # 1-NN classifier on the real training digits labels the samples with their conditioning class
    predicted = y[torch.cdist(s, x).argmin(1)].numpy()
    accuracy = float((predicted == labels).mean())
    assert summary["nn1_accuracy"] == pytest.approx(accuracy)
    assert accuracy > 0.7  # chance is 0.1
    w2 = np.sqrt(ot.emd2([], [], ot.dist(samples, xt.numpy())))
    assert summary["w2_to_held_out"] == pytest.approx(w2, rel=1e-6)
    assert summary["energy_to_held_out"] == pytest.approx(float(energy_oracle(s, xt)), rel=1e-6, abs=1e-9)
    # noise is far from the digits: the flow brought the samples close to held-out data
    noise = torch.randn(60, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert summary["energy_to_held_out"] < 0.1 * float(energy_oracle(noise, xt))
    assert (out / "samples.png").stat().st_size > 0
    assert f"{accuracy:.3f}" in stdout


def test_generate_one_class_unconditionally(capsys, tmp_path):
    out = tmp_path / "gen"
    rc, _, err = run(capsys, "generate", "--method", "swf", "--dataset", "digits", "--class", "3",
                     "--n-samples", 30, "--steps", 60, "--n-projections", 32, "--out", out)
    assert rc == 0, err
    samples, _, summary = gen_load(out)
    train = geom.load_dataset("digits", representation="vectors", split="train", seed=0)
    x, y = train.batch()
    predicted = y[torch.cdist(torch.from_numpy(samples), x.double()).argmin(1)]
    assert float((predicted == 3).double().mean()) > 0.8
    assert summary["classes"] == ["3"] and summary["n_train"] == int((y == 3).sum())


@pytest.mark.parametrize("method", ["swf", "mmd"])
def test_generate_point_cloud_dataset(capsys, tmp_path, method):
    out = tmp_path / "gen"
    rc, _, err = run(capsys, "generate", "--method", method, "--dataset", "gaussians", "--n-points", 64,
                     "--n-samples", 100, "--steps", 60, "--n-projections", 32, "--out", out)
    assert rc == 0, err
    samples, _, summary = gen_load(out)
    assert samples.shape == (100, 3) and summary["dim"] == 3
    noise = torch.randn(100, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    data = geom.load_dataset("gaussians", n_points=64, seed=0)
    pooled = torch.cat([data[i][0].double() for i in range(len(data))])
    # the samples are closer to the data than the starting noise is
    assert float(energy_oracle(torch.from_numpy(samples), pooled)) < 0.5 * float(energy_oracle(noise, pooled))


def test_generate_a_dataset_of_shapes_makes_a_whole_shape_per_class(capsys, tmp_path):
    """Unconditional flows on a dataset of shapes learn each class alone: --n-samples points per class,
    each class's samples nearer (energy distance) to its own class's points than to any other's."""
    out = tmp_path / "gen"
    rc, _, err = run(capsys, "generate", "--method", "swf", "--dataset", "shapes", "--n-points", 128,
                     "--n-samples", 96, "--steps", 60, "--n-projections", 32, "--out", out)
    assert rc == 0, err
    samples, labels, summary = gen_load(out)
    data = geom.load_dataset("shapes", n_points=128, seed=0)
    K = len(data.classes)
    assert summary["per_class"] and samples.shape == (96 * K, 3)
    assert np.array_equal(labels, np.repeat(np.arange(K), 96))
    by_class = [torch.cat([data[i][0].double() for i in range(len(data)) if data[i][1] == c]) for c in range(K)]
    for c in range(K):
        own = torch.from_numpy(samples[labels == c])
        distances = [float(energy_oracle(own, by_class[k])) for k in range(K)]
        assert int(np.argmin(distances)) == c, (data.classes[c], distances)


def test_generate_bad_input(capsys, tmp_path):
    out = tmp_path / "o"
    base = ["generate", "--dataset", "digits", "--out", out]
    assert_user_error(*run(capsys, *base, "--method", "gan"), "--method", "'gan'")
    assert_user_error(*run(capsys, *base, "--method", "swf", "--steps", 0), "--steps")
    assert_user_error(*run(capsys, *base, "--method", "swf", "--class", "11"), "--class", "11")
    assert_user_error(*run(capsys, "generate", "--method", "swf", "--dataset", "nosuch", "--out", out), "nosuch")


# ---------------------------------------------------------------------------------------------- scale, normalize, root


def test_default_lr_knows_the_targets_scale_and_the_summary_records_it(capsys, tmp_path, pair):
    v, f = shapes.sphere()
    target = tmp_path / "huge.ply"
    target.write_bytes(shapes.mesh_bytes(100 * v, f))
    out = tmp_path / "run"
    rc, _, err = run(capsys, "flow", pair[0], target, "--method", "sw", "--steps", 60, *SMALL, "--out", out)
    assert rc == 0, err
    _, summary = load(out)
    nu = geom.measure(str(target), kind="points", n_samples=96, seed=0)
    assert summary["lr"] == pytest.approx(0.02 * geom.flows.target_scale(nu.support[0].double()), rel=1e-9)
    assert 90 < summary["lr"] / 0.02 < 110  # the RMS radius of a sphere of radius 100
    assert summary["end_value"] < 0.3 * summary["start_value"]  # the old fixed lr 0.02 hardly moved it
    rc, _, err = run(capsys, "flow", pair[0], target, "--method", "swf", "--steps", 2, *SMALL, "--out", tmp_path / "s")
    assert rc == 0, err
    assert load(tmp_path / "s")[1]["lr"] == 0.5  # a fraction of the transport step: no scale to know


def test_normalize_flows_between_normalised_clouds(capsys, tmp_path, pair):
    v, f = shapes.sphere()
    target = tmp_path / "moved.ply"
    target.write_bytes(shapes.mesh_bytes(7 * v + 20, f))
    out = tmp_path / "run"
    rc, _, err = run(capsys, "flow", pair[0], target, "--method", "swf", "--steps", 30, *SMALL, "--normalize",
                     "sphere", "--out", out)
    assert rc == 0, err
    traj, summary = load(out)
    start = traj["trajectory"][0]  # the source as geom.measure normalises it: farthest point at distance 1
    mu = geom.measure(str(pair[0]), kind="points", n_samples=96, seed=0, normalize="sphere")
    np.testing.assert_allclose(start, mu.support[0].double().numpy(), atol=1e-7)
    assert np.linalg.norm(traj["trajectory"][-1], axis=1).max() < 1.5  # it went to the normalised target
    assert summary["normalize"] == "sphere" and "--normalize" in summary["command"]
    assert summary["end_value"] < 0.2 * summary["start_value"]


def test_root_reaches_on_disk_datasets(capsys, tmp_path, pair):
    root = tmp_path / "shapes"
    for name, path in zip(("a", "b"), pair):
        (root / name).mkdir(parents=True)
        (root / name / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "run"
    rc, _, err = run(capsys, "flow", "dataset:folder:0", "dataset:folder:1", "--method", "swf", "--steps", 3, *SMALL,
                     "--root", root, "--out", out)
    assert rc == 0, err
    assert load(out)[1]["command"][-2:] == ["--root", str(root)]
    assert_user_error(*run(capsys, "flow", "dataset:folder:0", pair[1], "--method", "swf", *SMALL, "--out",
                           tmp_path / "x"), "SOURCE", "'folder'", "root")
    rc, _, err = run(capsys, "generate", "--method", "swf", "--dataset", "folder", "--root", root, "--steps", 3,
                     "--n-samples", 20, "--out", tmp_path / "gen")
    assert rc == 0, err
    assert json.loads((tmp_path / "gen" / "summary.json").read_text())["classes"] == ["a", "b"]


# ---------------------------------------------------------------------------------------------- figures


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures flow_cli saves, kept open for the test to read."""
    from geom_tools import flow_cli

    saved = []
    monkeypatch.setattr(flow_cli, "_save_figure", lambda fig, fh: saved.append(fig))
    return saved


def test_frames_draw_the_target_in_every_panel_within_its_limits(figures):
    from geom_tools import flow_cli

    g = np.random.default_rng(0)
    traj = np.stack([g.normal(size=(50, 2)) * (1 - t / 4) for t in range(5)])  # the particles shrink to 0
    target = g.normal(size=(80, 2)) * 0.1 + 30  # far away and small
    flow_cli._plot_frames(traj, np.arange(5), None, target=target)
    (fig,) = figures
    assert len(fig.axes) == 5
    for ax, frame in zip(fig.axes, traj):
        grey, particles = ax.collections  # the target first, behind
        np.testing.assert_array_equal(grey.get_offsets(), target)
        np.testing.assert_array_equal(particles.get_offsets(), frame)
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        both = np.concatenate([frame, target])
        assert x0 <= both[:, 0].min() and both[:, 0].max() <= x1 and y0 <= both[:, 1].min() and both[:, 1].max() <= y1


def test_generated_shapes_get_a_panel_each(figures):
    from geom_tools import flow_cli

    g = np.random.default_rng(1)
    labels, held_labels = np.repeat([0, 2, 3], 10), np.repeat([0, 1, 2, 3], 5)
    samples, held = g.normal(size=(30, 3)), g.normal(size=(20, 3))
    flow_cli._plot_samples(samples, labels, held, held_labels, ["a", "b", "c", "d"], False, None)
    (fig,) = figures
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["a", "c", "d"]
    for ax, c in zip(fig.axes, (0, 2, 3)):  # each shape over the held-out points of its own class
        reference, shape = ax.collections
        np.testing.assert_array_equal(np.asarray(shape._offsets3d).T, samples[labels == c])
        np.testing.assert_array_equal(np.asarray(reference._offsets3d).T, held[held_labels == c])
    assert min(fig.get_size_inches()) >= 4
