"""Reading shapes from files and from trimesh / open3d objects (placeholder until the io module lands)."""

import numpy as np


def read_points(obj, *, n_samples=2048, seed=0):
    raise TypeError(f"obj: unsupported input {type(obj).__name__}")
