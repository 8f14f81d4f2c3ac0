"""Hostile plugins, in this process: a fresh registry sees the built-in entry points plus fake ones
whose ``load()`` runs their source as an import would. Plugins that raise ``BaseException`` at import
or in a hook, a real Ctrl-C while plugins load, a plugin that looks the registry up while it loads,
malformed distribution metadata, warnings turned into errors, and names registered by two plugins
(with ``geom compare`` and ``geom plugins`` still working)."""

import dataclasses
import importlib.metadata as md
import signal
import textwrap
import types
import warnings

import numpy as np
import pytest
import torch

import geom
from geom import registry
from geom.registry import PluginError, get_dataset, get_representation, get_scheme

from cli_helpers import assert_user_error, run

BUILTINS = list(md.entry_points(group="geom"))

SCHEME = '''
import torch
import geom


class Axes(geom.SlicingScheme):
    def directions(self, n, dim, *, generator=None):      # -> (n, dim) unit rows
        return torch.eye(dim)[torch.arange(n) % dim]
'''


@dataclasses.dataclass
class FakeEntryPoint:
    """An entry point of group "geom" whose ``load()`` runs ``source`` in a new module, as an import does."""

    name: str
    source: str
    dist = None

    @property
    def value(self) -> str:
        return f"fake_{self.name}"

    def load(self):
        module = types.ModuleType(self.value)
        exec(compile(textwrap.dedent(self.source), self.value, "exec"), module.__dict__)
        return module


@pytest.fixture
def fresh(monkeypatch):
    """``fresh(**plugins)``: a new, unloaded registry seeing the built-ins plus ``name=source`` fakes."""
    monkeypatch.delenv("GEOM_DISABLE_PLUGINS", raising=False)

    def make(**plugins):
        fakes = [FakeEntryPoint(name, source) for name, source in plugins.items()]
        real = md.entry_points  # other groups (numba reads its extensions at import) see the real ones

        def entry_points(group=None, **kw):
            if group == "geom":
                return [*BUILTINS, *fakes]
            return real(**kw) if group is None else real(group=group, **kw)

        monkeypatch.setattr(md, "entry_points", entry_points)
        reg = registry._Registry()
        monkeypatch.setattr(registry, "_registry", reg)
        return reg

    return make


def geom_warnings(fn):
    """``(result of fn(), messages of the GeomWarnings it issued)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in caught if issubclass(w.category, geom.GeomWarning)]


def assert_builtins_work(reg):
    """The built-ins are all there, each once, and a distance comes out."""
    assert {"mc", "qmc", "cv"} <= set(geom.schemes()) and {"points", "spd"} <= set(geom.representations())
    assert {i.name: i for i in geom.plugins()}["mc"].schemes == ["mc"]
    assert {"shapes", "spd"} <= set(geom.datasets())
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    assert geom.sliced_wasserstein(x, x + 1, n_projections=16, seed=0).item() > 0.5


class Custom(BaseException):
    pass


RAISES = {
    "SystemExit": "raise SystemExit(3)",
    "KeyboardInterrupt": "raise KeyboardInterrupt",
    "Custom": "raise __import__('test_registry_hostile').Custom('custom base exception')",
    "RuntimeError": "raise RuntimeError('plain error')",
}


def hook_plugin(where: str, raise_line: str) -> str:
    """A plugin registering scheme "hostile-axes" and representation "hostile-points", raising ``where``."""
    at = {w: (raise_line if w == where else "pass") for w in ("import", "schemes", "representations")}
    return SCHEME + f'''
{at["import"]}


@geom.hookimpl
def geom_register_schemes(register):
    register("hostile-axes", Axes)
    {at["schemes"]}


@geom.hookimpl
def geom_register_representations(register):
    from geom_plugins.points import PointCloud
    register("hostile-points", PointCloud)
    {at["representations"]}
'''


# every BaseException at every stage; a plain Exception only where it used to leave half a plugin behind
CASES = [(e, w) for e in RAISES for w in ("import", "schemes", "representations")
         if e != "RuntimeError" or w == "representations"]


@pytest.mark.parametrize("exc, where", CASES)
def test_plugin_raising_anything_is_skipped_whole_with_a_warning(fresh, where, exc):
    reg = fresh(hostile=hook_plugin(where, RAISES[exc]))
    names, messages = geom_warnings(geom.schemes)
    assert len(messages) == 1 and "'hostile'" in messages[0] and exc in messages[0], messages
    assert ("failed to load" if where == "import" else f"geom_register_{where}") in messages[0]
    # all or nothing: a hook that ran to the end before another one raised registers nothing either
    assert "hostile-axes" not in names and "hostile-points" not in geom.representations()
    info = {i.name: i for i in geom.plugins()}["hostile"]
    assert info.error.startswith(exc) and info.schemes == info.representations == []
    assert_builtins_work(reg)
    _, again = geom_warnings(geom.schemes)  # loaded once: no retry, no second warning
    assert again == [] and geom.schemes() == names


def test_healthy_plugin_next_to_a_hostile_one_is_registered(fresh):
    reg = fresh(hostile=hook_plugin("schemes", RAISES["SystemExit"]), healthy=hook_plugin("nowhere", ""))
    geom_warnings(geom.schemes)
    assert "hostile-axes" in geom.schemes() and get_scheme("hostile-axes").__module__ == "fake_healthy"
    assert {i.name: i for i in geom.plugins()}["healthy"].schemes == ["hostile-axes"]
    assert_builtins_work(reg)


CTRL_C = SCHEME + '''
import signal
import test_registry_hostile as here

here.CTRL_C_SENT.append(1)
if len(here.CTRL_C_SENT) == 1:
    signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C while this plugin imports


@geom.hookimpl
def geom_register_schemes(register):
    register("after-ctrl-c", Axes)
'''
CTRL_C_SENT = []


def test_real_ctrl_c_while_loading_stops_and_the_next_look_up_loads_everything_once(fresh):
    CTRL_C_SENT.clear()
    handler = signal.getsignal(signal.SIGINT)
    if handler is not signal.default_int_handler:
        pytest.skip(f"SIGINT is handled by {handler!r} here, not by Python's default handler")
    reg = fresh(ctrlc=CTRL_C)
    with pytest.raises(KeyboardInterrupt):
        geom.schemes()
    assert signal.getsignal(signal.SIGINT) is handler  # the user's handler is back
    assert not reg._loaded and reg.tables["schemes"] == {}  # nothing half-loaded was kept
    names, messages = geom_warnings(geom.schemes)  # the next look-up starts over, cleanly
    assert messages == [] and len(CTRL_C_SENT) == 2
    assert "after-ctrl-c" in names and {i.name: i for i in geom.plugins()}["ctrlc"].schemes == ["after-ctrl-c"]
    assert_builtins_work(reg)


MISBEHAVING = {  # plugin name: (code at import, body of its scheme hook, what the warning says)
    "nosy": ("known = geom.schemes()", 'register("nosy-axes", Axes)', "while its plugins were loading"),
    "twice": ("", 'register("twice-axes", Axes)\n    register("twice-axes", Axes)',
              "registered twice by the same plugin"),
}


@pytest.mark.parametrize("name", list(MISBEHAVING))
def test_plugin_misusing_the_registry_is_skipped(fresh, name):
    at_import, hook, says = MISBEHAVING[name]
    reg = fresh(**{name: SCHEME + f"{at_import}\n\n\n@geom.hookimpl\ndef geom_register_schemes(register):\n    {hook}\n"})
    names, messages = geom_warnings(geom.schemes)
    assert len(messages) == 1 and f"'{name}'" in messages[0] and says in messages[0], messages
    assert f"{name}-axes" not in names
    assert_builtins_work(reg)


def test_warnings_turned_into_errors_leave_a_complete_registry(fresh):
    reg = fresh(hostile=hook_plugin("import", RAISES["RuntimeError"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", geom.GeomWarning)
        with pytest.raises(geom.GeomWarning, match="'hostile'"):
            geom.schemes()
        assert_builtins_work(reg)  # loaded before the warning was raised


def test_malformed_distribution_metadata_is_skipped_with_a_warning(monkeypatch, tmp_path):
    info = tmp_path / "malformed-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: malformed\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[geom]\nthis line has no equals sign\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("GEOM_DISABLE_PLUGINS", raising=False)
    reg = registry._Registry()
    monkeypatch.setattr(registry, "_registry", reg)
    _, messages = geom_warnings(geom.schemes)
    assert len(messages) == 1 and "malformed-0.1.dist-info" in messages[0], messages
    assert_builtins_work(reg)


# --------------------------------------------------------------------------------------------- name clashes


def clash_plugin(scheme: str) -> str:
    """Registers ``scheme``, representation "clash-points" and dataset "clash-shapes"."""
    return SCHEME + f'''
@geom.hookimpl
def geom_register_schemes(register):
    register({scheme!r}, Axes)


@geom.hookimpl
def geom_register_representations(register):
    from geom_plugins.points import PointCloud
    register("clash-points", PointCloud)


@geom.hookimpl
def geom_register_datasets(register):
    from geom_datasets.generators import Shapes
    register("clash-shapes", Shapes)
'''


def assert_names_both(exc_info, name):
    message = str(exc_info.value)
    assert f"'{name}'" in message and "'clash-a'" in message and "'clash-b'" in message, message
    assert "GEOM_DISABLE_PLUGINS=clash-a keeps 'clash-b'" in message, message
    assert "GEOM_DISABLE_PLUGINS=clash-b keeps 'clash-a'" in message, message


def test_name_registered_by_two_plugins_is_an_error_when_used_and_only_then(fresh):
    reg = fresh(**{"clash-a": clash_plugin("clash-axes"), "clash-b": clash_plugin("clash-axes")})
    names, messages = geom_warnings(geom.schemes)
    assert len(messages) == 3 and all("'clash-a'" in m and "'clash-b'" in m for m in messages), messages
    assert "clash-axes" not in names and "clash-points" not in geom.representations()  # left out, consistently
    assert "clash-shapes" not in geom.datasets()
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))
    for use, name in [(lambda: get_scheme("clash-axes"), "clash-axes"),
                      (lambda: geom.sliced_wasserstein(x, x, scheme="clash-axes", n_projections=3), "clash-axes"),
                      (lambda: get_representation("clash-points"), "clash-points"),
                      (lambda: geom.measure(x, kind="clash-points"), "clash-points"),
                      (lambda: get_dataset("clash-shapes"), "clash-shapes")]:
        for _ in range(2):  # the second use errs the same way
            with pytest.raises(PluginError) as exc_info:
                use()
            assert_names_both(exc_info, name)
    info = {i.name: i for i in geom.plugins()}
    for me, other in (("clash-a", "clash-b"), ("clash-b", "clash-a")):
        assert info[me].schemes == ["clash-axes"] and info[me].error is None
        assert info[me].conflicts == [f"scheme 'clash-axes' is also registered by '{other}'",
                                      f"representation 'clash-points' is also registered by '{other}'",
                                      f"dataset 'clash-shapes' is also registered by '{other}'"]
    # run-time registration of a taken name stays an immediate error
    axes = get_scheme("qmc")
    for name in ("clash-axes", "mc"):
        with pytest.raises(PluginError, match=f"'{name}' is registered twice"):
            geom.register_scheme(name, axes)
    assert_builtins_work(reg)


@pytest.fixture
def clouds(tmp_path):
    g = np.random.default_rng(2)
    paths = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(paths[0], g.normal(size=(50, 3)).astype(np.float32))
    np.save(paths[1], (g.normal(size=(60, 3)) + 0.5).astype(np.float32))
    return paths


def test_cli_keeps_working_next_to_a_name_clash(fresh, capsys, clouds):
    fresh(**{"clash-a": clash_plugin("clash-axes"), "clash-b": clash_plugin("clash-axes")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", geom.GeomWarning)
        rc, out, err = run(capsys, "compare", *clouds, "--scheme", "mc", "--n-projections", "32", "--json")
        assert rc == 0, err
        assert "value" in out
        rc, out, err = run(capsys, "plugins")
        assert rc == 0, err
        rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
        for me, other in (("clash-a", "clash-b"), ("clash-b", "clash-a")):
            assert f"conflict: scheme 'clash-axes' is also registered by '{other}'" in rows[me], out
        assert rows["mc"].rstrip().endswith("ok")
        assert "GEOM_DISABLE_PLUGINS" in out
        rc, out, err = run(capsys, "datasets")
        assert rc == 0 and "shapes" in out and "clash-shapes" not in out
        assert_user_error(*run(capsys, "compare", *clouds, "--scheme", "clash-axes", "--n-projections", "8"),
                          "'clash-axes'", "'clash-a'", "'clash-b'", "GEOM_DISABLE_PLUGINS=")


def test_cli_names_both_plugins_when_mc_itself_clashes(fresh, capsys, clouds):
    fresh(dupmc=clash_plugin("mc"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", geom.GeomWarning)
        assert_user_error(*run(capsys, "compare", *clouds, "--n-projections", "8"),
                          "'mc'", "'dupmc'", "GEOM_DISABLE_PLUGINS=dupmc keeps 'mc'")
        rc, out, _ = run(capsys, "compare", *clouds, "--scheme", "qmc", "--n-projections", "8")
        assert rc == 0 and "SW_2" in out
        rc, out, _ = run(capsys, "plugins", "--json")
        assert rc == 0 and "scheme 'mc' is also registered by 'dupmc'" in out
