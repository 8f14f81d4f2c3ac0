"""Validation at the public boundary: every error names the argument, what was expected and what came."""

from __future__ import annotations

import math

import torch

__all__ = ["GeomWarning", "check_finite", "check_int", "check_p", "check_positive_int", "check_real", "describe"]


class GeomWarning(UserWarning):
    """Warnings issued by geom (a plugin that failed to load, a fallback that was taken)."""


def describe(obj) -> str:
    """A short description of ``obj`` for error messages: its type and, for arrays, shape and dtype."""
    shape = getattr(obj, "shape", None)
    if shape is not None:
        return f"{type(obj).__name__} of shape {tuple(shape)} and dtype {getattr(obj, 'dtype', '?')}"
    text = repr(obj)
    return f"{type(obj).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"p: expected a number >= 1, got {describe(p)}")
    if not math.isfinite(p) or p < 1:
        raise ValueError(f"p: expected a finite number >= 1, got {p!r}")
    return float(p)


def check_int(value, name: str, *, minimum: int = 0) -> int:
    """An int ``>= minimum`` (bools refused); TypeError / ValueError naming ``name``."""
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected {expected}, got {describe(value)}")
    if value < minimum:
        raise ValueError(f"{name}: expected {expected}, got {value}")
    return value


def check_positive_int(value, name: str) -> int:
    return check_int(value, name, minimum=1)


def check_real(value, name: str, expected: str, ok=lambda v: True) -> float:
    """A finite real number with ``ok(value)``; ``expected`` says which (``"> 0"``, ``"in (0, 1]"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number {expected}, got {describe(value)}")
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name}: expected a real number {expected}, got {value!r}")
    return float(value)


def check_finite(t: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"{name}: expected finite values, got {t[tuple(bad)].item()} at index {tuple(bad)}")
