"""Datasets of geom (installed as ``geom_datasets``), reached through ``geom.load_dataset(name, ...)``.

- :mod:`geom_datasets.shapes`: seeded procedural meshes (sphere, ellipsoid, torus, cube, capsule,
  torus knot; noise, partial scans, smooth bendings with the vertex correspondence kept) and
  :func:`~geom_datasets.shapes.write_samples`, which writes the bundled files.
- :mod:`geom_datasets.loaders`: ``"modelnet"``, ``"shapenet"``, ``"hdf5"``, ``"folder"``: the layouts
  users already have on disk.
- :mod:`geom_datasets.generators`: ``"shapes"``, ``"sphere-mixtures"``, ``"spd"``, ``"gaussians"``.
- :mod:`geom_datasets.real`: offline real data, ``"digits"`` (scikit-learn) and ``"airports"``
  (vega_datasets).
- :data:`SAMPLES_DIR`: the folder of bundled sample meshes (``<name>.ply``).
"""

import pathlib

__all__ = ["SAMPLES_DIR"]

SAMPLES_DIR = pathlib.Path(__file__).resolve().parent / "samples"
"""Folder of the bundled sample meshes, written by ``python -m geom_datasets.shapes``."""
