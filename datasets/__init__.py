"""Datasets of geom (installed as ``geom_datasets``): procedural shapes and the small sample files the
project generates itself.

- :mod:`geom_datasets.shapes`: seeded procedural meshes (sphere, torus, cube, ellipsoid, noisy sphere)
  and :func:`~geom_datasets.shapes.write_samples`, which writes the bundled files.
- :data:`SAMPLES_DIR`: the folder of bundled sample meshes (``<name>.ply``).
"""

import pathlib

__all__ = ["SAMPLES_DIR"]

SAMPLES_DIR = pathlib.Path(__file__).resolve().parent / "samples"
"""Folder of the bundled sample meshes, written by ``python -m geom_datasets.shapes``."""
