"""Run folders of ``geom flow`` and ``geom generate`` as untrusted input and under failure.

* Checkpoints are arrays plus JSON: a planted pickle is never loaded, and a corrupt, truncated, empty,
  foreign or inconsistent checkpoint is one line naming the file (exit 2).
* Every write replaces its file whole: a disk that fills up mid-file, or Ctrl-C during the final
  writes, leaves every earlier file intact and a run that ``--resume`` finishes, bit for bit.
* ``--force`` removes only files an earlier run of the same command wrote.
* Real SIGINTs to a ``geom`` process at many moments: one line, status 130, never a traceback.
"""

import errno
import json
import os
import pathlib
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

import geom._files
from geom._files import TEMP_PREFIX
from geom._state import flatten, load_npz, save_npz, unflatten
from geom_datasets import shapes
from geom_tools import flow_cli

from cli_helpers import assert_user_error, interrupt_at, run

SAMPLES = pathlib.Path(shapes.__file__).parent / "samples"
PAIR = [SAMPLES / "sphere.ply", SAMPLES / "torus.ply"]
SMALL = ["--n-points", "64", "--n-projections", "16", "--record-every", "3"]


def flow(method="swf", steps=6, *extra):
    return ["flow", *PAIR, "--method", method, "--steps", steps, *SMALL, *extra]


def trajectory(out):
    with np.load(out / "trajectory.npz") as z:
        return {k: z[k] for k in z.files}


def summary(out):
    return json.loads((out / "summary.json").read_text())


def no_temporary_files(out):
    return not [p.name for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]


def assert_same_run(a, b):
    """Two folders hold the same trajectory (bit for bit, at the steps of ``a``) and a complete
    summary of the same steps."""
    ta, tb = trajectory(a), trajectory(b)
    assert ta.keys() == tb.keys()
    keep = np.isin(tb["steps"], ta["steps"])  # a stopped run keeps its stop frame too
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k][keep] if k != "labels" else tb[k])
    assert summary(b)["steps_done"] == summary(a)["steps_done"] and summary(b)["complete"] is True
    assert sorted(p.name for p in b.iterdir()) == sorted(summary(b)["files"])


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted 12-step swf run every resumed run must repeat."""
    out = tmp_path_factory.mktemp("whole") / "run"
    assert flow_cli_main(flow("swf", 12), out) == 0
    return out


def flow_cli_main(argv, out, *extra):
    from geom_tools import cli

    return cli.main([str(a) for a in (*argv, "--out", out, *extra)])


# ---------------------------------------------------------------------------------------------- pickles


class Planted:
    """Unpickling this creates ``marker``: a file that would run code when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_planted_legacy_checkpoint_is_never_loaded(capsys, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "marker"
    out.mkdir()
    payload = pickle.dumps({"settings": Planted(marker), "steps_done": 3})
    pickle.loads(payload)  # the payload is live: loading it creates the marker
    assert marker.exists()
    marker.unlink()
    (out / "checkpoint.pt").write_bytes(payload)
    rc, stdout, err = run(capsys, *flow(), "--out", out, "--resume")
    assert_user_error(rc, stdout, err, "checkpoint.pt", "cannot be loaded safely", "new --out folder")
    assert not marker.exists()
    (out / "summary.json").write_text(json.dumps({"command": ["geom", "flow"]}))  # an old run's files around it
    assert_user_error(*run(capsys, *flow(), "--out", out, "--resume"), "checkpoint.pt", "cannot be loaded safely")
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- bad checkpoints


def rewrite(path, change):
    """Load the checkpoint at ``path``, let ``change(tree, meta)`` alter it, write it back."""
    arrays, meta = load_npz(path)
    tree = unflatten(arrays, meta["tree"])
    change(tree, meta)
    arrays, meta["tree"] = flatten(tree, "checkpoint")
    save_npz(path, arrays, meta)


def remeta(path, key, value):
    """Set one entry of the checkpoint's JSON document; the arrays stay as they are."""
    arrays, meta = load_npz(path)
    save_npz(path, arrays, {**meta, key: value})


def lying_header(path):
    """The particles' .npy header claims (64, 9) over the bytes of (64, 3); the zip checksums are right."""
    _, meta = load_npz(path)
    key = meta["tree"]["dict"]["particles"]["tensor"] + ".npy"
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members[key] = members[key].replace(b"(64, 3)", b"(64, 9)", 1)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def pickled_member(path):
    arrays, meta = load_npz(path)
    evil = np.empty(1, dtype=object)
    evil[0] = Planted(path.parent / "marker")
    np.savez(path, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), evil=evil)


def _set(key, value):
    return lambda tree, meta: tree.__setitem__(key, value)


BAD = {  # name -> (method, how to spoil checkpoint.npz, what the one line says)
    "empty": ("swf", lambda p: p.write_bytes(b""), "empty"),
    "garbage": ("swf", lambda p: p.write_bytes(bytes(range(256)) * 8), "truncated or corrupt"),
    "truncated": ("swf", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated or corrupt"),
    "lying header": ("swf", lying_header, "claims shape (64, 9)"),
    "pickle inside": ("swf", pickled_member, "dtype object"),
    "other format": ("swf", lambda p: remeta(p, "format", 7), "format 7"),
    "other version": ("swf", lambda p: remeta(p, "version", "0.0.1"), "geom '0.0.1'"),
    "other command": ("swf", lambda p: remeta(p, "command", "generate"), "not a checkpoint"),
    "no tree": ("swf", lambda p: remeta(p, "tree", {"pickle": 1}), "corrupt"),
    "entry missing": ("swf", lambda p: rewrite(p, lambda t, m: t.pop("values")), "entries of a checkpoint"),
    "target dimension": ("swf", lambda p: rewrite(p, lambda t, m: t.__setitem__("target", t["target"][:, :2])),
                         "target as"),
    "steps arrays": ("swf", lambda p: rewrite(p, lambda t, m: t.__setitem__("steps", t["steps"][:-1])), "steps as"),
    "steps done": ("swf", lambda p: rewrite(p, _set("steps_done", 99)), "steps_done is 99"),
    "recorded steps": ("swf", lambda p: rewrite(p, lambda t, m: t["steps"].__setitem__(-1, 5)), "recorded steps"),
    "nan particles": ("swf", lambda p: rewrite(p, lambda t, m: t["particles"].__setitem__((0, 0), np.nan)),
                      "particles are not all finite"),
    "settings": ("swf", lambda p: rewrite(p, _set("settings", [1, 2])), "settings"),
    "scheme state": ("swf", lambda p: rewrite(p, lambda t, m: t["scheme"].__setitem__("bogus", 1)),
                     "scheme 'reservoir'"),
    "generator": ("swf", lambda p: rewrite(p, lambda t, m: t.__setitem__("generator_state", t["generator_state"][:9])),
                  "generator_state"),
    "labels length": ("cswf", lambda p: rewrite(p, lambda t, m: t["labels"].__setitem__(0, t["labels"][0][:-1])),
                      "source labels"),
    "adam moments": ("sw", lambda p: rewrite(p, lambda t, m: t["optimizer_state"]["state"][0].__setitem__(
        "exp_avg", torch.zeros(3, 3, dtype=torch.float64))), "Adam moments of shape (3, 3)"),
    "velocity": ("mmd", lambda p: rewrite(p, _set("optimizer_state", torch.zeros(64, 2, dtype=torch.float64))),
                 "the velocity as"),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 6-step run per method (reservoir scheme: it has state), to copy and spoil."""
    runs = {}
    for method in ("swf", "cswf", "sw", "mmd"):
        out = tmp_path_factory.mktemp(method) / "run"
        assert flow_cli_main(flow(method, 6, "--scheme", "reservoir"), out) == 0
        runs[method] = out
    return runs


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_checkpoint_is_one_line_naming_the_file_and_what_is_wrong(capsys, tmp_path, finished, case):
    method, spoil, needle = BAD[case]
    out = tmp_path / "run"
    shutil.copytree(finished[method], out)
    spoil(out / "checkpoint.npz")
    rc, stdout, err = run(capsys, *flow(method, 9, "--scheme", "reservoir"), "--out", out, "--resume")
    assert_user_error(rc, stdout, err, str(out / "checkpoint.npz"), needle)
    assert not (out / "marker").exists()
    assert summary(out)["steps_done"] == 6  # nothing was overwritten


def test_a_good_copy_of_the_checkpoint_still_resumes(capsys, tmp_path, finished):
    """The spoiled copies above fail for what was spoiled, not for being copies."""
    out = tmp_path / "run"
    shutil.copytree(finished["sw"], out)
    rewrite(out / "checkpoint.npz", lambda t, m: None)
    rc, _, err = run(capsys, *flow("sw", 9, "--scheme", "reservoir"), "--out", out, "--resume")
    assert rc == 0, err
    assert summary(out)["steps_done"] == 9


# ---------------------------------------------------------------------------------------------- full disk


class FullDisk:
    """A file whose disk fills up halfway through the first write."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        self.fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.fh, name)


def fill_disk_at(monkeypatch, name):
    """Every write of geom's to a temporary file for ``name`` fails mid-file."""
    real = open

    def fake(file, mode="r", *args, **kwargs):
        fh = real(file, mode, *args, **kwargs)
        writing = "w" in mode and pathlib.Path(file).name.startswith(f"{TEMP_PREFIX}{name}.")
        return FullDisk(fh) if writing else fh

    monkeypatch.setattr(geom._files, "open", fake, raising=False)


@pytest.mark.parametrize("name", ["checkpoint.npz", "trajectory.npz", "final.ply", "frames.png", "summary.json"])
def test_a_full_disk_mid_file_leaves_every_file_whole_and_resume_finishes(capsys, tmp_path, monkeypatch, whole, name):
    out = tmp_path / "run"
    assert run(capsys, *flow("swf", 6), "--out", out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with monkeypatch.context() as m:
        fill_disk_at(m, name)
        rc, stdout, err = run(capsys, *flow("swf", 12), "--out", out, "--resume")
    assert_user_error(rc, stdout, err, f"cannot write '{out / name}'", "No space left on device")
    assert no_temporary_files(out) and sorted(p.name for p in out.iterdir()) == sorted(before)
    assert (out / name).read_bytes() == before[name]  # the file that failed is the earlier one, whole
    written = flow_cli._flow_outputs(3)
    for n in written[: written.index(name)]:  # the files before it are the new ones, whole
        assert (out / n).read_bytes() != before[n]
    load_npz(out / "checkpoint.npz")  # every file loads
    trajectory(out), summary(out)
    rc, _, err = run(capsys, *flow("swf", 12), "--out", out, "--resume")
    assert rc == 0, err
    assert_same_run(whole, out)


# ---------------------------------------------------------------------------------------------- Ctrl-C while writing


def sigint_in(monkeypatch, function):
    """A real SIGINT to this process when ``flow_cli.<function>`` is called."""
    original = getattr(flow_cli, function)

    def call(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(flow_cli, function, call)


def geom_lines(err):
    return [line for line in err.splitlines() if line.startswith("geom:")]


@pytest.mark.parametrize("where", ["_plot_frames", "_export_cloud", "save_npz"])
def test_ctrl_c_during_the_final_writes_leaves_a_run_that_resume_finishes(capsys, tmp_path, monkeypatch, whole, where):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        sigint_in(m, where)
        rc, _, err = run(capsys, *flow("swf", 12), "--out", out)
    assert rc == 130 and "Traceback" not in err
    lines = geom_lines(err)
    assert len(lines) == 1 and "interrupted while writing the outputs" in lines[0] and "--resume" in lines[0], err
    assert load_npz(out / "checkpoint.npz")[1]["command"] == "flow"  # whole, even when hit while written
    assert not (out / "summary.json").exists() and no_temporary_files(out)
    rc, stdout, err = run(capsys, *flow("swf", 12), "--out", out, "--resume")
    assert rc == 0 and "written again" in stdout, err
    assert_same_run(whole, out)
    assert_user_error(*run(capsys, *flow("swf", 12), "--out", out, "--resume"), "already did 12 steps")


def test_a_second_ctrl_c_during_the_writes_keeps_the_stopped_run(capsys, tmp_path, monkeypatch, whole):
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN where the process started ignoring it
    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        sigint_in(m, "_plot_loss")
        rc, _, err = run(capsys, *flow("swf", 12), "--out", out)
    assert rc == 130 and len(geom_lines(err)) == 1 and "Traceback" not in err, err
    assert signal.getsignal(signal.SIGINT) is before
    rc, _, err = run(capsys, *flow("swf", 12), "--out", out, "--resume")
    assert rc == 0, err
    assert_same_run(whole, out)
    assert trajectory(out)["steps"].tolist() == [0, 3, 5, 6, 9, 12]  # the stop frame of step 5 is kept


# ---------------------------------------------------------------------------------------------- --force


def test_force_removes_only_what_an_earlier_run_of_the_same_command_wrote(capsys, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, *flow("swf", 3), "--out", out)[0] == 0
    (out / "notes.txt").write_text("mine")
    flow_files = {p.name: p.read_bytes() for p in out.iterdir()}
    # generate would replace the flow's summary.json: refused, and nothing of the flow is touched
    rc, stdout, err = run(capsys, "generate", "--method", "swf", "--dataset", "gaussians", "--n-points", 16,
                          "--n-samples", 10, "--steps", 2, "--out", out, "--force")
    assert_user_error(rc, stdout, err, "summary.json", "geom generate")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == flow_files
    # a user's own final.npy, which no flow wrote there: refused and left alone
    (out / "final.npy").write_bytes(b"my own")
    assert_user_error(*run(capsys, *flow("swf", 3), "--out", out, "--force"), "final.npy", "move it away")
    assert (out / "final.npy").read_bytes() == b"my own"
    (out / "final.npy").unlink()
    # a 4-D run replaces the 3-D one: final.ply of the earlier run goes, final.npy comes, notes stay
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(40, 4)))
    np.save(tmp_path / "b.npy", rng.normal(size=(40, 4)) + 2)
    rc, _, err = run(capsys, "flow", tmp_path / "a.npy", tmp_path / "b.npy", "--method", "swf", "--steps", 3,
                     "--out", out, "--force")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(summary(out)["files"] + ["notes.txt"])
    assert "final.npy" in summary(out)["files"] and not (out / "final.ply").exists()
    assert (out / "notes.txt").read_text() == "mine"
    # a run stopped before its summary: its checkpoint, written first, names the files that follow it
    other = tmp_path / "other"
    args = ["flow", tmp_path / "a.npy", tmp_path / "b.npy", "--method", "swf", "--steps", 3, "--out", other]
    with pytest.MonkeyPatch.context() as m:
        sigint_in(m, "_plot_frames")
        assert run(capsys, *args)[0] == 130
    assert (other / "final.npy").exists() and not (other / "summary.json").exists()
    rc, _, err = run(capsys, *args, "--force")
    assert rc == 0, err


def test_a_folder_holding_only_temporary_files_counts_as_empty(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / f"{TEMP_PREFIX}summary.json.x1y2.json").write_text("{")  # left by a killed writer
    rc, _, err = run(capsys, *flow("swf", 3), "--out", out)
    assert rc == 0, err


# ---------------------------------------------------------------------------------------------- real Ctrl-C


def geom_command():
    script = pathlib.Path(sys.executable).with_name("geom")
    return [str(script)] if script.exists() else [sys.executable, "-m", "geom_tools.cli"]


def timed(cmd, **kwargs):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    return proc, time.perf_counter() - t0


@pytest.mark.slow
def test_real_ctrl_c_at_many_moments_is_one_line_and_status_130(tmp_path, count=10):
    """SIGINT at seeded moments from start to end: while geom and torch are imported, the arguments
    parsed, the files read, the flow run, the progress bar drawn, the final files written. (Before
    Python has started, during its own start-up, nothing of geom runs yet: the first moment is after.)"""
    argv = [*geom_command(), *map(str, flow("swf", 300))]
    startup = min(timed([sys.executable, "-c", "pass"])[1] for _ in range(3))
    proc, duration = timed([*argv, "--out", str(tmp_path / "whole")])
    assert proc.returncode == 0, proc.stderr
    first = 2 * startup + 0.02  # geom's module is being imported
    delays = [first, *np.random.default_rng(2024).uniform(first, duration, count - 1)]
    interrupted = 0
    for i, delay in enumerate(sorted(delays)):
        out = tmp_path / f"run{i}"
        p = subprocess.Popen([*argv, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        stdout, err = p.communicate(timeout=300)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (delay, err)
        lines = [line for line in err.splitlines() if line.strip() and "geom flow swf" not in line]  # no bar
        if p.returncode == 0:  # the signal came after the run had finished
            assert lines == [] and "outputs in" in stdout, (delay, err)
            continue
        interrupted += 1
        assert p.returncode == 130 and len(lines) == 1 and lines[0].startswith("geom: interrupted"), (delay, err)
        if out.exists():
            assert no_temporary_files(out)
            if (out / "checkpoint.npz").exists():
                load_npz(out / "checkpoint.npz")
    assert interrupted >= count // 2
