"""Validation at the public boundary: every error names the argument, what was expected and what came."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["GeomWarning", "as_host_array", "as_real_tensor", "available_memory", "check_bool", "check_device", "check_finite", "check_int", "check_memory",
           "check_p", "check_positive_int", "check_real", "describe", "format_bytes"]


class GeomWarning(UserWarning):
    """Warnings issued by geom (a plugin that failed to load, a fallback that was taken)."""


def describe(obj) -> str:
    """A short description of ``obj`` for error messages: its type and, for arrays, shape and dtype."""
    shape = getattr(obj, "shape", None)
    if shape is not None:
        return f"{type(obj).__name__} of shape {tuple(shape)} and dtype {getattr(obj, 'dtype', '?')}"
    text = repr(obj)
    return f"{type(obj).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _is_bool(value) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy.bool_ is no Integral, but refuse it


def _as_int(value):
    """Python and numpy integers (and 0-d integer tensors) -> int; anything else -> None."""
    if _is_bool(value):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_floating_point() \
            and not value.is_complex() and value.dtype != torch.bool:
        return int(value)
    return None


def _as_real(value):
    """Python and numpy reals (and 0-d real tensors) -> float; anything else -> None."""
    if _is_bool(value):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_complex() and value.dtype != torch.bool:
        return float(value)
    return None


def check_p(p) -> float:
    value = _as_real(p)
    if value is None:
        raise TypeError(f"p: expected a number >= 1, got {describe(p)}")
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"p: expected a finite number >= 1, got {p!r}")
    return value


def check_int(value, name: str, *, minimum: int = 0) -> int:
    """An int ``>= minimum`` (bools refused); TypeError / ValueError naming ``name``."""
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    number = _as_int(value)
    if number is None:
        raise TypeError(f"{name}: expected {expected}, got {describe(value)}")
    if number < minimum:
        raise ValueError(f"{name}: expected {expected}, got {number}")
    return number


def check_positive_int(value, name: str) -> int:
    return check_int(value, name, minimum=1)


def check_real(value, name: str, expected: str, ok=lambda v: True) -> float:
    """A finite real number with ``ok(value)``; ``expected`` says which (``"> 0"``, ``"in (0, 1]"``)."""
    number = _as_real(value)
    if number is None:
        raise TypeError(f"{name}: expected a real number {expected}, got {describe(value)}")
    if not (math.isfinite(number) and ok(number)):
        raise ValueError(f"{name}: expected a real number {expected}, got {value!r}")
    return number


def check_bool(value, name: str) -> bool:
    """True or False (numpy bools too); anything else, ``"no"`` and 0 included, a TypeError naming ``name``."""
    if not _is_bool(value):
        raise TypeError(f"{name}: expected True or False, got {describe(value)}")
    return bool(value)


def check_device(t: torch.Tensor, name: str) -> torch.Tensor:
    """``t`` unless it lives on a device geom does not compute on (``meta``, ...): ValueError naming ``name``."""
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: expected a tensor on the CPU or a CUDA device, got one on device '{t.device}'")
    return t


def as_host_array(obj, name: str, expected: str) -> np.ndarray:
    """A numpy array of an array argument (a tensor checked for its device, detached and moved to the
    CPU); TypeError naming ``name`` (saying ``expected``) for what numpy cannot read as an array."""
    if isinstance(obj, torch.Tensor):
        obj = check_device(obj, name).detach().cpu()
        return (obj.double() if obj.dtype in (torch.float16, torch.bfloat16) else obj).numpy()
    try:
        return np.asarray(obj)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected {expected}, got {describe(obj)}") from exc


def as_real_tensor(obj, name: str, expected: str) -> torch.Tensor:
    """Numeric input (tensor, numpy array, nested list) -> float tensor: float64 kept, everything else
    float32, autograd kept. TypeError / ValueError naming ``name`` (saying ``expected``) for other
    input, complex or bool values, and tensors on a device geom does not compute on."""
    if isinstance(obj, torch.Tensor):
        t = obj
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected a numeric array, got dtype {obj.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(obj))
    elif isinstance(obj, (list, tuple)):
        try:
            t = torch.tensor(obj, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name}: expected {expected}; the nested list is not a numeric array ({exc})") from exc
    else:
        raise TypeError(f"{name}: expected {expected}, got {describe(obj)}")
    check_device(t, name)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name}: expected real coordinates, got dtype {t.dtype}")
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    return t


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite; float CPU tensors are read through numpy (a few us, where
    a torch reduction to a Python bool costs about 10 us, and training loops check at every step)."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(t.detach().numpy()).all())
    return bool(torch.isfinite(t).all())


def check_finite(t: torch.Tensor, name: str) -> None:
    if not all_finite(t):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"{name}: expected finite values, got {t[tuple(bad)].item()} at index {tuple(bad)}")


def available_memory() -> int:
    """Bytes of memory this process may still allocate: the machine's available memory (Linux
    ``MemAvailable``), capped by a cgroup limit where one is set; 8 GiB where neither can be read."""
    limit = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limit = int(text)
            break
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    values = [v for v in (limit, available) if v is not None]
    return min(values) if values else 8 << 30


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} TiB"  # pragma: no cover


def check_memory(nbytes: float, name: str, what: str = "", device=None) -> None:
    """ValueError naming the argument ``name`` when a computation would need ``nbytes`` of memory
    and more than the available memory (:func:`available_memory`, or the free memory of a CUDA
    ``device``); ``what`` says for what."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = available_memory()
    if nbytes > free:
        detail = f" for {what}" if what else ""
        raise ValueError(f"{name}: this needs about {format_bytes(nbytes)} of memory{detail}, more than the "
                         f"{format_bytes(free)} available; choose a smaller {name}")
