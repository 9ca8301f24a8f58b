"""Writing bundles: library versions, checksums, and an all-or-nothing folder swap."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
from pathlib import Path

from runtime.errors import UsageError

VERSIONED = ("flare-edge", "torch", "torchvision", "timm", "diffusers", "onnx", "onnxscript", "onnxslim",
             "onnxruntime", "onnxruntime-gpu", "tensorrt", "numpy", "pillow")


def library_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def staging_dir(out: Path) -> Path:
    """A fresh folder beside ``out`` to build the bundle in; ``out`` itself is untouched."""
    out = Path(out)
    if out.exists() and not (out / "manifest.json").is_file() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not a bundle; choose an empty or new --out")
    stage = out.with_name(out.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def publish(stage: Path, out: Path) -> Path:
    """Replace ``out`` with the finished ``stage`` folder."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)
    return out
