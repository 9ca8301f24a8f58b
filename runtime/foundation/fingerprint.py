"""What a resumable step's output was made from, so a resume never mixes old with new.

A step that skips work already done (triage, the augmentation stages, an experiment) is
only right if the done work came from the same inputs and settings. Each such step keeps a
*record* beside its output: the options that change results, as the user would type them,
and a fingerprint (a checksum) of every model or checkpoint it used. On the next run the
record is compared with what was asked now; a difference is refused with a line that says
what changed and where to write instead, never reported under the new settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from flare.runtime.foundation.atomic import write_json
from flare.runtime.foundation.errors import FlareError

#: Parts of a run folder that change without changing the model: resume state, logs, sample grids.
_NOT_MODEL = frozenset({"training", "samples", "metrics.jsonl", "results.json", "train_state.pt"})
_MODEL_SUFFIXES = frozenset({".json", ".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".onnx", ".engine",
                             ".plan", ".txt", ".model"})


def fingerprint_path(path: Path) -> str:
    """A sha256 of a model file, or of the model files of a folder (a RUN, a bundle, a pipeline).

    For a folder, config and weight files count (with their relative paths); resume state,
    logs and images do not, so resuming a training run's bookkeeping does not look like a new
    model while any change to its weights does.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        _update(digest, path)
        return digest.hexdigest()
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path)
        if not file.is_file() or file.suffix not in _MODEL_SUFFIXES or _NOT_MODEL & set(rel.parts):
            continue
        digest.update(rel.as_posix().encode() + b"\0")
        _update(digest, file)
    return digest.hexdigest()


def _update(digest: Any, file: Path) -> None:
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)


def record_path(output: Path) -> Path:
    """Where the record of the file ``output`` is kept: ``<output>.flare.json`` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".flare.json")


def check_settings(record: Path, settings: Mapping[str, Any], what: str, remedy: str,
                   has_results: bool = True) -> None:
    """Refuse if ``record`` holds other settings than ``settings``; write it when missing.

    ``settings`` maps option names as typed (``--size``, ``--model``) to plain JSON values.
    ``what`` names the output in the message and ``remedy`` says what to do instead. With
    ``has_results`` False (nothing was made yet) a differing record is replaced, not refused.
    """
    record = Path(record)
    wanted = json.loads(json.dumps(dict(settings)))  # tuples become lists, as they come back
    if record.is_file():
        try:
            found = json.loads(record.read_text(encoding="utf-8"))
            if not isinstance(found, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise FlareError(f"{record} (the record of how {what} was made) cannot be read ({exc}); {remedy}") from exc
        if found == wanted:
            return
        changed = [f"{key} {_show(found.get(key))} then, {_show(wanted.get(key))} now"
                   for key in sorted(set(found) | set(wanted)) if found.get(key) != wanted.get(key)]
        if has_results:
            raise FlareError(f"{what} was made with other settings ({'; '.join(changed)}); {remedy}")
    elif has_results:
        raise FlareError(f"{what} holds results but no record of the settings that made them ({record}); {remedy}")
    write_json(record, wanted)


def _show(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return f"sha256 {value[:12]}"
    return json.dumps(value)
