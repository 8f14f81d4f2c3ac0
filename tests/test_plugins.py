"""The plugin system: entry points in group "geom", third-party packages, broken plugins, duplicates,
GEOM_DISABLE_PLUGINS and run-time registration.

Third-party plugins are installed into a temporary site directory (a package plus its ``.dist-info``
with ``entry_points.txt``) and seen by a fresh interpreter, so the registry of this test process is
never touched. One probe script runs per scenario and reports everything as JSON; the scenarios pick
their plugins with ``GEOM_DISABLE_PLUGINS``.
"""

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

import geom
from geom.registry import RUNTIME, _registry, get_scheme

N_POINTS, SEED = 40, 0

PLUGINS = {
    # module name: (distribution version, {entry point: module}, source)
    "fixedaxes_plugin": ("0.1", {"fixedaxes": "fixedaxes_plugin"}, '''
        import torch

        import geom


        class FixedAxes(geom.SlicingScheme):
            def directions(self, n, dim, *, generator=None):      # -> (n, dim) unit rows
                return torch.eye(dim)[torch.arange(n) % dim]


        @geom.hookimpl
        def geom_register_schemes(register):
            register("fixedaxes", FixedAxes)
    '''),
    "multi_plugin": ("2.5", {"multi": "multi_plugin"}, '''
        import torch

        import geom


        class NegatedAxes(geom.SlicingScheme):
            def directions(self, n, dim, *, generator=None):
                return -torch.eye(dim)[torch.arange(n) % dim]


        class FirstAxis(geom.SlicingScheme):
            def directions(self, n, dim, *, generator=None):
                return torch.eye(dim)[[0] * n]


        @geom.hookimpl
        def geom_register_schemes(register):
            register("negaxes", NegatedAxes)
            register("firstaxis", FirstAxis)
    '''),
    "broken_plugin": ("0.2", {"broken": "broken_plugin"}, '''
        import geom

        raise ImportError("broken_plugin needs libbroken, which is not installed")
    '''),
    "dupmc_plugin": ("0.3", {"dupmc": "dupmc_plugin"}, '''
        import torch

        import geom


        class AnotherMonteCarlo(geom.SlicingScheme):
            def directions(self, n, dim, *, generator=None):
                theta = torch.randn(n, dim, generator=generator)
                return theta / theta.norm(dim=1, keepdim=True)


        @geom.hookimpl
        def geom_register_schemes(register):
            register("mc", AnotherMonteCarlo)
    '''),
    "hookfail_plugin": ("0.4", {"hookfail": "hookfail_plugin"}, '''
        import geom


        @geom.hookimpl
        def geom_register_schemes(register):
            raise RuntimeError("hookfail cannot register today")
    '''),
}

PROBE = f"""
import dataclasses, json, warnings

out = {{}}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import geom
    import torch

    def attempt(key, fn):
        try:
            out[key] = fn()
        except Exception as exc:
            out[key + "_error"] = [type(exc).__name__, str(exc), isinstance(exc, geom.PluginError)]

    g = torch.Generator().manual_seed({SEED})
    x = torch.randn({N_POINTS}, 3, generator=g)
    y = 0.7 * torch.randn({N_POINTS}, 3, generator=g) + 0.3
    attempt("schemes", geom.schemes)
    attempt("schemes_again", geom.schemes)
    attempt("representations", geom.representations)
    attempt("plugins", lambda: [dataclasses.asdict(i) for i in geom.plugins()])
    attempt("sw_mc", lambda: geom.sliced_wasserstein(x, y, scheme="mc", n_projections=64, seed=0).item())
    attempt("sw_mc_again", lambda: geom.sliced_wasserstein(x, y, scheme="mc", n_projections=64, seed=0).item())
    attempt("sw_qmc", lambda: geom.sliced_wasserstein(x, y, scheme="qmc", n_projections=64, seed=0).item())
    for name in ("fixedaxes", "negaxes", "firstaxis"):
        attempt("sw_" + name, lambda: geom.sliced_wasserstein(x, y, scheme=name, n_projections=3).item())
    attempt("sw_eye", lambda: geom.sliced_wasserstein(x, y, directions=torch.eye(3)).item())
out["warnings"] = [[w.category.__name__, issubclass(w.category, geom.GeomWarning), str(w.message)] for w in caught]
print(json.dumps(out))
"""

ALL = ",".join(ep for _, eps, _ in PLUGINS.values() for ep in eps)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site directory holding every throw-away plugin package with its dist-info."""
    root = tmp_path_factory.mktemp("site")
    for module, (version, eps, source) in PLUGINS.items():
        (root / module).mkdir()
        (root / module / "__init__.py").write_text(textwrap.dedent(source))
        info = root / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in eps.items())
        (info / "entry_points.txt").write_text(f"[geom]\n{lines}")
    return root


def probe(site, disable: str) -> dict:
    """Run PROBE in a fresh interpreter that sees ``site``, with ``GEOM_DISABLE_PLUGINS=disable``."""
    env = dict(os.environ, PYTHONPATH=str(site), GEOM_DISABLE_PLUGINS=disable)
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=site.parent, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"probe failed (import geom must never fail):\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def others(*keep: str) -> str:
    """GEOM_DISABLE_PLUGINS value blocking every throw-away plugin except ``keep``."""
    return ",".join(name for name in ALL.split(",") if name not in keep)


@pytest.fixture(scope="module")
def clouds():
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(N_POINTS, 3, generator=g)
    y = 0.7 * torch.randn(N_POINTS, 3, generator=g) + 0.3
    return x, y


def axes_sw2(x, y, axes) -> float:
    """Oracle: SW_2 over coordinate axes = root mean over axes of W_2^2 of the sorted marginals."""
    w2 = [((x[:, k].sort().values - y[:, k].sort().values) ** 2).mean().item() for k in axes]
    return (sum(w2) / len(w2)) ** 0.5


def by_name(plugins: list) -> dict:
    return {info["name"]: info for info in plugins}


# --------------------------------------------------------------------------------------------------
# Third-party plugins through entry points (subprocesses)


@pytest.fixture(scope="module")
def third_party(site):
    """fixedaxes, multi and broken enabled (dupmc and hookfail blocked)."""
    return probe(site, others("fixedaxes", "multi", "broken"))


def test_third_party_schemes_are_registered_through_entry_points(third_party, clouds):
    out = third_party
    assert {"fixedaxes", "negaxes", "firstaxis", "mc"} <= set(out["schemes"]), out
    assert "points" in out["representations"]
    info = by_name(out["plugins"])
    assert info["fixedaxes"]["distribution"] == "fixedaxes_plugin"
    assert info["fixedaxes"]["version"] == "0.1"
    assert info["fixedaxes"]["schemes"] == ["fixedaxes"] and info["fixedaxes"]["error"] is None
    assert info["multi"]["version"] == "2.5"
    assert sorted(info["multi"]["schemes"]) == ["firstaxis", "negaxes"]  # one plugin, many items

    x, y = clouds
    assert out["sw_fixedaxes"] == pytest.approx(out["sw_eye"], rel=1e-6, abs=1e-7)
    assert out["sw_fixedaxes"] == pytest.approx(axes_sw2(x, y, (0, 1, 2)), rel=1e-5)
    assert out["sw_negaxes"] == pytest.approx(out["sw_eye"], rel=1e-6)  # W is invariant under t -> -t
    assert out["sw_firstaxis"] == pytest.approx(axes_sw2(x, y, (0,)), rel=1e-5)


def test_plugin_failing_to_import_is_skipped_with_a_warning(third_party, clouds):
    out = third_party
    ours = [w for w in out["warnings"] if w[1]]  # GeomWarning
    assert len(ours) == 1, out["warnings"]
    message = ours[0][2]
    assert "'broken'" in message and "broken_plugin" in message
    assert "ImportError" in message and "libbroken" in message
    assert "ImportError" in by_name(out["plugins"])["broken"]["error"]
    # the rest of the toolkit works: "mc" gives what it gives in this (plugin-free) process
    x, y = clouds
    expected = geom.sliced_wasserstein(x, y, scheme="mc", n_projections=64, seed=0).item()
    assert out["sw_mc"] == pytest.approx(expected, rel=1e-6)


def test_disabled_plugins_are_blocked(site, clouds):
    out = probe(site, f" fixedaxes, mc,{others('multi')} ")  # blanks around names are ignored
    assert "mc" not in out["schemes"] and "fixedaxes" not in out["schemes"]
    assert {"negaxes", "firstaxis"} <= set(out["schemes"])
    assert "points" in out["representations"]
    assert not any(w[1] for w in out["warnings"]), out["warnings"]  # broken was not even imported
    assert not {"mc", "fixedaxes", "broken", "dupmc"} & set(by_name(out["plugins"]))
    kind, message, _ = out["sw_mc_error"]
    assert kind == "ValueError"
    assert "scheme" in message and "'mc'" in message and "negaxes" in message and "firstaxis" in message
    assert out["sw_fixedaxes_error"][0] == "ValueError"
    assert out["sw_negaxes"] == pytest.approx(axes_sw2(*clouds, (0, 1, 2)), rel=1e-5)


@pytest.fixture(scope="module")
def duplicate(site):
    """dupmc registers "mc" a second time."""
    return probe(site, others("dupmc"))


def test_duplicate_name_is_an_error_naming_both_plugins_when_used(duplicate):
    for key in ("sw_mc_error", "sw_mc_again_error"):  # the error is not forgotten on the second use
        kind, message, is_plugin_error = duplicate[key]
        assert kind == "PluginError" and is_plugin_error, duplicate
        assert "'mc'" in message and "'dupmc'" in message and "GEOM_DISABLE_PLUGINS=" in message, message


def test_duplicate_name_leaves_the_rest_of_the_toolkit_working(duplicate, clouds):
    out = duplicate
    assert "schemes_error" not in out and "plugins_error" not in out, out
    assert "mc" not in out["schemes"] and {"qmc", "cv"} <= set(out["schemes"])  # the conflict is left out
    assert out["schemes_again"] == out["schemes"] and "points" in out["representations"]
    assert out["sw_qmc"] > 0
    info = by_name(out["plugins"])
    for name, other in (("mc", "dupmc"), ("dupmc", "mc")):  # both plugins show the conflict
        assert info[name]["schemes"] == ["mc"] and info[name]["error"] is None
        assert info[name]["conflicts"] == [f"scheme 'mc' is also registered by '{other}'"]
    assert not info["qmc"]["conflicts"]
    ours = [w[2] for w in out["warnings"] if w[1]]
    assert len(ours) == 1 and "'mc'" in ours[0] and "'dupmc'" in ours[0], out["warnings"]


def test_duplicate_name_is_resolved_as_the_error_says(site, duplicate):
    remedies = re.findall(r"GEOM_DISABLE_PLUGINS=(\S+) keeps '(\w+)'", duplicate["sw_mc_error"][1])
    assert sorted(keep for _, keep in remedies) == ["dupmc", "mc"], remedies
    for setting, keep in remedies:
        out = probe(site, f"{others('dupmc')},{setting}")
        assert "mc" in out["schemes"] and not any(w[1] for w in out["warnings"]), out
        assert by_name(out["plugins"])[keep]["schemes"] == ["mc"] and not by_name(out["plugins"])[keep]["conflicts"]
        assert out["sw_mc"] > 0 and out["sw_mc"] == out["sw_mc_again"]


def test_plugin_whose_hook_raises_is_skipped_with_a_warning(site):
    out = probe(site, others("hookfail"))
    ours = [w[2] for w in out["warnings"] if w[1]]
    assert any("hookfail" in m and "RuntimeError" in m for m in ours), out
    assert "mc" in out.get("schemes", []) and "points" in out.get("representations", []), out
    assert out.get("sw_mc", -1.0) > 0, out


# --------------------------------------------------------------------------------------------------
# In this process: built-ins and run-time registration


def test_builtins_come_through_entry_points():
    eps = {ep.name: ep for ep in md.entry_points(group="geom")}
    assert eps["mc"].value == "geom_plugins.mc"
    assert eps["points"].value == "geom_plugins.points"
    assert get_scheme("mc") is eps["mc"].load().MonteCarlo
    assert _registry.tables["representations"]["points"][0] is eps["points"].load().PointCloud
    info = {i.name: i for i in geom.plugins()}
    assert (info["mc"].distribution, info["mc"].version, info["mc"].schemes) == ("geom", geom.__version__, ["mc"])
    assert info["points"].representations == ["points"] and info["points"].error is None


class SignedAxes(geom.SlicingScheme):
    def __init__(self, *, sign=1.0):
        super().__init__()
        self.sign = sign

    def directions(self, n, dim, *, generator=None):
        return self.sign * torch.eye(dim)[torch.arange(n) % dim]


def test_register_scheme_at_run_time(restore_registry, clouds):
    x, y = clouds
    geom.register_scheme("test-signed-axes", SignedAxes)
    assert "test-signed-axes" in geom.schemes()
    assert RUNTIME in {i.name for i in geom.plugins()}
    assert "test-signed-axes" in {i.name: i for i in geom.plugins()}[RUNTIME].schemes
    res = geom.sliced_wasserstein(x, y, scheme="test-signed-axes", n_projections=3, sign=-1.0, return_result=True)
    assert torch.equal(res.directions, -torch.eye(3))  # the option reached the class
    assert res.value.item() == pytest.approx(axes_sw2(x, y, (0, 1, 2)), rel=1e-5)

    with pytest.raises(geom.PluginError, match="test-signed-axes"):
        geom.register_scheme("test-signed-axes", SignedAxes)
    with pytest.raises(geom.PluginError) as info:
        geom.register_scheme("mc", SignedAxes)
    assert "'mc'" in str(info.value) and RUNTIME in str(info.value)
    assert get_scheme("mc") is not SignedAxes  # the built-in keeps its name


@pytest.mark.parametrize("cls", [object, SignedAxes(), get_scheme, "SignedAxes"], ids=["object", "instance",
                                                                                      "function", "string"])
def test_register_scheme_rejects_what_is_not_a_scheme_class(restore_registry, cls):
    with pytest.raises(TypeError, match=r"cls: expected a subclass of geom\.SlicingScheme"):
        geom.register_scheme("test-bad", cls)
    assert "test-bad" not in geom.schemes()


def test_register_rejects_bad_names_and_crossed_kinds(restore_registry):
    with pytest.raises(TypeError, match="name"):
        geom.register_scheme("", SignedAxes)
    with pytest.raises(TypeError, match="name"):
        geom.register_scheme(3, SignedAxes)
    with pytest.raises(TypeError, match=r"cls: expected a subclass of geom\.Representation"):
        geom.register_representation("test-crossed", SignedAxes)
    assert "test-crossed" not in geom.representations()


def test_loading_every_plugin_leaves_the_heavy_libraries_for_first_use():
    """The registry imports every plugin on first use (every command and every first call pays it): scipy's
    sparse matrices (~0.2 s) and numba (~0.25 s) wait for the code that needs them."""
    code = ("import sys, geom; geom.registry.get_representation('points'); geom.schemes(); "
            "bad = [m for m in ('scipy.sparse', 'numba', 'ot', 'trimesh', 'matplotlib') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
