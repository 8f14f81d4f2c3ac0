"""geom's persistent cache folder: compiled KeOps formulas and sort kernels, and optimised point sets, shared by every
process of a user (``make test``, ``make setup``'s warm-up and a plain ``python -c "import geom"``).

The folder is the first of:

1. ``$GEOM_CACHE_DIR``;
2. ``$XDG_CACHE_HOME/geom`` (an absolute ``XDG_CACHE_HOME``; the XDG spec says to ignore relative ones);
3. ``~/.cache/geom``.

Inside it:

* ``keops-<pykeops version>/``: KeOps' cache folder (``KEOPS_CACHE_FOLDER``), which ``import geom``
  sets (pykeops reads it once, at its own import), unless the user set ``KEOPS_CACHE_FOLDER`` (theirs
  always wins) or pykeops was imported first (then its own choice stands). pykeops adds one build folder per
  platform and Python version, so compiled modules of different interpreters never mix;
* ``numba/``: numba's cache of the compiled sort kernels (``NUMBA_CACHE_DIR``, set by
  :mod:`geom._ot1d.kernels` before it imports numba, unless the user set it or imported numba first);
  loading the kernels removes there the files of kernels this geom no longer has (numba never does);
* ``qmc/``: the optimised point sets of :func:`geom_plugins.qmc.energy_points`, one ``.npy`` each.

Arrays are written atomically (:mod:`geom._files`) and read without unpickling; a file that is not
the expected array is named in a :class:`geom.GeomWarning` and recomputed. A folder that cannot be
written costs one warning per process; the values are then computed in memory.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import warnings

import numpy as np

from ._checks import GeomWarning
from ._files import atomic_write

__all__ = ["announce", "cache_dir", "keops_cache_folder", "load_array", "save_array", "use_keops_cache", "where"]

_UNWRITABLE: set[str] = set()  # folders this process failed to write (warned about once each)


def cache_dir() -> pathlib.Path:
    """geom's cache folder: ``$GEOM_CACHE_DIR``, else ``$XDG_CACHE_HOME/geom``, else ``~/.cache/geom``.

    Read from the environment on every call; nothing is created.
    """
    own = os.environ.get("GEOM_CACHE_DIR")
    if own:
        return pathlib.Path(own).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return pathlib.Path(xdg) / "geom"
    home = os.path.expanduser("~")
    if not os.path.isabs(home):  # no HOME and no password entry: a per-user folder in the temp folder
        return pathlib.Path(tempfile.gettempdir()) / f"geom-cache-{os.getuid() if hasattr(os, 'getuid') else 0}"
    return pathlib.Path(home) / ".cache" / "geom"


def keops_cache_folder() -> pathlib.Path | None:
    """``cache_dir() / "keops-<pykeops version>"``, or None where pykeops is not installed.

    The version is read beside the package (pykeops is not imported), from its metadata otherwise.
    """
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec("pykeops")
    if spec is None or spec.origin is None:
        return None
    try:
        version = (pathlib.Path(spec.origin).parent / "keops_version").read_text(encoding="utf-8").strip()
    except OSError:
        from importlib import metadata  # noqa: PLC0415

        try:
            version = metadata.version("pykeops")
        except metadata.PackageNotFoundError:
            version = "unknown"
    return cache_dir() / f"keops-{version}"


def use_keops_cache() -> None:
    """Point ``KEOPS_CACHE_FOLDER`` at :func:`keops_cache_folder`; call before importing pykeops.

    Leaves it alone when the user set it (non-empty), when pykeops is already imported (its folder is
    chosen at import) and when pykeops is not installed.
    """
    if os.environ.get("KEOPS_CACHE_FOLDER") or "pykeops" in sys.modules:
        return
    folder = keops_cache_folder()
    if folder is not None:
        os.environ["KEOPS_CACHE_FOLDER"] = str(folder)


def announce(message: str) -> None:
    """One line ``geom: <message>`` on stderr, at once (for work that runs once and takes seconds)."""
    print(f"geom: {message}", file=sys.stderr, flush=True)


def where(folder) -> str:
    """``"cached in <folder>"`` once ``folder`` exists, else that it cannot be written (warned once)."""
    folder = pathlib.Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _unwritable(folder, exc)
    if str(folder) in _UNWRITABLE:
        return f"not cached: {folder} cannot be written"
    return f"cached in {folder}"


def _unwritable(folder: pathlib.Path, exc: OSError) -> None:
    if str(folder) not in _UNWRITABLE:
        _UNWRITABLE.add(str(folder))
        warnings.warn(f"geom's cache folder {folder} cannot be written ({type(exc).__name__}: {exc}); "
                      f"results are kept in memory for this process only", GeomWarning, stacklevel=3)


def load_array(path, shape: tuple[int, ...], *, unit_rows: bool = False) -> np.ndarray | None:
    """The finite float64 array of ``shape`` stored in the ``.npy`` file ``path``; None when absent.

    The file is memory-mapped (a header that claims a huge array allocates nothing) and never
    unpickled. A file that is not such an array (unreadable, truncated, another shape or dtype,
    Python objects, non-finite values, rows off the unit sphere with ``unit_rows``) gets a
    GeomWarning that names it, what was expected and what came, and None is returned: the caller
    recomputes the array and rewrites the file.
    """
    path = pathlib.Path(path)
    expected = f"a float64 array of shape {tuple(shape)}" + (" with unit rows" if unit_rows else "")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic != b"\x93NUMPY":  # np.load would open a zip archive, or call anything else a pickle
            return _refuse(path, expected, f"a file that is not .npy (it starts with {magic!r})")
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (FileNotFoundError, NotADirectoryError):  # absent, or a file where a folder should be
        return None
    except (OSError, ValueError, EOFError) as exc:  # unreadable, truncated, pickled objects
        return _refuse(path, expected, f"an unreadable .npy file ({type(exc).__name__}: {exc})")
    if mapped.dtype != np.float64 or mapped.shape != tuple(shape):
        return _refuse(path, expected, f"a {mapped.dtype} array of shape {mapped.shape}")
    array = np.array(mapped)  # a copy in memory; the map closes with its last reference
    del mapped
    if not np.isfinite(array).all():
        return _refuse(path, expected, f"{int((~np.isfinite(array)).sum())} non-finite value(s)")
    if unit_rows and array.size:
        off = float(np.abs(np.linalg.norm(array, axis=1) - 1.0).max())
        if not off <= 1e-12:
            return _refuse(path, expected, f"row norms up to {off:.3g} away from 1")
    return array


def _refuse(path: pathlib.Path, expected: str, got: str) -> None:
    warnings.warn(f"{path}: expected {expected}, got {got}; recomputing it and rewriting the file",
                  GeomWarning, stacklevel=3)
    return None


def save_array(path, array: np.ndarray) -> bool:
    """Write ``array`` to the ``.npy`` file ``path`` atomically, creating its folder; True when written.

    A folder that cannot be written is no error: one GeomWarning per folder and process, and False.
    """
    path = pathlib.Path(path)
    if str(path.parent) in _UNWRITABLE:
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    except OSError as exc:
        _unwritable(path.parent, exc)
        return False
    return True
