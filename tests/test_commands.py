"""``geom <command>`` commands are plugins: the hook ``geom_register_commands``, the built-in commands
entering through it, and third-party commands that work, break or clash.

One test installs a real third-party distribution (a package plus its ``.dist-info`` with
``entry_points.txt``) into a temporary site directory seen by a fresh interpreter (PYTHONPATH), as
tests/test_plugins.py does; the others give this process a fresh registry whose entry points are the
built-in ones plus fakes (as tests/test_registry_hostile.py does), so the real registry is untouched.
"""

import importlib.metadata as md
import json
import os
import subprocess
import sys
import textwrap
import types

import pytest

import geom
from geom import registry

from cli_helpers import assert_user_error, run

HELLO = '''
import geom


class Hello(geom.Command):
    help = "say hello"

    def configure(self, parser):
        parser.add_argument("--who", default="world")

    def run(self, args):
        print(f"hello {args.who}")
        return 0


@geom.hookimpl
def geom_register_commands(register):
    register("hello", Hello)
'''

BROKEN = '''
import geom


class Broken(geom.Command):
    help = "a command that breaks"

    def configure(self, parser):
        {configure}

    def run(self, args):
        {run}


@geom.hookimpl
def geom_register_commands(register):
    register("broken", Broken)
'''

PROBE = """
import contextlib, io, json, sys
from geom_tools import cli

results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    results.append([rc, out.getvalue(), err.getvalue()])
results.append(sorted(m for m in ("matplotlib", "ot", "trimesh") if m in sys.modules))
print(json.dumps(results))
"""


def test_a_third_party_command_installed_as_a_distribution_runs_and_is_listed(tmp_path):
    site = tmp_path / "site"
    (site / "hello_plugin").mkdir(parents=True)
    (site / "hello_plugin" / "__init__.py").write_text(textwrap.dedent(HELLO))
    info = site / "hello_plugin-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hello_plugin\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[geom]\nhello = hello_plugin\n")
    argvs = [["hello", "--who", "geom"], ["plugins", "--json"], ["plugins"], ["--help"]]
    env = {k: v for k, v in os.environ.items() if k != "GEOM_DISABLE_PLUGINS"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs)], env=dict(env, PYTHONPATH=str(site)),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (hello, as_json, table, helped, heavy) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert hello == [0, "hello geom\n", ""]
    by_name = {p["name"]: p for p in json.loads(as_json[1])}
    assert by_name["hello"]["commands"] == ["hello"]
    assert (by_name["hello"]["distribution"], by_name["hello"]["version"]) == ("hello_plugin", "1.2")
    assert set(by_name["commands"]["commands"]) == {"compare", "plugins", "demo", "datasets", "flow", "generate", "deform",
                                                      "collection", "match", "train-ae"}
    rows = {line.split()[0]: line.split() for line in table[1].splitlines()[2:] if line.strip()}
    assert rows["hello"] == ["hello", "hello_plugin", "1.2", "-", "-", "-", "hello", "ok"]
    assert helped[0] == 0 and "say hello" in helped[1]
    assert heavy == []  # matplotlib, POT and trimesh wait for the commands that draw, score or write meshes


class FakeEntryPoint:
    """An entry point of group "geom" whose module is ``source``, run when it is loaded."""

    dist = None

    def __init__(self, name: str, source: str):
        self.name, self.source = name, source
        self.value = f"fake_{name}"

    def load(self):
        module = types.ModuleType(self.value)
        exec(compile(textwrap.dedent(self.source), self.value, "exec"), module.__dict__)
        return module


@pytest.fixture
def plugins(monkeypatch):
    """``plugins(**sources)``: a fresh registry seeing the built-in entry points plus these fakes."""
    builtins = list(md.entry_points(group="geom"))
    monkeypatch.delenv("GEOM_DISABLE_PLUGINS", raising=False)

    def install(**sources):
        fakes = [FakeEntryPoint(name, source) for name, source in sources.items()]
        monkeypatch.setattr(md, "entry_points", lambda group=None, **kw: [*builtins, *fakes])
        monkeypatch.setattr(registry, "_registry", registry._Registry())

    return install


def broken(configure="pass", run="return 0"):
    return BROKEN.format(configure=configure, run=run)


def test_the_built_in_commands_enter_through_the_hook(plugins, capsys, monkeypatch):
    plugins()
    assert {"compare", "plugins", "demo", "datasets", "flow", "generate", "deform"} <= set(geom.commands())
    assert registry.get_command("compare").__module__ == "geom_tools.commands"
    plugins(hello=HELLO)
    monkeypatch.setenv("GEOM_DISABLE_PLUGINS", "commands")  # the built-ins' plugin blocked: they are gone
    rc, out, err = run(capsys, "hello", "--who", "you")
    assert (rc, out) == (0, "hello you\n"), err
    assert_user_error(*run(capsys, "datasets"), "invalid choice: 'datasets'", "hello")


@pytest.mark.parametrize("configure", ["raise RuntimeError('no parser today')", "parser.add_argument('--x')\n"
                                       "        parser.add_argument('--x')"])
def test_a_command_failing_to_configure_is_skipped_with_one_warning(plugins, capsys, configure):
    plugins(broken=broken(configure=configure), hello=HELLO)
    rc, out, err = run(capsys, "hello")
    assert (rc, out) == (0, "hello world\n")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geom: warning: command 'broken' of plugin 'broken' is skipped")
    assert ("RuntimeError: no parser today" if "Runtime" in configure else "ArgumentError") in lines[0]
    rc, out, err = run(capsys, "broken")
    assert (rc, out) == (2, "") and len(err.strip().splitlines()) == 2  # the warning, then the usage error
    assert err.strip().splitlines()[1].startswith("geom: error: argument command: invalid choice: 'broken'")
    rc, out, err = run(capsys, "--help")
    assert rc == 0 and "hello" in out and "a command that breaks" not in out


def test_a_command_class_that_cannot_be_built_is_skipped(plugins, capsys):
    abstract = broken().replace("    def run(self, args):\n        return 0\n", "")  # run() never written
    assert "def run" not in abstract
    plugins(broken=abstract)
    rc, out, err = run(capsys, "datasets", "--json")
    assert rc == 0 and json.loads(out)
    assert len(err.strip().splitlines()) == 1 and "'broken'" in err and "TypeError" in err and "abstract" in err


@pytest.mark.parametrize("body, needles", [
    ("raise RuntimeError('boom')", ["command 'broken' of plugin 'broken' failed", "RuntimeError: boom"]),
    ("raise ValueError('--x: expected 3, got 4')", ["geom: error: --x: expected 3, got 4"]),
    ("raise KeyError('row')", ["command 'broken'", "KeyError: 'row'"]),
])
def test_a_command_failing_in_run_is_one_line(plugins, capsys, body, needles):
    plugins(broken=broken(run=body), hello=HELLO)
    assert_user_error(*run(capsys, "broken"), *needles)
    assert run(capsys, "hello")[:2] == (0, "hello world\n")


def test_a_built_in_command_failing_with_a_bug_shows_it(plugins, capsys, monkeypatch):
    plugins()

    def bug(self, args):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(registry.get_command("datasets"), "run", bug)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        run(capsys, "datasets")


def test_a_command_registered_by_two_plugins_says_so_and_the_rest_works(plugins, capsys):
    plugins(**{"hello-a": HELLO, "hello-b": HELLO})
    assert "hello" not in geom.commands()
    assert_user_error(*run(capsys, "hello", "--who", "x"), "command 'hello'", "'hello-a' and 'hello-b'",
                      "GEOM_DISABLE_PLUGINS")
    rc, out, err = run(capsys, "plugins", "--json")
    assert rc == 0, err
    by_name = {p["name"]: p for p in json.loads(out)}
    assert by_name["hello-a"]["commands"] == ["hello"]
    assert by_name["hello-a"]["conflicts"] == ["command 'hello' is also registered by 'hello-b'"]
    rc, out, _ = run(capsys, "plugins")
    assert rc == 0 and "conflict: command 'hello'" in out
