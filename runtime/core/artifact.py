"""The one mechanism every saved artefact uses: a typed, versioned config with symmetric save / load.

A dataclass is written as one JSON file in its folder, with the artefact's kind and format
version, written atomically; reading it back checks the kind (an SR run given where a
classifier run is expected says so), refuses an unknown or newer version with what to do,
and builds the typed objects field by field, so a misspelt or wrongly typed field is named.
Callers use the types, never the raw JSON. The concrete artefacts are
:mod:`flare.runtime.core.runs` (training runs) and :mod:`flare.runtime.core.manifest` (bundles).

The module is torch-free and lives in the runtime because the runtime is the one reader that
must refuse what it cannot run; training and export import it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from flare.runtime.foundation.atomic import write_json
from flare.runtime.foundation.errors import ArtifactError, one_line

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
    import flare.runtime.core.manifest  # noqa: F401  (the kinds register themselves when defined)
    import flare.runtime.core.runs  # noqa: F401
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
