"""``geom deform``: outputs, metrics, interrupt and resume bit for bit, ``--force`` safety, one-line errors.

Runs are tiny (icospheres of level 1-2, a few steps, few directions); interrupts are real SIGINTs sent
from inside deform's callback, and a resumed run must repeat the uninterrupted one bit for bit.
"""

import json
import pathlib
import signal

import numpy as np
import pytest

from geom._state import load_npz, unflatten
from geom.io import read_mesh
from geom_datasets import shapes
from geom_tools import deform_cli

from cli_helpers import assert_user_error, interrupt_at, run

SAMPLES = pathlib.Path(shapes.__file__).parent / "samples"
TARGET = SAMPLES / "ellipsoid.ply"
SMALL = ["--n-projections", "16"]


def deform(out, *extra, template="sphere:1", target=TARGET, steps=6):
    return ["deform", template, target, "--out", out, "--steps", steps, *SMALL, *extra]


def load(out):
    arrays, meta = load_npz(out / "checkpoint.npz")
    ck = unflatten(arrays, meta["tree"])
    return ck, json.loads((out / "summary.json").read_text()), json.loads((out / "metrics.json").read_text())


def test_a_short_run_writes_every_output_and_decreases_the_loss(capsys, tmp_path):
    out = tmp_path / "run"
    rc, stdout, err = run(capsys, *deform(out, steps=16, template="sphere:2"))
    assert rc == 0, err
    assert "loss" in stdout and "geom deform ode" in err  # the progress bar
    assert sorted(p.name for p in out.iterdir()) == sorted(deform_cli.DEFORM_OUTPUTS)
    ck, summary, metrics = load(out)
    assert summary["files"] == list(deform_cli.DEFORM_OUTPUTS) and summary["complete"] is True
    assert summary["steps_done"] == 16 and ck["history"]["loss"].shape == (17,)
    assert summary["loss_end"] < 0.5 * summary["loss_start"]
    for name in ("deformed.ply", "deformed.obj"):  # the same mesh, the checkpoint's vertices in the target's frame
        v, f = read_mesh(out / name)
        assert v.shape == (162, 3) and f.shape == (320, 3)
        np.testing.assert_allclose(v, ck["vertices"].numpy(), rtol=0, atol=1e-6)  # float32 reader; one frame
    for name in ("render.png", "loss.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # metrics: finite numbers, the fraction of self-intersecting faces in [0, 1]
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    assert {"chamfer", "hausdorff", "sliced_w2", "exact_w2", "normal_agreement", "self_intersection_fraction",
            "seconds", "seconds_per_step", "loss_start", "loss_end"} <= set(numbers)
    assert all(np.isfinite(v) for v in numbers.values())
    assert 0 <= metrics["self_intersection_fraction"] <= 1
    assert metrics["self_intersecting_faces"] == round(metrics["self_intersection_fraction"] * 320)  # sphere:2: 320 faces
    assert metrics["seconds_per_step"] == pytest.approx(metrics["seconds"] / 16, rel=1e-3)


def test_vertices_method_chamfer_on_a_point_cloud_with_normalize(capsys, tmp_path):
    cloud = tmp_path / "cloud.xyz"
    v, _ = read_mesh(TARGET)
    np.savetxt(cloud, 3 * v + 5)
    out = tmp_path / "run"
    rc, _, err = run(capsys, *deform(out, "--method", "vertices", "--loss", "chamfer", "--normalize", "sphere",
                                     target=cloud, steps=4))
    assert rc == 0, err
    ck, summary, metrics = load(out)
    assert summary["loss_end"] < summary["loss_start"]
    assert 0 <= metrics["self_intersection_fraction"] <= 1 and np.isfinite(metrics["chamfer"])
    written, _ = read_mesh(out / "deformed.ply")
    assert np.abs(written.mean(0) - 5).max() < 0.5  # back in the target's own coordinates


@pytest.mark.parametrize("method", ["ode", "vertices"])
def test_interrupted_then_resumed_equals_uninterrupted_bit_for_bit(capsys, tmp_path, monkeypatch, method):
    args = ["--method", method, "--kind", "mesh"]  # kind mesh: fresh surface samples each step, from the generator
    before = signal.getsignal(signal.SIGINT)
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run(capsys, *deform(whole, *args, steps=7))[0] == 0

    with monkeypatch.context() as m:
        interrupt_at(m, 3)
        rc, _, err = run(capsys, *deform(part, *args, steps=7))
    assert rc == 130
    line = [x for x in err.splitlines() if x.startswith("geom: interrupted")]
    assert len(line) == 1 and "at step 3 of 7" in line[0] and "--resume" in line[0]
    assert signal.getsignal(signal.SIGINT) is before
    ck, summary, _ = load(part)
    assert ck["steps_done"] == 3 and summary["complete"] is False and ck["adam"]["t"] == 3

    rc, _, err = run(capsys, *deform(part, *args, "--resume", steps=7))
    assert rc == 0, err
    a, sa, _ = load(whole)
    b, sb, _ = load(part)
    assert sb["resumed"] is True and sb["complete"] is True
    np.testing.assert_array_equal(b["vertices"].numpy(), a["vertices"].numpy())  # same generator, Adam, field
    for name in a["history"]:
        np.testing.assert_array_equal(b["history"][name].numpy(), a["history"][name].numpy())
    assert (part / "deformed.ply").read_bytes() == (whole / "deformed.ply").read_bytes()

    # a finished run extends: 7 then 9 steps equals 9 at once
    assert run(capsys, *deform(part, *args, "--resume", steps=9))[0] == 0
    longer = tmp_path / "longer"
    assert run(capsys, *deform(longer, *args, steps=9))[0] == 0
    np.testing.assert_array_equal(load(part)[0]["vertices"].numpy(), load(longer)[0]["vertices"].numpy())


def test_stops_at_step_0_and_at_a_resumed_runs_first_row_and_rewritten_outputs(capsys, tmp_path, monkeypatch):
    """A fresh run stopped before any update resumes from scratch; a resumed run stopped at its first row
    keeps the checkpoint's state; lost outputs of a finished checkpoint are written again."""
    whole, part = tmp_path / "w", tmp_path / "p"
    assert run(capsys, *deform(whole, steps=5))[0] == 0
    with monkeypatch.context() as m:
        interrupt_at(m, 0)
        assert run(capsys, *deform(part, steps=5))[0] == 130
    assert load(part)[0]["steps_done"] == 0
    with monkeypatch.context() as m:  # resumed and stopped again at once, then at 2
        interrupt_at(m, 0)
        assert run(capsys, *deform(part, "--resume", steps=5))[0] == 130
    with monkeypatch.context() as m:
        interrupt_at(m, 2)
        assert run(capsys, *deform(part, "--resume", steps=5))[0] == 130
    with monkeypatch.context() as m:
        interrupt_at(m, 2)  # resumed at 2, stopped at its row 0 again
        assert run(capsys, *deform(part, "--resume", steps=5))[0] == 130
    assert load(part)[0]["steps_done"] == 2
    rc, _, err = run(capsys, *deform(part, "--resume", steps=5))
    assert rc == 0, err
    np.testing.assert_array_equal(load(part)[0]["vertices"].numpy(), load(whole)[0]["vertices"].numpy())
    np.testing.assert_array_equal(load(part)[0]["history"]["loss"].numpy(), load(whole)[0]["history"]["loss"].numpy())
    # outputs deleted, checkpoint kept: resume rewrites them
    (part / "summary.json").unlink()
    (part / "render.png").unlink()
    rc, out, err = run(capsys, *deform(part, "--resume", steps=5))
    assert rc == 0, err
    assert "written again" in out and (part / "render.png").exists()


def test_resume_refuses_changed_arguments_and_a_finished_run(capsys, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, *deform(out, steps=2))[0] == 0
    assert_user_error(*run(capsys, *deform(out, "--seed", 1, "--resume", steps=3)), "--resume", "seed=0")
    assert_user_error(*run(capsys, *deform(out, "--resume", steps=2)), "already did 2 steps")
    assert_user_error(*run(capsys, *deform(tmp_path / "new", "--resume")), "--resume", "no checkpoint.npz")


def test_force_replaces_only_what_geom_deform_wrote(capsys, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, *deform(out, steps=2))[0] == 0
    assert_user_error(*run(capsys, *deform(out, steps=2)), "--out", "not empty", "--force")
    (out / "notes.txt").write_text("mine")
    rc, _, err = run(capsys, *deform(out, "--force", steps=3))
    assert rc == 0, err
    assert (out / "notes.txt").read_text() == "mine" and load(out)[1]["steps_done"] == 3

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "deformed.ply").write_text("a user's own file")
    assert_user_error(*run(capsys, *deform(foreign, "--force", steps=2)), "--force", "deformed.ply",
                      "no earlier `geom deform`")
    assert (foreign / "deformed.ply").read_text() == "a user's own file"
    flow_summary = tmp_path / "flowrun"  # outputs of another command are not deform's
    flow_summary.mkdir()
    (flow_summary / "summary.json").write_text(json.dumps({"command": ["geom", "flow"], "files": ["summary.json"]}))
    assert_user_error(*run(capsys, *deform(flow_summary, "--force", steps=2)), "--force", "summary.json")


def test_bad_input_is_one_line_naming_the_argument(capsys, tmp_path):
    empty = tmp_path / "empty.obj"
    empty.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    fin = tmp_path / "fin.obj"  # three triangles on one edge: not a manifold
    fin.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 -1 0\nv 0 0 1\nf 1 2 3\nf 2 1 4\nf 1 2 5\n")
    cloud = tmp_path / "cloud.xyz"
    np.savetxt(cloud, np.random.default_rng(0).normal(size=(50, 3)))
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = tmp_path / "o"
    cases = [
        (deform(out, template=empty), ["TEMPLATE"]),
        (deform(out, template=fin), ["TEMPLATE", "manifold"]),
        (deform(out, target=cloud), ["--kind", "varifold", "point cloud"]),
        (deform(out, steps=0), ["--steps"]),
        (deform(out, steps=-3), ["--steps"]),
        (deform(blocker / "sub"), ["--out", "cannot write"]),
        (deform(out, template=tmp_path / "missing.ply"), ["TEMPLATE", "no such file"]),
        (deform(out, target=tmp_path / "missing.ply"), ["TARGET", "no such file"]),
        (deform(out, template="sphere:abc"), ["TEMPLATE", "sphere:LEVEL"]),
        (deform(out, template="sphere:12"), ["TEMPLATE", "sphere:LEVEL"]),
        (deform(out, "--lr", "-1"), ["--lr"]),
        (deform(out, "--scheme", "nope"), ["--scheme"]),
    ]
    for argv, needles in cases:
        assert_user_error(*run(capsys, *argv), *needles)
    rc, _, err = run(capsys, *deform(out, "--kind", "mesh", target=cloud, steps=1))  # a cloud fits kind mesh
    assert rc == 0, err


def test_help_lists_the_options_and_plugins_lists_the_command(capsys):
    rc, text, _ = run(capsys, "deform", "--help")
    assert rc == 0
    for option in ("TEMPLATE", "TARGET", "--out", "--loss", "--kind", "--method", "--scheme", "--option", "--steps",
                   "--lr", "--seed", "--normalize", "--resume", "--force", "sphere:LEVEL"):
        assert option in text, option
    rc, out, _ = run(capsys, "plugins", "--json")
    assert rc == 0
    commands = next(p for p in json.loads(out) if p["name"] == "commands")["commands"]
    assert "deform" in commands
