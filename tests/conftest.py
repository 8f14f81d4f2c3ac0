"""Shared fixtures. KeOps compiles into the project's ignored cache folder, never a shared one."""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("KEOPS_CACHE_FOLDER", str(ROOT / ".cache" / "keops"))

import copy  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from geom.registry import _registry  # noqa: E402

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
