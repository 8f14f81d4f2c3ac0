"""KeOps kernels behind ``backend="keops"`` in :mod:`geom.reductions` (pykeops is imported lazily).

Three formulas serve the reductions and the matching's Sinkhorn, with ``x_i`` (i-variables), ``y_j``
(j-variables) and one scalar j-variable, all reduced over ``j`` (swap the roles of the clouds to
reduce over ``i``):

* ``nearest``: ``argmin_j |x_i - y_j|^2 + p_j``, where ``p_j = +inf`` masks zero-weight points;
* ``sums``: ``sum_j w_j [|x_i - y_j|, (x_i - y_j) / |x_i - y_j|]``, the energy distance's terms and
  their gradients in one pass. KeOps defines ``Rsqrt(0) = 0``, so coincident points contribute 0;
* ``lse``: ``log sum_j exp(h_j - |x_i - y_j|^2)``, the log-domain Sinkhorn update (scale ``x, y`` by
  ``eps^(-1/2)`` and ``h`` by ``1 / eps`` for a temperature).

Each (formula, dimension, dtype, device) compiles once (about 10 s) into KeOps' cache folder: the
user's ``KEOPS_CACHE_FOLDER`` where set, else ``keops-<pykeops version>/`` of geom's cache folder
(:mod:`geom._cache`), set when this module is imported, so every process of a user (and
``make setup``'s warm-up) shares one warm cache. A compilation says so in one line on stderr, when
pykeops starts it; pykeops' own messages are swallowed. The first call of each kernel in a process
holds a lock file in the build folder, so processes started together (pytest workers) compile a
formula once, one after the other, never into each other's files. :func:`warm_cache` compiles the
set the package uses. Supports are passed with one batch dimension, ``(B, N, D)``, so batched and
unbatched inputs share compiled code.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys

import torch

from . import _cache

try:
    import fcntl
except ImportError:  # Windows: no lock; the Makefile's warm-up still compiles before the tests run
    fcntl = None

__all__ = ["FORMULAS", "build_folder", "failure", "import_quietly", "lse", "nearest", "sums", "warm_cache"]

# kernel name -> (formula, reduction, name of the scalar j-variable)
FORMULAS = {
    "nearest": ("SqNorm2(x-y)+p", "ArgMin", "p"),
    "sums": ("w*Rsqrt(SqNorm2(x-y))*Concat(SqNorm2(x-y),x-y)", "Sum", "w"),
    "lse": ("h-SqNorm2(x-y)", "LogSumExp", "h"),
}


_cache.use_keops_cache()  # at import, before pykeops' first import (anyone's), which fixes its cache folder
_READY: set[tuple[str, int, torch.dtype, str]] = set()  # (kernel, dim, dtype, device) run once in this process


@functools.cache
def _routine(kernel: str, dim: int):
    from pykeops.torch import Genred  # noqa: PLC0415 (optional dependency, imported on first use)

    formula, reduction, extra = FORMULAS[kernel]
    return Genred(formula, [f"x=Vi({dim})", f"y=Vj({dim})", f"{extra}=Vj(1)"], reduction_op=reduction, axis=1)


def import_quietly() -> None:
    """Import pykeops (where installed) with its start-up messages swallowed.

    pykeops prints a warning on stdout when it imports without CUDA; POT imports it through geomloss,
    so a command that calls POT (exact EMD scores) imports it here first, silently.
    """
    if "pykeops" in sys.modules:
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(ImportError):
        import pykeops  # noqa: F401, PLC0415 (optional dependency)


def build_folder() -> str | None:
    """Where pykeops compiles: its build folder once imported, else the cache folder it will get."""
    pykeops = sys.modules.get("pykeops")
    if pykeops is not None:
        return pykeops.get_build_folder()
    return os.environ.get("KEOPS_CACHE_FOLDER")


class _Watch(io.TextIOBase):
    """pykeops' stdout: swallowed, but its first compilation message is announced on stderr, once."""

    def __init__(self, kernel: str, x: torch.Tensor):
        self.what = (f"compiling the KeOps formula {kernel!r} for dimension {x.shape[-1]}, "
                     f"{str(x.dtype).removeprefix('torch.')} on {x.device.type}")
        self.said = False

    def write(self, text: str) -> int:
        if not self.said and ("Compiling" in text or "Generating code" in text):
            self.said = True
            _cache.announce(f"{self.what} (once, about 10 s; cached in {build_folder()})")
        return len(text)


@contextlib.contextmanager
def _first_call(key):
    """pykeops loud (its messages tell :class:`_Watch` of a compilation) and, on the first call of
    ``key`` in this process, an exclusive lock on the build folder while it runs."""
    pykeops, keopscore = sys.modules["pykeops"], sys.modules["keopscore"]
    verbose = pykeops.verbose, keopscore.verbose
    lock = None
    if key not in _READY and fcntl is not None:
        with contextlib.suppress(OSError):  # a read-only build folder: no lock (and no compiling either)
            lock = open(os.path.join(pykeops.get_build_folder(), ".geom-compile.lock"), "a")
            fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        pykeops.verbose = keopscore.verbose = True
        yield
        _READY.add(key)
    finally:
        pykeops.verbose, keopscore.verbose = verbose
        if lock is not None:
            lock.close()  # releases the lock


def _run(kernel: str, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(B, N, D), (B, M, D), (B, M)`` -> the reduction over ``j``, ``(B, N, k)``; silent, no autograd."""
    try:
        with contextlib.redirect_stdout(_Watch(kernel, x)):  # pykeops prints its compilation steps
            routine = _routine(kernel, x.shape[-1])
            with _first_call((kernel, x.shape[-1], x.dtype, x.device.type)):
                return routine(x.contiguous(), y.contiguous(), v[..., None].contiguous())
    except Exception as exc:  # an ImportError, a compiler failure, an unsupported dtype: all say why
        formula, reduction = FORMULAS[kernel][:2]
        raise RuntimeError(
            f"backend='keops': pykeops could not run the {reduction} reduction of {formula!r} on "
            f"{x.dtype} {x.device.type} tensors ({type(exc).__name__}: {exc})"
        ) from exc


def nearest(x: torch.Tensor, y: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` int64 indices ``argmin_j |x_i - y_j|^2 + penalty_j``.

    KeOps carries the index in the data's dtype: exact up to ``M = 2**24`` points in float32.
    """
    return _run("nearest", x, y, penalty)[..., 0].long()


def sums(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(B, N, 1 + D)``: ``sum_j w_j |x_i - y_j|`` then ``sum_j w_j (x_i - y_j) / |x_i - y_j|``."""
    return _run("sums", x, y, w)


def lse(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` ``log sum_j exp(h_j - |x_i - y_j|^2)``, stable for any range of the exponents."""
    return _run("lse", x, y, h)[..., 0]


_KERNELS = {"nearest": nearest, "sums": sums, "lse": lse}


@functools.cache
def failure(kernel: str, dim: int, dtype: torch.dtype, device: torch.device) -> str | None:
    """Why ``kernel`` cannot run here for ``dim``-dimensional ``dtype`` data, or None when it can.

    Runs the kernel once on a tiny input (compiling it if needed) and remembers the answer.
    """
    x = torch.zeros(1, 2, dim, dtype=dtype, device=device)
    try:
        _KERNELS[kernel](x, x, torch.ones(1, 2, dtype=dtype, device=device))
    except RuntimeError as exc:
        return str(exc)
    return None


def warm_cache(dims=(3,), dtypes=(torch.float32, torch.float64)) -> list[str]:
    """Compile every kernel for each dimension, dtype and device here; return their descriptions."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    done = []
    for kernel, (formula, reduction, _) in FORMULAS.items():
        for dim in dims:
            for dtype in dtypes:
                for device in devices:
                    x = torch.zeros(1, 2, dim, dtype=dtype, device=device)
                    _KERNELS[kernel](x, x, torch.ones(1, 2, dtype=dtype, device=device))
                    done.append(f"{reduction}({formula}) D={dim} {str(dtype).removeprefix('torch.')} {device.type}")
    return done
