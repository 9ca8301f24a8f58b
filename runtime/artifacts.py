"""Every artefact FLARE Edge saves, as a typed, versioned config with symmetric save / load.

Three kinds of training run and the bundle share one mechanism (:class:`Artifact`): a
dataclass written as one JSON file in its folder, with the artefact's kind and format
version, written atomically; reading it back checks the kind (an SR run given where a
classifier run is expected says so), refuses an unknown or newer version with what to do,
and builds the typed objects field by field, so a misspelt or wrongly typed field is named.
Callers use the types, never the raw JSON.

The module is torch-free and lives in the runtime because the runtime is the one reader that
must refuse what it cannot run; training and export import it.

* :class:`ClassifierRun` (``flare train``), :class:`SRRun` (``flare train-sr``) and
  :class:`DiffusionRun` (``flare train-diffusion``) are written as ``run.json`` beside the
  weights. A diffusion run is otherwise a diffusers folder (``unet/``, ``vae/``,
  ``scheduler/``), so the loader that reads it also reads a user's local pipeline.
* :class:`Manifest` is a bundle's ``manifest.json`` (the contract's ``schema_version`` is
  its version). It records the sha256 and size of every file it names, and opening a bundle
  checks them, so a changed, truncated or swapped model file is refused by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

from flare.runtime.atomic import write_json
from flare.runtime.errors import ArtifactError, BundleError, one_line
from flare.runtime.generation_spec import GenerationSpec
from flare.runtime.preprocess import EnhanceSpec, PreprocessSpec

A = TypeVar("A", bound="Artifact")

#: kind -> class, for messages such as "RUN is an SR run, not a classifier run".
_KINDS: dict[str, type[Artifact]] = {}


# --- plain JSON <-> typed dataclasses --------------------------------------------------------


def quote_error(exc: BaseException, limit: int = 200) -> str:
    """A library's error as a short clause inside one of ours: one line, capped, never empty.

    Our messages are one line for a person; torch, diffusers and ONNX Runtime write several
    lines (some with pages of advice, or every key of a state dict), and some raise with no
    message at all (an ``EOFError`` on an empty file).
    """
    text = one_line(str(exc)) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and paths as JSON-ready dicts, lists and strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def from_plain(tp: Any, value: Any, where: str) -> Any:
    """Build an object of type ``tp`` from JSON data; ``where`` names the field in errors."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return from_plain(option, value, where)
            except ArtifactError as exc:
                errors.append(str(exc))
        raise ArtifactError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ArtifactError(f"{where} must be an object, not {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ArtifactError(f"{where} has unknown field(s) {', '.join(unknown)}")
        missing = sorted(f.name for f in dataclasses.fields(tp) if f.init and f.name not in value
                         and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        if missing:
            raise ArtifactError(f"{where} lacks field(s) {', '.join(missing)}")
        return tp(**{k: from_plain(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ArtifactError(f"{where} must be a list, not {type(value).__name__}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ArtifactError(f"{where} must have {len(args)} entries")
            return tuple(from_plain(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        items = [from_plain(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ArtifactError(f"{where} must be an object, not {type(value).__name__}")
        return {str(k): from_plain(args[1] if args else Any, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ArtifactError(f"{where} must be {getattr(tp, '__name__', tp)}, not {value!r}")


# --- the mechanism ------------------------------------------------------------------------


class Artifact:
    """A dataclass saved as ``FILE`` in a folder, with its kind and format version.

    Subclasses set ``KIND`` (stored under ``"artifact"``), ``VERSION``, ``FILE``, ``WHAT`` (a
    name for people) and ``MADE_BY`` (the command that makes one, for messages), and may
    override :meth:`validate`.
    """

    KIND: ClassVar[str]
    VERSION: ClassVar[int]
    FILE: ClassVar[str] = "run.json"
    VERSION_KEY: ClassVar[str] = "version"
    WHAT: ClassVar[str]
    MADE_BY: ClassVar[str]
    ERROR: ClassVar[type[ArtifactError]] = ArtifactError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "KIND" in cls.__dict__:
            _KINDS[cls.KIND] = cls

    def validate(self) -> None:
        """Refuse contents that are well-typed but inconsistent (raise ``ERROR``)."""

    @classmethod
    def remedy(cls) -> str:
        """What a person does about a damaged or foreign file of this kind, for the end of a refusal."""
        return f"re-create it with '{cls.MADE_BY}'"

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.KIND, self.VERSION_KEY: self.VERSION, **to_plain(self)}

    @classmethod
    def from_dict(cls: type[A], data: Any, where: str = "") -> A:
        """Check kind and version, then build the typed object."""
        where = where or cls.FILE
        if not isinstance(data, dict):
            raise cls.ERROR(f"{where} must hold a JSON object, not a {type(data).__name__}; the file is damaged: "
                            f"{cls.remedy()}")
        kind, version = data.get("artifact"), data.get(cls.VERSION_KEY)
        if kind is None and "format" in data:
            raise cls.ERROR(f"{where} was written by an earlier flare-edge (format {data['format']!r}) that this "
                            f"version no longer reads; re-create it with '{cls.MADE_BY}'")
        if kind != cls.KIND:
            other = _KINDS.get(str(kind))
            raise cls.ERROR(f"{where} is {'a ' + other.WHAT if other else f'of unknown kind {kind!r}'}, "
                            f"not a {cls.WHAT}")
        if not isinstance(version, int) or isinstance(version, bool):
            raise cls.ERROR(f"{where} has no integer {cls.VERSION_KEY}")
        if version > cls.VERSION:
            raise cls.ERROR(f"{where} has format version {version}, newer than this flare-edge reads "
                            f"({cls.VERSION}); upgrade flare-edge (pip install -U flare-edge)")
        if version < cls.VERSION:
            raise cls.ERROR(f"{where} has format version {version}, older than this flare-edge reads "
                            f"({cls.VERSION}); {cls.remedy()}")
        body = {k: v for k, v in data.items() if k not in ("artifact", cls.VERSION_KEY)}
        try:
            obj = from_plain(cls, body, where)
            obj.validate()
        except (ArtifactError, TypeError, ValueError) as exc:
            # nested types and validate() say what is wrong but not in which file
            problem = quote_error(exc, limit=400)
            problem = problem if problem.startswith(where) else f"{where}: {problem}"
            raise cls.ERROR(f"{problem}; the file was edited or is damaged: {cls.remedy()}") from exc
        return obj

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/FILE`` atomically; what is written is what :meth:`load` accepts."""
        self.validate()
        data = self.to_dict()
        type(self).from_dict(json.loads(json.dumps(data)), f"{folder}/{self.FILE}")  # never write what we refuse
        return write_json(Path(folder) / self.FILE, data)

    @classmethod
    def load(cls: type[A], folder: str | Path) -> A:
        """Read ``folder/FILE``; every refusal names the file and says what to do."""
        folder = Path(folder)
        path = folder / cls.FILE
        if not folder.is_dir():
            raise cls.ERROR(f"{folder} is not a {cls.WHAT} folder (expected a folder with {cls.FILE}); "
                            f"make one with '{cls.MADE_BY}'")
        if path.exists() and not path.is_file():
            raise cls.ERROR(f"{path} is a folder or special file, not the {cls.WHAT}'s JSON file; {cls.remedy()}")
        if not path.is_file():
            found = identify(folder)
            raise cls.ERROR(f"{folder} is a {found.WHAT}, not a {cls.WHAT}" if found else
                            f"{folder} has no {cls.FILE}: it is not a {cls.WHAT}; make one with '{cls.MADE_BY}'")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError; absurd nesting
            raise cls.ERROR(f"{path} is not valid JSON ({quote_error(exc)}); the file is damaged: {cls.remedy()}") from exc
        except OSError as exc:
            raise cls.ERROR(f"cannot read {path}: {exc.strerror}") from exc
        return cls.from_dict(data, str(path))


def identify(folder: str | Path) -> type[Artifact] | None:
    """Which kind of artefact ``folder`` holds, or None."""
    for name in sorted({k.FILE for k in _KINDS.values()}):
        path = Path(folder) / name
        try:
            kind = json.loads(path.read_text(encoding="utf-8")).get("artifact")
        except (OSError, ValueError, AttributeError, RecursionError):
            continue
        if kind in _KINDS:
            return _KINDS[kind]
    return None


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# --- training runs --------------------------------------------------------------------------


@dataclass
class ClassifierTraining:
    """The settings of ``flare train`` (the authors' recipe by default)."""

    model: str
    data: str
    level: str = "fine"
    epochs: int = 50
    batch: int = 64
    lr: float = 2e-5
    step_size: int = 10
    gamma: float = 0.5
    input_size: int = 224
    seed: int = 0
    weights: str | None = None
    amp: bool = True
    workers: int = 0


@dataclass
class ClassifierRun(Artifact):
    """A ``flare train`` RUN: settings, output classes and the preprocessing the network saw."""

    KIND: ClassVar[str] = "classifier-run"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "classifier training run"
    MADE_BY: ClassVar[str] = "flare train"

    train: ClassifierTraining
    classes: list[str]
    macro_of: dict[str, str]
    label_map: dict[str, str]
    preprocessing: PreprocessSpec

    def validate(self) -> None:
        missing = [c for c in self.classes if c not in self.macro_of]
        if not self.classes or missing:
            raise ArtifactError(f"classes {self.classes} need a macro class each (missing {missing})")


@dataclass
class SRTraining:
    """The settings of ``flare train-sr``."""

    data: str
    arch: str = "tiny_x4"
    scale: int = 4
    patch: int = 64
    batch: int = 8
    epochs: int = 20
    steps_per_epoch: int = 100
    lr: float = 2e-4
    val: float = 0.1
    seed: int = 0
    low_res_dir: str | None = None
    #: Learn a correction on top of bicubic upscaling; None: on for our own small configurations.
    bicubic_residual: bool | None = None


@dataclass
class SRRun(Artifact):
    """A ``flare train-sr`` RUN. ``swinir`` is the architecture (``SwinIRConfig.to_dict()``)."""

    KIND: ClassVar[str] = "sr-run"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "super-resolution training run"
    MADE_BY: ClassVar[str] = "flare train-sr"

    train: SRTraining
    swinir: dict[str, Any]
    bicubic_residual: bool


@dataclass
class DiffusionTraining:
    """The settings of ``flare train-diffusion``."""

    data: str
    config: str = "tiny"
    resolution: int | None = None
    epochs: int = 100
    vae_epochs: int = 10
    batch: int = 32
    vae_batch: int = 16
    lr: float = 5e-4
    vae_lr: float = 1e-3
    warmup_steps: int = 100
    kl_weight: float = 1e-6
    ema_max_decay: float = 0.9999
    prediction: str = "epsilon"
    image_cond: bool | None = None
    vae: str | None = None
    text_encoder: str | None = None
    dihedral: bool = True
    sample_every: int = 1
    sample_per_class: int = 4
    sample_steps: int = 25
    sample_guidance: float = 4.0
    seed: int = 0


@dataclass
class Conditioner:
    """How class names become the UNet's cross-attention context.

    ``class_embedding``: a learned embedding per class, projected to ``tokens`` vectors of
    ``dim``; ``prompt_table``: frozen text-encoder outputs of the class prompts, ``tokens``
    x ``dim`` each. Either way the weights are ``conditioner/conditioner.safetensors`` and
    the last row is the null prompt of classifier-free guidance.
    """

    kind: str
    classes: list[str]
    prompts: list[str]
    dim: int
    tokens: int


@dataclass
class DiffusionRun(Artifact):
    """A ``flare train-diffusion`` RUN, beside ``unet/``, ``vae/``, ``scheduler/`` and ``conditioner/``.

    ``image_mode`` is ``"channels"`` when the UNet takes a source-image condition (image
    variation) as extra input channels, pooled to ``image_cond_cells`` cells a side.
    """

    KIND: ClassVar[str] = "diffusion-run"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "diffusion training run"
    MADE_BY: ClassVar[str] = "flare train-diffusion"

    train: DiffusionTraining
    conditioner: Conditioner
    image_mode: str | None
    image_cond_cells: int
    vae_epochs: int

    def validate(self) -> None:
        if self.conditioner.kind not in ("class_embedding", "prompt_table"):
            raise ArtifactError(f"unknown conditioner kind {self.conditioner.kind!r}")
        if self.image_mode not in (None, "channels"):
            raise ArtifactError(f"unknown image_mode {self.image_mode!r}")


# --- bundles ----------------------------------------------------------------------------------

TASKS = ("classify", "enhance", "generate")
PRECISIONS = ("fp32", "fp16", "int8")


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


#: The model files of a generate bundle: the first two always, the encoders when the source has
#: them, the sampler-step graph in bundles made since it exists (see generation_spec.STEP_INPUTS).
GENERATE_MODELS = ("unet", "vae_decoder", "vae_encoder", "text_encoder", "sampler_step")


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
    """A TensorRT engine in the bundle and the one place it runs (see :mod:`flare.runtime.engines`).

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
        if self.task != "generate":
            return self.precision
        part = self.extra.get("export", {}).get(model_key, {})
        return "fp16" if str(part.get("precision", "")).startswith("fp16") else "fp32"

    def specs_of(self, model_key: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """The inputs and outputs of the model file ``model_key``."""
        io = self.models.get(model_key)
        return (io.inputs, io.outputs) if io is not None else (self.inputs, self.outputs)

    def validate(self) -> None:
        if self.task not in TASKS:
            raise BundleError(f"manifest task {self.task!r} is not one of {', '.join(TASKS)}")
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
        if self.task == "classify":
            if self.labels is None:
                raise BundleError("a classify bundle needs 'labels' in its manifest")
            spec = PreprocessSpec.from_dict(self.preprocessing)  # the runtime rebuilds its preprocessing from this
            wanted = "uint8" if spec.fused else "float32"
            if self.inputs[0].dtype != wanted:
                raise BundleError(f"the preprocessing feeds {wanted} but the model input '{self.inputs[0].name}' "
                                  f"is {self.inputs[0].dtype}")
        if self.task == "enhance":
            enhance = EnhanceSpec.from_dict(self.preprocessing)
            first = self.inputs[0]
            if first.dtype != "float32" or len(first.shape) != 4 or first.shape[1] != enhance.channels:
                raise BundleError(f"the preprocessing feeds float32 (batch, {enhance.channels}, height, width) but "
                                  f"the model input '{first.name}' is {first.dtype} {first.shape}")
        if self.task == "generate":
            spec = GenerationSpec.from_dict(self.preprocessing)
            missing = [k for k in ("unet", "vae_decoder", "class_embeddings") if k not in self.files]
            if missing:
                raise BundleError(f"a generate bundle needs the files {', '.join(missing)} in its manifest")
            unknown = sorted(set(self.models) - set(GENERATE_MODELS))
            if unknown or any(k not in self.models for k in GENERATE_MODELS if k in self.files):
                raise BundleError(f"the manifest's 'models' must describe each of {', '.join(GENERATE_MODELS)} "
                                  "it holds, and nothing else")
            if spec.text is not None and not {"text_encoder", "tokenizer"} <= set(self.files):
                raise BundleError("the manifest describes a tokenizer but names no text_encoder and tokenizer files")

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
        return d

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
