"""Writing files and folders so that a kill at any moment leaves the old one or the new one.

Resumable jobs decide what is finished by looking at what exists; a truncated image, a half
JSON file or a half-copied bundle would be mistaken for a finished one. So every output is
written under a temporary name in the same folder, flushed to disk, and renamed over the
target (atomic on POSIX); folders are swapped in with one ``renameat2(RENAME_EXCHANGE)``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image


def fsync_path(path: Path) -> None:
    """Flush a file (or a folder, so a rename in it is durable) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)``, flush ``tmp`` to disk, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """A UTF-8 text file, written atomically."""
    return write_atomically(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> Path:
    """An indented JSON file, written atomically. A float that is not finite (a NaN loss)
    becomes ``null``: NaN is not JSON, and other tools refuse the file."""
    return write_text(path, json.dumps(finite_json(data), indent=2, allow_nan=False) + "\n")


def finite_json(data: Any) -> Any:
    """``data`` as :func:`write_json` writes it: every non-finite float becomes None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def touch(path: Path) -> Path:
    """An empty marker file ("this step is done"), durable once this returns."""
    return write_text(path, "")


def save_png(image: Image.Image | np.ndarray, path: Path) -> Path:
    """A PNG written atomically, from a Pillow image or an HxWx3 uint8 array."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    return write_atomically(path, lambda p: img.save(p, format="PNG"))


_RENAME_EXCHANGE = 2  # from <linux/fs.h>


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux's renameat2; False where it is not available."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish_folder(stage: Path, out: Path) -> Path:
    """Replace the folder ``out`` with the finished folder ``stage``.

    Where ``out`` exists, the two are exchanged in one system call, so at every moment
    ``out`` is either the complete old folder or the complete new one. Where the file system
    cannot exchange, the old folder is first renamed aside (``<out>.previous``), so one
    complete copy always exists on disk, and removed once the new one is in place.
    """
    stage, out = Path(stage), Path(out)
    if not out.exists():
        os.rename(stage, out)
        return out
    if _exchange(stage, out):
        shutil.rmtree(stage)  # now holds the old folder
        return out
    previous = out.with_name(out.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    os.rename(out, previous)
    os.rename(stage, out)
    shutil.rmtree(previous)
    return out
