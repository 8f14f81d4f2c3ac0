"""Writing files safely: every file geom writes lands whole or not at all.

A writer gets a temporary file of its own in the destination folder (a unique name from
:func:`tempfile.mkstemp`, so concurrent writers, threads included, never see each other's files),
writes and flushes it to disk, then renames it over the destination in one step (``os.replace``).
A failure at any point (a full disk, Ctrl-C, an exception in the writer) removes the temporary file
and leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

__all__ = ["TEMP_PREFIX", "atomic_path", "atomic_write", "save_figure", "write_bytes", "write_text"]

TEMP_PREFIX = ".geom-tmp-"
"""Prefix of every temporary file geom writes; readers of folders skip names that start with it."""

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once, at import (os.umask can only be read by setting it)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on a clean exit it is renamed to ``path``.

    For writers that take a file name (``np.savez``, ``fig.savefig``, ``trimesh.export``): they must
    write to exactly the yielded name (keep its suffix, which the yielded name ends with too).

    >>> import pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> out.read_text()
    'hello'
    """
    path = pathlib.Path(path)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", suffix=path.suffix or "", dir=path.parent)
    os.close(fd)
    tmp = pathlib.Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the result gets the usual mode
        yield tmp
        with open(tmp, "rb+") as fh:  # the writer closed it: flush its bytes to disk before the rename
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: expected 'wb' or 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            yield fh
            fh.flush()


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as fh:
        fh.write(text)


def save_figure(fig, path, **savefig_options) -> None:
    """``fig.savefig`` (matplotlib) to ``path`` atomically; the format is the suffix of ``path``."""
    path = pathlib.Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".") or "png", **savefig_options)
