"""``geom train-ae``: outputs, interrupt and resume bit for bit, ``--force`` safety, hostile checkpoints, one-line
errors.

Runs are tiny (4 shapes per class of 32 points, batches of 4, a model of a few thousand weights, 1-3
epochs); interrupts are real SIGINTs sent from inside the training callback, and a resumed run must
repeat the uninterrupted one bit for bit.
"""

import copy
import json
import os
import signal

import numpy as np
import pytest
import torch

from geom._state import flatten, load_npz, save_npz, unflatten
from geom_tools import train_ae_cli

from cli_helpers import assert_user_error, run

SMALL = ["--n-per-class", "4", "--n-points", "32", "--batch-size", "4", "--latent", "8", "--n-projections", "16"]
STEPS_PER_EPOCH = 5  # 18 training clouds (a quarter of 4 per class held out) in batches of 4


def train_ae(out, *extra, epochs=2):
    return ["train-ae", "--out", out, "--epochs", epochs, *SMALL, *extra]


def load(out):
    arrays, meta = load_npz(out / "checkpoint.npz")
    return unflatten(arrays, meta["tree"]), json.loads((out / "summary.json").read_text()), \
        json.loads((out / "metrics.json").read_text())


def interrupt_at(monkeypatch, step):
    """A real SIGINT when the training callback reaches global step ``step`` (1 = after the first step)."""
    original = train_ae_cli._Progress.__call__

    def call(self, epoch, batch, value):
        if self.bar.n + 1 == step:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, epoch, batch, value)

    monkeypatch.setattr(train_ae_cli._Progress, "__call__", call)


def test_a_short_run_writes_every_output_and_decreases_the_loss(capsys, tmp_path):
    out = tmp_path / "run"
    rc, stdout, err = run(capsys, *train_ae(out, "--lr", "0.005", epochs=3))
    assert rc == 0, err
    assert "test Chamfer" in stdout and "geom train-ae sw" in err  # the progress bar
    assert sorted(p.name for p in out.iterdir()) == sorted(train_ae_cli.OUTPUTS)
    ck, summary, metrics = load(out)
    assert summary["files"] == list(train_ae_cli.OUTPUTS) and summary["complete"] is True
    assert ck["position"] == [3, 0] and ck["values"].shape == (3 * STEPS_PER_EPOCH,)
    assert metrics["loss_end"] < metrics["loss_start"]
    assert metrics["n_train"] == 18 and metrics["n_test"] == 6 and len(metrics["per_item"]["emd"]) == 6
    for name in ("chamfer", "emd", "sw", "probe_accuracy", "seconds_per_epoch"):
        assert np.isfinite(metrics[name]) and metrics[name] >= 0, name
    for name in ("reconstructions.png", "interpolation.png", "loss.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = np.load(out / "history.npz", allow_pickle=False)
    np.testing.assert_array_equal(history["values"], ck["values"].numpy())
    assert summary["scheme"] == "mc" and summary["align"] == "pca" and summary["checkpoint_sha256"]


@pytest.mark.parametrize("loss", ["sw", *[pytest.param(name, marks=pytest.mark.slow)
                                          for name in ("sw-qmc", "sw-vmf", "chamfer")]])
def test_interrupted_then_resumed_equals_uninterrupted_bit_for_bit(capsys, tmp_path, monkeypatch, loss):
    before = signal.getsignal(signal.SIGINT)
    whole, part = tmp_path / "whole", tmp_path / "part"
    options = {"sw-qmc": ["--option", "n_randomizations=2"], "sw-vmf": ["--option", "n_steps=2"]}
    args = ["--loss", loss, *options.get(loss, [])]  # v-DSW: its vMF location and Adam carry over too
    assert run(capsys, *train_ae(whole, *args))[0] == 0

    with monkeypatch.context() as m:
        interrupt_at(m, 7)  # inside the second epoch
        rc, _, err = run(capsys, *train_ae(part, *args))
    assert rc == 130
    line = [x for x in err.splitlines() if x.startswith("geom: interrupted")]
    assert len(line) == 1 and f"at step 7 of {2 * STEPS_PER_EPOCH}" in line[0] and "--resume" in line[0]
    assert signal.getsignal(signal.SIGINT) is before
    ck, summary, _ = load(part)
    assert ck["position"] == [1, 2] and summary["complete"] is False and len(ck["values"]) == 7

    rc, _, err = run(capsys, *train_ae(part, *args, "--resume"))
    assert rc == 0, err
    a, sa, ma = load(whole)
    b, sb, mb = load(part)
    assert sb["resumed"] is True and sb["complete"] is True
    np.testing.assert_array_equal(b["values"].numpy(), a["values"].numpy())
    for k in a["model"]:
        assert torch.equal(b["model"][k], a["model"][k]), k
    arrays_a, skeleton_a = flatten({k: a[k] for k in ("optimizer", "loss")})
    arrays_b, skeleton_b = flatten({k: b[k] for k in ("optimizer", "loss")})
    assert skeleton_a == skeleton_b and all(np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a)
    for name in ("chamfer", "emd", "sw", "probe_accuracy"):
        assert ma[name] == mb[name], name
    assert (part / "history.npz").read_bytes() == (whole / "history.npz").read_bytes()

    # a finished run extends: 2 then 3 epochs equals 3 at once
    assert run(capsys, *train_ae(part, *args, "--resume", epochs=3))[0] == 0
    longer = tmp_path / "longer"
    assert run(capsys, *train_ae(longer, *args, epochs=3))[0] == 0
    np.testing.assert_array_equal(load(part)[0]["values"].numpy(), load(longer)[0]["values"].numpy())


def test_an_interrupt_on_the_last_step_completes_and_lost_outputs_are_rewritten(capsys, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_at(m, STEPS_PER_EPOCH)  # the last step of a one-epoch run: nothing left to do
        rc, _, err = run(capsys, *train_ae(out, epochs=1))
    assert rc == 0, err
    assert load(out)[1]["complete"] is True
    assert_user_error(*run(capsys, *train_ae(out, "--resume", epochs=1)), "--resume", "already did 1 epochs")
    (out / "summary.json").unlink()
    (out / "interpolation.png").unlink()
    rc, stdout, err = run(capsys, *train_ae(out, "--resume", epochs=1))
    assert rc == 0, err
    assert "written again" in stdout and (out / "interpolation.png").exists()


def test_resume_refuses_changed_arguments(capsys, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, *train_ae(out, epochs=1))[0] == 0
    assert_user_error(*run(capsys, *train_ae(out, "--seed", "1", "--resume")), "--resume", "seed=0, got 1")
    assert_user_error(*run(capsys, *train_ae(out, "--loss", "energy", "--resume")), "--resume", "loss='sw'")
    assert_user_error(*run(capsys, *train_ae(tmp_path / "new", "--resume")), "--resume", "no checkpoint.npz")


def test_force_replaces_only_what_geom_train_ae_wrote(capsys, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, *train_ae(out, epochs=1))[0] == 0
    assert_user_error(*run(capsys, *train_ae(out, epochs=1)), "--out", "not empty", "--force")
    (out / "notes.txt").write_text("mine")
    rc, _, err = run(capsys, *train_ae(out, "--force", epochs=2))
    assert rc == 0, err
    assert (out / "notes.txt").read_text() == "mine" and load(out)[1]["epochs_done"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted([*train_ae_cli.OUTPUTS, "notes.txt"])

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "loss.png").write_text("a user's own file")
    assert_user_error(*run(capsys, *train_ae(foreign, "--force")), "--force", "loss.png", "no earlier `geom train-ae`")
    assert (foreign / "loss.png").read_text() == "a user's own file"
    flow_run = tmp_path / "flowrun"  # outputs of another command are not train-ae's
    flow_run.mkdir()
    (flow_run / "summary.json").write_text(json.dumps({"command": ["geom", "flow"], "files": ["summary.json"]}))
    assert_user_error(*run(capsys, *train_ae(flow_run, "--force")), "--force", "summary.json")


class Boom:
    """Unpickling this runs code: it would create the file ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_hostile_or_foreign_checkpoints_are_refused_in_one_line(capsys, tmp_path):
    good = tmp_path / "good"
    assert run(capsys, *train_ae(good, epochs=1))[0] == 0
    arrays, meta = load_npz(good / "checkpoint.npz")

    def folder(name):
        path = tmp_path / name
        path.mkdir()
        return path

    # a pickle inside the .npz: never unpickled
    pickled = folder("pickled")
    marker = tmp_path / "pwned"
    np.savez(pickled / "checkpoint.npz", boom=np.array([Boom(marker)], dtype=object))
    assert_user_error(*run(capsys, *train_ae(pickled, "--resume")), "--resume", "checkpoint")
    assert not marker.exists()
    # not a zip, truncated
    junk = folder("junk")
    (junk / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really")
    assert_user_error(*run(capsys, *train_ae(junk, "--resume")), "--resume", "truncated or corrupt")
    cut = folder("cut")
    data = (good / "checkpoint.npz").read_bytes()
    (cut / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    assert_user_error(*run(capsys, *train_ae(cut, "--resume")), "--resume")
    # another command's checkpoint
    other = folder("other")
    save_npz(other / "checkpoint.npz", arrays, dict(meta, command="flow"))
    assert_user_error(*run(capsys, *train_ae(other, "--resume")), "not a checkpoint of geom train-ae")
    # weights of the wrong shape, a lying position, non-finite moments
    ck = unflatten(arrays, meta["tree"])

    def tampered(name, change):
        path = folder(name)
        tree = copy.deepcopy(ck)
        change(tree)
        a, skeleton = flatten(tree, "checkpoint")
        save_npz(path / "checkpoint.npz", a, dict(meta, tree=skeleton))
        return path

    def shrink(tree):
        key = next(iter(tree["model"]))
        tree["model"][key] = tree["model"][key][:1]

    def lie(tree):
        tree["position"] = [0, 99]

    def poison(tree):
        opt = tree["optimizer"]
        moments = opt["state"][0]
        opt["state"][0] = dict(moments, exp_avg=torch.full_like(moments["exp_avg"], float("nan")))

    assert_user_error(*run(capsys, *train_ae(tampered("shrunk", shrink), "--resume")), "model weights do not fit")
    assert_user_error(*run(capsys, *train_ae(tampered("lying", lie), "--resume")), "its position is [0, 99]")
    assert_user_error(*run(capsys, *train_ae(tampered("nan", poison), "--resume")), "moments are not all finite")

    def reshape(tree):
        opt = tree["optimizer"]
        moments = opt["state"][0]
        opt["state"][0] = dict(moments, exp_avg_sq=moments["exp_avg_sq"].reshape(-1)[:5])

    assert_user_error(*run(capsys, *train_ae(tampered("reshaped", reshape), "--resume")), "'exp_avg_sq'",
                      "expected the shape of its weights")


def test_bad_input_is_one_line_naming_the_argument(capsys, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = tmp_path / "o"
    cases = [
        (train_ae(out, epochs=0), ["--epochs"]),
        (train_ae(out, "--batch-size", "0"), ["--batch-size"]),
        (train_ae(out, "--lr", "-1"), ["--lr"]),
        (train_ae(out, "--seed", "-2"), ["--seed"]),
        (train_ae(out, "--scheme", "nope"), ["--scheme"]),
        (train_ae(out, "--option", "bogus=1"), ["--option"]),
        (train_ae(out, "--loss", "chamfer", "--scheme", "mc"), ["--scheme", "no slicing scheme"]),
        (train_ae(out, "--loss", "sw-qmc", "--scheme", "mc"), ["--scheme", "slices with 'qmc'"]),
        (train_ae(out, "--root", str(tmp_path)), ["--root", "generated"]),
        (train_ae(out, "--dataset", "modelnet"), ["--root", "give --root"]),
        (train_ae(out, "--dataset", "modelnet", "--root", str(tmp_path / "missing")), ["--root", "no such path"]),
        (train_ae(out, "--dataset", "shapenet", "--root", str(blocker)), ["--root"]),
        (train_ae(blocker / "sub"), ["--out"]),
    ]
    for argv, needles in cases:
        assert_user_error(*run(capsys, *argv), *needles)
    assert not out.exists()
    rc, _, err = run(capsys, *train_ae(out, "--loss", "sw", "--scheme", "qmc", epochs=1))  # any scheme for sw
    assert rc == 0, err
    assert load(out)[1]["scheme"] == "qmc"


def test_help_lists_the_options_and_plugins_lists_the_command(capsys):
    rc, out, _ = run(capsys, "train-ae", "--help")
    assert rc == 0
    for flag in ("--loss", "--scheme", "--n-projections", "--epochs", "--resume", "--force", "--dataset", "--root"):
        assert flag in out
    rc, out, _ = run(capsys, "plugins", "--json")
    assert rc == 0 and "train-ae" in {c for p in json.loads(out) for c in p["commands"]}


def write_off(path, scale):
    """An octahedron of radius ``scale`` as an OFF file."""
    v = scale * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
    f = [(0, 2, 4), (2, 1, 4), (1, 3, 4), (3, 0, 4), (2, 0, 5), (1, 2, 5), (3, 1, 5), (0, 3, 5)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"OFF\n{len(v)} {len(f)} 0\n" + "".join(f"{a} {b} {c}\n" for a, b, c in v)
                    + "".join(f"3 {a} {b} {c}\n" for a, b, c in f))


def test_a_modelnet_folder_trains_on_its_own_splits(capsys, tmp_path):
    from geom.learn.autoencoder import load_clouds

    root = tmp_path / "ModelNet"
    for c, name in enumerate(("chair", "lamp")):
        for k, split in enumerate(("train", "train", "train", "test")):
            write_off(root / name / split / f"{name}_{k:04d}.off", 1 + c + 0.1 * k)
    data = load_clouds("modelnet", root=root, n_points=32, seed=0)
    assert data["train"][0].shape == (6, 32, 3) and data["test"][0].shape == (2, 32, 3)
    assert data["classes"] == ["chair", "lamp"] and data["test"][1].tolist() == [0, 1]
    out = tmp_path / "run"
    rc, stdout, err = run(capsys, "train-ae", "--out", out, "--dataset", "modelnet", "--root", root, "--epochs", 1,
                          "--n-points", 32, "--batch-size", 4, "--latent", 8, "--n-projections", 16)
    assert rc == 0, err
    ck, summary, metrics = load(out)
    assert summary["classes"] == ["chair", "lamp"] and summary["align"] == "none"
    assert metrics["n_train"] == 6 and metrics["n_test"] == 2
    assert ck["values"].shape == (2,)  # 6 clouds in batches of 4


@pytest.mark.slow
def test_an_amortized_scheme_trains_its_network_and_resumes_bit_for_bit(capsys, tmp_path, monkeypatch):
    args = ["--loss", "sw-amortized", "--option", "variant=linear"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run(capsys, *train_ae(whole, *args))[0] == 0
    with monkeypatch.context() as m:
        interrupt_at(m, 6)
        assert run(capsys, *train_ae(part, *args))[0] == 130
    rc, _, err = run(capsys, *train_ae(part, *args, "--resume"))
    assert rc == 0, err
    (a, summary, _), b = load(whole), load(part)[0]
    np.testing.assert_array_equal(b["values"].numpy(), a["values"].numpy())
    weights = [k for k in a["loss"] if k.startswith("scheme_modules.")]
    assert weights, "the amortized network's weights are in the loss's state"
    fresh = train_ae_cli._objects(summary)[2].state_dict()
    for k in weights:
        assert torch.equal(b["loss"][k], a["loss"][k]), k
        assert not torch.equal(a["loss"][k], fresh[k]), k  # trained in the autoencoder's steps
