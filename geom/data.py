"""Datasets: one door, :func:`load_dataset`, to every registered collection of shapes or measures.

A dataset is a map-style collection (``len``, indexing, iteration; usable with
``torch.utils.data.DataLoader``) of ``(item, label)`` pairs: ``item`` a ``(n_points, 3)`` tensor by
default, or what the dataset's options ask for (a :class:`geom.Measure` of another kind, a mesh), and
``label`` an int indexing :attr:`Dataset.classes`. Loaders for files on disk and generators of
synthetic data register through the hook ``geom_register_datasets(register)``, exactly as schemes
and representations do; ``geom datasets`` lists them with their descriptions and options.

``load_dataset(..., transform=f)`` applies ``f`` to every item as it is read (the label is kept), e.g.
``transform=lambda m: m.normalized("sphere")``; batch Measure items with
``DataLoader(ds, batch_size=8, collate_fn=geom.collate)``.
"""

from __future__ import annotations

import inspect

from ._checks import describe
from .contract import Dataset
from .registry import get_dataset

__all__ = ["Dataset", "Transformed", "load_dataset"]


def load_dataset(name: str, root=None, transform=None, **options) -> Dataset:
    """The registered dataset ``name`` (see :func:`geom.datasets`), read from ``root`` or generated.

    Args:
        name: registered dataset name.
        root: folder the dataset reads (loaders); ``None`` for generators.
        transform: ``None`` or a callable applied to each item (not the label) when it is read:
            the dataset is then wrapped in :class:`Transformed`, which keeps ``len``, ``classes``,
            iteration and the dataset's other attributes.
        **options: the dataset's options (``geom datasets`` lists them), e.g. ``split``, ``n_points``,
            ``seed``.

    Raises:
        TypeError: an option the dataset does not take, named with the list of those it takes; a
            ``transform`` that is not callable.
    """
    if transform is not None and not callable(transform):
        raise TypeError(f"transform: expected a callable applied to each item, or None, got {describe(transform)}")
    cls = get_dataset(name)
    unknown = sorted(set(options) - set(_option_names(cls)))
    if unknown:
        raise TypeError(f"{', '.join(unknown)}: unknown option{'s' if len(unknown) > 1 else ''} of dataset {name!r}; "
                        f"valid options: {', '.join(_option_names(cls)) or 'none'}")
    data = cls(root=root, **options)
    return data if transform is None else Transformed(data, transform)


class Transformed(Dataset):
    """``dataset`` with ``transform`` applied to each item: ``self[i] == (transform(item), label)``
    where ``dataset[i] == (item, label)`` (for ``(source, bent)`` pairs the item is the pair).

    ``len``, iteration and indexing go through the dataset; every other attribute (``classes``,
    ``n_points``, ...) is the dataset's. ``dataset`` and ``transform`` are attributes.
    """

    def __init__(self, dataset: Dataset, transform):
        if not callable(transform):
            raise TypeError(f"transform: expected a callable applied to each item, got {describe(transform)}")
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        item, label = self.dataset[index]
        return self.transform(item), label

    def __getattr__(self, name):  # only for names the wrapper lacks; never for its own (unpickling)
        if name in ("dataset", "transform") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes

    def __repr__(self) -> str:
        return f"Transformed({self.dataset!r}, transform={self.transform!r})"


def _option_names(cls) -> list[str]:
    """The options of a dataset class: its ``options`` keys, then the other named keyword parameters of
    ``__init__`` (``root`` among them where the class declares it as an option)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the declared options alone
        params = []
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "root"]
    return list(cls.options) + [n for n in named if n not in cls.options]
