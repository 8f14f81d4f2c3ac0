"""geom's persistent cache folder (geom._cache): where it is, the KeOps folder geom gives pykeops, the
qmc point sets kept on disk (written once, read by later processes, refused when bad), and the one-line
announcements of work done once."""

import importlib.metadata
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import geom
from geom import _cache, _keops
from geom_plugins import qmc

N, DIM = 24, 3  # a small set: about 0.1 s to optimise


def announced(kind, n, dim, folder):
    return f"geom: computing the {kind!r} point set of {n} directions in dimension {dim} (once; cached in {folder})"


def run_python(code, env, *args):
    """``python -c code`` in a fresh process with ``env`` (on top of this one's), from the repository root."""
    full = {**os.environ, **env}
    for name, value in env.items():
        if value is None:
            del full[name]
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=full, capture_output=True, text=True,
                          timeout=300, cwd=pathlib.Path(__file__).resolve().parents[1])


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """An empty geom cache folder of this test's own; the in-process levels emptied too."""
    folder = tmp_path / "geom-cache"
    monkeypatch.setenv("GEOM_CACHE_DIR", str(folder))
    monkeypatch.setattr(qmc, "_ENERGY_CACHE", {})
    monkeypatch.setattr(_cache, "_UNWRITABLE", set())
    return folder


@pytest.fixture(scope="module")
def reference():
    """The (N, DIM) Coulomb set computed in memory, without any cache."""
    start = qmc.spiral_points(N)
    return qmc._optimise(start, "coulomb")


def set_path(folder, kind="coulomb", n=N, dim=DIM):
    return folder / "qmc" / f"{kind}-n{n}-d{dim}-v{qmc._ENERGY_FORMAT}.npy"


def test_cache_folder_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("GEOM_CACHE_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _cache.cache_dir() == tmp_path / "own"
    monkeypatch.setenv("GEOM_CACHE_DIR", "")  # empty: unset
    assert _cache.cache_dir() == tmp_path / "xdg" / "geom"
    monkeypatch.delenv("GEOM_CACHE_DIR")
    assert _cache.cache_dir() == tmp_path / "xdg" / "geom"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: relative paths are ignored
    assert _cache.cache_dir() == tmp_path / "home" / ".cache" / "geom"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _cache.cache_dir() == tmp_path / "home" / ".cache" / "geom"
    if importlib.util.find_spec("pykeops") is not None:
        version = importlib.metadata.version("pykeops")
        assert _cache.keops_cache_folder() == tmp_path / "home" / ".cache" / "geom" / f"keops-{version}"


def printed(stdout):
    """The folders the child printed (pykeops may print its own lines, e.g. that CUDA is absent)."""
    found = dict(line.split(" ", 1) for line in stdout.splitlines() if line.startswith(("FOLDER ", "BUILD ")))
    return found["FOLDER"], found["BUILD"]


@pytest.mark.skipif(importlib.util.find_spec("pykeops") is None, reason="pykeops is not installed")
def test_keops_folder_is_geoms_unless_the_user_set_one(tmp_path):
    # geom imports pykeops the way it does for a reduction (no formula is compiled: Genred compiles on a call)
    code = ("import os, geom; from geom import _keops; _keops._routine('nearest', 3); import pykeops; "
            "print('FOLDER', os.environ['KEOPS_CACHE_FOLDER']); print('BUILD', pykeops.get_build_folder())")
    version = importlib.metadata.version("pykeops")
    geoms = tmp_path / "geom-cache"
    plain = run_python(code, {"GEOM_CACHE_DIR": str(geoms), "KEOPS_CACHE_FOLDER": None})
    assert plain.returncode == 0, plain.stderr
    folder, build = printed(plain.stdout)
    assert folder == str(geoms / f"keops-{version}")
    assert pathlib.Path(build).parent == geoms / f"keops-{version}"  # pykeops adds <platform>_p<python version>
    mine = run_python(code, {"GEOM_CACHE_DIR": str(geoms), "KEOPS_CACHE_FOLDER": str(tmp_path / "mine")})
    assert mine.returncode == 0, mine.stderr
    folder, build = printed(mine.stdout)
    assert folder == str(tmp_path / "mine") and pathlib.Path(build).parent == tmp_path / "mine"
    assert "geom:" not in plain.stderr + mine.stderr  # importing compiles nothing


def test_point_set_is_computed_once_then_read_by_another_process(cache, capfd, reference):
    theta = qmc.energy_points(N, DIM, "coulomb")
    path = set_path(cache)
    assert capfd.readouterr().err.splitlines() == [announced("coulomb", N, DIM, path.parent)]
    assert torch.equal(theta, reference)
    assert path.is_file() and not [p for p in path.parent.iterdir() if p != path]  # no temporary file left
    qmc.energy_points(N, DIM, "coulomb")  # the in-process level
    qmc._ENERGY_CACHE.clear()
    assert torch.equal(qmc.energy_points(N, DIM, "coulomb"), theta)  # the disk level
    assert capfd.readouterr().err == ""
    out = cache.parent / "read.npy"
    code = ("import sys, numpy as np; from geom_plugins.qmc import energy_points; "
            f"np.save(sys.argv[1], energy_points({N}, {DIM}, 'coulomb').numpy())")
    second = run_python(code, {"GEOM_CACHE_DIR": str(cache)}, out)
    assert second.returncode == 0, second.stderr
    assert "computing" not in second.stderr
    read = np.load(out, allow_pickle=False)
    assert read.dtype == np.float64 and read.tobytes() == theta.numpy().tobytes()  # bit for bit


class Trap:
    """Unpickling it creates the file ``Trap.marker``: proof that a reader unpickled."""

    marker = None

    def __reduce__(self):
        return pathlib.Path.touch, (Trap.marker,)


def _corrupt(kind, path, good):
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "truncated":
        np.save(path, good)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not npy":
        path.write_bytes(b"hello, not an array\n" * 10)
    elif kind == "wrong shape":
        np.save(path, good[:-1])
    elif kind == "float32":
        np.save(path, good.astype(np.float32))
    elif kind == "nan":
        bad = good.copy()
        bad[3, 1] = np.nan
        np.save(path, bad)
    elif kind == "off the sphere":
        np.save(path, 2 * good)
    elif kind == "pickled objects":
        bad = good.astype(object)
        bad[0, 0] = Trap()
        np.save(path, bad, allow_pickle=True)
    elif kind == "npz":
        with open(path, "wb") as fh:
            np.savez(fh, good)


@pytest.mark.parametrize("kind", ["truncated", "empty", "not npy", "wrong shape", "float32", "nan", "off the sphere",
                                  "pickled objects", "npz"])
def test_a_bad_cached_file_is_refused_warned_about_and_recomputed(cache, capfd, reference, kind, tmp_path):
    Trap.marker = tmp_path / "unpickled"
    path = set_path(cache)
    _corrupt(kind, path, reference.numpy())
    with pytest.warns(geom.GeomWarning) as caught:
        theta = qmc.energy_points(N, DIM, "coulomb")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"{path}: expected a float64 array of shape ({N}, {DIM}) with unit rows, got ")
    assert not Trap.marker.exists()  # never unpickled
    assert torch.equal(theta, reference)
    assert capfd.readouterr().err.splitlines() == [announced("coulomb", N, DIM, path.parent)]
    assert np.array_equal(_cache.load_array(path, (N, DIM), unit_rows=True), reference.numpy())  # rewritten


@pytest.mark.parametrize("how", ["under a file", "read-only mode"])
def test_an_unwritable_cache_folder_still_gives_the_points(monkeypatch, tmp_path, capfd, reference, how):
    if how == "under a file":
        (tmp_path / "a-file").write_text("")
        folder = tmp_path / "a-file" / "cache"  # mkdir fails, whoever we are
    else:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
    monkeypatch.setenv("GEOM_CACHE_DIR", str(folder))
    monkeypatch.setattr(qmc, "_ENERGY_CACHE", {})
    monkeypatch.setattr(_cache, "_UNWRITABLE", set())
    with pytest.warns(geom.GeomWarning) as caught:
        theta = qmc.energy_points(N, DIM, "coulomb")
        other = qmc.energy_points(N + 1, DIM, "coulomb")  # a second set: no second warning
    assert len(caught) == 1
    assert str(caught[0].message).startswith(f"geom's cache folder {folder / 'qmc'} cannot be written (")
    assert torch.equal(theta, reference)
    assert other.shape == (N + 1, DIM) and torch.allclose(other.norm(dim=1), torch.ones(N + 1, dtype=torch.float64))
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.endswith(f"(once; not cached: {folder / 'qmc'} cannot be written)") for line in err)
    assert not set_path(folder).exists()


def test_unknown_point_set_kind_is_named():
    with pytest.raises(ValueError, match=r"kind: expected 'coulomb' or 'max_distance', got '\.\./x'"):
        qmc.energy_points(8, 3, "../x")


class FakeModule:
    def __init__(self, build):
        self.verbose = False
        self.build = build

    def get_build_folder(self):
        return self.build


def test_keops_compilation_is_announced_once_and_pykeops_output_is_swallowed(monkeypatch, tmp_path, capfd):
    # stand-ins for pykeops and its compiled routine: nothing is imported or compiled
    pykeops, keopscore = FakeModule(str(tmp_path)), FakeModule(None)
    monkeypatch.setitem(sys.modules, "pykeops", pykeops)
    monkeypatch.setitem(sys.modules, "keopscore", keopscore)
    monkeypatch.setattr(_keops, "_READY", set())
    calls = []

    def routine(x, y, p):
        calls.append((pykeops.verbose, keopscore.verbose))
        if pykeops.verbose and len(calls) == 1:  # pykeops prints only when verbose, and only when it compiles
            print("[KeOps] Generating code for ArgMin_Reduction(...) ... ", end="", flush=True)
            print("OK")
            print("[pyKeOps] Compiling pykeops cpp 0123456789 module ... ", end="", flush=True)
            print("OK")
        return torch.zeros(x.shape[0], x.shape[1], 1)

    monkeypatch.setattr(_keops, "_routine", lambda kernel, dim: routine)
    x = torch.zeros(1, 2, 3)
    for _ in range(3):
        _keops.nearest(x, x, torch.zeros(1, 2))
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"geom: compiling the KeOps formula 'nearest' for dimension 3, float32 on cpu (once, about 10 s; "
        f"cached in {tmp_path})"]
    assert calls == [(True, True)] * 3  # loud inside, so a compilation cannot go unseen
    assert (pykeops.verbose, keopscore.verbose) == (False, False)  # and the user's setting restored
    assert (tmp_path / ".geom-compile.lock").is_file()  # the first call held the build folder's lock


@pytest.mark.keops
def test_a_real_keops_compilation_is_announced_once_per_cache(tmp_path):
    if importlib.util.find_spec("pykeops") is None:
        pytest.skip("pykeops is not installed")
    code = ("import torch; from geom import _keops; x = torch.rand(1, 5, 2); "
            "[_keops.nearest(x, x, torch.zeros(1, 5)) for _ in range(2)]")
    env = {"GEOM_CACHE_DIR": str(tmp_path), "KEOPS_CACHE_FOLDER": None}
    first = run_python(code, env)  # D = 2: a formula of its own, compiled into this empty cache (about 12 s)
    if first.returncode != 0 and "pykeops could not run" in first.stderr:
        pytest.skip(f"pykeops cannot compile here: {first.stderr.strip().splitlines()[-1]}")
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stderr.splitlines() if line.startswith("geom:")]
    assert len(lines) == 1, first.stderr
    assert re.fullmatch(r"geom: compiling the KeOps formula 'nearest' for dimension 2, float32 on cpu \(once, about "
                        rf"10 s; cached in {re.escape(str(tmp_path))}/keops-[^/]+/[^/]+\)", lines[0])
    second = run_python(code, env)
    assert second.returncode == 0, second.stderr
    assert "geom:" not in second.stderr


KERNEL_CALLS = """
import sys, json, torch, geom
from geom._ot1d import kernels
g = torch.Generator().manual_seed(0)
x, y = torch.randn(50, 3, generator=g), torch.randn(40, 3, generator=g)
for a, b in ((x, x + 1), (x, y)):  # the uniform pairing and the weighted merge, value and gradient
    geom.sliced_wasserstein(a.clone().requires_grad_(), b, n_projections=16, seed=1).backward()
geom.sliced_energy_distance(x, y, n_projections=16, seed=1)
stats = {name: (sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
         for name, f in kernels._compiled().items()}
print(json.dumps(stats))
"""


def test_a_second_process_loads_every_kernel_from_the_cache(tmp_path):
    """numba's cache key hashes a kernel's closure, and a closure over another compiled function hashed
    differently in every process: the pairing, the merge and the energy compiled again in each one."""
    import json

    env = {"GEOM_CACHE_DIR": str(tmp_path / "geom-cache"), "NUMBA_CACHE_DIR": None}
    first = run_python(KERNEL_CALLS, env)
    assert first.returncode == 0, first.stderr
    used = {name for name, (hits, misses) in json.loads(first.stdout.splitlines()[-1]).items() if hits + misses}
    assert {"pack_keys", "pair_rows", "merge_rows", "energy_rows"} <= used
    second = run_python(KERNEL_CALLS, env)
    assert second.returncode == 0, second.stderr
    stats = json.loads(second.stdout.splitlines()[-1])
    assert {name: misses for name, (_, misses) in stats.items() if misses} == {}
    assert all(stats[name][0] > 0 for name in used)


def test_loading_the_kernels_removes_the_cache_files_of_kernels_geom_no_longer_has(tmp_path):
    """numba never removes a cache file: each edit of ``_jit.py`` (another first line, or an index it
    drops) and each release left its files behind. Loading the kernels removes those no current kernel
    can use, in geom's own numba folder only, and keeps the current ones (the next process still loads
    every kernel)."""
    import json

    env = {"GEOM_CACHE_DIR": str(tmp_path / "geom-cache"), "NUMBA_CACHE_DIR": None}
    first = run_python(KERNEL_CALLS, env)
    assert first.returncode == 0, first.stderr
    (folder,) = (tmp_path / "geom-cache" / "numba").iterdir()
    kept = sorted(p.name for p in folder.iterdir())
    stale = ["_jit.pair_rows-1.py311.nbi", "_jit.pair_rows-1.py311.3.nbc", "kernels._build.locals.merge_rows-99.py311.nbi",
             "_jit.gone-7.py39.1.nbc"]
    others = ["_jit.pair_rows-1.py311.nbi.txt", "notes.txt"]  # not numba's files: left alone
    for name in stale + others:
        (folder / name).write_bytes(b"old")
    # an overload of a current kernel compiled from an older _jit.py: "_jit.pair_rows-<line>.py311.99.nbc"
    current = next(p.name for p in folder.iterdir() if p.name.startswith("_jit.pair_rows-") and p.suffix == ".nbc")
    orphan = folder / (current.rsplit(".", 2)[0] + ".99.nbc")
    orphan.write_bytes(b"old")
    source = pathlib.Path(importlib.util.find_spec("geom._ot1d._jit").origin).stat().st_mtime
    os.utime(orphan, (source - 60, source - 60))
    stale.append(orphan.name)
    elsewhere = tmp_path / "geom-cache" / "elsewhere"  # another folder, even of numba's files: left alone
    elsewhere.mkdir()
    (elsewhere / stale[0]).write_bytes(b"old")
    second = run_python(KERNEL_CALLS, env)
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept + others)
    assert (elsewhere / stale[0]).exists()
    stats = json.loads(second.stdout.splitlines()[-1])
    assert {name: misses for name, (_, misses) in stats.items() if misses} == {}
