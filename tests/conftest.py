"""Shared fixtures. KeOps compiles into geom's per-user cache folder, the one `make test` warms
before pytest starts (its workers then only read it; geom._keops locks the build folder around each
kernel's first call, so workers that do find a cold cache compile each formula once, in turn)."""

import copy
import pathlib

import pytest
import torch

from geom.registry import _registry  # importing geom sets KEOPS_CACHE_FOLDER before a test imports pykeops

ROOT = pathlib.Path(__file__).resolve().parents[1]

MESHES = ROOT.parent / "shared" / "data" / "meshes"

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Every device this machine has: cpu, and cuda where present."""
    return torch.device(request.param)


@pytest.fixture
def meshes_dir():
    """The shared folder of real meshes; tests that need it skip where it is absent."""
    if not MESHES.is_dir():
        pytest.skip(f"shared meshes not present at {MESHES}")
    return MESHES


@pytest.fixture
def restore_registry():
    """Snapshot the registry tables and plugin infos; put them back after the test."""
    _registry.load()
    tables = {kind: dict(table) for kind, table in _registry.tables.items()}
    info = copy.deepcopy(_registry.info)
    yield
    for kind, table in _registry.tables.items():
        table.clear()
        table.update(tables[kind])
    _registry.info.clear()
    _registry.info.update(info)
