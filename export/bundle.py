"""Writing bundles: library versions, checksummed files, and an all-or-nothing folder swap.

A bundle (or a Triton repository) is built in ``<out>.partial`` beside its destination by
:func:`staging`, which removes it again if anything fails; a bundle's manifest records every
file's sha256 and size, and the finished folder is swapped in with
:func:`flare.runtime.foundation.atomic.publish_folder`, so a reader (or a crash) sees the
complete old folder or the complete new one, never neither and never a mix.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import shutil
from collections.abc import Iterator
from pathlib import Path

from flare.export.parity import GateReport, ParityError, ParityReport
from flare.runtime.core.manifest import BundleFile
from flare.runtime.foundation.atomic import publish_folder
from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.progress import log

VERSIONED = ("flare-edge", "torch", "torchvision", "timm", "diffusers", "onnx", "onnxscript", "onnxslim",
             "onnxruntime", "onnxruntime-gpu", "tensorrt", "numpy", "pillow")


def library_versions(names: tuple[str, ...] = VERSIONED) -> dict[str, str]:
    """Installed versions of ``names`` (distribution names); absent ones are left out."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


@contextlib.contextmanager
def staging(out: Path, marker: str, refusal: str) -> Iterator[Path]:
    """A fresh folder beside ``out`` to build in, removed if the block raises; ``out`` itself is untouched.

    ``out`` may be new, an empty folder, or a folder holding ``marker`` (one we wrote and may
    replace); anything else is refused with the one-line ``refusal``. The block ends by
    publishing the stage (which moves it away) or by raising.
    """
    out = Path(out)
    if out.exists() and not (out / marker).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(refusal)
    stage = out.with_name(out.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def bundle_files(stage: Path, names: dict[str, str], max_batch: dict[str, int] | None = None) -> dict[str, BundleFile]:
    """Manifest entries (sha256, size, batch limit) for the files written into ``stage``."""
    limits = max_batch or {}
    return {role: BundleFile.describe(stage, name, limits.get(role)) for role, name in names.items()}


def publish_checked(stage: Path, out: Path, report: ParityReport | GateReport, allow_parity_failure: bool) -> Path:
    """Swap the staged bundle in when the parity gate passed (or the user overrode it, which
    the manifest already records); otherwise raise :class:`ParityError` (:func:`staging` then
    removes the stage)."""
    if not report.passed:
        if not allow_parity_failure:
            raise ParityError(f"refusing to write {out}: {report.summary()}; tolerance {report.tolerance}. "
                              "Pass --allow-parity-failure to write it anyway (marked as failed)")
        log(f"WARNING: writing {out} although the parity check FAILED ({report.summary()})")
    return publish_folder(stage, out)
