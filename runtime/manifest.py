"""The bundle manifest: its schema, reading (with reasons for refusal) and writing.

The runtime owns the schema because it is the reader that must refuse what it cannot run;
``export`` builds a :class:`Manifest` and calls :func:`write_manifest`. A manifest is plain
JSON so that people and other tools (Triton, a Jetson script) can read it too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
TASKS = ("classify", "enhance", "generate")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class TensorSpec:
    """One model input or output; symbolic dims are strings such as ``"batch"``."""

    name: str
    shape: list[int | str]
    dtype: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        if not isinstance(d.get("name"), str) or not isinstance(d.get("shape"), list):
            raise BundleError(f"tensor entry {d!r} needs a 'name' and a 'shape' list")
        return cls(name=d["name"], shape=list(d["shape"]), dtype=str(d.get("dtype", "float32")))


@dataclass
class Labels:
    """Output order of a classifier and how it rolls up to macro classes.

    ``level`` says whether the outputs are fine or macro classes; ``macro_of`` maps each
    output class to its macro class (identity for a macro-level model).
    """

    classes: list[str]
    macro_of: dict[str, str]
    level: str = "fine"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Labels":
        classes = d.get("classes")
        macro_of = d.get("macro_of", {})
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise BundleError("labels.classes must be a non-empty list of class names")
        missing = [c for c in classes if c not in macro_of]
        if missing:
            raise BundleError(f"labels.macro_of has no macro class for {missing}")
        return cls(classes=list(classes), macro_of=dict(macro_of), level=str(d.get("level", "fine")))


@dataclass
class Manifest:
    """What a bundle is, how to feed it and how it was checked."""

    task: str
    files: dict[str, str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: str = "fp32"
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: Labels | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.labels is None:
            d.pop("labels")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        """Validate and read; every refusal says what is wrong."""
        if not isinstance(d, dict):
            raise BundleError("manifest.json must hold a JSON object")
        version = d.get("schema_version")
        if not isinstance(version, int):
            raise BundleError("manifest.json has no integer schema_version")
        if version > SCHEMA_VERSION:
            raise BundleError(
                f"manifest schema_version {version} is newer than this runtime reads "
                f"({SCHEMA_VERSION}); upgrade flare-edge"
            )
        task = d.get("task")
        if task not in TASKS:
            raise BundleError(f"manifest task {task!r} is not one of {', '.join(TASKS)}")
        precision = d.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise BundleError(f"manifest precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        files = d.get("files")
        if not isinstance(files, dict) or not files:
            raise BundleError("manifest.json has no 'files' map naming the model files")
        try:
            inputs = [TensorSpec.from_dict(t) for t in d["inputs"]]
            outputs = [TensorSpec.from_dict(t) for t in d["outputs"]]
        except (KeyError, TypeError) as exc:
            raise BundleError(f"manifest inputs/outputs are malformed: {exc}") from exc
        labels = Labels.from_dict(d["labels"]) if "labels" in d else None
        if task == "classify" and labels is None:
            raise BundleError("a classify bundle needs 'labels' in its manifest")
        return cls(
            task=task,
            files={str(k): str(v) for k, v in files.items()},
            inputs=inputs,
            outputs=outputs,
            precision=precision,
            preprocessing=dict(d.get("preprocessing", {})),
            labels=labels,
            parity=dict(d.get("parity", {})),
            source=dict(d.get("source", {})),
            versions=dict(d.get("versions", {})),
            extra=dict(d.get("extra", {})),
            schema_version=version,
        )


def read_manifest(bundle: str | Path) -> Manifest:
    """Load ``bundle/manifest.json`` and check that the files it names are there."""
    bundle = Path(bundle)
    path = bundle / MANIFEST_NAME
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is not a bundle folder (expected a folder with {MANIFEST_NAME})")
    if not path.is_file():
        raise BundleError(f"{bundle} has no {MANIFEST_NAME}; was it written by 'flare export'?")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    try:
        manifest = Manifest.from_dict(raw)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc
    for role, name in manifest.files.items():
        if role.startswith("engine"):
            continue  # engines are optional accelerators; ONNX is always there
        if not (bundle / name).is_file():
            raise BundleError(f"{bundle}: the manifest names {name} ({role}) but the file is missing")
    return manifest


def write_manifest(bundle: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (a reader never sees half a file)."""
    bundle = Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    Manifest.from_dict(manifest.to_dict())  # never write what we would refuse to read
    path = bundle / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
