"""Writing files so that a kill at any moment leaves the old file or the new one, never half.

Resumable jobs decide what is finished by looking at what exists; a truncated image or
checkpoint would be mistaken for a finished one. So every output is written under a
temporary name in the same folder and renamed over the target (atomic on POSIX).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_png(image: Image.Image | np.ndarray, path: Path) -> Path:
    """A PNG written atomically, from a Pillow image or an HxWx3 uint8 array."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    return write_atomically(path, lambda p: img.save(p, format="PNG"))
