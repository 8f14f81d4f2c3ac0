"""The ``geom`` command line, run in-process through ``main(argv)`` (plus one real console-script call).

The ``--metrics`` and ``demo`` tests exercise geom.chamfer_distance / energy_distance /
hausdorff_distance and check them against scipy's cdist on the very points the CLI sampled.
"""

import itertools
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import geom
import geom_datasets
from geom.registry import PluginInfo
from geom_datasets import shapes
from geom_tools import cli

from cli_helpers import assert_user_error, run

SMALL = ["--n-samples", "256", "--n-projections", "64"]




@pytest.fixture
def files(tmp_path):
    """A sphere, a torus, and the sphere scaled by 2, as binary PLY files."""
    v, f = shapes.sphere()
    paths = {"sphere": tmp_path / "sphere.ply", "torus": tmp_path / "torus.ply", "big": tmp_path / "big.ply"}
    paths["sphere"].write_bytes(shapes.mesh_bytes(v, f))
    paths["torus"].write_bytes(shapes.mesh_bytes(*shapes.torus()))
    paths["big"].write_bytes(shapes.mesh_bytes(2 * v, f))
    return paths


def compare_json(capsys, a, b, *extra):
    rc, out, err = run(capsys, "compare", a, b, *SMALL, "--json", *extra)
    assert rc == 0, err
    return json.loads(out)


# ---------------------------------------------------------------------------------------------- version


def test_version_in_process(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out == f"geom {geom.__version__}\n"


def test_console_script_version():
    script = pathlib.Path(sys.executable).with_name("geom")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "geom_tools.cli"]
    proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"geom {geom.__version__}"


# ---------------------------------------------------------------------------------------------- compare


def test_compare_json_equals_the_library_on_the_same_files(capsys, files):
    doc = compare_json(capsys, files["sphere"], files["torus"], "--seed", "3", "--p", "1.5")
    mu = geom.measure(str(files["sphere"]), n_samples=256, seed=3)
    nu = geom.measure(str(files["torus"]), n_samples=256, seed=3)
    expected = geom.sliced_wasserstein(mu, nu, p=1.5, n_projections=64, seed=3, return_result=True)
    assert doc["value"] == float(expected.value)
    assert doc["stderr"] == float(expected.stderr)
    assert doc["value"] > 0 and doc["stderr"] > 0
    assert (doc["scheme"], doc["n_projections"], doc["p"], doc["seed"]) == ("mc", 64, 1.5, 3)
    assert (doc["a"], doc["b"]) == (str(files["sphere"]), str(files["torus"]))
    assert doc["n_points"] == {"a": 256, "b": 256}
    assert doc["metrics"] == {}


def test_scheme_options_reach_the_scheme(capsys, files):
    doc = compare_json(capsys, files["sphere"], files["torus"], "--scheme", "qmc", "--option", "point_set=spiral",
                       "--option", "n_randomizations=4")
    mu = geom.measure(str(files["sphere"]), n_samples=256, seed=0)
    nu = geom.measure(str(files["torus"]), n_samples=256, seed=0)
    expected = geom.sliced_wasserstein(mu, nu, n_projections=64, seed=0, scheme="qmc", point_set="spiral",
                                       n_randomizations=4, return_result=True)
    assert (doc["value"], doc["stderr"]) == (float(expected.value), float(expected.stderr))
    assert doc["options"] == {"point_set": "spiral", "n_randomizations": 4}
    # one randomisation (qmc's default) has no standard error: the table says so instead of "± nan"
    rc, out, err = run(capsys, "compare", files["sphere"], files["torus"], *SMALL, "--scheme", "qmc")
    assert rc == 0 and "no standard error" in out and "nan" not in out, (out, err)


def test_compare_reads_array_files_of_other_kinds(capsys, tmp_path):
    g = np.random.default_rng(1)
    paths = []
    for k, shift in enumerate((1.0, 2.0)):
        a = g.normal(size=(20, 3, 3))
        np.save(tmp_path / f"spd{k}.npy", a @ a.transpose(0, 2, 1) + shift * np.eye(3))
        paths.append(tmp_path / f"spd{k}.npy")
    rc, out, err = run(capsys, "compare", *paths, "--n-projections", "64", "--json", "--kind", "spd", "--seed", "2")
    assert rc == 0, err
    doc = json.loads(out)
    expected = geom.sliced_wasserstein(geom.measure(np.load(paths[0]), kind="spd"),
                                       geom.measure(np.load(paths[1]), kind="spd"), n_projections=64, seed=2)
    assert doc["kind"] == "spd" and doc["value"] == float(expected) and doc["n_points"] == {"a": 20, "b": 20}
    assert doc["n_samples"] is None  # spd samples nothing
    np.save(tmp_path / "indefinite.npy", -np.load(paths[0]))
    assert_user_error(*run(capsys, "compare", paths[0], tmp_path / "indefinite.npy", "--kind", "spd"),
                      "X[0]", "eigenvalue")
    # --n-samples for a kind that samples nothing is refused, not ignored
    assert_user_error(*run(capsys, "compare", *paths, *SMALL, "--kind", "spd"), "--n-samples", "'spd'", "256")


def test_compare_same_seed_same_output_other_seed_other_value(capsys, files):
    outs = [run(capsys, "compare", files["sphere"], files["torus"], *SMALL, "--seed", s) for s in ("5", "5", "6")]
    assert outs[0] == outs[1]
    a, b = (compare_json(capsys, files["sphere"], files["torus"], "--seed", s)["value"] for s in ("5", "6"))
    assert a != b


def test_compare_a_file_with_itself_is_zero(capsys, files):
    doc = compare_json(capsys, files["torus"], files["torus"])
    assert doc["value"] == 0.0 and doc["stderr"] == 0.0


def test_compare_scaled_copy_matches_the_closed_form(capsys, files):
    """Same seed, same barycentric samples: B = 2 A point by point, so on every direction the sorted
    projections pair t with 2t and SW_2^2 = E_theta mean_i <x_i, theta>^2 = mean_i |x_i|^2 / 3."""
    doc = compare_json(capsys, files["sphere"], files["big"], "--n-projections", "2000")
    x = geom.measure(str(files["sphere"]), n_samples=256, seed=0).support[0].double()  # (N, 3)
    closed = float((x**2).sum(1).mean() / 3) ** 0.5
    assert abs(doc["value"] - closed) < 4 * doc["stderr"] + 1e-6, (doc, closed)


def test_compare_human_output(capsys, files):
    rc, out, err = run(capsys, "compare", files["sphere"], files["torus"], *SMALL, "--p", "1")
    assert rc == 0, err
    doc = compare_json(capsys, files["sphere"], files["torus"], "--p", "1")
    lines = out.splitlines()
    assert lines[0].startswith("A") and str(files["sphere"]) in lines[0] and "256 points" in lines[0]
    assert lines[1].startswith("B") and str(files["torus"]) in lines[1]
    assert lines[2] == f"SW_1 = {doc['value']:.4g} ± {doc['stderr']:.4g} (mc, L=64, seed=0)"


def cdist_oracles(mu, nu):
    from scipy.spatial.distance import cdist

    x, y = mu.support[0].double().numpy(), nu.support[0].double().numpy()
    dxy, dxx, dyy = cdist(x, y), cdist(x, x), cdist(y, y)
    return {
        "chamfer": (dxy**2).min(1).mean() + (dxy**2).min(0).mean(),
        "energy": 2 * dxy.mean() - dxx.mean() - dyy.mean(),
        "hausdorff": max(dxy.min(1).max(), dxy.min(0).max()),
    }


def test_compare_metrics_equal_cdist_oracles(capsys, files):
    pytest.importorskip("scipy")
    doc = compare_json(capsys, files["sphere"], files["torus"], "--metrics", "hausdorff, chamfer,energy,chamfer")
    assert list(doc["metrics"]) == ["hausdorff", "chamfer", "energy"]  # order kept, duplicates dropped
    mu = geom.measure(str(files["sphere"]), n_samples=256, seed=0)
    nu = geom.measure(str(files["torus"]), n_samples=256, seed=0)
    oracle = cdist_oracles(mu, nu)
    for name, value in doc["metrics"].items():
        np.testing.assert_allclose(value, oracle[name], rtol=1e-4, err_msg=name)
    rc, out, _ = run(capsys, "compare", files["sphere"], files["torus"], *SMALL, "--metrics", "chamfer")
    assert rc == 0 and out.splitlines()[-1] == f"chamfer = {doc['metrics']['chamfer']:.4g}"


# ---------------------------------------------------------------------------------------------- plugins


def test_plugins_json_lists_the_builtins(capsys):
    rc, out, _ = run(capsys, "plugins", "--json")
    assert rc == 0
    by_name = {p["name"]: p for p in json.loads(out)}
    assert by_name["mc"]["schemes"] == ["mc"] and by_name["points"]["representations"] == ["points"]
    for name in ("mc", "points"):
        assert by_name[name]["distribution"] == "geom" and by_name[name]["version"] == geom.__version__
        assert by_name[name]["error"] is None
    assert set(by_name) == {p.name for p in geom.plugins()}


def test_plugins_table_shows_versions_and_failures(capsys, monkeypatch):
    infos = [
        PluginInfo("mc", "geom", "0.1.0", schemes=["mc"]),
        PluginInfo("broken", "thirdparty", "9.9", error="ImportError: no module named nothing"),
    ]
    monkeypatch.setattr(geom, "plugins", lambda: infos)
    rc, out, _ = run(capsys, "plugins")
    assert rc == 0
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert rows["mc"].split() == ["mc", "geom", "0.1.0", "mc", "-", "-", "-", "ok"]
    assert "thirdparty" in rows["broken"] and "9.9" in rows["broken"]
    assert rows["broken"].endswith("failed: ImportError: no module named nothing")


# ---------------------------------------------------------------------------------------------- demo


def test_demo_table_lists_every_pair_and_ranks_noise_closest(capsys):
    rc, out, err = run(capsys, "demo", *SMALL)
    assert rc == 0, err
    assert "geom demo" in err  # the progress bar goes to stderr
    names = [p.stem for p in sorted((pathlib.Path(geom_datasets.__file__).parent / "samples").glob("*.ply"))]
    assert set(names) == set(shapes.SAMPLES)
    rows = [line for line in out.splitlines() if " vs " in line]
    assert len(rows) == len(names) * (len(names) - 1) // 2
    pairs = {frozenset((line.split()[0], line.split()[2])) for line in rows}
    assert pairs == {frozenset(p) for p in itertools.combinations(names, 2)}
    assert out.splitlines()[0].split() == ["pair", "SW_2", "stderr", "Chamfer"]
    assert "smaller means more alike" in " ".join(out.split())


def test_demo_json_numbers(capsys):
    rc, out, err = run(capsys, "demo", *SMALL, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    pairs = {frozenset((r["a"], r["b"])): r for r in doc["pairs"]}
    near, far = pairs[frozenset(("noisy_sphere", "sphere"))], pairs[frozenset(("sphere", "torus"))]
    assert near["sw2"] < far["sw2"] / 3 and near["chamfer"] < far["chamfer"] / 3
    assert [r["sw2"] for r in doc["pairs"]] == sorted(r["sw2"] for r in doc["pairs"])
    # the table's numbers are the library's on the bundled files
    mu = geom.measure(doc["samples"]["sphere"], n_samples=256, seed=0)
    nu = geom.measure(doc["samples"]["torus"], n_samples=256, seed=0)
    res = geom.sliced_wasserstein(mu, nu, n_projections=64, seed=0, return_result=True)
    assert (far["sw2"], far["stderr"]) == (float(res.value), float(res.stderr))


def test_demo_without_samples_says_how_to_make_them(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(geom_datasets, "__file__", str(tmp_path / "__init__.py"))
    assert_user_error(*run(capsys, "demo", *SMALL), "python -m geom_datasets.shapes", str(tmp_path))


# ---------------------------------------------------------------------------------------------- errors


def test_missing_file_is_one_line_naming_it(capsys, files, tmp_path):
    missing = tmp_path / "no_such_shape.ply"
    assert_user_error(*run(capsys, "compare", files["sphere"], missing), str(missing))
    assert_user_error(*run(capsys, "compare", missing, files["sphere"]), str(missing), "A:")


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--scheme", "nope"], ["--scheme", "'nope'", "mc", "qmc"]),
        (["--p", "0.5"], ["--p:", "0.5"]),
        (["--n-projections", "0"], ["--n-projections", "0"]),
        (["--n-samples", "0"], ["--n-samples"]),
        (["--seed", "-1"], ["--seed"]),
        (["--metrics", "chamfer,wasserstein"], ["'wasserstein'", "chamfer, energy, hausdorff"]),
        (["--kind", "voxels"], ["--kind", "'voxels'", "points"]),
        (["--option", "point_set"], ["--option", "KEY=VALUE", "'point_set'"]),
        (["--option", "n_steps=3"], ["--option", "unknown options", "n_steps"]),
        (["--scheme", "qmc", "--option", "point_set=halton"], ["--option", "point_set", "'halton'"]),
        (["--scheme", "qmc", "--option", "randomize=false", "--option", "randomize=true"], ["'randomize' given twice"]),
    ],
)
def test_bad_values_are_one_line_errors(capsys, files, extra, needles):
    assert_user_error(*run(capsys, "compare", files["sphere"], files["torus"], *extra), *needles)


def test_unreadable_files_are_one_line_errors(capsys, files, tmp_path):
    garbage = tmp_path / "garbage.obj"
    garbage.write_bytes(bytes(range(256)) * 4)
    assert_user_error(*run(capsys, "compare", garbage, files["sphere"]), "garbage.obj")
    assert_user_error(*run(capsys, "compare", tmp_path, files["sphere"]), "directory")


def test_usage_errors_are_one_line_exit_2(capsys, files):
    assert_user_error(*run(capsys, "compare", files["sphere"]), "required: B", "geom compare --help")
    assert_user_error(*run(capsys), "required: command", "geom --help")
    assert_user_error(*run(capsys, "compare", files["sphere"], files["torus"], "--n-projections", "many"),
                      "--n-projections", "'many'")
    assert_user_error(*run(capsys, "nosuchcommand"), "nosuchcommand")
    rc, out, err = run(capsys, "compare", "--help")  # help is no error
    assert rc == 0 and "usage: geom compare" in out and err == ""


@pytest.mark.parametrize("seed", ["-1", str(2**64), str(10**30)])
def test_seed_outside_64_bits_names_seed(capsys, files, seed):
    assert_user_error(*run(capsys, "compare", files["sphere"], files["torus"], *SMALL, "--seed", seed),
                      "--seed", "2^64", seed)
    assert_user_error(*run(capsys, "demo", *SMALL, "--seed", seed), "--seed", "2^64")
    assert compare_json(capsys, files["sphere"], files["torus"], "--seed", str(2**64 - 1))["seed"] == 2**64 - 1


@pytest.mark.parametrize("argument", ["--n-projections", "--n-samples"])
def test_arguments_needing_more_memory_than_the_machine_are_refused_up_front(capsys, files, argument):
    from geom._checks import available_memory

    value = 10**9 if available_memory() < 4e10 else 10**11  # 1e9 needs > 40 GB (directions or samples)
    rc, out, err = run(capsys, "compare", files["sphere"], files["torus"], argument, str(value))
    assert_user_error(rc, out, err, f"geom: error: {argument}: ", "memory", "available")


def test_file_errors_name_a_or_b_not_the_library_argument(capsys, files, tmp_path):
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY garbage")
    for args, name in (([garbage, files["sphere"]], "A"), ([files["sphere"], garbage], "B")):
        rc, out, err = run(capsys, "compare", *args, *SMALL)
        assert_user_error(rc, out, err, f"geom: error: {name}: ", "garbage.npy")
        assert "obj" not in err
    # a mesh file given to the SPD kind: the error says that spd expects matrices, naming B
    a = np.random.default_rng(0).normal(size=(5, 3, 3))
    np.save(tmp_path / "spd.npy", a @ a.transpose(0, 2, 1) + np.eye(3))
    rc, out, err = run(capsys, "compare", tmp_path / "spd.npy", files["torus"], "--kind", "spd")
    assert_user_error(rc, out, err, "geom: error: B: ", "matri")


def test_plugin_errors_and_interrupts(capsys, monkeypatch):
    def fail(exc):
        def raiser():
            raise exc

        monkeypatch.setattr(geom, "plugins", raiser)

    fail(geom.PluginError("scheme 'mc' is registered twice: by plugin 'a' and by plugin 'b'\nsee docs"))
    assert_user_error(*run(capsys, "plugins"), "registered twice", "see docs")
    fail(KeyboardInterrupt())
    rc, out, err = run(capsys, "plugins")
    assert rc == 130 and err == "geom: interrupted\n"
    fail(RuntimeError("a bug"))  # not a user error: never swallowed into a one-liner
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["plugins"])


def test_commands_come_from_the_registry(capsys, monkeypatch):
    """The parser is built from the registered commands: one registered at run time is a command."""
    from geom import registry

    seen = []

    class Hello(geom.Command):
        help = "say hello"

        def configure(self, parser):
            parser.add_argument("--who", default="world")

        def run(self, args):
            seen.append(args.who)
            return 7

    monkeypatch.setattr(registry, "_registry", registry._Registry())  # a fresh one, this test's alone
    geom.register_command("hello", Hello)
    assert cli.main(["hello", "--who", "geom"]) == 7 and seen == ["geom"]
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "say hello" in out and "compare" in out


# ---------------------------------------------------------------------------------------------- representation options


def test_normalize_compares_each_shape_normalised_on_its_own(capsys, files):
    plain = compare_json(capsys, files["sphere"], files["big"])
    doc = compare_json(capsys, files["sphere"], files["big"], "--normalize", "sphere")
    mu = geom.measure(str(files["sphere"]), n_samples=256, seed=0, normalize="sphere")
    nu = geom.measure(str(files["big"]), n_samples=256, seed=0, normalize="sphere")
    assert doc["value"] == float(geom.sliced_wasserstein(mu, nu, n_projections=64, seed=0))
    assert doc["normalize"] == "sphere" and plain["normalize"] is None
    assert doc["value"] < 0.1 * plain["value"]  # the sphere and its copy twice as large: one shape


def test_kind_options_reach_the_representation_and_the_sphere_kind_says_how_to_pass_them(capsys, files):
    one = ["--kind", "sphere", "--n-projections", "64"]
    assert_user_error(*run(capsys, "compare", files["big"], files["sphere"], *one), "A: ", "unit sphere",
                      "--kind-option normalize=true")
    rc, out, err = run(capsys, "compare", files["big"], files["torus"], *one, "--kind-option", "normalize=true",
                       "--json")
    assert rc == 0, err
    doc = json.loads(out)
    mu = geom.measure(str(files["big"]), kind="sphere", normalize=True)
    nu = geom.measure(str(files["torus"]), kind="sphere", normalize=True)
    assert doc["value"] == float(geom.sliced_wasserstein(mu, nu, n_projections=64, seed=0))
    assert doc["kind_options"] == {"normalize": True} and doc["n_samples"] is None
    assert_user_error(*run(capsys, "compare", files["big"], files["torus"], *one, "--kind-option", "normalize=true",
                           "--normalize", "sphere"), "--kind-option", "--normalize sphere")
    assert_user_error(*run(capsys, "compare", files["big"], files["torus"], *one, "--kind-option", "normalize"),
                      "--kind-option", "KEY=VALUE", "'normalize'")
    assert_user_error(*run(capsys, "compare", files["big"], files["torus"], "--normalize", "cube"),
                      "--normalize", "'cube'", "sphere", "box")
