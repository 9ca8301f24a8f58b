"""Image folders on disk: SpaceNet's Kaggle layout and any ImageFolder tree."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from flare.runtime.core.taxonomy import FINE_CLASSES, fine_from_folder
from flare.runtime.foundation.errors import UsageError
from flare.runtime.io.images import is_supported

SPACENET_ROOT = "SpaceNet.FLARE.imam_alam"


@dataclass(frozen=True)
class Sample:
    """One image file and its fine class name (path relative to the data root)."""

    path: str
    label: str


def resolve_root(data: Path) -> Path:
    """Descend into SpaceNet's root folder when given the folder that holds it."""
    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"{data} is not a folder of images (expected one sub-folder per class)")
    inner = data / SPACENET_ROOT
    return inner if inner.is_dir() else data


def scan_image_folder(data: Path) -> tuple[list[Sample], list[str]]:
    """List ``<root>/<class>/**/<image>`` files; returns samples and the class names in order.

    Folders named after FLARE's fine classes (``black hole``, ``black_hole``, any case) map to
    the taxonomy and keep its order; any other ImageFolder tree uses its folder names sorted.
    """
    root = resolve_root(data)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UsageError(f"{root} has no class sub-folders (expected <root>/<class>/<image>)")
    mapped = {f: fine_from_folder(f.name) for f in folders}
    flare_tree = all(mapped.values())
    samples = []
    for folder in folders:
        label = mapped[folder] if flare_tree else folder.name
        for f in sorted(folder.rglob("*")):
            if f.is_file() and is_supported(f) and not any(p.startswith(".") for p in f.relative_to(root).parts):
                samples.append(Sample(f.relative_to(root).as_posix(), label))
    if not samples:
        raise UsageError(f"{root} has class folders but no image files in them")
    present = sorted(set(s.label for s in samples))
    classes = [c for c in FINE_CLASSES if c in present] if flare_tree else present
    return samples, classes


def link_tree(files: list[tuple[Path, str]], out: Path) -> Path:
    """A folder of hard links (copies across file systems) at the given relative paths."""
    for src, rel in files:
        dst = out / rel
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return out
