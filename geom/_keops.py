"""KeOps kernels behind ``backend="keops"`` in :mod:`geom.reductions` (pykeops is imported lazily).

Two formulas serve all three reductions, with ``x_i`` (i-variables), ``y_j`` (j-variables) and one
scalar j-variable, both reduced over ``j`` (swap the roles of the clouds to reduce over ``i``):

* ``nearest``: ``argmin_j |x_i - y_j|^2 + p_j``, where ``p_j = +inf`` masks zero-weight points;
* ``sums``: ``sum_j w_j [|x_i - y_j|, (x_i - y_j) / |x_i - y_j|]``, the energy distance's terms and
  their gradients in one pass. KeOps defines ``Rsqrt(0) = 0``, so coincident points contribute 0.

Each (formula, dimension, dtype, device) compiles once (about 10 s) into ``KEOPS_CACHE_FOLDER``;
:func:`warm_cache` compiles the set the package uses. Supports are passed with one batch dimension,
``(B, N, D)``, so batched and unbatched inputs share compiled code.
"""

from __future__ import annotations

import contextlib
import functools
import io

import torch

__all__ = ["FORMULAS", "failure", "nearest", "sums", "warm_cache"]

# kernel name -> (formula, reduction, name of the scalar j-variable)
FORMULAS = {
    "nearest": ("SqNorm2(x-y)+p", "ArgMin", "p"),
    "sums": ("w*Rsqrt(SqNorm2(x-y))*Concat(SqNorm2(x-y),x-y)", "Sum", "w"),
}


@functools.cache
def _routine(kernel: str, dim: int):
    from pykeops.torch import Genred  # noqa: PLC0415 (optional dependency, imported on first use)

    formula, reduction, extra = FORMULAS[kernel]
    return Genred(formula, [f"x=Vi({dim})", f"y=Vj({dim})", f"{extra}=Vj(1)"], reduction_op=reduction, axis=1)


def _run(kernel: str, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(B, N, D), (B, M, D), (B, M)`` -> the reduction over ``j``, ``(B, N, k)``; silent, no autograd."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pykeops prints its compilation steps
            return _routine(kernel, x.shape[-1])(x.contiguous(), y.contiguous(), v[..., None].contiguous())
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


_KERNELS = {"nearest": nearest, "sums": sums}


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
