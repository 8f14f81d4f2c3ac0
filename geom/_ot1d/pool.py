"""The sort pool: numpy sorts of rows on a thread pool (numpy's sort is ~10x torch's on CPU), BLAS held
to one thread while tasks run, and packed value-index keys for argsorts at half the cost."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import kernels

__all__ = ["argsort_projections", "run_tasks", "sort_rows"]

_WORKERS = max(1, min(8, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None
_BLAS = None  # threadpoolctl controllers of numpy's BLAS, found on first use
_PARALLEL_MIN = 1 << 16  # elements below which threads cost more than they save
_TASK_ELEMENTS = 1 << 16  # a task takes one row, or whole rows up to this many elements (measured best)
WIDE = 32
"""From this dimension on (CPU), one matrix product on all threads projects a chunk of directions before
the tasks sort: products of a few directions on one thread each are bound by arithmetic there (N = 1e4,
d = 1024: 72 against 20 ns per projected value; at d = 8, 0.43 against 0.31, and below 1e4 points the
per-task products win). The clouds then keep their (B, N, D) layout."""


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="geom-sort")
    return _POOL


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0  # run_tasks calls in flight, from any thread
_BLAS_SAVED: list = []  # (library controller, its thread count) to restore, set by the first one in


def _blas_libraries() -> list:
    """threadpoolctl's controllers of the BLAS libraries numpy loaded, found once (a scan of the loaded
    libraries costs about 1 ms; a ctypes call to one of them about 1 us)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController().select(user_api="blas").lib_controllers
    return _BLAS


@contextlib.contextmanager
def _blas_one_thread():
    """numpy's BLAS on one thread while any :func:`run_tasks` call of any thread is in flight."""
    global _BLAS_USERS, _BLAS_SAVED
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_SAVED = [(lib, lib.get_num_threads()) for lib in _blas_libraries()]
            for lib, n in _BLAS_SAVED:
                if n != 1:
                    lib.set_num_threads(1)
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                for lib, n in _BLAS_SAVED:
                    if n != 1:
                        lib.set_num_threads(n)
                _BLAS_SAVED = []


def run_tasks(task, jobs, elements: int) -> None:
    """``task(*job)`` for every job, with numpy's BLAS held to one thread meanwhile: here when there is
    one job or fewer than :data:`_PARALLEL_MIN` ``elements`` in all, else on the sort pool.

    Tasks project with BLAS. A multithreaded BLAS called from both pool threads at once makes them
    wait on each other, and the pool then gained nothing (project + argsort of 2e5 values: 5.3 ms
    per row with two pool threads against 2.6 ms with BLAS on one thread). Small work run here is
    held too: once numpy's BLAS has run on two threads, its idle threads spin for a while, and torch's
    next operations wait for the cores (an SW step on 1024 points in 20-D with 64 directions, value
    and gradient: 11-16 ms with the projection on two BLAS threads, 2.8 ms on one; holding and giving
    back the threads is a few ctypes calls, a few us).
    """
    jobs = list(jobs)
    with _blas_one_thread():
        if len(jobs) == 1 or elements < _PARALLEL_MIN:
            for job in jobs:
                task(*job)
        else:
            list(_pool().map(lambda job: task(*job), jobs))


class _Workspace:
    """Work arrays for one call, one set per thread, reused by every task that thread runs.

    Fresh arrays of a few hundred KiB come from mmap and pay a page fault per 4 KiB on first
    touch; at N = 1e5 that costs as much as the arithmetic of a task, so tasks reuse these.
    They are freed with the workspace when the call returns.
    """

    def __init__(self) -> None:
        self._arrays: dict[tuple[int, str], np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        key = (threading.get_ident(), name)
        a = self._arrays.get(key)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[key] = np.empty(shape, dtype)
        return a


def _argsort_inplace(a: np.ndarray, perm: np.ndarray, ws: _Workspace, write_values: bool = True) -> None:
    """Sort the rows of ``a`` in place (unless ``write_values`` is False: then ``a`` is left as it was)
    and write their permutation (int64) into ``perm``; ties are broken by index.

    float32 rows: one float64 sort of packed value-index keys (:func:`geom._ot1d.kernels.argsort_float32`),
    half the cost of an argsort. Other dtypes, or rows longer than 2^28, use a stable argsort.
    """
    n = a.shape[-1]
    if a.dtype != np.float32 or n > 1 << kernels.INDEX_BITS:
        perm[...] = np.argsort(a, axis=-1, kind="stable")
        if write_values:
            a[...] = np.take_along_axis(a, perm, axis=-1)
        return
    kernels.argsort_float32(a, perm, ws.get("keys", a.shape, np.float64), write_values)


def _project_blocks(th: np.ndarray, *clouds: np.ndarray) -> tuple[np.ndarray, ...]:
    """``t @ th.T`` as ``(B, L, N)`` for each cloud ``t (B, N, D)``: on the sort pool, each thread one
    large product (a block of directions of one item; BLAS on one thread, see :func:`run_tasks`). numpy's
    BLAS on its own threads left them spinning after the product, and the sorting tasks that followed
    ran at half speed (N = 1e4, d = 32, L = 256: 79 against 41 ms)."""
    B, L = clouds[0].shape[0], th.shape[0]
    out = tuple(np.empty((B, L, t.shape[1]), th.dtype) for t in clouds)
    blocks = -(-_WORKERS // B)  # per item, so that every thread gets a block
    step = -(-L // blocks)  # directions per block

    def block(k: int, l0: int) -> None:
        for t, o in zip(clouds, out):
            np.matmul(th[l0 : l0 + step], t[k].T, out=o[k, l0 : l0 + step])

    run_tasks(block, ((k, l0) for k in range(B) for l0 in range(0, L, step)), B * L * sum(t.shape[1] for t in clouds))
    return out


def sort_rows(u: torch.Tensor, with_perm: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sort along the last dim: ``(..., N)`` -> ``(sorted values, int64 permutation or None)``."""
    if u.device.type != "cpu":
        if with_perm:
            return torch.sort(u, dim=-1)
        return torch.sort(u, dim=-1).values, None
    values = u.detach().reshape(-1, u.shape[-1]).numpy().copy()  # sorted in place
    perm = np.empty(values.shape, np.int64) if with_perm else None
    rows, n = values.shape
    step = max(1, _TASK_ELEMENTS // n)  # rows per task: a task's working set stays in cache
    ws = _Workspace()

    def job(r0: int) -> None:
        if perm is None:
            values[r0 : r0 + step].sort(axis=-1)
        else:
            _argsort_inplace(values[r0 : r0 + step], perm[r0 : r0 + step], ws)

    run_tasks(job, ((r0,) for r0 in range(0, rows, step)), values.size)
    values_t = torch.from_numpy(values).view(u.shape)
    return values_t, None if perm is None else torch.from_numpy(perm).view(u.shape)


def argsort_projections(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``(B, L, N)`` int64: the order of each row of ``x @ theta.T`` on CPU, projected inside the tasks.

    ``x (B, N, D)``, ``theta (L, D)``. Each task projects a few rows into its work array (BLAS on one
    thread, the row in cache) and argsorts them there, so the ``(B, L, N)`` projections are never
    held, except from :data:`WIDE` dimensions on, where they are projected by blocks first
    (:func:`_project_blocks`); the same ties as :func:`sort_rows` (by index). Each cloud is first moved
    to its mean, which shifts each row by a constant: far from the origin, float32 projections keep the
    digits that order them.
    """
    B, N, D = x.shape
    L = theta.shape[0]
    x = x.detach()
    x = x - x.mean(1, keepdim=True)  # a shift of each row's values keeps its order, and float32 its digits
    th = np.ascontiguousarray(theta.detach().numpy().astype(x.numpy().dtype, copy=False))
    projected = xs = None
    if D >= WIDE:
        projected = _project_blocks(th, x.numpy())[0]  # (B, L, N)
    else:
        xs = np.ascontiguousarray(x.numpy().transpose(0, 2, 1))  # (B, D, N): a row is one pass
    perm = np.empty((B, L, N), np.int64)
    step = max(1, _TASK_ELEMENTS // max(1, N))
    ws = _Workspace()

    def job(k: int, l0: int) -> None:
        l1 = min(L, l0 + step)
        if projected is None:
            u = ws.get("u", (l1 - l0, N), th.dtype)
            np.matmul(th[l0:l1], xs[k], out=u)
        else:
            u = projected[k, l0:l1]
        _argsort_inplace(u, perm[k, l0:l1], ws, write_values=False)

    run_tasks(job, ((k, l0) for k in range(B) for l0 in range(0, L, step)), B * L * N)
    return torch.from_numpy(perm)
