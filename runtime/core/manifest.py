"""A bundle's ``manifest.json``: what the bundle is, how to feed it, how it was checked.

The contract's ``schema_version`` is its version. It records the sha256 and size of every
file it names, and opening a bundle checks them, so a changed, truncated or swapped model
file is refused by name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from flare.runtime.core.artifact import Artifact, sha256
from flare.runtime.core.tasks import task_named
from flare.runtime.foundation.atomic import finite_json
from flare.runtime.foundation.errors import ArtifactError, BundleError


PRECISIONS = ("fp32", "fp16", "int8")


#: The manifest's own checksum: sha256 of its other content as canonical JSON (:func:`content_sha256`).
CHECKSUM_KEY = "content_sha256"


def content_sha256(data: dict[str, Any]) -> str:
    """sha256 of ``data`` without :data:`CHECKSUM_KEY`, as the file holds it (non-finite numbers as
    null: :func:`finite_json`) in JSON with sorted keys and no spaces, the same text whatever
    order or indentation the file was written with."""
    body = finite_json({k: v for k, v in data.items() if k != CHECKSUM_KEY})
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class TensorSpec:
    """One model input or output; symbolic dims are strings such as ``"batch"``."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"


@dataclass
class ModelIO:
    """The inputs and outputs of one model file of a bundle that holds several (generate)."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]



@dataclass
class Labels:
    """Output order of a classifier and how it rolls up to macro classes.

    ``level`` says whether the outputs are fine or macro classes; ``macro_of`` maps each
    output class to its macro class (identity for a macro-level model).
    """

    classes: list[str]
    macro_of: dict[str, str]
    level: str = "fine"

    def __post_init__(self) -> None:
        if not self.classes:
            raise BundleError("labels.classes must be a non-empty list of class names")
        missing = [c for c in self.classes if c not in self.macro_of]
        if missing:
            raise BundleError(f"labels.macro_of has no macro class for {missing}")


@dataclass
class BundleFile:
    """A file of the bundle, with what it must hash to and the largest batch it accepts."""

    path: str
    sha256: str
    bytes: int
    #: None: any batch (a dynamic ONNX axis); an engine's profile sets a limit.
    max_batch: int | None = None

    @classmethod
    def describe(cls, folder: Path, name: str, max_batch: int | None = None) -> BundleFile:
        """The entry for ``folder/name`` as it is on disk now."""
        path = Path(folder) / name
        return cls(path=name, sha256=sha256(path), bytes=path.stat().st_size, max_batch=max_batch)


@dataclass
class EngineInfo:
    """A TensorRT engine in the bundle and the one place it runs (see :mod:`flare.runtime.core.engines`).

    ``file`` is its role in the manifest's ``files`` (checksummed like the rest), ``model``
    the model file it was built from, ``profile`` each input's [min, opt, max] shape.
    """

    model: str
    file: str
    tensorrt: str
    compute_capability: str
    gpu: str
    precision: str
    profile: dict[str, list[list[int]]]
    strongly_typed: bool = True

    @property
    def max_batch(self) -> int:
        """The largest batch the profile accepts (the first input's axis 0)."""
        return next(iter(self.profile.values()))[2][0]


@dataclass
class Manifest(Artifact):
    """What a bundle is, how to feed it, how it was checked, and what its files must hash to."""

    KIND: ClassVar[str] = "bundle"
    VERSION: ClassVar[int] = 2
    FILE: ClassVar[str] = "manifest.json"
    VERSION_KEY: ClassVar[str] = "schema_version"
    WHAT: ClassVar[str] = "bundle"
    MADE_BY: ClassVar[str] = "flare export"
    ERROR: ClassVar[type[ArtifactError]] = BundleError

    task: str
    files: dict[str, BundleFile]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: str = "fp32"
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: Labels | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: Per model file (generate bundles hold several); ``inputs`` / ``outputs`` are the UNet's.
    models: dict[str, ModelIO] = field(default_factory=dict)
    #: TensorRT engines, each for one TensorRT version and GPU compute capability.
    engines: list[EngineInfo] = field(default_factory=list)

    def precision_of(self, model_key: str) -> str:
        """The precision of one model file: a generate bundle's parts differ (its VAE decoder may
        stay fp32, its sampler step always is), the others have the bundle's."""
        if not task_named(self.task).per_part_precision:
            return self.precision
        part = self.extra.get("export", {}).get(model_key, {})
        return "fp16" if str(part.get("precision", "")).startswith("fp16") else "fp32"

    def specs_of(self, model_key: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """The inputs and outputs of the model file ``model_key``."""
        io = self.models.get(model_key)
        return (io.inputs, io.outputs) if io is not None else (self.inputs, self.outputs)

    def validate(self) -> None:
        task = task_named(self.task)
        if self.precision not in PRECISIONS:
            raise BundleError(f"manifest precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not self.files:
            raise BundleError("manifest.json has no 'files' map naming the model files")
        outside = [e.path for e in self.files.values() if Path(e.path).is_absolute() or ".." in Path(e.path).parts]
        if outside:
            raise BundleError(f"the manifest names files outside the bundle folder ({', '.join(outside)})")
        if not self.inputs or not self.outputs:
            raise BundleError("the manifest lists no model inputs or no outputs")
        for engine in self.engines:
            if engine.file not in self.files or engine.model not in self.files:
                raise BundleError(f"the manifest records an engine '{engine.file}' for '{engine.model}' but does not "
                                  "name both files")
        task.check(self)

    @classmethod
    def remedy(cls) -> str:
        return f"re-export the bundle with '{cls.MADE_BY}'"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.labels is None:
            d.pop("labels")
        if not self.models:
            d.pop("models")
        if not self.engines:
            d.pop("engines")
        d[CHECKSUM_KEY] = content_sha256(d)
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Manifest:
        """Read as every artefact is read, then check the manifest's own checksum: the runtime
        believes what it reads (shapes, labels, preprocessing) only as the exporter wrote it."""
        where = where or cls.FILE
        body = {k: v for k, v in data.items() if k != CHECKSUM_KEY} if isinstance(data, dict) else data
        manifest = super().from_dict(body, where)
        recorded = data.get(CHECKSUM_KEY)
        if recorded is None:
            raise BundleError(f"{where} carries no {CHECKSUM_KEY}: it was not written by this flare-edge's export "
                              f"or was edited; {cls.remedy()}")
        if recorded != content_sha256(body):
            raise BundleError(f"{where} was changed after export (its {CHECKSUM_KEY} does not match its content); "
                              f"copy the bundle again or {cls.remedy()}")
        return manifest

    @classmethod
    def load(cls, folder: str | Path, verify: bool = True) -> Manifest:
        """Read a bundle's manifest and, with ``verify``, check every file it names."""
        manifest = super().load(folder)
        if verify:
            manifest.verify(Path(folder))
        return manifest

    def verify(self, folder: Path, roles: Iterable[str] | None = None) -> None:
        """Refuse a missing, truncated or changed file, by name (sizes first: cheap); ``roles``
        limits the check to those files (a server model folder holds only what it reads)."""
        wanted = set(self.files if roles is None else roles)
        for role, entry in self.files.items():
            if role not in wanted:
                continue
            path = Path(folder) / entry.path
            if not path.is_file():
                raise BundleError(f"{folder}: the manifest names {entry.path} ({role}) but the file is missing; "
                                  "copy the whole bundle folder or re-export it")
            size = path.stat().st_size
            if size != entry.bytes:
                raise BundleError(f"{path} is {size} bytes but the manifest says {entry.bytes}: the file is "
                                  "truncated or was replaced; copy the bundle again or re-export it")
            if sha256(path) != entry.sha256:
                raise BundleError(f"{path} differs from the file the bundle was exported with (sha256 mismatch); "
                                  "copy the bundle again or re-export it")
