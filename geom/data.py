"""Datasets: one door, :func:`load_dataset`, to every registered collection of shapes or measures.

A dataset is a map-style collection (``len``, indexing, iteration; usable with
``torch.utils.data.DataLoader``) of ``(item, label)`` pairs: ``item`` a ``(n_points, 3)`` tensor by
default, or what the dataset's options ask for (a :class:`geom.Measure` of another kind, a mesh), and
``label`` an int indexing :attr:`Dataset.classes`. Loaders for files on disk and generators of
synthetic data register through the hook ``geom_register_datasets(register)``, exactly as schemes
and representations do; ``geom datasets`` lists them with their descriptions and options.
"""

from __future__ import annotations

import inspect

from .contract import Dataset
from .registry import get_dataset

__all__ = ["Dataset", "load_dataset"]


def load_dataset(name: str, root=None, **options) -> Dataset:
    """The registered dataset ``name`` (see :func:`geom.datasets`), read from ``root`` or generated.

    Args:
        name: registered dataset name.
        root: folder the dataset reads (loaders); ``None`` for generators.
        **options: the dataset's options (``geom datasets`` lists them), e.g. ``split``, ``n_points``,
            ``seed``.

    Raises:
        TypeError: an option the dataset does not take, named with the list of those it takes.
    """
    cls = get_dataset(name)
    unknown = sorted(set(options) - set(_option_names(cls)))
    if unknown:
        raise TypeError(f"{', '.join(unknown)}: unknown option{'s' if len(unknown) > 1 else ''} of dataset {name!r}; "
                        f"valid options: {', '.join(_option_names(cls)) or 'none'}")
    return cls(root=root, **options)


def _option_names(cls) -> list[str]:
    """The options of a dataset class: its ``options`` keys, then the other named keyword parameters of
    ``__init__`` (``root`` among them where the class declares it as an option)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the declared options alone
        params = []
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "root"]
    return list(cls.options) + [n for n in named if n not in cls.options]
