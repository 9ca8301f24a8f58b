"""Editing a bundle's manifest as a person with an editor would, but re-sealed with its checksum.

The runtime refuses a manifest whose ``content_sha256`` does not match (see
``test_manifest_checksum``); tests that check what a deeper check says about an edited field
must get past that first, so they write the edit through :func:`write_manifest`.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Callable
from typing import Any

from flare.runtime.core.manifest import CHECKSUM_KEY, Manifest, content_sha256


def write_manifest(bundle: Path, data: dict[str, Any], indent: int | None = None) -> None:
    """Write ``data`` as ``bundle/manifest.json`` with a checksum that matches it."""
    data = {**data, CHECKSUM_KEY: content_sha256(data)}
    (Path(bundle) / Manifest.FILE).write_text(json.dumps(data, indent=indent))


def edited_bundle(bundle: Path, out: Path, edit: Callable[[dict], object], seal: bool = True) -> Path:
    """A copy of ``bundle`` at ``out`` whose manifest ``edit`` changed; model files are linked, not copied
    (they stay intact). ``seal=False`` leaves the old checksum, as a hand edit would."""
    out.mkdir()
    for entry in Manifest.load(bundle, verify=False).files.values():
        (out / entry.path).symlink_to((bundle / entry.path).resolve())
    manifest = json.loads((bundle / Manifest.FILE).read_text())
    edit(manifest)
    if seal:
        write_manifest(out, manifest)
    else:
        (out / Manifest.FILE).write_text(json.dumps(manifest))
    return out
