"""No import cycles between the modules of geom, geom_plugins, geom_datasets and geom_tools.

The imports are read from the source with :mod:`ast` (module-level and function-level ones,
absolute and relative), nothing is imported. An edge goes to the module an import runs:
``from .foo import bar`` and ``import pkg.foo`` to ``pkg.foo``; ``from . import x`` to the
submodule ``x`` where there is one, else to the package's ``__init__``; ``import geom`` to
``geom/__init__.py``. Importing a submodule is not counted as importing its parent package (that
package is already being imported whenever one of its modules runs).
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"geom": "geom", "geom_plugins": "plugins", "geom_datasets": "datasets", "geom_tools": "tools"}
"""Installed package name -> its folder in the repository."""


def modules(root: pathlib.Path, packages: dict[str, str]) -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every ``.py`` file of the packages (``pkg.__init__`` is ``pkg``)."""
    found = {}
    for package, folder in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [package, *path.relative_to(root / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: pathlib.Path, known: dict[str, pathlib.Path]) -> set[str]:
    """The modules of ``known`` that the module ``name`` (in ``path``) imports, wherever in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in known:  # `import a.b.c` of a name inside a.b: a.b
                    target = target.rpartition(".")[0]
                out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in known else source)
    return {m for m in out if m in known and m != name}


def graph(root: pathlib.Path, packages: dict[str, str]) -> dict[str, set[str]]:
    known = modules(root, packages)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` through each group of modules that import each other (Tarjan's
    strongly connected components with more than one module, or a module importing itself)."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges[v]:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_path_in(group, edges) for group in groups]


def _path_in(group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """The shortest cycle through the group's first module (breadth-first inside the group)."""
    start = min(group)
    parent, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v] & group):
                if w == start:
                    path = [v]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in {group}")


def test_no_import_cycles_between_our_modules():
    found = cycles(graph(ROOT, PACKAGES))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_geom_never_imports_plugins_tools_or_datasets_modules():
    edges = graph(ROOT, PACKAGES)
    wrong = sorted(f"{a} -> {b}" for a, out in edges.items() if a.split(".")[0] == "geom"
                   for b in out if b.split(".")[0] != "geom")
    assert not wrong, wrong


def test_the_graph_reads_every_kind_of_import(tmp_path):
    """The reader on a package made for it: each kind of import gives its edge, and a cycle is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "from .a import f\n",
        "a.py": "import os\n\ndef f():\n    from .b import g  # function-level\n",
        "b.py": "from . import c\nfrom . import VERSION\n",
        "c.py": "import pkg.sub.d\n",
        "sub/__init__.py": "",
        "sub/d.py": "from ..a import f\nimport pkg\n",
        "e.py": "from pkg.sub import d\nimport pkg.a.f\n",
    }
    for name, text in sources.items():
        (pkg / name).write_text(text)
    edges = graph(tmp_path, {"pkg": "pkg"})
    assert edges == {
        "pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c", "pkg"}, "pkg.c": {"pkg.sub.d"},
        "pkg.sub": set(), "pkg.sub.d": {"pkg.a", "pkg"}, "pkg.e": {"pkg.sub.d", "pkg.a"},
    }
    assert cycles(edges) == [["pkg", "pkg.a", "pkg.b", "pkg"]]
    edges["pkg.b"] = {"pkg.c"}  # the longer way round is left
    assert cycles(edges) == [["pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.sub.d", "pkg"]]
    edges["pkg.sub.d"] = set()
    assert cycles(edges) == []
