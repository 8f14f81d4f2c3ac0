"""Validation at the public boundary: every error names the argument, what was expected and what came."""

from __future__ import annotations

import math

import torch

__all__ = ["GeomWarning", "check_p", "check_positive_int", "check_finite", "describe"]


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


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected a positive integer, got {describe(value)}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return value


def check_finite(t: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"{name}: expected finite values, got {t[tuple(bad)].item()} at index {tuple(bad)}")
